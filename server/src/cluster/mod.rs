//! A network of brokers sharing one Redis (`--redis redis://…`).
//!
//! One task per broker talks to Redis; the hub talks to the task through an
//! ordered queue ([`crate::hub::Op`]) and the task calls back into the hub.
//!
//! In Redis, every id of the network is a hash `pw:id:<id>` holding the
//! broker that has it (`b`) and its resume token (`t`), with a lease
//! (`--redis-lease-ms`): each broker renews the leases of its ids, so the
//! ids of a broker that dies are free once their leases run out. Each
//! broker subscribes to its own channel `pw:b:<broker>`; a frame for an id
//! held elsewhere is published there by a script that looks the holder up
//! and publishes in one step. The task sends the hub's ops to Redis in the
//! order it was handed them, in pipelines, over one connection, and Redis
//! delivers one connection's publishes to a subscriber in order: frames
//! from one broker to another keep their order.
//!
//! Delivery between brokers is at most once: a frame Redis accepted is
//! lost if the receiving broker dies or loses Redis before it reads it.
//! Everything else that cannot be delivered is answered to its sender
//! (`unknown-peer`: no broker holds the id; `unavailable`: the holder's
//! broker is not listening, or this broker has lost Redis; `peer-gone`:
//! the id moved on while the frame was on its way).
//!
//! When Redis goes away the broker keeps serving its own clients, reports
//! itself degraded on `/healthz`, refuses frames for other brokers with
//! `unavailable`, and registers new ids on its own; when Redis is back it
//! re-subscribes and claims every id it holds again (the same script that
//! renews leases: a claim that is missing is made, one that is this
//! broker's is renewed, one another broker made meanwhile wins, and the
//! client here is closed with 4005).

mod scripts;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use peerwire::protocol::messages::Rid;
use peerwire::protocol::{ClientMessage, CloseCode, ErrorCode, RemovalReason, ServerMessage};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::time::{MissedTickBehavior, interval, sleep};

use crate::App;
use crate::hub::{Limit, LinkEnd, Notice, Op, Outcome, RoomAnswer, RoomNotice, RoomView};
use scripts::{
    ROOM_CHANNEL_PREFIX, Scripts, broker_channel, evalsha, host_key, hosts_of, id_key, joined_by,
    joiners_key, key_key, members_key, opened_by, room_channel, rooms_of, state_key,
};

/// How many ops go to Redis in one pipeline at most.
const BATCH: usize = 256;

/// How many leases one renewal script call handles.
const RENEW_CHUNK: usize = 512;

/// How long one Redis command may take before the connection counts as
/// lost. A Redis that died resets the connection at once; this is for one
/// that hangs. Generous, because losing Redis is costly (every message for
/// another broker is refused until it is back) and a broker starved of CPU
/// answers its own timers late: a soak of 2 000 clients beside a compiler
/// on two cores saw 3 s run out.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Between attempts to reach Redis.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How often this broker ends expired state keys and the rooms of ids
/// whose claims ran out (every broker does; it is idempotent).
const REAP_EVERY: Duration = Duration::from_millis(250);

/// How many failed releases, and leaves, are kept to be done again once
/// Redis is back (beyond, a release waits for its lease to run out).
const REDO_MAX: usize = 65_536;

/// What failed while Redis was away and is done once it is back (Redis
/// may have kept its data: then the id would stay in the room, or keep
/// what it held, for as long as this broker renews its claim).
#[derive(Default)]
struct Redo {
    /// The first release of each id, tried as it was: a claim another
    /// broker, or a newer token, holds now is left alone.
    releases: HashMap<String, String>,
    /// Leaves, done again for ids still held here and not in the room again.
    leaves: HashMap<(String, String), String>,
}

impl Redo {
    fn keep(&mut self, op: Op) {
        match op {
            Op::Release { id, token } if self.releases.len() < REDO_MAX => {
                self.releases.entry(id).or_insert(token);
            }
            Op::Leave { id, room, event } if self.leaves.len() < REDO_MAX => {
                self.leaves.insert((id, room), event);
            }
            _ => {}
        }
    }
}

/// The cluster's settings (from `--redis*`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub url: String,
    /// How long an id's claim outlives its broker.
    pub lease: Duration,
    /// This broker's name in the network (random per process).
    pub broker: String,
    /// Rendezvous deadlines (`--listen-timeout-ms`, `--pipe-timeout-ms`;
    /// 0: none) and per-id limits (`--max-keys-per-peer`,
    /// `--max-hostnames-per-peer`), kept in Redis for the whole network.
    pub listen_ms: u64,
    pub pipe_ms: u64,
    pub max_keys: usize,
    pub max_hostnames: usize,
}

/// A live link to Redis: the command connection and the subscriptions.
struct Session {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    notices: PubSubStream,
    /// Room channels subscribed to.
    rooms: HashSet<String>,
}

