//! Operator operations on a tenant's data that are not SCIM: sanitisation, import, backup and checks.

pub mod import;
pub mod maintenance;
pub mod sanitize;
