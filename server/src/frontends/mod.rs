//! The protocols of other signalling servers, spoken on their own paths over
//! the same hub as the broker's own (`/ws`): their clients get the same ids,
//! limits, auth, metrics and network of brokers, unmodified.

pub mod peerjs;
