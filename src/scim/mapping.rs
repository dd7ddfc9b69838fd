//! A tenant's mapping rules (`[mapping]` in tenant.toml, issue 23): declarative changes to
//! a user's canonical document before it is stored — trim, lower-case, copy one attribute
//! onto another, derive `displayName` from the name parts — applied after a POST or PUT is
//! decoded and after a PATCH's operations, so every way in gets the same result. A rule
//! whose path names no attribute (or a read-only one) does nothing; `scimd check` says so.

use serde_json::{Map, Value};

use super::resource::Attrs;
use super::schema::{self, Catalogue, ResolvedPath};
use crate::tenant::{CopyWhen, MappingConfig};

/// A path of the rules resolved, if it names a writable user attribute holding text
/// (a string or a reference; never a boolean, a number or a complex value).
fn resolve(cat: Catalogue, path: &str) -> Option<ResolvedPath> {
    schema::resolve_path(cat, path).filter(|rp| {
        let leaf = rp.sub.unwrap_or(rp.attr);
        !rp.attr.is_read_only()
            && !leaf.is_read_only()
            && rp.extension != Some(schema::SCIMD_SCHEMA)
            && rp.attr.name != "id"
            && matches!(leaf.ty, crate::model::AttrType::String | crate::model::AttrType::Reference)
            // A multi-valued custom attribute of plain strings has no element to write into.
            && !(rp.attr.multi && rp.attr.ty != crate::model::AttrType::Complex)
    })
}

/// Every path of `config` that does not name a writable user attribute (`scimd check`).
pub fn unresolved(cat: Catalogue, config: &MappingConfig) -> Vec<String> {
    let paths = config.trim.iter().filter(|p| *p != "*").chain(&config.lowercase).chain(config.copy.iter().flat_map(|c| [&c.from, &c.to]));
    paths.filter(|p| resolve(cat, p).is_none()).cloned().collect()
}

/// Applies the rules to `doc`; returns the rules that changed something, in words. Copies
/// run first, so what they copy is trimmed and lower-cased like the rest, and applying the
/// rules again changes nothing (a sync that repeats itself records no change).
pub fn apply(cat: Catalogue, config: &MappingConfig, doc: &mut Attrs) -> Vec<String> {
    let mut applied = Vec::new();
    for rule in &config.copy {
        let (Some(from), Some(to)) = (resolve(cat, &rule.from), resolve(cat, &rule.to)) else { continue };
        let Some(value) = read(doc, &from) else { continue };
        if write(doc, &to, value, rule.when) {
            applied.push(format!("copy {} to {}", rule.from, rule.to));
        }
    }
    for path in &config.trim {
        let changed = if path == "*" { trim_all(doc) } else { resolve(cat, path).is_some_and(|rp| edit_strings(doc, &rp, |s| s.trim().to_string())) };
        if changed {
            applied.push(format!("trim {path}"));
        }
    }
    for path in &config.lowercase {
        if resolve(cat, path).is_some_and(|rp| edit_strings(doc, &rp, str::to_lowercase)) {
            applied.push(format!("lowercase {path}"));
        }
    }
    if config.display_name_from_name && derive_display_name(doc) {
        applied.push("displayName from name".into());
    }
    applied
}

/// The object holding `rp`'s attribute: the document, or its extension's object.
fn container<'a>(doc: &'a mut Attrs, rp: &ResolvedPath, create: bool) -> Option<&'a mut Map<String, Value>> {
    match rp.extension {
        None => Some(doc),
        Some(urn) => {
            if create {
                doc.entry(urn).or_insert_with(|| Value::Object(Map::new()));
            }
            doc.get_mut(urn)?.as_object_mut()
        }
    }
}

/// Rewrites each string value at `rp` (every element's, for a multi-valued attribute).
fn edit_strings(doc: &mut Attrs, rp: &ResolvedPath, f: impl Fn(&str) -> String) -> bool {
    let Some(holder) = container(doc, rp, false) else { return false };
    let Some(value) = holder.get_mut(rp.attr.name) else { return false };
    let mut changed = false;
    let mut edit = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            let new = f(s);
            if new != s {
                *v = Value::String(new);
                changed = true;
            }
        }
    };
    let sub = rp.sub.map(|s| s.name);
    match (value, sub) {
        (Value::Array(items), Some(sub)) => items.iter_mut().filter_map(|i| i.get_mut(sub)).for_each(&mut edit),
        (Value::Array(items), None) => items.iter_mut().for_each(&mut edit),
        (v, Some(sub)) => {
            if let Some(inner) = v.get_mut(sub) {
                edit(inner);
            }
        }
        (v, None) => edit(v),
    }
    changed
}

fn trim_all(doc: &mut Attrs) -> bool {
    fn walk(v: &mut Value) -> bool {
        match v {
            Value::String(s) if s.trim() != s => {
                *s = s.trim().to_string();
                true
            }
            Value::Array(items) => items.iter_mut().fold(false, |c, i| walk(i) | c),
            Value::Object(map) => map.values_mut().fold(false, |c, i| walk(i) | c),
            _ => false,
        }
    }
    doc.values_mut().fold(false, |c, v| walk(v) | c)
}

