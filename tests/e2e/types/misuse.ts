// Must NOT compile. Each line marked with an "error:" comment is a mistake the
// types catch: tsc must report an error on that line containing the text after it, and
// no error anywhere else (types.test.mjs checks both).
import { createPeer, isPeerwireError, Node, Database } from 'peerwire';
import type { Connection, Room, Stream, PeerwireError } from 'peerwire';
import { NetworkHub } from 'peerwire/lite'; // error: has no exported member 'NetworkHub'
import { IncomingCall } from 'peerwire/lite'; // error: has no exported member 'IncomingCall'
import type { Peer as LitePeer, Connection as LiteConnection } from 'peerwire/lite';
interface Chat { text: string }
async function misuse(conn: Connection, room: Room, stream: Stream, caught: unknown, emitted: PeerwireError): Promise<void> {
  const peer = await createPeer('a', { brokr: 'ws://x' }); // error: 'brokr' does not exist
  peer.on('mesage', () => {}); // error: "mesage"
  conn.on('close', (e) => e.reasn); // error: 'reasn' does not exist
  new Node({ hub: 42 }); // error: Type 'number' is not assignable to type 'Hub | NetworkHub | undefined'
  await createPeer('b', { broker: 'ws://x', token: 7 }); // error: Type 'number' is not assignable to type 'string | (() => string | Promise<string>)'
  await createPeer('c', { broker: ['ws://a', 7] }); // error: Type 'number' is not assignable to type 'string'
  await createPeer('d'); // error: Argument of type 'string' is not assignable to parameter of type 'PeerOptions'
  conn.on<Chat>('message', (msg) => msg.txt); // error: Property 'txt' does not exist on type 'Chat'
  stream.on<Chat>('message', (msg: number) => msg); // error: Type 'Chat' is not assignable to type 'number'
  conn.on<Chat>('close', () => {}); // error: "close"
  room.on<number>('state', (ev) => ev.value.toFixed()); // error: 'ev.value' is possibly 'undefined'
  if (isPeerwireError(caught, 'ConnectTimeout')) return; // error: "ConnectTimeout"
  if (isPeerwireError(caught, 'ConnectTimeoutError') && caught.code === 'unknown-peer') return; // error: no overlap
  if (emitted.name === 'ClosedErr') return; // error: no overlap
  if (emitted.code === 'closd') return; // error: no overlap
  const code: 'closed' = emitted.code; // error: is not assignable to type '"closed"'
  await peer.call('b', 'not a stream'); // error: Argument of type 'string' is not assignable to parameter of type 'MediaStream'
  conn.on('track', (ev: MediaStream) => ev); // error: Type 'TrackEvent' is missing
  conn.on('track-ended', ({ reason }) => reason === 'stopped'); // error: no overlap
  console.log(code, caught.message); // error: 'caught' is of type 'unknown'
  const db = new Database('d');
  db.insert('users', { name: 'no key' }); // error: does not exist in type 'DatabaseRecord'
  db.query<{ key: string; n: number }>('s').where((r) => r.m); // error: Property 'm' does not exist
  const n: number = new Node().system.uptme; // error: 'uptme' does not exist
  if (isPeerwireError(caught, 'DatabaseError') && caught.code === 'quota') return; // error: no overlap
}
void misuse;
// peerwire/lite has no media: no calls, no tracks, no media events.
async function liteMisuse(peer: LitePeer, conn: LiteConnection, stream: MediaStream): Promise<void> {
  await peer.call('b', stream); // error: Property 'call' does not exist on type 'Peer'
  peer.on('call', () => {}); // error: "call"
  conn.addTrack(stream.getTracks()[0]!, stream); // error: Property 'addTrack' does not exist on type 'Connection'
  conn.on('track', () => {}); // error: "track"
}
void liteMisuse;
