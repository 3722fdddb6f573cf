//! The client address of a request that came through a reverse proxy or a
//! load balancer (`--trust-proxy`).
//!
//! Behind a proxy every connection arrives from the proxy's address, and
//! the proxy names the client in `X-Forwarded-For` or in RFC 7239's
//! `Forwarded: for=`. Anyone can send those headers, so the broker reads
//! them only when the TCP peer is a proxy the operator listed; otherwise
//! the peer's address stands and the headers change nothing.
//!
//! Each proxy appends the address it received the request from, so the
//! list is walked from the right: trusted proxies are skipped, and the
//! first address that is not one is the client. Whatever lies to its left
//! was written by that client and is not believed. An entry that names no
//! address (`unknown`, an obfuscated `_id`, garbage) stops the walk: the
//! broker cannot tell who is behind it, and falls back to the TCP peer.
//! When every entry is a trusted proxy, the left-most one is the client (a
//! client on the proxy's own machine).
//!
//! `X-Forwarded-For` is read when the request has one, else `Forwarded`.
//! A proxy that sets only `Forwarded` must drop a client's
//! `X-Forwarded-For` (nginx, HAProxy, cloud load balancers and PaaS
//! routers all set `X-Forwarded-For`).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

/// The de-facto header most proxies set.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Parses one `--trust-proxy` entry: an address (`10.0.0.1`, `::1`) or a
/// CIDR range (`10.0.0.0/8`, `fd00::/8`).
pub fn parse_trusted(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    entry.parse::<IpNet>().map_err(|_| {
        format!(
            "{entry:?} is not an IP address or a CIDR range (like 10.0.0.1, 10.0.0.0/8 or fd00::/8)"
        )
    })
}

/// The address a connection from `peer` with these request headers is
/// counted, limited and logged under: `peer` itself unless it is in
/// `trusted`, else the client the forwarding headers name (see the module
/// docs), or `peer` when they name none.
pub fn client_addr(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let named = if headers.contains_key(&X_FORWARDED_FOR) {
        joined(headers, &X_FORWARDED_FOR).and_then(|v| {
            let entries = v.split(',').map(str::trim).filter(|e| !e.is_empty());
            walk(trusted, entries.map(parse_node))
        })
    } else if headers.contains_key(FORWARDED) {
        joined(headers, &FORWARDED).and_then(|v| walk(trusted, forwarded_for(&v).into_iter()))
    } else {
        None
    };
    named.unwrap_or(peer)
}

/// Whether `ip` is one of the trusted proxies (an IPv4 address seen as
/// IPv6 on a dual-stack socket, `::ffff:10.0.0.1`, counts as IPv4).
fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Every instance of header `name`, in order, joined with commas (RFC 9110
/// says they form one list); `None` when one is not visible ASCII.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Option<Vec<&str>> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    Some(parts?.join(","))
}

/// Walks the hops from the right (see the module docs); `None` when an
/// entry names no address or there is none.
fn walk(
    trusted: &[IpNet],
    hops: impl DoubleEndedIterator<Item = Option<IpAddr>>,
) -> Option<IpAddr> {
    let mut leftmost = None;
    for hop in hops.rev() {
        let ip = hop?;
        if !is_trusted(trusted, ip) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    leftmost
}

/// One hop's address: `192.0.2.1`, `2001:db8::1`, with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or in brackets alone.
/// `unknown`, obfuscated identifiers and garbage give `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let ip = node
        .parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            node.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The `for=` node of each element of a `Forwarded` header value, in
/// order: `Some(address)`, or `None` for an element whose `for` is
/// missing, repeated, `unknown`, obfuscated or malformed.
pub fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    split_unquoted(value, ',')
        .into_iter()
        .filter(|element| !element.trim().is_empty())
        .map(|element| {
            let mut found = None;
            for pair in split_unquoted(element, ';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (key, raw) = pair.split_once('=')?;
                if key.trim().eq_ignore_ascii_case("for") {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(unquote(raw.trim())?);
                }
            }
            parse_node(&found?)
        })
        .collect()
}

