//! Relay: the broker forwarding bytes between two ids that have no direct
//! path (signal-channel's relay), within rate and byte caps.
//!
//! Both ids must agree: `relay {to: B}` from A records A's side, `relay
//! {to: A}` from B completes the pair, and both hear `relay-ready`. From
//! then on binary frames `[n][B][payload]` from A reach B as
//! `[n][A][payload]` (see [`peerwire::protocol::relay`]), and back. A pair
//! moves through these states:
//!
//! ```text
//!           relay {to: B} from A           relay {to: A} from B
//!  (none) ───────────────────────► pending ─────────────────────► active
//!    ▲                               │        (relay-ready to both)  │
//!    │  relay-end; 30 s without B;   │                               │
//!    ├── A or B detached/released ◄──┘                               │
//!    │                                                               │
//!    └── relay-end; a cap passed; A or B detached, released, or ◄────┘
//!        replaced by a newer connection (4005)
//! ```
//!
//! Every end is told, as `relay-closed {id: <the other>, code, message}`,
//! to each side that had agreed: `peer-gone` when the other side ended it
//! (`relay-end`) or lost its connection, `relay-limit` when the broker
//! ended it (a cap, or 30 s without the other side's agreement). An id
//! that was detached hears about its pairs when it resumes.
//!
//! Relay frames are not signals: they are never queued for a detached id.
//! A pair lives on one connection of each side, so any change of
//! connection ends it and the SDK asks again (`relay` on both sides).
//!
//! Caps (`--relay-*`): each direction of a pair has a token bucket of
//! `rate` bytes a second with one second's worth of burst; a pair may carry
//! `max_bytes` in total, both directions together; all pairs together
//! `total_rate` bytes a second (one second's burst). A frame counts as its
//! payload's length, but at least [`MIN_FRAME_CHARGE`] bytes, so that a
//! flood of empty frames is paced too. A frame that would pass a cap is
//! dropped and ends its pair (`relay-limit` to both sides, naming the
//! flag). Relay frames waiting in one receiver's outbound queue may hold
//! [`RelayConfig::backlog_bytes`] at most; beyond, the pair ends too
//! (`relay-limit`: the receiver does not read fast enough). A full
//! outbound queue (in frames) is the usual slow consumer: 4003, the
//! receiver is detached, and its pairs end with `peer-gone`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::relay::{self as frames, MAX_RELAY_PAYLOAD};
use peerwire::protocol::{ErrorCode, ServerMessage};

use super::delivery::Kind;
use super::{Answer, ConnId, Frame, Outgoing, State};
use crate::limits::TokenBucket;

/// Default `--relay-rate`: bytes a second, per pair and direction.
pub const DEFAULT_RATE: u64 = 4 * 1024 * 1024;
/// Default `--relay-max-bytes`: bytes one pair may carry, both ways.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default `--relay-max-pairs`: pairs, pending and active, at once.
pub const DEFAULT_MAX_PAIRS: usize = 1000;
/// Default `--relay-max-per-peer`: pairs one id may have agreed to.
pub const DEFAULT_MAX_PER_PEER: usize = 64;
/// Default `--relay-total-rate`: bytes a second, all pairs together.
pub const DEFAULT_TOTAL_RATE: u64 = 256 * 1024 * 1024;
/// How long one side's agreement waits for the other's.
pub const INTENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The fewest bytes one relay frame counts for against the caps.
pub const MIN_FRAME_CHARGE: u64 = 256;
/// The largest relay frame a client may send: the id's length, the longest
/// id (64), the largest payload.
pub const MAX_RELAY_FRAME: usize = 1 + 64 + MAX_RELAY_PAYLOAD;

/// Whether and within which caps the broker relays.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `--relay on|off`: off answers every `relay` with `relay-refused`.
    pub enabled: bool,
    /// Bytes a second per pair and direction (burst: one second's worth).
    pub rate: u64,
    /// Bytes one pair may carry in total, both directions together.
    pub max_bytes: u64,
    /// Pairs, pending and active, at once (beyond: `relay-refused`).
    pub max_pairs: usize,
    /// Pairs one id may have agreed to at once (beyond: `relay-refused`).
    pub max_per_peer: usize,
    /// Bytes a second through every pair together (burst: one second's).
    pub total_rate: u64,
    /// How long one side's `relay` waits for the other's.
    pub intent_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate: DEFAULT_RATE,
            max_bytes: DEFAULT_MAX_BYTES,
            max_pairs: DEFAULT_MAX_PAIRS,
            max_per_peer: DEFAULT_MAX_PER_PEER,
            total_rate: DEFAULT_TOTAL_RATE,
            intent_timeout: INTENT_TIMEOUT,
        }
    }
}

impl RelayConfig {
    /// Bytes of relay frames that may wait in one connection's outbound
    /// queue: two seconds of one pair's rate, and at least 1 MiB.
    pub fn backlog_bytes(&self) -> usize {
        usize::try_from(self.rate.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .max(1024 * 1024)
    }
}

/// What became of one binary frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Queued for the receiver.
    Forwarded,
    /// Not forwarded; the sender was told why (`error` or `relay-closed`).
    Dropped,
}

