//! `/metrics`: scraped over HTTP from its own listener and parsed strictly as Prometheus
//! text exposition.

use std::collections::HashMap;

use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{basic, TestServer, ADMIN, PASSWORD};

/// GET over plain HTTP/1.1 with `Connection: close`; returns (status line, body).
pub async fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// One sample: metric name, labels, value.
type Sample = (String, HashMap<String, String>, f64);

/// A strict parser for the text format: every line is a comment or a valid sample, and
/// every sample's family was declared with `# TYPE` before it.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            assert!(matches!(parts.next(), Some("counter" | "gauge" | "histogram")), "bad TYPE line: {line}");
            typed.push(name);
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"))),
            None => (series, ""),
        };
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
        let mut map = HashMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        assert!(typed.iter().any(|t| t == name || t == family), "sample before its TYPE: {line}");
        samples.push((name.to_string(), map, value));
    }
    samples
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
}

#[tokio::test]
async fn metrics_are_scraped_and_parse() {
    let s = TestServer::start().await;
    let metrics = s.metrics_addr.expect("metrics are on");
    assert!(metrics.ip().is_loopback());
    s.get("/Users").await;
    s.get("/Users").await;
    s.get("/Users/no-such-id").await;
    s.client.as_(&basic(ADMIN, "wrong"), Method::GET, "/t/acme/scim/v2/Users").await;
    s.client.as_(&basic(ADMIN, PASSWORD), Method::POST, "/t/acme/rest/token/apiKeygen").await;
    s.client.as_(&basic(ADMIN, PASSWORD), Method::GET, "/t/acme/rest/token").await;

    let (status, body) = scrape(metrics, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let samples = parse(&body);
    let count = |route: &str, status: &str| find(&samples, "scimd_http_requests_total", &[("route", route), ("method", "GET"), ("status", status)]).map(|s| s.2);
    assert_eq!(count("/scim/v2/Users", "200"), Some(2.0));
    assert_eq!(count("/scim/v2/Users/{id}", "404"), Some(1.0));
    assert_eq!(count("/scim/v2/Users", "401"), Some(1.0));
    assert_eq!(count("/rest/token", "200"), Some(1.0));
    assert_eq!(find(&samples, "scimd_auth_failures_total", &[("tenant", "acme"), ("reason", "invalid")]).map(|s| s.2), Some(1.0));
    // The histogram: cumulative buckets ending in +Inf = count.
    let buckets: Vec<f64> = samples.iter().filter(|(n, _, _)| n == "scimd_http_request_duration_seconds_bucket").map(|s| s.2).collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let total = find(&samples, "scimd_http_request_duration_seconds_count", &[]).unwrap().2;
    assert_eq!(*buckets.last().unwrap(), total);
    assert_eq!(total, 6.0);
    // Per-tenant gauges and the token's time left (182 days, give or take the test's run).
    assert_eq!(find(&samples, "scimd_tenant_users", &[("tenant", "acme")]).unwrap().2, 1.0);
    assert_eq!(find(&samples, "scimd_tenant_groups", &[("tenant", "other")]).unwrap().2, 0.0);
    let left = find(&samples, "scimd_token_expiry_seconds", &[("tenant", "acme"), ("owner", ADMIN)]).unwrap().2;
    assert!((left - 182.0 * 86_400.0).abs() < 120.0, "{left}");
    // Only /metrics is served there.
    assert!(scrape(metrics, "/").await.0.starts_with("HTTP/1.1 404"));
}
