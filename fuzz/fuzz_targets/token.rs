//! Bearer tokens: parsing and RS256 verification. No input may panic, and none may pass
//! verification: that would be a forgery.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scimd::tenant::keys::{KeyState, SigningKey};

fn key() -> &'static std::sync::Arc<SigningKey> {
    static KEY: OnceLock<std::sync::Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("scimd-fuzz-key-{}", std::process::id()));
        let keys = KeyState::new(dir.join("k.pem"), dir.join("p.pem"), dir.clone());
        keys.generate().expect("a key");
        keys.current().expect("the key loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for candidate in [text.to_string(), format!("apikey_{text}")] {
        assert!(scimd::auth::token::verify_signature(&candidate, key()).is_none(), "a forged token verified: {candidate:?}");
    }
});
