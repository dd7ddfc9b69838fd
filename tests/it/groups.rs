//! /Groups: members as rows, Okta pushes and Entra's multi-member PATCHes.

use serde_json::{json, Value};

use crate::support::TestServer;

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn members(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["members"].as_array().into_iter().flatten().map(|m| m["value"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn create_with_members_and_read_back() {
    let s = TestServer::start().await;
    let a = s.user("a@example.com").await;
    let b = s.user("b@example.com").await;
    let r = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Engineering", "externalId": "eng-1",
        "members": [{"value": a, "display": "A"}, {"value": b}]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(members(&r.body), sorted(vec![a.clone(), b.clone()]));
    assert_eq!(r.body["members"][0]["$ref"], format!("https://localhost:{}/t/acme/scim/v2/Users/{}", s.addr.port(), r.body["members"][0]["value"].as_str().unwrap()));
    assert_eq!(r.body["members"][0]["type"], "User");
    // The user's computed, read-only groups.
    let u = s.get(&format!("/Users/{a}")).await;
    assert_eq!(u.body["groups"], json!([{"value": gid, "display": "Engineering",
        "$ref": format!("https://localhost:{}/t/acme/scim/v2/Groups/{gid}", s.addr.port()), "type": "direct"}]));
    // excludedAttributes=members returns no members.
    let r = s.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    assert!(r.body.get("members").is_none());
    assert_eq!(r.body["displayName"], "Engineering");
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE resource_type = 'Membership' AND action = 'create'"), 2);
}

#[tokio::test]
async fn duplicate_names_and_unknown_members_are_rejected() {
    let s = TestServer::start().await;
    let sales = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Sales"})).await.body["id"].clone();
    // The default group_conflict = "link": the same name links to the existing group.
    let r = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Sales"})).await;
    assert_eq!((r.status.as_u16(), &r.body["id"]), (201, &sales));
    // An unknown member is skipped, not fatal (tests/it/converge.rs has the whole story).
    let r = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "X", "members": [{"value": "no-such-user"}]})).await;
    assert_eq!((r.status.as_u16(), r.body.get("members")), (201, None), "{}", r.body);
    s.post("/Groups", json!({"schemas": [GROUP]})).await.assert_error(400, Some("invalidValue"));
    s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Y", "members": [{"display": "no value"}]}))
        .await
        .assert_error(400, Some("invalidValue"));
    assert_eq!(s.count("acme", "SELECT count(*) FROM groups"), 2, "Sales, and X without its unknown member");
    assert_eq!(s.count("acme", "SELECT count(*) FROM memberships"), 0);
}

#[tokio::test]
async fn patch_members_entra_and_okta() {
    let s = TestServer::start().await;
    let ids: Vec<String> = futures_join(&s, &["m1@x.com", "m2@x.com", "m3@x.com", "m4@x.com"]).await;
    let r = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Team", "members": [{"value": ids[0]}, {"value": ids[1]}]})).await;
    let gid = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/Groups/{gid}");
    // Entra: add several members at once; adding one that is already there is fine.
    let r = s.patch(&path, json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": ids[2]}, {"value": ids[3]}, {"value": ids[0]}]}]})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.raw.is_empty(), "a group PATCH does not return the member list");
    assert_eq!(members(&s.get(&path).await.body), sorted(ids.clone()));
    // Entra: remove with a value list removes exactly those members, never the group's others.
    let r = s.patch(&path, json!({"Operations": [{"op": "Remove", "path": "members", "value": [{"value": ids[1]}]}]})).await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s.get(&path).await.body), sorted(vec![ids[0].clone(), ids[2].clone(), ids[3].clone()]));
    // Okta: remove by filter, then rename.
    let r = s.patch(&path, json!({"Operations": [
        {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[2])},
        {"op": "replace", "value": {"id": gid, "displayName": "Team Renamed"}}]})).await;
    assert_eq!(r.status, 204);
    let g = s.get(&path).await;
    assert_eq!(members(&g.body), sorted(vec![ids[0].clone(), ids[3].clone()]));
    assert_eq!(g.body["displayName"], "Team Renamed");
    // Replace the whole list, then remove all.
    s.patch(&path, json!({"Operations": [{"op": "replace", "path": "members", "value": [{"value": ids[1]}]}]})).await;
    assert_eq!(members(&s.get(&path).await.body), vec![ids[1].clone()]);
    s.patch(&path, json!({"Operations": [{"op": "remove", "path": "members"}]})).await;
    assert!(s.get(&path).await.body.get("members").is_none());
    // With ?attributes the PATCH answers 200 with just those attributes.
    let r = s.patch(&format!("{path}?attributes=displayName"), json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": ids[0]}]}]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["displayName"], "Team Renamed");
    assert!(r.body.get("members").is_none());
    assert_eq!(r.body["meta"]["version"].as_str().map(|v| v != "W/\"1\""), Some(true), "membership change bumps the version");
}

#[tokio::test]
async fn bad_group_patches_change_nothing() {
    let s = TestServer::start().await;
    let a = s.user("a@x.com").await;
    let gid = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "G", "members": [{"value": a}]})).await.body["id"].as_str().unwrap().to_string();
    let path = format!("/Groups/{gid}");
    let before = s.get(&path).await.body;
    for (body, t) in [
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "H"}, {"op": "remove", "path": "members[display eq \"x\"]"}]}), "invalidFilter"),
        (json!({"Operations": [{"op": "remove", "path": "displayName"}]}), "invalidValue"),
    ] {
        s.patch(&path, body).await.assert_error(400, Some(t));
    }
    assert_eq!(s.get(&path).await.body, before);
}

#[tokio::test]
async fn put_replaces_members_and_delete_keeps_users() {
    let s = TestServer::start().await;
    let a = s.user("a@x.com").await;
    let b = s.user("b@x.com").await;
    let gid = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "G", "members": [{"value": a}]})).await.body["id"].as_str().unwrap().to_string();
    let r = s.put(&format!("/Groups/{gid}"), json!({"schemas": [GROUP], "displayName": "G2", "members": [{"value": b}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(members(&r.body), vec![b.clone()]);
    assert_eq!(s.delete(&format!("/Groups/{gid}")).await.status, 204);
    s.get(&format!("/Groups/{gid}")).await.assert_error(404, None);
    assert_eq!(s.get(&format!("/Users/{a}")).await.status, 200);
    assert_eq!(s.count("acme", "SELECT count(*) FROM memberships"), 0);
}

async fn futures_join(s: &TestServer, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for n in names {
        ids.push(s.user(n).await);
    }
    ids
}
