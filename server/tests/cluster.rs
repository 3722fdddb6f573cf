//! A network of brokers on a real `redis-server` (Debian's; `tests/setup.sh`
//! installs it), started on a free loopback port by each test and stopped
//! by pid: ids unique across brokers, signals and `find` across them,
//! resume tokens valid on any of them, a broker process killed with
//! SIGKILL, and Redis restarted under live brokers.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Broker, Client, Closed, Redis, http_get, network_broker};

/// What only these tests ask of Redis.
impl Redis {
    /// How many brokers listen on `room`'s channel.
    fn room_listeners(&self, room: &str) -> String {
        let channel = format!("pw:rc:{room}");
        let out = self.cli(&["PUBSUB", "NUMSUB", &channel]);
        out.lines().nth(1).unwrap_or_default().to_string()
    }

    /// Cuts every broker off while keeping the data: new connections need
    /// a password the brokers do not have, and the open ones are closed.
    fn refuse_brokers(&self) {
        assert_eq!(self.cli(&["CONFIG", "SET", "requirepass", "cut-off"]), "OK");
        for kind in ["normal", "pubsub"] {
            self.cli(&[
                "-a",
                "cut-off",
                "--no-auth-warning",
                "CLIENT",
                "KILL",
                "TYPE",
                kind,
            ]);
        }
    }

    /// Lets the brokers in again.
    fn admit_brokers(&self) {
        let out = self.cli(&[
            "-a",
            "cut-off",
            "--no-auth-warning",
            "CONFIG",
            "SET",
            "requirepass",
            "",
        ]);
        assert_eq!(out, "OK");
    }
}

/// Waits until `/healthz` at `addr` says ok (the broker reaches Redis).
async fn healthy(addr: SocketAddr) {
    until(
        Duration::from_secs(10),
        "the broker reaches Redis",
        || async move { http_get(addr, "/healthz").await.ends_with("ok\n") },
    )
    .await;
}

/// Waits until `/healthz` at `addr` says the broker lost Redis.
async fn degraded(addr: SocketAddr) {
    until(
        Duration::from_secs(10),
        "healthz says degraded",
        || async move {
            let text = http_get(addr, "/healthz").await;
            text.contains(" 503 ") && text.contains("degraded")
        },
    )
    .await;
}

/// Polls `check` every 20 ms until it holds; fails the test after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn find(c: &mut Client, id: &str) -> bool {
    let r = c.request(json!({"type": "find", "id": id})).await;
    assert_eq!(r["type"], "found", "{r}");
    r["online"].as_bool().unwrap()
}

/// Asks `find` every 20 ms until `id` is offline; fails after `limit`.
async fn until_offline(c: &mut Client, id: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while find(c, id).await {
        assert!(
            Instant::now() < deadline,
            "{id} still online after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn signal(c: &mut Client, to: &str, data: Value) -> u64 {
    c.send(json!({"type": "signal", "to": to, "data": data}))
        .await
}

#[tokio::test]
async fn an_id_is_unique_across_the_network_and_find_sees_every_broker() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (mut alice, _) = b1.registered("alice").await;
    let mut other = b2.client().await;
    let r = other
        .request_err(json!({"type": "register", "id": "alice"}), "id-taken")
        .await;
    assert!(r["message"].as_str().unwrap().contains("alice"), "{r}");
    let (mut bob, _) = b2.registered("bob").await;
    assert!(
        find(&mut bob, "alice").await,
        "alice is on the other broker"
    );
    assert!(find(&mut alice, "bob").await);
    assert!(!find(&mut bob, "nobody").await);
    // A clean close gives the id back to the whole network at once.
    alice.close_normally().await;
    until_offline(&mut bob, "alice", Duration::from_secs(5)).await;
    let (_again, _) = b2.registered("alice").await;
    // Assigned ids are claimed network-wide too.
    let mut anon = b1.client().await;
    let r = anon.request(json!({"type": "register"})).await;
    let assigned = r["id"].as_str().unwrap().to_string();
    assert!(find(&mut bob, &assigned).await, "{assigned} is known on b2");
}

#[tokio::test]
async fn signals_cross_brokers_in_order_and_refusals_reach_their_sender() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, _) = b2.registered("bob").await;
    for n in 0..150 {
        signal(&mut alice, "bob", json!(n)).await;
    }
    for n in 0..150 {
        let m = bob.expect("signal").await;
        assert_eq!(
            (m["from"].as_str(), m["data"].as_i64()),
            (Some("alice"), Some(n))
        );
    }
    signal(&mut bob, "alice", json!("back")).await;
    assert_eq!(alice.expect("signal").await["data"], "back");
    // Nobody holds carol: the sender hears so, with its request's rid.
    let rid = signal(&mut alice, "carol", json!(1)).await;
    let e = alice.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["rid"].as_u64()),
        (Some("unknown-peer"), Some(rid))
    );
    assert_eq!(e["target"], "carol");
    alice.quiet_for(200).await;
    bob.quiet_for(0).await;
}

