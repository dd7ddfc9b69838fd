//! User service functions: validate, compute the new document, and persist it together
//! with its activity-log event in one write.

use serde_json::{json, Value};

use super::resource::{self, Attrs, StoredResource};
use super::schema::ResourceKind;
use super::{patch, IfMatch, Principal, ScimError};
use crate::store::events::{self, Action};
use crate::store::{users, Store};

const KIND: ResourceKind = ResourceKind::User;

fn check_user_name(doc: &Attrs) -> Result<(), ScimError> {
    match doc.get("userName").and_then(Value::as_str) {
        Some(name) if name.len() > 512 => Err(ScimError::invalid_value("userName is longer than 512 characters")),
        Some(name) if name.trim() != name => Err(ScimError::invalid_value("userName has leading or trailing spaces")),
        _ => Ok(()),
    }
}

fn is_active(doc: &Attrs) -> bool {
    doc.get("active").and_then(Value::as_bool).unwrap_or(true)
}

/// The action and detail for an update: which attributes changed, and whether it was a
/// (de)activation.
fn update_event(old: &Attrs, new: &Attrs) -> (Action, Value) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).filter(|k| *k != "groups").collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<&String> = keys.into_iter().filter(|k| old.get(*k) != new.get(*k)).collect();
    let action = match (is_active(old), is_active(new)) {
        (true, false) => Action::Deactivate,
        (false, true) => Action::Reactivate,
        _ => Action::Update,
    };
    (action, json!({ "changed": changed }))
}

pub async fn create(store: &Store, who: &Principal, body: &Value, now: String) -> Result<StoredResource, ScimError> {
    let doc = resource::decode(KIND, body)?;
    check_user_name(&doc)?;
    let actor = who.user_name.clone();
    let res = store
        .write(move |conn| {
            let res = users::insert(conn, &doc, None, &now)?;
            let detail = json!({"userName": doc.get("userName")});
            events::record(conn, &now, &actor, Action::Create, "User", &res.id, &detail)?;
            Ok(res)
        })
        .await?;
    log::info!(target: "scimd::scim", "created user {}", res.id);
    Ok(res)
}

pub async fn get(store: &Store, id: &str, with_groups: bool) -> Result<StoredResource, ScimError> {
    let id = id.to_string();
    Ok(store.read(move |conn| users::get(conn, &id, with_groups)).await?)
}

/// Replaces the user with `new_doc`, recording the event; shared by PUT and PATCH.
fn replace_in_tx(
    conn: &rusqlite::Connection,
    id: &str,
    old: &Attrs,
    new_doc: &Attrs,
    actor: &str,
    now: &str,
) -> crate::store::StoreResult<StoredResource> {
    let res = users::replace(conn, id, new_doc, now)?;
    let (action, detail) = update_event(old, &res.attrs);
    events::record(conn, now, actor, action, "User", id, &detail)?;
    Ok(res)
}

pub async fn replace(store: &Store, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<StoredResource, ScimError> {
    let doc = resource::decode(KIND, body)?;
    check_user_name(&doc)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    Ok(store
        .write(move |conn| {
            let old = users::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            replace_in_tx(conn, &id, &old.attrs, &doc, &actor, &now)
        })
        .await?)
}

pub async fn patch(store: &Store, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<StoredResource, ScimError> {
    let ops = patch::parse(body)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    // Read, apply and write in the writer's transaction: concurrent PATCHes of one user
    // cannot interleave, and a failing operation leaves nothing behind.
    let outcome = store
        .write(move |conn| {
            let old = users::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            let mut doc = old.attrs.clone();
            for op in &ops {
                if let Err(e) = patch::apply(KIND, &mut doc, op) {
                    return Ok(Err(e));
                }
            }
            if let Err(e) = resource::check_required(KIND, &doc).and_then(|_| check_user_name(&doc)) {
                return Ok(Err(e));
            }
            if doc == old.attrs {
                return Ok(Ok(users::get(conn, &id, true)?));
            }
            Ok(Ok(replace_in_tx(conn, &id, &old.attrs, &doc, &actor, &now)?))
        })
        .await?;
    outcome
}

pub async fn delete(store: &Store, who: &Principal, id: &str, if_match: Option<IfMatch>, now: String) -> Result<(), ScimError> {
    let (id, actor) = (id.to_string(), who.user_name.clone());
    store
        .write(move |conn| {
            let old = users::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            users::delete(conn, &id)?;
            let detail = json!({"userName": old.attrs.get("userName")});
            events::record(conn, &now, &actor, Action::Delete, "User", &id, &detail)
        })
        .await?;
    Ok(())
}
