//! Issue 23: `required_groups` — a user the IdP manages who leaves every group that grants
//! access is deactivated (seat freed, an event naming the reason) and reactivated when they
//! join one again; local users, and users deactivated by someone else, are left alone.

use hyper::Method;
use serde_json::{json, Value};

use crate::support::{basic, scimd_cli, TestServer, ADMIN, PASSWORD};

const SETTINGS: &str = "require_username_is_email = false\n[policies]\nrequired_groups = [\"Tableau Users\", \"Sales-.*\"]\n";

async fn user(s: &TestServer, id: &str) -> Value {
    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn license(u: &Value) -> &str {
    u["urn:scimd:params:scim:schemas:extension:2.0:User"]["license"].as_str().unwrap_or_default()
}

/// Okta's membership PATCH (`add`/`remove` with a `members[value eq]` path).
fn members(op: &str, id: &str) -> Value {
    match op {
        "add" => json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}),
        _ => json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]}),
    }
}

async fn events_of(s: &TestServer, id: &str) -> Vec<Value> {
    let feed = s.client.as_(&basic(ADMIN, PASSWORD), Method::GET, "/t/acme/events?after=0&limit=1000").await;
    feed.body["events"].as_array().unwrap().iter().filter(|e| e["resourceId"] == id).cloned().collect()
}

#[tokio::test]
async fn leaving_every_required_group_deactivates_and_rejoining_reactivates() {
    let s = TestServer::start_with_settings(SETTINGS, |_| {}).await;
    let ann = s.post("/Users", json!({"userName": "ann", "name": {"givenName": "Ann"}})).await.body["id"].as_str().unwrap().to_string();
    let tableau = s.post("/Groups", json!({"displayName": "Tableau Users", "members": [{"value": ann}]})).await.body["id"].as_str().unwrap().to_string();
    let sales = s.post("/Groups", json!({"displayName": "Sales-EU", "members": [{"value": ann}]})).await.body["id"].as_str().unwrap().to_string();
    let other = s.post("/Groups", json!({"displayName": "Everyone", "members": [{"value": ann}]})).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(license(&user(&s, &ann).await), "creator");

    // Still in Sales-EU: nothing happens.
    assert_eq!(s.patch(&format!("/Groups/{tableau}"), members("remove", &ann)).await.status, 204);
    assert_eq!(user(&s, &ann).await["active"], true);
    // Out of the last required group (Everyone grants nothing): deactivated, seat freed.
    assert_eq!(s.patch(&format!("/Groups/{sales}"), members("remove", &ann)).await.status, 204);
    let u = user(&s, &ann).await;
    assert_eq!((u["active"].clone(), license(&u)), (json!(false), "none"), "{u}");
    let deactivated = events_of(&s, &ann).await.into_iter().rfind(|e| e["action"] == "deactivate").expect("a deactivate event");
    assert_eq!(deactivated["detail"]["reason"], "required_groups", "{deactivated}");
    // Soft: the row and its other memberships stay.
    assert_eq!(s.count("acme", &format!("SELECT count(*) FROM memberships m JOIN users u ON u.pk = m.user_pk WHERE u.id = '{ann}'")), 1);

    // Back into one: reactivated with a seat.
    assert_eq!(s.patch(&format!("/Groups/{tableau}"), members("add", &ann)).await.status, 204);
    let u = user(&s, &ann).await;
    assert_eq!((u["active"].clone(), license(&u)), (json!(true), "creator"), "{u}");
    assert_eq!(events_of(&s, &ann).await.into_iter().rfind(|e| e["action"] == "reactivate").unwrap()["detail"]["reason"], "required_groups");

    // Deleting the group it was in: deactivated again.
    assert_eq!(s.delete(&format!("/Groups/{tableau}")).await.status, 204);
    assert_eq!(user(&s, &ann).await["active"], false);
    // Okta's PUT says `active: true` on every profile push: in no granting group, the user
    // stays inactive, and the event says why.
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann", "name": {"givenName": "Ann"}, "active": true});
    let held = s.put(&format!("/Users/{ann}"), put).await;
    assert_eq!((held.status.as_u16(), held.body["active"].clone(), license(&held.body)), (200, json!(false), "none"), "{}", held.body);
    assert!(events_of(&s, &ann).await.iter().any(|e| e["action"] == "ignore" && e["detail"]["reason"] == "required_groups"));
    // In a granting group again: active.
    assert_eq!(s.patch(&format!("/Groups/{sales}"), members("add", &ann)).await.status, 204);
    assert_eq!(user(&s, &ann).await["active"], true);
    // The IdP deactivating a user itself is the IdP's call: leaving and rejoining does not undo it.
    assert_eq!(s.patch(&format!("/Users/{ann}"), json!({"Operations": [{"op": "replace", "path": "active", "value": false}]})).await.status, 200);
    assert_eq!(s.patch(&format!("/Groups/{sales}"), members("remove", &ann)).await.status, 204);
    assert_eq!(s.patch(&format!("/Groups/{sales}"), members("add", &ann)).await.status, 204);
    assert_eq!(user(&s, &ann).await["active"], false, "deactivated by the IdP: stays so");
    // Group names compare case-insensitively: a rename that only changes case keeps access.
    let carl = s.post("/Users", json!({"userName": "carl", "name": {"givenName": "Carl"}})).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.patch(&format!("/Groups/{sales}"), members("add", &carl)).await.status, 204);
    let upper = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "SALES-EU"}]});
    assert_eq!(s.patch(&format!("/Groups/{sales}"), upper).await.status, 204);
    assert_eq!(user(&s, &carl).await["active"], true);

    // A rename that stops a group granting access counts as leaving it.
    let bob = s.post("/Users", json!({"userName": "bob", "name": {"givenName": "Bob"}})).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.patch(&format!("/Groups/{sales}"), members("add", &bob)).await.status, 204);
    let rename = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "Former Sales"}]});
    assert_eq!(s.patch(&format!("/Groups/{sales}"), rename).await.status, 204);
    assert_eq!(user(&s, &bob).await["active"], false);
    // Ann is still in Everyone, which grants nothing.
    assert!(s.get(&format!("/Groups/{other}")).await.body["members"].as_array().unwrap().iter().any(|m| m["value"] == ann.as_str()));
}

#[tokio::test]
async fn local_users_are_never_touched() {
    let s = TestServer::start_with_settings(SETTINGS, |_| {}).await;
    assert!(scimd_cli(&s, &["user", "add", "--local", "--tenant", "acme", "--username", "clerk", "--email", "clerk@x.com"]).0);
    let listed = s.get("/Users?filter=userName%20eq%20%22clerk%22").await;
    let clerk = listed.body["Resources"][0]["id"].as_str().unwrap().to_string();
    let group = s.post("/Groups", json!({"displayName": "Sales-US"})).await.body["id"].as_str().unwrap().to_string();
    // The application puts its local user in the group, as its own membership.
    let added = s.db("acme").execute(
        "INSERT INTO memberships (group_pk, user_pk, source) SELECT g.pk, u.pk, 'local' FROM groups g, users u WHERE g.id = ?1 AND u.id = ?2",
        [&group, &clerk],
    );
    assert_eq!(added.unwrap(), 1);
    // The IdP deletes the group: the local user leaves its only required group, and stays active.
    assert_eq!(s.delete(&format!("/Groups/{group}")).await.status, 204);
    assert_eq!(user(&s, &clerk).await["active"], true);
    assert!(events_of(&s, &clerk).await.iter().all(|e| e["action"] != "deactivate"));
}
