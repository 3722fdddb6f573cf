//! Load generator for signalling servers: the peerwire broker, or a PeerJS
//! server (`peer` on npm) for comparison. Loopback only, bounded in clients
//! and time.
//!
//! ```text
//! loadgen --url ws://127.0.0.1:8080/ws --protocol peerwire --clients 10000 --pairs 100 --seconds 10 --pid <server pid>
//! loadgen --url ws://127.0.0.1:9000/peerjs --protocol peerjs ...
//! ```
//!
//! 1. Connects `clients` idle clients (each registered) and reports the
//!    server's resident memory per connection (from /proc/<pid>/status).
//! 2. For `seconds`, `pairs` senders relay timestamped signals to a partner
//!    with up to `window` in flight each; reports signals relayed per second,
//!    p50/p99 relay latency, and the CPU time (user + system, from /proc)
//!    the server and the load generator each spent per signal relayed in
//!    that window.
//!
//! The load generator shares the machine's cores with the server it
//! measures, so it is kept cheap: each signal's text is written directly
//! (no JSON value built), a received signal is read by a substring search
//! for its timestamp (no JSON parse), no timer is armed per message, and
//! it runs on `--threads` tokio workers (default 1).

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Peerwire,
    Peerjs,
}

struct Args {
    url: String,
    protocol: Protocol,
    clients: usize,
    pairs: usize,
    seconds: u64,
    window: usize,
    pid: Option<u32>,
    threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        protocol: Protocol::Peerwire,
        clients: 1000,
        pairs: 50,
        seconds: 10,
        window: 16,
        pid: None,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = v,
            "--protocol" => {
                a.protocol = if v == "peerjs" {
                    Protocol::Peerjs
                } else {
                    Protocol::Peerwire
                }
            }
            "--clients" => a.clients = v.parse().expect("--clients N"),
            "--pairs" => a.pairs = v.parse().expect("--pairs N"),
            "--seconds" => a.seconds = v.parse::<u64>().expect("--seconds N").min(120),
            "--window" => a.window = v.parse().expect("--window N"),
            "--pid" => a.pid = v.parse().ok(),
            "--threads" => a.threads = v.parse::<usize>().expect("--threads N").max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        a.url.starts_with("ws://127.") || a.url.starts_with("ws://localhost"),
        "loopback only"
    );
    a
}

/// CPU time (user + system) of a process so far, in clock ticks
/// (/proc/<pid>/stat fields 14 and 15; `self` for this process).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// Microseconds per clock tick (`getconf CLK_TCK`, 100 on Linux unless
/// the kernel was built otherwise).
fn tick_us() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map_or(10_000.0, |hz| 1e6 / hz)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Connects and registers `id`.
async fn connect(url: &str, protocol: Protocol, id: &str) -> Ws {
    let target = match protocol {
        Protocol::Peerwire => url.to_string(),
        Protocol::Peerjs => format!("{url}?key=peerjs&id={id}&token=t{id}"),
    };
    // TCP_NODELAY, as browsers set it on a WebSocket: small frames go out
    // at once instead of waiting on the previous frame's ACK (Nagle).
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&target, None, true)
        .await
        .expect("server accepts");
    match protocol {
        Protocol::Peerwire => {
            ws.send(Message::text(
                json!({"type": "register", "rid": 1, "id": id}).to_string(),
            ))
            .await
            .unwrap();
        }
        Protocol::Peerjs => {}
    }
    // Both answer once registered: `registered` / `OPEN`.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                let kind = v["type"].as_str().unwrap_or_default();
                if kind == "registered" || kind == "OPEN" {
                    break;
                }
                panic!("registration of {id} failed: {t}");
            }
            Some(Ok(_)) => continue,
            other => panic!("registration of {id} failed: {other:?}"),
        }
    }
    ws
}

