// Shared by the page-level tests: a broker on a free port serving a folder,
// a Vite dev server, Chromium started from /usr/bin/chromium (never
// downloaded), and two pages of one app exchanging a message.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts `peerwire-broker --port <port> --static dir ...extra`; resolves
 * { url, ws, port, stop }. Without STUN unless `extra` gives a
 * `--stun-port`: several brokers run at once here, and udp/3478 may be taken.
 */
export async function startBroker(binary, dir, extra = [], port = 0) {
  // All test pages connect from 127.0.0.1: raise the per-address limits.
  const stun = extra.includes('--stun-port') ? [] : ['--stun-port', '0'];
  const args = ['--port', String(port), '--static', dir, '--max-connections-per-ip', '10000', '--ip-rate-limit', '100000', '--ip-rate-burst', '100000', ...stun, ...extra];
  const proc = spawn(binary, args, {
    env: { ...process.env, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  const [line] = await once(lines, 'line');
  const url = line.match(/http:\/\/[0-9.:]+/)?.[0];
  if (!url) throw new Error(`broker printed: ${line}`);
  const exited = once(proc, 'exit');
  const end = async (signal) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  return {
    url,
    port: Number(new URL(url).port),
    ws: url.replace('http:', 'ws:') + '/ws',
    stop: () => end('SIGTERM'),
    /** SIGKILL: a crash, with no goodbye to anyone. */
    kill: () => end('SIGKILL'),
  };
}

/**
 * Starts Debian's `redis-server` on a free loopback port without
 * persistence; resolves { url, stop }.
 */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  for await (const line of lines) {
    if (/ready to accept connections/i.test(line)) break;
  }
  lines.on('line', () => {});
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => { proc.kill('SIGTERM'); await once(proc, 'exit'); },
  };
}

/** Chromium with the test flags (`executable`: a wrapper, e.g. one that enters a network namespace). */
export async function launch(extraArgs = [], executable = process.env.CHROMIUM || '/usr/bin/chromium') {
  return chromium.launch({ executablePath: executable, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

/** A page in its own browser context, loaded and initialised. */
export async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(url);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  return { page, context, errors };
}

/** A TCP port nothing listens on right now. */
export async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Starts the Vite dev server installed in `appDir` (run by node directly, so
 * the pid is Vite's) on a free port; resolves { url, stop }. (Vite 7 and
 * older read `--port 0` as "the default port".)
 */
export async function startVite(appDir) {
  const port = String(await freePort());
  const proc = spawn(process.execPath, [join(appDir, 'node_modules', 'vite', 'bin', 'vite.js'), '--port', port, '--strictPort', '--host', '127.0.0.1'], {
    cwd: appDir,
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(proc, 'exit').then(([code]) => { throw new Error(`vite exited with ${code} before listening`); });
  const lines = createInterface({ input: proc.stdout });
  const listening = (async () => {
    for await (const line of lines) {
      const url = line.match(/Local:\s+(http:\/\/\S+)/)?.[1];
      if (url) return url;
    }
    throw new Error('vite printed no Local: URL');
  })();
  const url = await Promise.race([listening, exited]);
  lines.on('line', () => {}); // keep draining its output
  return {
    url: url.replace(/\/$/, ''),
    stop: async () => { proc.kill('SIGTERM'); await once(proc, 'exit'); },
  };
}

/**
 * Two pages of `url` (separate browser contexts) each call
 * `window.peerwire.createPeer` through the broker at `ws`; the first sends
 * the second a message over WebRTC. Asserts the message arrived and no page
 * threw; resolves the two pages' `window.peerwire` export names.
 */
export async function exchangeBetweenPages(browser, url, ws, label) {
  const a = await openPage(browser, url);
  const b = await openPage(browser, url);
  const [ida, idb] = ['a', 'b'].map((p) => `${label}-${p}-${Math.random().toString(36).slice(2, 8)}`);
  try {
    await b.page.evaluate(async ({ id, ws }) => {
      const peer = await window.peerwire.createPeer(id, { broker: ws });
      window.got = new Promise((resolve) => peer.on('message', resolve));
    }, { id: idb, ws });
    const state = await a.page.evaluate(async ({ id, ws, to }) => {
      const peer = await window.peerwire.createPeer(id, { broker: ws });
      const conn = await peer.connect(to);
      await conn.send({ via: 'webrtc', from: id });
      return conn.state;
    }, { id: ida, ws, to: idb });
    assert.equal(state, 'open');
    assert.deepEqual(await b.page.evaluate(() => window.got), { from: ida, message: { via: 'webrtc', from: ida } });
    assert.deepEqual([...a.errors, ...b.errors], []);
    return await a.page.evaluate(() => Object.keys(window.peerwire).sort());
  } finally {
    await a.context.close();
    await b.context.close();
  }
}

/**
 * Two pages, each a `Node` on the broker at `broker.ws` (with `options`
 * for the Node, e.g. `{ relay: 'always' }`): one serves rest and a socket
 * port under a fresh hostname, the other fetches and connects. Asserts the
 * answers and that no page threw.
 */
export async function restAndSocketBetweenNodes(browser, broker, options = {}) {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const host = `svc-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await b.page.evaluate(async ({ ws, host, options }) => {
      const { Node, NetworkHub } = window.peerwire;
      const node = new Node({ hub: new NetworkHub(ws), ...options });
      window.node = node;
      await node.hub.register(host);
      const app = node.rest.createServer();
      app.get('/hello/:name', (req, res) => res.json({ hello: req.params.name, from: req.from }));
      await app.listen();
      await node.sockets.createServer((s) => s.on('message', (m) => s.send('echo ' + m))).listen(9000);
    }, { ws: broker.ws, host, options });
    const out = await a.page.evaluate(async ({ ws, host, options }) => {
      const { Node, NetworkHub } = window.peerwire;
      const node = new Node({ hub: new NetworkHub(ws), ...options });
      const r = await node.rest.fetch(`rest://${host}/hello/page-a`);
      const body = await r.json();
      const socket = await node.sockets.connect(host, 9000);
      const reply = new Promise((resolve) => socket.on('message', resolve));
      await socket.send('over a socket');
      return { status: r.status, body, me: await node.address(), reply: await reply };
    }, { ws: broker.ws, host, options });
    assert.equal(out.status, 200);
    assert.deepEqual(out.body, { hello: 'page-a', from: out.me });
    assert.equal(out.reply, 'echo over a socket');
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await a.context.close();
    await b.context.close();
  }
}

// A test file's broker (serving the installed app, PEERWIRE_APP) and
// Chromium: started before its tests, stopped after them. `set(broker,
// browser)` hands them to the file once started.
export function useBrokerAndBrowser(set, { browserArgs = [] } = {}) {
  let broker, browser;
  before(async () => {
    const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
    assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
    broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP);
    browser = await launch(browserArgs);
    set(broker, browser);
  });
  after(async () => {
    await browser?.close();
    await broker?.stop();
  });
}
