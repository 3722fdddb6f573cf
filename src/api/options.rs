//! Options objects, read field by field from plain JavaScript objects:
//! unknown or mistyped fields are refused with a message naming them.

use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use super::errors::PeerError;
use crate::core::chunking::SendWindow;
use crate::core::engine::{ChannelPolicy, Config, Signalling};
use crate::protocol::IceServer;
pub use crate::web::driver::TokenSource;

/// `options.broker`: one URL, or a list to fail over between.
#[derive(Debug, Clone)]
pub enum BrokerOption {
    One(String),
    List(Vec<String>),
}

/// `createPeer` options (see the TypeScript `PeerOptions`).
#[derive(Debug, Clone, Default)]
pub struct RawPeerOptions {
    pub broker: Option<BrokerOption>,
    pub id: Option<String>,
    pub ice_servers: Option<Vec<IceServer>>,
    pub max_message_size: Option<usize>,
    pub connect_timeout: Option<u64>,
    pub request_timeout: Option<u64>,
    pub keep_alive_interval: Option<u64>,
    pub keep_alive_timeout: Option<u64>,
    pub ice_restarts: Option<u32>,
    pub ice_restart_timeout: Option<u64>,
    pub disconnected_grace: Option<u64>,
    pub broker_keep_alive: Option<u64>,
    pub relay: Option<crate::core::engine::RelayPolicy>,
    pub relay_after: Option<u64>,
    pub resend_buffer: Option<usize>,
    pub direct_retry: Option<u64>,
    pub ordered: Option<bool>,
    pub max_retransmits: Option<u16>,
    pub buffer_high: Option<usize>,
    pub buffer_low: Option<usize>,
    pub memory_budget: Option<usize>,
    pub connection_budget: Option<usize>,
    pub max_streams: Option<usize>,
    pub max_connections: Option<usize>,
    pub close_timeout: Option<u64>,
    pub max_offers_per_minute: Option<u32>,
    pub debug: Option<crate::core::engine::LogLevel>,
}

/// `options.token`: a string, or a function returning a string or a
/// Promise of one.
pub fn token_source(options: &JsValue) -> Result<Option<TokenSource>, PeerError> {
    if !options.is_object() {
        return Ok(None);
    }
    let token = js_sys::Reflect::get(options, &"token".into()).unwrap_or(JsValue::UNDEFINED);
    if token.is_undefined() || token.is_null() {
        return Ok(None);
    }
    if let Some(s) = token.as_string() {
        return Ok(Some(TokenSource::Fixed(s)));
    }
    match token.dyn_into::<js_sys::Function>() {
        Ok(f) => Ok(Some(TokenSource::Provider(f))),
        Err(_) => Err(PeerError::InvalidArgument(
            "options.token must be a string, or a function returning a string or a Promise of one"
                .into(),
        )),
    }
}

/// What an option must be, checked on the JS value before serde reads it,
/// so that the error names the option (serde's own says only "invalid type:
/// string \"soon\", expected u64 at line 1 column 56").
#[derive(Debug, Clone, Copy)]
pub enum Want {
    Millis,
    Bytes,
    /// A whole number up to this.
    Count(u32),
    Bool,
    Text,
    /// A string, or an array (its items are checked where it is read).
    TextOrList,
    List,
    /// Checked where it is read.
    Any,
    /// `true`, `false`, or a log level name.
    Level,
    /// `'fallback'`, `'always'` or `'never'`.
    Relay,
}

impl Want {
    fn expects(self) -> String {
        match self {
            Want::Millis => "a number of milliseconds".into(),
            Want::Bytes => "a number of bytes".into(),
            Want::Count(max) => format!("a whole number from 0 to {max}"),
            Want::Bool => "true or false".into(),
            Want::Text => "a string".into(),
            Want::TextOrList => "a string or an array of strings".into(),
            Want::List => "an array".into(),
            Want::Any => "set".into(),
            Want::Level => "true, false, 'error', 'warn', 'info' or 'debug'".into(),
            Want::Relay => "'fallback', 'always' or 'never'".into(),
        }
    }

