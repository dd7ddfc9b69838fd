//! Issue 13 items 5 and 6: work that could grow faster than its input is capped or linear,
//! scans have a time budget that stops the SQLite query, and list pages have a byte budget.
//! Nothing here is timed: the costs are measured in `benches/costs.rs`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{binary_data_dir, connect, send, ServeBinary, TempDir, TestServer};

const CAP: usize = scimd::scim::resource::MAX_MULTI_VALUES;
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn q(s: &str) -> String {
    s.replace(' ', "%20").replace('"', "%22")
}

/// A server whose bodies may be 1 MiB (the tests' default is 64 KiB).
async fn roomy() -> TestServer {
    TestServer::start_with_settings("require_username_is_email = false\n", |c| c.max_body_bytes = 1 << 20).await
}

fn emails(prefix: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"value": format!("{prefix}{i}@x.com"), "type": "work"})).collect()
}

#[tokio::test]
async fn multi_valued_attributes_are_capped_on_post_put_and_patch() {
    let s = roomy().await;
    // POST: every capped attribute, one past the cap, is refused naming it; nothing stored.
    for attr in ["emails", "phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates", "addresses"] {
        let values: Vec<Value> = (0..=CAP).map(|i| if attr == "addresses" { json!({"locality": format!("c{i}")}) } else { json!({"value": format!("v{i}")}) }).collect();
        let r = s.post("/Users", json!({"userName": format!("{attr}@x.com"), attr: values})).await;
        r.assert_error(400, Some("invalidValue"));
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(attr) && detail.contains(&CAP.to_string()), "{detail}");
    }
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name <> 'scim-admin'"), 0);
    // At the cap is fine.
    let r = s.post("/Users", json!({"userName": "full@x.com", "emails": emails("a", CAP)})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    // PUT past the cap: refused, the user unchanged.
    let r = s.put(&format!("/Users/{id}"), json!({"userName": "full@x.com", "roles": (0..=CAP).map(|i| json!({"value": format!("r{i}")})).collect::<Vec<_>>()})).await;
    r.assert_error(400, Some("invalidValue"));
    // PATCH adding one more: refused, nothing stored.
    let r = s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "add", "path": "emails", "value": [{"value": "one-more@x.com"}]}]})).await;
    r.assert_error(400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("emails"));
    // A path-less PATCH (Entra's dialect) is capped the same way.
    let r = s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "add", "value": {"emails": [{"value": "b@x.com"}]}}]})).await;
    r.assert_error(400, Some("invalidValue"));
    let stored = s.count("acme", &format!("SELECT count(*) FROM user_emails e JOIN users u ON u.pk = e.user_pk WHERE u.id = '{id}'"));
    assert_eq!(stored as usize, CAP);
    assert_eq!(s.count("acme", "SELECT count(*) FROM user_values"), 0);
    // Replacing the list in one operation and adding in another stays legal while the
    // result is within the cap.
    let r = s
        .patch(&format!("/Users/{id}"), json!({"Operations": [
            {"op": "replace", "path": "emails", "value": emails("c", CAP - 1)},
            {"op": "add", "path": "emails", "value": [{"value": "last@x.com"}]}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["emails"].as_array().unwrap().len(), CAP);
    // Group members are rows, not values: not capped.
    let members: Vec<Value> = (0..=CAP).map(|i| json!({"value": format!("u{i}")})).collect();
    assert!(scimd::scim::resource::decode(scimd::scim::schema::Catalogue::plain(scimd::scim::schema::ResourceKind::Group), &json!({"displayName": "g", "members": members})).is_ok());
}

#[tokio::test]
async fn patch_add_and_remove_compare_values_as_before() {
    let s = TestServer::start().await;
    let r = s.post("/Users", json!({"userName": "p@x.com", "emails": [{"value": "a@x.com", "type": "work"}, {"value": "b@x.com"}], "roles": [{"type": "t", "display": "no value"}]})).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    // The same value with its keys in another order is not added twice; a new one is.
    let r = s
        .patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "add", "path": "emails", "value": [{"type": "work", "value": "a@x.com"}, {"value": "c@x.com"}, {"value": "c@x.com"}]}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let values: Vec<&str> = r.body["emails"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["a@x.com", "b@x.com", "c@x.com"]);
    // Remove by value list: an element with a value matches by its value; one without by
    // the whole element.
    let r = s
        .patch(&format!("/Users/{id}"), json!({"Operations": [
            {"op": "remove", "path": "emails", "value": [{"value": "a@x.com", "type": "home"}, {"value": "c@x.com"}]},
            {"op": "remove", "path": "roles", "value": [{"display": "no value", "type": "t"}]}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["emails"], json!([{"value": "b@x.com"}]));
    assert!(r.body.get("roles").is_none(), "{}", r.body);
    // A filtered remove that matches most of a list keeps the others in order.
    let r = s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "add", "path": "emails", "value": emails("d", 50)}]})).await;
    assert_eq!(r.status, 200);
    let r = s.patch(&format!("/Users/{id}"), json!({"Operations": [{"op": "remove", "path": "emails[value sw \"d\"]"}]})).await;
    assert_eq!(r.body["emails"], json!([{"value": "b@x.com"}]), "{}", r.body);
}