#[tokio::test]
async fn a_resume_token_reclaims_the_id_on_another_broker() {
    let redis = Redis::start();
    let b1 = network_broker(&redis, &[]).await;
    let b2 = network_broker(&redis, &[]).await;
    let b3 = network_broker(&redis, &[]).await;
    let (mut alice, token) = b1.registered("alice").await;
    let (mut carol, _) = b3.registered("carol").await;

    // A wrong token is refused wherever it is presented.
    let mut thief = b2.client().await;
    // Its last character changed (a token ending in 'x' gets a 'y').
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    thief
        .request_err(
            json!({"type": "register", "id": "alice", "resumeToken": forged}),
            "bad-resume-token",
        )
        .await;

    // The right one moves alice to b2; her old connection on b1, still
    // open, is closed with 4005.
    let mut moved = b2.client().await;
    let r = moved
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(r["type"], "registered", "{r}");
    assert_eq!(r["id"], "alice");
    assert_eq!(r["resumeToken"], token.as_str(), "the token stays valid");
    assert_eq!(alice.closed().await, Closed::Code(4005));

    // Signals now reach her on b2, from a third broker.
    signal(&mut carol, "alice", json!("hi")).await;
    assert_eq!(moved.expect("signal").await["data"], "hi");
    signal(&mut moved, "carol", json!("hello")).await;
    assert_eq!(carol.expect("signal").await["data"], "hello");
}

#[tokio::test]
async fn a_broker_without_redis_says_degraded_serves_its_own_clients_and_rejoins() {
    let mut redis = Redis::start();
    let port = redis.port;
    let b1 = network_broker(&redis, &[]).await;
    let b2 = network_broker(&redis, &[]).await;
    let (mut alice, _) = b1.registered("alice").await;
    let (mut ann, _) = b1.registered("ann").await;
    let (mut bob, _) = b2.registered("bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    alice.expect("peer-joined").await;

    redis.stop();
    for b in [&b1, &b2] {
        let addr = b.addr;
        until(
            Duration::from_secs(10),
            "healthz says degraded",
            || async move {
                let text = http_get(addr, "/healthz").await;
                text.contains(" 503 ") && text.contains("degraded")
            },
        )
        .await;
    }
    assert!(
        b1.http_get("/metrics")
            .await
            .contains("peerwire_cluster_up 0")
    );
    // Clients of one broker still reach each other.
    signal(&mut alice, "ann", json!("local")).await;
    assert_eq!(ann.expect("signal").await["data"], "local");
    // Another broker's client cannot be reached: the sender is told.
    let rid = signal(&mut alice, "bob", json!("lost")).await;
    let e = alice.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["rid"].as_u64()),
        (Some("unavailable"), Some(rid))
    );
    // A broadcast cannot reach the room's channel: refused, not lost.
    alice
        .request_err(
            json!({"type": "broadcast", "room": "lobby", "data": "lost"}),
            "unavailable",
        )
        .await;
    // New ids register on their broker meanwhile.
    let (mut dave, _) = b2.registered("dave").await;

    // Redis comes back empty: the brokers claim their ids again.
    let _redis = Redis::start_on(port);
    healthy(b1.addr).await;
    healthy(b2.addr).await;
    assert!(find(&mut alice, "dave").await, "b2 claimed dave again");
    assert!(find(&mut dave, "alice").await, "b1 claimed alice again");
    signal(&mut alice, "bob", json!("again")).await;
    assert_eq!(bob.expect("signal").await["data"], "again");
    // And their rooms: the memberships were made again.
    alice
        .request(json!({"type": "broadcast", "room": "lobby", "data": "still here"}))
        .await;
    assert_eq!(bob.expect("broadcast").await["data"], "still here");
}

/// A broker process (the real binary), so that it can be SIGKILLed.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    fn start(redis: &Redis) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
            .args([
                "--port",
                "0",
                "--stun-port",
                "0",
                "--static",
                "/nonexistent",
            ])
            .args(["--redis", &redis.url(), "--redis-lease-ms", "1500"])
            .args(["--grace-ms", "5000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker binary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "peerwire-broker listening on http://127.0.0.1:PORT/ (…"
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Process { child, addr }
    }

    /// A client registered as `id` on this process; with its resume token.
    async fn registered(&self, id: &str) -> (Client, String) {
        let mut c = self.client().await;
        let r = c.request(json!({"type": "register", "id": id})).await;
        assert_eq!(r["type"], "registered", "{r}");
        let token = r["resumeToken"].as_str().unwrap().to_string();
        (c, token)
    }

    async fn client(&self) -> Client {
        Client::connect(&format!("ws://{}/ws", self.addr)).await
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_killed_brokers_clients_reclaim_their_ids_elsewhere_and_the_rest_are_freed() {
    let redis = Redis::start();
    let mut p1 = Process::start(&redis);
    healthy(p1.addr).await;
    let b2 = network_broker(&redis, &[]).await;

    let (mut alice, token) = p1.registered("alice").await;
    let (_lost, _) = p1.registered("lost").await;
    let (mut bob, _) = b2.registered("bob").await;
    signal(&mut bob, "alice", json!("before")).await;
    assert_eq!(alice.expect("signal").await["data"], "before");

    p1.kill();
    assert!(matches!(alice.closed().await, Closed::NoFrame));
    // Until alice is back, her broker is not listening: senders hear so.
    let rid = signal(&mut bob, "alice", json!("meanwhile")).await;
    let e = bob.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["rid"].as_u64()),
        (Some("unavailable"), Some(rid))
    );

    // Alice fails over to b2 with her token.
    let mut back = b2.client().await;
    let r = back
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(r["type"], "registered", "{r}");
    signal(&mut bob, "alice", json!("after")).await;
    assert_eq!(back.expect("signal").await["data"], "after");

    // Nobody reclaims "lost": its claim ends with its lease, not never.
    assert!(
        find(&mut bob, "lost").await,
        "held until the lease runs out"
    );
    let freed = Instant::now();
    until_offline(&mut bob, "lost", Duration::from_secs(5)).await;
    assert!(
        freed.elapsed() <= Duration::from_millis(1500 + 500),
        "{:?}",
        freed.elapsed()
    );
    let (_taken, _) = b2.registered("lost").await;
}

