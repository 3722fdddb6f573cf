//! A simulated network for the engine: N engines, a broker behind the
//! [`Broker`] trait (the broker's own hub in `server/tests/sim.rs`), and
//! fake RTCPeerConnections and data channels, all on simulated time.
//!
//! What the fakes model, because the engine's decisions depend on it:
//!
//! - signaling states as the browser has them: `setLocalDescription()`
//!   makes an offer when stable and an answer after a remote offer; a remote
//!   offer while an own offer is pending rolls it back; an answer in the
//!   wrong state fails;
//! - ICE: a remote candidate added before any remote description fails, one
//!   from another RTCPeerConnection (an older session) is refused; the pair
//!   connects once both sides are stable with each other's descriptions and
//!   at least one side added a candidate of the other;
//! - data channels: the negotiated channel opens on both sides when the pair
//!   connects; another channel is announced to the remote and opens on each
//!   side after its own delay, so the remote's first frames may overtake the
//!   local open event; frames keep their order per channel; `bufferedAmount`
//!   drains at a set rate and fires `bufferedamountlow`; closing sends what
//!   is buffered first.
//!
//! - a lost path (`break_path`, a network change): frames wait (SCTP keeps
//!   them) while ICE reports `disconnected`, then `failed`; an ICE restart
//!   (a new offer after `RestartIce`, answered) brings the path back and
//!   the held frames arrive in order — unless the break is permanent;
//! - a half-open broker socket (`stall_broker`): frames both ways vanish
//!   and no close event comes;
//! - broker URLs nothing answers at (`unreachable`): a dial there is
//!   refused (the socket closes) or hangs (it never opens); a broker
//!   behind several URLs routes each dial by its URL (`Broker::connect_to`).
//!
//! - media: transceivers with mids, as JSEP has them: `addTrack` reuses a
//!   transceiver that never sent (one the remote's offer made) or makes a
//!   new one; an offer gives mids to those without; a rolled-back offer
//!   takes its mids back; a remote offer's m-line takes an unpaired
//!   `addTrack` transceiver of its kind; `ontrack` fires (before the
//!   description's promise settles) when a remote m-line starts sending;
//!   `negotiationneeded` fires when stable while a sender's state is not
//!   yet negotiated. The fake SDP lists the m-lines.
//!
//! Every delay can be dialled in (`latency`, `jitter`, `bandwidth`), and a
//! peer can be taken off the network (`set_online`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use crate::core::engine::{Action, ChanId, ConnId, Engine, Event, Millis, Rng, TrackId, Transmit};

/// The broker, as the simulation needs it.
pub trait Broker {
    /// A client connects; returns its link id.
    fn connect(&mut self, now: Millis) -> u64;
    /// A client connects to `url` (for a broker that models several,
    /// e.g. two brokers of one network); by default, as [`Self::connect`].
    fn connect_to(&mut self, url: &str, now: Millis) -> u64 {
        let _ = url;
        self.connect(now)
    }
    /// A text frame from a client.
    fn receive(&mut self, link: u64, text: &str, now: Millis);
    /// A client's socket ended (`clean`: it closed with 1000).
    fn disconnect(&mut self, link: u64, clean: bool, now: Millis);
    /// Frames for `link`, in order, and the close code if the broker
    /// closed it.
    fn poll(&mut self, link: u64) -> (Vec<BrokerFrame>, Option<u16>);
    /// Time passed.
    fn tick(&mut self, now: Millis);
    /// A binary frame (relayed bytes) from a client.
    fn receive_binary(&mut self, link: u64, bytes: &[u8], now: Millis);
}

/// How a dial to an unreachable broker URL fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The connection is refused: the socket closes (1006) at once.
    Refused,
    /// Packets are dropped: the socket neither opens nor closes.
    Silent,
}

/// A WebSocket frame from the broker.
#[derive(Debug, Clone)]
pub enum BrokerFrame {
    Text(String),
    Binary(Vec<u8>),
}

/// What happens at a scheduled time.
#[derive(Debug)]
enum Delivery {
    BrokerOpen {
        peer: usize,
        generation: u64,
    },
    BrokerText {
        peer: usize,
        generation: u64,
        text: String,
    },
    BrokerClosed {
        peer: usize,
        generation: u64,
        code: u16,
    },
    ToBroker {
        link: u64,
        text: String,
    },
    ToBrokerBinary {
        link: u64,
        bytes: Vec<u8>,
    },
    BrokerBinary {
        peer: usize,
        generation: u64,
        bytes: Vec<u8>,
    },
    BrokerGone {
        link: u64,
        clean: bool,
    },
    LocalDescription {
        pc: usize,
    },
    RemoteDescription {
        pc: usize,
        sdp_type: String,
        sdp: String,
    },
    AddCandidate {
        pc: usize,
        candidate: String,
    },
    LocalCandidate {
        pc: usize,
        n: u32,
    },
    NegotiationNeeded {
        pc: usize,
    },
    Connect {
        a: usize,
        b: usize,
    },
    DcOpen {
        dc: usize,
    },
    DcAnnounce {
        dc: usize,
    },
    DcFrame {
        dc: usize,
        bytes: Vec<u8>,
    },
    DcDrained {
        dc: usize,
        n: usize,
    },
    DcClosed {
        dc: usize,
    },
    /// ICE's `connectionState` for `pc`, if its path epoch is still `epoch`.
    PcState {
        pc: usize,
        state: &'static str,
        epoch: u32,
    },
}

struct Scheduled {
    at: Millis,
    seq: u64,
    what: Delivery,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest first (BinaryHeap is a max-heap), then in schedule order.
        other.at.total_cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
}

struct Pc {
    peer: usize,
    conn: ConnId,
    sig: Sig,
    /// The pc whose description this one applied.
    remote_pc: Option<usize>,
    pending_local: bool,
    candidates_in: u32,
    connected: bool,
    closed: bool,
    dcs: Vec<usize>,
    /// The ICE path is gone: frames wait in `held`.
    path_down: bool,
    /// Counts breaks and repairs (stale state reports are dropped).
    epoch: u32,
    /// `restartIce()` was called: the next offer restarts ICE.
    restart: bool,
    /// The offer out is a restart.
    restart_out: bool,
    txs: Vec<Tx>,
    next_mid: u32,
    /// The mids of the remote offer being answered.
    offered: Vec<String>,
    /// The sending state of each mid in the local offer out.
    my_offer: Vec<(String, bool)>,
}

