//! The sending half shared by connections, streams and sockets: a queue of
//! jobs drained by one task per channel, in order. Each message is cut into
//! frames (`core::chunking`) that are handed to the channel only while its
//! `bufferedAmount` is under the high mark. Control frames (end, pull) travel
//! through the same queue, so they never overtake data sent before them.

use std::cell::Cell;

use super::cell::StateCell;
use std::rc::{Rc, Weak};

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, spawn_local};

use super::errors::PeerError;
use crate::core::chunking::{Chunker, SendWindow};
use crate::protocol::frames::{MAX_CHUNK_BYTES, PayloadType};
use crate::web::channel::FrameSink;

/// What a channel's owner provides to its sender task.
pub(crate) trait Outlet {
    /// Where frames go (`None` once closed).
    fn sink(&self) -> Option<Rc<dyn FrameSink>>;
    /// Called after every frame handed to the channel.
    fn on_sent(&self) {}
    /// The error for sends that cannot complete because it closed.
    fn closed_error(&self) -> PeerError;
}

/// What a job carries.
pub(crate) enum Payload {
    Bytes(PayloadType, Vec<u8>),
    Blob(web_sys::Blob),
    /// A control frame, sent as is.
    Frame(Vec<u8>),
}

struct SendJob {
    payload: Payload,
    progress: Option<Function>,
    done: oneshot::Sender<Result<(), PeerError>>,
}

/// Limits a send is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_message: usize,
    pub reliable: bool,
}

/// The queue in front of one channel's sender task.
pub(crate) struct SendQueue {
    jobs: StateCell<Option<mpsc::UnboundedSender<SendJob>>>,
    queued: Cell<usize>,
}

impl SendQueue {
    /// Starts the sender task. It waits for `opened` before sending, and
    /// for `low` (each `bufferedamountlow`) when the window is full.
    pub fn start(
        outlet: Weak<dyn Outlet>,
        low: mpsc::UnboundedReceiver<()>,
        opened: oneshot::Receiver<()>,
        window: SendWindow,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded();
        spawn_local(send_loop(outlet, rx, low, opened, window));
        Self {
            jobs: StateCell::new(Some(tx)),
            queued: Cell::new(0),
        }
    }

    /// No more jobs: the task ends after rejecting what is left.
    pub fn close(&self) {
        self.jobs.borrow_mut().take();
    }

    fn submit(
        &self,
        payload: Payload,
        progress: Option<Function>,
    ) -> Option<oneshot::Receiver<Result<(), PeerError>>> {
        let (done, result) = oneshot::channel();
        let job = SendJob {
            payload,
            progress,
            done,
        };
        let ok = self
            .jobs
            .borrow()
            .as_ref()
            .is_some_and(|tx| tx.unbounded_send(job).is_ok());
        ok.then_some(result)
    }

    /// Queues a user value; resolves when every byte is handed over.
    pub async fn send_value(
        &self,
        value: &JsValue,
        progress: Option<Function>,
        limits: Limits,
        closed: impl Fn() -> PeerError,
    ) -> Result<(), PeerError> {
        let payload = to_payload(value)?;
        let size = match &payload {
            Payload::Bytes(_, b) | Payload::Frame(b) => b.len(),
            Payload::Blob(b) => b.size() as usize,
        };
        if size > limits.max_message {
            return Err(PeerError::MessageTooLarge {
                size,
                max: limits.max_message,
                hint: "; raise maxMessageSize in the options",
            });
        }
        if !limits.reliable && size > MAX_CHUNK_BYTES {
            return Err(PeerError::MessageTooLarge {
                size,
                max: MAX_CHUNK_BYTES,
                hint: " for an unreliable channel (ordered: false or maxRetransmits); use a reliable one for large data",
            });
        }
        // Bound what may wait: a few maximum-size messages.
        let queued = self.queued.get();
        if queued + size > limits.max_message.saturating_mul(4) {
            return Err(PeerError::QueueFull(format!(
                "{queued} bytes are already waiting to be sent; await earlier sends first"
            )));
        }
        let result = self.submit(payload, progress).ok_or_else(&closed)?;
        self.queued.set(queued + size);
        let out = result.await.unwrap_or_else(|_| Err(closed()));
        self.queued.set(self.queued.get().saturating_sub(size));
        out
    }

