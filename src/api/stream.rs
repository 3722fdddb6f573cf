//! `Stream`: a handle on a named stream (`conn.openStream(name)`) or a
//! socket (`sockets.connect`), each a data channel of its own with
//! half-close (see the engine's `channel` module for its lifecycle).

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::context::{Ctx, Target, send_value};
use super::payload::progress_option;
use crate::core::engine::{ChanId, Listening};
use crate::core::stream::StreamState;
use crate::protocol::frames::ChannelLabel;

#[wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = readableFrom)]
    fn readable_from(stream: &JsValue) -> web_sys::ReadableStream;
    #[wasm_bindgen(js_name = writableTo)]
    fn writable_to(stream: &JsValue) -> web_sys::WritableStream;
}

/// A stream or socket: a channel of its own on a connection.
#[wasm_bindgen]
pub struct Stream {
    pub(crate) ctx: Rc<Ctx>,
    pub(crate) chan: ChanId,
    label: Option<ChannelLabel>,
    remote: String,
}

impl Stream {
    pub(crate) fn make(ctx: &Rc<Ctx>, id: u32) -> JsValue {
        let chan = ChanId(id);
        let (label, remote) = ctx.d.read(|e| {
            (
                e.stream_label(chan),
                e.chan_remote(chan).unwrap_or_default().to_string(),
            )
        });
        Stream {
            ctx: ctx.clone(),
            chan,
            label,
            remote,
        }
        .into()
    }

    fn target(&self) -> Target {
        Target::Chan(self.chan)
    }
}

#[wasm_bindgen]
impl Stream {
    /// The stream's name (`""` for a socket).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        match &self.label {
            Some(ChannelLabel::Stream(n)) => n.clone(),
            _ => String::new(),
        }
    }

    /// The port, for a socket.
    #[wasm_bindgen(getter)]
    pub fn port(&self) -> Option<u16> {
        match self.label {
            Some(ChannelLabel::Port(p)) => Some(p),
            _ => None,
        }
    }

    /// The remote peer's id (or node address).
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.remote.clone()
    }

    /// `"opening"`, `"open"`, `"local-ended"`, `"remote-ended"` or `"closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "StreamState")]
    pub fn state(&self) -> String {
        match self.ctx.d.read(|e| e.stream_state(self.chan)) {
            StreamState::Opening => "opening",
            StreamState::Open => "open",
            StreamState::LocalEnded => "local-ended",
            StreamState::RemoteEnded => "remote-ended",
            StreamState::Closed => "closed",
        }
        .into()
    }

    /// Sends a message, like `Connection.send`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Sendable")] message: JsValue,
        options: Option<super::SendOptionsArg>,
    ) -> js_sys::Promise {
        send_value(&self.ctx, Ok(self.chan), &message, progress_option(options))
    }

    /// Half-close: sends nothing more, keeps receiving. The remote gets `end`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn end(&self) -> js_sys::Promise {
        let chan = self.chan;
        self.ctx.ask(|e, now| e.end(chan, now))
    }

    /// Closes both directions now.
    pub fn close(&self) {
        let chan = self.chan;
        self.ctx
            .d
            .run(|e, now| e.close_stream(chan, "closed by the local peer", now));
    }

    /// Messages as a WHATWG `ReadableStream` (ends on `end`), one per
    /// stream. It pulls: while its queue is full the engine holds the
    /// stream's next messages, counted against `connectionBudget`.
    #[wasm_bindgen(getter)]
    pub fn readable(&self) -> web_sys::ReadableStream {
        readable_from(&self.ctx.stream_handle(self.chan))
    }

    /// For `readable` (helpers.js): `true` holds the next messages in the
    /// engine, `false` delivers them again. The `message` listener stays.
    #[wasm_bindgen(js_name = _hold, skip_typescript)]
    pub fn hold(&self, hold: bool) {
        let chan = self.chan;
        self.ctx
            .d
            .run(|e, now| e.set_listening(Listening::Chan(chan), !hold, now));
    }

    /// A WHATWG `WritableStream`: each chunk is sent as a message; closing it
    /// ends the stream.
    #[wasm_bindgen(getter)]
    pub fn writable(&self) -> web_sys::WritableStream {
        writable_to(&self.ctx.stream_handle(self.chan))
    }
}

super::events::event_methods!(Stream);
