// signal-channel's end points with the npm modules its README pipes to
// them, in Node.js against a real broker process: scuttlebutt's `Model`
// (scuttlebutt 5.6.15, unmodified) replicating through
// /signal-channel/scuttlebutt/<namespace> and seeing an expired key go;
// header-stream's handshake on /signal-channel/relay; and echo.
// (signal-channel's own client is not on npm: `npm view signal-channel`
// answers 404. The WebSocket is `ws`; each frame is one chunk of the stream.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import { startBroker } from './harness.mjs';

const require = createRequire(import.meta.url);
const Model = require('scuttlebutt/model');
const header = require('header-stream');

const { PEERWIRE_BROKER_BIN } = process.env;
const EXPIRY_MS = 1500;
let broker;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN, 'run through tests/run.sh (PEERWIRE_BROKER_BIN: the broker binary)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, '/nonexistent-peerwire-static', [
    '--sigchan-expiry-ms', String(EXPIRY_MS), '--sweep-ms', '20',
  ]);
});

after(async () => {
  await broker?.stop();
});

const url = (path) => `${broker.url.replace('http:', 'ws:')}/signal-channel/${path}`;

async function open(path) {
  const ws = new WebSocket(url(path));
  await once(ws, 'open');
  return ws;
}

/** A model's replication stream piped to a WebSocket, both ways (what
 * `stream.pipe(m.createStream()).pipe(stream)` does in the README). The
 * listeners go on before the socket opens: the broker speaks first (its
 * digest), and a frame may come in the same read as the upgrade. */
async function replicate(model, namespace) {
  const ws = new WebSocket(url(`scuttlebutt/${encodeURIComponent(namespace)}`));
  const s = model.createStream();
  const early = [];
  s.on('data', (line) => (ws.readyState === WebSocket.OPEN ? ws.send(line) : early.push(line)));
  ws.on('message', (data) => s.write(data.toString()));
  const synced = once(s, 'synced');
  await once(ws, 'open');
  for (const line of early.splice(0)) ws.send(line);
  return { ws, s, synced };
}

/** Resolves with the value of the next change of `key` on `model`
 * (scuttlebutt's `change:<key>` event). */
const changeOf = (model, key) => once(model, `change:${key}`).then(([v]) => v);

test('two scuttlebutt Models replicate a key through the namespace', { timeout: 20_000 }, async () => {
  const m1 = new Model();
  const m2 = new Model();
  const a = await replicate(m1, 'some other namespace');
  const b = await replicate(m2, 'some other namespace');
  await Promise.all([a.synced, b.synced]);
  const value = `some value ${Math.random()}`;
  const seen = changeOf(m2, 'some key');
  m1.set('some key', value);
  assert.equal(await seen, value);
  assert.equal(m2.get('some key'), value);
  // And back: m2's write reaches m1; the newest write wins on both.
  const back = changeOf(m1, 'some key');
  m2.set('some key', 'from m2');
  assert.equal(await back, 'from m2');
  // A Model that comes later gets the state when it syncs.
  const m3 = new Model();
  const c = await replicate(m3, 'some other namespace');
  await c.synced;
  assert.equal(m3.get('some key'), 'from m2');
  // Another namespace is another model.
  const m4 = new Model();
  const d = await replicate(m4, 'elsewhere');
  await d.synced;
  assert.deepEqual(m4.toJSON(), {});
  for (const x of [a, b, c, d]) x.ws.close(1000);
});

test('an expired key goes away: connected Models drop it, later ones never see it', { timeout: 20_000 }, async () => {
  const m1 = new Model();
  const m2 = new Model();
  const a = await replicate(m1, 'volatile');
  const b = await replicate(m2, 'volatile');
  await Promise.all([a.synced, b.synced]);
  const arrived = changeOf(m2, 'k');
  const setAt = Date.now();
  m1.set('k', 'short-lived');
  assert.equal(await arrived, 'short-lived');
  // The broker removes it after --sigchan-expiry-ms, and says so as an
  // update with a null value: both Models drop it.
  const [gone1, gone2] = await Promise.all([changeOf(m1, 'k'), changeOf(m2, 'k')]);
  const after = Date.now() - setAt;
  assert.equal(gone1, null);
  assert.equal(gone2, null);
  assert.ok(after >= EXPIRY_MS - 50, `removed after ${after} ms`);
  assert.deepEqual(m2.toJSON(), {});
  // A Model that syncs now gets nothing for it.
  const m3 = new Model();
  const c = await replicate(m3, 'volatile');
  await c.synced;
  assert.equal(m3.get('k'), undefined);
  for (const x of [a, b, c]) x.ws.close(1000);
});

/** A WebSocket as the classic stream header-stream wraps. */
function wsStream(ws) {
  const s = new EventEmitter();
  s.readable = true;
  s.write = (chunk) => { ws.send(chunk); return true; };
  ws.on('message', (data, isBinary) => s.emit('data', isBinary ? data : data.toString()));
  return s;
}

test('relay: header-stream handshakes pair two streams and relay between them', { timeout: 20_000 }, async () => {
  const ws5 = await open('relay/namespace%20is%20optional');
  const ws6 = await open('relay/namespace%20is%20optional');
  const stream5 = header(wsStream(ws5));
  const stream6 = header(wsStream(ws6));
  const head5 = once(stream5, 'header');
  const head6 = once(stream6, 'header');
  const got5 = once(stream5, 'data');
  stream5.setHeader('local', '12');
  stream5.setHeader('remote', '22');
  stream5.writeHead();
  stream6.setHeader('local', '22');
  stream6.setHeader('remote', '12');
  stream6.writeHead();
  stream6.write('hello! relay');
  // Each side reads the other's header, then its messages.
  assert.deepEqual((await head5)[0], { local: '22', remote: '12' });
  assert.deepEqual((await head6)[0], { local: '12', remote: '22' });
  assert.equal((await got5)[0], 'hello! relay');
  const got6 = once(stream6, 'data');
  stream5.write('and back');
  assert.equal((await got6)[0], 'and back');
  const closed6 = once(ws6, 'close');
  ws5.close(1000);
  assert.equal((await closed6)[0], 1000);
});

test('echo: everything written comes back to every stream of the namespace', { timeout: 20_000 }, async () => {
  const a = await open('echo/optional%20namespace');
  // Each stream's own echo says it has joined.
  const first = once(a, 'message');
  a.send('a joined');
  assert.equal(String((await first)[0]), 'a joined');
  const b = await open('echo/optional%20namespace');
  const bJoined = once(b, 'message');
  const aSees = once(a, 'message');
  b.send('b joined');
  assert.equal(String((await bJoined)[0]), 'b joined');
  assert.equal(String((await aSees)[0]), 'b joined');
  const toA = once(a, 'message');
  const toB = once(b, 'message');
  a.send(JSON.stringify(['offer', 'peer id #222', 'this is an offer']));
  for (const got of [await toA, await toB]) {
    assert.deepEqual(JSON.parse(String(got[0])), ['offer', 'peer id #222', 'this is an offer']);
  }
  a.close(1000);
  b.close(1000);
});
