//! Issue 5: provisioning semantics under the tenant's settings (defaults unless a test
//! writes its own tenant.toml).

use hyper::Method;
use serde_json::{json, Value};

use crate::support::{basic, scimd_cli, TestServer, ADMIN, PASSWORD};

const SCIMD: &str = "urn:scimd:params:scim:schemas:extension:2.0:User";

fn person(name: &str) -> Value {
    json!({"userName": name, "emails": [{"value": name, "type": "work", "primary": true}], "name": {"givenName": "G", "familyName": "F"}})
}

fn q(s: &str) -> String {
    s.replace(' ', "%20").replace('"', "%22")
}

async fn create(s: &TestServer, name: &str) -> Value {
    let r = s.post("/Users", person(name)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn events(s: &TestServer, action: &str) -> Vec<Value> {
    let conn = s.db("acme");
    let mut stmt = conn.prepare("SELECT detail FROM events WHERE action = ?1 ORDER BY seq").unwrap();
    stmt.query_map([action], |r| r.get::<_, String>(0)).unwrap().map(|d| serde_json::from_str(&d.unwrap()).unwrap()).collect()
}

#[tokio::test]
async fn soft_delete_hides_keeps_and_restores() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    let user = create(&s, "leaver@x.com").await;
    let id = user["id"].as_str().unwrap().to_string();
    let gid = s.post("/Groups", json!({"displayName": "Team", "members": [{"value": id}]})).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
    s.get(&format!("/Users/{id}")).await.assert_error(404, None);
    assert_eq!(s.get(&format!("/Users?filter={}", q("userName eq \"leaver@x.com\""))).await.body["totalResults"], 0);
    assert!(s.get(&format!("/Groups/{gid}")).await.body.get("members").is_none(), "hidden from the group too");
    // The row, its history and its membership record are kept.
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name = 'leaver@x.com' AND deleted_at IS NOT NULL AND active = 0"), 1);
    assert_eq!(s.count("acme", "SELECT count(*) FROM memberships"), 1);
    s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]})).await.assert_error(404, None);
    // Entra re-creates the user: same id, active again, membership back.
    let r = s.post("/Users", person("Leaver@X.com")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.body["id"].as_str(), r.body["active"].as_bool()), (Some(id.as_str()), Some(true)));
    assert_eq!(s.get(&format!("/Groups/{gid}")).await.body["members"][0]["value"], id.as_str());
    assert_eq!(events(&s, "restore").len(), 1);
}

#[tokio::test]
async fn hard_delete_keeps_only_the_event() {
    let s = TestServer::start_with_settings("delete_mode = \"hard\"\n", |_| {}).await;
    let id = create(&s, "gone@x.com").await["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name = 'gone@x.com'"), 0);
    let deleted = events(&s, "delete");
    assert_eq!(deleted[0]["mode"], "hard");
    assert_eq!(deleted[0]["before"]["userName"], "gone@x.com");
    // A new POST makes a new user.
    assert_ne!(create(&s, "gone@x.com").await["id"].as_str().unwrap(), id);
}

#[tokio::test]
async fn username_must_be_the_email() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    let before = s.count("acme", "SELECT count(*) FROM users");
    let r = s.post("/Users", json!({"userName": "bob@x.com", "emails": [{"value": "robert@x.com", "primary": true}]})).await;
    r.assert_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("bob@x.com") && detail.contains("robert@x.com"), "{detail}");
    s.post("/Users", json!({"userName": "bob@x.com"})).await.assert_error(400, Some("invalidValue"));
    // The primary email wins over work, work over the first; case does not matter.
    let r = s.post("/Users", json!({"userName": "BOB@x.com", "emails": [{"value": "other@x.com"}, {"value": "bob@x.com", "type": "work"}]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.post("/Users", json!({"userName": "c@x.com", "emails": [{"value": "c@x.com", "type": "work"}, {"value": "d@x.com", "primary": true}]}))
        .await
        .assert_error(400, Some("invalidValue"));
    assert_eq!(s.count("acme", "SELECT count(*) FROM users"), before + 1);
    // An update that breaks the rule is refused and changes nothing.
    let id = r.body["id"].as_str().unwrap();
    s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "replace", "path": "userName", "value": "new@x.com"}]}))
        .await
        .assert_error(400, Some("invalidValue"));
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["userName"], "BOB@x.com");
}

