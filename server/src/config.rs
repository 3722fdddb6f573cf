//! Command-line flags and environment variables (clap). Every flag has a
//! `PEERWIRE_*` environment variable; flags win.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use peerwire::protocol::limits;
use peerwire::protocol::relay::MAX_RELAY_PAYLOAD;

use crate::auth::Policy;
use crate::hub::{HubConfig, RelayConfig, relay_defaults};
use crate::ice::{self, IceConfig, OwnStun};

/// A feature switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// The peerwire signalling broker.
///
/// Serves the WebSocket protocol at /ws, the demo pages (or any folder) at /,
/// /healthz and Prometheus /metrics, and answers STUN on UDP port 3478.
#[derive(Debug, Clone, Parser)]
#[command(name = "peerwire-broker", version, about, long_about = None)]
pub struct Config {
    /// Address to bind (TCP for HTTP and WebSocket, UDP for STUN). Use
    /// 0.0.0.0 to accept other machines.
    #[arg(long, env = "PEERWIRE_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one; the URL is printed). Without
    /// it: the PORT variable that Heroku, Render or Cloud Run set, else 8080.
    #[arg(short, long, env = "PEERWIRE_PORT")]
    pub port: Option<u16>,

    /// Folder served at / (the demo pages by default). Missing folder: no static files.
    #[arg(long = "static", env = "PEERWIRE_STATIC", default_value = "www")]
    pub static_dir: PathBuf,

