//! RFC 7644 §3.5.2 PATCH: parsing operations (tolerating the Okta and Entra dialects:
//! op names in any case, booleans as strings, path-less values with dotted or URN keys)
//! and applying them to a canonical document in memory. The caller persists the result
//! in one transaction, so a request's operations apply all or not at all.
//!
//! Group membership is not applied here: `groups.rs` turns member operations into row
//! inserts and deletes so a PATCH costs O(members changed).

use std::collections::HashSet;

use log::debug;
use serde_json::{Map, Value};

use super::dialect::{self, Dialect, Leniency};
use super::filter::{self, CompareOp, FilterExpr, Literal};
use super::resource::{self, Attrs};
use super::schema::{self, AttrDef, AttrType, Catalogue, ResolvedPath};
use super::{ScimError, ScimErrorKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

/// A parsed `path`: the attribute, an optional value filter and an optional sub-attribute
/// after the filter (`emails[type eq "work"].value`).
#[derive(Clone, Debug)]
pub struct PatchPath {
    pub attr: String,
    pub filter: Option<FilterExpr>,
    pub sub_after_filter: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
    /// Whether an add/replace through a value filter that matches nothing creates the
    /// element the filter describes (Entra's work email; the strict dialect says noTarget).
    pub create_unmatched: bool,
}

/// Maximum operations in one PATCH request.
pub const MAX_OPERATIONS: usize = 1000;

/// Parses a PATCH body as the tenant's dialect reads it (`dialect::check_patch` has
/// already refused, under the strict one, what this would tolerate).
pub fn parse_as(body: &Value, dialect: Dialect) -> Result<Vec<PatchOperation>, ScimError> {
    let mut ops = parse(body)?;
    let create = dialect::allows(dialect, Leniency::AddThroughUnmatchedFilter);
    ops.iter_mut().for_each(|op| op.create_unmatched = create);
    Ok(ops)
}

pub fn parse(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let ops = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body needs an 'Operations' array"))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::new(ScimErrorKind::TooMany, format!("more than {MAX_OPERATIONS} operations")));
    }
    ops.iter().map(parse_operation).collect()
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn parse_operation(value: &Value) -> Result<PatchOperation, ScimError> {
    let obj = value.as_object().ok_or_else(|| ScimError::invalid_syntax("each operation must be an object"))?;
    let op_name = field(obj, "op").and_then(Value::as_str).unwrap_or_default();
    let op = match op_name.to_ascii_lowercase().as_str() {
        "add" => OpKind::Add,
        "replace" => OpKind::Replace,
        "remove" => OpKind::Remove,
        _ => return Err(ScimError::invalid_syntax(format!("unknown PATCH op '{op_name}'"))),
    };
    let path = match field(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(parse_path(p.trim())?),
        Some(_) => return Err(ScimError::invalid_path("'path' must be a string")),
    };
    let value = field(obj, "value").cloned();
    if op != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!("'{op_name}' needs a value")));
    }
    if op == OpKind::Remove && path.is_none() {
        return Err(ScimError::no_target("'remove' needs a path"));
    }
    Ok(PatchOperation { op, path, value, create_unmatched: true })
}

pub fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    let Some(open) = text.find('[') else {
        if !filter::is_attr_path(text) {
            return Err(ScimError::invalid_path(format!("invalid path '{text}'")));
        }
        return Ok(PatchPath { attr: text.to_string(), filter: None, sub_after_filter: None });
    };
    let close = text.rfind(']').filter(|c| *c > open).ok_or_else(|| ScimError::invalid_path(format!("invalid path '{text}'")))?;
    let attr = &text[..open];
    let rest = &text[close + 1..];
    let sub = match rest {
        "" => None,
        r => Some(r.strip_prefix('.').filter(|s| filter::is_attr_path(s)).ok_or_else(|| ScimError::invalid_path(format!("invalid path '{text}'")))?.to_string()),
    };
    if !filter::is_attr_path(attr) {
        return Err(ScimError::invalid_path(format!("invalid path '{text}'")));
    }
    let expr = filter::parse(&text[open + 1..close]).map_err(|e| ScimError::invalid_path(format!("invalid filter in path: {}", e.detail)))?;
    Ok(PatchPath { attr: attr.to_string(), filter: Some(expr), sub_after_filter: sub })
}

