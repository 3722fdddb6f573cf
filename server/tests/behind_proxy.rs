//! A broker behind a load balancer, against a real broker on loopback:
//! with `--trust-proxy`, the per-address limits apply to the client that
//! `X-Forwarded-For` or `Forwarded` names; without it (or from a peer not
//! listed) the headers change nothing; and `--metrics-addr` moves
//! `/metrics` off the public port.

mod support;

use serde_json::json;
use support::{Broker, Client, Closed};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Upgrades with `header: value` added; the client, or the HTTP status
/// and body of the refusal.
async fn connect_with(b: &Broker, header: &str, value: &str) -> Result<Client, (u16, String)> {
    let mut req = b.url().into_client_request().unwrap();
    req.headers_mut().insert(
        tungstenite::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    match Client::try_connect_with(req).await {
        Ok(client) => Ok(client),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
        Err(other) => panic!("upgrade failed without an HTTP answer: {other}"),
    }
}

#[tokio::test]
async fn a_trusted_proxy_gives_each_forwarded_address_its_own_connection_cap() {
    let b = Broker::start(&[
        "--trust-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1",
    ])
    .await;

    let mut first = connect_with(&b, "x-forwarded-for", "198.51.100.1")
        .await
        .expect("the first connection from 198.51.100.1");
    let (status, body) = connect_with(&b, "x-forwarded-for", "198.51.100.1")
        .await
        .err()
        .expect("a second one from the same forwarded address is refused");
    assert_eq!(status, 429);
    assert!(
        body.contains("too many connections from 198.51.100.1"),
        "{body}"
    );

    let mut other = connect_with(&b, "x-forwarded-for", "198.51.100.2")
        .await
        .expect("another forwarded address has its own cap");
    // A proxy chain: the right-most hop that is not a trusted proxy counts,
    // whatever the client wrote to its left.
    let (status, body) = connect_with(
        &b,
        "x-forwarded-for",
        "203.0.113.99, 198.51.100.2, 127.0.0.1",
    )
    .await
    .err()
    .expect("198.51.100.2 behind two proxies is still 198.51.100.2");
    assert_eq!(status, 429, "{body}");

    // RFC 7239, with a quoted IPv6 address and a port.
    let mut v6 = connect_with(&b, "forwarded", r#"for="[2001:db8::1]:4711";proto=https"#)
        .await
        .expect("the first connection from 2001:db8::1");
    let (status, body) = connect_with(&b, "forwarded", "for=\"[2001:db8::1]\"")
        .await
        .err()
        .expect("the same IPv6 client without a port");
    assert_eq!(status, 429);
    assert!(body.contains("2001:db8::1"), "{body}");

    // A header naming nobody: the proxy's own address, which is free.
    let mut unknown = connect_with(&b, "forwarded", "for=unknown")
        .await
        .expect("counted under 127.0.0.1");
    for c in [&mut first, &mut other, &mut v6, &mut unknown] {
        assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    }
    let metrics = b.http_get("/metrics").await;
    assert!(
        metrics.contains(r#"peerwire_refused_total{code="connections-per-ip"} 3"#),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn forwarded_addresses_have_their_own_message_budget() {
    // Four messages per address, refilled too slowly to matter here.
    let b = Broker::start(&[
        "--trust-proxy",
        "10.0.0.0/8,127.0.0.0/8",
        "--ip-rate-limit",
        "0.001",
        "--ip-rate-burst",
        "4",
    ])
    .await;
    let mut a1 = connect_with(&b, "x-forwarded-for", "198.51.100.1")
        .await
        .unwrap();
    let mut a2 = connect_with(&b, "x-forwarded-for", "198.51.100.1")
        .await
        .unwrap();
    let mut other = connect_with(&b, "x-forwarded-for", "198.51.100.2")
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(a1.request(json!({"type": "ping"})).await["type"], "pong");
        assert_eq!(a2.request(json!({"type": "ping"})).await["type"], "pong");
    }
    // 198.51.100.1 has spent its four: the next message closes with 4002.
    a2.send(json!({"type": "ping"})).await;
    assert_eq!(a2.closed().await, Closed::Code(4002));
    // 198.51.100.2's budget is untouched.
    for _ in 0..4 {
        assert_eq!(other.request(json!({"type": "ping"})).await["type"], "pong");
    }
    // And a1 shares a2's empty budget.
    a1.send(json!({"type": "ping"})).await;
    assert_eq!(a1.closed().await, Closed::Code(4002));
    b.stop().await;
}

#[tokio::test]
async fn without_trust_the_forwarding_headers_change_nothing() {
    // No --trust-proxy, and a list that does not hold the peer (127.0.0.1).
    for flags in [
        &["--max-connections-per-ip", "1"][..],
        &[
            "--max-connections-per-ip",
            "1",
            "--trust-proxy",
            "10.0.0.0/8,::1",
        ][..],
    ] {
        let b = Broker::start(flags).await;
        let mut first = connect_with(&b, "x-forwarded-for", "198.51.100.1")
            .await
            .unwrap();
        for (header, forged) in [
            ("x-forwarded-for", "198.51.100.2"),
            ("forwarded", "for=198.51.100.3"),
        ] {
            let (status, body) = connect_with(&b, header, forged)
                .await
                .err()
                .expect("a forged header does not buy a second connection");
            assert_eq!(status, 429, "{flags:?}");
            assert!(
                body.contains("too many connections from 127.0.0.1"),
                "{body}"
            );
        }
        assert_eq!(first.request(json!({"type": "ping"})).await["type"], "pong");
        b.stop().await;
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_404_on_the_main_port() {
    let b = Broker::start_with_metrics_listener(&[]).await;
    let metrics_addr = b.metrics_addr().unwrap();
    let (_alice, _) = b.registered("alice").await;

    let public = b.http_get("/metrics").await;
    assert!(public.starts_with("HTTP/1.0 404 "), "{public}");
    assert!(!public.contains("peerwire_"), "{public}");
    assert!(
        b.http_get("/healthz").await.ends_with("ok\n"),
        "the load balancer's check"
    );

    let private = support::http_get(metrics_addr, "/metrics").await;
    assert!(private.starts_with("HTTP/1.0 200"), "{private}");
    assert!(private.contains("peerwire_ids 1"), "{private}");
    assert!(
        support::http_get(metrics_addr, "/healthz")
            .await
            .ends_with("ok\n")
    );
    let ws = support::http_get(metrics_addr, "/ws").await;
    assert!(ws.starts_with("HTTP/1.0 404"), "no WebSocket there: {ws}");
    b.stop().await;

    // Without --metrics-addr, the main port serves them as before.
    let b = Broker::start(&[]).await;
    assert!(
        b.http_get("/metrics")
            .await
            .contains("peerwire_connections")
    );
    b.stop().await;
}
