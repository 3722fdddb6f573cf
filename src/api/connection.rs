//! `Connection`: a handle on one peer-to-peer link (the context and a
//! `ConnId`). Its behaviour lives in the engine (`core::engine`, see the
//! lifecycle drawn in its `connection` module).

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::context::{Ctx, Target, send_value};
use super::errors::PeerError;
use super::payload::progress_option;
use crate::core::engine::{ChannelPolicy, ConnId, ConnState, Reply};
use crate::web::driver::promise;

#[wasm_bindgen(module = "/src/web/stats.js")]
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
        PeerError::Closed(format!("the connection to {remote:?}"))
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
        let pc = self.live_pc();
        let closed = self.closed_error();
        let relayed = self.ctx.d.read(|e| e.relay_stats(self.conn));
        promise(Box::pin(async move {
            if let Some(json) = relayed {
                return js_sys::JSON::parse(&json);
            }
            let pc = pc.ok_or(closed)?;
            wasm_bindgen_futures::JsFuture::from(connection_stats(&pc)).await
        }))
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
        let ctx = self.ctx.clone();
        let chan = ctx.d.read(|e| e.conn_channel(self.conn));
        let closed = self.closed_error();
        let progress = progress_option(options);
        promise(Box::pin(async move {
            let chan = chan.ok_or(closed)?;
            send_value(&ctx, chan, &message, progress).await?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Opens a named stream: a channel of its own on this connection. The
    /// remote gets a `stream` event. Options: `ordered`, `maxRetransmits`.
    #[wasm_bindgen(js_name = openStream, unchecked_return_type = "Promise<Stream>")]
    pub fn open_stream(
        &self,
        name: String,
        options: Option<super::StreamOptionsArg>,
    ) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        let conn = self.conn;
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        promise(Box::pin(async move {
            let base = ctx.d.read(|e| e.config().channel);
            let policy: ChannelPolicy = super::options::policy_from(&options, base)?;
            match ctx
                .d
                .call(|e, now| e.open_stream(conn, &name, Some(policy), now))
                .await?
            {
                Reply::Stream(chan) => Ok(ctx.stream_handle(chan)),
                other => Err(super::errors::unexpected(other).into()),
            }
        }))
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
