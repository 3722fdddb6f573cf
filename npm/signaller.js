// peerwire/signaller: a client for signaller's protocol, which
// peerwire-broker serves at /listen/<handle> and /connect/<handle> (see
// docs/PROTOCOL.md, "signaller's protocol"). The WebSocket is the pipe: one
// side listens on a handle, the other connects to it, and what either sends
// reaches the other as it was sent, text as text and bytes as bytes.
//
// The API is the seed client's: `new Signaller(server, handle)`,
// `listen()` or `connect()`, `onsignal`, `signal(data)`, `close()`. Signals
// given before the WebSocket is open wait in a buffer bounded in bytes and
// go out in order once it opens. Every end is reported once, on `onclose`,
// with the close code and its name; an end that was not a normal close
// also reaches `onerror` as a SignallerError whose `code` names it.
//
// Plain JavaScript, no WebAssembly: it loads on its own. (Comment lines
// starting with two slashes are dropped from the packed file.)

/** What each close code a signaller pipe can end with means. */
export const CLOSE_CODES = Object.freeze({
  1000: 'normal',
  1001: 'going-away',
  1006: 'abnormal',
  1008: 'policy-violation',
  1009: 'message-too-big',
  1011: 'internal-error',
  4000: 'listen-timeout',
  4001: 'pipe-timeout',
  4002: 'too-many-messages',
  4003: 'slow-consumer',
  4004: 'heartbeat-timeout',
  4007: 'unauthorized',
});

const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
const OPTIONS = ['maxBufferedBytes', 'token', 'WebSocket'];

/** Every error this module throws or reports; `code` says which. */
export class SignallerError extends Error {
  constructor(code, message, closeCode) {
    super(message);
    this.name = 'SignallerError';
    this.code = code;
    if (closeCode !== undefined) this.closeCode = closeCode;
  }
}

/**
 * Whether `handle` is one the broker routes: 3 to 32 characters, a
 * lowercase letter first, then lowercase letters, digits and single
 * underscores, not ending with an underscore.
 */
export function isValidHandle(handle) {
  return typeof handle === 'string' && /^[a-z](?:_?[a-z0-9])+$/.test(handle) && handle.length >= 3 && handle.length <= 32;
}