/// A relay frame's share of its receiver's relay backlog, given back when
/// the frame is dropped: written out, or thrown away with its connection.
#[derive(Debug)]
pub(super) struct Backlog {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Two ids' relay, pending or active. Sides are in key order (see [`key`]).
struct Pair {
    /// Which sides have agreed.
    agreed: [bool; 2],
    /// When a pending pair is dropped; `None` once active.
    deadline: Option<Instant>,
    /// Bytes a second from each side, once active.
    rates: Option<[TokenBucket; 2]>,
    /// Bytes carried so far, both directions (as charged).
    bytes: u64,
}

impl Pair {
    fn is_active(&self) -> bool {
        self.agreed == [true, true]
    }
}

/// The pair's key (the two ids in order) and `me`'s side in it.
fn key(me: &str, other: &str) -> ((String, String), usize) {
    if me <= other {
        ((me.to_string(), other.to_string()), 0)
    } else {
        ((other.to_string(), me.to_string()), 1)
    }
}

/// Every relay pair, and what is owed to ids inside their grace window.
#[derive(Default)]
pub(super) struct Relays {
    pairs: HashMap<(String, String), Pair>,
    /// Each id with the ids it has a pair with.
    by_peer: HashMap<String, BTreeSet<String>>,
    /// How many pairs are active.
    active: usize,
    /// Bytes a second through every pair (made at the first frame).
    total: Option<TokenBucket>,
    /// `relay-closed` messages for detached ids, sent when they resume.
    owed: HashMap<String, Vec<ServerMessage>>,
}

impl Relays {
    pub(super) fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.by_peer.is_empty() && self.owed.is_empty()
    }

    pub(super) fn active(&self) -> usize {
        self.active
    }

    pub(super) fn pending(&self) -> usize {
        self.pairs.len() - self.active
    }

    fn insert(&mut self, a: &str, b: &str, pair: Pair) {
        let (k, _) = key(a, b);
        self.by_peer
            .entry(a.to_string())
            .or_default()
            .insert(b.to_string());
        self.by_peer
            .entry(b.to_string())
            .or_default()
            .insert(a.to_string());
        self.pairs.insert(k, pair);
    }

    /// Takes the pair of `me` and `other` out, with `me`'s side in it.
    fn remove(&mut self, me: &str, other: &str) -> Option<(Pair, usize)> {
        let (k, side) = key(me, other);
        let pair = self.pairs.remove(&k)?;
        for (x, y) in [(me, other), (other, me)] {
            if let Some(set) = self.by_peer.get_mut(x) {
                set.remove(y);
                if set.is_empty() {
                    self.by_peer.remove(x);
                }
            }
        }
        if pair.is_active() {
            self.active -= 1;
        }
        Some((pair, side))
    }

    /// The ids `me` has a pair with.
    fn partners(&self, me: &str) -> Vec<String> {
        self.by_peer
            .get(me)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many pairs `me` has agreed to.
    fn agreed_by(&self, me: &str) -> usize {
        self.by_peer.get(me).map_or(0, |others| {
            others
                .iter()
                .filter(|o| {
                    let (k, side) = key(me, o);
                    self.pairs.get(&k).is_some_and(|p| p.agreed[side])
                })
                .count()
        })
    }
}

/// Why a pair ended, for the `relay_ends` metric.
#[derive(Debug, Clone, Copy)]
enum Cause {
    /// `relay-end` from one side.
    Ended,
    /// One side lost its connection (detached, released, replaced).
    Gone,
    /// 30 s without the other side's agreement.
    Expired,
    /// `--relay-max-bytes`.
    Bytes,
    /// `--relay-rate`.
    Rate,
    /// `--relay-total-rate`.
    TotalRate,
    /// The receiver's relay backlog was full.
    Backlog,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Ended => "ended",
            Cause::Gone => "gone",
            Cause::Expired => "expired",
            Cause::Bytes => "max-bytes",
            Cause::Rate => "rate",
            Cause::TotalRate => "total-rate",
            Cause::Backlog => "backlog",
        }
    }
}

fn closed(about: &str, code: ErrorCode, message: String) -> ServerMessage {
    ServerMessage::RelayClosed {
        id: about.to_string(),
        code,
        message,
    }
}

