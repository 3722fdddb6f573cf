//! Soak test for the broker: thousands of clients registering, joining and
//! leaving rooms, signalling and disconnecting at random for minutes, then an
//! exact accounting of every signal, and the broker's memory and gauges back
//! at baseline. Loopback only, bounded in clients (any) and time (900 s).
//! `tests/soak.sh` builds and runs it against a fresh broker.
//!
//! ```text
//! soak --url ws://127.0.0.1:8080/ws --clients 2000 --seconds 120 --pid <broker pid>
//!      [--waves 2] [--rooms 200] [--max-rooms 3] [--interval-ms 700] [--slack-ms 2000]
//!      [--storm-every-ms 10000] [--storm-senders 10] [--storm-size 120] [--seed N]
//! soak --url ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws --pid 101 --pid 102
//!      [--redis redis://127.0.0.1:6379] [--move 0.3] ...
//! ```
//!
//! Several brokers of one network (`--redis` on each; `--url` repeated or
//! comma-separated, `--pid` likewise, in the same order): client `i` starts
//! on broker `i mod n`, and each reconnect (a clean one, or a resume with
//! the token) moves to another broker, chosen at random, with chance
//! `--move` (default 0.3; 0 with one broker). `--redis` adds an end check:
//! after the last client closed, Redis holds nothing of the run (no `pw:*`
//! key but the join-order counter).
//!
//! `--seconds` of activity are split into `--waves` waves; each wave is a
//! complete run (fresh ids, settle, everyone closes, accounting, gauges).
//!
//! # What each client does
//!
//! Client `i` always uses the id `s<run>-<i>`. While connected it acts every
//! `--interval-ms` on average (exponential gaps): signals a random other id
//! (65 %, sometimes a burst of 5–20 back to back), joins or leaves one of
//! `--rooms` rooms (at most `--max-rooms` at once), broadcasts, sets room
//! state with a TTL, opens/closes its rendezvous key, joins/leaves another's,
//! finds or pings, and 4 % of the time disconnects:
//!
//! - `clean`: close frame 1000 (the id is released at once), then keeps
//!   reading until the broker's side of the stream ends; comes back after
//!   0.3–5 s with a fresh `register`;
//! - `away`: close frame 1001 (not 1000: the id enters its grace window),
//!   keeps reading to the end of the stream;
//! - `eof`: shuts down its TCP write side without a close frame, keeps
//!   reading to the end of the stream;
//! - `hard`: drops the socket at once, unread frames and all.
//!
//! After `away`/`eof`/`hard`, 65 % come back inside the grace window with
//! their `resumeToken` (queued signals are delivered then), the others wait
//! out the window and register afresh (`id-taken` is retried).
//!
//! Fan-in storms (every `--storm-every-ms`, 0 = none): `--storm-senders`
//! online clients each fire `--storm-size` signals at once at one online
//! client, as a room does when a newcomer joins a mesh (offers and ICE
//! candidates from every member). Each sender stays inside the broker's
//! default per-connection burst (200).
//!
//! Every signal carries a per-(sender, receiver) sequence number. Every
//! `error` carrying a signal's rid is booked against that signal.
//!
//! At `--seconds` clients stop acting but keep reading ("settle": grace
//! window + slack + 2 s, so grace windows end and their `peer-gone`s
//! arrive), then all close with 1000 and drain. The broker's `/metrics`
//! gauges must all come back to 0 and its RSS (`--pid`) near its baseline.
//!
//! # The guarantee checked
//!
//! A signal *counts* when the broker accepted it silently: no `error` with
//! its rid ever reached the sender (`unknown-peer` and `queue-full` answer at
//! once, `peer-gone` when the receiver's grace window ends without a
//! resume). Every counted signal must be delivered to its receiver exactly
//! once, and each (sender, receiver) pair's signals must arrive in the order
//! sent — across reconnects, resumes and queueing while detached. Checked
//! exactly, without any timing: no duplicate, no reordering, no signal both
//! delivered and refused, no signal refused twice, no delivery of a signal
//! never sent, no resume refused inside the grace window.
//!
//! Apart from `hard` drops, every disconnect keeps reading until the broker
//! ends the stream, so whatever the broker wrote was read: a counted signal
//! that never arrives was lost by the broker. Exactly three causes are
//! excused, each a loss the broker cannot see or cannot report (`--slack-ms`
//! W, default 2 s, covers scheduling lag on a loaded machine):
//!
//! 1. the receiver hard-dropped a socket within W of the send (frames in its
//!    kernel buffer die with it; a drain cut short by an I/O error counts as
//!    a hard drop);
//! 2. the sender hard-dropped within W after sending (the broker may never
//!    have read it, or its error reply died in the sender's socket);
//! 3. the receiver's session expired (no resume inside the grace window)
//!    after the send, and the sender was not connected throughout the
//!    moment of expiry (± W), so its `peer-gone` had nowhere to go.
//!    Cross-check: these cannot outnumber the `peer-gone` errors the broker
//!    counted minus those the senders received.
//!
//! Every other undelivered counted signal is a violation ("lost"), printed
//! with the nearest connection events of its receiver and sender, and split
//! by whether the receiver held its id throughout the send (± W: a delivery
//! was lost) or was offline throughout (the broker refused it, but the
//! `unknown-peer` never reached the sender).
//!
//! # Across brokers
//!
//! With several brokers the accounting is the same, exact, and
//! timing-free; what it then covers besides the above:
//!
//! - signals between clients on different brokers (through Redis): each
//!   exactly once and in order per pair, or refused to the sender;
//! - a receiver that resumes on another broker with its token: signals
//!   queued for it on the old broker, and those still on their way there,
//!   follow it or are refused (`peer-gone`), never both, and arrive in
//!   order with the ones sent to it on the new broker; `resumed: true`
//!   inside the grace window on any broker (a refused resume or
//!   `bad-resume-token` is a violation);
//! - a sender that moves: its signals sent from the new broker arrive after
//!   those it sent from the old one;
//! - refusals crossing back: `peer-gone`, `queue-full` and `unknown-peer`
//!   raised on the receiver's broker reach a sender on another one; the
//!   `peer-gone` cross-check adds up every broker's counter;
//! - `unavailable` (the target's broker is unreachable, or this broker has
//!   lost Redis) is one more refusal: the signal counts as refused to its
//!   sender, like `unknown-peer`;
//! - broadcasts across brokers: no duplicate or reordering per sender;
//! - every broker's gauges at 0 and RSS near its own baseline (each
//!   `--pid`), and with `--redis` nothing of the run left in Redis.
//!
//! Deliveries, latency and lost signals are split by whether the pair was
//! on one broker or two at the send, and resumes by whether they moved.
//!
//! Memory: after each wave the gauges `peerwire_connections`,
//! `peerwire_ids`, `peerwire_ids_detached`, `peerwire_rooms` and
//! `peerwire_rendezvous_keys` must read exactly 0 (the sharp check: the hub
//! holds nothing). The broker's RSS (`--pid`) is printed at baseline, peak
//! and the end of each wave; it must end within max(baseline × 1.5,
//! baseline + 20 MiB), or, since glibc keeps freed pages (measured:
//! `malloc_trim(0)` through gdb takes a 2000-client run's 28 MiB back to
//! 11 MiB, and that 11 MiB stays flat wave after wave), end the last wave no
//! higher than the first + max(4 MiB, 20 % of the first wave's growth):
//! memory reused, not leaked wave after wave.
//!
//! Exit status 1 on any violation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const RUN: u8 = 0;
const SETTLE: u8 = 1;
const FINAL: u8 = 2;

// ---- arguments ---------------------------------------------------------

struct Args {
    urls: Vec<String>,
    clients: u32,
    seconds: u64,
    rooms: u32,
    max_rooms: usize,
    interval_ms: f64,
    slack_ms: u64,
    /// One per broker, in the order of `urls` (none: RSS not measured).
    pids: Vec<u32>,
    /// The chance that a reconnect moves to another broker.
    move_chance: Option<f64>,
    redis: Option<String>,
    seed: u64,
    storm_every_ms: u64,
    storm_senders: u32,
    storm_size: u32,
    waves: u32,
}