/// Runs the cluster task until the hub lets go of its end of the queue.
pub async fn run(app: Arc<App>, config: ClusterConfig, mut end: LinkEnd) {
    let client = match Client::open(config.url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            // Checked at startup (`check_url`); kept as a safety net.
            tracing::error!("--redis {:?} cannot be used: {e}", config.url);
            return;
        }
    };
    let scripts = Scripts::new();
    let mut retry = RETRY_MIN;
    let mut was_up = true;
    let mut redo = Redo::default();
    loop {
        match connect(&client, &config, &scripts, &app, &mut redo).await {
            Ok(session) => {
                retry = RETRY_MIN;
                end.set_up(true);
                app.metrics.set_cluster_up(true);
                tracing::info!(broker = %config.broker, "joined the broker network on Redis");
                was_up = true;
                let why = serve(&app, &config, &scripts, &mut end, session, &mut redo).await;
                end.set_up(false);
                app.metrics.set_cluster_up(false);
                match why {
                    Ended::Closed => return,
                    Ended::Lost(e) => {
                        tracing::warn!(
                            "lost Redis ({e}); serving this broker's clients alone until it is back"
                        );
                    }
                }
            }
            Err(e) => {
                if was_up {
                    tracing::warn!("cannot reach Redis at {:?}: {e}; retrying", config.url);
                }
                was_up = false;
            }
        }
        // Meanwhile every op is answered as failed, so nothing waits.
        let wake = sleep(retry);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => break,
                op = end.ops.recv() => match op {
                    Some(op) => fail(&app, &end, op, &mut redo),
                    None => return,
                },
            }
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Connects, subscribes, loads the scripts, gives back what was released
/// while Redis was away, and makes again what this broker holds: its ids'
/// claims and their room memberships (a no-op when Redis kept them; after
/// a Redis restart, the rebuild); then takes its ids out of the rooms they
/// left meanwhile.
async fn connect(
    client: &Client,
    config: &ClusterConfig,
    scripts: &Scripts,
    app: &App,
    redo: &mut Redo,
) -> redis::RedisResult<Session> {
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&settings)
        .await?;
    let (mut sink, notices) = client.get_async_pubsub().await?.split();
    sink.subscribe(broker_channel(&config.broker)).await?;
    let mut rooms = HashSet::new();
    for room in app.hub.network_rooms() {
        sink.subscribe(room_channel(&room)).await?;
        rooms.insert(room);
    }
    for s in scripts.all() {
        s.prepare_invoke().load_async(&mut conn).await?;
    }
    let mut effects = Effects::default();
    let releases: Vec<(String, String)> = redo.releases.clone().into_iter().collect();
    for chunk in releases.chunks(BATCH) {
        let mut pipe = redis::pipe();
        let mut ids = Vec::with_capacity(chunk.len());
        for (id, token) in chunk {
            let op = Op::Release {
                id: id.clone(),
                token: token.clone(),
            };
            if let Some(cmd) = command(config, scripts, &op) {
                pipe.add_command(cmd);
                ids.push(id);
            }
        }
        let answers: Vec<Value> = pipe.query_async(&mut conn).await?;
        for (id, v) in ids.into_iter().zip(&answers) {
            let list = |i: usize| items(v).get(i).map(strings).unwrap_or_default();
            effects.forgotten(id, &list(0), &list(1), &list(2));
        }
    }
    renew(app, config, scripts, &mut conn).await?;
    let memberships = app.hub.memberships();
    for chunk in memberships.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for (id, room) in chunk {
            let keys = [members_key(room), state_key(room), rooms_of(id)];
            pipe.add_command(
                evalsha(&scripts.join, &keys)
                    .arg(id)
                    .arg(room)
                    .arg(usize::MAX)
                    .arg(room_channel(room))
                    .arg("")
                    .clone(),
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    let leaves: Vec<((String, String), String)> = redo
        .leaves
        .iter()
        .filter(|((id, room), _)| app.hub.held_outside(id, room))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for chunk in leaves.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for ((id, room), event) in chunk {
            let op = Op::Leave {
                id: id.clone(),
                room: room.clone(),
                event: event.clone(),
            };
            if let Some(cmd) = command(config, scripts, &op) {
                pipe.add_command(cmd).ignore();
            }
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    effects.apply(app, &mut conn).await?;
    *redo = Redo::default();
    Ok(Session {
        conn,
        sink,
        notices,
        rooms,
    })
}

enum Ended {
    /// The hub is gone (shutdown).
    Closed,
    Lost(redis::RedisError),
}

async fn serve(
    app: &App,
    config: &ClusterConfig,
    scripts: &Scripts,
    end: &mut LinkEnd,
    mut session: Session,
    redo: &mut Redo,
) -> Ended {
    let mut renew_every = interval(config.lease / 3);
    renew_every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    renew_every.tick().await;
    let mut reap_every = interval(REAP_EVERY);
    reap_every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            op = end.ops.recv() => {
                let Some(op) = op else { return Ended::Closed };
                let mut batch = vec![op];
                while batch.len() < BATCH {
                    match end.ops.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                run_batch(app, config, scripts, end, &mut session, batch, redo).await
            }
            notice = session.notices.next() => match notice {
                Some(msg) => {
                    on_notice(app, msg.get_channel_name(), msg.get_payload_bytes());
                    Ok(())
                }
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the subscription ended",
                ))),
            },
            _ = renew_every.tick() => renew(app, config, scripts, &mut session.conn).await,
            _ = reap_every.tick() => reap(app, config, scripts, &mut session.conn).await,
        };
        if let Err(e) = done {
            return Ended::Lost(e);
        }
    }
}

