//! signal-channel's three stream end points over WebSockets:
//! `/signal-channel/echo[/<namespace>]`,
//! `/signal-channel/scuttlebutt[/<namespace>]` and
//! `/signal-channel/relay[/<namespace>]`. Each WebSocket is one of
//! signal-channel's streams; each frame one chunk written to it.
//!
//! Over the hub, every stream is an assigned id in a room named from its
//! end point and namespace (`sc-<e|s|r>-<hash>`, so any namespace text
//! fits the room name rules), and so the limits, auth, metrics and network
//! of brokers of `/ws` hold here too:
//!
//! - **echo**: a written chunk is a `broadcast` to the room with
//!   `includeSelf`, so it comes back to every stream of the namespace, the
//!   writer included, as the same kind of frame (text or binary).
//! - **scuttlebutt**: the room's state is the namespace's model. The
//!   stream speaks scuttlebutt's replication protocol (newline-delimited
//!   JSON: a digest `{id, clock}`, updates `[[key, value], ts, source]`,
//!   `"SYNC"`); each update is stored as a state key with a TTL of
//!   `--sigchan-expiry-ms` counted from its timestamp, and an expired key
//!   is sent to the streams as a `[[key, null], ts, "signal-channel"]`
//!   update, so a connected `Model` drops it too.
//! - **relay**: the first line the client writes is header-stream's header
//!   (`{"local": .., "remote": ..}`); two streams of a namespace whose
//!   headers mirror each other are paired, each gets the other's header
//!   line first, then everything one writes reaches the other (`signal`s
//!   of `{"t": text}` / `{"b": base64}`), and only those two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use peerwire::protocol::json::Json;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where the end points live.
pub const PREFIX: &str = "/signal-channel";

/// The namespace of a stream opened without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 256;

/// Longest relay header line (header-stream's first line), in bytes.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;

/// Chunks a relay stream may write before it is paired (held, then sent
/// on pairing); past them it is closed with 4002.
pub const MAX_HELD_CHUNKS: usize = 64;

/// Bytes a relay stream may write before it is paired; past them it is
/// closed with 4002.
pub const MAX_HELD_BYTES: usize = 64 * 1024;

/// The source id of the updates the broker writes itself (the removal of
/// an expired key).
pub const BROKER_SOURCE: &str = "signal-channel";

/// One of signal-channel's end points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Echo,
    Scuttlebutt,
    Relay,
}

impl Endpoint {
    /// The end point named by a path segment.
    pub fn from_path(segment: &str) -> Option<Endpoint> {
        match segment {
            "echo" => Some(Endpoint::Echo),
            "scuttlebutt" => Some(Endpoint::Scuttlebutt),
            "relay" => Some(Endpoint::Relay),
            _ => None,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Endpoint::Echo => "e",
            Endpoint::Scuttlebutt => "s",
            Endpoint::Relay => "r",
        }
    }

    /// Its name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Echo => "echo",
            Endpoint::Scuttlebutt => "scuttlebutt",
            Endpoint::Relay => "relay",
        }
    }
}

/// Whether `ns` is a namespace the broker takes: 1 to
/// [`MAX_NAMESPACE_BYTES`] bytes, no control characters.
pub fn valid_namespace(ns: &str) -> bool {
    (1..=MAX_NAMESPACE_BYTES).contains(&ns.len()) && !ns.chars().any(char::is_control)
}

/// A room name for `parts` (hashed, so any text fits the room name rules
/// and parts cannot run into each other).
fn room_of(endpoint: Endpoint, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sc-{}-{hex}", endpoint.tag())
}

/// The hub room of an end point's namespace.
pub fn namespace_room(endpoint: Endpoint, ns: &str) -> String {
    room_of(endpoint, &[ns])
}

/// The namespaces with open streams, per end point, bounded by
/// `--sigchan-max-namespaces`.
#[derive(Default, Clone)]
pub struct Namespaces {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// A stream's hold on its namespace, given back when dropped.
pub struct Lease {
    open: Arc<Mutex<HashMap<String, usize>>>,
    room: String,
}

impl Namespaces {
    /// A hold on the namespace whose room is `room`, or `None` when `max`
    /// namespaces are open already and this is not one of them.
    pub fn lease(&self, room: &str, max: usize) -> Option<Lease> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.contains_key(room) && open.len() >= max {
            return None;
        }
        *open.entry(room.to_string()).or_default() += 1;
        Some(Lease {
            open: self.open.clone(),
            room: room.to_string(),
        })
    }

