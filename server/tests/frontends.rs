//! The protocols of other tools on a real broker process's sockets:
//! signaller's pipes (`/listen/<handle>`, `/connect/<handle>`). PeerJS's,
//! with its real client and server, is in tests/e2e/peerjs.test.mjs.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Broker, Client};
use tokio_tungstenite::tungstenite;

fn pipe_url(b: &Broker, side: &str, handle: &str) -> String {
    format!("ws://{}/{side}/{handle}", b.addr)
}

async fn refused(url: &str) -> u16 {
    match Client::try_connect_with(url).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{url}: {other}"),
        Ok(_) => panic!("{url}: upgraded"),
    }
}

#[tokio::test]
async fn a_signaller_pipe_carries_text_and_bytes_both_ways_and_a_normal_close() {
    let b = Broker::start(&[]).await;
    let mut listener = Client::connect(&pipe_url(&b, "listen", "the_handle")).await;
    // Sent before anyone connected: it waits for the other side.
    listener.send_raw(r#"{"sdp":"offer"}"#).await;
    // Someone listens: a second listener is refused, as signaller does.
    assert_eq!(refused(&pipe_url(&b, "listen", "the_handle")).await, 409);
    let mut connector = Client::connect(&pipe_url(&b, "connect", "the_handle")).await;
    assert_eq!(connector.recv().await, json!({"sdp": "offer"}));
    // Paired: nobody else may connect.
    assert_eq!(refused(&pipe_url(&b, "connect", "the_handle")).await, 404);
    connector.send_raw(r#"{"sdp":"answer"}"#).await;
    assert_eq!(listener.recv().await, json!({"sdp": "answer"}));
    connector.send_binary(vec![0, 1, 2, 255]).await;
    assert_eq!(listener.recv_binary().await, vec![0, 1, 2, 255]);
    connector.close_normally().await;
    let (_, close) = listener.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(1000));
    b.stop().await;
}

#[tokio::test]
async fn signaller_refuses_bad_and_unknown_handles_over_http() {
    let b = Broker::start(&[]).await;
    for handle in ["ab", "Abc", "a__b", "1abc", "ab_"] {
        assert_eq!(
            refused(&pipe_url(&b, "listen", handle)).await,
            404,
            "{handle}"
        );
    }
    assert_eq!(refused(&pipe_url(&b, "connect", "nobody_here")).await, 404);
    let off = Broker::start(&["--signaller-max-messages", "0"]).await;
    assert_eq!(refused(&pipe_url(&off, "listen", "abc")).await, 404);
    off.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn signallers_close_codes_4002_1011_and_1009() {
    let b = Broker::start(&["--signaller-max-messages", "2"]).await;
    // 4002: one side sends more than it may; both are closed.
    let mut l = Client::connect(&pipe_url(&b, "listen", "many")).await;
    let mut c = Client::connect(&pipe_url(&b, "connect", "many")).await;
    for n in 0..3 {
        c.send_raw_lossy(&n.to_string()).await;
    }
    let (got, close) = l.drain_until_closed().await;
    assert_eq!(got, vec![json!(0), json!(1)]);
    assert_eq!(close.map(|c| c.0), Some(4002));
    assert_eq!(c.close_frame().await.map(|c| c.0), Some(4002));
    // 1011: the other side went away without a close frame.
    let mut l = Client::connect(&pipe_url(&b, "listen", "vanish")).await;
    let mut c = Client::connect(&pipe_url(&b, "connect", "vanish")).await;
    c.send_raw("1").await;
    assert_eq!(l.recv().await, json!(1)); // paired on both sides by now
    l.vanish();
    let (_, close) = c.drain_until_closed().await;
    assert_eq!(close.map(|c| c.0), Some(1011));
    // 1009: a message over the frame limit.
    let mut l = Client::connect(&pipe_url(&b, "listen", "big")).await;
    l.send_raw_lossy(&"x".repeat(70_000)).await;
    assert_eq!(l.close_frame().await.map(|c| c.0), Some(1009));
    b.stop().await;
}

#[tokio::test]
async fn signallers_deadlines_close_with_4000_and_4001() {
    let b = Broker::start(&["--listen-timeout-ms", "300", "--pipe-timeout-ms", "400"]).await;
    let mut lonely = Client::connect(&pipe_url(&b, "listen", "lonely")).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), lonely.close_frame()).await;
    assert_eq!(closed.unwrap().map(|c| c.0), Some(4000));
    let mut l = Client::connect(&pipe_url(&b, "listen", "slow")).await;
    let mut c = Client::connect(&pipe_url(&b, "connect", "slow")).await;
    assert_eq!(l.close_frame().await.map(|c| c.0), Some(4001));
    assert_eq!(c.close_frame().await.map(|c| c.0), Some(4001));
    b.stop().await;
}
