//! The classes JavaScript sees: `createPeer`, `Peer`, `Connection`, `Room`,
//! `Rendezvous`. Exported structs are cheap handles (an `Rc` to shared
//! state); methods take `&self` and return Promises, so two calls at once
//! never trip wasm-bindgen's "recursive use of an object". Errors are real
//! `Error` objects with a `name` and a `code` (see `errors`).

#[cfg(feature = "full")]
mod address;
pub mod connection;
pub mod context;
pub mod errors;
pub mod events;
#[cfg(feature = "full")]
pub mod hubs;
#[cfg(feature = "full")]
pub mod node;
pub mod options;
pub mod payload;
pub mod peer;
#[cfg(feature = "full")]
pub mod rest;
pub mod room;
pub mod stream;

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
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** Anything `send()` accepts: text, bytes, or a JSON value. */
export type Sendable = string | ArrayBuffer | ArrayBufferView | Blob | null | boolean | number | object;

/** A STUN/TURN server, as in `RTCIceServer`. */
export interface IceServer { urls: string | string[]; username?: string; credential?: string }

/** Options of `createPeer`. Only `broker` is required. */
/** What `conn.stats()` resolves. */
export interface ConnectionStats {
  /**
   * How the data flows, from the selected candidate pair: `'host'` (directly between local
   * addresses), `'srflx'` (through a NAT mapping found by STUN), `'prflx'` (an address learnt
   * during the checks: a NAT mapping, or a host hidden behind an mDNS name), `'relay'`
   * (through TURN); `null` before ICE picked a pair.
   */
  route: 'host' | 'srflx' | 'prflx' | 'relay' | null;
  /** The selected pair's local and remote candidate types (`host`, `srflx`, `prflx`, `relay`). */
  localCandidateType: string | null;
  remoteCandidateType: string | null;
  /** `'udp'` or `'tcp'`. */
  protocol: string | null;
  /** Round-trip time of the selected pair, in ms (`null` until measured). */
  rtt: number | null;
  /** Bytes sent and received on the selected pair. */
  bytesSent: number;
  bytesReceived: number;
  /** The browser's whole `RTCStatsReport`. */
  report: RTCStatsReport;
}

export interface PeerOptions {
  /** Broker URL, e.g. `ws://localhost:8080` (the `/ws` path is added when missing). */
  broker: string;
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
  /** Silence after which a connection closes as dead, in ms. Default 4000. */
  keepAliveTimeout?: number;
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
  /** Connections open at once. Default 256. */
  maxConnections?: number;
  /** New connections one remote id may offer per minute (each costs an RTCPeerConnection). Default 30. */
  maxOffersPerMinute?: number;
  /** How long a closing connection or stream may take to confirm its close before it is released, in ms. Default 5000. */
  closeTimeout?: number;
  /**
   * A WebRTC implementation where the runtime has none (Node.js): an `RTCPeerConnection`
   * constructor, or a module holding one, e.g. `rtc: await import('node-datachannel/polyfill')`.
   */
  rtc?: { RTCPeerConnection: unknown } | (new (config?: RTCConfiguration) => RTCPeerConnection);
  /** A `WebSocket` constructor where the runtime has none (Node.js 20): `(await import('ws')).WebSocket`. */
  WebSocket?: unknown;
  /**
   * Fields copied onto every `RTCConfiguration`, e.g. `{ iceTransportPolicy: 'relay' }`,
   * `bundlePolicy`, `certificates`. An `iceServers` here replaces the `iceServers` option.
   */
  rtcConfig?: RTCConfiguration;
  /**
   * Log to the console, each line prefixed with this peer's id: `'warn'` refusals and failures
   * (limits hit, connections closed by an error, the broker link lost); `'info'` also connection
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
export interface BroadcastOptions { /** Deliver to this peer too. */ includeSelf?: boolean }

/** Options of `room.set()`. */
export interface SetOptions { /** Remove the key after this many milliseconds. */ ttl?: number }

export type ConnectionState = "connecting" | "open" | "closed";
export type StreamState = "opening" | "open" | "local-ended" | "remote-ended" | "closed";

/** Options of `openStream()`: this side's sending policy for the stream. */
export interface StreamOptions {
  /** Deliver in order (default: the connection's setting, normally true). */
  ordered?: boolean;
  /** Retransmit a lost message at most this many times (unreliable). */
  maxRetransmits?: number;
}

/** Every error the SDK throws or emits is an `Error` with these two fields. */
export interface PeerwireError extends Error {
  /** `InvalidIdError`, `IdTakenError`, `InvalidArgumentError`, `BrokerUnreachableError`, `UnauthorizedError`, `BrokerError`,
   * `PeerUnavailableError`, `ConnectTimeoutError`, `ConnectionFailedError`, `ClosedError`,
   * `MessageTooLargeError`, `ProtocolError`, `PortClosedError`, `UnknownHostError`, `HostnameTakenError`,
   * `QueueFullError`, `LimitExceededError` or `TimeoutError`. */
  name: string;
  /** A stable code, e.g. `"id-taken"`, `"unknown-peer"`, `"connect-timeout"`. */
  code: string;
}

export interface MessageEnvelope { from: string; message: unknown }
export interface BrokerStatus { state: "registered" | "disconnected"; id?: string; resumed?: boolean; reconnect?: boolean; code?: number; reason?: string }

