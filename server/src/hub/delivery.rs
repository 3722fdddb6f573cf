//! Delivery: getting a frame to an id wherever it is. Attached ids get it
//! on their connection's bounded outbound queue (a full queue cuts the
//! client off with 4003 and detaches the id); detached ids get it in their
//! bounded grace-window queue. Frames a connection never wrote come back
//! through [`State::requeue`]. Whatever cannot be delivered is reported to
//! its sender (`queue-full`, `peer-gone`), so nothing is lost silently.
//! Relay frames share the outbound queue but are never queued for a
//! detached id (see `relay`).
//!
//! Both queues are bounded in frames and in bytes (see `budget`): a frame
//! that would take a connection's queue past `--outbound-queue-bytes`, or
//! its address's queues past `--ip-queued-bytes`, cuts the connection off
//! like a full queue (4003); one that would take a detached id's queue past
//! `--max-queued-bytes` or its address's past `--ip-queued-bytes` is
//! refused to its sender with `queue-full`.

use std::collections::VecDeque;
use std::time::Instant;

use super::outbox;
use peerwire::protocol::json::Json as Value;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{CloseCode, ErrorCode, ServerMessage};

use super::budget::{Charge, Limit, Totals};
use super::sessions::Session;
use super::{ConnId, Frame, HubConfig, Outgoing, State, TextFrame};

/// How a message should be treated if its target is detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Queue it; report failures to the origin.
    Queued,
    /// Room membership/state: dropped while detached, resent as a snapshot on resume.
    RoomEvent,
    /// A binary relay frame: never queued for a detached id; the relay
    /// pair ends instead (both sides hear `relay-closed`).
    Relay,
}

/// Who sent a message and which request it was, to be told if it cannot
/// be delivered.
pub(super) type Origin = Option<(String, Rid)>;

/// One message held for a detached id.
pub(super) struct Queued {
    pub(super) frame: TextFrame,
    /// Who to tell (`peer-gone`) if the id never comes back.
    pub(super) origin: Option<(String, Rid)>,
    /// Its bytes against the id's and its address's grace budgets.
    _charge: Charge,
}

impl Queued {
    pub(super) fn new(frame: TextFrame, origin: Option<(String, Rid)>, charge: Charge) -> Self {
        Self {
            frame,
            origin,
            _charge: charge,
        }
    }
}

/// Charges a frame of `bytes` to `session`'s grace-window queue, or names
/// the budget it would pass.
pub(super) fn grace_charge(
    config: &HubConfig,
    totals: &Totals,
    session: &Session,
    bytes: usize,
) -> Result<Charge, Limit> {
    Charge::take(
        bytes,
        [
            Some((&session.queued_bytes, config.max_queued_bytes)),
            session
                .address
                .as_ref()
                .map(|a| (&a.queued, config.ip_queued_bytes)),
            Some((&totals.grace, usize::MAX)),
            None,
        ],
    )
    .map_err(|i| {
        if i == 0 {
            Limit::MaxQueuedBytes
        } else {
            Limit::IpQueuedBytes
        }
    })
}

fn encode(msg: &ServerMessage) -> TextFrame {
    TextFrame::from(msg.encode())
}

impl State {
    /// Relays a signal from `me` to `to`; no reply on success.
    pub(super) fn signal(
        &mut self,
        me: &str,
        rid: Rid,
        to: &str,
        data: Value,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let msg = ServerMessage::Signal {
            from: me.to_string(),
            data,
        };
        self.deliver(to, &msg, Some((me.to_string(), rid)), Kind::Queued, now)
    }

    /// Sends to a connection. A full queue means the client cannot keep up:
    /// it is closed with 4003 and its id detached (the frame is then queued
    /// for it like any other message to a detached id).
    pub(super) fn send_conn(&mut self, conn: ConnId, msg: &ServerMessage, now: Instant) {
        let frame = encode(msg);
        self.send_frame(conn, frame, None, Kind::Queued, now);
    }

    pub(super) fn send_frame(
        &mut self,
        conn: ConnId,
        frame: TextFrame,
        origin: Option<(String, Rid)>,
        kind: Kind,
        now: Instant,
    ) {
        self.push(
            conn,
            Outgoing {
                frame: Frame::Text(frame),
                origin,
                kind,
                _backlog: None,
                charge: None,
                resync: false,
            },
            now,
        );
    }

