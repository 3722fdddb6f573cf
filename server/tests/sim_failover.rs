//! Failover between brokers on the simulated network: peers given two
//! broker URLs, each a hub of its own (two brokers that share nothing, as
//! before the Redis backplane joins them: neither knows the other's ids or
//! resume tokens). A peer whose first broker is unreachable registers on
//! the second; when its broker goes away it moves to the next URL with its
//! id, and its connections to other peers carry on.

mod simnet;

use std::collections::BTreeMap;

use peerwire::core::engine::{ConnState, Engine, Event, Millis, Reply, Signalling};
use peerwire::core::sim::{Broker, BrokerFrame, Sim, Unreachable};
use peerwire_broker::hub::HubConfig;
use simnet::{HubBroker, connect, listen_all, messages, peer_config, send};

const A: &str = "ws://a.example/ws";
const B: &str = "ws://b.example/ws";

/// Two brokers, each with its own hub, routed to by the URL dialled.
struct TwoBrokers {
    hubs: [HubBroker; 2],
    /// Link id the sim sees → (which hub, that hub's link id).
    links: BTreeMap<u64, (usize, u64)>,
    next: u64,
}

impl TwoBrokers {
    fn new() -> Self {
        Self {
            hubs: [
                HubBroker::new(HubConfig::default()),
                HubBroker::new(HubConfig::default()),
            ],
            links: BTreeMap::new(),
            next: 1,
        }
    }
}

impl Broker for TwoBrokers {
    fn connect(&mut self, now: Millis) -> u64 {
        self.connect_to(A, now)
    }

    fn connect_to(&mut self, url: &str, now: Millis) -> u64 {
        let hub = usize::from(url == B);
        let inner = self.hubs[hub].connect(now);
        let link = self.next;
        self.next += 1;
        self.links.insert(link, (hub, inner));
        link
    }

    fn receive(&mut self, link: u64, text: &str, now: Millis) {
        if let Some(&(hub, inner)) = self.links.get(&link) {
            self.hubs[hub].receive(inner, text, now);
        }
    }

    fn receive_binary(&mut self, link: u64, bytes: &[u8], now: Millis) {
        if let Some(&(hub, inner)) = self.links.get(&link) {
            self.hubs[hub].receive_binary(inner, bytes, now);
        }
    }

    fn disconnect(&mut self, link: u64, clean: bool, now: Millis) {
        if let Some((hub, inner)) = self.links.remove(&link) {
            self.hubs[hub].disconnect(inner, clean, now);
        }
    }

    fn poll(&mut self, link: u64) -> (Vec<BrokerFrame>, Option<u16>) {
        match self.links.get(&link) {
            Some(&(hub, inner)) => self.hubs[hub].poll(inner),
            None => (Vec::new(), None),
        }
    }

    fn tick(&mut self, now: Millis) {
        for hub in &mut self.hubs {
            hub.tick(now);
        }
    }
}

/// Adds peer `p{i}` (the index it gets) with the broker list `urls`.
fn add(sim: &mut Sim<TwoBrokers>, urls: &[&str], seed: u64) -> usize {
    let i = sim.peers.len();
    let mut config = peer_config(&format!("p{i}"));
    config.signalling = Signalling::Broker {
        urls: urls.iter().map(|u| u.to_string()).collect(),
        renewable_token: false,
    };
    sim.add(Engine::new(
        config,
        seed.wrapping_mul(31).wrapping_add(i as u64),
    ))
}

/// The URLs peer `i` dialled, in order.
fn dials(sim: &Sim<TwoBrokers>, i: usize) -> Vec<&str> {
    sim.dials
        .iter()
        .filter(|(p, _)| *p == i)
        .map(|(_, url)| url.as_str())
        .collect()
}

/// Whether peer `i` registered again (not its first registration) on `url`.
fn reregistered_on(sim: &Sim<TwoBrokers>, i: usize, url: &str) -> bool {
    sim.saw(
        i,
        |e| matches!(e, Event::Registered { first: false, url: Some(u), .. } if u == url),
    )
}

