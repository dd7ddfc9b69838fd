//! The client of `benches/tenants.sh` (issue 16): touches random tenants of a running scimd
//! for `--seconds`, over `--connections` keep-alive TLS connections, while sampling the
//! server's RSS, threads and open files once a second. Each step is two `GET
//! /Users?count=1` to one random tenant: the first almost always meets a closed tenant
//! (with an open bound of B among N tenants, it is open with odds B/N), the second an open
//! one, so the two latency sets are "cold" and "warm". Tenants listed in `--tokens`
//! (`tenant token` per line) are called with their bearer token, the others with Basic.
//! Prints one JSON line.
//!
//! `--rate R` paces the steps (R a second over all connections, each connection on its own
//! schedule) and times each cold request from when it was due, not from when it was sent,
//! so a late server is charged for the wait it caused (no coordinated omission); without
//! it (or `--rate 0`) every connection steps as fast as it is answered, which saturates
//! the server: then latency is only the queue (Little's law: connections / throughput).
//!
//! `target/release/examples/bench-tenants --addr HOST:PORT --ca FILE --tenants N
//!  --password P --tokens FILE --seconds S --pid PID [--connections 16] [--rate R]`

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

#[path = "client.rs"]
mod client;
use client::{connector, Args, Conn};

struct Options {
    addr: String,
    ca: std::path::PathBuf,
    tenants: usize,
    password: String,
    tokens: HashMap<String, String>,
    seconds: u64,
    pid: u32,
    connections: usize,
    rate: f64,
}

fn options() -> Result<Options, String> {
    let args = Args::from_env();
    let tokens = std::fs::read_to_string(args.get("--tokens")?).map_err(|e| e.to_string())?;
    Ok(Options {
        addr: args.get("--addr")?,
        ca: args.get("--ca")?.into(),
        tenants: args.num("--tenants")?,
        password: args.get("--password")?,
        tokens: tokens.lines().filter_map(|l| l.split_once(' ')).map(|(t, k)| (t.to_string(), k.to_string())).collect(),
        seconds: args.num("--seconds")? as u64,
        pid: args.num("--pid")? as u32,
        connections: args.num_or("--connections", 16)?,
        rate: args.num_or("--rate", 0)? as f64,
    })
}

fn tenant(n: usize) -> String {
    format!("t{n:05}")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

/// RSS in MiB, threads and open descriptors of `pid`.
fn sample(pid: u32) -> (f64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
    (field("VmRSS:") as f64 / 1024.0, field("Threads:"), fds)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let opts = Arc::new(options()?);
    let tls = connector(&opts.ca)?;
    let stop = Instant::now() + Duration::from_secs(opts.seconds);
    let running = Arc::new(AtomicBool::new(true));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (running, samples, pid) = (Arc::clone(&running), Arc::clone(&samples), opts.pid);
        tokio::spawn(async move {
            let started = Instant::now();
            while running.load(Ordering::Relaxed) {
                let (rss, threads, fds) = sample(pid);
                if let Ok(mut s) = samples.lock() {
                    s.push((started.elapsed().as_secs(), rss, threads, fds));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for c in 0..opts.connections {
        let (opts, tls, ok, failed) = (Arc::clone(&opts), tls.clone(), Arc::clone(&ok), Arc::clone(&failed));
        workers.push(tokio::spawn(async move {
            let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("scim-admin:{}", opts.password)));
            let mut conn = Conn::open(&opts.addr, &tls, basic.clone()).await?;
            let (mut cold, mut warm, mut bearer_n) = (Vec::new(), Vec::new(), 0u64);
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            let mut failures = Vec::new();
            let interval = (opts.rate > 0.0).then(|| Duration::from_secs_f64(opts.connections as f64 / opts.rate));
            // Connections start spread over one interval, not all at once.
            let mut due = Instant::now() + interval.map(|i| i.mul_f64(c as f64 / opts.connections as f64)).unwrap_or_default();
            while Instant::now() < stop {
                let step_started = match interval {
                    Some(every) => {
                        tokio::time::sleep_until(due.into()).await;
                        let at = due;
                        due += every;
                        at
                    }
                    None => Instant::now(),
                };
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let t = tenant((seed % opts.tenants as u64) as usize);
                conn.authorization = match opts.tokens.get(&t) {
                    Some(token) => {
                        bearer_n += 1;
                        format!("Bearer {token}")
                    }
                    None => basic.clone(),
                };
                let url = format!("/t/{t}/scim/v2/Users?count=1");
                for (n, times) in [&mut cold, &mut warm].into_iter().enumerate() {
                    let started = if n == 0 { step_started } else { Instant::now() };
                    let (status, body) = conn.send("GET", &url, None).await?;
                    times.push(started.elapsed().as_micros() as u64);
                    if (200..300).contains(&status) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if failures.len() < 5 {
                            failures.push(format!("{t}: {status} {body}"));
                        }
                    }
                }
            }
            Ok::<_, String>((cold, warm, bearer_n, failures))
        }));
    }
    let (mut cold, mut warm, mut bearer, mut failures) = (Vec::new(), Vec::new(), 0, Vec::new());
    for w in workers {
        let (c, h, b, f) = w.await.map_err(|e| e.to_string())??;
        cold.extend(c);
        warm.extend(h);
        bearer += b;
        failures.extend(f);
    }
    running.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    cold.sort_unstable();
    warm.sort_unstable();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let max = |f: fn(&(u64, f64, u64, u64)) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    // Once the open bound is reached (the first half minute), RSS, threads and files must
    // stay flat: the spread over the rest of the run.
    let late: Vec<_> = samples.iter().filter(|s| s.0 >= 30).collect();
    let spread = |f: fn(&&(u64, f64, u64, u64)) -> f64| {
        let v: Vec<f64> = late.iter().map(f).collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "{}",
        json!({
            "phase": "tenants",
            "tenants": opts.tenants,
            "seconds": opts.seconds,
            "rate": opts.rate,
            "requests": ok + failed,
            "share_2xx": ok as f64 / (ok + failed).max(1) as f64,
            "bearer_steps": bearer,
            "failures": failures,
            "cold_p50_ms": percentile(&cold, 0.50),
            "cold_p99_ms": percentile(&cold, 0.99),
            "warm_p50_ms": percentile(&warm, 0.50),
            "warm_p99_ms": percentile(&warm, 0.99),
            "max_rss_mib": max(|s| s.1),
            "max_threads": max(|s| s.2 as f64),
            "max_fds": max(|s| s.3 as f64),
            "after_30s_spread": {"rss_mib": spread(|s| s.1), "threads": spread(|s| s.2 as f64), "fds": spread(|s| s.3 as f64)},
            "samples": samples.iter().filter(|s| s.0 % 30 == 0).map(|s| json!({"t": s.0, "rss_mib": s.1, "threads": s.2, "fds": s.3})).collect::<Vec<_>>(),
        })
    );
    Ok(())
}
