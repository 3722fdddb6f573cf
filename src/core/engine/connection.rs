//! Connections: one RTCPeerConnection per remote id, its negotiation run
//! one browser call at a time, its keep-alive and its deadlines.
//!
//! ```text
//!             connect() / an offer arrives            own channel open
//!   (none) ─────────────────────────────► Connecting ─────────────────► Open ◄─┐
//!                                            │                            │    │ path lost:
//!      unknown peer, bye, ICE failed,        │  close(), remote close,    │    │ ICE restarts
//!      connectTimeout, close()               ▼  bad frames, restarts      ▼    │ (`recovery`)
//!                                          Closed ◄──── used up ──────────┴────┘
//!                                            │
//!             own channel's close event, or closeTimeout
//!                                            ▼
//!                                 ReleaseConnection (driver)
//! ```
//!
//! Only the side whose id sorts first (the impolite one) makes the first
//! offer; the other, when it dials, sends a `dial` signal and waits for
//! that offer, so a connection never starts with a glare and a rollback.
//! Later offers follow perfect negotiation (`core::negotiation`). The
//! engine models the signaling state itself, since every description
//! change goes through it, and asks the driver for one browser call at a
//! time (`busy`); signals and `negotiationneeded` that arrive meanwhile
//! wait in `backlog`, in order.
//!
//! Signals carry the sender's session and, once known, the receiver's
//! (`to`): a signal for an older session of this side is dropped, so the
//! leftovers of a previous connection to the same id are never taken for
//! the new one.

use std::collections::VecDeque;

use super::Engine;
use super::channel::{Channel, Role};
use super::types::{
    Action, ChanId, ChannelKind, ConnId, Event, LogLevel, Millis, OpId, RelayPolicy, Reply,
    Transmit,
};
use crate::core::error::PeerError;
use crate::core::keepalive::{KeepAlive, Tick};
use crate::core::negotiation::{
    Negotiator, OnCandidate, OnDescription, OnNegotiationNeeded, SdpKind, SignalingState, is_polite,
};
use crate::protocol::ErrorCode;
use crate::protocol::frames::{Frame, PeerSignal, SignalBody};

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Open,
    Closed,
}

/// The browser call a connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    SetLocal,
    SetRemote {
        kind: SdpKind,
    },
    /// `quiet`: a candidate of an ignored offer, whose refusal is expected.
    AddCandidate {
        quiet: bool,
    },
}

/// Negotiation work waiting for the browser call in flight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Signal(SignalBody),
    NegotiationNeeded,
    AddCandidate(String),
    /// A candidate of an offer this side ignored, tried after the answer.
    TryCandidate(String),
    MakeAnswer,
    CheckDeferred,
}

pub(crate) struct Conn {
    pub remote: String,
    /// Identifies this side's RTCPeerConnection in signals.
    pub session: u64,
    /// The remote's session, once a signal told us.
    pub remote_session: Option<u64>,
    /// The frame version the remote reads, as its signals said (1 until
    /// one says more): from 2, small messages go out in batch frames.
    pub remote_frames: u32,
    /// This side asked for the connection (no `Incoming` event).
    pub initiated: bool,
    pub state: ConnState,
    pub main: ChanId,
    pub negotiator: Negotiator<String>,
    pub signaling: SignalingState,
    pub has_remote: bool,
    pub busy: Option<Busy>,
    pub backlog: VecDeque<Step>,
    pub keepalive: KeepAlive,
    pub connect_deadline: Millis,
    pub openers: Vec<OpId>,
    pub streams: super::Table<ChanId, ()>,
    /// Bytes this connection's remote makes this side hold.
    pub held: usize,
    pub close_reason: Option<String>,
    pub local_candidates: u32,
    pub remote_candidates: u32,
    pub refused_candidates: u32,
    pub ice_state: String,
    /// Set while the path is being restored (ICE restarts).
    pub recovery: Option<super::recovery::Recovery>,
    /// When ICE reported `disconnected` (cleared on `connected`).
    pub disconnected_at: Option<Millis>,
    /// `restartIce()` was called; the next `negotiationneeded` makes the
    /// restart offer even though the session is already agreed.
    pub want_restart: bool,
    /// This side's offer while it waits for the answer (sent again if a
    /// restart finds it unanswered: it may have been lost with the broker
    /// link).
    pub pending_offer: Option<String>,
    /// When `pending_offer` was sent.
    pub offer_sent: Millis,
    /// Set once the connection runs over the broker's relay.
    pub relay: Option<super::relay::Relay>,
    /// When to fall back to the relay if WebRTC has found no path.
    pub relay_at: Option<Millis>,
    /// The driver holds an RTCPeerConnection for it.
    pub has_pc: bool,
    /// The number for the next channel this side opens (this side's
    /// parity: 2, 4, … for the id that sorts first, else 1, 3, …).
    pub next_num: u32,
    /// Each channel by its number (the own channel is 0).
    pub nums: super::Table<u32, ChanId>,
    /// The highest number of a channel the remote opened.
    pub their_top: u32,
    /// Its direct path carries every channel in the own data channel, in
    /// relay payloads (after the relay: see `migrate`).
    pub carried: bool,
    /// The own data channel's `bufferedAmount` while `carried`.
    pub carried_buffered: usize,
    /// While relayed: the next try of a direct path (see `migrate`).
    pub probe: Option<super::migrate::Probe>,
    /// Tracks and calls (see `media`).
    pub media: super::media::Media,
}

