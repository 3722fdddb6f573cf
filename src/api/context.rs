//! `Ctx`: what every JavaScript handle of one peer shares. It holds the
//! driver (which owns the engine and the browser objects) and the
//! JavaScript side of the engine's events: the listeners of each object,
//! the one JS object per connection and per stream, port listeners, and
//! the in-Rust consumers of rest sockets.
//!
//! Handles are `(ctx, id)`: a `Connection` is the context and a `ConnId`;
//! none of them points at another.

use crate::protocol::json::Json;
use std::cell::Cell;
use std::rc::Rc;

use futures_channel::mpsc;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::errors::PeerError;
use super::events::Emitter;
use super::payload::{Payload, decode_payload, to_payload};
use crate::core::engine::{ChanId, ConnId, ConnState, Event, Listening, OpId, Reply, Table};
use crate::core::stream::StreamState;
use crate::protocol::frames::PayloadType;
use crate::web::cell::StateCell;
use crate::web::driver::{Driver, Sink, Then};

pub(crate) const PEER_EVENTS: &[&str] = &[
    "register",
    "connection",
    "message",
    "error",
    "unavailable",
    "broker",
    #[cfg(feature = "media")]
    "call",
];
pub(crate) const CONNECTION_EVENTS: &[&str] = &[
    "open",
    "message",
    "close",
    "error",
    "stream",
    #[cfg(feature = "media")]
    "track",
    #[cfg(feature = "media")]
    "mediastream",
    #[cfg(feature = "media")]
    "track-muted",
    #[cfg(feature = "media")]
    "track-unmuted",
    #[cfg(feature = "media")]
    "track-ended",
];
/// Events of the media feature, named in the error a lite build gives.
#[cfg(not(feature = "media"))]
pub(crate) const MEDIA_EVENTS: &[&str] = &[
    "call",
    "track",
    "mediastream",
    "track-muted",
    "track-unmuted",
    "track-ended",
];
pub(crate) const STREAM_EVENTS: &[&str] = &["open", "message", "end", "close", "error"];
pub(crate) const ROOM_EVENTS: &[&str] =
    &["peer-joined", "peer-left", "broadcast", "state", "closed"];
pub(crate) const RENDEZVOUS_EVENTS: &[&str] = &["joiner", "unavailable", "closed"];

/// Whose listeners.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    Peer,
    Conn(ConnId),
    Chan(ChanId),
    Room(String),
    Key(String),
}

/// What an in-Rust consumer (rest) reads instead of JS events.
pub(crate) use crate::core::exchange::Incoming as Item;

/// What an in-Rust consumer reads from: the items of one channel, with
/// the bytes not yet read counted (against `connectionBudget`).
#[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Item>,
    unread: Rc<Cell<usize>>,
}

#[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
impl Inbox {
    pub async fn next(&mut self) -> Option<Item> {
        let item = futures_util::StreamExt::next(&mut self.rx).await;
        if let Some(Item::Message(_, bytes)) = &item {
            self.unread
                .set(self.unread.get().saturating_sub(bytes.len()));
        }
        item
    }
}

#[cfg_attr(not(feature = "full"), allow(dead_code))] // rest (the full build)
struct Consumer {
    tx: mpsc::UnboundedSender<Item>,
    unread: Rc<Cell<usize>>,
}

/// Makes the one JS object of a connection or stream.
pub(crate) type MakeHandle = fn(&Rc<Ctx>, u32) -> JsValue;

/// Serves one rest socket.
pub(crate) type ServeRest = Rc<dyn Fn(&Rc<Ctx>, ChanId)>;

/// What takes sockets on a port.
#[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
#[derive(Clone)]
pub(crate) enum PortListener {
    /// `sockets.createServer(callback)`.
    Sockets(Function),
    /// A rest server: called with the socket's channel.
    Rest(ServeRest),
}

