//! Media on a connection: the tracks this side sends (senders, by
//! [`TrackId`]), the remote's tracks it receives (by transceiver `mid`),
//! and calls (`peer.call`). The browser objects are the driver's; the
//! engine decides when to renegotiate, what to tell the remote and which
//! events the user sees.
//!
//! ```text
//!  add_track ──► AddTrack (driver: addTrack) ──► negotiationneeded ──► offer (either side,
//!                                                  perfect negotiation; see `connection`)
//!  remove_track ► RemoveTrack (driver: removeTrack) ─► negotiationneeded ─► offer
//!  the user's track ended (driver: its `ended`, or `stop()`) ──► as remove_track,
//!      its mid listed in the next `tracks` signal's `ended`
//!  the user's track muted by its source (driver: `mute`/`unmute`) ──► as set_track_muted
//!  every local description, remove_track, set_track_muted:
//!      the senders' mids (and the muted ones) changed? ──► `tracks` signal
//!  remote track (driver: ontrack, during setRemoteDescription) ──► Track (+ MediaStream)
//!  `tracks` signal, in order behind the descriptions:
//!      a mid listed before and not now ──► TrackEnded (Ended if in `ended`, else Removed)
//!      muted flag changed ──► TrackMuted
//!  the connection moves to the broker's relay (no RTCPeerConnection, no media):
//!      every remote track ──► TrackEnded (Relay); senders and calls dropped;
//!      ConnError(MediaUnavailable) if it carried any media
//!
//!  call ──► `call` signal ──► (remote: IncomingCall once open) ──► answer_call ─► `call-answer`
//!                                                              └─► reject_call ─► `call-reject`
//!  `call-answer` ──► the call's op resolves with the connection (the caller adds its tracks)
//!  `call-reject` ──► the call's op fails with CallRejectedError
//! ```
//!
//! Once a side has added a track, `negotiationneeded` makes an offer on
//! either side of an open connection: both sides may offer at once, and
//! perfect negotiation settles it (the polite side rolls back and
//! answers; its tracks follow in its own offer, or ride the answer when
//! the browser pairs them with the offer's transceivers).
//!
//! Everything a remote can make this side hold is bounded: the remote
//! tracks (`MAX_REMOTE_TRACKS`), the stream ids (`MAX_REMOTE_STREAMS`),
//! the calls waiting for an answer (`MAX_PENDING_CALLS`).
//!
//! Without the `media` feature (the `peerwire/lite` build) the driver adds
//! no track and reports none, and the engine answers every call with
//! `call-reject` ([`LITE_CALL_REJECT`]) and ignores `tracks`: the checks on
//! [`MEDIA`] below let the linker drop the rest.

use super::Engine;
use super::Table;
use super::connection::ConnState;
use super::types::{ConnId, Event, Millis, OpId, Reply, TrackEndReason, TrackId};
use crate::core::error::PeerError;
use crate::protocol::frames::SignalBody;
use crate::protocol::json::Json;

/// This build has media (the `media` feature).
const MEDIA: bool = cfg!(feature = "media");

/// The reason a build without media gives the caller of `peer.call()`.
pub const LITE_CALL_REJECT: &str =
    "it runs peerwire/lite, which has no media (calls and tracks need the 'peerwire' entry)";

/// Tracks this side may send on one connection.
pub const MAX_TRACKS: usize = 64;
/// Remote tracks one connection may carry (more closes it).
pub const MAX_REMOTE_TRACKS: usize = 128;
/// Remote stream ids one connection keeps.
pub const MAX_REMOTE_STREAMS: usize = 128;
/// Calls from one remote waiting for an answer (more are refused).
pub const MAX_PENDING_CALLS: usize = 16;

/// One track this side sends.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    pub streams: Vec<String>,
    /// Its transceiver's mid, once a description gave it one.
    pub mid: Option<String>,
    /// Muted by the user (`muteTrack`).
    pub muted: bool,
    /// Muted by its source (the track's own `mute` event: no media for
    /// now); the remote sees it muted while either holds.
    pub source_muted: bool,
}

/// One remote track this side receives.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    /// A `tracks` signal listed it while it was here: its absence from a
    /// later one means the remote removed it.
    pub confirmed: bool,
    pub muted: bool,
}

