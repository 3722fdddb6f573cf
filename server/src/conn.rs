//! One WebSocket connection: reads and decodes client frames into the hub,
//! writes the hub's frames out, pings, and enforces frame size and liveness.
//!
//! The reader and the writer run as two futures raced in one task; whichever
//! ends first decides how the connection closes. The writer drains a bounded
//! queue (the hub closes clients that let it fill, 4003) and obeys the hub's
//! one-shot close switch (4005 replaced, 1001 shutdown).
//!
//! Text frames are JSON messages; binary frames are relay frames, handed to
//! [`crate::hub::Hub::handle_binary`]. Every text frame costs a token of the
//! connection's (and its address's) message rate limit; a relay frame the
//! hub forwarded does not (the relay's byte caps pace those), one it
//! dropped does.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message};
use futures_util::future::Either;
use peerwire::protocol::{ClientMessage, CloseCode, ErrorCode, ServerMessage};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, oneshot};
use tokio::time::{MissedTickBehavior, interval, timeout};

use crate::App;
use crate::access::ClosedBy;
use crate::auth::Grant;
use crate::frontends::{Dialect, In, Out};
use crate::hub::{Frame, Held, Outgoing, Relayed};
use crate::ws;

/// How a connection ended.
enum Ending {
    /// The client sent a close frame with this code (1000: clean).
    ClientClosed { code: Option<u16> },
    /// The socket broke or the stream ended without a close frame.
    Lost,
    /// The broker closes with this code.
    Close(CloseCode),
    /// The hub already closed this connection (and already updated its
    /// state); just send the close frame.
    Killed(CloseCode),
}

/// Records the code a dialect asks to close with; the first one stands.
fn close_once(closing: &AtomicU16, code: CloseCode) {
    let _ = closing.compare_exchange(0, code.code(), Ordering::Relaxed, Ordering::Relaxed);
}

/// The code a dialect asked to close with, if it did.
fn closing_code(closing: &AtomicU16) -> Option<CloseCode> {
    CloseCode::from_code(closing.load(Ordering::Relaxed))
}

/// Makes the requests a dialect's client frame asks for (a `register` as
/// [`register`] does, claimed in Redis first in a network of brokers); the
/// ending, when it asks to close.
async fn carry(app: &Arc<App>, conn: crate::hub::ConnId, inbound: In) -> Option<Ending> {
    let (requests, ending) = match inbound {
        In::Hub(requests) => (requests, None),
        In::Nothing(why) => {
            tracing::debug!(conn, why, "a message of another protocol not carried");
            return None;
        }
        In::Close(code, requests) => (requests, Some(Ending::Close(code))),
    };
    for r in requests {
        match r {
            ClientMessage::Register { .. } => register(app, conn, r).await,
            _ => app.hub.handle(conn, r, Instant::now()),
        }
    }
    ending
}

/// The answer to a message refused by closing the connection: the native
/// `error`, or the dialect's own (`None` when it has none).
fn refusal_for(dialect: Option<&Mutex<Dialect>>, text: &str, code: ErrorCode) -> Option<String> {
    match dialect {
        None => refusal(text, code),
        Some(d) => lock(d).refusal(text, code, code.hint()),
    }
}

/// Hands a `register` to the hub. In a network of brokers the id is
/// claimed in Redis first, and the connection's next frames wait for the
/// answer. The claim runs in a task of its own: if this connection ends
/// meanwhile (its register time runs out), what Redis answers is still
/// taken, or given back.
async fn register(app: &Arc<App>, conn: crate::hub::ConnId, msg: ClientMessage) {
    if app.config.redis.is_none() {
        return app.hub.handle(conn, msg, Instant::now());
    }
    if let Some(claim) = app.hub.begin_register(conn, msg, Instant::now()) {
        let app = app.clone();
        let _ = tokio::spawn(async move {
            let outcome = app.hub.claim(claim.clone()).await;
            app.hub
                .finish_register(conn, claim, outcome, Instant::now());
        })
        .await;
    }
}

/// Locks a mutex that is never contended (it is shared by the futures of
/// one task) and cannot be poisoned in a way that matters here.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The frame a connection's writer is handing to its socket (shared by
/// the writer and the code that runs after it ends, in one task; the lock
/// is never contended).
struct Slot(Mutex<Option<Box<Outgoing>>>);

