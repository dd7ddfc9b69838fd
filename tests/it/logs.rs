//! The real binary at TRACE through a whole token lifecycle: no token, password, client
//! secret or private-key material may reach a log line.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;

use crate::support::{basic, Client, ServeBinary, TempDir, ADMIN, PASSWORD};

#[tokio::test]
async fn no_secret_reaches_the_log_at_trace() {
    let dir = TempDir::new("logs");
    let data = scimd::tenant::DataDir::new(dir.path().join("data"));
    let id = scimd::tenant::TenantId::parse("acme").unwrap();
    data.create_tenant(&id).unwrap();
    // Tokens live 10 days here, inside the 30-day warning window: the server must warn.
    std::fs::write(data.settings_file(&id), "token_lifetime_days = 10\n").unwrap();
    let tenant = std::sync::Arc::new(scimd::tenant::Tenant::open(&data, &id).unwrap());
    scimd::commands::add_admin(&tenant.store, ADMIN, PASSWORD, 1000).await.unwrap();
    let now = scimd::clock::UtcMillis::now();
    scimd::auth::token::keygen(std::sync::Arc::clone(&tenant), "test", now).await.unwrap();
    let admin_id = tenant.store.read(|c| scimd::store::users::find_account(c, ADMIN)).await.unwrap().unwrap().id;
    let first = scimd::auth::token::issue(&tenant, "test", &admin_id, false, now).await.unwrap().token;
    let client_secret = "client-secret-for-the-log-test";
    let client_hash = scimd::auth::password::hash_password(client_secret, 1000);
    let (cid, uid) = ("apiclient_logtest".to_string(), admin_id.clone());
    tenant.store.write(move |c| scimd::store::tokens::insert_client(c, &cid, &client_hash, &uid, "t")).await.unwrap();
    tenant.store.close();
    drop(tenant);
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();

    let mut server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "trace").await;
    let c = Client::new(server.addr, &certs.ca_cert);
    let admin = basic(ADMIN, PASSWORD);
    let client = basic("apiclient_logtest", client_secret);
    let bearer = |t: &str| format!("Bearer {t}");

    let mut secrets = vec![PASSWORD.to_string(), admin.clone(), client_secret.to_string(), client.clone(), first.clone()];
    assert_eq!(c.as_(&bearer(&first), Method::GET, "/t/acme/scim/v2/Users").await.status, 200);
    let body = serde_json::to_vec(&json!({"userName": "logged@x.com", "emails": [{"value": "logged@x.com"}], "password": "user-password-9000"})).unwrap();
    secrets.push("user-password-9000".into());
    let r = c.raw(Method::POST, "/t/acme/scim/v2/Users", &[("authorization", &bearer(&first)), ("content-type", "application/scim+json")], Some(body)).await;
    assert_eq!(r.status, 201);
    let second = c.as_(&admin, Method::GET, "/t/acme/rest/token?revokeExistingToken=true").await.body["token"].as_str().unwrap().to_string();
    secrets.push(second.clone());
    assert_eq!(c.as_(&bearer(&first), Method::GET, "/t/acme/scim/v2/Users").await.status, 401);
    assert_eq!(c.as_(&bearer(&second), Method::GET, "/t/acme/scim/v2/Me").await.status, 200);
    assert_eq!(c.as_(&basic(ADMIN, "a-wrong-password"), Method::GET, "/t/acme/scim/v2/Users").await.status, 401);
    secrets.push("a-wrong-password".into());
    let third = c.as_(&client, Method::GET, "/t/acme/rest/token?revokeExistingToken=true").await.body["token"].as_str().unwrap().to_string();
    secrets.push(third.clone());
    let tampered = format!("{}x", &third[..third.len() - 1]);
    assert_eq!(c.as_(&bearer(&tampered), Method::GET, "/t/acme/scim/v2/Users").await.status, 401);
    assert_eq!(c.as_(&admin, Method::DELETE, "/t/acme/rest/token/current").await.status, 204);
    assert_eq!(c.as_(&admin, Method::POST, "/t/acme/rest/token/apiKeygen").await.status, 201);
    let key_pem = std::fs::read_to_string(data.private_key(&id)).unwrap();
    let fourth = c.as_(&admin, Method::GET, "/t/acme/rest/token").await.body["token"].as_str().unwrap().to_string();
    secrets.push(fourth.clone());
    assert_eq!(c.as_(&bearer(&fourth), Method::GET, "/t/acme/scim/v2/Groups").await.status, 200);
    assert_eq!(c.as_(&admin, Method::DELETE, "/t/acme/rest/token/deleteKey").await.status, 204);
    assert_eq!(c.as_(&bearer(&fourth), Method::GET, "/t/acme/scim/v2/Groups").await.status, 401);

    server.signal("TERM");
    assert!(server.child.wait().unwrap().success());
    let log = server.log();

    // Tokens whole and in parts (payload, signature), passwords, Basic credentials.
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log: {}…", &secret[..secret.len().min(12)]);
        if let Some(body) = secret.strip_prefix("apikey_") {
            let (payload, sig) = body.split_once('.').unwrap();
            assert!(!log.contains(payload) && !log.contains(sig), "a token part reached the log");
        }
    }
    let encoded_basic = admin.trim_start_matches("Basic ");
    assert!(!log.contains(encoded_basic));
    // Every line of the private key's base64.
    for line in key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 16) {
        assert!(!log.contains(line), "private key material reached the log");
    }
    // The log did capture what it should: TRACE lines, the access log, the expiry warning.
    assert!(log.contains("TRACE"), "RUST_LOG=trace produced no TRACE lines");
    assert!(log.contains("scimd::http::access"));
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("expires in 9 days")), "no expiry warning:\n{log}");
}

