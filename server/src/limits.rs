//! Abuse limits: token buckets for message rates, per connection and per
//! client address, the table of addresses with their connection counts,
//! and a bounded table of buckets per address for connectionless traffic
//! (STUN over UDP).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether the bucket would be full at `now`: then it limits nothing
    /// that a fresh one would not, and can be forgotten.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// Takes one token; `false` when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(1.0, now)
    }

    /// Takes `n` tokens (bytes, for the relay's byte rates); `false`, and
    /// nothing taken, when fewer are left.
    pub fn take_n(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

struct Address {
    connections: usize,
    bucket: TokenBucket,
}

/// Connections and message budget per client address.
pub struct AddressTable {
    max_connections: usize,
    rate: f64,
    burst: f64,
    table: Mutex<HashMap<IpAddr, Address>>,
}

impl AddressTable {
    pub fn new(max_connections: usize, rate: f64, burst: f64) -> Self {
        Self {
            max_connections,
            rate,
            burst,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `ip`; `false` when it has too many.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let entry = t.entry(ip).or_insert_with(|| Address {
            connections: 0,
            bucket: TokenBucket::new(self.rate, self.burst, now),
        });
        if entry.connections >= self.max_connections {
            return false;
        }
        entry.connections += 1;
        true
    }

    /// A connection from `ip` ended.
    pub fn release(&self, ip: IpAddr) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = t.get_mut(&ip) {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 {
                t.remove(&ip);
            }
        }
    }

    /// Takes one message from `ip`'s shared budget.
    pub fn take(&self, ip: IpAddr, now: Instant) -> bool {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.get_mut(&ip).is_none_or(|e| e.bucket.take(now))
    }
}

/// A token bucket per address for traffic that has no connection to hang
/// a bucket on (STUN over UDP, whose source addresses may be forged).
///
/// The table is bounded: an address whose bucket has refilled is
/// forgotten, and when `capacity` addresses are tracked and none can be
/// forgotten, a new address is refused until some can. Forgetting scans
/// the table, so it runs at most once per [`AddressBuckets::PRUNE_EVERY`]
/// while the table is full, and once per minute anyway.
pub struct AddressBuckets {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
    /// When the table was last scanned, or made.
    tidied: Instant,
}

impl AddressBuckets {
    /// How often a full table is scanned for refilled buckets at most.
    pub const PRUNE_EVERY: Duration = Duration::from_secs(1);

    /// How often the table is scanned anyway, to hand memory back.
    pub const TIDY_EVERY: Duration = Duration::from_secs(60);

    /// `rate` tokens per second per address, `burst` at most, for at most
    /// `capacity` addresses at once.
    pub fn new(rate: f64, burst: f64, capacity: usize, now: Instant) -> Self {
        Self {
            rate,
            burst,
            capacity,
            buckets: HashMap::new(),
            tidied: now,
        }
    }

    /// Takes one token from `ip`'s bucket; `false` when it is empty, or
    /// when `ip` is new and the table is full.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if now.saturating_duration_since(self.tidied) >= Self::TIDY_EVERY {
            self.prune(now);
        }
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            return bucket.take(now);
        }
        if self.buckets.len() >= self.capacity {
            if now.saturating_duration_since(self.tidied) >= Self::PRUNE_EVERY {
                self.prune(now);
            }
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let mut bucket = TokenBucket::new(self.rate, self.burst, now);
        let taken = bucket.take(now);
        self.buckets.insert(ip, bucket);
        taken
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn prune(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(now));
        self.tidied = now;
    }
}

/// How often the broker hands freed heap memory back to the system.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Returns freed heap memory to the operating system. glibc keeps what
/// thousands of departed connections freed in its per-thread arenas, so
/// the broker's resident size would stay at its peak after a surge (the
/// soak test saw 28 MiB stay resident; trimmed, 11 MiB). Elsewhere a no-op.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The longest `Origin` header looked at; a longer one is refused.
pub const MAX_ORIGIN_BYTES: usize = 512;

