//! What 20 custom attributes (issue 23) cost a tenant, at 100,000 users, against a tenant
//! with none: creates and GETs per second as an IdP sees them (the real server, HTTPS,
//! 16 keep-alive connections, HTTP Basic), the budget being less than 10 % lost on either;
//! and, for where the time goes, the same work in the service layer alone (creates under
//! 16 concurrent tasks, one GET's read + render + JSON).
//!
//! `cargo bench --bench custom` (`CUSTOM_USERS=100000`, `CUSTOM_CREATES=4000`,
//! `CUSTOM_GETS=60000`, `CUSTOM_ROUNDS=5`, `CUSTOM_UNIQUE=0` for no unique attribute, `CUSTOM_MODE=typical|bare|swap` for
//! what else the users hold: see `Mode`; `CUSTOM_ONLY=plain|custom` measures one tenant alone,
//! for a profiler: both are seeded alike, so a profile of each differs only by what it measured).
//! The load generator shares the machine. Runs through the real service layer on real
//! tenant databases in a temp directory (WAL, synchronous=FULL). The users are seeded in
//! large write jobs through the store with documents decoded by the tenant's catalogue,
//! so the custom tenant's users each hold 20 values; the measured creates and GETs go
//! through `scim::users` and `resource::Rendered` as a request does.

use std::sync::Arc;
use std::time::Instant;

use scimd::model::License;
use scimd::scim::resource::{self, Projection};
use scimd::scim::schema::{Catalogue, ResourceKind};
use scimd::scim::{users, Principal};
use scimd::store::users as store_users;
use scimd::tenant::{DataDir, Tenant, TenantId};
use serde_json::{json, Value};

#[path = "client.rs"]
#[allow(dead_code)]
mod client;

const NOW: &str = "2026-01-01T00:00:00.000Z";
const URN: &str = "urn:ietf:params:scim:schemas:extension:bench:2.0:User";

/// 20 attributes: 9 strings (one unique unless `CUSTOM_UNIQUE=0`), 4 integers, 3 booleans, 2 dateTimes, a reference
/// and a multi-valued string.
fn declaration() -> String {
    let mut text = format!("require_username_is_email = false\n[[extension]]\nurn = \"{URN}\"\n");
    let mut add = |name: &str, extra: &str| text.push_str(&format!("[[extension.attributes]]\nname = \"{name}\"\n{extra}"));
    // `CUSTOM_UNIQUE=0`: badge not unique, so no index is kept beside the row.
    let unique = std::env::var("CUSTOM_UNIQUE").map_or(true, |v| v != "0");
    add("badge", if unique { "uniqueness = \"server\"\n" } else { "" });
    for i in 1..9 {
        add(&format!("s{i}"), "");
    }
    for i in 0..4 {
        add(&format!("n{i}"), "type = \"integer\"\n");
    }
    for i in 0..3 {
        add(&format!("b{i}"), "type = \"boolean\"\n");
    }
    for i in 0..2 {
        add(&format!("d{i}"), "type = \"dateTime\"\n");
    }
    add("home", "type = \"reference\"\n");
    add("skills", "multi_valued = true\n");
    text
}

/// What the users of both tenants hold besides their custom values (`CUSTOM_MODE`):
/// `typical` (the default), a profile of 20 built-in values as Okta or Entra send for a
/// person (name parts, title, locale, phones, the enterprise extension), on both tenants,
/// the custom tenant's users holding 20 custom values besides; `bare`, only a name and an
/// email on both; `swap`, the 20 built-in values on the tenant without custom attributes
/// and none on the other (what custom storage costs against columns for as much data).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Typical,
    Bare,
    Swap,
}

fn mode() -> Mode {
    match std::env::var("CUSTOM_MODE").as_deref() {
        Ok("bare") => Mode::Bare,
        Ok("swap") => Mode::Swap,
        _ => Mode::Typical,
    }
}

fn mode_name() -> &'static str {
    match mode() {
        Mode::Typical => "typical",
        Mode::Bare => "bare",
        Mode::Swap => "swap",
    }
}