/// Resolves a path's attribute; `Ok(None)` for an attribute we do not know (ignored).
pub fn resolve(cat: Catalogue, path: &PatchPath) -> Result<Option<ResolvedPath>, ScimError> {
    let Some(mut rp) = schema::resolve_path(cat, &path.attr) else {
        debug!(target: "scimd::scim", "ignoring PATCH of unknown attribute {}", path.attr);
        return Ok(None);
    };
    if let Some(sub) = &path.sub_after_filter {
        if rp.sub.is_some() {
            return Err(ScimError::invalid_path("a sub-attribute cannot follow both the attribute and the filter"));
        }
        match rp.attr.sub_attr(sub) {
            Some(s) => rp.sub = Some(s),
            None => return Ok(None),
        }
    }
    if path.filter.is_some() && !rp.attr.multi {
        return Err(ScimError::invalid_path(format!("'{}' is not multi-valued; it takes no filter", path.attr)));
    }
    Ok(Some(rp))
}

/// Applies one operation to a document. Membership operations on groups are routed
/// elsewhere before this is called.
pub fn apply(cat: Catalogue, doc: &mut Attrs, op: &PatchOperation) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        return apply_pathless(cat, doc, op);
    };
    if let Some(urn) = schema::extension_urn(cat, &path.attr) {
        return apply_extension(cat, doc, urn, op);
    }
    let Some(rp) = resolve(cat, path)? else { return Ok(()) };
    if rp.attr.is_read_only() || rp.sub.is_some_and(|s| s.is_read_only()) {
        return Err(ScimError::new(ScimErrorKind::Mutability, format!("'{}' is read-only", path.attr)));
    }
    match &path.filter {
        None => apply_plain(doc, &rp, op),
        Some(expr) => apply_filtered(doc, &rp, expr, op),
    }
}

/// A path naming a whole extension: remove drops it, add/replace merge its attributes.
fn apply_extension(cat: Catalogue, doc: &mut Attrs, urn: &str, op: &PatchOperation) -> Result<(), ScimError> {
    if op.path.as_ref().is_some_and(|p| p.filter.is_some()) {
        return Err(ScimError::invalid_path(format!("{urn} takes no filter")));
    }
    if op.op == OpKind::Remove {
        doc.remove(urn);
        return Ok(());
    }
    let Some(Value::Object(obj)) = &op.value else {
        return Err(ScimError::invalid_value(format!("{urn} needs an object value")));
    };
    for (key, value) in obj {
        apply_keyed(cat, doc, op.op, &format!("{urn}:{key}"), value)?;
    }
    Ok(())
}

/// A path-less add/replace: each key of the value object is a path (Entra sends dotted
/// and URN-qualified keys here).
fn apply_pathless(cat: Catalogue, doc: &mut Attrs, op: &PatchOperation) -> Result<(), ScimError> {
    let Some(Value::Object(obj)) = &op.value else {
        return Err(ScimError::invalid_value("a PATCH without a path needs an object value"));
    };
    for (key, value) in obj {
        if ["schemas", "id", "meta"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
            continue;
        }
        if let Some(urn) = schema::extension_urn(cat, key) {
            let Some(inner) = value.as_object() else { continue };
            for (sub_key, sub_value) in inner {
                apply_keyed(cat, doc, op.op, &format!("{urn}:{sub_key}"), sub_value)?;
            }
            continue;
        }
        apply_keyed(cat, doc, op.op, key, value)?;
    }
    Ok(())
}

fn apply_keyed(cat: Catalogue, doc: &mut Attrs, op: OpKind, key: &str, value: &Value) -> Result<(), ScimError> {
    let Some(rp) = schema::resolve_path(cat, key) else {
        debug!(target: "scimd::scim", "ignoring PATCH of unknown attribute {key}");
        return Ok(());
    };
    if rp.attr.is_read_only() || rp.sub.is_some_and(|s| s.is_read_only()) {
        return Ok(());
    }
    apply_plain(doc, &rp, &PatchOperation { op, path: None, value: Some(value.clone()), create_unmatched: true })
}

