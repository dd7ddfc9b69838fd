//! The filter parser, its resolution against the catalogue and the SQL compiler: no input may panic or recurse without bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimd::scim::schema::{custom, Catalogue, ResourceKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = scimd::scim::filter::parse(text) {
        for cat in [Catalogue::plain(ResourceKind::User), custom::example(), Catalogue::plain(ResourceKind::Group)] {
            let Ok(predicate) = scimd::scim::query::resolve(cat, &expr) else { continue };
            if let Ok(sql) = scimd::store::filter_sql::compile(cat.kind, &predicate) {
                // Values are bound, never spliced: the clause holds no input text.
                assert!(sql.params.len() <= scimd::scim::filter::MAX_CLAUSES * 2);
            }
        }
    }
});
