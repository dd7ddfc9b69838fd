//! /Users: create, read, replace, patch (Okta and Entra shapes), delete, and every bad
//! input leaving stored data unchanged.

use hyper::Method;
use serde_json::{json, Value};

use crate::support::TestServer;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn bjensen() -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "displayName": "Babs Jensen",
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                   {"value": "babs@jensen.org", "type": "home"}],
        "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                       "region": "CA", "postalCode": "91608", "country": "USA", "primary": true}],
        "password": "t1meMa$heen",
        ENTERPRISE: {"employeeNumber": "701984", "costCenter": "4130", "department": "Tour Operations"},
        "someAttributeEntraSends": {"x": 1}
    })
}

/// Every address sub-attribute filters on its own column (one map in store/users.rs serves
/// reading, writing and filtering addresses).
#[tokio::test]
async fn filters_on_every_address_sub_attribute() {
    let s = TestServer::start().await;
    assert_eq!(s.post("/Users", bjensen()).await.status, 201);
    let mut other = bjensen();
    other["userName"] = json!("other@example.com");
    other["addresses"] = json!([{"type": "home", "formatted": "1 Elm St, Springfield", "locality": "Springfield", "primary": false}]);
    assert_eq!(s.post("/Users", other).await.status, 201);
    for (filter, want) in [
        (r#"addresses.streetAddress eq "100 Universal City Plaza""#, "bjensen@example.com"),
        (r#"addresses.locality eq "Hollywood""#, "bjensen@example.com"),
        (r#"addresses.region eq "CA""#, "bjensen@example.com"),
        (r#"addresses.postalCode eq "91608""#, "bjensen@example.com"),
        (r#"addresses.country eq "USA""#, "bjensen@example.com"),
        (r#"addresses[type eq "work" and primary eq true]"#, "bjensen@example.com"),
        (r#"addresses.formatted sw "1 Elm""#, "other@example.com"),
        (r#"addresses[type eq "home"]"#, "other@example.com"),
    ] {
        let encoded: String = filter.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        let r = s.get(&format!("/Users?filter={encoded}")).await;
        assert_eq!(r.status, 200, "{filter}: {}", r.body);
        let names: Vec<&str> = r.body["Resources"].as_array().unwrap().iter().filter_map(|u| u["userName"].as_str()).collect();
        assert_eq!(names, [want], "{filter}");
    }
    assert_eq!(s.get("/Users?filter=addresses.nosuch%20eq%20%22x%22").await.status, 400);
}

#[tokio::test]
async fn create_then_get_round_trips() {
    let s = TestServer::start().await;
    let r = s.post("/Users", bjensen()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/scim+json");
    let id = r.body["id"].as_str().unwrap();
    let location = r.headers["location"].to_str().unwrap();
    assert_eq!(location, format!("https://localhost:{}/t/acme/scim/v2/Users/{id}", s.addr.port()));
    assert_eq!(r.body["meta"]["location"], location);
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(r.headers["etag"].to_str().unwrap(), r.body["meta"]["version"].as_str().unwrap());
    assert!(r.body.get("password").is_none(), "password is never returned");
    assert!(r.body.get("someAttributeEntraSends").is_none());
    assert_eq!(r.body["schemas"], json!([USER, ENTERPRISE, "urn:scimd:params:scim:schemas:extension:2.0:User"]));

    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(g.status, 200);
    for key in ["userName", "externalId", "name", "displayName", "emails", "phoneNumbers", "addresses", ENTERPRISE, "active"] {
        assert_eq!(g.body[key], bjensen()[key], "{key}");
    }
    // The password was not stored anywhere.
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE password_hash IS NOT NULL AND user_name <> 'scim-admin'"), 0);
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE action = 'create' AND resource_type = 'User'"), 2);
    let (principal, detail): (String, String) = s
        .db("acme")
        .query_row("SELECT principal, detail FROM events WHERE resource_id = ?1 AND action = 'create'", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(principal, "scim-admin");
    let detail_json: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail_json["after"]["userName"], "bjensen@example.com");
    assert!(!detail.contains("t1meMa$heen"));
}

#[tokio::test]
async fn user_name_is_unique_case_insensitively() {
    let s = TestServer::start().await;
    s.user("bjensen@example.com").await;
    let r = s.post("/Users", json!({"schemas": [USER], "userName": "BJensen@Example.COM"})).await;
    r.assert_error(409, Some("uniqueness"));
    assert_eq!(s.count("acme", "SELECT count(*) FROM users"), 2);
    // A PUT that takes another user's name is refused too.
    let other = s.user("other@example.com").await;
    let r = s.put(&format!("/Users/{other}"), json!({"schemas": [USER], "userName": "BJENSEN@example.com"})).await;
    r.assert_error(409, Some("uniqueness"));
    assert_eq!(s.get(&format!("/Users/{other}")).await.body["userName"], "other@example.com");
}

#[tokio::test]
async fn bad_bodies_are_rejected_and_change_nothing() {
    let s = TestServer::start().await;
    let before = s.count("acme", "SELECT count(*) FROM users");
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"{not json".to_vec(), Some("invalidSyntax")),
        (b"[1,2]".to_vec(), Some("invalidSyntax")),
        (vec![0xff, 0xfe, b'{', b'}'], Some("invalidSyntax")),
        (b"".to_vec(), Some("invalidSyntax")),
        (br#"{"schemas":[],"name":{"givenName":"x"}}"#.to_vec(), Some("invalidSyntax")),
        (br#"{"userName":""}"#.to_vec(), Some("invalidValue")),
        (br#"{"userName":{"a":1}}"#.to_vec(), Some("invalidValue")),
        (br#"{"userName":"a@b.c","active":"maybe"}"#.to_vec(), Some("invalidValue")),
        (br#"{"userName":"a@b.c","name":"not an object"}"#.to_vec(), Some("invalidValue")),
    ];
    for (body, scim_type) in cases {
        let r = s
            .raw(Method::POST, "/t/acme/scim/v2/Users", &[("authorization", &s.auth), ("content-type", "application/scim+json")], Some(body.clone()))
            .await;
        r.assert_error(400, scim_type);
    }
    assert_eq!(s.count("acme", "SELECT count(*) FROM users"), before);
}

#[tokio::test]
async fn put_replaces_and_ignores_read_only() {
    let s = TestServer::start().await;
    let id = s.post("/Users", bjensen()).await.body["id"].as_str().unwrap().to_string();
    let r = s
        .put(&format!("/Users/{id}"), json!({
            "schemas": [USER], "id": "forged", "userName": "bjensen@example.com",
            "meta": {"created": "1999-01-01T00:00:00Z"}, "groups": [{"value": "x"}],
            "name": {"givenName": "Barb"}, "active": false
        }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["name"], json!({"givenName": "Barb"}));
    assert!(r.body.get("emails").is_none(), "PUT replaces: emails gone");
    assert!(r.body.get(ENTERPRISE).is_none());
    assert_eq!(r.body["active"], false);
    assert_ne!(r.body["meta"]["version"], "W/\"1\"");
    assert_ne!(r.body["meta"]["created"], "1999-01-01T00:00:00Z");
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE action = 'deactivate'"), 1);
    s.put("/Users/unknown-id", json!({"userName": "x@y.z"})).await.assert_error(404, None);
}

#[tokio::test]
async fn patch_okta_and_entra_shapes() {
    let s = TestServer::start().await;
    let id = s.post("/Users", bjensen()).await.body["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");
    // Okta: deactivate with a path-less replace.
    let r = s.patch(&path, json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    // Entra: capitalised ops, booleans as strings, dotted and URN keys.
    let r = s.patch(&path, json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "active", "value": "True"},
            {"op": "Add", "value": {"name.givenName": "Barbara-Entra", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales"}},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"},
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555-0100"},
            {"op": "Remove", "path": "emails[type eq \"home\"]"}
        ]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["name"]["givenName"], "Barbara-Entra");
    assert_eq!(r.body["name"]["familyName"], "Jensen");
    assert_eq!(r.body[ENTERPRISE]["department"], "Sales");
    assert_eq!(r.body[ENTERPRISE]["employeeNumber"], "701984");
    assert_eq!(r.body["emails"], json!([{"value": "barbara@example.com", "type": "work", "primary": true}]));
    assert_eq!(r.body["phoneNumbers"][1], json!({"type": "mobile", "value": "555-0100"}));
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE action = 'reactivate'"), 1);
    // Remove a simple attribute and an extension attribute by path.
    let r = s.patch(&path, json!({"Operations": [
        {"op": "remove", "path": "displayName"},
        {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"}]})).await;
    assert!(r.body.get("displayName").is_none());
    assert!(r.body[ENTERPRISE].get("costCenter").is_none());
}

#[tokio::test]
async fn bad_patches_are_atomic_and_rejected() {
    let s = TestServer::start().await;
    let id = s.post("/Users", bjensen()).await.body["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");
    let before = s.get(&path).await.body;
    let cases = [
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "changed"}, {"op": "frobnicate", "path": "x"}]}), "invalidSyntax"),
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "changed"}, {"op": "remove"}]}), "noTarget"),
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "changed"}, {"op": "replace", "path": "emails[type eq \"work\"", "value": "x"}]}), "invalidPath"),
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "changed"}, {"op": "replace", "path": "emails[value co \"zzz\"]", "value": {"value": "y"}}]}), "noTarget"),
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "changed"}, {"op": "replace", "path": "id", "value": "x"}]}), "mutability"),
        (json!({"Operations": [{"op": "replace", "path": "displayName", "value": "changed"}, {"op": "remove", "path": "userName"}]}), "invalidValue"),
        (json!({"Operations": [{"op": "replace", "path": "active", "value": "sometimes"}]}), "invalidValue"),
        (json!({"Operations": "nope"}), "invalidSyntax"),
        (json!({"Operations": [{"op": "add", "path": "title"}]}), "invalidValue"),
    ];
    for (body, scim_type) in cases {
        s.patch(&path, body.clone()).await.assert_error(400, Some(scim_type));
    }
    assert_eq!(s.get(&path).await.body, before, "nothing changed");
    s.patch("/Users/nope", json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]})).await.assert_error(404, None);
}

