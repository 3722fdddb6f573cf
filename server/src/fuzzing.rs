//! Fuzz target bodies for the broker. Compiled for tests and with the
//! `fuzzing` feature only; `fuzz/` calls them, the tests below replay the
//! kept inputs (`fuzz/regressions/<target>/`).
//!
//! - [`hub_sequence`]: an arbitrary interleaving of connections, requests,
//!   slow readers, drops and clock jumps, with small limits so that every
//!   limit is reached. Checked for every input: no panic, and once every
//!   connection has gone and the grace window has passed, the hub holds
//!   nothing (no connection, id, room, key or hostname left behind).
//! - [`relay_frame`]: a relay frame from an id with a `relay-ready` pair.
//!   Checked: no panic; the codec reads back what it wrote; the receiver
//!   gets the frame, rewritten to name the sender, exactly when the hub
//!   says it forwarded it, and the sender is told otherwise.
//! - [`stun_packet`]: the STUN codec on any datagram. Checked: no panic; an
//!   answer only to a binding request, at most one, never longer than
//!   `MAX_RESPONSE_LEN`, carrying the request's transaction id and the
//!   sender's address, and never itself answered.
//! - [`frontend_frame`]: the PeerJS and signaller front-ends on any frame
//!   from a client or the hub. Checked: no panic; a PeerJS message reaches
//!   its `dst` as it was sent, with `src` set by the broker and not by the
//!   sender; what one signaller side sends reaches the other as is, in
//!   order, until the message limit closes both with 4002; any PeerJS
//!   connection query is accepted only with a non-empty id and token.
//! - [`ws_frame`]: the broker's WebSocket reader (`ws::Reader`) on any
//!   bytes from a client. Checked: no panic; the messages read and the
//!   error that ends the reading (with its close code) are the same
//!   whether the bytes arrive at once, cut in pieces at any points, or
//!   partly as bytes read with the upgrade request.
//! - [`signal_path`]: the signal fast path (`hub::signal`) against the
//!   general decoder on any text. Checked: no panic; what the fast path
//!   takes, the general decoder reads as the same signal (`rid`, `to`, and
//!   `data` as a JSON value), and the spliced frame is what the general
//!   encoder writes; a signal the general decoder reads (its type spelled
//!   plainly) is taken by the fast path.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use peerwire::protocol::json::Json;
use peerwire::protocol::relay;
use peerwire::protocol::{ClientMessage, CloseCode, ServerMessage};
use tokio::sync::oneshot;

use crate::auth::{Grant, Policy};
use crate::frontends::{peerjs, signaller};
use crate::hub::{ConnId, Frame, Hub, HubConfig, HubEnv, HubStats, RelayConfig, Relayed};
use crate::ice::{IceConfig, OwnStun};
use crate::metrics::Metrics;
use crate::stun::codec;

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// The targets, by the name of their folder under `fuzz/regressions/`.
pub const TARGETS: [(&str, Target); 6] = [
    ("frontend_frame", frontend_frame),
    ("hub_sequence", hub_sequence),
    ("relay_frame", relay_frame),
    ("signal_path", signal_path),
    ("stun_packet", stun_packet),
    ("ws_frame", ws_frame),
];

const IDS: [&str; 4] = ["a", "b", "c", "admin-1"];
const ROOMS: [&str; 3] = ["r1", "r2", "staff"];
const KEYS: [&str; 3] = ["key_a", "key_b", "key_c"];
const HOSTNAMES: [&str; 3] = ["printer", "scanner", "-bad"];
const SLOTS: usize = 4;

struct Slot {
    conn: ConnId,
    rx: crate::hub::Inbox,
    _kill: oneshot::Receiver<CloseCode>,
    /// The last resume token this connection was given.
    token: Option<(String, String)>,
}

