// Every entry's types under `moduleResolution: node` (node10), which reads
// no `exports` map: package.json's `typesVersions` points each subpath at
// its definitions. A wrong or missing mapping makes the import `any` or an
// error (TS2307); --noImplicitAny and the assignments below catch both.
import { createPeer, type Peer } from 'peerwire';
import { createPeer as createLitePeer, type Connection } from 'peerwire/lite';
import init, { createPeer as createManualPeer } from 'peerwire/manual';
import initLite from 'peerwire/lite/manual';
import { Signaller } from 'peerwire/signaller';

export async function start(): Promise<string> {
  const peer: Peer = await createPeer('a', { broker: 'ws://localhost:8080/ws' });
  const lite = await createLitePeer('b', { broker: 'ws://localhost:8080/ws' });
  const conn: Connection = await lite.connect(peer.id);
  await init();
  await initLite();
  const manual = await createManualPeer('c', { broker: 'ws://localhost:8080/ws' });
  const s = new Signaller('ws://localhost:8080', 'handle');
  s.close();
  // @ts-expect-error: a number is no peer id (fails only if the types are real)
  await lite.connect(42);
  return conn.peerId + manual.id;
}
