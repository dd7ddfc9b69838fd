//! Listing and filtering: indexed `eq` lookups, exact paging, bad filters.

use serde_json::json;

use crate::support::TestServer;

fn q(s: &str) -> String {
    s.replace(' ', "%20").replace('"', "%22").replace('[', "%5B").replace(']', "%5D")
}

#[tokio::test]
async fn filters_on_the_indexed_attributes() {
    let s = TestServer::start().await;
    let r = s.post("/Users", json!({"userName": "Alice@Example.com", "externalId": "ext-1", "displayName": "Alice A",
        "emails": [{"value": "alice@work.example", "type": "work"}], "title": "Boss",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"}})).await;
    let alice = r.body["id"].as_str().unwrap().to_string();
    s.post("/Users", json!({"userName": "bob@example.com", "externalId": "ext-2", "active": false})).await;
    let gid = s.post("/Groups", json!({"displayName": "Admins", "externalId": "g-ext", "members": [{"value": alice}]})).await.body["id"].as_str().unwrap().to_string();

    let cases = [
        ("/Users", "userName eq \"alice@example.COM\"", 1),
        ("/Users", "USERNAME Eq \"alice@example.com\"", 1),
        ("/Users", "externalId eq \"ext-1\"", 1),
        ("/Users", "externalId eq \"EXT-1\"", 0),
        ("/Users", "emails.value eq \"ALICE@work.example\"", 1),
        ("/Users", "emails[type eq \"work\" and value co \"@work\"]", 1),
        ("/Users", &format!("id eq \"{alice}\""), 1),
        ("/Users", "displayName eq \"alice a\"", 1),
        ("/Users", "active eq false", 1),
        ("/Users", "userName sw \"ALI\" or userName ew \"bob@example.com\"", 2),
        ("/Users", "not (userName co \"example\")", 0), // the admin account is not listed
        ("/Users", "title pr", 1),
        ("/Users", "userName eq \"nobody\"", 0),
        ("/Users", "meta.created gt \"2000-01-01T00:00:00Z\" and userName eq \"bob@example.com\"", 1),
        ("/Users", &format!("groups.value eq \"{gid}\""), 1),
        ("/Users", "userName eq \"x' OR 1=1 --\"", 0),
        ("/Users", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"42\"", 1),
        ("/Users", "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"bob@example.com\"", 1),
        ("/Users", "title eq null", 1), // bob (the admin account is not listed)
        ("/Users", "title ne null", 1),
        ("/Users", "emails[type eq \"work\"].value eq \"alice@work.example\"", 1),
        ("/Groups", "displayName eq \"admins\"", 1),
        ("/Groups", "externalId eq \"g-ext\"", 1),
        ("/Groups", &format!("members.value eq \"{alice}\""), 1),
    ];
    for (endpoint, filter, expected) in cases {
        let r = s.get(&format!("{endpoint}?filter={}", q(filter))).await;
        assert_eq!(r.status, 200, "{filter}: {}", r.body);
        assert_eq!(r.body["totalResults"], expected, "{filter}: {}", r.body);
        assert_eq!(r.body["Resources"].as_array().unwrap().len(), expected as usize, "{filter}");
        assert_eq!(r.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
    }
}

#[tokio::test]
async fn bad_filters_are_invalid_filter() {
    let s = TestServer::start().await;
    for filter in [
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "userName eq \"a\")",
        "userName eq bogus",
        "noSuchAttribute eq \"a\"",
        "active gt true",
        "meta.created gt \"yesterday\"",
        "emails[type eq \"work\"",
    ] {
        s.get(&format!("/Users?filter={}", q(filter))).await.assert_error(400, Some("invalidFilter"));
    }
    let deep = format!("{}userName pr{}", "(".repeat(500), ")".repeat(500));
    s.get(&format!("/Users?filter={}", q(&deep))).await.assert_error(400, Some("invalidFilter"));
    let many = vec!["userName pr"; 1000].join(" or ");
    s.get(&format!("/Users?filter={}", q(&many))).await.assert_error(400, Some("invalidFilter"));
}

#[tokio::test]
async fn paging_is_exact() {
    let s = TestServer::start().await;
    for i in 0..25 {
        s.user(&format!("user{i:02}@example.com")).await;
    }
    // 25 users plus the admin account.
    let filter = q("userName sw \"user\"");
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let r = s.get(&format!("/Users?filter={filter}&startIndex={start}&count=10")).await;
        assert_eq!(r.body["totalResults"], 25);
        assert_eq!(r.body["startIndex"], start);
        let page = r.body["Resources"].as_array().unwrap();
        assert_eq!(r.body["itemsPerPage"], page.len());
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|u| u["userName"].as_str().unwrap().to_string()));
        start += page.len();
    }
    let expected: Vec<String> = (0..25).map(|i| format!("user{i:02}@example.com")).collect();
    assert_eq!(seen, expected, "every user exactly once, in order");
    // count=0 gives only the total; negative counts mean 0; startIndex < 1 means 1.
    let r = s.get(&format!("/Users?filter={filter}&count=0")).await;
    assert_eq!((r.body["totalResults"].as_u64(), r.body["Resources"].as_array().unwrap().len()), (Some(25), 0));
    let r = s.get(&format!("/Users?filter={filter}&count=-1")).await;
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 0);
    let r = s.get(&format!("/Users?filter={filter}&startIndex=0&count=1000000000000")).await;
    assert_eq!((r.body["startIndex"].as_u64(), r.body["Resources"].as_array().unwrap().len()), (Some(1), 25));
    s.get("/Users?count=ten").await.assert_error(400, Some("invalidValue"));
    // Default page size is 100 and an unknown parameter (Entra's) is ignored.
    let r = s.get("/Users?aadOptscim062020").await;
    assert_eq!(r.body["totalResults"], 25, "the admin account is not listed");
}

