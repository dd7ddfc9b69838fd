//! Many tenants on one server: the real binary with a hard open-file limit far below what
//! one open tenant each would need, touched in random order. Every request must succeed,
//! writes must survive their tenant's close and reopen, and threads and descriptors must
//! stay within what the open bound allows (the scaled-down run of the 10,000-tenant
//! benchmark in `benches/`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scimd::store::Store;
use scimd::tenant::{DataDir, TenantId};
use serde_json::json;

use crate::support::*;

const TENANTS: usize = 500;
const OPEN_BOUND: usize = 16;
/// 256 on two cores: the connections (16), the open bound's files and serve's margin.
fn nofile() -> u64 {
    256.max((16 + OPEN_BOUND * scimd::store::fds_per_open_tenant() + 64) as u64)
}
const CLIENTS: usize = 8;

fn tenant(n: usize) -> String {
    format!("t{n:03}")
}

/// A fixed shuffle (no rand crate): the order a client visits the tenants in.
fn order(seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..TENANTS).collect();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    for i in (1..v.len()).rev() {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.swap(i, (x >> 33) as usize % (i + 1));
    }
    v
}

fn proc_count(pid: u32, what: &str) -> usize {
    match what {
        "fds" => std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0),
        _ => std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().parse().unwrap_or(0))))
            .unwrap_or(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_tenants_within_256_open_files() {
    assert!(nofile() == 256 || scimd::store::fds_per_open_tenant() > 11, "the limit is 256 on this machine's cores");
    let dir = TempDir::new("many");
    let data = DataDir::new(dir.path().join("data"));
    for n in 0..TENANTS {
        let id = TenantId::parse(&tenant(n)).unwrap();
        data.create_tenant(&id).unwrap();
        std::fs::write(data.settings_file(&id), "require_username_is_email = false\n").unwrap();
        let store = Store::open(&data.database(&id)).unwrap();
        scimd::commands::add_admin(&store, ADMIN, PASSWORD, TEST_KDF_ITERATIONS).await.unwrap();
        store.close();
    }
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let bound = OPEN_BOUND.to_string();
    let env = [("SCIMD_MAX_OPEN_TENANTS", bound.as_str()), ("SCIMD_MAX_CONNECTIONS", "16")];
    let server = ServeBinary::start_limited(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info,scimd::http::access=warn", &env, Some(nofile())).await;
    server.wait_for_log("metrics on http://").await;
    let metrics_addr: std::net::SocketAddr = server.metrics_addr();
    let pid = server.child.id();

    // Threads and descriptors, sampled while the clients run.
    let running = Arc::new(AtomicBool::new(true));
    let (max_fds, max_threads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sampler = {
        let (running, max_fds, max_threads) = (Arc::clone(&running), Arc::clone(&max_fds), Arc::clone(&max_threads));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                max_fds.fetch_max(proc_count(pid, "fds"), Ordering::Relaxed);
                max_threads.fetch_max(proc_count(pid, "threads"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Pass 1 creates one user in every tenant; pass 2 finds them. With 16 open of 500,
    // every tenant was closed in between, so each find reads a reopened database.
    let started = Instant::now();
    let mut clients = Vec::new();
    // Pass 2 begins when every client has finished pass 1: a client that got there first
    // looked for users another client had not created yet (a flaky "totalResults": 0).
    let between_passes = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    for c in 0..CLIENTS {
        let (addr, ca, between_passes) = (server.addr, certs.ca_cert.clone(), Arc::clone(&between_passes));
        clients.push(tokio::spawn(async move {
            let (mut conn, _) = connect(addr, &[&ca]).await;
            let mut failures = Vec::new();
            let mine: Vec<usize> = order(c as u64).into_iter().filter(|n| n % CLIENTS == c).collect();
            for &n in &mine {
                let t = tenant(n);
                let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("user-of-{t}")});
                let (status, _) = send(&mut conn, "POST", &format!("/t/{t}/scim/v2/Users"), Some(body)).await;
                if status != 201 {
                    failures.push(format!("POST in {t}: {status}"));
                }
            }
            between_passes.wait().await;
            // Every client visits every tenant here, each in its own order, so requests meet
            // tenants that another client's request is opening or closing.
            for n in order(100 + c as u64).into_iter().step_by(2) {
                let t = tenant(n);
                let path = format!("/t/{t}/scim/v2/Users?filter=userName%20eq%20%22user-of-{t}%22");
                let (status, body) = send(&mut conn, "GET", &path, None).await;
                if status != 200 || body["totalResults"] != 1 {
                    failures.push(format!("GET in {t}: {status} {body}"));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    assert!(failures.is_empty(), "{} of {} requests failed, e.g. {:?}\n{}", failures.len(), TENANTS + CLIENTS * TENANTS / 2, &failures[..failures.len().min(5)], server.log());

    let (_, metrics) = crate::metrics::scrape(metrics_addr, "/metrics").await;
    let value = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok())).unwrap_or_else(|| panic!("{name} not in {metrics}"))
    };
    assert!(value("scimd_open_tenants ") <= OPEN_BOUND as f64);
    assert!(value("scimd_tenant_opens_total ") >= (TENANTS + TENANTS / 2) as f64, "tenants opened again in the second pass");
    assert!(value("scimd_tenant_closes_total{reason=\"evicted\"} ") >= (TENANTS + TENANTS / 2 - OPEN_BOUND) as f64);
    // Every tenant has its gauges, the closed ones from the catalogue as they were when they
    // closed: all had the same requests, so all must show what the open ones show live.
    let users: Vec<f64> = metrics.lines().filter_map(|l| l.strip_prefix("scimd_tenant_users{").and_then(|r| r.split_once("} ")).and_then(|(_, v)| v.parse().ok())).collect();
    assert_eq!(users.len(), TENANTS, "one gauge per tenant");
    assert!(users.iter().all(|u| *u == users[0]) && users[0] >= 1.0, "closed tenants as they closed: {users:?}");
    let (fds, threads) = (max_fds.load(Ordering::Relaxed), max_threads.load(Ordering::Relaxed));
    // The writer threads are the open bound; the rest are tokio's workers and blocking pool.
    assert!(threads < 64 + OPEN_BOUND, "{threads} threads");
    // Connections, the open tenants' files, and a margin for listeners, logs and the reads
    // running beyond a pool: well under the limit, and independent of the 500.
    let budget = 16 + OPEN_BOUND * scimd::store::fds_per_open_tenant() + 48;
    assert!(fds <= budget, "{fds} descriptors, more than {budget}");
    eprintln!("{} requests over {TENANTS} tenants (open bound {OPEN_BOUND}) in {elapsed:?}; at most {threads} threads, {fds} descriptors", TENANTS + CLIENTS * TENANTS / 2);
}

/// The token-expiry check and `/metrics` read closed tenants from the catalogue: only the
/// tenant with a token inside its warning window is opened. The catalogue is removed
/// first, so the server also fills it from the databases (an upgrade from a scimd without one).
#[tokio::test]
async fn closed_tenants_are_watched_without_being_opened() {
    let dir = TempDir::new("catalogue");
    let data = DataDir::new(dir.path().join("data"));
    for n in 0..20 {
        let id = TenantId::parse(&format!("quiet{n}")).unwrap();
        data.create_tenant(&id).unwrap();
    }
    let id = TenantId::parse("expiring").unwrap();
    data.create_tenant(&id).unwrap();
    {
        let tenant = Arc::new(scimd::tenant::Tenant::open(&data, &id).unwrap());
        scimd::commands::add_admin(&tenant.store, ADMIN, PASSWORD, TEST_KDF_ITERATIONS).await.unwrap();
        // Issued 171 days ago, so it expires inside the 30-day warning window.
        let then = scimd::clock::UtcMillis(scimd::clock::UtcMillis::now().0 - 171 * 86_400_000);
        scimd::auth::token::keygen(Arc::clone(&tenant), "test", then).await.unwrap();
        let admin_id = tenant.store.read(|c| scimd::store::users::find_account(c, ADMIN)).await.unwrap().unwrap().id;
        scimd::auth::token::issue(&tenant, "test", &admin_id, false, then).await.unwrap();
        tenant.store.close();
    }
    for leftover in ["catalogue.db", "catalogue.db-wal", "catalogue.db-shm"] {
        let _ = std::fs::remove_file(data.root().join(leftover));
    }
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=debug").await;
    server.wait_for_log("the bearer token of scim-admin expires in").await;
    let log = server.log();
    assert!(log.contains("recorded 21 tenants in the catalogue"), "{log}");
    assert!(log.contains("tenant expiring: opened"), "{log}");
    assert!(!log.contains("tenant quiet"), "a tenant without tokens was opened:\n{log}");
    let metrics_addr: std::net::SocketAddr = server.metrics_addr();
    let (_, metrics) = crate::metrics::scrape(metrics_addr, "/metrics").await;
    assert_eq!(metrics.lines().filter(|l| l.starts_with("scimd_tenant_users{")).count(), 21, "{metrics}");
    let left: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("scimd_token_expiry_seconds{{tenant=\"expiring\",owner=\"{ADMIN}\"}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no expiry gauge:\n{metrics}"));
    assert!((86_400.0..=30.0 * 86_400.0).contains(&left), "{left}");
    assert!(!server.log().contains("tenant quiet"), "the scrape opened a tenant");
}

/// A tenant's catalogue row is written when it closes. A server killed while a tenant was
/// open never wrote it, so the next start reads again every tenant whose database changed
/// after its row was recorded, and only those.
#[tokio::test]
async fn a_tenant_changed_since_its_record_is_read_again_at_start() {
    let dir = TempDir::new("stale-catalogue");
    let data = DataDir::new(dir.path().join("data"));
    let (quiet, killed) = (TenantId::parse("quiet").unwrap(), TenantId::parse("killed").unwrap());
    data.create_tenant(&quiet).unwrap();
    data.create_tenant(&killed).unwrap();
    scimd::tenant::Tenant::open(&data, &killed).unwrap().close();
    assert_eq!(data.backfill_catalogue().unwrap(), 0, "both were recorded when they were made or closed");
    let before = data.catalogue().all().unwrap()["killed"].users;
    // Written and never closed, as by a server killed with the tenant open: the writer and
    // its connection are leaked, the row is committed, the catalogue never hears of it.
    let tenant = scimd::tenant::Tenant::open(&data, &killed).unwrap();
    scimd::commands::add_admin(&tenant.store, ADMIN, PASSWORD, TEST_KDF_ITERATIONS).await.unwrap();
    std::mem::forget(tenant);
    assert_eq!(data.catalogue().all().unwrap()["killed"].users, before, "not recorded yet");
    assert_eq!(data.backfill_catalogue().unwrap(), 1, "only the tenant that changed is read again");
    assert_eq!(data.catalogue().all().unwrap()["killed"].users, before + 1);
    assert_eq!(data.backfill_catalogue().unwrap(), 0, "its new record is current");
}

/// `serve` fits its settings into the open-file limit: a default `max_open_tenants` is
/// lowered to what fits, with a WARN; one that was set, and cannot fit, refuses the start
/// and names the setting; `scimd check` warns about the same.
#[tokio::test]
async fn the_open_file_limit_decides_how_many_tenants_may_open() {
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("fit");
    let data = binary_data_dir(dir.path()).await;
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let limited = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scimd"));
        command.args(args).envs(env.iter().copied()).env_remove("SCIMD_CONFIG").env("SCIMD_DATA_DIR", data.root());
        let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
        // SAFETY: setrlimit is async-signal-safe; it only changes the child's own limit.
        unsafe {
            command.pre_exec(move || if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
        }
        command
    };
    let serve = ["serve", "--listen", "127.0.0.1:0", "--cert", certs.server_cert.to_str().unwrap(), "--key", certs.server_key.to_str().unwrap()];
    let out = limited(&serve, &[("SCIMD_MAX_CONNECTIONS", "64"), ("SCIMD_MAX_OPEN_TENANTS", "100")]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {said}");
    assert!(said.contains("refusing to start") && said.contains("lower max_open_tenants to") && said.contains("LimitNOFILE"), "{said}");

    let log_path = dir.path().join("fit.log");
    let mut child = limited(&serve, &[("SCIMD_MAX_CONNECTIONS", "64"), ("SCIMD_METRICS_LISTEN", "off")])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("serving on") {
            break log;
        }
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "did not start: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("so max_open_tenants is") && log.contains("(not 256)"), "{log}");

    let out = limited(&["check"], &[]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.lines().any(|l| l.starts_with("WARN") && l.contains("open files: the limit is 256")), "{said}");
}
