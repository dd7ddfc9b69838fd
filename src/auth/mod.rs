//! Authentication of API callers: HTTP Basic with a SCIM admin service account (an active
//! user with the `org_admin` role and a password), HTTP Basic with an API client (token API
//! only), or a bearer token `apikey_…` (SCIM API only; see `token.rs`).
//!
//! Running PBKDF2 on every request would cap an IdP's throughput at a few requests per
//! second, so successful checks are remembered in memory, keyed by an HMAC (with a
//! per-process random key) of tenant, user name, password *and the stored hash*: the
//! plaintext is never kept, and changing the password changes the stored hash, which
//! invalidates the entry. Whether the account is still active and an admin is read from
//! the database on every request that is verified here; a SCIM GET whose credentials a
//! request verified before reads only the auth counter instead, in the transaction of its
//! answer (`verified.rs`, `store::auth_check`), which moves with any such change.
//!
//! Credentials not yet verified are checked once however many requests bring them at the
//! same time (an IdP's 32 connections after a restart): the others wait for that check
//! instead of each running its own (`CredentialCache::verify_once`).

pub mod password;
pub mod throttle;
pub mod token;
pub mod verified;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use log::{debug, warn};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::clock::UtcMillis;
use crate::model::{License, Role};
use crate::scim::{Credential, Principal};
use crate::store::{auth_check, tokens, users};
use crate::tenant::Tenant;

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials, or not of a scheme this API accepts (the message says which).
    Missing(&'static str),
    /// Wrong user name or password, a forged or unknown token, or a disabled account.
    Invalid,
    /// A token past its expiry.
    Expired,
    /// A token that is no longer the account's current one.
    Revoked,
    /// A valid account that may not use this API; the message says why.
    Forbidden(String),
    /// Too many failures from this client for this account (or at all): retry after N s.
    Throttled(u64),
    /// The account lookup itself failed.
    Internal(String),
    /// The tenant's storage or signing key cannot be used now (the operator's fault).
    Unavailable(crate::model::Fault),
}

impl AuthError {
    /// A failed read of what authentication needs: the operator's fault when it is one.
    fn of_store(e: crate::store::StoreError) -> AuthError {
        match e.fault() {
            Some(fault) => AuthError::Unavailable(fault),
            None => AuthError::Internal(e.to_string()),
        }
    }
}

/// Which API is being called: they accept different credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// SCIM endpoints: Basic (admin account) or Bearer `apikey_…`.
    Scim,
    /// The token API: Basic with an admin account or an API client, never a bearer token.
    TokenApi,
}

/// Caches that spare the KDF and RSA work on the hot path, the throttle, and the hash
/// that unknown accounts are checked against.
pub struct AuthState {
    pub credentials: CredentialCache,
    pub tokens: token::TokenCache,
    /// SCIM credentials verified before, with the auth counter they were verified under.
    pub verified: verified::Verified,
    pub throttle: throttle::Throttle,
    /// Tokens near expiry, from the last periodic check.
    pub expiry: token::ExpiryBoard,
    /// A hash no password matches, at the configured KDF cost. A name with no account
    /// (or no password) is verified against it, so a wrong name costs as long as a wrong
    /// password and the timing does not tell which accounts exist.
    dummy_hash: String,
    /// PBKDF2 runs since start (`scimd_password_checks_total`): what logins cost the CPU.
    password_checks: AtomicU64,
}

impl AuthState {
    pub fn new(kdf_iterations: u32) -> AuthState {
        AuthState {
            credentials: CredentialCache::default(),
            tokens: token::TokenCache::default(),
            verified: verified::Verified::default(),
            throttle: throttle::Throttle::default(),
            expiry: token::ExpiryBoard::default(),
            dummy_hash: password::unmatchable_hash(kdf_iterations),
            password_checks: AtomicU64::new(0),
        }
    }

    /// How many password checks (PBKDF2 runs) this process has made.
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// PBKDF2 off the async runtime.
    pub async fn verify_slowly(&self, pass: String, stored: String) -> bool {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || password::verify_password(&pass, &stored)).await.unwrap_or(false)
    }
}

/// API client ids carry this prefix, so they cannot be mistaken for account names.
pub const CLIENT_PREFIX: &str = "apiclient_";

const CACHE_LIMIT: usize = 10_000;

pub struct CredentialCache {
    key: hmac::Key,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Checks in progress, by tag: at most one PBKDF2 run per credential at a time.
    flights: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<Flight>>>>,
}

