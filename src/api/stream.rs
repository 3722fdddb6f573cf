//! `Stream`: a named, multiplexed channel on a connection
//! (`conn.openStream(name)`), and the socket to a port (`sockets.connect`).
//!
//! Each stream is its own data channel (SCTP multiplexes them, so one busy
//! stream does not hold another back), with the connection's chunking,
//! ordering and backpressure, its own reliability options, and half-close
//! (`end()`), following `core::stream`'s state machine. A socket adds one
//! step: the listening side answers the channel with an accept frame, or a
//! refuse frame when nobody listens on the port.

use std::cell::Cell;

use super::cell::StateCell;
use std::rc::{Rc, Weak};

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use super::connection::ConnShared;
use super::errors::PeerError;
use super::events::Emitter;
use super::outbox::{Limits, Outlet, SendQueue, decode_payload};
use crate::core::chunking::{Reassembler, Received, SendWindow};
use crate::core::stream::StreamState;
use crate::protocol::frames::{ChannelLabel, Frame, PayloadType};
use crate::web::channel::{ChannelEvent, ChannelLink, FrameSink, LoopChannel, StreamChannel};
use crate::web::rtc::ChannelPolicy;

pub(crate) const STREAM_EVENTS: &[&str] = &["open", "message", "end", "close", "error"];

/// Messages a stream holds while it has no `message` listener.
const MAX_HELD: usize = 1024;

/// Which side of a socket handshake this stream is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// A plain stream: open when the channel opens.
    Stream,
    /// A socket we dialled: open when the listener accepts.
    Dialer,
    /// A socket a listener took: accept on open.
    Listener,
    /// Nobody listens: refuse on open, then close.
    Refuser(String),
}

/// What an internal consumer (rest) reads instead of JS events.
#[derive(Debug)]
pub(crate) enum Item {
    Message(PayloadType, Vec<u8>),
    End,
    Pull(u32),
    Closed(String),
}

/// Runs once the stream is open (a server's socket callback).
type OpenCallback = Box<dyn FnOnce(&Rc<StreamShared>)>;

pub(crate) struct StreamShared {
    pub label: ChannelLabel,
    pub remote: String,
    conn: Weak<ConnShared>,
    role: Role,
    channel: StateCell<Option<Rc<dyn StreamChannel>>>,
    state: Cell<StreamState>,
    policy: ChannelPolicy,
    max_message: usize,
    reassembler: StateCell<Reassembler>,
    pub emitter: Emitter,
    outbox: SendQueue,
    openers: StateCell<Vec<oneshot::Sender<Result<(), PeerError>>>>,
    opened_tx: StateCell<Option<oneshot::Sender<()>>>,
    inbox: StateCell<Option<mpsc::UnboundedSender<Item>>>,
    close_reason: StateCell<Option<String>>,
    /// Called with the stream once it is open (a server's socket callback).
    on_open: StateCell<Option<OpenCallback>>,
    handle: StateCell<Option<JsValue>>,
    /// A dialer: the listener's accept arrived (it may overtake the
    /// channel's own `open` event).
    accepted: Cell<bool>,
    /// The other end of a loopback pair, kept alive until this one closes.
    partner: StateCell<Option<Rc<StreamShared>>>,
    /// Frames that overtook the channel's own `open` event (the remote may
    /// send as soon as its side is open), replayed in order once it fires.
    early: EarlyFrames,
}

/// Frames that overtook a data channel's own `open` event: Chrome may
/// deliver the remote's first frames before it. Held (bounded) and handed
/// back in order once the event fires.
#[derive(Default)]
pub(crate) struct EarlyFrames(StateCell<Vec<JsValue>>);

impl EarlyFrames {
    /// Most frames held.
    const MAX: usize = 4096;

