//! Moving a live connection between paths without loss: to the broker's
//! relay when its ICE restarts are used up, back to a direct path when a
//! later try finds one, and onto a new relay pair when a broker link drop
//! ended the old one.
//!
//! ```text
//!            restarts used up (or the remote moved: its `relay` signal)
//!   direct ───────────────────────────────────────────────────────► relayed
//!   (own data channels,                                    │   ▲  │ pair ended by a
//!    or `carried`)  ◄── the new path's own channel opens ──┘   │  │ broker link drop:
//!                        (a try every directRetry, doubling)   └──┘ ask again, once
//!                                                                   registered
//! ```
//!
//! At every move each channel sends a `mark` and what the remote has not
//! acknowledged (`acks`), and the side that opened a stream announces it
//! again (`OPEN` with its number): the receiver drops what it already has,
//! so the application sees every message once and in order. A direct path
//! found while relayed carries every channel inside its own data channel,
//! in the relay's payloads (`carried`), so streams keep their numbers.
//!
//! Only the side whose id sorts first tries a direct path (a new
//! RTCPeerConnection and offer, with the connection's session, so the
//! signals reach the same connection); the other takes part when the offer
//! comes. A try that has not opened within twice `iceRestartTimeout` is
//! released, and the next waits twice as long, up to 16 `directRetry`: on
//! a network that blocks UDP a try costs one RTCPeerConnection and a few
//! signals every few minutes.

use super::Engine;
use super::connection::{ConnState, Step};
use super::relay::{CLOSE, OPEN, Relay, payload};
use super::types::{Action, ChanId, ChannelKind, ConnId, LogLevel, Millis};
use crate::core::error::PeerError;
use crate::core::negotiation::{Negotiator, SignalingState};
use crate::protocol::frames::SignalBody;

/// While relayed: when a direct path is tried next.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// When the next try starts (`None` while one runs).
    pub next_at: Option<Millis>,
    /// The wait before the next, doubled after each try that failed.
    pub interval: Millis,
    /// When the running try is given up.
    pub until: Option<Millis>,
}

impl Probe {
    pub(crate) fn new(now: Millis, retry: Millis) -> Self {
        Self {
            next_at: Some(now + retry),
            interval: retry,
            until: None,
        }
    }
}

impl Engine {
    /// Moves open connection `c` onto the broker's relay (`tell`: ask the
    /// remote to do the same). False where relaying is not allowed.
    pub(crate) fn move_to_relay(&mut self, c: ConnId, why: &str, tell: bool, now: Millis) -> bool {
        if !self.relay_allowed() {
            return false;
        }
        let form = self.config.connect_timeout as f64;
        let retry = self.config.direct_retry as f64;
        let Some(conn) = self.conns.get_mut(&c) else {
            return false;
        };
        if conn.state != ConnState::Open {
            return false;
        }
        if conn.relay.is_some() {
            return true;
        }
        let remote = conn.remote.clone();
        conn.carried = false;
        conn.carried_buffered = 0;
        let mut relay = Relay::new();
        relay.until = Some(now + form);
        conn.relay = Some(relay);
        conn.keepalive.heard(now);
        conn.probe = (retry > 0.0).then(|| Probe::new(now, retry));
        self.drop_direct_path(c);
        self.media_to_relay(c);
        self.log(LogLevel::Warn, || {
            format!("{c}: moving to the broker's relay to \"{remote}\" ({why})")
        });
        if tell {
            self.send_signal(c, SignalBody::Relay);
        }
        self.ask_relay(c, now);
        self.switch_carrier(c, now);
        true
    }

