//! smoke's hub protocol (`smoke-node`'s `NetworkHub`) at `/smoke`: on
//! connect the hub sends `{type: "binding", address, configuration}` (the
//! node's address and its `RTCConfiguration`), and after that both sides
//! send `{type: "forward", from, to, data}`.
//!
//! Over the hub:
//!
//! | smoke                                   | hub                                       |
//! |-----------------------------------------|-------------------------------------------|
//! | (connect)                               | `register` of an assigned id              |
//! | `binding {address, configuration}` sent | on `registered`: its id, `{iceServers}`   |
//! | `forward {to, data}` received           | `signal {to, data}` (`from` is not read)  |
//! | `forward {from, to, data}` sent         | on `signal {from, data}`; `to` is own id  |
//!
//! The sender's `from` is the hub's, never the client's word. A forward to
//! an address nobody holds is dropped, as smoke's own hub drops it (the
//! protocol has no error message). A frame that is not a JSON object (or a
//! binary frame) closes the connection with 1007, where smoke's hub closes
//! it too; an object of another `type`, or a `forward` without a string
//! `to` and a `data`, is ignored. The id is released when the connection
//! ends: smoke has no resume.

use peerwire::protocol::json::Json;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode};
use serde_json::{Map, Value, json};

/// The WebSocket's path.
pub const PATH: &str = "/smoke";

/// The `rid` of the connection's `register`.
const REGISTER_RID: Rid = 1;

/// One smoke node's connection.
pub struct Connection {
    /// The address the hub gave, once it has.
    address: Option<String>,
    next_rid: Rid,
}

/// What a client's frame asks for.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Hub(ClientMessage),
    Ignore(&'static str),
    Close(CloseCode),
}

