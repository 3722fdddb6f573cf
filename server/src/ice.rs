//! ICE configuration handed to each client at registration.
//!
//! STUN URLs are passed through. TURN URLs get short-lived credentials in the
//! TURN REST format when a shared secret is configured: username
//! `<unix expiry>:<peer id>`, password `base64(HMAC-SHA1(secret, username))`.
//! The TURN server (coturn's `use-auth-secret`, for example) checks them with
//! the same secret, which therefore never reaches a browser.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use peerwire::protocol::IceServer;
use sha1::Sha1;

/// What the broker knows about ICE servers.
#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// Shared secret for TURN REST credentials.
    pub turn_secret: Option<String>,
    /// How long issued TURN credentials stay valid, in seconds.
    pub turn_ttl_secs: u64,
}

impl IceConfig {
    /// The servers for peer `id`, with TURN credentials valid from `now_unix`.
    pub fn servers_for(&self, id: &str, now_unix: u64) -> Vec<IceServer> {
        let (turn, stun): (Vec<String>, Vec<String>) = self
            .urls
            .iter()
            .cloned()
            .partition(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if !turn.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let (u, c) = turn_credentials(secret, id, now_unix + self.turn_ttl_secs);
                    (Some(u), Some(c))
                }
                None => (None, None),
            };
            servers.push(IceServer {
                urls: turn,
                username,
                credential,
            });
        }
        servers
    }
}

/// TURN REST credentials for `id`, expiring at `expiry_unix`.
pub fn turn_credentials(secret: &str, id: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{id}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_rest_credentials_match_a_known_vector() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let (u, c) = turn_credentials("s3cret", "alice", 1_700_000_000);
        assert_eq!(u, "1700000000:alice");
        assert_eq!(c, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }

    #[test]
    fn stun_and_turn_are_split_and_only_turn_gets_credentials() {
        let cfg = IceConfig {
            urls: vec![
                "stun:s.example:3478".into(),
                "turn:t.example:3478?transport=udp".into(),
            ],
            turn_secret: Some("k".into()),
            turn_ttl_secs: 60,
        };
        let servers = cfg.servers_for("bob", 100);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:s.example:3478"]);
        assert!(servers[0].username.is_none());
        assert_eq!(servers[1].username.as_deref(), Some("160:bob"));
        assert!(servers[1].credential.is_some());
        assert!(IceConfig::default().servers_for("x", 0).is_empty());
    }
}
