//! The hub: every piece of shared broker state (ids, sessions, rooms, room
//! state, rendezvous keys, hostnames, grace-window queues) behind one small
//! API.
//!
//! The socket code knows only a handful of calls: [`Hub::connect`],
//! [`Hub::try_signal`], [`Hub::handle`], [`Hub::handle_binary`], [`Hub::reject`],
//! [`Hub::disconnect`] and [`Hub::sweep`].
//! Everything the hub sends leaves through a connection's bounded outbound
//! queue (an [`outbox::Sender`]), or a one-shot "close with this
//! code" switch. The hub never awaits: its lock is held only for plain,
//! short state changes, so no lock is ever held across an `.await`. It
//! never reads a clock or a global random source either: `now` comes with
//! every call, and random bytes (resume tokens, assigned ids) and the wall
//! clock (TURN credentials) from the [`HubEnv`] it is built with, so tests
//! run it on simulated time with a seeded generator. Delivery between
//! several broker processes (Redis pub/sub) can later replace
//! `State::deliver` without touching the socket code.
//!
//! One file per concern, each an `impl State` block over the one state:
//!
//! - `sessions`: ids, resume tokens, the grace window; attach, detach, release.
//! - `delivery`: outbound queues, grace-window queues, requeue of unsent
//!   frames, `peer-gone` / `queue-full`.
//! - `rooms`: membership, broadcast, room state with TTL, snapshots.
//! - `rendezvous`: keys, joiners, listen and pipe deadlines.
//! - `hostnames`: names owned by ids, registered and looked up atomically.
//! - `signal`: the fast path that relays a signal without rebuilding its
//!   `data`.
//! - `relay`: relay pairs (both ids agreed), binary relay frames forwarded
//!   between them within rate and byte caps.
//! - `sweep`: everything that happens because time passed.
//! - `env`: the random source, wall clock and resume key the hub is built
//!   with.
//! - `tokens`: signed resume tokens that outlive a restart of the broker.
//!
//! A session (one registered id) moves through these states:
//!
//! ```text
//!            register                 drop (not 1000),            grace ends
//!  (none) ─────────────► attached ──── slow consumer ───► detached ─────────► released
//!                          ▲   │                             │
//!                          │   │ close 1000                  │ register with
//!                          │   └────────────────────► released │ the resume token
//!                          └─────────────────────────────────┘
//! ```
//!
//! While detached, signals, broadcasts and rendezvous events for the id are
//! queued (bounded); room membership and state are resent as snapshots on
//! resume, so room events are not queued. Rooms, keys and hostnames stay
//! with the id until it is released. Relay pairs do not survive a change of
//! connection: detaching (or being replaced, 4005) ends them (see `relay`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes};
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode, DecodeError, ErrorCode, ServerMessage};
use tokio::sync::oneshot;

use crate::auth::{Grant, Policy};
use crate::ice::IceConfig;
use crate::limits::TokenBucket;
use crate::metrics::Metrics;
pub use budget::Limit;
use budget::{AddressMeters, Addresses, Charge, Meter, Totals};

mod budget;
#[cfg(test)]
mod budget_tests;
mod cluster;
mod delivery;
mod env;
mod hostnames;
mod network_rooms;
pub mod outbox;
mod relay;
mod rendezvous;
mod rooms;
mod sessions;
pub(crate) mod signal;
mod sweep;
#[cfg(test)]
mod testing;
mod tokens;

#[cfg(any(test, feature = "fuzzing"))]
pub use env::SeededRng;
pub use env::{HubEnv, HubRng, OsRng, RandomUnavailable};
pub use tokens::{KEY_BYTES as RESUME_KEY_BYTES, ResumeKey};

pub use cluster::{Claim, Envelope, Link, LinkEnd, Notice, Op, Outcome, link};
use delivery::Kind;
pub use network_rooms::{RoomAnswer, RoomNotice, RoomView};
use relay::{Backlog, Relays};
pub use relay::{MAX_RELAY_FRAME, RelayConfig, Relayed};