impl State {
    /// `relay {to}` from `me`: records `me`'s agreement; the second side's
    /// makes the pair active, and both hear `relay-ready` (before the
    /// reply, as every event a request causes). Again on an active pair:
    /// `relay-ready` again, to `me` only.
    pub(super) fn relay(&mut self, me: &str, rid: Rid, to: String, now: Instant) -> Answer {
        let cfg = &self.config.relay;
        let (rate, max_pairs, max_per_peer) = (cfg.rate, cfg.max_pairs, cfg.max_per_peer);
        let deadline = now.checked_add(cfg.intent_timeout);
        if !cfg.enabled {
            let detail = "this broker does not relay (--relay off)".to_string();
            return Err((ErrorCode::RelayRefused, rid, detail));
        }
        if to == me {
            let detail = "`to` names this id: a relay is between two ids".to_string();
            return Err((ErrorCode::BadMessage, rid, detail));
        }
        if !self.sessions.contains_key(&to) && self.cluster.is_some() {
            // Relay frames go over WebSocket connections of one broker.
            let detail = format!(
                "{to:?} is not connected to this broker: the broker relay needs both ids on one broker of the network (configure a TURN server)"
            );
            return Err((ErrorCode::RelayRefused, rid, detail));
        }
        if !self.sessions.contains_key(&to) {
            let detail = format!("no id {to:?} is registered to relay with");
            return Err((ErrorCode::UnknownPeer, rid, detail));
        }
        let per_peer = |st: &State| -> Result<(), (ErrorCode, Rid, String)> {
            if st.relays.agreed_by(me) >= max_per_peer {
                let detail = format!(
                    "this id has agreed to {max_per_peer} relays (--relay-max-per-peer); end one first"
                );
                return Err((ErrorCode::RelayRefused, rid, detail));
            }
            Ok(())
        };
        let (k, side) = key(me, &to);
        match self.relays.pairs.get(&k) {
            Some(pair) if pair.is_active() => {
                let ready = ServerMessage::RelayReady { id: to, rate };
                let _ = self.deliver(me, &ready, None, Kind::Queued, now);
            }
            Some(pair) if pair.agreed[side] => {
                if let Some(pair) = self.relays.pairs.get_mut(&k) {
                    pair.deadline = deadline;
                }
            }
            Some(_) => {
                per_peer(self)?;
                let Some(pair) = self.relays.pairs.get_mut(&k) else {
                    return Err(super::internal(rid, "a relay pair vanished"));
                };
                pair.agreed[side] = true;
                pair.deadline = None;
                let (r, burst) = (rate as f64, rate as f64);
                pair.rates = Some([
                    TokenBucket::new(r, burst, now),
                    TokenBucket::new(r, burst, now),
                ]);
                self.relays.active += 1;
                let theirs = ServerMessage::RelayReady {
                    id: me.to_string(),
                    rate,
                };
                let _ = self.deliver(&to, &theirs, None, Kind::Queued, now);
                let mine = ServerMessage::RelayReady { id: to, rate };
                let _ = self.deliver(me, &mine, None, Kind::Queued, now);
            }
            None => {
                if self.relays.pairs.len() >= max_pairs {
                    let detail = format!(
                        "the broker relays for {max_pairs} pairs already (--relay-max-pairs)"
                    );
                    return Err((ErrorCode::RelayRefused, rid, detail));
                }
                per_peer(self)?;
                let mut agreed = [false; 2];
                agreed[side] = true;
                let pair = Pair {
                    agreed,
                    deadline,
                    rates: None,
                    bytes: 0,
                };
                self.relays.insert(me, &to, pair);
            }
        }
        Ok(ServerMessage::Ok { rid })
    }

    /// `relay-end {to}` from `me`: ends the pair, if any (pending or
    /// active); `to` hears `relay-closed` (`peer-gone`) if it had agreed.
    /// Always `ok`: ending what is already over is not an error.
    pub(super) fn relay_end(&mut self, me: &str, rid: Rid, to: &str, now: Instant) -> Answer {
        if to == me {
            let detail = "`to` names this id: a relay is between two ids".to_string();
            return Err((ErrorCode::BadMessage, rid, detail));
        }
        if let Some((pair, side)) = self.relays.remove(me, to) {
            self.metrics
                .relay_end(ErrorCode::PeerGone, Cause::Ended.as_str());
            if pair.agreed[1 - side] {
                let msg = closed(me, ErrorCode::PeerGone, format!("{me:?} ended the relay"));
                let _ = self.deliver(to, &msg, None, Kind::Queued, now);
            }
        }
        Ok(ServerMessage::Ok { rid })
    }

