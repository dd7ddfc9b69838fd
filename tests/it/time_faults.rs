//! Issue 22, the faults of time: the wall clock stepping back an hour and forward a day
//! (an NTP step, a VM restored from a snapshot), and the process stopped for 20 s under
//! load (SIGSTOP: a debugger, a frozen VM) and continued.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::support::{basic, binary_data_dir, Client, ServeBinary, TempDir, TestServer, ADMIN, PASSWORD};

const HOUR_MS: i64 = 3_600_000;

fn version(etag: &Value) -> u64 {
    etag.as_str().and_then(|e| e.trim_start_matches("W/").trim_matches('"').parse().ok()).unwrap_or_else(|| panic!("not a version ETag: {etag}"))
}

/// 6. Token expiry follows the wall clock as it is now; ETags (versions) never go back,
/// `meta.lastModified` never goes back, and the activity log stays in sequence order.
#[tokio::test]
async fn wall_clock_steps_back_and_forward() {
    let s = TestServer::start_with_settings("require_username_is_email = false\ntoken_lifetime_days = 1\n", |_| {}).await;
    let admin = basic(ADMIN, PASSWORD);
    assert_eq!(s.client.as_(&admin, Method::POST, "/t/acme/rest/token/apiKeygen").await.status, 201);
    let issued = s.client.as_(&admin, Method::GET, "/t/acme/rest/token").await;
    let bearer = format!("Bearer {}", issued.body["token"].as_str().unwrap());
    let created = s.post("/Users", json!({"userName": "clock", "name": {"givenName": "C"}})).await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_string();
    let meta0 = created.body["meta"].clone();
    let rename = |n: u32| json!({"Operations": [{"op": "replace", "path": "displayName", "value": format!("Clock {n}")}]});

    s.shift_clock_ms(-HOUR_MS);
    // A token issued "an hour from now" is not refused: only its expiry is checked.
    assert_eq!(s.client.as_(&bearer, Method::GET, "/t/acme/scim/v2/Users").await.status, 200);
    let back = s.patch(&format!("/Users/{id}"), rename(1)).await;
    assert_eq!(back.status, 200, "{}", back.body);
    let meta1 = back.body["meta"].clone();
    assert!(version(&meta1["version"]) > version(&meta0["version"]), "{meta0} -> {meta1}");
    assert!(meta1["lastModified"].as_str() >= meta0["lastModified"].as_str(), "lastModified went back: {meta0} -> {meta1}");
    assert_eq!(meta1["created"], meta0["created"]);
    // Groups alike (their versions move with their members too).
    s.shift_clock_ms(HOUR_MS);
    let group = s.post("/Groups", json!({"displayName": "Clocked"})).await.body.clone();
    let gid = group["id"].as_str().unwrap().to_string();
    s.shift_clock_ms(-HOUR_MS);
    let add = json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
    assert_eq!(s.patch(&format!("/Groups/{gid}"), add).await.status, 204);
    let g1 = s.get(&format!("/Groups/{gid}")).await.body["meta"].clone();
    assert!(version(&g1["version"]) > version(&group["meta"]["version"]));
    assert_eq!(g1["lastModified"], group["meta"]["lastModified"], "never earlier than the last change: {g1}");

    s.shift_clock_ms(25 * HOUR_MS);
    let expired = s.client.as_(&bearer, Method::GET, "/t/acme/scim/v2/Users").await;
    expired.assert_error(401, None);
    assert!(expired.body["detail"].as_str().unwrap().contains("expired"), "{}", expired.body);
    let ahead = s.patch(&format!("/Users/{id}"), rename(2)).await.body["meta"].clone();
    assert!(ahead["lastModified"].as_str() > meta1["lastModified"].as_str());

    // Back to the real time, a day behind the last change: versions and lastModified hold.
    s.shift_clock_ms(-24 * HOUR_MS);
    let now = s.patch(&format!("/Users/{id}"), rename(3)).await.body["meta"].clone();
    assert_eq!(version(&now["version"]), version(&ahead["version"]) + 1);
    assert_eq!(now["lastModified"], ahead["lastModified"], "never earlier than the last change");
    let got = s.get(&format!("/Users/{id}")).await;
    assert_eq!(got.headers.get("etag").unwrap().to_str().unwrap(), now["version"].as_str().unwrap());
    let after_get = s.client.as_(&admin, Method::GET, &format!("/t/acme/scim/v2/Users/{id}")).await;
    assert_eq!(after_get.status, 200);

    // The activity log is in sequence order, whatever the clock said.
    let feed = s.client.as_(&admin, Method::GET, "/t/acme/events?after=0&limit=100").await;
    let events = feed.body["events"].as_array().unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ours: Vec<&Value> = events.iter().filter(|e| e["resourceId"] == id.as_str() && e["action"] != "license").collect();
    assert_eq!(ours.iter().map(|e| e["action"].as_str().unwrap()).collect::<Vec<_>>(), ["create", "update", "update", "update"]);
    assert!(ours[1]["at"].as_str() < ours[0]["at"].as_str(), "the log keeps the time it was told: {ours:?}");
}

