//! Resource bodies: decoded as a User (with and without custom attributes) and as a Group, and rendered back with projections.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimd::scim::resource::{decode, render, Projection, StoredResource};
use scimd::scim::schema::{custom, Catalogue, ResourceKind};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for cat in [Catalogue::plain(ResourceKind::User), custom::example(), Catalogue::plain(ResourceKind::Group)] {
        if let Ok(attrs) = decode(cat, &body) {
            let stored = StoredResource { id: "id".into(), attrs, created: "c".into(), last_modified: "m".into(), version: 1 };
            let attributes = body.get("attributes").and_then(|a| a.as_str());
            let excluded = body.get("excludedAttributes").and_then(|a| a.as_str());
            let _ = render(cat, &stored, "https://h/t/x/scim/v2", &Projection::parse(cat, attributes, excluded));
        }
    }
});
