//! `Node`: a peer whose signalling goes through a pluggable hub, with
//! sockets on ports and rest on top (smoke's model). A Node is a peer
//! underneath (same engine, same connections and streams); what differs is
//! where signals go:
//! - a **JS hub** (`PageHub`, `BroadcastChannelHub`, or any object with the
//!   `Hub` interface): the engine hands signals to the driver, which calls
//!   the hub;
//! - a **`NetworkHub`**: the broker, as for `createPeer`.
//!
//! `localhost` (and the node's own address) is served in memory, without
//! WebRTC.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::address::{hub_error, lookup, open_socket, resolve};
use super::context::{Ctx, PortListener, Target};
use super::errors::PeerError;
use super::options::{engine_config, peer_options};
use super::peer::build;
use super::rest::Rest;
use crate::core::engine::Config;
use crate::web::driver::{TokenSource, call_js, promise};

thread_local! {
    static DEFAULT_HUB: std::cell::RefCell<Option<JsValue>> = const { std::cell::RefCell::new(None) };
}

/// The page's default hub (one `PageHub` shared by every `new Node()`).
fn default_hub() -> JsValue {
    DEFAULT_HUB.with(|h| {
        h.borrow_mut()
            .get_or_insert_with(|| super::hubs::PageHub::new().into())
            .clone()
    })
}

/// Options of `new Node()`: the hub (`None` on a NetworkHub), the engine
/// settings, and the token source.
fn node_options(
    options: &JsValue,
) -> Result<
    (
        Option<JsValue>,
        Config,
        Option<TokenSource>,
        crate::web::Platform,
    ),
    PeerError,
> {
    let mut o = peer_options(options, true, |_| Ok(()))?;
    // A Node's address comes from its hub, never from `id`.
    o.id = None;
    let hub = std::mem::replace(&mut o.hub, JsValue::UNDEFINED);
    let hub = if hub.is_undefined() || hub.is_null() {
        default_hub()
    } else {
        hub
    };
    let network = Reflect::get(&hub, &"networkUrl".into())
        .ok()
        .and_then(|u| u.as_string());
    let token = o.token.clone();
    if token.is_some() && network.is_none() {
        return Err(PeerError::InvalidArgument(
            "options.token is for a broker: use it with a NetworkHub".into(),
        ));
    }
    o.broker = match &network {
        Some(url) => Some(vec![super::options::broker_url(url)?]),
        None => None,
    };
    let platform = o.platform.clone();
    let config = engine_config(o, network.is_none())?;
    Ok((network.is_none().then_some(hub), config, token, platform))
}

/// A node: an address on a hub, sockets on ports, and rest.
#[wasm_bindgen]
pub struct Node {
    pub(crate) ctx: Rc<Ctx>,
}

impl Node {
    fn target(&self) -> Target {
        Target::Peer
    }
}

#[wasm_bindgen]
impl Node {
    /// `new Node()` joins the page's default `PageHub`; `new Node({ hub })`
    /// joins `hub` (a `PageHub`, `BroadcastChannelHub`, `NetworkHub`, or a
    /// custom `Hub`). Other options are those of `createPeer`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: Option<super::NodeOptionsArg>) -> Result<Node, JsValue> {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let (hub, config, token, platform) = node_options(&options)?;
        let ctx = build(config, token, hub, platform);
        // Failures reach `address()` and the other calls through
        // `when_ready`.
        ctx.d.start_detached();
        Ok(Node { ctx })
    }

    /// This node's address on its hub.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn address(&self) -> Promise {
        let ctx = self.ctx.clone();
        promise(Box::pin(async move {
            ctx.d.call(|e, _| Ok(e.when_ready())).await?;
            Ok(ctx
                .d
                .read(|e| e.id().unwrap_or_default().to_string())
                .into())
        }))
    }

    /// Addresses of the nodes this node has a WebRTC connection (open or
    /// opening) with.
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn connections(&self) -> js_sys::Array {
        self.ctx
            .d
            .read(|e| e.connection_ids())
            .into_iter()
            .map(JsValue::from)
            .collect()
    }

    /// Names for this node: `hub.register(hostname)`, `hub.lookup(hostname)`.
    #[wasm_bindgen(getter)]
    pub fn hub(&self) -> NodeHub {
        NodeHub {
            ctx: self.ctx.clone(),
        }
    }

    /// Sockets on ports.
    #[wasm_bindgen(getter)]
    pub fn sockets(&self) -> Sockets {
        Sockets {
            ctx: self.ctx.clone(),
        }
    }

    /// A snapshot of this node's counters: uptime, connections and the
    /// budget, bytes in and out, and each port's sockets.
    #[wasm_bindgen(getter, unchecked_return_type = "NodeSystem")]
    pub fn system(&self) -> Object {
        super::system::system(&self.ctx)
    }

    /// Ports (bound, `bind`, `unbind`) and connections with their paths.
    #[wasm_bindgen(getter)]
    pub fn network(&self) -> super::system::Network {
        super::system::Network::new(self.ctx.clone())
    }

    /// Rest servers and `fetch`.
    #[wasm_bindgen(getter)]
    pub fn rest(&self) -> Rest {
        Rest::new(self.ctx.clone())
    }

    /// A connection to another node (for streams), like `Peer.connect`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Connection>")]
    pub fn connect(&self, address: String) -> Promise {
        let ctx = self.ctx.clone();
        promise(Box::pin(async move {
            let address = resolve(&ctx, &address).await?.ok_or_else(|| {
                PeerError::InvalidArgument(
                    "a node reaches itself through sockets to localhost, not connect()".into(),
                )
            })?;
            JsFuture::from(ctx.ask(|e, now| e.connect(&address, now))).await
        }))
    }

    /// Closes every connection, socket and server, and leaves the hub.
    pub fn close(&self) {
        self.ctx.d.run(|e, now| e.close(now));
    }
}

