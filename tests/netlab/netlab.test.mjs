// The NAT lab: two Chromiums, each in a client network namespace behind its
// own NAT router (nftables), a broker and a TURN server (coturn) in a
// "public" namespace. Each scenario builds the network afresh (lab.sh), runs
// two pages of the npm package through it, and asserts the path it took,
// from conn.stats(). Root only; every namespace is removed at the end, also
// on failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BROKER_PORT, PUB, TURN_TCP, TURN_UDP, connectAndExchange, lab, record, report, scenario, setUp, tearDown,
} from './lab.mjs';

before(setUp);
after(tearDown);

test('both behind endpoint-independent NAT: a direct path through the NAT mappings found with the broker\'s STUN, not TURN', async () => {
  // No TURN server is configured: the only STUN answers come from the broker.
  await scenario({ kinds: ['eim', 'eim'], iceServers: [] }, async (a, b) => {
    const r = await connectAndExchange(a, b, 'eim');
    record('endpoint-independent NAT both sides', r);
    for (const s of [r.a, r.b]) {
      assert.ok(['srflx', 'prflx'].includes(s.route), `a direct path through the NATs, got ${JSON.stringify(s)}`);
      assert.notEqual(s.localCandidateType, 'relay');
      assert.notEqual(s.remoteCandidateType, 'relay');
    }
  });
});

test('both behind symmetric NAT: relayed by TURN with the credentials the broker issued', async () => {
  await scenario({ kinds: ['symmetric', 'symmetric'], iceServers: [TURN_UDP] }, async (a, b) => {
    const r = await connectAndExchange(a, b, 'sym');
    record('symmetric NAT both sides', r);
    // Every byte goes through coturn, but not always through each side's own
    // allocation: with symmetric NATs Chrome may send from a peer-reflexive
    // address straight to the other side's relay address (TURN permissions
    // are per IP), so each side's pair has a relay candidate at one end or
    // the other. What must never happen is a pair with no relay at either.
    for (const s of [r.a, r.b]) {
      assert.equal(s.route, 'relay', `through TURN, got ${JSON.stringify(s)}`);
      assert.ok([s.localCandidateType, s.remoteCandidateType].includes('relay'), `a relay candidate in the pair, got ${JSON.stringify(s)}`);
    }
  });
});

test('UDP dropped on one side: TURN over TCP', async () => {
  await scenario({ kinds: ['noudp', 'eim'], iceServers: [TURN_UDP, TURN_TCP] }, async (a, b) => {
    const r = await connectAndExchange(a, b, 'noudp');
    record('UDP dropped at a, TURN over TCP', r);
    assert.equal(r.a.localCandidateType, 'relay', `a relays, got ${JSON.stringify(r.a)}`);
    assert.equal(r.a.relayProtocol, 'tcp', `a reaches TURN over TCP, got ${JSON.stringify(r.a)}`);
    assert.equal(r.b.route, 'relay');
  });
});

test('coturn refuses TURN credentials that the broker did not issue', async () => {
  await scenario({ kinds: ['eim', 'eim'], iceServers: [TURN_UDP] }, async (a) => {
    const result = await a.page.evaluate(async ({ url }) => {
      // The same expiry:id form, signed with another secret.
      const username = `${Math.floor(Date.now() / 1000) + 600}:mallory`;
      const pc = new RTCPeerConnection({ iceServers: [{ urls: url, username, credential: 'bm90IHRoZSBzZWNyZXQ=' }], iceTransportPolicy: 'relay' });
      const errors = [];
      const relays = [];
      pc.onicecandidateerror = (e) => errors.push(e.errorCode);
      pc.onicecandidate = (e) => { if (e.candidate) relays.push(e.candidate.type); };
      const done = new Promise((resolve) => { pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve(); });
      pc.createDataChannel('x');
      await pc.setLocalDescription();
      await done;
      pc.close();
      return { errors, relays };
    }, { url: TURN_UDP });
    assert.deepEqual(result.relays, [], 'no relay candidate with forged credentials');
    assert.ok(result.errors.includes(401), `coturn answered 401, got ${JSON.stringify(result.errors)}`);
  });
});

