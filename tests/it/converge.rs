//! Issue 18: provisioning that converges. A refusal the IdP retries for ever is worse than
//! a partial success it can see: unknown members are skipped, service accounts are not
//! people, a body must claim its schema, and an IdP unlinking a group the application had
//! takes back only what the IdP gave it. Replayed with Okta's and Entra's literal requests
//! (tests/fixtures/), under the idp dialect and the strict one.

use serde_json::{json, Value};

use crate::support::{fixture, scimd_cli, TestServer};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";


async fn member_ids(s: &TestServer, gid: &str) -> Vec<String> {
    let r = s.get(&format!("/Groups/{gid}")).await;
    let mut ids: Vec<String> = r.body["members"].as_array().into_iter().flatten().map(|m| m["value"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn ignored_reasons(s: &TestServer) -> Vec<String> {
    let conn = s.db("acme");
    let mut stmt = conn.prepare("SELECT detail FROM events WHERE action = 'ignore' AND resource_type = 'Membership' ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str::<Value>(&d.unwrap()).unwrap()["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A group update naming 50 members, four of which name no user here (unknown, soft-deleted,
/// hard-deleted, a group): the other 46 join, each skip is an `ignore` event with its
/// reason, and the answer is success, so the IdP's retry loop ends.
#[tokio::test]
async fn unknown_members_are_skipped_and_the_rest_applied() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..48 {
        ids.push(s.user(&format!("m{i}@x.com")).await);
    }
    // m46 is soft-deleted by the IdP, m47 removed on the application side.
    assert_eq!(s.delete(&format!("/Users/{}", ids[46])).await.status, 204);
    s.db("acme").execute("DELETE FROM users WHERE id = ?1", [&ids[47]]).unwrap();
    let other_group = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Other"})).await.body["id"].as_str().unwrap().to_string();
    let gid = s.post("/Groups", fixture("okta/create_group.json", &[])).await.body["id"].as_str().unwrap().to_string();
    // Entra's literal add-members request, its value list carrying all 50 ids.
    let mut body = fixture("entra/update_group_add_members.json", &[("user", &ids[0])]);
    let wanted = body["Operations"][0]["value"].as_array_mut().unwrap();
    wanted.extend(ids[1..].iter().map(|id| json!({"$ref": null, "value": id})));
    wanted.push(json!({"$ref": null, "value": "00u-not-here"}));
    wanted.push(json!({"$ref": null, "value": other_group}));
    let r = s.patch(&format!("/Groups/{gid}"), body).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let mut live: Vec<String> = ids[..46].to_vec();
    live.sort();
    assert_eq!(member_ids(&s, &gid).await, live, "the 46 live users joined");
    let mut reasons = ignored_reasons(&s);
    reasons.sort();
    assert_eq!(reasons, ["a Group (groups do not nest)", "a deleted User", "not a known User", "not a known User"]);

    // The IdP's retry of the same request changes nothing and still succeeds.
    let version = s.get(&format!("/Groups/{gid}")).await.body["meta"]["version"].clone();
    let r = s.patch(&format!("/Groups/{gid}"), json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": "00u-not-here"}]}]})).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.get(&format!("/Groups/{gid}")).await.body["meta"]["version"], version);

    // Okta's literal membership update naming a member that is gone: the rest applies.
    let r = s.patch(&format!("/Groups/{gid}"), fixture("okta/update_membership.json", &[("other", &ids[0]), ("user", "00u-gone")])).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(member_ids(&s, &gid).await.len(), 45, "Okta's remove applied, its stale add skipped");
    assert_eq!(s.patch(&format!("/Groups/{gid}"), fixture("entra/update_group_add_members.json", &[("user", &ids[0])])).await.status, 204);
    // Removing members that are not in the group (Entra's literal request) is a no-op success.
    let r = s.patch(&format!("/Groups/{gid}"), fixture("entra/update_group_remove_members.json", &[("user", "00u-not-here")])).await;
    assert_eq!(r.status, 204);
    let r = s.patch(&format!("/Groups/{gid}"), json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members[value eq \"00u-gone\"]"}]})).await;
    assert_eq!(r.status, 204);
    assert_eq!(member_ids(&s, &gid).await.len(), 46);

    // PUT and POST with an unknown member: the same.
    let r = s.put(&format!("/Groups/{gid}"), json!({"schemas": [GROUP], "displayName": "Test SCIMv2", "members": [{"value": ids[0]}, {"value": "ghost"}]})).await;
    assert_eq!((r.status.as_u16(), r.body["members"].as_array().map(Vec::len)), (200, Some(1)), "{}", r.body);
    let r = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "New", "members": [{"value": ids[1]}, {"value": "ghost"}]})).await;
    assert_eq!((r.status.as_u16(), r.body["members"].as_array().map(Vec::len)), (201, Some(1)), "{}", r.body);
    // 250 invented ids: 100 events of their own, then one saying how many more.
    let before = ignored_reasons(&s).len();
    let ghosts: Vec<Value> = (0..250).map(|i| json!({"value": format!("ghost-{i}\nFAKE LOG LINE")})).collect();
    let r = s.patch(&format!("/Groups/{gid}"), json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": ghosts}]})).await;
    assert_eq!(r.status, 204);
    assert_eq!(ignored_reasons(&s).len() - before, 100);
    let summary: String = s.db("acme").query_row("SELECT detail FROM events WHERE action = 'ignore' AND resource_type = 'Group' ORDER BY seq DESC", [], |r| r.get(0)).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&summary).unwrap()["count"], 150);
    // Counted (the counter is the process's, shared with the tests running beside this one).
    let (_, text) = crate::metrics::scrape(s.metrics_addr.expect("metrics are on"), "/metrics").await;
    let line = text.lines().find(|l| l.starts_with("scimd_members_skipped_total ")).expect("the counter is exported");
    assert!(line.split(' ').nth(1).and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n >= 256.0), "{line}");
}

