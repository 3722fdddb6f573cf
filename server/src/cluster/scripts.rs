//! What the network keeps in Redis, and the Lua scripts that change it,
//! each in one atomic step.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `pw:id:<id>` | hash, with a lease | `b`: the broker holding the id; `t`: its resume token |
//! | `pw:leases` | sorted set | each id's lease end (ms, Redis's clock), for the reaper |
//! | `pw:in:<id>` | set | the rooms the id is in |
//! | `pw:r:<room>:m` | sorted set | the room's members, scored in join order |
//! | `pw:r:<room>:s` | hash | the room's state: key → `<expires ms or 0>\|<from>\|<JSON value>` |
//! | `pw:ttl` | sorted set | `<room>\n<key>` → when that state key expires |
//! | `pw:seq` | counter | join order |
//!
//! Channels: `pw:b:<broker>` (frames and notices for one broker),
//! `pw:rc:<room>` (a room's changes, for every broker with members in it).

use redis::Script;

pub fn id_key(id: &str) -> String {
    format!("pw:id:{id}")
}

pub fn rooms_of(id: &str) -> String {
    format!("pw:in:{id}")
}

pub fn members_key(room: &str) -> String {
    format!("pw:r:{room}:m")
}

pub fn state_key(room: &str) -> String {
    format!("pw:r:{room}:s")
}

/// The channel a broker listens on.
pub fn broker_channel(broker: &str) -> String {
    format!("pw:b:{broker}")
}

pub const ROOM_CHANNEL_PREFIX: &str = "pw:rc:";

/// A room's channel.
pub fn room_channel(room: &str) -> String {
    format!("{ROOM_CHANNEL_PREFIX}{room}")
}

/// Redis's clock in ms, as `now` (every script that needs time starts so).
const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Takes id `id` out of every room in `pw:in:<id>`; returns the rooms where
/// members remain (they hear `peer-left`). Needs `id`.
const FORGET: &str = r"
local function forget(id)
  local left = {}
  for _, room in ipairs(redis.call('SMEMBERS', 'pw:in:' .. id)) do
    local m = 'pw:r:' .. room .. ':m'
    if redis.call('ZREM', m, id) == 1 then
      if redis.call('ZCARD', m) == 0 then
        redis.call('DEL', m, 'pw:r:' .. room .. ':s')
      else
        table.insert(left, room)
      end
    end
  end
  redis.call('DEL', 'pw:in:' .. id)
  return left
end
";

