//! The hub: every piece of shared broker state (ids, sessions, rooms, room
//! state, rendezvous keys, grace-window queues) behind one small API.
//!
//! The socket code knows only five calls: [`Hub::connect`], [`Hub::handle`],
//! [`Hub::reject`], [`Hub::disconnect`] and [`Hub::sweep`]. Everything the
//! hub sends leaves through a connection's bounded outbound queue (a
//! `tokio::sync::mpsc::Sender`), or a one-shot "close with this code" switch.
//! The hub never awaits: its lock is held only for plain, short state
//! changes, so no lock is ever held across an `.await`. Delivery between
//! several broker processes (Redis pub/sub) can later replace
//! [`State::deliver`] without touching the socket code.
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
//! resume, so room events are not queued.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{
    ClientMessage, CloseCode, DecodeError, ErrorCode, PROTOCOL_VERSION, RemovalReason,
    ServerMessage, StateEntry, ids,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Grant, Policy};
use crate::ice::IceConfig;
use crate::metrics::Metrics;

/// One encoded frame on its way to a client (cheap to clone for fan-out).
pub type Frame = Utf8Bytes;

/// Identifies one WebSocket connection for the life of the process.
pub type ConnId = u64;

/// One frame in a connection's outbound queue, with what the hub needs if
/// the connection ends before it is written: frames for a detached id go
/// back to the front of its grace-window queue, and senders of frames that
/// can no longer be delivered are told.
#[derive(Debug)]
pub struct Outgoing {
    pub frame: Frame,
    origin: Option<(String, Rid)>,
    kind: Kind,
}

/// Limits and timings the hub enforces.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub grace: Duration,
    pub max_queued: usize,
    pub max_room_members: usize,
    pub max_rooms_per_peer: usize,
    pub max_state_keys: usize,
    /// Rendezvous keys one peer may have opened, and joined, at once.
    pub max_keys_per_peer: usize,
    /// Which ids and rooms need a token.
    pub auth: Policy,
    /// An opened key with no joiner is closed after this (4000).
    pub listen_timeout: Option<Duration>,
    /// A matched opener/joiner pair is ended after this (4001).
    pub pipe_timeout: Option<Duration>,
    pub ice: IceConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        use peerwire::protocol::limits::*;
        Self {
            grace: Duration::from_millis(GRACE_MS),
            max_queued: MAX_QUEUED_PER_PEER,
            max_room_members: MAX_ROOM_MEMBERS,
            max_rooms_per_peer: MAX_ROOMS_PER_PEER,
            max_state_keys: MAX_STATE_KEYS,
            max_keys_per_peer: MAX_KEYS_PER_PEER,
            auth: Policy::default(),
            listen_timeout: Some(Duration::from_millis(LISTEN_TIMEOUT_MS)),
            pipe_timeout: Some(Duration::from_millis(PIPE_TIMEOUT_MS)),
            ice: IceConfig::default(),
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
}

/// The shared broker state. Cheap to share as `Arc<Hub>`.
pub struct Hub {
    state: Mutex<State>,
}

