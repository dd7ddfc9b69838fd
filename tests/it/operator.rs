//! Issue 6: the operator's commands against real tenant directories (the binary, while the
//! server runs where the command allows it).

use std::process::Command;

use hyper::Method;
use serde_json::{json, Value};

use crate::support::{TempDir, TestServer};

fn scimd(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("SCIMD_KDF_ITERATIONS", "1000")
        .env("RUST_LOG", "scimd=warn")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// One user per clash shape, plus users that are fine and users that only need the update.
const FIXTURE: &str = "\
username,email,given_name,family_name,active,auth_type,license,groups
alice,alice@x.com,Alice,A,true,idp,creator,Sales;Ops
bob@x.com,bob@x.com,Bob,B,true,idp,none,Sales
frank,george,Frank,F,true,idp,none,
george,george@x.com,George,G,true,basic,none,
hank,hank@x.com,Hank,H,true,idp,none,
ivan,hank,Ivan,I,false,idp,none,
jill,shared@x.com,Jill,J,true,idp,none,
kate,Shared@x.com,Kate,K,true,idp,none,
\"mike, jr\",mike@x.com,\"Mike \"\"MJ\"\"\",M,true,idp,creator_float,Ops
";

#[tokio::test]
async fn import_sanitize_and_scim_round_trip_while_serving() {
    let s = TestServer::start().await;
    let data = s.data().root().to_path_buf();
    let file = s.dir.path().join("users.csv");
    std::fs::write(&file, FIXTURE).unwrap();
    let (ok, out, err) = scimd(&data, &["import", "--tenant", "acme", file.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    assert!(err.contains("import: 100% (9/9 rows)"), "progress on standard error, --json on standard output: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["created"].as_array().unwrap().len(), 9);
    // Idempotent.
    let (_, out, _) = scimd(&data, &["import", "--tenant", "acme", file.to_str().unwrap(), "--json"]);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((again["created"].as_array().unwrap().len(), again["updated"].as_array().unwrap().len()), (0, 0));
    // Imported users are local, with their licence and groups.
    let r = s.get("/Users?filter=userName%20eq%20%22alice%22").await;
    let alice = r.body["Resources"][0].clone();
    assert_eq!(alice["urn:scimd:params:scim:schemas:extension:2.0:User"]["managedBy"], "local");
    assert_eq!(alice["urn:scimd:params:scim:schemas:extension:2.0:User"]["license"], "creator");
    assert_eq!(alice["groups"].as_array().unwrap().len(), 2);

    // The report, exactly as documented.
    let (ok, out, _) = scimd(&data, &["sanitize", "--tenant", "acme", "--json"]);
    assert!(ok);
    let report: Value = serde_json::from_str(&out).unwrap();
    let needs: Vec<&str> = report["needs_update"].as_array().unwrap().iter().map(|n| n["username"].as_str().unwrap()).collect();
    assert_eq!(needs, ["alice", "frank", "hank", "jill", "kate", "mike, jr"]);
    assert_eq!(
        report["clashes"],
        json!([
            {"usernames": ["frank", "george"], "rule": "email_equals_username"},
            {"usernames": ["ivan", "hank"], "rule": "email_equals_username"},
            {"usernames": ["jill", "kate"], "rule": "same_email"}
        ])
    );
    assert_eq!(report["applied"], json!([]));
    assert_eq!(report.as_object().unwrap().keys().collect::<Vec<_>>(), ["needs_update", "clashes", "applied"]);
    // --apply: the safe ones, in one transaction, an event each; the clashing ones stay.
    let (ok, out, _) = scimd(&data, &["sanitize", "--tenant", "acme", "--apply", "--json"]);
    assert!(ok);
    let applied: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(applied["applied"], json!(["alice", "mike, jr"]));
    assert_eq!(s.count("acme", "SELECT count(*) FROM events WHERE principal = 'sanitize'"), 2);
    // SCIM sees the new userNames (and the user keeps its id and groups).
    let r = s.get("/Users?filter=userName%20eq%20%22alice%40x.com%22").await;
    assert_eq!(r.body["Resources"][0]["id"], alice["id"]);
    assert_eq!(r.body["Resources"][0]["groups"].as_array().unwrap().len(), 2);
    assert_eq!(s.get("/Users?filter=userName%20eq%20%22frank%22").await.body["totalResults"], 1, "clashing users are left");
    // Running it again changes nothing.
    let (_, out, _) = scimd(&data, &["sanitize", "--tenant", "acme", "--apply", "--json"]);
    let third: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(third["applied"], json!([]));
    // Human-readable mode says what it would do.
    let (_, out, _) = scimd(&data, &["sanitize", "--tenant", "acme", "--auth-mode", "basic"]);
    assert!(out.contains("george") && out.contains("clashing pair"), "{out}");
    let (ok, _, err) = scimd(&data, &["import", "--tenant", "acme", "/nonexistent.csv"]);
    assert!(!ok && err.contains("cannot read"));
    // JSON import, and a file with a bad row is refused whole.
    let json_file = s.dir.path().join("more.json");
    std::fs::write(&json_file, r#"[{"username":"zoe@x.com","email":"zoe@x.com","given_name":"Z","family_name":"O","active":true,"auth_type":"basic","license":"none","groups":["Ops"]}]"#).unwrap();
    let (ok, out, _) = scimd(&data, &["import", "--tenant", "acme", json_file.to_str().unwrap()]);
    assert!(ok && out.contains("created 1"), "{out}");
    std::fs::write(&json_file, r#"[{"username":"yan@x.com","active":true,"auth_type":"basic","license":"none"},{"username":"","active":true,"auth_type":"basic","license":"none"}]"#).unwrap();
    let (ok, _, err) = scimd(&data, &["import", "--tenant", "acme", json_file.to_str().unwrap()]);
    assert!(!ok && err.contains("row 2"), "{err}");
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name = 'yan@x.com'"), 0);
}

/// Issue 14: CSV is read as RFC 4180 says (BOM, CRLF, quoted commas, doubled quotes, line
/// breaks inside quotes), and a file that is not valid CSV is refused whole, naming its line.
#[tokio::test]
async fn import_reads_rfc4180_and_refuses_malformed_csv_whole() {
    let s = TestServer::start().await;
    let data = s.data().root().to_path_buf();
    let file = s.dir.path().join("users.csv");
    let header = "username,email,given_name,family_name,active,auth_type,license,groups\r\n";
    let good = format!("\u{feff}{header}\"pat, jr\",pat@x.com,\"Pat \"\"P\"\"\nSecond\",P,true,idp,none,\"Sales;Ops\"\r\n");
    std::fs::write(&file, good).unwrap();
    let (ok, out, err) = scimd(&data, &["import", "--tenant", "acme", file.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    assert!(err.contains("import: 100% (1/1 rows)"), "progress on standard error, --json on standard output: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["created"], json!(["pat, jr"]));
    let pat = s.get("/Users?filter=userName%20eq%20%22pat%2C%20jr%22").await.body["Resources"][0].clone();
    assert_eq!(pat["name"]["givenName"], "Pat \"P\"\nSecond");
    assert_eq!(pat["groups"].as_array().unwrap().len(), 2);

    // Each file has a good row first: nothing of it may be imported.
    let first = "quinn,quinn@x.com,Quinn,Q,true,idp,none,\r\n";
    for (bad, line) in [
        ("rae,rae@x.com,\"Rae\"x,R,true,idp,none,\r\n", 3), // the old reader stored "Raex"
        ("rae,rae@x.com,Rae,R,true,idp,none,Sales,Ops\r\n", 3), // the old reader dropped Ops
        ("\r\nrae,rae@x.com,\"Rae\nRo\",R,true,idp,none,\r\nsam,s\"m@x.com,Sam,S,true,idp,none,\r\n", 6),
        ("rae,rae@x.com,\"Rae,R,true,idp,none,\r\n", 3), // a quote never closed
    ] {
        std::fs::write(&file, format!("{header}{first}{bad}")).unwrap();
        let (ok, _, err) = scimd(&data, &["import", "--tenant", "acme", file.to_str().unwrap()]);
        assert!(!ok && err.contains(&format!("line {line}:")), "{bad:?}: {err}");
        assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name IN ('quinn', 'rae', 'sam')"), 0, "{bad:?}");
    }
}

/// Issue 14: `scimd check --cert` on a certificate whose notAfter is damaged says it cannot
/// read the expiry (an ERROR, non-zero exit); the hand-written DER walk panicked on it.
#[test]
fn check_cert_with_a_damaged_expiry_is_an_error_not_a_panic() {
    use base64::Engine;
    let dir = TempDir::new("damaged-cert");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2051, 1, 1);
    let mut der = params.self_signed(&key).unwrap().der().to_vec();
    let at = der.windows(15).position(|w| w == b"20510101000000Z").unwrap();
    der[at + 5..at + 7].copy_from_slice("é".as_bytes());
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", base64::engine::general_purpose::STANDARD.encode(&der));
    let cert = dir.path().join("damaged.pem");
    std::fs::write(&cert, pem).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (ok, out, err) = scimd(&data, &["check", "--cert", cert.to_str().unwrap()]);
    assert!(!ok && !err.contains("panicked"), "{err}");
    assert!(out.lines().any(|l| l.contains("ERROR") && l.contains("cannot read its expiry")), "{out}");
}

#[tokio::test]
async fn backup_during_writes_restores_with_integrity() {
    let s = TestServer::start().await;
    let data = s.data().root().to_path_buf();
    let backup = s.dir.path().join("acme.db");
    // Writers keep creating users while the backup runs.
    let writer = {
        let client = s.client.clone();
        let auth = s.auth.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                let body = serde_json::to_vec(&json!({"userName": format!("w{i}@x.com")})).unwrap();
                let r = client.raw(Method::POST, "/t/acme/scim/v2/Users", &[("authorization", &auth), ("content-type", "application/scim+json")], Some(body)).await;
                assert_eq!(r.status, 201);
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (data, backup) = (data.clone(), backup.clone());
        move || scimd(&data, &["backup", "--tenant", "acme", "--out", backup.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("integrity ok"));
    // Progress on standard error, as plain lines when it is not a terminal.
    assert!(err.contains("backup: 100% ("), "{err}");
    writer.await.unwrap();
    let backed_up: i64 = rusqlite::Connection::open(&backup).unwrap().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert!((1..=151).contains(&backed_up));
    let (ok, _, err) = scimd(&data, &["backup", "--tenant", "acme", "--out", backup.to_str().unwrap()]);
    assert!(!ok && err.contains("exists"), "never overwrites");
    // Restore needs --yes and a stopped server.
    let dir = s.stop().await;
    let (ok, _, err) = scimd(&data, &["restore", "--tenant", "acme", "--from", backup.to_str().unwrap()]);
    assert!(!ok && err.contains("--yes"));
    let (ok, out, err) = scimd(&data, &["restore", "--tenant", "acme", "--from", backup.to_str().unwrap(), "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("integrity ok"));
    assert!(err.contains("restore: 100% ("), "{err}");
    let db = rusqlite::Connection::open(data.join("tenants/acme/scim.db")).unwrap();
    let restored: i64 = db.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(restored, backed_up);
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    // A corrupt file is refused.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let (ok, _, _) = scimd(&data, &["restore", "--tenant", "acme", "--from", junk.to_str().unwrap(), "--yes"]);
    assert!(!ok);
}

#[test]
fn tenant_user_group_commands_and_check() {
    let dir = TempDir::new("ops");
    let d = dir.path();
    assert!(scimd(d, &["tenant", "create", "acme"]).0);
    assert!(scimd(d, &["admin", "add", "--tenant", "acme", "--username", "okta"]).0);
    assert!(scimd(d, &["user", "add", "--local", "--tenant", "acme", "--username", "pat@x.com", "--email", "pat@x.com"]).0);
    assert!(scimd(d, &["group", "add", "--tenant", "acme", "--name", "Builders"]).0);
    let (ok, out, _) = scimd(d, &["user", "list", "--tenant", "acme", "--json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, out, _) = scimd(d, &["user", "show", "--tenant", "acme", "--username", "okta", "--json"]);
    assert!(!out.contains("pbkdf2"), "never prints the password hash");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["role"], "org_admin");
    assert!(scimd(d, &["user", "deactivate", "--tenant", "acme", "--username", "pat@x.com"]).0);
    let (_, out, _) = scimd(d, &["user", "list", "--tenant", "acme", "--json"]);
    let pat = serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().iter().find(|u| u["username"] == "pat@x.com").cloned().unwrap();
    assert_eq!((pat["active"].as_bool(), pat["license"].as_str()), (Some(false), Some("none")));
    assert!(scimd(d, &["user", "activate", "--tenant", "acme", "--username", "pat@x.com"]).0);
    let (_, out, _) = scimd(d, &["group", "list", "--tenant", "acme", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()[0]["name"], "Builders");
    let (_, out, _) = scimd(d, &["group", "show", "--tenant", "acme", "--name", "Builders"]);
    assert!(out.contains("org group"));
    let (ok, out, _) = scimd(d, &["tenant", "show", "acme", "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["counts"]["users"], 2);

    // check: all OK, then a world-readable key is an ERROR and a non-zero exit.
    let (ok, out, _) = scimd(d, &["check"]);
    assert!(ok && out.contains("counters match the rows"), "{out}");
    {
        // A counter that no longer matches its rows (changed behind the triggers' back).
        let conn = rusqlite::Connection::open(d.join("tenants/acme/scim.db")).unwrap();
        conn.execute("UPDATE counters SET n = n + 5 WHERE name = 'users'", []).unwrap();
        drop(conn);
        let (ok, out, _) = scimd(d, &["check"]);
        assert!(!ok && out.contains("counter users says 7, the rows say 2"), "{out}");
        let conn = rusqlite::Connection::open(d.join("tenants/acme/scim.db")).unwrap();
        conn.execute("UPDATE counters SET n = n - 5 WHERE name = 'users'", []).unwrap();
    }
    assert!(scimd(d, &["token", "keygen", "--tenant", "acme"]).0);
    let certs = scimd::certs::generate(&d.join("certs"), &["localhost".into()]).unwrap();
    let (ok, out, _) = scimd(d, &["check", "--cert", certs.server_cert.to_str().unwrap()]);
    assert!(ok && out.contains("certificate") && out.contains("key mode 600"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("tenants/acme/keys/token-signing.key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, out, _) = scimd(d, &["check", "--json"]);
        assert!(!ok);
        assert!(out.lines().any(|l| l.contains("\"ERROR\"") && l.contains("key mode 644")), "{out}");
    }

    // A broken server configuration is a finding too.
    let bad = d.join("scimd.toml");
    std::fs::write(&bad, "listen = \"nowhere\"\n").unwrap();
    let (ok, out, _) = scimd(d, &["check", "--config", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("ERROR configuration"), "{out}");
    let (ok, out, _) = scimd(d, &["token", "list", "--tenant", "acme", "--json"]);
    assert!(ok && out.trim() == "[]", "{out}");

    // delete asks for --yes and keeps a backup.
    let (ok, _, err) = scimd(d, &["tenant", "delete", "acme"]);
    assert!(!ok && err.contains("--yes"));
    let (ok, out, _) = scimd(d, &["tenant", "delete", "acme", "--yes"]);
    assert!(ok, "{out}");
    assert!(!d.join("tenants/acme").exists());
    assert_eq!(std::fs::read_dir(d.join("backups")).unwrap().count(), 1);
}

#[test]
fn every_command_has_a_manual_and_clear_errors() {
    let dir = TempDir::new("help");
    for cmd in ["serve", "demo", "tenant", "admin", "user", "group", "token", "apiclient", "import", "sanitize", "backup", "restore", "check", "log"] {
        let (ok, out, _) = scimd(dir.path(), &[cmd, "--help"]);
        assert!(ok && out.starts_with("NAME") && out.contains("SYNOPSIS"), "{cmd}: {out}");
    }
    let (ok, _, err) = scimd(dir.path(), &["user", "show", "--tenant", "nope", "--username", "x"]);
    assert!(!ok && err.contains("does not exist"));
    let (ok, _, err) = scimd(dir.path(), &["sanitize", "--tenant", "x", "--auth-mode", "ldap"]);
    assert!(!ok && err.contains("basic, idp or multi"));
}