fn args() -> Args {
    let mut a = Args {
        urls: Vec::new(),
        clients: 2000,
        seconds: 120,
        rooms: 200,
        max_rooms: 3,
        interval_ms: 700.0,
        slack_ms: 2000,
        pids: Vec::new(),
        move_chance: None,
        redis: None,
        storm_every_ms: 10_000,
        storm_senders: 10,
        storm_size: 120,
        waves: 2,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a
                .urls
                .extend(v.split(',').filter(|u| !u.is_empty()).map(str::to_string)),
            "--clients" => a.clients = v.parse().expect("--clients N"),
            "--seconds" => a.seconds = v.parse::<u64>().expect("--seconds N").min(900),
            "--rooms" => a.rooms = v.parse().expect("--rooms N"),
            "--max-rooms" => a.max_rooms = v.parse().expect("--max-rooms N"),
            "--interval-ms" => a.interval_ms = v.parse().expect("--interval-ms N"),
            "--slack-ms" => a.slack_ms = v.parse().expect("--slack-ms N"),
            "--pid" => a.pids.extend(
                v.split(',')
                    .map(|p| p.parse::<u32>().expect("--pid PID[,PID…]")),
            ),
            "--move" => a.move_chance = Some(v.parse().expect("--move P (0 to 1)")),
            "--redis" => a.redis = Some(v),
            "--seed" => a.seed = v.parse().expect("--seed N"),
            "--storm-every-ms" => a.storm_every_ms = v.parse().expect("--storm-every-ms N"),
            "--storm-senders" => a.storm_senders = v.parse().expect("--storm-senders N"),
            "--storm-size" => a.storm_size = v.parse().expect("--storm-size N"),
            "--waves" => a.waves = v.parse::<u32>().expect("--waves N").max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.urls.is_empty(),
        "--url ws://127.0.0.1:PORT/ws (repeat it per broker)"
    );
    for url in &a.urls {
        assert!(
            url.starts_with("ws://127.") || url.starts_with("ws://localhost"),
            "loopback only: --url ws://127.0.0.1:PORT/ws"
        );
    }
    assert!(
        a.pids.is_empty() || a.pids.len() == a.urls.len(),
        "one --pid per --url, in the same order"
    );
    if let Some(r) = &a.redis {
        assert!(
            r.starts_with("redis://127.") || r.starts_with("redis://localhost"),
            "loopback only: --redis redis://127.0.0.1:PORT"
        );
    }
    assert!(a.clients >= 2, "--clients must be at least 2");
    assert!(a.rooms >= 1 && a.interval_ms > 0.0);
    a
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The broker's `/metrics` text (plain HTTP/1.0 on loopback).
async fn fetch_metrics(addr: &str) -> Option<String> {
    let io = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        Some(text.split_once("\r\n\r\n")?.1.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .ok()
        .flatten()
}

/// One sample's value (`name` may include labels: `x_total{code="y"}`).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

const GAUGES: [&str; 5] = [
    "peerwire_connections",
    "peerwire_ids",
    "peerwire_ids_detached",
    "peerwire_rooms",
    "peerwire_rendezvous_keys",
];

fn gauges(body: &str) -> Vec<i64> {
    GAUGES
        .iter()
        .map(|g| metric(body, g).map_or(-1, |v| v as i64))
        .collect()
}

/// Every broker's `/metrics` text, in order ("" for one that did not
/// answer).
async fn fetch_all(addrs: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        out.push(fetch_metrics(addr).await.unwrap_or_default());
    }
    out
}

/// The gauges added up over every broker (-1 where one did not say).
fn sum_gauges(bodies: &[String]) -> Vec<i64> {
    let each: Vec<Vec<i64>> = bodies.iter().map(|b| gauges(b)).collect();
    (0..GAUGES.len())
        .map(|g| {
            let vals: Vec<i64> = each.iter().map(|v| v[g]).collect();
            if vals.contains(&-1) {
                -1
            } else {
                vals.iter().sum()
            }
        })
        .collect()
}

/// One counter added up over every broker.
fn sum_metric(bodies: &[String], name: &str) -> u64 {
    bodies
        .iter()
        .map(|b| metric(b, name).unwrap_or(0.0) as u64)
        .sum()
}

fn rss_all(pids: &[u32]) -> Vec<Option<u64>> {
    pids.iter().map(|&p| rss_kib(p)).collect()
}

fn fmt_rss_all(v: &[Option<u64>]) -> String {
    if v.is_empty() {
        return "not measured".into();
    }
    v.iter()
        .enumerate()
        .map(|(i, r)| format!("b{i} {}", kib(*r)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys Redis holds of the network, but the join-order counter
/// (`pw:seq`, which only grows); `None` when Redis cannot be asked.
async fn redis_leftovers(url: &str) -> Option<Vec<String>> {
    let io = async {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("pw:*")
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(keys.into_iter().filter(|k| k != "pw:seq").collect())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .ok()
        .flatten()
}

// ---- randomness (no rand crate among the dev-dependencies) -------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo).max(1)))
    }
    /// Exponentially distributed, mean `mean_ms`, capped at 10 means.
    fn exp(&mut self, mean_ms: f64) -> Duration {
        let u = self.unit().max(1e-12);
        Duration::from_micros(((-u.ln()).min(10.0) * mean_ms * 1000.0) as u64)
    }
}

// ---- records -----------------------------------------------------------

/// How a connection ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// Close frame 1000 (id released), read to the end.
    Clean,
    /// Close frame 1001 (grace window), read to the end.
    Away,
    /// TCP write side shut down, no close frame; read to the end.
    Eof,
    /// Socket dropped unread.
    Hard,
    /// The broker closed the connection with this code.
    Broker(u16),
    /// The stream broke without either side closing.
    Lost,
    /// The end-of-run close (1000).
    Final,
}

impl End {
    fn name(self) -> String {
        match self {
            End::Clean => "clean".into(),
            End::Away => "away".into(),
            End::Eof => "eof".into(),
            End::Hard => "hard".into(),
            End::Broker(c) => format!("broker-close-{c}"),
            End::Lost => "lost".into(),
            End::Final => "final".into(),
        }
    }
    /// Whether the broker releases the id at once (else: grace window).
    fn releases(self) -> bool {
        matches!(self, End::Clean | End::Final)
    }
}

/// One registered connection of one client.
#[derive(Clone, Debug)]
struct ConnRec {
    /// Which broker (index into the URLs).
    broker: usize,
    t_reg: u64,
    resumed: bool,
    asked_resume: bool,
    /// When the client started to disconnect (or saw the connection end).
    t_end: u64,
    end: End,
    /// Whether everything the broker wrote was read (false for `hard`, and
    /// for a drain an I/O error cut short).
    drained: bool,
}

impl ConnRec {
    fn lossy(&self) -> bool {
        !self.drained
    }
}

struct SentSig {
    to: u32,
    seq: u64,
    t: u64,
    /// Index of the sender's connection it went out on.
    conn: u32,
    err: Option<&'static str>,
    errs: u8,
    send_failed: bool,
}

struct Delivery {
    from: u32,
    /// The receiver's connection it arrived on.
    conn: u32,
    seq: u64,
    t_sent: u64,
    t_recv: u64,
}

#[derive(Default)]
struct ClientLog {
    conns: Vec<ConnRec>,
    sent: Vec<SentSig>,
    delivered: Vec<Delivery>,
    counts: BTreeMap<String, u64>,
}

impl ClientLog {
    fn bump(&mut self, what: impl Into<String>) {
        *self.counts.entry(what.into()).or_default() += 1;
    }
}

fn static_code(code: &str) -> &'static str {
    match code {
        "unknown-peer" => "unknown-peer",
        "queue-full" => "queue-full",
        "peer-gone" => "peer-gone",
        "unavailable" => "unavailable",
        _ => "other",
    }
}

// ---- shared state ------------------------------------------------------

struct Shared {
    urls: Vec<String>,
    /// The chance that a reconnect moves to another broker.
    move_chance: f64,
    run: String,
    n: u32,
    rooms: u32,
    max_rooms: usize,
    interval_ms: f64,
    ramp_ms: u64,
    seed: u64,
    epoch: Instant,
    grace_ms: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    actions: AtomicU64,
    online: AtomicI64,
    /// Which clients are registered right now (for storms).
    is_online: Vec<AtomicBool>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
    /// `<kind><run>-<i>`: a name of this run's (peer `s`, room `r`, key `k`).
    fn name(&self, kind: char, i: u32) -> String {
        format!("{kind}{}-{i}", self.run)
    }
    fn parse_name(&self, kind: char, name: &str) -> Option<u32> {
        name.strip_prefix(kind)?
            .strip_prefix(self.run.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }
    fn peer(&self, i: u32) -> String {
        self.name('s', i)
    }
    fn parse_peer(&self, id: &str) -> Option<u32> {
        self.parse_name('s', id)
    }
    fn room(&self, j: u32) -> String {
        self.name('r', j)
    }
    fn parse_room(&self, name: &str) -> Option<u32> {
        self.parse_name('r', name)
    }
    fn key(&self, i: u32) -> String {
        self.name('k', i)
    }
    fn parse_key(&self, key: &str) -> Option<u32> {
        self.parse_name('k', key)
    }
}

// ---- one client --------------------------------------------------------

struct Client {
    i: u32,
    id: String,
    sh: Arc<Shared>,
    rng: Rng,
    log: ClientLog,
    next_rid: u64,
    seq_to: HashMap<u32, u64>,
    bseq: u64,
    last_bseq_from: HashMap<u32, u64>,
    sig_by_rid: HashMap<u64, usize>,
    bcast_rids: HashSet<u64>,
    rooms: BTreeSet<u32>,
    key_open: bool,
    joined_keys: BTreeSet<u32>,
    token: Option<String>,
    /// The broker this client connects to next (index into the URLs).
    broker: usize,
    conn_no: u32,
    /// A close frame arrived on the current socket.
    got_close: Option<u16>,
    /// Storm orders: (issued at, target, signals).
    storms: mpsc::UnboundedReceiver<(Instant, u32, u32)>,
}

enum Action {
    Signal,
    Burst,
    Join,
    Leave,
    Broadcast,
    Set,
    OwnKey,
    OtherKey,
    FindOrPing,
    Disconnect(End),
}

impl Client {
    fn new(i: u32, sh: Arc<Shared>, storms: mpsc::UnboundedReceiver<(Instant, u32, u32)>) -> Self {
        let seed = sh.seed ^ (u64::from(i) + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        let broker = i as usize % sh.urls.len();
        Self {
            i,
            id: sh.peer(i),
            rng: Rng(seed),
            sh,
            log: ClientLog::default(),
            next_rid: 0,
            seq_to: HashMap::new(),
            bseq: 0,
            last_bseq_from: HashMap::new(),
            sig_by_rid: HashMap::new(),
            bcast_rids: HashSet::new(),
            rooms: BTreeSet::new(),
            key_open: false,
            joined_keys: BTreeSet::new(),
            token: None,
            broker,
            conn_no: 0,
            got_close: None,
            storms,
        }
    }

    fn rid(&mut self) -> u64 {
        self.next_rid += 1;
        self.next_rid
    }

    fn other(&mut self) -> u32 {
        loop {
            let j = self.rng.below(u64::from(self.sh.n)) as u32;
            if j != self.i {
                return j;
            }
        }
    }

    fn grace(&self) -> u64 {
        match self.sh.grace_ms.load(Relaxed) {
            0 => 10_000,
            g => g,
        }
    }

    async fn run(mut self, mut phase: watch::Receiver<u8>) -> ClientLog {
        let ramp = self.rng.ms(0, self.sh.ramp_ms);
        if !self.offline(ramp, &mut phase).await {
            return self.log;
        }
        let mut resume = false;
        loop {
            let Some(mut ws) = self.connect_register(resume, &mut phase).await else {
                break;
            };
            self.sh.online.fetch_add(1, Relaxed);
            self.sh.is_online[self.i as usize].store(true, Relaxed);
            let end = self.online(&mut ws, &mut phase).await;
            let t_end = self.sh.now();
            self.sh.is_online[self.i as usize].store(false, Relaxed);
            let drained = self.disconnect(ws, end).await;
            self.sh.online.fetch_sub(1, Relaxed);
            let c = &mut self.log.conns[self.conn_no as usize];
            c.t_end = t_end;
            c.end = end;
            c.drained = drained;
            self.log.bump(format!("disconnect.{}", end.name()));
            if !drained && end != End::Hard {
                self.log.bump(format!("drain-cut.{}", end.name()));
            }
            let wait = match end {
                End::Final => break,
                End::Clean => {
                    resume = false;
                    self.token = None;
                    self.rng.ms(300, 5000)
                }
                _ if self.rng.chance(0.65) => {
                    resume = true;
                    self.rng.ms(100, self.grace() * 6 / 10)
                }
                _ => {
                    resume = false;
                    Duration::from_millis(self.grace()) + self.rng.ms(500, 4000)
                }
            };
            self.maybe_move();
            if !self.offline(wait, &mut phase).await {
                break;
            }
        }
        self.log
    }

    /// Picks another broker for the next connection, some of the time.
    fn maybe_move(&mut self) {
        let n = self.sh.urls.len();
        if n > 1 && self.rng.chance(self.sh.move_chance) {
            let step = 1 + self.rng.below(n as u64 - 1) as usize;
            self.broker = (self.broker + step) % n;
        }
    }

    /// Sleeps for `d`; false when the run moved past its acting phase.
    async fn offline(&mut self, d: Duration, phase: &mut watch::Receiver<u8>) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            if *phase.borrow_and_update() != RUN {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return *phase.borrow() == RUN,
                r = phase.changed() => if r.is_err() { return false },
            }
        }
    }

    /// Connects and registers (resuming when `resume`), retrying until it
    /// works or the acting phase is over.
    async fn connect_register(
        &mut self,
        resume: bool,
        phase: &mut watch::Receiver<u8>,
    ) -> Option<Ws> {
        let mut resume = resume;
        loop {
            if *phase.borrow() != RUN {
                return None;
            }
            let config = WebSocketConfig::default()
                .read_buffer_size(8 * 1024)
                .write_buffer_size(0);
            let connect = tokio_tungstenite::connect_async_with_config(
                self.sh.urls[self.broker].as_str(),
                Some(config),
                true,
            );
            let mut ws = match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Ok(Ok((ws, _))) => ws,
                _ => {
                    self.log.bump("connect-failed");
                    let pause = self.rng.ms(300, 1500);
                    if !self.offline(pause, phase).await {
                        return None;
                    }
                    continue;
                }
            };
            let rid = self.rid();
            let mut reg = json!({"type": "register", "rid": rid, "id": self.id});
            let asked_resume = resume && self.token.is_some();
            if asked_resume {
                reg["resumeToken"] = json!(self.token);
            }
            if ws.send(Message::text(reg.to_string())).await.is_err() {
                self.log.bump("register-send-failed");
                continue;
            }
            let reply = loop {
                match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                        if v["rid"].as_u64() == Some(rid) {
                            break Some(v);
                        }
                        self.on_text(t.as_str());
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break None,
                }
            };
            let Some(v) = reply else {
                self.log.bump("register-no-reply");
                continue;
            };
            if v["type"] == "registered" {
                let resumed = v["resumed"].as_bool().unwrap_or(false);
                self.token = v["resumeToken"].as_str().map(str::to_string);
                if let Some(g) = v["graceMs"].as_u64() {
                    self.sh.grace_ms.store(g, Relaxed);
                }
                if resumed {
                    let kept: BTreeSet<u32> = v["rooms"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| self.sh.parse_room(r.as_str()?))
                        .collect();
                    if kept != self.rooms {
                        self.log.bump("resume-rooms-differ-from-local-view");
                    }
                    self.rooms = kept;
                    self.log.bump("register.resumed");
                } else {
                    self.rooms.clear();
                    self.key_open = false;
                    self.joined_keys.clear();
                    self.log.bump(if asked_resume {
                        "register.resume-expired"
                    } else {
                        "register.fresh"
                    });
                }
                let moved = self
                    .log
                    .conns
                    .last()
                    .is_some_and(|c| c.broker != self.broker);
                if resumed && moved {
                    self.log.bump("register.resumed-on-another-broker");
                } else if moved {
                    self.log.bump("register.fresh-on-another-broker");
                }
                self.log.conns.push(ConnRec {
                    broker: self.broker,
                    t_reg: self.sh.now(),
                    resumed,
                    asked_resume,
                    t_end: 0,
                    end: End::Lost,
                    drained: false,
                });
                self.conn_no = self.log.conns.len() as u32 - 1;
                self.got_close = None;
                return Some(ws);
            }
            let code = v["code"].as_str().unwrap_or("?").to_string();
            self.log.bump(format!("register-error.{code}"));
            if code != "id-taken" {
                // A refused token: start afresh (counted as a violation).
                resume = false;
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            let pause = self.rng.ms(200, 800);
            if !self.offline(pause, phase).await {
                return None;
            }
        }
    }

    /// Acts and reads until a disconnect is chosen or the run ends.
    async fn online(&mut self, ws: &mut Ws, phase: &mut watch::Receiver<u8>) -> End {
        let mut acting = *phase.borrow_and_update() == RUN;
        if *phase.borrow() == FINAL {
            return End::Final;
        }
        let next = tokio::time::sleep(self.rng.exp(self.sh.interval_ms));
        tokio::pin!(next);
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => self.on_text(t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        let code = f.map_or(1005, |f| u16::from(f.code));
                        self.got_close = Some(code);
                        return End::Broker(code);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return End::Lost,
                },
                _ = &mut next, if acting => {
                    self.sh.actions.fetch_add(1, Relaxed);
                    match self.act(ws).await {
                        Ok(Some(end)) => return end,
                        Ok(None) => {}
                        Err(_) => {
                            self.log.bump("send-failed");
                            return End::Lost;
                        }
                    }
                    let gap = self.rng.exp(self.sh.interval_ms);
                    next.as_mut().reset(tokio::time::Instant::now() + gap);
                },
                Some((at, to, n)) = self.storms.recv() => {
                    // Orders that waited while this client was away are stale.
                    if acting && at.elapsed() < Duration::from_millis(300) {
                        self.log.bump("action.storm-burst");
                        for _ in 0..n {
                            if self.signal(ws, to).await.is_err() {
                                self.log.bump("send-failed");
                                return End::Lost;
                            }
                        }
                    }
                },
                r = phase.changed() => {
                    let p = if r.is_err() { FINAL } else { *phase.borrow_and_update() };
                    if p == FINAL {
                        return End::Final;
                    }
                    acting = p == RUN;
                },
            }
        }
    }

    fn choose(&mut self) -> Action {
        let a = match self.rng.below(100) {
            0..=55 | 87..=95 => Action::Signal,
            56..=57 => Action::Burst,
            58..=65 => Action::Join,
            66..=70 => Action::Leave,
            71..=74 => Action::Broadcast,
            75..=77 => Action::Set,
            78..=80 => Action::OwnKey,
            81..=83 => Action::OtherKey,
            84..=86 => Action::FindOrPing,
            _ => Action::Disconnect(match self.rng.below(100) {
                0..=34 => End::Clean,
                35..=59 => End::Away,
                60..=79 => End::Eof,
                _ => End::Hard,
            }),
        };
        match a {
            Action::Join if self.rooms.len() >= self.sh.max_rooms => Action::Leave,
            Action::Leave | Action::Broadcast | Action::Set if self.rooms.is_empty() => {
                Action::Join
            }
            a => a,
        }
    }

    fn my_room(&mut self) -> u32 {
        let k = self.rng.below(self.rooms.len() as u64) as usize;
        *self.rooms.iter().nth(k).expect("non-empty")
    }

    /// One random action; `Some(end)` to disconnect that way.
    async fn act(&mut self, ws: &mut Ws) -> Result<Option<End>, WsError> {
        let action = self.choose();
        let rid = self.rid();
        let msg = match action {
            Action::Signal => {
                self.log.bump("action.signal");
                let to = self.other();
                return self.signal(ws, to).await.map(|_| None);
            }
            Action::Burst => {
                self.log.bump("action.burst");
                let to = self.other();
                for _ in 0..5 + self.rng.below(16) {
                    self.signal(ws, to).await?;
                }
                return Ok(None);
            }
            Action::Join => {
                self.log.bump("action.join");
                let j = loop {
                    let j = self.rng.below(u64::from(self.sh.rooms)) as u32;
                    if !self.rooms.contains(&j) || self.sh.rooms as usize <= self.rooms.len() {
                        break j;
                    }
                };
                json!({"type": "join", "rid": rid, "room": self.sh.room(j)})
            }
            Action::Leave => {
                self.log.bump("action.leave");
                let j = self.my_room();
                self.rooms.remove(&j);
                json!({"type": "leave", "rid": rid, "room": self.sh.room(j)})
            }
            Action::Broadcast => {
                self.log.bump("action.broadcast");
                let j = self.my_room();
                self.bseq += 1;
                self.bcast_rids.insert(rid);
                json!({"type": "broadcast", "rid": rid, "room": self.sh.room(j), "data": {"b": self.bseq}})
            }
            Action::Set => {
                self.log.bump("action.set");
                let j = self.my_room();
                let mut m = json!({"type": "set", "rid": rid, "room": self.sh.room(j),
                    "key": format!("k{}", self.i), "value": self.rng.below(1000)});
                if self.rng.chance(0.7) {
                    m["ttlMs"] = json!(500 + self.rng.below(4000));
                }
                m
            }
            Action::OwnKey => {
                self.log.bump("action.own-key");
                let key = self.sh.key(self.i);
                self.key_open = !self.key_open;
                let kind = if self.key_open {
                    "open-key"
                } else {
                    "close-key"
                };
                json!({"type": kind, "rid": rid, "key": key})
            }
            Action::OtherKey => {
                self.log.bump("action.other-key");
                if !self.joined_keys.is_empty() && self.rng.chance(0.5) {
                    let k = self.rng.below(self.joined_keys.len() as u64) as usize;
                    let j = *self.joined_keys.iter().nth(k).expect("non-empty");
                    self.joined_keys.remove(&j);
                    json!({"type": "leave-key", "rid": rid, "key": self.sh.key(j)})
                } else {
                    let j = self.other();
                    json!({"type": "join-key", "rid": rid, "key": self.sh.key(j)})
                }
            }
            Action::FindOrPing => {
                self.log.bump("action.find-or-ping");
                if self.rng.chance(0.5) {
                    let j = self.other();
                    json!({"type": "find", "rid": rid, "id": self.sh.peer(j)})
                } else {
                    json!({"type": "ping", "rid": rid})
                }
            }
            Action::Disconnect(end) => return Ok(Some(end)),
        };
        ws.send(Message::text(msg.to_string())).await?;
        Ok(None)
    }

    async fn signal(&mut self, ws: &mut Ws, to: u32) -> Result<(), WsError> {
        let seq = {
            let s = self.seq_to.entry(to).or_insert(0);
            *s += 1;
            *s
        };
        let rid = self.rid();
        let t = self.sh.now();
        let mut data = json!({"seq": seq, "t": t});
        if self.rng.chance(0.2) {
            data["sdp"] = json!("x".repeat(self.rng.below(800) as usize));
        }
        let msg = json!({"type": "signal", "rid": rid, "to": self.sh.peer(to), "data": data});
        let k = self.log.sent.len();
        self.log.sent.push(SentSig {
            to,
            seq,
            t,
            conn: self.conn_no,
            err: None,
            errs: 0,
            send_failed: false,
        });
        self.sig_by_rid.insert(rid, k);
        self.sh.sent.fetch_add(1, Relaxed);
        let r = ws.send(Message::text(msg.to_string())).await;
        if r.is_err() {
            self.log.sent[k].send_failed = true;
        }
        r
    }

    fn on_text(&mut self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            self.log.bump("recv.bad-json");
            return;
        };
        let kind = v["type"].as_str().unwrap_or("?");
        match kind {
            "signal" => {
                let from = v["from"].as_str().and_then(|f| self.sh.parse_peer(f));
                let (Some(from), Some(seq), Some(t_sent)) =
                    (from, v["data"]["seq"].as_u64(), v["data"]["t"].as_u64())
                else {
                    self.log.bump("recv.foreign-signal");
                    return;
                };
                self.log.delivered.push(Delivery {
                    from,
                    conn: self.conn_no,
                    seq,
                    t_sent,
                    t_recv: self.sh.now(),
                });
                self.sh.delivered.fetch_add(1, Relaxed);
            }
            "error" => {
                let code = v["code"].as_str().unwrap_or("?");
                let Some(rid) = v["rid"].as_u64() else {
                    self.log.bump(format!("error-without-rid.{code}"));
                    return;
                };
                if let Some(&k) = self.sig_by_rid.get(&rid) {
                    let target = self.sh.peer(self.log.sent[k].to);
                    let s = &mut self.log.sent[k];
                    s.errs = s.errs.saturating_add(1);
                    if s.err.is_none() {
                        s.err = Some(static_code(code));
                    }
                    if v["target"].as_str() != Some(target.as_str()) {
                        self.log.bump("violation.error-target-mismatch");
                    }
                    self.log.bump(format!("signal-error.{code}"));
                } else if self.bcast_rids.contains(&rid) {
                    self.log.bump(format!("broadcast-error.{code}"));
                } else {
                    self.log.bump(format!("request-error.{code}"));
                }
            }
            "broadcast" => {
                let from = v["from"].as_str().and_then(|f| self.sh.parse_peer(f));
                let (Some(from), Some(b)) = (from, v["data"]["b"].as_u64()) else {
                    self.log.bump("recv.foreign-broadcast");
                    return;
                };
                self.log.bump("recv.broadcast");
                let last = self.last_bseq_from.entry(from).or_insert(0);
                if b <= *last {
                    self.log
                        .bump("violation.broadcast-out-of-order-or-duplicate");
                }
                *last = (*last).max(b);
            }
            "joined" => {
                if let Some(j) = v["room"].as_str().and_then(|r| self.sh.parse_room(r)) {
                    self.rooms.insert(j);
                }
                self.log.bump(if v["rid"].is_u64() {
                    "recv.joined"
                } else {
                    "recv.joined-resync"
                });
            }
            "key-joined" => {
                if let Some(j) = v["key"].as_str().and_then(|k| self.sh.parse_key(k)) {
                    self.joined_keys.insert(j);
                }
                self.log.bump("recv.key-joined");
            }
            "unavailable" => {
                let key = v["key"].as_str().and_then(|k| self.sh.parse_key(k));
                let id = v["id"].as_str().and_then(|i| self.sh.parse_peer(i));
                if let (Some(k), Some(id)) = (key, id) {
                    if k == id {
                        self.joined_keys.remove(&k);
                    }
                }
                self.log.bump("recv.unavailable");
            }
            "registered" => self.log.bump("violation.unexpected-registered"),
            other => self.log.bump(format!("recv.{other}")),
        }
    }

    /// Ends the connection the chosen way; true when everything the broker
    /// wrote was read.
    async fn disconnect(&mut self, mut ws: Ws, end: End) -> bool {
        let close = |code| {
            Some(CloseFrame {
                code,
                reason: "".into(),
            })
        };
        match end {
            End::Hard => {
                drop(ws);
                return false;
            }
            End::Clean | End::Final => {
                if ws.close(close(CloseCode::Normal)).await.is_err() {
                    return false;
                }
            }
            End::Away => {
                if ws.close(close(CloseCode::Away)).await.is_err() {
                    return false;
                }
            }
            End::Eof => {
                if let MaybeTlsStream::Plain(tcp) = ws.get_mut() {
                    if tcp.shutdown().await.is_err() {
                        return false;
                    }
                }
            }
            // The stream broke unannounced: what was in flight is unknown.
            End::Lost => return false,
            End::Broker(_) => {}
        }
        self.drain(&mut ws, end).await
    }

    /// Reads until the stream ends.
    async fn drain(&mut self, ws: &mut Ws, end: End) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => self.on_text(t.as_str()),
                Ok(Some(Ok(Message::Close(f)))) => {
                    let code = f.map_or(1005, |f| u16::from(f.code));
                    if end == End::Eof {
                        // Our half-closed socket cannot answer it; all
                        // the broker wrote before it has been read.
                        self.log.bump(format!("eof-close-frame.{code}"));
                        return true;
                    }
                    self.got_close = Some(code);
                }
                Ok(Some(Ok(_))) => {}
                Ok(None) => return true,
                Ok(Some(Err(e))) => {
                    return match e {
                        WsError::ConnectionClosed | WsError::AlreadyClosed => true,
                        WsError::Protocol(
                            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                        ) => true,
                        _ => {
                            if self.got_close.is_some() {
                                true
                            } else {
                                self.log.bump(format!("drain-error.{e}"));
                                false
                            }
                        }
                    };
                }
                Err(_) => {
                    self.log.bump("drain-timeout");
                    return false;
                }
            }
        }
    }
}

