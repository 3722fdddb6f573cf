//! A driver for the hub's unit tests: simulated time (a fixed base plus
//! offsets), a seeded random source, small limits, and each connection's
//! outbound queue read with `try_recv`, as the fuzz target does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwire::protocol::{ClientMessage, CloseCode};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ConnId, Frame, Hub, HubConfig, HubEnv, RelayConfig, Relayed};
use crate::metrics::Metrics;

/// `n` milliseconds after the harness's base instant.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Limits small enough to reach in a few lines.
pub fn config() -> HubConfig {
    HubConfig {
        grace: ms(100),
        max_queued: 3,
        max_room_members: 3,
        max_rooms_per_peer: 2,
        max_state_keys: 2,
        max_keys_per_peer: 2,
        max_hostnames_per_peer: 2,
        listen_timeout: Some(ms(30)),
        pipe_timeout: Some(ms(40)),
        relay: RelayConfig {
            rate: 100_000,
            max_bytes: 1_000_000,
            max_pairs: 3,
            max_per_peer: 2,
            total_rate: 150_000,
            intent_timeout: ms(50),
            ..RelayConfig::default()
        },
        ..HubConfig::default()
    }
}

struct Client {
    rx: super::Inbox,
    /// Frames read but not yet returned (those after a request's reply).
    unread: Vec<Value>,
    /// Binary (relay) frames read but not yet returned.
    binary: Vec<Vec<u8>>,
    kill: oneshot::Receiver<CloseCode>,
}

/// A hub and its connections, on simulated time.
pub struct Harness {
    pub hub: Hub,
    /// Time zero.
    pub base: Instant,
    /// The current time: `base` plus what `at`/`sweep` moved it to.
    pub now: Instant,
    clients: HashMap<ConnId, Client>,
    config: HubConfig,
}

/// The seed of the harness's first hub (its random bytes and resume key).
const SEED: u64 = 7;
const UNIX_SECS: u64 = 1_700_000_000;

impl Harness {
    pub fn new() -> Self {
        Self::with_config(config())
    }

    pub fn with_config(config: HubConfig) -> Self {
        let base = Instant::now();
        Self {
            hub: Hub::new(
                config.clone(),
                Arc::new(Metrics::new()),
                HubEnv::seeded(SEED, UNIX_SECS),
            ),
            base,
            now: base,
            clients: HashMap::new(),
            config,
        }
    }

    /// The broker restarts at `base + offset`: every connection is gone,
    /// and a new hub (another run: random bytes from `seed`) signs tokens
    /// with the same resume key, as a broker with a kept state directory.
    pub fn restart(&mut self, seed: u64, offset: Duration) {
        self.clients.clear();
        let key = HubEnv::seeded(SEED, UNIX_SECS).resume_key;
        self.hub = Hub::new(
            self.config.clone(),
            Arc::new(Metrics::new()),
            HubEnv::seeded(seed, UNIX_SECS).with_resume_key(key),
        );
        self.sweep(offset);
    }

    /// A connection with an outbound queue of 8 frames.
    pub fn connect(&mut self) -> ConnId {
        self.connect_with_queue(8)
    }

    /// A connection with an outbound queue of `frames` frames.
    pub fn connect_with_queue(&mut self, frames: usize) -> ConnId {
        self.connect_full(frames, None)
    }

    /// A connection from address `ip` (sharing its byte budgets with the
    /// others from it), with an outbound queue of 64 frames.
    pub fn connect_from(&mut self, ip: &str) -> ConnId {
        self.connect_full(64, Some(ip.parse().expect("an IP address")))
    }

    fn connect_full(&mut self, frames: usize, ip: Option<std::net::IpAddr>) -> ConnId {
        let (tx, rx) = super::outbox::channel(frames);
        let (kill_tx, kill) = oneshot::channel();
        let conn = self.hub.connect(tx, kill_tx, None, None, ip);
        self.clients.insert(
            conn,
            Client {
                rx,
                unread: Vec::new(),
                binary: Vec::new(),
                kill,
            },
        );
        conn
    }

