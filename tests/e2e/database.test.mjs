// smoke's record database and its queries, in Chromium with the installed
// package: a `Database` on the page's real IndexedDB (writes, reads,
// queries, named errors), and queries served over rest between two Nodes in
// two pages through the broker, where the client pulls each record and the
// server reads it from IndexedDB only then: with thousands of records
// stored, the server's reads (`db.reads`) are exactly what the client took.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPage, useBrokerAndBrowser } from './harness.mjs';

let broker, browser;

useBrokerAndBrowser((b, c) => { broker = b; browser = c; });

test('Database: buffered writes land on commit, reads and queries compose, bad input gets named errors', async () => {
  const { page, context, errors } = await openPage(browser, `${broker.url}/index.html`);
  try {
    const r = await page.evaluate(async () => {
      const { Database, Query, isPeerwireError } = window.peerwire;
      const name = (e) => [e.name, e.code, isPeerwireError(e, e.name)];
      const caught = async (f) => { try { await f(); return 'no error'; } catch (e) { return name(e); } };
      const db = new Database('people');
      const keys = [];
      for (const [n, role, age] of [['smith', 'admin', 40], ['mike', 'admin', 31], ['dave', 'user', 25], ['alice', 'user', 52], ['jones', 'user', 19]]) {
        const key = db.key();
        keys.push(key);
        db.insert('users', { key, name: n, role, age });
      }
      const pendingBefore = db.pending;
      // Nothing is stored before commit: the store does not even exist.
      const beforeCommit = await caught(() => db.count('users'));
      await db.commit();
      const out = { pendingBefore, beforeCommit, pendingAfter: db.pending };
      out.count = await db.count('users');
      out.keysInOrder = JSON.stringify(await db.keys('users')) === JSON.stringify(keys) && [...keys].sort().join() === keys.join();
      out.get = (await db.get('users', keys[2])).name;
      db.update('users', { key: keys[2], name: 'dave', role: 'admin', age: 26 });
      db.delete('users', keys[4]);
      db.delete('users', { key: keys[3] });
      await db.commit();
      out.afterUpdate = (await db.query('users').select((u) => `${u.name}:${u.role}`).toArray());
      out.stores = await db.stores();
      out.missing = await db.get('users', 'no-such-key');
      // Queries: where / orderBy / select / skip / take, and reads counted.
      for (let i = 0; i < 20; i++) db.insert('numbers', { key: String(i).padStart(3, '0'), n: i, even: i % 2 === 0 });
      await db.commit();
      const r0 = db.reads;
      out.evenDesc = await db.query('numbers').where((x) => x.even).orderByDescending((x) => x.n).select((x) => x.n).skip(1).take(3).toArray();
      out.readsForOrder = db.reads - r0;
      const r1 = db.reads;
      out.firstThreeOdd = await db.query('numbers').where((x) => !x.even).select((x) => x.n).take(3).toArray();
      out.readsForTake = db.reads - r1;
      out.first = (await db.query('numbers').first()).n;
      out.count20 = await db.query('numbers').count();
      out.overArray = await new Query([3, 1, 2]).orderBy((x) => x).toArray();
      // Named errors.
      out.errors = {
        wherePredicate: await caught(() => db.query('numbers').where('n > 3')),
        selectNotFunction: await caught(() => db.query('numbers').select(null)),
        negativeTake: await caught(() => db.query('numbers').take(-1)),
        fractionalSkip: await caught(() => db.query('numbers').skip(0.5)),
        unknownStore: await caught(() => db.query('nope').toArray()),
        unknownStoreKeys: await caught(() => db.keys('nope')),
        noKey: await caught(() => db.insert('users', { name: 'x' })),
        badStore: await caught(() => db.insert(7, { key: 'k' })),
        notIterable: await caught(() => new Query(42)),
        predicateThrows: await caught(() => db.query('numbers').where((x) => x.missing.field).toArray()),
      };
      // An insert of a taken key undoes the whole commit.
      db.insert('numbers', { key: '100', n: 100 });
      db.insert('numbers', { key: '005', n: 5 });
      out.errors.keyExists = await caught(() => db.commit());
      out.afterFailedCommit = await db.count('numbers');
      // A record IndexedDB cannot store.
      db.insert('numbers', { key: '101', f: () => 1 });
      out.errors.notStorable = await caught(() => db.commit());
      const left = db.query('numbers');
      db.close();
      out.errors.closedInsert = await caught(() => db.insert('numbers', { key: 'z' }));
      out.errors.closedQuery = await caught(() => left.toArray());
      out.errors.closedCommit = await caught(() => db.commit());
      await Database.drop('people');
      // Commits that each add a store, at once, and a read during an
      // upgrade; a second Database on the same name upgrading under the
      // first (its connection is closed and reopened).
      const one = new Database('shared');
      one.insert('a', { key: '1' });
      const c1 = one.commit();
      one.insert('b', { key: '1' });
      const c2 = one.commit();
      await Promise.all([c1, c2]);
      one.insert('c', { key: '1' });
      const [, countA] = await Promise.all([one.commit(), one.count('a')]);
      const two = new Database('shared');
      two.insert('d', { key: '1' });
      two.insert('d', { key: '2' });
      await two.commit();
      out.shared = { stores: await one.stores(), countA, countD: await one.count('d'), viaTwo: await two.keys('a') };
      one.close();
      two.close();
      return out;
    });
    assert.deepEqual(r.beforeCommit, ['UnknownStoreError', 'unknown-store', true]);
    assert.equal(r.pendingBefore, 5);
    assert.equal(r.pendingAfter, 0);
    assert.equal(r.count, 5);
    assert.equal(r.keysInOrder, true, 'db.key() keys sort in the order they were made');
    assert.equal(r.get, 'dave');
    assert.deepEqual(r.afterUpdate, ['smith:admin', 'mike:admin', 'dave:admin']);
    assert.deepEqual(r.stores, ['users']);
    assert.equal(r.missing, undefined);
    assert.deepEqual(r.evenDesc, [16, 14, 12]);
    assert.equal(r.readsForOrder, 20, 'orderBy reads its whole input');
    assert.deepEqual(r.firstThreeOdd, [1, 3, 5]);
    assert.equal(r.readsForTake, 6, 'take(3) after where(odd) read records 0..5 and no more');
    assert.equal(r.first, 0);
    assert.equal(r.count20, 20);
    assert.deepEqual(r.overArray, [1, 2, 3]);
    const invalid = ['InvalidArgumentError', 'invalid-argument', true];
    assert.deepEqual(r.errors, {
      wherePredicate: invalid,
      selectNotFunction: invalid,
      negativeTake: invalid,
      fractionalSkip: invalid,
      unknownStore: ['UnknownStoreError', 'unknown-store', true],
      unknownStoreKeys: ['UnknownStoreError', 'unknown-store', true],
      noKey: invalid,
      badStore: invalid,
      notIterable: invalid,
      predicateThrows: ['TypeError', undefined, false],
      keyExists: ['DatabaseError', 'key-exists', true],
      notStorable: ['DatabaseError', 'database-error', true],
      closedInsert: ['ClosedError', 'closed', true],
      closedQuery: ['ClosedError', 'closed', true],
      closedCommit: ['ClosedError', 'closed', true],
    });
    assert.equal(r.afterFailedCommit, 20, 'the failed commit left nothing behind');
    assert.deepEqual(r.shared, { stores: ['a', 'b', 'c', 'd'], countA: 1, countD: 2, viaTwo: ['1'] });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

const RECORDS = 3000;

test(`a query over rest with ${RECORDS} records: the server reads from IndexedDB only what the client pulls`, async () => {
  const server = await openPage(browser, `${broker.url}/index.html`);
  const client = await openPage(browser, `${broker.url}/index.html`);
  const host = `db-${Math.random().toString(36).slice(2, 8)}`;
  try {
    await server.page.evaluate(async ({ ws, host, RECORDS }) => {
      const { Node, NetworkHub, Database } = window.peerwire;
      const db = new Database('served');
      for (let i = 0; i < RECORDS; i++) {
        // Every third record is a user: the 10th user is record 29.
        db.insert('users', { key: db.key(), i, name: `user-${String((i * 7919) % RECORDS).padStart(5, '0')}`, role: i % 3 === 2 ? 'user' : 'admin' });
      }
      await db.commit();
      window.db = db;
      const node = new Node({ hub: new NetworkHub(ws) });
      window.node = node;
      await node.hub.register(host);
      node.rest.createServer()
        .get('/all', (req, res) => res.query(db.query('users')))
        .get('/users', (req, res) => res.query(db.query('users').where((u) => u.role === 'user')))
        .get('/plain', (req, res) => res.json({ not: 'records' }))
        .get('/nostore', (req, res) => res.query(db.query('nope')))
        .listen(5433);
    }, { ws: broker.ws, host, RECORDS });
    const readsOnServer = () => server.page.evaluate(() => window.db.reads);
    await client.page.evaluate(({ ws }) => {
      const { Node, NetworkHub } = window.peerwire;
      window.node = new Node({ hub: new NetworkHub(ws) });
    }, { ws: broker.ws });

    // take(25) on the client: 25 pulls, 25 reads, then the socket closes.
    const taken = await client.page.evaluate(async (host) => {
      const r = await window.node.rest.fetch(`rest://${host}:5433/all`);
      return (await r.query().take(25).toArray()).map((u) => u.i);
    }, host);
    assert.deepEqual(taken, Array.from({ length: 25 }, (_, i) => i));
    assert.equal(await readsOnServer(), 25, 'the server read exactly the 25 records pulled');

    // The server filters (where); the client takes 10 users: the server
    // read up to the 10th user (record 29) and no further.
    const users = await client.page.evaluate(async (host) => {
      const r = await window.node.rest.fetch(`rest://${host}:5433/users`);
      const out = [];
      for await (const u of r.query()) {
        out.push(u.i);
        if (out.length === 10) break;
      }
      return out;
    }, host);
    assert.deepEqual(users, Array.from({ length: 10 }, (_, k) => 3 * k + 2));
    assert.equal(await readsOnServer(), 25 + 30, 'the filtered query read 30 records for 10 users');

    // A slow consumer: after each record it waits; the server has read
    // exactly as many as were pulled at every step.
    const steps = await client.page.evaluate(async (host) => {
      const r = await window.node.rest.fetch(`rest://${host}:5433/all`);
      const it = r.query()[Symbol.asyncIterator]();
      const seen = [];
      for (let k = 0; k < 5; k++) seen.push((await it.next()).value.i);
      window.pending = it;
      return seen;
    }, host);
    assert.deepEqual(steps, [0, 1, 2, 3, 4]);
    assert.equal(await readsOnServer(), 55 + 5, 'five pulls, five reads, nothing read ahead');
    await client.page.evaluate(() => window.pending.return());

    // The whole filtered set, ordered and projected on the client (as
    // smoke's example): every user arrives, in order by name.
    const all = await client.page.evaluate(async (host) => {
      const r = await window.node.rest.fetch(`rest://${host}:5433/users`);
      const started = performance.now();
      const names = await r.query().orderBy((u) => u.name).select((u) => u.name).toArray();
      return { names, ms: performance.now() - started };
    }, host);
    assert.equal(all.names.length, RECORDS / 3);
    assert.deepEqual(all.names, [...all.names].sort());
    assert.equal(new Set(all.names).size, RECORDS / 3);
    assert.equal(await readsOnServer(), 60 + RECORDS, 'the server-side where read every record once');
    console.log(`# ${RECORDS / 3} records pulled one at a time over WebRTC in ${Math.round(all.ms)} ms`);

    // A response that is not a record set has no query.
    const notRecords = await client.page.evaluate(async (host) => {
      const r = await window.node.rest.fetch(`rest://${host}:5433/plain`);
      try { r.query(); return 'no error'; } catch (e) { return [e.name, e.code]; }
    }, host);
    assert.deepEqual(notRecords, ['InvalidArgumentError', 'invalid-argument']);

    // A query that fails on the server (here: no such store) ends the
    // record set; the client's iteration rejects with the server's reason.
    const failed = await client.page.evaluate(async (host) => {
      const r = await window.node.rest.fetch(`rest://${host}:5433/nostore`);
      try { await r.query().toArray(); return 'no error'; } catch (e) { return [e.name, e.message]; }
    }, host);
    assert.equal(failed[0], 'ConnectionFailedError', String(failed));
    assert.match(failed[1], /has no store "nope"/);
    assert.deepEqual([...server.errors, ...client.errors], []);
  } finally {
    await server.context.close();
    await client.context.close();
  }
});

test('Database: a commit past the storage quota rejects with DatabaseError quota-exceeded, lands nothing, and works once there is room', async () => {
  const { page, context, errors } = await openPage(browser, `${broker.url}/index.html`);
  // The origin's quota, lowered to 1 MiB through the DevTools protocol
  // before the database opens: IndexedDB itself then refuses a 4 MiB
  // commit. (navigator.storage.estimate() keeps showing the default quota
  // in Playwright's contexts; IndexedDB's writes do meet the override.)
  const cdp = await context.newCDPSession(page);
  const origin = new URL(broker.url).origin;
  try {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 1024 * 1024 });
    const big = 'y'.repeat(1024 * 1024);
    const refused = await page.evaluate(async (big) => {
      window.dbName = `quota-${Math.random().toString(36).slice(2, 8)}`;
      const db = new window.peerwire.Database(window.dbName);
      db.insert('blobs', { key: 'small', text: 'x' });
      await db.commit();
      for (let i = 0; i < 4; i++) db.insert('blobs', { key: `big${i}`, text: big });
      try {
        await db.commit();
        return null;
      } catch (e) {
        return { name: e.name, code: e.code, named: window.peerwire.isPeerwireError(e, 'DatabaseError'), message: e.message, count: await db.count('blobs') };
      } finally {
        db.close();
      }
    }, big);
    assert.ok(refused, 'the commit past the quota rejected');
    assert.deepEqual([refused.name, refused.code, refused.named], ['DatabaseError', 'quota-exceeded', true], refused.message);
    assert.match(refused.message, /storage quota is full/);
    assert.equal(refused.count, 1, 'nothing of the refused commit landed');

    // Room again (the override lifted): the same writes land.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    const landed = await page.evaluate(async (big) => {
      const db = new window.peerwire.Database(window.dbName);
      for (let i = 0; i < 4; i++) db.insert('blobs', { key: `big${i}`, text: big });
      await db.commit();
      const n = await db.count('blobs');
      db.close();
      await window.peerwire.Database.drop(window.dbName);
      return n;
    }, big);
    assert.equal(landed, 5);
    assert.deepEqual(errors, []);
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin }).catch(() => {});
    await context.close();
  }
});
