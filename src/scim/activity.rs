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
