//! `createPeer` and `Peer`: one id on the broker, and the table of
//! connections to other ids.
//!
//! A driver task owns the broker link: it feeds socket events to the
//! `core::broker::BrokerSession`, reconnects with backoff (re-registering the
//! same id with its resume token), resolves request promises, and routes what
//! the broker pushes — signals to connections (creating incoming ones), room
//! events to `Room`s, rendezvous events to `Rendezvous` handles.

use std::cell::Cell;

use super::cell::StateCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use super::connection::{ConnShared, Connection};
use super::errors::PeerError;
use super::events::Emitter;
use super::node::{HubLink, Listener};
use super::options::{
    PEER_OPTION_TYPES, PeerOptions, RawPeerOptions, TokenSource, parse_options, token_source,
};
use super::room::{Rendezvous, RendezvousShared, Room, RoomShared};
use super::stream::{Role, StreamShared};
use crate::core::broker::{BrokerSession, Link, QueueError, SessionConfig, SessionEvent};
use crate::protocol::frames::ChannelLabel;
use crate::protocol::messages::Rid;
use crate::protocol::{
    ClientMessage, CloseCode, ErrorCode, IceServer, ServerMessage, frames::PeerSignal, ids,
};
use crate::web::page::PageHide;
use crate::web::socket::{BrokerSocket, SocketEvent};
use crate::web::{now, random};

pub(crate) const PEER_EVENTS: &[&str] = &[
    "register",
    "connection",
    "message",
    "error",
    "unavailable",
    "broker",
];

pub(crate) enum PeerInput {
    Socket(u64, SocketEvent),
    Reconnect,
    Tick,
    /// A signal that came through a hub: `(from, JSON text)`.
    HubSignal(String, String),
    /// The hub could not deliver to this address.
    HubUndeliverable(String, String),
    /// The page is being hidden or unloaded: say goodbye.
    PageHide,
}

/// Whether the peer has its id yet.
enum Ready {
    Pending(Vec<oneshot::Sender<Result<(), PeerError>>>),
    Done(Result<(), PeerError>),
}

pub(crate) struct PeerShared {
    pub options: PeerOptions,
    pub emitter: Emitter,
    session: StateCell<BrokerSession>,
    socket: StateCell<Option<BrokerSocket>>,
    generation: Cell<u64>,
    inputs: mpsc::UnboundedSender<PeerInput>,
    waiters: StateCell<HashMap<Rid, oneshot::Sender<Result<ServerMessage, PeerError>>>>,
    conns: StateCell<HashMap<String, Rc<ConnShared>>>,
    rooms: StateCell<HashMap<String, Rc<RoomShared>>>,
    keys: StateCell<HashMap<String, Rc<RendezvousShared>>>,
    ice: StateCell<Vec<IceServer>>,
    closed: Cell<bool>,
    ready: StateCell<Ready>,
    pub(crate) hub: StateCell<Option<Rc<HubLink>>>,
    pub(crate) listeners: StateCell<HashMap<u16, Listener>>,
    reconnect: StateCell<Option<gloo_timers::callback::Timeout>>,
    tick: StateCell<Option<gloo_timers::callback::Interval>>,
    /// Closes the peer when the page goes away (removed on `close()`).
    pagehide: StateCell<Option<PageHide>>,
}

impl PeerShared {
    pub fn id(&self) -> Option<String> {
        let hub = self.hub.borrow().clone();
        if let Some(hub) = hub {
            return hub.address();
        }
        self.session.borrow().id().map(str::to_string)
    }

    /// Settles readiness; `false` if it was already settled.
    pub(crate) fn settle_ready(&self, result: Result<(), PeerError>) -> bool {
        let mut ready = self.ready.borrow_mut();
        match std::mem::replace(&mut *ready, Ready::Done(result.clone())) {
            Ready::Pending(waiters) => {
                drop(ready);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
                true
            }
            done @ Ready::Done(_) => {
                *ready = done;
                false
            }
        }
    }