impl Hub {
    pub fn new(config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::new(State {
                config,
                metrics,
                next_conn: 1,
                conns: HashMap::new(),
                sessions: HashMap::new(),
                rooms: HashMap::new(),
                keys: HashMap::new(),
                detached: HashSet::new(),
                ttl_rooms: HashSet::new(),
                cut_off: HashMap::new(),
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
    /// closes it with a code.
    pub fn connect(
        &self,
        tx: mpsc::Sender<Outgoing>,
        kill: oneshot::Sender<CloseCode>,
        grant: Option<Grant>,
    ) -> ConnId {
        let mut st = self.lock();
        let id = st.next_conn;
        st.next_conn += 1;
        st.conns.insert(
            id,
            Conn {
                tx,
                kill: Some(kill),
                peer: None,
                grant,
            },
        );
        id
    }

    /// One decoded message from connection `conn`.
    pub fn handle(&self, conn: ConnId, msg: ClientMessage, now: Instant) {
        self.lock().handle(conn, msg, now);
    }

    /// A frame from `conn` that could not be decoded.
    pub fn reject(&self, conn: ConnId, err: DecodeError) {
        let mut st = self.lock();
        st.metrics.error(err.code);
        let reply = ServerMessage::error(err.rid, err.code, err.message);
        st.send_conn(conn, &reply, Instant::now());
    }

    /// Connection `conn` ended. `clean` (the client closed with 1000)
    /// releases its id at once; otherwise the id enters its grace window.
    /// `rx` is the connection's outbound queue: what it still holds was
    /// never written, and is queued again for the id or reported to its
    /// senders. Draining it under the hub's lock means no frame can slip in
    /// behind.
    pub fn disconnect(
        &self,
        conn: ConnId,
        clean: bool,
        now: Instant,
        rx: &mut mpsc::Receiver<Outgoing>,
    ) {
        let mut st = self.lock();
        rx.close();
        let mut unsent = Vec::new();
        while let Ok(o) = rx.try_recv() {
            unsent.push(o);
        }
        match st.conns.remove(&conn) {
            Some(entry) => {
                let Some(peer) = entry.peer else { return };
                if clean {
                    st.release(&peer);
                } else {
                    st.detach(&peer, now);
                }
                st.requeue(&peer, unsent, now);
            }
            // Cut off earlier by the hub (4003, 4005): its id was detached,
            // or taken over by a newer connection, then.
            None => {
                if let Some(peer) = st.cut_off.remove(&conn) {
                    st.requeue(&peer, unsent, now);
                }
            }
        }
    }

    /// Whether connection `conn` has registered an id.
    pub fn is_registered(&self, conn: ConnId) -> bool {
        self.lock()
            .conns
            .get(&conn)
            .is_some_and(|c| c.peer.is_some())
    }

    /// Ends grace windows and state keys whose time has come.
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
    /// or cut-off connection still to hand back its frames.
    pub fn is_idle(&self) -> bool {
        let st = self.lock();
        st.conns.is_empty()
            && st.sessions.is_empty()
            && st.detached.is_empty()
            && st.rooms.is_empty()
            && st.keys.is_empty()
            && st.ttl_rooms.is_empty()
            && st.cut_off.is_empty()
    }

    pub fn stats(&self) -> HubStats {
        let st = self.lock();
        HubStats {
            connections: st.conns.len(),
            ids: st.sessions.len(),
            detached: st.detached.len(),
            rooms: st.rooms.len(),
            keys: st.keys.len(),
        }
    }
}

struct Conn {
    tx: mpsc::Sender<Outgoing>,
    kill: Option<oneshot::Sender<CloseCode>>,
    /// The id this connection registered, once it has.
    peer: Option<String>,
    /// What the token presented at upgrade allows.
    grant: Option<Grant>,
}

struct Session {
    token: String,
    /// The connection holding the id; `None` inside the grace window.
    conn: Option<ConnId>,
    /// When the grace window ends (set while detached).
    grace_deadline: Option<Instant>,
    /// Messages held for the id while it is detached.
    queue: VecDeque<Queued>,
    rooms: BTreeSet<String>,
    opened_keys: BTreeSet<String>,
    joined_keys: BTreeSet<String>,
}

struct Queued {
    frame: Frame,
    /// Who to tell (`peer-gone`) if the id never comes back.
    origin: Option<(String, Rid)>,
}

#[derive(Default)]
struct Room {
    /// Members in join order.
    members: Vec<String>,
    state: BTreeMap<String, StateValue>,
}

struct StateValue {
    value: Value,
    from: String,
    expires: Option<Instant>,
}

struct Rendezvous {
    opener: String,
    /// Each joiner with the end of its pipe deadline (if any).
    joiners: BTreeMap<String, Option<Instant>>,
    /// While nobody has joined: when the key is closed (4000).
    listen_deadline: Option<Instant>,
}

/// How a message should be treated if its target is detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Queue it; report failures to the origin.
    Queued,
    /// Room membership/state: dropped while detached, resent as a snapshot on resume.
    RoomEvent,
}

struct State {
    config: HubConfig,
    metrics: Arc<Metrics>,
    next_conn: ConnId,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<String, Session>,
    rooms: HashMap<String, Room>,
    keys: HashMap<String, Rendezvous>,
    /// Ids inside their grace window, for `sweep`.
    detached: HashSet<String>,
    /// Rooms holding at least one expiring key, for `sweep`.
    ttl_rooms: HashSet<String>,
    /// Connections the hub cut off (4003, 4005) whose tasks have not yet
    /// handed back their unsent frames, with the id they had.
    cut_off: HashMap<ConnId, String>,
}

fn encode(msg: &ServerMessage) -> Frame {
    Frame::from(msg.encode())
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_peer_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    ids::assigned_peer_id(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn keys_error(rid: Rid, held: usize) -> (ErrorCode, Rid, String) {
    (
        ErrorCode::TooManyKeys,
        rid,
        format!("already holding {held} rendezvous keys"),
    )
}

fn remaining_ms(expires: Option<Instant>, now: Instant) -> Option<u64> {
    expires.map(|e| e.saturating_duration_since(now).as_millis() as u64)
}

impl State {
    // ---- sending -------------------------------------------------------

    /// Sends to a connection. A full queue means the client cannot keep up:
    /// it is closed with 4003 and its id detached (the frame is then queued
    /// for it like any other message to a detached id).
    fn send_conn(&mut self, conn: ConnId, msg: &ServerMessage, now: Instant) {
        let frame = encode(msg);
        self.send_frame(conn, frame, None, Kind::Queued, now);
    }

    fn send_frame(
        &mut self,
        conn: ConnId,
        frame: Frame,
        origin: Option<(String, Rid)>,
        kind: Kind,
        now: Instant,
    ) {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        match entry.tx.try_send(Outgoing {
            frame,
            origin,
            kind,
        }) {
            Ok(()) => {
                self.metrics.messages_out.inc();
            }
            Err(err) => {
                // Full: the client does not read fast enough. Closed: its
                // socket task has ended without `disconnect` (it always
                // calls it; this is a safety net). Either way the id is
                // detached now and the frame queued; what the connection
                // still holds comes back through `disconnect`.
                let out = match err {
                    mpsc::error::TrySendError::Full(o) => {
                        if let Some(kill) = entry.kill.take() {
                            let _ = kill.send(CloseCode::SlowConsumer);
                        }
                        self.metrics.close(CloseCode::SlowConsumer);
                        o
                    }
                    mpsc::error::TrySendError::Closed(o) => o,
                };
                let peer = entry.peer.take();
                self.conns.remove(&conn);
                if let Some(peer) = peer {
                    self.cut_off.insert(conn, peer.clone());
                    self.detach(&peer, now);
                    if out.kind == Kind::Queued {
                        self.enqueue_or_tell(&peer, out.frame, out.origin, now);
                    }
                }
            }
        }
    }

    /// Delivers to a registered id, wherever it is.
    fn deliver(
        &mut self,
        to: &str,
        msg: &ServerMessage,
        origin: Option<(String, Rid)>,
        kind: Kind,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let Some(session) = self.sessions.get(to) else {
            return Err(ErrorCode::UnknownPeer);
        };
        let frame = encode(msg);
        match session.conn {
            Some(conn) => {
                self.send_frame(conn, frame, origin, kind, now);
                Ok(())
            }
            None if kind == Kind::RoomEvent => Ok(()),
            None => self.enqueue(to, frame, origin),
        }
    }

    /// Queues for a detached id; if its queue is full, the sender is told.
    fn enqueue_or_tell(
        &mut self,
        to: &str,
        frame: Frame,
        origin: Option<(String, Rid)>,
        now: Instant,
    ) {
        if let Err(code) = self.enqueue(to, frame, origin.clone()) {
            self.tell_origin(origin, code, to, now);
        }
    }

    /// Tells the sender of an undeliverable message to `to` why.
    fn tell_origin(
        &mut self,
        origin: Option<(String, Rid)>,
        code: ErrorCode,
        to: &str,
        now: Instant,
    ) {
        if let Some((origin, rid)) = origin {
            self.metrics.error(code);
            let err = ServerMessage::delivery_error(rid, code, to);
            let _ = self.deliver(&origin, &err, None, Kind::Queued, now);
        }
    }

    /// Frames a connection of `peer` never wrote. If the id is detached they
    /// go back to the front of its queue (the queue keeps its bound; the
    /// newest beyond it are refused with `queue-full`); if a newer
    /// connection holds the id they go to it; if the id is gone their
    /// senders get `peer-gone`.
    fn requeue(&mut self, peer: &str, unsent: Vec<Outgoing>, now: Instant) {
        let frames: Vec<Outgoing> = unsent
            .into_iter()
            .filter(|o| o.kind == Kind::Queued)
            .collect();
        if frames.is_empty() {
            return;
        }
        let max = self.config.max_queued;
        match self.sessions.get_mut(peer) {
            None => {
                for o in frames {
                    self.tell_origin(o.origin, ErrorCode::PeerGone, peer, now);
                }
            }
            Some(session) if session.conn.is_none() => {
                for o in frames.into_iter().rev() {
                    session.queue.push_front(Queued {
                        frame: o.frame,
                        origin: o.origin,
                    });
                }
                let mut refused = Vec::new();
                while session.queue.len() > max {
                    if let Some(q) = session.queue.pop_back() {
                        refused.push(q.origin);
                    }
                }
                for origin in refused.into_iter().rev() {
                    self.tell_origin(origin, ErrorCode::QueueFull, peer, now);
                }
            }
            Some(session) => {
                // A newer connection reclaimed the id (4005): deliver late
                // rather than not at all.
                let conn = session.conn.expect("attached");
                for o in frames {
                    self.send_frame(conn, o.frame, o.origin, Kind::Queued, now);
                }
            }
        }
    }

    fn enqueue(
        &mut self,
        to: &str,
        frame: Frame,
        origin: Option<(String, Rid)>,
    ) -> Result<(), ErrorCode> {
        let max = self.config.max_queued;
        let session = self.sessions.get_mut(to).ok_or(ErrorCode::UnknownPeer)?;
        if session.queue.len() >= max {
            return Err(ErrorCode::QueueFull);
        }
        session.queue.push_back(Queued { frame, origin });
        Ok(())
    }

    /// Sends a reply to the requester, or an error with the given code.
    fn reply(
        &mut self,
        conn: ConnId,
        result: Result<ServerMessage, (ErrorCode, Rid, String)>,
        now: Instant,
    ) {
        let msg = match result {
            Ok(msg) => msg,
            Err((code, rid, detail)) => {
                self.metrics.error(code);
                ServerMessage::error(Some(rid), code, detail)
            }
        };
        self.send_conn(conn, &msg, now);
    }

    // ---- requests ------------------------------------------------------

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
                let online = self.sessions.contains_key(&id);
                Ok(ServerMessage::Found { rid, id, online })
            }
            (ClientMessage::Signal { rid, to, data }, Some(me)) => {
                let msg = ServerMessage::Signal {
                    from: me.clone(),
                    data,
                };
                match self.deliver(&to, &msg, Some((me, rid)), Kind::Queued, now) {
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
        };
        self.reply(conn, result, now);
    }

    fn register(
        &mut self,
        conn: ConnId,
        rid: Rid,
        id: Option<String>,
        token: Option<String>,
        now: Instant,
    ) {
        let grant = self.conns.get(&conn).and_then(|c| c.grant.clone());
        // A token that binds an id registers that id when none is asked for.
        let id = id.or_else(|| grant.as_ref().and_then(|g| g.sub.clone()));
        let checked = match &id {
            Some(id) => self.config.auth.may_register(grant.as_ref(), id),
            // Patterns that cover the broker's assigned ids (`*`, `p-*`)
            // protect them too.
            None if self.config.auth.protects_id(&ids::assigned_peer_id([0; 8])) => Err(
                "broker-assigned ids are protected here: connect with a token whose `sub` is your id"
                    .to_string(),
            ),
            None => Ok(()),
        };
        if let Err(detail) = checked {
            return self.reply(conn, Err((ErrorCode::Unauthorized, rid, detail)), now);
        }
        let id = match (id, token) {
            (Some(id), Some(token)) if self.sessions.contains_key(&id) => {
                return self.resume(conn, rid, id, token, now);
            }
            // A token for an id that is no longer held: the grace window
            // ended (or the broker restarted). The id is free, so take it
            // afresh; `resumed: false` tells the client its rooms are gone.
            (Some(id), _) if !self.sessions.contains_key(&id) => id,
            (Some(id), None) => {
                let detail = format!("id {id:?} is taken");
                return self.reply(conn, Err((ErrorCode::IdTaken, rid, detail)), now);
            }
            (None, Some(_)) => {
                let detail = "resumeToken needs the id it was issued with".to_string();
                return self.reply(conn, Err((ErrorCode::BadMessage, rid, detail)), now);
            }
            (None, None) => loop {
                let id = random_peer_id();
                if !self.sessions.contains_key(&id) {
                    break id;
                }
            },
            (Some(_), Some(_)) => unreachable!("covered by the guards above"),
        };
        let token = random_token();
        self.sessions.insert(
            id.clone(),
            Session {
                token: token.clone(),
                conn: Some(conn),
                grace_deadline: None,
                queue: VecDeque::new(),
                rooms: BTreeSet::new(),
                opened_keys: BTreeSet::new(),
                joined_keys: BTreeSet::new(),
            },
        );
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.peer = Some(id.clone());
        }
        let msg = self.registered(rid, &id, token, false, Vec::new());
        self.send_conn(conn, &msg, now);
    }

    fn registered(
        &self,
        rid: Rid,
        id: &str,
        token: String,
        resumed: bool,
        rooms: Vec<String>,
    ) -> ServerMessage {
        ServerMessage::Registered {
            rid,
            id: id.to_string(),
            resume_token: token,
            resumed,
            ice_servers: self.config.ice.servers_for(id, unix_now()),
            grace_ms: self.config.grace.as_millis() as u64,
            protocol: PROTOCOL_VERSION,
            rooms,
        }
    }

    fn resume(&mut self, conn: ConnId, rid: Rid, id: String, token: String, now: Instant) {
        let session = self.sessions.get_mut(&id).expect("caller checked");
        if session.token != token {
            let detail = format!("the resume token does not match id {id:?}");
            return self.reply(conn, Err((ErrorCode::BadResumeToken, rid, detail)), now);
        }
        // The old connection may still look alive (a half-open socket after
        // a network change): the newer one wins.
        if let Some(old) = session.conn.take() {
            if let Some(mut entry) = self.conns.remove(&old) {
                if let Some(kill) = entry.kill.take() {
                    let _ = kill.send(CloseCode::Replaced);
                }
                self.metrics.close(CloseCode::Replaced);
                self.cut_off.insert(old, id.clone());
            }
        }
        let session = self.sessions.get_mut(&id).expect("still there");
        session.conn = Some(conn);
        session.grace_deadline = None;
        let queued = std::mem::take(&mut session.queue);
        let rooms: Vec<String> = session.rooms.iter().cloned().collect();
        self.detached.remove(&id);
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.peer = Some(id.clone());
        }
        let msg = self.registered(rid, &id, token, true, rooms.clone());
        self.send_conn(conn, &msg, now);
        for room in rooms {
            let snapshot = self.room_snapshot(None, &room, now);
            self.send_conn(conn, &snapshot, now);
        }
        for q in queued {
            self.send_frame(conn, q.frame, q.origin, Kind::Queued, now);
        }
    }

    fn room_snapshot(&self, rid: Option<Rid>, room: &str, now: Instant) -> ServerMessage {
        let r = self.rooms.get(room);
        ServerMessage::Joined {
            rid,
            room: room.to_string(),
            members: r.map(|r| r.members.clone()).unwrap_or_default(),
            state: r
                .map(|r| {
                    r.state
                        .iter()
                        .map(|(k, v)| StateEntry {
                            key: k.clone(),
                            value: v.value.clone(),
                            from: v.from.clone(),
                            ttl_ms: remaining_ms(v.expires, now),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn announce(&mut self, room: &str, msg: &ServerMessage, except: Option<&str>, now: Instant) {
        let members = match self.rooms.get(room) {
            Some(r) => r.members.clone(),
            None => return,
        };
        for m in members.iter().filter(|m| Some(m.as_str()) != except) {
            let _ = self.deliver(m, msg, None, Kind::RoomEvent, now);
        }
    }

    fn join(
        &mut self,
        me: &str,
        rid: Rid,
        room: String,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        let session = self.sessions.get(me).expect("registered");
        if !session.rooms.contains(&room) {
            let grant = session
                .conn
                .and_then(|c| self.conns.get(&c)?.grant.as_ref());
            if let Err(detail) = self.config.auth.may_join(grant, &room) {
                return Err((ErrorCode::Forbidden, rid, detail));
            }
            if session.rooms.len() >= self.config.max_rooms_per_peer {
                let detail = format!("already in {} rooms", session.rooms.len());
                return Err((ErrorCode::TooManyRooms, rid, detail));
            }
            let size = self.rooms.get(&room).map_or(0, |r| r.members.len());
            if size >= self.config.max_room_members {
                return Err((
                    ErrorCode::RoomFull,
                    rid,
                    format!("room {room:?} has {size} members"),
                ));
            }
            self.rooms
                .entry(room.clone())
                .or_default()
                .members
                .push(me.to_string());
            self.sessions
                .get_mut(me)
                .expect("registered")
                .rooms
                .insert(room.clone());
            let event = ServerMessage::PeerJoined {
                room: room.clone(),
                id: me.to_string(),
            };
            self.announce(&room, &event, Some(me), now);
        }
        Ok(self.room_snapshot(Some(rid), &room, now))
    }

    fn member_check(&self, me: &str, rid: Rid, room: &str) -> Result<(), (ErrorCode, Rid, String)> {
        let inside = self
            .sessions
            .get(me)
            .is_some_and(|s| s.rooms.contains(room));
        if inside {
            Ok(())
        } else {
            Err((ErrorCode::NotInRoom, rid, format!("not in room {room:?}")))
        }
    }

    fn leave(
        &mut self,
        me: &str,
        rid: Rid,
        room: &str,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        self.member_check(me, rid, room)?;
        self.leave_room(me, room, now);
        Ok(ServerMessage::Ok { rid })
    }

    fn leave_room(&mut self, me: &str, room: &str, now: Instant) {
        if let Some(s) = self.sessions.get_mut(me) {
            s.rooms.remove(room);
        }
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.members.retain(|m| m != me);
        if r.members.is_empty() {
            self.rooms.remove(room);
            self.ttl_rooms.remove(room);
        } else {
            let event = ServerMessage::PeerLeft {
                room: room.to_string(),
                id: me.to_string(),
            };
            self.announce(room, &event, None, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn broadcast(
        &mut self,
        conn: ConnId,
        me: &str,
        rid: Rid,
        room: String,
        data: Value,
        include_self: bool,
        now: Instant,
    ) {
        if let Err(e) = self.member_check(me, rid, &room) {
            return self.reply(conn, Err(e), now);
        }
        let members = self
            .rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        let msg = ServerMessage::Broadcast {
            room,
            from: me.to_string(),
            data,
        };
        for m in members.iter().filter(|m| include_self || m.as_str() != me) {
            if let Err(code) = self.deliver(m, &msg, Some((me.to_string(), rid)), Kind::Queued, now)
            {
                self.metrics.error(code);
                self.send_conn(conn, &ServerMessage::delivery_error(rid, code, m), now);
            }
        }
        self.send_conn(conn, &ServerMessage::Ok { rid }, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        me: &str,
        rid: Rid,
        room: String,
        key: String,
        value: Value,
        ttl_ms: Option<u64>,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        self.member_check(me, rid, &room)?;
        let max = self.config.max_state_keys;
        let r = self
            .rooms
            .get_mut(&room)
            .expect("member of an existing room");
        if !r.state.contains_key(&key) && r.state.len() >= max {
            return Err((
                ErrorCode::InvalidStateKey,
                rid,
                format!("room {room:?} holds {max} keys"),
            ));
        }
        // A TTL too far out to represent simply never expires.
        let expires = ttl_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
        r.state.insert(
            key.clone(),
            StateValue {
                value: value.clone(),
                from: me.to_string(),
                expires,
            },
        );
        if expires.is_some() {
            self.ttl_rooms.insert(room.clone());
        }
        let event = ServerMessage::StateSet {
            room: room.clone(),
            key,
            value,
            from: me.to_string(),
            ttl_ms,
        };
        self.announce(&room, &event, None, now);
        Ok(ServerMessage::Ok { rid })
    }

    fn delete(
        &mut self,
        me: &str,
        rid: Rid,
        room: String,
        key: String,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        self.member_check(me, rid, &room)?;
        let r = self
            .rooms
            .get_mut(&room)
            .expect("member of an existing room");
        if r.state.remove(&key).is_some() {
            let event = ServerMessage::StateRemoved {
                room: room.clone(),
                key,
                reason: RemovalReason::Deleted,
                from: Some(me.to_string()),
            };
            self.announce(&room, &event, None, now);
        }
        Ok(ServerMessage::Ok { rid })
    }

    fn open_key(
        &mut self,
        me: &str,
        rid: Rid,
        key: String,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        match self.keys.get(&key) {
            Some(rv) if rv.opener == me => {}
            Some(_) => return Err((ErrorCode::KeyTaken, rid, format!("key {key:?} is open"))),
            None => {
                self.key_quota(me, rid)?;
                let listen_deadline = self.listen_deadline(now);
                self.keys.insert(
                    key.clone(),
                    Rendezvous {
                        opener: me.to_string(),
                        joiners: BTreeMap::new(),
                        listen_deadline,
                    },
                );
                self.sessions
                    .get_mut(me)
                    .expect("registered")
                    .opened_keys
                    .insert(key.clone());
            }
        }
        Ok(ServerMessage::KeyOpened { rid, key })
    }

    fn join_key(
        &mut self,
        me: &str,
        rid: Rid,
        key: String,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        let Some(rv) = self.keys.get_mut(&key) else {
            return Err((
                ErrorCode::UnknownKey,
                rid,
                format!("key {key:?} is not open"),
            ));
        };
        if rv.opener == me {
            return Err((
                ErrorCode::BadMessage,
                rid,
                format!("you opened key {key:?}; others join it"),
            ));
        }
        let opener = rv.opener.clone();
        if !rv.joiners.contains_key(me) {
            let joined = self.sessions.get(me).map_or(0, |s| s.joined_keys.len());
            if joined >= self.config.max_keys_per_peer {
                return Err(keys_error(rid, joined));
            }
            let pipe_deadline = self.config.pipe_timeout.and_then(|t| now.checked_add(t));
            let rv = self.keys.get_mut(&key).expect("looked up above");
            rv.joiners.insert(me.to_string(), pipe_deadline);
            rv.listen_deadline = None;
            self.sessions
                .get_mut(me)
                .expect("registered")
                .joined_keys
                .insert(key.clone());
            let event = ServerMessage::Joiner {
                key: key.clone(),
                id: me.to_string(),
            };
            let _ = self.deliver(&opener, &event, None, Kind::Queued, now);
        }
        Ok(ServerMessage::KeyJoined { rid, key, opener })
    }

    fn leave_key(
        &mut self,
        me: &str,
        rid: Rid,
        key: &str,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        let joined = self
            .keys
            .get(key)
            .is_some_and(|rv| rv.joiners.contains_key(me));
        if !joined {
            return Err((
                ErrorCode::UnknownKey,
                rid,
                format!("you have not joined key {key:?}"),
            ));
        }
        self.drop_joiner(me, key, now);
        Ok(ServerMessage::Ok { rid })
    }

    /// Joiner `me` left `key`: the opener hears of it.
    fn drop_joiner(&mut self, me: &str, key: &str, now: Instant) {
        if let Some(opener) = self.remove_joiner(me, key, now) {
            let event = ServerMessage::Unavailable {
                key: key.to_string(),
                id: me.to_string(),
                code: None,
            };
            let _ = self.deliver(&opener, &event, None, Kind::Queued, now);
        }
    }

    /// Takes `me` off `key`'s joiners; the key listens again once nobody is
    /// left. Returns the opener if `me` was a joiner.
    fn remove_joiner(&mut self, me: &str, key: &str, now: Instant) -> Option<String> {
        if let Some(s) = self.sessions.get_mut(me) {
            s.joined_keys.remove(key);
        }
        let listen_deadline = self.listen_deadline(now);
        let rv = self.keys.get_mut(key)?;
        rv.joiners.remove(me)?;
        if rv.joiners.is_empty() {
            rv.listen_deadline = listen_deadline;
        }
        Some(rv.opener.clone())
    }

    fn listen_deadline(&self, now: Instant) -> Option<Instant> {
        self.config.listen_timeout.and_then(|t| now.checked_add(t))
    }

    /// Refuses a new key once `me` has opened `max_keys_per_peer`.
    fn key_quota(&self, me: &str, rid: Rid) -> Result<(), (ErrorCode, Rid, String)> {
        let opened = self.sessions.get(me).map_or(0, |s| s.opened_keys.len());
        if opened >= self.config.max_keys_per_peer {
            return Err(keys_error(rid, opened));
        }
        Ok(())
    }

    /// The pipe deadline of the pair (`opener` of `key`, `joiner`) passed:
    /// both sides hear `unavailable` with 4001.
    fn end_pipe(&mut self, key: &str, joiner: &str, now: Instant) {
        let Some(opener) = self.remove_joiner(joiner, key, now) else {
            return;
        };
        self.metrics.close(CloseCode::PipeTimeout);
        let code = Some(CloseCode::PipeTimeout.code());
        for (to, id) in [(&opener, joiner), (&joiner.to_string(), opener.as_str())] {
            let event = ServerMessage::Unavailable {
                key: key.to_string(),
                id: id.to_string(),
                code,
            };
            let _ = self.deliver(to, &event, None, Kind::Queued, now);
        }
    }

    /// Nobody joined `key` in time: it is closed and its opener told (4000).
    fn expire_key(&mut self, key: &str, now: Instant) {
        let Some(opener) = self.keys.get(key).map(|rv| rv.opener.clone()) else {
            return;
        };
        self.drop_key(key, now);
        self.metrics.close(CloseCode::ListenTimeout);
        let event = ServerMessage::KeyClosed {
            key: key.to_string(),
            code: CloseCode::ListenTimeout.code(),
            reason: CloseCode::ListenTimeout.reason().to_string(),
        };
        let _ = self.deliver(&opener, &event, None, Kind::Queued, now);
    }

    fn close_key(
        &mut self,
        me: &str,
        rid: Rid,
        key: &str,
        now: Instant,
    ) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
        match self.keys.get(key) {
            None => Err((
                ErrorCode::UnknownKey,
                rid,
                format!("key {key:?} is not open"),
            )),
            Some(rv) if rv.opener != me => Err((
                ErrorCode::NotOpener,
                rid,
                format!("key {key:?} was opened by another peer"),
            )),
            Some(_) => {
                self.drop_key(key, now);
                Ok(ServerMessage::Ok { rid })
            }
        }
    }

    fn drop_key(&mut self, key: &str, now: Instant) {
        let Some(rv) = self.keys.remove(key) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&rv.opener) {
            s.opened_keys.remove(key);
        }
        let event = ServerMessage::Unavailable {
            key: key.to_string(),
            id: rv.opener.clone(),
            code: None,
        };
        for j in rv.joiners.keys() {
            if let Some(s) = self.sessions.get_mut(j) {
                s.joined_keys.remove(key);
            }
            let _ = self.deliver(j, &event, None, Kind::Queued, now);
        }
    }

    // ---- lifecycle -----------------------------------------------------

    /// The id's connection is gone; hold the id for the grace window.
    fn detach(&mut self, peer: &str, now: Instant) {
        if self.config.grace.is_zero() {
            return self.release(peer);
        }
        let Some(s) = self.sessions.get_mut(peer) else {
            return;
        };
        s.conn = None;
        s.grace_deadline = Some(now + self.config.grace);
        self.detached.insert(peer.to_string());
    }

    /// Frees the id: rooms, keys, and a `peer-gone` for every queued signal.
    fn release(&mut self, peer: &str) {
        let now = Instant::now();
        let Some(session) = self.sessions.remove(peer) else {
            return;
        };
        self.detached.remove(peer);
        for q in session.queue {
            self.tell_origin(q.origin, ErrorCode::PeerGone, peer, now);
        }
        for room in &session.rooms {
            self.leave_room(peer, room, now);
        }
        for key in &session.opened_keys {
            self.drop_key(key, now);
        }
        for key in &session.joined_keys {
            self.drop_joiner(peer, key, now);
        }
    }

    /// Rendezvous deadlines: listen timeouts (4000) and pipe deadlines (4001).
    fn sweep_keys(&mut self, now: Instant) {
        if self.config.listen_timeout.is_none() && self.config.pipe_timeout.is_none() {
            return;
        }
        let due = |d: &Option<Instant>| d.is_some_and(|d| d <= now);
        let mut closed = Vec::new();
        let mut ended = Vec::new();
        for (key, rv) in &self.keys {
            if due(&rv.listen_deadline) {
                closed.push(key.clone());
            }
            for (joiner, deadline) in &rv.joiners {
                if due(deadline) {
                    ended.push((key.clone(), joiner.clone()));
                }
            }
        }
        for (key, joiner) in ended {
            self.end_pipe(&key, &joiner, now);
        }
        for key in closed {
            self.expire_key(&key, now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .detached
            .iter()
            .filter(|id| {
                self.sessions
                    .get(*id)
                    .and_then(|s| s.grace_deadline)
                    .is_none_or(|d| d <= now)
            })
            .cloned()
            .collect();
        for id in expired {
            self.release(&id);
        }
        self.sweep_keys(now);
        let rooms: Vec<String> = self.ttl_rooms.iter().cloned().collect();
        for room in rooms {
            let Some(r) = self.rooms.get_mut(&room) else {
                self.ttl_rooms.remove(&room);
                continue;
            };
            let gone: Vec<String> = r
                .state
                .iter()
                .filter(|(_, v)| v.expires.is_some_and(|e| e <= now))
                .map(|(k, _)| k.clone())
                .collect();
            for k in &gone {
                r.state.remove(k);
            }
            if !r.state.values().any(|v| v.expires.is_some()) {
                self.ttl_rooms.remove(&room);
            }
            for key in gone {
                let event = ServerMessage::StateRemoved {
                    room: room.clone(),
                    key,
                    reason: RemovalReason::Expired,
                    from: None,
                };
                self.announce(&room, &event, None, now);
            }
        }
    }
}
