//! Media on a connection: `conn.addTrack/addStream/removeTrack/
//! removeStream/replaceTrack/muteTrack`, `peer.call()` and the
//! `IncomingCall` a `call` event hands over. The decisions (renegotiation,
//! what the remote is told) are the engine's (`core::engine::media`); the
//! browser objects are the driver's (`web::driver::media`).

use std::rc::Rc;

use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;

use super::connection::Connection;
use super::context::{Ctx, js_to_json};
use super::errors::PeerError;
use super::peer::Peer;
use crate::core::engine::ConnId;
use crate::web::driver::Then;

/// `streams` as an array: one MediaStream, an array of them, or none.
fn stream_list(streams: &JsValue) -> Array {
    if streams.is_undefined() || streams.is_null() {
        Array::new()
    } else if Array::is_array(streams) {
        streams.clone().unchecked_into()
    } else {
        Array::of1(streams)
    }
}

/// The tracks of a MediaStream (`getTracks()`).
pub(crate) fn tracks_of(stream: &JsValue) -> Result<Array, PeerError> {
    Reflect::get(stream, &"getTracks".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(stream).ok())
        .and_then(|t| t.dyn_into::<Array>().ok())
        .ok_or_else(|| PeerError::InvalidArgument("expected a MediaStream".into()))
}

/// Sends every track of `stream` on `conn`, in that stream (a track sent
/// there already is left as it is).
pub(crate) fn send_stream(ctx: &Rc<Ctx>, conn: ConnId, stream: &JsValue) -> Result<(), PeerError> {
    for track in tracks_of(stream)?.iter() {
        if ctx.d.track_id(conn, &track).is_none() {
            ctx.d.send_track(conn, &track, Array::of1(stream))?;
        }
    }
    Ok(())
}

impl Connection {
    fn sent_track(&self, track: &JsValue) -> Result<crate::core::engine::TrackId, PeerError> {
        self.ctx.d.track_id(self.conn, track).ok_or_else(|| {
            PeerError::InvalidArgument("this track is not sent on this connection".into())
        })
    }
}

#[wasm_bindgen]
impl Connection {
    /// Sends a track (from `getUserMedia`, a canvas, …) to the remote, in
    /// `streams` (a MediaStream or an array of them: the remote's `track`
    /// event carries their ids). The connection renegotiates on its own;
    /// the remote gets `track` (and `mediastream` for a stream it has not
    /// seen). The track stays yours: closing the connection never stops it.
    /// What it does itself reaches the remote: once it ends (`stop()`, or
    /// its device went away) it is no longer sent and the remote gets
    /// `track-ended` with `reason: "ended"`; its source's `mute`/`unmute`
    /// give `track-muted`/`track-unmuted`. (The SDK's listeners on it go
    /// with `removeTrack` and the connection's close.)
    #[wasm_bindgen(js_name = addTrack)]
    pub fn add_track(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStreamTrack")] track: JsValue,
        streams: Option<super::MediaStreamsArg>,
    ) -> Result<(), JsValue> {
        let streams = stream_list(&streams.map_or(JsValue::UNDEFINED, Into::into));
        self.ctx.d.send_track(self.conn, &track, streams)?;
        Ok(())
    }

    /// Sends every track of `stream` (as `addTrack(track, stream)` each;
    /// tracks already sent on this connection are skipped).
    #[wasm_bindgen(js_name = addStream)]
    pub fn add_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStream")] stream: JsValue,
    ) -> Result<(), JsValue> {
        Ok(send_stream(&self.ctx, self.conn, &stream)?)
    }

    /// Stops sending a track (the remote gets `track-ended`); the track
    /// itself is not stopped.
    #[wasm_bindgen(js_name = removeTrack)]
    pub fn remove_track(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStreamTrack")] track: JsValue,
    ) -> Result<(), JsValue> {
        let id = self.sent_track(&track)?;
        let conn = self.conn;
        self.ctx.d.run(|e, now| e.remove_track(conn, id, now))?;
        Ok(())
    }

    /// Stops sending every track that was added in `stream`.
    #[wasm_bindgen(js_name = removeStream)]
    pub fn remove_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStream")] stream: JsValue,
    ) -> Result<(), JsValue> {
        let id = Reflect::get(&stream, &"id".into())
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(|| PeerError::InvalidArgument("expected a MediaStream".into()))?;
        let conn = self.conn;
        let ids: Vec<_> = self.ctx.d.read(|e| {
            e.local_tracks(conn)
                .into_iter()
                .map(|(t, _)| t)
                .filter(|t| e.track_streams(conn, *t).contains(&id))
                .collect()
        });
        for t in ids {
            self.ctx.d.run(|e, now| e.remove_track(conn, t, now))?;
        }
        Ok(())
    }

    /// Sends `track` in place of `old` (same kind), without
    /// renegotiation (`RTCRtpSender.replaceTrack`): the remote's track
    /// shows the new media. Neither track is stopped.
    #[wasm_bindgen(js_name = replaceTrack, unchecked_return_type = "Promise<void>")]
    pub fn replace_track(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStreamTrack")] old: JsValue,
        #[wasm_bindgen(unchecked_param_type = "MediaStreamTrack")] track: JsValue,
    ) -> js_sys::Promise {
        match self.sent_track(&old) {
            Ok(id) => self.ctx.d.replace_track(id, &track),
            Err(e) => js_sys::Promise::reject(&e.to_js()),
        }
    }

    /// Mutes a track this connection sends (`muted` true, the default) or
    /// unmutes it: sets its `enabled`, and the remote gets `track-muted`
    /// or `track-unmuted`.
    #[wasm_bindgen(js_name = muteTrack)]
    pub fn mute_track(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStreamTrack")] track: JsValue,
        muted: Option<bool>,
    ) -> Result<(), JsValue> {
        let muted = muted.unwrap_or(true);
        let id = self.sent_track(&track)?;
        let _ = Reflect::set(&track, &"enabled".into(), &(!muted).into());
        let conn = self.conn;
        self.ctx.d.run(|e, _| e.set_track_muted(conn, id, muted))?;
        Ok(())
    }
}

