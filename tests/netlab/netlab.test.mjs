// The NAT lab: two Chromiums, each in a client network namespace behind its
// own NAT router (nftables), a broker and a TURN server (coturn) in a
// "public" namespace. Each scenario builds the network afresh (lab.sh), runs
// two pages of the npm package through it, and asserts the path ICE took,
// from conn.stats(). Root only; every namespace is removed at the end, also
// on failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { launch } from '../e2e/harness.mjs';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const LAB = join(HERE, 'lab.sh');
// tests/run.sh passes the prefix, to tear the lab down also if this process dies.
const PREFIX = process.env.NETLAB_PREFIX || `pwl${process.pid % 100000}`;
const PUB = '203.0.113.1';
const BROKER_PORT = 8080;
const TURN_PORT = 3479;
const TURN_SECRET = 'lab-secret-' + Math.random().toString(36).slice(2);
const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let dir;
const procs = new Set();
const report = [];

function lab(...args) {
  return run('bash', [LAB, args[0], PREFIX, ...args.slice(1)]);
}

/** Starts `cmd` inside namespace `ns`; the pid is the command's own (ip netns exec execs it). */
function spawnIn(ns, cmd, args, opts = {}) {
  const proc = spawn('ip', ['netns', 'exec', `${PREFIX}-${ns}`, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  procs.add(proc);
  proc.on('exit', () => procs.delete(proc));
  proc.output = '';
  for (const s of [proc.stdout, proc.stderr]) s?.on('data', (d) => { proc.output = (proc.output + d).slice(-20000); });
  return proc;
}

async function stop(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  await once(proc, 'exit');
}

/** Waits until something in namespace `ns` listens on TCP `port` (coturn prints no line for it). */
async function listening(ns, port, proc) {
  const until = Date.now() + 15000;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`exited before listening:\n${proc.output}`);
    const { stdout } = await run('ip', ['netns', 'exec', `${PREFIX}-${ns}`, 'ss', '-Hltn', `sport = :${port}`]);
    if (stdout.trim()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port} in ${ns}:\n${proc.output}`);
}

async function startTurn() {
  const proc = spawnIn('pub', 'turnserver', [
    '-n', '--listening-ip', PUB, '--relay-ip', PUB, '--listening-port', String(TURN_PORT),
    '--use-auth-secret', '--static-auth-secret', TURN_SECRET, '--realm', 'peerwire.lab',
    '--no-tls', '--no-dtls', '--no-cli', '--log-file', 'stdout', '--simple-log',
    '--pidfile', join(dir, 'turn.pid'),
  ]);
  await listening('pub', TURN_PORT, proc);
  return proc;
}

async function startBroker(iceServers, extra = []) {
  const args = ['--host', PUB, '--port', String(BROKER_PORT), '--static', PEERWIRE_APP, '--turn-secret', TURN_SECRET];
  for (const url of iceServers) args.push('--ice-server', url);
  const proc = spawnIn('pub', PEERWIRE_BROKER_BIN, [...args, ...extra], { env: { ...process.env, RUST_LOG: 'warn' } });
  const lines = createInterface({ input: proc.stdout });
  const exited = once(proc, 'exit').then(() => { throw new Error(`the broker exited:\n${proc.output}`); });
  const first = once(lines, 'line');
  await Promise.race([first, exited]);
  return proc;
}

/** Chromium inside client namespace `side` (a wrapper enters the namespace). */
async function browserIn(side) {
  const wrapper = join(dir, `chromium-${side}`);
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${PREFIX}-${side} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return launch([], wrapper);
}

async function openPage(browser) {
  const page = await (await browser.newContext()).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`http://${PUB}:${BROKER_PORT}/index.html`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  return { page, errors };
}

/**
 * The network as `kinds` says, coturn, a broker handing out `iceServers`,
 * and a browser in each client namespace. `body` gets the two pages.
 */
async function scenario({ kinds, iceServers }, body) {
  await lab('up', ...kinds);
  const turn = await startTurn();
  const broker = await startBroker(iceServers);
  const browsers = [];
  try {
    browsers.push(await browserIn('a'), await browserIn('b'));
    const [a, b] = await Promise.all(browsers.map(openPage));
    await body(a, b);
    assert.deepEqual([...a.errors, ...b.errors].map(String), []);
  } catch (e) {
    e.message += `\n--- broker ---\n${broker.output.slice(-3000)}\n--- coturn ---\n${turn.output.slice(-3000)}`;
    throw e;
  } finally {
    for (const br of browsers) await br.close();
    await stop(broker);
    await stop(turn);
    await lab('down');
  }
}

/**
 * Page b listens; page a connects to it, both exchange 50 numbered messages,
 * and each reports conn.stats(). Resolves { a, b, connectMs }.
 */
async function connectAndExchange(a, b, label) {
  const ws = `ws://${PUB}:${BROKER_PORT}/ws`;
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb] = [`${label}-a-${suffix}`, `${label}-b-${suffix}`];
  const N = 50;
  await b.page.evaluate(async ({ id, ws, N }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
    window.inbox = [];
    window.conn = new Promise((resolve) => peer.on('connection', (conn) => {
      conn.on('message', (m) => window.inbox.push(m));
      resolve(conn);
    }));
    window.reply = async () => {
      const conn = await window.conn;
      for (let i = 0; i < N; i++) await conn.send({ n: i, from: 'b' });
    };
  }, { id: idb, ws, N });
  const connectMs = await a.page.evaluate(async ({ id, ws, to, N }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
    window.inbox = [];
    const t0 = performance.now();
    const conn = await peer.connect(to);
    const ms = performance.now() - t0;
    conn.on('message', (m) => window.inbox.push(m));
    window.conn = conn;
    for (let i = 0; i < N; i++) await conn.send({ n: i, from: 'a' });
    return ms;
  }, { id: ida, ws, to: idb, N });
  await b.page.evaluate(() => window.reply());
  for (const [p, from] of [[a, 'b'], [b, 'a']]) {
    await p.page.waitForFunction((N) => window.inbox.length >= N, N, { timeout: 20000 });
    const inbox = await p.page.evaluate(() => window.inbox);
    assert.deepEqual(inbox, Array.from({ length: N }, (_, n) => ({ n, from })), `page ${from === 'a' ? 'b' : 'a'} got every message in order`);
  }
  const stats = async (p) => p.page.evaluate(async () => {
    const s = await (await window.conn).stats();
    const pairs = [];
    const all = new Map();
    s.report.forEach((x) => all.set(x.id, x));
    for (const x of all.values()) {
      if (x.type !== 'candidate-pair') continue;
      const l = all.get(x.localCandidateId), r = all.get(x.remoteCandidateId);
      pairs.push(`${l.candidateType}/${l.protocol}/${l.relayProtocol}/${l.address}:${l.port} -> ${r.candidateType}/${r.address}:${r.port} ${x.state} nominated=${x.nominated} sent=${x.bytesSent}`);
    }
    delete s.report;
    s.pairs = pairs;
    return s;
  });
  return { a: await stats(a), b: await stats(b), connectMs };
}