/// Whether a page at `origin` may connect, given the `--allow-origin`
/// patterns. Both are parsed as `scheme://host[:port]` (nothing else: an
/// origin has no path, user or query) and compared part by part: the
/// scheme exactly, the host exactly or with `*` standing for any run of
/// host characters, the port exactly, or `*` for any. `null` matches only
/// the pattern `null`. Linear in the lengths.
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    if origin.len() > MAX_ORIGIN_BYTES {
        return false;
    }
    if origin == "null" {
        return allowed.iter().any(|p| p == "null");
    }
    let Some(origin) = Origin::parse(origin, false) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|p| Origin::parse(p, true))
        .any(|pattern| pattern.matches(&origin))
}

/// Checks an `--allow-origin` pattern at startup.
pub fn check_origin_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "null" || Origin::parse(pattern, true).is_some() {
        Ok(())
    } else {
        Err(format!(
            "--allow-origin {pattern:?} must be scheme://host or scheme://host:port, host and port exact or with * (e.g. https://*.example.com, http://localhost:*), or null"
        ))
    }
}

/// An origin, or an `--allow-origin` pattern.
#[derive(Debug)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<String>,
}

impl Origin {
    fn parse(text: &str, pattern: bool) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme_ok = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return None;
        }
        let (host, port) = match rest.strip_prefix('[') {
            // An IPv6 address (never a pattern).
            Some(v6) => {
                let (addr, after) = v6.split_once(']')?;
                if addr.is_empty()
                    || !addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
                {
                    return None;
                }
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':')?),
                };
                (&rest[..addr.len() + 2], port)
            }
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_')
                        || (pattern && b == b'*')
                }));
        let port_ok = port.is_none_or(|p| {
            (pattern && p == "*")
                || (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        });
        (host_ok && port_ok).then(|| Origin {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port: port.map(str::to_string),
        })
    }

    /// Whether origin `o` matches this pattern.
    fn matches(&self, o: &Origin) -> bool {
        self.scheme == o.scheme
            && wildcard_match(&self.host, &o.host)
            && match (self.port.as_deref(), o.port.as_deref()) {
                (Some("*"), _) => true,
                (p, q) => p == q,
            }
    }
}

