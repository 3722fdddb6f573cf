//! The engine's vocabulary: ids it hands out, its settings, and what goes in
//! and out of it.

use crate::core::chunking::SendWindow;
use crate::core::error::PeerError;
use crate::protocol::frames::{ChannelLabel, PayloadType};
use crate::protocol::{IceServer, RemovalReason};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = f64;

/// One connection (one RTCPeerConnection) to one remote id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u32);

/// As in log lines: `ConnId(3)` (the same text as `Debug`, without
/// pulling Debug formatting into the wasm).
impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnId({})", self.0)
    }
}

/// One data channel: a connection's own channel, a stream, a socket, or
/// one end of an in-memory loopback socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChanId(pub u32);

/// One track this side sends on a connection (an `RTCRtpSender` the
/// driver holds by this id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u32);

/// One user operation waiting for its outcome (a Promise in JavaScript).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u32);

/// Sending policy of one side of a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelPolicy {
    pub ordered: bool,
    pub max_retransmits: Option<u16>,
}

impl ChannelPolicy {
    /// Reliable and ordered.
    pub const RELIABLE: Self = Self {
        ordered: true,
        max_retransmits: None,
    };

    pub fn reliable(&self) -> bool {
        self.ordered && self.max_retransmits.is_none()
    }
}

/// How this peer finds others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signalling {
    /// The broker at `urls[0]`, failing over to the next URL, round-robin,
    /// whenever the socket fails to open or drops (see `engine::failover`);
    /// `renewable_token`: the driver asks a function for a fresh token
    /// before every dial, so a refused token is retried.
    Broker {
        urls: Vec<String>,
        renewable_token: bool,
    },
    /// A hub object in the page: signals go out as [`Transmit::HubSignal`].
    Hub,
}

/// Settings of one engine (the SDK's options after defaults).
#[derive(Debug, Clone)]
pub struct Config {
    pub signalling: Signalling,
    /// The id to register (`None`: the broker assigns one).
    pub id: Option<String>,
    /// ICE servers given by the user; `None`: the broker's or the hub's.
    pub ice_servers: Option<Vec<IceServer>>,
    pub max_message_size: usize,
    pub connect_timeout: u64,
    pub request_timeout: u64,
    pub keep_alive_interval: u64,
    pub keep_alive_timeout: u64,
    /// ICE restarts tried, one after another, when an open connection's
    /// path is lost (keep-alive silence, ICE `disconnected` past
    /// `disconnected_grace`, ICE `failed`, a network change) before it
    /// closes. `0`: close at once, as before restarts existed.
    pub ice_restarts: u32,
    /// How long one ICE restart may take to bring the path back.
    pub ice_restart_timeout: u64,
    /// How long ICE may stay `disconnected` before a restart.
    pub disconnected_grace: u64,
    /// Idle time after which the broker link is checked with a ping; no
    /// answer within `keep_alive_timeout` means the socket is dead (a
    /// half-open TCP connection after a network change) and it is
    /// replaced. `0`: never.
    pub broker_keep_alive: u64,
    /// When the broker relays a connection (see `engine::relay`).
    pub relay: RelayPolicy,
    /// How long a connection may look for a WebRTC path before it falls
    /// back to the relay (`RelayPolicy::Fallback`).
    pub relay_after: u64,
    /// Bytes each channel keeps of what it sent until the remote
    /// acknowledges them, so that a connection moving to another path
    /// (the relay, or back to a direct one) sends them again; a channel
    /// with this much unacknowledged waits before it sends more.
    pub resend_buffer: usize,
    /// While a connection runs over the broker's relay after losing its
    /// direct path, how long it waits before it tries a direct path again
    /// (doubling after each attempt that finds none, up to 16 times this).
    /// `0`: it stays on the relay.
    pub direct_retry: u64,
    /// How long a closing channel or connection may take to confirm its
    /// close before its browser objects are released anyway.
    pub close_timeout: u64,
    pub channel: ChannelPolicy,
    pub window: SendWindow,
    /// Bytes held for one peer from all remotes together: partial
    /// messages, frames that overtook an open event, and messages waiting
    /// for a listener.
    pub memory_budget: usize,
    /// Bytes one connection may hold (its share of `memory_budget`).
    pub connection_budget: usize,
    /// Streams and sockets open at once on one connection.
    pub max_streams: usize,
    /// Connections open at once (both directions).
    pub max_connections: usize,
    /// New sessions (offers) accepted from one remote id per minute.
    pub max_offers_per_minute: u32,
    /// Which [`Event::Log`] lines to report: connections closed by an
    /// error and the broker link lost (`Error`), refused offers (`Warn`),
    /// connection and broker states (`Info`), negotiation steps and signal
    /// routing (`Debug`).
    pub debug: LogLevel,
    /// The frame version this side announces and reads
    /// (`protocol::frames::FRAMES_VERSION`; tests play an older peer
    /// with 1, which neither announces one nor reads batch frames).
    pub frames: u32,
}

