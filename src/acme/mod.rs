//! Certificates by ACME (RFC 8555; issue 24): an account at the configured directory, an
//! order for `acme_domains` proved by TLS-ALPN-01 on the TLS listener (or HTTP-01 on
//! `acme_http_listen`), the certificate and its key written under `DATA_DIR/acme/` (0600),
//! renewed from two thirds of its lifetime, with exponential backoff and jitter while the
//! CA fails. The old certificate keeps serving until a new one has loaded (`installed`,
//! the TLS listener's reload). The protocol is instant-acme's; `client.rs` is its HTTP.

mod challenge;
mod client;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy};
use log::{info, warn};
use serde::{Deserialize, Serialize};

pub use challenge::{serve_http01, Challenges, ACME_TLS_ALPN};

use crate::clock::UtcMillis;
use crate::config::AcmeSettings;
use crate::ops::maintenance::{cert_facts, CertFacts};
use crate::tenant::AcmePaths;

/// A CA's validation of every name must finish within this.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Issuance after finalize (the CA signs) within this.
const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(120);
/// The renewal loop looks again at least this often (a clock that jumped, a suspend).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// The lifetime assumed before the first certificate (Let's Encrypt's).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
const DAY_MS: i64 = 86_400_000;

/// What the renewal loop did last, as `/metrics`, the operator's `/healthz` and `scimd
/// check` read it (`state.json`; no secret in it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub directory: String,
    pub domains: Vec<String>,
    /// "tls-alpn-01" or "http-01".
    pub challenge: String,
    /// The certificate on disk, served.
    pub not_after: Option<String>,
    pub renew_at: Option<String>,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub last_error: Option<String>,
    /// Failed orders since the last success.
    pub failures: u32,
    pub next_attempt: Option<String>,
}

impl State {
    /// The state file `serve` wrote, for `scimd check`.
    pub fn read(paths: &AcmePaths) -> Option<State> {
        serde_json::from_slice(&std::fs::read(&paths.state).ok()?).ok()
    }

    /// Why the operator should look, or nothing: no certificate yet, one expiring within
    /// `days`, or failing orders.
    pub fn concerns(&self, now: UtcMillis, days: i64) -> Vec<String> {
        let mut out = Vec::new();
        let failing = match (&self.last_error, &self.last_failure) {
            (Some(e), Some(at)) if self.failures > 0 => format!("; {} failed orders, the last at {at}: {e}; next attempt {}", self.failures, self.next_attempt.as_deref().unwrap_or("soon")),
            _ => String::new(),
        };
        match self.not_after.as_deref().and_then(UtcMillis::parse_rfc3339) {
            None => out.push(format!("no ACME certificate yet for {}{failing}", self.domains.join(", "))),
            Some(t) if t.0 - now.0 < days * DAY_MS => {
                let left = (t.0 - now.0).div_euclid(DAY_MS);
                out.push(format!("the certificate for {} expires {} ({left} days){failing}", self.domains.join(", "), t.to_rfc3339()));
            }
            Some(_) if !failing.is_empty() => out.push(format!("ACME renewal failing{failing}")),
            Some(_) => {}
        }
        out
    }
}

/// The renewal loop's state, shared with the operator listener.
#[derive(Default)]
pub struct Status {
    state: Mutex<State>,
    pub orders_valid: AtomicU64,
    pub orders_failed: AtomicU64,
}

