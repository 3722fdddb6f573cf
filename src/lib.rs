//! peerwire: peer-to-peer connections, streams, sockets and request/response
//! between browsers over WebRTC.
//!
//! The crate is layered (see `DESIGN` in the repository):
//!
//! - [`protocol`]: the wire format shared by the SDK and the broker
//!   (`peerwire-broker`). Plain serde types, no browser or runtime dependency.
//! - [`core`]: the SDK's pure state machines (negotiation, chunking, broker
//!   session, keep-alive), tested natively.
//! - `web` (wasm only): browser glue owning every Closure.
//! - `api` (wasm only): the JavaScript classes (`createPeer`, `Peer`,
//!   `Connection`, `Room`, `Rendezvous`).
//!
//! The same crate builds as a `cdylib` for the browser (wasm-pack) and as an
//! `rlib` that the broker and the native tests link.

pub mod core;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod protocol;

#[cfg(target_arch = "wasm32")]
pub mod api;
#[cfg(target_arch = "wasm32")]
pub mod web;

// talc instead of the default dlmalloc: smaller and faster on wasm32.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
