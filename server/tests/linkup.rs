//! linkup's broker protocol at `/linkup`, driven by a client written from
//! linkup's protocol table (requests `{id, message: {type, ...}}` answered
//! by `{id, message, error}`; `signal` notifications both ways), on an
//! in-process broker: two linkup clients, a native client, the limits, auth
//! and metrics of `/ws`, and a network of brokers on a real `redis-server`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Broker, Client, Redis, http_get, network_broker};

/// A client of linkup's protocol.
struct Linkup {
    c: Client,
    next: u64,
}

impl Linkup {
    async fn connect(b: &Broker) -> Linkup {
        Self::connect_to(&format!("ws://{}/linkup", b.addr)).await
    }

    async fn connect_to(url: &str) -> Linkup {
        Linkup {
            c: Client::connect(url).await,
            next: 1,
        }
    }

    /// Sends `message` as a request; returns the answer's `message` or its
    /// `error`, after checking the answer carries the request's `id`.
    async fn request(&mut self, message: Value) -> Result<Value, String> {
        let id = format!("0000-{:04}", self.next);
        self.next += 1;
        let envelope = json!({"id": id, "message": message});
        self.c.send_raw(&envelope.to_string()).await;
        let answer = self.c.recv().await;
        assert_eq!(answer["id"], json!(id), "answer out of order: {answer}");
        match &answer["error"] {
            Value::Null => Ok(answer["message"].clone()),
            Value::String(e) => {
                assert_eq!(answer["message"], Value::Null, "{answer}");
                Err(e.clone())
            }
            other => panic!("error is a string or null, got {other}"),
        }
    }

    async fn register(&mut self, id: &str) -> Result<Value, String> {
        self.request(json!({"type": "register", "id": id})).await
    }

    async fn find(&mut self, id: &str) -> Result<Value, String> {
        self.request(json!({"type": "find", "id": id})).await
    }

    /// A signal notification (no `id`, no answer).
    async fn signal(&mut self, from: &str, to: &str, signal: Value) {
        let message = json!({"type": "signal", "from": from, "to": to, "signal": signal});
        self.c
            .send_raw(&json!({ "message": message }).to_string())
            .await;
    }

    /// The next message from the broker, which must be a notification.
    async fn notification(&mut self) -> Value {
        let n = self.c.recv().await;
        assert!(n.get("id").is_none(), "a notification has no id: {n}");
        n
    }
}

/// An error string's code (the part before the first `: `).
fn code(error: &str) -> &str {
    error.split_once(": ").map_or(error, |(code, _)| code)
}

#[tokio::test]
async fn two_linkup_clients_register_find_each_other_and_exchange_signals() {
    let b = Broker::start(&[]).await;
    let mut alice = Linkup::connect(&b).await;
    let mut bob = Linkup::connect(&b).await;
    assert_eq!(
        alice.request(json!({"type": "ping"})).await,
        Ok(json!("pong"))
    );
    assert_eq!(alice.register("alice").await, Ok(json!("alice")));
    assert_eq!(bob.register("bob").await, Ok(json!("bob")));
    // Registering the same id again on the same connection changes nothing.
    assert_eq!(bob.register("bob").await, Ok(json!("bob")));
    assert_eq!(alice.find("bob").await, Ok(json!("bob")));
    assert_eq!(bob.find("alice").await, Ok(json!("alice")));
    assert_eq!(alice.find("nobody").await, Ok(Value::Null));
    // An offer and its answer; `from` is the sender's registered id,
    // whatever the sender wrote in it.
    let offer = r#"{"type":"offer","sdp":"v=0 ..."}"#;
    alice.signal("mallory", "bob", json!(offer)).await;
    assert_eq!(
        bob.notification().await,
        json!({"message": {"type": "signal", "from": "alice", "to": "bob", "signal": offer}})
    );
    let answer = r#"{"type":"answer","sdp":"v=0 ..."}"#;
    bob.signal("bob", "alice", json!(answer)).await;
    assert_eq!(
        alice.notification().await,
        json!({"message": {"type": "signal", "from": "bob", "to": "alice", "signal": answer}})
    );
    // Signals keep their order.
    for n in 0..20 {
        alice
            .signal("alice", "bob", json!(format!("candidate {n}")))
            .await;
    }
    for n in 0..20 {
        let got = bob.notification().await;
        assert_eq!(got["message"]["signal"], json!(format!("candidate {n}")));
    }
    // No resume in linkup's protocol: a closed client's id is free at once,
    // also when it vanished without a close frame.
    alice.c.close_normally().await;
    let mut again = Linkup::connect(&b).await;
    assert_eq!(again.register("alice").await, Ok(json!("alice")));
    bob.c.vanish();
    let mut bob_again = Linkup::connect(&b).await;
    let mut registered = bob_again.register("bob").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    // (The broker learns of a vanished socket when its read fails: retry
    // until it has, within the message rate, rather than wait a fixed time.)
    while registered.as_ref().is_err_and(|e| code(e) == "id-taken") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        registered = bob_again.register("bob").await;
    }
    assert_eq!(registered, Ok(json!("bob")));
    b.stop().await;
}

