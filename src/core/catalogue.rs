//! The bad-input catalogue, SDK-core half: what a remote peer can send
//! (frames, chunks, signals) and the named error each must produce. Nothing
//! here may panic or grow memory beyond the configured bounds. The broker
//! half is `server/tests/catalogue.rs`.

use crate::core::chunking::{Reassembler, ReassemblyError};
use crate::protocol::frames::{DataHead, FrameError, PayloadType, PeerSignal, encode_data_head};

fn data(id: u32, total: u32, offset: u32, chunk: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    encode_data_head(
        &mut f,
        &DataHead {
            payload: PayloadType::Binary,
            message_id: id,
            total,
            offset,
        },
    );
    f.extend_from_slice(chunk);
    f
}

/// (name, frames fed in order, the error the last one must produce)
type Case = (&'static str, Vec<Vec<u8>>, fn(&ReassemblyError) -> bool);

fn cases() -> Vec<Case> {
    vec![
        ("empty frame", vec![vec![]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::Empty))
        }),
        ("unknown frame kind", vec![vec![200, 1, 2]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::UnknownKind(200)))
        }),
        ("data header cut short", vec![vec![0, 0, 1, 0]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::Truncated { .. }))
        }),
        ("ping without its nonce", vec![vec![1, 9]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::Truncated { .. }))
        }),
        ("pull without its count", vec![vec![7]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::Truncated { .. }))
        }),
        ("rewind without its number", vec![vec![12, 1]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::Truncated { .. }))
        }),
        (
            "unknown payload type",
            vec![{
                let mut f = data(1, 1, 0, b"x");
                f[1] = 9;
                f
            }],
            |e| matches!(e, ReassemblyError::Frame(FrameError::BadPayloadType(9))),
        ),
        ("close reason not UTF-8", vec![vec![3, 0xff, 0xfe]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::BadReason))
        }),
        ("frame above 16 KiB", vec![vec![0; 16 * 1024 + 1]], |e| {
            matches!(e, ReassemblyError::Frame(FrameError::Oversize(_)))
        }),
        (
            "message above the maximum",
            vec![data(1, 2_000_000, 0, b"x")],
            |e| matches!(e, ReassemblyError::TooLarge { .. }),
        ),
        (
            "first chunk not at offset 0",
            vec![data(1, 100, 10, b"x")],
            |e| matches!(e, ReassemblyError::OutOfOrder { .. }),
        ),
        (
            "duplicate chunk",
            vec![data(1, 100, 0, &[1; 10]), data(1, 100, 0, &[1; 10])],
            |e| matches!(e, ReassemblyError::OutOfOrder { .. }),
        ),
        (
            "skipped chunk",
            vec![data(1, 100, 0, &[1; 10]), data(1, 100, 20, &[1; 10])],
            |e| matches!(e, ReassemblyError::OutOfOrder { .. }),
        ),
        (
            "chunk past the total",
            vec![data(1, 10, 5, &[1; 10])],
            |e| matches!(e, ReassemblyError::Overrun { .. }),
        ),
        (
            "total changes mid-message",
            vec![data(1, 100, 0, &[1; 10]), data(1, 99, 10, &[1; 10])],
            |e| matches!(e, ReassemblyError::Inconsistent { .. }),
        ),
        (
            "empty chunk in a message",
            vec![data(1, 100, 0, &[])],
            |e| matches!(e, ReassemblyError::EmptyChunk { .. }),
        ),
        (
            "too many messages in flight",
            (0..17).map(|id| data(id, 1000, 0, &[1])).collect(),
            |e| matches!(e, ReassemblyError::TooManyInFlight { .. }),
        ),
        (
            "half messages past the budget",
            (0..3)
                .map(|id| data(id, 1_000_000, 0, &[1; 16_000]))
                .chain((0..3).flat_map(|id| {
                    (1..60).map(move |k| data(id, 1_000_000, k * 16_000, &[1; 16_000]))
                }))
                .collect(),
            |e| matches!(e, ReassemblyError::OverBudget { .. }),
        ),
    ]
}

#[test]
fn every_bad_frame_gets_its_named_error() {
    let cases = cases();
    assert!(cases.len() >= 15);
    for (name, frames, expected) in cases {
        let mut r = Reassembler::new(1_000_000);
        let mut outcome = None;
        for f in &frames {
            if let Err(e) = r.frame(f) {
                outcome = Some(e);
                break;
            }
        }
        let err = outcome.unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(expected(&err), "{name}: got {err}");
        // Memory held stays within two maximum messages whatever was sent.
        assert!(
            r.pending_bytes() <= 2_000_000,
            "{name}: {} bytes held",
            r.pending_bytes()
        );
    }
}

#[test]
fn bad_signal_payloads_are_refused_not_trusted() {
    for (name, text) in [
        ("not an object", r#""offer""#),
        (
            "no session",
            r#"{"kind":"description","sdpType":"offer","sdp":"v=0"}"#,
        ),
        ("unknown kind", r#"{"session":1,"kind":"teleport"}"#),
        (
            "description without sdp",
            r#"{"session":1,"kind":"description","sdpType":"offer"}"#,
        ),
        (
            "candidate line is a number",
            r#"{"session":1,"kind":"candidate","candidate":5}"#,
        ),
        (
            "session is negative",
            r#"{"session":-1,"kind":"bye","reason":"x"}"#,
        ),
    ] {
        assert!(PeerSignal::decode(text).is_err(), "{name}: accepted");
    }
    assert_eq!(crate::core::negotiation::SdpKind::parse("malicious"), None);
}
