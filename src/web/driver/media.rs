//! The driver's media: the `RTCRtpSender` of each track this side sends
//! (by the engine's [`TrackId`]) and the remote tracks and streams it
//! receives (by connection and mid). The engine decides; this only
//! carries out `AddTrack` / `RemoveTrack` and reports `ontrack`, the
//! senders' mids, and what happens to the user's tracks it sends (their
//! `ended`, `mute`, `unmute` and `stop()`, through a [`TrackWatch`] each,
//! removed with the sender). Nothing here ever stops a track the user
//! gave: closing a connection drops the senders with the
//! RTCPeerConnection, which ends only the remote tracks.

use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Reflect};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::{Closure, wasm_bindgen};

use super::Driver;
use crate::core::engine::{ConnId, Table, TrackId};
use crate::core::error::PeerError;

#[wasm_bindgen(module = "/src/web/helpers_full.js")]
extern "C" {
    #[wasm_bindgen(js_name = senderMids)]
    fn sender_mids_js(pc: &JsValue, senders: &Array) -> Array;
    #[wasm_bindgen(js_name = trackEvent)]
    fn track_event(ev: &JsValue) -> Array;
    #[wasm_bindgen(js_name = streamIds)]
    fn stream_ids_js(streams: &Array) -> Array;
    #[wasm_bindgen(js_name = watchTrack)]
    fn watch_track_js(track: &JsValue, report: &JsValue);
    #[wasm_bindgen(js_name = unwatchTrack)]
    fn unwatch_track_js(track: &JsValue, report: &JsValue);
}

/// The driver's hooks on one of the user's tracks it sends (`watchTrack`
/// in media.js): its `ended` / `stop()`, `mute` and `unmute` reach the
/// engine. Dropping it removes them.
struct TrackWatch {
    track: JsValue,
    report: Closure<dyn FnMut(String)>,
}

impl TrackWatch {
    /// Watches `track`, sent as `id` on `conn`, for the driver `driver`.
    fn new(driver: &Weak<Driver>, conn: ConnId, id: TrackId, track: &JsValue) -> Self {
        let weak = driver.clone();
        let report = Closure::<dyn FnMut(String)>::new(move |what: String| {
            // Later, not now: this runs inside the user's `stop()`, and
            // the engine's answer drops this very closure.
            let weak = weak.clone();
            wasm_bindgen_futures::spawn_local(async move {
                Driver::feed(&weak, |e, now| match what.as_str() {
                    "ended" => e.handle_local_track_ended(conn, id, now),
                    "mute" => e.handle_local_track_muted(conn, id, true),
                    "unmute" => e.handle_local_track_muted(conn, id, false),
                    _ => {}
                });
            });
        });
        watch_track_js(track, report.as_ref());
        Self {
            track: track.clone(),
            report,
        }
    }
}

impl Drop for TrackWatch {
    fn drop(&mut self) {
        unwatch_track_js(&self.track, self.report.as_ref());
    }
}

/// One track this side sends.
struct Sending {
    conn: ConnId,
    /// The track as the user gave it (replaced by `replaceTrack`).
    track: JsValue,
    /// The sender, once `addTrack` made it.
    sender: Option<JsValue>,
    /// The hooks on `track` (none for a `replaceTrack(old, null)`).
    _watch: Option<TrackWatch>,
}

/// One remote track: the track and its streams.
pub struct Receiving {
    pub track: JsValue,
    pub streams: Array,
}

/// The media objects of every connection.
#[derive(Default)]
pub struct MediaIo {
    sending: Table<TrackId, Sending>,
    receiving: Table<(ConnId, String), Receiving>,
    /// The track and streams of the `add_track` command under way.
    staged: Option<(JsValue, Array)>,
}

impl MediaIo {
    /// Forgets a released connection's senders (and their hooks on the
    /// user's tracks, which go on). Its remote tracks stay until the
    /// engine's `TrackEnded` (a move to the relay) or `Closed` for it
    /// (`forget_conn_media`).
    pub fn release(&mut self, conn: ConnId) {
        self.sending.retain(|_, s| s.conn != conn);
    }
}

