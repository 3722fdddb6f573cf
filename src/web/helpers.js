// The JavaScript the driver and the handles import (wasm-bindgen copies this
// file into the package as one snippet). Plain JavaScript where it is smaller
// than the same walk through web-sys bindings.
//
// Keep the SDK's JavaScript in two files, this one (every build) and
// helpers_full.js (the full build): each file is a module the page fetches on
// its own, and wasm-bindgen-test-runner's file server (tiny_http) loses a
// connection when Chromium opens more than three at once, which hangs the
// browser tests for five minutes (tests/run.sh checks the count).

// The bytes of a binary value, as a Uint8Array over them (no copy): an
// ArrayBuffer or SharedArrayBuffer (also from another realm: an iframe's),
// or any view; null for anything else; the TypeError for a detached buffer
// (transferred to a worker, say), which no view can be made over.
export function byteView(v) {
  try {
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const tag = Object.prototype.toString.call(v);
    if (tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]') return new Uint8Array(v);
  } catch (e) {
    return e;
  }
  return null;
}

// WHATWG streams over a peerwire Stream: one of each per stream.
const readables = new WeakMap();
const writables = new WeakMap();

// Pulls: when its queue is full (16 messages) it asks the SDK to hold the
// stream's next messages (counted against connectionBudget, like messages
// nobody listens to), and lets them come again when the reader pulls.
// Messages and `end` keep their order either way.
export function readableFrom(stream) {
  let readable = readables.get(stream);
  if (readable) return readable;
  let done = false;
  readable = new ReadableStream({
    start(controller) {
      const finish = () => { if (!done) { done = true; controller.close(); } };
      try {
        stream.on('message', (m) => {
          if (done) return;
          controller.enqueue(m);
          if (controller.desiredSize <= 0) stream._hold(true);
        });
        stream.on('end', finish);
        stream.on('close', finish);
        stream.on('error', (e) => { if (!done) { done = true; controller.error(e); } });
      } catch (e) {
        // Closed already (ClosedError): the reader learns it.
        done = true;
        controller.error(e);
      }
    },
    pull() {
      if (!done) stream._hold(false);
    },
    cancel() {
      done = true;
      stream.close();
    },
  }, { highWaterMark: 16 });
  readables.set(stream, readable);
  return readable;
}

export function writableTo(stream) {
  let writable = writables.get(stream);
  if (!writable) {
    writable = new WritableStream({
      write(chunk) { return stream.send(chunk); },
      close() { return stream.end(); },
      abort() { stream.close(); },
    });
    writables.set(stream, writable);
  }
  return writable;
}

// A ReadableStream of body chunks pulled from a rest BodyReader.
export function readableFromReader(reader) {
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel() { reader.cancel(); },
  });
}

// An async iterable over a rest record set: each step pulls one record.
export function recordsFromReader(reader) {
  return {
    [Symbol.asyncIterator]() {
      return {
        next: () => reader.nextRecord(),
        return: async () => { reader.cancel(); return { done: true, value: undefined }; },
      };
    },
  };
}

// Iterates any async (or sync) iterable: returns a function giving the next
// { done, value } as a Promise.
export function iterate(source) {
  const it = source[Symbol.asyncIterator] ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  return () => Promise.resolve(it.next());
}

// conn.stats(): a summary of RTCPeerConnection.getStats().

// The broker socket's `error` events: the `close` event after each says
// what happened, but Node's `ws` throws an `error` nobody listens to, and
// the process exits (a broker down, a reconnect refused, a socket closed
// while connecting). The listener stays after the SDK lets go of a socket.
export function quiet(ws) {
  ws.onerror = () => {};
  return ws;
}

// With `debug` at 'info' or above: a connection's ICE states, and the
// candidate errors that show a STUN or TURN server failing (browsers also
// report an unreachable server once per network interface). The listeners
// go with the RTCPeerConnection.
export function watchIce(pc, prefix) {
  if (!pc.addEventListener) return;
  pc.addEventListener('iceconnectionstatechange', () => console.info(`${prefix}: ICE connection state ${pc.iceConnectionState}`));
  pc.addEventListener('icegatheringstatechange', () => console.info(`${prefix}: ICE gathering state ${pc.iceGatheringState}`));
  pc.addEventListener('icecandidateerror', (e) =>
    console.warn(`${prefix}: ICE candidate error ${e.errorCode} ${e.errorText ?? ''} from ${e.url ?? '?'} (local ${e.address ?? '?'}:${e.port ?? '?'})`));
}

