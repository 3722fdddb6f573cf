// The broker's relay, end to end: two pages of the npm package with
// `relay: 'always'` (no RTCPeerConnection at all) exchange messages, a
// 2 MiB message and a stream through a real broker; two Nodes serve and
// fetch rest and open a socket the same way. (The fallback to the relay when
// WebRTC finds no path is tested in the NAT lab, tests/netlab.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage, restAndSocketBetweenNodes } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('with relay: always, two pages talk through the broker: messages, 2 MiB, a stream, stats, close', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb] = [`ra-${suffix}`, `rb-${suffix}`];
  await b.page.evaluate(async ({ id, ws }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws, relay: 'always' });
    window.inbox = [];
    window.streamed = [];
    window.gone = new Promise((resolve) => peer.on('connection', (conn) => {
      window.conn = conn;
      conn.on('message', (m) => window.inbox.push(m));
      conn.on('stream', (s) => s.on('message', (m) => window.streamed.push(m)));
      conn.on('close', () => resolve(true));
    }));
  }, { id: idb, ws: broker.ws });
  const out = await a.page.evaluate(async ({ id, ws, to }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws, relay: 'always' });
    const conn = await peer.connect(to);
    window.conn = conn;
    window.inbox = [];
    conn.on('message', (m) => window.inbox.push(m));
    await conn.send({ hello: 'relay' });
    const big = new Uint8Array(2 * 1024 * 1024).map((_, i) => i % 253);
    await conn.send(big);
    const s = await conn.openStream('side');
    await s.send('on a stream');
    const stats = await conn.stats();
    return { state: conn.state, pc: conn.peerConnection === undefined, stats };
  }, { id: ida, ws: broker.ws, to: idb });
  assert.equal(out.state, 'open');
  assert.ok(out.pc, 'no RTCPeerConnection on the relay');
  assert.equal(out.stats.route, 'broker');
  assert.equal(out.stats.report, null);
  assert.ok(out.stats.bytesSent > 2 * 1024 * 1024, JSON.stringify(out.stats));

  await b.page.waitForFunction(() => window.inbox.length >= 2 && window.streamed.length >= 1, null, { timeout: 20000 });
  const got = await b.page.evaluate(() => {
    const big = window.inbox[1];
    let ok = big instanceof Uint8Array && big.length === 2 * 1024 * 1024;
    for (let i = 0; ok && i < big.length; i++) ok = big[i] === i % 253;
    return { first: window.inbox[0], big: ok, streamed: window.streamed, route: null };
  });
  assert.deepEqual(got.first, { hello: 'relay' });
  assert.ok(got.big, 'the 2 MiB message arrived intact');
  assert.deepEqual(got.streamed, ['on a stream']);
  await b.page.evaluate(() => window.conn.send('back'));
  await a.page.waitForFunction(() => window.inbox.length >= 1, null, { timeout: 5000 });
  assert.equal(await a.page.evaluate(() => window.inbox[0]), 'back');

  await a.page.evaluate(() => window.conn.close());
  assert.equal(await b.page.evaluate(() => window.gone), true);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});

test('with relay: always, two Nodes serve and fetch rest and open a socket through the broker', async () => {
  await restAndSocketBetweenNodes(browser, broker, { relay: 'always' });
});