/// Splits at `sep` outside quoted strings (which may hold `\`-escapes).
/// An unclosed quote runs to the end, where [`unquote`] refuses it.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A token as it is, or a quoted string without its quotes and escapes;
/// `None` for a broken quoted string.
fn unquote(raw: &str) -> Option<String> {
    let Some(inner) = raw.strip_prefix('"') else {
        return (!raw.contains('"')).then(|| raw.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(entries: &[&str]) -> Vec<IpNet> {
        entries.iter().map(|e| parse_trusted(e).unwrap()).collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn trusted_entries_are_addresses_or_ranges_and_garbage_is_named() {
        assert_eq!(
            parse_trusted("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(parse_trusted(" ::1 ").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_trusted("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_trusted("fd00::/8").unwrap().to_string(), "fd00::/8");
        for bad in ["10.0.0.0/33", "localhost", "10.0.0", "fd00::/129", ""] {
            let err = parse_trusted(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn forwarded_for_reads_addresses_ports_and_quoted_ipv6() {
        assert_eq!(
            forwarded_for(r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https"#),
            vec![Some(ip("192.0.2.43")), Some(ip("2001:db8:cafe::17"))]
        );
        assert_eq!(
            forwarded_for(r#"For="[2001:db8::1]";by=203.0.113.1;host="a,b;c""#),
            vec![Some(ip("2001:db8::1"))],
            "case-insensitive key, separators inside quotes"
        );
        assert_eq!(
            forwarded_for(r#"proto=http;for="192.0.2.1:8080""#),
            vec![Some(ip("192.0.2.1"))]
        );
        assert_eq!(
            forwarded_for(r#"for="::ffff:198.51.100.7""#),
            vec![Some(ip("198.51.100.7"))],
            "an IPv4-mapped IPv6 address is the IPv4 address"
        );
        assert_eq!(
            forwarded_for(r#"for="\[2001:db8::2\]""#),
            vec![Some(ip("2001:db8::2"))],
            "escapes in a quoted string"
        );
    }

    #[test]
    fn forwarded_for_names_nobody_for_unknown_obfuscated_and_garbage() {
        for (value, why) in [
            ("for=unknown", "unknown"),
            ("for=_hidden", "obfuscated"),
            (r#"for="_SEVKISEK:4711""#, "obfuscated with a port"),
            ("proto=https", "no for"),
            ("for=192.0.2.1;for=192.0.2.2", "two fors in one element"),
            (r#"for="192.0.2.1"#, "unclosed quote"),
            ("for=192.0.2.1\"x\"", "quote inside a token"),
            ("for=999.0.2.1", "not an address"),
            ("for", "no value"),
            ("garbage", "not a pair"),
            ("for=[2001:db8::1", "unclosed bracket"),
        ] {
            assert_eq!(forwarded_for(value), vec![None], "{why}: {value}");
        }
        assert_eq!(forwarded_for(""), vec![], "no elements");
        assert_eq!(
            forwarded_for("for=192.0.2.1, for=unknown"),
            vec![Some(ip("192.0.2.1")), None]
        );
    }

    #[test]
    fn headers_count_only_from_a_trusted_peer() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_addr(&trusted, ip("10.1.2.3"), &h), ip("203.0.113.9"));
        assert_eq!(
            client_addr(&trusted, ip("192.0.2.50"), &h),
            ip("192.0.2.50"),
            "an untrusted peer cannot name another address"
        );
        assert_eq!(
            client_addr(&[], ip("10.1.2.3"), &h),
            ip("10.1.2.3"),
            "no --trust-proxy: headers change nothing"
        );
        assert_eq!(
            client_addr(&trusted, ip("::ffff:10.1.2.3"), &h),
            ip("203.0.113.9"),
            "a trusted IPv4 proxy on a dual-stack socket"
        );
        assert_eq!(
            client_addr(&trusted, ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3"),
            "no header: the peer"
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let peer = ip("10.0.0.1");
        let xff = |v: &str| client_addr(&trusted, peer, &headers(&[("x-forwarded-for", v)]));
        assert_eq!(
            xff("6.6.6.6, 198.51.100.1, 10.0.0.2"),
            ip("198.51.100.1"),
            "what the client wrote to the left is not believed"
        );
        assert_eq!(xff("198.51.100.1:4711"), ip("198.51.100.1"));
        assert_eq!(
            xff("[2001:db8::5]:4711, 2001:db8:ffff::1"),
            ip("2001:db8::5")
        );
        assert_eq!(
            xff("10.0.0.7, 10.0.0.2"),
            ip("10.0.0.7"),
            "every hop trusted: the left-most"
        );
        assert_eq!(
            xff("unknown, 10.0.0.2"),
            peer,
            "a hop names nobody: the peer"
        );
        assert_eq!(xff("198.51.100.1, garbage"), peer);
        assert_eq!(
            xff("198.51.100.1, , 10.0.0.2,"),
            ip("198.51.100.1"),
            "empty list elements are skipped (RFC 9110, 5.6.1)"
        );
        assert_eq!(xff(""), peer, "an empty header: the peer");
        assert_eq!(
            xff("garbage, 198.51.100.1"),
            ip("198.51.100.1"),
            "garbage left of the client is never read"
        );

        let fwd = |v: &str| client_addr(&trusted, peer, &headers(&[("forwarded", v)]));
        assert_eq!(
            fwd(r#"for=6.6.6.6, for="[2001:db8::9]:1234", for=10.0.0.3"#),
            ip("2001:db8::9")
        );
        assert_eq!(fwd("for=_proxy9, for=10.0.0.3"), peer, "obfuscated");
        assert_eq!(fwd("for=198.51.100.2, for=unknown"), peer);
    }

    #[test]
    fn repeated_headers_form_one_list_and_x_forwarded_for_comes_first() {
        let trusted = nets(&["10.0.0.1"]);
        let peer = ip("10.0.0.1");
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        assert_eq!(client_addr(&trusted, peer, &h), ip("198.51.100.1"));
        let both = headers(&[
            ("forwarded", "for=203.0.113.5"),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(client_addr(&trusted, peer, &both), ip("198.51.100.1"));
        let mut binary = HeaderMap::new();
        binary.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"198.51.100.1\xff").unwrap(),
        );
        assert_eq!(client_addr(&trusted, peer, &binary), peer);
    }
}
