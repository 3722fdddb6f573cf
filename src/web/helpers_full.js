// The full build's JavaScript (the `peerwire/lite` entry leaves it out):
// smoke's Database and queries, node.media's test pattern, and the
// driver's media helpers (the `media` feature). See
// helpers.js for why the SDK's JavaScript is kept in two files.

// Records in IndexedDB and queries over them (smoke's Database and its
// queries), as plain JavaScript the wasm re-exports: `Database`, `Query`.
//
// A Database keeps records (objects with a string `key`) in named stores.
// Writes are buffered and land together on `commit()`, in one IndexedDB
// transaction (all or nothing); a store is created by the first commit that
// writes to it. `db.query(store)` reads lazily: each record is read from
// IndexedDB when the query's consumer asks for the next one, in a
// transaction of its own that starts after the last key read (a cursor
// cannot stay open across awaits: IndexedDB commits a transaction as soon
// as nothing is pending). Served with `res.query()`, a record is thus read
// only when the client pulls it.
//
// A Query composes over any async or sync iterable: `where`, `select`,
// `skip` and `take` stream (take stops pulling once it has its count);
// `orderBy` needs its whole input, so it reads everything before it.
//
// Errors are real Errors with the SDK's `name` and `code`:
// InvalidArgumentError, ClosedError, UnknownStoreError, DatabaseError
// (`quota-exceeded`, `key-exists`, `database-error`).

function named(name, code, message) {
  const e = new Error(message);
  e.name = name;
  e.code = code;
  return e;
}

const invalid = (message) => named('InvalidArgumentError', 'invalid-argument', message);

// An IndexedDB failure (a DOMException or an aborted transaction's error).
function failed(error, what) {
  const kind = error && error.name;
  const code = kind === 'QuotaExceededError' ? 'quota-exceeded' : kind === 'ConstraintError' ? 'key-exists' : 'database-error';
  const detail = (error && (error.message || error.name)) || 'IndexedDB failed';
  return named('DatabaseError', code, `${what}: ${detail}${code === 'quota-exceeded' ? ' (the browser\'s storage quota is full)' : ''}`);
}

function checkStore(store) {
  if (typeof store !== 'string' || store === '') {
    throw invalid(`a store name must be a non-empty string, got ${describe(store)}`);
  }
}

