// Must compile under `tsc --strict` with `lib: ["es2020", "dom"]` (no esnext):
// the typed surface as an app uses it.
import { createPeer, init, isPeerwireError, Node, PageHub, BroadcastChannelHub, NetworkHub, Database, Query } from 'peerwire';
import initDefault, { initSync } from 'peerwire';
import initManually, { createPeer as createPeerManually } from 'peerwire/manual';
import { createPeer as createLitePeer, isPeerwireError as isLiteError } from 'peerwire/lite';
import type { Peer as LitePeer, Connection as LiteConnection, PeerwireError as LiteError } from 'peerwire/lite';
import type {
  Peer, Connection, Room, Stream, Hub, FetchResponse, PeerwireError, PeerwireErrorName, PeerwireErrorCode,
  MessageEnvelope, StateEvent, NodeSystem, NetworkConnection, PortSystem, DatabaseRecord, TrackEvent, RemoteTrackEvent, TrackEndedEvent, TrackEndReason, IncomingCall,
} from 'peerwire';
async function main(): Promise<void> {
  // No init() needed; it stays for code that calls it, and in peerwire/manual.
  const exports: { memory: WebAssembly.Memory } = await init();
  await initDefault({ module_or_path: new URL('peerwire/peerwire_bg.wasm', import.meta.url) });
  initSync({ module: new Uint8Array(8) });
  await initManually({ module_or_path: fetch('/peerwire_bg.wasm') });
  await createPeerManually({ broker: 'ws://localhost:8080' });
  const lite: LitePeer = await createLitePeer('lite', { broker: 'ws://localhost:8080' });
  const liteConn: LiteConnection = await lite.connect('bob');
  await liteConn.send('x');
  liteConn.on<{ n: number }>('message', (m) => console.log(m.n));
  liteConn.on('error', (e: LiteError) => console.log(isLiteError(e, 'ConnectionFailedError') && e.code === 'connection-failed'));
  console.log(exports.memory.buffer.byteLength);
  const peer: Peer = await createPeer('alice', { broker: 'ws://localhost:8080', maxMessageSize: 1 << 20 });
  peer.on('message', ({ from, message }) => console.log(from.toUpperCase(), message));
  peer.on('connection', (c) => console.log(c.peerId));
  peer.on('error', (e) => console.log(e.name, e.code));
  const conn: Connection = await peer.connect('bob');
  conn.on('close', ({ reason }) => console.log(reason.length));
  await conn.send({ a: 1 }, { onProgress: (s, t) => console.log(s / t) });
  await conn.send(new Uint8Array(3));
  const room: Room = await peer.join('lobby');
  room.on('state', (ev) => console.log(ev.key, ev.removed));
  await room.set('k', 1, { ttl: 10 });
  await room.broadcast('x');
  const online: boolean = await peer.find('bob');
  const fixed = await createPeer('carol', { broker: 'ws://localhost:8080', token: 'eyJ...' });
  const fresh = await createPeer('dave', { broker: 'ws://localhost:8080', token: () => fetch('/t').then((r) => r.text()) });
  const failover: Peer = await createPeer('erin', { broker: ['wss://a.example.com', 'wss://b.example.com'] });
  failover.on('broker', ({ state, url, resumed }) => console.log(state, url?.length, resumed));
  console.log(failover.broker.toUpperCase());
  const key = await fixed.openKey('meet_here');
  key.on('closed', ({ code, reason }) => console.log(code + 1, reason.length));
  fresh.on('unavailable', ({ key, id, code }) => console.log(key, id, code));
  console.log(online, peer.id, room.members.length);
}
main();

