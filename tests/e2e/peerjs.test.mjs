// PeerJS's own client (the `peerjs` npm package, unmodified) against
// peerwire-broker's PeerJS front-end (/peerjs, /peerjs/id), in Chromium:
// data connections, a media call with fake devices, the client's own
// errors for an offline and a taken id, and a reconnect. Then the same
// scripted WebSocket client against the broker and against PeerJS's real
// server (`peer` on npm): the same replies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, copyFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startBroker, launch, openPage, freePort } from './harness.mjs';

const { PEERWIRE_BROKER_BIN } = process.env;
const require = createRequire(import.meta.url);
let broker, browser, dir, real;

const PAGE = `<!doctype html><meta charset="utf-8"><title>PeerJS client</title>
<script src="peerjs.min.js"></script>
<script>
  // A PeerJS peer on this page's server; resolves once open, or rejects with the client's error type.
  window.openPeer = (id, extra = {}) => new Promise((resolve, reject) => {
    const opts = { host: location.hostname, port: Number(location.port), path: '/', secure: false,
      config: { iceServers: [] }, debug: 0, ...extra };
    const peer = id ? new Peer(id, opts) : new Peer(opts);
    peer.once('open', () => resolve(peer));
    peer.once('error', (e) => reject(Object.assign(new Error(e.message), { type: e.type })));
  });
  window.ready = typeof Peer === 'function';
</script>`;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN, 'run through tests/run.sh');
  dir = await mkdtemp(join(tmpdir(), 'peerjs-page-'));
  await copyFile(require.resolve('peerjs/dist/peerjs.min.js'), join(dir, 'peerjs.min.js'));
  await writeFile(join(dir, 'index.html'), PAGE);
  broker = await startBroker(PEERWIRE_BROKER_BIN, dir);
  browser = await launch(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  if (real && real.exitCode === null) {
    real.kill('SIGTERM');
    await once(real, 'exit');
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

const tag = () => Math.random().toString(36).slice(2, 8);

test('two PeerJS clients open a data connection through the broker and exchange messages', async () => {
  const [a, b] = [await openPage(browser, `${broker.url}/index.html`), await openPage(browser, `${broker.url}/index.html`)];
  const alice = `alice-${tag()}`;
  const heard = a.page.evaluate(async (id) => {
    const peer = await window.openPeer(id);
    window.alice = peer;
    return new Promise((resolve) => {
      peer.on('connection', (conn) => {
        const got = [];
        conn.on('data', (d) => {
          got.push(d);
          conn.send({ echo: d });
          if (got.length === 3) resolve({ from: conn.peer, got });
        });
      });
    });
  }, alice);
  await a.page.waitForFunction(() => window.alice?.open === true);
  const replies = await b.page.evaluate(async (to) => {
    const peer = await window.openPeer(undefined); // an id from GET /peerjs/id
    const conn = peer.connect(to, { reliable: true });
    const got = [];
    await new Promise((resolve, reject) => { conn.on('open', resolve); peer.on('error', reject); });
    const done = new Promise((resolve) => conn.on('data', (d) => { got.push(d); if (got.length === 3) resolve(); }));
    conn.send('hello');
    conn.send({ n: [1, 2, 3] });
    conn.send(new Uint8Array([1, 2, 250]));
    await done;
    return { id: peer.id, got: got.map((d) => JSON.stringify(d.echo instanceof ArrayBuffer ? [...new Uint8Array(d.echo)] : d.echo)) };
  }, alice);
  const at = await heard;
  assert.match(replies.id, /^p-[0-9a-f]{16}$/, 'the id the broker handed out');
  assert.equal(at.from, replies.id);
  assert.equal(at.got.length, 3);
  assert.deepEqual(replies.got, ['"hello"', '{"n":[1,2,3]}', '[1,2,250]']);
  await a.context.close();
  await b.context.close();
});

test('a PeerJS media call with fake devices carries both streams', async () => {
  const [a, b] = [await openPage(browser, `${broker.url}/index.html`), await openPage(browser, `${broker.url}/index.html`)];
  const callee = `callee-${tag()}`;
  const answered = a.page.evaluate(async (id) => {
    const peer = await window.openPeer(id);
    window.callee = peer;
    return new Promise((resolve) => {
      peer.on('call', async (call) => {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
        call.answer(stream);
        call.on('stream', (remote) => resolve(remote.getTracks().map((t) => t.kind).sort()));
      });
    });
  }, callee);
  await a.page.waitForFunction(() => window.callee?.open === true);
  const caller = await b.page.evaluate(async (to) => {
    const peer = await window.openPeer(undefined);
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    const call = peer.call(to, stream);
    const remote = await new Promise((resolve, reject) => { call.on('stream', resolve); call.on('error', reject); });
    // Frames flow: the remote video's size becomes known.
    const video = document.createElement('video');
    video.muted = true;
    video.srcObject = remote;
    await video.play();
    await new Promise((resolve) => { const check = () => (video.videoWidth > 0 ? resolve() : setTimeout(check, 50)); check(); });
    return { kinds: remote.getTracks().map((t) => t.kind).sort(), width: video.videoWidth };
  }, callee);
  assert.deepEqual(caller.kinds, ['audio', 'video']);
  assert.ok(caller.width > 0);
  assert.deepEqual(await answered, ['audio', 'video']);
  await a.context.close();
  await b.context.close();
});

test("PeerJS's own errors: peer-unavailable for an offline id, unavailable-id for a taken one; a reconnect keeps the id", async () => {
  const { page, context } = await openPage(browser, `${broker.url}/index.html`);
  const r = await page.evaluate(async (id) => {
    const peer = await window.openPeer(id);
    const offline = await new Promise((resolve) => {
      peer.once('error', (e) => resolve({ type: e.type, message: e.message }));
      peer.connect('nobody-here-at-all');
    });
    let taken;
    try { await window.openPeer(id); } catch (e) { taken = e.type; }
    // The client drops its socket and comes back with the same id and token.
    peer.disconnect();
    const disconnected = peer.disconnected;
    const reopened = await new Promise((resolve, reject) => {
      peer.once('open', resolve);
      peer.once('error', (e) => reject(new Error(e.type)));
      peer.reconnect();
    });
    return { offline, taken, disconnected, reopened, id: peer.id };
  }, `me-${tag()}`);
  assert.equal(r.offline.type, 'peer-unavailable');
  assert.match(r.offline.message, /nobody-here-at-all/);
  assert.equal(r.taken, 'unavailable-id');
  assert.equal(r.disconnected, true);
  assert.equal(r.reopened, r.id, 'open again with the same id');
  await context.close();
});

// The same scripted client, in a page, against a server at `base`
// (host:port): what each step got back.
async function script(page, base) {
  return page.evaluate(async (base) => {
    const open = (query) => {
      const s = new WebSocket(`ws://${base}/peerjs?${query}`);
      const got = [];
      let wake;
      s.onmessage = (e) => { got.push(JSON.parse(e.data)); wake?.(); };
      const closed = new Promise((resolve) => { s.onclose = () => { wake?.(); resolve(); }; });
      const next = async (ms) => {
        const deadline = performance.now() + ms;
        while (got.length === 0 && performance.now() < deadline && s.readyState <= 1) {
          await new Promise((r) => { wake = r; setTimeout(r, Math.max(0, deadline - performance.now())); });
        }
        return got.shift() ?? null;
      };
      const send = (m) => s.send(JSON.stringify(m));
      return { s, got, closed, next, send };
    };
    const untilClosed = async (c) => { await c.closed; return c.got; };
    const t = Math.random().toString(36).slice(2, 8);
    const [idA, idB] = [`dA-${t}`, `dB-${t}`];
    const out = {};
    out.badKey = await untilClosed(open(`key=wrong&id=x-${t}&token=t`));
    out.noToken = await untilClosed(open(`key=peerjs&id=x-${t}`));
    const a = open(`key=peerjs&id=${idA}&token=ta&version=1.5.5`);
    const b = open(`key=peerjs&id=${idB}&token=tb&version=1.5.5`);
    out.openA = await a.next(3000);
    out.openB = await b.next(3000);
    a.send({ type: 'HEARTBEAT' });
    a.send({ type: 'OFFER', payload: { sdp: { type: 'offer', sdp: 'v=0' }, type: 'data', connectionId: 'dc_1' }, dst: idB });
    out.offer = await b.next(3000);
    b.send({ type: 'ANSWER', payload: { sdp: { type: 'answer', sdp: 'v=0' }, type: 'data', connectionId: 'dc_1' }, dst: idA });
    out.answer = await a.next(3000);
    b.send({ type: 'CANDIDATE', payload: { candidate: { candidate: 'c' }, type: 'data', connectionId: 'dc_1' }, dst: idA, src: 'spoofed' });
    out.candidate = await a.next(3000);
    out.taken = await untilClosed(open(`key=peerjs&id=${idA}&token=not-ta`));
    a.send({ type: 'OFFER', payload: { connectionId: 'dc_2' }, dst: `nobody-${t}` });
    out.expire = await a.next(9000); // PeerJS's server expires after 5 s, checking each second
    const http = async (path) => { const r = await fetch(`http://${base}${path}`); return { status: r.status, body: (await r.text()).length > 0 }; };
    out.id = await http('/peerjs/id');
    out.peers = (await http('/peerjs/peers')).status;
    a.s.close();
    b.s.close();
    // Ids differ by run: compare them by role.
    return JSON.parse(JSON.stringify(out).replaceAll(idA, 'A').replaceAll(idB, 'B').replaceAll(`nobody-${t}`, 'NOBODY'));
  }, base);
}

test("the same scripted client gets the same replies from the broker and from PeerJS's server", async () => {
  // PeerJS's server, as its users run it (its CLI), in a process of its own.
  const port = await freePort();
  real = spawn(process.execPath, [join(dirname(require.resolve('peer')), 'bin', 'peerjs.js'), '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = await once(createInterface({ input: real.stdout }), 'line');
  assert.match(line, /Started PeerServer/);
  const { page, context } = await openPage(browser, `${broker.url}/index.html`);
  const ours = await script(page, new URL(broker.url).host);
  const theirs = await script(page, `127.0.0.1:${port}`);
  assert.deepEqual(ours, theirs);
  // And they are what PeerJS clients expect.
  assert.deepEqual(ours.openA, { type: 'OPEN' });
  assert.deepEqual(ours.badKey, [{ type: 'ERROR', payload: { msg: 'Invalid key provided' } }]);
  assert.equal(ours.offer.src, 'A');
  assert.equal(ours.candidate.src, 'B', 'the sender is the real one');
  assert.deepEqual(ours.taken, [{ type: 'ID-TAKEN', payload: { msg: 'ID is taken' } }]);
  assert.deepEqual(ours.expire, { type: 'EXPIRE', src: 'NOBODY', dst: 'A' });
  assert.deepEqual(ours.id, { status: 200, body: true });
  assert.equal(ours.peers, 401);
  await context.close();
});