#[wasm_bindgen]
impl Peer {
    /// Calls `id`: connects (or reuses the connection) and asks it to
    /// exchange media. The remote gets a `call` event; once it answers,
    /// `stream`'s tracks are sent and the Promise resolves with the
    /// connection (the remote's media arrives as its `track` events). A
    /// refusal rejects with `CallRejectedError`. `options.metadata`: any
    /// JSON value, handed to the remote with the call.
    #[wasm_bindgen(unchecked_return_type = "Promise<Connection>")]
    pub fn call(
        &self,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "MediaStream")] stream: JsValue,
        options: Option<super::CallOptionsArg>,
    ) -> js_sys::Promise {
        let options: Option<JsValue> = options.map(Into::into);
        if let Err(e) = tracks_of(&stream) {
            return js_sys::Promise::reject(&e.to_js());
        }
        let metadata = options
            .map(|o| Reflect::get(&o, &"metadata".into()).unwrap_or(JsValue::UNDEFINED))
            .filter(|m| !m.is_undefined())
            .map(|m| js_to_json(&m))
            .transpose();
        match metadata {
            Ok(metadata) => self.ctx.d.ask(
                |e, now| e.call(&id, metadata, now),
                None,
                Then::Call { stream },
            ),
            Err(e) => js_sys::Promise::reject(&e.to_js()),
        }
    }
}

/// A call from a remote peer (the peer's `call` event): `answer()` it,
/// with or without media of this side's, or `reject()` it.
#[wasm_bindgen]
pub struct IncomingCall {
    ctx: Rc<Ctx>,
    conn: ConnId,
    call: u32,
    metadata: JsValue,
}

impl IncomingCall {
    pub(crate) fn new(ctx: &Rc<Ctx>, conn: ConnId, call: u32, metadata: JsValue) -> Self {
        Self {
            ctx: ctx.clone(),
            conn,
            call,
            metadata,
        }
    }
}

#[wasm_bindgen]
impl IncomingCall {
    /// The caller's id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.ctx
            .d
            .read(|e| e.conn_remote(self.conn).unwrap_or_default().to_string())
    }

    /// The connection the call's media flows on (open).
    #[wasm_bindgen(getter, unchecked_return_type = "Connection")]
    pub fn connection(&self) -> JsValue {
        self.ctx.conn_handle(self.conn)
    }

    /// What the caller passed as `options.metadata` (`undefined` if none).
    #[wasm_bindgen(getter)]
    pub fn metadata(&self) -> JsValue {
        self.metadata.clone()
    }

    /// Takes the call, sending `stream`'s tracks if given; returns the
    /// connection (the caller's media arrives as its `track` events).
    #[wasm_bindgen(unchecked_return_type = "Connection")]
    pub fn answer(&self, stream: Option<super::MediaStreamArg>) -> Result<JsValue, JsValue> {
        let stream = stream
            .map(JsValue::from)
            .filter(|s| !s.is_undefined() && !s.is_null());
        if let Some(s) = &stream {
            tracks_of(s)?;
        }
        let (conn, call) = (self.conn, self.call);
        self.ctx.d.run(|e, _| e.answer_call(conn, call))?;
        if let Some(s) = &stream {
            send_stream(&self.ctx, conn, s)?;
        }
        Ok(self.ctx.conn_handle(conn))
    }

    /// Refuses the call: the caller's `call()` rejects with
    /// `CallRejectedError` and `reason`. The connection stays open.
    pub fn reject(&self, reason: Option<String>) -> Result<(), JsValue> {
        let reason = reason.unwrap_or_else(|| "the callee declined".into());
        let (conn, call) = (self.conn, self.call);
        self.ctx.d.run(|e, _| e.reject_call(conn, call, &reason))?;
        Ok(())
    }
}
