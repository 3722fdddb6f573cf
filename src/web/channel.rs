//! One extra data channel (a stream or a socket) and the handlers it owns.

use futures_channel::mpsc::UnboundedSender;
use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;
use web_sys::{Event, MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType};

use super::js_error_text;

/// What a channel reports.
#[derive(Debug)]
pub enum ChannelEvent {
    Open,
    Message(JsValue),
    Closed,
    Error(String),
}

/// Sends frames and reports how much is buffered: what the sender needs.
pub trait FrameSink {
    fn buffered(&self) -> usize;
    fn send_frame(&self, frame: &[u8]) -> Result<(), String>;
}

/// What a stream needs from its channel: a data channel, or an in-memory
/// loopback pipe.
pub trait StreamChannel: FrameSink {
    fn is_open(&self) -> bool;
    fn close(&self);
}

/// A data channel with its handlers.
pub struct ChannelLink {
    dc: RtcDataChannel,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_low: Closure<dyn FnMut()>,
}

impl ChannelLink {
    /// Takes over `dc`: events go to `tx`, `bufferedamountlow` to `low`.
    pub fn new(
        dc: RtcDataChannel,
        low_water: u32,
        tx: UnboundedSender<ChannelEvent>,
        low: UnboundedSender<()>,
    ) -> Self {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(low_water);
        let t = tx.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            let _ = t.unbounded_send(ChannelEvent::Open);
        });
        let t = tx.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let _ = t.unbounded_send(ChannelEvent::Message(e.data()));
        });
        let t = tx.clone();
        let on_close = Closure::<dyn FnMut()>::new(move || {
            let _ = t.unbounded_send(ChannelEvent::Closed);
        });
        let on_error = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
            let text = Reflect::get(&e, &"error".into())
                .map(|err| js_error_text(&err))
                .unwrap_or_else(|_| "data channel error".into());
            let _ = tx.unbounded_send(ChannelEvent::Error(text));
        });
        let on_low = Closure::<dyn FnMut()>::new(move || {
            let _ = low.unbounded_send(());
        });
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        dc.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        Self {
            dc,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
            _on_low: on_low,
        }
    }

    pub fn label(&self) -> String {
        self.dc.label()
    }
}

impl StreamChannel for ChannelLink {
    fn is_open(&self) -> bool {
        self.dc.ready_state() == RtcDataChannelState::Open
    }

    /// Closes the channel (after what is buffered).
    fn close(&self) {
        self.dc.close();
    }
}

/// One end of an in-memory pipe (a socket to `localhost`): frames become
/// the other end's `Message` events, as if they had crossed a channel.
pub struct LoopChannel {
    to_other: UnboundedSender<ChannelEvent>,
    open: std::cell::Cell<bool>,
}

impl LoopChannel {
    /// Two connected ends, given each end's event sender. Both are open at
    /// once (the `Open` events are queued for both drivers).
    pub fn pair(
        a_events: UnboundedSender<ChannelEvent>,
        b_events: UnboundedSender<ChannelEvent>,
    ) -> (Self, Self) {
        let _ = a_events.unbounded_send(ChannelEvent::Open);
        let _ = b_events.unbounded_send(ChannelEvent::Open);
        (
            Self {
                to_other: b_events,
                open: std::cell::Cell::new(true),
            },
            Self {
                to_other: a_events,
                open: std::cell::Cell::new(true),
            },
        )
    }
}

impl FrameSink for LoopChannel {
    fn buffered(&self) -> usize {
        0
    }

    fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        if !self.open.get() {
            return Err("the loopback socket is closed".into());
        }
        let buf = js_sys::Uint8Array::from(frame).buffer();
        self.to_other
            .unbounded_send(ChannelEvent::Message(buf.into()))
            .map_err(|_| "the other end is gone".to_string())
    }
}

impl StreamChannel for LoopChannel {
    fn is_open(&self) -> bool {
        self.open.get()
    }

    fn close(&self) {
        if self.open.replace(false) {
            let _ = self.to_other.unbounded_send(ChannelEvent::Closed);
        }
    }
}

impl FrameSink for ChannelLink {
    fn buffered(&self) -> usize {
        self.dc.buffered_amount() as usize
    }

    fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        self.dc
            .send_with_u8_array(frame)
            .map_err(|e| js_error_text(&e))
    }
}

impl Drop for ChannelLink {
    fn drop(&mut self) {
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onerror(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.close();
    }
}