    /// Serve /metrics (and /healthz) on this address instead, a separate
    /// listener (plain HTTP); the main port then answers /metrics with 404.
    #[arg(long, env = "PEERWIRE_METRICS_ADDR", value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    /// Log lines as text, or as one JSON object a line (for log collectors).
    #[arg(
        long,
        env = "PEERWIRE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "text|json"
    )]
    pub log_format: LogFormat,

    /// TLS certificate chain (PEM). With --tls-key, the broker serves
    /// https/wss. `-c` as sigver's `--cert`.
    #[arg(short = 'c', long, env = "PEERWIRE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM). `-k` as sigver's `--key`.
    #[arg(short = 'k', long, env = "PEERWIRE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Extra intermediate certificates (PEM) sent after the certificate.
    /// `-a` as sigver's `--ca`.
    #[arg(short = 'a', long, env = "PEERWIRE_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// Serve wss only: refuse to start without -c/--tls-cert and
    /// -k/--tls-key (sigver's `-s`; TLS is on whenever both are given).
    #[arg(short = 's', long, requires_all = ["tls_cert", "tls_key"])]
    pub secure: bool,

    /// A STUN or TURN URL handed to clients (repeat, or comma-separate in the env var).
    #[arg(
        long = "ice-server",
        env = "PEERWIRE_ICE_SERVERS",
        value_delimiter = ','
    )]
    pub ice_servers: Vec<String>,

    /// UDP port answering STUN binding requests, on the --host address; each
    /// client is handed stun:HOST:PORT, HOST being the name it reached the
    /// broker by. 0: no STUN. Default 3478; if that is taken the broker warns and runs
    /// without STUN, while a port given here that cannot be had is an error.
    #[arg(long, env = "PEERWIRE_STUN_PORT", value_name = "PORT")]
    pub stun_port: Option<u16>,

    /// Host name or address put in the broker's stun: URL, instead of the
    /// one each client reached the broker by (for a broker behind a proxy
    /// or a CDN that does not pass UDP).
    #[arg(long, env = "PEERWIRE_STUN_PUBLIC_HOST", value_name = "HOST")]
    pub stun_public_host: Option<String>,

    /// STUN answers per second to one address (token bucket; beyond: no
    /// answer).
    #[arg(long, env = "PEERWIRE_STUN_RATE_LIMIT", default_value_t = 100.0)]
    pub stun_rate_limit: f64,

    /// STUN answers one address may get in a burst.
    #[arg(long, env = "PEERWIRE_STUN_RATE_BURST", default_value_t = 500.0)]
    pub stun_rate_burst: f64,

    /// Shared secret for issuing short-lived TURN credentials (TURN REST format).
    #[arg(long, env = "PEERWIRE_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Lifetime of issued TURN credentials, in seconds.
    #[arg(long, env = "PEERWIRE_TURN_TTL_SECS", default_value_t = 86_400)]
    pub turn_ttl_secs: u64,

    /// The `key` of PeerJS's protocol, served at `/peerjs` and
    /// `/<key>/id` for unmodified PeerJS clients; `off` turns it off.
    #[arg(long, env = "PEERWIRE_PEERJS_KEY", default_value = "peerjs", value_parser = peerjs_key)]
    pub peerjs_key: PeerJsKey,

    /// signaller's protocol (`/listen/<handle>`, `/connect/<handle>`): the
    /// messages one side of a pipe may send before both are closed with
    /// 4002; `0` turns the protocol off.
    #[arg(long, env = "PEERWIRE_SIGNALLER_MAX_MESSAGES", default_value_t = 64)]
    pub signaller_max_messages: usize,

    /// signal-channel's streams (`/signal-channel/echo|scuttlebutt|relay`):
    /// how many namespaces (per end point) may have open streams at once;
    /// `0` turns the end points off.
    #[arg(
        long,
        env = "PEERWIRE_SIGCHAN_MAX_NAMESPACES",
        default_value_t = 10_000
    )]
    pub sigchan_max_namespaces: usize,

    /// signal-channel's scuttlebutt end point: how long a key lives after
    /// its update's timestamp, in ms (then it is removed, and the streams
    /// told).
    #[arg(long, env = "PEERWIRE_SIGCHAN_EXPIRY_MS", default_value_t = 60_000)]
    pub sigchan_expiry_ms: u64,

    /// How long a dropped client may take to reclaim its id, in ms; also
    /// how long after a restart the owners of ids may reclaim them with
    /// their tokens ahead of anyone else.
    #[arg(long, env = "PEERWIRE_GRACE_MS", default_value_t = limits::GRACE_MS)]
    pub grace_ms: u64,

    /// Folder where the broker keeps what outlives a restart: the key its
    /// resume tokens are signed with (file `resume-key`, mode 0600).
    /// Default: $STATE_DIRECTORY (systemd's StateDirectory=), else
    /// $XDG_STATE_HOME/peerwire-broker, else ~/.local/state/peerwire-broker.
    /// If it cannot be used the broker says so and ids do not survive a
    /// restart.
    #[arg(long, env = "PEERWIRE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Sign resume tokens with a key derived from this secret instead of
    /// the state directory's key file: brokers given the same secret
    /// honour each other's tokens after a restart.
    #[arg(long, env = "PEERWIRE_RESUME_SECRET", hide_env_values = true)]
    pub resume_secret: Option<String>,

    /// Interval between WebSocket pings to each client, in ms.
    #[arg(long, env = "PEERWIRE_HEARTBEAT_INTERVAL_MS", default_value_t = limits::HEARTBEAT_INTERVAL_MS)]
    pub heartbeat_interval_ms: u64,

    /// Silence after which a client is dropped (close 4004), in ms.
    #[arg(long, env = "PEERWIRE_HEARTBEAT_TIMEOUT_MS", default_value_t = limits::HEARTBEAT_TIMEOUT_MS)]
    pub heartbeat_timeout_ms: u64,

    /// Largest client frame, in bytes (close 1009 above it).
    #[arg(long, env = "PEERWIRE_MAX_FRAME_BYTES", default_value_t = limits::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Messages queued for an id inside its grace window.
    #[arg(long, env = "PEERWIRE_MAX_QUEUED", default_value_t = limits::MAX_QUEUED_PER_PEER)]
    pub max_queued: usize,

    /// Bytes of messages queued for an id inside its grace window; beyond,
    /// the sender gets queue-full.
    #[arg(long, env = "PEERWIRE_MAX_QUEUED_BYTES", default_value_t = limits::MAX_QUEUED_BYTES)]
    pub max_queued_bytes: usize,

    /// Frames waiting to be written to one client before it is cut off (close 4003).
    #[arg(long, env = "PEERWIRE_OUTBOUND_QUEUE", default_value_t = limits::OUTBOUND_QUEUE)]
    pub outbound_queue: usize,

    /// Bytes of messages waiting to be written to one client (not yet
    /// written) before it is cut off (close 4003).
    #[arg(long, env = "PEERWIRE_OUTBOUND_QUEUE_BYTES", default_value_t = limits::OUTBOUND_QUEUE_BYTES)]
    pub outbound_queue_bytes: usize,

    /// Bytes waiting in the outbound queues of all connections from one
    /// address and in the grace queues of the ids they held, together;
    /// beyond, the connection a frame was for is cut off (4003), or a
    /// message for a detached id is refused (queue-full).
    #[arg(long, env = "PEERWIRE_IP_QUEUED_BYTES", default_value_t = limits::IP_QUEUED_BYTES)]
    pub ip_queued_bytes: usize,

    /// Bytes of one room's state (keys, values, setters' ids, and 64 bytes
    /// a key); a set beyond gets state-full.
    #[arg(long, env = "PEERWIRE_MAX_ROOM_STATE_BYTES", default_value_t = limits::MAX_ROOM_STATE_BYTES)]
    pub max_room_state_bytes: usize,

    /// Bytes of room state one id may have set, across its rooms (counted
    /// as for --max-room-state-bytes); a set beyond gets state-full.
    #[arg(long, env = "PEERWIRE_MAX_PEER_STATE_BYTES", default_value_t = limits::MAX_PEER_STATE_BYTES)]
    pub max_peer_state_bytes: usize,

    /// Bytes of room state set from one address, across its ids; a set
    /// beyond gets state-full.
    #[arg(long, env = "PEERWIRE_IP_STATE_BYTES", default_value_t = limits::IP_STATE_BYTES)]
    pub ip_state_bytes: usize,

    /// Bytes a second one connection may make the broker send by
    /// broadcasts (each one's bytes times its recipients) and join
    /// snapshots (token bucket, one second's worth of burst); beyond, the
    /// request gets fanout-limit and nothing is sent.
    #[arg(long, env = "PEERWIRE_FANOUT_RATE", default_value_t = limits::FANOUT_RATE)]
    pub fanout_rate: u64,

    /// Members one room may have.
    #[arg(long, env = "PEERWIRE_MAX_ROOM_MEMBERS", default_value_t = limits::MAX_ROOM_MEMBERS)]
    pub max_room_members: usize,

    /// Rooms one peer may be in.
    #[arg(long, env = "PEERWIRE_MAX_ROOMS_PER_PEER", default_value_t = limits::MAX_ROOMS_PER_PEER)]
    pub max_rooms_per_peer: usize,

    /// Rendezvous keys one peer may have opened, and joined, at once.
    #[arg(long, env = "PEERWIRE_MAX_KEYS_PER_PEER", default_value_t = limits::MAX_KEYS_PER_PEER)]
    pub max_keys_per_peer: usize,

    /// Hostnames one id may hold at once.
    #[arg(long, env = "PEERWIRE_MAX_HOSTNAMES_PER_PEER", default_value_t = limits::MAX_HOSTNAMES_PER_PEER)]
    pub max_hostnames_per_peer: usize,

    /// Keys one room's state may hold.
    #[arg(long, env = "PEERWIRE_MAX_STATE_KEYS", default_value_t = limits::MAX_STATE_KEYS)]
    pub max_state_keys: usize,

    /// Messages per second one connection may send (token bucket; close 4002 beyond).
    #[arg(long, env = "PEERWIRE_RATE_LIMIT", default_value_t = 50.0)]
    pub rate_limit: f64,

    /// Messages one connection may send in a burst.
    #[arg(long, env = "PEERWIRE_RATE_BURST", default_value_t = 200.0)]
    pub rate_burst: f64,

    /// Messages per second all connections from one address may send together.
    #[arg(long, env = "PEERWIRE_IP_RATE_LIMIT", default_value_t = 500.0)]
    pub ip_rate_limit: f64,

    /// Messages all connections from one address may send in a burst.
    #[arg(long, env = "PEERWIRE_IP_RATE_BURST", default_value_t = 2000.0)]
    pub ip_rate_burst: f64,

    /// Open connections from one address (HTTP 429 beyond).
    #[arg(long, env = "PEERWIRE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Allowed `Origin`s for WebSocket upgrades, exact or with `*` (repeat;
    /// none: any origin). Others get HTTP 403.
    #[arg(
        long = "allow-origin",
        env = "PEERWIRE_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    pub allow_origins: Vec<String>,

    /// Reverse proxies or load balancers (addresses or CIDR ranges; repeat,
    /// or comma-separate in the env var) whose X-Forwarded-For or Forwarded
    /// header names the client: connections from them are counted, limited
    /// and logged under that client's address. Headers from anyone else are
    /// ignored.
    #[arg(
        long = "trust-proxy",
        env = "PEERWIRE_TRUST_PROXY",
        value_delimiter = ',',
        value_name = "ADDR|CIDR",
        value_parser = crate::proxy::parse_trusted
    )]
    pub trust_proxy: Vec<IpNet>,

    /// Time a client has to finish its TLS handshake and send its HTTP
    /// request headers, in ms; a connection that dawdles is dropped.
    #[arg(long, env = "PEERWIRE_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,

    /// Connections accepted but not yet upgraded to a WebSocket (beyond:
    /// new ones are dropped at once). Default: half the open-file limit,
    /// which the broker raises to its hard limit at start.
    #[arg(long, env = "PEERWIRE_MAX_HANDSHAKES")]
    pub max_handshakes: Option<usize>,

    /// Time a connection has to register before it is closed (4006), in ms.
    #[arg(long, env = "PEERWIRE_REGISTER_TIMEOUT_MS", default_value_t = 10_000)]
    pub register_timeout_ms: u64,

    /// Time an opened rendezvous key may wait with nobody joined before the
    /// broker closes it (`key-closed`, code 4000), in ms. 0: no limit.
    #[arg(long, env = "PEERWIRE_LISTEN_TIMEOUT_MS", default_value_t = limits::LISTEN_TIMEOUT_MS)]
    pub listen_timeout_ms: u64,

    /// Time a matched rendezvous pair (opener and one joiner) is held on the
    /// key before the broker ends it (`unavailable`, code 4001), in ms. The
    /// peers keep their ids and can go on signalling each other. 0: no limit.
    #[arg(long, env = "PEERWIRE_PIPE_TIMEOUT_MS", default_value_t = limits::PIPE_TIMEOUT_MS)]
    pub pipe_timeout_ms: u64,

    /// Shared secret (at least 32 bytes) that checks HS256 access tokens.
    /// Without it, tokens are refused.
    #[arg(long, env = "PEERWIRE_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Refuse every connection without a valid token (close 4007).
    #[arg(long, env = "PEERWIRE_REQUIRE_TOKEN")]
    pub require_token: bool,

    /// Ids (exact or with `*`) that only a token with that `sub` may
    /// register (repeat, or comma-separate in the env var).
    #[arg(long = "protect", env = "PEERWIRE_PROTECT", value_delimiter = ',')]
    pub protected_ids: Vec<String>,

    /// Rooms (exact or with `*`) that only a token listing them in `rooms`
    /// may join (repeat, or comma-separate in the env var).
    #[arg(
        long = "protect-room",
        env = "PEERWIRE_PROTECT_ROOMS",
        value_delimiter = ','
    )]
    pub protected_rooms: Vec<String>,

    /// Relay data between two ids that both ask for it (`relay`), over their
    /// broker connections, when they have no direct path. off: every
    /// `relay` is refused (relay-refused).
    #[arg(
        long,
        env = "PEERWIRE_RELAY",
        value_enum,
        default_value = "on",
        value_name = "on|off"
    )]
    pub relay: Switch,

    /// Bytes per second one relay pair may carry in each direction (token
    /// bucket, one second's worth of burst); faster ends the pair
    /// (relay-limit). At least 65536.
    #[arg(long, env = "PEERWIRE_RELAY_RATE", default_value_t = relay_defaults::DEFAULT_RATE)]
    pub relay_rate: u64,

    /// Bytes one relay pair may carry in total, both directions together;
    /// beyond, the pair ends (relay-limit).
    #[arg(long, env = "PEERWIRE_RELAY_MAX_BYTES", default_value_t = relay_defaults::DEFAULT_MAX_BYTES)]
    pub relay_max_bytes: u64,

    /// Relay pairs, active and waiting for the other side, at once; beyond,
    /// `relay` is refused (relay-refused).
    #[arg(long, env = "PEERWIRE_RELAY_MAX_PAIRS", default_value_t = relay_defaults::DEFAULT_MAX_PAIRS)]
    pub relay_max_pairs: usize,

    /// Relay pairs one id may have asked for at once; beyond, its `relay`
    /// is refused (relay-refused).
    #[arg(long, env = "PEERWIRE_RELAY_MAX_PER_PEER", default_value_t = relay_defaults::DEFAULT_MAX_PER_PEER)]
    pub relay_max_per_peer: usize,

    /// Bytes per second all relay pairs together may carry (token bucket,
    /// one second's worth of burst); a frame beyond it ends the pair that
    /// sent it (relay-limit).
    #[arg(long, env = "PEERWIRE_RELAY_TOTAL_RATE", default_value_t = relay_defaults::DEFAULT_TOTAL_RATE)]
    pub relay_total_rate: u64,

    /// Join a network of brokers sharing this Redis (or Valkey) server,
    /// e.g. redis://127.0.0.1:6379: ids are unique across them, and signals
    /// and `find` reach ids on any of them. Without it the broker is alone.
    #[arg(long, env = "PEERWIRE_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// How long the ids of a broker that died stay claimed in Redis, in ms
    /// (each broker renews its ids' claims every third of this).
    #[arg(long, env = "PEERWIRE_REDIS_LEASE_MS", default_value_t = 10_000)]
    pub redis_lease_ms: u64,

    /// Bytes of messages for other brokers this broker holds while Redis
    /// is slow; beyond, senders get queue-full.
    #[arg(long, env = "PEERWIRE_REDIS_MAX_QUEUED_BYTES", default_value_t = 64 << 20)]
    pub redis_max_queued_bytes: usize,

    /// How often grace windows, state TTLs and rendezvous deadlines are
    /// checked, in ms.
    #[arg(long, env = "PEERWIRE_SWEEP_MS", default_value_t = 100)]
    pub sweep_ms: u64,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, the event's fields at the top level.
    Json,
}

