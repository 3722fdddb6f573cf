//! The broker WebSocket and the handlers it owns.

use std::rc::Weak;

use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use super::driver::Driver;

#[wasm_bindgen::prelude::wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    /// Listens to `error` (helpers.js says why).
    fn quiet(ws: JsValue) -> WebSocket;
}

/// An open (or opening) WebSocket and its handlers.
pub struct BrokerSocket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl BrokerSocket {
    /// Opens `url`; its events reach the engine tagged with `generation`,
    /// so that late events of a replaced socket are told apart.
    pub fn open(
        driver: Weak<Driver>,
        url: &str,
        generation: u64,
        ctor: &Option<js_sys::Function>,
    ) -> Result<Self, String> {
        let ws = quiet(super::construct(
            ctor,
            "WebSocket",
            "WebSocket",
            &[url.into()],
        )?);
        ws.set_binary_type(BinaryType::Arraybuffer);
        let d = driver.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            Driver::feed(&d, |e, now| e.handle_broker_open(generation, now));
        });
        let d = driver.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let data = ev.data();
            if let Some(text) = data.as_string() {
                Driver::feed(&d, |e, now| e.handle_broker_text(generation, &text, now));
            } else if data.is_instance_of::<js_sys::ArrayBuffer>() {
                // Relayed bytes (binary frames only carry the relay).
                let bytes = js_sys::Uint8Array::new(&data).to_vec();
                Driver::feed(&d, |e, now| e.handle_broker_binary(generation, &bytes, now));
            }
        });
        let d = driver;
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            let (code, reason) = (ev.code(), ev.reason());
            Driver::feed(&d, |e, now| {
                e.handle_broker_closed(generation, code, &reason, now)
            });
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Self {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Sends a text frame; `false` when the socket is not open.
    pub fn send(&self, text: &str) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && self.ws.send_with_str(text).is_ok()
    }

    /// Sends a binary frame (relayed bytes); `false` when not open.
    pub fn send_bytes(&self, bytes: &[u8]) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && self.ws.send_with_u8_array(bytes).is_ok()
    }

    /// Closes with a code (1000 releases the id at once on the broker).
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.ws.close_with_code_and_reason(code, reason);
    }
}

impl Drop for BrokerSocket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        if self.ws.ready_state() == WebSocket::CONNECTING
            || self.ws.ready_state() == WebSocket::OPEN
        {
            let _ = self.ws.close_with_code_and_reason(1000, "closed");
        }
    }
}