    /// Holds `data`; an error (for the caller to fail with) once full.
    pub fn hold(&self, data: JsValue) -> Result<(), String> {
        let mut frames = self.0.borrow_mut();
        if frames.len() >= Self::MAX {
            return Err(format!(
                "more than {} frames before the channel opened",
                Self::MAX
            ));
        }
        frames.push(data);
        Ok(())
    }

    /// Everything held, oldest first.
    pub fn take(&self) -> Vec<JsValue> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// Options for `openStream` (each side's sending policy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSettings {
    pub policy: ChannelPolicy,
    pub window: SendWindow,
    pub max_message: usize,
}

impl StreamShared {
    /// Takes over `dc` (created here or announced by the remote).
    pub fn start(
        conn: &Rc<ConnShared>,
        dc: web_sys::RtcDataChannel,
        label: ChannelLabel,
        role: Role,
        settings: StreamSettings,
    ) -> Rc<Self> {
        let (ev_tx, ev_rx) = mpsc::unbounded::<ChannelEvent>();
        let (low_tx, low_rx) = mpsc::unbounded::<()>();
        let link: Rc<dyn StreamChannel> = Rc::new(ChannelLink::new(
            dc,
            settings.window.low as u32,
            ev_tx,
            low_tx,
        ));
        let stream = Self::build(
            Rc::downgrade(conn),
            conn.remote.clone(),
            link,
            ev_rx,
            low_rx,
            label,
            role,
            settings,
        );
        conn.add_stream(&stream);
        stream
    }

    /// A connected pair of in-memory sockets to `localhost` on `port`: the
    /// dialer's end and the listener's end.
    pub fn loopback(
        address: &str,
        port: u16,
        listener_role: Role,
        settings: StreamSettings,
    ) -> (Rc<Self>, Rc<Self>) {
        let (a_tx, a_rx) = mpsc::unbounded::<ChannelEvent>();
        let (b_tx, b_rx) = mpsc::unbounded::<ChannelEvent>();
        let (a, b) = LoopChannel::pair(a_tx, b_tx);
        let (_, a_low) = mpsc::unbounded::<()>();
        let (_, b_low) = mpsc::unbounded::<()>();
        let label = ChannelLabel::Port(port);
        let dialer = Self::build(
            Weak::new(),
            address.to_string(),
            Rc::new(a),
            a_rx,
            a_low,
            label.clone(),
            Role::Dialer,
            settings,
        );
        let listener = Self::build(
            Weak::new(),
            address.to_string(),
            Rc::new(b),
            b_rx,
            b_low,
            label,
            listener_role,
            settings,
        );
        // Nothing else owns a loopback end: each keeps the other alive
        // until it closes (closing one closes the other).
        *dialer.partner.borrow_mut() = Some(listener.clone());
        *listener.partner.borrow_mut() = Some(dialer.clone());
        (dialer, listener)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        conn: Weak<ConnShared>,
        remote: String,
        channel: Rc<dyn StreamChannel>,
        events: mpsc::UnboundedReceiver<ChannelEvent>,
        low: mpsc::UnboundedReceiver<()>,
        label: ChannelLabel,
        role: Role,
        settings: StreamSettings,
    ) -> Rc<Self> {
        let (opened_tx, opened_rx) = oneshot::channel::<()>();
        let already_open = channel.is_open();
        let stream = Rc::new_cyclic(|weak: &Weak<Self>| Self {
            label,
            remote,
            conn,
            role,
            channel: StateCell::new(Some(channel)),
            state: Cell::new(StreamState::Opening),
            policy: settings.policy,
            max_message: settings.max_message,
            reassembler: StateCell::new(Reassembler::new(settings.max_message)),
            emitter: Emitter::new(STREAM_EVENTS),
            outbox: SendQueue::start(weak.clone(), low, opened_rx, settings.window),
            openers: StateCell::new(Vec::new()),
            opened_tx: StateCell::new(Some(opened_tx)),
            inbox: StateCell::new(None),
            close_reason: StateCell::new(None),
            on_open: StateCell::new(None),
            handle: StateCell::new(None),
            accepted: Cell::new(false),
            partner: StateCell::new(None),
            early: EarlyFrames::default(),
        });
        spawn_local(drive(Rc::downgrade(&stream), events));
        // A data channel announced by the remote may be open already; a
        // loopback pipe queues its own Open event instead.
        if already_open && stream.conn.upgrade().is_some() {
            stream.channel_open();
        }
        stream
    }