/// The JS view of one connection or stream.
struct View {
    emitter: Rc<Emitter>,
    handle: Option<JsValue>,
    opened: bool,
}

pub(crate) struct Ctx {
    pub d: Rc<Driver>,
    peer: Rc<Emitter>,
    views: StateCell<Table<Target, View>>,
    /// Who listens on each port, with the number of that binding (so a
    /// server that lost its port to `network.unbind` and a newcomer does
    /// not unbind the newcomer when it closes).
    ports: StateCell<Table<u16, (u32, PortListener)>>,
    bindings: Cell<u32>,
    internal: StateCell<Table<ChanId, Consumer>>,
    make_conn: MakeHandle,
    make_stream: MakeHandle,
}

impl Ctx {
    pub fn new(d: Rc<Driver>, make_conn: MakeHandle, make_stream: MakeHandle) -> Rc<Self> {
        let ctx = Rc::new(Self {
            d: d.clone(),
            peer: Rc::new(Emitter::new(PEER_EVENTS)),
            views: StateCell::new(Table::new()),
            ports: StateCell::new(Table::new()),
            bindings: Cell::new(0),
            internal: StateCell::new(Table::new()),
            make_conn,
            make_stream,
        });
        let sink: Rc<dyn Sink> = ctx.clone();
        d.set_sink(Rc::downgrade(&sink));
        ctx
    }

