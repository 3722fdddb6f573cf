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

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// Any ArrayBufferView (typed array, DataView), read through its
    /// getters: no property name crosses from the wasm per message.
    type View;
    #[wasm_bindgen(method, getter)]
    fn buffer(this: &View) -> JsValue;
    #[wasm_bindgen(method, getter, js_name = byteOffset)]
    fn byte_offset(this: &View) -> u32;
    #[wasm_bindgen(method, getter, js_name = byteLength)]
    fn byte_length(this: &View) -> u32;
}

/// The bytes an ArrayBufferView (typed array, DataView) looks at, copied.
pub(crate) fn view_bytes(value: &JsValue) -> Option<Vec<u8>> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Some(bytes.to_vec());
    }
    if !js_sys::ArrayBuffer::is_view(value) {
        return None;
    }
    let view = value.unchecked_ref::<View>();
    Some(
        Uint8Array::new_with_byte_offset_and_length(
            &view.buffer(),
            view.byte_offset(),
            view.byte_length(),
        )
        .to_vec(),
    )
}

/// Strings as text, bytes as binary, Blobs read in order, anything else as
/// JSON.
pub(crate) fn to_payload(value: &JsValue) -> Result<Payload, PeerError> {
    if let Some(s) = value.as_string() {
        return Ok(Payload::Bytes(PayloadType::Text, s.into_bytes()));
    }
    if let Some(buf) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Payload::Bytes(
            PayloadType::Binary,
            Uint8Array::new(buf).to_vec(),
        ));
    }
    if let Some(bytes) = view_bytes(value) {
        return Ok(Payload::Bytes(PayloadType::Binary, bytes));
    }
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        return Ok(Payload::Blob(blob.clone()));
    }
    if value.is_undefined() || value.is_function() || value.is_symbol() {
        return Err(PeerError::InvalidArgument("send() takes a string, ArrayBuffer, typed array, Blob, or a JSON value (not undefined or a function)".into()));
    }
    let json = js_sys::JSON::stringify(value).map_err(|e| {
        PeerError::InvalidArgument(format!(
            "the message cannot be sent as JSON: {}",
            crate::web::js_error_text(&e)
        ))
    })?;
    let json: String = json.into();
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
