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
