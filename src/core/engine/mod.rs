//! The SDK's engine: everything one peer decides, with no browser, no clock
//! and no randomness of its own (quinn-proto's shape).
//!
//! One [`Engine`] per peer (a `Peer` or a `Node`) owns the broker session
//! (or the hub link), the table of connections and, per connection,
//! negotiation, keep-alive, its own channel and its streams and sockets with
//! their send queues, reassembly, half-close and byte budgets; rooms,
//! rendezvous keys and ports. It hands out ids ([`ConnId`], [`ChanId`],
//! [`OpId`]); the JavaScript handles are `(driver, id)`.
//!
//! Its methods fall in four groups:
//!
//! - **inputs**, `handle_*(…, now)`: what the browser reported (broker
//!   socket events, RTCPeerConnection and data-channel events, the outcome
//!   of a browser call the engine asked for, a timer firing);
//! - **commands**: what the user asked (`connect`, `send`, `open_stream`,
//!   `join`, `close`, …); each returns at once, with an [`OpId`] whose
//!   outcome comes later as [`Event::Done`], or a named error;
//! - **getters**: ids, states, members, room state;
//! - **outputs**, `poll_*`: bytes to transmit ([`Transmit`]), work on browser
//!   objects ([`Action`]), user events ([`Event`]), and when to be woken
//!   ([`Engine::poll_timeout`]).
//!
//! The driver calls an input or a command, then drains the outputs, and
//! only then runs user code: no state is borrowed while a listener runs,
//! so a listener may call anything.
//!
//! The lifecycles are drawn in the submodules: the broker link in
//! `signalling`, a connection in `connection`, a stream or socket in
//! `channel`.

mod acks;
mod channel;
mod connection;
mod data;
mod failover;
mod media;
mod migrate;
mod recovery;
mod relay;
mod signalling;
mod system;
mod table;
mod types;

use std::collections::VecDeque;

pub use connection::ConnState;
pub use data::{MAX_EARLY_FRAMES, MAX_HELD_MESSAGES};
pub use media::{MAX_PENDING_CALLS, MAX_REMOTE_STREAMS, MAX_REMOTE_TRACKS, MAX_TRACKS};
pub use signalling::Room;
pub use system::{ConnInfo, ConnPath, PortStats, SystemStats};
pub use table::Table;
pub use types::*;

use self::channel::Channel;
use self::connection::Conn;
use self::signalling::{Pending, Ready};
use crate::core::broker::{BrokerSession, BrokerUrls, Link, SessionConfig};
use crate::core::error::PeerError;
use crate::core::stream::StreamState;
use crate::protocol::frames::ChannelLabel;
use crate::protocol::messages::Rid;
use crate::protocol::{ClientMessage, IceServer};

/// A small deterministic generator (splitmix64), seeded by the caller.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An integer exact in a JavaScript number.
    pub fn next_u53(&mut self) -> u64 {
        self.next_u64() >> 11
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.next_u53() as f64 / (1u64 << 53) as f64
    }
}

/// One peer's whole protocol state.
pub struct Engine {
    config: Config,
    rng: Rng,
    session: BrokerSession,
    /// The `broker` list and the URL dialled (see `failover`).
    brokers: BrokerUrls,
    /// Before the first registration: each URL that failed, and how.
    unreached: Vec<(String, String)>,
    /// With several URLs: when the dial under way is abandoned for the next.
    attempt_deadline: Option<Millis>,
    /// The resume token each broker URL issued last (see `failover`).
    broker_tokens: Table<String, String>,
    /// Which broker socket is current (events of older ones are ignored).
    generation: u64,
    reconnect_at: Option<Millis>,
    /// When the broker was last heard from (any frame).
    broker_heard: Millis,
    /// A ping is out: the link is dead if nothing is heard by then.
    broker_probe: Option<Millis>,
    ready: Ready,
    ready_deadline: Option<Millis>,
    id: Option<String>,
    broker_ice: Vec<IceServer>,
    closed: bool,
    next_id: u32,
    conns: Table<ConnId, Conn>,
    by_remote: Table<String, ConnId>,
    chans: Table<ChanId, Channel>,
    /// Closed connections waiting for their channel's close to be released.
    releasing: Table<ConnId, (ChanId, Millis)>,
    /// Why each closed channel closed (for later use of its handle).
    closed_reasons: Table<ChanId, String>,
    /// Bytes each channel held when last counted.
    accounted: Table<ChanId, usize>,
    total_held: usize,
    peer_listening: bool,
    /// Recent new sessions per remote id (for maxOffersPerMinute).
    offers: Table<String, Vec<Millis>>,
    requests: Table<Rid, (OpId, Pending)>,
    rooms: Table<String, Room>,
    opened_keys: Table<String, ()>,
    ports: Table<u16, PortUse>,
    /// Frames between the two ends of loopback sockets, not yet delivered.
    loopback: VecDeque<(ChanId, Vec<u8>)>,
    loop_closed: Vec<ChanId>,
    /// Channels with small messages queued in this turn, to be sent in
    /// batch frames once it ends ([`Engine::pump_deferred`]).
    deferred: Vec<ChanId>,
    /// Relayed channels opened, closed, and bytes that left the relay
    /// queue, for `settle` (not handled inside the call that caused them).
    relay_opened: VecDeque<ChanId>,
    relay_closed: VecDeque<ChanId>,
    relay_drained: VecDeque<(ChanId, usize)>,
    /// Connections to fail once the current input is handled.
    pending_failures: Vec<(ConnId, PeerError)>,
    /// The time of the latest input that left work for `settle`.
    last_now: Millis,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Counters for `system` and `network`.
    traffic: system::Traffic,
}