/// A message on this broker's channel or on a room's.
fn on_notice(app: &App, channel: &str, payload: &[u8]) {
    let now = Instant::now();
    if let Some(room) = channel.strip_prefix(ROOM_CHANNEL_PREFIX) {
        match serde_json::from_slice::<RoomNotice>(payload) {
            Ok(notice) => app.hub.room_notice(room, notice, now),
            Err(e) => tracing::warn!("ignored a malformed room notice: {e}"),
        }
        return;
    }
    match serde_json::from_slice::<Notice>(payload) {
        Ok(Notice::Deliver(envelope)) => {
            app.metrics.cluster_received.inc();
            app.hub.deliver_remote(envelope, now);
        }
        Ok(Notice::TakenOver(id)) => app.hub.lost(&id, now),
        Ok(Notice::HandedOver(id)) => app.hub.handed_over(&id, now),
        Err(e) => tracing::warn!("ignored a malformed message from another broker: {e}"),
    }
}

/// The command one op sends, if it sends one.
fn command(config: &ClusterConfig, scripts: &Scripts, op: &Op) -> Option<redis::Cmd> {
    let lease = config.lease.as_millis() as u64;
    let cmd = match op {
        Op::Forward(envelope) => {
            let payload = serde_json::to_vec(&Notice::Deliver(envelope.clone())).ok()?;
            evalsha(&scripts.route, &[id_key(&envelope.to)])
                .arg(broker_channel(""))
                .arg(payload)
                .clone()
        }
        Op::Claim(claim, _) => evalsha(&scripts.claim, &[id_key(&claim.id)])
            .arg(&config.broker)
            .arg(&claim.token)
            .arg(claim.resume.as_deref().unwrap_or(""))
            .arg(lease)
            .arg(&claim.id)
            .arg(config.listen_ms)
            .clone(),
        Op::Find { id, .. } => redis::cmd("EXISTS").arg(id_key(id)).clone(),
        Op::Release { id, token } => evalsha(&scripts.release, &[id_key(id)])
            .arg(&config.broker)
            .arg(token)
            .arg(id)
            .arg(config.listen_ms)
            .clone(),
        Op::Request { id, msg, .. } => request_command(config, scripts, id, msg)?,
        Op::TookOver { id, from } => {
            let payload = serde_json::to_vec(&Notice::TakenOver(id.clone())).ok()?;
            redis::cmd("PUBLISH")
                .arg(broker_channel(from))
                .arg(payload)
                .clone()
        }
        Op::HandedOver { id } => {
            let payload = serde_json::to_vec(&Notice::HandedOver(id.clone())).ok()?;
            evalsha(&scripts.route, &[id_key(id)])
                .arg(broker_channel(""))
                .arg(payload)
                .clone()
        }
        Op::Join {
            id,
            room,
            max_members,
            event,
            ..
        } => evalsha(
            &scripts.join,
            &[members_key(room), state_key(room), rooms_of(id)],
        )
        .arg(id)
        .arg(room)
        .arg(*max_members)
        .arg(room_channel(room))
        .arg(event)
        .clone(),
        Op::Leave { id, room, event } => evalsha(
            &scripts.leave,
            &[members_key(room), state_key(room), rooms_of(id)],
        )
        .arg(id)
        .arg(room)
        .arg(room_channel(room))
        .arg(event)
        .arg(&config.broker)
        .clone(),
        Op::Publish { room, payload } => redis::cmd("PUBLISH")
            .arg(room_channel(room))
            .arg(payload)
            .clone(),
        Op::Set {
            id,
            room,
            key,
            value,
            ttl_ms,
            max_keys,
            max_bytes,
            event,
            ..
        } => evalsha(&scripts.set, &[members_key(room), state_key(room)])
            .arg(id)
            .arg(key)
            .arg(format!("{id}|{value}"))
            .arg(*max_keys)
            .arg(*ttl_ms)
            .arg(room_channel(room))
            .arg(event)
            .arg(format!("{room}\n{key}"))
            .arg(*max_bytes)
            .clone(),
        Op::Delete {
            id,
            room,
            key,
            event,
            ..
        } => evalsha(&scripts.delete, &[members_key(room), state_key(room)])
            .arg(id)
            .arg(key)
            .arg(room_channel(room))
            .arg(event)
            .clone(),
        Op::Snapshot { room, .. } => {
            evalsha(&scripts.snapshot, &[members_key(room), state_key(room)])
        }
        Op::Unsubscribe { .. } | Op::Reply { .. } => return None,
    };
    Some(cmd)
}

