//! Rooms in a network of brokers (`--redis`). Redis holds each room's
//! members (in join order) and state, and checks the room's limits in the
//! same script that changes it; each change is published on the room's
//! channel by that script, and every broker with members in the room
//! passes it on to them. This broker keeps only which of its own ids are in
//! which rooms (`State::net_rooms`, and each session's `rooms`), for the
//! per-id limits, for fan-out, and to leave the rooms when an id goes.
//!
//! Replies come back from the cluster task: `joined` with the snapshot
//! Redis returned, `ok` or an error for `set` and `delete`. `leave` and
//! `broadcast` are answered at once (this broker knows whether the id is a
//! member); what a broadcast cannot deliver reaches its sender as
//! `delivery_error`s, as on one broker.
//!
//! Byte budgets: the room's state is bounded in bytes by the `set` script
//! (`--max-room-state-bytes`, counted as on one broker give or take the
//! expiry's digits Redis stores with each value). The per-id and
//! per-address state budgets are not applied here: the values live in
//! Redis, not in this broker, and are set through any broker of the
//! network, so a count per id or address would need records of its own in
//! Redis kept in step by every script that drops a value (delete, expiry,
//! the room's end, a broker's death). What a value can cost this broker is
//! its share of a snapshot or an event, bounded by the room's budget and
//! the outbound budgets. Nor is `--fanout-rate` charged for network
//! broadcasts and join snapshots: the recipients and the snapshot are known
//! only to Redis; the outbound byte budgets still bound what they make
//! this broker hold.

use std::time::Instant;

use peerwire::protocol::json::Json as Value;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, ErrorCode, RemovalReason, ServerMessage};
use serde::{Deserialize, Serialize};

use super::cluster::Op;
use super::delivery::Kind;
use super::{ConnId, Hub, Refusal, State, TextFrame};

/// A change of a room, as published on its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomNotice {
    /// The JSON text members receive.
    pub frame: String,
    /// A member who does not get it (the one it is about, or a sender that
    /// did not ask for its own broadcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<String>,
    /// For a broadcast: who to tell when a member cannot get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<(String, Rid)>,
}

impl RoomNotice {
    pub fn event(msg: &ServerMessage, except: Option<&str>) -> Self {
        Self {
            frame: msg.encode(),
            except: except.map(str::to_string),
            origin: None,
        }
    }

    /// The notice as published.
    pub fn payload(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What Redis holds of a room: members in join order, state entries with
/// their expiry (ms on Redis's clock, 0: none), and Redis's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomView {
    pub now_ms: u64,
    pub members: Vec<String>,
    /// (key, from, value JSON, expires at ms or 0).
    pub state: Vec<(String, String, String, u64)>,
}

impl RoomView {
    /// `joined` for `room`.
    pub fn snapshot(self, rid: Option<Rid>, room: &str) -> ServerMessage {
        let now = self.now_ms;
        ServerMessage::Joined {
            rid,
            room: room.to_string(),
            members: self.members,
            state: self
                .state
                .into_iter()
                .filter(|(_, _, _, e)| *e == 0 || *e > now)
                .map(|(key, from, value, e)| peerwire::protocol::StateEntry {
                    key,
                    value: Value(value),
                    from,
                    ttl_ms: (e > 0).then(|| e - now),
                })
                .collect(),
        }
    }
}

/// A room request Redis answered.
#[derive(Debug)]
pub enum RoomAnswer {
    Joined(RoomView),
    Done,
    Refused(ErrorCode, String),
}

/// The room a room request names.
fn room_of(msg: &ClientMessage) -> Option<&str> {
    match msg {
        ClientMessage::Join { room, .. }
        | ClientMessage::Leave { room, .. }
        | ClientMessage::Broadcast { room, .. }
        | ClientMessage::Set { room, .. }
        | ClientMessage::Delete { room, .. } => Some(room),
        _ => None,
    }
}

impl Hub {
    /// Redis's answer to this broker's `join` of `room` for `id`.
    pub fn join_answer(
        &self,
        conn: ConnId,
        rid: Rid,
        id: &str,
        room: &str,
        answer: RoomAnswer,
        now: Instant,
    ) {
        let mut st = self.lock();
        let mut waiting = Vec::new();
        if let Some(session) = st.sessions.get_mut(id) {
            session.joining.remove(room);
            // The requests that waited for this join, in order (those for
            // other rooms still joining wait on).
            let (now_due, still): (Vec<_>, Vec<_>) = session
                .after_join
                .drain(..)
                .partition(|(_, msg)| room_of(msg) == Some(room));
            session.after_join = still.into();
            waiting = now_due;
        }
        st.room_answer(conn, rid, id, room, answer, now);
        for (conn, msg) in waiting {
            let still_here = st
                .conns
                .get(&conn)
                .is_some_and(|c| c.peer.as_deref() == Some(id));
            if still_here {
                if let Some(other) = st.network_room_request(conn, id, msg, now) {
                    st.handle(conn, other, now);
                }
            }
        }
    }

