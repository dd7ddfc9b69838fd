//! The activity log: one append-only row per change, written in the same transaction
//! as the change it records.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::StoreResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Deactivate,
    Reactivate,
    Delete,
    /// A soft-deleted user brought back by a POST of its userName.
    Restore,
    /// A local user (or existing group) taken over by the IdP.
    Adopt,
    /// A group POST linked to an existing org-level group.
    Link,
    /// The IdP deleted a group it did not create: it returns to the application.
    Unlink,
    /// A licence change (or a warning that none was free).
    License,
    /// A change a policy kept from taking effect.
    Ignore,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Deactivate => "deactivate",
            Action::Reactivate => "reactivate",
            Action::Delete => "delete",
            Action::Restore => "restore",
            Action::Adopt => "adopt",
            Action::Link => "link",
            Action::Unlink => "unlink",
            Action::License => "license",
            Action::Ignore => "ignore",
        }
    }
}

/// Records an event. `detail` says what changed; it must never hold a secret.
pub fn record(
    conn: &Connection,
    at: &str,
    principal: &str,
    action: Action,
    resource_type: &str,
    resource_id: &str,
    detail: &(impl serde::Serialize + ?Sized),
) -> StoreResult<()> {
    // Any serialisable detail: a large document is written as JSON without a copy first.
    let detail = serde_json::to_string(detail).map_err(|e| super::StoreError::Invalid(format!("event detail: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO events (at, principal, action, resource_type, resource_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![at, principal, action.as_str(), resource_type, resource_id, detail])?;
    Ok(())
}

/// Whether `action` was ever recorded for this resource (`events_resource` index).
pub fn happened(conn: &Connection, resource_type: &str, resource_id: &str, action: Action) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE resource_type = ? AND resource_id = ? AND action = ?)")?
        .query_row(params![resource_type, resource_id, action.as_str()], |r| r.get(0))?)
}

/// The last activation change recorded for a user (`deactivate` or `reactivate`): its
/// action and detail. The `required_groups` policy reads whether it was its own.
pub fn last_activation(conn: &Connection, user_id: &str) -> StoreResult<Option<(String, Value)>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT action, detail FROM events WHERE resource_type = 'User' AND resource_id = ? AND action IN ('deactivate', 'reactivate') ORDER BY seq DESC LIMIT 1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map(|(action, detail)| (action, serde_json::from_str(&detail).unwrap_or(Value::Null))))
}

/// One recorded change.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub at: String,
    pub principal: String,
    pub action: String,
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    #[serde(rename = "resourceId")]
    pub resource_id: String,
    pub detail: serde_json::Value,
}

/// Which events to return: after a sequence number, optionally about one resource
/// (a user or group id also matches its memberships) and since a time.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub after: i64,
    pub limit: u32,
    pub resource_id: Option<String>,
    pub since: Option<String>,
    /// Only events of this action (`create`, `update`, `link`, …).
    pub action: Option<String>,
}

pub fn list(conn: &Connection, q: &EventQuery) -> StoreResult<Vec<EventRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, principal, action, resource_type, resource_id, detail FROM events
         WHERE seq > ?1
           AND (?2 IS NULL OR resource_id = ?2 OR resource_id LIKE ?2 || ':%' OR resource_id LIKE '%:' || ?2)
           AND (?3 IS NULL OR at >= ?3)
           AND (?5 IS NULL OR action = ?5)
         ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(params![q.after, q.resource_id, q.since, q.limit, q.action], |r| {
            let detail: String = r.get(6)?;
            Ok(EventRecord {
                seq: r.get(0)?,
                at: r.get(1)?,
                principal: r.get(2)?,
                action: r.get(3)?,
                resource_type: r.get(4)?,
                resource_id: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