    /// How many namespaces have open streams.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.room) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.room);
            }
        }
    }
}

/// What a client's frame asks for.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Hub(Vec<ClientMessage>),
    Nothing(&'static str),
    Close(CloseCode, Vec<ClientMessage>),
}

/// What a hub frame means for the client.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    Hub(Vec<ClientMessage>),
    /// Send the text, and make these requests.
    TextThen(String, Vec<ClientMessage>),
    Close(CloseCode),
    Nothing,
}

/// A chunk the client wrote.
#[derive(Debug, Clone)]
enum Chunk {
    Text(String),
    Binary(Vec<u8>),
}

impl Chunk {
    fn encode(&self) -> Value {
        match self {
            Chunk::Text(t) => json!({"t": t}),
            Chunk::Binary(b) => json!({"b": base64::engine::general_purpose::STANDARD.encode(b)}),
        }
    }

    fn len(&self) -> usize {
        match self {
            Chunk::Text(t) => t.len(),
            Chunk::Binary(b) => b.len(),
        }
    }

    /// The chunk a `{"t"}` / `{"b"}` signal carries.
    fn decode(data: &serde_json::Map<String, Value>) -> Option<Chunk> {
        if let Some(t) = data.get("t").and_then(Value::as_str) {
            return Some(Chunk::Text(t.to_string()));
        }
        let b = data.get("b").and_then(Value::as_str)?;
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .map(Chunk::Binary)
    }

    fn outbound(self) -> Outbound {
        match self {
            Chunk::Text(t) => Outbound::Text(t),
            Chunk::Binary(b) => Outbound::Binary(b),
        }
    }
}

/// Milliseconds since the Unix epoch (scuttlebutt's timestamps).
fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One stream's connection.
pub struct Connection {
    endpoint: Endpoint,
    namespace: String,
    /// The namespace's room (for a relay, the pair's, once the header came).
    room: Option<String>,
    next_rid: Rid,
    /// Bytes of an unfinished line (scuttlebutt lines, the relay header).
    partial: String,
    /// Bound on `partial`.
    max_line: usize,
    scuttlebutt: Scuttlebutt,
    relay: Relay,
    _lease: Lease,
}

/// A scuttlebutt stream's view of its namespace's model.
#[derive(Default)]
struct Scuttlebutt {
    /// How long an update lives after its timestamp, in ms.
    expiry_ms: u64,
    /// The model: hub state key → the update stored there.
    entries: HashMap<String, Update>,
    /// What the client has, per source (its digest, then what was sent to
    /// it or came from it); `None` until its digest came.
    client_clock: Option<HashMap<String, f64>>,
    /// The `ping` whose answer sends the client its history.
    history_rid: Option<Rid>,
    /// The timestamp of the last update the broker wrote to this client.
    last_broker_ts: f64,
}

/// One scuttlebutt update `[[key, value], ts, source]`.
#[derive(Debug, Clone)]
struct Update {
    key: String,
    ts: f64,
    source: String,
    /// Its JSON text.
    raw: String,
}

impl Update {
    /// An update, if `v` is one (as scuttlebutt's `validate` and Model's
    /// `applyUpdate` read it: the key a string, the timestamp a number, the
    /// source a string other than `__proto__`).
    fn parse(v: &Value) -> Option<Update> {
        let a = v.as_array()?;
        let trx = a.first()?.as_array()?;
        let key = trx.first()?.as_str()?;
        let ts = a.get(1)?.as_f64()?;
        let source = a.get(2)?.as_str()?;
        if source == "__proto__" || key == "__proto__" || !ts.is_finite() {
            return None;
        }
        Some(Update {
            key: key.to_string(),
            ts,
            source: source.to_string(),
            raw: v.to_string(),
        })
    }

    /// Whether a client with `clock` lacks this update (scuttlebutt's
    /// `filter`).
    fn news_for(&self, clock: &HashMap<String, f64>) -> bool {
        clock.get(&self.source).is_none_or(|&seen| seen < self.ts)
    }
}

/// The hub state key of a model key.
fn state_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A relay stream's handshake and pairing.
#[derive(Default)]
struct Relay {
    /// This stream's id in the hub.
    me: Option<String>,
    /// Its header: local, remote, and the line as written.
    header: Option<(String, String, String)>,
    partner: Option<String>,
    held: Vec<Chunk>,
    held_bytes: usize,
    ended: bool,
}

