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

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use peerwire::protocol::ErrorCode;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Script, Value};
use tokio::time::{MissedTickBehavior, interval, sleep};

use crate::App;
use crate::hub::{LinkEnd, Notice, Op, Outcome};

/// How many ops go to Redis in one pipeline at most.
const BATCH: usize = 256;

/// How many leases one renewal script call handles.
const RENEW_CHUNK: usize = 512;

/// How long one Redis command may take before the connection counts as
/// lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Between attempts to reach Redis.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The Redis key of an id's claim.
fn id_key(id: &str) -> String {
    format!("pw:id:{id}")
}

/// The channel a broker listens on.
fn channel(broker: &str) -> String {
    format!("pw:b:{broker}")
}

/// Claims an id. KEYS: the id's key. ARGV: this broker, the fresh token,
/// the resume token presented ('' for none), the lease in ms.
const CLAIM: &str = r"
local b = redis.call('HGET', KEYS[1], 'b')
if not b then
  redis.call('HSET', KEYS[1], 'b', ARGV[1], 't', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'fresh'}
end
if ARGV[3] == '' then return {'taken'} end
if redis.call('HGET', KEYS[1], 't') ~= ARGV[3] then return {'bad-token'} end
redis.call('HSET', KEYS[1], 'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'taken-over', b}
";

/// Publishes to the broker that holds an id. KEYS: the id's key. ARGV: the
/// channel prefix, the message. -1: nobody holds it; else the number of
/// brokers that heard it (0: its broker is not listening).
const ROUTE: &str = r"
local b = redis.call('HGET', KEYS[1], 'b')
if not b then return -1 end
return redis.call('PUBLISH', ARGV[1] .. b, ARGV[2])
";

/// Gives an id up, if this broker still holds it with this token. KEYS:
/// the id's key. ARGV: this broker, the token.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'b') == ARGV[1] and redis.call('HGET', KEYS[1], 't') == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// Renews (or makes again) this broker's claims. KEYS: id keys. ARGV: this
/// broker, the lease in ms, then one token per key. Returns the (1-based)
/// indexes of the ids another broker holds now.
const RENEW: &str = r"
local lost = {}
for i, key in ipairs(KEYS) do
  local b = redis.call('HGET', key, 'b')
  if not b then
    redis.call('HSET', key, 'b', ARGV[1], 't', ARGV[i + 2])
    redis.call('PEXPIRE', key, ARGV[2])
  elseif b == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
";

/// The cluster's settings (from `--redis*`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub url: String,
    /// How long an id's claim outlives its broker.
    pub lease: Duration,
    /// This broker's name in the network (random per process).
    pub broker: String,
}

struct Scripts {
    claim: Script,
    route: Script,
    release: Script,
    renew: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            claim: Script::new(CLAIM),
            route: Script::new(ROUTE),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
        }
    }
}

/// A live link to Redis: the command connection and the subscription.
struct Session {
    conn: MultiplexedConnection,
    notices: PubSubStream,
}

