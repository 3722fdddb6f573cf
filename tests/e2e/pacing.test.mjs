// A peer that asks more of the broker than its message rate allows (the
// default --rate-limit 50 and --rate-burst 200) is paced by the SDK to the
// rate the broker announces, instead of being cut off with 4002 and losing
// what it sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
let broker, browser, page;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP);
  browser = await launch();
  ({ page } = await openPage(browser, `${broker.url}/index.html`));
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('400 broadcasts sent at once are paced to the broker rate: all arrive, in order, with no reconnect', async () => {
  const r = await page.evaluate(async (ws) => {
    const { createPeer } = window.peerwire;
    const tag = Math.random().toString(36).slice(2, 8);
    const a = await createPeer(`pace-a-${tag}`, { broker: ws });
    const b = await createPeer(`pace-b-${tag}`, { broker: ws });
    const ra = await a.join(`pace-${tag}`);
    const rb = await b.join(`pace-${tag}`);
    const got = [];
    let done;
    const all = new Promise((resolve) => { done = resolve; });
    ra.on('broadcast', (ev) => { got.push(ev.data.n); if (got.length === 400) done(); });
    const states = [];
    b.on('broker', (s) => states.push(s.state));
    const errors = [];
    b.on('error', (e) => errors.push(`${e.name}: ${e.message}`));
    const started = performance.now();
    const acks = await Promise.allSettled(Array.from({ length: 400 }, (_, n) => rb.broadcast({ n })));
    await all;
    const ms = performance.now() - started;
    a.close();
    b.close();
    return { got, ms, states, errors, refused: acks.filter((x) => x.status === 'rejected').map((x) => String(x.reason)) };
  }, broker.ws);
  console.log(`400 broadcasts through a broker allowing 50/s after a burst of 200: ${r.ms.toFixed(0)} ms`);
  assert.deepEqual(r.refused, []);
  assert.deepEqual(r.errors, []);
  assert.ok(!r.states.includes('disconnected'), `the broker link never dropped: ${r.states}`);
  assert.deepEqual(r.got, [...Array(400).keys()]);
  // Paced, not bunched: past the burst, at most the announced rate.
  assert.ok(r.ms > 3000, `${r.ms} ms`);
});