test('a client moves to a new address mid-session: ICE restarts, the connection survives, nothing is lost or reordered', async () => {
  await scenario({ kinds: ['eim', 'eim'], iceServers: [TURN_UDP] }, async (a, b) => {
    const ws = `ws://${PUB}:${BROKER_PORT}/ws`;
    const suffix = Math.random().toString(36).slice(2, 8);
    // 'move-a' sorts first: a is the side that restarts ICE; b asks it to.
    const [ida, idb] = [`move-a-${suffix}`, `move-b-${suffix}`];
    for (const [p, id] of [[a, ida], [b, idb]]) {
      await p.page.evaluate(async ({ id, ws }) => {
        const peer = await window.peerwire.createPeer(id, { broker: ws, debug: 'info' });
        window.peer = peer;
        window.inbox = [];
        window.closedWith = null;
        window.logs = [];
        const keep = console.info.bind(console);
        console.info = (...args) => { window.logs.push(args.join(' ')); keep(...args); };
        const keepWarn = console.warn.bind(console);
        console.warn = (...args) => { window.logs.push(args.join(' ')); keepWarn(...args); };
        const hook = (conn) => {
          window.conn = conn;
          conn.on('message', (m) => window.inbox.push(m));
          conn.on('close', (e) => { window.closedWith = String(e?.reason ?? e); });
        };
        peer.on('connection', hook);
        window.hook = hook;
        // Sends numbered messages, one every 20 ms, until told to stop.
        window.pump = async () => {
          window.sending = true;
          let n = 0;
          while (window.sending) {
            await window.conn.send({ n: n++, from: window.peer.id });
            await new Promise((r) => setTimeout(r, 20));
          }
          return n;
        };
      }, { id, ws });
    }
    await a.page.evaluate(async (to) => window.hook(await window.peer.connect(to)), idb);
    await b.page.waitForFunction(() => !!window.conn, null, { timeout: 10000 });
    const pumps = [a, b].map((p) => p.page.evaluate(() => window.pump()));
    // A pump that fails fails this test where it is awaited, not later.
    for (const p of pumps) p.catch(() => {});
    const count = (p) => p.page.evaluate(() => window.inbox.length);
    const waitMore = async (p, than, ms) => {
      await p.page.waitForFunction((than) => window.inbox.length > than, than, { timeout: ms });
    };
    await waitMore(a, 20, 5000);
    await waitMore(b, 20, 5000);
    const moves = [];
    for (const side of ['a', 'b']) {
      const before = await Promise.all([count(a), count(b)]);
      const t0 = Date.now();
      const { stdout } = await lab('move', side);
      // Both directions flow again: each page receives messages sent after the move.
      await waitMore(a, before[0] + 25, 40000);
      await waitMore(b, before[1] + 25, 40000);
      moves.push(`${side} moved to ${stdout.trim()}: both directions flowing again after ${Date.now() - t0} ms`);
    }
    await Promise.all([a, b].map((p) => p.page.evaluate(() => { window.sending = false; })));
    const sent = await Promise.all(pumps);
    for (const [p, from, n] of [[a, idb, sent[1]], [b, ida, sent[0]]]) {
      await p.page.waitForFunction((n) => window.inbox.length >= n, n, { timeout: 20000 });
      const inbox = await p.page.evaluate(() => window.inbox);
      assert.deepEqual(inbox, Array.from({ length: n }, (_, k) => ({ n: k, from })), 'every message once, in order');
    }
    const states = await Promise.all([a, b].map((p) => p.page.evaluate(() => ({ state: window.conn.state, closed: window.closedWith }))));
    assert.deepEqual(states, [{ state: 'open', closed: null }, { state: 'open', closed: null }]);
    const logs = await a.page.evaluate(() => window.logs.filter((l) => /restart|path|network/i.test(l)));
    assert.ok(logs.some((l) => /ICE restart 1/.test(l)), `a restarted ICE: ${logs.join('\n')}`);
    for (const m of moves) { report.push(m); console.log(`[netlab] ${m}`); }
    report.push(`messages through both moves: ${sent[0]} a→b, ${sent[1]} b→a, none lost or reordered`);
  });
});


