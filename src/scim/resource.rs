//! Resources as canonical JSON documents: decoding request bodies into them (rendering
//! them back is `render.rs`).
//!
//! A canonical document (`Attrs`) holds core attributes under their catalogue spelling
//! and extension attributes in an object under the extension URN. It has no `id`,
//! `meta` or `schemas`: those belong to the stored resource and are added on render.

use log::debug;
use serde_json::{Map, Value};

use super::schema::{self, AttrDef, AttrType, Catalogue, Mutability, ResolvedPath, ResourceKind};
use super::ScimError;

pub use super::render::{render, Projection, Rendered};
pub use crate::model::{Attrs, StoredResource};

/// The longest string value scimd stores (a 1 MB "name" is an attack, not a name).
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// The most values one multi-valued attribute of a user may hold (emails, roles, …).
/// Real directories stay far below it (Entra caps app role assignments per user in the
/// hundreds); without a cap, one request can make every later write of the user cost
/// O(values) while it holds the tenant's writer. Group members are rows and not capped.
pub const MAX_MULTI_VALUES: usize = 1000;

/// `schemas` may name this resource's core schema, its extensions (the tenant's included,
/// also one declared with no attributes left) and vendor URNs that IdPs add (Entra sends
/// `http://schemas.microsoft.com/…/Group`); an unknown SCIM URN (`urn:ietf:params:scim:…`)
/// — including another resource type's — is refused.
pub fn check_schemas(cat: Catalogue, body: &Value) -> Result<(), ScimError> {
    let Some(schemas) = body.get("schemas") else { return Ok(()) };
    let list = schemas.as_array().ok_or_else(|| ScimError::invalid_syntax("'schemas' must be an array of URIs"))?;
    for urn in list {
        let urn = urn.as_str().ok_or_else(|| ScimError::invalid_syntax("'schemas' must be an array of URIs"))?;
        let known = urn.eq_ignore_ascii_case(cat.kind.core_schema()) || schema::extension_urn(cat, urn).is_some();
        if !known && schema::strip_prefix_ci(urn, "urn:ietf:params:scim:").is_some() {
            return Err(ScimError::invalid_value(format!("unknown schema {urn} for a {}", cat.kind.name())));
        }
    }
    Ok(())
}

/// Decodes a POST/PUT body into a canonical document. Unknown attributes are ignored
/// (Entra sends many), read-only ones are dropped, values are coerced to their type.
pub fn decode(cat: Catalogue, body: &Value) -> Result<Attrs, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    check_schemas(cat, body)?;
    let mut doc = Attrs::new();
    for (key, value) in obj {
        if ["schemas", "id", "meta"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
            continue;
        }
        if let Some((urn, attrs)) = schema::extension(cat, key) {
            let Some(inner) = value.as_object() else {
                if value.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_syntax(format!("{urn} must be an object")));
            };
            // The extension object is looked up once for all its attributes, not per
            // attribute (a tenant's custom extension may carry dozens). It may exist
            // already: the body named the URN twice, or `urn:…:attr` at the top level.
            let mut target = match doc.get_mut(urn) {
                Some(Value::Object(existing)) => std::mem::take(existing),
                _ => Map::with_capacity(inner.len()),
            };
            for (sub_key, sub_value) in inner {
                match schema::resolve_in_extension(urn, attrs, sub_key) {
                    Some(path) => set_in(&mut target, &path, sub_value)?,
                    None => debug!(target: "scimd::scim", "ignoring unknown attribute {urn}:{sub_key}"),
                }
            }
            if target.is_empty() {
                doc.remove(urn);
            } else {
                doc.insert(urn.to_string(), Value::Object(target));
            }
            continue;
        }
        match schema::resolve_path(cat, key) {
            Some(path) => set_path(&mut doc, &path, value)?,
            None => debug!(target: "scimd::scim", "ignoring unknown attribute {key}"),
        }
    }
    check_value_counts(cat, &doc)?;
    check_size(&doc)?;
    check_required(cat.kind, &doc)?;
    Ok(doc)
}

