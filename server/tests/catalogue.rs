//! The bad-input catalogue, broker half: every named bad input, what it must
//! produce (an error code, or a close code), and that the broker keeps
//! serving afterwards. The SDK-core half is `core::catalogue`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Broker, Client, Closed};

/// How the client is prepared before the bad input.
#[derive(Clone)]
enum Setup {
    Fresh,
    Registered,
    /// Connects with this access token in the URL.
    Token(String),
    /// Registered, and a member of a room of its own, `own-<case>` (the
    /// `ROOM` in an input's text).
    InRoom,
}

/// Stands for the case's own room in inputs (see [`Setup::InRoom`]).
const ROOM: &str = "ROOM";

const SECRET: &str = "catalogue-secret-catalogue-secret";

fn token(claims: Value) -> String {
    support::mint_token(SECRET, &claims)
}

enum Input {
    Text(String),
    Binary(Vec<u8>),
    /// Many copies of one frame.
    Flood(&'static str, usize),
    /// These frames, in order.
    Many(Vec<String>),
    /// Nothing at all.
    Silence,
}

enum Expect {
    Error(&'static str),
    Close(u16),
    /// An error with this code after other replies (those of the inputs
    /// before the one refused).
    ErrorAmong(&'static str),
}

struct Case {
    name: &'static str,
    setup: Setup,
    input: Input,
    expect: Expect,
}

fn text(v: &str) -> Input {
    Input::Text(v.to_string())
}

fn msg(v: Value) -> Input {
    Input::Text(v.to_string())
}

fn catalogue() -> Vec<Case> {
    use Expect::*;
    use Setup::*;
    let case = |name, setup, input, expect| Case {
        name,
        setup,
        input,
        expect,
    };
    vec![
        case("not JSON", Registered, text("{oops"), Error("bad-json")),
        case("empty frame", Registered, text(""), Error("bad-json")),
        case(
            "JSON array",
            Registered,
            text("[1,2,3]"),
            Error("bad-message"),
        ),
        case(
            "JSON string",
            Registered,
            text("\"ping\""),
            Error("bad-message"),
        ),
        case("JSON null", Registered, text("null"), Error("bad-message")),
        case(
            "object without type",
            Registered,
            msg(json!({"rid": 1})),
            Error("bad-message"),
        ),
        case(
            "type is a number",
            Registered,
            msg(json!({"type": 3, "rid": 1})),
            Error("bad-message"),
        ),
        case(
            "unknown type",
            Registered,
            msg(json!({"type": "teleport", "rid": 1})),
            Error("unknown-type"),
        ),
        case(
            "missing rid",
            Registered,
            msg(json!({"type": "ping"})),
            Error("bad-message"),
        ),
        case(
            "negative rid",
            Registered,
            msg(json!({"type": "ping", "rid": -1})),
            Error("bad-message"),
        ),
        case(
            "rid above u64",
            Registered,
            text(r#"{"type":"ping","rid":18446744073709551616}"#),
            Error("bad-message"),
        ),
        case(
            "signal without data",
            Registered,
            msg(json!({"type": "signal", "rid": 1, "to": "x"})),
            Error("bad-message"),
        ),
        case(
            "find id is a number",
            Registered,
            msg(json!({"type": "find", "rid": 1, "id": 7})),
            Error("bad-message"),
        ),
        case(
            "ttl is negative",
            Registered,
            msg(json!({"type": "set", "rid": 1, "room": "r", "key": "k", "value": 1, "ttlMs": -5})),
            Error("bad-message"),
        ),
        case(
            "binary frame",
            Registered,
            Input::Binary(vec![0, 159, 146, 150]),
            Error("bad-message"),
        ),
        case(
            "nesting 5,000 deep",
            Registered,
            text(&"[".repeat(5_000)),
            Error("bad-json"),
        ),
        case(
            "lone surrogate",
            Registered,
            text(r#"{"type":"find","rid":1,"id":"\ud800"}"#),
            Error("bad-json"),
        ),
        case(
            "invalid id at register",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "id": "has space"})),
            Error("invalid-id"),
        ),
        case(
            "id of 65 characters",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "id": "a".repeat(65)})),
            Error("invalid-id"),
        ),
        case(
            "right-to-left override in id",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "id": "\u{202e}evil"})),
            Error("invalid-id"),
        ),
        case(
            "id already taken",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "id": "owner"})),
            Error("id-taken"),
        ),
        case(
            "forged resume token",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "id": "owner", "resumeToken": "forged"})),
            Error("bad-resume-token"),
        ),
        case(
            "token without id",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "resumeToken": "t"})),
            Error("bad-message"),
        ),
        case(
            "request before register",
            Fresh,
            msg(json!({"type": "join", "rid": 1, "room": "r"})),
            Error("not-registered"),
        ),
        case(
            "hostname without its field",
            Registered,
            msg(json!({"type": "register-hostname", "rid": 1})),
            Error("bad-message"),
        ),
        case(
            "hostname breaking the id rules",
            Registered,
            msg(json!({"type": "register-hostname", "rid": 1, "hostname": "../etc"})),
            Error("invalid-hostname"),
        ),
        case(
            "lookup of a hostname nobody holds",
            Registered,
            msg(json!({"type": "lookup-hostname", "rid": 1, "hostname": "nobody"})),
            Error("unknown-host"),
        ),
        case(
            "second register",
            Registered,
            msg(json!({"type": "register", "rid": 1, "id": "another"})),
            Error("already-registered"),
        ),
        case(
            "signal to an unknown peer",
            Registered,
            msg(json!({"type": "signal", "rid": 1, "to": "nobody", "data": 1})),
            Error("unknown-peer"),
        ),
        case(
            "signal to an invalid id",
            Registered,
            msg(json!({"type": "signal", "rid": 1, "to": "no/slash", "data": 1})),
            Error("invalid-id"),
        ),
        case(
            "room name with a space",
            Registered,
            msg(json!({"type": "join", "rid": 1, "room": "a room"})),
            Error("invalid-room"),
        ),
        case(
            "leave a room not joined",
            Registered,
            msg(json!({"type": "leave", "rid": 1, "room": "elsewhere"})),
            Error("not-in-room"),
        ),
        case(
            "broadcast to a room not joined",
            Registered,
            msg(json!({"type": "broadcast", "rid": 1, "room": "elsewhere", "data": 1})),
            Error("not-in-room"),
        ),
        case(
            "state key with a control character",
            Registered,
            msg(json!({"type": "set", "rid": 1, "room": "r", "key": "a\u{7}b", "value": 1})),
            Error("invalid-state-key"),
        ),
        case(
            "rendezvous key in capitals",
            Registered,
            msg(json!({"type": "open-key", "rid": 1, "key": "SHOUT"})),
            Error("invalid-key"),
        ),
        case(
            "join an unknown key",
            Registered,
            msg(json!({"type": "join-key", "rid": 1, "key": "never_opened"})),
            Error("unknown-key"),
        ),
        case(
            "open a key someone holds",
            Registered,
            msg(json!({"type": "open-key", "rid": 1, "key": "owned_key"})),
            Error("key-taken"),
        ),
        case(
            "close someone else's key",
            Registered,
            msg(json!({"type": "close-key", "rid": 1, "key": "owned_key"})),
            Error("not-opener"),
        ),
        case(
            "frame above the size limit",
            Registered,
            text(&format!(
                r#"{{"type":"ping","rid":1,"pad":"{}"}}"#,
                "x".repeat(9000)
            )),
            Close(1009),
        ),
        case(
            "frame far above the size limit",
            Fresh,
            text(&"y".repeat(200_000)),
            Close(1009),
        ),
        case(
            "binary frame that is not a relay frame",
            Registered,
            Input::Binary(vec![7; 9000]),
            Error("bad-message"),
        ),
        case(
            // Binary frames are relay frames: their limit is a whole relay
            // frame (64 KiB of payload), whatever --max-frame-bytes says.
            "binary frame above a relay frame's size",
            Registered,
            Input::Binary(vec![7; peerwire_broker::hub::MAX_RELAY_FRAME + 1]),
            Close(1009),
        ),
        // Byte budgets (issue 16, item 4), with the flags below: rooms of
        // 4 096 bytes of state, 135 168 bytes a second of fan-out.
        case(
            "state value past the room's byte budget",
            InRoom,
            msg(json!({"type": "set", "rid": 1, "room": ROOM, "key": "k", "value": "v".repeat(5000)})),
            Error("state-full"),
        ),
        case(
            "broadcasts past the fan-out byte rate",
            InRoom,
            Input::Many(
                (0..20)
                    .map(|n| {
                        json!({"type": "broadcast", "rid": n + 1, "room": ROOM, "data": "b".repeat(8000), "includeSelf": true})
                            .to_string()
                    })
                    .collect(),
            ),
            ErrorAmong("fanout-limit"),
        ),
        case(
            "joining a room with large state again and again",
            InRoom,
            Input::Many(
                std::iter::once(
                    json!({"type": "set", "rid": 1, "room": ROOM, "key": "k", "value": "v".repeat(3900)})
                        .to_string(),
                )
                .chain((0..60).map(|n| {
                    json!({"type": "join", "rid": n + 2, "room": ROOM}).to_string()
                }))
                .collect(),
            ),
            ErrorAmong("fanout-limit"),
        ),
        case(
            "message flood",
            Registered,
            Input::Flood(r#"{"type":"ping","rid":1}"#, 500),
            Close(4002),
        ),
        case("never registering", Fresh, Input::Silence, Close(4006)),
        case(
            "protected id without a token",
            Fresh,
            msg(json!({"type": "register", "rid": 1, "id": "admin-1"})),
            Error("unauthorized"),
        ),
        case(
            "protected room without a token",
            Registered,
            msg(json!({"type": "join", "rid": 1, "room": "staff"})),
            Error("forbidden"),
        ),
        case(
            "id other than the token's",
            Token(token(json!({"sub": "admin-2", "exp": 4_000_000_000u64}))),
            msg(json!({"type": "register", "rid": 1, "id": "admin-3"})),
            Error("unauthorized"),
        ),
        case(
            "expired token",
            Token(token(json!({"sub": "admin-2", "exp": 1_000_000}))),
            Input::Silence,
            Close(4007),
        ),
        case(
            "token signed with another secret",
            Token(format!("{}x", token(json!({"exp": 4_000_000_000u64})))),
            Input::Silence,
            Close(4007),
        ),
        case(
            "token that is not a JWT",
            Token("not-a-token".into()),
            Input::Silence,
            Close(4007),
        ),
    ]
}

