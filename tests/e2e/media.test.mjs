// Media between two pages (separate browser contexts) through a real
// broker, with Chromium's fake camera and microphone: a call answered with
// media both ways, frames really decoded on each far side (framesDecoded
// from the receiver's stats growing); tracks added, replaced (no
// renegotiation), muted and removed mid-session; a track the sender stops
// (or whose source mutes) ending (muting) on the far side, with the SDK's
// hooks on the sender's track gone after removeTrack and close (counted by
// the DevTools protocol); a rejected call; and both sides adding tracks at
// the same moment; and a lite page (no media) refusing a call by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, useBrokerAndBrowser } from './harness.mjs';

let broker, browser;

useBrokerAndBrowser((b, c) => { broker = b; browser = c; }, { browserArgs: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required'] });

// Page helpers: a peer with its events recorded, and a wait for frames.
async function setUp(page, id, ws) {
  await page.evaluate(async ({ id, ws }) => {
    window.peer = await window.peerwire.createPeer(id, { broker: ws });
    window.errors = [];
    window.peer.on('error', (e) => window.errors.push(`${e.name}: ${e.message}`));
    window.log = [];
    // Waits on what the listeners below record: each record wakes the
    // waiters, which check their condition (no polling).
    window.waiters = new Set();
    const record = (list, item) => { list.push(item); for (const w of [...window.waiters]) w(); };
    window.until = (f, what) => new Promise((resolve, reject) => {
      if (f()) { resolve(); return; }
      const check = () => { if (f()) { clearTimeout(timer); window.waiters.delete(check); resolve(); } };
      const timer = setTimeout(() => { window.waiters.delete(check); reject(new Error(`timed out waiting for ${what}`)); }, 20000);
      window.waiters.add(check);
    });
    // Remote media on a connection, recorded as it comes.
    window.watch = (conn) => {
      window.conn = conn;
      window.remote = [];
      window.streams = [];
      for (const ev of ['track-muted', 'track-unmuted']) {
        conn.on(ev, ({ track }) => record(window.log, [ev, track.id]));
      }
      conn.on('track-ended', ({ track, reason }) => record(window.log, ['track-ended', track.id, reason]));
      conn.on('track', (ev) => record(window.remote, ev));
      conn.on('mediastream', (s) => record(window.streams, s.id));
      conn.on('close', ({ reason }) => record(window.log, ['close', reason]));
    };
    // Frames decoded so far for a remote video track (its receiver's stats).
    window.decoded = async (track) => {
      const report = await window.conn.peerConnection.getStats(track);
      let n = 0;
      report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0; });
      return n;
    };
    // Waits (polling the stats) until `track` decoded `more` frames beyond
    // what it had; resolves the count, or throws after 20 s.
    window.framesGrow = async (track, more = 10) => {
      const start = await window.decoded(track);
      const until = performance.now() + 20000;
      for (;;) {
        const n = await window.decoded(track);
        if (n >= start + more) return n;
        if (performance.now() > until) throw new Error(`only ${n - start} frames decoded`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
  }, { id, ws });
}

async function twoPages() {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const suffix = Math.random().toString(36).slice(2, 8);
  const ids = [`media-a-${suffix}`, `media-b-${suffix}`];
  await setUp(a.page, ids[0], broker.ws);
  await setUp(b.page, ids[1], broker.ws);
  return { a, b, ids };
}

async function closeAll(...pages) {
  for (const p of pages) {
    assert.deepEqual(await p.page.evaluate(() => window.errors), []);
    assert.deepEqual(p.errors, []);
    await p.context.close();
  }
}

test('a call answered with media: frames decoded on both far sides, stream ids and metadata carried', async () => {
  const { a, b, ids } = await twoPages();
  await b.page.evaluate(() => {
    window.peer.on('call', async (call) => {
      window.callInfo = { from: call.peerId, metadata: call.metadata };
      window.local = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      window.watch(call.answer(window.local));
    });
  });
  const localId = await a.page.evaluate(async (to) => {
    window.local = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    const conn = await window.peer.call(to, window.local, { metadata: { topic: 'standup' } });
    window.watch(conn);
    return window.local.id;
  }, ids[1]);
  assert.deepEqual(await b.page.evaluate(() => window.callInfo), { from: ids[0], metadata: { topic: 'standup' } });

  for (const [side, other] of [[a, b], [b, a]]) {
    const remoteStreamId = await other.page.evaluate(() => window.local.id);
    const got = await side.page.evaluate(async () => {
      await window.until(() => window.remote.length === 2, 'two remote tracks');
      const video = window.remote.find((e) => e.track.kind === 'video');
      const frames = await window.framesGrow(video.track);
      return {
        kinds: window.remote.map((e) => e.track.kind).sort(),
        streamIds: window.remote.map((e) => e.streamIds),
        streams: window.streams,
        sameStream: window.remote.every((e) => e.streams[0] === window.remote[0].streams[0]),
        frames,
      };
    });
    assert.deepEqual(got.kinds, ['audio', 'video']);
    assert.deepEqual(got.streamIds, [[remoteStreamId], [remoteStreamId]], 'the sender\'s stream id arrives with each track');
    assert.deepEqual(got.streams, [remoteStreamId], 'one mediastream event per remote stream');
    assert.ok(got.sameStream);
    assert.ok(got.frames >= 10, `frames decoded: ${got.frames}`);
  }
  assert.equal(localId, await a.page.evaluate(() => window.local.id));

  // Hanging up closes the connection; the user's own tracks keep running.
  await a.page.evaluate(() => window.conn.close());
  await b.page.waitForFunction(() => window.log.some(([e]) => e === 'close'), null, { timeout: 10000 });
  for (const p of [a, b]) {
    assert.deepEqual(await p.page.evaluate(() => window.local.getTracks().map((t) => t.readyState)), ['live', 'live']);
  }
  await closeAll(a, b);
});

test('mid-session: addTrack, replaceTrack without renegotiation, muteTrack, removeTrack ends the remote track', async () => {
  const { a, b, ids } = await twoPages();
  await b.page.evaluate(() => window.peer.on('connection', (conn) => window.watch(conn)));
  await a.page.evaluate(async (to) => {
    window.watch(await window.peer.connect(to));
    // Two canvases drawing frames: the second replaces the first later.
    const canvas = (color) => {
      const c = document.createElement('canvas');
      c.width = 160; c.height = 120;
      const g = c.getContext('2d');
      let n = 0;
      setInterval(() => { g.fillStyle = color; g.fillRect(0, 0, 160, 120); g.fillStyle = '#fff'; g.fillText(String(n++), 10, 60); }, 40);
      return c.captureStream(25);
    };
    window.first = canvas('#c00');
    window.second = canvas('#00c');
    window.conn.addTrack(window.first.getVideoTracks()[0], window.first);
  }, ids[1]);

  const remoteId = await b.page.evaluate(async () => {
    await window.until(() => window.remote.length === 1, 'the added track');
    window.video = window.remote[0].track;
    await window.framesGrow(window.video);
    window.negotiations = 0;
    window.conn.peerConnection.addEventListener('signalingstatechange', () => window.negotiations++);
    return window.remote[0].streamIds[0];
  });
  assert.equal(remoteId, await a.page.evaluate(() => window.first.id));

  // replaceTrack: same remote track, frames keep coming, no renegotiation.
  await a.page.evaluate(() => window.conn.replaceTrack(window.first.getVideoTracks()[0], window.second.getVideoTracks()[0]));
  const afterReplace = await b.page.evaluate(async () => {
    const frames = await window.framesGrow(window.video, 20);
    return { frames, tracks: window.remote.length, negotiations: window.negotiations };
  });
  assert.equal(afterReplace.tracks, 1);
  assert.equal(afterReplace.negotiations, 0, 'replaceTrack does not renegotiate');

  // muteTrack: the remote hears of it; the sender's track is disabled.
  await a.page.evaluate(() => window.conn.muteTrack(window.second.getVideoTracks()[0]));
  await b.page.waitForFunction(() => window.log.some(([e, id]) => e === 'track-muted' && id === window.video.id), null, { timeout: 10000 });
  assert.equal(await a.page.evaluate(() => window.second.getVideoTracks()[0].enabled), false);
  await a.page.evaluate(() => window.conn.muteTrack(window.second.getVideoTracks()[0], false));
  await b.page.waitForFunction(() => window.log.some(([e]) => e === 'track-unmuted'), null, { timeout: 10000 });

  // A second track mid-session, from the other side this time.
  await b.page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 64; c.height = 64;
    const g = c.getContext('2d');
    let n = 0;
    setInterval(() => { g.fillStyle = n++ % 2 ? '#0f0' : '#f0f'; g.fillRect(0, 0, 64, 64); }, 40);
    window.mine = c.captureStream(25);
    window.conn.addTrack(window.mine.getVideoTracks()[0], window.mine);
  });
  await a.page.evaluate(async () => {
    await window.until(() => window.remote.length === 1, 'b\'s track');
    await window.framesGrow(window.remote[0].track);
  });

  // removeTrack names the track the sender sends now (the replacement).
  await a.page.evaluate(() => window.conn.removeTrack(window.second.getVideoTracks()[0]));
  await b.page.waitForFunction(() => window.log.some(([e, id, why]) => e === 'track-ended' && id === window.video.id && why === 'removed'), null, { timeout: 10000 });
  // The user's tracks were not stopped.
  assert.deepEqual(await a.page.evaluate(() => [window.first, window.second].map((s) => s.getVideoTracks()[0].readyState)), ['live', 'live']);
  // Removing it again is a named error.
  const again = await a.page.evaluate(() => { try { window.conn.removeTrack(window.second.getVideoTracks()[0]); return null; } catch (e) { return e.name; } });
  assert.equal(again, 'InvalidArgumentError');
  await closeAll(a, b);
});

// The SDK's hooks on a track of the page's: event listeners (counted by
// the DevTools protocol, which sees every listener of an EventTarget) and
// whether `stop` is an own property (the SDK's wrapper).
async function hooks(p, name) {
  const cdp = p.cdp ??= await p.context.newCDPSession(p.page);
  const { result } = await cdp.send('Runtime.evaluate', { expression: `window.${name}` });
  const { listeners } = await cdp.send('DOMDebugger.getEventListeners', { objectId: result.objectId });
  const ownStop = await p.page.evaluate((n) => Object.hasOwn(window[n], 'stop'), name);
  return { listeners: listeners.map((l) => l.type).sort(), ownStop };
}

test('the sender\'s own track: stop() ends it on the far side ("ended"), its source\'s mute shows there; the SDK\'s hooks go with removeTrack and close', async () => {
  const { a, b, ids } = await twoPages();
  await b.page.evaluate(() => window.peer.on('connection', (conn) => window.watch(conn)));
  await a.page.evaluate(async (to) => {
    window.watch(await window.peer.connect(to));
    window.local = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    window.cam = window.local.getVideoTracks()[0];
    window.mic = window.local.getAudioTracks()[0];
    window.conn.addStream(window.local);
  }, ids[1]);
  await b.page.evaluate(async () => {
    await window.until(() => window.remote.length === 2, 'two remote tracks');
    window.cam = window.remote.find((e) => e.track.kind === 'video').track;
    window.mic = window.remote.find((e) => e.track.kind === 'audio').track;
    await window.framesGrow(window.cam);
  });
  const none = { listeners: [], ownStop: false };
  const watched = { listeners: ['ended', 'mute', 'unmute'], ownStop: true };
  assert.deepEqual(await hooks(a, 'cam'), watched);
  assert.deepEqual(await hooks(a, 'mic'), watched);

  // The microphone's source stops producing, then resumes. Chromium's
  // fake device never does that on its own: the track's own `mute` and
  // `unmute` events are dispatched on it, as the browser would.
  await a.page.evaluate(() => window.mic.dispatchEvent(new Event('mute')));
  await b.page.evaluate(() => window.until(() => window.log.some(([e, id]) => e === 'track-muted' && id === window.mic.id), 'track-muted'));
  await a.page.evaluate(() => window.mic.dispatchEvent(new Event('unmute')));
  await b.page.evaluate(() => window.until(() => window.log.some(([e, id]) => e === 'track-unmuted' && id === window.mic.id), 'track-unmuted'));

  // The caller stops its camera (which fires no `ended` on the track
  // itself): the far side's track ends, saying why; the microphone goes on.
  await a.page.evaluate(() => window.cam.stop());
  await b.page.evaluate(() => window.until(() => window.log.some(([e, id]) => e === 'track-ended' && id === window.cam.id), 'track-ended'));
  const far = await b.page.evaluate(() => ({
    ended: window.log.filter(([e]) => e === 'track-ended'),
    mic: window.mic.readyState,
  }));
  assert.deepEqual(far.ended, [['track-ended', await b.page.evaluate(() => window.cam.id), 'ended']]);
  assert.equal(far.mic, 'live');
  // Its sender went: so did the SDK's hooks on it, and `stop` is the
  // track's own again. Removing it now is a named error (it is not sent).
  assert.deepEqual(await hooks(a, 'cam'), none);
  assert.equal(await a.page.evaluate(() => window.cam.readyState), 'ended');
  const again = await a.page.evaluate(() => { try { window.conn.removeTrack(window.cam); return null; } catch (e) { return e.name; } });
  assert.equal(again, 'InvalidArgumentError');

  // removeTrack takes the hooks off the microphone; adding it again puts
  // them back, and closing the connection takes them off for good.
  await a.page.evaluate(() => window.conn.removeTrack(window.mic));
  assert.deepEqual(await hooks(a, 'mic'), none);
  await b.page.evaluate(() => window.until(() => window.log.some(([e, id, why]) => e === 'track-ended' && id === window.mic.id && why === 'removed'), 'the microphone removed'));
  await a.page.evaluate(() => window.conn.addTrack(window.mic, window.local));
  assert.deepEqual(await hooks(a, 'mic'), watched);
  await a.page.evaluate(async () => {
    window.conn.close();
    await window.until(() => window.log.some(([e]) => e === 'close'), 'its own close');
  });
  assert.deepEqual(await hooks(a, 'mic'), none);
  assert.equal(await a.page.evaluate(() => window.mic.readyState), 'live', 'the SDK never stops the user\'s track');
  await b.page.evaluate(() => window.until(() => window.log.some(([e]) => e === 'close'), 'close'));
  await closeAll(a, b);
});

test('a rejected call rejects the caller with CallRejectedError and its reason', async () => {
  const { a, b, ids } = await twoPages();
  await b.page.evaluate(() => window.peer.on('call', (call) => call.reject('busy right now')));
  const err = await a.page.evaluate(async (to) => {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    try {
      await window.peer.call(to, stream);
      return null;
    } catch (e) {
      return { name: e.name, code: e.code, message: e.message, named: window.peerwire.isPeerwireError(e, 'CallRejectedError'), live: stream.getTracks()[0].readyState };
    }
  }, ids[1]);
  assert.equal(err.name, 'CallRejectedError');
  assert.equal(err.code, 'call-rejected');
  assert.match(err.message, /busy right now/);
  assert.ok(err.named);
  assert.equal(err.live, 'live');

  // A peer with no 'call' listener rejects every call by name.
  const c = await openPage(browser, `${broker.url}/index.html`);
  const idc = `media-c-${Math.random().toString(36).slice(2, 8)}`;
  await setUp(c.page, idc, broker.ws);
  const unheard = await a.page.evaluate(async (to) => {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    try { await window.peer.call(to, stream); return null; } catch (e) { return [e.name, e.message]; }
  }, idc);
  assert.equal(unheard[0], 'CallRejectedError');
  assert.match(unheard[1], /no 'call' listener/);
  await closeAll(a, b, c);
});

// peerwire/lite has no media: a full page calling a lite page is refused by
// name, a track the full page sends anyway is negotiated and ignored while
// messages keep flowing, and the lite page's API says where media is.
test('a lite page refuses calls by name, ignores tracks sent to it, and says media is in the full entry', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/lite.html`);
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb] = [`media-full-${suffix}`, `media-lite-${suffix}`];
  await setUp(a.page, ida, broker.ws);
  await setUp(b.page, idb, broker.ws);
  const lite = await b.page.evaluate(() => {
    window.inbox = [];
    window.peer.on('connection', (conn) => {
      window.conn = conn;
      conn.on('message', (m) => { window.inbox.push(m); conn.send(`echo ${m}`); });
    });
    const thrown = (f) => { try { f(); return null; } catch (e) { return [e.name, e.message]; } };
    return {
      call: typeof window.peer.call,
      addTrack: typeof window.peerwire.Connection.prototype.addTrack,
      IncomingCall: typeof window.peerwire.IncomingCall,
      onCall: thrown(() => window.peer.on('call', () => {})),
    };
  });
  assert.deepEqual({ ...lite, onCall: lite.onCall[0] }, { call: 'undefined', addTrack: 'undefined', IncomingCall: 'undefined', onCall: 'InvalidArgumentError' });
  assert.match(lite.onCall[1], /"call" is a media event, and peerwire\/lite has no media: import 'peerwire'/);

  const refused = await a.page.evaluate(async (to) => {
    window.local = await navigator.mediaDevices.getUserMedia({ video: true });
    try { await window.peer.call(to, window.local); return null; } catch (e) { return [e.name, e.message]; }
  }, idb);
  assert.equal(refused[0], 'CallRejectedError');
  assert.match(refused[1], new RegExp(`peer "${idb}" rejected the call: it runs peerwire/lite, which has no media`));

  // The same connection, now with a track: the lite side answers the
  // renegotiation (the browser's own transceiver), shows nothing, and data
  // flows both ways afterwards.
  await a.page.evaluate(async (to) => {
    const conn = await window.peer.connect(to);
    window.watch(conn);
    window.echoes = [];
    conn.on('message', (m) => window.echoes.push(m));
    conn.addTrack(window.local.getVideoTracks()[0], window.local);
  }, idb);
  await a.page.waitForFunction(() => {
    const pc = window.conn.peerConnection;
    return pc.signalingState === 'stable' && pc.getTransceivers().some((t) => t.currentDirection === 'sendonly');
  }, null, { timeout: 20000 });
  await a.page.evaluate(() => window.conn.send('after the track'));
  await a.page.waitForFunction(() => window.echoes.length === 1, null, { timeout: 10000 });
  assert.deepEqual(await a.page.evaluate(() => window.echoes), ['echo after the track']);
  assert.deepEqual(await b.page.evaluate(() => [window.inbox, window.conn.state]), [['after the track'], 'open']);
  await closeAll(a, b);
});

test('both sides add tracks at the same moment, five rounds: every track arrives on both sides, no glare error', async () => {
  const { a, b, ids } = await twoPages();
  await b.page.evaluate(() => window.peer.on('connection', (conn) => window.watch(conn)));
  await a.page.evaluate(async (to) => window.watch(await window.peer.connect(to)), ids[1]);
  await b.page.waitForFunction(() => window.conn?.state === 'open', null, { timeout: 10000 });
  const add = (p) => p.page.evaluate(async () => {
    const s = await navigator.mediaDevices.getUserMedia({ video: true });
    window.mineAll = [...(window.mineAll || []), s];
    window.conn.addTrack(s.getVideoTracks()[0], s);
  });
  for (let round = 1; round <= 5; round++) {
    await Promise.all([add(a), add(b)]);
    for (const p of [a, b]) {
      await p.page.evaluate(async (n) => window.until(() => window.remote.length === n, `${n} remote tracks`), round);
    }
  }
  for (const [side, other] of [[a, b], [b, a]]) {
    const sent = await other.page.evaluate(() => window.mineAll.map((s) => s.id).sort());
    const got = await side.page.evaluate(async () => {
      const frames = [];
      for (const e of window.remote) frames.push(await window.framesGrow(e.track, 5));
      return { ids: window.remote.map((e) => e.streamIds[0]).sort(), frames, state: window.conn.state, log: window.log };
    });
    assert.deepEqual(got.ids, sent);
    assert.equal(got.state, 'open');
    assert.deepEqual(got.log, []);
    assert.ok(got.frames.every((n) => n >= 5), `frames: ${got.frames}`);
  }
  await closeAll(a, b);
});