impl Status {
    pub fn snapshot(&self) -> State {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// When to order next, given the certificate on disk.
#[derive(Debug, PartialEq)]
enum Plan {
    Now(&'static str),
    At(UtcMillis),
}

fn plan(current: Option<&CertFacts>, domains: &[String], now: UtcMillis) -> Plan {
    let Some(c) = current else { return Plan::Now("no certificate yet") };
    if domains.iter().any(|d| !c.dns_names.contains(d)) {
        return Plan::Now("the certificate does not cover every name in acme_domains");
    }
    let renew_at = UtcMillis(c.not_before.0 + (c.not_after.0 - c.not_before.0) * 2 / 3);
    if renew_at.0 <= now.0 {
        Plan::Now("two thirds of its lifetime have passed")
    } else {
        Plan::At(renew_at)
    }
}

/// The wait after `failures` failed orders (≥ 1) for a certificate living `lifetime`:
/// from a thousandth of the lifetime (1 s to 60 s), doubling, at most a tenth of it (and 6
/// hours), ±20 % by `jitter` in [-1, 1] so many servers do not retry in step.
fn backoff(failures: u32, lifetime: Duration, jitter: f64) -> Duration {
    let base = (lifetime / 1000).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let cap = (lifetime / 10).clamp(base, Duration::from_secs(6 * 3600));
    let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20)).min(cap);
    doubled.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
}

fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 2.0 - 1.0
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The account credentials on disk, with the directory they belong to.
#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub struct Manager {
    settings: AcmeSettings,
    paths: AcmePaths,
    pub challenges: Arc<Challenges>,
    pub status: Arc<Status>,
    http: client::Https,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl Manager {
    /// Makes `DATA_DIR/acme/` (0700) and the HTTP client (reading `acme_ca`).
    pub fn new(settings: AcmeSettings, paths: AcmePaths) -> Result<Manager, String> {
        std::fs::create_dir_all(&paths.dir).map_err(|e| format!("cannot create {}: {e}", paths.dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| format!("cannot restrict {}: {e}", paths.dir.display()))?;
        }
        let http = client::Https::new(settings.ca.as_deref())?;
        let state = State {
            directory: settings.directory.clone(),
            domains: settings.domains.clone(),
            challenge: if settings.http_listen.is_some() { "http-01" } else { "tls-alpn-01" }.into(),
            ..State::default()
        };
        let status = Arc::new(Status { state: Mutex::new(state), ..Status::default() });
        Ok(Manager { settings, paths, challenges: Arc::default(), status, http, account: tokio::sync::Mutex::new(None) })
    }

    pub fn paths(&self) -> &AcmePaths {
        &self.paths
    }

    fn current(&self) -> Option<CertFacts> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::pem_file_iter(&self.paths.cert).ok()?.next()?.ok()?;
        cert_facts(&der)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let snapshot = match self.status.state.lock() {
            Ok(mut s) => {
                change(&mut s);
                s.clone()
            }
            Err(_) => return,
        };
        if let Ok(json) = serde_json::to_vec_pretty(&snapshot) {
            if let Err(e) = crate::certs::write_file(&self.paths.state, &json, 0o600) {
                warn!(target: "scimd::acme", "{e}");
            }
        }
    }

