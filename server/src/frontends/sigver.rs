//! sigver's protocol at `/sigver`: an opener gives a key, joiners give the
//! same key, and the server carries `data` between each joiner and the
//! opener. JSON text frames, one object each:
//!
//! | client → broker             | meaning                                   | broker → client                         |
//! |-----------------------------|-------------------------------------------|-----------------------------------------|
//! | `{"key": k}` / `{"open": k}` | open `k` (sigver 7 / sigver 8 spelling)   | `{"isKeyOk": true}`, or `false` and close 4002 |
//! | `{"join": k, "data"?: d}`   | join `k` (with a first message)           | `{"isKeyOk": true}`, or `false` and close 4003 |
//! | `{"data": d}` (joiner)      | to the opener                             | opener gets `{"id": n, "data": d}`      |
//! | `{"id": n, "data": d}` (opener) | to joiner `n`                          | joiner gets `{"data": d}`               |
//! | (a joiner goes)             |                                           | opener gets `{"id": n, "unavailable": true}` |
//! | (the opener goes)           |                                           | its joiners close with 4004             |
//!
//! Over the hub it is a rendezvous key: the connection registers an
//! assigned id, and `open-key` / `join-key` a key derived from sigver's
//! (`sv-` and 32 hex digits of its SHA-256, since sigver's keys are any
//! string up to 512 characters). Each `data` goes as a `signal`
//! `{"sv": d}` between the two ids, `d` passed on byte for byte. Joiners
//! are numbered per opener, as sigver numbers them, from 1.
//!
//! sigver's close codes (4000 not JSON, 4001 an unknown message, 4002 the
//! key is open already, 4003 unknown key, 4004 the opener went) are sent
//! as such, with sigver's reasons; the hub's metrics count them as 1000
//! (after `isKeyOk: false`) or 1008 (policy).
//! The broker's own limits keep their codes (1009, 4002 over the rate, 4003
//! slow consumer, 4004 heartbeat). An opened key with nobody joining is
//! opened again when the hub's listen timeout closes it: sigver keeps a
//! key as long as its socket.

use std::collections::{BTreeMap, HashMap};

use peerwire::protocol::json::Json;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The WebSocket's path.
pub const PATH: &str = "/sigver";

/// sigver's longest key, in characters.
pub const MAX_KEY_CHARS: usize = 512;

/// `data` a joiner may send before the hub has confirmed its join; one
/// more closes with 4001.
pub const MAX_HELD: usize = 16;

/// Joiners an opener's connection keeps numbers for at once; a joiner
/// beyond gets nothing through (its `data` is dropped) until others go.
pub const MAX_JOINERS: usize = 1024;

/// sigver's close codes.
pub const NOT_JSON: u16 = 4000;
pub const UNKNOWN_MESSAGE: u16 = 4001;
pub const KEY_EXISTS: u16 = 4002;
pub const KEY_UNKNOWN: u16 = 4003;
pub const OPENER_GONE: u16 = 4004;

/// The hub's rendezvous key for a sigver key.
pub fn hub_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sv-{hex}")
}

/// Where the connection is.
#[derive(Debug)]
enum Role {
    /// Neither opened nor joined.
    Idle,
    /// `open-key` sent (rid), waiting for `key-opened`.
    Opening {
        key: String,
        rid: Rid,
    },
    Opener {
        key: String,
    },
    /// `join-key` sent (rid), with the `data` sent meanwhile.
    Joining {
        key: String,
        rid: Rid,
        held: Vec<String>,
    },
    /// Joined; `isKeyOk` waits for the pong of `ping` (the held data went
    /// first), when there was held data.
    Joiner {
        key: String,
        opener: String,
        ok_after: Option<Rid>,
    },
}

/// One sigver client's connection.
pub struct Connection {
    role: Role,
    /// The opener's joiners: number → hub id, and back.
    numbers: BTreeMap<u64, String>,
    ids: HashMap<String, u64>,
    next_number: u64,
    next_rid: Rid,
    /// The close frame this connection ends with, once it asked to close.
    closing: Option<(u16, String)>,
}

