//! Rest over streams: URLs, the exchange's heads, routing, and the credit
//! accounting of pull-based record streams. No I/O here.
//!
//! One request/response exchange is one socket to the server's port:
//!
//! ```text
//! client → server   [json: RequestHead] [binary body chunk]* [end]
//! server → client   [json: ResponseHead] [binary body chunk]* [end]
//!                   or, for a record set: [json: ResponseHead{records}] then
//!                   one [json record] per credit the client grants with
//!                   [pull n] frames, then [end]
//! ```

use crate::core::engine::Table;
use crate::protocol::json::{self, Object, Writer};

use serde::{Deserialize, Serialize};

/// Default rest port, as in HTTP.
pub const DEFAULT_PORT: u16 = 80;

/// `rest://host[:port]/path?query`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestUrl {
    /// A node address, a registered hostname, or `localhost`.
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
    /// The raw query string, without `?` (empty if none).
    pub query: String,
}

impl RestUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("rest://").ok_or_else(|| {
            format!("\"{url}\" is not a rest:// URL (use rest://address[:port]/path)")
        })?;
        let (authority, path_query) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port \"{p}\" in \"{url}\""))?,
            ),
            None => (authority, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(format!("\"{url}\" names no host"));
        }
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        Ok(Self {
            host: host.to_string(),
            port,
            path: path.to_string(),
            query: query.to_string(),
        })
    }
}

/// Decodes `a=1&b=x%20y` into pairs (`+` is a space), as
/// `application/x-www-form-urlencoded` reads: empty pieces between `&`s are
/// skipped, a piece without `=` has an empty value.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// `%XX` escapes decoded (a `%` without two hex digits after it stays as
/// it is), `+` read as a space when `plus_is_space`; bytes that are not
/// UTF-8 become U+FFFD. Written out rather than taken from a URL crate:
/// the wasm carries these few lines only.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        match c {
            b'%' => match (
                b.get(i).and_then(|&h| hex(h)),
                b.get(i + 1).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(c),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(c),
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The first frame of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: Table<String, String>,
}

/// The first frame of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    #[serde(default)]
    pub headers: Table<String, String>,
    /// The body is a record set pulled one record at a time.
    #[serde(default)]
    pub records: bool,
}

fn write_headers(w: &mut Writer, headers: &Table<String, String>) {
    let mut h = Writer::new();
    for (k, v) in headers {
        h.str(k, v);
    }
    w.raw("headers", &h.finish());
}

fn read_headers(o: &Object<'_>) -> Result<Table<String, String>, json::Error> {
    let Some(text) = o.raw("headers").filter(|t| *t != "null") else {
        return Ok(Table::new());
    };
    Object::parse(text)?
        .fields()
        .map(|(k, v)| Ok((k.to_string(), json::string(v)?)))
        .collect()
}

impl RequestHead {
    /// As the JSON first frame (the SDK's codec; serde reads it too).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str("method", &self.method)
            .str("path", &self.path)
            .str("query", &self.query);
        write_headers(&mut w, &self.headers);
        w.finish().into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, json::Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| json::Error("not UTF-8"))?;
        let o = Object::parse(text)?;
        Ok(Self {
            method: o.str("method")?,
            path: o.str("path")?,
            query: o.opt_str("query")?.unwrap_or_default(),
            headers: read_headers(&o)?,
        })
    }
}

impl ResponseHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64("status", self.status.into());
        write_headers(&mut w, &self.headers);
        w.bool("records", self.records);
        w.finish().into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, json::Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| json::Error("not UTF-8"))?;
        let o = Object::parse(text)?;
        Ok(Self {
            status: u16::try_from(o.u64("status")?)
                .map_err(|_| json::Error("status out of range"))?,
            headers: read_headers(&o)?,
            records: o.bool("records")?,
        })
    }
}

/// The methods routes can name; `all` matches any.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Fixed(String),
    Param(String),
    /// `*` at the end: the rest of the path.
    Rest,
}

#[derive(Debug, Clone)]
struct Route {
    method: Option<String>,
    segments: Vec<Segment>,
}

/// A route that matched, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub route: usize,
    pub params: Table<String, String>,
}