/// The port used when neither `--port`, `PEERWIRE_PORT` nor `PORT` says.
pub const DEFAULT_PORT: u16 = 8080;

/// The port to listen on: `given` (`--port`, else `PEERWIRE_PORT`), else
/// `port_env` (the `PORT` variable PaaS platforms set), else
/// [`DEFAULT_PORT`]. A `PORT` that is not a port number (empty included,
/// as clap treats an empty `PEERWIRE_PORT`) is an error naming it.
pub fn resolve_port(given: Option<u16>, port_env: Option<&OsStr>) -> Result<u16, String> {
    if let Some(port) = given {
        return Ok(port);
    }
    let Some(raw) = port_env else {
        return Ok(DEFAULT_PORT);
    };
    raw.to_str()
        .and_then(|v| v.trim().parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "PORT={raw:?} is not a port number (0-65535): fix or unset PORT, or pass --port"
            )
        })
}

impl Config {
    /// The port to listen on (see [`resolve_port`]), reading `PORT` from
    /// the process environment.
    pub fn listen_port(&self) -> Result<u16, String> {
        resolve_port(self.port, std::env::var_os("PORT").as_deref())
    }

    /// The hub's share of the configuration; `stun_port` is the port the
    /// broker's own STUN answers on, if it does.
    pub fn hub(&self, stun_port: Option<u16>) -> Result<HubConfig, String> {
        Ok(HubConfig {
            grace: Duration::from_millis(self.grace_ms),
            max_queued: self.max_queued,
            max_queued_bytes: self.max_queued_bytes,
            outbound_queue_bytes: self.outbound_queue_bytes,
            ip_queued_bytes: self.ip_queued_bytes,
            max_room_state_bytes: self.max_room_state_bytes,
            max_peer_state_bytes: self.max_peer_state_bytes,
            ip_state_bytes: self.ip_state_bytes,
            fanout_rate: self.fanout_rate,
            max_room_members: self.max_room_members,
            max_rooms_per_peer: self.max_rooms_per_peer,
            max_state_keys: self.max_state_keys,
            max_keys_per_peer: self.max_keys_per_peer,
            max_hostnames_per_peer: self.max_hostnames_per_peer,
            auth: self.auth_policy()?,
            listen_timeout: nonzero_ms(self.listen_timeout_ms),
            pipe_timeout: nonzero_ms(self.pipe_timeout_ms),
            ice: IceConfig {
                urls: self.ice_servers.clone(),
                turn_secret: self.turn_secret.clone(),
                turn_ttl_secs: self.turn_ttl_secs,
                own_stun: stun_port.map(|port| OwnStun {
                    port,
                    public_host: self.stun_public_host.as_deref().and_then(ice::bare_host),
                }),
            },
            relay: RelayConfig {
                enabled: self.relay.is_on(),
                rate: self.relay_rate,
                max_bytes: self.relay_max_bytes,
                max_pairs: self.relay_max_pairs,
                max_per_peer: self.relay_max_per_peer,
                total_rate: self.relay_total_rate,
                ..RelayConfig::default()
            },
            // Whole messages (a client cannot send a fraction of one); at
            // least one, as the broker always lets one through.
            message_rate: Some((
                (self.rate_limit.floor() as u64).max(1),
                (self.rate_burst.floor() as u64).max(1),
            )),
            max_frame_bytes: self.max_frame_bytes,
        })
    }

