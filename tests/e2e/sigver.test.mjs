// netflux (the `netflux` npm package, unmodified: sigver's own client)
// against peerwire-broker's sigver front-end (/sigver), in Chromium: one
// peer opens a WebChannel with a key, others join it with the key, and
// they exchange messages over WebRTC. Then the same scripted WebSocket
// client against the broker and against the real sigver (its npm
// package's CLI): the same replies.
//
// Versions: sigver 8 (the `{"open": key}` spelling) depends on
// uws@^0.12.0, which the npm registry no longer serves, so it cannot be
// installed; sigver 7.6.4 is the newest that installs and speaks the
// `isKeyOk` protocol (it spells open `{"key": key}`), and netflux
// 1.0.0-rc.3 is the client of that protocol (later ones speak sigver 9+'s
// `opened`/`first` or protobuf). The broker takes both spellings of open.
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

const PAGE = `<!doctype html><meta charset="utf-8"><title>netflux client</title>
<script src="netflux.js"></script>
<script>
  // A WebChannel whose signalling server is this page's broker.
  window.channel = () => netflux.create({ signalingURL: 'ws://' + location.host + '/sigver', iceServers: [] });
  window.ready = typeof netflux === 'object' && typeof netflux.create === 'function';
</script>`;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN, 'run through tests/run.sh');
  dir = await mkdtemp(join(tmpdir(), 'sigver-page-'));
  await copyFile(require.resolve('netflux'), join(dir, 'netflux.js'));
  await writeFile(join(dir, 'index.html'), PAGE);
  broker = await startBroker(PEERWIRE_BROKER_BIN, dir);
  browser = await launch();
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

test('netflux peers join a WebChannel through the broker with a key and exchange messages', async () => {
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await openPage(browser, `${broker.url}/index.html`));
  const [a, b, c] = pages;
  // A opens the channel: the broker answers isKeyOk and A waits for joiners.
  const key = await a.page.evaluate(async () => {
    const wc = window.channel();
    window.wc = wc;
    window.got = [];
    wc.onMessage = (id, msg) => window.got.push(msg);
    const { key } = await wc.open();
    return key;
  });
  assert.match(key, /^[A-Za-z0-9]{5}$/, "netflux's own key");
  // B joins with the key: offer, answer and candidates go through the broker.
  const join = (page) => page.evaluate(async (key) => {
    const wc = window.channel();
    window.wc = wc;
    window.got = [];
    wc.onMessage = (id, msg) => window.got.push(msg);
    await wc.join(key);
    return { me: wc.myId, members: wc.members.length };
  }, key);
  const joinedB = await join(b.page);
  assert.equal(joinedB.members, 1, 'B is connected to A');
  // C joins the same key: netflux makes it a full mesh with A and B.
  const joinedC = await join(c.page);
  assert.equal(joinedC.members, 2, 'C is connected to A and B');
  await a.page.waitForFunction(() => window.wc.members.length === 2);
  await b.page.waitForFunction(() => window.wc.members.length === 2);
  // Each says hello over the data channels; each hears the other two.
  for (const [i, p] of pages.entries()) await p.page.evaluate((i) => window.wc.send(`hello from ${i}`), i);
  for (const [i, p] of pages.entries()) {
    await p.page.waitForFunction(() => window.got.length === 2, null, { timeout: 10000 });
    const heard = (await p.page.evaluate(() => window.got)).sort();
    assert.deepEqual(heard, [0, 1, 2].filter((j) => j !== i).map((j) => `hello from ${j}`));
  }
  // A key nobody opened: netflux's own error.
  const unknown = await c.page.evaluate(async () => {
    try { await window.channel().join('nokey'); return 'joined'; } catch (e) { return String(e); }
  });
  assert.equal(unknown, 'The key "nokey" was not found');
  // The key A holds, opened again by another channel: refused.
  const taken = await c.page.evaluate(async (key) => {
    try { await window.channel().open({ key }); return 'opened'; } catch (e) { return String(e); }
  }, key);
  assert.equal(taken, `${key} key already exists`);
  for (const p of pages) await p.context.close();
});

