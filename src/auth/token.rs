//! Bearer tokens for Entra: `apikey_<payload>.<signature>`, where the payload is base64url
//! JSON (tenant, account id, token id, issued-at, expiry) and the signature is RS256 over
//! the payload text with the tenant's private key (ring).
//!
//! A token is valid only if its signature verifies with the tenant's *current* key, it
//! names this tenant, it has not expired, its token id is the account's current one in the
//! database, and the account is still an active org admin. The RSA check is cached for a
//! few minutes keyed by the token's SHA-256 and the key's fingerprint; everything else is
//! checked on every request, so revocation and key deletion take effect at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::tenant::keys::{KeyError, SigningKey};
use crate::clock::UtcMillis;
use crate::store::events::{self, Action};
use crate::store::{auth_check, new_resource_id, tenant_files, tokens, StoreError};
use crate::tenant::Tenant;

pub const PREFIX: &str = "apikey_";
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant id.
    pub ten: String,
    /// Account (user) id.
    pub sub: String,
    /// Token id: valid only while it is the account's current one.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

pub fn mint(claims: &Claims, key: &SigningKey) -> Result<String, KeyError> {
    // Claims of strings and integers always encode; were it ever not so, nothing is signed.
    let payload = B64.encode(serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?);
    let sig = key.sign(payload.as_bytes())?;
    Ok(format!("{PREFIX}{payload}.{}", B64.encode(sig)))
}

/// Checks the signature and decodes the claims; `None` for anything malformed or forged.
pub fn verify_signature(token: &str, key: &SigningKey) -> Option<Claims> {
    let body = token.strip_prefix(PREFIX)?;
    let (payload, sig) = body.split_once('.')?;
    let sig = B64.decode(sig).ok()?;
    if !key.verify(payload.as_bytes(), &sig) {
        return None;
    }
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_LIMIT: usize = 10_000;

/// Recently verified signatures, so a busy IdP does not cost an RSA operation per request.
#[derive(Default)]
pub struct TokenCache {
    verified: Mutex<HashMap<[u8; 32], (Claims, String, Instant)>>,
}

impl TokenCache {
    fn key(token: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        out
    }

    /// Verified claims for `token` under the key with `fingerprint`.
    pub fn verify(&self, token: &str, key: &SigningKey) -> Option<Claims> {
        let k = Self::key(token);
        if let Ok(map) = self.verified.lock() {
            if let Some((claims, fp, at)) = map.get(&k) {
                if *fp == key.fingerprint && at.elapsed() < CACHE_TTL {
                    return Some(claims.clone());
                }
            }
        }
        let claims = verify_signature(token, key)?;
        if let Ok(mut map) = self.verified.lock() {
            if map.len() >= CACHE_LIMIT {
                map.retain(|_, (_, _, at)| at.elapsed() < CACHE_TTL);
                if map.len() >= CACHE_LIMIT {
                    map.clear();
                }
            }
            map.insert(k, (claims.clone(), key.fingerprint.clone(), Instant::now()));
        }
        Some(claims)
    }
}

/// Why a token operation could not be done.
#[derive(Debug)]
pub enum TokenError {
    /// The tenant has no signing key yet.
    NoKey,
    /// The account already has a live token and the caller did not ask to revoke it.
    LiveTokenExists { expires_at: String },
    NoLiveToken,
    UnknownAccount(String),
    /// The signing key could not be used, made or removed.
    Key(KeyError),
    Store(StoreError),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Store(e)
    }
}

pub struct IssuedToken {
    pub token: String,
    pub expires_at: String,
}

/// Issues a token for an account, revoking its current one if `revoke_existing`.
pub async fn issue(tenant: &Tenant, actor: &str, user_id: &str, revoke_existing: bool, now: UtcMillis) -> Result<IssuedToken, TokenError> {
    let key = tenant.keys.signing().map_err(TokenError::Key)?.ok_or(TokenError::NoKey)?;
    let expires = UtcMillis(now.0 + i64::from(tenant.settings().token_lifetime_days) * DAY_MS);
    let claims = Claims {
        ten: tenant.id.to_string(),
        sub: user_id.to_string(),
        jti: new_resource_id(),
        iat: now.0 / 1000,
        exp: expires.0 / 1000,
    };
    let (uid, jti, issued, until) = (user_id.to_string(), claims.jti.clone(), now.to_rfc3339(), expires.to_rfc3339());
    let actor = actor.to_string();
    tenant
        .store
        .try_write(move |conn| {
            if crate::store::users::find_account_by_id(conn, &uid)?.is_none() {
                return Err(TokenError::UnknownAccount(uid));
            }
            if let Some(live) = tokens::live_for(conn, &uid, &issued)? {
                if !revoke_existing {
                    return Err(TokenError::LiveTokenExists { expires_at: live.expires_at });
                }
            }
            let replaced = tokens::revoke_for(conn, &uid, &issued)?;
            tokens::insert(conn, &jti, &uid, &issued, &until)?;
            let detail = serde_json::json!({"account": uid, "tokenId": jti, "expiresAt": until, "replacedLiveToken": replaced > 0});
            events::record(conn, &issued, &actor, Action::Create, "Token", &jti, &detail)?;
            Ok(())
        })
        .await?;
    let token = mint(&claims, &key).map_err(TokenError::Key)?;
    log::info!(target: "scimd::token", "tenant {}: issued token {} for account {user_id}, expires {}", tenant.id, claims.jti, expires.to_rfc3339());
    Ok(IssuedToken { token, expires_at: expires.to_rfc3339() })
}

