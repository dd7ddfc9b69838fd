//! `[[extension]]` in `tenant.toml`: custom user attributes under an extension URN of the
//! tenant's choosing (issue 23), as declared and validated. Plain data: `scim::schema`
//! turns a declaration into catalogue entries, the store indexes the unique ones.

use crate::model::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, SCIMD_SCHEMA, USER_SCHEMA};

/// The most custom attributes a tenant may declare (all extensions together): each is a
/// JSON path every write and read of a user walks, and a unique one is an index.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 100;
const MAX_EXTENSIONS: usize = 8;

/// One `[[extension]]`: a schema URN and its attributes (`[[extension.attributes]]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    pub urn: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub attributes: Vec<CustomAttrConfig>,
}

/// One custom attribute; every key but `name` is optional.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAttrConfig {
    pub name: String,
    #[serde(rename = "type", default)]
    pub ty: CustomType,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default)]
    pub case_exact: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub uniqueness: Uniqueness,
    #[serde(default)]
    pub description: String,
}

/// The RFC 7643 §2.3 types a custom attribute may have (complex and binary are not offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum CustomType {
    #[default]
    #[serde(rename = "string")]
    String,
    #[serde(rename = "boolean")]
    Boolean,
    #[serde(rename = "integer")]
    Integer,
    #[serde(rename = "dateTime", alias = "datetime")]
    DateTime,
    #[serde(rename = "reference")]
    Reference,
}

/// RFC 7643 §2.2 `uniqueness`; "global" is held as "server" (scimd sees one tenant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uniqueness {
    #[default]
    None,
    Server,
    Global,
}

impl CustomAttrConfig {
    pub fn unique(&self) -> bool {
        self.uniqueness != Uniqueness::None
    }
}

/// What `scim::schema` made of a settings' declarations, kept with the settings so that a
/// request finds it without looking it up (type-erased: the tenant layer does not know the
/// catalogue's types). A copy of the settings starts without it.
#[derive(Default)]
pub struct CatalogueSlot(std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>);

impl CatalogueSlot {
    /// The value kept here, made by `make` the first time.
    pub fn get_or_init<T: Copy + Send + Sync + 'static>(&self, make: impl FnOnce() -> T) -> Option<T> {
        self.0.get_or_init(|| Box::new(make())).downcast_ref::<T>().copied()
    }
}

impl Clone for CatalogueSlot {
    fn clone(&self) -> Self {
        CatalogueSlot::default()
    }
}

impl std::fmt::Debug for CatalogueSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogueSlot")
    }
}

/// RFC 7643 §2.1 ATTRNAME: ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA.
fn is_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64
}

fn is_urn(urn: &str) -> bool {
    urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
        && urn.len() <= 200
        && !urn.ends_with(':')
        && urn.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '_'))
}

/// Whether `a` names `b` or a path under it (`a:…`), case-insensitively: two such URNs
/// could not be told apart in an attribute path.
fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || a.starts_with(&format!("{b}:")) || b.starts_with(&format!("{a}:"))
}