// ---- analysis ----------------------------------------------------------

#[derive(Default)]
struct Analysis {
    sent: u64,
    delivered_ok: u64,
    errored: BTreeMap<&'static str, u64>,
    send_failed: u64,
    excused_receiver_drop: u64,
    excused_sender_drop: u64,
    excused_peer_gone_untold: u64,
    lost: u64,
    lost_followed_by_delivery: u64,
    /// Lost signals by the receiver's state around the send (± slack):
    /// holding its id throughout, offline throughout, or in between.
    lost_receiver_online: u64,
    lost_receiver_offline: u64,
    lost_receiver_changing: u64,
    lost_buckets: BTreeMap<String, u64>,
    lost_examples: Vec<String>,
    duplicates: u64,
    reordered: u64,
    delivered_and_errored: u64,
    errored_twice: u64,
    phantom: u64,
    resume_refused_in_grace: u64,
    order_examples: Vec<String>,
    deliveries: u64,
    latency_ms: (f64, f64, f64),
    /// Deliveries whose sender and receiver were on one broker / on two.
    delivered_same: u64,
    delivered_cross: u64,
    latency_same_ms: (f64, f64, f64),
    latency_cross_ms: (f64, f64, f64),
    /// Lost signals whose pair was on two brokers at the send.
    lost_cross: u64,
}

