//! The `required_groups` policy (issue 23, re:solution's "not a member of any required
//! group anymore"): a user the IdP manages who leaves the last group that grants access is
//! deactivated (soft: the row, its history and memberships stay; its seat is freed), with
//! an event naming the reason; when they join such a group again, they are reactivated,
//! unless something else deactivated them since (the IdP, the operator). Local users are
//! never touched. Evaluated in the transaction of the membership change that caused it.

use serde_json::json;

use super::users::{assign_seat, free_seat};
use crate::model::ManagedBy;
use crate::store::events::{self, Action};
use crate::store::groups::{self, AccessState};
use crate::store::{users, Db, StoreResult};
use crate::tenant::TenantSettings;

/// The reason the events carry: what the operator searches the log for.
pub const REASON: &str = "required_groups";

/// The users whose memberships changed: `left` lost one, `joined` gained one.
pub fn after_membership(conn: &Db<'_>, settings: &TenantSettings, left: &[i64], joined: &[i64], actor: &str, now: &str) -> StoreResult<()> {
    let policies = &settings.policies;
    if !policies.requires_groups() {
        return Ok(());
    }
    let granting = |user_pk: i64| -> StoreResult<Option<String>> {
        Ok(groups::effective_group_names(conn, user_pk)?.into_iter().find(|g| policies.grants_access(g)))
    };
    for &user_pk in left {
        let Some(user) = idp_user(conn, user_pk)? else { continue };
        if !user.active || granting(user_pk)?.is_some() {
            continue;
        }
        users::set_active(conn, &user.id, false, now)?;
        free_seat(conn, &user.id, actor, now)?;
        let detail = json!({"before": {"active": true}, "after": {"active": false}, "reason": REASON, "why": "no longer a member of any group in policies.required_groups"});
        events::record(conn, now, actor, Action::Deactivate, "User", &user.id, &detail)?;
    }
    for &user_pk in joined {
        let Some(user) = idp_user(conn, user_pk)? else { continue };
        if user.active || !lapsed(conn, &user.id)? {
            continue;
        }
        let Some(group) = granting(user_pk)? else { continue };
        users::set_active(conn, &user.id, true, now)?;
        assign_seat(conn, &user.id, settings, actor, now)?;
        let detail = json!({"before": {"active": false}, "after": {"active": true}, "reason": REASON, "why": format!("a member of {group:?} again")});
        events::record(conn, now, actor, Action::Reactivate, "User", &user.id, &detail)?;
    }
    Ok(())
}

/// Whether the user `user_id`, inactive, is held so by the policy: it deactivated it, and
/// the user is in no group that grants access.
pub fn held_inactive(conn: &Db<'_>, user_id: &str, settings: &TenantSettings) -> StoreResult<bool> {
    let policies = &settings.policies;
    if !policies.requires_groups() || !lapsed(conn, user_id)? {
        return Ok(false);
    }
    let Ok((user_pk, _)) = groups::member(conn, user_id)? else { return Ok(false) };
    Ok(!groups::effective_group_names(conn, user_pk)?.iter().any(|g| policies.grants_access(g)))
}

/// The user, if the IdP manages it and it is not deleted.
fn idp_user(conn: &Db<'_>, user_pk: i64) -> StoreResult<Option<AccessState>> {
    Ok(groups::access_state(conn, user_pk)?.filter(|u| u.managed_by != ManagedBy::Local))
}

/// Whether the user's last activation change was this policy deactivating it.
fn lapsed(conn: &Db<'_>, user_id: &str) -> StoreResult<bool> {
    Ok(events::last_activation(conn, user_id)?.is_some_and(|(action, detail)| action == "deactivate" && detail["reason"] == REASON))
}
