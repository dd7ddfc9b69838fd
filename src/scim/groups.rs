//! Group service functions. Membership changes are computed as explicit add/remove
//! lists and applied row by row, never as a rewrite of the member list, under the
//! tenant's rules: linking on a name match, IdP-only replacement, local users left alone,
//! inactive Basic-auth members leaving, and the group policies.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use log::warn;

use serde_json::{json, Value};

use super::dialect::{self, Leniency};
use super::patch::{self, OpKind};
use super::resource::{self, Attrs, StoredResource};
use super::schema::{self, Catalogue, ResourceKind};
use super::{IfMatch, Principal, ScimError, ScimErrorKind};
use crate::model::{GroupScope, ManagedBy, MembershipSource};
use crate::store::events::{self, Action};
use crate::store::groups::{self, GroupState, NotAMember};
use crate::store::{StoreError, StoreResult};
use crate::tenant::{GroupConflict, Tenant, TenantSettings};

const KIND: ResourceKind = ResourceKind::Group;
/// Groups have no custom attributes: their catalogue is the built-in one.
const CAT: Catalogue = Catalogue::plain(KIND);

/// Member ids skipped because they name no user here (`scimd_members_skipped_total`).
pub static MEMBERS_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Skipped members of one request recorded one event each; the rest in one summary.
const MAX_SKIP_EVENTS: usize = 100;

/// A displayName may not hold control or formatting characters. Surrounding and repeated
/// whitespace is kept as sent but does not make a different name ("sales " is "Sales").
fn check_display_name(doc: &Attrs) -> Result<(), ScimError> {
    match doc.get("displayName").and_then(Value::as_str) {
        Some(name) => super::check_name_chars("displayName", name),
        None => Ok(()),
    }
}

/// What a request does to the member list.
#[derive(Debug, Default)]
struct MemberChanges {
    replace_all: Option<Vec<String>>,
    add: Vec<String>,
    remove: Vec<String>,
    remove_all: bool,
}

impl MemberChanges {
    fn is_empty(&self) -> bool {
        self.replace_all.is_none() && self.add.is_empty() && self.remove.is_empty() && !self.remove_all
    }
}

fn is_members(attr: &str) -> bool {
    schema::resolve_path(CAT, attr).is_some_and(|rp| rp.attr.name == "members")
}

/// The member ids of a POST/PUT body, read from the raw body so that a member without
/// a `value` is an error rather than silently dropped. Removes `members` from `doc`.
fn take_members(doc: &mut Attrs, body: &Value) -> Result<Vec<String>, ScimError> {
    doc.remove("members");
    let raw = body.as_object().and_then(|o| o.iter().find(|(k, _)| is_members(k)).map(|(_, v)| v));
    patch::member_ids(raw)
}

/// One write's context for membership rules.
struct Sync<'a> {
    tenant: &'a str,
    conn: &'a crate::store::Db<'a>,
    group: &'a GroupState,
    settings: &'a TenantSettings,
    actor: &'a str,
    now: &'a str,
}

