//! Issue 23: mapping rules (`[mapping]` in tenant.toml) applied to what Okta and Entra
//! send, through the real server: the stored values, the filters that find them, the
//! events that say which rule changed what, and `scimd check` naming a rule that does
//! nothing.

use serde_json::json;

use crate::support::{scimd_cli, TestServer};

const OKTA: &str = r#"
[mapping]
trim = ["*"]
lowercase = ["userName", "emails.value"]
display_name_from_name = true
"#;

const ENTRA: &str = r#"
[mapping]
[[mapping.copy]]
from = "userName"
to = "emails.value"
[[mapping.copy]]
from = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"
to = "externalId"
"#;

#[tokio::test]
async fn okta_values_trimmed_lower_cased_and_named() {
    let s = TestServer::start_with_settings(OKTA, |_| {}).await;
    // Okta's create, as its documentation shows it (with an admin's stray space).
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "Ann.Lee@Corp.COM ",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"primary": true, "value": "Ann.Lee@Corp.COM", "type": "work"}],
        "active": true
    });
    let created = s.post("/Users", body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["userName"], "ann.lee@corp.com");
    assert_eq!(created.body["emails"][0]["value"], "ann.lee@corp.com");
    assert_eq!(created.body["displayName"], "Ann Lee");
    let id = created.body["id"].as_str().unwrap().to_string();
    // Okta looks users up by userName as it has it: the stored one matches (case-insensitive).
    let found = s.get("/Users?filter=userName%20eq%20%22Ann.Lee%40Corp.COM%22").await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    // A PATCH gets the same rules.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"userName": "ANN@CORP.COM", "emails": [{"value": "ANN@CORP.COM", "primary": true}]}}]});
    let patched = s.patch(&format!("/Users/{id}"), patch).await;
    assert_eq!((patched.status.as_u16(), patched.body["userName"].clone()), (200, json!("ann@corp.com")), "{}", patched.body);
    // The events say which rule changed what.
    let (ok, log) = scimd_cli(&s, &["log", "--tenant", "acme", "--json"]);
    assert!(ok, "{log}");
    assert!(log.contains(r#""mapped":["trim *","lowercase userName","lowercase emails.value","displayName from name"]"#), "{log}");
    // A PUT gets them too.
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": " ANN@Corp.com", "name": {"givenName": "Ann", "familyName": "Lee"}, "emails": [{"value": "ANN@CORP.COM ", "primary": true}], "active": true});
    let put = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!((put.status.as_u16(), put.body["userName"].clone(), put.body["emails"][0]["value"].clone()), (200, json!("ann@corp.com"), json!("ann@corp.com")), "{}", put.body);
    assert!(log.contains(r#""mapped":["lowercase userName","lowercase emails.value"]"#), "{log}");
}

#[tokio::test]
async fn entra_email_from_the_upn_and_external_id_from_the_employee_number() {
    // userName = email is required (the default); Entra sends a user with no mail.
    let s = TestServer::start_with_settings(ENTRA, |_| {}).await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "",
        "userName": "bo@contoso.com",
        "active": true,
        "displayName": "Bo",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701"}
    });
    let created = s.post("/Users", body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["emails"], json!([{"value": "bo@contoso.com", "primary": true}]));
    assert_eq!(created.body["externalId"], "701");
}

// Multi-threaded: `scimd check` asks this (in-process) server through its command socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_that_names_nothing_is_reported() {
    let s = TestServer::start_with_settings("require_username_is_email = false\n[mapping]\nlowercase = [\"userName\", \"nickname.value\"]\n", |_| {}).await;
    let (ok, out) = scimd_cli(&s, &["check"]);
    assert!(!ok && out.contains(r#"tenant acme: mapping: "nickname.value" names no user attribute"#), "{out}");
    // The rules that resolve still apply.
    assert_eq!(s.post("/Users", json!({"userName": "MiXeD"})).await.body["userName"], "mixed");
}
