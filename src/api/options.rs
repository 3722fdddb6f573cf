//! Options objects. src/web/helpers.js checks them (unknown or mistyped
//! fields are refused with a message naming them) and hands them over as
//! one array (`peerOptions`, `streamOptions`); this module turns that into
//! the engine's settings.

use js_sys::{Array, Float64Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use super::errors::PeerError;
use crate::core::chunking::SendWindow;
use crate::core::engine::{ChannelPolicy, Config, LogLevel, RelayPolicy, Signalling};
use crate::protocol::IceServer;
pub use crate::web::driver::TokenSource;

#[wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = peerOptions)]
    fn peer_options_js(options: &JsValue, node: bool) -> Array;
    #[wasm_bindgen(js_name = streamOptions)]
    fn stream_options_js(options: &JsValue) -> Array;
    #[wasm_bindgen(js_name = brokerUrl, catch)]
    fn broker_url_js(raw: &str) -> Result<String, JsValue>;
}

/// The numeric options, in the order of `NUMS` in helpers.js (the numeric
/// fields of `PEER_FIELDS` as listed there; NaN unset;
/// `ordered` 0 or 1, `debug` a [`LogLevel`] and `relay` a [`RelayPolicy`]
/// by their order).
#[derive(Clone, Copy)]
enum Num {
    MaxMessageSize,
    ConnectTimeout,
    RequestTimeout,
    KeepAliveInterval,
    KeepAliveTimeout,
    IceRestarts,
    IceRestartTimeout,
    DisconnectedGrace,
    BrokerKeepAlive,
    Ordered,
    MaxRetransmits,
    BufferHigh,
    BufferLow,
    MemoryBudget,
    ConnectionBudget,
    MaxStreams,
    MaxConnections,
    CloseTimeout,
    MaxOffersPerMinute,
    Debug,
    Relay,
    RelayAfter,
    ResendBuffer,
    DirectRetry,
}

/// `createPeer` / `Node` options, checked by helpers.js.
pub struct PeerOptions {
    nums: Vec<f64>,
    /// The broker URLs, each normalised (`ws://host/ws`).
    pub broker: Option<Vec<String>>,
    pub id: Option<String>,
    pub ice_servers: Option<Vec<IceServer>>,
    pub token: Option<TokenSource>,
    pub platform: crate::web::Platform,
    /// `new Node({ hub })`.
    pub hub: JsValue,
}

impl PeerOptions {
    fn num(&self, n: Num) -> Option<u64> {
        self.nums
            .get(n as usize)
            .filter(|v| !v.is_nan())
            .map(|v| *v as u64)
    }
}

/// A value helpers.js gave as `undefined` or `null`, as `None`.
fn given(v: JsValue) -> Option<JsValue> {
    (!v.is_undefined() && !v.is_null()).then_some(v)
}

