//! A broker process restarted on the same state directory: the owners of
//! ids win them back with their resume tokens, within the grace window
//! after the restart, even from a newcomer who registered the id first;
//! wrong, borrowed and late tokens are refused by name. The key file the
//! tokens are signed with is made private and kept; a state directory
//! that cannot be used is reported and the broker still serves.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::BrokerProcess;

/// A fresh folder of this test's own under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "peerwire-restart-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn after_a_restart_owners_win_their_ids_back_and_wrong_or_late_tokens_are_refused() {
    let dir = scratch("owners");
    let state = dir.join("state");
    let grace_ms = 3_000;
    let mut broker = BrokerProcess::start(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--grace-ms",
        &grace_ms.to_string(),
    ]);
    let (alice, alices) = broker.registered("alice").await;
    let (bob, bobs) = broker.registered("bob").await;
    let (carol, carols) = broker.registered("carol").await;
    broker.restart();
    let restarted = Instant::now();
    drop((alice, bob, carol));

    // Alice's id is free: her token takes it back.
    let mut alice = broker.client().await;
    let r = alice
        .request(json!({"type": "register", "id": "alice", "resumeToken": alices}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some(false)),
        "{r}"
    );

    // A newcomer took bob's id first; bob's token wins it from him.
    let (mut newcomer, _) = broker.registered("bob").await;
    let mut bob = broker.client().await;
    let r = bob
        .request(json!({"type": "register", "id": "bob", "resumeToken": bobs}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["resumed"].as_bool()),
        (Some("registered"), Some(false)),
        "{r}"
    );
    let (code, reason) = newcomer.close_frame().await.expect("a close frame");
    assert_eq!(code, 4005);
    assert!(reason.contains("owner of this id came back"), "{reason}");
    // The same token once more: the id is bob's now.
    let mut thief = broker.client().await;
    thief
        .request_err(
            json!({"type": "register", "id": "bob", "resumeToken": bobs}),
            "bad-resume-token",
        )
        .await;

    // Carol's id was taken too; a forged token and someone else's do not
    // win it, and neither does hers once the window is over.
    let (mut squatter, _) = broker.registered("carol").await;
    let last = carols.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &carols[..carols.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    for wrong in [forged, alices.clone()] {
        thief
            .request_err(
                json!({"type": "register", "id": "carol", "resumeToken": wrong}),
                "bad-resume-token",
            )
            .await;
    }
    assert!(
        restarted.elapsed() < Duration::from_millis(grace_ms),
        "the checks above ran inside the window"
    );
    // The window is a span of time after the restart: wait it out (plus a
    // margin for when the process counted its start).
    tokio::time::sleep_until(
        tokio::time::Instant::from_std(restarted) + Duration::from_millis(grace_ms + 500),
    )
    .await;
    let refused = thief
        .request_err(
            json!({"type": "register", "id": "carol", "resumeToken": carols}),
            "bad-resume-token",
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("grace window after the restart"),
        "{refused}"
    );
    // The squatter and the owners are still online.
    for c in [&mut squatter, &mut alice, &mut bob] {
        assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_key_file_is_made_private_and_kept_and_an_unusable_state_dir_is_reported() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch("key");
    let state = dir.join("made/by/the/broker");
    let mut broker = BrokerProcess::start(&["--state-dir", state.to_str().unwrap()]);
    let key_file = state.join("resume-key");
    assert!(broker.log_contains("made now").await, "{}", broker.log());
    let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&state), 0o700);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64, "32 bytes in hex");
    broker.restart();
    assert!(
        broker.log_contains("kept from before").await,
        "{}",
        broker.log()
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the same key"
    );
    drop(broker);

    // A state directory under a file cannot be made (even by root).
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let unusable = file.join("state");
    let broker = BrokerProcess::start(&["--state-dir", unusable.to_str().unwrap()]);
    assert!(
        broker.log_contains("cannot use --state-dir").await,
        "{}",
        broker.log()
    );
    let log = broker.log();
    assert!(log.contains("ids do not survive a restart"), "{log}");
    assert_eq!(
        log.matches("cannot use --state-dir").count(),
        1,
        "said once: {log}"
    );
    let (mut c, _) = broker.registered("alice").await;
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
    let _ = std::fs::remove_dir_all(&dir);
}