/// Sends `batch` to Redis as one pipeline, after subscribing to the rooms
/// it joins (so that no change made after a join is missed), and hands
/// each answer back. On a connection error every op of the batch is
/// answered as failed.
async fn run_batch(
    app: &App,
    config: &ClusterConfig,
    scripts: &Scripts,
    end: &LinkEnd,
    session: &mut Session,
    batch: Vec<Op>,
    redo: &mut Redo,
) -> redis::RedisResult<()> {
    let subscribed = subscribe_joined(session, &batch).await;
    let touched: Vec<String> = batch
        .iter()
        .filter_map(|op| match op {
            Op::Join { room, .. } | Op::Snapshot { room, .. } | Op::Unsubscribe { room } => {
                Some(room.clone())
            }
            _ => None,
        })
        .collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut sent = Vec::with_capacity(batch.len());
    for op in &batch {
        let cmd = command(config, scripts, op);
        sent.push(cmd.is_some());
        if let Some(cmd) = cmd {
            pipe.add_command(cmd);
        }
    }
    let answers: redis::RedisResult<Vec<redis::RedisResult<Value>>> = match subscribed {
        Err(e) => Err(e),
        Ok(()) if pipe.is_empty() => Ok(Vec::new()),
        Ok(()) => pipe.query_async(&mut session.conn).await,
    };
    let answers = match answers {
        Ok(answers) => answers,
        Err(e) => {
            for op in batch {
                fail(app, end, op, redo);
            }
            return Err(e);
        }
    };
    let mut answers = answers.into_iter();
    let now = Instant::now();
    let mut effects = Effects::default();
    for (op, sent) in batch.into_iter().zip(sent) {
        end.done(&op);
        let answer = if sent {
            answers.next().unwrap_or(Ok(Value::Nil))
        } else {
            Ok(Value::Nil)
        };
        answer_op(app, config, op, answer, now, &mut effects);
    }
    effects.apply(app, &mut session.conn).await?;
    unsubscribe_unheld(app, session, touched).await
}

/// Subscribes to the rooms `batch` joins or resyncs, before their scripts
/// run (so that no change made after a join is missed).
async fn subscribe_joined(session: &mut Session, batch: &[Op]) -> redis::RedisResult<()> {
    for op in batch {
        if let Op::Join { room, .. } | Op::Snapshot { room, .. } = op {
            if !session.rooms.contains(room) {
                session.sink.subscribe(room_channel(room)).await?;
                session.rooms.insert(room.clone());
            }
        }
    }
    Ok(())
}

/// Stops listening to those of `rooms` this broker has no member in, once
/// their ops are answered: the hub's members are the truth, not the order
/// of the ops (an `Unsubscribe` may follow a join still in flight, and a
/// refused join leaves nobody to listen for).
async fn unsubscribe_unheld(
    app: &App,
    session: &mut Session,
    rooms: Vec<String>,
) -> redis::RedisResult<()> {
    for room in rooms {
        if session.rooms.contains(&room) && !app.hub.has_network_members(&room) {
            session.sink.unsubscribe(room_channel(&room)).await?;
            session.rooms.remove(&room);
        }
    }
    Ok(())
}

/// Hands Redis's answer to `op` back to the hub; what it asks of the
/// network goes in `effects`.
fn answer_op(
    app: &App,
    config: &ClusterConfig,
    op: Op,
    answer: redis::RedisResult<Value>,
    now: Instant,
    effects: &mut Effects,
) {
    let refused = |e: &redis::RedisError| {
        tracing::warn!("Redis refused a request: {e}");
        RoomAnswer::Refused(
            ErrorCode::Unavailable,
            format!(
                "the broker network failed: {}",
                ErrorCode::Unavailable.hint()
            ),
        )
    };
    match op {
        Op::Reply { conn, rid, .. } => {
            app.hub.answer(conn, Ok(ServerMessage::Ok { rid }), now);
        }
        Op::Forward(envelope) => match answer {
            Ok(Value::Int(n)) if n > 0 => {
                app.metrics.cluster_forwarded.inc();
            }
            Ok(Value::Int(-1)) => app.hub.undeliverable(envelope, ErrorCode::UnknownPeer, now),
            Ok(_) => app.hub.undeliverable(envelope, ErrorCode::Unavailable, now),
            Err(e) => {
                tracing::warn!("Redis refused a forward: {e}");
                app.hub.undeliverable(envelope, ErrorCode::Unavailable, now);
            }
        },
        Op::Claim(claim, reply) => {
            let outcome = claim_outcome(answer, &claim.id, effects);
            let _ = reply.send(outcome);
        }
        Op::Find { conn, rid, id } => {
            let online = match answer {
                Ok(Value::Int(n)) => Ok(n > 0),
                _ => Err(ErrorCode::Unavailable),
            };
            app.hub.found(conn, rid, id, online, now);
        }
        Op::Release { id, .. } => match answer {
            Ok(v) => {
                let list = |i: usize| items(&v).get(i).map(strings).unwrap_or_default();
                effects.forgotten(&id, &list(0), &list(1), &list(2));
            }
            Err(e) => tracing::warn!("Redis refused a release: {e}"),
        },
        Op::Request { conn, id, msg } => {
            let reply = match answer {
                Ok(v) => request_answer(config, &id, msg, &v, effects),
                Err(e) => {
                    tracing::warn!("Redis refused a request: {e}");
                    let code = ErrorCode::Unavailable;
                    Err((
                        code,
                        msg.rid(),
                        format!("the broker network failed: {}", code.hint()),
                    ))
                }
            };
            app.hub.answer(conn, reply, now);
        }
        // Nobody heard the takeover (the old broker died): nothing will be
        // handed over.
        Op::TookOver { id, .. } => match answer {
            Ok(Value::Int(n)) if n > 0 => {}
            _ => app.hub.handed_over(&id, now),
        },
        Op::HandedOver { .. } | Op::Leave { .. } | Op::Publish { .. } | Op::Unsubscribe { .. } => {
            if let Err(e) = answer {
                tracing::warn!("Redis refused a leave or a notice: {e}");
            }
        }
        Op::Join {
            conn,
            rid,
            id,
            room,
            ..
        } => {
            let answer = match answer.as_ref().map(parse_view) {
                Ok(Ok(view)) => RoomAnswer::Joined(view),
                Ok(Err(n)) => RoomAnswer::Refused(
                    ErrorCode::RoomFull,
                    format!("room {room:?} has {n} members"),
                ),
                Err(e) => refused(e),
            };
            app.hub.join_answer(conn, rid, &id, &room, answer, now);
        }
        Op::Set {
            conn,
            rid,
            id,
            room,
            max_keys,
            max_bytes,
            ..
        } => {
            let answer = match answer {
                Ok(Value::BulkString(s)) if s == b"too-large" => {
                    app.metrics.budget_refused(Limit::MaxRoomStateBytes);
                    RoomAnswer::Refused(
                        ErrorCode::StateFull,
                        format!(
                            "room {room:?} would hold more than --max-room-state-bytes ({max_bytes} bytes) of state with this value"
                        ),
                    )
                }
                Ok(Value::SimpleString(s)) if s == "ok" => RoomAnswer::Done,
                Ok(Value::BulkString(s)) if s == b"ok" => RoomAnswer::Done,
                Ok(Value::BulkString(s)) if s == b"full" => RoomAnswer::Refused(
                    ErrorCode::InvalidStateKey,
                    format!("room {room:?} holds {max_keys} keys"),
                ),
                Ok(_) => RoomAnswer::Refused(ErrorCode::NotInRoom, format!("not in room {room:?}")),
                Err(e) => refused(&e),
            };
            app.hub.room_answer(conn, rid, &id, &room, answer, now);
        }
        Op::Delete {
            conn,
            rid,
            id,
            room,
            ..
        } => {
            let answer = match answer {
                Ok(Value::BulkString(s)) if s == b"ok" => RoomAnswer::Done,
                Ok(Value::SimpleString(s)) if s == "ok" => RoomAnswer::Done,
                Ok(_) => RoomAnswer::Refused(ErrorCode::NotInRoom, format!("not in room {room:?}")),
                Err(e) => refused(&e),
            };
            app.hub.room_answer(conn, rid, &id, &room, answer, now);
        }
        Op::Snapshot { conn, room } => {
            if let Ok(Ok(view)) = answer.as_ref().map(parse_view) {
                app.hub.room_resync(conn, &room, view, now);
            }
        }
    }
}