    /// One binary frame from `conn`: see [`super::Hub::handle_binary`].
    pub(super) fn relay_frame(
        &mut self,
        conn: ConnId,
        decoded: Result<(&str, &[u8]), &'static str>,
        now: Instant,
    ) -> Relayed {
        let Some(entry) = self.conns.get(&conn) else {
            return Relayed::Dropped;
        };
        let Some(me) = entry.peer.clone() else {
            self.metrics.error(ErrorCode::NotRegistered);
            let msg = ServerMessage::error(
                None,
                ErrorCode::NotRegistered,
                "a relay frame before register",
            );
            self.send_conn(conn, &msg, now);
            return Relayed::Dropped;
        };
        let (to, payload) = match decoded {
            Ok(decoded) => decoded,
            Err(what) => {
                self.metrics.error(ErrorCode::BadMessage);
                let detail = format!(
                    "{what}; binary frames are relay frames: [id length: u8][receiver id][payload ≤ 64 KiB]"
                );
                let msg = ServerMessage::error(None, ErrorCode::BadMessage, detail);
                self.send_conn(conn, &msg, now);
                return Relayed::Dropped;
            }
        };
        let cfg = &self.config.relay;
        let (enabled, max_bytes, rate, total_rate) =
            (cfg.enabled, cfg.max_bytes, cfg.rate, cfg.total_rate);
        let backlog_bytes = cfg.backlog_bytes();
        let charge = (payload.len() as u64).max(MIN_FRAME_CHARGE);
        let (k, side) = key(&me, to);

        // The pair's own caps, then the broker's total rate.
        let over = match self.relays.pairs.get_mut(&k) {
            Some(pair) if pair.is_active() => {
                if pair.bytes.saturating_add(charge) > max_bytes {
                    Some((
                        Cause::Bytes,
                        format!("the relay passed --relay-max-bytes ({max_bytes} bytes)"),
                    ))
                } else if !pair
                    .rates
                    .as_mut()
                    .is_some_and(|r| r[side].take_n(charge as f64, now))
                {
                    Some((
                        Cause::Rate,
                        format!("{me:?} sent faster than --relay-rate ({rate} bytes/s)"),
                    ))
                } else {
                    pair.bytes += charge;
                    None
                }
            }
            _ => {
                self.metrics.error(ErrorCode::RelayLimit);
                let detail = if enabled {
                    format!(
                        "no relay with {to:?} is ready: send relay {{to: {to:?}}} and wait for relay-ready"
                    )
                } else {
                    "this broker does not relay (--relay off)".to_string()
                };
                let msg = closed(to, ErrorCode::RelayLimit, detail);
                self.send_conn(conn, &msg, now);
                return Relayed::Dropped;
            }
        };
        let over = over.or_else(|| {
            let total = self
                .relays
                .total
                .get_or_insert_with(|| TokenBucket::new(total_rate as f64, total_rate as f64, now));
            (!total.take_n(charge as f64, now)).then(|| {
                (
                    Cause::TotalRate,
                    format!(
                        "the broker's relays together passed --relay-total-rate ({total_rate} bytes/s)"
                    ),
                )
            })
        });
        if let Some((cause, message)) = over {
            self.end_both(
                &me,
                to,
                ErrorCode::RelayLimit,
                cause,
                &message,
                &message,
                now,
            );
            return Relayed::Dropped;
        }

        // The receiver's connection, and room in its backlog.
        let receiver = self
            .sessions
            .get(to)
            .and_then(|s| s.conn)
            .and_then(|c| self.conns.get(&c).map(|e| (c, e.relay_backlog.clone())));
        let Some((rconn, counter)) = receiver else {
            // Not reached: a detached id has no active pair.
            let message = format!("{to:?} is not connected to the broker");
            self.end_both(&me, to, ErrorCode::PeerGone, Cause::Gone, &message, "", now);
            return Relayed::Dropped;
        };
        let out = frames::encode(&me, payload);
        let waiting = counter.load(Ordering::Relaxed);
        if waiting.saturating_add(out.len()) > backlog_bytes {
            let message = format!(
                "{to:?} does not read its relay frames fast enough ({waiting} bytes waiting)"
            );
            self.end_both(
                &me,
                to,
                ErrorCode::RelayLimit,
                Cause::Backlog,
                &message,
                &message,
                now,
            );
            return Relayed::Dropped;
        }
        counter.fetch_add(out.len(), Ordering::Relaxed);
        let backlog = Backlog {
            counter,
            bytes: out.len(),
        };
        let forwarded = self.push(
            rconn,
            Outgoing {
                frame: Frame::Binary(Bytes::from(out)),
                origin: None,
                kind: Kind::Relay,
                _backlog: Some(backlog),
            },
            now,
        );
        // A full queue cut the receiver off (4003): its detach ended the
        // pair and told the sender.
        if forwarded {
            self.metrics.relayed_bytes.inc_by(payload.len() as u64);
            Relayed::Forwarded
        } else {
            Relayed::Dropped
        }
    }

    /// Ends an active pair and tells both sides: `a` hears `to_a` and `b`
    /// hears `to_b` (nothing when empty).
    #[allow(clippy::too_many_arguments)]
    fn end_both(
        &mut self,
        a: &str,
        b: &str,
        code: ErrorCode,
        cause: Cause,
        to_a: &str,
        to_b: &str,
        now: Instant,
    ) {
        if self.relays.remove(a, b).is_none() {
            return;
        }
        self.metrics.relay_end(code, cause.as_str());
        for (who, about, message) in [(a, b, to_a), (b, a, to_b)] {
            if !message.is_empty() {
                let msg = closed(about, code, message.to_string());
                let _ = self.deliver(who, &msg, None, Kind::Queued, now);
            }
        }
    }

    /// `peer` lost its connection and entered its grace window: every
    /// pair it is in ends (relay frames are not queued). The other side
    /// hears it now if it had agreed; `peer` hears it when it resumes.
    pub(super) fn relay_detached(&mut self, peer: &str, now: Instant) {
        for other in self.relays.partners(peer) {
            let Some((pair, side)) = self.relays.remove(peer, &other) else {
                continue;
            };
            self.metrics
                .relay_end(ErrorCode::PeerGone, Cause::Gone.as_str());
            if pair.agreed[1 - side] {
                let message = format!("{peer:?} lost its connection to the broker");
                let msg = closed(peer, ErrorCode::PeerGone, message);
                let _ = self.deliver(&other, &msg, None, Kind::Queued, now);
            }
            if pair.agreed[side] {
                let message =
                    "the relay ended when this id's connection to the broker dropped".to_string();
                let msg = closed(&other, ErrorCode::PeerGone, message);
                self.relays
                    .owed
                    .entry(peer.to_string())
                    .or_default()
                    .push(msg);
            }
        }
    }

