//! The messages themselves, and the decoder that classifies bad input.
//!
//! JSON shape: `{"type": "<kebab-case name>", ...camelCase fields}`.
//! See `docs/PROTOCOL.md` for examples of every message.

use serde::{Deserialize, Serialize};

use super::codes::ErrorCode;
use super::ids;
use super::json::{self, Json, Object, Writer};

/// User data in a message: relayed as the text it came as.
pub type Value = Json;

/// Request id: chosen by the client, echoed by the broker.
pub type Rid = u64;

/// A message a client sends to the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    /// Take an id. Without `id` the broker assigns one. With `resumeToken`
    /// the client reclaims an id it held (inside the grace window).
    /// Answered by `registered`.
    Register {
        rid: Rid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// Answered by `pong`.
    Ping { rid: Rid },
    /// Is `id` online? Answered by `found`.
    Find { rid: Rid, id: String },
    /// Relay `data` to `to`. No reply on success; `unknown-peer`,
    /// `queue-full` or (later) `peer-gone` on failure.
    Signal { rid: Rid, to: String, data: Value },
    /// Join a room. Answered by `joined` (members and state).
    Join { rid: Rid, room: String },
    /// Leave a room. Answered by `ok`.
    Leave { rid: Rid, room: String },
    /// Send `data` to every member of `room` (and to the sender too when
    /// `includeSelf`). Answered by `ok`.
    Broadcast {
        rid: Rid,
        room: String,
        data: Value,
        #[serde(default)]
        include_self: bool,
    },
    /// Set a key of the room's state, optionally expiring after `ttlMs`.
    /// Answered by `ok`; members get `state-set`.
    Set {
        rid: Rid,
        room: String,
        key: String,
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// Delete a key of the room's state. Answered by `ok`; members get
    /// `state-removed`.
    Delete { rid: Rid, room: String, key: String },
    /// Open a rendezvous key and wait for joiners. Answered by `key-opened`.
    OpenKey { rid: Rid, key: String },
    /// Join a rendezvous key. Answered by `key-joined` (with the opener's id);
    /// the opener gets `joiner`.
    JoinKey { rid: Rid, key: String },
    /// Stop being a joiner of a key. Answered by `ok`; the opener gets
    /// `unavailable`.
    LeaveKey { rid: Rid, key: String },
    /// Close a key this client opened. Answered by `ok`; joiners get
    /// `unavailable`.
    CloseKey { rid: Rid, key: String },
    /// Take `hostname` (peer-id rules) for this id until the id is
    /// released. Answered by `ok`; `hostname-taken` if another id holds it.
    RegisterHostname { rid: Rid, hostname: String },
    /// Which id holds `hostname`? Answered by `found-host`, or
    /// `unknown-host`.
    LookupHostname { rid: Rid, hostname: String },
    /// Agree to relay data with `to` through the broker (when no direct
    /// path exists). Answered by `ok` (or `relay-refused`); once both ids
    /// have agreed, both get `relay-ready`, and binary frames between them
    /// are forwarded (see [`super::relay`]).
    Relay { rid: Rid, to: String },
    /// End the relay with `to`. Answered by `ok`; `to` gets `relay-closed`.
    RelayEnd { rid: Rid, to: String },
}

impl ClientMessage {
    /// Every `type` a client may send.
    pub const TYPES: [&'static str; 17] = [
        "register",
        "ping",
        "find",
        "signal",
        "join",
        "leave",
        "broadcast",
        "set",
        "delete",
        "open-key",
        "join-key",
        "leave-key",
        "close-key",
        "register-hostname",
        "lookup-hostname",
        "relay",
        "relay-end",
    ];

    /// The request id.
    pub fn rid(&self) -> Rid {
        match self {
            Self::Register { rid, .. }
            | Self::Ping { rid }
            | Self::Find { rid, .. }
            | Self::Signal { rid, .. }
            | Self::Join { rid, .. }
            | Self::Leave { rid, .. }
            | Self::Broadcast { rid, .. }
            | Self::Set { rid, .. }
            | Self::Delete { rid, .. }
            | Self::OpenKey { rid, .. }
            | Self::JoinKey { rid, .. }
            | Self::LeaveKey { rid, .. }
            | Self::CloseKey { rid, .. }
            | Self::RegisterHostname { rid, .. }
            | Self::LookupHostname { rid, .. }
            | Self::Relay { rid, .. }
            | Self::RelayEnd { rid, .. } => *rid,
        }
    }

    /// The request id, to set (a client numbers a request when it sends it).
    pub fn rid_mut(&mut self) -> &mut Rid {
        match self {
            Self::Register { rid, .. }
            | Self::Ping { rid }
            | Self::Find { rid, .. }
            | Self::Signal { rid, .. }
            | Self::Join { rid, .. }
            | Self::Leave { rid, .. }
            | Self::Broadcast { rid, .. }
            | Self::Set { rid, .. }
            | Self::Delete { rid, .. }
            | Self::OpenKey { rid, .. }
            | Self::JoinKey { rid, .. }
            | Self::LeaveKey { rid, .. }
            | Self::CloseKey { rid, .. }
            | Self::RegisterHostname { rid, .. }
            | Self::LookupHostname { rid, .. }
            | Self::Relay { rid, .. }
            | Self::RelayEnd { rid, .. } => rid,
        }
    }

    /// Checks every name in the message against [`ids`], returning the
    /// error code and the rule that was broken.
    pub fn validate(&self) -> Result<(), (ErrorCode, String)> {
        let id = |s: &str| ids::check_peer_id(s).map_err(|e| (ErrorCode::InvalidId, e.to_string()));
        let room =
            |s: &str| ids::check_room(s).map_err(|e| (ErrorCode::InvalidRoom, e.to_string()));
        let key = |s: &str| {
            ids::check_rendezvous_key(s).map_err(|e| (ErrorCode::InvalidKey, e.to_string()))
        };
        match self {
            Self::Register { id: Some(i), .. } => id(i),
            Self::Register { id: None, .. } | Self::Ping { .. } => Ok(()),
            Self::Find { id: i, .. }
            | Self::Signal { to: i, .. }
            | Self::Relay { to: i, .. }
            | Self::RelayEnd { to: i, .. } => id(i),
            Self::Join { room: r, .. }
            | Self::Leave { room: r, .. }
            | Self::Broadcast { room: r, .. } => room(r),
            Self::Set {
                room: r, key: k, ..
            }
            | Self::Delete {
                room: r, key: k, ..
            } => {
                room(r)?;
                ids::check_state_key(k).map_err(|e| (ErrorCode::InvalidStateKey, e.to_string()))
            }
            Self::OpenKey { key: k, .. }
            | Self::JoinKey { key: k, .. }
            | Self::LeaveKey { key: k, .. }
            | Self::CloseKey { key: k, .. } => key(k),
            Self::RegisterHostname { hostname: h, .. }
            | Self::LookupHostname { hostname: h, .. } => {
                ids::check_hostname(h).map_err(|e| (ErrorCode::InvalidHostname, e.to_string()))
            }
        }
    }

    /// Decodes one text frame, classifying failures as the protocol table
    /// says: `bad-json`, `bad-message` or `unknown-type`, keeping the `rid`
    /// when one could be read so the error can be matched to the request.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        match serde_json::from_str::<Self>(text) {
            Ok(msg) => Ok(msg),
            Err(err) => Err(DecodeError::classify(text, err)),
        }
    }

    /// Encodes as one JSON text frame (the SDK side; no serde, see
    /// [`json`]). The broker's serde decoder reads it back (tested below).
    pub fn encode(&self) -> String {
        let mut w = Writer::new();
        let (kind, rid) = (Self::TYPES[self.index()], self.rid());
        w.str("type", kind).u64("rid", rid);
        match self {
            Self::Register {
                id, resume_token, ..
            } => w
                .opt_str("id", id.as_deref())
                .opt_str("resumeToken", resume_token.as_deref()),
            Self::Ping { .. } => &mut w,
            Self::Find { id, .. } => w.str("id", id),
            Self::Relay { to, .. } | Self::RelayEnd { to, .. } => w.str("to", to),
            Self::Signal { to, data, .. } => w.str("to", to).raw("data", data.as_str()),
            Self::Join { room, .. } | Self::Leave { room, .. } => w.str("room", room),
            Self::Broadcast {
                room,
                data,
                include_self,
                ..
            } => w
                .str("room", room)
                .raw("data", data.as_str())
                .bool("includeSelf", *include_self),
            Self::Set {
                room,
                key,
                value,
                ttl_ms,
                ..
            } => w
                .str("room", room)
                .str("key", key)
                .raw("value", value.as_str())
                .opt_u64("ttlMs", *ttl_ms),
            Self::Delete { room, key, .. } => w.str("room", room).str("key", key),
            Self::OpenKey { key, .. }
            | Self::JoinKey { key, .. }
            | Self::LeaveKey { key, .. }
            | Self::CloseKey { key, .. } => w.str("key", key),
            Self::RegisterHostname { hostname, .. } | Self::LookupHostname { hostname, .. } => {
                w.str("hostname", hostname)
            }
        };
        w.finish()
    }

    /// This message's position in [`Self::TYPES`].
    fn index(&self) -> usize {
        match self {
            Self::Register { .. } => 0,
            Self::Ping { .. } => 1,
            Self::Find { .. } => 2,
            Self::Signal { .. } => 3,
            Self::Join { .. } => 4,
            Self::Leave { .. } => 5,
            Self::Broadcast { .. } => 6,
            Self::Set { .. } => 7,
            Self::Delete { .. } => 8,
            Self::OpenKey { .. } => 9,
            Self::JoinKey { .. } => 10,
            Self::LeaveKey { .. } => 11,
            Self::CloseKey { .. } => 12,
            Self::RegisterHostname { .. } => 13,
            Self::LookupHostname { .. } => 14,
            Self::Relay { .. } => 15,
            Self::RelayEnd { .. } => 16,
        }
    }
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    /// `bad-json`, `bad-message` or `unknown-type`.
    pub code: ErrorCode,
    /// The request id, when the frame had a readable one.
    pub rid: Option<Rid>,
    /// What was wrong, for a developer.
    pub message: String,
}

