//! Media on the simulated network: tracks added on both sides at once
//! renegotiate through perfect negotiation without a glare error, removed
//! and muted tracks show on the remote, and calls are answered or
//! rejected by name. The fake RTCPeerConnection models transceivers and
//! mids as JSEP has them (see `peerwire::core::sim`).

mod simnet;

use peerwire::core::engine::{
    ConnId, ConnState, Event, RelayPolicy, Reply, TrackEndReason, TrackId,
};
use peerwire::core::error::PeerError;
use peerwire::core::sim::Sim;
use simnet::{HubBroker, connect, listen_all, network, network_with};

/// Every track `a` sends on `ca` is received by `b` on `cb` (by mid), and
/// nothing else is.
fn all_arrived(sim: &Sim<HubBroker>, a: usize, ca: ConnId, b: usize, cb: ConnId) -> bool {
    let sent = sim.peers[a].engine.local_tracks(ca);
    let got: Vec<String> = sim.peers[b]
        .engine
        .remote_tracks(cb)
        .into_iter()
        .map(|(mid, _)| mid)
        .collect();
    sent.len() == got.len()
        && sent
            .iter()
            .all(|(_, mid)| mid.as_ref().is_some_and(|m| got.contains(m)))
}

fn count(sim: &Sim<HubBroker>, i: usize, f: impl Fn(&Event) -> bool) -> usize {
    sim.peers[i].events.iter().filter(|e| f(e)).count()
}

fn no_failure(sim: &Sim<HubBroker>, i: usize) -> bool {
    !sim.saw(i, |e| {
        matches!(
            e,
            Event::Error(_)
                | Event::Closed { .. }
                | Event::TrackEnded { .. }
                | Event::ConnError { .. }
        )
    })
}

/// Both sides add a track at the same moment, ten rounds in a row, with
/// jittered signals, over many seeds: every track ends up on both sides,
/// each `track` event once, and no glare error or close on the way.
#[test]
fn both_sides_adding_tracks_at_once_for_ten_rounds_end_with_every_track_on_both_sides() {
    for seed in 0..40 {
        let mut sim = network(2, 1000 + seed);
        sim.jitter = 8.0;
        listen_all(&mut sim);
        let (ca, cb) = connect(&mut sim, 0, 1);
        for round in 0..10 {
            let kind = if round % 3 == 2 { "audio" } else { "video" };
            let now = sim.now;
            sim.with(0, |e| e.add_track(ca, kind, vec![format!("a{round}")], now))
                .expect("p0 adds");
            sim.with(1, |e| e.add_track(cb, kind, vec![format!("b{round}")], now))
                .expect("p1 adds");
            let settled = sim.run_while(5_000.0, |s| {
                all_arrived(s, 0, ca, 1, cb) && all_arrived(s, 1, cb, 0, ca)
            });
            assert!(
                settled,
                "seed {seed} round {round}: p0 sends {:?}, p1 receives {:?}; p1 sends {:?}, p0 receives {:?}",
                sim.peers[0].engine.local_tracks(ca),
                sim.peers[1].engine.remote_tracks(cb),
                sim.peers[1].engine.local_tracks(cb),
                sim.peers[0].engine.remote_tracks(ca),
            );
        }
        // Let every late offer settle: nothing changes any more.
        sim.run_for(2_000.0);
        assert!(all_arrived(&sim, 0, ca, 1, cb) && all_arrived(&sim, 1, cb, 0, ca));
        for (i, c) in [(0, ca), (1, cb)] {
            assert!(
                no_failure(&sim, i),
                "seed {seed}: p{i} {:?}",
                sim.peers[i].events
            );
            assert_eq!(sim.peers[i].engine.conn_state(c), ConnState::Open);
            assert_eq!(count(&sim, i, |e| matches!(e, Event::Track { .. })), 10);
            // Each track came in its own stream, announced once.
            assert_eq!(
                count(&sim, i, |e| matches!(e, Event::MediaStream { .. })),
                10
            );
        }
        let streams: Vec<Vec<String>> = sim.peers[1]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Track { streams, .. } => Some(streams.clone()),
                _ => None,
            })
            .collect();
        for round in 0..10 {
            assert!(
                streams.contains(&vec![format!("a{round}")]),
                "seed {seed}: the sender's stream ids arrive with its tracks: {streams:?}"
            );
        }
    }
}

