//! Pure state machines of the SDK: no browser, no clock, no I/O. Inputs are
//! bytes, events and `now`; outputs are frames, decisions and deadlines.
//! Everything here is tested natively with `cargo test`.
//!
//! - [`engine`]: the whole peer (connections, streams, sockets, rooms,
//!   keys, budgets) as one deterministic state machine; the browser driver
//!   carries out what it decides.
//! - [`error`]: the SDK's one error type.
//! - [`broker`]: the broker session (request ids, outbox while offline,
//!   replies, timeouts, resume token, reconnect backoff).
//! - [`negotiation`]: perfect negotiation (polite/impolite roles, glare,
//!   candidate queueing).
//! - [`chunking`]: large messages cut into frames and put back together;
//!   the flow-control window.
//! - [`keepalive`]: liveness of a peer connection.
//! - [`stream`]: the half-close state machine of streams and sockets.
//! - [`rest`]: rest URLs, exchange heads, routing, record-set credits.
//! - [`exchange`]: one rest exchange, both ends: reading a request (413 past
//!   the limit), routing (404), answering (500 for a failed handler),
//!   reading a response.

pub mod broker;
#[cfg(test)]
mod catalogue;
pub mod chunking;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod keepalive;
pub mod negotiation;
pub mod rest;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stream;
