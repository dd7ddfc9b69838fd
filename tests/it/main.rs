//! One integration-test binary. Each test starts its own `TestServer` (own temp dir,
//! own port), so nothing is serialised.

mod support;

mod attacker;
mod access;
mod acme;
mod auth;
mod cli;
mod console;
mod container;
mod converge;
mod costs;
mod crash;
mod custom_attrs;
mod demo;
mod dialects;
mod faults;
mod discovery;
mod flood;
mod fuzz;
mod groups;
mod hostile;
mod http;
mod lifecycle;
mod limits;
mod list;
mod logs;
mod mapping;
mod metrics;
mod names;
mod operator;
mod packaging;
mod protocol;
mod replication;
mod semantics;
mod shadow;
mod tenants;
mod tidy;
mod time_faults;
mod tokens;
mod users;
