//! The SDK's side of the broker protocol, without the WebSocket.
//!
//! [`BrokerSession`] numbers requests, holds everything sent while the socket
//! is down or not yet registered (bounded, flushed in order once registered),
//! matches replies to requests, times requests out, remembers the id and
//! resume token for reconnects, and computes the reconnect backoff.
//! [`BrokerUrls`] is the list of brokers a peer may use and which one it
//! dials (failover, round-robin).
//!
//! ```text
//!            open()                registered             socket closed
//!  Down ───────────────► Registering ────────► Up ─────────────────────► Down
//!    ▲  (after backoff)     │   ▲  │ error (first registration: id-taken,     │
//!    │                      │   │  │ invalid-id; any: unauthorized): Failed   │
//!    │     bad-resume-token │   │  └─ id-taken after a reconnect: Down ───────┤
//!    │    (after a reconnect)   │     (ResumeRefused; the engine redials)     │
//!    │      register afresh └───┘                                             │
//!    └────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Once registered, a peer never gives its id up on its own: a refused
//! resume token (the broker restarted without its key, or the grace window
//! ended) is followed at once by a registration of the same id without a
//! token, and an id someone else holds now is asked for again after each
//! backoff, both reported ([`SessionEvent::ResumeRefused`]), until the id
//! is free again or the peer is closed.

use std::collections::VecDeque;

use crate::core::engine::Table;
use std::time::Duration;

use crate::protocol::messages::Rid;
use crate::protocol::{ClientMessage, ErrorCode, IceServer, ServerMessage};

/// Milliseconds on some monotonic clock (`performance.now()` in browsers).
pub type Millis = f64;

/// Where the link to the broker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// No socket; waiting to (re)connect.
    Down,
    /// Socket open, `register` sent.
    Registering,
    /// Registered; requests flow.
    Up,
    /// Registration was refused (id taken or invalid); no more reconnects.
    Failed,
    /// Closed by the user.
    Closed,
}

/// Events for the glue to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// Registered (first time or after a reconnect).
    Registered {
        id: String,
        resumed: bool,
        ice_servers: Vec<IceServer>,
        first: bool,
    },
    /// Registration refused: the peer cannot come online with this id.
    RegisterFailed { code: ErrorCode, message: String },
    /// After a reconnect, the broker refused the resume token
    /// (`bad-resume-token`: the session registers the id afresh at once)
    /// or the id itself (`id-taken`: someone else holds it now; the glue
    /// closes the socket and redials after the backoff). Not final.
    ResumeRefused { code: ErrorCode, message: String },
    /// The reply to request `rid` (an `error` reply included).
    Reply { rid: Rid, message: ServerMessage },
    /// A message the broker sent on its own (signal, room event, ...), or an
    /// error about an earlier request with no pending entry.
    Push(ServerMessage),
    /// Request `rid` got no reply in time.
    TimedOut { rid: Rid },
}

