//! PeerJS's server protocol, so that an unmodified `peerjs` client (the npm
//! package) works against this broker by pointing its `host`, `port` and
//! `path` here.
//!
//! - `GET /<key>/id` answers a fresh id (plain text), as PeerJS's server does.
//! - `/peerjs?key=<key>&id=<id>&token=<token>` is the WebSocket. The broker
//!   registers `id` in the same hub as its own clients (same limits, auth,
//!   metrics, and the Redis network), answers `OPEN`, and carries `OFFER`,
//!   `ANSWER`, `CANDIDATE`, `LEAVE` and `EXPIRE` to their `dst` with `src`
//!   set to the sender's id (a client cannot pretend to be another).
//!   `HEARTBEAT` is read and ignored (the broker's WebSocket pings judge the
//!   connection).
//!
//! The mapping onto the hub: each message goes as a `signal` whose `data`
//! is the PeerJS message itself, so it keeps its order and the hub's
//! delivery promise. What cannot be delivered (the `dst` is not online, or
//! dropped and did not come back) is answered with PeerJS's `EXPIRE`
//! (`src` the unreachable id), which the client reports as
//! `peer-unavailable`; PeerJS's server does the same after 5 s, here it is
//! at once. Undeliverable `LEAVE` and `EXPIRE` are dropped, as there.
//!
//! Reconnects: PeerJS's client reconnects with the same id and `token`.
//! The broker keeps, per id, the PeerJS token and the hub's resume token of
//! its last registration, so a reconnect with the same token inside the
//! grace window resumes the id (and gets what was queued for it), and one
//! with another token gets `ID-TAKEN`, as PeerJS's server answers.

use std::collections::HashMap;
use std::sync::Mutex;

use peerwire::protocol::json::Json;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, ErrorCode};
use serde_json::{Value, json};

/// The WebSocket's path.
pub const PATH: &str = "/peerjs";

/// PeerJS's server's texts for a bad connect (its clients show them).
pub const INVALID_KEY: &str = "Invalid key provided";
pub const INVALID_WS_PARAMETERS: &str = "No id, token, or key supplied to websocket server";

/// The rid of the `register` a PeerJS connection starts with.
const REGISTER_RID: Rid = 1;

/// Ids whose PeerJS token (and hub resume token) the broker remembers at
/// most; past it, ids the hub no longer holds are forgotten first.
const MAX_REMEMBERED: usize = 65_536;

/// The PeerJS tokens of the ids registered through this front-end.
#[derive(Default)]
pub struct Tokens {
    /// id → (the client's PeerJS token, the hub's resume token).
    by_id: Mutex<HashMap<String, (String, String)>>,
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String)>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hub resume token to reclaim `id` with, when `token` is the
    /// PeerJS token it was last registered with.
    fn resume_token(&self, id: &str, token: &str) -> Option<String> {
        self.lock()
            .get(id)
            .filter(|(peerjs, _)| peerjs == token)
            .map(|(_, hub)| hub.clone())
    }

    /// Remembers a registration; `holds` says whether the hub still holds
    /// an id (for forgetting the others when the table is full).
    fn remember(&self, id: &str, token: &str, hub: &str, holds: impl Fn(&str) -> bool) {
        let mut by_id = self.lock();
        if by_id.len() >= MAX_REMEMBERED && !by_id.contains_key(id) {
            by_id.retain(|id, _| holds(id));
            if by_id.len() >= MAX_REMEMBERED {
                // The id still works; only a reconnect cannot resume it.
                return;
            }
        }
        by_id.insert(id.to_string(), (token.to_string(), hub.to_string()));
    }
}

/// The parameters of a PeerJS WebSocket URL, checked as PeerJS's server
/// checks them; the error is the text it sends in `ERROR`.
pub fn connect_params(query: Option<&str>, key: &str) -> Result<(String, String), &'static str> {
    let mut found: (Option<String>, Option<String>, Option<String>) = (None, None, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match name.as_ref() {
            "id" => &mut found.0,
            "token" => &mut found.1,
            "key" => &mut found.2,
            _ => continue,
        };
        *slot = Some(value.into_owned());
    }
    match found {
        (Some(id), Some(token), Some(k))
            if !id.is_empty() && !token.is_empty() && !k.is_empty() =>
        {
            if k == key {
                Ok((id, token))
            } else {
                Err(INVALID_KEY)
            }
        }
        _ => Err(INVALID_WS_PARAMETERS),
    }
}

