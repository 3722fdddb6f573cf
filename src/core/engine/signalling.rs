//! The link to the broker (or the hub), registration, broker requests, and
//! what the broker pushes: signals, rooms and rendezvous keys.
//!
//! ```text
//!  start ──► DialBroker ──open──► register ──registered──► Up ──(events)
//!              ▲   │                   │ refused: Failed (createPeer rejects;
//!              │   │ closed before     │  later: an `error` event)
//!              │   │ the first         │
//!              │   └─registration──► the next URL of the list at once; once
//!              │                     every URL failed, createPeer rejects
//!              │                         │ closed after it      (unreachable)
//!              └──── backoff ◄───────────┘ (BrokerDown; the next URL of the
//!                                           list; rooms kept while the
//!                                           broker resumes the id)
//! ```
//!
//! Which URL of the `broker` list a dial goes to is `failover`'s.

use super::Engine;
use super::types::{Action, Event, LogLevel, Millis, OpId, Reply, Signalling, Transmit};
use crate::core::broker::{Link, QueueError, SessionEvent};
use crate::core::error::PeerError;
use crate::protocol::messages::Rid;
use crate::protocol::{ClientMessage, CloseCode, ErrorCode, IceServer, ServerMessage, StateEntry};

/// A room this peer is in, as the broker last described it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Room {
    /// Members in join order, this peer included.
    pub members: Vec<String>,
    /// Key → (value, who set it).
    pub state: super::Table<String, (crate::protocol::json::Json, String)>,
}

impl Room {
    fn from_snapshot(members: Vec<String>, state: Vec<StateEntry>) -> Self {
        Self {
            members,
            state: state
                .into_iter()
                .map(|e| (e.key, (e.value, e.from)))
                .collect(),
        }
    }
}

/// What a broker request resolves once its reply comes.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Find,
    Join(String),
    Leave(String),
    Plain,
    OpenKey(String),
    /// Joining a key, then connecting to its opener.
    JoinKey,
    CloseKey(String),
    LookupHostname,
    /// A connection's `relay` request.
    Relay(super::ConnId),
}

/// Readiness: the first registration (or hub address).
pub(crate) enum Ready {
    Waiting(Vec<OpId>),
    Done(Result<(), PeerError>),
}

impl Engine {
    /// Starts registering: dials the broker, or attaches to the hub.
    /// Returns the operation that resolves once the id is known.
    pub fn start(&mut self, now: Millis) -> OpId {
        let op = self.new_op();
        self.note_started(now);
        self.ready_deadline = Some(now + self.config.connect_timeout as f64);
        match &mut self.ready {
            Ready::Waiting(ops) => ops.push(op),
            Ready::Done(r) => {
                let r = r.clone();
                self.done(op, r.map(|()| Reply::Done));
                return op;
            }
        }
        match self.config.signalling.clone() {
            Signalling::Broker { .. } if self.brokers.is_empty() => {
                self.settle_ready(Err(PeerError::InvalidArgument(
                    "no broker URL: options.broker must name at least one".into(),
                )));
            }
            Signalling::Broker { .. } => self.dial(now),
            Signalling::Hub => self.action(Action::AttachHub),
        }
        op
    }

    /// Resolves `op` once the id is known (at once if it is).
    pub fn when_ready(&mut self) -> OpId {
        let op = self.new_op();
        match &mut self.ready {
            Ready::Waiting(ops) => ops.push(op),
            Ready::Done(r) => {
                let r = r.clone();
                self.done(op, r.map(|()| Reply::Done));
            }
        }
        op
    }

    /// Dials the current URL of the broker list.
    pub(super) fn dial(&mut self, now: Millis) {
        if self.closed || self.config.signalling == Signalling::Hub {
            return;
        }
        let Some(url) = self.brokers.current().map(str::to_string) else {
            return;
        };
        self.generation += 1;
        self.reconnect_at = None;
        self.attempt_deadline = self.attempt_limit().map(|limit| now + limit);
        self.action(Action::DialBroker {
            url,
            generation: self.generation,
        });
    }