impl Sync<'_> {
    fn event(&self, action: Action, member: &str, detail: Value) -> StoreResult<()> {
        let id = format!("{}:{member}", self.group.id);
        events::record(self.conn, self.now, self.actor, action, "Membership", &id, &detail)
    }

    /// Applies member changes; returns whether anything changed.
    fn apply(&self, changes: &MemberChanges) -> StoreResult<bool> {
        let (group_pk, name) = (self.group.pk, self.group.display_name.as_str());
        if self.group.ignored && !changes.is_empty() {
            // The group does not take effect: keep it, apply nothing, say so.
            let reason = self.settings.policies.ignore_reason(name).unwrap_or_else(|| "ignored by policy".into());
            let skipped = json!({"add": changes.add, "remove": changes.remove, "replace": changes.replace_all, "remove_all": changes.remove_all});
            events::record(self.conn, self.now, self.actor, Action::Ignore, "Group", &self.group.id, &json!({"reason": reason, "skipped": skipped}))?;
            return Ok(false);
        }
        let mut changed = false;
        let mut to_add: Vec<&String> = changes.add.iter().collect();
        let mut to_remove: Vec<String> = changes.remove.clone();
        if changes.remove_all || changes.replace_all.is_some() {
            // Replacing the list replaces only what the IdP added; local memberships stay.
            let current = groups::idp_member_ids(self.conn, group_pk)?;
            let wanted: HashSet<&String> = changes.replace_all.iter().flatten().collect();
            to_remove.extend(current.iter().filter(|id| !wanted.contains(id)).cloned());
            if let Some(all) = &changes.replace_all {
                to_add.extend(all.iter());
            }
        }
        let protected = self.settings.policies.never_remove(name);
        // Who lost or gained a membership, for the required_groups policy.
        let (mut left, mut joined) = (Vec::new(), Vec::new());
        for id in to_remove {
            // Removing a member that is not there (or not a user) changes nothing.
            // Not a user here: nothing to remove. Any other error fails the request (after a
            // rolled-back transaction, going on would write outside it).
            let Ok((user_pk, managed_by)) = groups::member(self.conn, &id)? else { continue };
            if protected || managed_by == ManagedBy::Local {
                let reason = if protected { "never_remove policy" } else { "local user not managed by the IdP" };
                self.event(Action::Ignore, &id, json!({"skipped": "remove", "reason": reason, "group": name}))?;
                continue;
            }
            // The IdP takes back what it gave: a membership the application made (before the
            // group was linked, or since) stays, whoever manages the user.
            match groups::remove_idp_member(self.conn, group_pk, user_pk)? {
                groups::Removal::Removed => {
                    changed = true;
                    left.push(user_pk);
                    self.event(Action::Delete, &id, json!({"group": self.group.id, "member": id}))?;
                }
                groups::Removal::MadeByTheApplication => {
                    self.event(Action::Ignore, &id, json!({"skipped": "remove", "reason": "membership made by the application", "group": name}))?;
                }
                groups::Removal::NotAMember => {}
            }
        }
        let mut skipped: Vec<(&str, NotAMember)> = Vec::new();
        for id in to_add {
            let (user_pk, managed_by) = match groups::member(self.conn, id)? {
                Ok(member) => member,
                // One stale id must not sink the other 49: the IdP would retry the same
                // request for ever. Skip it, say so, apply the rest.
                Err(why) if dialect::allows(self.settings.dialect, Leniency::UnknownMembers) => {
                    // Each skip is searchable by the member's id; past the first hundred of
                    // one request, one summary event says how many more (a body of 25,000
                    // invented ids must not write 25,000 events).
                    if skipped.len() < MAX_SKIP_EVENTS {
                        self.event(Action::Ignore, id, json!({"skipped": "add", "reason": why.as_str(), "group": name}))?;
                    }
                    skipped.push((id, why));
                    continue;
                }
                Err(why) => return Err(StoreError::Invalid(dialect::refused(Leniency::UnknownMembers, format!("member {id} is {}", why.as_str())).detail)),
            };
            if managed_by == ManagedBy::Local {
                self.event(Action::Ignore, id, json!({"skipped": "add", "reason": "local user not managed by the IdP", "group": name}))?;
                continue;
            }
            if groups::add_member(self.conn, group_pk, user_pk, MembershipSource::Idp)? {
                changed = true;
                joined.push(user_pk);
                self.event(Action::Create, id, json!({"group": self.group.id, "member": id}))?;
            }
        }
        if skipped.len() > MAX_SKIP_EVENTS {
            let detail = json!({"skipped": "add", "reason": "members that are no user here", "count": skipped.len() - MAX_SKIP_EVENTS, "group": name});
            events::record(self.conn, self.now, self.actor, Action::Ignore, "Group", &self.group.id, &detail)?;
        }
        if !skipped.is_empty() {
            MEMBERS_SKIPPED.fetch_add(skipped.len() as u64, Ordering::Relaxed);
            // Ids are the client's text: shortened and stripped of control characters.
            let loggable = |id: &str| id.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect::<String>();
            let shown: Vec<String> = skipped.iter().take(5).map(|(id, why)| format!("{} ({})", loggable(id), why.as_str())).collect();
            let more = if skipped.len() > shown.len() { format!(" and {} more", skipped.len() - shown.len()) } else { String::new() };
            warn!(target: "scimd::scim", "tenant {}: group {}: skipped {} member(s) that are no user here: {}{more}", self.tenant, self.group.id, skipped.len(), shown.join(", "));
        }
        // Inactive Basic-auth members leave an IdP-managed group at its next sync.
        for (user_pk, id) in groups::inactive_basic_members(self.conn, group_pk)? {
            if groups::remove_member(self.conn, group_pk, user_pk)? {
                changed = true;
                self.event(Action::Delete, &id, json!({"group": self.group.id, "member": id, "reason": "inactive Basic-auth user"}))?;
            }
        }
        super::access::after_membership(self.conn, self.settings, &left, &joined, self.actor, self.now)?;
        Ok(changed)
    }
}

