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