    /// Runs `f` with the stream once it is open (at once if it is).
    pub fn when_open(self: &Rc<Self>, f: impl FnOnce(&Rc<StreamShared>) + 'static) {
        if matches!(self.state.get(), StreamState::Opening) {
            *self.on_open.borrow_mut() = Some(Box::new(f));
        } else {
            f(self);
        }
    }

    /// Reads items in Rust instead of emitting JS events (set before open).
    pub fn take_items(&self) -> mpsc::UnboundedReceiver<Item> {
        let (tx, rx) = mpsc::unbounded();
        *self.inbox.borrow_mut() = Some(tx);
        rx
    }

    pub fn closed_error(&self) -> PeerError {
        let reason = self
            .close_reason
            .borrow()
            .clone()
            .unwrap_or_else(|| "closed".into());
        PeerError::Closed(format!(
            "the stream {} to {:?} ({reason})",
            self.describe(),
            self.remote
        ))
    }

    fn describe(&self) -> String {
        match &self.label {
            ChannelLabel::Stream(name) => format!("{name:?}"),
            ChannelLabel::Port(port) => format!("on port {port}"),
        }
    }

    /// Resolves once open; rejects if it closes first (or a port refuses).
    pub async fn opened(&self) -> Result<(), PeerError> {
        match self.state.get() {
            StreamState::Opening => {}
            StreamState::Closed => return Err(self.closed_error()),
            _ => return Ok(()),
        }
        let (tx, rx) = oneshot::channel();
        self.openers.borrow_mut().push(tx);
        rx.await.unwrap_or_else(|_| Err(self.closed_error()))
    }

    fn send_now(&self, frame: Frame<'_>) {
        let c = self.channel.borrow().clone();
        if let Some(c) = c {
            let _ = c.send_frame(&frame.encode());
        }
    }

    fn channel_is_open(&self) -> bool {
        self.channel.borrow().as_ref().is_some_and(|c| c.is_open())
    }

    fn channel_open(self: &Rc<Self>) {
        if self.state.get() != StreamState::Opening {
            return;
        }
        match self.role.clone() {
            // Open once the listener's accept is in too.
            Role::Dialer => {
                if self.accepted.get() {
                    self.become_open();
                }
            }
            Role::Refuser(reason) => {
                // Let the dialer close on reading the refusal, so the close
                // can never overtake it; stop waiting after a while.
                self.send_now(Frame::Refuse(reason.clone()));
                let weak = Rc::downgrade(self);
                spawn_local(async move {
                    gloo_timers::future::TimeoutFuture::new(5_000).await;
                    if let Some(s) = weak.upgrade() {
                        s.close(&reason, None, false);
                    }
                });
            }
            Role::Listener => {
                self.send_now(Frame::Accept);
                self.become_open();
            }
            Role::Stream => self.become_open(),
        }
    }

    fn become_open(self: &Rc<Self>) {
        self.state.set(self.state.get().opened());
        let tx = self.opened_tx.borrow_mut().take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        let drained: Vec<_> = self.openers.borrow_mut().drain(..).collect();
        for tx in drained {
            let _ = tx.send(Ok(()));
        }
        let f = self.on_open.borrow_mut().take();
        if let Some(f) = f {
            f(self);
        }
        self.emitter.emit("open", &JsValue::UNDEFINED);
    }

    /// Sends a user value.
    pub async fn send(&self, value: JsValue, progress: Option<Function>) -> Result<(), PeerError> {
        self.state
            .get()
            .can_send()
            .map_err(|e| self.state_error(e))?;
        let limits = Limits {
            max_message: self.max_message,
            reliable: self.policy.reliable(),
        };
        self.outbox
            .send_value(&value, progress, limits, || self.closed_error())
            .await
    }

