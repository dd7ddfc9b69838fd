//! Issue 3's protocol features: sorting, ETags, root search, /Me, cursor paging, Bulk.

use hyper::Method;
use serde_json::{json, Value};

use crate::support::TestServer;

fn names(body: &Value, key: &str) -> Vec<String> {
    body["Resources"].as_array().unwrap().iter().map(|r| r[key].as_str().unwrap_or("-").to_string()).collect()
}

fn q(s: &str) -> String {
    s.replace(' ', "%20").replace('"', "%22")
}

#[tokio::test]
async fn sorting() {
    let s = TestServer::start().await;
    for (name, email, title) in [("b@x.com", "zed@x.com", Some("Mr")), ("C@x.com", "amy@x.com", None), ("a@x.com", "mid@x.com", Some("Dr"))] {
        let mut body = json!({"userName": name, "emails": [{"value": "other@x.com"}, {"value": email, "primary": true}]});
        if let Some(t) = title {
            body["title"] = t.into();
        }
        s.post("/Users", body).await;
    }
    let f = q("userName ew \"x.com\"");
    let r = s.get(&format!("/Users?filter={f}&sortBy=userName")).await;
    assert_eq!(names(&r.body, "userName"), ["a@x.com", "b@x.com", "C@x.com"], "case-insensitive ascending");
    let r = s.get(&format!("/Users?filter={f}&sortBy=userName&sortOrder=descending")).await;
    assert_eq!(names(&r.body, "userName"), ["C@x.com", "b@x.com", "a@x.com"]);
    let r = s.get(&format!("/Users?filter={f}&sortBy=emails")).await;
    assert_eq!(names(&r.body, "userName"), ["C@x.com", "a@x.com", "b@x.com"], "by primary email");
    let r = s.get(&format!("/Users?filter={f}&sortBy=title")).await;
    assert_eq!(names(&r.body, "userName"), ["a@x.com", "b@x.com", "C@x.com"], "unassigned last");
    let r = s.get(&format!("/Users?filter={f}&sortBy=meta.created&sortOrder=descending")).await;
    assert_eq!(names(&r.body, "userName"), ["a@x.com", "C@x.com", "b@x.com"]);
    s.get("/Users?sortBy=nonsense").await.assert_error(400, Some("invalidValue"));
    s.get("/Users?sortBy=userName&sortOrder=sideways").await.assert_error(400, Some("invalidValue"));
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["sort"]["supported"], true);
}

