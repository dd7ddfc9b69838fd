//! Issue 4: the token API's whole lifecycle. Every rejected token gets 401 with a SCIM
//! error body.

use hyper::Method;
use serde_json::Value;

use crate::support::{basic, scimd_cli, Response, TestServer, ADMIN, PASSWORD};

const TOKEN: &str = "/t/acme/rest/token";

async fn token_api(s: &TestServer, auth: &str, method: Method, path: &str) -> Response {
    s.client.as_(auth, method, &format!("{TOKEN}{path}")).await
}

/// GET /Users with a bearer token.
async fn scim_with(s: &TestServer, tenant: &str, token: &str) -> Response {
    s.client.as_(&format!("Bearer {token}"), Method::GET, &format!("/t/{tenant}/scim/v2/Users")).await
}

async fn issue(s: &TestServer, auth: &str, revoke: bool) -> String {
    let path = if revoke { "?revokeExistingToken=true" } else { "" };
    let r = token_api(s, auth, Method::GET, path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("apikey_"));
    token
}

async fn second_admin(s: &TestServer) -> (String, String) {
    let store = scimd::store::Store::open(&s.data().database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    let id = scimd::commands::add_admin(&store, "admin2", "second-admin-password", 1000).await.unwrap();
    store.close();
    (id, basic("admin2", "second-admin-password"))
}

#[tokio::test]
async fn key_pair_files_and_fingerprint() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::GET, "").await.assert_error(409, None);
    let r = token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let fingerprint = r.body["fingerprint"].as_str().unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:"));
    assert!(!r.raw.windows(11).any(|w| w == b"PRIVATE KEY"), "never the private key");
    let keys = s.dir.path().join("data/tenants/acme/keys");
    let private = std::fs::read_to_string(keys.join("token-signing.key.pem")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    assert!(std::fs::read_to_string(keys.join("token-signing.pub.pem")).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(keys.join("token-signing.key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // RSA 2048 or more: the DER of a 2048-bit PKCS#8 key is over 1,100 bytes.
    assert!(private.len() > 1500);
    let r = token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    assert_ne!(r.body["fingerprint"].as_str().unwrap(), fingerprint, "a new pair replaces the old");
}

#[tokio::test]
async fn issue_reuse_rotate_and_revoke() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    let first = issue(&s, &admin, false).await;
    assert_eq!(scim_with(&s, "acme", &first).await.status, 200);
    // A second GET for an account with a live token: 409 naming the way out; the first
    // token keeps working.
    let r = token_api(&s, &admin, Method::GET, "").await;
    r.assert_error(409, None);
    assert!(r.body["detail"].as_str().unwrap().contains("revokeExistingToken=true"));
    assert_eq!(scim_with(&s, "acme", &first).await.status, 200);
    // Rotation: the new token works, the old one stops at once.
    let second = issue(&s, &admin, true).await;
    scim_with(&s, "acme", &first).await.assert_error(401, None);
    assert_eq!(scim_with(&s, "acme", &second).await.status, 200);
    // Revoke the caller's own token.
    assert_eq!(token_api(&s, &admin, Method::DELETE, "/current").await.status, 204);
    let r = scim_with(&s, "acme", &second).await;
    r.assert_error(401, None);
    assert!(r.body["detail"].as_str().unwrap().contains("revoked"));
    token_api(&s, &admin, Method::DELETE, "/current").await.assert_error(404, None);
    // Revoke another account's token.
    let (admin2_id, admin2) = second_admin(&s).await;
    let theirs = issue(&s, &admin2, false).await;
    assert_eq!(scim_with(&s, "acme", &theirs).await.status, 200);
    assert_eq!(token_api(&s, &admin, Method::DELETE, &format!("/current?forUser={admin2_id}")).await.status, 204);
    scim_with(&s, "acme", &theirs).await.assert_error(401, None);
}

#[tokio::test]
async fn the_issued_token_is_the_callers() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    let r = token_api(&s, &admin, Method::GET, "").await;
    let expires = r.body["expiresAt"].as_str().unwrap();
    let days = scimd::auth::token::days_left(expires, scimd::clock::UtcMillis::now());
    assert!((181..=182).contains(&days), "six months by default: {days} days");
    let me = s.client.as_(&format!("Bearer {}", r.body["token"].as_str().unwrap()), Method::GET, "/t/acme/scim/v2/Me").await;
    assert_eq!(me.body["userName"], ADMIN);
}

#[tokio::test]
async fn key_deletion_and_regeneration_invalidate_everything() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    let before = issue(&s, &admin, false).await;
    // Used once, so the next request would be answered from what was verified (issue 19).
    assert_eq!(scim_with(&s, "acme", &before).await.status, 200);
    assert_eq!(token_api(&s, &admin, Method::DELETE, "/deleteKey").await.status, 204);
    assert!(!s.dir.path().join("data/tenants/acme/keys/token-signing.key.pem").exists());
    scim_with(&s, "acme", &before).await.assert_error(401, None);
    token_api(&s, &admin, Method::GET, "").await.assert_error(409, None);
    token_api(&s, &admin, Method::DELETE, "/deleteKey").await.assert_error(404, None);
    // The activity log has the key and token changes, never the token text.
    let conn = s.db("acme");
    let kinds: Vec<(String, String)> = conn
        .prepare("SELECT action, resource_type FROM events WHERE resource_type IN ('Key', 'Token') ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [("create", "Key"), ("create", "Token"), ("delete", "Key")];
    assert_eq!(kinds, expected.map(|(a, t)| (a.to_string(), t.to_string())));
    let details: String = conn.query_row("SELECT group_concat(detail) FROM events", [], |r| r.get(0)).unwrap();
    assert!(!details.contains(before.trim_start_matches("apikey_")));
    // A new key pair: the old token stays dead, a new one works.
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    scim_with(&s, "acme", &before).await.assert_error(401, None);
    let fresh = issue(&s, &admin, false).await;
    assert_eq!(scim_with(&s, "acme", &fresh).await.status, 200);
    // Regenerating again invalidates the fresh one too.
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    scim_with(&s, "acme", &fresh).await.assert_error(401, None);
}

#[tokio::test]
async fn forged_foreign_expired_and_orphaned_tokens_are_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    let token = issue(&s, &admin, false).await;
    let (payload, sig) = token.trim_start_matches("apikey_").split_once('.').unwrap();

    // Another tenant, with or without a key of its own.
    scim_with(&s, "other", &token).await.assert_error(401, None);
    s.client.as_(&basic(ADMIN, PASSWORD), Method::POST, "/t/other/rest/token/apiKeygen").await;
    scim_with(&s, "other", &token).await.assert_error(401, None);

    // An altered payload (the same claims naming another account, or a later expiry).
    let mut claims: Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    claims["exp"] = (claims["exp"].as_i64().unwrap() + 86_400 * 365).into();
    let altered = format!("apikey_{}.{sig}", B64.encode(serde_json::to_vec(&claims).unwrap()));
    scim_with(&s, "acme", &altered).await.assert_error(401, None);
    // A tampered signature, a truncated one, garbage.
    let mut bytes = B64.decode(sig).unwrap();
    bytes[10] ^= 0x01;
    scim_with(&s, "acme", &format!("apikey_{payload}.{}", B64.encode(&bytes))).await.assert_error(401, None);
    scim_with(&s, "acme", &format!("apikey_{payload}.{}", &sig[..20])).await.assert_error(401, None);
    for junk in ["apikey_", "apikey_x.y", "not-a-token", "apikey_...", &"A".repeat(10_000)] {
        scim_with(&s, "acme", junk).await.assert_error(401, None);
    }
    assert_eq!(scim_with(&s, "acme", &token).await.status, 200, "the genuine token still works");

    // Expired: move the server's clock past the expiry.
    s.advance_days(183);
    let r = scim_with(&s, "acme", &token).await;
    r.assert_error(401, None);
    assert!(r.body["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn a_deactivated_account_loses_its_token() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    let (_, admin2) = second_admin(&s).await;
    let theirs = issue(&s, &admin2, false).await;
    assert_eq!(scim_with(&s, "acme", &theirs).await.status, 200);
    let (ok, out) = scimd_cli(&s, &["user", "deactivate", "--tenant", "acme", "--username", "admin2"]);
    assert!(ok, "{out}");
    scim_with(&s, "acme", &theirs).await.assert_error(401, None);
}

#[tokio::test]
async fn token_endpoints_take_basic_only_and_api_clients_only_mint() {
    let s = TestServer::start().await;
    let admin = basic(ADMIN, PASSWORD);
    token_api(&s, &admin, Method::POST, "/apiKeygen").await;
    let token = issue(&s, &admin, false).await;
    // The token API never accepts a bearer token.
    let r = token_api(&s, &format!("Bearer {token}"), Method::GET, "?revokeExistingToken=true").await;
    r.assert_error(401, None);
    assert!(r.body["detail"].as_str().unwrap().contains("Basic"));
    token_api(&s, &basic(ADMIN, "wrong"), Method::GET, "").await.assert_error(401, None);
    let r = s.client.raw(Method::GET, TOKEN, &[], None).await;
    r.assert_error(401, None);
    token_api(&s, &admin, Method::PUT, "").await.assert_error(405, None);
    token_api(&s, &admin, Method::GET, "/nope").await.assert_error(404, None);

    // An API client mints tokens for the account it acts for, and can do nothing else.
    let data = s.data();
    scimd::commands::token::add_api_client(&data, "acme", ADMIN, 1000).await.unwrap();
    let conn = s.db("acme");
    let client_id: String = conn.query_row("SELECT client_id FROM api_clients", [], |r| r.get(0)).unwrap();
    // The secret was printed once; set a known one to use it here.
    let hash = scimd::auth::password::hash_password("client-secret-for-test", 1000);
    conn.execute("UPDATE api_clients SET secret_hash = ?1", [&hash]).unwrap();
    let client = basic(&client_id, "client-secret-for-test");
    let minted = issue(&s, &client, true).await;
    assert_eq!(scim_with(&s, "acme", &minted).await.status, 200);
    scim_with(&s, "acme", &token).await.assert_error(401, None);
    let r = s.client.as_(&client, Method::GET, "/t/acme/scim/v2/Users").await;
    r.assert_error(403, None);
    token_api(&s, &basic(&client_id, "wrong"), Method::GET, "").await.assert_error(401, None);
}