/// A connection's media.
pub(crate) struct Media {
    /// This side added a track once: offers may come from either side.
    pub used: bool,
    pub senders: Table<TrackId, Sender>,
    pub receivers: Table<String, Receiver>,
    pub streams: Table<String, ()>,
    /// The last `tracks` signal sent: (sending, muted).
    pub sent: (String, String),
    /// Mids of senders whose source ended since the last `tracks` signal
    /// (the next one lists them in `ended`). At most `MAX_TRACKS`.
    pub ended: Vec<String>,
    /// Calls this side made, waiting for the remote's answer.
    pub calls_out: Table<u32, OpId>,
    /// Calls from the remote the user has not answered yet.
    pub calls_in: Table<u32, ()>,
    /// Calls that arrived before the connection opened.
    pub early_calls: Vec<(u32, Option<Json>)>,
    /// Calls this side made before the connection opened.
    pub unsent_calls: Vec<(u32, Option<Json>)>,
}

impl Media {
    pub fn new() -> Self {
        Self {
            used: false,
            senders: Table::new(),
            receivers: Table::new(),
            streams: Table::new(),
            sent: (String::new(), String::new()),
            ended: Vec::new(),
            calls_out: Table::new(),
            calls_in: Table::new(),
            early_calls: Vec::new(),
            unsent_calls: Vec::new(),
        }
    }

    /// What the `tracks` signal says now: (sending, muted).
    fn listing(&self) -> (String, String) {
        let mut sending = String::new();
        let mut muted = String::new();
        for s in self.senders.values() {
            let Some(mid) = &s.mid else { continue };
            for (list, on) in [
                (&mut sending, true),
                (&mut muted, s.muted || s.source_muted),
            ] {
                if on {
                    if !list.is_empty() {
                        list.push(' ');
                    }
                    list.push_str(mid);
                }
            }
        }
        (sending, muted)
    }
}

impl Engine {
    // ---- getters ---------------------------------------------------------

    /// The tracks this side sends on `conn`: (id, mid once negotiated).
    pub fn local_tracks(&self, conn: ConnId) -> Vec<(TrackId, Option<String>)> {
        self.conns.get(&conn).map_or_else(Vec::new, |c| {
            c.media
                .senders
                .iter()
                .map(|(t, s)| (*t, s.mid.clone()))
                .collect()
        })
    }

    /// The stream ids a track was added with.
    pub fn track_streams(&self, conn: ConnId, track: TrackId) -> Vec<String> {
        self.conns
            .get(&conn)
            .and_then(|c| c.media.senders.get(&track))
            .map_or_else(Vec::new, |s| s.streams.clone())
    }

    /// The remote's tracks this side receives on `conn`: (mid, muted).
    pub fn remote_tracks(&self, conn: ConnId) -> Vec<(String, bool)> {
        self.conns.get(&conn).map_or_else(Vec::new, |c| {
            c.media
                .receivers
                .iter()
                .map(|(m, r)| (m.clone(), r.muted))
                .collect()
        })
    }

    // ---- commands --------------------------------------------------------

    /// Media needs an RTCPeerConnection: not on the relay, not closed.
    fn media_conn(&self, conn: ConnId) -> Result<(), PeerError> {
        self.ensure_open()?;
        let Some(c) = self.conns.get(&conn) else {
            return Err(PeerError::Closed("the connection".into()));
        };
        if c.state == ConnState::Closed {
            return Err(PeerError::Closed(format!(
                "the connection to \"{}\"",
                c.remote
            )));
        }
        if c.relay.is_some() || !c.has_pc {
            return Err(PeerError::MediaUnavailable(format!(
                "the connection to \"{}\" runs over the broker's relay (no WebRTC path): media needs a direct or TURN path",
                c.remote
            )));
        }
        Ok(())
    }