impl Connection {
    /// A stream of `endpoint` in `namespace`; `max_line` bounds a line
    /// held unfinished, `expiry_ms` is the scuttlebutt keys' life.
    pub fn new(
        endpoint: Endpoint,
        namespace: String,
        lease: Lease,
        max_line: usize,
        expiry_ms: u64,
    ) -> Self {
        let room = (endpoint != Endpoint::Relay).then(|| namespace_room(endpoint, &namespace));
        Self {
            endpoint,
            namespace,
            room,
            next_rid: 1,
            partial: String::new(),
            max_line,
            scuttlebutt: Scuttlebutt {
                expiry_ms,
                ..Default::default()
            },
            relay: Relay::default(),
            _lease: lease,
        }
    }

    fn rid(&mut self) -> Rid {
        let rid = self.next_rid;
        self.next_rid += 1;
        rid
    }

    /// An assigned id, and the namespace's room (a relay joins its pair's
    /// room once its header came).
    pub fn start(&mut self) -> Vec<ClientMessage> {
        let mut out = vec![ClientMessage::Register {
            rid: self.rid(),
            id: None,
            resume_token: None,
        }];
        if let Some(room) = self.room.clone() {
            out.push(ClientMessage::Join {
                rid: self.rid(),
                room,
            });
        }
        out
    }

    pub fn text(&mut self, text: &str) -> Inbound {
        self.chunk(Chunk::Text(text.to_string()))
    }

    pub fn binary(&mut self, bytes: &[u8]) -> Inbound {
        self.chunk(Chunk::Binary(bytes.to_vec()))
    }

    fn chunk(&mut self, chunk: Chunk) -> Inbound {
        match self.endpoint {
            Endpoint::Echo => {
                let Some(room) = self.room.clone() else {
                    return Inbound::Nothing("no room");
                };
                let data = Json(chunk.encode().to_string());
                Inbound::Hub(vec![ClientMessage::Broadcast {
                    rid: self.rid(),
                    room,
                    data,
                    include_self: true,
                }])
            }
            Endpoint::Scuttlebutt => match self.lines(chunk) {
                Ok(lines) => self.scuttlebutt_lines(lines),
                Err(code) => Inbound::Close(code, Vec::new()),
            },
            Endpoint::Relay => self.relay_chunk(chunk),
        }
    }

    /// The complete lines `chunk` finishes (a binary chunk must be UTF-8).
    fn lines(&mut self, chunk: Chunk) -> Result<Vec<String>, CloseCode> {
        let text = match chunk {
            Chunk::Text(t) => t,
            Chunk::Binary(b) => String::from_utf8(b).map_err(|_| CloseCode::InvalidPayload)?,
        };
        self.partial.push_str(&text);
        let mut lines: Vec<String> = self.partial.split('\n').map(str::to_string).collect();
        self.partial = lines.pop().unwrap_or_default();
        if self.partial.len() > self.max_line {
            return Err(CloseCode::MessageTooBig);
        }
        Ok(lines)
    }

    fn scuttlebutt_lines(&mut self, lines: Vec<String>) -> Inbound {
        let mut requests = Vec::new();
        for line in lines {
            if line.trim().is_empty() {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                return Inbound::Close(CloseCode::InvalidPayload, requests);
            };
            match &v {
                Value::Array(_) => {
                    if let Some(update) = Update::parse(&v) {
                        requests.extend(self.client_update(update));
                    }
                }
                Value::Object(digest) => {
                    let Some(Value::Object(clock)) = digest.get("clock") else {
                        // scuttlebutt ends a stream whose digest has no clock.
                        return Inbound::Close(CloseCode::InvalidPayload, requests);
                    };
                    let clock = clock
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect::<HashMap<_, _>>();
                    let sb = &mut self.scuttlebutt;
                    sb.last_broker_ts = clock.get(BROKER_SOURCE).copied().unwrap_or(0.0);
                    sb.client_clock = Some(clock);
                    // The history goes when the hub answers this ping: after
                    // the namespace's state has arrived.
                    let rid = self.rid();
                    self.scuttlebutt.history_rid = Some(rid);
                    requests.push(ClientMessage::Ping { rid });
                }
                // "SYNC", and anything else scuttlebutt would ignore.
                _ => {}
            }
        }
        if requests.is_empty() {
            Inbound::Nothing("nothing for the model")
        } else {
            Inbound::Hub(requests)
        }
    }