    /// Resolves once the id (or hub address) is known.
    pub(crate) async fn wait_ready(&self) -> Result<(), PeerError> {
        let rx = match &mut *self.ready.borrow_mut() {
            Ready::Done(r) => return r.clone(),
            Ready::Pending(waiters) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                rx
            }
        };
        rx.await
            .unwrap_or_else(|_| Err(PeerError::Closed("the peer".into())))
    }

    pub(crate) fn inputs(&self) -> mpsc::UnboundedSender<PeerInput> {
        self.inputs.clone()
    }

    pub(crate) fn set_ice_servers(&self, servers: Vec<IceServer>) {
        *self.ice.borrow_mut() = servers;
    }

    pub(crate) fn connection_ids(&self) -> Array {
        self.conns
            .borrow()
            .keys()
            .map(|k| JsValue::from_str(k))
            .collect()
    }

    pub(crate) fn has_connection(&self, id: &str) -> bool {
        self.conns.borrow().contains_key(id)
    }

    pub fn ice_servers(&self) -> Vec<IceServer> {
        self.options
            .ice_servers
            .clone()
            .unwrap_or_else(|| self.ice.borrow().clone())
    }

    fn ensure_open(&self) -> Result<(), PeerError> {
        if self.closed.get() {
            Err(PeerError::Closed("the peer".into()))
        } else {
            Ok(())
        }
    }

    fn open_socket(self: &Rc<Self>) {
        if self.closed.get() {
            return;
        }
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        match self.options.token.clone() {
            None => self.connect_socket(generation, None),
            Some(TokenSource::Fixed(token)) => self.connect_socket(generation, Some(token)),
            Some(TokenSource::Provider(f)) => {
                // A fresh token for every connect: the app's server can mint
                // short-lived ones.
                let weak = Rc::downgrade(self);
                spawn_local(async move {
                    let token = ask_for_token(&f).await;
                    let Some(p) = weak.upgrade() else { return };
                    if p.closed.get() || p.generation.get() != generation {
                        return;
                    }
                    match token {
                        Ok(token) => p.connect_socket(generation, Some(token)),
                        Err(err) if p.token_renewable() => {
                            p.emit_error(err);
                            let delay = p.session.borrow_mut().on_close(random());
                            if let Some(delay) = delay {
                                p.schedule_reconnect(delay);
                            }
                        }
                        Err(err) => p.fail_token(err),
                    }
                });
            }
        }
    }

    /// Whether a refused token can be replaced: a `token` function is asked
    /// again at the next reconnect. Before the first registration the
    /// failure is final, so that `createPeer` rejects instead of retrying.
    fn token_renewable(&self) -> bool {
        matches!(self.options.token, Some(TokenSource::Provider(_)))
            && self.session.borrow().registered_once()
    }

    /// No usable token and no way to get one: the peer stays offline;
    /// `createPeer` rejects, or (later) an `error` event says why.
    fn fail_token(self: &Rc<Self>, err: PeerError) {
        let events = self
            .session
            .borrow_mut()
            .refuse(ErrorCode::Unauthorized, err.to_string());
        self.on_session_events(events);
    }

    fn connect_socket(self: &Rc<Self>, generation: u64, token: Option<String>) {
        let url = match &token {
            Some(token) => with_token(&self.options.broker, token),
            None => self.options.broker.clone(),
        };
        let (tx, mut rx) = mpsc::unbounded::<(u64, SocketEvent)>();
        let inputs = self.inputs.clone();
        spawn_local(async move {
            while let Some((g, e)) = rx.next().await {
                if inputs.unbounded_send(PeerInput::Socket(g, e)).is_err() {
                    return;
                }
            }
        });
        match BrokerSocket::open(&url, generation, tx) {
            Ok(socket) => *self.socket.borrow_mut() = Some(socket),
            Err(detail) => {
                // A malformed URL never gets better.
                let err = PeerError::BrokerUnreachable {
                    url: self.options.broker.clone(),
                    detail,
                };
                self.settle_ready(Err(err));
            }
        }
    }

    fn send_frame(&self, frame: &str) {
        // Sending never runs JavaScript listeners synchronously.
        let socket = self.socket.borrow();
        if let Some(s) = socket.as_ref() {
            s.send(frame);
        }
    }

    /// Sends a request and waits for its reply (an `error` reply rejects).
    pub async fn call(
        &self,
        make: impl FnOnce(Rid) -> ClientMessage,
    ) -> Result<ServerMessage, PeerError> {
        self.ensure_open()?;
        if self.hub.borrow().is_some() {
            return Err(PeerError::InvalidArgument(
                "rooms, find and rendezvous keys need the broker: use createPeer, or a Node on a NetworkHub".into(),
            ));
        }
        let (rid, frame) = self
            .session
            .borrow_mut()
            .request(make, now())
            .map_err(queue_error)?;
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(rid, tx);
        if let Some(f) = frame {
            self.send_frame(&f);
        }
        match rx.await {
            Ok(Ok(ServerMessage::Error { code, message, .. })) => {
                Err(PeerError::from_broker(code, message))
            }
            Ok(other) => other,
            Err(_) => Err(PeerError::Closed("the peer".into())),
        }
    }

    /// Relays a signal; a failure to deliver comes back as a push error.
    pub fn send_signal(&self, to: &str, data: serde_json::Value) -> Result<(), PeerError> {
        self.ensure_open()?;
        let hub = self.hub.borrow().clone();
        if let Some(hub) = hub {
            hub.send(to, &data.to_string(), self.inputs.clone());
            return Ok(());
        }
        let to = to.to_string();
        let mut session = self.session.borrow_mut();
        let (rid, frame) = session
            .request(|rid| ClientMessage::Signal { rid, to, data }, now())
            .map_err(queue_error)?;
        session.settle(rid);
        drop(session);
        if let Some(f) = frame {
            self.send_frame(&f);
        }
        Ok(())
    }

    /// The connection to `remote`, created (as ours) if there is none.
    pub(crate) fn connection(self: &Rc<Self>, remote: &str) -> Result<Rc<ConnShared>, PeerError> {
        self.ensure_open()?;
        ids::check_peer_id(remote).map_err(|e| PeerError::InvalidId(e.to_string()))?;
        if self.id().as_deref() == Some(remote) {
            return Err(PeerError::InvalidArgument(
                "a peer cannot connect to itself".into(),
            ));
        }
        let c = self.conns.borrow().get(remote).cloned();
        if let Some(c) = c {
            c.initiated.set(true);
            return Ok(c);
        }
        let conn = ConnShared::start(self, remote, true)?;
        self.conns
            .borrow_mut()
            .insert(remote.to_string(), conn.clone());
        Ok(conn)
    }

    pub fn connection_opened(&self, conn: &Rc<ConnShared>) {
        if !conn.initiated.get() {
            self.emitter.emit("connection", &Connection::handle(conn));
        }
    }

    pub fn forget_connection(&self, conn: &ConnShared) {
        let mut conns = self.conns.borrow_mut();
        if conns
            .get(&conn.remote)
            .is_some_and(|c| std::ptr::eq(Rc::as_ptr(c), conn))
        {
            conns.remove(&conn.remote);
        }
    }

    pub fn message_from(&self, from: &str, message: &JsValue) {
        if self.emitter.has("message") {
            let envelope = Object::new();
            let _ = Reflect::set(&envelope, &"from".into(), &from.into());
            let _ = Reflect::set(&envelope, &"message".into(), message);
            self.emitter.emit("message", &envelope);
        }
    }

    fn emit_error(&self, err: PeerError) {
        self.emitter.emit("error", &err.to_js());
    }

    fn on_signal(self: &Rc<Self>, from: String, data: serde_json::Value) {
        let signal: PeerSignal = match serde_json::from_value(data) {
            Ok(s) => s,
            Err(e) => {
                return self.emit_error(PeerError::Protocol {
                    id: from,
                    detail: format!("unreadable signal: {e}"),
                });
            }
        };
        let is_offer = matches!(&signal.body, crate::protocol::frames::SignalBody::Description { sdp_type, .. } if sdp_type == "offer");
        let existing = self.conns.borrow().get(&from).cloned();
        let conn = match existing {
            Some(c) => match c.remote_session.get() {
                None => {
                    c.remote_session.set(Some(signal.session));
                    c
                }
                Some(s) if s == signal.session => c,
                // A new session from the same id: the remote page reloaded
                // or reconnected. Replace the old link on its offer.
                Some(_) if is_offer => {
                    c.close("the remote peer reconnected", None, false);
                    match self.incoming(&from, signal.session) {
                        Some(c) => c,
                        None => return,
                    }
                }
                Some(_) => return,
            },
            None if is_offer => match self.incoming(&from, signal.session) {
                Some(c) => c,
                None => return,
            },
            // A candidate, answer or bye for a link we no longer have.
            None => return,
        };
        conn.deliver_signal(signal);
    }

    fn incoming(self: &Rc<Self>, from: &str, session: u64) -> Option<Rc<ConnShared>> {
        match ConnShared::start(self, from, false) {
            Ok(c) => {
                c.remote_session.set(Some(session));
                self.conns.borrow_mut().insert(from.to_string(), c.clone());
                Some(c)
            }
            Err(e) => {
                self.emit_error(e);
                None
            }
        }
    }

    fn on_push(self: &Rc<Self>, msg: ServerMessage) {
        match msg {
            ServerMessage::Signal { from, data } => self.on_signal(from, data),
            ServerMessage::Error {
                code,
                message,
                target: Some(target),
                ..
            } => {
                // A signal that could not be delivered: the connection to
                // that id cannot be made.
                let conn = self.conns.borrow().get(&target).cloned();
                match conn {
                    Some(c)
                        if matches!(
                            code,
                            ErrorCode::UnknownPeer | ErrorCode::PeerGone | ErrorCode::QueueFull
                        ) =>
                    {
                        let err = PeerError::PeerUnavailable { id: target, code };
                        c.close(&err.to_string(), Some(err), false);
                    }
                    _ => self.emit_error(PeerError::Broker { code, message }),
                }
            }
            ServerMessage::Error { code, message, .. } => {
                self.emit_error(PeerError::Broker { code, message })
            }
            ServerMessage::Joined {
                rid: None,
                room,
                members,
                state,
            } => {
                let r = self.rooms.borrow().get(&room).cloned();
                if let Some(r) = r {
                    r.resync(members, state);
                }
            }
            ServerMessage::PeerJoined { room, id } => self.room(&room, |r| r.peer_joined(id)),
            ServerMessage::PeerLeft { room, id } => self.room(&room, |r| r.peer_left(&id)),
            ServerMessage::Broadcast { room, from, data } => {
                self.room(&room, |r| r.broadcast_received(&from, &data))
            }
            ServerMessage::StateSet {
                room,
                key,
                value,
                from,
                ttl_ms,
            } => self.room(&room, |r| r.state_set(key, value, from, ttl_ms)),
            ServerMessage::StateRemoved {
                room, key, reason, ..
            } => self.room(&room, |r| r.state_removed(&key, reason)),
            ServerMessage::Joiner { key, id } => {
                let k = self.keys.borrow().get(&key).cloned();
                if let Some(k) = k {
                    k.emitter.emit("joiner", &id.into());
                }
            }
            ServerMessage::Unavailable { key, id, code } => {
                let handle = self.keys.borrow().get(&key).cloned();
                match handle {
                    Some(k) => k.emitter.emit("unavailable", &id.into()),
                    None => {
                        let info = Object::new();
                        let _ = Reflect::set(&info, &"key".into(), &key.into());
                        let _ = Reflect::set(&info, &"id".into(), &id.into());
                        if let Some(code) = code {
                            let _ = Reflect::set(&info, &"code".into(), &code.into());
                        }
                        self.emitter.emit("unavailable", &info);
                    }
                }
            }
            ServerMessage::KeyClosed { key, code, reason } => {
                let handle = self.keys.borrow_mut().remove(&key);
                if let Some(k) = handle {
                    let info = Object::new();
                    let _ = Reflect::set(&info, &"code".into(), &code.into());
                    let _ = Reflect::set(&info, &"reason".into(), &reason.into());
                    k.emitter.emit("closed", &info);
                    k.emitter.clear();
                }
            }
            _ => {}
        }
    }

    pub fn drop_room(&self, room: &str) {
        self.rooms.borrow_mut().remove(room);
    }

    pub fn drop_key(&self, key: &str) {
        self.keys.borrow_mut().remove(key);
    }

    fn room(&self, room: &str, f: impl FnOnce(&RoomShared)) {
        let r = self.rooms.borrow().get(room).cloned();
        if let Some(r) = r {
            f(&r);
        }
    }

    fn on_session_events(self: &Rc<Self>, events: Vec<SessionEvent>) {
        for event in events {
            match event {
                SessionEvent::Registered {
                    id,
                    resumed,
                    ice_servers,
                    first,
                } => {
                    *self.ice.borrow_mut() = ice_servers;
                    self.settle_ready(Ok(()));
                    if !first && !resumed {
                        // The grace window ended while we were away: rooms
                        // and keys are gone on the broker; tell their handles.
                        let drained: Vec<_> =
                            self.rooms.borrow_mut().drain().map(|(_, r)| r).collect();
                        for r in drained {
                            r.lost();
                        }
                        self.keys.borrow_mut().clear();
                    }
                    let info = Object::new();
                    let _ = Reflect::set(&info, &"id".into(), &id.as_str().into());
                    let _ = Reflect::set(&info, &"resumed".into(), &resumed.into());
                    let _ = Reflect::set(&info, &"reconnect".into(), &(!first).into());
                    let status = status("registered", info);
                    if first {
                        // `createPeer` has not resolved yet: keep them for
                        // the listeners attached after it does.
                        self.emitter.emit_or_keep("register", id.into());
                        self.emitter.emit_or_keep("broker", status);
                    } else {
                        self.emitter.emit("register", &id.into());
                        self.emitter.emit("broker", &status);
                    }
                }
                SessionEvent::RegisterFailed { code, message } => {
                    // The session will not retry: drop the unregistered socket.
                    let s = self.socket.borrow_mut().take();
                    if let Some(s) = s {
                        s.close(1000, "registration refused");
                    }
                    let err = PeerError::from_broker(code, message);
                    if !self.settle_ready(Err(err.clone())) {
                        self.emit_error(err);
                    }
                }
                SessionEvent::Reply { rid, message } => {
                    let tx = self.waiters.borrow_mut().remove(&rid);
                    if let Some(tx) = tx {
                        let _ = tx.send(Ok(message));
                    }
                }
                SessionEvent::Push(msg) => self.on_push(msg),
                SessionEvent::TimedOut { rid } => {
                    let tx = self.waiters.borrow_mut().remove(&rid);
                    if let Some(tx) = tx {
                        let _ = tx.send(Err(PeerError::Timeout(self.options.request_timeout)));
                    }
                }
            }
        }
    }

    fn on_input(self: &Rc<Self>, input: PeerInput) {
        match input {
            PeerInput::Socket(g, _) if g != self.generation.get() => {}
            PeerInput::Socket(_, SocketEvent::Open) => {
                let frame = self.session.borrow_mut().on_open();
                self.send_frame(&frame);
            }
            PeerInput::Socket(_, SocketEvent::Text(text)) => {
                let (events, frames) = self.session.borrow_mut().on_message(&text);
                for f in frames {
                    self.send_frame(&f);
                }
                self.on_session_events(events);
            }
            PeerInput::Socket(_, SocketEvent::Closed { code, reason }) => {
                self.socket.borrow_mut().take();
                if code == CloseCode::Unauthorized.code() {
                    let err = PeerError::Unauthorized {
                        code: ErrorCode::Unauthorized,
                        message: format!(
                            "the broker refused the access token ({reason}); pass a valid one with the `token` option"
                        ),
                    };
                    match self.token_renewable() {
                        true => self.emit_error(err),
                        false => self.fail_token(err),
                    }
                }
                let registered_once = self.session.borrow().registered_once();
                if !registered_once && self.hub.borrow().is_none() {
                    // Never registered: the broker is down, the URL is wrong,
                    // or something refused the upgrade. Retrying until
                    // connectTimeout only delays the same answer, so
                    // `createPeer` rejects now (reconnects after a first
                    // registration keep their backoff).
                    let detail = match reason.as_str() {
                        "" => format!("the connection closed before registering (code {code})"),
                        _ => format!(
                            "the connection closed before registering (code {code}: {reason})"
                        ),
                    };
                    self.settle_ready(Err(PeerError::BrokerUnreachable {
                        url: self.options.broker.clone(),
                        detail,
                    }));
                }
                let delay = self.session.borrow_mut().on_close(random());
                let info = Object::new();
                let _ = Reflect::set(&info, &"code".into(), &code.into());
                let _ = Reflect::set(&info, &"reason".into(), &reason.into());
                self.emitter.emit("broker", &status("disconnected", info));
                if let Some(delay) = delay {
                    self.schedule_reconnect(delay);
                }
            }
            PeerInput::Reconnect => {
                if self.session.borrow().link() == Link::Down {
                    self.open_socket();
                }
            }
            PeerInput::HubSignal(from, text) => match serde_json::from_str(&text) {
                Ok(data) => self.on_signal(from, data),
                Err(e) => self.emit_error(PeerError::Protocol {
                    id: from,
                    detail: format!("unreadable signal: {e}"),
                }),
            },
            PeerInput::HubUndeliverable(to, reason) => {
                let conn = self.conns.borrow().get(&to).cloned();
                if let Some(c) = conn {
                    let err = PeerError::PeerUnavailable {
                        id: to,
                        code: ErrorCode::UnknownPeer,
                    };
                    c.close(&format!("{err} ({reason})"), Some(err), false);
                }
            }
            PeerInput::Tick => {
                let events = self.session.borrow_mut().poll_timeouts(now());
                self.on_session_events(events);
            }
            // Run from the driver, a microtask after the event, so that the
            // listener is not removed while it runs. Closing sends the close
            // frame on every open connection and closes the broker socket
            // with 1000, so the broker releases the id and rooms at once and
            // remotes see `close` now rather than after the keep-alive.
            PeerInput::PageHide => self.close(),
        }
    }

    fn schedule_reconnect(&self, delay: Duration) {
        let inputs = self.inputs.clone();
        let timer = gloo_timers::callback::Timeout::new(
            delay.as_millis().min(u32::MAX as u128) as u32,
            move || {
                let _ = inputs.unbounded_send(PeerInput::Reconnect);
            },
        );
        *self.reconnect.borrow_mut() = Some(timer);
    }

    /// Closes everything: connections, rooms, the broker socket, timers.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let conns: Vec<Rc<ConnShared>> = self.conns.borrow_mut().drain().map(|(_, c)| c).collect();
        for c in conns {
            c.close("the peer closed", None, true);
        }
        self.session.borrow_mut().close();
        let drained: Vec<_> = self.waiters.borrow_mut().drain().collect();
        for (_, tx) in drained {
            let _ = tx.send(Err(PeerError::Closed("the peer".into())));
        }
        let drained: Vec<_> = self.rooms.borrow_mut().drain().map(|(_, r)| r).collect();
        for r in drained {
            r.lost();
        }
        self.keys.borrow_mut().clear();
        let s = self.socket.borrow_mut().take();
        if let Some(s) = s {
            s.close(1000, "peer closed");
        }
        self.reconnect.borrow_mut().take();
        self.tick.borrow_mut().take();
        self.pagehide.borrow_mut().take();
        // Ends the driver task even while JS still holds this peer.
        self.inputs.close_channel();
        self.settle_ready(Err(PeerError::Closed("the peer".into())));
        self.listeners.borrow_mut().clear();
        let hub = self.hub.borrow_mut().take();
        if let Some(hub) = hub {
            hub.detach();
        }
        self.emitter.clear();
    }
}

