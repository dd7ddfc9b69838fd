//! Credentials that authenticated a SCIM request, remembered with the tenant's auth
//! counter they were verified under (`store::auth_check`): the next request with the same
//! `Authorization` header skips reading the account and token again and has its own reads
//! check the counter instead. Keyed by an HMAC (per-process random key) of the open store
//! and the header, so neither a password nor a token is kept, and a tenant deleted and
//! made again, or reopened, starts with nothing remembered.

use std::collections::HashMap;
use std::sync::Mutex;

use ring::hmac;
use ring::rand::SystemRandom;

use crate::scim::Principal;

/// Entries kept at most; past it the memory starts over (each entry costs one slow check).
const LIMIT: usize = 10_000;

#[derive(Clone)]
struct Entry {
    principal: Principal,
    epoch: i64,
    /// A bearer token's expiry, Unix seconds.
    expires: Option<i64>,
}

pub struct Verified {
    key: hmac::Key,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Default for Verified {
    fn default() -> Self {
        Verified { key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("random key"), entries: Mutex::new(HashMap::new()) }
    }
}

impl Verified {
    /// The entry's key. The header is taken as the parser reads it (scheme in any case, any
    /// spaces before the credential), so one credential is one entry however it is spaced:
    /// a caller cannot fill the table with one valid credential written many ways.
    fn tag(&self, store: u64, header: &str) -> [u8; 32] {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&store.to_be_bytes());
        ctx.update(scheme.to_ascii_lowercase().as_bytes());
        ctx.update(b" ");
        ctx.update(rest.trim().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The principal and counter `header` was verified with on `store`, unless a bearer
    /// token it carries has expired by `now_secs`.
    pub fn find(&self, store: u64, header: &str, now_secs: i64) -> Option<(Principal, i64)> {
        let tag = self.tag(store, header);
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&tag)?;
        if entry.expires.is_some_and(|exp| now_secs >= exp) {
            return None;
        }
        Some((entry.principal.clone(), entry.epoch))
    }

    pub fn remember(&self, store: u64, header: &str, principal: &Principal, epoch: i64, expires: Option<i64>) {
        let tag = self.tag(store, header);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= LIMIT {
                entries.clear();
            }
            entries.insert(tag, Entry { principal: principal.clone(), epoch, expires });
        }
    }

    pub fn forget(&self, store: u64, header: &str) {
        let tag = self.tag(store, header);
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::Credential;

    #[test]
    fn one_credential_is_one_entry_however_it_is_written() {
        let v = Verified::default();
        let p = Principal { user_id: "u".into(), user_name: "admin".into(), via: Credential::Bearer };
        v.remember(1, "Bearer apikey_x", &p, 7, None);
        for header in ["bearer apikey_x", "BEARER    apikey_x", " Bearer apikey_x  "] {
            assert_eq!(v.find(1, header, 0).map(|(_, e)| e), Some(7), "{header:?}");
        }
        assert!(v.find(2, "Bearer apikey_x", 0).is_none(), "another open of the store");
        assert!(v.find(1, "Bearer apikey_y", 0).is_none());
        v.remember(1, "bearer   apikey_x", &p, 8, Some(100));
        assert_eq!(v.entries.lock().unwrap().len(), 1);
        assert!(v.find(1, "Bearer apikey_x", 100).is_none(), "expired");
    }
}
