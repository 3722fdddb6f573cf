//! Delivery acknowledgements per channel: what lets a live connection move
//! between paths (its direct WebRTC path, the broker's relay, a new direct
//! path) without losing, repeating or reordering a frame.
//!
//! What sits in a data channel's send buffer, or in flight, is lost with
//! its RTCPeerConnection; frames in flight on the relay are lost with the
//! relay pair. So each side counts the *numbered* frames (every frame but
//! ping, pong, ack, mark and rewind) it sends on a channel and keeps them
//! until the remote acknowledges them; numbers are implicit, since every
//! path keeps a channel's order.
//!
//! ```text
//!  sender                                          receiver
//!  sent = 7, kept: #4 #5 #6  ──── #5 #6 lost ────►  received = 5
//!                            ◄──── ack(4) ────────  (every 64 KiB, or 50 ms
//!  kept: #4 #5 #6                                    after a frame)
//!      ─── the path changes ───
//!  mark(channel, next = 4), #4, #5, #6  ─────────►  has 5: drops #4,
//!                                                    takes #5 #6 …
//! ```
//!
//! A channel keeps at most `resend_buffer` bytes: beyond, its queue waits
//! for acknowledgements (back-pressure, like the send window). A `mark` also
//! carries the channel's number on the connection, so that both sides can
//! name each stream on a path that carries several channels in one (the
//! relay); the side that opened a stream over its own data channel sends
//! one first. Unreliable channels are counted but not kept: after a move
//! the receiver takes the mark's number as its count.
//!
//! The same kept frames mend a loss on one path: a browser can lose the
//! first message the accepting side sends on a new data channel. A
//! reliable stream's (or socket's) acceptor sends `start` (numbered, so kept) before
//! anything else; an opener that gets any other numbered frame first drops
//! it and what follows, and asks once for `rewind(n)`; the acceptor sends
//! again what it keeps from `n` on, its `start` first.
//!
//! ```text
//!  opener                                          acceptor
//!                            ◄── #0 start (lost) ── sent = 1
//!  waits for start, drops #1 ◄── #1 "hello" ─────── sent = 2, kept: #0 #1
//!          ── rewind(0) ────────────────────────►
//!  takes #0 start, #1 ◄──── #0 start, #1 "hello" ── (sent again, not counted)
//! ```

use std::collections::VecDeque;

use super::Engine;
use super::channel::Role;
use super::types::{ChanId, LogLevel, Millis};
use crate::protocol::frames::{Frame, FrameKind};

/// The receiver acknowledges at least every this many bytes…
pub(crate) const ACK_EVERY: usize = 64 * 1024;
/// …and at most this long after an unacknowledged frame arrived.
pub(crate) const ACK_DELAY: Millis = 50.0;

/// One channel's counts, both ways.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    /// The number of the next numbered frame this side sends.
    pub sent: u32,
    /// Sent frames not yet acknowledged, oldest first (kept only on a
    /// reliable channel).
    pub kept: VecDeque<Vec<u8>>,
    pub kept_bytes: usize,
    /// The first number not acknowledged.
    pub acked: u32,
    /// Numbered frames received.
    pub received: u32,
    /// Bytes received since the last ack.
    pub unacked_in: usize,
    /// Frames to drop, already received (after a mark).
    pub skip: u32,
    /// When an ack is due.
    pub due: Option<Millis>,
    /// An opened stream or socket takes nothing before the acceptor's
    /// `start`.
    pub awaiting_start: bool,
    /// A `rewind` went out for what was lost before the `start`.
    pub rewound: bool,
    /// Numbered frames dropped while waiting for the `start`.
    pub dropped: u32,
}

impl Engine {
    /// Whether `chan`'s frames are counted (a channel of a connection, not
    /// a loopback socket end).
    fn counted(&self, chan: ChanId) -> bool {
        self.chans
            .get(&chan)
            .is_some_and(|c| c.conn.is_some() && c.partner.is_none())
    }

