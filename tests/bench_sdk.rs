//! Benchmark (not a test; `tests/bench.sh` runs it in release mode and
//! `tests/run.sh` does not): peerwire against raw WebRTC in the same
//! browser, same run. Prints `BENCH` lines with figures and ratios.
//!
//! - connect: raw in-page RTCPeerConnection pair to an open channel, vs
//!   peerwire `createPeer` x2 -> `connect` -> first message through the
//!   broker (medians);
//! - throughput: one 32 MiB message over a raw channel (16 KiB messages,
//!   `bufferedAmountLowThreshold` flow control with the same marks) vs
//!   peerwire's `conn.send` (medians).

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use js_sys::{Function, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;
use web_sys::{RtcDataChannel, RtcPeerConnection};

wasm_bindgen_test_configure!(run_in_browser);

const MIB: usize = 1024 * 1024;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn runs() -> usize {
    option_env!("PEERWIRE_BENCH_RUNS")
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
}

/// A raw pair with one negotiated channel, open: trickle ICE with
/// candidates handed straight across, as fast as the browser allows.
async fn raw_pair() -> (
    RtcPeerConnection,
    RtcPeerConnection,
    RtcDataChannel,
    RtcDataChannel,
) {
    let make = Function::new_no_args(
        "return (async () => {
          const a = new RTCPeerConnection(), b = new RTCPeerConnection();
          const qa = [], qb = [];
          a.onicecandidate = (e) => e.candidate && (b.remoteDescription ? b.addIceCandidate(e.candidate) : qb.push(e.candidate));
          b.onicecandidate = (e) => e.candidate && (a.remoteDescription ? a.addIceCandidate(e.candidate) : qa.push(e.candidate));
          const da = a.createDataChannel('raw', { negotiated: true, id: 0 });
          const db = b.createDataChannel('raw', { negotiated: true, id: 0 });
          da.binaryType = db.binaryType = 'arraybuffer';
          await a.setLocalDescription();
          await b.setRemoteDescription(a.localDescription);
          for (const c of qb.splice(0)) await b.addIceCandidate(c);
          await b.setLocalDescription();
          await a.setRemoteDescription(b.localDescription);
          for (const c of qa.splice(0)) await a.addIceCandidate(c);
          await Promise.all([da, db].map((d) => d.readyState === 'open' ? 0 : new Promise((r) => { d.onopen = r; })));
          return [a, b, da, db];
        })()",
    );
    let promise: js_sys::Promise = make.call0(&JsValue::NULL).unwrap().unchecked_into();
    let out = js_sys::Array::from(&wasm_bindgen_futures::JsFuture::from(promise).await.unwrap());
    (
        out.get(0).unchecked_into(),
        out.get(1).unchecked_into(),
        out.get(2).unchecked_into(),
        out.get(3).unchecked_into(),
    )
}

/// Sends `total` bytes as 16 KiB messages with the same flow control as
/// peerwire's defaults; resolves when the receiver has counted them all.
async fn raw_transfer(da: &RtcDataChannel, db: &RtcDataChannel, total: usize) -> f64 {
    let counter = Function::new_with_args(
        "state",
        "return (e) => { state.got += e.data.byteLength; if (state.got >= state.want && state.done) { state.done(); } }",
    );
    let state = js_sys::Object::new();
    js_sys::Reflect::set(&state, &"got".into(), &0.into()).unwrap();
    js_sys::Reflect::set(&state, &"want".into(), &(total as f64).into()).unwrap();
    let finished = js_sys::Promise::new(&mut |resolve, _| {
        js_sys::Reflect::set(&state, &"done".into(), &resolve).unwrap();
    });
    let listener: Function = counter
        .call1(&JsValue::NULL, &state)
        .unwrap()
        .unchecked_into();
    db.set_onmessage(Some(&listener));
    let (high, low) = (MIB as u32, 256 * 1024);
    da.set_buffered_amount_low_threshold(low);
    let chunk = Uint8Array::new_with_length(16 * 1024);
    let started = now();
    let mut sent = 0;
    while sent < total {
        if da.buffered_amount() >= high {
            next_event(da, "bufferedamountlow").await;
            continue;
        }
        da.send_with_array_buffer_view(&chunk).unwrap();
        sent += 16 * 1024;
    }
    wasm_bindgen_futures::JsFuture::from(finished)
        .await
        .unwrap();
    db.set_onmessage(None);
    now() - started
}