/// Routes in the order they were added; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl Router {
    /// Adds a route; `method` `None` matches every method. Patterns are
    /// `/users/:id/posts`, with `*` as a last segment for "anything below".
    pub fn add(&mut self, method: Option<&str>, pattern: &str) -> Result<usize, String> {
        if !pattern.starts_with('/') {
            return Err(format!("route \"{pattern}\" must start with '/'"));
        }
        let method = match method {
            Some(m) => {
                let m = m.to_ascii_uppercase();
                if !METHODS.contains(&m.as_str()) {
                    return Err(format!("unknown method \"{m}\""));
                }
                Some(m)
            }
            None => None,
        };
        let parts: Vec<&str> = segments(pattern).collect();
        let mut out = Vec::new();
        for (i, s) in parts.iter().enumerate() {
            out.push(if let Some(name) = s.strip_prefix(':') {
                if name.is_empty() {
                    return Err(format!(
                        "route \"{pattern}\" has a parameter without a name"
                    ));
                }
                Segment::Param(name.to_string())
            } else if *s == "*" {
                if i + 1 != parts.len() {
                    return Err(format!("route \"{pattern}\": '*' must be the last segment"));
                }
                Segment::Rest
            } else {
                Segment::Fixed(s.to_string())
            });
        }
        self.routes.push(Route {
            method,
            segments: out,
        });
        Ok(self.routes.len() - 1)
    }

    /// The first route matching `method` and `path`.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched> {
        let method = method.to_ascii_uppercase();
        let parts: Vec<&str> = segments(path).collect();
        'routes: for (i, r) in self.routes.iter().enumerate() {
            if r.method.as_ref().is_some_and(|m| *m != method) {
                continue;
            }
            let mut params = Table::new();
            let mut k = 0;
            for seg in &r.segments {
                match seg {
                    Segment::Rest => {
                        params.insert("*".to_string(), parts[k.min(parts.len())..].join("/"));
                        return Some(Matched { route: i, params });
                    }
                    _ if k >= parts.len() => continue 'routes,
                    Segment::Fixed(f) if f != parts[k] => continue 'routes,
                    Segment::Fixed(_) => {}
                    Segment::Param(name) => {
                        let value = percent_decode(parts[k], false);
                        params.insert(name.clone(), value);
                    }
                }
                k += 1;
            }
            if k == parts.len() {
                return Some(Matched { route: i, params });
            }
        }
        None
    }
}

/// Credits of a pull-based record stream, seen from the server: a record
/// may be produced only against a credit the client granted.
#[derive(Debug, Clone, Default)]
pub struct Credits {
    available: u64,
}

impl Credits {
    /// The client asked for `n` more records.
    pub fn grant(&mut self, n: u32) {
        self.available = self.available.saturating_add(n as u64);
    }

    /// Takes one credit if there is one.
    pub fn take(&mut self) -> bool {
        if self.available > 0 {
            self.available -= 1;
            true
        } else {
            false
        }
    }

