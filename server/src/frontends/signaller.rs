//! signaller's protocol: `/listen/<handle>` and `/connect/<handle>`, where
//! the WebSocket itself is the pipe between two peers. What one side sends
//! (text or binary) reaches the other as is, in order.
//!
//! Over the hub it is a rendezvous key (`sg-<handle>`, apart from the SDK's
//! keys): the listener registers an assigned id and opens the key, the
//! connector registers one and joins it, and each message goes as a
//! `signal` to the other id (`{"t": text}` or `{"b": base64}`; `{"end":
//! code}` closes the other side with that code). So the broker's limits,
//! origins, metrics and network of brokers hold here too, and its listen
//! and pipe deadlines close with signaller's 4000 and 4001.
//!
//! Close codes, as signaller's: 1000 when the other side closed normally,
//! 1011 when it went away without closing, 1009 for a message over
//! `--signaller-max-bytes`, 4000 nobody connected within
//! `--listen-timeout-ms`, 4001 the pipe outlived `--pipe-timeout-ms`, 4002
//! one side sent more than `--signaller-max-messages` (both sides close).

use base64::Engine as _;
use peerwire::protocol::json::Json;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode};
use serde_json::{Value, json};

/// Whether `handle` is one signaller accepts: 3–32 characters, a lowercase
/// letter first, then lowercase letters, digits and single underscores.
pub fn valid_handle(handle: &str) -> bool {
    let b = handle.as_bytes();
    (3..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !handle.contains("__")
        && !handle.ends_with('_')
}

/// The hub's rendezvous key for a handle.
pub fn key(handle: &str) -> String {
    format!("sg-{handle}")
}

/// Which end of the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Listen,
    Connect,
}

/// A message from the client, waiting for the other side to be known.
enum Held {
    Text(String),
    Binary(Vec<u8>),
}

/// One signaller client's connection.
pub struct Connection {
    handle: String,
    role: Role,
    /// The other side's id, once paired.
    partner: Option<String>,
    held: Vec<Held>,
    /// Messages this side has sent.
    sent: usize,
    max_messages: usize,
    next_rid: Rid,
    /// The other side has been told this one ended.
    ended: bool,
}

/// What a client's frame asks for.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Hub(Vec<ClientMessage>),
    Held,
    /// Close this side with the code, after telling the other (the hub
    /// messages).
    Close(CloseCode, Vec<ClientMessage>),
}

/// What a hub frame means for the client.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    /// Requests to make now (what was held for the other side).
    Hub(Vec<ClientMessage>),
    Close(CloseCode),
    Nothing,
}

impl Connection {
    pub fn new(handle: String, role: Role, max_messages: usize) -> Self {
        Self {
            handle,
            role,
            partner: None,
            held: Vec::new(),
            sent: 0,
            max_messages,
            next_rid: 1,
            ended: false,
        }
    }

    fn rid(&mut self) -> Rid {
        let rid = self.next_rid;
        self.next_rid += 1;
        rid
    }

    /// What the connection starts with: an assigned id, then the key.
    pub fn start(&mut self) -> Vec<ClientMessage> {
        let register = ClientMessage::Register {
            rid: self.rid(),
            id: None,
            resume_token: None,
        };
        let key = key(&self.handle);
        let rid = self.rid();
        let pair = match self.role {
            Role::Listen => ClientMessage::OpenKey { rid, key },
            Role::Connect => ClientMessage::JoinKey { rid, key },
        };
        vec![register, pair]
    }

    fn signal(&mut self, to: &str, data: Value) -> ClientMessage {
        ClientMessage::Signal {
            rid: self.rid(),
            to: to.to_string(),
            data: Json(data.to_string()),
        }
    }

    fn carry(&mut self, held: Held) -> Inbound {
        self.sent += 1;
        if self.sent > self.max_messages {
            return Inbound::Close(
                CloseCode::TooManyMessages,
                self.end(CloseCode::TooManyMessages),
            );
        }
        match self.partner.clone() {
            Some(to) => {
                let data = encode(&held);
                Inbound::Hub(vec![self.signal(&to, data)])
            }
            None => {
                self.held.push(held);
                Inbound::Held
            }
        }
    }

    pub fn text(&mut self, text: &str) -> Inbound {
        self.carry(Held::Text(text.to_string()))
    }

    pub fn binary(&mut self, bytes: &[u8]) -> Inbound {
        self.carry(Held::Binary(bytes.to_vec()))
    }

    /// The last word to the other side when this one ends with `code`.
    pub fn end(&mut self, code: CloseCode) -> Vec<ClientMessage> {
        if std::mem::replace(&mut self.ended, true) {
            return Vec::new();
        }
        match self.partner.clone() {
            Some(to) => vec![self.signal(&to, json!({"end": code.code()}))],
            None => Vec::new(),
        }
    }

    fn paired(&mut self, partner: &str) -> Outbound {
        if self.partner.is_some() {
            return Outbound::Nothing;
        }
        self.partner = Some(partner.to_string());
        let held = std::mem::take(&mut self.held);
        let requests = held
            .iter()
            .map(|h| {
                let data = encode(h);
                self.signal(partner, data)
            })
            .collect();
        Outbound::Hub(requests)
    }