/// The string at `rp`: of a multi-valued attribute, the primary element's, else the first's.
fn read(doc: &mut Attrs, rp: &ResolvedPath) -> Option<String> {
    let holder = container(doc, rp, false)?;
    let value = holder.get(rp.attr.name)?;
    let chosen = match value {
        Value::Array(items) => items.iter().find(|i| i.get("primary") == Some(&Value::Bool(true))).or_else(|| items.first())?,
        v => v,
    };
    let leaf = match rp.sub {
        Some(sub) => chosen.get(sub.name)?,
        None => chosen,
    };
    leaf.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Writes `value` at `rp` (`Absent`: only where there is none). A multi-valued target gets
/// one primary element when it has none; `Always` rewrites its primary (else first) one.
fn write(doc: &mut Attrs, rp: &ResolvedPath, value: String, when: CopyWhen) -> bool {
    let Some(holder) = container(doc, rp, true) else { return false };
    let name = rp.attr.name;
    match (rp.attr.multi, rp.sub) {
        (true, Some(sub)) => {
            let items = holder.get_mut(name).and_then(Value::as_array_mut).filter(|a| !a.is_empty());
            match (items, when) {
                (None, _) => {
                    let mut item = Map::new();
                    item.insert(sub.name.into(), Value::String(value));
                    item.insert("primary".into(), Value::Bool(true));
                    holder.insert(name.into(), Value::Array(vec![Value::Object(item)]));
                    true
                }
                (Some(_), CopyWhen::Absent) => false,
                (Some(items), CopyWhen::Always) => {
                    let at = items.iter().position(|i| i.get("primary") == Some(&Value::Bool(true))).unwrap_or(0);
                    match items[at].as_object_mut() {
                        Some(item) if item.get(sub.name).and_then(Value::as_str) != Some(value.as_str()) => {
                            item.insert(sub.name.into(), Value::String(value));
                            true
                        }
                        _ => false,
                    }
                }
            }
        }
        (true, None) => false,
        (false, Some(sub)) => {
            let parent = holder.entry(name).or_insert_with(|| Value::Object(Map::new()));
            let Some(parent) = parent.as_object_mut() else { return false };
            set(parent, sub.name, value, when)
        }
        (false, None) => set(holder, name, value, when),
    }
}

fn set(holder: &mut Map<String, Value>, key: &str, value: String, when: CopyWhen) -> bool {
    let present = holder.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    if present == Some(value.as_str()) || (when == CopyWhen::Absent && present.is_some()) {
        return false;
    }
    holder.insert(key.into(), Value::String(value));
    true
}

fn derive_display_name(doc: &mut Attrs) -> bool {
    if doc.get("displayName").and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty()) {
        return false;
    }
    let name = doc.get("name");
    let part = |k: &str| name.and_then(|n| n.get(k)).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let derived = match part("formatted") {
        Some(formatted) => formatted.to_string(),
        None => [part("givenName"), part("familyName")].into_iter().flatten().collect::<Vec<_>>().join(" "),
    };
    if derived.is_empty() {
        return false;
    }
    doc.insert("displayName".into(), Value::String(derived));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: Catalogue = Catalogue::plain(crate::model::ResourceKind::User);
    use crate::tenant::CopyRule;
    use serde_json::json;

    fn doc(v: Value) -> Attrs {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rules_in_order() {
        let config = MappingConfig {
            trim: vec!["*".into()],
            lowercase: vec!["userName".into(), "emails.value".into()],
            copy: vec![CopyRule { from: "userName".into(), to: "emails.value".into(), when: CopyWhen::Absent }],
            display_name_from_name: true,
        };
        let mut d = doc(json!({"userName": " Ann@Corp.COM ", "name": {"givenName": "Ann ", "familyName": "Lee"}}));
        let applied = apply(U, &config, &mut d);
        assert_eq!(d["userName"], "ann@corp.com");
        assert_eq!(d["emails"], json!([{"value": "ann@corp.com", "primary": true}]));
        assert_eq!(d["displayName"], "Ann Lee");
        assert_eq!(applied, ["copy userName to emails.value", "trim *", "lowercase userName", "lowercase emails.value", "displayName from name"]);
        // Applied again: nothing left to change.
        assert!(apply(U, &config, &mut d).is_empty());
        // The copy is normalised like the rest: lower-cased even when only the target is.
        let only_target = MappingConfig { lowercase: vec!["emails.value".into()], ..config.clone() };
        let mut d = doc(json!({"userName": "Bo@Corp.com"}));
        apply(U, &only_target, &mut d);
        assert_eq!(d["emails"][0]["value"], "bo@corp.com");
        assert!(apply(U, &only_target, &mut d).is_empty(), "idempotent");
        // Only text: a copy onto a boolean or a complex attribute is refused.
        let typed = MappingConfig { copy: vec![CopyRule { from: "userName".into(), to: "active".into(), when: CopyWhen::Always }, CopyRule { from: "userName".into(), to: "name".into(), when: CopyWhen::Always }], ..MappingConfig::default() };
        assert_eq!(unresolved(U, &typed), ["active", "name"]);
        // An email already there is kept (`absent`), and lower-cased.
        let mut d = doc(json!({"userName": "ann@corp.com", "emails": [{"value": "Ann.Lee@Corp.com", "primary": true}]}));
        apply(U, &config, &mut d);
        assert_eq!(d["emails"][0]["value"], "ann.lee@corp.com");
    }

    #[test]
    fn extension_paths_and_unknown_ones() {
        let config = MappingConfig {
            copy: vec![
                CopyRule { from: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber".into(), to: "externalId".into(), when: CopyWhen::Always },
                CopyRule { from: "userName".into(), to: "meta.created".into(), when: CopyWhen::Always },
            ],
            ..MappingConfig::default()
        };
        assert_eq!(unresolved(U, &config), ["meta.created"]);
        let mut d = doc(json!({"userName": "a", "externalId": "old", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701"}}));
        assert_eq!(apply(U, &config, &mut d).len(), 1);
        assert_eq!(d["externalId"], "701");
    }
}