    /// Redis's answer to this broker's `set` or `delete` for `id`.
    pub fn room_answer(
        &self,
        conn: ConnId,
        rid: Rid,
        id: &str,
        room: &str,
        answer: RoomAnswer,
        now: Instant,
    ) {
        self.lock().room_answer(conn, rid, id, room, answer, now);
    }

    /// A snapshot for an id that resumed here from another broker.
    pub fn room_resync(&self, conn: ConnId, room: &str, view: RoomView, now: Instant) {
        let mut st = self.lock();
        let msg = view.snapshot(None, room);
        st.send_resync(conn, TextFrame::from(msg.encode()), None, now);
    }

    /// A change another broker (or this one) published on `room`'s channel.
    pub fn room_notice(&self, room: &str, notice: RoomNotice, now: Instant) {
        self.lock().room_notice(room, notice, now);
    }

    /// Every room this broker has members in (to subscribe to again).
    pub fn network_rooms(&self) -> Vec<String> {
        self.lock().net_rooms.keys().cloned().collect()
    }

    /// Whether this broker has members in `room` (a join not yet sent to
    /// Redis subscribes again before it runs).
    pub fn has_network_members(&self, room: &str) -> bool {
        self.lock().net_rooms.contains_key(room)
    }

    /// Whether this broker holds `id` and it is not in `room` (a leave of
    /// the room that Redis missed is to be done again).
    pub fn held_outside(&self, id: &str, room: &str) -> bool {
        let st = self.lock();
        st.sessions.get(id).is_some_and(|s| !s.rooms.contains(room))
    }

    /// Every (id, room) membership of this broker's ids (to make again in
    /// a Redis that lost them).
    pub fn memberships(&self) -> Vec<(String, String)> {
        let st = self.lock();
        st.net_rooms
            .iter()
            .flat_map(|(room, ids)| ids.iter().map(move |id| (id.clone(), room.clone())))
            .collect()
    }
}

impl State {
    /// Takes the room, rendezvous-key and hostname requests of an id of
    /// this broker, in a network; gives back any other message.
    pub(super) fn network_room_request(
        &mut self,
        conn: ConnId,
        me: &str,
        msg: ClientMessage,
        now: Instant,
    ) -> Option<ClientMessage> {
        // A request about a room whose join Redis has not answered yet
        // waits for that answer: on one broker the join is done first.
        if let Some(room) = room_of(&msg).map(str::to_string) {
            let max = self.config.max_queued;
            if let Some(session) = self.sessions.get_mut(me) {
                if session.joining.contains(&room) {
                    if session.after_join.len() >= max {
                        let detail = format!(
                            "{max} requests already wait for a join to be answered (--max-queued)"
                        );
                        self.reply(conn, Err((ErrorCode::QueueFull, msg.rid(), detail)), now);
                    } else {
                        session.after_join.push_back((conn, msg));
                    }
                    return None;
                }
            }
        }
        // Leave, broadcast, set and delete need the id in the room.
        if let Some(room) = room_of(&msg) {
            if !matches!(msg, ClientMessage::Join { .. }) && !self.is_member(me, room) {
                let refusal = Self::not_member(msg.rid(), room);
                self.reply(conn, refusal, now);
                return None;
            }
        }
        let answer = match msg {
            ClientMessage::Join { rid, room } => self.net_join(conn, me, rid, room),
            ClientMessage::Leave { rid, room } => self.net_leave(conn, me, rid, &room),
            ClientMessage::Broadcast {
                rid,
                room,
                data,
                include_self,
            } => self.net_broadcast(conn, me, rid, room, data, include_self),
            ClientMessage::Set {
                rid,
                room,
                key,
                value,
                ttl_ms,
            } => self.net_set(conn, me, rid, room, key, value, ttl_ms),
            ClientMessage::Delete { rid, room, key } => self.net_delete(conn, me, rid, room, key),
            // Rendezvous keys and hostnames live in Redis, with the per-id
            // limits; the cluster task answers.
            msg @ (ClientMessage::OpenKey { .. }
            | ClientMessage::JoinKey { .. }
            | ClientMessage::LeaveKey { .. }
            | ClientMessage::CloseKey { .. }
            | ClientMessage::RegisterHostname { .. }
            | ClientMessage::LookupHostname { .. }) => {
                self.cluster_op(Op::Request {
                    conn,
                    id: me.to_string(),
                    msg,
                });
                None
            }
            other => return Some(other),
        };
        if let Some(answer) = answer {
            self.reply(conn, answer, now);
        }
        None
    }