/// Re-evaluates the policies for a group's (new) name and records a change of effect.
fn refresh_policy(conn: &crate::store::Db<'_>, group: &mut GroupState, settings: &TenantSettings, actor: &str, now: &str) -> StoreResult<()> {
    let reason = settings.policies.ignore_reason(&group.display_name);
    if reason.is_some() != group.ignored {
        group.ignored = reason.is_some();
        groups::set_flags(conn, group.pk, group.managed_by, group.ignored)?;
        let detail = json!({"ignored": group.ignored, "reason": reason, "group": group.display_name});
        events::record(conn, now, actor, Action::Ignore, "Group", &group.id, &detail)?;
    }
    Ok(())
}

/// `always_assign`: adds a SCIM-provisioned user to the named org-level groups.
pub fn always_assign(conn: &crate::store::Db<'_>, user_id: &str, settings: &TenantSettings, actor: &str, now: &str) -> StoreResult<()> {
    for name in &settings.policies.always_assign {
        match groups::state_by_name(conn, name)? {
            Some(group) if group.scope == GroupScope::Org && !group.ignored => {
                let (user_pk, _) = groups::member_pk(conn, user_id)?;
                if groups::add_member(conn, group.pk, user_pk, MembershipSource::Idp)? {
                    let detail = json!({"group": group.id, "member": user_id, "reason": "always_assign policy"});
                    events::record(conn, now, actor, Action::Create, "Membership", &format!("{}:{user_id}", group.id), &detail)?;
                }
            }
            _ => {
                let detail = json!({"reason": format!("always_assign group {name:?} does not exist or does not take effect"), "member": user_id});
                events::record(conn, now, actor, Action::Ignore, "Membership", user_id, &detail)?;
            }
        }
    }
    Ok(())
}

/// POST /Groups. A name matching an existing org-level group links to it (unless the
/// tenant rejects conflicts): the IdP manages it from now on and it keeps its members.
pub async fn create(tenant: &Tenant, who: &Principal, body: &Value, now: String) -> Result<StoredResource, ScimError> {
    let settings = tenant.settings();
    let mut doc = super::dialect::decode(settings.dialect, CAT, body)?;
    check_display_name(&doc)?;
    let members = take_members(&mut doc, body)?;
    let actor = who.user_name.clone();
    let tenant_id = tenant.id.to_string();
    tenant
        .store
        .try_write(move |conn| {
            let name = doc.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut group = match groups::state_by_name(conn, &name)? {
                Some(existing) if existing.scope != GroupScope::Org || settings.group_conflict == GroupConflict::Reject => {
                    let why = if existing.scope != GroupScope::Org { "a project-level group" } else { "a group, and group_conflict is \"reject\"" };
                    return Err(ScimError::new(ScimErrorKind::Uniqueness, format!("displayName '{name}' is taken by {why}")));
                }
                Some(existing) if existing.managed_by == ManagedBy::Idp => {
                    // The IdP posting a group it already manages again (a retry, a re-push):
                    // not a link, so a group it created stays one it may delete.
                    let old = groups::get(conn, &existing.id, false)?;
                    if let Some(ext) = doc.get("externalId").filter(|e| old.attrs.get("externalId") != Some(*e)) {
                        let mut updated = old.attrs.clone();
                        updated.insert("externalId".into(), ext.clone());
                        groups::update(conn, existing.pk, &updated, &now)?;
                        let detail = json!({"before": {"externalId": old.attrs.get("externalId")}, "after": {"externalId": ext}});
                        events::record(conn, &now, &actor, Action::Update, "Group", &existing.id, &detail)?;
                    }
                    existing
                }
                Some(mut existing) => {
                    let old = groups::get(conn, &existing.id, false)?;
                    let mut linked = old.attrs.clone();
                    if let Some(ext) = doc.get("externalId") {
                        linked.insert("externalId".into(), ext.clone());
                    }
                    groups::update(conn, existing.pk, &linked, &now)?;
                    existing.managed_by = ManagedBy::Idp;
                    groups::set_flags(conn, existing.pk, ManagedBy::Idp, existing.ignored)?;
                    events::record(conn, &now, &actor, Action::Link, "Group", &existing.id, &json!({"displayName": name, "before": old.attrs, "after": linked}))?;
                    existing
                }
                None => {
                    let ignored = settings.policies.ignore_reason(&name);
                    let (pk, id) = groups::insert(conn, &doc, GroupScope::Org, ManagedBy::Idp, ignored.is_some(), &now)?;
                    events::record(conn, &now, &actor, Action::Create, "Group", &id, &json!({"after": doc}))?;
                    if let Some(reason) = ignored {
                        events::record(conn, &now, &actor, Action::Ignore, "Group", &id, &json!({"ignored": true, "reason": reason, "group": name}))?;
                    }
                    GroupState { pk, id, display_name: name.clone(), scope: GroupScope::Org, managed_by: ManagedBy::Idp, ignored: false }
                }
            };
            refresh_policy(conn, &mut group, &settings, &actor, &now)?;
            let changes = MemberChanges { add: members, ..Default::default() };
            Sync { tenant: &tenant_id, conn, group: &group, settings: &settings, actor: &actor, now: &now }.apply(&changes)?;
            Ok(groups::get(conn, &group.id, true)?)
        })
        .await
}