#[tokio::test]
async fn etags_and_preconditions() {
    let s = TestServer::start().await;
    let r = s.post("/Users", json!({"userName": "etag@x.com"})).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let v1 = r.headers["etag"].to_str().unwrap().to_string();
    let path = format!("/t/acme/scim/v2/Users/{id}");
    let auth = s.auth.clone();
    let with = |h: &'static str, v: String, method: Method, body: Option<Value>| {
        let auth = auth.clone();
        let path = path.clone();
        let s = &s;
        async move {
            let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
            s.raw(method, &path, &[("authorization", &auth), ("content-type", "application/scim+json"), (h, &v)], bytes).await
        }
    };
    // If-None-Match with the current tag: 304, no body.
    let r = with("if-none-match", v1.clone(), Method::GET, None).await;
    assert_eq!(r.status, 304);
    assert!(r.raw.is_empty());
    assert_eq!(with("if-none-match", "W/\"999\"".into(), Method::GET, None).await.status, 200);
    // If-Match with the current tag succeeds and moves the version.
    let patch = json!({"Operations": [{"op": "replace", "path": "title", "value": "One"}]});
    let r = with("if-match", v1.clone(), Method::PATCH, Some(patch.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v2 = r.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(v1, v2);
    // A stale tag: 412 and nothing changes, for PATCH, PUT and DELETE.
    let stale = json!({"Operations": [{"op": "replace", "path": "title", "value": "Two"}]});
    with("if-match", v1.clone(), Method::PATCH, Some(stale)).await.assert_error(412, None);
    with("if-match", v1.clone(), Method::PUT, Some(json!({"userName": "etag@x.com"}))).await.assert_error(412, None);
    with("if-match", v1.clone(), Method::DELETE, None).await.assert_error(412, None);
    let now = s.get(&format!("/Users/{id}")).await;
    assert_eq!(now.body["title"], "One");
    assert_eq!(now.body["meta"]["version"].as_str().unwrap(), v2);
    // `*` matches any version; a list matches if any tag does.
    assert_eq!(with("if-match", "W/\"1\", ".to_string() + &v2, Method::PATCH, Some(patch.clone())).await.status, 200);
    assert_eq!(with("if-match", "*".into(), Method::DELETE, None).await.status, 204);
    assert_eq!(s.get("/ServiceProviderConfig").await.body["etag"]["supported"], true);
}

#[tokio::test]
async fn group_patch_respects_if_match() {
    let s = TestServer::start().await;
    let r = s.post("/Groups", json!({"displayName": "G"})).await;
    let gid = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/t/acme/scim/v2/Groups/{gid}");
    let body = serde_json::to_vec(&json!({"Operations": [{"op": "replace", "path": "displayName", "value": "H"}]})).unwrap();
    let r = s.raw(Method::PATCH, &path, &[("authorization", &s.auth), ("if-match", "W/\"7\"")], Some(body)).await;
    r.assert_error(412, None);
    assert_eq!(s.get(&format!("/Groups/{gid}")).await.body["displayName"], "G");
}

#[tokio::test]
async fn root_search_spans_users_and_groups() {
    let s = TestServer::start().await;
    s.user("u1@x.com").await;
    s.user("u2@x.com").await;
    s.post("/Groups", json!({"displayName": "g1"})).await;
    s.post("/Groups", json!({"displayName": "g2"})).await;
    // 2 users (the admin account is not listed) and 2 groups, paged as one sequence.
    let r = s.post("/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": 2, "count": 2, "attributes": ["userName", "displayName"]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["totalResults"], 4);
    let items = r.body["Resources"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["userName"], "u2@x.com");
    assert_eq!(items[1]["displayName"], "g1");
    // A filter on a User-only attribute matches only users.
    let r = s.post("/.search", json!({"filter": "userName sw \"u\""})).await;
    assert_eq!(r.body["totalResults"], 2);
    s.post("/.search", json!({"filter": "userName eq"})).await.assert_error(400, Some("invalidFilter"));
}

#[tokio::test]
async fn me_is_the_authenticated_account() {
    let s = TestServer::start().await;
    let r = s.get("/Me").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["userName"], "scim-admin");
    // It is a service account: the IdP may read it, not change it (issue 13).
    let r = s.patch("/Me", json!({"Operations": [{"op": "replace", "path": "displayName", "value": "The Admin"}]})).await;
    r.assert_error(403, None);
    s.post("/Me", json!({})).await.assert_error(405, None);
}

#[tokio::test]
async fn cursor_paging_walks_everything_once() {
    let s = TestServer::start().await;
    for i in 0..23 {
        s.user(&format!("c{i:02}@x.com")).await;
    }
    let f = q("userName sw \"c\"");
    for sorted in [false, true] {
        let extra = if sorted { "&sortBy=userName&sortOrder=descending" } else { "" };
        let mut seen = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10 {
            let r = s.get(&format!("/Users?filter={f}&count=5&cursor={cursor}{extra}")).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.body.get("startIndex").is_none());
            seen.extend(names(&r.body, "userName"));
            match r.body.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = next.to_string(),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..23).map(|i| format!("c{i:02}@x.com")).collect();
        if sorted {
            expected.reverse();
        }
        assert_eq!(seen, expected, "sorted={sorted}");
    }
    s.get("/Users?cursor=bm9wZQ").await.assert_error(400, Some("invalidCursor"));
    s.get("/Users?cursor=!!").await.assert_error(400, Some("invalidCursor"));
    s.get("/Users?cursor=&startIndex=1").await.assert_error(400, Some("invalidValue"));
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["pagination"]["cursor"], true);
}

