//! The signal fast path: a `signal` from a client relayed without decoding
//! its `data` into a tree and encoding it again.
//!
//! Signals are most of what a busy broker relays (offers, answers, ICE
//! candidates), and the general path cost most of its CPU time in
//! serde_json: the message buffered field by field (an internally tagged
//! enum), `data` built into a `serde_json::Value` and printed back, then the
//! outgoing message serialised. Here only the envelope is read (`type`,
//! `rid`, `to`; unknown fields are skipped as the general decoder skips
//! them), `data` is borrowed as the text it came as, and the frame for the
//! receiver is spliced into one buffer of its exact length:
//! `{"type":"signal","from":<sender>,"data":<data as sent>}`.
//!
//! What the fast path takes, the general decoder takes too, with the same
//! `rid` and `to` and the same `data` once parsed (tested below), and
//! what it leaves (anything that is not a `signal` with all three fields, a
//! field given twice) goes down the general path, so that errors are
//! classified and worded exactly as before. It reads with the same parser
//! (serde_json), but only checks the grammar of `data` and of unknown
//! fields, which the general decoder parses: a text that might be refused
//! there although its grammar is right (a number with an exponent or of
//! more than [`LONG_NUMBER`] characters, out of range for an `f64`; a `\u`
//! escape of a UTF-16 surrogate, refused when lone; nesting deeper than
//! [`DEEP`], serde_json's recursion limit being 128) is decoded by the
//! general decoder first, and taken only if it is accepted there.
//!
//! The relayed `data` keeps the sender's text: its key order, spacing and
//! number spelling (the general path printed the parsed value: keys sorted,
//! spaces dropped). It is the same JSON value; docs/PROTOCOL.md says so.

use std::borrow::Cow;
use std::time::Instant;

use peerwire::protocol::ids;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, ErrorCode, ServerMessage};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::delivery::Kind;
use super::{ConnId, Hub, State, TextFrame};

/// A number longer than this may overflow an `f64` (the general decoder
/// refuses those): such a text is decoded by it first.
const LONG_NUMBER: usize = 300;

/// Nesting at which a text is decoded by the general decoder first.
const DEEP: usize = 100;

/// The envelope of a client message, borrowed from its text. Strings
/// without escapes are borrowed; `data` always is.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    rid: Option<Rid>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// `data`, even when it is `null` (an `Option` would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(de).map(Some)
}

/// A signal read on the fast path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Signal<'a> {
    pub rid: Rid,
    pub to: Cow<'a, str>,
    /// The JSON text of `data`, as sent.
    pub data: &'a str,
}

/// `text` as a signal, when it is one the fast path may take (see the
/// module's notes); `None` sends it down the general path.
pub(crate) fn read(text: &str) -> Option<Signal<'_>> {
    let signal = envelope(text)?;
    // The whole text: unknown fields are parsed by the general path too.
    if !plain(text) && ClientMessage::decode(text).is_err() {
        return None;
    }
    Some(signal)
}

/// The envelope of `text`, when it is a `signal` with its three fields.
fn envelope(text: &str) -> Option<Signal<'_>> {
    // Cheap refusal of what is plainly something else.
    if !text.contains("\"signal\"") {
        return None;
    }
    let env: Envelope = serde_json::from_str(text).ok()?;
    if env.kind != "signal" {
        return None;
    }
    let (rid, to, data) = (env.rid?, env.to?, env.data?);
    Some(Signal {
        rid,
        to,
        data: data.get(),
    })
}