    /// Sends a track (`kind` `"audio"` or `"video"`) in the streams
    /// `streams`; the driver adds it and the connection renegotiates.
    pub fn add_track(
        &mut self,
        conn: ConnId,
        kind: &str,
        streams: Vec<String>,
        now: Millis,
    ) -> Result<TrackId, PeerError> {
        self.media_conn(conn)?;
        let count = self.conns.get(&conn).map_or(0, |c| c.media.senders.len());
        if count >= MAX_TRACKS {
            return Err(PeerError::LimitExceeded(format!(
                "{MAX_TRACKS} tracks are sent on this connection already; remove one first"
            )));
        }
        let track = TrackId(self.next_id());
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(PeerError::Closed("the connection".into()));
        };
        c.media.used = true;
        c.media.senders.insert(
            track,
            Sender {
                streams: streams.clone(),
                mid: None,
                muted: false,
                source_muted: false,
            },
        );
        self.action(super::Action::AddTrack {
            conn,
            track,
            kind: kind.to_string(),
            streams,
        });
        self.settle(now);
        Ok(track)
    }

    /// Stops sending a track (the remote sees `TrackEnded`).
    pub fn remove_track(
        &mut self,
        conn: ConnId,
        track: TrackId,
        now: Millis,
    ) -> Result<(), PeerError> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(PeerError::Closed("the connection".into()));
        };
        if c.media.senders.remove(&track).is_none() {
            return Err(PeerError::InvalidArgument(
                "this track is not sent on this connection".into(),
            ));
        }
        self.action(super::Action::RemoveTrack { conn, track });
        self.announce_tracks(conn);
        self.settle(now);
        Ok(())
    }

    /// Tells the remote that a track is muted (or not); the driver sets
    /// the track's `enabled`.
    pub fn set_track_muted(
        &mut self,
        conn: ConnId,
        track: TrackId,
        muted: bool,
    ) -> Result<(), PeerError> {
        let sender = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.media.senders.get_mut(&track))
            .ok_or_else(|| {
                PeerError::InvalidArgument("this track is not sent on this connection".into())
            })?;
        sender.muted = muted;
        self.announce_tracks(conn);
        Ok(())
    }

    /// Calls `remote`: connects (or reuses the connection) and asks it to
    /// exchange media. Resolves with the connection once the remote
    /// answers; fails with `CallRejectedError` if it refuses.
    pub fn call(
        &mut self,
        remote: &str,
        metadata: Option<Json>,
        now: Millis,
    ) -> Result<OpId, PeerError> {
        let c = self.conn_to(remote, now)?;
        if let Err(e) = self.media_conn(c) {
            self.settle(now);
            return Err(e);
        }
        let op = self.new_op();
        let call = self.next_id();
        let open = match self.conns.get_mut(&c) {
            Some(conn) => {
                conn.media.calls_out.insert(call, op);
                if conn.state != ConnState::Open {
                    // Sent once the connection is open: the remote must
                    // know the session first (see `media_open`).
                    conn.media.unsent_calls.push((call, metadata.clone()));
                }
                conn.state == ConnState::Open
            }
            None => false,
        };
        if open {
            self.send_signal(c, SignalBody::Call { call, metadata });
        }
        self.settle(now);
        Ok(op)
    }

    /// Takes the remote's call `call` (the user then adds its tracks).
    pub fn answer_call(&mut self, conn: ConnId, call: u32) -> Result<(), PeerError> {
        self.take_call(conn, call)?;
        self.send_signal(conn, SignalBody::CallAnswer { call });
        Ok(())
    }

    /// Refuses the remote's call `call`.
    pub fn reject_call(&mut self, conn: ConnId, call: u32, reason: &str) -> Result<(), PeerError> {
        self.take_call(conn, call)?;
        let reason = reason.to_string();
        self.send_signal(conn, SignalBody::CallReject { call, reason });
        Ok(())
    }

    fn take_call(&mut self, conn: ConnId, call: u32) -> Result<(), PeerError> {
        self.media_conn(conn)?;
        self.conns
            .get_mut(&conn)
            .and_then(|c| c.media.calls_in.remove(&call))
            .ok_or_else(|| {
                PeerError::InvalidArgument("this call was answered or rejected already".into())
            })
    }

    // ---- inputs ----------------------------------------------------------

    /// After `setLocalDescription()`: the mid of each sender's transceiver
    /// (`None` before one is assigned, or after a rollback).
    pub fn handle_sender_mids(&mut self, conn: ConnId, mids: Vec<(TrackId, Option<String>)>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for (track, mid) in mids {
            if let Some(s) = c.media.senders.get_mut(&track) {
                s.mid = mid;
            }
        }
    }

    /// The user's track `track` sent on `conn` ended on its own (its
    /// `ended` event: the device went away) or was stopped (`stop()`):
    /// it is no longer sent, and the remote's `track-ended` says `ended`.
    /// Unknown ids (removed meanwhile) are ignored.
    pub fn handle_local_track_ended(&mut self, conn: ConnId, track: TrackId, now: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(sender) = c.media.senders.remove(&track) else {
            return;
        };
        if let Some(mid) = sender.mid {
            if c.media.ended.len() < MAX_TRACKS {
                c.media.ended.push(mid);
            }
        }
        self.action(super::Action::RemoveTrack { conn, track });
        self.announce_tracks(conn);
        self.settle(now);
    }

    /// The user's track `track` sent on `conn` was muted (or unmuted) by
    /// its source (its `mute` / `unmute` events): the remote sees
    /// `track-muted` / `track-unmuted`, as for `muteTrack`. Unknown ids
    /// are ignored.
    pub fn handle_local_track_muted(&mut self, conn: ConnId, track: TrackId, muted: bool) {
        let Some(sender) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.media.senders.get_mut(&track))
        else {
            return;
        };
        sender.source_muted = muted;
        self.announce_tracks(conn);
    }

    /// The remote's track on `mid` arrived (`ontrack`), in the sender's
    /// streams `streams`.
    pub fn handle_remote_track(
        &mut self,
        conn: ConnId,
        mid: &str,
        streams: Vec<String>,
        now: Millis,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.state == ConnState::Closed || c.media.receivers.contains_key(mid) {
            return;
        }
        if c.media.receivers.len() >= MAX_REMOTE_TRACKS {
            let err = PeerError::LimitExceeded(format!(
                "peer \"{}\" sent more than {MAX_REMOTE_TRACKS} tracks on one connection",
                c.remote
            ));
            self.fail_conn(conn, err, now);
            return;
        }
        c.media.receivers.insert(
            mid.to_string(),
            Receiver {
                confirmed: false,
                muted: false,
            },
        );
        let mut new_streams = Vec::new();
        for s in &streams {
            if !c.media.streams.contains_key(s.as_str())
                && c.media.streams.len() < MAX_REMOTE_STREAMS
            {
                c.media.streams.insert(s.clone(), ());
                new_streams.push(s.clone());
            }
        }
        self.events.push_back(Event::Track {
            conn,
            mid: mid.to_string(),
            streams,
        });
        for stream in new_streams {
            self.events.push_back(Event::MediaStream { conn, stream });
        }
    }

    // ---- inside ----------------------------------------------------------

    /// Sends the `tracks` signal if what it would say changed.
    pub(crate) fn announce_tracks(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !MEDIA || !c.media.used || c.state == ConnState::Closed {
            return;
        }
        let now = c.media.listing();
        if now == c.media.sent {
            return;
        }
        c.media.sent = now.clone();
        let (sending, muted) = now;
        // Only mids this signal drops: a mid the browser gave to a new
        // sender since is live again.
        let ended: Vec<String> = std::mem::take(&mut c.media.ended)
            .into_iter()
            .filter(|m| !sending.split(' ').any(|s| s == m))
            .collect();
        let ended = ended.join(" ");
        self.send_signal(
            conn,
            SignalBody::Tracks {
                sending,
                muted,
                ended,
            },
        );
    }

    /// A media signal from the remote, in order with its descriptions.
    pub(crate) fn on_media_signal(&mut self, c: ConnId, body: SignalBody, now: Millis) {
        if !MEDIA {
            if let SignalBody::Call { call, .. } = body {
                let reason = LITE_CALL_REJECT.to_string();
                self.send_signal(c, SignalBody::CallReject { call, reason });
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        match body {
            SignalBody::Tracks {
                sending,
                muted,
                ended: source_ended,
            } => {
                let sending: Vec<&str> = sending.split(' ').filter(|m| !m.is_empty()).collect();
                let muted: Vec<&str> = muted.split(' ').filter(|m| !m.is_empty()).collect();
                let source_ended: Vec<&str> = source_ended.split(' ').collect();
                let mut ended = Vec::new();
                let mut changed = Vec::new();
                for (mid, r) in conn.media.receivers.iter_mut() {
                    if sending.contains(&mid.as_str()) {
                        r.confirmed = true;
                        let m = muted.contains(&mid.as_str());
                        if m != r.muted {
                            r.muted = m;
                            changed.push((mid.clone(), m));
                        }
                    } else if r.confirmed {
                        ended.push(mid.clone());
                    }
                }
                for mid in &ended {
                    conn.media.receivers.remove(mid.as_str());
                }
                for (mid, muted) in changed {
                    self.events.push_back(Event::TrackMuted {
                        conn: c,
                        mid,
                        muted,
                    });
                }
                for mid in ended {
                    let reason = if source_ended.contains(&mid.as_str()) {
                        TrackEndReason::Ended
                    } else {
                        TrackEndReason::Removed
                    };
                    self.events.push_back(Event::TrackEnded {
                        conn: c,
                        mid,
                        reason,
                    });
                }
            }
            SignalBody::Call { call, metadata } => {
                let pending = conn.media.calls_in.len() + conn.media.early_calls.len();
                if pending >= MAX_PENDING_CALLS {
                    let reason = format!("{MAX_PENDING_CALLS} calls wait for an answer already");
                    self.send_signal(c, SignalBody::CallReject { call, reason });
                } else if conn.state == ConnState::Open {
                    conn.media.calls_in.insert(call, ());
                    self.events.push_back(Event::IncomingCall {
                        conn: c,
                        call,
                        metadata,
                    });
                } else {
                    conn.media.early_calls.push((call, metadata));
                }
            }
            SignalBody::CallAnswer { call } => {
                if let Some(op) = conn.media.calls_out.remove(&call) {
                    self.done(op, Ok(Reply::Connection(c)));
                }
            }
            SignalBody::CallReject { call, reason } => {
                if let Some(op) = conn.media.calls_out.remove(&call) {
                    let id = conn.remote.clone();
                    self.done(op, Err(PeerError::CallRejected { id, reason }));
                }
            }
            _ => {}
        }
        let _ = now;
    }

    /// The connection opened: calls made before it go out, calls that
    /// came before it are shown now.
    pub(crate) fn media_open(&mut self, c: ConnId) {
        let Some(conn) = self.conns.get_mut(&c).filter(|_| MEDIA) else {
            return;
        };
        for (call, metadata) in std::mem::take(&mut conn.media.unsent_calls) {
            self.send_signal(c, SignalBody::Call { call, metadata });
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        for (call, metadata) in std::mem::take(&mut conn.media.early_calls) {
            conn.media.calls_in.insert(call, ());
            self.events.push_back(Event::IncomingCall {
                conn: c,
                call,
                metadata,
            });
        }
    }

    /// Connection `c` moved to the broker's relay (its RTCPeerConnection
    /// is released): the media it carried stops. Each remote track ends
    /// (`Relay`), this side's senders are forgotten (the user's tracks go
    /// on; they can be added again once the connection is back on a
    /// direct path), calls waiting for an answer fail, and, if tracks or
    /// calls to answer were lost, a `ConnError` with `MediaUnavailable`
    /// says so.
    pub(crate) fn media_to_relay(&mut self, c: ConnId) {
        let Some(conn) = self.conns.get_mut(&c).filter(|_| MEDIA) else {
            return;
        };
        let remote = conn.remote.clone();
        let m = &mut conn.media;
        let sent = m.senders.len();
        let mids: Vec<String> = m.receivers.keys().cloned().collect();
        let calls: Vec<OpId> = m.calls_out.take().into_iter().map(|(_, op)| op).collect();
        let answered = m.calls_in.len() + m.early_calls.len();
        if sent == 0 && mids.is_empty() && calls.is_empty() && answered == 0 {
            return;
        }
        m.senders.clear();
        m.receivers.clear();
        m.streams.clear();
        m.calls_in.clear();
        m.early_calls.clear();
        m.unsent_calls.clear();
        m.ended.clear();
        m.sent = (String::new(), String::new());
        m.used = false;
        let why = format!(
            "the connection to \"{remote}\" moved to the broker's relay, which carries no media: {sent} track(s) sent and {} received stopped (media needs a direct or TURN path; add the tracks again once it is back on one)",
            mids.len()
        );
        let received = mids.len();
        for mid in mids {
            self.events.push_back(Event::TrackEnded {
                conn: c,
                mid,
                reason: TrackEndReason::Relay,
            });
        }
        for op in calls {
            self.done(op, Err(PeerError::MediaUnavailable(why.clone())));
        }
        // A call of this side's was all: its rejection says it.
        if sent > 0 || received > 0 || answered > 0 {
            self.events.push_back(Event::ConnError {
                conn: c,
                error: PeerError::MediaUnavailable(why),
            });
        }
    }

    /// The connection closed: calls waiting fail, tracks are forgotten.
    pub(crate) fn media_closed(&mut self, c: ConnId, err: &PeerError) {
        let Some(conn) = self.conns.get_mut(&c).filter(|_| MEDIA) else {
            return;
        };
        let ops: Vec<OpId> = conn
            .media
            .calls_out
            .take()
            .into_iter()
            .map(|(_, op)| op)
            .collect();
        conn.media.calls_in.clear();
        conn.media.early_calls.clear();
        conn.media.unsent_calls.clear();
        conn.media.senders.clear();
        // The remote tracks end with the RTCPeerConnection (the
        // connection's `close` says so; no `TrackEnded` each).
        conn.media.receivers.clear();
        for op in ops {
            self.done(op, Err(err.clone()));
        }
    }
}
