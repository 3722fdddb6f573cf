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

/// The WebRTC and WebSocket implementations a peer uses, and extra
/// `RTCConfiguration` fields: the browser's own unless the options name
/// others (Node.js has neither: `rtc: nodeDataChannelPolyfill, WebSocket`).
#[derive(Clone, Default)]
pub struct Platform {
    /// An `RTCPeerConnection` constructor.
    pub rtc: Option<js_sys::Function>,
    /// A `WebSocket` constructor.
    pub websocket: Option<js_sys::Function>,
    /// Fields copied onto every `RTCConfiguration` (`rtcConfig`).
    pub rtc_config: Option<JsValue>,
}

/// `new ctor(arg)`, or the global `name` when `ctor` is `None`; an error
/// that names the option to set when neither exists.
pub fn construct(
    ctor: &Option<js_sys::Function>,
    name: &str,
    option: &str,
    args: &[JsValue],
) -> Result<JsValue, String> {
    let ctor = match ctor {
        Some(c) => c.clone(),
        None => js_sys::Reflect::get(&js_sys::global(), &name.into())
            .ok()
            .and_then(|c| c.dyn_into::<js_sys::Function>().ok())
            .ok_or_else(|| {
                format!(
                    "this runtime has no {name}; pass an implementation with the `{option}` option (in Node.js: {})",
                    if option == "rtc" {
                        "rtc: await import('node-datachannel/polyfill')"
                    } else {
                        "WebSocket: (await import('ws')).WebSocket"
                    }
                )
            })?,
    };
    let list: js_sys::Array = args.iter().collect();
    js_sys::Reflect::construct(&ctor, &list).map_err(|e| js_error_text(&e))
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The page's (or worker's) `performance` object.
    type Clock;
    #[wasm_bindgen(method, js_name = now)]
    fn now_ms(this: &Clock) -> f64;
}

thread_local! {
    /// `performance`, looked up once: each input and command reads the
    /// clock, and a lookup by name decodes the name's string every time.
    static CLOCK: Option<Clock> = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .filter(|p| p.is_object())
        .map(wasm_bindgen::JsCast::unchecked_into);
}

/// Milliseconds on a monotonic clock (`performance.now()`), also in workers.
pub fn now() -> f64 {
    CLOCK.with(|c| match c {
        Some(p) => p.now_ms(),
        None => js_sys::Date::now(),
    })
}

/// A random number in `[0, 1)`.
pub fn random() -> f64 {
    js_sys::Math::random()
}

/// A random 53-bit integer (exact in a JS number).
pub fn random_u64() -> u64 {
    (random() * 9_007_199_254_740_992.0) as u64
}

/// The message of a JS exception, whatever was thrown: an `Error`'s
/// message, a string as it is, anything else as its JSON, or its type
/// (`undefined`, `function`). (Not `{:?}`: JsValue's Debug brings
/// wasm-bindgen's debugString into the glue.)
pub fn js_error_text(err: &JsValue) -> String {
    if let Some(e) = err.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    err.as_string()
        .or_else(|| js_sys::JSON::stringify(err).ok()?.as_string())
        .or_else(|| err.js_typeof().as_string())
        .unwrap_or_default()
}

/// Logs to the console (for errors thrown by user listeners, which must not
/// break the SDK).
pub fn console_error(text: &str, err: &JsValue) {
    web_sys_console_error(&JsValue::from_str(text), err);
}

/// Logs a line to the console (the `debug` option) with the console
/// method of its level.
pub fn console_log(level: crate::core::engine::LogLevel, text: &str) {
    use crate::core::engine::LogLevel;
    let text = JsValue::from_str(text);
    match level {
        LogLevel::Error => console_error1(&text),
        LogLevel::Warn => console_warn(&text),
        LogLevel::Info => console_info(&text),
        _ => console_debug(&text),
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error1(a: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(a: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = info)]
    fn console_info(a: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = debug)]
    fn console_debug(a: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_console_error(a: &JsValue, b: &JsValue);
}