fn apply_plain(doc: &mut Attrs, rp: &ResolvedPath, op: &PatchOperation) -> Result<(), ScimError> {
    let null = Value::Null;
    let value = op.value.as_ref().unwrap_or(&null);
    if is_active(rp) && (op.op == OpKind::Remove || value.is_null()) {
        // A user is active or not; no value is not a third state (it used to be stored as
        // NULL and read as active, bringing a deactivated account back).
        return Err(ScimError::invalid_value("'active' cannot be removed; replace it with true or false"));
    }
    match op.op {
        OpKind::Remove if rp.attr.multi && rp.sub.is_none() && !value.is_null() => {
            // Remove the listed values only (Entra: path "members"/"emails" with a value list).
            let doomed: Vec<Value> = match resource::coerce(rp.attr, value)? {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let doomed = ValueSet::new(&doomed);
            let container = resource::container_mut(doc, rp.extension);
            if let Some(Value::Array(items)) = container.get_mut(rp.attr.name) {
                items.retain(|item| !doomed.contains(item));
                if items.is_empty() {
                    container.remove(rp.attr.name);
                }
            }
            resource::prune_extension(doc, rp.extension);
            Ok(())
        }
        OpKind::Remove => resource::set_path(doc, rp, &Value::Null),
        OpKind::Add if rp.attr.multi && rp.sub.is_none() => {
            let Some(Value::Array(new_items)) = resource::coerce(rp.attr, value)? else { return Ok(()) };
            let container = resource::container_mut(doc, rp.extension);
            let entry = container.entry(rp.attr.name.to_string()).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                let new_primary = new_items.iter().any(|i| i.get("primary") == Some(&Value::Bool(true)));
                if new_primary {
                    // A new primary value demotes the old one (RFC 7643 §2.4).
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        if item.get("primary") == Some(&Value::Bool(true)) {
                            item.insert("primary".into(), Value::Bool(false));
                        }
                    }
                }
                // One hash set, not a search of the list per new value: adding n values
                // to n costs O(n), not O(n²).
                let mut present: HashSet<String> = items.iter().map(canonical_key).collect();
                for item in new_items {
                    if present.insert(canonical_key(&item)) {
                        items.push(item);
                    }
                }
            }
            Ok(())
        }
        OpKind::Add | OpKind::Replace if rp.attr.ty == AttrType::Complex && !rp.attr.multi && rp.sub.is_none() && value.is_object() => {
            // Merge the given sub-attributes into the existing complex value.
            let Some(obj) = value.as_object() else { return Ok(()) };
            for (k, v) in obj {
                if let Some(sub) = rp.attr.sub_attr(k) {
                    resource::set_path(doc, &ResolvedPath { extension: rp.extension, attr: rp.attr, sub: Some(sub) }, v)?;
                }
            }
            Ok(())
        }
        OpKind::Add | OpKind::Replace => resource::set_path(doc, rp, value),
    }
}

/// The User's `active`: the one attribute that always has a value.
fn is_active(rp: &ResolvedPath) -> bool {
    rp.extension.is_none() && rp.sub.is_none() && rp.attr.name == "active" && rp.attr.ty == AttrType::Boolean
}

