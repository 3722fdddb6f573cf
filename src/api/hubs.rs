//! The hubs shipped with the SDK. Each implements the `Hub` interface a
//! `Node` talks to, which a custom hub written in JavaScript implements too:
//!
//! ```ts
//! interface Hub {
//!   attach(deliver: (from: string, data: string) => void): string | Promise<string>; // a new address
//!   detach(address: string): void;
//!   send(from: string, to: string, data: string): void | Promise<void>;  // throw/reject: `to` unknown
//!   register(address: string, hostname: string): void | Promise<void>;
//!   lookup(hostname: string): string | Promise<string>;                  // throw/reject: unknown
//!   iceServers?: RTCIceServer[];
//! }
//! ```
//!
//! - `PageHub`: every node in this page (the default; for tests and demos).
//! - `BroadcastChannelHub`: nodes in tabs of the same origin, no server.
//! - `NetworkHub`: the broker (the Node uses the broker protocol directly).

use std::cell::Cell;

use crate::core::engine::Table;
use crate::web::cell::StateCell;
use std::rc::Rc;

use crate::protocol::json::{Object, Writer};
use futures_channel::oneshot;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use super::errors::PeerError;

fn unknown_address(to: &str) -> JsValue {
    PeerError::PeerUnavailable {
        id: to.to_string(),
        code: crate::protocol::ErrorCode::UnknownPeer,
    }
    .to_js()
}

#[derive(Default)]
struct PageState {
    next: u32,
    endpoints: Table<String, Function>,
    names: Table<String, String>,
}

/// A hub for the nodes of one page: signals are handed over in memory.
#[wasm_bindgen]
pub struct PageHub {
    state: Rc<StateCell<PageState>>,
}

impl Default for PageHub {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl PageHub {
    #[wasm_bindgen(constructor)]
    pub fn new() -> PageHub {
        PageHub {
            state: Rc::new(StateCell::new(PageState::default())),
        }
    }

    /// A new address for a node; `deliver(from, data)` receives its signals.
    pub fn attach(&self, deliver: Function) -> String {
        let mut st = self.state.borrow_mut();
        st.next += 1;
        let address = format!("page-{}", st.next);
        st.endpoints.insert(address.clone(), deliver);
        address
    }

    /// Forgets `address` and releases every hostname it held.
    pub fn detach(&self, address: &str) {
        let mut st = self.state.borrow_mut();
        st.endpoints.remove(address);
        st.names.retain(|_, a| a != address);
    }

    /// Delivers `data` to `to`; throws `PeerUnavailableError` if no node has
    /// that address.
    pub fn send(&self, from: &str, to: &str, data: &str) -> Result<(), JsValue> {
        let deliver = self
            .state
            .borrow()
            .endpoints
            .get(to)
            .cloned()
            .ok_or_else(|| unknown_address(to))?;
        deliver.call2(&JsValue::UNDEFINED, &from.into(), &data.into())?;
        Ok(())
    }

    /// Maps `hostname` to `address`, an attached node, until that node
    /// detaches. Only the node holding a hostname may register it again
    /// (`HostnameTakenError` for anyone else); an address that is not
    /// attached may not register at all, so no name outlives its node.
    pub fn register(&self, address: &str, hostname: &str) -> Result<(), JsValue> {
        let mut st = self.state.borrow_mut();
        if !st.endpoints.contains_key(address) {
            return Err(unknown_address(address));
        }
        if let Some(owner) = st.names.get(hostname) {
            if owner != address {
                return Err(PeerError::HostnameTaken(format!(
                    "hostname \"{hostname}\" belongs to \"{owner}\""
                ))
                .to_js());
            }
        }
        st.names.insert(hostname.to_string(), address.to_string());
        Ok(())
    }

