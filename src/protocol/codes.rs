//! Error codes (in `error` messages) and WebSocket close codes: the one table.
//!
//! An **error** answers one request and leaves the connection usable. A
//! **close code** ends the connection. `docs/ERRORS.md` lists
//! [`ErrorCode::ALL`] and [`CloseCode::ALL`] in its one table; a unit test
//! keeps the two in step.

use serde::{Deserialize, Serialize};

/// The named errors the broker sends in `{"type":"error","code":...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    BadJson,
    /// The frame is JSON but not a valid message: not an object, no `type`,
    /// a missing or mistyped field, or a binary frame.
    BadMessage,
    /// The `type` is not one the broker knows.
    UnknownType,
    /// The peer id breaks the id rules.
    InvalidId,
    /// Another connection holds this id (or holds it inside its grace window).
    IdTaken,
    /// The resume token does not match the id it tries to reclaim.
    BadResumeToken,
    /// The request needs a registered id; send `register` first.
    NotRegistered,
    /// This connection already registered an id.
    AlreadyRegistered,
    /// The target id is not online (and not inside a grace window).
    UnknownPeer,
    /// The target dropped and did not come back within its grace window;
    /// queued signals to it are answered with this.
    PeerGone,
    /// The target's queue (while it reconnects) is full; the message was not
    /// queued.
    QueueFull,
    /// The room name breaks the room rules.
    InvalidRoom,
    /// The request names a room this peer has not joined.
    NotInRoom,
    /// The room has reached its member limit.
    RoomFull,
    /// This peer is in as many rooms as it may be.
    TooManyRooms,
    /// A state key breaks the state-key rules, or the room holds as many keys
    /// as it may.
    InvalidStateKey,
    /// The rendezvous key breaks the key rules.
    InvalidKey,
    /// Another peer has already opened this rendezvous key.
    KeyTaken,
    /// Nobody has opened this rendezvous key.
    UnknownKey,
    /// Only the peer that opened a key may close it.
    NotOpener,
    /// The peer already holds the most rendezvous keys it may open, or join.
    TooManyKeys,
    /// Registering this id needs a token binding it (or the token binds
    /// another id).
    Unauthorized,
    /// Joining this room needs a token that lists it.
    Forbidden,
    /// The hostname breaks the hostname rules (those of peer ids).
    InvalidHostname,
    /// Another id holds this hostname (perhaps inside its grace window).
    HostnameTaken,
    /// No id holds this hostname.
    UnknownHost,
    /// This id holds as many hostnames as it may.
    TooManyHostnames,
    /// `relay`: the broker does not relay (`--relay off`), or relays for
    /// as many pairs as it may (`--relay-max-pairs`).
    RelayRefused,
    /// A relay passed its byte cap (`--relay-max-bytes`) or its rate
    /// (`--relay-rate`), or sent a frame to an id it has no relay with.
    RelayLimit,
    /// The target is on another broker of the network that cannot be
    /// reached right now (that broker died, or this one lost Redis); the
    /// message was not delivered.
    Unavailable,
    /// A message over the connection's message rate (`--rate-limit`,
    /// `--rate-burst`); the broker closes the connection with 4002 after
    /// this answer.
    RateLimited,
    /// A message larger than `--max-frame-bytes`; the broker closes the
    /// connection with 1009 after this answer.
    TooBig,
    /// A `set` would take the room's state, the state this id has set, or
    /// the state set from this address past its byte budget
    /// (`--max-room-state-bytes`, `--max-peer-state-bytes`,
    /// `--ip-state-bytes`); the value was not stored.
    StateFull,
    /// A `broadcast` (its bytes times its recipients) or the snapshot a
    /// `join` answers with would pass this connection's fan-out byte rate
    /// (`--fanout-rate`); nothing was sent.
    FanoutLimit,
    /// The broker failed; the request had no effect.
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 35] = [
        Self::BadJson,
        Self::BadMessage,
        Self::UnknownType,
        Self::InvalidId,
        Self::IdTaken,
        Self::BadResumeToken,
        Self::NotRegistered,
        Self::AlreadyRegistered,
        Self::UnknownPeer,
        Self::PeerGone,
        Self::QueueFull,
        Self::InvalidRoom,
        Self::NotInRoom,
        Self::RoomFull,
        Self::TooManyRooms,
        Self::InvalidStateKey,
        Self::InvalidKey,
        Self::KeyTaken,
        Self::UnknownKey,
        Self::NotOpener,
        Self::TooManyKeys,
        Self::Unauthorized,
        Self::Forbidden,
        Self::InvalidHostname,
        Self::HostnameTaken,
        Self::UnknownHost,
        Self::TooManyHostnames,
        Self::RelayRefused,
        Self::RelayLimit,
        Self::Unavailable,
        Self::RateLimited,
        Self::TooBig,
        Self::StateFull,
        Self::FanoutLimit,
        Self::Internal,
    ];

    /// The code as it appears on the wire, e.g. `"id-taken"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad-json",
            Self::BadMessage => "bad-message",
            Self::UnknownType => "unknown-type",
            Self::InvalidId => "invalid-id",
            Self::IdTaken => "id-taken",
            Self::BadResumeToken => "bad-resume-token",
            Self::NotRegistered => "not-registered",
            Self::AlreadyRegistered => "already-registered",
            Self::UnknownPeer => "unknown-peer",
            Self::PeerGone => "peer-gone",
            Self::QueueFull => "queue-full",
            Self::InvalidRoom => "invalid-room",
            Self::NotInRoom => "not-in-room",
            Self::RoomFull => "room-full",
            Self::TooManyRooms => "too-many-rooms",
            Self::InvalidStateKey => "invalid-state-key",
            Self::InvalidKey => "invalid-key",
            Self::KeyTaken => "key-taken",
            Self::UnknownKey => "unknown-key",
            Self::NotOpener => "not-opener",
            Self::TooManyKeys => "too-many-keys",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvalidHostname => "invalid-hostname",
            Self::HostnameTaken => "hostname-taken",
            Self::UnknownHost => "unknown-host",
            Self::TooManyHostnames => "too-many-hostnames",
            Self::RelayRefused => "relay-refused",
            Self::RelayLimit => "relay-limit",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate-limited",
            Self::TooBig => "too-big",
            Self::StateFull => "state-full",
            Self::FanoutLimit => "fanout-limit",
            Self::Internal => "internal",
        }
    }

    /// The code for its wire name, e.g. `"id-taken"`.
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// What a developer should do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Self::BadJson => "send one JSON object per text frame",
            Self::BadMessage => "check the message's fields against docs/PROTOCOL.md",
            Self::UnknownType => "check the `type` against docs/PROTOCOL.md",
            Self::InvalidId => "ids are 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
            Self::IdTaken => "pick another id, or reclaim yours with its resume token",
            Self::BadResumeToken => "use the resume token the broker gave with this id",
            Self::NotRegistered => "send `register` first",
            Self::AlreadyRegistered => "open a second connection to register a second id",
            Self::UnknownPeer => "the target is offline; check the id or wait for it to register",
            Self::PeerGone => "the target dropped and did not come back in time",
            Self::QueueFull => "the target is reconnecting and its queue is full; retry later",
            Self::InvalidRoom => "room names are 1-128 printable ASCII characters without spaces",
            Self::NotInRoom => "join the room first",
            Self::RoomFull => "the room has reached its member limit",
            Self::TooManyRooms => "leave a room before joining another",
            Self::InvalidStateKey => {
                "state keys are 1-256 bytes without control characters, and a room holds a limited number"
            }
            Self::InvalidKey => {
                "rendezvous keys are 3-64 of a-z 0-9 _ -, starting with a letter, no doubled separators"
            }
            Self::KeyTaken => "another peer opened this key; pick another",
            Self::UnknownKey => "nobody has opened this key (yet)",
            Self::NotOpener => "only the peer that opened a key may close it",
            Self::TooManyKeys => "close or leave a rendezvous key before using another",
            Self::Unauthorized => "pass a token minted for this id (the `token` option)",
            Self::Forbidden => "pass a token whose `rooms` claim lists this room",
            Self::InvalidHostname => {
                "hostnames are 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
            }
            Self::HostnameTaken => "another id holds this hostname; pick another",
            Self::UnknownHost => "no id holds this hostname (yet)",
            Self::TooManyHostnames => "this id holds as many hostnames as it may",
            Self::RelayRefused => {
                "this broker does not relay now (--relay off, or --relay-max-pairs reached); configure a TURN server"
            }
            Self::RelayLimit => {
                "the relay passed the broker's --relay-rate or --relay-max-bytes, or had no relay-ready pair"
            }
            Self::Unavailable => {
                "the target's broker cannot be reached right now (it failed, or Redis is away); retry in a few seconds"
            }
            Self::RateLimited => {
                "sent faster than the broker's --rate-limit and --rate-burst allow; the connection is closed (4002): reconnect and send more slowly"
            }
            Self::TooBig => {
                "the message is larger than the broker's --max-frame-bytes; the connection is closed (1009): send smaller messages"
            }
            Self::StateFull => {
                "the room's state, or the state this id (or address) has set, is at its byte budget; delete keys or store less"
            }
            Self::FanoutLimit => {
                "broadcasts (bytes times recipients) and join snapshots passed this connection's --fanout-rate; send less, or to smaller rooms, and retry"
            }
            Self::Internal => "a broker bug; the request had no effect; please report it",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// The client closed normally: its id, rooms and keys are released at once.
    Normal = 1000,
    /// The broker is shutting down; reconnect (to another broker) later.
    GoingAway = 1001,
    /// The client broke the WebSocket framing rules (RFC 6455): an unmasked
    /// frame, a reserved opcode or bit, a control frame over 125 bytes or
    /// fragmented, a continuation with nothing to continue.
    ProtocolError = 1002,
    /// A text frame that is not UTF-8.
    InvalidPayload = 1007,
    /// The connection broke a policy (a signal-channel hub refused a join
    /// or an update, say; a disallowed origin gets HTTP 403 instead).
    PolicyViolation = 1008,
    /// A frame was larger than the broker's maximum frame size.
    MessageTooBig = 1009,
    /// The broker failed unexpectedly.
    InternalError = 1011,
    /// An opened rendezvous key waited longer than the listen timeout.
    ListenTimeout = 4000,
    /// A matched rendezvous pair stayed past the pipe deadline.
    PipeTimeout = 4001,
    /// The client sent more messages than it may.
    TooManyMessages = 4002,
    /// The client did not read its messages fast enough; its outbound queue
    /// filled up. Messages for it wait in its grace-window queue.
    SlowConsumer = 4003,
    /// Nothing was heard from the client (not even a pong) within the
    /// heartbeat timeout.
    HeartbeatTimeout = 4004,
    /// Another connection reclaimed this id with its resume token.
    Replaced = 4005,
    /// The connection did not register within the register timeout.
    RegisterTimeout = 4006,
    /// The token presented at upgrade is invalid (forged, expired,
    /// malformed), or the broker requires one and none came.
    Unauthorized = 4007,
}

