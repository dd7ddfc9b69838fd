//! Reads every user of a running scimd as Okta's import does (issue 19): `GET /Users` with
//! `startIndex` 1, 101, 201, … and `count=100` on one keep-alive TLS connection, until a
//! page comes back empty. Prints one JSON line: users and pages read, the whole walk's
//! seconds, page latency p50/p99, and the mean latency of the last ten pages over the first
//! ten (target <= 2: a page costs O(page), not O(startIndex)).
//!
//! `target/release/examples/bench-import --base URL --ca FILE --token T [--count 100]`

use std::time::Instant;

use serde_json::json;

#[path = "client.rs"]
mod client;
use client::{connector, Args, Conn};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench-import: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = Args::from_env();
    let (base, token) = (args.get("--base")?, args.get("--token")?);
    let count = args.num_or("--count", 100)?;
    let tls = connector(std::path::Path::new(&args.get("--ca")?))?;
    let authority = base.split('/').nth(2).ok_or("base URL has no host")?;
    let path = base.splitn(4, '/').nth(3).map(|p| format!("/{p}")).ok_or("base URL has no path")?;
    let mut conn = Conn::open(authority, &tls, format!("Bearer {token}")).await?;
    let (mut start, mut latencies) = (1usize, Vec::new());
    let began = Instant::now();
    loop {
        let sent = Instant::now();
        let (status, body) = conn.send("GET", &format!("{path}/Users?startIndex={start}&count={count}"), None).await?;
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(format!("startIndex={start}: status {status}: {body}"));
        }
        let n = body["Resources"].as_array().map_or(0, Vec::len);
        if n == 0 {
            break;
        }
        start += n;
    }
    let seconds = began.elapsed().as_secs_f64();
    let pages = latencies.len();
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    // The empty page at the end is not a page of users.
    let full = &latencies[..pages.saturating_sub(1)];
    let tail = mean(&full[full.len().saturating_sub(10)..]) / mean(&full[..full.len().min(10)]);
    let mut sorted = full.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let out = json!({
        "users": start - 1, "pages": full.len(), "seconds": (seconds * 10.0).round() / 10.0,
        "p50_ms": at(0.5), "p99_ms": at(0.99), "last_over_first": (tail * 100.0).round() / 100.0,
    });
    println!("{out}");
    Ok(())
}
