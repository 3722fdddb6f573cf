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

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, spawn_local};

use super::errors::PeerError;
use super::events::Emitter;
use super::peer::PeerShared;
use crate::core::chunking::{Chunker, Reassembler, Received};
use crate::core::keepalive::{KeepAlive, Tick};
use crate::core::negotiation::{
    Negotiator, OnCandidate, OnDescription, OnNegotiationNeeded, SdpKind, is_polite,
};
use crate::protocol::frames::{Frame, MAX_CHUNK_BYTES, PayloadType, PeerSignal, SignalBody};
use crate::web::rtc::{ChannelPolicy, RtcEvent, RtcLink};
use crate::web::{now, random_u64};

pub(crate) const CONNECTION_EVENTS: &[&str] = &["open", "message", "close", "error"];

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

/// What `send()` hands the sender task.
enum Payload {
    Bytes(PayloadType, Vec<u8>),
    Blob(web_sys::Blob),
}

struct SendJob {
    payload: Payload,
    progress: Option<Function>,
    done: oneshot::Sender<Result<(), PeerError>>,
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
    link: RefCell<Option<Rc<RtcLink>>>,
    policy: ChannelPolicy,
    negotiator: RefCell<Negotiator<String>>,
    reassembler: RefCell<Reassembler>,
    keepalive: RefCell<KeepAlive>,
    pub emitter: Emitter,
    inputs: mpsc::UnboundedSender<Input>,
    jobs: RefCell<Option<mpsc::UnboundedSender<SendJob>>>,
    queued_bytes: Cell<usize>,
    openers: RefCell<Vec<oneshot::Sender<Result<(), PeerError>>>>,
    opened_tx: RefCell<Option<oneshot::Sender<()>>>,
    next_message: Cell<u32>,
    _tick: RefCell<Option<gloo_timers::callback::Interval>>,
    _timeout: RefCell<Option<gloo_timers::callback::Timeout>>,
    close_reason: RefCell<Option<String>>,
    /// The JS `Connection` handed out for this link (one object per link).
    pub handle: RefCell<Option<JsValue>>,
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
        let (job_tx, job_rx) = mpsc::unbounded::<SendJob>();
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
        let conn = Rc::new(Self {
            remote: remote.to_string(),
            peer: Rc::downgrade(peer),
            session: random_u64(),
            remote_session: Cell::new(None),
            initiated: Cell::new(initiated),
            state: Cell::new(State::Connecting),
            link: RefCell::new(Some(Rc::new(link))),
            policy: opts.channel,
            negotiator: RefCell::new(Negotiator::new(is_polite(&me, remote))),
            reassembler: RefCell::new(Reassembler::new(opts.max_message_size)),
            keepalive: RefCell::new(KeepAlive::new(
                opts.keep_alive_interval as f64,
                opts.keep_alive_timeout as f64,
                now(),
            )),
            emitter: Emitter::new(CONNECTION_EVENTS),
            inputs: in_tx,
            jobs: RefCell::new(Some(job_tx)),
            queued_bytes: Cell::new(0),
            openers: RefCell::new(Vec::new()),
            opened_tx: RefCell::new(Some(opened_tx)),
            next_message: Cell::new(1),
            _tick: RefCell::new(Some(tick)),
            _timeout: RefCell::new(None),
            close_reason: RefCell::new(None),
            handle: RefCell::new(None),
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
        spawn_local(send_loop(
            Rc::downgrade(&conn),
            job_rx,
            low_rx,
            opened_rx,
            opts.window,
        ));
        Ok(conn)
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
        if let Some(tx) = self.opened_tx.borrow_mut().take() {
            let _ = tx.send(());
        }
        for tx in self.openers.borrow_mut().drain(..) {
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
        for tx in self.openers.borrow_mut().drain(..) {
            let _ = tx.send(Err(err.clone()));
        }
        self.opened_tx.borrow_mut().take();
        self.jobs.borrow_mut().take();
        // Ends the driver task even while JS still holds this connection.
        self.inputs.close_channel();
        self._tick.borrow_mut().take();
        self._timeout.borrow_mut().take();
        // Close the channel now (it flushes what is buffered, the close frame
        // included), and drop the connection with its handlers shortly after.
        if let Some(link) = self.link.borrow_mut().take() {
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
        let max = self
            .peer
            .upgrade()
            .map(|p| p.options.max_message_size)
            .unwrap_or(0);
        let payload = to_payload(&value)?;
        let size = match &payload {
            Payload::Bytes(_, b) => b.len(),
            Payload::Blob(b) => b.size() as usize,
        };
        if size > max {
            return Err(PeerError::MessageTooLarge {
                size,
                max,
                hint: "; raise maxMessageSize in createPeer options",
            });
        }
        if !self.policy.reliable() && size > MAX_CHUNK_BYTES {
            return Err(PeerError::MessageTooLarge {
                size,
                max: MAX_CHUNK_BYTES,
                hint: " for an unreliable channel (ordered: false or maxRetransmits); use a reliable connection for large data",
            });
        }
        // Bound what may wait in the queue: a few maximum-size messages.
        let queued = self.queued_bytes.get();
        if queued + size > max.saturating_mul(4) {
            return Err(PeerError::QueueFull(format!(
                "{queued} bytes are already waiting to be sent to {:?}; await earlier sends first",
                self.remote
            )));
        }
        let (done, result) = oneshot::channel();
        let job = SendJob {
            payload,
            progress,
            done,
        };
        let sent = self
            .jobs
            .borrow()
            .as_ref()
            .is_some_and(|tx| tx.unbounded_send(job).is_ok());
        if !sent {
            return Err(self.closed_error());
        }
        self.queued_bytes.set(queued + size);
        let out = result.await.unwrap_or_else(|_| Err(self.closed_error()));
        self.queued_bytes
            .set(self.queued_bytes.get().saturating_sub(size));
        out
    }

    fn take_message_id(&self) -> u32 {
        let id = self.next_message.get();
        self.next_message.set(id.wrapping_add(1));
        id
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
                    self.emitter.emit("message", &value);
                    if let Some(peer) = self.peer.upgrade() {
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
            Input::Rtc(RtcEvent::ChannelOpen) => c.on_open(),
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

/// The sender: one job at a time, frames only while the window allows.
async fn send_loop(
    conn: Weak<ConnShared>,
    mut jobs: mpsc::UnboundedReceiver<SendJob>,
    mut low: mpsc::UnboundedReceiver<()>,
    opened: oneshot::Receiver<()>,
    window: crate::core::chunking::SendWindow,
) {
    let ready = opened.await.is_ok();
    while let Some(job) = jobs.next().await {
        let result = if ready {
            send_one(&conn, job.payload, job.progress.as_ref(), &mut low, window).await
        } else {
            Err(())
        };
        let result = result.map_err(|()| {
            conn.upgrade()
                .map(|c| c.closed_error())
                .unwrap_or_else(|| PeerError::Closed("the connection".into()))
        });
        let _ = job.done.send(result);
    }
}

async fn send_one(
    conn: &Weak<ConnShared>,
    payload: Payload,
    progress: Option<&Function>,
    low: &mut mpsc::UnboundedReceiver<()>,
    window: crate::core::chunking::SendWindow,
) -> Result<(), ()> {
    let (kind, bytes) = match payload {
        Payload::Bytes(kind, bytes) => (kind, bytes),
        Payload::Blob(blob) => {
            let buf = JsFuture::from(blob.array_buffer()).await.map_err(|_| ())?;
            (PayloadType::Binary, Uint8Array::new(&buf).to_vec())
        }
    };
    let id = conn.upgrade().ok_or(())?.take_message_id();
    let mut chunker = Chunker::new(id, kind, bytes);
    let total = chunker.total();
    let mut frames = 0usize;
    loop {
        let link = conn.upgrade().and_then(|c| c.link()).ok_or(())?;
        if !window.may_send(link.buffered()) {
            // Forget stale wake-ups, re-check, then wait for the next one.
            while low.try_recv().is_ok() {}
            if !window.may_send(link.buffered()) {
                drop(link);
                low.next().await.ok_or(())?;
                continue;
            }
        }
        let Some(frame) = chunker.next_frame() else {
            break;
        };
        link.send(&frame).map_err(|_| ())?;
        if let Some(c) = conn.upgrade() {
            c.keepalive.borrow_mut().sent(now());
        }
        frames += 1;
        if let Some(f) = progress {
            if frames % 64 == 0 || chunker.sent() == total {
                let _ = f.call2(
                    &JsValue::UNDEFINED,
                    &(chunker.sent() as f64).into(),
                    &(total as f64).into(),
                );
            }
        }
    }
    Ok(())
}

/// Strings as text, bytes as binary, Blobs read in order, anything else as
/// JSON.
fn to_payload(value: &JsValue) -> Result<Payload, PeerError> {
    if let Some(s) = value.as_string() {
        return Ok(Payload::Bytes(PayloadType::Text, s.into_bytes()));
    }
    if let Some(buf) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Payload::Bytes(
            PayloadType::Binary,
            Uint8Array::new(buf).to_vec(),
        ));
    }
    if js_sys::ArrayBuffer::is_view(value) {
        let buffer = Reflect::get(value, &"buffer".into()).map_err(|_| bad_value())?;
        let offset = Reflect::get(value, &"byteOffset".into())
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0) as u32;
        let len = Reflect::get(value, &"byteLength".into())
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0) as u32;
        let view = Uint8Array::new_with_byte_offset_and_length(&buffer, offset, len);
        return Ok(Payload::Bytes(PayloadType::Binary, view.to_vec()));
    }
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        return Ok(Payload::Blob(blob.clone()));
    }
    if value.is_undefined() || value.is_function() || value.is_symbol() {
        return Err(bad_value());
    }
    let json = js_sys::JSON::stringify(value).map_err(|e| {
        PeerError::InvalidArgument(format!(
            "the message cannot be sent as JSON: {}",
            crate::web::js_error_text(&e)
        ))
    })?;
    let json: String = json.into();
    Ok(Payload::Bytes(PayloadType::Json, json.into_bytes()))
}

fn bad_value() -> PeerError {
    PeerError::InvalidArgument("send() takes a string, ArrayBuffer, typed array, Blob, or a JSON value (not undefined or a function)".into())
}

fn decode_payload(kind: PayloadType, bytes: Vec<u8>) -> Result<JsValue, String> {
    match kind {
        PayloadType::Binary => Ok(Uint8Array::from(&bytes[..]).into()),
        PayloadType::Text => String::from_utf8(bytes)
            .map(JsValue::from)
            .map_err(|_| "text message is not UTF-8".into()),
        PayloadType::Json => {
            let text =
                String::from_utf8(bytes).map_err(|_| "JSON message is not UTF-8".to_string())?;
            js_sys::JSON::parse(&text).map_err(|_| "JSON message does not parse".into())
        }
    }
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
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let progress = Reflect::get(&options, &"onProgress".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        wasm_bindgen_futures::future_to_promise(async move {
            inner
                .send(message, progress)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(JsValue::from)
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
        if let Some(h) = inner.handle.borrow().as_ref() {
            return h.clone();
        }
        let h: JsValue = Connection {
            inner: inner.clone(),
        }
        .into();
        *inner.handle.borrow_mut() = Some(h.clone());
        h
    }
}

super::events::event_methods!(Connection);
