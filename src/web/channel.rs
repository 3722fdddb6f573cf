//! One data channel and the handlers it owns: every event feeds the driver;
//! dropping the link unsets them and closes the channel.

use std::rc::Weak;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{Event, MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType};

use super::driver::Driver;
use super::js_error_text;
use crate::core::engine::ChanId;

/// A data channel with its handlers.
pub struct DcLink {
    dc: RtcDataChannel,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_low: Closure<dyn FnMut()>,
}

impl DcLink {
    /// Takes over `dc` for channel `chan` of the engine.
    pub fn new(driver: Weak<Driver>, chan: ChanId, dc: RtcDataChannel, low_water: usize) -> Self {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(low_water.min(u32::MAX as usize) as u32);
        let d = driver.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            Driver::feed(&d, |e, now| e.handle_channel_open(chan, now));
        });
        let d = driver.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let data = ev.data();
            // Frames are binary; a text frame is fed as its bytes and fails
            // to decode, which the engine reports as a protocol error.
            let bytes = match data.dyn_ref::<js_sys::ArrayBuffer>() {
                Some(buf) => Uint8Array::new(buf).to_vec(),
                None => data.as_string().unwrap_or_default().into_bytes(),
            };
            Driver::feed(&d, |e, now| e.handle_channel_message(chan, &bytes, now));
        });
        let d = driver.clone();
        let on_close = Closure::<dyn FnMut()>::new(move || {
            Driver::feed(&d, |e, now| e.handle_channel_closed(chan, now));
        });
        let d = driver.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |ev: Event| {
            let text = Reflect::get(&ev, &"error".into())
                .map(|err| js_error_text(&err))
                .unwrap_or_else(|_| "data channel error".into());
            Driver::feed(&d, |e, now| e.handle_channel_error(chan, &text, now));
        });
        let d = driver;
        let dc2 = dc.clone();
        let on_low = Closure::<dyn FnMut()>::new(move || {
            let amount = dc2.buffered_amount() as usize;
            Driver::feed(&d, |e, now| e.handle_buffered(chan, amount, now));
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

    pub fn is_open(&self) -> bool {
        self.dc.ready_state() == RtcDataChannelState::Open
    }

    /// Bytes queued in the channel and not yet sent.
    pub fn buffered(&self) -> usize {
        self.dc.buffered_amount() as usize
    }

    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.dc
            .send_with_u8_array(frame)
            .map_err(|e| js_error_text(&e))
    }

    /// Closes the channel (what is buffered still goes out); its handlers
    /// stay until the link is dropped.
    pub fn close(&self) {
        self.dc.close();
    }
}

impl Drop for DcLink {
    fn drop(&mut self) {
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onerror(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.close();
    }
}