const describe = (v) => (typeof v === 'string' ? `the string ${JSON.stringify(v)}` : v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

const encoder = new TextEncoder();

// The frame `signal(data)` sends and its size: text as is, bytes as bytes
// (copied: the caller may reuse its buffer), a Blob as is, and any other
// value as its JSON text (simple-peer's signal objects, for instance).
function frameOf(data) {
  if (typeof data === 'string') return { frame: data, bytes: encoder.encode(data).byteLength };
  if (data instanceof ArrayBuffer) return { frame: data.slice(0), bytes: data.byteLength };
  if (ArrayBuffer.isView(data)) {
    const copy = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    return { frame: copy, bytes: copy.byteLength };
  }
  if (typeof Blob !== 'undefined' && data instanceof Blob) return { frame: data, bytes: data.size };
  let text;
  try {
    text = JSON.stringify(data);
  } catch (e) {
    throw new SignallerError('invalid-argument', `signal(data): data cannot be sent as JSON: ${e.message}`);
  }
  if (text === undefined) throw new SignallerError('invalid-argument', `signal(data): ${describe(data)} cannot be sent; give a string, bytes or a JSON value`);
  return { frame: text, bytes: encoder.encode(text).byteLength };
}

// The error an end with `code` means, or null for a normal end.
function errorFor(code, reason, { opened, role, handle, url }) {
  if (code === 1000) return null;
  const name = CLOSE_CODES[code] ?? 'unknown';
  const said = reason ? ` (the broker said: ${reason})` : '';
  if (!opened) {
    const why = role === 'connect'
      ? `nobody listens on handle "${handle}", someone is connected to it already`
      : `someone listens on handle "${handle}" already`;
    return new SignallerError('refused', `${url} did not open: ${why}, or the broker refused the connection or cannot be reached (a browser does not say which; the broker's log does)${said}`, code);
  }
  const what = {
    1001: 'the broker is shutting down',
    1006: 'the connection dropped without a close frame',
    1008: 'the connection broke a broker policy',
    1009: "a message was larger than the broker's --max-frame-bytes",
    1011: 'the other side went away without closing, or the broker failed',
    4000: `nobody connected to handle "${handle}" within the broker's --listen-timeout-ms`,
    4001: "the pipe stayed open past the broker's --pipe-timeout-ms; close it once the peers are connected",
    4002: "a side sent more messages than the broker's --signaller-max-messages allows, or sent them faster than its --rate-limit",
    4003: 'this side did not read its messages fast enough',
    4004: 'the broker heard nothing from this side within its --heartbeat-timeout-ms',
    4007: 'the broker refused the access token, or requires one',
  }[code] ?? `the pipe closed with code ${code}`;
  return new SignallerError(name, `handle "${handle}": ${what}${said}`, code);
}

/** One end of a signaller pipe. */
export class Signaller {
  #server;
  #handle;
  #options;
  #ws = null;
  #role = null;
  #state = 'idle';
  #userClosed = false;
  #outbox = [];
  #outboxBytes = 0;
  #inbox = [];
  #inboxBytes = 0;
  #onsignal = null;
  // Why this side ended the pipe itself, if it did.
  #failure = null;

  constructor(server, handle, options) {
    if (options === undefined && handle !== null && typeof handle === 'object') [handle, options] = [undefined, handle];
    if (typeof server !== 'string') throw new SignallerError('invalid-argument', `server must be a ws://, wss://, http:// or https:// URL, got ${describe(server)}`);
    let url;
    try {
      url = new URL(server);
    } catch {
      throw new SignallerError('invalid-argument', `server ${JSON.stringify(server)} is not a URL`);
    }
    const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[url.protocol];
    if (!scheme) throw new SignallerError('invalid-argument', `server ${JSON.stringify(server)}: scheme "${url.protocol.slice(0, -1)}" must be ws, wss, http or https`);
    if (url.search || url.hash) throw new SignallerError('invalid-argument', `server ${JSON.stringify(server)} must have no query or fragment (give an access token as options.token)`);
    url.protocol = scheme;
    this.#server = url.href.replace(/\/+$/, '');
    if (handle !== undefined && typeof handle !== 'string') throw new SignallerError('invalid-argument', `handle must be a string, got ${describe(handle)}`);
    this.#handle = handle ?? null;
    options ??= {};
    if (typeof options !== 'object') throw new SignallerError('invalid-argument', `options must be an object, got ${describe(options)}`);
    for (const key of Object.keys(options)) {
      if (!OPTIONS.includes(key)) throw new SignallerError('invalid-argument', `unknown option options.${key} (known: ${OPTIONS.join(', ')})`);
    }
    const max = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    if (!Number.isSafeInteger(max) || max < 0) throw new SignallerError('invalid-argument', `options.maxBufferedBytes must be a whole number of bytes, got ${describe(max)}${typeof max === 'number' ? ` ${max}` : ''}`);
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token === '')) throw new SignallerError('invalid-argument', `options.token must be a non-empty string, got ${describe(options.token)}`);
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== 'function') throw new SignallerError('invalid-argument', 'this runtime has no WebSocket: pass one as options.WebSocket (in Node.js 20: `import { WebSocket } from "ws"`)');
    this.#options = { maxBufferedBytes: max, token: options.token, WebSocket: WebSocketImpl };
    // The WebSocket opened; the pipe ended abnormally (a SignallerError);
    // the pipe ended, once, with { code, name, reason, wasClean, error }.
    this.onopen = null;
    this.onerror = null;
    this.onclose = null;
  }

  /** The broker's URL, as ws:// or wss://. */
  get server() {
    return this.#server;
  }

  /** The handle given to the constructor, `listen` or `connect`. */
  get handle() {
    return this.#handle;
  }

  /** 'listen', 'connect', or null before either is called. */
  get role() {
    return this.#role;
  }

  /** 'idle', 'connecting', 'open' or 'closed'. */
  get state() {
    return this.#state;
  }

  /** Bytes of signals waiting for the WebSocket to open. */
  get bufferedBytes() {
    return this.#outboxBytes;
  }

  get onsignal() {
    return this.#onsignal;
  }

  // Messages that came while no handler was set are handed over to the
  // first one, after the assignment returns.
  set onsignal(handler) {
    this.#onsignal = typeof handler === 'function' ? handler : null;
    if (this.#onsignal && this.#inbox.length > 0) queueMicrotask(() => this.#drainInbox());
  }

  /** Waits on `handle` (or the constructor's) for the other side to connect. */
  listen(handle) {
    this.#start('listen', handle);
  }

  /** Connects to the side listening on `handle` (or the constructor's). */
  connect(handle) {
    this.#start('connect', handle);
  }

  /**
   * Sends `data` to the other side: a string as text, bytes (ArrayBuffer,
   * a typed array or DataView, Blob) as bytes, anything else as its JSON
   * text. Before the WebSocket is open it waits in a buffer of at most
   * `maxBufferedBytes`; beyond, it throws `buffer-full`.
   */
  signal(data) {
    if (this.#state === 'closed' || this.#userClosed) throw new SignallerError('closed', 'signal(): this signaller is closed; create a new one');
    const { frame, bytes } = frameOf(data);
    if (this.#state === 'open') {
      this.#ws.send(frame);
      return;
    }
    const max = this.#options.maxBufferedBytes;
    if (this.#outboxBytes + bytes > max) {
      throw new SignallerError('buffer-full', `signal(): ${bytes} more bytes would pass options.maxBufferedBytes (${max}) while the WebSocket is not open (${this.#outboxBytes} bytes wait)`);
    }
    this.#outbox.push(frame);
    this.#outboxBytes += bytes;
  }

  /** Closes the pipe normally (the other side sees code 1000); signals still buffered are dropped. */
  close() {
    if (this.#state === 'closed' || this.#userClosed) return;
    this.#userClosed = true;
    this.#outbox = [];
    this.#outboxBytes = 0;
    if (this.#ws) {
      this.#ws.close(1000);
    } else {
      this.#state = 'closed';
      this.#report({ code: 1000, reason: '', wasClean: true });
    }
  }

  #start(role, handle) {
    if (this.#state === 'closed' || this.#userClosed) throw new SignallerError('closed', `${role}(): this signaller is closed; create a new one`);
    if (this.#role) throw new SignallerError('already-started', `${role}(): this signaller already called ${this.#role}(); one signaller is one end of one pipe`);
    if (handle !== undefined) {
      if (typeof handle !== 'string') throw new SignallerError('invalid-argument', `${role}(handle): handle must be a string, got ${describe(handle)}`);
      this.#handle = handle;
    }
    if (this.#handle === null) throw new SignallerError('invalid-argument', `${role}(): no handle: give one here or to the constructor`);
    if (!isValidHandle(this.#handle)) {
      throw new SignallerError('invalid-handle', `handle ${JSON.stringify(this.#handle)} is not a signaller handle: 3 to 32 characters, a lowercase letter first, then lowercase letters, digits and single underscores, not ending with an underscore`);
    }
    const token = this.#options.token ? `?token=${encodeURIComponent(this.#options.token)}` : '';
    const url = `${this.#server}/${role}/${this.#handle}${token}`;
    this.#role = role;
    this.#state = 'connecting';
    const ws = new this.#options.WebSocket(url);
    this.#ws = ws;
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (this.#userClosed) return;
      this.#state = 'open';
      const outbox = this.#outbox;
      this.#outbox = [];
      this.#outboxBytes = 0;
      for (const frame of outbox) ws.send(frame);
      this.onopen?.();
    };
    ws.onmessage = (event) => {
      // (After close(), what still comes is not handed over.)
      if (this.#state !== 'open' || this.#userClosed) return;
      const data = typeof event.data === 'string' ? event.data : new Uint8Array(event.data);
      if (this.#onsignal && this.#inbox.length === 0) {
        this.#onsignal(data);
        return;
      }
      const bytes = typeof data === 'string' ? encoder.encode(data).byteLength : data.byteLength;
      if (this.#inboxBytes + bytes > this.#options.maxBufferedBytes) {
        this.#fail(new SignallerError('buffer-full', `more than options.maxBufferedBytes (${this.#options.maxBufferedBytes}) of messages came with no onsignal handler to take them`));
        return;
      }
      this.#inbox.push(data);
      this.#inboxBytes += bytes;
    };
    // The close event follows with the code; the error event says nothing more.
    ws.onerror = () => {};
    ws.onclose = (event) => {
      this.#state = 'closed';
      this.#outbox = [];
      this.#outboxBytes = 0;
      const failed = this.#failure;
      const error = failed ?? (this.#userClosed ? null : errorFor(event.code, event.reason, { opened, role, handle: this.#handle, url: url.replace(/\?.*$/, '') }));
      this.#report(event, error);
    };
  }

  // Ends this side for a reason of its own: a close code from the
  // application range (the broker tells the other side 1011).
  #fail(error) {
    if (this.#failure || this.#state === 'closed') return;
    this.#failure = error;
    this.#inbox = [];
    this.#inboxBytes = 0;
    this.#ws.close(4999, error.code);
  }

  #drainInbox() {
    while (this.#onsignal && this.#inbox.length > 0) {
      const data = this.#inbox.shift();
      this.#inboxBytes -= typeof data === 'string' ? encoder.encode(data).byteLength : data.byteLength;
      this.#onsignal(data);
    }
  }

  #report(event, error = null) {
    if (error) this.onerror?.(error);
    this.onclose?.({ code: event.code, name: CLOSE_CODES[event.code] ?? 'unknown', reason: event.reason ?? '', wasClean: Boolean(event.wasClean), error });
  }
}

export default Signaller;
