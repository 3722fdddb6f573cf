//! Open connections through a network change, on the simulated network: the
//! path breaks, the side whose id sorts first restarts ICE (the other asks
//! it to), and what was sent meanwhile arrives, in order; a path no restart
//! repairs ends the connection by name; a broker socket left half-open by
//! the change is found out and replaced.

mod simnet;

use peerwire::core::engine::{ConnId, ConnState, Event, RelayPolicy};
use peerwire::core::error::PeerError;
use peerwire::core::sim::Sim;
use simnet::{HubBroker, connect, listen_all, messages, network, network_with, send};

/// Sends `n` numbered messages from `i` on its connection `c`, one every
/// `gap` ms, breaking the path of peer `breaker` after a third of them.
fn stream_across_a_break(
    sim: &mut Sim<HubBroker>,
    i: usize,
    c: ConnId,
    breaker: usize,
    n: u16,
    gap: f64,
) {
    let chan = sim.peers[i].engine.conn_channel(c).unwrap();
    for k in 0..n {
        if k == n / 3 {
            sim.break_path(breaker, true);
        }
        send(sim, i, chan, &k.to_be_bytes());
        sim.run_for(gap);
    }
}

fn received(sim: &Sim<HubBroker>, i: usize, c: ConnId) -> Vec<u16> {
    let chan = sim.peers[i].engine.conn_channel(c).unwrap();
    messages(sim, i, chan)
        .iter()
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect()
}

fn closed(sim: &Sim<HubBroker>, i: usize) -> bool {
    sim.saw(i, |e| matches!(e, Event::Closed { .. }))
}

#[test]
fn a_broken_path_is_restored_by_an_ice_restart_with_nothing_lost_or_reordered() {
    // Either side's network may change: p0 sorts first (it restarts ICE
    // itself), p1 asks p0 to.
    for breaker in [0, 1] {
        let mut sim = network(2, 40 + breaker as u64);
        listen_all(&mut sim);
        let (ca, cb) = connect(&mut sim, 0, 1);
        stream_across_a_break(&mut sim, 0, ca, breaker, 300, 50.0);
        assert!(
            sim.run_while(20_000.0, |s| received(s, 1, cb).len() == 300),
            "breaker p{breaker}: got {} of 300",
            received(&sim, 1, cb).len()
        );
        assert_eq!(received(&sim, 1, cb), (0..300).collect::<Vec<u16>>());
        assert_eq!(sim.peers[0].engine.conn_state(ca), ConnState::Open);
        assert_eq!(sim.peers[1].engine.conn_state(cb), ConnState::Open);
        assert!(!closed(&sim, 0) && !closed(&sim, 1));
        assert!(sim.restarts[0] >= 1, "p0 (impolite) restarted ICE");
        assert_eq!(sim.restarts[1], 0, "p1 (polite) never restarts itself");
        // And the connection keeps working afterwards, both ways.
        let chan_b = sim.peers[1].engine.conn_channel(cb).unwrap();
        send(&mut sim, 1, chan_b, &[7, 7]);
        sim.run_for(200.0);
        let chan_a = sim.peers[0].engine.conn_channel(ca).unwrap();
        assert_eq!(messages(&sim, 0, chan_a), vec![vec![7, 7]]);
    }
}

#[test]
fn ice_disconnected_past_the_grace_restarts_before_keep_alive_would_notice() {
    // Keep-alive silence is set far off: ICE's own state starts the restart
    // (disconnected at 2.5 s + 2 s grace).
    let mut sim = network_with(2, 44, |c| {
        c.keep_alive_timeout = 60_000;
    });
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let t0 = sim.now;
    sim.break_path(1, true);
    assert!(sim.run_while(10_000.0, |s| s.restarts[0] >= 1));
    let took = sim.now - t0;
    assert!(
        (4_400.0..5_000.0).contains(&took),
        "restarted after {took} ms"
    );
    let chan = sim.peers[0].engine.conn_channel(ca).unwrap();
    send(&mut sim, 0, chan, &[0, 1]);
    assert!(sim.run_while(2_000.0, |s| received(s, 1, cb) == vec![1]));
    assert!(!closed(&sim, 0) && !closed(&sim, 1));
}

