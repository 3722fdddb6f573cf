//! Listeners on page-wide event targets, owned by the peer that installed
//! them: `pagehide` on the window (the page is unloaded, navigated away
//! from, or put in the back/forward cache), and `online` (the network
//! came back or changed).

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{Event, EventTarget};

/// Calls its function on every `event` of `target`; dropping it removes
/// the listener.
pub struct Listener {
    target: EventTarget,
    event: &'static str,
    callback: Closure<dyn FnMut(Event)>,
}

impl Listener {
    /// Listens on the global `window` for `event` (`on<event>` must exist);
    /// `None` where there is none (a worker, Node.js).
    pub fn on_window(event: &'static str, f: impl Fn() + 'static) -> Option<Self> {
        let global = js_sys::global();
        let handler = format!("on{event}");
        if !js_sys::Reflect::has(&global, &handler.into()).unwrap_or(false) {
            return None;
        }
        Self::on(global.dyn_into().ok()?, event, f)
    }

    fn on(target: EventTarget, event: &'static str, f: impl Fn() + 'static) -> Option<Self> {
        let callback = Closure::<dyn FnMut(Event)>::new(move |_: Event| f());
        target
            .add_event_listener_with_callback(event, callback.as_ref().unchecked_ref())
            .ok()?;
        Some(Self {
            target,
            event,
            callback,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(
            self.event,
            self.callback.as_ref().unchecked_ref(),
        );
    }
}