/// Runs the cluster task until the process ends.
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
    let mut was_up = false;
    loop {
        match connect(&client, &config, &scripts, &app).await {
            Ok(session) => {
                retry = RETRY_MIN;
                end.set_up(true);
                app.metrics.set_cluster_up(true);
                tracing::info!(broker = %config.broker, "joined the broker network on Redis");
                was_up = true;
                let why = serve(&app, &config, &scripts, &mut end, session).await;
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
                if was_up || retry == RETRY_MIN {
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
                    Some(op) => fail(&app, &end, op),
                    None => return,
                },
            }
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Connects, subscribes, loads the scripts and claims every id held here
/// again.
async fn connect(
    client: &Client,
    config: &ClusterConfig,
    scripts: &Scripts,
    app: &App,
) -> redis::RedisResult<Session> {
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&settings)
        .await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel(&config.broker)).await?;
    for s in [
        &scripts.claim,
        &scripts.route,
        &scripts.release,
        &scripts.renew,
    ] {
        s.prepare_invoke().load_async(&mut conn).await?;
    }
    renew(app, config, scripts, &mut conn).await?;
    Ok(Session {
        conn,
        notices: pubsub.into_on_message(),
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
) -> Ended {
    let mut renew_every = interval(config.lease / 3);
    renew_every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    renew_every.tick().await;
    loop {
        tokio::select! {
            op = end.ops.recv() => {
                let Some(op) = op else { return Ended::Closed };
                let mut batch = vec![op];
                while batch.len() < BATCH {
                    match end.ops.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                if let Err(e) = run_batch(app, config, scripts, end, &mut session.conn, batch).await {
                    return Ended::Lost(e);
                }
            }
            notice = session.notices.next() => match notice {
                Some(msg) => on_notice(app, msg.get_payload_bytes()),
                None => return Ended::Lost(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the subscription ended",
                ))),
            },
            _ = renew_every.tick() => {
                if let Err(e) = renew(app, config, scripts, &mut session.conn).await {
                    return Ended::Lost(e);
                }
            }
        }
    }
}

/// A message on this broker's channel.
fn on_notice(app: &App, payload: &[u8]) {
    match serde_json::from_slice::<Notice>(payload) {
        Ok(Notice::Deliver(envelope)) => {
            app.metrics.cluster_received.inc();
            app.hub.deliver_remote(envelope, Instant::now());
        }
        Ok(Notice::TakenOver(id)) => app.hub.lost(&id, Instant::now()),
        Err(e) => tracing::warn!("ignored a malformed message from another broker: {e}"),
    }
}

/// Sends `batch` to Redis as one pipeline and hands each answer back. On a
/// connection error every op of the batch is answered as failed.
async fn run_batch(
    app: &App,
    config: &ClusterConfig,
    scripts: &Scripts,
    end: &LinkEnd,
    conn: &mut MultiplexedConnection,
    batch: Vec<Op>,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let prefix = channel("");
    for op in &batch {
        match op {
            Op::Forward(envelope) => {
                let notice = Notice::Deliver(envelope.clone());
                let payload = serde_json::to_vec(&notice).unwrap_or_default();
                pipe.add_command(
                    evalsha(&scripts.route, &id_key(&envelope.to))
                        .arg(&prefix)
                        .arg(payload)
                        .clone(),
                );
            }
            Op::Claim(claim, _) => {
                pipe.add_command(
                    evalsha(&scripts.claim, &id_key(&claim.id))
                        .arg(&config.broker)
                        .arg(&claim.token)
                        .arg(claim.resume.as_deref().unwrap_or(""))
                        .arg(config.lease.as_millis() as u64)
                        .clone(),
                );
            }
            Op::Find { id, .. } => {
                pipe.cmd("EXISTS").arg(id_key(id));
            }
            Op::Release { id, token } => {
                pipe.add_command(
                    evalsha(&scripts.release, &id_key(id))
                        .arg(&config.broker)
                        .arg(token)
                        .clone(),
                );
            }
            Op::TookOver { id, from } => {
                let payload =
                    serde_json::to_vec(&Notice::TakenOver(id.clone())).unwrap_or_default();
                pipe.cmd("PUBLISH").arg(channel(from)).arg(payload);
            }
        }
    }
    let answers: Vec<redis::RedisResult<Value>> = match pipe.query_async(conn).await {
        Ok(answers) => answers,
        Err(e) => {
            for op in batch {
                fail(app, end, op);
            }
            return Err(e);
        }
    };
    let now = Instant::now();
    for (op, answer) in batch.into_iter().zip(answers) {
        end.done(&op);
        match op {
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
            Op::Claim(_, reply) => {
                let _ = reply.send(claim_outcome(answer));
            }
            Op::Find { conn, rid, id } => {
                let online = match answer {
                    Ok(Value::Int(n)) => Ok(n > 0),
                    _ => Err(ErrorCode::Unavailable),
                };
                app.hub.found(conn, rid, id, online, now);
            }
            Op::Release { .. } | Op::TookOver { .. } => {
                if let Err(e) = answer {
                    tracing::warn!("Redis refused a release or takeover notice: {e}");
                }
            }
        }
    }
    Ok(())
}

/// A one-key `EVALSHA` of `script` (loaded on every connect), to which the
/// caller adds the arguments.
fn evalsha(script: &Script, key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(1).arg(key);
    cmd
}

fn claim_outcome(answer: redis::RedisResult<Value>) -> Outcome {
    let words: Vec<String> = match answer.and_then(|v| Ok(redis::from_redis_value(v)?)) {
        Ok(words) => words,
        Err(e) => {
            tracing::warn!("Redis refused a claim: {e}");
            return Outcome::Unavailable;
        }
    };
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fresh"] => Outcome::Fresh,
        ["taken"] => Outcome::Taken,
        ["bad-token"] => Outcome::BadToken,
        ["taken-over", from] => Outcome::TakenOver {
            from: from.to_string(),
        },
        _ => Outcome::Unavailable,
    }
}

/// Answers an op that cannot reach Redis.
fn fail(app: &App, end: &LinkEnd, op: Op) {
    end.done(&op);
    let now = Instant::now();
    match op {
        Op::Forward(envelope) => app.hub.undeliverable(envelope, ErrorCode::Unavailable, now),
        Op::Claim(_, reply) => {
            let _ = reply.send(Outcome::Unavailable);
        }
        Op::Find { conn, rid, id } => {
            app.hub
                .found(conn, rid, id, Err(ErrorCode::Unavailable), now)
        }
        // Its lease runs out.
        Op::Release { .. } => {}
        // The other broker finds out when it renews its leases.
        Op::TookOver { .. } => {}
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
            call.key(id_key(id)).arg(token);
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
        assert_eq!(claim_outcome(words(&["fresh"])), Outcome::Fresh);
        assert_eq!(claim_outcome(words(&["taken"])), Outcome::Taken);
        assert_eq!(claim_outcome(words(&["bad-token"])), Outcome::BadToken);
        assert_eq!(
            claim_outcome(words(&["taken-over", "b1"])),
            Outcome::TakenOver { from: "b1".into() }
        );
        assert_eq!(claim_outcome(words(&["what"])), Outcome::Unavailable);
    }

    #[test]
    fn notices_round_trip_as_json() {
        let n = Notice::Deliver(Envelope {
            to: "bob".into(),
            origin: Some(("alice".into(), 7)),
            room_event: false,
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
    fn bad_urls_are_named() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        let err = check_url("http://x").unwrap_err();
        assert!(err.contains("--redis"), "{err}");
    }
}