/// A room's view from `{'ok', now, members, state…}`, or the member count
/// of a full room from `{'full', n}`.
fn parse_view(value: &Value) -> Result<RoomView, u64> {
    let Value::Array(parts) = value else {
        return Err(0);
    };
    let text = |v: &Value| -> String {
        match v {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        }
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => *n as u64,
        _ => 0,
    };
    if parts.first().map(text).as_deref() != Some("ok") {
        return Err(int(parts.get(1)));
    }
    let list = |v: Option<&Value>| match v {
        Some(Value::Array(items)) => items.iter().map(text).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let flat = list(parts.get(3));
    let state = flat
        .chunks(2)
        .filter_map(|kv| {
            let [key, stored] = kv else { return None };
            let (expires, rest) = stored.split_once('|')?;
            let (from, value) = rest.split_once('|')?;
            Some((
                key.clone(),
                from.to_string(),
                value.to_string(),
                expires.parse().ok()?,
            ))
        })
        .collect();
    Ok(RoomView {
        now_ms: int(parts.get(1)),
        members: list(parts.get(2)),
        state,
    })
}

fn claim_outcome(answer: redis::RedisResult<Value>, id: &str, effects: &mut Effects) -> Outcome {
    let value = match answer {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("Redis refused a claim: {e}");
            return Outcome::Unavailable;
        }
    };
    let parts = items(&value);
    let word = parts.first().and_then(text);
    match word.as_deref() {
        Some("fresh") => {
            // What an earlier, expired claim of this id still held.
            let list = |i: usize| parts.get(i).map(strings).unwrap_or_default();
            effects.forgotten(id, &list(1), &list(2), &list(3));
            Outcome::Fresh
        }
        Some("taken") => Outcome::Taken,
        Some("bad-token") => Outcome::BadToken,
        Some("taken-over") => match parts.get(1).and_then(text) {
            Some(from) => Outcome::TakenOver {
                from,
                rooms: parts[2..].iter().filter_map(text).collect(),
            },
            None => Outcome::Unavailable,
        },
        _ => Outcome::Unavailable,
    }
}

/// What an answer from Redis asks of this broker once the whole batch is
/// answered: notices to publish on room channels, events for ids.
#[derive(Default)]
struct Effects {
    publish: Vec<(String, String)>,
    notify: Vec<(String, ServerMessage)>,
}

impl Effects {
    /// `peer-left` for `id` on `room`'s channel.
    fn peer_left(&mut self, room: &str, id: &str) {
        let msg = ServerMessage::PeerLeft {
            room: room.to_string(),
            id: id.to_string(),
        };
        self.publish.push((
            room_channel(room),
            RoomNotice::event(&msg, Some(id)).payload(),
        ));
    }