/// The largest a resource's stored attributes may be, as JSON (a group's members are rows
/// and not counted). The per-value caps alone let one user grow, PATCH by PATCH, to
/// hundreds of MB, and then every write of it and every page holding it cost that much.
pub const MAX_RESOURCE_BYTES: usize = 1024 * 1024;

/// Refuses a document larger than `MAX_RESOURCE_BYTES` (POST, PUT, and PATCH once all its
/// operations are applied). Costs one pass over the document; serialising it to count the
/// bytes exactly only when a bound (every string byte counted as escaped) says it may be
/// too large, which a real user (a few KiB) never is.
pub fn check_size(doc: &Attrs) -> Result<(), ScimError> {
    if json_bound_object(doc) <= MAX_RESOURCE_BYTES {
        return Ok(());
    }
    check_size_exactly(doc)
}

/// At least as many bytes as `value` takes as compact JSON: a string byte escapes to at
/// most 6 (`\u001f`), a number to at most 24 (`-1.7976931348623157e308`).
fn json_bound(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => 2 + 6 * s.len(),
        Value::Array(items) => 2 + items.iter().map(|v| json_bound(v) + 1).sum::<usize>(),
        Value::Object(obj) => json_bound_object(obj),
    }
}

fn json_bound_object(obj: &Attrs) -> usize {
    2 + obj.iter().map(|(k, v)| 2 + 6 * k.len() + 2 + json_bound(v)).sum::<usize>()
}

fn check_size_exactly(doc: &Attrs) -> Result<(), ScimError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > MAX_RESOURCE_BYTES {
                // Stop serialising as soon as the answer is known.
                return Err(std::io::Error::other("too large"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    if serde_json::to_writer(&mut count, doc).is_err() {
        return Err(ScimError::invalid_value(format!(
            "the resource would be larger than {} KiB as JSON; scimd stores at most that much per resource",
            MAX_RESOURCE_BYTES / 1024
        )));
    }
    Ok(())
}

/// Refuses a document with more than `MAX_MULTI_VALUES` values in one multi-valued
/// attribute (POST, PUT, and PATCH after applying its operations). Group `members`
/// and the computed `groups` are rows, not values of the document, and are not counted.
pub fn check_value_counts(cat: Catalogue, doc: &Attrs) -> Result<(), ScimError> {
    let core = cat.kind.core_attrs().iter().map(|a| (None, a));
    let extensions = cat.extensions().flat_map(|(urn, attrs)| attrs.iter().map(move |a| (Some(urn), a)));
    for (extension, attr) in core.chain(extensions) {
        if !attr.multi || matches!(attr.name, "members" | "groups") {
            continue;
        }
        let count = container(doc, extension).and_then(|c| c.get(attr.name)).and_then(Value::as_array).map_or(0, Vec::len);
        if count > MAX_MULTI_VALUES {
            return Err(ScimError::invalid_value(format!(
                "{} has {count} values; at most {MAX_MULTI_VALUES} are allowed",
                attr.name
            )));
        }
    }
    Ok(())
}

/// The core schema's required attributes (RFC 7643 §2.2).
pub fn check_required(kind: ResourceKind, doc: &Attrs) -> Result<(), ScimError> {
    for attr in kind.core_attrs().iter().filter(|a| a.required) {
        match doc.get(attr.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => return Err(ScimError::invalid_value(format!("{} is required", attr.name))),
        }
    }
    Ok(())
}

/// The tenant's required custom attributes, checked after the mapping rules (a rule may
/// fill one). A POST or PUT (`before` = `None`) must send
/// each; a PATCH may not remove one the user has (`before`), but a user stored before the
/// attribute was declared is not refused every PATCH (Okta's deactivation among them)
/// until its IdP sends it. A blank string is no value.
pub fn check_custom_required(cat: Catalogue, doc: &Attrs, before: Option<&Attrs>) -> Result<(), ScimError> {
    let has = |d: &Attrs, urn: &str, name: &str| match container(d, Some(urn)).and_then(|c| c.get(name)) {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
        None => false,
    };
    for ext in cat.custom() {
        for attr in ext.attrs.iter().filter(|a| a.required) {
            let needed = before.is_none_or(|old| has(old, ext.urn, attr.name));
            if needed && !has(doc, ext.urn, attr.name) {
                return Err(ScimError::invalid_value(format!("{}:{} is required", ext.urn, attr.name)));
            }
        }
    }
    Ok(())
}

/// Sets (replaces) the attribute a resolved path names, coercing the value.
/// Read-only attributes are silently ignored, as RFC 7644 §3.5.1 asks for PUT; write-only
/// ones (password) are accepted and discarded: they never enter a document, so they can
/// reach neither the database nor the activity log.
pub fn set_path(doc: &mut Attrs, path: &ResolvedPath, value: &Value) -> Result<(), ScimError> {
    if skipped(path) {
        return Ok(());
    }
    set_in(container_mut(doc, path.extension), path, value)?;
    prune_extension(doc, path.extension);
    Ok(())
}

/// Read-only and write-only attributes never enter a document from a request.
fn skipped(path: &ResolvedPath) -> bool {
    let skipped = |a: &AttrDef| a.is_read_only() || a.mutability == Mutability::WriteOnly;
    skipped(path.attr) || path.sub.is_some_and(skipped)
}

/// `set_path` in the object that holds the attribute (the document, or its extension
/// object), already in hand.
fn set_in(container: &mut Attrs, path: &ResolvedPath, value: &Value) -> Result<(), ScimError> {
    if skipped(path) {
        return Ok(());
    }
    match path.sub {
        None => match coerce(path.attr, value)? {
            Some(v) => {
                container.insert(path.attr.name.to_string(), v);
            }
            None => {
                container.remove(path.attr.name);
            }
        },
        Some(sub) => {
            let coerced = coerce(sub, value)?;
            if path.attr.multi {
                // `emails.value` without a filter: apply to every element (RFC 7644 §3.5.2.3).
                if let Some(Value::Array(items)) = container.get_mut(path.attr.name) {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        set_or_remove(item, sub.name, coerced.clone());
                    }
                } else if let Some(v) = coerced {
                    let mut item = Map::new();
                    item.insert(sub.name.to_string(), v);
                    container.insert(path.attr.name.to_string(), Value::Array(vec![Value::Object(item)]));
                }
            } else {
                let entry = container
                    .entry(path.attr.name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Some(obj) = entry.as_object_mut() {
                    set_or_remove(obj, sub.name, coerced);
                    if obj.is_empty() {
                        container.remove(path.attr.name);
                    }
                }
            }
        }
    }
    Ok(())
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            obj.insert(key.to_string(), v);
        }
        None => {
            obj.remove(key);
        }
    }
}

