// A Node.js process peer and a browser page peer through a real broker: the
// package as npm installs it, in Node.js 20 with node-datachannel (WebRTC)
// and ws (WebSocket) from npm, running examples/node-bot/bot.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { startBroker, launch, openPage, freePort } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP, PEERWIRE_NODE_APP } = process.env;
let broker, browser, bot;
const botId = `bot-${Math.random().toString(36).slice(2, 8)}`;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP && PEERWIRE_NODE_APP, 'run through tests/run.sh');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP);
  // Chromium hides its host addresses behind mDNS names, which
  // node-datachannel does not resolve: the pair then depends on the bot
  // learning the page's address from its checks (peer-reflexive), and that
  // failed one run in three here. A bot on a server is reached the same way
  // through STUN/TURN; on loopback the page shows its addresses instead.
  browser = await launch(['--disable-features=WebRtcHideLocalIpsWithMdns']);
  bot = spawn(process.execPath, ['bot.mjs', broker.ws, botId], {
    cwd: PEERWIRE_NODE_APP,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: bot.stdout });
  const ready = new Promise((resolve, reject) => {
    lines.on('line', (l) => { if (l.startsWith(`bot ${botId} ready`)) resolve(); });
    bot.once('exit', (code) => reject(new Error(`the bot exited (${code}) before it was ready`)));
  });
  await ready;
});

after(async () => {
  if (bot && bot.exitCode === null) {
    bot.kill('SIGTERM');
    await once(bot, 'exit');
  }
  await browser?.close();
  await broker?.stop();
});