impl DecodeError {
    fn classify(text: &str, err: serde_json::Error) -> Self {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Self {
                    code: ErrorCode::BadJson,
                    rid: None,
                    message: format!("frame is not JSON: {e}"),
                };
            }
        };
        let Some(obj) = value.as_object() else {
            return Self {
                code: ErrorCode::BadMessage,
                rid: None,
                message: "a message must be a JSON object".into(),
            };
        };
        let rid = obj.get("rid").and_then(serde_json::Value::as_u64);
        match obj.get("type").and_then(serde_json::Value::as_str) {
            None => Self {
                code: ErrorCode::BadMessage,
                rid,
                message: "a message needs a string `type`".into(),
            },
            Some(t) if !ClientMessage::TYPES.contains(&t) => Self {
                code: ErrorCode::UnknownType,
                rid,
                message: format!(
                    "unknown message type {:?}",
                    t.chars().take(40).collect::<String>()
                ),
            },
            Some(t) => Self {
                code: ErrorCode::BadMessage,
                rid,
                message: format!("bad `{t}` message: {err}"),
            },
        }
    }
}

/// One STUN or TURN server, shaped like the browser's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (for credentials from a shared secret: `expiry:id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// One key of a room's state, as sent in `joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    pub key: String,
    pub value: Value,
    /// The peer that last set it.
    pub from: String,
    /// Milliseconds left before it expires, if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// Why a state key went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalReason {
    /// A member deleted it.
    Deleted,
    /// Its TTL ran out.
    Expired,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Expired => "expired",
        }
    }
}

