//! Prometheus metrics, served at `/metrics` in the text exposition format.

use std::sync::Mutex;

use peerwire::protocol::{CloseCode, ErrorCode};
use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;

use crate::hub::{HubStats, Limit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayEndLabel {
    code: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What became of one datagram on the STUN port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunOutcome {
    /// A binding request answered with the sender's address.
    Answered,
    /// A binding request answered with 420 (unknown attributes).
    UnknownAttribute,
    /// Not STUN, or broken STUN: no answer.
    Malformed,
    /// STUN but not a binding request (a response, an indication, another
    /// method): no answer.
    NotBindingRequest,
    /// A binding request from an address over its rate: no answer.
    RateLimited,
}

impl StunOutcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            StunOutcome::Answered => "answered",
            StunOutcome::UnknownAttribute => "unknown-attribute",
            StunOutcome::Malformed => "malformed",
            StunOutcome::NotBindingRequest => "not-binding-request",
            StunOutcome::RateLimited => "rate-limited",
        }
    }
}

/// Every counter and gauge the broker exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub connections_total: Counter,
    /// Payload bytes the broker relayed between ids.
    pub relayed_bytes: Counter,
    relay_ends: Family<RelayEndLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    closes: Family<CodeLabel, Counter>,
    refused: Family<CodeLabel, Counter>,
    stun: Family<OutcomeLabel, Counter>,
    connections: Gauge,
    ids: Gauge,
    detached: Gauge,
    rooms: Gauge,
    keys: Gauge,
    hostnames: Gauge,
    relay_pairs: Gauge,
    relay_pending: Gauge,
    budget_refusals: Family<LimitLabel, Counter>,
    outbound_bytes: Gauge,
    grace_bytes: Gauge,
    state_bytes: Gauge,
    /// Frames published to other brokers of the network (`--redis`).
    pub cluster_forwarded: Counter,
    /// Frames other brokers published to this one.
    pub cluster_received: Counter,
    /// 1 while this broker reaches Redis (`--redis`), else 0.
    cluster_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("peerwire")),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            connections_total: Counter::default(),
            relayed_bytes: Counter::default(),
            relay_ends: Family::default(),
            errors: Family::default(),
            closes: Family::default(),
            refused: Family::default(),
            stun: Family::default(),
            connections: Gauge::default(),
            ids: Gauge::default(),
            detached: Gauge::default(),
            rooms: Gauge::default(),
            keys: Gauge::default(),
            hostnames: Gauge::default(),
            relay_pairs: Gauge::default(),
            relay_pending: Gauge::default(),
            budget_refusals: Family::default(),
            outbound_bytes: Gauge::default(),
            grace_bytes: Gauge::default(),
            state_bytes: Gauge::default(),
            cluster_forwarded: Counter::default(),
            cluster_received: Counter::default(),
            cluster_up: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register(
                "messages_in",
                "Client messages decoded",
                m.messages_in.clone(),
            );
            r.register(
                "messages_out",
                "Frames queued to clients",
                m.messages_out.clone(),
            );
            r.register(
                "connections_opened",
                "WebSocket connections accepted",
                m.connections_total.clone(),
            );
            r.register("errors", "Error replies by code", m.errors.clone());
            r.register(
                "closes",
                "Connections closed by the broker, by close code",
                m.closes.clone(),
            );
            r.register(
                "refused",
                "Upgrades refused, by reason (origin, connections-per-ip)",
                m.refused.clone(),
            );
            r.register(
                "stun_packets",
                "Datagrams on the STUN port, by outcome (answered and unknown-attribute got an answer; malformed, not-binding-request and rate-limited did not)",
                m.stun.clone(),
            );
            r.register(
                "connections",
                "Open WebSocket connections",
                m.connections.clone(),
            );
            r.register(
                "ids",
                "Registered ids, including those inside a grace window",
                m.ids.clone(),
            );
            r.register(
                "ids_detached",
                "Ids inside their reconnect grace window",
                m.detached.clone(),
            );
            r.register("rooms", "Rooms with at least one member", m.rooms.clone());
            r.register("rendezvous_keys", "Open rendezvous keys", m.keys.clone());
            r.register(
                "hostnames",
                "Hostnames registered by ids",
                m.hostnames.clone(),
            );
            r.register(
                "relay_pairs",
                "Relay pairs both ids agreed to (relay-ready sent)",
                m.relay_pairs.clone(),
            );
            r.register(
                "relay_pending",
                "Relay requests waiting for the other id to agree",
                m.relay_pending.clone(),
            );
            r.register(
                "relayed_bytes",
                "Payload bytes relayed between ids",
                m.relayed_bytes.clone(),
            );
            r.register(
                "relay_ends",
                "Relay pairs ended (or pending requests dropped), by the code both sides were told and the cause (ended, gone, expired, rate, max-bytes, total-rate, backlog)",
                m.relay_ends.clone(),
            );
            r.register(
                "budget_refusals",
                "Frames or requests refused by a byte budget, by limit (the flag: outbound-queue-bytes and ip-queued-bytes cut a connection off with 4003 or answer queue-full, max-queued-bytes answers queue-full, max-room-state-bytes, max-peer-state-bytes and ip-state-bytes answer state-full, fanout-rate answers fanout-limit)",
                m.budget_refusals.clone(),
            );
            r.register(
                "outbound_bytes",
                "Bytes of frames in connections' outbound queues, not yet written",
                m.outbound_bytes.clone(),
            );
            r.register(
                "grace_bytes",
                "Bytes of frames queued for ids inside their grace window",
                m.grace_bytes.clone(),
            );
            r.register(
                "state_bytes",
                "Bytes of room state, as counted against the state budgets",
                m.state_bytes.clone(),
            );
            r.register(
                "cluster_forwarded",
                "Frames published to other brokers of the network (--redis)",
                m.cluster_forwarded.clone(),
            );
            r.register(
                "cluster_received",
                "Frames other brokers of the network published to this one",
                m.cluster_received.clone(),
            );
            r.register(
                "cluster_up",
                "1 while this broker reaches Redis (--redis), else 0",
                m.cluster_up.clone(),
            );
        }
        m
    }

    /// Whether this broker reaches Redis now.
    pub fn set_cluster_up(&self, up: bool) {
        self.cluster_up.set(i64::from(up));
    }

    /// Counts one error reply.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str().into(),
            })
            .inc();
    }

    /// Counts one close by the broker: a connection, or (4000, 4001) a
    /// rendezvous key or pairing.
    pub fn close(&self, code: CloseCode) {
        self.closes
            .get_or_create(&CodeLabel {
                code: code.code().to_string(),
            })
            .inc();
    }

    /// Counts one relay pair ended (or a pending one dropped).
    pub fn relay_end(&self, code: ErrorCode, cause: &'static str) {
        self.relay_ends
            .get_or_create(&RelayEndLabel {
                code: code.as_str().into(),
                cause,
            })
            .inc();
    }

    /// Counts one refusal by a byte budget.
    pub fn budget_refused(&self, limit: Limit) {
        self.budget_refusals
            .get_or_create(&LimitLabel {
                limit: limit.label(),
            })
            .inc();
    }

    /// Counts one refused upgrade.
    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&CodeLabel {
                code: reason.into(),
            })
            .inc();
    }

    /// Counts one datagram on the STUN port.
    pub fn stun(&self, outcome: StunOutcome) {
        self.stun
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The exposition text, with gauges taken from `stats`.
    pub fn render(&self, stats: HubStats) -> String {
        self.connections.set(stats.connections as i64);
        self.ids.set(stats.ids as i64);
        self.detached.set(stats.detached as i64);
        self.rooms.set(stats.rooms as i64);
        self.keys.set(stats.keys as i64);
        self.hostnames.set(stats.hostnames as i64);
        self.relay_pairs.set(stats.relay_pairs as i64);
        self.relay_pending.set(stats.relay_pending as i64);
        self.outbound_bytes.set(stats.outbound_bytes as i64);
        self.grace_bytes.set(stats.grace_bytes as i64);
        self.state_bytes.set(stats.state_bytes as i64);
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}