    /// Sends a resumed id what it already holds: a snapshot of a kept room
    /// (`origin` `None`) or a message queued for it in its grace window.
    /// Bounded already (by `--max-rooms-per-peer` times
    /// `--max-room-state-bytes`, and `--max-queued-bytes`), it is not held
    /// to the connection's own `--outbound-queue-bytes`, which it might
    /// pass by itself at every resume; the address's budget still applies.
    pub(super) fn send_resync(
        &mut self,
        conn: ConnId,
        frame: TextFrame,
        origin: Option<(String, Rid)>,
        now: Instant,
    ) {
        self.push(
            conn,
            Outgoing {
                frame: Frame::Text(frame),
                origin,
                kind: Kind::Queued,
                _backlog: None,
                charge: None,
                resync: true,
            },
            now,
        );
    }

    /// Puts one frame in a connection's outbound queue; `false` when it
    /// could not be (the connection is gone, or was cut off just now: its
    /// queue was full in frames, or would have passed a byte budget).
    pub(super) fn push(&mut self, conn: ConnId, mut out: Outgoing, now: Instant) -> bool {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return false;
        };
        let (bytes, own) = match &out.frame {
            Frame::Text(t) if out.resync => (t.len(), None),
            Frame::Text(t) => (
                t.len(),
                Some((&entry.outbound, self.config.outbound_queue_bytes)),
            ),
            // The relay backlog bounds a connection's relay frames.
            Frame::Binary(b) => (b.len(), None),
        };
        let charge = Charge::take(
            bytes,
            [
                own,
                Some((&entry.address.queued, self.config.ip_queued_bytes)),
                Some((&self.totals.outbound, usize::MAX)),
                None,
            ],
        );
        let sent = match charge {
            Ok(charge) => {
                out.charge = Some(charge);
                entry.tx.try_send(Box::new(out))
            }
            Err(i) => {
                let limit = if i == 0 {
                    Limit::OutboundQueueBytes
                } else {
                    Limit::IpQueuedBytes
                };
                self.metrics.budget_refused(limit);
                Err(outbox::TrySendError::Full(Box::new(out)))
            }
        };
        match sent {
            Ok(()) => {
                self.metrics.messages_out.inc();
                true
            }
            Err(err) => {
                // Full: the client does not read fast enough. Closed: its
                // socket task has ended without `disconnect` (it always
                // calls it; this is a safety net). Either way the id is
                // detached now and the frame queued; what the connection
                // still holds comes back through `disconnect`.
                let out = match err {
                    outbox::TrySendError::Full(o) => {
                        if let Some(kill) = entry.kill.take() {
                            let _ = kill.send(CloseCode::SlowConsumer);
                        }
                        self.metrics.close(CloseCode::SlowConsumer);
                        o
                    }
                    outbox::TrySendError::Closed(o) => o,
                };
                let peer = entry.peer.take();
                self.conns.remove(&conn);
                if let Some(peer) = peer {
                    self.cut_off.insert(conn, peer.clone());
                    self.detach(&peer, now);
                    if let (Kind::Queued, Frame::Text(frame)) = (out.kind, out.frame) {
                        self.enqueue_or_tell(&peer, frame, out.origin, now);
                    }
                }
                false
            }
        }
    }

    /// Delivers to a registered id, wherever it is.
    pub(super) fn deliver(
        &mut self,
        to: &str,
        msg: &ServerMessage,
        origin: Option<(String, Rid)>,
        kind: Kind,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        self.deliver_frame(to, encode(msg), origin, kind, now)
    }

    /// Delivers an encoded message to a registered id: on its connection,
    /// in its grace-window queue, or (held by another broker of the
    /// network) through the cluster task.
    pub(super) fn deliver_frame(
        &mut self,
        to: &str,
        frame: TextFrame,
        origin: Option<(String, Rid)>,
        kind: Kind,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        // The common case in one lookup: attached here, nothing held for
        // a hand-over.
        match self.sessions.get(to) {
            None => return self.forward(to, &frame, origin, kind),
            Some(session) if session.handoff.is_none() => {
                if let Some(conn) = session.conn {
                    self.send_frame(conn, frame, origin, kind, now);
                    return Ok(());
                }
            }
            Some(_) => {}
        }
        // An id just taken over from another broker waits for what that
        // broker still had for it (see `cluster`).
        let (frame, origin) = match kind {
            Kind::Queued => match self.hold(to, frame, origin)? {
                Some(back) => back,
                None => return Ok(()),
            },
            _ => (frame, origin),
        };
        self.deliver_now(to, frame, origin, kind, now)
    }

    /// [`State::deliver_frame`] without waiting for a hand-over.
    pub(super) fn deliver_now(
        &mut self,
        to: &str,
        frame: TextFrame,
        origin: Option<(String, Rid)>,
        kind: Kind,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let Some(session) = self.sessions.get(to) else {
            return self.forward(to, &frame, origin, kind);
        };
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
        frame: TextFrame,
        origin: Option<(String, Rid)>,
        now: Instant,
    ) {
        if let Err(code) = self.enqueue(to, frame, origin.clone()) {
            self.tell_origin(origin, code, to, now);
        }
    }

    /// Tells the sender of an undeliverable message to `to` why.
    pub(super) fn tell_origin(
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
    /// go back to the front of its queue; if a newer connection holds the
    /// id, to the front of what it holds while it waits for them (or, late,
    /// straight to it). Either way at most `--max-queued` frames wait, and
    /// the newest beyond are refused with `queue-full`. If the id is gone
    /// their senders get `peer-gone`.
    ///
    /// Relay frames are not requeued: the change of connection that left
    /// them unsent ended their relay pairs, and both sides were told.
    pub(super) fn requeue(&mut self, peer: &str, unsent: Vec<Outgoing>, now: Instant) {
        let frames: Vec<(TextFrame, Option<(String, Rid)>)> = unsent
            .into_iter()
            .filter_map(|o| match (o.kind, o.frame) {
                (Kind::Queued, Frame::Text(frame)) => Some((frame, o.origin)),
                _ => None,
            })
            .collect();
        if frames.is_empty() {
            return;
        }
        let max = self.config.max_queued;
        let Some(session) = self.sessions.get_mut(peer) else {
            for (_, origin) in frames {
                self.tell_origin(origin, ErrorCode::PeerGone, peer, now);
            }
            return;
        };
        let conn = session.conn;
        let waits = matches!(&session.handoff, Some(h) if h.local);
        if let (Some(conn), false) = (conn, waits) {
            // Resumed on a newer connection, done waiting (these come
            // late): sent now rather than not at all.
            for (frame, origin) in frames {
                self.send_frame(conn, frame, origin, Kind::Queued, now);
            }
            return;
        }
        // Where they go: in front of what waits for the id. Detached, the
        // grace-window queue; resumed on a newer connection (after 4003,
        // or replacing this one, 4005) that waits for these frames, what
        // it holds meanwhile. The oldest are kept while the bounds (frames
        // and bytes) allow and the rest refused, so the id gets a prefix
        // of its messages in order.
        let waiting = match session.handoff.as_mut() {
            Some(handoff) if conn.is_some() => &mut handoff.held,
            _ => &mut session.queue,
        };
        let queued: Vec<(TextFrame, Origin)> = std::mem::take(waiting)
            .into_iter()
            .map(|q| (q.frame, q.origin))
            .collect();
        let mut kept = VecDeque::new();
        let mut refused = Vec::new();
        for (frame, origin) in frames.into_iter().chain(queued) {
            if !refused.is_empty() || kept.len() >= max {
                refused.push(origin);
                continue;
            }
            match grace_charge(&self.config, &self.totals, session, frame.len()) {
                Ok(charge) => kept.push_back(Queued::new(frame, origin, charge)),
                Err(limit) => {
                    self.metrics.budget_refused(limit);
                    refused.push(origin);
                }
            }
        }
        match session.handoff.as_mut() {
            Some(handoff) if conn.is_some() => handoff.held = kept,
            _ => session.queue = kept,
        }
        for origin in refused {
            self.tell_origin(origin, ErrorCode::QueueFull, peer, now);
        }
    }

    /// Frames never written to a connection that lost its id to the id's
    /// owner (see `sessions::revive`): they were meant for that
    /// connection, so their senders hear `peer-gone`.
    pub(super) fn refuse_unsent(&mut self, peer: &str, unsent: Vec<Outgoing>, now: Instant) {
        for o in unsent {
            if let (Kind::Queued, Frame::Text(_)) = (o.kind, &o.frame) {
                self.tell_origin(o.origin, ErrorCode::PeerGone, peer, now);
            }
        }
    }

    fn enqueue(
        &mut self,
        to: &str,
        frame: TextFrame,
        origin: Option<(String, Rid)>,
    ) -> Result<(), ErrorCode> {
        let max = self.config.max_queued;
        let session = self.sessions.get_mut(to).ok_or(ErrorCode::UnknownPeer)?;
        if session.queue.len() >= max {
            return Err(ErrorCode::QueueFull);
        }
        match grace_charge(&self.config, &self.totals, session, frame.len()) {
            Ok(charge) => {
                session.queue.push_back(Queued {
                    frame,
                    origin,
                    _charge: charge,
                });
                Ok(())
            }
            Err(limit) => {
                self.metrics.budget_refused(limit);
                Err(ErrorCode::QueueFull)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::HubConfig;
    use super::super::testing::{Harness, config, ms};
    use serde_json::json;

    #[test]
    fn a_signal_to_an_unknown_id_fails_at_once() {
        let mut h = Harness::new();
        let a = h.connect();
        h.register(a, "alice");
        let reply = h.request(
            a,
            json!({"type": "signal", "rid": 2, "to": "bob", "data": 1}),
        );
        assert_eq!(reply["code"], "unknown-peer");
        assert_eq!(reply["target"], "bob");
    }

    #[test]
    fn signals_arrive_in_order_once() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        for n in 0..5 {
            h.send(
                a,
                json!({"type": "signal", "rid": n + 2, "to": "bob", "data": n}),
            );
        }
        let got: Vec<_> = h.frames(b).iter().map(|f| f["data"].clone()).collect();
        assert_eq!(got, (0..5).map(|n| json!(n)).collect::<Vec<_>>());
        assert!(h.frames(a).is_empty(), "no reply on success");
    }

    #[test]
    fn a_full_grace_queue_answers_queue_full_and_the_window_end_peer_gone() {
        let mut h = Harness::new(); // max_queued: 3
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.drop_conn(a, false);
        for n in 0..4 {
            h.send(
                b,
                json!({"type": "signal", "rid": 10 + n, "to": "alice", "data": n}),
            );
        }
        let errors = h.frames(b);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["code"], "queue-full");
        assert_eq!(errors[0]["rid"], 13);
        h.sweep(ms(100));
        let gone: Vec<_> = h.frames(b).iter().map(|f| f["rid"].clone()).collect();
        assert_eq!(
            gone,
            vec![json!(10), json!(11), json!(12)],
            "one peer-gone each"
        );
    }

    #[test]
    fn a_slow_reader_is_cut_off_with_4003_and_its_unsent_frames_wait_for_the_resume() {
        let mut h = Harness::new(); // outbound queue of 8 frames
        let (a, b) = (h.connect(), h.connect());
        let token = h.register(a, "alice");
        h.register(b, "bob");
        for n in 0..10 {
            h.send(
                b,
                json!({"type": "signal", "rid": 10 + n, "to": "alice", "data": n}),
            );
        }
        assert_eq!(h.killed(a), Some(4003));
        // The socket task hands back the 8 frames it never wrote.
        h.drop_conn(a, false);
        let a2 = h.connect();
        h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        let got: Vec<_> = h.frames(a2).iter().map(|f| f["data"].clone()).collect();
        // Queue bound 3 after the requeue: the oldest three are kept in
        // order, the rest refused with queue-full.
        assert_eq!(got, vec![json!(0), json!(1), json!(2)]);
        let refused = h
            .frames(b)
            .iter()
            .filter(|f| f["code"] == "queue-full")
            .count();
        assert_eq!(refused, 7);
    }

    fn data_of(h: &mut Harness, conn: super::super::ConnId) -> Vec<serde_json::Value> {
        h.frames(conn)
            .iter()
            .filter(|f| f["type"] == "signal")
            .map(|f| f["data"].clone())
            .collect()
    }

    #[test]
    fn a_client_cut_off_with_4003_that_resumes_at_once_gets_its_backlog_in_order() {
        // Outbound queues of 8 frames; 16 may wait for an id.
        let mut h = Harness::with_config(HubConfig {
            max_queued: 16,
            ..config()
        });
        let (a, b) = (h.connect(), h.connect());
        let token = h.register(a, "alice");
        h.register(b, "bob");
        for n in 0..10 {
            h.send(
                b,
                json!({"type": "signal", "rid": 10 + n, "to": "alice", "data": n}),
            );
        }
        assert_eq!(h.killed(a), Some(4003));
        // Alice resumes before her cut-off connection's task has given back
        // the 8 frames it never wrote (the review's "resume at once").
        let a2 = h.connect_with_queue(32);
        let reply = h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(reply["resumed"], true);
        assert!(data_of(&mut h, a2).is_empty(), "newer frames wait");
        h.send(
            b,
            json!({"type": "signal", "rid": 20, "to": "alice", "data": 10}),
        );
        assert!(data_of(&mut h, a2).is_empty(), "newer frames wait");
        h.drop_conn(a, false);
        let got = data_of(&mut h, a2);
        assert_eq!(got, (0..=10).map(|n| json!(n)).collect::<Vec<_>>());
        assert!(h.frames(b).is_empty(), "nothing refused");
    }

    #[test]
    fn a_resume_that_replaces_a_live_connection_gets_its_unsent_frames_before_newer_ones() {
        let mut h = Harness::new(); // 3 frames may wait for an id
        let (a, b) = (h.connect(), h.connect());
        let token = h.register(a, "alice");
        h.register(b, "bob");
        // Three frames wait in the old connection's queue, unwritten.
        for n in 0..3 {
            h.send(
                b,
                json!({"type": "signal", "rid": 10 + n, "to": "alice", "data": n}),
            );
        }
        let a2 = h.connect();
        h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(h.killed(a), Some(4005));
        h.send(
            b,
            json!({"type": "signal", "rid": 20, "to": "alice", "data": 3}),
        );
        h.drop_conn(a, false);
        // The three older first; the newest is beyond the bound, and its
        // sender is told.
        let got = data_of(&mut h, a2);
        assert_eq!(got, (0..3).map(|n| json!(n)).collect::<Vec<_>>());
        let refused = h.frames(b);
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (&refused[0]["code"], &refused[0]["rid"]),
            (&json!("queue-full"), &json!(20))
        );
    }

    #[test]
    fn a_resumed_id_waits_for_its_old_connection_no_longer_than_the_hand_over_timeout() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        let token = h.register(a, "alice");
        h.register(b, "bob");
        h.send(
            b,
            json!({"type": "signal", "rid": 10, "to": "alice", "data": 0}),
        );
        let a2 = h.connect();
        h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        h.send(
            b,
            json!({"type": "signal", "rid": 11, "to": "alice", "data": 1}),
        );
        assert!(data_of(&mut h, a2).is_empty());
        // The old connection's task never gives its frames back.
        h.sweep(super::super::cluster::LOCAL_HANDOFF_TIMEOUT + ms(10));
        assert_eq!(data_of(&mut h, a2), vec![json!(1)]);
        // When it does, late, its frame still arrives.
        h.drop_conn(a, false);
        assert_eq!(data_of(&mut h, a2), vec![json!(0)]);
    }

    #[test]
    fn frames_unsent_at_a_clean_close_are_answered_with_peer_gone() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.send(
            b,
            json!({"type": "signal", "rid": 7, "to": "alice", "data": 1}),
        );
        // Alice closes with 1000 before her writer took the frame.
        h.drop_conn(a, true);
        let errors = h.frames(b);
        assert_eq!(errors[0]["code"], "peer-gone");
        assert_eq!(errors[0]["rid"], 7);
    }
}