    /// Moves the clock to `base + offset` (without sweeping).
    pub fn at(&mut self, offset: Duration) {
        self.now = self.base + offset;
    }

    /// Moves the clock to `base + offset` and sweeps.
    pub fn sweep(&mut self, offset: Duration) {
        self.at(offset);
        self.hub.sweep(self.now);
    }

    /// Sends one message (JSON, decoded as the socket code would).
    pub fn send(&mut self, conn: ConnId, msg: Value) {
        let text = msg.to_string();
        if self.hub.try_signal(conn, &text, self.now) {
            return;
        }
        let msg = ClientMessage::decode(&text).expect("a valid test message");
        self.hub.handle(conn, msg, self.now);
    }

    /// Sends one message and returns the first frame it got back; later
    /// frames wait for the next `frames`.
    pub fn request(&mut self, conn: ConnId, msg: Value) -> Value {
        self.send(conn, msg.clone());
        let mut frames = self.frames(conn);
        assert!(!frames.is_empty(), "no reply to {msg}");
        let first = frames.remove(0);
        if let Some(c) = self.clients.get_mut(&conn) {
            c.unread = frames;
        }
        first
    }

    /// Registers `id`, returning its resume token.
    pub fn register(&mut self, conn: ConnId, id: &str) -> String {
        let reply = self.request(
            conn,
            serde_json::json!({"type": "register", "rid": 1, "id": id}),
        );
        assert_eq!(reply["type"], "registered", "{reply}");
        reply["resumeToken"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every JSON frame waiting for `conn`, decoded (binary frames wait
    /// for [`Harness::binary`]).
    pub fn frames(&mut self, conn: ConnId) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(c) = self.clients.get_mut(&conn) {
            out.append(&mut c.unread);
            while let Ok(o) = c.rx.try_recv() {
                match o.frame {
                    Frame::Text(t) => {
                        out.push(serde_json::from_str(t.as_str()).expect("the hub sends JSON"))
                    }
                    Frame::Binary(b) => c.binary.push(b.to_vec()),
                }
            }
        }
        out
    }

    /// Every JSON frame waiting for `conn`, as the hub encoded it.
    pub fn raw_text(&mut self, conn: ConnId) -> Vec<super::TextFrame> {
        let mut out = Vec::new();
        if let Some(c) = self.clients.get_mut(&conn) {
            while let Ok(o) = c.rx.try_recv() {
                if let Frame::Text(t) = o.frame {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Every binary frame waiting for `conn` (JSON frames wait for
    /// [`Harness::frames`]).
    pub fn binary(&mut self, conn: ConnId) -> Vec<Vec<u8>> {
        let text = self.frames(conn);
        let Some(c) = self.clients.get_mut(&conn) else {
            return Vec::new();
        };
        c.unread = text;
        std::mem::take(&mut c.binary)
    }

    /// Sends one binary frame, as the socket code would.
    pub fn send_binary(&mut self, conn: ConnId, frame: &[u8]) -> Relayed {
        self.hub.handle_binary(conn, frame, self.now)
    }

    /// The close code the hub asked for on `conn`, if any.
    pub fn killed(&mut self, conn: ConnId) -> Option<u16> {
        let c = self.clients.get_mut(&conn)?;
        c.kill.try_recv().ok().map(|code| code.code())
    }

    /// The connection ends (`clean`: closed with 1000), handing back what
    /// it never wrote.
    /// Returns the reason the hub gives for closing it, if it has one.
    pub fn drop_conn(&mut self, conn: ConnId, clean: bool) -> Option<&'static str> {
        let mut c = self.clients.remove(&conn)?;
        self.hub.disconnect(conn, clean, self.now, &mut c.rx)
    }
}