/// Revokes an account's live token.
pub async fn revoke(tenant: &Tenant, actor: &str, user_id: &str, now: UtcMillis) -> Result<(), TokenError> {
    let (uid, at, actor) = (user_id.to_string(), now.to_rfc3339(), actor.to_string());
    let n = tenant
        .store
        .write(move |conn| {
            let n = tokens::revoke_for(conn, &uid, &at)?;
            if n > 0 {
                events::record(conn, &at, &actor, Action::Delete, "Token", &uid, &serde_json::json!({"account": uid, "revoked": n}))?;
            }
            Ok(n)
        })
        .await?;
    if n == 0 {
        return Err(TokenError::NoLiveToken);
    }
    log::info!(target: "scimd::token", "tenant {}: revoked the token of account {user_id}", tenant.id);
    Ok(())
}

/// Generates a new signing key (invalidating every token) and returns its fingerprint.
pub async fn keygen(tenant: std::sync::Arc<Tenant>, actor: &str, now: UtcMillis) -> Result<String, TokenError> {
    // Tokens verified before stop here, before the files change (`store::auth_check`).
    tenant.store.write(|conn| auth_check::bump(conn)).await?;
    let blocking = |e: tokio::task::JoinError| TokenError::Key(KeyError::Generate(e.to_string()));
    let (private, public) = tokio::task::spawn_blocking(crate::tenant::keys::new_pair).await.map_err(blocking)?.map_err(TokenError::Key)?;
    let fingerprint = crate::tenant::keys::fingerprint_of(&private).map_err(TokenError::Key)?;
    // The database first: the new copy and every token revoked in one transaction, then the
    // files. Stopped in between, the old files stay the key (the next open copies them back)
    // and no token works; the other order could leave the old copy with live tokens, which
    // would verify them again once the files failed.
    let copies = vec![(crate::tenant::keys::PRIVATE_COPY, Some(private.clone())), (crate::tenant::keys::PUBLIC_COPY, Some(public.clone()))];
    let (at, actor, fp) = (now.to_rfc3339(), actor.to_string(), fingerprint.clone());
    tenant
        .store
        .write(move |conn| {
            // The database's copy of the key, which replication carries to a standby.
            tenant_files::sync(conn, &copies, &at)?;
            let revoked = tokens::revoke_all(conn, &at)?;
            events::record(conn, &at, &actor, Action::Create, "Key", &fp, &serde_json::json!({"fingerprint": fp, "tokensRevoked": revoked}))
        })
        .await?;
    let t = std::sync::Arc::clone(&tenant);
    tokio::task::spawn_blocking(move || t.keys.install(&private, &public)).await.map_err(blocking)?.map_err(TokenError::Key)?;
    Ok(fingerprint)
}

/// Deletes the signing key; every token is rejected from now on. Returns whether one existed.
pub async fn delete_key(tenant: &Tenant, actor: &str, now: UtcMillis) -> Result<bool, TokenError> {
    let fingerprint = tenant.keys.current().map(|k| k.fingerprint.clone()).unwrap_or_default();
    let existed = tenant.keys.exists();
    // Tokens verified before stop here, before the files change (`store::auth_check`).
    tenant.store.write(|conn| auth_check::bump(conn)).await?;
    // The database first: its copy gone and every token revoked in one transaction, then the
    // files. Stopped in between, the key is still there and no token works; the other order
    // left the copy and the tokens live, and the next open wrote the files back from it.
    let (at, actor) = (now.to_rfc3339(), actor.to_string());
    let gone = [(crate::tenant::keys::PRIVATE_COPY, None), (crate::tenant::keys::PUBLIC_COPY, None)];
    tenant
        .store
        .write(move |conn| {
            tenant_files::sync(conn, &gone, &at)?;
            let revoked = tokens::revoke_all(conn, &at)?;
            if existed {
                events::record(conn, &at, &actor, Action::Delete, "Key", &fingerprint, &serde_json::json!({"fingerprint": fingerprint, "tokensRevoked": revoked}))?;
            }
            Ok(())
        })
        .await?;
    tenant.keys.delete().map_err(TokenError::Key)?;
    Ok(existed)
}

