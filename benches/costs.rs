//! Cost per element of the work issue 13 found growing faster than its input (item 5):
//! a user PATCH adding values, a Bulk request of backward `bulkId` references, and a
//! filter past the scan budget; and (issue 19) a Bulk of independent creates against the
//! create rate of 16 concurrent clients.
//!
//! `cargo bench --bench costs` (sizes: `COSTS_SIZES=100,250,500,1000`; the filter phase
//! seeds `COSTS_FILTER_USERS=600000` users with two emails each, 0 skips it). Runs through
//! the real service layer and Bulk handler on a real tenant database in a temp directory
//! (WAL, synchronous=FULL): every write is a durable commit, so its time includes an fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scimd::clock::UtcMillis;
use scimd::http::request::Query;
use scimd::http::context::Ctx;
use scimd::scim::schema::ResourceKind;
use scimd::scim::{self, users, ListParams, Principal};
use scimd::tenant::{DataDir, Tenant, TenantId};
use serde_json::{json, Value};

const NOW: &str = "2026-01-01T00:00:00.000Z";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(phase: &str, n: usize, per: &str, samples: Vec<Duration>) {
    let runs = samples.len();
    let m = median(samples);
    println!(
        "{{\"phase\":\"{phase}\",\"n\":{n},\"runs\":{runs},\"median_ms\":{:.2},\"per_{per}_us\":{:.1}}}",
        m.as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e6 / n as f64
    );
}

fn emails(tag: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"value": format!("{tag}-{i}@example.com"), "type": "work"})).collect()
}

/// PATCH add of n/2 emails to a user holding n/2: n values handled, the cap reached at n = 1,000.
async fn patch_add(tenant: &Tenant, who: &Principal, n: usize, runs: usize) {
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let tag = format!("p{n}-{run}");
        let user = users::create(tenant, who, &json!({"userName": format!("{tag}@example.com"), "emails": emails(&format!("{tag}-old"), n / 2)}), NOW.into()).await.unwrap();
        let body = json!({"Operations": [{"op": "add", "path": "emails", "value": emails(&format!("{tag}-new"), n - n / 2)}]});
        let t = Instant::now();
        let res = users::patch(tenant, who, &user.id, &body, None, NOW.into()).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(res.attrs["emails"].as_array().unwrap().len(), n);
    }
    report("patch add emails (n/2 to n/2)", n, "value", samples);
}

/// The attack: 25,000 emails added to a user with 25,000 (refused past the cap now).
async fn patch_attack(tenant: &Tenant, who: &Principal) {
    let half = 25_000;
    let user = users::create(tenant, who, &json!({"userName": "attack@example.com"}), NOW.into()).await.unwrap();
    let body = json!({"Operations": [
        {"op": "add", "path": "emails", "value": emails("attack-old", half)},
        {"op": "add", "path": "emails", "value": emails("attack-new", half)}]});
    let t = Instant::now();
    let outcome = users::patch(tenant, who, &user.id, &body, None, NOW.into()).await;
    let took = t.elapsed();
    println!(
        "{{\"phase\":\"patch add 25000 + 25000 emails\",\"outcome\":\"{}\",\"ms\":{:.2}}}",
        match &outcome {
            Ok(_) => "200".to_string(),
            Err(e) => format!("{:?}", e.kind),
        },
        took.as_secs_f64() * 1e3
    );
}

/// A Bulk request of n user creates, each naming the next one's bulkId as its manager.
async fn bulk_backward(tenant: &Arc<Tenant>, who: &Principal, n: usize, runs: usize) {
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let ops: Vec<Value> = (0..n)
            .map(|i| {
                let mut data = json!({"userName": format!("b{n}-{run}-{i}@example.com")});
                if i + 1 < n {
                    data[ENTERPRISE] = json!({"manager": {"value": format!("bulkId:b{}", i + 1)}});
                }
                json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": data})
            })
            .collect();
        let ctx = bench_ctx(tenant, who);
        let t = Instant::now();
        let resp = scimd::http::bulk::run(&ctx, &json!({"Operations": ops})).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(resp.status(), 200);
    }
    report("bulk backward bulkId chain", n, "operation", samples);
}

fn bench_ctx(tenant: &Arc<Tenant>, who: &Principal) -> Ctx {
    Ctx {
        tenant: Arc::clone(tenant),
        users: scimd::scim::schema::Catalogue::of(ResourceKind::User, &tenant.settings()),
        now: UtcMillis::now(),
        principal: who.clone(),
        base_url: "https://localhost/t/bench/scim/v2".into(),
        query: Query::parse(None).unwrap(),
        bulk_max_operations: scimd::http::bulk::MAX_OPERATIONS,
        max_body_bytes: 1 << 20,
    }
}

fn new_user(tag: &str, i: usize) -> Value {
    let name = format!("{tag}-{i}@example.com");
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "name": {"givenName": "G", "familyName": "F"}, "emails": [{"value": name, "type": "work", "primary": true}]})
}

