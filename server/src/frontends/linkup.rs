//! linkup's broker protocol at `/linkup`: JSON envelopes
//! `{id, message: {type, ...}}` answered by `{id, message, error}`, and
//! `{message: {type: "signal", ...}}` notifications both ways.
//!
//! Over the hub, each request is the native request of the same name:
//!
//! | linkup                                   | hub                       | answer                                   |
//! |------------------------------------------|---------------------------|------------------------------------------|
//! | `ping`                                   | `ping`                    | `message: "pong"`                        |
//! | `register {id}`                          | `register {id}`           | `message: id`, or `error: "id-taken: …"` |
//! | `find {id}`                              | `find {id}`               | `message: id` when online, else `null`   |
//! | `signal {to, signal}` (no `id`)          | `signal {to, data: signal}` | none; the receiver gets `signal`       |
//!
//! Every hub request gets a `rid` of this connection's own; the linkup `id`
//! of the request it answers is kept in a bounded table until the hub
//! answers. An answer the broker makes itself (an error for bad input, a
//! repeated `register` of the id already held) rides on a hub `ping`, so it
//! comes back in order with the answers before it.
//!
//! Errors are strings (linkup's client turns `error` into `new Error(error)`)
//! that start with the broker's error code: `"<code>: <what happened>"`.
//! An error about a request with an `id` carries that `id`; one about
//! something without an `id` (bad JSON, a signal that cannot be delivered)
//! is `{message: null, error}` without `id`, which linkup's client treats as
//! a notification and does not answer (an answer with `id: null` would make
//! it reply with an error, and the two would bounce forever).

use std::collections::BTreeMap;

use peerwire::protocol::json::Json;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, ErrorCode};
use serde_json::{Map, Value, json};

/// The WebSocket's path.
pub const PATH: &str = "/linkup";

/// Requests waiting for the hub's answer at most; past it the oldest is
/// forgotten (its client gets no answer and times out). The hub answers
/// `ping`, `register` and `find` at once, or after one Redis round trip in
/// a network of brokers, so only a stalled Redis fills this.
pub const MAX_PENDING: usize = 256;

/// The longest request `id` (as JSON text) the broker keeps to echo: a
/// UUID is 38. A longer one is refused (`bad-message`, answered without
/// `id`), so that the answers waiting stay small.
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// What a request waiting for the hub becomes when it is answered.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Ping,
    Register,
    Find,
    /// An answer made here, sent when the hub's `pong` comes.
    Reply(String),
}

/// One linkup client's connection.
pub struct Connection {
    /// The id the hub confirmed, once it has.
    id: Option<String>,
    /// Hub rid → (the request's linkup `id`, what it was).
    pending: BTreeMap<Rid, (Option<Value>, Pending)>,
    next_rid: Rid,
}

/// What a client's frame asks of the hub.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Hub(ClientMessage),
    /// Not answered: a response (linkup's client answers requests it gets;
    /// the broker sends it none).
    Ignore(&'static str),
}

/// An answer in linkup's envelope: `id` only when the request had one.
fn envelope(id: Option<&Value>, message: Value, error: Option<String>) -> String {
    let mut env = Map::new();
    if let Some(id) = id {
        env.insert("id".into(), id.clone());
    }
    env.insert("message".into(), message);
    env.insert("error".into(), error.map_or(Value::Null, Value::String));
    Value::Object(env).to_string()
}

/// linkup's error text: the broker's code first.
fn error_text(code: ErrorCode, detail: &str) -> String {
    format!("{}: {detail}", code.as_str())
}

