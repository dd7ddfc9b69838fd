//! PATCH bodies: parsed, then applied to a full user and a group in memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimd::scim::resource::decode;
use scimd::scim::schema::ResourceKind;

fn user() -> serde_json::Value {
    serde_json::json!({
        "userName": "bjensen@example.com", "name": {"givenName": "B", "familyName": "J"},
        "emails": [{"value": "b@x.com", "type": "work", "primary": true}, {"value": "h@x.com", "type": "home"}],
        "phoneNumbers": [{"value": "555", "type": "work"}], "addresses": [{"type": "work", "locality": "X"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "1", "manager": {"value": "m"}}
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(ops) = scimd::scim::patch::parse(&body) else { return };
    for (kind, doc) in [(ResourceKind::User, user()), (ResourceKind::Group, serde_json::json!({"displayName": "G"}))] {
        let mut attrs = decode(kind, &doc).expect("the base documents are valid");
        for op in &ops {
            if scimd::scim::patch::apply(kind, &mut attrs, op).is_err() {
                break;
            }
        }
        let _ = scimd::scim::resource::check_required(kind, &attrs);
    }
});
