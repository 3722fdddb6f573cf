//! Keeping an open connection through a network change: ICE restarts.
//!
//! ```text
//!   Open ──path lost──► Recovering(attempt 1) ──timeout──► attempt 2 … ──► Closed
//!    ▲    (silence,        │ impolite: restartIce() + a new offer           (after
//!    │     ICE failed,     │ polite:   a `restart` signal asking for one     `iceRestarts`)
//!    │     disconnected    │
//!    │     past the grace, │ a frame heard, or ICE `connected`
//!    └─────network change)─┘
//! ```
//!
//! Either side may notice first: keep-alive silence (`keepAliveTimeout`),
//! ICE `disconnected` for longer than `disconnectedGrace`, ICE `failed`, or
//! the browser's network change event. Only the impolite side (the id that
//! sorts first) restarts ICE, through the same perfect negotiation as any
//! offer; the polite side asks it to with a `restart` signal. Each attempt
//! has `iceRestartTimeout`; after `iceRestarts` attempts the connection
//! moves to the broker's relay (`migrate`), or closes with
//! `ConnectionFailed` where it may not relay. The data channels (SCTP over the same
//! DTLS transport) survive the restart, so nothing sent meanwhile is lost
//! or reordered: it waits in the channels' buffers.
//!
//! The broker link may have died with the path (a half-open socket after
//! the address changed), and the restart's signals go through it: a lost
//! path also pings the broker, and a link that does not answer within
//! `keepAliveTimeout` is replaced. Once registered again, every recovering
//! connection asks for its restart anew, without waiting for its timeout.

use super::Engine;
use super::connection::ConnState;
use super::types::{Action, ConnId, LogLevel, Millis};
use crate::core::error::PeerError;
use crate::protocol::frames::SignalBody;

/// A connection whose path is being restored.
#[derive(Debug, Clone)]
pub(crate) struct Recovery {
    /// Attempts made so far (the first is made when the path is lost).
    pub attempts: u32,
    /// When the current attempt is given up.
    pub deadline: Millis,
    /// When the path was lost.
    pub since: Millis,
    /// What lost it, for the log and the final error.
    pub why: String,
    /// A signal of the remote's arrived since (it is alive and answering).
    pub heard_signal: bool,
}

impl Engine {
    /// The path of open connection `c` is gone (`why`): start restoring it,
    /// unless that is already under way or restarts are off.
    pub(crate) fn path_lost(&mut self, c: ConnId, why: &str, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.state != ConnState::Open || conn.recovery.is_some() {
            return;
        }
        let remote = conn.remote.clone();
        // On the broker's relay there is no ICE to restart.
        if self.config.ice_restarts == 0 || conn.relay.is_some() {
            self.fail_conn(
                c,
                PeerError::ConnectionFailed {
                    id: remote,
                    reason: why.to_string(),
                },
                now,
            );
            return;
        }
        conn.recovery = Some(Recovery {
            attempts: 0,
            deadline: now,
            since: now,
            why: why.to_string(),
            heard_signal: false,
        });
        self.log(LogLevel::Warn, || {
            format!("{c}: lost the path to \"{remote}\" ({why}); restarting ICE")
        });
        self.probe_broker(now);
        self.restart_attempt(c, now);
    }

    /// The next attempt, or the end when they are used up.
    fn restart_attempt(&mut self, c: ConnId, now: Millis) {
        let max = self.config.ice_restarts;
        let timeout = self.config.ice_restart_timeout as f64;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let Some(r) = conn.recovery.as_mut() else {
            return;
        };
        // Two restarts and not one signal back, while ICE still says the
        // path is up: the remote page itself is not answering (hung, or
        // paused in a debugger); more restarts cannot help. (ICE's own
        // state alone cannot tell: after a local network change Chromium
        // may report `connected` for seconds.)
        let took = (now - r.since) as u64;
        let verdict = if r.attempts >= 2 && !r.heard_signal && conn.ice_state == "connected" {
            Some(format!(
                "no answer to {} ICE restarts in {took} ms while the network path is up: the remote page is not answering",
                r.attempts
            ))
        } else if r.attempts >= max {
            Some(format!(
                "the network path was lost ({}) and {max} ICE restarts in {took} ms found no new one",
                r.why
            ))
        } else {
            None
        };
        if let Some(reason) = verdict {
            // Restarts used up: the connection moves to the broker's relay,
            // what was not acknowledged sent again (unless the remote page
            // itself is not answering, or relaying is not allowed).
            let used_up = r.attempts >= max && (r.heard_signal || conn.ice_state != "connected");
            if used_up && self.move_to_relay(c, &reason, true, now) {
                return;
            }
            let Some(conn) = self.conns.get(&c) else {
                return;
            };
            let remote = conn.remote.clone();
            self.fail_conn(c, PeerError::ConnectionFailed { id: remote, reason }, now);
            return;
        }
        r.attempts += 1;
        r.deadline = now + timeout;
        let n = r.attempts;
        self.log(LogLevel::Info, || format!("{c}: ICE restart {n} of {max}"));
        self.request_restart(c, now);
    }