#[tokio::test]
async fn a_taken_id_an_unknown_id_and_bad_input_get_named_errors() {
    let b = Broker::start(&[]).await;
    let mut alice = Linkup::connect(&b).await;
    let mut other = Linkup::connect(&b).await;
    // Before registering: find needs an id, ping does not.
    let e = other.find("alice").await.unwrap_err();
    assert_eq!(code(&e), "not-registered", "{e}");
    assert_eq!(alice.register("alice").await, Ok(json!("alice")));
    let e = other.register("alice").await.unwrap_err();
    assert_eq!(code(&e), "id-taken", "{e}");
    let e = other.register("not an id!").await.unwrap_err();
    assert_eq!(code(&e), "invalid-id", "{e}");
    let e = alice.register("alice-2").await.unwrap_err();
    assert_eq!(code(&e), "already-registered", "{e}");
    // A signal to an id nobody holds: an error without id (the signal had
    // none), and nothing for anyone else.
    alice.signal("alice", "nobody", json!("offer")).await;
    let n = alice.notification().await;
    assert_eq!(n["message"], Value::Null);
    assert_eq!(code(n["error"].as_str().unwrap()), "unknown-peer", "{n}");
    assert!(n["error"].as_str().unwrap().contains("nobody"), "{n}");
    // Bad input, each answered in order and named.
    let cases: [(&str, Option<&str>, &str); 7] = [
        ("{\"id\": 1, \"message\"", None, "bad-json"),
        ("42", None, "bad-message"),
        (r#"{"id":"r1"}"#, Some("r1"), "bad-message"),
        (
            r#"{"id":"r2","message":{"type":"find"}}"#,
            Some("r2"),
            "bad-message",
        ),
        (
            r#"{"id":"r3","message":{"type":"connect","to":"bob"}}"#,
            Some("r3"),
            "unknown-type",
        ),
        (
            r#"{"message":{"type":"signal","signal":"x"}}"#,
            None,
            "bad-message",
        ),
        (
            r#"{"message":{"type":"signal","to":"alice"}}"#,
            None,
            "bad-message",
        ),
    ];
    for (text, id, want) in cases {
        alice.c.send_raw(text).await;
        let answer = alice.c.recv().await;
        assert_eq!(
            answer.get("id").and_then(Value::as_str),
            id,
            "{text}: {answer}"
        );
        assert_eq!(answer["message"], Value::Null, "{text}: {answer}");
        let error = answer["error"].as_str().expect("a string error");
        assert_eq!(code(error), want, "{text}: {error}");
    }
    alice.c.send_binary(vec![1, 2, 3]).await;
    let answer = alice.notification().await;
    assert_eq!(code(answer["error"].as_str().unwrap()), "bad-message");
    // What looks like a response from the client is not answered (the
    // broker sends no requests, and answering would start an echo).
    alice
        .c
        .send_raw(r#"{"id":null,"message":null,"error":"no handler"}"#)
        .await;
    // Still usable, and nothing came before this answer.
    assert_eq!(
        alice.request(json!({"type": "ping"})).await,
        Ok(json!("pong"))
    );
    let metrics = http_get(b.addr, "/metrics").await;
    for line in [
        "peerwire_errors_total{code=\"id-taken\"} 1",
        "peerwire_errors_total{code=\"unknown-peer\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    b.stop().await;
}

#[tokio::test]
async fn linkup_and_native_clients_signal_each_other() {
    let b = Broker::start(&[]).await;
    let mut alice = Linkup::connect(&b).await;
    assert_eq!(alice.register("alice").await, Ok(json!("alice")));
    let (mut native, _) = b.registered("native-1").await;
    // They see each other.
    assert_eq!(alice.find("native-1").await, Ok(json!("native-1")));
    let found = native.request(json!({"type": "find", "id": "alice"})).await;
    assert_eq!(found["online"], json!(true), "{found}");
    // linkup's `signal` is the native `data`, both ways.
    alice.signal("alice", "native-1", json!("hello")).await;
    let got = native.expect("signal").await;
    assert_eq!(
        got,
        json!({"type": "signal", "from": "alice", "data": "hello"})
    );
    native
        .send(json!({"type": "signal", "to": "alice", "data": {"sdp": "x"}}))
        .await;
    assert_eq!(
        alice.notification().await,
        json!({"message": {"type": "signal", "from": "native-1", "to": "alice",
                           "signal": {"sdp": "x"}}})
    );
    b.stop().await;
}

#[tokio::test]
async fn the_limits_of_ws_hold_with_answers_in_linkups_shape() {
    let b = Broker::start(&["--rate-limit", "5", "--rate-burst", "5"]).await;
    // 1009 for a frame over --max-frame-bytes, after a `too-big` answer.
    let mut big = Linkup::connect(&b).await;
    let huge = json!({"id": "huge", "message": {"type": "ping", "pad": "x".repeat(70_000)}});
    big.c.send_raw_lossy(&huge.to_string()).await;
    let (got, close) = big.c.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(1009));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["id"], json!("huge"));
    assert_eq!(code(got[0]["error"].as_str().unwrap()), "too-big");
    // 4002 past the message rate, after a `rate-limited` answer for the
    // message refused (and the answers to those before it).
    let mut fast = Linkup::connect(&b).await;
    for n in 0..8 {
        let ping = json!({"id": n, "message": {"type": "ping"}});
        fast.c.send_raw_lossy(&ping.to_string()).await;
    }
    let (got, close) = fast.c.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(4002));
    let last = got.last().expect("answers");
    assert_eq!(
        code(last["error"].as_str().unwrap()),
        "rate-limited",
        "{got:?}"
    );
    let pongs: Vec<&Value> = got.iter().filter(|a| a["message"] == "pong").collect();
    assert_eq!(pongs.len() + 1, got.len(), "{got:?}");
    assert_eq!(last["id"], json!(pongs.len()), "{got:?}");
    // 4006 without a registration within --register-timeout-ms.
    let slow = Broker::start(&["--register-timeout-ms", "200"]).await;
    let mut idle = Linkup::connect(&slow).await;
    assert_eq!(
        idle.request(json!({"type": "ping"})).await,
        Ok(json!("pong"))
    );
    assert_eq!(idle.c.close_frame().await.map(|c| c.0), Some(4006));
    slow.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn protected_ids_need_a_token_on_linkup_too() {
    const SECRET: &str = "linkup-secret-linkup-secret-linkup";
    let mut flags = vec!["--auth-secret", SECRET];
    flags.extend_from_slice(&support::PROTECT_FLAGS);
    let b = Broker::start(&flags).await;
    let mut anonymous = Linkup::connect(&b).await;
    let e = anonymous.register("admin-1").await.unwrap_err();
    assert_eq!(code(&e), "unauthorized", "{e}");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = support::mint_token(SECRET, &json!({"sub": "admin-1", "exp": exp}));
    let url = format!("ws://{}/linkup?token={token}", b.addr);
    let mut admin = Linkup::connect_to(&url).await;
    assert_eq!(admin.register("admin-1").await, Ok(json!("admin-1")));
    b.stop().await;
}

#[tokio::test]
async fn across_a_network_of_brokers_ids_are_unique_found_and_signalled() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let mut alice = Linkup::connect(&b1).await;
    let mut bob = Linkup::connect(&b2).await;
    assert_eq!(alice.register("alice").await, Ok(json!("alice")));
    assert_eq!(bob.register("bob").await, Ok(json!("bob")));
    // The id is the network's: taken on the other broker too.
    let mut thief = Linkup::connect(&b2).await;
    let e = thief.register("alice").await.unwrap_err();
    assert_eq!(code(&e), "id-taken", "{e}");
    assert_eq!(bob.find("alice").await, Ok(json!("alice")));
    assert_eq!(alice.find("bob").await, Ok(json!("bob")));
    assert_eq!(alice.find("nobody").await, Ok(Value::Null));
    alice.signal("alice", "bob", json!("offer")).await;
    assert_eq!(
        bob.notification().await,
        json!({"message": {"type": "signal", "from": "alice", "to": "bob", "signal": "offer"}})
    );
    bob.signal("bob", "alice", json!("answer")).await;
    assert_eq!(
        alice.notification().await["message"]["signal"],
        json!("answer")
    );
    b1.stop().await;
    b2.stop().await;
}
