//! Who may call the API: SCIM admin accounts of the tenant, nobody else.

use hyper::Method;

use crate::support::{basic, scimd_cli, TestServer, ADMIN, PASSWORD};

async fn users_with(s: &TestServer, tenant: &str, auth: Option<&str>) -> crate::support::Response {
    let mut headers = Vec::new();
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    s.raw(Method::GET, &format!("/t/{tenant}/scim/v2/Users"), &headers, None).await
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401() {
    let s = TestServer::start().await;
    for auth in [None, Some("Bearer something"), Some("Basic !!!"), Some(basic(ADMIN, "wrong").as_str()), Some(basic("nobody", PASSWORD).as_str())] {
        let r = users_with(&s, "acme", auth).await;
        r.assert_error(401, None);
        assert_eq!(r.headers["www-authenticate"], "Basic realm=\"scimd\", charset=\"UTF-8\"");
    }
    assert_eq!(users_with(&s, "acme", Some(&basic(ADMIN, PASSWORD))).await.status, 200);
    // The user name is case-insensitive, the password is not.
    assert_eq!(users_with(&s, "acme", Some(&basic("SCIM-Admin", PASSWORD))).await.status, 200);
    users_with(&s, "acme", Some(&basic(ADMIN, &PASSWORD.to_uppercase()))).await.assert_error(401, None);
}

#[tokio::test]
async fn tenants_are_isolated_and_ids_validated() {
    let s = TestServer::start().await;
    // Same admin name and password in both tenants, different accounts and data.
    let id = s.user("only-in-acme@example.com").await;
    let r = s.call_tenant("other", Method::GET, &format!("/Users/{id}"), None).await;
    r.assert_error(404, None);
    for tenant in ["NOPE", "..", "a%2F..%2Fb", "-x"] {
        users_with(&s, tenant, Some(&s.auth)).await.assert_error(404, None);
    }
    // A well-formed id with no tenant answers like wrong credentials (no enumeration).
    users_with(&s, "missing", Some(&s.auth)).await.assert_error(401, None);
    assert!(!s.dir.path().join("data/tenants/missing").exists(), "an unknown tenant creates nothing");
}

#[tokio::test]
async fn deactivated_or_non_admin_accounts_are_refused() {
    let s = TestServer::start().await;
    // An ordinary user that somehow has a password is an account, but not an admin.
    let uid = s.user("worker@example.com").await;
    let hash = scimd::auth::password::hash_password("worker-password-123", 1000);
    s.db("acme").execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", (&hash, &uid)).unwrap();
    let r = users_with(&s, "acme", Some(&basic("worker@example.com", "worker-password-123"))).await;
    // Refused like a wrong password: a distinct answer would confirm the password.
    r.assert_error(401, None);
    // The operator deactivating the admin (from another process) locks it out on the next
    // request (no stale cache).
    let second = scimd::auth::password::hash_password("second-admin-pass", 1000);
    s.db("acme")
        .execute("INSERT INTO users (id, user_name, user_name_key, active, role, password_hash, license, created, last_modified) VALUES ('adm2', 'admin2', 'admin2', 1, 'org_admin', ?1, 'creator', 'x', 'x')", [&second])
        .unwrap();
    assert_eq!(users_with(&s, "acme", Some(&s.auth)).await.status, 200);
    let (ok, out) = scimd_cli(&s, &["user", "deactivate", "--tenant", "acme", "--username", ADMIN]);
    assert!(ok, "{out}");
    users_with(&s, "acme", Some(&s.auth)).await.assert_error(401, None);
    assert_eq!(users_with(&s, "acme", Some(&basic("admin2", "second-admin-pass"))).await.status, 200);
}

#[tokio::test]
async fn changing_the_password_invalidates_the_cached_check() {
    let s = TestServer::start().await;
    // Warm the cache with the current password.
    assert_eq!(users_with(&s, "acme", Some(&s.auth)).await.status, 200);
    let new_hash = scimd::auth::password::hash_password("rotated-password-42", 1000);
    s.db("acme").execute("UPDATE users SET password_hash = ?1 WHERE user_name = ?2", (&new_hash, ADMIN)).unwrap();
    users_with(&s, "acme", Some(&s.auth)).await.assert_error(401, None);
    assert_eq!(users_with(&s, "acme", Some(&basic(ADMIN, "rotated-password-42"))).await.status, 200);
}

/// The process's count of password checks, from /metrics.
async fn password_checks(s: &TestServer) -> u64 {
    let (_, text) = crate::metrics::scrape(s.metrics_addr.expect("metrics are on"), "/metrics").await;
    let line = text.lines().find(|l| l.starts_with("scimd_password_checks_total ")).expect("the counter is exported");
    line.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// A login storm (issue 19): an IdP's connections arriving at once after a restart, all with
/// the same Basic credentials, run PBKDF2 once between them, not once each. Wrong passwords
/// gain nothing from it: the same wrong password sent four times at once costs four checks
/// and four 401s, as it did before.
#[tokio::test]
async fn a_login_storm_checks_the_password_once() {
    // 32 connections from one address finish their handshakes at once.
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.limits.max_handshakes_per_address = 64).await;
    // A production-like cost, so that the checks would overlap: tens of ms each here.
    let hash = scimd::auth::password::hash_password("storm-password-1", 200_000);
    s.db("acme")
        .execute("INSERT INTO users (id, user_name, user_name_key, active, role, password_hash, license, created, last_modified) VALUES ('storm', 'storm', 'storm', 1, 'org_admin', ?1, 'creator', 'x', 'x')", [&hash])
        .unwrap();
    let storm = |n: usize, password: &'static str| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let client = s.client.clone();
                tokio::spawn(async move { client.as_(&basic("storm", password), hyper::Method::GET, "/t/acme/scim/v2/Users?count=1").await.status.as_u16() })
            })
            .collect();
        async move {
            let mut statuses = Vec::new();
            for t in tasks {
                statuses.push(t.await.unwrap());
            }
            statuses
        }
    };
    let before = password_checks(&s).await;
    assert_eq!(storm(32, "storm-password-1").await, vec![200; 32]);
    assert_eq!(password_checks(&s).await - before, 1, "32 requests with the same credentials ran one check");

    let before = password_checks(&s).await;
    assert_eq!(storm(4, "wrong-password-1").await, vec![401; 4]);
    assert_eq!(password_checks(&s).await - before, 4, "a wrong password is checked for every request");
    // And the right one, now remembered, costs nothing.
    let before = password_checks(&s).await;
    assert_eq!(users_with(&s, "acme", Some(&basic("storm", "storm-password-1"))).await.status, 200);
    assert_eq!(password_checks(&s).await, before);
}

