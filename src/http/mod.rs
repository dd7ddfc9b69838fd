//! HTTP: the server loop and TLS, the router, request parsing and response rendering.

pub mod admission;
pub mod bulk;
pub mod console;
mod console_pages;
pub mod context;
pub mod handlers;
pub mod metrics;
pub mod operator;
pub mod recent;
pub mod request;
pub mod response;
pub mod route;
pub mod router;
pub mod server;
pub mod token_api;