    /// Sends bytes as one message (rest bodies and heads).
    pub async fn send_bytes(&self, kind: PayloadType, bytes: Vec<u8>) -> Result<(), PeerError> {
        self.state
            .get()
            .can_send()
            .map_err(|e| self.state_error(e))?;
        self.outbox
            .send_bytes(kind, bytes, || self.closed_error())
            .await
    }

    /// Grants the remote `n` more records.
    pub async fn pull(&self, n: u32) -> Result<(), PeerError> {
        self.outbox
            .send_control(Frame::Pull(n).encode(), || self.closed_error())
            .await
    }

    fn state_error(&self, e: crate::core::stream::StreamError) -> PeerError {
        match e {
            crate::core::stream::StreamError::Closed => self.closed_error(),
            other => PeerError::InvalidArgument(format!("stream {}: {other}", self.describe())),
        }
    }

    /// Half-close: this side sends no more (after what is queued).
    pub async fn end(self: &Rc<Self>) -> Result<(), PeerError> {
        let next = self
            .state
            .get()
            .end_local()
            .map_err(|e| self.state_error(e))?;
        // Both ended: nothing more may be sent while the end frame drains.
        self.state.set(if next == StreamState::Closed {
            StreamState::LocalEnded
        } else {
            next
        });
        self.outbox
            .send_control(Frame::End.encode(), || self.closed_error())
            .await?;
        if next == StreamState::Closed {
            // The remote, on reading our end, closes the channel, and we close
            // when it does: one side closing avoids two stream resets racing
            // with the next channel that reuses the id. If the remote never
            // closes, stop waiting after a while.
            let weak = Rc::downgrade(self);
            spawn_local(async move {
                gloo_timers::future::TimeoutFuture::new(5_000).await;
                if let Some(s) = weak.upgrade() {
                    s.close("both sides ended", None, false);
                }
            });
        }
        Ok(())
    }

    /// Closes now; the remote sees `close`.
    pub fn close(&self, reason: &str, error: Option<PeerError>, notify: bool) {
        if self.state.get() == StreamState::Closed {
            return;
        }
        let was_open = !matches!(self.state.get(), StreamState::Opening);
        self.state.set(StreamState::Closed);
        *self.close_reason.borrow_mut() = Some(reason.to_string());
        self.early.take();
        if notify {
            self.send_now(Frame::Close(reason.to_string()));
        }
        let err = error.clone().unwrap_or_else(|| self.closed_error());
        let drained: Vec<_> = self.openers.borrow_mut().drain(..).collect();
        for tx in drained {
            let _ = tx.send(Err(err.clone()));
        }
        self.opened_tx.borrow_mut().take();
        self.outbox.close();
        self.on_open.borrow_mut().take();
        let link = self.channel.borrow_mut().take();
        if let Some(link) = link {
            link.close();
            spawn_local(async move {
                gloo_timers::future::TimeoutFuture::new(100).await;
                drop(link);
            });
        }
        if let Some(c) = self.conn.upgrade() {
            c.forget_stream(self);
        }
        let inbox = self.inbox.borrow_mut().take();
        if let Some(inbox) = inbox {
            let _ = inbox.unbounded_send(Item::Closed(reason.to_string()));
        }
        if let Some(e) = &error {
            if was_open || self.emitter.has("error") {
                self.emitter.emit("error", &e.to_js());
            }
        }
        let info = Object::new();
        let _ = Reflect::set(&info, &"reason".into(), &reason.into());
        self.emitter.emit("close", &info);
        self.emitter.clear();
        self.handle.borrow_mut().take();
        self.partner.borrow_mut().take();
    }

