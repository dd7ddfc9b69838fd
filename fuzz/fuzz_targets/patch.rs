//! PATCH bodies: parsed, then applied to a full user and a group in memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimd::scim::resource::decode;
use scimd::scim::schema::{custom, Catalogue, ResourceKind};

fn user() -> serde_json::Value {
    serde_json::json!({
        "userName": "bjensen@example.com", "name": {"givenName": "B", "familyName": "J"},
        "emails": [{"value": "b@x.com", "type": "work", "primary": true}, {"value": "h@x.com", "type": "home"}],
        "phoneNumbers": [{"value": "555", "type": "work"}], "addresses": [{"type": "work", "locality": "X"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "1", "manager": {"value": "m"}},
        "urn:ietf:params:scim:schemas:extension:acme:2.0:User": {"badge": "b1", "clearance": 3, "skills": ["rust", "sql"]}
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(ops) = scimd::scim::patch::parse(&body) else { return };
    let cats = [(Catalogue::plain(ResourceKind::User), user()), (custom::example(), user()), (Catalogue::plain(ResourceKind::Group), serde_json::json!({"displayName": "G"}))];
    for (cat, doc) in cats {
        let mut attrs = decode(cat, &doc).expect("the base documents are valid");
        for op in &ops {
            if scimd::scim::patch::apply(cat, &mut attrs, op).is_err() {
                break;
            }
        }
        let _ = scimd::scim::resource::check_required(cat.kind, &attrs);
        let _ = scimd::scim::resource::check_custom_required(cat, &attrs, None);
    }
});
