//! One rest exchange (a request and its response on one socket), both
//! ends, without the socket: what each received item means and what to
//! send next. The api's rest server and `fetch` drive these over a stream;
//! `server/tests/sim.rs` drives them over the simulated network.
//!
//! ```text
//!  client                                   server
//!  head (JSON) ─┐                           RequestReader: head, body…, end
//!  body…        ├──────────────────────────► ├─ body above the limit → 413
//!  end ─────────┘                            ├─ no route → 404
//!                                            └─ Request → the handler
//!  ResponseReader ◄──── head (JSON: status, headers, records)
//!                 ◄──── body… | records (one per pull credit) ◄── pull n
//!                 ◄──── end
//! ```

use crate::core::engine::Table;

use super::rest::{Matched, RequestHead, ResponseHead, RestUrl, Router};
use crate::protocol::frames::PayloadType;

/// What arrives on an exchange's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Message(PayloadType, Vec<u8>),
    End,
    Pull(u32),
    Closed(String),
}

/// What to send on it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Message(PayloadType, Vec<u8>),
    End,
}

/// What the server's reader has so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    /// Nothing to do yet.
    More,
    /// The whole request, for routing.
    Request { head: RequestHead, body: Vec<u8> },
    /// Answer this and stop reading (a body above the limit: 413).
    Answer(Vec<Outgoing>),
    /// Close the socket with this reason (a request without a head).
    Abort(String),
    /// The client went away.
    Gone,
}

/// The server reading one request.
#[derive(Debug)]
pub struct RequestReader {
    max_body: usize,
    head: Option<RequestHead>,
    body: Vec<u8>,
    finished: bool,
}

impl RequestReader {
    /// A reader that answers 413 past `max_body` bytes of body.
    pub fn new(max_body: usize) -> Self {
        Self {
            max_body,
            head: None,
            body: Vec::new(),
            finished: false,
        }
    }

    pub fn feed(&mut self, item: Incoming) -> ReadStep {
        if self.finished {
            return ReadStep::More;
        }
        match (item, self.head.is_some()) {
            (Incoming::Closed(_), _) => {
                self.finished = true;
                ReadStep::Gone
            }
            (Incoming::Pull(_), _) => ReadStep::More,
            (Incoming::Message(PayloadType::Json, bytes), false) => {
                match RequestHead::decode(&bytes) {
                    Ok(head) => {
                        self.head = Some(head);
                        ReadStep::More
                    }
                    Err(e) => self.abort(format!("bad request head: {e}")),
                }
            }
            (Incoming::Message(..) | Incoming::End, false) => {
                self.abort("the request has no head".into())
            }
            (Incoming::Message(_, bytes), true) => {
                self.body.extend_from_slice(&bytes);
                if self.body.len() > self.max_body {
                    self.finished = true;
                    let text = format!("request body above {} bytes", self.max_body);
                    return ReadStep::Answer(whole_response(
                        413,
                        Table::new(),
                        "text/plain",
                        text.into_bytes(),
                    ));
                }
                ReadStep::More
            }
            (Incoming::End, true) => {
                self.finished = true;
                ReadStep::Request {
                    head: self.head.take().unwrap_or_else(|| RequestHead {
                        method: String::new(),
                        path: String::new(),
                        query: String::new(),
                        headers: Table::new(),
                    }),
                    body: std::mem::take(&mut self.body),
                }
            }
        }
    }

    fn abort(&mut self, reason: String) -> ReadStep {
        self.finished = true;
        ReadStep::Abort(reason)
    }
}

/// The route for a request, or the 404 to answer.
pub fn route(router: &Router, head: &RequestHead) -> Result<Matched, Vec<Outgoing>> {
    router.find(&head.method, &head.path).ok_or_else(|| {
        let text = format!("no route for {} {}", head.method, head.path);
        whole_response(
            404,
            Table::new(),
            "text/plain; charset=utf-8",
            text.into_bytes(),
        )
    })
}

/// The answer to a handler that threw before it answered.
pub fn failed_response(error: &str) -> Vec<Outgoing> {
    whole_response(
        500,
        Table::new(),
        "text/plain; charset=utf-8",
        error.as_bytes().to_vec(),
    )
}

/// A response head; `content_type` unless the headers name one.
pub fn response_head(
    status: u16,
    mut headers: Table<String, String>,
    content_type: &str,
    records: bool,
) -> Outgoing {
    headers.get_or_insert_with("content-type".into(), || content_type.to_string());
    let head = ResponseHead {
        status,
        headers,
        records,
    };
    Outgoing::Message(PayloadType::Json, head.encode())
}

/// A whole response: its head, the body (if any), the end.
pub fn whole_response(
    status: u16,
    headers: Table<String, String>,
    content_type: &str,
    body: Vec<u8>,
) -> Vec<Outgoing> {
    let mut out = vec![response_head(status, headers, content_type, false)];
    if !body.is_empty() {
        out.push(Outgoing::Message(PayloadType::Binary, body));
    }
    out.push(Outgoing::End);
    out
}

/// The client's request: head, body (if any), end.
pub fn request(
    method: &str,
    url: &RestUrl,
    mut headers: Table<String, String>,
    body: Vec<u8>,
    content_type: &str,
) -> Vec<Outgoing> {
    if !body.is_empty() {
        headers.get_or_insert_with("content-type".into(), || content_type.to_string());
    }
    let head = RequestHead {
        method: method.to_ascii_uppercase(),
        path: url.path.clone(),
        query: url.query.clone(),
        headers,
    };
    let mut out = vec![Outgoing::Message(PayloadType::Json, head.encode())];
    if !body.is_empty() {
        out.push(Outgoing::Message(PayloadType::Binary, body));
    }
    out.push(Outgoing::End);
    out
}