    fn accepts(self, v: &JsValue) -> bool {
        let whole = |max: f64| {
            v.as_f64()
                .is_some_and(|n| n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= max)
        };
        match self {
            Want::Millis | Want::Bytes => whole(9_007_199_254_740_991.0),
            Want::Count(max) => whole(max as f64),
            Want::Bool => v.as_bool().is_some(),
            Want::Text => v.is_string(),
            Want::TextOrList => v.is_string() || js_sys::Array::is_array(v),
            Want::List => js_sys::Array::is_array(v),
            Want::Any => true,
            Want::Relay => v
                .as_string()
                .is_some_and(|s| crate::core::engine::RelayPolicy::parse(&s).is_some()),
            Want::Level => {
                v.as_bool().is_some()
                    || v.as_string()
                        .is_some_and(|s| crate::core::engine::LogLevel::parse(&s).is_some())
            }
        }
    }
}

/// The `createPeer` / `Node` options with a type to check.
pub const PEER_OPTION_TYPES: &[(&str, Want)] = &[
    ("broker", Want::TextOrList),
    ("id", Want::Text),
    ("iceServers", Want::List),
    ("maxMessageSize", Want::Bytes),
    ("connectTimeout", Want::Millis),
    ("requestTimeout", Want::Millis),
    ("keepAliveInterval", Want::Millis),
    ("keepAliveTimeout", Want::Millis),
    ("iceRestarts", Want::Count(100)),
    ("iceRestartTimeout", Want::Millis),
    ("disconnectedGrace", Want::Millis),
    ("brokerKeepAlive", Want::Millis),
    ("ordered", Want::Bool),
    ("maxRetransmits", Want::Count(u16::MAX as u32)),
    ("bufferHigh", Want::Bytes),
    ("bufferLow", Want::Bytes),
    ("memoryBudget", Want::Bytes),
    ("connectionBudget", Want::Bytes),
    ("maxStreams", Want::Count(65_535)),
    ("maxConnections", Want::Count(65_535)),
    ("closeTimeout", Want::Millis),
    ("maxOffersPerMinute", Want::Count(1_000_000)),
    ("debug", Want::Level),
    ("relay", Want::Relay),
    ("relayAfter", Want::Millis),
    ("resendBuffer", Want::Bytes),
    ("directRetry", Want::Millis),
    // Read by `token_source`.
    ("token", Want::Any),
    // Read by `platform`.
    ("rtc", Want::Any),
    ("WebSocket", Want::Any),
    ("rtcConfig", Want::Any),
];