#[tokio::test]
async fn delete_then_404() {
    let s = TestServer::start().await;
    let id = s.user("gone@example.com").await;
    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 204);
    assert!(r.raw.is_empty());
    s.get(&format!("/Users/{id}")).await.assert_error(404, None);
    s.delete(&format!("/Users/{id}")).await.assert_error(404, None);
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE action = 'delete' AND resource_type = 'User'"), 1);
}

#[tokio::test]
async fn projection_on_write_responses() {
    let s = TestServer::start().await;
    let r = s.post("/Users?attributes=userName", bjensen()).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["userName"], "bjensen@example.com");
    assert!(r.body.get("emails").is_none() && r.body.get("name").is_none());
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = s.patch(&format!("/Users/{id}?excludedAttributes=emails"), json!({"Operations": [{"op": "replace", "path": "title", "value": "T"}]})).await;
    assert_eq!(r.body["title"], "T");
    assert!(r.body.get("emails").is_none());
}

#[tokio::test]
async fn projection_on_get() {
    let s = TestServer::start().await;
    let id = s.post("/Users", bjensen()).await.body["id"].as_str().unwrap().to_string();
    let r = s.get(&format!("/Users/{id}?attributes=userName,name.givenName")).await;
    assert_eq!(r.body["userName"], "bjensen@example.com");
    assert_eq!(r.body["name"], json!({"givenName": "Barbara"}));
    assert!(r.body.get("emails").is_none());
    assert_eq!(r.body["id"], id.as_str(), "id is always returned");
    let r = s.get(&format!("/Users/{id}?excludedAttributes=emails,{ENTERPRISE}:department")).await;
    assert!(r.body.get("emails").is_none());
    assert!(r.body[ENTERPRISE].get("department").is_none());
    assert_eq!(r.body[ENTERPRISE]["costCenter"], "4130");
}
