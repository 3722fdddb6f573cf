//! A connection carried by the broker when WebRTC finds no path.
//!
//! ```text
//!  Connecting ──(relay: 'always', or no ICE path after relayAfter,
//!      │         or ICE failed)──► a `relay` signal to the remote, and a
//!      │                           `relay` request to the broker
//!      ▼
//!  Relaying ──(relay-ready: both ids agreed)──► Open (the own channel opens)
//!      │
//!      └──(relay-refused, relay-closed)──► Closed (ConnectionFailed)
//! ```
//!
//! Both sides must agree: each asks the broker (`relay {to}`), and the
//! broker forwards binary frames only between two ids that both did. Every
//! channel of the connection then runs over the relay, with the same frames
//! a data channel would carry, so messages, streams, sockets and rest work
//! unchanged. A relay payload is `[kind][channel number: u32][body]`:
//!
//! | kind | body |
//! |---|---|
//! | 0 data | one frame of the channel (`core::chunking`) |
//! | 1 open | the channel's label; the receiver opens the channel |
//! | 2 close | nothing; the receiver's channel closes |
//!
//! The own channel is number 0; the side whose id sorts first numbers the
//! channels it opens 2, 4, …, the other 1, 3, … Sends are paced to the rate
//! the broker announced in `relay-ready` (a token bucket), and a channel's
//! bytes count as buffered until they leave, so the send window works as
//! it does on a data channel.
//!
//! An open connection moves here too when its ICE restarts are used up,
//! and may move back to a direct path later, or re-form its relay pair
//! after a broker link drop (see `migrate`); per-channel acknowledgements
//! (`acks`) make every move lossless. The same payloads then also run on
//! the direct path's own data channel (a connection is then *carried*):
//! its streams keep their numbers, not new data channels.

use std::collections::VecDeque;

use super::Action;
use super::Engine;
use super::connection::ConnState;
use super::signalling::Pending;
use super::types::{ChanId, ConnId, LogLevel, Millis, RelayPolicy, Signalling, Transmit};
use crate::core::error::PeerError;
use crate::protocol::frames::{ChannelLabel, SignalBody};
use crate::protocol::{ClientMessage, ErrorCode, relay};

pub(crate) const DATA: u8 = 0;
pub(crate) const OPEN: u8 = 1;
pub(crate) const CLOSE: u8 = 2;