async fn join(c: &mut Client, room: &str) -> Value {
    let r = c.request(json!({"type": "join", "room": room})).await;
    assert_eq!(r["type"], "joined", "{r}");
    r
}

#[tokio::test]
async fn rooms_span_brokers_with_members_broadcasts_state_and_limits() {
    let redis = Redis::start();
    let limits = ["--max-room-members", "3"];
    let b1 = network_broker(&redis, &limits).await;
    let b2 = network_broker(&redis, &limits).await;
    let b3 = network_broker(&redis, &limits).await;
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, _) = b2.registered("bob").await;
    let (mut carol, _) = b3.registered("carol").await;

    assert_eq!(join(&mut alice, "lobby").await["members"], json!(["alice"]));
    assert_eq!(
        join(&mut bob, "lobby").await["members"],
        json!(["alice", "bob"])
    );
    let m = alice.expect("peer-joined").await;
    assert_eq!(
        (m["room"].as_str(), m["id"].as_str()),
        (Some("lobby"), Some("bob"))
    );
    join(&mut carol, "lobby").await;
    alice.expect("peer-joined").await;
    bob.expect("peer-joined").await;

    // The member limit holds across brokers.
    let (mut dave, _) = b1.registered("dave").await;
    let e = dave
        .request_err(json!({"type": "join", "room": "lobby"}), "room-full")
        .await;
    assert!(e["message"].as_str().unwrap().contains("3 members"), "{e}");

    // A broadcast reaches the members on every broker, the sender only
    // when it asks.
    let r = alice
        .request(json!({"type": "broadcast", "room": "lobby", "data": "hey"}))
        .await;
    assert_eq!(r["type"], "ok");
    for c in [&mut bob, &mut carol] {
        let m = c.expect("broadcast").await;
        assert_eq!(
            (m["from"].as_str(), m["data"].as_str()),
            (Some("alice"), Some("hey"))
        );
    }
    let r = bob
        .request(json!({"type": "broadcast", "room": "lobby", "data": 2, "includeSelf": true}))
        .await;
    assert_eq!(r["type"], "ok");
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.expect("broadcast").await["data"], 2);
    }

    // State: set, seen by all; a TTL ends network-wide; delete.
    let r = bob
        .request(json!({"type": "set", "room": "lobby", "key": "topic", "value": {"t": "rust"}}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    for c in [&mut alice, &mut bob, &mut carol] {
        let m = c.expect("state-set").await;
        assert_eq!(
            (m["key"].as_str(), m["from"].as_str()),
            (Some("topic"), Some("bob"))
        );
        assert_eq!(m["value"], json!({"t": "rust"}));
    }
    carol
        .request(json!({"type": "set", "room": "lobby", "key": "cursor", "value": 1, "ttlMs": 300}))
        .await;
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.expect("state-set").await["ttlMs"], 300);
    }
    for c in [&mut alice, &mut bob, &mut carol] {
        let m = c.expect("state-removed").await;
        assert_eq!(
            (m["key"].as_str(), m["reason"].as_str()),
            (Some("cursor"), Some("expired"))
        );
    }
    alice
        .request_err(
            json!({"type": "set", "room": "elsewhere", "key": "k", "value": 1}),
            "not-in-room",
        )
        .await;

    // Bob leaves; dave takes his place and gets the room as it is.
    assert_eq!(
        bob.request(json!({"type": "leave", "room": "lobby"})).await["type"],
        "ok"
    );
    for c in [&mut alice, &mut carol] {
        let m = c.expect("peer-left").await;
        assert_eq!(m["id"], "bob");
    }
    let snapshot = join(&mut dave, "lobby").await;
    assert_eq!(snapshot["members"], json!(["alice", "carol", "dave"]));
    assert_eq!(snapshot["state"][0]["key"], "topic");
    assert_eq!(snapshot["state"][0]["value"], json!({"t": "rust"}));
    for c in [&mut alice, &mut carol] {
        assert_eq!(c.expect("peer-joined").await["id"], "dave");
    }
    let r = alice
        .request(json!({"type": "delete", "room": "lobby", "key": "topic"}))
        .await;
    assert_eq!(r["type"], "ok");
    for c in [&mut alice, &mut carol, &mut dave] {
        let m = c.expect("state-removed").await;
        assert_eq!(
            (m["reason"].as_str(), m["from"].as_str()),
            (Some("deleted"), Some("alice"))
        );
    }
    bob.quiet_for(100).await;
}