/// What a hub frame means for the client.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    Send(String),
    Close(CloseCode),
    Nothing,
}

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    pub fn new() -> Self {
        Self {
            address: None,
            next_rid: REGISTER_RID + 1,
        }
    }

    /// What the connection starts with: an id of the hub's choosing.
    pub fn start(&mut self) -> Vec<ClientMessage> {
        vec![ClientMessage::Register {
            rid: REGISTER_RID,
            id: None,
            resume_token: None,
        }]
    }

    /// A text frame from the client.
    pub fn text(&mut self, text: &str) -> Inbound {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Inbound::Close(CloseCode::InvalidPayload);
        };
        if msg.get("type").and_then(Value::as_str) != Some("forward") {
            return Inbound::Ignore("not a forward");
        }
        let (Some(to), Some(data)) = (msg.get("to").and_then(Value::as_str), msg.get("data"))
        else {
            return Inbound::Ignore("a forward without a string `to` and a `data`");
        };
        if self.address.is_none() {
            return Inbound::Ignore("a forward before the binding");
        }
        let rid = self.next_rid;
        self.next_rid += 1;
        Inbound::Hub(ClientMessage::Signal {
            rid,
            to: to.to_string(),
            data: Json(data.to_string()),
        })
    }

    /// A text frame from the hub for this client.
    pub fn outbound(&mut self, text: &str) -> Outbound {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Outbound::Nothing;
        };
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        match str_of("type").unwrap_or("") {
            "registered" if self.address.is_none() => {
                let Some(id) = str_of("id") else {
                    return Outbound::Close(CloseCode::InternalError);
                };
                self.address = Some(id.to_string());
                let ice = msg.get("iceServers").cloned().unwrap_or(json!([]));
                let binding = json!({
                    "type": "binding",
                    "address": id,
                    "configuration": {"iceServers": ice},
                });
                Outbound::Send(binding.to_string())
            }
            "signal" => match (&self.address, str_of("from")) {
                (Some(address), Some(from)) => {
                    let mut forward = Map::new();
                    forward.insert("type".into(), json!("forward"));
                    forward.insert("from".into(), json!(from));
                    forward.insert("to".into(), json!(address));
                    forward.insert(
                        "data".into(),
                        msg.get("data").cloned().unwrap_or(Value::Null),
                    );
                    Outbound::Send(Value::Object(forward).to_string())
                }
                _ => Outbound::Nothing,
            },
            // The id was refused: the node can never get its binding.
            "error" if msg.get("rid").and_then(Value::as_u64) == Some(REGISTER_RID) => {
                Outbound::Close(CloseCode::InternalError)
            }
            _ => Outbound::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> Connection {
        let mut c = Connection::new();
        assert!(matches!(
            &c.start()[..],
            [ClientMessage::Register { id: None, .. }]
        ));
        let registered = r#"{"type":"registered","rid":1,"id":"p-abc","resumeToken":"t","resumed":false,
            "iceServers":[{"urls":["stun:example.org:3478"]}],"graceMs":0,"protocol":1,"rooms":[]}"#;
        let Outbound::Send(binding) = c.outbound(registered) else {
            panic!("a binding")
        };
        assert_eq!(
            serde_json::from_str::<Value>(&binding).unwrap(),
            json!({"type": "binding", "address": "p-abc",
                   "configuration": {"iceServers": [{"urls": ["stun:example.org:3478"]}]}})
        );
        c
    }

    #[test]
    fn a_binding_then_forwards_both_ways_with_the_hubs_from() {
        let mut c = bound();
        let fwd = r#"{"type":"forward","from":"spoofed","to":"p-xyz","data":{"type":"offer","sdp":{"sdp":"v=0"}}}"#;
        let Inbound::Hub(ClientMessage::Signal { to, data, .. }) = c.text(fwd) else {
            panic!("a signal")
        };
        assert_eq!(to, "p-xyz");
        assert_eq!(
            serde_json::from_str::<Value>(data.as_str()).unwrap(),
            json!({"type": "offer", "sdp": {"sdp": "v=0"}})
        );
        let Outbound::Send(out) =
            c.outbound(r#"{"type":"signal","from":"p-xyz","data":{"type":"answer"}}"#)
        else {
            panic!("a forward")
        };
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"type": "forward", "from": "p-xyz", "to": "p-abc", "data": {"type": "answer"}})
        );
        // A second `registered` (there is none in this protocol) changes nothing.
        assert_eq!(
            c.outbound(r#"{"type":"registered","rid":1,"id":"p-other"}"#),
            Outbound::Nothing
        );
    }

    #[test]
    fn bad_frames_close_or_are_ignored_and_undeliverable_forwards_drop() {
        let mut c = bound();
        assert_eq!(
            c.text("not json"),
            Inbound::Close(CloseCode::InvalidPayload)
        );
        assert_eq!(c.text("[1,2]"), Inbound::Close(CloseCode::InvalidPayload));
        assert!(matches!(
            c.text(r#"{"type":"binding"}"#),
            Inbound::Ignore(_)
        ));
        assert!(matches!(
            c.text(r#"{"type":"forward","to":5,"data":1}"#),
            Inbound::Ignore(_)
        ));
        assert!(matches!(
            c.text(r#"{"type":"forward","to":"p-1"}"#),
            Inbound::Ignore(_)
        ));
        // The hub cannot deliver a signal: smoke's hub says nothing either.
        let undeliverable =
            r#"{"type":"error","rid":7,"code":"peer-not-found","message":"m","target":"p-1"}"#;
        assert_eq!(c.outbound(undeliverable), Outbound::Nothing);
        // The register refused: nothing can work.
        let mut fresh = Connection::new();
        fresh.start();
        assert!(matches!(
            fresh.text(r#"{"type":"forward","to":"p-1","data":1}"#),
            Inbound::Ignore(_)
        ));
        let refused = r#"{"type":"error","rid":1,"code":"internal","message":"m"}"#;
        assert_eq!(
            fresh.outbound(refused),
            Outbound::Close(CloseCode::InternalError)
        );
    }
}
