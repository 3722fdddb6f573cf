//! `Connection`: a handle on one peer-to-peer link (the context and a
//! `ConnId`). Its behaviour lives in the engine (`core::engine`, see the
//! lifecycle drawn in its `connection` module).

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::context::{Ctx, Target, send_value};
use super::errors::PeerError;
use super::payload::progress_option;
use crate::core::engine::{ConnId, ConnState};

#[wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = connectionStats)]
    fn connection_stats(pc: &web_sys::RtcPeerConnection) -> js_sys::Promise;
}

/// A peer-to-peer connection to one remote peer.
#[wasm_bindgen]
pub struct Connection {
    pub(crate) ctx: Rc<Ctx>,
    pub(crate) conn: ConnId,
    remote: String,
}

impl Connection {
    pub(crate) fn make(ctx: &Rc<Ctx>, id: u32) -> JsValue {
        let conn = ConnId(id);
        let remote = ctx
            .d
            .read(|e| e.conn_remote(conn).unwrap_or_default().to_string());
        Connection {
            ctx: ctx.clone(),
            conn,
            remote,
        }
        .into()
    }

    fn target(&self) -> Target {
        Target::Conn(self.conn)
    }

    /// The RTCPeerConnection while the connection is not closed.
    fn live_pc(&self) -> Option<web_sys::RtcPeerConnection> {
        if self.ctx.d.read(|e| e.conn_state(self.conn)) == ConnState::Closed {
            return None;
        }
        self.ctx.d.pc(self.conn)
    }

    fn closed_error(&self) -> PeerError {
        let remote = self.peer_id();
        PeerError::Closed(format!("the connection to \"{remote}\""))
    }
}

#[wasm_bindgen]
impl Connection {
    /// The underlying `RTCPeerConnection` (an escape hatch: for reading,
    /// adding tracks or stats; closing it closes this connection).
    /// `undefined` once the connection is closed.
    #[wasm_bindgen(getter, js_name = peerConnection, unchecked_return_type = "RTCPeerConnection | undefined")]
    pub fn peer_connection(&self) -> JsValue {
        self.live_pc()
            .map(JsValue::from)
            .unwrap_or(JsValue::UNDEFINED)
    }

    /// The route and counters of the connection (`ConnectionStats`): the
    /// selected candidate pair's type (`host`, `srflx`, `relay`), its
    /// round-trip time in ms, and bytes each way.
    #[wasm_bindgen(unchecked_return_type = "Promise<ConnectionStats>")]
    pub fn stats(&self) -> js_sys::Promise {
        if let Some(json) = self.ctx.d.read(|e| e.relay_stats(self.conn)) {
            return match js_sys::JSON::parse(&json) {
                Ok(v) => js_sys::Promise::resolve(&v),
                Err(e) => js_sys::Promise::reject(&e),
            };
        }
        match self.live_pc() {
            Some(pc) => connection_stats(&pc),
            None => js_sys::Promise::reject(&self.closed_error().to_js()),
        }
    }

    /// The remote peer's id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.remote.clone()
    }

    /// `"connecting"`, `"open"` or `"closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "ConnectionState")]
    pub fn state(&self) -> String {
        match self.ctx.d.read(|e| e.conn_state(self.conn)) {
            ConnState::Connecting => "connecting",
            ConnState::Open => "open",
            ConnState::Closed => "closed",
        }
        .into()
    }

    /// Sends a string, bytes (ArrayBuffer, typed array, Blob) or any JSON
    /// value. Resolves when the whole message is handed to the transport;
    /// `options.onProgress(sent, total)` reports progress of large ones.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Sendable")] message: JsValue,
        options: Option<super::SendOptionsArg>,
    ) -> js_sys::Promise {
        let chan = self
            .ctx
            .d
            .read(|e| e.conn_channel(self.conn))
            .ok_or_else(|| self.closed_error());
        send_value(&self.ctx, chan, &message, progress_option(options))
    }

    /// Opens a named stream: a channel of its own on this connection. The
    /// remote gets a `stream` event. Options: `ordered`, `maxRetransmits`.
    #[wasm_bindgen(js_name = openStream, unchecked_return_type = "Promise<Stream>")]
    pub fn open_stream(
        &self,
        name: String,
        options: Option<super::StreamOptionsArg>,
    ) -> js_sys::Promise {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let base = self.ctx.d.read(|e| e.config().channel);
        let conn = self.conn;
        match super::options::policy_from(&options, base) {
            Ok(policy) => self
                .ctx
                .ask(|e, now| e.open_stream(conn, &name, Some(policy), now)),
            Err(e) => js_sys::Promise::reject(&e.to_js()),
        }
    }

    /// Closes the connection; the remote gets `close` at once.
    pub fn close(&self) {
        let conn = self.conn;
        self.ctx
            .d
            .run(|e, now| e.disconnect(conn, "closed by the local peer", now));
    }
}

super::events::event_methods!(Connection);