/// Whether well-formed JSON `text` is one the general path certainly takes
/// as well: no number it might find out of range, no surrogate escape it
/// might find lone, no nesting near its recursion limit.
fn plain(text: &str) -> bool {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                // (The text is well-formed: every string ends, every
                // escape is whole.)
                loop {
                    i += memchr::memchr2(b'"', b'\\', &b[i..]).unwrap_or(b.len() - i);
                    if i >= b.len() || b[i] == b'"' {
                        break;
                    }
                    if b[i + 1] == b'u' && matches!(b[i + 2], b'd' | b'D') {
                        return false;
                    }
                    i += 2;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth >= DEEP {
                    return false;
                }
            }
            b']' | b'}' => depth -= 1,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < b.len()
                    && matches!(b[i + 1], b'-' | b'+' | b'.' | b'0'..=b'9' | b'e' | b'E')
                {
                    i += 1;
                    if matches!(b[i], b'e' | b'E') {
                        return false;
                    }
                }
                if i + 1 - start > LONG_NUMBER {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// The frame that relays `data` from `from`: what
/// `ServerMessage::Signal { from, data }` encodes to, in one buffer of its
/// exact length.
pub(crate) fn frame(from: &str, data: &str) -> TextFrame {
    const HEAD: &str = r#"{"type":"signal","from":"#;
    const MID: &str = r#","data":"#;
    let plain = from.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if !plain {
        // (Ids that need escaping are refused at register; kept correct
        // anyway.)
        let msg = ServerMessage::Signal {
            from: from.to_string(),
            data: peerwire::protocol::json::Json(data.to_string()),
        };
        return TextFrame::from(msg.encode());
    }
    let len = HEAD.len() + from.len() + 2 + MID.len() + data.len() + 1;
    let mut out = String::with_capacity(len);
    out.push_str(HEAD);
    out.push('"');
    out.push_str(from);
    out.push('"');
    out.push_str(MID);
    out.push_str(data);
    out.push('}');
    debug_assert_eq!(out.len(), len);
    // A string whose capacity is its length becomes shared bytes without
    // another allocation.
    TextFrame::from(out)
}

impl Hub {
    /// One text frame from `conn`, when it is a signal the fast path can
    /// take (see the module's notes): relayed, or answered with the error
    /// the general path would give, and `true`. `false`: not taken; decode
    /// it and hand it to [`Hub::handle`] or [`Hub::reject`].
    pub fn try_signal(&self, conn: ConnId, text: &str, now: Instant) -> bool {
        // Read outside the lock every connection shares.
        let Some(signal) = read(text) else {
            return false;
        };
        self.lock().signal_fast(conn, signal, now);
        true
    }
}

impl State {
    /// [`State::handle`] for a signal, in the same order: counted, its
    /// target's name checked, then the sender's registration.
    fn signal_fast(&mut self, conn: ConnId, signal: Signal<'_>, now: Instant) {
        self.metrics.messages_in.inc();
        let Signal { rid, to, data } = signal;
        if let Err(e) = ids::check_peer_id(&to) {
            return self.reply(conn, Err((ErrorCode::InvalidId, rid, e.to_string())), now);
        }
        let Some(entry) = self.conns.get(&conn) else {
            return;
        };
        let Some(me) = entry.peer.clone() else {
            return self.reply(
                conn,
                Err((ErrorCode::NotRegistered, rid, String::new())),
                now,
            );
        };
        let frame = frame(&me, data);
        if let Err(code) = self.deliver_frame(&to, frame, Some((me, rid)), Kind::Queued, now) {
            self.metrics.error(code);
            let reply = ServerMessage::delivery_error(rid, code, &to);
            self.send_conn(conn, &reply, now);
        }
    }
}

/// Test and fuzzing support (`fuzzing::signal_path`, the tests below).
#[cfg(any(test, feature = "fuzzing"))]
/// Checks `text` both ways: when the fast path takes it, the general
/// decoder takes it too, to the same signal; when the general decoder
/// reads a signal (its type spelled without escapes), the fast path
/// takes it.
pub(crate) fn agree(text: &str) -> Option<Signal<'_>> {
    use serde_json::Value;

    let fast = read(text);
    let general = ClientMessage::decode(text);
    if matches!(general, Ok(ClientMessage::Signal { .. })) && text.contains("\"signal\"") {
        assert!(fast.is_some(), "the fast path left {text:?}");
    }
    if let Some(s) = &fast {
        let Ok(ClientMessage::Signal { rid, to, data }) = &general else {
            panic!("fast path took {text:?}, the general decoder: {general:?}");
        };
        assert_eq!((s.rid, s.to.as_ref()), (*rid, to.as_str()), "{text}");
        let ours: Value = serde_json::from_str(s.data).unwrap();
        let theirs: Value = serde_json::from_str(data.as_str()).unwrap();
        assert_eq!(ours, theirs, "{text}");
        // The frame is what the general encoder writes for that data.
        let spliced = frame("alice", s.data);
        let encoded = ServerMessage::Signal {
            from: "alice".into(),
            data: peerwire::protocol::json::Json(s.data.to_string()),
        }
        .encode();
        assert_eq!(spliced.as_str(), encoded);
    }
    fast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_signals_take_the_fast_path() {
        for text in [
            r#"{"type":"signal","rid":5,"to":"bob","data":{"sdp":"v=0\r\n","n":[1,2.5,-3]}}"#,
            r#"{"rid":5,"data":null,"to":"bob","type":"signal"}"#,
            r#" { "type" : "signal" , "rid" : 0 , "to" : "b\u006fb" , "data" : "x" , "extra" : [1,{"a":2}] } "#,
            r#"{"type":"signal","rid":18446744073709551615,"to":"bob","data":{"z":1,"a":{"deep":[[[]]]}}}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":"\u00e9 is \u0041"}"#,
            // Decoded by the general decoder first, then taken.
            r#"{"type":"signal","rid":1,"to":"bob","data":[1E2, 1.5e-3]}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":"\ud83d\ude00"}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":1,"x":[1e3]}"#,
        ] {
            assert!(agree(text).is_some(), "{text}");
        }
        let s =
            read(r#"{"type":"signal","rid":7,"to":"b\u006fb","data":{"b":1, "a" :2}}"#).unwrap();
        assert_eq!(
            (s.rid, s.to.as_ref(), s.data),
            (7, "bob", r#"{"b":1, "a" :2}"#)
        );
    }

    #[test]
    fn everything_else_is_left_to_the_general_path() {
        for text in [
            r#"{"type":"ping","rid":1}"#,
            r#"{"type":"broadcast","rid":1,"room":"signal","data":"signal"}"#,
            r#"{"type":"signal","rid":1,"to":"bob"}"#,
            r#"{"type":"signal","rid":1,"data":1}"#,
            r#"{"type":"signal","to":"bob","data":1}"#,
            r#"{"type":"signal","rid":null,"to":"bob","data":1}"#,
            r#"{"type":"signal","rid":-1,"to":"bob","data":1}"#,
            r#"{"type":"signal","rid":1.5,"to":"bob","data":1}"#,
            r#"{"type":"signal","rid":1,"to":7,"data":1}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":1,"data":2}"#,
            r#"{"type":"signal","type":"signal","rid":1,"to":"bob","data":1}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":1e400}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":"\ud800"}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":1,"x":1e400}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":1,"\udc00":1}"#,
            r#"{"type":"sig\u006eal","rid":1,"to":"bob","data":1}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":{"a":1}"#,
            r#"{"type":"signal","rid":1,"to":"bob","data":1} x"#,
            r#"["signal"]"#,
            "\"signal\"",
        ] {
            assert!(agree(text).is_none(), "{text}");
        }
        let long = format!(
            r#"{{"type":"signal","rid":1,"to":"b","data":{}}}"#,
            "9".repeat(400)
        );
        assert!(agree(&long).is_none());
        let deep = format!(
            r#"{{"type":"signal","rid":1,"to":"b","data":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(agree(&deep).is_none());
        let deep_extra = format!(
            r#"{{"type":"signal","rid":1,"to":"b","data":1,"x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(agree(&deep_extra).is_none());
        for depth in [DEEP - 2, DEEP + 10] {
            let fine = format!(
                r#"{{"type":"signal","rid":1,"to":"b","data":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert!(agree(&fine).is_some(), "{depth}");
        }
    }

    /// Every text one byte away from a few signals (each byte replaced by
    /// each of a set of JSON's significant characters, or dropped): the
    /// fast path never takes what the general decoder reads otherwise.
    #[test]
    fn texts_one_byte_off_agree_with_the_general_decoder() {
        let seeds = [
            r#"{"type":"signal","rid":12,"to":"bob","data":{"t":[1,-2.5e3,"\u00e9\n"],"s":null,"b":true}}"#,
            r#"{"to":"a.b-c","data":"\ud83d\ude00","rid":3,"type":"signal","x":{}}"#,
            r#"{"to":"a.b-c","data":"\u00e9","rid":3,"type":"signal","x":[10,-1.25]}"#,
        ];
        let subs = b"\"\\{}[],:0123456789-+.eEtfnu xd\x01";
        let mut taken = 0;
        for seed in seeds {
            let seed = seed.as_bytes();
            for i in 0..seed.len() {
                let mut dropped = seed.to_vec();
                dropped.remove(i);
                let mut variants = vec![dropped];
                for &c in subs {
                    let mut v = seed.to_vec();
                    v[i] = c;
                    variants.push(v);
                }
                for v in variants {
                    if let Ok(text) = std::str::from_utf8(&v) {
                        taken += usize::from(agree(text).is_some());
                    }
                }
            }
        }
        assert!(taken > 100, "the fast path took only {taken} variants");
    }
}