    fn known(target: &Target) -> &'static [&'static str] {
        match target {
            Target::Peer => PEER_EVENTS,
            Target::Conn(_) => CONNECTION_EVENTS,
            Target::Chan(_) => STREAM_EVENTS,
            Target::Room(_) => ROOM_EVENTS,
            Target::Key(_) => RENDEZVOUS_EVENTS,
        }
    }

    /// The listeners of `target` (created on first use).
    pub fn emitter(&self, target: &Target) -> Rc<Emitter> {
        if *target == Target::Peer {
            return self.peer.clone();
        }
        let mut views = self.views.borrow_mut();
        views
            .get_or_insert_with(target.clone(), || View {
                emitter: Rc::new(Emitter::new(Self::known(target))),
                handle: None,
                opened: false,
            })
            .emitter
            .clone()
    }

    /// Drops an object's listeners (a rendezvous key closed by the user).
    pub fn forget(&self, target: &Target) {
        if let Some(v) = self.drop_view(target) {
            v.emitter.clear();
        }
    }

    /// Forgets a closed object's listeners and JS object.
    fn drop_view(&self, target: &Target) -> Option<View> {
        self.views.borrow_mut().remove(target)
    }

    pub fn on(
        self: &Rc<Self>,
        target: Target,
        event: &str,
        listener: Function,
    ) -> Result<(), PeerError> {
        // An object whose `close` was delivered has no view left: a
        // listener added now would never hear anything.
        if let Some(what) = self.gone(&target) {
            return Err(PeerError::Closed(what));
        }
        let emitter = self.emitter(&target);
        emitter.on(event, listener)?;
        let ctx = self.clone();
        let event = event.to_string();
        // Kept and held events are delivered after `on()` returns, never
        // inside it.
        wasm_bindgen_futures::spawn_local(async move {
            emitter.release_kept(&event);
            if event == "message" {
                ctx.sync_listening(&target);
            }
        });
        Ok(())
    }

    /// Adds one of the SDK's own listeners to `target` (see
    /// [`Emitter::watch`]): it never takes events kept for the user's.
    #[cfg_attr(not(feature = "full"), allow(dead_code))] // rest media (the full build)
    pub fn watch(&self, target: &Target, event: &str, listener: Function) -> Result<(), PeerError> {
        self.emitter(target).watch(event, listener)
    }

    /// Removes an SDK listener [`Ctx::watch`] added.
    #[cfg_attr(not(feature = "full"), allow(dead_code))] // rest media (the full build)
    pub fn unwatch(&self, target: &Target, event: &str, listener: &Function) {
        // Not `emitter()`: a closed object's view is gone, and must not
        // come back for this.
        let emitter = self.views.borrow().get(target).map(|v| v.emitter.clone());
        if let Some(e) = emitter {
            e.unwatch(event, listener);
        }
    }

    pub fn off(&self, target: Target, event: &str, listener: &Function) -> Result<(), PeerError> {
        self.emitter(&target).off(event, listener)?;
        if event == "message" {
            self.sync_listening(&target);
        }
        Ok(())
    }

    /// Tells the engine whether `target` has a `message` listener (it holds
    /// messages for those that do not yet).
    fn sync_listening(&self, target: &Target) {
        let on = self.emitter(target).has("message");
        let who = match target {
            Target::Peer => Listening::Peer,
            Target::Conn(c) => match self.d.read(|e| e.conn_channel(*c)) {
                Some(ch) => Listening::Chan(ch),
                None => return,
            },
            Target::Chan(ch) => Listening::Chan(*ch),
            _ => return,
        };
        self.d.run(|e, now| e.set_listening(who, on, now));
    }

    /// The one JS object of connection `conn`.
    pub fn conn_handle(self: &Rc<Self>, conn: ConnId) -> JsValue {
        self.handle(Target::Conn(conn), || (self.make_conn)(self, conn.0))
    }

    /// The one JS object of stream or socket `chan`.
    pub fn stream_handle(self: &Rc<Self>, chan: ChanId) -> JsValue {
        self.handle(Target::Chan(chan), || (self.make_stream)(self, chan.0))
    }

    /// What `target` was, if it closed and its `close` was delivered (its
    /// view is gone): nothing of it may come back.
    fn gone(&self, target: &Target) -> Option<String> {
        if self.views.borrow().contains_key(target) {
            return None;
        }
        self.d.read(|e| match target {
            Target::Conn(c) => (e.conn_state(*c) == ConnState::Closed).then(|| {
                format!(
                    "the connection to \"{}\"",
                    e.conn_remote(*c).unwrap_or_default()
                )
            }),
            Target::Chan(c) => {
                (e.stream_state(*c) == StreamState::Closed).then(|| "the stream".to_string())
            }
            Target::Room(r) => e.room(r).is_none().then(|| format!("room \"{r}\" (left)")),
            _ => None,
        })
    }

    fn handle(&self, target: Target, make: impl FnOnce() -> JsValue) -> JsValue {
        let cached = self
            .views
            .borrow()
            .get(&target)
            .and_then(|v| v.handle.clone());
        if let Some(h) = cached {
            return h;
        }
        let h = make();
        // A closed object's handle gets no view again (`gone`).
        if self.gone(&target).is_some() {
            return h;
        }
        self.emitter(&target);
        if let Some(v) = self.views.borrow_mut().get_mut(&target) {
            v.handle = Some(h.clone());
        }
        h
    }

    // ---- ports and in-Rust consumers ----------------------------------------

    #[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
    /// Listens on `port`; the binding's number, for [`Ctx::unlisten_binding`].
    pub fn listen(&self, port: u16, listener: PortListener) -> Result<u32, PeerError> {
        let use_ = match listener {
            PortListener::Sockets(_) => crate::core::engine::PortUse::Sockets,
            PortListener::Rest(_) => crate::core::engine::PortUse::Rest,
        };
        self.d.run(|e, _| e.listen(port, use_))?;
        let binding = self.bindings.get().wrapping_add(1);
        self.bindings.set(binding);
        self.ports.borrow_mut().insert(port, (binding, listener));
        Ok(binding)
    }

    /// Stops listening on `port` if `binding` still holds it.
    #[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
    pub fn unlisten_binding(&self, port: u16, binding: u32) {
        let held = matches!(self.ports.borrow().get(&port), Some((b, _)) if *b == binding);
        if held {
            self.unlisten(port);
        }
    }

    #[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
    pub fn unlisten(&self, port: u16) {
        self.ports.borrow_mut().remove(&port);
        self.d.run(|e, _| e.unlisten(port));
    }

    /// Reads `chan` in Rust (rest) instead of emitting JS events.
    #[cfg_attr(not(feature = "full"), allow(dead_code))] // used by Node (the full build)
    pub fn consume(&self, chan: ChanId) -> Inbox {
        let (tx, rx) = mpsc::unbounded();
        let unread = Rc::new(Cell::new(0));
        self.internal.borrow_mut().insert(
            chan,
            Consumer {
                tx,
                unread: unread.clone(),
            },
        );
        self.d
            .run(|e, now| e.set_listening(Listening::Chan(chan), true, now));
        Inbox { rx, unread }
    }

    /// Only rest reads a channel in Rust (the full build).
    #[cfg(not(feature = "full"))]
    fn to_consumer(&self, _chan: ChanId, _item: Item) -> bool {
        false
    }

    /// Hands `item` to the consumer of `chan`, if it has one. A consumer
    /// that stopped reading, or left more than `connectionBudget` bytes
    /// unread, ends the exchange.
    #[cfg(feature = "full")]
    fn to_consumer(&self, chan: ChanId, item: Item) -> bool {
        let found = self
            .internal
            .borrow()
            .get(&chan)
            .map(|c| (c.tx.clone(), c.unread.clone()));
        let Some((tx, unread)) = found else {
            return false;
        };
        let closed = matches!(item, Item::Closed(_));
        if let Item::Message(_, bytes) = &item {
            unread.set(unread.get() + bytes.len());
        }
        let budget = self.d.read(|e| e.config().connection_budget);
        let problem = if tx.unbounded_send(item).is_err() {
            Some(None)
        } else if unread.get() > budget {
            Some(Some(PeerError::LimitExceeded(format!(
                "more than {budget} bytes of a rest body arrived unread (option connectionBudget)"
            ))))
        } else {
            None
        };
        if closed || problem.is_some() {
            self.internal.borrow_mut().remove(&chan);
        }
        match problem {
            Some(None) => self
                .d
                .run(|e, now| e.close_stream(chan, "the reader stopped", now)),
            Some(Some(err)) => self.d.run(|e, now| e.fail_stream(chan, err, now)),
            None => {}
        }
        true
    }

    fn mark_opened(&self, target: &Target) {
        self.emitter(target);
        if let Some(v) = self.views.borrow_mut().get_mut(target) {
            v.opened = true;
        }
    }

    /// A message as the JS value the user gets; a bad one closes its channel.
    fn value(&self, chan: ChanId, payload: PayloadType, bytes: Vec<u8>) -> Option<JsValue> {
        match decode_payload(payload, bytes) {
            Ok(v) => Some(v),
            Err(detail) => {
                let reason = format!("the remote peer sent bad data: {detail}");
                let conn = self.d.read(|e| {
                    e.chan_conn(chan)
                        .filter(|c| e.conn_channel(*c) == Some(chan))
                });
                match conn {
                    Some(c) => self.d.run(|e, now| e.disconnect(c, &reason, now)),
                    None => self.d.run(|e, now| e.close_stream(chan, &reason, now)),
                }
                None
            }
        }
    }

    fn closed(
        &self,
        target: Target,
        reason: &str,
        error: Option<PeerError>,
        peer_id: Option<&str>,
    ) {
        let Some(view) = self.drop_view(&target) else {
            return;
        };
        if let Some(e) = &error {
            if view.opened || view.emitter.has("error") {
                view.emitter.emit("error", &e.to_js());
            }
        }
        let info = Object::new();
        let _ = Reflect::set(&info, &"reason".into(), &reason.into());
        if let Some(id) = peer_id {
            let _ = Reflect::set(&info, &"peerId".into(), &id.into());
        }
        view.emitter.emit("close", &info);
        view.emitter.clear();
    }
}

