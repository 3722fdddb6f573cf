//! The SDK's own small JSON reader and writer.
//!
//! The broker reads and writes frames with serde; the SDK does not, because
//! serde_json and the derived code weighed more than a third of the wasm. The
//! SDK only ever writes flat objects of strings, integers, booleans and
//! already-encoded values, and reads objects whose fields it looks up by
//! name, so a scanner that validates the grammar and hands back the raw text
//! of each value is all it needs. User data (signals, broadcasts, room
//! state) is never rebuilt: it stays the text it arrived as ([`Json`]).
//!
//! Both directions are checked against serde_json in the tests below and in
//! `messages` (every message written here is read back by the broker's
//! decoder, and every message the broker writes is read back here).

/// One JSON value as text, passed through untouched: user data relayed by
/// the broker, and values the browser's `JSON.stringify` produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json(pub String);

impl Json {
    /// `null`.
    pub fn null() -> Self {
        Self("null".into())
    }

    /// The text, for `JSON.parse`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks that `text` is one JSON value (with nothing after it).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut s = Scan::new(text);
        let (a, b) = s.value()?;
        s.end()?;
        Ok(Self(text[a..b].to_string()))
    }
}

// The broker's side: a `Json` is any JSON value to serde. Read through a
// `serde_json::Value` (a raw value cannot be read inside internally tagged
// enums, where serde buffers fields), written as it is: a relayed value is
// parsed once, not again on the way out.
impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.0.clone()) {
            Ok(raw) => raw.serialize(ser),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(de)?;
        Ok(Self(v.to_string()))
    }
}

/// What was wrong with a text, in words for a developer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub &'static str);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Deepest nesting a value may have: a remote cannot make the scanner
/// recurse without bound.
const MAX_DEPTH: usize = 64;

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), Error> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(Error(what))
        }
    }

    fn end(&mut self) -> Result<(), Error> {
        self.ws();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(Error("text after the JSON value"))
        }
    }

    /// Skips one value, returning where its text starts and ends.
    fn value(&mut self) -> Result<(usize, usize), Error> {
        self.ws();
        let start = self.at;
        // Open containers, innermost last: b'}' or b']'.
        let mut open: Vec<u8> = Vec::new();
        loop {
            if open.len() > MAX_DEPTH {
                return Err(Error("JSON nested too deeply"));
            }
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    if self.eat(b'}') {
                    } else {
                        open.push(b'}');
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    if self.eat(b']') {
                    } else {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string_span()?;
                }
                Some(b't') => self.word("true")?,
                Some(b'f') => self.word("false")?,
                Some(b'n') => self.word("null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(Error("expected a JSON value")),
            }
            // After a value: close containers, or go on to the next item.
            loop {
                let Some(&close) = open.last() else {
                    return Ok((start, self.at));
                };
                if self.eat(b',') {
                    if close == b'}' {
                        self.key()?;
                    }
                    break;
                }
                self.expect(close, "expected `,` or the end of an object or array")?;
                open.pop();
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Result<(), Error> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(Error("expected a string key"));
        }
        self.string_span()?;
        self.expect(b':', "expected `:` after a key")
    }

    fn word(&mut self, w: &'static str) -> Result<(), Error> {
        if self.text[self.at..].starts_with(w) {
            self.at += w.len();
            Ok(())
        } else {
            Err(Error("expected true, false or null"))
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - from
    }

    fn number(&mut self) -> Result<(), Error> {
        const BAD: Error = Error("malformed number");
        self.eat(b'-');
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if self.digits() == 0 {
            return Err(BAD);
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(BAD);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(BAD);
            }
        }
        Ok(())
    }

    /// Skips a string (the opening quote is next), checking its escapes.
    fn string_span(&mut self) -> Result<(usize, usize), Error> {
        let bytes = self.text.as_bytes();
        self.at += 1;
        let start = self.at;
        loop {
            match bytes.get(self.at) {
                None => return Err(Error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok((start, self.at - 1));
                }
                Some(b'\\') => {
                    match bytes.get(self.at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u')
                            if bytes
                                .get(self.at + 2..self.at + 6)
                                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                        {
                            self.at += 4;
                        }
                        _ => return Err(Error("bad escape in a string")),
                    }
                    self.at += 2;
                }
                Some(0..=0x1f) => return Err(Error("control character in a string")),
                Some(_) => self.at += 1,
            }
        }
    }
}

/// The text of a string value (quotes included) as a Rust string.
fn unescape(raw: &str) -> Result<String, Error> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or(Error("expected a string"))?;
    if !inner.contains('\\') {
        return Ok(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().unwrap_or('\\');
        out.push(match e {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex = |chars: &mut std::str::Chars<'_>| {
                    let h: String = chars.by_ref().take(4).collect();
                    u32::from_str_radix(&h, 16).map_err(|_| Error("bad \\u escape"))
                };
                let hi = hex(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair: `\uD83D\uDE00`.
                    if chars.next() != Some('\\') || chars.next() != Some('u') {
                        return Err(Error("lone surrogate in a string"));
                    }
                    let lo = hex(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Error("lone surrogate in a string"));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or(Error("lone surrogate in a string"))?
            }
            other => other,
        });
    }
    Ok(out)
}

