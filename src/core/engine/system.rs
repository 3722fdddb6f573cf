//! What a node can tell about itself (smoke's `node.system` and
//! `node.network`): how long it has run, its connections and the path each
//! takes, bytes in and out, and what each bound port has taken.
//!
//! The counters are the engine's own, kept as frames pass
//! (`count_in`/`count_out`, called where a channel's frames are sent and
//! received) and read through [`Engine::system`] and [`Engine::network`],
//! so they are the same natively (on the simulated network) and in the
//! browser. Bytes are frame bytes on connections (data channels or the
//! broker's relay); sockets to the node's own ports (`localhost`) count for
//! their port only.

use super::channel::{Channel, Role};
use super::{ChanId, ConnId, ConnState, Engine, Millis, Table};

/// The counters behind [`SystemStats`], one per engine.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// When `start` was called (uptime counts from here).
    started: Option<Millis>,
    bytes_in: u64,
    bytes_out: u64,
    opened: u64,
    refused: u64,
    per_conn: Table<ConnId, Bytes>,
    per_port: Table<u16, PortCounters>,
}

/// Bytes one way and the other.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Bytes {
    received: u64,
    sent: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct PortCounters {
    accepted: u64,
    bytes: Bytes,
}

/// A snapshot of a node: `node.system` in JavaScript.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemStats {
    /// Milliseconds since the engine started (0 before).
    pub uptime: Millis,
    /// Connections open or opening now.
    pub connections: usize,
    /// The budget: at most this many at once (`maxConnections`).
    pub max_connections: usize,
    /// Connections made since start (dialled or accepted).
    pub connections_opened: u64,
    /// Connections refused or not made because the budget was full.
    pub connections_refused: u64,
    /// Frame bytes received on connections.
    pub bytes_in: u64,
    /// Frame bytes sent on connections.
    pub bytes_out: u64,
    /// Every port that is bound or has taken sockets, by number.
    pub ports: Vec<PortStats>,
}

/// One port of a node, as the listening side sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStats {
    pub port: u16,
    /// Something listens on it now.
    pub bound: bool,
    /// Sockets it took that are still open.
    pub open: usize,
    /// Sockets it took since start.
    pub accepted: u64,
    /// Bytes received on its sockets.
    pub bytes_in: u64,
    /// Bytes sent on its sockets.
    pub bytes_out: u64,
}

/// The path a connection's data takes, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnPath {
    /// Not open yet.
    Connecting,
    /// A WebRTC data channel between the two (the browser's candidate pair
    /// says whether host, srflx or TURN: `conn.stats()`).
    Direct,
    /// The broker's relay.
    Broker,
}

impl ConnPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Direct => "direct",
            Self::Broker => "broker",
        }
    }
}

/// One connection of a node: an entry of `node.network.connections`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnInfo {
    pub conn: ConnId,
    /// The remote's id (address).
    pub remote: String,
    pub state: ConnState,
    pub path: ConnPath,
    /// This side dialled.
    pub initiated: bool,
    /// Streams and sockets open on it.
    pub streams: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Only a `Node` reads these (the full build): without the `full`
/// feature nothing is counted, and the linker drops the counting.
const COUNTED: bool = cfg!(feature = "full");

/// The port a listener on this side took `ch` on (not a socket this side
/// dialled, nor one refused for want of a listener: a remote cannot make
/// entries for ports nobody bound).
fn listener_port(ch: &Channel) -> Option<u16> {
    ch.port().filter(|_| matches!(ch.role, Role::Listener(_)))
}

impl Engine {
    /// Uptime counts from here (called by `start`).
    pub(crate) fn note_started(&mut self, now: Millis) {
        self.traffic.started.get_or_insert(now);
    }

    /// A connection was created; forgets the counters of gone ones.
    pub(crate) fn note_conn_opened(&mut self) {
        if !COUNTED {
            return;
        }
        self.traffic.opened += 1;
        let conns = &self.conns;
        self.traffic.per_conn.retain(|c, _| conns.contains_key(c));
    }

    /// A connection was not made: the budget was full.
    pub(crate) fn note_conn_refused(&mut self) {
        self.traffic.refused += 1;
    }

    /// A listener on `port` took a socket.
    pub(crate) fn note_accepted(&mut self, port: u16) {
        if !COUNTED {
            return;
        }
        self.traffic
            .per_port
            .get_or_insert_with(port, PortCounters::default)
            .accepted += 1;
    }

    /// `n` frame bytes arrived on `chan`.
    pub(crate) fn count_in(&mut self, chan: ChanId, n: usize) {
        self.count(chan, n as u64, true);
    }

    /// `n` frame bytes left on `chan`.
    pub(crate) fn count_out(&mut self, chan: ChanId, n: usize) {
        self.count(chan, n as u64, false);
    }

    fn count(&mut self, chan: ChanId, n: u64, received: bool) {
        let Some(ch) = self.chans.get(&chan).filter(|_| COUNTED) else {
            return;
        };
        let add = |b: &mut Bytes| {
            if received {
                b.received += n;
            } else {
                b.sent += n;
            }
        };
        if let Some(port) = listener_port(ch) {
            add(&mut self
                .traffic
                .per_port
                .get_or_insert_with(port, PortCounters::default)
                .bytes);
        }
        if let Some(c) = ch.conn {
            add(self.traffic.per_conn.get_or_insert_with(c, Bytes::default));
            if received {
                self.traffic.bytes_in += n;
            } else {
                self.traffic.bytes_out += n;
            }
        }
    }

    /// The node's counters at `now`.
    pub fn system(&self, now: Millis) -> SystemStats {
        let t = &self.traffic;
        let mut ports: Table<u16, PortStats> = Table::new();
        let blank = |port| PortStats {
            port,
            bound: false,
            open: 0,
            accepted: 0,
            bytes_in: 0,
            bytes_out: 0,
        };
        for (&port, c) in t.per_port.iter() {
            let p = ports.get_or_insert_with(port, || blank(port));
            p.accepted = c.accepted;
            p.bytes_in = c.bytes.received;
            p.bytes_out = c.bytes.sent;
        }
        for &port in self.ports.keys() {
            ports.get_or_insert_with(port, || blank(port)).bound = true;
        }
        for ch in self.chans.values() {
            if let Some(port) = listener_port(ch) {
                ports.get_or_insert_with(port, || blank(port)).open += 1;
            }
        }
        SystemStats {
            uptime: t.started.map_or(0.0, |s| (now - s).max(0.0)),
            connections: self.conns.len(),
            max_connections: self.config.max_connections,
            connections_opened: t.opened,
            connections_refused: t.refused,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            ports: ports.take().into_iter().map(|(_, p)| p).collect(),
        }
    }

    /// The node's connections, open or opening.
    pub fn network(&self) -> Vec<ConnInfo> {
        self.conns
            .iter()
            .map(|(&c, conn)| {
                let path = if conn.relay.is_some() {
                    ConnPath::Broker
                } else if conn.state == ConnState::Open {
                    ConnPath::Direct
                } else {
                    ConnPath::Connecting
                };
                let bytes = self.traffic.per_conn.get(&c).copied().unwrap_or_default();
                ConnInfo {
                    conn: c,
                    remote: conn.remote.clone(),
                    state: conn.state,
                    path,
                    initiated: conn.initiated,
                    streams: conn.streams.len(),
                    bytes_in: bytes.received,
                    bytes_out: bytes.sent,
                }
            })
            .collect()
    }

    /// The ports something listens on, in order.
    pub fn bound_ports(&self) -> Vec<u16> {
        self.ports.keys().copied().collect()
    }
}