/// `createPeer`'s options (`node`: `new Node`'s, with `hub`) checked and
/// read; `check_id` runs between the checks of the fields and those of
/// the token, platform and broker URLs (the order the errors had when the
/// wasm read the options itself).
pub fn peer_options(
    options: &JsValue,
    node: bool,
    check_id: impl FnOnce(Option<&str>) -> Result<(), PeerError>,
) -> Result<PeerOptions, PeerError> {
    let r = peer_options_js(options, node);
    let error = r.get(0).as_string();
    let late = r.get(1).is_truthy();
    if let Some(e) = error.as_ref().filter(|_| !late) {
        return Err(PeerError::InvalidArgument(e.clone()));
    }
    let id = r.get(4).as_string();
    check_id(id.as_deref())?;
    if let Some(e) = error {
        return Err(PeerError::InvalidArgument(e));
    }
    let strings = |v: JsValue| {
        given(v).map(|v| {
            Array::from(&v)
                .iter()
                .filter_map(|s| s.as_string())
                .collect::<Vec<_>>()
        })
    };
    let ice_servers = match strings(r.get(5)) {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|t| {
                    IceServer::decode(t).map_err(|_| {
                        PeerError::InvalidArgument(
                            "options.iceServers must hold objects like { urls: 'stun:host:3478', username?, credential? }".into(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let token = given(r.get(6)).map(|t| match t.as_string() {
        Some(s) => TokenSource::Fixed(s),
        None => TokenSource::Provider(t.unchecked_into()),
    });
    Ok(PeerOptions {
        nums: r.get(2).unchecked_into::<Float64Array>().to_vec(),
        broker: strings(r.get(3)),
        id,
        ice_servers,
        token,
        platform: crate::web::Platform {
            rtc: given(r.get(7)).map(JsCast::unchecked_into),
            websocket: given(r.get(8)).map(JsCast::unchecked_into),
            rtc_config: given(r.get(9)),
        },
        hub: r.get(10),
    })
}

/// Default largest message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// `ws://host:port` (path added), `http(s)://` (scheme changed) or a full
/// `ws(s)://host/path`.
pub fn broker_url(raw: &str) -> Result<String, PeerError> {
    broker_url_js(raw).map_err(|e| PeerError::InvalidArgument(e.as_string().unwrap_or_default()))
}

/// The engine settings for checked options: the broker URLs (required
/// unless the peer talks through a JS hub; helpers.js refused a peer
/// without), every default applied, and the combinations that cannot
/// work refused by name.
pub fn engine_config(o: PeerOptions, hub: bool) -> Result<Config, PeerError> {
    let signalling = if hub {
        Signalling::Hub
    } else {
        Signalling::Broker {
            urls: o.broker.clone().unwrap_or_default(),
            renewable_token: matches!(o.token, Some(TokenSource::Provider(_))),
        }
    };
    let mut c = Config::new(signalling);
    let n = |k: Num, default: u64| o.num(k).unwrap_or(default);
    let size = |k: Num, default: usize| o.num(k).map_or(default, |v| v as usize);
    c.window = SendWindow {
        high: size(Num::BufferHigh, c.window.high),
        low: size(Num::BufferLow, c.window.low),
    };
    if c.window.low >= c.window.high || c.window.high > 8 * 1024 * 1024 {
        return Err(PeerError::InvalidArgument(
            "bufferLow must be below bufferHigh, and bufferHigh at most 8 MiB".into(),
        ));
    }
    c.keep_alive_interval = n(Num::KeepAliveInterval, c.keep_alive_interval);
    c.keep_alive_timeout = n(Num::KeepAliveTimeout, c.keep_alive_timeout);
    if c.keep_alive_timeout <= c.keep_alive_interval {
        return Err(PeerError::InvalidArgument(
            "keepAliveTimeout must be longer than keepAliveInterval".into(),
        ));
    }
    c.ice_restarts = n(Num::IceRestarts, c.ice_restarts as u64) as u32;
    c.ice_restart_timeout = n(Num::IceRestartTimeout, c.ice_restart_timeout);
    c.disconnected_grace = n(Num::DisconnectedGrace, c.disconnected_grace);
    c.broker_keep_alive = n(Num::BrokerKeepAlive, c.broker_keep_alive);
    c.relay = match o.num(Num::Relay) {
        Some(1) => RelayPolicy::Always,
        Some(2) => RelayPolicy::Never,
        Some(_) => RelayPolicy::Fallback,
        None => c.relay,
    };
    c.relay_after = n(Num::RelayAfter, c.relay_after);
    c.resend_buffer = size(Num::ResendBuffer, c.resend_buffer);
    if c.resend_buffer < 64 * 1024 {
        return Err(PeerError::InvalidArgument(
            "resendBuffer must be at least 64 KiB (65536)".into(),
        ));
    }
    c.direct_retry = n(Num::DirectRetry, c.direct_retry);
    c.max_message_size = size(Num::MaxMessageSize, DEFAULT_MAX_MESSAGE).min(u32::MAX as usize);
    c.connect_timeout = n(Num::ConnectTimeout, c.connect_timeout);
    c.request_timeout = n(Num::RequestTimeout, c.request_timeout);
    c.channel = ChannelPolicy {
        ordered: o.num(Num::Ordered) != Some(0),
        max_retransmits: o.num(Num::MaxRetransmits).map(|v| v as u16),
    };
    c.memory_budget = size(Num::MemoryBudget, c.memory_budget);
    c.connection_budget = size(Num::ConnectionBudget, c.connection_budget);
    c.max_streams = size(Num::MaxStreams, c.max_streams);
    c.max_connections = size(Num::MaxConnections, c.max_connections);
    c.close_timeout = n(Num::CloseTimeout, c.close_timeout);
    c.max_offers_per_minute = n(Num::MaxOffersPerMinute, c.max_offers_per_minute as u64) as u32;
    c.debug = match o.num(Num::Debug) {
        Some(1) => LogLevel::Error,
        Some(2) => LogLevel::Warn,
        Some(3) => LogLevel::Info,
        Some(4) => LogLevel::Debug,
        _ => LogLevel::Off,
    };
    c.id = o.id;
    c.ice_servers = o.ice_servers;
    Ok(c)
}

/// `{ ordered, maxRetransmits }` from a JS options object, over `base`.
pub fn policy_from(options: &JsValue, base: ChannelPolicy) -> Result<ChannelPolicy, PeerError> {
    let r = stream_options_js(options);
    if let Some(e) = r.get(0).as_string() {
        return Err(PeerError::InvalidArgument(e));
    }
    let nums = r.get(1).unchecked_into::<Float64Array>().to_vec();
    let num = |i: usize| nums.get(i).copied().filter(|v| !v.is_nan());
    Ok(ChannelPolicy {
        ordered: num(0).map_or(base.ordered, |v| v != 0.0),
        max_retransmits: num(1).map(|v| v as u16).or(base.max_retransmits),
    })
}

/// The longest delay a browser timer takes (`setTimeout` wraps past
/// 2³¹ − 1 ms, about 24.8 days, and fires at once).
pub const MAX_DELAY_MS: u64 = i32::MAX as u64;

/// Field `name` of `options` in milliseconds: `None` when absent; a
/// negative number, NaN or anything but a number is a named error;
/// `Infinity` and values past [`MAX_DELAY_MS`] wait that long.
pub fn millis_field(options: &JsValue, name: &str) -> Result<Option<u64>, PeerError> {
    let v = js_sys::Reflect::get(options, &name.into()).unwrap_or(JsValue::UNDEFINED);
    let Some(v) = given(v) else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(ms) if ms >= 0.0 => Ok(Some((ms as u64).min(MAX_DELAY_MS))),
        Some(_) => Err(PeerError::InvalidArgument(format!(
            "options.{name} must be a number of milliseconds (0 or more), got {}",
            number_text(&v)
        ))),
        None => Err(PeerError::InvalidArgument(format!(
            "options.{name} must be a number of milliseconds (0 or more), got a {}",
            v.js_typeof().as_string().unwrap_or_default()
        ))),
    }
}

/// A port number from JavaScript: a whole number from 0 to 65535, else a
/// named error (wasm-bindgen would wrap 70000 to 4464).
pub fn port_arg(port: f64) -> Result<u16, PeerError> {
    if port.fract() == 0.0 && (0.0..=65535.0).contains(&port) {
        Ok(port as u16)
    } else {
        Err(PeerError::InvalidArgument(format!(
            "a port must be a whole number from 0 to 65535, got {}",
            number_text(&port.into())
        )))
    }
}

/// A number as JavaScript writes it (`NaN`, `-1`, `7.5`), without the
/// wasm's own float formatting.
fn number_text(n: &JsValue) -> String {
    js_sys::Number::from(n.clone())
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}
