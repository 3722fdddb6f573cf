//! signal-channel's end points at `/signal-channel/{echo,scuttlebutt,relay}`,
//! driven by stream clients written from signal-channel's README (each
//! WebSocket is one of its streams, each frame a chunk): echo to every
//! stream of a namespace, the writer included; the relay's local/remote
//! header handshake (header-stream's JSON first line); scuttlebutt's
//! replication protocol (digest, updates, "SYNC") with keys that expire;
//! and the limits, auth and metrics of the hub on these paths.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Broker, Redis, WAIT, http_get, network_broker};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One signal-channel stream.
struct Stream {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Text received and not yet taken as lines.
    lines: String,
}

/// What a stream read next.
#[derive(Debug, PartialEq)]
enum Chunk {
    Text(String),
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

impl Stream {
    async fn open(b: &Broker, path: &str) -> Stream {
        Self::open_url(&format!("ws://{}/signal-channel/{path}", b.addr)).await
    }

    async fn open_url(url: &str) -> Stream {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the broker takes the stream");
        Stream {
            ws,
            lines: String::new(),
        }
    }

    async fn write(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn write_binary(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).await.unwrap();
    }

    /// The next chunk (or how the stream ended), within 5 s.
    async fn read(&mut self) -> Chunk {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a chunk within 5 s");
            return match next {
                Some(Ok(Message::Text(t))) => Chunk::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Chunk::Binary(b.to_vec()),
                Some(Ok(Message::Close(f))) => Chunk::Closed(f.map(|f| f.code.into())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Chunk::Closed(None),
            };
        }
    }

    async fn read_text(&mut self) -> String {
        match self.read().await {
            Chunk::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The close code the stream ends with, reading past any chunks.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Chunk::Closed(code) = self.read().await {
                return code;
            }
        }
    }