super::events::event_methods!(Node);

/// `node.hub`: names on the node's hub.
#[wasm_bindgen]
pub struct NodeHub {
    ctx: Rc<Ctx>,
}

#[wasm_bindgen]
impl NodeHub {
    /// Maps `hostname` to this node's address (owned by this node; nobody
    /// else can take it while it is attached).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn register(&self, hostname: String) -> Promise {
        let ctx = self.ctx.clone();
        promise(Box::pin(async move {
            crate::protocol::ids::check_hostname(&hostname)
                .map_err(|e| PeerError::InvalidArgument(e.to_string()))?;
            ctx.d.call(|e, _| Ok(e.when_ready())).await?;
            match ctx.d.hub() {
                Some(hub) => {
                    let address = ctx.d.read(|e| e.id().unwrap_or_default().to_string());
                    call_js(&hub, "register", &[address.into(), hostname.into()])
                        .await
                        .map_err(hub_error)?;
                }
                None => {
                    ctx.d
                        .call(|e, now| e.register_hostname(&hostname, now))
                        .await?;
                }
            }
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// The address registered for `hostname` (`UnknownHostError` if none).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn lookup(&self, hostname: String) -> Promise {
        let ctx = self.ctx.clone();
        promise(Box::pin(async move {
            Ok(lookup(&ctx, &hostname).await?.into())
        }))
    }
}

/// `node.sockets`.
#[wasm_bindgen]
pub struct Sockets {
    ctx: Rc<Ctx>,
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
            ctx: self.ctx.clone(),
            on_socket,
            port: Cell::new(None),
        }
    }

    /// Connects to `port` on `address` (an address, a hostname, or
    /// `localhost`). Rejects at once with `PortClosedError` when nobody
    /// listens, or `ConnectTimeoutError` after `options.timeout` ms.
    #[wasm_bindgen(unchecked_return_type = "Promise<Stream>")]
    pub fn connect(
        &self,
        address: String,
        port: f64,
        options: Option<super::SocketOptionsArg>,
    ) -> Promise {
        let port = match super::options::port_arg(port) {
            Ok(p) => p,
            Err(e) => return Promise::reject(&e.to_js()),
        };
        let ctx = self.ctx.clone();
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let timeout = match super::options::millis_field(&options, "timeout") {
            Ok(t) => t,
            Err(e) => return Promise::reject(&e.to_js()),
        };
        promise(Box::pin(async move {
            let timeout = timeout.unwrap_or(ctx.d.read(|e| e.config().connect_timeout));
            let chan = open_socket(&ctx, &address, port, timeout).await?;
            Ok(ctx.stream_handle(chan))
        }))
    }
}

/// A socket server from `sockets.createServer(onSocket)`.
#[wasm_bindgen]
pub struct SocketServer {
    ctx: Rc<Ctx>,
    on_socket: Function,
    /// The port and the binding's number (see `Ctx::listen`).
    port: Cell<Option<(u16, u32)>>,
}

#[wasm_bindgen]
impl SocketServer {
    /// Starts taking sockets on `port`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn listen(&self, port: f64) -> Result<Promise, JsValue> {
        let port = super::options::port_arg(port)?;
        let binding = self
            .ctx
            .listen(port, PortListener::Sockets(self.on_socket.clone()))?;
        self.port.set(Some((port, binding)));
        Ok(Promise::resolve(&JsValue::UNDEFINED))
    }

    /// Stops taking new sockets (open ones stay open).
    pub fn close(&self) {
        if let Some((port, binding)) = self.port.take() {
            self.ctx.unlisten_binding(port, binding);
        }
    }
}