fn config() -> HubConfig {
    let policy = Policy::new(
        Some("fuzz-secret-fuzz-secret-fuzz-secret"),
        false,
        vec!["admin-*".into()],
        vec!["staff".into()],
    )
    .expect("a valid policy");
    HubConfig {
        grace: Duration::from_millis(50),
        max_queued: 3,
        max_queued_bytes: 600,
        outbound_queue_bytes: 2_000,
        ip_queued_bytes: 1_000_000,
        max_room_state_bytes: 400,
        max_peer_state_bytes: 300,
        ip_state_bytes: 1_000_000,
        fanout_rate: 5_000,
        max_room_members: 3,
        max_rooms_per_peer: 2,
        max_state_keys: 2,
        max_keys_per_peer: 2,
        max_hostnames_per_peer: 2,
        auth: policy,
        listen_timeout: Some(Duration::from_millis(30)),
        pipe_timeout: Some(Duration::from_millis(40)),
        ice: IceConfig {
            own_stun: Some(OwnStun {
                port: 3478,
                public_host: None,
            }),
            ..IceConfig::default()
        },
        relay: RelayConfig {
            enabled: true,
            rate: 2_000,
            max_bytes: 5_000,
            max_pairs: 3,
            max_per_peer: 2,
            total_rate: 3_000,
            intent_timeout: Duration::from_millis(30),
        },
        message_rate: Some((50, 200)),
        max_frame_bytes: 65_536,
    }
}

/// One set of metrics for every input of a fuzzing process: the hub only
/// writes to it, never reads it back, so sharing it changes no outcome, and
/// building and dropping a registry for each input cost more than a short
/// input itself.
fn metrics() -> Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS.get_or_init(|| Arc::new(Metrics::new())).clone()
}

