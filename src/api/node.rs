//! `Node`: a peer whose signalling goes through a pluggable hub, with
//! sockets on ports and rest on top (smoke's model).
//!
//! A Node is a `PeerShared` underneath: connections, streams and their
//! guarantees are the same. What differs is where signals go:
//! - a **JS hub** (`PageHub`, `BroadcastChannelHub`, or any object with the
//!   `Hub` interface) through `HubLink`;
//! - a **`NetworkHub`**: the broker, as for `createPeer`.
//!
//! `localhost` (and the node's own address) is served in memory, without
//! WebRTC.

use super::cell::StateCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};

use super::connection::Connection;
use super::errors::PeerError;
use super::options::{
    PEER_OPTION_TYPES, PeerOptions, RawPeerOptions, parse_json, parse_options, token_source,
};
use super::peer::{PeerInput, PeerShared};
use super::rest::{Rest, RestServerShared};
use super::stream::{Role, Stream, StreamShared};
use crate::protocol::frames::ChannelLabel;
use crate::protocol::{ClientMessage, ErrorCode, IceServer, ServerMessage, ids};

/// Calls `obj.name(...args)`, awaiting a returned Promise; a throw or a
/// rejection becomes `Err` with the error's text.
pub(crate) async fn call_js(
    obj: &JsValue,
    name: &str,
    args: &[JsValue],
) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(obj, &name.into())?
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("the hub has no {name}() method")))?;
    let out = f.apply(obj, &args.iter().collect::<js_sys::Array>())?;
    match out.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await,
        Err(v) => Ok(v),
    }
}

/// A node's attachment to a JS hub.
pub(crate) struct HubLink {
    hub: JsValue,
    address: StateCell<Option<String>>,
    deliver: Closure<dyn FnMut(JsValue, JsValue)>,
}

impl HubLink {
    /// Attaches `peer` to `hub`; readiness settles when the hub hands out
    /// an address.
    pub fn attach(peer: &Rc<PeerShared>, hub: JsValue) {
        let inputs = peer.inputs();
        let deliver =
            Closure::<dyn FnMut(JsValue, JsValue)>::new(move |from: JsValue, data: JsValue| {
                if let (Some(from), Some(data)) = (from.as_string(), data.as_string()) {
                    let _ = inputs.unbounded_send(PeerInput::HubSignal(from, data));
                }
            });
        let link = Rc::new(HubLink {
            hub: hub.clone(),
            address: StateCell::new(None),
            deliver,
        });
        *peer.hub.borrow_mut() = Some(link.clone());
        let weak = Rc::downgrade(peer);
        spawn_local(async move {
            let deliver: JsValue = link.deliver.as_ref().clone();
            let result = call_js(&hub, "attach", &[deliver]).await;
            let Some(peer) = weak.upgrade() else { return };
            match result.map(|v| v.as_string()) {
                Ok(Some(address)) if ids::check_peer_id(&address).is_ok() => {
                    *link.address.borrow_mut() = Some(address.clone());
                    if let Ok(servers) = Reflect::get(&hub, &"iceServers".into()) {
                        if let Ok(Some(list)) =
                            parse_json::<Vec<IceServer>>(&servers, "hub.iceServers")
                        {
                            peer.set_ice_servers(list);
                        }
                    }
                    peer.settle_ready(Ok(()));
                    // Kept for a listener attached after `await node.address`.
                    peer.emitter.emit_or_keep("register", address.into());
                }
                Ok(other) => {
                    let detail =
                        format!("hub.attach() must resolve a valid address, got {other:?}");
                    peer.settle_ready(Err(PeerError::InvalidArgument(detail)));
                }
                Err(e) => {
                    let detail = format!("hub.attach() failed: {}", crate::web::js_error_text(&e));
                    peer.settle_ready(Err(PeerError::InvalidArgument(detail)));
                }
            }
        });
    }

    pub fn address(&self) -> Option<String> {
        self.address.borrow().clone()
    }