impl Slot {
    fn put(&self, frame: Option<Box<Outgoing>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = frame;
    }

    fn take(&self) -> Option<Box<Outgoing>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What the writer sends for a frame the hub queued.
enum ToWrite {
    /// This message (a translation into another protocol, a ping, a pong).
    Message(Message),
    /// The frame itself, as it waits in the [`Slot`]: encoded from there,
    /// not copied.
    Slot,
}

/// Queues `send` on the socket's buffer at once (see
/// [`ws::Writer::make_room`] for bounding it; a future that held the frame
/// across the write of the buffer would hold it in every connection's
/// future).
fn put<W: AsyncWrite + Unpin>(sink: &mut ws::Writer<W>, send: ToWrite, slot: &Slot) {
    match send {
        ToWrite::Message(m) => sink.put_message(&m),
        ToWrite::Slot => {
            let held = slot.0.lock().unwrap_or_else(|e| e.into_inner());
            match held.as_deref().map(|o| &o.frame) {
                Some(Frame::Text(t)) => sink.put(ws::Data::Text, t.as_bytes()),
                Some(Frame::Binary(b)) => sink.put(ws::Data::Binary, b),
                None => {}
            }
        }
    }
}

/// How long a single write may take before the client counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames written per flush at most.
const WRITE_BATCH: usize = 64;

/// One connection, to run to its end (a task of its own). `grant` is what
/// its token allows and `broker_host` the host it reached the broker by
/// (see [`crate::hub::Hub::connect`]); the connection is in the hub once
/// this returns.
///
/// Not an `async fn`: one keeps each argument for its whole life beside
/// the locals moved out of it. This sets up what it can first, and the
/// future it returns holds each value once: with many idle connections,
/// every byte of it counts once per connection.
pub fn run(
    socket: ws::Socket,
    app: Arc<App>,
    ip: std::net::IpAddr,
    grant: Option<Grant>,
    broker_host: Option<String>,
    dialect: Option<Dialect>,
) -> impl Future<Output = ()> + Send + 'static {
    // The reader's own limit sits above ours so that a frame just over the
    // limit is read and refused with 1009 (its sender told which message
    // was lost), while a huge one is refused before it is buffered.
    let largest = max_binary_frame(app.config.max_frame_bytes, app.config.relay.is_on());
    let hard_limit = largest.saturating_mul(2);
    let (tx, rx) = crate::hub::outbox::channel(app.config.outbound_queue);
    let (kill_tx, kill_rx) = oneshot::channel::<CloseCode>();
    let conn = app.hub.connect(tx, kill_tx, grant, broker_host, Some(ip));
    // A client of another protocol (see `frontends`): its frames are
    // translated both ways (boxed: most connections speak peerwire).
    let dialect = dialect.map(|d| Box::new(Mutex::new(d)));
    let hub = Hub { conn, rx, kill_rx };
    match socket {
        ws::Socket::Tcp(tcp, leftover) => {
            let (r, w) = tcp.into_split();
            let (stream, sink) = (ws::Reader::new(r, leftover, hard_limit), ws::Writer::new(w));
            Either::Left(serve(stream, sink, app, ip, hub, dialect))
        }
        ws::Socket::Other(io) => {
            let (r, w) = tokio::io::split(io);
            let stream = ws::Reader::new(r, Bytes::new(), hard_limit);
            let sink = ws::Writer::new(w);
            // Boxed: TLS connections are the few.
            Either::Right(Box::pin(serve(stream, sink, app, ip, hub, dialect)))
        }
    }
}

/// A connection's ends in the hub.
struct Hub {
    conn: crate::hub::ConnId,
    /// Its outbound queue.
    rx: crate::hub::Inbox,
    /// The hub's close switch.
    kill_rx: oneshot::Receiver<CloseCode>,
}

