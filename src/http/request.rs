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
pub async fn json_body(req: Request<Incoming>, limit: usize) -> Result<Value, ApiError> {
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
    serde_json::from_str(text).map_err(|e| ApiError::BadJson(format!("the request body is not valid JSON: {e}")))
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
    })
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, query_decode};

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
}