#[tokio::test]
async fn bulk_with_references_and_failures() {
    let s = TestServer::start().await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "grp",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Bulk Group",
                      "members": [{"type": "User", "value": "bulkId:alice"}, {"type": "User", "value": "bulkId:bob"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "alice", "data": {"userName": "alice@x.com"}},
            {"method": "POST", "path": "/Users", "bulkId": "bob", "data": {"userName": "bob@x.com"}},
            {"method": "PATCH", "path": "/Users/bulkId:bob", "data": {"Operations": [{"op": "replace", "path": "title", "value": "Builder"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "ALICE@x.com"}},
            {"method": "DELETE", "path": "/Users/no-such-id"}
        ]
    });
    let r = s.post("/Bulk", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 6);
    let by_id = |b: &str| ops.iter().find(|o| o["bulkId"] == b).unwrap().clone();
    assert_eq!(by_id("grp")["status"], "201");
    assert_eq!(by_id("alice")["status"], "201");
    assert_eq!(by_id("dup")["status"], "409");
    assert_eq!(by_id("dup")["response"]["scimType"], "uniqueness");
    assert_eq!(ops.iter().find(|o| o["method"] == "PATCH").unwrap()["status"], "200");
    assert_eq!(ops.iter().find(|o| o["method"] == "DELETE").unwrap()["status"], "404");
    let group = s.get(by_id("grp")["location"].as_str().unwrap().rsplit_once("/scim/v2").unwrap().1).await;
    assert_eq!(group.body["members"].as_array().unwrap().len(), 2);
    let bob = s.get(&format!("/Users?filter={}", q("userName eq \"bob@x.com\""))).await;
    assert_eq!(bob.body["Resources"][0]["title"], "Builder");

    // failOnErrors stops after that many failures; later operations are not run.
    let r = s.post("/Bulk", json!({"failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "alice@x.com"}},
        {"method": "POST", "path": "/Users", "bulkId": "y", "data": {"userName": "never@x.com"}}]})).await;
    assert_eq!(r.body["Operations"].as_array().unwrap().len(), 1);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name = 'never@x.com'"), 0);

    // Unknown and circular references, bad paths, stale versions.
    let r = s.post("/Bulk", json!({"Operations": [
        {"method": "POST", "path": "/Groups", "bulkId": "a", "data": {"displayName": "A", "members": [{"value": "bulkId:zzz"}]}},
        {"method": "PATCH", "path": "/Users/bulkId:c2", "bulkId": "c1", "data": {"Operations": [{"op": "add", "path": "title", "value": "bulkId:c1"}]}},
        {"method": "GET", "path": "/Users"},
        {"method": "PUT", "path": "/Users/bulkId:alice", "data": {"userName": "q@x.com"}},
        {"method": "PATCH", "path": "/Users/bulkId:c1", "bulkId": "c2", "data": {"Operations": []}}]})).await;
    let statuses: Vec<&str> = r.body["Operations"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == "400"), "{}", r.body);
    assert_eq!(s.count("acme", "SELECT count(*) FROM groups WHERE display_name = 'A'"), 0);
}

#[tokio::test]
async fn bulk_limits() {
    let s = TestServer::start().await;
    let ops: Vec<Value> = (0..1001).map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")})).collect();
    s.post("/Bulk", json!({"Operations": ops})).await.assert_error(413, None);
    s.post("/Bulk", json!({"nothing": true})).await.assert_error(400, Some("invalidSyntax"));
    s.post("/Bulk", json!({"failOnErrors": -1, "Operations": []})).await.assert_error(400, Some("invalidValue"));
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["bulk"], json!({"supported": true, "maxOperations": 1000, "maxPayloadSize": 65536}));
}
