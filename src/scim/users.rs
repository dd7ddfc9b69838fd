//! User service functions: validate, compute the new document, and persist it together
//! with its activity-log events in one write. The tenant's settings decide soft or hard
//! delete, whether userName must be the email, and how many licence seats there are.

use serde_json::{json, Value};

use super::resource::{self, Attrs, StoredResource};
use super::schema::{Catalogue, ResourceKind};
use super::{patch, IfMatch, Principal, ScimError, ScimErrorKind};
use crate::model::{CustomText, License, ManagedBy, Role};
use crate::store::events::{self, Action};
use crate::store::{users, StoreResult};
use crate::tenant::{DeleteMode, Tenant, TenantSettings};

const KIND: ResourceKind = ResourceKind::User;

fn check_user_name(doc: &Attrs) -> Result<(), ScimError> {
    match doc.get("userName").and_then(Value::as_str) {
        Some(name) if name.len() > 512 => Err(ScimError::invalid_value("userName is longer than 512 characters")),
        Some(name) if name.trim() != name => Err(ScimError::invalid_value("userName has leading or trailing spaces")),
        Some(name) => super::check_name_chars("userName", name),
        None => Ok(()),
    }
}

/// The email a userName must equal: the primary one, else the work one, else the first.
fn chosen_email(doc: &Attrs) -> Option<&str> {
    let emails = doc.get("emails")?.as_array()?;
    emails
        .iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| emails.iter().find(|e| e.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("work"))))
        .or_else(|| emails.first())
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
}

/// `require_username_is_email`: refuse, naming both values, when they differ.
fn check_rules(doc: &Attrs, settings: &TenantSettings) -> Result<(), ScimError> {
    check_user_name(doc)?;
    if !settings.require_username_is_email {
        return Ok(());
    }
    let user_name = doc.get("userName").and_then(Value::as_str).unwrap_or_default();
    match chosen_email(doc) {
        None => Err(ScimError::invalid_value(format!("userName '{user_name}' must equal the user's email, but the user has no email"))),
        // Unicode case, as the mapping's `lowercase` and name comparisons have it.
        Some(email) if email.to_lowercase() != user_name.to_lowercase() => {
            Err(ScimError::invalid_value(format!("userName '{user_name}' must equal the user's email '{email}'")))
        }
        Some(_) => Ok(()),
    }
}

/// Stored users always have `active` (it is never NULL); a document without it is active
/// only when it is a new user's (a server default, RFC 7643 §2.2).
fn is_active(doc: &Attrs) -> bool {
    doc.get("active").and_then(Value::as_bool).unwrap_or(true)
}

/// Before/after values of what changed (never a password: it is not stored).
fn diff(old: &Attrs, new: &Attrs) -> Value {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).filter(|k| *k != "groups" && *k != super::schema::SCIMD_SCHEMA).collect();
    keys.sort();
    keys.dedup();
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    for k in keys.into_iter().filter(|k| old.get(*k) != new.get(*k)) {
        before.insert(k.clone(), old.get(k).cloned().unwrap_or(Value::Null));
        after.insert(k.clone(), new.get(k).cloned().unwrap_or(Value::Null));
    }
    json!({"before": before, "after": after})
}

/// Gives a user the first free seat (Creator, then Creator Float, else none, with a
/// warning event) and records the change.
pub fn assign_seat(conn: &crate::store::Db<'_>, id: &str, settings: &TenantSettings, actor: &str, now: &str) -> StoreResult<License> {
    let current = users::origin_of(conn, id)?.license;
    let license = if users::seats_used(conn, License::Creator, id)? < u64::from(settings.creator) {
        License::Creator
    } else if users::seats_used(conn, License::CreatorFloat, id)? < u64::from(settings.creator_float) {
        License::CreatorFloat
    } else {
        License::None
    };
    if license != current {
        users::set_license(conn, id, license, now)?;
        events::record(conn, now, actor, Action::License, "User", id, &json!({"before": current, "after": license}))?;
    }
    if license == License::None {
        log::warn!(target: "scimd::scim", "user {id} created without a licence: no Creator or Creator Float seat is free");
        events::record(conn, now, actor, Action::License, "User", id, &json!({"warning": "no Creator or Creator Float seat is free"}))?;
    }
    Ok(license)
}

