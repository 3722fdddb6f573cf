//! Default limits. The broker can raise or lower each with a flag; the SDK
//! uses the same numbers so that it refuses locally what the broker would
//! refuse remotely.

/// Largest client frame the broker accepts, in bytes (close code 1009 above it).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Signals and broadcasts queued for a peer inside its reconnect grace window.
pub const MAX_QUEUED_PER_PEER: usize = 256;

/// Frames waiting in one connection's outbound queue before the broker
/// decides the client cannot keep up (close code 4003).
pub const OUTBOUND_QUEUE: usize = 1024;

/// Bytes of text frames waiting in one connection's outbound queue (not
/// yet written) before the broker decides the client cannot keep up (4003).
pub const OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024;

/// Bytes queued for an id inside its reconnect grace window (beyond:
/// `queue-full` to the sender).
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// Bytes the broker holds in outbound and grace-window queues for the
/// connections and ids of one client address, all together.
pub const IP_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of one room's state (keys, values and setters' ids, plus a fixed
/// overhead per key; see `STATE_ENTRY_OVERHEAD`).
pub const MAX_ROOM_STATE_BYTES: usize = 256 * 1024;

/// Bytes of room state one id may have set, across its rooms.
pub const MAX_PEER_STATE_BYTES: usize = 256 * 1024;

/// Bytes of room state set from one client address, across its ids.
pub const IP_STATE_BYTES: usize = 8 * 1024 * 1024;

/// What one state key costs beyond its key, value and setter's id, against
/// the state byte budgets (the JSON around it in a snapshot, and the map
/// entry that holds it).
pub const STATE_ENTRY_OVERHEAD: usize = 64;

/// Bytes a second one connection may make the broker send on its behalf
/// by broadcasts (each one's bytes times its recipients) and join
/// snapshots; one second's worth may be spent at once.
pub const FANOUT_RATE: u64 = 4 * 1024 * 1024;

/// How long a dropped client may take to reclaim its id, in milliseconds.
pub const GRACE_MS: u64 = 10_000;

/// Interval between the broker's WebSocket pings, in milliseconds.
pub const HEARTBEAT_INTERVAL_MS: u64 = 5_000;

/// Silence after which the broker drops a connection, in milliseconds.
pub const HEARTBEAT_TIMEOUT_MS: u64 = 15_000;

/// Members of one room.
pub const MAX_ROOM_MEMBERS: usize = 1024;

/// Rooms one peer may be in at once.
pub const MAX_ROOMS_PER_PEER: usize = 64;

/// Rendezvous keys one peer may have opened (and, separately, joined) at once.
pub const MAX_KEYS_PER_PEER: usize = 64;

/// Keys in one room's state map.
pub const MAX_STATE_KEYS: usize = 1024;

/// How long an opened rendezvous key may wait with nobody joined, in
/// milliseconds (the key is closed with code 4000).
pub const LISTEN_TIMEOUT_MS: u64 = 600_000;

/// How long a matched rendezvous pair is held on its key, in milliseconds
/// (the pairing ends with code 4001).
pub const PIPE_TIMEOUT_MS: u64 = 120_000;

/// Hostnames one id may hold at once.
pub const MAX_HOSTNAMES_PER_PEER: usize = 16;