fn status(state: &str, info: Object) -> JsValue {
    let _ = Reflect::set(&info, &"state".into(), &state.into());
    info.into()
}

fn queue_error(e: QueueError) -> PeerError {
    match e {
        QueueError::Full(_) => PeerError::QueueFull(e.to_string()),
        QueueError::Closed => PeerError::Closed("the peer".into()),
        QueueError::Failed => PeerError::Closed(format!("the peer ({e})")),
    }
}

async fn drive(peer: Weak<PeerShared>, mut inputs: mpsc::UnboundedReceiver<PeerInput>) {
    while let Some(input) = inputs.next().await {
        let Some(p) = peer.upgrade() else { return };
        if p.closed.get() {
            return;
        }
        p.on_input(input);
    }
}

/// Creates a peer, registers it with the broker and resolves once the id is
/// registered.
///
/// `createPeer('alice', { broker })`, `createPeer({ broker })` (the broker
/// assigns an id) or `createPeer({ broker, id })`.
#[wasm_bindgen(js_name = createPeer, unchecked_return_type = "Promise<Peer>")]
pub fn create_peer(
    #[wasm_bindgen(unchecked_param_type = "string | PeerOptions")] id_or_options: JsValue,
    options: Option<super::PeerOptionsArg>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let peer = create(
            id_or_options,
            options.map(Into::into).unwrap_or(JsValue::UNDEFINED),
        )
        .await?;
        Ok(JsValue::from(peer))
    })
}

