//! The SDK's errors as JavaScript sees them: a real `Error` whose `name`
//! says what went wrong and whose `code` is a stable string. The error type
//! itself is the engine's (`core::error`).

use wasm_bindgen::JsValue;

use crate::core::engine::Reply;
pub use crate::core::error::PeerError;

impl PeerError {
    /// As a JavaScript `Error` with `name` and `code`.
    pub fn to_js(&self) -> JsValue {
        let err = js_sys::Error::new(&self.to_string());
        err.set_name(self.name());
        let _ = js_sys::Reflect::set(&err, &"code".into(), &self.code().into());
        err.into()
    }
}

impl From<PeerError> for JsValue {
    fn from(e: PeerError) -> JsValue {
        e.to_js()
    }
}

/// A reply of the wrong kind (an engine bug), as an error.
pub(crate) fn unexpected(_reply: Reply) -> PeerError {
    PeerError::Broker {
        code: crate::protocol::ErrorCode::Internal,
        message: "an operation ended with an outcome of another kind (an SDK bug)".into(),
    }
}
