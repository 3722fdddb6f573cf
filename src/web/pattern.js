// node.media.createTestPattern(): a MediaStream drawn on a canvas (colour
// bars, a moving line and a frame counter) with a 440 Hz oscillator as its
// audio track (wasm-bindgen imports this; smaller as JavaScript).

export function testPattern(width, height, frameRate) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  const colors = ['#fff', '#ff0', '#0ff', '#0f0', '#f0f', '#f00', '#00f'];
  let frame = 0;
  const draw = () => {
    const w = width / colors.length;
    colors.forEach((c, i) => { g.fillStyle = c; g.fillRect(i * w, 0, w + 1, height); });
    g.fillStyle = '#000';
    g.fillRect((frame * 4) % width, 0, 4, height);
    g.fillRect(0, height - 24, 90, 24);
    g.fillStyle = '#fff';
    g.font = '16px monospace';
    g.fillText(String(frame++), 6, height - 7);
  };
  draw();
  const timer = setInterval(draw, 1000 / frameRate);
  const stream = canvas.captureStream(frameRate);
  let audio = null;
  try {
    audio = new AudioContext();
    const osc = audio.createOscillator();
    osc.frequency.value = 440;
    const gain = audio.createGain();
    gain.gain.value = 0.1;
    const out = audio.createMediaStreamDestination();
    osc.connect(gain).connect(out);
    osc.start();
    out.stream.getAudioTracks().forEach((t) => stream.addTrack(t));
  } catch {
    // No Web Audio here: the pattern is video only.
  }
  // Stopping every track stops the drawing and the oscillator.
  for (const t of stream.getTracks()) {
    const stop = t.stop.bind(t);
    t.stop = () => {
      stop();
      if (stream.getTracks().every((x) => x.readyState === 'ended')) {
        clearInterval(timer);
        if (audio) audio.close();
      }
    };
  }
  return stream;
}

// Resolves the remote stream `find()` returns once it holds `count`
// tracks, checking again on each `track` event of the connection; rejects
// with a ClosedError if the connection closes first. `watch(event, f)` /
// `unwatch(event, f)` are the SDK's own listeners on that connection: they
// see every event without taking the `track` events kept for the user's
// first `conn.on('track')`.
export function streamWhenComplete(watch, unwatch, find, count, peerId) {
  return new Promise((resolve, reject) => {
    const done = () => { unwatch('track', check); unwatch('close', closed); };
    const check = () => {
      const s = find();
      if (s && s.getTracks().length >= count) { done(); resolve(s); return true; }
      return false;
    };
    const closed = ({ reason }) => {
      done();
      reject(Object.assign(new Error(`the connection to "${peerId}" is closed (${reason})`), { name: 'ClosedError', code: 'closed' }));
    };
    if (!check()) { watch('track', check); watch('close', closed); }
  });
}