    /// `peer` is released: every pair it is in ends; the other side hears
    /// it if it had agreed. What `peer` was owed is dropped.
    pub(super) fn relay_released(&mut self, peer: &str, now: Instant) {
        self.relays.owed.remove(peer);
        for other in self.relays.partners(peer) {
            let Some((pair, side)) = self.relays.remove(peer, &other) else {
                continue;
            };
            self.metrics
                .relay_end(ErrorCode::PeerGone, Cause::Gone.as_str());
            if pair.agreed[1 - side] {
                let msg = closed(peer, ErrorCode::PeerGone, format!("{peer:?} went offline"));
                let _ = self.deliver(&other, &msg, None, Kind::Queued, now);
            }
        }
    }

    /// `peer` resumed on connection `conn`. It hears about the pairs that
    /// ended while it was detached. If it `replaced` a connection that was
    /// still open (4005), relay frames may be left unwritten on the old
    /// one: its active pairs end and both sides hear it (pending ones,
    /// which carried nothing yet, stay).
    pub(super) fn relay_resumed(&mut self, peer: &str, conn: ConnId, replaced: bool, now: Instant) {
        for msg in self.relays.owed.remove(peer).unwrap_or_default() {
            self.send_conn(conn, &msg, now);
        }
        if !replaced {
            return;
        }
        for other in self.relays.partners(peer) {
            let (k, _) = key(peer, &other);
            if self.relays.pairs.get(&k).is_some_and(Pair::is_active) {
                self.end_both(
                    peer,
                    &other,
                    ErrorCode::PeerGone,
                    Cause::Gone,
                    "the relay ended when this id reconnected (frames may have been left unwritten)",
                    &format!("{peer:?} reconnected to the broker"),
                    now,
                );
            }
        }
    }