async fn create(id_or_options: JsValue, options_js: JsValue) -> Result<Peer, PeerError> {
    let (id, raw) = match id_or_options.as_string() {
        Some(id) => (
            Some(id),
            parse_options::<RawPeerOptions>(&options_js, "options", PEER_OPTION_TYPES)?,
        ),
        None => (
            None,
            parse_options::<RawPeerOptions>(&id_or_options, "options", PEER_OPTION_TYPES)?,
        ),
    };
    let raw = raw.ok_or_else(|| PeerError::InvalidArgument("createPeer needs options with a broker URL: createPeer('alice', { broker: 'ws://localhost:8080' })".into()))?;
    let id = id.or_else(|| raw.id.clone());
    if let Some(id) = &id {
        ids::check_peer_id(id).map_err(|e| PeerError::InvalidId(e.to_string()))?;
    }
    let mut options = PeerOptions::from_raw(raw)?;
    options.token = token_source(if id_or_options.is_string() {
        &options_js
    } else {
        &id_or_options
    })?;
    let shared = PeerShared::build(id, options, None);
    // The first registration, bounded by connectTimeout: a broker that is
    // down or unreachable rejects instead of hanging.
    match shared.ready_within().await {
        Ok(()) => Ok(Peer { inner: shared }),
        Err(e) => {
            shared.close();
            Err(e)
        }
    }
}