// Typed messages: the type you expect the remote to send, per listener.
interface Chat { text: string; at: number }
interface Cursor { x: number; y: number; seq: number }
async function typedMessages(peer: Peer, conn: Connection, room: Room, stream: Stream): Promise<void> {
  conn.on<Chat>('message', (msg) => console.log(msg.text.toUpperCase(), msg.at.toFixed()));
  conn.on('message', (msg: Chat) => console.log(msg.text));
  conn.on('message', (msg) => console.log(msg));
  const onChat = (msg: Chat): void => console.log(msg.at);
  conn.on('message', onChat);
  conn.off('message', onChat);
  stream.on<Cursor>('message', ({ x, y, seq }) => console.log(x + y + seq));
  peer.on<Chat>('message', ({ from, message }: MessageEnvelope<Chat>) => console.log(from, message.text));
  room.on<Cursor>('broadcast', ({ from, data }) => console.log(from, data.x));
  room.on<Cursor>('state', (ev: StateEvent<Cursor>) => {
    if (ev.removed) console.log(ev.key, 'gone:', ev.removed === 'expired' ? 'ttl' : 'deleted');
    else console.log(ev.key, ev.value.x, ev.from.length, ev.ttl);
  });
  const here: Cursor | undefined = room.get<Cursor>('cursor');
  console.log(here?.seq);
  const node = new Node();
  node.on<Chat>('message', ({ message }) => console.log(message.text));
  const r = await node.rest.fetch('rest://svc/chat');
  const chat: Chat = await r.json<Chat>();
  console.log(chat.at);
}
void typedMessages;

// Errors: a union of every name, narrowed by the guard or by `name`.
async function errors(peer: Peer): Promise<void> {
  try {
    await peer.connect('bob');
  } catch (err) {
    if (isPeerwireError(err, 'PeerUnavailableError')) {
      const code: 'unknown-peer' | 'peer-gone' | 'queue-full' | 'unavailable' = err.code;
      console.log('offline', code, err.message);
    } else if (isPeerwireError(err, 'ConnectTimeoutError')) {
      const code: 'connect-timeout' = err.code;
      console.log(code, err.stack);
    } else if (isPeerwireError(err)) {
      const name: PeerwireErrorName = err.name;
      const code: PeerwireErrorCode = err.code;
      if (err.name === 'BrokerError' && err.code === 'room-full') console.log('full');
      if (err.name === 'UnauthorizedError') {
        const why: 'unauthorized' | 'forbidden' = err.code;
        console.log(why);
      }
      console.log(name, code);
    } else {
      throw err;
    }
  }
  peer.on('error', (e: PeerwireError) => {
    switch (e.name) {
      case 'LimitExceededError': { const c: 'limit-exceeded' = e.code; console.log(c); break; }
      case 'ProtocolError': console.log(e.code === 'protocol-error'); break;
      default: console.log(e.name, e.code);
    }
  });
  const one: PeerwireError<'ClosedError'> | undefined = undefined;
  console.log(one, isPeerwireError(new Error('x')), isPeerwireError('not an error', 'ClosedError'));
}
void errors;