/// A removed track ends on the remote (and only that one); a muted one
/// says so there; the user's other tracks keep going.
#[test]
fn removed_tracks_end_and_muted_tracks_show_on_the_remote() {
    let mut sim = network(2, 5);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let now = sim.now;
    let audio = sim
        .with(0, |e| e.add_track(ca, "audio", vec!["s".into()], now))
        .unwrap();
    let video = sim
        .with(0, |e| e.add_track(ca, "video", vec!["s".into()], now))
        .unwrap();
    assert!(sim.run_while(3_000.0, |s| all_arrived(s, 0, ca, 1, cb)));
    assert_eq!(
        count(
            &sim,
            1,
            |e| matches!(e, Event::MediaStream { stream, .. } if stream == "s")
        ),
        1,
        "one stream for two tracks"
    );
    let mid_of = |sim: &Sim<HubBroker>, t: TrackId| {
        sim.peers[0]
            .engine
            .local_tracks(ca)
            .into_iter()
            .find(|(x, _)| *x == t)
            .and_then(|(_, m)| m)
            .unwrap()
    };
    let audio_mid = mid_of(&sim, audio);
    let video_mid = mid_of(&sim, video);

    sim.with(0, |e| e.set_track_muted(ca, audio, true)).unwrap();
    assert!(sim.run_while(1_000.0, |s| s.saw(1, |e| matches!(
        e,
        Event::TrackMuted { mid, muted: true, .. } if *mid == audio_mid
    ))));
    sim.with(0, |e| e.set_track_muted(ca, audio, false))
        .unwrap();
    assert!(sim.run_while(1_000.0, |s| s.saw(1, |e| matches!(
        e,
        Event::TrackMuted { mid, muted: false, .. } if *mid == audio_mid
    ))));

    let now = sim.now;
    sim.with(0, |e| e.remove_track(ca, video, now)).unwrap();
    assert!(sim.run_while(1_000.0, |s| s.saw(1, |e| matches!(
        e,
        Event::TrackEnded { mid, reason: TrackEndReason::Removed, .. } if *mid == video_mid
    ))));
    sim.run_for(1_000.0);
    assert_eq!(
        sim.peers[1].engine.remote_tracks(cb),
        vec![(audio_mid.clone(), false)]
    );
    assert_eq!(count(&sim, 1, |e| matches!(e, Event::TrackEnded { .. })), 1);
    // Removing it twice is a named error.
    let now = sim.now;
    let again = sim.with(0, |e| e.remove_track(ca, video, now));
    assert!(matches!(again, Err(PeerError::InvalidArgument(_))));

    // Closing the connection forgets every track on both sides and
    // releases the browser objects.
    let now = sim.now;
    sim.with(0, |e| e.disconnect(ca, "done", now));
    sim.run_for(6_000.0);
    assert!(sim.peers[1].engine.remote_tracks(cb).is_empty());
    assert!(sim.peers[0].engine.local_tracks(ca).is_empty());
    assert_eq!(sim.live_objects(0), (0, 0));
    assert_eq!(sim.live_objects(1), (0, 0));
}

fn call_outcome(
    sim: &Sim<HubBroker>,
    i: usize,
    op: peerwire::core::engine::OpId,
) -> Option<Result<Reply, PeerError>> {
    sim.outcome(i, op).cloned()
}