    pub fn available(&self) -> u64 {
        self.available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port_path_and_query() {
        let u = RestUrl::parse("rest://p-abc123/users/7?x=1&y=two").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str(), u.query.as_str()),
            ("p-abc123", 80, "/users/7", "x=1&y=two")
        );
        let u = RestUrl::parse("rest://localhost:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 8080, "/")
        );
        for bad in [
            "http://x/",
            "rest://",
            "rest://:80/",
            "rest://x:99999/",
            "rest://x:y/",
        ] {
            assert!(RestUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("a=1&b=x%20y&c=p+q&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "p q".into()),
                ("d".into(), "".into())
            ]
        );
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn queries_and_segments_decode_as_form_urlencoded_does() {
        for q in [
            "a=1&&b=%41%4a%zz%4&c=%&d=%e2%82%ac+%E2%82%AC&e==x=y&f=%ff%fe&=v&g",
            "&&&",
            "x=%2B+%20&%",
            "k%3Dv=1",
            "caf\u{e9}=\u{1F600}%F0%9F%98%80%F0%9F",
        ] {
            let want: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(parse_query(q), want, "{q}");
        }
        // A path segment keeps its '+' (it is no form field).
        assert_eq!(percent_decode("a+b%20c%2Bd%", false), "a+b c+d%");
        assert_eq!(percent_decode("%C3%A9%C3", false), "\u{e9}\u{fffd}");
    }

    #[test]
    fn routes_match_in_order_with_params_and_methods() {
        let mut r = Router::default();
        let list = r.add(Some("get"), "/users").unwrap();
        let one = r.add(Some("GET"), "/users/:id").unwrap();
        let posts = r.add(None, "/users/:id/posts/:post").unwrap();
        let files = r.add(Some("GET"), "/files/*").unwrap();
        let any = r.add(None, "/*").unwrap();
        assert_eq!(r.find("GET", "/users").unwrap().route, list);
        let m = r.find("GET", "/users/a%20b").unwrap();
        assert_eq!(
            (m.route, m.params.get("id").map(String::as_str)),
            (one, Some("a b"))
        );
        let m = r.find("DELETE", "/users/7/posts/9").unwrap();
        assert_eq!(
            (m.route, m.params["id"].as_str(), m.params["post"].as_str()),
            (posts, "7", "9")
        );
        let m = r.find("GET", "/files/a/b.txt").unwrap();
        assert_eq!((m.route, m.params["*"].as_str()), (files, "a/b.txt"));
        assert_eq!(
            r.find("POST", "/users/7").unwrap().route,
            any,
            "GET-only route skipped for POST"
        );
        let mut strict = Router::default();
        strict.add(Some("GET"), "/a/:b").unwrap();
        assert_eq!(strict.find("GET", "/a"), None);
        assert_eq!(strict.find("GET", "/a/b/c"), None);
        assert_eq!(strict.find("POST", "/a/b"), None);
        assert!(strict.add(Some("FETCH"), "/x").is_err());
        assert!(strict.add(None, "x").is_err());
        assert!(strict.add(None, "/*/x").is_err());
        assert!(strict.add(None, "/:").is_err());
    }

    #[test]
    fn heads_round_trip() {
        let h = RequestHead {
            method: "POST".into(),
            path: "/x".into(),
            query: "a=1".into(),
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
        };
        assert_eq!(
            serde_json::from_str::<RequestHead>(&serde_json::to_string(&h).unwrap()).unwrap(),
            h
        );
        let r: ResponseHead = serde_json::from_str(r#"{"status":404}"#).unwrap();
        assert_eq!((r.status, r.records, r.headers.len()), (404, false, 0));
        // The SDK's codec and serde agree both ways.
        assert_eq!(
            serde_json::from_slice::<RequestHead>(&h.encode()).unwrap(),
            h
        );
        assert_eq!(
            RequestHead::decode(serde_json::to_string(&h).unwrap().as_bytes()).unwrap(),
            h
        );
        let r = ResponseHead {
            status: 201,
            headers: [("x-\"q".to_string(), "v\n".to_string())].into(),
            records: true,
        };
        assert_eq!(
            serde_json::from_slice::<ResponseHead>(&r.encode()).unwrap(),
            r
        );
        assert_eq!(
            ResponseHead::decode(serde_json::to_string(&r).unwrap().as_bytes()).unwrap(),
            r
        );
        assert_eq!(
            ResponseHead::decode(br#"{"status":404}"#).unwrap().status,
            404
        );
        assert!(ResponseHead::decode(br#"{"status":70000}"#).is_err());
        assert!(RequestHead::decode(b"\xff").is_err());
    }

    /// The server side of a record set: nothing is produced without credit,
    /// and exactly one record per credit.
    #[test]
    fn records_are_produced_only_against_credit() {
        let mut credits = Credits::default();
        let mut source = 0..10;
        let mut produced = Vec::new();
        let mut pump = |credits: &mut Credits, produced: &mut Vec<i32>| {
            while credits.take() {
                match source.next() {
                    Some(r) => produced.push(r),
                    None => break,
                }
            }
        };
        pump(&mut credits, &mut produced);
        assert!(produced.is_empty());
        credits.grant(1);
        pump(&mut credits, &mut produced);
        assert_eq!(produced, vec![0]);
        credits.grant(3);
        pump(&mut credits, &mut produced);
        assert_eq!(produced, vec![0, 1, 2, 3]);
        assert_eq!(credits.available(), 0);
    }
}