export interface PeerEvents {
  /** The id is registered: at start and after every reconnect that reclaimed it. */
  register: string;
  /** A remote peer opened a connection to this one. */
  connection: Connection;
  /** A message from any connection. */
  message: MessageEnvelope;
  error: PeerwireError;
  /** The opener of a key this peer joined went away; `code` 4001: the broker ended the pairing at its pipe deadline. */
  unavailable: { key: string; id: string; code?: number };
  /** The broker link went down or came back. */
  broker: BrokerStatus;
}

export interface ConnectionEvents {
  open: void;
  message: unknown;
  close: { reason: string; peerId: string };
  error: PeerwireError;
  /** The remote opened a stream with `openStream(name)`. */
  stream: Stream;
}

export interface StreamEvents {
  open: void;
  message: unknown;
  /** The remote ended its side (half-close); this side may still send. */
  end: void;
  close: { reason: string };
  error: PeerwireError;
}

export interface RoomEvents {
  "peer-joined": string;
  "peer-left": string;
  broadcast: { from: string; data: unknown };
  /** A key was set (`value`, `from`, `ttl`) or removed (`removed`: "deleted" | "expired"). */
  state: { key: string; value: unknown; from?: string; ttl?: number; removed?: "deleted" | "expired" };
  /** This peer is no longer in the room (left, peer closed, or id lost). */
  closed: void;
}

export interface RendezvousEvents {
  /** A peer joined the key. */
  joiner: string;
  /** A joiner left (or the broker ended the pairing at its pipe deadline, 4001). */
  unavailable: string;
  /** The broker closed the key: `code` 4000, nobody joined within its listen timeout. */
  closed: { code: number; reason: string };
}

export interface Peer {
  on<K extends keyof PeerEvents>(type: K, listener: (event: PeerEvents[K]) => void): void;
  off<K extends keyof PeerEvents>(type: K, listener: (event: PeerEvents[K]) => void): void;
}
export interface Connection {
  on<K extends keyof ConnectionEvents>(type: K, listener: (event: ConnectionEvents[K]) => void): void;
  off<K extends keyof ConnectionEvents>(type: K, listener: (event: ConnectionEvents[K]) => void): void;
}
export interface Stream {
  on<K extends keyof StreamEvents>(type: K, listener: (event: StreamEvents[K]) => void): void;
  off<K extends keyof StreamEvents>(type: K, listener: (event: StreamEvents[K]) => void): void;
}
export interface Room {
  on<K extends keyof RoomEvents>(type: K, listener: (event: RoomEvents[K]) => void): void;
  off<K extends keyof RoomEvents>(type: K, listener: (event: RoomEvents[K]) => void): void;
}
export interface Rendezvous {
  on<K extends keyof RendezvousEvents>(type: K, listener: (event: RendezvousEvents[K]) => void): void;
  off<K extends keyof RendezvousEvents>(type: K, listener: (event: RendezvousEvents[K]) => void): void;
}
"#;

/// The TypeScript of the full build only: `Node`, its hubs, sockets and rest
/// (the lite build's definitions must not name them).
#[cfg(feature = "full")]
#[wasm_bindgen(typescript_custom_section)]
const TS_NODE_TYPES: &str = r#"
/** The interface a `Node` talks to its hub through; `PageHub`,
 * `BroadcastChannelHub` implement it, and so can your own. */
export interface Hub {
  /** A new endpoint: `deliver(from, data)` receives its signals; resolves its address. */
  attach(deliver: (from: string, data: string) => void): string | Promise<string>;
  detach(address: string): void;
  /** Hands `data` to `to`; throw or reject when `to` is unknown, so connecting fails at once. */
  send(from: string, to: string, data: string): void | Promise<void>;
  register(address: string, hostname: string): void | Promise<void>;
  /** Throw or reject (ideally an Error named `UnknownHostError`) when unknown. */
  lookup(hostname: string): string | Promise<string>;
  iceServers?: IceServer[];
}

/** Options of `new Node()`: a hub (default: the page's `PageHub`), and the
 * `PeerOptions` other than `broker` and `id`. */
export interface NodeOptions extends Omit<PeerOptions, "broker" | "id"> {
  hub?: Hub | NetworkHub;
}

/** Options of `new BroadcastChannelHub(name, options)`. */
export interface BroadcastChannelHubOptions {
  /** How long a lookup waits for another tab to answer before `UnknownHostError`, in ms. Default 300. */
  lookupTimeout?: number;
}

/** Options of `sockets.connect()`. */
export interface SocketOptions { /** Give up after this many ms (default `connectTimeout`). */ timeout?: number }

/** Options of `rest.fetch()`. */
export interface FetchInit {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | string;
  headers?: Record<string, string>;
  /** A string, bytes, or any JSON value. */
  body?: unknown;
  /** Give up connecting after this many ms (default `connectTimeout`). */
  timeout?: number;
}

export type RestHandler = (req: RestRequest, res: RestResponse) => void | Promise<void>;

export interface NodeEvents extends PeerEvents {}
export interface Node {
  on<K extends keyof NodeEvents>(type: K, listener: (event: NodeEvents[K]) => void): void;
  off<K extends keyof NodeEvents>(type: K, listener: (event: NodeEvents[K]) => void): void;
}
"#;