function record(name, r) {
  const line = `${name}: route a=${r.a.route} (local ${r.a.localCandidateType}${r.a.relayProtocol ? '/' + r.a.relayProtocol : ''}), b=${r.b.route} (local ${r.b.localCandidateType}${r.b.relayProtocol ? '/' + r.b.relayProtocol : ''}); connect ${r.connectMs.toFixed(0)} ms`;
  report.push(line);
  console.log(`[netlab] ${line}`);
}

// The broker answers STUN itself (on 3478, its default) and hands
// `stun:203.0.113.1:3478` to every client; coturn relays, on 3479.
const TURN_UDP = `turn:${PUB}:${TURN_PORT}?transport=udp`;
const TURN_TCP = `turn:${PUB}:${TURN_PORT}?transport=tcp`;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds the broker and installs the package into an app)');
  assert.equal(process.getuid(), 0, 'the NAT lab makes network namespaces: it runs as root');
  dir = mkdtempSync(join(tmpdir(), 'netlab-'));
});

after(async () => {
  for (const p of [...procs]) await stop(p);
  await lab('down').catch(() => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (report.length) console.log(`[netlab] paths:\n  ${report.join('\n  ')}`);
});

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
    for (const s of [r.a, r.b]) assert.equal(s.route, 'relay', `through TURN, got ${JSON.stringify(s)}`);
    assert.ok([r.a.localCandidateType, r.b.localCandidateType].includes('relay'));
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

