//! The SDK's one error type. The engine produces it; `api` throws it to
//! JavaScript as a real `Error` whose `name` says what went wrong and whose
//! `code` is a stable string (see docs/ERRORS.md).

use crate::protocol::ErrorCode;

/// Everything that can go wrong in the SDK.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    IdTaken(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("cannot reach the broker at {url}: {detail}; is `peerwire-broker` running there?")]
    BrokerUnreachable { url: String, detail: String },
    #[error("{message}")]
    Unauthorized { code: ErrorCode, message: String },
    #[error("broker refused the request ({code}): {message}")]
    Broker { code: ErrorCode, message: String },
    #[error("peer \"{id}\" is not online ({code}); check the id, or wait for it to register")]
    PeerUnavailable { id: String, code: ErrorCode },
    #[error("no connection to \"{id}\" within {ms} ms: {waiting}")]
    ConnectTimeout {
        id: String,
        ms: u64,
        /// What the engine was still waiting for when time ran out.
        waiting: String,
    },
    #[error("connection to \"{id}\" failed: {reason}")]
    ConnectionFailed { id: String, reason: String },
    #[error("{0} is closed")]
    Closed(String),
    #[error("message of {size} bytes exceeds the {max}-byte limit{hint}")]
    MessageTooLarge {
        size: usize,
        max: usize,
        hint: &'static str,
    },
    #[error("peer \"{id}\" sent bad data: {detail}")]
    Protocol { id: String, detail: String },
    #[error("nothing listens on port {port} of \"{id}\" ({reason})")]
    PortClosed {
        id: String,
        port: u16,
        reason: String,
    },
    #[error("{0}")]
    UnknownHost(String),
    #[error("{0}")]
    HostnameTaken(String),
    #[error("{0}")]
    QueueFull(String),
    /// A remote (or the user) went past a resource cap; the message names
    /// the option that sets it.
    #[error("{0}")]
    LimitExceeded(String),
    #[error("the broker did not answer within {0} ms")]
    Timeout(u64),
    /// A `Database` read from a store it does not have (thrown by
    /// `src/web/helpers_full.js`; here so the names and codes stay one list).
    #[error("{0}")]
    UnknownStore(String),
    /// IndexedDB failed under a `Database` (thrown by `src/web/helpers_full.js`).
    #[error("{detail}")]
    Database {
        kind: DatabaseFailure,
        detail: String,
    },
    #[error("peer \"{id}\" rejected the call: {reason}")]
    CallRejected { id: String, reason: String },
    /// Media cannot flow on this connection (it runs over the broker's
    /// relay, or the runtime has no media support).
    #[error("{0}")]
    MediaUnavailable(String),
}

/// What went wrong in IndexedDB: the `code` of a `DatabaseError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFailure {
    /// The browser's storage quota is full (`QuotaExceededError`).
    QuotaExceeded,
    /// An insert's key is taken (`ConstraintError`).
    KeyExists,
    /// Anything else IndexedDB reported.
    Other,
}

impl DatabaseFailure {
    pub const ALL: [Self; 3] = [Self::QuotaExceeded, Self::KeyExists, Self::Other];
}

impl PeerError {
    /// The JavaScript `Error.name`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidId(_) => "InvalidIdError",
            Self::IdTaken(_) => "IdTakenError",
            Self::InvalidArgument(_) => "InvalidArgumentError",
            Self::BrokerUnreachable { .. } => "BrokerUnreachableError",
            Self::Unauthorized { .. } => "UnauthorizedError",
            Self::Broker { .. } => "BrokerError",
            Self::PeerUnavailable { .. } => "PeerUnavailableError",
            Self::ConnectTimeout { .. } => "ConnectTimeoutError",
            Self::ConnectionFailed { .. } => "ConnectionFailedError",
            Self::Closed(_) => "ClosedError",
            Self::MessageTooLarge { .. } => "MessageTooLargeError",
            Self::Protocol { .. } => "ProtocolError",
            Self::PortClosed { .. } => "PortClosedError",
            Self::UnknownHost(_) => "UnknownHostError",
            Self::HostnameTaken(_) => "HostnameTakenError",
            Self::QueueFull(_) => "QueueFullError",
            Self::LimitExceeded(_) => "LimitExceededError",
            Self::Timeout(_) => "TimeoutError",
            Self::UnknownStore(_) => "UnknownStoreError",
            Self::Database { .. } => "DatabaseError",
            Self::CallRejected { .. } => "CallRejectedError",
            Self::MediaUnavailable(_) => "MediaUnavailableError",
        }
    }

    /// The stable `code` property: the broker's code where one applies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId(_) => "invalid-id",
            Self::IdTaken(_) => "id-taken",
            Self::InvalidArgument(_) => "invalid-argument",
            Self::BrokerUnreachable { .. } => "broker-unreachable",
            Self::Unauthorized { code, .. } => code.as_str(),
            Self::Broker { code, .. } => code.as_str(),
            Self::PeerUnavailable { code, .. } => code.as_str(),
            Self::ConnectTimeout { .. } => "connect-timeout",
            Self::ConnectionFailed { .. } => "connection-failed",
            Self::Closed(_) => "closed",
            Self::MessageTooLarge { .. } => "message-too-large",
            Self::Protocol { .. } => "protocol-error",
            Self::PortClosed { .. } => "port-closed",
            Self::UnknownHost(_) => "unknown-host",
            Self::HostnameTaken(_) => "hostname-taken",
            Self::QueueFull(_) => "queue-full",
            Self::LimitExceeded(_) => "limit-exceeded",
            Self::Timeout(_) => "timeout",
            Self::UnknownStore(_) => "unknown-store",
            Self::Database { kind, .. } => match kind {
                DatabaseFailure::QuotaExceeded => "quota-exceeded",
                DatabaseFailure::KeyExists => "key-exists",
                DatabaseFailure::Other => "database-error",
            },
            Self::CallRejected { .. } => "call-rejected",
            Self::MediaUnavailable(_) => "media-unavailable",
        }
    }

    /// A broker error reply as the matching SDK error.
    pub fn from_broker(code: ErrorCode, message: String) -> Self {
        match code {
            ErrorCode::InvalidId => Self::InvalidId(message),
            ErrorCode::IdTaken => Self::IdTaken(message),
            ErrorCode::HostnameTaken => Self::HostnameTaken(message),
            ErrorCode::UnknownHost => Self::UnknownHost(message),
            ErrorCode::InvalidHostname => Self::InvalidArgument(message),
            ErrorCode::Unauthorized | ErrorCode::Forbidden => Self::Unauthorized { code, message },
            _ => Self::Broker { code, message },
        }
    }
}