    /// Releases the RTCPeerConnection of `c` (if any) and forgets its
    /// negotiation, so that a later one starts afresh.
    fn drop_direct_path(&mut self, c: ConnId) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let had = conn.has_pc;
        conn.has_pc = false;
        conn.negotiator = Negotiator::new(conn.negotiator.polite());
        conn.signaling = SignalingState::Stable;
        conn.has_remote = false;
        conn.busy = None;
        conn.backlog.clear();
        conn.pending_offer = None;
        conn.want_restart = false;
        conn.recovery = None;
        conn.disconnected_at = None;
        conn.ice_state.clear();
        if had {
            self.action(Action::ReleaseConnection { conn: c });
        }
    }

    /// After `c`'s carrier changed: every channel goes through it, the
    /// streams this side opened are announced again, and each channel
    /// sends its mark and what was not acknowledged.
    fn switch_carrier(&mut self, c: ConnId, now: Millis) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let mut chans = vec![conn.main];
        chans.extend(conn.streams.keys().copied());
        let mut unnamed = Vec::new();
        for chan in &chans {
            if let Some(ch) = self.chans.get_mut(chan) {
                ch.buffered = 0;
                match ch.num {
                    Some(n) => ch.relay_num = Some(n),
                    None => unnamed.push(*chan),
                }
            }
        }
        // A stream whose name never arrived (its first frame was lost with
        // the path) cannot be found again on the new one.
        for chan in unnamed {
            let err = PeerError::ConnectionFailed {
                id: self
                    .chans
                    .get(&chan)
                    .map(|x| x.remote.clone())
                    .unwrap_or_default(),
                reason: "the stream could not move to another path: its number never arrived"
                    .into(),
            };
            self.close_chan(chan, &err.to_string(), Some(err), false, now);
        }
        for chan in &chans[1..] {
            let announce = self
                .chans
                .get(chan)
                .and_then(|ch| match (&ch.kind, ch.num) {
                    (ChannelKind::Labelled(l), Some(n)) if !ch.incoming => Some((n, l.encode())),
                    _ => None,
                });
            if let Some((n, label)) = announce {
                self.relay_queue(c, *chan, payload(OPEN, n, label.as_bytes()), 0, now);
            }
        }
        for chan in chans {
            for frame in self.resend_frames(chan) {
                self.route_bytes(chan, frame, now);
            }
            self.pump(chan, now);
        }
    }

    /// The relay pair of open connection `c` ended with a broker link: ask
    /// for it again, or, while a direct path is being tried, let that try
    /// decide.
    pub(crate) fn relay_lost(&mut self, c: ConnId, now: Millis) {
        let form = self.config.connect_timeout as f64;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let trying = conn.has_pc;
        let Some(r) = conn.relay.as_mut() else {
            return;
        };
        if trying {
            r.ready = false;
            r.lost = true;
            r.until = Some(now + form);
            return;
        }
        self.relink(c, now);
    }

    /// A new relay pair for open connection `c`, what was not acknowledged
    /// sent again on it.
    fn relink(&mut self, c: ConnId, now: Millis) {
        let form = self.config.connect_timeout as f64;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let (sent, received) = conn
            .relay
            .as_ref()
            .map_or((0, 0), |r| (r.bytes_sent, r.bytes_received));
        let mut relay = Relay::new();
        relay.until = Some(now + form);
        relay.bytes_sent = sent;
        relay.bytes_received = received;
        conn.relay = Some(relay);
        let remote = conn.remote.clone();
        self.log(LogLevel::Warn, || {
            format!("{c}: the relay pair to \"{remote}\" ended with a broker link; asking again")
        });
        self.ask_relay(c, now);
        self.switch_carrier(c, now);
    }

    /// Registered again: the broker ended every relay pair with the old
    /// socket. Open connections ask for theirs again; connecting ones ask
    /// once more.
    pub(crate) fn relink_relays(&mut self, now: Millis) {
        let relayed: Vec<(ConnId, ConnState)> = self
            .conns
            .iter()
            .filter(|(_, x)| x.relay.is_some())
            .map(|(c, x)| (*c, x.state))
            .collect();
        for (c, state) in relayed {
            match state {
                ConnState::Open => self.relay_lost(c, now),
                ConnState::Connecting => self.ask_relay(c, now),
                ConnState::Closed => {}
            }
        }
    }

    /// The own channel of `c` opened on a direct path tried while relayed:
    /// the connection moves there, carried in the same payloads.
    pub(crate) fn direct_path_open(&mut self, c: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.state != ConnState::Open || !conn.has_pc {
            return;
        }
        let Some(relay) = conn.relay.take() else {
            return;
        };
        conn.carried = true;
        conn.carried_buffered = 0;
        conn.probe = None;
        conn.keepalive.heard(now);
        let remote = conn.remote.clone();
        self.log(LogLevel::Warn, || {
            format!("{c}: back on a direct path to \"{remote}\", off the broker's relay")
        });
        // Closes of streams still waiting for the relay go on the new path.
        let closes: Vec<(ChanId, Vec<u8>)> = relay
            .queue
            .into_iter()
            .filter(|(_, p, _)| p[0] == CLOSE && p[1..5] != [0, 0, 0, 0])
            .map(|(chan, p, _)| (chan, p))
            .collect();
        self.end_relay(&remote, now);
        self.switch_carrier(c, now);
        for (chan, p) in closes {
            self.relay_queue(c, chan, p, 0, now);
        }
    }

    /// The connection `chan` is the own channel of, when that channel
    /// carries the connection's channels in relay payloads (a direct path
    /// found while relayed; its first message moves the connection there).
    pub(crate) fn carrier_of(&mut self, chan: ChanId, now: Millis) -> Option<ConnId> {
        let ch = self.chans.get(&chan).filter(|ch| ch.is_main())?;
        let c = ch.conn?;
        let conn = self.conns.get(&c)?;
        if conn.relay.is_some() && conn.has_pc {
            self.direct_path_open(c, now);
        }
        self.conns.get(&c).filter(|x| x.carried).map(|_| c)
    }

    /// The own channel's `bufferedAmount` of carried connection `c`: every
    /// channel may send again below the window.
    pub(crate) fn carrier_buffered(&mut self, c: ConnId, amount: usize, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        conn.carried_buffered = amount;
        let mut chans = vec![conn.main];
        chans.extend(conn.streams.keys().copied());
        for chan in chans {
            self.pump(chan, now);
        }
    }

    /// Whether relayed connection `c` can carry frames now (its pair
    /// formed, the broker link up): keep-alive counts silence only then.
    pub(crate) fn relay_carrying(&self, c: ConnId) -> bool {
        self.session.link() == crate::core::broker::Link::Up
            && self
                .conns
                .get(&c)
                .and_then(|x| x.relay.as_ref())
                .is_some_and(|r| r.ready)
    }

    /// The next deadline of relayed open connection `c`.
    pub(crate) fn relayed_deadline(&self, c: &super::connection::Conn) -> Option<Millis> {
        let r = c.relay.as_ref()?;
        let carrying = r.ready && self.session.link() == crate::core::broker::Link::Up;
        // Not carrying and no deadline yet: the next check sets one.
        let keepalive = (carrying || r.until.is_none()).then(|| c.keepalive.next_deadline());
        let probe = c.probe.as_ref().and_then(|p| {
            let start = p
                .next_at
                .filter(|_| carrying && !c.has_pc && !c.negotiator.polite());
            match (start, p.until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        [keepalive, r.until, probe]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }

    /// Deadlines of relayed open connection `c`: the pair that did not form
    /// (again), and tries of a direct path.
    pub(crate) fn relayed_timeouts(&mut self, c: ConnId, now: Millis) {
        let carrying = self.relay_carrying(c);
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let Some(r) = conn.relay.as_ref() else {
            return;
        };
        if r.until.is_some_and(|t| now >= t) {
            let ms = self.config.connect_timeout;
            let err = PeerError::ConnectionFailed {
                id: conn.remote.clone(),
                reason: format!(
                    "the broker's relay pair did not form within {ms} ms (the remote peer or the broker link did not come back)"
                ),
            };
            return self.fail_conn(c, err, now);
        }
        let Some(p) = conn.probe.clone() else {
            return;
        };
        if conn.has_pc && p.until.is_some_and(|t| now >= t) {
            let ms = 2 * self.config.ice_restart_timeout;
            self.probe_failed(c, &format!("no direct path within {ms} ms"), now);
        } else if carrying
            && !conn.has_pc
            && !conn.negotiator.polite()
            && p.next_at.is_some_and(|t| now >= t)
        {
            self.open_probe(c, true, now);
        }
    }

    /// A new RTCPeerConnection for `c` while relayed (`offer`: this side
    /// makes the offer; otherwise the remote's is on its way).
    fn open_probe(&mut self, c: ConnId, offer: bool, now: Millis) {
        let until = now + 2.0 * self.config.ice_restart_timeout as f64;
        let (ice_servers, policy, low_water) = (
            self.ice_servers(),
            self.config.channel,
            self.config.window.low,
        );
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let retry = self.config.direct_retry as f64;
        let probe = conn.probe.get_or_insert_with(|| Probe::new(now, retry));
        probe.next_at = None;
        probe.until = Some(until);
        conn.has_pc = true;
        let main = conn.main;
        self.log(LogLevel::Info, || format!("{c}: trying a direct path"));
        self.action(Action::CreateConnection {
            conn: c,
            chan: main,
            ice_servers,
            policy,
            low_water,
        });
        if offer {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.backlog.push_back(Step::NegotiationNeeded);
            }
            self.negotiate(c, now);
        }
    }

    /// The direct path tried while relayed did not open (`why`): released;
    /// the next try waits twice as long.
    pub(crate) fn probe_failed(&mut self, c: ConnId, why: &str, now: Millis) {
        let cap = 16.0 * self.config.direct_retry as f64;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if !conn.has_pc {
            return;
        }
        let lost = conn.relay.as_ref().is_some_and(|r| r.lost);
        let wait = match conn.probe.as_mut() {
            Some(p) => {
                p.interval = (p.interval * 2.0).min(cap);
                p.next_at = Some(now + p.interval);
                p.until = None;
                p.interval
            }
            None => 0.0,
        };
        self.drop_direct_path(c);
        self.log(LogLevel::Info, || {
            format!(
                "{c}: no direct path ({why}); next try in {} ms",
                wait as u64
            )
        });
        if lost {
            self.relink(c, now);
        }
    }

    /// Whether a signal for relayed open connection `c` is to be handled:
    /// a description or candidate only for a direct path being tried (an
    /// offer starts taking part in one).
    pub(crate) fn probe_signal(
        &mut self,
        c: ConnId,
        body: &SignalBody,
        is_offer: bool,
        now: Millis,
    ) -> bool {
        let Some(conn) = self.conns.get(&c) else {
            return true;
        };
        if conn.relay.is_none() || conn.state != ConnState::Open {
            return true;
        }
        match body {
            SignalBody::Description { .. } | SignalBody::Candidate { .. } if !conn.has_pc => {
                // With relay: 'always' this side stays on the relay.
                let stays = self.config.relay == super::types::RelayPolicy::Always;
                if is_offer && self.config.direct_retry > 0 && !stays {
                    self.open_probe(c, false, now);
                    true
                } else {
                    false
                }
            }
            _ => true,
        }
    }
}