    /// Queues a control frame behind everything sent before it.
    pub async fn send_control(
        &self,
        frame: Vec<u8>,
        closed: impl Fn() -> PeerError,
    ) -> Result<(), PeerError> {
        let result = self
            .submit(Payload::Frame(frame), None)
            .ok_or_else(&closed)?;
        result.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Queues already-encoded bytes as one message (used by rest).
    pub async fn send_bytes(
        &self,
        kind: PayloadType,
        bytes: Vec<u8>,
        closed: impl Fn() -> PeerError,
    ) -> Result<(), PeerError> {
        let result = self
            .submit(Payload::Bytes(kind, bytes), None)
            .ok_or_else(&closed)?;
        result.await.unwrap_or_else(|_| Err(closed()))
    }
}

async fn send_loop(
    outlet: Weak<dyn Outlet>,
    mut jobs: mpsc::UnboundedReceiver<SendJob>,
    mut low: mpsc::UnboundedReceiver<()>,
    opened: oneshot::Receiver<()>,
    window: SendWindow,
) {
    let ready = opened.await.is_ok();
    let mut next_id: u32 = 1;
    while let Some(job) = jobs.next().await {
        let result = if ready {
            send_one(
                &outlet,
                job.payload,
                job.progress.as_ref(),
                &mut low,
                window,
                &mut next_id,
            )
            .await
        } else {
            Err(())
        };
        let result = result.map_err(|()| {
            outlet
                .upgrade()
                .map(|o| o.closed_error())
                .unwrap_or_else(|| PeerError::Closed("the channel".into()))
        });
        let _ = job.done.send(result);
    }
}

async fn send_one(
    outlet: &Weak<dyn Outlet>,
    payload: Payload,
    progress: Option<&Function>,
    low: &mut mpsc::UnboundedReceiver<()>,
    window: SendWindow,
    next_id: &mut u32,
) -> Result<(), ()> {
    let (kind, bytes) = match payload {
        Payload::Bytes(kind, bytes) => (kind, bytes),
        Payload::Blob(blob) => {
            let buf = JsFuture::from(blob.array_buffer()).await.map_err(|_| ())?;
            (PayloadType::Binary, Uint8Array::new(&buf).to_vec())
        }
        Payload::Frame(frame) => {
            let sink = outlet.upgrade().and_then(|o| o.sink()).ok_or(())?;
            sink.send_frame(&frame).map_err(|_| ())?;
            return Ok(());
        }
    };
    let id = *next_id;
    *next_id = next_id.wrapping_add(1);
    let mut chunker = Chunker::new(id, kind, bytes);
    let total = chunker.total();
    let mut frames = 0usize;
    loop {
        let sink = outlet.upgrade().and_then(|o| o.sink()).ok_or(())?;
        if !window.may_send(sink.buffered()) {
            // Forget stale wake-ups, re-check, then wait for the next one.
            while low.try_recv().is_ok() {}
            if !window.may_send(sink.buffered()) {
                drop(sink);
                low.next().await.ok_or(())?;
                continue;
            }
        }
        let Some(frame) = chunker.next_frame() else {
            break;
        };
        sink.send_frame(&frame).map_err(|_| ())?;
        if let Some(o) = outlet.upgrade() {
            o.on_sent();
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

/// `options.onProgress` of a `send()` call, if it is a function.
pub(crate) fn progress_option(options: Option<super::SendOptionsArg>) -> Option<Function> {
    let options: JsValue = options.map(Into::into)?;
    Reflect::get(&options, &"onProgress".into())
        .ok()?
        .dyn_into::<Function>()
        .ok()
}

/// The bytes an ArrayBufferView (typed array, DataView) looks at, copied.
pub(crate) fn view_bytes(value: &JsValue) -> Option<Vec<u8>> {
    if !js_sys::ArrayBuffer::is_view(value) {
        return None;
    }
    let number = |k: &str| {
        Reflect::get(value, &k.into())
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0) as u32
    };
    let buffer = Reflect::get(value, &"buffer".into()).ok()?;
    Some(
        Uint8Array::new_with_byte_offset_and_length(
            &buffer,
            number("byteOffset"),
            number("byteLength"),
        )
        .to_vec(),
    )
}

/// Strings as text, bytes as binary, Blobs read in order, anything else as
/// JSON.
pub(crate) fn to_payload(value: &JsValue) -> Result<Payload, PeerError> {
    if let Some(s) = value.as_string() {
        return Ok(Payload::Bytes(PayloadType::Text, s.into_bytes()));
    }
    if let Some(buf) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Payload::Bytes(
            PayloadType::Binary,
            Uint8Array::new(buf).to_vec(),
        ));
    }
    if let Some(bytes) = view_bytes(value) {
        return Ok(Payload::Bytes(PayloadType::Binary, bytes));
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

/// A received message as the JS value the user gets.
pub(crate) fn decode_payload(kind: PayloadType, bytes: Vec<u8>) -> Result<JsValue, String> {
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