function describe(value) {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

function checkRecord(record, op) {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) {
    throw invalid(`${op}() takes a record (an object with a string key), got ${describe(record)}`);
  }
  if (typeof record.key !== 'string' || record.key === '') {
    throw invalid(`${op}(): record.key must be a non-empty string (db.key() makes one), got ${describe(record.key)}`);
  }
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

let last = 0;
let seq = 0;

export class Database {
  #name;
  #open = null;
  #commits = Promise.resolve();
  #pending = [];
  #closed = false;
  #reads = 0;

  /** Opens (or creates) the IndexedDB database `name`. */
  constructor(name) {
    if (typeof name !== 'string' || name === '') {
      throw invalid(`new Database(name): name must be a non-empty string, got ${describe(name)}`);
    }
    if (typeof indexedDB === 'undefined') {
      throw named('DatabaseError', 'database-error', 'this runtime has no IndexedDB');
    }
    this.#name = name;
  }

  /** The database's name. */
  get name() {
    return this.#name;
  }

  /** Records read from IndexedDB by this database's queries so far. */
  get reads() {
    return this.#reads;
  }

  /** Writes waiting for `commit()`. */
  get pending() {
    return this.#pending.length;
  }

  /** A new unique key; keys made later sort after earlier ones (queries
   * read in key order, so records come in the order they were keyed). */
  key() {
    const now = Date.now();
    seq = now === last ? seq + 1 : 0;
    last = now;
    const rand = Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
    return `${now.toString(36).padStart(9, '0')}-${seq.toString(36).padStart(4, '0')}-${rand}`;
  }

  /** Adds `record` to `store` at the next commit (which fails with
   * `DatabaseError` code `key-exists` if its key is taken). */
  insert(store, record) {
    this.#buffer('insert', store, record);
  }

  /** Replaces the record with `record.key` (or adds it) at the next commit. */
  update(store, record) {
    this.#buffer('update', store, record);
  }

  /** Removes a record (given as the record or its key) at the next commit. */
  delete(store, recordOrKey) {
    this.#live();
    checkStore(store);
    const key = typeof recordOrKey === 'string' ? recordOrKey : recordOrKey && recordOrKey.key;
    if (typeof key !== 'string' || key === '') {
      throw invalid(`delete() takes a record or its key (a non-empty string), got ${describe(recordOrKey)}`);
    }
    this.#pending.push({ op: 'delete', store, key });
  }

  #buffer(op, store, record) {
    this.#live();
    checkStore(store);
    checkRecord(record, op);
    this.#pending.push({ op, store, record });
  }

  /** Applies the buffered writes in one transaction: all land, or none
   * (the promise rejects with `DatabaseError` and the writes are dropped). */
  commit() {
    try {
      this.#live();
    } catch (e) {
      return Promise.reject(e);
    }
    const writes = this.#pending;
    this.#pending = [];
    if (writes.length === 0) return Promise.resolve();
    // One commit at a time: each may upgrade the database to add stores.
    const run = this.#commits.then(() => this.#apply(writes));
    this.#commits = run.catch(() => {});
    return run;
  }

  async #apply(writes) {
    this.#live();
    const stores = [...new Set(writes.map((w) => w.store))];
    let tx;
    for (let attempt = 0; !tx; attempt++) {
      const db = await this.#connect(stores);
      this.#live();
      try {
        tx = db.transaction(stores, 'readwrite');
      } catch (e) {
        // The connection closed under us (another tab upgraded): once more.
        if (attempt > 0 || e.name !== 'InvalidStateError') throw failed(e, 'commit');
      }
    }
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(failed(tx.error, 'commit'));
    });
    try {
      for (const w of writes) {
        const os = tx.objectStore(w.store);
        if (w.op === 'insert') os.add(w.record);
        else if (w.op === 'update') os.put(w.record);
        else os.delete(w.key);
      }
    } catch (e) {
      // A record IndexedDB cannot store (a function in it, ...): nothing lands.
      done.catch(() => {});
      tx.abort();
      throw failed(e, 'commit');
    }
    await done;
  }

  /** The record with `key` in `store`, or `undefined`. */
  async get(store, key) {
    checkStore(store);
    if (typeof key !== 'string') throw invalid(`get() takes a key (a string), got ${describe(key)}`);
    return this.#read(store, (os) => request(os.get(key)));
  }

  /** Every key in `store`, in order. */
  async keys(store) {
    checkStore(store);
    return this.#read(store, (os) => request(os.getAllKeys()));
  }

  /** How many records `store` holds. */
  async count(store) {
    checkStore(store);
    return this.#read(store, (os) => request(os.count()));
  }

  /** The names of the stores. */
  async stores() {
    this.#live();
    const db = await this.#connect([]);
    return [...db.objectStoreNames];
  }

  /** A query over `store`'s records in key order, read one at a time as
   * they are asked for (`UnknownStoreError` at the first read if the store
   * does not exist). */
  query(store) {
    this.#live();
    checkStore(store);
    const scan = async function* (db) {
      let after;
      for (;;) {
        const record = await db.#readAfter(store, after);
        if (record === undefined) return;
        after = record.key;
        yield record;
      }
    };
    return new Query({ [Symbol.asyncIterator]: () => scan(this) });
  }

  /** Closes the database; later calls throw `ClosedError`. */
  close() {
    this.#closed = true;
    this.#pending = [];
    const open = this.#open;
    this.#open = null;
    if (open) open.then((db) => db.close(), () => {});
  }

  /** Deletes the IndexedDB database `name` (close its Databases first). */
  static async drop(name) {
    if (typeof name !== 'string' || name === '') {
      throw invalid(`Database.drop(name): name must be a non-empty string, got ${describe(name)}`);
    }
    try {
      await request(indexedDB.deleteDatabase(name));
    } catch (e) {
      throw failed(e, `deleting database "${name}"`);
    }
  }

  #live() {
    if (this.#closed) throw named('ClosedError', 'closed', `database "${this.#name}" is closed`);
  }

  // The next record of `store` after key `after` (from the start when
  // undefined), in a transaction of its own.
  async #readAfter(store, after) {
    const record = await this.#read(store, (os) =>
      request(os.openCursor(after === undefined ? null : IDBKeyRange.lowerBound(after, true))).then((cursor) => cursor ? cursor.value : undefined),
    );
    if (record !== undefined) this.#reads += 1;
    return record;
  }

  async #read(store, body) {
    let tx;
    for (let attempt = 0; !tx; attempt++) {
      this.#live();
      const db = await this.#opened();
      this.#live();
      if (!db.objectStoreNames.contains(store)) {
        throw named('UnknownStoreError', 'unknown-store', `database "${this.#name}" has no store "${store}" (a commit that writes to it creates it)`);
      }
      try {
        tx = db.transaction(store, 'readonly');
      } catch (e) {
        // The connection closed under us (a commit upgraded): once more.
        if (attempt > 0 || e.name !== 'InvalidStateError') throw failed(e, `reading store "${store}"`);
      }
    }
    try {
      return await body(tx.objectStore(store));
    } catch (e) {
      throw failed(e, `reading store "${store}"`);
    }
  }

  // The open database, with `stores` created (an upgrade to a new version
  // when one is missing; later callers get the upgraded one).
  async #connect(stores) {
    const db = await this.#opened();
    const missing = stores.filter((s) => !db.objectStoreNames.contains(s));
    if (missing.length === 0) return db;
    const next = this.#remember(this.#openAt(db.version + 1, missing));
    db.close();
    return next;
  }

  #opened() {
    return this.#open || this.#remember(this.#openAt(undefined, []));
  }

  // Keeps `open` as the connection to use; a failed open is forgotten, so
  // the next call tries again.
  #remember(open) {
    this.#open = open;
    open.catch(() => {
      if (this.#open === open) this.#open = null;
    });
    return open;
  }

  #openAt(version, create) {
    const open = new Promise((resolve, reject) => {
      const req = version === undefined ? indexedDB.open(this.#name) : indexedDB.open(this.#name, version);
      req.onupgradeneeded = () => {
        for (const s of create) {
          if (!req.result.objectStoreNames.contains(s)) req.result.createObjectStore(s, { keyPath: 'key' });
        }
      };
      req.onsuccess = () => {
        const db = req.result;
        // Another Database on this name upgrades: let it, reopen later.
        db.onversionchange = () => {
          db.close();
          if (this.#open === open) this.#open = null;
        };
        resolve(db);
      };
      req.onerror = () => reject(failed(req.error, `opening database "${this.#name}"`));
      req.onblocked = () => {};
    });
    return open;
  }
}

