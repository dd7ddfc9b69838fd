//! Issue 8: hostile input gets a clear 4xx (a SCIM error where HTTP allows one) and
//! changes nothing stored; brute force is throttled without locking out the real admin;
//! an exposed private key stops the server from starting.

use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{basic, connector, TestServer, ADMIN, PASSWORD};

fn users(s: &TestServer) -> i64 {
    s.count("acme", "SELECT count(*) FROM users")
}

async fn post_raw(s: &TestServer, path: &str, body: Vec<u8>) -> crate::support::Response {
    s.raw(Method::POST, path, &[("authorization", &s.auth), ("content-type", "application/scim+json")], Some(body)).await
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    let before = users(&s);
    // JSON nested 10,000 deep.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    post_raw(&s, "/t/acme/scim/v2/Users", deep.into_bytes()).await.assert_error(400, Some("invalidSyntax"));
    let deep_obj = format!("{{\"userName\":{}1{}}}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    post_raw(&s, "/t/acme/scim/v2/Users", deep_obj.into_bytes()).await.assert_error(400, Some("invalidSyntax"));
    // Invalid UTF-8.
    post_raw(&s, "/t/acme/scim/v2/Users", b"{\"userName\":\"\xc3\x28\"}".to_vec()).await.assert_error(400, Some("invalidSyntax"));
    // A 1 MB string attribute (under the body limit of a default server) is refused by value.
    let big = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.max_body_bytes = 2 * 1024 * 1024).await;
    let r = big.post("/Users", json!({"userName": "big@x.com", "title": "x".repeat(1_000_000)})).await;
    r.assert_error(400, Some("invalidValue"));
    assert_eq!(big.count("acme", "SELECT count(*) FROM users WHERE user_name = 'big@x.com'"), 0);
    // A body over the limit: 413.
    let huge = json!({"userName": "huge@x.com", "title": "y".repeat(100_000)});
    s.post("/Users", huge).await.assert_error(413, None);
    // 100,000 members in one PATCH: past the body limit, 413, nothing applied.
    let gid = s.post("/Groups", json!({"displayName": "Target"})).await.body["id"].as_str().unwrap().to_string();
    let members: Vec<Value> = (0..100_000).map(|i| json!({"value": format!("m{i}")})).collect();
    s.patch(&format!("/Groups/{gid}"), json!({"Operations": [{"op": "add", "path": "members", "value": members}]})).await.assert_error(413, None);
    // Unknown SCIM schemas (another resource type's, or an invented one) are refused;
    // a vendor's URN (Entra's Microsoft group schema) is tolerated.
    s.post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "g@x.com"})).await.assert_error(400, Some("invalidSyntax"));
    s.post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:bogus:2.0:User"], "userName": "b@x.com"}))
        .await
        .assert_error(400, Some("invalidValue"));
    s.post("/Users", json!({"schemas": "urn:ietf:params:scim:schemas:core:2.0:User", "userName": "s@x.com"})).await.assert_error(400, Some("invalidSyntax"));
    assert_eq!(users(&s), before, "nothing was stored");
}