/// p50, p99 and max of `lat` (µs) in ms; sorts it.
fn percentiles(lat: &mut [u64]) -> (f64, f64, f64) {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&v| v as f64 / 1000.0)
    };
    (
        pct(0.5),
        pct(0.99),
        lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
    )
}

/// The broker client `conns` was on at `t` (its latest connection
/// registered by then, else its first).
fn broker_at(conns: &[ConnRec], t: u64) -> Option<usize> {
    conns
        .iter()
        .rev()
        .find(|c| c.t_reg <= t)
        .or(conns.first())
        .map(|c| c.broker)
}

fn nearest_event(conns: &[ConnRec], t: u64, w: u64) -> String {
    let mut best: Option<(u64, String)> = None;
    for c in conns {
        let reg = if c.resumed { "resume" } else { "register" };
        let on = format!("@b{}", c.broker);
        for (at, what) in [
            (c.t_reg, format!("{reg}{on}")),
            (c.t_end, c.end.name() + &on),
        ] {
            let d = at.abs_diff(t);
            if d <= w && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                let sign = if at >= t { "+" } else { "-" };
                best = Some((d, format!("{what} {sign}{:.0}ms", d as f64 / 1000.0)));
            }
        }
    }
    best.map_or("none".into(), |(_, s)| s)
}