function checkFunction(fn, op) {
  if (typeof fn !== 'function') throw invalid(`${op}() takes a function, got ${describe(fn)}`);
}

function checkCount(n, op) {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw invalid(`${op}() takes a whole number ≥ 0, got ${describe(n)}`);
  }
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

// The steps of a query, each an async generator over the one before.
const steps = {
  async *where(it, fn) {
    let i = 0;
    for await (const v of it) if (fn(v, i++)) yield v;
  },
  async *select(it, fn) {
    let i = 0;
    for await (const v of it) yield fn(v, i++);
  },
  async *skip(it, n) {
    let i = 0;
    for await (const v of it) if (i++ >= n) yield v;
  },
  async *take(it, n) {
    if (n === 0) return;
    let i = 0;
    // Returns right after the n-th: the source is not asked for more.
    for await (const v of it) {
      yield v;
      if (++i >= n) return;
    }
  },
  async *order(it, { fn, sign }) {
    const all = [];
    for await (const v of it) all.push([fn(v), v]);
    all.sort((a, b) => sign * compare(a[0], b[0]));
    for (const [, v] of all) yield v;
  },
};

export class Query {
  #source;
  #steps;

  /** A query over any async or sync iterable. */
  constructor(source, _steps) {
    if (source == null || (typeof source[Symbol.asyncIterator] !== 'function' && typeof source[Symbol.iterator] !== 'function')) {
      throw invalid(`new Query(source): source must be an async or sync iterable, got ${describe(source)}`);
    }
    this.#source = source;
    this.#steps = _steps || [];
  }

