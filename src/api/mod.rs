//! The classes JavaScript sees: `createPeer`, `Peer`, `Connection`, `Room`,
//! `Rendezvous`. Exported structs are cheap handles (an `Rc` to shared
//! state); methods take `&self` and return Promises, so two calls at once
//! never trip wasm-bindgen's "recursive use of an object". Errors are real
//! `Error` objects with a `name` and a `code` (see `errors`).

#[cfg(feature = "full")]
mod address;
pub mod connection;
pub mod context;
#[cfg(feature = "full")]
pub mod database;
pub mod errors;
pub mod events;
#[cfg(feature = "full")]
pub mod hubs;
#[cfg(feature = "media")]
pub mod media;
#[cfg(feature = "full")]
pub mod node;
pub mod options;
pub mod payload;
pub mod peer;
#[cfg(feature = "full")]
pub mod rest;
pub mod room;
pub mod stream;
#[cfg(feature = "full")]
pub mod system;

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `PeerOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "PeerOptions")]
    pub type PeerOptionsArg;
    /// `SendOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "SendOptions")]
    pub type SendOptionsArg;
    /// `BroadcastOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "BroadcastOptions")]
    pub type BroadcastOptionsArg;
    /// `SetOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "SetOptions")]
    pub type SetOptionsArg;
    /// `NodeOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "NodeOptions")]
    pub type NodeOptionsArg;
    /// `SocketOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "SocketOptions")]
    pub type SocketOptionsArg;
    /// `FetchInit` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "FetchInit")]
    pub type FetchInitArg;
    /// `BroadcastChannelHubOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "BroadcastChannelHubOptions")]
    pub type BroadcastChannelHubOptionsArg;
    /// `StreamOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "StreamOptions")]
    pub type StreamOptionsArg;
    /// `CallOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "CallOptions")]
    pub type CallOptionsArg;
    /// An optional `MediaStream` argument as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "MediaStream")]
    pub type MediaStreamArg;
    /// `addTrack`'s streams as TypeScript sees them.
    #[wasm_bindgen(typescript_type = "MediaStream | MediaStream[]")]
    pub type MediaStreamsArg;
    /// `TestPatternOptions` as TypeScript sees it.
    #[wasm_bindgen(typescript_type = "TestPatternOptions")]
    pub type TestPatternOptionsArg;
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** Anything `send()` accepts: text, bytes, or a JSON value. */
export type Sendable = string | ArrayBuffer | ArrayBufferView | Blob | null | boolean | number | object;

/** A STUN/TURN server, as in `RTCIceServer`. */
export interface IceServer {
  /** One URL or several, e.g. `"stun:stun.example.com:3478"` or `"turn:turn.example.com:3478?transport=tcp"`. */
  urls: string | string[];
  /** The TURN user name. */
  username?: string;
  /** The TURN password. */
  credential?: string;
}

/** What `conn.stats()` resolves. */
export interface ConnectionStats {
  /**
   * How the data flows, from the selected candidate pair: `'host'` (directly between local
   * addresses), `'srflx'` (through a NAT mapping found by STUN), `'prflx'` (an address learnt
   * during the checks: a NAT mapping, or a host hidden behind an mDNS name), `'relay'`
   * (through TURN), `'broker'` (the broker's relay: no WebRTC path was found); `null` before
   * ICE picked a pair.
   */
  route: 'host' | 'srflx' | 'prflx' | 'relay' | 'broker' | null;
  /** The selected pair's local candidate type (`host`, `srflx`, `prflx`, `relay`). */
  localCandidateType: string | null;
  /** The selected pair's remote candidate type (`host`, `srflx`, `prflx`, `relay`). */
  remoteCandidateType: string | null;
  /** `'udp'` or `'tcp'`: the transport of the local candidate (for a relay candidate, between the TURN server and the remote). */
  protocol: string | null;
  /** For a local relay candidate, how this side reaches its TURN server: `'udp'`, `'tcp'` or `'tls'`; otherwise `null`. */
  relayProtocol: string | null;
  /** Round-trip time of the selected pair, in ms (`null` until measured). */
  rtt: number | null;
  /** Bytes sent on the connection's RTCPeerConnection (its transport: ICE restarts keep counting; a move to
   * the broker's relay or to a new direct path counts from 0 on the new path). */
  bytesSent: number;
  /** Bytes received, counted as `bytesSent` is. */
  bytesReceived: number;
  /** The browser's whole `RTCStatsReport` (`null` on the broker's relay). */
  report: RTCStatsReport | null;
}