    pub(crate) fn settle_ready(&mut self, result: Result<(), PeerError>) -> bool {
        match std::mem::replace(&mut self.ready, Ready::Done(result.clone())) {
            Ready::Waiting(ops) => {
                self.ready_deadline = None;
                for op in ops {
                    self.done(op, result.clone().map(|()| Reply::Done));
                }
                true
            }
            done @ Ready::Done(_) => {
                self.ready = done;
                false
            }
        }
    }

    fn renewable_token(&self) -> bool {
        matches!(
            self.config.signalling,
            Signalling::Broker {
                renewable_token: true,
                ..
            }
        ) && self.session.registered_once()
    }

    // ---- broker socket inputs ----------------------------------------------

    /// The broker socket of `generation` opened.
    pub fn handle_broker_open(&mut self, generation: u64, now: Millis) {
        if generation != self.generation || self.closed {
            return;
        }
        self.broker_heard = now;
        self.broker_probe = None;
        let fallback = self
            .broker_url()
            .and_then(|url| self.broker_tokens.get(url))
            .cloned();
        self.session.offer_fallback_token(fallback);
        let frame = self.session.on_open();
        self.transmits.push_back(Transmit::Broker(frame));
    }

    /// A text frame from the broker.
    pub fn handle_broker_text(&mut self, generation: u64, text: &str, now: Millis) {
        if generation != self.generation || self.closed {
            return;
        }
        self.broker_heard = now;
        self.broker_probe = None;
        let (events, frames) = self.session.on_message_at(text, now);
        for f in frames {
            self.transmits.push_back(Transmit::Broker(f));
        }
        self.on_session_events(events, now);
    }

    /// The broker socket closed (or never opened).
    pub fn handle_broker_closed(&mut self, generation: u64, code: u16, reason: &str, now: Millis) {
        if generation != self.generation || self.closed {
            return;
        }
        self.broker_closed(generation, code, reason, None, now);
    }

    /// The socket of `generation` is gone: before the first registration
    /// the next URL is dialled at once (`detail`, or the link state, says
    /// for the error why this one failed), or `createPeer` rejects once
    /// every URL failed; after it, a reconnect to the next URL follows the
    /// backoff.
    pub(super) fn broker_closed(
        &mut self,
        generation: u64,
        code: u16,
        reason: &str,
        detail: Option<String>,
        now: Millis,
    ) {
        self.broker_probe = None;
        self.attempt_deadline = None;
        let url = self.broker_url().unwrap_or_default().to_string();
        self.log(LogLevel::Error, || {
            format!("broker connection #{generation} to {url} closed: {code} {reason}")
        });
        if code == CloseCode::Unauthorized.code() {
            let err = PeerError::Unauthorized {
                code: ErrorCode::Unauthorized,
                message: format!(
                    "the broker refused the access token ({reason}); pass a valid one with the `token` option"
                ),
            };
            if self.renewable_token() {
                self.events.push_back(Event::Error(err));
            } else {
                self.refuse(err, now);
            }
        } else if !self.session.registered_once() && self.session.link() != Link::Failed {
            // Before the first registration, a socket that closes means
            // this broker cannot be reached: try the next URL of the list
            // now, and once each failed say so rather than retry until
            // connectTimeout.
            let detail = detail.unwrap_or_else(|| {
                if self.session.link() == Link::Registering {
                    format!("the connection closed before registering (code {code} {reason})")
                } else {
                    "the connection was refused or dropped".to_string()
                }
            });
            if self.first_pass_failed(detail) {
                self.session.on_close(self.rng.unit());
                self.events.push_back(Event::BrokerDown {
                    code,
                    reason: reason.to_string(),
                    url,
                });
                // (The dial's log line names the next URL.)
                self.dial(now);
                return;
            }
            let err = self.unreachable_error();
            self.refuse(err, now);
        }
        let delay = self.session.on_close(self.rng.unit());
        self.events.push_back(Event::BrokerDown {
            code,
            reason: reason.to_string(),
            url,
        });
        if let Some(delay) = delay {
            // The reconnect dials the next broker of the list (with one
            // URL, the same one again).
            self.brokers.advance();
            self.reconnect_at = Some(now + delay.as_secs_f64() * 1000.0);
        }
    }