    /// Stores a client's update, unless the model has a newer value for
    /// its key or it has expired already.
    fn client_update(&mut self, update: Update) -> Option<ClientMessage> {
        let sb = &mut self.scuttlebutt;
        if update.source == BROKER_SOURCE {
            return None;
        }
        let key = state_key(&update.key);
        if sb.entries.get(&key).is_some_and(|e| e.ts >= update.ts) {
            return None;
        }
        let age = (unix_ms() - update.ts).max(0.0);
        let expiry = sb.expiry_ms as f64;
        if age >= expiry {
            return None;
        }
        let ttl = ((expiry - age).ceil() as u64).clamp(1, sb.expiry_ms);
        let room = self.room.clone()?;
        // The client has it: not sent back. (Only updates the model takes
        // are recorded, so the clock stays as small as the model.)
        if let Some(clock) = sb.client_clock.as_mut() {
            let seen = clock.entry(update.source.clone()).or_insert(update.ts);
            *seen = seen.max(update.ts);
        }
        sb.entries.insert(key.clone(), update.clone());
        Some(ClientMessage::Set {
            rid: self.rid(),
            room,
            key,
            value: Json(update.raw),
            ttl_ms: Some(ttl),
        })
    }

    /// The model's updates the client lacks, oldest first, then "SYNC".
    fn history(&mut self) -> Outbound {
        let sb = &mut self.scuttlebutt;
        let Some(clock) = sb.client_clock.as_mut() else {
            return Outbound::Nothing;
        };
        let mut news: Vec<&Update> = sb.entries.values().filter(|u| u.news_for(clock)).collect();
        news.sort_by(|a, b| a.ts.total_cmp(&b.ts).then_with(|| a.source.cmp(&b.source)));
        let mut out = String::new();
        for u in news {
            out.push_str(&u.raw);
            out.push('\n');
            let seen = clock.entry(u.source.clone()).or_insert(u.ts);
            *seen = seen.max(u.ts);
        }
        out.push_str("\"SYNC\"\n");
        Outbound::Text(out)
    }

