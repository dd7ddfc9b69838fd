//! Shadow mode (issue 20), with the real binary: an existing installation imported from a
//! fixture (local users, an org and a project group, a username that is no email, few
//! seats), an IdP's initial cycle in shadow mode from its documented requests, the report
//! checked exactly, the live database unchanged byte for byte, then promote (with requests
//! arriving meanwhile) or discard, and one more cycle.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{basic, binary_data_dir, fixture, connect, try_send_as, ServeBinary, TempDir, ADMIN, PASSWORD};

/// The installation before the IdP: alice's username is no email; bob, carol and dave are
/// local users; carol is an inactive Basic-auth member of Sales; dave has a Creator seat.
const EXISTING: &str = "username,email,given_name,family_name,active,auth_type,license,groups
alice,alice@example.com,Alice,Ng,true,idp,none,
bob@example.com,bob@example.com,Bob,Li,true,idp,none,Sales
carol@example.com,carol@example.com,Carol,Ma,false,basic,none,Sales
dave@example.com,dave@example.com,Dave,Ko,true,basic,creator,Sales;Everyone
";

/// Two Creator seats (the SCIM admin holds one, dave the other) and one Creator Float;
/// everyone the IdP makes joins Everyone; a Contractors group never takes effect.
const SETTINGS: &str = "creator = 2\ncreator_float = 1\n[policies]\nalways_assign = [\"Everyone\"]\nnever_assign = [\"Contractors\"]\n";

struct Rig {
    dir: TempDir,
    data: PathBuf,
    ca: PathBuf,
    server: ServeBinary,
}


fn cli(data: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimd")).args(args).arg("--data-dir").arg(data).env("SCIMD_KDF_ITERATIONS", "1000").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(data: &Path, args: &[&str]) -> String {
    let (ok, out) = cli(data, args);
    assert!(ok, "scimd {args:?}: {out}");
    out
}

impl Rig {
    async fn start(tag: &str) -> Rig {
        let dir = TempDir::new(tag);
        let data = binary_data_dir(dir.path()).await.root().to_path_buf();
        std::fs::write(data.join("tenants/acme/tenant.toml"), SETTINGS).unwrap();
        let csv = dir.path().join("existing.csv");
        std::fs::write(&csv, EXISTING).unwrap();
        ok(&data, &["import", "--tenant", "acme", csv.to_str().unwrap()]);
        ok(&data, &["group", "add", "--tenant", "acme", "--name", "Engineering", "--project"]);
        let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
        let server = ServeBinary::start(&data, &certs.server_cert, &certs.server_key, dir.path(), "scimd=info").await;
        Rig { ca: certs.ca_cert.clone(), dir, data, server }
    }

    fn live(&self) -> PathBuf {
        self.data.join("tenants/acme/scim.db")
    }

    /// The live database's files, byte for byte.
    fn live_bytes(&self) -> Vec<Vec<u8>> {
        ["", "-wal"].iter().map(|s| std::fs::read(format!("{}{s}", self.live().display())).unwrap_or_default()).collect()
    }

