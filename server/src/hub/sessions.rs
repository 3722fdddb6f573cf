//! Sessions: who holds which id. Registering (a chosen or an assigned id),
//! resume tokens, resuming inside the grace window, and the three ways a
//! session changes state: attach (register or resume), detach (a drop that
//! was not a clean close), release (a clean close, or the grace window's
//! end). Releasing an id gives back everything it held: rooms, keys,
//! hostnames, relay pairs and its queued messages (their senders get
//! `peer-gone`).
//!
//! # After a restart
//!
//! Tokens are signed (see `tokens`) with a key the broker keeps across
//! restarts. A restart is like every client dropping at once, so for the
//! grace window after the hub starts a token of an earlier run with a
//! valid signature wins its id back, once per id: a free id is registered
//! to it, and an id someone else registered since the restart is taken
//! from them (their connection is closed with 4005, the reason saying the
//! owner came back; what they held is released). The owner gets
//! `resumed: false`: its rooms and queued messages were lost with the old
//! process. After the window, or once the id was won back, such a token is
//! `bad-resume-token` for an id that is held, as any wrong token is.
//! In a network of brokers (`--redis`) sessions live in Redis and survive
//! a restart already; this path is for a broker alone.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use peerwire::protocol::messages::Rid;
use peerwire::protocol::{CloseCode, ErrorCode, PROTOCOL_VERSION, ServerMessage, ids};

use super::budget::{AddressMeters, Meter};
use super::cluster::{Claim, Handoff};
use super::delivery::Queued;
use super::tokens::{NONCE_BYTES, Verdict};
use super::{ConnId, Refusal, State, TextFrame, internal};

/// How many fresh random ids to try before giving up on assigning one (a
/// collision of 64 random bits is already vanishingly rare).
const ASSIGN_ATTEMPTS: usize = 8;

/// One registered id.
pub(super) struct Session {
    pub(super) token: String,
    /// The connection holding the id; `None` inside the grace window.
    pub(super) conn: Option<ConnId>,
    /// When the grace window ends (set while detached).
    pub(super) grace_deadline: Option<Instant>,
    /// Messages held for the id while it is detached.
    pub(super) queue: VecDeque<Queued>,
    pub(super) rooms: BTreeSet<String>,
    /// In a network: rooms whose `join` Redis has not answered yet (they
    /// count against `--max-rooms-per-peer` like the rooms joined).
    pub(super) joining: BTreeSet<String>,
    /// In a network: room requests that came after a join still in flight
    /// to the same room, run once Redis has answered the join.
    pub(super) after_join: VecDeque<(ConnId, peerwire::protocol::ClientMessage)>,
    pub(super) opened_keys: BTreeSet<String>,
    pub(super) joined_keys: BTreeSet<String>,
    pub(super) hostnames: BTreeSet<String>,
    /// Taken over from another broker, and waiting for what it still had
    /// for the id (see `cluster`).
    pub(super) handoff: Option<Handoff>,
    /// Bytes in `queue` (and a hand-over's held frames), against
    /// `--max-queued-bytes`.
    pub(super) queued_bytes: Arc<Meter>,
    /// Bytes of room state this id has set, against `--max-peer-state-bytes`.
    pub(super) state_bytes: Arc<Meter>,
    /// The budgets of the address the id last connected from: its queue
    /// counts against them while it is detached.
    pub(super) address: Option<AddressMeters>,
}

impl Session {
    /// A session just registered on `conn`, holding nothing yet.
    pub(super) fn new(token: String, conn: ConnId) -> Self {
        Self {
            token,
            conn: Some(conn),
            grace_deadline: None,
            queue: VecDeque::new(),
            rooms: BTreeSet::new(),
            joining: BTreeSet::new(),
            after_join: VecDeque::new(),
            opened_keys: BTreeSet::new(),
            joined_keys: BTreeSet::new(),
            hostnames: BTreeSet::new(),
            handoff: None,
            queued_bytes: Arc::default(),
            state_bytes: Arc::default(),
            address: None,
        }
    }
}