    /// Asserts nothing arrives for `ms` (for what must not be delivered:
    /// the absence of a chunk can only be seen by waiting).
    async fn nothing_for(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("nothing expected, got {other:?}"),
            }
        }
    }

    /// The next newline-delimited JSON value (scuttlebutt's framing).
    async fn line(&mut self) -> Value {
        loop {
            if let Some(end) = self.lines.find('\n') {
                let line: String = self.lines.drain(..=end).collect();
                return serde_json::from_str(line.trim_end()).expect("a JSON line");
            }
            let t = self.read_text().await;
            self.lines.push_str(&t);
        }
    }

    /// Closes with 1000.
    async fn close(mut self) {
        let frame = CloseFrame {
            code: WsCode::Normal,
            reason: "done".into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.ws.next().await.is_some() {}
        })
        .await;
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[tokio::test]
async fn echo_reaches_every_stream_of_the_namespace_the_writer_included() {
    let b = Broker::start(&[]).await;
    // "optional namespace", percent-encoded in the path. Each stream's own
    // echo tells it is in its namespace (its join is done).
    let mut s1 = Stream::open(&b, "echo/optional%20namespace").await;
    s1.write("s1 here").await;
    assert_eq!(s1.read_text().await, "s1 here");
    let mut s2 = Stream::open(&b, "echo/optional%20namespace").await;
    s2.write("s2 here").await;
    assert_eq!(s2.read_text().await, "s2 here");
    assert_eq!(s1.read_text().await, "s2 here", "s2's reaches s1");
    let mut other = Stream::open(&b, "echo/another").await;
    other.write("other here").await;
    assert_eq!(other.read_text().await, "other here");
    // No namespace is the namespace "default".
    let mut default_a = Stream::open(&b, "echo").await;
    default_a.write("a here").await;
    assert_eq!(default_a.read_text().await, "a here");
    let mut default_b = Stream::open(&b, "echo/default").await;
    default_b.write("b here").await;
    assert_eq!(default_b.read_text().await, "b here");
    assert_eq!(default_a.read_text().await, "b here");
    s2.write(r#"["offer","peer id #222","this is an offer"]"#)
        .await;
    for s in [&mut s1, &mut s2] {
        assert_eq!(
            s.read_text().await,
            r#"["offer","peer id #222","this is an offer"]"#
        );
    }
    // Binary chunks stay binary; order is kept.
    s1.write_binary(&[0, 1, 2, 255]).await;
    for n in 0..20 {
        s1.write(&format!("chunk {n}")).await;
    }
    for s in [&mut s1, &mut s2] {
        assert_eq!(s.read().await, Chunk::Binary(vec![0, 1, 2, 255]));
        for n in 0..20 {
            assert_eq!(s.read_text().await, format!("chunk {n}"));
        }
    }
    // Nothing crossed namespaces (nor end points: a relay or scuttlebutt
    // stream of the same namespace is elsewhere).
    other.nothing_for(200).await;
    default_b.nothing_for(0).await;
    let metrics = http_get(b.addr, "/metrics").await;
    assert!(
        metrics.contains("peerwire_connections_opened_total 5"),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn relay_pairs_two_streams_whose_headers_mirror_and_only_those_two() {
    let b = Broker::start(&[]).await;
    let mut s5 = Stream::open(&b, "relay/namespace%20is%20optional").await;
    let mut s6 = Stream::open(&b, "relay/namespace%20is%20optional").await;
    // header-stream's first line; a chunk may follow it in the same frame.
    s5.write("{\"local\":\"12\",\"remote\":\"22\"}\nearly from 5")
        .await;
    // A stream with 5's header again, while 5 waits: not 5's partner.
    let mut same = Stream::open(&b, "relay/namespace%20is%20optional").await;
    same.write("{\"local\":\"12\",\"remote\":\"22\"}\n").await;
    assert_eq!(same.closed().await, Some(1008));
    s6.write("{\"local\":\"22\",\"remote\":\"12\"}\n").await;
    // Each side first reads the other's header line, then its chunks.
    assert_eq!(
        s6.read_text().await,
        "{\"local\":\"12\",\"remote\":\"22\"}\n"
    );
    assert_eq!(s6.read_text().await, "early from 5");
    assert_eq!(
        s5.read_text().await,
        "{\"local\":\"22\",\"remote\":\"12\"}\n"
    );
    s6.write("hello! relay").await;
    assert_eq!(s5.read_text().await, "hello! relay");
    s5.write_binary(&[9, 8, 7]).await;
    assert_eq!(s6.read().await, Chunk::Binary(vec![9, 8, 7]));
    // A third stream with either header once they are paired is refused.
    let mut third = Stream::open(&b, "relay/namespace%20is%20optional").await;
    third.write("{\"local\":\"22\",\"remote\":\"12\"}\n").await;
    assert_eq!(third.closed().await, Some(1008));
    // Another namespace, another pair (the same tokens do not meet).
    let mut elsewhere = Stream::open(&b, "relay").await;
    elsewhere
        .write("{\"local\":\"22\",\"remote\":\"12\"}\n")
        .await;
    s5.write("only to 6").await;
    assert_eq!(s6.read_text().await, "only to 6");
    elsewhere.nothing_for(200).await;
    // One side closing closes the other with its code: 1000 for a normal
    // close, 1011 for a stream that vanished.
    s5.close().await;
    assert_eq!(s6.closed().await, Some(1000));
    let mut a = Stream::open(&b, "relay/gone").await;
    let mut z = Stream::open(&b, "relay/gone").await;
    a.write("{\"local\":\"a\",\"remote\":\"z\"}\n").await;
    z.write("{\"local\":\"z\",\"remote\":\"a\"}\n").await;
    assert_eq!(a.read_text().await, "{\"local\":\"z\",\"remote\":\"a\"}\n");
    assert_eq!(z.read_text().await, "{\"local\":\"a\",\"remote\":\"z\"}\n");
    drop(a);
    assert_eq!(z.closed().await, Some(1011));
    b.stop().await;
}

#[tokio::test]
async fn relay_headers_that_are_not_headers_are_refused_with_named_codes() {
    let b = Broker::start(&["--max-frame-bytes", "8192"]).await;
    for (header, code) in [
        ("not json\n", 1007),
        ("[1,2]\n", 1007),
        ("{\"local\":\"1\"}\n", 1007),
        ("{\"local\":\"1\",\"remote\":\"1\"}\n", 1008),
    ] {
        let mut s = Stream::open(&b, "relay").await;
        s.write(header).await;
        assert_eq!(s.closed().await, Some(code), "{header:?}");
    }
    // A header line that never ends: refused past 4 KiB.
    let mut s = Stream::open(&b, "relay").await;
    s.write(&"x".repeat(3000)).await;
    s.write(&"x".repeat(3000)).await;
    assert_eq!(s.closed().await, Some(1009));
    // Chunks written before a partner comes are held, within a budget.
    let mut s = Stream::open(&b, "relay").await;
    s.write("{\"local\":\"a\",\"remote\":\"b\"}\n").await;
    for _ in 0..8 {
        s.write(&"y".repeat(8000)).await;
    }
    s.write(&"y".repeat(8000)).await;
    assert_eq!(s.closed().await, Some(4002));
    b.stop().await;
}

/// A scuttlebutt stream's replication as scuttlebutt's `createStream`
/// speaks it: a digest first, the other side's history after its digest,
/// then "SYNC".
async fn sync(s: &mut Stream, id: &str, clock: Value) -> (Value, Vec<Value>) {
    let digest = s.line().await;
    assert_eq!(digest["id"], "signal-channel", "{digest}");
    s.write(&format!("{}\n", json!({"id": id, "clock": clock})))
        .await;
    let mut history = Vec::new();
    loop {
        let v = s.line().await;
        if v == json!("SYNC") {
            return (digest, history);
        }
        history.push(v);
    }
}

#[tokio::test]
async fn scuttlebutt_streams_replicate_a_model_through_the_namespace() {
    let b = Broker::start(&[]).await;
    let ns = "scuttlebutt/some%20other%20namespace";
    let mut s3 = Stream::open(&b, ns).await;
    let (digest, history) = sync(&mut s3, "A", json!({})).await;
    assert_eq!(digest["clock"], json!({}));
    assert!(history.is_empty());
    // A second stream, synced: it sees what the model takes, live.
    let mut s4 = Stream::open(&b, ns).await;
    sync(&mut s4, "B", json!({})).await;
    let t1 = now_ms();
    let u1 = json!([["some key", "some value 1"], t1, "A"]);
    // Two updates in one chunk, the second split across two chunks.
    let u2 = json!([["other", {"nested": [1, 2]}], t1 + 1.0, "A"]);
    let u2_text = u2.to_string();
    let (head, tail) = u2_text.split_at(10);
    s3.write(&format!("{u1}\n{head}")).await;
    s3.write(&format!("{tail}\n")).await;
    assert_eq!(s4.line().await, u1);
    assert_eq!(s4.line().await, u2);
    // A late joiner is told what the model holds, and gets it.
    let mut late = Stream::open(&b, ns).await;
    let (digest, history) = sync(&mut late, "L", json!({})).await;
    assert_eq!(digest["clock"], json!({"A": t1 + 1.0}));
    assert_eq!(history, [u1.clone(), u2.clone()]);
    // Live updates reach the other streams, not their writer.
    let u3 = json!([["some key", "from B"], t1 + 2.0, "B"]);
    s4.write(&format!("{u3}\n")).await;
    assert_eq!(s3.line().await, u3);
    assert_eq!(late.line().await, u3);
    // An update older than the model's value for its key changes nothing
    // (the next one, which does, shows it was read).
    let stale = json!([["some key", "stale"], t1 - 5.0, "C"]);
    let u4 = json!([["third", 3], t1 + 3.0, "A"]);
    s3.write(&format!("{stale}\n\"SYNC\"\n{u4}\n")).await;
    assert_eq!(s4.line().await, u4);
    // A joiner that has A's first updates already gets only what it lacks.
    let mut s5 = Stream::open(&b, ns).await;
    let (_, history) = sync(&mut s5, "D", json!({"A": t1 + 1.0})).await;
    assert_eq!(history, [u3.clone(), u4.clone()]);
    s4.nothing_for(100).await;
    s3.nothing_for(0).await;
    // Another namespace has another model.
    let mut elsewhere = Stream::open(&b, "scuttlebutt/x").await;
    let (digest, history) = sync(&mut elsewhere, "E", json!({})).await;
    assert_eq!(digest["clock"], json!({}));
    assert!(history.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn scuttlebutt_keys_expire_and_the_streams_are_told() {
    let b = Broker::start(&["--sigchan-expiry-ms", "400", "--sweep-ms", "20"]).await;
    let ns = "scuttlebutt/volatile";
    let mut s1 = Stream::open(&b, ns).await;
    sync(&mut s1, "A", json!({})).await;
    let mut s2 = Stream::open(&b, ns).await;
    sync(&mut s2, "B", json!({})).await;
    let set_at = now_ms();
    let u = json!([["k", "v"], set_at, "A"]);
    s1.write(&format!("{u}\n")).await;
    assert_eq!(s2.line().await, u);
    // Both streams get the key's removal: a null value from the broker's
    // source, later than the value it removes.
    for s in [&mut s1, &mut s2] {
        let gone = s.line().await;
        assert_eq!(gone[0], json!(["k", null]), "{gone}");
        assert_eq!(gone[2], "signal-channel");
        assert!(gone[1].as_f64().unwrap() > set_at);
    }
    let expired_after = now_ms() - set_at;
    assert!(expired_after >= 400.0, "expired after {expired_after} ms");
    // A stream that comes now finds nothing; the writer sending the
    // expired update again (in its history) does not bring it back.
    let mut s3 = Stream::open(&b, ns).await;
    let (digest, history) = sync(&mut s3, "C", json!({})).await;
    assert_eq!(digest["clock"], json!({}));
    assert!(history.is_empty());
    s1.write(&format!("{u}\n")).await;
    let mut s4 = Stream::open(&b, ns).await;
    let (_, history) = sync(&mut s4, "D", json!({})).await;
    assert!(history.is_empty(), "{history:?}");
    b.stop().await;
}

#[tokio::test]
async fn scuttlebutt_refuses_what_is_not_its_protocol_with_named_codes() {
    let b = Broker::start(&["--max-frame-bytes", "4096"]).await;
    let mut s = Stream::open(&b, "scuttlebutt/bad").await;
    s.line().await;
    s.write("{not json\n").await;
    assert_eq!(s.closed().await, Some(1007));
    let mut s = Stream::open(&b, "scuttlebutt/bad").await;
    s.line().await;
    s.write("{\"id\":\"A\"}\n").await;
    assert_eq!(s.closed().await, Some(1007), "a digest without a clock");
    // A line that never ends: refused past --max-frame-bytes.
    let mut s = Stream::open(&b, "scuttlebutt/bad").await;
    s.line().await;
    for _ in 0..3 {
        s.write(&"[".repeat(2000)).await;
    }
    assert_eq!(s.closed().await, Some(1009));
    // Values that are not updates are ignored; the stream goes on.
    let mut s = Stream::open(&b, "scuttlebutt/bad").await;
    sync(&mut s, "A", json!({})).await;
    s.write("[1,2,3]\n[[\"k\"],\"ts\",\"A\"]\n42\n").await;
    let mut t = Stream::open(&b, "scuttlebutt/bad").await;
    let (digest, history) = sync(&mut t, "B", json!({})).await;
    assert_eq!(digest["clock"], json!({}));
    assert!(history.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn unknown_end_points_and_namespaces_and_too_many_namespaces_are_refused() {
    let b = Broker::start(&["--sigchan-max-namespaces", "1"]).await;
    let url = |path: &str| format!("ws://{}/signal-channel/{path}", b.addr);
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{e}"),
        Ok(_) => 101,
    };
    let long = "n".repeat(257);
    assert_eq!(
        status(tokio_tungstenite::connect_async(url("gossip")).await),
        404
    );
    assert_eq!(
        status(tokio_tungstenite::connect_async(url(&format!("echo/{long}"))).await),
        404
    );
    assert_eq!(
        status(tokio_tungstenite::connect_async(url("echo/a%0Ab")).await),
        404
    );
    let mut first = Stream::open(&b, "echo/one").await;
    let again = Stream::open(&b, "echo/one").await;
    assert_eq!(
        status(tokio_tungstenite::connect_async(url("echo/two")).await),
        503
    );
    let metrics = http_get(b.addr, "/metrics").await;
    assert!(
        metrics.contains("peerwire_refused_total{code=\"sigchan-namespaces\"} 1"),
        "{metrics}"
    );
    // The namespace is free once its last stream is gone (the broker
    // learns it when the close is read: retry within a deadline).
    first.write("x").await;
    assert_eq!(first.read_text().await, "x");
    first.close().await;
    again.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio_tungstenite::connect_async(url("echo/two")).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(status(Err(e)), 503);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("namespace never freed: {e}"),
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn the_hubs_auth_and_message_rate_hold_on_signal_channel_streams() {
    let b = Broker::start(&[
        "--auth-secret",
        "0123456789abcdef0123456789abcdef",
        "--require-token",
    ])
    .await;
    let mut s = Stream::open(&b, "echo/x").await;
    assert_eq!(s.closed().await, Some(4007));
    let token = support::mint_token(
        "0123456789abcdef0123456789abcdef",
        &json!({"sub": "someone", "exp": now_ms() as u64 / 1000 + 600}),
    );
    let req = format!("ws://{}/signal-channel/echo/x?token={token}", b.addr)
        .into_client_request()
        .unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut s = Stream {
        ws,
        lines: String::new(),
    };
    s.write("with a token").await;
    assert_eq!(s.read_text().await, "with a token");
    b.stop().await;

    let b = Broker::start(&["--rate-limit", "5", "--rate-burst", "5"]).await;
    let mut s = Stream::open(&b, "echo/x").await;
    for n in 0..20 {
        let _ = s.ws.send(Message::text(format!("{n}"))).await;
    }
    assert_eq!(s.closed().await, Some(4002));
    b.stop().await;
}

#[tokio::test]
async fn across_a_network_of_brokers_namespaces_are_the_networks() {
    let redis = Redis::start();
    let expiry = ["--sigchan-expiry-ms", "600", "--sweep-ms", "20"];
    let b1 = network_broker(&redis, &expiry).await;
    let b2 = network_broker(&redis, &expiry).await;
    // echo: a stream on each broker.
    let mut e1 = Stream::open(&b1, "echo/net").await;
    e1.write("e1 here").await;
    assert_eq!(e1.read_text().await, "e1 here");
    let mut e2 = Stream::open(&b2, "echo/net").await;
    e2.write("e2 here").await;
    assert_eq!(e2.read_text().await, "e2 here");
    assert_eq!(e1.read_text().await, "e2 here");
    // scuttlebutt: one model for the namespace, and its keys expire.
    let mut s1 = Stream::open(&b1, "scuttlebutt/net").await;
    sync(&mut s1, "A", json!({})).await;
    let mut s2 = Stream::open(&b2, "scuttlebutt/net").await;
    sync(&mut s2, "B", json!({})).await;
    let u = json!([["k", "v"], now_ms(), "A"]);
    s1.write(&format!("{u}\n")).await;
    assert_eq!(s2.line().await, u);
    let mut late = Stream::open(&b2, "scuttlebutt/net").await;
    let (_, history) = sync(&mut late, "C", json!({})).await;
    assert_eq!(history, [u]);
    for s in [&mut s1, &mut s2, &mut late] {
        assert_eq!(s.line().await[0], json!(["k", null]));
    }
    // relay: the two sides on different brokers.
    let mut r1 = Stream::open(&b1, "relay/net").await;
    r1.write("{\"local\":\"x\",\"remote\":\"y\"}\n").await;
    let mut r2 = Stream::open(&b2, "relay/net").await;
    r2.write("{\"local\":\"y\",\"remote\":\"x\"}\nfrom r2")
        .await;
    assert_eq!(r1.read_text().await, "{\"local\":\"y\",\"remote\":\"x\"}\n");
    assert_eq!(r2.read_text().await, "{\"local\":\"x\",\"remote\":\"y\"}\n");
    assert_eq!(r1.read_text().await, "from r2");
    r1.write("from r1").await;
    assert_eq!(r2.read_text().await, "from r1");
    b1.stop().await;
    b2.stop().await;
}
