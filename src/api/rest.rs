//! Rest: `node.rest.createServer()` with routes, and `node.rest.fetch()`.
//!
//! Every request is one socket to the server's port, carrying the exchange
//! described in `core::rest`: a JSON head, the body as binary messages, and
//! an end frame, in each direction. A handler may answer with a whole body,
//! a streamed body (any async iterable or ReadableStream), or a record set
//! that the client pulls one record at a time.

use crate::core::engine::Table;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::web::driver::promise;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};

use super::context::{Ctx, Inbox, Item, PortListener};
use super::errors::PeerError;
use crate::core::engine::ChanId;
use crate::core::exchange::{
    self, Outgoing, ReadStep, RequestReader, ResponseReader, ResponseStep,
};
use crate::core::rest::{Credits, DEFAULT_PORT, RequestHead, RestUrl, Router, parse_query};
use crate::protocol::frames::PayloadType;

mod media;

#[wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = readableFromReader)]
    fn readable_from_reader(reader: JsValue) -> web_sys::ReadableStream;
    #[wasm_bindgen(js_name = recordsFromReader)]
    fn records_from_reader(reader: JsValue) -> JsValue;
    #[wasm_bindgen(js_name = iterate, catch)]
    fn iterate(source: &JsValue) -> Result<Function, JsValue>;
}

fn to_object(map: &Table<String, String>) -> Object {
    let o = Object::new();
    for (k, v) in map.iter() {
        let _ = Reflect::set(&o, &k.as_str().into(), &v.as_str().into());
    }
    o
}

fn from_object(value: &JsValue) -> Table<String, String> {
    let mut out = Table::new();
    if value.is_object() {
        for k in Object::keys(value.unchecked_ref::<Object>()).iter() {
            if let (Some(key), Some(v)) = (
                k.as_string(),
                Reflect::get(value, &k).ok().and_then(|v| v.as_string()),
            ) {
                out.insert(key.to_ascii_lowercase(), v);
            }
        }
    }
    out
}

/// A body value as bytes, and the content type it implies.
fn body_bytes(value: &JsValue) -> Result<(Vec<u8>, &'static str), PeerError> {
    if value.is_undefined() || value.is_null() {
        return Ok((Vec::new(), "text/plain"));
    }
    if let Some(s) = value.as_string() {
        return Ok((s.into_bytes(), "text/plain; charset=utf-8"));
    }
    if let Some(bytes) = super::payload::binary(value, usize::MAX)? {
        return Ok((bytes, "application/octet-stream"));
    }
    let json = super::payload::json_text(value)?;
    Ok((json.into_bytes(), "application/json"))
}

async fn next_step(next: &Function) -> Result<Option<JsValue>, JsValue> {
    let p: Promise = next.call0(&JsValue::UNDEFINED)?.unchecked_into();
    let step = JsFuture::from(p).await?;
    if Reflect::get(&step, &"done".into())?.is_truthy() {
        return Ok(None);
    }
    Ok(Some(Reflect::get(&step, &"value".into())?))
}

/// One rest exchange's socket: the context and its channel.
#[derive(Clone)]
struct Sock {
    ctx: Rc<Ctx>,
    chan: ChanId,
    remote: String,
}

impl Sock {
    fn new(ctx: &Rc<Ctx>, chan: ChanId) -> Self {
        let remote = ctx
            .d
            .read(|e| e.chan_remote(chan).unwrap_or_default().to_string());
        Self {
            ctx: ctx.clone(),
            chan,
            remote,
        }
    }

    async fn send_bytes(&self, kind: PayloadType, bytes: Vec<u8>) -> Result<(), PeerError> {
        let chan = self.chan;
        self.ctx
            .d
            .call(|e, now| e.send(chan, kind, bytes, false, now))
            .await
            .map(|_| ())
    }

    async fn end(&self) -> Result<(), PeerError> {
        let chan = self.chan;
        self.ctx.d.call(|e, now| e.end(chan, now)).await.map(|_| ())
    }

