// Media glue for the driver (wasm-bindgen imports these): a few property
// walks that cost less as JavaScript than as web-sys bindings.

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