/// `options.rtc`, `options.WebSocket` and `options.rtcConfig`.
pub fn platform(options: &JsValue) -> Result<crate::web::Platform, PeerError> {
    let mut p = crate::web::Platform::default();
    if !options.is_object() {
        return Ok(p);
    }
    let get = |k: &str| {
        Reflect::get(options, &k.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    if let Some(rtc) = get("rtc") {
        // The constructor itself, or a module/object holding one
        // (`import * as rtc from 'node-datachannel/polyfill'`).
        let ctor = match rtc.dyn_ref::<js_sys::Function>() {
            Some(f) => Some(f.clone()),
            None => Reflect::get(&rtc, &"RTCPeerConnection".into())
                .ok()
                .and_then(|c| c.dyn_into::<js_sys::Function>().ok()),
        };
        p.rtc = Some(ctor.ok_or_else(|| {
            PeerError::InvalidArgument(
                "options.rtc must be an RTCPeerConnection constructor or an object with one (e.g. the module node-datachannel/polyfill)".into(),
            )
        })?);
    }
    if let Some(ws) = get("WebSocket") {
        p.websocket = Some(ws.dyn_into::<js_sys::Function>().map_err(|_| {
            PeerError::InvalidArgument(
                "options.WebSocket must be a WebSocket constructor (e.g. the ws package's WebSocket)".into(),
            )
        })?);
    }
    if let Some(config) = get("rtcConfig") {
        if !config.is_object() || js_sys::Array::is_array(&config) {
            return Err(PeerError::InvalidArgument(
                "options.rtcConfig must be an RTCConfiguration object, e.g. { iceTransportPolicy: 'relay' }".into(),
            ));
        }
        p.rtc_config = Some(config);
    }
    Ok(p)
}

/// `createPeer` / `Node` options, checked and read.
pub fn parse_peer_options(value: &JsValue) -> Result<Option<RawPeerOptions>, PeerError> {
    let Some(o) = Fields::check(value, "options", PEER_OPTION_TYPES)? else {
        return Ok(None);
    };
    let ice_servers = match o.get("iceServers") {
        None => None,
        Some(list) => Some(
            js_sys::Array::from(&list)
                .iter()
                .map(|s| {
                    js_sys::JSON::stringify(&s)
                        .ok()
                        .and_then(|t| t.as_string())
                        .and_then(|t| IceServer::decode(&t).ok())
                        .ok_or_else(|| {
                            PeerError::InvalidArgument(
                                "options.iceServers must hold objects like { urls: 'stun:host:3478', username?, credential? }".into(),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let broker = match o.get("broker") {
        None => None,
        Some(v) => Some(match v.as_string() {
            Some(url) => BrokerOption::One(url),
            None => BrokerOption::List(
                js_sys::Array::from(&v)
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        item.as_string().ok_or_else(|| {
                            PeerError::InvalidArgument(format!(
                                "options.broker[{i}] must be a broker URL string, got {}",
                                describe(&item)
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        }),
    };
    Ok(Some(RawPeerOptions {
        broker,
        id: o.text("id"),
        ice_servers,
        max_message_size: o.size("maxMessageSize"),
        connect_timeout: o.millis("connectTimeout"),
        request_timeout: o.millis("requestTimeout"),
        keep_alive_interval: o.millis("keepAliveInterval"),
        keep_alive_timeout: o.millis("keepAliveTimeout"),
        ice_restarts: o.millis("iceRestarts").map(|n| n as u32),
        ice_restart_timeout: o.millis("iceRestartTimeout"),
        disconnected_grace: o.millis("disconnectedGrace"),
        broker_keep_alive: o.millis("brokerKeepAlive"),
        relay: o
            .text("relay")
            .and_then(|s| crate::core::engine::RelayPolicy::parse(&s)),
        relay_after: o.millis("relayAfter"),
        resend_buffer: o.size("resendBuffer"),
        direct_retry: o.millis("directRetry"),
        ordered: o.flag("ordered"),
        max_retransmits: o.millis("maxRetransmits").map(|n| n as u16),
        buffer_high: o.size("bufferHigh"),
        buffer_low: o.size("bufferLow"),
        memory_budget: o.size("memoryBudget"),
        connection_budget: o.size("connectionBudget"),
        max_streams: o.size("maxStreams"),
        max_connections: o.size("maxConnections"),
        close_timeout: o.millis("closeTimeout"),
        max_offers_per_minute: o.millis("maxOffersPerMinute").map(|n| n as u32),
        debug: o.get("debug").and_then(|v| match v.as_bool() {
            Some(true) => Some(crate::core::engine::LogLevel::Debug),
            Some(false) => Some(crate::core::engine::LogLevel::Off),
            None => crate::core::engine::LogLevel::parse(&v.as_string()?),
        }),
    }))
}

/// An options object whose fields were checked against their [`Want`]s;
/// the getters read the set ones (absent, `undefined` and `null` are unset).
pub struct Fields(JsValue);

impl Fields {
    /// `None` for `undefined` or `null`; an error naming the field for an
    /// unknown field or one of the wrong type.
    pub fn check(
        value: &JsValue,
        what: &str,
        fields: &[(&str, Want)],
    ) -> Result<Option<Self>, PeerError> {
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        if !value.is_object() || js_sys::Array::is_array(value) {
            return Err(PeerError::InvalidArgument(format!(
                "{what} must be a plain object, got {}",
                describe(value)
            )));
        }
        for key in Object::keys(value.unchecked_ref::<Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !fields.iter().any(|(name, _)| *name == key) {
                let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                return Err(PeerError::InvalidArgument(format!(
                    "{what} has no field \"{key}\" (known: {})",
                    known.join(", ")
                )));
            }
        }
        check_types(value, what, fields)?;
        Ok(Some(Self(value.clone())))
    }

    pub fn get(&self, name: &str) -> Option<JsValue> {
        Reflect::get(&self.0, &name.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| v.as_string())
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(|v| v.as_bool())
    }

    /// A whole number (checked by [`Want`]).
    pub fn millis(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.as_f64()).map(|n| n as u64)
    }

    pub fn size(&self, name: &str) -> Option<usize> {
        self.millis(name).map(|n| n as usize)
    }
}

/// How a JS value reads in an error message: `the string "soon"`.
fn describe(v: &JsValue) -> String {
    if let Some(s) = v.as_string() {
        return format!("the string \"{s}\"");
    }
    if let Some(b) = v.as_bool() {
        return format!("the boolean {b}");
    }
    if v.as_f64().is_some() {
        // The browser's own spelling of the number (no float formatting
        // in the wasm for one error message).
        let text = js_sys::JSON::stringify(v)
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default();
        return format!("the number {text}");
    }
    if js_sys::Array::is_array(v) {
        return "an array".into();
    }
    if v.is_function() {
        return "a function".into();
    }
    if v.is_object() {
        return "an object".into();
    }
    v.js_typeof()
        .as_string()
        .unwrap_or_else(|| "a value".into())
}

/// Checks the type of each field in `fields` present on `value` (absent,
/// `undefined` and `null` mean unset).
pub fn check_types(value: &JsValue, what: &str, fields: &[(&str, Want)]) -> Result<(), PeerError> {
    if !value.is_object() {
        return Ok(());
    }
    for (name, want) in fields {
        let v = js_sys::Reflect::get(value, &(*name).into()).unwrap_or(JsValue::UNDEFINED);
        if v.is_undefined() || v.is_null() || want.accepts(&v) {
            continue;
        }
        return Err(PeerError::InvalidArgument(format!(
            "{what}.{name} must be {}, got {}",
            want.expects(),
            describe(&v)
        )));
    }
    Ok(())
}

/// Default largest message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// `ws://host:port` (path added), `http(s)://` (scheme changed) or a full
/// `ws(s)://host/path`.
pub fn broker_url(raw: &str) -> Result<String, PeerError> {
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
        PeerError::InvalidArgument(format!(
            "broker \"{raw}\" must be a URL such as ws://localhost:8080"
        ))
    })?;
    let scheme = match scheme {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(PeerError::InvalidArgument(format!(
                "broker URL scheme \"{other}\" must be ws:// or wss://"
            )));
        }
    };
    let rest = match rest.find('/') {
        None => format!("{rest}/ws"),
        Some(i) if i + 1 == rest.len() => format!("{rest}ws"),
        Some(_) => rest.to_string(),
    };
    Ok(format!("{scheme}://{rest}"))
}

/// The broker URLs of `options.broker`, each checked as [`broker_url`]; an
/// entry of a list that is not a URL is named by its index and value.
pub fn broker_urls(option: &BrokerOption) -> Result<Vec<String>, PeerError> {
    match option {
        BrokerOption::One(raw) => Ok(vec![broker_url(raw)?]),
        BrokerOption::List(list) if list.is_empty() => Err(PeerError::InvalidArgument(
            "options.broker is an empty array: list at least one broker URL, e.g. ['wss://a.example.com', 'wss://b.example.com']".into(),
        )),
        BrokerOption::List(list) => list
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                broker_url(raw).map_err(|e| {
                    PeerError::InvalidArgument(format!("options.broker[{i}] \"{raw}\": {e}"))
                })
            })
            .collect(),
    }
}

/// The engine settings for checked options: the broker URLs (required
/// unless the peer talks through a JS hub), every default applied, and
/// the combinations that cannot work refused by name.
pub fn engine_config(
    raw: RawPeerOptions,
    id: Option<String>,
    token: &Option<TokenSource>,
    hub: bool,
) -> Result<Config, PeerError> {
    let signalling = if hub {
        Signalling::Hub
    } else {
        let broker = raw.broker.as_ref().ok_or_else(|| {
            PeerError::InvalidArgument(
                "options.broker is required, e.g. { broker: 'ws://localhost:8080' }".into(),
            )
        })?;
        Signalling::Broker {
            urls: broker_urls(broker)?,
            renewable_token: matches!(token, Some(TokenSource::Provider(_))),
        }
    };
    let mut c = Config::new(signalling);
    c.id = id;
    c.window = SendWindow {
        high: raw.buffer_high.unwrap_or(c.window.high),
        low: raw.buffer_low.unwrap_or(c.window.low),
    };
    if c.window.low >= c.window.high || c.window.high > 8 * 1024 * 1024 {
        return Err(PeerError::InvalidArgument(
            "bufferLow must be below bufferHigh, and bufferHigh at most 8 MiB".into(),
        ));
    }
    c.keep_alive_interval = raw.keep_alive_interval.unwrap_or(c.keep_alive_interval);
    c.keep_alive_timeout = raw.keep_alive_timeout.unwrap_or(c.keep_alive_timeout);
    if c.keep_alive_timeout <= c.keep_alive_interval {
        return Err(PeerError::InvalidArgument(
            "keepAliveTimeout must be longer than keepAliveInterval".into(),
        ));
    }
    c.ice_restarts = raw.ice_restarts.unwrap_or(c.ice_restarts);
    c.ice_restart_timeout = raw.ice_restart_timeout.unwrap_or(c.ice_restart_timeout);
    c.disconnected_grace = raw.disconnected_grace.unwrap_or(c.disconnected_grace);
    c.broker_keep_alive = raw.broker_keep_alive.unwrap_or(c.broker_keep_alive);
    c.relay = raw.relay.unwrap_or(c.relay);
    c.relay_after = raw.relay_after.unwrap_or(c.relay_after);
    c.resend_buffer = raw.resend_buffer.unwrap_or(c.resend_buffer);
    if c.resend_buffer < 64 * 1024 {
        return Err(PeerError::InvalidArgument(
            "resendBuffer must be at least 64 KiB (65536)".into(),
        ));
    }
    c.direct_retry = raw.direct_retry.unwrap_or(c.direct_retry);
    c.ice_servers = raw.ice_servers;
    c.max_message_size = raw
        .max_message_size
        .unwrap_or(DEFAULT_MAX_MESSAGE)
        .min(u32::MAX as usize);
    c.connect_timeout = raw.connect_timeout.unwrap_or(c.connect_timeout);
    c.request_timeout = raw.request_timeout.unwrap_or(c.request_timeout);
    c.channel = ChannelPolicy {
        ordered: raw.ordered.unwrap_or(true),
        max_retransmits: raw.max_retransmits,
    };
    c.memory_budget = raw.memory_budget.unwrap_or(c.memory_budget);
    c.connection_budget = raw.connection_budget.unwrap_or(c.connection_budget);
    c.max_streams = raw.max_streams.unwrap_or(c.max_streams);
    c.max_connections = raw.max_connections.unwrap_or(c.max_connections);
    c.close_timeout = raw.close_timeout.unwrap_or(c.close_timeout);
    c.max_offers_per_minute = raw.max_offers_per_minute.unwrap_or(c.max_offers_per_minute);
    c.debug = raw.debug.unwrap_or_default();
    Ok(c)
}

/// `{ ordered, maxRetransmits }` from a JS options object, over `base`.
pub fn policy_from(options: &JsValue, base: ChannelPolicy) -> Result<ChannelPolicy, PeerError> {
    let fields = [
        ("ordered", Want::Bool),
        ("maxRetransmits", Want::Count(u16::MAX as u32)),
    ];
    Ok(match Fields::check(options, "stream options", &fields)? {
        Some(o) => ChannelPolicy {
            ordered: o.flag("ordered").unwrap_or(base.ordered),
            max_retransmits: o
                .millis("maxRetransmits")
                .map(|n| n as u16)
                .or(base.max_retransmits),
        },
        None => base,
    })
}