/// The outcome of one password check that other requests may have waited for.
#[derive(Clone, Copy)]
struct Flight {
    ok: bool,
    took: Duration,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).expect("random key"),
            verified: Mutex::new(HashSet::new()),
            flights: Mutex::new(HashMap::new()),
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

    /// Whether `pass` matches `stored`, running PBKDF2 once for every request that brings
    /// the same credentials while it runs (the tag covers tenant, name, password and hash).
    ///
    /// A request that waited for another's check gains nothing from it that a guess could
    /// use: a failed check is run again by each waiter on its own (a wrong password costs
    /// every request one full check, as before), and a waiter answers no earlier than one
    /// check's duration after it arrived, so a second request with a guess cannot tell
    /// from its timing that the first one's check succeeded (a non-admin's password).
    async fn verify_once(&self, auth: &AuthState, tag: [u8; 32], pass: String, stored: String) -> bool {
        let arrived = Instant::now();
        let flight = self.flights.lock().map(|mut m| Arc::clone(m.entry(tag).or_default())).ok();
        let Some(flight) = flight else { return auth.verify_slowly(pass, stored).await };
        let ran = AtomicBool::new(false);
        let outcome = *flight
            .get_or_init(|| {
                ran.store(true, Ordering::Relaxed);
                let (pass, stored) = (pass.clone(), stored.clone());
                async move {
                    let started = Instant::now();
                    let ok = auth.verify_slowly(pass, stored).await;
                    Flight { ok, took: started.elapsed() }
                }
            })
            .await;
        if let Ok(mut m) = self.flights.lock() {
            if m.get(&tag).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                m.remove(&tag);
            }
        }
        if ran.load(Ordering::Relaxed) {
            return outcome.ok;
        }
        if !outcome.ok {
            return auth.verify_slowly(pass, stored).await;
        }
        tokio::time::sleep_until((arrived + outcome.took).into()).await;
        true
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

const BEARER_ON_TOKEN_API: &str = "the token API takes HTTP Basic credentials, not a bearer token";

/// Authenticates a request to a tenant's API from its `Authorization` header.
pub async fn authenticate(
    tenant: &Tenant,
    auth: &AuthState,
    api: Api,
    authorization: Option<&str>,
    peer: std::net::IpAddr,
    now: UtcMillis,
) -> Result<Principal, AuthError> {
    let header = authorization.map(str::trim).unwrap_or_default();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let tenant_id = tenant.id.as_str();
    if scheme.eq_ignore_ascii_case("bearer") {
        if api == Api::TokenApi {
            return Err(AuthError::Missing(BEARER_ON_TOKEN_API));
        }
        let (principal, epoch, expires) = authenticate_bearer(tenant, auth, rest.trim(), peer, now).await?;
        auth.verified.remember(tenant.store.instance(), header, &principal, epoch, Some(expires));
        return Ok(principal);
    }
    let (user, pass) = parse_basic(header).ok_or(AuthError::Missing("authentication required"))?;
    let keys = [throttle::Key::account(tenant_id, &user, peer), throttle::Key::Address(peer)];
    throttled(auth, &keys, tenant_id, &user, peer)?;
    let result = check_basic(tenant, auth, api, &user, pass).await;
    match &result {
        Ok(_) => auth.throttle.succeed(&keys[0]),
        Err(AuthError::Invalid) => auth.throttle.fail(&keys),
        Err(_) => {}
    }
    let (principal, epoch) = result?;
    if api == Api::Scim {
        auth.verified.remember(tenant.store.instance(), header, &principal, epoch, None);
    }
    Ok(principal)
}

/// A SCIM request's credentials as a request verified them before (`verified.rs`), with
/// the auth counter its reads must still find (`store::auth_check`). `None` sends the
/// request the slow way: nothing remembered, a bearer token expired since, or a Basic
/// caller whose address or account is throttled (refused there, as always).
pub fn remembered(tenant: &Tenant, auth: &AuthState, authorization: Option<&str>, peer: std::net::IpAddr, now: UtcMillis) -> Option<(Principal, i64)> {
    let header = authorization.map(str::trim)?;
    let found = auth.verified.find(tenant.store.instance(), header, now.0 / 1000)?;
    if let Some((user, _)) = parse_basic(header) {
        let keys = [throttle::Key::account(tenant.id.as_str(), &user, peer), throttle::Key::Address(peer)];
        if auth.throttle.check(&keys).is_err() {
            return None;
        }
    }
    Some(found)
}

/// Drops what `remembered` would find for this header (its counter moved).
pub fn forget(tenant: &Tenant, auth: &AuthState, authorization: Option<&str>) {
    if let Some(header) = authorization.map(str::trim) {
        auth.verified.forget(tenant.store.instance(), header);
    }
}

