//! The activity log: one append-only row per change, written in the same transaction
//! as the change it records.

use rusqlite::{params, Connection};

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
    detail: &serde_json::Value,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO events (at, principal, action, resource_type, resource_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![at, principal, action.as_str(), resource_type, resource_id, detail.to_string()])?;
    Ok(())
}
