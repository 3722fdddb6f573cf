//! smoke's media over rest: `res.mediastream(stream)` answers a request
//! with a MediaStream (its tracks go on the connection the request came
//! on, the body names the stream), `response.mediastream()` resolves the
//! remote stream once all its tracks arrived, so a node can fetch a stream
//! and serve it again (a proxy); and `node.media.createTestPattern()`.
//!
//! The response body is JSON `{"mediastream": <stream id>, "tracks": n}`
//! with the content type [`MEDIASTREAM_TYPE`]; the media itself rides the
//! RTCPeerConnection (see `core::engine::media`).

use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{FetchResponse, RestResponse};
use crate::api::context::Target;
use crate::api::errors::PeerError;
use crate::api::media::{send_stream, tracks_of};
use crate::api::node::Node;
use crate::protocol::json::{Object as JsonObject, Writer};
use crate::web::driver::promise;

/// The content type of a media stream response.
pub const MEDIASTREAM_TYPE: &str = "application/vnd.peerwire.mediastream+json";

/// Tracks one media stream response may announce.
const MAX_STREAM_TRACKS: u64 = 64;

#[wasm_bindgen(module = "/src/web/helpers_full.js")]
extern "C" {
    #[wasm_bindgen(js_name = testPattern)]
    fn test_pattern(width: u32, height: u32, frame_rate: f64) -> JsValue;
    #[wasm_bindgen(js_name = streamWhenComplete)]
    fn stream_when_complete(
        watch: &JsValue,
        unwatch: &JsValue,
        find: &JsValue,
        count: u32,
        peer_id: &str,
    ) -> Promise;
}

#[wasm_bindgen]
impl RestResponse {
    /// Answers with a MediaStream: its tracks are sent on the connection
    /// the request came on (once per connection), and the client's
    /// `response.mediastream()` resolves the stream. Rejects with
    /// `MediaUnavailableError` on a connection that cannot carry media.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn mediastream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStream")] stream: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            let ctx = inner.stream.ctx.clone();
            let chan = inner.stream.chan;
            let conn = ctx.d.read(|e| e.chan_conn(chan)).ok_or_else(|| {
                PeerError::MediaUnavailable(
                    "a request from this node to itself cannot carry media".into(),
                )
            })?;
            let id = Reflect::get(&stream, &"id".into())
                .ok()
                .and_then(|v| v.as_string())
                .ok_or_else(|| PeerError::InvalidArgument("expected a MediaStream".into()))?;
            let tracks = tracks_of(&stream)?;
            send_stream(&ctx, conn, &stream)?;
            let body = Writer::new()
                .str("mediastream", &id)
                .u64("tracks", u64::from(tracks.length()))
                .finish();
            inner
                .send_whole(inner.status.get(), body.into_bytes(), MEDIASTREAM_TYPE)
                .await?;
            Ok(JsValue::UNDEFINED)
        }))
    }
}

#[wasm_bindgen]
impl FetchResponse {
    /// For a `res.mediastream()` answer: the remote MediaStream, once every
    /// track of it arrived on the connection (it plays like any remote
    /// stream, and can be served again with `res.mediastream()`). It
    /// watches the connection's `track` events without taking them: a
    /// `track` listener attached later (`node.connect(address)`) still
    /// gets each.
    #[wasm_bindgen(unchecked_return_type = "Promise<MediaStream>")]
    pub fn mediastream(&self) -> Promise {
        let inner = self.inner.clone();
        let is_media =
            self.headers.get("content-type").map(String::as_str) == Some(MEDIASTREAM_TYPE);
        let ctx = inner.stream.ctx.clone();
        let conn = ctx.d.read(|e| e.chan_conn(inner.stream.chan));
        promise(Box::pin(async move {
            if !is_media {
                return Err(PeerError::InvalidArgument(
                    "this response is not a media stream (the server did not answer with res.mediastream())".into(),
                )
                .into());
            }
            let conn = conn.ok_or_else(|| PeerError::Closed("the request's connection".into()))?;
            let body = String::from_utf8(inner.whole().await?).unwrap_or_default();
            let bad = |detail: &str| PeerError::Protocol {
                id: inner.stream.remote.clone(),
                detail: format!("a media stream response {detail}"),
            };
            let head = JsonObject::parse(&body).map_err(|_| bad("that is not a JSON object"))?;
            let id = head
                .str("mediastream")
                .map_err(|_| bad("with no stream id"))?;
            let count = head
                .u64("tracks")
                .ok()
                .filter(|n| *n <= MAX_STREAM_TRACKS)
                .ok_or_else(|| bad("with a bad track count"))?;
            let d = ctx.d.clone();
            let find = Closure::<dyn FnMut() -> JsValue>::new(move || {
                d.received_stream(conn, &id).unwrap_or(JsValue::UNDEFINED)
            })
            .into_js_value();
            // The SDK's own listeners, not `conn.on`: a `track` event kept
            // for the user's first `track` listener stays kept for it.
            let target = Target::Conn(conn);
            let (weak, t) = (Rc::downgrade(&ctx), target.clone());
            let watch = Closure::<dyn FnMut(String, Function)>::new(move |ev: String, f| {
                if let Some(ctx) = weak.upgrade() {
                    let _ = ctx.watch(&t, &ev, f);
                }
            })
            .into_js_value();
            let weak = Rc::downgrade(&ctx);
            let unwatch = Closure::<dyn FnMut(String, Function)>::new(move |ev: String, f| {
                if let Some(ctx) = weak.upgrade() {
                    ctx.unwatch(&target, &ev, &f);
                }
            })
            .into_js_value();
            let peer_id = inner.stream.remote.clone();
            JsFuture::from(stream_when_complete(
                &watch,
                &unwatch,
                &find,
                count as u32,
                &peer_id,
            ))
            .await
        }))
    }
}

/// `node.media`: media sources.
#[wasm_bindgen]
pub struct NodeMedia {}

#[wasm_bindgen]
impl NodeMedia {
    /// A test pattern: a MediaStream with a canvas-drawn video track
    /// (colour bars, a moving line, a frame counter) and, where Web Audio
    /// exists, a 440 Hz tone. Stopping all its tracks stops the drawing.
    #[wasm_bindgen(js_name = createTestPattern, unchecked_return_type = "MediaStream")]
    pub fn create_test_pattern(
        &self,
        options: Option<crate::api::TestPatternOptionsArg>,
    ) -> JsValue {
        let options: Option<JsValue> = options.map(Into::into);
        let get = |k: &str, d: f64| {
            options
                .as_ref()
                .and_then(|o| Reflect::get(o, &k.into()).ok())
                .and_then(|v| v.as_f64())
                .filter(|v| *v > 0.0 && *v <= 4096.0)
                .unwrap_or(d)
        };
        test_pattern(
            get("width", 320.0) as u32,
            get("height", 240.0) as u32,
            get("frameRate", 15.0),
        )
    }
}

#[wasm_bindgen]
impl Node {
    /// Media sources (`createTestPattern()`).
    #[wasm_bindgen(getter)]
    pub fn media(&self) -> NodeMedia {
        NodeMedia {}
    }
}