/// What a client's frame asks for.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Hub(Vec<ClientMessage>),
    Ignore(&'static str),
    /// Close with sigver's code and reason (see [`Connection::close_frame`]).
    Close,
}

/// What a hub frame means for the client.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    Text(String),
    /// Send, then close with sigver's code and reason.
    TextAndClose(String),
    Hub(Vec<ClientMessage>),
    Close,
    Nothing,
}

/// A client's frame: the fields sigver reads, `data` kept as sent.
struct Frame<'a> {
    key: Option<&'a RawValue>,
    open: Option<&'a RawValue>,
    join: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
}

impl<'a> Frame<'a> {
    /// `None` unless `text` is a JSON object.
    fn parse(text: &'a str) -> Option<Self> {
        let mut fields: BTreeMap<String, &'a RawValue> = serde_json::from_str(text).ok()?;
        let mut take = |name: &str| fields.remove(name);
        Some(Frame {
            key: take("key"),
            open: take("open"),
            join: take("join"),
            id: take("id"),
            data: take("data"),
        })
    }
}

/// A hub frame: the fields this dialect reads.
#[derive(Deserialize)]
struct HubFrame<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    rid: Option<Rid>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    opener: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Carried<'a> {
    #[serde(borrow)]
    sv: &'a RawValue,
}

/// A key as sigver takes it: a string of 1 to 512 characters.
fn key_of(raw: &RawValue) -> Option<String> {
    let key: String = serde_json::from_str(raw.get()).ok()?;
    (!key.is_empty() && key.chars().count() <= MAX_KEY_CHARS).then_some(key)
}