/// `dialect = "strict"`: the same unknown member is 400 invalidValue and nothing changes.
#[tokio::test]
async fn the_strict_dialect_refuses_unknown_members() {
    let s = TestServer::start_with_settings("require_username_is_email = false\ndialect = \"strict\"\n", |_| {}).await;
    let a = s.user("a@x.com").await;
    let gid = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "G"})).await.body["id"].as_str().unwrap().to_string();
    let before = s.get(&format!("/Groups/{gid}")).await.body;
    let body = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": a}, {"value": "ghost"}]}]});
    let r = s.patch(&format!("/Groups/{gid}"), body).await;
    r.assert_error(400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("ghost is not a known User"), "{}", r.body);
    assert_eq!(s.get(&format!("/Groups/{gid}")).await.body, before);
    s.post("/Groups", json!({"schemas": [GROUP], "displayName": "H", "members": [{"value": "ghost"}]})).await.assert_error(400, Some("invalidValue"));
    assert_eq!(s.count("acme", "SELECT count(*) FROM groups"), 1);
}

/// Okta's SCIM test suite for app submissions reads the first user of
/// `GET /Users?startIndex=1&count=1` and needs a name and an email: on a new tenant that
/// is the first provisioned person, never the service account.
#[tokio::test]
async fn service_accounts_are_not_listed_as_people() {
    let s = TestServer::start().await;
    let first = "/Users?startIndex=1&count=1";
    let r = s.get(first).await;
    assert_eq!((r.body["totalResults"].as_u64(), r.body["Resources"].as_array().map(Vec::len)), (Some(0), Some(0)), "{}", r.body);
    assert_eq!(s.post("/Users", fixture("okta/create_user.json", &[])).await.status, 201);
    let r = s.get(first).await;
    let user = &r.body["Resources"][0];
    assert_eq!(r.body["totalResults"], 1);
    assert!(user["name"]["givenName"].is_string() && user["name"]["familyName"].is_string() && user["emails"][0]["value"].is_string(), "{user}");
    // Not by filter, not by .search, not by the root search.
    let admin = s.get("/Me").await;
    assert_eq!(admin.status, 200, "/Me still answers for the caller");
    let name = admin.body["userName"].as_str().unwrap().to_string();
    let filter = format!("/Users?filter=userName%20eq%20%22{name}%22");
    assert_eq!(s.get(&filter).await.body["totalResults"], 0);
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": format!("userName eq \"{name}\"")});
    assert_eq!(s.post("/Users/.search", search.clone()).await.body["totalResults"], 0);
    assert_eq!(s.post("/.search", search).await.body["totalResults"], 0);
    assert_eq!(s.get("/Users?count=0").await.body["totalResults"], 1, "the unfiltered total leaves it out too");
}