/// Whether `s` matches `pattern`: exact, or with `*` standing for any run
/// of characters. Linear in the lengths: the pieces between `*`s are found
/// left to right, each at its first place after the one before (which is
/// always as good as any later place).
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(rest) = s.strip_prefix(first) else {
        return false;
    };
    let mut middle: Vec<&str> = pieces.collect();
    let Some(last) = middle.pop() else {
        return rest.is_empty(); // no `*`
    };
    let Some(mut rest) = rest.strip_suffix(last) else {
        return false;
    };
    if s.len() < first.len() + last.len() {
        return false;
    }
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert_eq!((0..7).filter(|_| b.take(t0)).count(), 5, "the burst");
        assert!(!b.take(t0));
        assert!(
            b.take(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.take(t0 + Duration::from_millis(150)));
        assert_eq!(
            (0..20)
                .filter(|_| b.take(t0 + Duration::from_secs(60)))
                .count(),
            5,
            "never above the burst"
        );
    }

    #[test]
    fn byte_buckets_take_amounts_or_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 1000.0, t0);
        assert!(b.take_n(600.0, t0));
        assert!(!b.take_n(600.0, t0), "400 left");
        assert!(b.take_n(400.0, t0), "a refused take takes nothing");
        assert!(b.take_n(500.0, t0 + Duration::from_millis(500)));
        assert!(!b.take_n(1.0, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn addresses_count_connections_and_share_a_budget() {
        let now = Instant::now();
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let t = AddressTable::new(2, 1.0, 3.0);
        assert!(t.admit(ip, now) && t.admit(ip, now));
        assert!(!t.admit(ip, now), "third connection refused");
        assert_eq!(
            (0..5).filter(|_| t.take(ip, now)).count(),
            3,
            "one budget for both connections"
        );
        t.release(ip);
        assert!(t.admit(ip, now));
        t.release(ip);
        t.release(ip);
        assert!(
            t.take("10.0.0.1".parse().unwrap(), now),
            "unknown addresses are not limited here"
        );
    }

    #[test]
    fn address_buckets_limit_each_address_and_stay_bounded() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let mut t = AddressBuckets::new(1.0, 2.0, 3, t0);
        assert_eq!((0..5).filter(|_| t.take(ip(1), t0)).count(), 2, "the burst");
        assert!(
            t.take(ip(2), t0) && t.take(ip(3), t0),
            "others have their own"
        );
        assert_eq!(t.len(), 3);
        assert!(
            !t.take(ip(4), t0),
            "full, nothing refilled: a new address waits"
        );
        assert!(
            !t.take(ip(4), at(500)),
            "a full table is scanned once a second"
        );
        // 1.1 s on, ip 2 and 3 have refilled (one token taken, 1/s) but
        // ip 1 (both taken) has not: the scan frees two places.
        assert!(t.take(ip(4), at(1100)), "refilled buckets are forgotten");
        assert_eq!(t.len(), 2, "ip 1 and ip 4");
        assert!(t.take(ip(5), at(1100)));
        assert!(!t.take(ip(6), at(1600)));
        assert!(t.take(ip(6), at(3200)), "everything had refilled");
        assert_eq!(t.len(), 1);
        // And tidied within a minute whatever happens.
        assert!(t.take(ip(1), at(3200) + AddressBuckets::TIDY_EVERY));
        assert_eq!(t.len(), 1, "ip 6 had refilled");
        assert!(!t.is_empty());
    }

    #[test]
    fn origins_match_exactly_or_by_pattern() {
        let allowed = vec![
            "https://app.example.org".to_string(),
            "https://*.example.com".to_string(),
        ];
        for ok in [
            "https://app.example.org",
            "https://a.example.com",
            "https://a.b.example.com",
        ] {
            assert!(origin_allowed(&allowed, ok), "{ok}");
        }
        for bad in [
            "https://app.example.org.evil",
            "http://app.example.org",
            "https://example.com.evil.org",
            "",
            // Spellings that a plain text match let through.
            "https://evil.org/.example.com",
            "https://evil.org?.example.com",
            "https://evil.org#.example.com",
            "https://user@evil.org/x.example.com",
            "https://evil.org\\.example.com",
            "https://evil.org:443.example.com",
            "https://a.example.com:8443",
            "null",
        ] {
            assert!(!origin_allowed(&allowed, bad), "{bad}");
        }
        let ports = vec!["http://localhost:*".to_string(), "null".to_string()];
        assert!(origin_allowed(&ports, "http://localhost:5173"));
        assert!(origin_allowed(&ports, "http://localhost"));
        assert!(origin_allowed(&ports, "null"));
        assert!(!origin_allowed(&ports, "http://localhost.evil.org:80"));
        assert!(origin_allowed(
            &["http://[::1]:8080".to_string()],
            "http://[::1]:8080"
        ));
    }

    #[test]
    fn matching_is_linear_in_the_lengths() {
        // A pattern with three stars against a long origin that almost
        // matches took seconds with backtracking.
        let allowed = vec!["https://*a*a*a.example.com".to_string()];
        let long = format!("https://{}.example.org", "a".repeat(MAX_ORIGIN_BYTES - 30));
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(!origin_allowed(&allowed, &long));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let text = "a".repeat(100_000);
        assert!(!wildcard_match("*a*a*a*b", &text));
        assert!(wildcard_match("*a*a*a*", &text));
        assert!(
            !origin_allowed(&allowed, &format!("https://{}", "a".repeat(600))),
            "too long"
        );
    }

    #[test]
    fn wildcards_match_as_before() {
        for (p, s, want) in [
            ("admin-*", "admin-1", true),
            ("admin-*", "admin-", true),
            ("admin-*", "admin", false),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exact!", false),
        ] {
            assert_eq!(wildcard_match(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn bad_origin_patterns_are_named() {
        assert!(check_origin_pattern("https://*.example.com").is_ok());
        assert!(check_origin_pattern("null").is_ok());
        let err = check_origin_pattern("example.com").unwrap_err();
        assert!(err.contains("--allow-origin"), "{err}");
        assert!(check_origin_pattern("https://example.com/app").is_err());
    }
}