/// Frees the seat of a user that is no longer active.
pub(super) fn free_seat(conn: &crate::store::Db<'_>, id: &str, actor: &str, now: &str) -> StoreResult<()> {
    let current = users::origin_of(conn, id)?.license;
    if current != License::None {
        users::set_license(conn, id, License::None, now)?;
        events::record(conn, now, actor, Action::License, "User", id, &json!({"before": current, "after": License::None}))?;
    }
    Ok(())
}

/// Who writes, when, under which settings, and which mapping rules changed the document.
struct Writer<'a> {
    settings: &'a TenantSettings,
    actor: &'a str,
    now: &'a str,
    mapped: &'a [String],
}

/// A create event's detail (`{"after": …, "mapped": […]}`), serialised from the document
/// itself rather than from a copy of it.
#[derive(serde::Serialize)]
struct Created<'a> {
    after: &'a Attrs,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    mapped: &'a [String],
}

/// An event's detail with the mapping rules that changed the values (the shadow report
/// shows them).
fn with_mapped(mut detail: Value, mapped: &[String]) -> Value {
    if !mapped.is_empty() {
        detail["mapped"] = json!(mapped);
    }
    detail
}

/// Replaces the user with `new_doc` and records what changed: the shared tail of PUT,
/// PATCH, restore and adoption. Activation changes move the licence seat.
/// A document without `active` (a PUT that leaves it out) keeps the stored value.
fn replace_in_tx(conn: &crate::store::Db<'_>, id: &str, old: &Attrs, new_doc: &Attrs, w: &Writer<'_>) -> StoreResult<StoredResource> {
    let Writer { settings, actor, now, mapped } = *w;
    // Custom values tenant.toml no longer declares stay until `scimd tenant drop-attributes`.
    let carried;
    let new_doc = if old.keys().any(|k| super::schema::is_custom_key(k)) {
        let mut doc = new_doc.clone();
        resource::carry_undeclared(Catalogue::of(KIND, settings), old, &mut doc);
        carried = doc;
        &carried
    } else {
        new_doc
    };
    // A user the required_groups policy deactivated stays so while it is in no group that
    // grants access, whatever `active` the IdP sends (Okta's PUT always says true).
    let held;
    let new_doc = if is_active(new_doc) && !is_active(old) && super::access::held_inactive(conn, id, settings)? {
        let mut doc = new_doc.clone();
        doc.insert("active".into(), Value::Bool(false));
        let detail = json!({"skipped": "active", "reason": super::access::REASON, "why": "in no group in policies.required_groups"});
        events::record(conn, now, actor, Action::Ignore, "User", id, &detail)?;
        held = doc;
        &held
    } else {
        new_doc
    };
    let kept;
    let new_doc = match (new_doc.get("active"), old.get("active")) {
        (None, Some(stored)) => {
            let mut doc = new_doc.clone();
            doc.insert("active".into(), stored.clone());
            kept = doc;
            &kept
        }
        _ => new_doc,
    };
    users::replace(conn, id, new_doc, now)?;
    if users::origin_of(conn, id)?.managed_by == ManagedBy::Local {
        // A SCIM write to a local user adopts it: the IdP manages it from now on.
        users::set_managed_by(conn, id, ManagedBy::Idp)?;
        events::record(conn, now, actor, Action::Adopt, "User", id, &json!({"before": ManagedBy::Local, "after": ManagedBy::Idp}))?;
    }
    let action = match (is_active(old), is_active(new_doc)) {
        (true, false) => {
            free_seat(conn, id, actor, now)?;
            Action::Deactivate
        }
        (false, true) => {
            assign_seat(conn, id, settings, actor, now)?;
            Action::Reactivate
        }
        _ => Action::Update,
    };
    let res = users::get_written(conn, id, true, new_doc)?;
    events::record(conn, now, actor, action, "User", id, &with_mapped(diff(old, &res.attrs), mapped))?;
    Ok(res)
}