impl PeerShared {
    /// Creates the peer and starts registering: with the broker, or through
    /// `hub` (a JS object implementing the Hub interface).
    pub(crate) fn build(
        id: Option<String>,
        options: PeerOptions,
        hub: Option<JsValue>,
    ) -> Rc<Self> {
        let session = BrokerSession::new(
            id,
            SessionConfig {
                request_timeout: Duration::from_millis(options.request_timeout),
                ..SessionConfig::default()
            },
        );
        let (inputs, inputs_rx) = mpsc::unbounded::<PeerInput>();
        let t = inputs.clone();
        let tick = gloo_timers::callback::Interval::new(500, move || {
            let _ = t.unbounded_send(PeerInput::Tick);
        });
        let shared = Rc::new(PeerShared {
            options,
            emitter: Emitter::new(PEER_EVENTS),
            session: StateCell::new(session),
            socket: StateCell::new(None),
            generation: Cell::new(0),
            inputs,
            waiters: StateCell::new(HashMap::new()),
            conns: StateCell::new(HashMap::new()),
            rooms: StateCell::new(HashMap::new()),
            keys: StateCell::new(HashMap::new()),
            ice: StateCell::new(Vec::new()),
            closed: Cell::new(false),
            ready: StateCell::new(Ready::Pending(Vec::new())),
            hub: StateCell::new(None),
            listeners: StateCell::new(HashMap::new()),
            reconnect: StateCell::new(None),
            tick: StateCell::new(Some(tick)),
            pagehide: StateCell::new(None),
        });
        *shared.pagehide.borrow_mut() = PageHide::listen(shared.inputs(), || PeerInput::PageHide);
        spawn_local(drive(Rc::downgrade(&shared), inputs_rx));
        match hub {
            Some(hub) => HubLink::attach(&shared, hub),
            None => shared.open_socket(),
        }
        shared
    }

