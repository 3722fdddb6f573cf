//! Memory amplification attacks on a peerwire broker from one address
//! (issue 16, item 4), for `tests/bench/memory.sh`: each attack makes the
//! broker hold what it can for clients that do not read, while a sampler
//! reads the broker's resident memory. Loopback only; stops at
//! `--cap-mib` of broker memory or `--seconds`, whichever comes first, so
//! that a broker without byte budgets cannot take the machine down.
//!
//! ```text
//! memattack --url ws://127.0.0.1:8080/ws --pid <broker pid> --attack broadcast
//! ```
//!
//! Prints one line: `attack=… sent=<bytes the attacker sent> idle_kib=…
//! peak_kib=… stopped=<why>`.
//!
//! Attacks (all within the broker's default message rate limits, which the
//! attacker paces itself to):
//!
//! - `broadcast`: 200 members of one room that never read; members
//!   broadcast 16 KB messages to it in turn.
//! - `snapshot`: a room given as much state as the broker takes (64 KB
//!   values), then 200 connections that never read join it, and join it
//!   again and again.
//! - `state`: 64 connections, each in a room of its own, set 60 KB values
//!   under new keys until refused everywhere.
//! - `grace`: 200 ids whose connections dropped (inside their grace
//!   window), each sent 60 KB signals.
//! - `signals`: 16 connections that never read, each sent 60 KB signals
//!   (few, so that each is sent more than the socket buffers take).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;

struct Args {
    url: String,
    pid: u32,
    attack: String,
    cap_kib: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        pid: 0,
        attack: String::new(),
        cap_kib: 1024 * 1024,
        seconds: 12,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = v,
            "--pid" => a.pid = v.parse().expect("--pid N"),
            "--attack" => a.attack = v,
            "--cap-mib" => a.cap_kib = v.parse::<u64>().expect("--cap-mib N") * 1024,
            "--seconds" => a.seconds = v.parse::<u64>().expect("--seconds N").min(13),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        a.url.starts_with("ws://127.") || a.url.starts_with("ws://localhost"),
        "loopback only"
    );
    a
}

/// The broker's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What every attack shares: bytes sent, the pacing to the broker's
/// per-address message rate, and when to stop.
struct Attack {
    url: String,
    pid: u32,
    cap_kib: u64,
    deadline: Instant,
    sent: AtomicU64,
    peak: AtomicU64,
    /// Messages sent, for pacing.
    messages: AtomicU64,
    started: Instant,
    stop: AtomicBool,
    why: std::sync::Mutex<&'static str>,
}

/// Below the broker's default 500 messages a second per address (burst
/// 2 000), so that the attacker is never closed with 4002.
const RATE: f64 = 420.0;
const BURST: f64 = 1500.0;

impl Attack {
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn end(&self, why: &'static str) {
        if !self.stop.swap(true, Ordering::Relaxed) {
            *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
        }
    }

    /// Waits until one more message keeps within [`RATE`], then counts it.
    async fn pace(&self) {
        loop {
            let n = self.messages.load(Ordering::Relaxed) as f64;
            let allowed = BURST + self.started.elapsed().as_secs_f64() * RATE;
            if n < allowed {
                self.messages.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn send(&self, sink: &mut Sink, msg: serde_json::Value) -> bool {
        if self.done() {
            return false;
        }
        self.pace().await;
        let text = msg.to_string();
        let len = text.len() as u64;
        if sink.send(Message::Text(text.into())).await.is_err() {
            return false;
        }
        self.sent.fetch_add(len, Ordering::Relaxed);
        true
    }

    async fn connect(&self, id: &str) -> (Sink, SplitStream<Ws>) {
        let (ws, _) = tokio_tungstenite::connect_async(&self.url)
            .await
            .expect("the broker accepts a connection");
        let (mut sink, mut stream) = ws.split();
        self.pace().await;
        let reg = json!({"type": "register", "rid": 1, "id": id}).to_string();
        self.sent.fetch_add(reg.len() as u64, Ordering::Relaxed);
        sink.send(Message::Text(reg.into()))
            .await
            .expect("register");
        // Read the `registered` reply, then stop reading (or not).
        while let Some(Ok(m)) = stream.next().await {
            if m.is_text() {
                break;
            }
        }
        (sink, stream)
    }

    /// Connects and registers, then keeps reading in the background (a
    /// sender must read its replies, or it is the one cut off).
    async fn reader(self: &Arc<Self>, id: &str) -> Sink {
        let (sink, mut stream) = self.connect(id).await;
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(_)) = stream.next().await {
                if me.done() {
                    break;
                }
            }
        });
        sink
    }
}

async fn join(a: &Attack, sink: &mut Sink, room: &str) {
    a.send(sink, json!({"type": "join", "rid": 2, "room": room}))
        .await;
}