async function nodes(): Promise<void> {
  const peer = await createPeer('a', { broker: 'ws://localhost:8080' });
  const conn = await peer.connect('b');
  conn.on('stream', (s: Stream) => s.on('end', () => console.log(s.name)));
  const s = await conn.openStream('chat', { ordered: false, maxRetransmits: 0 });
  await s.send('x'); await s.end();
  const reader = s.readable.getReader(); await reader.read();
  const custom: Hub = { attach: () => 'x', detach: () => {}, send: () => {}, register: () => {}, lookup: async () => 'x' };
  const n = new Node();
  const nodes: Node[] = [n, new Node({ hub: new PageHub() }), new Node({ hub: new BroadcastChannelHub() }), new Node({ hub: new NetworkHub('ws://localhost:8080') }), new Node({ hub: custom, connectTimeout: 1000 })];
  console.log(nodes.length);
  const addr: string = await n.address();
  await n.hub.register('svc'); const found: string = await n.hub.lookup('svc');
  n.sockets.createServer((sock) => sock.on('message', (m) => sock.send(m as string))).listen(7);
  const sock: Stream = await n.sockets.connect(addr, 7, { timeout: 100 });
  const app = n.rest.createServer();
  app.get('/u/:id', (req, res) => { res.status(200).headers['x'] = req.params['id'] ?? ''; return res.json({ q: req.query.q }); }).listen(80);
  app.post('/chat', async (req, res) => { const c = req.json<Chat>(); await res.json({ ok: c.text.length > 0 }); });
  const r: FetchResponse = await n.rest.fetch('rest://svc/u/1', { method: 'POST', body: { a: 1 }, headers: { a: 'b' } });
  console.log(r.status, r.ok, r.headers['content-type'], await r.json(), found, sock.port);
  for await (const rec of r.records() as AsyncIterable<unknown>) console.log(rec);
  // node.system, node.network, the budget option.
  const budgeted = new Node({ maxConnections: 2 });
  const sys: NodeSystem = budgeted.system;
  const port: PortSystem | undefined = sys.ports[0];
  console.log(sys.uptime + sys.bytesIn + sys.bytesOut + sys.connections + sys.maxConnections + sys.connectionsRefused, port?.accepted);
  budgeted.network.bind(9000, (socket: Stream) => socket.on('message', (m) => socket.send(m as string)));
  budgeted.network.unbind(9000);
  const ports: number[] = budgeted.network.ports;
  const links: NetworkConnection[] = budgeted.network.connections;
  for (const l of links) if (l.path === 'broker' || l.state === 'connecting') console.log(l.address, l.initiated, l.streams, ports);
  peer.free(); peer[Symbol.dispose]();
}
interface User extends DatabaseRecord { name: string; role: string }
async function database(n: Node): Promise<void> {
  const db = new Database('users');
  db.insert<User>('users', { key: db.key(), name: 'smith', role: 'admin' });
  db.update('users', { key: 'k', name: 'x', role: 'user' });
  db.delete('users', 'k');
  await db.commit();
  const one: User | undefined = await db.get<User>('users', 'k');
  const keys: string[] = await db.keys('users');
  console.log(one?.name, keys, await db.count('users'), await db.stores(), db.reads, db.pending, db.name);
  n.rest.createServer().get('/users', (req, res) => res.query(db.query<User>('users').where((u) => u.role === 'user'))).listen(5433);
  const response = await n.rest.fetch('rest://svc:5433/users');
  const names: Query<string> = response.query<User>().orderBy((u) => u.name).select((u) => u.name);
  for await (const name of names.skip(1).take(10)) console.log(name.toUpperCase());
  const all: string[] = await names.toArray();
  const first: string | undefined = await names.first();
  const count: number = await new Query([1, 2, 3]).orderByDescending((x) => x).count();
  console.log(all, first, count);
  db.close();
  await Database.drop('users');
}
void database;
nodes();

async function media(): Promise<void> {
  const peer = await createPeer('a', { broker: 'ws://localhost:8080' });
  const cam: MediaStream = await navigator.mediaDevices.getUserMedia({ video: true });
  const conn: Connection = await peer.call('b', cam, { metadata: { topic: 'x' } });
  const track: MediaStreamTrack | undefined = cam.getVideoTracks()[0];
  if (!track) return;
  conn.addTrack(track, cam); conn.addTrack(track, [cam]); conn.addTrack(track);
  conn.addStream(cam); conn.removeStream(cam); conn.removeTrack(track);
  await conn.replaceTrack(track, track); conn.muteTrack(track); conn.muteTrack(track, false);
  conn.on('track', (ev: TrackEvent) => console.log(ev.track.kind, ev.streams[0]?.id, ev.streamIds.join()));
  conn.on('mediastream', (s: MediaStream) => console.log(s.id));
  conn.on('track-ended', ({ track, streams }: RemoteTrackEvent) => console.log(track.id, streams.length));
  conn.on('track-ended', ({ reason }: TrackEndedEvent) => { const r: TrackEndReason = reason; console.log(r === 'relay' || r === 'ended' || r === 'removed'); });
  conn.on('error', (e) => { if (isPeerwireError(e, 'MediaUnavailableError')) console.log(e.code === 'media-unavailable'); });
  conn.on('track-muted', (ev) => console.log(ev.track.muted));
  peer.on('call', (call: IncomingCall) => {
    console.log(call.peerId, call.metadata, call.connection.peerId);
    if (call.peerId === 'x') call.reject('busy'); else call.answer(cam).on('track', () => {});
  });
  try { await peer.call('c', cam); } catch (e) { if (isPeerwireError(e, 'CallRejectedError')) console.log(e.code === 'call-rejected'); }
}
media();
