//! Benchmark of a network of brokers on Redis against one broker alone, in
//! the same run on the same machine (`tests/bench-cluster.sh` starts them
//! all). Loopback only, bounded in clients and time.
//!
//! ```text
//! cluster_bench --single ws://127.0.0.1:8080/ws --single-pid <pid>
//!               --network ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws,ws://127.0.0.1:8083/ws
//!               --network-pids <pid>,<pid>,<pid> [--redis-pid <pid>]
//!               [--idle 3000] [--pairs 60] [--window 16] [--seconds 8] [--failover 1500]
//! ```
//!
//! 1. Memory per idle connection: `--idle` registered clients that only
//!    read, on the single broker, then on one broker of the network: the
//!    broker's RSS delta / N (and Redis's, for the network's claims).
//! 2. Relay: for `--seconds`, `--pairs` sender/receiver pairs relay
//!    timestamped 200-byte signals with `--window` in flight per pair:
//!    (a) every pair on the single broker; (b) on the network, each pair on
//!    one broker (spread over the brokers); (c) on the network, each pair
//!    across two brokers (through Redis). Signals relayed per second and
//!    p50/p99 latency (queueing under saturation, not an idle round trip).
//! 3. Failover: `--failover` clients register on the last broker of the
//!    network, which is then killed with SIGKILL; each client, seeing its
//!    socket end, registers again on one of the others (alternating) with
//!    its resume token, all at once. Measured from the kill to the last
//!    `registered`; every one must say `resumed: true`. Baseline: the same
//!    number of clients registering at once, fresh, on the single broker.

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

struct Args {
    single: String,
    single_pid: u32,
    network: Vec<String>,
    network_pids: Vec<u32>,
    redis_pid: Option<u32>,
    idle: usize,
    pairs: usize,
    window: usize,
    seconds: u64,
    failover: usize,
}

fn list<T: std::str::FromStr>(v: &str, what: &str) -> Vec<T> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{what}: {s:?}")))
        .collect()
}

fn args() -> Args {
    let mut a = Args {
        single: String::new(),
        single_pid: 0,
        network: Vec::new(),
        network_pids: Vec::new(),
        redis_pid: None,
        idle: 3000,
        pairs: 60,
        window: 16,
        seconds: 8,
        failover: 1500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--single" => a.single = v,
            "--single-pid" => a.single_pid = v.parse().expect("--single-pid PID"),
            "--network" => a.network = list(&v, "--network URL,URL,…"),
            "--network-pids" => a.network_pids = list(&v, "--network-pids PID,PID,…"),
            "--redis-pid" => a.redis_pid = v.parse().ok(),
            "--idle" => a.idle = v.parse().expect("--idle N"),
            "--pairs" => a.pairs = v.parse::<usize>().expect("--pairs N").max(1),
            "--window" => a.window = v.parse::<usize>().expect("--window N").max(1),
            "--seconds" => a.seconds = v.parse::<u64>().expect("--seconds N").clamp(1, 60),
            "--failover" => a.failover = v.parse().expect("--failover N"),
            other => panic!("unknown flag {other}"),
        }
    }
    for url in a.network.iter().chain([&a.single]) {
        assert!(
            url.starts_with("ws://127.") || url.starts_with("ws://localhost"),
            "loopback only: {url:?}"
        );
    }
    assert!(
        a.network.len() >= 2 && a.network.len() == a.network_pids.len(),
        "--network needs two brokers or more, with one --network-pids each"
    );
    a
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `registered`'s fields that matter here.
struct Registered {
    token: String,
    resumed: bool,
}

/// Connects and registers `id` (resuming with `token` when given).
async fn register(url: &str, id: &str, token: Option<&str>) -> Result<(Ws, Registered), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let mut msg = json!({"type": "register", "rid": 1, "id": id});
    if let Some(t) = token {
        msg["resumeToken"] = json!(t);
    }
    ws.send(Message::text(msg.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if v["rid"] != 1 {
                    continue;
                }
                if v["type"] != "registered" {
                    return Err(format!("register {id}: {t}"));
                }
                let reg = Registered {
                    token: v["resumeToken"].as_str().unwrap_or_default().to_string(),
                    resumed: v["resumed"].as_bool().unwrap_or(false),
                };
                return Ok((ws, reg));
            }
            Some(Ok(_)) => {}
            other => return Err(format!("register {id}: {other:?}")),
        }
    }
}

