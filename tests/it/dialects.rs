//! Okta's and Entra's provisioning conversations, replayed with the literal request
//! bodies and URLs of their public documentation (tests/fixtures/).

use hyper::Method;
use serde_json::Value;

use crate::support::{fixture, TestServer};


async fn members(s: &TestServer, gid: &str) -> Vec<String> {
    let r = s.get(&format!("/Groups/{gid}")).await;
    let mut ids: Vec<String> = r.body["members"].as_array().into_iter().flatten().map(|m| m["value"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn okta_conversation() {
    let s = TestServer::start().await;
    // "Determine if the User already exists": the exact query Okta sends.
    let lookup = "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100";
    let r = s.get(lookup).await;
    assert_eq!((r.status.as_u16(), r.body["totalResults"].as_u64(), r.body["startIndex"].as_u64()), (200, Some(0), Some(1)));
    assert_eq!(r.body["itemsPerPage"], 0, "integers, not strings");

    let r = s.post("/Users", fixture("okta/create_user.json", &[])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["externalId"], "00ujl29u0le5T6Aj10h7");
    assert!(r.body.get("password").is_none());
    assert_eq!(s.get(lookup).await.body["totalResults"], 1);
    // A second create of the same user is a 409 with an error body.
    s.post("/Users", fixture("okta/create_user.json", &[])).await.assert_error(409, Some("uniqueness"));

    // Profile update with PUT (the whole object, including id, groups and meta).
    let r = s.put(&format!("/Users/{user}"), fixture("okta/put_user.json", &[("user", &user)])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"]["middleName"], "Excited");
    assert_eq!(r.body["locale"], Value::Null, "PUT replaced the whole user");

    let r = s.patch(&format!("/Users/{user}"), fixture("okta/deactivate_user.json", &[])).await;
    assert_eq!((r.status.as_u16(), r.body["active"].as_bool()), (200, Some(false)));

    // Group push: create, rename (Okta sends the id in the value), membership changes.
    let other = s.user("other@okta.local").await;
    let r = s.post("/Groups", fixture("okta/create_group.json", &[])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let group = r.body["id"].as_str().unwrap().to_string();
    let r = s.patch(&format!("/Groups/{group}"), fixture("okta/rename_group.json", &[("group", &group)])).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.get(&format!("/Groups/{group}")).await.body["displayName"], "Test SCIMv20");
    s.patch(&format!("/Groups/{group}"), fixture("okta/replace_members.json", &[("user", &user), ("other", &other)])).await;
    let mut both = vec![user.clone(), other.clone()];
    both.sort();
    assert_eq!(members(&s, &group).await, both);
    let r = s.patch(&format!("/Groups/{group}"), fixture("okta/update_membership.json", &[("user", &user), ("other", &other)])).await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s, &group).await, vec![user.clone()]);
    assert_eq!(s.delete(&format!("/Groups/{group}")).await.status, 204);
}

#[tokio::test]
async fn entra_conversation() {
    let s = TestServer::start().await;
    // Entra appends ?aadOptscim062020 and queries by userName.
    let r = s.get("/Users?aadOptscim062020&filter=userName%20eq%20%22non-existent%20user%22").await;
    assert_eq!((r.status.as_u16(), r.body["totalResults"].as_u64()), (200, Some(0)));
    assert_eq!(r.body["Resources"], serde_json::json!([]));

    let r = s.post("/Users?aadOptscim062020", fixture("entra/create_user.json", &[])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user = r.body["id"].as_str().unwrap().to_string();
    let r = s.get("/Users?filter=userName%20eq%20%22Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee%22").await;
    assert_eq!(r.body["Resources"][0]["id"], user.as_str());
    // Entra's uniqueness check on the work email, in its `emails[...].value eq` form.
    let by_email = "/Users?filter=emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff%40testuser.com%22";
    assert_eq!(s.get(by_email).await.body["totalResults"], 1);

    let r = s.patch(&format!("/Users/{user}"), fixture("entra/update_user_multi_valued.json", &[])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["emails"], serde_json::json!([{"value": "updatedEmail@microsoft.com", "type": "work", "primary": true}]));
    assert_eq!(r.body["name"]["familyName"], "updatedFamilyName");
    let r = s.patch(&format!("/Users/{user}"), fixture("entra/update_user_single_valued.json", &[])).await;
    assert_eq!(r.body["userName"], "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com");
    let r = s.patch(&format!("/Users/{user}"), fixture("entra/disable_user.json", &[])).await;
    assert_eq!(r.body["active"], false);

    // Groups: created empty (with a Microsoft schema URN we do not know), looked up by
    // displayName without members, then membership PATCHes answered with 204.
    let r = s.post("/Groups", fixture("entra/create_group.json", &[])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let group = r.body["id"].as_str().unwrap().to_string();
    let r = s.get(&format!("/Groups/{group}?excludedAttributes=members")).await;
    assert!(r.body.get("members").is_none());
    let r = s.get("/Groups?excludedAttributes=members&filter=displayName%20eq%20%22displayName%22").await;
    assert_eq!(r.body["totalResults"], 1);
    let keep = s.user("keep@testuser.com").await;
    s.patch(&format!("/Groups/{group}"), serde_json::json!({"Operations": [{"op": "Add", "path": "members", "value": [{"value": keep}]}]})).await;
    let r = s.patch(&format!("/Groups/{group}"), fixture("entra/update_group_add_members.json", &[("user", &user)])).await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s, &group).await.len(), 2);
    // The remove with a value list removes exactly that member and never empties the group.
    let r = s.patch(&format!("/Groups/{group}"), fixture("entra/update_group_remove_members.json", &[("user", &user)])).await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s, &group).await, vec![keep]);
    let r = s.patch(&format!("/Groups/{group}"), fixture("entra/update_group_non_member.json", &[])).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.get(&format!("/Groups/{group}")).await.body["displayName"], "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName");
    assert_eq!(s.delete(&format!("/Groups/{group}")).await.status, 204);
    assert_eq!(s.call(Method::DELETE, &format!("/Users/{user}"), None).await.status, 204);
}
