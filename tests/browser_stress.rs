//! Races that used to hang, repeated in real Chromium against the real
//! broker: simultaneous connects from both sides (glare), and fast
//! connect/disconnect cycles whose leftover signals reach the next session.
//! Peers use a 5 s connectTimeout: a connect that hangs rejects with
//! `ConnectTimeoutError` and fails the test.

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use js_sys::Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A peer with a 5 s connectTimeout; `debug` logs its negotiation, which
/// the test runner prints if the test fails.
async fn peer(name: &str, debug: bool) -> (JsValue, String) {
    let id = uid(name);
    let p = create_with(
        &id,
        &[
            ("connectTimeout", 5000.into()),
            ("maxOffersPerMinute", 100_000.into()),
            ("debug", debug.into()),
        ],
    )
    .await
    .expect("createPeer");
    (p, id)
}

/// Chrome refuses a new RTCPeerConnection while about 500 exist in the
/// page, closed ones included until they are garbage collected; a long run
/// collects now and then (the suite's Chromium runs with `--expose-gc`).
fn collect_garbage() {
    let gc = get(&js_sys::global(), "gc");
    if let Some(f) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&gc) {
        let _ = f.call0(&JsValue::UNDEFINED);
    }
}

fn connections(p: &JsValue) -> u32 {
    Array::from(&get(p, "connections")).length()
}

#[wasm_bindgen_test]
async fn glare_never_hangs_in_100_rounds() {
    let (a, ida) = peer("glare100-a", true).await;
    let (b, idb) = peer("glare100-b", true).await;
    for round in 0..100 {
        if round % 50 == 0 {
            collect_garbage();
        }
        let (ca, cb) = futures_util::future::join(
            call(&a, "connect", &[idb.clone().into()]),
            call(&b, "connect", &[ida.clone().into()]),
        )
        .await;
        let ca = ca.unwrap_or_else(|e| {
            panic!(
                "round {round}: a connect: {:?}",
                get(&e, "message").as_string()
            )
        });
        let cb = cb.unwrap_or_else(|e| {
            panic!(
                "round {round}: b connect: {:?}",
                get(&e, "message").as_string()
            )
        });
        assert_eq!((connections(&a), connections(&b)), (1, 1), "round {round}");
        let closed_a = Events::on(&ca, "close").await;
        let closed_b = Events::on(&cb, "close").await;
        if round % 2 == 0 {
            call(&ca, "close", &[]).await.unwrap();
        } else {
            call(&cb, "close", &[]).await.unwrap();
        }
        closed_a.nth(0, 5000.0).await;
        closed_b.nth(0, 5000.0).await;
    }
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn fast_connect_disconnect_never_hangs_in_400_cycles() {
    let (a, ida) = peer("cycle400-a", true).await;
    let (b, idb) = peer("cycle400-b", true).await;
    for cycle in 0..400 {
        if cycle % 50 == 0 {
            collect_garbage();
        }
        // Every third cycle the other side dials.
        let (dialer, target) = if cycle % 3 == 2 {
            (&b, &ida)
        } else {
            (&a, &idb)
        };
        let conn = call(dialer, "connect", &[target.clone().into()])
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: {:?}", get(&e, "message").as_string()));
        // Closed at once: the other side may not have opened yet, and the
        // next cycle's offer overtakes this session's leftovers.
        call(&conn, "close", &[]).await.unwrap();
    }
    // Still usable afterwards: a message round trip.
    let conn = call(&a, "connect", &[idb.clone().into()]).await.unwrap();
    let at_b = Events::on(&b, "message").await;
    call(&conn, "send", &["after 400 cycles".into()])
        .await
        .unwrap();
    let got = at_b.nth(0, 5000.0).await;
    assert_eq!(
        get(&got, "message").as_string().as_deref(),
        Some("after 400 cycles")
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}