fn user(tag: &str, custom: bool) -> Value {
    let mut u = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("{tag}@example.com"), "active": true, "displayName": format!("User {tag}"),
        "name": {"givenName": "Given", "familyName": tag},
        "emails": [{"value": format!("{tag}@example.com"), "type": "work", "primary": true}],
    });
    let profile = match mode() {
        Mode::Typical => true,
        Mode::Bare => false,
        Mode::Swap => !custom,
    };
    if profile {
        for (i, attr) in ["nickName", "title", "userType", "preferredLanguage", "locale", "timezone"].into_iter().enumerate() {
            u[attr] = json!(format!("value {i} of {tag}"));
        }
        u["profileUrl"] = json!(format!("https://example.com/{tag}"));
        u["name"]["middleName"] = json!("M");
        u["name"]["honorificPrefix"] = json!("Dr");
        u["phoneNumbers"] = json!([{"value": "555-0100", "type": "work"}, {"value": "555-0101", "type": "mobile"}]);
        u["roles"] = json!([{"value": "rust"}, {"value": "sql"}, {"value": "scim"}]);
        u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = json!({
            "employeeNumber": format!("E-{tag}"), "costCenter": "4130", "organization": "Acme", "division": "R&D", "department": "Tools",
            "manager": {"value": "m-1"}
        });
    }
    if custom {
        let mut ext = json!({"badge": format!("B-{tag}"), "home": format!("https://example.com/{tag}"), "skills": ["rust", "sql", "scim"]});
        for i in 1..9 {
            ext[format!("s{i}")] = json!(format!("value {i} of {tag}"));
        }
        for i in 0..4 {
            ext[format!("n{i}")] = json!(i * 1000 + tag.len());
        }
        for i in 0..3 {
            ext[format!("b{i}")] = json!(i % 2 == 0);
        }
        for i in 0..2 {
            ext[format!("d{i}")] = json!(format!("202{i}-03-04T05:06:07Z"));
        }
        u[URN] = ext;
    }
    u
}

struct Rig {
    tenant: Arc<Tenant>,
    cat: Catalogue,
    custom: bool,
    ids: Vec<String>,
}

async fn seed(data: &DataDir, name: &str, custom: bool, n: usize) -> Rig {
    let id = TenantId::parse(name).unwrap();
    data.create_tenant(&id).unwrap();
    let settings = if custom { declaration() } else { "require_username_is_email = false\n".into() };
    std::fs::write(data.settings_file(&id), settings).unwrap();
    let tenant = Arc::new(Tenant::open_to_serve(data, &id).unwrap());
    scimd::commands::add_admin(&tenant.store, "bench", "bench-password-1", 1000).await.unwrap();
    let cat = Catalogue::of(ResourceKind::User, &tenant.settings());
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let docs: Vec<_> = chunk.iter().map(|i| resource::decode(cat, &user(&format!("{name}-seed-{i}"), custom)).unwrap()).collect();
        let made = tenant
            .store
            .write(move |db| docs.iter().map(|d| store_users::insert(db, d, &store_users::UserOrigin::idp(License::None), NOW)).collect::<Result<Vec<_>, _>>())
            .await
            .unwrap();
        ids.extend(made);
    }
    eprintln!("{name}: seeded {n} users in {:.1}s", started.elapsed().as_secs_f64());
    Rig { tenant, cat, custom, ids }
}

