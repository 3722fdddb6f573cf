//! `Room` (members, broadcast, shared state with TTL) and `Rendezvous` (an
//! opened key): handles on the engine's view of the broker's rooms and keys.

use std::rc::Rc;

use crate::protocol::json::Json;
use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::context::{Ctx, Target, js_to_json as from_js, json_to_js};
use crate::web::driver::Then;

/// A room joined with `peer.join(name)`.
#[wasm_bindgen]
pub struct Room {
    ctx: Rc<Ctx>,
    name: String,
}

impl Room {
    pub(crate) fn new(ctx: Rc<Ctx>, name: String) -> Self {
        Self { ctx, name }
    }

    fn target(&self) -> Target {
        Target::Room(self.name.clone())
    }
}

#[wasm_bindgen]
impl Room {
    /// The room's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Current members' ids, this peer included, in join order.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn members(&self) -> Array {
        self.ctx
            .d
            .read(|e| e.room(&self.name).map(|r| r.members.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(JsValue::from)
            .collect()
    }

    /// The room's shared state as a plain object `{ key: value }`.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, unknown>")]
    pub fn state(&self) -> Object {
        let entries: Vec<(String, Json)> = self.ctx.d.read(|e| {
            e.room(&self.name)
                .map(|r| {
                    r.state
                        .iter()
                        .map(|(k, (v, _))| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        });
        let o = Object::new();
        for (k, v) in entries {
            let _ = Reflect::set(&o, &k.as_str().into(), &json_to_js(&v));
        }
        o
    }

    /// One key's value (`undefined` if unset).
    #[wasm_bindgen(unchecked_return_type = "unknown")]
    pub fn get(&self, key: &str) -> JsValue {
        self.ctx
            .d
            .read(|e| {
                e.room(&self.name)
                    .and_then(|r| r.state.get(key).map(|v| v.0.clone()))
            })
            .map(|v| json_to_js(&v))
            .unwrap_or(JsValue::UNDEFINED)
    }

    /// Which member last set `key`.
    #[wasm_bindgen(js_name = setBy)]
    pub fn set_by(&self, key: &str) -> Option<String> {
        self.ctx.d.read(|e| {
            e.room(&self.name)
                .and_then(|r| r.state.get(key).map(|v| v.1.clone()))
        })
    }

    /// Sends `data` (any JSON value) to every other member (and to this
    /// peer too with `{ includeSelf: true }`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn broadcast(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown")] data: JsValue,
        options: Option<super::BroadcastOptionsArg>,
    ) -> Promise {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let include_self = Reflect::get(&options, &"includeSelf".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        match from_js(&data) {
            Ok(data) => self
                .ctx
                .ask(|e, now| e.broadcast(&self.name, data, include_self, now)),
            Err(e) => Promise::reject(&e.to_js()),
        }
    }

    /// Sets a key of the shared state, expiring after `options.ttl` ms.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn set(
        &self,
        key: String,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
        options: Option<super::SetOptionsArg>,
    ) -> Promise {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let ttl_ms = match super::options::millis_field(&options, "ttl") {
            Ok(t) => t,
            Err(e) => return Promise::reject(&e.to_js()),
        };
        match from_js(&value) {
            Ok(value) => self
                .ctx
                .ask(|e, now| e.set_state(&self.name, &key, value, ttl_ms, now)),
            Err(e) => Promise::reject(&e.to_js()),
        }
    }

    /// Deletes a key of the shared state.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, key: String) -> Promise {
        self.ctx.ask(|e, now| e.delete_state(&self.name, &key, now))
    }

    /// Leaves the room; members get `peer-left`, this room gets `closed`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self) -> Promise {
        self.ctx.ask(|e, now| e.leave(&self.name, now))
    }
}

/// A rendezvous key opened with `peer.openKey(key)`.
#[wasm_bindgen]
pub struct Rendezvous {
    ctx: Rc<Ctx>,
    key: String,
}

impl Rendezvous {
    pub(crate) fn new(ctx: Rc<Ctx>, key: String) -> Self {
        Self { ctx, key }
    }

    fn target(&self) -> Target {
        Target::Key(self.key.clone())
    }
}

#[wasm_bindgen]
impl Rendezvous {
    /// The rendezvous key.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// Closes the key; joiners get `unavailable`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> js_sys::Promise {
        let key = self.key.clone();
        self.ctx.d.ask(
            |e, now| e.close_key(&key, now),
            None,
            Then::ForgetKey(key.clone()),
        )
    }
}

super::events::event_methods!(Room);

super::events::event_methods!(Rendezvous);
