//! Reading requests: a size-limited body, JSON decoding, content-type checks and the
//! query parameters SCIM defines. Unknown query parameters (Entra's
//! `aadOptscim062020`) are ignored.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::Request;
use serde_json::Value;

use super::response::ApiError;
use crate::scim::ListParams;

/// Reads and decodes a JSON body of at most `limit` bytes.
/// A request's body: the connection's, or none (a GET run again after its credentials
/// were verified anew, `router::scim_get`).
pub type Body = http_body_util::Either<Incoming, http_body_util::Empty<hyper::body::Bytes>>;

/// No body.
pub fn no_body() -> Body {
    http_body_util::Either::Right(http_body_util::Empty::new())
}

pub async fn json_body(req: Request<Body>, limit: usize) -> Result<Value, ApiError> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or_default().trim();
        if !matches!(mime, "application/scim+json" | "application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let collected = Limited::new(req.into_body(), limit).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadJson("the request body could not be read".into())
        }
    })?;
    let bytes = collected.to_bytes();
    if bytes.is_empty() {
        return Err(ApiError::BadJson("the request body is empty".into()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::BadJson("the request body is not valid UTF-8".into()))?;
    parse_json(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::BadJson(format!("the request body is ambiguous: {e}")),
        _ => ApiError::BadJson(format!("the request body is not valid JSON: {e}")),
    })
}

/// Parses JSON like `serde_json::from_str`, but refuses an object that names a key twice
/// — exactly, or differing only in ASCII case (SCIM attribute names are case-insensitive,
/// RFC 7643 §2.1, so `userName` and `username` in one object are the same attribute given
/// twice). serde_json alone keeps the last value, so which one counts would be a guess.
/// The nesting limit is serde_json's (128), as with `from_str`.
pub fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `Value`, erroring on a repeated key.
struct StrictValue;

/// Up to this many keys, an object's keys are compared one by one (see `visit_map`).
const SCAN_KEYS: usize = 32;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::new();
        // An object of a few dozen keys (nearly every one) is checked against the keys so
        // far: cheaper than a lower-cased copy and a hash per key. From `SCAN_KEYS` on, a
        // set of lower-cased keys, so that a hostile object of thousands costs linear time.
        let mut seen: Option<std::collections::HashSet<String>> = None;
        while let Some(key) = access.next_key::<String>()? {
            let repeated = if map.len() < SCAN_KEYS {
                map.keys().any(|k| k.eq_ignore_ascii_case(&key))
            } else {
                let set = seen.get_or_insert_with(|| map.keys().map(|k| k.to_ascii_lowercase()).collect());
                !set.insert(key.to_ascii_lowercase())
            };
            if repeated {
                let twice = match map.keys().find(|k| k.eq_ignore_ascii_case(&key)) {
                    Some(first) if *first != key => format!("the keys '{first}' and '{key}' name the same attribute (names are case-insensitive)"),
                    _ => format!("the key '{key}' appears twice in one object"),
                };
                return Err(A::Error::custom(twice));
            }
            let value = access.next_value_seed(StrictValue)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// Whether every `%` starts an escape of exactly two hex digits (the crate below leaves
/// a malformed escape as it is; we refuse it instead of guessing).
fn escapes_are_well_formed(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().filter(|(_, c)| **c == b'%').all(|(i, _)| {
        b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    })
}

/// Percent-decodes a path segment (RFC 3986: `+` is a plus sign there). `None` for a
/// malformed escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    if !escapes_are_well_formed(text) {
        return None;
    }
    percent_encoding::percent_decode_str(text).decode_utf8().ok().map(|c| c.into_owned())
}

/// Percent-decodes a query component, where `+` is a space (form encoding, as clients
/// write filters); `%2B` is a plus sign.
pub fn query_decode(text: &str) -> Option<String> {
    percent_decode(&text.replace('+', " "))
}