/// SCIM admin service accounts are the operator's (`scimd admin add`): the IdP they serve
/// must not disable, rename, replace, delete or adopt them, or it could lock itself (or
/// the operator) out. `Some(error)` when `id` is one.
fn service_account_refusal(conn: &crate::store::Db<'_>, id: &str) -> StoreResult<Option<ScimError>> {
    Ok((users::origin_of(conn, id)?.role == Role::OrgAdmin).then(|| {
        ScimError::new(
            ScimErrorKind::Forbidden,
            "this is a SCIM admin service account; only the operator may change it (scimd user ..., scimd admin ...)",
        )
    }))
}

/// POST /Users. A soft-deleted user of the same userName is restored (same id); a local
/// user of the same userName is adopted; otherwise a new user gets a seat.
pub async fn create(tenant: &Tenant, who: &Principal, body: &Value, now: String) -> Result<StoredResource, ScimError> {
    let settings = tenant.settings();
    let cat = Catalogue::of(KIND, &settings);
    let mut doc = super::dialect::decode(settings.dialect, cat, body)?;
    let mapped = super::mapping::apply(cat, &settings.mapping, &mut doc);
    resource::check_custom_required(cat, &doc, None)?;
    check_rules(&doc, &settings)?;
    let actor = who.user_name.clone();
    let res = tenant
        .store
        .try_write(move |conn| {
            let name = doc.get("userName").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut doc = doc;
            doc.entry("active").or_insert(Value::Bool(true));
            let existing = users::find_by_user_name(conn, &name)?;
            if let Some((id, ..)) = &existing {
                if service_account_refusal(conn, id)?.is_some() {
                    return Err(ScimError::new(
                        ScimErrorKind::Uniqueness,
                        format!("userName '{name}' is taken by a SCIM admin service account; the IdP cannot create or adopt it"),
                    ));
                }
            }
            let done = match existing {
                Some((id, true, _)) => {
                    // Restore: same id, history kept, attributes from this POST.
                    let before = users::stored_custom(conn, &id)?;
                    let mut restored = doc.clone();
                    resource::carry_undeclared(cat, &before, &mut restored);
                    users::undelete(conn, &id, &restored)?;
                    // The event compares with the custom values the user had when deleted.
                    let mut old = users::get(conn, &id, false)?;
                    old.attrs.retain(|k, _| !super::schema::is_custom_key(k));
                    old.attrs.extend(before);
                    events::record(conn, &now, &actor, Action::Restore, "User", &id, &json!({"userName": name}))?;
                    let w = Writer { settings: &settings, actor: &actor, now: &now, mapped: &mapped };
                    let mut res = replace_in_tx(conn, &id, &old.attrs, &doc, &w)?;
                    if is_active(&res.attrs) {
                        assign_seat(conn, &id, &settings, &actor, &now)?;
                        res = users::get(conn, &id, true)?;
                    }
                    Ok(res)
                }
                Some((id, false, ManagedBy::Local)) => {
                    let old = users::get(conn, &id, false)?;
                    replace_in_tx(conn, &id, &old.attrs, &doc, &Writer { settings: &settings, actor: &actor, now: &now, mapped: &mapped })
                }
                Some(_) => return Err(ScimError::new(ScimErrorKind::Uniqueness, format!("userName '{name}' is taken by another user"))),
                None => {
                    let id = users::insert(conn, &doc, &users::UserOrigin::idp(License::None), &now)?;
                    events::record(conn, &now, &actor, Action::Create, "User", &id, &Created { after: &doc, mapped: &mapped })?;
                    if is_active(&doc) {
                        assign_seat(conn, &id, &settings, &actor, &now)?;
                    }
                    super::groups::always_assign(conn, &id, &settings, &actor, &now)?;
                    users::get_written_owned(conn, &id, true, doc)
                }
            };
            Ok(done?)
        })
        .await?;
    log::info!(target: "scimd::scim", "tenant {}: created user {}", tenant.id, res.id);
    Ok(res)
}

pub async fn get(tenant: &Tenant, id: &str, with_groups: bool) -> Result<StoredResource, ScimError> {
    let id = id.to_string();
    Ok(tenant.store.read(move |conn| users::get(conn, &id, with_groups)).await?)
}