/// A session number in a log line (`none` before the remote's is known).
fn session_text(session: Option<u64>) -> String {
    session.map_or_else(|| "none".into(), |s| s.to_string())
}

impl Conn {
    /// Whether `negotiationneeded` may make an offer now: the first offer
    /// is the impolite side's (and an ICE restart's); once this side sends
    /// media, any renegotiation of a negotiated session, from either side.
    fn may_offer(&self) -> bool {
        let first_or_restart = (!self.has_remote || self.want_restart) && !self.negotiator.polite();
        first_or_restart || (self.media.used && self.has_remote)
    }

    /// What a connection still in `Connecting` waits for, for the timeout.
    fn waiting_for(&self) -> String {
        if self.remote_session.is_none() {
            return "no answer from the remote peer reached this side (its signals never arrived)"
                .into();
        }
        if self.busy.is_some() || self.signaling != SignalingState::Stable || !self.has_remote {
            return format!(
                "the session description exchange did not finish (signaling state {:?})",
                self.signaling
            );
        }
        format!(
            "ICE found no network path ({} local and {} remote candidates exchanged, {} refused; ICE state \"{}\"); the network may block WebRTC: configure a TURN server in iceServers",
            self.local_candidates,
            self.remote_candidates,
            self.refused_candidates,
            if self.ice_state.is_empty() {
                "new"
            } else {
                &self.ice_state
            }
        )
    }
}

/// How a `bye` reason starts when a cap refused the offer (the budget,
/// `maxConnections`, or `maxOffersPerMinute`): the dialler reports
/// `LimitExceededError` instead of a failed connection.
pub(crate) const LIMIT_REFUSAL: &str = "limit-exceeded: ";

impl Engine {
    // ---- creating and closing -------------------------------------------