/// The object holding an attribute: the document itself, or its extension object.
pub fn container_mut<'a>(doc: &'a mut Attrs, extension: Option<&str>) -> &'a mut Attrs {
    match extension {
        None => doc,
        Some(urn) => {
            // The key is copied only when the object is made, not on every attribute set.
            if !doc.get(urn).is_some_and(Value::is_object) {
                doc.insert(urn.to_string(), Value::Object(Map::new()));
            }
            doc.get_mut(urn).and_then(Value::as_object_mut).expect("just made an object")
        }
    }
}

pub fn container<'a>(doc: &'a Attrs, extension: Option<&str>) -> Option<&'a Attrs> {
    match extension {
        None => Some(doc),
        Some(urn) => doc.get(urn).and_then(Value::as_object),
    }
}

/// A custom attribute removed from tenant.toml keeps its stored values until `scimd tenant
/// drop-attributes` removes them: a write that replaces the document (PUT, a POST that
/// restores the user) copies them from the stored one, since the request cannot name them.
pub fn carry_undeclared(cat: Catalogue, old: &Attrs, new: &mut Attrs) {
    for (urn, value) in old {
        if !schema::is_custom_key(urn) {
            continue;
        }
        let Some(stored) = value.as_object() else { continue };
        let declared = cat.extensions().find(|(u, _)| u == urn).map(|(_, attrs)| attrs).unwrap_or_default();
        for (name, v) in stored {
            if !declared.iter().any(|a| a.name == name) {
                container_mut(new, Some(urn)).entry(name.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// Whether a stored custom value is one the catalogue declares, of its declared type (a
/// declaration changed from string to integer leaves text behind, which is kept but not
/// returned, and `tenant drop-attributes` removes).
pub fn fits(cat: Catalogue, urn: &str, name: &str, value: &Value) -> bool {
    let declared = cat.custom().iter().find(|e| e.urn == urn).and_then(|e| e.attrs.iter().find(|a| a.name == name));
    declared.is_some_and(|attr| fits_declared(attr, value))
}

/// `fits` for the declaration already in hand (rendering walks the declarations).
pub(super) fn fits_declared(attr: &AttrDef, value: &Value) -> bool {
    let scalar = |v: &Value| match attr.ty {
        AttrType::Boolean => v.is_boolean(),
        AttrType::Integer => v.is_i64(),
        AttrType::DateTime => v.as_str().is_some_and(crate::clock::UtcMillis::is_rfc3339),
        _ => v.is_string(),
    };
    match value {
        Value::Array(items) if attr.multi => items.iter().all(scalar),
        v => !attr.multi && scalar(v),
    }
}

/// `fits_declared` for a value still in its stored text (`Rendered::with_custom_text`):
/// the same answer, read from the JSON token instead of a parsed value.
pub(super) fn fits_raw(attr: &AttrDef, raw: &serde_json::value::RawValue) -> bool {
    let scalar = |text: &str| match attr.ty {
        AttrType::Boolean => text == "true" || text == "false",
        AttrType::Integer => serde_json::from_str::<i64>(text).is_ok(),
        AttrType::DateTime => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(plain) if !plain.contains('\\') => crate::clock::UtcMillis::is_rfc3339(plain),
            Some(_) => serde_json::from_str::<String>(text).is_ok_and(|s| crate::clock::UtcMillis::is_rfc3339(&s)),
            None => false,
        },
        _ => text.starts_with('"'),
    };
    let text = raw.get();
    if text.starts_with('[') {
        attr.multi && serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text).is_ok_and(|items| items.iter().all(|i| scalar(i.get())))
    } else {
        !attr.multi && scalar(text)
    }
}

/// Drops an extension object left empty, so it does not appear in `schemas`.
pub fn prune_extension(doc: &mut Attrs, extension: Option<&str>) {
    if let Some(urn) = extension {
        if doc.get(urn).and_then(Value::as_object).is_some_and(|o| o.is_empty()) {
            doc.remove(urn);
        }
    }
}

/// Checks a JSON value against an attribute's type. `Ok(None)` means "unassigned" (null,
/// an empty array, an empty object). A value of the wrong JSON type is `invalidValue`
/// (a number or `true` is not a string, a string is not a list of emails); what real IdPs
/// send is tolerated: booleans as `"True"`/`"False"` (Entra), a single object for a
/// multi-valued attribute, and a bare id for a singular complex attribute with a `value`
/// (Entra's `manager`).
pub fn coerce(attr: &AttrDef, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single @ Value::Object(_) => vec![single],
            other => return Err(wrong_type(attr, other, "an array")),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let element = match item {
                Value::Null => continue,
                // Entra sends a custom multi-valued attribute's values as [{"value": …}].
                Value::Object(obj) if attr.ty != AttrType::Complex && obj.len() == 1 && obj.contains_key("value") => {
                    coerce_single(attr, &obj["value"])?
                }
                Value::Object(_) => coerce_single(attr, item)?,
                other if attr.ty == AttrType::Complex => return Err(wrong_type(attr, other, "an array of objects")),
                _ => coerce_single(attr, item)?,
            };
            out.extend(element);
        }
        normalise_primary(&mut out);
        return Ok(if out.is_empty() { None } else { Some(Value::Array(out)) });
    }
    coerce_single(attr, value)
}

/// The JSON type of a value, as an error names it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(attr: &AttrDef, value: &Value, wanted: &str) -> ScimError {
    ScimError::invalid_value(format!("'{}' must be {wanted}, not {}", attr.name, json_type(value)))
}

