//! Issue 13: what an attacker found first, each as it was reproduced — an API client
//! doing more than minting its own token, a public health probe that named accounts and
//! opened every tenant, SCIM disabling its own service account, timing and status
//! oracles for accounts, passwords and tenants, untrottled bearer guesses, key files
//! written through symlinks, and files the whole machine could read.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use hyper::Method;
use serde_json::json;

use crate::support::{basic, from_address, TestServer, ADMIN, PASSWORD};

const TOKEN: &str = "/t/acme/rest/token";

/// An API client for the admin, with a known secret; returns its Basic header.
async fn api_client(s: &TestServer) -> String {
    scimd::commands::token::add_api_client(&s.data(), "acme", ADMIN, 1000).await.unwrap();
    let conn = s.db("acme");
    let client_id: String = conn.query_row("SELECT client_id FROM api_clients", [], |r| r.get(0)).unwrap();
    let hash = scimd::auth::password::hash_password("client-secret-for-test", 1000);
    conn.execute("UPDATE api_clients SET secret_hash = ?1", [&hash]).unwrap();
    basic(&client_id, "client-secret-for-test")
}

async fn second_admin(s: &TestServer) -> String {
    let store = scimd::store::Store::open(&s.data().database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    let id = scimd::commands::add_admin(&store, "admin2", "second-admin-password", 1000).await.unwrap();
    store.close();
    id
}

#[tokio::test]
async fn an_api_client_only_gets_rotates_and_revokes_its_own_token() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    assert_eq!(s.client.as_(&admin, Method::POST, &format!("{TOKEN}/apiKeygen")).await.status, 201);
    let other_admin = second_admin(&s).await;
    assert_eq!(s.client.as_(&basic("admin2", "second-admin-password"), Method::GET, TOKEN).await.status, 200);
    let client = api_client(&s).await;
    let fingerprint_before = std::fs::read(s.data().public_key(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    // What it may not do: 403 with a SCIM error that says why, and nothing changes.
    for (method, path) in [
        (Method::POST, "/apiKeygen".to_string()),
        (Method::DELETE, "/deleteKey".to_string()),
        (Method::DELETE, format!("/current?forUser={other_admin}")),
    ] {
        let r = s.client.as_(&client, method.clone(), &format!("{TOKEN}{path}")).await;
        r.assert_error(403, None);
        assert!(r.body["detail"].as_str().unwrap().contains("org admin's own credentials"), "{method} {path}: {}", r.body);
    }
    let live = s.count("acme", "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL");
    assert_eq!(live, 1, "admin2's token is still live");
    assert_eq!(std::fs::read(s.data().public_key(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap(), fingerprint_before, "the key pair is unchanged");
    s.client.as_(&client, Method::GET, "/t/acme/scim/v2/Users").await.assert_error(403, None);
    // What it may: get, rotate and revoke its own account's token.
    let admin_id: String = s.db("acme").query_row("SELECT id FROM users WHERE user_name = ?1", [ADMIN], |r| r.get(0)).unwrap();
    assert_eq!(s.client.as_(&client, Method::GET, TOKEN).await.status, 200);
    assert_eq!(s.client.as_(&client, Method::GET, &format!("{TOKEN}?revokeExistingToken=true")).await.status, 200);
    assert_eq!(s.client.as_(&client, Method::DELETE, &format!("{TOKEN}/current?forUser={admin_id}")).await.status, 204);
    assert_eq!(s.client.as_(&client, Method::GET, TOKEN).await.status, 200);
    assert_eq!(s.client.as_(&client, Method::DELETE, &format!("{TOKEN}/current")).await.status, 204);
    // The org admin's own credentials still may do all of it.
    assert_eq!(s.client.as_(&admin, Method::DELETE, &format!("{TOKEN}/current?forUser={other_admin}")).await.status, 204);
    assert_eq!(s.client.as_(&admin, Method::DELETE, &format!("{TOKEN}/deleteKey")).await.status, 204);
}

#[tokio::test]
async fn the_public_health_probe_says_only_ok_and_opens_no_tenant() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    s.client.as_(&admin, Method::POST, &format!("{TOKEN}/apiKeygen")).await;
    assert_eq!(s.client.as_(&admin, Method::GET, TOKEN).await.status, 200);
    // Inside the warning window: the public answer does not change and names nobody.
    s.advance_days(160);
    let public = s.client.raw(Method::GET, "/healthz", &[], None).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.body, json!({"status": "ok"}));
    assert!(!String::from_utf8_lossy(&public.raw).contains(ADMIN));
    // The operator listener (loopback) has the detail.
    let metrics = s.metrics_addr.expect("the operator listener is on");
    let (status, body) = crate::metrics::scrape(metrics, "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["status"], "degraded");
    let reason = detail["tenants"]["acme"]["reasons"][0].as_str().unwrap();
    assert!(reason.contains(ADMIN) && reason.contains("expires in 21 days"), "{reason}");
    // Rotating clears it at once.
    assert_eq!(s.client.as_(&admin, Method::GET, &format!("{TOKEN}?revokeExistingToken=true")).await.status, 200);
    let (_, body) = crate::metrics::scrape(metrics, "/healthz").await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), json!({"status": "ok"}));
    // A tenant created while serving is not opened (no WAL appears) by either probe.
    let id = scimd::tenant::TenantId::parse("late").unwrap();
    s.data().create_tenant(&id).unwrap();
    for _ in 0..3 {
        assert_eq!(s.client.raw(Method::GET, "/healthz", &[], None).await.status, 200);
        crate::metrics::scrape(metrics, "/healthz").await;
    }
    let wal = format!("{}-wal", s.data().database(&id).display());
    assert!(!std::path::Path::new(&wal).exists(), "a health probe opened tenant 'late'");
}

#[tokio::test]
async fn scim_cannot_change_the_service_accounts() {
    let s = TestServer::start().await;
    let admin_id: String = s.db("acme").query_row("SELECT id FROM users WHERE user_name = ?1", [ADMIN], |r| r.get(0)).unwrap();
    let row = |s: &TestServer| -> (String, i64, String, i64, Option<String>) {
        s.db("acme")
            .query_row("SELECT user_name, active, managed_by, version, deleted_at FROM users WHERE id = ?1", [&admin_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
    };
    let before = row(&s);
    let events = s.count("acme", "SELECT count(*) FROM events");
    let deactivate = json!({"Operations": [{"op": "replace", "value": {"active": false}}]});
    for path in [format!("/Users/{admin_id}"), "/Me".to_string()] {
        let r = s.patch(&path, deactivate.clone()).await;
        r.assert_error(403, None);
        assert!(r.body["detail"].as_str().unwrap().contains("service account"), "{}", r.body);
        s.patch(&path, json!({"Operations": [{"op": "replace", "path": "userName", "value": "renamed"}]})).await.assert_error(403, None);
        s.put(&path, json!({"userName": "renamed", "active": false})).await.assert_error(403, None);
        s.delete(&path).await.assert_error(403, None);
    }
    // An IdP user with the service account's userName: 409 uniqueness, saying so; no adoption.
    let r = s.post("/Users", json!({"userName": ADMIN.to_uppercase(), "emails": [{"value": "a@x.com"}]})).await;
    r.assert_error(409, Some("uniqueness"));
    assert!(r.body["detail"].as_str().unwrap().contains("service account"), "{}", r.body);
    assert_eq!(row(&s), before, "the service account is unchanged");
    assert_eq!(s.count("acme", "SELECT count(*) FROM events"), events, "nothing was recorded");
    // It still works, and GET /Me still answers.
    assert_eq!(s.get("/Me").await.status, 200);
}

/// Median of a few timed requests.
async fn median_ms(mut one: impl AsyncFnMut(usize) -> u16, n: usize) -> f64 {
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        assert_eq!(one(i).await, 401);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times[n / 2]
}

#[tokio::test]
async fn unknown_accounts_cost_as_long_as_wrong_passwords() {
    // A realistic KDF cost, so the difference is measurable: before, an unknown account
    // answered in ~2 ms and a wrong password in ~130 ms at 600,000 iterations.
    const COST: u32 = 100_000;
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.kdf_iterations = COST).await;
    let worker = s.user("worker@example.com").await;
    let worker_hash = scimd::auth::password::hash_password("worker-password", COST);
    s.db("acme").execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", (&worker_hash, &worker)).unwrap();
    let hash = scimd::auth::password::hash_password("the-real-password", COST);
    s.db("acme").execute("UPDATE users SET password_hash = ?1 WHERE user_name = ?2", (&hash, ADMIN)).unwrap();
    // Distinct addresses and names keep the throttle out of it.
    let wrong = median_ms(async |i| from_address(&s, &format!("127.0.1.{}", i + 1), Method::GET, "/t/acme/scim/v2/Users", &basic(ADMIN, "wrong")).await.status.as_u16(), 3).await;
    let unknown = median_ms(async |i| from_address(&s, &format!("127.0.2.{}", i + 1), Method::GET, "/t/acme/scim/v2/Users", &basic(&format!("nobody{i}"), "wrong")).await.status.as_u16(), 3).await;
    // A non-admin's right password, again and again: never answered from a cache.
    let non_admin = median_ms(async |i| from_address(&s, &format!("127.0.5.{}", i + 1), Method::GET, "/t/acme/scim/v2/Users", &basic("worker@example.com", "worker-password")).await.status.as_u16(), 3).await;
    let no_tenant = median_ms(async |i| from_address(&s, &format!("127.0.3.{}", i + 1), Method::GET, "/t/nosuch/scim/v2/Users", &basic(ADMIN, "wrong")).await.status.as_u16(), 3).await;
    println!("median ms: wrong password {wrong:.1}, unknown account {unknown:.1}, unknown tenant {no_tenant:.1}, non-admin's right password {non_admin:.1}");
    assert!(non_admin > wrong * 0.5, "non-admin's right password {non_admin:.1} ms vs wrong password {wrong:.1} ms");
    assert!(unknown > wrong * 0.5, "unknown account {unknown:.1} ms vs wrong password {wrong:.1} ms");
    assert!(no_tenant > wrong * 0.5, "unknown tenant {no_tenant:.1} ms vs wrong password {wrong:.1} ms");
}

#[tokio::test]
async fn a_non_admin_password_and_an_unknown_tenant_answer_like_wrong_credentials() {
    let s = TestServer::start().await;
    let uid = s.user("worker@example.com").await;
    let hash = scimd::auth::password::hash_password("worker-password-123", 1000);
    s.db("acme").execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", (&hash, &uid)).unwrap();
    let users = |t: &str| format!("/t/{t}/scim/v2/Users");
    let right = s.client.as_(&basic("worker@example.com", "worker-password-123"), Method::GET, &users("acme")).await;
    let wrong = s.client.as_(&basic("worker@example.com", "not-it"), Method::GET, &users("acme")).await;
    assert_eq!((right.status, &right.body), (wrong.status, &wrong.body), "a non-admin's right password looks like a wrong one");
    right.assert_error(401, None);
    // An unknown tenant: the same answers as a known one, with and without credentials.
    for auth in [None, Some(basic(ADMIN, "wrong")), Some(basic("apiclient_x", "y")), Some("Bearer apikey_x.y".to_string())] {
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
        for path in [users("acme"), "/t/acme/rest/token".into(), "/t/acme/events".into()] {
            let known = s.client.raw(Method::GET, &path, &headers, None).await;
            let unknown = s.client.raw(Method::GET, &path.replace("/acme/", "/nosuch/"), &headers, None).await;
            assert_eq!(known.status, unknown.status, "{path} {auth:?}");
            assert_eq!(known.body, unknown.body, "{path} {auth:?}");
            assert_eq!(known.headers.get_all("www-authenticate").iter().count(), unknown.headers.get_all("www-authenticate").iter().count());
        }
    }
    assert!(!s.dir.path().join("data/tenants/nosuch").exists(), "an unknown tenant creates nothing");
}

#[tokio::test]
async fn forged_bearer_tokens_are_throttled_per_address_and_valid_ones_still_pass() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    s.client.as_(&admin, Method::POST, &format!("{TOKEN}/apiKeygen")).await;
    let token = s.client.as_(&admin, Method::GET, TOKEN).await.body["token"].as_str().unwrap().to_string();
    let (valid, forged) = (format!("Bearer {token}"), "Bearer apikey_eyJ0ZW4iOiJhY21lIn0.c2lnbmF0dXJl");
    let users = "/t/acme/scim/v2/Users";
    let limit = scimd::auth::throttle::FORGERY_LIMIT as usize;
    // Forgeries for a tenant that does not exist count the same.
    let mut statuses = Vec::new();
    for i in 0..limit {
        let path = if i % 2 == 0 { users } else { "/t/nosuch/scim/v2/Users" };
        statuses.push(from_address(&s, "127.0.4.1", Method::GET, path, forged).await.status.as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let r = from_address(&s, "127.0.4.1", Method::GET, users, forged).await;
    r.assert_error(429, None);
    assert!(r.headers.contains_key("retry-after"));
    // The address is shared (an IdP's egress): its valid token and its Basic logins still pass.
    assert_eq!(from_address(&s, "127.0.4.1", Method::GET, users, &valid).await.status, 200);
    assert_eq!(from_address(&s, "127.0.4.1", Method::GET, users, &admin).await.status, 200);
    // A revoked token is ours, not a guess: an IdP retrying with one is never throttled.
    assert_eq!(s.client.as_(&admin, Method::GET, &format!("{TOKEN}?revokeExistingToken=true")).await.status, 200);
    for _ in 0..limit + 5 {
        from_address(&s, "127.0.4.2", Method::GET, users, &valid).await.assert_error(401, None);
    }
}

#[tokio::test]
async fn a_user_cannot_grow_past_the_resource_size_cap() {
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.max_body_bytes = 4 * 1024 * 1024).await;
    let emails = |n: usize, tag: &str| -> Vec<serde_json::Value> {
        (0..n).map(|i| json!({"value": format!("{tag}{i}@x.com"), "display": "d".repeat(60_000)})).collect()
    };
    // One POST over the cap (20 values of 60 KB: each under the per-value caps).
    let r = s.post("/Users", json!({"userName": "big", "emails": emails(20, "a")})).await;
    r.assert_error(400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("KiB"), "{}", r.body);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name = 'big'"), 0);
    // Grown PATCH by PATCH: the one that would pass the cap is refused, nothing changes.
    let id = s.user("grows").await;
    let add = |v: Vec<serde_json::Value>| json!({"Operations": [{"op": "add", "path": "emails", "value": v}]});
    assert_eq!(s.patch(&format!("/Users/{id}"), add(emails(12, "b"))).await.status, 200);
    s.patch(&format!("/Users/{id}"), add(emails(8, "c"))).await.assert_error(400, Some("invalidValue"));
    assert_eq!(s.count("acme", "SELECT count(*) FROM user_emails e JOIN users u ON u.pk = e.user_pk WHERE u.user_name = 'grows'"), 12);
}

#[tokio::test]
async fn key_files_are_never_written_or_read_through_a_symlink() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    let acme = scimd::tenant::TenantId::parse("acme").unwrap();
    let data = s.data();
    std::fs::create_dir_all(data.keys_dir(&acme)).unwrap();
    let victim = s.dir.path().join("unrelated.txt");
    std::fs::write(&victim, "do not touch").unwrap();
    std::os::unix::fs::symlink(&victim, data.public_key(&acme)).unwrap();
    assert_eq!(s.client.as_(&admin, Method::POST, &format!("{TOKEN}/apiKeygen")).await.status, 201);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    for key in [data.public_key(&acme), data.private_key(&acme)] {
        let meta = std::fs::symlink_metadata(&key).unwrap();
        assert!(meta.is_file(), "{} is a regular file", key.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", key.display());
    }
    let token = s.client.as_(&admin, Method::GET, TOKEN).await.body["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    assert_eq!(s.client.as_(&bearer, Method::GET, "/t/acme/scim/v2/Users").await.status, 200);
    // A second admin's token, issued now and first used after the swap below.
    let hash = scimd::auth::password::hash_password("second-admin-pass", 1000);
    s.db("acme")
        .execute("INSERT INTO users (id, user_name, user_name_key, active, role, password_hash, license, created, last_modified) VALUES ('adm2', 'admin2', 'admin2', 1, 'org_admin', ?1, 'creator', 'x', 'x')", [&hash])
        .unwrap();
    let second = s.client.as_(&crate::support::basic("admin2", "second-admin-pass"), Method::GET, TOKEN).await;
    let second = format!("Bearer {}", second.body["token"].as_str().unwrap());
    // A private key replaced by a symlink (to another acceptable key, say an attacker's) is
    // refused when the key is next loaded: here, to verify a token no request verified
    // before. The link is never followed: the token verifies with the database's copy of the
    // tenant's own key (through the link it would fail), nothing is signed until the file is
    // back (503), and the operator is told (issue 22).
    let other = s.dir.path().join("other-key");
    let planted = scimd::tenant::keys::KeyState::new(other.join("k.pem"), other.join("k.pub.pem"), other.clone());
    planted.generate().unwrap();
    std::fs::remove_file(data.private_key(&acme)).unwrap();
    std::os::unix::fs::symlink(other.join("k.pem"), data.private_key(&acme)).unwrap();
    assert_eq!(s.client.as_(&second, Method::GET, "/t/acme/scim/v2/Users").await.status, 200, "verified with the tenant's own key");
    let refused = s.client.as_(&admin, Method::GET, &format!("{TOKEN}?revokeExistingToken=true")).await;
    refused.assert_error(503, None);
    let (_, metrics) = crate::metrics::scrape(s.metrics_addr.unwrap(), "/metrics").await;
    assert!(metrics.contains("scimd_tenant_fault{tenant=\"acme\",fault=\"signing_key\"} 1"), "{metrics}");
}

/// Every file and directory under `dir` grants nothing to group or others.
fn assert_owner_only(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o077, 0, "{} is mode {:o}", path.display(), meta.permissions().mode() & 0o777);
        if meta.is_dir() {
            assert_owner_only(&path);
        }
    }
}

#[tokio::test]
async fn the_data_directory_is_the_service_users_alone() {
    // The binary under umask 000 creates nothing others can read.
    let dir = crate::support::TempDir::new("umask");
    let data = dir.path().join("data");
    let run = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask 000; exec \"$0\" {args} --data-dir \"$1\""))
            .arg(env!("CARGO_BIN_EXE_scimd"))
            .arg(&data)
            .env("SCIMD_KDF_ITERATIONS", "1000")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("tenant create acme");
    run("admin add --tenant acme --username okta-scim");
    run("token keygen --tenant acme");
    run("backup --tenant acme --out \"$1/backup.db\"");
    assert_owner_only(&data);
    // A server opening an older, looser tenant tightens it.
    let acme = scimd::tenant::TenantId::parse("acme").unwrap();
    let d = scimd::tenant::DataDir::new(&data);
    for (path, mode) in [(d.settings_file(&acme), 0o644), (d.database(&acme), 0o666), (d.tenant_dir(&acme), 0o755), (d.root().to_path_buf(), 0o755)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let server = crate::support::ServeBinary::start(&data, &certs.server_cert, &certs.server_key, dir.path(), "scimd=info").await;
    let (mut sender, _) = crate::support::connect(server.addr, &[&certs.ca_cert]).await;
    let (status, _) = crate::support::send(&mut sender, "GET", "/t/acme/scim/v2/Users", None).await;
    assert_eq!(status, 401, "the tenant was opened to authenticate");
    assert_owner_only(&data);
}