/// When the client held its id: from a fresh registration to its release
/// (a clean close, or the end of a grace window that saw no resume).
fn held_intervals(conns: &[ConnRec], grace: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (j, c) in conns.iter().enumerate() {
        if !c.resumed || start.is_none() {
            start = Some(c.t_reg);
        }
        if conns.get(j + 1).is_some_and(|n| n.resumed) {
            continue;
        }
        let end = if c.end.releases() {
            c.t_end
        } else {
            c.t_end + grace
        };
        out.extend(start.take().map(|s| (s, end)));
    }
    out
}

/// The client's connections that overlap `t` ± 5 s: how each began, on
/// which broker, from when to when (s since the wave started), how it ended.
fn history(conns: &[ConnRec], t: u64) -> String {
    let w = 5_000_000;
    let near: Vec<String> = conns
        .iter()
        .filter(|c| c.t_reg <= t + w && c.t_end + w >= t)
        .map(|c| {
            format!(
                "{}@b{} {:.3}-{:.3} {}",
                if c.resumed { "resume" } else { "register" },
                c.broker,
                c.t_reg as f64 / 1e6,
                c.t_end as f64 / 1e6,
                c.end.name()
            )
        })
        .collect();
    format!("[{}]", near.join(", "))
}

fn bucket_of(desc: &str) -> &str {
    desc.split([' ', '@']).next().unwrap_or(desc)
}