/** Options of `createPeer`. Only `broker` is required. */
export interface PeerOptions {
  /**
   * Broker URL, e.g. `ws://localhost:8080` (the `/ws` path is added when missing), or a list of
   * them to fail over between: `['wss://a.example.com', 'wss://b.example.com']`. The peer
   * connects to the first; when the connection fails or drops, the reconnect tries the next,
   * round-robin, and registers there with the same id (connections between peers stay open).
   * `createPeer` tries each URL once before it rejects. `peer.broker` is the one in use.
   */
  broker: string | string[];
  /** The id to register (or pass it as createPeer's first argument). Omit it for a broker-assigned id. */
  id?: string;
  /**
   * Access token for a broker started with `--auth-secret` (an HS256 JWT your server mints;
   * see "Auth" in the README). A function is called before every (re)connect, so it can
   * fetch a fresh short-lived token: `token: () => fetch('/peer-token').then(r => r.text())`.
   */
  token?: string | (() => string | Promise<string>);
  /** STUN/TURN servers; by default the ones the broker hands out. */
  iceServers?: IceServer[];
  /** Largest message `send()` accepts and a remote may send, in bytes. Default 64 MiB. */
  maxMessageSize?: number;
  /** Time allowed for registering and for each `connect()`, in ms. Default 15000. */
  connectTimeout?: number;
  /** Time allowed for a broker request (join, find, ...), in ms. Default 10000. */
  requestTimeout?: number;
  /** Keep-alive ping interval on idle connections, in ms. Default 1000. */
  keepAliveInterval?: number;
  /**
   * Silence after which a connection's network path counts as lost, in ms: ICE restarts begin
   * (see `iceRestarts`). Also how long the broker may take to answer a check. Default 4000.
   */
  keepAliveTimeout?: number;
  /**
   * ICE restarts tried when an open connection loses its network path (silence, ICE
   * `disconnected` or `failed`, the browser's network change) before it moves to the broker's
   * relay (or, with `relay: 'never'` or a broker that refuses, closes with
   * `ConnectionFailedError`). Messages sent meanwhile wait and arrive in order. `0`: close at
   * once (no restarts, no move to the relay). Default 3.
   */
  iceRestarts?: number;
  /** How long one ICE restart may take to bring the path back, in ms. Default 5000. */
  iceRestartTimeout?: number;
  /** How long ICE may stay `disconnected` before a restart, in ms. Default 2000. */
  disconnectedGrace?: number;
  /**
   * After this much silence from the broker, in ms, the SDK pings it; no answer within
   * `keepAliveTimeout` means the socket is dead (after a network change) and it reconnects,
   * keeping its id. `0`: never. Default 15000.
   */
  brokerKeepAlive?: number;
  /**
   * When a connection runs over the broker's relay (the broker forwards its bytes) instead of
   * WebRTC: `'fallback'` (default) when WebRTC finds no path within `relayAfter` or ICE fails
   * while connecting; `'always'` (no RTCPeerConnection at all); `'never'`. Both sides must
   * allow it, and the broker must relay (its `--relay` flags cap the rate and bytes).
   * `conn.stats().route` is `'broker'` on the relay.
   */
  relay?: 'fallback' | 'always' | 'never';
  /** How long a connection looks for a WebRTC path before it falls back to the relay, in ms. Default 7500. */
  relayAfter?: number;
  /**
   * Bytes each channel keeps of what it sent until the remote acknowledges them, so that a
   * connection moving to another path (the relay when its ICE restarts are used up, or back to a
   * direct path) sends them again and loses nothing; a channel with this much unacknowledged
   * waits. Default 4 MiB, at least 64 KiB.
   */
  resendBuffer?: number;
  /**
   * While a connection is on the broker's relay after WebRTC found no path, how long it waits
   * before it tries a direct path again, in ms (doubling after each try that finds none, up to
   * 16 times this). `0`: it stays on the relay. Default 30000.
   */
  directRetry?: number;
  /** Deliver this side's messages in order (default true). `false` for games and live data. */
  ordered?: boolean;
  /** Give up retransmitting a lost message after this many tries (unreliable). Unset: reliable. */
  maxRetransmits?: number;
  /** Stop handing data to the browser above this many buffered bytes. Default 1 MiB, at most 8 MiB. */
  bufferHigh?: number;
  /** Resume sending when the buffer drains to this many bytes. Default 256 KiB. */
  bufferLow?: number;
  /** Bytes all remotes together may make this peer hold (partial messages, early frames,
   * messages waiting for a listener). Past it the offending connection closes with
   * `LimitExceededError`. Default 256 MiB. */
  memoryBudget?: number;
  /** The same, for one connection. Default 160 MiB. */
  connectionBudget?: number;
  /** Streams and sockets open at once on one connection (a remote opening more is cut off). Default 256. */
  maxStreams?: number;
  /** The connection budget: connections open (or opening) at once. Past it, `connect()` rejects
   * with `LimitExceededError`, and an incoming connection is refused (reported on the `error`
   * event; the dialling side's `connect()` rejects with `LimitExceededError` at once). Default
   * 256, smoke's. `node.system` shows the count and the refusals. */
  maxConnections?: number;
  /** New connections one remote id may offer per minute (each costs an RTCPeerConnection). Default 30. */
  maxOffersPerMinute?: number;
  /** How long a closing connection or stream may take to confirm its close before it is released, in ms. Default 5000. */
  closeTimeout?: number;
  /**
   * A WebRTC implementation where the runtime has none (Node.js): an `RTCPeerConnection`
   * constructor, or a module holding one, e.g. `rtc: await import('node-datachannel/polyfill')`.
   */
  rtc?: {
    /** The module's `RTCPeerConnection` constructor. */
    RTCPeerConnection: unknown;
  } | (new (config?: RTCConfiguration) => RTCPeerConnection);
  /** A `WebSocket` constructor where the runtime has none (Node.js 20): `(await import('ws')).WebSocket`. */
  WebSocket?: unknown;
  /**
   * Fields copied onto every `RTCConfiguration`, e.g. `{ iceTransportPolicy: 'relay' }`,
   * `bundlePolicy`, `certificates`. An `iceServers` here replaces the `iceServers` option.
   */
  rtcConfig?: RTCConfiguration;
  /**
   * Log to the console, each line prefixed with this peer's id: `'error'` connections closed by
   * an error (timeouts, ICE failure, limits hit) and the broker link lost; `'warn'` also offers
   * refused; `'info'` also connection
   * and ICE states, registration and broker reconnects; `'debug'` (or `true`) also every
   * negotiation step, candidate and signal routed. Default `false` (nothing).
   */
  debug?: boolean | 'error' | 'warn' | 'info' | 'debug';
}