impl Engine {
    /// A new engine; call [`Engine::start`] to register.
    pub fn new(config: Config, seed: u64) -> Self {
        let session = BrokerSession::new(
            config.id.clone(),
            SessionConfig {
                request_timeout: std::time::Duration::from_millis(config.request_timeout),
                ..SessionConfig::default()
            },
        );
        let brokers = BrokerUrls::new(match &config.signalling {
            Signalling::Broker { urls, .. } => urls.clone(),
            Signalling::Hub => Vec::new(),
        });
        Self {
            config,
            rng: Rng::new(seed),
            session,
            brokers,
            unreached: Vec::new(),
            attempt_deadline: None,
            broker_tokens: Table::new(),
            generation: 0,
            reconnect_at: None,
            broker_heard: 0.0,
            broker_probe: None,
            ready: Ready::Waiting(Vec::new()),
            ready_deadline: None,
            id: None,
            broker_ice: Vec::new(),
            closed: false,
            next_id: 1,
            conns: Table::new(),
            by_remote: Table::new(),
            chans: Table::new(),
            releasing: Table::new(),
            closed_reasons: Table::new(),
            accounted: Table::new(),
            total_held: 0,
            peer_listening: false,
            offers: Table::new(),
            requests: Table::new(),
            rooms: Table::new(),
            opened_keys: Table::new(),
            ports: Table::new(),
            loopback: VecDeque::new(),
            loop_closed: Vec::new(),
            deferred: Vec::new(),
            relay_opened: VecDeque::new(),
            relay_closed: VecDeque::new(),
            relay_drained: VecDeque::new(),
            pending_failures: Vec::new(),
            last_now: 0.0,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            traffic: system::Traffic::default(),
        }
    }

    // ---- getters -----------------------------------------------------------

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This peer's id (or hub address), once registered.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the broker link is up.
    pub fn broker_link(&self) -> Link {
        self.session.link()
    }

    /// Remote ids with a connection (open or opening).
    pub fn connection_ids(&self) -> Vec<String> {
        self.by_remote.keys().cloned().collect()
    }

    /// The current connection to `remote`, if any.
    pub fn connection_to(&self, remote: &str) -> Option<ConnId> {
        self.by_remote.get(remote).copied()
    }

    /// A connection's state (`Closed` once forgotten).
    pub fn conn_state(&self, conn: ConnId) -> ConnState {
        self.conns
            .get(&conn)
            .map(|c| c.state)
            .unwrap_or(ConnState::Closed)
    }

