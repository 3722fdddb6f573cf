//! The hub's side of a network of brokers (`--redis`): what it hands to the
//! cluster task (`crate::cluster`, which talks to Redis) and what it takes
//! back from it. Without `--redis`, `State::cluster` is `None` and nothing
//! here runs.
//!
//! The hub stays the authority for the ids connected to this broker. Redis
//! holds, for every id of the network, which broker holds it and its resume
//! token (a claim with a lease). The hub hands the task, in one ordered
//! queue ([`Op`]):
//!
//! - frames for ids it does not hold ([`Envelope`]), which the task
//!   publishes to the holder's broker in the order they were handed over;
//! - claims of ids being registered here (the socket code awaits them
//!   between [`Hub::begin_register`] and [`Hub::finish_register`]);
//! - releases of ids, `find`s of ids it does not hold, and the notice that
//!   an id was taken over from another broker.
//!
//! What cannot be delivered comes back to its sender as a `delivery_error`
//! (`unknown-peer`, `peer-gone`, `unavailable`), as on one broker.
//!
//! # Hand-over after a resume on another broker
//!
//! When an id is taken over (its client resumed here with its token), the
//! broker that had it may still hold frames for it: queued while it was
//! detached, or arriving there until it hears of the takeover. That broker
//! sends them on in its order ([`Envelope::handoff`]) and then says
//! [`Notice::HandedOver`], all through the one ordered pipeline. Until then
//! this broker holds what else arrives for the id (the frames sent to it
//! here since the claim: [`Handoff`]), so the client gets everything in
//! order; a room broadcast that both brokers passed on (its member was on
//! both while the takeover travelled) is given once, told apart by its
//! sender's request. Nothing is held when the old broker is not listening
//! (it died: the takeover notice reached nobody), nor past
//! [`HANDOFF_TIMEOUT`] (it died on the way).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode, ErrorCode, ServerMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::delivery::{Kind, Origin, Queued, grace_charge};
use super::{ConnId, Hub, State, TextFrame};

/// A frame on its way to an id held by another broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The id it is for.
    pub to: String,
    /// Who to tell if it cannot be delivered: the sender's id and request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<(String, Rid)>,
    /// A room event (dropped, not queued, while `to` is detached).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_event: bool,
    /// Sent on by the broker `to` was taken over from: delivered ahead of
    /// what waits for the hand-over (see the module docs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handoff: bool,
    /// The JSON text the client receives.
    pub frame: String,
}

/// What one broker publishes to another's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Notice {
    /// Deliver this to one of your ids.
    Deliver(Envelope),
    /// A client reclaimed this id on another broker with its resume token:
    /// let its connection here go, and send on what was queued for it.
    TakenOver(String),
    /// The broker this id was taken over from has sent on all it held for
    /// it (as `Deliver`s with `handoff`, before this).
    HandedOver(String),
}

/// How long a broker that took an id over waits for the old broker's
/// [`Notice::HandedOver`] before it delivers what it held meanwhile (the
/// old broker died after hearing of the takeover). A few Redis round
/// trips take milliseconds; this is Redis's own response timeout.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(3);

/// Frames for an id taken over here, held until the old broker has handed
/// over what it had.
pub(super) struct Handoff {
    deadline: Instant,
    pub(super) held: VecDeque<Queued>,
    /// Requests (sender, rid) whose frames came through the old broker: a
    /// held copy of one of them is a duplicate (a room broadcast).
    handed: HashSet<(String, Rid)>,
    /// The old holder is a connection of this broker (cut off with 4003,
    /// or replaced with 4005) whose task has not yet given back what it
    /// never wrote; the wait ends when it has (`Hub::disconnect`).
    pub(super) local: bool,
}

/// How long a resumed id waits for its old connection on this broker to
/// give back its unsent frames. The close switch interrupts even a stuck
/// write, so this is a safety net for a connection task that is not
/// scheduled; frames it gives back later still arrive, late.
pub const LOCAL_HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);

impl Handoff {
    /// A wait for a connection of this broker, holding `held` (the frames
    /// queued for the id meanwhile, which are newer than the connection's).
    pub(super) fn local(now: Instant, held: VecDeque<Queued>) -> Self {
        Self {
            deadline: now + LOCAL_HANDOFF_TIMEOUT,
            held,
            handed: HashSet::new(),
            local: true,
        }
    }
}