/// A value's text with object keys sorted: equal keys exactly when the values are equal
/// (`serde_json` compares objects regardless of key order, and so must the key).
fn canonical_key(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(obj) => {
                let mut keys: Vec<&String> = obj.keys().collect();
                keys.sort();
                out.push('{');
                for key in keys {
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&obj[key.as_str()], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    write(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The values a `remove` names, for O(1) membership tests. Two elements are "the same
/// value" when both have a `value` sub-attribute and those are equal, else when they are
/// equal objects: so an element with a `value` matches by its `value` only, one without
/// by the whole element.
struct ValueSet {
    by_value: HashSet<String>,
    whole: HashSet<String>,
}

impl ValueSet {
    fn new(items: &[Value]) -> ValueSet {
        let mut set = ValueSet { by_value: HashSet::new(), whole: HashSet::new() };
        for item in items {
            match item.get("value") {
                Some(v) => set.by_value.insert(canonical_key(v)),
                None => set.whole.insert(canonical_key(item)),
            };
        }
        set
    }

    fn contains(&self, item: &Value) -> bool {
        match item.get("value") {
            Some(v) => self.by_value.contains(&canonical_key(v)),
            None => self.whole.contains(&canonical_key(item)),
        }
    }
}

fn apply_filtered(doc: &mut Attrs, rp: &ResolvedPath, expr: &FilterExpr, op: &PatchOperation) -> Result<(), ScimError> {
    let attr = rp.attr;
    let sub = rp.sub;
    let new_value = match (&op.value, sub) {
        (Some(v), Some(s)) => resource::coerce(s, v)?,
        // A multi-valued attribute of simple values (a custom one) takes one value there.
        (Some(v), None) if op.op != OpKind::Remove && attr.ty != AttrType::Complex && !v.is_array() => match resource::coerce(attr, &Value::Array(vec![v.clone()]))? {
            Some(Value::Array(mut items)) => items.pop(),
            other => other,
        },
        (Some(v), None) if op.op != OpKind::Remove => match resource::coerce(attr, v)? {
            Some(Value::Array(mut items)) if items.len() == 1 => items.pop(),
            Some(Value::Array(_)) => return Err(ScimError::invalid_value("a filtered path takes a single value")),
            other => other,
        },
        _ => None,
    };
    let container = resource::container_mut(doc, rp.extension);
    let items = match container.get_mut(attr.name) {
        Some(Value::Array(items)) => items,
        _ => {
            container.insert(attr.name.to_string(), Value::Array(Vec::new()));
            match container.get_mut(attr.name) {
                Some(Value::Array(items)) => items,
                _ => unreachable!("just inserted an array"),
            }
        }
    };
    let mut matched = 0;
    // Rebuilt in one pass: removing matches one by one from the vector would shift the
    // rest each time, O(n²) for a filter matching most of a long list.
    let mut kept = Vec::with_capacity(items.len());
    for mut item in std::mem::take(items) {
        if !matches(expr, attr, &item) {
            kept.push(item);
            continue;
        }
        matched += 1;
        match (op.op, sub) {
            (OpKind::Remove, None) => continue,
            (OpKind::Remove, Some(s)) => {
                if let Some(obj) = item.as_object_mut() {
                    obj.remove(s.name);
                }
            }
            (_, Some(s)) => {
                if let Some(obj) = item.as_object_mut() {
                    match &new_value {
                        Some(v) => obj.insert(s.name.to_string(), v.clone()),
                        None => obj.remove(s.name),
                    };
                }
            }
            (_, None) if !item.is_object() => {
                if let Some(v) = &new_value {
                    item = v.clone();
                }
            }
            (_, None) => {
                if let (Some(obj), Some(Value::Object(new_obj))) = (item.as_object_mut(), &new_value) {
                    for (k, v) in new_obj {
                        obj.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        kept.push(item);
    }
    *items = kept;
    if matched == 0 && op.op != OpKind::Remove {
        // Entra adds `emails[type eq "work"].value` when no work email exists yet:
        // create the element the filter describes, if it is a plain equality.
        if !op.create_unmatched {
            return Err(dialect::refused(Leniency::AddThroughUnmatchedFilter, format!("no value of '{}' matches the filter", attr.name)));
        }
        if attr.ty != AttrType::Complex {
            // `skills[value eq "x"]` matched nothing: the value sent is added.
            let Some(v) = new_value else {
                return Err(ScimError::no_target(format!("no value of '{}' matches the filter", attr.name)));
            };
            items.push(v);
            resource::prune_extension(doc, rp.extension);
            return Ok(());
        }
        let Some(mut element) = element_from_filter(expr, attr) else {
            return Err(ScimError::no_target(format!("no value of '{}' matches the filter", attr.name)));
        };
        match (sub, new_value) {
            (Some(s), Some(v)) => {
                element.insert(s.name.to_string(), v);
            }
            (None, Some(Value::Object(obj))) => element.extend(obj),
            _ => {}
        }
        items.push(Value::Object(element));
    }
    items.retain(|i| i.as_object().is_none_or(|o| !o.is_empty()));
    if items.is_empty() {
        container.remove(attr.name);
    }
    resource::prune_extension(doc, rp.extension);
    Ok(())
}

/// `type eq "work"` (optionally `and`-ed equalities) → `{"type": "work"}`.
fn element_from_filter(expr: &FilterExpr, parent: &AttrDef) -> Option<Map<String, Value>> {
    match expr {
        FilterExpr::Compare { path, op: CompareOp::Eq, value } => {
            let sub = parent.sub_attr(path)?;
            let v = match value {
                Literal::Str(s) => Value::String(s.clone()),
                Literal::Bool(b) => Value::Bool(*b),
                _ => return None,
            };
            let mut m = Map::new();
            m.insert(sub.name.to_string(), v);
            Some(m)
        }
        FilterExpr::And(a, b) => {
            let mut m = element_from_filter(a, parent)?;
            m.extend(element_from_filter(b, parent)?);
            Some(m)
        }
        _ => None,
    }
}

/// Evaluates a value filter against one element of a multi-valued attribute. In one of
/// simple values (a custom attribute), `value` is the element itself.
pub fn matches(expr: &FilterExpr, parent: &AttrDef, item: &Value) -> bool {
    // (the value a path names in this element, whether it compares case-exactly)
    let named = |path: &str| -> Option<(Option<&Value>, bool)> {
        if parent.ty != AttrType::Complex {
            return path.eq_ignore_ascii_case("value").then_some((Some(item), parent.case_exact));
        }
        let sub = parent.sub_attr(path)?;
        Some((item.get(sub.name), sub.case_exact))
    };
    match expr {
        FilterExpr::And(a, b) => matches(a, parent, item) && matches(b, parent, item),
        FilterExpr::Or(a, b) => matches(a, parent, item) || matches(b, parent, item),
        FilterExpr::Not(a) => !matches(a, parent, item),
        FilterExpr::ValuePath { .. } => false,
        FilterExpr::Present { path } => named(path).and_then(|(v, _)| v).is_some_and(|v| !v.is_null() && v != &Value::String(String::new())),
        FilterExpr::Compare { path, op, value } => {
            let Some((actual, case_exact)) = named(path) else { return false };
            compare_json(actual, *op, value, case_exact)
        }
    }
}

fn compare_json(actual: Option<&Value>, op: CompareOp, expected: &Literal, case_exact: bool) -> bool {
    match (actual, expected) {
        (None | Some(Value::Null), Literal::Null) => op == CompareOp::Eq,
        (Some(_), Literal::Null) => op == CompareOp::Ne,
        (None, _) => op == CompareOp::Ne,
        (Some(Value::Number(a)), Literal::Num(b)) => {
            let a = a.as_f64().unwrap_or(f64::NAN);
            match op {
                CompareOp::Eq => a == *b,
                CompareOp::Ne => a != *b,
                CompareOp::Gt => a > *b,
                CompareOp::Ge => a >= *b,
                CompareOp::Lt => a < *b,
                CompareOp::Le => a <= *b,
                _ => false,
            }
        }
        (Some(Value::Bool(a)), Literal::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Some(Value::String(a)), Literal::Str(b)) => {
            let (a, b) = if case_exact { (a.clone(), b.clone()) } else { (a.to_lowercase(), b.to_lowercase()) };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            }
        }
        _ => op == CompareOp::Ne,
    }
}

/// The member ids in a `members` value: `[{"value": id}, …]` (or bare ids).
pub fn member_ids(value: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(id) => Ok(id.clone()),
            Value::Object(obj) => field(obj, "value")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ScimError::invalid_value("each member needs a 'value'")),
            _ => Err(ScimError::invalid_value("each member must be an object with a 'value'")),
        })
        .collect()
}

/// The ids a `members[...]` filter names: `value eq "a"`, possibly `or`-ed.
pub fn filter_member_ids(expr: &FilterExpr) -> Result<Vec<String>, ScimError> {
    match expr {
        FilterExpr::Compare { path, op: CompareOp::Eq, value: Literal::Str(id) } if path.eq_ignore_ascii_case("value") => {
            Ok(vec![id.clone()])
        }
        FilterExpr::Or(a, b) => {
            let mut ids = filter_member_ids(a)?;
            ids.extend(filter_member_ids(b)?);
            Ok(ids)
        }
        _ => Err(ScimError::invalid_filter("a members filter must be 'value eq \"id\"' (optionally or-ed)")),
    }
}