    fn is_member(&self, me: &str, room: &str) -> bool {
        self.sessions
            .get(me)
            .is_some_and(|s| s.rooms.contains(room))
    }

    fn not_member(rid: Rid, room: &str) -> Result<ServerMessage, Refusal> {
        Err((ErrorCode::NotInRoom, rid, format!("not in room {room:?}")))
    }

    fn net_join(
        &mut self,
        conn: ConnId,
        me: &str,
        rid: Rid,
        room: String,
    ) -> Option<Result<ServerMessage, Refusal>> {
        let session = self.sessions.get(me)?;
        if !session.rooms.contains(&room) && !session.joining.contains(&room) {
            if let Err((code, detail)) = self.may_join(session.conn, &room) {
                return Some(Err((code, rid, detail)));
            }
            // Joins still in flight count: answers come later, and a
            // client that does not wait for them must not pass the limit.
            let held = session.rooms.len() + session.joining.len();
            if held >= self.config.max_rooms_per_peer {
                let detail = format!("already in {held} rooms");
                return Some(Err((ErrorCode::TooManyRooms, rid, detail)));
            }
            if let Some(session) = self.sessions.get_mut(me) {
                session.joining.insert(room.clone());
            }
        }
        let event = ServerMessage::PeerJoined {
            room: room.clone(),
            id: me.to_string(),
        };
        self.cluster_op(Op::Join {
            conn,
            rid,
            id: me.to_string(),
            room,
            max_members: self.config.max_room_members,
            event: RoomNotice::event(&event, Some(me)).payload(),
        });
        None
    }

    fn net_leave(
        &mut self,
        conn: ConnId,
        me: &str,
        rid: Rid,
        room: &str,
    ) -> Option<Result<ServerMessage, Refusal>> {
        self.net_leave_room(me, room);
        // In order with the requests before it (a leave that cannot reach
        // Redis now is done when it is back: `ok` all the same).
        self.cluster_op(Op::Reply {
            conn,
            rid,
            failed: None,
        });
        None
    }

    /// Takes `me` out of `room` here and in Redis (whose script tells the
    /// other members).
    pub(super) fn net_leave_room(&mut self, me: &str, room: &str) {
        self.forget_membership(me, room);
        let event = ServerMessage::PeerLeft {
            room: room.to_string(),
            id: me.to_string(),
        };
        self.cluster_op(Op::Leave {
            id: me.to_string(),
            room: room.to_string(),
            event: RoomNotice::event(&event, Some(me)).payload(),
        });
    }

    /// Takes `me` out of `room` on this broker only.
    pub(super) fn forget_membership(&mut self, me: &str, room: &str) {
        if let Some(s) = self.sessions.get_mut(me) {
            s.rooms.remove(room);
        }
        if let Some(ids) = self.net_rooms.get_mut(room) {
            ids.retain(|id| id != me);
            if ids.is_empty() {
                self.net_rooms.remove(room);
                self.cluster_op(Op::Unsubscribe {
                    room: room.to_string(),
                });
            }
        }
    }