/// One signal's text, written directly: the same JSON the `json!` form
/// would give, without building a value per signal.
fn signal(protocol: Protocol, to: &str, rid: u64, t_us: u64, pad: &str) -> Message {
    let text = match protocol {
        Protocol::Peerwire => format!(
            r#"{{"type":"signal","rid":{rid},"to":"{to}","data":{{"t":{t_us},"sdp":"{pad}"}}}}"#
        ),
        Protocol::Peerjs => {
            format!(r#"{{"type":"OFFER","dst":"{to}","payload":{{"t":{t_us},"sdp":"{pad}"}}}}"#)
        }
    };
    Message::text(text)
}

/// The timestamp of a relayed signal, found by substring search: both
/// servers pass the payload object through as sent, so its first member is
/// `"t":<digits>`, after `"data":` (peerwire) or `"payload":` (PeerJS).
fn stamp(protocol: Protocol, text: &str) -> Option<u64> {
    let (kind, payload) = match protocol {
        Protocol::Peerwire => (r#""type":"signal""#, r#""data":{"t":"#),
        Protocol::Peerjs => (r#""type":"OFFER""#, r#""payload":{"t":"#),
    };
    if !text.contains(kind) {
        return None;
    }
    let digits = &text[text.find(payload)? + payload.len()..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn main() {
    let a = args();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(a));
}

async fn run(a: Args) {
    let proto_name = if a.protocol == Protocol::Peerwire {
        "peerwire"
    } else {
        "peerjs"
    };
    let run = format!("{:x}", std::process::id());

    // ---- phase 1: idle clients and memory ----------------------------------
    let before = a.pid.and_then(rss_kib);
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(200));
    let mut joins = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let (url, gate, id) = (a.url.clone(), gate.clone(), format!("idle-{run}-{i}"));
        let protocol = a.protocol;
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            connect(&url, protocol, &id).await
        }));
    }
    // Each idle client keeps reading, so it answers the server's pings.
    let mut idle = Vec::with_capacity(a.clients);
    for j in joins {
        let mut ws = j.await.expect("client task");
        idle.push(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = a.pid.and_then(rss_kib);
    let per_conn = match (before, after) {
        (Some(b), Some(x)) if a.clients > 0 => {
            format!("{:.1} KiB", (x.saturating_sub(b)) as f64 / a.clients as f64)
        }
        _ => "n/a".into(),
    };
    println!(
        "LOAD {proto_name}: {} idle clients registered in {connect_secs:.1} s; server RSS {} -> {} KiB, {per_conn} per idle connection",
        a.clients,
        before.map_or("?".into(), |v| v.to_string()),
        after.map_or("?".into(), |v| v.to_string())
    );

    // ---- phase 2: relay throughput and latency -----------------------------
    // No timer per message: the senders stop when their credit semaphores
    // close, the readers are aborted, and each receiver writes its latencies
    // into its own (uncontended) vector as they come.
    let epoch = Instant::now();
    let pad = "x".repeat(200);
    let delivered = Arc::new(AtomicU64::new(0));
    let mut all_credits = Vec::new();
    let mut all_latencies = Vec::new();
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for p in 0..a.pairs {
        let (sid, rid) = (format!("s-{run}-{p}"), format!("r-{run}-{p}"));
        let sender = connect(&a.url, a.protocol, &sid).await;
        let receiver = connect(&a.url, a.protocol, &rid).await;
        let (mut s_tx, mut s_rx) = sender.split();
        let (_r_tx, mut r_rx) = receiver.split();
        let credits = Arc::new(Semaphore::new(a.window));
        all_credits.push(credits.clone());
        // Sender: keeps `window` signals in flight.
        {
            let (credits, protocol, to, pad) = (credits.clone(), a.protocol, rid, pad.clone());
            senders.push(tokio::spawn(async move {
                let mut n = 0u64;
                // Every credit free at once goes out in one write.
                'send: while let Ok(permit) = credits.acquire().await {
                    let mut ready = 1;
                    permit.forget();
                    while let Ok(more) = credits.try_acquire() {
                        more.forget();
                        ready += 1;
                    }
                    for _ in 0..ready {
                        n += 1;
                        let t = epoch.elapsed().as_micros() as u64;
                        if s_tx.feed(signal(protocol, &to, n, t, &pad)).await.is_err() {
                            break 'send;
                        }
                    }
                    if s_tx.flush().await.is_err() {
                        break;
                    }
                }
            }));
            // The sender's read half keeps answering pings.
            readers.push(tokio::spawn(async move {
                while let Some(Ok(_)) = s_rx.next().await {}
            }));
        }
        // Receiver: records latency, returns a credit per signal.
        let latencies = Arc::new(StdMutex::new(Vec::<u64>::new()));
        all_latencies.push(latencies.clone());
        {
            let (delivered, protocol) = (delivered.clone(), a.protocol);
            readers.push(tokio::spawn(async move {
                while let Some(Ok(msg)) = r_rx.next().await {
                    if let Message::Text(t) = msg
                        && let Some(ts) = stamp(protocol, t.as_str())
                    {
                        let lat = (epoch.elapsed().as_micros() as u64).saturating_sub(ts);
                        latencies.lock().unwrap().push(lat);
                        delivered.fetch_add(1, Ordering::Relaxed);
                        credits.add_permits(1);
                    }
                }
            }));
        }
    }
    let tick = tick_us();
    let server_cpu = |pid: Option<u32>| pid.and_then(|p| cpu_ticks(&p.to_string()));
    let measure_start = Instant::now();
    let at_start = delivered.load(Ordering::Relaxed);
    let (server_at_start, self_at_start) = (server_cpu(a.pid), cpu_ticks("self"));
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let count = delivered.load(Ordering::Relaxed) - at_start;
    let elapsed = measure_start.elapsed().as_secs_f64();
    let (server_at_end, self_at_end) = (server_cpu(a.pid), cpu_ticks("self"));
    for c in &all_credits {
        c.close();
    }
    for t in senders {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    for t in readers {
        t.abort();
    }
    let mut lat: Vec<u64> = all_latencies
        .iter()
        .flat_map(|l| std::mem::take(&mut *l.lock().unwrap()))
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let per_signal = |from: Option<u64>, to: Option<u64>| match (from, to) {
        (Some(f), Some(t)) if count > 0 => format!("{:.2}", (t - f) as f64 * tick / count as f64),
        _ => "n/a".into(),
    };
    println!(
        "LOAD {proto_name}: {} pairs, window {}: {:.0} signals/s relayed, latency p50 {:.2} ms, p99 {:.2} ms ({} samples, with {} idle clients connected)",
        a.pairs,
        a.window,
        count as f64 / elapsed,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat.len(),
        idle.len()
    );
    println!(
        "LOAD {proto_name}: CPU per signal relayed (user + system over the {:.0} s window): server {} µs, load generator {} µs",
        elapsed,
        per_signal(server_at_start, server_at_end),
        per_signal(self_at_start, self_at_end),
    );
    for t in idle {
        t.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_text_is_the_json_it_stands_for() {
        for protocol in [Protocol::Peerwire, Protocol::Peerjs] {
            let Message::Text(t) = signal(protocol, "r-1", 7, 1234, "xx") else {
                panic!("text frame")
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let expected = match protocol {
                Protocol::Peerwire => {
                    json!({"type": "signal", "rid": 7, "to": "r-1", "data": {"t": 1234, "sdp": "xx"}})
                }
                Protocol::Peerjs => {
                    json!({"type": "OFFER", "dst": "r-1", "payload": {"t": 1234, "sdp": "xx"}})
                }
            };
            assert_eq!(v, expected);
        }
    }

    #[test]
    fn stamp_reads_what_each_server_relays() {
        let ours = r#"{"type":"signal","from":"s-1","data":{"t":98765,"sdp":"x"}}"#;
        let theirs = r#"{"type":"OFFER","src":"s-1","dst":"r-1","payload":{"t":42,"sdp":"x"}}"#;
        assert_eq!(stamp(Protocol::Peerwire, ours), Some(98765));
        assert_eq!(stamp(Protocol::Peerjs, theirs), Some(42));
        assert_eq!(stamp(Protocol::Peerwire, theirs), None);
        assert_eq!(stamp(Protocol::Peerjs, r#"{"type":"OPEN"}"#), None);
    }
}
