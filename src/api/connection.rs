//! `Connection`: one peer-to-peer link to one remote id.
//!
//! Two tasks run per connection:
//! - the **driver** takes every event in order (signals from the broker,
//!   RTCPeerConnection and data-channel events, keep-alive ticks) and runs
//!   perfect negotiation (`core::negotiation`), reassembly
//!   (`core::chunking`) and liveness (`core::keepalive`);
//! - the **sender** takes `send()` jobs in order, cuts each into frames and
//!   hands them to the channel only while `bufferedAmount` is under the high
//!   mark, waiting for `bufferedamountlow` otherwise.
//!
//! ```text
//!  connecting ──(channel open)──► open ──(close(), remote close, ICE failed,
//!      │                                   keep-alive timeout, bad frames)──► closed
//!      └──(unknown peer, connect timeout, close())────────────────────────────► closed
//! ```

use std::cell::Cell;

use super::cell::StateCell;
use std::rc::{Rc, Weak};

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;

use super::errors::PeerError;
use super::events::Emitter;
use super::outbox::{Limits, Outlet, SendQueue, decode_payload};
use super::peer::PeerShared;
use super::stream::{EarlyFrames, Role, Stream, StreamSettings, StreamShared};
use crate::core::chunking::{Reassembler, Received};
use crate::core::keepalive::{KeepAlive, Tick};
use crate::core::negotiation::{
    Negotiator, OnCandidate, OnDescription, OnNegotiationNeeded, SdpKind, is_polite,
};
use crate::protocol::frames::{ChannelLabel, Frame, PeerSignal, SignalBody, check_stream_name};
use crate::web::channel::FrameSink;
use crate::web::rtc::{ChannelPolicy, RtcEvent, RtcLink};
use crate::web::{now, random_u64};

/// Messages a connection holds while nobody listens for them.
const MAX_HELD: usize = 1024;

pub(crate) const CONNECTION_EVENTS: &[&str] = &["open", "message", "close", "error", "stream"];

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Open,
    Closed,
}

/// Events the driver handles, in order.
enum Input {
    Rtc(RtcEvent),
    Signal(PeerSignal),
    Tick,
}

pub(crate) struct ConnShared {
    pub remote: String,
    peer: Weak<PeerShared>,
    /// Identifies our RTCPeerConnection in signals.
    pub session: u64,
    /// The remote's session, once a signal told us.
    pub remote_session: Cell<Option<u64>>,
    /// Set when this side called connect()/send() for this id.
    pub initiated: Cell<bool>,
    pub state: Cell<State>,
    link: StateCell<Option<Rc<RtcLink>>>,
    policy: ChannelPolicy,
    negotiator: StateCell<Negotiator<String>>,
    reassembler: StateCell<Reassembler>,
    keepalive: StateCell<KeepAlive>,
    pub emitter: Emitter,
    inputs: mpsc::UnboundedSender<Input>,
    outbox: SendQueue,
    streams: StateCell<Vec<Rc<StreamShared>>>,
    openers: StateCell<Vec<oneshot::Sender<Result<(), PeerError>>>>,
    opened_tx: StateCell<Option<oneshot::Sender<()>>>,
    _tick: StateCell<Option<gloo_timers::callback::Interval>>,
    _timeout: StateCell<Option<gloo_timers::callback::Timeout>>,
    close_reason: StateCell<Option<String>>,
    /// Frames that overtook the channel's own `open` event.
    early: EarlyFrames,
    /// The JS `Connection` handed out for this link (one object per link).
    pub handle: StateCell<Option<JsValue>>,
}