/// Live tokens, soonest expiry first.
pub async fn live(tenant: &Tenant, now: UtcMillis) -> Result<Vec<tokens::TokenRecord>, TokenError> {
    let at = now.to_rfc3339();
    Ok(tenant.store.read(move |conn| tokens::live(conn, &at)).await?)
}

/// Whole days from `now` until an RFC 3339 time (negative once past).
pub fn days_left(expires_at: &str, now: UtcMillis) -> i64 {
    UtcMillis::parse_rfc3339(expires_at).map(|e| (e.0 - now.0).div_euclid(DAY_MS)).unwrap_or(0)
}

/// Live tokens within the tenant's warning window, as human-readable reasons.
pub async fn expiring(tenant: &Tenant, now: UtcMillis) -> Result<Vec<(tokens::TokenRecord, i64)>, TokenError> {
    let warn = i64::from(tenant.settings().token_warn_days);
    Ok(live(tenant, now).await?.into_iter().map(|t| {
        let d = days_left(&t.expires_at, now);
        (t, d)
    }).filter(|(_, d)| *d < warn).collect())
}

/// What the operator's health detail says of a token inside its warning window.
pub fn expiry_reason(t: &tokens::TokenRecord, days: i64) -> String {
    format!("the bearer token of {} expires in {days} days ({}); rotate it", t.user_name, t.expires_at)
}

/// Tokens inside their tenant's warning window as of the last expiry check, per tenant:
/// what the operator's health endpoint reports without opening any tenant.
#[derive(Default)]
pub struct ExpiryBoard {
    reasons: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
}

impl ExpiryBoard {
    /// (tenant, reasons) for every tenant with a token close to expiry.
    pub fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        self.reasons.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }
    fn set(&self, all: std::collections::BTreeMap<String, Vec<String>>) {
        if let Ok(mut m) = self.reasons.lock() {
            *m = all;
        }
    }
}

/// The tenants whose tokens the daily check must read: the open ones, and those the
/// catalogue shows with a live token inside their warning window. The others are not
/// opened, so the check costs what the expiring tenants cost, not what all of them do.
async fn to_check(tenants: &crate::tenant::TenantRegistry, now: UtcMillis) -> Vec<crate::tenant::TenantId> {
    let open = tenants.open_tenants();
    let mut ids: Vec<crate::tenant::TenantId> = open.iter().map(|t| t.id.clone()).collect();
    let now_text = now.to_rfc3339();
    for (id, summary) in crate::scim::activity::closed_tenants(tenants, &open).await {
        let Some(id) = crate::tenant::TenantId::parse(&id) else { continue };
        let live: Vec<_> = summary.tokens.iter().filter(|t| t.expires_at > now_text).collect();
        if live.is_empty() {
            continue;
        }
        let warn = crate::tenant::TenantSettings::load(&tenants.data().settings_file(&id)).map_or_else(|_| crate::tenant::TenantSettings::default().token_warn_days, |s| s.token_warn_days);
        if live.iter().any(|t| days_left(&t.expires_at, now) < i64::from(warn)) {
            ids.push(id);
        }
    }
    ids
}

/// Logs a WARN once a day for every token inside its tenant's warning window, so a token
/// cannot expire silently (Entra quarantines the app when it does), and posts the list on
/// `board`.
pub async fn warn_expiring(tenants: &crate::tenant::TenantRegistry, board: &ExpiryBoard, now: UtcMillis) {
    let today = now.to_rfc3339()[..10].to_string();
    let mut all = std::collections::BTreeMap::new();
    for id in to_check(tenants, now).await {
        let Ok(Some(tenant)) = tenants.get(&id).await else { continue };
        let Ok(expiring) = expiring(&tenant, now).await else { continue };
        let reasons: Vec<String> = expiring
            .iter()
            .map(|(t, days)| expiry_reason(t, *days))
            .collect();
        if !reasons.is_empty() {
            all.insert(id.to_string(), reasons);
        }
        for (t, days) in expiring {
            if t.last_warned.as_deref() == Some(today.as_str()) {
                continue;
            }
            log::warn!(
                target: "scimd::token",
                "tenant {id}: the bearer token of {} expires in {days} days ({}); rotate it (GET /t/{id}/rest/token?revokeExistingToken=true or `scimd token rotate`) and update the IdP",
                t.user_name,
                t.expires_at
            );
            let (jti, day) = (t.token_id.clone(), today.clone());
            let _ = tenant.store.write(move |conn| tokens::mark_warned(conn, &jti, &day)).await;
        }
    }
    board.set(all);
}