fn bulk_status<'a>(body: &'a Value, bulk_id: &str) -> &'a Value {
    body["Operations"].as_array().unwrap().iter().find(|o| o["bulkId"] == bulk_id).unwrap_or_else(|| panic!("no {bulk_id} in {body}"))
}

/// The order users were created in (by primary key), as userNames.
fn creation_order(s: &TestServer, prefix: &str) -> Vec<String> {
    let db = s.db("acme");
    let mut stmt = db.prepare("SELECT user_name FROM users WHERE user_name LIKE ?1 ORDER BY pk").unwrap();
    stmt.query_map([format!("{prefix}%")], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Issue 19: independent operations share the writer's commits (up to 64 in its queue at
/// once) and still apply in request order: 100 PATCHes of one user in one request end with
/// the last one's value, each answered with the version it made.
#[tokio::test]
async fn bulk_operations_in_flight_together_apply_in_request_order() {
    let s = roomy().await;
    let id = s.user("order@x.com").await;
    let v0: u64 = s.get(&format!("/Users/{id}")).await.body["meta"]["version"].as_str().unwrap().trim_start_matches("W/\"").trim_end_matches('"').parse().unwrap();
    let ops: Vec<Value> = (0..100)
        .map(|i| json!({"method": "PATCH", "path": format!("/Users/{id}"), "data": {"Operations": [{"op": "replace", "path": "title", "value": format!("t{i}")}]}}))
        .collect();
    let r = s.post("/Bulk", json!({"Operations": ops})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let versions: Vec<String> = r.body["Operations"].as_array().unwrap().iter().map(|o| o["version"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = (v0 + 1..v0 + 101).map(|v| format!("W/\"{v}\"")).collect();
    assert_eq!(versions, expected);
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["title"], "t99");
    // With failOnErrors, no operation runs that one-at-a-time processing would not have
    // reached: the second failure stops it, and the five after it never ran.
    let mut ops: Vec<Value> = (0..10).map(|i| json!({"method": "POST", "path": "/Users", "data": {"userName": format!("f{i}@x.com")}})).collect();
    ops[2] = json!({"method": "POST", "path": "/Users", "data": {"userName": "order@x.com"}});
    ops[4] = json!({"method": "POST", "path": "/Users", "data": {"userName": "order@x.com"}});
    let r = s.post("/Bulk", json!({"failOnErrors": 2, "Operations": ops})).await;
    assert_eq!(r.body["Operations"].as_array().unwrap().len(), 5, "{}", r.body);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name LIKE 'f%@x.com'"), 3);
}

#[tokio::test]
async fn bulk_runs_each_operation_once_what_it_references_has_run() {
    let s = roomy().await;
    // 1,000 operations, each referencing the next one's bulkId: a backward chain.
    let n = scimd::http::bulk::MAX_OPERATIONS;
    let ops: Vec<Value> = (0..n)
        .map(|i| {
            let mut data = json!({"userName": format!("chain{i:04}@x.com")});
            if i + 1 < n {
                data[ENTERPRISE] = json!({"manager": {"value": format!("bulkId:c{}", i + 1)}});
            }
            json!({"method": "POST", "path": "/Users", "bulkId": format!("c{i}"), "data": data})
        })
        .collect();
    let r = s.post("/Bulk", json!({"Operations": ops})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["Operations"].as_array().unwrap();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|o| o["status"] == "201"), "{}", r.body);
    // Answers come in request order; the references resolved to the right ids.
    let id = |i: usize| bulk_status(&r.body, &format!("c{i}"))["location"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let db = s.db("acme");
    for i in [0, 1, n / 2, n - 2] {
        let manager: String = db.query_row("SELECT ent_manager FROM users WHERE id = ?1", [id(i)], |r| r.get(0)).unwrap();
        assert_eq!(manager, id(i + 1), "operation {i}");
    }
    let expected: Vec<String> = (0..n).rev().map(|i| format!("chain{i:04}@x.com")).collect();
    assert_eq!(creation_order(&s, "chain"), expected);

    // Ties in request order: an operation runs as soon as what it references has run.
    let r = s
        .post("/Bulk", json!({"Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "tie-x@x.com", "title": "bulkId:b"}},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "tie-b@x.com"}},
            {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "tie-c@x.com"}}]}))
        .await;
    assert!(r.body["Operations"].as_array().unwrap().iter().all(|o| o["status"] == "201"), "{}", r.body);
    let order: Vec<String> = r.body["Operations"].as_array().unwrap().iter().map(|o| o["bulkId"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, ["x", "b", "c"], "answers in request order");
    assert_eq!(creation_order(&s, "tie-"), ["tie-b@x.com", "tie-x@x.com", "tie-c@x.com"]);

    // Failed, unknown and circular references are reported per operation; an operation
    // waiting on a cycle is part of it; a body naming an unknown bulkId fails at once.
    let r = s
        .post("/Bulk", json!({"Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "tie-b@x.com"}},
            {"method": "PATCH", "path": "/Users/bulkId:dup", "bulkId": "after-dup", "data": {"Operations": [{"op": "add", "path": "title", "value": "t"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "p", "data": {"userName": "cyc-p@x.com", "title": "bulkId:q"}},
            {"method": "POST", "path": "/Users", "bulkId": "q", "data": {"userName": "cyc-q@x.com", "title": "bulkId:p"}},
            {"method": "POST", "path": "/Users", "bulkId": "r", "data": {"userName": "cyc-r@x.com", "title": "bulkId:p"}},
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "cyc-u@x.com", "title": "bulkId:p", "nickName": "bulkId:nobody"}},
            {"method": "POST", "path": "/Users", "bulkId": "self", "data": {"userName": "self@x.com", "title": "bulkId:self"}}]}))
        .await;
    let detail = |b: &str| bulk_status(&r.body, b)["response"]["detail"].as_str().unwrap_or_default().to_string();
    assert_eq!(bulk_status(&r.body, "dup")["status"], "409");
    assert_eq!(bulk_status(&r.body, "after-dup")["status"], "400");
    assert!(detail("after-dup").contains("failed"), "{}", r.body);
    for b in ["p", "q", "r"] {
        assert_eq!(bulk_status(&r.body, b)["status"], "400");
        assert!(detail(b).contains("circular"), "{b}: {}", r.body);
    }
    assert!(detail("u").contains("unknown bulkId nobody"), "{}", r.body);
    assert!(detail("self").contains("unknown bulkId self"), "{}", r.body);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name LIKE 'cyc-%' OR user_name = 'self@x.com'"), 0);
}

/// Users whose JSON is about `bytes` long (one long title each).
async fn seed_large_users(s: &TestServer, n: usize, bytes: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..n {
        let r = s.post("/Users", json!({"userName": format!("big{i:03}@x.com"), "title": "t".repeat(bytes)})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.insert(r.body["id"].as_str().unwrap().to_string());
    }
    ids
}

fn page_ids(body: &Value) -> Vec<String> {
    let resources = body["Resources"].as_array().unwrap();
    assert_eq!(body["itemsPerPage"].as_u64(), Some(resources.len() as u64), "itemsPerPage counts what was returned");
    resources.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn list_pages_stop_at_the_byte_budget_and_paging_returns_everything_once() {
    let s = roomy().await;
    // 100 users of 60 KiB: 6 MB asked for in one page, past the 4 MiB budget.
    let n = 100;
    let ids = seed_large_users(&s, n, 60 * 1024).await;
    let filter = q("userName sw \"big\"");
    let first = s.get(&format!("/Users?filter={filter}&count=1000")).await;
    assert_eq!(first.status, 200);
    let got = page_ids(&first.body).len();
    assert!(got > 0 && got < n, "a page past the budget holds fewer than asked: {got}");
    assert!(first.raw.len() <= scimd::scim::PAGE_BYTE_BUDGET + 128 * 1024, "{} bytes", first.raw.len());
    assert_eq!(first.body["totalResults"], n, "totalResults stays exact");

    // Index paging: startIndex advances by itemsPerPage.
    let (mut seen, mut start) = (Vec::new(), 1);
    for _ in 0..n {
        let page = s.get(&format!("/Users?filter={filter}&count=1000&startIndex={start}")).await;
        let page_ids = page_ids(&page.body);
        if page_ids.is_empty() {
            break;
        }
        start += page_ids.len();
        seen.extend(page_ids);
    }
    assert_eq!(seen.len(), n);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);

    // Cursor paging, keyset (unsorted) and offset (sorted).
    for sort in ["", "&sortBy=userName&sortOrder=descending"] {
        let (mut seen, mut cursor) = (Vec::new(), String::new());
        for _ in 0..n {
            let page = s.get(&format!("/Users?filter={filter}&count=1000&cursor={cursor}{sort}")).await;
            assert_eq!(page.status, 200, "{}", page.body);
            seen.extend(page_ids(&page.body));
            match page.body["nextCursor"].as_str() {
                Some(next) => cursor = next.to_string(),
                None => break,
            }
        }
        assert_eq!(seen.len(), n, "sort {sort:?}");
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
    }

    // Root search pages users then groups as one sequence: a page the budget ended early
    // holds no groups, and nothing is skipped or repeated.
    let mut all = ids.clone();
    for name in ["G1", "G2"] {
        all.insert(s.post("/Groups", json!({"displayName": name})).await.body["id"].as_str().unwrap().to_string());
    }
    let (mut seen, mut start) = (Vec::new(), 1);
    for _ in 0..n {
        let page = s.post("/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": start, "count": 1000})).await;
        assert_eq!(page.body["totalResults"], all.len(), "{}", page.body);
        let page_ids = page_ids(&page.body);
        if page_ids.is_empty() {
            break;
        }
        start += page_ids.len();
        seen.extend(page_ids);
    }
    assert_eq!(seen.len(), all.len());
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), all);
}

