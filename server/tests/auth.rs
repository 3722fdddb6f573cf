//! Access tokens against a real broker: protected ids and rooms, tokens in
//! the URL or the Authorization header, and bad tokens closed with 4007.

mod support;

use serde_json::{Value, json};
use support::{Broker, Client};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "test-secret-test-secret-test-secret";

fn mint(claims: Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = claims;
    if claims.get("exp").is_none() {
        claims["exp"] = json!(exp);
    }
    support::mint_token(SECRET, &claims)
}

async fn protected_broker(extra: &[&str]) -> Broker {
    let mut flags = vec!["--auth-secret", SECRET];
    flags.extend_from_slice(&support::PROTECT_FLAGS);
    flags.extend_from_slice(extra);
    Broker::start(&flags).await
}

async fn with_token(b: &Broker, token: &str) -> Client {
    b.client_with_token(token).await
}

#[tokio::test]
async fn without_a_token_protected_ids_and_rooms_are_refused() {
    let b = protected_broker(&[]).await;
    let mut c = b.client().await;
    let e = c
        .request_err(json!({"type": "register", "id": "admin-1"}), "unauthorized")
        .await;
    assert!(e["message"].as_str().unwrap().contains("token"), "{e}");
    // The connection stays usable for an unprotected id.
    assert_eq!(
        c.request(json!({"type": "register", "id": "alice"})).await["type"],
        "registered"
    );
    c.request_err(json!({"type": "join", "room": "staff"}), "forbidden")
        .await;
    assert_eq!(
        c.request(json!({"type": "join", "room": "lobby"})).await["type"],
        "joined"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_token_binds_the_id_and_the_rooms() {
    let b = protected_broker(&[]).await;
    let token = mint(json!({"sub": "admin-1", "rooms": ["staff", "team-*"]}));

    let mut wrong = with_token(&b, &token).await;
    wrong
        .request_err(json!({"type": "register", "id": "admin-2"}), "unauthorized")
        .await;
    wrong
        .request_err(json!({"type": "register", "id": "alice"}), "unauthorized")
        .await;
    drop(wrong);

    // No id asked for: the token's id.
    let mut c = with_token(&b, &token).await;
    let r = c.request(json!({"type": "register"})).await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_str()),
        (Some("registered"), Some("admin-1"))
    );
    for room in ["staff", "team-red"] {
        assert_eq!(
            c.request(json!({"type": "join", "room": room})).await["type"],
            "joined"
        );
    }
    c.request_err(json!({"type": "join", "room": "lobby"}), "forbidden")
        .await;
    c.close_normally().await;

    // The Authorization header works too (for non-browser clients).
    let mut req = b.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut h = Client::connect_with(req).await;
    let r = h
        .request(json!({"type": "register", "id": "admin-1"}))
        .await;
    assert_eq!(r["type"], "registered", "{r}");
    b.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_closed_with_4007_and_a_reason() {
    let b = protected_broker(&[]).await;
    let expired = mint(json!({"sub": "a", "exp": 1_000_000}));
    let forged = {
        // Another last signature character: always a different one, and a
        // canonical one (A and E differ in data bits, not padding bits).
        let mut t = mint(json!({"sub": "a"}));
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'E' } else { 'A' });
        t
    };
    for (token, why) in [
        (expired.as_str(), "expired"),
        (forged.as_str(), "signature"),
        ("garbage", "malformed"),
    ] {
        let mut c = with_token(&b, token).await;
        let (code, reason) = c.close_frame().await.expect("a close frame");
        assert_eq!(code, 4007, "{token}");
        assert!(reason.contains(why), "{token}: {reason}");
    }
    let metrics = b.http_get("/metrics").await;
    assert!(
        metrics.contains("peerwire_refused_total{code=\"token\"} 3"),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn require_token_turns_tokenless_connections_away() {
    let b = protected_broker(&["--require-token"]).await;
    let mut c = b.client().await;
    let (code, reason) = c.close_frame().await.expect("a close frame");
    assert_eq!(code, 4007);
    assert!(reason.contains("requires a token"), "{reason}");
    let mut ok = with_token(&b, &mint(json!({"sub": "bob"}))).await;
    assert_eq!(
        ok.request(json!({"type": "register", "id": "bob"})).await["type"],
        "registered"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_broker_without_a_secret_refuses_tokens_instead_of_ignoring_them() {
    let b = Broker::start(&[]).await;
    let mut c = with_token(&b, &mint(json!({"sub": "bob"}))).await;
    let (code, reason) = c.close_frame().await.expect("a close frame");
    assert_eq!(code, 4007);
    assert!(reason.contains("--auth-secret"), "{reason}");
    b.stop().await;
}

/// A client whose upgrade carries `query` and an `Authorization` header.
async fn with_query_and_header(b: &Broker, query: &str, authorization: &str) -> Client {
    let mut req = format!("{}?{query}", b.url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", authorization.parse().unwrap());
    Client::connect_with(req).await
}

#[tokio::test]
async fn a_token_is_never_ignored_however_it_is_sent() {
    let b = protected_broker(&[]).await;
    let good = mint(json!({"sub": "bob"}));
    for (query, header, why) in [
        // An empty ?token= used to hide the header's bad token.
        ("token=", "Bearer garbage", "malformed"),
        // The scheme is case-insensitive: a lowercase bearer is checked too.
        ("x=1", "bearer garbage", "malformed"),
        ("x=1", "Bearer ", "no token"),
        (
            &format!("token={good}") as &str,
            "Bearer garbage",
            "two different tokens",
        ),
    ] {
        let mut c = with_query_and_header(&b, query, header).await;
        let (code, reason) = c.close_frame().await.expect("a close frame");
        assert_eq!(code, 4007, "{query} / {header}");
        assert!(reason.contains(why), "{query} / {header}: {reason}");
    }
    let mut ok = with_query_and_header(&b, "token=", &format!("bearer {good}")).await;
    assert_eq!(
        ok.request(json!({"type": "register", "id": "bob"})).await["type"],
        "registered"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_token_that_expires_on_an_open_connection_joins_nothing_more() {
    let b = protected_broker(&[]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Valid for one or two more seconds (the broker allows 30 s of skew).
    let token = mint(json!({"sub": "bob", "exp": now - 29}));
    let mut c = with_token(&b, &token).await;
    assert_eq!(
        c.request(json!({"type": "register", "id": "bob"})).await["type"],
        "registered"
    );
    assert_eq!(
        c.request(json!({"type": "join", "room": "r0"})).await["type"],
        "joined"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for n in 1.. {
        let r = c
            .request(json!({"type": "join", "room": format!("r{n}")}))
            .await;
        if r["type"] == "error" {
            assert_eq!(r["code"], "unauthorized", "{r}");
            assert!(r["message"].as_str().unwrap().contains("expired"), "{r}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "joins still accepted after the token expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn a_resume_keeps_only_the_rooms_the_new_token_lists() {
    let b = protected_broker(&[]).await;
    let both = mint(json!({"sub": "admin-1", "rooms": ["staff", "team-*"]}));
    let mut c = with_token(&b, &both).await;
    let r = c
        .request(json!({"type": "register", "id": "admin-1"}))
        .await;
    let resume = r["resumeToken"].as_str().unwrap().to_string();
    for room in ["staff", "team-red"] {
        c.request(json!({"type": "join", "room": room})).await;
    }
    let mut other = with_token(&b, &mint(json!({"sub": "admin-2", "rooms": ["staff"]}))).await;
    other
        .request(json!({"type": "register", "id": "admin-2"}))
        .await;
    other
        .request(json!({"type": "join", "room": "staff"}))
        .await;
    c.vanish();

    // Back with a token that no longer lists staff.
    let narrower = mint(json!({"sub": "admin-1", "rooms": ["team-*"]}));
    let mut again = with_token(&b, &narrower).await;
    let r = again
        .request(json!({"type": "register", "id": "admin-1", "resumeToken": resume}))
        .await;
    assert_eq!(
        (r["resumed"].as_bool(), r["rooms"].clone()),
        (Some(true), json!(["team-red"])),
        "{r}"
    );
    let left = other.expect("peer-left").await;
    assert_eq!(
        (left["room"].as_str(), left["id"].as_str()),
        (Some("staff"), Some("admin-1"))
    );
    b.stop().await;
}