#[tokio::test]
async fn every_bad_input_gets_its_named_answer_and_the_broker_keeps_serving() {
    let mut flags = vec![
        "--max-frame-bytes",
        "8192",
        "--rate-limit",
        "50",
        "--rate-burst",
        "100",
        "--register-timeout-ms",
        "500",
        "--auth-secret",
        SECRET,
        "--max-room-state-bytes",
        "4096",
        "--fanout-rate",
        "135168",
    ];
    flags.extend_from_slice(&support::PROTECT_FLAGS);
    let b = Broker::start(&flags).await;
    let (mut owner, _) = b.registered("owner").await;
    owner
        .request(json!({"type": "open-key", "key": "owned_key"}))
        .await;
    let cases = catalogue();
    assert!(
        cases.len() >= 30,
        "the catalogue lists {} inputs",
        cases.len()
    );
    for (i, case) in cases.iter().enumerate() {
        let mut c = match &case.setup {
            Setup::Fresh => b.client().await,
            Setup::Registered => b.registered(&format!("case-{i}")).await.0,
            Setup::Token(t) => b.client_with_token(t).await,
            Setup::InRoom => {
                let (mut c, _) = b.registered(&format!("case-{i}")).await;
                let r = c
                    .request(json!({"type": "join", "room": format!("own-{i}")}))
                    .await;
                assert_eq!(r["type"], "joined", "{}: {r}", case.name);
                c
            }
        };
        let own_room = |t: &str| t.replace(&format!("\"{ROOM}\""), &format!("\"own-{i}\""));
        // Inputs answered by a close may see the socket reset mid-write.
        match &case.input {
            Input::Text(t) => c.send_raw_lossy(&own_room(t)).await,
            Input::Many(frames) => {
                for t in frames {
                    c.send_raw_lossy(&own_room(t)).await;
                }
            }
            Input::Binary(bytes) => c.send_binary_lossy(bytes.clone()).await,
            Input::Flood(frame, n) => {
                for _ in 0..*n {
                    c.send_raw_lossy(frame).await;
                }
            }
            Input::Silence => {}
        }
        match case.expect {
            Expect::Error(code) => {
                let m = c.recv().await;
                assert_eq!(
                    (m["type"].as_str(), m["code"].as_str()),
                    (Some("error"), Some(code)),
                    "{}: {m}",
                    case.name
                );
                assert!(
                    m["message"].as_str().is_some_and(|s| !s.is_empty()),
                    "{}: no message",
                    case.name
                );
                // The connection stays usable after an error.
                assert_eq!(
                    c.request(json!({"type": "ping"})).await["type"],
                    "pong",
                    "{}",
                    case.name
                );
            }
            Expect::ErrorAmong(code) => {
                let m = loop {
                    let m = c.recv().await;
                    if m["type"] == "error" {
                        break m;
                    }
                };
                assert_eq!(m["code"], code, "{}: {m}", case.name);
                assert!(
                    m["message"].as_str().is_some_and(|s| s.contains("--")),
                    "{}: the message names the flag: {m}",
                    case.name
                );
                // Usable still, once the replies to the rest are read.
                c.send(json!({"type": "ping"})).await;
                while c.recv().await["type"] != "pong" {}
            }
            Expect::Close(code) => {
                assert_eq!(
                    c.closed_within(Duration::from_secs(5)).await,
                    Some(Closed::Code(code)),
                    "{}",
                    case.name
                );
            }
        }
    }
    // After the whole catalogue, a new client is served normally.
    let mut fresh = Client::connect(&b.url()).await;
    let r = fresh
        .request(json!({"type": "register", "id": "after-catalogue"}))
        .await;
    assert_eq!(r["type"], "registered");
    assert_eq!(owner.request(json!({"type": "ping"})).await["type"], "pong");
    b.stop().await;
}
