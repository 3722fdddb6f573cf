//! Failover between brokers in real headless Chromium: `broker` as a list
//! of URLs, against the broker `tests/run.sh` starts (run under
//! `tests/broker_ctl.py`) and a closed port. One test restarts that broker,
//! so these tests have a binary of their own (tests in one binary run one
//! after the other).

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use js_sys::{Array, Function};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Nothing listens here (the discard port): a dial is refused at once.
const CLOSED: &str = "ws://127.0.0.1:9/ws";

fn list(urls: &[&str]) -> JsValue {
    urls.iter()
        .map(|u| JsValue::from(*u))
        .collect::<Array>()
        .into()
}

/// Records every `broker` event of `peer` (the first registration, kept
/// for the first listener, included) in a list that can be awaited.
async fn broker_events(peer: &JsValue) -> Array {
    let events = recorder();
    let listener = Function::new_with_args("q", "return (e) => q.note(e)")
        .call1(&JsValue::NULL, &events)
        .unwrap();
    call(peer, "on", &["broker".into(), listener])
        .await
        .unwrap();
    events
}

fn text(v: &JsValue, prop: &str) -> String {
    get(v, prop).as_string().unwrap_or_default()
}

#[wasm_bindgen_test]
async fn a_peer_whose_first_broker_refuses_registers_on_the_next_at_once() {
    let started = now();
    let id = uid("fo-first");
    let a = create_with(&id, &[("broker", list(&[CLOSED, broker()]))])
        .await
        .expect("createPeer resolves through the second URL");
    let ms = now() - started;
    log(&format!(
        "createPeer with a refused first broker registered in {ms:.0} ms"
    ));
    assert!(
        ms < 5000.0,
        "the first URL's refusal moves on at once ({ms} ms)"
    );
    assert_eq!(text(&a, "id"), id);
    assert_eq!(text(&a, "broker"), broker());
    let status = Events::on(&a, "broker").await.nth(0, 2000.0).await;
    assert_eq!(text(&status, "state"), "registered");
    assert_eq!(text(&status, "url"), broker());
    assert_eq!(get(&status, "reconnect").as_bool(), Some(false));

    // Usable: a peer given one URL (peer.broker is that URL) reaches it.
    let b = create(&uid("fo-other")).await;
    assert_eq!(text(&b, "broker"), broker());
    let incoming = Events::on(&a, "connection").await;
    let conn_b = call(&b, "connect", &[id.into()])
        .await
        .expect("connect through the broker a registered on");
    let conn_a = incoming.nth(0, 5000.0).await;
    let at_a = Events::on(&conn_a, "message").await;
    call(&conn_b, "send", &["hello".into()]).await.unwrap();
    assert_eq!(at_a.nth(0, 3000.0).await.as_string().unwrap(), "hello");
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn when_every_broker_refuses_createpeer_rejects_naming_each() {
    let other = "ws://127.0.0.1:9/other";
    let started = now();
    let err = create_with(
        &uid("fo-none"),
        &[
            ("broker", list(&[CLOSED, other])),
            ("connectTimeout", 60_000.into()),
        ],
    )
    .await
    .unwrap_err();
    let ms = now() - started;
    assert_eq!(error_name(&err), "BrokerUnreachableError");
    let message = text(&err, "message");
    assert!(
        message.contains(&format!("any of {CLOSED}, {other}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("{other}: the connection was refused or dropped")),
        "{message}"
    );
    assert!(
        ms < 5000.0,
        "one pass over the list, not connectTimeout ({ms} ms)"
    );
}

#[wasm_bindgen_test]
async fn a_broker_list_with_a_bad_entry_is_refused_naming_its_index_and_value() {
    let refused = |broker: JsValue| async move {
        let err = create_with(&uid("fo-opt"), &[("broker", broker)])
            .await
            .unwrap_err();
        assert_eq!(error_name(&err), "InvalidArgumentError");
        text(&err, "message")
    };
    assert_eq!(
        refused(list(&[broker(), "ftp://b.example.com"])).await,
        r#"options.broker[1] "ftp://b.example.com": broker URL scheme "ftp" must be ws:// or wss://"#
    );
    assert_eq!(
        refused(list(&["b.example.com", broker()])).await,
        r#"options.broker[0] "b.example.com": broker "b.example.com" must be a URL such as ws://localhost:8080"#
    );
    let mixed: JsValue = Array::of2(&broker().into(), &42.into()).into();
    assert_eq!(
        refused(mixed).await,
        "options.broker[1] must be a broker URL string, got the number 42"
    );
    assert_eq!(
        refused(Array::new().into()).await,
        "options.broker is an empty array: list at least one broker URL, e.g. ['wss://a.example.com', 'wss://b.example.com']"
    );
    assert_eq!(
        refused(42.into()).await,
        "options.broker must be a string or an array of strings, got the number 42"
    );
}

/// The broker is killed and restarted under two connected peers given
/// `[broker, closed port]`: each reconnect tries the next URL (the closed
/// port, refused), then wraps around to the broker once it is back; the
/// connection between the peers stays open throughout.
#[wasm_bindgen_test]
async fn after_a_drop_the_reconnect_tries_the_next_broker_and_connections_stay_open() {
    let Some(ctl) = option_env!("PEERWIRE_TEST_CTL") else {
        panic!("PEERWIRE_TEST_CTL is unset: run the browser tests through tests/run.sh");
    };
    let brokers = list(&[broker(), CLOSED]);
    let (ida, idb) = (uid("fo-a"), uid("fo-b"));
    let a = create_with(&ida, &[("broker", brokers.clone())])
        .await
        .unwrap();
    let b = create_with(&idb, &[("broker", brokers)]).await.unwrap();
    assert_eq!(text(&a, "broker"), broker());
    let incoming = Events::on(&b, "connection").await;
    let conn_a = call(&a, "connect", &[idb.clone().into()]).await.unwrap();
    let conn_b = incoming.nth(0, 5000.0).await;
    let at_b = Events::on(&conn_b, "message").await;
    let status = broker_events(&a).await;
    let status_b = broker_events(&b).await;

    let restart = JsFuture::from(web_sys_fetch(&format!("{ctl}/restart?down_ms=1000")));
    let back = Function::new_with_args(
        "l",
        "return l.some(e => e.state === 'registered' && e.reconnect)",
    );
    until(&status, &back, 20_000.0, "a registered again")
        .await
        .unwrap();
    until(&status_b, &back, 20_000.0, "b registered again")
        .await
        .unwrap();
    restart
        .await
        .expect("the control server restarts the broker");

    let events: Vec<JsValue> = status.iter().collect();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (text(e, "state"), text(e, "url")))
        .collect();
    log(&format!("broker events of a: {seen:?}"));
    let registered = |url: &str| ("registered".to_string(), url.to_string());
    let dropped = |url: &str| ("disconnected".to_string(), url.to_string());
    assert_eq!(seen[0], registered(broker()));
    assert_eq!(seen[1], dropped(broker()), "the broker's link dropped");
    assert_eq!(seen[2], dropped(CLOSED), "the reconnect tried the next URL");
    assert_eq!(
        seen.last(),
        Some(&registered(broker())),
        "then wrapped around"
    );
    assert_eq!(text(&a, "broker"), broker());
    assert_eq!(text(&a, "id"), ida);

    // The connection never closed, and carries messages after the switch.
    assert_eq!(text(&conn_a, "state"), "open");
    call(&conn_a, "send", &["after the switch".into()])
        .await
        .unwrap();
    assert_eq!(
        at_b.nth(0, 3000.0).await.as_string().unwrap(),
        "after the switch"
    );
    assert_eq!(text(&b, "broker"), broker());
    // Signalling works again on the broker: a new peer reaches a.
    let c = create(&uid("fo-c")).await;
    let conn = call(&c, "connect", &[ida.into()])
        .await
        .expect("a new connection through the restarted broker");
    assert_eq!(text(&conn, "state"), "open");
    for p in [a, b, c] {
        call(&p, "close", &[]).await.unwrap();
    }
}
