//! User values to message bytes and back.

use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

use super::errors::PeerError;
use crate::protocol::frames::PayloadType;

/// What a user value becomes.
pub(crate) enum Payload {
    Bytes(PayloadType, Vec<u8>),
    /// Read (in order) once its turn in the queue is reserved.
    Blob(web_sys::Blob),
}

/// `options.onProgress` of a `send()` call, if it is a function.
pub(crate) fn progress_option(options: Option<super::SendOptionsArg>) -> Option<Function> {
    let options: JsValue = options.map(Into::into)?;
    Reflect::get(&options, &"onProgress".into())
        .ok()?
        .dyn_into::<Function>()
        .ok()
}

#[wasm_bindgen::prelude::wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    /// A Uint8Array over a binary value's bytes, `null`, or the error
    /// (helpers.js says which).
    #[wasm_bindgen(js_name = byteView)]
    fn byte_view(value: &JsValue) -> JsValue;
}

/// The bytes of an ArrayBuffer, SharedArrayBuffer or view, copied, if
/// `value` is one and holds at most `max` bytes; `None` for other values.
pub(crate) fn binary(value: &JsValue, max: usize) -> Result<Option<Vec<u8>>, PeerError> {
    let view = byte_view(value);
    if view.is_null() {
        return Ok(None);
    }
    let Some(bytes) = view.dyn_ref::<Uint8Array>() else {
        return Err(PeerError::InvalidArgument(format!(
            "the bytes cannot be read (a buffer transferred elsewhere is empty here): {}",
            crate::web::js_error_text(&view)
        )));
    };
    fits(bytes.length() as usize, max)?;
    Ok(Some(bytes.to_vec()))
}

/// `size` bytes against `max`, checked before anything is copied.
fn fits(size: usize, max: usize) -> Result<(), PeerError> {
    if size > max {
        return Err(PeerError::MessageTooLarge {
            size,
            max,
            hint: "; raise maxMessageSize in the options",
        });
    }
    Ok(())
}

/// `JSON.stringify(value)`; a value it gives nothing for (`undefined`, a
/// function, an object whose `toJSON` returns nothing) or throws on (a
/// BigInt, a cycle) is a named error.
pub(crate) fn json_text(value: &JsValue) -> Result<String, PeerError> {
    let text = js_sys::JSON::stringify(value).map_err(|e| {
        PeerError::InvalidArgument(format!(
            "the value cannot be sent as JSON: {}",
            crate::web::js_error_text(&e)
        ))
    })?;
    text.as_string().ok_or_else(|| {
        PeerError::InvalidArgument(
            "the value has no JSON form (undefined, a function, or a toJSON that returns nothing): send a string, bytes, a Blob or a JSON value".into(),
        )
    })
}

/// Strings as text, bytes as binary, Blobs read in order, anything else as
/// JSON. Nothing over `max` bytes is copied into the wasm.
pub(crate) fn to_payload(value: &JsValue, max: usize) -> Result<Payload, PeerError> {
    if value.is_string() {
        // UTF-16 units: never more than the UTF-8 bytes.
        fits(
            value.unchecked_ref::<js_sys::JsString>().length() as usize,
            max,
        )?;
        let text = value.as_string().unwrap_or_default();
        fits(text.len(), max)?;
        return Ok(Payload::Bytes(PayloadType::Text, text.into_bytes()));
    }
    if let Some(bytes) = binary(value, max)? {
        return Ok(Payload::Bytes(PayloadType::Binary, bytes));
    }
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        return Ok(Payload::Blob(blob.clone()));
    }
    if value.is_undefined() || value.is_function() || value.is_symbol() {
        return Err(PeerError::InvalidArgument("send() takes a string, ArrayBuffer, typed array, Blob, or a JSON value (not undefined or a function)".into()));
    }
    let json = json_text(value)?;
    fits(json.len(), max)?;
    Ok(Payload::Bytes(PayloadType::Json, json.into_bytes()))
}

/// A received message as the JS value the user gets.
pub(crate) fn decode_payload(kind: PayloadType, bytes: Vec<u8>) -> Result<JsValue, String> {
    match kind {
        PayloadType::Binary => Ok(Uint8Array::from(&bytes[..]).into()),
        PayloadType::Text => String::from_utf8(bytes)
            .map(JsValue::from)
            .map_err(|_| "text message is not UTF-8".into()),
        PayloadType::Json => {
            let text =
                String::from_utf8(bytes).map_err(|_| "JSON message is not UTF-8".to_string())?;
            js_sys::JSON::parse(&text).map_err(|_| "JSON message does not parse".into())
        }
    }
}