/// Why a request could not even be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "the outbox holds {0} unsent messages: the broker has been unreachable too long, or messages are sent faster than its rate limit"
    )]
    Full(usize),
    #[error("the peer is closed")]
    Closed,
    #[error("registration with the broker failed; create a new peer")]
    Failed,
    #[error("{size} bytes in one message to the broker, above its {max}-byte limit")]
    TooBig { size: usize, max: usize },
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay; `random` in `[0, 1)` spreads reconnects of many
    /// clients so they do not all hit a restarted broker at once.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // Never less than half the ceiling: full jitter, floored.
        ceiling.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The brokers a peer may use (the `broker` option's list) and which one
/// it dials: the first at start, then the next one, round-robin, after
/// each socket that closed. With one URL (or one behind a load balancer)
/// every dial goes to it.
///
/// ```text
///  [a, b, c]   dial a ──closed──► dial b ──closed──► dial c ──closed──► dial a …
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrls {
    urls: Vec<String>,
    current: usize,
}

impl BrokerUrls {
    /// `urls` in the order given; the first is dialled first.
    pub fn new(urls: Vec<String>) -> Self {
        Self { urls, current: 0 }
    }

    /// The URL dialled (or to dial next); `None` for an empty list.
    pub fn current(&self) -> Option<&str> {
        self.urls.get(self.current).map(String::as_str)
    }

    /// The position of [`Self::current`] in the list.
    pub fn index(&self) -> usize {
        self.current
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Every URL, in the order given.
    pub fn all(&self) -> &[String] {
        &self.urls
    }

    /// Moves on to the next URL (after the last: the first again).
    pub fn advance(&mut self) -> Option<&str> {
        if !self.urls.is_empty() {
            self.current = (self.current + 1) % self.urls.len();
        }
        self.current()
    }
}

struct Pending {
    deadline: Millis,
}

/// What the broker lets one connection send: `rate` messages a
/// millisecond, `burst` saved up (a token bucket, as the broker keeps).
/// Frames beyond it wait in the outbox instead of getting the connection
/// closed with 4002.
#[derive(Debug, Clone)]
struct Pace {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Millis,
}

impl Pace {
    /// A margin below the broker's figures: its bucket started earlier
    /// (`register` took a token) and the two clocks differ.
    fn new(rate_per_s: u64, burst: u64, now: Millis) -> Self {
        let burst = (burst as f64 * 0.9).floor().max(1.0);
        Self {
            rate: rate_per_s as f64 * 0.9 / 1000.0,
            burst,
            tokens: (burst - 1.0).max(1.0),
            at: now,
        }
    }

    fn refill(&mut self, now: Millis) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) * self.rate).min(self.burst);
            self.at = now;
        }
    }

    fn take(&mut self, now: Millis) -> bool {
        self.refill(now);
        // (A token due at `next_at` may come out a rounding error short.)
        if self.tokens + 1e-9 >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// When the next token is there.
    fn next_at(&self) -> Millis {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            self.at
        } else {
            self.at + (1.0 - self.tokens) / self.rate
        }
    }
}

/// Settings for a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub max_outbox: usize,
    pub request_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_outbox: 1024,
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The broker session state machine.
pub struct BrokerSession {
    config: SessionConfig,
    link: Link,
    wanted_id: Option<String>,
    id: Option<String>,
    resume_token: Option<String>,
    /// A token the broker being dialled issued earlier, tried if it
    /// refuses [`Self::resume_token`] (see [`Self::offer_fallback_token`]).
    fallback_token: Option<String>,
    next_rid: Rid,
    register_rid: Option<Rid>,
    outbox: VecDeque<(Rid, String)>,
    pending: Table<Rid, Pending>,
    backoff: Backoff,
    registered_once: bool,
    /// The broker's message rate, once it has told it (`registered`).
    pace: Option<Pace>,
    /// The largest frame the broker takes (`registered` says; until then,
    /// and from brokers that do not say, the default).
    max_frame: usize,
    /// The latest time a caller gave (signals are sent without one).
    clock: Millis,
}

impl BrokerSession {
    /// `id`: the id to register, or `None` for a broker-assigned one.
    pub fn new(id: Option<String>, config: SessionConfig) -> Self {
        let backoff = Backoff::new(config.backoff_base, config.backoff_max);
        Self {
            config,
            link: Link::Down,
            wanted_id: id,
            id: None,
            resume_token: None,
            fallback_token: None,
            next_rid: 1,
            register_rid: None,
            outbox: VecDeque::new(),
            pending: Table::new(),
            backoff,
            registered_once: false,
            pace: None,
            max_frame: crate::protocol::limits::MAX_FRAME_BYTES,
            clock: 0.0,
        }
    }

    pub fn link(&self) -> Link {
        self.link
    }

    /// The registered id (kept across reconnects).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The resume token of the last registration.
    pub fn resume_token(&self) -> Option<&str> {
        self.resume_token.as_deref()
    }

    /// Before [`Self::on_open`]: a token the broker about to be registered
    /// with issued earlier. Brokers that share no sessions (before they
    /// form one network) refuse each other's tokens, yet one may still
    /// hold this peer's id in its grace window: refused the latest token
    /// (`bad-resume-token`), the session reclaims the id with this one
    /// instead of failing. Ignored when it is the latest token.
    pub fn offer_fallback_token(&mut self, token: Option<String>) {
        self.fallback_token = token.filter(|t| Some(t) != self.resume_token.as_ref());
    }

    /// Messages waiting for the link to come up.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Queues or sends a request. Returns its rid and, when the link is up,
    /// the frame to send now (otherwise it is sent on registration).
    pub fn request(
        &mut self,
        make: impl FnOnce(Rid) -> ClientMessage,
        now: Millis,
    ) -> Result<(Rid, Option<String>), QueueError> {
        self.send(make(0), now)
    }