    async fn pull(&self, n: u32) -> Result<(), PeerError> {
        let chan = self.chan;
        self.ctx
            .d
            .call(|e, now| e.pull(chan, n, now))
            .await
            .map(|_| ())
    }

    fn close(&self, reason: &str) {
        let chan = self.chan;
        self.ctx.d.run(|e, now| e.close_stream(chan, reason, now));
    }

    /// Sends what an exchange decided, in order.
    async fn send_all(&self, out: Vec<Outgoing>) -> Result<(), PeerError> {
        for o in out {
            match o {
                Outgoing::Message(kind, bytes) => self.send_bytes(kind, bytes).await?,
                Outgoing::End => self.end().await?,
            }
        }
        Ok(())
    }
}

// ---- server ---------------------------------------------------------------

/// A rest server's routes and handlers.
pub(crate) struct RestServerShared {
    ctx: Weak<Ctx>,
    router: RefCell<Router>,
    handlers: RefCell<Vec<Function>>,
    /// The port and the binding's number (see `Ctx::listen`).
    port: Cell<Option<(u16, u32)>>,
}

impl RestServerShared {
    /// One request arrived on `stream`.
    pub fn serve(self: &Rc<Self>, ctx: &Rc<Ctx>, chan: ChanId) {
        let items = ctx.consume(chan);
        let stream = Sock::new(ctx, chan);
        let server = self.clone();
        spawn_local(async move { server.exchange(stream, items).await });
    }

    async fn exchange(&self, stream: Sock, mut items: Inbox) {
        let max = stream.ctx.d.read(|e| e.config().max_message_size);
        let mut reader = RequestReader::new(max);
        let (head, body) = loop {
            let item = items.next().await.unwrap_or(Item::Closed(String::new()));
            match reader.feed(item) {
                ReadStep::More => {}
                ReadStep::Request { head, body } => break (head, body),
                ReadStep::Answer(out) => {
                    let _ = stream.send_all(out).await;
                    return;
                }
                ReadStep::Abort(reason) => return stream.close(&reason),
                ReadStep::Gone => return,
            }
        };
        let res = ResponseShared::new(stream.clone(), items);
        let routed = exchange::route(&self.router.borrow(), &head);
        let m = match routed {
            Ok(m) => m,
            Err(answer) => {
                res.head_sent.set(true);
                let _ = stream.send_all(answer).await;
                return;
            }
        };
        let handler = self.handlers.borrow()[m.route].clone();
        let req = RestRequest {
            head,
            params: m.params,
            body,
            remote: stream.remote.clone(),
        };
        let res_js: JsValue = RestResponse { inner: res.clone() }.into();
        let outcome = match handler.call2(&JsValue::UNDEFINED, &req.into(), &res_js) {
            Ok(v) => match v.dyn_into::<Promise>() {
                Ok(p) => JsFuture::from(p).await.map(|_| ()),
                Err(_) => Ok(()),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Err(e) if !res.head_sent.replace(true) => {
                let text = crate::web::js_error_text(&e);
                let _ = stream.send_all(exchange::failed_response(&text)).await;
            }
            Err(e) => stream.close(&format!(
                "the handler failed mid-response: {}",
                crate::web::js_error_text(&e)
            )),
            Ok(()) => {
                // A handler that sent nothing answers with its status and an
                // empty body; one still streaming finishes on its own.
                if !res.head_sent.get() {
                    let status = res.status.get();
                    let _ = res.send_whole(status, Vec::new(), "text/plain").await;
                }
            }
        }
    }
}

pub(crate) struct ResponseShared {
    stream: Sock,
    items: RefCell<Option<Inbox>>,
    status: Cell<u16>,
    headers: Object,
    head_sent: Cell<bool>,
}

impl ResponseShared {
    fn new(stream: Sock, items: Inbox) -> Rc<Self> {
        Rc::new(Self {
            stream,
            items: RefCell::new(Some(items)),
            status: Cell::new(200),
            headers: Object::new(),
            head_sent: Cell::new(false),
        })
    }

    fn claim(&self) -> Result<(), PeerError> {
        if self.head_sent.replace(true) {
            return Err(PeerError::InvalidArgument(
                "the response was already sent".into(),
            ));
        }
        Ok(())
    }

