//! Group service functions. Membership changes are computed as explicit add/remove
//! lists and applied row by row, never as a rewrite of the member list.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::patch::{self, OpKind};
use super::resource::{self, Attrs, StoredResource};
use super::schema::{self, ResourceKind};
use super::{IfMatch, Principal, ScimError};
use crate::store::events::{self, Action};
use crate::store::{groups, Store, StoreResult};

const KIND: ResourceKind = ResourceKind::Group;

/// What a request does to the member list.
#[derive(Debug, Default)]
struct MemberChanges {
    replace_all: Option<Vec<String>>,
    add: Vec<String>,
    remove: Vec<String>,
    remove_all: bool,
}

fn is_members(attr: &str) -> bool {
    schema::resolve_path(KIND, attr).is_some_and(|rp| rp.attr.name == "members")
}

/// The member ids of a POST/PUT body, read from the raw body so that a member without
/// a `value` is an error rather than silently dropped. Removes `members` from `doc`.
fn take_members(doc: &mut Attrs, body: &Value) -> Result<Vec<String>, ScimError> {
    doc.remove("members");
    let raw = body.as_object().and_then(|o| o.iter().find(|(k, _)| is_members(k)).map(|(_, v)| v));
    patch::member_ids(raw)
}

fn apply_members(conn: &rusqlite::Connection, group_pk: i64, group_id: &str, changes: &MemberChanges, actor: &str, now: &str) -> StoreResult<bool> {
    let mut changed = false;
    let mut record = |action: Action, member: &str| -> StoreResult<()> {
        changed = true;
        let detail = json!({"group": group_id, "member": member});
        events::record(conn, now, actor, action, "Membership", &format!("{group_id}:{member}"), &detail)
    };
    let mut to_add: Vec<&String> = changes.add.iter().collect();
    let mut to_remove: Vec<String> = changes.remove.clone();
    if changes.remove_all || changes.replace_all.is_some() {
        let current = groups::member_ids(conn, group_pk)?;
        let wanted: HashSet<&String> = changes.replace_all.iter().flatten().collect();
        to_remove.extend(current.iter().filter(|id| !wanted.contains(id)).cloned());
        if let Some(all) = &changes.replace_all {
            to_add.extend(all.iter());
        }
    }
    for id in to_remove {
        // Removing a member that is not there (or not a user) changes nothing.
        if let Ok(user_pk) = groups::member_pk(conn, &id) {
            if groups::remove_member(conn, group_pk, user_pk)? {
                record(Action::Delete, &id)?;
            }
        }
    }
    for id in to_add {
        let user_pk = groups::member_pk(conn, id)?;
        if groups::add_member(conn, group_pk, user_pk)? {
            record(Action::Create, id)?;
        }
    }
    Ok(changed)
}

pub async fn create(store: &Store, who: &Principal, body: &Value, now: String) -> Result<StoredResource, ScimError> {
    let mut doc = resource::decode(KIND, body)?;
    let members = take_members(&mut doc, body)?;
    let actor = who.user_name.clone();
    Ok(store
        .write(move |conn| {
            let (pk, id) = groups::insert(conn, &doc, &now)?;
            events::record(conn, &now, &actor, Action::Create, "Group", &id, &json!({"displayName": doc.get("displayName")}))?;
            let changes = MemberChanges { add: members, ..Default::default() };
            apply_members(conn, pk, &id, &changes, &actor, &now)?;
            groups::get(conn, &id, true)
        })
        .await?)
}

pub async fn get(store: &Store, id: &str, with_members: bool) -> Result<StoredResource, ScimError> {
    let id = id.to_string();
    Ok(store.read(move |conn| groups::get(conn, &id, with_members)).await?)
}