/// A string value's text (`"..."`, as [`Object::raw`] gives it).
pub fn string(raw: &str) -> Result<String, Error> {
    unescape(raw)
}

/// An object's fields, each as its raw text, in the order they came.
pub struct Object<'a> {
    fields: Vec<(String, &'a str)>,
}

impl<'a> Object<'a> {
    /// Reads `text`, which must be one JSON object.
    pub fn parse(text: &'a str) -> Result<Self, Error> {
        let mut s = Scan::new(text);
        s.expect(b'{', "expected a JSON object")?;
        let mut fields = Vec::new();
        if !s.eat(b'}') {
            loop {
                s.ws();
                if s.peek() != Some(b'"') {
                    return Err(Error("expected a string key"));
                }
                let (a, b) = s.string_span()?;
                let key = unescape(&text[a - 1..=b])?;
                s.expect(b':', "expected `:` after a key")?;
                let (va, vb) = s.value()?;
                // The last of repeated keys wins, as in JSON.parse.
                fields.retain(|(k, _)| *k != key);
                fields.push((key, &text[va..vb]));
                if s.eat(b',') {
                    continue;
                }
                s.expect(b'}', "expected `,` or `}` in an object")?;
                break;
            }
        }
        s.end()?;
        Ok(Self { fields })
    }

    /// Every field: its name and raw text.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &'a str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The raw text of field `key`, if present.
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// A field that may be absent or `null`.
    fn present(&self, key: &str) -> Option<&'a str> {
        self.raw(key).filter(|v| *v != "null")
    }

    /// A required string field.
    pub fn str(&self, key: &str) -> Result<String, Error> {
        self.opt_str(key)?
            .ok_or(Error("a required string field is missing"))
    }

    /// An optional string field.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, Error> {
        self.present(key).map(unescape).transpose()
    }

    /// A required unsigned integer field.
    pub fn u64(&self, key: &str) -> Result<u64, Error> {
        self.opt_u64(key)?
            .ok_or(Error("a required number field is missing"))
    }

    /// An optional unsigned integer field.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, Error> {
        self.present(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| Error("expected an unsigned integer"))
            })
            .transpose()
    }

    /// A boolean field; absent means `false`.
    pub fn bool(&self, key: &str) -> Result<bool, Error> {
        match self.present(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(Error("expected true or false")),
        }
    }

    /// A value field kept as text (absent is `null`).
    pub fn json(&self, key: &str) -> Json {
        Json(self.raw(key).unwrap_or("null").to_string())
    }

    /// An array field's items as raw text (absent is empty).
    pub fn array(&self, key: &str) -> Result<Vec<&'a str>, Error> {
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(text) => items(text),
        }
    }

    /// An array of strings (absent is empty).
    pub fn strings(&self, key: &str) -> Result<Vec<String>, Error> {
        self.array(key)?.into_iter().map(unescape).collect()
    }
}

/// The items of an array, each as raw text.
pub fn items(text: &str) -> Result<Vec<&str>, Error> {
    let mut s = Scan::new(text);
    s.expect(b'[', "expected an array")?;
    let mut out = Vec::new();
    if !s.eat(b']') {
        loop {
            let (a, b) = s.value()?;
            out.push(&text[a..b]);
            if s.eat(b',') {
                continue;
            }
            s.expect(b']', "expected `,` or `]` in an array")?;
            break;
        }
    }
    s.end()?;
    Ok(out)
}

