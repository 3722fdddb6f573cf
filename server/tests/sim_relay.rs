//! Connections over the broker's relay, on the simulated network with the
//! broker's own hub: `relay: 'always'`, the fallback when WebRTC finds no
//! path, the pacing to the broker's rate, and refusals by name.

mod simnet;

use peerwire::core::engine::{ConnState, Event, Listening, RelayPolicy, Reply};
use peerwire::core::error::PeerError;
use peerwire::core::sim::Sim;
use peerwire::protocol::frames::PayloadType;
use peerwire_broker::hub::{HubConfig, RelayConfig};
use simnet::{HubBroker, connect, listen_all, messages, network_on, network_with, send};

fn relayed(sim: &Sim<HubBroker>, i: usize, c: peerwire::core::engine::ConnId) -> bool {
    sim.peers[i]
        .engine
        .relay_stats(c)
        .is_some_and(|s| s.contains(r#""route":"broker""#))
}

#[test]
fn with_relay_always_messages_and_streams_go_through_the_broker() {
    let mut sim = network_with(2, 60, |c| c.relay = RelayPolicy::Always);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    assert!(relayed(&sim, 0, ca) && relayed(&sim, 1, cb));
    assert_eq!(sim.live_objects(0).0, 0, "no RTCPeerConnection at all");
    let (main_a, main_b) = (
        sim.peers[0].engine.conn_channel(ca).unwrap(),
        sim.peers[1].engine.conn_channel(cb).unwrap(),
    );
    // Messages both ways, one of 1 MiB (cut into frames and put back).
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    send(&mut sim, 0, main_a, b"hello");
    send(&mut sim, 0, main_a, &big);
    send(&mut sim, 1, main_b, b"back");
    assert!(sim.run_while(5_000.0, |s| messages(s, 1, main_b).len() == 2));
    assert_eq!(messages(&sim, 1, main_b), vec![b"hello".to_vec(), big]);
    assert_eq!(messages(&sim, 0, main_a), vec![b"back".to_vec()]);
    // A stream, opened by either side.
    for (i, c, j) in [(0, ca, 1), (1, cb, 0)] {
        let now = sim.now;
        let op = sim
            .with(i, |e| e.open_stream(c, "s", None, now))
            .expect("open");
        assert!(sim.run_while(2_000.0, |s| s.outcome(i, op).is_some()));
        let Some(Ok(Reply::Stream(s))) = sim.outcome(i, op).cloned() else {
            panic!("stream open failed: {:?}", sim.outcome(i, op));
        };
        let seen = |sim: &Sim<HubBroker>| {
            sim.peers[j].events.iter().rev().find_map(|e| match e {
                Event::IncomingStream { chan, .. } => Some(*chan),
                _ => None,
            })
        };
        assert!(sim.run_while(1_000.0, |sim| seen(sim).is_some()));
        let incoming = seen(&sim).expect("the remote saw the stream");
        let now = sim.now;
        sim.with(j, |e| e.set_listening(Listening::Chan(incoming), true, now));
        send(&mut sim, i, s, b"on a stream");
        assert!(sim.run_while(2_000.0, |sim| messages(sim, j, incoming)
            == vec![b"on a stream".to_vec()]));
    }
    // Closing tells the other side, and the broker forgets the pair.
    let now = sim.now;
    sim.with(0, |e| e.disconnect(ca, "done", now));
    assert!(sim.run_while(2_000.0, |s| s.peers[1].engine.conn_state(cb)
        == ConnState::Closed));
    sim.run_for(500.0);
    let stats = sim.broker.hub.stats();
    assert_eq!((stats.relay_pairs, stats.relay_pending), (0, 0));
}

#[test]
fn with_no_webrtc_path_a_connection_falls_back_to_the_relay() {
    let mut sim = network_with(2, 61, |_| {});
    sim.no_webrtc = true;
    listen_all(&mut sim);
    let now = sim.now;
    let op = sim.with(0, |e| e.connect("p1", now)).unwrap();
    assert!(sim.run_while(15_000.0, |s| s.outcome(0, op).is_some()));
    let Some(Ok(Reply::Connection(ca))) = sim.outcome(0, op).cloned() else {
        panic!("{:?}", sim.outcome(0, op));
    };
    // relayAfter (7.5 s), then the pairing.
    assert!(
        (7_500.0..8_500.0).contains(&sim.now),
        "open at {} ms",
        sim.now
    );
    assert!(relayed(&sim, 0, ca));
    assert_eq!(
        sim.live_objects(0).0,
        0,
        "the RTCPeerConnection was released"
    );
    let cb = sim.peers[1].engine.connection_to("p0").unwrap();
    let main_a = sim.peers[0].engine.conn_channel(ca).unwrap();
    let main_b = sim.peers[1].engine.conn_channel(cb).unwrap();
    send(&mut sim, 0, main_a, b"relayed");
    assert!(sim.run_while(1_000.0, |s| messages(s, 1, main_b)
        == vec![b"relayed".to_vec()]));
}

#[test]
fn relayed_sends_keep_to_the_brokers_rate() {
    // 256 KiB/s per direction: 2 MiB takes about 8 s, and the broker never
    // ends the pair for going too fast.
    let hub = HubConfig {
        relay: RelayConfig {
            rate: 256 * 1024,
            ..RelayConfig::default()
        },
        ..HubConfig::default()
    };
    let mut sim = network_on(hub, 2, 62, |c| c.relay = RelayPolicy::Always);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let main_a = sim.peers[0].engine.conn_channel(ca).unwrap();
    let main_b = sim.peers[1].engine.conn_channel(cb).unwrap();
    let t0 = sim.now;
    let now = sim.now;
    let data = vec![7u8; 2 * 1024 * 1024];
    sim.with(0, |e| e.send(main_a, PayloadType::Binary, data, false, now))
        .unwrap();
    assert!(sim.run_while(20_000.0, |s| !messages(s, 1, main_b).is_empty()));
    let took = sim.now - t0;
    assert!((7_000.0..10_000.0).contains(&took), "2 MiB in {took} ms");
    assert_eq!(sim.peers[0].engine.conn_state(ca), ConnState::Open);
    assert!(!sim.saw(0, |e| matches!(e, Event::Closed { .. })));
}

#[test]
fn a_side_that_never_relays_fails_the_connection_by_name() {
    let mut sim = network_with(2, 63, |c| {
        c.relay = match c.id.as_deref() {
            Some("p1") => RelayPolicy::Never,
            _ => RelayPolicy::Always,
        }
    });
    let now = sim.now;
    let op = sim.with(0, |e| e.connect("p1", now)).unwrap();
    assert!(sim.run_while(15_000.0, |s| s.outcome(0, op).is_some()));
    let Some(Err(err)) = sim.outcome(0, op).cloned() else {
        panic!("{:?}", sim.outcome(0, op));
    };
    assert!(matches!(err, PeerError::ConnectionFailed { .. }), "{err}");
    assert!(err.to_string().contains("relay"), "{err}");
}

#[test]
fn a_broker_that_does_not_relay_refuses_by_name() {
    let hub = HubConfig {
        relay: RelayConfig {
            enabled: false,
            ..RelayConfig::default()
        },
        ..HubConfig::default()
    };
    let mut sim = network_on(hub, 2, 64, |c| c.relay = RelayPolicy::Always);
    let now = sim.now;
    let op = sim.with(0, |e| e.connect("p1", now)).unwrap();
    assert!(sim.run_while(15_000.0, |s| s.outcome(0, op).is_some()));
    let Some(Err(err)) = sim.outcome(0, op).cloned() else {
        panic!("{:?}", sim.outcome(0, op));
    };
    assert!(err.to_string().contains("relay-refused"), "{err}");
}

#[test]
fn a_relayed_connection_ends_by_name_when_a_broker_link_does_not_come_back() {
    // (A link that comes back re-forms the pair: sim_migrate.rs.)
    let mut sim = network_with(2, 65, |c| c.relay = RelayPolicy::Always);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let main_a = sim.peers[0].engine.conn_channel(ca).unwrap();
    let t0 = sim.now;
    sim.set_online(0, false);
    // Sent while the link is down: it waits (and the engine does not spin).
    send(&mut sim, 0, main_a, b"waiting");
    assert!(sim.run_while(30_000.0, |s| {
        s.peers[0].engine.conn_state(ca) == ConnState::Closed
            && s.peers[1].engine.conn_state(cb) == ConnState::Closed
    }));
    // connectTimeout (15 s) for the pair to form again.
    let took = sim.now - t0;
    assert!(
        (15_000.0..17_000.0).contains(&took),
        "closed after {took} ms"
    );
    for i in [0, 1] {
        assert!(sim.saw(i, |e| matches!(
            e,
            Event::Closed {
                error: Some(PeerError::ConnectionFailed { reason, .. }),
                ..
            } if reason.contains("relay pair did not form")
        )));
    }
}

#[test]
fn closing_right_after_a_send_lets_the_relay_carry_both_then_ends_the_pair() {
    // At the lowest rate the broker allows, 256 KiB takes about 4 s: the
    // close waits behind it, and the pair ends after both have left.
    let hub = HubConfig {
        relay: RelayConfig {
            rate: 64 * 1024,
            ..RelayConfig::default()
        },
        ..HubConfig::default()
    };
    let mut sim = network_on(hub, 2, 66, |c| c.relay = RelayPolicy::Always);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let (main_a, main_b) = (
        sim.peers[0].engine.conn_channel(ca).unwrap(),
        sim.peers[1].engine.conn_channel(cb).unwrap(),
    );
    let now = sim.now;
    sim.with(0, |e| {
        e.send(main_a, PayloadType::Binary, vec![1; 256 * 1024], false, now)
            .unwrap();
        e.disconnect(ca, "done", now);
    });
    assert!(sim.run_while(10_000.0, |s| s.peers[1].engine.conn_state(cb)
        == ConnState::Closed));
    assert_eq!(messages(&sim, 1, main_b), vec![vec![1; 256 * 1024]]);
    assert!(sim.saw(
        1,
        |e| matches!(e, Event::Closed { reason, .. } if reason.contains("done"))
    ));
    sim.run_for(500.0);
    let stats = sim.broker.hub.stats();
    assert_eq!((stats.relay_pairs, stats.relay_pending), (0, 0));
}