/// `get` for a GET's answer: the custom attributes stay stored text, which
/// `Rendered::with_custom_text` renders without parsing them into the document.
pub async fn get_to_render(tenant: &Tenant, id: &str, with_groups: bool) -> Result<(StoredResource, Option<CustomText>), ScimError> {
    let id = id.to_string();
    Ok(tenant.store.read(move |conn| users::get_unparsed(conn, &id, with_groups)).await?)
}

pub async fn replace(tenant: &Tenant, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<StoredResource, ScimError> {
    let settings = tenant.settings();
    let cat = Catalogue::of(KIND, &settings);
    let mut doc = super::dialect::decode(settings.dialect, cat, body)?;
    let mapped = super::mapping::apply(cat, &settings.mapping, &mut doc);
    resource::check_custom_required(cat, &doc, None)?;
    check_rules(&doc, &settings)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    tenant
        .store
        .try_write(move |conn| {
            let old = users::get(conn, &id, false)?;
            if let Some(refusal) = service_account_refusal(conn, &id)? {
                return Err(refusal);
            }
            IfMatch::check(if_match.as_ref(), &old)?;
            Ok(replace_in_tx(conn, &id, &old.attrs, &doc, &Writer { settings: &settings, actor: &actor, now: &now, mapped: &mapped })?)
        })
        .await
}

pub async fn patch(tenant: &Tenant, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<StoredResource, ScimError> {
    let settings = tenant.settings();
    let cat = Catalogue::of(KIND, &settings);
    let ops = super::dialect::parse_patch(settings.dialect, cat, body)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    // Read, apply and write in the writer's transaction: concurrent PATCHes of one user
    // cannot interleave, and a failing operation leaves nothing behind.
    tenant
        .store
        .try_write(move |conn| {
            let old = users::get(conn, &id, false)?;
            if let Some(refusal) = service_account_refusal(conn, &id)? {
                return Err(refusal);
            }
            IfMatch::check(if_match.as_ref(), &old)?;
            let mut doc = old.attrs.clone();
            // The read-only scimd extension is not the client's to send back.
            doc.remove(super::schema::SCIMD_SCHEMA);
            for op in &ops {
                // The cap is checked after every operation, so each later operation works
                // on at most the cap's worth of values.
                patch::apply(cat, &mut doc, op).and_then(|_| resource::check_value_counts(cat, &doc))?;
            }
            let mapped = super::mapping::apply(cat, &settings.mapping, &mut doc);
            resource::check_size(&doc)
                .and_then(|_| resource::check_required(KIND, &doc))
                .and_then(|_| resource::check_custom_required(cat, &doc, Some(&old.attrs)))
                .and_then(|_| check_rules(&doc, &settings))?;
            let mut unchanged = old.attrs.clone();
            unchanged.remove(super::schema::SCIMD_SCHEMA);
            if doc == unchanged {
                return Ok(users::get(conn, &id, true)?);
            }
            Ok(replace_in_tx(conn, &id, &old.attrs, &doc, &Writer { settings: &settings, actor: &actor, now: &now, mapped: &mapped })?)
        })
        .await
}

/// DELETE /Users/{id}: soft (deactivate and hide) or hard, as the tenant says. The event
/// keeps what was deleted either way.
pub async fn delete(tenant: &Tenant, who: &Principal, id: &str, if_match: Option<IfMatch>, now: String) -> Result<(), ScimError> {
    let mode = tenant.settings().delete_mode;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    tenant
        .store
        .try_write(move |conn| {
            let old = users::get(conn, &id, true)?;
            if let Some(refusal) = service_account_refusal(conn, &id)? {
                return Err(refusal);
            }
            IfMatch::check(if_match.as_ref(), &old)?;
            match mode {
                DeleteMode::Soft => {
                    free_seat(conn, &id, &actor, &now)?;
                    users::soft_delete(conn, &id, &now)?;
                }
                DeleteMode::Hard => users::delete(conn, &id)?,
            }
            let mode_name = if mode == DeleteMode::Soft { "soft" } else { "hard" };
            events::record(conn, &now, &actor, Action::Delete, "User", &id, &json!({"mode": mode_name, "before": old.attrs}))?;
            Ok(())
        })
        .await
}
