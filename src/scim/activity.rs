//! What the application and the operator read besides the resources: the activity log
//! in order, and a tenant's sizes. Services like the others, so `http` asks `scim` and
//! never the store.

use super::ScimError;
use crate::store::events::{self, EventQuery};
use crate::tenant::Tenant;

pub use crate::store::events::EventRecord;

/// At most this many events per page of the feed.
pub const MAX_EVENTS_PAGE: u32 = 1000;

/// The events after sequence number `after`, oldest first, at most `limit` (1..=1000).
pub async fn events_after(tenant: &Tenant, after: i64, limit: u32) -> Result<Vec<EventRecord>, ScimError> {
    let q = EventQuery { after: after.max(0), limit: limit.clamp(1, MAX_EVENTS_PAGE), ..Default::default() };
    Ok(tenant.store.scan(move |db| events::list(db, &q)).await?)
}

/// What `/metrics` reports of a tenant: users and groups SCIM can see, and active users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantSizes {
    pub users: i64,
    pub active_users: i64,
    pub groups: i64,
}

pub async fn sizes(tenant: &Tenant) -> Result<TenantSizes, ScimError> {
    let (users, active_users, groups) = tenant.store.scan(|db| crate::store::tenant_counts(db)).await?;
    Ok(TenantSizes { users, active_users, groups })
}

/// What the operator console searches the activity log by.
#[derive(Clone, Debug, Default)]
pub struct EventSearch {
    pub user: Option<String>,
    pub group: Option<String>,
    /// An action: create, update, deactivate, delete, link, license, ignore, …
    pub kind: Option<String>,
    /// RFC 3339; events at or after it.
    pub since: Option<String>,
    pub after: i64,
    pub limit: u32,
}

/// A page of the activity log matching `search` (a user's or group's events include their
/// memberships), oldest first after `search.after`. A name that is no user or group
/// matches nothing.
pub async fn search(tenant: &Tenant, search: EventSearch) -> Result<Vec<EventRecord>, ScimError> {
    use crate::store::{groups, users};
    let since = match &search.since {
        Some(s) => Some(crate::clock::UtcMillis::parse_rfc3339(s).ok_or_else(|| ScimError::invalid_value(format!("{s} is not an RFC 3339 time")))?.to_rfc3339()),
        None => None,
    };
    Ok(tenant
        .store
        .scan(move |db| {
            let resource_id = match (&search.user, &search.group) {
                (Some(name), _) => Some(users::find_by_user_name(db, name)?.map(|(id, ..)| id).unwrap_or_else(|| "\u{0}".into())),
                (None, Some(name)) => Some(groups::state_by_name(db, name)?.map(|g| g.id).unwrap_or_else(|| "\u{0}".into())),
                _ => None,
            };
            let q = EventQuery { after: search.after.max(0), limit: search.limit.clamp(1, MAX_EVENTS_PAGE), resource_id, since, action: search.kind.clone() };
            events::list(db, &q)
        })
        .await?)
}

/// The events of one resource (a user's or group's, with its memberships), oldest first.
pub async fn history(tenant: &Tenant, id: &str, limit: u32) -> Result<Vec<EventRecord>, ScimError> {
    let q = EventQuery { after: 0, limit: limit.clamp(1, MAX_EVENTS_PAGE), resource_id: Some(id.to_string()), ..Default::default() };
    Ok(tenant.store.scan(move |db| events::list(db, &q)).await?)
}

/// A tenant's sizes and seats in use, for the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overview {
    pub users: i64,
    pub active_users: i64,
    pub groups: i64,
    pub creator_in_use: i64,
    pub creator_float_in_use: i64,
}

pub async fn overview(tenant: &Tenant) -> Result<Overview, ScimError> {
    let ((users, active_users, groups), (creator_in_use, creator_float_in_use)) =
        tenant.store.scan(|db| Ok((crate::store::tenant_counts(db)?, crate::store::seats_in_use(db)?))).await?;
    Ok(Overview { users, active_users, groups, creator_in_use, creator_float_in_use })
}

pub use crate::store::catalogue::Summary;

/// What the catalogue holds of every tenant but those in `read_live` (the open ones the
/// caller read itself), as each was when it closed: `/metrics` and the token-expiry check
/// read these instead of opening the tenants.
pub async fn closed_tenants(tenants: &crate::tenant::TenantRegistry, read_live: &[std::sync::Arc<Tenant>]) -> Vec<(String, Summary)> {
    let open: std::collections::HashSet<String> = read_live.iter().map(|t| t.id.to_string()).collect();
    let data = tenants.data().clone();
    let all = tokio::task::spawn_blocking(move || data.catalogue().all()).await;
    match all {
        Ok(Ok(all)) => all.into_iter().filter(|(id, _)| !open.contains(id)).collect(),
        Ok(Err(e)) => {
            log::error!(target: "scimd::tenant", "cannot read the tenant catalogue: {e}");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}