/// Writes one flat JSON object, field by field.
pub struct Writer {
    out: String,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        Self { out: "{".into() }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        quote_into(&mut self.out, key);
        self.out.push(':');
        &mut self.out
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        quote_into(self.key(key), value);
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        push_u64(self.key(key), value);
        self
    }

    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.u64(key, v);
        }
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// A value that is already JSON text.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// Appends `s` as a JSON string.
pub fn quote_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// Appends `n` in decimal, without the formatting machinery.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

/// A JSON array of strings.
pub fn string_array(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote_into(&mut out, s);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn reads_what_serde_reads_and_rejects_what_it_rejects() {
        let good = [
            r#"{"a":1,"b":"x\"y\\z\u00e9\ud83d\ude00","c":[1,{"d":null}],"e":true,"f":-0.5e+3}"#,
            r#" { "k" : [ ] , "l" : { } } "#,
            r#"{}"#,
            r#"{"a":{"a":{"a":[[[[1]]]]}}}"#,
        ];
        for text in good {
            let obj = Object::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let theirs: Value = serde_json::from_str(text).unwrap();
            for (k, v) in theirs.as_object().unwrap() {
                let mine: Value = serde_json::from_str(obj.raw(k).unwrap()).unwrap();
                assert_eq!(&mine, v, "{text} field {k}");
            }
        }
        let bad = [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":[1,]}",
            "{\"a\":1} x",
            "[1]",
            "{\"a\":\"unterminated}",
            "{\"a\":-}",
            "{1:2}",
        ];
        for text in bad {
            assert!(Object::parse(text).is_err(), "accepted {text:?}");
            assert!(
                serde_json::from_str::<Value>(text)
                    .map(|v| !v.is_object())
                    .unwrap_or(true)
            );
        }
    }

    #[test]
    fn strings_round_trip_through_serde() {
        let samples = [
            "",
            "plain",
            "quote\" back\\ slash/",
            "\r\n\t\u{0}\u{1f}",
            "é😀\u{7f}",
        ];
        for s in samples {
            let mine = quote(s);
            assert_eq!(serde_json::from_str::<String>(&mine).unwrap(), s);
            let theirs = serde_json::to_string(s).unwrap();
            assert_eq!(unescape(&theirs).unwrap(), s);
            assert_eq!(unescape(&mine).unwrap(), s);
        }
        assert!(unescape(r#""\ud83d""#).is_err());
        assert!(unescape(r#""\ude00x""#).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            Object::parse(&deep).err(),
            Some(Error("JSON nested too deeply"))
        );
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(60), "]".repeat(60));
        assert!(Object::parse(&ok).is_ok());
    }

    #[test]
    fn writer_output_is_what_serde_reads() {
        let text = Writer::new()
            .str("s", "a\"b\n")
            .u64("n", u64::MAX)
            .bool("t", true)
            .raw("r", "[1,{\"x\":null}]")
            .opt_str("none", None)
            .opt_u64("some", Some(0))
            .finish();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"s": "a\"b\n", "n": u64::MAX, "t": true, "r": [1, {"x": null}], "some": 0})
        );
        assert_eq!(Writer::new().finish(), "{}");
        assert_eq!(string_array(&["a".into(), "\"".into()]), r#"["a","\""]"#);
    }

    #[test]
    fn typed_fields() {
        let o = Object::parse(
            r#"{"n":7,"s":"x","b":true,"nul":null,"neg":-1,"arr":["a","b"],"dup":1,"dup":2}"#,
        )
        .unwrap();
        assert_eq!(o.u64("n"), Ok(7));
        assert_eq!(o.opt_u64("missing"), Ok(None));
        assert_eq!(o.opt_u64("nul"), Ok(None));
        assert!(o.u64("neg").is_err());
        assert!(o.u64("s").is_err());
        assert_eq!(o.str("s").as_deref(), Ok("x"));
        assert!(o.str("n").is_err());
        assert_eq!(o.bool("b"), Ok(true));
        assert_eq!(o.bool("missing"), Ok(false));
        assert!(o.bool("n").is_err());
        assert_eq!(o.strings("arr").unwrap(), ["a", "b"]);
        assert_eq!(o.json("nul"), Json::null());
        assert_eq!(o.json("missing"), Json::null());
        assert_eq!(o.u64("dup"), Ok(2));
        assert_eq!(Json::parse(" [1, 2] ").unwrap().as_str(), "[1, 2]");
        assert!(Json::parse("[1] 2").is_err());
    }
}
