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
//!    with up to `window` in flight each; reports signals relayed per second
//!    and p50/p99 relay latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
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
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        a.url.starts_with("ws://127.") || a.url.starts_with("ws://localhost"),
        "loopback only"
    );
    a
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
    let (mut ws, _) = tokio_tungstenite::connect_async(&target)
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

fn signal(protocol: Protocol, to: &str, rid: u64, t_us: u64) -> Message {
    let text = match protocol {
        Protocol::Peerwire => {
            json!({"type": "signal", "rid": rid, "to": to, "data": {"t": t_us, "sdp": "x".repeat(200)}})
        }
        Protocol::Peerjs => {
            json!({"type": "OFFER", "dst": to, "payload": {"t": t_us, "sdp": "x".repeat(200)}})
        }
    };
    Message::text(text.to_string())
}

fn stamp(protocol: Protocol, v: &Value) -> Option<u64> {
    match protocol {
        Protocol::Peerwire if v["type"] == "signal" => v["data"]["t"].as_u64(),
        Protocol::Peerjs if v["type"] == "OFFER" => v["payload"]["t"].as_u64(),
        _ => None,
    }
}

#[tokio::main]
async fn main() {
    let a = args();
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
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    for p in 0..a.pairs {
        let (sid, rid) = (format!("s-{run}-{p}"), format!("r-{run}-{p}"));
        let sender = connect(&a.url, a.protocol, &sid).await;
        let receiver = connect(&a.url, a.protocol, &rid).await;
        let (mut s_tx, mut s_rx) = sender.split();
        let (mut r_tx, mut r_rx) = receiver.split();
        let credits = Arc::new(Semaphore::new(a.window));
        // Sender: keeps `window` signals in flight.
        {
            let (stop, credits, protocol, to) =
                (stop.clone(), credits.clone(), a.protocol, rid.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(permit) =
                        tokio::time::timeout(Duration::from_millis(200), credits.acquire()).await
                    else {
                        continue;
                    };
                    permit.unwrap().forget();
                    n += 1;
                    let t = epoch.elapsed().as_micros() as u64;
                    if s_tx.send(signal(protocol, &to, n, t)).await.is_err() {
                        break;
                    }
                }
            }));
            // The sender's read half keeps answering pings.
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(1), s_rx.next()).await
                {
                }
            }));
        }
        // Receiver: records latency, returns a credit per signal.
        {
            let (stop, credits, delivered, latencies, protocol) = (
                stop.clone(),
                credits.clone(),
                delivered.clone(),
                latencies.clone(),
                a.protocol,
            );
            tasks.push(tokio::spawn(async move {
                let mut local = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(Ok(msg))) =
                        tokio::time::timeout(Duration::from_millis(200), r_rx.next()).await
                    else {
                        continue;
                    };
                    if let Message::Text(t) = msg {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                        if let Some(ts) = stamp(protocol, &v) {
                            local.push(epoch.elapsed().as_micros() as u64 - ts);
                            delivered.fetch_add(1, Ordering::Relaxed);
                            credits.add_permits(1);
                        }
                    }
                }
                latencies.lock().await.extend(local);
                let _ = r_tx.close().await;
            }));
        }
    }
    let measure_start = Instant::now();
    let at_start = delivered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let count = delivered.load(Ordering::Relaxed) - at_start;
    let elapsed = measure_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
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
    for t in idle {
        t.abort();
    }
}
