//! The SDK's error names and codes, as three other places spell them: the
//! TypeScript union users narrow on (`PeerwireErrorCodes` and
//! `BrokerErrorCode` in the custom section of `src/api/mod.rs`), the list
//! `isPeerwireError` checks at run time (`ERROR_NAMES` in
//! `src/api/errors.rs`), and the table of docs/ERRORS.md. A name or code
//! added to `PeerError` without them fails here.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

use peerwire::core::error::{DatabaseFailure, PeerError};
use peerwire::protocol::ErrorCode;

const TYPESCRIPT: &str = include_str!("../src/api/mod.rs");
const GUARD: &str = include_str!("../src/api/errors.rs");
const DOC: &str = include_str!("../docs/ERRORS.md");

/// Which variant an error is. No wildcard arm: a new variant does not
/// compile until it is added here and to [`every_error`].
fn variant(e: &PeerError) -> usize {
    match e {
        PeerError::InvalidId(_) => 0,
        PeerError::IdTaken(_) => 1,
        PeerError::InvalidArgument(_) => 2,
        PeerError::BrokerUnreachable { .. } => 3,
        PeerError::Unauthorized { .. } => 4,
        PeerError::Broker { .. } => 5,
        PeerError::PeerUnavailable { .. } => 6,
        PeerError::ConnectTimeout { .. } => 7,
        PeerError::ConnectionFailed { .. } => 8,
        PeerError::Closed(_) => 9,
        PeerError::MessageTooLarge { .. } => 10,
        PeerError::Protocol { .. } => 11,
        PeerError::PortClosed { .. } => 12,
        PeerError::UnknownHost(_) => 13,
        PeerError::HostnameTaken(_) => 14,
        PeerError::QueueFull(_) => 15,
        PeerError::LimitExceeded(_) => 16,
        PeerError::Timeout(_) => 17,
        PeerError::UnknownStore(_) => 18,
        PeerError::Database { .. } => 19,
        PeerError::CallRejected { .. } => 20,
        PeerError::MediaUnavailable(_) => 21,
    }
}
const VARIANTS: usize = 22;

/// One error of every variant, with every code each can carry: all broker
/// codes as they map through `from_broker`, and the codes the engine gives
/// `PeerUnavailable` and `Unauthorized`.
fn every_error() -> Vec<PeerError> {
    let s = || "x".to_string();
    let mut all = vec![
        PeerError::InvalidId(s()),
        PeerError::IdTaken(s()),
        PeerError::InvalidArgument(s()),
        PeerError::BrokerUnreachable {
            url: s(),
            detail: s(),
        },
        PeerError::ConnectTimeout {
            id: s(),
            ms: 1,
            waiting: s(),
        },
        PeerError::ConnectionFailed {
            id: s(),
            reason: s(),
        },
        PeerError::Closed(s()),
        PeerError::MessageTooLarge {
            size: 2,
            max: 1,
            hint: "",
        },
        PeerError::Protocol {
            id: s(),
            detail: s(),
        },
        PeerError::PortClosed {
            id: s(),
            port: 1,
            reason: s(),
        },
        PeerError::UnknownHost(s()),
        PeerError::HostnameTaken(s()),
        PeerError::QueueFull(s()),
        PeerError::LimitExceeded(s()),
        PeerError::Timeout(1),
        PeerError::UnknownStore(s()),
        PeerError::CallRejected {
            id: s(),
            reason: s(),
        },
        PeerError::MediaUnavailable(s()),
    ];
    for kind in DatabaseFailure::ALL {
        all.push(PeerError::Database { kind, detail: s() });
    }
    for code in ErrorCode::ALL {
        all.push(PeerError::from_broker(code, s()));
        all.push(PeerError::Broker { code, message: s() });
    }
    for code in [
        ErrorCode::UnknownPeer,
        ErrorCode::PeerGone,
        ErrorCode::QueueFull,
        ErrorCode::Unavailable,
    ] {
        all.push(PeerError::PeerUnavailable { id: s(), code });
    }
    for code in [ErrorCode::Unauthorized, ErrorCode::Forbidden] {
        all.push(PeerError::Unauthorized { code, message: s() });
    }
    all
}

/// The text between `start` and the next line that is exactly `end`.
fn block<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found"));
    let rest = &text[from + start.len()..];
    &rest[..rest
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?} after {start:?}"))]
}

/// Every `"quoted"` string in `text`.
fn quoted(text: &str) -> BTreeSet<&str> {
    text.split('"').skip(1).step_by(2).collect()
}

/// `PeerwireErrorCodes` as (name, right-hand side) pairs.
fn typescript_names() -> Vec<(&'static str, &'static str)> {
    block(TYPESCRIPT, "export interface PeerwireErrorCodes {", "\n}")
        .lines()
        .filter(|l| !l.trim_start().starts_with("/**") && l.contains(':'))
        .map(|l| {
            let (name, rhs) = l.split_once(':').unwrap();
            (name.trim(), rhs.trim().trim_end_matches(';'))
        })
        .collect()
}

#[test]
fn every_variant_is_sampled() {
    let seen: BTreeSet<usize> = every_error().iter().map(variant).collect();
    assert_eq!(seen, (0..VARIANTS).collect());
}

#[test]
fn the_typescript_union_has_every_name_with_its_codes() {
    let names = typescript_names();
    let broker_codes = quoted(block(TYPESCRIPT, "export type BrokerErrorCode =", ";"));
    let expected: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(broker_codes, expected, "BrokerErrorCode is every ErrorCode");

    for e in every_error() {
        let (_, rhs) = names
            .iter()
            .find(|(n, _)| *n == e.name())
            .unwrap_or_else(|| panic!("{} missing from PeerwireErrorCodes", e.name()));
        let codes = if *rhs == "BrokerErrorCode" {
            broker_codes.clone()
        } else {
            quoted(rhs)
        };
        assert!(
            codes.contains(e.code()),
            "PeerwireErrorCodes.{} lacks the code {:?}",
            e.name(),
            e.code()
        );
    }
    let made: BTreeSet<&str> = every_error().iter().map(|e| e.name()).collect();
    let typed: BTreeSet<&str> = names.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        typed, made,
        "PeerwireErrorCodes names no error the SDK never makes"
    );
}

#[test]
fn the_run_time_guard_knows_every_name() {
    let listed = quoted(block(GUARD, "const ERROR_NAMES", "];"));
    let made: BTreeSet<&str> = every_error().iter().map(|e| e.name()).collect();
    assert_eq!(listed, made, "ERROR_NAMES in src/api/errors.rs");
}

#[test]
fn the_errors_doc_has_a_row_for_every_name_and_code() {
    for e in every_error() {
        let start = format!("| SDK | `{}` (", e.name());
        let row = DOC
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("docs/ERRORS.md has no row {start}"));
        let codes = row.split('|').nth(2).unwrap();
        if e.name() == "BrokerError" {
            assert!(codes.contains("broker's code"), "{row}");
            let broker_row = format!("| broker | `{}` |", e.code());
            assert!(DOC.contains(&broker_row), "{broker_row} missing");
        } else {
            assert!(
                codes.contains(&format!("`{}`", e.code())),
                "{row} lacks {}",
                e.code()
            );
        }
    }
}