test('UDP cut for good mid-stream, no TURN: after the ICE restarts the live connection moves to the broker relay, nothing lost or reordered; the video it carried ends by name', async () => {
  await scenario({ kinds: ['eim', 'eim'], iceServers: [] }, async (a, b) => {
    const ws = `ws://${PUB}:${BROKER_PORT}/ws`;
    const suffix = Math.random().toString(36).slice(2, 8);
    const [ida, idb] = [`cut-a-${suffix}`, `cut-b-${suffix}`];
    for (const [p, id] of [[a, ida], [b, idb]]) {
      await p.page.evaluate(async ({ id, ws }) => {
        // directRetry 0: UDP stays cut, so no direct path is tried again.
        const peer = await window.peerwire.createPeer(id, { broker: ws, debug: 'warn', directRetry: 0 });
        window.peer = peer;
        window.inbox = [];
        window.closedWith = null;
        window.media = { tracks: [], ended: [], errors: [] };
        const hook = (conn) => {
          window.conn = conn;
          conn.on('message', (m) => window.inbox.push(m));
          conn.on('close', (e) => { window.closedWith = String(e?.reason ?? e); });
          conn.on('track', ({ track }) => window.media.tracks.push(track.id));
          conn.on('track-ended', ({ track, reason }) => window.media.ended.push([track.id, reason]));
          conn.on('error', (e) => window.media.errors.push([e.name, e.code]));
        };
        peer.on('connection', hook);
        window.hook = hook;
        window.pump = async () => {
          window.sending = true;
          let n = 0;
          while (window.sending) {
            await window.conn.send({ n: n++, from: window.peer.id });
            await new Promise((r) => setTimeout(r, 20));
          }
          return n;
        };
      }, { id, ws });
    }
    await a.page.evaluate(async (to) => window.hook(await window.peer.connect(to)), idb);
    await b.page.waitForFunction(() => !!window.conn, null, { timeout: 10000 });
    const route = (p) => p.page.evaluate(async () => (await window.conn.stats()).route);
    const direct = await route(a);
    assert.notEqual(direct, 'broker', 'direct before the cut');
    // a sends a canvas's video: it reaches b on the direct path.
    await a.page.evaluate(() => {
      const c = document.createElement('canvas');
      c.width = 64; c.height = 48;
      const g = c.getContext('2d');
      let n = 0;
      window.drawing = setInterval(() => { g.fillStyle = n++ % 2 ? '#0f0' : '#f0f'; g.fillRect(0, 0, 64, 48); }, 40);
      window.video = c.captureStream(25);
      window.conn.addTrack(window.video.getVideoTracks()[0], window.video);
    });
    await b.page.waitForFunction(() => window.media.tracks.length === 1, null, { timeout: 10000 });
    const pumps = [a, b].map((p) => p.page.evaluate(() => window.pump()));
    for (const p of pumps) p.catch(() => {});
    const count = (p) => p.page.evaluate(() => window.inbox.length);
    await a.page.waitForFunction(() => window.inbox.length > 20, null, { timeout: 5000 });
    await b.page.waitForFunction(() => window.inbox.length > 20, null, { timeout: 5000 });
    const t0 = Date.now();
    await lab('drop-udp', 'a');
    // keepAliveTimeout (4 s), three ICE restarts of 5 s, then the relay pair.
    const deadline = Date.now() + 40000;
    while ((await route(a)) !== 'broker' || (await route(b)) !== 'broker') {
      assert.ok(Date.now() < deadline, 'both sides on the relay within 40 s');
      await new Promise((r) => setTimeout(r, 250));
    }
    const moved = Date.now() - t0;
    const before = await Promise.all([count(a), count(b)]);
    await a.page.waitForFunction((n) => window.inbox.length > n, before[0] + 25, { timeout: 20000 });
    await b.page.waitForFunction((n) => window.inbox.length > n, before[1] + 25, { timeout: 20000 });
    await Promise.all([a, b].map((p) => p.page.evaluate(() => { window.sending = false; })));
    const sent = await Promise.all(pumps);
    for (const [p, from, n] of [[a, idb, sent[1]], [b, ida, sent[0]]]) {
      await p.page.waitForFunction((n) => window.inbox.length >= n, n, { timeout: 20000 });
      const inbox = await p.page.evaluate(() => window.inbox);
      assert.deepEqual(inbox, Array.from({ length: n }, (_, k) => ({ n: k, from })), 'every message once, in order');
    }
    const states = await Promise.all([a, b].map((p) => p.page.evaluate(() => ({ state: window.conn.state, closed: window.closedWith }))));
    assert.deepEqual(states, [{ state: 'open', closed: null }, { state: 'open', closed: null }]);
    // The relay carries no media: b's remote video ended, saying why, and
    // each side's connection said its media stopped (without closing).
    const media = await Promise.all([a, b].map((p) => p.page.evaluate(() => window.media)));
    assert.deepEqual(media[1].ended, [[media[1].tracks[0], 'relay']]);
    for (const m of media) assert.deepEqual(m.errors, [['MediaUnavailableError', 'media-unavailable']]);
    assert.deepEqual(media[0].ended, []);
    assert.equal(await a.page.evaluate(() => { clearInterval(window.drawing); return window.video.getVideoTracks()[0].readyState; }), 'live');
    const m = `UDP cut at a mid-stream (route ${direct} before): both on the broker relay ${moved} ms later; ${sent[0]} messages a→b, ${sent[1]} b→a, none lost or reordered; the video a sent ended at b with reason 'relay', MediaUnavailableError on both connections`;
    report.push(m);
    console.log(`[netlab] ${m}`);
  });
});