pub async fn replace(store: &Store, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<StoredResource, ScimError> {
    let mut doc = resource::decode(KIND, body)?;
    let members = take_members(&mut doc, body)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    Ok(store
        .write(move |conn| {
            let pk = groups::pk_of(conn, &id)?;
            let old = groups::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            groups::update(conn, pk, &doc, &now)?;
            let changes = MemberChanges { replace_all: Some(members), ..Default::default() };
            apply_members(conn, pk, &id, &changes, &actor, &now)?;
            record_update(conn, &id, &old.attrs, &doc, &actor, &now)?;
            groups::get(conn, &id, true)
        })
        .await?)
}

fn record_update(conn: &rusqlite::Connection, id: &str, old: &Attrs, new: &Attrs, actor: &str, now: &str) -> StoreResult<()> {
    let changed: Vec<&str> = ["displayName", "externalId"].into_iter().filter(|k| old.get(*k) != new.get(*k)).collect();
    if changed.is_empty() {
        return Ok(());
    }
    events::record(conn, now, actor, Action::Update, "Group", id, &json!({"changed": changed}))
}

/// Sorts PATCH operations into member changes and document operations.
fn split_ops(ops: Vec<patch::PatchOperation>) -> Result<(MemberChanges, Vec<patch::PatchOperation>), ScimError> {
    let mut members = MemberChanges::default();
    let mut rest = Vec::new();
    for mut op in ops {
        match &op.path {
            Some(path) if is_members(&path.attr) => match (op.op, &path.filter) {
                (OpKind::Remove, Some(expr)) => members.remove.extend(patch::filter_member_ids(expr)?),
                (OpKind::Remove, None) if op.value.as_ref().is_some_and(|v| !v.is_null()) => {
                    members.remove.extend(patch::member_ids(op.value.as_ref())?)
                }
                (OpKind::Remove, None) => members.remove_all = true,
                (OpKind::Add, None) => members.add.extend(patch::member_ids(op.value.as_ref())?),
                (OpKind::Replace, None) => members.replace_all = Some(patch::member_ids(op.value.as_ref())?),
                (_, Some(_)) => return Err(ScimError::invalid_path("members can be filtered only to remove them")),
            },
            Some(_) => rest.push(op),
            None => {
                // A path-less value may carry members next to other attributes.
                if let Some(Value::Object(obj)) = &mut op.value {
                    let key = obj.keys().find(|k| is_members(k)).cloned();
                    if let Some(key) = key {
                        let ids = patch::member_ids(obj.remove(&key).as_ref())?;
                        match op.op {
                            OpKind::Replace => members.replace_all = Some(ids),
                            _ => members.add.extend(ids),
                        }
                    }
                }
                rest.push(op);
            }
        }
    }
    Ok((members, rest))
}

/// Applies a PATCH. Returns nothing: the response is 204 and the member list is never loaded.
pub async fn patch(store: &Store, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<(), ScimError> {
    let (members, ops) = split_ops(patch::parse(body)?)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    store
        .write(move |conn| {
            let pk = groups::pk_of(conn, &id)?;
            let old = groups::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            let mut doc = old.attrs.clone();
            for op in &ops {
                if let Err(e) = patch::apply(KIND, &mut doc, op) {
                    return Ok(Err(e));
                }
            }
            if let Err(e) = resource::check_required(KIND, &doc) {
                return Ok(Err(e));
            }
            let members_changed = apply_members(conn, pk, &id, &members, &actor, &now)?;
            if members_changed || doc != old.attrs {
                groups::update(conn, pk, &doc, &now)?;
                record_update(conn, &id, &old.attrs, &doc, &actor, &now)?;
            }
            Ok(Ok(()))
        })
        .await?
}

pub async fn delete(store: &Store, who: &Principal, id: &str, if_match: Option<IfMatch>, now: String) -> Result<(), ScimError> {
    let (id, actor) = (id.to_string(), who.user_name.clone());
    store
        .write(move |conn| {
            let old = groups::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            groups::delete(conn, &id)?;
            events::record(conn, &now, &actor, Action::Delete, "Group", &id, &json!({"displayName": old.attrs.get("displayName")}))
        })
        .await?;
    Ok(())
}