/// [`run`] on the socket's two halves.
fn serve<R, W>(
    mut stream: ws::Reader<R>,
    mut sink: ws::Writer<W>,
    app: Arc<App>,
    ip: std::net::IpAddr,
    hub: Hub,
    dialect: Option<Box<Mutex<Dialect>>>,
) -> impl Future<Output = ()> + Send
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let Hub {
        conn,
        mut rx,
        mut kill_rx,
    } = hub;
    async move {
        // Its id is registered at once.
        if let Some(d) = &dialect {
            let start = lock(d).start(&app.peerjs_tokens);
            for msg in start {
                match msg {
                    ClientMessage::Register { .. } => Box::pin(register(&app, conn, msg)).await,
                    _ => app.hub.handle(conn, msg, Instant::now()),
                }
            }
        }
        // The code to close with when the dialect ends the connection (0: none).
        let closing = AtomicU16::new(0);
        app.metrics.connections_total.inc();
        let opened_at = Instant::now();
        crate::access::opened(ip, conn);
        // The id the hub confirmed to this client, for the access log.
        let mut registered: Option<String> = None;
        // The frame the writer is handing to the socket: until the socket has
        // taken it, it is the hub's to deliver again if the connection ends (a
        // write cut short must not lose it).
        let unwritten = Slot(Mutex::new(None));
        // What the frames fed to the socket hold of the byte budgets: given
        // back once the write is flushed, so that a frame stuck in a write to
        // a client that does not read still counts.
        let mut writing: Vec<Held> = Vec::new();
        let fed = |writing: &mut Vec<Held>| {
            if let Some(o) = unwritten.take() {
                writing.push(o.into_held());
            }
        };
        let mut outgoing = |o: Box<Outgoing>| -> Option<ToWrite> {
            if registered.is_none() {
                registered = crate::access::registered_id(&o.frame);
            }
            let message = match (&dialect, &o.frame) {
                (Some(d), Frame::Text(text)) => {
                    let holds = |id: &str| app.hub.holds(id);
                    let out = lock(d).outbound(text.as_str(), &app.peerjs_tokens, holds);
                    match out {
                        Out::Send(m) => Some(ToWrite::Message(m)),
                        Out::SendAndClose(m) => {
                            close_once(&closing, CloseCode::Normal);
                            Some(ToWrite::Message(m))
                        }
                        Out::Hub(requests) => {
                            for r in requests {
                                app.hub.handle(conn, r, Instant::now());
                            }
                            None
                        }
                        Out::SendThen(m, requests) => {
                            for r in requests {
                                app.hub.handle(conn, r, Instant::now());
                            }
                            Some(ToWrite::Message(m))
                        }
                        Out::Close(code) => {
                            close_once(&closing, code);
                            None
                        }
                        Out::Nothing => None,
                    }
                }
                (Some(_), Frame::Binary(_)) => None,
                // Written from the slot, not copied.
                _ => Some(ToWrite::Slot),
            };
            unwritten.put(Some(o));
            message
        };
        // A ping's answer, for the writer to send (the latest ping's, as RFC
        // 6455 allows).
        let pong = Mutex::new(None::<Bytes>);
        let pong_ready = Notify::new();
        let heartbeat_every = Duration::from_millis(app.config.heartbeat_interval_ms);
        let silence_limit = Duration::from_millis(app.config.heartbeat_timeout_ms);
        let max_frame = app.config.max_frame_bytes;
        let max_binary = max_binary_frame(app.config.max_frame_bytes, app.config.relay.is_on());
        let mut bucket = crate::limits::TokenBucket::new(
            app.config.rate_limit,
            app.config.rate_burst,
            Instant::now(),
        );
        let register_within = Duration::from_millis(app.config.register_timeout_ms);
        // The answer to a message refused by closing the connection (4002 over
        // the rate, 1009 too big): its sender is told which message was lost.
        let mut refused: Option<String> = None;

        let ending = {
            let writer = async {
                let mut ping = interval(heartbeat_every);
                ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ping.tick().await;
                loop {
                    let out = tokio::select! {
                        biased;
                        code = &mut kill_rx => return Ending::Killed(code.unwrap_or(CloseCode::GoingAway)),
                        frame = rx.recv() => match frame {
                            Some(o) => match outgoing(o) {
                                Some(send) => send,
                                // Nothing for this client in its protocol (or
                                // the end of the connection).
                                None => {
                                    unwritten.put(None);
                                    if let Some(code) = closing_code(&closing) {
                                        return Ending::Close(code);
                                    }
                                    continue;
                                }
                            },
                            None => return Ending::Killed(CloseCode::GoingAway),
                        },
                        _ = ping.tick() => ToWrite::Message(Message::Ping(Default::default())),
                        () = pong_ready.notified() => match lock(&pong).take() {
                            Some(payload) => ToWrite::Message(Message::Pong(payload)),
                            None => continue,
                        },
                    };
                    // Write what is ready in one flush: a burst costs one
                    // syscall instead of one per frame. A frame taken from the
                    // queue is written before anything else can happen.
                    // (Encoded at once: what a write left in the buffer was
                    // flushed, or ended the connection. Nothing is held
                    // across an await but the socket's own buffer.)
                    put(&mut sink, out, &unwritten);
                    fed(&mut writing);
                    let write = async {
                        for _ in 0..WRITE_BATCH {
                            // Nothing after what ends the connection.
                            if closing_code(&closing).is_some() {
                                break;
                            }
                            sink.make_room().await?;
                            match rx.try_recv() {
                                Ok(o) => {
                                    if let Some(send) = outgoing(o) {
                                        put(&mut sink, send, &unwritten);
                                    }
                                    fed(&mut writing);
                                }
                                Err(_) => break,
                            }
                        }
                        sink.flush().await
                    };
                    // The hub's close switch also ends a write that is stuck
                    // (a client that stopped reading): the connection's
                    // unsent frames go back to the hub at once, not after the
                    // write timeout, so that a resuming client gets them first.
                    let written = tokio::select! {
                        biased;
                        code = &mut kill_rx => return Ending::Killed(code.unwrap_or(CloseCode::GoingAway)),
                        written = patient_timeout(WRITE_TIMEOUT, write) => written,
                    };
                    // Freed, not kept at its size: an idle connection holds none.
                    writing = Vec::new();
                    match written {
                        Ok(Ok(())) if closing_code(&closing).is_some() => {
                            return Ending::Close(
                                closing_code(&closing).unwrap_or(CloseCode::Normal),
                            );
                        }
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Ending::Lost,
                        Err(_) => return Ending::Close(CloseCode::SlowConsumer),
                    }
                }
            };
            let refused = &mut refused;
            let reader = async {
                // One timer for the connection's silence, moved on only
                // when it fires: a message costs no timer of its own.
                let silence = Silence::new(silence_limit);
                tokio::pin!(silence);
                loop {
                    let frame = match silence.as_mut().or(stream.next()).await {
                        None => return Ending::Close(CloseCode::HeartbeatTimeout),
                        Some(frame) => frame,
                    };
                    let frame = match frame {
                        Err(e) => {
                            tracing::debug!(conn, "read: {e:?}");
                            return match e.close_code() {
                                Some(code) => Ending::Close(code),
                                None => Ending::Lost,
                            };
                        }
                        Ok(frame) => frame,
                    };
                    // The clock is read once per message.
                    let heard = tokio::time::Instant::now();
                    silence.as_mut().heard(heard);
                    let now = heard.into_std();
                    // Every JSON message costs a token, from this connection's
                    // bucket and from its address's; so does every relay frame
                    // the hub did not forward.
                    let mut take_token = || bucket.take(now) && app.addresses.take(ip, now);
                    match frame {
                        Message::Text(text) => {
                            if !take_token() {
                                *refused =
                                    refusal_for(dialect.as_deref(), &text, ErrorCode::RateLimited);
                                return Ending::Close(CloseCode::TooManyMessages);
                            }
                            if text.len() > max_frame {
                                *refused =
                                    refusal_for(dialect.as_deref(), &text, ErrorCode::TooBig);
                                return Ending::Close(CloseCode::MessageTooBig);
                            }
                            if let Some(d) = &dialect {
                                let inbound = lock(d).text(text.as_str());
                                // (Boxed here and below: a future awaited in
                                // the reader is held, at its size, by every
                                // idle connection.)
                                if let Some(ending) = Box::pin(carry(&app, conn, inbound)).await {
                                    return ending;
                                }
                                continue;
                            }
                            // A signal, the most common message, on the
                            // fast path (its `data` passed through as text).
                            if app.hub.try_signal(conn, text.as_str(), now) {
                                continue;
                            }
                            match ClientMessage::decode(text.as_str()) {
                                // (In a network of brokers, a claim in Redis
                                // first: see `register`.)
                                Ok(msg @ ClientMessage::Register { .. }) => {
                                    if app.config.redis.is_none() {
                                        app.hub.handle(conn, msg, Instant::now());
                                    } else {
                                        Box::pin(register(&app, conn, msg)).await;
                                    }
                                }
                                Ok(msg) => app.hub.handle(conn, msg, now),
                                Err(err) => app.hub.reject(conn, err, now),
                            }
                        }
                        Message::Binary(bytes) => {
                            if let Some(d) = &dialect {
                                if !take_token() {
                                    *refused = refusal_for(Some(d), "", ErrorCode::RateLimited);
                                    return Ending::Close(CloseCode::TooManyMessages);
                                }
                                if bytes.len() > max_frame {
                                    *refused = refusal_for(Some(d), "", ErrorCode::TooBig);
                                    return Ending::Close(CloseCode::MessageTooBig);
                                }
                                let inbound = lock(d).binary(&bytes);
                                if let Some(ending) = Box::pin(carry(&app, conn, inbound)).await {
                                    return ending;
                                }
                                continue;
                            }
                            if bytes.len() > max_binary {
                                return Ending::Close(CloseCode::MessageTooBig);
                            }
                            let relayed = app.hub.handle_binary(conn, &bytes, now);
                            if relayed == Relayed::Dropped && !take_token() {
                                return Ending::Close(CloseCode::TooManyMessages);
                            }
                        }
                        // A ping costs a token like a message: each is
                        // answered with a pong, and a flood of them kept a
                        // core busy. (Pongs answer the broker's own pings.)
                        Message::Ping(payload) => {
                            if !take_token() {
                                return Ending::Close(CloseCode::TooManyMessages);
                            }
                            *lock(&pong) = Some(payload);
                            pong_ready.notify_one();
                        }
                        Message::Pong(_) => {}
                        Message::Close(frame) => {
                            let code = frame.map(|f| f.code);
                            return Ending::ClientClosed { code };
                        }
                    }
                }
            };
            let register_deadline = async {
                tokio::time::sleep(register_within).await;
                if app.hub.is_registered(conn) {
                    std::future::pending::<()>().await;
                }
                Ending::Close(CloseCode::RegisterTimeout)
            };
            tokio::select! {
                e = writer => e,
                e = reader => e,
                e = register_deadline => e,
            }
        };

        // A connection refused for what it sent can still read: what its queue
        // holds now (answers to the messages before the refused one) is
        // written ahead of the refusal, within the close's time.
        if matches!(
            ending,
            Ending::Close(CloseCode::TooManyMessages | CloseCode::MessageTooBig)
        ) {
            let _ = timeout(Duration::from_secs(2), async {
                loop {
                    if sink.make_room().await.is_err() {
                        return;
                    }
                    let Ok(o) = rx.try_recv() else {
                        break;
                    };
                    if let Some(send) = outgoing(o) {
                        put(&mut sink, send, &unwritten);
                    }
                    unwritten.put(None);
                }
                let _ = sink.flush().await;
            })
            .await;
        }
        let (close_with, clean, by) = match ending {
            Ending::ClientClosed { code } => (
                None,
                code == Some(CloseCode::Normal.code()),
                ClosedBy::Client(code),
            ),
            Ending::Lost => (None, false, ClosedBy::Network),
            Ending::Close(code) => {
                app.metrics.close(code);
                (Some(code), false, ClosedBy::Broker(code))
            }
            Ending::Killed(code) => (Some(code), false, ClosedBy::Broker(code)),
        };
        // A client of another protocol: its last word to whom it talked to (a
        // signaller pipe's other side closes with this side's code: 1000 for a
        // normal close, 1011 for one without a close frame), and an id its
        // protocol cannot resume is released at once.
        let mut clean = clean;
        if let Some(d) = &dialect {
            let code = match &ending {
                Ending::ClientClosed { code } => code
                    .and_then(CloseCode::from_code)
                    .filter(|c| *c == CloseCode::Normal)
                    .unwrap_or(CloseCode::InternalError),
                Ending::Lost => CloseCode::InternalError,
                Ending::Close(code) | Ending::Killed(code) => *code,
            };
            let last = lock(d).ended(code);
            for r in last {
                app.hub.handle(conn, r, Instant::now());
            }
            clean |= lock(d).releases_at_once();
        }
        // First stop the hub sending here and take back what was never written.
        let unwritten = unwritten.take().map(|o| *o);
        let reason = app
            .hub
            .disconnect_with(conn, clean, Instant::now(), &mut rx, unwritten);
        if let Some(code) = close_with {
            if let Some(answer) = refused {
                let _ = timeout(
                    Duration::from_secs(2),
                    sink.send(Message::Text(answer.into())),
                )
                .await;
            }
            // A protocol that closes with codes of its own (sigver's) says
            // which, in place of the hub's.
            let own = dialect.as_ref().and_then(|d| lock(d).close_frame());
            let frame = match own {
                Some((code, reason)) => CloseFrame {
                    code,
                    reason: reason.into(),
                },
                None => CloseFrame {
                    code: code.code(),
                    reason: reason.unwrap_or(code.reason()).into(),
                },
            };
            let _ = timeout(
                Duration::from_secs(2),
                sink.send(Message::Close(Some(frame))),
            )
            .await;
            // Read (and drop) what the client is still sending until its own
            // close frame, briefly: a socket closed with input unread is reset,
            // and a reset can overtake the close frame, so the client would see
            // 1006 instead of the code that says why.
            let _ = timeout(Duration::from_secs(1), async {
                while let Ok(msg) = stream.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        // A client's close frame is answered with its code (RFC 6455 section
        // 5.5.1).
        if let Ending::ClientClosed { code } = ending {
            let frame = code.map(|code| CloseFrame {
                code,
                reason: "".into(),
            });
            let _ = timeout(Duration::from_secs(2), sink.feed(Message::Close(frame))).await;
        }
        let _ = timeout(Duration::from_secs(2), sink.close()).await;
        crate::access::closed(ip, conn, registered.as_deref(), by, opened_at.elapsed());
    }
}

/// The error that answers a message the broker refuses by closing the
/// connection: with its `rid` (and, for a signal, its target) when the
/// message can be read, so the sender knows which one was lost.
fn refusal(text: &str, code: ErrorCode) -> Option<String> {
    let msg = ClientMessage::decode(text).ok()?;
    let answer = match &msg {
        ClientMessage::Signal { rid, to, .. } => ServerMessage::delivery_error(*rid, code, to),
        other => ServerMessage::error(Some(other.rid()), code, ""),
    };
    Some(answer.encode())
}

/// How late a timer may fire before the broker counts itself as having
/// been paused.
const PAUSE_SLACK: Duration = Duration::from_secs(1);

/// `fut`, or `Err` when it takes longer than `limit` of the broker's own
/// running time: a deadline that passes while the broker itself was not
/// running (SIGSTOP, a VM migration, a starved host: its timer fires more
/// than [`PAUSE_SLACK`] late) is moved on instead, and the same future
/// polled on, so that a client is not blamed for the broker's silence and
/// a write is never cut in half.
fn patient_timeout<F: Future>(limit: Duration, fut: F) -> Patient<F> {
    Patient {
        fut,
        sleep: tokio::time::sleep(limit),
        limit,
    }
}

pin_project_lite::pin_project! {
    /// [`patient_timeout`]'s future: a struct, not an `async fn`, so that
    /// it holds `fut` once (an `async fn` keeps its argument beside the
    /// pinned copy it polls).
    struct Patient<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: tokio::time::Sleep,
        limit: Duration,
    }
}

pin_project_lite::pin_project! {
    /// How long a connection has been silent: one timer, set when it
    /// opens and moved on only when it fires, to the limit after the last
    /// message [`Silence::heard`] (so a message costs a clock read, not a
    /// timer). Like [`patient_timeout`], a timer that fires more than
    /// [`PAUSE_SLACK`] late (the broker itself was not running) starts the
    /// limit again instead of blaming the client.
    struct Silence {
        #[pin]
        sleep: tokio::time::Sleep,
        limit: Duration,
        heard: tokio::time::Instant,
    }
}

impl Silence {
    fn new(limit: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            sleep: tokio::time::sleep_until(now + limit),
            limit,
            heard: now,
        }
    }

    /// A message arrived at `at`.
    fn heard(self: Pin<&mut Self>, at: tokio::time::Instant) {
        *self.project().heard = at;
    }

    /// `fut`'s output, or `None` once the connection has been silent for
    /// the limit. (One future, not a `select!`: every idle connection's
    /// future holds it while it waits, at its size.)
    fn or<F: Future>(self: Pin<&mut Self>, fut: F) -> Until<'_, F> {
        Until { fut, silence: self }
    }

    /// Whether the silence has lasted the limit (the timer is moved on to
    /// the limit after the last message otherwise).
    fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let mut this = self.project();
        while this.sleep.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            let deadline = this.sleep.deadline();
            let next = if now.duration_since(deadline) > PAUSE_SLACK {
                now + *this.limit
            } else {
                *this.heard + *this.limit
            };
            if next <= now {
                return true;
            }
            this.sleep.as_mut().reset(next);
        }
        false
    }
}

