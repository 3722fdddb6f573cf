//! Streams, Node with its hubs, sockets and rest, in real headless Chromium,
//! driven through the JavaScript-facing API (PageHub and BroadcastChannel
//! in the page; NetworkHub through the real broker `tests/run.sh` starts).

#![cfg(target_arch = "wasm32")]

mod js;

use js::*;
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use peerwire::api::hubs::{BroadcastChannelHub, NetworkHub, PageHub};
use peerwire::api::node::Node;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn node_on(hub: JsValue) -> JsValue {
    Node::new(Some(obj(&[("hub", hub)]).unchecked_into()))
        .map(JsValue::from)
        .unwrap()
}

fn js_fn(args: &str, body: &str) -> Function {
    Function::new_with_args(args, body)
}

async fn address(node: &JsValue) -> String {
    call(node, "address", &[])
        .await
        .unwrap()
        .as_string()
        .unwrap()
}

/// Starts a socket server on `node`: `on_socket` is the JS source of the
/// callback, `(socket) => …`. Returns the server.
async fn socket_server(node: &JsValue, on_socket: &str, port: u16) -> JsValue {
    let callback = js_fn("", on_socket).call0(&JsValue::NULL).unwrap();
    let srv = call(&get(node, "sockets"), "createServer", &[callback])
        .await
        .unwrap();
    call(&srv, "listen", &[port.into()]).await.unwrap();
    srv
}

/// `node.sockets.connect(...args)`.
async fn socket_to(node: &JsValue, args: &[JsValue]) -> Result<JsValue, JsValue> {
    call(&get(node, "sockets"), "connect", args).await
}

// ---- streams ----------------------------------------------------------------

