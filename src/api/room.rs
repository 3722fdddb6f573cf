//! `Room` (members, broadcast, shared state with TTL) and `Rendezvous` (an
//! opened key), both thin views over broker features.

use super::cell::StateCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, Object, Reflect};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use super::errors::PeerError;
use super::events::Emitter;
use super::peer::PeerShared;
use crate::protocol::{ClientMessage, RemovalReason, StateEntry};

pub(crate) const ROOM_EVENTS: &[&str] =
    &["peer-joined", "peer-left", "broadcast", "state", "closed"];
pub(crate) const RENDEZVOUS_EVENTS: &[&str] = &["joiner", "unavailable", "closed"];

fn to_js(value: &Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

fn from_js(value: &JsValue) -> Result<Value, PeerError> {
    if value.is_undefined() {
        return Err(PeerError::InvalidArgument(
            "the value must be JSON (not undefined)".into(),
        ));
    }
    let text: String = js_sys::JSON::stringify(value)
        .map_err(|e| {
            PeerError::InvalidArgument(format!(
                "the value must be JSON: {}",
                crate::web::js_error_text(&e)
            ))
        })?
        .into();
    serde_json::from_str(&text)
        .map_err(|e| PeerError::InvalidArgument(format!("the value must be JSON: {e}")))
}

struct Entry {
    value: Value,
    from: String,
}

pub(crate) struct RoomShared {
    peer: Weak<PeerShared>,
    name: String,
    members: StateCell<Vec<String>>,
    state: StateCell<BTreeMap<String, Entry>>,
    pub emitter: Emitter,
    left: std::cell::Cell<bool>,
}

impl RoomShared {
    pub fn new(
        peer: Weak<PeerShared>,
        name: String,
        members: Vec<String>,
        state: Vec<StateEntry>,
    ) -> Rc<Self> {
        let r = Rc::new(Self {
            peer,
            name,
            members: StateCell::new(Vec::new()),
            state: StateCell::new(BTreeMap::new()),
            emitter: Emitter::new(ROOM_EVENTS),
            left: std::cell::Cell::new(false),
        });
        r.resync(members, state);
        r
    }

    /// Replaces members and state with the broker's snapshot (after a resume).
    pub fn resync(&self, members: Vec<String>, state: Vec<StateEntry>) {
        *self.members.borrow_mut() = members;
        *self.state.borrow_mut() = state
            .into_iter()
            .map(|e| {
                (
                    e.key,
                    Entry {
                        value: e.value,
                        from: e.from,
                    },
                )
            })
            .collect();
    }

    pub fn peer_joined(&self, id: String) {
        let mut m = self.members.borrow_mut();
        if !m.contains(&id) {
            m.push(id.clone());
        }
        drop(m);
        self.emitter.emit("peer-joined", &id.into());
    }

    pub fn peer_left(&self, id: &str) {
        self.members.borrow_mut().retain(|m| m != id);
        self.emitter.emit("peer-left", &id.into());
    }

    pub fn broadcast_received(&self, from: &str, data: &Value) {
        let ev = Object::new();
        let _ = Reflect::set(&ev, &"from".into(), &from.into());
        let _ = Reflect::set(&ev, &"data".into(), &to_js(data));
        self.emitter.emit("broadcast", &ev);
    }

    pub fn state_set(&self, key: String, value: Value, from: String, ttl_ms: Option<u64>) {
        let ev = Object::new();
        let _ = Reflect::set(&ev, &"key".into(), &key.as_str().into());
        let _ = Reflect::set(&ev, &"value".into(), &to_js(&value));
        let _ = Reflect::set(&ev, &"from".into(), &from.as_str().into());
        if let Some(ttl) = ttl_ms {
            let _ = Reflect::set(&ev, &"ttl".into(), &(ttl as f64).into());
        }
        self.state.borrow_mut().insert(key, Entry { value, from });
        self.emitter.emit("state", &ev);
    }

    pub fn state_removed(&self, key: &str, reason: RemovalReason) {
        self.state.borrow_mut().remove(key);
        let ev = Object::new();
        let _ = Reflect::set(&ev, &"key".into(), &key.into());
        let _ = Reflect::set(&ev, &"value".into(), &JsValue::UNDEFINED);
        let _ = Reflect::set(&ev, &"removed".into(), &reason.as_str().into());
        self.emitter.emit("state", &ev);
    }

    /// The broker no longer has us in this room (peer closed, or id lost).
    pub fn lost(&self) {
        if !self.left.replace(true) {
            self.emitter.emit("closed", &JsValue::UNDEFINED);
            self.emitter.clear();
        }
    }

    fn peer(&self) -> Result<Rc<PeerShared>, PeerError> {
        if self.left.get() {
            return Err(PeerError::Closed(format!("room {:?} (left)", self.name)));
        }
        self.peer
            .upgrade()
            .ok_or_else(|| PeerError::Closed("the peer".into()))
    }
}

/// A room joined with `peer.join(name)`.
#[wasm_bindgen]
pub struct Room {
    inner: Rc<RoomShared>,
}

impl Room {
    pub(crate) fn from_shared(inner: Rc<RoomShared>) -> Self {
        Self { inner }
    }
}

#[wasm_bindgen]
impl Room {
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// Current members' ids, this peer included, in join order.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn members(&self) -> Array {
        self.inner
            .members
            .borrow()
            .iter()
            .map(|m| JsValue::from_str(m))
            .collect()
    }

    /// The room's shared state as a plain object `{ key: value }`.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, unknown>")]
    pub fn state(&self) -> Object {
        let o = Object::new();
        for (k, e) in self.inner.state.borrow().iter() {
            let _ = Reflect::set(&o, &k.as_str().into(), &to_js(&e.value));
        }
        o
    }

    /// One key's value (`undefined` if unset).
    #[wasm_bindgen(unchecked_return_type = "unknown")]
    pub fn get(&self, key: &str) -> JsValue {
        self.inner
            .state
            .borrow()
            .get(key)
            .map(|e| to_js(&e.value))
            .unwrap_or(JsValue::UNDEFINED)
    }

    /// Which member last set `key`.
    #[wasm_bindgen(js_name = setBy)]
    pub fn set_by(&self, key: &str) -> Option<String> {
        self.inner.state.borrow().get(key).map(|e| e.from.clone())
    }

    /// Sends `data` (any JSON value) to every other member (and to this
    /// peer too with `{ includeSelf: true }`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn broadcast(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown")] data: JsValue,
        options: Option<super::BroadcastOptionsArg>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let include_self = Reflect::get(&options, &"includeSelf".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        wasm_bindgen_futures::future_to_promise(async move {
            let data = from_js(&data)?;
            let room = inner.name.clone();
            inner
                .peer()?
                .call(|rid| ClientMessage::Broadcast {
                    rid,
                    room,
                    data,
                    include_self,
                })
                .await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Sets a key of the shared state, expiring after `options.ttl` ms.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn set(
        &self,
        key: String,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
        options: Option<super::SetOptionsArg>,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let ttl_ms = Reflect::get(&options, &"ttl".into())
            .ok()
            .and_then(|v| v.as_f64())
            .map(|t| t.max(0.0) as u64);
        wasm_bindgen_futures::future_to_promise(async move {
            let value = from_js(&value)?;
            let room = inner.name.clone();
            inner
                .peer()?
                .call(|rid| ClientMessage::Set {
                    rid,
                    room,
                    key,
                    value,
                    ttl_ms,
                })
                .await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Deletes a key of the shared state.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, key: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let room = inner.name.clone();
            inner
                .peer()?
                .call(|rid| ClientMessage::Delete { rid, room, key })
                .await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Leaves the room; members get `peer-left`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let peer = inner.peer()?;
            let room = inner.name.clone();
            peer.call(|rid| ClientMessage::Leave { rid, room }).await?;
            peer.drop_room(&inner.name);
            inner.lost();
            Ok(JsValue::UNDEFINED)
        })
    }
}

pub(crate) struct RendezvousShared {
    peer: Weak<PeerShared>,
    key: String,
    pub emitter: Emitter,
}

impl RendezvousShared {
    pub fn new(peer: Weak<PeerShared>, key: String) -> Rc<Self> {
        Rc::new(Self {
            peer,
            key,
            emitter: Emitter::new(RENDEZVOUS_EVENTS),
        })
    }
}

/// A rendezvous key opened with `peer.openKey(key)`.
#[wasm_bindgen]
pub struct Rendezvous {
    inner: Rc<RendezvousShared>,
}

impl Rendezvous {
    pub(crate) fn from_shared(inner: Rc<RendezvousShared>) -> Self {
        Self { inner }
    }
}

#[wasm_bindgen]
impl Rendezvous {
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.inner.key.clone()
    }

    /// Closes the key; joiners get `unavailable`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let peer = inner
                .peer
                .upgrade()
                .ok_or_else(|| PeerError::Closed("the peer".into()))?;
            let key = inner.key.clone();
            peer.call(|rid| ClientMessage::CloseKey { rid, key })
                .await?;
            peer.drop_key(&inner.key);
            inner.emitter.clear();
            Ok(JsValue::UNDEFINED)
        })
    }
}

super::events::event_methods!(Room);

super::events::event_methods!(Rendezvous);