pin_project_lite::pin_project! {
    /// [`Silence::or`]'s future.
    struct Until<'a, F> {
        #[pin]
        fut: F,
        silence: Pin<&'a mut Silence>,
    }
}

impl<F: Future> Future for Until<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if this.silence.as_mut().poll_expired(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// A [`patient_timeout`] ran out.
#[derive(Debug)]
struct Elapsed;

impl<F: Future> Future for Patient<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        while this.sleep.as_mut().poll(cx).is_ready() {
            let deadline = this.sleep.deadline();
            let now = tokio::time::Instant::now();
            if now.duration_since(deadline) <= PAUSE_SLACK {
                return Poll::Ready(Err(Elapsed));
            }
            this.sleep.as_mut().reset(now + *this.limit);
        }
        Poll::Pending
    }
}

/// The largest binary frame a client may send: a whole relay frame when
/// the broker relays (its payload may be 64 KiB whatever
/// `--max-frame-bytes` says), else `--max-frame-bytes`.
pub fn max_binary_frame(max_frame_bytes: usize, relay: bool) -> usize {
    if relay {
        max_frame_bytes.max(crate::hub::MAX_RELAY_FRAME)
    } else {
        max_frame_bytes
    }
}

/// Sends `text` on a just-upgraded socket, then closes it normally (the
/// way PeerJS's server refuses a connect: an `ERROR` message, then a
/// close).
pub async fn refuse_with_text(socket: ws::Socket, text: String) {
    let frame = CloseFrame {
        code: CloseCode::Normal.code(),
        reason: "".into(),
    };
    close_with(socket, Some(Message::Text(text.into())), frame).await;
}

