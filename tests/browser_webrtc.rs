//! Browser layer: real RTCPeerConnections in headless Chromium (run by
//! `wasm-pack test --headless --chrome` from `tests/run.sh`).
//!
//! - two connections in one page open a data channel and exchange messages;
//! - two connections signal through a real broker process (started by the
//!   script, its URL compiled in as `PEERWIRE_TEST_BROKER`) using the
//!   protocol types from `peerwire::protocol`, then talk peer to peer.

#![cfg(target_arch = "wasm32")]

mod js;

use js::{Inbox, accept, describe, next_event, opened};
use peerwire::protocol::json::Json;
use peerwire::protocol::{ClientMessage, ServerMessage};
use serde_json::json;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{RtcDataChannelEvent, RtcPeerConnection, WebSocket};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn two_peer_connections_in_one_page_exchange_messages() {
    let a = RtcPeerConnection::new().unwrap();
    let b = RtcPeerConnection::new().unwrap();
    let dc_a = a.create_data_channel("chat");
    let offer = describe(&a, true).await;
    accept(&b, true, &offer).await;
    let incoming = next_event(&b, "datachannel");
    let answer = describe(&b, false).await;
    accept(&a, false, &answer).await;
    let dc_b = incoming
        .await
        .unchecked_into::<RtcDataChannelEvent>()
        .channel();
    assert_eq!(dc_b.label(), "chat");
    let inbox_b = Inbox::attach(&dc_b);
    let inbox_a = Inbox::attach(&dc_a);
    opened(&dc_a).await;
    opened(&dc_b).await;

    dc_a.send_with_str("hello from a").unwrap();
    assert_eq!(inbox_b.next_text().await, "hello from a");
    dc_b.send_with_str("hello from b").unwrap();
    assert_eq!(inbox_a.next_text().await, "hello from b");
    a.close();
    b.close();
}

/// A broker client speaking the wire protocol from `peerwire::protocol`.
struct BrokerClient {
    ws: WebSocket,
    inbox: Inbox,
    rid: u64,
}

impl BrokerClient {
    async fn register(id: &str) -> BrokerClient {
        let Some(url) = option_env!("PEERWIRE_TEST_BROKER") else {
            panic!(
                "PEERWIRE_TEST_BROKER is unset: run the browser tests through tests/run.sh, which starts a broker"
            );
        };
        let ws = WebSocket::new(url).expect("WebSocket");
        ws.set_binary_type(web_sys::BinaryType::Arraybuffer);
        let inbox = Inbox::attach(&ws);
        if ws.ready_state() != WebSocket::OPEN {
            next_event(&ws, "open").await;
        }
        let mut c = BrokerClient { ws, inbox, rid: 0 };
        c.send(|rid| ClientMessage::Register {
            rid,
            id: Some(id.into()),
            resume_token: None,
        });
        match c.recv().await {
            ServerMessage::Registered { id: got, .. } => assert_eq!(got, id),
            other => panic!("expected registered, got {other:?}"),
        }
        c
    }

    fn send(&mut self, make: impl FnOnce(u64) -> ClientMessage) {
        self.rid += 1;
        self.ws.send_with_str(&make(self.rid).encode()).unwrap();
    }

    async fn recv(&self) -> ServerMessage {
        ServerMessage::decode(&self.inbox.next_text().await).expect("broker speaks the protocol")
    }

    async fn signal_from(&self, peer: &str) -> serde_json::Value {
        match self.recv().await {
            ServerMessage::Signal { from, data } => {
                assert_eq!(from, peer);
                serde_json::from_str(data.as_str()).expect("the data is JSON")
            }
            other => panic!("expected a signal, got {other:?}"),
        }
    }
}

#[wasm_bindgen_test]
async fn two_peers_signal_through_the_real_broker_then_talk_directly() {
    let mut alice = BrokerClient::register("browser-alice").await;
    let mut bob = BrokerClient::register("browser-bob").await;

    let pc_a = RtcPeerConnection::new().unwrap();
    let pc_b = RtcPeerConnection::new().unwrap();
    let dc_a = pc_a.create_data_channel("via-broker");
    let offer = describe(&pc_a, true).await;
    alice.send(|rid| ClientMessage::Signal {
        rid,
        to: "browser-bob".into(),
        data: Json(json!({"offer": offer}).to_string()),
    });

    let data = bob.signal_from("browser-alice").await;
    accept(&pc_b, true, data["offer"].as_str().unwrap()).await;
    let incoming = next_event(&pc_b, "datachannel");
    let answer = describe(&pc_b, false).await;
    bob.send(|rid| ClientMessage::Signal {
        rid,
        to: "browser-alice".into(),
        data: Json(json!({"answer": answer}).to_string()),
    });

    let data = alice.signal_from("browser-bob").await;
    accept(&pc_a, false, data["answer"].as_str().unwrap()).await;
    let dc_b = incoming
        .await
        .unchecked_into::<RtcDataChannelEvent>()
        .channel();
    let inbox_b = Inbox::attach(&dc_b);
    opened(&dc_a).await;

    // Close the broker sockets: the peer connection no longer needs them.
    alice.ws.close_with_code(1000).unwrap();
    bob.ws.close_with_code(1000).unwrap();
    dc_a.send_with_str("peer to peer").unwrap();
    assert_eq!(inbox_b.next_text().await, "peer to peer");
    let bytes = js_sys::Uint8Array::from(&[1u8, 2, 3][..]);
    dc_a.send_with_array_buffer(&bytes.buffer()).unwrap();
    let got = inbox_b.next().await;
    assert_eq!(js_sys::Uint8Array::new(&got).to_vec(), vec![1, 2, 3]);
    pc_a.close();
    pc_b.close();
}

#[wasm_bindgen_test]
async fn the_broker_refuses_bad_input_from_a_browser_with_named_errors() {
    let client = BrokerClient::register("browser-carol").await;
    client.ws.send_with_str("{definitely not json").unwrap();
    match client.recv().await {
        ServerMessage::Error { code, .. } => {
            assert_eq!(code, peerwire::protocol::ErrorCode::BadJson)
        }
        other => panic!("expected an error, got {other:?}"),
    }
    client
        .ws
        .send_with_str(r#"{"type":"signal","rid":5,"to":"nobody-here","data":1}"#)
        .unwrap();
    match client.recv().await {
        ServerMessage::Error {
            code, rid, target, ..
        } => {
            assert_eq!(
                (code, rid, target.as_deref()),
                (
                    peerwire::protocol::ErrorCode::UnknownPeer,
                    Some(5),
                    Some("nobody-here")
                )
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    client.ws.close_with_code(1000).unwrap();
}
