// The broker relay under many pairs (a script, not a test): PAIRS pairs of
// WebSocket clients on loopback, each pair relaying MIB MiB one way through
// one broker at once, speaking the broker protocol directly (no browser, no
// SDK: this measures the broker). Prints the aggregate throughput, the
// broker's CPU time, and the relay's throughput per broker core (bytes
// relayed per second of the broker's CPU time).
//
//   (cd tests/bench && npm install)   # for `ws`
//   PEERWIRE_BROKER_BIN=target/release/peerwire-broker node tests/bench/relay-pairs.mjs [PAIRS] [MIB]
//
// The clients run on the same machine and take CPU too: on a machine with
// few cores the aggregate figure is bounded by them; the per-core figure is
// the broker's own.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import WebSocket from 'ws';

const PAIRS = Number(process.argv[2] || 50);
const MIB = Number(process.argv[3] || 8);
const BIN = process.env.PEERWIRE_BROKER_BIN || 'target/release/peerwire-broker';
/** Payload bytes per relay frame (the SDK's frames are at most 16 KiB + 5). */
const FRAME = 16 * 1024;
/** A sender waits while its socket holds more than this. */
const HIGH = 1024 * 1024;

/** CPU seconds the process `pid` has used (user + system). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function startBroker() {
  const port = await freePort();
  const big = String(2 ** 40);
  const args = [
    '--port', String(port), '--stun-port', '0',
    '--relay-rate', String(2 ** 30), '--relay-total-rate', String(2 ** 34), '--relay-max-bytes', big,
    '--relay-max-pairs', String(PAIRS + 10), '--relay-max-per-peer', '4',
    '--max-connections-per-ip', String(2 * PAIRS + 10),
    '--ip-rate-limit', '100000', '--ip-rate-burst', '100000',
    // Every client is on loopback, one address: the per-address byte
    // budget (16 MiB) is what many pairs of real clients would have each,
    // and this script's senders do not wait for their receivers as the
    // SDK's windows do.
    '--ip-queued-bytes', big, '--outbound-queue-bytes', String(2 ** 32),
    '--rate-limit', '1000000', '--rate-burst', '1000000',
  ];
  const broker = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the broker at ${BIN} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { broker, url: `ws://127.0.0.1:${port}/ws` };
}

/** Set once the figures are printed: closes after it are expected. */
let finished = false;
/** The broker process, stopped on the way out whatever happens. */
let brokerProcess;

/** A registered client; `next(type)` resolves its next message of that type. */
function client(url, id) {
  const ws = new WebSocket(url);
  ws.binaryType = 'nodebuffer';
  const waiting = new Map();
  ws.on('message', (data, binary) => {
    if (binary) return ws.emit('relayed', data);
    const m = JSON.parse(data.toString());
    if (m.type === 'error' || (m.type === 'relay-closed' && !finished)) console.error(`${id}:`, m);
    waiting.get(m.type)?.(m);
  });
  const next = (type) => new Promise((resolve) => waiting.set(type, resolve));
  ws.on('close', (code, reason) => {
    if (finished) return;
    console.error(`${id}: the broker closed the connection mid-run: ${code} ${reason}`);
    brokerProcess?.kill();
    process.exit(1);
  });
  const ready = new Promise((resolve, reject) => {
    ws.on('open', () => {
      next('registered').then(resolve);
      ws.send(JSON.stringify({ type: 'register', rid: 1, id }));
    });
    ws.on('error', reject);
  });
  return { ws, id, next, ready };
}

async function pair(url, i) {
  const a = client(url, `ra${i}`);
  const b = client(url, `rb${i}`);
  await Promise.all([a.ready, b.ready]);
  const ready = Promise.all([a.next('relay-ready'), b.next('relay-ready')]);
  a.ws.send(JSON.stringify({ type: 'relay', rid: 2, to: b.id }));
  b.ws.send(JSON.stringify({ type: 'relay', rid: 2, to: a.id }));
  await ready;
  return { a, b };
}

/** Sends MIB MiB from a to b; resolves when b has it all. */
function transfer({ a, b }) {
  const total = MIB * 1024 * 1024;
  const to = Buffer.from(b.id);
  const frame = Buffer.concat([Buffer.from([to.length]), to, Buffer.alloc(FRAME, 7)]);
  const header = 1 + to.length;
  const done = new Promise((resolve) => {
    let got = 0;
    b.ws.on('relayed', (data) => {
      got += data.length - header;
      if (got >= total) resolve();
    });
  });
  let sent = 0;
  const pump = () => {
    while (sent < total && a.ws.bufferedAmount < HIGH) {
      a.ws.send(frame);
      sent += FRAME;
    }
    if (sent < total) setTimeout(pump, 1);
  };
  pump();
  return done;
}

const { broker, url } = await startBroker();
brokerProcess = broker;
try {
  const pairs = [];
  for (let i = 0; i < PAIRS; i++) pairs.push(await pair(url, i));
  const cpu0 = cpuSeconds(broker.pid);
  const t0 = performance.now();
  await Promise.all(pairs.map(transfer));
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(broker.pid) - cpu0;
  const mb = (PAIRS * MIB * 1024 * 1024) / 1e6;
  console.log(`relay, ${PAIRS} pairs × ${MIB} MiB one way through one broker (${BIN}):`);
  console.log(`  ${mb.toFixed(0)} MB in ${secs.toFixed(2)} s = ${(mb / secs).toFixed(1)} MB/s in total, ${((mb / secs) / PAIRS).toFixed(2)} MB/s per pair`);
  console.log(`  broker CPU ${cpu.toFixed(2)} s (${((100 * cpu) / secs).toFixed(0)} % of one core) = ${(mb / cpu).toFixed(0)} MB relayed per broker CPU second`);
  finished = true;
  for (const { a, b } of pairs) { a.ws.close(); b.ws.close(); }
} finally {
  broker.kill();
}