/// A POST or PUT whose `schemas` does not name the resource type's core schema is 400
/// invalidSyntax, and nothing is stored; a vendor's extra URN is tolerated.
#[tokio::test]
async fn a_resource_must_name_its_core_schema() {
    let s = TestServer::start().await;
    let users = s.count("acme", "SELECT count(*) FROM users");
    for schemas in [json!(["urn:nope"]), json!([GROUP]), json!([])] {
        let r = s.post("/Users", json!({"schemas": schemas, "userName": "x@x.com"})).await;
        r.assert_error(400, Some("invalidSyntax"));
        assert!(r.body["detail"].as_str().unwrap().contains(USER), "{}", r.body);
    }
    for schemas in [json!(["urn:nope"]), json!([USER]), json!([])] {
        s.post("/Groups", json!({"schemas": schemas, "displayName": "G"})).await.assert_error(400, Some("invalidSyntax"));
    }
    assert_eq!(s.count("acme", "SELECT count(*) FROM users"), users);
    assert_eq!(s.count("acme", "SELECT count(*) FROM groups"), 0);
    let id = s.user("y@x.com").await;
    let before = s.get(&format!("/Users/{id}")).await.body;
    s.put(&format!("/Users/{id}"), json!({"schemas": ["urn:nope"], "userName": "z@x.com"})).await.assert_error(400, Some("invalidSyntax"));
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, before);
    let r = s.post("/Groups", fixture("entra/create_group.json", &[])).await;
    assert_eq!(r.status, 201, "Entra's Microsoft group URN is tolerated: {}", r.body);
}