/** Options of `send()`. */
export interface SendOptions {
  /** Called as the message is handed to the transport, with bytes sent and total. */
  onProgress?: (sent: number, total: number) => void;
}

/** Options of `room.broadcast()`. */
export interface BroadcastOptions {
  /** Deliver to this peer too. Default false. */
  includeSelf?: boolean;
}

/** Options of `room.set()`. */
export interface SetOptions {
  /** Remove the key after this many milliseconds (members then get a `state` event with
   * `removed: "expired"`). Unset: the key stays until deleted. */
  ttl?: number;
}

/** Where a `Connection` is: `"connecting"` until its data channel opens, then `"open"`, then `"closed"`. */
export type ConnectionState = "connecting" | "open" | "closed";
/** Where a `Stream` is: it opens, then each side may end its half (`"local-ended"`: this side
 * ended, `"remote-ended"`: the remote did), and it is `"closed"` once both have or it was closed. */
export type StreamState = "opening" | "open" | "local-ended" | "remote-ended" | "closed";

/** Options of `openStream()`: this side's sending policy for the stream. */
export interface StreamOptions {
  /** Deliver in order (default: the connection's setting, normally true). */
  ordered?: boolean;
  /** Retransmit a lost message at most this many times (unreliable). */
  maxRetransmits?: number;
}

/** Every `code` the broker refuses a request with (the "broker" rows of docs/ERRORS.md). */
export type BrokerErrorCode =
  | "bad-json" | "bad-message" | "unknown-type" | "invalid-id" | "id-taken" | "bad-resume-token"
  | "not-registered" | "already-registered" | "unknown-peer" | "peer-gone" | "queue-full"
  | "invalid-room" | "not-in-room" | "room-full" | "too-many-rooms" | "invalid-state-key"
  | "invalid-key" | "key-taken" | "unknown-key" | "not-opener" | "too-many-keys"
  | "unauthorized" | "forbidden" | "invalid-hostname" | "hostname-taken" | "unknown-host"
  | "too-many-hostnames" | "relay-refused" | "relay-limit" | "unavailable" | "rate-limited"
  | "too-big" | "state-full" | "fanout-limit" | "internal";

/**
 * Every error `name` the SDK uses, with the `code`s an error of that name carries.
 * What each means and what to do about it: docs/ERRORS.md.
 */
export interface PeerwireErrorCodes {
  /** An id breaks the id rules. */
  InvalidIdError: "invalid-id";
  /** Another peer holds this id. */
  IdTakenError: "id-taken";
  /** A bad argument; the message names it. */
  InvalidArgumentError: "invalid-argument";
  /** `createPeer` could not reach or register with the broker. */
  BrokerUnreachableError: "broker-unreachable";
  /** The broker refused the token, or the id or room needs one. */
  UnauthorizedError: "unauthorized" | "forbidden";
  /** The broker refused a request; `code` is the broker's. */
  BrokerError: BrokerErrorCode;
  /** The remote id is not online. */
  PeerUnavailableError: "unknown-peer" | "peer-gone" | "queue-full" | "unavailable";
  /** No connection within `connectTimeout`; the message says what was missing. */
  ConnectTimeoutError: "connect-timeout";
  /** ICE failed, or the remote went silent. */
  ConnectionFailedError: "connection-failed";
  /** The peer, connection, stream or room is closed. */
  ClosedError: "closed";
  /** A message above `maxMessageSize` (or above one frame on an unreliable channel). */
  MessageTooLargeError: "message-too-large";
  /** The remote sent bad frames. */
  ProtocolError: "protocol-error";
  /** Nothing listens on that port. */
  PortClosedError: "port-closed";
  /** No node registered that hostname. */
  UnknownHostError: "unknown-host";
  /** Another node holds that hostname. */
  HostnameTakenError: "hostname-taken";
  /** Too much waits to be sent, or to be read. */
  QueueFullError: "queue-full";
  /** A resource cap was reached; the message names its option. */
  LimitExceededError: "limit-exceeded";
  /** The broker did not answer within `requestTimeout`. */
  TimeoutError: "timeout";
  /** A `Database` has no store of that name (a commit that writes to it creates it). */
  UnknownStoreError: "unknown-store";
  /** IndexedDB failed: the storage quota is full, an insert's key is taken, or another failure. */
  DatabaseError: "quota-exceeded" | "key-exists" | "database-error";
  /** The callee rejected `peer.call()`; the message carries its reason. */
  CallRejectedError: "call-rejected";
  /** Media cannot flow: the connection runs over the broker's relay, or the runtime has no media. */
  MediaUnavailableError: "media-unavailable";
}