    async fn send_head(
        &self,
        status: u16,
        content_type: &str,
        records: bool,
    ) -> Result<(), PeerError> {
        let head =
            exchange::response_head(status, from_object(&self.headers), content_type, records);
        self.stream.send_all(vec![head]).await
    }

    async fn send_whole(
        &self,
        status: u16,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), PeerError> {
        self.claim()?;
        let out = exchange::whole_response(status, from_object(&self.headers), content_type, body);
        self.stream.send_all(out).await
    }

    async fn send_streamed(&self, source: JsValue) -> Result<(), PeerError> {
        self.claim()?;
        let next = iterate(&source).map_err(|_| {
            PeerError::InvalidArgument(
                "res.stream() takes an async iterable or a ReadableStream".into(),
            )
        })?;
        self.send_head(self.status.get(), "application/octet-stream", false)
            .await?;
        loop {
            match next_step(&next).await {
                Ok(Some(chunk)) => {
                    let (bytes, _) = body_bytes(&chunk)?;
                    self.stream.send_bytes(PayloadType::Binary, bytes).await?;
                }
                Ok(None) => break,
                Err(e) => {
                    let reason =
                        format!("the body source failed: {}", crate::web::js_error_text(&e));
                    self.stream.close(&reason);
                    return Err(PeerError::InvalidArgument(reason));
                }
            }
        }
        self.stream.end().await
    }

    async fn send_records(&self, source: JsValue) -> Result<(), PeerError> {
        self.claim()?;
        let next = iterate(&source).map_err(|_| {
            PeerError::InvalidArgument("res.records() takes an async iterable".into())
        })?;
        let mut items = self
            .items
            .borrow_mut()
            .take()
            .ok_or_else(|| PeerError::Closed("the request".into()))?;
        self.send_head(self.status.get(), "application/json", true)
            .await?;
        let mut credits = Credits::default();
        loop {
            // Produce a record only against a credit the client granted.
            while !credits.take() {
                match items.next().await {
                    Some(Item::Pull(n)) => credits.grant(n),
                    Some(Item::Closed(_)) | None => return Ok(()),
                    Some(_) => {}
                }
            }
            match next_step(&next).await {
                Ok(Some(record)) => {
                    let (bytes, _) = body_bytes(&record)?;
                    self.stream.send_bytes(PayloadType::Json, bytes).await?;
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = format!(
                        "the record source failed: {}",
                        crate::web::js_error_text(&e)
                    );
                    self.stream.close(&reason);
                    return Err(PeerError::InvalidArgument(reason));
                }
            }
        }
        self.stream.end().await
    }
}

/// The request a handler receives.
#[wasm_bindgen]
pub struct RestRequest {
    head: RequestHead,
    params: Table<String, String>,
    body: Vec<u8>,
    remote: String,
}

#[wasm_bindgen]
impl RestRequest {
    /// The request method, e.g. `"GET"`.
    #[wasm_bindgen(getter)]
    pub fn method(&self) -> String {
        self.head.method.clone()
    }

    /// The path, without the query string, e.g. `"/users/7"`.
    #[wasm_bindgen(getter)]
    pub fn path(&self) -> String {
        self.head.path.clone()
    }

    /// The address of the node that sent the request.
    #[wasm_bindgen(getter)]
    pub fn from(&self) -> String {
        self.remote.clone()
    }

    /// Path parameters: `/users/:id` gives `{ id }`.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn params(&self) -> Object {
        to_object(&self.params)
    }

    /// The query string's parameters (the last value of a repeated one).
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn query(&self) -> Object {
        to_object(&parse_query(&self.head.query).into_iter().collect())
    }

    /// Request headers, lowercase names.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn headers(&self) -> Object {
        to_object(&self.head.headers)
    }

    /// The body as text.
    pub fn text(&self) -> Result<String, JsValue> {
        String::from_utf8(self.body.clone())
            .map_err(|_| PeerError::InvalidArgument("the request body is not UTF-8".into()).into())
    }

    /// The body parsed as JSON.
    #[wasm_bindgen(unchecked_return_type = "unknown")]
    pub fn json(&self) -> Result<JsValue, JsValue> {
        js_sys::JSON::parse(&self.text()?)
    }

    /// The body's bytes.
    pub fn bytes(&self) -> Uint8Array {
        Uint8Array::from(&self.body[..])
    }
}