/// Registers `n` clients on `urls` (client `i` on `urls[i % len]`), 200
/// at a time, each reading in its own task until `stop`, then closing
/// with 1000.
async fn idle_clients(
    urls: &[String],
    n: usize,
    tag: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let gate = Arc::new(Semaphore::new(200));
    let mut joins = Vec::with_capacity(n);
    for i in 0..n {
        let (url, gate, id) = (
            urls[i % urls.len()].clone(),
            gate.clone(),
            format!("{tag}-{i}"),
        );
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("open");
            register(&url, &id, None).await.expect("idle client").0
        }));
    }
    let mut readers = Vec::with_capacity(n);
    for j in joins {
        let mut ws = j.await.expect("client task");
        let mut stop = stop.clone();
        readers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    },
                    _ = stop.changed() => {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            }
        }));
    }
    readers
}

/// RSS after `n` idle clients, per client, on the broker `pid` (and Redis).
async fn memory_per_idle(url: &str, pid: u32, redis_pid: Option<u32>, n: usize, tag: &str) -> f64 {
    let before = rss_kib(pid).unwrap_or(0);
    let redis_before = redis_pid.and_then(rss_kib);
    let t = Instant::now();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let readers = idle_clients(&[url.to_string()], n, tag, &stop).await;
    let took = t.elapsed().as_secs_f64();
    // Let the last registrations' work settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid).unwrap_or(0);
    let per = after.saturating_sub(before) as f64 / n as f64;
    let redis = match (redis_before, redis_pid.and_then(rss_kib)) {
        (Some(b), Some(a)) => format!(
            "; Redis RSS {b} -> {a} KiB, {:.2} KiB per id",
            a.saturating_sub(b) as f64 / n as f64
        ),
        _ => String::new(),
    };
    println!(
        "  {n} idle clients registered in {took:.1} s; broker RSS {before} -> {after} KiB: {per:.1} KiB per idle connection{redis}"
    );
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    per
}

/// Signals relayed per second and p50/p99 latency (ms).
struct Relay {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn signal(to: &str, n: u64, t_us: u64) -> Message {
    Message::text(
        json!({"type": "signal", "rid": n, "to": to, "data": {"t": t_us, "sdp": "x".repeat(200)}})
            .to_string(),
    )
}

/// `pairs` (sender URL, receiver URL) relaying for `seconds`.
async fn relay(pairs: &[(String, String)], window: usize, seconds: u64, tag: &str) -> Relay {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Latencies count from here (µs since `epoch`; after the warm-up).
    let measure_from = Arc::new(AtomicU64::new(u64::MAX));
    let errors = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    let mut closers = Vec::new();
    for (p, (s_url, r_url)) in pairs.iter().enumerate() {
        let (sid, rid) = (format!("{tag}-s{p}"), format!("{tag}-r{p}"));
        let (sender, _) = register(s_url, &sid, None).await.expect("sender");
        let (receiver, _) = register(r_url, &rid, None).await.expect("receiver");
        let (mut s_tx, mut s_rx) = sender.split();
        let (r_tx, mut r_rx) = receiver.split();
        closers.push(r_tx);
        let credits = Arc::new(Semaphore::new(window));
        let (stop2, credits2, to) = (stop.clone(), credits.clone(), rid.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let Ok(permit) =
                    tokio::time::timeout(Duration::from_millis(200), credits2.acquire()).await
                else {
                    continue;
                };
                permit.expect("open").forget();
                n += 1;
                let t = epoch.elapsed().as_micros() as u64;
                if s_tx.send(signal(&to, n, t)).await.is_err() {
                    break;
                }
            }
            let _ = s_tx.close().await;
        }));
        // The sender's read half: refusals would show here (none expected).
        let (stop3, errors) = (stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop3.load(Ordering::Relaxed) {
                if let Ok(Some(Ok(Message::Text(_)))) =
                    tokio::time::timeout(Duration::from_millis(200), s_rx.next()).await
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (stop4, delivered, latencies, from) = (
            stop.clone(),
            delivered.clone(),
            latencies.clone(),
            measure_from.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            while !stop4.load(Ordering::Relaxed) {
                let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_millis(200), r_rx.next()).await
                else {
                    continue;
                };
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if let Some(ts) = v["data"]["t"].as_u64() {
                    let now = epoch.elapsed().as_micros() as u64;
                    if now >= from.load(Ordering::Relaxed) {
                        local.push(now - ts);
                    }
                    delivered.fetch_add(1, Ordering::Relaxed);
                    credits.add_permits(1);
                }
            }
            latencies.lock().await.extend(local);
        }));
    }
    // One second of warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let measure = Instant::now();
    measure_from.store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    let at_start = delivered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = delivered.load(Ordering::Relaxed) - at_start;
    let elapsed = measure.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    for mut c in closers {
        let _ = c.close().await;
    }
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&v| v as f64 / 1000.0)
    };
    let r = Relay {
        rate: count as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
    };
    println!(
        "  {} pairs, window {window}: {:.0} signals/s relayed, latency p50 {:.2} ms, p99 {:.2} ms ({} samples; refusals {})",
        pairs.len(),
        r.rate,
        r.p50,
        r.p99,
        lat.len(),
        errors.load(Ordering::Relaxed)
    );
    r
}