    /// The token function failed (thrown, rejected, or not a string).
    pub fn handle_token_failed(&mut self, generation: u64, detail: &str, now: Millis) {
        if generation != self.generation || self.closed {
            return;
        }
        let err = PeerError::Unauthorized {
            code: ErrorCode::Unauthorized,
            message: format!("the `token` function failed: {detail}"),
        };
        if self.renewable_token() {
            self.events.push_back(Event::Error(err));
            // The broker is not at fault: the reconnect dials it again.
            self.attempt_deadline = None;
            if let Some(delay) = self.session.on_close(self.rng.unit()) {
                self.reconnect_at = Some(now + delay.as_secs_f64() * 1000.0);
            }
        } else {
            self.refuse(err, now);
        }
    }

    /// No usable token, or no broker: the peer stays offline; `createPeer`
    /// rejects, or (later) an `error` event says why.
    fn refuse(&mut self, err: PeerError, now: Millis) {
        self.log(LogLevel::Error, || format!("offline: {err}"));
        let code = match &err {
            PeerError::Unauthorized { code, .. } => *code,
            _ => ErrorCode::Internal,
        };
        let events = self.session.refuse(code, err.to_string());
        // The registration-failed event carries the broker's text; report
        // this error instead.
        let events = events
            .into_iter()
            .filter(|e| !matches!(e, SessionEvent::RegisterFailed { .. }))
            .collect();
        self.action(Action::CloseBroker {
            code: 1000,
            reason: "registration refused".into(),
        });
        if !self.settle_ready(Err(err.clone())) {
            self.events.push_back(Event::Error(err));
        }
        self.on_session_events(events, now);
    }

    // ---- hub inputs --------------------------------------------------------

    /// The hub handed out `address` (and perhaps ICE servers).
    pub fn handle_hub_attached(&mut self, address: &str, ice: Option<Vec<IceServer>>) {
        if self.closed {
            return;
        }
        if let Err(e) = crate::protocol::ids::check_peer_id(address) {
            self.settle_ready(Err(PeerError::InvalidArgument(format!(
                "hub.attach() must resolve a valid address: {e}"
            ))));
            return;
        }
        self.id = Some(address.to_string());
        if let Some(ice) = ice {
            self.broker_ice = ice;
        }
        self.settle_ready(Ok(()));
        self.events.push_back(Event::Registered {
            id: address.to_string(),
            resumed: false,
            first: true,
            url: None,
        });
    }

    /// Attaching to the hub failed.
    pub fn handle_hub_failed(&mut self, detail: &str) {
        self.settle_ready(Err(PeerError::InvalidArgument(format!(
            "hub.attach() failed: {detail}"
        ))));
    }

    /// A signal that came through the hub.
    pub fn handle_hub_signal(&mut self, from: &str, data: &str, now: Millis) {
        if !self.closed {
            self.on_peer_signal(from.to_string(), data, now);
        }
    }

    /// The hub could not deliver a signal to `to`.
    pub fn handle_hub_undeliverable(&mut self, to: &str, reason: &str, now: Millis) {
        self.undeliverable(to, ErrorCode::UnknownPeer, reason, now);
    }

    // ---- requests ------------------------------------------------------------

    /// Sends a broker request; `pending` says what its reply resolves.
    pub(crate) fn request(
        &mut self,
        pending: Pending,
        message: ClientMessage,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        self.ensure_open()?;
        if self.config.signalling == Signalling::Hub {
            return Err(PeerError::InvalidArgument(
                "rooms, find and rendezvous keys need the broker: use createPeer, or a Node on a NetworkHub".into(),
            ));
        }
        let (rid, frame) = self.session.send(message, now).map_err(queue_error)?;
        let op = self.new_op();
        self.requests.insert(rid, (op, pending));
        if let Some(f) = frame {
            self.transmits.push_back(Transmit::Broker(f));
        }
        Ok(op)
    }

    /// Relays a peer signal through the broker.
    pub(crate) fn broker_signal(&mut self, to: &str, data: crate::protocol::json::Json) {
        let message = ClientMessage::Signal {
            rid: 0,
            to: to.to_string(),
            data,
        };
        let result = self.session.send(message, 0.0);
        match result {
            Ok((rid, frame)) => {
                self.session.settle(rid);
                if let Some(f) = frame {
                    self.transmits.push_back(Transmit::Broker(f));
                }
            }
            Err(e) => {
                // The connection cannot be made without its signals.
                let err = queue_error(e);
                if let Some(&c) = self.by_remote.get(to) {
                    self.pending_failures.push((c, err));
                }
            }
        }
    }

