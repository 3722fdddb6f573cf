//! A node's view of itself (smoke's `node.system` and `node.network`) and
//! its connection budget (`maxConnections`), on the simulated network: the
//! counters the browser shows are these, so they are checked here exactly.

mod simnet;

use peerwire::core::engine::{ConnPath, ConnState, Event, OpId, PortUse, RelayPolicy, Reply};
use peerwire::core::error::PeerError;
use peerwire::core::sim::Sim;
use peerwire::protocol::frames::PayloadType;
use simnet::{HubBroker, connect, listen_all, messages, network, network_with, send};

fn outcome(sim: &Sim<HubBroker>, i: usize, op: OpId) -> Result<Reply, PeerError> {
    sim.outcome(i, op).cloned().expect("the operation settled")
}

/// A budget of 2: the third connection is refused on both sides with
/// `LimitExceededError` (the dialler at once, not by timeout), the refused
/// side's counters say so, and a slot freed by a close is usable again.
#[test]
fn the_connection_budget_refuses_the_connection_past_it_on_both_sides() {
    let mut sim = network_with(5, 21, |c| c.max_connections = 2);
    connect(&mut sim, 1, 0);
    connect(&mut sim, 2, 0);
    assert_eq!(sim.peers[0].engine.system(sim.now).connections, 2);

    // An incoming third: p0 refuses the offer, p3 hears why.
    let now = sim.now;
    let op = sim.with(3, |e| e.connect("p0", now)).unwrap();
    let started = sim.now;
    assert!(sim.run_while(5_000.0, |s| s.outcome(3, op).is_some()));
    assert!(
        sim.now - started < 1_000.0,
        "refused at once, not by timeout"
    );
    let err = outcome(&sim, 3, op).unwrap_err();
    assert_eq!(err.name(), "LimitExceededError", "{err}");
    assert!(err.to_string().contains("maxConnections"), "{err}");
    assert!(err.to_string().contains("p0"), "{err}");
    assert!(sim.saw(0, |e| matches!(
        e,
        Event::Error(PeerError::LimitExceeded(m)) if m.contains("p3") && m.contains("maxConnections")
    )));
    let system = sim.peers[0].engine.system(sim.now);
    assert_eq!(system.connections, 2);
    assert_eq!(system.max_connections, 2);
    assert_eq!(system.connections_refused, 1);
    assert_eq!(system.connections_opened, 2);
    assert_eq!(sim.peers[0].engine.connection_to("p3"), None);

    // An outgoing third: refused locally, synchronously.
    let now = sim.now;
    let err = sim.with(0, |e| e.connect("p4", now)).unwrap_err();
    assert_eq!(err.name(), "LimitExceededError", "{err}");
    assert_eq!(sim.peers[0].engine.system(sim.now).connections_refused, 2);

    // Closing one frees its slot.
    let c1 = sim.peers[0].engine.connection_to("p1").unwrap();
    let now = sim.now;
    sim.with(0, |e| e.disconnect(c1, "done", now));
    sim.run_for(6_000.0);
    assert_eq!(sim.peers[0].engine.system(sim.now).connections, 1);
    connect(&mut sim, 4, 0);
    assert_eq!(sim.peers[0].engine.system(sim.now).connections, 2);
}

/// The default budget is smoke's 256.
#[test]
fn the_default_budget_is_256() {
    let sim = network(1, 22);
    assert_eq!(sim.peers[0].engine.system(sim.now).max_connections, 256);
}

/// Bytes in and out match on the two sides and grow by what was sent;
/// each connection counts its own; uptime follows the clock.
#[test]
fn bytes_in_and_out_are_counted_per_node_and_per_connection() {
    let mut sim = network(3, 23);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let (_, _) = connect(&mut sim, 0, 2);
    sim.run_for(100.0);
    let before0 = sim.peers[0].engine.system(sim.now);
    let main_a = sim.peers[0].engine.conn_channel(ca).unwrap();
    let main_b = sim.peers[1].engine.conn_channel(cb).unwrap();
    let payload = vec![7u8; 50_000];
    for _ in 0..4 {
        send(&mut sim, 0, main_a, &payload);
    }
    sim.run_for(500.0);
    assert_eq!(messages(&sim, 1, main_b).len(), 4);
    let after0 = sim.peers[0].engine.system(sim.now);
    let after1 = sim.peers[1].engine.system(sim.now);
    let sent = after0.bytes_out - before0.bytes_out;
    assert!(
        (200_000..210_000).contains(&sent),
        "4 × 50 000 bytes and their frame headers: {sent}"
    );
    // Everything p1 received came from p0 and the other way round (acks,
    // keep-alives): the two views agree, byte for byte, once quiet.
    let net0 = sim.peers[0].engine.network();
    let net1 = sim.peers[1].engine.network();
    let to1 = net0.iter().find(|c| c.remote == "p1").unwrap();
    let to2 = net0.iter().find(|c| c.remote == "p2").unwrap();
    let to0 = &net1[0];
    assert_eq!(to1.bytes_out, to0.bytes_in);
    assert_eq!(to1.bytes_in, to0.bytes_out);
    assert!(to2.bytes_out < 10_000, "p2 got only control frames");
    assert_eq!(after0.bytes_out, to1.bytes_out + to2.bytes_out);
    assert_eq!(after0.bytes_in, to1.bytes_in + to2.bytes_in);
    assert_eq!(after1.bytes_in, to0.bytes_in);
    // Uptime: from start, on the simulated clock.
    let t = sim.now;
    sim.run_for(1_000.0);
    let later = sim.peers[0].engine.system(sim.now);
    assert_eq!(later.uptime - after0.uptime, sim.now - t);
}

