// smoke's `node.system` and `node.network`, and the connection budget, in
// Chromium with the installed package: Nodes in two pages on the broker
// (NetworkHub), real WebRTC between them. The budget test gives the server
// a budget of 2 and dials it from three nodes: the third is refused on both
// sides with LimitExceededError, at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, useBrokerAndBrowser } from './harness.mjs';

let broker, browser;

useBrokerAndBrowser((b, c) => { broker = b; browser = c; });

test('node.system counts uptime, connections, bytes and ports; node.network lists ports and connections with their paths', async () => {
  const server = await openPage(browser, `${broker.url}/index.html`);
  const client = await openPage(browser, `${broker.url}/index.html`);
  const host = `sys-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const fresh = await server.page.evaluate(async ({ ws, host }) => {
      const { Node, NetworkHub } = window.peerwire;
      const node = new Node({ hub: new NetworkHub(ws) });
      window.node = node;
      await node.hub.register(host);
      const fresh = node.system;
      await node.rest.createServer().get('/size/:n', (req, res) => res.send('x'.repeat(Number(req.params.n)))).listen(80);
      // network.bind: a socket port, echoing.
      node.network.bind(9000, (s) => s.on('message', (m) => s.send(m)));
      node.network.bind(7000, () => {});
      let inUse;
      try { node.network.bind(9000, () => {}); } catch (e) { inUse = [e.name, e.code]; }
      node.network.unbind(7000);
      // A server unbound by network.unbind, closing after a newcomer took
      // its port, leaves the newcomer bound; so does a socket server.
      const rest = node.rest.createServer().get('/', (req, res) => res.send('old'));
      await rest.listen(7100);
      node.network.unbind(7100);
      node.network.bind(7100, () => {});
      rest.close();
      const sockets = node.sockets.createServer(() => {});
      await sockets.listen(7200);
      node.network.unbind(7200);
      await node.rest.createServer().get('/', (req, res) => res.send('new')).listen(7200);
      sockets.close();
      const kept = node.network.ports.filter((p) => p === 7100 || p === 7200);
      node.network.unbind(7100);
      node.network.unbind(7200);
      return { fresh, ports: node.network.ports, inUse, kept, address: await node.address() };
    }, { ws: broker.ws, host });
    assert.equal(fresh.fresh.connections, 0);
    assert.equal(fresh.fresh.maxConnections, 256, "smoke's budget by default");
    assert.equal(fresh.fresh.bytesIn, 0);
    assert.deepEqual(fresh.ports, [80, 9000]);
    assert.deepEqual(fresh.inUse, ['InvalidArgumentError', 'invalid-argument']);
    assert.deepEqual(fresh.kept, [7100, 7200], 'an unbound server closing later does not unbind the newcomer');

    const out = await client.page.evaluate(async ({ ws, host }) => {
      const { Node, NetworkHub } = window.peerwire;
      const node = new Node({ hub: new NetworkHub(ws) });
      window.node = node;
      const before = node.system;
      const r = await node.rest.fetch(`rest://${host}/size/100000`);
      const body = await r.text();
      const socket = await node.sockets.connect(host, 9000);
      const echoed = new Promise((resolve) => socket.on('message', resolve));
      await socket.send('y'.repeat(50000));
      const echo = await echoed;
      window.socket = socket;
      return { before, after: node.system, network: node.network.connections, body: body.length, echo: echo.length, me: await node.address() };
    }, { ws: broker.ws, host });
    assert.equal(out.body, 100000);
    assert.equal(out.echo, 50000);
    assert.equal(out.before.bytesIn, 0);
    // 100 000 bytes of body and 50 000 echoed came in; 50 000 went out.
    assert.ok(out.after.bytesIn - out.before.bytesIn >= 150000, JSON.stringify(out.after));
    assert.ok(out.after.bytesOut - out.before.bytesOut >= 50000, JSON.stringify(out.after));
    assert.equal(out.after.connections, 1);
    assert.equal(out.after.connectionsOpened, 1);
    assert.deepEqual(out.after.ports, [], 'a client has no port of its own');
    assert.equal(out.network.length, 1);
    const [toServer] = out.network;
    assert.equal(toServer.address, fresh.address);
    assert.deepEqual([toServer.state, toServer.path, toServer.initiated], ['open', 'direct', true]);
    assert.ok(toServer.streams >= 1, 'the socket to 9000 (and the rest request, if not yet released)');

    const seen = await server.page.evaluate(async () => {
      const node = window.node;
      const a = node.system;
      // Some real time passes (a round trip to the page's own server).
      const t0 = performance.now();
      await fetch(location.href, { cache: 'no-store' });
      const elapsed = performance.now() - t0;
      return { system: a, later: node.system.uptime, elapsed, network: node.network.connections };
    });
    const { system } = seen;
    assert.ok(system.uptime > 0 && seen.later > system.uptime, `uptime grows: ${system.uptime}, ${seen.later}`);
    assert.ok(seen.later - system.uptime >= seen.elapsed - 1, `uptime grows with the clock: ${seen.later - system.uptime} ms against ${seen.elapsed} ms`);
    assert.equal(system.connections, 1);
    assert.ok(system.bytesOut >= 150000, JSON.stringify(system));
    assert.ok(system.bytesIn >= 50000, JSON.stringify(system));
    const byPort = Object.fromEntries(system.ports.map((p) => [p.port, p]));
    assert.deepEqual(Object.keys(byPort), ['80', '9000']);
    assert.equal(byPort[80].accepted, 1);
    assert.equal(byPort[80].bound, true);
    assert.ok(byPort[80].bytesOut >= 100000, JSON.stringify(byPort[80]));
    assert.deepEqual([byPort[9000].bound, byPort[9000].open, byPort[9000].accepted], [true, 1, 1]);
    assert.ok(byPort[9000].bytesIn >= 50000 && byPort[9000].bytesOut >= 50000, JSON.stringify(byPort[9000]));
    const [fromClient] = seen.network;
    assert.deepEqual([fromClient.address, fromClient.state, fromClient.path, fromClient.initiated], [out.me, 'open', 'direct', false]);
    // Both sides count the same bytes on their connection (but for
    // keep-alives in flight).
    const clientView = await client.page.evaluate(() => window.node.network.connections[0]);
    const serverView = await server.page.evaluate(() => window.node.network.connections[0]);
    assert.ok(Math.abs(clientView.bytesOut - serverView.bytesIn) < 200, `${clientView.bytesOut} sent, ${serverView.bytesIn} received`);

    // Unbinding 9000 keeps the open socket, refuses new ones.
    const after = await server.page.evaluate(() => {
      window.node.network.unbind(9000);
      return { ports: window.node.network.ports, p9000: window.node.system.ports.find((p) => p.port === 9000) };
    });
    assert.deepEqual(after.ports, [80]);
    assert.deepEqual([after.p9000.bound, after.p9000.open], [false, 1]);
    const refused = await client.page.evaluate(async (host) => {
      const still = await new Promise((resolve) => {
        window.socket.on('message', resolve);
        window.socket.send('still open');
      });
      try { await window.node.sockets.connect(host, 9000); return { still }; } catch (e) { return { still, name: e.name }; }
    }, host);
    assert.deepEqual(refused, { still: 'still open', name: 'PortClosedError' });
    assert.deepEqual([...server.errors, ...client.errors], []);
  } finally {
    await server.context.close();
    await client.context.close();
  }
});