/// The response a handler writes: `status()`, `headers`, then one of
/// `send()`, `json()`, `bytes()`, `stream()` or `records()`.
#[wasm_bindgen]
pub struct RestResponse {
    inner: Rc<ResponseShared>,
}

#[wasm_bindgen]
impl RestResponse {
    /// Sets the status (default 200); returns the response for chaining.
    pub fn status(&self, code: f64) -> Result<RestResponse, JsValue> {
        if code.fract() != 0.0 || !(100.0..=999.0).contains(&code) {
            return Err(PeerError::InvalidArgument(
                "a status must be a whole number from 100 to 999".into(),
            )
            .into());
        }
        self.inner.status.set(code as u16);
        Ok(RestResponse {
            inner: self.inner.clone(),
        })
    }

    /// Response headers: a plain object to fill in before sending.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn headers(&self) -> Object {
        self.inner.headers.clone()
    }

    /// Sends a whole body: a string (text), bytes, or any JSON value.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(&self, #[wasm_bindgen(unchecked_param_type = "unknown")] body: JsValue) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            let (bytes, kind) = body_bytes(&body)?;
            inner.send_whole(inner.status.get(), bytes, kind).await?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Sends `value` as JSON.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            let json = super::payload::json_text(&value)?;
            inner
                .send_whole(inner.status.get(), json.into_bytes(), "application/json")
                .await?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Sends bytes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn bytes(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ArrayBuffer | ArrayBufferView")] data: JsValue,
    ) -> Promise {
        self.send(data)
    }

    /// Streams the body from an async iterable or ReadableStream of chunks
    /// (strings or bytes), each sent as it comes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "AsyncIterable<unknown> | ReadableStream")]
        source: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            inner.send_streamed(source).await?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Answers with a query's records (a `Query` from `db.query(store)`,
    /// or any async iterable) as a record set: each record is read only
    /// when the client pulls it. The client reads it with
    /// `response.query()` (or `records()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn query(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Query<unknown> | AsyncIterable<unknown>")]
        query: JsValue,
    ) -> Promise {
        self.records(query)
    }

    /// Answers with a record set: each JSON record is taken from `source`
    /// only when the client asks for the next one.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn records(
        &self,
        #[wasm_bindgen(unchecked_param_type = "AsyncIterable<unknown> | Iterable<unknown>")] source: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            inner.send_records(source).await?;
            Ok(JsValue::UNDEFINED)
        }))
    }
}

/// `rest.createServer()`: routes, then `listen(port)`.
#[wasm_bindgen]
pub struct RestServer {
    inner: Rc<RestServerShared>,
}

impl RestServer {
    fn route(
        &self,
        method: Option<&str>,
        path: &str,
        handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.inner
            .router
            .borrow_mut()
            .add(method, path)
            .map_err(PeerError::InvalidArgument)?;
        self.inner.handlers.borrow_mut().push(handler);
        Ok(RestServer {
            inner: self.inner.clone(),
        })
    }
}

#[wasm_bindgen]
impl RestServer {
    /// A route for `GET path` (`:name` segments become `req.params.name`);
    /// returns the server for chaining.
    pub fn get(
        &self,
        path: &str,
        #[wasm_bindgen(unchecked_param_type = "RestHandler")] handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.route(Some("GET"), path, handler)
    }

    /// A route for `POST path` (`:name` segments become `req.params.name`);
    /// returns the server for chaining.
    pub fn post(
        &self,
        path: &str,
        #[wasm_bindgen(unchecked_param_type = "RestHandler")] handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.route(Some("POST"), path, handler)
    }

    /// A route for `PUT path` (`:name` segments become `req.params.name`);
    /// returns the server for chaining.
    pub fn put(
        &self,
        path: &str,
        #[wasm_bindgen(unchecked_param_type = "RestHandler")] handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.route(Some("PUT"), path, handler)
    }