/// A fake RTCRtpTransceiver.
#[derive(Debug, Clone)]
struct Tx {
    mid: Option<String>,
    kind: String,
    /// The local track it sends, with its stream ids.
    track: Option<TrackId>,
    streams: Vec<String>,
    /// Made by `addTrack` (not by a remote offer).
    from_add: bool,
    /// Its mid came from the local offer now pending (a rollback takes it).
    mid_from_offer: bool,
    /// Sending as last negotiated.
    negotiated_send: bool,
    /// Has been negotiated to send once (then `addTrack` does not reuse it).
    ever_sent: bool,
    /// The remote sends on it (`ontrack` fired).
    recv: bool,
}

/// One m-line of a fake SDP: `mid,kind,sends,stream stream…`.
struct MLine {
    mid: String,
    kind: String,
    sends: bool,
    streams: Vec<String>,
}

fn parse_mlines(sdp: &str) -> Vec<MLine> {
    sdp.split('|')
        .skip(1)
        .filter_map(|m| {
            let mut f = m.split(',');
            let mid = f.next()?.to_string();
            let kind = f.next()?.to_string();
            let sends = f.next()? == "s";
            let streams = f
                .next()
                .unwrap_or("")
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            Some(MLine {
                mid,
                kind,
                sends,
                streams,
            })
        })
        .collect()
}

impl Pc {
    /// A sender's state that no description exchange has carried yet.
    fn media_pending(&self) -> bool {
        self.txs.iter().any(|t| match (&t.mid, t.track) {
            (None, Some(_)) => true,
            (Some(_), Some(_)) => !t.negotiated_send,
            (Some(_), None) => t.negotiated_send,
            (None, None) => false,
        })
    }

    /// The m-lines this pc describes: those of `only` (an answer), or all
    /// with a mid.
    fn describe(&self, pc: usize, only: Option<&[String]>) -> String {
        let mut sdp = format!("pc:{pc}");
        for t in &self.txs {
            let Some(mid) = &t.mid else { continue };
            if only.is_some_and(|o| !o.contains(mid)) {
                continue;
            }
            let sends = if t.track.is_some() { "s" } else { "r" };
            sdp.push_str(&format!(
                "|{mid},{},{sends},{}",
                t.kind,
                t.streams.join(" ")
            ));
        }
        sdp
    }

    /// The mid of each sending transceiver.
    fn sender_mids(&self) -> Vec<(TrackId, Option<String>)> {
        self.txs
            .iter()
            .filter_map(|t| t.track.map(|tr| (tr, t.mid.clone())))
            .collect()
    }

    /// An exchange is complete: each mid's sending state, as described.
    fn negotiated(&mut self, states: &[(String, bool)]) {
        for t in &mut self.txs {
            t.mid_from_offer = false;
            if let Some((_, sends)) = states.iter().find(|(m, _)| t.mid.as_ref() == Some(m)) {
                t.negotiated_send = *sends;
                t.ever_sent |= *sends;
            }
        }
    }

    /// Each described mid's sending state now.
    fn states(&self, only: Option<&[String]>) -> Vec<(String, bool)> {
        self.txs
            .iter()
            .filter_map(|t| Some((t.mid.clone()?, t.track.is_some())))
            .filter(|(m, _)| only.is_none_or(|o| o.contains(m)))
            .collect()
    }
}

struct Dc {
    pc: usize,
    peer: usize,
    chan: Option<ChanId>,
    label: String,
    main: bool,
    open: bool,
    closed: bool,
    closing: bool,
    remote: Option<usize>,
    buffered: usize,
    low: usize,
    /// When the last frame sent on it arrives (frames keep their order).
    last_arrival: Millis,
    /// What it sends vanishes (see `Sim::lose_incoming`).
    mute: bool,
    /// The first message it sends vanishes (see `Sim::lose_first_incoming`).
    drop_first: bool,
}

/// One simulated browser tab with its engine.
pub struct SimPeer {
    pub engine: Engine,
    /// Every event the engine produced, in order.
    pub events: Vec<Event>,
    pub online: bool,
    link: Option<u64>,
    generation: u64,
    pcs: BTreeMap<ConnId, usize>,
    dcs: BTreeMap<ChanId, usize>,
}

/// The simulated network.
pub struct Sim<B: Broker> {
    pub now: Millis,
    pub broker: B,
    pub peers: Vec<SimPeer>,
    /// One-way delay of every hop, in ms.
    pub latency: Millis,
    /// Extra random delay per message, in ms (never reorders one socket's
    /// or one channel's frames).
    pub jitter: Millis,
    /// Data channel drain rate, bytes per ms.
    pub bandwidth: f64,
    /// Extra random delay before each local ICE candidate, in ms.
    pub gathering: Millis,
    rng: Rng,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    pcs: Vec<Pc>,
    dcs: Vec<Dc>,
    links: BTreeMap<u64, (usize, u64)>,
    /// When the last frame on each broker link arrives, per direction.
    link_arrival: BTreeMap<(u64, bool), Millis>,
    frozen: Vec<usize>,
    /// Frames sent while their path was down, in order: (sending dc, bytes).
    held: Vec<(usize, Vec<u8>)>,
    /// Peers whose broken path no restart repairs.
    unrepairable: Vec<usize>,
    /// Broker links that silently drop everything.
    stalled: Vec<u64>,
    /// ICE restarts each peer made (`RestartIce` actions).
    pub restarts: Vec<u32>,
    /// No WebRTC path exists between any two peers (UDP blocked, no TURN).
    pub no_webrtc: bool,
    /// Broker URLs nothing answers at, and how a dial there fails.
    pub unreachable: BTreeMap<String, Unreachable>,
    /// Every broker dial, in order: (peer, URL).
    pub dials: Vec<(usize, String)>,
    /// Peers whose next incoming data channel loses everything it sends
    /// while the other way works (what `reopen_dialer` is for).
    pub lose_incoming: Vec<usize>,
    /// Peers whose next incoming data channel loses the first message it
    /// sends, and only that one: what Chromium can do under load
    /// (tests/e2e/streams.test.mjs).
    pub lose_first_incoming: Vec<usize>,
}

