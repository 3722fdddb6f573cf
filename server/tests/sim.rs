//! The SDK engine on a simulated network: N engines, fake
//! RTCPeerConnections and data channels, and the broker's own hub, on
//! simulated time. Every protocol behaviour the browser tests rely on is
//! checked here natively, with delays, jitter and drops dialled in.

mod simnet;

use peerwire::core::engine::{ChanId, ConnId, ConnState, Event, Listening, OpId, Reply};
use peerwire::core::sim::Sim;
use peerwire::protocol::frames::PayloadType;
use simnet::{HubBroker, network, network_with};

/// Connects `a` to `b`; returns the connection on each side.
fn connect(sim: &mut Sim<HubBroker>, a: usize, b: usize) -> (ConnId, ConnId) {
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

fn messages(sim: &Sim<HubBroker>, i: usize, chan: ChanId) -> Vec<Vec<u8>> {
    sim.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { chan: c, bytes, .. } if *c == chan => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn send(sim: &mut Sim<HubBroker>, i: usize, chan: ChanId, bytes: &[u8]) -> OpId {
    let now = sim.now;
    let b = bytes.to_vec();
    sim.with(i, |e| e.send(chan, PayloadType::Binary, b, false, now))
        .expect("send accepted")
}

fn listen_all(sim: &mut Sim<HubBroker>) {
    for i in 0..sim.peers.len() {
        let now = sim.now;
        sim.with(i, |e| e.set_listening(Listening::Peer, true, now));
    }
}

#[test]
fn two_peers_connect_and_exchange_messages() {
    let mut sim = network(2, 1);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    assert!(sim.saw(1, |e| matches!(e, Event::Incoming { conn } if *conn == cb)));
    assert!(!sim.saw(0, |e| matches!(e, Event::Incoming { .. })));
    let main_a = sim.peers[0].engine.conn_channel(ca).unwrap();
    let main_b = sim.peers[1].engine.conn_channel(cb).unwrap();
    send(&mut sim, 0, main_a, b"hello");
    send(&mut sim, 1, main_b, b"back");
    sim.run_for(100.0);
    assert_eq!(messages(&sim, 1, main_b), vec![b"hello".to_vec()]);
    assert_eq!(messages(&sim, 0, main_a), vec![b"back".to_vec()]);
}
