// Benchmarks in the NAT lab (a script, not a test): connect time and
// throughput per path (direct through NAT, TURN over UDP, TURN over TCP,
// the broker's relay), and the relay's throughput per broker core (bytes
// relayed per second of the broker's CPU time). Root only.
//
//   PEERWIRE_BROKER_BIN=… PEERWIRE_APP=… node tests/netlab/bench.mjs [MiB]
import { readFileSync } from 'node:fs';
import { TURN_TCP, TURN_UDP, connectAndExchange, iceServersFor, scenario, setUp, tearDown } from './lab.mjs';

const MIB = Number(process.argv[2] || 16);

/** CPU seconds the process `pid` has used (user + system). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Sends `MIB` MiB from page a to page b in 64 KiB messages; resolves MB/s. */
async function throughput(a, b) {
  await b.page.evaluate((total) => {
    window.bulk = new Promise((resolve) => {
      let got = 0;
      let t0 = null;
      window.conn.then((conn) => conn.on('message', (m) => {
        if (!(m instanceof Uint8Array)) return;
        t0 ??= performance.now();
        got += m.length;
        if (got >= total) resolve(performance.now() - t0);
      }));
    });
  }, MIB * 1024 * 1024);
  await a.page.evaluate(async (n) => {
    const chunk = new Uint8Array(64 * 1024).fill(1);
    for (let i = 0; i < n * 16; i++) await window.conn.send(chunk);
  }, MIB);
  const ms = await b.page.evaluate(() => window.bulk);
  return (MIB * 1024 * 1024) / 1e6 / (ms / 1000);
}

/**
 * The baseline: a raw RTCPeerConnection pair between the same two pages over
 * the same network, signalled by this script, 64 KiB messages with
 * bufferedAmount flow control. Resolves MB/s (the path it took: its stats).
 */
async function rawThroughput(a, b, iceServers) {
  const offer = await a.page.evaluate(async (iceServers) => {
    const pc = new RTCPeerConnection({ iceServers });
    window.raw = { pc, dc: pc.createDataChannel('raw') };
    await pc.setLocalDescription();
    await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
    return pc.localDescription.toJSON();
  }, iceServers);
  const answer = await b.page.evaluate(async ({ iceServers, offer, total }) => {
    const pc = new RTCPeerConnection({ iceServers });
    window.raw = { pc };
    window.rawDone = new Promise((resolve) => {
      pc.ondatachannel = ({ channel }) => {
        let got = 0;
        let t0 = null;
        channel.onmessage = (e) => {
          t0 ??= performance.now();
          got += e.data.byteLength ?? e.data.size;
          if (got >= total) resolve(performance.now() - t0);
        };
      };
    });
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription();
    await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
    return pc.localDescription.toJSON();
  }, { iceServers, offer, total: MIB * 1024 * 1024 });
  await a.page.evaluate(async ({ answer, n }) => {
    const { pc, dc } = window.raw;
    await pc.setRemoteDescription(answer);
    if (dc.readyState !== 'open') await new Promise((r) => { dc.onopen = r; });
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = 256 * 1024;
    const chunk = new Uint8Array(64 * 1024).fill(2);
    for (let i = 0; i < n * 16; i++) {
      if (dc.bufferedAmount > 1024 * 1024) await new Promise((r) => { dc.onbufferedamountlow = r; });
      dc.send(chunk);
    }
  }, { answer, n: MIB });
  const ms = await b.page.evaluate(() => window.rawDone);
  await a.page.evaluate(() => window.raw.pc.close());
  await b.page.evaluate(() => window.raw.pc.close());
  return (MIB * 1024 * 1024) / 1e6 / (ms / 1000);
}

const paths = [
  { name: 'direct (srflx)', kinds: ['eim', 'eim'], iceServers: [] },
  { name: 'TURN over UDP', kinds: ['symmetric', 'symmetric'], iceServers: [TURN_UDP] },
  { name: 'TURN over TCP', kinds: ['noudp', 'eim'], iceServers: [TURN_UDP, TURN_TCP] },
  {
    name: 'broker relay',
    kinds: ['noudp', 'eim'],
    iceServers: [],
    options: { relay: 'always' },
    // The relay's own caps out of the way: this measures the broker.
    brokerArgs: ['--relay-rate', String(2 ** 30), '--relay-total-rate', String(2 ** 30), '--relay-max-bytes', String(2 ** 40)],
  },
];

setUp();
const rows = [];
try {
  for (const p of paths) {
    await scenario(p, async (a, b, broker) => {
      const r = await connectAndExchange(a, b, 'bench', p.options);
      const cpu0 = broker ? cpuSeconds(broker.pid) : 0;
      const mbps = await throughput(a, b);
      const cpu = broker ? cpuSeconds(broker.pid) - cpu0 : 0;
      const relay = p.name === 'broker relay';
      const perCore = relay && cpu > 0 ? `${((MIB * 1024 * 1024) / 1e6 / cpu).toFixed(0)} MB per broker CPU second` : '';
      const raw = relay ? null : await rawThroughput(a, b, iceServersFor(p.iceServers));
      const ratio = raw ? `${raw.toFixed(1)} MB/s | ${(mbps / raw).toFixed(2)}×` : `— | ${perCore}`;
      rows.push(`| ${p.name} | ${r.a.route} | ${r.connectMs.toFixed(0)} ms | ${mbps.toFixed(1)} MB/s | ${ratio} |`);
      console.log(rows.at(-1));
    });
  }
} finally {
  await tearDown();
}
console.log(`\nNAT lab, ${MIB} MiB one way in 64 KiB messages; the raw channel is the baseline on the same path in the same run:\n| path | route | connect + first message | peerwire | raw data channel | ratio |\n|---|---|---|---|---|---|\n${rows.join('\n')}`);
