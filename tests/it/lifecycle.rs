//! The appliance lifecycle against the real binary: SIGTERM drains in-flight requests and
//! exits 0; SIGHUP swaps the certificate for new connections while old ones keep working,
//! and a broken pair is refused.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};

use crate::support::{binary_data_dir, connect, send, ServeBinary, TempDir};

#[tokio::test]
async fn sigterm_completes_in_flight_requests_and_exits_zero() {
    let dir = TempDir::new("term");
    let data = binary_data_dir(dir.path()).await;
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let mut server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info").await;
    // Four Bulk requests of 800 durable creates each: long enough to be in flight.
    let mut tasks = Vec::new();
    for n in 0..4 {
        let (mut sender, _) = connect(server.addr, &[&certs.ca_cert]).await;
        let ops: Vec<Value> = (0..800).map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": {"userName": format!("t{n}-{i}@x.com")}})).collect();
        tasks.push(tokio::spawn(async move { send(&mut sender, "POST", "/t/acme/scim/v2/Bulk", Some(json!({"Operations": ops}))).await }));
    }
    // Once the server is working on them (rows are appearing), ask it to stop.
    let db = data.database(&scimd::tenant::TenantId::parse("acme").unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Every one of the four must be in flight (a connection with no request in flight is
    // closed at shutdown, as it should be).
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let per_bulk: Vec<i64> = (0..4)
            .map(|n| conn.query_row("SELECT count(*) FROM users WHERE user_name LIKE ?1", [format!("t{n}-%")], |r| r.get(0)).unwrap_or(0))
            .collect();
        if per_bulk.iter().all(|c| *c > 0) {
            assert!(per_bulk.iter().any(|c| *c < 800), "the requests finished before SIGTERM; the test proves nothing");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the Bulk requests never all started: {per_bulk:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.signal("TERM");
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let ops = body["Operations"].as_array().unwrap();
        assert_eq!(ops.len(), 800);
        assert!(ops.iter().all(|o| o["status"] == "201"));
    }
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status}");
    // Everything acknowledged is in the database, which is consistent.
    let conn = rusqlite::Connection::open(data.database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    let users: i64 = conn.query_row("SELECT count(*) FROM users WHERE user_name LIKE 't%@x.com'", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 3200);
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_connections() {
    let dir = TempDir::new("cert");
    let data = binary_data_dir(dir.path()).await;
    let live = dir.path().join("live");
    let first = scimd::certs::generate(&live, &["localhost".into()]).unwrap();
    let first_ca = dir.path().join("first-ca.pem");
    std::fs::copy(&first.ca_cert, &first_ca).unwrap();
    let server = ServeBinary::start(data.root(), &first.server_cert, &first.server_key, dir.path(), "scimd=info").await;
    let (mut old, old_peer) = connect(server.addr, &[&first_ca]).await;
    assert_eq!(send(&mut old, "GET", "/t/acme/scim/v2/Users", None).await.0, 200);

    // An ACME client renews: new files in place, then SIGHUP.
    let second = scimd::certs::generate(&live, &["localhost".into()]).unwrap();
    let second_leaf = CertificateDer::pem_file_iter(&second.server_cert).unwrap().next().unwrap().unwrap().into_owned();
    server.signal("HUP");
    server.wait_for_log("reloaded the TLS certificate").await;
    let (mut fresh, fresh_peer) = connect(server.addr, &[&first_ca, &second.ca_cert]).await;
    assert_eq!(fresh_peer, second_leaf, "new connections get the new certificate");
    assert_ne!(fresh_peer, old_peer);
    assert_eq!(send(&mut fresh, "GET", "/t/acme/scim/v2/Users", None).await.0, 200);
    // The connection made before the swap keeps working.
    assert_eq!(send(&mut old, "GET", "/t/acme/scim/v2/Groups", None).await.0, 200);

    // A broken pair is refused with an ERROR; the current one keeps serving.
    std::fs::write(&second.server_cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n").unwrap();
    server.signal("HUP");
    server.wait_for_log("refusing the new TLS certificate").await;
    let (_, still) = connect(server.addr, &[&first_ca, &second.ca_cert]).await;
    assert_eq!(still, second_leaf);
}