/// `Err(Throttled)` while any of `keys` is blocked.
fn throttled(auth: &AuthState, keys: &[throttle::Key], tenant_id: &str, who: &str, peer: std::net::IpAddr) -> Result<(), AuthError> {
    auth.throttle.check(keys).map_err(|wait| {
        if let Some(skipped) = auth.throttle.log_gate() {
            let more = if skipped > 0 { format!(" ({skipped} more throttled requests not logged)") } else { String::new() };
            warn!(target: "scimd::auth", "tenant {tenant_id}: throttled {} from {peer} for {}s{more}", loggable(who), wait.as_secs() + 1);
        }
        AuthError::Throttled(wait.as_secs() + 1)
    })
}

/// A request for a tenant that does not exist is answered as one for a tenant that does
/// with the same credentials would be when they are wrong: 401 (or 429 once throttled),
/// after as long a password check, so tenant ids cannot be enumerated.
pub async fn refuse_unknown_tenant(auth: &AuthState, api: Api, authorization: Option<&str>, peer: std::net::IpAddr) -> AuthError {
    let header = authorization.map(str::trim).unwrap_or_default();
    let (scheme, _) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        if api == Api::TokenApi {
            return AuthError::Missing(BEARER_ON_TOKEN_API);
        }
        // No key can verify it: a forgery, counted (and answered) as for a known tenant.
        let keys = [throttle::Key::Forgeries(peer)];
        if let Err(e) = throttled(auth, &keys, "-", "forged bearer tokens", peer) {
            return e;
        }
        auth.throttle.fail(&keys);
        return AuthError::Invalid;
    }
    let Some((user, pass)) = parse_basic(header) else { return AuthError::Missing("authentication required") };
    let keys = [throttle::Key::account("-", &user, peer), throttle::Key::Address(peer)];
    if let Err(e) = throttled(auth, &keys, "-", &user, peer) {
        return e;
    }
    auth.verify_slowly(pass, auth.dummy_hash.clone()).await;
    auth.throttle.fail(&keys);
    AuthError::Invalid
}

/// The Basic-auth part of `authenticate`, after the throttle. Every way of failing costs
/// one password check, and every failure before the account's role is known answers the
/// same 401, so neither the answer nor its timing says whether a name exists or whether
/// a non-admin's password was right.
async fn check_basic(tenant: &Tenant, auth: &AuthState, api: Api, user: &str, pass: String) -> Result<(Principal, i64), AuthError> {
    let tenant_id = tenant.id.as_str();
    let user = user.to_string();
    let lookup = user.clone();
    let is_client = user.starts_with(CLIENT_PREFIX);
    // The auth counter is read in the same transaction as the account, so a credential
    // remembered under it was right as of that counter (`store::auth_check`).
    let (found, epoch) = tenant
        .store
        .read(move |conn| {
            let epoch = auth_check::auth_epoch(conn)?;
            let found = if is_client {
                match tokens::find_client(conn, &lookup)? {
                    Some((hash, user_id)) => users::find_account_by_id(conn, &user_id)?.map(|acc| (acc, Some(hash))),
                    None => None,
                }
            } else {
                users::find_account(conn, &lookup)?.map(|acc| {
                    let hash = acc.password_hash.clone();
                    (acc, hash)
                })
            };
            Ok((found, epoch))
        })
        .await
        .map_err(AuthError::of_store)?;
    let (account, stored) = match found {
        Some((account, Some(stored))) => (account, stored),
        Some((account, None)) => {
            debug!(target: "scimd::auth", "tenant {tenant_id}: account {} has no password", account.user_name);
            auth.verify_slowly(pass, auth.dummy_hash.clone()).await;
            return Err(AuthError::Invalid);
        }
        None => {
            debug!(target: "scimd::auth", "tenant {tenant_id}: unknown {}", if is_client { "API client" } else { "account" });
            auth.verify_slowly(pass, auth.dummy_hash.clone()).await;
            return Err(AuthError::Invalid);
        }
    };
    // Only credentials that end in a principal are remembered: a cache hit for a
    // non-admin's right password would answer faster than a wrong one (an oracle).
    let tag = auth.credentials.tag(tenant_id, &user, &pass, &stored);
    let cached = auth.credentials.contains(&tag);
    if !cached && !auth.credentials.verify_once(auth, tag, pass, stored).await {
        warn!(target: "scimd::auth", "tenant {tenant_id}: wrong password for {}", loggable(&user));
        return Err(AuthError::Invalid);
    }
    if account.role != Role::OrgAdmin {
        // Answered like a wrong password: a 403 here would confirm the password.
        warn!(target: "scimd::auth", "tenant {tenant_id}: account {} is not an org admin; only SCIM admin service accounts may use this API", account.user_name);
        return Err(AuthError::Invalid);
    }
    if is_client && api != Api::TokenApi {
        // Said only once the secret is verified: before, it told an unauthenticated
        // caller at once that the tenant exists.
        return Err(AuthError::Forbidden("API client credentials may only be used for the token API".into()));
    }
    let via = if is_client { Credential::ApiClient } else { Credential::Password };
    let principal = admin_principal(tenant_id, account, via)?;
    if !cached {
        auth.credentials.insert(tag);
    }
    Ok((principal, epoch))
}

