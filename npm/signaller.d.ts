// Types of peerwire/signaller (npm/signaller.js): signaller's client API for
// peerwire-broker's /listen/<handle> and /connect/<handle>.

/** The name of each close code a signaller pipe can end with. */
export declare const CLOSE_CODES: Readonly<{
  /** Either side closed normally. */
  1000: 'normal';
  /** The broker is shutting down. */
  1001: 'going-away';
  /** No close frame: the upgrade was refused (HTTP 404, 409, 403, 429) or the network dropped. */
  1006: 'abnormal';
  /** The connection broke a broker policy. */
  1008: 'policy-violation';
  /** A message was larger than the broker's `--max-frame-bytes`; both sides are closed. */
  1009: 'message-too-big';
  /** The other side went away without closing (or the broker failed). */
  1011: 'internal-error';
  /** Nobody connected within the broker's `--listen-timeout-ms`. */
  4000: 'listen-timeout';
  /** The pipe outlived the broker's `--pipe-timeout-ms`; both sides are closed. */
  4001: 'pipe-timeout';
  /** A side sent more than `--signaller-max-messages` (or faster than `--rate-limit`); both sides are closed. */
  4002: 'too-many-messages';
  /** This side did not read its messages fast enough. */
  4003: 'slow-consumer';
  /** The broker heard nothing from this side within `--heartbeat-timeout-ms`. */
  4004: 'heartbeat-timeout';
  /** The access token was refused, or the broker requires one. */
  4007: 'unauthorized';
}>;

/** A close code's name (`'unknown'` for a code not in {@link CLOSE_CODES}). */
export type SignallerCloseName = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES] | 'unknown';

/**
 * What went wrong. Thrown: `invalid-argument`, `invalid-handle`,
 * `already-started`, `closed`, `buffer-full` (a signal beyond
 * `maxBufferedBytes` before the WebSocket opened). Reported on `onerror`:
 * `refused` (the WebSocket never opened: nobody listens on the handle,
 * someone listens on it already, or the broker refused or cannot be
 * reached), `buffer-full` (more than `maxBufferedBytes` of messages came
 * with no `onsignal` handler), or the name of the close code that ended the
 * pipe abnormally.
 */
export type SignallerErrorCode =
  | 'invalid-argument'
  | 'invalid-handle'
  | 'already-started'
  | 'closed'
  | 'buffer-full'
  | 'refused'
  | Exclude<SignallerCloseName, 'normal'>;

/** Every error peerwire/signaller throws or reports. */
export declare class SignallerError extends Error {
  /** Always `'SignallerError'`. */
  readonly name: 'SignallerError';
  /** What went wrong, stable across versions. */
  readonly code: SignallerErrorCode;
  /** The close code, for an error that ended the pipe. */
  readonly closeCode?: number;
}

/** How a signaller pipe ended: reported once, on `onclose`. */
export interface SignallerCloseEvent {
  /** The WebSocket close code (1006: closed with no close frame, as when the broker refused the upgrade). */
  code: number;
  /** The code's name. */
  name: SignallerCloseName;
  /** The reason the broker gave, or `''`. */
  reason: string;
  /** Whether the WebSocket closed with a closing handshake. */
  wasClean: boolean;
  /** Why the pipe ended abnormally; `null` after a normal close by either side. */
  error: SignallerError | null;
}

/** A message from the other side: text as a string, bytes as a Uint8Array. */
export type SignalData = string | Uint8Array;

/** Options of {@link Signaller}. */
export interface SignallerOptions {
  /** Bytes of signals held before the WebSocket opens, and of messages held until `onsignal` is set (1 MiB). */
  maxBufferedBytes?: number;
  /** An access token, sent as `?token=` (see the README's Auth). */
  token?: string;
  /**
   * A WebSocket implementation where the runtime has none (Node.js 20: `ws`):
   * anything with the browser WebSocket's `binaryType`, `send`, `close` and
   * `onopen`/`onmessage`/`onerror`/`onclose`.
   */
  WebSocket?: {
    /** Opens a WebSocket to `url`. */
    new (url: string): object;
  };
}

/** Anything `signal()` carries: text, bytes, or a JSON value (sent as its JSON text). */
export type SignalInput = string | ArrayBuffer | ArrayBufferView | Blob | number | boolean | null | object;

/**
 * One end of a signaller pipe: `listen()` on a handle, or `connect()` to
 * the side listening on it; then what either side `signal()`s reaches the
 * other's `onsignal`.
 *
 * ```js
 * const s = new Signaller('wss://broker.example.com', 'a_handle')
 * s.onsignal = (data) => peer.signal(data)        // e.g. simple-peer
 * peer.on('signal', (data) => s.signal(data))     // sent once the pipe opens
 * s.listen()                                      // the other side: s.connect()
 * ```
 */
export declare class Signaller {
  /** `server`: the broker's URL (ws, wss, http or https; a path prefix is kept). */
  constructor(server: string, handle?: string, options?: SignallerOptions);
  constructor(server: string, options: SignallerOptions);
  /** The broker's URL, as ws:// or wss://. */
  readonly server: string;
  /** The handle given to the constructor, `listen` or `connect`; `null` before one is. */
  readonly handle: string | null;
  /** Which end this is, once `listen` or `connect` was called. */
  readonly role: 'listen' | 'connect' | null;
  /** `'idle'` before `listen`/`connect`, `'connecting'` until the WebSocket opens, then `'open'`, and `'closed'` once `onclose` fired (or `close()` was called before starting). */
  readonly state: 'idle' | 'connecting' | 'open' | 'closed';
  /** Bytes of signals waiting for the WebSocket to open. */
  readonly bufferedBytes: number;
  /** Each message from the other side, in order. */
  onsignal: ((data: SignalData) => void) | null;
  /** The WebSocket opened (for a listener: it listens; the other side may not be there yet). */
  onopen: (() => void) | null;
  /** The pipe ended abnormally; `onclose` follows. */
  onerror: ((error: SignallerError) => void) | null;
  /** The pipe ended, once, whatever the reason. */
  onclose: ((event: SignallerCloseEvent) => void) | null;
  /** Waits on `handle` (or the constructor's) for the other side. Throws `invalid-handle`, `already-started`, `closed`. */
  listen(handle?: string): void;
  /** Connects to the side listening on `handle` (or the constructor's). Throws `invalid-handle`, `already-started`, `closed`. */
  connect(handle?: string): void;
  /** Sends `data`, or holds it until the WebSocket opens. Throws `buffer-full`, `closed`, `invalid-argument`. */
  signal(data: SignalInput): void;
  /** Closes the pipe normally (the other side sees 1000). */
  close(): void;
}

/** Whether the broker routes `handle`: 3–32 characters, a lowercase letter first, then lowercase letters, digits and single underscores, not ending with one. */
export declare function isValidHandle(handle: string): boolean;

export default Signaller;
