// Access tokens end to end: a broker with --auth-secret and protected ids and
// rooms, tokens minted by the documented Node example (examples/mint-token.mjs,
// standing in for the app's server), and the package in a real page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage } from './harness.mjs';
import { mintToken } from '../../examples/mint-token.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
const SECRET = 'e2e-secret-e2e-secret-e2e-secret-e2e';
const FLAGS = ['--auth-secret', SECRET, '--protect', 'vip-*', '--protect-room', 'vip-*'];
let broker, browser, page;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP, FLAGS);
  browser = await launch();
  ({ page } = await openPage(browser, `${broker.url}/index.html`));
  // The page asks "its server" for tokens; here the test mints them.
  let asked = 0;
  await page.exposeFunction('mintFor', (sub, rooms) => {
    asked += 1;
    return mintToken(SECRET, { sub, rooms, ttlSeconds: 60 });
  });
  await page.exposeFunction('timesAsked', () => asked);
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

/** createPeer in the page; resolves { id } or { name, code, message }. */
async function create(id, options) {
  return page.evaluate(async ({ id, ws, options }) => {
    try {
      const peer = await window.peerwire.createPeer(id, { broker: ws, ...options });
      window.peers = [...(window.peers ?? []), peer];
      return { id: peer.id };
    } catch (e) {
      return { name: e.name, code: e.code, message: e.message };
    }
  }, { id, ws: broker.ws, options });
}

test('a protected id needs a token minted for it', async () => {
  const refused = await create('vip-1', {});
  assert.equal(refused.name, 'UnauthorizedError');
  assert.equal(refused.code, 'unauthorized');
  assert.match(refused.message, /token/);

  const other = await create('vip-1', { token: mintToken(SECRET, { sub: 'vip-2' }) });
  assert.equal(other.name, 'UnauthorizedError', JSON.stringify(other));

  assert.deepEqual(await create('vip-1', { token: mintToken(SECRET, { sub: 'vip-1', rooms: ['vip-lounge'] }) }), { id: 'vip-1' });
  const rooms = await page.evaluate(async () => {
    const peer = window.peers.at(-1);
    const lounge = await peer.join('vip-lounge');
    let forbidden;
    try { await peer.join('vip-backstage'); } catch (e) { forbidden = { name: e.name, code: e.code }; }
    let notListed;
    try { await peer.join('lobby'); } catch (e) { notListed = { name: e.name, code: e.code }; }
    return { lounge: lounge.name, forbidden, notListed };
  });
  assert.deepEqual(rooms, {
    lounge: 'vip-lounge',
    forbidden: { name: 'UnauthorizedError', code: 'forbidden' },
    notListed: { name: 'UnauthorizedError', code: 'forbidden' },
  });
  // Unprotected ids need no token.
  assert.match((await create(`guest-${Date.now()}`, {})).id, /^guest-/);
});

test('a bad token rejects createPeer at once with the reason', async () => {
  const started = Date.now();
  const expired = mintToken(SECRET, { sub: 'vip-3', ttlSeconds: -3600 });
  const r = await create('vip-3', { token: expired, connectTimeout: 10000 });
  assert.equal(r.name, 'UnauthorizedError');
  assert.match(r.message, /expired/);
  assert.ok(Date.now() - started < 5000, 'refused, not timed out');

  const forged = await create('vip-3', { token: mintToken('x'.repeat(40), { sub: 'vip-3' }) });
  assert.match(forged.message, /signature/);

  const threw = await page.evaluate(async (ws) => {
    try {
      await window.peerwire.createPeer('vip-3', { broker: ws, token: () => Promise.reject(new Error('login expired')) });
    } catch (e) {
      return { name: e.name, message: e.message };
    }
  }, broker.ws);
  assert.equal(threw.name, 'UnauthorizedError');
  assert.match(threw.message, /login expired/);

  const wrongType = await create('vip-3', { token: 42 });
  assert.equal(wrongType.name, 'InvalidArgumentError');
});

test('a token function is asked again on every reconnect', async () => {
  const before = await page.evaluate(() => window.timesAsked());
  const r = await page.evaluate(async (ws) => {
    const peer = await window.peerwire.createPeer('vip-9', { broker: ws, token: () => window.mintFor('vip-9', ['vip-*']) });
    window.vip9 = peer;
    window.registrations = 0;
    peer.on('register', () => { window.registrations += 1; });
    return peer.id;
  }, broker.ws);
  assert.equal(r, 'vip-9');
  assert.equal(await page.evaluate(() => window.timesAsked()), before + 1);

  // The broker restarts on the same port; the peer reconnects with a fresh token.
  const port = broker.port;
  await broker.stop();
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP, FLAGS, port);
  // The first registration is kept for the listener; the second is the reconnect.
  await page.waitForFunction(() => window.registrations >= 2, null, { timeout: 20000 });
  assert.ok(await page.evaluate(() => window.timesAsked()) >= before + 2, 'asked again');
  assert.equal(await page.evaluate(() => window.vip9.id), 'vip-9');
});

test('a Node on a NetworkHub takes the token too', async () => {
  const r = await page.evaluate(async ({ ws, good, expired }) => {
    const { Node, NetworkHub } = window.peerwire;
    const node = new Node({ hub: new NetworkHub(ws), token: good });
    const address = await node.address();
    node.close();
    let refused;
    try {
      const bad = new Node({ hub: new NetworkHub(ws), token: expired });
      await bad.address();
    } catch (e) {
      refused = { name: e.name, message: e.message };
    }
    return { address, refused };
  }, {
    ws: broker.ws,
    good: mintToken(SECRET, { sub: 'vip-node' }),
    expired: mintToken(SECRET, { sub: 'vip-node', ttlSeconds: -3600 }),
  });
  assert.equal(r.address, 'vip-node', 'registered as the token\'s sub');
  assert.equal(r.refused?.name, 'UnauthorizedError', JSON.stringify(r));
  assert.match(r.refused.message, /expired/);
});