/// SIGHUP re-reads tenant.toml; a broken file is refused and the old settings stay.
#[tokio::test]
async fn sighup_reloads_tenant_settings() {
    let dir = TempDir::new("hup");
    let data = scimd::tenant::DataDir::new(dir.path().join("data"));
    let id = scimd::tenant::TenantId::parse("acme").unwrap();
    data.create_tenant(&id).unwrap();
    let store = scimd::store::Store::open(&data.database(&id)).unwrap();
    scimd::commands::add_admin(&store, ADMIN, PASSWORD, 1000).await.unwrap();
    store.close();
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info").await;
    let c = Client::new(server.addr, &certs.ca_cert);
    let post = |name: &'static str| {
        let c = c.clone();
        async move {
            let body = serde_json::to_vec(&json!({"userName": name})).unwrap();
            c.raw(Method::POST, "/t/acme/scim/v2/Users", &[("authorization", &basic(ADMIN, PASSWORD)), ("content-type", "application/scim+json")], Some(body)).await
        }
    };
    // Default: userName must be an email the user has.
    post("no-email-1").await.assert_error(400, Some("invalidValue"));
    let hup = || server.signal("HUP");
    // A broken file: refused, with an ERROR, and the old settings keep working.
    std::fs::write(data.settings_file(&id), "require_username_is_email = maybe\n").unwrap();
    hup();
    server.wait_for_log("keeping the previous settings").await;
    post("no-email-2").await.assert_error(400, Some("invalidValue"));
    // A good file takes effect without a restart.
    std::fs::write(data.settings_file(&id), "require_username_is_email = false\n").unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post("no-email-3").await;
        if r.status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload the settings: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A skipped group member is one WARN line naming the tenant, with the client's id
    // shortened and stripped of control characters (no forged log lines).
    let group = |members: serde_json::Value| {
        let c = c.clone();
        async move {
            let body = serde_json::to_vec(&json!({"displayName": "G", "members": members})).unwrap();
            c.raw(Method::POST, "/t/acme/scim/v2/Groups", &[("authorization", &basic(ADMIN, PASSWORD)), ("content-type", "application/scim+json")], Some(body)).await
        }
    };
    assert_eq!(group(json!([{"value": "ghost\nFAKE LINE"}])).await.status, 201);
    server.wait_for_log("skipped 1 member(s) that are no user here: ghost?FAKE LINE (not a known User)").await;
    assert!(!server.log().lines().any(|l| l.starts_with("FAKE LINE")));
    // The dialect is a setting like the others: reloaded by SIGHUP.
    std::fs::write(data.settings_file(&id), "require_username_is_email = false\ndialect = \"strict\"\n").unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post("no-schemas").await;
        if r.status == 400 {
            r.assert_error(400, Some("invalidSyntax"));
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not switch the dialect: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