/// When a connection runs over the broker's relay instead of WebRTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayPolicy {
    /// When WebRTC finds no path while connecting (`relayAfter`, or ICE
    /// `failed`).
    #[default]
    Fallback,
    /// Always: no RTCPeerConnection at all (for testing, or networks that
    /// block WebRTC).
    Always,
    /// Never: a connection with no WebRTC path fails.
    Never,
}

impl RelayPolicy {
    /// The option's spelling: `'fallback'`, `'always'`, `'never'`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "fallback" => Self::Fallback,
            "always" => Self::Always,
            "never" => Self::Never,
            _ => return None,
        })
    }
}

/// How much the `debug` option logs; each level includes those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    /// The option's spelling: `false`, `'error'`, `'warn'`, `'info'`,
    /// `'debug'` (`true` is `'debug'`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "off" => Self::Off,
            "error" => Self::Error,
            "warn" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            _ => return None,
        })
    }
}

impl Config {
    /// Defaults for a peer on the broker at `url`.
    pub fn new(signalling: Signalling) -> Self {
        Self {
            signalling,
            id: None,
            ice_servers: None,
            max_message_size: 64 * 1024 * 1024,
            connect_timeout: 15_000,
            request_timeout: 10_000,
            keep_alive_interval: 1000,
            keep_alive_timeout: 4000,
            relay: RelayPolicy::Fallback,
            relay_after: 7500,
            resend_buffer: 4 * 1024 * 1024,
            direct_retry: 30_000,
            ice_restarts: 3,
            ice_restart_timeout: 5000,
            disconnected_grace: 2000,
            broker_keep_alive: 15_000,
            close_timeout: 5000,
            channel: ChannelPolicy::RELIABLE,
            window: SendWindow::default(),
            memory_budget: 256 * 1024 * 1024,
            connection_budget: 160 * 1024 * 1024,
            max_streams: 256,
            max_connections: 256,
            max_offers_per_minute: 30,
            debug: LogLevel::Off,
            frames: crate::protocol::frames::FRAMES_VERSION,
        }
    }
}

/// Bytes for the network, in the order the engine produced them.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// A text frame on the broker WebSocket.
    Broker(String),
    /// A binary frame on the broker WebSocket (relayed bytes).
    BrokerBinary(Vec<u8>),
    /// A signal for the hub to carry to `to`.
    HubSignal { to: String, data: String },
    /// One frame on a data channel.
    Frame { chan: ChanId, bytes: Vec<u8> },
}

/// Work on browser objects the driver carries out. Results come back
/// through the matching `handle_*` input.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open the broker WebSocket (asking the token function first, if any).
    /// Its events come back tagged with `generation`.
    DialBroker { url: String, generation: u64 },
    /// Restart ICE on a connection (`RTCPeerConnection.restartIce()`);
    /// a `SetLocalDescription` for the restart offer follows.
    RestartIce { conn: ConnId },
    /// Close the broker WebSocket.
    CloseBroker { code: u16, reason: String },
    /// Attach to the hub; answer with `handle_hub_attached`.
    AttachHub,
    /// Leave the hub.
    DetachHub,
    /// Create an RTCPeerConnection and its own negotiated channel (id 0).
    CreateConnection {
        conn: ConnId,
        chan: ChanId,
        ice_servers: Vec<IceServer>,
        policy: ChannelPolicy,
        low_water: usize,
    },
    /// `setLocalDescription()`; answer with `handle_local_description`.
    SetLocalDescription { conn: ConnId },
    /// `setRemoteDescription()`; answer with `handle_remote_description`.
    SetRemoteDescription {
        conn: ConnId,
        sdp_type: String,
        sdp: String,
    },
    /// `addIceCandidate()` with `RTCIceCandidateInit` JSON; answer with
    /// `handle_candidate_added`.
    AddCandidate { conn: ConnId, candidate: String },
    /// Create another data channel on `conn`.
    CreateChannel {
        conn: ConnId,
        chan: ChanId,
        label: String,
        policy: ChannelPolicy,
        low_water: usize,
    },
    /// Close a data channel (what it has buffered still goes out); its
    /// `close` event still comes back.
    CloseChannel { chan: ChanId },
    /// Close the RTCPeerConnection and release it with every channel and
    /// handler of it.
    ReleaseConnection { conn: ConnId },
    /// `addTrack()` the track the driver holds as `track` on `conn`, in the
    /// streams `streams` (ids). `kind` is `"audio"` or `"video"`.
    AddTrack {
        conn: ConnId,
        track: TrackId,
        kind: String,
        streams: Vec<String>,
    },
    /// `removeTrack()` the sender of `track` (the user's track is not
    /// stopped).
    RemoveTrack { conn: ConnId, track: TrackId },
}

/// What a user operation resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done,
    Connection(ConnId),
    Stream(ChanId),
    Found(bool),
    /// Joined the room (its view is `Engine::room`).
    Joined(String),
    /// The key is open (its events name it).
    KeyOpened(String),
    /// The id (address) a hostname is registered to.
    Address(String),
}

