// Two separate pages (separate browser contexts) each load the package as
// installed with npm into a scratch app outside the repository, with a plain
// <script type="module"> and no init() call, call createPeer from their own
// JavaScript, and talk through a real broker: messages, a rest fetch and a
// socket; and the same with the lite entry, and over the broker's relay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, exchangeBetweenPages, restAndSocketBetweenNodes, useBrokerAndBrowser } from './harness.mjs';

let broker, browser;

useBrokerAndBrowser((b, c) => { broker = b; browser = c; });

test('two pages connect through the broker and exchange messages both ways', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
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

test('a page that goes away says goodbye: the remote sees close and the room peer-left at once', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb, room] = [`bye-a-${suffix}`, `bye-b-${suffix}`, `bye-room-${suffix}`];
  await b.page.evaluate(async ({ id, ws, room }) => {
    window.peer = await window.peerwire.createPeer(id, { broker: ws });
    window.room = await window.peer.join(room);
    window.seen = {};
    window.room.on('peer-left', (who) => { window.seen.left = { who, at: performance.now() }; });
    window.peer.on('connection', (conn) => {
      conn.on('close', (e) => { window.seen.close = { reason: e.reason, at: performance.now() }; });
    });
  }, { id: idb, ws: broker.ws, room });
  await a.page.evaluate(async ({ id, ws, to, room }) => {
    window.peer = await window.peerwire.createPeer(id, { broker: ws });
    await window.peer.join(room);
    await window.peer.connect(to);
  }, { id: ida, ws: broker.ws, to: idb, room });
  await b.page.waitForFunction(() => window.peer.connections.length === 1, null, { timeout: 5000 });

  const hiddenAt = await b.page.evaluate(() => performance.now());
  await a.page.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false })));
  // Well inside the keep-alive (4.4 s) and the broker's grace window (10 s).
  await b.page.waitForFunction(() => window.seen.close && window.seen.left, null, { timeout: 3000 });
  const seen = await b.page.evaluate(() => window.seen);
  assert.equal(seen.left.who, ida);
  assert.ok(seen.close.at - hiddenAt < 2000, `close after ${seen.close.at - hiddenAt} ms`);
  assert.ok(seen.left.at - hiddenAt < 2000, `peer-left after ${seen.left.at - hiddenAt} ms`);
  assert.equal(await a.page.evaluate(() => window.peer.closed), true);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});

test('a remote page that hangs is detected: keep-alive silence, then two ICE restarts it does not answer', async (t) => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb] = [`silent-a-${suffix}`, `silent-b-${suffix}`];
  await b.page.evaluate(async ({ id, ws }) => { window.peer = await window.peerwire.createPeer(id, { broker: ws }); }, { id: idb, ws: broker.ws });
  await a.page.evaluate(async ({ id, ws, to }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
    const conn = await peer.connect(to);
    window.closeEvent = null;
    conn.on('close', (e) => { window.closeEvent = { reason: e.reason, at: performance.now() }; });
  }, { id: ida, ws: broker.ws, to: idb });

  // Freeze page b's JavaScript (a hung tab): its network stack lives on,
  // but it no longer answers pings.
  const cdp = await b.context.newCDPSession(b.page);
  await cdp.send('Debugger.enable');
  const frozenAt = await a.page.evaluate(() => performance.now());
  await cdp.send('Debugger.pause');
  await a.page.waitForFunction(() => window.closeEvent !== null, null, { timeout: 20000 });
  const closed = await a.page.evaluate(() => window.closeEvent);
  const seconds = (closed.at - frozenAt) / 1000;
  t.diagnostic(`silent remote detected after ${seconds.toFixed(1)} s`);
  // keepAliveTimeout (4 s), then two restarts of iceRestartTimeout (5 s).
  assert.match(closed.reason, /not answering/);
  assert.ok(seconds >= 12 && seconds <= 17, `detected after ${seconds.toFixed(1)} s`);
  await cdp.send('Debugger.resume');
  await a.context.close();
  await b.context.close();
});

test('two pages serve and fetch rest, and open a socket, as Nodes on the broker', async () => {
  await restAndSocketBetweenNodes(browser, broker);
});

test('the lite entry (peerwire/lite) connects two pages, with no Node in it', async () => {
  const names = await exchangeBetweenPages(browser, `${broker.url}/lite.html`, broker.ws, 'lite');
  for (const name of ['createPeer', 'Peer', 'Connection', 'Stream', 'Room', 'Rendezvous', 'init']) assert.ok(names.includes(name), `${name} in ${names}`);
  for (const name of ['Node', 'NetworkHub', 'PageHub', 'BroadcastChannelHub', 'Rest', 'Sockets']) assert.ok(!names.includes(name), `${name} in ${names}`);
});

// The broker's relay, end to end: with `relay: 'always'` there is no
// RTCPeerConnection at all. (The fallback to the relay when WebRTC finds no
// path is tested in the NAT lab, tests/netlab.)
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
    return { first: window.inbox[0], big: ok, streamed: window.streamed };
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
