//! The broker's relay, driven by real WebSocket clients against a real
//! broker on a loopback port-0 listener: two ids that both ask for it get
//! binary frames forwarded between them, within the `--relay-*` caps.

mod support;

use peerwire::protocol::relay::{MAX_RELAY_PAYLOAD, encode};
use serde_json::{Value, json};
use support::{Broker, Client};

/// Alice and bob, each having asked to relay with the other; every reply
/// and `relay-ready` already read.
async fn paired(b: &Broker) -> (Client, Client) {
    let (mut alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    assert_eq!(
        alice.request(json!({"type": "relay", "to": "bob"})).await["type"],
        "ok"
    );
    bob.send(json!({"type": "relay", "to": "alice"})).await;
    bob.expect("relay-ready").await;
    bob.expect("ok").await;
    alice.expect("relay-ready").await;
    (alice, bob)
}

/// The next message, which must be `relay-closed` about `about` with
/// `code`; returns its message.
async fn relay_closed(c: &mut Client, about: &str, code: &str) -> String {
    let m = c.expect("relay-closed").await;
    assert_eq!(
        (m["id"].as_str(), m["code"].as_str()),
        (Some(about), Some(code)),
        "{m}"
    );
    m["message"].as_str().unwrap().to_string()
}

fn seq(n: u32) -> Vec<u8> {
    let mut p = n.to_be_bytes().to_vec();
    p.extend([0x5a; 96]);
    p
}

#[tokio::test]
async fn both_sides_must_agree_before_anything_is_forwarded() {
    let b = Broker::start(&[]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    let ok = alice.request(json!({"type": "relay", "to": "bob"})).await;
    assert_eq!(ok["type"], "ok");
    // Alice alone: her frame is refused, bob hears nothing at all.
    alice.send_binary(encode("bob", b"too early")).await;
    let why = relay_closed(&mut alice, "bob", "relay-limit").await;
    assert!(why.contains("no relay with \"bob\" is ready"), "{why}");
    assert!(bob.no_binary_for(200).await.is_empty());

    bob.send(json!({"type": "relay", "to": "alice"})).await;
    let ready = bob.expect("relay-ready").await;
    assert_eq!(
        (ready["id"].as_str(), ready["rate"].as_u64()),
        (Some("alice"), Some(4 << 20))
    );
    bob.expect("ok").await;
    let ready = alice.expect("relay-ready").await;
    assert_eq!(ready["id"], "bob");

    alice.send_binary(encode("bob", b"hello")).await;
    assert_eq!(bob.recv_binary().await, encode("alice", b"hello"));

    // Asked again: relay-ready again, to the asker only.
    alice.send(json!({"type": "relay", "to": "bob"})).await;
    alice.expect("relay-ready").await;
    alice.expect("ok").await;
    assert!(bob.no_binary_for(200).await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn a_thousand_frames_each_way_arrive_in_order_past_the_message_rate_limit() {
    // Relay frames the broker forwards are paced by bytes, not by the 50
    // messages a second (burst 200) a connection may send.
    let b = Broker::start(&[]).await;
    let (mut alice, mut bob) = paired(&b).await;
    alice
        .send_binary_burst((0..1000).map(|n| encode("bob", &seq(n))).collect())
        .await;
    bob.send_binary_burst((0..1000).map(|n| encode("alice", &seq(n + 5000))).collect())
        .await;
    for n in 0..1000 {
        assert_eq!(
            bob.recv_binary().await,
            encode("alice", &seq(n)),
            "frame {n}"
        );
        assert_eq!(
            alice.recv_binary().await,
            encode("bob", &seq(n + 5000)),
            "frame {n}"
        );
    }
    // Both connections are still open and answer requests.
    assert_eq!(alice.request(json!({"type": "ping"})).await["type"], "pong");
    assert_eq!(bob.request(json!({"type": "ping"})).await["type"], "pong");
    let metrics = b.http_get("/metrics").await;
    assert!(metrics.contains("peerwire_relay_pairs 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("peerwire_relayed_bytes_total {}", 2000 * 100)),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn bad_binary_frames_are_named_and_the_connection_stays_usable() {
    let b = Broker::start(&[]).await;
    let (mut alice, mut bob) = paired(&b).await;
    let oversize = encode("bob", &vec![0; MAX_RELAY_PAYLOAD + 1]);
    for (frame, what) in [
        (vec![], "an empty relay frame"),
        (vec![200, b'b'], "shorter than its id"),
        (vec![3, 0xff, 0xfe, 0xfd], "not UTF-8"),
        (vec![3, b'b', b' ', b'b'], "not a peer id"),
        (oversize, "over 64 KiB"),
    ] {
        alice.send_binary(frame).await;
        let m = alice.expect("error").await;
        assert_eq!(m["code"], "bad-message", "{m}");
        assert!(m["message"].as_str().unwrap().contains(what), "{what}: {m}");
    }
    assert!(bob.no_binary_for(200).await.is_empty());
    alice.send_binary(encode("bob", b"still fine")).await;
    assert_eq!(bob.recv_binary().await, encode("alice", b"still fine"));
    // A frame for an id alice has no relay with.
    alice.send_binary(encode("carol", b"x")).await;
    relay_closed(&mut alice, "carol", "relay-limit").await;
    // And one before registering.
    let mut anon = b.client().await;
    anon.send_binary(encode("bob", b"x")).await;
    assert_eq!(anon.expect("error").await["code"], "not-registered");
    b.stop().await;
}

#[tokio::test]
async fn sending_faster_than_the_relay_rate_ends_the_pair_for_both() {
    let b = Broker::start(&["--relay-rate", "65536"]).await;
    let (mut alice, mut bob) = paired(&b).await;
    // One second's burst is 65 536 bytes: the second 40 000 passes it.
    alice
        .send_binary_burst((0..4).map(|_| encode("bob", &[7; 40_000])).collect())
        .await;
    let why = relay_closed(&mut alice, "bob", "relay-limit").await;
    assert!(why.contains("--relay-rate (65536 bytes/s)"), "{why}");
    assert_eq!(bob.recv_binary().await, encode("alice", &[7; 40_000]));
    let why = relay_closed(&mut bob, "alice", "relay-limit").await;
    assert!(why.contains("--relay-rate"), "{why}");
    // The two frames after the end are answered, not forwarded.
    relay_closed(&mut alice, "bob", "relay-limit").await;
    relay_closed(&mut alice, "bob", "relay-limit").await;
    assert!(bob.no_binary_for(200).await.is_empty());
    let metrics = b.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"peerwire_relay_ends_total{code="relay-limit",cause="rate"} 1"#),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn the_byte_cap_ends_the_pair_for_both() {
    let b = Broker::start(&["--relay-max-bytes", "100000"]).await;
    let (mut alice, mut bob) = paired(&b).await;
    alice.send_binary(encode("bob", &[1; 60_000])).await;
    assert_eq!(bob.recv_binary().await.len(), 1 + 5 + 60_000);
    bob.send_binary(encode("alice", &[2; 40_000])).await;
    assert_eq!(alice.recv_binary().await.len(), 1 + 3 + 40_000);
    // 100 000 carried, both ways together: one byte more ends it.
    alice.send_binary(encode("bob", &[3])).await;
    let why = relay_closed(&mut alice, "bob", "relay-limit").await;
    assert!(why.contains("--relay-max-bytes (100000 bytes)"), "{why}");
    relay_closed(&mut bob, "alice", "relay-limit").await;
    b.stop().await;
}

#[tokio::test]
async fn more_pairs_than_allowed_are_refused() {
    let b = Broker::start(&["--relay-max-pairs", "1"]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (_bob, _) = b.registered("bob").await;
    let (_carol, _) = b.registered("carol").await;
    alice.request(json!({"type": "relay", "to": "bob"})).await;
    let err = alice
        .request_err(json!({"type": "relay", "to": "carol"}), "relay-refused")
        .await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("--relay-max-pairs"),
        "{err}"
    );
    alice
        .request(json!({"type": "relay-end", "to": "bob"}))
        .await;
    assert_eq!(
        alice.request(json!({"type": "relay", "to": "carol"})).await["type"],
        "ok"
    );
    b.stop().await;
}

#[tokio::test]
async fn relay_off_refuses_every_relay() {
    let b = Broker::start(&["--relay", "off"]).await;
    let (mut alice, _) = b.registered("alice").await;
    let (_bob, _) = b.registered("bob").await;
    let err = alice
        .request_err(json!({"type": "relay", "to": "bob"}), "relay-refused")
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("--relay off"),
        "{err}"
    );
    alice.send_binary(encode("bob", b"x")).await;
    let why = relay_closed(&mut alice, "bob", "relay-limit").await;
    assert!(why.contains("--relay off"), "{why}");
    b.stop().await;
}

#[tokio::test]
async fn requests_naming_no_one_to_relay_with_are_refused() {
    let b = Broker::start(&[]).await;
    let (mut alice, _) = b.registered("alice").await;
    alice
        .request_err(json!({"type": "relay", "to": "alice"}), "bad-message")
        .await;
    alice
        .request_err(json!({"type": "relay", "to": "nobody"}), "unknown-peer")
        .await;
    alice
        .request_err(json!({"type": "relay", "to": "bad id"}), "invalid-id")
        .await;
    alice
        .request_err(json!({"type": "relay-end", "to": "bad id"}), "invalid-id")
        .await;
    let mut anon = b.client().await;
    anon.request_err(json!({"type": "relay", "to": "alice"}), "not-registered")
        .await;
    b.stop().await;
}

#[tokio::test]
async fn relay_end_and_a_normal_close_tell_the_other_side() {
    let b = Broker::start(&[]).await;
    let (mut alice, mut bob) = paired(&b).await;
    assert_eq!(
        bob.request(json!({"type": "relay-end", "to": "alice"}))
            .await["type"],
        "ok"
    );
    let why = relay_closed(&mut alice, "bob", "peer-gone").await;
    assert_eq!(why, "\"bob\" ended the relay");
    alice.send_binary(encode("bob", b"x")).await;
    relay_closed(&mut alice, "bob", "relay-limit").await;

    // Again, then bob leaves for good (1000).
    alice.request(json!({"type": "relay", "to": "bob"})).await;
    bob.send(json!({"type": "relay", "to": "alice"})).await;
    bob.expect("relay-ready").await;
    bob.expect("ok").await;
    alice.expect("relay-ready").await;
    bob.close_normally().await;
    let why = relay_closed(&mut alice, "bob", "peer-gone").await;
    assert_eq!(why, "\"bob\" went offline");
    b.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_ends_the_pair_and_the_id_hears_it_when_it_resumes() {
    let b = Broker::start(&[]).await;
    let (mut alice, token) = b.registered("alice").await;
    let (mut bob, _) = b.registered("bob").await;
    alice.request(json!({"type": "relay", "to": "bob"})).await;
    bob.send(json!({"type": "relay", "to": "alice"})).await;
    bob.expect("relay-ready").await;
    bob.expect("ok").await;
    alice.expect("relay-ready").await;

    alice.vanish();
    let why = relay_closed(&mut bob, "alice", "peer-gone").await;
    assert!(why.contains("lost its connection"), "{why}");
    // Inside alice's grace window frames for her are not queued.
    bob.send_binary(encode("alice", b"x")).await;
    relay_closed(&mut bob, "alice", "relay-limit").await;

    let mut alice = b.client().await;
    let r = alice
        .request(json!({"type": "register", "id": "alice", "resumeToken": token}))
        .await;
    assert_eq!(r["resumed"], true);
    let why = relay_closed(&mut alice, "bob", "peer-gone").await;
    assert!(why.contains("dropped"), "{why}");

    // Both ask again and the relay works.
    alice.request(json!({"type": "relay", "to": "bob"})).await;
    bob.send(json!({"type": "relay", "to": "alice"})).await;
    bob.expect("relay-ready").await;
    bob.expect("ok").await;
    alice.expect("relay-ready").await;
    bob.send_binary(encode("alice", b"back")).await;
    assert_eq!(alice.recv_binary().await, encode("bob", b"back"));
    b.stop().await;
}

#[tokio::test]
async fn relay_metrics_count_pairs_bytes_and_ends() {
    let b = Broker::start(&[]).await;
    let (mut alice, mut bob) = paired(&b).await;
    let (mut carol, _) = b.registered("carol").await;
    carol.request(json!({"type": "relay", "to": "alice"})).await;
    alice.send_binary(encode("bob", &[0; 1000])).await;
    bob.recv_binary().await;
    let metrics = b.http_get("/metrics").await;
    for line in [
        "peerwire_relay_pairs 1",
        "peerwire_relay_pending 1",
        "peerwire_relayed_bytes_total 1000",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    alice
        .request(json!({"type": "relay-end", "to": "bob"}))
        .await;
    let _: Value = bob.expect("relay-closed").await;
    let metrics = b.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"peerwire_relay_ends_total{code="peer-gone",cause="ended"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("peerwire_relay_pairs 0"), "{metrics}");
    b.stop().await;
}
