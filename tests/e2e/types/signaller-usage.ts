// Must compile under `tsc --strict` with `lib: ["es2020", "dom"]`:
// peerwire/signaller as an app uses it (with simple-peer's shape of signals).
import Default, { Signaller, SignallerError, CLOSE_CODES, isValidHandle } from 'peerwire/signaller';
import type { SignallerCloseEvent, SignallerErrorCode, SignalData, SignallerCloseName } from 'peerwire/signaller';
const s = new Signaller('wss://broker.example.com', 'a_handle');
const t: Signaller = new Default('ws://localhost:8080', { maxBufferedBytes: 4096, token: 'jwt' });
const u = new Signaller('ws://localhost:8080', 'other', { WebSocket });
s.onsignal = (data: SignalData) => {
  if (typeof data === 'string') console.log(JSON.parse(data));
  else console.log(data.byteLength);
};
s.onopen = () => s.signal({ type: 'offer', sdp: 'v=0' });
s.onerror = (e: SignallerError) => {
  const code: SignallerErrorCode = e.code;
  if (e.code === 'listen-timeout' || e.code === 'refused') console.log(code, e.closeCode, e.message);
};
s.onclose = (e: SignallerCloseEvent) => {
  const name: SignallerCloseName = e.name;
  console.log(e.code, name, e.reason, e.wasClean, e.error?.code);
};
s.signal('text');
s.signal(new Uint8Array([1, 2]));
s.signal(new ArrayBuffer(4));
s.signal(null);
s.listen();
t.connect('a_handle');
u.connect();
const state: 'idle' | 'connecting' | 'open' | 'closed' = s.state;
const role: 'listen' | 'connect' | null = s.role;
const waiting: number = s.bufferedBytes;
const named: 'pipe-timeout' = CLOSE_CODES[4001];
const ok: boolean = isValidHandle('a_handle');
console.log(state, role, waiting, named, ok, s.server, s.handle);
s.close();