    /// The remote id of a connection.
    pub fn conn_remote(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).map(|c| c.remote.as_str())
    }

    /// A connection's own channel (what `conn.send` sends on).
    pub fn conn_channel(&self, conn: ConnId) -> Option<ChanId> {
        self.conns.get(&conn).map(|c| c.main)
    }

    /// The connection a channel belongs to.
    pub fn chan_conn(&self, chan: ChanId) -> Option<ConnId> {
        self.chans.get(&chan).and_then(|c| c.conn)
    }

    /// A stream's state (`Closed` once forgotten).
    pub fn stream_state(&self, chan: ChanId) -> StreamState {
        self.chans
            .get(&chan)
            .map(|c| c.state)
            .unwrap_or(StreamState::Closed)
    }

    /// Whether a channel's transport (its data channel, or the relay or
    /// carrier that stands for it) has opened on this side.
    pub fn chan_transport_open(&self, chan: ChanId) -> bool {
        self.chans.get(&chan).is_some_and(|c| c.transport_open)
    }

    /// A stream's label (name or port).
    pub fn stream_label(&self, chan: ChanId) -> Option<ChannelLabel> {
        match self.chans.get(&chan).map(|c| &c.kind) {
            Some(ChannelKind::Labelled(l)) => Some(l.clone()),
            _ => None,
        }
    }

    /// The remote id (or address) at the other end of a channel.
    pub fn chan_remote(&self, chan: ChanId) -> Option<&str> {
        self.chans.get(&chan).map(|c| c.remote.as_str())
    }

    /// Bytes waiting to be sent on a channel.
    pub fn queued_bytes(&self, chan: ChanId) -> usize {
        self.chans.get(&chan).map(|c| c.queued_bytes).unwrap_or(0)
    }

    /// Bytes a channel keeps of what it sent until the remote
    /// acknowledges them (sent again if the connection changes path).
    pub fn unacked_bytes(&self, chan: ChanId) -> usize {
        self.chans.get(&chan).map_or(0, |c| c.acks.kept_bytes)
    }

    /// Whether connection `conn` runs over the broker's relay now.
    pub fn is_relayed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.relay.is_some())
    }

    /// Bytes remotes make this peer hold (partial, early and unread).
    pub fn held_bytes(&self) -> usize {
        self.total_held
    }

    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    /// ICE servers for new connections: the user's, else the broker's.
    pub fn ice_servers(&self) -> Vec<IceServer> {
        self.config
            .ice_servers
            .clone()
            .unwrap_or_else(|| self.broker_ice.clone())
    }

    /// Whether nothing is left for the driver to release or time.
    pub fn is_drained(&self) -> bool {
        self.closed
            && self.conns.is_empty()
            && self.releasing.is_empty()
            && self.transmits.is_empty()
            && self.actions.is_empty()
    }

    // ---- commands ----------------------------------------------------------

    /// Connects to `remote` (or reuses the connection there is); resolves
    /// with the connection once its channel is open.
    pub fn connect(&mut self, remote: &str, now: Millis) -> Result<OpId, PeerError> {
        let c = self.conn_to(remote, now)?;
        let op = self.new_op();
        self.wait_open(c, op);
        self.settle(now);
        Ok(op)
    }

    /// Resolves `op` once `c` is open (at once if it is).
    fn wait_open(&mut self, c: ConnId, op: OpId) {
        match self.conns.get_mut(&c) {
            Some(conn) if conn.state == ConnState::Open => {
                self.done(op, Ok(Reply::Connection(c)));
            }
            Some(conn) if conn.state == ConnState::Connecting => conn.openers.push(op),
            _ => {
                let err = PeerError::Closed("the connection".into());
                self.done(op, Err(err));
            }
        }
    }

    /// Closes the connection (the remote sees `close` at once).
    pub fn disconnect(&mut self, conn: ConnId, reason: &str, now: Millis) {
        self.close_conn(conn, reason, None, true, now);
        self.settle(now);
    }

    /// `find`: is `id` online?
    pub fn find(&mut self, id: &str, now: Millis) -> Result<OpId, PeerError> {
        let id = id.to_string();
        self.request(Pending::Find, ClientMessage::Find { rid: 0, id }, now)
    }

    /// Joins a room; resolves once its members and state are known.
    pub fn join(&mut self, room: &str, now: Millis) -> Result<OpId, PeerError> {
        let name = room.to_string();
        let r = name.clone();
        self.request(
            Pending::Join(name),
            ClientMessage::Join { rid: 0, room: r },
            now,
        )
    }

    /// Leaves a room (its handle then gets `closed`).
    pub fn leave(&mut self, room: &str, now: Millis) -> Result<OpId, PeerError> {
        self.in_room(room)?;
        let name = room.to_string();
        let r = name.clone();
        self.request(
            Pending::Leave(name),
            ClientMessage::Leave { rid: 0, room: r },
            now,
        )
    }

    pub fn broadcast(
        &mut self,
        room: &str,
        data: crate::protocol::json::Json,
        include_self: bool,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        self.in_room(room)?;
        let room = room.to_string();
        self.request(
            Pending::Plain,
            ClientMessage::Broadcast {
                rid: 0,
                room,
                data,
                include_self,
            },
            now,
        )
    }

    pub fn set_state(
        &mut self,
        room: &str,
        key: &str,
        value: crate::protocol::json::Json,
        ttl_ms: Option<u64>,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        self.in_room(room)?;
        let (room, key) = (room.to_string(), key.to_string());
        self.request(
            Pending::Plain,
            ClientMessage::Set {
                rid: 0,
                room,
                key,
                value,
                ttl_ms,
            },
            now,
        )
    }

    pub fn delete_state(&mut self, room: &str, key: &str, now: Millis) -> Result<OpId, PeerError> {
        self.in_room(room)?;
        let (room, key) = (room.to_string(), key.to_string());
        self.request(
            Pending::Plain,
            ClientMessage::Delete { rid: 0, room, key },
            now,
        )
    }

    fn in_room(&self, room: &str) -> Result<(), PeerError> {
        self.ensure_open()?;
        if self.rooms.contains_key(room) {
            Ok(())
        } else {
            Err(PeerError::Closed(format!("room \"{room}\" (left)")))
        }
    }

    /// Opens a rendezvous key.
    pub fn open_key(&mut self, key: &str, now: Millis) -> Result<OpId, PeerError> {
        let k = key.to_string();
        self.request(
            Pending::OpenKey(key.to_string()),
            ClientMessage::OpenKey { rid: 0, key: k },
            now,
        )
    }

    /// Joins a rendezvous key; resolves with the connection to its opener.
    pub fn join_key(&mut self, key: &str, now: Millis) -> Result<OpId, PeerError> {
        let k = key.to_string();
        self.request(
            Pending::JoinKey,
            ClientMessage::JoinKey { rid: 0, key: k },
            now,
        )
    }

    /// Closes an opened key.
    pub fn close_key(&mut self, key: &str, now: Millis) -> Result<OpId, PeerError> {
        let k = key.to_string();
        self.request(
            Pending::CloseKey(key.to_string()),
            ClientMessage::CloseKey { rid: 0, key: k },
            now,
        )
    }

    /// Registers `hostname` for this peer on the broker (owned by this id
    /// until it is released; nobody else can take it).
    pub fn register_hostname(&mut self, hostname: &str, now: Millis) -> Result<OpId, PeerError> {
        crate::protocol::ids::check_hostname(hostname)
            .map_err(|e| PeerError::InvalidArgument(e.to_string()))?;
        let hostname = hostname.to_string();
        self.request(
            Pending::Plain,
            ClientMessage::RegisterHostname { rid: 0, hostname },
            now,
        )
    }

    /// The id a hostname is registered to (`UnknownHostError` if none).
    pub fn lookup_hostname(&mut self, hostname: &str, now: Millis) -> Result<OpId, PeerError> {
        let hostname = hostname.to_string();
        self.request(
            Pending::LookupHostname,
            ClientMessage::LookupHostname { rid: 0, hostname },
            now,
        )
    }

    /// Closes everything: connections (telling their remotes), rooms, the
    /// broker link; every operation under way fails with `ClosedError`.
    pub fn close(&mut self, now: Millis) {
        if self.closed {
            return;
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_conn(c, "the peer closed", None, true, now);
        }
        let loops: Vec<ChanId> = self
            .chans
            .iter()
            .filter(|(_, c)| c.conn.is_none())
            .map(|(id, _)| *id)
            .collect();
        for chan in loops {
            self.close_chan(chan, "the peer closed", None, false, now);
        }
        self.closed = true;
        let closed = PeerError::Closed("the peer".into());
        self.session.close();
        for (_, (op, _)) in self.requests.take() {
            self.done(op, Err(closed.clone()));
        }
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for r in rooms {
            self.lose_room(&r);
        }
        self.opened_keys.clear();
        self.ports.clear();
        self.reconnect_at = None;
        self.attempt_deadline = None;
        self.settle_ready(Err(closed));
        match self.config.signalling {
            Signalling::Broker { .. } => self.action(Action::CloseBroker {
                code: 1000,
                reason: "peer closed".into(),
            }),
            Signalling::Hub => self.action(Action::DetachHub),
        }
        self.settle(now);
    }

    // ---- time --------------------------------------------------------------

    /// When the engine next needs `handle_timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let conns = self
            .conns
            .values()
            .filter_map(|c| self.conn_deadline(c))
            .reduce(f64::min);
        let releases = self.releasing.values().map(|(_, t)| *t).reduce(f64::min);
        [
            self.broker_deadline(),
            self.relay_deadline(),
            conns,
            releases,
            self.chan_deadline(),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)
    }

    /// Time passed: deadlines, keep-alive, reconnects.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.broker_timeouts(now);
        self.relay_timeouts(now);
        self.conn_timeouts(now);
        self.chan_timeouts(now);
        self.settle(now);
    }

    // ---- outputs -----------------------------------------------------------

    /// The next bytes to send. Polling first finishes the work the last
    /// input left (loopback frames, connections over budget).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.settle(self.last_now);
        self.transmits.pop_front()
    }

    /// The next browser call to make.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.settle(self.last_now);
        self.actions.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.settle(self.last_now);
        self.events.pop_front()
    }

    /// Finishes an input: loopback frames are delivered and connections
    /// found over budget are closed, until nothing is left to do.
    pub fn settle(&mut self, now: Millis) {
        if self.loopback.is_empty()
            && self.loop_closed.is_empty()
            && self.pending_failures.is_empty()
            && self.relay_opened.is_empty()
            && self.relay_closed.is_empty()
            && self.relay_drained.is_empty()
        {
            return;
        }
        loop {
            if let Some((chan, bytes)) = self.loopback.pop_front() {
                self.handle_channel_message(chan, &bytes, now);
                continue;
            }
            if let Some(chan) = self.loop_closed.pop() {
                self.close_chan(chan, "closed by the remote peer", None, false, now);
                continue;
            }
            if let Some(chan) = self.relay_opened.pop_front() {
                self.handle_channel_open(chan, now);
                continue;
            }
            if let Some(chan) = self.relay_closed.pop_front() {
                self.handle_channel_closed(chan, now);
                continue;
            }
            if let Some((chan, n)) = self.relay_drained.pop_front() {
                self.relay_left(chan, n, now);
                continue;
            }
            if let Some((c, err)) = self.pending_failures.pop() {
                self.fail_conn(c, err, now);
                continue;
            }
            break;
        }
    }

    // ---- inside ------------------------------------------------------------

    fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    pub(crate) fn new_op(&mut self) -> OpId {
        OpId(self.next_id())
    }

    pub(crate) fn done(&mut self, op: OpId, result: Result<Reply, PeerError>) {
        self.events.push_back(Event::Done { op, result });
    }

    /// A `debug` line (built only when debugging).
    pub(crate) fn log(&mut self, level: LogLevel, line: impl FnOnce() -> String) {
        if level <= self.config.debug {
            self.events.push_back(Event::Log(level, line()));
        }
    }

    pub(crate) fn action(&mut self, action: Action) {
        if self.config.debug >= LogLevel::Info {
            let line = match &action {
                Action::DialBroker { url, generation } => {
                    format!("dial broker {url} (#{generation})")
                }
                _ if self.config.debug < LogLevel::Debug => String::new(),
                Action::CreateConnection { conn, .. } => {
                    format!("{conn}: create RTCPeerConnection")
                }
                Action::SetLocalDescription { conn } => format!("{conn}: setLocalDescription"),
                Action::SetRemoteDescription { conn, sdp_type, .. } => {
                    format!("{conn}: setRemoteDescription({sdp_type})")
                }
                Action::ReleaseConnection { conn } => format!("{conn}: release"),
                Action::AddTrack { conn, kind, .. } => format!("{conn}: addTrack({kind})"),
                Action::RemoveTrack { conn, .. } => format!("{conn}: removeTrack"),
                _ => String::new(),
            };
            if !line.is_empty() {
                let level = if matches!(action, Action::DialBroker { .. }) {
                    LogLevel::Info
                } else {
                    LogLevel::Debug
                };
                self.events.push_back(Event::Log(level, line));
            }
        }
        self.actions.push_back(action);
    }

    fn ensure_open(&self) -> Result<(), PeerError> {
        if self.closed {
            Err(PeerError::Closed("the peer".into()))
        } else {
            Ok(())
        }
    }

    /// If `chan` is the own channel of a closed connection waiting for its
    /// close, that connection.
    fn release_on_close(&self, chan: ChanId) -> Option<ConnId> {
        self.releasing
            .iter()
            .find(|(_, (main, _))| *main == chan)
            .map(|(c, _)| *c)
    }
}

#[cfg(test)]
mod tests;
