// The runnable examples (examples/), used as their README says: the pages
// served by a real broker with the npm-installed package beside them, two
// pages talking through it; the token server run as a real process beside
// a broker that checks its tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startBroker, launch } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
const EXAMPLES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples');
let site, broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  // examples/ as a user has it after `npm install` of the package.
  site = mkdtempSync(join(tmpdir(), 'peerwire-examples-'));
  cpSync(EXAMPLES, site, { recursive: true });
  cpSync(join(PEERWIRE_APP, 'node_modules', 'peerwire'), join(site, 'node_modules', 'peerwire'), { recursive: true, dereference: true });
  broker = await startBroker(PEERWIRE_BROKER_BIN, site);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  if (site) rmSync(site, { recursive: true, force: true });
});

/**
 * Opens `url` in a browser context of its own and waits until the example
 * says it is online (`#status[data-state]`); fails with what it says instead.
 */
async function open(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(url);
  await page.waitForSelector('#status:not([data-state=connecting])', { timeout: 20000 });
  const state = await page.getAttribute('#status', 'data-state');
  assert.equal(state, 'online', `${url}: ${await page.textContent('#status')}`);
  return { page, context, errors };
}

test('chat: a line typed in one tab arrives in the other, both ways, peer to peer', async () => {
  const room = `chat-${Date.now()}`;
  const alice = await open(`${broker.url}/chat/?name=alice&room=${room}`);
  const bob = await open(`${broker.url}/chat/?name=bob&room=${room}`);
  // Each lists the other with an open connection.
  await alice.page.waitForSelector('#members li[data-id=bob][data-state=open]', { timeout: 20000 });
  await bob.page.waitForSelector('#members li[data-id=alice][data-state=open]', { timeout: 20000 });

  await alice.page.fill('#text', 'hello bob');
  await alice.page.press('#text', 'Enter');
  await bob.page.waitForSelector('#log li:text-is("alice: hello bob")', { timeout: 10000 });
  await bob.page.fill('#text', 'hi alice');
  await bob.page.click('#say button');
  await alice.page.waitForSelector('#log li:text-is("bob: hi alice")', { timeout: 10000 });

  assert.deepEqual(await alice.page.$$eval('#log li', (li) => li.map((l) => l.textContent)), ['alice: hello bob', 'bob: hi alice']);
  assert.deepEqual(await bob.page.$$eval('#log li', (li) => li.map((l) => l.textContent)), ['alice: hello bob', 'bob: hi alice']);
  // A member that leaves drops off the other's list.
  await bob.context.close();
  await alice.page.waitForSelector('#members li[data-id=bob]', { state: 'detached', timeout: 10000 });
  await alice.context.close();
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('file transfer: a 3 MiB file arrives byte-exact, with progress up to its size', async () => {
  const bytes = randomBytes(3 * 1024 * 1024 + 123);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const sender = await open(`${broker.url}/file-transfer/?name=sender`);
  const receiver = await open(`${broker.url}/file-transfer/?name=receiver`);

  // Every progress line the sender's page shows, as it shows it.
  await sender.page.evaluate(() => {
    window.shown = [];
    const out = document.querySelector('#sent');
    new MutationObserver(() => window.shown.push(out.value)).observe(out, { childList: true, characterData: true, subtree: true });
  });
  await sender.page.fill('#to', 'receiver');
  await sender.page.setInputFiles('#file', { name: 'data.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await sender.page.click('#send button');

  const link = await receiver.page.waitForSelector('#received a[download="data.bin"]', { timeout: 30000 });
  const received = await link.evaluate(async (a) => {
    const data = await (await fetch(a.href)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
    return { size: data.byteLength, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
  });
  assert.deepEqual(received, { size: bytes.length, sha256 });

  await sender.page.waitForFunction(() => document.querySelector('#sent').value.startsWith('sent '), null, { timeout: 10000 });
  const shown = await sender.page.evaluate(() => window.shown);
  assert.equal(shown.at(-1), `sent data.bin (${bytes.length} bytes)`);
  const progress = [...new Set(shown.filter((s) => / \/ \d+ bytes$/.test(s)))].map((s) => s.split(' ').map(Number));
  assert.ok(progress.length >= 2, `progress shown during the transfer, not only at its end: ${shown.join(', ')}`);
  for (const [, , total] of progress) assert.equal(total, bytes.length);
  const sent = progress.map(([s]) => s);
  assert.deepEqual(sent, [...sent].sort((a, b) => a - b), 'progress only grows');
  assert.equal(sent.at(-1), bytes.length, 'progress reaches the whole size');
  assert.equal(await sender.page.$eval('#progress', (p) => p.value), bytes.length);

  await sender.context.close();
  await receiver.context.close();
  assert.deepEqual([...sender.errors, ...receiver.errors], []);
});

test('cursors: each pointer move is drawn on the other page, over an unordered unreliable stream', async () => {
  const room = `cursors-${Date.now()}`;
  const a = await open(`${broker.url}/cursors/?name=ann&room=${room}`);
  const b = await open(`${broker.url}/cursors/?name=ben&room=${room}`);

  /** Moves the pointer to (x, y) of `from`'s board and waits for `to` to draw it there. */
  async function moveAndSee(from, fromId, to, x, y) {
    const box = await from.page.locator('#board').boundingBox();
    await from.page.mouse.move(box.x + x * box.width, box.y + y * box.height, { steps: 4 });
    await to.page.waitForFunction(({ id, x, y }) => {
      const el = document.querySelector(`#board .cursor[data-id="${id}"]`);
      return el && Math.abs(parseFloat(el.style.left) - x * 100) < 1 && Math.abs(parseFloat(el.style.top) - y * 100) < 1;
    }, { id: fromId, x, y }, { timeout: 20000 });
    return Number(await to.page.getAttribute(`#board .cursor[data-id="${fromId}"]`, 'data-seq'));
  }

  const first = await moveAndSee(a, 'ann', b, 0.25, 0.75);
  const second = await moveAndSee(a, 'ann', b, 0.8, 0.1);
  assert.ok(second > first, `sequence numbers grow (${first} then ${second})`);
  await moveAndSee(b, 'ben', a, 0.5, 0.5);
  assert.equal(await a.page.locator('#board .cursor').count(), 1, 'one remote cursor on each page');

  await b.context.close();
  await a.page.waitForSelector('#board .cursor[data-id=ben]', { state: 'detached', timeout: 10000 });
  await a.context.close();
  assert.deepEqual([...a.errors, ...b.errors], []);
});

/** Starts examples/token-server/server.mjs (from the site) with `secret`; resolves { url, stop }. */
async function startTokenServer(secret, brokerWs) {
  const proc = spawn(process.execPath, [join(site, 'token-server', 'server.mjs')], {
    env: { ...process.env, PEERWIRE_AUTH_SECRET: secret, PEERWIRE_BROKER: brokerWs, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = await once(createInterface({ input: proc.stdout }), 'line');
  const url = line.match(/^token server on (http:\/\/\S+)$/)?.[1];
  if (!url) throw new Error(`token server printed: ${line}`);
  return { url, stop: async () => { proc.kill('SIGTERM'); await once(proc, 'exit'); } };
}

test('token server: its tokens open protected ids and rooms on a broker with the same secret, and only there', async () => {
  const secret = randomBytes(32).toString('hex');
  const guarded = await startBroker(PEERWIRE_BROKER_BIN, site, ['--auth-secret', secret, '--protect', 'staff-*', '--protect-room', 'staff-*']);
  const other = await startBroker(PEERWIRE_BROKER_BIN, site, ['--auth-secret', randomBytes(32).toString('hex'), '--protect', 'staff-*']);
  const server = await startTokenServer(secret, guarded.ws);
  const wrong = await startTokenServer(secret, other.ws);
  try {
    const { page, context, errors } = await open(`${server.url}?user=staff-alice`);
    assert.equal(await page.textContent('#status'), 'Registered as staff-alice.');
    await page.waitForSelector('#room[data-state]', { timeout: 10000 });
    assert.equal(await page.getAttribute('#room', 'data-state'), 'joined', await page.textContent('#room'));
    assert.match(await page.textContent('#room'), /^Joined staff-room/);

    // A room the token does not list: the broker refuses the join.
    await page.goto(`${server.url}?user=staff-bob&room=ops`);
    await page.waitForSelector('#room[data-state]', { timeout: 20000 });
    assert.equal(await page.getAttribute('#room', 'data-state'), 'error');
    assert.match(await page.textContent('#room'), /^UnauthorizedError \(forbidden\)/);
    await context.close();
    assert.deepEqual(errors, []);

    // The same tokens on a broker with another secret: refused at once.
    const refused = await browser.newPage();
    await refused.goto(`${wrong.url}?user=staff-carol`);
    await refused.waitForSelector('#status:not([data-state=connecting])', { timeout: 20000 });
    assert.equal(await refused.getAttribute('#status', 'data-state'), 'error');
    assert.match(await refused.textContent('#status'), /^UnauthorizedError \(unauthorized\): .*signature/);
    await refused.close();

    // The command line of mint-token.mjs: a token for a page without a token server.
    const cli = spawnSync(process.execPath, [join(site, 'mint-token.mjs'), 'staff-dan', 'staff-*', '60'], {
      env: { ...process.env, PEERWIRE_AUTH_SECRET: secret }, encoding: 'utf8',
    });
    assert.equal(cli.status, 0, cli.stderr);
    const token = cli.stdout.trim();
    const direct = await browser.newPage();
    await direct.goto(`${broker.url}/chat/?name=unused`); // any page with the package
    await direct.waitForSelector('#status[data-state=online]', { timeout: 20000 });
    const joined = await direct.evaluate(async ({ ws, token }) => {
      const { createPeer } = await import('peerwire');
      const peer = await createPeer('staff-dan', { broker: ws, token });
      const room = await peer.join('staff-x');
      return `${peer.id} in ${room.name}`;
    }, { ws: guarded.ws, token });
    assert.equal(joined, 'staff-dan in staff-x');
    await direct.close();

    // A malformed path is a 400, and the server goes on serving.
    assert.equal((await fetch(`${server.url.replace(/\/token-server\/$/, '')}/%`)).status, 400);
    assert.equal((await fetch(`${server.url}?user=staff-erin`)).status, 200);
  } finally {
    await server.stop();
    await wrong.stop();
    await guarded.stop();
    await other.stop();
  }
});