/// Compares two tokens in time that does not depend on where they differ.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl State {
    /// A session just registered on `conn`, sharing the byte budgets of
    /// its connection's address.
    pub(super) fn new_session(&self, token: String, conn: ConnId) -> Session {
        let mut session = Session::new(token, conn);
        session.address = self.conns.get(&conn).map(|c| c.address.clone());
        session
    }

    /// A resume token for `id`: a nonce from the hub's random source,
    /// signed with the resume key (see `tokens`).
    fn new_token(&mut self, rid: Rid, id: &str) -> Result<String, Refusal> {
        let mut nonce = [0u8; NONCE_BYTES];
        self.env
            .rng
            .fill(&mut nonce)
            .map_err(|e| internal(rid, &format!("cannot make a resume token: {e}")))?;
        Ok(self.env.resume_key.mint(id, self.incarnation, nonce))
    }

    /// Whether `token`, presented for `id`, may win the id back after a
    /// restart: issued for it by an earlier run, inside the grace window
    /// after this run started, and the id not yet won back since. Not in a
    /// network of brokers (Redis keeps sessions across restarts there).
    fn wins_back_after_restart(&self, id: &str, token: &str, now: Instant) -> bool {
        let in_window = self
            .started
            .and_then(|started| started.checked_add(self.config.grace))
            .is_some_and(|end| now < end);
        self.cluster.is_none()
            && in_window
            && !self.revived.contains(id)
            && self.env.resume_key.check(id, token, self.incarnation) == Verdict::Earlier
    }

    /// The id's owner came back with a token of an earlier run (see
    /// [`Self::wins_back_after_restart`]): whoever registered the id since the
    /// restart loses it (closed with 4005, what it held released), and
    /// the id is the owner's, afresh.
    fn revive(&mut self, id: &str, now: Instant) {
        self.revived.insert(id.to_string());
        let Some(holder) = self.sessions.get(id).map(|s| s.conn) else {
            return;
        };
        if let Some(old) = holder {
            if let Some(mut entry) = self.conns.remove(&old) {
                if let Some(kill) = entry.kill.take() {
                    let _ = kill.send(CloseCode::Replaced);
                }
                self.metrics.close(CloseCode::Replaced);
                self.evicted.insert(old, id.to_string());
            }
        }
        tracing::info!(
            id,
            "the owner of the id came back with its resume token after the restart; \
             the connection that registered it since is closed (4005)"
        );
        self.release(id, now);
    }

    /// Forgets the ids won back after the restart once the window that
    /// allowed it has ended (they are refused by then anyway).
    pub(super) fn end_restart_window(&mut self, now: Instant) {
        let started = *self.started.get_or_insert(now);
        if !self.revived.is_empty()
            && started
                .checked_add(self.config.grace)
                .is_none_or(|end| now >= end)
        {
            self.revived = Default::default();
        }
    }

    /// A fresh `p-…` id nobody holds.
    pub(super) fn assign_peer_id(&mut self, rid: Rid) -> Result<String, Refusal> {
        for _ in 0..ASSIGN_ATTEMPTS {
            let mut bytes = [0u8; 8];
            self.env
                .rng
                .fill(&mut bytes)
                .map_err(|e| internal(rid, &format!("cannot assign an id: {e}")))?;
            let id = ids::assigned_peer_id(bytes);
            if !self.sessions.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(internal(rid, "every assigned id tried was taken"))
    }

    /// `register` on a broker alone: the checks, then the id is this
    /// connection's at once.
    pub(super) fn register(
        &mut self,
        conn: ConnId,
        rid: Rid,
        id: Option<String>,
        token: Option<String>,
        now: Instant,
    ) {
        if let Some(claim) = self.admit_register(conn, rid, id, token, now) {
            self.attach_new(conn, claim.rid, claim.id, claim.token, now);
        }
    }

    /// The checks of `register` that need no other broker: auth, an id held
    /// here (resumed with its token, or `id-taken`), a token without an id.
    /// What passes is the claim of a free id with a fresh token; `None`
    /// when the request was answered.
    pub(super) fn admit_register(
        &mut self,
        conn: ConnId,
        rid: Rid,
        id: Option<String>,
        token: Option<String>,
        now: Instant,
    ) -> Option<Claim> {
        self.started.get_or_insert(now);
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
            self.reply(conn, Err((ErrorCode::Unauthorized, rid, detail)), now);
            return None;
        }
        if let (Some(id), Some(token)) = (&id, &token) {
            if self.wins_back_after_restart(id, token, now) {
                self.revive(id, now);
            }
        }
        let held = id.as_ref().is_some_and(|id| self.sessions.contains_key(id));
        let (id, assigned) = match (id, &token) {
            (Some(id), Some(token)) if held => {
                self.resume(conn, rid, id, token.clone(), now);
                return None;
            }
            (Some(id), None) if held => {
                let detail = format!("id {id:?} is taken");
                self.reply(conn, Err((ErrorCode::IdTaken, rid, detail)), now);
                return None;
            }
            // Free here. With a token for it: the grace window ended (or the
            // broker restarted), so take it afresh, and `resumed: false`
            // tells the client its rooms are gone; in a network of brokers
            // the token may still be another broker's claim (see `cluster`).
            (Some(id), _) => (id, false),
            (None, Some(_)) => {
                let detail = "resumeToken needs the id it was issued with".to_string();
                self.reply(conn, Err((ErrorCode::BadMessage, rid, detail)), now);
                return None;
            }
            (None, None) => match self.assign_peer_id(rid) {
                Ok(id) => (id, true),
                Err(refusal) => {
                    self.reply(conn, Err(refusal), now);
                    return None;
                }
            },
        };
        match self.new_token(rid, &id) {
            Ok(new) => Some(Claim {
                rid,
                id,
                token: new,
                resume: token,
                assigned,
            }),
            Err(refusal) => {
                self.reply(conn, Err(refusal), now);
                None
            }
        }
    }

    pub(super) fn registered(
        &self,
        conn: ConnId,
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
            ice_servers: self.config.ice.servers_for(
                id,
                (self.env.unix_clock)(),
                self.conns.get(&conn).and_then(|c| c.broker_host.as_deref()),
            ),
            grace_ms: self.config.grace.as_millis() as u64,
            protocol: PROTOCOL_VERSION,
            rooms,
            rate_limit: self.config.message_rate.map(|r| r.0),
            rate_burst: self.config.message_rate.map(|r| r.1),
            max_frame_bytes: Some(self.config.max_frame_bytes as u64),
        }
    }

    /// Reclaims held id `id` with its token: the connection takes it over
    /// (closing an older one with 4005), then gets `registered`, a snapshot
    /// of every kept room, and the queued messages in order.
    fn resume(&mut self, conn: ConnId, rid: Rid, id: String, token: String, now: Instant) {
        let Some(session) = self.sessions.get_mut(&id) else {
            let refusal = internal(rid, "resume of an id that is not held");
            return self.reply(conn, Err(refusal), now);
        };
        if !same_token(&session.token, &token) {
            let detail = match self.env.resume_key.check(&id, &token, self.incarnation) {
                Verdict::Earlier => format!(
                    "the resume token for id {id:?} is from before the broker restarted, \
                     and its owner already reclaimed the id or the grace window after the restart ended"
                ),
                Verdict::Current => {
                    format!("the resume token of id {id:?} was replaced by a newer one")
                }
                Verdict::Invalid => format!("the resume token does not match id {id:?}"),
            };
            return self.reply(conn, Err((ErrorCode::BadResumeToken, rid, detail)), now);
        }
        let old = session.conn.replace(conn);
        session.grace_deadline = None;
        session.address = self.conns.get(&conn).map(|c| c.address.clone());
        let queued = std::mem::take(&mut session.queue);
        let rooms: Vec<String> = session.rooms.iter().cloned().collect();
        // The old connection may still look alive (a half-open socket after
        // a network change): the newer one wins.
        if let Some(old) = old {
            if let Some(mut entry) = self.conns.remove(&old) {
                if let Some(kill) = entry.kill.take() {
                    let _ = kill.send(CloseCode::Replaced);
                }
                self.metrics.close(CloseCode::Replaced);
                self.cut_off.insert(old, id.clone());
            }
        }
        self.detached.remove(&id);
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.peer = Some(id.clone());
        }
        let rooms = self.rooms_still_allowed(&id, conn, rooms, now);
        let msg = self.registered(conn, rid, &id, token, true, rooms.clone());
        self.send_conn(conn, &msg, now);
        for room in rooms {
            if self.cluster.is_some() {
                // The room is the network's: Redis has its snapshot.
                self.cluster_op(super::cluster::Op::Snapshot { conn, room });
            } else {
                let snapshot = self.room_snapshot(None, &room, now);
                self.send_resync(conn, TextFrame::from(snapshot.encode()), None, now);
            }
        }
        // An earlier connection of the id (cut off with 4003, or replaced
        // just now) may not have given back what it never wrote: those
        // frames are older than the queued ones, so everything for the id
        // waits until they are in (`Hub::disconnect`).
        let waiting = self.cut_off.values().any(|peer| *peer == id);
        match self.sessions.get_mut(&id) {
            Some(session) if waiting && session.handoff.is_none() => {
                session.handoff = Some(Handoff::local(now, queued));
                self.handoffs.insert(id.clone());
            }
            Some(session) if waiting => {
                if let Some(handoff) = session.handoff.as_mut() {
                    handoff.held.extend(queued);
                }
            }
            _ => {
                for q in queued {
                    self.send_resync(conn, q.frame, q.origin, now);
                }
            }
        }
        self.relay_resumed(&id, conn, old.is_some(), now);
    }

    /// The rooms of `id`, resumed on `conn`, that `conn`'s token still
    /// allows; it leaves the others (their members hear `peer-left`).
    pub(super) fn rooms_still_allowed(
        &mut self,
        id: &str,
        conn: ConnId,
        rooms: Vec<String>,
        now: Instant,
    ) -> Vec<String> {
        let (kept, refused): (Vec<String>, Vec<String>) = rooms
            .into_iter()
            .partition(|room| self.may_join(Some(conn), room).is_ok());
        for room in &refused {
            if self.cluster.is_some() {
                self.net_leave_room(id, room);
            } else {
                self.leave_room(id, room, now);
            }
        }
        kept
    }

    /// The id's connection is gone; hold the id for the grace window.
    pub(super) fn detach(&mut self, peer: &str, now: Instant) {
        if self.config.grace.is_zero() {
            return self.release(peer, now);
        }
        let Some(s) = self.sessions.get_mut(peer) else {
            return;
        };
        s.conn = None;
        // A window too long to represent ends at the next sweep rather
        // than panicking here.
        s.grace_deadline = now.checked_add(self.config.grace);
        self.detached.insert(peer.to_string());
        self.relay_detached(peer, now);
    }

    /// Frees the id: rooms, keys, hostnames, and a `peer-gone` for every
    /// queued signal.
    pub(super) fn release(&mut self, peer: &str, now: Instant) {
        let Some(session) = self.sessions.remove(peer) else {
            return;
        };
        self.detached.remove(peer);
        self.handoffs.remove(peer);
        let held = session.handoff.into_iter().flat_map(|h| h.held);
        for q in session.queue.into_iter().chain(held) {
            self.tell_origin(q.origin, ErrorCode::PeerGone, peer, now);
        }
        for room in &session.rooms {
            if self.cluster.is_some() {
                self.net_leave_room(peer, room);
            } else {
                self.leave_room(peer, room, now);
            }
        }
        for key in &session.opened_keys {
            self.drop_key(key, now);
        }
        for key in &session.joined_keys {
            self.drop_joiner(peer, key, now);
        }
        self.drop_hostnames(peer, &session.hostnames);
        self.relay_released(peer, now);
        // The network's claim goes too (an empty token: the claim is
        // another broker's now, see `cluster`).
        if !session.token.is_empty() {
            self.cluster_op(super::cluster::Op::Release {
                id: peer.to_string(),
                token: session.token,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Harness, ms};
    use serde_json::json;

    #[test]
    fn register_takes_a_chosen_id_or_assigns_one_from_the_seeded_source() {
        let mut h = Harness::new();
        let a = h.connect();
        let reply = h.request(a, json!({"type": "register", "rid": 1, "id": "alice"}));
        assert_eq!(reply["type"], "registered");
        assert_eq!(reply["id"], "alice");
        assert_eq!(reply["resumed"], false);
        let b = h.connect();
        let reply = h.request(b, json!({"type": "register", "rid": 1}));
        let assigned = reply["id"].as_str().unwrap().to_string();
        assert!(assigned.starts_with("p-"), "{assigned}");
        // The same seed assigns the same id and token: runs replay.
        let mut again = Harness::new();
        let c = again.connect();
        again.request(c, json!({"type": "register", "rid": 1, "id": "alice"}));
        let d = again.connect();
        let replay = again.request(d, json!({"type": "register", "rid": 1}));
        assert_eq!(replay["id"], assigned);
    }

    #[test]
    fn a_held_id_is_taken_and_a_wrong_token_is_refused() {
        let mut h = Harness::new();
        let a = h.connect();
        let token = h.register(a, "alice");
        let b = h.connect();
        let reply = h.request(b, json!({"type": "register", "rid": 2, "id": "alice"}));
        assert_eq!(reply["code"], "id-taken");
        let forged = format!("{}x", &token[..token.len() - 1]);
        let reply = h.request(
            b,
            json!({"type": "register", "rid": 3, "id": "alice", "resumeToken": forged}),
        );
        assert_eq!(reply["code"], "bad-resume-token");
        let reply = h.request(
            b,
            json!({"type": "register", "rid": 4, "resumeToken": token}),
        );
        assert_eq!(reply["code"], "bad-message");
    }

    #[test]
    fn a_drop_holds_the_id_for_the_grace_window_then_releases_it() {
        let mut h = Harness::new();
        let a = h.connect();
        h.register(a, "alice");
        h.drop_conn(a, false);
        let b = h.connect();
        h.register(b, "bob");
        h.sweep(ms(99));
        let reply = h.request(b, json!({"type": "find", "rid": 5, "id": "alice"}));
        assert_eq!(reply["online"], true, "inside the window");
        h.sweep(ms(100));
        let reply = h.request(b, json!({"type": "find", "rid": 6, "id": "alice"}));
        assert_eq!(reply["online"], false, "released when the window ends");
    }

    #[test]
    fn a_clean_close_releases_at_once() {
        let mut h = Harness::new();
        let a = h.connect();
        h.register(a, "alice");
        h.drop_conn(a, true);
        assert!(h.hub.is_idle());
    }

    #[test]
    fn resume_with_the_token_reclaims_the_id_and_replaces_a_live_connection() {
        let mut h = Harness::new();
        let a = h.connect();
        let token = h.register(a, "alice");
        h.request(a, json!({"type": "join", "rid": 2, "room": "lobby"}));
        // Reclaimed while the old connection still looks alive: it is
        // closed with 4005.
        let b = h.connect();
        let reply = h.request(
            b,
            json!({"type": "register", "rid": 3, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(reply["resumed"], true);
        assert_eq!(reply["rooms"], json!(["lobby"]));
        assert_eq!(h.killed(a), Some(4005));
        let resync = h.frames(b);
        assert_eq!(resync[0]["type"], "joined");
        assert_eq!(resync[0]["members"], json!(["alice"]));
        h.drop_conn(a, false);
        h.drop_conn(b, true);
        assert!(h.hub.is_idle());
    }

    #[test]
    fn after_a_restart_the_owners_token_wins_its_id_back_from_a_newcomer_once() {
        let mut h = Harness::new();
        let a = h.connect();
        let token = h.register(a, "alice");
        h.request(a, json!({"type": "join", "rid": 2, "room": "lobby"}));
        // The grace window (100 ms) counts from the restart.
        h.restart(8, ms(1_000));
        let newcomer = h.connect();
        h.register(newcomer, "alice");
        h.request(newcomer, json!({"type": "join", "rid": 2, "room": "den"}));
        let b = h.connect();
        h.register(b, "bob");
        h.request(b, json!({"type": "join", "rid": 2, "room": "den"}));
        let owner = h.connect();
        let reply = h.request(
            owner,
            json!({"type": "register", "rid": 3, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(reply["type"], "registered", "{reply}");
        assert_eq!(
            reply["resumed"], false,
            "its rooms went with the old process"
        );
        assert_eq!(reply["rooms"], json!([]));
        assert_ne!(reply["resumeToken"], json!(token), "a token of this run");
        assert_eq!(h.killed(newcomer), Some(4005));
        assert_eq!(
            h.drop_conn(newcomer, false),
            Some(super::super::OWNER_CAME_BACK)
        );
        // What the newcomer held went with it.
        let left = h.frames(b);
        assert_eq!(left[0]["type"], "peer-left", "{left:?}");
        assert_eq!(left[0]["id"], "alice");
        // Once: the same token again is refused, by name.
        let again = h.connect();
        let reply = h.request(
            again,
            json!({"type": "register", "rid": 4, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(reply["code"], "bad-resume-token");
        let detail = reply["message"].as_str().unwrap();
        assert!(detail.contains("before the broker restarted"), "{detail}");
        assert_eq!(h.killed(owner), None);
    }

    #[test]
    fn after_a_restart_a_forged_token_another_ids_token_and_a_late_one_are_refused() {
        let mut h = Harness::new();
        let a = h.connect();
        let token = h.register(a, "alice");
        let b = h.connect();
        let bobs = h.register(b, "bob");
        h.restart(8, ms(1_000));
        let newcomer = h.connect();
        h.register(newcomer, "alice");
        let c = h.connect();
        let last = token.chars().last().unwrap();
        let forged = format!(
            "{}{}",
            &token[..token.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        for (rid, wrong) in [(1, forged), (2, bobs)] {
            let reply = h.request(
                c,
                json!({"type": "register", "rid": rid, "id": "alice", "resumeToken": wrong}),
            );
            assert_eq!(reply["code"], "bad-resume-token", "{reply}");
        }
        assert_eq!(h.killed(newcomer), None, "the newcomer keeps the id");
        // The window after the restart is over: the owner's token no
        // longer wins, and the refusal says why.
        h.sweep(ms(1_100));
        let reply = h.request(
            c,
            json!({"type": "register", "rid": 3, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(reply["code"], "bad-resume-token");
        let detail = reply["message"].as_str().unwrap();
        assert!(
            detail.contains("grace window after the restart"),
            "{detail}"
        );
        assert_eq!(h.killed(newcomer), None);
    }

    #[test]
    fn after_a_restart_a_free_id_is_the_owners_and_signals_for_an_evicted_newcomer_are_refused() {
        let mut h = Harness::new();
        let a = h.connect();
        let alices = h.register(a, "alice");
        let b = h.connect();
        let bobs = h.register(b, "bob");
        h.restart(9, ms(500));
        // Free: registered afresh with the old token, as before.
        let a2 = h.connect();
        let reply = h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": alices}),
        );
        assert_eq!(
            (reply["type"].clone(), reply["resumed"].clone()),
            (json!("registered"), json!(false))
        );
        // Bob's id was taken by a newcomer who then dropped, with a signal
        // queued for it in its grace window.
        let newcomer = h.connect();
        h.register(newcomer, "bob");
        h.drop_conn(newcomer, false);
        h.send(
            a2,
            json!({"type": "signal", "rid": 7, "to": "bob", "data": 1}),
        );
        assert!(h.frames(a2).is_empty(), "queued for the newcomer");
        let b2 = h.connect();
        let reply = h.request(
            b2,
            json!({"type": "register", "rid": 1, "id": "bob", "resumeToken": bobs}),
        );
        assert_eq!(reply["type"], "registered", "{reply}");
        assert!(
            h.frames(b2).is_empty(),
            "the newcomer's signal is not the owner's"
        );
        let refused = h.frames(a2);
        assert_eq!(refused[0]["code"], "peer-gone", "{refused:?}");
        assert_eq!(refused[0]["rid"], 7);
    }

    #[test]
    fn resume_after_a_drop_gets_queued_signals_in_order() {
        let mut h = Harness::new();
        let a = h.connect();
        let token = h.register(a, "alice");
        let b = h.connect();
        h.register(b, "bob");
        h.drop_conn(a, false);
        for n in 0..3 {
            h.send(
                b,
                json!({"type": "signal", "rid": 10 + n, "to": "alice", "data": n}),
            );
        }
        assert!(h.frames(b).is_empty(), "queued, not refused");
        h.at(ms(50));
        let a2 = h.connect();
        let reply = h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(reply["resumed"], true);
        let data: Vec<_> = h.frames(a2).iter().map(|f| f["data"].clone()).collect();
        assert_eq!(data, vec![json!(0), json!(1), json!(2)]);
    }
}