#[test]
fn a_network_change_event_restarts_at_once() {
    let mut sim = network(2, 45);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    sim.break_path(0, true);
    let now = sim.now;
    sim.with(0, |e| e.handle_network_change(now));
    assert_eq!(
        sim.restarts[0], 1,
        "restarted on the event, not after silence"
    );
    let chan = sim.peers[0].engine.conn_channel(ca).unwrap();
    send(&mut sim, 0, chan, &[0, 5]);
    assert!(sim.run_while(500.0, |s| received(s, 1, cb) == vec![5]));
}

#[test]
fn a_path_no_restart_repairs_closes_after_the_restarts_by_name() {
    // Where relaying is not allowed (with it, the connection moves to the
    // relay instead: sim_migrate.rs).
    let mut sim = network_with(2, 46, |c| c.relay = RelayPolicy::Never);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let t0 = sim.now;
    sim.break_path(0, false);
    assert!(sim.run_while(30_000.0, |s| {
        s.peers[0].engine.conn_state(ca) == ConnState::Closed
            && s.peers[1].engine.conn_state(cb) == ConnState::Closed
    }));
    let took = sim.now - t0;
    // Keep-alive silence (4 s), then three restarts of 5 s each.
    assert!(
        (18_000.0..21_000.0).contains(&took),
        "closed after {took} ms"
    );
    for i in [0, 1] {
        let reason = sim.peers[i]
            .events
            .iter()
            .find_map(|e| match e {
                Event::Closed {
                    error: Some(e @ PeerError::ConnectionFailed { .. }),
                    ..
                } => Some(e.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("p{i} closed with ConnectionFailed"));
        assert!(reason.contains("3 ICE restarts"), "{reason}");
    }
    assert_eq!(sim.restarts[0], 3);
}

#[test]
fn with_restarts_off_a_lost_path_closes_at_once() {
    let mut sim = network_with(2, 47, |c| c.ice_restarts = 0);
    let (ca, _) = connect(&mut sim, 0, 1);
    let t0 = sim.now;
    sim.break_path(0, true);
    assert!(sim.run_while(10_000.0, |s| s.peers[0].engine.conn_state(ca)
        == ConnState::Closed));
    let took = sim.now - t0;
    assert!((3_500.0..6_000.0).contains(&took), "closed after {took} ms");
    assert_eq!(sim.restarts[0], 0);
}

#[test]
fn a_half_open_broker_socket_is_replaced_and_the_restart_gets_through() {
    // The network change also left p0's broker socket half-open: the
    // restart's offer vanishes on it. The lost path pings the broker, the
    // ping goes unanswered, the socket is replaced (the id resumed), and
    // the restart is made again at once over the new one.
    for breaker in [0, 1] {
        let mut sim = network(2, 48 + breaker as u64);
        listen_all(&mut sim);
        let (ca, cb) = connect(&mut sim, 0, 1);
        sim.stall_broker(breaker);
        stream_across_a_break(&mut sim, 0, ca, breaker, 100, 50.0);
        assert!(
            sim.run_while(20_000.0, |s| received(s, 1, cb).len() == 100),
            "breaker p{breaker}: got {} of 100",
            received(&sim, 1, cb).len()
        );
        assert_eq!(received(&sim, 1, cb), (0..100).collect::<Vec<u16>>());
        assert!(sim.saw(breaker, |e| matches!(
            e,
            Event::Registered {
                resumed: true,
                first: false,
                ..
            }
        )));
        assert!(!closed(&sim, 0) && !closed(&sim, 1));
    }
}

#[test]
fn an_idle_half_open_broker_socket_is_found_by_the_keep_alive_ping() {
    let mut sim = network_with(1, 50, |c| c.broker_keep_alive = 3000);
    sim.stall_broker(0);
    // Idle 3 s, then a ping; no answer in keepAliveTimeout (4 s).
    assert!(sim.run_while(10_000.0, |s| {
        s.saw(0, |e| matches!(e, Event::Registered { first: false, .. }))
    }));
    assert!(
        (7_000.0..8_000.0).contains(&sim.now),
        "replaced at {} ms",
        sim.now
    );
    assert_eq!(sim.peers[0].engine.id(), Some("p0"));
}

#[test]
fn with_restarts_off_a_network_change_event_closes_nothing() {
    let mut sim = network_with(2, 51, |c| c.ice_restarts = 0);
    let (ca, _) = connect(&mut sim, 0, 1);
    let now = sim.now;
    sim.with(0, |e| e.handle_network_change(now));
    sim.run_for(2_000.0);
    assert_eq!(sim.peers[0].engine.conn_state(ca), ConnState::Open);
    assert_eq!(sim.restarts[0], 0);
}