/// Okta's import walk (`startIndex` 1, 11, 21, … of an unfiltered list) with users created,
/// deleted, restored and removed from another process between the pages: every page is
/// exactly the page an `OFFSET` over the rows as they are then gives (a page may resume
/// after the previous one's last key only while nothing it lists has changed).
#[tokio::test]
async fn an_index_paged_walk_sees_what_the_offset_would_under_changes() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..45 {
        ids.push(s.user(&format!("walk{i:02}@example.com")).await);
    }
    let offset_page = |start: usize| -> Vec<String> {
        let conn = s.db("acme");
        let mut stmt = conn.prepare("SELECT user_name FROM users WHERE deleted_at IS NULL AND role = 'user' ORDER BY pk LIMIT 10 OFFSET ?").unwrap();
        stmt.query_map([start as i64 - 1], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let mut start = 1;
    let mut step = 0;
    loop {
        let r = s.get(&format!("/Users?startIndex={start}&count=10")).await;
        let page: Vec<String> = r.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap().to_string()).collect();
        assert_eq!(page, offset_page(start), "page at startIndex {start}, step {step}");
        if page.is_empty() {
            break;
        }
        start += page.len();
        // Between the pages: nothing, a delete before the position, a create, a restore, a
        // hard delete by another process (no trigger is bypassed), then nothing again.
        match step {
            1 => assert_eq!(s.delete(&format!("/Users/{}", ids[0])).await.status, 204),
            2 => drop(s.user("walk-new@example.com").await),
            3 => assert_eq!(s.post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "walk00@example.com"})).await.status, 201),
            4 => assert_eq!(s.db("acme").execute("DELETE FROM users WHERE id = ?1", [&ids[3]]).unwrap(), 1),
            _ => {}
        }
        step += 1;
    }
    assert!(step >= 5, "the walk crossed every change ({step} pages)");
}

#[tokio::test]
async fn search_endpoint_and_list_projection() {
    let s = TestServer::start().await;
    s.post("/Users", json!({"userName": "carol@example.com", "title": "CTO"})).await;
    let r = s.post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "title eq \"CTO\"", "attributes": ["userName"], "startIndex": 1, "count": 10})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["userName"], "carol@example.com");
    assert!(r.body["Resources"][0].get("title").is_none());
    let r = s.get("/Groups?excludedAttributes=members").await;
    assert_eq!(r.status, 200);
}