impl ConnShared {
    /// Creates the RTCPeerConnection and starts both tasks.
    pub fn start(
        peer: &Rc<PeerShared>,
        remote: &str,
        initiated: bool,
    ) -> Result<Rc<Self>, PeerError> {
        let opts = &peer.options;
        let me = peer.id().unwrap_or_default();
        let (in_tx, in_rx) = mpsc::unbounded::<Input>();
        let (rtc_tx, rtc_rx) = mpsc::unbounded::<RtcEvent>();
        let (low_tx, low_rx) = mpsc::unbounded::<()>();
        let (opened_tx, opened_rx) = oneshot::channel::<()>();
        let link = RtcLink::new(
            &peer.ice_servers(),
            opts.channel,
            opts.window.low as u32,
            rtc_tx,
            low_tx,
        )
        .map_err(|reason| PeerError::ConnectionFailed {
            id: remote.to_string(),
            reason,
        })?;
        let t = in_tx.clone();
        let tick = gloo_timers::callback::Interval::new(
            (opts.keep_alive_interval / 2).max(50) as u32,
            move || {
                let _ = t.unbounded_send(Input::Tick);
            },
        );
        let window = opts.window;
        let conn = Rc::new_cyclic(|weak: &Weak<Self>| Self {
            remote: remote.to_string(),
            peer: Rc::downgrade(peer),
            session: random_u64(),
            remote_session: Cell::new(None),
            initiated: Cell::new(initiated),
            state: Cell::new(State::Connecting),
            link: StateCell::new(Some(Rc::new(link))),
            policy: opts.channel,
            negotiator: StateCell::new(Negotiator::new(is_polite(&me, remote))),
            reassembler: StateCell::new(Reassembler::new(opts.max_message_size)),
            keepalive: StateCell::new(KeepAlive::new(
                opts.keep_alive_interval as f64,
                opts.keep_alive_timeout as f64,
                now(),
            )),
            emitter: Emitter::new(CONNECTION_EVENTS),
            inputs: in_tx,
            outbox: SendQueue::start(weak.clone(), low_rx, opened_rx, window),
            streams: StateCell::new(Vec::new()),
            openers: StateCell::new(Vec::new()),
            opened_tx: StateCell::new(Some(opened_tx)),
            _tick: StateCell::new(Some(tick)),
            _timeout: StateCell::new(None),
            close_reason: StateCell::new(None),
            early: EarlyFrames::default(),
            handle: StateCell::new(None),
        });
        let weak = Rc::downgrade(&conn);
        let ms = opts.connect_timeout;
        let timeout =
            gloo_timers::callback::Timeout::new(ms.min(u32::MAX as u64) as u32, move || {
                if let Some(c) = weak.upgrade() {
                    if c.state.get() == State::Connecting {
                        let err = PeerError::ConnectTimeout {
                            id: c.remote.clone(),
                            ms,
                        };
                        c.close(&err.to_string(), Some(err.clone()), true);
                    }
                }
            });
        *conn._timeout.borrow_mut() = Some(timeout);
        spawn_local(drive(Rc::downgrade(&conn), in_rx, rtc_rx));
        Ok(conn)
    }

    /// Traffic on one of this connection's streams: the remote is alive.
    pub fn heard(&self) {
        self.keepalive.borrow_mut().heard(now());
    }

    /// We sent on one of this connection's streams: no ping needed yet.
    pub fn sent(&self) {
        self.keepalive.borrow_mut().sent(now());
    }

    pub fn add_stream(&self, s: &Rc<StreamShared>) {
        self.streams.borrow_mut().push(s.clone());
    }

    pub fn forget_stream(&self, s: &StreamShared) {
        self.streams
            .borrow_mut()
            .retain(|x| !std::ptr::eq(Rc::as_ptr(x), s));
    }

    /// Settings for a stream on this connection: the peer's defaults,
    /// overridden by `policy`.
    pub fn stream_settings(&self, policy: Option<ChannelPolicy>) -> StreamSettings {
        let (window, max_message) = self
            .peer
            .upgrade()
            .map(|p| (p.options.window, p.options.max_message_size))
            .unwrap_or_default();
        StreamSettings {
            policy: policy.unwrap_or(self.policy),
            window,
            max_message,
        }
    }

    /// Opens a stream or a socket channel to the remote.
    pub fn open_channel(
        self: &Rc<Self>,
        label: ChannelLabel,
        role: Role,
        policy: Option<ChannelPolicy>,
    ) -> Result<Rc<StreamShared>, PeerError> {
        if self.state.get() != State::Open {
            return Err(self.closed_error());
        }
        let settings = self.stream_settings(policy);
        let link = self.link().ok_or_else(|| self.closed_error())?;
        let dc = link.create_channel(&label.encode(), settings.policy);
        Ok(StreamShared::start(self, dc, label, role, settings))
    }

