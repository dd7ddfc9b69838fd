//! SQL for groups and memberships. A membership is one row: adding or removing one member
//! of a 100,000-member group touches one row and never reads the member list.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::filter_sql::SqlFilter;
use super::{is_unique_violation, new_resource_id, StoreError, StoreResult};
use crate::model::{Attrs, GroupScope, ManagedBy, MembershipSource, StoredResource};

fn conflict_or(e: rusqlite::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("a group with this displayName already exists".into())
    } else {
        StoreError::from(e)
    }
}

fn text(doc: &Attrs, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The comparison key of a document's displayName (see `crate::names`).
fn name_key(doc: &Attrs) -> String {
    crate::names::key(doc.get("displayName").and_then(Value::as_str).unwrap_or_default())
}

pub fn insert(conn: &Connection, doc: &Attrs, scope: GroupScope, managed_by: ManagedBy, ignored: bool, now: &str) -> StoreResult<(i64, String)> {
    let id = new_resource_id();
    conn.prepare_cached(
        "INSERT INTO groups (id, display_name, display_name_key, external_id, created, last_modified, version, scope, managed_by, ignored)
         VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
    )?
    .execute(params![id, text(doc, "displayName"), name_key(doc), text(doc, "externalId"), now, now, scope, managed_by, ignored])
    .map_err(conflict_or)?;
    Ok((conn.last_insert_rowid(), id))
}

/// What SCIM's rules need to know of a group beyond its attributes.
#[derive(Clone, Debug)]
pub struct GroupState {
    pub pk: i64,
    pub id: String,
    pub display_name: String,
    pub scope: GroupScope,
    pub managed_by: ManagedBy,
    pub ignored: bool,
}

fn state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupState> {
    Ok(GroupState { pk: r.get(0)?, id: r.get(1)?, display_name: r.get(2)?, scope: r.get(3)?, managed_by: r.get(4)?, ignored: r.get(5)? })
}

const STATE: &str = "SELECT pk, id, display_name, scope, managed_by, ignored FROM groups";

/// A group by name, whatever its scope (names are unique as `crate::names::key` compares
/// them: "sales " is "Sales").
pub fn state_by_name(conn: &Connection, name: &str) -> StoreResult<Option<GroupState>> {
    Ok(conn.prepare_cached(&format!("{STATE} WHERE display_name_key = ?"))?.query_row([crate::names::key(name)], state_row).optional()?)
}

/// An org-level group by id (project groups do not exist for SCIM).
pub fn state(conn: &Connection, id: &str) -> StoreResult<GroupState> {
    conn.prepare_cached(&format!("{STATE} WHERE id = ? AND scope = 'org'"))?
        .query_row([id], state_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("group {id} not found")))
}

pub fn set_flags(conn: &Connection, pk: i64, managed_by: ManagedBy, ignored: bool) -> StoreResult<()> {
    conn.prepare_cached("UPDATE groups SET managed_by = ?, ignored = ? WHERE pk = ?")?.execute(params![managed_by, ignored, pk])?;
    Ok(())
}

/// Starts from the few inactive Basic-auth users (the `users_inactive_basic` partial
/// index; CROSS JOIN keeps that order) and probes each one's membership, so a sync of a
/// 100,000-member group does not walk its members.
pub(crate) const INACTIVE_BASIC_MEMBERS_SQL: &str = "SELECT u.pk, u.id FROM users u CROSS JOIN memberships m
     WHERE u.auth_type = 'basic' AND u.active = 0 AND m.group_pk = ? AND m.user_pk = u.pk";

/// Members that are inactive Basic-auth users (they leave IdP-managed groups on sync).
pub fn inactive_basic_members(conn: &Connection, group_pk: i64) -> StoreResult<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(INACTIVE_BASIC_MEMBERS_SQL)?;
    let rows = stmt.query_map([group_pk], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Updates displayName and externalId and bumps the version (also used when only the
/// membership changed, so the group's ETag and lastModified move).
pub fn update(conn: &Connection, pk: i64, doc: &Attrs, now: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE groups SET display_name = ?, display_name_key = ?, external_id = ?, last_modified = max(?, last_modified), version = version + 1 WHERE pk = ?",
    )?
    .execute(params![text(doc, "displayName"), name_key(doc), text(doc, "externalId"), now, pk])
    .map_err(conflict_or)?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> StoreResult<()> {
    let n = conn.prepare_cached("DELETE FROM groups WHERE id = ? AND scope = 'org'")?.execute([id])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("group {id} not found")));
    }
    Ok(())
}

pub fn pk_of(conn: &Connection, id: &str) -> StoreResult<i64> {
    conn.prepare_cached("SELECT pk FROM groups WHERE id = ? AND scope = 'org'")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("group {id} not found")))
}