/// A claim of an id being registered on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub rid: Rid,
    pub id: String,
    /// The resume token a fresh claim stores.
    pub token: String,
    /// The resume token the client presented, if any.
    pub resume: Option<String>,
    /// The id was assigned by the broker (`register` without an id).
    pub assigned: bool,
}

/// What Redis said of a [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nobody held the id: it is this broker's now, with the claim's token.
    Fresh,
    /// The resume token matched a claim another broker held: it is this
    /// broker's now, with the same token; `from` held it, and the id is in
    /// `rooms`.
    TakenOver { from: String, rooms: Vec<String> },
    /// Another client holds it.
    Taken,
    /// A claim exists and the resume token does not match it.
    BadToken,
    /// Redis could not be asked: the id is taken on this broker alone,
    /// and claimed network-wide once Redis is back.
    Unavailable,
}

/// One piece of work for the cluster task, in the order the hub made it.
#[derive(Debug)]
pub enum Op {
    Forward(Envelope),
    Claim(Claim, oneshot::Sender<Outcome>),
    Find {
        conn: ConnId,
        rid: Rid,
        id: String,
    },
    Release {
        id: String,
        token: String,
    },
    TookOver {
        id: String,
        from: String,
    },
    /// Tells the broker holding `id` now that this one has sent on all it
    /// had for it.
    HandedOver {
        id: String,
    },
    /// Joins `id` to `room` within `max_members`; `event` (a
    /// [`super::RoomNotice`]) is published when it was not a member yet.
    Join {
        conn: ConnId,
        rid: Rid,
        id: String,
        room: String,
        max_members: usize,
        event: String,
    },
    /// Takes `id` out of `room`, publishing `event` to those who stay.
    Leave {
        id: String,
        room: String,
        event: String,
    },
    /// Publishes a notice on `room`'s channel (a broadcast).
    /// Answers request `rid` on `conn` once the ops before it are done
    /// (a reply in order with those Redis answers); if they could not reach
    /// Redis, with `failed` when given.
    Reply {
        conn: ConnId,
        rid: Rid,
        failed: Option<ErrorCode>,
    },
    Publish {
        room: String,
        payload: String,
    },
    #[allow(clippy::enum_variant_names)]
    Set {
        conn: ConnId,
        rid: Rid,
        id: String,
        room: String,
        key: String,
        value: String,
        /// 0: no TTL.
        ttl_ms: u64,
        max_keys: usize,
        /// `--max-room-state-bytes`, checked by the script.
        max_bytes: usize,
        event: String,
    },
    Delete {
        conn: ConnId,
        rid: Rid,
        id: String,
        room: String,
        key: String,
        event: String,
    },
    /// Sends `conn` a snapshot of `room` (an id resumed here).
    Snapshot {
        conn: ConnId,
        room: String,
    },
    /// Rendezvous keys and hostnames: the request `msg` of `id` on `conn`
    /// (`open-key`, `join-key`, `leave-key`, `close-key`,
    /// `register-hostname`, `lookup-hostname`), done in Redis.
    Request {
        conn: ConnId,
        id: String,
        msg: peerwire::protocol::ClientMessage,
    },
    /// This broker has no member left in `room`: the task stops listening
    /// to it unless a join made since has one again.
    Unsubscribe {
        room: String,
    },
}

impl Op {
    /// Bytes this op holds against `--redis-max-queued-bytes`.
    pub fn weight(&self) -> usize {
        match self {
            Op::Forward(e) => e.frame.len() + e.to.len(),
            Op::Publish { payload, .. } => payload.len(),
            Op::Set { value, event, .. } => value.len() + event.len(),
            _ => 0,
        }
    }
}

/// The hub's end of the queue to the cluster task.
#[derive(Debug, Clone)]
pub struct Link {
    ops: mpsc::UnboundedSender<Op>,
    /// Bytes of frames waiting in `ops`.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// Whether the task has Redis now.
    up: Arc<AtomicBool>,
}

/// The task's end of the queue.
pub struct LinkEnd {
    pub ops: mpsc::UnboundedReceiver<Op>,
    queued: Arc<AtomicUsize>,
    up: Arc<AtomicBool>,
}

impl LinkEnd {
    /// `op` has left the queue (sent to Redis, or answered as failed).
    pub fn done(&self, op: &Op) {
        self.queued.fetch_sub(op.weight(), Ordering::Relaxed);
    }

