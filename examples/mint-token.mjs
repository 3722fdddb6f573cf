// Minting peerwire access tokens on your app's server (Node.js, no
// dependencies). The broker checks them when started with the same secret:
//
//   peerwire-broker --auth-secret "$PEERWIRE_AUTH_SECRET" --protect 'staff-*' --protect-room 'staff-*'
//
// A token is an HS256 JWT. Its claims:
//   sub    the one id the holder may register (optional)
//   rooms  rooms the holder may join, exact or with * (optional: any unprotected room)
//   exp    expiry, Unix seconds (required)
//
// Use as a module from your server's login route:
//   import { mintToken } from './mint-token.mjs';
//   res.end(mintToken(process.env.PEERWIRE_AUTH_SECRET, { sub: user.id, rooms: ['lobby'], ttlSeconds: 300 }));
// and in the page:
//   createPeer(userId, { broker, token: () => fetch('/peer-token').then((r) => r.text()) });
//
// Or from a shell:  PEERWIRE_AUTH_SECRET=... node mint-token.mjs alice 'lobby,team-*' 300
import { createHmac } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const base64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 JWT for the broker: `sub` and `rooms` bind what the holder may do. */
export function mintToken(secret, { sub, rooms, ttlSeconds = 300 } = {}) {
  if (!secret || Buffer.byteLength(secret) < 32) {
    throw new Error('the secret must be at least 32 bytes, the same one the broker has in --auth-secret');
  }
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { exp: Math.floor(Date.now() / 1000) + ttlSeconds };
  if (sub !== undefined) claims.sub = sub;
  if (rooms !== undefined) claims.rooms = rooms;
  const payload = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [sub, rooms, ttl] = process.argv.slice(2);
  console.log(mintToken(process.env.PEERWIRE_AUTH_SECRET, {
    sub: sub || undefined,
    rooms: rooms ? rooms.split(',') : undefined,
    ttlSeconds: ttl ? Number(ttl) : 300,
  }));
}
