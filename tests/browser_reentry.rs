//! Listeners are ordinary JavaScript and may call any SDK method from inside
//! any event. Each test here installs, on every event of one class, a
//! listener that calls `close()`, `connect()`, `send()`, `join()`/`leave()`
//! back into the SDK, and records whether that call threw. A RefCell borrow
//! held across an emit used to turn such a call into a wasm trap
//! (`RuntimeError: unreachable`); here every call must return normally, and
//! the module must keep working afterwards.

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// What the re-entering listeners report: one entry per call, `ok` or the
/// text of what it threw.
struct Calls {
    log: Array,
}

impl Calls {
    fn new() -> Calls {
        Calls { log: recorder() }
    }

    /// A listener running `body` (JavaScript, with the event as `e` and
    /// `ctx` as given, `q(promise)` to ignore a rejection) on every event,
    /// recording `<label>: ok` or `<label>: <what it threw>`.
    fn listener(&self, label: &str, ctx: &Object, body: &str) -> JsValue {
        let make = Function::new_with_args(
            "log, ctx, label",
            &format!(
                "const q = (p) => {{ if (p && typeof p.catch === 'function') p.catch(() => {{}}); }};
                 return (e) => {{
                   try {{ {body}; log.note(label + ': ok'); }}
                   catch (err) {{ log.note(label + ': threw ' + String(err)); }}
                 }};"
            ),
        );
        make.call3(&JsValue::NULL, &self.log, ctx, &label.into())
            .unwrap()
    }

    /// Registers the listener on `target` for `event`.
    async fn on(&self, target: &JsValue, event: &str, ctx: &Object, body: &str) {
        let l = self.listener(event, ctx, body);
        call(target, "on", &[event.into(), l]).await.unwrap();
    }

    /// Waits (up to `ms`) until `label` ran at least once.
    async fn wait_for(&self, label: &str, ms: f64) {
        let pred = Function::new_with_args(
            "l",
            &format!(
                "return l.some((e) => e.startsWith({:?}))",
                format!("{label}: ")
            ),
        );
        if let Err(e) = until(&self.log, &pred, ms, &format!("no '{label}' event")).await {
            panic!("{e}; calls so far: {:?}", self.entries());
        }
    }

    fn entries(&self) -> Vec<String> {
        self.log.iter().filter_map(|e| e.as_string()).collect()
    }

    /// Every call returned normally.
    fn assert_none_threw(&self) {
        let bad: Vec<String> = self
            .entries()
            .into_iter()
            .filter(|e| !e.ends_with(": ok"))
            .collect();
        assert!(bad.is_empty(), "calls from listeners threw: {bad:#?}");
    }
}