/** The `name` of an error the SDK throws or emits, e.g. `"ConnectTimeoutError"`. */
export type PeerwireErrorName = keyof PeerwireErrorCodes;

/** The `code` of an error the SDK throws or emits, e.g. `"unknown-peer"`. */
export type PeerwireErrorCode = PeerwireErrorCodes[PeerwireErrorName];

/** An SDK error of one name: a real `Error` whose `code` is one of that name's codes. */
export interface NamedPeerwireError<N extends PeerwireErrorName> extends Error {
  /** What went wrong, e.g. `"PeerUnavailableError"`. */
  name: N;
  /** A stable code, e.g. `"unknown-peer"` (the broker's code where the broker refused). */
  code: PeerwireErrorCodes[N];
}

/**
 * An error the SDK throws (rejects) or emits (`error` events): a union over every name, so
 * checking `err.name` narrows `err.code` too. Narrow a caught `unknown` with
 * `isPeerwireError(err)` or `isPeerwireError(err, "ConnectTimeoutError")`.
 */
export type PeerwireError<N extends PeerwireErrorName = PeerwireErrorName> =
  N extends PeerwireErrorName ? NamedPeerwireError<N> : never;

/**
 * Whether `err` is an error the SDK threw or emitted (an `Error` with one of the SDK's names
 * and a string `code`), and with `name`, one of that name. A type guard:
 *
 * ```ts
 * try { await peer.connect("bob") } catch (err) {
 *   if (isPeerwireError(err, "PeerUnavailableError")) console.log("offline:", err.code)
 *   else throw err
 * }
 * ```
 */
export function isPeerwireError<N extends PeerwireErrorName = PeerwireErrorName>(err: unknown, name?: N): err is PeerwireError<N>;

/** A message from any connection of a peer (its `message` event). */
export interface MessageEnvelope<T = unknown> {
  /** The sender's id. */
  from: string;
  /** The message: a string, a `Uint8Array` for bytes, or the JSON value that was sent. */
  message: T;
}

/** The broker link, as the `broker` event reports it. */
export interface BrokerStatus {
  /** `"registered"`: the id is registered (again); `"disconnected"`: the link dropped and the peer is reconnecting;
   * `"refused"`: after a reconnect the broker would not give the id back (see `refused`); the peer keeps asking
   * for the same id (at once without its dead resume token, or after each backoff while someone else holds it)
   * until it has it again (`"registered"` with `resumed: false`) or `peer.close()`. */
  state: "registered" | "disconnected" | "refused";
  /** The registered id (when `"registered"`), or the id asked for (when `"refused"`). */
  id?: string;
  /** Why the id was not given back (when `"refused"`): `"bad-resume-token"` (the broker restarted without its key,
   * or the grace window ended) or `"id-taken"` (someone else registered the id meanwhile). */
  refused?: "bad-resume-token" | "id-taken";
  /** The id was reclaimed with its resume token after a reconnect (when `"registered"`). */
  resumed?: boolean;
  /** This registration follows a reconnect, not the first connect (when `"registered"`). */
  reconnect?: boolean;
  /** The broker's URL: the one registered with (`"registered"`), or the one whose link dropped or
   * could not be opened (`"disconnected"`); the reconnect tries the next URL of the `broker` list. */
  url?: string;
  /** The WebSocket close code (when `"disconnected"`; see docs/ERRORS.md). */
  code?: number;
  /** The close reason (when `"disconnected"`), or the broker's explanation (when `"refused"`). */
  reason?: string;
}

/** A broadcast to a room (its `broadcast` event). */
export interface BroadcastEvent<T = unknown> {
  /** The sender's id. */
  from: string;
  /** The JSON value broadcast. */
  data: T;
}

/** A change of a room's shared state (its `state` event): a key set, or a key removed.
 * Check `removed` to tell them apart. */
export type StateEvent<T = unknown> = StateSetEvent<T> | StateRemovedEvent;

/** A key of a room's shared state was set. */
export interface StateSetEvent<T = unknown> {
  /** The key. */
  key: string;
  /** Its new value. */
  value: T;
  /** The member that set it. */
  from: string;
  /** Its time to live in ms, if it was set with one. */
  ttl?: number;
  /** Absent: the key was set, not removed. */
  removed?: undefined;
}

