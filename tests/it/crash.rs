//! Crash safety: 2,000 creates and deactivations from 32 concurrent connections, the
//! server killed with SIGKILL part-way, restarted; every request that got a 2xx is there,
//! nothing is half-written, and SQLite's integrity and foreign-key checks pass. Several
//! kill points.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{binary_data_dir, connect, try_send, ServeBinary, TempDir};

const CONNECTIONS: usize = 32;
const OPERATIONS: usize = 2_000;

#[derive(Default)]
struct Acknowledged {
    /// (id, userName) of every create answered 201.
    created: Vec<(String, String)>,
    /// ids of every deactivation answered 200.
    deactivated: Vec<String>,
}

impl Acknowledged {
    fn count(&self) -> usize {
        self.created.len() + self.deactivated.len()
    }
}

/// One run; returns (acknowledged operations, users found after the restart).
async fn run_once(kill_after: usize) -> (usize, usize) {
    let dir = TempDir::new("crash");
    let data = binary_data_dir(dir.path()).await;
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let mut server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info,scimd::http::access=warn").await;
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let pairs_per_connection = OPERATIONS / CONNECTIONS / 2 + 1;
    let mut workers = Vec::new();
    for c in 0..CONNECTIONS {
        let (mut sender, _) = connect(server.addr, &[&certs.ca_cert]).await;
        let acked = Arc::clone(&acked);
        workers.push(tokio::spawn(async move {
            for i in 0..pairs_per_connection {
                let name = format!("c{c}-u{i}@x.com");
                let body = json!({"userName": name, "emails": [{"value": name, "primary": true}], "name": {"givenName": "G"}});
                let Some((201, created)) = try_send(&mut sender, "POST", "/t/acme/scim/v2/Users", Some(body)).await else { return };
                let id = created["id"].as_str().unwrap().to_string();
                acked.lock().unwrap().created.push((id.clone(), name));
                let patch = json!({"Operations": [{"op": "replace", "value": {"active": false}}]});
                let Some((200, _)) = try_send(&mut sender, "PATCH", &format!("/t/acme/scim/v2/Users/{id}"), Some(patch)).await else { return };
                acked.lock().unwrap().deactivated.push(id);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().count() < kill_after {
        assert!(Instant::now() < deadline, "the load never reached {kill_after} acknowledged operations");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.child.kill().unwrap(); // SIGKILL: no drain, no checkpoint.
    server.child.wait().unwrap();
    for w in workers {
        let _ = w.await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.count() < OPERATIONS, "killed after the load finished: the kill point proves nothing");

    // Restart on the same data: it must come up (WAL recovery) and serve.
    let server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info,scimd::http::access=warn").await;
    let client = crate::support::Client::new(server.addr, &certs.ca_cert);
    let auth = crate::support::basic(crate::support::ADMIN, crate::support::PASSWORD);
    let db = rusqlite::Connection::open(data.database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    for (id, name) in &acked.created {
        let (user_name, emails): (String, i64) = db
            .query_row("SELECT user_name, (SELECT count(*) FROM user_emails e WHERE e.user_pk = u.pk) FROM users u WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap_or_else(|_| panic!("acknowledged user {name} is missing after the crash"));
        assert_eq!((user_name.as_str(), emails), (name.as_str(), 1));
    }
    for id in &acked.deactivated {
        let active: i64 = db.query_row("SELECT active FROM users WHERE id = ?1", [id], |r| r.get(0)).unwrap();
        assert_eq!(active, 0, "an acknowledged deactivation of {id} was lost");
    }
    // Nothing half-written: every user has its email and its create event (one transaction).
    let half: i64 = db
        .query_row("SELECT count(*) FROM users u WHERE u.user_name LIKE 'c%-u%@x.com' AND NOT EXISTS (SELECT 1 FROM user_emails e WHERE e.user_pk = u.pk)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(half, 0);
    let without_event: i64 = db
        .query_row("SELECT count(*) FROM users u WHERE u.user_name LIKE 'c%-u%@x.com' AND NOT EXISTS (SELECT 1 FROM events e WHERE e.resource_id = u.id AND e.action = 'create')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(without_event, 0);
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let fk_problems: i64 = db.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(fk_problems, 0);
    let found: i64 = db.query_row("SELECT count(*) FROM users WHERE user_name LIKE 'c%-u%@x.com'", [], |r| r.get(0)).unwrap();
    // And SCIM serves them.
    let some = &acked.created[acked.created.len() / 2].0;
    assert_eq!(client.as_(&auth, hyper::Method::GET, &format!("/t/acme/scim/v2/Users/{some}")).await.status, 200);
    (acked.count(), found as usize)
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    for kill_after in [150, 700, 1_400] {
        let (acknowledged, found) = run_once(kill_after).await;
        // Printed for the README's Reliability section.
        println!("crash: kill after >= {kill_after} acks: {acknowledged} acknowledged operations, {found} users found after restart (all acknowledged present)");
    }
}