    fn on_incoming_channel(self: &Rc<Self>, dc: web_sys::RtcDataChannel) {
        match ChannelLabel::parse(&dc.label()) {
            Some(label @ ChannelLabel::Stream(_)) => {
                let stream =
                    StreamShared::start(self, dc, label, Role::Stream, self.stream_settings(None));
                let conn = self.clone();
                stream.when_open(move |s| conn.emitter.emit("stream", &Stream::handle(s)));
            }
            Some(ChannelLabel::Port(port)) => match self.peer.upgrade() {
                Some(peer) => peer.port_channel(self, dc, port),
                None => dc.close(),
            },
            None => dc.close(),
        }
    }

    fn link(&self) -> Option<Rc<RtcLink>> {
        self.link.borrow().clone()
    }

    /// A signal from the remote, in broker order.
    pub fn deliver_signal(&self, signal: PeerSignal) {
        let _ = self.inputs.unbounded_send(Input::Signal(signal));
    }

    /// Resolves once the channel is open (at once if it is).
    pub async fn opened(&self) -> Result<(), PeerError> {
        match self.state.get() {
            State::Open => return Ok(()),
            State::Closed => return Err(self.closed_error()),
            State::Connecting => {}
        }
        let (tx, rx) = oneshot::channel();
        self.openers.borrow_mut().push(tx);
        rx.await.unwrap_or_else(|_| Err(self.closed_error()))
    }

    fn closed_error(&self) -> PeerError {
        let reason = self
            .close_reason
            .borrow()
            .clone()
            .unwrap_or_else(|| "closed".into());
        PeerError::Closed(format!("the connection to {:?} ({reason})", self.remote))
    }

    fn send_signal(&self, body: SignalBody) {
        if let Some(peer) = self.peer.upgrade() {
            let data = serde_json::to_value(PeerSignal {
                session: self.session,
                to: self.remote_session.get(),
                body,
            })
            .unwrap_or_default();
            if let Err(err) = peer.send_signal(&self.remote, data) {
                self.close(&err.to_string(), Some(err), false);
            }
        }
    }

    fn send_frame(&self, frame: &Frame<'_>) {
        if let Some(link) = self.link() {
            if link.channel_open() && link.send(&frame.encode()).is_ok() {
                self.keepalive.borrow_mut().sent(now());
            }
        }
    }

    fn on_open(self: &Rc<Self>) {
        if self.state.get() != State::Connecting {
            return;
        }
        self.state.set(State::Open);
        self._timeout.borrow_mut().take();
        self.keepalive.borrow_mut().heard(now());
        let tx = self.opened_tx.borrow_mut().take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        let drained: Vec<_> = self.openers.borrow_mut().drain(..).collect();
        for tx in drained {
            let _ = tx.send(Ok(()));
        }
        self.emitter.emit("open", &JsValue::UNDEFINED);
        if let Some(peer) = self.peer.upgrade() {
            peer.connection_opened(self);
        }
    }

    /// Closes the link. `error` (if any) is emitted as `error` and rejects
    /// pending `connect()` calls; `notify` tells the remote why.
    pub fn close(&self, reason: &str, error: Option<PeerError>, notify: bool) {
        if self.state.get() == State::Closed {
            return;
        }
        let was_open = self.state.get() == State::Open;
        self.state.set(State::Closed);
        *self.close_reason.borrow_mut() = Some(reason.to_string());
        self.early.take();
        if notify {
            if was_open {
                self.send_frame(&Frame::Close(reason.to_string()));
            } else {
                self.send_signal(SignalBody::Bye {
                    reason: reason.to_string(),
                });
            }
        }
        let err = error.clone().unwrap_or_else(|| self.closed_error());
        let drained: Vec<_> = self.openers.borrow_mut().drain(..).collect();
        for tx in drained {
            let _ = tx.send(Err(err.clone()));
        }
        self.opened_tx.borrow_mut().take();
        self.outbox.close();
        let streams: Vec<Rc<StreamShared>> = self.streams.borrow_mut().drain(..).collect();
        for st in streams {
            st.close(reason, None, false);
        }
        // Ends the driver task even while JS still holds this connection.
        self.inputs.close_channel();
        self._tick.borrow_mut().take();
        self._timeout.borrow_mut().take();
        // Close the channel now (it flushes what is buffered, the close frame
        // included), and drop the connection with its handlers shortly after.
        let link = self.link.borrow_mut().take();
        if let Some(link) = link {
            link.close_channel();
            spawn_local(async move {
                gloo_timers::future::TimeoutFuture::new(100).await;
                drop(link);
            });
        }
        if let Some(peer) = self.peer.upgrade() {
            peer.forget_connection(self);
        }
        if let Some(e) = &error {
            if was_open || self.emitter.has("error") {
                self.emitter.emit("error", &e.to_js());
            }
        }
        let info = Object::new();
        let _ = Reflect::set(&info, &"reason".into(), &reason.into());
        let _ = Reflect::set(&info, &"peerId".into(), &self.remote.as_str().into());
        self.emitter.emit("close", &info);
        self.emitter.clear();
        // The cached JS object points back at this link: break the cycle.
        self.handle.borrow_mut().take();
    }

