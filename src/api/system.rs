//! `node.system` and `node.network` (smoke's views of a node): snapshots of
//! the engine's counters and connections (`core::engine::system`) as plain
//! objects, and binding ports by number.

use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::context::{Ctx, PortListener};
use crate::core::engine::{ConnState, PortStats};

fn set(o: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(o, &key.into(), &value.into());
}

fn port_object(p: &PortStats) -> Object {
    let o = Object::new();
    set(&o, "port", p.port);
    set(&o, "bound", p.bound);
    set(&o, "open", p.open as f64);
    set(&o, "accepted", p.accepted as f64);
    set(&o, "bytesIn", p.bytes_in as f64);
    set(&o, "bytesOut", p.bytes_out as f64);
    o
}

/// `node.system`: a snapshot of the node's counters.
pub(crate) fn system(ctx: &Rc<Ctx>) -> Object {
    let s = ctx.d.run(|e, now| e.system(now));
    let o = Object::new();
    set(&o, "uptime", s.uptime);
    set(&o, "connections", s.connections as f64);
    set(&o, "maxConnections", s.max_connections as f64);
    set(&o, "connectionsOpened", s.connections_opened as f64);
    set(&o, "connectionsRefused", s.connections_refused as f64);
    set(&o, "bytesIn", s.bytes_in as f64);
    set(&o, "bytesOut", s.bytes_out as f64);
    let ports: Array = s.ports.iter().map(port_object).collect();
    set(&o, "ports", ports);
    o
}

/// `node.network`: the node's ports and connections.
#[wasm_bindgen]
pub struct Network {
    ctx: Rc<Ctx>,
}

impl Network {
    pub(crate) fn new(ctx: Rc<Ctx>) -> Self {
        Self { ctx }
    }
}

#[wasm_bindgen]
impl Network {
    /// The ports something listens on (socket servers, rest servers,
    /// `bind`), in order.
    #[wasm_bindgen(getter, unchecked_return_type = "number[]")]
    pub fn ports(&self) -> Array {
        self.ctx
            .d
            .read(|e| e.bound_ports())
            .into_iter()
            .map(JsValue::from)
            .collect()
    }

    /// Takes sockets on `port`, calling `onSocket(socket)` for each (as
    /// `sockets.createServer(onSocket).listen(port)`). Throws
    /// `InvalidArgumentError` when the port is in use.
    pub fn bind(
        &self,
        port: u16,
        #[wasm_bindgen(unchecked_param_type = "(socket: Stream) => void")] on_socket: Function,
    ) -> Result<(), JsValue> {
        self.ctx.listen(port, PortListener::Sockets(on_socket))?;
        Ok(())
    }

    /// Stops taking sockets (or requests) on `port`, whoever bound it;
    /// sockets already open stay open. Unbinding a free port does nothing.
    /// A server unbound this way that closes later leaves alone whoever
    /// bound the port since.
    pub fn unbind(&self, port: u16) {
        self.ctx.unlisten(port);
    }

    /// The node's connections, open or opening: `{ address, state, path,
    /// initiated, streams, bytesIn, bytesOut }` each.
    #[wasm_bindgen(getter, unchecked_return_type = "NetworkConnection[]")]
    pub fn connections(&self) -> Array {
        let list = self.ctx.d.read(|e| e.network());
        list.iter()
            .map(|c| {
                let o = Object::new();
                set(&o, "address", c.remote.as_str());
                let state = if c.state == ConnState::Open {
                    "open"
                } else {
                    "connecting"
                };
                set(&o, "state", state);
                set(&o, "path", c.path.as_str());
                set(&o, "initiated", c.initiated);
                set(&o, "streams", c.streams as f64);
                set(&o, "bytesIn", c.bytes_in as f64);
                set(&o, "bytesOut", c.bytes_out as f64);
                JsValue::from(o)
            })
            .collect()
    }
}