    /// A route for `PATCH path` (`:name` segments become `req.params.name`);
    /// returns the server for chaining.
    pub fn patch(
        &self,
        path: &str,
        #[wasm_bindgen(unchecked_param_type = "RestHandler")] handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.route(Some("PATCH"), path, handler)
    }

    /// A route for `DELETE path` (`:name` segments become `req.params.name`);
    /// returns the server for chaining.
    pub fn delete(
        &self,
        path: &str,
        #[wasm_bindgen(unchecked_param_type = "RestHandler")] handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.route(Some("DELETE"), path, handler)
    }

    /// A route for every method.
    pub fn all(
        &self,
        path: &str,
        #[wasm_bindgen(unchecked_param_type = "RestHandler")] handler: Function,
    ) -> Result<RestServer, JsValue> {
        self.route(None, path, handler)
    }

    /// Serves on `port` (default 80).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn listen(&self, port: Option<f64>) -> Result<Promise, JsValue> {
        let port = port
            .map(super::options::port_arg)
            .transpose()?
            .unwrap_or(DEFAULT_PORT);
        let ctx = self
            .inner
            .ctx
            .upgrade()
            .ok_or_else(|| PeerError::Closed("the node".into()))?;
        let server = self.inner.clone();
        let binding = ctx.listen(
            port,
            PortListener::Rest(Rc::new(move |ctx: &Rc<Ctx>, chan: ChanId| {
                server.serve(ctx, chan)
            })),
        )?;
        self.inner.port.set(Some((port, binding)));
        Ok(Promise::resolve(&JsValue::UNDEFINED))
    }

    /// Stops serving (requests under way finish).
    pub fn close(&self) {
        if let (Some((port, binding)), Some(ctx)) =
            (self.inner.port.take(), self.inner.ctx.upgrade())
        {
            ctx.unlisten_binding(port, binding);
        }
    }
}

// ---- client ---------------------------------------------------------------

/// `node.rest`.
#[wasm_bindgen]
pub struct Rest {
    ctx: Rc<Ctx>,
}

impl Rest {
    pub(crate) fn new(ctx: Rc<Ctx>) -> Self {
        Self { ctx }
    }
}

#[wasm_bindgen]
impl Rest {
    /// A new server; add routes, then `listen(port)`.
    #[wasm_bindgen(js_name = createServer)]
    pub fn create_server(&self) -> RestServer {
        RestServer {
            inner: Rc::new(RestServerShared {
                ctx: Rc::downgrade(&self.ctx),
                router: RefCell::new(Router::default()),
                handlers: RefCell::new(Vec::new()),
                port: Cell::new(None),
            }),
        }
    }

    /// `fetch('rest://address[:port]/path?query', { method, headers, body, timeout })`.
    /// Rejects with a named error when the node is unreachable or nothing
    /// serves the port; an unknown route is a 404 response, not an error.
    #[wasm_bindgen(unchecked_return_type = "Promise<FetchResponse>")]
    pub fn fetch(&self, url: String, init: Option<super::FetchInitArg>) -> Promise {
        let ctx = self.ctx.clone();
        let init: JsValue = init.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        promise(Box::pin(
            async move { Ok(fetch(ctx, url, init).await?.into()) },
        ))
    }
}