    /// Like [`Self::request`], for a message whose `rid` this numbers.
    pub fn send(
        &mut self,
        mut message: ClientMessage,
        now: Millis,
    ) -> Result<(Rid, Option<String>), QueueError> {
        match self.link {
            Link::Closed => return Err(QueueError::Closed),
            Link::Failed => return Err(QueueError::Failed),
            _ => {}
        }
        let rid = self.take_rid();
        *message.rid_mut() = rid;
        let frame = message.encode();
        // The broker would close the link on it (1009), and with it every
        // request under way: refuse this one message instead.
        if frame.len() > self.max_frame {
            return Err(QueueError::TooBig {
                size: frame.len(),
                max: self.max_frame,
            });
        }
        // Every request expects an answer except a successful signal; a
        // signal's deadline only bounds how long an error may take.
        self.pending.insert(
            rid,
            Pending {
                deadline: now + self.config.request_timeout.as_secs_f64() * 1000.0,
            },
        );
        self.clock = self.clock.max(now);
        if self.link == Link::Up && self.outbox.is_empty() && self.paced(self.clock) {
            Ok((rid, Some(frame)))
        } else {
            // Down, registering, or past the broker's rate: in order, later.
            if self.outbox.len() >= self.config.max_outbox {
                self.pending.remove(&rid);
                return Err(QueueError::Full(self.outbox.len()));
            }
            self.outbox.push_back((rid, frame));
            Ok((rid, None))
        }
    }

    /// Whether one more frame may go now under the broker's rate (and
    /// takes its token).
    fn paced(&mut self, now: Millis) -> bool {
        self.pace.as_mut().is_none_or(|p| p.take(now))
    }

    /// Frames of the outbox the broker's rate lets go now (in order).
    pub fn poll_paced(&mut self, now: Millis) -> Vec<String> {
        self.clock = self.clock.max(now);
        let mut frames = Vec::new();
        while self.link == Link::Up && !self.outbox.is_empty() && self.paced(self.clock) {
            if let Some((_, f)) = self.outbox.pop_front() {
                frames.push(f);
            }
        }
        frames
    }

    /// Forgets a request that needs no reply (a delivered signal).
    pub fn settle(&mut self, rid: Rid) {
        self.pending.remove(&rid);
    }

    fn take_rid(&mut self) -> Rid {
        let rid = self.next_rid;
        self.next_rid += 1;
        rid
    }

    /// The socket opened: the frame to send first (`register`).
    pub fn on_open(&mut self) -> String {
        self.link = Link::Registering;
        self.register_frame(self.resume_token.clone())
    }

    fn register_frame(&mut self, resume_token: Option<String>) -> String {
        let rid = self.take_rid();
        self.register_rid = Some(rid);
        let id = self.id.clone().or_else(|| self.wanted_id.clone());
        ClientMessage::Register {
            rid,
            id,
            resume_token,
        }
        .encode()
    }

    /// A frame from the broker. Returns events, and frames to send (the
    /// outbox, once registered).
    pub fn on_message(&mut self, text: &str) -> (Vec<SessionEvent>, Vec<String>) {
        self.on_message_at(text, self.clock)
    }

