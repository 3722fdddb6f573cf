//! The broker's features, each driven by real WebSocket clients against a
//! real broker on a loopback port-0 listener.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Broker, Client, Closed};

// ---- 1. identity -------------------------------------------------------

#[tokio::test]
async fn register_takes_chosen_or_assigned_ids_and_refuses_bad_ones() {
    let b = Broker::start(&[]).await;
    let mut c = b.client().await;
    // Requests before register are refused, and the connection stays usable.
    c.request_err(json!({"type": "find", "id": "x"}), "not-registered")
        .await;
    let err = c
        .request_err(
            json!({"type": "register", "id": "no spaces please"}),
            "invalid-id",
        )
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("letters, digits"),
        "{err}"
    );
    let r = c.request(json!({"type": "register", "id": "alice"})).await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some("alice"), Some(false))
    );
    assert!(r["resumeToken"].as_str().unwrap().len() >= 32);
    assert_eq!(r["graceMs"], 10_000);
    assert_eq!(r["protocol"], 1);
    c.request_err(
        json!({"type": "register", "id": "alice2"}),
        "already-registered",
    )
    .await;

    let mut other = b.client().await;
    let err = other
        .request_err(json!({"type": "register", "id": "alice"}), "id-taken")
        .await;
    assert!(err["message"].as_str().unwrap().contains("alice"));
    let r = other.request(json!({"type": "register"})).await;
    let assigned = r["id"].as_str().unwrap();
    assert!(
        assigned.starts_with("p-") && assigned.len() == 18,
        "{assigned}"
    );
    b.stop().await;
}

#[tokio::test]
async fn ping_and_find() {
    let b = Broker::start(&[]).await;
    let mut c = b.client().await;
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    let (mut alice, _) = b.registered("alice").await;
    let _bob = b.registered("bob").await;
    let f = alice.request(json!({"type": "find", "id": "bob"})).await;
    assert_eq!(
        (f["type"].as_str(), f["id"].as_str(), f["online"].as_bool()),
        (Some("found"), Some("bob"), Some(true))
    );
    assert_eq!(
        alice.request(json!({"type": "find", "id": "carol"})).await["online"],
        false
    );
    alice
        .request_err(json!({"type": "find", "id": "bad id"}), "invalid-id")
        .await;
    b.stop().await;
}

// ---- 2. signal forwarding ----------------------------------------------

#[tokio::test]
async fn signals_arrive_in_order_exactly_once_and_unknown_targets_fail_at_once() {
    let b = Broker::start(&[]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    for i in 0..200 {
        alice
            .send(json!({"type": "signal", "to": "bob", "data": {"n": i, "sdp": "v=0"}}))
            .await;
    }
    for i in 0..200 {
        let m = bob.expect("signal").await;
        assert_eq!(m["from"], "alice");
        assert_eq!(m["data"], json!({"n": i, "sdp": "v=0"}));
        assert!(m.get("rid").is_none());
    }
    bob.quiet_for(200).await;
    alice.quiet_for(0).await;

    let err = alice
        .request_err(
            json!({"type": "signal", "to": "nobody", "data": 1}),
            "unknown-peer",
        )
        .await;
    assert_eq!(err["target"], "nobody");
    alice
        .request_err(json!({"type": "signal", "to": "bob"}), "bad-message")
        .await;
    b.stop().await;
}

#[tokio::test]
async fn a_dropped_id_can_be_resumed_within_grace_and_gets_its_queued_signals() {
    let b = Broker::start(&["--grace-ms", "3000"]).await;
    let (mut alice, token) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    alice
        .request(json!({"type": "join", "room": "lobby"}))
        .await;
    bob.request(json!({"type": "join", "room": "lobby"})).await;
    alice.expect("peer-joined").await;
    alice.vanish();

    // Inside the grace window the id is held: online, not registrable, and
    // signals to it are queued rather than refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        bob.request(json!({"type": "find", "id": "alice"})).await["online"],
        true
    );
    for i in 0..5 {
        bob.send(json!({"type": "signal", "to": "alice", "data": i}))
            .await;
    }
    let mut thief = b.client().await;
    thief
        .request_err(json!({"type": "register", "id": "alice"}), "id-taken")
        .await;
    thief
        .request_err(
            json!({"type": "register", "id": "alice", "resumeToken": "forged"}),
            "bad-resume-token",
        )
        .await;

    let mut again = b.client().await;
    let r = again
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some(true)),
        "{r}"
    );
    assert_eq!(r["rooms"], json!(["lobby"]));
    let sync = again.expect("joined").await;
    assert!(sync.get("rid").is_none());
    assert_eq!(sync["members"], json!(["alice", "bob"]));
    for i in 0..5 {
        let m = again.expect("signal").await;
        assert_eq!(
            (m["from"].as_str(), m["data"].as_i64()),
            (Some("bob"), Some(i))
        );
    }
    // No peer-left was ever announced, and nothing was reported lost.
    bob.quiet_for(300).await;
    b.stop().await;
}