#[tokio::test]
async fn licences_by_availability_and_the_api_rule() {
    // The admin holds one of the two Creator seats.
    let s = TestServer::start_with_settings("creator = 2\ncreator_float = 1\n", |_| {}).await;
    let lic = |v: &Value| v[SCIMD]["license"].as_str().unwrap().to_string();
    let u1 = create(&s, "u1@x.com").await;
    let u2 = create(&s, "u2@x.com").await;
    let u3 = create(&s, "u3@x.com").await;
    assert_eq!((lic(&u1), lic(&u2), lic(&u3)), ("creator".into(), "creator_float".into(), "none".into()));
    assert!(events(&s, "license").iter().any(|e| e["warning"].as_str().is_some_and(|w| w.contains("no Creator"))));
    assert_eq!(u1[SCIMD]["authenticationType"], "idp");
    assert_eq!(u1[SCIMD]["managedBy"], "idp");
    // Deactivation frees the seat; the next user gets it; reactivation takes what is free.
    let id1 = u1["id"].as_str().unwrap();
    let r = s.patch(&format!("/Users/{id1}"), json!({"Operations": [{"op": "replace", "value": {"active": false}}]})).await;
    assert_eq!(lic(&r.body), "none");
    assert_eq!(lic(&create(&s, "u4@x.com").await), "creator");
    let r = s.patch(&format!("/Users/{id1}"), json!({"Operations": [{"op": "replace", "value": {"active": true}}]})).await;
    assert_eq!(lic(&r.body), "none", "no seat is free now");
    // The IdP cannot set it.
    s.patch(&format!("/Users/{id1}"), json!({"Operations": [{"op": "replace", "path": format!("{SCIMD}:license"), "value": "creator"}]}))
        .await
        .assert_error(400, Some("mutability"));
    let mut put = person("u1@x.com");
    put[SCIMD] = json!({"license": "creator"});
    assert_eq!(lic(&s.put(&format!("/Users/{id1}"), put).await.body), "none");
    assert!(s.get("/Schemas").await.body["Resources"].as_array().unwrap().iter().any(|r| r["id"] == SCIMD));
    // The operator can; and the API needs a named Creator seat.
    let (ok, out) = scimd_cli(&s, &["user", "set-license", "--tenant", "acme", "--username", ADMIN, "--license", "creator_float"]);
    assert!(ok, "{out}");
    let r = s.get("/Users").await;
    r.assert_error(403, None);
    assert!(r.body["detail"].as_str().unwrap().contains("Creator Float"));
    scimd_cli(&s, &["user", "set-license", "--tenant", "acme", "--username", ADMIN, "--license", "creator"]);
    assert_eq!(s.get("/Users").await.status, 200);
}