    /// Redis is reachable (and this broker's claims rebuilt), or not.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }
}

/// A linked pair: the hub's end and the task's. `max_queued` bounds the
/// bytes of frames waiting for Redis.
pub fn link(max_queued: usize) -> (Link, LinkEnd) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(AtomicBool::new(false));
    (
        Link {
            ops: tx,
            queued: queued.clone(),
            max_queued,
            up: up.clone(),
        },
        LinkEnd {
            ops: rx,
            queued,
            up,
        },
    )
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Hands `op` to the task; `false` when the task is gone (which
    /// counts as Redis away).
    fn send(&self, op: Op) -> bool {
        let weight = op.weight();
        self.queued.fetch_add(weight, Ordering::Relaxed);
        let sent = self.ops.send(op).is_ok();
        if !sent {
            self.queued.fetch_sub(weight, Ordering::Relaxed);
        }
        sent
    }

    /// Queues an op carrying a client's bytes (a frame for an id held
    /// elsewhere, a broadcast, a state value) within `max_queued`:
    /// `queue-full` beyond, `unavailable` while Redis is away.
    fn send_bounded(&self, op: Op) -> Result<(), ErrorCode> {
        if !self.is_up() {
            return Err(ErrorCode::Unavailable);
        }
        if self.queued.load(Ordering::Relaxed) + op.weight() > self.max_queued {
            return Err(ErrorCode::QueueFull);
        }
        if self.send(op) {
            Ok(())
        } else {
            Err(ErrorCode::Unavailable)
        }
    }
}

impl Hub {
    /// Joins this hub to a network of brokers through `link`.
    pub fn set_cluster(&self, link: Link) {
        self.lock().cluster = Some(link);
    }

    /// Whether this broker is part of a network and reaches Redis now
    /// (`None`: a broker alone).
    pub fn cluster_up(&self) -> Option<bool> {
        self.lock().cluster.as_ref().map(Link::is_up)
    }

    /// The first half of a `register` on a broker in a network: the checks
    /// of one broker (the message, auth, an id held here), then the claim
    /// to put to Redis, or `None` when the request was already answered
    /// (refused, or an id held here resumed).
    pub fn begin_register(&self, conn: ConnId, msg: ClientMessage, now: Instant) -> Option<Claim> {
        let mut st = self.lock();
        let registered = st.conns.get(&conn).is_some_and(|c| c.peer.is_some());
        let ClientMessage::Register {
            rid,
            id,
            resume_token,
        } = msg.clone()
        else {
            st.handle(conn, msg, now);
            return None;
        };
        if registered || msg.validate().is_err() {
            // Answered as on one broker.
            st.handle(conn, msg, now);
            return None;
        }
        st.metrics.messages_in.inc();
        st.admit_register(conn, rid, id, resume_token, now)
    }

    /// The second half: what Redis said of `claim`.
    pub fn finish_register(&self, conn: ConnId, claim: Claim, outcome: Outcome, now: Instant) {
        self.lock().finish_register(conn, claim, outcome, now);
    }