    fn fail(&self, detail: String) {
        let err = PeerError::Protocol {
            id: self.remote.clone(),
            detail,
        };
        self.close(&err.to_string(), Some(err), true);
    }

    fn on_frame(self: &Rc<Self>, data: JsValue) {
        let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() else {
            return self.fail("text frame on a binary channel".into());
        };
        let bytes = Uint8Array::new(buf).to_vec();
        if let Some(c) = self.conn.upgrade() {
            c.heard();
        }
        let received = self.reassembler.borrow_mut().frame(&bytes);
        let inbox = self.inbox.borrow().clone();
        match received {
            Err(e) => self.fail(e.to_string()),
            Ok(Received::Partial | Received::Ping(_) | Received::Pong(_)) => {}
            Ok(Received::Accept) if self.role == Role::Dialer => {
                self.accepted.set(true);
                if self.channel_is_open() {
                    self.become_open();
                }
            }
            Ok(Received::Refuse(reason)) if self.role == Role::Dialer => {
                let port = match self.label {
                    ChannelLabel::Port(p) => p,
                    ChannelLabel::Stream(_) => 0,
                };
                let err = PeerError::PortClosed {
                    id: self.remote.clone(),
                    port,
                    reason,
                };
                self.close(&err.to_string(), Some(err), false);
            }
            Ok(Received::Accept | Received::Refuse(_)) => {
                self.fail("unexpected accept/refuse frame".into())
            }
            Ok(Received::Close(reason)) => {
                let reason = if reason.is_empty() {
                    "closed by the remote peer".to_string()
                } else {
                    reason
                };
                self.close(&reason, None, false);
            }
            Ok(Received::End) => match self.state.get().end_remote() {
                Ok(next) => {
                    // `close` (below) moves to Closed itself.
                    if next != StreamState::Closed {
                        self.state.set(next);
                    }
                    match &inbox {
                        Some(tx) => {
                            let _ = tx.unbounded_send(Item::End);
                        }
                        None => {
                            let _ =
                                self.emitter
                                    .emit_or_hold("end", JsValue::UNDEFINED, MAX_HELD + 1);
                        }
                    }
                    if next == StreamState::Closed {
                        self.close("both sides ended", None, false);
                    }
                }
                Err(e) => self.fail(e.to_string()),
            },
            Ok(Received::Pull(n)) => {
                if let Some(tx) = &inbox {
                    let _ = tx.unbounded_send(Item::Pull(n));
                }
            }
            Ok(Received::Message(m)) => {
                if let Err(e) = self.state.get().receive() {
                    return self.fail(e.to_string());
                }
                match &inbox {
                    Some(tx) => {
                        let _ = tx.unbounded_send(Item::Message(m.payload, m.bytes));
                    }
                    None => match decode_payload(m.payload, m.bytes) {
                        Ok(v) => {
                            if !self.emitter.emit_or_hold("message", v, MAX_HELD) {
                                let err = PeerError::QueueFull(format!(
                                    "{MAX_HELD} messages arrived on stream {} with no 'message' listener; attach one with on('message') or read `readable`",
                                    self.describe()
                                ));
                                self.close(&err.to_string(), Some(err), true);
                            }
                        }
                        Err(detail) => self.fail(detail),
                    },
                }
            }
        }
    }
}

impl Outlet for StreamShared {
    fn on_sent(&self) {
        if let Some(c) = self.conn.upgrade() {
            c.sent();
        }
    }

    fn sink(&self) -> Option<Rc<dyn FrameSink>> {
        self.channel
            .borrow()
            .clone()
            .map(|c| c as Rc<dyn FrameSink>)
    }

    fn closed_error(&self) -> PeerError {
        StreamShared::closed_error(self)
    }
}

