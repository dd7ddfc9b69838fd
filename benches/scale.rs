//! Scale benchmark: a `userName eq` lookup and a one-member add/remove on a group must
//! cost the same with 1,000 and with 1,000,000 users/members (issue 3).
//!
//! `cargo bench --bench scale` (sizes: `SCALE_SIZES=1000,1000000`, iterations:
//! `SCALE_ITERATIONS=2000`). Runs through the real SCIM service layer on a real tenant
//! database in a temp directory (WAL, synchronous=FULL): each member change is a durable
//! commit, so its time includes an fsync.

use std::time::{Duration, Instant};

use scimd::scim::schema::ResourceKind;
use scimd::scim::{self, groups, ListParams, Principal};
use scimd::tenant::{DataDir, TenantId};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, n: usize, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{{\"phase\":\"{name}\",\"rows\":{n},\"iterations\":{},\"mean_us\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        samples.len(),
        mean.as_secs_f64() * 1e6,
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
}

/// Seeds `n` users (plus `spare` outside the group) and one group holding the first `n`.
async fn seed(store: &scimd::store::Store, n: usize, spare: usize) -> String {
    store
        .write(move |conn| {
            let now = "2026-01-01T00:00:00.000Z";
            let mut user = conn.prepare("INSERT INTO users (pk, id, user_name, user_name_key, active, created, last_modified) VALUES (?, ?, ?3, ?3, 1, ?4, ?5)")?;
            let mut email = conn.prepare("INSERT INTO user_emails (user_pk, position, value, type, is_primary) VALUES (?, 0, ?, 'work', 1)")?;
            for i in 0..(n + spare) {
                let pk = i as i64 + 1000;
                let name = format!("user{i}@example.com");
                user.execute(rusqlite::params![pk, format!("{i:032x}"), name, now, now])?;
                email.execute(rusqlite::params![pk, name])?;
            }
            conn.execute("INSERT INTO groups (pk, id, display_name, display_name_key, created, last_modified) VALUES (1, 'big-group', 'Everyone', 'everyone', ?1, ?1)", [now])?;
            conn.execute("INSERT INTO memberships (group_pk, user_pk) SELECT 1, pk FROM users WHERE pk < ?1", [n as i64 + 1000])?;
            Ok(())
        })
        .await
        .expect("seed");
    "big-group".to_string()
}

async fn run(n: usize, iterations: usize) {
    let dir = std::env::temp_dir().join(format!("scimd-bench-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = DataDir::new(&dir);
    let id = TenantId::parse("bench").unwrap();
    data.create_tenant(&id).unwrap();
    let tenant = scimd::tenant::Tenant::open(&data, &id).unwrap();
    let store = &tenant.store;
    let started = Instant::now();
    let group = seed(store, n, iterations).await;
    eprintln!("seeded {n} users and a {n}-member group in {:.1}s", started.elapsed().as_secs_f64());

    let mut lookups = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let k = (i * 7919) % n;
        let params = ListParams { filter: Some(format!("userName eq \"USER{k}@example.com\"")), ..Default::default() };
        let t = Instant::now();
        let found = scim::list(store, scimd::scim::schema::Catalogue::plain(ResourceKind::User), &params, false).await.unwrap();
        lookups.push(t.elapsed());
        assert_eq!(found.items.len(), 1);
    }
    summary("filter userName eq", n, lookups);

    let who = Principal { user_id: "bench".into(), user_name: "bench".into(), via: scimd::scim::Credential::Password };
    let (mut adds, mut removes) = (Vec::with_capacity(iterations), Vec::with_capacity(iterations));
    for i in 0..iterations {
        let member = format!("{:032x}", n + i);
        let add = json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]});
        let t = Instant::now();
        groups::patch(&tenant, &who, &group, &add, None, "2026-01-01T00:00:00.000Z".into()).await.unwrap();
        adds.push(t.elapsed());
        let remove = json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]});
        let t = Instant::now();
        groups::patch(&tenant, &who, &group, &remove, None, "2026-01-01T00:00:00.000Z".into()).await.unwrap();
        removes.push(t.elapsed());
    }
    summary("group member add", n, adds);
    summary("group member remove", n, removes);
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs the same code once on tiny sizes.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .unwrap_or_else(|_| if smoke { "100".into() } else { "1000,1000000".into() })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let iterations: usize = std::env::var("SCALE_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(if smoke { 20 } else { 2000 });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for n in sizes {
        rt.block_on(run(n, iterations));
    }
}