/// `reason` cut to the 123 bytes a close frame carries.
fn cut(reason: String) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn carried(data: &RawValue) -> Json {
    Json(format!(r#"{{"sv":{}}}"#, data.get()))
}

const KEY_OK: &str = r#"{"isKeyOk":true}"#;
const KEY_NOT_OK: &str = r#"{"isKeyOk":false}"#;

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    pub fn new() -> Self {
        Self {
            role: Role::Idle,
            numbers: BTreeMap::new(),
            ids: HashMap::new(),
            next_number: 1,
            next_rid: 1,
            closing: None,
        }
    }

    fn rid(&mut self) -> Rid {
        let rid = self.next_rid;
        self.next_rid += 1;
        rid
    }

    /// What the connection starts with: an assigned id.
    pub fn start(&mut self) -> Vec<ClientMessage> {
        vec![ClientMessage::Register {
            rid: self.rid(),
            id: None,
            resume_token: None,
        }]
    }

    /// The close frame the connection asked for, if it did: sigver's code
    /// and reason in place of the hub's `code`.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.closing.clone()
    }

    fn close(&mut self, code: u16, reason: String) {
        if self.closing.is_none() {
            self.closing = Some((code, cut(reason)));
        }
    }

    fn refuse(&mut self, code: u16, reason: String) -> Inbound {
        self.close(code, reason);
        Inbound::Close
    }

    /// The key of an open or a join, its request id and its hub key; or
    /// the refusal of a key that is not one, or of a second open or join.
    fn take_key(&mut self, raw: &RawValue) -> Result<(String, Rid, String), Inbound> {
        let Some(key) = key_of(raw) else {
            let why = format!("The key is not a string of 1 to {MAX_KEY_CHARS} characters");
            return Err(self.refuse(NOT_JSON, why));
        };
        if !matches!(self.role, Role::Idle) {
            let why = "This socket has opened or joined a key already".into();
            return Err(self.refuse(UNKNOWN_MESSAGE, why));
        }
        let hub = hub_key(&key);
        Ok((key, self.rid(), hub))
    }

    /// A text frame from the client.
    pub fn text(&mut self, text: &str) -> Inbound {
        let Some(frame) = Frame::parse(text) else {
            // Not JSON, or JSON but not an object.
            return self.refuse(NOT_JSON, "Server accepts only JSON string".into());
        };
        let unknown = |text: &str| format!("Unknown JSON attribute: {text}");
        if let Some(raw) = frame.key.or(frame.open) {
            let (key, rid, hub) = match self.take_key(raw) {
                Ok(taken) => taken,
                Err(refused) => return refused,
            };
            self.role = Role::Opening { key, rid };
            return Inbound::Hub(vec![ClientMessage::OpenKey { rid, key: hub }]);
        }
        if let (Some(id), Some(data)) = (frame.id, frame.data) {
            let Role::Opener { .. } = self.role else {
                return self.refuse(UNKNOWN_MESSAGE, "Only an opener sends {id, data}".into());
            };
            let to = serde_json::from_str::<u64>(id.get())
                .ok()
                .and_then(|n| self.numbers.get(&n).cloned());
            return match to {
                Some(to) => Inbound::Hub(vec![ClientMessage::Signal {
                    rid: self.rid(),
                    to,
                    data: carried(data),
                }]),
                None => Inbound::Ignore("data for a joiner this opener does not have"),
            };
        }
        if let Some(raw) = frame.join {
            let (key, rid, hub) = match self.take_key(raw) {
                Ok(taken) => taken,
                Err(refused) => return refused,
            };
            let held = frame
                .data
                .map(|d| vec![d.get().to_string()])
                .unwrap_or_default();
            self.role = Role::Joining { key, rid, held };
            return Inbound::Hub(vec![ClientMessage::JoinKey { rid, key: hub }]);
        }
        if let Some(data) = frame.data {
            return match &mut self.role {
                Role::Joiner { opener, .. } => {
                    let to = opener.clone();
                    Inbound::Hub(vec![ClientMessage::Signal {
                        rid: self.rid(),
                        to,
                        data: carried(data),
                    }])
                }
                Role::Joining { held, .. } => {
                    if held.len() >= MAX_HELD {
                        let why =
                            format!("More than {MAX_HELD} messages before the join was confirmed");
                        return self.refuse(UNKNOWN_MESSAGE, why);
                    }
                    held.push(data.get().to_string());
                    Inbound::Ignore("held until the join is confirmed")
                }
                // sigver drops it too.
                _ => Inbound::Ignore("data from a socket that has not joined"),
            };
        }
        self.refuse(UNKNOWN_MESSAGE, unknown(text))
    }

    /// A binary frame from the client: sigver reads JSON text only.
    pub fn binary(&mut self) -> Inbound {
        self.refuse(NOT_JSON, "Server accepts only JSON string".into())
    }

    /// A text frame from the hub for this client.
    pub fn outbound(&mut self, text: &str) -> Outbound {
        let Ok(frame) = serde_json::from_str::<HubFrame>(text) else {
            return Outbound::Nothing;
        };
        match frame.kind.as_str() {
            "key-opened" => match &self.role {
                Role::Opening { key, rid } if frame.rid == Some(*rid) => {
                    self.role = Role::Opener { key: key.clone() };
                    Outbound::Text(KEY_OK.into())
                }
                // Opened again after the listen timeout: nothing to say.
                _ => Outbound::Nothing,
            },
            "key-joined" => {
                let Role::Joining { key, rid, held } = &mut self.role else {
                    return Outbound::Nothing;
                };
                let (Some(opener), true) = (frame.opener, frame.rid == Some(*rid)) else {
                    return Outbound::Nothing;
                };
                let key = key.clone();
                let held = std::mem::take(held);
                if held.is_empty() {
                    self.role = Role::Joiner {
                        key,
                        opener,
                        ok_after: None,
                    };
                    return Outbound::Text(KEY_OK.into());
                }
                let mut requests: Vec<ClientMessage> = held
                    .into_iter()
                    .map(|d| ClientMessage::Signal {
                        rid: self.rid(),
                        to: opener.clone(),
                        data: Json(format!(r#"{{"sv":{d}}}"#)),
                    })
                    .collect();
                let ping = self.rid();
                requests.push(ClientMessage::Ping { rid: ping });
                self.role = Role::Joiner {
                    key,
                    opener,
                    ok_after: Some(ping),
                };
                Outbound::Hub(requests)
            }
            "pong" => match &mut self.role {
                Role::Joiner { ok_after, .. } if frame.rid.is_some() && *ok_after == frame.rid => {
                    *ok_after = None;
                    Outbound::Text(KEY_OK.into())
                }
                _ => Outbound::Nothing,
            },
            "joiner" => {
                let (Role::Opener { .. }, Some(id)) = (&self.role, frame.id) else {
                    return Outbound::Nothing;
                };
                if !self.ids.contains_key(&id) && self.numbers.len() < MAX_JOINERS {
                    let n = self.next_number;
                    self.next_number += 1;
                    self.numbers.insert(n, id.clone());
                    self.ids.insert(id, n);
                }
                Outbound::Nothing
            }
            "unavailable" => match (&self.role, frame.id) {
                (Role::Opener { .. }, Some(id)) => match self.ids.remove(&id) {
                    Some(n) => {
                        self.numbers.remove(&n);
                        Outbound::Text(format!(r#"{{"id":{n},"unavailable":true}}"#))
                    }
                    None => Outbound::Nothing,
                },
                (Role::Joiner { key, opener, .. }, Some(id)) if *opener == id => {
                    let pipe = CloseCode::PipeTimeout.code();
                    let reason = if frame.code.and_then(|c| c.as_u64()) == Some(pipe.into()) {
                        format!("{key} is no longer available: --pipe-timeout-ms passed")
                    } else {
                        format!("{key} is no longer available")
                    };
                    self.close(OPENER_GONE, reason);
                    Outbound::Close
                }
                _ => Outbound::Nothing,
            },
            // Nobody joined within the hub's listen timeout: sigver keeps
            // the key while the socket lives, so open it again.
            "key-closed" => match &self.role {
                Role::Opener { key } => {
                    let key = hub_key(key);
                    Outbound::Hub(vec![ClientMessage::OpenKey {
                        rid: self.rid(),
                        key,
                    }])
                }
                _ => Outbound::Nothing,
            },
            "signal" => {
                let Some(from) = frame.from else {
                    return Outbound::Nothing;
                };
                let Some(data) = frame
                    .data
                    .and_then(|d| serde_json::from_str::<Carried>(d.get()).ok())
                else {
                    return Outbound::Nothing;
                };
                match &self.role {
                    Role::Opener { .. } => match self.ids.get(&from) {
                        Some(n) => {
                            Outbound::Text(format!(r#"{{"id":{n},"data":{}}}"#, data.sv.get()))
                        }
                        None => Outbound::Nothing,
                    },
                    Role::Joiner { opener, .. } if *opener == from => {
                        Outbound::Text(format!(r#"{{"data":{}}}"#, data.sv.get()))
                    }
                    _ => Outbound::Nothing,
                }
            }
            // An error about a signal (its target went): sigver drops such
            // data too.
            "error" if frame.target.is_some() => Outbound::Nothing,
            "error" => self.error(frame.rid, frame.code, frame.message.unwrap_or_default()),
            _ => Outbound::Nothing,
        }
    }

    /// The hub refused a request.
    fn error(
        &mut self,
        rid: Option<Rid>,
        code: Option<serde_json::Value>,
        message: String,
    ) -> Outbound {
        let code = code
            .as_ref()
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string();
        match &self.role {
            Role::Opening { key, rid: r } if rid == Some(*r) => {
                let reason = if code == "key-taken" {
                    format!("The key {key} exists already")
                } else {
                    format!("{code}: {message}")
                };
                self.close(KEY_EXISTS, reason);
                Outbound::TextAndClose(KEY_NOT_OK.into())
            }
            Role::Joining { key, rid: r, .. } if rid == Some(*r) => {
                let reason = if code == "unknown-key" {
                    format!("Unknown key: {key}")
                } else {
                    format!("{code}: {message}")
                };
                self.close(KEY_UNKNOWN, reason);
                Outbound::TextAndClose(KEY_NOT_OK.into())
            }
            // The key was taken while it was opened again after the listen
            // timeout.
            Role::Opener { key } if code == "key-taken" => {
                let reason = format!("The key {key} exists already");
                self.close(KEY_EXISTS, reason);
                Outbound::Close
            }
            // The register failed (the broker is not up): nothing can work.
            _ if rid == Some(1) => {
                self.close(
                    CloseCode::InternalError.code(),
                    format!("{code}: {message}"),
                );
                Outbound::Close
            }
            _ => Outbound::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal_data(m: &ClientMessage) -> (&str, &str) {
        match m {
            ClientMessage::Signal { to, data, .. } => (to.as_str(), data.as_str()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_map_to_hub_keys_that_follow_the_hubs_rules() {
        for key in ["a", "Ab3xZ", "with space", &"é".repeat(512), "--"] {
            let hub = hub_key(key);
            assert!(
                peerwire::protocol::ids::check_rendezvous_key(&hub).is_ok(),
                "{hub}"
            );
            assert_eq!(hub.len(), 35);
        }
        assert_ne!(hub_key("a"), hub_key("A"));
    }

    #[test]
    fn a_joiner_holds_its_data_until_the_join_is_confirmed_then_sends_it_before_is_key_ok() {
        let mut j = Connection::new();
        j.start();
        let Inbound::Hub(join) = j.text(r#"{"join":"k","data":{"offer":1}}"#) else {
            panic!()
        };
        let ClientMessage::JoinKey { rid, key } = &join[0] else {
            panic!()
        };
        assert_eq!(key, &hub_key("k"));
        assert!(matches!(j.text(r#"{"data":"c1"}"#), Inbound::Ignore(_)));
        let joined = format!(r#"{{"type":"key-joined","rid":{rid},"key":"x","opener":"p-1"}}"#);
        let Outbound::Hub(sent) = j.outbound(&joined) else {
            panic!()
        };
        assert_eq!(signal_data(&sent[0]), ("p-1", r#"{"sv":{"offer":1}}"#));
        assert_eq!(signal_data(&sent[1]), ("p-1", r#"{"sv":"c1"}"#));
        let ClientMessage::Ping { rid: ping } = sent[2] else {
            panic!()
        };
        let pong = format!(r#"{{"type":"pong","rid":{ping}}}"#);
        assert_eq!(j.outbound(&pong), Outbound::Text(KEY_OK.into()));
        assert_eq!(j.outbound(&pong), Outbound::Nothing, "once");
        // From the opener: plain data; from anyone else: nothing.
        let from = |who: &str| format!(r#"{{"type":"signal","from":"{who}","data":{{"sv":[1]}}}}"#);
        assert_eq!(
            j.outbound(&from("p-1")),
            Outbound::Text(r#"{"data":[1]}"#.into())
        );
        assert_eq!(j.outbound(&from("p-9")), Outbound::Nothing);
    }

    #[test]
    fn too_much_held_data_closes_with_4001() {
        let mut j = Connection::new();
        j.start();
        j.text(r#"{"join":"k"}"#);
        for _ in 0..MAX_HELD {
            assert!(matches!(j.text(r#"{"data":1}"#), Inbound::Ignore(_)));
        }
        assert_eq!(j.text(r#"{"data":1}"#), Inbound::Close);
        assert_eq!(j.close_frame().map(|c| c.0), Some(UNKNOWN_MESSAGE));
    }

    #[test]
    fn an_opener_numbers_its_joiners_up_to_the_bound_and_reopens_its_key_after_the_listen_timeout()
    {
        let mut a = Connection::new();
        a.start();
        let Inbound::Hub(open) = a.text(r#"{"open":"k"}"#) else {
            panic!()
        };
        let ClientMessage::OpenKey { rid, .. } = open[0] else {
            panic!()
        };
        let opened = format!(r#"{{"type":"key-opened","rid":{rid},"key":"x"}}"#);
        assert_eq!(a.outbound(&opened), Outbound::Text(KEY_OK.into()));
        for n in 0..MAX_JOINERS + 5 {
            a.outbound(&format!(r#"{{"type":"joiner","key":"x","id":"p-{n}"}}"#));
        }
        assert_eq!(a.numbers.len(), MAX_JOINERS, "bounded");
        let from = |who: &str| format!(r#"{{"type":"signal","from":"{who}","data":{{"sv":"d"}}}}"#);
        assert_eq!(
            a.outbound(&from("p-0")),
            Outbound::Text(r#"{"id":1,"data":"d"}"#.into())
        );
        assert_eq!(
            a.outbound(&from(&format!("p-{MAX_JOINERS}"))),
            Outbound::Nothing
        );
        // A joiner gone frees its number's place.
        let gone = r#"{"type":"unavailable","key":"x","id":"p-0"}"#;
        assert_eq!(
            a.outbound(gone),
            Outbound::Text(r#"{"id":1,"unavailable":true}"#.into())
        );
        assert_eq!(a.numbers.len(), MAX_JOINERS - 1);
        // The listen timeout closed the key: opened again, silently.
        let closed = r#"{"type":"key-closed","key":"x","code":4000,"reason":"r"}"#;
        let Outbound::Hub(again) = a.outbound(closed) else {
            panic!()
        };
        assert!(matches!(&again[0], ClientMessage::OpenKey { key, .. } if *key == hub_key("k")));
        // Taken meanwhile: closed as sigver closes a taken key.
        let taken = r#"{"type":"error","rid":99,"code":"key-taken","message":"m"}"#;
        assert_eq!(a.outbound(taken), Outbound::Close);
        assert_eq!(
            a.close_frame(),
            Some((KEY_EXISTS, "The key k exists already".into()))
        );
    }

    #[test]
    fn any_input_from_either_side_is_handled_without_a_panic_and_reasons_fit_a_close_frame() {
        // Pieces of both sides' messages, shuffled together by a fixed
        // generator: every combination is handled by a named outcome.
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "null",
            "1",
            "-1",
            "1e400",
            "18446744073709551616",
            "\"key\"",
            "\"open\"",
            "\"join\"",
            "\"id\"",
            "\"data\"",
            "\"type\"",
            "\"key-opened\"",
            "\"key-joined\"",
            "\"signal\"",
            "\"unavailable\"",
            "\"error\"",
            "\"rid\"",
            "\"from\"",
            "\"opener\"",
            "\"sv\"",
            "\"p-1\"",
            "\"\\ud800\"",
            "\"é\"",
            "true",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..4000 {
            let mut c = Connection::new();
            c.start();
            for _ in 0..6 {
                let len = 1 + next(12);
                let text: String = (0..len).map(|_| pieces[next(pieces.len())]).collect();
                let _ = c.text(&text);
                let _ = c.outbound(&text);
                let wrapped = format!(r#"{{"type":"signal","from":"p-1","data":{text}}}"#);
                let _ = c.outbound(&wrapped);
            }
            if let Some((code, reason)) = c.close_frame() {
                assert!(reason.len() <= 123);
                assert!((1000..5000).contains(&code));
            }
        }
    }

    #[test]
    fn a_failed_register_closes_with_1011() {
        let mut c = Connection::new();
        c.start();
        let e = r#"{"type":"error","rid":1,"code":"unavailable","message":"no redis"}"#;
        assert_eq!(c.outbound(e), Outbound::Close);
        assert_eq!(c.close_frame().map(|c| c.0), Some(1011));
    }
}
