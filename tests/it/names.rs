//! Issue 13, items 9, 10, 11 and 14: stored data is what it claims to be. Names that read
//! the same are the same name (userName, group displayName, sign-in); names with control
//! or invisible formatting characters are refused; values of the wrong JSON type and
//! bodies that name a key twice are refused; `active` always has a value; deactivating or
//! deleting an account revokes its tokens for good. Every refusal changes nothing stored.

use hyper::Method;
use serde_json::json;

use crate::support::{basic, Response, TestServer, ADMIN, PASSWORD};

/// What a refused request must leave as it was: every user, group, membership, token
/// and event row.
fn snapshot(s: &TestServer) -> String {
    let conn = s.db("acme");
    let sql = "SELECT (SELECT group_concat(id || '|' || user_name || '|' || active || '|' || version || '|' || license, ';') FROM users)
                  || '#' || (SELECT coalesce(group_concat(id || '|' || display_name || '|' || version, ';'), '') FROM groups)
                  || '#' || (SELECT count(*) FROM memberships) || '#' || (SELECT count(*) FROM user_emails)
                  || '#' || (SELECT count(*) FROM events) || '#' || (SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL)";
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn post_bytes(s: &TestServer, method: Method, path: &str, body: &str) -> Response {
    let headers = [("authorization", s.auth.as_str()), ("content-type", "application/scim+json")];
    s.raw(method, &format!("/t/acme/scim/v2{path}"), &headers, Some(body.as_bytes().to_vec())).await
}

fn id_of(r: &Response) -> String {
    assert!(r.status.is_success(), "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn user_names_that_read_the_same_are_the_same_name() {
    let s = TestServer::start().await;
    let pairs = [
        ("\u{e4}lice@x.com", "\u{c4}LICE@X.COM"),
        ("jos\u{e9}@x.com", "jose\u{301}@x.com"),
        ("bob@x.com", "\u{ff42}\u{ff4f}\u{ff42}@x.com"),
        ("kate@x.com", "\u{212a}ate@x.com"),
        ("\u{130}lker@x.com", "i\u{307}lker@x.com"),
        ("anna maria", "Anna\u{a0}Maria"),
    ];
    for (first, second) in pairs {
        let id = id_of(&s.post("/Users", json!({"userName": first})).await);
        let before = snapshot(&s);
        s.post("/Users", json!({"userName": second})).await.assert_error(409, Some("uniqueness"));
        assert_eq!(snapshot(&s), before, "{second:?} changed nothing");
        // A filter finds the user that uniqueness says is the same.
        let found = s.get(&format!("/Users?filter={}", urlencode(&format!("userName eq \"{second}\"")))).await;
        assert_eq!(found.body["totalResults"], 1, "{second:?}: {}", found.body);
        assert_eq!(found.body["Resources"][0]["id"], id.as_str());
        assert_eq!(found.body["Resources"][0]["userName"], first, "the name is kept as it was sent");
    }
    // Renaming onto another user's name is the same conflict.
    let other = s.user("other@x.com").await;
    let before = snapshot(&s);
    let rename = json!({"Operations": [{"op": "replace", "path": "userName", "value": "\u{c4}lice@x.com"}]});
    s.patch(&format!("/Users/{other}"), rename).await.assert_error(409, Some("uniqueness"));
    s.put(&format!("/Users/{other}"), json!({"userName": "KATE@x.com"})).await.assert_error(409, Some("uniqueness"));
    assert_eq!(snapshot(&s), before);
    // Unicode's default case mapping, not Turkish rules: the dotless ı is its own letter.
    id_of(&s.post("/Users", json!({"userName": "\u{131}lker@x.com"})).await);
    id_of(&s.post("/Users", json!({"userName": "ilker@x.com"})).await);
}

/// Sign-in finds the account by the same key, so the name an operator typed matches.
#[tokio::test]
async fn basic_auth_finds_the_account_by_the_same_key() {
    let s = TestServer::start().await;
    let full_width: String = ADMIN.chars().map(|c| if c == '-' { '\u{ff0d}' } else { char::from_u32(u32::from(c) - 0x61 + 0xff41).unwrap() }).collect();
    for name in [ADMIN.to_uppercase(), full_width] {
        let r = s.client.as_(&basic(&name, PASSWORD), Method::GET, "/t/acme/scim/v2/Users").await;
        assert_eq!(r.status, 200, "{name:?}: {}", r.body);
    }
}

#[tokio::test]
async fn names_with_control_or_format_characters_are_refused() {
    let s = TestServer::start().await;
    let uid = s.user("plain@x.com").await;
    let gid = id_of(&s.post("/Groups", json!({"displayName": "Plain"})).await);
    let before = snapshot(&s);
    for bad in ["nul\u{0}@x.com", "zw\u{200b}sp@x.com", "\u{feff}bom@x.com", "rlo@x.com\u{202e}", "bell\u{7}@x.com", "soft\u{ad}hyphen"] {
        let r = s.post("/Users", json!({"userName": bad})).await;
        r.assert_error(400, Some("invalidValue"));
        assert!(r.body["detail"].as_str().unwrap().contains("U+"), "the detail names the character: {}", r.body);
        s.put(&format!("/Users/{uid}"), json!({"userName": bad})).await.assert_error(400, Some("invalidValue"));
        let op = json!({"Operations": [{"op": "replace", "path": "userName", "value": bad}]});
        s.patch(&format!("/Users/{uid}"), op).await.assert_error(400, Some("invalidValue"));
        s.post("/Groups", json!({"displayName": bad})).await.assert_error(400, Some("invalidValue"));
        s.put(&format!("/Groups/{gid}"), json!({"displayName": bad})).await.assert_error(400, Some("invalidValue"));
        let op = json!({"Operations": [{"op": "replace", "path": "displayName", "value": bad}]});
        s.patch(&format!("/Groups/{gid}"), op).await.assert_error(400, Some("invalidValue"));
    }
    assert_eq!(snapshot(&s), before, "nothing stored changed");
}

#[tokio::test]
async fn group_names_compare_like_user_names() {
    let s = TestServer::start().await;
    let sales = id_of(&s.post("/Groups", json!({"displayName": "Sales"})).await);
    // group_conflict = "link" (the default): the same name links to the existing group.
    for same in ["sales ", "  SALES", "\u{ff33}ales", "Sa\u{ff4c}es"] {
        let r = s.post("/Groups", json!({"displayName": same})).await;
        assert_eq!(id_of(&r), sales, "{same:?} links to Sales");
    }
    assert_eq!(s.count("acme", "SELECT count(*) FROM groups"), 1);
    let filtered = s.get(&format!("/Groups?filter={}", urlencode("displayName eq \"sales \""))).await;
    assert_eq!(filtered.body["totalResults"], 1, "{}", filtered.body);
    let other = id_of(&s.post("/Groups", json!({"displayName": "Support"})).await);
    let before = snapshot(&s);
    s.patch(&format!("/Groups/{other}"), json!({"Operations": [{"op": "replace", "path": "displayName", "value": "SALES "}]}))
        .await
        .assert_error(409, Some("uniqueness"));
    assert_eq!(snapshot(&s), before);

    let strict = TestServer::start_with_settings("require_username_is_email = false\ngroup_conflict = \"reject\"\n", |_| {}).await;
    id_of(&strict.post("/Groups", json!({"displayName": "Sales"})).await);
    let before = snapshot(&strict);
    strict.post("/Groups", json!({"displayName": "sales "})).await.assert_error(409, Some("uniqueness"));
    assert_eq!(snapshot(&strict), before);
}

#[tokio::test]
async fn values_of_the_wrong_json_type_are_refused() {
    let s = TestServer::start().await;
    let uid = s.user("typed@x.com").await;
    let before = snapshot(&s);
    let bodies = [
        json!({"userName": 12345}),
        json!({"userName": true}),
        json!({"userName": ["a@x.com"]}),
        json!({"userName": "e@x.com", "emails": "notalist"}),
        json!({"userName": "e@x.com", "emails": ["bare@x.com"]}),
        json!({"userName": "e@x.com", "emails": [{"value": 42}]}),
        json!({"userName": "e@x.com", "title": 7}),
        json!({"userName": "e@x.com", "name": "Ann Example"}),
        json!({"userName": "e@x.com", "active": 1}),
        json!({"userName": "e@x.com", "active": "yes"}),
        json!({"userName": "e@x.com", "emails": [{"value": "e@x.com", "primary": "maybe"}]}),
    ];
    for body in &bodies {
        s.post("/Users", body.clone()).await.assert_error(400, Some("invalidValue"));
        s.put(&format!("/Users/{uid}"), body.clone()).await.assert_error(400, Some("invalidValue"));
    }
    for (path, value) in [("userName", json!(12345)), ("emails", json!("notalist")), ("title", json!(false)), ("active", json!(0))] {
        let op = json!({"Operations": [{"op": "replace", "path": path, "value": value}]});
        s.patch(&format!("/Users/{uid}"), op).await.assert_error(400, Some("invalidValue"));
    }
    s.post("/Groups", json!({"displayName": 7})).await.assert_error(400, Some("invalidValue"));
    assert_eq!(snapshot(&s), before, "nothing stored changed");
    // What IdPs really send stays accepted: Entra's "False", a bare manager id.
    let ok = s.patch(&format!("/Users/{uid}"), json!({"Operations": [{"op": "Replace", "path": "active", "value": "False"}]})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["active"], false);
    let manager = json!({"Operations": [{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": uid}]});
    assert_eq!(s.patch(&format!("/Users/{uid}"), manager).await.status, 200);
    let single = s.post("/Users", json!({"userName": "single@x.com", "emails": {"value": "single@x.com", "type": "work"}})).await;
    assert_eq!(single.status, 201, "{}", single.body);
    assert_eq!(single.body["emails"][0]["value"], "single@x.com", "a single object for a multi-valued attribute is one value");
}

#[tokio::test]
async fn a_key_given_twice_is_ambiguous() {
    let s = TestServer::start().await;
    let uid = s.user("twice@x.com").await;
    let gid = id_of(&s.post("/Groups", json!({"displayName": "Twice"})).await);
    let before = snapshot(&s);
    for body in [
        r#"{"userName": "a@x.com", "userName": "b@x.com"}"#,
        r#"{"userName": "a@x.com", "username": "b@x.com"}"#,
        r#"{"userName": "a@x.com", "name": {"givenName": "A", "givenname": "B"}}"#,
        r#"{"userName": "a@x.com", "emails": [{"value": "a@x.com", "value": "b@x.com"}]}"#,
    ] {
        let r = post_bytes(&s, Method::POST, "/Users", body).await;
        r.assert_error(400, Some("invalidSyntax"));
        post_bytes(&s, Method::PUT, &format!("/Users/{uid}"), body).await.assert_error(400, Some("invalidSyntax"));
    }
    let patch = r#"{"Operations": [{"op": "replace", "path": "active", "value": false, "value": true}]}"#;
    post_bytes(&s, Method::PATCH, &format!("/Users/{uid}"), patch).await.assert_error(400, Some("invalidSyntax"));
    let patch = r#"{"Operations": [{"op": "add", "Op": "remove", "path": "members", "value": []}]}"#;
    post_bytes(&s, Method::PATCH, &format!("/Groups/{gid}"), patch).await.assert_error(400, Some("invalidSyntax"));
    let bulk = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [{"method": "POST", "path": "/Users", "data": {"userName": "a@x.com", "userName": "b@x.com"}}]}"#;
    post_bytes(&s, Method::POST, "/Bulk", bulk).await.assert_error(400, Some("invalidSyntax"));
    assert_eq!(snapshot(&s), before, "nothing stored changed");
}

#[tokio::test]
async fn active_always_has_a_value() {
    let s = TestServer::start_with_settings("require_username_is_email = false\ncreator = 1\ncreator_float = 0\n", |_| {}).await;
    // The admin holds the one Creator seat; this user gets none, whatever happens.
    let uid = s.user("seatless@x.com").await;
    let off = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(s.patch(&format!("/Users/{uid}"), off).await.status, 200);
    let before = snapshot(&s);
    for op in [
        json!({"op": "remove", "path": "active"}),
        json!({"op": "replace", "path": "active", "value": null}),
        json!({"op": "replace", "value": {"active": null}}),
    ] {
        let r = s.patch(&format!("/Users/{uid}"), json!({"Operations": [op]})).await;
        r.assert_error(400, Some("invalidValue"));
        assert!(r.body["detail"].as_str().unwrap().contains("true or false"), "{}", r.body);
    }
    assert_eq!(snapshot(&s), before, "nothing stored changed");
    // A PUT without `active` keeps the stored value: the deactivated user stays so.
    let put = s.put(&format!("/Users/{uid}"), json!({"userName": "seatless@x.com", "title": "Clerk"})).await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["active"], false);
    assert_eq!(s.count("acme", &format!("SELECT active FROM users WHERE id = '{uid}'")), 0);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE active IS NULL"), 0);
    let reactivations = format!("SELECT count(*) FROM events WHERE resource_id = '{uid}' AND action = 'reactivate'");
    assert_eq!(s.count("acme", &reactivations), 0, "the PUT did not reactivate");
    // And an active user stays active.
    let on = s.user("on@x.com").await;
    let put = s.put(&format!("/Users/{on}"), json!({"userName": "on@x.com"})).await;
    assert_eq!(put.body["active"], true, "{}", put.body);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `scimd check` names the rows the v5 migration had to keep apart.
#[tokio::test]
async fn check_reports_names_kept_apart() {
    let s = TestServer::start().await;
    let first = s.user("\u{e4}lice@x.com").await;
    let second = s.user("alice2@x.com").await;
    let dir = s.stop().await;
    let data = scimd::tenant::DataDir::new(dir.path().join("data"));
    let conn = rusqlite::Connection::open(data.database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    // What the migration leaves when a v4 database held both spellings.
    conn.execute("UPDATE users SET user_name = ?1, user_name_key = ?2 WHERE id = ?3", ("\u{c4}LICE@X.COM", "\u{e4}lice@x.com\u{1}9", &second)).unwrap();
    drop(conn);
    let findings = scimd::ops::maintenance::check(&data, None, scimd::clock::UtcMillis::now());
    let clash = findings.iter().find(|f| f.what.contains("\u{c4}LICE@X.COM")).expect("a finding for the kept-apart user");
    assert_eq!(clash.level, scimd::ops::maintenance::Level::Warn);
    assert!(clash.what.contains(&first) && clash.what.contains(&second), "{}", clash.what);
}

/// A fresh token of the admin (the previous one must be dead already).
async fn fresh_token(s: &TestServer) -> String {
    let r = s.client.as_(&basic(ADMIN, PASSWORD), Method::GET, "/t/acme/rest/token").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(with_token(s, &token).await.status, 200);
    token
}

async fn with_token(s: &TestServer, token: &str) -> Response {
    s.client.as_(&format!("Bearer {token}"), Method::GET, "/t/acme/scim/v2/Users").await
}

fn cli(s: &TestServer, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(args)
        .arg("--data-dir")
        .arg(s.data().root())
        .env("RUST_LOG", "scimd=warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Deactivating or (soft) deleting an account kills its token: bringing the account back
/// does not bring the token back. Through the CLI and the store functions (SCIM may not
/// change the service accounts that hold tokens).
#[tokio::test]
async fn deactivation_and_deletion_revoke_tokens_for_good() {
    let s = TestServer::start().await;
    let r = s.client.as_(&basic(ADMIN, PASSWORD), Method::POST, "/t/acme/rest/token/apiKeygen").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let admin_id = s.count("acme", "SELECT pk FROM users WHERE user_name = 'scim-admin'");
    let admin_id: String = s.db("acme").query_row("SELECT id FROM users WHERE pk = ?", [admin_id], |r| r.get(0)).unwrap();

    let token = fresh_token(&s).await;
    cli(&s, &["user", "deactivate", "--tenant", "acme", "--username", ADMIN]);
    cli(&s, &["user", "activate", "--tenant", "acme", "--username", ADMIN]);
    with_token(&s, &token).await.assert_error(401, None);
    let logged = "SELECT count(*) FROM events WHERE resource_type = 'Token' AND action = 'delete' AND detail LIKE '%account deactivated%'";
    assert_eq!(s.count("acme", logged), 1, "the activity log says why the token died");

    let store = scimd::store::Store::open(&s.data().database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    let token = fresh_token(&s).await;
    let id = admin_id.clone();
    store
        .write(move |conn| {
            scimd::store::users::set_active(conn, &id, false, "2030-01-01T00:00:00.000Z")?;
            scimd::store::users::set_active(conn, &id, true, "2030-01-01T00:00:01.000Z")
        })
        .await
        .unwrap();
    with_token(&s, &token).await.assert_error(401, None);

    let token = fresh_token(&s).await;
    let id = admin_id.clone();
    store
        .write(move |conn| {
            scimd::store::users::soft_delete(conn, &id, "2030-01-01T00:00:02.000Z")?;
            scimd::store::users::undelete(conn, &id, &Default::default())?;
            scimd::store::users::set_active(conn, &id, true, "2030-01-01T00:00:03.000Z")?;
            // Restoring gives back what the soft delete took, the licence included.
            scimd::store::users::set_license(conn, &id, scimd::model::License::Creator, "2030-01-01T00:00:03.000Z")
        })
        .await
        .unwrap();
    store.close();
    let revoked = format!("SELECT count(*) FROM api_tokens WHERE user_id = '{admin_id}' AND revoked_at IS NULL");
    assert_eq!(s.count("acme", &revoked), 0, "no live token is left");
    with_token(&s, &token).await.assert_error(401, None);
    // The account itself works again, and a new token for it does.
    fresh_token(&s).await;
}