  #then(kind, arg) {
    return new Query(this.#source, [...this.#steps, [kind, arg]]);
  }

  /** Keeps the records for which `fn(record, index)` is truthy. */
  where(fn) {
    checkFunction(fn, 'where');
    return this.#then('where', fn);
  }

  /** Maps each record through `fn(record, index)`. */
  select(fn) {
    checkFunction(fn, 'select');
    return this.#then('select', fn);
  }

  /** Orders by `fn(record)` (reads the whole input first). */
  orderBy(fn) {
    checkFunction(fn, 'orderBy');
    return this.#then('order', { fn, sign: 1 });
  }

  /** Orders by `fn(record)`, largest first (reads the whole input first). */
  orderByDescending(fn) {
    checkFunction(fn, 'orderByDescending');
    return this.#then('order', { fn, sign: -1 });
  }

  /** Skips the first `n`. */
  skip(n) {
    checkCount(n, 'skip');
    return this.#then('skip', n);
  }

  /** At most `n`; stops asking the source after the n-th. */
  take(n) {
    checkCount(n, 'take');
    return this.#then('take', n);
  }

  /** Every result, in an array. */
  async toArray() {
    const out = [];
    for await (const v of this) out.push(v);
    return out;
  }

  /** The first result (`undefined` if none); reads no further. */
  async first() {
    for await (const v of this) return v;
    return undefined;
  }

  /** How many results there are. */
  async count() {
    let n = 0;
    for await (const _ of this) n += 1;
    return n;
  }

