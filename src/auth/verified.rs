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
    fn tag(&self, store: u64, header: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&store.to_be_bytes());
        ctx.update(header.as_bytes());
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
