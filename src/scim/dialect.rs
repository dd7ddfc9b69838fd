//! Dialects: every tolerance scimd has for what Okta and Entra send beyond RFC 7643/7644,
//! in one list, and the strict profile (`dialect = "strict"` in tenant.toml) that answers
//! each of them as the RFCs say, for developers testing their own SCIM client.
//!
//! The lenient code paths stay where they are (resource decoding, PATCH, filters, group
//! members, the router's query check); each one asks `allows` here. The strict checks of a
//! raw body live here too, so the idp dialect's path does not change at all. The README's
//! "Dialects" table is `Leniency::ALL` (a unit test keeps the two in step).

use serde_json::{Map, Value};

use super::schema::{self, AttrDef, AttrType, Catalogue};
use super::{ScimError, ScimErrorKind};
pub use crate::tenant::Dialect;

/// One tolerance of the idp dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leniency {
    StringBooleans,
    CapitalisedOps,
    DottedKeys,
    SubAttributeAfterFilter,
    AddThroughUnmatchedFilter,
    VendorSchemas,
    MissingSchemas,
    SingleValueForMulti,
    BareValueForComplex,
    UnknownMembers,
    RemoveMembersByValue,
    UnknownPatchPaths,
    UnknownQueryParameters,
    StringIntegers,
    ValueObjectsForValues,
}

impl Leniency {
    pub const ALL: [Leniency; 15] = [
        Leniency::StringBooleans,
        Leniency::CapitalisedOps,
        Leniency::DottedKeys,
        Leniency::SubAttributeAfterFilter,
        Leniency::AddThroughUnmatchedFilter,
        Leniency::VendorSchemas,
        Leniency::MissingSchemas,
        Leniency::SingleValueForMulti,
        Leniency::BareValueForComplex,
        Leniency::UnknownMembers,
        Leniency::RemoveMembersByValue,
        Leniency::UnknownPatchPaths,
        Leniency::UnknownQueryParameters,
        Leniency::StringIntegers,
        Leniency::ValueObjectsForValues,
    ];

    /// What the idp dialect accepts (the README table's first column).
    pub fn tolerated(self) -> &'static str {
        match self {
            Leniency::StringBooleans => r#"booleans as strings: `"active": "False"`, `active eq "true"` (Entra)"#,
            Leniency::CapitalisedOps => r#"PATCH `op` in any case: `"Replace"`, `"Add"` (Entra)"#,
            Leniency::DottedKeys => r#"attribute paths as keys: `{"op": "replace", "value": {"name.givenName": "Ann"}}` (Entra)"#,
            Leniency::SubAttributeAfterFilter => r#"a filter comparing after a value filter: `emails[type eq "work"].value eq "a@x"` (Entra)"#,
            Leniency::AddThroughUnmatchedFilter => r#"PATCH `add`/`replace` at `emails[type eq "work"].value` when no work email exists creates it (Entra)"#,
            Leniency::VendorSchemas => r#"URNs scimd does not know in `schemas`, outside `urn:ietf:params:scim:` (Entra's `http://schemas.microsoft.com/…`)"#,
            Leniency::MissingSchemas => "a POST, PUT or PATCH body without `schemas`",
            Leniency::SingleValueForMulti => r#"one object where a list is due: `"emails": {"value": "a@x"}`"#,
            Leniency::BareValueForComplex => r#"a bare id for a complex attribute with a `value`: `"manager": "26118"` (Entra)"#,
            Leniency::UnknownMembers => "group members that are no user here (unknown, deleted, a group): skipped, the rest applied, an `ignore` event, a WARN line and `scimd_members_skipped_total`",
            Leniency::RemoveMembersByValue => r#"`{"op": "Remove", "path": "members", "value": [{"value": "…"}]}` removes those members (Entra); RFC 7644 §3.5.2.2 would remove every member"#,
            Leniency::UnknownPatchPaths => "a PATCH of an attribute scimd does not know: ignored (Entra sends many)",
            Leniency::UnknownQueryParameters => "query parameters SCIM does not define: ignored",
            Leniency::StringIntegers => r#"a custom integer attribute as a string: `"clearance": "3"` (Entra sends custom attributes as strings)"#,
            Leniency::ValueObjectsForValues => r#"`[{"value": "1"}]` for a custom multi-valued attribute of simple values (Entra)"#,
        }
    }

    /// What the strict dialect answers instead (the table's second column).
    pub fn strict_answer(self) -> &'static str {
        match self {
            Leniency::StringBooleans => "400 `invalidValue` (filters: `invalidFilter`)",
            Leniency::CapitalisedOps => "400 `invalidSyntax`",
            Leniency::DottedKeys => "400 `invalidSyntax`",
            Leniency::SubAttributeAfterFilter => "400 `invalidFilter`",
            Leniency::AddThroughUnmatchedFilter => "400 `noTarget`",
            Leniency::VendorSchemas => "400 `invalidSyntax`",
            Leniency::MissingSchemas => "400 `invalidSyntax`",
            Leniency::SingleValueForMulti => "400 `invalidValue`",
            Leniency::BareValueForComplex => "400 `invalidValue`",
            Leniency::UnknownMembers => "400 `invalidValue`, nothing changed",
            Leniency::RemoveMembersByValue => "400 `invalidValue` (remove by filter: `members[value eq \"…\"]`), nothing changed",
            Leniency::UnknownPatchPaths => "400 `invalidPath`",
            Leniency::UnknownQueryParameters => "400 `invalidValue`",
            Leniency::StringIntegers => "400 `invalidValue`",
            Leniency::ValueObjectsForValues => "400 `invalidValue`",
        }
    }

    fn kind(self) -> ScimErrorKind {
        match self {
            Leniency::CapitalisedOps | Leniency::DottedKeys | Leniency::VendorSchemas | Leniency::MissingSchemas => ScimErrorKind::InvalidSyntax,
            Leniency::SubAttributeAfterFilter => ScimErrorKind::InvalidFilter,
            Leniency::AddThroughUnmatchedFilter => ScimErrorKind::NoTarget,
            Leniency::UnknownPatchPaths => ScimErrorKind::InvalidPath,
            _ => ScimErrorKind::InvalidValue,
        }
    }
}

