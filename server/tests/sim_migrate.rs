//! A live connection moving between paths, on the simulated network with
//! the broker's own hub: per-channel acknowledgements keep what was sent
//! until the remote has it; when ICE restarts are used up the connection
//! moves to the broker's relay, later back to a direct path, and onto a new
//! relay pair after a broker link drop. Numbered messages go both ways the
//! whole time: none lost, none twice, all in order.

mod simnet;

use peerwire::core::engine::{ChanId, ConnId, ConnState, Event, Listening, Reply};
use peerwire::core::sim::Sim;
use peerwire::protocol::frames::PayloadType;
use simnet::{HubBroker, connect, listen_all, messages, network_with, send};

/// The numbers in the messages peer `i` received on `chan`.
fn numbers(sim: &Sim<HubBroker>, i: usize, chan: ChanId) -> Vec<u32> {
    messages(sim, i, chan)
        .iter()
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Two channels, one at each end, with the numbers sent on each so far.
struct Flow {
    a: ChanId,
    b: ChanId,
    sent_a: u32,
    sent_b: u32,
}

impl Flow {
    fn new(sim: &Sim<HubBroker>, ca: ConnId, cb: ConnId) -> Self {
        Self {
            a: sim.peers[0].engine.conn_channel(ca).unwrap(),
            b: sim.peers[1].engine.conn_channel(cb).unwrap(),
            sent_a: 0,
            sent_b: 0,
        }
    }

    /// One numbered message each way (1 KiB, so the buffers hold some).
    fn step(&mut self, sim: &mut Sim<HubBroker>) {
        let mut m = vec![0u8; 1024];
        m[..4].copy_from_slice(&self.sent_a.to_be_bytes());
        send(sim, 0, self.a, &m);
        self.sent_a += 1;
        m[..4].copy_from_slice(&self.sent_b.to_be_bytes());
        send(sim, 1, self.b, &m);
        self.sent_b += 1;
    }

    /// Sends one message each way every `gap` ms for `ms`, running `at`
    /// after the first `k` steps.
    fn run(&mut self, sim: &mut Sim<HubBroker>, ms: f64, gap: f64) {
        let until = sim.now + ms;
        while sim.now < until {
            self.step(sim);
            sim.run_for(gap);
        }
    }

    /// Waits until both sides have everything, then checks that each got
    /// every number once, in order.
    fn settled(&self, sim: &mut Sim<HubBroker>, ms: f64) {
        let (a, b, na, nb) = (self.a, self.b, self.sent_a, self.sent_b);
        sim.run_while(ms, |s| {
            numbers(s, 1, b).len() >= na as usize && numbers(s, 0, a).len() >= nb as usize
        });
        assert_eq!(numbers(sim, 1, b), (0..na).collect::<Vec<u32>>(), "p0 → p1");
        assert_eq!(numbers(sim, 0, a), (0..nb).collect::<Vec<u32>>(), "p1 → p0");
    }
}

fn closed(sim: &Sim<HubBroker>, i: usize) -> bool {
    sim.saw(i, |e| matches!(e, Event::Closed { .. }))
}

/// Two peers whose direct path breaks for good at 1/3 of a 30 s stream;
/// nothing else (UDP blocked from then on).
fn moved_to_the_relay(seed: u64, direct_retry: u64) -> (Sim<HubBroker>, ConnId, ConnId, Flow) {
    let mut sim = network_with(2, seed, |c| c.direct_retry = direct_retry);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let mut flow = Flow::new(&sim, ca, cb);
    flow.run(&mut sim, 3_000.0, 50.0);
    sim.break_path(0, false);
    sim.no_webrtc = true;
    flow.run(&mut sim, 27_000.0, 50.0);
    (sim, ca, cb, flow)
}

#[test]
fn acknowledgements_keep_the_resend_buffer_bounded_and_release_it() {
    // 2 MiB through a channel that may keep 256 KiB unacknowledged: the
    // send waits for acknowledgements instead of keeping it all, and once
    // everything has arrived nothing is kept.
    let mut sim = network_with(2, 90, |c| c.resend_buffer = 256 * 1024);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let (a, b) = (
        sim.peers[0].engine.conn_channel(ca).unwrap(),
        sim.peers[1].engine.conn_channel(cb).unwrap(),
    );
    let data: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let now = sim.now;
    let d = data.clone();
    let op = sim
        .with(0, |e| e.send(a, PayloadType::Binary, d, false, now))
        .unwrap();
    let mut most = 0;
    let arrived = sim.run_while(10_000.0, |s| {
        most = most.max(s.peers[0].engine.unacked_bytes(a));
        !messages(s, 1, b).is_empty()
    });
    assert!(arrived, "2 MiB arrived");
    assert_eq!(messages(&sim, 1, b), vec![data]);
    assert!(matches!(sim.outcome(0, op), Some(Ok(Reply::Done))));
    assert!(most > 0, "frames were kept until acknowledged");
    assert!(
        most <= 256 * 1024 + 16 * 1024,
        "kept at most resendBuffer (+ one frame): {most}"
    );
    // The last acknowledgement comes within its delay (50 ms).
    assert!(sim.run_while(200.0, |s| s.peers[0].engine.unacked_bytes(a) == 0));
}

#[test]
fn restarts_used_up_move_a_live_connection_to_the_relay_with_nothing_lost() {
    let (mut sim, ca, cb, flow) = moved_to_the_relay(91, 0);
    flow.settled(&mut sim, 10_000.0);
    for (i, c) in [(0, ca), (1, cb)] {
        assert_eq!(sim.peers[i].engine.conn_state(c), ConnState::Open);
        assert!(sim.peers[i].engine.is_relayed(c), "p{i} is on the relay");
        assert!(!closed(&sim, i), "p{i} saw no close");
    }
    assert_eq!(
        sim.live_objects(0).0,
        0,
        "the RTCPeerConnection was released"
    );
    assert!(sim.restarts[0] >= 3, "the restarts came first");
    // Frames were lost with the path: some were sent again.
    assert!(flow.sent_a > 500 && flow.sent_b > 500);
}

#[test]
fn a_stream_moves_to_the_relay_with_its_messages() {
    let mut sim = network_with(2, 92, |c| c.direct_retry = 0);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let now = sim.now;
    let op = sim.with(0, |e| e.open_stream(ca, "s", None, now)).unwrap();
    assert!(sim.run_while(2_000.0, |s| s.outcome(0, op).is_some()));
    let Some(Ok(Reply::Stream(s0))) = sim.outcome(0, op).cloned() else {
        panic!("{:?}", sim.outcome(0, op));
    };
    let s1 = sim.peers[1]
        .events
        .iter()
        .find_map(|e| match e {
            Event::IncomingStream { chan, .. } => Some(*chan),
            _ => None,
        })
        .expect("p1 saw the stream");
    let now = sim.now;
    sim.with(1, |e| e.set_listening(Listening::Chan(s1), true, now));
    let mut sent = 0u32;
    for k in 0..600u32 {
        if k == 60 {
            sim.break_path(1, false);
            sim.no_webrtc = true;
        }
        send(&mut sim, 0, s0, &k.to_be_bytes());
        sent += 1;
        sim.run_for(50.0);
    }
    assert!(sim.run_while(10_000.0, |s| numbers(s, 1, s1).len() >= sent as usize));
    assert_eq!(numbers(&sim, 1, s1), (0..sent).collect::<Vec<u32>>());
    assert!(sim.peers[0].engine.is_relayed(ca) && sim.peers[1].engine.is_relayed(cb));
    assert!(!closed(&sim, 0) && !closed(&sim, 1));
}

#[test]
fn a_relayed_connection_moves_back_to_a_direct_path_when_one_is_found() {
    let (mut sim, ca, cb, mut flow) = moved_to_the_relay(93, 5_000);
    assert!(sim.peers[0].engine.is_relayed(ca));
    // UDP still blocked: tries fail, and the relay carries on.
    flow.run(&mut sim, 10_000.0, 50.0);
    assert!(sim.peers[0].engine.is_relayed(ca));
    // The network heals: a later try finds a direct path.
    sim.no_webrtc = false;
    flow.run(&mut sim, 40_000.0, 50.0);
    flow.settled(&mut sim, 10_000.0);
    for (i, c) in [(0, ca), (1, cb)] {
        assert_eq!(sim.peers[i].engine.conn_state(c), ConnState::Open);
        assert!(!sim.peers[i].engine.is_relayed(c), "p{i} left the relay");
        assert_eq!(sim.live_objects(i).0, 1, "p{i} has an RTCPeerConnection");
        assert!(!closed(&sim, i));
    }
    sim.run_for(500.0);
    let stats = sim.broker.hub.stats();
    assert_eq!(
        (stats.relay_pairs, stats.relay_pending),
        (0, 0),
        "the relay pair was ended"
    );
}

#[test]
fn a_relay_pair_lost_with_a_broker_link_forms_again_with_nothing_lost() {
    for who in [0, 1] {
        let (mut sim, ca, cb, mut flow) = moved_to_the_relay(94 + who as u64, 0);
        sim.set_online(who, false);
        flow.run(&mut sim, 1_000.0, 50.0);
        sim.set_online(who, true);
        flow.run(&mut sim, 10_000.0, 50.0);
        flow.settled(&mut sim, 10_000.0);
        assert!(sim.saw(who, |e| matches!(
            e,
            Event::Registered {
                resumed: true,
                first: false,
                ..
            }
        )));
        for (i, c) in [(0, ca), (1, cb)] {
            assert_eq!(sim.peers[i].engine.conn_state(c), ConnState::Open, "p{i}");
            assert!(sim.peers[i].engine.is_relayed(c));
            assert!(!closed(&sim, i), "p{i} saw no close");
        }
    }
}