impl<B: Broker> Sim<B> {
    pub fn new(broker: B, seed: u64) -> Self {
        Self {
            now: 0.0,
            broker,
            peers: Vec::new(),
            latency: 5.0,
            jitter: 0.0,
            bandwidth: 20_000.0,
            gathering: 0.0,
            rng: Rng::new(seed),
            seq: 0,
            queue: BinaryHeap::new(),
            pcs: Vec::new(),
            dcs: Vec::new(),
            links: BTreeMap::new(),
            link_arrival: BTreeMap::new(),
            frozen: Vec::new(),
            held: Vec::new(),
            unrepairable: Vec::new(),
            stalled: Vec::new(),
            restarts: Vec::new(),
            no_webrtc: false,
            unreachable: BTreeMap::new(),
            dials: Vec::new(),
            lose_incoming: Vec::new(),
            lose_first_incoming: Vec::new(),
        }
    }

    /// Adds a peer and starts it; returns its index.
    pub fn add(&mut self, engine: Engine) -> usize {
        let i = self.peers.len();
        self.peers.push(SimPeer {
            engine,
            events: Vec::new(),
            online: true,
            link: None,
            generation: 0,
            pcs: BTreeMap::new(),
            dcs: BTreeMap::new(),
        });
        self.restarts.push(0);
        let now = self.now;
        self.with(i, |e| {
            e.start(now);
        });
        i
    }

