//! The operator listener (loopback by default, plain HTTP; the console also over TLS): `/metrics` in the Prometheus
//! text format — the counters of `metrics.rs`, the tenant lifecycle and users, active
//! users and groups per tenant and the seconds left on every live bearer token (read live
//! from open tenants, from the catalogue for the others: a scrape never opens one) — and
//! the operator's `/healthz` with per-tenant detail.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::context::AppState;
use crate::clock::UtcMillis;

/// The exposition text.
pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    state.metrics.render_counters(&mut out);
    let _ = writeln!(out, "# HELP scimd_password_checks_total Password checks (PBKDF2 runs) made; concurrent requests with the same credentials share one.");
    let _ = writeln!(out, "# TYPE scimd_password_checks_total counter");
    let _ = writeln!(out, "scimd_password_checks_total {}", state.auth.password_checks());
    let now = (state.clock)();
    let mut gauges = String::new();
    let mut tokens = String::new();
    let open = state.tenants.open_tenants();
    let mut gauge = |id: &str, users: i64, active: i64, groups: i64| {
        let t = super::metrics::escape(id);
        let _ = writeln!(gauges, "scimd_tenant_users{{tenant=\"{t}\"}} {users}");
        let _ = writeln!(gauges, "scimd_tenant_active_users{{tenant=\"{t}\"}} {active}");
        let _ = writeln!(gauges, "scimd_tenant_groups{{tenant=\"{t}\"}} {groups}");
    };
    let mut token = |id: &str, owner: &str, expires_at: &str| {
        let left = UtcMillis::parse_rfc3339(expires_at).map(|e| (e.0 - now.0) / 1000).unwrap_or(0);
        let _ = writeln!(tokens, "scimd_token_expiry_seconds{{tenant=\"{}\",owner=\"{}\"}} {left}", super::metrics::escape(id), super::metrics::escape(owner));
    };
    // Open tenants are read live; the others as the catalogue holds them, which is how
    // they were when they closed.
    // Tenants in shadow mode (issue 20): the open ones say so; a closed one has its files.
    let mut shadow = String::new();
    for tenant in &open {
        if tenant.in_shadow().unwrap_or(true) {
            let _ = writeln!(shadow, "scimd_tenant_shadow{{tenant=\"{}\"}} 1", super::metrics::escape(tenant.id.as_str()));
        }
        if let Ok(sizes) = crate::scim::activity::sizes(tenant).await {
            gauge(tenant.id.as_str(), sizes.users, sizes.active_users, sizes.groups);
        }
        if let Ok(live) = crate::auth::token::live(tenant, now).await {
            for t in live {
                token(tenant.id.as_str(), &t.user_name, &t.expires_at);
            }
        }
    }
    let now_text = now.to_rfc3339();
    let closed = crate::scim::activity::closed_tenants(&state.tenants, &open).await;
    drop(open);
    for (id, s) in closed {
        if crate::tenant::TenantId::parse(&id).is_some_and(|tid| crate::tenant::shadow::Files::of(state.tenants.data(), &tid).active()) {
            let _ = writeln!(shadow, "scimd_tenant_shadow{{tenant=\"{}\"}} 1", super::metrics::escape(&id));
        }
        gauge(&id, s.users, s.active_users, s.groups);
        for t in s.tokens.iter().filter(|t| t.expires_at > now_text) {
            token(&id, &t.owner, &t.expires_at);
        }
    }
    let counts = &state.tenants.counts;
    let _ = writeln!(out, "# HELP scimd_open_tenants Tenants open now (at most max_open_tenants).");
    let _ = writeln!(out, "# TYPE scimd_open_tenants gauge");
    let _ = writeln!(out, "scimd_open_tenants {}", state.tenants.open_count());
    let _ = writeln!(out, "# HELP scimd_tenant_opens_total Tenants opened (first use, or use after a close).");
    let _ = writeln!(out, "# TYPE scimd_tenant_opens_total counter");
    let _ = writeln!(out, "scimd_tenant_opens_total {}", counts.opened.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP scimd_tenant_closes_total Tenants closed: idle for tenant_idle_secs, or evicted (least recently used) to stay within max_open_tenants.");
    let _ = writeln!(out, "# TYPE scimd_tenant_closes_total counter");
    let _ = writeln!(out, "scimd_tenant_closes_total{{reason=\"idle\"}} {}", counts.closed_idle.load(Ordering::Relaxed));
    let _ = writeln!(out, "scimd_tenant_closes_total{{reason=\"evicted\"}} {}", counts.closed_evicted.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP scimd_tenant_users Users per tenant (not soft-deleted; a closed tenant as of its last close); scimd_tenant_active_users and scimd_tenant_groups likewise.");
    let _ = writeln!(out, "# TYPE scimd_tenant_users gauge");
    let _ = writeln!(out, "# TYPE scimd_tenant_active_users gauge");
    let _ = writeln!(out, "# TYPE scimd_tenant_groups gauge");
    out.push_str(&gauges);
    let _ = writeln!(out, "# HELP scimd_token_expiry_seconds Seconds until each live bearer token expires.");
    let _ = writeln!(out, "# TYPE scimd_token_expiry_seconds gauge");
    out.push_str(&tokens);
    let _ = writeln!(out, "# HELP scimd_tenant_shadow 1 for each tenant in shadow mode: its SCIM requests run against a rehearsal's copy (scimd shadow report).");
    let _ = writeln!(out, "# TYPE scimd_tenant_shadow gauge");
    out.push_str(&shadow);
    let board = state.tenants.data().faults();
    let _ = writeln!(out, "# HELP scimd_tenant_fault 1 for each tenant and fault it has now: a full disk, a read-only, damaged or newer database, unreadable settings or signing key (the operator's /healthz says more).");
    let _ = writeln!(out, "# TYPE scimd_tenant_fault gauge");
    for f in board.snapshot() {
        let _ = writeln!(out, "scimd_tenant_fault{{tenant=\"{}\",fault=\"{}\"}} 1", super::metrics::escape(&f.tenant), f.fault);
    }
    let _ = writeln!(out, "# HELP scimd_certificate_expiry_seconds Seconds until the TLS certificate served expires (absent while there is none).");
    let _ = writeln!(out, "# TYPE scimd_certificate_expiry_seconds gauge");
    if let Some(t) = state.cert.as_ref().and_then(|c| c.not_after()) {
        let _ = writeln!(out, "scimd_certificate_expiry_seconds {}", (t.0 - now.0) / 1000);
    }
    if let Some(acme) = &state.acme {
        let _ = writeln!(out, "# HELP scimd_acme_orders_total ACME certificate orders since start, by result.");
        let _ = writeln!(out, "# TYPE scimd_acme_orders_total counter");
        let _ = writeln!(out, "scimd_acme_orders_total{{result=\"valid\"}} {}", acme.orders_valid.load(Ordering::Relaxed));
        let _ = writeln!(out, "scimd_acme_orders_total{{result=\"failed\"}} {}", acme.orders_failed.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP scimd_faults_total Faults raised since start, by fault (each counted once until it clears).");
    let _ = writeln!(out, "# TYPE scimd_faults_total counter");
    for (fault, n) in board.totals() {
        let _ = writeln!(out, "scimd_faults_total{{fault=\"{}\"}} {n}", fault.as_str());
    }
    out
}

/// The operator's `/healthz`: "ok", or "degraded" with, per tenant, the bearer tokens
/// inside their warning window. Tenants already open are read now; the others as the
/// last periodic expiry check found them. No tenant is opened to answer.
pub async fn operator_health(state: &AppState) -> serde_json::Value {
    use serde_json::json;
    let now = (state.clock)();
    let mut tenants: std::collections::BTreeMap<String, Vec<String>> = state.auth.expiry.snapshot().into_iter().collect();
    for tenant in state.tenants.open_tenants() {
        let Ok(expiring) = crate::auth::token::expiring(&tenant, now).await else { continue };
        let reasons: Vec<String> = expiring
            .iter()
            .map(|(t, days)| crate::auth::token::expiry_reason(t, *days))
            .collect();
        if reasons.is_empty() {
            tenants.remove(tenant.id.as_str());
        } else {
            tenants.insert(tenant.id.to_string(), reasons);
        }
    }
    // Faults (issue 22) first among a tenant's reasons: they refuse the IdP now.
    let faults = state.tenants.data().faults().snapshot();
    for f in faults.iter().rev() {
        let reason = format!("{} since {} ({} times): {}; {}", f.fault, f.since, f.count, f.detail, f.hint);
        tenants.entry(f.tenant.clone()).or_default().insert(0, reason);
    }
    let certificate = certificate_concerns(state, now);
    if tenants.is_empty() && certificate.is_empty() {
        return json!({"status": "ok"});
    }
    let detail: serde_json::Map<String, serde_json::Value> =
        tenants.into_iter().map(|(id, reasons)| (id, json!({"status": "degraded", "reasons": reasons}))).collect();
    let mut body = json!({"status": "degraded", "tenants": detail, "faults": faults});
    if !certificate.is_empty() {
        body["certificate"] = json!({"status": "degraded", "reasons": certificate});
    }
    body
}

/// The certificate is the operator's concern from this many days before it expires.
pub const CERT_WARN_DAYS: i64 = 14;

/// Why the served certificate needs the operator: under ACME, the renewal loop's view (none
/// yet, expiring, failing orders); with files, expiry within `CERT_WARN_DAYS`.
fn certificate_concerns(state: &AppState, now: UtcMillis) -> Vec<String> {
    if let Some(acme) = &state.acme {
        return acme.snapshot().concerns(now, CERT_WARN_DAYS);
    }
    match state.cert.as_ref().and_then(|c| c.not_after()) {
        Some(t) if t.0 - now.0 < CERT_WARN_DAYS * 86_400_000 => {
            vec![format!("the TLS certificate expires {} ({} days): renew it (the files are reloaded when they change)", t.to_rfc3339(), (t.0 - now.0).div_euclid(86_400_000))]
        }
        _ => Vec::new(),
    }
}

/// Connections the operator listener serves at once; more are closed as they come.
const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` and the operator's `GET /healthz` over plain HTTP on `listen`,
/// and the console (`/console/`): over plain HTTP when `listen` is a loopback address, and
/// otherwise only over TLS with the server's certificate (`tls`), told apart by the first
/// byte a client sends (a TLS handshake record is 0x16), so a scraper keeps plain HTTP.
/// Returns the bound address.
pub async fn serve(listen: SocketAddr, state: Arc<AppState>, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let loopback = addr.ip().is_loopback();
    if !loopback {
        log::warn!(target: "scimd::http", "metrics are served on {addr}, which is not a loopback address");
    }
    // A few scrapers and an operator: a bounded number of connections, so an address off
    // the loopback cannot hold the process's descriptors open.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { continue };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
            let (state, tls) = (Arc::clone(&state), tls.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let mut first = [0u8; 1];
                let handshake = match tokio::time::timeout(std::time::Duration::from_secs(10), stream.peek(&mut first)).await {
                    Ok(Ok(1)) => first[0] == 0x16,
                    _ => return,
                };
                match (handshake, tls) {
                    (true, Some(tls)) => {
                        let Ok(Ok(stream)) = tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(stream)).await else { return };
                        connection(state, TokioIo::new(stream), peer, true, true).await;
                    }
                    (true, None) => {}
                    (false, _) => connection(state, TokioIo::new(stream), peer, loopback, false).await,
                }
            });
        }
    });
    Ok((addr, task))
}

/// One connection of the operator listener; `private`: the console may be served on it
/// (TLS, or the loopback); `tls`: it is TLS (the console's cookies are `Secure`).
async fn connection<I>(state: Arc<AppState>, io: I, peer: SocketAddr, private: bool, tls: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = Arc::clone(&state);
        async move {
            let console = req.uri().path() == "/console" || req.uri().path().starts_with("/console/");
            let resp = if console {
                if private {
                    // Boxed: the pages' futures are large, and a test runs the server on its own stack.
                    Box::pin(super::console::handle(&state, req, peer, tls)).await
                } else {
                    // Plain HTTP off the loopback would carry the operator's password and
                    // session in clear: the console answers only over TLS there.
                    let mut r = Response::new(Full::new(Bytes::from_static(b"the console needs https on this address (or reach the loopback listener over an SSH tunnel)\n")));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            } else if req.method() == Method::GET && req.uri().path() == "/metrics" {
                let mut r = Response::new(Full::new(Bytes::from(render(&state).await)));
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
                r
            } else if req.method() == Method::GET && req.uri().path() == "/healthz" {
                let mut r = Response::new(Full::new(Bytes::from(operator_health(&state).await.to_string())));
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
                r
            } else {
                let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    // One request a connection, its header within 10 s: nothing is held open for long.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .keep_alive(false)
        .serve_connection(io, service)
        .await;
}
