// Two separate pages (separate browser contexts) each load the built package,
// call createPeer from their own JavaScript, and talk through a real broker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_SITE } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_SITE, 'run through tests/run.sh (it builds the package and the broker)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_SITE);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('two pages connect through the broker and exchange messages both ways', async () => {
  const a = await openPage(browser, `${broker.url}/page.html`);
  const b = await openPage(browser, `${broker.url}/page.html`);
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb] = [`page-a-${suffix}`, `page-b-${suffix}`];

  await b.page.evaluate(async ({ id, ws }) => {
    window.peer = await window.peerwire.createPeer(id, { broker: ws });
    window.inbox = [];
    window.peer.on('message', ({ from, message }) => window.inbox.push({ from, message }));
    window.peer.on('connection', (conn) => { window.incoming = conn.peerId; });
  }, { id: idb, ws: broker.ws });

  const sent = await a.page.evaluate(async ({ id, ws, to }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
    window.peer = peer;
    window.inbox = [];
    peer.on('message', ({ from, message }) => window.inbox.push({ from, message }));
    const conn = await peer.connect(to);
    await conn.send({ hello: 'from page a', n: [1, 2, 3] });
    await conn.send(new Uint8Array([9, 8, 7]));
    return { state: conn.state, peerId: conn.peerId, id: peer.id };
  }, { id: ida, ws: broker.ws, to: idb });
  assert.deepEqual(sent, { state: 'open', peerId: idb, id: ida });

  await b.page.waitForFunction(() => window.inbox.length >= 2, null, { timeout: 10000 });
  const got = await b.page.evaluate(() => ({
    incoming: window.incoming,
    first: window.inbox[0],
    bytes: Array.from(window.inbox[1].message),
  }));
  assert.equal(got.incoming, ida);
  assert.deepEqual(got.first, { from: ida, message: { hello: 'from page a', n: [1, 2, 3] } });
  assert.deepEqual(got.bytes, [9, 8, 7]);

  await b.page.evaluate((to) => window.peer.send(to, 'reply from page b'), ida);
  await a.page.waitForFunction(() => window.inbox.length >= 1, null, { timeout: 10000 });
  assert.deepEqual(await a.page.evaluate(() => window.inbox[0]), { from: idb, message: 'reply from page b' });

  // Closing page a's peer closes the link on page b.
  await a.page.evaluate(() => window.peer.close());
  await b.page.waitForFunction(() => window.peer.connections.length === 0, null, { timeout: 5000 });
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});
