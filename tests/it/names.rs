//! Issue 13, item 14: values of the wrong JSON type and bodies that name a key twice are
//! refused. Every refusal changes nothing stored.

use hyper::Method;
use serde_json::json;

use crate::support::{Response, TestServer};

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