/** A key of a room's shared state went away. */
export interface StateRemovedEvent {
  /** The key. */
  key: string;
  /** Absent: the key has no value any more. */
  value?: undefined;
  /** Why: `room.delete()`, or its ttl ran out. */
  removed: "deleted" | "expired";
}

/** Events of a `Peer` (and a `Node`), for `peer.on(type, listener)`. */
export interface PeerEvents {
  /** The id is registered: at start and after every reconnect that reclaimed it. */
  register: string;
  /** A remote peer opened a connection to this one. */
  connection: Connection;
  /** A message from any connection. */
  message: MessageEnvelope;
  /** Something went wrong outside any call that could reject (a refused offer, a broker error, ...). */
  error: PeerwireError;
  /** The opener of a key this peer joined went away; `code` 4001: the broker ended the pairing at its pipe deadline. */
  unavailable: {
    /** The rendezvous key. */
    key: string;
    /** The opener's id. */
    id: string;
    /** 4001 when the pipe deadline ended the pairing. */
    code?: number;
  };
  /** The broker link went down or came back, or the broker would not give the id back after a reconnect. */
  broker: BrokerStatus;
}

/** Events of a `Connection`, for `conn.on(type, listener)`. */
export interface ConnectionEvents {
  /** The data channel is open. */
  open: void;
  /** A message from the remote: a string, a `Uint8Array`, or a JSON value. */
  message: unknown;
  /** The connection closed, by either side or by failure; `reason` says why. */
  close: {
    /** Why it closed, e.g. "closed by the remote peer". */
    reason: string;
    /** The remote peer's id. */
    peerId: string;
  };
  /** The connection failed (the `close` event follows), or lost something and stays open:
   * `MediaUnavailableError` when it moved to the broker's relay and the media it carried stopped
   * (each remote track also gets `track-ended` with `reason: "relay"`). With no `error` listener
   * on the connection, that one goes to the peer's `error` event. */
  error: PeerwireError;
  /** The remote opened a stream with `openStream(name)`. */
  stream: Stream;
}

/** Events of a `Stream` (or socket), for `stream.on(type, listener)`. */
export interface StreamEvents {
  /** The stream's channel is open. */
  open: void;
  /** A message from the remote: a string, a `Uint8Array`, or a JSON value. */
  message: unknown;
  /** The remote ended its side (half-close); this side may still send. */
  end: void;
  /** Both directions are closed. */
  close: {
    /** Why it closed. */
    reason: string;
  };
  /** The stream failed (the `close` event follows). */
  error: PeerwireError;
}

/** Events of a `Room`, for `room.on(type, listener)`. */
export interface RoomEvents {
  /** A peer joined the room (its id). */
  "peer-joined": string;
  /** A peer left the room or went offline (its id). */
  "peer-left": string;
  /** A member broadcast to the room. */
  broadcast: BroadcastEvent;
  /** A key was set (`value`, `from`, `ttl`) or removed (`removed`: "deleted" | "expired"). */
  state: StateEvent;
  /** This peer is no longer in the room (left, peer closed, or id lost). */
  closed: void;
}

/** Events of a `Rendezvous` (an opened key), for `key.on(type, listener)`. */
export interface RendezvousEvents {
  /** A peer joined the key. */
  joiner: string;
  /** A joiner left (or the broker ended the pairing at its pipe deadline, 4001). */
  unavailable: string;
  /** The broker closed the key: `code` 4000, nobody joined within its listen timeout. */
  closed: {
    /** The close code (4000). */
    code: number;
    /** Why. */
    reason: string;
  };
}