/// A call opens the connection, reaches the callee once it is open, and
/// resolves when answered; both sides' tracks then flow. A rejected call
/// fails by name with the callee's reason.
#[test]
fn calls_are_answered_with_media_or_rejected_by_name() {
    let mut sim = network(2, 9);
    listen_all(&mut sim);
    let now = sim.now;
    let meta = peerwire::protocol::json::Json(r#"{"topic":"standup"}"#.into());
    let op = sim
        .with(0, |e| e.call("p1", Some(meta.clone()), now))
        .unwrap();
    assert!(sim.run_while(3_000.0, |s| {
        s.saw(1, |e| matches!(e, Event::IncomingCall { .. }))
    }));
    let (cb, call, got) = sim.peers[1]
        .events
        .iter()
        .find_map(|e| match e {
            Event::IncomingCall {
                conn,
                call,
                metadata,
            } => Some((*conn, *call, metadata.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(got, Some(meta));
    assert_eq!(
        sim.peers[1].engine.conn_state(cb),
        ConnState::Open,
        "shown once open"
    );
    assert!(call_outcome(&sim, 0, op).is_none(), "waits for the answer");
    // The callee answers and adds its track at once; the caller adds its
    // own when the answer arrives (as the SDK's call() does).
    let now = sim.now;
    sim.with(1, |e| {
        e.answer_call(cb, call)?;
        e.add_track(cb, "video", vec!["callee".into()], now)
    })
    .unwrap();
    assert!(sim.run_while(1_000.0, |s| call_outcome(s, 0, op).is_some()));
    let ca = match call_outcome(&sim, 0, op) {
        Some(Ok(Reply::Connection(c))) => c,
        other => panic!("{other:?}"),
    };
    let now = sim.now;
    sim.with(0, |e| e.add_track(ca, "video", vec!["caller".into()], now))
        .unwrap();
    assert!(sim.run_while(3_000.0, |s| {
        all_arrived(s, 0, ca, 1, cb)
            && all_arrived(s, 1, cb, 0, ca)
            && !s.peers[0].engine.local_tracks(ca).is_empty()
            && !s.peers[1].engine.local_tracks(cb).is_empty()
    }));
    // Answering twice is a named error.
    assert!(matches!(
        sim.with(1, |e| e.answer_call(cb, call)),
        Err(PeerError::InvalidArgument(_))
    ));

    // A second call on the same connection, rejected.
    let now = sim.now;
    let op2 = sim.with(0, |e| e.call("p1", None, now)).unwrap();
    assert!(sim.run_while(1_000.0, |s| count(s, 1, |e| matches!(
        e,
        Event::IncomingCall { .. }
    )) == 2));
    let call2 = sim.peers[1]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
        .nth(1)
        .unwrap();
    sim.with(1, |e| e.reject_call(cb, call2, "busy")).unwrap();
    assert!(sim.run_while(1_000.0, |s| call_outcome(s, 0, op2).is_some()));
    match call_outcome(&sim, 0, op2) {
        Some(Err(PeerError::CallRejected { id, reason })) => {
            assert_eq!((id.as_str(), reason.as_str()), ("p1", "busy"));
        }
        other => panic!("{other:?}"),
    }

    // A call whose connection closes before the answer fails with it.
    let now = sim.now;
    let op3 = sim.with(0, |e| e.call("p1", None, now)).unwrap();
    sim.run_for(200.0);
    let now = sim.now;
    sim.with(1, |e| e.disconnect(cb, "hang up", now));
    assert!(sim.run_while(1_000.0, |s| call_outcome(s, 0, op3).is_some()));
    assert!(matches!(
        call_outcome(&sim, 0, op3),
        Some(Err(PeerError::Closed(_)))
    ));
}

/// Media needs a WebRTC path: on the broker's relay, adding a track or
/// calling fails by name at once.
#[test]
fn media_on_a_relayed_connection_is_refused_by_name() {
    let mut sim = network_with(2, 3, |c| c.relay = RelayPolicy::Always);
    listen_all(&mut sim);
    let (ca, _) = connect(&mut sim, 0, 1);
    let now = sim.now;
    let add = sim.with(0, |e| e.add_track(ca, "audio", vec![], now));
    assert!(
        matches!(add, Err(PeerError::MediaUnavailable(_))),
        "{add:?}"
    );
    let call = sim.with(0, |e| e.call("p1", None, now));
    assert!(
        matches!(call, Err(PeerError::MediaUnavailable(_))),
        "{call:?}"
    );
}

/// The mid `track` (sent by peer `i` on `c`) was negotiated on.
fn mid_of(sim: &Sim<HubBroker>, i: usize, c: ConnId, track: TrackId) -> String {
    sim.peers[i]
        .engine
        .local_tracks(c)
        .into_iter()
        .find(|(x, _)| *x == track)
        .and_then(|(_, m)| m)
        .expect("the track has a mid")
}

/// What the user's own tracks do reaches the remote: a track that ended
/// by itself (stopped, device gone) ends there with `Ended`, not
/// `Removed`; a source's mute and unmute show as `TrackMuted`, and a
/// track the user also muted stays muted until both let go. Reports about
/// a track no longer sent are ignored.
#[test]
fn a_local_tracks_own_end_and_mute_reach_the_remote() {
    let mut sim = network(2, 21);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let now = sim.now;
    let cam = sim
        .with(0, |e| e.add_track(ca, "video", vec!["s".into()], now))
        .unwrap();
    let mic = sim
        .with(0, |e| e.add_track(ca, "audio", vec!["s".into()], now))
        .unwrap();
    assert!(sim.run_while(3_000.0, |s| all_arrived(s, 0, ca, 1, cb)));
    let (cam_mid, mic_mid) = (mid_of(&sim, 0, ca, cam), mid_of(&sim, 0, ca, mic));
    let muted_events = |s: &Sim<HubBroker>, mid: &str| -> Vec<bool> {
        s.peers[1]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::TrackMuted { mid: m, muted, .. } if m == mid => Some(*muted),
                _ => None,
            })
            .collect()
    };

    // The source stops producing, then the user mutes too: one
    // `track-muted`. The source comes back: still muted (the user's
    // mute holds). The user unmutes: `track-unmuted`.
    sim.with(0, |e| e.handle_local_track_muted(ca, mic, true));
    assert!(sim.run_while(1_000.0, |s| muted_events(s, &mic_mid) == [true]));
    sim.with(0, |e| e.set_track_muted(ca, mic, true)).unwrap();
    sim.with(0, |e| e.handle_local_track_muted(ca, mic, false));
    sim.run_for(500.0);
    assert_eq!(muted_events(&sim, &mic_mid), [true]);
    assert_eq!(
        sim.peers[1].engine.remote_tracks(cb),
        vec![(cam_mid.clone(), false), (mic_mid.clone(), true)]
    );
    sim.with(0, |e| e.set_track_muted(ca, mic, false)).unwrap();
    assert!(sim.run_while(1_000.0, |s| muted_events(s, &mic_mid) == [true, false]));

    // The camera's track ends on its own: the remote's ends with `Ended`,
    // the sender is gone (the driver removes it), the microphone goes on.
    let now = sim.now;
    sim.with(0, |e| e.handle_local_track_ended(ca, cam, now));
    assert!(sim.run_while(1_000.0, |s| s.saw(1, |e| matches!(
        e,
        Event::TrackEnded { mid, reason: TrackEndReason::Ended, .. } if *mid == cam_mid
    ))));
    sim.run_for(1_000.0);
    assert_eq!(
        sim.peers[1].engine.remote_tracks(cb),
        vec![(mic_mid.clone(), false)]
    );
    assert_eq!(sim.peers[0].engine.local_tracks(ca).len(), 1);
    // A second report of it (its `ended` after `stop()`), or one about
    // a track removed meanwhile, changes nothing.
    let now = sim.now;
    sim.with(0, |e| {
        e.handle_local_track_ended(ca, cam, now);
        e.handle_local_track_muted(ca, cam, true);
    });
    let now = sim.now;
    sim.with(0, |e| e.remove_track(ca, mic, now)).unwrap();
    sim.with(0, |e| e.handle_local_track_ended(ca, mic, now));
    assert!(sim.run_while(1_000.0, |s| s.saw(1, |e| matches!(
        e,
        Event::TrackEnded { mid, reason: TrackEndReason::Removed, .. } if *mid == mic_mid
    ))));
    sim.run_for(1_000.0);
    assert_eq!(count(&sim, 1, |e| matches!(e, Event::TrackEnded { .. })), 2);
    assert!(sim.peers[1].engine.remote_tracks(cb).is_empty());
    assert!(!sim.saw(1, |e| matches!(e, Event::Closed { .. } | Event::Error(_))));
    // A new track after all that arrives as usual (mids may be reused).
    let now = sim.now;
    sim.with(0, |e| e.add_track(ca, "video", vec!["t".into()], now))
        .unwrap();
    assert!(sim.run_while(3_000.0, |s| all_arrived(s, 0, ca, 1, cb)
        && s.peers[1].engine.remote_tracks(cb).len() == 1));
}

/// An open connection carrying media in both directions loses its
/// direct path for good and moves to the broker's relay: the connection
/// stays open, each side's remote tracks end with `Relay`, each side's
/// senders are forgotten, a call waiting for its answer fails with
/// `MediaUnavailable`, and each side gets one `ConnError` saying the
/// media stopped. A connection with no media moves without one.
#[test]
fn media_lost_on_the_move_to_the_relay_is_reported_on_both_sides() {
    let mut sim = network_with(3, 31, |c| c.direct_retry = 0);
    listen_all(&mut sim);
    let (ca, cb) = connect(&mut sim, 0, 1);
    let (pa, pc) = connect(&mut sim, 0, 2);
    let now = sim.now;
    sim.with(0, |e| e.add_track(ca, "video", vec!["a".into()], now))
        .unwrap();
    sim.with(0, |e| e.add_track(ca, "audio", vec!["a".into()], now))
        .unwrap();
    sim.with(1, |e| e.add_track(cb, "video", vec!["b".into()], now))
        .unwrap();
    assert!(sim.run_while(3_000.0, |s| all_arrived(s, 0, ca, 1, cb)
        && all_arrived(s, 1, cb, 0, ca)));
    // p1 calls p0 on the same connection; p0 does not answer yet.
    let now = sim.now;
    let call = sim.with(1, |e| e.call("p0", None, now)).unwrap();
    assert!(sim.run_while(1_000.0, |s| {
        s.saw(0, |e| matches!(e, Event::IncomingCall { .. }))
    }));

    sim.break_path(0, false);
    sim.no_webrtc = true;
    let moved = sim.run_while(40_000.0, |s| {
        s.peers[0].engine.is_relayed(ca)
            && s.peers[1].engine.is_relayed(cb)
            && s.peers[0].engine.is_relayed(pa)
            && s.peers[2].engine.is_relayed(pc)
    });
    assert!(moved, "both connections moved to the relay");
    sim.run_for(2_000.0);

    let relay_ends = |s: &Sim<HubBroker>, i: usize| {
        count(s, i, |e| {
            matches!(
                e,
                Event::TrackEnded {
                    reason: TrackEndReason::Relay,
                    ..
                }
            )
        })
    };
    let media_errors = |s: &Sim<HubBroker>, i: usize, c: ConnId| {
        count(s, i, |e| {
            matches!(e, Event::ConnError { conn, error: PeerError::MediaUnavailable(m) }
                if *conn == c && m.contains("relay"))
        })
    };
    assert_eq!(relay_ends(&sim, 0), 1, "p0 received one track");
    assert_eq!(relay_ends(&sim, 1), 2, "p1 received two tracks");
    assert_eq!(media_errors(&sim, 0, ca), 1);
    assert_eq!(media_errors(&sim, 1, cb), 1);
    for (i, c) in [(0, ca), (1, cb)] {
        assert_eq!(sim.peers[i].engine.conn_state(c), ConnState::Open);
        assert!(sim.peers[i].engine.local_tracks(c).is_empty());
        assert!(sim.peers[i].engine.remote_tracks(c).is_empty());
        assert!(!sim.saw(i, |e| matches!(e, Event::Closed { .. })));
    }
    assert!(matches!(
        sim.outcome(1, call),
        Some(Err(PeerError::MediaUnavailable(_)))
    ));
    // The connection without media: moved, nothing to report.
    assert_eq!(media_errors(&sim, 0, pa), 0);
    assert_eq!(count(&sim, 2, |e| matches!(e, Event::ConnError { .. })), 0);
    // And media stays refused by name while relayed.
    let now = sim.now;
    assert!(matches!(
        sim.with(0, |e| e.add_track(ca, "video", vec![], now)),
        Err(PeerError::MediaUnavailable(_))
    ));
}