export async function connectionStats(pc) {
  const report = await pc.getStats();
  const all = new Map();
  report.forEach((s) => all.set(s.id, s));
  let pair, transport;
  for (const s of all.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      transport = s;
      pair = all.get(s.selectedCandidatePairId);
    }
  }
  if (!pair) {
    for (const s of all.values()) {
      if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) { pair = s; break; }
    }
  }
  const local = pair && all.get(pair.localCandidateId);
  const remote = pair && all.get(pair.remoteCandidateId);
  const kinds = [local && local.candidateType, remote && remote.candidateType];
  const route = !pair ? null
    : kinds.includes('relay') ? 'relay'
    : kinds.includes('srflx') ? 'srflx'
    : kinds.includes('prflx') ? 'prflx'
    : 'host';
  const rtt = pair && pair.currentRoundTripTime;
  return {
    route,
    localCandidateType: (local && local.candidateType) || null,
    remoteCandidateType: (remote && remote.candidateType) || null,
    protocol: (local && local.protocol) || null,
    relayProtocol: (local && local.candidateType === 'relay' && local.relayProtocol) || null,
    rtt: typeof rtt === 'number' ? rtt * 1000 : null,
    // The transport's counts go on across ICE restarts; a pair's start
    // again with each new pair.
    bytesSent: (transport && transport.bytesSent) || (pair && pair.bytesSent) || 0,
    bytesReceived: (transport && transport.bytesReceived) || (pair && pair.bytesReceived) || 0,
    report,
  };
}

// Options: checked here and handed to the wasm as one array
// (src/api/options.rs reads it). Every refusal is a message the wasm
// throws as an InvalidArgumentError (docs/ERRORS.md).

// What each option must be: 'm' milliseconds, 'b' bytes, a number n (a
// whole number up to n), 'o' a boolean, 's' a string, 'l' an array, 'sl' a
// string or an array, 'd' a log level, 'r' a relay policy, '' anything
// (read below).
const PEER_FIELDS = {
  broker: 'sl', id: 's', iceServers: 'l', maxMessageSize: 'b', connectTimeout: 'm',
  requestTimeout: 'm', keepAliveInterval: 'm', keepAliveTimeout: 'm', iceRestarts: 100,
  iceRestartTimeout: 'm', disconnectedGrace: 'm', brokerKeepAlive: 'm', ordered: 'o',
  maxRetransmits: 65535, bufferHigh: 'b', bufferLow: 'b', memoryBudget: 'b',
  connectionBudget: 'b', maxStreams: 65535, maxConnections: 65535, closeTimeout: 'm',
  maxOffersPerMinute: 1e6, debug: 'd', relay: 'r', relayAfter: 'm', resendBuffer: 'b',
  directRetry: 'm', token: '', rtc: '', WebSocket: '', rtcConfig: '',
};
// The numeric options (a boolean, level or policy is a number too), in
// PEER_FIELDS' order: that of `Num` in src/api/options.rs.
const NUMS = Object.keys(PEER_FIELDS).filter((k) => !['sl', 's', 'l', ''].includes(PEER_FIELDS[k]));
// Each log level and relay policy as the number the wasm reads.
const LEVELS = { off: 0, error: 1, warn: 2, info: 3, debug: 4 };
const RELAYS = { fallback: 0, always: 1, never: 2 };

const set = (v) => v !== undefined && v !== null;
const isObject = (v) => typeof v === 'object' && v !== null;

// How a value reads in a message: `the string "soon"`, `the number 1`.
function describe(v) {
  const t = typeof v;
  return t === 'string' ? `the string "${v}"`
    : t === 'boolean' || t === 'number' ? `the ${t} ${t === 'number' ? JSON.stringify(v) : v}`
    : Array.isArray(v) ? 'an array'
    : t === 'function' ? 'a function'
    : isObject(v) ? 'an object'
    : t;
}

function expects(want) {
  return typeof want === 'number' ? `a whole number from 0 to ${want}`
    : { m: 'a number of milliseconds', b: 'a number of bytes', o: 'true or false', s: 'a string',
      l: 'an array', sl: 'a string or an array of strings',
      d: "true, false, 'error', 'warn', 'info' or 'debug'",
      r: "'fallback', 'always' or 'never'" }[want];
}

function accepts(want, v) {
  const t = typeof v;
  if (typeof want === 'number' || want === 'm' || want === 'b') {
    const max = typeof want === 'number' ? want : Number.MAX_SAFE_INTEGER;
    return t === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
  }
  return want === 'o' ? t === 'boolean'
    : want === 's' ? t === 'string'
    : want === 'l' ? Array.isArray(v)
    : want === 'sl' ? t === 'string' || Array.isArray(v)
    : want === 'd' ? t === 'boolean' || (t === 'string' && Object.hasOwn(LEVELS, v))
    : want === 'r' ? t === 'string' && Object.hasOwn(RELAYS, v)
    : true;
}

// Throws (a string) for an options object with a field not in `fields` or
// one of the wrong type; false for no options (undefined or null).
function check(o, what, fields, skip) {
  if (!set(o)) return false;
  if (!isObject(o) || Array.isArray(o)) throw `${what} must be a plain object, got ${describe(o)}`;
  for (const key of Object.keys(o)) {
    if (key !== skip && !Object.hasOwn(fields, key)) {
      throw `${what} has no field "${key}" (known: ${Object.keys(fields).join(', ')})`;
    }
  }
  for (const [name, want] of Object.entries(fields)) {
    const v = o[name];
    if (set(v) && !accepts(want, v)) throw `${what}.${name} must be ${expects(want)}, got ${describe(v)}`;
  }
  return true;
}