#[wasm_bindgen_test]
async fn bench_connect_and_throughput() {
    let n = runs();
    // Warm up both paths once.
    let (a, b, _, _) = raw_pair().await;
    a.close();
    b.close();

    let mut raw_connect = Vec::new();
    for _ in 0..n {
        let t = now();
        let (a, b, _, _) = raw_pair().await;
        raw_connect.push(now() - t);
        a.close();
        b.close();
    }
    let mut pw_connect = Vec::new();
    for _ in 0..n {
        let t = now();
        let (ida, idb) = (uid("ba"), uid("bb"));
        let a = create(&ida).await;
        let b = create(&idb).await;
        let inbox = Events::on(&b, "message").await;
        call(&a, "send", &[idb.into(), "first".into()])
            .await
            .unwrap();
        inbox.nth(0, 10_000.0).await;
        pw_connect.push(now() - t);
        call(&a, "close", &[]).await.unwrap();
        call(&b, "close", &[]).await.unwrap();
    }
    // Connect alone: both peers already registered.
    let mut pw_link = Vec::new();
    for _ in 0..n {
        let (ida, idb) = (uid("la"), uid("lb"));
        let a = create(&ida).await;
        let b = create(&idb).await;
        let inbox = Events::on(&b, "message").await;
        let t = now();
        call(&a, "send", &[idb.into(), "first".into()])
            .await
            .unwrap();
        inbox.nth(0, 10_000.0).await;
        pw_link.push(now() - t);
        call(&a, "close", &[]).await.unwrap();
        call(&b, "close", &[]).await.unwrap();
    }
    let (raw_c, pw_c, pw_l) = (median(raw_connect), median(pw_connect), median(pw_link));
    log(&format!(
        "BENCH connect (median, n={n}): raw in-page pair {raw_c:.1} ms; peerwire connect+first message (registered peers, via broker) {pw_l:.1} ms (ratio {:.2}); peerwire createPeer x2 -> first message {pw_c:.1} ms",
        pw_l / raw_c
    ));

    let size = 32 * MIB;
    let rounds = 3;
    let mut raw_t = Vec::new();
    let (a, b, da, db) = raw_pair().await;
    for _ in 0..rounds {
        raw_t.push(raw_transfer(&da, &db, size).await);
    }
    a.close();
    b.close();
    let mut pw_t = Vec::new();
    let (pa, pb, conn_a, conn_b) = connected_pair().await;
    let payload = Uint8Array::new_with_length(size as u32);
    let inbox = Events::on(&conn_b, "message").await;
    for round in 0..rounds {
        let t = now();
        call(&conn_a, "send", &[payload.clone().into()])
            .await
            .unwrap();
        let got = inbox.nth(round as u32, 120_000.0).await;
        pw_t.push(now() - t);
        assert_eq!(
            got.dyn_into::<Uint8Array>().unwrap().length() as usize,
            size
        );
    }
    call(&pa, "close", &[]).await.unwrap();
    call(&pb, "close", &[]).await.unwrap();
    let (raw_ms, pw_ms) = (median(raw_t), median(pw_t));
    let mbps = |ms: f64| size as f64 / 1e6 / (ms / 1000.0);
    log(&format!(
        "BENCH throughput 32 MiB: raw channel {raw_ms:.0} ms ({:.1} MB/s); peerwire {pw_ms:.0} ms ({:.1} MB/s); peerwire/raw speed {:.2}",
        mbps(raw_ms),
        mbps(pw_ms),
        raw_ms / pw_ms
    ));
}
