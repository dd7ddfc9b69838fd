//! What a request's handlers share: the server-wide `AppState` and, inside one tenant's SCIM
//! base URL, the authenticated `Ctx`. Here, not in the router, so the router, the handlers,
//! Bulk and the operator listener all import it without a cycle.

use std::sync::Arc;

use super::request::Query;
use crate::auth::AuthState;
use crate::clock::{Clock, UtcMillis};
use crate::scim::Principal;
use crate::tenant::{Tenant, TenantRegistry};

/// What every request handler shares.
pub struct AppState {
    pub tenants: TenantRegistry,
    pub metrics: Arc<super::metrics::Metrics>,
    pub auth: AuthState,
    pub clock: Clock,
    pub max_body_bytes: usize,
    /// `https://host:port` as clients reach us; derived from `Host` when unset.
    pub public_url: Option<String>,
    pub scheme: &'static str,
    /// What the operator console shows of the traffic (refused requests, per hour).
    pub recent: super::recent::Recent,
    pub console: super::console::Console,
    /// The certificate the TLS listener serves (`None` with `--insecure-http`).
    pub cert: Option<Arc<super::server::ReloadableCert>>,
    /// ACME's renewal loop, when it keeps the certificate.
    pub acme: Option<Arc<crate::acme::Status>>,
}

/// A request inside one tenant's SCIM base URL, after authentication.
pub struct Ctx {
    pub tenant: Arc<Tenant>,
    /// The request's time, read once from the server's clock.
    pub now: UtcMillis,
    pub principal: Principal,
    pub base_url: String,
    pub query: Query,
    pub bulk_max_operations: usize,
    pub max_body_bytes: usize,
    /// The tenant's user catalogue as its settings were when the request came in: every
    /// projection and rendering of the request uses this one, so a reload in between
    /// cannot make them disagree about its custom attributes.
    pub users: crate::scim::schema::Catalogue,
}
