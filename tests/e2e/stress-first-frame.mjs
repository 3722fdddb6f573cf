// A reproduction, not part of `npm test` (it fails today): the first
// message the accepting side sends on a new stream is sometimes never
// delivered. Page A opens a stream; page B, in its 'stream' listener, sends
// "hello" and answers A's question; A waits for both. Under load (two busy
// loops on the 2-core machines) 0 to 5 streams in 300 lose "hello": B's
// RTCDataChannel.send took it (readyState 'open', bufferedAmount 0), A's
// RTCDataChannel never fired 'message' for it, and the answer B sent a
// millisecond later on the same ordered channel arrived. It happens with
// SCTP stream ids reused or not (streams left open: ids 49, 97, 225, …),
// and with keep-alive pings off (OPTS below); sending "hello" a task later
// did not stop it either. Each failure prints what B's channel sent and
// what A's channel received, below the SDK. The socket handshake survives
// it (a dialer with no answer opens again: `reopen_dialer`); plain streams
// have no handshake to notice it yet.
//
//   yes >/dev/null & yes >/dev/null &
//   cd tests/e2e && PEERWIRE_BROKER_BIN=… PEERWIRE_APP=… STREAMS=300 node --test stress-first-frame.mjs
//   kill %1 %2
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, useBrokerAndBrowser } from './harness.mjs';

let broker, browser;
useBrokerAndBrowser((b, c) => { broker = b; browser = c; });
const STREAMS = Number(process.env.STREAMS || 300);
// Peer options for both pages, e.g. OPTS='{"keepAliveInterval":60000,"keepAliveTimeout":120000}'.
const OPTS = JSON.parse(process.env.OPTS || '{}');

test('the accepting side\'s first message on a new stream arrives', { timeout: 900000 }, async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const s = Math.random().toString(36).slice(2, 8);
  await b.page.evaluate(async ({ id, ws, OPTS }) => {
    // What B's channels hand to the browser, by label.
    window.sent = {};
    const send = RTCDataChannel.prototype.send;
    RTCDataChannel.prototype.send = function (d) {
      const text = typeof d === 'string' ? d : new TextDecoder().decode(d).replace(/[^ -~]/g, '.');
      (window.sent[this.label] ||= []).push(`${text} (id ${this.id}, ${this.readyState}, buffered ${this.bufferedAmount})`);
      return send.call(this, d);
    };
    window.peer = await window.peerwire.createPeer(id, { broker: ws, ...OPTS });
    window.peer.on('connection', (conn) => conn.on('stream', (st) => {
      st.on('message', (m) => st.send(`reply:${m}`).catch(() => {}));
      st.send(`hello:${st.name}`).catch(() => {});
    }));
  }, { id: `b${s}`, ws: broker.ws, OPTS });
  const fails = await a.page.evaluate(async ({ id, ws, to, n, OPTS }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws, ...OPTS });
    const conn = await peer.connect(to);
    // What A's channels receive from the browser, by label.
    const received = {};
    const pc = conn.peerConnection;
    const create = pc.createDataChannel.bind(pc);
    pc.createDataChannel = (label, init) => {
      const dc = create(label, init);
      const got = (received[label] = []);
      dc.addEventListener('message', (e) => got.push(typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data).replace(/[^ -~]/g, '.')));
      return dc;
    };
    const fails = [];
    for (let i = 0; i < n; i++) {
      const st = await conn.openStream(`s${i}`);
      const got = [];
      await new Promise((done) => {
        st.on('message', (m) => { got.push(m); if (got.length === 2) done(); });
        setTimeout(done, 3000);
        st.send(`q${i}`);
      });
      if (got.length < 2) fails.push({ stream: i, delivered: got, channelReceived: received[`pw:s:s${i}`] });
      st.close();
    }
    return fails;
  }, { id: `a${s}`, ws: broker.ws, to: `b${s}`, n: STREAMS, OPTS });
  for (const f of fails) {
    f.channelSent = await b.page.evaluate((l) => window.sent[l], `pw:s:s${f.stream}`);
    console.log(JSON.stringify(f));
  }
  assert.deepEqual(fails, [], `${fails.length} of ${STREAMS} streams lost a message`);
});