async fn run(a: Arc<Attack>, attack: &str) {
    // Connections that never read again are kept here until the end.
    let mut sleepers = Vec::new();
    match attack {
        "broadcast" => {
            let mut members = Vec::new();
            for i in 0..200 {
                let (mut sink, stream) = a.connect(&format!("b{i}")).await;
                join(&a, &mut sink, "flood").await;
                members.push(sink);
                sleepers.push(stream);
            }
            let data = "x".repeat(16_000);
            let mut i = 0;
            while !a.done() {
                let m = &mut members[i % 200];
                let msg = json!({"type": "broadcast", "rid": 3, "room": "flood", "data": data});
                // A member cut off (it does not read its own replies
                // either) fails to send; the next one takes over.
                a.send(m, msg).await;
                i += 1;
            }
        }
        "snapshot" => {
            let mut setters = Vec::new();
            for i in 0..8 {
                let mut s = a.reader(&format!("setter{i}")).await;
                join(&a, &mut s, "heavy").await;
                setters.push(s);
            }
            let value = "v".repeat(64_000);
            // 16 MiB of state if the broker takes it.
            for k in 0..256 {
                let s = &mut setters[k % 8];
                let msg = json!({"type": "set", "rid": 4, "room": "heavy", "key": format!("k{k}"), "value": value});
                a.send(s, msg).await;
            }
            let mut joiners = Vec::new();
            for i in 0..200 {
                let (sink, stream) = a.connect(&format!("j{i}")).await;
                joiners.push(sink);
                sleepers.push(stream);
            }
            let mut i = 0;
            while !a.done() {
                join(&a, &mut joiners[i % 200], "heavy").await;
                i += 1;
            }
        }
        "state" => {
            let mut setters = Vec::new();
            for i in 0..64 {
                let mut s = a.reader(&format!("s{i}")).await;
                join(&a, &mut s, &format!("room{i}")).await;
                setters.push(s);
            }
            let value = "v".repeat(60_000);
            let mut k = 0;
            while !a.done() {
                let i = k % 64;
                let msg = json!({"type": "set", "rid": 5, "room": format!("room{i}"), "key": format!("k{}", k / 64), "value": value});
                a.send(&mut setters[i], msg).await;
                k += 1;
            }
        }
        "grace" => {
            for i in 0..200 {
                let (sink, stream) = a.connect(&format!("g{i}")).await;
                // Dropped without a close frame: the id waits in its grace
                // window (10 s by default).
                let ws = sink.reunite(stream).expect("the two halves of one socket");
                drop(ws);
            }
            let mut senders = Vec::new();
            for i in 0..16 {
                senders.push(a.reader(&format!("sender{i}")).await);
            }
            let data = "x".repeat(60_000);
            let mut k = 0;
            while !a.done() {
                let msg = json!({"type": "signal", "rid": 6, "to": format!("g{}", k % 200), "data": data});
                a.send(&mut senders[k % 16], msg).await;
                k += 1;
            }
        }
        "signals" => {
            for i in 0..16 {
                let (sink, stream) = a.connect(&format!("n{i}")).await;
                sleepers.push(stream);
                drop(sink);
            }
            let mut senders = Vec::new();
            for i in 0..16 {
                senders.push(a.reader(&format!("sender{i}")).await);
            }
            let data = "x".repeat(60_000);
            let mut k = 0;
            while !a.done() {
                let msg =
                    json!({"type": "signal", "rid": 7, "to": format!("n{}", k % 16), "data": data});
                a.send(&mut senders[k % 16], msg).await;
                k += 1;
            }
        }
        other => panic!("unknown attack {other}"),
    }
    a.end("done");
    drop(sleepers);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = args();
    let idle = rss_kib(args.pid);
    let a = Arc::new(Attack {
        url: args.url.clone(),
        pid: args.pid,
        cap_kib: args.cap_kib,
        deadline: Instant::now() + Duration::from_secs(args.seconds),
        sent: AtomicU64::new(0),
        peak: AtomicU64::new(idle),
        messages: AtomicU64::new(0),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        why: std::sync::Mutex::new("done"),
    });
    // The sampler: the broker's memory every 20 ms until the attack ends
    // (and half a second after, for what is still on its way).
    let sampler = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut after: Option<Instant> = None;
            loop {
                let rss = rss_kib(a.pid);
                a.peak.fetch_max(rss, Ordering::Relaxed);
                if rss > a.cap_kib {
                    a.end("cap");
                } else if Instant::now() > a.deadline {
                    a.end("time");
                }
                if a.done() {
                    let t = *after.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(500) {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let attack = args.attack.clone();
    let runner = tokio::spawn(run(a.clone(), Box::leak(attack.into_boxed_str())));
    let _ = sampler.await;
    runner.abort();
    let why = *a.why.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "attack={} sent={} idle_kib={} peak_kib={} stopped={}",
        args.attack,
        a.sent.load(Ordering::Relaxed),
        idle,
        a.peak.load(Ordering::Relaxed),
        why
    );
}
