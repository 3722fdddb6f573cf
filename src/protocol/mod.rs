//! The client <-> broker wire format, defined once for both sides.
//!
//! Every frame is a JSON text WebSocket message: an object with a `type` tag.
//! Client requests carry a request id `rid` (an unsigned integer the client
//! chooses); every reply and every error caused by a request echoes it.
//! Messages the broker sends on its own (a relayed signal, a room event) have
//! no `rid`.
//!
//! The broker never interprets a signal's or a broadcast's `data`: it is an
//! opaque JSON value relayed as it came.
//!
//! - [`ids`]: the rules for peer ids, room names, rendezvous keys, state keys.
//! - [`codes`]: every error code and WebSocket close code, with the table that
//!   `docs/PROTOCOL.md` reproduces.
//! - [`messages`]: [`ClientMessage`] and [`ServerMessage`], and the decoder
//!   that turns bad input into the documented error instead of a panic.
//! - [`limits`]: default limits shared by both sides.
//! - [`frames`]: the peer <-> peer data-channel frames and the signal
//!   payloads peers relay through the broker.

pub mod codes;
pub mod frames;
pub mod ids;
pub mod json;
pub mod limits;
pub mod messages;
pub mod relay;

pub use codes::{CloseCode, ErrorCode};
pub use messages::{
    ClientMessage, DecodeError, IceServer, RemovalReason, ServerMessage, StateEntry,
};

/// Version of the wire protocol; the broker reports it in `registered`.
pub const PROTOCOL_VERSION: u32 = 1;
