//! Rendering a stored resource as SCIM JSON — `schemas`, `id`, its attributes, `meta` —
//! with `attributes`/`excludedAttributes` projection (RFC 7644 §3.4.2.5).
//!
//! `Rendered` serialises straight from the stored document: a value is copied only when
//! the answer differs from it (a reference gains `$ref`, a projection drops sub-attributes).
//! Every response of one resource, and every GET, goes through it; building a `Value` and
//! dropping it again cost as much as serialising it.

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use super::resource::{fits_declared, fits_raw};
use super::schema::{self, AttrDef, Catalogue, ResolvedPath, Returned};
use crate::model::{CustomText, RawObject, StoredResource};

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5), resolved against the catalogue.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    include: Option<Vec<ResolvedPath>>,
    exclude: Vec<ResolvedPath>,
}

impl Projection {
    pub fn parse(cat: Catalogue, attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        let list = |text: &str| -> Vec<ResolvedPath> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .filter_map(|p| schema::resolve_path(cat, p))
                .collect()
        };
        let include = attributes.map(list).filter(|l| !l.is_empty());
        let exclude = excluded.map(list).unwrap_or_default();
        Projection { include, exclude }
    }

    /// Whether an attribute (core or extension) is wanted at all. Used by the store to
    /// skip loading what is not returned (e.g. a group's members).
    pub fn wants(&self, extension: Option<&str>, attr: &AttrDef) -> bool {
        if attr.returned == Returned::Always {
            return true;
        }
        if attr.returned == Returned::Never {
            return false;
        }
        let names = |p: &ResolvedPath| p.extension == extension && std::ptr::eq(p.attr, attr);
        if self.exclude.iter().any(|p| names(p) && p.sub.is_none()) {
            return false;
        }
        match &self.include {
            Some(list) => list.iter().any(names),
            None => attr.returned != Returned::Request,
        }
    }

    /// Whether `filter_subs` may change an attribute's value: some of its sub-attributes
    /// were asked for (and not the whole attribute), or some excluded. Without a projection,
    /// never: the stored value is rendered as it is, not copied.
    fn trims(&self, extension: Option<&str>, attr: &AttrDef) -> bool {
        let same = |p: &ResolvedPath| p.extension == extension && std::ptr::eq(p.attr, attr);
        let keeps_some = self.include.as_ref().is_some_and(|list| !list.iter().any(|p| same(p) && p.sub.is_none()));
        keeps_some || self.exclude.iter().any(|p| same(p) && p.sub.is_some())
    }

    /// Sub-attributes to keep for an attribute, when only some were asked for.
    fn filter_subs(&self, extension: Option<&str>, attr: &AttrDef, value: &mut Value) {
        let same = |p: &ResolvedPath| p.extension == extension && std::ptr::eq(p.attr, attr);
        let keep: Option<Vec<&str>> = self.include.as_ref().and_then(|list| {
            if list.iter().any(|p| same(p) && p.sub.is_none()) {
                return None;
            }
            Some(list.iter().filter(|p| same(p)).filter_map(|p| p.sub.map(|s| s.name)).collect())
        });
        let drop: Vec<&str> = self.exclude.iter().filter(|p| same(p)).filter_map(|p| p.sub.map(|s| s.name)).collect();
        let apply = |obj: &mut Map<String, Value>| {
            if let Some(keep) = &keep {
                obj.retain(|k, _| keep.contains(&k.as_str()));
            }
            obj.retain(|k, _| !drop.contains(&k.as_str()));
        };
        match value {
            Value::Object(obj) => apply(obj),
            Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(apply),
            _ => {}
        }
    }
}

/// A stored resource as the SCIM JSON it is answered with (`Serialize`).
pub struct Rendered<'a> {
    cat: Catalogue,
    res: &'a StoredResource,
    base_url: &'a str,
    proj: &'a Projection,
    /// The custom attributes as stored text, when `res` was read without them.
    custom_text: Option<&'a CustomText>,
}

/// Renders a stored resource as a JSON value (a list page holds these).
pub fn render(cat: Catalogue, res: &StoredResource, base_url: &str, proj: &Projection) -> Value {
    serde_json::to_value(Rendered::new(cat, res, base_url, proj)).unwrap_or(Value::Null)
}

impl<'a> Rendered<'a> {
    pub fn new(cat: Catalogue, res: &'a StoredResource, base_url: &'a str, proj: &'a Projection) -> Self {
        Rendered { cat, res, base_url, proj, custom_text: None }
    }

