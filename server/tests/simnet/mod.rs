//! The broker's own hub as the simulated network's broker: client frames are
//! decoded and handled exactly as the socket code does, on simulated time.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwire::core::engine::{
    ChanId, Config, ConnId, ConnState, Engine, Event, Listening, Millis, OpId, Reply, Signalling,
};
use peerwire::core::sim::{Broker, BrokerFrame, Sim};
use peerwire::protocol::frames::PayloadType;
use peerwire::protocol::{ClientMessage, CloseCode};
use peerwire_broker::hub::{self, Hub, HubConfig, HubEnv, ResumeKey};
use peerwire_broker::metrics::Metrics;
use tokio::sync::oneshot;

struct Link {
    conn: hub::ConnId,
    rx: peerwire_broker::hub::Inbox,
    kill: oneshot::Receiver<CloseCode>,
}

/// A hub on simulated time.
pub struct HubBroker {
    pub hub: Hub,
    start: Instant,
    links: BTreeMap<u64, Link>,
    next: u64,
    /// What its tokens are signed with (kept by [`Self::restart_keeping_key`]).
    key: ResumeKey,
}

impl HubBroker {
    pub fn new(config: HubConfig) -> Self {
        let env = HubEnv::os();
        Self {
            key: env.resume_key.clone(),
            hub: Hub::new(config, Arc::new(Metrics::new()), env),
            start: Instant::now(),
            links: BTreeMap::new(),
            next: 1,
        }
    }

    fn at(&self, now: Millis) -> Instant {
        self.start + Duration::from_micros((now * 1000.0) as u64)
    }

    /// Drops every client, as a broker restart does (the hub is replaced).
    pub fn restart(&mut self, now: Millis) -> Vec<u64> {
        let links: Vec<u64> = self.links.keys().copied().collect();
        for l in &links {
            self.disconnect(*l, false, now);
        }
        self.hub = Hub::new(HubConfig::default(), Arc::new(Metrics::new()), HubEnv::os());
        links
    }

    /// Like [`Self::restart`], for a broker that kept its resume key (its
    /// state directory): tokens issued before the restart are recognised.
    pub fn restart_keeping_key(&mut self, now: Millis) -> Vec<u64> {
        let links = self.restart(now);
        let env = HubEnv::os().with_resume_key(self.key.clone());
        self.hub = Hub::new(HubConfig::default(), Arc::new(Metrics::new()), env);
        links
    }

    /// A client of the broker's own (not an engine) that registers `id`;
    /// its link, for [`Broker::poll`] and [`Broker::disconnect`].
    pub fn register_raw(&mut self, id: &str, now: Millis) -> u64 {
        let link = self.connect(now);
        let register = format!(r#"{{"type":"register","rid":1,"id":"{id}"}}"#);
        self.receive(link, &register, now);
        let (frames, _) = self.poll(link);
        assert!(
            matches!(frames.first(), Some(BrokerFrame::Text(t)) if t.contains("\"registered\"")),
            "{id} registered"
        );
        link
    }
}

impl Broker for HubBroker {
    fn connect(&mut self, _now: Millis) -> u64 {
        let (tx, rx) =
            peerwire_broker::hub::outbox::channel(peerwire::protocol::limits::OUTBOUND_QUEUE);
        let (kill_tx, kill) = oneshot::channel();
        let conn = self.hub.connect(tx, kill_tx, None, None, None);
        let id = self.next;
        self.next += 1;
        self.links.insert(id, Link { conn, rx, kill });
        id
    }

    fn receive(&mut self, link: u64, text: &str, now: Millis) {
        let at = self.at(now);
        let Some(l) = self.links.get(&link) else {
            return;
        };
        match ClientMessage::decode(text) {
            Ok(msg) => self.hub.handle(l.conn, msg, at),
            Err(e) => self.hub.reject(l.conn, e, at),
        }
    }

    fn receive_binary(&mut self, link: u64, bytes: &[u8], now: Millis) {
        let at = self.at(now);
        if let Some(l) = self.links.get(&link) {
            self.hub.handle_binary(l.conn, bytes, at);
        }
    }

