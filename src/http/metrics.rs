//! What the server counts for Prometheus: request counts by route, method and status, a
//! latency histogram, auth failures, connections refused by reason and open connections by
//! state. `operator.rs` renders them (with the gauges read at scrape time) on the operator
//! listener.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hyper::Method;


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

impl Metrics {
    pub fn observe(&self, route: &'static str, method: &Method, status: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
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

/// Why a connection was closed before it was served. The discriminant indexes the
/// metrics counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot holds an established connection.
    MaxConnections = 0,
    /// The address holds `max_connections_per_address` established connections.
    ConnectionsPerAddress = 1,
    /// The address has `max_handshakes_per_address` handshakes in progress.
    HandshakesPerAddress = 2,
    /// A handshake in progress, closed to make room for a new connection.
    Evicted = 3,
    /// The handshake did not finish within `tls_handshake_timeout`.
    HandshakeTimeout = 4,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::MaxConnections,
        Refusal::ConnectionsPerAddress,
        Refusal::HandshakesPerAddress,
        Refusal::Evicted,
        Refusal::HandshakeTimeout,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::ConnectionsPerAddress => "connections_per_address",
            Refusal::HandshakesPerAddress => "handshakes_per_address",
            Refusal::Evicted => "evicted",
            Refusal::HandshakeTimeout => "handshake_timeout",
        }
    }
}

/// A label value in the exposition format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Appends the counters, the histogram and the connection gauges to `out`.
    pub fn render_counters(&self, out: &mut String) {
        let m = self;
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
        let _ = writeln!(out, "# HELP scimd_members_skipped_total Group member ids skipped because they name no user here (the idp dialect).");
        let _ = writeln!(out, "# TYPE scimd_members_skipped_total counter");
        let _ = writeln!(out, "scimd_members_skipped_total {}", crate::scim::groups::MEMBERS_SKIPPED.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP scimd_connections_refused_total Connections closed before they were served, by reason.");
        let _ = writeln!(out, "# TYPE scimd_connections_refused_total counter");
        for reason in Refusal::ALL {
            let _ = writeln!(out, "scimd_connections_refused_total{{reason=\"{}\"}} {}", reason.label(), m.connections_refused[reason as usize].load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP scimd_connections Open connections: pending (TLS handshake in progress) and established.");
        let _ = writeln!(out, "# TYPE scimd_connections gauge");
        let _ = writeln!(out, "scimd_connections{{state=\"pending\"}} {}", m.connections_pending.load(Ordering::Relaxed));
        let _ = writeln!(out, "scimd_connections{{state=\"established\"}} {}", m.connections_established.load(Ordering::Relaxed));
    }
}