    /// Runs `f` on peer `i`'s engine, then carries out what it produced.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Engine) -> R) -> R {
        let r = f(&mut self.peers[i].engine);
        self.drain(i);
        r
    }

    /// Peer `i`'s page hangs (a frozen tab): its JavaScript runs no more —
    /// no timers, no broker frames read — and what its data channels would
    /// send is lost, what they are sent is never read. Its browser keeps
    /// the sockets and the ICE path up.
    pub fn freeze(&mut self, i: usize) {
        self.frozen.push(i);
    }

    /// Peer `i`'s network changes: the ICE paths of its connections break
    /// (ICE says `disconnected` after 2.5 s, `failed` after 15 s). An ICE
    /// restart repairs them, unless `repairable` is false.
    pub fn break_path(&mut self, i: usize, repairable: bool) {
        if !repairable {
            self.unrepairable.push(i);
        }
        let pcs: Vec<usize> = self.peers[i].pcs.values().copied().collect();
        for pc in pcs {
            for p in [Some(pc), self.pcs[pc].remote_pc].into_iter().flatten() {
                if self.pcs[p].closed || !self.pcs[p].connected {
                    continue;
                }
                self.pcs[p].path_down = true;
                self.pcs[p].epoch += 1;
                let epoch = self.pcs[p].epoch;
                self.schedule(
                    2500.0,
                    Delivery::PcState {
                        pc: p,
                        state: "disconnected",
                        epoch,
                    },
                );
                self.schedule(
                    15_000.0,
                    Delivery::PcState {
                        pc: p,
                        state: "failed",
                        epoch,
                    },
                );
            }
        }
    }

    /// Peer `i`'s broker socket goes half-open: what either side sends on
    /// it is lost, and neither hears a close.
    pub fn stall_broker(&mut self, i: usize) {
        if let Some(link) = self.peers[i].link {
            self.stalled.push(link);
        }
    }

    /// Repairs the path of `pc` and its remote after a restart.
    fn repair(&mut self, pc: usize) {
        let Some(r) = self.pcs[pc].remote_pc else {
            return;
        };
        let peers = [self.pcs[pc].peer, self.pcs[r].peer];
        if peers
            .iter()
            .any(|p| self.unrepairable.contains(p) || self.frozen.contains(p))
        {
            return;
        }
        let mut repaired = Vec::new();
        for p in [pc, r] {
            if self.pcs[p].path_down && !self.pcs[p].closed {
                self.pcs[p].path_down = false;
                self.pcs[p].epoch += 1;
                let epoch = self.pcs[p].epoch;
                self.schedule(
                    self.latency * 2.0,
                    Delivery::PcState {
                        pc: p,
                        state: "connected",
                        epoch,
                    },
                );
                repaired.push(p);
            }
        }
        // What waited goes out in order.
        let held = std::mem::take(&mut self.held);
        for (dc, bytes) in held {
            if repaired.contains(&self.dcs[dc].pc) {
                self.dcs[dc].buffered -= bytes.len();
                self.dc_send(dc, bytes);
            } else {
                self.held.push((dc, bytes));
            }
        }
    }

    /// Takes peer `i` off the network (its broker socket drops) or back on.
    pub fn set_online(&mut self, i: usize, online: bool) {
        self.peers[i].online = online;
        if !online {
            if let Some(link) = self.peers[i].link.take() {
                let generation = self.peers[i].generation;
                self.links.remove(&link);
                self.broker.disconnect(link, false, self.now);
                self.pump_broker();
                self.schedule(
                    self.latency,
                    Delivery::BrokerClosed {
                        peer: i,
                        generation,
                        code: 1006,
                    },
                );
            }
        }
    }

    fn delay(&mut self) -> Millis {
        self.latency + self.jitter * self.rng.unit()
    }

    fn schedule(&mut self, after: Millis, what: Delivery) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + after,
            seq: self.seq,
            what,
        });
    }

    /// Schedules at an absolute time no earlier than `floor` (ordering).
    fn schedule_ordered(&mut self, floor: &mut Millis, what: Delivery) {
        let at = (self.now + self.delay()).max(*floor);
        *floor = at;
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            what,
        });
    }

    /// Runs until `until` (simulated ms) or until nothing is left to do.
    pub fn run_until(&mut self, until: Millis) {
        loop {
            let next_event = self.queue.peek().map(|s| s.at);
            let next_timer = self
                .peers
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.frozen.contains(i))
                .filter_map(|(_, p)| p.engine.poll_timeout())
                .reduce(f64::min);
            let next = match (next_event, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => f64::INFINITY,
            };
            // The broker sweeps its deadlines at least every 100 ms.
            let next = next.min(self.now + 100.0);
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.broker.tick(self.now);
            self.pump_broker();
            if next_event.is_some_and(|t| t <= self.now) {
                let s = self.queue.pop().expect("peeked");
                self.deliver(s.what);
            } else {
                for i in 0..self.peers.len() {
                    if !self.frozen.contains(&i)
                        && self.peers[i]
                            .engine
                            .poll_timeout()
                            .is_some_and(|t| t <= self.now)
                    {
                        let now = self.now;
                        self.with(i, |e| e.handle_timeout(now));
                    }
                }
            }
        }
        self.now = self.now.max(until);
        self.broker.tick(self.now);
        self.pump_broker();
    }

    /// Runs for `ms` more simulated milliseconds.
    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now + ms;
        self.run_until(until);
    }

    /// Runs until `done` holds (checked after each step) or `ms` pass.
    pub fn run_while(&mut self, ms: Millis, mut done: impl FnMut(&Self) -> bool) -> bool {
        let until = self.now + ms;
        while self.now < until {
            if done(self) {
                return true;
            }
            let step = (self.now + 1.0).min(until);
            self.run_until(step);
        }
        done(self)
    }

    // ---- carrying out what an engine produced --------------------------

    fn drain(&mut self, i: usize) {
        loop {
            let mut any = false;
            // The end of the page's turn: small messages go out batched.
            if self.peers[i].engine.has_deferred() {
                let now = self.now;
                self.peers[i].engine.pump_deferred(now);
            }
            while let Some(t) = self.peers[i].engine.poll_transmit() {
                any = true;
                self.transmit(i, t);
            }
            while let Some(a) = self.peers[i].engine.poll_action() {
                any = true;
                self.act(i, a);
            }
            while let Some(e) = self.peers[i].engine.poll_event() {
                any = true;
                self.peers[i].events.push(e);
            }
            // What the channels hold now, as a browser reports it.
            let chans: Vec<(ChanId, usize)> =
                self.peers[i].dcs.iter().map(|(c, d)| (*c, *d)).collect();
            for (chan, dc) in chans {
                let buffered = self.dcs[dc].buffered;
                if buffered < self.peers[i].engine.config().window.high
                    && self.peers[i].engine.queued_bytes(chan) > 0
                {
                    let now = self.now;
                    let before = self.peers[i].engine.queued_bytes(chan);
                    self.peers[i].engine.handle_buffered(chan, buffered, now);
                    if self.peers[i].engine.queued_bytes(chan) != before {
                        any = true;
                    }
                }
            }
            if !any {
                break;
            }
        }
    }

    fn transmit(&mut self, i: usize, t: Transmit) {
        match t {
            Transmit::Broker(text) => {
                if let Some(link) = self.peers[i].link.filter(|l| !self.stalled.contains(l)) {
                    let mut floor = self.link_arrival.get(&(link, true)).copied().unwrap_or(0.0);
                    self.schedule_ordered(&mut floor, Delivery::ToBroker { link, text });
                    self.link_arrival.insert((link, true), floor);
                }
            }
            Transmit::BrokerBinary(bytes) => {
                if let Some(link) = self.peers[i].link.filter(|l| !self.stalled.contains(l)) {
                    let mut floor = self.link_arrival.get(&(link, true)).copied().unwrap_or(0.0);
                    self.schedule_ordered(&mut floor, Delivery::ToBrokerBinary { link, bytes });
                    self.link_arrival.insert((link, true), floor);
                }
            }
            Transmit::HubSignal { .. } => {}
            Transmit::Frame { chan, bytes } => {
                let Some(&dc) = self.peers[i].dcs.get(&chan) else {
                    return;
                };
                self.dc_send(dc, bytes);
            }
        }
    }

    fn dc_send(&mut self, dc: usize, bytes: Vec<u8>) {
        let d = &self.dcs[dc];
        if self.frozen.contains(&d.peer)
            || d.remote
                .is_some_and(|r| self.frozen.contains(&self.dcs[r].peer))
        {
            return;
        }
        if !d.open || d.closed || d.closing || d.mute {
            return;
        }
        if d.drop_first {
            self.dcs[dc].drop_first = false;
            return;
        }
        let Some(remote) = d.remote else {
            return;
        };
        let n = bytes.len();
        let pc = d.pc;
        self.dcs[dc].buffered += n;
        if self.pcs[pc].path_down {
            self.held.push((dc, bytes));
            return;
        }
        // Drains at `bandwidth`; arrives after the latency.
        let drain = n as f64 / self.bandwidth;
        let mut floor = self.dcs[dc].last_arrival.max(self.now) + drain;
        let arrival_floor = floor;
        self.schedule_ordered(&mut floor, Delivery::DcFrame { dc: remote, bytes });
        self.dcs[dc].last_arrival = floor;
        let at = arrival_floor - self.now;
        self.schedule(at.max(0.0), Delivery::DcDrained { dc, n });
    }

    fn act(&mut self, i: usize, a: Action) {
        match a {
            Action::DialBroker { url, generation } => {
                self.peers[i].generation = generation;
                self.dials.push((i, url.clone()));
                let unreachable = self.unreachable.get(&url).copied();
                if unreachable == Some(Unreachable::Silent) {
                    // Nothing comes back; the engine gives up on its own.
                } else if self.peers[i].online && unreachable.is_none() {
                    let link = self.broker.connect_to(&url, self.now);
                    self.peers[i].link = Some(link);
                    self.links.insert(link, (i, generation));
                    self.schedule(
                        self.latency,
                        Delivery::BrokerOpen {
                            peer: i,
                            generation,
                        },
                    );
                } else {
                    self.schedule(
                        self.latency,
                        Delivery::BrokerClosed {
                            peer: i,
                            generation,
                            code: 1006,
                        },
                    );
                }
            }
            Action::CloseBroker { code, .. } => {
                if let Some(link) = self.peers[i].link.take() {
                    let generation = self.peers[i].generation;
                    let mut floor = self.link_arrival.get(&(link, true)).copied().unwrap_or(0.0);
                    self.schedule_ordered(
                        &mut floor,
                        Delivery::BrokerGone {
                            link,
                            clean: code == 1000,
                        },
                    );
                    self.schedule(
                        self.latency * 2.0,
                        Delivery::BrokerClosed {
                            peer: i,
                            generation,
                            code,
                        },
                    );
                }
            }
            Action::AttachHub | Action::DetachHub => {}
            Action::RestartIce { conn } => {
                self.restarts[i] += 1;
                if let Some(&pc) = self.peers[i].pcs.get(&conn) {
                    self.pcs[pc].restart = true;
                }
            }
            Action::CreateConnection { conn, chan, .. } => {
                let pc = self.pcs.len();
                self.pcs.push(Pc {
                    peer: i,
                    conn,
                    sig: Sig::Stable,
                    remote_pc: None,
                    pending_local: false,
                    candidates_in: 0,
                    connected: false,
                    closed: false,
                    dcs: Vec::new(),
                    path_down: false,
                    epoch: 0,
                    restart: false,
                    restart_out: false,
                    txs: Vec::new(),
                    next_mid: 0,
                    offered: Vec::new(),
                    my_offer: Vec::new(),
                });
                self.peers[i].pcs.insert(conn, pc);
                let dc = self.new_dc(pc, i, Some(chan), "peerwire", true, 0);
                self.peers[i].dcs.insert(chan, dc);
                self.schedule(0.5, Delivery::NegotiationNeeded { pc });
            }
            Action::SetLocalDescription { conn } => {
                let Some(&pc) = self.peers[i].pcs.get(&conn) else {
                    return;
                };
                self.schedule(1.0, Delivery::LocalDescription { pc });
            }
            Action::SetRemoteDescription {
                conn,
                sdp_type,
                sdp,
            } => {
                let Some(&pc) = self.peers[i].pcs.get(&conn) else {
                    return;
                };
                self.schedule(1.0, Delivery::RemoteDescription { pc, sdp_type, sdp });
            }
            Action::AddCandidate { conn, candidate } => {
                let Some(&pc) = self.peers[i].pcs.get(&conn) else {
                    return;
                };
                self.schedule(0.5, Delivery::AddCandidate { pc, candidate });
            }
            Action::CreateChannel {
                conn,
                chan,
                label,
                low_water,
                ..
            } => {
                let Some(&pc) = self.peers[i].pcs.get(&conn) else {
                    return;
                };
                let dc = self.new_dc(pc, i, Some(chan), &label, false, low_water);
                // A socket opened again: its first channel closes unheard
                // on this side (the driver drops its handlers first).
                if let Some(old) = self.peers[i].dcs.insert(chan, dc) {
                    self.dcs[old].chan = None;
                    self.close_dc(old);
                }
                if self.pcs[pc].connected {
                    let after = self.delay();
                    self.schedule(after, Delivery::DcAnnounce { dc });
                }
            }
            Action::CloseChannel { chan } => {
                if let Some(&dc) = self.peers[i].dcs.get(&chan) {
                    self.close_dc(dc);
                }
            }
            Action::AddTrack {
                conn,
                track,
                kind,
                streams,
            } => {
                let Some(&pc) = self.peers[i].pcs.get(&conn) else {
                    return;
                };
                let p = &mut self.pcs[pc];
                match p
                    .txs
                    .iter_mut()
                    .find(|t| t.track.is_none() && !t.ever_sent && t.kind == kind && !t.from_add)
                {
                    Some(t) => {
                        t.track = Some(track);
                        t.streams = streams;
                    }
                    None => p.txs.push(Tx {
                        mid: None,
                        kind,
                        track: Some(track),
                        streams,
                        from_add: true,
                        mid_from_offer: false,
                        negotiated_send: false,
                        ever_sent: false,
                        recv: false,
                    }),
                }
                self.schedule(0.5, Delivery::NegotiationNeeded { pc });
            }
            Action::RemoveTrack { conn, track } => {
                let Some(&pc) = self.peers[i].pcs.get(&conn) else {
                    return;
                };
                for t in &mut self.pcs[pc].txs {
                    if t.track == Some(track) {
                        t.track = None;
                    }
                }
                self.schedule(0.5, Delivery::NegotiationNeeded { pc });
            }
            Action::ReleaseConnection { conn } => {
                if let Some(pc) = self.peers[i].pcs.remove(&conn) {
                    self.pcs[pc].closed = true;
                    let dcs = self.pcs[pc].dcs.clone();
                    for dc in dcs {
                        if let Some(chan) = self.dcs[dc].chan {
                            self.peers[i].dcs.remove(&chan);
                        }
                        self.dcs[dc].chan = None;
                        self.close_dc(dc);
                    }
                }
            }
        }
    }

    fn new_dc(
        &mut self,
        pc: usize,
        peer: usize,
        chan: Option<ChanId>,
        label: &str,
        main: bool,
        low: usize,
    ) -> usize {
        let dc = self.dcs.len();
        self.dcs.push(Dc {
            pc,
            peer,
            chan,
            label: label.to_string(),
            main,
            open: false,
            closed: false,
            closing: false,
            remote: None,
            buffered: 0,
            low,
            last_arrival: 0.0,
            mute: false,
            drop_first: false,
        });
        self.pcs[pc].dcs.push(dc);
        dc
    }

    fn close_dc(&mut self, dc: usize) {
        if self.dcs[dc].closed || self.dcs[dc].closing {
            return;
        }
        self.dcs[dc].closing = true;
        // After what is buffered, both ends see the close.
        let mut floor = self.dcs[dc].last_arrival.max(self.now);
        self.schedule_ordered(&mut floor, Delivery::DcClosed { dc });
        // Over a broken path the remote hears nothing.
        let path_down = self.pcs[self.dcs[dc].pc].path_down;
        if let Some(r) = self.dcs[dc].remote.filter(|_| !path_down) {
            let mut floor2 = floor;
            self.schedule_ordered(&mut floor2, Delivery::DcClosed { dc: r });
        }
    }

    // ---- deliveries -----------------------------------------------------

    fn deliver(&mut self, what: Delivery) {
        let now = self.now;
        // A hung page reads nothing from the broker.
        if let Delivery::BrokerText { peer, .. } | Delivery::BrokerBinary { peer, .. } = &what {
            if self.frozen.contains(peer) {
                return;
            }
        }
        match what {
            Delivery::BrokerOpen { peer, generation } => {
                self.with(peer, |e| e.handle_broker_open(generation, now));
            }
            Delivery::BrokerText {
                peer,
                generation,
                text,
            } => {
                self.with(peer, |e| e.handle_broker_text(generation, &text, now));
            }
            Delivery::BrokerClosed {
                peer,
                generation,
                code,
            } => {
                if self.peers[peer].generation == generation
                    && self.peers[peer]
                        .link
                        .is_some_and(|l| self.links.get(&l).map(|x| x.1) == Some(generation))
                {
                    let link = self.peers[peer].link.take();
                    if let Some(l) = link {
                        self.links.remove(&l);
                    }
                }
                self.with(peer, |e| e.handle_broker_closed(generation, code, "", now));
            }
            Delivery::ToBroker { link, text } => {
                if self.links.contains_key(&link) {
                    self.broker.receive(link, &text, now);
                    self.pump_broker();
                }
            }
            Delivery::ToBrokerBinary { link, bytes } => {
                if self.links.contains_key(&link) {
                    self.broker.receive_binary(link, &bytes, now);
                    self.pump_broker();
                }
            }
            Delivery::BrokerBinary {
                peer,
                generation,
                bytes,
            } => {
                self.with(peer, |e| e.handle_broker_binary(generation, &bytes, now));
            }
            Delivery::BrokerGone { link, clean } => {
                self.links.remove(&link);
                self.broker.disconnect(link, clean, now);
                self.pump_broker();
            }
            Delivery::NegotiationNeeded { pc } => {
                let p = &self.pcs[pc];
                if p.closed || p.sig != Sig::Stable || (p.remote_pc.is_some() && !p.media_pending())
                {
                    return;
                }
                let (peer, conn) = (p.peer, p.conn);
                self.with(peer, |e| e.handle_negotiation_needed(conn, now));
            }
            Delivery::LocalDescription { pc } => {
                if self.pcs[pc].closed {
                    return;
                }
                let (peer, conn) = (self.pcs[pc].peer, self.pcs[pc].conn);
                let (kind, sdp) = match self.pcs[pc].sig {
                    Sig::Stable => {
                        self.pcs[pc].sig = Sig::HaveLocalOffer;
                        self.pcs[pc].pending_local = true;
                        self.pcs[pc].restart_out = std::mem::take(&mut self.pcs[pc].restart);
                        let p = &mut self.pcs[pc];
                        for t in &mut p.txs {
                            if t.mid.is_none() {
                                t.mid = Some(format!("m{pc}x{}", p.next_mid));
                                t.mid_from_offer = true;
                                p.next_mid += 1;
                            }
                        }
                        self.pcs[pc].my_offer = self.pcs[pc].states(None);
                        ("offer", self.pcs[pc].describe(pc, None))
                    }
                    Sig::HaveRemoteOffer => {
                        self.pcs[pc].sig = Sig::Stable;
                        let offered = std::mem::take(&mut self.pcs[pc].offered);
                        let sdp = self.pcs[pc].describe(pc, Some(&offered));
                        let states = self.pcs[pc].states(Some(&offered));
                        self.pcs[pc].negotiated(&states);
                        if self.pcs[pc].media_pending() {
                            self.schedule(0.5, Delivery::NegotiationNeeded { pc });
                        }
                        ("answer", sdp)
                    }
                    Sig::HaveLocalOffer => ("offer", self.pcs[pc].describe(pc, None)),
                };
                let mids = self.pcs[pc].sender_mids();
                self.with(peer, |e| {
                    e.handle_sender_mids(conn, mids);
                    e.handle_local_description(conn, Ok((kind.to_string(), sdp)), now)
                });
                for n in 0..2 {
                    let after = 1.0 + n as f64 + self.gathering * self.rng.unit();
                    self.schedule(after, Delivery::LocalCandidate { pc, n });
                }
                self.check_connect(pc);
            }
            Delivery::LocalCandidate { pc, n } => {
                if self.pcs[pc].closed {
                    return;
                }
                let (peer, conn) = (self.pcs[pc].peer, self.pcs[pc].conn);
                let json = format!(
                    r#"{{"candidate":"candidate:{pc}:{n}","sdpMid":"0","sdpMLineIndex":0}}"#
                );
                self.with(peer, |e| e.handle_local_candidate(conn, &json));
            }
            Delivery::RemoteDescription { pc, sdp_type, sdp } => {
                if self.pcs[pc].closed {
                    return;
                }
                let (peer, conn) = (self.pcs[pc].peer, self.pcs[pc].conn);
                let from: Option<usize> = sdp
                    .strip_prefix("pc:")
                    .and_then(|s| s.split('|').next()?.parse().ok())
                    .filter(|p| *p < self.pcs.len());
                let lines = parse_mlines(&sdp);
                let result = match (sdp_type.as_str(), self.pcs[pc].sig) {
                    ("offer", Sig::Stable | Sig::HaveLocalOffer) => {
                        if self.pcs[pc].sig == Sig::HaveLocalOffer {
                            // Implicit rollback: the offer's mids go back.
                            for t in &mut self.pcs[pc].txs {
                                if std::mem::take(&mut t.mid_from_offer) {
                                    t.mid = None;
                                }
                            }
                        }
                        self.pcs[pc].sig = Sig::HaveRemoteOffer;
                        self.pcs[pc].pending_local = false;
                        self.pcs[pc].remote_pc = from;
                        self.pcs[pc].offered = lines.iter().map(|l| l.mid.clone()).collect();
                        self.apply_mlines(pc, &lines, now);
                        Ok(())
                    }
                    ("answer", Sig::HaveLocalOffer) => {
                        self.pcs[pc].sig = Sig::Stable;
                        self.pcs[pc].pending_local = false;
                        self.pcs[pc].remote_pc = from;
                        if std::mem::take(&mut self.pcs[pc].restart_out) {
                            self.repair(pc);
                        }
                        self.apply_mlines(pc, &lines, now);
                        let states = std::mem::take(&mut self.pcs[pc].my_offer);
                        self.pcs[pc].negotiated(&states);
                        if self.pcs[pc].media_pending() {
                            self.schedule(0.5, Delivery::NegotiationNeeded { pc });
                        }
                        Ok(())
                    }
                    (t, s) => Err(format!(
                        "Failed to set remote {t} sdp: Called in wrong state: {s:?}"
                    )),
                };
                self.with(peer, |e| e.handle_remote_description(conn, result, now));
                self.check_connect(pc);
            }
            Delivery::AddCandidate { pc, candidate } => {
                if self.pcs[pc].closed {
                    return;
                }
                let (peer, conn) = (self.pcs[pc].peer, self.pcs[pc].conn);
                let of: Option<usize> = candidate
                    .split("candidate:")
                    .nth(2)
                    .or_else(|| candidate.split("candidate:").nth(1))
                    .and_then(|s| s.split(':').next())
                    .and_then(|s| s.parse().ok());
                let result = match self.pcs[pc].remote_pc {
                    None => Err("The remote description was null".to_string()),
                    Some(r) if Some(r) == of => {
                        self.pcs[pc].candidates_in += 1;
                        Ok(())
                    }
                    Some(_) => Err("Unknown ufrag".to_string()),
                };
                self.with(peer, |e| e.handle_candidate_added(conn, result, now));
                self.check_connect(pc);
            }
            Delivery::Connect { a, b } => {
                if self.pcs[a].closed || self.pcs[b].closed || self.pcs[a].connected {
                    return;
                }
                // A network with no WebRTC path: ICE never connects.
                if self.no_webrtc {
                    return;
                }
                // A frozen tab answers no connectivity checks.
                if self.frozen.contains(&self.pcs[a].peer)
                    || self.frozen.contains(&self.pcs[b].peer)
                {
                    return;
                }
                self.pcs[a].connected = true;
                self.pcs[b].connected = true;
                for pc in [a, b] {
                    let (peer, conn) = (self.pcs[pc].peer, self.pcs[pc].conn);
                    self.with(peer, |e| e.handle_connection_state(conn, "connected", now));
                }
                // Pair the negotiated channels, then announce the others.
                let main_a = self.pcs[a].dcs.iter().copied().find(|d| self.dcs[*d].main);
                let main_b = self.pcs[b].dcs.iter().copied().find(|d| self.dcs[*d].main);
                if let (Some(x), Some(y)) = (main_a, main_b) {
                    self.dcs[x].remote = Some(y);
                    self.dcs[y].remote = Some(x);
                    self.schedule(0.0, Delivery::DcOpen { dc: x });
                    self.schedule(0.0, Delivery::DcOpen { dc: y });
                }
                for pc in [a, b] {
                    let others: Vec<usize> = self.pcs[pc]
                        .dcs
                        .iter()
                        .copied()
                        .filter(|d| !self.dcs[*d].main)
                        .collect();
                    for dc in others {
                        let after = self.delay();
                        self.schedule(after, Delivery::DcAnnounce { dc });
                    }
                }
            }
            Delivery::DcAnnounce { dc } => {
                let pc = self.dcs[dc].pc;
                let Some(rpc) = self.pcs[pc].remote_pc else {
                    return;
                };
                if self.dcs[dc].closed || self.dcs[dc].closing || self.pcs[rpc].closed {
                    return;
                }
                let rpeer = self.pcs[rpc].peer;
                let rconn = self.pcs[rpc].conn;
                let label = self.dcs[dc].label.clone();
                let low = self.dcs[dc].low;
                let remote_dc = self.new_dc(rpc, rpeer, None, &label, false, low);
                self.dcs[remote_dc].mute = take_peer(&mut self.lose_incoming, rpeer);
                self.dcs[remote_dc].drop_first = take_peer(&mut self.lose_first_incoming, rpeer);
                self.dcs[dc].remote = Some(remote_dc);
                self.dcs[remote_dc].remote = Some(dc);
                let chan = self.with(rpeer, |e| e.handle_incoming_channel(rconn, &label, now));
                match chan {
                    Some(chan) => {
                        self.dcs[remote_dc].chan = Some(chan);
                        self.peers[rpeer].dcs.insert(chan, remote_dc);
                        // The remote's side is open as it is announced;
                        // this side hears of it a little later.
                        self.dcs[remote_dc].open = true;
                        self.with(rpeer, |e| e.handle_channel_open(chan, now));
                        let after = self.delay();
                        self.schedule(after, Delivery::DcOpen { dc });
                    }
                    None => {
                        self.dcs[remote_dc].open = true;
                        self.schedule(0.0, Delivery::DcOpen { dc });
                        self.close_dc(remote_dc);
                    }
                }
            }
            Delivery::DcOpen { dc } => {
                let d = &self.dcs[dc];
                if d.closed || d.closing {
                    return;
                }
                self.dcs[dc].open = true;
                let (peer, chan) = (self.dcs[dc].peer, self.dcs[dc].chan);
                if let Some(chan) = chan {
                    self.with(peer, |e| e.handle_channel_open(chan, now));
                }
            }
            Delivery::DcFrame { dc, bytes } => {
                let d = &self.dcs[dc];
                if d.closed {
                    return;
                }
                let (peer, chan) = (d.peer, d.chan);
                if let Some(chan) = chan {
                    self.with(peer, |e| e.handle_channel_message(chan, &bytes, now));
                }
            }
            Delivery::DcDrained { dc, n } => {
                let before = self.dcs[dc].buffered;
                let after = before.saturating_sub(n);
                self.dcs[dc].buffered = after;
                let (peer, chan, low) = (self.dcs[dc].peer, self.dcs[dc].chan, self.dcs[dc].low);
                if before > low && after <= low && !self.dcs[dc].closed {
                    if let Some(chan) = chan {
                        self.with(peer, |e| e.handle_buffered(chan, after, now));
                    }
                }
            }
            Delivery::PcState { pc, state, epoch } => {
                let p = &self.pcs[pc];
                if p.closed || p.epoch != epoch {
                    return;
                }
                let (peer, conn) = (p.peer, p.conn);
                self.with(peer, |e| e.handle_connection_state(conn, state, now));
            }
            Delivery::DcClosed { dc } => {
                if self.dcs[dc].closed {
                    return;
                }
                self.dcs[dc].closed = true;
                self.dcs[dc].open = false;
                let (peer, chan) = (self.dcs[dc].peer, self.dcs[dc].chan);
                if let Some(chan) = chan {
                    self.peers[peer].dcs.remove(&chan);
                    self.with(peer, |e| e.handle_channel_closed(chan, now));
                }
            }
        }
    }

    /// A remote description's m-lines: each pairs with a transceiver (by
    /// mid, else an unpaired `addTrack` one of its kind, else a new one);
    /// `ontrack` fires for each that starts sending.
    fn apply_mlines(&mut self, pc: usize, lines: &[MLine], now: Millis) {
        let (peer, conn) = (self.pcs[pc].peer, self.pcs[pc].conn);
        let mut arrived = Vec::new();
        for l in lines {
            let p = &mut self.pcs[pc];
            let at = p
                .txs
                .iter()
                .position(|t| t.mid.as_deref() == Some(l.mid.as_str()))
                .or_else(|| {
                    p.txs
                        .iter()
                        .position(|t| t.mid.is_none() && t.from_add && t.kind == l.kind)
                });
            let at = match at {
                Some(at) => {
                    p.txs[at].mid = Some(l.mid.clone());
                    at
                }
                None => {
                    p.txs.push(Tx {
                        mid: Some(l.mid.clone()),
                        kind: l.kind.clone(),
                        track: None,
                        streams: Vec::new(),
                        from_add: false,
                        mid_from_offer: false,
                        negotiated_send: false,
                        ever_sent: false,
                        recv: false,
                    });
                    p.txs.len() - 1
                }
            };
            let t = &mut p.txs[at];
            if l.sends && !t.recv {
                arrived.push((l.mid.clone(), l.streams.clone()));
            }
            t.recv = l.sends;
        }
        for (mid, streams) in arrived {
            self.with(peer, |e| e.handle_remote_track(conn, &mid, streams, now));
        }
    }

    /// Connects a pair that has agreed on a session.
    fn check_connect(&mut self, pc: usize) {
        let Some(r) = self.pcs[pc].remote_pc else {
            return;
        };
        let (a, b) = (&self.pcs[pc], &self.pcs[r]);
        if a.connected
            || a.closed
            || b.closed
            || a.sig != Sig::Stable
            || b.sig != Sig::Stable
            || b.remote_pc != Some(pc)
            || (a.candidates_in == 0 && b.candidates_in == 0)
        {
            return;
        }
        let after = self.latency * 2.0;
        self.schedule(after, Delivery::Connect { a: pc, b: r });
    }

    /// Carries the broker's output to its clients.
    fn pump_broker(&mut self) {
        let links: Vec<(u64, (usize, u64))> = self.links.iter().map(|(l, x)| (*l, *x)).collect();
        for (link, (peer, generation)) in links {
            let (frames, closed) = self.broker.poll(link);
            if self.stalled.contains(&link) {
                continue;
            }
            let mut floor = self
                .link_arrival
                .get(&(link, false))
                .copied()
                .unwrap_or(0.0);
            for frame in frames {
                let what = match frame {
                    BrokerFrame::Text(text) => Delivery::BrokerText {
                        peer,
                        generation,
                        text,
                    },
                    BrokerFrame::Binary(bytes) => Delivery::BrokerBinary {
                        peer,
                        generation,
                        bytes,
                    },
                };
                self.schedule_ordered(&mut floor, what);
            }
            if let Some(code) = closed {
                self.links.remove(&link);
                self.broker.disconnect(link, false, self.now);
                self.schedule_ordered(
                    &mut floor,
                    Delivery::BrokerClosed {
                        peer,
                        generation,
                        code,
                    },
                );
            }
            self.link_arrival.insert((link, false), floor);
        }
    }

    // ---- reading the outcome --------------------------------------------

    /// The outcome of operation `op` of peer `i`, once it ended.
    pub fn outcome(
        &self,
        i: usize,
        op: crate::core::engine::OpId,
    ) -> Option<&Result<crate::core::engine::Reply, crate::core::error::PeerError>> {
        self.peers[i].events.iter().find_map(|e| match e {
            Event::Done { op: o, result } if *o == op => Some(result),
            _ => None,
        })
    }

    /// Peer `i` reads `text` from its broker socket now (a message the
    /// simulated broker would not send on its own).
    pub fn broker_text(&mut self, i: usize, text: &str) {
        let (generation, now) = (self.peers[i].generation, self.now);
        self.with(i, |e| e.handle_broker_text(generation, text, now));
    }

    /// Whether peer `i` has seen an event matching `f`.
    pub fn saw(&self, i: usize, f: impl Fn(&Event) -> bool) -> bool {
        self.peers[i].events.iter().any(f)
    }

    /// Browser objects still alive for peer `i` (pcs, channels).
    pub fn live_objects(&self, i: usize) -> (usize, usize) {
        (self.peers[i].pcs.len(), self.peers[i].dcs.len())
    }
}

/// Whether `peer` is in `list` (a one-shot fault), taking it out.
fn take_peer(list: &mut Vec<usize>, peer: usize) -> bool {
    let at = list.iter().position(|p| *p == peer);
    at.map(|k| list.remove(k)).is_some()
}
