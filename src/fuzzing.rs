//! Fuzz target bodies: the code that reads bytes from strangers, driven by
//! arbitrary input, with the invariants that must hold for any input.
//!
//! `fuzz/` (cargo fuzz, libFuzzer) calls these; `tests/fuzz.sh` runs each
//! for a bounded time. Every input a fuzzer ever crashed on is kept in
//! `fuzz/regressions/<target>/`, and the test below replays them all in CI.
//! Compiled for tests and with the `fuzzing` feature only.

use crate::core::chunking::{Chunker, MAX_IN_FLIGHT, Reassembler, Received};
use crate::core::rest::{RequestHead, ResponseHead, RestUrl, Router, parse_query};
use crate::protocol::frames::{ChannelLabel, Frame, PayloadType};
use crate::protocol::{ClientMessage, ServerMessage};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// The targets, by the name of their folder under `fuzz/regressions/`.
pub const TARGETS: [(&str, Target); 4] = [
    ("broker_message", broker_message),
    ("peer_frame", peer_frame),
    ("reassembly", reassembly),
    ("rest_codec", rest_codec),
];

/// The broker's message decoder (shared with the SDK): any text decodes or
/// yields a named error; whatever decodes re-encodes to the same message.
pub fn broker_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMessage::decode(text) {
        Ok(msg) => {
            let _ = msg.validate();
            let again = ClientMessage::decode(&msg.encode());
            assert_eq!(again.as_ref(), Ok(&msg), "client message round trip");
        }
        Err(e) => assert!(!e.message.is_empty(), "an error says why"),
    }
    if let Ok(msg) = ServerMessage::decode(text) {
        let again = ServerMessage::decode(&msg.encode()).ok();
        assert_eq!(again.as_ref(), Some(&msg), "server message round trip");
    }
}

/// The peer frame decoder and channel labels: no panic, and a decoded frame
/// re-encodes to bytes that decode to the same frame.
pub fn peer_frame(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let bytes = frame.encode();
        assert_eq!(Frame::decode(&bytes), Ok(frame), "frame round trip");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(label) = ChannelLabel::parse(text) {
            assert_eq!(ChannelLabel::parse(&label.encode()), Some(label));
        }
    }
}

/// Bytes per unit of size in the reassembly target's input: a size byte of
/// 255 makes a message of about 2.5 frames.
const SIZE_UNIT: usize = 157;

/// The largest message the reassembly target accepts.
const FUZZ_MAX_MESSAGE: usize = 255 * SIZE_UNIT;

/// The chunk reassembler against a hostile peer, two ways:
///
/// 1. arbitrary frames (length-prefixed in the input): never a panic,
///    partial messages never hold more than the budget, and no message above
///    the maximum comes out;
/// 2. real messages cut by the `Chunker`, interleaved in an order the input
///    picks: every message comes out whole and unchanged.
pub fn reassembly(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut r = Reassembler::new(FUZZ_MAX_MESSAGE);
        let mut input = rest;
        while input.len() >= 2 {
            let len = u16::from_le_bytes([input[0], input[1]]) as usize;
            let end = (2 + len).min(input.len());
            let frame = &input[2..end];
            input = &input[end..];
            match r.frame(frame) {
                Ok(Received::Message(m)) => {
                    assert!(m.bytes.len() <= FUZZ_MAX_MESSAGE, "oversize message");
                }
                Ok(Received::Batch(ms)) => {
                    assert!(!ms.is_empty(), "an empty batch came out");
                    for m in ms {
                        assert!(
                            m.bytes.len() <= FUZZ_MAX_MESSAGE,
                            "oversize batched message"
                        );
                    }
                }
                _ => {}
            }
            assert!(r.pending_bytes() <= 2 * FUZZ_MAX_MESSAGE, "over budget");
        }
        return;
    }
    // Up to MAX_IN_FLIGHT messages; sizes from the input, contents derived.
    let count = (rest.first().copied().unwrap_or(1) as usize % MAX_IN_FLIGHT) + 1;
    let order = rest.get(1..).unwrap_or(&[]);
    // Together they stay within the reassembler's budget (two maximum-size
    // messages), so every one must come out.
    let mut total = 0;
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i| order.get(i).map_or(0, |&b| b as usize * SIZE_UNIT))
        .take_while(|size| {
            total += size;
            total <= 2 * FUZZ_MAX_MESSAGE
        })
        .enumerate()
        .map(|(i, size)| (0..size).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    let count = messages.len();
    let mut chunkers: Vec<Chunker> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| Chunker::new(i as u32 + 1, PayloadType::Binary, m.clone()))
        .collect();
    let mut r = Reassembler::new(FUZZ_MAX_MESSAGE);
    let mut done: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut picks = order.iter().cycle();
    let mut live: Vec<usize> = (0..count).collect();
    while !live.is_empty() {
        let k = picks.next().map_or(0, |&b| b as usize) % live.len();
        let i = live[k];
        match chunkers[i].next_frame() {
            Some(frame) => match r.frame(&frame) {
                Ok(Received::Message(m)) => {
                    assert!(done[i].is_none(), "message {i} delivered twice");
                    done[i] = Some(m.bytes);
                }
                Ok(Received::Partial) => {}
                other => panic!("a well-formed frame was refused: {other:?}"),
            },
            None => {
                live.remove(k);
            }
        }
    }
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(done[i].as_ref(), Some(m), "message {i} came out changed");
    }
    assert_eq!(r.pending_bytes(), 0, "nothing left half-assembled");
}

/// The rest codec: URLs, queries, request/response heads and routing.
pub fn rest_codec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = RestUrl::parse(text) {
        assert!(
            url.path.starts_with('/'),
            "a parsed path is absolute: {url:?}"
        );
    }
    let _ = parse_query(text);
    if let Ok(head) = serde_json::from_str::<RequestHead>(text) {
        let again = serde_json::to_string(&head).expect("a head encodes");
        assert_eq!(serde_json::from_str::<RequestHead>(&again).ok(), Some(head));
    }
    if let Ok(head) = serde_json::from_str::<ResponseHead>(text) {
        let again = serde_json::to_string(&head).expect("a head encodes");
        assert_eq!(
            serde_json::from_str::<ResponseHead>(&again).ok(),
            Some(head)
        );
    }
    // The first line is a route pattern, the rest are paths to match.
    let mut lines = text.lines();
    let mut router = Router::default();
    if let Some(pattern) = lines.next() {
        if router.add(None, pattern).is_ok() {
            for path in lines {
                if let Some(m) = router.find("GET", path) {
                    assert_eq!(m.route, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every kept input (crashes found by fuzzing, and seeds) through
    /// its target.
    #[test]
    fn every_kept_fuzz_input_still_passes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        let mut replayed = 0;
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{} fails again", path.display());
                replayed += 1;
            }
        }
        assert!(replayed >= TARGETS.len(), "only {replayed} inputs kept");
    }
}