#[tokio::test]
async fn hostile_queries_and_sql_looking_values() {
    let s = TestServer::start().await;
    // A filter of 10,000 clauses.
    // (A URL cannot carry it; /.search takes the filter in the body.)
    // Ten thousand clauses (~170 KB) are past this server's body limit; a thousand are
    // within it and past the filter limits.
    let clauses = |n| vec!["userName eq \"a\""; n].join(" or ");
    s.post("/Users/.search", json!({"filter": clauses(10_000)})).await.assert_error(413, None);
    s.post("/Users/.search", json!({"filter": clauses(1_000)})).await.assert_error(400, Some("invalidFilter"));
    // Paging values outside the range: RFC 7644 §3.4.2.4 defines them (count < 0 is 0,
    // startIndex < 1 is 1, count is capped at maxResults), so they are answered, not refused.
    for q in ["count=-1", "count=1000000000000", "startIndex=0", "startIndex=-5&count=99999999999999999999"] {
        let r = s.get(&format!("/Users?{q}")).await;
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert!(r.body["Resources"].as_array().unwrap().len() <= 1000);
    }
    // Tenant ids with traversal or encoded slashes never touch a file.
    for t in ["..", "..%2f..", "%2e%2e", "a%2Fb", "acme%00"] {
        let r = s.raw(Method::GET, &format!("/t/{t}/scim/v2/Users"), &[("authorization", &s.auth)], None).await;
        assert_eq!(r.status, 404, "{t}");
    }
    // SQL-looking strings are stored and matched literally.
    let nasty = "o'brien\"; DROP TABLE users; --@x.com";
    let r = s.post("/Users", json!({"userName": nasty, "title": "1' OR '1'='1"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let encoded: String = nasty.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = s.get(&format!("/Users?filter=userName%20eq%20%22{}%22", encoded.replace("%22", "%5C%22"))).await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    assert_eq!(r.body["Resources"][0]["title"], "1' OR '1'='1");
    let r = s.get("/Users?filter=title%20eq%20%221'%20OR%20'1'%3D'2%22").await;
    assert_eq!(r.body["totalResults"], 0);
    assert!(s.count("acme", "SELECT count(*) FROM users") >= 2, "the table is still there");
}

#[tokio::test]
async fn header_flooding_is_refused() {
    let s = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut tls = connector(&s.ca, None).connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut req = String::from("GET /healthz HTTP/1.1\r\nhost: localhost\r\n");
    for i in 0..5_000 {
        req.push_str(&format!("x-flood-{i}: {}\r\n", "v".repeat(20)));
    }
    req.push_str("\r\n");
    let _ = tls.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{}", &text[..text.len().min(200)]);
    // Others are unaffected.
    assert_eq!(s.client.raw(Method::GET, "/healthz", &[], None).await.status, 200);
}

/// GET /Users from a chosen loopback address.
async fn from(s: &TestServer, addr: &str, auth: &str) -> crate::support::Response {
    crate::support::from_address(s, addr, Method::GET, "/t/acme/scim/v2/Users", auth).await
}

#[tokio::test]
async fn brute_force_is_throttled_without_locking_out_the_admin() {
    let s = TestServer::start().await;
    let wrong = basic(ADMIN, "guess");
    let right = basic(ADMIN, PASSWORD);
    for _ in 0..scimd::auth::throttle::ACCOUNT_LIMIT {
        from(&s, "127.0.0.2", &wrong).await.assert_error(401, None);
    }
    let r = from(&s, "127.0.0.2", &wrong).await;
    r.assert_error(429, None);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // Even the right password is held back from the attacking address…
    from(&s, "127.0.0.2", &right).await.assert_error(429, None);
    // …but the admin's own client is not locked out.
    assert_eq!(from(&s, "127.0.0.3", &right).await.status, 200);
    // One address trying many account names is throttled too.
    for i in 0..scimd::auth::throttle::ADDRESS_LIMIT {
        from(&s, "127.0.0.4", &basic(&format!("user{i}"), "x")).await;
    }
    from(&s, "127.0.0.4", &basic("yet-another", "x")).await.assert_error(429, None);
    assert_eq!(from(&s, "127.0.0.5", &right).await.status, 200);
}

#[tokio::test]
async fn an_exposed_private_key_stops_the_server_starting() {
    let s = TestServer::start().await;
    s.client.as_(&basic(ADMIN, PASSWORD), Method::POST, "/t/acme/rest/token/apiKeygen").await;
    let data = s.data();
    let key = data.private_key(&scimd::tenant::TenantId::parse("acme").unwrap());
    let dir = s.stop().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let certs = scimd::certs::generate(&dir.path().join("certs2"), &["localhost".into()]).unwrap();
    let config = scimd::config::ServeConfig {
        data_dir: data.root().to_path_buf(),
        acme: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some((certs.server_cert, certs.server_key)),
        public_url: None,
        kdf_iterations: 1000,
        max_body_bytes: 65536,
        limits: scimd::config::Limits::default(),
        tenants: scimd::tenant::TenantLimits::default(),
        max_open_tenants_given: false,
        metrics_listen: None,
    };
    let err = scimd::commands::start_server(&config).await.err().expect("refused to start").to_string();
    assert!(err.contains("readable by others") && err.contains("chmod 600"), "{err}");
}