export interface Peer {
  /** Listens for messages from every connection. `T` is the message type you expect
   * (not checked at run time). */
  on<T = unknown>(type: "message", listener: (event: MessageEnvelope<T>) => void): void;
  /** Listens for an event; an unknown event name throws `InvalidArgumentError`. */
  on<K extends keyof PeerEvents>(type: K, listener: (event: PeerEvents[K]) => void): void;
  /** Removes a `message` listener. */
  off<T = unknown>(type: "message", listener: (event: MessageEnvelope<T>) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof PeerEvents>(type: K, listener: (event: PeerEvents[K]) => void): void;
}
export interface Connection {
  /** Listens for the remote's messages. `T` is the message type you expect (not checked at run time). */
  on<T = unknown>(type: "message", listener: (message: T) => void): void;
  /** Listens for an event; an unknown event name throws `InvalidArgumentError`. */
  on<K extends keyof ConnectionEvents>(type: K, listener: (event: ConnectionEvents[K]) => void): void;
  /** Removes a `message` listener. */
  off<T = unknown>(type: "message", listener: (message: T) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof ConnectionEvents>(type: K, listener: (event: ConnectionEvents[K]) => void): void;
}
export interface Stream {
  /** Listens for the remote's messages. `T` is the message type you expect (not checked at run time). */
  on<T = unknown>(type: "message", listener: (message: T) => void): void;
  /** Listens for an event; an unknown event name throws `InvalidArgumentError`. */
  on<K extends keyof StreamEvents>(type: K, listener: (event: StreamEvents[K]) => void): void;
  /** Removes a `message` listener. */
  off<T = unknown>(type: "message", listener: (message: T) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof StreamEvents>(type: K, listener: (event: StreamEvents[K]) => void): void;
}
export interface Room {
  /** Listens for broadcasts. `T` is the data type you expect (not checked at run time). */
  on<T = unknown>(type: "broadcast", listener: (event: BroadcastEvent<T>) => void): void;
  /** Listens for changes of the shared state. `T` is the value type you expect (not checked at run time). */
  on<T = unknown>(type: "state", listener: (event: StateEvent<T>) => void): void;
  /** Listens for an event; an unknown event name throws `InvalidArgumentError`. */
  on<K extends keyof RoomEvents>(type: K, listener: (event: RoomEvents[K]) => void): void;
  /** Removes a `broadcast` listener. */
  off<T = unknown>(type: "broadcast", listener: (event: BroadcastEvent<T>) => void): void;
  /** Removes a `state` listener. */
  off<T = unknown>(type: "state", listener: (event: StateEvent<T>) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof RoomEvents>(type: K, listener: (event: RoomEvents[K]) => void): void;
  /** One key's value (`undefined` if unset), as the type you expect (not checked at run time). */
  get<T = unknown>(key: string): T | undefined;
}
export interface Rendezvous {
  /** Listens for an event; an unknown event name throws `InvalidArgumentError`. */
  on<K extends keyof RendezvousEvents>(type: K, listener: (event: RendezvousEvents[K]) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof RendezvousEvents>(type: K, listener: (event: RendezvousEvents[K]) => void): void;
}
declare global {
  /** wasm-bindgen gives every class a `[Symbol.dispose]()` (for `using`); this declares the
   * symbol for projects whose `lib` predates it (`es2020`, `es2022`), so the definitions
   * compile without `esnext`. At run time it exists where the browser has it. */
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}
"#;

/// The definitions of media (the `media` feature; not in `peerwire/lite`):
/// its options and events, merged into `PeerEvents` and `ConnectionEvents`.
#[cfg(feature = "media")]
#[wasm_bindgen(typescript_custom_section)]
const TS_MEDIA_TYPES: &str = r#"
/** Options of `peer.call()`. */
export interface CallOptions {
  /** Any JSON value, handed to the callee as `call.metadata`. */
  metadata?: unknown;
}

/** A remote track arrived (a connection's `track` event). */
export interface TrackEvent {
  /** The remote track (ends when the connection closes). */
  track: MediaStreamTrack;
  /** The remote streams it belongs to (as the sender added it). */
  streams: MediaStream[];
  /** The sender's stream ids (the `id` of each of `streams`). */
  streamIds: string[];
}

/** A remote track was muted, unmuted or removed by its sender. */
export interface RemoteTrackEvent {
  /** The remote track. */
  track: MediaStreamTrack;
  /** The remote streams it belongs to. */
  streams: MediaStream[];
}

/** Why a remote track ended (`track-ended`): `"removed"` the remote called `removeTrack` or
 * `removeStream`; `"ended"` the remote's own track ended (it called `track.stop()`, or its camera
 * or microphone went away); `"relay"` the connection moved to the broker's relay, which carries
 * no media (the connection's `error` event says so too, with `MediaUnavailableError`). */
export type TrackEndReason = "removed" | "ended" | "relay";

/** A remote track that ended: the `track-ended` event of a `Connection`.
 *
 * ```ts
 * conn.on("track-ended", ({ track, reason }) => {
 *   if (reason === "relay") showBanner("video paused: no direct path");
 * });
 * ```
 */
export interface TrackEndedEvent extends RemoteTrackEvent {
  /** Why it ended. */
  reason: TrackEndReason;
}

export interface PeerEvents {
  /** A remote peer called (`peer.call`): `answer(stream?)` or `reject(reason?)` it. With no
   * `call` listener, calls are rejected. */
  call: IncomingCall;
}

export interface ConnectionEvents {
  /** A remote track arrived (the remote called `addTrack`, `addStream`, `call` or `answer`).
   * Kept for the first listener if none is attached yet. */
  track: TrackEvent;
  /** The first track of a remote MediaStream arrived: the stream (its `id` is the sender's).
   * Kept for the first listener if none is attached yet. */
  mediastream: MediaStream;
  /** The remote muted a track it sends (`muteTrack`), or its source stopped producing media
   * for now (the sender's track fired `mute`). */
  "track-muted": RemoteTrackEvent;
  /** The remote unmuted a track it sends (`muteTrack(track, false)`, or its source's `unmute`). */
  "track-unmuted": RemoteTrackEvent;
  /** A remote track ended: the remote removed it, stopped it (or its device went away), or the
   * connection moved to the broker's relay; `reason` says which. */
  "track-ended": TrackEndedEvent;
}
"#;

/// The definitions of the full build only: `Node`, its hubs, sockets and rest.
#[cfg(feature = "full")]
#[wasm_bindgen(typescript_custom_section)]
const TS_FULL_TYPES: &str = r#"
/** The interface a `Node` talks to its hub through; `PageHub`,
 * `BroadcastChannelHub` implement it, and so can your own. */
export interface Hub {
  /** A new endpoint: `deliver(from, data)` receives its signals; resolves its address. */
  attach(deliver: (from: string, data: string) => void): string | Promise<string>;
  /** The endpoint at `address` is gone (its node closed): forget it and its hostnames. */
  detach(address: string): void;
  /** Hands `data` to `to`; throw or reject when `to` is unknown, so connecting fails at once. */
  send(from: string, to: string, data: string): void | Promise<void>;
  /** Maps `hostname` to `address`; throw or reject (ideally an Error named
   * `HostnameTakenError`) when another node holds it. */
  register(address: string, hostname: string): void | Promise<void>;
  /** Throw or reject (ideally an Error named `UnknownHostError`) when unknown. */
  lookup(hostname: string): string | Promise<string>;
  /** STUN/TURN servers for the nodes on this hub; none by default (enough on one machine or network). */
  iceServers?: IceServer[];
}

/** Options of `new Node()`: a hub (default: the page's `PageHub`), and the
 * `PeerOptions` other than `broker` and `id`. */
export interface NodeOptions extends Omit<PeerOptions, "broker" | "id"> {
  /** Where the node gets its address and meets other nodes: `PageHub` (this page, the default),
   * `BroadcastChannelHub` (tabs of one origin), `NetworkHub` (a broker), or your own `Hub`. */
  hub?: Hub | NetworkHub;
}

/** Options of `new BroadcastChannelHub(name, options)`. */
export interface BroadcastChannelHubOptions {
  /** How long a lookup waits for another tab to answer before `UnknownHostError`, in ms. Default 300. */
  lookupTimeout?: number;
}

/** Options of `node.media.createTestPattern()`. */
export interface TestPatternOptions {
  /** Width in pixels. Default 320. */
  width?: number;
  /** Height in pixels. Default 240. */
  height?: number;
  /** Frames a second. Default 15. */
  frameRate?: number;
}

/** Options of `sockets.connect()`. */
export interface SocketOptions {
  /** Give up after this many ms (default `connectTimeout`). */
  timeout?: number;
}

/** Options of `rest.fetch()`. */
export interface FetchInit {
  /** The request method. Default `"GET"`. */
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | string;
  /** Request headers (names are sent lowercase). */
  headers?: Record<string, string>;
  /** A string, bytes, or any JSON value. */
  body?: unknown;
  /** Give up connecting after this many ms (default `connectTimeout`). */
  timeout?: number;
}

/** A route of `rest.createServer()`: answer with `res.send()`, `res.json()`, `res.bytes()`,
 * `res.stream()`, `res.records()` or `res.mediastream()`. A handler that throws or rejects answers 500 with its message. */
export type RestHandler = (req: RestRequest, res: RestResponse) => void | Promise<void>;

/** Events of a `Node`: those of a `Peer`. */
export interface NodeEvents extends PeerEvents {}
export interface Node {
  /** Listens for messages from every connection. `T` is the message type you expect (not checked at run time). */
  on<T = unknown>(type: "message", listener: (event: MessageEnvelope<T>) => void): void;
  /** Listens for an event; an unknown event name throws `InvalidArgumentError`. */
  on<K extends keyof NodeEvents>(type: K, listener: (event: NodeEvents[K]) => void): void;
  /** Removes a `message` listener. */
  off<T = unknown>(type: "message", listener: (event: MessageEnvelope<T>) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof NodeEvents>(type: K, listener: (event: NodeEvents[K]) => void): void;
}
export interface FetchResponse {
  /** The body parsed as JSON, as the type you expect (not checked at run time). */
  json<T = unknown>(): Promise<T>;
}
export interface RestRequest {
  /** The body parsed as JSON, as the type you expect (not checked at run time). */
  json<T = unknown>(): T;
}
export interface FetchResponse {
  /** For a record set: a `Query` over the records, as the type you expect (not checked at
   * run time), pulled from the server one per step of the iteration. */
  query<T = unknown>(): Query<T>;
}

/** What `node.system` gives: a snapshot of the node's counters. */
export interface NodeSystem {
  /** Milliseconds since the node started. */
  uptime: number;
  /** Connections open or opening now. */
  connections: number;
  /** The connection budget (`maxConnections`, default 256): past it, `connect()` rejects and
   * incoming connections are refused, with `LimitExceededError` on both sides. */
  maxConnections: number;
  /** Connections made since start (dialled or accepted). */
  connectionsOpened: number;
  /** Connections refused or not made because the budget was full. */
  connectionsRefused: number;
  /** Frame bytes received on connections (data channels or the broker's relay). */
  bytesIn: number;
  /** Frame bytes sent on connections. */
  bytesOut: number;
  /** Each port that is bound or has taken sockets, by number. */
  ports: PortSystem[];
}

/** One port in `node.system.ports`, as the listening side sees it. */
export interface PortSystem {
  /** The port number. */
  port: number;
  /** Something listens on it now (a socket server, a rest server, `network.bind`). */
  bound: boolean;
  /** Sockets (or rest requests) it took that are still open. */
  open: number;
  /** Sockets it took since start, `localhost` ones included. */
  accepted: number;
  /** Bytes received on its sockets. */
  bytesIn: number;
  /** Bytes sent on its sockets. */
  bytesOut: number;
}

/** One connection in `node.network.connections`. */
export interface NetworkConnection {
  /** The remote node's address. */
  address: string;
  /** `'connecting'` until its channel opens. */
  state: "connecting" | "open";
  /** How its data flows, as far as the node knows: `'direct'` (a WebRTC data channel; which
   * candidates, host, srflx or TURN relay, is in `conn.stats().route`), `'broker'` (the broker's
   * relay: no WebRTC path), `'connecting'` (not open yet). */
  path: "connecting" | "direct" | "broker";
  /** This node dialled it. */
  initiated: boolean;
  /** Streams and sockets open on it. */
  streams: number;
  /** Frame bytes received on it. */
  bytesIn: number;
  /** Frame bytes sent on it. */
  bytesOut: number;
}

/** A record of a `Database`: an object with a string `key`. */
export interface DatabaseRecord {
  /** Its key in its store (`db.key()` makes one). */
  key: string;
}

/**
 * Records in the browser's IndexedDB, in named stores (smoke's database). Writes are buffered
 * and land together on `commit()`; reads and queries go to IndexedDB. Serve a query over rest
 * with `res.query(db.query(store))`: each record is read only when the client pulls it.
 *
 * Errors: `InvalidArgumentError` (a bad store name or record), `ClosedError` (after `close()`),
 * `UnknownStoreError` (a read of a store never written), `DatabaseError` (`quota-exceeded`,
 * `key-exists`, `database-error`).
 */
export declare class Database {
  /** Opens (or creates) the IndexedDB database `name`. */
  constructor(name: string);
  /** The database's name. */
  readonly name: string;
  /** Records read from IndexedDB by this database's queries so far. */
  readonly reads: number;
  /** Writes waiting for `commit()`. */
  readonly pending: number;
  /** A new unique key; keys made later sort after earlier ones. */
  key(): string;
  /** Adds `record` to `store` at the next commit (`DatabaseError` `key-exists` if its key is taken). */
  insert<T extends DatabaseRecord>(store: string, record: T): void;
  /** Replaces (or adds) the record with `record.key` at the next commit. */
  update<T extends DatabaseRecord>(store: string, record: T): void;
  /** Removes a record, given as the record or its key, at the next commit. */
  delete(store: string, recordOrKey: DatabaseRecord | string): void;
  /** Applies the buffered writes in one transaction: all land, or none. Creates the stores written to. */
  commit(): Promise<void>;
  /** The record with `key`, or `undefined`. */
  get<T extends DatabaseRecord = DatabaseRecord>(store: string, key: string): Promise<T | undefined>;
  /** Every key of `store`, in order. */
  keys(store: string): Promise<string[]>;
  /** How many records `store` holds. */
  count(store: string): Promise<number>;
  /** The names of the stores. */
  stores(): Promise<string[]>;
  /** A query over `store`'s records in key order, each read from IndexedDB when asked for. */
  query<T extends DatabaseRecord = DatabaseRecord>(store: string): Query<T>;
  /** Closes the database; later calls throw `ClosedError`. */
  close(): void;
  /** Deletes the IndexedDB database `name`. */
  static drop(name: string): Promise<void>;
}

/**
 * A query over an async or sync iterable (a `Database` store, a rest record set, an array):
 * `where`, `select`, `skip` and `take` stream, and `take` stops asking its source after its
 * count; `orderBy` reads its whole input first. Each method returns a new query; nothing is read
 * until the query is iterated (`for await`, `toArray`, `first`, `count`).
 */
export declare class Query<T> implements AsyncIterable<T> {
  /** A query over any async or sync iterable. */
  constructor(source: AsyncIterable<T> | Iterable<T>);
  /** Keeps the values for which `fn(value, index)` is truthy. */
  where(fn: (value: T, index: number) => unknown): Query<T>;
  /** Maps each value through `fn(value, index)`. */
  select<U>(fn: (value: T, index: number) => U): Query<U>;
  /** Orders by `fn(value)`, smallest first (stable). */
  orderBy(fn: (value: T) => string | number | bigint | Date): Query<T>;
  /** Orders by `fn(value)`, largest first (stable). */
  orderByDescending(fn: (value: T) => string | number | bigint | Date): Query<T>;
  /** Skips the first `count`. */
  skip(count: number): Query<T>;
  /** At most `count`. */
  take(count: number): Query<T>;
  /** Every value, in an array. */
  toArray(): Promise<T[]>;
  /** The first value (`undefined` if none); reads no further. */
  first(): Promise<T | undefined>;
  /** How many values there are. */
  count(): Promise<number>;
  /** Iterates the query (`for await`): each step asks the source for what it needs next. */
  [Symbol.asyncIterator](): AsyncIterator<T>;
}
"#;
