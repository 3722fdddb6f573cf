//! The access log: one line per WebSocket connection opened, one per
//! connection closed, and one per upgrade refused, at `info` under the
//! target `peerwire_broker::access` (`RUST_LOG=peerwire_broker::access=warn`
//! silences them).
//!
//! Every line has `event` (`open`, `close` or `refused`) and `client`, the
//! client's address (the one `--trust-proxy` resolved). Open and close
//! lines carry `conn`, the connection's number for the life of the
//! process; close lines add `id` once the connection registered one,
//! `code` (the close code sent or received; 1006 when the connection was
//! lost without one), `by` (`broker`, `client` or `network`), `reason` and
//! `duration_ms`. Refused lines carry `reason` (`origin`,
//! `connections-per-ip`, `token`), the HTTP `status` or the close `code`,
//! and `detail`. With `--log-format json` the fields are the top-level keys
//! of each line's object.

use std::net::IpAddr;
use std::time::Duration;

use peerwire::protocol::CloseCode;
use serde::Deserialize;

use crate::hub::{ConnId, Frame};

/// Who ended a connection, and with which close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The broker sent this close code.
    Broker(CloseCode),
    /// The client sent a close frame with this code (`None`: no code).
    Client(Option<u16>),
    /// The connection broke without a close frame.
    Network,
}

impl ClosedBy {
    /// The close code for the log: the one sent or received, 1005 for a
    /// close frame without one, 1006 for none at all (RFC 6455, 7.4.1).
    pub fn code(self) -> u16 {
        match self {
            ClosedBy::Broker(code) => code.code(),
            ClosedBy::Client(code) => code.unwrap_or(1005),
            ClosedBy::Network => 1006,
        }
    }

    fn who(self) -> &'static str {
        match self {
            ClosedBy::Broker(_) => "broker",
            ClosedBy::Client(_) => "client",
            ClosedBy::Network => "network",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            ClosedBy::Broker(code) => code.reason(),
            ClosedBy::Client(Some(1000)) => "normal",
            ClosedBy::Client(_) => "closed by the client",
            ClosedBy::Network => "connection lost",
        }
    }
}

/// A WebSocket connection from `client` was accepted as `conn`.
pub fn opened(client: IpAddr, conn: ConnId) {
    tracing::info!(
        target: "peerwire_broker::access",
        event = %"open",
        client = %client,
        conn,
        "connection opened"
    );
}

/// Connection `conn` from `client` ended after `lasted`; `id` is the id it
/// registered, if it did.
pub fn closed(client: IpAddr, conn: ConnId, id: Option<&str>, by: ClosedBy, lasted: Duration) {
    tracing::info!(
        target: "peerwire_broker::access",
        event = %"close",
        client = %client,
        conn,
        id,
        code = by.code(),
        by = %by.who(),
        reason = by.reason(),
        duration_ms = u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX),
        "connection closed"
    );
}

/// An upgrade from `client` was answered with HTTP `status` for `reason`
/// (`origin`, `connections-per-ip`); `detail` is the text it was sent.
pub fn refused_http(client: IpAddr, reason: &str, status: u16, detail: &str) {
    tracing::info!(
        target: "peerwire_broker::access",
        event = %"refused",
        client = %client,
        reason = %reason,
        status,
        detail = detail.trim_end(),
        "connection refused"
    );
}

/// An upgrade from `client` was completed and closed at once with `code`
/// for `reason` (`token`); `detail` is the close frame's reason.
pub fn refused_ws(client: IpAddr, reason: &str, code: CloseCode, detail: &str) {
    tracing::info!(
        target: "peerwire_broker::access",
        event = %"refused",
        client = %client,
        reason = %reason,
        code = code.code(),
        detail,
        "connection refused"
    );
}

/// The id a frame on its way to the client confirms: `Some` for the
/// `registered` reply (checked by its first bytes, so other frames cost a
/// comparison and no parse).
pub fn registered_id(frame: &Frame) -> Option<String> {
    #[derive(Deserialize)]
    struct Registered {
        id: String,
    }
    let text = frame.as_text()?;
    if !text.starts_with(r#"{"type":"registered","#) {
        return None;
    }
    serde_json::from_str::<Registered>(text).ok().map(|r| r.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwire::protocol::ServerMessage;

    #[test]
    fn the_registered_reply_names_the_id_and_nothing_else_does() {
        // Encoded as the hub encodes it: a change in field order that
        // breaks the prefix check fails here, not silently in the logs.
        let reply = ServerMessage::Registered {
            rid: 1,
            id: "alice".into(),
            resume_token: "t".into(),
            resumed: false,
            ice_servers: Vec::new(),
            grace_ms: 10_000,
            protocol: 1,
            rooms: Vec::new(),
            rate_limit: None,
            rate_burst: None,
            max_frame_bytes: Some(65_536),
        };
        let frame = Frame::Text(reply.encode().into());
        assert_eq!(registered_id(&frame).as_deref(), Some("alice"));

        let pong = Frame::Text(ServerMessage::Pong { rid: 2 }.encode().into());
        assert_eq!(registered_id(&pong), None);
        let binary = Frame::Binary(br#"{"type":"registered","id":"x"}"#.to_vec().into());
        assert_eq!(registered_id(&binary), None);
    }

    #[test]
    fn close_codes_say_who_closed() {
        assert_eq!(ClosedBy::Broker(CloseCode::TooManyMessages).code(), 4002);
        assert_eq!(ClosedBy::Client(Some(1000)).code(), 1000);
        assert_eq!(ClosedBy::Client(None).code(), 1005);
        assert_eq!(ClosedBy::Network.code(), 1006);
    }
}