pub async fn get(tenant: &Tenant, id: &str, with_members: bool) -> Result<StoredResource, ScimError> {
    let id = id.to_string();
    let job = move |conn: &crate::store::Db<'_>| groups::get(conn, &id, with_members);
    // The member list grows with the group; without it the read is one indexed row.
    Ok(if with_members { tenant.store.scan(job).await? } else { tenant.store.read(job).await? })
}

/// Writes a group's new attributes and members: the shared tail of PUT and PATCH.
#[allow(clippy::too_many_arguments)]
fn write_group(tenant: &str, conn: &crate::store::Db<'_>, id: &str, old: &Attrs, doc: &Attrs, changes: &MemberChanges, settings: &TenantSettings, actor: &str, now: &str) -> StoreResult<()> {
    let mut group = groups::state(conn, id)?;
    if doc != old {
        groups::update(conn, group.pk, doc, now)?;
        group.display_name = doc.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string();
        let changed: Vec<&str> = ["displayName", "externalId"].into_iter().filter(|k| old.get(*k) != doc.get(*k)).collect();
        let before: serde_json::Map<String, Value> = changed.iter().map(|k| (k.to_string(), old.get(*k).cloned().unwrap_or(Value::Null))).collect();
        let after: serde_json::Map<String, Value> = changed.iter().map(|k| (k.to_string(), doc.get(*k).cloned().unwrap_or(Value::Null))).collect();
        events::record(conn, now, actor, Action::Update, "Group", id, &json!({"before": before, "after": after}))?;
        let was_ignored = group.ignored;
        refresh_policy(conn, &mut group, settings, actor, now)?;
        // A rename (or a change of effect) may make the group grant access or stop to: its
        // members are re-evaluated under required_groups as if they had left or joined it.
        let old_name = old.get("displayName").and_then(Value::as_str).unwrap_or_default();
        let granted = |name: &str, ignored: bool| !ignored && settings.policies.grants_access(name);
        match (granted(old_name, was_ignored), granted(&group.display_name, group.ignored)) {
            (true, false) => super::access::after_membership(conn, settings, &groups::member_pks(conn, group.pk)?, &[], actor, now)?,
            (false, true) => super::access::after_membership(conn, settings, &[], &groups::member_pks(conn, group.pk)?, actor, now)?,
            _ => {}
        }
    }
    let members_changed = Sync { tenant, conn, group: &group, settings, actor, now }.apply(changes)?;
    if members_changed && doc == old {
        // The version and lastModified move with the membership.
        groups::update(conn, group.pk, doc, now)?;
    }
    Ok(())
}

