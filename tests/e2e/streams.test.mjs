// Many short streams in a row, each answered at once: every message the
// accepting side sends arrives. Page A opens a stream; page B, in its
// 'stream' listener, sends "hello" and answers A's question; A waits for
// both, 300 times. Chromium can lose the first message the accepting side
// sends on a new data channel: under load (two busy loops on the 2-core
// machines) 0 to 5 streams in 300 lost "hello" before streams began with
// the acceptor's `start` frame (docs/PROTOCOL.md, "Frames"), and fewer
// with no load; B's RTCDataChannel.send took it, A's RTCDataChannel
// never fired 'message' for it, and the answer sent a millisecond later
// arrived. Now the lost message is the `start`, and A asks for the rest
// again. A failure prints what B's channel sent and what A's channel
// received, below the SDK.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, useBrokerAndBrowser } from './harness.mjs';

let broker, browser;
useBrokerAndBrowser((b, c) => { broker = b; browser = c; });
const STREAMS = 300;

test('300 short streams in a row: every message the accepting side sends arrives', async () => {
  const a = await openPage(browser, `${broker.url}/index.html`);
  const b = await openPage(browser, `${broker.url}/index.html`);
  const s = Math.random().toString(36).slice(2, 8);
  await b.page.evaluate(async ({ id, ws }) => {
    // What B's channels hand to the browser, by label.
    window.sent = {};
    const send = RTCDataChannel.prototype.send;
    RTCDataChannel.prototype.send = function (d) {
      const text = typeof d === 'string' ? d : new TextDecoder().decode(d).replace(/[^ -~]/g, '.');
      (window.sent[this.label] ||= []).push(`${text} (id ${this.id}, ${this.readyState}, buffered ${this.bufferedAmount})`);
      return send.call(this, d);
    };
    window.peer = await window.peerwire.createPeer(id, { broker: ws });
    window.peer.on('connection', (conn) => conn.on('stream', (st) => {
      st.on('message', (m) => st.send(`reply:${m}`).catch(() => {}));
      st.send(`hello:${st.name}`).catch(() => {});
    }));
  }, { id: `b${s}`, ws: broker.ws });
  const fails = await a.page.evaluate(async ({ id, ws, to, n }) => {
    const peer = await window.peerwire.createPeer(id, { broker: ws });
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
      // Both messages, or the stream's close (a stream that cannot mend
      // a loss closes with ConnectionFailedError); a stream that does
      // neither fails at the test's own timeout.
      let closed = null;
      await new Promise((done) => {
        st.on('message', (m) => { got.push(m); if (got.length === 2) done(); });
        st.on('close', ({ reason }) => { closed = reason; done(); });
        st.send(`q${i}`);
      });
      if (got.length < 2) fails.push({ stream: i, delivered: got, closed, channelReceived: received[`pw:s:s${i}`] });
      st.close();
    }
    return fails;
  }, { id: `a${s}`, ws: broker.ws, to: `b${s}`, n: STREAMS });
  for (const f of fails) {
    f.channelSent = await b.page.evaluate((l) => window.sent[l], `pw:s:s${f.stream}`);
    console.log(JSON.stringify(f));
  }
  assert.deepEqual(fails, [], `${fails.length} of ${STREAMS} streams lost a message`);
});