    /// Hands `claim` to the cluster task and waits for Redis's answer
    /// (`Unavailable` when Redis cannot be asked).
    pub async fn claim(&self, claim: Claim) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let sent = {
            let st = self.lock();
            match &st.cluster {
                Some(link) if link.is_up() => link.send(Op::Claim(claim, tx)),
                _ => false,
            }
        };
        if !sent {
            return Outcome::Unavailable;
        }
        rx.await.unwrap_or(Outcome::Unavailable)
    }

    /// A frame another broker sent for one of this broker's ids.
    pub fn deliver_remote(&self, envelope: Envelope, now: Instant) {
        self.lock().deliver_remote(envelope, now);
    }

    /// The task could not deliver `envelope`: its sender hears `code`.
    pub fn undeliverable(&self, envelope: Envelope, code: ErrorCode, now: Instant) {
        let mut st = self.lock();
        st.tell_origin(envelope.origin, code, &envelope.to, now);
    }

    /// The reply to a request the task did in Redis.
    pub fn answer(
        &self,
        conn: ConnId,
        answer: Result<ServerMessage, (ErrorCode, Rid, String)>,
        now: Instant,
    ) {
        self.lock().reply(conn, answer, now);
    }

    /// An event for `to`, wherever it is in the network.
    pub fn notify(&self, to: &str, msg: &ServerMessage, now: Instant) {
        let _ = self.lock().deliver(to, msg, None, Kind::Queued, now);
    }

    /// The answer to a `find` the task looked up.
    pub fn found(
        &self,
        conn: ConnId,
        rid: Rid,
        id: String,
        online: Result<bool, ErrorCode>,
        now: Instant,
    ) {
        let mut st = self.lock();
        let reply = match online {
            Ok(online) => Ok(ServerMessage::Found { rid, id, online }),
            Err(code) => Err((code, rid, format!("cannot look {id:?} up: {}", code.hint()))),
        };
        st.reply(conn, reply, now);
    }

    /// Every id held here, with its token: the claims the task renews, and
    /// rebuilds after Redis comes back.
    pub fn claims(&self) -> Vec<(String, String)> {
        let st = self.lock();
        st.sessions
            .iter()
            .map(|(id, s)| (id.clone(), s.token.clone()))
            .collect()
    }

    /// Another broker holds `id` now (it was taken over with its resume
    /// token, or claimed while this broker had lost Redis): its connection
    /// here closes with 4005 and what was queued for it goes on to the
    /// other broker, followed by [`Notice::HandedOver`].
    pub fn lost(&self, id: &str, now: Instant) {
        self.lock().lost(id, now);
    }

    /// The broker `id` was taken over from has handed over what it had
    /// (or cannot: it is not listening): what was held here for the id
    /// goes to it now.
    pub fn handed_over(&self, id: &str, now: Instant) {
        self.lock().end_handoff(id, now);
    }
}

