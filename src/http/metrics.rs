//! Prometheus metrics, served in the text exposition format on a separate listener
//! (loopback by default): request counts by route, method and status, a latency
//! histogram, auth failures, connections refused by reason and open connections by state,
//! and — read at scrape time — users, active users and groups per tenant and the seconds
//! left on every live bearer token.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::admission::Refusal;
use super::router::AppState;
use crate::clock::UtcMillis;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    auth_failures: Mutex<BTreeMap<(String, String), u64>>,
    /// Indexed by `Refusal as usize`: a fixed set of labels, so plain atomics.
    connections_refused: [AtomicU64; Refusal::ALL.len()],
    connections_pending: AtomicU64,
    connections_established: AtomicU64,
}

/// The route a path belongs to, without ids or tenant names (bounded label values).
pub fn route_label(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["healthz"] => "/healthz".into(),
        ["t", _, "scim", "v2", rest @ ..] => match rest {
            [] => "/scim/v2".into(),
            [kind @ ("Users" | "Groups"), ".search"] => format!("/scim/v2/{kind}/.search"),
            [kind @ ("Users" | "Groups"), _] => format!("/scim/v2/{kind}/{{id}}"),
            [one] if matches!(*one, "Users" | "Groups" | "Me" | "Bulk" | ".search" | "ServiceProviderConfig" | "ResourceTypes" | "Schemas") => format!("/scim/v2/{one}"),
            [disc @ ("ResourceTypes" | "Schemas"), _] => format!("/scim/v2/{disc}/{{id}}"),
            _ => "other".into(),
        },
        ["t", _, "rest", "token", rest @ ..] => match rest {
            [] => "/rest/token".into(),
            [one @ ("current" | "apiKeygen" | "deleteKey")] => format!("/rest/token/{one}"),
            _ => "other".into(),
        },
        ["t", _, "events"] => "/events".into(),
        _ => "other".into(),
    }
}