/// The `ERROR` message PeerJS's server sends before it closes.
pub fn error_text(msg: &str) -> String {
    json!({"type": "ERROR", "payload": {"msg": msg}}).to_string()
}

/// What a client's frame asks of the hub.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Hub(ClientMessage),
    /// `HEARTBEAT`, and what PeerJS's server ignores too (not JSON, an
    /// unknown type, a message without `dst`).
    Ignore(&'static str),
}

/// What goes to the client for one of the hub's frames.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    Send(String),
    /// Send this, then close the connection (a refused registration).
    SendAndClose(String),
    Nothing,
}

/// One PeerJS client's connection.
pub struct Connection {
    id: String,
    token: String,
    /// Rids of its signals: even for `OFFER`, `ANSWER` and `CANDIDATE`
    /// (their failure is reported with `EXPIRE`), odd for `LEAVE` and
    /// `EXPIRE` (whose failure is not).
    next_rid: Rid,
}

impl Connection {
    pub fn new(id: String, token: String) -> Self {
        Self {
            id,
            token,
            next_rid: REGISTER_RID + 1,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `register` the connection starts with: reclaiming the id when
    /// the client's token is the one it last registered with.
    pub fn register(&self, tokens: &Tokens) -> ClientMessage {
        ClientMessage::Register {
            rid: REGISTER_RID,
            id: Some(self.id.clone()),
            resume_token: tokens.resume_token(&self.id, &self.token),
        }
    }

    fn rid(&mut self, report_failure: bool) -> Rid {
        let odd = u64::from(!report_failure);
        let rid = self.next_rid + odd;
        self.next_rid += 2;
        rid
    }

    /// A text frame from the client.
    pub fn inbound(&mut self, text: &str) -> Inbound {
        let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(text) else {
            return Inbound::Ignore("not a JSON object");
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let report_failure = match kind {
            "HEARTBEAT" => return Inbound::Ignore("heartbeat"),
            "OFFER" | "ANSWER" | "CANDIDATE" => true,
            "LEAVE" | "EXPIRE" => false,
            _ => return Inbound::Ignore("a type PeerJS's server does not forward"),
        };
        let Some(dst) = msg.get("dst").and_then(Value::as_str).map(str::to_string) else {
            return Inbound::Ignore("no dst");
        };
        // The receiver learns the sender from the hub, not from the sender.
        msg.remove("src");
        let rid = self.rid(report_failure);
        Inbound::Hub(ClientMessage::Signal {
            rid,
            to: dst,
            data: Json(Value::Object(msg).to_string()),
        })
    }

    /// A text frame from the hub for this client.
    pub fn outbound(
        &mut self,
        text: &str,
        tokens: &Tokens,
        holds: impl Fn(&str) -> bool,
    ) -> Outbound {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Outbound::Nothing;
        };
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        match str_of("type").unwrap_or("") {
            "registered" => {
                if let Some(hub_token) = str_of("resumeToken") {
                    tokens.remember(&self.id, &self.token, hub_token, holds);
                }
                Outbound::Send(json!({"type": "OPEN"}).to_string())
            }
            "signal" => {
                let (Some(from), Some(Value::Object(data))) = (str_of("from"), msg.get("data"))
                else {
                    return Outbound::Nothing;
                };
                let mut data = data.clone();
                data.insert("src".into(), Value::String(from.to_string()));
                Outbound::Send(Value::Object(data).to_string())
            }
            "error" => {
                let rid = msg.get("rid").and_then(Value::as_u64);
                let code = str_of("code").unwrap_or("");
                if rid == Some(REGISTER_RID) {
                    return match code {
                        "id-taken" | "bad-resume-token" => Outbound::SendAndClose(
                            json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}})
                                .to_string(),
                        ),
                        _ => Outbound::SendAndClose(error_text(
                            str_of("message").unwrap_or("registration refused"),
                        )),
                    };
                }
                let undeliverable = [
                    ErrorCode::UnknownPeer,
                    ErrorCode::PeerGone,
                    ErrorCode::QueueFull,
                    ErrorCode::Unavailable,
                ]
                .iter()
                .any(|c| c.as_str() == code);
                match (rid, str_of("target")) {
                    (Some(rid), Some(target)) if undeliverable && rid % 2 == 0 => Outbound::Send(
                        json!({"type": "EXPIRE", "src": target, "dst": self.id}).to_string(),
                    ),
                    _ => Outbound::Nothing,
                }
            }
            _ => Outbound::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn connect_params_are_checked_as_peerjs_checks_them() {
        let ok = connect_params(Some("key=peerjs&id=alice&token=t1&version=1.5.5"), "peerjs");
        assert_eq!(ok, Ok(("alice".into(), "t1".into())));
        assert_eq!(
            connect_params(Some("key=other&id=a&token=t"), "peerjs"),
            Err(INVALID_KEY)
        );
        for q in [
            None,
            Some("key=peerjs&id=a"),
            Some("key=peerjs&token=t&id="),
        ] {
            assert_eq!(
                connect_params(q, "peerjs"),
                Err(INVALID_WS_PARAMETERS),
                "{q:?}"
            );
        }
    }

    #[test]
    fn messages_go_as_signals_and_come_back_with_the_real_sender() {
        let tokens = Tokens::default();
        let mut alice = Connection::new("alice".into(), "t".into());
        let offer = r#"{"type":"OFFER","payload":{"sdp":"x","connectionId":"dc_1"},"dst":"bob","src":"mallory"}"#;
        let Inbound::Hub(ClientMessage::Signal { rid, to, data }) = alice.inbound(offer) else {
            panic!("a signal")
        };
        assert_eq!((rid % 2, to.as_str()), (0, "bob"));
        let data = value(data.as_str());
        assert!(data.get("src").is_none(), "the claimed sender is dropped");
        // What bob's connection gets from the hub, translated.
        let mut bob = Connection::new("bob".into(), "u".into());
        let hub = json!({"type": "signal", "from": "alice", "data": data}).to_string();
        let Outbound::Send(out) = bob.outbound(&hub, &tokens, |_| true) else {
            panic!("sent")
        };
        assert_eq!(
            value(&out),
            json!({"type":"OFFER","payload":{"sdp":"x","connectionId":"dc_1"},"dst":"bob","src":"alice"})
        );
        assert_eq!(
            alice.inbound(r#"{"type":"HEARTBEAT"}"#),
            Inbound::Ignore("heartbeat")
        );
        assert!(matches!(alice.inbound("[1]"), Inbound::Ignore(_)));
        assert!(matches!(
            alice.inbound(r#"{"type":"OFFER"}"#),
            Inbound::Ignore("no dst")
        ));
    }

    #[test]
    fn an_undeliverable_offer_is_expired_and_an_undeliverable_leave_is_not() {
        let tokens = Tokens::default();
        let mut alice = Connection::new("alice".into(), "t".into());
        let rid_of = |i: Inbound| match i {
            Inbound::Hub(m) => m.rid(),
            other => panic!("{other:?}"),
        };
        let offer = rid_of(alice.inbound(r#"{"type":"OFFER","payload":{},"dst":"zed"}"#));
        let leave = rid_of(alice.inbound(r#"{"type":"LEAVE","dst":"zed"}"#));
        let error = |rid| {
            json!({"type":"error","rid":rid,"code":"unknown-peer","message":"m","target":"zed"})
                .to_string()
        };
        assert_eq!(
            alice.outbound(&error(offer), &tokens, |_| true),
            Outbound::Send(json!({"type":"EXPIRE","src":"zed","dst":"alice"}).to_string())
        );
        assert_eq!(
            alice.outbound(&error(leave), &tokens, |_| true),
            Outbound::Nothing
        );
    }

    #[test]
    fn registration_opens_and_a_reconnect_with_the_same_token_resumes() {
        let tokens = Tokens::default();
        let first = Connection::new("alice".into(), "t".into());
        assert_eq!(
            first.register(&tokens),
            ClientMessage::Register {
                rid: 1,
                id: Some("alice".into()),
                resume_token: None
            }
        );
        let mut first = first;
        let registered = json!({"type":"registered","rid":1,"id":"alice","resumeToken":"hub-1"});
        assert_eq!(
            first.outbound(&registered.to_string(), &tokens, |_| true),
            Outbound::Send(r#"{"type":"OPEN"}"#.into())
        );
        let again = Connection::new("alice".into(), "t".into());
        assert!(matches!(
            again.register(&tokens),
            ClientMessage::Register { resume_token: Some(t), .. } if t == "hub-1"
        ));
        let other = Connection::new("alice".into(), "not-t".into());
        assert!(matches!(
            other.register(&tokens),
            ClientMessage::Register {
                resume_token: None,
                ..
            }
        ));
        let mut other = other;
        let taken = json!({"type":"error","rid":1,"code":"id-taken","message":"taken"});
        assert_eq!(
            other.outbound(&taken.to_string(), &tokens, |_| true),
            Outbound::SendAndClose(r#"{"payload":{"msg":"ID is taken"},"type":"ID-TAKEN"}"#.into())
        );
    }
}