impl State {
    fn finish_register(&mut self, conn: ConnId, claim: Claim, outcome: Outcome, now: Instant) {
        let gone = !self.conns.contains_key(&conn);
        let held_here = self.sessions.contains_key(&claim.id);
        let token = match &outcome {
            Outcome::Fresh | Outcome::Unavailable => claim.token.clone(),
            Outcome::TakenOver { .. } => claim.resume.clone().unwrap_or_default(),
            Outcome::Taken if claim.assigned => {
                let detail = "an assigned id was taken on another broker; register again";
                return self.reply(
                    conn,
                    Err((ErrorCode::Internal, claim.rid, detail.into())),
                    now,
                );
            }
            Outcome::Taken => {
                let detail = format!("id {:?} is taken", claim.id);
                return self.reply(conn, Err((ErrorCode::IdTaken, claim.rid, detail)), now);
            }
            Outcome::BadToken => {
                let detail = format!("the resume token does not match id {:?}", claim.id);
                return self.reply(
                    conn,
                    Err((ErrorCode::BadResumeToken, claim.rid, detail)),
                    now,
                );
            }
        };
        let took_over = matches!(outcome, Outcome::TakenOver { .. });
        if held_here || (gone && !took_over) {
            // The client left while Redis answered, or (Redis away) another
            // connection here took the id meanwhile: give back what Redis
            // gave this claim.
            if matches!(outcome, Outcome::Fresh | Outcome::TakenOver { .. }) && !held_here {
                self.cluster_op(Op::Release {
                    id: claim.id.clone(),
                    token,
                });
            }
            if !gone {
                let detail = format!("id {:?} is taken", claim.id);
                self.reply(conn, Err((ErrorCode::IdTaken, claim.rid, detail)), now);
            }
            return;
        }
        let Outcome::TakenOver { from, rooms } = outcome else {
            return self.attach_new(conn, claim.rid, claim.id, token, now);
        };
        // The id's rooms are the network's: it is still in them. What was
        // queued for it on the other broker follows (`lost` there).
        self.cluster_op(Op::TookOver {
            id: claim.id.clone(),
            from,
        });
        let mut session = self.new_session(token.clone(), conn);
        session.handoff = Some(Handoff {
            deadline: now + HANDOFF_TIMEOUT,
            held: VecDeque::new(),
            handed: HashSet::new(),
            local: false,
        });
        self.handoffs.insert(claim.id.clone());
        self.sessions.insert(claim.id.clone(), Box::new(session));
        for room in &rooms {
            self.add_membership(&claim.id, room);
        }
        if gone {
            // The id is this broker's now (the old connection is replaced)
            // and its client, whose connection ended while Redis answered,
            // may come back within the grace window, as on one broker.
            return self.detach(&claim.id, now);
        }
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.peer = Some(claim.id.clone());
        }
        let rooms = self.rooms_still_allowed(&claim.id, conn, rooms, now);
        let msg = self.registered(conn, claim.rid, &claim.id, token, true, rooms.clone());
        self.send_conn(conn, &msg, now);
        for room in rooms {
            self.cluster_op(Op::Snapshot { conn, room });
        }
    }

    /// Hands `op` to the cluster task, if this broker is in a network.
    pub(super) fn cluster_op(&mut self, op: Op) {
        if let Some(link) = &self.cluster {
            let _ = link.send(op);
        }
    }

    /// Hands `op`, which carries a client's bytes, to the cluster task
    /// within `--redis-max-queued-bytes` (see [`Link::send_bounded`]).
    pub(super) fn cluster_op_bounded(&mut self, op: Op) -> Result<(), ErrorCode> {
        match &self.cluster {
            Some(link) => link.send_bounded(op),
            None => Err(ErrorCode::Unavailable),
        }
    }

    /// Sends `frame` towards an id this broker does not hold: to the broker
    /// that holds it when in a network, else `unknown-peer`.
    pub(super) fn forward(
        &mut self,
        to: &str,
        frame: &TextFrame,
        origin: Option<(String, Rid)>,
        kind: Kind,
    ) -> Result<(), ErrorCode> {
        let Some(link) = &self.cluster else {
            return Err(ErrorCode::UnknownPeer);
        };
        link.send_bounded(Op::Forward(Envelope {
            to: to.to_string(),
            origin,
            room_event: kind == Kind::RoomEvent,
            handoff: false,
            frame: frame.as_str().to_string(),
        }))
    }

    /// Answers `find` for an id not held here: asks Redis, unless this
    /// broker is alone (then it is offline).
    pub(super) fn find_elsewhere(
        &mut self,
        conn: ConnId,
        rid: Rid,
        id: String,
    ) -> Option<ServerMessage> {
        match &self.cluster {
            None => Some(ServerMessage::Found {
                rid,
                id,
                online: false,
            }),
            Some(link) if link.is_up() => {
                let _ = link.send(Op::Find { conn, rid, id });
                None
            }
            Some(_) => {
                let err = ErrorCode::Unavailable;
                Some(ServerMessage::error(
                    Some(rid),
                    err,
                    format!("cannot look {id:?} up: {}", err.hint()),
                ))
            }
        }
    }

    fn deliver_remote(&mut self, envelope: Envelope, now: Instant) {
        let kind = if envelope.room_event {
            Kind::RoomEvent
        } else {
            Kind::Queued
        };
        let frame = TextFrame::from(envelope.frame);
        let Some(session) = self.sessions.get_mut(&envelope.to) else {
            // It moved on (taken over, or released) since Redis routed it.
            return self.tell_origin(envelope.origin, ErrorCode::PeerGone, &envelope.to, now);
        };
        let delivered = match (&mut session.handoff, envelope.handoff) {
            // From the old broker: ahead of what is held, bypassing it.
            (Some(handoff), true) => {
                handoff.handed.extend(envelope.origin.clone());
                self.deliver_now(&envelope.to, frame, envelope.origin.clone(), kind, now)
            }
            _ => self.deliver_frame(&envelope.to, frame, envelope.origin.clone(), kind, now),
        };
        if let Err(code) = delivered {
            self.tell_origin(envelope.origin, code, &envelope.to, now);
        }
    }

    /// Holds a frame for `to` while it waits for a hand-over; gives it
    /// back when there is none.
    pub(super) fn hold(
        &mut self,
        to: &str,
        frame: TextFrame,
        origin: Option<(String, Rid)>,
    ) -> Result<Option<(TextFrame, Origin)>, ErrorCode> {
        let max = self.config.max_queued;
        let Some(session) = self.sessions.get_mut(to).filter(|s| s.handoff.is_some()) else {
            return Ok(Some((frame, origin)));
        };
        // Held frames count against the id's grace budgets, as queued ones.
        let charge = grace_charge(&self.config, &self.totals, session, frame.len());
        let Some(handoff) = session.handoff.as_mut() else {
            return Ok(Some((frame, origin)));
        };
        if handoff.held.len() >= max {
            return Err(ErrorCode::QueueFull);
        }
        match charge {
            Ok(charge) => {
                handoff.held.push_back(Queued::new(frame, origin, charge));
                Ok(None)
            }
            Err(limit) => {
                self.metrics.budget_refused(limit);
                Err(ErrorCode::QueueFull)
            }
        }
    }

    /// Ends `id`'s wait for a hand-over: what was held goes to it now, in
    /// order, but for room broadcasts the old broker already passed on.
    pub(super) fn end_handoff(&mut self, id: &str, now: Instant) {
        self.handoffs.remove(id);
        let Some(handoff) = self.sessions.get_mut(id).and_then(|s| s.handoff.take()) else {
            return;
        };
        for q in handoff.held {
            if q.origin
                .as_ref()
                .is_some_and(|o| handoff.handed.contains(o))
            {
                continue;
            }
            // Bounded already (by the grace budgets it was charged to), a
            // backlog is not held to the connection's own outbound budget,
            // which it might pass by itself (see `send_resync`).
            if let Some(conn) = self.sessions.get(id).and_then(|s| s.conn) {
                self.send_resync(conn, q.frame, q.origin, now);
            } else if let Err(code) =
                self.deliver_now(id, q.frame, q.origin.clone(), Kind::Queued, now)
            {
                self.tell_origin(q.origin, code, id, now);
            }
        }
    }

    /// Ends `id`'s wait for its old connections on this broker once none
    /// is left to give back its unsent frames.
    pub(super) fn end_local_handoff(&mut self, id: &str, now: Instant) {
        let local = self
            .sessions
            .get(id)
            .and_then(|s| s.handoff.as_ref())
            .is_some_and(|h| h.local);
        if local && !self.cut_off.values().any(|peer| peer == id) {
            self.end_handoff(id, now);
        }
    }

    /// Ends the hand-overs whose old broker has not answered in time.
    pub(super) fn end_overdue_handoffs(&mut self, now: Instant) {
        let due: Vec<String> = self
            .handoffs
            .iter()
            .filter(|id| {
                self.sessions
                    .get(*id)
                    .and_then(|s| s.handoff.as_ref())
                    .is_none_or(|h| h.deadline <= now)
            })
            .cloned()
            .collect();
        for id in due {
            self.end_handoff(&id, now);
        }
    }

    fn lost(&mut self, id: &str, now: Instant) {
        let Some(session) = self.sessions.get_mut(id) else {
            // Nothing held here: the new broker need not wait.
            return self.cluster_op(Op::HandedOver { id: id.to_string() });
        };
        let mut queued: Vec<Queued> = session.queue.drain(..).collect();
        // Taken over again while itself waiting for a hand-over: what it
        // held follows what it had queued.
        if let Some(handoff) = session.handoff.take() {
            queued.extend(handoff.held);
        }
        if let Some(conn) = session.conn.take() {
            if let Some(mut entry) = self.conns.remove(&conn) {
                if let Some(kill) = entry.kill.take() {
                    let _ = kill.send(CloseCode::Replaced);
                }
                self.metrics.close(CloseCode::Replaced);
                self.cut_off.insert(conn, id.to_string());
            }
        }
        // Released here without giving up the claim or the rooms, which
        // are the other broker's now.
        let rooms: Vec<String> = self
            .sessions
            .get(id)
            .map(|s| s.rooms.iter().cloned().collect())
            .unwrap_or_default();
        for room in rooms {
            self.forget_membership(id, &room);
        }
        if let Some(session) = self.sessions.get_mut(id) {
            session.token.clear();
        }
        self.release(id, now);
        for q in queued {
            let sent = match &self.cluster {
                Some(link) => link.send_bounded(Op::Forward(Envelope {
                    to: id.to_string(),
                    origin: q.origin.clone(),
                    room_event: false,
                    handoff: true,
                    frame: q.frame.as_str().to_string(),
                })),
                None => Err(ErrorCode::Unavailable),
            };
            if let Err(code) = sent {
                self.tell_origin(q.origin, code, id, now);
            }
        }
        // After the frames, in the same ordered queue.
        self.cluster_op(Op::HandedOver { id: id.to_string() });
    }

    /// Creates the session for a newly registered id on `conn` and tells
    /// the client.
    pub(super) fn attach_new(
        &mut self,
        conn: ConnId,
        rid: Rid,
        id: String,
        token: String,
        now: Instant,
    ) {
        let session = self.new_session(token.clone(), conn);
        self.sessions.insert(id.clone(), Box::new(session));
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.peer = Some(id.clone());
        }
        let msg = self.registered(conn, rid, &id, token, false, Vec::new());
        self.send_conn(conn, &msg, now);
    }
}
