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

/// A Uint8Array over the bytes of an ArrayBuffer, SharedArrayBuffer or
/// view (no copy), if `value` is one.
fn view_of(value: &JsValue) -> Result<Option<Uint8Array>, PeerError> {
    let view = byte_view(value);
    if view.is_null() {
        return Ok(None);
    }
    view.dyn_into::<Uint8Array>().map(Some).map_err(|e| {
        PeerError::InvalidArgument(format!(
            "the bytes cannot be read (a buffer transferred elsewhere is empty here): {}",
            crate::web::js_error_text(&e)
        ))
    })
}

/// The bytes of an ArrayBuffer, SharedArrayBuffer or view, copied, if
/// `value` is one and holds at most `max` bytes; `None` for other values.
#[cfg_attr(not(feature = "full"), allow(dead_code))] // rest bodies (the full build)
pub(crate) fn binary(value: &JsValue, max: usize) -> Result<Option<Vec<u8>>, PeerError> {
    let Some(bytes) = view_of(value)? else {
        return Ok(None);
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

/// `JSON.stringify(value)` as a JS string; a value it gives nothing for
/// (`undefined`, a function, an object whose `toJSON` returns nothing) or
/// throws on (a BigInt, a cycle) is a named error.
fn json_js(value: &JsValue) -> Result<JsValue, PeerError> {
    let text: JsValue = js_sys::JSON::stringify(value)
        .map_err(|e| {
            PeerError::InvalidArgument(format!(
                "the value cannot be sent as JSON: {}",
                crate::web::js_error_text(&e)
            ))
        })?
        .into();
    if text.is_string() {
        Ok(text)
    } else {
        Err(PeerError::InvalidArgument(
            "the value has no JSON form (undefined, a function, or a toJSON that returns nothing): send a string, bytes, a Blob or a JSON value".into(),
        ))
    }
}

/// `JSON.stringify(value)`, as [`json_js`] checks it.
pub(crate) fn json_text(value: &JsValue) -> Result<String, PeerError> {
    Ok(json_js(value)?.as_string().unwrap_or_default())
}

/// What a value is sent as, found without copying it into the wasm.
enum Sendable {
    /// A string, or the JSON text of a value.
    Text(PayloadType, JsValue),
    Bytes(Uint8Array),
    Blob(web_sys::Blob),
}

/// UTF-16 units of a JS string: never more than its UTF-8 bytes.
fn units(text: &JsValue) -> usize {
    text.unchecked_ref::<js_sys::JsString>().length() as usize
}

fn sendable(value: &JsValue, max: usize) -> Result<Sendable, PeerError> {
    if value.is_string() {
        fits(units(value), max)?;
        return Ok(Sendable::Text(PayloadType::Text, value.clone()));
    }
    if let Some(bytes) = view_of(value)? {
        fits(bytes.length() as usize, max)?;
        return Ok(Sendable::Bytes(bytes));
    }
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        return Ok(Sendable::Blob(blob.clone()));
    }
    if value.is_undefined() || value.is_function() || value.is_symbol() {
        return Err(PeerError::InvalidArgument("send() takes a string, ArrayBuffer, typed array, Blob, or a JSON value (not undefined or a function)".into()));
    }
    let json = json_js(value)?;
    fits(units(&json), max)?;
    Ok(Sendable::Text(PayloadType::Json, json))
}

/// Refuses what [`to_payload`] would refuse, copying nothing: for a send
/// that converts later (`peer.send` connects first).
pub(crate) fn check_sendable(value: &JsValue, max: usize) -> Result<(), PeerError> {
    sendable(value, max).map(|_| ())
}

/// Strings as text, bytes as binary, Blobs read in order, anything else as
/// JSON. Nothing over `max` bytes is copied into the wasm.
pub(crate) fn to_payload(value: &JsValue, max: usize) -> Result<Payload, PeerError> {
    Ok(match sendable(value, max)? {
        Sendable::Text(kind, text) => {
            let text = text.as_string().unwrap_or_default();
            fits(text.len(), max)?;
            Payload::Bytes(kind, text.into_bytes())
        }
        Sendable::Bytes(bytes) => Payload::Bytes(PayloadType::Binary, bytes.to_vec()),
        Sendable::Blob(blob) => Payload::Blob(blob),
    })
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