    /// Hands a signal to the hub; a throw or rejection fails the link to `to`.
    pub fn send(
        &self,
        to: &str,
        data: &str,
        inputs: futures_channel::mpsc::UnboundedSender<PeerInput>,
    ) {
        let from = self.address().unwrap_or_default();
        let hub = self.hub.clone();
        let to = to.to_string();
        let data = data.to_string();
        // Called synchronously so signals keep their order; only a returned
        // Promise is awaited (for its rejection).
        let out = Reflect::get(&hub, &"send".into())
            .and_then(|f| {
                f.dyn_into::<Function>()
                    .map_err(|_| JsValue::from_str("the hub has no send() method"))
            })
            .and_then(|f| f.call3(&hub, &from.into(), &to.as_str().into(), &data.into()));
        match out {
            Err(e) => {
                let _ = inputs.unbounded_send(PeerInput::HubUndeliverable(
                    to,
                    crate::web::js_error_text(&e),
                ));
            }
            Ok(v) => {
                if let Ok(p) = v.dyn_into::<Promise>() {
                    spawn_local(async move {
                        if let Err(e) = JsFuture::from(p).await {
                            let _ = inputs.unbounded_send(PeerInput::HubUndeliverable(
                                to,
                                crate::web::js_error_text(&e),
                            ));
                        }
                    });
                }
            }
        }
    }

    pub async fn register(&self, hostname: &str) -> Result<(), PeerError> {
        let address = self.address().unwrap_or_default();
        call_js(&self.hub, "register", &[address.into(), hostname.into()])
            .await
            .map(|_| ())
            .map_err(hub_error)
    }

    pub async fn lookup(&self, hostname: &str) -> Result<String, PeerError> {
        let v = call_js(&self.hub, "lookup", &[hostname.into()])
            .await
            .map_err(hub_error)?;
        v.as_string().ok_or_else(|| {
            PeerError::InvalidArgument("hub.lookup() must resolve an address".into())
        })
    }

    pub fn detach(&self) {
        if let Some(address) = self.address() {
            let hub = self.hub.clone();
            spawn_local(async move {
                let _ = call_js(&hub, "detach", &[address.into()]).await;
            });
        }
    }
}

