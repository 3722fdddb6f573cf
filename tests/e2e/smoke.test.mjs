// smoke's hub protocol end to end: smoke-node (npm, unmodified, bundled for
// the page by esbuild) in Chromium pages, its `NetworkHub` pointed at the
// broker's /smoke. Two nodes in two pages: one serves smoke's rest API, the
// other fetches from it by the address the broker gave, over a WebRTC
// connection set up with the broker's ICE configuration (the broker's own
// STUN service, which Chromium is seen to ask). Then the same script
// against the hub smoke-node ships (its in-page `PageHub`) and against the
// broker: the same events. (smoke's WebSocket hub server, `smoke-hub`, is
// not on npm: `npm view smoke-hub` answers 404.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { build } from 'esbuild';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN } = process.env;
const require = createRequire(import.meta.url);
let broker, browser, dir;

const PAGE = `<!doctype html><meta charset="utf-8"><title>smoke-node</title>
<script src="smoke.js"></script>
<script>
  window.hubUrl = location.origin.replace('http', 'ws') + '/smoke';
  window.ready = typeof smoke.Node === 'function' && typeof smoke.NetworkHub === 'function';
</script>`;

/** A UDP port nothing listens on right now, for the broker's STUN service. */
async function freeUdpPort() {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  socket.close();
  return port;
}

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN, 'run through tests/run.sh');
  dir = await mkdtemp(join(tmpdir(), 'smoke-page-'));
  // smoke-node ships CommonJS modules only: one script for the page.
  await build({
    entryPoints: [require.resolve('smoke-node')],
    bundle: true,
    format: 'iife',
    globalName: 'smoke',
    platform: 'browser',
    outfile: join(dir, 'smoke.js'),
    logLevel: 'warning',
  });
  await writeFile(join(dir, 'index.html'), PAGE);
  const stunPort = await freeUdpPort();
  broker = await startBroker(PEERWIRE_BROKER_BIN, dir, ['--stun-port', String(stunPort)]);
  broker.stunPort = stunPort;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A sample of the broker's metrics (`name` with its labels), 0 when absent. */
