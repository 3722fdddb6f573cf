//! `PageHide`: a `pagehide` listener on the page's window, owned by the
//! peer that installed it. The browser fires `pagehide` when the page is
//! unloaded, navigated away from, or put in the back/forward cache.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{Event, EventTarget};

/// Calls `on_hide` on every `pagehide`; dropping it removes the listener.
pub struct PageHide {
    target: EventTarget,
    callback: Closure<dyn FnMut(Event)>,
}

impl PageHide {
    /// Listens on the global `window`; `None` where there is none (a worker).
    pub fn listen(on_hide: impl Fn() + 'static) -> Option<Self> {
        let global = js_sys::global();
        if !js_sys::Reflect::has(&global, &"onpagehide".into()).unwrap_or(false) {
            return None;
        }
        let target: EventTarget = global.dyn_into().ok()?;
        let callback = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_hide());
        target
            .add_event_listener_with_callback("pagehide", callback.as_ref().unchecked_ref())
            .ok()?;
        Some(Self { target, callback })
    }
}

impl Drop for PageHide {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(
            "pagehide",
            self.callback.as_ref().unchecked_ref(),
        );
    }
}