    /// Records that `me` is in `room` (joined here, or resumed here).
    pub(super) fn add_membership(&mut self, me: &str, room: &str) {
        if let Some(s) = self.sessions.get_mut(me) {
            s.rooms.insert(room.to_string());
        }
        let ids = self.net_rooms.entry(room.to_string()).or_default();
        if !ids.iter().any(|id| id == me) {
            ids.push(me.to_string());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn net_broadcast(
        &mut self,
        conn: ConnId,
        me: &str,
        rid: Rid,
        room: String,
        data: Value,
        include_self: bool,
    ) -> Option<Result<ServerMessage, Refusal>> {
        let msg = ServerMessage::Broadcast {
            room: room.clone(),
            from: me.to_string(),
            data,
        };
        let notice = RoomNotice {
            frame: msg.encode(),
            except: (!include_self).then(|| me.to_string()),
            origin: Some((me.to_string(), rid)),
        };
        // Refused whole when it cannot reach Redis (nobody, not even this
        // broker's members, would get it: it comes back on the room's
        // channel).
        let sent = self.cluster_op_bounded(Op::Publish {
            room,
            payload: notice.payload(),
        });
        match sent {
            // `ok` once published, in order with the requests before it.
            Ok(()) => {
                self.cluster_op(Op::Reply {
                    conn,
                    rid,
                    failed: Some(ErrorCode::Unavailable),
                });
                None
            }
            Err(code) => Some(Err(Self::not_queued(code, rid))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn net_set(
        &mut self,
        conn: ConnId,
        me: &str,
        rid: Rid,
        room: String,
        key: String,
        value: Value,
        ttl_ms: Option<u64>,
    ) -> Option<Result<ServerMessage, Refusal>> {
        let event = ServerMessage::StateSet {
            room: room.clone(),
            key: key.clone(),
            value: value.clone(),
            from: me.to_string(),
            ttl_ms,
        };
        let sent = self.cluster_op_bounded(Op::Set {
            conn,
            rid,
            id: me.to_string(),
            room,
            key,
            value: value.0,
            ttl_ms: ttl_ms.unwrap_or(0),
            max_keys: self.config.max_state_keys,
            max_bytes: self.config.max_room_state_bytes,
            event: RoomNotice::event(&event, None).payload(),
        });
        sent.err().map(|code| Err(Self::not_queued(code, rid)))
    }

    /// A request refused because it cannot wait for Redis (`code`:
    /// `queue-full` or `unavailable`).
    fn not_queued(code: ErrorCode, rid: Rid) -> Refusal {
        let detail = match code {
            ErrorCode::QueueFull => format!(
                "this broker holds --redis-max-queued-bytes of messages waiting for Redis: {}",
                code.hint()
            ),
            _ => format!("the broker network cannot be reached: {}", code.hint()),
        };
        (code, rid, detail)
    }

    fn net_delete(
        &mut self,
        conn: ConnId,
        me: &str,
        rid: Rid,
        room: String,
        key: String,
    ) -> Option<Result<ServerMessage, Refusal>> {
        let event = ServerMessage::StateRemoved {
            room: room.clone(),
            key: key.clone(),
            reason: RemovalReason::Deleted,
            from: Some(me.to_string()),
        };
        self.cluster_op(Op::Delete {
            conn,
            rid,
            id: me.to_string(),
            room,
            key,
            event: RoomNotice::event(&event, None).payload(),
        });
        None
    }

    fn room_answer(
        &mut self,
        conn: ConnId,
        rid: Rid,
        id: &str,
        room: &str,
        answer: RoomAnswer,
        now: Instant,
    ) {
        let still_here = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.peer.as_deref() == Some(id));
        match answer {
            RoomAnswer::Joined(view) => {
                if !still_here {
                    // Gone while Redis answered: leave again.
                    if !self.is_member(id, room) {
                        let event = ServerMessage::PeerLeft {
                            room: room.to_string(),
                            id: id.to_string(),
                        };
                        self.cluster_op(Op::Leave {
                            id: id.to_string(),
                            room: room.to_string(),
                            event: RoomNotice::event(&event, Some(id)).payload(),
                        });
                    }
                    return;
                }
                self.add_membership(id, room);
                let msg = view.snapshot(Some(rid), room);
                self.send_conn(conn, &msg, now);
            }
            RoomAnswer::Done => self.reply(conn, Ok(ServerMessage::Ok { rid }), now),
            RoomAnswer::Refused(code, detail) => self.reply(conn, Err((code, rid, detail)), now),
        }
    }

    fn room_notice(&mut self, room: &str, notice: RoomNotice, now: Instant) {
        let Some(ids) = self.net_rooms.get(room) else {
            return;
        };
        let kind = if notice.origin.is_some() {
            Kind::Queued
        } else {
            Kind::RoomEvent
        };
        let targets: Vec<String> = ids
            .iter()
            .filter(|id| notice.except.as_deref() != Some(id.as_str()))
            .cloned()
            .collect();
        let frame = TextFrame::from(notice.frame);
        for id in targets {
            if !self.sessions.contains_key(&id) {
                continue;
            }
            if let Err(code) =
                self.deliver_frame(&id, frame.clone(), notice.origin.clone(), kind, now)
            {
                self.tell_origin(notice.origin.clone(), code, &id, now);
            }
        }
    }
}