    fn fail(&self, error: PeerError) {
        self.close(&error.to_string(), Some(error), true);
    }

    /// Queues `value` for sending; resolves when every byte is handed to the
    /// transport.
    pub async fn send(&self, value: JsValue, progress: Option<Function>) -> Result<(), PeerError> {
        if self.state.get() == State::Closed {
            return Err(self.closed_error());
        }
        let max_message = self
            .peer
            .upgrade()
            .map(|p| p.options.max_message_size)
            .unwrap_or(0);
        let limits = Limits {
            max_message,
            reliable: self.policy.reliable(),
        };
        self.outbox
            .send_value(&value, progress, limits, || self.closed_error())
            .await
    }

    fn on_frame(self: &Rc<Self>, data: JsValue) {
        let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() else {
            return self.fail(PeerError::Protocol {
                id: self.remote.clone(),
                detail: "text frame on a binary channel".into(),
            });
        };
        let bytes = Uint8Array::new(buf).to_vec();
        self.keepalive.borrow_mut().heard(now());
        let received = self.reassembler.borrow_mut().frame(&bytes);
        match received {
            Err(e) => self.fail(PeerError::Protocol {
                id: self.remote.clone(),
                detail: e.to_string(),
            }),
            Ok(Received::Partial) | Ok(Received::Pong(_)) => {}
            Ok(Received::Ping(n)) => self.send_frame(&Frame::Pong(n)),
            Ok(Received::End | Received::Accept | Received::Refuse(_) | Received::Pull(_)) => self
                .fail(PeerError::Protocol {
                    id: self.remote.clone(),
                    detail: "a stream frame on the connection's own channel".into(),
                }),
            Ok(Received::Close(reason)) => {
                let reason = if reason.is_empty() {
                    "closed by the remote peer".to_string()
                } else {
                    reason
                };
                self.close(&reason, None, false);
            }
            Ok(Received::Message(m)) => match decode_payload(m.payload, m.bytes) {
                Ok(value) => {
                    let peer = self.peer.upgrade();
                    let peer_listens = peer.as_ref().is_some_and(|p| p.emitter.has("message"));
                    // Held only while nobody listens, neither here nor on the
                    // peer: a message that arrives before `conn.on('message')`
                    // is delivered to it, not lost.
                    let deliver_here = self.emitter.has("message")
                        || !self.emitter.nothing_held()
                        || !peer_listens;
                    if deliver_here
                        && !self
                            .emitter
                            .emit_or_hold("message", value.clone(), MAX_HELD)
                    {
                        let err = PeerError::QueueFull(format!(
                            "{MAX_HELD} messages from {:?} arrived with no 'message' listener; attach one with on('message')",
                            self.remote
                        ));
                        return self.close(&err.to_string(), Some(err), true);
                    }
                    if let Some(peer) = peer {
                        peer.message_from(&self.remote, &value);
                    }
                }
                Err(detail) => self.fail(PeerError::Protocol {
                    id: self.remote.clone(),
                    detail,
                }),
            },
        }
    }

    fn on_tick(&self) {
        if self.state.get() != State::Open {
            return;
        }
        let tick = self.keepalive.borrow_mut().tick(now());
        match tick {
            Tick::Nothing => {}
            Tick::SendPing => self.send_frame(&Frame::Ping(0)),
            Tick::Dead => {
                let silence = self.keepalive.borrow().silence(now());
                self.fail(PeerError::ConnectionFailed {
                    id: self.remote.clone(),
                    reason: format!(
                        "nothing heard for {} ms (the remote page closed or the network dropped)",
                        silence as u64
                    ),
                });
            }
        }
    }