    /// [`Self::on_message`] at time `now` (which the broker's rate is
    /// counted from).
    pub fn on_message_at(&mut self, text: &str, now: Millis) -> (Vec<SessionEvent>, Vec<String>) {
        self.clock = self.clock.max(now);
        let Ok(msg) = ServerMessage::decode(text) else {
            // A broker speaking another protocol: nothing sensible to do
            // but report it as a push the glue logs.
            return (vec![], vec![]);
        };
        match msg {
            ServerMessage::Registered {
                rid,
                id,
                resume_token,
                resumed,
                ice_servers,
                rate_limit,
                rate_burst,
                max_frame_bytes,
                ..
            } if Some(rid) == self.register_rid => {
                self.register_rid = None;
                self.link = Link::Up;
                self.backoff.reset();
                self.id = Some(id.clone());
                self.resume_token = Some(resume_token);
                let first = !self.registered_once;
                self.registered_once = true;
                if let Some(max) = max_frame_bytes {
                    self.max_frame = usize::try_from(max).unwrap_or(usize::MAX);
                }
                self.pace = match (rate_limit, rate_burst) {
                    (Some(rate), Some(burst)) => Some(Pace::new(rate, burst, self.clock)),
                    _ => None,
                };
                let frames = self.poll_paced(self.clock);
                (
                    vec![SessionEvent::Registered {
                        id,
                        resumed,
                        ice_servers,
                        first,
                    }],
                    frames,
                )
            }
            ServerMessage::Error {
                rid: Some(rid),
                code: ErrorCode::BadResumeToken,
                ..
            } if Some(rid) == self.register_rid && self.fallback_token.is_some() => {
                // Another broker issued the latest token; this one knows
                // the one it issued itself.
                let token = self.fallback_token.take();
                (vec![], vec![self.register_frame(token)])
            }
            ServerMessage::Error {
                rid: Some(rid),
                code: code @ (ErrorCode::BadResumeToken | ErrorCode::IdTaken),
                message,
                ..
            } if Some(rid) == self.register_rid && self.registered_once => {
                // The id was this peer's: never give it up. A dead token
                // is dropped and the id asked for without one; a taken id
                // is asked for again after the backoff.
                self.register_rid = None;
                let events = vec![SessionEvent::ResumeRefused { code, message }];
                if code == ErrorCode::BadResumeToken {
                    self.resume_token = None;
                    (events, vec![self.register_frame(None)])
                } else {
                    (events, vec![])
                }
            }
            ServerMessage::Error {
                rid: Some(rid),
                code,
                message,
                ..
            } if Some(rid) == self.register_rid => {
                // The first registration's id is taken or invalid, or the
                // access token is refused: retrying cannot fix it.
                (self.refuse(code, message), vec![])
            }
            other => {
                let rid = reply_rid(&other);
                match rid {
                    Some(rid) if self.pending.remove(&rid).is_some() => (
                        vec![SessionEvent::Reply {
                            rid,
                            message: other,
                        }],
                        vec![],
                    ),
                    _ => (vec![SessionEvent::Push(other)], vec![]),
                }
            }
        }
    }

    /// The broker will not have this peer (a refused registration, or a
    /// refused token): no more reconnects; everything queued fails.
    pub fn refuse(&mut self, code: ErrorCode, message: String) -> Vec<SessionEvent> {
        self.register_rid = None;
        self.link = Link::Failed;
        let failed: Vec<SessionEvent> = std::mem::take(&mut self.outbox)
            .into_iter()
            .map(|(rid, _)| SessionEvent::Reply {
                rid,
                message: ServerMessage::error(Some(rid), code, "registration failed"),
            })
            .collect();
        self.pending.clear();
        let mut events = vec![SessionEvent::RegisterFailed { code, message }];
        events.extend(failed);
        events
    }

    /// Whether the peer has been registered at least once.
    pub fn registered_once(&self) -> bool {
        self.registered_once
    }

    /// The socket closed. Returns the delay before reconnecting, or `None`
    /// when the session should stay down (closed by the user, or failed).
    pub fn on_close(&mut self, random: f64) -> Option<Duration> {
        self.register_rid = None;
        match self.link {
            Link::Closed | Link::Failed => None,
            _ => {
                self.link = Link::Down;
                Some(self.backoff.next_delay(random))
            }
        }
    }

    /// The user closed the peer: everything pending is dropped (the glue
    /// rejects the corresponding promises).
    pub fn close(&mut self) -> Vec<Rid> {
        self.link = Link::Closed;
        self.outbox.clear();
        let rids = self.pending.keys().copied().collect();
        self.pending.clear();
        rids
    }

    /// The earliest request deadline, if a request is pending, or when the
    /// broker's rate lets the next waiting frame go.
    pub fn next_deadline(&self) -> Option<Millis> {
        let paced = match (&self.pace, self.link) {
            (Some(p), Link::Up) if !self.outbox.is_empty() => Some(p.next_at()),
            _ => None,
        };
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(paced)
            .reduce(f64::min)
    }

    /// Requests whose deadline has passed.
    pub fn poll_timeouts(&mut self, now: Millis) -> Vec<SessionEvent> {
        let expired: Vec<Rid> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        // In rid order already: `pending` is a sorted table.
        for rid in &expired {
            self.pending.remove(rid);
            self.outbox.retain(|(r, _)| r != rid);
        }
        expired
            .into_iter()
            .map(|rid| SessionEvent::TimedOut { rid })
            .collect()
    }
}