async fn fetch(ctx: Rc<Ctx>, url: String, init: JsValue) -> Result<FetchResponse, PeerError> {
    let url = RestUrl::parse(&url).map_err(PeerError::InvalidArgument)?;
    let get = |k: &str| {
        if init.is_object() {
            Reflect::get(&init, &k.into()).unwrap_or(JsValue::UNDEFINED)
        } else {
            JsValue::UNDEFINED
        }
    };
    let method = get("method").as_string().unwrap_or_else(|| "GET".into());
    let headers = from_object(&get("headers"));
    let (body, content_type) = body_bytes(&get("body"))?;
    let timeout = super::options::millis_field(&init, "timeout")?
        .unwrap_or_else(|| ctx.d.read(|e| e.config().connect_timeout));
    let chan = super::address::open_socket(&ctx, &url.host, url.port, timeout).await?;
    let mut items = ctx.consume(chan);
    let stream = Sock::new(&ctx, chan);
    stream
        .send_all(exchange::request(
            &method,
            &url,
            headers,
            body,
            content_type,
        ))
        .await?;
    let mut reader = ResponseReader::default();
    let head = loop {
        let item = items.next().await.unwrap_or(Item::Closed(String::new()));
        match reader.feed(item) {
            ResponseStep::Head(h) => break h,
            ResponseStep::Failed(detail) => {
                stream.close(&detail);
                return Err(PeerError::Protocol {
                    id: stream.remote.clone(),
                    detail,
                });
            }
            _ => {}
        }
    };
    Ok(FetchResponse {
        inner: Rc::new(BodyShared {
            stream,
            items: RefCell::new(Some(items)),
            reader: RefCell::new(reader),
            records: head.records,
            used: Cell::new(false),
            done: Cell::new(false),
        }),
        status: head.status,
        headers: head.headers,
    })
}

struct BodyShared {
    stream: Sock,
    items: RefCell<Option<Inbox>>,
    reader: RefCell<ResponseReader>,
    records: bool,
    used: Cell<bool>,
    done: Cell<bool>,
}

impl BodyShared {
    fn claim(&self) -> Result<(), PeerError> {
        if self.used.replace(true) {
            return Err(PeerError::InvalidArgument(
                "the response body was already read".into(),
            ));
        }
        Ok(())
    }

    /// The next body message, `None` at the end.
    async fn next_message(&self) -> Result<Option<(PayloadType, Vec<u8>)>, PeerError> {
        if self.done.get() {
            return Ok(None);
        }
        // One read at a time: the receiver is taken out for the wait, so a
        // second concurrent read gets an error instead of a borrow panic.
        let mut items = self.items.borrow_mut().take().ok_or_else(|| {
            PeerError::InvalidArgument(
                "another read of this body is in progress; await it first".into(),
            )
        })?;
        loop {
            let item = items.next().await.unwrap_or(Item::Closed(String::new()));
            let step = self.reader.borrow_mut().feed(item);
            match step {
                ResponseStep::More | ResponseStep::Head(_) => continue,
                ResponseStep::Chunk(kind, bytes) => {
                    *self.items.borrow_mut() = Some(items);
                    return Ok(Some((kind, bytes)));
                }
                ResponseStep::End => {
                    self.done.set(true);
                    return Ok(None);
                }
                ResponseStep::Failed(reason) => {
                    self.done.set(true);
                    return Err(PeerError::ConnectionFailed {
                        id: self.stream.remote.clone(),
                        reason,
                    });
                }
            }
        }
    }

    async fn whole(&self) -> Result<Vec<u8>, PeerError> {
        self.claim()?;
        if self.records {
            return Err(PeerError::InvalidArgument(
                "this response is a record set: iterate response.records()".into(),
            ));
        }
        let mut out = Vec::new();
        while let Some((_, bytes)) = self.next_message().await? {
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}

fn step(done: bool, value: JsValue) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"done".into(), &done.into());
    let _ = Reflect::set(&o, &"value".into(), &value);
    o.into()
}

/// What `rest.fetch()` resolves: status, headers, and the body read once,
/// as text, JSON, bytes, a stream, or (for record sets) records.
#[wasm_bindgen]
pub struct FetchResponse {
    inner: Rc<BodyShared>,
    status: u16,
    headers: Table<String, String>,
}

#[wasm_bindgen]
impl FetchResponse {
    /// The status code, e.g. 200, 404.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// `true` for a 2xx status.
    #[wasm_bindgen(getter)]
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Response headers, lowercase names.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn headers(&self) -> Object {
        to_object(&self.headers)
    }