/// A message the broker sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// The id is yours. Keep `resumeToken` to reclaim it within `graceMs`
    /// after a drop. `rooms` lists rooms kept from before a resume; a
    /// `joined` without `rid` follows for each with its current members and
    /// state.
    Registered {
        rid: Rid,
        id: String,
        resume_token: String,
        resumed: bool,
        ice_servers: Vec<IceServer>,
        grace_ms: u64,
        protocol: u32,
        #[serde(default)]
        rooms: Vec<String>,
        /// The connection's message rate (`--rate-limit`, per second) and
        /// burst (`--rate-burst`): past them the broker closes with 4002,
        /// so the SDK paces what it sends to stay within them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_burst: Option<u64>,
        /// The largest text frame the broker takes from this connection
        /// (`--max-frame-bytes`; 1009 above it): the SDK refuses larger
        /// messages locally, with a named error, instead of losing the link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_frame_bytes: Option<u64>,
    },
    Pong {
        rid: Rid,
    },
    Found {
        rid: Rid,
        id: String,
        online: bool,
    },
    /// A relayed signal.
    Signal {
        from: String,
        data: Value,
    },
    /// You are in `room`. Without `rid`: a resync after a resume.
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<Rid>,
        room: String,
        members: Vec<String>,
        state: Vec<StateEntry>,
    },
    /// The request succeeded and has nothing else to say.
    Ok {
        rid: Rid,
    },
    PeerJoined {
        room: String,
        id: String,
    },
    PeerLeft {
        room: String,
        id: String,
    },
    Broadcast {
        room: String,
        from: String,
        data: Value,
    },
    StateSet {
        room: String,
        key: String,
        value: Value,
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    StateRemoved {
        room: String,
        key: String,
        reason: RemovalReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    KeyOpened {
        rid: Rid,
        key: String,
    },
    /// You joined `key`; `opener` is the peer to signal.
    KeyJoined {
        rid: Rid,
        key: String,
        opener: String,
    },
    /// To the opener: `id` joined your key.
    Joiner {
        key: String,
        id: String,
    },
    /// To the opener: joiner `id` left. To a joiner: the opener (`id`) left
    /// or closed the key. `code` says why when the broker ended the pairing
    /// itself: 4001 (pipe timeout), or 4000 (the key's listen timeout).
    Unavailable {
        key: String,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
    },
    /// To the opener: the broker closed your key (`code` 4000: nobody joined
    /// within the listen timeout).
    KeyClosed {
        key: String,
        code: u16,
        reason: String,
    },
    /// `hostname` is held by `id` (the answer to `lookup-hostname`).
    FoundHost {
        rid: Rid,
        hostname: String,
        id: String,
    },
    /// Both this client and `id` agreed to relay: binary frames between
    /// them are forwarded from now on, up to `rate` bytes a second each way.
    RelayReady {
        id: String,
        rate: u64,
    },
    /// The relay with `id` ended: `id` ended it or went offline
    /// (`peer-gone`), or the broker did (`relay-limit`: a cap was passed).
    RelayClosed {
        id: String,
        code: ErrorCode,
        message: String,
    },
    /// A request failed, or (with `target`) a message to `target` could not
    /// be delivered.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<Rid>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
}

impl ServerMessage {
    /// An error answering request `rid`, with the code's hint appended.
    pub fn error(rid: Option<Rid>, code: ErrorCode, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let message = if detail.is_empty() {
            code.hint().to_string()
        } else {
            format!("{detail} ({})", code.hint())
        };
        Self::Error {
            rid,
            code,
            message,
            target: None,
        }
    }

    /// An error about a message to `target` that could not be delivered.
    pub fn delivery_error(rid: Rid, code: ErrorCode, target: &str) -> Self {
        let message = format!("cannot deliver to {target:?}: {}", code.hint());
        Self::Error {
            rid: Some(rid),
            code,
            message,
            target: Some(target.to_string()),
        }
    }

    /// Encodes as one JSON text frame (the broker side, with serde).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    /// Decodes one text frame (the SDK side; no serde, see [`json`]).
    pub fn decode(text: &str) -> Result<Self, json::Error> {
        let o = Object::parse(text)?;
        let rid = || o.u64("rid");
        let s = |k| o.str(k);
        Ok(match o.str("type")?.as_str() {
            "registered" => Self::Registered {
                rid: rid()?,
                id: s("id")?,
                resume_token: s("resumeToken")?,
                resumed: o.bool("resumed")?,
                ice_servers: o
                    .array("iceServers")?
                    .into_iter()
                    .map(IceServer::decode)
                    .collect::<Result<_, _>>()?,
                grace_ms: o.u64("graceMs")?,
                protocol: u32::try_from(o.u64("protocol")?)
                    .map_err(|_| json::Error("protocol version out of range"))?,
                rooms: o.strings("rooms")?,
                rate_limit: o.opt_u64("rateLimit")?,
                rate_burst: o.opt_u64("rateBurst")?,
                max_frame_bytes: o.opt_u64("maxFrameBytes")?,
            },
            "pong" => Self::Pong { rid: rid()? },
            "found" => Self::Found {
                rid: rid()?,
                id: s("id")?,
                online: o.bool("online")?,
            },
            "signal" => Self::Signal {
                from: s("from")?,
                data: o.json("data"),
            },
            "joined" => Self::Joined {
                rid: o.opt_u64("rid")?,
                room: s("room")?,
                members: o.strings("members")?,
                state: o
                    .array("state")?
                    .into_iter()
                    .map(StateEntry::decode)
                    .collect::<Result<_, _>>()?,
            },
            "ok" => Self::Ok { rid: rid()? },
            "peer-joined" => Self::PeerJoined {
                room: s("room")?,
                id: s("id")?,
            },
            "peer-left" => Self::PeerLeft {
                room: s("room")?,
                id: s("id")?,
            },
            "broadcast" => Self::Broadcast {
                room: s("room")?,
                from: s("from")?,
                data: o.json("data"),
            },
            "state-set" => Self::StateSet {
                room: s("room")?,
                key: s("key")?,
                value: o.json("value"),
                from: s("from")?,
                ttl_ms: o.opt_u64("ttlMs")?,
            },
            "state-removed" => Self::StateRemoved {
                room: s("room")?,
                key: s("key")?,
                reason: match s("reason")?.as_str() {
                    "deleted" => RemovalReason::Deleted,
                    "expired" => RemovalReason::Expired,
                    _ => return Err(json::Error("unknown removal reason")),
                },
                from: o.opt_str("from")?,
            },
            "key-opened" => Self::KeyOpened {
                rid: rid()?,
                key: s("key")?,
            },
            "key-joined" => Self::KeyJoined {
                rid: rid()?,
                key: s("key")?,
                opener: s("opener")?,
            },
            "joiner" => Self::Joiner {
                key: s("key")?,
                id: s("id")?,
            },
            "unavailable" => Self::Unavailable {
                key: s("key")?,
                id: s("id")?,
                code: o.opt_u64("code")?.map(code16).transpose()?,
            },
            "key-closed" => Self::KeyClosed {
                key: s("key")?,
                code: code16(o.u64("code")?)?,
                reason: s("reason")?,
            },
            "found-host" => Self::FoundHost {
                rid: rid()?,
                hostname: s("hostname")?,
                id: s("id")?,
            },
            "relay-ready" => Self::RelayReady {
                id: s("id")?,
                rate: o.u64("rate")?,
            },
            "relay-closed" => Self::RelayClosed {
                id: s("id")?,
                code: ErrorCode::from_wire(&s("code")?).ok_or(json::Error("unknown error code"))?,
                message: s("message")?,
            },
            "error" => Self::Error {
                rid: o.opt_u64("rid")?,
                code: ErrorCode::from_wire(&s("code")?).ok_or(json::Error("unknown error code"))?,
                message: s("message")?,
                target: o.opt_str("target")?,
            },
            _ => return Err(json::Error("unknown message type")),
        })
    }
}

fn code16(n: u64) -> Result<u16, json::Error> {
    u16::try_from(n).map_err(|_| json::Error("close code out of range"))
}

impl IceServer {
    /// Reads one server as the broker or the user wrote it (`urls` may be
    /// one string).
    pub fn decode(text: &str) -> Result<Self, json::Error> {
        let o = Object::parse(text)?;
        let urls = match o.opt_str("urls") {
            Ok(Some(one)) => vec![one],
            _ => o.strings("urls")?,
        };
        Ok(Self {
            urls,
            username: o.opt_str("username")?,
            credential: o.opt_str("credential")?,
        })
    }

    /// As `RTCIceServer` JSON.
    pub fn encode(&self) -> String {
        Writer::new()
            .raw("urls", &json::string_array(&self.urls))
            .opt_str("username", self.username.as_deref())
            .opt_str("credential", self.credential.as_deref())
            .finish()
    }
}

impl StateEntry {
    fn decode(text: &str) -> Result<Self, json::Error> {
        let o = Object::parse(text)?;
        Ok(Self {
            key: o.str("key")?,
            value: o.json("value"),
            from: o.str("from")?,
            ttl_ms: o.opt_u64("ttlMs")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// User data for the examples.
    macro_rules! json {
        ($($t:tt)+) => { Json(serde_json::json!($($t)+).to_string()) };
    }

    fn client_examples() -> Vec<ClientMessage> {
        use ClientMessage::*;
        vec![
            Register {
                rid: 1,
                id: Some("alice".into()),
                resume_token: None,
            },
            Register {
                rid: 2,
                id: None,
                resume_token: Some("tok".into()),
            },
            Ping { rid: 3 },
            Find {
                rid: 4,
                id: "bob".into(),
            },
            Signal {
                rid: 5,
                to: "bob".into(),
                data: json!({"sdp": "v=0", "n": [1, 2]}),
            },
            Join {
                rid: 6,
                room: "lobby".into(),
            },
            Leave {
                rid: 7,
                room: "lobby".into(),
            },
            Broadcast {
                rid: 8,
                room: "lobby".into(),
                data: json!("hi"),
                include_self: true,
            },
            Set {
                rid: 9,
                room: "lobby".into(),
                key: "k".into(),
                value: json!(1),
                ttl_ms: Some(500),
            },
            Delete {
                rid: 10,
                room: "lobby".into(),
                key: "k".into(),
            },
            OpenKey {
                rid: 11,
                key: "a_key".into(),
            },
            JoinKey {
                rid: 12,
                key: "a_key".into(),
            },
            LeaveKey {
                rid: 13,
                key: "a_key".into(),
            },
            CloseKey {
                rid: 14,
                key: "a_key".into(),
            },
            RegisterHostname {
                rid: 15,
                hostname: "printer.local".into(),
            },
            LookupHostname {
                rid: 16,
                hostname: "printer.local".into(),
            },
            Relay {
                rid: 16,
                to: "bob".into(),
            },
            RelayEnd {
                rid: 17,
                to: "bob".into(),
            },
        ]
    }

    fn server_examples() -> Vec<ServerMessage> {
        use ServerMessage::*;
        let ice = IceServer {
            urls: vec!["turn:t.example:3478".into()],
            username: Some("1700000000:alice".into()),
            credential: Some("c2VjcmV0".into()),
        };
        vec![
            Registered {
                rid: 1,
                id: "alice".into(),
                resume_token: "tok".into(),
                resumed: false,
                ice_servers: vec![ice],
                grace_ms: 10_000,
                protocol: 1,
                rooms: vec!["lobby".into()],
                rate_limit: Some(50),
                rate_burst: Some(200),
                max_frame_bytes: Some(65_536),
            },
            Pong { rid: 2 },
            Found {
                rid: 3,
                id: "bob".into(),
                online: true,
            },
            Signal {
                from: "bob".into(),
                data: json!({"candidate": null}),
            },
            Joined {
                rid: Some(4),
                room: "lobby".into(),
                members: vec!["alice".into(), "bob".into()],
                state: vec![StateEntry {
                    key: "k".into(),
                    value: json!([1]),
                    from: "bob".into(),
                    ttl_ms: Some(9),
                }],
            },
            Joined {
                rid: None,
                room: "lobby".into(),
                members: vec![],
                state: vec![],
            },
            Ok { rid: 5 },
            PeerJoined {
                room: "lobby".into(),
                id: "carol".into(),
            },
            PeerLeft {
                room: "lobby".into(),
                id: "carol".into(),
            },
            Broadcast {
                room: "lobby".into(),
                from: "bob".into(),
                data: json!({"x": 1}),
            },
            StateSet {
                room: "lobby".into(),
                key: "k".into(),
                value: json!("v"),
                from: "bob".into(),
                ttl_ms: None,
            },
            StateRemoved {
                room: "lobby".into(),
                key: "k".into(),
                reason: RemovalReason::Expired,
                from: None,
            },
            KeyOpened {
                rid: 6,
                key: "a_key".into(),
            },
            KeyJoined {
                rid: 7,
                key: "a_key".into(),
                opener: "alice".into(),
            },
            Joiner {
                key: "a_key".into(),
                id: "bob".into(),
            },
            Unavailable {
                key: "a_key".into(),
                id: "bob".into(),
                code: None,
            },
            Unavailable {
                key: "a_key".into(),
                id: "bob".into(),
                code: Some(4001),
            },
            KeyClosed {
                key: "a_key".into(),
                code: 4000,
                reason: "listen timeout".into(),
            },
            FoundHost {
                rid: 10,
                hostname: "printer.local".into(),
                id: "alice".into(),
            },
            RelayReady {
                id: "bob".into(),
                rate: 1_048_576,
            },
            RelayClosed {
                id: "bob".into(),
                code: ErrorCode::RelayLimit,
                message: "the relay with \"bob\" passed --relay-max-bytes".into(),
            },
            ServerMessage::error(Some(8), ErrorCode::IdTaken, "id \"alice\" is taken"),
            ServerMessage::delivery_error(9, ErrorCode::UnknownPeer, "bob"),
        ]
    }

    /// Found by fuzzing: without correctly rounded float parsing, a large
    /// number in `data` came out of the relay as a different number.
    #[test]
    fn numbers_in_relayed_data_keep_their_value() {
        let text = r#"{"type":"signal","rid":1,"to":"b","data":[4444444444444444444444434444444444444,-0.04444444444444444,1e-300]}"#;
        let msg = ClientMessage::decode(text).unwrap();
        assert_eq!(ClientMessage::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn every_client_message_round_trips() {
        let examples = client_examples();
        let mut seen: Vec<String> = Vec::new();
        for msg in examples {
            let text = msg.encode();
            assert_eq!(ClientMessage::decode(&text).unwrap(), msg, "{text}");
            let t = serde_json::from_str::<serde_json::Value>(&text).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                ClientMessage::TYPES.contains(&t.as_str()),
                "{t} missing from TYPES"
            );
            seen.push(t);
        }
        for t in ClientMessage::TYPES {
            assert!(seen.iter().any(|s| s == t), "no round-trip example for {t}");
        }
    }

    #[test]
    fn every_server_message_round_trips() {
        for msg in server_examples() {
            let text = msg.encode();
            assert_eq!(ServerMessage::decode(&text).unwrap(), msg, "{text}");
        }
    }

    #[test]
    fn wire_shape_is_camel_case_with_kebab_types() {
        let text = ClientMessage::Set {
            rid: 1,
            room: "r".into(),
            key: "k".into(),
            value: json!(1),
            ttl_ms: Some(5),
        }
        .encode();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"type": "set", "rid": 1, "room": "r", "key": "k", "value": 1, "ttlMs": 5})
        );
        let v = ClientMessage::decode(r#"{"type":"open-key","rid":3,"key":"abc"}"#).unwrap();
        assert_eq!(
            v,
            ClientMessage::OpenKey {
                rid: 3,
                key: "abc".into()
            }
        );
    }

    #[test]
    fn decode_classifies_bad_input() {
        let cases: &[(&str, ErrorCode, Option<u64>)] = &[
            ("{not json", ErrorCode::BadJson, None),
            ("", ErrorCode::BadJson, None),
            ("[1,2]", ErrorCode::BadMessage, None),
            ("\"register\"", ErrorCode::BadMessage, None),
            (r#"{"rid":4}"#, ErrorCode::BadMessage, Some(4)),
            (r#"{"type":7,"rid":4}"#, ErrorCode::BadMessage, Some(4)),
            (
                r#"{"type":"teleport","rid":5}"#,
                ErrorCode::UnknownType,
                Some(5),
            ),
            (
                r#"{"type":"signal","rid":6,"to":"bob"}"#,
                ErrorCode::BadMessage,
                Some(6),
            ),
            (
                r#"{"type":"find","rid":7,"id":42}"#,
                ErrorCode::BadMessage,
                Some(7),
            ),
            (r#"{"type":"ping"}"#, ErrorCode::BadMessage, None),
            (r#"{"type":"ping","rid":-1}"#, ErrorCode::BadMessage, None),
        ];
        for (text, code, rid) in cases {
            let err = ClientMessage::decode(text).unwrap_err();
            assert_eq!((err.code, err.rid), (*code, *rid), "{text}: {err}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn validate_names_the_broken_rule() {
        let bad = ClientMessage::Signal {
            rid: 1,
            to: "no spaces".into(),
            data: json!(null),
        };
        let (code, msg) = bad.validate().unwrap_err();
        assert_eq!(code, ErrorCode::InvalidId);
        assert!(msg.contains("letters, digits"), "{msg}");
        let bad = ClientMessage::Join {
            rid: 1,
            room: "".into(),
        };
        assert_eq!(bad.validate().unwrap_err().0, ErrorCode::InvalidRoom);
        let bad = ClientMessage::OpenKey {
            rid: 1,
            key: "A".into(),
        };
        assert_eq!(bad.validate().unwrap_err().0, ErrorCode::InvalidKey);
        let bad = ClientMessage::Delete {
            rid: 1,
            room: "r".into(),
            key: "\u{7}".into(),
        };
        assert_eq!(bad.validate().unwrap_err().0, ErrorCode::InvalidStateKey);
        let bad = ClientMessage::RegisterHostname {
            rid: 1,
            hostname: "-dash-first".into(),
        };
        let (code, msg) = bad.validate().unwrap_err();
        assert_eq!(code, ErrorCode::InvalidHostname);
        assert!(msg.contains("hostname"), "{msg}");
        let bad = ClientMessage::LookupHostname {
            rid: 1,
            hostname: "a".repeat(65),
        };
        assert_eq!(bad.validate().unwrap_err().0, ErrorCode::InvalidHostname);
        for ok in client_examples() {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn errors_carry_a_hint() {
        let ServerMessage::Error { message, .. } =
            ServerMessage::error(Some(1), ErrorCode::NotInRoom, "not in \"x\"")
        else {
            unreachable!()
        };
        assert_eq!(message, "not in \"x\" (join the room first)");
    }
}