fn analyse(logs: &[ClientLog], grace_us: u64, w: u64) -> Analysis {
    let mut a = Analysis::default();
    // Deliveries per pair, in receipt order.
    let mut got: HashMap<(u32, u32), Vec<u64>> = HashMap::new();
    let mut lat: Vec<u64> = Vec::new();
    // The sender's broker for each signal sent: (sender, receiver, seq).
    let mut sent_from: HashMap<(u32, u32, u64), usize> = HashMap::new();
    for (s, log) in logs.iter().enumerate() {
        for sig in &log.sent {
            if let Some(c) = log.conns.get(sig.conn as usize) {
                sent_from.insert((s as u32, sig.to, sig.seq), c.broker);
            }
        }
    }
    let (mut lat_same, mut lat_cross) = (Vec::new(), Vec::new());
    for (r, log) in logs.iter().enumerate() {
        for d in &log.delivered {
            got.entry((d.from, r as u32)).or_default().push(d.seq);
            let l = d.t_recv.saturating_sub(d.t_sent);
            lat.push(l);
            let from = sent_from.get(&(d.from, r as u32, d.seq));
            let to = log.conns.get(d.conn as usize).map(|c| c.broker);
            match (from, to) {
                (Some(&f), Some(t)) if f == t => lat_same.push(l),
                (Some(_), Some(_)) => lat_cross.push(l),
                _ => {}
            }
        }
    }
    a.deliveries = lat.len() as u64;
    a.latency_ms = percentiles(&mut lat);
    a.delivered_same = lat_same.len() as u64;
    a.delivered_cross = lat_cross.len() as u64;
    a.latency_same_ms = percentiles(&mut lat_same);
    a.latency_cross_ms = percentiles(&mut lat_cross);
    let mut delivered: HashSet<(u32, u32, u64)> = HashSet::new();
    for (&(s, r), seqs) in &got {
        let mut max = 0;
        for &q in seqs {
            if !delivered.insert((s, r, q)) {
                a.duplicates += 1;
                if a.order_examples.len() < 10 {
                    a.order_examples.push(format!(
                        "duplicate: {s} -> {r} seq {q} (receipt order {seqs:?})"
                    ));
                }
            } else if q < max {
                a.reordered += 1;
                if a.order_examples.len() < 10 {
                    a.order_examples
                        .push(format!("out of order: {s} -> {r} seq {q} after {max}"));
                }
            }
            max = max.max(q);
        }
    }
    // Every delivery must be of a signal sent.
    let mut highest: HashMap<(u32, u32), u64> = HashMap::new();
    for (s, log) in logs.iter().enumerate() {
        for sig in &log.sent {
            let h = highest.entry((s as u32, sig.to)).or_default();
            *h = (*h).max(sig.seq);
        }
    }
    for &(s, r, q) in &delivered {
        if q == 0 || q > highest.get(&(s, r)).copied().unwrap_or(0) {
            a.phantom += 1;
        }
    }
    // Receiver sessions that ended in an expired grace window: the
    // disconnect time of the connection before it.
    let expiries: Vec<Vec<u64>> = logs
        .iter()
        .map(|log| {
            let c = &log.conns;
            (0..c.len())
                .filter(|&j| !c[j].end.releases() && !c.get(j + 1).is_some_and(|n| n.resumed))
                .map(|j| c[j].t_end)
                .collect()
        })
        .collect();
    let held: Vec<Vec<(u64, u64)>> = logs
        .iter()
        .map(|log| held_intervals(&log.conns, grace_us))
        .collect();
    let connected_throughout = |s: usize, from: u64, to: u64| {
        logs[s]
            .conns
            .iter()
            .any(|c| c.t_reg <= from && c.t_end >= to && !c.lossy())
    };
    for (s, log) in logs.iter().enumerate() {
        for (j, c) in log.conns.iter().enumerate() {
            if j > 0 && c.asked_resume && !c.resumed {
                let prev = &log.conns[j - 1];
                if matches!(prev.end, End::Away | End::Eof | End::Hard)
                    && c.t_reg.saturating_sub(prev.t_end) < grace_us
                {
                    a.resume_refused_in_grace += 1;
                }
            }
        }
        for sig in &log.sent {
            a.sent += 1;
            let r = sig.to as usize;
            let was_delivered = delivered.contains(&(s as u32, sig.to, sig.seq));
            if sig.errs > 1 {
                a.errored_twice += 1;
            }
            match (was_delivered, sig.err) {
                (true, Some(_)) => a.delivered_and_errored += 1,
                (true, None) => a.delivered_ok += 1,
                (false, Some(code)) => *a.errored.entry(code).or_default() += 1,
                (false, None) => {
                    let t = sig.t;
                    let own = &log.conns[sig.conn as usize];
                    if sig.send_failed {
                        a.send_failed += 1;
                    } else if logs[r]
                        .conns
                        .iter()
                        .any(|c| c.lossy() && t + w >= c.t_end && t <= c.t_end + w)
                    {
                        a.excused_receiver_drop += 1;
                    } else if own.lossy() && t + w >= own.t_end {
                        a.excused_sender_drop += 1;
                    } else if expiries[r].iter().any(|&td| {
                        t + w >= td
                            && t <= td + grace_us + w
                            && !connected_throughout(
                                s,
                                (td + grace_us).saturating_sub(w),
                                td + grace_us + 2 * w,
                            )
                    }) {
                        a.excused_peer_gone_untold += 1;
                    } else {
                        a.lost += 1;
                        let cross = log.conns.get(sig.conn as usize).map(|c| c.broker)
                            != broker_at(&logs[r].conns, t);
                        if cross {
                            a.lost_cross += 1;
                        }
                        let (lo, hi) = (t.saturating_sub(w), t + w);
                        if held[r].iter().any(|&(s0, e0)| s0 <= lo && e0 >= hi) {
                            a.lost_receiver_online += 1;
                        } else if held[r].iter().all(|&(s0, e0)| e0 < lo || s0 > hi) {
                            a.lost_receiver_offline += 1;
                        } else {
                            a.lost_receiver_changing += 1;
                        }
                        let later = got
                            .get(&(s as u32, sig.to))
                            .is_some_and(|v| v.iter().any(|&q| q > sig.seq));
                        if later {
                            a.lost_followed_by_delivery += 1;
                        }
                        let rx = nearest_event(&logs[r].conns, t, w);
                        let tx = nearest_event(&log.conns, t, w);
                        let bucket = a
                            .lost_buckets
                            .entry(format!(
                                "receiver {}, sender {}",
                                bucket_of(&rx),
                                bucket_of(&tx)
                            ))
                            .or_default();
                        *bucket += 1;
                        // The first two of each kind, at most 16 in all.
                        if *bucket <= 2 && a.lost_examples.len() < 16 {
                            a.lost_examples.push(format!(
                                "{s} -> {r} seq {} sent at {:.3}s ({}); receiver event: {rx}; sender event: {tx}; a later seq of the pair delivered: {later}; receiver connections {}; sender connections {}",
                                sig.seq,
                                t as f64 / 1e6,
                                if cross { "two brokers" } else { "one broker" },
                                history(&logs[r].conns, t),
                                history(&log.conns, t)
                            ));
                        }
                    }
                }
            }
        }
    }
    a
}

// ---- main --------------------------------------------------------------

fn kib(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| {
        format!("{v} KiB ({:.1} MiB)", v as f64 / 1024.0)
    })
}