/// The relay's default caps (the `--relay-*` flags' defaults).
pub mod relay_defaults {
    pub use super::relay::{
        DEFAULT_MAX_BYTES, DEFAULT_MAX_PAIRS, DEFAULT_MAX_PER_PEER, DEFAULT_RATE,
        DEFAULT_TOTAL_RATE,
    };
}
use rendezvous::Rendezvous;
use rooms::Room;
use sessions::Session;

/// One encoded JSON message on its way to a client (cheap to clone for
/// fan-out).
pub type TextFrame = Utf8Bytes;

/// A connection's outbound queue. Its frames are boxed: tokio allocates
/// a channel's first block of 32 slots when the channel is made, and 32
/// slots of a 144-byte [`Outgoing`] were 4.6 KiB for every idle
/// connection (boxed, 256 bytes).
pub type Outbox = outbox::Sender<Box<Outgoing>>;

/// The connection's end of its outbound queue.
pub type Inbox = outbox::Receiver<Box<Outgoing>>;

/// One frame on its way to a client: a JSON message (text), or a relay
/// frame (binary, `[n][sender id][payload]`; see
/// [`peerwire::protocol::relay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(TextFrame),
    Binary(Bytes),
}

impl Frame {
    /// The JSON text, if this is a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t.as_str()),
            Frame::Binary(_) => None,
        }
    }

    /// The bytes, if this is a binary (relay) frame.
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Frame::Text(_) => None,
            Frame::Binary(b) => Some(b),
        }
    }

    /// The WebSocket message that carries it.
    pub fn into_message(self) -> Message {
        match self {
            Frame::Text(t) => Message::Text(t),
            Frame::Binary(b) => Message::Binary(b),
        }
    }
}

/// Identifies one WebSocket connection for the life of the process.
pub type ConnId = u64;

/// One frame in a connection's outbound queue, with what the hub needs if
/// the connection ends before it is written: frames for a detached id go
/// back to the front of its grace-window queue, and senders of frames that
/// can no longer be delivered are told. A relay frame also holds its share
/// of the receiver's relay backlog, given back when it is dropped (written,
/// or thrown away with its connection).
#[derive(Debug)]
pub struct Outgoing {
    pub frame: Frame,
    origin: Option<(String, Rid)>,
    kind: Kind,
    /// Held for its `Drop`, which gives the bytes back.
    _backlog: Option<Backlog>,
    /// The frame's bytes against the connection's and its address's
    /// outbound budgets (`--outbound-queue-bytes`, `--ip-queued-bytes`),
    /// given back when dropped.
    charge: Option<Charge>,
    /// Part of a resume (a snapshot of a kept room, a message queued in
    /// the grace window): not held to the connection's own byte budget,
    /// which it could pass by itself and so cut the client off at every
    /// resume; its address's budget still applies.
    resync: bool,
}

impl Outgoing {
    /// The WebSocket message that carries this frame. Dropping the rest
    /// gives a relay frame's bytes back to the receiver's relay backlog.
    pub fn into_message(self) -> Message {
        self.frame.into_message()
    }

    /// What the frame holds of the byte budgets, once its message was fed
    /// to the socket: the socket task drops that once the write is
    /// flushed, so that a frame taken from the queue but stuck in a write
    /// still counts.
    pub fn into_held(self) -> Held {
        Held {
            _backlog: self._backlog,
            _charge: self.charge,
        }
    }
}

/// A frame's share of the byte budgets, while it is being written; dropping
/// it gives the bytes back.
#[derive(Debug)]
pub struct Held {
    _backlog: Option<Backlog>,
    _charge: Option<Charge>,
}

/// The reason of the 4005 that closes a connection which registered an id
/// after a restart, when the id's owner comes back with its token.
pub const OWNER_CAME_BACK: &str =
    "replaced: the owner of this id came back with its resume token after a broker restart";

