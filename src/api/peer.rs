//! `createPeer` and `Peer`: one id on the broker, and its connections,
//! rooms and rendezvous keys. A `Peer` is a handle on its context; every
//! decision is the engine's (`core::engine`).

use std::rc::Rc;

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::connection::Connection;
use super::context::{Ctx, Target};
use super::errors::PeerError;
use super::options::{engine_config, peer_options};
use super::stream::Stream;
use crate::core::engine::{Config, Engine};
use crate::protocol::ids;
use crate::web::driver::{Driver, Then, TokenSource};

/// A driver and context for an engine with `config`.
pub(crate) fn build(
    config: Config,
    token: Option<TokenSource>,
    hub: Option<JsValue>,
    platform: crate::web::Platform,
) -> Rc<Ctx> {
    let seed = crate::web::random_u64();
    let driver = Driver::new(Engine::new(config, seed), token, hub, platform);
    Ctx::new(driver, Connection::make, Stream::make)
}

/// Creates a peer, registers it with the broker and resolves once the id is
/// registered.
///
/// `createPeer('alice', { broker })`, `createPeer({ broker })` (the broker
/// assigns an id) or `createPeer({ broker, id })`.
#[wasm_bindgen(js_name = createPeer, unchecked_return_type = "Promise<Peer>")]
pub fn create_peer(
    #[wasm_bindgen(unchecked_param_type = "string | PeerOptions")] id_or_options: JsValue,
    options: Option<super::PeerOptionsArg>,
) -> js_sys::Promise {
    let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
    match create(id_or_options, options) {
        // The Promise resolves the `Peer` once registered; a failure closes
        // the engine (`Then::Peer` in `Ctx::settle`).
        Ok(ctx) => ctx.d.start(Then::Peer),
        Err(e) => js_sys::Promise::reject(&e.to_js()),
    }
}

fn create(id_or_options: JsValue, options_js: JsValue) -> Result<Rc<Ctx>, PeerError> {
    let (id, options_js) = match id_or_options.as_string() {
        Some(id) => (Some(id), options_js),
        None => (None, id_or_options),
    };
    let mut o = peer_options(&options_js, false, |option| {
        match id.as_deref().or(option) {
            Some(id) => ids::check_peer_id(id).map_err(|e| PeerError::InvalidId(e.to_string())),
            None => Ok(()),
        }
    })?;
    o.id = id.or(o.id);
    let token = o.token.clone();
    let platform = o.platform.clone();
    Ok(build(engine_config(o, false)?, token, None, platform))
}

/// A peer: an id on the broker and connections to other peers.
#[wasm_bindgen]
pub struct Peer {
    pub(crate) ctx: Rc<Ctx>,
}

impl Peer {
    fn target(&self) -> Target {
        Target::Peer
    }
}

#[wasm_bindgen]
impl Peer {
    /// This peer's id (the one chosen, or the one the broker assigned).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.ctx.d.read(|e| e.id().unwrap_or_default().to_string())
    }

    /// The URL of the broker in use: the one connected to or being
    /// connected to; after the link dropped, the one the reconnect tries
    /// (with several `broker` URLs, the next in the list).
    #[wasm_bindgen(getter)]
    pub fn broker(&self) -> String {
        self.ctx
            .d
            .read(|e| e.broker_url().unwrap_or_default().to_string())
    }

    /// Whether `close()` was called.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.ctx.d.read(|e| e.is_closed())
    }

    /// Ids of the peers this peer has a connection (open or opening) with.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn connections(&self) -> Array {
        self.ctx
            .d
            .read(|e| e.connection_ids())
            .into_iter()
            .map(JsValue::from)
            .collect()
    }

    /// Connects to `id`, or returns the existing connection. Resolves when
    /// the data channel is open; rejects at once with `PeerUnavailableError`
    /// if `id` is not online.
    #[wasm_bindgen(unchecked_return_type = "Promise<Connection>")]
    pub fn connect(&self, id: String) -> js_sys::Promise {
        self.ctx.ask(|e, now| e.connect(&id, now))
    }

    /// Sends `message` to `id`, connecting first if needed.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Sendable")] message: JsValue,
        options: Option<super::SendOptionsArg>,
    ) -> js_sys::Promise {
        // Refused now, before a connection is made for it.
        let max = self.ctx.d.read(|e| e.config().max_message_size);
        if let Err(e) = super::payload::check_sendable(&message, max) {
            return js_sys::Promise::reject(&e.to_js());
        }
        let then = Then::Send {
            message,
            progress: super::payload::progress_option(options),
        };
        self.ctx.d.ask(|e, now| e.connect(&id, now), None, then)
    }

    /// Closes the connection to `id`, if there is one.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn disconnect(&self, id: String) -> js_sys::Promise {
        let conn = self.ctx.d.read(|e| e.connection_to(&id));
        if let Some(c) = conn {
            self.ctx
                .d
                .run(|e, now| e.disconnect(c, "disconnected by the local peer", now));
        }
        js_sys::Promise::resolve(&JsValue::UNDEFINED)
    }

    /// Is `id` online (registered, or inside its reconnect grace window)?
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn find(&self, id: String) -> js_sys::Promise {
        self.ctx.ask(|e, now| e.find(&id, now))
    }

    /// Joins a room: its members, events, broadcast and shared state.
    #[wasm_bindgen(unchecked_return_type = "Promise<Room>")]
    pub fn join(&self, room: String) -> js_sys::Promise {
        self.ctx.ask(|e, now| e.join(&room, now))
    }

    /// Opens a rendezvous key: others `joinKey(key)` to reach this peer.
    #[wasm_bindgen(js_name = openKey, unchecked_return_type = "Promise<Rendezvous>")]
    pub fn open_key(&self, key: String) -> js_sys::Promise {
        self.ctx.ask(|e, now| e.open_key(&key, now))
    }

    /// Joins a rendezvous key and connects to the peer that opened it.
    #[wasm_bindgen(js_name = joinKey, unchecked_return_type = "Promise<Connection>")]
    pub fn join_key(&self, key: String) -> js_sys::Promise {
        self.ctx.ask(|e, now| e.join_key(&key, now))
    }

    /// Closes every connection and the broker link, stops every timer and
    /// releases the id at once. Later calls reject with `ClosedError`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> js_sys::Promise {
        self.ctx.d.run(|e, now| e.close(now));
        js_sys::Promise::resolve(&JsValue::UNDEFINED)
    }
}

super::events::event_methods!(Peer);