/// Failover: `n` clients on `victim`, SIGKILLed, back on `others` with
/// their tokens. Seconds from the kill to the last `registered`.
async fn failover(victim: &str, victim_pid: u32, others: &[String], n: usize, tag: &str) -> f64 {
    let gate = Arc::new(Semaphore::new(200));
    let mut joins = Vec::with_capacity(n);
    for i in 0..n {
        let (url, gate, id) = (victim.to_string(), gate.clone(), format!("{tag}-{i}"));
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("open");
            let (ws, reg) = register(&url, &id, None)
                .await
                .expect("client on the victim");
            (id, ws, reg.token)
        }));
    }
    let mut clients = Vec::with_capacity(n);
    for j in joins {
        clients.push(j.await.expect("client task"));
    }
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = Vec::with_capacity(n);
    for (i, (id, mut ws, token)) in clients.into_iter().enumerate() {
        let url = others[i % others.len()].clone();
        let killed_at = killed_at.clone();
        tasks.push(tokio::spawn(async move {
            // Until the broker dies: its socket ends.
            while let Some(Ok(_)) = ws.next().await {}
            let mut tries = 0;
            loop {
                tries += 1;
                match register(&url, &id, Some(&token)).await {
                    Ok((ws, reg)) => {
                        let at = Instant::now();
                        let since = killed_at.lock().await.map(|k| at.duration_since(k));
                        return (ws, reg.resumed, since, tries);
                    }
                    Err(e) if tries < 20 => {
                        eprintln!("  retrying {id}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("{id} did not come back: {e}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    *killed_at.lock().await = Some(Instant::now());
    let status = std::process::Command::new("kill")
        .args(["-KILL", &victim_pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -KILL {victim_pid}");
    let mut times = Vec::with_capacity(n);
    let (mut resumed, mut retried) = (0, 0);
    let mut sockets = Vec::with_capacity(n);
    for t in tasks {
        let (ws, r, since, tries) = t.await.expect("failover task");
        resumed += usize::from(r);
        retried += usize::from(tries > 1);
        times.push(since.unwrap_or_default().as_secs_f64() * 1000.0);
        sockets.push(ws);
    }
    times.sort_by(f64::total_cmp);
    let last = times.last().copied().unwrap_or(0.0);
    println!(
        "  {n} clients: kill -> last registered {last:.0} ms (p50 {:.0} ms); resumed: true {resumed}/{n}; clients that retried {retried}",
        times[times.len() / 2]
    );
    assert_eq!(resumed, n, "every client resumes its id with its token");
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
    last / 1000.0
}

/// `n` clients registering at once, fresh, on `url`: seconds to the last.
async fn register_storm(url: &str, n: usize, tag: &str) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (url, id) = (url.to_string(), format!("{tag}-{i}"));
        tasks.push(tokio::spawn(async move {
            let (ws, _) = register(&url, &id, None).await.expect("storm client");
            (ws, start.elapsed())
        }));
    }
    let mut last = Duration::ZERO;
    let mut sockets = Vec::with_capacity(n);
    for t in tasks {
        let (ws, at) = t.await.expect("storm task");
        last = last.max(at);
        sockets.push(ws);
    }
    println!(
        "  {n} clients registering at once on one broker: last registered after {:.0} ms",
        last.as_secs_f64() * 1000.0
    );
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
    last.as_secs_f64()
}

fn ratio(x: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", x / base)
    } else {
        "?".into()
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let run = format!("{:x}", std::process::id());
    let net = &a.network;
    let k = net.len();

    println!(
        "== 1. memory per idle registered connection ({} clients)",
        a.idle
    );
    println!(" single broker:");
    let mem_single =
        memory_per_idle(&a.single, a.single_pid, None, a.idle, &format!("i1-{run}")).await;
    println!(" one broker of the network (b0):");
    let mem_net = memory_per_idle(
        &net[0],
        a.network_pids[0],
        a.redis_pid,
        a.idle,
        &format!("i3-{run}"),
    )
    .await;

    println!(
        "== 2. relay ({} pairs, window {}, {} s measured after 1 s warm-up)",
        a.pairs, a.window, a.seconds
    );
    println!(" (a) single broker:");
    let pairs: Vec<(String, String)> = (0..a.pairs)
        .map(|_| (a.single.clone(), a.single.clone()))
        .collect();
    let single = relay(&pairs, a.window, a.seconds, &format!("ra-{run}")).await;
    println!(" (b) network, each pair on one broker (spread over {k}):");
    let pairs: Vec<(String, String)> = (0..a.pairs)
        .map(|p| (net[p % k].clone(), net[p % k].clone()))
        .collect();
    let same = relay(&pairs, a.window, a.seconds, &format!("rb-{run}")).await;
    println!(" (c) network, each pair across two brokers (through Redis):");
    let pairs: Vec<(String, String)> = (0..a.pairs)
        .map(|p| (net[p % k].clone(), net[(p + 1) % k].clone()))
        .collect();
    let cross = relay(&pairs, a.window, a.seconds, &format!("rc-{run}")).await;

    println!("== 3. failover ({} clients)", a.failover);
    println!(" baseline: the same clients registering at once on the single broker:");
    let storm = register_storm(&a.single, a.failover, &format!("fs-{run}")).await;
    println!(" the network: broker b{} killed with SIGKILL:", k - 1);
    let fail = failover(
        &net[k - 1],
        a.network_pids[k - 1],
        &net[..k - 1],
        a.failover,
        &format!("fo-{run}"),
    )
    .await;

    println!();
    println!("==== SUMMARY (ratios: network / single broker)");
    println!(
        "memory per idle connection: single {mem_single:.1} KiB, network broker {mem_net:.1} KiB ({})",
        ratio(mem_net, mem_single)
    );
    for (label, r) in [
        ("single broker", &single),
        ("network, same-broker pairs", &same),
        ("network, cross-broker pairs", &cross),
    ] {
        println!(
            "relay, {label}: {:.0} signals/s ({}), p50 {:.2} ms ({}), p99 {:.2} ms ({})",
            r.rate,
            ratio(r.rate, single.rate),
            r.p50,
            ratio(r.p50, single.p50),
            r.p99,
            ratio(r.p99, single.p99)
        );
    }
    println!(
        "failover of {} clients: {:.0} ms from SIGKILL to the last registered (resumed); {:.0} ms for as many fresh registrations on one broker ({})",
        a.failover,
        fail * 1000.0,
        storm * 1000.0,
        ratio(fail, storm)
    );
}