    fn on_session_events(&mut self, events: Vec<SessionEvent>, now: Millis) {
        for event in events {
            match event {
                SessionEvent::Registered {
                    id,
                    resumed,
                    ice_servers,
                    first,
                } => {
                    self.broker_ice = ice_servers;
                    self.id = Some(id.clone());
                    self.attempt_deadline = None;
                    self.unreached.clear();
                    self.settle_ready(Ok(()));
                    if !first && !resumed {
                        // The grace window ended while this peer was away:
                        // its rooms and keys are gone on the broker.
                        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
                        for r in rooms {
                            self.lose_room(&r);
                        }
                        self.opened_keys.clear();
                    }
                    let url = self.broker_url().map(str::to_string);
                    if let (Some(url), Some(token)) = (&url, self.session.resume_token()) {
                        self.broker_tokens.insert(url.clone(), token.to_string());
                    }
                    self.log(LogLevel::Info, || {
                        let how = if resumed { "resumed" } else { "registered" };
                        let at = url.as_deref().unwrap_or_default();
                        format!("{how} as \"{id}\" on the broker at {at}")
                    });
                    self.events.push_back(Event::Registered {
                        id,
                        resumed,
                        first,
                        url,
                    });
                    if !first {
                        self.retry_restarts(now);
                        // The broker ended every relay pair with the old
                        // socket: ask again.
                        self.relink_relays(now);
                    }
                }
                SessionEvent::ResumeRefused { code, message } => {
                    let url = self.broker_url().map(str::to_string);
                    let id = self.id.clone().unwrap_or_default();
                    let taken = code == ErrorCode::IdTaken;
                    self.log(LogLevel::Warn, || {
                        let next = if taken {
                            "asking again after the backoff"
                        } else {
                            "registering it afresh"
                        };
                        format!(
                            "the broker refused to give \"{id}\" back ({code}: {message}); {next}"
                        )
                    });
                    self.events.push_back(Event::ResumeRefused {
                        id,
                        code,
                        message,
                        url,
                    });
                    if taken {
                        self.action(Action::CloseBroker {
                            code: 1000,
                            reason: "id taken; asking again later".into(),
                        });
                        let generation = self.generation;
                        // The closed socket's own events are old news.
                        self.generation += 1;
                        self.broker_closed(generation, 1000, "id taken", None, now);
                    }
                }
                SessionEvent::RegisterFailed { code, message } => {
                    self.log(LogLevel::Warn, || {
                        format!("the broker refused the registration: {code} {message}")
                    });
                    self.action(Action::CloseBroker {
                        code: 1000,
                        reason: "registration refused".into(),
                    });
                    let err = PeerError::from_broker(code, message);
                    if !self.settle_ready(Err(err.clone())) {
                        self.events.push_back(Event::Error(err));
                    }
                }
                SessionEvent::Reply { rid, message } => self.on_reply(rid, message, now),
                SessionEvent::Push(msg) => self.on_push(msg, now),
                SessionEvent::TimedOut { rid } => {
                    let ms = self.config.request_timeout;
                    self.log(LogLevel::Warn, || {
                        format!("request #{rid} to the broker: no answer within {ms} ms")
                    });
                    if let Some((op, _)) = self.requests.remove(&rid) {
                        self.done(op, Err(PeerError::Timeout(self.config.request_timeout)));
                    }
                }
            }
        }
    }