    async fn make_offer(&self, link: &RtcLink) {
        match link.set_local().await {
            Ok((sdp_type, sdp)) => self.send_signal(SignalBody::Description { sdp_type, sdp }),
            Err(reason) => self.fail(PeerError::ConnectionFailed {
                id: self.remote.clone(),
                reason,
            }),
        }
    }

    async fn on_signal(self: &Rc<Self>, signal: PeerSignal) {
        let Some(link) = self.link() else { return };
        match signal.body {
            SignalBody::Description { sdp_type, sdp } => {
                let Some(kind) = SdpKind::parse(&sdp_type) else {
                    return self.fail(PeerError::Protocol {
                        id: self.remote.clone(),
                        detail: format!("description type {sdp_type:?}"),
                    });
                };
                let decision = self
                    .negotiator
                    .borrow_mut()
                    .on_remote_description(kind, link.signaling_state());
                let OnDescription::Apply { answer } = decision else {
                    return;
                };
                if let Err(reason) = link.set_remote(&sdp_type, &sdp).await {
                    return self.fail(PeerError::ConnectionFailed {
                        id: self.remote.clone(),
                        reason,
                    });
                }
                let queued = self.negotiator.borrow_mut().remote_description_applied();
                for c in queued {
                    self.add_candidate(&link, &c).await;
                }
                if answer {
                    self.make_offer(&link).await;
                }
                let deferred = self
                    .negotiator
                    .borrow_mut()
                    .take_deferred(link.signaling_state());
                if deferred {
                    self.make_offer(&link).await;
                }
            }
            SignalBody::Candidate { .. } => {
                let json = serde_json::to_value(&signal.body).unwrap_or_default();
                let action = self
                    .negotiator
                    .borrow_mut()
                    .on_remote_candidate(json.to_string());
                match action {
                    OnCandidate::Add(c) => self.add_candidate(&link, &c).await,
                    OnCandidate::Queued | OnCandidate::Dropped => {}
                    OnCandidate::Overflow => self.fail(PeerError::Protocol {
                        id: self.remote.clone(),
                        detail: "too many ICE candidates before the session description".into(),
                    }),
                }
            }
            SignalBody::Bye { reason } => {
                self.close(&format!("the remote peer gave up: {reason}"), None, false)
            }
        }
    }

    async fn add_candidate(&self, link: &RtcLink, json: &str) {
        if let Err(e) = link.add_candidate(json).await {
            if self.negotiator.borrow().report_candidate_error() {
                crate::web::console_error(
                    "peerwire: a remote ICE candidate was refused:",
                    &JsValue::from_str(&e),
                );
            }
        }
    }
}

/// The driver: one event at a time, in order.
async fn drive(
    conn: Weak<ConnShared>,
    inputs: mpsc::UnboundedReceiver<Input>,
    rtc: mpsc::UnboundedReceiver<RtcEvent>,
) {
    let mut events = futures_util::stream::select(inputs, rtc.map(Input::Rtc));
    while let Some(input) = events.next().await {
        let Some(c) = conn.upgrade() else { return };
        if c.state.get() == State::Closed {
            return;
        }
        match input {
            Input::Tick => c.on_tick(),
            Input::Signal(s) => c.on_signal(s).await,
            Input::Rtc(RtcEvent::NegotiationNeeded) => {
                let Some(link) = c.link() else { continue };
                // An event queued before the remote's offer was applied is
                // stale: the channels are negotiated, and a needless new
                // offer could collide with the other side's.
                if link.has_remote_description() {
                    continue;
                }
                let decision = c
                    .negotiator
                    .borrow_mut()
                    .on_negotiation_needed(link.signaling_state());
                if decision == OnNegotiationNeeded::MakeOffer {
                    c.make_offer(&link).await;
                }
            }
            Input::Rtc(RtcEvent::LocalCandidate(json)) => match candidate_body(&json) {
                Some(body) => c.send_signal(body),
                None => crate::web::console_error(
                    "peerwire: unreadable local candidate",
                    &JsValue::from_str(&json),
                ),
            },
            Input::Rtc(RtcEvent::SignalingChanged) => {
                let Some(link) = c.link() else { continue };
                let deferred = c
                    .negotiator
                    .borrow_mut()
                    .take_deferred(link.signaling_state());
                if deferred {
                    c.make_offer(&link).await;
                }
            }
            Input::Rtc(RtcEvent::ConnectionState(state)) => {
                if state == "failed" {
                    c.fail(PeerError::ConnectionFailed {
                        id: c.remote.clone(),
                        reason: "ICE failed: no network path between the peers (a TURN server in iceServers may help)".into(),
                    });
                }
            }
            Input::Rtc(RtcEvent::ChannelOpen) => {
                c.on_open();
                for data in c.early.take() {
                    c.on_frame(data);
                }
            }
            Input::Rtc(RtcEvent::ChannelMessage(data))
                if c.state.get() == State::Connecting
                    && !c.link().is_some_and(|l| l.channel_open()) =>
            {
                if let Err(detail) = c.early.hold(data) {
                    c.fail(PeerError::Protocol {
                        id: c.remote.clone(),
                        detail,
                    });
                }
            }
            Input::Rtc(RtcEvent::IncomingChannel(dc)) => c.on_incoming_channel(dc),
            Input::Rtc(RtcEvent::ChannelMessage(data)) => c.on_frame(data),
            Input::Rtc(RtcEvent::ChannelClosed) => c.close("the data channel closed", None, false),
            Input::Rtc(RtcEvent::ChannelError(text)) => {
                if c.state.get() == State::Open {
                    c.fail(PeerError::ConnectionFailed {
                        id: c.remote.clone(),
                        reason: text,
                    });
                }
            }
        }
    }
}

