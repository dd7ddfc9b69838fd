//! What opening and closing one tenant costs (issue 16 item 4), phase by phase, on a real
//! tenant database in a temp directory: `Tenant::open` (settings, the store with its writer
//! thread, file modes, keys), the first read (a pooled read connection is made), and
//! `Tenant::close` (the writer's summary for the catalogue, its stop and checkpoint, the
//! catalogue's commit); then the store alone.
//!
//! `cargo bench --bench lifecycle` (`LIFECYCLE_ROUNDS`, default 300; 3 under `cargo test`).

use std::time::{Duration, Instant};

use scimd::store::Store;
use scimd::tenant::{DataDir, Tenant, TenantId};

fn report(phase: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!("{{\"phase\":\"{phase}\",\"runs\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}", samples.len(), at(0.5), at(0.99));
}

fn timed<T>(samples: &mut Vec<Duration>, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    samples.push(started.elapsed());
    out
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if benching { std::env::var("LIFECYCLE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300) } else { 3 };
    let root = std::env::temp_dir().join(format!("scimd-bench-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = DataDir::new(&root);
    let id = TenantId::parse("bench").expect("a valid id");
    data.create_tenant(&id).expect("tenant created");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");

    let (mut open, mut first_read, mut close) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let tenant = timed(&mut open, || Tenant::open(&data, &id).expect("open"));
        timed(&mut first_read, || runtime.block_on(tenant.store.read(|db| scimd::store::users::find_account(db, "nobody"))).expect("read"));
        timed(&mut close, || tenant.close());
    }
    report("tenant_open", open);
    report("first_read", first_read);
    report("tenant_close", close);

    let (mut open, mut close) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let store = timed(&mut open, || Store::open(&data.database(&id)).expect("store"));
        timed(&mut close, || store.close());
    }
    report("store_open", open);
    report("store_close", close);
    let _ = std::fs::remove_dir_all(&root);
}