    /// The body as text (UTF-8).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn text(&self) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            let bytes = inner.whole().await?;
            Ok(String::from_utf8(bytes)
                .map_err(|_| PeerError::InvalidArgument("the body is not UTF-8".into()))?
                .into())
        }))
    }

    /// The body parsed as JSON.
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown>")]
    pub fn json(&self) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            let bytes = inner.whole().await?;
            let text = String::from_utf8(bytes)
                .map_err(|_| PeerError::InvalidArgument("the body is not UTF-8".into()))?;
            js_sys::JSON::parse(&text)
        }))
    }

    /// The body as an `ArrayBuffer`.
    #[wasm_bindgen(js_name = arrayBuffer, unchecked_return_type = "Promise<ArrayBuffer>")]
    pub fn array_buffer(&self) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            Ok(Uint8Array::from(&inner.whole().await?[..]).buffer().into())
        }))
    }

    /// The body's bytes.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array>")]
    pub fn bytes(&self) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            Ok(Uint8Array::from(&inner.whole().await?[..]).into())
        }))
    }

    /// The body as a `ReadableStream` of `Uint8Array` chunks, read as they come.
    #[wasm_bindgen(getter)]
    pub fn body(&self) -> Result<web_sys::ReadableStream, JsValue> {
        self.inner.claim()?;
        Ok(readable_from_reader(
            BodyReader {
                inner: self.inner.clone(),
            }
            .into(),
        ))
    }

    /// For a record set: a `Query` over the records, pulled from the
    /// server one per step of its iteration (`where`, `select`, `take`,
    /// `skip` stream; `orderBy` pulls them all first).
    #[wasm_bindgen(unchecked_return_type = "Query<unknown>")]
    pub fn query(&self) -> Result<super::database::Query, JsValue> {
        Ok(super::database::query_of(self.records()?))
    }

    /// For a record set: an async iterable that pulls one record per step.
    #[wasm_bindgen(unchecked_return_type = "AsyncIterable<unknown>")]
    pub fn records(&self) -> Result<JsValue, JsValue> {
        if !self.inner.records {
            return Err(PeerError::InvalidArgument(
                "this response is not a record set: read text(), json(), bytes() or body".into(),
            )
            .into());
        }
        self.inner.claim()?;
        Ok(records_from_reader(
            BodyReader {
                inner: self.inner.clone(),
            }
            .into(),
        ))
    }
}

/// Reads a response body step by step (used by `body` and `records()`).
#[wasm_bindgen]
pub struct BodyReader {
    inner: Rc<BodyShared>,
}

#[wasm_bindgen]
impl BodyReader {
    /// The next body chunk as `{ done, value }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<IteratorResult<Uint8Array, undefined>>")]
    pub fn next(&self) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            loop {
                match inner.next_message().await? {
                    Some((_, bytes)) if bytes.is_empty() => continue,
                    Some((_, bytes)) => {
                        return Ok(step(false, Uint8Array::from(&bytes[..]).into()));
                    }
                    None => return Ok(step(true, JsValue::UNDEFINED)),
                }
            }
        }))
    }

    /// Asks the server for one record and resolves `{ done, value }`.
    #[wasm_bindgen(js_name = nextRecord, unchecked_return_type = "Promise<IteratorResult<unknown, undefined>>")]
    pub fn next_record(&self) -> Promise {
        let inner = self.inner.clone();
        promise(Box::pin(async move {
            if inner.done.get() {
                return Ok(step(true, JsValue::UNDEFINED));
            }
            inner.stream.pull(1).await?;
            match inner.next_message().await? {
                Some((PayloadType::Json, bytes)) => {
                    let text = String::from_utf8(bytes)
                        .map_err(|_| PeerError::InvalidArgument("a record is not UTF-8".into()))?;
                    Ok(step(false, js_sys::JSON::parse(&text)?))
                }
                Some(_) => Err(PeerError::Protocol {
                    id: inner.stream.remote.clone(),
                    detail: "a record that is not JSON".into(),
                }
                .into()),
                None => Ok(step(true, JsValue::UNDEFINED)),
            }
        }))
    }

    /// Stops reading: closes the request's socket.
    pub fn cancel(&self) {
        self.inner.done.set(true);
        self.inner.stream.close("the reader cancelled");
    }
}