#[tokio::test]
async fn after_a_broker_dies_its_clients_are_back_in_their_rooms_and_the_rest_leave() {
    let redis = Redis::start();
    let mut p1 = Process::start(&redis);
    healthy(p1.addr).await;
    let b2 = network_broker(&redis, &[]).await;
    let (mut alice, token) = p1.registered("alice").await;
    join(&mut alice, "lobby").await;
    let (mut lost, _) = p1.registered("lost").await;
    join(&mut lost, "lobby").await;
    lost.request(json!({"type": "open-key", "key": "lost-key"}))
        .await;
    lost.request(json!({"type": "register-hostname", "hostname": "lost-host"}))
        .await;
    let (mut bob, _) = b2.registered("bob").await;
    assert_eq!(
        join(&mut bob, "lobby").await["members"],
        json!(["alice", "lost", "bob"])
    );
    let r = bob
        .request(json!({"type": "join-key", "key": "lost-key"}))
        .await;
    assert_eq!(r["opener"], "lost", "{r}");

    p1.kill();
    let mut back = b2.client().await;
    let r = back
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some(true)),
        "{r}"
    );
    assert_eq!(r["rooms"], json!(["lobby"]));
    let snapshot = back.expect("joined").await;
    assert_eq!(snapshot["members"], json!(["alice", "lost", "bob"]));
    bob.request(json!({"type": "broadcast", "room": "lobby", "data": "welcome back"}))
        .await;
    assert_eq!(back.expect("broadcast").await["data"], "welcome back");

    // Nobody reclaims "lost": once its lease ends the room hears it left,
    // its key's joiner hears it is gone, and its hostname is free.
    let mut heard = Vec::new();
    for _ in 0..2 {
        let m = bob.recv().await;
        heard.push((
            m["type"].as_str().unwrap().to_string(),
            m["id"].as_str().unwrap().to_string(),
        ));
    }
    heard.sort();
    assert_eq!(
        heard,
        [
            ("peer-left".to_string(), "lost".to_string()),
            ("unavailable".to_string(), "lost".to_string())
        ]
    );
    assert_eq!(back.expect("peer-left").await["id"], "lost");
    let snapshot = join(&mut bob, "lobby").await;
    assert_eq!(snapshot["members"], json!(["alice", "bob"]));
    bob.request_err(
        json!({"type": "lookup-hostname", "hostname": "lost-host"}),
        "unknown-host",
    )
    .await;
}

#[tokio::test]
async fn rendezvous_keys_and_hostnames_span_brokers() {
    let redis = Redis::start();
    let timeouts = ["--listen-timeout-ms", "400", "--pipe-timeout-ms", "600"];
    let b1 = network_broker(&redis, &timeouts).await;
    let b2 = network_broker(&redis, &timeouts).await;
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, _) = b2.registered("bob").await;
    let (mut carol, _) = b2.registered("carol").await;

    let r = alice
        .request(json!({"type": "open-key", "key": "meet-a"}))
        .await;
    assert_eq!(r["type"], "key-opened", "{r}");
    carol
        .request_err(json!({"type": "open-key", "key": "meet-a"}), "key-taken")
        .await;
    let r = bob
        .request(json!({"type": "join-key", "key": "meet-a"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["opener"].as_str()),
        (Some("key-joined"), Some("alice")),
        "{r}"
    );
    let m = alice.expect("joiner").await;
    assert_eq!(
        (m["key"].as_str(), m["id"].as_str()),
        (Some("meet-a"), Some("bob"))
    );
    // Leaving and closing are told across brokers.
    assert_eq!(
        bob.request(json!({"type": "leave-key", "key": "meet-a"}))
            .await["type"],
        "ok"
    );
    let m = alice.expect("unavailable").await;
    assert_eq!(m["id"], "bob");
    bob.request(json!({"type": "join-key", "key": "meet-a"}))
        .await;
    alice.expect("joiner").await;
    carol
        .request_err(json!({"type": "close-key", "key": "meet-a"}), "not-opener")
        .await;
    assert_eq!(
        alice
            .request(json!({"type": "close-key", "key": "meet-a"}))
            .await["type"],
        "ok"
    );
    let m = bob.expect("unavailable").await;
    assert_eq!(
        (m["key"].as_str(), m["id"].as_str()),
        (Some("meet-a"), Some("alice"))
    );
    carol
        .request_err(json!({"type": "join-key", "key": "meet-a"}), "unknown-key")
        .await;

    // Deadlines hold network-wide: nobody joins (4000); a pair's time ends (4001).
    alice
        .request(json!({"type": "open-key", "key": "lonely"}))
        .await;
    let m = alice.expect("key-closed").await;
    assert_eq!(
        (m["key"].as_str(), m["code"].as_u64()),
        (Some("lonely"), Some(4000))
    );
    alice
        .request(json!({"type": "open-key", "key": "short"}))
        .await;
    bob.request(json!({"type": "join-key", "key": "short"}))
        .await;
    alice.expect("joiner").await;
    for (c, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let m = c.expect("unavailable").await;
        assert_eq!(
            (m["id"].as_str(), m["code"].as_u64()),
            (Some(other), Some(4001))
        );
    }

    // Hostnames: one owner in the whole network, found from anywhere,
    // free again once the owner leaves.
    assert_eq!(
        alice
            .request(json!({"type": "register-hostname", "hostname": "printer"}))
            .await["type"],
        "ok"
    );
    let r = bob
        .request(json!({"type": "lookup-hostname", "hostname": "printer"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_str()),
        (Some("found-host"), Some("alice")),
        "{r}"
    );
    let e = bob
        .request_err(
            json!({"type": "register-hostname", "hostname": "printer"}),
            "hostname-taken",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("alice"), "{e}");
    // A joiner hears when the opener goes for good.
    bob.request(json!({"type": "open-key", "key": "bobs"}))
        .await;
    alice
        .request(json!({"type": "join-key", "key": "bobs"}))
        .await;
    bob.expect("joiner").await;
    alice.close_normally().await;
    let m = bob.expect("unavailable").await;
    assert_eq!(
        (m["key"].as_str(), m["id"].as_str()),
        (Some("bobs"), Some("alice"))
    );
    bob.request_err(
        json!({"type": "lookup-hostname", "hostname": "printer"}),
        "unknown-host",
    )
    .await;
}

#[tokio::test]
async fn a_relay_with_an_id_on_another_broker_is_refused_naming_why() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (mut alice, _) = b1.registered("alice").await;
    let (_bob, _) = b2.registered("bob").await;
    let e = alice
        .request_err(json!({"type": "relay", "to": "bob"}), "relay-refused")
        .await;
    assert!(e["message"].as_str().unwrap().contains("TURN"), "{e}");
    // On one broker the relay still pairs.
    let (mut ann, _) = b1.registered("ann").await;
    assert_eq!(
        alice.request(json!({"type": "relay", "to": "ann"})).await["type"],
        "ok"
    );
    ann.send(json!({"type": "relay", "to": "alice"})).await;
    assert_eq!(alice.expect("relay-ready").await["id"], "ann");
}