// The numbers of `names` in `o`: NaN where unset, a boolean as 0 or 1, a
// log level or relay policy as its number.
function numbers(o, names) {
  return Float64Array.from(names, (name) => {
    const v = o[name];
    return !set(v) ? NaN
      : name === 'debug' ? (typeof v === 'boolean' ? 4 * v : LEVELS[v])
      : name === 'relay' ? RELAYS[v]
      : Number(v);
  });
}

// `ws://host:port` gets the path /ws, `http(s)://` the scheme ws(s)://.
export function brokerUrl(raw) {
  const at = raw.indexOf('://');
  if (at < 0) throw `broker "${raw}" must be a URL such as ws://localhost:8080`;
  const scheme = raw.slice(0, at);
  let rest = raw.slice(at + 3);
  const ws = { ws: 'ws', http: 'ws', wss: 'wss', https: 'wss' };
  if (!Object.hasOwn(ws, scheme)) throw `broker URL scheme "${scheme}" must be ws:// or wss://`;
  const slash = rest.indexOf('/');
  if (slash < 0) rest += '/ws';
  else if (slash === rest.length - 1) rest += 'ws';
  return `${ws[scheme]}://${rest}`;
}

// `createPeer`'s options (`node`: `new Node`'s, where `hub` is an option
// and `broker` is not), checked. Returns
//   [error, late, numbers, brokerUrls, id, iceServers, token, rtc, WebSocket, rtcConfig, hub]
// where `error` is the first refusal's message (the rest unread), `late`
// whether it comes after the id's own check (the wasm checks the id first,
// then throws it), `numbers` a Float64Array in NUMS' order, `iceServers`
// each server as JSON text, `token` a string or a function.
export function peerOptions(o, node) {
  let late = false;
  // (A Node's options that are not an object were read as none.)
  if (node && !isObject(o)) o = undefined;
  try {
    if (!check(o, 'options', PEER_FIELDS, node ? 'hub' : undefined)) {
      if (node) return [undefined, false, numbers({}, NUMS)];
      throw "createPeer needs options with a broker URL: createPeer('alice', { broker: 'ws://localhost:8080' })";
    }
    const ice = o.iceServers;
    const text = (v) => !set(v) || typeof v === 'string';
    const servers = set(ice) ? ice.map((s) => {
      const urls = isObject(s) && s.urls;
      if (!(typeof urls === 'string' || (Array.isArray(urls) && urls.every((u) => typeof u === 'string')))
        || !text(s.username) || !text(s.credential)) {
        throw "options.iceServers must hold objects like { urls: 'stun:host:3478', username?, credential? }";
      }
      return JSON.stringify(s);
    }) : undefined;
    let broker = o.broker;
    if (Array.isArray(broker)) {
      broker.forEach((item, i) => {
        if (typeof item !== 'string') throw `options.broker[${i}] must be a broker URL string, got ${describe(item)}`;
      });
    }
    if (node && set(broker)) throw 'a Node takes its broker from a hub: new Node({ hub: new NetworkHub(url) })';
    late = true;
    const token = o.token;
    if (set(token) && typeof token !== 'string' && typeof token !== 'function') {
      throw 'options.token must be a string, or a function returning a string or a Promise of one';
    }
    let rtc = o.rtc;
    if (set(rtc) && typeof rtc !== 'function') {
      // The constructor itself, or a module/object holding one
      // (`import * as rtc from 'node-datachannel/polyfill'`).
      rtc = rtc.RTCPeerConnection;
      if (typeof rtc !== 'function') {
        throw 'options.rtc must be an RTCPeerConnection constructor or an object with one (e.g. the module node-datachannel/polyfill)';
      }
    }
    const WebSocket = o.WebSocket;
    if (set(WebSocket) && typeof WebSocket !== 'function') {
      throw "options.WebSocket must be a WebSocket constructor (e.g. the ws package's WebSocket)";
    }
    const config = o.rtcConfig;
    if (set(config) && (!isObject(config) || Array.isArray(config))) {
      throw "options.rtcConfig must be an RTCConfiguration object, e.g. { iceTransportPolicy: 'relay' }";
    }
    if (!node && !set(broker)) throw "options.broker is required, e.g. { broker: 'ws://localhost:8080' }";
    if (typeof broker === 'string') broker = [brokerUrl(broker)];
    else if (broker) {
      if (!broker.length) {
        throw "options.broker is an empty array: list at least one broker URL, e.g. ['wss://a.example.com', 'wss://b.example.com']";
      }
      broker = broker.map((raw, i) => {
        try { return brokerUrl(raw); } catch (e) { throw `options.broker[${i}] "${raw}": ${e}`; }
      });
    }
    return [undefined, false, numbers(o, NUMS), broker, o.id, servers, token, rtc, WebSocket, config, o.hub];
  } catch (e) {
    return [String(e), late];
  }
}

// A stream's `{ ordered, maxRetransmits }`: [error] or [undefined, numbers].
export function streamOptions(o) {
  try {
    const given = check(o, 'stream options', { ordered: 'o', maxRetransmits: 65535 });
    return [undefined, numbers(given ? o : {}, ['ordered', 'maxRetransmits'])];
  } catch (e) {
    return [String(e)];
  }
}