    /// A frame is leaving on `chan`: numbered ones are counted and kept.
    pub(crate) fn note_sent(&mut self, chan: ChanId, bytes: &[u8]) {
        if !self.counted(chan) || !FrameKind::numbered(bytes.first().copied()) {
            return;
        }
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let a = &mut ch.acks;
        a.sent = a.sent.wrapping_add(1);
        if ch.policy.reliable() {
            a.kept_bytes += bytes.len();
            a.kept.push_back(bytes.to_vec());
        } else {
            a.acked = a.sent;
        }
    }

    /// A frame arrived on `chan`; false when it is to be dropped: one this
    /// side already had (sent again after a move), or one that came before
    /// the acceptor's `start` (see [`Engine::lost_before_start`]).
    pub(crate) fn note_received(&mut self, chan: ChanId, bytes: &[u8], now: Millis) -> bool {
        let first = bytes.first().copied();
        if !self.counted(chan) || !FrameKind::numbered(first) {
            return true;
        }
        let Some(ch) = self.chans.get_mut(&chan) else {
            return true;
        };
        let a = &mut ch.acks;
        if a.awaiting_start {
            if first != Some(FrameKind::Start as u8) {
                return self.lost_before_start(chan, now);
            }
            a.awaiting_start = false;
        }
        if a.skip > 0 {
            a.skip -= 1;
            return false;
        }
        a.received = a.received.wrapping_add(1);
        a.unacked_in += bytes.len();
        a.due.get_or_insert(now + ACK_DELAY);
        if a.unacked_in >= ACK_EVERY {
            self.send_ack(chan, now);
        }
        true
    }

    /// Tells the remote how many frames arrived on `chan`.
    pub(crate) fn send_ack(&mut self, chan: ChanId, now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        ch.acks.unacked_in = 0;
        ch.acks.due = None;
        let n = ch.acks.received;
        self.transmit_frame(chan, &Frame::Ack(n), now);
    }

