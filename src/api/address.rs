//! Finding a node: `localhost`, its own address, a hostname (on the hub or
//! the broker) or an address; and opening a socket to a port there.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use super::context::Ctx;
use super::errors::{PeerError, unexpected};
use crate::core::engine::{ChanId, Reply};
use crate::web::driver::call_js;

/// Errors a hub threw keep their name when they are ours.
pub(crate) fn hub_error(e: JsValue) -> PeerError {
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

/// `localhost`, the node's own address, a hostname, or an address: `None`
/// for this node itself.
pub(crate) async fn resolve(ctx: &Rc<Ctx>, host: &str) -> Result<Option<String>, PeerError> {
    ctx.d.call(|e, _| Ok(e.when_ready())).await?;
    let me = ctx.d.read(|e| e.id().unwrap_or_default().to_string());
    if host == "localhost" || host == me {
        return Ok(None);
    }
    if ctx.d.read(|e| e.connection_to(host).is_some()) {
        return Ok(Some(host.to_string()));
    }
    match lookup(ctx, host).await {
        Ok(address) if address == me => Ok(None),
        Ok(address) => Ok(Some(address)),
        Err(_) => Ok(Some(host.to_string())),
    }
}

pub(crate) async fn lookup(ctx: &Rc<Ctx>, hostname: &str) -> Result<String, PeerError> {
    ctx.d.call(|e, _| Ok(e.when_ready())).await?;
    match ctx.d.hub() {
        Some(hub) => {
            let v = call_js(&hub, "lookup", &[hostname.into()])
                .await
                .map_err(hub_error)?;
            v.as_string().ok_or_else(|| {
                PeerError::InvalidArgument("hub.lookup() must resolve an address".into())
            })
        }
        None => match ctx
            .d
            .call(|e, now| e.lookup_hostname(hostname, now))
            .await?
        {
            Reply::Address(a) => Ok(a),
            other => Err(unexpected(other)),
        },
    }
}

/// Opens a socket to `port` on `host`, resolving once a listener took it.
/// `timeout_ms` bounds everything: finding the host, connecting, and the
/// listener's answer.
pub(crate) async fn open_socket(
    ctx: &Rc<Ctx>,
    host: &str,
    port: u16,
    timeout_ms: u64,
) -> Result<ChanId, PeerError> {
    let pending: Cell<Option<ChanId>> = Cell::new(None);
    let attempt = async {
        let (chan, rx) = match resolve(ctx, host).await? {
            None => {
                let (chan, _, rx) = ctx
                    .d
                    .begin_with(|e, now| e.connect_loopback(port, now), None)?;
                (chan, rx)
            }
            Some(address) => {
                let conn = match ctx.d.call(|e, now| e.connect(&address, now)).await? {
                    Reply::Connection(c) => c,
                    other => return Err(unexpected(other)),
                };
                let (chan, _, rx) = ctx
                    .d
                    .begin_with(|e, now| e.connect_port(conn, port, now), None)?;
                (chan, rx)
            }
        };
        pending.set(Some(chan));
        rx.await
            .unwrap_or_else(|_| Err(PeerError::Closed("the peer".into())))?;
        Ok(chan)
    };
    let timeout = gloo_timers::future::TimeoutFuture::new(
        timeout_ms.min(super::options::MAX_DELAY_MS) as u32,
    );
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
            // Which step the time ran out in: the socket was asked for
            // only once the host was found and connected.
            let chan = pending.take();
            let waiting = match chan {
                // The channel's own transport never opened: the browser
                // did not open the data channel, the listener never saw it.
                Some(c) if !ctx.d.read(|e| e.chan_transport_open(c)) => {
                    "the connection was open, but the data channel for the socket did not open"
                }
                Some(_) => "the remote's listener did not answer",
                None => "the host was not found or the connection to it did not open",
            };
            let err = PeerError::ConnectTimeout {
                id: host.to_string(),
                ms: timeout_ms,
                waiting: waiting.into(),
            };
            if let Some(chan) = chan {
                let e2 = err.clone();
                ctx.d.run(|e, now| e.fail_stream(chan, e2, now));
            }
            Err(err)
        }
    }
}
