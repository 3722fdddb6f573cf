//! Listener lists behind every `on` / `off`.

use js_sys::Function;
use wasm_bindgen::JsValue;

use super::errors::PeerError;
use crate::web::cell::StateCell;

/// Listeners of one object, by event name. Only the names in `known` are
/// accepted, so a typo (`'mesage'`) throws instead of never firing.
pub struct Emitter {
    known: &'static [&'static str],
    listeners: StateCell<Vec<(&'static str, Function)>>,
    /// One-off events kept for the first listener of their type (see
    /// `emit_or_keep`).
    kept: StateCell<Vec<(&'static str, JsValue)>>,
    /// The SDK's own listeners (`watch`): called on every emit, but not
    /// listeners in the user's sense, so they never take kept events.
    watchers: StateCell<Vec<(&'static str, Function)>>,
}

impl Emitter {
    pub fn new(known: &'static [&'static str]) -> Self {
        Self {
            known,
            listeners: StateCell::new(Vec::new()),
            kept: StateCell::new(Vec::new()),
            watchers: StateCell::new(Vec::new()),
        }
    }

    fn name(&self, event: &str) -> Result<&'static str, PeerError> {
        self.known
            .iter()
            .find(|k| **k == event)
            .copied()
            .ok_or_else(|| {
                #[cfg(not(feature = "media"))]
                if super::context::MEDIA_EVENTS.contains(&event) {
                    return PeerError::InvalidArgument(format!(
                        "\"{event}\" is a media event, and peerwire/lite has no media: import 'peerwire' for calls and tracks"
                    ));
                }
                PeerError::InvalidArgument(format!(
                    "unknown event \"{event}\"; events are: {}",
                    self.known.join(", ")
                ))
            })
    }

    pub fn on(&self, event: &str, listener: Function) -> Result<(), PeerError> {
        let name = self.name(event)?;
        self.listeners.borrow_mut().push((name, listener));
        Ok(())
    }

    /// Removes one registration of `listener` for `event`.
    pub fn off(&self, event: &str, listener: &Function) -> Result<(), PeerError> {
        let name = self.name(event)?;
        let mut list = self.listeners.borrow_mut();
        if let Some(i) = list
            .iter()
            .position(|(n, f)| *n == name && JsValue::from(f) == JsValue::from(listener))
        {
            list.remove(i);
        }
        Ok(())
    }

    /// Adds one of the SDK's own listeners: it sees every `event` emitted
    /// from now on, whether or not the user listens, and does not count
    /// as a listener (`has`), so events kept for the user's first
    /// listener stay kept for it.
    pub fn watch(&self, event: &str, listener: Function) -> Result<(), PeerError> {
        let name = self.name(event)?;
        self.watchers.borrow_mut().push((name, listener));
        Ok(())
    }

    /// Removes one registration of an SDK listener (`watch`).
    pub fn unwatch(&self, event: &str, listener: &Function) {
        let mut list = self.watchers.borrow_mut();
        if let Some(i) = list
            .iter()
            .position(|(n, f)| *n == event && JsValue::from(f) == JsValue::from(listener))
        {
            list.remove(i);
        }
    }

    /// Calls every listener of `event` with `arg`, the SDK's own
    /// (`watch`) first. A listener that throws is reported on the console
    /// and does not stop the others. Nothing is borrowed while a listener
    /// runs.
    pub fn emit(&self, event: &'static str, arg: &JsValue) {
        self.notify_watchers(event, arg);
        self.emit_to_listeners(event, arg);
    }

    fn notify_watchers(&self, event: &'static str, arg: &JsValue) {
        call_each(&self.watchers, event, arg, "watcher");
    }

    fn emit_to_listeners(&self, event: &'static str, arg: &JsValue) {
        call_each(&self.listeners, event, arg, "listener");
    }

    /// Emits `event`, or keeps it until the first `on(event)` when nobody
    /// listens yet: for one-off events that fire before the object reaches
    /// user code (the first `register` fires before `createPeer` resolves).
    /// The SDK's own listeners (`watch`) see it at once either way.
    pub fn emit_or_keep(&self, event: &'static str, arg: JsValue) {
        self.notify_watchers(event, &arg);
        if self.has(event) {
            self.emit_to_listeners(event, &arg);
        } else {
            self.kept.borrow_mut().push((event, arg));
        }
    }

    /// Forgets the kept events of `event` that `stale` picks (a kept
    /// `track` whose track ended since).
    pub fn drop_kept(&self, event: &str, stale: impl Fn(&JsValue) -> bool) {
        self.kept
            .borrow_mut()
            .retain(|(e, arg)| *e != event || !stale(arg));
    }

    /// Delivers the kept events of `event`, in order, if it has a listener.
    pub fn release_kept(&self, event: &str) {
        if !self.has(event) {
            return;
        }
        let mine: Vec<(&'static str, JsValue)> = {
            let mut kept = self.kept.borrow_mut();
            let (mine, rest) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|(e, _)| *e == event);
            *kept = rest;
            mine
        };
        for (e, arg) in mine {
            self.emit_to_listeners(e, &arg);
        }
    }

    pub fn has(&self, event: &str) -> bool {
        self.listeners.borrow().iter().any(|(n, _)| *n == event)
    }

    /// Drops every listener (after a final `close`).
    pub fn clear(&self) {
        self.listeners.borrow_mut().clear();
        self.kept.borrow_mut().clear();
        self.watchers.borrow_mut().clear();
    }
}

/// Calls each function of `list` registered for `event` with `arg`. The
/// list is copied first, so nothing is borrowed while one runs; one that
/// throws (a `what`: "listener" or "watcher") is reported on the console
/// and does not stop the others.
fn call_each(
    list: &StateCell<Vec<(&'static str, Function)>>,
    event: &'static str,
    arg: &JsValue,
    what: &str,
) {
    let targets: Vec<Function> = list
        .borrow()
        .iter()
        .filter(|(n, _)| *n == event)
        .map(|(_, f)| f.clone())
        .collect();
    for f in targets {
        if let Err(err) = f.call1(&JsValue::UNDEFINED, arg) {
            crate::web::console_error(&format!("peerwire: a '{event}' {what} threw:"), &err);
        }
    }
}

/// `on` (or `off`) of every class: one body for the twelve exports.
#[inline(never)]
pub(crate) fn on_off(
    ctx: &std::rc::Rc<super::context::Ctx>,
    target: super::context::Target,
    event: &str,
    listener: Function,
    on: bool,
) -> Result<(), JsValue> {
    let done = if on {
        ctx.on(target, event, listener)
    } else {
        ctx.off(target, event, &listener)
    };
    done.map_err(|e| e.to_js())
}

/// Adds `on(event, listener)` and `off(event, listener)` to an exported
/// class with a `ctx` and a `target()`. Their TypeScript signatures (typed
/// per event) are in the custom section of `api`.
macro_rules! event_methods {
    ($class:ident) => {
        #[wasm_bindgen::prelude::wasm_bindgen]
        impl $class {
            #[wasm_bindgen(skip_typescript)]
            pub fn on(
                &self,
                event: &str,
                listener: js_sys::Function,
            ) -> Result<(), wasm_bindgen::JsValue> {
                $crate::api::events::on_off(&self.ctx, self.target(), event, listener, true)
            }

            #[wasm_bindgen(skip_typescript)]
            pub fn off(
                &self,
                event: &str,
                listener: js_sys::Function,
            ) -> Result<(), wasm_bindgen::JsValue> {
                $crate::api::events::on_off(&self.ctx, self.target(), event, listener, false)
            }
        }
    };
}
pub(crate) use event_methods;