    fn on_reply(&mut self, rid: Rid, message: ServerMessage, now: Millis) {
        let Some((op, pending)) = self.requests.remove(&rid) else {
            return;
        };
        if let (Pending::Relay(c), ServerMessage::Error { code, message, .. }) =
            (&pending, &message)
        {
            if let Some(remote) = self.conns.get(c).map(|x| x.remote.clone()) {
                self.on_relay_ended(&remote, *code, message, true, now);
            }
        }
        if let ServerMessage::Error { code, message, .. } = message {
            self.log(LogLevel::Warn, || {
                format!("the broker refused request #{rid}: {code} {message}")
            });
            self.done(op, Err(PeerError::from_broker(code, message)));
            return;
        }
        let result = match (pending, message) {
            (Pending::Find, ServerMessage::Found { online, .. }) => Ok(Reply::Found(online)),
            (Pending::Join(room), ServerMessage::Joined { members, state, .. }) => {
                self.rooms
                    .insert(room.clone(), Room::from_snapshot(members, state));
                Ok(Reply::Joined(room))
            }
            (Pending::Leave(room), _) => {
                self.lose_room(&room);
                Ok(Reply::Done)
            }
            (Pending::OpenKey(key), _) => {
                self.opened_keys.insert(key.clone(), ());
                Ok(Reply::KeyOpened(key))
            }
            (Pending::CloseKey(key), _) => {
                self.opened_keys.remove(&key);
                Ok(Reply::Done)
            }
            (Pending::JoinKey, ServerMessage::KeyJoined { opener, .. }) => {
                // Resolves once the connection to the opener is open.
                match self.conn_to(&opener, now) {
                    Ok(c) => {
                        self.wait_open(c, op);
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            (Pending::LookupHostname, ServerMessage::FoundHost { id, .. }) => {
                Ok(Reply::Address(id))
            }
            (Pending::Plain | Pending::Relay(_), _) => Ok(Reply::Done),
            (_, _) => Err(PeerError::Broker {
                code: ErrorCode::Internal,
                message: "the broker answered with a reply of another kind".into(),
            }),
        };
        self.done(op, result);
    }

    fn on_push(&mut self, msg: ServerMessage, now: Millis) {
        match msg {
            ServerMessage::RelayReady { id, rate } => self.on_relay_ready(&id, rate, now),
            ServerMessage::RelayClosed { id, code, message } => {
                self.on_relay_ended(&id, code, &message, false, now)
            }
            ServerMessage::Signal { from, data } => {
                self.on_peer_signal(from, data.as_str(), now);
            }
            // A signal that could not be delivered closes its connection;
            // one for a connection already gone (the remote left while it
            // was on its way) tells nobody anything.
            ServerMessage::Error {
                code,
                target: Some(target),
                ..
            } if matches!(
                code,
                ErrorCode::UnknownPeer
                    | ErrorCode::PeerGone
                    | ErrorCode::QueueFull
                    | ErrorCode::Unavailable
            ) =>
            {
                self.log(LogLevel::Info, || {
                    format!("the broker could not deliver to \"{target}\": {code}")
                });
                self.undeliverable(&target, code, "", now);
            }
            ServerMessage::Error { code, message, .. } => {
                self.log(LogLevel::Warn, || format!("broker error: {code} {message}"));
                self.events
                    .push_back(Event::Error(PeerError::Broker { code, message }));
            }
            ServerMessage::Joined {
                rid: None,
                room,
                members,
                state,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    *r = Room::from_snapshot(members, state);
                }
            }
            ServerMessage::PeerJoined { room, id } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    if !r.members.contains(&id) {
                        r.members.push(id.clone());
                    }
                    self.events.push_back(Event::PeerJoined { room, id });
                }
            }
            ServerMessage::PeerLeft { room, id } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.members.retain(|m| *m != id);
                    self.events.push_back(Event::PeerLeft { room, id });
                }
            }
            ServerMessage::Broadcast { room, from, data } if self.rooms.contains_key(&room) => {
                self.events.push_back(Event::Broadcast { room, from, data });
            }
            ServerMessage::StateSet {
                room,
                key,
                value,
                from,
                ttl_ms,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.state.insert(key.clone(), (value.clone(), from.clone()));
                    self.events.push_back(Event::StateSet {
                        room,
                        key,
                        value,
                        from,
                        ttl_ms,
                    });
                }
            }
            ServerMessage::StateRemoved {
                room, key, reason, ..
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.state.remove(&key);
                    self.events
                        .push_back(Event::StateRemoved { room, key, reason });
                }
            }
            ServerMessage::Joiner { key, id } if self.opened_keys.contains_key(&key) => {
                self.events.push_back(Event::Joiner { key, id });
            }
            ServerMessage::Unavailable { key, id, code } => {
                let opened = self.opened_keys.contains_key(&key);
                self.events.push_back(Event::KeyUnavailable {
                    key,
                    id,
                    code,
                    opened,
                });
            }
            ServerMessage::KeyClosed { key, code, reason }
                if self.opened_keys.contains_key(&key) =>
            {
                self.opened_keys.remove(&key);
                self.events
                    .push_back(Event::KeyClosed { key, code, reason });
            }
            _ => {}
        }
    }

    /// This peer is no longer in `room`.
    pub(crate) fn lose_room(&mut self, room: &str) {
        if self.rooms.remove(room).is_some() {
            self.events.push_back(Event::RoomClosed {
                room: room.to_string(),
            });
        }
    }

    /// Checks the broker link now: a ping, unless one is out or the link
    /// is not up. No answer within `keepAliveTimeout` ends the link.
    pub(crate) fn probe_broker(&mut self, now: Millis) {
        if self.broker_probe.is_some()
            || self.session.link() != Link::Up
            || self.config.broker_keep_alive == 0
        {
            return;
        }
        if let Ok((rid, frame)) = self.session.send(ClientMessage::Ping { rid: 0 }, now) {
            // The answer is watched here, not as a request.
            self.session.settle(rid);
            if let Some(f) = frame {
                self.transmits.push_back(Transmit::Broker(f));
            }
            self.broker_probe = Some(now + self.config.keep_alive_timeout as f64);
        }
    }

    /// The probe went unanswered: the socket is dead though it looks open
    /// (a half-open TCP connection). It is dropped and replaced; the
    /// broker hands the id over to the new one with the resume token.
    fn broker_link_dead(&mut self, now: Millis) {
        self.broker_probe = None;
        let ms = (now - self.broker_heard) as u64;
        self.action(Action::CloseBroker {
            code: 4000,
            reason: "no answer from the broker".into(),
        });
        let generation = self.generation;
        // The dead socket's own close event, whenever it comes, is old news.
        self.generation += 1;
        let reason = format!("nothing heard from the broker for {ms} ms");
        self.broker_closed(generation, 1006, &reason, None, now);
    }

    pub(crate) fn broker_timeouts(&mut self, now: Millis) {
        if self.broker_probe.is_some_and(|t| t <= now) {
            self.broker_link_dead(now);
        } else if self.config.broker_keep_alive > 0
            && self.session.link() == Link::Up
            && now - self.broker_heard >= self.config.broker_keep_alive as f64
        {
            self.probe_broker(now);
        }
        if self.attempt_deadline.is_some_and(|t| t <= now) {
            self.attempt_timed_out(now);
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            if self.session.link() == Link::Down {
                self.dial(now);
            }
        }
        if self.ready_deadline.is_some_and(|t| t <= now) {
            self.ready_deadline = None;
            let ms = self.config.connect_timeout;
            let err = match self.config.signalling {
                Signalling::Hub => PeerError::Timeout(ms),
                Signalling::Broker { .. } => {
                    let url = self.broker_url().unwrap_or_default().to_string();
                    self.unreached
                        .push((url, format!("no registration within {ms} ms")));
                    self.unreachable_error()
                }
            };
            self.settle_ready(Err(err));
        }
        let events = self.session.poll_timeouts(now);
        self.on_session_events(events, now);
        for f in self.session.poll_paced(now) {
            self.transmits.push_back(Transmit::Broker(f));
        }
    }

    pub(crate) fn broker_deadline(&self) -> Option<Millis> {
        let keep_alive = (self.config.broker_keep_alive > 0
            && self.broker_probe.is_none()
            && self.session.link() == Link::Up)
            .then_some(self.broker_heard + self.config.broker_keep_alive as f64);
        [
            self.reconnect_at,
            self.attempt_deadline,
            self.ready_deadline,
            self.session.next_deadline(),
            self.broker_probe,
            keep_alive,
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)
    }
}

pub(crate) fn queue_error(e: QueueError) -> PeerError {
    match e {
        QueueError::Full(_) => PeerError::QueueFull(e.to_string()),
        QueueError::Closed => PeerError::Closed("the peer".into()),
        QueueError::Failed => PeerError::Closed(format!("the peer ({e})")),
        QueueError::TooBig { size, max } => PeerError::MessageTooLarge {
            size,
            max,
            hint: " for one message to the broker (a broadcast, a room value, a signal); the broker's --max-frame-bytes sets it",
        },
    }
}
