//! scimd: a self-hosted SCIM 2.0 service provider. See ARCHITECTURE.md for the map.

pub mod acme;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod http;
pub mod model;
pub mod names;
pub mod ops;
pub mod scim;
pub mod store;
pub mod systemd;
pub mod tenant;
