// Drives bench.html in headless Chromium (system Chromium, never downloaded)
// and prints BENCH lines: connect medians and 64 MiB throughput for raw
// WebRTC, peerwire and PeerJS, measured in one page, one run; live messages
// behind a bulk transfer, and small messages per second, against raw channels.
import { chromium } from 'playwright-core';

const { BENCH_URL, BROKER_WS, PEERJS_PORT } = process.env;
const RUNS = Number(process.env.PEERWIRE_BENCH_RUNS || 20);
const MIB = 1024 * 1024;
const SIZE = 64 * MIB;
const ROUNDS = Number(process.env.PEERWIRE_BENCH_ROUNDS || 3);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
page.on('pageerror', (e) => console.error('page error:', e.message));
await page.goto(BENCH_URL);
await page.waitForFunction(() => window.ready === true, null, { timeout: 30000 });
page.setDefaultTimeout(600000);

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const mbs = (ms) => (SIZE / 1e6 / (ms / 1000)).toFixed(1);

const c = await page.evaluate(({ runs, ws, port }) => window.bench.connectTimes(runs, ws, { host: '127.0.0.1', port }), { runs: RUNS, ws: BROKER_WS, port: Number(PEERJS_PORT) });
console.log(`BENCH connect (median of ${RUNS}): raw in-page pair ${c.raw.toFixed(1)} ms | ` +
  `peerwire connect+first message ${c.pwWarm.toFixed(1)} ms, createPeer x2 -> first message ${c.pwCold.toFixed(1)} ms | ` +
  `PeerJS connect+first message ${c.pjWarm.toFixed(1)} ms, new Peer x2 -> first message ${c.pjCold.toFixed(1)} ms | ` +
  `peerwire/raw ${(c.pwWarm / c.raw).toFixed(2)}, peerwire/PeerJS ${(c.pwWarm / c.pjWarm).toFixed(2)} (cold ${(c.pwCold / c.pjCold).toFixed(2)})`);

const times = { raw: [], peerwire: [], peerjs: [] };
for (let i = 0; i < ROUNDS; i++) {
  times.raw.push(await page.evaluate((n) => window.bench.rawThroughput(n), SIZE));
  times.peerwire.push(await page.evaluate(({ ws, n }) => window.bench.pwThroughput(ws, n), { ws: BROKER_WS, n: SIZE }));
  try {
    times.peerjs.push(await page.evaluate(({ port, n }) => window.bench.pjThroughput('127.0.0.1', port, n), { port: Number(PEERJS_PORT), n: SIZE }));
  } catch (e) {
    console.log(`BENCH PeerJS 64 MiB failed: ${e.message.split('\n')[0]}`);
  }
}
const [raw, pw] = [median(times.raw), median(times.peerwire)];
const pj = times.peerjs.length ? median(times.peerjs) : NaN;
console.log(`BENCH throughput 64 MiB (median of ${ROUNDS}): raw ${mbs(raw)} MB/s | peerwire ${mbs(pw)} MB/s | PeerJS ${Number.isNaN(pj) ? 'failed' : mbs(pj) + ' MB/s'} | ` +
  `peerwire/raw ${(raw / pw).toFixed(2)}, peerwire/PeerJS ${Number.isNaN(pj) ? 'n/a' : (pj / pw).toFixed(2)}`);

// Live data behind bulk: small messages on one stream while another stream
// of the same connection sends 32 MiB; raw: two data channels of one pair.
const HOL = { bulk: 32 * MIB, pings: Number(process.env.PEERWIRE_BENCH_PINGS || 200), gap: 5 };
const fmt = (s) => `median ${s.median.toFixed(1)} ms, p95 ${s.p95.toFixed(1)} ms, max ${s.max.toFixed(1)} ms`;
const hr = await page.evaluate((o) => window.bench.rawHol(o.bulk, o.pings, o.gap), HOL);
const hp = await page.evaluate((o) => window.bench.pwHol(o.ws, o.bulk, o.pings, o.gap), { ...HOL, ws: BROKER_WS });
console.log(`BENCH live behind bulk (${HOL.pings} small messages, one per ${HOL.gap} ms, while 32 MiB go on another channel): ` +
  `raw ${fmt(hr)} | peerwire ${fmt(hp)} | p95 peerwire/raw ${(hp.p95 / hr.p95).toFixed(2)} (target <= 2)`);

// Small messages per second, one stream (channel), 100 B and 1 KiB.
for (const [size, count] of [[100, 20000], [1024, 20000]]) {
  const r = [], w = [];
  for (let i = 0; i < ROUNDS; i++) {
    r.push(await page.evaluate(({ size, count }) => window.bench.rawSmall(size, count), { size, count }));
    w.push(await page.evaluate(({ ws, size, count }) => window.bench.pwSmall(ws, size, count), { ws: BROKER_WS, size, count }));
  }
  const [mr, mw] = [median(r), median(w)];
  console.log(`BENCH small messages ${size} B x ${count} (median of ${ROUNDS}): raw ${Math.round(mr)} msg/s | ` +
    `peerwire ${Math.round(mw)} msg/s | peerwire/raw ${(mw / mr).toFixed(2)} (target >= 0.9)`);
}
await browser.close();
