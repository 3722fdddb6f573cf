//! smoke's hub protocol at `/smoke`, driven by a client written from what
//! smoke-node's `NetworkHub` sends and expects (a `binding` first, then
//! `forward {from, to, data}` both ways), on an in-process broker: two
//! smoke nodes, a smoke node and a native client, the limits, auth and
//! metrics of `/ws`, and a network of brokers on a real `redis-server`.
//! smoke-node's own client in Chromium is in tests/e2e/smoke.test.mjs.

mod support;

use serde_json::{Value, json};
use support::{Broker, Client, Redis, http_get, network_broker};

/// A node's hub connection: the client and the address it was bound to.
struct Node {
    c: Client,
    address: String,
    configuration: Value,
}

impl Node {
    async fn connect(b: &Broker) -> Node {
        Self::connect_to(&format!("ws://{}/smoke", b.addr)).await
    }

    async fn connect_to(url: &str) -> Node {
        let mut c = Client::connect(url).await;
        let binding = c.recv().await;
        assert_eq!(binding["type"], "binding", "{binding}");
        let address = binding["address"].as_str().expect("an address").to_string();
        Node {
            c,
            address,
            configuration: binding["configuration"].clone(),
        }
    }

    /// A forward as smoke's client writes it (its own `from`).
    async fn forward(&mut self, to: &str, data: Value) {
        let msg = json!({"to": to, "from": self.address, "type": "forward", "data": data});
        self.c.send_raw(&msg.to_string()).await;
    }
}

#[tokio::test]
async fn two_nodes_get_addresses_and_ice_configuration_and_forward_both_ways() {
    let b = Broker::start(&[
        "--ice-server",
        "stun:stun.example.org:3478",
        "--ice-server",
        "turn:turn.example.org:3478",
        "--turn-secret",
        "smoke-turn-secret",
    ])
    .await;
    let mut a = Node::connect(&b).await;
    let mut z = Node::connect(&b).await;
    assert_ne!(a.address, z.address);
    // The configuration is an RTCConfiguration: the broker's ICE servers,
    // TURN credentials minted for this node's address.
    let ice = a.configuration["iceServers"]
        .as_array()
        .expect("iceServers");
    assert_eq!(ice[0], json!({"urls": ["stun:stun.example.org:3478"]}));
    assert_eq!(ice[1]["urls"], json!(["turn:turn.example.org:3478"]));
    let username = ice[1]["username"].as_str().expect("a TURN username");
    assert!(username.ends_with(&format!(":{}", a.address)), "{username}");
    assert!(ice[1]["credential"].is_string(), "{ice:?}");
    // An offer and its answer: `from` is the sender's address, whatever it
    // wrote; `to` is the receiver's.
    let offer = json!({"type": "offer", "sdp": {"type": "offer", "sdp": "v=0"}, "loopback": 0});
    let spoofed = json!({"type": "forward", "from": "0.0.0.9", "to": z.address, "data": offer});
    a.c.send_raw(&spoofed.to_string()).await;
    assert_eq!(
        z.c.recv().await,
        json!({"type": "forward", "from": a.address, "to": z.address, "data": offer})
    );
    let answer = json!({"type": "answer", "sdp": {"type": "answer", "sdp": "v=0"}, "loopback": 0});
    let to = a.address.clone();
    z.forward(&to, answer.clone()).await;
    assert_eq!(
        a.c.recv().await,
        json!({"type": "forward", "from": z.address, "to": a.address, "data": answer})
    );
    // A forward to an address nobody holds is dropped, as smoke's hub drops
    // it; what follows still arrives, in order, and nothing else does.
    a.forward("0.0.0.77", json!("lost")).await;
    for n in 0..20 {
        let to = z.address.clone();
        a.forward(&to, json!({"type": "candidate", "n": n})).await;
    }
    for n in 0..20 {
        assert_eq!(z.c.recv().await["data"]["n"], json!(n));
    }
    a.c.quiet_for(200).await;
    // No resume in smoke's protocol: a node that leaves is gone at once,
    // for the hub's other clients too.
    let gone = z.address.clone();
    z.c.close_normally().await;
    let mut native = b.client().await;
    native
        .request(json!({"type": "register", "id": "watcher"}))
        .await;
    let found = native.request(json!({"type": "find", "id": gone})).await;
    assert_eq!(found["online"], json!(false), "{found}");
    let metrics = http_get(b.addr, "/metrics").await;
    let line = "peerwire_errors_total{code=\"unknown-peer\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
    b.stop().await;
}

