//! Password hashing: salted PBKDF2-HMAC-SHA256 (ring), stored as
//! `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` so the cost can rise over time
//! without invalidating existing hashes.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};

/// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// The floor a configuration may set (tests use it); production keeps the default.
pub const MIN_ITERATIONS: u32 = 1_000;

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
const PREFIX: &str = "pbkdf2-sha256";

pub fn hash_password(password: &str, iterations: u32) -> String {
    let iterations = iterations.max(MIN_ITERATIONS);
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).expect("operating system random number generator failed");
    let mut out = [0u8; digest::SHA256_OUTPUT_LEN];
    let n = NonZeroU32::new(iterations).expect("iterations is at least MIN_ITERATIONS");
    pbkdf2::derive(ALGORITHM, n, &salt, password.as_bytes(), &mut out);
    format!("{PREFIX}${iterations}${}${}", B64.encode(salt), B64.encode(out))
}

/// Constant-time verification (ring's `pbkdf2::verify`). A malformed stored hash fails.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(PREFIX), Some(iter), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (iter.parse::<u32>(), B64.decode(salt), B64.decode(hash)) else {
        return false;
    };
    let Some(n) = NonZeroU32::new(iterations) else { return false };
    pbkdf2::verify(ALGORITHM, n, &salt, password.as_bytes(), &hash).is_ok()
}

/// A stored-hash string that no password matches, at `iterations`: random salt and random
/// "hash". Verifying against it costs exactly what verifying a real hash of that cost does,
/// without deriving anything up front (start-up stays fast at 600,000 iterations).
pub fn unmatchable_hash(iterations: u32) -> String {
    let iterations = iterations.max(MIN_ITERATIONS);
    let mut bytes = [0u8; 16 + digest::SHA256_OUTPUT_LEN];
    SystemRandom::new().fill(&mut bytes).expect("operating system random number generator failed");
    format!("{PREFIX}${iterations}${}${}", B64.encode(&bytes[..16]), B64.encode(&bytes[16..]))
}

/// A random password for generated accounts: 24 bytes, URL-safe base64 (32 characters).
pub fn generate_password() -> String {
    let mut bytes = [0u8; 24];
    SystemRandom::new().fill(&mut bytes).expect("operating system random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse", MIN_ITERATIONS);
        assert!(h.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "pbkdf2-sha256$1000$bad"));
        assert!(!verify_password("x", ""));
        assert_ne!(h, hash_password("correct horse", MIN_ITERATIONS), "salted");
        let dummy = unmatchable_hash(2000);
        assert!(dummy.starts_with("pbkdf2-sha256$2000$"));
        assert!(!verify_password("", &dummy) && !verify_password("correct horse", &dummy));
    }
}