/// `network()`: each connection's remote, state, who dialled, its streams
/// and its path: direct over WebRTC, or the broker's relay.
#[test]
fn the_network_view_lists_connections_with_their_paths() {
    let mut sim = network_with(3, 24, |c| {
        if c.id.as_deref() == Some("p2") {
            c.relay = RelayPolicy::Always;
        }
    });
    connect(&mut sim, 0, 1);
    let now = sim.now;
    let op = sim.with(2, |e| e.connect("p0", now)).unwrap();
    assert!(sim.run_while(5_000.0, |s| s.outcome(2, op).is_some()));
    outcome(&sim, 2, op).unwrap();
    sim.run_for(200.0);
    let net = sim.peers[0].engine.network();
    assert_eq!(net.len(), 2);
    let p1 = net.iter().find(|c| c.remote == "p1").unwrap();
    let p2 = net.iter().find(|c| c.remote == "p2").unwrap();
    assert_eq!(
        (p1.state, p1.path, p1.initiated),
        (ConnState::Open, ConnPath::Direct, true)
    );
    assert_eq!(
        (p2.state, p2.path, p2.initiated),
        (ConnState::Open, ConnPath::Broker, false)
    );
    assert!(!sim.peers[1].engine.network()[0].initiated);
    assert_eq!(p1.streams, 0);
}

/// Ports: bound ones are listed; each counts the sockets it took (open now
/// and since start) and their bytes, localhost sockets included; unbinding
/// keeps the open ones and their counts.
#[test]
fn ports_count_their_sockets_and_bytes() {
    let mut sim = network(2, 25);
    let (ca, _) = connect(&mut sim, 0, 1);
    sim.with(1, |e| e.listen(80, PortUse::Sockets)).unwrap();
    sim.with(1, |e| e.listen(81, PortUse::Rest)).unwrap();
    assert_eq!(sim.peers[1].engine.bound_ports(), vec![80, 81]);
    let now = sim.now;
    let (s1, op1) = sim.with(0, |e| e.connect_port(ca, 80, now)).unwrap();
    let (_, op2) = sim.with(0, |e| e.connect_port(ca, 80, now)).unwrap();
    let (_, op3) = sim.with(1, |e| e.connect_loopback(80, now)).unwrap();
    sim.run_for(300.0);
    for (i, op) in [(0, op1), (0, op2), (1, op3)] {
        assert!(matches!(outcome(&sim, i, op), Ok(Reply::Stream(_))));
    }
    let now = sim.now;
    sim.with(0, |e| {
        e.send(s1, PayloadType::Binary, vec![1; 1000], false, now)
    })
    .unwrap();
    sim.run_for(300.0);
    let port = |sim: &Sim<HubBroker>, p: u16| {
        sim.peers[1]
            .engine
            .system(sim.now)
            .ports
            .into_iter()
            .find(|s| s.port == p)
            .unwrap()
    };
    let p80 = port(&sim, 80);
    assert!(p80.bound);
    assert_eq!((p80.open, p80.accepted), (3, 3));
    assert!(p80.bytes_in >= 1000, "{p80:?}");
    let p81 = port(&sim, 81);
    assert_eq!((p81.bound, p81.open, p81.accepted), (true, 0, 0));
    // The dialling side has no port entries: its sockets are not a port's.
    assert!(sim.peers[0].engine.system(sim.now).ports.is_empty());
    assert_eq!(sim.peers[1].engine.network()[0].streams, 2);

    sim.with(1, |e| e.unlisten(80));
    assert_eq!(sim.peers[1].engine.bound_ports(), vec![81]);
    let p80 = port(&sim, 80);
    assert_eq!((p80.bound, p80.open, p80.accepted), (false, 3, 3));
    let now = sim.now;
    sim.with(0, |e| e.close_stream(s1, "done", now));
    // Dials to ports nobody binds are refused and make no entries.
    let refused: Vec<OpId> = (4000..4050)
        .map(|p| sim.with(0, |e| e.connect_port(ca, p, now)).unwrap().1)
        .collect();
    sim.run_for(6_000.0);
    assert_eq!(port(&sim, 80).open, 2);
    for op in refused {
        assert_eq!(outcome(&sim, 0, op).unwrap_err().name(), "PortClosedError");
    }
    let listed: Vec<u16> = sim.peers[1]
        .engine
        .system(sim.now)
        .ports
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(listed, vec![80, 81]);
}