/// Checks the declarations: URNs well formed and distinct from each other and from the
/// schemas scimd has, attribute names as RFC 7643 allows and distinct, limits held.
pub(super) fn checked(extensions: Vec<ExtensionConfig>) -> Result<Vec<ExtensionConfig>, String> {
    if extensions.len() > MAX_EXTENSIONS {
        return Err(format!("extension: at most {MAX_EXTENSIONS} extensions"));
    }
    let total: usize = extensions.iter().map(|e| e.attributes.len()).sum();
    if total > MAX_CUSTOM_ATTRIBUTES {
        return Err(format!("extension: {total} attributes declared; at most {MAX_CUSTOM_ATTRIBUTES}"));
    }
    for (i, ext) in extensions.iter().enumerate() {
        if !is_urn(&ext.urn) {
            return Err(format!("extension: {:?} is not a schema URN (urn:…, letters, digits, ':', '.', '-', '_')", ext.urn));
        }
        if let Some(builtin) = [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA, SCIMD_SCHEMA].into_iter().find(|b| overlaps(&ext.urn, b)) {
            return Err(format!("extension: {:?} clashes with scimd's own schema {builtin}", ext.urn));
        }
        if let Some(other) = extensions[..i].iter().find(|o| overlaps(&ext.urn, &o.urn)) {
            return Err(format!("extension: {:?} clashes with {:?}", ext.urn, other.urn));
        }
        // No attributes is allowed: the URN stays accepted in `schemas` while an IdP that
        // still sends it is reconfigured.
        for (j, attr) in ext.attributes.iter().enumerate() {
            if !is_attr_name(&attr.name) {
                return Err(format!("extension {}: {:?} is not an attribute name (a letter, then letters, digits, '-', '_'; at most 64)", ext.urn, attr.name));
            }
            if ext.attributes[..j].iter().any(|o| o.name.eq_ignore_ascii_case(&attr.name)) {
                return Err(format!("extension {}: {} is declared twice", ext.urn, attr.name));
            }
            if attr.unique() && attr.multi_valued {
                return Err(format!("extension {}: {} cannot be both multi-valued and unique", ext.urn, attr.name));
            }
            if attr.description.len() > 1024 || ext.description.len() > 1024 {
                return Err(format!("extension {}: a description is longer than 1024 bytes", ext.urn));
            }
        }
    }
    Ok(extensions)
}

#[cfg(test)]
mod tests {
    use super::super::TenantSettings;

    fn parse(extra: &str) -> Result<TenantSettings, String> {
        TenantSettings::parse(extra)
    }

    #[test]
    fn declarations_parse_and_bad_ones_are_refused_with_the_reason() {
        let ok = parse(
            r#"
[[extension]]
urn = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
[[extension.attributes]]
name = "badge"
uniqueness = "server"
[[extension.attributes]]
name = "clearance"
type = "integer"
[[extension.attributes]]
name = "skills"
multi_valued = true
"#,
        )
        .expect("valid");
        assert_eq!(ok.extensions[0].attributes.len(), 3);
        let refused = [
            ("[[extension]]\nurn = \"acme\"\n[[extension.attributes]]\nname = \"a\"", "not a schema URN"),
            ("[[extension]]\nurn = \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\"\n[[extension.attributes]]\nname = \"a\"", "clashes"),
            ("[[extension]]\nurn = \"urn:ietf:params:scim:schemas:core:2.0:User:x\"\n[[extension.attributes]]\nname = \"a\"", "clashes"),
            ("[[extension]]\nurn = \"urn:x:y\"\n[[extension.attributes]]\nname = \"1a\"", "not an attribute name"),
            ("[[extension]]\nurn = \"urn:x:y\"\n[[extension.attributes]]\nname = \"a\"\n[[extension.attributes]]\nname = \"A\"", "twice"),
            ("[[extension]]\nurn = \"urn:x:y\"\n[[extension.attributes]]\nname = \"a\"\nmulti_valued = true\nuniqueness = \"server\"", "multi-valued and unique"),
            ("[[extension]]\nurn = \"urn:x:y\"\n[[extension.attributes]]\nname = \"a\"\ntype = \"complex\"", "unknown variant"),
            ("[[extension]]\nurn = \"urn:x:y\"\n[[extension.attributes]]\nname = \"a\"\n[[extension]]\nurn = \"URN:X:Y\"\n[[extension.attributes]]\nname = \"b\"", "clashes"),
        ];
        let many: String = (0..=super::MAX_CUSTOM_ATTRIBUTES).map(|i| format!("[[extension.attributes]]\nname = \"a{i}\"\n")).collect();
        let nine: String = (0..9).map(|i| format!("[[extension]]\nurn = \"urn:x:{i}\"\n[[extension.attributes]]\nname = \"a\"\n")).collect();
        let many = format!("[[extension]]\nurn = \"urn:x:y\"\n{many}");
        let refused = refused.into_iter().chain([(many.as_str(), "at most 100"), (nine.as_str(), "at most 8 extensions")]);
        for (text, why) in refused {
            let e = parse(text).map(|_| ()).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