/// What the client's reader has so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStep {
    More,
    Head(ResponseHead),
    /// A body chunk, or one record of a record set.
    Chunk(PayloadType, Vec<u8>),
    End,
    /// The response is broken or broke off.
    Failed(String),
}

/// The client reading one response.
#[derive(Debug, Default)]
pub struct ResponseReader {
    head: bool,
    finished: bool,
}

impl ResponseReader {
    pub fn feed(&mut self, item: Incoming) -> ResponseStep {
        if self.finished {
            return ResponseStep::More;
        }
        match (item, self.head) {
            (Incoming::Pull(_), _) => ResponseStep::More,
            (Incoming::Message(PayloadType::Json, bytes), false) => {
                match ResponseHead::decode(&bytes) {
                    Ok(h) => {
                        self.head = true;
                        ResponseStep::Head(h)
                    }
                    Err(e) => self.fail(format!("bad response head: {e}")),
                }
            }
            (Incoming::Message(..) | Incoming::End, false) => {
                self.fail("the response has no head".into())
            }
            (Incoming::Closed(reason), false) => self.fail(reason),
            (Incoming::Message(kind, bytes), true) => ResponseStep::Chunk(kind, bytes),
            (Incoming::End, true) => {
                self.finished = true;
                ResponseStep::End
            }
            (Incoming::Closed(reason), true) => {
                self.fail(format!("the response broke off: {reason}"))
            }
        }
    }

    fn fail(&mut self, reason: String) -> ResponseStep {
        self.finished = true;
        ResponseStep::Failed(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: PayloadType, bytes: &[u8]) -> Incoming {
        Incoming::Message(kind, bytes.to_vec())
    }

    fn feed_all(reader: &mut RequestReader, items: Vec<Outgoing>) -> ReadStep {
        for item in items {
            let step = reader.feed(match item {
                Outgoing::Message(k, b) => Incoming::Message(k, b),
                Outgoing::End => Incoming::End,
            });
            if step != ReadStep::More {
                return step;
            }
        }
        ReadStep::More
    }

    #[test]
    fn a_request_round_trips_through_the_reader() {
        let url = RestUrl::parse("rest://node/items/7?x=1").unwrap();
        let out = request("post", &url, Table::new(), b"hello".to_vec(), "text/plain");
        let mut r = RequestReader::new(100);
        match feed_all(&mut r, out) {
            ReadStep::Request { head, body } => {
                assert_eq!(head.method, "POST");
                assert_eq!(head.path, "/items/7");
                assert_eq!(head.query, "x=1");
                assert_eq!(
                    head.headers.get("content-type").map(String::as_str),
                    Some("text/plain")
                );
                assert_eq!(body, b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_above_the_limit_is_answered_413() {
        let url = RestUrl::parse("rest://node/up").unwrap();
        let out = request(
            "put",
            &url,
            Table::new(),
            vec![0; 101],
            "application/octet-stream",
        );
        let mut r = RequestReader::new(100);
        match feed_all(&mut r, out) {
            ReadStep::Answer(a) => {
                let mut c = ResponseReader::default();
                let steps: Vec<ResponseStep> = a
                    .into_iter()
                    .map(|o| match o {
                        Outgoing::Message(k, b) => c.feed(Incoming::Message(k, b)),
                        Outgoing::End => c.feed(Incoming::End),
                    })
                    .collect();
                assert!(matches!(&steps[0], ResponseStep::Head(h) if h.status == 413));
                assert_eq!(steps.last(), Some(&ResponseStep::End));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_without_a_head_are_aborted_by_name() {
        let mut r = RequestReader::new(10);
        assert_eq!(
            r.feed(msg(PayloadType::Binary, b"x")),
            ReadStep::Abort("the request has no head".into())
        );
        let mut r = RequestReader::new(10);
        assert!(
            matches!(r.feed(msg(PayloadType::Json, b"{nope")), ReadStep::Abort(m) if m.starts_with("bad request head"))
        );
    }

    #[test]
    fn unknown_routes_get_404_and_failures_500() {
        let mut router = Router::default();
        router.add(Some("GET"), "/a").unwrap();
        let head = |m: &str, p: &str| RequestHead {
            method: m.into(),
            path: p.into(),
            query: String::new(),
            headers: Table::new(),
        };
        assert!(route(&router, &head("GET", "/a")).is_ok());
        let a = route(&router, &head("POST", "/a")).unwrap_err();
        assert!(
            matches!(&a[0], Outgoing::Message(PayloadType::Json, b) if String::from_utf8_lossy(b).contains("404"))
        );
        let f = failed_response("boom");
        assert!(matches!(&f[1], Outgoing::Message(_, b) if b == b"boom"));
    }

    #[test]
    fn a_response_that_breaks_off_is_named() {
        let mut c = ResponseReader::default();
        let head = response_head(200, Table::new(), "text/plain", false);
        let Outgoing::Message(k, b) = head else {
            panic!()
        };
        assert!(matches!(
            c.feed(Incoming::Message(k, b)),
            ResponseStep::Head(_)
        ));
        assert_eq!(
            c.feed(Incoming::Closed("gone".into())),
            ResponseStep::Failed("the response broke off: gone".into())
        );
        let mut c = ResponseReader::default();
        assert_eq!(
            c.feed(Incoming::End),
            ResponseStep::Failed("the response has no head".into())
        );
    }
}