test('UDP dropped and no TURN: the connection falls back to the broker relay; messages, a stream and a 3 MiB message get through', async () => {
  await scenario({ kinds: ['noudp', 'eim'], iceServers: [] }, async (a, b) => {
    const r = await connectAndExchange(a, b, 'relay');
    record('UDP dropped at a, no TURN: broker relay', r);
    assert.equal(r.a.route, 'broker', JSON.stringify(r.a));
    assert.equal(r.b.route, 'broker', JSON.stringify(r.b));
    assert.ok(r.a.bytesSent > 0 && r.a.bytesReceived > 0);
    await b.page.evaluate(() => {
      window.streamed = new Promise((resolve) => window.conn.then((conn) => conn.on('stream', (s) => {
        const got = [];
        s.on('message', (m) => { got.push(m); if (got.length === 3) resolve(got); });
      })));
    });
    await a.page.evaluate(async () => {
      const s = await window.conn.openStream('over-the-relay');
      for (const m of ['one', 'two', 'three']) await s.send(m);
      const bytes = new Uint8Array(3 * 1024 * 1024);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
      window.big = window.conn.send(bytes);
    });
    const t0 = Date.now();
    assert.deepEqual(await b.page.evaluate(() => window.streamed), ['one', 'two', 'three']);
    await b.page.waitForFunction(() => window.inbox.length >= 51, null, { timeout: 30000, polling: 10 });
    const took = Date.now() - t0;
    await a.page.evaluate(() => window.big);
    const ok = await b.page.evaluate(() => {
      const m = window.inbox[50];
      if (!(m instanceof Uint8Array) || m.length !== 3 * 1024 * 1024) return `got ${m?.constructor?.name} of ${m?.length}`;
      for (let i = 0; i < m.length; i++) if (m[i] !== ((i * 7) & 0xff)) return `byte ${i} differs`;
      return 'ok';
    });
    assert.equal(ok, 'ok');
    report.push(`broker relay: 3 MiB delivered in ${took} ms (${(3 / (took / 1000)).toFixed(1)} MiB/s; the broker's default --relay-rate is 4 MiB/s)`);
  });
});