    /// Renders the custom extensions from their stored text (`users::get_unparsed`) rather
    /// than from `res`: each value is checked and written as its JSON token.
    pub fn with_custom_text(self, custom_text: Option<&'a CustomText>) -> Self {
        Rendered { custom_text, ..self }
    }

    /// `meta.location`: the resource's URL.
    pub fn location(&self) -> String {
        format!("{}/{}/{}", self.base_url, self.cat.kind.endpoint(), self.res.id)
    }

    /// An attribute's value as answered, or `None` when it is not: not wanted by the
    /// projection, or a custom value that no longer fits its declaration (a declaration
    /// changed from string to integer leaves text behind, kept but not returned).
    fn shown(&self, extension: Option<&str>, attr: &AttrDef, value: &'a Value, custom: bool) -> Option<Cow<'a, Value>> {
        if custom && !fits_declared(attr, value) || !self.proj.wants(extension, attr) {
            return None;
        }
        let refs = matches!(attr.name, "members" | "groups" | "manager");
        if !refs && !self.proj.trims(extension, attr) {
            return Some(Cow::Borrowed(value));
        }
        let mut v = if refs { with_refs(attr, value.clone(), self.base_url) } else { value.clone() };
        self.proj.filter_subs(extension, attr, &mut v);
        Some(Cow::Owned(v))
    }
}

/// An extension's rendered attributes.
struct Shown<'a>(Vec<(&'static str, ShownValue<'a>)>);

/// A value as answered: from the document, or a custom value's stored JSON token.
enum ShownValue<'a> {
    Value(Cow<'a, Value>),
    Raw(&'a serde_json::value::RawValue),
}

impl Serialize for ShownValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ShownValue::Value(v) => v.serialize(s),
            ShownValue::Raw(raw) => raw.serialize(s),
        }
    }
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

struct Meta<'r, 'a>(&'r Rendered<'a>);

impl Serialize for Meta<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("resourceType", r.cat.kind.name())?;
        map.serialize_entry("created", &r.res.created)?;
        map.serialize_entry("lastModified", &r.res.last_modified)?;
        map.serialize_entry("location", &r.location())?;
        map.serialize_entry("version", &r.res.etag())?;
        map.end()
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, attrs) = (self.cat.kind, &self.res.attrs);
        // Only what the catalogue declares is rendered: a custom attribute removed from
        // tenant.toml keeps its stored value (see `carry_undeclared`) but is not returned.
        // Worked out first: `schemas` names the extensions that have something to show.
        let mut extensions: Vec<(&'static str, Shown<'_>)> = Vec::new();
        // Written by scimd, so an object (`get_unparsed` checked); one that is not shows nothing.
        let custom_text = self.custom_text.and_then(|t| RawObject::parse(&t.0));
        for (urn, declared) in self.cat.extensions() {
            // A custom extension's `declared` are its declarations: `fits` needs no lookup.
            let custom = self.cat.is_custom(urn);
            let shown: Vec<_> = match &custom_text {
                Some(text) if custom => {
                    let Some(stored) = text.get(urn).and_then(|raw| RawObject::parse(raw.get())) else { continue };
                    declared
                        .iter()
                        .filter_map(|attr| Some((attr, stored.get(attr.name)?)))
                        .filter(|(attr, raw)| fits_raw(attr, raw) && self.proj.wants(Some(urn), attr))
                        .map(|(attr, raw)| (attr.name, ShownValue::Raw(raw)))
                        .collect()
                }
                _ => {
                    let Some(stored) = attrs.get(urn).and_then(Value::as_object) else { continue };
                    declared
                        .iter()
                        .filter_map(|attr| Some((attr.name, ShownValue::Value(self.shown(Some(urn), attr, stored.get(attr.name)?, custom)?))))
                        .collect()
                }
            };
            if !shown.is_empty() {
                extensions.push((urn, Shown(shown)));
            }
        }
        let mut map = s.serialize_map(None)?;
        let schemas: Vec<&str> = std::iter::once(kind.core_schema()).chain(extensions.iter().map(|(urn, _)| *urn)).collect();
        map.serialize_entry("schemas", &schemas)?;
        map.serialize_entry("id", &self.res.id)?;
        if self.proj.wants(None, &schema::COMMON_EXTERNAL_ID) {
            if let Some(v) = attrs.get("externalId") {
                map.serialize_entry("externalId", v)?;
            }
        }
        for attr in kind.core_attrs() {
            if let Some(v) = attrs.get(attr.name).and_then(|v| self.shown(None, attr, v, false)) {
                map.serialize_entry(attr.name, &v)?;
            }
        }
        for (urn, ext) in &extensions {
            map.serialize_entry(urn, ext)?;
        }
        map.serialize_entry("meta", &Meta(self))?;
        map.end()
    }
}

