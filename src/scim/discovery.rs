//! `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`, generated from the catalogue
//! so that what we advertise cannot drift from what we store.

use serde_json::{json, Value};

use super::schema::*;
use super::{ScimError, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

pub fn service_provider_config(base_url: &str, bulk_max_operations: usize, max_payload_bytes: usize) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/scimd/scimd#readme",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": bulk_max_operations, "maxPayloadSize": max_payload_bytes},
        "filter": {"supported": true, "maxResults": MAX_PAGE_SIZE},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        // RFC 9865.
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": DEFAULT_PAGE_SIZE,
            "maxPageSize": MAX_PAGE_SIZE
        },
        "authenticationSchemes": [{
            "type": "httpbasic",
            "name": "HTTP Basic",
            "description": "Authentication with a SCIM admin service account (scimd admin add).",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig")
        }
    })
}

fn resource_type_doc(cat: Catalogue, base_url: &str) -> Value {
    let kind = cat.kind;
    let extensions: Vec<Value> = cat.extensions().map(|(urn, _)| json!({"schema": urn, "required": false})).collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": format!("{} accounts", kind.name()),
        "schema": kind.core_schema(),
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base_url}/ResourceTypes/{}", kind.name())
        }
    })
}

/// The tenant's catalogues: users with its custom extensions, groups as built in.
fn catalogues(users: Catalogue) -> [Catalogue; 2] {
    [users, Catalogue::plain(ResourceKind::Group)]
}

pub fn resource_types(base_url: &str, users: Catalogue) -> Vec<Value> {
    catalogues(users).iter().map(|c| resource_type_doc(*c, base_url)).collect()
}

pub fn resource_type(name: &str, base_url: &str, users: Catalogue) -> Result<Value, ScimError> {
    catalogues(users)
        .iter()
        .find(|c| c.kind.name() == name)
        .map(|c| resource_type_doc(*c, base_url))
        .ok_or_else(|| ScimError::not_found(format!("resource type {name} not found")))
}

fn attr_doc(attr: &AttrDef) -> Value {
    let mut doc = json!({
        "name": attr.name,
        "type": match attr.ty {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Binary => "binary",
            AttrType::Complex => "complex",
        },
        "multiValued": attr.multi,
        "description": attr.description,
        "required": attr.required,
        "caseExact": attr.case_exact,
        "mutability": match attr.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        },
        "returned": match attr.returned {
            Returned::Default => "default",
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Request => "request",
        },
        "uniqueness": if attr.unique_server { "server" } else { "none" },
    });
    if !attr.canonical.is_empty() {
        doc["canonicalValues"] = json!(attr.canonical);
    }
    if !attr.ref_types.is_empty() {
        doc["referenceTypes"] = json!(attr.ref_types);
    }
    if !attr.sub.is_empty() {
        doc["subAttributes"] = Value::Array(attr.sub.iter().map(attr_doc).collect());
    }
    doc
}

fn schema_doc(urn: &str, name: &str, description: &str, attrs: &[AttrDef], base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": urn,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_doc).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{urn}")}
    })
}

/// Every schema the tenant's resources use: the built-in ones, then its custom extensions
/// (named after the URN's last segment before `:2.0:User`, e.g. `acme`).
pub fn schemas(base_url: &str, users: Catalogue) -> Vec<Value> {
    let mut all = vec![
        schema_doc(USER_SCHEMA, "User", "User Account", USER_ATTRS, base_url),
        schema_doc(GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS, base_url),
        schema_doc(ENTERPRISE_SCHEMA, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRS, base_url),
        schema_doc(SCIMD_SCHEMA, "ScimdUser", "scimd licence and origin (read-only)", SCIMD_ATTRS, base_url),
    ];
    for ext in users.custom() {
        all.push(schema_doc(ext.urn, custom_name(ext.urn), ext.description, ext.attrs, base_url));
    }
    all
}

/// A readable name for a custom schema: `urn:…:extension:acme:2.0:User` → `acme`.
fn custom_name(urn: &str) -> &str {
    let parts: Vec<&str> = urn.split(':').collect();
    match parts.iter().position(|p| *p == "2.0") {
        Some(i) if i > 0 => parts[i - 1],
        _ => parts.last().copied().unwrap_or(urn),
    }
}

pub fn schema(urn: &str, base_url: &str, users: Catalogue) -> Result<Value, ScimError> {
    schemas(base_url, users)
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(urn)))
        .ok_or_else(|| ScimError::not_found(format!("schema {urn} not found")))
}
