//! The broker's own STUN service: it answers binding requests on a UDP
//! port so that a peer behind an ordinary NAT learns its public address
//! (its server-reflexive candidate) from the broker it already uses, and
//! one broker process is all a deployment needs for such peers.
//!
//! - [`codec`]: reading a request and writing its answer (no I/O).
//! - [`rfc5769`]: the RFC's test vectors.
//! - [`bind`]: which port, and what happens when it is taken.
//! - [`run`]: the receive loop, with a rate limit per source address and
//!   a counter per outcome in [`Metrics`].
//!
//! Each client is told `stun:<host>:<port>` at registration, where host
//! is the name it reached the broker by (see [`crate::ice`]).

pub mod codec;
pub mod rfc5769;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use crate::Config;
use crate::limits::AddressBuckets;
use crate::metrics::{Metrics, StunOutcome};

/// The STUN port when `--stun-port` is not given (RFC 8489's default).
pub const DEFAULT_PORT: u16 = 3478;

/// Source addresses whose rate is tracked at once; beyond, new addresses
/// get no answer until old buckets refill (see [`AddressBuckets`]).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Bytes read per datagram: more than any request worth answering. A
/// longer datagram is cut here, no longer matches its length field, and
/// is ignored as malformed.
const RECEIVE_BUFFER: usize = 2048;

/// Binds the STUN socket `config` asks for, on the `--host` address:
///
/// - `--stun-port 0`: no STUN, `Ok(None)`;
/// - `--stun-port N` (or `PEERWIRE_STUN_PORT`): that port, or an error
///   naming the flag if it cannot be had;
/// - neither: the default port 3478, or, if it is taken (another broker,
///   coturn), a warning and `Ok(None)`: the broker runs without STUN and
///   hands out no STUN URL of its own.
pub fn bind(config: &Config) -> Result<Option<UdpSocket>, String> {
    let host = config.host.as_str();
    match config.stun_port {
        Some(0) => Ok(None),
        Some(port) => UdpSocket::bind((host, port)).map(Some).map_err(|e| {
            format!(
                "cannot answer STUN on udp {host}:{port}: {e} (pick another --stun-port, 0 turns the broker's STUN off, or stop what holds the port)"
            )
        }),
        None => match UdpSocket::bind((host, DEFAULT_PORT)) {
            Ok(socket) => Ok(Some(socket)),
            Err(e) => {
                tracing::warn!(
                    "cannot answer STUN on udp {host}:{DEFAULT_PORT}: {e}; running without the broker's STUN (clients get no stun: URL from it). Pass --stun-port to choose a port, or --stun-port 0 to silence this"
                );
                Ok(None)
            }
        },
    }
}

/// Answers STUN binding requests on `socket` until the task is dropped.
/// Each answer costs a token from its source address's bucket (`rate`
/// per second, `burst` at most); over it, a request gets no answer.
pub async fn run(socket: tokio::net::UdpSocket, metrics: Arc<Metrics>, rate: f64, burst: f64) {
    let mut limits = AddressBuckets::new(rate, burst, MAX_TRACKED_ADDRESSES, Instant::now());
    let mut buf = [0u8; RECEIVE_BUFFER];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // ICMP errors for earlier answers can surface here; the
                // socket itself stays usable.
                tracing::debug!("STUN receive: {e}");
                continue;
            }
        };
        let outcome = answer(&socket, &buf[..n], from, &mut limits, Instant::now()).await;
        metrics.stun(outcome);
    }
}

/// Handles one datagram; says what became of it.
async fn answer(
    socket: &tokio::net::UdpSocket,
    packet: &[u8],
    from: SocketAddr,
    limits: &mut AddressBuckets,
    now: Instant,
) -> StunOutcome {
    let answer = match codec::respond(packet, from) {
        Ok(answer) => answer,
        Err(codec::Ignored::Malformed(why)) => {
            tracing::trace!(%from, "STUN: ignored a malformed datagram: {why}");
            return StunOutcome::Malformed;
        }
        Err(codec::Ignored::NotBindingRequest) => return StunOutcome::NotBindingRequest,
    };
    if !limits.take(from.ip(), now) {
        return StunOutcome::RateLimited;
    }
    if let Err(e) = socket.send_to(answer.bytes(), from).await {
        tracing::debug!(%from, "STUN send: {e}");
    }
    match answer.kind {
        codec::AnswerKind::Mapped => StunOutcome::Answered,
        codec::AnswerKind::UnknownAttributes => StunOutcome::UnknownAttribute,
    }
}
