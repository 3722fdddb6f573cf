//! Rooms: membership (in join order), broadcast, and each room's replicated
//! key/value state with optional TTL. Members hear `peer-joined`,
//! `peer-left`, `state-set` and `state-removed`; a joiner (and a resumed
//! id) gets a snapshot of members and state. A room exists while it has a
//! member. Expiry of state keys is in `sweep`.
//!
//! Byte budgets (see `budget`): each state value costs its key, value and
//! setter's id plus [`STATE_ENTRY_OVERHEAD`], against the room
//! (`--max-room-state-bytes`), the setter (`--max-peer-state-bytes`) and
//! the setter's address (`--ip-state-bytes`), until it is overwritten,
//! deleted, expires or its room goes; a `set` beyond any of them gets
//! `state-full`. A broadcast costs its encoded bytes times its recipients,
//! and a `join` its snapshot's bytes, against the sender's `--fanout-rate`;
//! beyond it the request gets `fanout-limit` and nothing is sent. A
//! broadcast or event is encoded once and shared by its recipients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwire::protocol::json::Json as Value;
use peerwire::protocol::limits::STATE_ENTRY_OVERHEAD;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ErrorCode, RemovalReason, ServerMessage, StateEntry};

use super::budget::{Charge, Limit, Meter};
use super::delivery::Kind;
use super::{Answer, ConnId, Refusal, State, TextFrame, internal};
use crate::limits::TokenBucket;

/// One room.
#[derive(Default)]
pub(super) struct Room {
    /// Members in join order.
    pub(super) members: Vec<String>,
    pub(super) state: BTreeMap<String, StateValue>,
    /// Bytes of `state`, against `--max-room-state-bytes`.
    state_bytes: Arc<Meter>,
}

/// One key of a room's state.
pub(super) struct StateValue {
    value: Value,
    from: String,
    pub(super) expires: Option<Instant>,
    /// Its bytes against the state budgets, given back when it goes.
    _charge: Charge,
}

fn remaining_ms(expires: Option<Instant>, now: Instant) -> Option<u64> {
    expires.map(|e| e.saturating_duration_since(now).as_millis() as u64)
}

impl State {
    /// `joined` for `room`: its members and state as of `now`.
    pub(super) fn room_snapshot(
        &self,
        rid: Option<Rid>,
        room: &str,
        now: Instant,
    ) -> ServerMessage {
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

    /// Tells every member of `room` (but `except`) about a change, with
    /// one encoded frame they all share.
    pub(super) fn announce(
        &mut self,
        room: &str,
        msg: &ServerMessage,
        except: Option<&str>,
        now: Instant,
    ) {
        let members = match self.rooms.get(room) {
            Some(r) => r.members.clone(),
            None => return,
        };
        let frame = TextFrame::from(msg.encode());
        for m in members.iter().filter(|m| Some(m.as_str()) != except) {
            let _ = self.deliver_frame(m, frame.clone(), None, Kind::RoomEvent, now);
        }
    }

    /// Takes `bytes` from connection `conn`'s fan-out budget
    /// (`--fanout-rate`), or refuses the request `rid` with `fanout-limit`
    /// and takes nothing. `what` says what the bytes are for.
    pub(super) fn take_fanout(
        &mut self,
        conn: Option<ConnId>,
        rid: Rid,
        bytes: usize,
        what: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let rate = self.config.fanout_rate;
        let Some(entry) = conn.and_then(|c| self.conns.get_mut(&c)) else {
            return Ok(());
        };
        let bucket = entry
            .fanout
            .get_or_insert_with(|| TokenBucket::new(rate as f64, rate as f64, now));
        if bucket.take_n(bytes as f64, now) {
            return Ok(());
        }
        self.metrics.budget_refused(Limit::FanoutRate);
        let detail = format!(
            "{what} would send {bytes} bytes, past this connection's --fanout-rate ({rate} bytes a second); nothing was sent"
        );
        Err((ErrorCode::FanoutLimit, rid, detail))
    }

    /// What `room`'s snapshot costs against `--fanout-rate`: its state as
    /// counted against the state budgets, and its members' ids.
    fn snapshot_cost(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| {
            r.state_bytes.held() + r.members.iter().map(|m| m.len() + 3).sum::<usize>()
        }) + room.len()
            + 64
    }