    /// Who may register which ids and join which rooms.
    pub fn auth_policy(&self) -> Result<Policy, String> {
        Policy::new(
            self.auth_secret.as_deref(),
            self.require_token,
            self.protected_ids.clone(),
            self.protected_rooms.clone(),
        )
    }

    /// The state directory: `--state-dir`, else the default one (see
    /// [`crate::state::default_dir`]); `None` when no variable names one.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir
            .clone()
            .or_else(|| crate::state::default_dir(|name| std::env::var_os(name)))
    }

    /// Checks what clap cannot: URL schemes and non-zero timings.
    pub fn validate(&self) -> Result<(), String> {
        self.auth_policy()?;
        if self.resume_secret.as_deref().is_some_and(|s| s.len() < 32) {
            return Err(
                "--resume-secret must be at least 32 bytes (or leave it out: the key is kept in --state-dir)"
                    .into(),
            );
        }
        for url in &self.ice_servers {
            if !["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                return Err(format!(
                    "--ice-server {url:?} must start with stun:, stuns:, turn: or turns:"
                ));
            }
        }
        if let Some(host) = &self.stun_public_host {
            if ice::bare_host(host).is_none() {
                return Err(format!(
                    "--stun-public-host {host:?} must be a host name or an IP address, without a port"
                ));
            }
        }
        if self.sigchan_expiry_ms == 0 {
            return Err("--sigchan-expiry-ms must be above 0".to_string());
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_timeout_ms == 0 || self.sweep_ms == 0 {
            return Err(
                "--heartbeat-interval-ms, --heartbeat-timeout-ms and --sweep-ms must be above 0"
                    .into(),
            );
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return Err(
                "--heartbeat-timeout-ms must be longer than --heartbeat-interval-ms".into(),
            );
        }
        if self.rate_limit <= 0.0
            || self.rate_burst < 1.0
            || self.ip_rate_limit <= 0.0
            || self.ip_rate_burst < 1.0
            || self.stun_rate_limit <= 0.0
            || self.stun_rate_burst < 1.0
        {
            return Err("rate limits must be above 0 and bursts at least 1".into());
        }
        if self.max_connections_per_ip == 0
            || self.register_timeout_ms == 0
            || self.handshake_timeout_ms == 0
        {
            return Err(
                "--max-connections-per-ip, --register-timeout-ms and --handshake-timeout-ms must be above 0"
                    .into(),
            );
        }
        if self.max_frame_bytes < 1024 || self.outbound_queue == 0 {
            return Err(
                "--max-frame-bytes must be at least 1024 and --outbound-queue above 0".into(),
            );
        }
        // Every budget must fit what one request may legitimately need:
        // a largest message with its envelope, and a room's snapshot.
        let two_frames = 2 * self.max_frame_bytes;
        let snapshot = self.max_room_state_bytes + 128 * 1024;
        if self.outbound_queue_bytes < two_frames.max(snapshot)
            || self.ip_queued_bytes < self.outbound_queue_bytes
            || self.max_queued_bytes < two_frames
            || self.fanout_rate < two_frames.max(snapshot) as u64
        {
            return Err(format!(
                "--outbound-queue-bytes and --fanout-rate must be at least twice --max-frame-bytes and --max-room-state-bytes + 131072 ({}), --ip-queued-bytes at least --outbound-queue-bytes, --max-queued-bytes at least twice --max-frame-bytes ({two_frames})",
                two_frames.max(snapshot)
            ));
        }
        let one_frame = MAX_RELAY_PAYLOAD as u64;
        if self.relay_rate < one_frame || self.relay_max_bytes < one_frame {
            return Err(format!(
                "--relay-rate and --relay-max-bytes must be at least {one_frame} (one relay frame's largest payload)"
            ));
        }
        if self.relay_total_rate < self.relay_rate {
            return Err("--relay-total-rate must be at least --relay-rate".into());
        }
        if self.relay_max_pairs == 0 || self.relay_max_per_peer == 0 {
            return Err(
                "--relay-max-pairs and --relay-max-per-peer must be above 0 (use --relay off to relay nothing)"
                    .into(),
            );
        }
        for pattern in &self.allow_origins {
            crate::limits::check_origin_pattern(pattern)?;
        }
        if let Some(url) = &self.redis {
            crate::cluster::check_url(url)?;
            if self.redis_lease_ms < 300 {
                return Err("--redis-lease-ms must be at least 300".into());
            }
            if self.redis_max_queued_bytes < self.max_frame_bytes {
                return Err("--redis-max-queued-bytes must be at least --max-frame-bytes".into());
            }
        }
        if self.outbound_queue <= self.max_queued + self.max_rooms_per_peer + 1 {
            return Err(format!(
                "--outbound-queue ({}) must exceed --max-queued + --max-rooms-per-peer + 1 ({}), so that a resumed client's backlog fits",
                self.outbound_queue,
                self.max_queued + self.max_rooms_per_peer + 1
            ));
        }
        Ok(())
    }
}