fn coerce_single(attr: &AttrDef, value: &Value) -> Result<Option<Value>, ScimError> {
    Ok(match (attr.ty, value) {
        (_, Value::Null) => None,
        (AttrType::Complex, Value::Object(obj)) => {
            let mut out = Map::new();
            for (key, v) in obj {
                let Some(sub) = attr.sub_attr(key) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(c) = coerce_single(sub, v)? {
                    out.insert(sub.name.to_string(), c);
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        // A bare id for a singular complex attribute that has a `value` (Entra's manager).
        (AttrType::Complex, scalar @ Value::String(_)) if !attr.multi => match attr.sub_attr("value") {
            Some(sub) => coerce_single(sub, scalar)?.map(|v| {
                let mut out = Map::new();
                out.insert("value".into(), v);
                Value::Object(out)
            }),
            None => return Err(wrong_type(attr, value, "an object")),
        },
        (AttrType::Complex, _) => return Err(wrong_type(attr, value, "an object")),
        (AttrType::Boolean, Value::Bool(b)) => Some(Value::Bool(*b)),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
        (AttrType::Boolean, _) => return Err(wrong_type(attr, value, "true or false")),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() => Some(value.clone()),
        // Entra sends custom attributes as strings ("3").
        (AttrType::Integer, Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse::<i64>().ok().map(Value::from),
        (AttrType::Integer, _) => return Err(wrong_type(attr, value, "an integer")),
        // Stored in one spelling (UTC, milliseconds) so filters and sorting compare them as text.
        (AttrType::DateTime, Value::String(s)) => match crate::clock::UtcMillis::parse_rfc3339(s) {
            Some(t) => Some(Value::String(t.to_rfc3339())),
            None => return Err(ScimError::invalid_value(format!("'{}' must be an RFC 3339 date-time, not {s:?}", attr.name))),
        },
        (AttrType::DateTime, _) => return Err(wrong_type(attr, value, "a date-time string")),
        (_, Value::String(s)) if s.len() > MAX_STRING_BYTES => {
            return Err(ScimError::invalid_value(format!("{} is longer than {MAX_STRING_BYTES} bytes", attr.name)))
        }
        (_, Value::String(s)) => Some(Value::String(s.clone())),
        (_, _) => return Err(wrong_type(attr, value, "a string")),
    })
}

/// RFC 7643 §2.4: `primary: true` appears at most once; keep the first.
fn normalise_primary(items: &mut [Value]) {
    let mut seen = false;
    for item in items.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("primary") == Some(&Value::Bool(true)) {
            if seen {
                item.insert("primary".into(), Value::Bool(false));
            }
            seen = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size bound never undercounts (else a document over the cap would pass), whatever
    /// the strings hold: escapes, control characters, multi-byte UTF-8, numbers.
    #[test]
    fn the_size_bound_is_never_below_the_json_size() {
        let doc = serde_json::json!({
            "userName": "a\"b\\c\u{1}\u{1f}\n\té€😀",
            "n": [i64::MIN, u64::MAX, -1.797_693_134_862_315_7e308, 2.225_073_858_507_201_4e-308, 0],
            "emails": [{"value": "\u{0}".repeat(100), "primary": true}, null, false],
            "\u{2}ke\"y": {"nested": {"deeper": ["x", "x", "x"]}},
        });
        let Value::Object(doc) = doc else { unreachable!() };
        let exact = serde_json::to_vec(&doc).unwrap().len();
        assert!(json_bound_object(&doc) >= exact, "{} < {exact}", json_bound_object(&doc));
        // At the cap: a document of escaped bytes just within it passes, one byte more fails,
        // the bound deferring to the exact count.
        let escaped = |n: usize| {
            let mut d = Attrs::new();
            d.insert("t".into(), Value::String("\u{1}".repeat(n)));
            d
        };
        let within = (MAX_RESOURCE_BYTES - r#"{"t":""}"#.len()) / 6;
        assert!(check_size(&escaped(within)).is_ok());
        assert!(check_size(&escaped(within + 1)).is_err());
    }
}