/// Limits and timings the hub enforces.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub grace: Duration,
    pub max_queued: usize,
    /// Bytes queued for one detached id (`--max-queued-bytes`).
    pub max_queued_bytes: usize,
    /// Bytes of text frames in one connection's outbound queue
    /// (`--outbound-queue-bytes`).
    pub outbound_queue_bytes: usize,
    /// Bytes in outbound and grace queues for one address
    /// (`--ip-queued-bytes`).
    pub ip_queued_bytes: usize,
    /// Bytes of one room's state (`--max-room-state-bytes`).
    pub max_room_state_bytes: usize,
    /// Bytes of room state one id has set (`--max-peer-state-bytes`).
    pub max_peer_state_bytes: usize,
    /// Bytes of room state set from one address (`--ip-state-bytes`).
    pub ip_state_bytes: usize,
    /// Bytes a second of broadcast fan-out and join snapshots per
    /// connection (`--fanout-rate`).
    pub fanout_rate: u64,
    pub max_room_members: usize,
    pub max_rooms_per_peer: usize,
    pub max_state_keys: usize,
    /// Rendezvous keys one peer may have opened, and joined, at once.
    pub max_keys_per_peer: usize,
    /// Hostnames one id may hold at once.
    pub max_hostnames_per_peer: usize,
    /// Which ids and rooms need a token.
    pub auth: Policy,
    /// An opened key with no joiner is closed after this (4000).
    pub listen_timeout: Option<Duration>,
    /// A matched opener/joiner pair is ended after this (4001).
    pub pipe_timeout: Option<Duration>,
    pub ice: IceConfig,
    /// Whether and within which caps the broker relays (`--relay*`).
    pub relay: RelayConfig,
    /// The message rate and burst each connection may use (`--rate-limit`,
    /// `--rate-burst`), told to clients in `registered` so that they pace
    /// themselves; `None` tells nothing.
    pub message_rate: Option<(u64, u64)>,
    /// The largest client frame (`--max-frame-bytes`), told to clients in
    /// `registered` so that they refuse larger messages themselves.
    pub max_frame_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        use peerwire::protocol::limits::*;
        Self {
            grace: Duration::from_millis(GRACE_MS),
            max_queued: MAX_QUEUED_PER_PEER,
            max_queued_bytes: MAX_QUEUED_BYTES,
            outbound_queue_bytes: OUTBOUND_QUEUE_BYTES,
            ip_queued_bytes: IP_QUEUED_BYTES,
            max_room_state_bytes: MAX_ROOM_STATE_BYTES,
            max_peer_state_bytes: MAX_PEER_STATE_BYTES,
            ip_state_bytes: IP_STATE_BYTES,
            fanout_rate: FANOUT_RATE,
            max_room_members: MAX_ROOM_MEMBERS,
            max_rooms_per_peer: MAX_ROOMS_PER_PEER,
            max_state_keys: MAX_STATE_KEYS,
            max_keys_per_peer: MAX_KEYS_PER_PEER,
            max_hostnames_per_peer: MAX_HOSTNAMES_PER_PEER,
            auth: Policy::default(),
            listen_timeout: Some(Duration::from_millis(LISTEN_TIMEOUT_MS)),
            pipe_timeout: Some(Duration::from_millis(PIPE_TIMEOUT_MS)),
            ice: IceConfig::default(),
            relay: RelayConfig::default(),
            message_rate: None,
            max_frame_bytes: MAX_FRAME_BYTES,
        }
    }
}

/// Counts the `/metrics` endpoint reports as gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub connections: usize,
    pub ids: usize,
    pub detached: usize,
    pub rooms: usize,
    pub keys: usize,
    pub hostnames: usize,
    /// Relay pairs both ids agreed to (`relay-ready` sent).
    pub relay_pairs: usize,
    /// Relay intents waiting for the other id to agree.
    pub relay_pending: usize,
    /// Bytes in outbound queues, not yet written.
    pub outbound_bytes: usize,
    /// Bytes in grace-window queues of detached ids.
    pub grace_bytes: usize,
    /// Bytes of room state (as charged against the state budgets).
    pub state_bytes: usize,
}

/// The shared broker state. Cheap to share as `Arc<Hub>`.
pub struct Hub {
    state: Mutex<State>,
}