/// The one `send` path shared by connections, streams and sockets.
/// Sends `value` on `chan`; the Promise resolves once every byte is handed
/// to the channel. `progress(sent, total)` reports large messages. The
/// message takes its place in the channel's queue before this returns
/// (a Blob's too: its bytes fill the place once read).
pub(crate) fn send_value(
    ctx: &Rc<Ctx>,
    chan: Result<ChanId, PeerError>,
    value: &JsValue,
    progress: Option<Function>,
) -> Promise {
    let wants = progress.is_some();
    let max = ctx.d.read(|e| e.config().max_message_size);
    let payload = chan.and_then(|chan| Ok((chan, to_payload(value, max)?)));
    match payload {
        Err(e) => Promise::reject(&e.to_js()),
        Ok((chan, Payload::Bytes(kind, bytes))) => ctx.d.ask(
            move |e, now| e.send(chan, kind, bytes, wants, now),
            progress,
            Then::Reply,
        ),
        Ok((chan, Payload::Blob(blob))) => {
            let size = blob.size() as usize;
            let reserved = Rc::new(Cell::new(None));
            let slot = reserved.clone();
            let done = ctx.d.ask(
                move |e, now| {
                    let op = e.send_later(chan, size, wants, now)?;
                    slot.set(Some(op));
                    Ok(op)
                },
                progress,
                Then::Reply,
            );
            if let Some(op) = reserved.get() {
                let weak = Rc::downgrade(&ctx.d);
                wasm_bindgen_futures::spawn_local(async move {
                    let bytes = JsFuture::from(blob.array_buffer())
                        .await
                        .map(|buf| Uint8Array::new(&buf).to_vec())
                        .map_err(|e| crate::web::js_error_text(&e));
                    Driver::feed(&weak, |e, now| e.fill(op, bytes, now));
                });
            }
            done
        }
    }
}