    /// Waits for the id, at most `connectTimeout`.
    pub(crate) async fn ready_within(&self) -> Result<(), PeerError> {
        let ms = self.options.connect_timeout;
        let timeout = gloo_timers::future::TimeoutFuture::new(ms.min(u32::MAX as u64) as u32);
        let ready = std::pin::pin!(self.wait_ready());
        match futures_util::future::select(ready, timeout).await {
            futures_util::future::Either::Left((r, _)) => r,
            futures_util::future::Either::Right(_) => {
                let via_hub = self.hub.borrow().is_some();
                Err(match via_hub {
                    true => PeerError::Timeout(ms),
                    false => PeerError::BrokerUnreachable {
                        url: self.options.broker.clone(),
                        detail: format!("no registration within {ms} ms"),
                    },
                })
            }
        }
    }

    /// The remote opened a socket channel to `port`.
    pub(crate) fn port_channel(
        self: &Rc<Self>,
        conn: &Rc<ConnShared>,
        dc: web_sys::RtcDataChannel,
        port: u16,
    ) {
        let settings = conn.stream_settings(None);
        let listener = self.listeners.borrow().get(&port).cloned();
        match listener {
            Some(l) => {
                let stream = StreamShared::start(
                    conn,
                    dc,
                    ChannelLabel::Port(port),
                    Role::Listener,
                    settings,
                );
                l.accept(stream);
            }
            None => {
                StreamShared::start(
                    conn,
                    dc,
                    ChannelLabel::Port(port),
                    Role::Refuser(format!("port {port} is closed")),
                    settings,
                );
            }
        }
    }
}

