// The JavaScript the driver and the handles import (wasm-bindgen copies this
// file into the package as one snippet). Plain JavaScript where it is smaller
// than the same walk through web-sys bindings.
//
// Keep the SDK's JavaScript in two files, this one (every build) and
// helpers_full.js (the full build): each file is a module the page fetches on
// its own, and wasm-bindgen-test-runner's file server (tiny_http) loses a
// connection when Chromium opens more than three at once, which hangs the
// browser tests for five minutes (tests/run.sh checks the count).

// WHATWG streams over a peerwire Stream.

export function readableFrom(stream) {
  let done = false;
  return new ReadableStream({
    start(controller) {
      const finish = () => { if (!done) { done = true; controller.close(); } };
      stream.on('message', (m) => { if (!done) controller.enqueue(m); });
      stream.on('end', finish);
      stream.on('close', finish);
      stream.on('error', (e) => { if (!done) { done = true; controller.error(e); } });
    },
    cancel() {
      done = true;
      stream.close();
    },
  });
}

export function writableTo(stream) {
  return new WritableStream({
    write(chunk) { return stream.send(chunk); },
    close() { return stream.end(); },
    abort() { stream.close(); },
  });
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

export async function connectionStats(pc) {
  const report = await pc.getStats();
  const all = new Map();
  report.forEach((s) => all.set(s.id, s));
  let pair;
  for (const s of all.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = all.get(s.selectedCandidatePairId);
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
    bytesSent: (pair && pair.bytesSent) || 0,
    bytesReceived: (pair && pair.bytesReceived) || 0,
    report,
  };
}

// Media: a few property walks for the driver.

// The mid of each sender's transceiver (null before one is assigned).
export function senderMids(pc, senders) {
  const all = pc.getTransceivers();
  return senders.map((s) => {
    const t = all.find((x) => x.sender === s);
    return t && t.mid != null ? t.mid : null;
  });
}

// An RTCTrackEvent as [mid, streams]; mid null if the browser gave none.
export function trackEvent(ev) {
  return [ev.transceiver ? ev.transceiver.mid : null, Array.from(ev.streams || [])];
}

// The ids of some MediaStreams.
export function streamIds(streams) {
  return streams.map((s) => String(s.id));
}

// The SDK's watch over a track of the user's that it sends: the track's
// `ended`, `mute` and `unmute` events, and its `stop()`, which fires no
// `ended` (so `stop` gets an own wrapper that reports it). One set of hooks
// per track however many connections send it; the last `unwatchTrack`
// removes them and gives `stop` back.
const watched = new WeakMap();
const TRACK_EVENTS = ['ended', 'mute', 'unmute'];

export function watchTrack(track, report) {
  let w = watched.get(track);
  if (!w) {
    const own = Object.getOwnPropertyDescriptor(track, 'stop');
    const stop = track.stop;
    const reports = new Set();
    const tell = (what) => { for (const r of [...reports]) r(what); };
    w = {
      reports,
      own,
      listener: (ev) => tell(ev.type),
      stop(...args) {
        const live = track.readyState === 'live';
        const out = stop.apply(this, args);
        if (live && track.readyState === 'ended') tell('ended');
        return out;
      },
    };
    for (const t of TRACK_EVENTS) track.addEventListener(t, w.listener);
    Object.defineProperty(track, 'stop', { value: w.stop, configurable: true, writable: true });
    watched.set(track, w);
  }
  w.reports.add(report);
}

export function unwatchTrack(track, report) {
  const w = watched.get(track);
  if (!w || !w.reports.delete(report) || w.reports.size > 0) return;
  for (const t of TRACK_EVENTS) track.removeEventListener(t, w.listener);
  if (track.stop === w.stop) {
    if (w.own) Object.defineProperty(track, 'stop', w.own);
    else delete track.stop;
  }
  watched.delete(track);
}