#[tokio::test]
async fn local_users_are_left_alone_until_adopted() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    let (ok, out) = scimd_cli(&s, &["user", "add", "--local", "--tenant", "acme", "--username", "old@x.com", "--email", "old@x.com"]);
    assert!(ok, "{out}");
    let found = s.get(&format!("/Users?filter={}", q("userName eq \"old@x.com\""))).await;
    let local = found.body["Resources"][0].clone();
    let lid = local["id"].as_str().unwrap().to_string();
    assert_eq!((local[SCIMD]["managedBy"].as_str(), local[SCIMD]["authenticationType"].as_str()), (Some("local"), Some("basic")));
    // Group sync does not touch it: adding it as a member is skipped (and logged).
    let gid = s.post("/Groups", json!({"displayName": "G", "members": [{"value": lid}]})).await.body["id"].as_str().unwrap().to_string();
    assert!(s.get(&format!("/Groups/{gid}")).await.body.get("members").is_none());
    assert!(events(&s, "ignore").iter().any(|e| e["reason"] == "local user not managed by the IdP"));
    // A SCIM write adopts it: the IdP's attributes win and managedBy becomes idp.
    let r = s.put(&format!("/Users/{lid}"), json!({"userName": "old@x.com", "emails": [{"value": "old@x.com", "primary": true}], "title": "Adopted"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["title"].as_str(), r.body[SCIMD]["managedBy"].as_str()), (Some("Adopted"), Some("idp")));
    assert_eq!(events(&s, "adopt").len(), 1);
    s.patch(&format!("/Groups/{gid}"), json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": lid}]}]})).await;
    assert_eq!(s.get(&format!("/Groups/{gid}")).await.body["members"][0]["value"], lid.as_str());
}

#[tokio::test]
async fn groups_link_keep_local_members_and_hide_projects() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    assert!(scimd_cli(&s, &["group", "add", "--tenant", "acme", "--name", "Finance"]).0);
    assert!(scimd_cli(&s, &["group", "add", "--tenant", "acme", "--name", "Secret Project", "--project"]).0);
    scimd_cli(&s, &["user", "add", "--local", "--tenant", "acme", "--username", "clerk@x.com", "--email", "clerk@x.com"]);
    let conn = s.db("acme");
    conn.execute(
        "INSERT INTO memberships (group_pk, user_pk, source) SELECT g.pk, u.pk, 'local' FROM groups g, users u WHERE g.display_name = 'Finance' AND u.user_name = 'clerk@x.com'",
        [],
    )
    .unwrap();
    let clerk: String = conn.query_row("SELECT id FROM users WHERE user_name = 'clerk@x.com'", [], |r| r.get(0)).unwrap();
    let finance: String = conn.query_row("SELECT id FROM groups WHERE display_name = 'Finance'", [], |r| r.get(0)).unwrap();
    // Project groups do not exist for SCIM.
    let project: String = conn.query_row("SELECT id FROM groups WHERE scope = 'project'", [], |r| r.get(0)).unwrap();
    s.get(&format!("/Groups/{project}")).await.assert_error(404, None);
    s.delete(&format!("/Groups/{project}")).await.assert_error(404, None);
    assert_eq!(s.get("/Groups").await.body["totalResults"], 1);
    s.post("/Groups", json!({"displayName": "Secret Project"})).await.assert_error(409, Some("uniqueness"));
    // Pushing "Finance" links to it: same id, local member kept, now IdP-managed.
    let idp_user = create(&s, "pushed@x.com").await["id"].as_str().unwrap().to_string();
    let r = s.post("/Groups", json!({"displayName": "Finance", "externalId": "okta-1", "members": [{"value": idp_user}]})).await;
    assert_eq!((r.status.as_u16(), r.body["id"].as_str()), (201, Some(finance.as_str())));
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(events(&s, "link").len(), 1);
    // Replacing the member list replaces only what the IdP added.
    let r = s.put(&format!("/Groups/{finance}"), json!({"displayName": "Finance", "members": []})).await;
    assert_eq!(r.body["members"], json!([{"value": clerk, "$ref": format!("https://localhost:{}/t/acme/scim/v2/Users/{clerk}", s.addr.port()), "type": "User"}]));
    // An inactive Basic-auth member leaves at the group's next sync, with an event.
    s.db("acme").execute("UPDATE users SET active = 0 WHERE user_name = 'clerk@x.com'", []).unwrap();
    s.patch(&format!("/Groups/{finance}"), json!({"Operations": [{"op": "replace", "path": "displayName", "value": "Finance"}]})).await;
    assert!(s.get(&format!("/Groups/{finance}")).await.body.get("members").is_none());
    assert!(events(&s, "delete").iter().any(|e| e["reason"] == "inactive Basic-auth user" && e["member"] == clerk.as_str()));
}