// The same scripted client, in a page, against a sigver server at `url`:
// what each socket got, in order, and how it closed.
async function script(page, url) {
  return page.evaluate(async (url) => {
    const open = () => new Promise((resolve, reject) => {
      const s = new WebSocket(url);
      const got = [];
      let wake;
      s.onmessage = (e) => { got.push(JSON.parse(e.data)); wake?.(); };
      const closed = new Promise((r) => { s.onclose = (e) => { got.push({ closed: e.code, reason: e.reason }); wake?.(); r(); }; });
      // The next message, or null after `ms`.
      const next = async (ms = 3000) => {
        const deadline = performance.now() + ms;
        while (got.length === 0 && performance.now() < deadline) {
          await new Promise((r) => { wake = r; setTimeout(r, Math.max(0, deadline - performance.now())); });
        }
        return got.shift() ?? null;
      };
      const send = (m) => s.send(typeof m === 'string' ? m : JSON.stringify(m));
      s.onopen = () => resolve({ s, got, closed, next, send });
      s.onerror = () => reject(new Error(`cannot reach ${url}`));
    });
    const untilClosed = async (c) => { await c.closed; return c.got.splice(0); };
    const t = Math.random().toString(36).slice(2, 8);
    const out = {};
    // An opener, and a joiner whose join carries its first data.
    const opener = await open();
    opener.send({ key: `room ${t}` });
    out.opened = await opener.next();
    const j1 = await open();
    j1.send({ join: `room ${t}`, data: { offer: { type: 'offer', sdp: 'v=0 …' } } });
    out.joined = await j1.next();
    out.firstData = await opener.next();
    const n1 = out.firstData?.id;
    // Both ways, any JSON value.
    j1.send({ data: { candidate: { candidate: 'candidate:1 1 udp 1 10.0.0.1 9 typ host', sdpMid: '0' } } });
    out.toOpener = await opener.next();
    opener.send({ id: n1, data: { answer: { type: 'answer', sdp: 'v=0' } } });
    out.toJoiner = await j1.next();
    opener.send({ id: n1, data: [1, 'two', null, { three: 3.5 }] });
    out.anyValue = await j1.next();
    // A second joiner gets a number of its own.
    const j2 = await open();
    j2.send({ join: `room ${t}` });
    out.joined2 = await j2.next();
    j2.send({ data: 'plain text' });
    out.fromJ2 = await opener.next();
    out.twoNumbers = out.fromJ2?.id !== n1;
    // Refusals: a key open already, a key nobody opened, not JSON, an
    // unknown message.
    out.taken = await untilClosed(await (async () => { const c = await open(); c.send({ key: `room ${t}` }); return c; })());
    out.unknownKey = await untilClosed(await (async () => { const c = await open(); c.send({ join: `nobody ${t}` }); return c; })());
    out.notJson = await untilClosed(await (async () => { const c = await open(); c.send('hello?'); return c; })());
    out.unknownMessage = await untilClosed(await (async () => { const c = await open(); c.send({ hello: 1 }); return c; })());
    // Data for a joiner the opener does not have: dropped, nothing said.
    opener.send({ id: 123456789, data: 'lost' });
    // A joiner goes: the opener hears which.
    j2.s.close(1000);
    await j2.closed;
    out.j2Gone = await opener.next();
    out.j2GoneIsJ2 = out.j2Gone?.id === out.fromJ2?.id;
    // The opener goes: its joiners are closed.
    opener.s.close(1000);
    out.openerGone = await untilClosed(j1);
    // Numbers differ by server (random in sigver): compare them by role.
    return JSON.parse(JSON.stringify(out).replaceAll(`"id":${n1},`, '"id":"J1",').replaceAll(`"id":${out.fromJ2?.id},`, '"id":"J2",').replaceAll(t, 'T'));
  }, url);
}