test('a browser page and a Node.js peer exchange messages, 10 MiB and a stream', async () => {
  const { page, errors } = await openPage(browser, `${broker.url}/index.html`);
  const got = await page.evaluate(async ({ ws, bot }) => {
    const peer = await window.peerwire.createPeer(`page-${Math.random().toString(36).slice(2, 8)}`, { broker: ws });
    const conn = await peer.connect(bot);
    const replies = [];
    let wake;
    conn.on('message', (m) => { replies.push(m); wake?.(); });
    const reply = async (n) => { while (replies.length < n) await new Promise((r) => { wake = r; }); return replies[n - 1]; };

    await conn.send('hello bot');
    const text = await reply(1);
    await conn.send({ n: [1, 2, 3] });
    const json = await reply(2);

    // 10 MiB of a pattern, and its Adler-32 computed here.
    const big = new Uint8Array(10 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 255;
    let a = 1, b = 0;
    for (const x of big) { a = (a + x) % 65521; b = (b + a) % 65521; }
    const started = performance.now();
    await conn.send(big);
    const bigReply = await reply(3);
    const bigMs = performance.now() - started;

    // A stream up, and the bot's stream back.
    const back = new Promise((resolve) => conn.on('stream', (s) => {
      const chunks = [];
      s.on('message', (c) => chunks.push(c));
      s.on('end', () => resolve({ name: s.name, chunks }));
    }));
    const up = await conn.openStream('up');
    for (const c of ['one', 'two', 'three']) await up.send(c);
    await up.end();
    const stream = await back;
    const stats = await conn.stats();
    await peer.close();
    return { text, json, bigReply, expected: (b * 65536 + a) >>> 0, bigMs, stream, route: stats.route };
  }, { ws: broker.ws, bot: botId });

  assert.equal(got.text, 'echo: hello bot');
  assert.deepEqual(got.json, { echo: { n: [1, 2, 3] } });
  assert.deepEqual(got.bigReply, { bytes: 10 * 1024 * 1024, checksum: got.expected });
  assert.deepEqual(got.stream, { name: 'up-back', chunks: ['one', 'two', 'three'] });
  assert.ok(['host', 'prflx', 'srflx'].includes(got.route), got.route);
  console.log(`# 10 MiB browser -> Node.js peer, acknowledged in ${got.bigMs.toFixed(0)} ms`);
  assert.deepEqual(errors, []);
});

// peerwire/signaller in Node.js, with `ws` as its WebSocket: a pipe between
// two Node.js ends carries text, bytes and JSON both ways, and a handle
// nobody listens on is refused with its named error.
test('Node.js: peerwire/signaller over ws carries text, bytes and JSON through the broker', () => {
  const script = `
    import { WebSocket } from 'ws';
    import { Signaller, SignallerError } from 'peerwire/signaller';
    const [server, h] = process.argv.slice(1);
    const out = {};
    out.noWebSocket = globalThis.WebSocket ? 'has one' : (() => { try { new Signaller(server, h); } catch (e) { return e.code; } })();
    const ending = (s) => new Promise((resolve) => { s.onclose = (e) => resolve({ code: e.code, name: e.name, error: e.error?.code ?? null }); });
    const next = (s, n) => new Promise((resolve) => { const got = []; s.onsignal = (d) => { got.push(typeof d === 'string' ? d : [...d]); if (got.length === n) resolve(got); }; });
    const l = new Signaller(server, h, { WebSocket });
    await new Promise((resolve) => { l.onopen = resolve; l.listen(); });
    const heard = next(l, 2);
    const lEnd = ending(l);
    const c = new Signaller(server, h, { WebSocket });
    const answered = next(c, 1);
    const cEnd = ending(c);
    c.signal('offer from node');
    c.signal(new Uint8Array([7, 8, 9]));
    c.connect();
    out.heard = await heard;
    l.signal({ answer: true });
    out.answered = await answered;
    c.close();
    out.ends = [await lEnd, await cEnd];
    const lost = new Signaller(server, 'nobody_listens_here', { WebSocket });
    const lostEnd = ending(lost);
    lost.connect();
    out.lost = await lostEnd;
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, broker.url.replace('http:', 'ws:'), `node_pipe_${Math.random().toString(36).slice(2, 8)}`], {
    cwd: PEERWIRE_NODE_APP, encoding: 'utf8', timeout: 30000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1));
  assert.ok(['invalid-argument', 'has one'].includes(out.noWebSocket), out.noWebSocket);
  assert.deepEqual(out.heard, ['offer from node', [7, 8, 9]]);
  assert.deepEqual(out.answered, ['{"answer":true}']);
  assert.deepEqual(out.ends, [{ code: 1000, name: 'normal', error: null }, { code: 1000, name: 'normal', error: null }]);
  assert.deepEqual(out.lost, { code: 1006, name: 'abnormal', error: 'refused' });
});

// Node's `ws` throws an `error` event nobody listens to, and the process
// exits: the peer must listen on every socket it opens. A broker that is
// down (createPeer rejects with its named error), one killed under a
// registered peer (each reconnect attempt is refused until it is back),
// and a close while the peer is reconnecting: the process lives through
// all three and exits by itself.
test('Node.js: a peer lives through a broker down, killed, restarted, and a close while reconnecting', async () => {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}/ws`;
  const script = `
    import * as rtc from 'node-datachannel/polyfill';
    import { WebSocket } from 'ws';
    import { createPeer } from 'peerwire';
    const [url, id] = process.argv.slice(1);
    const say = (line) => console.log(JSON.stringify(line));
    const lines = (await import('node:readline')).createInterface({ input: process.stdin });
    const commands = lines[Symbol.asyncIterator]();
    const next = async () => (await commands.next()).value;
    say({ down: await createPeer(id, { broker: url, rtc, WebSocket }).then(() => 'created', (e) => e.code) });
    await next(); // the broker is up
    const peer = await createPeer(id, { broker: url, rtc, WebSocket });
    const states = [];
    let wake;
    peer.on('broker', (s) => { states.push(s.state + (s.reconnect ? ' again' : '')); wake?.(); });
    const until = async (state) => { while (!states.includes(state)) await new Promise((r) => { wake = r; }); };
    say({ up: peer.id });
    await until('disconnected'); // the test killed the broker
    say({ lost: true });
    await until('registered again'); // and started it again
    say({ back: peer.broker });
    await next(); // killed again
    states.length = 0;
    await until('disconnected');
    await peer.close();
    say({ closed: peer.closed, states });
  `;
  const node = spawn(process.execPath, ['--input-type=module', '-e', script, url, `node-${Math.random().toString(36).slice(2, 8)}`], {
    cwd: PEERWIRE_NODE_APP, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  node.stderr.on('data', (d) => { stderr += d; });
  const exited = once(node, 'exit');
  const said = createInterface({ input: node.stdout })[Symbol.asyncIterator]();
  const hear = async () => {
    const { value, done } = await said.next();
    assert.ok(!done, `the Node.js peer exited: ${stderr}`);
    return JSON.parse(value);
  };
  let up;
  try {
    assert.deepEqual(await hear(), { down: 'broker-unreachable' });
    up = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP, [], port);
    node.stdin.write('up\n');
    assert.match((await hear()).up, /^node-/);
    await up.kill();
    assert.deepEqual(await hear(), { lost: true });
    // Reconnect attempts meet a closed port until the broker is back.
    up = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP, [], port);
    assert.deepEqual(await hear(), { back: url });
    await up.kill();
    node.stdin.write('killed\n');
    assert.deepEqual(await hear(), { closed: true, states: ['disconnected'] });
    node.stdin.end();
    const [code] = await exited;
    assert.equal(code, 0, stderr);
  } finally {
    if (node.exitCode === null) node.kill('SIGKILL');
    await up?.stop();
  }
});