#[tokio::test]
async fn a_resume_on_the_same_broker_gets_the_networks_room_snapshot() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (mut alice, token) = b1.registered("alice").await;
    let (mut bob, _) = b2.registered("bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    bob.request(json!({"type": "set", "room": "lobby", "key": "k", "value": 7}))
        .await;
    alice.vanish();
    let mut again = b1.client().await;
    let r = again
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["resumed"].as_bool(), r["rooms"].clone()),
        (Some(true), json!(["lobby"])),
        "{r}"
    );
    let snapshot = again.expect("joined").await;
    assert_eq!(snapshot["members"], json!(["alice", "bob"]));
    assert_eq!(snapshot["state"][0]["value"], 7);
    assert!(b1.http_get("/metrics").await.contains("peerwire_rooms 1"));
}

/// Issue 16, item 4: a room's state is bounded in bytes across the
/// network, whichever broker each value is set through.
#[tokio::test]
async fn a_rooms_state_is_bounded_in_bytes_across_brokers() {
    let redis = Redis::start();
    let limits = ["--max-room-state-bytes", "10000"];
    let b1 = network_broker(&redis, &limits).await;
    let b2 = network_broker(&redis, &limits).await;
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, _) = b2.registered("bob").await;
    join(&mut alice, "r").await;
    join(&mut bob, "r").await;
    alice.expect("peer-joined").await;
    let value = "v".repeat(4000);
    for (c, key) in [(&mut alice, "a"), (&mut bob, "b")] {
        c.send(json!({"type": "set", "room": "r", "key": key, "value": value}))
            .await;
        read_until(c, |m| m["type"] == "ok").await;
    }
    // Events on a room's channel keep their order: b's event comes after a's.
    read_until(&mut alice, |m| m["type"] == "state-set" && m["key"] == "b").await;
    let e = alice
        .request_err(
            json!({"type": "set", "room": "r", "key": "c", "value": value}),
            "state-full",
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("--max-room-state-bytes")),
        "{e}"
    );
    // Replacing a value counts the new one instead of the old.
    alice
        .send(json!({"type": "set", "room": "r", "key": "a", "value": "v".repeat(4500)}))
        .await;
    read_until(&mut alice, |m| m["type"] == "ok").await;
}

/// Reads `c`'s messages until one that `wanted` says is it; an error
/// before it fails the test.
async fn read_until(c: &mut Client, wanted: impl Fn(&Value) -> bool) {
    loop {
        let m = c.recv().await;
        assert_ne!(m["type"], "error", "{m}");
        if wanted(&m) {
            return;
        }
    }
}