impl Ctx {
    /// Runs an engine command; the Promise resolves its reply as a JS
    /// value (a handle, a boolean, `undefined`) or rejects with its error.
    pub fn ask(
        &self,
        f: impl FnOnce(&mut crate::core::engine::Engine, f64) -> Result<OpId, PeerError>,
    ) -> Promise {
        self.d.ask(f, None, Then::Reply)
    }
}

fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

/// A JSON value as a JS value.
/// User data as the JS value it stands for.
pub(crate) fn json_to_js(value: &Json) -> JsValue {
    js_sys::JSON::parse(value.as_str()).unwrap_or(JsValue::NULL)
}

/// A JS value as JSON text (`JSON.stringify`); `undefined`, functions,
/// BigInts and cycles are named errors.
pub(crate) fn js_to_json(value: &JsValue) -> Result<Json, PeerError> {
    super::payload::json_text(value).map(Json)
}

impl Sink for Ctx {
    fn settle(
        self: Rc<Self>,
        then: Then,
        result: Result<Reply, PeerError>,
    ) -> Result<JsValue, JsValue> {
        let reply = match (then, result) {
            (Then::Peer, Ok(_)) => return Ok(super::peer::Peer { ctx: self }.into()),
            (Then::Peer, Err(e)) => {
                self.d.run(|e, now| e.close(now));
                return Err(e.to_js());
            }
            (_, Err(e)) => return Err(e.to_js()),
            (Then::Send { message, progress }, Ok(Reply::Connection(conn))) => {
                let chan = self.d.read(|e| {
                    e.conn_channel(conn).ok_or_else(|| {
                        let remote = e.conn_remote(conn).unwrap_or_default();
                        PeerError::Closed(format!("the connection to \"{remote}\""))
                    })
                });
                // A Promise resolved with a Promise settles as that one does.
                return Ok(send_value(&self, chan, &message, progress).into());
            }
            #[cfg(feature = "media")]
            (Then::Call { stream }, Ok(Reply::Connection(conn))) => {
                super::media::send_stream(&self, conn, &stream)?;
                return Ok(self.conn_handle(conn));
            }
            (Then::ForgetKey(key), Ok(_)) => {
                self.forget(&Target::Key(key));
                return Ok(JsValue::UNDEFINED);
            }
            (_, Ok(reply)) => reply,
        };
        Ok(match reply {
            Reply::Done => JsValue::UNDEFINED,
            Reply::Connection(c) => self.conn_handle(c),
            Reply::Stream(chan) => self.stream_handle(chan),
            Reply::Found(online) => online.into(),
            Reply::Joined(room) => super::room::Room::new(self, room).into(),
            Reply::KeyOpened(key) => super::room::Rendezvous::new(self, key).into(),
            Reply::Address(address) => address.into(),
        })
    }