    /// The impolite side restarts ICE; the polite side asks it to. An
    /// offer of this side still unanswered (lost, perhaps, with the broker
    /// link) is sent again instead of making another.
    fn request_restart(&mut self, c: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.negotiator.polite() {
            self.send_signal(c, SignalBody::Restart);
            return;
        }
        if conn.want_restart || conn.busy.is_some() {
            return;
        }
        if let Some(sdp) = conn.pending_offer.clone() {
            // An answer may still be on its way.
            if now - conn.offer_sent < 1000.0 {
                return;
            }
            conn.offer_sent = now;
            self.log(LogLevel::Debug, || format!("{c}: offer sent again"));
            self.send_signal(
                c,
                SignalBody::Description {
                    sdp_type: "offer".into(),
                    sdp,
                },
            );
            return;
        }
        conn.want_restart = true;
        self.action(Action::RestartIce { conn: c });
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.backlog
                .push_back(super::connection::Step::NegotiationNeeded);
        }
        self.negotiate(c, now);
    }

    /// The remote asked for an ICE restart (it is the polite side).
    pub(crate) fn on_restart_request(&mut self, c: ConnId, now: Millis) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if conn.state != ConnState::Open || conn.negotiator.polite() {
            return;
        }
        if conn.recovery.is_none() {
            self.path_lost(c, "the remote peer lost the path", now);
        } else if conn.pending_offer.is_some() {
            // Already recovering, with the restart's offer unanswered: it
            // did not reach the remote (lost with a broker link, perhaps).
            // Further restarts follow this side's own deadlines.
            self.request_restart(c, now);
        }
    }

    /// Something came through: the path works again.
    pub(crate) fn path_restored(&mut self, c: ConnId, now: Millis) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        conn.disconnected_at = None;
        let Some(r) = conn.recovery.take() else {
            return;
        };
        conn.keepalive.heard(now);
        let remote = conn.remote.clone();
        self.log(LogLevel::Warn, || {
            format!(
                "{c}: path to \"{remote}\" restored after {} ms and {} ICE restart(s)",
                (now - r.since) as u64,
                r.attempts
            )
        });
    }

    /// Registered with the broker again: recovering connections ask for
    /// their restart now, since the last one's signals may have been lost
    /// on the dead socket.
    pub(crate) fn retry_restarts(&mut self, now: Millis) {
        let recovering: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, x)| x.recovery.is_some() && x.state == ConnState::Open)
            .map(|(c, _)| *c)
            .collect();
        for c in recovering {
            self.request_restart(c, now);
        }
    }

    /// The browser reports a network change (`online`): the broker link is
    /// checked, and every open connection restarts ICE now instead of
    /// waiting for silence (a restart on a path that still works is
    /// harmless: the old pair carries data until the new one is chosen).
    /// With restarts off, the event alone closes nothing.
    pub fn handle_network_change(&mut self, now: Millis) {
        self.last_now = now;
        self.log(LogLevel::Info, || "the network changed".into());
        self.probe_broker(now);
        if self.config.ice_restarts == 0 {
            return;
        }
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, x)| x.state == ConnState::Open && x.relay.is_none())
            .map(|(c, _)| *c)
            .collect();
        for c in open {
            self.path_lost(c, "the network changed", now);
        }
    }

    /// Deadlines of recovery for connection `c`, if any.
    pub(crate) fn recovery_timeouts(&mut self, c: ConnId, now: Millis) {
        let grace = self.config.disconnected_grace as f64;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        match &conn.recovery {
            Some(r) if now >= r.deadline => self.restart_attempt(c, now),
            Some(_) => {}
            None => {
                if conn.disconnected_at.is_some_and(|t| now >= t + grace) {
                    let line = format!("ICE disconnected for {} ms", grace as u64);
                    self.path_lost(c, &line, now);
                }
            }
        }
    }
}