/// Errors a hub threw keep their name when they are ours.
fn hub_error(e: JsValue) -> PeerError {
    let name = Reflect::get(&e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let text = crate::web::js_error_text(&e);
    match name.as_str() {
        "UnknownHostError" => PeerError::UnknownHost(text),
        "HostnameTakenError" => PeerError::HostnameTaken(text),
        _ => PeerError::InvalidArgument(format!("the hub failed: {text}")),
    }
}

/// What listens on a port.
#[derive(Clone)]
pub(crate) enum Listener {
    /// `sockets.createServer(callback)`.
    Sockets(Function),
    /// `rest.createServer()`.
    Rest(Rc<RestServerShared>),
}

impl Listener {
    /// A socket arrived on this listener's port.
    pub fn accept(&self, stream: Rc<StreamShared>) {
        match self {
            Listener::Sockets(callback) => {
                let callback = callback.clone();
                stream.when_open(move |s| {
                    if let Err(e) = callback.call1(&JsValue::UNDEFINED, &Stream::handle(s)) {
                        crate::web::console_error("peerwire: a socket server callback threw:", &e);
                    }
                });
            }
            Listener::Rest(server) => server.serve(stream),
        }
    }
}

thread_local! {
    static DEFAULT_HUB: StateCell<Option<JsValue>> = const { StateCell::new(None) };
}

/// The page's default hub (one `PageHub` shared by every `new Node()`).
fn default_hub() -> JsValue {
    DEFAULT_HUB.with(|h| {
        h.borrow_mut()
            .get_or_insert_with(|| super::hubs::PageHub::new().into())
            .clone()
    })
}

impl PeerShared {
    /// Registers `hostname` for this node: through the hub, or (on a
    /// NetworkHub) with the broker, which keeps it for this node's id until
    /// the id is released. `HostnameTakenError` if another node holds it.
    pub(crate) async fn register_hostname(
        self: &Rc<Self>,
        hostname: &str,
    ) -> Result<(), PeerError> {
        ids::check_hostname(hostname).map_err(|e| PeerError::InvalidArgument(e.to_string()))?;
        self.wait_ready().await?;
        let hub = self.hub.borrow().clone();
        if let Some(hub) = hub {
            return hub.register(hostname).await;
        }
        let hostname = hostname.to_string();
        self.call(|rid| ClientMessage::RegisterHostname { rid, hostname })
            .await?;
        Ok(())
    }

    /// The address holding `hostname` (`UnknownHostError` if none).
    pub(crate) async fn lookup_hostname(
        self: &Rc<Self>,
        hostname: &str,
    ) -> Result<String, PeerError> {
        self.wait_ready().await?;
        let hub = self.hub.borrow().clone();
        if let Some(hub) = hub {
            return hub.lookup(hostname).await;
        }
        let name = hostname.to_string();
        match self
            .call(|rid| ClientMessage::LookupHostname {
                rid,
                hostname: name,
            })
            .await?
        {
            ServerMessage::FoundHost { id, .. } => Ok(id),
            other => Err(PeerError::Broker {
                code: ErrorCode::Internal,
                message: format!("lookup-hostname got an unexpected reply: {other:?}"),
            }),
        }
    }

    /// `localhost`, the node's own address, a hostname, or an address.
    pub(crate) async fn resolve(self: &Rc<Self>, host: &str) -> Result<Option<String>, PeerError> {
        self.wait_ready().await?;
        if host == "localhost" || Some(host) == self.id().as_deref() {
            return Ok(None);
        }
        if self.has_connection(host) {
            return Ok(Some(host.to_string()));
        }
        match self.lookup_hostname(host).await {
            Ok(address) if Some(address.as_str()) == self.id().as_deref() => Ok(None),
            Ok(address) => Ok(Some(address)),
            Err(_) => Ok(Some(host.to_string())),
        }
    }

    /// Opens a socket to `port` on `host`, resolving once a listener took
    /// it. `timeout_ms` bounds everything: finding the host, connecting,
    /// and the listener's answer.
    pub(crate) async fn open_socket_to(
        self: &Rc<Self>,
        host: &str,
        port: u16,
        timeout_ms: u64,
    ) -> Result<Rc<StreamShared>, PeerError> {
        let pending: StateCell<Option<Rc<StreamShared>>> = StateCell::new(None);
        let attempt = async {
            let stream = self.socket_stream(host, port).await?;
            *pending.borrow_mut() = Some(stream.clone());
            stream.opened().await.map(|()| stream)
        };
        let timeout =
            gloo_timers::future::TimeoutFuture::new(timeout_ms.min(u32::MAX as u64) as u32);
        let outcome = {
            let attempt = std::pin::pin!(attempt);
            match futures_util::future::select(attempt, timeout).await {
                futures_util::future::Either::Left((r, _)) => Some(r),
                futures_util::future::Either::Right(_) => None,
            }
        };
        match outcome {
            Some(r) => r,
            None => {
                let err = PeerError::ConnectTimeout {
                    id: host.to_string(),
                    ms: timeout_ms,
                };
                let stream = pending.borrow_mut().take();
                if let Some(stream) = stream {
                    stream.close(&err.to_string(), Some(err.clone()), true);
                }
                Err(err)
            }
        }
    }

    /// The (not yet accepted) socket stream to `port` on `host`.
    async fn socket_stream(
        self: &Rc<Self>,
        host: &str,
        port: u16,
    ) -> Result<Rc<StreamShared>, PeerError> {
        match self.resolve(host).await? {
            None => {
                let listener = self.listeners.borrow().get(&port).cloned();
                let address = self.id().unwrap_or_default();
                let Some(listener) = listener else {
                    return Err(PeerError::PortClosed {
                        id: address,
                        port,
                        reason: format!("port {port} is closed"),
                    });
                };
                let settings = super::stream::StreamSettings {
                    policy: crate::web::rtc::ChannelPolicy::RELIABLE,
                    window: self.options.window,
                    max_message: self.options.max_message_size,
                };
                let (dialer, accepted) =
                    StreamShared::loopback(&address, port, Role::Listener, settings);
                listener.accept(accepted);
                Ok(dialer)
            }
            Some(address) => {
                let conn = self.connection(&address)?;
                conn.opened().await?;
                conn.open_channel(ChannelLabel::Port(port), Role::Dialer, None)
            }
        }
    }

    fn listen(&self, port: u16, listener: Listener) -> Result<(), PeerError> {
        let mut listeners = self.listeners.borrow_mut();
        if listeners.contains_key(&port) {
            return Err(PeerError::InvalidArgument(format!(
                "port {port} is already in use on this node"
            )));
        }
        listeners.insert(port, listener);
        Ok(())
    }

    pub(crate) fn listen_rest(
        &self,
        port: u16,
        server: Rc<RestServerShared>,
    ) -> Result<(), PeerError> {
        self.listen(port, Listener::Rest(server))
    }

    pub(crate) fn unlisten(&self, port: u16) {
        self.listeners.borrow_mut().remove(&port);
    }
}

/// Options of `new Node()`: the hub, and the `PeerOptions` that apply.
fn node_options(options: &JsValue) -> Result<(JsValue, PeerOptions), PeerError> {
    let hub = if options.is_undefined() || options.is_null() {
        JsValue::UNDEFINED
    } else {
        Reflect::get(options, &"hub".into()).unwrap_or(JsValue::UNDEFINED)
    };
    let rest = Object::new();
    if options.is_object() {
        let keys = Object::keys(options.unchecked_ref::<Object>());
        for k in keys.iter() {
            if k.as_string().as_deref() != Some("hub") {
                let _ = Reflect::set(
                    &rest,
                    &k,
                    &Reflect::get(options, &k).unwrap_or(JsValue::UNDEFINED),
                );
            }
        }
    }
    let mut raw =
        parse_options::<RawPeerOptions>(&rest, "options", PEER_OPTION_TYPES)?.unwrap_or_default();
    if raw.broker.is_some() {
        return Err(PeerError::InvalidArgument(
            "a Node takes its broker from a hub: new Node({ hub: new NetworkHub(url) })".into(),
        ));
    }
    let hub = if hub.is_undefined() || hub.is_null() {
        default_hub()
    } else {
        hub
    };
    let network = Reflect::get(&hub, &"networkUrl".into())
        .ok()
        .and_then(|u| u.as_string());
    raw.broker = Some(network.clone().unwrap_or_else(|| "ws://hub.invalid".into()));
    let mut options = PeerOptions::from_raw(raw)?;
    options.token = token_source(&rest)?;
    if options.token.is_some() && network.is_none() {
        return Err(PeerError::InvalidArgument(
            "options.token is for a broker: use it with a NetworkHub".into(),
        ));
    }
    Ok((
        if network.is_some() {
            JsValue::UNDEFINED
        } else {
            hub
        },
        options,
    ))
}

/// A node: an address on a hub, sockets on ports, and rest.
#[wasm_bindgen]
pub struct Node {
    pub(crate) inner: Rc<PeerShared>,
}

#[wasm_bindgen]
impl Node {
    /// `new Node()` joins the page's default `PageHub`; `new Node({ hub })`
    /// joins `hub` (a `PageHub`, `BroadcastChannelHub`, `NetworkHub`, or a
    /// custom `Hub`). Other options are those of `createPeer`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: Option<super::NodeOptionsArg>) -> Result<Node, JsValue> {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let (hub, opts) = node_options(&options)?;
        let hub = if hub.is_undefined() { None } else { Some(hub) };
        Ok(Node {
            inner: PeerShared::build(None, opts, hub),
        })
    }

    /// This node's address on its hub.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn address(&self) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            inner.ready_within().await?;
            Ok(inner.id().unwrap_or_default().into())
        })
    }

    /// Addresses of the nodes this node has a WebRTC connection (open or
    /// opening) with.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn connections(&self) -> js_sys::Array {
        self.inner.connection_ids()
    }

    /// Names for this node: `hub.register(hostname)`, `hub.lookup(hostname)`.
    #[wasm_bindgen(getter)]
    pub fn hub(&self) -> NodeHub {
        NodeHub {
            inner: self.inner.clone(),
        }
    }

    /// Sockets on ports.
    #[wasm_bindgen(getter)]
    pub fn sockets(&self) -> Sockets {
        Sockets {
            inner: self.inner.clone(),
        }
    }

    /// Rest servers and `fetch`.
    #[wasm_bindgen(getter)]
    pub fn rest(&self) -> Rest {
        Rest::new(self.inner.clone())
    }

    /// A connection to another node (for streams), like `Peer.connect`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Connection>")]
    pub fn connect(&self, address: String) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            inner.ready_within().await?;
            let address = inner.resolve(&address).await?.ok_or_else(|| {
                PeerError::InvalidArgument(
                    "a node reaches itself through sockets to localhost, not connect()".into(),
                )
            })?;
            let conn = inner.connection(&address)?;
            conn.opened().await?;
            Ok(Connection::handle(&conn))
        })
    }

    /// Closes every connection, socket and server, and leaves the hub.
    pub fn close(&self) {
        self.inner.close();
    }
}