/// Closes a just-upgraded socket at once with `code` and `reason` (cut to
/// the 123 bytes a close frame can carry).
pub async fn refuse(socket: ws::Socket, code: CloseCode, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: code.code(),
        reason: reason[..end].into(),
    };
    close_with(socket, None, frame).await;
}

/// Sends `first` (if any) and the close frame, then waits briefly for the
/// client's close reply so that the frame is read before the TCP
/// connection goes.
async fn close_with(socket: ws::Socket, first: Option<Message>, frame: CloseFrame) {
    async fn on<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        (mut reader, mut writer): (ws::Reader<R>, ws::Writer<W>),
        first: Option<Message>,
        frame: CloseFrame,
    ) {
        let _ = timeout(Duration::from_secs(2), async {
            if let Some(message) = first {
                writer.feed(message).await?;
            }
            writer.send(Message::Close(Some(frame))).await
        })
        .await;
        let _ = timeout(Duration::from_secs(2), reader.next()).await;
        let _ = timeout(Duration::from_secs(1), writer.close()).await;
    }
    // (What a refused client says is not read beyond its close frame.)
    const LIMIT: usize = 4 * 1024;
    match socket {
        ws::Socket::Tcp(mut tcp, leftover) => {
            let (r, w) = tcp.split();
            on(
                (ws::Reader::new(r, leftover, LIMIT), ws::Writer::new(w)),
                first,
                frame,
            )
            .await
        }
        ws::Socket::Other(io) => {
            let (r, w) = tokio::io::split(io);
            on(
                (ws::Reader::new(r, Bytes::new(), LIMIT), ws::Writer::new(w)),
                first,
                frame,
            )
            .await
        }
    }
}
