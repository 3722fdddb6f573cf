// Must NOT compile: each line below is a mistake the types catch.
import { createPeer, Node } from 'peerwire';
import { NetworkHub } from 'peerwire/lite';
async function misuse(): Promise<void> {
  const peer = await createPeer('a', { brokr: 'ws://x' });
  peer.on('mesage', () => {});
  const conn = await peer.connect('b');
  conn.on('close', (e) => e.reasn);
  new Node({ hub: 42 });
  await createPeer('b', { broker: 'ws://x', token: 7 });
}
misuse();