/// The error answering `text`, a message the broker refuses by closing
/// the connection (`rate-limited`, `too-big`): with its `id` when it can
/// be read.
pub fn refusal(text: &str, code: ErrorCode, detail: &str) -> String {
    let id = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("id").filter(|id| !id.is_null()).cloned());
    envelope(id.as_ref(), Value::Null, Some(error_text(code, detail)))
}

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    pub fn new() -> Self {
        Self {
            id: None,
            pending: BTreeMap::new(),
            next_rid: 1,
        }
    }

    /// The id the hub confirmed.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// A hub rid for a request, remembering what answers it.
    fn track(&mut self, id: Option<Value>, pending: Pending) -> Rid {
        let rid = self.next_rid;
        self.next_rid += 1;
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_first();
        }
        self.pending.insert(rid, (id, pending));
        rid
    }

    /// An answer made here, in order behind the hub's earlier answers.
    fn reply(&mut self, id: Option<Value>, message: Value, error: Option<String>) -> Inbound {
        let text = envelope(id.as_ref(), message, error);
        Inbound::Hub(ClientMessage::Ping {
            rid: self.track(None, Pending::Reply(text)),
        })
    }

    fn refuse(&mut self, id: Option<Value>, code: ErrorCode, detail: &str) -> Inbound {
        self.reply(id, Value::Null, Some(error_text(code, detail)))
    }

    /// A text frame from the client.
    pub fn inbound(&mut self, text: &str) -> Inbound {
        let envelope = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(envelope)) => envelope,
            Ok(_) => {
                let detail = "a linkup envelope is a JSON object {id, message}";
                return self.refuse(None, ErrorCode::BadMessage, detail);
            }
            Err(_) => {
                let detail = "the frame is not valid JSON";
                return self.refuse(None, ErrorCode::BadJson, detail);
            }
        };
        if envelope.contains_key("error") {
            return Inbound::Ignore("a response (the broker sends no requests)");
        }
        let id = envelope.get("id").filter(|id| !id.is_null()).cloned();
        if id
            .as_ref()
            .is_some_and(|id| id.to_string().len() > MAX_REQUEST_ID_BYTES)
        {
            let detail = format!("the request id is longer than {MAX_REQUEST_ID_BYTES} bytes");
            return self.refuse(None, ErrorCode::BadMessage, &detail);
        }
        let Some(Value::Object(message)) = envelope.get("message") else {
            let detail = "the envelope needs a `message` object";
            return self.refuse(id, ErrorCode::BadMessage, detail);
        };
        let Some(kind) = message.get("type").and_then(Value::as_str) else {
            let detail = "the message needs a string `type`";
            return self.refuse(id, ErrorCode::BadMessage, detail);
        };
        let field = |name: &str| {
            message
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match kind {
            "ping" => {
                let rid = self.track(id, Pending::Ping);
                Inbound::Hub(ClientMessage::Ping { rid })
            }
            "register" => {
                let Some(wanted) = field("id") else {
                    let detail = "`register` needs a string `id`";
                    return self.refuse(id, ErrorCode::BadMessage, detail);
                };
                if self.id.as_deref() == Some(wanted.as_str()) {
                    // Registering the id it holds: nothing changes.
                    return self.reply(id, Value::String(wanted), None);
                }
                let rid = self.track(id, Pending::Register);
                Inbound::Hub(ClientMessage::Register {
                    rid,
                    id: Some(wanted),
                    resume_token: None,
                })
            }
            "find" => {
                let Some(wanted) = field("id") else {
                    let detail = "`find` needs a string `id`";
                    return self.refuse(id, ErrorCode::BadMessage, detail);
                };
                let rid = self.track(id, Pending::Find);
                Inbound::Hub(ClientMessage::Find { rid, id: wanted })
            }
            "signal" => {
                let Some(to) = field("to") else {
                    let detail = "`signal` needs a string `to`";
                    return self.refuse(id, ErrorCode::BadMessage, detail);
                };
                let Some(signal) = message.get("signal") else {
                    let detail = "`signal` needs a `signal`";
                    return self.refuse(id, ErrorCode::BadMessage, detail);
                };
                // The receiver learns the sender from the hub (`from` is
                // not taken from the client). Not tracked: a signal has no
                // answer, and its errors go out without `id`.
                let rid = self.next_rid;
                self.next_rid += 1;
                Inbound::Hub(ClientMessage::Signal {
                    rid,
                    to,
                    data: Json(signal.to_string()),
                })
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                let detail = format!(
                    "{shown:?} is not a linkup message type (ping, find, register, signal)"
                );
                self.refuse(id, ErrorCode::UnknownType, &detail)
            }
        }
    }

    /// A binary frame from the client: linkup's messages are JSON text.
    pub fn binary(&mut self) -> Inbound {
        let detail = "a binary frame; linkup's messages are JSON text frames";
        self.refuse(None, ErrorCode::BadMessage, detail)
    }

    /// A text frame from the hub for this client: what to send it.
    pub fn outbound(&mut self, text: &str) -> Option<String> {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        let answered = msg
            .get("rid")
            .and_then(Value::as_u64)
            .and_then(|rid| self.pending.remove(&rid));
        match (str_of("type").unwrap_or(""), answered) {
            ("signal", _) => {
                let from = str_of("from")?;
                let message = json!({
                    "type": "signal",
                    "from": from,
                    "to": self.id,
                    "signal": msg.get("data").cloned().unwrap_or(Value::Null),
                });
                Some(json!({ "message": message }).to_string())
            }
            ("pong", Some((_, Pending::Reply(text)))) => Some(text),
            ("pong", Some((id, Pending::Ping))) => {
                Some(envelope(id.as_ref(), Value::from("pong"), None))
            }
            ("registered", Some((id, Pending::Register))) => {
                let registered = str_of("id")?.to_string();
                self.id = Some(registered.clone());
                Some(envelope(id.as_ref(), Value::String(registered), None))
            }
            ("found", Some((id, Pending::Find))) => {
                let online = msg.get("online").and_then(Value::as_bool) == Some(true);
                let found = match str_of("id") {
                    Some(found) if online => Value::from(found),
                    _ => Value::Null,
                };
                Some(envelope(id.as_ref(), found, None))
            }
            ("error", answered) => {
                let code = str_of("code").unwrap_or("internal");
                let error = format!("{code}: {}", str_of("message").unwrap_or(""));
                let id = answered.and_then(|(id, _)| id);
                Some(envelope(id.as_ref(), Value::Null, Some(error)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    /// The hub rid of a request the connection made.
    fn hub(inbound: Inbound) -> ClientMessage {
        match inbound {
            Inbound::Hub(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// What the client gets when the hub answers `rid` with `pong` (for the
    /// answers the connection makes itself).
    fn pong(c: &mut Connection, rid: Rid) -> Value {
        let out = c.outbound(&json!({"type": "pong", "rid": rid}).to_string());
        value(&out.expect("an answer"))
    }

    #[test]
    fn ping_register_and_find_answer_with_the_request_id() {
        let mut c = Connection::new();
        let ping = hub(c.inbound(r#"{"id":"u-1","message":{"type":"ping"}}"#));
        assert!(matches!(ping, ClientMessage::Ping { .. }));
        assert_eq!(
            pong(&mut c, ping.rid()),
            json!({"id": "u-1", "message": "pong", "error": null})
        );
        let register = hub(c.inbound(r#"{"id":"u-2","message":{"type":"register","id":"alice"}}"#));
        let ClientMessage::Register {
            rid,
            id,
            resume_token,
        } = register
        else {
            panic!("{register:?}")
        };
        assert_eq!((id.as_deref(), resume_token), (Some("alice"), None));
        let registered = json!({"type":"registered","rid":rid,"id":"alice","resumeToken":"t"});
        assert_eq!(
            value(&c.outbound(&registered.to_string()).unwrap()),
            json!({"id": "u-2", "message": "alice", "error": null})
        );
        assert_eq!(c.id(), Some("alice"));
        for (online, message) in [(true, json!("bob")), (false, Value::Null)] {
            let find = hub(c.inbound(r#"{"id":7,"message":{"type":"find","id":"bob"}}"#));
            assert!(matches!(&find, ClientMessage::Find { id, .. } if id == "bob"));
            let found = json!({"type":"found","rid":find.rid(),"id":"bob","online":online});
            assert_eq!(
                value(&c.outbound(&found.to_string()).unwrap()),
                json!({"id": 7, "message": message, "error": null})
            );
        }
        // Registering the id it holds again: answered here, in order.
        let again = hub(c.inbound(r#"{"id":"u-3","message":{"type":"register","id":"alice"}}"#));
        assert!(matches!(again, ClientMessage::Ping { .. }));
        assert_eq!(
            pong(&mut c, again.rid()),
            json!({"id": "u-3", "message": "alice", "error": null})
        );
        assert!(c.pending.is_empty());
    }

    #[test]
    fn a_taken_id_is_an_error_string_that_starts_with_its_code() {
        let mut c = Connection::new();
        let register = hub(c.inbound(r#"{"id":"u-1","message":{"type":"register","id":"alice"}}"#));
        let taken = json!({"type":"error","rid":register.rid(),"code":"id-taken","message":"\"alice\" is held by another connection"});
        assert_eq!(
            value(&c.outbound(&taken.to_string()).unwrap()),
            json!({"id": "u-1", "message": null,
                   "error": "id-taken: \"alice\" is held by another connection"})
        );
        assert_eq!(c.id(), None);
    }

    #[test]
    fn signals_go_to_the_hub_and_come_back_in_linkups_shape() {
        let mut alice = Connection::new();
        let signal = hub(alice.inbound(
            r#"{"message":{"type":"signal","from":"mallory","to":"bob","signal":"{\"sdp\":\"x\"}"}}"#,
        ));
        let ClientMessage::Signal { to, data, .. } = &signal else {
            panic!("{signal:?}")
        };
        assert_eq!(
            (to.as_str(), data.as_str()),
            ("bob", r#""{\"sdp\":\"x\"}""#)
        );
        assert!(alice.pending.is_empty(), "a notification waits for nothing");
        // Bob's connection, registered as bob, gets it from the hub.
        let mut bob = Connection::new();
        bob.id = Some("bob".into());
        let from_hub = format!(
            r#"{{"type":"signal","from":"alice","data":{}}}"#,
            data.as_str()
        );
        assert_eq!(
            value(&bob.outbound(&from_hub).unwrap()),
            json!({"message": {"type": "signal", "from": "alice", "to": "bob",
                               "signal": "{\"sdp\":\"x\"}"}})
        );
        // Undeliverable: an error without id (the notification had none).
        let unknown = json!({"type":"error","rid":signal.rid(),"code":"unknown-peer",
                             "message":"cannot deliver to \"bob\"","target":"bob"});
        assert_eq!(
            value(&alice.outbound(&unknown.to_string()).unwrap()),
            json!({"message": null, "error": "unknown-peer: cannot deliver to \"bob\""})
        );
    }

    #[test]
    fn bad_input_gets_named_errors_and_responses_are_not_answered() {
        let long_id = json!({"id": "x".repeat(MAX_REQUEST_ID_BYTES), "message": {"type": "ping"}})
            .to_string();
        let cases = [
            ("{not json", None, "bad-json: "),
            ("[1,2]", None, "bad-message: "),
            (r#"{"id":"a"}"#, Some("a"), "bad-message: "),
            (
                r#"{"id":"b","message":{"id":"x"}}"#,
                Some("b"),
                "bad-message: ",
            ),
            (
                r#"{"id":"c","message":{"type":"register"}}"#,
                Some("c"),
                "bad-message: ",
            ),
            (
                r#"{"id":"d","message":{"type":"find","id":5}}"#,
                Some("d"),
                "bad-message: ",
            ),
            (
                r#"{"message":{"type":"signal","signal":"s"}}"#,
                None,
                "bad-message: ",
            ),
            (
                r#"{"message":{"type":"signal","to":"bob"}}"#,
                None,
                "bad-message: ",
            ),
            (
                r#"{"id":"e","message":{"type":"connect"}}"#,
                Some("e"),
                "unknown-type: ",
            ),
            (&long_id, None, "bad-message: "),
        ];
        for (text, id, prefix) in cases {
            let mut c = Connection::new();
            let ping = hub(c.inbound(text));
            assert!(matches!(ping, ClientMessage::Ping { .. }), "{text}");
            let answer = pong(&mut c, ping.rid());
            assert_eq!(answer.get("id").and_then(Value::as_str), id, "{text}");
            assert_eq!(answer["message"], Value::Null, "{text}");
            let error = answer["error"].as_str().unwrap();
            assert!(error.starts_with(prefix), "{text}: {error}");
        }
        let mut c = Connection::new();
        assert!(matches!(
            c.inbound(r#"{"id":null,"message":null,"error":"x"}"#),
            Inbound::Ignore(_)
        ));
        assert_eq!(
            value(&refusal(
                r#"{"id":"big","message":{"type":"ping"}}"#,
                ErrorCode::TooBig,
                "over 65536 bytes"
            )),
            json!({"id": "big", "message": null, "error": "too-big: over 65536 bytes"})
        );
    }

    #[test]
    fn the_pending_table_is_bounded() {
        let mut c = Connection::new();
        let first = hub(c.inbound(r#"{"id":0,"message":{"type":"ping"}}"#)).rid();
        for n in 1..=MAX_PENDING {
            c.inbound(&format!(r#"{{"id":{n},"message":{{"type":"ping"}}}}"#));
        }
        assert_eq!(c.pending.len(), MAX_PENDING);
        assert_eq!(
            c.outbound(&json!({"type":"pong","rid":first}).to_string()),
            None
        );
        // Answers the connection did not ask for are dropped.
        let stray = json!({"type":"registered","rid":9999,"id":"x","resumeToken":"t"});
        assert_eq!(c.outbound(&stray.to_string()), None);
        assert_eq!(c.id(), None);
    }
}