    fn live_count(&self, sql: &str) -> i64 {
        rusqlite::Connection::open(self.live()).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

async fn call(rig: &Rig, auth: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (mut sender, _) = connect(rig.server.addr, &[&rig.ca]).await;
    try_send_as(&mut sender, auth, method, &format!("/t/acme/scim/v2{path}"), body).await.expect("the server answers")
}

fn user(name: &str, email: &str) -> Value {
    let mut u = fixture("okta/create_user.json", &[]);
    u["userName"] = json!(name);
    u["emails"][0]["value"] = json!(email);
    u["externalId"] = json!(format!("okta-{name}"));
    u
}

/// Okta's first cycle as its SCIM reference documents it: look each user up by userName,
/// create or adopt it, push the groups with their members, then update a profile and
/// deactivate a user. Returns the ids Okta was given.
async fn okta_cycle(rig: &Rig, auth: &str) -> Value {
    let mut ids = serde_json::Map::new();
    for (name, email, expect) in [
        ("bob@example.com", "bob@example.com", 201), // a local user: adopted
        ("erin@example.com", "erin@example.com", 201),
        ("frank@example.com", "frank@example.com", 201),
        ("alice@example.com", "alice@example.com", 201), // alice's username was no email: a second alice
        ("gina", "gina@example.com", 400),              // userName is no email: refused
    ] {
        let lookup = format!("/Users?filter=userName%20eq%20%22{}%22&startIndex=1&count=100", name.replace('@', "%40"));
        let (status, _) = call(rig, auth, "GET", &lookup, None).await;
        assert_eq!(status, 200);
        let (status, body) = call(rig, auth, "POST", "/Users", Some(user(name, email))).await;
        assert_eq!(status, expect, "{name}: {body}");
        if status == 201 {
            ids.insert(name.to_string(), body["id"].clone());
        }
    }
    let id = |ids: &serde_json::Map<String, Value>, n: &str| ids[n].as_str().unwrap().to_string();
    let (bob, erin, frank) = (id(&ids, "bob@example.com"), id(&ids, "erin@example.com"), id(&ids, "frank@example.com"));
    // Push groups: Sales links by name to the application's group; Engineering is a project
    // group of that name, which the IdP cannot take.
    for (name, expect) in [("Sales", 201), ("Engineering", 409), ("Contractors", 201)] {
        let mut g = fixture("okta/create_group.json", &[]);
        g["displayName"] = json!(name);
        g["members"] = json!([{"value": bob}, {"value": erin}]);
        let (status, body) = call(rig, auth, "POST", "/Groups", Some(g)).await;
        assert_eq!(status, expect, "{name}: {body}");
        if status == 201 {
            ids.insert(name.to_string(), body["id"].clone());
        }
    }
    let mut put = user("erin@example.com", "erin@example.com");
    put["name"]["givenName"] = json!("Erin");
    let (status, body) = call(rig, auth, "PUT", &format!("/Users/{erin}"), Some(put)).await;
    assert_eq!(status, 200, "{body}");
    let deactivate = fixture("okta/deactivate_user.json", &[]);
    let (status, body) = call(rig, auth, "PATCH", &format!("/Users/{frank}"), Some(deactivate)).await;
    assert_eq!(status, 200, "{body}");
    Value::Object(ids)
}

fn names(n: &[&str]) -> Value {
    json!({"count": n.len(), "names": n})
}

#[tokio::test]
async fn an_okta_first_sync_rehearsed_reported_and_promoted() {
    let rig = Rig::start("shadow-okta").await;
    let auth = basic(ADMIN, PASSWORD);
    // The tenant is open in the server (and anything its open writes is written) before the
    // live database is taken as the reference.
    assert_eq!(call(&rig, &auth, "GET", "/Users?count=1", None).await.0, 200);
    let said = ok(&rig.data, &["shadow", "start", "--tenant", "acme"]);
    assert!(said.contains("shadow mode started"), "{said}");
    let before = rig.live_bytes();
    let watcher = rusqlite::Connection::open(rig.live()).unwrap();
    let data_version = |c: &rusqlite::Connection| c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)).unwrap();
    let version_before = data_version(&watcher);
    let events_before = rig.live_count("SELECT count(*) FROM events");
    let (ok_start_again, out) = cli(&rig.data, &["shadow", "start", "--tenant", "acme"]);
    assert!(!ok_start_again && out.contains("already in shadow mode"), "{out}");
    let metrics_addr = rig.server.metrics_addr();
    let (_, metrics) = crate::metrics::scrape(metrics_addr, "/metrics").await;
    assert!(metrics.contains("scimd_tenant_shadow{tenant=\"acme\"} 1"), "{metrics}");
    let shown = ok(&rig.data, &["tenant", "show", "acme", "--json"]);
    assert!(serde_json::from_str::<Value>(&shown).unwrap()["shadow"]["started_at"].is_string(), "{shown}");

    let live_seq = rig.live_count("SELECT max(seq) FROM events");
    let ids = okta_cycle(&rig, &auth).await;
    // The application's feed is the live database's: the rehearsal's events are not in it.
    let (mut sender, _) = connect(rig.server.addr, &[&rig.ca]).await;
    let (status, feed) = try_send_as(&mut sender, &auth, "GET", &format!("/t/acme/events?after={live_seq}"), None).await.unwrap();
    assert_eq!((status, feed["events"].as_array().map(Vec::len)), (200, Some(0)), "{feed}");
    // Refusals are kept without their bodies: gina's POST carried Okta's password field.
    let refusals = std::fs::read_to_string(rig.data.join("tenants/acme/shadow/refusals.jsonl")).unwrap();
    assert!(refusals.contains("\"status\":400") && !refusals.contains("1mz050nq"), "{refusals}");

    // Nothing the application reads changed: the file, its WAL, data_version, the events.
    assert!(rig.live_bytes() == before, "the live database's files changed during the rehearsal");
    assert_eq!(data_version(&watcher), version_before);
    assert_eq!(rig.live_count("SELECT count(*) FROM events"), events_before);
    assert_eq!(rig.live_count("SELECT count(*) FROM users WHERE user_name = 'erin@example.com'"), 0);