impl Metrics {
    pub fn observe(&self, route: String, method: &Method, status: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, method.to_string(), status)).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn connection_refused(&self, reason: Refusal) {
        self.connections_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Open connections: TLS handshakes in progress and established ones.
    pub fn set_connections(&self, pending: usize, established: usize) {
        self.connections_pending.store(pending as u64, Ordering::Relaxed);
        self.connections_established.store(established as u64, Ordering::Relaxed);
    }

    pub fn auth_failure(&self, tenant: &str, reason: &str) {
        if let Ok(mut m) = self.auth_failures.lock() {
            *m.entry((tenant.to_string(), reason.to_string())).or_default() += 1;
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text.
pub async fn render(state: &AppState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP scimd_http_requests_total HTTP requests by route, method and status.");
    let _ = writeln!(out, "# TYPE scimd_http_requests_total counter");
    for ((route, method, status), n) in m.requests.lock().map(|g| g.clone()).unwrap_or_default() {
        let _ = writeln!(out, "scimd_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}", escape(&route));
    }
    let _ = writeln!(out, "# HELP scimd_http_request_duration_seconds Time from request to response.");
    let _ = writeln!(out, "# TYPE scimd_http_request_duration_seconds histogram");
    for (i, bound) in BUCKETS.iter().enumerate() {
        let _ = writeln!(out, "scimd_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}", m.buckets[i].load(Ordering::Relaxed));
    }
    let count = m.latency_count.load(Ordering::Relaxed);
    let _ = writeln!(out, "scimd_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "scimd_http_request_duration_seconds_sum {}", m.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
    let _ = writeln!(out, "scimd_http_request_duration_seconds_count {count}");
    let _ = writeln!(out, "# HELP scimd_auth_failures_total Refused credentials by tenant and reason.");
    let _ = writeln!(out, "# TYPE scimd_auth_failures_total counter");
    for ((tenant, reason), n) in m.auth_failures.lock().map(|g| g.clone()).unwrap_or_default() {
        let _ = writeln!(out, "scimd_auth_failures_total{{tenant=\"{}\",reason=\"{reason}\"}} {n}", escape(&tenant));
    }
    let _ = writeln!(out, "# HELP scimd_connections_refused_total Connections closed before they were served, by reason.");
    let _ = writeln!(out, "# TYPE scimd_connections_refused_total counter");
    for reason in Refusal::ALL {
        let _ = writeln!(out, "scimd_connections_refused_total{{reason=\"{}\"}} {}", reason.label(), m.connections_refused[reason as usize].load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP scimd_connections Open connections: pending (TLS handshake in progress) and established.");
    let _ = writeln!(out, "# TYPE scimd_connections gauge");
    let _ = writeln!(out, "scimd_connections{{state=\"pending\"}} {}", m.connections_pending.load(Ordering::Relaxed));
    let _ = writeln!(out, "scimd_connections{{state=\"established\"}} {}", m.connections_established.load(Ordering::Relaxed));
    let now = (state.clock)();
    let mut gauges = String::new();
    let mut tokens = String::new();
    for id in state.tenants.data().list_tenants().unwrap_or_default() {
        let Ok(Some(tenant)) = state.tenants.get(&id).await else { continue };
        let counts = tenant.store.scan(crate::store::tenant_counts).await;
        if let Ok((users, active, groups)) = counts {
            let t = escape(id.as_str());
            let _ = writeln!(gauges, "scimd_tenant_users{{tenant=\"{t}\"}} {users}");
            let _ = writeln!(gauges, "scimd_tenant_active_users{{tenant=\"{t}\"}} {active}");
            let _ = writeln!(gauges, "scimd_tenant_groups{{tenant=\"{t}\"}} {groups}");
        }
        if let Ok(live) = crate::auth::token::live(&tenant, now).await {
            for token in live {
                let left = UtcMillis::parse_rfc3339(&token.expires_at).map(|e| (e.0 - now.0) / 1000).unwrap_or(0);
                let _ = writeln!(tokens, "scimd_token_expiry_seconds{{tenant=\"{}\",owner=\"{}\"}} {left}", escape(id.as_str()), escape(&token.user_name));
            }
        }
    }
    let _ = writeln!(out, "# HELP scimd_tenant_users Users per tenant (not soft-deleted); scimd_tenant_active_users and scimd_tenant_groups likewise.");
    let _ = writeln!(out, "# TYPE scimd_tenant_users gauge");
    let _ = writeln!(out, "# TYPE scimd_tenant_active_users gauge");
    let _ = writeln!(out, "# TYPE scimd_tenant_groups gauge");
    out.push_str(&gauges);
    let _ = writeln!(out, "# HELP scimd_token_expiry_seconds Seconds until each live bearer token expires.");
    let _ = writeln!(out, "# TYPE scimd_token_expiry_seconds gauge");
    out.push_str(&tokens);
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
            .map(|(t, days)| format!("the bearer token of {} expires in {days} days ({}); rotate it", t.user_name, t.expires_at))
            .collect();
        if reasons.is_empty() {
            tenants.remove(tenant.id.as_str());
        } else {
            tenants.insert(tenant.id.to_string(), reasons);
        }
    }
    if tenants.is_empty() {
        return json!({"status": "ok"});
    }
    let detail: serde_json::Map<String, serde_json::Value> =
        tenants.into_iter().map(|(id, reasons)| (id, json!({"status": "degraded", "reasons": reasons}))).collect();
    json!({"status": "degraded", "tenants": detail})
}

/// Serves `GET /metrics` and the operator's `GET /healthz` over plain HTTP on `listen`;
/// returns the bound address.
pub async fn serve(listen: SocketAddr, state: Arc<AppState>) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        log::warn!(target: "scimd::http", "metrics are served on {addr}, which is not a loopback address");
    }
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let resp = if req.method() == Method::GET && req.uri().path() == "/metrics" {
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
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((addr, task))
}