/// A group the application had (local members), linked by Okta's Push Groups, renamed by a
/// PATCH and a PUT, then unlinked with "delete the group in the target app" (a DELETE):
/// the group and its local members stay, the IdP's members leave, and a later push links
/// it again. A group the IdP created is deleted as before.
#[tokio::test]
async fn unlinking_a_pushed_group_keeps_what_the_application_made() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    assert!(scimd_cli(&s, &["group", "add", "--tenant", "acme", "--name", "Test SCIMv2"]).0);
    assert!(scimd_cli(&s, &["user", "add", "--local", "--tenant", "acme", "--username", "clerk@x.com", "--email", "clerk@x.com"]).0);
    let conn = s.db("acme");
    conn.execute(
        "INSERT INTO memberships (group_pk, user_pk, source) SELECT g.pk, u.pk, 'local' FROM groups g, users u WHERE g.display_name = 'Test SCIMv2' AND u.user_name = 'clerk@x.com'",
        [],
    )
    .unwrap();
    let clerk: String = conn.query_row("SELECT id FROM users WHERE user_name = 'clerk@x.com'", [], |r| r.get(0)).unwrap();
    let pushed = s.post("/Users", fixture("okta/create_user.json", &[])).await.body["id"].as_str().unwrap().to_string();
    let other = s.post("/Users", json!({"schemas": [USER], "userName": "other@okta.local", "emails": [{"value": "other@okta.local", "primary": true}]})).await;
    let other = other.body["id"].as_str().unwrap().to_string();

    // Push: links by name, adds the IdP's member.
    let r = s.post("/Groups", fixture("okta/create_group.json", &[])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    s.patch(&format!("/Groups/{gid}"), fixture("okta/replace_members.json", &[("user", &pushed), ("other", &other)])).await;
    let mut all = vec![clerk.clone(), pushed.clone(), other.clone()];
    all.sort();
    assert_eq!(member_ids(&s, &gid).await, all);
    // Okta renames it (PATCH, then PUT with the IdP's members only): the local member stays.
    assert_eq!(s.patch(&format!("/Groups/{gid}"), fixture("okta/rename_group.json", &[("group", &gid)])).await.status, 204);
    let r = s.put(&format!("/Groups/{gid}"), json!({"schemas": [GROUP], "id": gid, "displayName": "Renamed", "members": [{"value": pushed}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut kept = vec![clerk.clone(), pushed.clone()];
    kept.sort();
    assert_eq!(member_ids(&s, &gid).await, kept);

    // "Unlink pushed group" + "delete the group in the target app": a DELETE.
    assert_eq!(s.delete(&format!("/Groups/{gid}")).await.status, 204);
    let r = s.get(&format!("/Groups/{gid}")).await;
    assert_eq!((r.status.as_u16(), r.body["displayName"].as_str()), (200, Some("Renamed")), "kept: {}", r.body);
    assert_eq!(member_ids(&s, &gid).await, vec![clerk.clone()], "only the application's member stays");
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE action = 'unlink'"), 1);
    assert_eq!(s.count("acme", &format!("SELECT count(*) FROM groups WHERE id = '{gid}' AND managed_by = 'local'")), 1);
    // Unlink without delete sends nothing; pushing it again links it again, members kept.
    let r = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Renamed", "members": [{"value": other}]})).await;
    assert_eq!((r.status.as_u16(), r.body["id"].as_str()), (201, Some(gid.as_str())));
    assert_eq!(member_ids(&s, &gid).await.len(), 2);

    // Entra scoping out a group it created: DELETE removes it.
    let made = s.post("/Groups", fixture("entra/create_group.json", &[])).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/Groups/{made}")).await.status, 204);
    s.get(&format!("/Groups/{made}")).await.assert_error(404, None);
    // And a local group the IdP never linked is never deleted by it.
    assert!(scimd_cli(&s, &["group", "add", "--tenant", "acme", "--name", "Local only"]).0);
    let local: String = s.db("acme").query_row("SELECT id FROM groups WHERE display_name = 'Local only'", [], |r| r.get(0)).unwrap();
    assert_eq!(s.delete(&format!("/Groups/{local}")).await.status, 204);
    assert_eq!(s.get(&format!("/Groups/{local}")).await.status, 200);
}

/// Entra scoping a group out by removing its members (its literal remove request), then
/// deleting it, on a group the application had: the members Entra added leave; a membership
/// the application made stays, even for a user Entra provisioned and names in its remove,
/// and so do the group and its local member.
#[tokio::test]
async fn entra_scoping_out_a_linked_group_keeps_the_applications_memberships() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    assert!(scimd_cli(&s, &["group", "add", "--tenant", "acme", "--name", "displayName"]).0);
    assert!(scimd_cli(&s, &["user", "add", "--local", "--tenant", "acme", "--username", "clerk@x.com", "--email", "clerk@x.com"]).0);
    let app_made = s.post("/Users", json!({"schemas": [USER], "userName": "a@x.com", "emails": [{"value": "a@x.com", "primary": true}]})).await;
    let app_made = app_made.body["id"].as_str().unwrap().to_string();
    let idp_made = s.post("/Users", json!({"schemas": [USER], "userName": "b@x.com", "emails": [{"value": "b@x.com", "primary": true}]})).await;
    let idp_made = idp_made.body["id"].as_str().unwrap().to_string();
    // The application put the clerk and user a in its group before Entra linked it.
    s.db("acme")
        .execute(
            "INSERT INTO memberships (group_pk, user_pk, source) SELECT g.pk, u.pk, 'local' FROM groups g, users u WHERE g.display_name = 'displayName' AND u.user_name IN ('clerk@x.com', 'a@x.com')",
            [],
        )
        .unwrap();
    let clerk: String = s.db("acme").query_row("SELECT id FROM users WHERE user_name = 'clerk@x.com'", [], |r| r.get(0)).unwrap();
    let r = s.post("/Groups", fixture("entra/create_group.json", &[])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    for user in [&app_made, &idp_made] {
        assert_eq!(s.patch(&format!("/Groups/{gid}"), fixture("entra/update_group_add_members.json", &[("user", user)])).await.status, 204);
    }
    let mut all = vec![clerk.clone(), app_made.clone(), idp_made.clone()];
    all.sort();
    assert_eq!(member_ids(&s, &gid).await, all);

    // Scoped out: Entra removes the members it assigned.
    for user in [&app_made, &idp_made] {
        let r = s.patch(&format!("/Groups/{gid}"), fixture("entra/update_group_remove_members.json", &[("user", user)])).await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let mut kept = vec![clerk.clone(), app_made.clone()];
    kept.sort();
    assert_eq!(member_ids(&s, &gid).await, kept, "the application's memberships stay");
    assert!(ignored_reasons(&s).contains(&"membership made by the application".to_string()));
    // Then the group itself: kept, back under the application, with its members.
    assert_eq!(s.delete(&format!("/Groups/{gid}")).await.status, 204);
    assert_eq!(member_ids(&s, &gid).await, kept);
    assert_eq!(s.count("acme", &format!("SELECT count(*) FROM groups WHERE id = '{gid}' AND managed_by = 'local'")), 1);
}

/// Okta's "unlink pushed group" without "delete the group in the target app" sends nothing:
/// the group stays linked here. Pushing it again (the same POST) finds it, changes nothing
/// and is no new link; and a group the IdP created and posted twice (a retry) is still one
/// it may delete.
#[tokio::test]
async fn a_group_pushed_again_is_the_same_group() {
    let s = TestServer::start_with_settings("", |_| {}).await;
    assert!(scimd_cli(&s, &["group", "add", "--tenant", "acme", "--name", "Test SCIMv2"]).0);
    assert!(scimd_cli(&s, &["user", "add", "--local", "--tenant", "acme", "--username", "clerk@x.com", "--email", "clerk@x.com"]).0);
    s.db("acme")
        .execute(
            "INSERT INTO memberships (group_pk, user_pk, source) SELECT g.pk, u.pk, 'local' FROM groups g, users u WHERE g.display_name = 'Test SCIMv2' AND u.user_name = 'clerk@x.com'",
            [],
        )
        .unwrap();
    let pushed = s.post("/Users", fixture("okta/create_user.json", &[])).await.body["id"].as_str().unwrap().to_string();
    let gid = s.post("/Groups", fixture("okta/create_group.json", &[])).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.patch(&format!("/Groups/{gid}"), fixture("okta/update_membership.json", &[("user", &pushed), ("other", "00u-none")])).await.status, 204);
    let before = member_ids(&s, &gid).await;
    assert_eq!(before.len(), 2);
    // Unlinked in Okta without delete, then pushed again.
    let r = s.post("/Groups", fixture("okta/create_group.json", &[])).await;
    assert_eq!((r.status.as_u16(), r.body["id"].as_str()), (201, Some(gid.as_str())), "{}", r.body);
    assert_eq!(member_ids(&s, &gid).await, before, "the members stay");
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE action = 'link'"), 1, "one link, not two");
    assert_eq!(s.count("acme", &format!("SELECT count(*) FROM groups WHERE id = '{gid}' AND managed_by = 'idp'")), 1);

    // A group Entra created, posted again (a retry after a lost answer), then deleted: gone.
    let made = s.post("/Groups", fixture("entra/create_group.json", &[])).await.body["id"].as_str().unwrap().to_string();
    let again = s.post("/Groups", fixture("entra/create_group.json", &[])).await;
    assert_eq!(again.body["id"].as_str(), Some(made.as_str()));
    assert_eq!(s.delete(&format!("/Groups/{made}")).await.status, 204);
    s.get(&format!("/Groups/{made}")).await.assert_error(404, None);
}

/// Entra's request with its `op` in lower case, so that only one leniency is tested at a time.
fn lowercase_op(mut body: Value) -> Value {
    let op = body["Operations"][0]["op"].as_str().unwrap().to_ascii_lowercase();
    body["Operations"][0]["op"] = json!(op);
    body
}

/// (what, method, path, body, idp status, strict status, strict scimType)
type Case<'a> = (&'a str, &'a str, String, Option<Value>, u16, u16, &'a str);

/// Every tolerance of the idp dialect (`scim::dialect::Leniency`, the README's table), sent
/// to a tenant of each dialect: the idp one accepts it, the strict one answers as RFC
/// 7643/7644 say, and a refused request changes nothing.
#[tokio::test]
async fn each_leniency_under_both_dialects() {
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let idp = TestServer::start().await;
    let strict = TestServer::start_with_settings("require_username_is_email = false\ndialect = \"strict\"\n", |_| {}).await;
    let op = |op: &str, path: Option<&str>, value: Value| {
        let mut o = json!({"op": op, "value": value});
        if let Some(p) = path {
            o["path"] = json!(p);
        }
        json!({"schemas": [PATCH], "Operations": [o]})
    };
    for (server, strict_dialect) in [(&idp, false), (&strict, true)] {
        let r = server.post("/Users", json!({"schemas": [USER], "userName": "u@x.com", "emails": [{"value": "u@x.com", "type": "work"}]})).await;
        let uid = r.body["id"].as_str().unwrap().to_string();
        let gid = server.post("/Groups", json!({"schemas": [GROUP], "displayName": "G"})).await.body["id"].as_str().unwrap().to_string();
        let user = format!("/Users/{uid}");
        let group = format!("/Groups/{gid}");
        let before = (server.get(&user).await.body, server.get(&group).await.body);
        let filter = |f: &str| format!("/Users?filter={}", f.replace(' ', "%20").replace('"', "%22").replace('[', "%5B").replace(']', "%5D"));
        let cases: Vec<Case> = vec![
            ("string boolean", "PATCH", user.clone(), Some(op("replace", Some("active"), json!("True"))), 200, 400, "invalidValue"),
            ("string boolean in a filter", "GET", filter("active eq \"true\""), None, 200, 400, "invalidFilter"),
            ("capitalised op", "PATCH", user.clone(), Some(op("Replace", Some("title"), json!("T"))), 200, 400, "invalidSyntax"),
            ("dotted key", "PATCH", user.clone(), Some(op("replace", None, json!({"name.givenName": "Ann"}))), 200, 400, "invalidSyntax"),
            ("sub-attribute after a filter", "GET", filter("emails[type eq \"work\"].value eq \"u@x.com\""), None, 200, 400, "invalidFilter"),
            ("add through an unmatched filter", "PATCH", user.clone(), Some(op("add", Some("emails[type eq \"home\"].value"), json!("h@x.com"))), 200, 400, "noTarget"),
            ("vendor schema", "POST", "/Groups".into(), Some(fixture("entra/create_group.json", &[])), 201, 400, "invalidSyntax"),
            ("no schemas", "POST", "/Groups".into(), Some(json!({"displayName": "NoSchemas"})), 201, 400, "invalidSyntax"),
            ("one object for a list", "PATCH", user.clone(), Some(op("replace", Some("emails"), json!({"value": "u@x.com", "type": "work"}))), 200, 400, "invalidValue"),
            ("bare id for a complex attribute", "PATCH", user.clone(), Some(op("replace", Some(&format!("{ENT}:manager")), json!("26118"))), 200, 400, "invalidValue"),
            ("unknown member", "PATCH", group.clone(), Some(op("add", Some("members"), json!([{"value": "ghost"}]))), 204, 400, "invalidValue"),
            ("remove members by value", "PATCH", group.clone(), Some(lowercase_op(fixture("entra/update_group_remove_members.json", &[("user", &uid)]))), 204, 400, "invalidValue"),
            ("unknown PATCH path", "PATCH", user.clone(), Some(op("replace", Some("shoeSize"), json!(42))), 200, 400, "invalidPath"),
            ("unknown query parameter", "GET", "/Users?aadOptscim062020".into(), None, 200, 400, "invalidValue"),
        ];
        assert_eq!(cases.len(), 14, "one case per leniency (two for string booleans)");
        for (what, method, path, body, idp_status, strict_status, scim_type) in cases {
            let r = server.call(method.parse().unwrap(), &path, body).await;
            if strict_dialect {
                assert_eq!(r.status, strict_status, "strict: {what}: {}", r.body);
                assert_eq!(r.body["scimType"], scim_type, "strict: {what}: {}", r.body);
                assert!(r.body["detail"].as_str().unwrap().contains("dialect = \"idp\" accepts it"), "strict: {what}: {}", r.body);
            } else {
                assert_eq!(r.status, idp_status, "idp: {what}: {}", r.body);
            }
        }
        if strict_dialect {
            assert_eq!((server.get(&user).await.body, server.get(&group).await.body), before, "strict refusals changed nothing");
            assert_eq!(server.count("acme", "SELECT count(*) FROM groups"), 1);
            // The same requests written as the RFCs say are accepted.
            assert_eq!(server.patch(&user, op("replace", Some("active"), json!(false))).await.status, 200);
            assert_eq!(server.patch(&user, op("replace", Some("name.givenName"), json!("Ann"))).await.status, 200);
            assert_eq!(server.get(&filter("emails[type eq \"work\" and value eq \"u@x.com\"]")).await.body["totalResults"], 1);
        }
    }
}

/// A group member that is a service account is left alone, as a local user is (README,
/// "What the SCIM surface does"): not added, an `ignore` event, and the request succeeds.
#[tokio::test]
async fn a_service_account_named_as_a_member_is_left_alone() {
    let s = TestServer::start().await;
    let admin: String = s.db("acme").query_row("SELECT id FROM users WHERE role = 'org_admin'", [], |r| r.get(0)).unwrap();
    let gid = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "G"})).await.body["id"].as_str().unwrap().to_string();
    let r = s.patch(&format!("/Groups/{gid}"), fixture("entra/update_group_add_members.json", &[("user", &admin)])).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(member_ids(&s, &gid).await.is_empty(), "the service account did not join");
    assert_eq!(ignored_reasons(&s), ["local user not managed by the IdP"]);
}
