// The NAT lab's machinery, shared by its tests (netlab.test.mjs) and its
// benchmark (bench.mjs): the network (lab.sh), coturn and the broker in the
// public namespace, a Chromium in each client namespace, and two pages of
// the npm package connecting through it all. Root only.
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { createHmac } from 'node:crypto';
import { launch } from '../e2e/harness.mjs';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const LAB = join(HERE, 'lab.sh');
// tests/run.sh passes the prefix, to tear the lab down also if this process dies.
const PREFIX = process.env.NETLAB_PREFIX || `pwl${process.pid % 100000}`;
export const PUB = '203.0.113.1';
export const BROKER_PORT = 8080;
const TURN_PORT = 3479;
const TURN_SECRET = 'lab-secret-' + Math.random().toString(36).slice(2);
const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let dir;
const procs = new Set();
/** Lines for the closing summary. */
export const report = [];

export function lab(...args) {
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

export async function stop(proc) {
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
export async function scenario({ kinds, iceServers, brokerArgs = [] }, body) {
  await lab('up', ...kinds);
  const turn = await startTurn();
  const broker = await startBroker(iceServers, brokerArgs);
  const browsers = [];
  try {
    browsers.push(await browserIn('a'), await browserIn('b'));
    const [a, b] = await Promise.all(browsers.map(openPage));
    await body(a, b, broker);
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
 * Page b listens; page a connects to it (both with `options` for
 * createPeer), both exchange 50 numbered messages, and each reports
 * conn.stats(). Resolves { a, b, connectMs }; the pages keep `window.conn`.
 */
export async function connectAndExchange(a, b, label, options = {}) {
  const ws = `ws://${PUB}:${BROKER_PORT}/ws`;
  const suffix = Math.random().toString(36).slice(2, 8);
  const [ida, idb] = [`${label}-a-${suffix}`, `${label}-b-${suffix}`];
  const N = 50;
  await b.page.evaluate(async ({ id, ws, N, options }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws, ...options });
    window.inbox = [];
    window.conn = new Promise((resolve) => peer.on('connection', (conn) => {
      conn.on('message', (m) => window.inbox.push(m));
      resolve(conn);
    }));
    window.reply = async () => {
      const conn = await window.conn;
      for (let i = 0; i < N; i++) await conn.send({ n: i, from: 'b' });
    };
  }, { id: idb, ws, N, options });
  const connectMs = await a.page.evaluate(async ({ id, ws, to, N, options }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws, ...options });
    window.inbox = [];
    const t0 = performance.now();
    const conn = await peer.connect(to);
    const ms = performance.now() - t0;
    conn.on('message', (m) => window.inbox.push(m));
    window.conn = conn;
    for (let i = 0; i < N; i++) await conn.send({ n: i, from: 'a' });
    return ms;
  }, { id: ida, ws, to: idb, N, options });
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
    s.report?.forEach((x) => all.set(x.id, x));
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

export function record(name, r) {
  const line = `${name}: route a=${r.a.route} (local ${r.a.localCandidateType}${r.a.relayProtocol ? '/' + r.a.relayProtocol : ''}), b=${r.b.route} (local ${r.b.localCandidateType}${r.b.relayProtocol ? '/' + r.b.relayProtocol : ''}); connect ${r.connectMs.toFixed(0)} ms`;
  report.push(line);
  console.log(`[netlab] ${line}`);
}

// The broker answers STUN itself (on 3478, its default) and hands
// `stun:203.0.113.1:3478` to every client; coturn relays, on 3479.
export const TURN_UDP = `turn:${PUB}:${TURN_PORT}?transport=udp`;
export const TURN_TCP = `turn:${PUB}:${TURN_PORT}?transport=tcp`;


/**
 * The ICE servers the broker hands out, with TURN credentials made here the
 * same way (for raw RTCPeerConnections, the benchmark's baseline).
 */
export function iceServersFor(urls) {
  const username = `${Math.floor(Date.now() / 1000) + 3600}:raw`;
  const credential = createHmac('sha1', TURN_SECRET).update(username).digest('base64');
  return [{ urls: `stun:${PUB}:3478` }, ...urls.map((u) => ({ urls: u, username, credential }))];
}

/** Checks the machine and makes the lab's scratch folder. */
export function setUp() {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds the broker and installs the package into an app)');
  assert.equal(process.getuid(), 0, 'the NAT lab makes network namespaces: it runs as root');
  dir = mkdtempSync(join(tmpdir(), 'netlab-'));
}

/** Stops what still runs, removes the namespaces and the scratch folder. */
export async function tearDown() {
  for (const p of [...procs]) await stop(p);
  await lab('down').catch(() => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (report.length) console.log(`[netlab] paths:\n  ${report.join('\n  ')}`);
}