  [Symbol.asyncIterator]() {
    let it = this.#source;
    for (const [kind, arg] of this.#steps) it = steps[kind](it, arg);
    return typeof it[Symbol.asyncIterator] === 'function' ? it[Symbol.asyncIterator]() : toAsync(it[Symbol.iterator]());
  }
}

function toAsync(iterator) {
  return {
    next: () => Promise.resolve(iterator.next()),
    return: () => Promise.resolve(iterator.return ? iterator.return() : { done: true, value: undefined }),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

// A query over a rest record set (`response.query()`).
export function queryOf(records) {
  return new Query(records);
}

// node.media.createTestPattern(): a MediaStream drawn on a canvas (colour
// bars, a moving line and a frame counter) with a 440 Hz oscillator as its
// audio track (wasm-bindgen imports this; smaller as JavaScript).

export function testPattern(width, height, frameRate) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  const colors = ['#fff', '#ff0', '#0ff', '#0f0', '#f0f', '#f00', '#00f'];
  let frame = 0;
  const draw = () => {
    const w = width / colors.length;
    colors.forEach((c, i) => { g.fillStyle = c; g.fillRect(i * w, 0, w + 1, height); });
    g.fillStyle = '#000';
    g.fillRect((frame * 4) % width, 0, 4, height);
    g.fillRect(0, height - 24, 90, 24);
    g.fillStyle = '#fff';
    g.font = '16px monospace';
    g.fillText(String(frame++), 6, height - 7);
  };
  draw();
  const timer = setInterval(draw, 1000 / frameRate);
  const stream = canvas.captureStream(frameRate);
  let audio = null;
  try {
    audio = new AudioContext();
    const osc = audio.createOscillator();
    osc.frequency.value = 440;
    const gain = audio.createGain();
    gain.gain.value = 0.1;
    const out = audio.createMediaStreamDestination();
    osc.connect(gain).connect(out);
    osc.start();
    out.stream.getAudioTracks().forEach((t) => stream.addTrack(t));
  } catch {
    // No Web Audio here: the pattern is video only.
  }
  // Stopping every track stops the drawing and the oscillator.
  for (const t of stream.getTracks()) {
    const stop = t.stop.bind(t);
    t.stop = () => {
      stop();
      if (stream.getTracks().every((x) => x.readyState === 'ended')) {
        clearInterval(timer);
        if (audio) audio.close();
      }
    };
  }
  return stream;
}

// Resolves the remote stream `find()` returns once it holds `count`
// tracks, checking again on each `track` event of the connection; rejects
// with a ClosedError if the connection closes first. `watch(event, f)` /
// `unwatch(event, f)` are the SDK's own listeners on that connection: they
// see every event without taking the `track` events kept for the user's
// first `conn.on('track')`.
export function streamWhenComplete(watch, unwatch, find, count, peerId) {
  return new Promise((resolve, reject) => {
    const done = () => { unwatch('track', check); unwatch('close', closed); };
    const check = () => {
      const s = find();
      if (s && s.getTracks().length >= count) { done(); resolve(s); return true; }
      return false;
    };
    const closed = ({ reason }) => {
      done();
      reject(Object.assign(new Error(`the connection to "${peerId}" is closed (${reason})`), { name: 'ClosedError', code: 'closed' }));
    };
    if (!check()) { watch('track', check); watch('close', closed); }
  });
}

// Media (the `media` feature, in the full build): a few property walks for
// the driver, and its watch over the user's tracks.

// The mid of each sender's transceiver (null before one is assigned).
export function senderMids(pc, senders) {
  const all = pc.getTransceivers();
  return senders.map((s) => {
    const t = all.find((x) => x.sender === s);
    return t && t.mid != null ? t.mid : null;
  });
}

// An RTCTrackEvent as [mid, streams]; mid null if the browser gave none.
export function trackEvent(ev) {
  return [ev.transceiver ? ev.transceiver.mid : null, Array.from(ev.streams || [])];
}

// The ids of some MediaStreams.
export function streamIds(streams) {
  return streams.map((s) => String(s.id));
}

// The SDK's watch over a track of the user's that it sends: the track's
// `ended`, `mute` and `unmute` events, and its `stop()`, which fires no
// `ended` (so `stop` gets an own wrapper that reports it). One set of hooks
// per track however many connections send it; the last `unwatchTrack`
// removes them and gives `stop` back.
const watched = new WeakMap();
const TRACK_EVENTS = ['ended', 'mute', 'unmute'];

export function watchTrack(track, report) {
  let w = watched.get(track);
  if (!w) {
    const own = Object.getOwnPropertyDescriptor(track, 'stop');
    const stop = track.stop;
    const reports = new Set();
    const tell = (what) => { for (const r of [...reports]) r(what); };
    w = {
      reports,
      own,
      listener: (ev) => tell(ev.type),
      stop(...args) {
        const live = track.readyState === 'live';
        const out = stop.apply(this, args);
        if (live && track.readyState === 'ended') tell('ended');
        return out;
      },
    };
    for (const t of TRACK_EVENTS) track.addEventListener(t, w.listener);
    Object.defineProperty(track, 'stop', { value: w.stop, configurable: true, writable: true });
    watched.set(track, w);
  }
  w.reports.add(report);
}

export function unwatchTrack(track, report) {
  const w = watched.get(track);
  if (!w || !w.reports.delete(report) || w.reports.size > 0) return;
  for (const t of TRACK_EVENTS) track.removeEventListener(t, w.listener);
  if (track.stop === w.stop) {
    if (w.own) Object.defineProperty(track, 'stop', w.own);
    else delete track.stop;
  }
  watched.delete(track);
}
