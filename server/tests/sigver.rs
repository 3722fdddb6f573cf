//! sigver's protocol at `/sigver`, driven by a client written from sigver's
//! protocol (open/join a key, `isKeyOk`, `{data}` and `{id, data}`,
//! `unavailable`), on an in-process broker: an opener and its joiners,
//! sigver's close codes, the limits, auth and metrics of `/ws`, and a
//! network of brokers on a real `redis-server`.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Broker, Client, Redis, http_get, network_broker};

async fn sigver(b: &Broker) -> Client {
    Client::connect(&format!("ws://{}/sigver", b.addr)).await
}

/// An opener of `key` on `b`, once the broker said the key is its.
async fn opener(b: &Broker, key: &str) -> Client {
    let mut c = sigver(b).await;
    c.send_raw(&json!({ "key": key }).to_string()).await;
    assert_eq!(c.recv().await, json!({"isKeyOk": true}));
    c
}

/// A joiner of `key` on `b`, once the broker said the key is open.
async fn joiner(b: &Broker, key: &str) -> Client {
    let mut c = sigver(b).await;
    c.send_raw(&json!({ "join": key }).to_string()).await;
    assert_eq!(c.recv().await, json!({"isKeyOk": true}));
    c
}

#[tokio::test]
async fn an_opener_and_its_joiners_exchange_data_and_hear_who_goes() {
    let b = Broker::start(&[]).await;
    let mut a = opener(&b, "any key: sigver takes any string").await;
    let mut j1 = joiner(&b, "any key: sigver takes any string").await;
    // Joiner → opener: numbered; opener → joiner: plain.
    j1.send_raw(r#"{"data":{"offer":{"type":"offer","sdp":"v=0"}}}"#)
        .await;
    let got = a.recv().await;
    assert_eq!(
        got["data"],
        json!({"offer": {"type": "offer", "sdp": "v=0"}})
    );
    let n1 = got["id"].as_u64().expect("a number, as sigver's");
    a.send_raw(&json!({"id": n1, "data": {"answer": "a"}}).to_string())
        .await;
    assert_eq!(j1.recv().await, json!({"data": {"answer": "a"}}));
    // A join carrying its first data: the opener gets it with the number.
    let mut j2 = sigver(&b).await;
    j2.send_raw(r#"{"join":"any key: sigver takes any string","data":"first"}"#)
        .await;
    assert_eq!(j2.recv().await, json!({"isKeyOk": true}));
    let got = a.recv().await;
    assert_eq!(got["data"], json!("first"));
    let n2 = got["id"].as_u64().unwrap();
    assert_ne!(n1, n2);
    // To a number the opener does not have: dropped, the socket stays.
    a.send_raw(r#"{"id":999999,"data":"lost"}"#).await;
    a.send_raw(r#"{"id":"1","data":"a string is not a number"}"#)
        .await;
    // A joiner goes: the opener hears its number.
    j2.close_normally().await;
    assert_eq!(a.recv().await, json!({"id": n2, "unavailable": true}));
    // The opener goes: its joiners close with 4004.
    a.close_normally().await;
    let (got, close) = j1.drain_until_closed().await;
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(
        close,
        Some((
            4004,
            "any key: sigver takes any string is no longer available".into()
        ))
    );
    b.stop().await;
}

#[tokio::test]
async fn data_is_passed_on_as_sent() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let b = Broker::start(&[]).await;
    // An opener that reads the text itself (key order, numbers, nesting).
    let url = format!("ws://{}/sigver", b.addr);
    let (mut a, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let text = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        if let Ok(Some(Ok(Message::Text(t)))) = next {
            return t.to_string();
        }
        assert!(next.is_ok(), "a message within 5 s");
    };
    a.send(Message::text(r#"{"key":"raw"}"#)).await.unwrap();
    assert_eq!(text(&mut a).await, r#"{"isKeyOk":true}"#);
    let mut j = joiner(&b, "raw").await;
    let data = r#"{"z":1,"a":[1.50,{"y":null,"b":true}],"s":"\u00e9"}"#;
    j.send_raw(&format!(r#"{{"data":{data}}}"#)).await;
    let got = text(&mut a).await;
    let n: u64 = got
        .strip_prefix(r#"{"id":"#)
        .and_then(|r| r.split_once(','))
        .and_then(|(n, _)| n.parse().ok())
        .expect(&got);
    assert_eq!(got, format!(r#"{{"id":{n},"data":{data}}}"#));
    b.stop().await;
}

#[tokio::test]
async fn refusals_close_with_sigvers_codes_and_reasons() {
    let b = Broker::start(&[]).await;
    let _a = opener(&b, "taken").await;
    let cases: [(&str, Vec<Value>, (u16, &str)); 8] = [
        (
            r#"{"key":"taken"}"#,
            vec![json!({"isKeyOk": false})],
            (4002, "The key taken exists already"),
        ),
        (
            r#"{"open":"taken"}"#,
            vec![json!({"isKeyOk": false})],
            (4002, "The key taken exists already"),
        ),
        (
            r#"{"join":"nobody"}"#,
            vec![json!({"isKeyOk": false})],
            (4003, "Unknown key: nobody"),
        ),
        (
            "not json",
            vec![],
            (4000, "Server accepts only JSON string"),
        ),
        ("[1,2]", vec![], (4000, "Server accepts only JSON string")),
        (
            r#"{"hello":1}"#,
            vec![],
            (4001, r#"Unknown JSON attribute: {"hello":1}"#),
        ),
        (
            r#"{"key":""}"#,
            vec![],
            (4000, "The key is not a string of 1 to 512 characters"),
        ),
        (
            r#"{"id":1,"data":"not an opener"}"#,
            vec![],
            (4001, "Only an opener sends {id, data}"),
        ),
    ];
    for (send, want, (code, reason)) in cases {
        let mut c = sigver(&b).await;
        c.send_raw_lossy(send).await;
        let (got, close) = c.drain_until_closed().await;
        assert_eq!(got, want, "{send}");
        assert_eq!(close, Some((code, reason.to_string())), "{send}");
    }
    // A key of 513 characters; one of 512 is sigver's longest.
    let mut c = sigver(&b).await;
    c.send_raw(&json!({"key": "k".repeat(513)}).to_string())
        .await;
    assert_eq!(c.close_frame().await.map(|c| c.0), Some(4000));
    let _long = opener(&b, &"k".repeat(512)).await;
    // A reason longer than a close frame holds is cut to 123 bytes.
    let mut c = sigver(&b).await;
    c.send_raw(&json!({"what": "é".repeat(100)}).to_string())
        .await;
    let (code, reason) = c.close_frame().await.unwrap();
    assert_eq!(code, 4001);
    assert!(
        reason.len() <= 123 && reason.starts_with("Unknown JSON attribute"),
        "{reason}"
    );
    // A binary frame: not JSON.
    let mut c = sigver(&b).await;
    c.send_binary_lossy(vec![1, 2, 3]).await;
    assert_eq!(c.close_frame().await.map(|c| c.0), Some(4000));
    // A second open or join on one socket.
    let mut a2 = opener(&b, "second").await;
    a2.send_raw(r#"{"join":"taken"}"#).await;
    assert_eq!(a2.close_frame().await.map(|c| c.0), Some(4001));
    // Counted as the hub's policy closes.
    let metrics = http_get(b.addr, "/metrics").await;
    assert!(
        metrics.contains("peerwire_closes_total{code=\"1008\"}"),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn the_limits_auth_and_metrics_of_ws_hold_on_sigver() {
    let b = Broker::start(&["--rate-limit", "5", "--rate-burst", "5"]).await;
    // 1009 for a frame over --max-frame-bytes.
    let mut big = sigver(&b).await;
    let huge = json!({"key": "x".repeat(70_000)});
    big.send_raw_lossy(&huge.to_string()).await;
    assert_eq!(big.close_frame().await.map(|c| c.0), Some(1009));
    // 4002 past the message rate (the broker's code: the client sent too
    // many messages).
    let mut a = opener(&b, "rate").await;
    let mut j = joiner(&b, "rate").await;
    for n in 0..8 {
        j.send_raw_lossy(&json!({ "data": n }).to_string()).await;
    }
    assert_eq!(j.close_frame().await.map(|c| c.0), Some(4002));
    // What went before the limit reached the opener.
    let first = a.recv().await;
    assert_eq!(first["data"], json!(0), "{first}");
    let metrics = http_get(b.addr, "/metrics").await;
    for line in [
        "peerwire_closes_total{code=\"1009\"} 1",
        "peerwire_closes_total{code=\"4002\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    b.stop().await;
    // A broker that requires a token: refused with 4007 without one.
    const SECRET: &str = "sigver-secret-sigver-secret-sigver";
    let b = Broker::start(&["--auth-secret", SECRET, "--require-token"]).await;
    let mut anonymous = sigver(&b).await;
    assert_eq!(anonymous.close_frame().await.map(|c| c.0), Some(4007));
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = support::mint_token(SECRET, &json!({"sub": "any", "exp": exp}));
    let mut c = Client::connect(&format!("ws://{}/sigver?token={token}", b.addr)).await;
    c.send_raw(r#"{"open":"with-token"}"#).await;
    assert_eq!(c.recv().await, json!({"isKeyOk": true}));
    b.stop().await;
}

#[tokio::test]
async fn across_a_network_of_brokers_a_key_opened_on_one_is_joined_on_another() {
    let redis = Redis::start();
    let (b1, b2) = (
        network_broker(&redis, &[]).await,
        network_broker(&redis, &[]).await,
    );
    let mut a = opener(&b1, "net").await;
    // Taken on the other broker too.
    let mut thief = sigver(&b2).await;
    thief.send_raw(r#"{"key":"net"}"#).await;
    let (got, close) = thief.drain_until_closed().await;
    assert_eq!(got, [json!({"isKeyOk": false})]);
    assert_eq!(close.map(|c| c.0), Some(4002));
    let mut j = joiner(&b2, "net").await;
    j.send_raw(r#"{"data":"offer"}"#).await;
    let got = a.recv().await;
    assert_eq!(got["data"], json!("offer"));
    a.send_raw(&json!({"id": got["id"], "data": "answer"}).to_string())
        .await;
    assert_eq!(j.recv().await, json!({"data": "answer"}));
    b1.stop().await;
    b2.stop().await;
}

/// sigver's `-s -k <key> -c <cert> -a <ca> -p <port>`, given to the broker's
/// binary as they are: it serves TLS (wss:// for sigver's clients).
#[test]
fn sigvers_command_line_starts_the_broker_with_tls() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("peerwire-sigver-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (tests/setup.sh installs it)");
    assert!(ok.success());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .args(["-s", "-k", key_s, "-c", cert_s, "-a", cert_s, "-p", "0"])
        .args(["--stun-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the broker binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string();
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    let out = Command::new("curl")
        .args(["-s", "--cacert", cert_s, "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!("https://localhost:{port}/healthz"))
        .output()
        .expect("curl is installed (tests/setup.sh installs it)");
    let _ = child.kill();
    let _ = child.wait();
    assert!(url.starts_with("https://"), "{line}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // sigver's -s without a certificate: the flags say what is missing.
    let out = Command::new(env!("CARGO_BIN_EXE_peerwire-broker"))
        .arg("-s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--tls-key"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