pub async fn replace(tenant: &Tenant, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<StoredResource, ScimError> {
    let settings = tenant.settings();
    let mut doc = super::dialect::decode(settings.dialect, CAT, body)?;
    check_display_name(&doc)?;
    let members = take_members(&mut doc, body)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    let tenant_id = tenant.id.to_string();
    tenant
        .store
        .try_write(move |conn| {
            let old = groups::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            let changes = MemberChanges { replace_all: Some(members), ..Default::default() };
            write_group(&tenant_id, conn, &id, &old.attrs, &doc, &changes, &settings, &actor, &now)?;
            Ok(groups::get(conn, &id, true)?)
        })
        .await
}

/// Sorts PATCH operations into member changes and document operations.
fn split_ops(dialect: dialect::Dialect, ops: Vec<patch::PatchOperation>) -> Result<(MemberChanges, Vec<patch::PatchOperation>), ScimError> {
    let mut members = MemberChanges::default();
    let mut rest = Vec::new();
    for mut op in ops {
        match &op.path {
            Some(path) if is_members(&path.attr) => match (op.op, &path.filter) {
                (OpKind::Remove, Some(expr)) => members.remove.extend(patch::filter_member_ids(expr)?),
                (OpKind::Remove, None) if op.value.as_ref().is_some_and(|v| !v.is_null()) => {
                    if !dialect::allows(dialect, Leniency::RemoveMembersByValue) {
                        return Err(dialect::refused(Leniency::RemoveMembersByValue, "a remove of members takes a filter, not a value"));
                    }
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

/// Applies a PATCH. Returns the group's new ETag, read in the same transaction (a Bulk
/// request's later operations may change the group before the caller could read it); the
/// response is 204 and the member list is never loaded.
pub async fn patch(tenant: &Tenant, who: &Principal, id: &str, body: &Value, if_match: Option<IfMatch>, now: String) -> Result<String, ScimError> {
    let settings = tenant.settings();
    let (members, ops) = split_ops(settings.dialect, super::dialect::parse_patch(settings.dialect, CAT, body)?)?;
    let (id, actor) = (id.to_string(), who.user_name.clone());
    let tenant_id = tenant.id.to_string();
    tenant
        .store
        .try_write(move |conn| {
            let old = groups::get(conn, &id, false)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            let mut doc = old.attrs.clone();
            for op in &ops {
                patch::apply(CAT, &mut doc, op)?;
            }
            resource::check_required(KIND, &doc).and_then(|_| check_display_name(&doc))?;
            write_group(&tenant_id, conn, &id, &old.attrs, &doc, &members, &settings, &actor, &now)?;
            Ok(groups::get(conn, &id, false)?.etag())
        })
        .await
}

pub async fn delete(tenant: &Tenant, who: &Principal, id: &str, if_match: Option<IfMatch>, now: String) -> Result<(), ScimError> {
    let (id, actor, settings) = (id.to_string(), who.user_name.clone(), tenant.settings());
    tenant
        .store
        .try_write(move |conn| {
            let old = groups::get(conn, &id, true)?;
            IfMatch::check(if_match.as_ref(), &old)?;
            let state = groups::state(conn, &id)?;
            let members = if settings.policies.requires_groups() { groups::member_pks(conn, state.pk)? } else { Vec::new() };
            delete_in_tx(conn, &id, &old, &state, &actor, &now)?;
            Ok(super::access::after_membership(conn, &settings, &members, &[], &actor, &now)?)
        })
        .await
}

/// The IdP deleting a group: a group it created goes; one the application had before the
/// IdP linked it (or never linked) stays, and only what the IdP added leaves it ("delete the
/// group in the target app", Entra scoping it out).
fn delete_in_tx(conn: &crate::store::Db<'_>, id: &str, old: &StoredResource, state: &GroupState, actor: &str, now: &str) -> Result<(), ScimError> {
    if state.managed_by == ManagedBy::Local || events::happened(conn, "Group", id, Action::Link)? {
        let removed = groups::remove_idp_members(conn, state.pk)?;
        groups::set_flags(conn, state.pk, ManagedBy::Local, state.ignored)?;
        groups::update(conn, state.pk, &old.attrs, now)?;
        let detail = json!({"reason": "the IdP deleted a group it did not create: kept, back under the application", "removed_members": removed});
        return Ok(events::record(conn, now, actor, Action::Unlink, "Group", id, &detail)?);
    }
    groups::delete(conn, id)?;
    Ok(events::record(conn, now, actor, Action::Delete, "Group", id, &json!({"before": old.attrs}))?)
}
