// The PeerJS signalling server (npm `peer`) on a free loopback port; prints
// the port, runs until killed.
import { PeerServer } from 'peer';
const server = PeerServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0), path: '/', allow_discovery: false, concurrent_limit: 100000 });
server.on('listening', () => {});
setTimeout(() => console.log(`peerjs-server ${server.address?.().port ?? process.argv[2]}`), 200);
