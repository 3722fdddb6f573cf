// Must NOT compile: each line marked with an "error:" comment is a mistake
// the types of peerwire/signaller catch (types.test.mjs checks, as for misuse.ts).
import { Signaller, CLOSE_CODES } from 'peerwire/signaller';
const s = new Signaller('ws://x', 'abc', { maxBuffered: 10 }); // error: 'maxBuffered' does not exist
new Signaller('ws://x', 'abc', { maxBufferedBytes: '1 MiB' }); // error: Type 'string' is not assignable to type 'number'
new Signaller(8080); // error: not assignable to parameter of type 'string'
s.onsignal = (data: string) => data; // error: Type 'SignalData' is not assignable to type 'string'
s.onclose = (e) => e.codeName; // error: Property 'codeName' does not exist
s.onerror = (e) => e.code === 'nobody-listens'; // error: no overlap
s.signal(undefined); // error: not assignable to parameter of type 'SignalInput'
s.listen(42); // error: not assignable to parameter of type 'string'
s.send('x'); // error: Property 'send' does not exist
const code: 4000 = CLOSE_CODES[4000]; // error: Type '"listen-timeout"' is not assignable to type '4000'
s.state = 'open'; // error: read-only property
console.log(code);