    fn deliver(self: Rc<Self>, _driver: &Rc<Driver>, event: Event) {
        match event {
            Event::Registered {
                id,
                resumed,
                first,
                url,
            } => {
                self.peer.emit_or_keep("register", id.as_str().into());
                let mut fields = vec![
                    ("state", "registered".into()),
                    ("id", id.as_str().into()),
                    ("resumed", resumed.into()),
                    ("reconnect", (!first).into()),
                ];
                if let Some(url) = url {
                    fields.push(("url", url.into()));
                }
                self.peer.emit_or_keep("broker", object(&fields));
            }
            Event::BrokerDown { code, reason, url } => {
                let status = object(&[
                    ("state", "disconnected".into()),
                    ("code", code.into()),
                    ("reason", reason.as_str().into()),
                    ("url", url.into()),
                ]);
                self.peer.emit("broker", &status);
            }
            Event::ResumeRefused {
                id,
                code,
                message,
                url,
            } => {
                let mut fields = vec![
                    ("state", "refused".into()),
                    ("id", id.as_str().into()),
                    ("refused", code.as_str().into()),
                    ("reason", message.as_str().into()),
                ];
                if let Some(url) = url {
                    fields.push(("url", url.into()));
                }
                self.peer.emit("broker", &object(&fields));
            }
            Event::Error(e) => self.peer.emit("error", &e.to_js()),
            Event::Incoming { conn } => {
                let h = self.conn_handle(conn);
                self.peer.emit("connection", &h);
            }
            Event::Open { conn } => {
                let target = Target::Conn(conn);
                self.mark_opened(&target);
                self.emitter(&target).emit("open", &JsValue::UNDEFINED);
            }
            Event::Closed {
                conn,
                reason,
                error,
            } => {
                let remote = self.d.read(|e| e.conn_remote(conn).map(str::to_string));
                let peer_id = remote.unwrap_or_default();
                // Its remote tracks ended with it (no `track-ended` each);
                // the hooks on the user's tracks it sent go now.
                #[cfg(feature = "media")]
                self.d.forget_conn_media(conn);
                self.closed(Target::Conn(conn), &reason, error, Some(&peer_id));
            }
            Event::Message {
                chan,
                payload,
                bytes,
            } => {
                if cfg!(feature = "full") && self.internal.borrow().contains_key(&chan) {
                    self.to_consumer(chan, Item::Message(payload, bytes));
                    return;
                }
                let main_of = self.d.read(|e| {
                    e.chan_conn(chan)
                        .filter(|c| e.conn_channel(*c) == Some(chan))
                        .map(|c| (c, e.conn_remote(c).unwrap_or_default().to_string()))
                });
                let Some(value) = self.value(chan, payload, bytes) else {
                    return;
                };
                match main_of {
                    Some((conn, from)) => {
                        self.emitter(&Target::Conn(conn)).emit("message", &value);
                        if self.peer.has("message") {
                            let envelope =
                                object(&[("from", from.as_str().into()), ("message", value)]);
                            self.peer.emit("message", &envelope);
                        }
                    }
                    None => self.emitter(&Target::Chan(chan)).emit("message", &value),
                }
            }
            Event::IncomingStream { conn, chan } => {
                self.mark_opened(&Target::Chan(chan));
                let h = self.stream_handle(chan);
                self.emitter(&Target::Conn(conn)).emit("stream", &h);
            }
            // Only a Node listens on ports (the full build).
            #[cfg(not(feature = "full"))]
            Event::Accepted { chan, .. } => self
                .d
                .run(|e, now| e.close_stream(chan, "the server stopped", now)),
            #[cfg(feature = "full")]
            Event::Accepted { port, chan } => {
                self.mark_opened(&Target::Chan(chan));
                let listener = self.ports.borrow().get(&port).map(|(_, l)| l.clone());
                match listener {
                    Some(PortListener::Sockets(callback)) => {
                        let h = self.stream_handle(chan);
                        if let Err(e) = callback.call1(&JsValue::UNDEFINED, &h) {
                            crate::web::console_error(
                                "peerwire: a socket server callback threw:",
                                &e,
                            );
                        }
                    }
                    Some(PortListener::Rest(serve)) => serve(&self, chan),
                    None => self
                        .d
                        .run(|e, now| e.close_stream(chan, "the server stopped", now)),
                }
            }
            Event::StreamOpen { chan } => {
                let target = Target::Chan(chan);
                self.mark_opened(&target);
                self.emitter(&target).emit("open", &JsValue::UNDEFINED);
            }
            Event::End { chan } => {
                if !self.to_consumer(chan, Item::End) {
                    self.emitter(&Target::Chan(chan))
                        .emit("end", &JsValue::UNDEFINED);
                }
            }
            Event::Pull { chan, n } => {
                self.to_consumer(chan, Item::Pull(n));
            }
            Event::StreamClosed {
                chan,
                reason,
                error,
            } => {
                if !self.to_consumer(chan, Item::Closed(reason.clone())) {
                    self.closed(Target::Chan(chan), &reason, error, None);
                } else {
                    self.drop_view(&Target::Chan(chan));
                }
            }
            Event::PeerJoined { room, id } => {
                self.emitter(&Target::Room(room))
                    .emit("peer-joined", &id.as_str().into());
            }
            Event::PeerLeft { room, id } => {
                self.emitter(&Target::Room(room))
                    .emit("peer-left", &id.as_str().into());
            }
            Event::Broadcast { room, from, data } => {
                let ev = object(&[("from", from.as_str().into()), ("data", json_to_js(&data))]);
                self.emitter(&Target::Room(room)).emit("broadcast", &ev);
            }
            Event::StateSet {
                room,
                key,
                value,
                from,
                ttl_ms,
            } => {
                let mut pairs = vec![
                    ("key", key.as_str().into()),
                    ("value", json_to_js(&value)),
                    ("from", from.as_str().into()),
                ];
                if let Some(ttl) = ttl_ms {
                    pairs.push(("ttl", (ttl as f64).into()));
                }
                self.emitter(&Target::Room(room))
                    .emit("state", &object(&pairs));
            }
            Event::StateRemoved { room, key, reason } => {
                let ev = object(&[
                    ("key", key.as_str().into()),
                    ("value", JsValue::UNDEFINED),
                    ("removed", reason.as_str().into()),
                ]);
                self.emitter(&Target::Room(room)).emit("state", &ev);
            }
            Event::RoomClosed { room } => {
                if let Some(view) = self.drop_view(&Target::Room(room)) {
                    view.emitter.emit("closed", &JsValue::UNDEFINED);
                    view.emitter.clear();
                }
            }
            Event::Joiner { key, id } => {
                self.emitter(&Target::Key(key))
                    .emit("joiner", &id.as_str().into());
            }
            Event::KeyUnavailable {
                key,
                id,
                code,
                opened,
            } => {
                if opened {
                    self.emitter(&Target::Key(key))
                        .emit("unavailable", &id.as_str().into());
                } else {
                    let mut pairs = vec![("key", key.as_str().into()), ("id", id.as_str().into())];
                    if let Some(code) = code {
                        pairs.push(("code", code.into()));
                    }
                    self.peer.emit("unavailable", &object(&pairs));
                }
            }
            Event::KeyClosed { key, code, reason } => {
                if let Some(view) = self.drop_view(&Target::Key(key)) {
                    let info = object(&[("code", code.into()), ("reason", reason.as_str().into())]);
                    view.emitter.emit("closed", &info);
                    view.emitter.clear();
                }
            }
            // The engine refuses calls and ignores tracks without the
            // `media` feature.
            #[cfg(not(feature = "media"))]
            Event::IncomingCall { .. }
            | Event::Track { .. }
            | Event::MediaStream { .. }
            | Event::TrackMuted { .. }
            | Event::TrackEnded { .. } => {}
            #[cfg(feature = "media")]
            Event::IncomingCall {
                conn,
                call,
                metadata,
            } => {
                if !self.peer.has("call") {
                    let why = "the callee takes no calls (no 'call' listener)";
                    let _ = self.d.run(|e, _| e.reject_call(conn, call, why));
                    return;
                }
                let metadata = metadata.as_ref().map_or(JsValue::UNDEFINED, json_to_js);
                let call = super::media::IncomingCall::new(&self, conn, call, metadata);
                self.peer.emit("call", &call.into());
            }
            #[cfg(feature = "media")]
            Event::Track { conn, mid, streams } => {
                let Some((track, objects)) = self.d.received(conn, &mid) else {
                    return;
                };
                let ids: js_sys::Array =
                    streams.iter().map(|s| JsValue::from(s.as_str())).collect();
                let ev = object(&[
                    ("track", track),
                    ("streams", objects.into()),
                    ("streamIds", ids.into()),
                ]);
                self.emitter(&Target::Conn(conn)).emit_or_keep("track", ev);
            }
            #[cfg(feature = "media")]
            Event::MediaStream { conn, stream } => {
                if let Some(s) = self.d.received_stream(conn, &stream) {
                    self.emitter(&Target::Conn(conn))
                        .emit_or_keep("mediastream", s);
                }
            }
            #[cfg(feature = "media")]
            Event::TrackMuted { conn, mid, muted } => {
                if let Some((track, streams)) = self.d.received(conn, &mid) {
                    let ev = object(&[("track", track), ("streams", streams.into())]);
                    let name = if muted {
                        "track-muted"
                    } else {
                        "track-unmuted"
                    };
                    self.emitter(&Target::Conn(conn)).emit(name, &ev);
                }
            }
            #[cfg(feature = "media")]
            Event::TrackEnded { conn, mid, reason } => {
                if let Some((track, streams)) = self.d.received(conn, &mid) {
                    self.d.forget_received(conn, &mid);
                    let ev = object(&[
                        ("track", track.clone()),
                        ("streams", streams.into()),
                        ("reason", reason.as_str().into()),
                    ]);
                    let emitter = self.emitter(&Target::Conn(conn));
                    // A `track` event kept for a first listener is stale now.
                    emitter.drop_kept("track", |ev| {
                        Reflect::get(ev, &"track".into()).ok().as_ref() == Some(&track)
                    });
                    emitter.emit("track-ended", &ev);
                }
            }
            Event::ConnError { conn, error } => {
                let emitter = self.emitter(&Target::Conn(conn));
                if emitter.has("error") {
                    emitter.emit("error", &error.to_js());
                } else {
                    // Nobody listens on the connection: the peer's `error`
                    // event says it, so it is not lost.
                    self.peer.emit("error", &error.to_js());
                }
            }
            Event::Log(level, line) => {
                let id = self.d.read(|e| e.id().unwrap_or_default().to_string());
                crate::web::console_log(level, &format!("peerwire {id}: {line}"));
            }
            Event::Done { .. } | Event::Progress { .. } => {}
        }
    }
}