    /// The address registered for `hostname`; throws `UnknownHostError`
    /// when no node on this page registered it.
    pub fn lookup(&self, hostname: &str) -> Result<String, JsValue> {
        self.state
            .borrow()
            .names
            .get(hostname)
            .cloned()
            .ok_or_else(|| {
                PeerError::UnknownHost(format!("no node registered \"{hostname}\" on this page"))
                    .to_js()
            })
    }
}

type MessageHandler = Closure<dyn FnMut(MessageEvent)>;

struct BcShared {
    channel: BroadcastChannel,
    endpoints: StateCell<Table<String, Function>>,
    names: StateCell<Table<String, String>>,
    lookups: StateCell<Table<u32, oneshot::Sender<String>>>,
    next_lookup: Cell<u32>,
    on_message: StateCell<Option<MessageHandler>>,
}

impl Drop for BcShared {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

/// How long `lookup` waits for another tab to answer, by default.
const LOOKUP_TIMEOUT_MS: u32 = 300;

impl BcShared {
    /// Posts one message: a JSON object as text.
    fn post(&self, msg: &mut Writer) {
        let _ = self.channel.post_message(&msg.finish().into());
    }

    fn on_message(&self, data: JsValue) {
        let Some(text) = data.as_string() else {
            return;
        };
        let Ok(msg) = Object::parse(&text) else {
            return;
        };
        let field = |k: &str| msg.opt_str(k).ok().flatten();
        match field("t").as_deref() {
            Some("signal") => {
                let (Some(from), Some(to), Some(data)) =
                    (field("from"), field("to"), field("data"))
                else {
                    return;
                };
                let deliver = self.endpoints.borrow().get(&to).cloned();
                if let Some(d) = deliver {
                    let _ = d.call2(&JsValue::UNDEFINED, &from.into(), &data.into());
                }
            }
            Some("name") => {
                if let (Some(host), Some(address)) = (field("hostname"), field("address")) {
                    self.names.borrow_mut().insert(host, address);
                }
            }
            Some("who") => {
                let (Some(host), Some(id)) = (field("hostname"), msg.opt_u64("id").ok().flatten())
                else {
                    return;
                };
                let answer = self
                    .names
                    .borrow()
                    .get(&host)
                    .cloned()
                    .filter(|a| self.endpoints.borrow().contains_key(a));
                if let Some(address) = answer {
                    let asker = field("asker").unwrap_or_default();
                    self.post(
                        Writer::new()
                            .str("t", "is")
                            .u64("id", id)
                            .str("asker", &asker)
                            .str("hostname", &host)
                            .str("address", &address),
                    );
                }
            }
            Some("is") => {
                let (Some(host), Some(address)) = (field("hostname"), field("address")) else {
                    return;
                };
                self.names.borrow_mut().insert(host, address.clone());
                if let Ok(Some(id)) = msg.opt_u64("id") {
                    let tx = self.lookups.borrow_mut().remove(&(id as u32));
                    if let Some(tx) = tx {
                        let _ = tx.send(address);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A hub for nodes in tabs of the same origin: signals cross between tabs
/// over a `BroadcastChannel`; no server at all.
///
/// A signal to an address no tab has is not answered: the connect fails
/// after `connectTimeout`, not at once as on the other hubs.
#[wasm_bindgen]
pub struct BroadcastChannelHub {
    inner: Rc<BcShared>,
    /// Identifies this hub instance in lookups.
    instance: String,
    /// How long `lookup` waits for another tab's answer (option `lookupTimeout`).
    lookup_timeout: u32,
}

#[wasm_bindgen]
impl BroadcastChannelHub {
    /// Joins the channel `name` (default `"peerwire"`).
    #[wasm_bindgen(constructor)]
    pub fn new(
        name: Option<String>,
        options: Option<super::BroadcastChannelHubOptionsArg>,
    ) -> Result<BroadcastChannelHub, JsValue> {
        let options: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let lookup_timeout = super::options::millis_field(&options, "lookupTimeout")?
            .map_or(LOOKUP_TIMEOUT_MS, |ms| ms as u32);
        let channel = BroadcastChannel::new(name.as_deref().unwrap_or("peerwire"))?;
        let inner = Rc::new(BcShared {
            channel,
            endpoints: StateCell::new(Table::new()),
            names: StateCell::new(Table::new()),
            lookups: StateCell::new(Table::new()),
            next_lookup: Cell::new(1),
            on_message: StateCell::new(None),
        });
        let weak = Rc::downgrade(&inner);
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(s) = weak.upgrade() {
                s.on_message(e.data());
            }
        });
        inner
            .channel
            .set_onmessage(Some(handler.as_ref().unchecked_ref()));
        *inner.on_message.borrow_mut() = Some(handler);
        let instance = format!("{:x}", crate::web::random_u64());
        Ok(BroadcastChannelHub {
            inner,
            instance,
            lookup_timeout,
        })
    }

    /// A new address for a node of this tab; `deliver(from, data)` receives
    /// its signals.
    pub fn attach(&self, deliver: Function) -> String {
        let address = format!("bc-{:x}", crate::web::random_u64());
        self.inner
            .endpoints
            .borrow_mut()
            .insert(address.clone(), deliver);
        address
    }

    /// Forgets `address`, and the hostnames this tab knew it by (other tabs
    /// keep theirs until they ask again: see the type's docs).
    pub fn detach(&self, address: &str) {
        self.inner.endpoints.borrow_mut().remove(address);
        self.inner.names.borrow_mut().retain(|_, a| a != address);
    }

    /// Delivers `data` to `to`: directly for a node of this tab, else over
    /// the channel (unanswered if no tab has `to`).
    pub fn send(&self, from: &str, to: &str, data: &str) -> Result<(), JsValue> {
        let local = self.inner.endpoints.borrow().get(to).cloned();
        match local {
            Some(d) => d
                .call2(&JsValue::UNDEFINED, &from.into(), &data.into())
                .map(|_| ()),
            None => {
                self.inner.post(
                    Writer::new()
                        .str("t", "signal")
                        .str("from", from)
                        .str("to", to)
                        .str("data", data),
                );
                Ok(())
            }
        }
    }

    /// Maps `hostname` to `address` here and tells the other tabs.
    pub fn register(&self, address: &str, hostname: &str) {
        self.inner
            .names
            .borrow_mut()
            .insert(hostname.to_string(), address.to_string());
        self.inner.post(
            Writer::new()
                .str("t", "name")
                .str("hostname", hostname)
                .str("address", address),
        );
    }

    /// The address for `hostname`, asking the other tabs if this one does
    /// not know it (`UnknownHostError` after `lookupTimeout` ms without an
    /// answer: a tab that does not know a name stays silent, so only a
    /// deadline can say "nobody").
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn lookup(&self, hostname: String) -> Promise {
        let inner = self.inner.clone();
        let asker = self.instance.clone();
        let lookup_timeout = self.lookup_timeout;
        crate::web::driver::promise(Box::pin(async move {
            let a = inner.names.borrow().get(&hostname).cloned();
            if let Some(a) = a {
                return Ok(a.into());
            }
            let id = inner.next_lookup.get();
            inner.next_lookup.set(id + 1);
            let (tx, rx) = oneshot::channel();
            inner.lookups.borrow_mut().insert(id, tx);
            inner.post(
                Writer::new()
                    .str("t", "who")
                    .u64("id", id.into())
                    .str("asker", &asker)
                    .str("hostname", &hostname),
            );
            let wait = gloo_timers::future::TimeoutFuture::new(lookup_timeout);
            match futures_util::future::select(rx, wait).await {
                futures_util::future::Either::Left((Ok(address), _)) => Ok(address.into()),
                _ => {
                    inner.lookups.borrow_mut().remove(&id);
                    Err(
                        PeerError::UnknownHost(format!("no tab answered for \"{hostname}\""))
                            .to_js(),
                    )
                }
            }
        }))
    }

    /// Leaves the channel.
    pub fn close(&self) {
        self.inner.channel.set_onmessage(None);
        self.inner.channel.close();
    }
}

/// The broker as a hub: nodes on it get broker ids as addresses, and the
/// broker keeps each hostname for the id that registered it
/// (`register-hostname` / `lookup-hostname`).
#[wasm_bindgen]
pub struct NetworkHub {
    url: String,
}

#[wasm_bindgen]
impl NetworkHub {
    /// `url`: the broker, as for `createPeer`'s `broker` option.
    #[wasm_bindgen(constructor)]
    pub fn new(url: &str) -> Result<NetworkHub, JsValue> {
        Ok(NetworkHub {
            url: super::options::broker_url(url)?,
        })
    }

    /// The broker URL a Node on this hub connects to.
    #[wasm_bindgen(getter, js_name = networkUrl)]
    pub fn network_url(&self) -> String {
        self.url.clone()
    }
}