    /// Pending pairs whose other side did not agree in time: the side that
    /// agreed hears `relay-closed` (`relay-limit`).
    pub(super) fn expire_relay_intents(&mut self, now: Instant) {
        if self.relays.pairs.len() == self.relays.active {
            return;
        }
        let expired: Vec<(String, String)> = self
            .relays
            .pairs
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let secs = self.config.relay.intent_timeout.as_secs_f64();
        for (a, b) in expired {
            let Some((pair, _)) = self.relays.remove(&a, &b) else {
                continue;
            };
            self.metrics
                .relay_end(ErrorCode::RelayLimit, Cause::Expired.as_str());
            for (side, (who, other)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
                if pair.agreed[side] {
                    let message = format!("{other:?} did not agree to relay within {secs} s");
                    let msg = closed(other, ErrorCode::RelayLimit, message);
                    let _ = self.deliver(who, &msg, None, Kind::Queued, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Harness, config, ms};
    use super::*;
    use serde_json::{Value, json};

    /// Alice and bob, registered, each having agreed to relay with the other.
    fn paired() -> (Harness, ConnId, ConnId) {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        relay(&mut h, a, "bob");
        relay(&mut h, b, "alice");
        h.frames(a);
        h.frames(b);
        (h, a, b)
    }

    fn relay(h: &mut Harness, conn: ConnId, to: &str) -> Value {
        h.request(conn, json!({"type": "relay", "rid": 9, "to": to}))
    }

    fn types(frames: &[Value]) -> Vec<&str> {
        frames.iter().map(|f| f["type"].as_str().unwrap()).collect()
    }

    fn closed_with(frames: &[Value], about: &str, code: &str) -> String {
        let [f] = frames else {
            panic!("one relay-closed expected: {frames:?}")
        };
        assert_eq!(
            (f["type"].as_str(), f["id"].as_str(), f["code"].as_str()),
            (Some("relay-closed"), Some(about), Some(code)),
            "{f}"
        );
        f["message"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_pair_needs_both_sides_then_frames_flow_both_ways_in_order() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        assert_eq!(relay(&mut h, a, "bob")["type"], "ok");
        assert!(
            h.frames(b).is_empty(),
            "bob hears nothing of alice's side alone"
        );
        // One side alone: nothing is forwarded, and alice is told.
        let frame = frames::encode("bob", b"early");
        assert_eq!(h.send_binary(a, &frame), Relayed::Dropped);
        assert!(h.binary(b).is_empty());
        let why = closed_with(&h.frames(a), "bob", "relay-limit");
        assert!(why.contains("no relay with \"bob\" is ready"), "{why}");
        assert_eq!(h.hub.stats().relay_pending, 1);

        // Bob agrees: both hear relay-ready, bob before his ok.
        h.send(b, json!({"type": "relay", "rid": 4, "to": "alice"}));
        let got = h.frames(b);
        assert_eq!(types(&got), ["relay-ready", "ok"]);
        assert_eq!(got[0]["id"], "alice");
        assert_eq!(got[0]["rate"], 100_000);
        let got = h.frames(a);
        assert_eq!(types(&got), ["relay-ready"]);
        assert_eq!(got[0]["id"], "bob");
        assert_eq!(
            (h.hub.stats().relay_pairs, h.hub.stats().relay_pending),
            (1, 0)
        );

        for n in 0..5u8 {
            assert_eq!(
                h.send_binary(a, &frames::encode("bob", &[n])),
                Relayed::Forwarded
            );
        }
        let want: Vec<Vec<u8>> = (0..5u8).map(|n| frames::encode("alice", &[n])).collect();
        assert_eq!(h.binary(b), want);
        assert_eq!(
            h.send_binary(b, &frames::encode("alice", b"back")),
            Relayed::Forwarded
        );
        assert_eq!(h.binary(a), vec![frames::encode("bob", b"back")]);
        assert!(h.frames(a).is_empty() && h.frames(b).is_empty());

        // Asked again (after a lost reply, say): relay-ready to the asker only.
        h.send(a, json!({"type": "relay", "rid": 5, "to": "bob"}));
        assert_eq!(types(&h.frames(a)), ["relay-ready", "ok"]);
        assert!(h.frames(b).is_empty());
    }

    #[test]
    fn requests_that_cannot_be_a_relay_are_refused() {
        let mut h = Harness::new();
        let a = h.connect();
        h.register(a, "alice");
        assert_eq!(relay(&mut h, a, "alice")["code"], "bad-message");
        assert_eq!(relay(&mut h, a, "carol")["code"], "unknown-peer");
        assert_eq!(relay(&mut h, a, "no spaces")["code"], "invalid-id");
        let end = h.request(a, json!({"type": "relay-end", "rid": 3, "to": "carol"}));
        assert_eq!(end["type"], "ok", "ending nothing is fine");

        let mut off = config();
        off.relay.enabled = false;
        let mut h = Harness::with_config(off);
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        let r = relay(&mut h, a, "bob");
        assert_eq!(r["code"], "relay-refused");
        assert!(
            r["message"].as_str().unwrap().contains("--relay off"),
            "{r}"
        );
        h.send_binary(a, &frames::encode("bob", b"x"));
        let why = closed_with(&h.frames(a), "bob", "relay-limit");
        assert!(why.contains("--relay off"), "{why}");
    }

    #[test]
    fn bad_frames_are_named_and_dropped() {
        let (mut h, a, b) = paired();
        for (frame, what) in [
            (vec![], "an empty relay frame"),
            (vec![9, b'b'], "shorter than its id"),
            (vec![1, b' ', 1], "not a peer id"),
            (
                frames::encode("bob", &vec![0; MAX_RELAY_PAYLOAD + 1]),
                "over 64 KiB",
            ),
        ] {
            assert_eq!(h.send_binary(a, &frame), Relayed::Dropped);
            let got = h.frames(a);
            assert_eq!(got.len(), 1);
            assert_eq!(
                (got[0]["type"].as_str(), got[0]["code"].as_str()),
                (Some("error"), Some("bad-message"))
            );
            assert!(
                got[0]["message"].as_str().unwrap().contains(what),
                "{}",
                got[0]
            );
        }
        assert!(h.binary(b).is_empty());
        let c = h.connect();
        assert_eq!(
            h.send_binary(c, &frames::encode("bob", b"x")),
            Relayed::Dropped
        );
        assert_eq!(h.frames(c)[0]["code"], "not-registered");
    }

    #[test]
    fn the_rate_cap_ends_the_pair_for_both_sides() {
        let (mut h, a, b) = paired(); // 100 000 bytes/s, one second's burst
        assert_eq!(
            h.send_binary(a, &frames::encode("bob", &[1; 60_000])),
            Relayed::Forwarded
        );
        h.at(ms(100)); // 10 000 bytes back: 50 000 left, 60 000 asked
        assert_eq!(
            h.send_binary(a, &frames::encode("bob", &[2; 60_000])),
            Relayed::Dropped
        );
        let why = closed_with(&h.frames(a), "bob", "relay-limit");
        assert!(why.contains("--relay-rate (100000 bytes/s)"), "{why}");
        let got = h.frames(b);
        closed_with(&got, "alice", "relay-limit");
        assert_eq!(h.binary(b).len(), 1, "only the first frame");
        assert_eq!(h.hub.stats().relay_pairs, 0);
        // Ended means ended: later frames are answered, not forwarded.
        assert_eq!(
            h.send_binary(b, &frames::encode("alice", b"x")),
            Relayed::Dropped
        );
        closed_with(&h.frames(b), "alice", "relay-limit");
    }

    #[test]
    fn small_frames_count_at_least_the_minimum_charge() {
        let (mut h, a, b) = paired();
        let fits = (100_000 / MIN_FRAME_CHARGE) as usize;
        for _ in 0..fits {
            assert_eq!(
                h.send_binary(a, &frames::encode("bob", &[])),
                Relayed::Forwarded
            );
            h.binary(b);
        }
        assert_eq!(
            h.send_binary(a, &frames::encode("bob", &[])),
            Relayed::Dropped
        );
        closed_with(&h.frames(a), "bob", "relay-limit");
    }

    #[test]
    fn the_byte_cap_counts_both_directions() {
        let (mut h, a, b) = paired(); // 1 000 000 bytes per pair
        for n in 0..20u64 {
            h.at(ms(1000 * n));
            let (from, to) = if n % 2 == 0 { (a, "bob") } else { (b, "alice") };
            assert_eq!(
                h.send_binary(from, &frames::encode(to, &[0; 50_000])),
                Relayed::Forwarded,
                "frame {n}"
            );
            h.binary(a);
            h.binary(b);
        }
        h.at(ms(20_000));
        assert_eq!(
            h.send_binary(a, &frames::encode("bob", &[0; 1])),
            Relayed::Dropped
        );
        let why = closed_with(&h.frames(a), "bob", "relay-limit");
        assert!(why.contains("--relay-max-bytes (1000000 bytes)"), "{why}");
        closed_with(&h.frames(b), "alice", "relay-limit");
    }

    #[test]
    fn the_total_rate_ends_the_pair_that_passes_it() {
        let (mut h, a, b) = paired(); // 150 000 bytes/s through every pair
        let (c, d) = (h.connect(), h.connect());
        h.register(c, "carol");
        h.register(d, "dave");
        relay(&mut h, c, "dave");
        relay(&mut h, d, "carol");
        h.frames(c);
        h.frames(d);
        // Each within its pair's 100 000 a second (one each way for alice
        // and bob), 180 000 together.
        assert_eq!(
            h.send_binary(a, &frames::encode("bob", &[0; 60_000])),
            Relayed::Forwarded
        );
        assert_eq!(
            h.send_binary(b, &frames::encode("alice", &[0; 60_000])),
            Relayed::Forwarded
        );
        assert_eq!(
            h.send_binary(c, &frames::encode("dave", &[0; 60_000])),
            Relayed::Dropped
        );
        let why = closed_with(&h.frames(c), "dave", "relay-limit");
        assert!(why.contains("--relay-total-rate"), "{why}");
        closed_with(&h.frames(d), "carol", "relay-limit");
        assert!(
            h.frames(a).is_empty() && h.frames(b).is_empty(),
            "alice and bob go on"
        );
        assert_eq!(h.binary(d), Vec::<Vec<u8>>::new());
        assert_eq!(h.hub.stats().relay_pairs, 1);
    }

    #[test]
    fn pairs_are_bounded_in_total_and_per_id() {
        let mut h = Harness::new(); // 3 pairs, 2 agreed to per id
        let ids = ["alice", "bob", "carol", "dave", "erin"];
        let conns: Vec<ConnId> = ids
            .iter()
            .map(|id| {
                let c = h.connect();
                h.register(c, id);
                c
            })
            .collect();
        assert_eq!(relay(&mut h, conns[0], "bob")["type"], "ok");
        assert_eq!(relay(&mut h, conns[0], "carol")["type"], "ok");
        let r = relay(&mut h, conns[0], "dave");
        assert_eq!(r["code"], "relay-refused");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("--relay-max-per-peer"),
            "{r}"
        );
        assert_eq!(relay(&mut h, conns[3], "erin")["type"], "ok");
        let r = relay(&mut h, conns[1], "carol");
        assert_eq!(r["code"], "relay-refused");
        assert!(
            r["message"].as_str().unwrap().contains("--relay-max-pairs"),
            "{r}"
        );
        // Completing a pending pair takes no new place.
        assert_eq!(relay(&mut h, conns[1], "alice")["type"], "relay-ready");
        // Ending one frees its place.
        h.request(
            conns[0],
            json!({"type": "relay-end", "rid": 3, "to": "carol"}),
        );
        assert_eq!(relay(&mut h, conns[1], "carol")["type"], "ok");
    }

    #[test]
    fn relay_end_tells_the_other_side_if_it_had_agreed() {
        let (mut h, a, b) = paired();
        let r = h.request(b, json!({"type": "relay-end", "rid": 3, "to": "alice"}));
        assert_eq!(r["type"], "ok");
        let why = closed_with(&h.frames(a), "bob", "peer-gone");
        assert_eq!(why, "\"bob\" ended the relay");
        assert!(h.frames(b).is_empty());
        // A pending side only: the other never agreed, so hears nothing.
        relay(&mut h, a, "bob");
        h.request(a, json!({"type": "relay-end", "rid": 4, "to": "bob"}));
        assert!(h.frames(b).is_empty());
        assert!(h.hub.stats().relay_pending == 0);
    }

    #[test]
    fn one_sided_requests_expire_and_the_asker_is_told() {
        let mut h = Harness::new(); // 50 ms to agree
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        relay(&mut h, a, "bob");
        h.sweep(ms(30));
        relay(&mut h, a, "bob"); // asking again restarts the wait
        h.sweep(ms(79));
        assert!(h.frames(a).is_empty());
        h.sweep(ms(80));
        let why = closed_with(&h.frames(a), "bob", "relay-limit");
        assert!(
            why.contains("did not agree to relay within 0.05 s"),
            "{why}"
        );
        assert!(h.frames(b).is_empty());
        assert_eq!(h.hub.stats().relay_pending, 0);
    }

    #[test]
    fn a_drop_ends_the_pair_and_the_dropped_side_hears_it_on_resume() {
        let (mut h, a, b) = paired();
        h.drop_conn(a, false);
        let why = closed_with(&h.frames(b), "alice", "peer-gone");
        assert!(why.contains("lost its connection"), "{why}");
        assert_eq!(
            h.send_binary(b, &frames::encode("alice", b"x")),
            Relayed::Dropped
        );
        closed_with(&h.frames(b), "alice", "relay-limit");
        assert!(h.hub.stats().relay_pairs == 0);
    }

    #[test]
    fn a_resumed_id_learns_which_pairs_ended_while_it_was_away() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        let token = h.register(a, "alice");
        h.register(b, "bob");
        relay(&mut h, a, "bob");
        relay(&mut h, b, "alice");
        h.frames(a);
        h.frames(b);
        h.drop_conn(a, false);
        closed_with(&h.frames(b), "alice", "peer-gone");
        let a2 = h.connect();
        let r = h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(r["resumed"], true);
        let why = closed_with(&h.frames(a2), "bob", "peer-gone");
        assert!(why.contains("dropped"), "{why}");
        // Both ask again: a new pair.
        relay(&mut h, a2, "bob");
        assert_eq!(relay(&mut h, b, "alice")["type"], "relay-ready");
        h.frames(a2);
        h.frames(b);
        // A newer connection taking over a live one (4005) ends active pairs.
        let a3 = h.connect();
        h.request(
            a3,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        assert_eq!(h.killed(a2), Some(4005));
        // (What reaches a3 waits until a2's task has given back its
        // unsent frames, which are older.)
        h.drop_conn(a2, false);
        let why = closed_with(&h.frames(a3), "bob", "peer-gone");
        assert!(why.contains("reconnected"), "{why}");
        let why = closed_with(&h.frames(b), "alice", "peer-gone");
        assert!(why.contains("reconnected"), "{why}");
        h.drop_conn(a3, true);
        h.drop_conn(b, true);
        assert!(h.hub.is_idle());
    }

    #[test]
    fn release_ends_pending_and_active_pairs_and_leaves_nothing_behind() {
        let mut h = Harness::new();
        let (a, b, c) = (h.connect(), h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.register(c, "carol");
        relay(&mut h, a, "bob");
        relay(&mut h, b, "alice");
        relay(&mut h, c, "alice");
        h.frames(a);
        h.frames(b);
        h.drop_conn(a, true);
        assert_eq!(
            closed_with(&h.frames(b), "alice", "peer-gone"),
            "\"alice\" went offline"
        );
        closed_with(&h.frames(c), "alice", "peer-gone");
        // A detached id's owed news goes with it when its window ends.
        h.drop_conn(b, false);
        h.sweep(ms(100));
        h.drop_conn(c, true);
        assert!(h.hub.is_idle());
    }

    #[test]
    fn a_receiver_that_does_not_read_ends_the_pair_not_the_memory() {
        // A long outbound queue so that the relay backlog (1 MiB here) is
        // reached before the queue's frame count (4003).
        let mut cfg = config();
        cfg.relay.max_bytes = u64::MAX;
        cfg.relay.total_rate = 1 << 30;
        cfg.relay.rate = 1 << 20;
        let mut h = Harness::with_config(cfg);
        let (a, b) = (h.connect(), h.connect_with_queue(64));
        h.register(a, "alice");
        h.register(b, "bob");
        relay(&mut h, a, "bob");
        relay(&mut h, b, "alice");
        h.frames(a);
        let frame = frames::encode("bob", &[0; MAX_RELAY_PAYLOAD]);
        let mut sent = 0;
        for n in 0..40 {
            h.at(ms(1000 * n));
            if h.send_binary(a, &frame) == Relayed::Dropped {
                break;
            }
            sent += 1;
        }
        assert_eq!(
            sent,
            (1 << 21) / (MAX_RELAY_PAYLOAD + 6),
            "2 MiB waiting at most"
        );
        let why = closed_with(&h.frames(a), "bob", "relay-limit");
        assert!(
            why.contains("does not read its relay frames fast enough"),
            "{why}"
        );
        assert_eq!(h.killed(b), None, "bob keeps his connection");
        // What bob reads gives the backlog back.
        assert_eq!(h.binary(b).len(), sent);
        relay(&mut h, a, "bob");
        relay(&mut h, b, "alice");
        h.frames(a);
        assert_eq!(h.send_binary(a, &frame), Relayed::Forwarded);
    }

    #[test]
    fn a_full_outbound_queue_cuts_the_receiver_off_and_ends_its_pairs() {
        let (mut h, a, b) = paired(); // 8-frame queues
        for n in 0..9u8 {
            h.at(ms(1000 * n as u64));
            h.send_binary(a, &frames::encode("bob", &[n; 1000]));
        }
        assert_eq!(h.killed(b), Some(4003));
        let why = closed_with(&h.frames(a), "bob", "peer-gone");
        assert!(why.contains("lost its connection"), "{why}");
    }
}