/// Something the user is told: an operation's outcome, or an event for a
/// listener. The driver emits these only after the engine call returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A user operation ended.
    Done {
        op: OpId,
        result: Result<Reply, PeerError>,
    },
    /// Progress of a `send` that asked for it.
    Progress {
        op: OpId,
        sent: usize,
        total: usize,
    },
    /// The id is registered (first time, or again after a reconnect), on
    /// the broker at `url` (`None` on a hub).
    Registered {
        id: String,
        resumed: bool,
        first: bool,
        url: Option<String>,
    },
    /// The link to the broker at `url` went down (or never came up); it is
    /// redialled, on the next URL of the list, unless the peer failed.
    BrokerDown {
        code: u16,
        reason: String,
        url: String,
    },
    /// After a reconnect the broker at `url` refused to give `id` back:
    /// `code` is `bad-resume-token` (the id is asked for again at once,
    /// without the token) or `id-taken` (someone else holds it now; asked
    /// for again after each backoff). The peer keeps trying until it has
    /// its id again or is closed.
    ResumeRefused {
        id: String,
        code: crate::protocol::ErrorCode,
        message: String,
        url: Option<String>,
    },
    /// A peer-level error (bad signal, refused token after the first
    /// registration, a connection that could not be created).
    Error(PeerError),
    /// A remote opened a connection to this peer, now open.
    Incoming {
        conn: ConnId,
    },
    /// A connection opened.
    Open {
        conn: ConnId,
    },
    /// A connection ended; `error` says why when it was not a plain close.
    Closed {
        conn: ConnId,
        reason: String,
        error: Option<PeerError>,
    },
    /// A message on a connection's own channel or on a stream.
    Message {
        chan: ChanId,
        payload: PayloadType,
        bytes: Vec<u8>,
    },
    /// The remote opened a stream on `conn`, now open.
    IncomingStream {
        conn: ConnId,
        chan: ChanId,
    },
    /// A socket to one of this peer's ports, now open.
    Accepted {
        port: u16,
        chan: ChanId,
    },
    /// A stream or socket opened.
    StreamOpen {
        chan: ChanId,
    },
    /// The remote ended its side of a stream.
    End {
        chan: ChanId,
    },
    /// The remote asked for `n` more records (rest).
    Pull {
        chan: ChanId,
        n: u32,
    },
    /// A stream or socket ended.
    StreamClosed {
        chan: ChanId,
        reason: String,
        error: Option<PeerError>,
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
        data: crate::protocol::json::Json,
    },
    StateSet {
        room: String,
        key: String,
        value: crate::protocol::json::Json,
        from: String,
        ttl_ms: Option<u64>,
    },
    StateRemoved {
        room: String,
        key: String,
        reason: RemovalReason,
    },
    /// This peer is no longer in `room`.
    RoomClosed {
        room: String,
    },
    Joiner {
        key: String,
        id: String,
    },
    /// A joiner of an opened key left, or (for a joined key) its opener.
    KeyUnavailable {
        key: String,
        id: String,
        code: Option<u16>,
        /// Whether this peer opened the key (else it joined it).
        opened: bool,
    },
    KeyClosed {
        key: String,
        code: u16,
        reason: String,
    },
    /// A line for the `debug` log, at its level.
    Log(LogLevel, String),
    /// The remote called (`peer.call`) on open connection `conn`; answer
    /// with `Engine::answer_call` or `Engine::reject_call`.
    IncomingCall {
        conn: ConnId,
        call: u32,
        metadata: Option<crate::protocol::json::Json>,
    },
    /// The remote's track on transceiver `mid` arrived, in its streams
    /// `streams` (the sender's stream ids).
    Track {
        conn: ConnId,
        mid: String,
        streams: Vec<String>,
    },
    /// The first track of the remote's stream `stream` arrived.
    MediaStream {
        conn: ConnId,
        stream: String,
    },
    /// The remote muted (or unmuted) its track on `mid`.
    TrackMuted {
        conn: ConnId,
        mid: String,
        muted: bool,
    },
    /// The remote's track on `mid` ended, for `reason`.
    TrackEnded {
        conn: ConnId,
        mid: String,
        reason: TrackEndReason,
    },
    /// Something failed on open connection `conn` without closing it:
    /// `MediaUnavailable` when it moved to the broker's relay and its
    /// media stopped.
    ConnError {
        conn: ConnId,
        error: PeerError,
    },
}

/// Why a remote track ended (`track-ended`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackEndReason {
    /// The remote removed it (`removeTrack`, `removeStream`).
    Removed,
    /// The remote's source ended: its track was stopped, or its device
    /// went away.
    Ended,
    /// The connection moved to the broker's relay, which carries no media.
    Relay,
}

impl TrackEndReason {
    /// As the JavaScript event says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Removed => "removed",
            Self::Ended => "ended",
            Self::Relay => "relay",
        }
    }
}

/// Who is listening for messages, so that nothing arrives unheard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// The peer's own `message` event (every connection's messages).
    Peer,
    /// A connection's or a stream's `message` event (or its readable).
    Chan(ChanId),
}

/// What a port listener does with sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortUse {
    Sockets,
    Rest,
}

/// What one channel is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// The connection's own channel.
    Main,
    /// A named stream or a socket to a port.
    Labelled(ChannelLabel),
}
