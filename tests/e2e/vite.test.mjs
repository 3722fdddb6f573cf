// The package inside a Vite build: two pages of the bundled app connect
// through the broker and exchange a message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_VITE_DIST } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_VITE_DIST, 'run through tests/run.sh (it builds the Vite app)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_VITE_DIST);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('a Vite-bundled app connects two pages', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const [ida, idb] = ['vite-a', 'vite-b'].map((p) => `${p}-${Math.random().toString(36).slice(2, 8)}`);
  await b.page.evaluate(async ({ id, ws }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
    window.got = new Promise((resolve) => peer.on('message', resolve));
  }, { id: idb, ws: broker.ws });
  await a.page.evaluate(async ({ id, ws, to }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
    await peer.send(to, { bundled: true });
  }, { id: ida, ws: broker.ws, to: idb });
  assert.deepEqual(await b.page.evaluate(() => window.got), { from: ida, message: { bundled: true } });
  assert.deepEqual([...a.errors, ...b.errors], []);
});
