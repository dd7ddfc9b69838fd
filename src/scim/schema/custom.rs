//! A tenant's custom extensions (`[[extension]]` in tenant.toml) as catalogue entries.
//!
//! Paths resolved against the catalogue are `&'static` (the store's `AttrRef` holds the
//! names), so the entries a declaration makes are leaked once and shared: `intern` keeps
//! one per distinct declaration ever loaded, never one per open or reload, so the memory
//! is bounded by how many different declarations the operator writes.

use std::sync::{Arc, Mutex};

use super::{AttrDef, AttrType};
use crate::tenant::{CustomType, ExtensionConfig};

/// One custom extension schema.
#[derive(Debug)]
pub struct Extension {
    pub urn: &'static str,
    pub description: &'static str,
    pub attrs: &'static [AttrDef],
}

/// A declaration and its entries.
type Interned = (Arc<[ExtensionConfig]>, &'static [Extension]);

static INTERNED: Mutex<Vec<Interned>> = Mutex::new(Vec::new());

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

fn attr_def(c: &crate::tenant::CustomAttrConfig) -> AttrDef {
    let ty = match c.ty {
        CustomType::String => AttrType::String,
        CustomType::Boolean => AttrType::Boolean,
        CustomType::Integer => AttrType::Integer,
        CustomType::DateTime => AttrType::DateTime,
        CustomType::Reference => AttrType::Reference,
    };
    let description = if c.description.is_empty() { "A custom attribute of this tenant." } else { leak(&c.description) };
    let mut def = AttrDef::new(leak(&c.name), ty, description);
    if c.multi_valued {
        def = def.multi();
    }
    if c.required {
        def = def.required();
    }
    if c.case_exact {
        def = def.case_exact();
    }
    if c.unique() {
        def = def.unique();
    }
    if ty == AttrType::Reference {
        def = def.refs(&["external", "uri"]);
    }
    def
}

/// The catalogue entries of `declared`, made once per distinct declaration (asked once per
/// settings object: `Catalogue::of` keeps the answer in the settings' `CatalogueSlot`).
pub fn intern(declared: &Arc<[ExtensionConfig]>) -> &'static [Extension] {
    let Ok(mut interned) = INTERNED.lock() else { return &[] };
    if let Some((_, made)) = interned.iter().find(|(config, _)| **config == **declared) {
        return made;
    }
    let made: Vec<Extension> = declared
        .iter()
        .map(|e| Extension {
            urn: leak(&e.urn),
            description: if e.description.is_empty() { "Custom attributes of this tenant." } else { leak(&e.description) },
            attrs: Box::leak(e.attributes.iter().map(attr_def).collect::<Vec<_>>().into_boxed_slice()),
        })
        .collect();
    let made: &'static [Extension] = Box::leak(made.into_boxed_slice());
    interned.push((Arc::clone(declared), made));
    made
}

/// A declaration with one attribute of each kind scimd offers: the fuzz targets and
/// benchmarks run against it as well as against the built-in catalogue.
pub const EXAMPLE_TOML: &str = r#"
[[extension]]
urn = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
[[extension.attributes]]
name = "badge"
uniqueness = "server"
[[extension.attributes]]
name = "clearance"
type = "integer"
[[extension.attributes]]
name = "contractor"
type = "boolean"
[[extension.attributes]]
name = "startDate"
type = "dateTime"
[[extension.attributes]]
name = "homepage"
type = "reference"
[[extension.attributes]]
name = "skills"
multi_valued = true
[[extension.attributes]]
name = "costCode"
case_exact = true
"#;

/// The user catalogue `EXAMPLE_TOML` declares.
pub fn example() -> super::Catalogue {
    let settings = crate::tenant::TenantSettings::parse(EXAMPLE_TOML).expect("the example declaration is valid");
    super::Catalogue::of(super::ResourceKind::User, &settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same declaration loaded again (a reload, another tenant) costs no new memory.
    #[test]
    fn a_declaration_is_interned_once() {
        let settings = crate::tenant::TenantSettings::parse(
            "[[extension]]\nurn = \"urn:test:intern:2.0:User\"\n[[extension.attributes]]\nname = \"badge\"\ntype = \"integer\"",
        )
        .unwrap();
        let a = intern(&settings.extensions);
        let again = crate::tenant::TenantSettings::parse("[[extension]]\nurn = \"urn:test:intern:2.0:User\"\n[[extension.attributes]]\nname = \"badge\"\ntype = \"integer\"").unwrap();
        let b = intern(&again.extensions);
        assert!(std::ptr::eq(a, b));
        assert_eq!((a[0].urn, a[0].attrs[0].name, a[0].attrs[0].ty), ("urn:test:intern:2.0:User", "badge", AttrType::Integer));
    }
}