impl Hub {
    /// A hub enforcing `config`, counting into `metrics`, and taking random
    /// bytes and the wall clock from `env` ([`HubEnv::os`] in production).
    pub fn new(config: HubConfig, metrics: Arc<Metrics>, mut env: HubEnv) -> Self {
        // This run's boot id, in every token it issues. Should the random
        // source fail, tokens cannot be made either, so zeros do no harm.
        let mut incarnation = [0u8; tokens::INCARNATION_BYTES];
        let _ = env.rng.fill(&mut incarnation);
        Self {
            state: Mutex::new(State {
                config,
                metrics,
                env,
                incarnation,
                started: None,
                revived: HashSet::new(),
                evicted: HashMap::new(),
                next_conn: 1,
                conns: HashMap::new(),
                sessions: HashMap::new(),
                rooms: HashMap::new(),
                keys: HashMap::new(),
                hostnames: HashMap::new(),
                detached: HashSet::new(),
                ttl_rooms: HashSet::new(),
                cut_off: HashMap::new(),
                relays: Relays::default(),
                cluster: None,
                net_rooms: HashMap::new(),
                handoffs: HashSet::new(),
                addresses: Addresses::default(),
                totals: Totals::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving rather
        // than poisoning every later connection.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new WebSocket connection: `tx` is its bounded outbound queue, `kill`
    /// closes it with a code, `grant` is what its token allows,
    /// `broker_host` the host it reached the broker by (for the broker's
    /// own `stun:` URL; see [`crate::ice::url_host`]), and `address` the
    /// client's address, whose byte budgets it shares (`None`: its own).
    pub fn connect(
        &self,
        tx: Outbox,
        kill: oneshot::Sender<CloseCode>,
        grant: Option<Grant>,
        broker_host: Option<String>,
        address: Option<IpAddr>,
    ) -> ConnId {
        let mut st = self.lock();
        let id = st.next_conn;
        st.next_conn += 1;
        let address = match address {
            Some(ip) => st.addresses.of(ip),
            None => AddressMeters::default(),
        };
        // Boxed, as sessions are: the maps' tables hold a pointer per
        // slot, not a whole entry (at most 7 in 8 slots are used, often
        // half), and there is an entry per connection.
        st.conns.insert(
            id,
            Box::new(Conn {
                tx,
                kill: Some(kill),
                peer: None,
                grant,
                broker_host,
                relay_backlog: Arc::new(AtomicUsize::new(0)),
                outbound: Arc::new(Meter::default()),
                address,
                fanout: None,
            }),
        );
        id
    }

    /// One decoded message from connection `conn`.
    pub fn handle(&self, conn: ConnId, msg: ClientMessage, now: Instant) {
        self.lock().handle(conn, msg, now);
    }

    /// One binary WebSocket frame from `conn`: a relay frame
    /// (`[n][receiver id][payload]`). Forwarded to the receiver as
    /// `[n][sender id][payload]` when the two have a `relay-ready` pair and
    /// the pair's caps allow; otherwise `conn` hears why (`error`
    /// `bad-message` for a malformed frame, `relay-closed` when there is no
    /// pair or a cap ended it) and the frame is dropped. The answer says
    /// which, so that the socket code charges dropped frames to the
    /// connection's message rate limit (forwarded ones are paced by the
    /// relay's byte caps instead).
    pub fn handle_binary(&self, conn: ConnId, frame: &[u8], now: Instant) -> Relayed {
        // Read outside the lock every connection shares.
        let decoded = peerwire::protocol::relay::decode(frame);
        self.lock().relay_frame(conn, decoded, now)
    }

    /// A frame from `conn` that could not be decoded.
    pub fn reject(&self, conn: ConnId, err: DecodeError, now: Instant) {
        let mut st = self.lock();
        st.metrics.error(err.code);
        let reply = ServerMessage::error(err.rid, err.code, err.message);
        st.send_conn(conn, &reply, now);
    }

    /// Connection `conn` ended. `clean` (the client closed with 1000)
    /// releases its id at once; otherwise the id enters its grace window.
    /// `rx` is the connection's outbound queue: what it still holds was
    /// never written, and is queued again for the id or reported to its
    /// senders. Draining it under the hub's lock means no frame can slip in
    /// behind.
    ///
    /// Returns the reason to close with in place of the close code's usual
    /// one, when the hub has a more specific one (a 4005 because the id's
    /// owner came back after a restart).
    pub fn disconnect(
        &self,
        conn: ConnId,
        clean: bool,
        now: Instant,
        rx: &mut Inbox,
    ) -> Option<&'static str> {
        self.disconnect_with(conn, clean, now, rx, None)
    }

    /// [`Hub::disconnect`] for a connection that had taken `unwritten` off
    /// its queue but not yet handed it to its socket: it goes back first.
    pub fn disconnect_with(
        &self,
        conn: ConnId,
        clean: bool,
        now: Instant,
        rx: &mut Inbox,
        unwritten: Option<Outgoing>,
    ) -> Option<&'static str> {
        let mut st = self.lock();
        rx.close();
        let mut unsent: Vec<Outgoing> = unwritten.into_iter().collect();
        while let Ok(o) = rx.try_recv() {
            unsent.push(*o);
        }
        let reason = match st.conns.remove(&conn) {
            Some(entry) => {
                if let Some(peer) = entry.peer {
                    if clean {
                        st.release(&peer, now);
                    } else {
                        st.detach(&peer, now);
                    }
                    st.requeue(&peer, unsent, now);
                }
                None
            }
            // Cut off earlier by the hub (4003, 4005): its id was detached,
            // or taken over by a newer connection, then.
            None => {
                if let Some(peer) = st.cut_off.remove(&conn) {
                    st.requeue(&peer, unsent, now);
                    st.end_local_handoff(&peer, now);
                    None
                } else if let Some(peer) = st.evicted.remove(&conn) {
                    st.refuse_unsent(&peer, unsent, now);
                    Some(OWNER_CAME_BACK)
                } else {
                    None
                }
            }
        };
        st.addresses.prune();
        reason
    }

    /// How many joiners rendezvous key `key` has, if it is open on this
    /// broker.
    pub fn key_joiners(&self, key: &str) -> Option<usize> {
        self.lock().keys.get(key).map(|rv| rv.joiners.len())
    }

    /// Whether the hub holds `id` (connected, or inside its grace window).
    pub fn holds(&self, id: &str) -> bool {
        self.lock().sessions.contains_key(id)
    }

    /// An id nobody holds now, of the kind `register` assigns (for
    /// protocols whose clients ask for an id before they connect).
    pub fn fresh_id(&self) -> Option<String> {
        self.lock().assign_peer_id(0).ok()
    }

    /// Whether connection `conn` has registered an id.
    pub fn is_registered(&self, conn: ConnId) -> bool {
        self.lock()
            .conns
            .get(&conn)
            .is_some_and(|c| c.peer.is_some())
    }

    /// Ends grace windows, rendezvous deadlines and state keys whose time
    /// has come.
    pub fn sweep(&self, now: Instant) {
        self.lock().sweep(now);
    }

    /// Closes every connection with `code` (1001 at shutdown).
    pub fn close_all(&self, code: CloseCode) {
        let mut st = self.lock();
        for conn in st.conns.values_mut() {
            if let Some(kill) = conn.kill.take() {
                let _ = kill.send(code);
            }
        }
    }

    /// Whether the hub holds nothing at all: no connection, id, room, key,
    /// hostname, or cut-off connection still to hand back its frames.
    pub fn is_idle(&self) -> bool {
        let mut st = self.lock();
        st.addresses.prune();
        st.conns.is_empty()
            && st.sessions.is_empty()
            && st.detached.is_empty()
            && st.rooms.is_empty()
            && st.keys.is_empty()
            && st.hostnames.is_empty()
            && st.ttl_rooms.is_empty()
            && st.cut_off.is_empty()
            && st.evicted.is_empty()
            && st.relays.is_empty()
            && st.net_rooms.is_empty()
            && st.handoffs.is_empty()
            && st.addresses.is_empty()
            && st.totals.outbound.held() == 0
            && st.totals.grace.held() == 0
            && st.totals.state.held() == 0
    }

    /// The gauges `/metrics` reports.
    pub fn stats(&self) -> HubStats {
        let st = self.lock();
        HubStats {
            connections: st.conns.len(),
            ids: st.sessions.len(),
            detached: st.detached.len(),
            // In a network, the rooms this broker has members in.
            rooms: st.rooms.len() + st.net_rooms.len(),
            keys: st.keys.len(),
            hostnames: st.hostnames.len(),
            relay_pairs: st.relays.active(),
            relay_pending: st.relays.pending(),
            outbound_bytes: st.totals.outbound.held(),
            grace_bytes: st.totals.grace.held(),
            state_bytes: st.totals.state.held(),
        }
    }
}

/// One WebSocket connection as the hub sees it.
struct Conn {
    tx: Outbox,
    kill: Option<oneshot::Sender<CloseCode>>,
    /// The id this connection registered, once it has.
    peer: Option<String>,
    /// What the token presented at upgrade allows.
    grant: Option<Grant>,
    /// The host this connection reached the broker by, for the broker's
    /// own `stun:` URL.
    broker_host: Option<String>,
    /// Bytes of relay frames in the outbound queue, not yet written.
    relay_backlog: Arc<AtomicUsize>,
    /// Bytes of text frames in the outbound queue, not yet written.
    outbound: Arc<Meter>,
    /// The byte budgets of the client's address.
    address: AddressMeters,
    /// Bytes a second of broadcast fan-out and join snapshots
    /// (`--fanout-rate`), made full at first use.
    fanout: Option<TokenBucket>,
}

/// Why a request was refused: the code, the request it answers, and a
/// detail for the developer.
type Refusal = (ErrorCode, Rid, String);

/// What a request gets back: its reply, or an error.
type Answer = Result<ServerMessage, Refusal>;

/// A broken invariant of the hub, answered instead of panicking under the
/// lock: the request has no effect and the client hears `internal`.
fn internal(rid: Rid, detail: &str) -> Refusal {
    tracing::error!(rid, "hub invariant broken: {detail}");
    (ErrorCode::Internal, rid, detail.to_string())
}

struct State {
    config: HubConfig,
    metrics: Arc<Metrics>,
    env: HubEnv,
    next_conn: ConnId,
    conns: HashMap<ConnId, Box<Conn>>,
    sessions: HashMap<String, Box<Session>>,
    rooms: HashMap<String, Room>,
    keys: HashMap<String, Rendezvous>,
    /// Each registered hostname with the id that owns it.
    hostnames: HashMap<String, String>,
    /// Ids inside their grace window, for `sweep`.
    detached: HashSet<String>,
    /// Rooms holding at least one expiring key, for `sweep`.
    ttl_rooms: HashSet<String>,
    /// Connections the hub cut off (4003, 4005) whose tasks have not yet
    /// handed back their unsent frames, with the id they had.
    cut_off: HashMap<ConnId, String>,
    /// This run's boot id (see `tokens`).
    incarnation: [u8; tokens::INCARNATION_BYTES],
    /// The first instant the hub was given: the restart the grace window
    /// after which tokens of earlier runs are honoured counts from.
    started: Option<Instant>,
    /// Ids reclaimed with a token of an earlier run since this one
    /// started: each is reclaimed so once (cleared when the window ends).
    revived: HashSet<String>,
    /// Connections closed (4005) because the owner of their id came back
    /// after a restart: their unsent frames were for them, not for the
    /// owner, and their senders hear `peer-gone`.
    evicted: HashMap<ConnId, String>,
    /// Relay pairs, pending and active.
    relays: Relays,
    /// The queue to the cluster task, when this broker is one of a
    /// network (`--redis`).
    cluster: Option<Link>,
    /// In a network: the rooms this broker's ids are in, with those ids
    /// (Redis holds the rooms themselves; see `network_rooms`).
    net_rooms: HashMap<String, Vec<String>>,
    /// In a network: ids taken over from another broker that wait for what
    /// it still had for them (see `cluster`), for `sweep`.
    handoffs: HashSet<String>,
    /// Byte budgets per client address (see `budget`).
    addresses: Addresses,
    /// Bytes held broker-wide, by class, for the gauges.
    totals: Totals,
}

impl State {
    /// Sends a reply to the requester, or an error with the given code.
    fn reply(&mut self, conn: ConnId, result: Answer, now: Instant) {
        let msg = match result {
            Ok(msg) => msg,
            Err((code, rid, detail)) => {
                self.metrics.error(code);
                ServerMessage::error(Some(rid), code, detail)
            }
        };
        self.send_conn(conn, &msg, now);
    }

    /// Checks a request and hands it to the concern that owns it.
    fn handle(&mut self, conn: ConnId, msg: ClientMessage, now: Instant) {
        self.metrics.messages_in.inc();
        let rid = msg.rid();
        if let Err((code, detail)) = msg.validate() {
            return self.reply(conn, Err((code, rid, detail)), now);
        }
        let Some(entry) = self.conns.get(&conn) else {
            return;
        };
        let me = entry.peer.clone();
        let msg = match (&me, self.cluster.is_some()) {
            (Some(me), true) => match self.network_room_request(conn, me, msg, now) {
                Some(msg) => msg,
                None => return,
            },
            _ => msg,
        };
        let result = match (msg, me) {
            (
                ClientMessage::Register {
                    rid,
                    id,
                    resume_token,
                },
                None,
            ) => {
                return self.register(conn, rid, id, resume_token, now);
            }
            (ClientMessage::Register { .. }, Some(me)) => Err((
                ErrorCode::AlreadyRegistered,
                rid,
                format!("this connection is registered as {me:?}"),
            )),
            (ClientMessage::Ping { rid }, _) => Ok(ServerMessage::Pong { rid }),
            (_, None) => Err((ErrorCode::NotRegistered, rid, String::new())),
            (ClientMessage::Find { rid, id }, Some(_)) => {
                if self.sessions.contains_key(&id) {
                    Ok(ServerMessage::Found {
                        rid,
                        id,
                        online: true,
                    })
                } else {
                    match self.find_elsewhere(conn, rid, id) {
                        Some(msg) => Ok(msg),
                        None => return,
                    }
                }
            }
            (ClientMessage::Signal { rid, to, data }, Some(me)) => {
                match self.signal(&me, rid, &to, data, now) {
                    Ok(()) => return,
                    Err(code) => {
                        self.metrics.error(code);
                        Ok(ServerMessage::delivery_error(rid, code, &to))
                    }
                }
            }
            (ClientMessage::Join { rid, room }, Some(me)) => self.join(&me, rid, room, now),
            (ClientMessage::Leave { rid, room }, Some(me)) => self.leave(&me, rid, &room, now),
            (
                ClientMessage::Broadcast {
                    rid,
                    room,
                    data,
                    include_self,
                },
                Some(me),
            ) => {
                return self.broadcast(conn, &me, rid, room, data, include_self, now);
            }
            (
                ClientMessage::Set {
                    rid,
                    room,
                    key,
                    value,
                    ttl_ms,
                },
                Some(me),
            ) => self.set(&me, rid, room, key, value, ttl_ms, now),
            (ClientMessage::Delete { rid, room, key }, Some(me)) => {
                self.delete(&me, rid, room, key, now)
            }
            (ClientMessage::OpenKey { rid, key }, Some(me)) => self.open_key(&me, rid, key, now),
            (ClientMessage::JoinKey { rid, key }, Some(me)) => self.join_key(&me, rid, key, now),
            (ClientMessage::LeaveKey { rid, key }, Some(me)) => self.leave_key(&me, rid, &key, now),
            (ClientMessage::CloseKey { rid, key }, Some(me)) => self.close_key(&me, rid, &key, now),
            (ClientMessage::RegisterHostname { rid, hostname }, Some(me)) => {
                self.register_hostname(&me, rid, hostname)
            }
            (ClientMessage::LookupHostname { rid, hostname }, Some(_)) => {
                self.lookup_hostname(rid, hostname)
            }
            (ClientMessage::Relay { rid, to }, Some(me)) => self.relay(&me, rid, to, now),
            (ClientMessage::RelayEnd { rid, to }, Some(me)) => self.relay_end(&me, rid, &to, now),
        };
        self.reply(conn, result, now);
    }
}