/// The ids of `streams`.
pub fn stream_ids(streams: &Array) -> Vec<String> {
    stream_ids_js(streams)
        .iter()
        .filter_map(|v| v.as_string())
        .collect()
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Calls `obj[name](...args)`; a throw becomes its message.
fn call(obj: &JsValue, name: &str, args: &[&JsValue]) -> Result<JsValue, String> {
    let f: Function = get(obj, name)
        .dyn_into()
        .map_err(|_| format!("{name} is not supported here"))?;
    let list: Array = args.iter().map(|a| (*a).clone()).collect();
    f.apply(obj, &list)
        .map_err(|e| crate::web::js_error_text(&e))
}

use wasm_bindgen::JsCast;

impl Driver {
    /// Adds `track` in `streams` to `conn`: checks the arguments, asks the
    /// engine (which renegotiates), and returns the track's id.
    pub fn send_track(
        self: &Rc<Self>,
        conn: ConnId,
        track: &JsValue,
        streams: Array,
    ) -> Result<TrackId, PeerError> {
        let kind = get(track, "kind").as_string().unwrap_or_default();
        if kind != "audio" && kind != "video" {
            return Err(PeerError::InvalidArgument(
                "addTrack needs a MediaStreamTrack (audio or video)".into(),
            ));
        }
        if self.track_id(conn, track).is_some() {
            return Err(PeerError::InvalidArgument(
                "this track is already sent on this connection".into(),
            ));
        }
        if let Some(pc) = self.pc(conn) {
            if !get(&pc, "addTrack").is_function() {
                return Err(PeerError::MediaUnavailable(
                    "this WebRTC implementation has no media (addTrack)".into(),
                ));
            }
        }
        let ids = stream_ids(&streams);
        self.io.borrow_mut().media.staged = Some((track.clone(), streams));
        let out = self.run(|e, now| e.add_track(conn, &kind, ids, now));
        self.io.borrow_mut().media.staged = None;
        out
    }

    /// `AddTrack`: the staged track goes to the RTCPeerConnection.
    pub(super) fn add_track(self: &Rc<Self>, conn: ConnId, id: TrackId) {
        let (Some(pc), Some((track, streams))) =
            (self.pc(conn), self.io.borrow_mut().media.staged.take())
        else {
            return;
        };
        let mut args: Vec<&JsValue> = vec![&track];
        let streams: Vec<JsValue> = streams.iter().collect();
        args.extend(streams.iter());
        let sender = match call(&pc, "addTrack", &args) {
            Ok(s) => Some(s),
            Err(text) => {
                crate::web::console_error("peerwire: addTrack failed:", &text.into());
                None
            }
        };
        let watch = TrackWatch::new(&self.me, conn, id, &track);
        self.io.borrow_mut().media.sending.insert(
            id,
            Sending {
                conn,
                track,
                sender,
                _watch: Some(watch),
            },
        );
    }

    /// `RemoveTrack`: its sender leaves the RTCPeerConnection.
    pub(super) fn remove_track(self: &Rc<Self>, conn: ConnId, id: TrackId) {
        let gone = self.io.borrow_mut().media.sending.remove(&id);
        if let (
            Some(pc),
            Some(Sending {
                sender: Some(s), ..
            }),
        ) = (self.pc(conn), gone)
        {
            let _ = call(&pc, "removeTrack", &[&s]);
        }
    }

    /// The id of the sender of `track` on `conn`, if it is sent there.
    pub fn track_id(&self, conn: ConnId, track: &JsValue) -> Option<TrackId> {
        self.io
            .borrow()
            .media
            .sending
            .iter()
            .find(|(_, s)| s.conn == conn && s.track == *track)
            .map(|(id, _)| *id)
    }

    /// `sender.replaceTrack(new)`: the remote sees the new track's media
    /// on the same track, without renegotiation.
    pub fn replace_track(&self, id: TrackId, new: &JsValue) -> js_sys::Promise {
        let found = self
            .io
            .borrow()
            .media
            .sending
            .get(&id)
            .and_then(|s| Some((s.conn, s.sender.clone()?)));
        let Some((conn, sender)) = found else {
            let e = PeerError::MediaUnavailable("the track has no sender".into());
            return js_sys::Promise::reject(&e.to_js());
        };
        match call(&sender, "replaceTrack", &[new]) {
            Ok(p) => {
                // The hooks move to the new track (the old one's go).
                let watch = (!new.is_null() && !new.is_undefined())
                    .then(|| TrackWatch::new(&self.me, conn, id, new));
                let old = self.io.borrow_mut().media.sending.get_mut(&id).map(|s| {
                    s.track = new.clone();
                    std::mem::replace(&mut s._watch, watch)
                });
                drop(old);
                p.dyn_into()
                    .unwrap_or_else(|_| js_sys::Promise::resolve(&JsValue::UNDEFINED))
            }
            Err(text) => js_sys::Promise::reject(&PeerError::InvalidArgument(text).to_js()),
        }
    }

    /// The mids of `conn`'s senders, after a local description.
    pub(super) fn sender_mids(&self, conn: ConnId, pc: &JsValue) -> Vec<(TrackId, Option<String>)> {
        let (ids, senders): (Vec<TrackId>, Array) = {
            let io = self.io.borrow();
            let mine: Vec<(TrackId, JsValue)> = io
                .media
                .sending
                .iter()
                .filter(|(_, s)| s.conn == conn)
                .filter_map(|(id, s)| Some((*id, s.sender.clone()?)))
                .collect();
            (
                mine.iter().map(|(id, _)| *id).collect(),
                mine.into_iter().map(|(_, s)| s).collect(),
            )
        };
        if ids.is_empty() {
            return Vec::new();
        }
        let mids = sender_mids_js(pc, &senders);
        ids.into_iter()
            .zip(mids.iter())
            .map(|(id, m)| (id, m.as_string()))
            .collect()
    }

    /// `ontrack`: keeps the track and its streams, tells the engine.
    pub fn remote_track(self: &Rc<Self>, conn: ConnId, ev: &JsValue) {
        let info = track_event(ev);
        let Some(mid) = info.get(0).as_string() else {
            return;
        };
        let streams: Array = info.get(1).unchecked_into();
        let ids = stream_ids(&streams);
        let track = get(ev, "track");
        self.io
            .borrow_mut()
            .media
            .receiving
            .insert((conn, mid.clone()), Receiving { track, streams });
        self.input(|e, now| e.handle_remote_track(conn, &mid, ids, now));
    }

    /// The remote track on `mid` and its streams.
    pub fn received(&self, conn: ConnId, mid: &str) -> Option<(JsValue, Array)> {
        self.io
            .borrow()
            .media
            .receiving
            .get(&(conn, mid.to_string()))
            .map(|r| (r.track.clone(), r.streams.clone()))
    }

    /// Forgets the media of `conn`, which closed: its remote tracks
    /// (they ended with it), and its senders with their hooks on the
    /// user's tracks (gone at the close, not when the RTCPeerConnection
    /// is released a moment later).
    pub fn forget_conn_media(&self, conn: ConnId) {
        let gone: Vec<Sending> = {
            let mut io = self.io.borrow_mut();
            io.media.receiving.retain(|(c, _), _| *c != conn);
            let ids: Vec<TrackId> = io
                .media
                .sending
                .iter()
                .filter(|(_, s)| s.conn == conn)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| io.media.sending.remove(id))
                .collect()
        };
        drop(gone);
    }

    /// Forgets an ended remote track.
    pub fn forget_received(&self, conn: ConnId, mid: &str) {
        self.io
            .borrow_mut()
            .media
            .receiving
            .remove(&(conn, mid.to_string()));
    }

    /// The remote stream `id` of `conn` (from its tracks).
    pub fn received_stream(&self, conn: ConnId, id: &str) -> Option<JsValue> {
        let io = self.io.borrow();
        io.media
            .receiving
            .iter()
            .filter(|((c, _), _)| *c == conn)
            .flat_map(|(_, r)| r.streams.iter())
            .find(|s| get(s, "id").as_string().as_deref() == Some(id))
    }
}
