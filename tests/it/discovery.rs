//! /ServiceProviderConfig, /ResourceTypes, /Schemas.

use serde_json::Value;

use crate::support::TestServer;

#[tokio::test]
async fn discovery_documents() {
    let s = TestServer::start().await;
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.status, 200);
    assert_eq!(spc.headers["content-type"], "application/scim+json");
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["filter"]["supported"], true);
    assert_eq!(spc.body["filter"]["maxResults"], 1000);
    assert_eq!(spc.body["authenticationSchemes"][0]["type"], "httpbasic");

    let rts = s.get("/ResourceTypes").await;
    assert_eq!(rts.body["totalResults"], 2);
    let user_rt = s.get("/ResourceTypes/User").await;
    assert_eq!(user_rt.body["endpoint"], "/Users");
    assert_eq!(user_rt.body["schemaExtensions"][0]["schema"], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User");
    s.get("/ResourceTypes/Widget").await.assert_error(404, None);

    let schemas = s.get("/Schemas").await;
    let ids: Vec<&str> = schemas.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.contains(&"urn:scimd:params:scim:schemas:extension:2.0:User"));
    let user = s.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").await;
    let attr = |name: &str| -> Value {
        user.body["attributes"].as_array().unwrap().iter().find(|a| a["name"] == name).cloned().unwrap()
    };
    assert_eq!(attr("userName")["uniqueness"], "server");
    assert_eq!(attr("userName")["required"], true);
    assert_eq!(attr("password")["returned"], "never");
    assert_eq!(attr("groups")["mutability"], "readOnly");
    s.get("/Schemas/urn:nope").await.assert_error(404, None);
    // Discovery is read-only.
    s.post("/Schemas", serde_json::json!({})).await.assert_error(405, None);
}