    /// A hub frame for this stream.
    pub fn outbound(&mut self, text: &str) -> Outbound {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Outbound::Nothing;
        };
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        let kind = str_of("type").unwrap_or("");
        let ours =
            |room: &Option<String>| str_of("room").is_some() && str_of("room") == room.as_deref();
        if kind == "error" {
            // A request the hub refused (the room full, a token needed,
            // the state over its budget, a signal to a gone partner): the
            // stream cannot go on as its client expects.
            tracing::debug!(
                endpoint = self.endpoint.name(),
                namespace = %self.namespace,
                error = %text,
                "a signal-channel stream closed on a hub error"
            );
            // A chunk for a relay partner that is gone: as if it went.
            if msg.contains_key("target") {
                return Outbound::Close(CloseCode::InternalError);
            }
            return Outbound::Close(CloseCode::PolicyViolation);
        }
        match self.endpoint {
            Endpoint::Echo => match kind {
                "broadcast" if ours(&self.room) => match msg.get("data") {
                    Some(Value::Object(d)) => {
                        Chunk::decode(d).map_or(Outbound::Nothing, Chunk::outbound)
                    }
                    _ => Outbound::Nothing,
                },
                _ => Outbound::Nothing,
            },
            Endpoint::Scuttlebutt => self.scuttlebutt_outbound(kind, &msg),
            Endpoint::Relay => self.relay_outbound(kind, &msg),
        }
    }

    fn scuttlebutt_outbound(
        &mut self,
        kind: &str,
        msg: &serde_json::Map<String, Value>,
    ) -> Outbound {
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        let in_room = str_of("room").is_some() && str_of("room") == self.room.as_deref();
        match kind {
            "joined" if in_room => {
                let sb = &mut self.scuttlebutt;
                for entry in msg
                    .get("state")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (Some(key), Some(update)) = (
                        entry.get("key").and_then(Value::as_str),
                        entry.get("value").and_then(Update::parse),
                    ) else {
                        continue;
                    };
                    sb.entries.insert(key.to_string(), update);
                }
                // The broker's digest: what the model holds, per source.
                let mut clock = serde_json::Map::new();
                for u in sb.entries.values() {
                    let seen = clock.entry(u.source.clone()).or_insert(json!(u.ts));
                    if seen.as_f64().is_some_and(|s| s < u.ts) {
                        *seen = json!(u.ts);
                    }
                }
                Outbound::Text(format!(
                    "{}\n",
                    json!({"id": BROKER_SOURCE, "clock": clock})
                ))
            }
            "pong" if msg.get("rid").and_then(Value::as_u64) == self.scuttlebutt.history_rid => {
                self.scuttlebutt.history_rid = None;
                self.history()
            }
            "state-set" if in_room => {
                let (Some(key), Some(update)) =
                    (str_of("key"), msg.get("value").and_then(Update::parse))
                else {
                    return Outbound::Nothing;
                };
                let sb = &mut self.scuttlebutt;
                if sb.entries.get(key).is_none_or(|e| e.ts <= update.ts) {
                    sb.entries.insert(key.to_string(), update.clone());
                }
                // Before its digest, the client gets it with the history.
                if sb.history_rid.is_some() {
                    return Outbound::Nothing;
                }
                match sb.client_clock.as_mut() {
                    Some(clock) if update.news_for(clock) => {
                        clock.insert(update.source.clone(), update.ts);
                        Outbound::Text(format!("{}\n", update.raw))
                    }
                    _ => Outbound::Nothing,
                }
            }
            "state-removed" if in_room => {
                let Some(removed) = str_of("key").and_then(|k| self.scuttlebutt.entries.remove(k))
                else {
                    return Outbound::Nothing;
                };
                let sb = &mut self.scuttlebutt;
                if sb.client_clock.is_none() || sb.history_rid.is_some() {
                    return Outbound::Nothing;
                }
                // Later than the value it removes and than anything this
                // source sent the client before.
                let ts = unix_ms().max(removed.ts + 1.0).max(sb.last_broker_ts + 1.0);
                sb.last_broker_ts = ts;
                if let Some(clock) = sb.client_clock.as_mut() {
                    clock.insert(BROKER_SOURCE.to_string(), ts);
                }
                let gone = json!([[removed.key, null], ts, BROKER_SOURCE]);
                Outbound::Text(format!("{gone}\n"))
            }
            _ => Outbound::Nothing,
        }
    }

    fn signal(&mut self, to: &str, data: Value) -> ClientMessage {
        ClientMessage::Signal {
            rid: self.rid(),
            to: to.to_string(),
            data: Json(data.to_string()),
        }
    }

    fn relay_chunk(&mut self, chunk: Chunk) -> Inbound {
        if self.relay.header.is_none() {
            return self.relay_header(chunk);
        }
        self.relay_carry(chunk)
    }

    /// header-stream's first line: `{"local": .., "remote": ..}`.
    fn relay_header(&mut self, chunk: Chunk) -> Inbound {
        let was_text = matches!(chunk, Chunk::Text(_));
        let text = match chunk {
            Chunk::Text(t) => t,
            Chunk::Binary(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(_) => return Inbound::Close(CloseCode::InvalidPayload, Vec::new()),
            },
        };
        self.partial.push_str(&text);
        let Some(end) = self.partial.find('\n') else {
            if self.partial.len() > MAX_HEADER_BYTES {
                return Inbound::Close(CloseCode::MessageTooBig, Vec::new());
            }
            return Inbound::Nothing("a relay header in parts");
        };
        let line = self.partial[..end].to_string();
        let rest = self.partial[end + 1..].to_string();
        self.partial = String::new();
        if line.len() > MAX_HEADER_BYTES {
            return Inbound::Close(CloseCode::MessageTooBig, Vec::new());
        }
        let name = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let Ok(Value::Object(head)) = serde_json::from_str::<Value>(&line) else {
            return Inbound::Close(CloseCode::InvalidPayload, Vec::new());
        };
        let (Some(local), Some(remote)) = (name(head.get("local")), name(head.get("remote")))
        else {
            return Inbound::Close(CloseCode::InvalidPayload, Vec::new());
        };
        if local == remote {
            return Inbound::Close(CloseCode::PolicyViolation, Vec::new());
        }
        let (low, high) = if local < remote {
            (&local, &remote)
        } else {
            (&remote, &local)
        };
        let room = room_of(Endpoint::Relay, &[&self.namespace, low, high]);
        self.room = Some(room.clone());
        self.relay.header = Some((local, remote, line));
        let mut requests = vec![ClientMessage::Join {
            rid: self.rid(),
            room,
        }];
        if !rest.is_empty() {
            let chunk = if was_text {
                Chunk::Text(rest)
            } else {
                Chunk::Binary(rest.into_bytes())
            };
            match self.relay_carry(chunk) {
                Inbound::Hub(more) => requests.extend(more),
                Inbound::Close(code, more) => {
                    requests.extend(more);
                    return Inbound::Close(code, requests);
                }
                Inbound::Nothing(_) => {}
            }
        }
        Inbound::Hub(requests)
    }

    fn relay_carry(&mut self, chunk: Chunk) -> Inbound {
        match self.relay.partner.clone() {
            Some(to) => {
                let data = chunk.encode();
                Inbound::Hub(vec![self.signal(&to, data)])
            }
            None => {
                let r = &mut self.relay;
                r.held_bytes += chunk.len();
                r.held.push(chunk);
                if r.held.len() > MAX_HELD_CHUNKS || r.held_bytes > MAX_HELD_BYTES {
                    return Inbound::Close(CloseCode::TooManyMessages, Vec::new());
                }
                Inbound::Nothing("held until the relay is paired")
            }
        }
    }

    /// Pairs with `partner` (whose header line is `line`): the client gets
    /// `line` first, then what was held goes to the partner (after
    /// `first`). The partner sends nothing before it is paired too, so its
    /// chunks come after `line`.
    fn paired(&mut self, partner: &str, line: String, first: Option<ClientMessage>) -> Outbound {
        self.relay.partner = Some(partner.to_string());
        let mut requests: Vec<ClientMessage> = first.into_iter().collect();
        let held = std::mem::take(&mut self.relay.held);
        self.relay.held_bytes = 0;
        for chunk in held {
            let data = chunk.encode();
            requests.push(self.signal(partner, data));
        }
        Outbound::TextThen(format!("{line}\n"), requests)
    }

    /// Whether a header from another stream mirrors this one's.
    fn mirrors(&self, head: &Value) -> bool {
        let Some((local, remote, _)) = &self.relay.header else {
            return false;
        };
        head.get("local").and_then(Value::as_str) == Some(remote.as_str())
            && head.get("remote").and_then(Value::as_str) == Some(local.as_str())
    }

    fn relay_outbound(&mut self, kind: &str, msg: &serde_json::Map<String, Value>) -> Outbound {
        let str_of = |k: &str| msg.get(k).and_then(Value::as_str);
        let in_room = str_of("room").is_some() && str_of("room") == self.room.as_deref();
        match kind {
            "registered" => {
                self.relay.me = str_of("id").map(str::to_string);
                Outbound::Nothing
            }
            "joined" if in_room => {
                let me = self.relay.me.clone().unwrap_or_default();
                let others: Vec<String> = msg
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|m| *m != me)
                    .map(str::to_string)
                    .collect();
                match others.as_slice() {
                    [] => Outbound::Nothing,
                    [other] => {
                        let Some((local, remote, line)) = self.relay.header.clone() else {
                            return Outbound::Nothing;
                        };
                        let hello =
                            json!({"hello": {"local": local, "remote": remote, "line": line}});
                        let other = other.clone();
                        Outbound::Hub(vec![self.signal(&other, hello)])
                    }
                    // Two streams hold this pair already.
                    _ => Outbound::Close(CloseCode::PolicyViolation),
                }
            }
            "signal" => {
                let (Some(from), Some(Value::Object(data))) = (str_of("from"), msg.get("data"))
                else {
                    return Outbound::Nothing;
                };
                let from = from.to_string();
                if let Some(hello) = data.get("hello") {
                    let line = hello.get("line").and_then(Value::as_str);
                    return match line {
                        Some(line) if self.relay.partner.is_none() && self.mirrors(hello) => {
                            let own = self.relay.header.as_ref().map(|h| h.2.clone());
                            let welcome = self.signal(&from, json!({"welcome": own}));
                            self.paired(&from, line.to_string(), Some(welcome))
                        }
                        _ => {
                            let taken = self.signal(&from, json!({"taken": true}));
                            Outbound::Hub(vec![taken])
                        }
                    };
                }
                if let Some(line) = data.get("welcome").and_then(Value::as_str) {
                    if self.relay.partner.is_none() {
                        return self.paired(&from, line.to_string(), None);
                    }
                    return Outbound::Nothing;
                }
                if data.contains_key("taken") && self.relay.partner.is_none() {
                    return Outbound::Close(CloseCode::PolicyViolation);
                }
                if Some(&from) != self.relay.partner.as_ref() {
                    return Outbound::Nothing;
                }
                if let Some(code) = data
                    .get("end")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .and_then(CloseCode::from_code)
                {
                    self.relay.ended = true;
                    return Outbound::Close(code);
                }
                Chunk::decode(data).map_or(Outbound::Nothing, Chunk::outbound)
            }
            // The partner went without a word (its end signal comes first
            // when it closes).
            "peer-left"
                if in_room
                    && str_of("id").is_some()
                    && str_of("id") == self.relay.partner.as_deref() =>
            {
                Outbound::Close(CloseCode::InternalError)
            }
            _ => Outbound::Nothing,
        }
    }

    /// The last word to a relay partner when this stream ends with `code`.
    pub fn end(&mut self, code: CloseCode) -> Vec<ClientMessage> {
        if self.endpoint != Endpoint::Relay || std::mem::replace(&mut self.relay.ended, true) {
            return Vec::new();
        }
        match self.relay.partner.clone() {
            Some(to) => vec![self.signal(&to, json!({"end": code.code()}))],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(endpoint: Endpoint, namespaces: &Namespaces) -> Connection {
        let lease = namespaces
            .lease(&namespace_room(endpoint, "ns"), 8)
            .unwrap();
        Connection::new(endpoint, "ns".into(), lease, 1024, 60_000)
    }

    fn text(out: Outbound) -> String {
        match out {
            Outbound::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn namespaces_are_checked_hashed_apart_per_end_point_and_bounded() {
        assert!(valid_namespace("optional namespace ✓"));
        assert!(!valid_namespace(""));
        assert!(!valid_namespace("a\nb"));
        assert!(!valid_namespace(&"n".repeat(257)));
        let echo = namespace_room(Endpoint::Echo, "x");
        assert_ne!(echo, namespace_room(Endpoint::Scuttlebutt, "x"));
        assert_ne!(echo, namespace_room(Endpoint::Echo, "y"));
        // Parts cannot run into each other.
        assert_ne!(
            room_of(Endpoint::Relay, &["ab", "c"]),
            room_of(Endpoint::Relay, &["a", "bc"])
        );
        assert!(peerwire::protocol::ids::check_room(&echo).is_ok());
        let table = Namespaces::default();
        let a = table.lease("a", 2).unwrap();
        let a2 = table.lease("a", 2).unwrap();
        let b = table.lease("b", 2).unwrap();
        assert!(table.lease("c", 2).is_none());
        drop(a);
        assert!(table.lease("c", 2).is_none(), "a still has a stream");
        drop(a2);
        assert_eq!(table.len(), 1);
        assert!(table.lease("c", 2).is_some());
        drop(b);
    }

    #[test]
    fn scuttlebutt_sends_what_the_client_lacks_and_keeps_the_newest_value() {
        let table = Namespaces::default();
        let mut c = stream(Endpoint::Scuttlebutt, &table);
        let room = namespace_room(Endpoint::Scuttlebutt, "ns");
        let now = unix_ms();
        let update = |k: &str, ts: f64, src: &str| json!([[k, "v"], ts, src]);
        let state = json!([
            {"key": state_key("a"), "value": update("a", now, "A"), "from": "p-1"},
            {"key": state_key("b"), "value": update("b", now + 1.0, "B"), "from": "p-2"},
            {"key": "junk", "value": 5, "from": "p-3"},
        ]);
        let joined =
            json!({"type": "joined", "rid": 2, "room": room, "members": [], "state": state});
        let digest: Value =
            serde_json::from_str(text(c.outbound(&joined.to_string())).trim()).unwrap();
        assert_eq!(
            digest,
            json!({"id": "signal-channel", "clock": {"A": now, "B": now + 1.0}})
        );
        // The client has A's: it gets B's, then SYNC.
        let digest = json!({"id": "C", "clock": {"A": now}});
        let Inbound::Hub(reqs) = c.text(&format!("{digest}\n")) else {
            panic!()
        };
        let [ClientMessage::Ping { rid }] = reqs.as_slice() else {
            panic!("{reqs:?}")
        };
        let pong = json!({"type": "pong", "rid": rid}).to_string();
        assert_eq!(
            text(c.outbound(&pong)),
            format!("{}\n\"SYNC\"\n", update("b", now + 1.0, "B"))
        );
        // Older than the model's value for its key: nothing.
        let stale = update("a", now - 1.0, "Z");
        assert!(matches!(c.text(&format!("{stale}\n")), Inbound::Nothing(_)));
        // Newer: stored with what is left of its life.
        let fresh = update("a", now + 2.0, "C");
        let Inbound::Hub(reqs) = c.text(&format!("{fresh}\n")) else {
            panic!()
        };
        assert!(
            matches!(&reqs[0], ClientMessage::Set { key, ttl_ms: Some(ttl), .. }
            if *key == state_key("a") && *ttl <= 60_000 && *ttl > 59_000)
        );
        // Its own update, back from the hub: not sent again.
        let set = json!({"type": "state-set", "room": room, "key": state_key("a"), "value": fresh, "from": "p-9"});
        assert_eq!(c.outbound(&set.to_string()), Outbound::Nothing);
        // Removed: a null update later than both the value and anything
        // this source sent before.
        let removed = json!({"type": "state-removed", "room": room, "key": state_key("a"), "reason": "expired"});
        let gone: Value =
            serde_json::from_str(text(c.outbound(&removed.to_string())).trim()).unwrap();
        assert_eq!(gone[0], json!(["a", null]));
        let first = gone[1].as_f64().unwrap();
        assert!(first > now + 2.0);
        let removed_b = json!({"type": "state-removed", "room": room, "key": state_key("b"), "reason": "expired"});
        let gone_b: Value =
            serde_json::from_str(text(c.outbound(&removed_b.to_string())).trim()).unwrap();
        assert!(gone_b[1].as_f64().unwrap() > first);
    }

    #[test]
    fn relay_headers_pair_mirrors_and_refuse_the_rest() {
        let table = Namespaces::default();
        let mut a = stream(Endpoint::Relay, &table);
        assert_eq!(a.start().len(), 1, "no room before the header");
        a.outbound(r#"{"type":"registered","id":"p-a"}"#);
        // The header in two parts, a chunk after it.
        assert!(matches!(a.text("{\"local\":12,"), Inbound::Nothing(_)));
        let Inbound::Hub(reqs) = a.text("\"remote\":\"22\"}\nearly") else {
            panic!()
        };
        assert!(
            matches!(&reqs[..], [ClientMessage::Join { .. }]),
            "{reqs:?}"
        );
        let room = a.room.clone().unwrap();
        // Another stream's hello with the mirrored header: welcome, held chunk.
        let hello = json!({"type": "signal", "from": "p-b", "data": {"hello": {"local": "22", "remote": "12", "line": "{\"local\":\"22\",\"remote\":\"12\"}"}}});
        let Outbound::TextThen(line, reqs) = a.outbound(&hello.to_string()) else {
            panic!()
        };
        assert_eq!(line, "{\"local\":\"22\",\"remote\":\"12\"}\n");
        assert_eq!(reqs.len(), 2);
        // A second hello, even mirrored: taken.
        let Outbound::Hub(reqs) = a.outbound(&hello.to_string().replace("p-b", "p-c")) else {
            panic!()
        };
        assert!(
            matches!(&reqs[0], ClientMessage::Signal { to, data, .. } if to == "p-c" && data.as_str().contains("taken"))
        );
        // Chunks from a stranger are not delivered; the partner's are.
        let chunk =
            |from: &str| json!({"type": "signal", "from": from, "data": {"t": "hi"}}).to_string();
        assert_eq!(a.outbound(&chunk("p-c")), Outbound::Nothing);
        assert_eq!(a.outbound(&chunk("p-b")), Outbound::Text("hi".into()));
        let left = json!({"type": "peer-left", "room": room, "id": "p-b"}).to_string();
        assert_eq!(a.outbound(&left), Outbound::Close(CloseCode::InternalError));
        for (bad, code) in [
            ("nope\n", CloseCode::InvalidPayload),
            (
                "{\"local\":\"1\",\"remote\":[]}\n",
                CloseCode::InvalidPayload,
            ),
            (
                "{\"local\":\"1\",\"remote\":\"1\"}\n",
                CloseCode::PolicyViolation,
            ),
        ] {
            let mut s = stream(Endpoint::Relay, &table);
            assert!(
                matches!(s.text(bad), Inbound::Close(c, _) if c == code),
                "{bad}"
            );
        }
    }
}
