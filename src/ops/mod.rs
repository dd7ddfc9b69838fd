//! Operator operations on a tenant's data that are not SCIM: sanitisation, import, backup, checks and replication.

pub mod import;
pub mod maintenance;
pub mod replication;
pub mod sanitize;
pub mod shadow;