const SELECT_COLUMNS: &str = "g.pk, g.id, g.display_name, g.external_id, g.created, g.last_modified, g.version";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, StoredResource)> {
    let mut attrs = Attrs::new();
    attrs.insert("displayName".into(), Value::String(r.get(2)?));
    if let Some(e) = r.get::<_, Option<String>>(3)? {
        attrs.insert("externalId".into(), Value::String(e));
    }
    Ok((
        r.get(0)?,
        StoredResource { id: r.get(1)?, attrs, created: r.get(4)?, last_modified: r.get(5)?, version: r.get(6)? },
    ))
}

fn load_members(conn: &Connection, pk: i64, res: &mut StoredResource) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id FROM memberships m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ? AND u.deleted_at IS NULL ORDER BY u.pk",
    )?;
    let members: Vec<Value> = stmt
        .query_map([pk], |r| Ok(serde_json::json!({"value": r.get::<_, String>(0)?})))?
        .collect::<Result<_, _>>()?;
    if !members.is_empty() {
        res.attrs.insert("members".into(), Value::Array(members));
    }
    Ok(())
}

/// Loads a group; `with_members` false never touches the membership table.
pub fn get(conn: &Connection, id: &str, with_members: bool) -> StoreResult<StoredResource> {
    let found = conn
        .prepare_cached(&format!("SELECT {SELECT_COLUMNS} FROM groups g WHERE g.id = ? AND g.scope = 'org'"))?
        .query_row([id], from_row)
        .optional()?;
    let (pk, mut res) = found.ok_or_else(|| StoreError::NotFound(format!("group {id} not found")))?;
    if with_members {
        load_members(conn, pk, &mut res)?;
    }
    Ok(res)
}

pub fn list(
    conn: &Connection,
    filter: &SqlFilter,
    window: super::Window,
    count_total: bool,
    with_members: bool,
    byte_budget: usize,
    positions: Option<&super::PagePositions>,
) -> StoreResult<super::Listed> {
    let source = super::ListSource { select: SELECT_COLUMNS, from: "groups", alias: "g", visible: "g.scope = 'org'", uncounted: None, changes: "groups:changes", map: from_row };
    let mut complete = |pk: i64, res: &mut StoredResource| -> StoreResult<usize> {
        if with_members {
            load_members(conn, pk, res)?;
        }
        // Each member also renders a `$ref` URL (about 100 bytes).
        let members = res.attrs.get("members").and_then(Value::as_array).map_or(0, Vec::len);
        Ok(super::RESOURCE_OVERHEAD_BYTES + members * 100 + res.attrs.iter().map(|(k, v)| k.len() + 4 + super::approx_json_bytes(v)).sum::<usize>())
    };
    let super::WindowRows { total, rows, more } = super::query_window(conn, &source, filter, window, count_total, byte_budget, positions, &mut complete)?;
    let last_pk = rows.last().map(|(pk, _)| *pk);
    let items = rows.into_iter().map(|(_, res)| res).collect();
    Ok(super::Listed { total, items, last_pk, more })
}

/// A member candidate: its pk and who manages it. An id that is not a (visible) user is
/// an error naming it.
pub fn member_pk(conn: &Connection, user_id: &str) -> StoreResult<(i64, ManagedBy)> {
    member(conn, user_id)?.map_err(|why| StoreError::Invalid(format!("member {user_id} is {}", why.as_str())))
}

/// Why a member id names no user a group can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAMember {
    /// No such id: never made here, hard-deleted, or another system's id.
    Unknown,
    /// A user soft-deleted (by the IdP or on the application side).
    Deleted,
    /// An org-level group: groups do not nest.
    Group,
}

impl NotAMember {
    pub fn as_str(self) -> &'static str {
        match self {
            NotAMember::Unknown => "not a known User",
            NotAMember::Deleted => "a deleted User",
            NotAMember::Group => "a Group (groups do not nest)",
        }
    }
}

/// The user a member id names, or why it names none (the second lookup runs only for an
/// id that is no live user).
pub fn member(conn: &Connection, user_id: &str) -> StoreResult<Result<(i64, ManagedBy), NotAMember>> {
    let row: Option<(i64, ManagedBy, bool)> = conn
        .prepare_cached("SELECT pk, managed_by, deleted_at IS NOT NULL FROM users WHERE id = ?")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        Some((pk, managed_by, false)) => Ok((pk, managed_by)),
        Some((.., true)) => Err(NotAMember::Deleted),
        None if pk_of(conn, user_id).is_ok() => Err(NotAMember::Group),
        None => Err(NotAMember::Unknown),
    })
}

/// Adds one member; returns false if it was already there (not an error).
pub fn add_member(conn: &Connection, group_pk: i64, user_pk: i64, source: MembershipSource) -> StoreResult<bool> {
    let n = conn
        .prepare_cached("INSERT OR IGNORE INTO memberships (group_pk, user_pk, source) VALUES (?, ?, ?)")?
        .execute(params![group_pk, user_pk, source])?;
    Ok(n == 1)
}