/// Adds the `$ref` (and `type`) that references carry, derived from the stored id.
fn with_refs(attr: &AttrDef, mut value: Value, base_url: &str) -> Value {
    let (endpoint, type_value) = match attr.name {
        "members" => ("Users", Some("User")),
        "groups" => ("Groups", Some("direct")),
        "manager" => ("Users", None),
        _ => return value,
    };
    let add = |obj: &mut Map<String, Value>| {
        if let Some(id) = obj.get("value").and_then(Value::as_str) {
            let r = format!("{base_url}/{endpoint}/{id}");
            obj.insert("$ref".into(), Value::String(r));
            if let Some(t) = type_value {
                obj.entry("type").or_insert_with(|| Value::String(t.into()));
            }
        }
    };
    match &mut value {
        Value::Object(obj) => add(obj),
        Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(add),
        _ => {}
    }
    value
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attrs;
    use serde_json::json;

    /// A GET renders custom values from their stored text; what it answers is byte for byte
    /// what rendering the parsed document answers, for values that fit their declarations
    /// and values that no longer do, under projections.
    #[test]
    fn custom_values_render_the_same_from_text_as_parsed() {
        let cat = super::super::schema::custom::example();
        let urn = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";
        let customs = [
            json!({"badge": "b1", "clearance": 3, "contractor": true, "startDate": "2020-01-02T03:04:05.000Z", "homepage": "https://h", "skills": ["x", "y\"z"], "costCode": "C\u{1}\\", "gone": 5}),
            // Left behind by changed declarations: kept, not returned.
            json!({"badge": 7, "clearance": "3", "contractor": "true", "startDate": "2020-02-30T00:00:00.000Z", "skills": "x", "homepage": ["a"], "costCode": null}),
            json!({"clearance": 9_223_372_036_854_775_807u64, "startDate": "2020-01-02T03:04:05+01:00", "skills": [], "contractor": false, "badge": {"a": 1}}),
            json!({"clearance": 18_446_744_073_709_551_615u64, "startDate": "2020-01-02T03:04:05.000\u{5a}", "skills": ["a", 1], "homepage": "\u{e9}"}),
            json!({"clearance": 1.5, "startDate": "\\u0032020-01-02T03:04:05.000Z", "skills": [["a"]]}),
        ];
        let projections = [(None, None), (Some("userName"), None), (Some(&*format!("{urn}:badge,{urn}:skills")), None), (None, Some(&*format!("{urn}:clearance"))), (None, Some(urn))];
        for custom in &customs {
            let mut attrs = json!({"userName": "a@x", "emails": [{"value": "a@x"}]}).as_object().unwrap().clone();
            let text = CustomText(json!({ urn: custom, "urn:x:undeclared:2.0:User": {"a": 1} }).to_string());
            let without = StoredResource { id: "i".into(), attrs: attrs.clone(), created: "c".into(), last_modified: "l".into(), version: 1 };
            attrs.extend(serde_json::from_str::<Attrs>(&text.0).unwrap());
            let parsed = StoredResource { attrs, ..without.clone() };
            for (a, e) in projections {
                let proj = Projection::parse(cat, a, e);
                let want = serde_json::to_string(&Rendered::new(cat, &parsed, "https://h/b", &proj)).unwrap();
                let got = serde_json::to_string(&Rendered::new(cat, &without, "https://h/b", &proj).with_custom_text(Some(&text))).unwrap();
                assert_eq!(got, want, "{custom} {a:?} {e:?}");
            }
        }
        // Sanity: the first document's values are shown, the second's none.
        let shown = |custom: &Value| {
            let text = CustomText(json!({ urn: custom }).to_string());
            let res = StoredResource { id: "i".into(), attrs: Attrs::new(), created: "c".into(), last_modified: "l".into(), version: 1 };
            serde_json::to_value(Rendered::new(cat, &res, "https://h/b", &Projection::default()).with_custom_text(Some(&text))).unwrap()[urn].clone()
        };
        assert_eq!(shown(&customs[0])["skills"], json!(["x", "y\"z"]));
        assert_eq!(shown(&customs[1]), Value::Null);
    }
}