test("a connection through the broker's relay shows path 'broker'", async () => {
  const server = await openPage(browser, `${broker.url}/index.html`);
  const client = await openPage(browser, `${broker.url}/index.html`);
  const host = `relay-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await server.page.evaluate(async ({ ws, host }) => {
      const { Node, NetworkHub } = window.peerwire;
      window.node = new Node({ hub: new NetworkHub(ws), relay: 'always' });
      await window.node.hub.register(host);
      window.node.network.bind(9000, (s) => s.on('message', (m) => s.send(m)));
    }, { ws: broker.ws, host });
    const out = await client.page.evaluate(async ({ ws, host }) => {
      const { Node, NetworkHub } = window.peerwire;
      const node = new Node({ hub: new NetworkHub(ws), relay: 'always' });
      const socket = await node.sockets.connect(host, 9000);
      const echo = new Promise((resolve) => socket.on('message', resolve));
      await socket.send('via the broker');
      return { echo: await echo, network: node.network.connections, system: node.system };
    }, { ws: broker.ws, host });
    assert.equal(out.echo, 'via the broker');
    assert.deepEqual(out.network.map((c) => [c.state, c.path]), [['open', 'broker']]);
    assert.ok(out.system.bytesIn > 0 && out.network[0].bytesIn === out.system.bytesIn, JSON.stringify(out));
    assert.deepEqual([...server.errors, ...client.errors], []);
  } finally {
    await server.context.close();
    await client.context.close();
  }
});

test('the connection budget: a Node with maxConnections 2 refuses the third, by name on both sides', async () => {
  const server = await openPage(browser, `${broker.url}/index.html`);
  const client = await openPage(browser, `${broker.url}/index.html`);
  const host = `budget-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await server.page.evaluate(async ({ ws, host }) => {
      const { Node, NetworkHub } = window.peerwire;
      const node = new Node({ hub: new NetworkHub(ws), maxConnections: 2 });
      window.node = node;
      window.refusals = [];
      node.on('error', (e) => window.refusals.push([e.name, e.code, e.message]));
      await node.hub.register(host);
      await node.rest.createServer().get('/', (req, res) => res.send('ok')).listen();
    }, { ws: broker.ws, host });
    const out = await client.page.evaluate(async ({ ws, host }) => {
      const { Node, NetworkHub } = window.peerwire;
      const nodes = [0, 1, 2].map(() => new Node({ hub: new NetworkHub(ws) }));
      const answers = [];
      for (const node of nodes.slice(0, 2)) answers.push(await (await node.rest.fetch(`rest://${host}/`)).text());
      const started = performance.now();
      let third;
      try { await nodes[2].rest.fetch(`rest://${host}/`); third = 'answered'; } catch (e) { third = [e.name, e.code, e.message]; }
      const ms = performance.now() - started;
      // A node over its own budget: refused locally.
      const small = new Node({ hub: new NetworkHub(ws), maxConnections: 1 });
      await small.connect(await nodes[0].address());
      let own;
      try { await small.connect(await nodes[1].address()); own = 'connected'; } catch (e) { own = [e.name, e.code, e.message]; }
      return { answers, third, ms, own, ownSystem: small.system };
    }, { ws: broker.ws, host });
    assert.deepEqual(out.answers, ['ok', 'ok']);
    assert.equal(out.third[0], 'LimitExceededError', out.third.join(' '));
    assert.equal(out.third[1], 'limit-exceeded');
    assert.match(out.third[2], /maxConnections/);
    assert.ok(out.ms < 5000, `refused at once, not at connectTimeout: ${out.ms} ms`);
    assert.equal(out.own[0], 'LimitExceededError', String(out.own));
    assert.match(out.own[2], /maxConnections/);
    assert.equal(out.ownSystem.connectionsRefused, 1);
    const seen = await server.page.evaluate(() => ({ system: window.node.system, refusals: window.refusals }));
    assert.equal(seen.system.connections, 2);
    assert.equal(seen.system.maxConnections, 2);
    assert.equal(seen.system.connectionsRefused, 1, 'the third node');
    assert.equal(seen.refusals.length, 1);
    for (const [name, code, message] of seen.refusals) {
      assert.deepEqual([name, code], ['LimitExceededError', 'limit-exceeded']);
      assert.match(message, /maxConnections budget/);
    }
    assert.deepEqual([...server.errors, ...client.errors], []);
  } finally {
    await server.context.close();
    await client.context.close();
  }
});
