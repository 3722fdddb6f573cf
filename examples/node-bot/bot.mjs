// A Node.js peer: a bot that browsers (or other bots) connect to by id.
// It answers text with text, JSON with JSON, bytes with their length and
// checksum, and sends every stream back to its sender, chunk by chunk.
//
//   npm install peerwire node-datachannel ws
//   node bot.mjs ws://localhost:8080 echo-bot
//
// Node.js has no WebRTC and (before version 22) no WebSocket: the `rtc` and
// `WebSocket` options hand peerwire the implementations from npm.
import * as rtc from 'node-datachannel/polyfill';
import { WebSocket } from 'ws';
import { createPeer } from 'peerwire';

const [broker = 'ws://localhost:8080', id = 'echo-bot'] = process.argv.slice(2);
const peer = await createPeer(id, { broker, rtc, WebSocket });

/** Adler-32 of some bytes: enough for a page to check what arrived. */
function checksum(bytes) {
  let a = 1, b = 0;
  for (const x of bytes) { a = (a + x) % 65521; b = (b + a) % 65521; }
  return (b * 65536 + a) >>> 0;
}

peer.on('connection', (conn) => {
  console.log(`connection from ${conn.peerId}`);
  conn.on('message', (msg) => {
    const reply = typeof msg === 'string' ? `echo: ${msg}`
      : msg instanceof Uint8Array ? { bytes: msg.length, checksum: checksum(msg) }
      : { echo: msg };
    conn.send(reply).catch((e) => console.error(`reply to ${conn.peerId} failed: ${e.message}`));
  });
  conn.on('stream', async (stream) => {
    // Listeners are plain functions: a promise nobody awaits must not
    // reject unhandled (Node.js would exit), so each send has its catch.
    const failed = (e) => console.error(`stream ${stream.name} of ${conn.peerId}: ${e.message}`);
    let back;
    try {
      back = await conn.openStream(`${stream.name}-back`);
    } catch (e) {
      failed(e);
      stream.close();
      return;
    }
    stream.on('message', (chunk) => back.send(chunk).catch(failed));
    // The sender is done: end both sides, so both streams close and free
    // their places on the connection.
    stream.on('end', () => {
      back.end().catch(failed);
      stream.end().catch(failed);
    });
  });
  conn.on('close', () => console.log(`${conn.peerId} left`));
});

// Stop cleanly on Ctrl-C or SIGTERM: the broker frees the id at once.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => { await peer.close(); process.exit(0); });
}
console.log(`bot ${peer.id} ready on ${broker}`);
