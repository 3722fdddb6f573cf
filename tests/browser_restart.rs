//! The broker is killed and restarted under two connected peers (in its own
//! test binary, so no other test shares the broker while it is down).

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn connections_survive_a_broker_restart_and_peers_reregister() {
    let Some(ctl) = option_env!("PEERWIRE_TEST_CTL") else {
        panic!("PEERWIRE_TEST_CTL is unset: run the browser tests through tests/run.sh");
    };
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let (ida, idb) = (get(&a, "id"), get(&b, "id"));
    let reg_a = Events::on(&a, "register").await;
    let reg_b = Events::on(&b, "register").await;
    let status = Events::on(&a, "broker").await;
    let at_b = Events::on(&conn_b, "message").await;

    // A large message and a stream are in flight when the broker dies.
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let in_flight = start(
        &conn_a,
        "send",
        &[js_sys::Uint8Array::from(&big[..]).into()],
    );
    let streams_b = Events::on(&conn_b, "stream").await;
    let stream_a = call(&conn_a, "openStream", &["during-outage".into()])
        .await
        .unwrap();
    let stream_b = streams_b.nth(0, 3000.0).await;
    let on_stream_b = Events::on(&stream_b, "message").await;

    // Kill the broker (SIGKILL: no close frames), keep it down a while.
    let restart = JsFuture::from(web_sys_fetch(&format!("{ctl}/restart?down_ms=1500")));
    for i in 0..20 {
        call(&stream_a, "send", &[format!("stream {i}").into()])
            .await
            .unwrap();
    }
    in_flight.await.expect("the large send completes");
    let got = at_b.nth(0, 10_000.0).await;
    let got = got.dyn_into::<js_sys::Uint8Array>().unwrap().to_vec();
    assert!(got == big, "8 MiB arrived intact ({} bytes)", got.len());
    for i in 0..20 {
        assert_eq!(
            on_stream_b.nth(i, 3000.0).await.as_string().unwrap(),
            format!("stream {i}")
        );
    }
    sleep(300).await;
    // While the broker is down, the peer-to-peer link still carries data.
    for i in 0..5 {
        call(&conn_a, "send", &[format!("during outage {i}").into()])
            .await
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(
            at_b.nth(i + 1, 3000.0).await.as_string().unwrap(),
            format!("during outage {i}")
        );
    }
    restart
        .await
        .expect("the control server restarts the broker");
    // Both re-register with their own ids. (Event 0 is the first
    // registration, kept for these listeners attached after createPeer.)
    assert_eq!(reg_a.nth(0, 3000.0).await, ida);
    assert_eq!(reg_a.nth(1, 15_000.0).await, ida);
    assert_eq!(reg_b.nth(1, 15_000.0).await, idb);
    assert!(status.len() >= 3, "registered, disconnected, registered");
    assert_eq!(
        get(&status.nth(0, 0.0).await, "reconnect").as_bool(),
        Some(false)
    );
    assert_eq!(
        get(&status.nth(1, 0.0).await, "state").as_string().unwrap(),
        "disconnected"
    );
    call(&conn_a, "send", &["after restart".into()])
        .await
        .unwrap();
    assert_eq!(
        at_b.nth(6, 3000.0).await.as_string().unwrap(),
        "after restart"
    );
    // The broker works again for new connections.
    let c = create(&uid("after")).await;
    let conn = call(&c, "connect", &[ida])
        .await
        .expect("a new connection through the restarted broker");
    assert_eq!(get(&conn, "state").as_string().unwrap(), "open");
    for p in [a, b, c] {
        call(&p, "close", &[]).await.unwrap();
    }
}