/// Parsed query parameters (names case-insensitive).
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = query_decode(k).ok_or_else(|| ApiError::BadRequest("malformed query string".into()))?;
            let v = query_decode(v).ok_or_else(|| ApiError::BadRequest("malformed query string".into()))?;
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            // Out-of-range numbers clamp rather than fail: RFC 7644 says what a
            // too-small value means, and a too-large one only asks for "all".
            Some(v) => match v.trim().parse::<i128>() {
                Ok(n) => Ok(Some(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64)),
                Err(_) => Err(ApiError::BadRequest(format!("{name} must be an integer"))),
            },
        }
    }

    pub fn list_params(&self) -> Result<ListParams, ApiError> {
        Ok(ListParams {
            filter: self.get("filter").map(str::to_string),
            start_index: self.integer("startIndex")?,
            count: self.integer("count")?,
            attributes: self.get("attributes").map(str::to_string),
            excluded_attributes: self.get("excludedAttributes").map(str::to_string),
            sort_by: self.get("sortBy").map(str::to_string),
            sort_order: self.get("sortOrder").map(str::to_string),
            cursor: self.get("cursor").map(str::to_string),
            // The handler sets the tenant's.
            dialect: Default::default(),
        })
    }
}

/// A `SearchRequest` body (RFC 7644 §3.4.3) as list parameters.
pub fn search_params(body: &Value) -> Result<ListParams, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::BadJson("a SearchRequest must be a JSON object".into()))?;
    let get = |name: &str| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let list = |name: &str| -> Option<String> {
        match get(name)? {
            Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    };
    let int = |name: &str| -> Result<Option<i64>, ApiError> {
        match get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n.as_i64().unwrap_or(if n.as_f64().is_some_and(|f| f > 0.0) { i64::MAX } else { 0 }))),
            Some(_) => Err(ApiError::BadRequest(format!("{name} must be an integer"))),
        }
    };
    Ok(ListParams {
        filter: get("filter").and_then(Value::as_str).map(str::to_string),
        start_index: int("startIndex")?,
        count: int("count")?,
        attributes: list("attributes"),
        excluded_attributes: list("excludedAttributes"),
        sort_by: get("sortBy").and_then(Value::as_str).map(str::to_string),
        sort_order: get("sortOrder").and_then(Value::as_str).map(str::to_string),
        cursor: get("cursor").and_then(Value::as_str).map(str::to_string),
        dialect: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_decode_as_rfc_3986_and_forms_say() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            // (input, as a path segment, as a query component)
            ("a+b", Some("a+b"), Some("a b")),
            ("a%2Bb", Some("a+b"), Some("a+b")),
            ("a%20b", Some("a b"), Some("a b")),
            ("%C3%A9", Some("é"), Some("é")),
            ("%+5", None, None),
            ("%5", None, None),
            ("%zz", None, None),
            ("100%", None, None),
            ("%FF", None, None),
            ("plain", Some("plain"), Some("plain")),
        ];
        for (input, path, query) in cases {
            assert_eq!(percent_decode(input).as_deref(), *path, "path {input}");
            assert_eq!(query_decode(input).as_deref(), *query, "query {input}");
        }
    }

    #[test]
    fn strict_json_refuses_repeated_keys() {
        let ok = [r#"{"a": 1, "b": [{"a": 2}, {"a": 3}]}"#, r#"[1, "x", null, true, 2.5, {}]"#, r#"{"userName": "x", "name": {"userName": "y"}}"#];
        for text in ok {
            assert_eq!(parse_json(text).unwrap(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
        let twice = [r#"{"a": 1, "a": 2}"#, r#"{"userName": "x", "UserName": "y"}"#, r#"[{"x": {"k": 1, "K": 2}}]"#];
        // Past `SCAN_KEYS`, where a set takes over: a repeat of an early key, of a late one,
        // and the first key after the switch repeating one before it.
        let keys = |n: usize, extra: &str| format!("{{{}{extra}}}", (0..n).map(|i| format!("\"k{i}\": {i}")).collect::<Vec<_>>().join(", "));
        let (early, late, at_switch) = (keys(100, r#", "K3": 0"#), keys(100, r#", "k99": 0"#), keys(SCAN_KEYS, r#", "K0": 0"#));
        let distinct = keys(100, "");
        assert_eq!(parse_json(&distinct).unwrap(), serde_json::from_str::<Value>(&distinct).unwrap());
        for text in twice.iter().copied().chain([early.as_str(), late.as_str(), at_switch.as_str()]) {
            let e = parse_json(text).unwrap_err();
            assert_eq!(e.classify(), serde_json::error::Category::Data, "{text}: {e}");
        }
        assert!(parse_json(r#"{"a": 1} x"#).is_err(), "trailing text");
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse_json(&deep).is_err(), "the nesting limit stays");
    }
}