/// `Some(duration)`, or `None` for 0 ("no limit").
fn nonzero_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_flag_then_port_then_8080() {
        let env = |v: &str| Some(OsStr::new(v).to_owned());
        let port = |given, env: Option<std::ffi::OsString>| resolve_port(given, env.as_deref());
        assert_eq!(
            port(Some(9000), env("5000")),
            Ok(9000),
            "--port or PEERWIRE_PORT win"
        );
        assert_eq!(port(Some(0), env("5000")), Ok(0), "0 is a port given");
        assert_eq!(port(None, env("5000")), Ok(5000), "PORT as a PaaS sets it");
        assert_eq!(port(None, env(" 5000\n")), Ok(5000));
        assert_eq!(port(None, None), Ok(DEFAULT_PORT));
        for bad in ["", "http", "80a", "65536", "-1", "8080.0"] {
            let err = port(None, env(bad)).unwrap_err();
            assert!(
                err.contains(&format!("PORT={bad:?}")) && err.contains("--port"),
                "{err}"
            );
        }
        assert_eq!(port(Some(7000), env("junk")), Ok(7000), "PORT unread");
    }

    fn parse(flags: &[&str]) -> Result<Config, String> {
        let args = std::iter::once("peerwire-broker").chain(flags.iter().copied());
        Config::try_parse_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn trusted_proxies_are_addresses_and_ranges_and_a_bad_one_is_named() {
        let c = parse(&[
            "--trust-proxy",
            "127.0.0.1,10.0.0.0/8",
            "--trust-proxy",
            "fd00::/8",
        ])
        .unwrap();
        let proxies: Vec<String> = c.trust_proxy.iter().map(|n| n.to_string()).collect();
        assert_eq!(proxies, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
        assert!(
            parse(&[]).unwrap().trust_proxy.is_empty(),
            "none by default"
        );
        let err = parse(&["--trust-proxy", "10.0.0.1,10.0.0.0/33"]).unwrap_err();
        assert!(
            err.contains("--trust-proxy") && err.contains("10.0.0.0/33"),
            "{err}"
        );
    }

    #[test]
    fn the_metrics_address_is_an_address_and_a_port() {
        let c = parse(&["--metrics-addr", "127.0.0.1:9100"]).unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            parse(&[]).unwrap().metrics_addr,
            None,
            "the main port by default"
        );
        let err = parse(&["--metrics-addr", "9100"]).unwrap_err();
        assert!(
            err.contains("--metrics-addr") && err.contains("9100"),
            "{err}"
        );
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert_eq!(parse(&[]).unwrap().log_format, LogFormat::Text);
        let c = parse(&["--log-format", "json"]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let err = parse(&["--log-format", "xml"]).unwrap_err();
        assert!(err.contains("--log-format") && err.contains("xml"), "{err}");
    }

    #[test]
    fn sigvers_tls_flags_are_spelled_as_sigver_spells_them() {
        let c = parse(&["-s", "-k", "key.pem", "-c", "cert.pem", "-a", "ca.pem"]).unwrap();
        assert!(c.secure);
        assert_eq!(c.tls_key, Some(PathBuf::from("key.pem")));
        assert_eq!(c.tls_cert, Some(PathBuf::from("cert.pem")));
        assert_eq!(c.tls_ca, Some(PathBuf::from("ca.pem")));
        // sigver's -s without the files: it would fail reading them; here
        // the flags say what is missing.
        let err = parse(&["-s"]).unwrap_err();
        assert!(
            err.contains("--tls-cert") && err.contains("--tls-key"),
            "{err}"
        );
        assert!(!parse(&[]).unwrap().secure);
        // sigver's -h (host) stays help here, and -p is the port as in sigver.
        assert_eq!(parse(&["-p", "9000"]).unwrap().port, Some(9000));
    }
}

/// `--peerjs-key`: the key, or `None` for `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerJsKey(pub Option<String>);

/// `--peerjs-key`: `off`, or a key PeerJS clients can send (letters,
/// digits, `-` and `_`; it is also a path segment).
fn peerjs_key(value: &str) -> Result<PeerJsKey, String> {
    if value == "off" {
        return Ok(PeerJsKey(None));
    }
    let fits = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        Ok(PeerJsKey(Some(value.to_string())))
    } else {
        Err(format!(
            "{value:?} is not a PeerJS key this broker can serve: use 1-64 letters, digits, - or _ (or `off`)"
        ))
    }
}
