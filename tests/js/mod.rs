//! Helpers for the browser tests: drive the JavaScript-facing API exactly as
//! a page would (methods looked up on the exported objects, Promises
//! awaited, listeners as JS functions), against the broker `tests/run.sh`
//! started.

#![allow(dead_code)]

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    EventTarget, RtcDataChannel, RtcIceGatheringState, RtcPeerConnection, RtcSdpType,
    RtcSessionDescriptionInit,
};

pub fn broker() -> &'static str {
    match option_env!("PEERWIRE_TEST_BROKER") {
        Some(url) => url,
        None => panic!(
            "PEERWIRE_TEST_BROKER is unset: run the browser tests through tests/run.sh, which starts a broker"
        ),
    }
}

pub fn now() -> f64 {
    js_sys::Date::now()
}

pub fn log(text: &str) {
    web_sys_log(text);
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = log)]
    pub fn web_sys_log(s: &str);
}

/// A unique id per test run, so tests sharing one broker never collide.
pub fn uid(name: &str) -> String {
    format!("{name}-{}", (js_sys::Math::random() * 1e9) as u64)
}

pub fn get(obj: &JsValue, prop: &str) -> JsValue {
    Reflect::get(obj, &prop.into()).unwrap()
}

/// Calls `obj.name(...args)`, awaiting the result if it is a Promise.
pub async fn call(obj: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: Function = get(obj, name)
        .dyn_into()
        .unwrap_or_else(|_| panic!("no method {name}"));
    let out = f.apply(obj, &args.iter().collect::<Array>())?;
    match out.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await,
        Err(v) => Ok(v),
    }
}

/// Calls a method now (the call starts at once) and returns its Promise as a
/// future to await later.
pub fn start(obj: &JsValue, name: &str, args: &[JsValue]) -> JsFuture {
    let f: Function = get(obj, name)
        .dyn_into()
        .unwrap_or_else(|_| panic!("no method {name}"));
    let out = f
        .apply(obj, &args.iter().collect::<Array>())
        .unwrap_or_else(|e| panic!("{name} threw: {e:?}"));
    JsFuture::from(Promise::resolve(&out))
}

pub fn options(extra: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    Reflect::set(&o, &"broker".into(), &broker().into()).unwrap();
    for (k, v) in extra {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

pub async fn create(id: &str) -> JsValue {
    create_with(id, &[]).await.expect("createPeer resolves")
}

pub async fn create_with(id: &str, extra: &[(&str, JsValue)]) -> Result<JsValue, JsValue> {
    JsFuture::from(peerwire::api::peer::create_peer(
        id.into(),
        Some(options(extra).unchecked_into()),
    ))
    .await
}

/// Collects every event of one type into an array.
pub struct Events {
    list: Array,
    listener: JsValue,
}

/// A list that JavaScript listeners push into, which can be awaited: its
/// `note(e)` pushes and wakes the waiters (no polling, no fixed wait).
pub fn recorder() -> Array {
    Function::new_no_args(
        "const list = []; const waiters = new Set();
         list.note = (e) => { list.push(e); for (const w of [...waiters]) w(); };
         list.until = (pred, ms, what) => new Promise((resolve, reject) => {
           let timer;
           const check = () => {
             if (!pred(list)) return false;
             waiters.delete(check); clearTimeout(timer); resolve(list); return true;
           };
           if (check()) return;
           waiters.add(check);
           timer = setTimeout(() => { waiters.delete(check); reject(new Error(what + ' within ' + ms + ' ms')); }, ms);
         });
         return list;",
    )
    .call0(&JsValue::NULL)
    .unwrap()
    .unchecked_into()
}

/// Waits until `pred(list)` holds (rejecting after `ms` with `what`).
pub async fn until(list: &Array, pred: &Function, ms: f64, what: &str) -> Result<(), String> {
    let until: Function = Reflect::get(list, &"until".into())
        .unwrap()
        .unchecked_into();
    let p: Promise = until
        .call3(list, pred, &ms.into(), &what.into())
        .unwrap()
        .unchecked_into();
    JsFuture::from(p)
        .await
        .map(|_| ())
        .map_err(|e| get(&e, "message").as_string().unwrap_or_default())
}

impl Events {
    pub async fn on(target: &JsValue, event: &str) -> Events {
        let list = recorder();
        let make =
            Function::new_with_args("q", "return (e) => { q.note(e === undefined ? null : e) }");
        let listener = make.call1(&JsValue::NULL, &list).unwrap();
        call(target, "on", &[event.into(), listener.clone()])
            .await
            .unwrap();
        Events { list, listener }
    }

    /// Removes this collector's listener with `target.off(event, ...)`.
    pub async fn off(&self, target: &JsValue, event: &str) {
        call(target, "off", &[event.into(), self.listener.clone()])
            .await
            .unwrap();
    }

    /// Waits (up to `ms`) for the `n`-th event and returns it.
    pub async fn nth(&self, n: u32, ms: f64) -> JsValue {
        let pred = Function::new_with_args("l", &format!("return l.length > {n}"));
        if let Err(e) = until(&self.list, &pred, ms, &format!("event #{n} did not come")).await {
            panic!("{e}");
        }
        self.list.get(n)
    }

    pub fn len(&self) -> u32 {
        self.list.length()
    }
}

pub async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        web_sys_set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn web_sys_set_timeout(f: &Function, ms: i32);
}

pub fn error_name(err: &JsValue) -> String {
    get(err, "name").as_string().unwrap_or_default()
}

pub fn json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap()
}