    /// `ack(n)`: the remote has the first `n` frames; what it covers is
    /// forgotten, and the channel may send more.
    pub(crate) fn on_ack(&mut self, chan: ChanId, n: u32, now: Millis) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        if !ch.policy.reliable() {
            return;
        }
        let a = &mut ch.acks;
        let ahead = n.wrapping_sub(a.acked);
        // An older count (from a path left behind) says nothing new.
        if (ahead as i32) < 0 {
            return;
        }
        let covered = ahead as usize;
        if covered > a.sent.wrapping_sub(a.acked) as usize {
            let detail = format!(
                "an acknowledgement of frame {n}, beyond the {} sent",
                a.sent
            );
            return self.protocol_fail(chan, detail, now);
        }
        a.acked = n;
        for _ in 0..covered.min(a.kept.len()) {
            if let Some(f) = a.kept.pop_front() {
                a.kept_bytes -= f.len();
            }
        }
        self.pump(chan, now);
    }

    /// `mark(channel, next)`: the remote names the channel and says which
    /// frame comes next; those this side already has will be dropped.
    pub(crate) fn on_mark(&mut self, chan: ChanId, channel: u32, next: u32, now: Millis) {
        let Some(ch) = self.chans.get(&chan) else {
            return;
        };
        let Some(c) = ch.conn else {
            return;
        };
        match ch.num {
            Some(n) if n == channel => {}
            Some(_) => {
                return self.protocol_fail(
                    chan,
                    "a mark with another channel's number".into(),
                    now,
                );
            }
            None => {
                let Some(conn) = self.conns.get_mut(&c) else {
                    return;
                };
                // The remote numbers its channels with the other parity.
                if channel % 2 == conn.next_num % 2 || conn.nums.contains_key(&channel) {
                    let detail =
                        format!("a mark naming channel {channel}, not the remote's to name");
                    return self.protocol_fail(chan, detail, now);
                }
                conn.nums.insert(channel, chan);
                conn.their_top = conn.their_top.max(channel);
                if let Some(ch) = self.chans.get_mut(&chan) {
                    ch.num = Some(channel);
                }
            }
        }
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        let a = &mut ch.acks;
        let had = a.received.wrapping_sub(next);
        if (had as i32) >= 0 {
            a.skip = had;
        } else {
            // Frames that never arrived and will not come again: an
            // unreliable channel's losses. Count from the mark.
            let lost = next.wrapping_sub(a.received);
            a.received = next;
            a.skip = 0;
            self.log(LogLevel::Warn, || {
                format!("{lost} frame(s) of an unreliable channel lost in a move to another path")
            });
        }
    }

    /// The earliest acknowledgement due.
    pub(crate) fn ack_deadline(&self) -> Option<Millis> {
        self.chans
            .values()
            .filter_map(|c| c.acks.due)
            .reduce(f64::min)
    }

    pub(crate) fn ack_timeouts(&mut self, now: Millis) {
        let due: Vec<ChanId> = self
            .chans
            .iter()
            .filter(|(_, c)| c.acks.due.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for chan in due {
            self.send_ack(chan, now);
        }
    }

    /// Whether `chan` begins with the acceptor's `start` (frame version 3):
    /// a reliable stream or socket on its own data channel, between two
    /// peers that both read version 3. A browser can lose the first
    /// message the accepting side sends on a new data channel; the `start`
    /// is what is lost then, and its absence tells the opener so.
    pub(crate) fn starts(&self, chan: ChanId) -> bool {
        let Some(ch) = self.chans.get(&chan) else {
            return false;
        };
        ch.role != Role::Main
            && ch.policy.reliable()
            && ch.relay_num.is_none()
            && ch.partner.is_none()
            && self.config.frames >= 3
            && ch
                .conn
                .and_then(|c| self.conns.get(&c))
                .is_some_and(|c| c.remote_frames >= 3)
    }

    /// A numbered frame on a stream or socket this side opened, before the
    /// acceptor's `start`: the browser lost what came before it (the
    /// `start` at least), so it is dropped, and the first one asks for
    /// everything again (`rewind`). Always false: the frame is dropped.
    fn lost_before_start(&mut self, chan: ChanId, now: Millis) -> bool {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return false;
        };
        let a = &mut ch.acks;
        a.dropped += 1;
        if std::mem::replace(&mut a.rewound, true) {
            return false;
        }
        let n = a.received;
        self.log(LogLevel::Warn, || {
            "the first frames of a stream or socket were lost on the way (no start); asking for them again"
                .to_string()
        });
        self.transmit_frame(chan, &Frame::Rewind(n), now);
        false
    }

    /// `rewind(n)`: the opener lost this channel's first frames; what is
    /// kept from number `n` goes again, in order, the `start` first.
    pub(crate) fn on_rewind(&mut self, chan: ChanId, n: u32, now: Millis) {
        let Some(ch) = self.chans.get(&chan) else {
            return;
        };
        let a = &ch.acks;
        let from = n.wrapping_sub(a.acked) as usize;
        if !ch.policy.reliable() || from > a.kept.len() {
            let detail = format!("a rewind to frame {n}, which it does not keep");
            return self.protocol_fail(chan, detail, now);
        }
        let frames: Vec<Vec<u8>> = a.kept.iter().skip(from).cloned().collect();
        for frame in frames {
            self.route_bytes(chan, frame, now);
        }
    }

    /// What `chan` must send after a move: its mark, then every frame the
    /// remote has not acknowledged, in order.
    pub(crate) fn resend_frames(&self, chan: ChanId) -> Vec<Vec<u8>> {
        let Some(ch) = self.chans.get(&chan) else {
            return Vec::new();
        };
        let Some(num) = ch.num else {
            return Vec::new();
        };
        let a = &ch.acks;
        let next = if ch.policy.reliable() {
            a.sent.wrapping_sub(a.kept.len() as u32)
        } else {
            a.sent
        };
        let mut out = vec![Frame::Mark { channel: num, next }.encode()];
        out.extend(a.kept.iter().cloned());
        out
    }
}