    /// A text frame from the hub for this client.
    pub fn outbound(&mut self, text: &str) -> Outbound {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Outbound::Nothing;
        };
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        let code = |k: &str| {
            msg.get(k)
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .and_then(CloseCode::from_code)
        };
        match str_of("type").unwrap_or("") {
            "key-joined" if self.role == Role::Connect => match str_of("opener") {
                Some(opener) => self.paired(opener),
                None => Outbound::Nothing,
            },
            "joiner" if self.role == Role::Listen => match str_of("id") {
                Some(id) => self.paired(id),
                None => Outbound::Nothing,
            },
            "signal" if str_of("from").is_some() && str_of("from") == self.partner.as_deref() => {
                match msg.get("data") {
                    Some(Value::Object(d)) => {
                        if let Some(t) = d.get("t").and_then(Value::as_str) {
                            Outbound::Text(t.to_string())
                        } else if let Some(b) = d.get("b").and_then(Value::as_str) {
                            match base64::engine::general_purpose::STANDARD.decode(b) {
                                Ok(bytes) => Outbound::Binary(bytes),
                                Err(_) => Outbound::Nothing,
                            }
                        } else if let Some(end) = d
                            .get("end")
                            .and_then(Value::as_u64)
                            .and_then(|c| u16::try_from(c).ok())
                            .and_then(CloseCode::from_code)
                        {
                            Outbound::Close(end)
                        } else {
                            Outbound::Nothing
                        }
                    }
                    _ => Outbound::Nothing,
                }
            }
            // The other side is gone: its key or its pairing ended.
            "unavailable" => Outbound::Close(code("code").unwrap_or(CloseCode::Normal)),
            "key-closed" => Outbound::Close(code("code").unwrap_or(CloseCode::Normal)),
            // The key was refused (taken, or gone, since the check before
            // the upgrade), or the id: nothing can be carried.
            "error" if msg.get("target").is_none() => Outbound::Close(CloseCode::InternalError),
            _ => Outbound::Nothing,
        }
    }
}

fn encode(held: &Held) -> Value {
    match held {
        Held::Text(t) => json!({"t": t}),
        Held::Binary(b) => json!({"b": base64::engine::general_purpose::STANDARD.encode(b)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_follow_signallers_rules() {
        for ok in ["abc", "a_b_c", "a1b2", &"a".repeat(32)] {
            assert!(valid_handle(ok), "{ok}");
        }
        for bad in [
            "ab",
            "1abc",
            "Abc",
            "a__b",
            "ab_",
            "a-bc",
            &"a".repeat(33),
            "a b",
        ] {
            assert!(!valid_handle(bad), "{bad}");
        }
        assert!(peerwire::protocol::ids::check_rendezvous_key(&key(&"a".repeat(32))).is_ok());
    }

    #[test]
    fn a_listener_holds_its_messages_until_someone_connects_then_both_flow() {
        let mut l = Connection::new("room_one".into(), Role::Listen, 8);
        assert!(
            matches!(&l.start()[1], ClientMessage::OpenKey { key, .. } if key == "sg-room_one")
        );
        assert_eq!(l.text("early"), Inbound::Held);
        assert_eq!(l.binary(&[1, 2]), Inbound::Held);
        let Outbound::Hub(flushed) =
            l.outbound(r#"{"type":"joiner","key":"sg-room_one","id":"p-2"}"#)
        else {
            panic!("the held messages go")
        };
        let data: Vec<String> = flushed
            .iter()
            .map(|m| match m {
                ClientMessage::Signal { to, data, .. } if to == "p-2" => data.as_str().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(data, [r#"{"t":"early"}"#, r#"{"b":"AQI="}"#]);
        // The connector's side turns them back.
        let mut c = Connection::new("room_one".into(), Role::Connect, 8);
        c.start();
        c.outbound(r#"{"type":"key-joined","rid":2,"key":"sg-room_one","opener":"p-1"}"#);
        let from = |d: &str| format!(r#"{{"type":"signal","from":"p-1","data":{d}}}"#);
        assert_eq!(c.outbound(&from(&data[0])), Outbound::Text("early".into()));
        assert_eq!(c.outbound(&from(&data[1])), Outbound::Binary(vec![1, 2]));
        // Not from the partner: nothing.
        let stranger = r#"{"type":"signal","from":"p-9","data":{"t":"x"}}"#;
        assert_eq!(c.outbound(stranger), Outbound::Nothing);
        assert_eq!(
            c.outbound(&from(r#"{"end":1000}"#)),
            Outbound::Close(CloseCode::Normal)
        );
    }

    #[test]
    fn too_many_messages_close_both_sides_with_4002_and_deadlines_close_with_theirs() {
        let mut c = Connection::new("abc".into(), Role::Connect, 2);
        c.start();
        c.outbound(r#"{"type":"key-joined","rid":2,"key":"sg-abc","opener":"p-1"}"#);
        assert!(matches!(c.text("1"), Inbound::Hub(_)));
        assert!(matches!(c.text("2"), Inbound::Hub(_)));
        let Inbound::Close(code, last) = c.text("3") else {
            panic!()
        };
        assert_eq!(code, CloseCode::TooManyMessages);
        assert!(
            matches!(&last[0], ClientMessage::Signal { data, .. } if data.as_str() == r#"{"end":4002}"#)
        );
        let u = r#"{"type":"unavailable","key":"sg-abc","id":"p-1","code":4001}"#;
        assert_eq!(c.outbound(u), Outbound::Close(CloseCode::PipeTimeout));
        let k = r#"{"type":"key-closed","key":"sg-abc","code":4000,"reason":"r"}"#;
        assert_eq!(c.outbound(k), Outbound::Close(CloseCode::ListenTimeout));
    }
}