    /// The renewal loop, for the server's lifetime. `installed` loads the files just
    /// written into the TLS listener and says whether they loaded.
    pub async fn run(self: Arc<Self>, installed: impl Fn() -> bool + Send + 'static) {
        let names = self.settings.domains.join(", ");
        loop {
            let now = UtcMillis::now();
            let current = self.current();
            let next = plan(current.as_ref(), &self.settings.domains, now);
            self.update(|s| {
                s.not_after = current.as_ref().map(|c| c.not_after.to_rfc3339());
                s.renew_at = match &next {
                    Plan::At(t) => Some(t.to_rfc3339()),
                    Plan::Now(_) => Some(now.to_rfc3339()),
                };
            });
            let reason = match next {
                Plan::At(t) => {
                    let wait = Duration::from_millis(u64::try_from(t.0 - now.0).unwrap_or(0)).min(MAX_SLEEP);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Plan::Now(reason) => reason,
            };
            info!(target: "scimd::acme", "ordering a certificate for {names} from {} by {} ({reason})", self.settings.directory, self.status.snapshot().challenge);
            let outcome = match self.order().await {
                Ok(()) if installed() => Ok(()),
                Ok(()) => Err("the certificate obtained did not load (see the ERROR above)".to_string()),
                Err(e) => Err(e),
            };
            let now = UtcMillis::now();
            match outcome {
                Ok(()) => {
                    self.status.orders_valid.fetch_add(1, Ordering::Relaxed);
                    let facts = self.current();
                    let until = facts.as_ref().map(|f| f.not_after.to_rfc3339()).unwrap_or_default();
                    let renew = match facts.as_ref().map(|f| plan(Some(f), &self.settings.domains, now)) {
                        Some(Plan::At(t)) => t.to_rfc3339(),
                        _ => "now".into(),
                    };
                    info!(target: "scimd::acme", "obtained and now serving a certificate for {names}, valid until {until}; renewal from {renew}");
                    self.update(|s| {
                        s.last_success = Some(now.to_rfc3339());
                        s.failures = 0;
                        s.last_error = None;
                        s.next_attempt = None;
                    });
                }
                Err(e) => {
                    self.status.orders_failed.fetch_add(1, Ordering::Relaxed);
                    let failures = self.status.snapshot().failures + 1;
                    let lifetime = current
                        .as_ref()
                        .map(|c| Duration::from_millis(u64::try_from(c.not_after.0 - c.not_before.0).unwrap_or(0)))
                        .filter(|d| !d.is_zero())
                        .unwrap_or(DEFAULT_LIFETIME);
                    let wait = backoff(failures, lifetime, jitter());
                    let serving = match &current {
                        Some(c) if c.not_after.0 > now.0 => format!("still serving the certificate valid until {}", c.not_after.to_rfc3339()),
                        Some(c) => format!("the certificate served expired at {}", c.not_after.to_rfc3339()),
                        None => "no certificate yet: TLS handshakes fail until one is obtained".into(),
                    };
                    warn!(target: "scimd::acme", "certificate order for {names} failed (attempt {failures}): {e}; {serving}; retrying in {}", seconds(wait));
                    let next = UtcMillis(now.0 + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2));
                    self.update(|s| {
                        s.failures = failures;
                        s.last_failure = Some(now.to_rfc3339());
                        s.last_error = Some(e.clone());
                        s.next_attempt = Some(next.to_rfc3339());
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The account: in memory, else from `account.json` when it is for this directory, else
    /// a new one (its credentials written 0600 before use).
    async fn account(&self) -> Result<Account, String> {
        let mut cached = self.account.lock().await;
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let saved: Option<SavedAccount> = std::fs::read(&self.paths.account).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(saved) = saved.filter(|s| s.directory == self.settings.directory) {
            let account = Account::builder_with_http(Box::new(self.http.clone()))
                .from_credentials(saved.credentials)
                .await
                .map_err(|e| format!("cannot reach the ACME directory {}: {e}", self.settings.directory))?;
            *cached = Some(account.clone());
            return Ok(account);
        }
        let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
            .create(&new, self.settings.directory.clone(), None)
            .await
            .map_err(|e| format!("cannot register an ACME account at {}: {e}", self.settings.directory))?;
        let saved = SavedAccount { directory: self.settings.directory.clone(), credentials };
        let json = serde_json::to_vec(&saved).map_err(|e| e.to_string())?;
        crate::certs::write_file(&self.paths.account, &json, 0o600)?;
        info!(target: "scimd::acme", "registered ACME account {} at {}", account.id(), self.settings.directory);
        *cached = Some(account.clone());
        Ok(account)
    }

    /// One order, start to finish; the certificate and key written on success.
    async fn order(&self) -> Result<(), String> {
        let account = self.account().await?;
        match self.order_with(&account).await {
            Ok(()) => Ok(()),
            Err(OrderError::Acme(context, e)) => {
                // The CA forgot the account (a test CA restarted, an account deactivated):
                // the next attempt registers a new one.
                if matches!(&e, instant_acme::Error::Api(p) if p.r#type.as_deref().is_some_and(|t| t.ends_with(":accountDoesNotExist"))) {
                    *self.account.lock().await = None;
                    let _ = std::fs::remove_file(&self.paths.account);
                }
                Err(format!("{context}: {e}"))
            }
            Err(OrderError::Other(e)) => Err(e),
        }
    }

    async fn order_with(&self, account: &Account) -> Result<(), OrderError> {
        let ids: Vec<Identifier> = self.settings.domains.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(OrderError::acme("new order"))?;
        let http01 = self.settings.http_listen.is_some();
        let kind = if http01 { ChallengeType::Http01 } else { ChallengeType::TlsAlpn01 };
        let mut armed = Vec::new();
        {
            let mut authorizations = order.authorizations();
            while let Some(next) = authorizations.next().await {
                let mut authz = next.map_err(OrderError::acme("authorization"))?;
                let name = authz.identifier().to_string();
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => return Err(OrderError::Other(format!("the authorization for {name} is {other:?}"))),
                }
                let Some(mut challenge) = authz.challenge(kind.clone()) else {
                    return Err(OrderError::Other(format!("the CA offers no {kind:?} challenge for {name}")));
                };
                let key_authorization = challenge.key_authorization();
                armed.push(if http01 {
                    self.challenges.arm_http01(&challenge.token, key_authorization.as_str())
                } else {
                    self.challenges.arm_tls_alpn(&name, key_authorization.digest().as_ref()).map_err(OrderError::Other)?
                });
                challenge.set_ready().await.map_err(OrderError::acme("challenge"))?;
            }
        }
        let retry = RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(VALIDATION_TIMEOUT);
        let status = order.poll_ready(&retry).await.map_err(OrderError::acme("validation"))?;
        drop(armed);
        if status != OrderStatus::Ready {
            return Err(OrderError::Other(format!("the order is {status:?} after validation")));
        }
        let rcgen_err = |e: rcgen::Error| OrderError::Other(format!("cannot make the certificate request: {e}"));
        let key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
        let csr = rcgen::CertificateParams::new(self.settings.domains.clone()).map_err(rcgen_err)?.serialize_request(&key).map_err(rcgen_err)?;
        order.finalize_csr(csr.der()).await.map_err(OrderError::acme("finalize"))?;
        let retry = RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(ISSUANCE_TIMEOUT);
        let chain = order.poll_certificate(&retry).await.map_err(OrderError::acme("certificate"))?;
        // Checked before it replaces anything: a chain for other names is refused.
        use rustls_pki_types::pem::PemObject;
        let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes()).next().and_then(Result::ok);
        let facts = leaf.as_deref().and_then(cert_facts).ok_or_else(|| OrderError::Other("the CA sent no readable certificate".into()))?;
        if let Some(missing) = self.settings.domains.iter().find(|d| !facts.dns_names.contains(d)) {
            return Err(OrderError::Other(format!("the certificate issued does not name {missing}")));
        }
        crate::certs::write_file(&self.paths.key, key.serialize_pem().as_bytes(), 0o600).map_err(OrderError::Other)?;
        crate::certs::write_file(&self.paths.cert, chain.as_bytes(), 0o600).map_err(OrderError::Other)?;
        Ok(())
    }
}

enum OrderError {
    /// A step of the protocol failed (the CA's problem document, or no answer).
    Acme(&'static str, instant_acme::Error),
    Other(String),
}

impl OrderError {
    fn acme(context: &'static str) -> impl Fn(instant_acme::Error) -> OrderError {
        move |e| OrderError::Acme(context, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(not_before: i64, not_after: i64, names: &[&str]) -> CertFacts {
        CertFacts { not_before: UtcMillis(not_before), not_after: UtcMillis(not_after), dns_names: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn renews_at_two_thirds_or_at_once_when_names_change() {
        let domains = vec!["a.example.com".to_string()];
        let c = facts(0, 90 * DAY_MS, &["a.example.com"]);
        assert_eq!(plan(Some(&c), &domains, UtcMillis(DAY_MS)), Plan::At(UtcMillis(60 * DAY_MS)));
        assert!(matches!(plan(Some(&c), &domains, UtcMillis(60 * DAY_MS)), Plan::Now(_)));
        assert!(matches!(plan(None, &domains, UtcMillis(0)), Plan::Now("no certificate yet")));
        let more = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        assert!(matches!(plan(Some(&c), &more, UtcMillis(DAY_MS)), Plan::Now(r) if r.contains("cover")));
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let ninety_days = DEFAULT_LIFETIME;
        assert_eq!(backoff(1, ninety_days, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(2, ninety_days, 0.0), Duration::from_secs(120));
        assert_eq!(backoff(30, ninety_days, 0.0), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(1, ninety_days, 1.0), Duration::from_secs(72));
        assert_eq!(backoff(1, ninety_days, -1.0), Duration::from_secs(48));
        // A test CA's one-minute certificate: retries within seconds, at most 6 s apart.
        let minute = Duration::from_secs(60);
        assert_eq!(backoff(1, minute, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(10, minute, 0.0), Duration::from_secs(6));
        for _ in 0..100 {
            let j = jitter();
            assert!((-1.0..=1.0).contains(&j));
        }
    }

    #[test]
    fn concerns_start_fourteen_days_before_expiry() {
        let now = UtcMillis(1_000 * DAY_MS);
        let mut s = State { domains: vec!["a.example.com".into()], not_after: Some(UtcMillis(now.0 + 20 * DAY_MS).to_rfc3339()), ..State::default() };
        assert!(s.concerns(now, 14).is_empty());
        s.not_after = Some(UtcMillis(now.0 + 13 * DAY_MS).to_rfc3339());
        assert!(s.concerns(now, 14)[0].contains("(13 days)"));
        s.not_after = Some(UtcMillis(now.0 + 20 * DAY_MS).to_rfc3339());
        (s.failures, s.last_error, s.last_failure) = (2, Some("connection refused".into()), Some(now.to_rfc3339()));
        assert!(s.concerns(now, 14)[0].contains("connection refused"));
        s.not_after = None;
        assert!(s.concerns(now, 14)[0].starts_with("no ACME certificate yet"));
    }
}