/// `RTCIceCandidate.toJSON()` text as a candidate signal body.
fn candidate_body(json: &str) -> Option<SignalBody> {
    let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
    value
        .as_object_mut()?
        .insert("kind".into(), "candidate".into());
    serde_json::from_value(value).ok()
}

/// A peer-to-peer connection to one remote peer.
#[wasm_bindgen]
pub struct Connection {
    pub(crate) inner: Rc<ConnShared>,
}

#[wasm_bindgen]
impl Connection {
    /// The remote peer's id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.inner.remote.clone()
    }

    /// `"connecting"`, `"open"` or `"closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "ConnectionState")]
    pub fn state(&self) -> String {
        match self.inner.state.get() {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Closed => "closed",
        }
        .into()
    }

    /// Sends a string, bytes (ArrayBuffer, typed array, Blob) or any JSON
    /// value. Resolves when the whole message is handed to the transport;
    /// `options.onProgress(sent, total)` reports progress of large ones.
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

    /// Opens a named stream: a channel of its own on this connection. The
    /// remote gets a `stream` event. Options: `ordered`, `maxRetransmits`.
    #[wasm_bindgen(js_name = openStream, unchecked_return_type = "Promise<Stream>")]
    pub fn open_stream(
        &self,
        name: String,
        options: Option<super::StreamOptionsArg>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        wasm_bindgen_futures::future_to_promise(async move {
            check_stream_name(&name).map_err(PeerError::InvalidArgument)?;
            let policy = super::options::policy_from(&options, inner.policy)?;
            let stream =
                inner.open_channel(ChannelLabel::Stream(name), Role::Stream, Some(policy))?;
            stream.opened().await?;
            Ok(Stream::handle(&stream))
        })
    }

    /// Closes the connection; the remote gets `close` at once.
    pub fn close(&self) {
        self.inner.close("closed by the local peer", None, true);
    }
}

impl Connection {
    /// The one JS object for this link (so `connect()` returns the same one).
    pub(crate) fn handle(inner: &Rc<ConnShared>) -> JsValue {
        let h = inner.handle.borrow().clone();
        if let Some(h) = h {
            return h;
        }
        let h: JsValue = Connection {
            inner: inner.clone(),
        }
        .into();
        *inner.handle.borrow_mut() = Some(h.clone());
        h
    }
}

super::events::event_methods!(Connection, release: ["message"]);

impl Outlet for ConnShared {
    fn sink(&self) -> Option<Rc<dyn FrameSink>> {
        self.link().map(|l| l as Rc<dyn FrameSink>)
    }

    fn on_sent(&self) {
        self.keepalive.borrow_mut().sent(now());
    }

    fn closed_error(&self) -> PeerError {
        ConnShared::closed_error(self)
    }
}