async fn drive(stream: Weak<StreamShared>, mut events: mpsc::UnboundedReceiver<ChannelEvent>) {
    while let Some(event) = events.next().await {
        let Some(s) = stream.upgrade() else { return };
        if s.state.get() == StreamState::Closed {
            return;
        }
        match event {
            ChannelEvent::Open => {
                s.channel_open();
                for data in s.early.take() {
                    s.on_frame(data);
                }
            }
            ChannelEvent::Message(data)
                if s.state.get() == StreamState::Opening && !s.channel_is_open() =>
            {
                if let Err(detail) = s.early.hold(data) {
                    s.fail(detail);
                }
            }
            ChannelEvent::Message(data) => s.on_frame(data),
            ChannelEvent::Closed => s.close("the channel closed", None, false),
            ChannelEvent::Error(text) => {
                let err = PeerError::ConnectionFailed {
                    id: s.remote.clone(),
                    reason: text,
                };
                s.close(&err.to_string(), Some(err), false);
            }
        }
    }
}

#[wasm_bindgen(module = "/src/web/streams.js")]
extern "C" {
    #[wasm_bindgen(js_name = readableFrom)]
    fn readable_from(stream: &JsValue) -> web_sys::ReadableStream;
    #[wasm_bindgen(js_name = writableTo)]
    fn writable_to(stream: &JsValue) -> web_sys::WritableStream;
}

/// A stream or socket: a channel of its own on a connection.
#[wasm_bindgen]
pub struct Stream {
    pub(crate) inner: Rc<StreamShared>,
}

impl Stream {
    /// The one JS object for this stream.
    pub(crate) fn handle(inner: &Rc<StreamShared>) -> JsValue {
        let h = inner.handle.borrow().clone();
        if let Some(h) = h {
            return h;
        }
        let h: JsValue = Stream {
            inner: inner.clone(),
        }
        .into();
        if inner.state.get() != StreamState::Closed {
            *inner.handle.borrow_mut() = Some(h.clone());
        }
        h
    }
}

#[wasm_bindgen]
impl Stream {
    /// The stream's name (`""` for a socket).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        match &self.inner.label {
            ChannelLabel::Stream(n) => n.clone(),
            ChannelLabel::Port(_) => String::new(),
        }
    }

    /// The port, for a socket.
    #[wasm_bindgen(getter)]
    pub fn port(&self) -> Option<u16> {
        match self.inner.label {
            ChannelLabel::Port(p) => Some(p),
            ChannelLabel::Stream(_) => None,
        }
    }

    /// The remote peer's id (or node address).
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.inner.remote.clone()
    }

    /// `"opening"`, `"open"`, `"local-ended"`, `"remote-ended"` or `"closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "StreamState")]
    pub fn state(&self) -> String {
        match self.inner.state.get() {
            StreamState::Opening => "opening",
            StreamState::Open => "open",
            StreamState::LocalEnded => "local-ended",
            StreamState::RemoteEnded => "remote-ended",
            StreamState::Closed => "closed",
        }
        .into()
    }

    /// Sends a message, like `Connection.send`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Sendable")] message: JsValue,
        options: Option<super::SendOptionsArg>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let progress = super::outbox::progress_option(options);
        wasm_bindgen_futures::future_to_promise(async move {
            inner
                .send(message, progress)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(JsValue::from)
        })
    }

    /// Half-close: sends nothing more, keeps receiving. The remote gets `end`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn end(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            inner
                .end()
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(JsValue::from)
        })
    }

    /// Closes both directions now.
    pub fn close(&self) {
        self.inner.close("closed by the local peer", None, true);
    }

    /// Messages as a WHATWG `ReadableStream` (ends on `end`).
    #[wasm_bindgen(getter)]
    pub fn readable(&self) -> web_sys::ReadableStream {
        readable_from(&Stream::handle(&self.inner))
    }

    /// A WHATWG `WritableStream`: each chunk is sent as a message; closing it
    /// ends the stream.
    #[wasm_bindgen(getter)]
    pub fn writable(&self) -> web_sys::WritableStream {
        writable_to(&Stream::handle(&self.inner))
    }
}

super::events::event_methods!(Stream, release: ["message", "end"]);