/// A user name as the client sent it, safe for one log line (no control characters).
fn loggable(name: &str) -> String {
    name.chars().take(128).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// The account behind valid credentials may act only while it is an active org admin.
fn admin_principal(tenant_id: &str, account: users::AccountRecord, via: Credential) -> Result<Principal, AuthError> {
    if !account.active {
        warn!(target: "scimd::auth", "tenant {tenant_id}: account {} is deactivated", account.user_name);
        return Err(AuthError::Invalid);
    }
    if account.role != Role::OrgAdmin {
        return Err(AuthError::Forbidden(format!(
            "account {} is not an org admin; only SCIM admin service accounts may use this API",
            account.user_name
        )));
    }
    if account.license != License::Creator {
        let held = match account.license {
            License::CreatorFloat => "a Creator Float licence",
            License::Creator | License::None => "no licence",
        };
        return Err(AuthError::Forbidden(format!(
            "account {} holds {held}; this API needs an org admin with a named Creator licence (scimd user set-license)",
            account.user_name
        )));
    }
    Ok(Principal { user_id: account.id, user_name: account.user_name, via })
}

/// A bearer token. Only tokens whose signature fails count towards the throttle: a
/// revoked or expired token is ours and cannot be guessed (a legitimate IdP retrying with
/// one must not lock out its shared address), and a throttled address is refused only
/// after its token failed to verify, so a valid token always gets through.
/// Returns the principal, the auth counter read beside the token and account rows, and
/// the token's expiry (Unix seconds).
async fn authenticate_bearer(tenant: &Tenant, auth: &AuthState, bearer: &str, peer: std::net::IpAddr, now: UtcMillis) -> Result<(Principal, i64, i64), AuthError> {
    let cache = &auth.tokens;
    let tenant_id = tenant.id.as_str();
    let forgeries = [throttle::Key::Forgeries(peer)];
    // Logged only while the address is not throttled: past that, the throttle's own
    // rate-limited line speaks for them.
    let forged = |why: &str| -> AuthError {
        if let Err(e) = throttled(auth, &forgeries, tenant_id, "forged bearer tokens", peer) {
            return e;
        }
        warn!(target: "scimd::auth", "tenant {tenant_id}: {why}");
        auth.throttle.fail(&forgeries);
        AuthError::Invalid
    };
    // While the key files cannot be used (or are not there), the database's copy, read now,
    // verifies (the fault is raised). Without a copy there is no key: the token is forged
    // (401). A copy that cannot be used either is the operator's to fix (503), not the
    // client's (which a 401 would count towards the throttle).
    let key = match tenant.verifying_key().await.map_err(AuthError::of_store)? {
        Some(key) => key,
        None if tenant.keys.broken() => return Err(AuthError::Unavailable(crate::model::Fault::SigningKey)),
        None => return Err(forged("bearer token presented but the tenant has no signing key")),
    };
    let Some(claims) = cache.verify(bearer, &key) else {
        return Err(forged("bearer token with a bad signature or format"));
    };
    if claims.ten != tenant_id {
        warn!(target: "scimd::auth", "tenant {tenant_id}: bearer token of tenant {} refused", claims.ten);
        return Err(AuthError::Invalid);
    }
    if now.0 / 1000 >= claims.exp {
        warn!(target: "scimd::auth", "tenant {tenant_id}: expired token {} of account {}", claims.jti, claims.sub);
        return Err(AuthError::Expired);
    }
    let (jti, sub, at) = (claims.jti.clone(), claims.sub.clone(), now.to_rfc3339());
    let (current, account, epoch) = tenant
        .store
        .read(move |conn| Ok((tokens::is_current(conn, &jti, &sub, &at)?, users::find_account_by_id(conn, &sub)?, auth_check::auth_epoch(conn)?)))
        .await
        .map_err(AuthError::of_store)?;
    if !current {
        warn!(target: "scimd::auth", "tenant {tenant_id}: revoked token {} of account {}", claims.jti, claims.sub);
        return Err(AuthError::Revoked);
    }
    let account = account.ok_or(AuthError::Invalid)?;
    Ok((admin_principal(tenant_id, account, Credential::Bearer)?, epoch, claims.exp))
}