    fn disconnect(&mut self, link: u64, clean: bool, now: Millis) {
        let at = self.at(now);
        if let Some(mut l) = self.links.remove(&link) {
            self.hub.disconnect(l.conn, clean, at, &mut l.rx);
        }
    }

    fn poll(&mut self, link: u64) -> (Vec<BrokerFrame>, Option<u16>) {
        let Some(l) = self.links.get_mut(&link) else {
            return (Vec::new(), None);
        };
        let mut frames = Vec::new();
        while let Ok(o) = l.rx.try_recv() {
            frames.push(match (o.frame.as_text(), o.frame.as_binary()) {
                (Some(text), _) => BrokerFrame::Text(text.to_string()),
                (None, Some(bytes)) => BrokerFrame::Binary(bytes.to_vec()),
                (None, None) => continue,
            });
        }
        let closed = l.kill.try_recv().ok().map(|c| c.code());
        (frames, closed)
    }

    fn tick(&mut self, now: Millis) {
        let at = self.at(now);
        self.hub.sweep(at);
    }
}

/// A network of `n` peers named `p0`, `p1`, … on one hub, each registered.
pub fn network(n: usize, seed: u64) -> Sim<HubBroker> {
    network_with(n, seed, |_| {})
}

/// Like [`network`], with each peer's config adjusted by `tune`.
pub fn network_with(n: usize, seed: u64, tune: impl Fn(&mut Config)) -> Sim<HubBroker> {
    network_on(HubConfig::default(), n, seed, tune)
}

/// Like [`network_with`], on a hub configured with `hub`.
pub fn network_on(
    hub: HubConfig,
    n: usize,
    seed: u64,
    tune: impl Fn(&mut Config),
) -> Sim<HubBroker> {
    let mut sim = Sim::new(HubBroker::new(hub), seed);
    for i in 0..n {
        let mut config = peer_config(&format!("p{i}"));
        tune(&mut config);
        sim.add(Engine::new(
            config,
            seed.wrapping_mul(31).wrapping_add(i as u64),
        ));
    }
    sim.run_for(100.0);
    for i in 0..n {
        assert_eq!(
            sim.peers[i].engine.id(),
            Some(format!("p{i}").as_str()),
            "p{i} registered"
        );
    }
    sim
}

pub fn peer_config(id: &str) -> Config {
    let mut c = Config::new(Signalling::Broker {
        urls: vec!["ws://sim/ws".into()],
        renewable_token: false,
    });
    c.id = Some(id.to_string());
    c
}

/// Connects `a` to `b`; returns the connection on each side.
pub fn connect<B: Broker>(sim: &mut Sim<B>, a: usize, b: usize) -> (ConnId, ConnId) {
    let now = sim.now;
    let remote = format!("p{b}");
    let op = sim
        .with(a, |e| e.connect(&remote, now))
        .expect("connect starts");
    assert!(
        sim.run_while(5_000.0, |s| s.outcome(a, op).is_some()),
        "connect settles"
    );
    let ca = match sim.outcome(a, op) {
        Some(Ok(Reply::Connection(c))) => *c,
        other => panic!("connect failed: {other:?}"),
    };
    let me = format!("p{a}");
    let cb = sim.peers[b]
        .engine
        .connection_to(&me)
        .expect("b has a connection");
    sim.run_while(1_000.0, |s| {
        s.peers[b].engine.conn_state(cb) == ConnState::Open
    });
    assert_eq!(sim.peers[b].engine.conn_state(cb), ConnState::Open);
    (ca, cb)
}

pub fn messages<B: Broker>(sim: &Sim<B>, i: usize, chan: ChanId) -> Vec<Vec<u8>> {
    sim.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { chan: c, bytes, .. } if *c == chan => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

pub fn send<B: Broker>(sim: &mut Sim<B>, i: usize, chan: ChanId, bytes: &[u8]) -> OpId {
    let now = sim.now;
    let b = bytes.to_vec();
    sim.with(i, |e| e.send(chan, PayloadType::Binary, b, false, now))
        .expect("send accepted")
}

pub fn listen_all<B: Broker>(sim: &mut Sim<B>) {
    for i in 0..sim.peers.len() {
        let now = sim.now;
        sim.with(i, |e| e.set_listening(Listening::Peer, true, now));
    }
}
