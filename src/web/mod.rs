//! The browser driver: the only code that touches WebSocket,
//! RTCPeerConnection, RTCDataChannel and timers. [`driver::Driver`] owns
//! one peer's engine and browser objects; each wrapper (`socket`, `rtc`,
//! `channel`, `page`) owns the `Closure`s it installs, and dropping it
//! unsets every handler and closes the browser object. A callback does one
//! thing: it hands its event to the driver as an engine input (the driver
//! borrows the engine only for that call, never while user code runs).

pub mod cell;
pub mod channel;
pub mod driver;
pub mod page;
pub mod rtc;
pub mod socket;

use wasm_bindgen::{JsCast, JsValue};

/// Milliseconds on a monotonic clock (`performance.now()`), also in workers.
pub fn now() -> f64 {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into())
                .ok()?
                .dyn_into::<js_sys::Function>()
                .ok()?;
            now.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// A random number in `[0, 1)`.
pub fn random() -> f64 {
    js_sys::Math::random()
}

/// A random 53-bit integer (exact in a JS number).
pub fn random_u64() -> u64 {
    (random() * 9_007_199_254_740_992.0) as u64
}

/// The message of a JS exception, whatever was thrown.
pub fn js_error_text(err: &JsValue) -> String {
    if let Some(e) = err.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    err.as_string().unwrap_or_else(|| format!("{err:?}"))
}

/// Logs to the console (for errors thrown by user listeners, which must not
/// break the SDK).
pub fn console_error(text: &str, err: &JsValue) {
    web_sys_console_error(&JsValue::from_str(text), err);
}

/// Logs a line to the console (the `debug` option).
pub fn console_log(text: &str) {
    web_sys_console_log(&JsValue::from_str(text));
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = log)]
    fn web_sys_console_log(a: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_console_error(a: &JsValue, b: &JsValue);
}
