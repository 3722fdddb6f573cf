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
//! | `pw:k:<key>` | hash | a rendezvous key: `o`, its opener |
//! | `pw:k:<key>:j` | hash | its joiners → their pipe deadline (ms, 0: none) |
//! | `pw:opened:<id>`, `pw:joined:<id>` | sets | the keys an id opened, joined |
//! | `pw:listen` | sorted set | keys nobody joined → when they close (4000) |
//! | `pw:pipe` | sorted set | `<key>\n<joiner>` → when the pair ends (4001) |
//! | `pw:host:<name>` | string | the id holding a hostname |
//! | `pw:hosts:<id>` | set | the hostnames an id holds |
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

pub fn key_key(key: &str) -> String {
    format!("pw:k:{key}")
}

pub fn joiners_key(key: &str) -> String {
    format!("pw:k:{key}:j")
}

pub fn opened_by(id: &str) -> String {
    format!("pw:opened:{id}")
}

pub fn joined_by(id: &str) -> String {
    format!("pw:joined:{id}")
}

pub fn host_key(name: &str) -> String {
    format!("pw:host:{name}")
}

pub fn hosts_of(id: &str) -> String {
    format!("pw:hosts:{id}")
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

/// Gives back the rendezvous keys and hostnames of id `id`: closes the keys
/// it opened (returning `{key, joiner, id}` triples, each joiner to be
/// told) and leaves those it joined (`{key, opener, id}` triples, each
/// opener to be told).
const FORGET_KEYS: &str = r"
local function close_key(key)
  local joiners = redis.call('HKEYS', 'pw:k:' .. key .. ':j')
  local opener = redis.call('HGET', 'pw:k:' .. key, 'o')
  redis.call('DEL', 'pw:k:' .. key, 'pw:k:' .. key .. ':j')
  redis.call('ZREM', 'pw:listen', key)
  if opener then redis.call('SREM', 'pw:opened:' .. opener, key) end
  for _, j in ipairs(joiners) do
    redis.call('ZREM', 'pw:pipe', key .. '\n' .. j)
    redis.call('SREM', 'pw:joined:' .. j, key)
  end
  return joiners
end
local function leave_key(key, id, listen_ms)
  redis.call('SREM', 'pw:joined:' .. id, key)
  redis.call('ZREM', 'pw:pipe', key .. '\n' .. id)
  if redis.call('HDEL', 'pw:k:' .. key .. ':j', id) == 0 then return nil end
  if listen_ms > 0 and redis.call('HLEN', 'pw:k:' .. key .. ':j') == 0 then
    redis.call('ZADD', 'pw:listen', now + listen_ms, key)
  end
  return redis.call('HGET', 'pw:k:' .. key, 'o')
end
local function forget_keys(id, listen_ms)
  local closed, left = {}, {}
  for _, key in ipairs(redis.call('SMEMBERS', 'pw:opened:' .. id)) do
    if redis.call('HGET', 'pw:k:' .. key, 'o') == id then
      for _, j in ipairs(close_key(key)) do
        table.insert(closed, key)
        table.insert(closed, j)
        table.insert(closed, id)
      end
    end
  end
  redis.call('DEL', 'pw:opened:' .. id)
  for _, key in ipairs(redis.call('SMEMBERS', 'pw:joined:' .. id)) do
    local opener = leave_key(key, id, listen_ms)
    if opener then
      table.insert(left, key)
      table.insert(left, opener)
      table.insert(left, id)
    end
  end
  redis.call('DEL', 'pw:joined:' .. id)
  for _, name in ipairs(redis.call('SMEMBERS', 'pw:hosts:' .. id)) do
    if redis.call('GET', 'pw:host:' .. name) == id then redis.call('DEL', 'pw:host:' .. name) end
  end
  redis.call('DEL', 'pw:hosts:' .. id)
  return closed, left
end
";

/// Claims an id. KEYS: `pw:id:<id>`. ARGV: this broker, the fresh token,
/// the resume token presented ('' for none), the lease in ms, the id.
/// ARGV 6: the listen timeout in ms (0: none). `{'fresh', {rooms left},
/// {key, joiner, id, …}, {key, opener, id, …}}` (what an expired claim of the id
/// still held is given back, and who is to be told), `{'taken'}`,
/// `{'bad-token'}`, or `{'taken-over', broker, rooms…}`.
const CLAIM: &str = r"
local b = redis.call('HGET', KEYS[1], 'b')
if not b then
  local rooms = forget(ARGV[5])
  local closed, left = forget_keys(ARGV[5], tonumber(ARGV[6]))
  redis.call('HSET', KEYS[1], 'b', ARGV[1], 't', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('ZADD', 'pw:leases', now + tonumber(ARGV[4]), ARGV[5])
  return {'fresh', rooms, closed, left}
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

/// Gives an id up, with its rooms, keys and hostnames, if this broker
/// still holds it with this token. KEYS: `pw:id:<id>`. ARGV: this broker,
/// the token, the id, the listen timeout in ms. `{{rooms left}, {key,
/// joiner, id, …}, {key, opener, id, …}}` for the notices.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'b') == ARGV[1] and redis.call('HGET', KEYS[1], 't') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', 'pw:leases', ARGV[3])
  local rooms = forget(ARGV[3])
  local closed, left = forget_keys(ARGV[3], tonumber(ARGV[4]))
  return {rooms, closed, left}
end
return {{}, {}, {}}
";

/// Renews (or makes again) this broker's claims. KEYS: id keys. ARGV: this
/// broker, the lease in ms, then an id and its token per key. Returns the
/// (1-based) indexes of the ids another broker holds now. The token is
/// this broker's too: an id registered again here while Redis was away
/// has a new one, and the claim Redis kept holds the old one.
const RENEW: &str = r"
local lost = {}
local until_ms = now + tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local id, token = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local b = redis.call('HGET', key, 'b')
  if not b or b == ARGV[1] then
    redis.call('HSET', key, 'b', ARGV[1], 't', token)
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
/// room channel, the `peer-left` notice, this broker. 1 if it was a
/// member. Nothing when another broker holds the id now (a join answered
/// here after the id moved on must not take it out of the room there).
const LEAVE: &str = r"
local holder = redis.call('HGET', 'pw:id:' .. ARGV[1], 'b')
if holder and holder ~= ARGV[5] then return 0 end
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
/// `state-set` notice, `<room>\n<key>`, the room's byte budget. 'ok',
/// 'not-in-room', 'full' or 'too-large' (each key costs its name, what is
/// stored for it and 64 bytes; the value it replaces does not count).
const SET: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'not-in-room' end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then
  return 'full'
end
local size = #ARGV[2] + #ARGV[3] + 64
for _, k in ipairs(redis.call('HKEYS', KEYS[2])) do
  if k ~= ARGV[2] then size = size + #k + redis.call('HSTRLEN', KEYS[2], k) + 64 end
end
if size > tonumber(ARGV[9]) then return 'too-large' end
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
/// ARGV: the listen timeout in ms. Returns, for the notices: `{room, key,
/// …}` expired, `{id, room, …}` gone, the closed and left triples of
/// `forget_keys`, `{key, opener, …}` keys nobody joined in time, `{key,
/// joiner, opener, …}` pairs whose pipe deadline passed; and how many
/// ended leases it looked at (256: there may be more).
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
local gone, closed, left = {}, {}, {}
local listen_ms = tonumber(ARGV[1])
local leases = redis.call('ZRANGEBYSCORE', 'pw:leases', '-inf', now, 'LIMIT', 0, 256)
for _, id in ipairs(leases) do
  redis.call('ZREM', 'pw:leases', id)
  if redis.call('EXISTS', 'pw:id:' .. id) == 0 then
    for _, room in ipairs(forget(id)) do
      table.insert(gone, id)
      table.insert(gone, room)
    end
    local c, l = forget_keys(id, listen_ms)
    for _, x in ipairs(c) do table.insert(closed, x) end
    for _, x in ipairs(l) do table.insert(left, x) end
  end
end
local unheard = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', 'pw:listen', '-inf', now, 'LIMIT', 0, 256)) do
  local opener = redis.call('HGET', 'pw:k:' .. key, 'o')
  if opener and redis.call('HLEN', 'pw:k:' .. key .. ':j') == 0 then
    close_key(key)
    table.insert(unheard, key)
    table.insert(unheard, opener)
  else
    redis.call('ZREM', 'pw:listen', key)
  end
end
local ended = {}
for _, item in ipairs(redis.call('ZRANGEBYSCORE', 'pw:pipe', '-inf', now, 'LIMIT', 0, 256)) do
  redis.call('ZREM', 'pw:pipe', item)
  local nl = string.find(item, '\n', 1, true)
  if nl then
    local key, joiner = string.sub(item, 1, nl - 1), string.sub(item, nl + 1)
    local opener = leave_key(key, joiner, listen_ms)
    if opener then
      table.insert(ended, key)
      table.insert(ended, joiner)
      table.insert(ended, opener)
    end
  end
end
return {expired, gone, closed, left, unheard, ended, #leases}
";

/// Opens a rendezvous key. KEYS: `pw:k:<key>`, `pw:opened:<id>`. ARGV: id,
/// key, the listen timeout in ms (0: none), the per-id limit. 'ok',
/// 'taken' or 'too-many'.
const OPEN_KEY: &str = r"
local o = redis.call('HGET', KEYS[1], 'o')
if o == ARGV[1] then return 'ok' end
if o then return 'taken' end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 'too-many' end
redis.call('HSET', KEYS[1], 'o', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('ZADD', 'pw:listen', now + tonumber(ARGV[3]), ARGV[2]) end
return 'ok'
";

/// Joins a key. KEYS: `pw:k:<key>`, its joiners, `pw:joined:<id>`. ARGV:
/// id, key, the pipe timeout in ms (0: none), the per-id limit.
/// `{'ok', opener, 1 if newly joined}`, `{'unknown'}`, `{'self'}` or
/// `{'too-many'}`.
const JOIN_KEY: &str = r"
local o = redis.call('HGET', KEYS[1], 'o')
if not o then return {'unknown'} end
if o == ARGV[1] then return {'self'} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'ok', o, 0} end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {'too-many'} end
local pipe = tonumber(ARGV[3])
local deadline = 0
if pipe > 0 then
  deadline = now + pipe
  redis.call('ZADD', 'pw:pipe', deadline, ARGV[2] .. '\n' .. ARGV[1])
end
redis.call('HSET', KEYS[2], ARGV[1], deadline)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('ZREM', 'pw:listen', ARGV[2])
return {'ok', o, 1}
";

/// Leaves a joined key. ARGV: id, key, the listen timeout in ms. The
/// opener to tell, or false when `id` had not joined.
const LEAVE_KEY: &str = r"
return leave_key(ARGV[2], ARGV[1], tonumber(ARGV[3]))
";

/// Closes a key its opener opened. ARGV: id, key. `{'ok', joiners…}`,
/// `{'unknown'}` or `{'not-opener'}`.
const CLOSE_KEY: &str = r"
local o = redis.call('HGET', 'pw:k:' .. ARGV[2], 'o')
if not o then return {'unknown'} end
if o ~= ARGV[1] then return {'not-opener'} end
local out = {'ok'}
for _, j in ipairs(close_key(ARGV[2])) do table.insert(out, j) end
return out
";

/// Takes a hostname. KEYS: `pw:host:<name>`, `pw:hosts:<id>`. ARGV: id,
/// name, the per-id limit. `{'ok'}`, `{'taken', owner}` or `{'too-many', n}`.
const REGISTER_HOST: &str = r"
local o = redis.call('GET', KEYS[1])
if o == ARGV[1] then return {'ok'} end
if o then return {'taken', o} end
local n = redis.call('SCARD', KEYS[2])
if n >= tonumber(ARGV[3]) then return {'too-many', n} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return {'ok'}
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
    pub open_key: Script,
    pub join_key: Script,
    pub leave_key: Script,
    pub close_key: Script,
    pub register_host: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let with = |parts: &[&str]| Script::new(&parts.concat());
        Self {
            claim: with(&[NOW, FORGET, FORGET_KEYS, CLAIM]),
            route: with(&[ROUTE]),
            release: with(&[NOW, FORGET, FORGET_KEYS, RELEASE]),
            renew: with(&[NOW, RENEW]),
            join: with(&[NOW, VIEW, JOIN]),
            snapshot: with(&[NOW, VIEW, SNAPSHOT]),
            leave: with(&[LEAVE]),
            set: with(&[NOW, SET]),
            delete: with(&[DELETE]),
            reap: with(&[NOW, FORGET, FORGET_KEYS, REAP]),
            open_key: with(&[NOW, OPEN_KEY]),
            join_key: with(&[NOW, JOIN_KEY]),
            leave_key: with(&[NOW, FORGET_KEYS, LEAVE_KEY]),
            close_key: with(&[NOW, FORGET_KEYS, CLOSE_KEY]),
            register_host: with(&[REGISTER_HOST]),
        }
    }

    pub fn all(&self) -> [&Script; 15] {
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
            &self.open_key,
            &self.join_key,
            &self.leave_key,
            &self.close_key,
            &self.register_host,
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
