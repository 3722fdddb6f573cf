// signaller's protocol end to end: the package's `peerwire/signaller`
// (installed from the packed .tgz into the scratch app) in Chromium pages,
// against a real broker process. Two pages run simple-peer (npm,
// unmodified) and signal through Signaller, as signaller's own demo does: a
// data channel opens and carries messages both ways. Then what a user sees
// when nobody listens, when the listener closes or its page goes away, the
// buffer before the pipe opens, and the broker's limits and deadlines (4000,
// 4002, 1009, 4001) as named errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, copyFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
const require = createRequire(import.meta.url);
let broker, strict, browser, dir;

const PAGE = `<!doctype html><meta charset="utf-8"><title>signaller and simple-peer</title>
<script src="simplepeer.min.js"></script>
<script type="module">
  import { Signaller, SignallerError, CLOSE_CODES, isValidHandle } from './signaller.js';
  Object.assign(window, { Signaller, SignallerError, CLOSE_CODES, isValidHandle });
  const plain = (e) => e && { name: e.name, code: e.code, closeCode: e.closeCode, message: e.message };
  // How a signaller ends: its onclose event, and every error onerror got.
  window.ending = (s) => {
    const errors = [];
    s.onerror = (e) => errors.push(plain(e));
    return new Promise((resolve) => {
      s.onclose = (e) => resolve({ code: e.code, name: e.name, error: plain(e.error), errors, state: s.state });
    });
  };
  window.opened = (s) => new Promise((resolve, reject) => {
    s.onopen = resolve;
    s.onclose = (e) => reject(new Error('closed before open: ' + e.code + ' ' + (e.error && e.error.message)));
  });
  // The next n messages a signaller gets, bytes as arrays.
  window.messages = (s, n) => new Promise((resolve) => {
    const got = [];
    s.onsignal = (d) => {
      got.push(typeof d === 'string' ? d : { bytes: Array.from(d), isUint8Array: d instanceof Uint8Array });
      if (got.length === n) resolve(got);
    };
  });
  window.thrown = (f) => { try { f(); return null; } catch (e) { return plain(e); } };
  window.ready = typeof SimplePeer === 'function';
</script>`;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  dir = await mkdtemp(join(tmpdir(), 'signaller-page-'));
  // The client as installed from the package, through its exports map.
  const installed = createRequire(join(PEERWIRE_APP, 'package.json'));
  await copyFile(installed.resolve('peerwire/signaller'), join(dir, 'signaller.js'));
  await copyFile(require.resolve('simple-peer/simplepeer.min.js'), join(dir, 'simplepeer.min.js'));
  await writeFile(join(dir, 'index.html'), PAGE);
  broker = await startBroker(PEERWIRE_BROKER_BIN, dir);
  // Tight limits and deadlines, to see each close code.
  strict = await startBroker(PEERWIRE_BROKER_BIN, dir, [
    '--listen-timeout-ms', '500', '--pipe-timeout-ms', '1500', '--signaller-max-messages', '3', '--max-frame-bytes', '1024',
  ]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  await strict?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const handle = (what) => `${what}_${Math.random().toString(36).slice(2, 8)}`;
const wsOf = (b) => b.url.replace('http:', 'ws:');

test('two simple-peer peers signal through Signaller: a data channel opens and carries messages both ways', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const h = handle('demo');
  try {
    // The listener: simple-peer answers whatever comes through the pipe.
    await a.page.evaluate(async ({ server, h }) => {
      const s = new Signaller(server, h);
      const peer = new SimplePeer({ initiator: false, config: { iceServers: [] } });
      window.sig = s;
      window.peer = peer;
      window.signals = [];
      s.onsignal = (data) => { window.signals.push(JSON.parse(data).type); peer.signal(data); };
      peer.on('signal', (data) => s.signal(data));
      window.got = [];
      peer.on('data', (d) => window.got.push(new TextDecoder().decode(d)));
      peer.on('connect', () => {
        peer.send('hello from the listener');
        peer.send('and again');
      });
      const open = window.opened(s);
      s.listen();
      await open;
      window.sigEnd = window.ending(s);
    }, { server: wsOf(broker), h });
    // The connector: simple-peer offers at once; its signals wait in the
    // Signaller's buffer until the pipe opens.
    const fromListener = await b.page.evaluate(async ({ server, h }) => {
      const s = new Signaller(server, h);
      const peer = new SimplePeer({ initiator: true, config: { iceServers: [] } });
      window.sig = s;
      window.peer = peer;
      s.onsignal = (data) => peer.signal(data);
      peer.on('signal', (data) => s.signal(data));
      const got = [];
      const two = new Promise((resolve) => peer.on('data', (d) => { got.push(new TextDecoder().decode(d)); if (got.length === 2) resolve(); }));
      window.sigEnd = window.ending(s);
      s.connect();
      await new Promise((resolve) => peer.on('connect', resolve));
      peer.send('hello from the connector');
      await two;
      return got;
    }, { server: wsOf(broker), h });
    assert.deepEqual(fromListener, ['hello from the listener', 'and again']);
    await a.page.waitForFunction(() => window.got.length === 1);
    const atListener = await a.page.evaluate(() => ({ got: window.got, first: window.signals[0] }));
    assert.deepEqual(atListener.got, ['hello from the connector']);
    assert.equal(atListener.first, 'offer', 'the offer went first, through the buffer');
    // Signalling done: the connector closes its pipe, normally; the data
    // channel does not need it any more.
    await b.page.evaluate(() => window.sig.close());
    const ends = await Promise.all([a.page.evaluate(() => window.sigEnd), b.page.evaluate(() => window.sigEnd)]);
    for (const end of ends) assert.deepEqual(end, { code: 1000, name: 'normal', error: null, errors: [], state: 'closed' });
    await b.page.evaluate(() => window.peer.send('after the pipe closed'));
    await a.page.waitForFunction(() => window.got.length === 2);
    assert.equal(await a.page.evaluate(() => window.got[1]), 'after the pipe closed');
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('connecting to a handle nobody listens on: onerror gets a SignallerError "refused" that names the handle', async () => {
  const { page, context, errors } = await openPage(browser, `${broker.url}/index.html`);
  try {
    const r = await page.evaluate(async (server) => {
      const s = new Signaller(server, 'nobody_listens_here');
      s.signal({ type: 'offer', sdp: 'never sent' });
      const end = window.ending(s);
      s.connect();
      const ended = await end;
      return { ended, after: window.thrown(() => s.signal('late')), again: window.thrown(() => s.listen()) };
    }, wsOf(broker));
    assert.equal(r.ended.code, 1006);
    assert.equal(r.ended.name, 'abnormal');
    assert.equal(r.ended.error.name, 'SignallerError');
    assert.equal(r.ended.error.code, 'refused');
    assert.equal(r.ended.error.closeCode, 1006);
    assert.match(r.ended.error.message, /\/connect\/nobody_listens_here did not open: nobody listens on handle "nobody_listens_here"/);
    assert.deepEqual(r.ended.errors, [r.ended.error], 'onerror got it once, before onclose');
    assert.equal(r.after.code, 'closed');
    assert.equal(r.again.code, 'closed');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('the listener closing: a normal close reaches the connector as 1000; a listener page that goes away, as 1011', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const [h1, h2] = [handle('closing'), handle('vanishing')];
  try {
    const listen = (h) => a.page.evaluate(async ({ server, h }) => {
      const s = new Signaller(server, h);
      window.sig = s;
      window.heard = window.messages(s, 1);
      const open = window.opened(s);
      s.listen();
      await open;
      window.sigEnd = window.ending(s);
    }, { server: wsOf(broker), h });
    // The connector says something and waits for it to be heard: both
    // sides are paired before the listener goes.
    const connect = (h) => b.page.evaluate(async ({ server, h }) => {
      const s = new Signaller(server, h);
      window.sigEnd = window.ending(s);
      s.signal('are you there');
      s.connect();
    }, { server: wsOf(broker), h });

    await listen(h1);
    await connect(h1);
    assert.deepEqual(await a.page.evaluate(() => window.heard), ['are you there']);
    await a.page.evaluate(() => window.sig.close());
    const normal = { code: 1000, name: 'normal', error: null, errors: [], state: 'closed' };
    assert.deepEqual(await a.page.evaluate(() => window.sigEnd), normal);
    assert.deepEqual(await b.page.evaluate(() => window.sigEnd), normal);

    await listen(h2);
    await connect(h2);
    assert.deepEqual(await a.page.evaluate(() => window.heard), ['are you there']);
    await a.context.close();
    const gone = await b.page.evaluate(() => window.sigEnd);
    assert.equal(gone.code, 1011);
    assert.equal(gone.name, 'internal-error');
    assert.equal(gone.error.code, 'internal-error');
    assert.match(gone.error.message, /the other side went away without closing/);
    assert.deepEqual(b.errors, []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('signals wait in order before the pipe opens, and messages until onsignal is set, within maxBufferedBytes; bad handles and arguments are named errors', async () => {
  const { page, context, errors } = await openPage(browser, `${broker.url}/index.html`);
  try {
    const r = await page.evaluate(async ({ server, h, h2 }) => {
      const out = {};
      out.badHandles = ['ab', 'Abc', 'a__b', '1abc', 'ab_', 'a-b', 'a'.repeat(33)].map((bad) => window.thrown(() => new Signaller(server).listen(bad))?.code);
      out.noHandle = window.thrown(() => new Signaller(server).connect())?.code;
      out.badOption = window.thrown(() => new Signaller(server, h, { maxBuffer: 1 }))?.message;
      out.badServer = window.thrown(() => new Signaller('ftp://x', h))?.message;
      out.notJson = window.thrown(() => new Signaller(server, h).signal(undefined))?.code;

      const listener = new Signaller(server, h, { maxBufferedBytes: 64 });
      listener.signal('a'.repeat(40));
      listener.signal(new Uint8Array([1, 2, 3]));
      listener.signal({ n: 1 }); // 7 bytes of JSON: 50 in all
      out.full = window.thrown(() => listener.signal('b'.repeat(15)));
      out.buffered = listener.bufferedBytes;
      const open = window.opened(listener);
      listener.listen();
      out.twice = window.thrown(() => listener.connect())?.code;
      await open;
      const end = window.ending(listener);
      // The connector's socket counts the frames it gets, so its handler
      // is set only once all three wait in its inbox.
      let seen = 0;
      let allThree;
      const three = new Promise((resolve) => { allThree = resolve; });
      class Counting extends WebSocket {
        constructor(url) { super(url); this.addEventListener('message', () => { if (++seen === 3) allThree(); }); }
      }
      const connector = new Signaller(server, { WebSocket: Counting });
      connector.connect(h);
      await three;
      const got = window.messages(connector, 3);
      out.got = await got;
      connector.close();
      out.end = await end;

      // What comes with no onsignal handler waits, within maxBufferedBytes
      // too: past it, this side gives up and the other sees 1011.
      const talker = new Signaller(server, h2);
      talker.signal('0123456789');
      talker.signal('0123456789');
      const talkerOpen = window.opened(talker);
      talker.listen();
      await talkerOpen;
      const talkerEnd = window.ending(talker);
      const deaf = new Signaller(server, h2, { maxBufferedBytes: 16 });
      const deafEnd = window.ending(deaf);
      deaf.connect();
      out.deaf = await deafEnd;
      out.talker = await talkerEnd;
      return out;
    }, { server: wsOf(broker), h: handle('buffer'), h2: handle('deaf') });
    assert.deepEqual(r.badHandles, Array(7).fill('invalid-handle'));
    assert.equal(r.noHandle, 'invalid-argument');
    assert.match(r.badOption, /unknown option options\.maxBuffer/);
    assert.match(r.badServer, /scheme "ftp" must be ws, wss, http or https/);
    assert.equal(r.notJson, 'invalid-argument');
    assert.equal(r.full.code, 'buffer-full');
    assert.match(r.full.message, /options\.maxBufferedBytes \(64\)/);
    assert.equal(r.buffered, 50);
    assert.equal(r.twice, 'already-started');
    assert.deepEqual(r.got, ['a'.repeat(40), { bytes: [1, 2, 3], isUint8Array: true }, '{"n":1}']);
    assert.deepEqual(r.end, { code: 1000, name: 'normal', error: null, errors: [], state: 'closed' });
    assert.equal(r.deaf.error.code, 'buffer-full');
    assert.match(r.deaf.error.message, /more than options\.maxBufferedBytes \(16\) of messages came with no onsignal handler/);
    assert.equal(r.talker.code, 1011);
    assert.equal(r.talker.error.code, 'internal-error');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("the broker's limits and deadlines reach the user as named close codes: 4000, 4002, 1009, 4001", async () => {
  const { page, context, errors } = await openPage(browser, `${strict.url}/index.html`);
  try {
    const r = await page.evaluate(async ({ server, hs }) => {
      // A pair, listener first; resolves both ends' endings.
      const pair = async (h, setup) => {
        const l = new Signaller(server, h);
        const open = window.opened(l);
        l.listen();
        await open;
        const lEnd = window.ending(l);
        const c = new Signaller(server, h);
        const cEnd = window.ending(c);
        setup(l, c);
        c.connect();
        return { listener: await lEnd, connector: await cEnd };
      };
      const lonely = new Signaller(server, hs.lonely);
      const lonelyEnd = window.ending(lonely);
      lonely.listen();
      return {
        lonely: await lonelyEnd,
        // Once paired (the connector heard the listener's hello), the
        // connector passes a limit; both sides are closed with its code.
        // --signaller-max-messages 3: the fourth message.
        many: await pair(hs.many, (l, c) => {
          l.signal('hello');
          c.onsignal = () => { for (const n of [1, 2, 3, 4]) c.signal(n); };
        }),
        // --max-frame-bytes 1024.
        big: await pair(hs.big, (l, c) => {
          l.signal('hello');
          c.onsignal = () => c.signal('x'.repeat(2000));
        }),
        // --pipe-timeout-ms 1500: a pipe left open.
        slow: await pair(hs.slow, () => {}),
      };
    }, { server: wsOf(strict), hs: { lonely: handle('lonely'), many: handle('many'), big: handle('big'), slow: handle('slow') } });
    const named = (end, code, name) => {
      assert.equal(end.code, code, JSON.stringify(end));
      assert.equal(end.name, name);
      assert.equal(end.error.code, name);
      assert.equal(end.error.closeCode, code);
      assert.deepEqual(end.errors, [end.error]);
    };
    named(r.lonely, 4000, 'listen-timeout');
    assert.match(r.lonely.error.message, /nobody connected to handle "lonely_\w+" within the broker's --listen-timeout-ms/);
    named(r.many.connector, 4002, 'too-many-messages');
    named(r.many.listener, 4002, 'too-many-messages');
    named(r.big.connector, 1009, 'message-too-big');
    named(r.big.listener, 1009, 'message-too-big');
    named(r.slow.connector, 4001, 'pipe-timeout');
    named(r.slow.listener, 4001, 'pipe-timeout');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