#[tokio::test]
async fn queued_signals_are_answered_with_peer_gone_when_the_grace_window_ends() {
    let b = Broker::start(&["--grace-ms", "300"]).await;
    let (alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    alice.vanish();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rid = bob
        .send(json!({"type": "signal", "to": "alice", "data": "offer"}))
        .await;
    let err = bob.expect("error").await;
    assert_eq!(
        (
            err["code"].as_str(),
            err["rid"].as_u64(),
            err["target"].as_str()
        ),
        (Some("peer-gone"), Some(rid), Some("alice"))
    );
    assert_eq!(
        bob.request(json!({"type": "find", "id": "alice"})).await["online"],
        false
    );
    // The id is free again, for anyone.
    let (_new_alice, _) = b.registered("alice").await;
    b.stop().await;
}

#[tokio::test]
async fn reclaiming_an_id_from_a_still_open_connection_replaces_it() {
    let b = Broker::start(&[]).await;
    let (mut old, token) = b.registered("alice").await;
    let mut new = b.client().await;
    let r = new
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(r["resumed"], true);
    assert_eq!(old.closed().await, Closed::Code(4005));
    let (mut bob, _) = b.registered("bob").await;
    bob.send(json!({"type": "signal", "to": "alice", "data": "hi"}))
        .await;
    assert_eq!(new.expect("signal").await["data"], "hi");
    b.stop().await;
}

#[tokio::test]
async fn a_stale_token_after_the_window_gets_the_free_id_afresh() {
    let b = Broker::start(&["--grace-ms", "100"]).await;
    let (alice, token) = b.registered("alice").await;
    alice.vanish();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut again = b.client().await;
    let r = again
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(
        (r["id"].as_str(), r["resumed"].as_bool()),
        (Some("alice"), Some(false))
    );
    assert_ne!(r["resumeToken"].as_str(), Some(token.as_str()));
    b.stop().await;
}

#[tokio::test]
async fn a_normal_close_releases_the_id_at_once() {
    let b = Broker::start(&["--grace-ms", "60000"]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    alice.request(json!({"type": "join", "room": "r"})).await;
    bob.request(json!({"type": "join", "room": "r"})).await;
    alice.expect("peer-joined").await;
    alice.close_normally().await;
    let left = bob.expect("peer-left").await;
    assert_eq!(
        (left["room"].as_str(), left["id"].as_str()),
        (Some("r"), Some("alice"))
    );
    assert_eq!(
        bob.request(json!({"type": "find", "id": "alice"})).await["online"],
        false
    );
    b.stop().await;
}

// ---- 3. rooms, 4. broadcast, 5. room state --------------------------------

#[tokio::test]
async fn rooms_list_members_and_announce_joins_and_leaves() {
    let b = Broker::start(&["--grace-ms", "0"]).await;
    let (mut a, _) = b.registered("a").await;
    let (mut c, _) = b.registered("c").await;
    let j = a.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(
        (j["type"].as_str(), j["members"].clone()),
        (Some("joined"), json!(["a"]))
    );
    let j = c.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(j["members"], json!(["a", "c"]));
    let ev = a.expect("peer-joined").await;
    assert_eq!(
        (ev["room"].as_str(), ev["id"].as_str()),
        (Some("lobby"), Some("c"))
    );
    // Joining twice is harmless and announces nothing.
    c.request(json!({"type": "join", "room": "lobby"})).await;
    a.quiet_for(100).await;

    assert_eq!(
        c.request(json!({"type": "leave", "room": "lobby"})).await["type"],
        "ok"
    );
    assert_eq!(a.expect("peer-left").await["id"], "c");
    c.request_err(json!({"type": "leave", "room": "lobby"}), "not-in-room")
        .await;
    c.request_err(json!({"type": "join", "room": "has space"}), "invalid-room")
        .await;

    // Leaving happens on disconnect too (grace 0 here).
    c.request(json!({"type": "join", "room": "lobby"})).await;
    a.expect("peer-joined").await;
    c.vanish();
    assert_eq!(a.expect("peer-left").await["id"], "c");
    b.stop().await;
}

#[tokio::test]
async fn room_limits_are_enforced_with_named_errors() {
    let b = Broker::start(&[
        "--max-room-members",
        "2",
        "--max-rooms-per-peer",
        "2",
        "--max-state-keys",
        "1",
    ])
    .await;
    let (mut a, _) = b.registered("a").await;
    let (mut c, _) = b.registered("c").await;
    let (mut d, _) = b.registered("d").await;
    a.request(json!({"type": "join", "room": "r1"})).await;
    c.request(json!({"type": "join", "room": "r1"})).await;
    a.expect("peer-joined").await;
    d.request_err(json!({"type": "join", "room": "r1"}), "room-full")
        .await;
    a.request(json!({"type": "join", "room": "r2"})).await;
    a.request_err(json!({"type": "join", "room": "r3"}), "too-many-rooms")
        .await;
    a.send(json!({"type": "set", "room": "r2", "key": "k1", "value": 1}))
        .await;
    a.expect("state-set").await;
    a.expect("ok").await;
    a.request_err(
        json!({"type": "set", "room": "r2", "key": "k2", "value": 1}),
        "invalid-state-key",
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn broadcast_reaches_every_member() {
    let b = Broker::start(&[]).await;
    let (mut a, _) = b.registered("a").await;
    let (mut c, _) = b.registered("c").await;
    let (mut d, _) = b.registered("d").await;
    let (mut outsider, _) = b.registered("outsider").await;
    for p in [&mut a, &mut c, &mut d] {
        p.request(json!({"type": "join", "room": "echo"})).await;
    }
    a.expect("peer-joined").await;
    a.expect("peer-joined").await;
    c.expect("peer-joined").await;

    assert_eq!(
        a.request(json!({"type": "broadcast", "room": "echo", "data": {"hi": 1}}))
            .await["type"],
        "ok"
    );
    for p in [&mut c, &mut d] {
        let m = p.expect("broadcast").await;
        assert_eq!(
            (m["room"].as_str(), m["from"].as_str(), m["data"].clone()),
            (Some("echo"), Some("a"), json!({"hi": 1}))
        );
    }
    a.quiet_for(100).await;
    outsider.quiet_for(0).await;

    a.send(json!({"type": "broadcast", "room": "echo", "data": 2, "includeSelf": true}))
        .await;
    assert_eq!(a.expect("broadcast").await["data"], 2);
    a.expect("ok").await;
    outsider
        .request_err(
            json!({"type": "broadcast", "room": "echo", "data": 0}),
            "not-in-room",
        )
        .await;
    b.stop().await;
}

#[tokio::test]
async fn room_state_is_replicated_snapshotted_and_expires() {
    let b = Broker::start(&["--sweep-ms", "20"]).await;
    let (mut a, _) = b.registered("a").await;
    a.request(json!({"type": "join", "room": "s"})).await;
    // Every event a request causes reaches the sender before its reply.
    a.send(json!({"type": "set", "room": "s", "key": "cursor", "value": [1, 2], "ttlMs": 400}))
        .await;
    let ev = a.expect("state-set").await;
    a.expect("ok").await;
    assert_eq!(
        (
            ev["key"].as_str(),
            ev["value"].clone(),
            ev["from"].as_str(),
            ev["ttlMs"].as_u64()
        ),
        (Some("cursor"), json!([1, 2]), Some("a"), Some(400))
    );
    a.send(json!({"type": "set", "room": "s", "key": "title", "value": "hello"}))
        .await;
    a.expect("state-set").await;
    a.expect("ok").await;

    // A joiner gets the snapshot, with the time left on expiring keys.
    let (mut c, _) = b.registered("c").await;
    let j = c.request(json!({"type": "join", "room": "s"})).await;
    let state = j["state"].as_array().unwrap();
    assert_eq!(state.len(), 2);
    let cursor = state.iter().find(|e| e["key"] == "cursor").unwrap();
    assert!(cursor["ttlMs"].as_u64().unwrap() <= 400);
    let title = state.iter().find(|e| e["key"] == "title").unwrap();
    assert_eq!(
        (title["value"].as_str(), title.get("ttlMs")),
        (Some("hello"), None)
    );
    a.expect("peer-joined").await;

    // Expiry is announced to every member.
    for p in [&mut a, &mut c] {
        let ev = p.expect("state-removed").await;
        assert_eq!(
            (ev["key"].as_str(), ev["reason"].as_str()),
            (Some("cursor"), Some("expired"))
        );
    }
    // Deletion too.
    c.send(json!({"type": "delete", "room": "s", "key": "title"}))
        .await;
    let ev = a.expect("state-removed").await;
    assert_eq!(
        (ev["reason"].as_str(), ev["from"].as_str()),
        (Some("deleted"), Some("c"))
    );
    c.expect("state-removed").await;
    c.expect("ok").await;
    let j = c.request(json!({"type": "join", "room": "s"})).await;
    assert_eq!(j["state"], json!([]));
    c.request_err(
        json!({"type": "set", "room": "elsewhere", "key": "k", "value": 1}),
        "not-in-room",
    )
    .await;
    c.request_err(
        json!({"type": "set", "room": "s", "key": "", "value": 1}),
        "invalid-state-key",
    )
    .await;
    b.stop().await;
}

// ---- 6. rendezvous keys ---------------------------------------------------

#[tokio::test]
async fn rendezvous_keys_match_opener_and_joiners() {
    let b = Broker::start(&["--grace-ms", "0"]).await;
    let (mut opener, _) = b.registered("opener").await;
    let (mut j1, _) = b.registered("j1").await;
    let (mut j2, _) = b.registered("j2").await;
    let (mut other, _) = b.registered("other").await;

    j1.request_err(
        json!({"type": "join-key", "key": "meet_here"}),
        "unknown-key",
    )
    .await;
    j1.request_err(json!({"type": "open-key", "key": "Bad Key"}), "invalid-key")
        .await;
    let r = opener
        .request(json!({"type": "open-key", "key": "meet_here"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["key"].as_str()),
        (Some("key-opened"), Some("meet_here"))
    );
    other
        .request_err(json!({"type": "open-key", "key": "meet_here"}), "key-taken")
        .await;

    let r = j1
        .request(json!({"type": "join-key", "key": "meet_here"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["opener"].as_str()),
        (Some("key-joined"), Some("opener"))
    );
    let ev = opener.expect("joiner").await;
    assert_eq!(
        (ev["key"].as_str(), ev["id"].as_str()),
        (Some("meet_here"), Some("j1"))
    );
    j2.request(json!({"type": "join-key", "key": "meet_here"}))
        .await;
    assert_eq!(opener.expect("joiner").await["id"], "j2");

    // The pair signals with the ids they learned.
    j1.send(json!({"type": "signal", "to": "opener", "data": "offer"}))
        .await;
    assert_eq!(opener.expect("signal").await["from"], "j1");

    // A joiner leaving (by disconnecting) makes it unavailable to the opener.
    j1.vanish();
    let ev = opener.expect("unavailable").await;
    assert_eq!(
        (ev["key"].as_str(), ev["id"].as_str()),
        (Some("meet_here"), Some("j1"))
    );
    // ... and by leave-key.
    j2.request(json!({"type": "leave-key", "key": "meet_here"}))
        .await;
    assert_eq!(opener.expect("unavailable").await["id"], "j2");
    j2.request_err(
        json!({"type": "leave-key", "key": "meet_here"}),
        "unknown-key",
    )
    .await;

    // Closing tells the joiners; only the opener may close.
    j2.request(json!({"type": "join-key", "key": "meet_here"}))
        .await;
    opener.expect("joiner").await;
    other
        .request_err(
            json!({"type": "close-key", "key": "meet_here"}),
            "not-opener",
        )
        .await;
    assert_eq!(
        opener
            .request(json!({"type": "close-key", "key": "meet_here"}))
            .await["type"],
        "ok"
    );
    let ev = j2.expect("unavailable").await;
    assert_eq!(ev["id"], "opener");
    j2.request_err(
        json!({"type": "join-key", "key": "meet_here"}),
        "unknown-key",
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn rendezvous_keys_time_out_while_listening_and_pairs_at_their_deadline() {
    let b = Broker::start(&[
        "--listen-timeout-ms",
        "400",
        "--pipe-timeout-ms",
        "600",
        "--max-keys-per-peer",
        "2",
    ])
    .await;
    let (mut opener, _) = b.registered("opener").await;
    let (mut joiner, _) = b.registered("joiner").await;

    // Nobody joins: the key is closed with 4000 and is free again.
    opener
        .request(json!({"type": "open-key", "key": "lonely"}))
        .await;
    let ev = opener.expect("key-closed").await;
    assert_eq!(
        (ev["key"].as_str(), ev["code"].as_u64()),
        (Some("lonely"), Some(4000))
    );
    joiner
        .request_err(json!({"type": "join-key", "key": "lonely"}), "unknown-key")
        .await;

    // A joiner stops the listen timer; the pair ends at its deadline (4001)
    // and both sides are told. The key then listens again.
    opener
        .request(json!({"type": "open-key", "key": "meet"}))
        .await;
    joiner
        .request(json!({"type": "join-key", "key": "meet"}))
        .await;
    opener.expect("joiner").await;
    let started = tokio::time::Instant::now();
    let ev = opener.expect("unavailable").await;
    assert_eq!(
        (ev["id"].as_str(), ev["code"].as_u64()),
        (Some("joiner"), Some(4001))
    );
    let ev = joiner.expect("unavailable").await;
    assert_eq!(
        (ev["id"].as_str(), ev["code"].as_u64()),
        (Some("opener"), Some(4001))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the deadline"
    );
    // The ids still reach each other.
    joiner
        .send(json!({"type": "signal", "to": "opener", "data": "still here"}))
        .await;
    assert_eq!(opener.expect("signal").await["data"], "still here");
    let ev = opener.expect("key-closed").await;
    assert_eq!(
        (ev["key"].as_str(), ev["code"].as_u64()),
        (Some("meet"), Some(4000))
    );

    // Keys per peer are bounded.
    for key in ["one", "two"] {
        opener
            .request(json!({"type": "open-key", "key": key}))
            .await;
    }
    opener
        .request_err(json!({"type": "open-key", "key": "three"}), "too-many-keys")
        .await;
    let metrics = b.http_get("/metrics").await;
    assert!(metrics.contains("code=\"4000\""), "{metrics}");
    b.stop().await;
}

// ---- hostnames -----------------------------------------------------------------

/// `register-hostname` as `client`; the reply.
async fn register_hostname(client: &mut Client, hostname: &str) -> serde_json::Value {
    client
        .request(json!({"type": "register-hostname", "hostname": hostname}))
        .await
}

/// `lookup-hostname`; the id holding it, or the error code.
async fn lookup_hostname(client: &mut Client, hostname: &str) -> String {
    let r = client
        .request(json!({"type": "lookup-hostname", "hostname": hostname}))
        .await;
    match r["type"].as_str() {
        Some("found-host") => {
            assert_eq!(r["hostname"], hostname, "{r}");
            r["id"].as_str().unwrap().to_string()
        }
        _ => r["code"].as_str().unwrap().to_string(),
    }
}

#[tokio::test]
async fn a_hostname_belongs_to_the_id_that_registered_it() {
    let b = Broker::start(&[]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    assert_eq!(register_hostname(&mut alice, "printer").await["type"], "ok");
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "alice");
    // Another id can neither take it nor (there is no request for it)
    // remove it; the owner registering it again is harmless.
    let err = bob
        .request_err(
            json!({"type": "register-hostname", "hostname": "printer"}),
            "hostname-taken",
        )
        .await;
    assert!(err["message"].as_str().unwrap().contains("alice"), "{err}");
    assert_eq!(register_hostname(&mut alice, "printer").await["type"], "ok");
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "alice");
    assert_eq!(lookup_hostname(&mut bob, "scanner").await, "unknown-host");
    // Hostnames follow the peer-id rules.
    for bad in ["", "has space", "-dash", "a/b"] {
        bob.request_err(
            json!({"type": "register-hostname", "hostname": bad}),
            "invalid-hostname",
        )
        .await;
    }
    bob.request_err(
        json!({"type": "lookup-hostname", "hostname": "x".repeat(65)}),
        "invalid-hostname",
    )
    .await;
    // Only a registered connection may hold one.
    let mut anonymous = b.client().await;
    anonymous
        .request_err(
            json!({"type": "register-hostname", "hostname": "free"}),
            "not-registered",
        )
        .await;
    b.stop().await;
}

#[tokio::test]
async fn an_id_holds_a_bounded_number_of_hostnames() {
    let b = Broker::start(&["--max-hostnames-per-peer", "2"]).await;
    let (mut alice, _) = b.registered("alice").await;
    register_hostname(&mut alice, "one").await;
    register_hostname(&mut alice, "two").await;
    alice
        .request_err(
            json!({"type": "register-hostname", "hostname": "three"}),
            "too-many-hostnames",
        )
        .await;
    b.stop().await;
}

#[tokio::test]
async fn a_hostname_is_released_by_a_normal_close() {
    let b = Broker::start(&["--grace-ms", "60000"]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    register_hostname(&mut alice, "printer").await;
    alice.close_normally().await;
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "unknown-host");
    assert_eq!(register_hostname(&mut bob, "printer").await["type"], "ok");
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "bob");
    b.stop().await;
}

#[tokio::test]
async fn a_hostname_is_kept_across_a_resume_and_released_when_the_grace_window_ends() {
    let b = Broker::start(&["--grace-ms", "400", "--sweep-ms", "20"]).await;
    let (mut alice, token) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    register_hostname(&mut alice, "printer").await;
    alice.vanish();
    // Detached inside the window: still alice's.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "alice");
    bob.request_err(
        json!({"type": "register-hostname", "hostname": "printer"}),
        "hostname-taken",
    )
    .await;
    let mut again = b.client().await;
    let r = again
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(r["resumed"], true, "{r}");
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "alice");
    // Dropped again, and this time the window runs out.
    again.vanish();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(lookup_hostname(&mut bob, "printer").await, "unknown-host");
    assert_eq!(register_hostname(&mut bob, "printer").await["type"], "ok");
    b.stop().await;
}

// ---- 7. ICE configuration ---------------------------------------------------

#[tokio::test]
async fn ice_servers_come_with_short_lived_turn_credentials() {
    let b = Broker::start(&[
        "--ice-server",
        "stun:stun.example.org:3478",
        "--ice-server",
        "turn:turn.example.org:3478",
        "--turn-secret",
        "s3cret",
        "--turn-ttl-secs",
        "600",
    ])
    .await;
    let mut c = b.client().await;
    let r = c.request(json!({"type": "register", "id": "alice"})).await;
    let ice = r["iceServers"].as_array().unwrap();
    assert_eq!(ice[0], json!({"urls": ["stun:stun.example.org:3478"]}));
    let username = ice[1]["username"].as_str().unwrap();
    let (expiry, id) = username.split_once(':').unwrap();
    assert_eq!(id, "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now + 590 && expiry <= now + 600,
        "{expiry} vs {now}"
    );
    let expected = peerwire_broker::ice::turn_credentials("s3cret", "alice", expiry).1;
    assert_eq!(ice[1]["credential"], expected);
    assert!(!r.to_string().contains("s3cret"));
    b.stop().await;
}

// ---- 8. liveness ------------------------------------------------------------

#[tokio::test]
async fn a_silent_client_is_dropped_by_the_heartbeat_and_released_after_grace() {
    let b = Broker::start(&[
        "--heartbeat-interval-ms",
        "100",
        "--heartbeat-timeout-ms",
        "300",
        "--grace-ms",
        "300",
    ])
    .await;
    let (mut alice, _) = b.registered("alice").await;
    let (mut watcher, _) = b.registered("watcher").await;
    alice.request(json!({"type": "join", "room": "r"})).await;
    watcher.request(json!({"type": "join", "room": "r"})).await;
    // The watcher reads (and so answers pings); alice stops reading, so her
    // pongs stop and the broker hears nothing from her.
    let started = std::time::Instant::now();
    let left = watcher.expect("peer-left").await;
    let elapsed = started.elapsed();
    assert_eq!(left["id"], "alice");
    assert!(
        elapsed >= Duration::from_millis(500),
        "released too early: {elapsed:?}"
    );
    // Alice never reads, so she may not see the close frame itself: her
    // stack fails writing pongs to the closed socket first. The close code
    // is checked in the metrics below.
    alice.closed().await;
    // A client that does read stays connected across many heartbeats.
    watcher.quiet_for(800).await;
    assert_eq!(
        watcher.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    let metrics = b.http_get("/metrics").await;
    assert!(
        metrics.contains("peerwire_closes_total{code=\"4004\"} 1"),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_instead_of_growing_memory() {
    let b = Broker::start(&[
        "--outbound-queue",
        "8",
        "--max-queued",
        "4",
        "--max-rooms-per-peer",
        "2",
        "--grace-ms",
        "60000",
    ])
    .await;
    let (mut sleepy, token) = b.registered("sleepy").await;
    let (mut flooder, _) = b.registered("flooder").await;
    // ~40 KB signals until the loopback socket buffers and the 8-frame
    // queue are full; sleepy never reads. Small batches keep the flooder's
    // own error replies (queue-full, once sleepy is detached) within its queue.
    let blob = "x".repeat(40_000);
    let mut sent = 0;
    let metrics = loop {
        for _ in 0..4 {
            flooder
                .send(json!({"type": "signal", "to": "sleepy", "data": blob}))
                .await;
            sent += 1;
        }
        let m = b.http_get("/metrics").await;
        if m.contains("peerwire_closes_total{code=\"4003\"} 1") {
            break m;
        }
        assert!(sent < 20_000, "never cut off:\n{m}");
    };
    assert!(metrics.contains("peerwire_ids_detached 1"), "{metrics}");
    // Its id is held in the grace window, not lost, and can be resumed; the
    // messages that did not fit wait in its queue.
    sleepy.closed().await;
    let mut again = b.client().await;
    let r = again
        .request(json!({"type": "register", "id": "sleepy", "resumeToken": token}))
        .await;
    assert_eq!(r["resumed"], true);
    assert_eq!(again.expect("signal").await["from"], "flooder");
    b.stop().await;
}

#[tokio::test]
async fn a_slow_reader_cut_off_that_resumes_at_once_gets_every_signal_once_and_in_order() {
    let b = Broker::start(&[
        "--outbound-queue",
        "8",
        "--max-queued",
        "4",
        "--max-rooms-per-peer",
        "2",
        "--grace-ms",
        "60000",
    ])
    .await;
    let (mut sleepy, token) = b.registered("sleepy").await;
    let (mut flooder, _) = b.registered("flooder").await;
    let blob = "x".repeat(40_000);
    let mut sent = 0u64;
    let signal = |n: u64| json!({"type": "signal", "to": "sleepy", "data": {"n": n, "pad": blob}});
    loop {
        for _ in 0..4 {
            flooder.send(signal(sent)).await;
            sent += 1;
        }
        let m = b.http_get("/metrics").await;
        if m.contains("peerwire_closes_total{code=\"4003\"} 1") {
            break;
        }
        assert!(sent < 20_000, "never cut off:\n{m}");
    }
    // Sleepy resumes at once on a new socket, before reading the old one
    // (whose connection task may still hold frames it never wrote), and
    // newer signals follow.
    let mut again = b.client().await;
    let r = again
        .request(json!({"type": "register", "id": "sleepy", "resumeToken": token}))
        .await;
    assert_eq!(r["resumed"], true);
    for _ in 0..3 {
        flooder.send(signal(sent)).await;
        sent += 1;
    }
    // What the old socket carried, then what the new one does: each signal
    // once, in order, or refused to the flooder by name.
    let n_of = |m: &serde_json::Value| m["data"]["n"].as_u64();
    let (old, code) = sleepy.drain_until_closed().await;
    assert_eq!(code.map(|c| c.0), Some(4003));
    let mut got: Vec<u64> = old.iter().filter_map(n_of).collect();
    let mut refused = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (got.len() + refused.len()) < sent as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} delivered and {} refused of {sent}",
            got.len(),
            refused.len()
        );
        got.extend(again.drain_for(100).await.iter().filter_map(n_of));
        for e in flooder.drain_for(20).await {
            assert_eq!(e["type"], "error", "{e}");
            assert_eq!(e["code"], "queue-full", "{e}");
            // rids start at 2 (1 registered); signal n has rid n + 2.
            refused.insert(e["rid"].as_u64().unwrap() - 2);
        }
    }
    let mut expected: Vec<u64> = (0..sent).filter(|n| !refused.contains(n)).collect();
    expected.sort();
    assert_eq!(got, expected, "every signal once, in order");
    b.stop().await;
}

// ---- bad input --------------------------------------------------------------

#[tokio::test]
async fn bad_frames_get_named_errors_and_leave_the_connection_usable() {
    let b = Broker::start(&[]).await;
    let (mut c, _) = b.registered("c").await;
    let cases: &[(&str, &str)] = &[
        ("{not json", "bad-json"),
        ("[]", "bad-message"),
        (r#"{"rid":9}"#, "bad-message"),
        (r#"{"type":"teleport","rid":10}"#, "unknown-type"),
        (r#"{"type":"signal","rid":11,"to":"x"}"#, "bad-message"),
        (r#"{"type":"join","rid":12,"room":5}"#, "bad-message"),
    ];
    for (frame, code) in cases {
        c.send_raw(frame).await;
        let e = c.expect("error").await;
        assert_eq!(e["code"], *code, "{frame}: {e}");
    }
    // The rid is echoed when it could be read.
    c.send_raw(r#"{"type":"teleport","rid":77}"#).await;
    assert_eq!(c.expect("error").await["rid"], 77);
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.expect("error").await["code"], "bad-message");
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}

#[tokio::test]
async fn a_message_refused_by_closing_the_connection_is_answered_first() {
    // Over the rate: the refused ping's rid gets `rate-limited`, then 4002.
    let b = Broker::start(&["--rate-limit", "1", "--rate-burst", "5"]).await;
    let (mut c, _) = b.registered("c").await;
    let mut rids = Vec::new();
    for _ in 0..8 {
        rids.push(c.send(json!({"type": "ping"})).await);
    }
    let (got, close) = c.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(4002));
    let answered: Vec<_> = got.iter().map(|m| m["rid"].as_u64().unwrap()).collect();
    // register took one token: four pongs, then the fifth ping is refused.
    assert_eq!(answered, rids[..5].to_vec(), "{got:?}");
    let last = got.last().unwrap();
    assert_eq!(
        (&last["type"], &last["code"]),
        (&json!("error"), &json!("rate-limited"))
    );
    assert!(
        last["message"].as_str().unwrap().contains("--rate-limit"),
        "{last}"
    );
    // Too big: the signal's sender learns its rid and target, then 1009.
    let (mut c, _) = b.registered("d").await;
    let rid = c
        .send(json!({"type": "signal", "to": "e", "data": "x".repeat(70_000)}))
        .await;
    let (got, close) = c.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(1009));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "too-big");
    assert_eq!(got[0]["rid"], rid);
    assert_eq!(got[0]["target"], "e");
    b.stop().await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let b = Broker::start(&["--max-frame-bytes", "4096"]).await;
    let mut c = b.client().await;
    c.send_raw(&format!(
        r#"{{"type":"ping","rid":1,"pad":"{}"}}"#,
        "x".repeat(5000)
    ))
    .await;
    assert_eq!(c.closed().await, Closed::Code(1009));
    // Far above the limit it is refused before being buffered, still 1009.
    let mut c = b.client().await;
    c.send_raw(&"y".repeat(100_000)).await;
    assert_eq!(c.closed().await, Closed::Code(1009));
    b.stop().await;
}

#[tokio::test]
async fn garbage_never_takes_the_broker_down() {
    let b = Broker::start(&["--max-frame-bytes", "4096"]).await;
    let garbage: Vec<String> = vec![
        String::new(),
        "\0\0\0".into(),
        "null".into(),
        "true".into(),
        "1e999999".into(),
        "{\"type\":null}".into(),
        "{\"type\":\"register\",\"rid\":18446744073709551616}".into(),
        "{\"type\":\"register\",\"rid\":1,\"id\":\"\u{202e}evil\"}".into(),
        "{\"type\":\"signal\",\"rid\":1,\"to\":\"a\",\"data\":".into(),
        "[".repeat(3000),
        "{\"a\":".repeat(800),
        "\"\\ud800\"".into(),
        "{\"type\":\"set\",\"rid\":1,\"room\":\"r\",\"key\":\"k\",\"value\":1,\"ttlMs\":-5}".into(),
        "{\"type\":\"set\",\"rid\":1,\"room\":\"r\",\"key\":\"k\",\"value\":1,\"ttlMs\":18446744073709551615}".into(),
    ];
    for _ in 0..3 {
        let mut c = b.client().await;
        for g in &garbage {
            c.send_raw(g).await;
        }
        c.send_binary(vec![0xff; 2000]).await;
        for _ in 0..garbage.len() + 1 {
            assert_eq!(c.expect("error").await["type"], "error");
        }
        c.vanish();
    }
    // A register and a huge TTL from a registered client do not panic either.
    let (mut a, _) = b.registered("a").await;
    a.request(json!({"type": "join", "room": "r"})).await;
    a.send(json!({"type": "set", "room": "r", "key": "k", "value": 1, "ttlMs": u64::MAX}))
        .await;
    a.expect("state-set").await;
    a.expect("ok").await;
    // A fresh client is served normally afterwards.
    let (mut fresh, _) = b.registered("fresh").await;
    assert_eq!(fresh.request(json!({"type": "ping"})).await["type"], "pong");
    assert!(b.http_get("/healthz").await.ends_with("ok\n"));
    b.stop().await;
}

// ---- 9. operations ----------------------------------------------------------

#[tokio::test]
async fn metrics_count_connections_ids_rooms_messages_and_errors() {
    let b = Broker::start(&[]).await;
    let (mut a, _) = b.registered("a").await;
    a.request(json!({"type": "join", "room": "r"})).await;
    a.request_err(
        json!({"type": "signal", "to": "ghost", "data": 1}),
        "unknown-peer",
    )
    .await;
    let m = b.http_get("/metrics").await;
    assert!(
        m.starts_with("HTTP/1.0 200") || m.starts_with("HTTP/1.1 200"),
        "{m}"
    );
    for line in [
        "peerwire_connections 1",
        "peerwire_ids 1",
        "peerwire_rooms 1",
        "peerwire_messages_in_total 3",
        "peerwire_messages_out_total 3",
        "peerwire_errors_total{code=\"unknown-peer\"} 1",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    b.stop().await;
}

// ---- abuse limits -------------------------------------------------------------

#[tokio::test]
async fn a_flooding_connection_is_closed_with_4002() {
    let b = Broker::start(&["--rate-limit", "20", "--rate-burst", "40"]).await;
    let (mut flooder, _) = b.registered("flooder").await;
    let (mut calm, _) = b.registered("calm").await;
    for _ in 0..200 {
        flooder.send_raw(r#"{"type":"ping","rid":1}"#).await;
    }
    assert_eq!(flooder.closed().await, Closed::Code(4002));
    // Another connection is unaffected.
    assert_eq!(calm.request(json!({"type": "ping"})).await["type"], "pong");
    // A steady client within the rate is never cut off.
    for _ in 0..15 {
        assert_eq!(calm.request(json!({"type": "ping"})).await["type"], "pong");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn connections_from_one_address_share_a_budget() {
    let b = Broker::start(&["--ip-rate-limit", "20", "--ip-rate-burst", "60"]).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(b.registered(&format!("c{i}")).await.0);
    }
    // Each sends under 60, together over 60.
    for c in &mut clients {
        for _ in 0..30 {
            c.send_raw(r#"{"type":"ping","rid":1}"#).await;
        }
    }
    let mut cut = 0;
    for c in &mut clients {
        if c.closed_within(Duration::from_secs(2)).await == Some(Closed::Code(4002)) {
            cut += 1;
        }
    }
    assert!(cut >= 1, "the shared budget was never enforced");
    b.stop().await;
}

#[tokio::test]
async fn too_many_connections_from_one_address_are_refused_with_429() {
    let b = Broker::start(&["--max-connections-per-ip", "2"]).await;
    let first = b.client().await;
    let _second = b.client().await;
    let err = tokio_tungstenite::connect_async(b.url()).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    // A slot frees when a connection ends.
    first.close_normally().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = b.client().await;
    assert_eq!(again.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}

#[tokio::test]
async fn only_allowed_origins_may_connect() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let b = Broker::start(&[
        "--allow-origin",
        "https://app.example.org",
        "--allow-origin",
        "https://*.example.com",
    ])
    .await;
    let with_origin = |origin: Option<&str>| {
        let mut req = b.url().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        req
    };
    for ok in ["https://app.example.org", "https://a.example.com"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(with_origin(Some(ok)))
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        futures_util::SinkExt::send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::text(r#"{"type":"ping","rid":1}"#),
        )
        .await
        .unwrap();
    }
    // Origins are parsed: a path, a query or a user part cannot smuggle
    // an allowed suffix in, and a long one with many stars is refused at
    // once rather than matched by backtracking.
    let long = format!("https://{}.example.org", "a".repeat(8000));
    for bad in [
        Some("https://evil.example.org"),
        Some("https://example.com.evil.org"),
        None,
        Some("https://evil.org/.example.com"),
        Some("https://evil.org?.example.com"),
        Some("https://x@evil.org/.example.com"),
        Some(long.as_str()),
    ] {
        let err = tokio_tungstenite::connect_async(with_origin(bad))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("403"), "{bad:?}: {err}");
    }
    let metrics = b.http_get("/metrics").await;
    assert!(
        metrics.contains("peerwire_refused_total{code=\"origin\"} 7"),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_registers_is_closed_with_4006() {
    let b = Broker::start(&["--register-timeout-ms", "300"]).await;
    let mut idle = b.client().await;
    let started = std::time::Instant::now();
    assert_eq!(idle.closed().await, Closed::Code(4006));
    assert!(started.elapsed() < Duration::from_secs(3));
    // A registered one is not affected.
    let (mut ok, _) = b.registered("ok").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ok.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}

#[tokio::test]
async fn a_request_that_never_finishes_its_headers_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Broker::start(&["--handshake-timeout-ms", "300"]).await;
    let mut slow = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the half-sent request still holds its socket");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the deadline"
    );
    // Whole requests are unaffected.
    let (mut ok, _) = b.registered("after-slowloris").await;
    assert_eq!(ok.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}

/// A receiver cut off as a slow consumer (4003) loses nothing silently:
/// every signal sent to it is delivered exactly once and in order (before
/// the cut, or after it resumes), or its sender gets an error saying so.
#[tokio::test]
async fn signals_to_a_cut_off_client_are_delivered_after_resume_or_refused_never_lost() {
    let b = Broker::start(&[
        "--outbound-queue",
        "64",
        "--max-queued",
        "32",
        "--max-rooms-per-peer",
        "4",
        "--rate-burst",
        "100000",
        "--rate-limit",
        "100000",
        "--grace-ms",
        "5000",
    ])
    .await;
    let (mut slow, token) = b.registered("slow").await;
    let (mut sender, _) = b.registered("sender").await;
    // ~40 KB signals until the socket buffers and the queue are full and the
    // broker cuts the receiver off, then some more while it is away. The
    // sender reads its errors as it goes.
    let pad = "x".repeat(40_000);
    let mut rid_of = std::collections::HashMap::new();
    let mut replies = Vec::new();
    let mut seq = 0u64;
    let mut after_cut = None;
    while after_cut.is_none_or(|n| seq < n + 40) {
        for _ in 0..4 {
            let rid = sender
                .send(json!({"type": "signal", "to": "slow", "data": {"seq": seq, "pad": pad}}))
                .await;
            rid_of.insert(rid, seq);
            seq += 1;
        }
        replies.extend(sender.drain_for(2).await);
        if after_cut.is_none() {
            let m = b.http_get("/metrics").await;
            if m.contains("peerwire_closes_total{code=\"4003\"} 1") {
                after_cut = Some(seq);
            }
        }
        assert!(seq < 20_000, "never cut off");
    }
    let (before, code) = slow.drain_until_closed().await;
    assert_eq!(code.map(|c| c.0), Some(4003), "cut off as a slow consumer");
    let mut resumed = Client::connect(&b.url()).await;
    let r = resumed
        .request(json!({"type": "register", "id": "slow", "resumeToken": token}))
        .await;
    assert_eq!(r["resumed"], true, "{r}");
    let after = resumed.drain_for(500).await;
    replies.extend(sender.drain_for(500).await);
    let delivered: Vec<u64> = before
        .iter()
        .chain(after.iter())
        .filter(|m| m["type"] == "signal")
        .map(|m| m["data"]["seq"].as_u64().unwrap())
        .collect();
    let refused: std::collections::BTreeSet<u64> = replies
        .iter()
        .filter(|m| m["type"] == "error")
        .map(|m| rid_of[&m["rid"].as_u64().unwrap()])
        .collect();
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    for n in 0..seq {
        let got = delivered.binary_search(&n).is_ok();
        assert!(
            got != refused.contains(&n),
            "signal {n} of {seq}: delivered {got}, refused {} ({} delivered before the cut, {} after)",
            refused.contains(&n),
            before.len(),
            after.len()
        );
    }
    assert!(!refused.is_empty() && !after.is_empty());
    b.stop().await;
}

/// A WebSocket opened by hand on a TCP stream, for frames no library sends.
async fn raw_socket(b: &Broker) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b.addr
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// One frame: `first` is FIN, RSV bits and opcode; masked with a zero key
/// unless `masked` is false.
fn raw_frame(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 65536);
    let mut f = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        f.push(mask_bit | payload.len() as u8);
    } else {
        f.push(mask_bit | 126);
        f.extend((payload.len() as u16).to_be_bytes());
    }
    if masked {
        f.extend([0, 0, 0, 0]);
    }
    f.extend(payload);
    f
}

/// The code of the close frame the broker answers with (`None`: the
/// connection ended without one).
async fn close_code_after(b: &Broker, frames: &[Vec<u8>]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = raw_socket(b).await;
    for f in frames {
        s.write_all(f).await.unwrap();
    }
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    // Skip any ping frames; find the close frame (opcode 8).
    let mut at = 0;
    while at + 2 <= got.len() {
        let (op, len) = (got[at] & 0x0f, (got[at + 1] & 0x7f) as usize);
        if op == 8 && len >= 2 && at + 4 <= got.len() {
            return Some(u16::from_be_bytes([got[at + 2], got[at + 3]]));
        }
        at += 2 + len;
    }
    None
}

#[tokio::test]
async fn framing_violations_are_closed_with_the_rfc_6455_codes() {
    let b = Broker::start(&[]).await;
    let text = |payload: &[u8]| raw_frame(0x81, true, payload);
    for (what, frames, code) in [
        (
            "text that is not UTF-8",
            vec![text(&[0xff, 0xfe, 0x80])],
            1007,
        ),
        (
            "an unmasked frame",
            vec![raw_frame(0x81, false, b"{}")],
            1002,
        ),
        ("a reserved opcode", vec![raw_frame(0x83, true, b"x")], 1002),
        ("an RSV bit", vec![raw_frame(0xc1, true, b"{}")], 1002),
        (
            "a ping over 125 bytes",
            vec![raw_frame(0x89, true, &[0; 200])],
            1002,
        ),
        (
            "a continuation with nothing to continue",
            vec![raw_frame(0x80, true, b"x")],
            1002,
        ),
    ] {
        assert_eq!(close_code_after(&b, &frames).await, Some(code), "{what}");
    }
    // A well-formed frame on the same kind of socket is answered.
    let mut ok = raw_socket(&b).await;
    tokio::io::AsyncWriteExt::write_all(&mut ok, &text(br#"{"type":"ping","rid":1}"#))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::io::AsyncReadExt::read(&mut ok, &mut buf)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("pong"));
    b.stop().await;
}

/// Whether the broker ends `s` within `limit` (EOF or reset), reading
/// whatever it sends first.
async fn ended_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn connections_that_never_speak_are_dropped_at_the_handshake_deadline() {
    use tokio::io::AsyncWriteExt;
    let b = Broker::start(&["--handshake-timeout-ms", "400"]).await;
    // Silent from the start; and silent after an answered request (an
    // idle keep-alive connection).
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(tokio::net::TcpStream::connect(b.addr).await.unwrap());
    }
    let mut idle = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for s in silent.iter_mut().chain([&mut idle]) {
        assert!(
            ended_within(s, Duration::from_secs(3)).await,
            "a silent connection is still open"
        );
    }
    // An upgraded connection is not held to the deadline: heartbeats are
    // its liveness check.
    let mut ws = b.client().await;
    ws.request(json!({"type": "register", "id": "alice"})).await;
    ws.quiet_for(800).await;
    assert_eq!(ws.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}

#[tokio::test]
async fn connections_waiting_to_upgrade_are_bounded() {
    let b = Broker::start(&["--max-handshakes", "3", "--handshake-timeout-ms", "10000"]).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(b.addr).await.unwrap());
    }
    // The fourth is dropped at once rather than held.
    let mut extra = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    assert!(ended_within(&mut extra, Duration::from_secs(2)).await);
    // A place comes free when a silent one goes.
    drop(silent.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // (The broker may not have seen that socket end yet: try until it has.)
    let mut c = loop {
        if let Ok(c) = Client::try_connect_with(b.url()).await {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}

#[tokio::test]
async fn a_flood_past_the_rate_limit_gets_its_4002_close_frame_not_a_reset() {
    use tokio::io::AsyncWriteExt;
    let b = Broker::start(&["--rate-limit", "5", "--rate-burst", "10"]).await;
    for _ in 0..5 {
        let s = raw_socket(&b).await;
        // Far past the burst.
        let mut burst = Vec::new();
        for rid in 0..400 {
            burst.extend(raw_frame(
                0x81,
                true,
                format!(r#"{{"type":"ping","rid":{rid}}}"#).as_bytes(),
            ));
        }
        // The client keeps sending while the broker closes (as an SDK with
        // a full outbox does), so input is unread when the broker ends it.
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move { while wr.write_all(&burst).await.is_ok() {} });
        assert_eq!(close_code_of(&mut rd).await, Some(4002));
        writer.abort();
    }
    b.stop().await;
}

/// Reads `s` to its end; the code of the close frame among what came.
async fn close_code_of(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let mut at = 0;
    while at + 2 <= got.len() {
        let (op, len7) = (got[at] & 0x0f, (got[at + 1] & 0x7f) as usize);
        let (len, head) = match len7 {
            126 if at + 4 <= got.len() => {
                (u16::from_be_bytes([got[at + 2], got[at + 3]]) as usize, 4)
            }
            126 | 127 => return None,
            n => (n, 2),
        };
        if op == 8 && len >= 2 && at + head + 2 <= got.len() {
            return Some(u16::from_be_bytes([got[at + head], got[at + head + 1]]));
        }
        at += head + len;
    }
    None
}

#[tokio::test]
async fn a_flood_of_websocket_pings_is_rate_limited_like_messages() {
    use tokio::io::AsyncWriteExt;
    let b = Broker::start(&["--rate-limit", "5", "--rate-burst", "10"]).await;
    let s = raw_socket(&b).await;
    let (mut rd, mut wr) = s.into_split();
    let pings: Vec<u8> = (0..200).flat_map(|_| raw_frame(0x89, true, b"x")).collect();
    let writer = tokio::spawn(async move { while wr.write_all(&pings).await.is_ok() {} });
    assert_eq!(close_code_of(&mut rd).await, Some(4002));
    writer.abort();
    // A few pings, within the budget, are answered and cost nothing more.
    let mut ok = raw_socket(&b).await;
    ok.write_all(&raw_frame(0x89, true, b"hi")).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::io::AsyncReadExt::read(&mut ok, &mut buf)
        .await
        .unwrap();
    assert_eq!(
        (buf[0] & 0x0f, &buf[2..n]),
        (0xA, &b"hi"[..]),
        "a pong with the ping's payload"
    );
    b.stop().await;
}