#[tokio::test]
async fn smoke_nodes_and_native_clients_signal_each_other() {
    let b = Broker::start(&[]).await;
    let mut node = Node::connect(&b).await;
    let (mut native, _) = b.registered("native-1").await;
    let found = native
        .request(json!({"type": "find", "id": node.address}))
        .await;
    assert_eq!(found["online"], json!(true), "{found}");
    node.forward("native-1", json!({"type": "offer"})).await;
    assert_eq!(
        native.expect("signal").await,
        json!({"type": "signal", "from": node.address, "data": {"type": "offer"}})
    );
    native
        .send(json!({"type": "signal", "to": node.address, "data": {"type": "answer"}}))
        .await;
    assert_eq!(
        node.c.recv().await,
        json!({"type": "forward", "from": "native-1", "to": node.address,
               "data": {"type": "answer"}})
    );
    b.stop().await;
}

#[tokio::test]
async fn bad_frames_close_with_1007_and_the_limits_of_ws_hold() {
    let b = Broker::start(&["--rate-limit", "5", "--rate-burst", "5"]).await;
    // Not JSON, not an object, binary: 1007 (smoke's hub closes too).
    for bad in ["{\"type\": \"forward\"", "[]"] {
        let mut n = Node::connect(&b).await;
        n.c.send_raw_lossy(bad).await;
        let (got, close) = n.c.drain_until_closed().await;
        assert_eq!(
            close,
            Some((1007, "invalid frame payload".to_string())),
            "{bad}: {got:?}"
        );
    }
    let mut n = Node::connect(&b).await;
    n.c.send_binary_lossy(vec![1, 2, 3]).await;
    assert_eq!(n.c.close_frame().await.map(|c| c.0), Some(1007));
    // Another type, or a forward missing its parts: ignored, still usable.
    let mut a = Node::connect(&b).await;
    let mut z = Node::connect(&b).await;
    a.c.send_raw(r#"{"type":"binding","address":"0.0.0.1"}"#)
        .await;
    a.c.send_raw(r#"{"type":"forward","to":7,"data":1}"#).await;
    let to = z.address.clone();
    a.c.send_raw(&json!({"type": "forward", "to": to}).to_string())
        .await;
    a.forward(&to, json!("after")).await;
    assert_eq!(z.c.recv().await["data"], json!("after"));
    // 1009 for a frame over --max-frame-bytes.
    let to = z.address.clone();
    a.forward(&to, json!("x".repeat(70_000))).await;
    assert_eq!(a.c.close_frame().await.map(|c| c.0), Some(1009));
    // 4002 past the message rate.
    let mut fast = Node::connect(&b).await;
    for n in 0..8 {
        let to = z.address.clone();
        let msg = json!({"type": "forward", "to": to, "data": n});
        fast.c.send_raw_lossy(&msg.to_string()).await;
    }
    assert_eq!(fast.c.close_frame().await.map(|c| c.0), Some(4002));
    let got = z.c.drain_for(300).await;
    assert_eq!(got.len(), 5, "the first five went through: {got:?}");
    let metrics = http_get(b.addr, "/metrics").await;
    for line in [
        "peerwire_closes_total{code=\"1007\"} 3",
        "peerwire_closes_total{code=\"1009\"} 1",
        "peerwire_closes_total{code=\"4002\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    b.stop().await;
}

#[tokio::test]
async fn a_broker_that_requires_tokens_wants_one_on_smoke_too() {
    const SECRET: &str = "smoke-secret-smoke-secret-smoke-secret";
    let b = Broker::start(&["--auth-secret", SECRET, "--require-token"]).await;
    let mut anonymous = Client::connect(&format!("ws://{}/smoke", b.addr)).await;
    let (got, close) = anonymous.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(4007), "{got:?}");
    assert!(got.is_empty(), "no binding without a token: {got:?}");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = support::mint_token(SECRET, &json!({"exp": exp}));
    let node = Node::connect_to(&format!("ws://{}/smoke?token={token}", b.addr)).await;
    assert!(!node.address.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn nodes_on_two_brokers_of_a_network_forward_to_each_other() {
    let redis = Redis::start();
    let mut brokers = Vec::new();
    for _ in 0..2 {
        brokers.push(network_broker(&redis, &[]).await);
    }
    let mut a = Node::connect(&brokers[0]).await;
    let mut z = Node::connect(&brokers[1]).await;
    let to = z.address.clone();
    a.forward(&to, json!("offer")).await;
    assert_eq!(
        z.c.recv().await,
        json!({"type": "forward", "from": a.address, "to": z.address, "data": "offer"})
    );
    let to = a.address.clone();
    z.forward(&to, json!("answer")).await;
    assert_eq!(a.c.recv().await["data"], json!("answer"));
    for b in brokers {
        b.stop().await;
    }
}
