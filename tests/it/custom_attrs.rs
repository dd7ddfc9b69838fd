//! Issue 23: custom extension attributes declared in tenant.toml, through the real server
//! with Entra's and Okta's literal custom-attribute requests: advertised in /Schemas and
//! /ResourceTypes, validated, stored, returned, projected, filtered, sorted, unique,
//! patched in every form, in the events and `user show --json`; added and removed by a
//! reload with no downtime, the removed values kept until `tenant drop-attributes`.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::support::{basic, scimd_cli, Client, ServeBinary, TempDir, TestServer, ADMIN, PASSWORD};

const ENTRA_URN: &str = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User";
const OKTA_URN: &str = "urn:ietf:params:scim:schemas:extension:custom:2.0:User";

const SETTINGS: &str = r#"
require_username_is_email = false

# Entra: the attribute name is the URN and the attribute, as its mapping editor requires.
[[extension]]
urn = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
[[extension.attributes]]
name = "CustomAttribute"
uniqueness = "server"
[[extension.attributes]]
name = "clearance"
type = "integer"
[[extension.attributes]]
name = "contractor"
type = "boolean"
[[extension.attributes]]
name = "startDate"
type = "dateTime"
[[extension.attributes]]
name = "department_ids"
multi_valued = true

# Okta: the attribute's "External namespace" and "External name".
[[extension]]
urn = "urn:ietf:params:scim:schemas:extension:custom:2.0:User"
[[extension.attributes]]
name = "custom_attr_1"
case_exact = true
"#;

