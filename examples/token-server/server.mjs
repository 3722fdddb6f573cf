// Your app's server, reduced to what peerwire needs from it: it serves the
// app's pages and mints each signed-in user a short-lived access token for
// the broker (an HS256 JWT, see ../mint-token.mjs). The broker checks the
// tokens with the same secret and never calls this server.
//
//   PEERWIRE_AUTH_SECRET=$(openssl rand -hex 32)
//   peerwire-broker --auth-secret "$PEERWIRE_AUTH_SECRET" --protect 'staff-*' --protect-room 'staff-*'
//   PEERWIRE_AUTH_SECRET=... PEERWIRE_BROKER=ws://127.0.0.1:8080/ws node examples/token-server/server.mjs
//   open http://127.0.0.1:3000/token-server/?user=staff-alice
//
// Environment: PEERWIRE_AUTH_SECRET (required, the broker's --auth-secret),
// PEERWIRE_BROKER (the broker URL handed to the page), PORT (3000; 0 picks
// a free one). The first line printed is `token server on <url>`.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintToken } from '../mint-token.mjs';

const secret = process.env.PEERWIRE_AUTH_SECRET;
const broker = process.env.PEERWIRE_BROKER ?? 'ws://127.0.0.1:8080/ws';
const port = Number(process.env.PORT ?? 3000);
// The examples folder: the pages, and node_modules/peerwire beside them.
const root = fileURLToPath(new URL('..', import.meta.url));
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

mintToken(secret, {}); // fails at start, not at the first request, if the secret is missing or short

/**
 * The user this request is signed in as. A stand-in: a real app reads its
 * own session cookie here, never a query parameter.
 */
function signedInUser(url) {
  const user = url.searchParams.get('user');
  return user && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(user) ? user : null;
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/peer-token') {
    const user = signedInUser(url);
    if (!user) {
      res.writeHead(401).end('sign in first');
      return;
    }
    // Bind the token to the user's id and the rooms they may join; keep it short:
    // the page asks again on every reconnect.
    const token = mintToken(secret, { sub: user, rooms: ['staff-*', 'lobby'], ttlSeconds: 120 });
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(token);
    return;
  }
  if (url.pathname === '/config.json') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ broker }));
    return;
  }
  // Static files under the examples folder (index.html for a folder).
  let path;
  try {
    path = normalize(join(root, decodeURIComponent(url.pathname), url.pathname.endsWith('/') ? 'index.html' : ''));
  } catch {
    res.writeHead(400).end('bad path'); // a stray `%`
    return;
  }
  if (!path.startsWith(root)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const body = await readFile(path);
    res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' }).end(body);
  } catch {
    res.writeHead(404).end('not found');
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`token server on http://127.0.0.1:${server.address().port}/token-server/`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