/// The rid a reply carries, if any.
pub fn reply_rid(msg: &ServerMessage) -> Option<Rid> {
    match msg {
        ServerMessage::Registered { rid, .. }
        | ServerMessage::Pong { rid }
        | ServerMessage::Found { rid, .. }
        | ServerMessage::Ok { rid }
        | ServerMessage::KeyOpened { rid, .. }
        | ServerMessage::KeyJoined { rid, .. }
        | ServerMessage::FoundHost { rid, .. } => Some(*rid),
        ServerMessage::Joined { rid, .. } => *rid,
        ServerMessage::Error { rid, .. } => *rid,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(rid: Rid, id: &str, token: &str) -> String {
        registered_with(rid, id, token, None, None)
    }

    /// `registered` with a message rate (rate, burst) and a frame size.
    fn registered_with(
        rid: Rid,
        id: &str,
        token: &str,
        rate: Option<(u64, u64)>,
        max_frame_bytes: Option<u64>,
    ) -> String {
        ServerMessage::Registered {
            rid,
            id: id.into(),
            resume_token: token.into(),
            resumed: false,
            ice_servers: vec![],
            grace_ms: 10_000,
            protocol: 1,
            rooms: vec![],
            rate_limit: rate.map(|r| r.0),
            rate_burst: rate.map(|r| r.1),
            max_frame_bytes,
        }
        .encode()
    }

    /// A signal to bob whose data is a JSON string of `n` bytes.
    fn signal_of(n: usize) -> impl Fn(Rid) -> ClientMessage {
        move |rid| ClientMessage::Signal {
            rid,
            to: "bob".into(),
            data: crate::protocol::json::Json(format!("\"{}\"", "x".repeat(n))),
        }
    }

    fn signal(to: &str, n: i64) -> impl FnOnce(Rid) -> ClientMessage {
        let to = to.to_string();
        move |rid| ClientMessage::Signal {
            rid,
            to,
            data: crate::protocol::json::Json(n.to_string()),
        }
    }

    /// A message above the broker's frame size is refused here, with the
    /// sizes, before it is sent: the broker would close the whole link.
    /// The size the broker announces replaces the default.
    #[test]
    fn a_message_above_the_brokers_frame_size_is_refused_before_it_is_sent() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        assert!(matches!(
            s.request(signal_of(70_000), 0.0),
            Err(QueueError::TooBig { max: 65_536, size }) if size > 70_000
        ));
        s.on_open();
        let reply = registered_with(2, "alice", "tok", None, Some(200_000));
        s.on_message_at(&reply, 0.0);
        assert!(
            s.request(signal_of(70_000), 0.0).unwrap().1.is_some(),
            "sent"
        );
        assert!(matches!(
            s.request(signal_of(200_000), 0.0),
            Err(QueueError::TooBig { max: 200_000, .. })
        ));
    }

    #[test]
    fn sends_are_paced_to_the_rate_the_broker_announced() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        // 300 messages wait while the broker is unreachable (an SDK
        // reconnecting with a full outbox).
        for n in 0..300 {
            s.request(signal("bob", n), 0.0).unwrap();
        }
        s.on_open();
        let reply = registered_with(301, "alice", "tok", Some((50, 200)), None);
        let (_, first) = s.on_message_at(&reply, 1000.0);
        // Within the burst, with a margin (register took one token too).
        assert_eq!(first.len(), 179);
        assert!(
            s.request(signal("bob", 300), 1000.0).unwrap().1.is_none(),
            "waits behind"
        );
        // The rest at 45 a second (90 % of 50), in order, each when due.
        let mut sent: Vec<String> = first;
        let mut now = 1000.0;
        let mut per_second = Vec::new();
        while sent.len() < 301 {
            let due = s.next_deadline().expect("a frame waits");
            assert!(due > now, "the next token is in the future");
            now = due;
            let got = s.poll_paced(now);
            assert!(!got.is_empty(), "a token at {now}");
            per_second.push((now, got.len()));
            sent.extend(got);
        }
        let ns: Vec<i64> = sent
            .iter()
            .map(|f| match ClientMessage::decode(f).unwrap() {
                ClientMessage::Signal { data, .. } => data.as_str().parse::<i64>().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ns, (0..=300).collect::<Vec<_>>());
        let elapsed = now - 1000.0;
        let rate = (301 - 179) as f64 / (elapsed / 1000.0);
        assert!(
            (44.0..=46.0).contains(&rate),
            "{rate} a second over {elapsed} ms"
        );
        // The broker's own limit is never passed: no more than 50 a second
        // beyond its burst of 200 over any stretch from registration.
        for (at, _) in &per_second {
            let upto: usize = 179
                + per_second
                    .iter()
                    .filter(|(t, _)| t <= at)
                    .map(|(_, n)| n)
                    .sum::<usize>();
            assert!(
                (upto as f64) <= 200.0 + 50.0 * (at - 1000.0) / 1000.0,
                "{upto} by {at}"
            );
        }
    }

    #[test]
    fn messages_before_registration_are_flushed_in_order() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        for n in 0..5 {
            let (_, now) = s.request(signal("bob", n), 0.0).unwrap();
            assert!(now.is_none(), "nothing is sent before registration");
        }
        let register = s.on_open();
        assert!(register.contains("\"register\"") && register.contains("alice"));
        // Still registering: keep queueing.
        assert!(s.request(signal("bob", 5), 0.0).unwrap().1.is_none());
        let (events, frames) = s.on_message(&registered(6, "alice", "tok"));
        assert!(
            matches!(&events[0], SessionEvent::Registered { id, first: true, .. } if id == "alice")
        );
        let ns: Vec<i64> = frames
            .iter()
            .map(|f| match ClientMessage::decode(f).unwrap() {
                ClientMessage::Signal { data, .. } => data.as_str().parse::<i64>().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ns, vec![0, 1, 2, 3, 4, 5]);
        assert!(
            s.request(signal("bob", 6), 0.0).unwrap().1.is_some(),
            "sent at once when up"
        );
    }

    #[test]
    fn a_reconnect_reclaims_the_id_with_the_token_and_queues_meanwhile() {
        let mut s = BrokerSession::new(None, SessionConfig::default());
        s.on_open();
        s.on_message(&registered(1, "p-1", "tok1"));
        let delay = s.on_close(0.0).unwrap();
        assert_eq!(delay, Duration::from_millis(125));
        assert!(s.request(signal("bob", 1), 0.0).unwrap().1.is_none());
        let register = ClientMessage::decode(&s.on_open()).unwrap();
        assert!(
            matches!(register, ClientMessage::Register { id: Some(ref id), resume_token: Some(ref t), .. } if id == "p-1" && t == "tok1")
        );
        let rid = register.rid();
        let (events, frames) = s.on_message(&registered(rid, "p-1", "tok2"));
        assert!(matches!(
            &events[0],
            SessionEvent::Registered { first: false, .. }
        ));
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn replies_are_matched_and_pushes_passed_through() {
        let mut s = BrokerSession::new(Some("a".into()), SessionConfig::default());
        s.on_open();
        s.on_message(&registered(1, "a", "t"));
        let (rid, _) = s
            .request(
                |rid| ClientMessage::Find {
                    rid,
                    id: "b".into(),
                },
                0.0,
            )
            .unwrap();
        let (events, _) = s.on_message(
            &ServerMessage::Found {
                rid,
                id: "b".into(),
                online: true,
            }
            .encode(),
        );
        assert!(matches!(&events[0], SessionEvent::Reply { rid: r, .. } if *r == rid));
        let (events, _) = s.on_message(
            &ServerMessage::Signal {
                from: "b".into(),
                data: crate::protocol::json::Json("1".into()),
            }
            .encode(),
        );
        assert!(matches!(
            &events[0],
            SessionEvent::Push(ServerMessage::Signal { .. })
        ));
        // An error for a rid nobody waits for is still surfaced.
        let (events, _) =
            s.on_message(&ServerMessage::delivery_error(999, ErrorCode::PeerGone, "b").encode());
        assert!(matches!(
            &events[0],
            SessionEvent::Push(ServerMessage::Error { .. })
        ));
    }

    #[test]
    fn a_refused_registration_fails_everything_queued_and_stops_reconnecting() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        let (queued, _) = s.request(signal("bob", 1), 0.0).unwrap();
        s.on_open();
        let err =
            ServerMessage::error(Some(2), ErrorCode::IdTaken, "id \"alice\" is taken").encode();
        let (events, frames) = s.on_message(&err);
        assert!(frames.is_empty());
        assert!(matches!(
            &events[0],
            SessionEvent::RegisterFailed {
                code: ErrorCode::IdTaken,
                ..
            }
        ));
        assert!(matches!(&events[1], SessionEvent::Reply { rid, .. } if *rid == queued));
        assert_eq!(s.link(), Link::Failed);
        assert_eq!(s.on_close(0.5), None);
        assert_eq!(s.request(signal("bob", 2), 0.0), Err(QueueError::Failed));
    }

    #[test]
    fn a_refused_token_fails_queued_requests_and_stops_reconnecting() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        let (queued, _) = s.request(signal("bob", 1), 0.0).unwrap();
        s.on_open();
        assert!(!s.registered_once());
        let events = s.refuse(ErrorCode::Unauthorized, "token expired".into());
        assert!(matches!(
            &events[0],
            SessionEvent::RegisterFailed { code: ErrorCode::Unauthorized, message } if message == "token expired"
        ));
        assert!(matches!(&events[1], SessionEvent::Reply { rid, .. } if *rid == queued));
        assert_eq!(s.on_close(0.5), None, "no reconnect after a refusal");
        assert_eq!(s.request(signal("bob", 2), 0.0), Err(QueueError::Failed));
    }

    #[test]
    fn a_refused_token_is_retried_once_with_the_one_this_broker_issued() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        s.on_open();
        s.on_message(&registered(1, "alice", "from-a"));
        s.on_close(0.0);
        // Moved to broker b, which issued its own token.
        s.offer_fallback_token(None);
        let rid = ClientMessage::decode(&s.on_open()).unwrap().rid();
        s.on_message(&registered(rid, "alice", "from-b"));
        assert_eq!(s.resume_token(), Some("from-b"));
        s.on_close(0.0);
        // Back on a, which still holds the id under its own token.
        s.offer_fallback_token(Some("from-a".into()));
        let first = ClientMessage::decode(&s.on_open()).unwrap();
        assert!(matches!(
            &first,
            ClientMessage::Register { resume_token: Some(t), .. } if t == "from-b"
        ));
        let refusal = ServerMessage::error(Some(first.rid()), ErrorCode::BadResumeToken, "no");
        let (events, frames) = s.on_message(&refusal.encode());
        assert!(events.is_empty(), "not a failure yet");
        let retry = ClientMessage::decode(&frames[0]).unwrap();
        assert!(matches!(
            &retry,
            ClientMessage::Register { id: Some(id), resume_token: Some(t), .. }
                if id == "alice" && t == "from-a"
        ));
        // Refused again: reported, and the id asked for without a token.
        let refusal = ServerMessage::error(Some(retry.rid()), ErrorCode::BadResumeToken, "no");
        let (events, frames) = s.on_message(&refusal.encode());
        assert!(matches!(
            &events[0],
            SessionEvent::ResumeRefused {
                code: ErrorCode::BadResumeToken,
                ..
            }
        ));
        assert!(matches!(
            ClientMessage::decode(&frames[0]).unwrap(),
            ClientMessage::Register { id: Some(id), resume_token: None, .. } if id == "alice"
        ));
        assert_eq!(s.link(), Link::Registering);
    }

    #[test]
    fn after_a_reconnect_a_refused_token_or_a_taken_id_is_reported_and_the_id_asked_for_again() {
        // A broker-assigned id is asked for again as it is.
        let mut s = BrokerSession::new(None, SessionConfig::default());
        s.on_open();
        s.on_message(&registered(1, "p-00aa", "tok"));
        s.on_close(0.0);
        let (queued, _) = s.request(signal("bob", 1), 0.0).unwrap();
        let first = ClientMessage::decode(&s.on_open()).unwrap();
        let refusal =
            ServerMessage::error(Some(first.rid()), ErrorCode::BadResumeToken, "restarted");
        let (events, frames) = s.on_message(&refusal.encode());
        assert!(matches!(
            &events[..],
            [SessionEvent::ResumeRefused { code: ErrorCode::BadResumeToken, message }] if message.starts_with("restarted")
        ));
        let fresh = ClientMessage::decode(&frames[0]).unwrap();
        assert!(matches!(
            &fresh,
            ClientMessage::Register { id: Some(id), resume_token: None, .. } if id == "p-00aa"
        ));
        assert_eq!(s.resume_token(), None, "the dead token is dropped");
        // Someone holds the id now: reported, the link stays down for the
        // glue to redial after the backoff, the queued request waits.
        let taken = ServerMessage::error(Some(fresh.rid()), ErrorCode::IdTaken, "taken");
        let (events, frames) = s.on_message(&taken.encode());
        assert!(frames.is_empty());
        assert!(matches!(
            &events[..],
            [SessionEvent::ResumeRefused {
                code: ErrorCode::IdTaken,
                ..
            }]
        ));
        assert_ne!(s.link(), Link::Failed);
        assert_eq!(
            s.on_close(1.0),
            Some(Duration::from_millis(500)),
            "the backoff grows"
        );
        assert_eq!(s.outbox_len(), 1);
        let again = ClientMessage::decode(&s.on_open()).unwrap();
        assert!(matches!(
            &again,
            ClientMessage::Register { id: Some(id), resume_token: None, .. } if id == "p-00aa"
        ));
        // Free again: registered, and what waited is sent.
        let (events, frames) = s.on_message(&registered(again.rid(), "p-00aa", "tok2"));
        assert!(matches!(
            &events[0],
            SessionEvent::Registered { first: false, .. }
        ));
        assert_eq!(frames.len(), 1);
        assert!(frames[0].contains(&format!("\"rid\":{queued}")));
    }

    #[test]
    fn a_fallback_equal_to_the_latest_token_is_not_retried() {
        let mut s = BrokerSession::new(Some("alice".into()), SessionConfig::default());
        s.on_open();
        s.on_message(&registered(1, "alice", "tok"));
        s.on_close(0.0);
        s.offer_fallback_token(Some("tok".into()));
        let rid = ClientMessage::decode(&s.on_open()).unwrap().rid();
        let refusal = ServerMessage::error(Some(rid), ErrorCode::BadResumeToken, "no");
        let (events, frames) = s.on_message(&refusal.encode());
        // Not sent again: the id is asked for without a token instead.
        assert!(matches!(
            ClientMessage::decode(&frames[0]).unwrap(),
            ClientMessage::Register {
                resume_token: None,
                ..
            }
        ));
        assert!(matches!(&events[0], SessionEvent::ResumeRefused { .. }));
    }

    #[test]
    fn the_outbox_is_bounded_and_requests_time_out() {
        let config = SessionConfig {
            max_outbox: 3,
            ..SessionConfig::default()
        };
        let mut s = BrokerSession::new(None, config);
        for n in 0..3 {
            s.request(signal("b", n), 0.0).unwrap();
        }
        assert_eq!(s.request(signal("b", 3), 0.0), Err(QueueError::Full(3)));
        assert!(s.poll_timeouts(9_999.0).is_empty());
        let timed_out = s.poll_timeouts(10_000.0);
        assert_eq!(timed_out.len(), 3);
        assert_eq!(s.outbox_len(), 0, "timed-out requests are not sent later");
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(b.next_delay(0.0).as_millis(), 50);
        b.reset();
        assert_eq!(b.next_delay(0.5).as_millis(), 75);
    }

    #[test]
    fn broker_urls_start_at_the_first_and_rotate_round_robin() {
        let mut urls = BrokerUrls::new(vec![
            "ws://a/ws".into(),
            "ws://b/ws".into(),
            "ws://c/ws".into(),
        ]);
        assert_eq!((urls.current(), urls.index()), (Some("ws://a/ws"), 0));
        assert_eq!(urls.advance(), Some("ws://b/ws"));
        assert_eq!(urls.advance(), Some("ws://c/ws"));
        // After the last, the first again.
        assert_eq!(urls.advance(), Some("ws://a/ws"));
        assert_eq!(urls.index(), 0);
        assert_eq!(urls.advance(), Some("ws://b/ws"));
        assert_eq!(urls.len(), 3);
        assert_eq!(urls.all()[2], "ws://c/ws");
    }

    #[test]
    fn one_broker_url_is_always_the_one_dialled() {
        let mut urls = BrokerUrls::new(vec!["ws://lb/ws".into()]);
        for _ in 0..3 {
            assert_eq!(urls.advance(), Some("ws://lb/ws"));
            assert_eq!(urls.index(), 0);
        }
        let mut none = BrokerUrls::new(Vec::new());
        assert!(none.is_empty());
        assert_eq!(none.current(), None);
        assert_eq!(none.advance(), None);
    }

    #[test]
    fn close_drops_everything() {
        let mut s = BrokerSession::new(None, SessionConfig::default());
        s.request(signal("b", 1), 0.0).unwrap();
        assert_eq!(s.close().len(), 1);
        assert_eq!(s.on_close(0.3), None);
        assert_eq!(s.request(signal("b", 2), 0.0), Err(QueueError::Closed));
    }
}