/// Removes one member; returns false if it was not there.
pub fn remove_member(conn: &Connection, group_pk: i64, user_pk: i64) -> StoreResult<bool> {
    let n = conn
        .prepare_cached("DELETE FROM memberships WHERE group_pk = ? AND user_pk = ?")?
        .execute([group_pk, user_pk])?;
    Ok(n == 1)
}

/// What removing one member the IdP names did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The user is a member, but the application made that membership: it stays.
    MadeByTheApplication,
    NotAMember,
}

/// Removes one membership if the IdP made it.
pub fn remove_idp_member(conn: &Connection, group_pk: i64, user_pk: i64) -> StoreResult<Removal> {
    let n = conn
        .prepare_cached("DELETE FROM memberships WHERE group_pk = ? AND user_pk = ? AND source = 'idp'")?
        .execute([group_pk, user_pk])?;
    if n == 1 {
        return Ok(Removal::Removed);
    }
    let there: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM memberships WHERE group_pk = ? AND user_pk = ?)")?
        .query_row([group_pk, user_pk], |r| r.get(0))?;
    Ok(if there { Removal::MadeByTheApplication } else { Removal::NotAMember })
}

/// Removes the memberships the IdP made and returns their user ids; those the
/// application made stay.
pub fn remove_idp_members(conn: &Connection, group_pk: i64) -> StoreResult<Vec<String>> {
    let ids: Vec<String> = conn
        .prepare_cached("SELECT u.id FROM memberships m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ? AND m.source = 'idp'")?
        .query_map([group_pk], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.prepare_cached("DELETE FROM memberships WHERE group_pk = ? AND source = 'idp'")?.execute([group_pk])?;
    Ok(ids)
}

/// The ids of the members the IdP added (a client replacing the whole member list
/// replaces only these; memberships made locally stay).
pub fn idp_member_ids(conn: &Connection, group_pk: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id FROM memberships m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ? AND m.source = 'idp' AND u.deleted_at IS NULL",
    )?;
    let ids = stmt.query_map([group_pk], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// One line of `scimd group list`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupSummary {
    pub id: String,
    pub name: String,
    pub scope: GroupScope,
    pub managed_by: ManagedBy,
    pub ignored: bool,
    pub members: i64,
}

/// Every group, project ones included, with member counts.
pub fn summaries(conn: &Connection) -> StoreResult<Vec<GroupSummary>> {
    let mut stmt = conn.prepare(
        "SELECT g.id, g.display_name, g.scope, g.managed_by, g.ignored, (SELECT count(*) FROM memberships m WHERE m.group_pk = g.pk)
         FROM groups g ORDER BY g.display_name",
    )?;
    let rows = stmt
        .query_map([], |r| Ok(GroupSummary { id: r.get(0)?, name: r.get(1)?, scope: r.get(2)?, managed_by: r.get(3)?, ignored: r.get(4)?, members: r.get(5)? }))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Member user names of a group (any scope), with each membership's source.
pub fn member_names(conn: &Connection, group_pk: i64) -> StoreResult<Vec<(String, MembershipSource)>> {
    let mut stmt = conn.prepare("SELECT u.user_name, m.source FROM memberships m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ? ORDER BY u.user_name")?;
    let rows = stmt.query_map([group_pk], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A user as the `required_groups` policy sees it (not soft-deleted).
#[derive(Clone, Debug)]
pub struct AccessState {
    pub id: String,
    pub active: bool,
    pub managed_by: ManagedBy,
}

/// The user at `user_pk`, unless soft-deleted.
pub fn access_state(conn: &Connection, user_pk: i64) -> StoreResult<Option<AccessState>> {
    Ok(conn
        .prepare_cached("SELECT id, active, managed_by FROM users WHERE pk = ? AND deleted_at IS NULL")?
        .query_row([user_pk], |r| Ok(AccessState { id: r.get(0)?, active: r.get(1)?, managed_by: r.get(2)? }))
        .optional()?)
}

/// The names of the org-level groups that take effect (not ignored by a policy) the user
/// at `user_pk` is a member of.
pub fn effective_group_names(conn: &Connection, user_pk: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT g.display_name FROM memberships m JOIN groups g ON g.pk = m.group_pk WHERE m.user_pk = ? AND g.scope = 'org' AND g.ignored = 0",
    )?;
    let rows = stmt.query_map([user_pk], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The users who are members of the group at `group_pk` (any source).
pub fn member_pks(conn: &Connection, group_pk: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT user_pk FROM memberships WHERE group_pk = ?")?;
    let rows = stmt.query_map([group_pk], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}