/// A peer: an id on the broker and connections to other peers.
#[wasm_bindgen]
pub struct Peer {
    inner: Rc<PeerShared>,
}

#[wasm_bindgen]
impl Peer {
    /// This peer's id (the one chosen, or the one the broker assigned).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.id().unwrap_or_default()
    }

    /// Whether `close()` was called.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Ids of the peers this peer has a connection (open or opening) with.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn connections(&self) -> Array {
        self.inner.connection_ids()
    }

    /// Connects to `id`, or returns the existing connection. Resolves when
    /// the data channel is open; rejects at once with `PeerUnavailableError`
    /// if `id` is not online.
    #[wasm_bindgen(unchecked_return_type = "Promise<Connection>")]
    pub fn connect(&self, id: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let conn = inner.connection(&id)?;
            conn.opened().await?;
            Ok(Connection::handle(&conn))
        })
    }

    /// Sends `message` to `id`, connecting first if needed.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Sendable")] message: JsValue,
        options: Option<super::SendOptionsArg>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let progress = super::outbox::progress_option(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let conn = inner.connection(&id)?;
            conn.opened().await?;
            conn.send(message, progress).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Closes the connection to `id`, if there is one.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn disconnect(&self, id: String) -> js_sys::Promise {
        let conn = self.inner.conns.borrow().get(&id).cloned();
        if let Some(c) = conn {
            c.close("disconnected by the local peer", None, true);
        }
        js_sys::Promise::resolve(&JsValue::UNDEFINED)
    }

    /// Is `id` online (registered, or inside its reconnect grace window)?
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn find(&self, id: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            match inner.call(|rid| ClientMessage::Find { rid, id }).await? {
                ServerMessage::Found { online, .. } => Ok(online.into()),
                other => Err(unexpected(other)),
            }
        })
    }

    /// Joins a room: its members, events, broadcast and shared state.
    #[wasm_bindgen(unchecked_return_type = "Promise<Room>")]
    pub fn join(&self, room: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let name = room.clone();
            match inner.call(|rid| ClientMessage::Join { rid, room }).await? {
                ServerMessage::Joined { members, state, .. } => {
                    let shared =
                        RoomShared::new(Rc::downgrade(&inner), name.clone(), members, state);
                    inner.rooms.borrow_mut().insert(name, shared.clone());
                    Ok(Room::from_shared(shared).into())
                }
                other => Err(unexpected(other)),
            }
        })
    }

    /// Opens a rendezvous key: others `joinKey(key)` to reach this peer.
    #[wasm_bindgen(js_name = openKey, unchecked_return_type = "Promise<Rendezvous>")]
    pub fn open_key(&self, key: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let k = key.clone();
            inner
                .call(|rid| ClientMessage::OpenKey { rid, key: k })
                .await?;
            let shared = RendezvousShared::new(Rc::downgrade(&inner), key.clone());
            inner.keys.borrow_mut().insert(key, shared.clone());
            Ok(Rendezvous::from_shared(shared).into())
        })
    }

    /// Joins a rendezvous key and connects to the peer that opened it.
    #[wasm_bindgen(js_name = joinKey, unchecked_return_type = "Promise<Connection>")]
    pub fn join_key(&self, key: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let opener = match inner
                .call(|rid| ClientMessage::JoinKey { rid, key })
                .await?
            {
                ServerMessage::KeyJoined { opener, .. } => opener,
                other => return Err(unexpected(other)),
            };
            let conn = inner.connection(&opener)?;
            conn.opened().await?;
            Ok(Connection::handle(&conn))
        })
    }

    /// Closes every connection and the broker link, stops every timer and
    /// releases the id at once. Later calls reject with `ClosedError`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> js_sys::Promise {
        self.inner.close();
        js_sys::Promise::resolve(&JsValue::UNDEFINED)
    }
}