fn ctx(fields: &[(&str, &JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o
}

/// The module still works: two new peers connect and exchange a message.
async fn still_works() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let got = Events::on(&conn_b, "message").await;
    call(&conn_a, "send", &["still alive".into()])
        .await
        .unwrap();
    assert_eq!(got.nth(0, 3000.0).await.as_string().unwrap(), "still alive");
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn peer_listeners_may_call_back_into_the_sdk() {
    let calls = Calls::new();
    let other = create(&uid("other")).await;
    let other_id = get(&other, "id");

    // register and broker: the first ones are kept for a listener attached
    // after createPeer resolves.
    let p = create(&uid("reg")).await;
    let c = ctx(&[("peer", &p), ("other", &other_id)]);
    calls
        .on(
            &p,
            "register",
            &c,
            "q(ctx.peer.connect(ctx.other)); q(ctx.peer.send(ctx.other, 'x')); q(ctx.peer.join('r-' + e))",
        )
        .await;
    calls.wait_for("register", 3000.0).await;
    calls
        .on(
            &p,
            "broker",
            &c,
            "ctx.peer.disconnect(ctx.other); ctx.peer.connections; q(ctx.peer.close())",
        )
        .await;
    calls.wait_for("broker", 3000.0).await;

    // connection: close it, connect back, send, disconnect.
    let a = create(&uid("ca")).await;
    let b = create(&uid("cb")).await;
    let c = ctx(&[("peer", &b), ("other", &get(&a, "id"))]);
    calls
        .on(
            &b,
            "connection",
            &c,
            "e.close(); q(ctx.peer.send(ctx.other, 'x')); q(ctx.peer.connect(ctx.other)); ctx.peer.disconnect(ctx.other); q(ctx.peer.close())",
        )
        .await;
    let _ = start(&a, "connect", &[get(&b, "id")]).await;
    calls.wait_for("connection", 5000.0).await;
    call(&a, "close", &[]).await.unwrap();

    // message: answer, then close the whole peer.
    let a = create(&uid("ma")).await;
    let b = create(&uid("mb")).await;
    let c = ctx(&[("peer", &b)]);
    calls
        .on(
            &b,
            "message",
            &c,
            "q(ctx.peer.send(e.from, 'echo')); ctx.peer.disconnect(e.from); q(ctx.peer.close()); q(ctx.peer.connect(e.from))",
        )
        .await;
    let _ = call(&a, "send", &[get(&b, "id"), "hello".into()]).await;
    calls.wait_for("message", 5000.0).await;
    call(&a, "close", &[]).await.unwrap();

    // error: a peer whose RTCPeerConnection cannot be built reports each
    // incoming offer as an `error`.
    let bad_ice = json(r#"[{"urls":["not-a-stun-url"]}]"#);
    let broken = create_with(&uid("broken"), &[("iceServers", bad_ice)])
        .await
        .unwrap();
    let a = create_with(&uid("ea"), &[("connectTimeout", 2000.into())])
        .await
        .unwrap();
    let c = ctx(&[("peer", &broken), ("other", &get(&a, "id"))]);
    calls
        .on(
            &broken,
            "error",
            &c,
            "q(ctx.peer.connect(ctx.other)); q(ctx.peer.close())",
        )
        .await;
    let _ = start(&a, "connect", &[get(&broken, "id")]).await;
    calls.wait_for("error", 5000.0).await;
    call(&a, "close", &[]).await.unwrap();

    call(&other, "close", &[]).await.unwrap();
    calls.assert_none_threw();
    still_works().await;
}

#[wasm_bindgen_test]
async fn connection_and_stream_listeners_may_call_back_into_the_sdk() {
    let calls = Calls::new();

    // Connection message and close.
    let (a, b, _conn_a, conn_b) = connected_pair().await;
    let c = ctx(&[("peer", &b), ("conn", &conn_b), ("other", &get(&a, "id"))]);
    calls
        .on(
            &conn_b,
            "message",
            &c,
            "q(ctx.conn.send('re: ' + e)); ctx.conn.close(); q(ctx.conn.send('late')); q(ctx.conn.openStream('s'))",
        )
        .await;
    calls
        .on(
            &conn_b,
            "close",
            &c,
            "q(ctx.conn.send('x')); ctx.conn.close(); q(ctx.peer.connect(ctx.other)); q(ctx.peer.send(ctx.other, 'y'))",
        )
        .await;
    let _ = call(&a, "send", &[get(&b, "id"), "hello".into()]).await;
    calls.wait_for("message", 5000.0).await;
    calls.wait_for("close", 5000.0).await;
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();

    // Connection stream: close the new stream from inside the event.
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let c = ctx(&[("peer", &b), ("conn", &conn_b)]);
    calls
        .on(
            &conn_b,
            "stream",
            &c,
            "e.close(); q(e.send('x')); q(ctx.conn.openStream('back')); ctx.conn.close()",
        )
        .await;
    let _ = call(&conn_a, "openStream", &["s1".into()]).await;
    calls.wait_for("stream", 5000.0).await;
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();

    // Stream message, end and close.
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let incoming = Events::on(&conn_b, "stream").await;
    let s_a = call(&conn_a, "openStream", &["s2".into()]).await.unwrap();
    let s_b = incoming.nth(0, 5000.0).await;
    let c = ctx(&[("peer", &b), ("conn", &conn_b), ("stream", &s_b)]);
    calls
        .on(
            &s_b,
            "message",
            &c,
            "q(ctx.stream.send('re: ' + e)); q(ctx.stream.end())",
        )
        .await;
    calls
        .on(
            &s_b,
            "end",
            &c,
            "q(ctx.stream.send('after end')); ctx.stream.close(); q(ctx.conn.openStream('s3'))",
        )
        .await;
    calls
        .on(
            &s_b,
            "close",
            &c,
            "q(ctx.stream.send('x')); ctx.stream.close(); q(ctx.conn.openStream('s4')); ctx.conn.close(); q(ctx.peer.close())",
        )
        .await;
    call(&s_a, "send", &["hi".into()]).await.unwrap();
    calls.wait_for("message", 5000.0).await;
    call(&s_a, "end", &[]).await.unwrap();
    calls.wait_for("end", 5000.0).await;
    calls.wait_for("close", 5000.0).await;
    let _ = conn_a;
    call(&a, "close", &[]).await.unwrap();

    calls.assert_none_threw();
    still_works().await;
}

/// Two peers in a fresh room; the room handles of both.
async fn room_pair() -> (JsValue, JsValue, JsValue, JsValue, String) {
    let name = uid("room");
    let a = create(&uid("ra")).await;
    let b = create(&uid("rb")).await;
    let ra = call(&a, "join", &[name.clone().into()]).await.unwrap();
    let rb = call(&b, "join", &[name.clone().into()]).await.unwrap();
    (a, b, ra, rb, name)
}

#[wasm_bindgen_test]
async fn room_and_rendezvous_listeners_may_call_back_into_the_sdk() {
    let calls = Calls::new();

    // peer-joined: close the peer from inside the event.
    let name = uid("room");
    let a = create(&uid("ja")).await;
    let b = create(&uid("jb")).await;
    let ra = call(&a, "join", &[name.clone().into()]).await.unwrap();
    let c = ctx(&[("peer", &a), ("room", &ra), ("other", &get(&b, "id"))]);
    calls
        .on(
            &ra,
            "peer-joined",
            &c,
            "ctx.room.members; q(ctx.room.broadcast('hi')); q(ctx.peer.connect(e)); q(ctx.room.leave()); q(ctx.peer.join('x-' + e)); q(ctx.peer.close())",
        )
        .await;
    call(&b, "join", &[name.into()]).await.unwrap();
    calls.wait_for("peer-joined", 3000.0).await;
    call(&b, "close", &[]).await.unwrap();

    // peer-left.
    let (a, b, ra, rb, name) = room_pair().await;
    let c = ctx(&[("peer", &a), ("room", &ra), ("name", &name.into())]);
    calls
        .on(
            &ra,
            "peer-left",
            &c,
            "q(ctx.room.set('gone', e)); q(ctx.room.leave()); q(ctx.peer.join(ctx.name)); q(ctx.peer.close())",
        )
        .await;
    call(&rb, "leave", &[]).await.unwrap();
    calls.wait_for("peer-left", 3000.0).await;
    call(&b, "close", &[]).await.unwrap();

    // broadcast.
    let (a, b, ra, rb, _) = room_pair().await;
    let c = ctx(&[("peer", &a), ("room", &ra)]);
    calls
        .on(
            &ra,
            "broadcast",
            &c,
            "q(ctx.room.broadcast('back')); q(ctx.peer.send(e.from, 'x')); q(ctx.room.leave()); q(ctx.peer.close())",
        )
        .await;
    call(&rb, "broadcast", &[json(r#"{"n":1}"#)]).await.unwrap();
    calls.wait_for("broadcast", 3000.0).await;
    call(&b, "close", &[]).await.unwrap();

    // state.
    let (a, b, ra, rb, _) = room_pair().await;
    let c = ctx(&[("peer", &a), ("room", &ra)]);
    calls
        .on(
            &ra,
            "state",
            &c,
            "ctx.room.state; ctx.room.get(e.key); q(ctx.room.set('k2', 2)); q(ctx.room.delete(e.key)); q(ctx.room.leave()); q(ctx.peer.close())",
        )
        .await;
    call(&rb, "set", &["k".into(), json("1")]).await.unwrap();
    calls.wait_for("state", 3000.0).await;
    call(&b, "close", &[]).await.unwrap();

    // closed: rejoin, leave again, close the peer.
    let (a, b, ra, _rb, name) = room_pair().await;
    let c = ctx(&[("peer", &a), ("room", &ra), ("name", &name.into())]);
    calls
        .on(
            &ra,
            "closed",
            &c,
            "q(ctx.peer.join(ctx.name)); q(ctx.room.leave()); q(ctx.room.broadcast(1)); q(ctx.peer.close())",
        )
        .await;
    call(&a, "close", &[]).await.unwrap();
    calls.wait_for("closed", 3000.0).await;
    call(&b, "close", &[]).await.unwrap();

    // Rendezvous joiner and unavailable.
    let key = format!("re_{}", (js_sys::Math::random() * 1e9) as u64);
    let opener = create(&uid("opener")).await;
    let joiner = create(&uid("joiner")).await;
    let handle = call(&opener, "openKey", &[key.clone().into()])
        .await
        .unwrap();
    let c = ctx(&[("peer", &opener), ("handle", &handle)]);
    calls
        .on(
            &handle,
            "joiner",
            &c,
            "q(ctx.peer.connect(e)); q(ctx.peer.send(e, 'hi')); q(ctx.peer.close())",
        )
        .await;
    let _ = call(&joiner, "joinKey", &[key.into()]).await;
    calls.wait_for("joiner", 5000.0).await;
    call(&joiner, "close", &[]).await.unwrap();

    let key = format!("ru_{}", (js_sys::Math::random() * 1e9) as u64);
    let opener = create(&uid("opener")).await;
    let joiner = create(&uid("joiner")).await;
    let handle = call(&opener, "openKey", &[key.clone().into()])
        .await
        .unwrap();
    let c = ctx(&[("peer", &opener), ("handle", &handle)]);
    calls
        .on(
            &handle,
            "unavailable",
            &c,
            "q(ctx.handle.close()); q(ctx.peer.connect(e)); q(ctx.peer.close())",
        )
        .await;
    let _ = call(&joiner, "joinKey", &[key.into()]).await;
    call(&joiner, "close", &[]).await.unwrap();
    calls.wait_for("unavailable", 5000.0).await;

    calls.assert_none_threw();
    still_works().await;
}
