// smoke's media over rest, in three pages (separate browser contexts) on
// the broker's NetworkHub: node0 serves a test pattern with
// res.mediastream(), node1 fetches it with response.mediastream() and
// serves it again, node2 fetches that and plays it: frames decoded at
// node2 (a <video>'s size and clock, and framesDecoded in the receiver's
// stats), the stream id being node0's all along. The `track` events that
// response.mediastream() waited on stay kept for a `track` listener the
// user attaches afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP);
  browser = await launch(['--autoplay-policy=no-user-gesture-required']);
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('node0 serves a test pattern, node1 proxies it, node2 plays it: frames decoded at node2', async () => {
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await openPage(browser, `${broker.url}/index.html`));
  const suffix = Math.random().toString(36).slice(2, 8);
  const names = [0, 1, 2].map((i) => `cam${i}-${suffix}`);
  for (const [i, p] of pages.entries()) {
    await p.page.evaluate(async ({ ws, name }) => {
      window.node = new window.peerwire.Node({ hub: new window.peerwire.NetworkHub(ws) });
      await window.node.hub.register(name);
      window.app = window.node.rest.createServer();
    }, { ws: broker.ws, name: names[i] });
  }
  const patternId = await pages[0].page.evaluate(async () => {
    window.pattern = window.node.media.createTestPattern({ width: 160, height: 120, frameRate: 20 });
    window.app.get('/live', (req, res) => res.mediastream(window.pattern));
    window.app.get('/text', (req, res) => res.send('not media'));
    await window.app.listen();
    return window.pattern.id;
  });
  const kinds = await pages[0].page.evaluate(() => window.pattern.getTracks().map((t) => t.kind).sort());
  assert.deepEqual(kinds, ['audio', 'video']);

  // node1: fetch from node0, serve it again.
  const atProxy = await pages[1].page.evaluate(async (from) => {
    const r = await window.node.rest.fetch(`rest://${from}/live`);
    window.relayed = await r.mediastream();
    window.app.get('/live', (req, res) => res.mediastream(window.relayed));
    await window.app.listen();
    // A body that is not media is refused by name.
    const plain = await window.node.rest.fetch(`rest://${from}/text`);
    let refused = null;
    try { await plain.mediastream(); } catch (e) { refused = e.name; }
    return { id: window.relayed.id, tracks: window.relayed.getTracks().length, status: r.status, type: r.headers['content-type'], refused };
  }, names[0]);
  assert.deepEqual(atProxy, { id: patternId, tracks: 2, status: 200, type: 'application/vnd.peerwire.mediastream+json', refused: 'InvalidArgumentError' });

  // node2: fetch from node1 and play.
  const played = await pages[2].page.evaluate(async (from) => {
    const r = await window.node.rest.fetch(`rest://${from}/live`);
    const stream = await r.mediastream();
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    video.srcObject = stream;
    // Frames shown: the video's size known and its clock past 0.5 s, woken
    // by the video's own events (20 s at most).
    await new Promise((resolve, reject) => {
      const events = ['loadeddata', 'resize', 'timeupdate'];
      const done = () => { clearTimeout(timer); for (const e of events) video.removeEventListener(e, check); };
      const check = () => { if (video.videoWidth > 0 && video.currentTime > 0.5) { done(); resolve(); } };
      const timer = setTimeout(() => { done(); reject(new Error(`no frames: ${video.videoWidth} ${video.currentTime}`)); }, 20000);
      for (const e of events) video.addEventListener(e, check);
      check();
    });
    const conn = await window.node.connect(from);
    // mediastream() watched the connection's `track` events without taking
    // them: a listener attached now still gets both, kept for it.
    const kept = [];
    const want = stream.getTracks().length;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`kept track events: ${kept.length} of ${want}`)), 5000);
      conn.on('track', (ev) => { kept.push(ev); if (kept.length === want) { clearTimeout(timer); resolve(); } });
    });
    const keptTracks = kept.map((ev) => [ev.track.id, ev.streamIds.join()]).sort();
    const streamTracks = stream.getTracks().map((t) => [t.id, stream.id]).sort();
    const track = stream.getVideoTracks()[0];
    let frames = 0;
    (await conn.peerConnection.getStats(track)).forEach((s) => { if (s.type === 'inbound-rtp') frames += s.framesDecoded || 0; });
    return { id: stream.id, width: video.videoWidth, height: video.videoHeight, frames, keptTracks, streamTracks };
  }, names[1]);
  assert.equal(played.keptTracks.length, 2, 'both track events kept for the later listener');
  assert.deepEqual(played.keptTracks, played.streamTracks);
  assert.equal(played.id, patternId, 'the stream id is node0\'s');
  assert.deepEqual([played.width, played.height], [160, 120]);
  assert.ok(played.frames > 5, `frames decoded at node2: ${played.frames}`);

  for (const p of pages) {
    assert.deepEqual(p.errors, []);
    await p.context.close();
  }
});
