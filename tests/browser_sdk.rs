//! The SDK in real headless Chromium, against a real broker process that
//! `tests/run.sh` starts, driven through the JavaScript-facing API.

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn two_peers_connect_by_id_and_exchange_json_text_and_binary() {
    let started = now();
    let (a, b, conn_a, conn_b) = connected_pair().await;
    log(&format!(
        "createPeer x2 + connect: {:.0} ms",
        now() - started
    ));
    let ida = get(&a, "id").as_string().unwrap();
    let idb = get(&b, "id").as_string().unwrap();
    assert_eq!(get(&conn_a, "peerId").as_string().unwrap(), idb);
    assert_eq!(get(&conn_b, "peerId").as_string().unwrap(), ida);
    assert_eq!(get(&conn_a, "state").as_string().unwrap(), "open");

    let at_b = Events::on(&conn_b, "message").await;
    let envelopes = Events::on(&b, "message").await;
    call(
        &conn_a,
        "send",
        &[json(r#"{"hi":1,"list":[true,null,"x"]}"#)],
    )
    .await
    .unwrap();
    call(&conn_a, "send", &["plain text ✓".into()])
        .await
        .unwrap();
    let bytes = Uint8Array::from(&[0u8, 1, 2, 254, 255][..]);
    call(&conn_a, "send", &[bytes.into()]).await.unwrap();
    call(&conn_a, "send", &[json("42")]).await.unwrap();
    let parts = Array::of1(&Uint8Array::from(&b"blob bytes"[..]));
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).unwrap();
    call(&conn_a, "send", &[blob.into()]).await.unwrap();

    assert_eq!(
        stringify(&at_b.nth(0, 3000.0).await),
        r#"{"hi":1,"list":[true,null,"x"]}"#
    );
    assert_eq!(
        at_b.nth(1, 3000.0).await.as_string().unwrap(),
        "plain text ✓"
    );
    let got = at_b.nth(2, 3000.0).await;
    assert_eq!(
        got.dyn_into::<Uint8Array>().unwrap().to_vec(),
        vec![0, 1, 2, 254, 255]
    );
    assert_eq!(at_b.nth(3, 3000.0).await.as_f64(), Some(42.0));
    let got = at_b.nth(4, 3000.0).await;
    assert_eq!(
        got.dyn_into::<Uint8Array>().unwrap().to_vec(),
        b"blob bytes".to_vec()
    );
    let env = envelopes.nth(0, 3000.0).await;
    assert_eq!(get(&env, "from").as_string().unwrap(), ida);
    assert_eq!(get(&get(&env, "message"), "hi").as_f64(), Some(1.0));

    // The other direction, and peer.send() reusing the open connection.
    let at_a = Events::on(&conn_a, "message").await;
    call(&b, "send", &[ida.clone().into(), "back".into()])
        .await
        .unwrap();
    assert_eq!(at_a.nth(0, 3000.0).await.as_string().unwrap(), "back");
    assert_eq!(Array::from(&get(&b, "connections")).length(), 1);
    // connect() again gives the same connection object.
    let again = call(&a, "connect", &[idb.into()]).await.unwrap();
    assert!(Object::is(&again, &conn_a));
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn messages_sent_on_open_reach_a_listener_attached_later() {
    let (ida, idb) = (uid("early-a"), uid("early-b"));
    let a = create(&ida).await;
    let b = create(&idb).await;
    // b answers every new connection at once, before a can listen.
    let greet = Function::new_with_args(
        "",
        "return (conn) => { conn.send('first'); conn.send('second'); }",
    );
    call(
        &b,
        "on",
        &["connection".into(), greet.call0(&JsValue::NULL).unwrap()],
    )
    .await
    .unwrap();
    let conn = call(&a, "connect", &[idb.into()]).await.unwrap();
    sleep(300).await;
    let got = Events::on(&conn, "message").await;
    assert_eq!(got.nth(0, 3000.0).await.as_string().unwrap(), "first");
    assert_eq!(got.nth(1, 3000.0).await.as_string().unwrap(), "second");
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_32_mib_message_arrives_intact_with_progress() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let size = 32 * 1024 * 1024;
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    let payload = Uint8Array::from(&data[..]);
    let at_b = Events::on(&conn_b, "message").await;
    let progress = Array::new();
    let on_progress = Function::new_with_args("q", "return (sent, total) => q.push([sent, total])")
        .call1(&JsValue::NULL, &progress)
        .unwrap();
    let opts = Object::new();
    Reflect::set(&opts, &"onProgress".into(), &on_progress).unwrap();
    let started = now();
    call(&conn_a, "send", &[payload.into(), opts.into()])
        .await
        .unwrap();
    let got = at_b
        .nth(0, 60_000.0)
        .await
        .dyn_into::<Uint8Array>()
        .unwrap();
    let ms = now() - started;
    log(&format!(
        "32 MiB message: {ms:.0} ms, {:.1} MB/s",
        size as f64 / 1e6 / (ms / 1000.0)
    ));
    assert_eq!(got.length() as usize, size);
    assert!(got.to_vec() == data, "the 32 MiB message arrived changed");
    assert!(progress.length() > 10);
    let last = Array::from(&progress.get(progress.length() - 1));
    assert_eq!(
        (last.get(0).as_f64(), last.get(1).as_f64()),
        (Some(size as f64), Some(size as f64))
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn simultaneous_connects_give_one_connection_on_each_side() {
    for round in 0..3 {
        let (ida, idb) = (uid("glare-a"), uid("glare-b"));
        let a = create(&ida).await;
        let b = create(&idb).await;
        let (ca, cb) = futures_util::future::join(
            call(&a, "connect", &[idb.clone().into()]),
            call(&b, "connect", &[ida.clone().into()]),
        )
        .await;
        let (ca, cb) = (ca.expect("a's connect"), cb.expect("b's connect"));
        assert_eq!(
            Array::from(&get(&a, "connections")).length(),
            1,
            "round {round}"
        );
        assert_eq!(
            Array::from(&get(&b, "connections")).length(),
            1,
            "round {round}"
        );
        let at_b = Events::on(&cb, "message").await;
        let at_a = Events::on(&ca, "message").await;
        call(&ca, "send", &["from a".into()]).await.unwrap();
        call(&cb, "send", &["from b".into()]).await.unwrap();
        assert_eq!(at_b.nth(0, 3000.0).await.as_string().unwrap(), "from a");
        assert_eq!(at_a.nth(0, 3000.0).await.as_string().unwrap(), "from b");
        call(&a, "close", &[]).await.unwrap();
        call(&b, "close", &[]).await.unwrap();
    }
}

#[wasm_bindgen_test]
async fn connecting_to_an_offline_id_rejects_quickly_by_name() {
    let a = create(&uid("lonely")).await;
    let started = now();
    let err = call(&a, "connect", &[uid("nobody").into()])
        .await
        .unwrap_err();
    let ms = now() - started;
    log(&format!("connect to an offline id rejected in {ms:.0} ms"));
    assert_eq!(error_name(&err), "PeerUnavailableError");
    assert_eq!(get(&err, "code").as_string().unwrap(), "unknown-peer");
    assert!(ms < 1000.0, "took {ms} ms");
    assert_eq!(Array::from(&get(&a, "connections")).length(), 0);
    let err = call(&a, "connect", &["not a valid id".into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "InvalidIdError");
    call(&a, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn closing_one_side_emits_close_on_the_other_quickly() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let closed = Events::on(&conn_b, "close").await;
    let started = now();
    call(&conn_a, "close", &[]).await.unwrap();
    let ev = closed.nth(0, 3000.0).await;
    log(&format!(
        "remote close seen in {:.0} ms: {}",
        now() - started,
        stringify(&ev)
    ));
    assert_eq!(get(&conn_b, "state").as_string().unwrap(), "closed");
    let err = call(&conn_b, "send", &["late".into()]).await.unwrap_err();
    assert_eq!(error_name(&err), "ClosedError");
    assert_eq!(Array::from(&get(&b, "connections")).length(), 0);
    call(&a, "close", &[]).await.unwrap();

    // Closing a whole peer closes its connections too, and the peer refuses
    // further use by name.
    let (a, b, _conn_a, conn_b) = connected_pair().await;
    let closed = Events::on(&conn_b, "close").await;
    call(&a, "close", &[]).await.unwrap();
    closed.nth(0, 3000.0).await;
    let err = call(&a, "connect", &[get(&b, "id")]).await.unwrap_err();
    assert_eq!(error_name(&err), "ClosedError");
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn ids_are_validated_and_a_taken_id_is_refused() {
    let err = create_with("no spaces allowed", &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "InvalidIdError");
    let id = uid("taken");
    let first = create(&id).await;
    let err = create_with(&id, &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "IdTakenError");
    assert!(get(&err, "message").as_string().unwrap().contains("taken"));
    // A broker-assigned id.
    let o = options(&[]);
    let anon = JsFuture::from(peerwire::api::peer::create_peer(o, None))
        .await
        .unwrap();
    assert!(get(&anon, "id").as_string().unwrap().starts_with("p-"));
    // Unknown options and unknown event names are refused, not ignored.
    let err = create_with(&uid("typo"), &[("brokr", "x".into())])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "InvalidArgumentError");
    let err = call(
        &first,
        "on",
        &["mesage".into(), Function::new_no_args("").into()],
    )
    .await
    .unwrap_err();
    assert!(
        get(&err, "message")
            .as_string()
            .unwrap()
            .contains("message")
    );
    call(&first, "close", &[]).await.unwrap();
    call(&anon, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn an_unreachable_broker_rejects_createpeer_by_name() {
    let o = Object::new();
    Reflect::set(&o, &"broker".into(), &"ws://127.0.0.1:9/ws".into()).unwrap();
    // A timeout-based rejection would take 60 s: the refusal must be enough.
    Reflect::set(&o, &"connectTimeout".into(), &60_000.into()).unwrap();
    let started = now();
    let err = JsFuture::from(peerwire::api::peer::create_peer(
        uid("x").into(),
        Some(wasm_bindgen::JsCast::unchecked_into(JsValue::from(o))),
    ))
    .await
    .unwrap_err();
    let ms = now() - started;
    log(&format!(
        "createPeer against a closed port rejected in {ms:.0} ms"
    ));
    assert_eq!(error_name(&err), "BrokerUnreachableError");
    assert_eq!(get(&err, "code").as_string().unwrap(), "broker-unreachable");
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("ws://127.0.0.1:9/ws"), "{message}");
    assert!(ms < 5000.0, "took {ms} ms");
}

#[wasm_bindgen_test]
async fn unreliable_connections_carry_small_messages_and_refuse_large_ones() {
    let (ida, idb) = (uid("u-a"), uid("u-b"));
    let extra = [("ordered", JsValue::FALSE), ("maxRetransmits", 0.into())];
    let a = create_with(&ida, &extra).await.unwrap();
    let b = create_with(&idb, &extra).await.unwrap();
    let incoming = Events::on(&b, "connection").await;
    let conn_a = call(&a, "connect", &[idb.into()]).await.unwrap();
    let conn_b = incoming.nth(0, 5000.0).await;
    let at_b = Events::on(&conn_b, "message").await;
    call(&conn_a, "send", &["tick".into()]).await.unwrap();
    assert_eq!(at_b.nth(0, 3000.0).await.as_string().unwrap(), "tick");
    let big = Uint8Array::new_with_length(100_000);
    let err = call(&conn_a, "send", &[big.into()]).await.unwrap_err();
    assert_eq!(error_name(&err), "MessageTooLargeError");
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn rooms_list_members_broadcast_and_share_state() {
    let room = uid("room");
    let a = create(&uid("ra")).await;
    let b = create(&uid("rb")).await;
    let ra = call(&a, "join", &[room.clone().into()]).await.unwrap();
    let joined = Events::on(&ra, "peer-joined").await;
    let rb = call(&b, "join", &[room.clone().into()]).await.unwrap();
    assert_eq!(Array::from(&get(&rb, "members")).length(), 2);
    assert_eq!(joined.nth(0, 3000.0).await, get(&b, "id"));

    let heard = Events::on(&ra, "broadcast").await;
    call(&rb, "broadcast", &[json(r#"{"say":"hi"}"#)])
        .await
        .unwrap();
    let ev = heard.nth(0, 3000.0).await;
    assert_eq!(get(&ev, "from"), get(&b, "id"));
    assert_eq!(stringify(&get(&ev, "data")), r#"{"say":"hi"}"#);

    let changes = Events::on(&rb, "state").await;
    let ttl = Object::new();
    Reflect::set(&ttl, &"ttl".into(), &300.into()).unwrap();
    call(&ra, "set", &["cursor".into(), json("[3,4]"), ttl.into()])
        .await
        .unwrap();
    let ev = changes.nth(0, 3000.0).await;
    assert_eq!(get(&ev, "key").as_string().unwrap(), "cursor");
    assert_eq!(
        stringify(&call(&rb, "get", &["cursor".into()]).await.unwrap()),
        "[3,4]"
    );
    let ev = changes.nth(1, 3000.0).await;
    assert_eq!(get(&ev, "removed").as_string().unwrap(), "expired");
    assert!(
        call(&rb, "get", &["cursor".into()])
            .await
            .unwrap()
            .is_undefined()
    );

    let left = Events::on(&ra, "peer-left").await;
    call(&rb, "leave", &[]).await.unwrap();
    assert_eq!(left.nth(0, 3000.0).await, get(&b, "id"));
    assert_eq!(Array::from(&get(&ra, "members")).length(), 1);
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn rendezvous_keys_connect_a_joiner_to_the_opener() {
    let key = format!("key_{}", (js_sys::Math::random() * 1e9) as u64);
    let opener = create(&uid("opener")).await;
    let joiner = create(&uid("joiner")).await;
    let handle = call(&opener, "openKey", &[key.clone().into()])
        .await
        .unwrap();
    let joiners = Events::on(&handle, "joiner").await;
    let gone = Events::on(&handle, "unavailable").await;
    let incoming = Events::on(&opener, "connection").await;
    let conn = call(&joiner, "joinKey", &[key.clone().into()])
        .await
        .unwrap();
    assert_eq!(get(&conn, "peerId"), get(&opener, "id"));
    assert_eq!(joiners.nth(0, 3000.0).await, get(&joiner, "id"));
    let conn_o = incoming.nth(0, 3000.0).await;
    let at_o = Events::on(&conn_o, "message").await;
    call(&conn, "send", &["via a key".into()]).await.unwrap();
    assert_eq!(at_o.nth(0, 3000.0).await.as_string().unwrap(), "via a key");
    call(&joiner, "close", &[]).await.unwrap();
    assert_eq!(gone.nth(0, 3000.0).await, get(&joiner, "id"));
    let err = call(&joiner, "joinKey", &[key.into()]).await.unwrap_err();
    assert_eq!(error_name(&err), "ClosedError");
    call(&opener, "close", &[]).await.unwrap();
}

/// The test broker runs with a 3 s listen timeout and a 5 s pipe deadline.
#[wasm_bindgen_test]
async fn rendezvous_deadlines_close_idle_keys_and_end_pairings_but_not_connections() {
    let opener = create(&uid("opener")).await;
    let joiner = create(&uid("joiner")).await;
    let idle = format!("idle_{}", (js_sys::Math::random() * 1e9) as u64);
    let handle = call(&opener, "openKey", &[idle.into()]).await.unwrap();
    let closed = Events::on(&handle, "closed").await;
    let ev = closed.nth(0, 6000.0).await;
    assert_eq!(get(&ev, "code").as_f64(), Some(4000.0));
    assert_eq!(get(&ev, "reason").as_string().unwrap(), "listen timeout");

    let key = format!("pair_{}", (js_sys::Math::random() * 1e9) as u64);
    let handle = call(&opener, "openKey", &[key.clone().into()])
        .await
        .unwrap();
    let gone = Events::on(&handle, "unavailable").await;
    let at_joiner = Events::on(&joiner, "unavailable").await;
    let incoming = Events::on(&opener, "connection").await;
    let conn = call(&joiner, "joinKey", &[key.clone().into()])
        .await
        .unwrap();
    let conn_o = incoming.nth(0, 3000.0).await;
    let at_o = Events::on(&conn_o, "message").await;
    assert_eq!(gone.nth(0, 8000.0).await, get(&joiner, "id"));
    let ev = at_joiner.nth(0, 3000.0).await;
    assert_eq!(get(&ev, "code").as_f64(), Some(4001.0));
    assert_eq!(get(&ev, "key").as_string().unwrap(), key);
    // The deadline ended the pairing on the broker, not the connection.
    call(&conn, "send", &["after the deadline".into()])
        .await
        .unwrap();
    assert_eq!(
        at_o.nth(0, 3000.0).await.as_string().unwrap(),
        "after the deadline"
    );
    call(&joiner, "close", &[]).await.unwrap();
    call(&opener, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn the_first_register_and_broker_events_reach_listeners_attached_after_createpeer() {
    let id = uid("reg");
    // createPeer resolves after the first registration was reported.
    let p = create(&id).await;
    let register = Events::on(&p, "register").await;
    let broker = Events::on(&p, "broker").await;
    assert_eq!(register.nth(0, 2000.0).await.as_string().unwrap(), id);
    let status = broker.nth(0, 2000.0).await;
    assert_eq!(get(&status, "state").as_string().unwrap(), "registered");
    assert_eq!(get(&status, "id").as_string().unwrap(), id);
    assert_eq!(get(&status, "reconnect").as_bool(), Some(false));
    // Delivered once: a later listener does not see it again. Kept events
    // are released in the microtask after `on()`; a broker round trip
    // (`find`) ends after it.
    let late = Events::on(&p, "register").await;
    call(&p, "find", &[id.clone().into()]).await.unwrap();
    assert_eq!((register.len(), broker.len(), late.len()), (1, 1, 0));
    call(&p, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn off_removes_a_listener_from_a_peer_and_a_connection() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let conn_kept = Events::on(&conn_b, "message").await;
    let conn_removed = Events::on(&conn_b, "message").await;
    let peer_kept = Events::on(&b, "message").await;
    let peer_removed = Events::on(&b, "message").await;
    call(&conn_a, "send", &["one".into()]).await.unwrap();
    conn_kept.nth(0, 3000.0).await;
    peer_kept.nth(0, 3000.0).await;
    assert_eq!((conn_removed.len(), peer_removed.len()), (1, 1));
    conn_removed.off(&conn_b, "message").await;
    peer_removed.off(&b, "message").await;
    call(&conn_a, "send", &["two".into()]).await.unwrap();
    assert_eq!(conn_kept.nth(1, 3000.0).await.as_string().unwrap(), "two");
    assert_eq!(
        get(&peer_kept.nth(1, 3000.0).await, "message")
            .as_string()
            .unwrap(),
        "two"
    );
    // Every listener of one message is called in the same turn: the
    // removed ones would have been called by now.
    assert_eq!((conn_removed.len(), peer_removed.len()), (1, 1));
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_mistyped_option_names_the_option_and_what_it_expects() {
    let message = |err: &JsValue| get(err, "message").as_string().unwrap();
    let err = create_with(&uid("opt"), &[("connectTimeout", "soon".into())])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "InvalidArgumentError");
    assert_eq!(
        message(&err),
        r#"options.connectTimeout must be a number of milliseconds, got the string "soon""#
    );
    let err = create_with(&uid("opt"), &[("ordered", 1.into())])
        .await
        .unwrap_err();
    assert_eq!(
        message(&err),
        "options.ordered must be true or false, got the number 1"
    );
    let err = create_with(&uid("opt"), &[("maxRetransmits", (-1).into())])
        .await
        .unwrap_err();
    assert_eq!(
        message(&err),
        "options.maxRetransmits must be a whole number from 0 to 65535, got the number -1"
    );
}

#[wasm_bindgen_test]
async fn options_are_refused_by_name_in_order_and_the_valid_ones_are_taken() {
    let message = |err: &JsValue| get(err, "message").as_string().unwrap();
    for (option, value, words) in [
        (
            "iceServers",
            json(r#"[{"urls":5}]"#),
            "options.iceServers must hold objects like { urls: 'stun:host:3478', username?, credential? }",
        ),
        (
            "iceServers",
            json(r#"["stun:127.0.0.1:3478"]"#),
            "options.iceServers must hold objects like",
        ),
        (
            "token",
            JsValue::from(5),
            "options.token must be a string, or a function returning a string or a Promise of one",
        ),
        (
            "relay",
            "sometimes".into(),
            r#"options.relay must be 'fallback', 'always' or 'never', got the string "sometimes""#,
        ),
        (
            "iceRestarts",
            101.into(),
            "options.iceRestarts must be a whole number from 0 to 100, got the number 101",
        ),
        (
            "connectTimeout",
            f64::NAN.into(),
            "options.connectTimeout must be a number of milliseconds, got the number null",
        ),
        (
            "bufferLow",
            1.5.into(),
            "options.bufferLow must be a number of bytes, got the number 1.5",
        ),
        (
            "debug",
            "toString".into(),
            "options.debug must be true, false, 'error', 'warn', 'info' or 'debug'",
        ),
        ("broker", json("[]"), "options.broker is an empty array"),
    ] {
        let err = create_with(&uid("opt"), &[(option, value)])
            .await
            .unwrap_err();
        assert_eq!(error_name(&err), "InvalidArgumentError", "{option}");
        assert!(message(&err).starts_with(words), "{}", message(&err));
    }
    // Not an object at all, and no options.
    let err = JsFuture::from(peerwire::api::peer::create_peer(json("5"), None))
        .await
        .unwrap_err();
    assert_eq!(
        message(&err),
        "options must be a plain object, got the number 5"
    );
    let err = JsFuture::from(peerwire::api::peer::create_peer("alice".into(), None))
        .await
        .unwrap_err();
    assert!(message(&err).starts_with("createPeer needs options with a broker URL"));
    // A bad id is named before the token, platform and broker URL checks,
    // and after the type checks (the order the errors always had).
    let err = create_with("bad id!", &[("token", 5.into())])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "InvalidIdError");
    let err = create_with("bad id!", &[("connectTimeout", "soon".into())])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "InvalidArgumentError");
    // Limits checked on the values taken, with their defaults.
    let err = create_with(&uid("opt"), &[("bufferLow", (8 * 1024 * 1024).into())])
        .await
        .unwrap_err();
    assert_eq!(
        message(&err),
        "bufferLow must be below bufferHigh, and bufferHigh at most 8 MiB"
    );
    let err = create_with(&uid("opt"), &[("resendBuffer", 1000.into())])
        .await
        .unwrap_err();
    assert_eq!(
        message(&err),
        "resendBuffer must be at least 64 KiB (65536)"
    );

    // Valid options of every kind are taken, and a stream's own options
    // are checked the same way.
    let a = create_with(
        &uid("opt-a"),
        &[
            ("ordered", false.into()),
            ("maxRetransmits", 3.into()),
            ("debug", false.into()),
            ("relay", "fallback".into()),
            ("iceServers", json(r#"[{"urls":["stun:127.0.0.1:9"]}]"#)),
            ("token", JsValue::NULL),
            ("connectTimeout", 20_000.into()),
        ],
    )
    .await
    .unwrap();
    let idb = uid("opt-b");
    let b = create(&idb).await;
    let conn = call(&a, "connect", &[idb.into()]).await.unwrap();
    let err = call(
        &conn,
        "openStream",
        &["s".into(), json(r#"{"ordered":"yes"}"#)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        message(&err),
        r#"stream options.ordered must be true or false, got the string "yes""#
    );
    let err = call(
        &conn,
        "openStream",
        &["s".into(), json(r#"{"order":true}"#)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        message(&err),
        r#"stream options has no field "order" (known: ordered, maxRetransmits)"#
    );
    let s = call(
        &conn,
        "openStream",
        &["s".into(), json(r#"{"ordered":true}"#)],
    )
    .await
    .unwrap();
    assert_eq!(get(&s, "state").as_string().unwrap(), "open");
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

/// Values that cannot be sent are refused by name, through `peer.send`
/// (converted after the connect) as through `conn.send`, and the peer
/// keeps working: an object whose `toJSON` gives nothing, a buffer
/// transferred elsewhere, a string over `maxMessageSize` (refused before it
/// is copied), a broadcast above the broker's frame size (refused before it
/// is sent: the broker would close the link), a timeout that is not a
/// number of milliseconds.
#[wasm_bindgen_test]
async fn values_that_cannot_be_sent_are_refused_by_name_and_the_peer_goes_on() {
    let (a, b, conn_a, _conn_b) = connected_pair().await;
    let idb = get(&b, "id");
    let got = Events::on(&b, "message").await;
    let check = js_eval(
        "return async (a, conn, to) => {
           const name = (p) => p.then(() => 'sent', (e) => e.name);
           const buf = new ArrayBuffer(8);
           const view = new Uint8Array(buf);
           structuredClone(buf, { transfer: [buf] });
           const big = 'x'.repeat(70_000_000);
           const room = await a.join(`big-${Math.random()}`);
           return [
             await name(a.send(to, { toJSON() {} })),
             await name(conn.send({ toJSON() {} })),
             await name(conn.send(buf)),
             await name(conn.send(view)),
             await name(a.send(to, big)),
             await name(room.broadcast('y'.repeat(100_000))),
             await name(room.set('k', 'z'.repeat(100_000))),
             await name(room.set('k', 1, { ttl: NaN })),
             await name(room.set('k', 1, { ttl: '5s' })),
             await name(a.send('nobody-has-this-id', undefined)),
             await name(a.send(to, 'still here')),
           ];
         };",
    );
    let out = call(
        &check,
        "call",
        &[JsValue::NULL, a.clone(), conn_a.clone(), idb],
    )
    .await
    .unwrap();
    let names: Vec<String> = Array::from(&out)
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "InvalidArgumentError",
            "InvalidArgumentError",
            "InvalidArgumentError",
            "InvalidArgumentError",
            "MessageTooLargeError",
            "MessageTooLargeError",
            "MessageTooLargeError",
            "InvalidArgumentError",
            "InvalidArgumentError",
            "InvalidArgumentError",
            "sent",
        ]
    );
    assert_eq!(
        got.nth(0, 5000.0)
            .await
            .dyn_into::<Object>()
            .ok()
            .map(|o| get(&o, "message").as_string()),
        Some(Some("still here".into()))
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

/// At `'warn'`, what the broker refuses is logged with its code: a
/// registration (the id is taken) and a request (a room name it rejects).
#[wasm_bindgen_test]
async fn the_debug_log_names_what_the_broker_refused() {
    let warn_lines = recorder();
    let swap: Function = js_eval(
        "return (warn) => { globalThis.__pwWarn = console.warn; console.warn = (l) => warn.note(String(l)); };",
    )
    .unchecked_into();
    swap.call1(&JsValue::NULL, &warn_lines).unwrap();
    let id = uid("dbg-refused");
    let a = create(&id).await;
    let taken = create_with(&id, &[("debug", "warn".into())]).await;
    let b = create_with(&uid("dbg-req"), &[("debug", "warn".into())])
        .await
        .unwrap();
    let bad_room = call(&b, "join", &["x".repeat(300).into()]).await;
    js_eval("console.warn = __pwWarn; return null;");
    assert!(taken.is_err() && bad_room.is_err());
    let warn: Vec<String> = warn_lines.iter().filter_map(|l| l.as_string()).collect();
    assert!(
        warn.iter()
            .any(|l| l.contains("the broker refused the registration: id-taken")),
        "{warn:?}"
    );
    assert!(
        warn.iter()
            .any(|l| l.contains("the broker refused request #") && l.contains("invalid-room")),
        "{warn:?}"
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

/// Evaluates a JavaScript function body (test scaffolding only)./// Evaluates a JavaScript function body (test scaffolding only).
fn js_eval(body: &str) -> JsValue {
    Function::new_no_args(body).call0(&JsValue::NULL).unwrap()
}

#[wasm_bindgen_test]
async fn stats_peer_connection_and_the_debug_log_at_a_level() {
    // console.info and console.debug lines are recorded for the test.
    let (info_lines, debug_lines) = (recorder(), recorder());
    let swap: Function = js_eval(
        "return (info, debug) => {
           globalThis.__pwConsole = { info: console.info, debug: console.debug };
           console.info = (l) => info.note(String(l));
           console.debug = (l) => debug.note(String(l));
         };",
    )
    .unchecked_into();
    swap.call2(&JsValue::NULL, &info_lines, &debug_lines)
        .unwrap();
    let (ida, idb) = (uid("dbg-a"), uid("dbg-b"));
    let a = create_with(&ida, &[("debug", "info".into())])
        .await
        .unwrap();
    let b = create(&idb).await;
    let conn = call(&a, "connect", &[idb.clone().into()]).await.unwrap();
    // The RTCPeerConnection's own "connected" may come after the channel
    // opened.
    let connected = Function::new_with_args(
        "l",
        &format!(
            "return l.some((x) => x.startsWith('peerwire {ida}:') && x.includes(': connection state connected'))"
        ),
    );
    let waited = until(&info_lines, &connected, 5000.0, "a connected line").await;
    js_eval("console.info = __pwConsole.info; console.debug = __pwConsole.debug; return null;");
    let info: Vec<String> = info_lines.iter().filter_map(|l| l.as_string()).collect();
    let debug = debug_lines.length();
    assert!(waited.is_ok(), "{info:?}");
    assert!(info.iter().any(|l| l.contains("registered as")), "{info:?}");
    // The ICE states, which the engine does not follow, come from the page.
    assert!(
        info.iter()
            .any(|l| l.starts_with(&format!("peerwire {ida}: "))
                && l.contains(&format!("(with \"{idb}\"): ICE connection state "))),
        "{info:?}"
    );
    // 'info' leaves out negotiation steps, which are 'debug' lines.
    assert!(!info.iter().any(|l| l.contains("candidate")), "{info:?}");
    assert_eq!(debug, 0);

    // The RTCPeerConnection behind the connection.
    let pc = get(&conn, "peerConnection");
    assert!(pc.is_instance_of::<web_sys::RtcPeerConnection>());
    assert_eq!(
        get(&pc, "connectionState").as_string().unwrap(),
        "connected"
    );

    // Stats: a loopback pair is direct (the remote's mDNS host candidate
    // may be learnt as peer-reflexive), with bytes counted.
    let got = Events::on(&b, "message").await;
    call(&conn, "send", &["x".repeat(10_000).into()])
        .await
        .unwrap();
    got.nth(0, 5000.0).await;
    let stats = call(&conn, "stats", &[]).await.unwrap();
    let route = get(&stats, "route").as_string().unwrap();
    assert!(route == "host" || route == "prflx", "{route}");
    assert_eq!(
        get(&stats, "localCandidateType").as_string().unwrap(),
        "host"
    );
    assert!(get(&stats, "bytesSent").as_f64().unwrap() > 10_000.0);
    assert!(get(&stats, "bytesReceived").as_f64().unwrap() > 0.0);
    assert!(get(&stats, "report").is_object());
    call(&a, "close", &[]).await.unwrap();
    // Released: no RTCPeerConnection, and stats() is a named error.
    assert!(get(&conn, "peerConnection").is_undefined());
    let err = call(&conn, "stats", &[]).await.unwrap_err();
    assert_eq!(error_name(&err), "ClosedError");
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn rtc_websocket_and_rtc_config_options_reach_the_browser_objects() {
    // Own constructors (as Node.js passes node-datachannel's and ws's) are
    // the ones used.
    let made = js_eval(
        "const made = { pcs: 0, sockets: 0 };
         made.rtc = class extends RTCPeerConnection { constructor(c) { super(c); made.pcs++; } };
         made.WebSocket = class extends WebSocket { constructor(u) { super(u); made.sockets++; } };
         return made;",
    );
    let (ida, idb) = (uid("rtc-a"), uid("rtc-b"));
    let a = create_with(
        &ida,
        &[
            ("rtc", get(&made, "rtc")),
            ("WebSocket", get(&made, "WebSocket")),
        ],
    )
    .await
    .unwrap();
    let b = create(&idb).await;
    let conn = call(&a, "connect", &[idb.clone().into()]).await.unwrap();
    assert_eq!(get(&conn, "state").as_string().unwrap(), "open");
    assert_eq!(get(&made, "pcs").as_f64(), Some(1.0));
    assert_eq!(get(&made, "sockets").as_f64(), Some(1.0));
    call(&a, "close", &[]).await.unwrap();

    // rtcConfig reaches RTCPeerConnection: relay-only with no TURN server
    // cannot connect on loopback, so connect() times out.
    let c = create_with(
        &uid("rtc-c"),
        &[
            ("rtcConfig", json(r#"{"iceTransportPolicy":"relay"}"#)),
            ("connectTimeout", 1500.into()),
        ],
    )
    .await
    .unwrap();
    let err = call(&c, "connect", &[idb.clone().into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "ConnectTimeoutError");
    call(&c, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();

    let message = |err: &JsValue| get(err, "message").as_string().unwrap();
    for (option, value, words) in [
        ("rtc", JsValue::from(5), "options.rtc must be"),
        ("WebSocket", "ws".into(), "options.WebSocket must be"),
        ("rtcConfig", json("[1]"), "options.rtcConfig must be"),
        (
            "debug",
            "loud".into(),
            "options.debug must be true, false, 'error'",
        ),
        ("rtcConfg", json("{}"), "options has no field \"rtcConfg\""),
    ] {
        let err = create_with(&uid("bad"), &[(option, value)])
            .await
            .unwrap_err();
        assert_eq!(error_name(&err), "InvalidArgumentError");
        assert!(message(&err).contains(words), "{}", message(&err));
    }
}
