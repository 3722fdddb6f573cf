//! The SDK's errors as JavaScript sees them: a real `Error` whose `name`
//! says what went wrong and whose `code` is a stable string. The error type
//! itself is the engine's (`core::error`).

use wasm_bindgen::prelude::*;

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

/// Every `Error.name` the SDK gives its errors ([`PeerError::name`]), in the
/// order of docs/ERRORS.md. `tests/error_types.rs` keeps this list, the
/// TypeScript union (`PeerwireErrorCodes` in `api`) and the doc in step.
const ERROR_NAMES: [&str; 22] = [
    "InvalidIdError",
    "IdTakenError",
    "InvalidArgumentError",
    "BrokerUnreachableError",
    "UnauthorizedError",
    "BrokerError",
    "PeerUnavailableError",
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "ClosedError",
    "MessageTooLargeError",
    "ProtocolError",
    "PortClosedError",
    "UnknownHostError",
    "HostnameTakenError",
    "QueueFullError",
    "LimitExceededError",
    "TimeoutError",
    "UnknownStoreError",
    "DatabaseError",
    "CallRejectedError",
    "MediaUnavailableError",
];

// `isPeerwireError(err, name?)`: whether `err` is an `Error` with one of
// the SDK's names and a string `code` (and, given `name`, that name). Its
// TypeScript signature, a type guard, and its documentation are in the
// custom section of `api`; a `//` comment here keeps them out of the JS.
#[wasm_bindgen(js_name = isPeerwireError, skip_typescript)]
pub fn is_peerwire_error(err: &JsValue, name: &JsValue) -> bool {
    let Some(err) = err.dyn_ref::<js_sys::Error>() else {
        return false;
    };
    let actual = JsValue::from(err.name());
    (name.is_undefined() || *name == actual)
        && actual
            .as_string()
            .is_some_and(|n| ERROR_NAMES.contains(&n.as_str()))
        && js_sys::Reflect::get(err, &"code".into()).is_ok_and(|code| code.is_string())
}

/// A reply of the wrong kind (an engine bug), as an error.
#[cfg_attr(not(feature = "full"), allow(dead_code))] // rest and Node (the full build)
pub(crate) fn unexpected(_reply: Reply) -> PeerError {
    PeerError::Broker {
        code: crate::protocol::ErrorCode::Internal,
        message: "an operation ended with an outcome of another kind (an SDK bug)".into(),
    }
}