/// Creates per second: `n` creates by 16 concurrent clients.
async fn creates(rig: &Rig, round: usize, n: usize) -> f64 {
    let who = Arc::new(Principal { user_id: "bench".into(), user_name: "bench".into(), via: scimd::scim::Credential::Password });
    let bodies: Vec<Vec<Value>> = (0..16).map(|client| (client..n).step_by(16).map(|i| user(&format!("r{round}-c{i}"), rig.custom)).collect()).collect();
    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let (tenant, who) = (Arc::clone(&rig.tenant), Arc::clone(&who));
            tokio::spawn(async move {
                for body in bodies {
                    users::create(&tenant, &who, &body, NOW.into()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Microseconds per GET of a random seeded user: read with its groups, render, serialise
/// (as the server's GET does: custom values rendered from their stored text).
async fn gets(rig: &Rig, n: usize) -> f64 {
    let proj = Projection::default();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let started = Instant::now();
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let id = &rig.ids[(state % rig.ids.len() as u64) as usize];
        let (res, text) = users::get_to_render(&rig.tenant, id, true).await.unwrap();
        let body = serde_json::to_vec(&resource::Rendered::new(rig.cat, &res, "https://h/t/bench/scim/v2", &proj).with_custom_text(text.as_ref())).unwrap();
        assert!(!rig.custom || body.len() > 700);
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Requests per second over HTTPS: `n` requests of `kind` ("create" or "get") spread over
/// 16 keep-alive connections to tenant `name`.
async fn over_https(addr: std::net::SocketAddr, ca: &std::path::Path, name: &str, rig: &Rig, kind: &'static str, round: usize, n: usize) -> f64 {
    let tls = client::connector(ca).unwrap();
    let auth = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "bench:bench-password-1"));
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(client::Conn::open(&format!("localhost:{}", addr.port()), &tls, auth.clone()).await.unwrap());
    }
    // Every request made before the clock starts: the client builds and parses nothing.
    let base = format!("/t/{name}/scim/v2");
    let mut work: Vec<Vec<(&'static str, String, Option<hyper::body::Bytes>)>> = (0..16).map(|_| Vec::new()).collect();
    for i in 0..n {
        work[i % 16].push(match kind {
            "create" => ("POST", format!("{base}/Users"), Some(user(&format!("h{round}-{i}"), rig.custom).to_string().into())),
            _ => ("GET", format!("{base}/Users/{}", rig.ids[(i * 7919) % rig.ids.len()]), None),
        });
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(work)
        .map(|(mut conn, requests)| {
            tokio::spawn(async move {
                for (method, url, body) in requests {
                    let status = conn.send_raw(method, &url, body).await.unwrap();
                    assert!(status == 200 || status == 201, "{method} {url}: {status}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    // NaN: a tenant `CUSTOM_ONLY` left unmeasured.
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs the same code once on tiny sizes.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let env = |name: &str, full: usize, tiny: usize| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(if smoke { tiny } else { full });
    let (n, creates_n, gets_n, rounds) = (env("CUSTOM_USERS", 100_000, 200), env("CUSTOM_CREATES", 4_000, 32), env("CUSTOM_GETS", 60_000, 50), env("CUSTOM_ROUNDS", 5, 1));
    let dir = std::env::temp_dir().join(format!("scimd-bench-custom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = DataDir::new(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let plain = seed(&data, "plain", false, n).await;
        let custom = seed(&data, "custom", true, n).await;
        let (mut create_rates, mut get_times) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
        let only = std::env::var("CUSTOM_ONLY").ok();
        let measured = |name: &str| only.as_deref().is_none_or(|o| o == name);
        // Alternated, so a slower period of the machine hits both alike.
        for round in 0..rounds {
            for (i, rig) in [&plain, &custom].into_iter().enumerate().filter(|(i, _)| measured(["plain", "custom"][*i])) {
                create_rates[i].push(creates(rig, round, creates_n).await);
                get_times[i].push(gets(rig, gets_n).await);
            }
        }
        for rig in [&plain, &custom] {
            rig.tenant.close();
        }
        // The same through the server, as an IdP sees it.
        let certs = scimd::certs::generate(&dir.join("certs"), &["localhost".into()]).unwrap();
        let config = scimd::config::ServeConfig {
            data_dir: data.root().to_path_buf(),
            acme: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some((certs.server_cert.clone(), certs.server_key.clone())),
            public_url: None,
            kdf_iterations: 1000,
            max_body_bytes: 64 * 1024,
            limits: scimd::config::Limits::default(),
            tenants: scimd::tenant::TenantLimits::default(),
            max_open_tenants_given: false,
            metrics_listen: None,
        };
        let server = scimd::commands::start_server(&config).await.unwrap();
        let (mut https_creates, mut https_gets) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
        for round in 0..rounds {
            for (i, (name, rig)) in [("plain", &plain), ("custom", &custom)].into_iter().enumerate().filter(|(_, (name, _))| measured(name)) {
                https_creates[i].push(over_https(server.addr, &certs.ca_cert, name, rig, "create", round, creates_n).await);
                https_gets[i].push(over_https(server.addr, &certs.ca_cert, name, rig, "get", round, gets_n).await);
            }
        }
        server.shutdown().await;
        let (h0, h1) = (median(https_creates[0].clone()), median(https_creates[1].clone()));
        let (r0, r1) = (median(https_gets[0].clone()), median(https_gets[1].clone()));
        println!(
            "{{\"over\":\"https\",\"mode\":\"{}\",\"users\":{n},\"rounds\":{rounds},\"create_per_s\":[{h0:.0},{h1:.0}],\"create_loss_pct\":{:.1},\"get_per_s\":[{r0:.0},{r1:.0}],\"get_loss_pct\":{:.1},\"create_rounds\":{:?},\"get_rounds\":{:?}}}",
            mode_name(),
            (h0 - h1) / h0 * 100.0,
            (r0 - r1) / r0 * 100.0,
            https_creates.map(|v| v.iter().map(|x| x.round()).collect::<Vec<_>>()),
            https_gets.map(|v| v.iter().map(|x| x.round()).collect::<Vec<_>>()),
        );
        let (c0, c1) = (median(create_rates[0].clone()), median(create_rates[1].clone()));
        let (g0, g1) = (median(get_times[0].clone()), median(get_times[1].clone()));
        println!(
            "{{\"over\":\"service layer\",\"mode\":\"{}\",\"users\":{n},\"creates\":{creates_n},\"gets\":{gets_n},\"rounds\":{rounds},\"create_per_s\":[{c0:.0},{c1:.0}],\"create_loss_pct\":{:.1},\"get_us\":[{g0:.1},{g1:.1}],\"get_loss_pct\":{:.1},\"create_rounds\":{:?},\"get_rounds\":{:?}}}",
            mode_name(),
            (c0 - c1) / c0 * 100.0,
            (g1 - g0) / g0 * 100.0,
            create_rates.map(|v| v.iter().map(|x| x.round()).collect::<Vec<_>>()),
            get_times.map(|v| v.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>()),
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