super::events::event_methods!(Node, release: ["register"]);

/// `node.hub`: names on the node's hub.
#[wasm_bindgen]
pub struct NodeHub {
    inner: Rc<PeerShared>,
}

#[wasm_bindgen]
impl NodeHub {
    /// Maps `hostname` to this node's address.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn register(&self, hostname: String) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            inner.register_hostname(&hostname).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The address registered for `hostname` (`UnknownHostError` if none).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn lookup(&self, hostname: String) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(inner.lookup_hostname(&hostname).await?.into())
        })
    }
}

/// `node.sockets`.
#[wasm_bindgen]
pub struct Sockets {
    inner: Rc<PeerShared>,
}

#[wasm_bindgen]
impl Sockets {
    /// A server calling `onSocket(socket)` for each socket to its port.
    #[wasm_bindgen(js_name = createServer)]
    pub fn create_server(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(socket: Stream) => void")] on_socket: Function,
    ) -> SocketServer {
        SocketServer {
            inner: self.inner.clone(),
            on_socket,
            port: std::cell::Cell::new(None),
        }
    }

    /// Connects to `port` on `address` (an address, a hostname, or
    /// `localhost`). Rejects at once with `PortClosedError` when nobody
    /// listens, or `ConnectTimeoutError` after `options.timeout` ms.
    #[wasm_bindgen(unchecked_return_type = "Promise<Stream>")]
    pub fn connect(
        &self,
        address: String,
        port: u16,
        options: Option<super::SocketOptionsArg>,
    ) -> Promise {
        let inner = self.inner.clone();
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let timeout = Reflect::get(&options, &"timeout".into())
            .ok()
            .and_then(|t| t.as_f64())
            .map(|t| t.max(0.0) as u64);
        wasm_bindgen_futures::future_to_promise(async move {
            let timeout = timeout.unwrap_or(inner.options.connect_timeout);
            let stream = inner.open_socket_to(&address, port, timeout).await?;
            Ok(Stream::handle(&stream))
        })
    }
}

/// A socket server from `sockets.createServer(onSocket)`.
#[wasm_bindgen]
pub struct SocketServer {
    inner: Rc<PeerShared>,
    on_socket: Function,
    port: std::cell::Cell<Option<u16>>,
}

#[wasm_bindgen]
impl SocketServer {
    /// Starts taking sockets on `port`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn listen(&self, port: u16) -> Result<Promise, JsValue> {
        self.inner
            .listen(port, Listener::Sockets(self.on_socket.clone()))?;
        self.port.set(Some(port));
        Ok(Promise::resolve(&JsValue::UNDEFINED))
    }

    /// Stops taking new sockets (open ones stay open).
    pub fn close(&self) {
        if let Some(p) = self.port.take() {
            self.inner.unlisten(p);
        }
    }
}