/// Claims an id. KEYS: `pw:id:<id>`. ARGV: this broker, the fresh token,
/// the resume token presented ('' for none), the lease in ms, the id.
/// `{'fresh', rooms left…}` (memberships left over from an expired claim
/// are dropped), `{'taken'}`, `{'bad-token'}`, or `{'taken-over', broker,
/// rooms…}`.
const CLAIM: &str = r"
local b = redis.call('HGET', KEYS[1], 'b')
if not b then
  local left = forget(ARGV[5])
  redis.call('HSET', KEYS[1], 'b', ARGV[1], 't', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('ZADD', 'pw:leases', now + tonumber(ARGV[4]), ARGV[5])
  local out = {'fresh'}
  for _, r in ipairs(left) do table.insert(out, r) end
  return out
end
if ARGV[3] == '' then return {'taken'} end
if redis.call('HGET', KEYS[1], 't') ~= ARGV[3] then return {'bad-token'} end
redis.call('HSET', KEYS[1], 'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', 'pw:leases', now + tonumber(ARGV[4]), ARGV[5])
local out = {'taken-over', b}
for _, r in ipairs(redis.call('SMEMBERS', 'pw:in:' .. ARGV[5])) do table.insert(out, r) end
return out
";

/// Publishes to the broker that holds an id. KEYS: `pw:id:<id>`. ARGV:
/// the broker channel prefix, the message. -1: nobody holds it; else the
/// number of brokers that heard it (0: its broker is not listening).
const ROUTE: &str = r"
local b = redis.call('HGET', KEYS[1], 'b')
if not b then return -1 end
return redis.call('PUBLISH', ARGV[1] .. b, ARGV[2])
";

/// Gives an id up, if this broker still holds it with this token. KEYS:
/// `pw:id:<id>`. ARGV: this broker, the token, the id.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'b') == ARGV[1] and redis.call('HGET', KEYS[1], 't') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', 'pw:leases', ARGV[3])
end
return 0
";

/// Renews (or makes again) this broker's claims. KEYS: id keys. ARGV: this
/// broker, the lease in ms, then an id and its token per key. Returns the
/// (1-based) indexes of the ids another broker holds now.
const RENEW: &str = r"
local lost = {}
local until_ms = now + tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local id, token = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local b = redis.call('HGET', key, 'b')
  if not b then
    redis.call('HSET', key, 'b', ARGV[1], 't', token)
  end
  if not b or b == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    redis.call('ZADD', 'pw:leases', until_ms, id)
  else
    table.insert(lost, i)
  end
end
return lost
";

/// A room as Redis holds it: `{'ok', now, members, state hash as a flat
/// list}`.
const VIEW: &str = r"
local function view(m, s)
  return {'ok', now, redis.call('ZRANGE', m, 0, -1), redis.call('HGETALL', s)}
end
";

/// Joins a room. KEYS: members, state, `pw:in:<id>`. ARGV: id, room, the
/// member limit, the room channel, the `peer-joined` notice ('' for none).
/// `{'full', n}` or the room's view.
const JOIN: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= tonumber(ARGV[3]) then return {'full', n} end
  redis.call('ZADD', KEYS[1], redis.call('INCR', 'pw:seq'), ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[2])
  if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
end
return view(KEYS[1], KEYS[2])
";

/// A room's view. KEYS: members, state.
const SNAPSHOT: &str = r"
return view(KEYS[1], KEYS[2])
";

/// Leaves a room. KEYS: members, state, `pw:in:<id>`. ARGV: id, room, the
/// room channel, the `peer-left` notice. 1 if it was a member.
const LEAVE: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
";

/// Sets a state key. KEYS: members, state. ARGV: id, key, `<from>|<value>`,
/// the key limit, the TTL in ms (0: none), the room channel, the
/// `state-set` notice, `<room>\n<key>`. 'ok', 'not-in-room' or 'full'.
const SET: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'not-in-room' end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then
  return 'full'
end
local e = 0
if tonumber(ARGV[5]) > 0 then
  e = now + tonumber(ARGV[5])
  redis.call('ZADD', 'pw:ttl', e, ARGV[8])
end
redis.call('HSET', KEYS[2], ARGV[2], e .. '|' .. ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 'ok'
";

/// Deletes a state key. KEYS: members, state. ARGV: id, key, the room
/// channel, the `state-removed` notice. 'ok' or 'not-in-room'.
const DELETE: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'not-in-room' end
if redis.call('HDEL', KEYS[2], ARGV[2]) == 1 then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 'ok'
";

/// Ends what time ended, network-wide (any broker may run it; running it
/// twice does nothing twice): expired state keys, and the rooms of ids
/// whose claims ran out (their broker died and nobody reclaimed them).
/// Returns `{room, key, …}` and `{id, room, …}` for the notices.
const REAP: &str = r"
local expired = {}
for _, item in ipairs(redis.call('ZRANGEBYSCORE', 'pw:ttl', '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('ZREM', 'pw:ttl', item)
  local nl = string.find(item, '\n', 1, true)
  if nl then
    local room, key = string.sub(item, 1, nl - 1), string.sub(item, nl + 1)
    local s = 'pw:r:' .. room .. ':s'
    local v = redis.call('HGET', s, key)
    if v then
      local e = tonumber(string.sub(v, 1, string.find(v, '|', 1, true) - 1))
      if e > 0 and e <= now then
        redis.call('HDEL', s, key)
        table.insert(expired, room)
        table.insert(expired, key)
      end
    end
  end
end
local gone = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', 'pw:leases', '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('ZREM', 'pw:leases', id)
  if redis.call('EXISTS', 'pw:id:' .. id) == 0 then
    for _, room in ipairs(forget(id)) do
      table.insert(gone, id)
      table.insert(gone, room)
    end
  end
end
return {expired, gone}
";

/// Every script the task runs, loaded on each connection to Redis.
pub struct Scripts {
    pub claim: Script,
    pub route: Script,
    pub release: Script,
    pub renew: Script,
    pub join: Script,
    pub snapshot: Script,
    pub leave: Script,
    pub set: Script,
    pub delete: Script,
    pub reap: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let with = |parts: &[&str]| Script::new(&parts.concat());
        Self {
            claim: with(&[NOW, FORGET, CLAIM]),
            route: with(&[ROUTE]),
            release: with(&[RELEASE]),
            renew: with(&[NOW, RENEW]),
            join: with(&[NOW, VIEW, JOIN]),
            snapshot: with(&[NOW, VIEW, SNAPSHOT]),
            leave: with(&[LEAVE]),
            set: with(&[NOW, SET]),
            delete: with(&[DELETE]),
            reap: with(&[NOW, FORGET, REAP]),
        }
    }

    pub fn all(&self) -> [&Script; 10] {
        [
            &self.claim,
            &self.route,
            &self.release,
            &self.renew,
            &self.join,
            &self.snapshot,
            &self.leave,
            &self.set,
            &self.delete,
            &self.reap,
        ]
    }
}

/// An `EVALSHA` of `script` (loaded on every connect) with `keys`, to
/// which the caller adds the arguments.
pub fn evalsha(script: &Script, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}
