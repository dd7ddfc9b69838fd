//! Authentication of API callers. Today: HTTP Basic with a SCIM admin service account
//! (an active user with the `org_admin` role and a password).
//!
//! Running PBKDF2 on every request would cap an IdP's throughput at a few requests per
//! second, so successful checks are remembered in memory, keyed by an HMAC (with a
//! per-process random key) of tenant, user name, password *and the stored hash*: the
//! plaintext is never kept, and changing the password changes the stored hash, which
//! invalidates the entry. Whether the account is still active and an admin is read from
//! the database on every request.

pub mod password;

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine;
use log::{debug, warn};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::scim::Principal;
use crate::store::{users, Store};

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials, or not of a scheme we accept.
    Missing,
    /// Wrong user name or password, or a disabled account.
    Invalid,
    /// A valid account that may not use this API; the message says why.
    Forbidden(String),
    /// The account lookup itself failed.
    Internal(String),
}

const CACHE_LIMIT: usize = 10_000;

pub struct CredentialCache {
    key: hmac::Key,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("random key"),
            verified: Mutex::new(HashSet::new()),
        }
    }
}

impl CredentialCache {
    fn tag(&self, tenant: &str, user: &str, password: &str, stored_hash: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [tenant, user, password, stored_hash] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn contains(&self, tag: &[u8; 32]) -> bool {
        self.verified.lock().map(|s| s.contains(tag)).unwrap_or(false)
    }

    fn insert(&self, tag: [u8; 32]) {
        if let Ok(mut s) = self.verified.lock() {
            if s.len() >= CACHE_LIMIT {
                s.clear();
            }
            s.insert(tag);
        }
    }
}

/// Decodes `Authorization: Basic …` into (user, password).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Authenticates a request to a tenant's API from its `Authorization` header.
pub async fn authenticate(
    tenant: &str,
    store: &Store,
    cache: &CredentialCache,
    authorization: Option<&str>,
) -> Result<Principal, AuthError> {
    let (user, pass) = authorization.and_then(parse_basic).ok_or(AuthError::Missing)?;
    let lookup = user.clone();
    let account = store
        .read(move |conn| users::find_account(conn, &lookup))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    let Some(account) = account else {
        debug!(target: "scimd::auth", "tenant {tenant}: unknown account");
        return Err(AuthError::Invalid);
    };
    let Some(stored) = account.password_hash.clone() else {
        debug!(target: "scimd::auth", "tenant {tenant}: account {} has no password", account.user_name);
        return Err(AuthError::Invalid);
    };
    let tag = cache.tag(tenant, &account.user_name, &pass, &stored);
    if !cache.contains(&tag) {
        let ok = tokio::task::spawn_blocking(move || password::verify_password(&pass, &stored))
            .await
            .unwrap_or(false);
        if !ok {
            warn!(target: "scimd::auth", "tenant {tenant}: wrong password for {}", account.user_name);
            return Err(AuthError::Invalid);
        }
        cache.insert(tag);
    }
    if !account.active {
        warn!(target: "scimd::auth", "tenant {tenant}: account {} is deactivated", account.user_name);
        return Err(AuthError::Invalid);
    }
    if account.role != "org_admin" {
        return Err(AuthError::Forbidden(format!(
            "account {} is not an org admin; only SCIM admin service accounts may use this API",
            account.user_name
        )));
    }
    Ok(Principal { user_id: account.id, user_name: account.user_name })
}