#[wasm_bindgen_test]
async fn streams_multiplex_one_connection_with_half_close() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let (sa, sb) = stream_pair(&conn_a, &conn_b, "chat").await;
    assert_eq!(get(&sb, "name").as_string().unwrap(), "chat");
    assert_eq!(get(&sa, "state").as_string().unwrap(), "open");

    let at_b = Events::on(&sb, "message").await;
    let at_a = Events::on(&sa, "message").await;
    let ended_b = Events::on(&sb, "end").await;
    let closed_a = Events::on(&sa, "close").await;
    let closed_b = Events::on(&sb, "close").await;
    call(&sa, "send", &["hello stream".into()]).await.unwrap();
    call(&sa, "send", &[json(r#"{"n":1}"#)]).await.unwrap();
    assert_eq!(
        at_b.nth(0, 3000.0).await.as_string().unwrap(),
        "hello stream"
    );
    assert_eq!(stringify(&at_b.nth(1, 3000.0).await), r#"{"n":1}"#);

    // a ends its side: b hears `end` and can still answer.
    call(&sa, "end", &[]).await.unwrap();
    ended_b.nth(0, 3000.0).await;
    assert_eq!(get(&sa, "state").as_string().unwrap(), "local-ended");
    assert_eq!(get(&sb, "state").as_string().unwrap(), "remote-ended");
    let err = call(&sa, "send", &["too late".into()]).await.unwrap_err();
    assert_eq!(error_name(&err), "InvalidArgumentError");
    call(&sb, "send", &["still answering".into()])
        .await
        .unwrap();
    assert_eq!(
        at_a.nth(0, 3000.0).await.as_string().unwrap(),
        "still answering"
    );
    // b ends too: both sides are closed (a on reading b's end, b when a
    // closes the channel).
    call(&sb, "end", &[]).await.unwrap();
    closed_a.nth(0, 3000.0).await;
    closed_b.nth(0, 3000.0).await;
    assert_eq!(get(&sa, "state").as_string().unwrap(), "closed");
    assert_eq!(get(&sb, "state").as_string().unwrap(), "closed");
    // The connection itself is untouched.
    let main = Events::on(&conn_b, "message").await;
    call(&conn_a, "send", &["main channel".into()])
        .await
        .unwrap();
    assert_eq!(
        main.nth(0, 3000.0).await.as_string().unwrap(),
        "main channel"
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn two_streams_carry_interleaved_traffic_without_head_of_line_blocking() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let incoming = Events::on(&conn_b, "stream").await;
    let bulk = call(&conn_a, "openStream", &["bulk".into()]).await.unwrap();
    let live = call(
        &conn_a,
        "openStream",
        &[
            "live".into(),
            obj(&[("ordered", JsValue::FALSE), ("maxRetransmits", 3.into())]),
        ],
    )
    .await
    .unwrap();
    let first = incoming.nth(0, 5000.0).await;
    let second = incoming.nth(1, 5000.0).await;
    let (bulk_b, live_b) = if get(&first, "name").as_string().unwrap() == "bulk" {
        (first, second)
    } else {
        (second, first)
    };
    let bulk_in = Events::on(&bulk_b, "message").await;
    let live_in = Events::on(&live_b, "message").await;

    // A 16 MiB message on one stream, and while it is on its way, small
    // messages on the other: they arrive long before the big one.
    let big = Uint8Array::new_with_length(16 * 1024 * 1024);
    let big_args = [JsValue::from(big)];
    let sending = call(&bulk, "send", &big_args);
    let started = now();
    let small = async {
        for i in 0..5 {
            call(&live, "send", &[format!("tick {i}").into()])
                .await
                .unwrap();
        }
        live_in.nth(4, 10_000.0).await;
        now() - started
    };
    let (sent, small_ms) = futures_util::future::join(sending, small).await;
    sent.unwrap();
    let big_in = bulk_in.nth(0, 60_000.0).await;
    let big_ms = now() - started;
    log(&format!(
        "small messages on a second stream: {small_ms:.0} ms; the 16 MiB message on the first: {big_ms:.0} ms"
    ));
    assert_eq!(
        big_in.dyn_into::<Uint8Array>().unwrap().length(),
        16 * 1024 * 1024
    );
    assert!(
        small_ms < big_ms / 2.0,
        "the live stream waited behind the bulk one: {small_ms} ms vs {big_ms} ms"
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn streams_pipe_through_whatwg_readable_and_writable() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let (sa, sb) = stream_pair(&conn_a, &conn_b, "pipe").await;
    // Write through a WritableStream, read through a ReadableStream.
    let write = js_fn(
        "s",
        "return (async () => { const w = s.writable.getWriter(); await w.write('one'); await w.write('two'); await w.close(); })()",
    );
    let read = js_fn(
        "s",
        "return (async () => { const out = []; for await (const m of s.readable) out.push(m); return out; })()",
    );
    let read_args = [JsValue::NULL, sb.clone()];
    let reading = call(&read, "call", &read_args);
    call(&write, "call", &[JsValue::NULL, sa.clone()])
        .await
        .unwrap();
    let got = Array::from(&reading.await.unwrap());
    assert_eq!(
        (got.get(0).as_string(), got.get(1).as_string(), got.length()),
        (Some("one".into()), Some("two".into()), 2)
    );
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

/// A slow reader of `readable` gets every message once, in order, then
/// the end; the getters give one stream each.
#[wasm_bindgen_test]
async fn a_slow_readable_gets_every_message_in_order() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let (sa, sb) = stream_pair(&conn_a, &conn_b, "slow").await;
    let same = js_fn(
        "s",
        "return s.readable === s.readable && s.writable === s.writable",
    );
    assert_eq!(
        same.call1(&JsValue::NULL, &sb).unwrap().as_bool(),
        Some(true)
    );
    // The reader stops after every 50 messages to let a task run (other
    // work; data channel events come in meanwhile): its queue fills, the
    // SDK holds the rest, and hands them over as it reads on.
    let read = js_fn(
        "s",
        "return (async () => { const out = []; for await (const m of s.readable) { out.push(m); \
         if (out.length % 50 === 0) await new Promise((r) => { const c = new MessageChannel(); c.port1.onmessage = r; c.port2.postMessage(0); }); } \
         return out; })()",
    );
    let read_args = [JsValue::NULL, sb.clone()];
    let reading = call(&read, "call", &read_args);
    let send = js_fn(
        "s",
        "return (async () => { for (let i = 0; i < 2000; i++) s.send(`m${i}`); await s.end(); })()",
    );
    call(&send, "call", &[JsValue::NULL, sa.clone()])
        .await
        .unwrap();
    let got = Array::from(&reading.await.unwrap());
    let got: Vec<String> = got.iter().map(|m| m.as_string().unwrap()).collect();
    let want: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

/// A reader that stops reading bounds what the SDK holds: past
/// `connectionBudget` the connection closes with `LimitExceededError`,
/// and the readable errors with it (it does not queue without end).
#[wasm_bindgen_test]
async fn a_stalled_readable_is_bounded_by_the_connection_budget() {
    let (ida, idb) = (uid("a"), uid("b"));
    let a = create(&ida).await;
    let b = create_with(&idb, &[("connectionBudget", (256 * 1024).into())])
        .await
        .unwrap();
    let incoming = Events::on(&b, "connection").await;
    let conn_a = call(&a, "connect", &[idb.into()]).await.unwrap();
    let conn_b = incoming.nth(0, 5000.0).await;
    let streams = Events::on(&conn_b, "stream").await;
    let sa = call(&conn_a, "openStream", &["stall".into()])
        .await
        .unwrap();
    let sb = streams.nth(0, 5000.0).await;
    // One read, then none: what comes after waits in the SDK.
    let stall = js_fn(
        "s",
        "const reader = s.readable.getReader(); \
         return reader.read().then(() => new Promise((resolve) => { \
           s.on('error', () => reader.read().then(() => resolve('read after the error'), (e) => resolve(e.name))); }))",
    );
    let stall_args = [JsValue::NULL, sb.clone()];
    let stalled = call(&stall, "call", &stall_args);
    // 1 MiB in 4 KiB messages: four times the budget.
    let send = js_fn(
        "s",
        "const chunk = new Uint8Array(4096); \
         for (let i = 0; i < 256; i++) s.send(chunk).catch(() => {}); return Promise.resolve()",
    );
    call(&send, "call", &[JsValue::NULL, sa.clone()])
        .await
        .unwrap();
    let outcome = stalled.await.unwrap().as_string().unwrap();
    assert_eq!(outcome, "LimitExceededError");
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

/// Once an object's `close` has been delivered, `on()` is refused with
/// `ClosedError` (a listener added then would never hear anything), and
/// so is reading its `readable`; `off()` stays harmless.
#[wasm_bindgen_test]
async fn listeners_on_a_closed_object_are_refused_by_name() {
    let (a, b, conn_a, conn_b) = connected_pair().await;
    let (sa, sb) = stream_pair(&conn_a, &conn_b, "short").await;
    let closed = Events::on(&sb, "close").await;
    call(&sa, "close", &[]).await.unwrap();
    closed.nth(0, 5000.0).await;
    let check = js_fn(
        "s",
        "const name = (f) => { try { f(); return 'ok'; } catch (e) { return e.name; } }; \
         return s.readable.getReader().read().then(() => 'read', (e) => e.name).then((read) => \
           [name(() => s.on('end', () => {})), name(() => s.off('end', () => {})), read]);",
    );
    let out = call(&check, "call", &[JsValue::NULL, sb.clone()])
        .await
        .unwrap();
    let names: Vec<String> = Array::from(&out)
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(names, ["ClosedError", "ok", "ClosedError"]);
    call(&a, "close", &[]).await.unwrap();
    call(&b, "close", &[]).await.unwrap();
}

// ---- Node, hubs, sockets ------------------------------------------------------

/// Ports, statuses and timeouts out of range are refused by name, not
/// wrapped (70000 is not port 4464) nor taken as "at once".
#[wasm_bindgen_test]
async fn ports_statuses_and_timeouts_out_of_range_are_refused_by_name() {
    let hub: JsValue = PageHub::new().into();
    let node = node_on(hub);
    let me = address(&node).await;
    let check = js_fn(
        "n, me",
        "const name = (f) => { try { const p = f(); return p && p.then ? p.then(() => 'ok', (e) => e.name) : 'ok'; } \
           catch (e) { return e.name; } }; \
         return Promise.all([ \
           name(() => n.sockets.connect(me, 70000)), \
           name(() => n.sockets.connect(me, 7.5)), \
           name(() => n.sockets.connect(me, 7, { timeout: NaN })), \
           name(() => n.sockets.connect(me, 7, { timeout: -1 })), \
           name(() => n.sockets.createServer(() => {}).listen(-1)), \
           name(() => n.rest.createServer(() => {}).listen(65536)), \
           name(() => n.rest.fetch(`rest://${me}:7/`, { timeout: 'soon' })), \
         ]);",
    );
    let out = call(&check, "call", &[JsValue::NULL, node.clone(), me.into()])
        .await
        .unwrap();
    let names: Vec<String> = Array::from(&out)
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(names, vec!["InvalidArgumentError"; 7]);
    call(&node, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn nodes_on_a_page_hub_get_addresses_names_and_sockets() {
    let hub: JsValue = PageHub::new().into();
    let server = node_on(hub.clone());
    let client = node_on(hub.clone());
    let server_addr = address(&server).await;
    assert!(server_addr.starts_with("page-"));
    assert_ne!(server_addr, address(&client).await);

    call(&get(&server, "hub"), "register", &["echo-server".into()])
        .await
        .unwrap();
    let found = call(&get(&client, "hub"), "lookup", &["echo-server".into()])
        .await
        .unwrap();
    assert_eq!(found.as_string().unwrap(), server_addr);
    let err = call(&get(&client, "hub"), "lookup", &["nobody-here".into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "UnknownHostError");
    let err = call(&get(&client, "hub"), "register", &["echo-server".into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "HostnameTakenError");

    // An echo server on port 7; the client reaches it by hostname.
    let echo = js_fn(
        "",
        "return (socket) => socket.on('message', (m) => socket.send(m))",
    );
    let srv = call(
        &get(&server, "sockets"),
        "createServer",
        &[echo.call0(&JsValue::NULL).unwrap()],
    )
    .await
    .unwrap();
    call(&srv, "listen", &[7.into()]).await.unwrap();
    let socket = socket_to(&client, &["echo-server".into(), 7.into()])
        .await
        .unwrap();
    assert_eq!(get(&socket, "port").as_f64(), Some(7.0));
    let replies = Events::on(&socket, "message").await;
    call(&socket, "send", &["ping".into()]).await.unwrap();
    assert_eq!(replies.nth(0, 5000.0).await.as_string().unwrap(), "ping");
    // Larger than one data-channel message: arrives whole.
    let big = Uint8Array::new_with_length(3 * 1024 * 1024 + 7);
    big.fill(9, 0, big.length());
    call(&socket, "send", &[big.into()]).await.unwrap();
    let back = replies
        .nth(1, 20_000.0)
        .await
        .dyn_into::<Uint8Array>()
        .unwrap();
    assert_eq!(back.length(), 3 * 1024 * 1024 + 7);
    assert!(back.to_vec().iter().all(|b| *b == 9));

    // Nobody listens on port 8: refused at once, by name.
    let started = now();
    let err = socket_to(&client, &[server_addr.clone().into(), 8.into()])
        .await
        .unwrap_err();
    let ms = now() - started;
    log(&format!("socket to a closed port refused in {ms:.0} ms"));
    assert_eq!(error_name(&err), "PortClosedError");
    assert!(ms < 100.0, "took {ms} ms");
    // The port taken twice is refused.
    let again = call(
        &get(&server, "sockets"),
        "createServer",
        &[echo.call0(&JsValue::NULL).unwrap()],
    )
    .await
    .unwrap();
    assert_eq!(
        error_name(&call(&again, "listen", &[7.into()]).await.unwrap_err()),
        "InvalidArgumentError"
    );
    // An unknown address fails fast on a PageHub.
    let err = socket_to(&client, &["page-99999".into(), 7.into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "PeerUnavailableError");
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn localhost_is_the_node_itself_without_webrtc() {
    let node = node_on(PageHub::new().into());
    let echo = js_fn(
        "",
        "return (socket) => socket.on('message', (m) => socket.send('echo: ' + m))",
    );
    let srv = call(
        &get(&node, "sockets"),
        "createServer",
        &[echo.call0(&JsValue::NULL).unwrap()],
    )
    .await
    .unwrap();
    call(&srv, "listen", &[5000.into()]).await.unwrap();
    let socket = socket_to(&node, &["localhost".into(), 5000.into()])
        .await
        .unwrap();
    let replies = Events::on(&socket, "message").await;
    call(&socket, "send", &["hi".into()]).await.unwrap();
    assert_eq!(
        replies.nth(0, 3000.0).await.as_string().unwrap(),
        "echo: hi"
    );
    assert_eq!(
        Array::from(&get(&node, "connections")).length(),
        0,
        "no WebRTC connection for localhost"
    );
    let err = socket_to(&node, &["localhost".into(), 5001.into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "PortClosedError");
    call(&node, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_broadcast_channel_hub_and_a_custom_js_hub_carry_signals() {
    // Two hub instances on one channel name behave like two tabs.
    let name = uid("bc");
    let hub_1: JsValue = BroadcastChannelHub::new(Some(name.clone()), None)
        .unwrap()
        .into();
    let hub_2: JsValue = BroadcastChannelHub::new(Some(name), None).unwrap().into();
    let server = node_on(hub_1.clone());
    let client = node_on(hub_2.clone());
    call(&get(&server, "hub"), "register", &["bc-server".into()])
        .await
        .unwrap();
    socket_server(
        &server,
        "return (socket) => socket.send('hello over BroadcastChannel signalling')",
        1,
    )
    .await;
    let looked = call(&get(&client, "hub"), "lookup", &["bc-server".into()])
        .await
        .unwrap();
    assert_eq!(looked.as_string().unwrap(), address(&server).await);
    let socket = socket_to(&client, &["bc-server".into(), 1.into()])
        .await
        .unwrap();
    let got = Events::on(&socket, "message").await;
    assert_eq!(
        got.nth(0, 5000.0).await.as_string().unwrap(),
        "hello over BroadcastChannel signalling"
    );
    // Connect timeouts are configurable: an address no tab has.
    let started = now();
    let err = call(
        &get(&client, "sockets"),
        "connect",
        &["bc-0".into(), 1.into(), obj(&[("timeout", 500.into())])],
    )
    .await
    .unwrap_err();
    let ms = now() - started;
    assert!(
        ["ConnectTimeoutError"].contains(&error_name(&err).as_str()),
        "{}",
        error_name(&err)
    );
    assert!((400.0..3000.0).contains(&ms), "gave up after {ms} ms");
    for n in [&server, &client] {
        call(n, "close", &[]).await.unwrap();
    }

    // A hub written in JavaScript: a map of endpoints.
    let make = js_fn(
        "",
        "const ends = new Map(); const names = new Map(); let n = 0;
         return {
           attach(deliver) { const a = 'custom-' + (++n); ends.set(a, deliver); return a; },
           detach(a) { ends.delete(a); },
           send(from, to, data) { const d = ends.get(to); if (!d) throw new Error('no ' + to); queueMicrotask(() => d(from, data)); },
           register(a, h) { names.set(h, a); },
           async lookup(h) { if (!names.has(h)) { const e = new Error('unknown ' + h); e.name = 'UnknownHostError'; throw e; } return names.get(h); },
         };",
    );
    let custom = make.call0(&JsValue::NULL).unwrap();
    let x = node_on(custom.clone());
    let y = node_on(custom);
    assert!(address(&x).await.starts_with("custom-"));
    let incoming = Events::on(&y, "connection").await;
    let conn = call(&x, "connect", &[address(&y).await.into()])
        .await
        .unwrap();
    let at_y = Events::on(&incoming.nth(0, 5000.0).await, "message").await;
    call(&conn, "send", &["through a custom hub".into()])
        .await
        .unwrap();
    assert_eq!(
        at_y.nth(0, 3000.0).await.as_string().unwrap(),
        "through a custom hub"
    );
    call(&x, "close", &[]).await.unwrap();
    call(&y, "close", &[]).await.unwrap();
}

// ---- rest ----------------------------------------------------------------------

/// A rest server on `node`, port 80, with the routes the tests use.
async fn rest_server(node: &JsValue) -> JsValue {
    let setup = js_fn(
        "app",
        "app.get('/users/:id', (req, res) => res.json({ id: req.params.id, q: req.query.q, h: req.headers['x-test'], from: req.from }));
         app.post('/echo', async (req, res) => { res.status(201); res.headers['x-kind'] = req.headers['content-type']; await res.send(req.text()); });
         app.put('/json', (req, res) => res.json({ got: req.json() }));
         app.patch('/bytes', (req, res) => res.bytes(new Uint8Array(req.bytes()).reverse()));
         app.delete('/gone', (req, res) => res.status(204).send());
         app.all('/any', (req, res) => res.send(req.method));
         app.get('/boom', () => { throw new Error('the handler exploded'); });
         app.get('/big/:n', (req, res) => res.bytes(new Uint8Array(Number(req.params.n)).fill(7)));
         app.get('/streamed', (req, res) => res.stream((async function* () { for (let i = 0; i < 5; i++) { yield 'chunk ' + i + ';'; } })()));
         app.get('/records', (req, res) => {
           globalThis.produced = 0;
           return res.records((async function* () { for (let i = 0; i < 100; i++) { globalThis.produced++; yield { i }; } })());
         });
         return app;",
    );
    let app = call(&get(node, "rest"), "createServer", &[]).await.unwrap();
    let app = setup.call1(&JsValue::NULL, &app).unwrap();
    call(&app, "listen", &[]).await.unwrap();
    app
}

async fn fetch(node: &JsValue, url: &str, init: Option<JsValue>) -> Result<JsValue, JsValue> {
    let mut args = vec![JsValue::from_str(url)];
    args.extend(init);
    call(&get(node, "rest"), "fetch", &args).await
}

#[wasm_bindgen_test]
async fn rest_routes_methods_params_queries_headers_and_bodies() {
    let hub: JsValue = PageHub::new().into();
    let server = node_on(hub.clone());
    let client = node_on(hub);
    rest_server(&server).await;
    let addr = address(&server).await;
    let client_addr = address(&client).await;

    let r = fetch(
        &client,
        &format!("rest://{addr}/users/42?q=find%20me"),
        Some(obj(&[("headers", obj(&[("X-Test", "yes".into())]))])),
    )
    .await
    .unwrap();
    assert_eq!(get(&r, "status").as_f64(), Some(200.0));
    assert_eq!(
        get(&get(&r, "headers"), "content-type")
            .as_string()
            .unwrap(),
        "application/json"
    );
    let body = call(&r, "json", &[]).await.unwrap();
    assert_eq!(
        stringify(&body),
        format!(r#"{{"id":"42","q":"find me","h":"yes","from":"{client_addr}"}}"#)
    );

    let r = fetch(
        &client,
        &format!("rest://{addr}/echo"),
        Some(obj(&[
            ("method", "POST".into()),
            ("body", "some text".into()),
        ])),
    )
    .await
    .unwrap();
    assert_eq!(get(&r, "status").as_f64(), Some(201.0));
    assert!(
        get(&get(&r, "headers"), "x-kind")
            .as_string()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        call(&r, "text", &[]).await.unwrap().as_string().unwrap(),
        "some text"
    );

    let r = fetch(
        &client,
        &format!("rest://{addr}/json"),
        Some(obj(&[
            ("method", "PUT".into()),
            ("body", json(r#"{"a":[1,2]}"#)),
        ])),
    )
    .await
    .unwrap();
    assert_eq!(
        stringify(&call(&r, "json", &[]).await.unwrap()),
        r#"{"got":{"a":[1,2]}}"#
    );
    let r = fetch(
        &client,
        &format!("rest://{addr}/bytes"),
        Some(obj(&[
            ("method", "PATCH".into()),
            ("body", Uint8Array::from(&[1u8, 2, 3][..]).into()),
        ])),
    )
    .await
    .unwrap();
    let bytes = call(&r, "bytes", &[])
        .await
        .unwrap()
        .dyn_into::<Uint8Array>()
        .unwrap();
    assert_eq!(bytes.to_vec(), vec![3, 2, 1]);
    let r = fetch(
        &client,
        &format!("rest://{addr}/gone"),
        Some(obj(&[("method", "DELETE".into())])),
    )
    .await
    .unwrap();
    assert_eq!(get(&r, "status").as_f64(), Some(204.0));
    let r = fetch(
        &client,
        &format!("rest://{addr}/any"),
        Some(obj(&[("method", "PATCH".into())])),
    )
    .await
    .unwrap();
    assert_eq!(
        call(&r, "text", &[]).await.unwrap().as_string().unwrap(),
        "PATCH"
    );

    // Unknown route: 404. A throwing handler: 500 with its message.
    let r = fetch(&client, &format!("rest://{addr}/nowhere"), None)
        .await
        .unwrap();
    assert_eq!(get(&r, "status").as_f64(), Some(404.0));
    assert!(
        call(&r, "text", &[])
            .await
            .unwrap()
            .as_string()
            .unwrap()
            .contains("no route for GET /nowhere")
    );
    let r = fetch(&client, &format!("rest://{addr}/boom"), None)
        .await
        .unwrap();
    assert_eq!(get(&r, "status").as_f64(), Some(500.0));
    assert!(
        call(&r, "text", &[])
            .await
            .unwrap()
            .as_string()
            .unwrap()
            .contains("the handler exploded")
    );
    assert!(!get(&r, "ok").as_bool().unwrap());

    // Unreachable: a node that does not exist, a port nobody serves.
    let err = fetch(&client, "rest://page-424242/", None)
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "PeerUnavailableError");
    let err = fetch(&client, &format!("rest://{addr}:81/"), None)
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "PortClosedError");
    let err = fetch(&client, "http://example.org/", None)
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "InvalidArgumentError");
    // localhost reaches the node's own server, in memory.
    let r = fetch(&server, "rest://localhost/any", None).await.unwrap();
    assert_eq!(
        call(&r, "text", &[]).await.unwrap().as_string().unwrap(),
        "GET"
    );
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn rest_carries_a_10_mib_body_streams_bodies_and_serves_100_concurrent_fetches() {
    let hub: JsValue = PageHub::new().into();
    let server = node_on(hub.clone());
    let client = node_on(hub);
    rest_server(&server).await;
    let addr = address(&server).await;

    let size = 10 * 1024 * 1024;
    let started = now();
    let r = fetch(&client, &format!("rest://{addr}/big/{size}"), None)
        .await
        .unwrap();
    let body = call(&r, "arrayBuffer", &[]).await.unwrap();
    log(&format!("10 MiB rest body in {:.0} ms", now() - started));
    let body = Uint8Array::new(&body);
    assert_eq!(body.length() as usize, size);
    assert!(body.to_vec().iter().all(|b| *b == 7));

    // A streamed body, read chunk by chunk through `body`.
    let r = fetch(&client, &format!("rest://{addr}/streamed"), None)
        .await
        .unwrap();
    let read = js_fn(
        "r",
        "return (async () => { const dec = new TextDecoder(); let s = '', n = 0; for await (const c of r.body) { s += dec.decode(c); n++; } return [s, n]; })()",
    );
    let out = Array::from(&call(&read, "call", &[JsValue::NULL, r]).await.unwrap());
    assert_eq!(
        out.get(0).as_string().unwrap(),
        "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;"
    );
    assert_eq!(out.get(1).as_f64(), Some(5.0));

    // 100 at once, each on its own socket.
    let started = now();
    let urls: Vec<String> = (0..100)
        .map(|i| format!("rest://{addr}/users/{i}"))
        .collect();
    let all: Vec<_> = urls.iter().map(|u| fetch(&client, u, None)).collect();
    let results = futures_util::future::join_all(all).await;
    for (i, r) in results.into_iter().enumerate() {
        let body = call(&r.unwrap(), "json", &[]).await.unwrap();
        assert_eq!(get(&body, "id").as_string().unwrap(), i.to_string());
    }
    log(&format!(
        "100 concurrent fetches in {:.0} ms",
        now() - started
    ));
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn record_sets_are_pulled_one_record_at_a_time() {
    let hub: JsValue = PageHub::new().into();
    let server = node_on(hub.clone());
    let client = node_on(hub);
    rest_server(&server).await;
    let addr = address(&server).await;
    let r = fetch(&client, &format!("rest://{addr}/records"), None)
        .await
        .unwrap();
    let produced = || {
        Reflect::get(&js_sys::global(), &"produced".into())
            .unwrap()
            .as_f64()
            .unwrap()
    };
    sleep(200).await;
    assert_eq!(
        produced(),
        0.0,
        "nothing is produced before the client asks"
    );
    let take = js_fn(
        "r, n",
        "return (async () => { const got = []; for await (const rec of r.records()) { got.push(rec.i); if (got.length === n) break; } return got; })()",
    );
    let got = Array::from(
        &call(&take, "call", &[JsValue::NULL, r, 3.into()])
            .await
            .unwrap(),
    );
    assert_eq!(
        got.to_vec()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect::<Vec<_>>(),
        vec![0.0, 1.0, 2.0]
    );
    sleep(200).await;
    assert_eq!(produced(), 3.0, "exactly the records pulled were produced");
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn nodes_on_a_network_hub_use_the_broker_for_names_sockets_and_rest() {
    let server = node_on(NetworkHub::new(broker()).unwrap().into());
    let client = node_on(NetworkHub::new(broker()).unwrap().into());
    let name = uid("api");
    call(&get(&server, "hub"), "register", &[name.clone().into()])
        .await
        .unwrap();
    rest_server(&server).await;
    let r = fetch(&client, &format!("rest://{name}/users/7?q=net"), None)
        .await
        .unwrap();
    let body = call(&r, "json", &[]).await.unwrap();
    assert_eq!(get(&body, "id").as_string().unwrap(), "7");
    assert_eq!(
        get(&body, "from").as_string().unwrap(),
        address(&client).await
    );
    // The same data path as on a PageHub: a 10 MiB body, concurrent fetches.
    let r = fetch(
        &client,
        &format!("rest://{name}/big/{}", 10 * 1024 * 1024),
        None,
    )
    .await
    .unwrap();
    let body = Uint8Array::new(&call(&r, "arrayBuffer", &[]).await.unwrap());
    assert_eq!(body.length(), 10 * 1024 * 1024);
    let urls: Vec<String> = (0..100)
        .map(|i| format!("rest://{name}/users/{i}"))
        .collect();
    let all: Vec<_> = urls.iter().map(|u| fetch(&client, u, None)).collect();
    for (i, r) in futures_util::future::join_all(all)
        .await
        .into_iter()
        .enumerate()
    {
        let body = call(&r.unwrap(), "json", &[]).await.unwrap();
        assert_eq!(get(&body, "id").as_string().unwrap(), i.to_string());
    }
    let err = call(&get(&client, "hub"), "lookup", &[uid("missing").into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "UnknownHostError");
    // A node on the broker refuses a closed port at once too.
    let err = socket_to(&client, &[name.into(), 9.into()])
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "PortClosedError");
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

/// A listener that answers at once can overtake the dialer's own channel
/// `open` event (Chrome delivers the frames first); the dialer must still
/// open and read everything, in order. Twenty sockets make the race likely.
#[wasm_bindgen_test]
async fn frames_that_overtake_the_channel_open_event_are_not_lost() {
    let hub: JsValue = PageHub::new().into();
    let server = node_on(hub.clone());
    let client = node_on(hub);
    socket_server(
        &server,
        "return (socket) => { for (let i = 0; i < 5; i++) socket.send('m' + i); socket.end(); }",
        11,
    )
    .await;
    let to = address(&server).await;
    for round in 0..20 {
        let socket = socket_to(
            &client,
            &[
                to.clone().into(),
                11.into(),
                obj(&[("timeout", 5000.into())]),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("round {round}: {}", stringify(&e)));
        let ended = Events::on(&socket, "end").await;
        let got = Events::on(&socket, "message").await;
        for i in 0..5 {
            assert_eq!(
                got.nth(i, 3000.0).await.as_string().unwrap(),
                format!("m{i}")
            );
        }
        ended.nth(0, 3000.0).await;
        call(&socket, "close", &[]).await.unwrap();
    }
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
async fn messages_before_the_first_listener_are_held_not_lost() {
    let hub: JsValue = PageHub::new().into();
    let server = node_on(hub.clone());
    let client = node_on(hub);
    socket_server(&server, "return (socket) => { socket.send('one'); socket.send('two'); socket.send('three'); socket.end(); }", 9).await;
    let socket = socket_to(&client, &[address(&server).await.into(), 9.into()])
        .await
        .unwrap();
    // Listen only later: everything sent meanwhile is delivered, in order,
    // with `end` after the messages.
    sleep(300).await;
    let ended = Events::on(&socket, "end").await;
    let got = Events::on(&socket, "message").await;
    for (i, want) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(got.nth(i as u32, 3000.0).await.as_string().unwrap(), *want);
    }
    ended.nth(0, 3000.0).await;
    call(&server, "close", &[]).await.unwrap();
    call(&client, "close", &[]).await.unwrap();
}

#[wasm_bindgen_test]
fn node_options_are_checked_as_a_peers_are_with_a_hub_instead_of_a_broker() {
    let refusal = |pairs: &[(&str, JsValue)]| {
        let err = Node::new(Some(obj(pairs).unchecked_into()))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(error_name(&err), "InvalidArgumentError");
        get(&err, "message").as_string().unwrap()
    };
    assert_eq!(
        refusal(&[("broker", "ws://localhost:8080".into())]),
        "a Node takes its broker from a hub: new Node({ hub: new NetworkHub(url) })"
    );
    assert_eq!(
        refusal(&[("token", "t".into())]),
        "options.token is for a broker: use it with a NetworkHub"
    );
    assert!(
        refusal(&[("hubb", JsValue::NULL)])
            .starts_with(r#"options has no field "hubb" (known: broker, id, iceServers,"#)
    );
    assert_eq!(
        refusal(&[("hub", PageHub::new().into()), ("closeTimeout", "x".into())]),
        r#"options.closeTimeout must be a number of milliseconds, got the string "x""#
    );
    let err = NetworkHub::new("ftp://localhost").map(|_| ()).unwrap_err();
    assert_eq!(error_name(&err), "InvalidArgumentError");
    assert_eq!(
        get(&err, "message").as_string().unwrap(),
        r#"broker URL scheme "ftp" must be ws:// or wss://"#
    );
    let hub = NetworkHub::new("http://localhost:8080").unwrap();
    assert_eq!(hub.network_url(), "ws://localhost:8080/ws");
}