/// Issue 19: a SCIM GET whose credentials a request verified before reads neither the
/// account nor the token again; its own read checks the tenant's auth counter instead. Shown
/// by changing the account behind the triggers' back (the trigger dropped): the change goes
/// unseen until the counter moves, and then the very next request sees it, for a Basic and
/// a bearer caller, on a resource read and on a discovery document (which reads nothing).
#[tokio::test]
async fn a_verified_credential_is_not_read_again_while_nothing_it_depends_on_changed() {
    let s = TestServer::start().await;
    assert_eq!(s.client.as_(&s.auth, Method::POST, "/t/acme/rest/token/apiKeygen").await.status, 201);
    let token = s.client.as_(&s.auth, Method::GET, "/t/acme/rest/token").await;
    assert_eq!(token.status, 200, "{}", token.body);
    let bearer = format!("Bearer {}", token.body["token"].as_str().unwrap());
    let get = |auth: String, path: &'static str| {
        let client = s.client.clone();
        async move { client.as_(&auth, Method::GET, path).await.status.as_u16() }
    };
    for auth in [s.auth.clone(), bearer.clone()] {
        assert_eq!(get(auth.clone(), "/t/acme/scim/v2/Users").await, 200);
    }
    let db = s.db("acme");
    db.execute_batch("DROP TRIGGER auth_changes_accounts").unwrap();
    db.execute("UPDATE users SET license = 'none' WHERE user_name = ?1", [ADMIN]).unwrap();
    for auth in [s.auth.clone(), bearer.clone()] {
        assert_eq!(get(auth.clone(), "/t/acme/scim/v2/Users").await, 200, "the account was not read again");
        assert_eq!(get(auth.clone(), "/t/acme/scim/v2/ServiceProviderConfig").await, 200);
    }
    db.execute("UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'", []).unwrap();
    for auth in [s.auth.clone(), bearer.clone()] {
        assert_eq!(get(auth.clone(), "/t/acme/scim/v2/ServiceProviderConfig").await, 403, "the counter moved: read again, licence gone");
        assert_eq!(get(auth.clone(), "/t/acme/scim/v2/Users").await, 403);
    }
}