    let report: Value = serde_json::from_str(&ok(&rig.data, &["shadow", "report", "--tenant", "acme", "--json"])).unwrap();
    let mut report = report;
    assert!(report["started_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    report["started_at"] = json!("-");
    let expected = json!({
        "tenant": "acme",
        "started_at": "-",
        "users": {
            "created": names(&["alice@example.com", "erin@example.com", "frank@example.com"]),
            // bob's adoption takes Okta's profile; erin's PUT changes her given name.
            "updated": {
                "displayName": names(&["bob@example.com"]),
                "externalId": names(&["bob@example.com"]),
                "locale": names(&["bob@example.com"]),
                "name.familyName": names(&["bob@example.com"]),
                "name.givenName": names(&["bob@example.com", "erin@example.com"]),
            },
            "deactivated": names(&["frank@example.com"]),
            "reactivated": names(&[]),
            "restored": names(&[]),
            "deleted": names(&[]),
            "adopted": names(&["bob@example.com"]),
            "renamed": [],
            // alice's username was no email: the IdP would make her twice.
            "duplicates": [{"created": "alice@example.com", "existing": "alice"}],
        },
        // The SCIM admin and dave hold both Creator seats; erin takes the one Creator Float;
        // an adopted user keeps the licence the application gave it (none, for bob).
        "licences": {
            "creator": names(&[]),
            "creator_float": names(&["erin@example.com"]),
            "no_seat_free": names(&["alice@example.com", "frank@example.com"]),
            "freed": names(&[]),
        },
        "groups": {
            "created": names(&["Contractors"]),
            "linked_by_name": [{"group": "Sales", "members_kept": names(&["bob@example.com", "carol@example.com", "dave@example.com"])}],
            "renamed": [],
            "deleted": names(&[]),
            "unlinked": names(&[]),
        },
        "memberships": {
            "added": {
                "Everyone": names(&["alice@example.com", "erin@example.com", "frank@example.com"]),
                "Sales": names(&["erin@example.com"]),
            },
            "removed": {},
            "inactive_basic_removed": {"Sales": names(&["carol@example.com"])},
        },
        "refused": [
            {"status": 400, "scimType": "invalidValue", "reason": "userName '…' must equal the user's email '…'", "requests": 1, "names": names(&["gina"])},
            {"status": 409, "scimType": "uniqueness", "reason": "displayName '…' is taken by a project-level group", "requests": 1, "names": names(&["Engineering"])},
        ],
        "policy_effects": [
            {"reason": "always_assign policy", "names": names(&["alice@example.com", "erin@example.com", "frank@example.com"])},
            {"reason": "matches never_assign policy ^(?:Contractors)$", "names": names(&["Contractors"])},
        ],
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report, expected);
    let text = ok(&rig.data, &["shadow", "report", "--tenant", "acme"]);
    println!("{text}");
    // The same report on the operator console's page for the tenant.
    use crate::console::{cookie_value, http, log_in, set_cookie, set_password, OPERATOR_PASSWORD};
    set_password(&rig.data, OPERATOR_PASSWORD);
    let console = log_in(metrics_addr, OPERATOR_PASSWORD).await;
    let session = format!("scimd_console={}", cookie_value(set_cookie(&console, "scimd_console").unwrap()));
    let tenant_page = http(metrics_addr, "GET", "/console/t/acme", &[("cookie", &session)], None).await;
    assert!(tenant_page.body.contains("/console/t/acme/shadow"), "{}", tenant_page.body);
    let page = http(metrics_addr, "GET", "/console/t/acme/shadow", &[("cookie", &session)], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("alice@example.com would duplicate alice") && page.body.contains("Sales keeps 3"), "{}", page.body);
    assert!(text.contains("adopted (local users the IdP takes over): 1: bob@example.com"), "{text}");

    // Promote while the IdP keeps sending: every request is answered, each 201 is live after.
    let data = rig.data.clone();
    let promote = tokio::task::spawn_blocking(move || cli(&data, &["shadow", "promote", "--tenant", "acme"]));
    let mut created = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        let name = format!("late{i}@example.com");
        let (status, body) = call(&rig, &auth, "POST", "/Users", Some(user(&name, &name))).await;
        assert_eq!(status, 201, "{body}");
        created.push(body["id"].as_str().unwrap().to_string());
        if promote.is_finished() || Instant::now() > deadline {
            break;
        }
    }
    let (promoted, out) = promote.await.unwrap();
    assert!(promoted && out.contains("is live"), "{out}");
    // The rehearsal is the live database now, and the IdP's ids keep working.
    assert_eq!(rig.live_count("SELECT count(*) FROM users WHERE user_name = 'erin@example.com'"), 1);
    for id in created.iter().chain([ids["erin@example.com"].as_str().unwrap().to_string()].iter()) {
        assert_eq!(rig.live_count(&format!("SELECT count(*) FROM users WHERE id = '{id}'")), 1, "{id} is not live");
        assert_eq!(call(&rig, &auth, "GET", &format!("/Users/{id}"), None).await.0, 200);
    }
    assert!(!rig.dir.path().join("data/tenants/acme/shadow").exists());
    let shown = ok(&rig.data, &["tenant", "show", "acme", "--json"]);
    assert!(serde_json::from_str::<Value>(&shown).unwrap()["shadow"].is_null(), "{shown}");

    // Okta's next cycle finds everything as it left it: nothing changes.
    let events = rig.live_count("SELECT count(*) FROM events");
    for name in ["bob@example.com", "erin@example.com", "alice@example.com"] {
        let lookup = format!("/Users?filter=userName%20eq%20%22{}%22&startIndex=1&count=100", name.replace('@', "%40"));
        let (status, body) = call(&rig, &auth, "GET", &lookup, None).await;
        assert_eq!((status, body["totalResults"].as_u64()), (200, Some(1)), "{name}");
    }
    let sales = ids["Sales"].as_str().unwrap();
    let add = fixture("entra/update_group_add_members.json", &[("user", ids["erin@example.com"].as_str().unwrap())]);
    let (status, body) = call(&rig, &auth, "PATCH", &format!("/Groups/{sales}"), Some(add)).await;
    assert!(status == 204 || status == 200, "{body}");
    assert_eq!(rig.live_count("SELECT count(*) FROM events"), events, "the cycle after promote changed something");
}

fn bearer_token(data: &Path) -> String {
    ok(data, &["token", "keygen", "--tenant", "acme"]);
    let out = ok(data, &["token", "issue", "--tenant", "acme", "--username", ADMIN]);
    format!("Bearer {}", out.split("apikey_").nth(1).map(|t| format!("apikey_{}", t.split_whitespace().next().unwrap())).unwrap())
}

/// Entra's first cycle as Microsoft documents it: look the user up, create it, find the
/// group by name, create it, add the member. Returns (user id, group id).
async fn entra_cycle(rig: &Rig, auth: &str) -> (String, String) {
    let (status, _) = call(rig, auth, "GET", "/Users?filter=userName+eq+%22erin%40example.com%22", None).await;
    assert_eq!(status, 200);
    let mut u = fixture("entra/create_user.json", &[]);
    u["userName"] = json!("erin@example.com");
    u["emails"][0]["value"] = json!("erin@example.com");
    let (status, body) = call(rig, auth, "POST", "/Users", Some(u)).await;
    assert_eq!(status, 201, "{body}");
    let user = body["id"].as_str().unwrap().to_string();
    let (status, _) = call(rig, auth, "GET", "/Groups?excludedAttributes=members&filter=displayName+eq+%22Sales%22", None).await;
    assert_eq!(status, 200);
    let mut g = fixture("entra/create_group.json", &[]);
    g["displayName"] = json!("Sales");
    let (status, body) = call(rig, auth, "POST", "/Groups", Some(g)).await;
    assert_eq!(status, 201, "{body}");
    let group = body["id"].as_str().unwrap().to_string();
    let add = fixture("entra/update_group_add_members.json", &[("user", &user)]);
    let (status, body) = call(rig, auth, "PATCH", &format!("/Groups/{group}"), Some(add)).await;
    assert!(status == 204 || status == 200, "{body}");
    (user, group)
}

#[tokio::test]
async fn an_entra_rehearsal_survives_a_restart_refuses_a_stale_promote_and_is_discarded() {
    let mut rig = Rig::start("shadow-entra").await;
    let token = bearer_token(&rig.data);
    let basic_auth = basic(ADMIN, PASSWORD);
    // Started with the server stopped: the command does it itself, and the server takes it
    // up when it starts.
    rig.server.child.kill().unwrap();
    rig.server.child.wait().unwrap();
    let said = ok(&rig.data, &["shadow", "start", "--tenant", "acme"]);
    assert!(said.contains("shadow mode started"), "{said}");
    let certs = rig.dir.path().join("certs");
    rig.server = ServeBinary::start(&rig.data, &certs.join("server.pem"), &certs.join("server.key"), rig.dir.path(), "scimd=info").await;
    let before = rig.live_bytes();

    let (user, group) = entra_cycle(&rig, &token).await;
    assert!(rig.live_bytes() == before, "the live database's files changed during the rehearsal");
    let report: Value = serde_json::from_str(&ok(&rig.data, &["shadow", "report", "--tenant", "acme", "--json"])).unwrap();
    assert_eq!(report["users"]["created"], names(&["erin@example.com"]));
    assert_eq!(report["groups"]["linked_by_name"][0]["group"], "Sales");
    assert_eq!(report["memberships"]["added"], json!({"Everyone": names(&["erin@example.com"]), "Sales": names(&["erin@example.com"])}));
    assert_eq!(report["memberships"]["inactive_basic_removed"], json!({"Sales": names(&["carol@example.com"])}));

    // The live database changes (a local user): promote is refused, the rehearsal goes on.
    ok(&rig.data, &["user", "add", "--local", "--tenant", "acme", "--username", "hal@example.com", "--email", "hal@example.com"]);
    let (promoted, out) = cli(&rig.data, &["shadow", "promote", "--tenant", "acme"]);
    assert!(!promoted && out.contains("live database changed since the rehearsal started"), "{out}");
    assert_eq!(call(&rig, &token, "GET", &format!("/Users/{user}"), None).await.0, 200, "the rehearsal still answers");
    assert_eq!(rig.live_count("SELECT count(*) FROM users WHERE user_name = 'erin@example.com'"), 0);

    // Credentials are the live tenant's: a token revoked there stops working at once, in
    // the rehearsal too.
    ok(&rig.data, &["token", "revoke", "--tenant", "acme", "--username", ADMIN]);
    assert_eq!(call(&rig, &token, "GET", &format!("/Users/{user}"), None).await.0, 401);

    let said = ok(&rig.data, &["shadow", "discard", "--tenant", "acme"]);
    assert!(said.contains("discarded"), "{said}");
    // Live again: the rehearsal's user is gone; Sales (the link kept the application's id)
    // has its members as before, carol included; the local user is there.
    assert_eq!(call(&rig, &basic_auth, "GET", &format!("/Users/{user}"), None).await.0, 404);
    let (status, body) = call(&rig, &basic_auth, "GET", &format!("/Groups/{group}"), None).await;
    assert_eq!((status, body["members"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    let members = rig.live_count(&format!(
        "SELECT count(*) FROM memberships m JOIN groups g ON g.pk = m.group_pk JOIN users u ON u.pk = m.user_pk
         WHERE g.id = '{group}' AND u.user_name IN ('bob@example.com', 'carol@example.com', 'dave@example.com')"
    ));
    assert_eq!(members, 3);
    let (status, body) = call(&rig, &basic_auth, "GET", "/Users?filter=userName+eq+%22hal%40example.com%22", None).await;
    assert_eq!((status, body["totalResults"].as_u64()), (200, Some(1)));
    for action in ["promote", "discard"] {
        let (done, out) = cli(&rig.data, &["shadow", action, "--tenant", "acme"]);
        assert!(!done && out.contains("not in shadow mode"), "{action}: {out}");
    }
    let (done, out) = cli(&rig.data, &["shadow", "start", "--tenant", "nosuch"]);
    assert!(!done && out.contains("nosuch"), "{out}");
    let (discarded, out) = cli(&rig.data, &["shadow", "report", "--tenant", "acme"]);
    assert!(!discarded && out.contains("not in shadow mode"), "{out}");
    // A rehearsal whose copy is lost keeps the tenant shut (never live, never an empty copy
    // to promote); discard, with the server stopped, is the way out.
    ok(&rig.data, &["shadow", "start", "--tenant", "acme"]);
    std::fs::remove_file(rig.data.join("tenants/acme/shadow/shadow.db")).unwrap();
    rig.server.child.kill().unwrap();
    rig.server.child.wait().unwrap();
    let (promoted, out) = cli(&rig.data, &["shadow", "promote", "--tenant", "acme"]);
    assert!(!promoted && out.contains("missing"), "{out}");
    let said = ok(&rig.data, &["shadow", "discard", "--tenant", "acme"]);
    assert!(said.contains("discarded"), "{said}");
    let (discarded, out) = cli(&rig.data, &["shadow", "report", "--tenant", "acme"]);
    assert!(!discarded && out.contains("not in shadow mode"), "{out}");
    assert!(!rig.data.join("tenants/acme/shadow").exists());

    // With the server stopped, the command switches by itself: start, then promote.
    rig.server.child.kill().unwrap();
    rig.server.child.wait().unwrap();
    ok(&rig.data, &["shadow", "start", "--tenant", "acme"]);
    let said = ok(&rig.data, &["shadow", "promote", "--tenant", "acme"]);
    assert!(said.contains("is live"), "{said}");
    assert!(!rig.data.join("tenants/acme/shadow").exists());
}