async function metric(name) {
  const text = await (await fetch(`${broker.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : 0;
}

const STUN_ANSWERED = 'peerwire_stun_packets_total{outcome="answered"}';

test('two smoke-node nodes in two pages: a rest fetch by the address the broker gave', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const stunBefore = await metric(STUN_ANSWERED);
  try {
    const server = await b.page.evaluate(async () => {
      const node = new smoke.Node({ hub: new smoke.NetworkHub(window.hubUrl) });
      window.node = node;
      const app = node.rest.createServer();
      app.get('/hello/:name', (req, res) => {
        res.json({ hello: req.params.name, remote: req.remote, local: req.local });
      });
      app.post('/echo', async (req, res) => res.send(`echo ${await req.text()}`));
      app.listen(80);
      return { address: await node.address(), configuration: await node.hub.configuration() };
    });
    // The broker's STUN service, as the broker hands it to every client.
    assert.deepEqual(server.configuration, { iceServers: [{ urls: [`stun:127.0.0.1:${broker.stunPort}`] }] });
    const out = await a.page.evaluate(async (to) => {
      const node = new smoke.Node({ hub: new smoke.NetworkHub(window.hubUrl) });
      const first = await node.rest.fetch(`rest://${to}/hello/page-a`);
      const body = await first.json();
      // A second node (a second peer connection, signalled through the
      // broker too) posts. (A second request over the same connection is
      // not tried: smoke-node's second data channel on a connection fails
      // about 2 runs in 5 in this Chromium with "... is not responding", no
      // signalling involved; see docs/PROTOCOL.md.)
      const other = new smoke.Node({ hub: new smoke.NetworkHub(window.hubUrl) });
      const posted = await other.rest.fetch(`rest://${to}/echo`, { method: 'post', body: 'over webrtc' });
      // The peer connection smoke-node made to the server's address (not
      // its loopback) uses the broker's configuration.
      const peer = node.network.getPeers().get(to);
      return {
        me: await node.address(),
        status: first.status,
        body,
        echo: await posted.text(),
        iceServers: peer.connection.getConfiguration().iceServers,
        state: peer.connection.connectionState,
      };
    }, server.address);
    assert.notEqual(out.me, server.address);
    assert.equal(out.status, 200);
    assert.deepEqual(out.body, { hello: 'page-a', remote: out.me, local: server.address });
    assert.equal(out.echo, 'echo over webrtc');
    assert.equal(out.state, 'connected');
    assert.deepEqual(out.iceServers.map((s) => s.urls).flat(), [`stun:127.0.0.1:${broker.stunPort}`]);
    // Chromium asked the broker's STUN service while gathering candidates.
    assert.ok(await metric(STUN_ANSWERED) > stunBefore, 'STUN packets reached the broker');
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

// One script, two hubs: smoke-node's own in-page hub (`PageHub` on the
// `PageHubServer` smoke-node starts in every page) and the broker through
// `NetworkHub`. What each hub client sees, with addresses replaced by the
// names of their owners, must be the same.
async function transcript(page, kind) {
  return page.evaluate(async (kind) => {
    const hub = () => (kind === 'page' ? new smoke.PageHub(0) : new smoke.NetworkHub(window.hubUrl));
    const [alice, bob] = [hub(), hub()];
    const names = new Map([[await alice.address(), 'alice'], [await bob.address(), 'bob']]);
    const name = (address) => names.get(address) ?? `unknown ${address}`;
    const heard = { alice: [], bob: [] };
    const waiting = [];
    // Resolves once `who` has heard `n` forwards (a forward is only ordered
    // after those of the same sender).
    const heardAt = (who, n) => new Promise((resolve) => {
      if (heard[who].length >= n) resolve();
      else waiting.push({ who, n, resolve });
    });
    const wake = () => waiting.forEach((w) => heard[w.who].length >= w.n && w.resolve());
    for (const [who, h] of [['alice', alice], ['bob', bob]]) {
      h.on('forward', (f) => {
        heard[who].push({ keys: Object.keys(f).sort(), type: f.type, from: name(f.from), to: name(f.to), data: f.data });
        wake();
      });
    }
    const configurations = [typeof (await alice.configuration()), typeof (await bob.configuration())];
    // To nobody (dropped, silently), then to bob in order, then back.
    await alice.forward('9.9.9.9', { lost: true });
    await alice.forward(await bob.address(), { type: 'offer', sdp: { type: 'offer', sdp: 'v=0' }, loopback: 0 });
    await alice.forward(await bob.address(), 'text');
    await alice.forward(await bob.address(), [1, null, { deep: ['x'] }]);
    await alice.forward(await alice.address(), 'to myself');
    await heardAt('bob', 3);
    await heardAt('alice', 1);
    await bob.forward(await alice.address(), { type: 'answer' });
    await bob.forward(await bob.address(), 'bob to himself');
    await Promise.all([heardAt('alice', 2), heardAt('bob', 4)]);
    const distinct = names.size === 2;
    alice.dispose();
    bob.dispose();
    return { distinct, configurations, heard };
  }, kind);
}

test('the same script against smoke-node\'s own hub and the broker: the same events', async () => {
  const p = await openPage(browser, `${broker.url}/index.html`);
  try {
    const reference = await transcript(p.page, 'page');
    const ours = await transcript(p.page, 'network');
    assert.deepEqual(ours, reference);
    // The transcript says something: what it holds, in order.
    assert.deepEqual(reference.heard.bob.map((f) => [f.from, f.to, f.data]), [
      ['alice', 'bob', { type: 'offer', sdp: { type: 'offer', sdp: 'v=0' }, loopback: 0 }],
      ['alice', 'bob', 'text'],
      ['alice', 'bob', [1, null, { deep: ['x'] }]],
      ['bob', 'bob', 'bob to himself'],
    ]);
    assert.deepEqual(reference.heard.alice.map((f) => f.data), ['to myself', { type: 'answer' }]);
    assert.deepEqual(reference.heard.bob[0].keys, ['data', 'from', 'to', 'type']);
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});