/// Seeds `users` users with two emails each straight into the database (the API would take
/// minutes): enough rows that a filter of 64 `co` clauses runs far past a small budget.
fn seed_email_rows(db: &std::path::Path, users: usize) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users})
         INSERT INTO users (id, user_name, user_name_key, active, created, last_modified) SELECT 'seed-' || i, 'seed' || i || '@x.com', 'seed' || i || '@x.com', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z' FROM n;
         INSERT INTO user_emails (user_pk, position, value, type) SELECT pk, 0, user_name, 'work' FROM users WHERE id LIKE 'seed-%';
         INSERT INTO user_emails (user_pk, position, value, type) SELECT pk, 1, 'home.' || user_name, 'home' FROM users WHERE id LIKE 'seed-%';
         COMMIT;"
    ))
    .unwrap();
}

#[tokio::test]
async fn a_scan_past_its_budget_is_interrupted_and_the_tenant_keeps_serving() {
    let dir = TempDir::new("budget");
    let data = binary_data_dir(dir.path()).await;
    seed_email_rows(&data.database(&scimd::tenant::TenantId::parse("acme").unwrap()), 60_000);
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let env = [("SCIMD_QUERY_TIMEOUT_MS", "300")];
    let server = ServeBinary::start_with_env(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info", &env).await;
    let clauses: Vec<String> = (0..64).map(|i| format!("emails.value co \"nomatch{i}\"")).collect();
    let heavy = format!("/t/acme/scim/v2/Users?filter={}", q(&clauses.join(" or ")));

    let (mut sender, _) = connect(server.addr, &[&certs.ca_cert]).await;
    let (status, body) = send(&mut sender, "GET", &heavy, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["scimType"], "tooMany", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("300 ms"), "{body}");
    server.wait_for_log("interrupted a scan because it ran past its budget").await;
    // The same connection and tenant serve the next requests normally.
    let (status, body) = send(&mut sender, "GET", "/t/acme/scim/v2/Users?count=2", None).await;
    assert_eq!((status, body["totalResults"].as_u64()), (200, Some(60_000)), "{body}"); // the admin account is not listed
    let (status, body) = send(&mut sender, "GET", &format!("/t/acme/scim/v2/Users?filter={}", q("emails.value co \"seed77@\"")), None).await;
    assert_eq!((status, body["totalResults"].as_u64()), (200, Some(1)), "{body}");

    // A client that gives up stops its query too (hyper drops the request's future when
    // the connection closes): send the request by hand and close the socket.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = crate::support::connector(&certs.ca_cert, None).connect(server_name, tcp).await.unwrap();
        let auth = crate::support::basic(crate::support::ADMIN, crate::support::PASSWORD);
        tls.write_all(format!("GET {heavy} HTTP/1.1\r\nhost: localhost\r\nauthorization: {auth}\r\n\r\n").as_bytes()).await.unwrap();
        let mut byte = [0u8; 1];
        let answered = tokio::time::timeout(Duration::from_millis(50), tls.read(&mut byte)).await;
        assert!(answered.is_err(), "the heavy query answered within 50 ms: the test proves nothing");
    }
    server.wait_for_log("interrupted a scan because its client went away").await;
    let (mut sender, _) = connect(server.addr, &[&certs.ca_cert]).await;
    let (status, _) = send(&mut sender, "GET", "/t/acme/scim/v2/Users?count=1", None).await;
    assert_eq!(status, 200);
}