fn filter(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn found(s: &TestServer, f: &str) -> Vec<String> {
    let r = s.get(&format!("/Users?filter={}", filter(f))).await;
    assert_eq!(r.status, 200, "{f}: {}", r.body);
    r.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn entra_and_okta_custom_attributes_round_trip() {
    let s = TestServer::start_with_settings(SETTINGS, |_| {}).await;
    // Advertised: the schema with each attribute's characteristics, and the resource type.
    let schema = s.get(&format!("/Schemas/{ENTRA_URN}")).await;
    assert_eq!(schema.status, 200, "{}", schema.body);
    let attr = |name: &str| schema.body["attributes"].as_array().unwrap().iter().find(|a| a["name"] == name).cloned().unwrap();
    assert_eq!((attr("CustomAttribute")["type"].clone(), attr("CustomAttribute")["uniqueness"].clone()), (json!("string"), json!("server")));
    assert_eq!((attr("clearance")["type"].clone(), attr("startDate")["type"].clone()), (json!("integer"), json!("dateTime")));
    assert_eq!(attr("department_ids")["multiValued"], true);
    let types = s.get("/ResourceTypes/User").await;
    let extensions: Vec<Value> = types.body["schemaExtensions"].as_array().unwrap().iter().map(|e| e["schema"].clone()).collect();
    assert!(extensions.contains(&json!(ENTRA_URN)) && extensions.contains(&json!(OKTA_URN)), "{}", types.body);
    let all = s.get("/Schemas").await;
    assert!(all.body["Resources"].as_array().unwrap().iter().any(|r| r["id"] == OKTA_URN));
    // The other tenant's settings are the same file here; a group has no custom schema.
    assert!(s.get("/ResourceTypes/Group").await.body["schemaExtensions"].as_array().unwrap().is_empty());

    // Entra's create as Microsoft documents it: the extension's URN absent from `schemas`,
    // its values strings ("701984"), the boolean as Entra's "True".
    let entra = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": "bjensen", "externalId": "bjensen", "active": true,
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"},
        ENTRA_URN: {"CustomAttribute": "701984", "clearance": "3", "contractor": "True", "startDate": "2024-02-01T09:00:00+01:00"}
    });
    let created = s.post("/Users", entra).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.body[ENTRA_URN],
        json!({"CustomAttribute": "701984", "clearance": 3, "contractor": true, "startDate": "2024-02-01T08:00:00.000Z"})
    );
    assert!(created.body["schemas"].as_array().unwrap().contains(&json!(ENTRA_URN)));

    // Entra's PATCH, both shapes: a path naming URN:attribute (Add for a first value, a
    // multi-valued attribute's values as [{"value": …}]), and no path with flattened keys.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Add", "path": format!("{ENTRA_URN}:department_ids"), "value": [{"value": "1"}, {"value": "7"}]},
        {"op": "Replace", "path": format!("{ENTRA_URN}:contractor"), "value": "False"},
        {"op": "replace", "value": {format!("{ENTRA_URN}:clearance"): "4", "displayName": "Babs"}}
    ]});
    let patched = s.patch(&format!("/Users/{id}"), patch).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body[ENTRA_URN]["department_ids"], json!(["1", "7"]));
    assert_eq!((patched.body[ENTRA_URN]["contractor"].clone(), patched.body[ENTRA_URN]["clearance"].clone()), (json!(false), json!(4)));
    // Remove one value, then the attribute.
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "remove", "path": format!("{ENTRA_URN}:startDate")}
    ]});
    let removed = s.patch(&format!("/Users/{id}"), remove).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(removed.body[ENTRA_URN].get("startDate").is_none(), "{}", removed.body);

    // Okta's create and profile push: the full user by POST, then PUT, the custom
    // attribute under the app's external namespace.
    let okta = |value: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", OKTA_URN],
            "userName": "ann@example.com", "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"primary": true, "value": "ann@example.com", "type": "work"}], "active": true,
            OKTA_URN: {"custom_attr_1": value},
            ENTRA_URN: {"clearance": 9, "department_ids": ["7", "9"], "CustomAttribute": "ann-1"}
        })
    };
    let ann = s.post("/Users", okta("Blue")).await;
    assert_eq!(ann.status, 201, "{}", ann.body);
    let ann_id = ann.body["id"].as_str().unwrap().to_string();
    let put = s.put(&format!("/Users/{ann_id}"), okta("Green")).await;
    assert_eq!((put.status.as_u16(), put.body[OKTA_URN]["custom_attr_1"].clone()), (200, json!("Green")), "{}", put.body);

    // Filters on each type, and sorting.
    assert_eq!(found(&s, &format!(r#"{ENTRA_URN}:CustomAttribute eq "701984""#)).await, ["bjensen"]);
    // Case-insensitive unless case_exact.
    assert_eq!(found(&s, &format!(r#"{ENTRA_URN}:customattribute eq "ANN-1""#)).await, ["ann@example.com"]);
    assert_eq!(found(&s, &format!(r#"{OKTA_URN}:custom_attr_1 eq "green""#)).await, [] as [&str; 0]);
    assert_eq!(found(&s, &format!(r#"{OKTA_URN}:custom_attr_1 sw "Gr""#)).await, ["ann@example.com"]);
    assert_eq!(found(&s, &format!("{ENTRA_URN}:clearance gt 4")).await, ["ann@example.com"]);
    assert_eq!(found(&s, &format!("{ENTRA_URN}:clearance le 4")).await, ["bjensen"]);
    assert_eq!(found(&s, &format!("{ENTRA_URN}:contractor eq false")).await, ["bjensen"]);
    assert_eq!(found(&s, &format!(r#"{ENTRA_URN}:department_ids eq "7""#)).await, ["bjensen", "ann@example.com"]);
    assert_eq!(found(&s, &format!(r#"{ENTRA_URN}:department_ids eq "9""#)).await, ["ann@example.com"]);
    assert_eq!(found(&s, &format!("{ENTRA_URN}:startDate pr")).await, [] as [&str; 0]);
    let sorted = s.get(&format!("/Users?sortBy={}&sortOrder=descending", filter(&format!("{ENTRA_URN}:clearance")))).await;
    let order: Vec<&str> = sorted.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect();
    assert_eq!(order, ["ann@example.com", "bjensen"], "{}", sorted.body);
    // Projection: only what was asked for, by full path.
    let projected = s.get(&format!("/Users/{ann_id}?attributes={}", filter(&format!("{ENTRA_URN}:clearance")))).await;
    assert_eq!(projected.body[ENTRA_URN], json!({"clearance": 9}), "{}", projected.body);
    assert!(projected.body.get("userName").is_none() && projected.body.get(OKTA_URN).is_none(), "{}", projected.body);
    let excluded = s.get(&format!("/Users/{ann_id}?excludedAttributes={}", filter(&format!("{ENTRA_URN}:clearance")))).await;
    assert!(excluded.body[ENTRA_URN].get("clearance").is_none() && excluded.body[ENTRA_URN]["CustomAttribute"] == "ann-1", "{}", excluded.body);

    // A dateTime compares as a time whatever offset the filter uses; a multi-valued
    // attribute sorts by its first value; PATCH with the extension URN as the path; one
    // value removed from a multi-valued attribute.
    let dated = s.patch(&format!("/Users/{ann_id}"), json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "add", "path": ENTRA_URN, "value": {"startDate": "2025-06-01T12:00:00Z"}}
    ]})).await;
    assert_eq!(dated.body[ENTRA_URN]["startDate"], "2025-06-01T12:00:00.000Z", "{}", dated.body);
    assert_eq!(found(&s, &format!(r#"{ENTRA_URN}:startDate gt "2025-06-01T13:59:59+02:00""#)).await, ["ann@example.com"]);
    assert_eq!(found(&s, &format!(r#"{ENTRA_URN}:startDate gt "2025-06-01T14:00:00+02:00""#)).await, [] as [&str; 0]);
    let by_first = s.get(&format!("/Users?sortBy={}", filter(&format!("{ENTRA_URN}:department_ids")))).await;
    let order: Vec<&str> = by_first.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect();
    assert_eq!(order, ["bjensen", "ann@example.com"], "\"1\" sorts before \"7\": {}", by_first.body);
    let one_less = s.patch(&format!("/Users/{ann_id}"), json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "remove", "path": format!(r#"{ENTRA_URN}:department_ids[value eq "9"]"#)}
    ]})).await;
    assert_eq!(one_less.status, 200, "{}", one_less.body);
    assert_eq!(one_less.body[ENTRA_URN]["department_ids"], json!(["7"]), "{}", one_less.body);

    // Bad values: a clear SCIM error and nothing stored changed.
    let version = |r: &crate::support::Response| r.body["meta"]["version"].clone();
    let before = s.get(&format!("/Users/{id}")).await;
    let bad_patch = |attr: &str, value: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": format!("{ENTRA_URN}:{attr}"), "value": value}]});
    for (attr, value) in [("clearance", json!("three")), ("clearance", json!(1.5)), ("startDate", json!("yesterday")), ("contractor", json!("maybe")), ("department_ids", json!([{"value": {"x": 1}}]))] {
        s.patch(&format!("/Users/{id}"), bad_patch(attr, value.clone())).await.assert_error(400, Some("invalidValue"));
    }
    // Unique: a second user with the same value (in another case) is refused, naming it.
    let mut dup = okta("Red");
    dup["userName"] = json!("dup@example.com");
    dup[ENTRA_URN] = json!({"CustomAttribute": "ANN-1"});
    let refused = s.post("/Users", dup.clone()).await;
    refused.assert_error(409, Some("uniqueness"));
    assert!(refused.body["detail"].as_str().unwrap().contains("CustomAttribute"), "{}", refused.body);
    let taken = s.patch(&format!("/Users/{id}"), bad_patch("CustomAttribute", json!("ann-1"))).await;
    taken.assert_error(409, Some("uniqueness"));
    assert_eq!(version(&s.get(&format!("/Users/{id}")).await), version(&before));
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name = 'dup@example.com'"), 0);
    // A user deleted (soft) keeps its unique value only while deleted: another may take
    // it, and the deleted one is restored by its IdP's POST with a new value (same id).
    let mut gone = okta("Gone");
    gone["userName"] = json!("gone@example.com");
    gone[ENTRA_URN] = json!({"CustomAttribute": "R-1"});
    let gone_id = s.post("/Users", gone.clone()).await.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/Users/{gone_id}")).await.status, 204);
    let mut taker = okta("Taker");
    taker["userName"] = json!("taker@example.com");
    taker[ENTRA_URN] = json!({"CustomAttribute": "R-1"});
    assert_eq!(s.post("/Users", taker).await.status, 201);
    gone[ENTRA_URN] = json!({"CustomAttribute": "R-2"});
    let back = s.post("/Users", gone).await;
    assert_eq!((back.status.as_u16(), back.body["id"].as_str(), back.body[ENTRA_URN]["CustomAttribute"].as_str()), (201, Some(gone_id.as_str()), Some("R-2")), "{}", back.body);

    // Filters that cannot hold for a type.
    for f in [format!(r#"{ENTRA_URN}:clearance eq "x""#), format!("{ENTRA_URN}:clearance co 3"), format!(r#"{ENTRA_URN}:startDate gt "soon""#), format!("{ENTRA_URN}:nosuch pr")] {
        let r = s.get(&format!("/Users?filter={}", filter(&f))).await;
        r.assert_error(400, Some("invalidFilter"));
    }

    // The activity log has the values; `user show --json` exports them.
    let (ok, log) = scimd_cli(&s, &["log", "--tenant", "acme", "--json"]);
    assert!(ok, "{log}");
    assert!(log.contains(r#""CustomAttribute":"701984""#) && log.contains(r#""custom_attr_1":"Green""#), "{log}");
    let (ok, shown) = scimd_cli(&s, &["user", "show", "--tenant", "acme", "--username", "ann@example.com", "--json"]);
    assert!(ok, "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["attributes"][OKTA_URN]["custom_attr_1"], "Green", "{shown}");
}

/// The strict dialect refuses Entra's shapes for custom values, naming the setting.
#[tokio::test]
async fn strict_dialect_refuses_string_integers_and_value_objects() {
    let s = TestServer::start_with_settings(&format!("dialect = \"strict\"\n{SETTINGS}"), |_| {}).await;
    let user = |custom: Value| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTRA_URN], "userName": "x", ENTRA_URN: custom});
    for custom in [json!({"clearance": "3"}), json!({"department_ids": [{"value": "1"}]})] {
        let r = s.post("/Users", user(custom)).await;
        r.assert_error(400, Some("invalidValue"));
        assert!(r.body["detail"].as_str().unwrap().contains("dialect = \"idp\" accepts it"), "{}", r.body);
    }
    assert_eq!(s.post("/Users", user(json!({"clearance": 3, "department_ids": ["1"]}))).await.status, 201);
}

/// A mapping rule may fill a required custom attribute: the requirement is checked after
/// the rules, on a POST as on a PATCH.
#[tokio::test]
async fn mapping_rules_may_fill_a_required_custom_attribute() {
    let settings = format!(
        "require_username_is_email = false\n[mapping]\n[[mapping.copy]]\nfrom = \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter\"\nto = \"{OKTA_URN}:custom_attr_1\"\n[[extension]]\nurn = \"{OKTA_URN}\"\n[[extension.attributes]]\nname = \"custom_attr_1\"\nrequired = true\n"
    );
    let s = TestServer::start_with_settings(&settings, |_| {}).await;
    let user = |enterprise: Value| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "m", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": enterprise});
    s.post("/Users", user(json!({}))).await.assert_error(400, Some("invalidValue"));
    let made = s.post("/Users", user(json!({"costCenter": "4130"}))).await;
    assert_eq!((made.status.as_u16(), made.body[OKTA_URN]["custom_attr_1"].clone()), (201, json!("4130")), "{}", made.body);
}

fn settings_with(attrs: &str) -> String {
    format!("require_username_is_email = false\n[[extension]]\nurn = \"{OKTA_URN}\"\n{attrs}")
}

const BADGE: &str = "[[extension.attributes]]\nname = \"badge\"\n";
const LEVEL: &str = "[[extension.attributes]]\nname = \"level\"\ntype = \"integer\"\nrequired = true\n";

/// Adding and removing attributes is a tenant.toml edit and a SIGHUP, with no request
/// failing meanwhile; a removed attribute's values are kept (not returned) until
/// `scimd tenant drop-attributes --apply`; a unique declaration the data breaks is refused.
#[tokio::test]
async fn reload_adds_and_removes_attributes_without_downtime() {
    let dir = TempDir::new("ext");
    let data = scimd::tenant::DataDir::new(dir.path().join("data"));
    let id = scimd::tenant::TenantId::parse("acme").unwrap();
    data.create_tenant(&id).unwrap();
    std::fs::write(data.settings_file(&id), settings_with(BADGE)).unwrap();
    let store = scimd::store::Store::open(&data.database(&id)).unwrap();
    scimd::commands::add_admin(&store, ADMIN, PASSWORD, 1000).await.unwrap();
    store.close();
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info").await;
    let c = Client::new(server.addr, &certs.ca_cert);
    let auth = basic(ADMIN, PASSWORD);
    let call = move |method: Method, path: String, body: Option<Value>| {
        let (c, auth) = (c.clone(), auth.clone());
        async move {
            let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
            c.raw(method, &format!("/t/acme/scim/v2{path}"), &[("authorization", &auth), ("content-type", "application/scim+json")], bytes).await
        }
    };
    let user = |name: &str, custom: Value| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, OKTA_URN: custom});
    let created = call(Method::POST, "/Users".into(), Some(user("a", json!({"badge": "B-1"})))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let a = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(call(Method::POST, "/Users".into(), Some(user("b", json!({"badge": "B-1"})))).await.status, 201);

    // Requests run throughout every reload below; none may fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, call, a) = (stop.clone(), call.clone(), a.clone());
        tokio::spawn(async move {
            let mut n = 0;
            let rename = |n: i32| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "displayName", "value": format!("A {n}")}]});
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = call(Method::GET, format!("/Users/{a}"), None).await;
                assert_eq!(r.status, 200, "a GET during a reload: {}", r.body);
                let r = call(Method::GET, "/Users?filter=userName%20sw%20%22a%22&count=5".into(), None).await;
                assert_eq!(r.status, 200, "a list during a reload: {}", r.body);
                let r = call(Method::PATCH, format!("/Users/{a}"), Some(rename(n))).await;
                assert_eq!(r.status, 200, "a PATCH during a reload: {}", r.body);
                n += 1;
            }
            n
        })
    };
    let reload = |text: String| {
        std::fs::write(data.settings_file(&id), text).unwrap();
        server.signal("HUP");
    };
    let until = |what: &'static str, path: String, test: fn(&Value) -> bool| {
        let call = call.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let r = call(Method::GET, path.clone(), None).await;
                if test(&r.body) {
                    return r.body;
                }
                assert!(Instant::now() < deadline, "{what}: {}", r.body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Unique on values two users share: refused, the previous settings stay.
    reload(settings_with(&format!("{BADGE}uniqueness = \"server\"\n")));
    server.wait_for_log("cannot be unique: 2 users share a value").await;
    assert_eq!(call(Method::POST, "/Users".into(), Some(user("c", json!({"badge": "B-1"})))).await.status, 201);

    // Replace badge by a required integer: /Schemas shows it; badge is no longer returned.
    reload(settings_with(LEVEL));
    until("level advertised", format!("/Schemas/{OKTA_URN}"), |b| b["attributes"][0]["name"] == "level").await;
    let got = call(Method::GET, format!("/Users/{a}"), None).await;
    assert!(got.body.get(OKTA_URN).is_none(), "{}", got.body);
    // Required from now on for a POST or PUT; a PATCH of a user stored before is not refused.
    call(Method::POST, "/Users".into(), Some(user("d", json!({})))).await.assert_error(400, Some("invalidValue"));
    let deactivate = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]});
    assert_eq!(call(Method::PATCH, format!("/Users/{a}"), Some(deactivate)).await.status, 200);
    // A PUT cannot name badge any more; its stored value is kept.
    let put = call(Method::PUT, format!("/Users/{a}"), Some(user("a", json!({"level": 2})))).await;
    assert_eq!((put.status.as_u16(), put.body[OKTA_URN].clone()), (200, json!({"level": 2})), "{}", put.body);

    // Both declared again: badge's values come back.
    reload(settings_with(&format!("{BADGE}{LEVEL}")));
    let back = until("badge back", format!("/Users/{a}"), |b| b[OKTA_URN]["badge"] == "B-1").await;
    assert_eq!(back[OKTA_URN]["level"], 2);

    // Removed again, then dropped by the command: listed first, removed with --apply.
    reload(settings_with(LEVEL));
    until("badge gone", format!("/Schemas/{OKTA_URN}"), |b| b["attributes"].as_array().is_some_and(|a| a.len() == 1)).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimd")).args(args).arg("--data-dir").arg(data.root()).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, listed) = cli(&["tenant", "drop-attributes", "acme"]);
    assert!(ok && listed.contains(&format!("{OKTA_URN}:badge")) && listed.contains("3 user(s)"), "{listed}");
    let (ok, applied) = cli(&["tenant", "drop-attributes", "acme", "--apply"]);
    assert!(ok && applied.contains("removed those values from 3 user(s)"), "{applied}");
    let (ok, log) = cli(&["log", "--tenant", "acme", "--json"]);
    assert!(ok && log.matches(&format!(r#""dropped":["{OKTA_URN}:badge"]"#)).count() == 3, "{log}");
    reload(settings_with(&format!("{BADGE}{LEVEL}")));
    until("badge declared", format!("/Schemas/{OKTA_URN}"), |b| b["attributes"].as_array().is_some_and(|a| a.len() == 2)).await;
    let after = call(Method::GET, format!("/Users/{a}"), None).await;
    assert_eq!(after.body[OKTA_URN], json!({"level": 2}), "{}", after.body);
    let (_, again) = cli(&["tenant", "drop-attributes", "acme"]);
    assert!(again.contains("no user holds"), "{again}");

    // The extension left with no attributes: Okta's `schemas` naming it is still accepted.
    reload(format!("require_username_is_email = false\n[[extension]]\nurn = \"{OKTA_URN}\"\n"));
    until("no attributes", format!("/Schemas/{OKTA_URN}"), |b| b["attributes"].as_array().is_some_and(|a| a.is_empty())).await;
    let named = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", OKTA_URN], "userName": "e", OKTA_URN: {"badge": "x"}});
    let accepted = call(Method::POST, "/Users".into(), Some(named)).await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let unknown = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:gone:2.0:User"], "userName": "f"});
    call(Method::POST, "/Users".into(), Some(unknown)).await.assert_error(400, Some("invalidValue"));

    // A declaration whose type changes: values of the old type are kept, not returned,
    // not matched by an ordering filter, and listed by drop-attributes.
    reload(settings_with(&format!("{BADGE}[[extension.attributes]]\nname = \"level\"\n")));
    until("level is a string", format!("/Schemas/{OKTA_URN}"), |b| b["attributes"][1]["type"] == "string").await;
    let typed = call(Method::GET, format!("/Users/{a}"), None).await;
    assert!(typed.body.get(OKTA_URN).is_none(), "{}", typed.body);
    let (_, listed) = cli(&["tenant", "drop-attributes", "acme"]);
    assert!(listed.contains(&format!("{OKTA_URN}:level")), "{listed}");
    reload(settings_with(&format!("{BADGE}{LEVEL}")));
    until("level back", format!("/Users/{a}"), |b| b[OKTA_URN]["level"] == 2).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(reads > 10, "the reader ran {reads} times");
}

/// A `scimd` command opens the tenant beside a running server: an edited but unreloaded
/// tenant.toml does not change the server's unique indexes through it, either way.
#[tokio::test]
async fn a_command_does_not_apply_unreloaded_unique_declarations() {
    let s = TestServer::start_with_settings(&settings_with(&format!("{BADGE}uniqueness = \"server\"\n")), |_| {}).await;
    let user = |name: &str, badge: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, OKTA_URN: {"badge": badge}});
    assert_eq!(s.post("/Users", user("a", "B-1")).await.status, 201);
    let settings = s.data().settings_file(&scimd::tenant::TenantId::parse("acme").unwrap());
    let indexes = || s.count("acme", "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'users_x_%'");
    assert_eq!(indexes(), 1);

    // The uniqueness removed from the file, not reloaded: the server still enforces it.
    std::fs::write(&settings, settings_with(BADGE)).unwrap();
    let (ok, listed) = scimd_cli(&s, &["user", "list", "--tenant", "acme"]);
    assert!(ok, "{listed}");
    assert_eq!(indexes(), 1, "the command dropped the server's index");
    s.post("/Users", user("b", "B-1")).await.assert_error(409, Some("uniqueness"));

    // The reverse: the server without the uniqueness, the file declaring it on values two
    // users share. The command still opens the tenant, and makes no index.
    let s = TestServer::start_with_settings(&settings_with(BADGE), |_| {}).await;
    let settings = s.data().settings_file(&scimd::tenant::TenantId::parse("acme").unwrap());
    let indexes = || s.count("acme", "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'users_x_%'");
    for name in ["a", "b"] {
        assert_eq!(s.post("/Users", user(name, "B-1")).await.status, 201);
    }
    std::fs::write(&settings, settings_with(&format!("{BADGE}uniqueness = \"server\"\n"))).unwrap();
    let (ok, shown) = scimd_cli(&s, &["user", "show", "--tenant", "acme", "--username", "b", "--json"]);
    assert!(ok, "{shown}");
    assert_eq!(indexes(), 0, "the command made an index the server does not have");
    assert_eq!(s.post("/Users", user("c", "B-1")).await.status, 201);
}