/// Whether `dialect` accepts what `leniency` describes.
pub fn allows(dialect: Dialect, _leniency: Leniency) -> bool {
    dialect == Dialect::Idp
}

/// The strict dialect's answer, naming the setting that would accept it.
pub fn refused(leniency: Leniency, detail: impl std::fmt::Display) -> ScimError {
    ScimError::new(leniency.kind(), format!("{detail} (this tenant's dialect is \"strict\"; dialect = \"idp\" accepts it)"))
}

fn refuse_unless(dialect: Dialect, leniency: Leniency, detail: impl std::fmt::Display) -> Result<(), ScimError> {
    if allows(dialect, leniency) { Ok(()) } else { Err(refused(leniency, detail)) }
}

/// `schemas` must name `urn` and, under the strict dialect, only URNs scimd knows.
/// A body without `schemas` is one of the idp dialect's tolerances; a `schemas` without
/// the core URN is refused under both (it claims to be something else).
fn check_schemas_list(dialect: Dialect, body: &Value, core: &str, known: impl Fn(&str) -> bool) -> Result<(), ScimError> {
    let Some(list) = body.get("schemas").and_then(Value::as_array) else {
        return refuse_unless(dialect, Leniency::MissingSchemas, format!("the body has no 'schemas' naming {core}"));
    };
    let urns: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    if !urns.iter().any(|u| u.eq_ignore_ascii_case(core)) {
        return Err(ScimError::invalid_syntax(format!("'schemas' must name {core}")));
    }
    match urns.iter().find(|u| !known(u)) {
        Some(urn) => refuse_unless(dialect, Leniency::VendorSchemas, format!("unknown schema {urn}")),
        None => Ok(()),
    }
}

/// The checks of a POST or PUT body beyond decoding: its core schema (both dialects) and,
/// under the strict dialect, every tolerance `resource::decode` would apply.
pub fn check_resource(dialect: Dialect, cat: Catalogue, body: &Value) -> Result<(), ScimError> {
    check_schemas_list(dialect, body, cat.kind.core_schema(), |u| u.eq_ignore_ascii_case(cat.kind.core_schema()) || schema::extension_urn(cat, u).is_some())?;
    if dialect == Dialect::Idp {
        return Ok(());
    }
    match body.as_object() {
        Some(obj) => check_object(cat, obj),
        None => Ok(()),
    }
}

/// Decodes a POST or PUT body under the tenant's dialect.
pub fn decode(dialect: Dialect, cat: Catalogue, body: &Value) -> Result<super::resource::Attrs, ScimError> {
    check_resource(dialect, cat, body)?;
    super::resource::decode(cat, body)
}

/// Parses a PATCH body under the tenant's dialect.
pub fn parse_patch(dialect: Dialect, cat: Catalogue, body: &Value) -> Result<Vec<super::patch::PatchOperation>, ScimError> {
    check_patch(dialect, cat, body)?;
    super::patch::parse_as(body, dialect)
}

pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The strict dialect's checks of a PATCH body (the idp dialect takes it as it comes).
pub fn check_patch(dialect: Dialect, cat: Catalogue, body: &Value) -> Result<(), ScimError> {
    if dialect == Dialect::Idp {
        return Ok(());
    }
    check_schemas_list(dialect, body, PATCH_OP, |u| u.eq_ignore_ascii_case(PATCH_OP))?;
    let ops = body.get("Operations").and_then(Value::as_array).into_iter().flatten();
    for op in ops.filter_map(Value::as_object) {
        if let Some(name) = op.get("op").and_then(Value::as_str) {
            if !["add", "replace", "remove"].contains(&name) {
                return Err(refused(Leniency::CapitalisedOps, format!("PATCH op '{name}' is not add, replace or remove")));
            }
        }
        let value = op.get("value");
        match op.get("path").and_then(Value::as_str).filter(|p| !p.trim().is_empty()) {
            None => {
                if let Some(Value::Object(obj)) = value {
                    check_object(cat, obj)?;
                }
            }
            Some(text) => {
                let path = super::patch::parse_path(text.trim())?;
                if let Some(urn) = schema::extension_urn(cat, &path.attr) {
                    if let Some(Value::Object(obj)) = value {
                        check_extension(cat, urn, obj)?;
                    }
                    continue;
                }
                let Some(rp) = super::patch::resolve(cat, &path)? else {
                    return Err(refused(Leniency::UnknownPatchPaths, format!("unknown attribute '{}'", path.attr)));
                };
                if let Some(v) = value {
                    match (rp.sub, &path.filter) {
                        (Some(sub), _) => check_single(sub, v)?,
                        // A filter selects elements: the value is one element's content.
                        (None, Some(_)) => check_single(rp.attr, v)?,
                        (None, None) => check_value(rp.attr, v)?,
                    }
                }
            }
        }
    }
    Ok(())
}

/// The keys of a resource body or a path-less PATCH value.
fn check_object(cat: Catalogue, obj: &Map<String, Value>) -> Result<(), ScimError> {
    for (key, value) in obj {
        if ["schemas", "id", "meta"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
            continue;
        }
        if let Some(urn) = schema::extension_urn(cat, key) {
            if let Value::Object(inner) = value {
                check_extension(cat, urn, inner)?;
            }
            continue;
        }
        if key.contains('.') {
            return Err(refused(Leniency::DottedKeys, format!("'{key}' is a path, not an attribute name")));
        }
        if let Some(rp) = schema::resolve_path(cat, key) {
            check_value(rp.attr, value)?;
        }
    }
    Ok(())
}

fn check_extension(cat: Catalogue, urn: &str, obj: &Map<String, Value>) -> Result<(), ScimError> {
    for (key, value) in obj {
        if key.contains('.') {
            return Err(refused(Leniency::DottedKeys, format!("'{key}' is a path, not an attribute name")));
        }
        if let Some(rp) = schema::resolve_path(cat, &format!("{urn}:{key}")) {
            check_value(rp.attr, value)?;
        }
    }
    Ok(())
}

fn check_value(attr: &AttrDef, value: &Value) -> Result<(), ScimError> {
    match value {
        Value::Object(_) if attr.multi => Err(refused(Leniency::SingleValueForMulti, format!("'{}' is multi-valued: send a list", attr.name))),
        Value::Array(items) if attr.multi => items.iter().try_for_each(|item| check_single(attr, item)),
        _ => check_single(attr, value),
    }
}

fn check_single(attr: &AttrDef, value: &Value) -> Result<(), ScimError> {
    match (attr.ty, value) {
        (AttrType::Boolean, Value::String(s)) => Err(refused(Leniency::StringBooleans, format!("'{}' is a boolean, not the string {s:?}", attr.name))),
        (AttrType::Integer, Value::String(s)) => Err(refused(Leniency::StringIntegers, format!("'{}' is an integer, not the string {s:?}", attr.name))),
        (ty, Value::Object(obj)) if ty != AttrType::Complex && attr.multi && obj.contains_key("value") => {
            Err(refused(Leniency::ValueObjectsForValues, format!("'{}' holds simple values: send [\"…\"], not [{{\"value\": …}}]", attr.name)))
        }
        (AttrType::Complex, Value::String(_)) if attr.sub_attr("value").is_some() => {
            Err(refused(Leniency::BareValueForComplex, format!("'{}' is complex: send {{\"value\": …}}", attr.name)))
        }
        (AttrType::Complex, Value::Object(obj)) => {
            for (key, v) in obj {
                if let Some(sub) = attr.sub_attr(key) {
                    check_single(sub, v)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The query parameters RFC 7644 defines for a SCIM endpoint (and RFC 9865's cursor).
pub const QUERY_PARAMETERS: [&str; 8] = ["filter", "startIndex", "count", "attributes", "excludedAttributes", "sortBy", "sortOrder", "cursor"];

/// Refuses, under the strict dialect, a query parameter SCIM does not define.
pub fn check_query_names<'a>(dialect: Dialect, mut names: impl Iterator<Item = &'a str>) -> Result<(), ScimError> {
    match names.find(|n| !QUERY_PARAMETERS.iter().any(|p| p.eq_ignore_ascii_case(n))) {
        Some(name) => refuse_unless(dialect, Leniency::UnknownQueryParameters, format!("unknown query parameter '{name}'")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table lists every tolerance with what strict answers: a new one
    /// cannot be added here without its row there.
    #[test]
    fn the_readme_table_lists_every_leniency() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
        for l in Leniency::ALL {
            let row = format!("| {} | {} |", l.tolerated(), l.strict_answer());
            assert!(readme.contains(&row), "README.md lacks the row\n{row}");
        }
    }
}