#[tokio::test]
async fn group_conflict_reject_is_409() {
    let s = TestServer::start_with_settings("group_conflict = \"reject\"\n", |_| {}).await;
    s.post("/Groups", json!({"displayName": "Ops"})).await;
    s.post("/Groups", json!({"displayName": "Ops"})).await.assert_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn policies() {
    let toml = "[policies]\nonly_assign = [\"app-.*\", \"Everyone\"]\nnever_assign = [\"app-legacy\"]\nalways_assign = [\"Everyone\"]\nnever_remove = [\"app-auditors\"]\n";
    let s = TestServer::start_with_settings(toml, |_| {}).await;
    let everyone = s.post("/Groups", json!({"displayName": "Everyone"})).await.body["id"].as_str().unwrap().to_string();
    let a = create(&s, "a@x.com").await["id"].as_str().unwrap().to_string();
    // always_assign: every SCIM-provisioned user joins Everyone.
    assert_eq!(s.get(&format!("/Groups/{everyone}")).await.body["members"][0]["value"], a.as_str());
    // A group outside only_assign, and one in never_assign: accepted (201), kept, ignored.
    for name in ["sales", "app-legacy"] {
        let r = s.post("/Groups", json!({"displayName": name, "members": [{"value": a}]})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.body.get("members").is_none(), "{name}: memberships not applied");
    }
    let reasons: Vec<String> = events(&s, "ignore").iter().filter_map(|e| e["reason"].as_str().map(str::to_string)).collect();
    assert!(reasons.iter().any(|r| r.contains("only_assign")) && reasons.iter().any(|r| r.contains("never_assign")), "{reasons:?}");
    let r = s.post("/Groups", json!({"displayName": "app-team", "members": [{"value": a}]})).await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    // never_remove: SCIM never removes members of app-auditors.
    let aud = s.post("/Groups", json!({"displayName": "app-auditors", "members": [{"value": a}]})).await.body["id"].as_str().unwrap().to_string();
    s.patch(&format!("/Groups/{aud}"), json!({"Operations": [{"op": "remove", "path": "members", "value": [{"value": a}]}]})).await;
    assert_eq!(s.get(&format!("/Groups/{aud}")).await.body["members"].as_array().unwrap().len(), 1);
    assert!(events(&s, "ignore").iter().any(|e| e["reason"] == "never_remove policy"));
}

#[tokio::test]
async fn the_event_feed_and_the_log_command() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    let id = create(&s, "ev@x.com").await["id"].as_str().unwrap().to_string();
    s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "replace", "path": "title", "value": "Boss"}]})).await;
    let feed = |after: i64, limit: u32| {
        let s = &s;
        async move { s.client.as_(&basic(ADMIN, PASSWORD), Method::GET, &format!("/t/acme/events?after={after}&limit={limit}")).await }
    };
    let first = feed(0, 2).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let page: Vec<i64> = first.body["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(page.len(), 2);
    let next = first.body["next"].as_i64().unwrap();
    let rest = feed(next, 100).await;
    let all: Vec<&Value> = rest.body["events"].as_array().unwrap().iter().collect();
    assert!(all.iter().all(|e| e["seq"].as_i64().unwrap() > next), "in order, after the cursor");
    let update = all.iter().find(|e| e["action"] == "update" && e["resourceId"] == id.as_str()).expect("the update is in the feed");
    assert_eq!((update["detail"]["before"]["title"].clone(), update["detail"]["after"]["title"].clone()), (Value::Null, json!("Boss")));
    assert_eq!(update["principal"], ADMIN);
    s.client.raw(Method::GET, "/t/acme/events", &[], None).await.assert_error(401, None);
    // The operator's view of the same log.
    let (ok, out) = scimd_cli(&s, &["log", "--tenant", "acme", "--user", "ev@x.com", "--json"]);
    assert!(ok, "{out}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|e| e["action"] == "create") && lines.iter().any(|e| e["action"] == "update"));
    assert!(lines.iter().all(|e| e["resourceId"].as_str().unwrap().contains(&id)));
    let (_, out) = scimd_cli(&s, &["log", "--tenant", "acme", "--since", "2999-01-01T00:00:00Z"]);
    assert!(out.trim().is_empty());
}
