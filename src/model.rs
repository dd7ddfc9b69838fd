//! The domain both `scim` and `store` depend on (lldap's shape, inside one crate): a
//! resource as stored, the schema URNs that name its parts, and what the userName = email
//! rules read. No SQL, no HTTP, no SCIM wire format: `store` imports this, never `scim` or
//! `ops`. (The filter predicate still crosses from scim to store; see issue 14.)

use serde_json::{Map, Value};

/// A resource's attributes as a canonical JSON document (the catalogue in
/// `scim::schema` says what may be in it).
pub type Attrs = Map<String, Value>;

/// A resource as the store returns it.
#[derive(Clone, Debug)]
pub struct StoredResource {
    pub id: String,
    pub attrs: Attrs,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

impl StoredResource {
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// scimd's own, read-only user attributes: licence and origin.
pub const SCIMD_SCHEMA: &str = "urn:scimd:params:scim:schemas:extension:2.0:User";

/// A user as the userName = email rules (`ops::sanitize`) see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub active: bool,
    /// `basic` or `idp`.
    pub auth_type: String,
}