    /// The connection to `remote`, created (as this side's) if there is none.
    pub(crate) fn conn_to(&mut self, remote: &str, now: Millis) -> Result<ConnId, PeerError> {
        self.ensure_open()?;
        crate::protocol::ids::check_peer_id(remote)
            .map_err(|e| PeerError::InvalidId(e.to_string()))?;
        if self.id.as_deref() == Some(remote) {
            return Err(PeerError::InvalidArgument(
                "a peer cannot connect to itself".into(),
            ));
        }
        if let Some(&c) = self.by_remote.get(remote) {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.initiated = true;
            }
            return Ok(c);
        }
        self.create_conn(remote, true, None, false, now)
    }

    /// `relayed`: the remote asked to relay from the start (no WebRTC).
    pub(crate) fn create_conn(
        &mut self,
        remote: &str,
        initiated: bool,
        remote_session: Option<u64>,
        relayed: bool,
        now: Millis,
    ) -> Result<ConnId, PeerError> {
        if self.conns.len() >= self.config.max_connections {
            self.note_conn_refused();
            return Err(PeerError::LimitExceeded(format!(
                "{} connections are open, the maxConnections budget; close one first or raise the option",
                self.config.max_connections
            )));
        }
        let id = ConnId(self.next_id());
        let main = ChanId(self.next_id());
        let me = self.id.clone().unwrap_or_default();
        let mut chan = Channel::new(
            Some(id),
            remote,
            ChannelKind::Main,
            Role::Main,
            self.config.channel,
            self.config.max_message_size,
        );
        chan.listening = self.peer_listening;
        chan.num = Some(0);
        let mut nums = super::Table::new();
        nums.insert(0, main);
        self.chans.insert(main, chan);
        let session = self.rng.next_u53();
        self.conns.insert(
            id,
            Conn {
                remote: remote.to_string(),
                session,
                remote_session,
                remote_frames: 1,
                initiated,
                state: ConnState::Connecting,
                main,
                negotiator: Negotiator::new(is_polite(&me, remote)),
                signaling: SignalingState::Stable,
                has_remote: false,
                busy: None,
                backlog: VecDeque::new(),
                keepalive: KeepAlive::new(
                    self.config.keep_alive_interval as f64,
                    self.config.keep_alive_timeout as f64,
                    now,
                ),
                connect_deadline: now + self.config.connect_timeout as f64,
                openers: Vec::new(),
                streams: super::Table::new(),
                held: 0,
                close_reason: None,
                local_candidates: 0,
                remote_candidates: 0,
                refused_candidates: 0,
                ice_state: String::new(),
                recovery: None,
                disconnected_at: None,
                want_restart: false,
                pending_offer: None,
                offer_sent: now,
                relay: None,
                relay_at: None,
                has_pc: false,
                next_num: if is_polite(&me, remote) { 1 } else { 2 },
                nums,
                their_top: 0,
                carried: false,
                carried_buffered: 0,
                probe: None,
                media: super::media::Media::new(),
            },
        );
        self.by_remote.insert(remote.to_string(), id);
        self.note_conn_opened();
        self.log(LogLevel::Info, || {
            let how = if initiated { "dialled" } else { "incoming" };
            format!(
                "{id}: {how} connection to \"{remote}\", session {session}, bound to {}",
                session_text(remote_session)
            )
        });
        let relay = self.config.relay;
        let broker = matches!(
            self.config.signalling,
            super::types::Signalling::Broker { .. }
        );
        if broker && (relayed || relay == RelayPolicy::Always) {
            // No WebRTC at all: both sides agree on the relay right away.
            self.enter_relay(id, "option relay: 'always'", !relayed, now);
            return Ok(id);
        }
        if broker && relay == RelayPolicy::Fallback {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.relay_at = Some(now + self.config.relay_after as f64);
            }
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.has_pc = true;
        }
        self.action(Action::CreateConnection {
            conn: id,
            chan: main,
            ice_servers: self.ice_servers(),
            policy: self.config.channel,
            low_water: self.config.window.low,
        });
        // Only the impolite side (the id that sorts first) makes the first
        // offer; a polite side that dials asks it to.
        if initiated && is_polite(&me, remote) {
            self.send_signal(id, SignalBody::Dial);
        }
        // The first offer does not wait for `negotiationneeded`: some
        // WebRTC implementations (node-datachannel's) never fire it for a
        // negotiated channel. The browser's event, when it comes, finds the
        // offer made and is dropped.
        if !is_polite(&me, remote) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.backlog.push_back(Step::NegotiationNeeded);
            }
            self.negotiate(id, now);
        }
        Ok(id)
    }

    /// Closes a connection. `error` is reported (as the close's error and
    /// to waiting `connect()` calls); `notify` tells the remote.
    pub(crate) fn close_conn(
        &mut self,
        c: ConnId,
        reason: &str,
        error: Option<PeerError>,
        notify: bool,
        now: Millis,
    ) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if conn.state == ConnState::Closed {
            return;
        }
        // Messages sent in this turn and waiting to be batched go first.
        let main = conn.main;
        self.flush_deferred(main, now);
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let was_open = conn.state == ConnState::Open;
        conn.state = ConnState::Closed;
        let level = if error.is_some() {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        let line = match &error {
            Some(e) if level <= self.config.debug => format!("{c}: closed ({reason}): {e}"),
            _ if level <= self.config.debug => format!("{c}: closed ({reason})"),
            _ => String::new(),
        };
        conn.close_reason = Some(reason.to_string());
        let main = conn.main;
        let remote = conn.remote.clone();
        let session = conn.session;
        let remote_session = conn.remote_session;
        let relayed = conn.relay.is_some();
        let openers = std::mem::take(&mut conn.openers);
        let streams: Vec<ChanId> = conn.streams.keys().copied().collect();
        self.log(level, || line);
        if self.by_remote.get(&remote) == Some(&c) {
            self.by_remote.remove(&remote);
        }
        // A connection that failed fails its streams with the same error:
        // their readers and senders learn why their data stopped.
        for s in streams {
            self.close_chan(s, reason, error.clone(), false, now);
        }
        if notify {
            if was_open {
                self.transmit_frame(main, &Frame::Close(reason.to_string()), now);
            } else {
                self.send_signal_raw(
                    &remote,
                    PeerSignal {
                        session,
                        to: remote_session,
                        frames: None,
                        body: SignalBody::Bye {
                            reason: reason.to_string(),
                        },
                    },
                );
            }
        }
        let err = error.clone().unwrap_or_else(|| {
            PeerError::Closed(format!("the connection to \"{remote}\" ({reason})"))
        });
        for op in openers {
            self.done(op, Err(err.clone()));
        }
        self.media_closed(c, &err);
        // The own channel: its queue fails, what it held is released.
        self.drop_chan(main, &err);
        if was_open && relayed {
            // The close frame, then the own channel's close, go on the
            // relay in order; the broker forgets the pair after them.
            self.releasing
                .insert(c, (main, now + self.config.close_timeout as f64));
            self.relay_close_channel(c, main, 0, now);
        } else if was_open {
            // Let the close frame go out: the connection is released when
            // the channel confirms its close, or after closeTimeout.
            self.action(Action::CloseChannel { chan: main });
            self.releasing
                .insert(c, (main, now + self.config.close_timeout as f64));
        } else {
            if relayed {
                self.end_relay(&remote, now);
            }
            self.action(Action::ReleaseConnection { conn: c });
            self.conns.remove(&c);
        }
        self.events.push_back(Event::Closed {
            conn: c,
            reason: reason.to_string(),
            error,
        });
    }

    /// Closes with an error, telling the remote.
    pub(crate) fn fail_conn(&mut self, c: ConnId, error: PeerError, now: Millis) {
        self.close_conn(c, &error.to_string(), Some(error), true, now);
    }

    pub(crate) fn conn_open(&mut self, c: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.state != ConnState::Connecting {
            return;
        }
        conn.state = ConnState::Open;
        conn.keepalive.heard(now);
        conn.keepalive.sent(now);
        let openers = std::mem::take(&mut conn.openers);
        let incoming = !conn.initiated;
        self.log(LogLevel::Info, || format!("{c}: open"));
        self.events.push_back(Event::Open { conn: c });
        if incoming {
            self.events.push_back(Event::Incoming { conn: c });
        }
        for op in openers {
            self.done(op, Ok(Reply::Connection(c)));
        }
        self.media_open(c);
    }

    // ---- signals in -----------------------------------------------------

    /// A peer signal from `from` (through the broker or the hub).
    pub(crate) fn on_peer_signal(&mut self, from: String, data: &str, now: Millis) {
        let signal = match PeerSignal::decode(data) {
            Ok(s) => s,
            Err(e) => {
                self.events.push_back(Event::Error(PeerError::Protocol {
                    id: from,
                    detail: format!("unreadable signal: {e}"),
                }));
                return;
            }
        };
        // An offer, or a dial (a request for one), may start a connection.
        let is_offer = matches!(&signal.body, SignalBody::Description { sdp_type, .. } if sdp_type == "offer")
            || signal.body == SignalBody::Dial
            || signal.body == SignalBody::Relay;
        let relayed = signal.body == SignalBody::Relay;
        let existing = self.by_remote.get(&from).copied();
        if self.config.debug >= LogLevel::Debug {
            let line = {
                let kind = match &signal.body {
                    SignalBody::Description { sdp_type, .. } => sdp_type.as_str(),
                    SignalBody::Candidate { .. } => "candidate",
                    SignalBody::Bye { .. } => "bye",
                    SignalBody::Dial => "dial",
                    SignalBody::Restart => "restart",
                    SignalBody::Relay => "relay",
                    SignalBody::Call { .. } => "call",
                    SignalBody::CallAnswer { .. } => "call-answer",
                    SignalBody::CallReject { .. } => "call-reject",
                    SignalBody::Tracks { .. } => "tracks",
                };
                let here = existing
                    .and_then(|c| self.conns.get(&c).map(|x| (c, x)))
                    .map(|(c, x)| {
                        format!(
                            "{c} session {} bound to {}",
                            x.session,
                            session_text(x.remote_session)
                        )
                    })
                    .unwrap_or_else(|| "no connection".into());
                format!(
                    "signal {kind} from \"{from}\" session {} to {}; here: {here}",
                    signal.session,
                    session_text(signal.to)
                )
            };
            self.log(LogLevel::Debug, || line);
        }
        let target = match (existing, signal.to) {
            // For one of this side's sessions: only the current one counts.
            (Some(c), Some(to)) if self.conns.get(&c).is_some_and(|x| x.session == to) => {
                let conn = self.conns.get_mut(&c).expect("present");
                match conn.remote_session {
                    None => {
                        conn.remote_session = Some(signal.session);
                        Some(c)
                    }
                    Some(s) if s == signal.session => Some(c),
                    Some(_) => None,
                }
            }
            (_, Some(_)) => None,
            // The remote does not know this side's session yet.
            (Some(c), None) => {
                let Some(conn) = self.conns.get_mut(&c) else {
                    return;
                };
                match conn.remote_session {
                    None => {
                        conn.remote_session = Some(signal.session);
                        Some(c)
                    }
                    Some(s) if s == signal.session => Some(c),
                    // A new session from the same id: the remote page
                    // reloaded or reconnected. Its offer replaces the link.
                    Some(_) if is_offer => {
                        self.close_conn(c, "the remote peer reconnected", None, false, now);
                        self.incoming_conn(&from, signal.session, relayed, now)
                    }
                    Some(_) => None,
                }
            }
            (None, None) if is_offer => self.incoming_conn(&from, signal.session, relayed, now),
            // A candidate, answer or bye for a link this side no longer has.
            (None, None) => None,
        };
        match target {
            Some(c) => {
                if !self.probe_signal(c, &signal.body, is_offer, now) {
                    self.log(LogLevel::Debug, || {
                        "  dropped (no direct path tried)".into()
                    });
                    return;
                }
                if let Some(conn) = self.conns.get_mut(&c) {
                    if let Some(r) = conn.recovery.as_mut() {
                        r.heard_signal = true;
                    }
                    if let Some(v) = signal.frames {
                        conn.remote_frames = v;
                    }
                    conn.backlog.push_back(Step::Signal(signal.body));
                }
                self.negotiate(c, now);
            }
            None => self.log(LogLevel::Debug, || "  dropped".into()),
        }
    }

    fn incoming_conn(
        &mut self,
        from: &str,
        session: u64,
        relayed: bool,
        now: Millis,
    ) -> Option<ConnId> {
        // New sessions from one id are rate limited: each costs an
        // RTCPeerConnection, and a browser allows a few hundred per tab.
        let window = self.offers.get_or_insert_with(from.to_string(), Vec::new);
        window.retain(|t| now - *t < 60_000.0);
        if window.len() as u32 >= self.config.max_offers_per_minute {
            let err = PeerError::LimitExceeded(format!(
                "peer \"{from}\" offered more than {} new connections in a minute; refused (option maxOffersPerMinute)",
                self.config.max_offers_per_minute
            ));
            self.refuse_offer(from, session, err);
            return None;
        }
        window.push(now);
        match self.create_conn(from, false, Some(session), relayed, now) {
            Ok(c) => Some(c),
            Err(PeerError::LimitExceeded(_)) => {
                let err = PeerError::LimitExceeded(format!(
                    "refused a connection from \"{from}\": {} connections are open, the maxConnections budget",
                    self.config.max_connections
                ));
                self.refuse_offer(from, session, err);
                None
            }
            Err(e) => {
                self.refuse_offer(from, session, e);
                None
            }
        }
    }

    /// Tells the remote at once that its offer is refused (instead of
    /// letting it time out), and this side's user why.
    fn refuse_offer(&mut self, from: &str, session: u64, err: PeerError) {
        self.log(LogLevel::Warn, || {
            format!("refused an offer from \"{from}\": {err}")
        });
        let reason = match &err {
            PeerError::LimitExceeded(_) => format!("{LIMIT_REFUSAL}{err}"),
            _ => err.to_string(),
        };
        self.send_signal_raw(
            from,
            PeerSignal {
                session: 0,
                to: Some(session),
                frames: None,
                body: SignalBody::Bye { reason },
            },
        );
        self.events.push_back(Event::Error(err));
    }

    /// A signal could not be delivered to `to`: its connection cannot be made.
    pub(crate) fn undeliverable(&mut self, to: &str, code: ErrorCode, detail: &str, now: Millis) {
        if let Some(&c) = self.by_remote.get(to) {
            let err = PeerError::PeerUnavailable {
                id: to.to_string(),
                code,
            };
            let reason = if detail.is_empty() {
                err.to_string()
            } else {
                format!("{err} ({detail})")
            };
            self.close_conn(c, &reason, Some(err), false, now);
        }
    }

    pub(crate) fn send_signal(&mut self, c: ConnId, body: SignalBody) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let signal = PeerSignal {
            session: conn.session,
            to: conn.remote_session,
            // Version 1 is what a signal without `frames` means.
            frames: Some(self.config.frames).filter(|v| *v >= 2),
            body,
        };
        let remote = conn.remote.clone();
        self.send_signal_raw(&remote, signal);
    }

    // ---- negotiation ----------------------------------------------------

    /// Runs queued negotiation steps until one needs a browser call.
    pub(crate) fn negotiate(&mut self, c: ConnId, now: Millis) {
        loop {
            let Some(conn) = self.conns.get_mut(&c) else {
                return;
            };
            if conn.busy.is_some() || conn.state == ConnState::Closed {
                return;
            }
            let Some(step) = conn.backlog.pop_front() else {
                return;
            };
            match step {
                Step::NegotiationNeeded => {
                    // Queued before the remote's offer was applied: stale.
                    // The channels are negotiated, and a needless offer
                    // could collide with the other side's. The polite side
                    // never makes the first offer: it waits for the other's
                    // (asked for with a dial), so the two never collide.
                    // Once media is used, renegotiation is needed whenever
                    // tracks change, on either side of a negotiated
                    // session (perfect negotiation settles two offers).
                    if !conn.may_offer() {
                        continue;
                    }
                    if conn.negotiator.on_negotiation_needed(conn.signaling)
                        == OnNegotiationNeeded::MakeOffer
                    {
                        conn.busy = Some(Busy::SetLocal);
                        self.action(Action::SetLocalDescription { conn: c });
                    }
                }
                Step::CheckDeferred => {
                    if conn.negotiator.take_deferred(conn.signaling) && conn.may_offer() {
                        conn.busy = Some(Busy::SetLocal);
                        self.action(Action::SetLocalDescription { conn: c });
                    }
                }
                Step::MakeAnswer => {
                    conn.busy = Some(Busy::SetLocal);
                    self.action(Action::SetLocalDescription { conn: c });
                }
                Step::AddCandidate(candidate) => {
                    conn.busy = Some(Busy::AddCandidate { quiet: false });
                    self.action(Action::AddCandidate { conn: c, candidate });
                }
                Step::TryCandidate(candidate) => {
                    conn.busy = Some(Busy::AddCandidate { quiet: true });
                    self.action(Action::AddCandidate { conn: c, candidate });
                }
                Step::Signal(SignalBody::Description { sdp_type, sdp }) => {
                    let Some(kind) = SdpKind::parse(&sdp_type) else {
                        let remote = conn.remote.clone();
                        self.fail_conn(
                            c,
                            PeerError::Protocol {
                                id: remote,
                                detail: format!("description type \"{sdp_type}\""),
                            },
                            now,
                        );
                        return;
                    };
                    let decision = conn.negotiator.on_remote_description(kind, conn.signaling);
                    if decision == OnDescription::Ignore {
                        self.log(LogLevel::Debug, || {
                            format!("{c}: ignored a colliding offer (impolite) or a stray answer")
                        });
                        continue;
                    }
                    conn.busy = Some(Busy::SetRemote { kind });
                    self.action(Action::SetRemoteDescription {
                        conn: c,
                        sdp_type,
                        sdp,
                    });
                }
                Step::Signal(body @ SignalBody::Candidate { .. }) => {
                    conn.remote_candidates += 1;
                    let json = body.candidate_init_json();
                    let action = conn.negotiator.on_remote_candidate(json);
                    self.log(LogLevel::Debug, || {
                        format!("{c}: remote candidate: {}", action.name())
                    });
                    let Some(conn) = self.conns.get_mut(&c) else {
                        return;
                    };
                    match action {
                        OnCandidate::Add(candidate) => {
                            conn.busy = Some(Busy::AddCandidate { quiet: false });
                            self.action(Action::AddCandidate { conn: c, candidate });
                        }
                        OnCandidate::Queued | OnCandidate::Dropped => {}
                        OnCandidate::Overflow => {
                            let remote = conn.remote.clone();
                            self.fail_conn(
                                c,
                                PeerError::Protocol {
                                    id: remote,
                                    detail:
                                        "too many ICE candidates before the session description"
                                            .into(),
                                },
                                now,
                            );
                            return;
                        }
                    }
                }
                // This side is the one to offer, and does so on its own
                // `negotiationneeded`.
                Step::Signal(SignalBody::Dial) => {}
                Step::Signal(
                    body @ (SignalBody::Call { .. }
                    | SignalBody::CallAnswer { .. }
                    | SignalBody::CallReject { .. }
                    | SignalBody::Tracks { .. }),
                ) => self.on_media_signal(c, body, now),
                Step::Signal(SignalBody::Restart) => self.on_restart_request(c, now),
                Step::Signal(SignalBody::Relay) => self.on_relay_signal(c, now),
                Step::Signal(SignalBody::Bye { reason }) => {
                    let text = format!("the remote peer gave up: {reason}");
                    let err = match reason.strip_prefix(LIMIT_REFUSAL) {
                        // The remote's budget (maxConnections) or rate
                        // (maxOffersPerMinute) refused: a cap, named so.
                        Some(why) => PeerError::LimitExceeded(format!(
                            "peer \"{}\" refused the connection: {why}",
                            conn.remote
                        )),
                        None => PeerError::ConnectionFailed {
                            id: conn.remote.clone(),
                            reason: text.clone(),
                        },
                    };
                    self.close_conn(c, &text, Some(err), false, now);
                    return;
                }
            }
        }
    }

    /// `setLocalDescription()` finished: `(type, sdp)` to send, or why not.
    pub fn handle_local_description(
        &mut self,
        c: ConnId,
        result: Result<(String, String), String>,
        now: Millis,
    ) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.busy != Some(Busy::SetLocal) {
            return;
        }
        conn.busy = None;
        match result {
            Ok((sdp_type, sdp)) => {
                let line = format!("{c}: send {sdp_type}");
                conn.signaling = match sdp_type.as_str() {
                    "offer" => {
                        conn.want_restart = false;
                        conn.pending_offer = Some(sdp.clone());
                        conn.offer_sent = now;
                        SignalingState::HaveLocalOffer
                    }
                    _ => SignalingState::Stable,
                };
                if conn.signaling == SignalingState::Stable {
                    conn.backlog.push_front(Step::CheckDeferred);
                }
                self.log(LogLevel::Debug, || line);
                self.send_signal(c, SignalBody::Description { sdp_type, sdp });
                // The mids the description gave the senders, in order
                // behind it.
                self.announce_tracks(c);
                self.negotiate(c, now);
            }
            Err(reason) => {
                let remote = conn.remote.clone();
                self.fail_conn(c, PeerError::ConnectionFailed { id: remote, reason }, now);
            }
        }
    }

    /// `setRemoteDescription()` finished.
    pub fn handle_remote_description(
        &mut self,
        c: ConnId,
        result: Result<(), String>,
        now: Millis,
    ) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let Some(Busy::SetRemote { kind }) = conn.busy else {
            return;
        };
        conn.busy = None;
        if let Err(reason) = result {
            let remote = conn.remote.clone();
            self.fail_conn(c, PeerError::ConnectionFailed { id: remote, reason }, now);
            return;
        }
        conn.has_remote = true;
        conn.pending_offer = None;
        conn.signaling = match kind {
            SdpKind::Offer => SignalingState::HaveRemoteOffer,
            SdpKind::Pranswer => SignalingState::HaveRemotePranswer,
            SdpKind::Answer | SdpKind::Rollback => SignalingState::Stable,
        };
        // In order: the candidates that waited, the answer, then an offer
        // that was deferred while not stable.
        let mut front: Vec<Step> = conn
            .negotiator
            .remote_description_applied()
            .into_iter()
            .map(Step::AddCandidate)
            .collect();
        if kind == SdpKind::Answer {
            front.extend(
                conn.negotiator
                    .take_ignored()
                    .into_iter()
                    .map(Step::TryCandidate),
            );
        }
        if kind == SdpKind::Offer {
            front.push(Step::MakeAnswer);
        }
        front.push(Step::CheckDeferred);
        for step in front.into_iter().rev() {
            conn.backlog.push_front(step);
        }
        self.negotiate(c, now);
    }

    /// `addIceCandidate()` finished (a refusal is counted, not fatal).
    pub fn handle_candidate_added(&mut self, c: ConnId, result: Result<(), String>, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let Some(Busy::AddCandidate { quiet }) = conn.busy else {
            return;
        };
        conn.busy = None;
        if result.is_err() && !quiet && conn.negotiator.report_candidate_error() {
            conn.refused_candidates += 1;
        }
        self.negotiate(c, now);
    }

    /// `negotiationneeded` fired.
    pub fn handle_negotiation_needed(&mut self, c: ConnId, now: Millis) {
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.backlog.push_back(Step::NegotiationNeeded);
            self.negotiate(c, now);
        }
    }

    /// A local ICE candidate (`RTCIceCandidate.toJSON()` text).
    pub fn handle_local_candidate(&mut self, c: ConnId, json: &str) {
        let Some(body) = SignalBody::from_candidate_init_json(json).ok() else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.local_candidates += 1;
        }
        self.log(LogLevel::Debug, || format!("{c}: local candidate"));
        self.send_signal(c, body);
    }

    /// The browser could not create the RTCPeerConnection (bad ICE servers,
    /// too many connections in this tab).
    pub fn handle_rtc_failed(&mut self, c: ConnId, reason: &str, now: Millis) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let err = PeerError::ConnectionFailed {
            id: conn.remote.clone(),
            reason: reason.to_string(),
        };
        // An incoming connection was never handed to the user: the peer
        // reports it. The remote hears at once (a bye).
        if !conn.initiated {
            self.events.push_back(Event::Error(err.clone()));
        }
        self.close_conn(c, &err.to_string(), Some(err), true, now);
    }

    /// `connectionState` changed. `"failed"` ends a connection still
    /// connecting; on an open one, `"failed"`, and `"disconnected"` past
    /// the grace, start ICE restarts (`recovery`).
    pub fn handle_connection_state(&mut self, c: ConnId, state: &str, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        conn.ice_state = state.to_string();
        let remote = conn.remote.clone();
        let open = conn.state == ConnState::Open;
        self.log(LogLevel::Info, || {
            format!("{c}: connection state {state} (with \"{remote}\")")
        });
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if open && conn.relay.is_some() {
            // A direct path being tried while relayed.
            if state == "failed" {
                self.probe_failed(c, "ICE failed", now);
            }
            return;
        }
        match state {
            "connected" => {
                conn.disconnected_at = None;
                if conn.recovery.is_some() {
                    self.path_restored(c, now);
                }
            }
            "disconnected" if open => {
                conn.disconnected_at.get_or_insert(now);
            }
            "failed" if open => self.path_lost(c, "ICE failed", now),
            "failed" if self.enter_relay(c, "ICE failed", true, now) => {}
            "failed" => self.fail_conn(
                c,
                PeerError::ConnectionFailed {
                    id: remote,
                    reason: "ICE failed: no network path between the peers (a TURN server in iceServers may help)".into(),
                },
                now,
            ),
            _ => {}
        }
    }

    // ---- time -----------------------------------------------------------

    pub(crate) fn conn_deadline(&self, c: &Conn) -> Option<Millis> {
        match c.state {
            ConnState::Connecting => Some(match c.relay_at {
                Some(t) => t.min(c.connect_deadline),
                None => c.connect_deadline,
            }),
            ConnState::Open if c.relay.is_some() => self.relayed_deadline(c),
            ConnState::Open => {
                let grace = self.config.disconnected_grace as f64;
                let mut t = match &c.recovery {
                    // Silence is expected meanwhile: only the pings are due.
                    Some(r) => c.keepalive.next_ping().min(r.deadline),
                    None => c.keepalive.next_deadline(),
                };
                if let (None, Some(d)) = (&c.recovery, c.disconnected_at) {
                    t = t.min(d + grace);
                }
                Some(t)
            }
            ConnState::Closed => None,
        }
    }

    pub(crate) fn conn_timeouts(&mut self, now: Millis) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in ids {
            let carrying = self.relay_carrying(c);
            let Some(conn) = self.conns.get_mut(&c) else {
                continue;
            };
            if conn.state == ConnState::Connecting && conn.relay_at.is_some_and(|t| now >= t) {
                conn.relay_at = None;
                // ICE connected: the channel is about to open; no fallback.
                if conn.ice_state != "connected" {
                    let ms = self.config.relay_after;
                    self.enter_relay(c, &format!("no WebRTC path after {ms} ms"), true, now);
                    continue;
                }
            }
            match conn.state {
                ConnState::Connecting if now >= conn.connect_deadline => {
                    let err = PeerError::ConnectTimeout {
                        id: conn.remote.clone(),
                        ms: self.config.connect_timeout,
                        waiting: conn.waiting_for(),
                    };
                    self.fail_conn(c, err, now);
                }
                ConnState::Open if conn.relay.is_some() && !carrying => {
                    // Nothing can come while the pair forms (again) or the
                    // broker link is down: no silence is counted meanwhile,
                    // but the pair must be back within connectTimeout.
                    conn.keepalive.heard(now);
                    let form = self.config.connect_timeout as f64;
                    if let Some(r) = conn.relay.as_mut() {
                        r.until.get_or_insert(now + form);
                    }
                    self.relayed_timeouts(c, now);
                }
                ConnState::Open => {
                    if conn.relay.is_some() {
                        self.relayed_timeouts(c, now);
                    }
                    let Some(conn) = self.conns.get_mut(&c) else {
                        continue;
                    };
                    let tick = if conn.recovery.is_some() {
                        conn.keepalive.tick_ping(now)
                    } else {
                        conn.keepalive.tick(now)
                    };
                    match tick {
                        Tick::Nothing => {}
                        Tick::SendPing => {
                            let main = conn.main;
                            self.transmit_frame(main, &Frame::Ping(0), now);
                        }
                        Tick::Dead => {
                            let silence = conn.keepalive.silence(now) as u64;
                            let why = format!(
                                "nothing heard for {silence} ms: the remote page closed or the network dropped"
                            );
                            self.path_lost(c, &why, now);
                        }
                    }
                    self.recovery_timeouts(c, now);
                }
                _ => {}
            }
        }
        let due: Vec<ConnId> = self
            .releasing
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in due {
            self.release_conn(c);
        }
    }

    /// The browser objects of a closed connection may go.
    pub(crate) fn release_conn(&mut self, c: ConnId) {
        if self.releasing.remove(&c).is_some() {
            self.conns.remove(&c);
            self.action(Action::ReleaseConnection { conn: c });
        }
    }

    /// Traffic from the remote of `c`: it is alive.
    pub(crate) fn heard(&mut self, c: Option<ConnId>, now: Millis) {
        let Some(c) = c else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.keepalive.heard(now);
            if conn.recovery.is_some() {
                self.path_restored(c, now);
            }
        }
    }

    pub(crate) fn transmitted(&mut self, c: Option<ConnId>, now: Millis) {
        if let Some(conn) = c.and_then(|c| self.conns.get_mut(&c)) {
            conn.keepalive.sent(now);
        }
    }

    pub(crate) fn send_signal_raw(&mut self, to: &str, signal: PeerSignal) {
        let data = signal.encode();
        match &self.config.signalling {
            super::types::Signalling::Hub => self.transmits.push_back(Transmit::HubSignal {
                to: to.to_string(),
                data,
            }),
            super::types::Signalling::Broker { .. } => {
                self.broker_signal(to, crate::protocol::json::Json(data));
            }
        }
    }
}