pub fn stringify(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).unwrap().into()
}

pub async fn connected_pair() -> (JsValue, JsValue, JsValue, JsValue) {
    let (ida, idb) = (uid("a"), uid("b"));
    let a = create(&ida).await;
    let b = create(&idb).await;
    let incoming = Events::on(&b, "connection").await;
    let conn_a = call(&a, "connect", &[idb.into()])
        .await
        .expect("connect resolves");
    let conn_b = incoming.nth(0, 5000.0).await;
    (a, b, conn_a, conn_b)
}

/// A stream `name` that `conn_a`'s side opens, and the remote's handle
/// of it (from `conn_b`'s `stream` event).
pub async fn stream_pair(conn_a: &JsValue, conn_b: &JsValue, name: &str) -> (JsValue, JsValue) {
    let incoming = Events::on(conn_b, "stream").await;
    let sa = call(conn_a, "openStream", &[name.into()])
        .await
        .expect("openStream resolves");
    (sa, incoming.nth(0, 5000.0).await)
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    pub fn web_sys_fetch(url: &str) -> Promise;
}

// ---- raw WebRTC, for the in-page tests and the baselines ----

/// Resolves with the next `name` event of `target`. Passing the promise's own
/// `resolve` as a one-shot listener needs no Rust closure.
pub async fn next_event(target: &EventTarget, name: &str) -> JsValue {
    let promise = Promise::new(&mut |resolve, _reject| {
        let opts = web_sys::AddEventListenerOptions::new();
        opts.set_once(true);
        target
            .add_event_listener_with_callback_and_add_event_listener_options(name, &resolve, &opts)
            .expect("addEventListener");
    });
    JsFuture::from(promise)
        .await
        .expect("event promise never rejects")
}

/// A queue that a persistent `message` listener fills, so no message is lost
/// between two awaits.
pub struct Inbox {
    target: EventTarget,
    queue: Array,
}

impl Inbox {
    pub fn attach(target: &EventTarget) -> Inbox {
        let queue = Array::new();
        let make = Function::new_with_args("q", "return (e) => q.push(e.data)");
        let listener: Function = make.call1(&JsValue::NULL, &queue).unwrap().unchecked_into();
        target
            .add_event_listener_with_callback("message", &listener)
            .unwrap();
        Inbox {
            target: target.clone(),
            queue,
        }
    }

    pub async fn next(&self) -> JsValue {
        while self.queue.length() == 0 {
            next_event(&self.target, "message").await;
        }
        self.queue.shift()
    }

    pub async fn next_text(&self) -> String {
        self.next().await.as_string().expect("a text message")
    }
}

/// Sets a local offer or answer and waits until ICE gathering completes, so
/// the description carries every candidate.
pub async fn describe(pc: &RtcPeerConnection, offer: bool) -> String {
    let desc = if offer {
        pc.create_offer()
    } else {
        pc.create_answer()
    };
    let desc = JsFuture::from(desc).await.expect("create offer/answer");
    let sdp = Reflect::get(&desc, &"sdp".into())
        .unwrap()
        .as_string()
        .unwrap();
    let init = RtcSessionDescriptionInit::new(if offer {
        RtcSdpType::Offer
    } else {
        RtcSdpType::Answer
    });
    init.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&init))
        .await
        .expect("setLocalDescription");
    while pc.ice_gathering_state() != RtcIceGatheringState::Complete {
        next_event(pc, "icegatheringstatechange").await;
    }
    pc.local_description().unwrap().sdp()
}

pub async fn accept(pc: &RtcPeerConnection, offer: bool, sdp: &str) {
    let init = RtcSessionDescriptionInit::new(if offer {
        RtcSdpType::Offer
    } else {
        RtcSdpType::Answer
    });
    init.set_sdp(sdp);
    JsFuture::from(pc.set_remote_description(&init))
        .await
        .expect("setRemoteDescription");
}

pub async fn opened(dc: &RtcDataChannel) {
    while dc.ready_state() != web_sys::RtcDataChannelState::Open {
        next_event(dc, "open").await;
    }
}