/// Issue 19: a Bulk request of n independent user creates against the same creates sent by
/// 16 concurrent clients (the HTTP benchmark's create phase, without HTTP and TLS) and one
/// at a time. Every create is durable before it is answered in all three.
async fn bulk_independent(tenant: &Arc<Tenant>, who: &Principal, n: usize, runs: usize) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (mut bulk, mut concurrent, mut serial) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let ops: Vec<Value> = (0..n).map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": new_user(&format!("bulk{n}-{run}"), i)})).collect();
        let ctx = bench_ctx(tenant, who);
        let t = Instant::now();
        let resp = scimd::http::bulk::run(&ctx, &json!({"Operations": ops})).await.unwrap();
        bulk.push(t.elapsed());
        assert_eq!(resp.status(), 200);
        let t = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|c| {
                let (tenant, who) = (Arc::clone(tenant), who.clone());
                tokio::spawn(async move {
                    for i in (c..n).step_by(16) {
                        users::create(&tenant, &who, &new_user(&format!("conc{n}-{run}"), i), NOW.into()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        concurrent.push(t.elapsed());
        let t = Instant::now();
        for i in 0..n.min(200) {
            users::create(tenant, who, &new_user(&format!("serial{n}-{run}"), i), NOW.into()).await.unwrap();
        }
        serial.push(t.elapsed() * (n as u32) / (n.min(200) as u32));
    }
    let (b, c, s) = (median(bulk), median(concurrent), median(serial));
    println!(
        "{{\"phase\":\"bulk independent creates\",\"n\":{n},\"runs\":{runs},\"bulk_per_s\":{:.0},\"concurrent16_per_s\":{:.0},\"one_at_a_time_per_s\":{:.0}}}",
        rate(b),
        rate(c),
        rate(s)
    );
}

/// A filter of 64 `emails.value co` clauses over `users` users with two emails each: alone
/// and 8 at once. Past the scan budget it is interrupted (400 tooMany).
async fn filter_budget(tenant: &Arc<Tenant>, users: usize) {
    let started = Instant::now();
    tenant
        .store
        .write(move |conn| {
            conn.execute_batch(&format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users})
                 INSERT INTO users (id, user_name, user_name_key, active, created, last_modified) SELECT 'seed-' || i, 'seed' || i || '@example.com', 'seed' || i || '@example.com', 1, '{NOW}', '{NOW}' FROM n;
                 INSERT INTO user_emails (user_pk, position, value, type) SELECT pk, 0, user_name, 'work' FROM users WHERE id LIKE 'seed-%';
                 INSERT INTO user_emails (user_pk, position, value, type) SELECT pk, 1, 'home.' || user_name, 'home' FROM users WHERE id LIKE 'seed-%';"
            ))?;
            Ok(())
        })
        .await
        .unwrap();
    eprintln!("seeded {users} users with {} email rows in {:.1}s", users * 2, started.elapsed().as_secs_f64());
    let clauses: Vec<String> = (0..64).map(|i| format!("emails.value co \"nomatch{i}\"")).collect();
    let params = ListParams { filter: Some(clauses.join(" or ")), ..Default::default() };
    for concurrent in [1usize, 8] {
        let tasks: Vec<_> = (0..concurrent)
            .map(|_| {
                let (tenant, params) = (Arc::clone(tenant), params.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let outcome = scim::list(&tenant.store, scimd::scim::schema::Catalogue::plain(ResourceKind::User), &params, false).await;
                    (t.elapsed(), outcome.map(|o| o.items.len()).map_err(|e| format!("{:?}", e.kind)))
                })
            })
            .collect();
        let mut worst = Duration::ZERO;
        let mut outcomes = Vec::new();
        for task in tasks {
            let (took, outcome) = task.await.unwrap();
            worst = worst.max(took);
            outcomes.push(match outcome {
                Ok(n) => format!("ok:{n}"),
                Err(kind) => kind,
            });
        }
        outcomes.sort();
        outcomes.dedup();
        println!(
            "{{\"phase\":\"filter 64 x emails.value co\",\"email_rows\":{},\"concurrent\":{concurrent},\"slowest_ms\":{:.0},\"outcomes\":{:?}}}",
            users * 2,
            worst.as_secs_f64() * 1e3,
            outcomes
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs the same code once on tiny sizes.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("COSTS_SIZES")
        .unwrap_or_else(|_| if smoke { "10".into() } else { "100,250,500,1000".into() })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let filter_users: usize = std::env::var("COSTS_FILTER_USERS").ok().and_then(|s| s.parse().ok()).unwrap_or(if smoke { 0 } else { 600_000 });
    let dir = std::env::temp_dir().join(format!("scimd-bench-costs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = DataDir::new(&dir);
    let id = TenantId::parse("bench").unwrap();
    data.create_tenant(&id).unwrap();
    std::fs::write(data.settings_file(&id), "require_username_is_email = false\n").unwrap();
    let tenant = Arc::new(Tenant::open(&data, &id).unwrap());
    let who = Principal { user_id: "bench".into(), user_name: "bench".into(), via: scimd::scim::Credential::Password };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for &n in &sizes {
            patch_add(&tenant, &who, n, 15).await;
        }
        patch_attack(&tenant, &who).await;
        for &n in &sizes {
            bulk_backward(&tenant, &who, n, 3).await;
        }
        for &n in &sizes {
            bulk_independent(&tenant, &who, n, 3).await;
        }
        if filter_users > 0 {
            filter_budget(&tenant, filter_users).await;
        }
    });
    tenant.store.close();
    let _ = std::fs::remove_dir_all(&dir);
}