fn unexpected(msg: ServerMessage) -> JsValue {
    PeerError::Broker {
        code: ErrorCode::Internal,
        message: format!("unexpected reply {msg:?}"),
    }
    .to_js()
}

super::events::event_methods!(Peer, release: ["register", "broker"]);

/// Calls the `token` function; accepts a string or a Promise of one.
async fn ask_for_token(f: &js_sys::Function) -> Result<String, PeerError> {
    let failed = |detail: String| PeerError::Unauthorized {
        code: ErrorCode::Unauthorized,
        message: format!("the `token` function failed: {detail}"),
    };
    let describe = |e: JsValue| {
        e.dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| format!("{e:?}"))
    };
    let mut value = f
        .call0(&JsValue::UNDEFINED)
        .map_err(|e| failed(describe(e)))?;
    if let Some(promise) = value.dyn_ref::<js_sys::Promise>() {
        value = wasm_bindgen_futures::JsFuture::from(promise.clone())
            .await
            .map_err(|e| failed(describe(e)))?;
    }
    value
        .as_string()
        .ok_or_else(|| failed("it must return a string or a Promise of one".into()))
}

/// `url` with `token` as its `token` query parameter.
fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let token = String::from(js_sys::encode_uri_component(token));
    format!("{url}{sep}token={token}")
}