test('the same scripted client gets the same replies from the broker and from the real sigver', async () => {
  // sigver, as its users run it (its CLI), in a process of its own.
  const port = await freePort();
  real = spawn(process.execPath, [join(dirname(require.resolve('sigver/package.json')), 'bin', 'index.es5.min.js'), '-h', '127.0.0.1', '-p', String(port)], {
    // It traces every refusal on stderr: not this test's output.
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [line] = await once(createInterface({ input: real.stdout }), 'line');
  assert.match(line, /Server runs on/);
  const { page, context } = await openPage(browser, `${broker.url}/index.html`);
  const ours = await script(page, `ws://${new URL(broker.url).host}/sigver`);
  const theirs = await script(page, `ws://127.0.0.1:${port}`);
  assert.deepEqual(ours, theirs);
  // And they are what sigver's clients expect.
  assert.deepEqual(ours.opened, { isKeyOk: true });
  assert.deepEqual(ours.joined, { isKeyOk: true });
  assert.deepEqual(ours.firstData, { id: 'J1', data: { offer: { type: 'offer', sdp: 'v=0 …' } } });
  assert.deepEqual(ours.toJoiner, { data: { answer: { type: 'answer', sdp: 'v=0' } } });
  assert.deepEqual(ours.anyValue, { data: [1, 'two', null, { three: 3.5 }] });
  assert.equal(ours.twoNumbers, true);
  assert.deepEqual(ours.taken, [{ isKeyOk: false }, { closed: 4002, reason: 'The key room T exists already' }]);
  assert.deepEqual(ours.unknownKey, [{ isKeyOk: false }, { closed: 4003, reason: 'Unknown key: nobody T' }]);
  assert.deepEqual(ours.notJson, [{ closed: 4000, reason: 'Server accepts only JSON string' }]);
  assert.deepEqual(ours.unknownMessage, [{ closed: 4001, reason: 'Unknown JSON attribute: {"hello":1}' }]);
  assert.deepEqual(ours.j2Gone, { id: 'J2', unavailable: true });
  assert.equal(ours.j2GoneIsJ2, true);
  assert.deepEqual(ours.openerGone, [{ closed: 4004, reason: 'room T is no longer available' }]);
  await context.close();
});

test("sigver 8's spelling of open, and the broker's limits on a sigver socket", async () => {
  const { page, context } = await openPage(browser, `${broker.url}/index.html`);
  const r = await page.evaluate(async (url) => {
    const t = Math.random().toString(36).slice(2, 8);
    const open = () => new Promise((resolve) => { const s = new WebSocket(url); s.onopen = () => resolve(s); });
    const first = (s) => new Promise((resolve) => {
      s.onmessage = (e) => resolve(JSON.parse(e.data));
      s.onclose = (e) => resolve({ closed: e.code, reason: e.reason });
    });
    const a = await open();
    a.send(JSON.stringify({ open: `k${t}` }));
    const opened = await first(a);
    const b = await open();
    b.send(JSON.stringify({ join: `k${t}` }));
    const joined = await first(b);
    // A key over sigver's 512 characters.
    const c = await open();
    c.send(JSON.stringify({ key: 'x'.repeat(513) }));
    const long = await first(c);
    // A frame over the broker's --max-frame-bytes (64 KiB by default).
    b.send(JSON.stringify({ data: 'y'.repeat(70 * 1024) }));
    const big = await first(b);
    a.close();
    return { opened, joined, long, big };
  }, `ws://${new URL(broker.url).host}/sigver`);
  assert.deepEqual(r.opened, { isKeyOk: true });
  assert.deepEqual(r.joined, { isKeyOk: true });
  assert.deepEqual(r.long, { closed: 4000, reason: 'The key is not a string of 1 to 512 characters' });
  assert.equal(r.big.closed, 1009);
  // The hub counts sigver sockets like any other.
  const metrics = await (await fetch(`${broker.url}/metrics`)).text();
  assert.match(metrics, /closes_total\{code="1009"\} [1-9]/);
  await context.close();
});