impl CloseCode {
    /// Every code, in documentation order.
    pub const ALL: [CloseCode; 15] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::PolicyViolation,
        Self::MessageTooBig,
        Self::InternalError,
        Self::ListenTimeout,
        Self::PipeTimeout,
        Self::TooManyMessages,
        Self::SlowConsumer,
        Self::HeartbeatTimeout,
        Self::Replaced,
        Self::RegisterTimeout,
        Self::Unauthorized,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The short reason sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::GoingAway => "broker shutting down",
            Self::ProtocolError => "websocket protocol error",
            Self::InvalidPayload => "invalid frame payload",
            Self::PolicyViolation => "policy violation",
            Self::MessageTooBig => "message too big",
            Self::InternalError => "internal error",
            Self::ListenTimeout => "listen timeout",
            Self::PipeTimeout => "pipe timeout",
            Self::TooManyMessages => "too many messages",
            Self::SlowConsumer => "slow consumer",
            Self::HeartbeatTimeout => "heartbeat timeout",
            Self::Replaced => "replaced by a newer connection",
            Self::RegisterTimeout => "register timeout",
            Self::Unauthorized => "unauthorized",
        }
    }

    /// Looks a numeric code up.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn close_codes_round_trip() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        assert_eq!(CloseCode::from_code(1234), None);
    }

    /// docs/ERRORS.md must list every code, so that its table stays the one
    /// place a developer needs.
    #[test]
    fn the_errors_doc_lists_every_code() {
        let doc = include_str!("../../docs/ERRORS.md");
        for code in ErrorCode::ALL {
            let row = format!("| broker | `{}` |", code.as_str());
            assert!(doc.contains(&row), "{code} missing from docs/ERRORS.md");
        }
        for code in CloseCode::ALL {
            let row = format!("| close | {} ", code.code());
            assert!(
                doc.contains(&row),
                "{} missing from docs/ERRORS.md",
                code.code()
            );
        }
    }
}