fn fmt_gauges(g: &[i64]) -> String {
    GAUGES
        .iter()
        .zip(g)
        .map(|(n, v)| format!("{} {v}", n.trim_start_matches("peerwire_")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one wave leaves for the final verdict.
struct WaveEnd {
    violations: u64,
    /// Each broker's RSS at the end of the wave.
    rss_end: Vec<Option<u64>>,
}

/// One wave: clients act for `seconds`, settle, close; then the accounting.
async fn wave(a: &Args, addrs: &[String], w: u32, seconds: u64, peak_rss: &[AtomicU64]) -> WaveEnd {
    let run = format!(
        "{:x}w{w}",
        (a.seed ^ u64::from(std::process::id())) & 0xff_ffff
    );
    let ramp_ms = (seconds * 1000 / 4).min(10_000);
    let sh = Arc::new(Shared {
        urls: a.urls.clone(),
        move_chance: match (a.urls.len(), a.move_chance) {
            (1, _) => 0.0,
            (_, Some(p)) => p,
            (_, None) => 0.3,
        },
        run,
        n: a.clients,
        rooms: a.rooms,
        max_rooms: a.max_rooms,
        interval_ms: a.interval_ms,
        ramp_ms,
        seed: a.seed.wrapping_add(u64::from(w)),
        epoch: Instant::now(),
        grace_ms: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        actions: AtomicU64::new(0),
        online: AtomicI64::new(0),
        is_online: (0..a.clients).map(|_| AtomicBool::new(false)).collect(),
    });
    let start_metrics = fetch_all(addrs).await;
    println!(
        "== wave {} of {}: {} clients on {} broker(s) for {seconds} s (ramp {ramp_ms} ms, reconnects move with chance {}), run id {}; broker RSS {}, gauges {}",
        w + 1,
        a.waves,
        a.clients,
        addrs.len(),
        sh.move_chance,
        sh.run,
        fmt_rss_all(&rss_all(&a.pids)),
        fmt_gauges(&sum_gauges(&start_metrics))
    );

    let (phase_tx, phase_rx) = watch::channel(RUN);
    let mut storm_tx = Vec::with_capacity(a.clients as usize);
    let tasks: Vec<_> = (0..a.clients)
        .map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            storm_tx.push(tx);
            tokio::spawn(Client::new(i, sh.clone(), rx).run(phase_rx.clone()))
        })
        .collect();
    // Fan-in storms: every --storm-every-ms, --storm-senders online clients
    // each fire --storm-size signals at once at one online client (a
    // newcomer getting offers and ICE candidates from a whole room).
    let storms_done = Arc::new(AtomicU64::new(0));
    let storm_task = (a.storm_every_ms > 0).then(|| {
        let (sh, done) = (sh.clone(), storms_done.clone());
        let (every, k, size) = (a.storm_every_ms, a.storm_senders, a.storm_size);
        tokio::spawn(async move {
            let mut rng = Rng(sh.seed ^ 0x5707);
            tokio::time::sleep(Duration::from_millis(sh.ramp_ms + every)).await;
            loop {
                let online: Vec<u32> = (0..sh.n)
                    .filter(|&i| sh.is_online[i as usize].load(Relaxed))
                    .collect();
                if online.len() > k as usize {
                    let target = online[rng.below(online.len() as u64) as usize];
                    let mut senders = BTreeSet::new();
                    while senders.len() < k as usize {
                        let s = online[rng.below(online.len() as u64) as usize];
                        if s != target {
                            senders.insert(s);
                        }
                    }
                    let now = Instant::now();
                    for s in senders {
                        let _ = storm_tx[s as usize].send((now, target, size));
                    }
                    done.fetch_add(1, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(every)).await;
            }
        })
    });

    let progress = |label: &str, bodies: &[String]| {
        let per_broker = if bodies.len() > 1 {
            let conns: Vec<String> = bodies.iter().map(|b| gauges(b)[0].to_string()).collect();
            format!(" (connections per broker {})", conns.join("/"))
        } else {
            String::new()
        };
        println!(
            "[{label} {:5.0} s] online {}/{}, actions {}, signals sent {} delivered {}; brokers {}{per_broker}; RSS {}",
            sh.epoch.elapsed().as_secs_f64(),
            sh.online.load(Relaxed),
            a.clients,
            sh.actions.load(Relaxed),
            sh.sent.load(Relaxed),
            sh.delivered.load(Relaxed),
            fmt_gauges(&sum_gauges(bodies)),
            fmt_rss_all(&rss_all(&a.pids))
        );
    };
    let run_until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < run_until {
        let left = run_until.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        progress("run", &fetch_all(addrs).await);
    }
    if let Some(t) = storm_task {
        t.abort();
    }
    let _ = phase_tx.send(SETTLE);
    let grace_ms = match sh.grace_ms.load(Relaxed) {
        0 => 10_000,
        g => g,
    };
    let settle = Duration::from_millis(grace_ms + a.slack_ms + 2000);
    println!(
        "settle: no new actions for {:.1} s (grace {grace_ms} ms + slack + 2 s); clients keep reading",
        settle.as_secs_f64()
    );
    tokio::time::sleep(settle).await;
    progress("settle", &fetch_all(addrs).await);
    let _ = phase_tx.send(FINAL);
    let mut logs = Vec::with_capacity(tasks.len());
    let mut task_failures = 0u64;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(log)) => logs.push(log),
            _ => {
                task_failures += 1;
                logs.push(ClientLog::default());
            }
        }
    }
    let t_all_closed = sh.epoch.elapsed().as_secs_f64();
    // Every broker's gauges must come back to 0, and Redis hold nothing
    // of the run.
    let deadline = Instant::now() + Duration::from_secs(20);
    let zero = |g: &Vec<i64>| g.len() == GAUGES.len() && g.iter().all(|&v| v == 0);
    let mut end_gauges: Vec<Vec<i64>>;
    let mut leftovers: Option<Vec<String>>;
    loop {
        end_gauges = fetch_all(addrs).await.iter().map(|b| gauges(b)).collect();
        leftovers = match &a.redis {
            Some(url) => redis_leftovers(url).await,
            None => Some(Vec::new()),
        };
        let clean = leftovers.as_ref().is_some_and(Vec::is_empty);
        if (end_gauges.iter().all(zero) && clean) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = rss_all(&a.pids);
    let end_metrics = fetch_all(addrs).await;
    progress("end", &end_metrics);

    // ---- accounting ----------------------------------------------------
    let an = analyse(&logs, grace_ms * 1000, a.slack_ms * 1000);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for log in &logs {
        for (k, v) in &log.counts {
            *counts.entry(k.clone()).or_default() += v;
        }
    }
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    let with_prefix = |p: &str| {
        counts
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(p).map(|s| format!("{s} {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sum_prefix = |p: &str| {
        counts
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(_, v)| v)
            .sum::<u64>()
    };
    // Broker counters are cumulative over waves: take this wave's share,
    // added up over every broker.
    let delta = |name: &str| {
        sum_metric(&end_metrics, name).saturating_sub(sum_metric(&start_metrics, name))
    };
    let broker_peer_gone = delta("peerwire_errors_total{code=\"peer-gone\"}");
    let received_peer_gone =
        c("signal-error.peer-gone") + c("broadcast-error.peer-gone") + c("request-error.peer-gone");
    let untold_peer_gone = broker_peer_gone.saturating_sub(received_peer_gone);

    let gauges_bad = end_gauges.iter().filter(|g| !zero(g)).count() as u64;
    let redis_left = match &leftovers {
        Some(keys) => keys.len() as u64,
        None => 1,
    };
    let violations: Vec<(&str, u64)> = vec![
        ("duplicate deliveries", an.duplicates),
        ("out-of-order deliveries", an.reordered),
        ("lost (counted signal never delivered)", an.lost),
        ("delivered and also refused", an.delivered_and_errored),
        ("refused more than once", an.errored_twice),
        ("delivered but never sent", an.phantom),
        (
            "resume refused inside the grace window",
            an.resume_refused_in_grace,
        ),
        (
            "register refused with bad-resume-token",
            c("register-error.bad-resume-token"),
        ),
        (
            "error target differs from the signal's",
            c("violation.error-target-mismatch"),
        ),
        (
            "broadcast duplicate/out of order per sender",
            c("violation.broadcast-out-of-order-or-duplicate"),
        ),
        (
            "unexpected registered frame",
            c("violation.unexpected-registered"),
        ),
        ("client tasks that failed", task_failures),
        (
            "connections that broke without a close frame",
            c("disconnect.lost"),
        ),
        (
            "peer-gone excusals beyond peer-gone errors the broker sent but no sender received",
            an.excused_peer_gone_untold.saturating_sub(untold_peer_gone),
        ),
        ("brokers whose gauges are not back to 0", gauges_bad),
        ("keys left in Redis (or Redis not answering)", redis_left),
    ];
    let total: u64 = violations.iter().map(|(_, v)| v).sum();

    println!();
    println!("==== SOAK SUMMARY, wave {} of {}", w + 1, a.waves);
    println!(
        "clients {}, acting {seconds} s, settle {:.1} s, all closed at {t_all_closed:.1} s; rooms {}, max rooms per client {}, grace {grace_ms} ms, slack {} ms, seed {}",
        a.clients,
        settle.as_secs_f64(),
        a.rooms,
        a.max_rooms,
        a.slack_ms,
        sh.seed
    );
    println!(
        "actions: {} total; {}; fan-in storms {} ({} senders x {} signals at one client)",
        sh.actions.load(Relaxed),
        with_prefix("action."),
        storms_done.load(Relaxed),
        a.storm_senders,
        a.storm_size
    );
    println!("disconnects: {}", with_prefix("disconnect."));
    println!(
        "registrations: {}; register errors: {}; connect failures {}, register without reply {}",
        with_prefix("register."),
        with_prefix("register-error."),
        c("connect-failed"),
        c("register-no-reply")
    );
    println!(
        "client-side anomalies: drains cut short {} ({}; {}), drain timeouts {}, send failures {}, rooms after resume differ from the client's view {}",
        sum_prefix("drain-cut."),
        with_prefix("drain-cut."),
        with_prefix("drain-error."),
        c("drain-timeout"),
        c("send-failed"),
        c("resume-rooms-differ-from-local-view")
    );
    println!(
        "signals: sent {}; delivered {}; refused with an error: {}",
        an.sent,
        an.delivered_ok,
        an.errored
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "signals neither delivered nor refused, excused: receiver hard drop {}, sender hard drop {}, peer-gone with no sender to tell {} (broker sent {broker_peer_gone} peer-gone, senders received {received_peer_gone}), send failed {}",
        an.excused_receiver_drop,
        an.excused_sender_drop,
        an.excused_peer_gone_untold,
        an.send_failed
    );
    println!(
        "signal latency send -> receive: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (includes time queued while detached)",
        an.latency_ms.0, an.latency_ms.1, an.latency_ms.2
    );
    if addrs.len() > 1 {
        println!(
            "across brokers: delivered on one broker {} (p50 {:.1} ms, p99 {:.1} ms), between two {} (p50 {:.1} ms, p99 {:.1} ms); resumes on another broker {}, fresh registrations on another broker {}",
            an.delivered_same,
            an.latency_same_ms.0,
            an.latency_same_ms.1,
            an.delivered_cross,
            an.latency_cross_ms.0,
            an.latency_cross_ms.1,
            c("register.resumed-on-another-broker"),
            c("register.fresh-on-another-broker")
        );
    }
    println!(
        "broadcasts: received {}; errors {}",
        c("recv.broadcast"),
        with_prefix("broadcast-error.")
    );
    println!("other request errors: {}", with_prefix("request-error."));
    println!(
        "broker-initiated closes seen by clients: {}",
        with_prefix("disconnect.broker-close-")
    );
    let broker_lines = |prefix: &str| {
        end_metrics[0]
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| {
                let name = l.split(' ').next().unwrap_or(l);
                format!("{} {}", name.trim_start_matches("peerwire_"), delta(name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "broker counters (this wave): {}, {}, {}; closes: {}",
        broker_lines("peerwire_messages_in_total"),
        broker_lines("peerwire_messages_out_total"),
        broker_lines("peerwire_connections_opened_total"),
        broker_lines("peerwire_closes_total")
    );
    println!(
        "broker error replies (this wave): {}",
        broker_lines("peerwire_errors_total")
    );
    let peaks: Vec<Option<u64>> = peak_rss.iter().map(|p| Some(p.load(Relaxed))).collect();
    println!(
        "broker RSS: peak so far {}; end of wave {}",
        fmt_rss_all(&peaks),
        fmt_rss_all(&rss_end)
    );
    for (i, g) in end_gauges.iter().enumerate() {
        println!("broker b{i} gauges at end: {}", fmt_gauges(g));
    }
    match &leftovers {
        Some(keys) if keys.is_empty() && a.redis.is_some() => {
            println!("Redis: nothing of the run left (no pw:* key but pw:seq)")
        }
        Some(keys) if !keys.is_empty() => println!(
            "Redis: {} keys left, e.g. {:?}",
            keys.len(),
            &keys[..keys.len().min(10)]
        ),
        Some(_) => {}
        None => println!("Redis: did not answer"),
    }
    if an.lost > 0 {
        println!(
            "lost signals: {} ({} followed by a later delivered signal of the same pair, {} sent between two brokers); by nearest connection event (within slack) of receiver and sender:",
            an.lost, an.lost_followed_by_delivery, an.lost_cross
        );
        println!(
            "  receiver around the send (± slack): held its id throughout {} (delivery lost), offline throughout {} (its refusal never reached the sender), registering or releasing {}",
            an.lost_receiver_online, an.lost_receiver_offline, an.lost_receiver_changing
        );
        for (k, v) in &an.lost_buckets {
            println!("  {v:7}  {k}");
        }
        println!("  examples (clients by index; times since the wave started):");
        for e in &an.lost_examples {
            println!("    {e}");
        }
    }
    for e in &an.order_examples {
        println!("  {e}");
    }
    println!("violations:");
    for (what, n) in &violations {
        println!("  {n:7}  {what}");
    }
    println!();
    WaveEnd {
        violations: total,
        rss_end,
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let addrs: Vec<String> = a
        .urls
        .iter()
        .map(|u| {
            u.trim_start_matches("ws://")
                .split('/')
                .next()
                .expect("host:port")
                .to_string()
        })
        .collect();
    let start_metrics = fetch_all(&addrs).await;
    for (addr, body) in addrs.iter().zip(&start_metrics) {
        assert!(!body.is_empty(), "the broker at {addr} answers /metrics");
    }
    let rss_base = rss_all(&a.pids);
    println!(
        "SOAK: {} clients on {} broker(s), {} s of activity in {} wave(s), {} rooms, interval {} ms, slack {} ms, storms every {} ms, seed {}; broker RSS baseline {}, gauges {}",
        a.clients,
        addrs.len(),
        a.seconds,
        a.waves,
        a.rooms,
        a.interval_ms,
        a.slack_ms,
        a.storm_every_ms,
        a.seed,
        fmt_rss_all(&rss_base),
        fmt_gauges(&sum_gauges(&start_metrics))
    );
    // Each broker's peak RSS, sampled every 250 ms.
    let peak_rss: Arc<Vec<AtomicU64>> = Arc::new(
        rss_base
            .iter()
            .map(|r| AtomicU64::new(r.unwrap_or(0)))
            .collect(),
    );
    let sampler = (!a.pids.is_empty()).then(|| {
        let (peak, pids) = (peak_rss.clone(), a.pids.clone());
        tokio::spawn(async move {
            loop {
                for (p, &pid) in peak.iter().zip(&pids) {
                    if let Some(v) = rss_kib(pid) {
                        p.fetch_max(v, Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let per_wave = (a.seconds / u64::from(a.waves)).max(1);
    let mut ends: Vec<Vec<Option<u64>>> = Vec::new();
    let mut violations = 0;
    for w in 0..a.waves {
        let end = wave(&a, &addrs, w, per_wave, &peak_rss).await;
        violations += end.violations;
        ends.push(end.rss_end);
    }
    if let Some(s) = sampler {
        s.abort();
    }

    // Memory, for each broker: back within the bound, or (the allocator
    // keeping freed pages) no higher after the last wave than after the
    // first.
    println!("==== MEMORY");
    if a.pids.is_empty() {
        println!("memory: RSS not measured (no --pid)");
    }
    let mut memory_bad = 0u64;
    for (b, &base) in rss_base.iter().enumerate() {
        let label = format!("broker b{b} (pid {})", a.pids[b]);
        let peak = Some(peak_rss[b].load(Relaxed));
        let wave_ends: Vec<Option<u64>> = ends.iter().map(|e| e[b]).collect();
        if !memory_holds(&label, base, peak, &wave_ends, a.waves) {
            memory_bad += 1;
        }
    }
    let total = violations + memory_bad;
    if total == 0 {
        println!("RESULT: PASS (0 violations)");
    } else {
        println!("RESULT: FAIL ({total} violations)");
        std::process::exit(1);
    }
}

/// One broker's memory verdict: back within the larger of baseline x 1.5
/// and baseline plus 20 MiB after the last wave, or no higher than after
/// the first (allocator caching, not a leak).
fn memory_holds(
    label: &str,
    rss_base: Option<u64>,
    peak: Option<u64>,
    ends: &[Option<u64>],
    waves: u32,
) -> bool {
    let bound = rss_base.map(|b| (b + b / 2).max(b + 20 * 1024));
    let first = ends.first().copied().flatten();
    let last = ends.last().copied().flatten();
    let ratio = |v: Option<u64>| match (v, rss_base) {
        (Some(v), Some(b)) if b > 0 => format!("{:.2}x", v as f64 / b as f64),
        _ => "?".into(),
    };
    println!(
        "{label} RSS: baseline {}, peak {} ({} baseline), end {} ({} baseline); bound max(baseline x 1.5, baseline + 20 MiB) = {}",
        kib(rss_base),
        kib(peak),
        ratio(peak),
        kib(last),
        ratio(last),
        kib(bound)
    );
    println!(
        "{label} end of each wave: {}",
        ends.iter().map(|e| kib(*e)).collect::<Vec<_>>().join(", ")
    );
    match (rss_base, first, last, bound) {
        (Some(_), Some(first), Some(last), Some(bound)) => {
            if last <= bound {
                println!("{label} memory: back within the bound");
                true
            } else if waves >= 2 {
                let slack = (4 * 1024).max(first.saturating_sub(rss_base.unwrap_or(0)) / 5);
                let ok = last <= first + slack;
                println!(
                    "{label} memory: above the bound; after wave {waves} it is {} than after wave 1 ({last} vs {first} KiB, tolerance {slack} KiB): {}",
                    if last <= first { "no higher" } else { "higher" },
                    if ok {
                        "no growth between waves beyond the tolerance: the allocator keeps freed pages and reuses them; no per-wave leak (the gauges above are exact)"
                    } else {
                        "it keeps growing: a leak"
                    }
                );
                ok
            } else {
                println!(
                    "{label} memory: above the bound (run 2+ waves to tell allocator caching from a leak)"
                );
                false
            }
        }
        _ => {
            println!("{label} memory: RSS not measured");
            false
        }
    }
}