/// Reads what a connection was sent; remembers resume tokens.
///
/// Only `registered` frames are decoded (with the SDK's own decoder, so the
/// two sides must still agree on it): a full JSON parse of every frame cost
/// more than the hub itself and checked serde_json rather than the hub.
/// Every other frame is checked to be one JSON object with a `type` first,
/// which is what `ServerMessage::encode` writes.
fn drain(slot: &mut Slot) {
    while let Ok(frame) = slot.rx.try_recv().map(|o| o.frame) {
        let Some(text) = frame.as_text() else {
            continue;
        };
        assert!(
            text.starts_with(r#"{"type":""#) && text.ends_with('}'),
            "hub sends JSON objects: {text}"
        );
        if text.starts_with(r#"{"type":"registered","#) {
            match ServerMessage::decode(text) {
                Ok(ServerMessage::Registered {
                    id, resume_token, ..
                }) => slot.token = Some((id, resume_token)),
                other => panic!("a registered frame the SDK cannot read: {other:?}"),
            }
        }
    }
}

/// One of `names`, picked by `arg`, as an owned string.
fn pick(names: &[&str], arg: u8) -> String {
    names[arg as usize % names.len()].to_string()
}

fn message(op: u8, arg: u8, rid: u64, tokens: &[(String, String)]) -> ClientMessage {
    // Only the name the operation uses is built: four allocations a step
    // showed up in the profile.
    let id = || pick(&IDS, arg);
    let room = || pick(&ROOMS, arg);
    let key = || pick(&KEYS, arg);
    let hostname = || pick(&HOSTNAMES, arg);
    match op & 0x0f {
        0 => ClientMessage::Register {
            rid,
            id: (arg % 5 != 4).then(id),
            resume_token: None,
        },
        1 => {
            let (id, token) = tokens
                .get(arg as usize % tokens.len().max(1))
                .cloned()
                .unwrap_or_else(|| ("a".into(), "stale".into()));
            ClientMessage::Register {
                rid,
                id: Some(id),
                resume_token: Some(token),
            }
        }
        2 => ClientMessage::Ping { rid },
        3 => ClientMessage::Find { rid, id: id() },
        4 => ClientMessage::Signal {
            rid,
            to: id(),
            data: Json(rid.to_string()),
        },
        5 => ClientMessage::Join { rid, room: room() },
        6 => ClientMessage::Leave { rid, room: room() },
        7 => ClientMessage::Broadcast {
            rid,
            room: room(),
            data: Json(r#""x""#.to_string()),
            include_self: arg % 2 == 0,
        },
        8 => ClientMessage::Set {
            rid,
            room: room(),
            key: format!("k{}", arg % 3),
            value: Json(arg.to_string()),
            ttl_ms: (arg % 2 == 0).then_some(arg as u64),
        },
        9 => ClientMessage::Delete {
            rid,
            room: room(),
            key: format!("k{}", arg % 3),
        },
        10 => ClientMessage::OpenKey { rid, key: key() },
        11 => ClientMessage::JoinKey { rid, key: key() },
        12 => ClientMessage::LeaveKey { rid, key: key() },
        13 => ClientMessage::CloseKey { rid, key: key() },
        14 => ClientMessage::RegisterHostname {
            rid,
            hostname: hostname(),
        },
        _ => ClientMessage::LookupHostname {
            rid,
            hostname: hostname(),
        },
    }
}

/// Runs one input (three bytes per step: slot, operation, argument).
pub fn hub_sequence(data: &[u8]) {
    let hub = Hub::new(config(), metrics(), HubEnv::seeded(1, 1_700_000_000));
    let start = Instant::now();
    let mut now = start;
    let mut slots: Vec<Option<Slot>> = (0..SLOTS).map(|_| None).collect();
    let mut tokens: Vec<(String, String)> = Vec::new();
    let mut rid = 0;
    let token_for = |sub: &str| Grant {
        sub: Some(sub.to_string()),
        rooms: Some(vec!["staff".into(), "r*".into()]),
        exp: None,
    };
    for step in data.chunks(3) {
        let [s, op, arg] = [
            step[0],
            *step.get(1).unwrap_or(&0),
            *step.get(2).unwrap_or(&0),
        ];
        let i = s as usize % SLOTS;
        rid += 1;
        match (op >> 4, slots[i].as_mut()) {
            // Connect (with a token for admin-1 now and then); a small
            // outbound queue so that slow readers are cut off.
            (0, None) => {
                let (tx, rx) = crate::hub::outbox::channel(8);
                let (kill, kill_rx) = oneshot::channel();
                let grant = (arg % 3 == 0).then(|| token_for("admin-1"));
                let host = (arg % 2 == 0).then(|| "broker.test".to_string());
                let conn = hub.connect(tx, kill, grant, host, None);
                slots[i] = Some(Slot {
                    conn,
                    rx,
                    _kill: kill_rx,
                    token: None,
                });
            }
            // Drop: clean (1000) or not.
            (1, Some(slot)) => {
                hub.disconnect(slot.conn, arg % 2 == 0, now, &mut slot.rx);
                slots[i] = None;
            }
            // Time passes; deadlines fire.
            (2, _) => {
                now += Duration::from_millis(arg as u64);
                hub.sweep(now);
            }
            // Read everything pending (otherwise the reader is slow).
            (3, Some(slot)) => drain(slot),
            // Relay: agree, end, a relay frame, or a broken one.
            (4, Some(slot)) => {
                let to = IDS[(arg / 4) as usize % IDS.len()].to_string();
                match arg % 4 {
                    0 => hub.handle(slot.conn, ClientMessage::Relay { rid, to }, now),
                    1 => hub.handle(slot.conn, ClientMessage::RelayEnd { rid, to }, now),
                    2 => {
                        let payload = vec![arg; arg as usize * 8];
                        hub.handle_binary(slot.conn, &relay::encode(&to, &payload), now);
                    }
                    _ => {
                        hub.handle_binary(slot.conn, &[arg, b'a', arg], now);
                    }
                }
            }
            (_, Some(slot)) => {
                drain(slot);
                if let Some(t) = slot.token.take() {
                    tokens.push(t);
                }
                hub.handle(slot.conn, message(op, arg, rid, &tokens), now);
            }
            _ => {}
        }
    }
    for slot in slots.iter_mut().flatten() {
        hub.disconnect(slot.conn, false, now, &mut slot.rx);
    }
    now += Duration::from_secs(1);
    hub.sweep(now);
    assert_eq!(
        hub.stats(),
        HubStats::default(),
        "the hub let go of everything"
    );
    assert!(hub.is_idle(), "no cut-off connection left behind");
}

/// Runs one input as a relay frame from `a`, which has a `relay-ready`
/// pair with `b`.
pub fn relay_frame(data: &[u8]) {
    if let Ok((id, payload)) = relay::decode(data) {
        assert_eq!(
            relay::encode(id, payload),
            data,
            "the codec reads back what it wrote"
        );
    }
    let hub = Hub::new(
        HubConfig::default(),
        metrics(),
        HubEnv::seeded(1, 1_700_000_000),
    );
    let now = Instant::now();
    let mut conns = Vec::new();
    for id in ["a", "b"] {
        let (tx, rx) = crate::hub::outbox::channel(64);
        let (kill, kill_rx) = oneshot::channel();
        let conn = hub.connect(tx, kill, None, None, None);
        let register = ClientMessage::Register {
            rid: 1,
            id: Some(id.into()),
            resume_token: None,
        };
        hub.handle(conn, register, now);
        conns.push((conn, rx, kill_rx));
    }
    let a = conns[0].0;
    for (conn, to) in [(a, "b"), (conns[1].0, "a")] {
        let relay = ClientMessage::Relay {
            rid: 2,
            to: to.into(),
        };
        hub.handle(conn, relay, now);
    }
    // What the setup sent (`registered`, `relay-ready`) is only drained:
    // parsing it for every input cost more than the frame under test.
    for (_, rx, _) in &mut conns {
        while rx.try_recv().is_ok() {}
    }
    let mut read = |i: usize| -> (Vec<ServerMessage>, Vec<Vec<u8>>) {
        let (mut text, mut binary) = (Vec::new(), Vec::new());
        while let Ok(o) = conns[i].1.try_recv() {
            match o.frame {
                Frame::Text(t) => text.push(t.as_str().to_string()),
                Frame::Binary(b) => binary.push(b.to_vec()),
            }
        }
        let text = text
            .iter()
            .map(|t| ServerMessage::decode(t).unwrap_or_else(|e| panic!("{t}: {e:?}")))
            .collect();
        (text, binary)
    };
    let outcome = hub.handle_binary(a, data, now);
    let (told, sent_back) = read(0);
    let (_, received) = read(1);
    assert!(
        sent_back.is_empty(),
        "nothing binary goes back to the sender"
    );
    match outcome {
        Relayed::Forwarded => {
            let (to, payload) = relay::decode(data).expect("forwarded frames are valid");
            assert_eq!(to, "b");
            assert!(told.is_empty(), "{told:?}");
            assert_eq!(received, vec![relay::encode("a", payload)]);
        }
        Relayed::Dropped => {
            assert!(received.is_empty(), "a dropped frame reaches nobody");
            assert!(
                matches!(
                    told.as_slice(),
                    [ServerMessage::Error { .. } | ServerMessage::RelayClosed { .. }]
                ),
                "the sender is told why, once: {told:?}"
            );
        }
    }
}

/// The limit of messages per signaller side in [`frontend_frame`].
const SIGNALLER_MAX: usize = 5;

/// Runs one input through a front-end, by its first byte: a PeerJS
/// client's frame (0), a hub frame and connection query for PeerJS (1), a
/// signaller pipe (2), a hub frame for signaller (3).
pub fn frontend_frame(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => peerjs_client_frame(&text),
        1 => {
            let tokens = peerjs::Tokens::default();
            let mut c = peerjs::Connection::new("p-2".into(), "tok".into());
            match c.outbound(&text, &tokens, |_| true) {
                peerjs::Outbound::Send(s) | peerjs::Outbound::SendAndClose(s) => {
                    assert!(
                        matches!(serde_json::from_str(&s), Ok(serde_json::Value::Object(_))),
                        "PeerJS clients get JSON objects: {s}"
                    );
                }
                peerjs::Outbound::Nothing => {}
            }
            if let Ok((id, token)) = peerjs::connect_params(Some(&text), "peerjs") {
                assert!(!id.is_empty() && !token.is_empty(), "{text}");
            }
        }
        2 => signaller_pipe(rest),
        _ => {
            for role in [signaller::Role::Listen, signaller::Role::Connect] {
                let mut c = signaller::Connection::new("abc".into(), role, SIGNALLER_MAX);
                c.start();
                let _ = c.outbound(&text);
                let _ = c.outbound(&text);
            }
        }
    }
}

/// A PeerJS client's text frame: when forwarded, the receiver gets the
/// object as sent, with `src` naming the sender as the hub knows it.
fn peerjs_client_frame(text: &str) {
    let tokens = peerjs::Tokens::default();
    let mut sender = peerjs::Connection::new("p-1".into(), "tok".into());
    let peerjs::Inbound::Hub(request) = sender.inbound(text) else {
        return;
    };
    let ClientMessage::Signal { to, data, .. } = request else {
        panic!("PeerJS frames become signals: {request:?}");
    };
    let serde_json::Value::Object(mut sent) = serde_json::from_str(text).expect("was read") else {
        panic!("only objects are forwarded");
    };
    assert_eq!(sent.get("dst").and_then(|d| d.as_str()), Some(to.as_str()));
    let hub_frame = ServerMessage::Signal {
        from: "p-1".into(),
        data,
    }
    .encode();
    let mut receiver = peerjs::Connection::new(to, "tok2".into());
    let peerjs::Outbound::Send(got) = receiver.outbound(&hub_frame, &tokens, |_| true) else {
        panic!("a signal reaches the receiver: {hub_frame}");
    };
    sent.insert("src".into(), "p-1".into());
    let got: serde_json::Value = serde_json::from_str(&got).expect("JSON");
    assert_eq!(got, serde_json::Value::Object(sent), "as sent, from p-1");
}

/// What a signaller side sends: text (kind byte even) or binary, held
/// until the pair forms (after the first frame whose kind byte has bit 1
/// set), carried to the other side through `signal`s.
enum Piped {
    Text(String),
    Binary(Vec<u8>),
}

/// A signaller pipe: frames of `[kind, length, bytes...]` from the
/// listener; the connector gets each, unchanged and in order, then the
/// 4002 close once the listener sent more than [`SIGNALLER_MAX`].
fn signaller_pipe(mut data: &[u8]) {
    let mut listener =
        signaller::Connection::new("abc".into(), signaller::Role::Listen, SIGNALLER_MAX);
    let mut connector =
        signaller::Connection::new("abc".into(), signaller::Role::Connect, SIGNALLER_MAX);
    listener.start();
    connector.start();
    let mut sent = Vec::new();
    let mut requests = Vec::new();
    let mut closed = None;
    let mut paired = false;
    while let [kind, len, rest @ ..] = data {
        let (payload, next) = rest.split_at((*len as usize).min(rest.len()));
        data = next;
        let frame = if kind % 2 == 0 {
            Piped::Text(String::from_utf8_lossy(payload).into_owned())
        } else {
            Piped::Binary(payload.to_vec())
        };
        let inbound = match &frame {
            Piped::Text(t) => listener.text(t),
            Piped::Binary(b) => listener.binary(b),
        };
        match inbound {
            signaller::Inbound::Held => assert!(!paired, "held only before the pair forms"),
            signaller::Inbound::Hub(m) => requests.extend(m),
            signaller::Inbound::Close(code, m) => {
                assert_eq!(code, CloseCode::TooManyMessages);
                assert_eq!(sent.len(), SIGNALLER_MAX, "closed after the limit");
                requests.extend(m);
                closed = Some(code);
                break;
            }
        }
        sent.push(frame);
        if kind & 2 != 0 && !paired {
            paired = true;
            let joiner = r#"{"type":"joiner","key":"sg-abc","id":"c-1"}"#;
            match listener.outbound(joiner) {
                signaller::Outbound::Hub(m) => requests.extend(m),
                other => panic!("pairing sends what was held: {other:?}"),
            }
            let joined = r#"{"type":"key-joined","rid":2,"key":"sg-abc","opener":"l-1"}"#;
            assert_eq!(
                connector.outbound(joined),
                signaller::Outbound::Hub(Vec::new())
            );
        }
    }
    if !paired {
        assert!(requests.is_empty(), "nothing goes before the pair forms");
        return;
    }
    let mut got = Vec::new();
    let mut got_close = None;
    for request in requests {
        let ClientMessage::Signal { to, data, .. } = request else {
            panic!("a pipe carries signals: {request:?}");
        };
        assert_eq!(to, "c-1");
        let frame = ServerMessage::Signal {
            from: "l-1".into(),
            data,
        }
        .encode();
        match connector.outbound(&frame) {
            signaller::Outbound::Text(t) => got.push(Piped::Text(t)),
            signaller::Outbound::Binary(b) => got.push(Piped::Binary(b)),
            signaller::Outbound::Close(code) => got_close = Some(code),
            other => panic!("{frame}: {other:?}"),
        }
    }
    assert_eq!(
        got_close, closed,
        "the other side closes with the same code"
    );
    assert_eq!(got.len(), sent.len(), "every message arrives");
    for (got, sent) in got.iter().zip(&sent) {
        match (got, sent) {
            (Piped::Text(a), Piped::Text(b)) => assert_eq!(a, b),
            (Piped::Binary(a), Piped::Binary(b)) => assert_eq!(a, b),
            _ => panic!("a text arrives as text, bytes as bytes"),
        }
    }
}

/// Senders the STUN target answers: IPv4, IPv6, and IPv4 seen through a
/// dual-stack socket.
const STUN_SENDERS: [&str; 3] = [
    "203.0.113.7:40000",
    "[2001:db8::7]:40001",
    "[::ffff:198.51.100.7]:40002",
];

/// Runs the STUN codec on `data` as it came, and again with a repaired
/// header (binding request, cookie, matching length) so that the fuzzer
/// spends its time on the attributes.
pub fn stun_packet(data: &[u8]) {
    stun_answers(data);
}

/// [`stun_packet`], counting the answers it checked.
fn stun_answers(data: &[u8]) -> usize {
    let mut answers = check_stun_answer(data);
    let attrs = &data[..data.len().min(2048) / 4 * 4];
    let mut repaired = vec![0x00, 0x01];
    repaired.extend((attrs.len() as u16).to_be_bytes());
    repaired.extend(codec::MAGIC_COOKIE.to_be_bytes());
    repaired.extend(std::iter::repeat_n(0x5a, 12));
    repaired.extend(attrs);
    answers += check_stun_answer(&repaired);
    answers
}

fn check_stun_answer(packet: &[u8]) -> usize {
    let mut answers = 0;
    for sender in STUN_SENDERS {
        let from: std::net::SocketAddr = sender.parse().expect("a valid address");
        let Ok(answer) = codec::respond(packet, from) else {
            continue;
        };
        answers += 1;
        let bytes = answer.bytes();
        assert!(bytes.len() <= codec::MAX_RESPONSE_LEN, "a small answer");
        assert_eq!(&packet[..2], &[0x00, 0x01], "only requests are answered");
        assert_eq!(
            &bytes[8..20],
            &packet[8..20],
            "the request's transaction id"
        );
        assert_eq!(
            codec::respond(bytes, from),
            Err(codec::Ignored::NotBindingRequest),
            "an answer is never answered"
        );
        match answer.kind {
            codec::AnswerKind::Mapped => {
                let (id, mapped) = codec::parse_success(bytes).expect("a readable answer");
                assert_eq!(&id[..], &packet[8..20]);
                assert_eq!(mapped, codec::mapped_address(from), "the sender's address");
            }
            codec::AnswerKind::UnknownAttributes => {
                assert_eq!(&bytes[..2], &[0x01, 0x11], "a binding error response");
            }
        }
    }
    answers
}

/// A client's bytes as a socket hands them out: in pieces whose sizes
/// cycle through `cuts` (each 1 to 256 bytes; all at once without cuts).
struct Pieces<'a> {
    data: &'a [u8],
    cuts: &'a [u8],
    next: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let cut = match this.cuts.len() {
            0 => usize::MAX,
            n => this.cuts[this.next % n] as usize + 1,
        };
        this.next += 1;
        let n = cut.min(this.data.len()).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

/// What a reader makes of `leftover` then `data` (cut by `cuts`): every
/// message, then the error that ended it, with its close code.
fn ws_read(leftover: &[u8], data: &[u8], cuts: &[u8]) -> (Vec<Message>, String) {
    use futures_util::FutureExt;
    let io = Pieces {
        data,
        cuts,
        next: 0,
    };
    let leftover = axum::body::Bytes::copy_from_slice(leftover);
    let mut reader = crate::ws::Reader::new(io, leftover, WS_MAX);
    let mut messages = Vec::new();
    loop {
        match reader.next().now_or_never() {
            Some(Ok(m)) => messages.push(m),
            Some(Err(e)) => return (messages, format!("{e:?} {:?}", e.close_code())),
            None => panic!("an in-memory socket never makes the reader wait"),
        }
    }
}

/// The largest message [`ws_frame`]'s reader takes: small, so that inputs
/// reach the limit, and above the size (2 KiB) from which a payload still
/// to come is read straight into its vector, so that path is fuzzed too.
const WS_MAX: usize = 3 * 1024;

/// Runs one input through the WebSocket reader: byte 0 is how many cut
/// sizes follow (0 to 7), then the cut sizes, then where the bytes read
/// with the upgrade request end, then the client's bytes.
pub fn ws_frame(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 8).min(rest.len());
    let (cuts, rest) = rest.split_at(n);
    let Some((&split, bytes)) = rest.split_first() else {
        return;
    };
    let whole = ws_read(&[], bytes, &[]);
    assert_eq!(
        ws_read(&[], bytes, cuts),
        whole,
        "the same bytes in pieces read the same"
    );
    let k = (split as usize).min(bytes.len());
    assert_eq!(
        ws_read(&bytes[..k], &bytes[k..], cuts),
        whole,
        "bytes read with the upgrade request read the same"
    );
    let total: usize = whole
        .0
        .iter()
        .map(|m| match m {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    assert!(total <= WS_MAX, "no message over the limit is taken");
}

/// Fuzz target body: see the module notes.
pub fn signal_path(data: &[u8]) {
    // A WebSocket text message is UTF-8 (the reader refuses anything else
    // with 1007), so that is what the hub is handed.
    if let Ok(text) = std::str::from_utf8(data) {
        crate::hub::signal::agree(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every kept input (crashes found by fuzzing, and seeds)
    /// through its target.
    #[test]
    fn every_kept_broker_fuzz_input_still_passes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let mut replayed = 0;
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{} fails again", path.display());
                replayed += 1;
            }
            assert!(replayed > 0, "no inputs kept in {}", dir.display());
        }
    }

    /// The reader under `ws_frame` reads what a client sent: a fragmented
    /// text with a ping between its frames, then a binary message, then
    /// the end of the stream; and refuses an unmasked frame with 1002.
    #[test]
    fn ws_frame_reads_messages_and_refuses_unmasked_frames() {
        let seed = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/regressions/ws_frame")
                .join(name);
            std::fs::read(path).unwrap()[4..].to_vec()
        };
        let (messages, end) = ws_read(&[], &seed("seed-fragments-and-ping"), &[0, 2]);
        assert_eq!(
            messages,
            vec![
                Message::Ping(axum::body::Bytes::from_static(b"p")),
                Message::Text("hello".into()),
                Message::Binary((0u8..40).collect::<Vec<_>>().into()),
            ]
        );
        assert!(end.starts_with("Lost"), "{end}");
        let (messages, end) = ws_read(&[], &seed("seed-unmasked"), &[]);
        assert!(messages.is_empty());
        assert!(end.ends_with("Some(ProtocolError)"), "{end}");
    }

    /// A short, deterministic fuzz run in every `cargo test`: the RFC 5769
    /// vectors with bytes flipped, cut, repeated and extended.
    #[test]
    fn stun_packet_holds_for_mutations_of_the_rfc5769_vectors() {
        let seeds: [&[u8]; 3] = [
            &crate::stun::rfc5769::REQUEST,
            &crate::stun::rfc5769::RESPONSE_V4,
            &crate::stun::rfc5769::RESPONSE_V6,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut answered = 0;
        for round in 0..20_000 {
            let mut p = seeds[round % seeds.len()].to_vec();
            if round % 2 == 0 {
                p[..2].copy_from_slice(&[0x00, 0x01]);
            }
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % p.len().max(1);
                match next() % 5 {
                    0 => p[at] ^= 1 << (next() % 8),
                    1 => p[at] = next() as u8,
                    2 => p.truncate(at),
                    3 => p.extend((0..next() % 9).map(|_| next() as u8)),
                    _ => {
                        let tail = p[at..].to_vec();
                        p.extend(tail);
                    }
                }
                if p.is_empty() {
                    break;
                }
            }
            answered += stun_answers(&p);
        }
        // Not a vacuous run: thousands of mutants still get an answer (2703
        // when written).
        assert!(answered > 1_000, "{answered} answers");
    }
}