/// A connection's relay.
#[derive(Debug)]
pub(crate) struct Relay {
    /// The broker said both sides agreed.
    pub ready: bool,
    /// Bytes per ms the broker forwards for this pair, each way.
    rate: f64,
    tokens: f64,
    refilled: Millis,
    /// On an open connection: the pair must form (again) by then, or the
    /// connection closes.
    pub until: Option<Millis>,
    /// The pair ended while a direct path was being tried: wait for it
    /// rather than ask the broker again.
    pub lost: bool,
    /// Payloads waiting for the rate: (channel, payload, data bytes).
    pub queue: VecDeque<(ChanId, Vec<u8>, usize)>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Relay {
    pub(crate) fn new() -> Self {
        Self {
            ready: false,
            rate: 0.0,
            tokens: 0.0,
            refilled: 0.0,
            until: None,
            lost: false,
            queue: VecDeque::new(),
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// The most the bucket holds: half a second at the rate.
    fn burst(&self) -> f64 {
        self.rate * 500.0
    }

    fn refill(&mut self, now: Millis) {
        self.tokens = (self.tokens + (now - self.refilled) * self.rate).min(self.burst());
        self.refilled = now;
    }

    /// When the first queued payload may go.
    fn due(&self) -> Option<Millis> {
        let (_, p, _) = self.queue.front()?;
        if !self.ready || self.rate <= 0.0 {
            return None;
        }
        let missing = charge(p).min(self.burst()) - self.tokens;
        Some(self.refilled + (missing / self.rate).max(0.0))
    }
}

/// What a payload costs against the broker's rate: its bytes, and at least
/// 256 (the broker charges small frames so).
fn charge(p: &[u8]) -> f64 {
    p.len().max(256) as f64
}

pub(crate) fn payload(kind: u8, num: u32, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + body.len());
    p.push(kind);
    p.extend_from_slice(&num.to_be_bytes());
    p.extend_from_slice(body);
    p
}

impl Engine {
    /// For a connection on the relay: its `conn.stats()` as JSON text
    /// (bytes counted as relayed, both ways); `None` otherwise.
    pub fn relay_stats(&self, c: ConnId) -> Option<String> {
        let r = self.conns.get(&c)?.relay.as_ref()?;
        Some(format!(
            r#"{{"route":"broker","localCandidateType":null,"remoteCandidateType":null,"protocol":null,"relayProtocol":null,"rtt":null,"bytesSent":{},"bytesReceived":{},"report":null}}"#,
            r.bytes_sent, r.bytes_received
        ))
    }

    /// Whether connections here may fall back to the broker's relay.
    pub(crate) fn relay_allowed(&self) -> bool {
        self.config.relay != RelayPolicy::Never
            && matches!(self.config.signalling, Signalling::Broker { .. })
    }

    /// Moves connecting connection `c` onto the relay (`why`: for the log).
    /// `tell`: ask the remote to do the same (it did not ask first).
    /// Returns false when relaying is not possible here.
    pub(crate) fn enter_relay(&mut self, c: ConnId, why: &str, tell: bool, now: Millis) -> bool {
        if !self.relay_allowed() {
            return false;
        }
        if self
            .conns
            .get(&c)
            .is_some_and(|x| x.state == ConnState::Open)
        {
            return self.move_to_relay(c, why, tell, now);
        }
        let timeout = self.config.request_timeout as f64;
        let Some(conn) = self.conns.get_mut(&c) else {
            return false;
        };
        if conn.state != ConnState::Connecting || conn.relay.is_some() {
            return conn.relay.is_some();
        }
        conn.relay = Some(Relay::new());
        conn.relay_at = None;
        if self.config.relay == RelayPolicy::Fallback && self.config.direct_retry > 0 {
            let retry = self.config.direct_retry as f64;
            conn.probe = Some(super::migrate::Probe::new(now, retry));
        }
        // The broker needs a moment to pair the two requests.
        conn.connect_deadline = conn.connect_deadline.max(now + timeout);
        let remote = conn.remote.clone();
        let had_pc = conn.has_pc;
        conn.has_pc = false;
        self.log(LogLevel::Warn, || {
            format!("{c}: relaying through the broker to \"{remote}\" ({why})")
        });
        // WebRTC's objects for this connection go; the connection stays.
        if had_pc {
            self.action(Action::ReleaseConnection { conn: c });
        }
        self.media_to_relay(c);
        if tell {
            self.send_signal(c, SignalBody::Relay);
        }
        let asked = self.request(
            Pending::Relay(c),
            ClientMessage::Relay {
                rid: 0,
                to: remote.clone(),
            },
            now,
        );
        if let Err(e) = asked {
            self.fail_conn(c, e, now);
        }
        true
    }

    /// Asks the broker for the pair (again) for connection `c`.
    pub(crate) fn ask_relay(&mut self, c: ConnId, now: Millis) {
        let Some(remote) = self.conns.get(&c).map(|x| x.remote.clone()) else {
            return;
        };
        let asked = self.request(
            Pending::Relay(c),
            ClientMessage::Relay { rid: 0, to: remote },
            now,
        );
        if let Err(e) = asked {
            self.fail_conn(c, e, now);
        }
    }

    /// The remote asks to relay (its `relay` signal).
    pub(crate) fn on_relay_signal(&mut self, c: ConnId, now: Millis) {
        if !self.enter_relay(c, "the remote peer asked", false, now) {
            let Some(conn) = self.conns.get(&c) else {
                return;
            };
            let reason = if conn.state == ConnState::Open {
                "the remote peer lost the direct path and moved to the broker's relay, which this side does not allow (option relay: 'never')"
            } else {
                "the remote peer has no WebRTC path and asked to relay through the broker, which this side does not allow (option relay: 'never')"
            };
            let id = conn.remote.clone();
            let err = PeerError::ConnectionFailed {
                id,
                reason: reason.into(),
            };
            self.fail_conn(c, err, now);
        }
    }

    /// `relay-ready`: both sides agreed; the connection opens.
    pub(crate) fn on_relay_ready(&mut self, id: &str, rate: u64, now: Millis) {
        let Some(&c) = self.by_remote.get(id) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let main = conn.main;
        let open = conn.state == ConnState::Open;
        let Some(r) = conn.relay.as_mut() else {
            return;
        };
        if r.ready {
            return;
        }
        r.ready = true;
        r.until = None;
        r.lost = false;
        r.rate = rate as f64 / 1000.0;
        r.refilled = now;
        r.tokens = r.burst();
        self.log(LogLevel::Info, || {
            format!("{c}: relay ready ({rate} bytes/s each way)")
        });
        if let Some(ch) = self.chans.get_mut(&main) {
            ch.relay_num = Some(0);
        }
        if !open {
            self.handle_channel_open(main, now);
        }
        self.relay_pump(c, now);
    }

    /// `relay-closed`, or (`refused`) the `relay` request refused. A
    /// refusal, or a cap the pair passed, ends the connection; an open
    /// connection whose pair ended because a broker link dropped asks for
    /// it again (see `migrate`).
    pub(crate) fn on_relay_ended(
        &mut self,
        id: &str,
        code: ErrorCode,
        message: &str,
        refused: bool,
        now: Millis,
    ) {
        let Some(&c) = self.by_remote.get(id) else {
            return;
        };
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let Some(r) = conn.relay.as_ref() else {
            return;
        };
        if !refused && conn.state == ConnState::Open {
            if !r.ready {
                // About the pair before this side asked again (frames sent
                // on it as it ended): the answer to that request decides.
                return;
            }
            if code == ErrorCode::PeerGone {
                // The remote's broker link dropped.
                self.relay_lost(c, now);
                return;
            }
        }
        let reason = format!("the broker's relay ended ({code}: {message})");
        let remote = id.to_string();
        self.fail_conn(c, PeerError::ConnectionFailed { id: remote, reason }, now);
    }

    /// A relayed connection closed: the broker forgets the pair.
    pub(crate) fn end_relay(&mut self, remote: &str, now: Millis) {
        let _ = self.request(
            Pending::Plain,
            ClientMessage::RelayEnd {
                rid: 0,
                to: remote.to_string(),
            },
            now,
        );
    }

    // ---- channels over the relay ---------------------------------------

    /// Numbers and announces a channel opened on relayed connection `c`.
    pub(crate) fn relay_open_channel(&mut self, c: ConnId, chan: ChanId, label: &str, now: Millis) {
        let Some(num) = self.chans.get(&chan).and_then(|ch| ch.num) else {
            return;
        };
        if let Some(ch) = self.chans.get_mut(&chan) {
            ch.relay_num = Some(num);
        }
        self.relay_queue(c, chan, payload(OPEN, num, label.as_bytes()), 0, now);
        // Frames after the open go the same way, in order: the channel is
        // usable at once.
        self.relay_opened.push_back(chan);
    }

    /// Sends a channel's close on the relay. A stream's channel closes at
    /// once; the own channel's close (`num` 0) is the connection's last
    /// payload, and the connection is released once it has left (or after
    /// closeTimeout, if it cannot leave).
    pub(crate) fn relay_close_channel(&mut self, c: ConnId, chan: ChanId, num: u32, now: Millis) {
        if let Some(x) = self.conns.get_mut(&c) {
            if num != 0 {
                x.nums.remove(&num);
            }
        }
        if num != 0 {
            self.relay_closed.push_back(chan);
        }
        self.relay_queue(c, chan, payload(CLOSE, num, &[]), 0, now);
    }

    /// One frame of channel `chan` (number `num`) on the relay.
    pub(crate) fn relay_send(
        &mut self,
        c: ConnId,
        chan: ChanId,
        num: u32,
        bytes: &[u8],
        now: Millis,
    ) {
        self.relay_queue(c, chan, payload(DATA, num, bytes), bytes.len(), now);
    }

    /// One payload on what carries connection `c`: the relay (paced; the
    /// channel's bytes count as buffered until they leave), or its direct
    /// path's own data channel.
    pub(crate) fn relay_queue(
        &mut self,
        c: ConnId,
        chan: ChanId,
        p: Vec<u8>,
        data: usize,
        now: Millis,
    ) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if let Some(r) = conn.relay.as_mut() {
            r.queue.push_back((chan, p, data));
            if let Some(ch) = self.chans.get_mut(&chan) {
                ch.buffered += data;
            }
            self.relay_pump(c, now);
        } else if conn.carried {
            conn.carried_buffered += p.len();
            let main = conn.main;
            self.transmits.push_back(Transmit::Frame {
                chan: main,
                bytes: p,
            });
        }
    }

    /// Sends what the rate allows now.
    pub(crate) fn relay_pump(&mut self, c: ConnId, now: Millis) {
        let up = self.session.link() == crate::core::broker::Link::Up;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let remote = conn.remote.clone();
        let Some(r) = conn.relay.as_mut() else {
            return;
        };
        if !r.ready || !up {
            return;
        }
        r.refill(now);
        while let Some((_, p, _)) = r.queue.front() {
            // A payload larger than the bucket goes once the bucket is full.
            // (Half a byte of slack: `due` may land a rounding error short.)
            if charge(p) > r.tokens + 0.5 && r.tokens + 0.5 < r.burst() {
                break;
            }
            let (chan, p, data) = r.queue.pop_front().expect("peeked");
            r.tokens -= charge(&p);
            r.bytes_sent += p.len() as u64;
            // The own channel's close is the last payload: then the broker
            // may forget the pair.
            let last = p[0] == CLOSE && p[1..5] == [0, 0, 0, 0];
            self.transmits
                .push_back(Transmit::BrokerBinary(relay::encode(&remote, &p)));
            if data > 0 {
                self.relay_drained.push_back((chan, data));
            }
            if last {
                self.end_relay(&remote, now);
                self.release_conn(c);
                return;
            }
        }
    }

    /// The earliest time a relay can send more.
    pub(crate) fn relay_deadline(&self) -> Option<Millis> {
        // With the link down, nothing can go: the link's return pumps.
        if self.session.link() != crate::core::broker::Link::Up {
            return None;
        }
        self.conns
            .values()
            .filter_map(|c| c.relay.as_ref().and_then(Relay::due))
            .reduce(f64::min)
    }

    pub(crate) fn relay_timeouts(&mut self, now: Millis) {
        if self.relay_deadline().is_none() {
            return;
        }
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, x)| {
                x.relay
                    .as_ref()
                    .and_then(Relay::due)
                    .is_some_and(|t| t <= now)
            })
            .map(|(c, _)| *c)
            .collect();
        for c in due {
            self.relay_pump(c, now);
        }
    }

    /// A relay payload is on its way: the channel holds that much less.
    pub(crate) fn relay_left(&mut self, chan: ChanId, bytes: usize, now: Millis) {
        let left = self
            .chans
            .get(&chan)
            .map(|ch| ch.buffered.saturating_sub(bytes));
        if let Some(left) = left {
            self.handle_buffered(chan, left, now);
        }
    }

    /// A binary frame from the broker: relayed bytes from a remote.
    pub fn handle_broker_binary(&mut self, generation: u64, bytes: &[u8], now: Millis) {
        if generation != self.generation || self.closed {
            return;
        }
        self.broker_heard = now;
        self.broker_probe = None;
        self.last_now = now;
        let Ok((from, p)) = relay::decode(bytes) else {
            self.log(LogLevel::Warn, || {
                "unreadable relay frame from the broker".into()
            });
            return;
        };
        let Some(&c) = self.by_remote.get(from) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let Some(r) = conn.relay.as_mut() else {
            return;
        };
        r.bytes_received += p.len() as u64;
        self.carrier_payload(c, p, now);
        self.settle(now);
    }

    /// A payload of connection `c`'s carrier (the relay, or its direct
    /// path's own data channel): a frame, an open or a close of one of its
    /// channels.
    pub(crate) fn carrier_payload(&mut self, c: ConnId, p: &[u8], now: Millis) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let from = conn.remote.clone();
        let bad = |detail: &str| PeerError::Protocol {
            id: from.clone(),
            detail: format!("relay: {detail}"),
        };
        if p.len() < 5 {
            return self.fail_conn(c, bad("a payload shorter than its header"), now);
        }
        let (kind, num, body) = (p[0], u32::from_be_bytes([p[1], p[2], p[3], p[4]]), &p[5..]);
        let chan = conn.nums.get(&num).copied();
        // The remote numbers its channels with the other parity; one it
        // numbered at most `their_top` was opened before (announced again
        // after a move, or closed since).
        let theirs = num % 2 != conn.next_num % 2;
        let known = num <= conn.their_top;
        match (kind, chan) {
            (DATA, Some(chan)) => self.channel_frame(chan, body, now),
            // Frames for a channel this side already closed.
            (DATA | CLOSE, None) => {}
            (CLOSE, Some(chan)) => {
                if let Some(x) = self.conns.get_mut(&c) {
                    x.nums.remove(&num);
                }
                self.handle_channel_closed(chan, now);
            }
            // Announced again after a move.
            (OPEN, Some(_)) if theirs => {}
            (OPEN, None) if theirs && known => {}
            (OPEN, None) if theirs => {
                if let Some(x) = self.conns.get_mut(&c) {
                    x.their_top = num;
                }
                let label = String::from_utf8_lossy(body).into_owned();
                match self.handle_incoming_channel(c, &label, now) {
                    Some(chan) => {
                        if let Some(x) = self.conns.get_mut(&c) {
                            x.nums.insert(num, chan);
                        }
                        if let Some(ch) = self.chans.get_mut(&chan) {
                            ch.relay_num = Some(num);
                            ch.num = Some(num);
                        }
                        self.handle_channel_open(chan, now);
                    }
                    None if ChannelLabel::parse(&label).is_none() => {
                        self.fail_conn(c, bad("a channel with a label peerwire does not make"), now)
                    }
                    // Refused (too many streams): the connection failed.
                    None => {}
                }
            }
            (OPEN, _) => self.fail_conn(c, bad("a channel number opened twice"), now),
            _ => self.fail_conn(c, bad("an unknown payload kind"), now),
        }
    }
}
