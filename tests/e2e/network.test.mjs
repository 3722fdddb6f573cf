// A network of two brokers on a real redis-server, and pages of the npm
// package using both: each page is given the brokers' URLs as a list, in a
// different order, so they register on different brokers and every signal
// crosses Redis. Then one broker is killed with SIGKILL: its page fails
// over to the other broker with its resume token, keeps its id, its room
// and its open WebRTC connection, and stays reachable by new peers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, startRedis, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
let redis, b1, b2, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  redis = await startRedis();
  const flags = ['--redis', redis.url, '--redis-lease-ms', '3000'];
  b1 = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP, flags);
  b2 = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP, flags);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await b1?.stop().catch(() => {});
  await b2?.stop();
  await redis?.stop();
});

/** A page whose peer `id` uses the broker list `urls`, recording what it hears. */
async function peerPage(id, urls) {
  const p = await openPage(browser, `${b2.url}/index.html`);
  await p.page.evaluate(async ({ id, urls }) => {
    window.inbox = [];
    window.brokerEvents = [];
    window.peer = await window.peerwire.createPeer(id, { broker: urls });
    window.peer.on('message', ({ from, message }) => window.inbox.push({ from, message }));
    window.peer.on('broker', (e) => window.brokerEvents.push(e));
    window.peer.on('connection', (conn) => { window.incoming = conn; });
  }, { id, urls });
  return p;
}

test('two brokers, one network: pages on different brokers connect; a killed broker\'s page fails over keeping its id, room and connection', async () => {
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb, idc] = [`net-a-${suffix}`, `net-b-${suffix}`, `net-c-${suffix}`];
  const a = await peerPage(ida, [b1.ws, b2.ws]);
  const b = await peerPage(idb, [b2.ws, b1.ws]);
  assert.equal(await a.page.evaluate(() => window.peer.broker), b1.ws);
  assert.equal(await b.page.evaluate(() => window.peer.broker), b2.ws);

  // Cross-broker: find, connect (offer, answer and candidates through Redis), a room.
  const opened = await a.page.evaluate(async (to) => {
    const online = await window.peer.find(to);
    const conn = await window.peer.connect(to);
    window.conn = conn;
    window.room = await window.peer.join('lobby');
    await conn.send('before');
    return { online, state: conn.state };
  }, idb);
  assert.deepEqual(opened, { online: true, state: 'open' });
  const members = await b.page.evaluate(async () => {
    window.room = await window.peer.join('lobby');
    return window.room.members;
  });
  assert.deepEqual(members, [ida, idb]);
  await b.page.waitForFunction(() => window.inbox.length >= 1, null, { timeout: 10000 });

  // Broker 1 dies. Page a moves to broker 2 with its token.
  await b1.kill();
  await a.page.waitForFunction(() => window.brokerEvents.some((e) => e.state === 'registered' && e.reconnect), null, { timeout: 20000 });
  const after = await a.page.evaluate(() => ({
    broker: window.peer.broker,
    registered: window.brokerEvents.filter((e) => e.state === 'registered').at(-1),
    conn: window.conn.state,
    members: window.room.members,
  }));
  assert.equal(after.broker, b2.ws);
  assert.equal(after.registered.id, ida);
  assert.equal(after.registered.resumed, true, 'reclaimed with its resume token: same id, same rooms');
  assert.equal(after.conn, 'open', 'the WebRTC connection never depended on the broker');
  assert.deepEqual(after.members, [ida, idb]);

  // The connection still carries data both ways.
  await a.page.evaluate(() => window.conn.send('after'));
  await b.page.waitForFunction(() => window.inbox.some((m) => m.message === 'after'), null, { timeout: 10000 });
  await b.page.evaluate(() => window.incoming.send('reply'));
  await a.page.waitForFunction(() => window.inbox.some((m) => m.message === 'reply'), null, { timeout: 10000 });

  // A newcomer reaches a on its new broker.
  const c = await peerPage(idc, [b2.ws]);
  const reached = await c.page.evaluate(async (to) => {
    const conn = await window.peer.connect(to);
    await conn.send('hello from c');
    return conn.state;
  }, ida);
  assert.equal(reached, 'open');
  await a.page.waitForFunction(() => window.inbox.some((m) => m.message === 'hello from c'), null, { timeout: 10000 });
  for (const p of [a, b, c]) assert.deepEqual(p.errors, []);
});