/// 7. The process stopped for 20 s under load: requests whose client gave up are either
/// wholly applied or not at all, every acknowledged create is there, and it serves again.
#[tokio::test]
async fn stopped_for_20_seconds_under_load() {
    let dir = TempDir::new("fault-sigstop");
    let data = binary_data_dir(dir.path()).await;
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info,scimd::http::access=warn").await;
    let client = Client::new(server.addr, &certs.ca_cert);
    let auth = basic(ADMIN, PASSWORD);
    // (acknowledged, given up on) userNames.
    let outcome = Arc::new(Mutex::new((Vec::<String>::new(), Vec::<String>::new())));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, auth, outcome) = (client.clone(), auth.clone(), Arc::clone(&outcome));
        workers.push(tokio::spawn(async move {
            for i in 0..40 {
                let name = format!("w{w}-{i}@x.com");
                let body = json!({"userName": name, "emails": [{"value": name}], "name": {"givenName": "G"}}).to_string().into_bytes();
                let (client, auth) = (client.clone(), auth.clone());
                let mut call = tokio::spawn(async move {
                    let headers = [("authorization", auth.as_str()), ("content-type", "application/scim+json")];
                    client.try_raw(Method::POST, "/t/acme/scim/v2/Users", &headers, Some(body)).await.map(|r| r.status.as_u16())
                });
                // The client gives up after 2 s and closes its connection, as an IdP would.
                let status = tokio::time::timeout(Duration::from_secs(2), &mut call).await;
                call.abort();
                let mut o = outcome.lock().unwrap();
                match status {
                    Ok(Ok(Ok(201))) => o.0.push(name),
                    Ok(Ok(Ok(other))) => panic!("{name}: {other}"),
                    // Timed out, or the connection was cut (a reset as the server came back).
                    _ => o.1.push(name),
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while outcome.lock().unwrap().0.len() < 40 {
        assert!(Instant::now() < deadline, "no load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal("STOP");
    tokio::time::sleep(Duration::from_secs(20)).await;
    server.signal("CONT");
    for w in workers {
        w.await.unwrap();
    }
    let (acked, gave_up) = std::mem::take(&mut *outcome.lock().unwrap());
    assert!(!gave_up.is_empty(), "the stop timed nothing out: it proves nothing");
    println!("sigstop: {} acknowledged, {} given up on by their client", acked.len(), gave_up.len());
    // It serves again at once.
    assert_eq!(client.as_(&auth, Method::GET, "/t/acme/scim/v2/Users?count=1").await.status, 200);
    drop(server);

    let db = rusqlite::Connection::open(data.database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    let whole = |name: &str| -> Option<(i64, i64)> {
        db.query_row(
            "SELECT (SELECT count(*) FROM user_emails e WHERE e.user_pk = u.pk), (SELECT count(*) FROM events v WHERE v.resource_id = u.id AND v.action = 'create') FROM users u WHERE user_name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    };
    for name in &acked {
        assert_eq!(whole(name), Some((1, 1)), "acknowledged {name} is missing or partial");
    }
    let applied = gave_up.iter().filter(|n| whole(n).is_some()).count();
    for name in &gave_up {
        assert!(matches!(whole(name), None | Some((1, 1))), "{name} is half-applied");
    }
    println!("sigstop: {applied} of the given-up creates were applied (whole)");
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
}