    /// Whether connection `conn` may be in `room` now: its token (if any)
    /// has not expired and allows the room, or no token is needed for it.
    pub(super) fn may_join(
        &self,
        conn: Option<ConnId>,
        room: &str,
    ) -> Result<(), (ErrorCode, String)> {
        let grant = conn.and_then(|c| self.conns.get(&c)?.grant.as_ref());
        if grant.is_some_and(|g| g.expired((self.env.unix_clock)())) {
            let detail = "the token this connection presented has expired: reconnect with a fresh one (the `token` option)";
            return Err((ErrorCode::Unauthorized, detail.into()));
        }
        self.config
            .auth
            .may_join(grant, room)
            .map_err(|detail| (ErrorCode::Forbidden, detail))
    }

    pub(super) fn join(&mut self, me: &str, rid: Rid, room: String, now: Instant) -> Answer {
        let Some(session) = self.sessions.get(me) else {
            return Err(internal(rid, "join from a connection without a session"));
        };
        let (conn, member) = (session.conn, session.rooms.contains(&room));
        if !member {
            if let Err((code, detail)) = self.may_join(session.conn, &room) {
                return Err((code, rid, detail));
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
        }
        // The snapshot is paid for, also by a member joining again: a
        // 50-byte request must not buy a room's state over and over.
        let cost = self.snapshot_cost(&room);
        self.take_fanout(conn, rid, cost, "the snapshot of this join", now)?;
        if !member {
            if let Some(session) = self.sessions.get_mut(me) {
                session.rooms.insert(room.clone());
            }
            self.rooms
                .entry(room.clone())
                .or_default()
                .members
                .push(me.to_string());
            let event = ServerMessage::PeerJoined {
                room: room.clone(),
                id: me.to_string(),
            };
            self.announce(&room, &event, Some(me), now);
        }
        Ok(self.room_snapshot(Some(rid), &room, now))
    }

    fn member_check(&self, me: &str, rid: Rid, room: &str) -> Result<(), Refusal> {
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

    /// The room `me` is a member of, for a request that changes it.
    fn member_room(&mut self, me: &str, rid: Rid, room: &str) -> Result<&mut Room, Refusal> {
        self.member_check(me, rid, room)?;
        self.rooms
            .get_mut(room)
            .ok_or_else(|| internal(rid, "a member's room does not exist"))
    }

    pub(super) fn leave(&mut self, me: &str, rid: Rid, room: &str, now: Instant) -> Answer {
        self.member_check(me, rid, room)?;
        self.leave_room(me, room, now);
        Ok(ServerMessage::Ok { rid })
    }

    /// Takes `me` out of `room`; the others hear `peer-left`, and the room
    /// goes once it is empty.
    pub(super) fn leave_room(&mut self, me: &str, room: &str, now: Instant) {
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
    pub(super) fn broadcast(
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
        // Encoded once; every recipient's queue holds the same bytes.
        let frame = TextFrame::from(msg.encode());
        let to: Vec<&String> = members
            .iter()
            .filter(|m| include_self || m.as_str() != me)
            .collect();
        let cost = frame.len().saturating_mul(to.len());
        if let Err(refusal) = self.take_fanout(Some(conn), rid, cost, "this broadcast", now) {
            return self.reply(conn, Err(refusal), now);
        }
        for m in to {
            let origin = Some((me.to_string(), rid));
            if let Err(code) = self.deliver_frame(m, frame.clone(), origin, Kind::Queued, now) {
                self.metrics.error(code);
                self.send_conn(conn, &ServerMessage::delivery_error(rid, code, m), now);
            }
        }
        self.send_conn(conn, &ServerMessage::Ok { rid }, now);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn set(
        &mut self,
        me: &str,
        rid: Rid,
        room: String,
        key: String,
        value: Value,
        ttl_ms: Option<u64>,
        now: Instant,
    ) -> Answer {
        let max = self.config.max_state_keys;
        let (peer_bytes, address) = match self.sessions.get(me) {
            Some(s) => (s.state_bytes.clone(), s.address.clone()),
            None => return Err(internal(rid, "set from a connection without a session")),
        };
        let cost = key.len() + value.0.len() + me.len() + STATE_ENTRY_OVERHEAD;
        let caps = [
            self.config.max_room_state_bytes,
            self.config.max_peer_state_bytes,
            self.config.ip_state_bytes,
        ];
        let total = self.totals.state.clone();
        let r = self.member_room(me, rid, &room)?;
        if !r.state.contains_key(&key) && r.state.len() >= max {
            return Err((
                ErrorCode::InvalidStateKey,
                rid,
                format!("room {room:?} holds {max} keys"),
            ));
        }
        // The value it replaces gives its bytes back first (and is put
        // back if the new one does not fit).
        let old = r.state.remove(&key);
        let charge = Charge::take(
            cost,
            [
                Some((&r.state_bytes, caps[0])),
                Some((&peer_bytes, caps[1])),
                address.as_ref().map(|a| (&a.state, caps[2])),
                Some((&total, usize::MAX)),
            ],
        );
        let charge = match charge {
            Ok(charge) => charge,
            Err(i) => {
                if let Some(old) = old {
                    r.state.insert(key, old);
                }
                let (limit, whose, held) = match i {
                    0 => (
                        Limit::MaxRoomStateBytes,
                        format!("room {room:?}"),
                        r.state_bytes.held(),
                    ),
                    1 => (
                        Limit::MaxPeerStateBytes,
                        format!("id {me:?}"),
                        peer_bytes.held(),
                    ),
                    _ => (
                        Limit::IpStateBytes,
                        "this address".to_string(),
                        address.as_ref().map_or(0, |a| a.state.held()),
                    ),
                };
                self.metrics.budget_refused(limit);
                let detail = format!(
                    "{whose} holds {held} bytes of state and this value costs {cost}, past {} ({} bytes)",
                    limit.flag(),
                    caps[i.min(2)]
                );
                return Err((ErrorCode::StateFull, rid, detail));
            }
        };
        // A TTL too far out to represent simply never expires.
        let expires = ttl_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
        r.state.insert(
            key.clone(),
            StateValue {
                value: value.clone(),
                from: me.to_string(),
                expires,
                _charge: charge,
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

    pub(super) fn delete(
        &mut self,
        me: &str,
        rid: Rid,
        room: String,
        key: String,
        now: Instant,
    ) -> Answer {
        let r = self.member_room(me, rid, &room)?;
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Harness, ms};
    use serde_json::json;

    #[test]
    fn members_hear_joins_and_leaves_and_the_joiner_gets_a_snapshot() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.request(a, json!({"type": "join", "rid": 2, "room": "lobby"}));
        let joined = h.request(b, json!({"type": "join", "rid": 2, "room": "lobby"}));
        assert_eq!(joined["members"], json!(["alice", "bob"]));
        assert_eq!(
            h.frames(a),
            vec![json!({"type": "peer-joined", "room": "lobby", "id": "bob"})]
        );
        h.request(b, json!({"type": "leave", "rid": 3, "room": "lobby"}));
        assert_eq!(h.frames(a)[0]["type"], "peer-left");
        let reply = h.request(b, json!({"type": "leave", "rid": 4, "room": "lobby"}));
        assert_eq!(reply["code"], "not-in-room");
    }

    #[test]
    fn room_limits_give_named_errors() {
        let mut h = Harness::new(); // 3 members, 2 rooms per peer
        let conns: Vec<_> = (0..4).map(|_| h.connect()).collect();
        for (i, c) in conns.iter().enumerate() {
            h.register(*c, &format!("p{i}"));
        }
        for c in &conns[..3] {
            h.request(*c, json!({"type": "join", "rid": 2, "room": "r"}));
        }
        let reply = h.request(conns[3], json!({"type": "join", "rid": 3, "room": "r"}));
        assert_eq!(reply["code"], "room-full");
        h.request(conns[3], json!({"type": "join", "rid": 4, "room": "x"}));
        h.request(conns[3], json!({"type": "join", "rid": 5, "room": "y"}));
        let reply = h.request(conns[3], json!({"type": "join", "rid": 6, "room": "z"}));
        assert_eq!(reply["code"], "too-many-rooms");
    }

    #[test]
    fn broadcast_reaches_members_and_the_sender_only_when_asked() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.request(a, json!({"type": "join", "rid": 2, "room": "r"}));
        h.request(b, json!({"type": "join", "rid": 2, "room": "r"}));
        h.frames(a);
        let ok = h.request(
            a,
            json!({"type": "broadcast", "rid": 3, "room": "r", "data": 1}),
        );
        assert_eq!(ok["type"], "ok");
        assert_eq!(h.frames(b)[0]["data"], 1);
        h.send(
            a,
            json!({"type": "broadcast", "rid": 4, "room": "r", "data": 2, "includeSelf": true}),
        );
        let mine = h.frames(a);
        assert_eq!(
            (mine[0]["type"].as_str(), mine[1]["type"].as_str()),
            (Some("broadcast"), Some("ok"))
        );
    }

    #[test]
    fn state_is_set_snapshotted_with_its_remaining_ttl_and_expires_on_time() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.request(a, json!({"type": "join", "rid": 2, "room": "r"}));
        h.send(
            a,
            json!({"type": "set", "rid": 3, "room": "r", "key": "k", "value": 1, "ttlMs": 100}),
        );
        let to_me = h.frames(a);
        assert_eq!(
            to_me[0]["type"], "state-set",
            "the setter hears it before the ok"
        );
        assert_eq!(to_me[1]["type"], "ok");
        h.at(ms(40));
        let joined = h.request(b, json!({"type": "join", "rid": 2, "room": "r"}));
        assert_eq!(joined["state"][0]["ttlMs"], 60);
        h.sweep(ms(99));
        assert!(h.frames(b).is_empty());
        h.sweep(ms(140));
        let removed = h.frames(b);
        assert_eq!(removed[0]["type"], "state-removed");
        assert_eq!(removed[0]["reason"], "expired");
    }

    #[test]
    fn state_keys_are_bounded_and_deletes_are_announced() {
        let mut h = Harness::new(); // 2 state keys
        let a = h.connect();
        h.register(a, "alice");
        h.request(a, json!({"type": "join", "rid": 2, "room": "r"}));
        for k in ["k1", "k2"] {
            h.send(
                a,
                json!({"type": "set", "rid": 3, "room": "r", "key": k, "value": 0}),
            );
        }
        h.frames(a);
        let reply = h.request(
            a,
            json!({"type": "set", "rid": 4, "room": "r", "key": "k3", "value": 0}),
        );
        assert_eq!(reply["code"], "invalid-state-key");
        h.send(
            a,
            json!({"type": "delete", "rid": 5, "room": "r", "key": "k1"}),
        );
        let got = h.frames(a);
        assert_eq!(got[0]["reason"], "deleted");
        assert_eq!(got[0]["from"], "alice");
        let reply = h.request(
            a,
            json!({"type": "set", "rid": 6, "room": "nope", "key": "k", "value": 0}),
        );
        assert_eq!(reply["code"], "not-in-room");
    }
}
