//! ICE configuration handed to each client at registration.
//!
//! The broker's own STUN service (see [`crate::stun`]) comes first, as
//! `stun:<host>:<port>`, where host is the name the client reached the
//! broker by (its HTTP `Host`, see [`url_host`]) unless
//! `--stun-public-host` says otherwise. STUN URLs from `--ice-server` are
//! passed through after it. TURN URLs get short-lived credentials in the
//! TURN REST format when a shared secret is configured: username
//! `<unix expiry>:<peer id>`, password `base64(HMAC-SHA1(secret, username))`.
//! The TURN server (coturn's `use-auth-secret`, for example) checks them with
//! the same secret, which therefore never reaches a browser.

use std::net::{IpAddr, Ipv6Addr};

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
    /// The broker's own STUN service, when it answers STUN.
    pub own_stun: Option<OwnStun>,
}

/// Where clients find the broker's own STUN service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnStun {
    /// The UDP port it answers on.
    pub port: u16,
    /// The host to name in its URL for every client (`--stun-public-host`,
    /// already checked by [`bare_host`]); `None`: the host each client
    /// reached the broker by.
    pub public_host: Option<String>,
}

impl IceConfig {
    /// The broker's own `stun:` URL for a client that reached the broker
    /// as `broker_host` (a host from [`url_host`] or [`address_host`]).
    pub fn own_stun_url(&self, broker_host: Option<&str>) -> Option<String> {
        let own = self.own_stun.as_ref()?;
        let host = own.public_host.as_deref().or(broker_host)?;
        Some(format!("stun:{host}:{}", own.port))
    }

    /// The servers for peer `id`, which reached the broker as
    /// `broker_host`, with TURN credentials valid from `now_unix`.
    pub fn servers_for(
        &self,
        id: &str,
        now_unix: u64,
        broker_host: Option<&str>,
    ) -> Vec<IceServer> {
        let (turn, mut stun): (Vec<String>, Vec<String>) = self
            .urls
            .iter()
            .cloned()
            .partition(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        if let Some(own) = self.own_stun_url(broker_host) {
            if !stun.contains(&own) {
                stun.insert(0, own);
            }
        }
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

/// The host of an HTTP `Host` header (or URI authority) as it goes in a
/// `stun:` URL: a DNS name (lowercased), an IPv4 address, or a bracketed
/// IPv6 address; the port, if any, dropped. `None` when it is none of
/// these (empty, unbracketed IPv6, a zone id, stray characters that could
/// bend the URL, an unspecified address): then the caller falls back to
/// the address the connection arrived on.
pub fn url_host(authority: &str) -> Option<String> {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(valid_port) {
            return None;
        }
        return address_host(IpAddr::V6(ip));
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if valid_port(port) => host,
        Some(_) => return None,
        None => authority,
    };
    name_host(host)
}

/// The host for `--stun-public-host`: like [`url_host`] but without a
/// port, and a bare IPv6 address is taken too (and bracketed).
pub fn bare_host(host: &str) -> Option<String> {
    let host = host.trim();
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return address_host(IpAddr::V6(ip));
    }
    if let Some(inside) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return address_host(IpAddr::V6(inside.parse().ok()?));
    }
    name_host(host)
}

/// An address as the host of a URL: IPv6 bracketed, an IPv4-mapped IPv6
/// address as plain IPv4; `None` for an unspecified address.
pub fn address_host(ip: IpAddr) -> Option<String> {
    match ip.to_canonical() {
        ip if ip.is_unspecified() => None,
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => Some(format!("[{v6}]")),
    }
}

/// An IPv4 address or a DNS name (letters, digits, `-`, `_` and dots, at
/// most 253 characters, no empty label), lowercased.
fn name_host(host: &str) -> Option<String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return address_host(ip);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = host.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    (labels_ok && host.len() <= 253).then(|| host.to_ascii_lowercase())
}

fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok() && port.bytes().all(|b| b.is_ascii_digit())
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
            own_stun: None,
        };
        let servers = cfg.servers_for("bob", 100, Some("broker.example"));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:s.example:3478"]);
        assert!(servers[0].username.is_none());
        assert_eq!(servers[1].username.as_deref(), Some("160:bob"));
        assert!(servers[1].credential.is_some());
        assert!(IceConfig::default().servers_for("x", 0, None).is_empty());
    }

    #[test]
    fn the_brokers_own_stun_comes_first_with_the_host_the_client_used() {
        let mut cfg = IceConfig {
            urls: vec!["stun:s.example:3478".into()],
            own_stun: Some(OwnStun {
                port: 3478,
                public_host: None,
            }),
            ..IceConfig::default()
        };
        let servers = cfg.servers_for("a", 0, Some("broker.example"));
        assert_eq!(
            servers[0].urls,
            ["stun:broker.example:3478", "stun:s.example:3478"]
        );
        // Reached by an address nobody can use: no URL of its own.
        assert_eq!(
            cfg.servers_for("a", 0, None)[0].urls,
            ["stun:s.example:3478"]
        );
        // The user already lists it: once.
        cfg.urls = vec!["stun:broker.example:3478".into()];
        assert_eq!(
            cfg.servers_for("a", 0, Some("broker.example"))[0].urls,
            ["stun:broker.example:3478"]
        );
        // --stun-public-host wins over what the client used.
        cfg.own_stun = Some(OwnStun {
            port: 3479,
            public_host: Some("[2001:db8::1]".into()),
        });
        cfg.urls.clear();
        assert_eq!(
            cfg.servers_for("a", 0, Some("broker.example"))[0].urls,
            ["stun:[2001:db8::1]:3479"]
        );
        assert_eq!(
            cfg.servers_for("a", 0, None)[0].urls,
            ["stun:[2001:db8::1]:3479"]
        );
    }

    #[test]
    fn host_headers_become_url_hosts_or_nothing() {
        for (header, host) in [
            ("broker.example.org", Some("broker.example.org")),
            ("Broker.Example.ORG:8443", Some("broker.example.org")),
            ("broker.example.org.:80", Some("broker.example.org")),
            ("localhost:8080", Some("localhost")),
            ("127.0.0.1:8080", Some("127.0.0.1")),
            ("10.0.0.7", Some("10.0.0.7")),
            ("[::1]:8080", Some("[::1]")),
            ("[2001:DB8::1]", Some("[2001:db8::1]")),
            ("[::ffff:192.0.2.9]:80", Some("192.0.2.9")),
            ("my_host.internal", Some("my_host.internal")),
            ("", None),
            (":8080", None),
            ("host:", None),
            ("host:port", None),
            ("host:123456", None),
            ("host:+80", None),
            ("::1", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[fe80::1%eth0]:80", None),
            ("0.0.0.0:8080", None),
            ("[::]:8080", None),
            ("a..b", None),
            ("evil.example?transport=tcp", None),
            ("evil.example/x", None),
            ("user@evil.example", None),
            ("bad host", None),
            ("h\u{e9}te.example", None),
        ] {
            assert_eq!(url_host(header).as_deref(), host, "{header:?}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert_eq!(url_host(&long), None, "a label over 63");
        for (flag, host) in [
            ("stun.example.org", Some("stun.example.org")),
            ("2001:db8::1", Some("[2001:db8::1]")),
            ("[2001:db8::1]", Some("[2001:db8::1]")),
            ("192.0.2.1", Some("192.0.2.1")),
            ("stun.example.org:3478", None),
            ("[2001:db8::1]:3478", None),
            ("", None),
        ] {
            assert_eq!(bare_host(flag).as_deref(), host, "{flag:?}");
        }
    }
}