#[test]
fn a_peer_whose_first_broker_refuses_registers_on_the_second() {
    let mut sim = Sim::new(TwoBrokers::new(), 3);
    sim.unreachable.insert(A.into(), Unreachable::Refused);
    let p0 = add(&mut sim, &[A, B], 3);
    sim.run_for(100.0);
    assert_eq!(sim.peers[p0].engine.id(), Some("p0"));
    assert_eq!(sim.peers[p0].engine.broker_url(), Some(B));
    assert_eq!(dials(&sim, p0), [A, B], "A once, then B at once");
    assert!(sim.saw(p0, |e| matches!(
        e,
        Event::Registered { first: true, url: Some(u), .. } if u == B
    )));
    // It is reachable through B: a peer on B alone connects to it.
    let p1 = add(&mut sim, &[B], 3);
    sim.run_for(100.0);
    let (c1, c0) = connect(&mut sim, p1, p0);
    assert_eq!(sim.peers[p0].engine.conn_state(c0), ConnState::Open);
    assert_eq!(sim.peers[p1].engine.conn_state(c1), ConnState::Open);
}

#[test]
fn when_every_broker_refuses_the_first_registration_fails_naming_each() {
    let mut sim = Sim::new(TwoBrokers::new(), 4);
    sim.unreachable.insert(A.into(), Unreachable::Refused);
    sim.unreachable.insert(B.into(), Unreachable::Refused);
    let p0 = add(&mut sim, &[A, B], 4);
    let ready = sim.with(p0, |e| e.when_ready());
    sim.run_for(100.0);
    let err = match sim.outcome(p0, ready) {
        Some(Err(err)) => err.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(err.contains(&format!("any of {A}, {B}")), "{err}");
    assert!(
        err.contains(&format!("{B}: the connection was refused")),
        "{err}"
    );
    sim.run_for(30_000.0);
    assert_eq!(dials(&sim, p0), [A, B], "each once, no retries");
}

#[test]
fn a_hanging_first_broker_is_given_up_for_the_second_within_connect_timeout() {
    let mut sim = Sim::new(TwoBrokers::new(), 5);
    sim.unreachable.insert(A.into(), Unreachable::Silent);
    let p0 = add(&mut sim, &[A, B], 5);
    // A's share of the 15 s connectTimeout is 7.5 s.
    sim.run_for(7_400.0);
    assert_eq!(sim.peers[p0].engine.id(), None);
    sim.run_for(200.0);
    assert_eq!(sim.peers[p0].engine.id(), Some("p0"));
    assert_eq!(sim.peers[p0].engine.broker_url(), Some(B));
}

/// Broker A crashes (its state is lost and its URL refuses): both peers
/// move to B after the backoff, with their ids. B does not know their
/// resume tokens, so they register afresh (`resumed: false`: the room they
/// were in is gone), and the connection between them never closes:
/// messages sent during the switch arrive in order.
#[test]
fn when_a_broker_crashes_peers_move_to_the_next_with_their_ids_and_connections() {
    let mut sim = Sim::new(TwoBrokers::new(), 7);
    let (p0, p1) = (add(&mut sim, &[A, B], 7), add(&mut sim, &[A, B], 7));
    sim.run_for(100.0);
    assert_eq!(dials(&sim, p0), [A]);
    listen_all(&mut sim);
    let now = sim.now;
    let join = sim.with(p0, |e| e.join("lobby", now)).unwrap();
    sim.run_for(100.0);
    assert!(matches!(sim.outcome(p0, join), Some(Ok(Reply::Joined(_)))));
    let (c0, c1) = connect(&mut sim, p0, p1);
    let chan0 = sim.peers[p0].engine.conn_channel(c0).unwrap();
    let chan1 = sim.peers[p1].engine.conn_channel(c1).unwrap();
    send(&mut sim, p0, chan0, b"before");

    let now = sim.now;
    sim.unreachable.insert(A.into(), Unreachable::Refused);
    sim.broker.hubs[0].restart(now);
    for i in [p0, p1] {
        sim.set_online(i, false);
        sim.set_online(i, true);
    }
    send(&mut sim, p0, chan0, b"during");
    assert!(
        sim.run_while(15_000.0, |s| [p0, p1]
            .iter()
            .all(|&i| reregistered_on(s, i, B))),
        "both registered on B"
    );
    send(&mut sim, p0, chan0, b"after");
    sim.run_for(100.0);

    for (i, id) in [(p0, "p0"), (p1, "p1")] {
        assert_eq!(sim.peers[i].engine.id(), Some(id), "the same id on B");
        assert_eq!(sim.peers[i].engine.broker_url(), Some(B));
        assert_eq!(dials(&sim, i), [A, B]);
        assert!(sim.saw(i, |e| matches!(
            e,
            Event::Registered {
                resumed: false,
                first: false,
                ..
            }
        )));
        assert!(
            !sim.saw(i, |e| matches!(e, Event::Closed { .. })),
            "no connection closed"
        );
    }
    assert!(sim.saw(
        p0,
        |e| matches!(e, Event::RoomClosed { room } if room == "lobby")
    ));
    assert_eq!(sim.peers[p0].engine.conn_state(c0), ConnState::Open);
    assert_eq!(sim.peers[p1].engine.conn_state(c1), ConnState::Open);
    assert_eq!(
        messages(&sim, p1, chan1),
        [b"before".to_vec(), b"during".to_vec(), b"after".to_vec()]
    );

    // B carries signalling for them: a newcomer on B reaches p0.
    let p2 = add(&mut sim, &[B], 7);
    sim.run_for(100.0);
    let (c2, _) = connect(&mut sim, p2, p0);
    assert_eq!(sim.peers[p2].engine.conn_state(c2), ConnState::Open);
}

/// A network blip drops p0's link to A while A keeps running: p0 moves to
/// B (A holds its id for the grace window). B goes away before that window
/// ends, and p0 comes back to A holding B's token, which A does not know.
/// It reclaims its id on A with the token A gave it (resumed), instead of
/// being refused for good, and peers on A reach it again.
#[test]
fn back_on_a_broker_that_still_holds_the_id_the_peer_resumes_with_that_brokers_token() {
    let mut sim = Sim::new(TwoBrokers::new(), 9);
    let (p0, p1) = (add(&mut sim, &[A, B], 9), add(&mut sim, &[A], 9));
    sim.run_for(100.0);
    sim.set_online(p0, false);
    sim.set_online(p0, true);
    assert!(sim.run_while(5_000.0, |s| reregistered_on(s, p0, B)));
    assert!(sim.saw(p0, |e| matches!(
        e,
        Event::Registered {
            resumed: false,
            first: false,
            ..
        }
    )));

    // Within A's grace window: B goes, p0 returns to A.
    let now = sim.now;
    sim.unreachable.insert(B.into(), Unreachable::Refused);
    sim.broker.hubs[1].restart(now);
    sim.set_online(p0, false);
    sim.set_online(p0, true);
    assert!(sim.run_while(5_000.0, |s| reregistered_on(s, p0, A)));
    assert!(
        sim.saw(p0, |e| matches!(
            e,
            Event::Registered { resumed: true, first: false, url: Some(u), .. } if u == A
        )),
        "A resumed the session it held"
    );
    assert_eq!(dials(&sim, p0), [A, B, A]);
    assert!(!sim.saw(p0, |e| matches!(e, Event::Error(_))));
    // And p0 is usable there: p1 (on A) connects to it.
    let (c1, _) = connect(&mut sim, p1, p0);
    assert_eq!(sim.peers[p1].engine.conn_state(c1), ConnState::Open);
}