    /// `unavailable` for `to`: `id` is gone from `key` (`code` 4001: the
    /// pipe deadline).
    fn unavailable(&mut self, to: &str, key: &str, id: &str, code: Option<u16>) {
        let msg = ServerMessage::Unavailable {
            key: key.to_string(),
            id: id.to_string(),
            code,
        };
        self.notify.push((to.to_string(), msg));
    }

    /// The notices for what an id gave back (`forget` and `forget_keys`):
    /// rooms it left, and `{key, other, id}` triples of keys closed (the
    /// joiner hears) and left (the opener hears).
    fn forgotten(&mut self, id: &str, rooms: &[String], closed: &[String], left: &[String]) {
        for room in rooms {
            self.peer_left(room, id);
        }
        for t in closed.chunks(3).chain(left.chunks(3)) {
            if let [key, other, gone] = t {
                self.unavailable(other, key, gone, None);
            }
        }
    }

    async fn apply(self, app: &App, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let now = Instant::now();
        for (to, msg) in &self.notify {
            app.hub.notify(to, msg, now);
        }
        if self.publish.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (channel, payload) in self.publish {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        pipe.query_async::<()>(conn).await
    }
}

/// The strings of an array reply (nested arrays and nils are skipped).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The items of an array reply.
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// Answers an op that cannot reach Redis; releases and leaves are kept in
/// `redo` for when it is back.
fn fail(app: &App, end: &LinkEnd, op: Op, redo: &mut Redo) {
    end.done(&op);
    let now = Instant::now();
    let unavailable = || {
        RoomAnswer::Refused(
            ErrorCode::Unavailable,
            format!("Redis is unreachable: {}", ErrorCode::Unavailable.hint()),
        )
    };
    match op {
        Op::Forward(envelope) => app.hub.undeliverable(envelope, ErrorCode::Unavailable, now),
        Op::Reply { conn, rid, failed } => {
            let answer = match failed {
                None => Ok(ServerMessage::Ok { rid }),
                Some(code) => Err((code, rid, format!("Redis is unreachable: {}", code.hint()))),
            };
            app.hub.answer(conn, answer, now);
        }
        Op::Claim(_, reply) => {
            let _ = reply.send(Outcome::Unavailable);
        }
        Op::Find { conn, rid, id } => {
            app.hub
                .found(conn, rid, id, Err(ErrorCode::Unavailable), now)
        }
        Op::Request { conn, msg, .. } => {
            let code = ErrorCode::Unavailable;
            let detail = format!("Redis is unreachable: {}", code.hint());
            app.hub.answer(conn, Err((code, msg.rid(), detail)), now);
        }
        Op::Join {
            conn,
            rid,
            id,
            room,
            ..
        } => app
            .hub
            .join_answer(conn, rid, &id, &room, unavailable(), now),
        Op::Set {
            conn,
            rid,
            id,
            room,
            ..
        }
        | Op::Delete {
            conn,
            rid,
            id,
            room,
            ..
        } => app
            .hub
            .room_answer(conn, rid, &id, &room, unavailable(), now),
        // Done once Redis is back (`connect`).
        op @ (Op::Release { .. } | Op::Leave { .. }) => redo.keep(op),
        // The other broker finds out when it renews its leases; nothing
        // will be handed over meanwhile.
        Op::TookOver { id, .. } => app.hub.handed_over(&id, now),
        // The other broker stops waiting at its deadline.
        Op::HandedOver { .. } => {}
        // Subscriptions are made again from this broker's memberships.
        Op::Snapshot { .. } | Op::Unsubscribe { .. } => {}
        Op::Publish { .. } => {}
    }
}

/// Renews the lease of every id held here (making claims Redis lost
/// again); ids another broker holds now are let go.
async fn renew(
    app: &App,
    config: &ClusterConfig,
    scripts: &Scripts,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    let claims = app.hub.claims();
    for chunk in claims.chunks(RENEW_CHUNK) {
        let mut call = scripts.renew.prepare_invoke();
        call.arg(&config.broker)
            .arg(config.lease.as_millis() as u64);
        for (id, token) in chunk {
            call.key(id_key(id)).arg(id).arg(token);
        }
        let lost: Vec<usize> = call.invoke_async(conn).await?;
        let now = Instant::now();
        for i in lost {
            if let Some((id, _)) = i.checked_sub(1).and_then(|i| chunk.get(i)) {
                tracing::info!(%id, "another broker holds this id now; letting it go");
                app.hub.lost(id, now);
            }
        }
    }
    Ok(())
}

/// Ends what time ended network-wide (expired state keys, the rooms, keys
/// and hostnames of ids whose claims ran out, rendezvous deadlines) and
/// tells those concerned.
async fn reap(
    app: &App,
    config: &ClusterConfig,
    scripts: &Scripts,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    // A broker with many ids died: up to 16 rounds of 256 now, the rest at
    // the next ticks, so that no single script holds Redis for long.
    for _ in 0..16 {
        if reap_once(app, config, scripts, conn).await? < 256 {
            break;
        }
    }
    Ok(())
}

/// One round of the reaper; how many ended leases it looked at.
async fn reap_once(
    app: &App,
    config: &ClusterConfig,
    scripts: &Scripts,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<i64> {
    let v: Value = scripts
        .reap
        .prepare_invoke()
        .arg(config.listen_ms)
        .invoke_async(conn)
        .await?;
    let list = |i: usize| items(&v).get(i).map(strings).unwrap_or_default();
    let mut effects = Effects::default();
    for pair in list(0).chunks(2) {
        if let [room, key] = pair {
            let msg = ServerMessage::StateRemoved {
                room: room.clone(),
                key: key.clone(),
                reason: RemovalReason::Expired,
                from: None,
            };
            effects
                .publish
                .push((room_channel(room), RoomNotice::event(&msg, None).payload()));
        }
    }
    for pair in list(1).chunks(2) {
        if let [id, room] = pair {
            effects.peer_left(room, id);
        }
    }
    effects.forgotten("", &[], &list(2), &list(3));
    for pair in list(4).chunks(2) {
        if let [key, opener] = pair {
            app.metrics.close(CloseCode::ListenTimeout);
            let msg = ServerMessage::KeyClosed {
                key: key.clone(),
                code: CloseCode::ListenTimeout.code(),
                reason: CloseCode::ListenTimeout.reason().to_string(),
            };
            effects.notify.push((opener.clone(), msg));
        }
    }
    let code = Some(CloseCode::PipeTimeout.code());
    for t in list(5).chunks(3) {
        if let [key, joiner, opener] = t {
            app.metrics.close(CloseCode::PipeTimeout);
            effects.unavailable(opener, key, joiner, code);
            effects.unavailable(joiner, key, opener, code);
        }
    }
    effects.apply(app, conn).await?;
    Ok(match items(&v).get(6) {
        Some(Value::Int(n)) => *n,
        _ => 0,
    })
}

/// The script call for a rendezvous-key or hostname request.
fn request_command(
    config: &ClusterConfig,
    scripts: &Scripts,
    id: &str,
    msg: &ClientMessage,
) -> Option<redis::Cmd> {
    let cmd = match msg {
        ClientMessage::OpenKey { key, .. } => {
            evalsha(&scripts.open_key, &[key_key(key), opened_by(id)])
                .arg(id)
                .arg(key)
                .arg(config.listen_ms)
                .arg(config.max_keys)
                .clone()
        }
        ClientMessage::JoinKey { key, .. } => evalsha(
            &scripts.join_key,
            &[key_key(key), joiners_key(key), joined_by(id)],
        )
        .arg(id)
        .arg(key)
        .arg(config.pipe_ms)
        .arg(config.max_keys)
        .clone(),
        ClientMessage::LeaveKey { key, .. } => evalsha(&scripts.leave_key, &[key_key(key)])
            .arg(id)
            .arg(key)
            .arg(config.listen_ms)
            .clone(),
        ClientMessage::CloseKey { key, .. } => evalsha(&scripts.close_key, &[key_key(key)])
            .arg(id)
            .arg(key)
            .clone(),
        ClientMessage::RegisterHostname { hostname, .. } => {
            evalsha(&scripts.register_host, &[host_key(hostname), hosts_of(id)])
                .arg(id)
                .arg(hostname)
                .arg(config.max_hostnames)
                .clone()
        }
        ClientMessage::LookupHostname { hostname, .. } => {
            redis::cmd("GET").arg(host_key(hostname)).clone()
        }
        _ => return None,
    };
    Some(cmd)
}

/// The reply to a rendezvous-key or hostname request from Redis's answer
/// `v`, as one broker would give it; events for others go in `effects`.
fn request_answer(
    config: &ClusterConfig,
    id: &str,
    msg: ClientMessage,
    v: &Value,
    effects: &mut Effects,
) -> Result<ServerMessage, (ErrorCode, Rid, String)> {
    let rid = msg.rid();
    let parts = strings(v);
    let first = text(v).or_else(|| parts.first().cloned());
    let too_many_keys = || {
        let max = config.max_keys;
        (
            ErrorCode::TooManyKeys,
            rid,
            format!("already holding {max} rendezvous keys (--max-keys-per-peer)"),
        )
    };
    match msg {
        ClientMessage::OpenKey { key, .. } => match first.as_deref() {
            Some("ok") => Ok(ServerMessage::KeyOpened { rid, key }),
            Some("taken") => Err((ErrorCode::KeyTaken, rid, format!("key {key:?} is open"))),
            _ => Err(too_many_keys()),
        },
        ClientMessage::JoinKey { key, .. } => match parts.as_slice() {
            [ok, opener, new] if ok == "ok" => {
                if new == "1" {
                    let event = ServerMessage::Joiner {
                        key: key.clone(),
                        id: id.to_string(),
                    };
                    effects.notify.push((opener.clone(), event));
                }
                Ok(ServerMessage::KeyJoined {
                    rid,
                    key,
                    opener: opener.clone(),
                })
            }
            [w] if w == "self" => Err((
                ErrorCode::BadMessage,
                rid,
                format!("you opened key {key:?}; others join it"),
            )),
            [w] if w == "too-many" => Err(too_many_keys()),
            _ => Err((
                ErrorCode::UnknownKey,
                rid,
                format!("key {key:?} is not open"),
            )),
        },
        ClientMessage::LeaveKey { key, .. } => match first {
            Some(opener) => {
                effects.unavailable(&opener, &key, id, None);
                Ok(ServerMessage::Ok { rid })
            }
            None => Err((
                ErrorCode::UnknownKey,
                rid,
                format!("you have not joined key {key:?}"),
            )),
        },
        ClientMessage::CloseKey { key, .. } => match parts.split_first() {
            Some((ok, joiners)) if ok == "ok" => {
                for j in joiners {
                    effects.unavailable(j, &key, id, None);
                }
                Ok(ServerMessage::Ok { rid })
            }
            Some((w, _)) if w == "not-opener" => Err((
                ErrorCode::NotOpener,
                rid,
                format!("key {key:?} was opened by another peer"),
            )),
            _ => Err((
                ErrorCode::UnknownKey,
                rid,
                format!("key {key:?} is not open"),
            )),
        },
        ClientMessage::RegisterHostname { hostname, .. } => match parts.as_slice() {
            [ok] if ok == "ok" => Ok(ServerMessage::Ok { rid }),
            [w, owner] if w == "taken" => Err((
                ErrorCode::HostnameTaken,
                rid,
                format!("hostname {hostname:?} belongs to {owner:?}"),
            )),
            [_, n] => Err((
                ErrorCode::TooManyHostnames,
                rid,
                format!("already holding {n} hostnames"),
            )),
            _ => Err((
                ErrorCode::Internal,
                rid,
                "an unexpected answer from Redis".into(),
            )),
        },
        ClientMessage::LookupHostname { hostname, .. } => match first {
            Some(owner) => Ok(ServerMessage::FoundHost {
                rid,
                id: owner,
                hostname,
            }),
            None => Err((
                ErrorCode::UnknownHost,
                rid,
                format!("no id holds hostname {hostname:?}"),
            )),
        },
        _ => Err((ErrorCode::Internal, rid, "not a network request".into())),
    }
}

/// Checks a `--redis` URL at startup.
pub fn check_url(url: &str) -> Result<(), String> {
    Client::open(url).map(|_| ()).map_err(|e| {
        format!("--redis {url:?} is not a Redis URL ({e}); e.g. redis://127.0.0.1:6379")
    })
}

/// A fresh random name for this broker in the network.
pub fn broker_name() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough among brokers started at different times.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (t as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Envelope;

    #[test]
    fn claim_answers_map_to_outcomes() {
        let words = |w: &[&str]| -> redis::RedisResult<Value> {
            Ok(Value::Array(
                w.iter()
                    .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                    .collect(),
            ))
        };
        let mut effects = Effects::default();
        let mut outcome = |w: &[&str]| claim_outcome(words(w), "ann", &mut effects);
        assert_eq!(outcome(&["fresh"]), Outcome::Fresh);
        assert_eq!(outcome(&["taken"]), Outcome::Taken);
        assert_eq!(outcome(&["bad-token"]), Outcome::BadToken);
        assert_eq!(
            outcome(&["taken-over", "b1", "lobby"]),
            Outcome::TakenOver {
                from: "b1".into(),
                rooms: vec!["lobby".into()]
            }
        );
        assert_eq!(outcome(&["what"]), Outcome::Unavailable);
        // A fresh claim of an id an expired claim left in a room tells
        // the room it left.
        let fresh = Value::Array(vec![
            Value::BulkString(b"fresh".to_vec()),
            words(&["lobby"]).unwrap(),
            words(&["k1", "joiner", "ann"]).unwrap(),
            words(&[]).unwrap(),
        ]);
        assert_eq!(
            claim_outcome(Ok(fresh), "ann", &mut effects),
            Outcome::Fresh
        );
        assert_eq!(effects.publish.len(), 1);
        assert_eq!(effects.publish[0].0, "pw:rc:lobby");
        assert!(
            effects.publish[0].1.contains("peer-left"),
            "{}",
            effects.publish[0].1
        );
        assert_eq!(effects.notify.len(), 1);
        assert_eq!(effects.notify[0].0, "joiner");
    }

    #[test]
    fn notices_round_trip_as_json() {
        let n = Notice::Deliver(Envelope {
            to: "bob".into(),
            origin: Some(("alice".into(), 7)),
            room_event: false,
            handoff: false,
            frame: r#"{"type":"signal"}"#.into(),
        });
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), n);
        let t = Notice::TakenOver("bob".into());
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, r#"{"taken-over":"bob"}"#);
        assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), t);
    }

    #[test]
    fn room_views_parse_members_and_state_with_expiry() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let view = Value::Array(vec![
            bulk("ok"),
            Value::Int(1000),
            Value::Array(vec![bulk("ann"), bulk("bob")]),
            Value::Array(vec![
                bulk("topic"),
                bulk("0|ann|\"hi|there\""),
                bulk("cursor"),
                bulk("1500|bob|{\"x\":1}"),
                bulk("old"),
                bulk("900|bob|1"),
            ]),
        ]);
        let view = parse_view(&view).unwrap();
        assert_eq!(view.members, ["ann", "bob"]);
        let joined = view.snapshot(Some(3), "lobby");
        let text = joined.encode();
        assert!(text.contains(r#""value":"hi|there""#), "{text}");
        assert!(text.contains(r#""ttlMs":500"#), "{text}");
        assert!(!text.contains("old"), "an expired key is not shown: {text}");
        let full = Value::Array(vec![bulk("full"), Value::Int(8)]);
        assert_eq!(parse_view(&full), Err(8));
    }

    #[test]
    fn bad_urls_are_named() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        let err = check_url("http://x").unwrap_err();
        assert!(err.contains("--redis"), "{err}");
    }
}