#[tokio::test]
async fn joins_sent_without_waiting_cannot_pass_the_per_id_room_limit() {
    let redis = Redis::start();
    let b1 = network_broker(&redis, &["--max-rooms-per-peer", "2"]).await;
    let (mut alice, _) = b1.registered("alice").await;
    // Five joins in a row, before any answer: as on one broker, two are
    // joined and three refused, whatever Redis answered meanwhile.
    let mut rids = Vec::new();
    for n in 0..5 {
        rids.push(
            alice
                .send(json!({"type": "join", "room": format!("r{n}")}))
                .await,
        );
    }
    let mut joined = 0;
    let mut refused = 0;
    for _ in 0..5 {
        let m = alice.recv().await;
        match (m["type"].as_str(), m["code"].as_str()) {
            (Some("joined"), _) => joined += 1,
            (Some("error"), Some("too-many-rooms")) => refused += 1,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!((joined, refused), (2, 3));
    alice.quiet_for(100).await;
}

#[tokio::test]
async fn a_refused_join_leaves_no_subscription_behind() {
    let redis = Redis::start();
    let limits = ["--max-room-members", "1"];
    let (b1, b2) = (
        network_broker(&redis, &limits).await,
        network_broker(&redis, &limits).await,
    );
    let (mut alice, _) = b2.registered("alice").await;
    let (mut bob, _) = b1.registered("bob").await;
    join(&mut alice, "full").await;
    assert_eq!(redis.room_listeners("full"), "1");
    bob.request_err(json!({"type": "join", "room": "full"}), "room-full")
        .await;
    // b1 has no member there: it stops listening to the room.
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis.room_listeners("full") != "1" {
        assert!(
            Instant::now() < deadline,
            "b1 still listens to a room it has no member in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_last_member_leaving_while_another_joins_keeps_the_room_heard() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, _) = b1.registered("bob").await;
    let (mut carol, _) = b2.registered("carol").await;
    join(&mut alice, "lobby").await;
    join(&mut carol, "lobby").await;
    alice.expect("peer-joined").await;
    // Redis holds bob's join while alice, b1's last member, leaves.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "300", "ALL"]), "OK");
    let rid = bob.send(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(bob.request(json!({"type": "ping"})).await["type"], "pong");
    assert_eq!(
        alice
            .request(json!({"type": "leave", "room": "lobby"}))
            .await["type"],
        "ok"
    );
    let m = bob.expect("joined").await;
    assert_eq!(m["rid"], rid);
    let mut heard: Vec<String> = Vec::new();
    for _ in 0..2 {
        let m = carol.recv().await;
        heard.push(format!("{} {}", m["type"].as_str().unwrap(), m["id"]));
    }
    heard.sort();
    assert_eq!(heard, ["peer-joined \"bob\"", "peer-left \"alice\""]);
    // b1 still hears the room for bob: alice left after he joined.
    assert_eq!(bob.expect("peer-left").await["id"], "alice");
    carol
        .request(json!({"type": "broadcast", "room": "lobby", "data": "hi bob"}))
        .await;
    assert_eq!(bob.expect("broadcast").await["data"], "hi bob");
}

#[tokio::test]
async fn an_id_registered_again_while_redis_was_away_resumes_on_another_broker() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (alice, _) = b1.registered("alice").await;
    redis.refuse_brokers();
    degraded(b1.addr).await;
    // Alice goes and comes back on b1 alone, with a new token.
    alice.close_normally().await;
    let (_alice, token) = b1.registered("alice").await;
    redis.admit_brokers();
    healthy(b1.addr).await;
    healthy(b2.addr).await;
    // Her new token is the one the network knows.
    let mut moved = b2.client().await;
    let r = moved
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some(true)),
        "{r}"
    );
}

#[tokio::test]
async fn what_an_id_left_while_redis_was_away_is_left_in_redis_when_it_is_back() {
    let redis = Redis::start();
    // Leases outlive the outage: the reaper does not tidy up instead.
    let lease = ["--redis-lease-ms", "20000"];
    let (b1, b2) = (
        network_broker(&redis, &lease).await,
        network_broker(&redis, &lease).await,
    );
    let (mut alice, _) = b1.registered("alice").await;
    let (ann, _) = b1.registered("ann").await;
    let (mut bob, _) = b2.registered("bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    alice.expect("peer-joined").await;
    let mut ann = ann;
    join(&mut ann, "lobby").await;
    ann.request(json!({"type": "register-hostname", "hostname": "printer"}))
        .await;
    alice.expect("peer-joined").await;
    bob.expect("peer-joined").await;
    redis.refuse_brokers();
    degraded(b1.addr).await;
    // Alice leaves the room, ann goes and comes back as a new client,
    // all while b1 cannot reach Redis (the data stays there).
    assert_eq!(
        alice
            .request(json!({"type": "leave", "room": "lobby"}))
            .await["type"],
        "ok"
    );
    ann.close_normally().await;
    let (mut ann, _) = b1.registered("ann").await;
    redis.admit_brokers();
    healthy(b1.addr).await;
    healthy(b2.addr).await;
    // Redis's room is as the brokers hold it, and the room heard both go.
    let deadline = Instant::now() + Duration::from_secs(3);
    while redis.cli(&["ZRANGE", "pw:r:lobby:m", "0", "-1"]) != "bob" {
        assert!(Instant::now() < deadline, "alice and ann are still members");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut heard: Vec<String> = Vec::new();
    for _ in 0..2 {
        let m = bob.expect("peer-left").await;
        heard.push(m["id"].as_str().unwrap().to_string());
    }
    heard.sort();
    assert_eq!(heard, ["alice", "ann"]);
    // And the new ann does not inherit the old one's hostname.
    let r = bob
        .request_err(
            json!({"type": "lookup-hostname", "hostname": "printer"}),
            "unknown-host",
        )
        .await;
    assert_eq!(r["code"], "unknown-host");
    let r = ann
        .request(json!({"type": "register-hostname", "hostname": "printer"}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn a_claim_answered_after_the_register_timeout_is_given_back() {
    let redis = Redis::start();
    let lease = ["--redis-lease-ms", "20000"];
    let quick = ["--redis-lease-ms", "20000", "--register-timeout-ms", "300"];
    let (b1, b2) = (
        network_broker(&redis, &quick).await,
        network_broker(&redis, &lease).await,
    );
    let mut late = b1.client().await;
    // Redis answers the claim only after the connection's register time.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "800", "ALL"]), "OK");
    late.send(json!({"type": "register", "id": "alice"})).await;
    assert_eq!(late.closed().await, Closed::Code(4006));
    // Nobody holds alice: the claim Redis made for nobody is given back
    // (not held until its lease runs out).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = b2.client().await;
        let r = c.request(json!({"type": "register", "id": "alice"})).await;
        if r["type"] == "registered" {
            break;
        }
        assert_eq!(r["code"], "id-taken", "{r}");
        assert!(Instant::now() < deadline, "alice is held by nobody");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_takeover_answered_after_the_register_timeout_still_moves_the_id() {
    let redis = Redis::start();
    let lease = ["--redis-lease-ms", "20000"];
    let quick = ["--redis-lease-ms", "20000", "--register-timeout-ms", "300"];
    let (b1, b2) = (
        network_broker(&redis, &lease).await,
        network_broker(&redis, &quick).await,
    );
    let (mut alice, token) = b1.registered("alice").await;
    join(&mut alice, "lobby").await;
    let mut late = b2.client().await;
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "800", "ALL"]), "OK");
    late.send(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(late.closed().await, Closed::Code(4006));
    // Redis moved alice to b2: as on one broker when a resume's connection
    // drops at once, the old connection is replaced and the id waits for
    // its client on b2, in its rooms.
    assert_eq!(
        alice.closed_within(Duration::from_secs(3)).await,
        Some(Closed::Code(4005))
    );
    let mut back = b2.client().await;
    let r = back
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["resumed"].as_bool(), r["rooms"].clone()),
        (Some(true), json!(["lobby"])),
        "{r}"
    );
    assert_eq!(back.expect("joined").await["members"], json!(["alice"]));
}

#[tokio::test]
async fn broadcasts_waiting_for_redis_count_against_its_queue_bound() {
    let redis = Redis::start();
    let small = [
        "--max-frame-bytes",
        "4096",
        "--redis-max-queued-bytes",
        "8192",
    ];
    let (b1, b2) = (
        network_broker(&redis, &small).await,
        network_broker(&redis, &small).await,
    );
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, _) = b2.registered("bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    alice.expect("peer-joined").await;
    // Redis is slow: at most 8 KiB of broadcasts wait for it; beyond, the
    // sender hears queue-full rather than the broker holding any amount.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "500", "ALL"]), "OK");
    let big = "x".repeat(2000);
    let mut rids = Vec::new();
    for n in 0..10 {
        rids.push(
            alice
                .send(json!({"type": "broadcast", "room": "lobby", "data": format!("{n}{big}")}))
                .await,
        );
    }
    // Refusals come at once, `ok`s once published: match them by rid.
    let mut sent = Vec::new();
    for _ in 0..10 {
        let m = alice.recv().await;
        let n = rids
            .iter()
            .position(|&r| m["rid"] == r)
            .expect("a reply to a broadcast");
        match (m["type"].as_str(), m["code"].as_str()) {
            (Some("ok"), _) => sent.push(n),
            (Some("error"), Some("queue-full")) => {}
            _ => panic!("unexpected {m}"),
        }
    }
    sent.sort();
    assert!((1..10).contains(&sent.len()), "{} of 10 sent", sent.len());
    // What was accepted arrives, in order.
    for n in sent {
        let m = bob.expect("broadcast").await;
        assert!(m["data"].as_str().unwrap().starts_with(&n.to_string()));
    }
    bob.quiet_for(100).await;
}

/// Found by the three-broker soak (`SOAK_BROKERS=3 tests/soak.sh`): a
/// client resuming on another broker got signals out of order, or room
/// broadcasts twice. Frames queued for it on its old broker were handed on
/// after those sent to it on the new broker, and a broadcast published
/// while both brokers had it as a member came through both. Here alice
/// signals and broadcasts without pause while bob resumes from b2 on b3:
/// bob must get each signal and broadcast at most once and in order, and
/// every one he does not get must be refused to alice.
#[tokio::test]
async fn a_resume_on_another_broker_keeps_order_and_delivers_each_frame_once() {
    let redis = Redis::start();
    let flags = ["--rate-limit", "100000", "--rate-burst", "100000"];
    let b1 = network_broker(&redis, &flags).await;
    let b2 = network_broker(&redis, &flags).await;
    let b3 = network_broker(&redis, &flags).await;
    let (mut alice, _) = b1.registered("alice").await;
    let (mut bob, token) = b2.registered("bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    alice.expect("peer-joined").await;
    bob.vanish();
    let b2_addr = b2.addr;
    until(
        Duration::from_secs(5),
        "b2 holds bob detached",
        || async move {
            http_get(b2_addr, "/metrics")
                .await
                .contains("peerwire_ids_detached 1")
        },
    )
    .await;

    // Alice sends 300 signals and 300 broadcasts, a signal and a broadcast
    // each millisecond or so, then one of each marked "end"; bob resumes
    // on b3 after the first 100 (queued for him on b2).
    const N: u64 = 300;
    let (hundred_tx, hundred) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn(async move {
        let mut hundred_tx = Some(hundred_tx);
        let mut rids = Vec::new();
        for n in 0..N {
            let s = signal(&mut alice, "bob", json!(n)).await;
            let b = alice
                .send(json!({"type": "broadcast", "room": "lobby", "data": n}))
                .await;
            rids.push((s, b));
            if n == 100 {
                let _ = hundred_tx.take().map(|tx| tx.send(()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (alice, rids)
    });
    hundred.await.unwrap();
    let mut back = b3.client().await;
    let r = back
        .request(json!({"type": "register", "id": "bob", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some(true)),
        "{r}"
    );
    let (mut alice, rids) = sender.await.unwrap();
    signal(&mut alice, "bob", json!("end")).await;
    alice
        .send(json!({"type": "broadcast", "room": "lobby", "data": "end"}))
        .await;
    let (mut signals, mut broadcasts) = (Vec::new(), Vec::new());
    let mut ends = 0;
    while ends < 2 {
        let m = back.recv().await;
        let data = &m["data"];
        match m["type"].as_str() {
            _ if data == "end" => ends += 1,
            Some("signal") => signals.push(data.as_u64().unwrap()),
            Some("broadcast") => broadcasts.push(data.as_u64().unwrap()),
            _ => {}
        }
    }
    for (what, got) in [("signals", &signals), ("broadcasts", &broadcasts)] {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{what} duplicated or out of order: {got:?}"
        );
    }
    // Each one bob did not get is refused to alice.
    let mut missing: Vec<u64> = (0..N)
        .flat_map(|n| {
            let (s, b) = rids[n as usize];
            let s = (!signals.contains(&n)).then_some(s);
            let b = (!broadcasts.contains(&n)).then_some(b);
            s.into_iter().chain(b)
        })
        .collect();
    while !missing.is_empty() {
        let m = alice.recv().await;
        if m["type"] == "error" {
            missing.retain(|&rid| m["rid"] != rid);
        }
    }
}

#[tokio::test]
async fn requests_sent_right_after_a_join_wait_for_it_as_on_one_broker() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let (mut bob, _) = b2.registered("bob").await;
    join(&mut bob, "lobby").await;
    let (mut alice, _) = b1.registered("alice").await;
    // No waiting between the requests: each is answered as if the join
    // before it were done.
    let rids = [
        alice.send(json!({"type": "join", "room": "lobby"})).await,
        alice
            .send(json!({"type": "set", "room": "lobby", "key": "k", "value": 1}))
            .await,
        alice
            .send(json!({"type": "broadcast", "room": "lobby", "data": "hi"}))
            .await,
        alice.send(json!({"type": "leave", "room": "lobby"})).await,
    ];
    let mut replies = Vec::new();
    while replies.len() < rids.len() {
        let m = alice.recv().await;
        if m.get("rid").is_some() {
            replies.push((
                m["rid"].as_u64().unwrap(),
                m["type"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(
        replies,
        [
            (rids[0], "joined".to_string()),
            (rids[1], "ok".to_string()),
            (rids[2], "ok".to_string()),
            (rids[3], "ok".to_string())
        ]
    );
    for kind in ["peer-joined", "state-set", "broadcast", "peer-left"] {
        assert_eq!(bob.expect(kind).await["type"], kind);
    }
}

#[tokio::test]
async fn peerjs_clients_on_two_brokers_reach_each_other_and_their_ids_are_the_networks() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let url = |b: &Broker, id: &str, token: &str| {
        format!("ws://{}/peerjs?key=peerjs&id={id}&token={token}", b.addr)
    };
    let mut a = Client::connect(&url(&b1, "pa", "ta")).await;
    assert_eq!(a.recv().await, json!({"type": "OPEN"}));
    let mut b = Client::connect(&url(&b2, "pb", "tb")).await;
    assert_eq!(b.recv().await, json!({"type": "OPEN"}));
    let offer = json!({"type": "OFFER", "payload": {"sdp": "x"}, "dst": "pb"});
    a.send_raw(&offer.to_string()).await;
    assert_eq!(
        b.recv().await,
        json!({"type": "OFFER", "payload": {"sdp": "x"}, "dst": "pb", "src": "pa"})
    );
    // Another broker of the network refuses the id to another token.
    let mut thief = Client::connect(&url(&b2, "pa", "not-ta")).await;
    assert_eq!(
        thief.recv().await,
        json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}})
    );
    // And a native client on either broker sees it online.
    let (mut native, _) = b2.registered("native").await;
    assert!(find(&mut native, "pa").await);
}
