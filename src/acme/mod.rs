//! Certificates by ACME (RFC 8555; issue 24): an account at the configured directory, an
//! order for `acme_domains` proved by TLS-ALPN-01 on the TLS listener (or HTTP-01 on
//! `acme_http_listen`), the certificate and its key written under `DATA_DIR/acme/` (0600),
//! renewed from two thirds of its lifetime, with exponential backoff and jitter while the
//! CA fails. The old certificate keeps serving until a new one has loaded (`installed`,
//! the TLS listener's reload). The protocol is instant-acme's; `client.rs` is its HTTP.

mod challenge;
mod client;
mod order;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::Account;
use log::{info, warn};
use serde::{Deserialize, Serialize};

pub use challenge::{serve_http01, Challenges, ACME_TLS_ALPN};

use crate::clock::UtcMillis;
use crate::config::AcmeSettings;
use crate::ops::maintenance::{cert_facts, CertFacts};
use crate::tenant::AcmePaths;

/// One order, start to finish (each request has its own 30 s; validation and issuance 2 min).
const ORDER_TIMEOUT: Duration = Duration::from_secs(600);
/// What the CA said, at most this much of it, in the log and state.json.
const MAX_ERROR_CHARS: usize = 500;
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
    /// The directory that issued the certificate on disk.
    pub issued_by: Option<String>,
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
    Now(String),
    At(UtcMillis),
}

/// `current`: the certificate on disk if it loads with its key, else why not. A certificate
/// is replaced at once when its names are not exactly `domains` or another directory issued
/// it (staging, then production), else from two thirds of its lifetime.
fn plan(current: &Result<CertFacts, String>, domains: &[String], issued_elsewhere: bool, now: UtcMillis) -> Plan {
    let c = match current {
        Ok(c) => c,
        Err(why) => return Plan::Now(why.clone()),
    };
    let mut have = c.dns_names.clone();
    let mut want = domains.to_vec();
    have.sort();
    want.sort();
    if have != want {
        return Plan::Now("the certificate's names are not those of acme_domains".into());
    }
    if issued_elsewhere {
        return Plan::Now("the certificate is from another ACME directory".into());
    }
    let renew_at = UtcMillis(c.not_before.0 + (c.not_after.0 - c.not_before.0) * 2 / 3);
    if renew_at.0 <= now.0 {
        Plan::Now("two thirds of its lifetime have passed".into())
    } else {
        Plan::At(renew_at)
    }
}

/// The CA's words for the log and state.json: no control characters, bounded.
fn clean(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_ERROR_CHARS).collect();
    if text.chars().count() > MAX_ERROR_CHARS {
        out.push('…');
    }
    out
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

fn until(t: UtcMillis, now: UtcMillis) -> Duration {
    Duration::from_millis(u64::try_from(t.0 - now.0).unwrap_or(0))
}

/// The wait after `failures` failed orders (≥ 1) for a certificate living `lifetime`:
/// from a thousandth of the lifetime (1 s to 5 min: four failed validations in Let's
/// Encrypt's first hour, within its five), doubling, at most a tenth of it (and 6 hours),
/// ±20 % by `jitter` in [-1, 1] so many servers do not retry in step.
fn backoff(failures: u32, lifetime: Duration, jitter: f64) -> Duration {
    let base = (lifetime / 1000).clamp(Duration::from_secs(1), Duration::from_secs(300));
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

pub struct Manager {
    settings: AcmeSettings,
    paths: AcmePaths,
    pub challenges: Arc<Challenges>,
    pub status: Arc<Status>,
    http: client::Https,
    account: tokio::sync::Mutex<Option<Account>>,
    /// Issued but not yet on disk (a full disk): written again before any new order.
    pending: tokio::sync::Mutex<Option<order::Issued>>,
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
        // What the last run knew: who issued the certificate on disk, and its failures (a
        // restart does not reset the backoff).
        let previous = State::read(&paths).filter(|p| p.directory == settings.directory && p.domains == settings.domains);
        let state = State {
            directory: settings.directory.clone(),
            domains: settings.domains.clone(),
            challenge: if settings.http_listen.is_some() { "http-01" } else { "tls-alpn-01" }.into(),
            issued_by: State::read(&paths).and_then(|p| p.issued_by),
            ..previous.unwrap_or_default()
        };
        let status = Arc::new(Status { state: Mutex::new(state), ..Status::default() });
        Ok(Manager { settings, paths, challenges: Arc::default(), status, http, account: tokio::sync::Mutex::new(None), pending: tokio::sync::Mutex::new(None) })
    }

    pub fn paths(&self) -> &AcmePaths {
        &self.paths
    }

    /// The certificate on disk, if it loads with its key as the listener would load it.
    fn current(&self) -> Result<CertFacts, String> {
        use rustls_pki_types::pem::PemObject;
        if !self.paths.cert.exists() && !self.paths.key.exists() {
            return Err("no certificate yet".into());
        }
        let unusable = |why: String| format!("the certificate and key on disk do not load ({why})");
        let chain: Vec<rustls_pki_types::CertificateDer<'static>> = rustls_pki_types::CertificateDer::pem_file_iter(&self.paths.cert)
            .map_err(|e| unusable(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| unusable(e.to_string()))?;
        let facts = chain.first().and_then(|der| cert_facts(der)).ok_or_else(|| unusable("no readable certificate".into()))?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&self.paths.key).map_err(|e| unusable(e.to_string()))?;
        let signing = rustls::crypto::ring::default_provider().key_provider.load_private_key(key).map_err(|e| unusable(e.to_string()))?;
        rustls::sign::CertifiedKey::new(chain, signing).keys_match().map_err(|e| unusable(e.to_string()))?;
        Ok(facts)
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
        // A previous run's backoff stands across a restart.
        let before = self.status.snapshot();
        if let Some(next) = before.next_attempt.as_deref().and_then(UtcMillis::parse_rfc3339).filter(|_| before.failures > 0) {
            let now = UtcMillis::now();
            if next.0 > now.0 {
                info!(target: "scimd::acme", "{} failed orders before this start; the next attempt waits until {}", before.failures, next.to_rfc3339());
                tokio::time::sleep(until(next, now)).await;
            }
        }
        let mut first = true;
        let mut last_success: Option<tokio::time::Instant> = None;
        loop {
            let now = UtcMillis::now();
            let current = self.current();
            let issued_elsewhere = self.status.snapshot().issued_by.as_deref().is_some_and(|d| d != self.settings.directory);
            let next = plan(&current, &self.settings.domains, issued_elsewhere, now);
            self.update(|s| {
                s.not_after = current.as_ref().ok().map(|c| c.not_after.to_rfc3339());
                s.renew_at = Some(match &next {
                    Plan::At(t) => t.to_rfc3339(),
                    Plan::Now(_) => now.to_rfc3339(),
                });
            });
            let lifetime = current
                .as_ref()
                .ok()
                .map(|c| Duration::from_millis(u64::try_from(c.not_after.0 - c.not_before.0).unwrap_or(0)))
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_LIFETIME);
            let reason = match next {
                Plan::At(t) => {
                    if std::mem::take(&mut first) {
                        let until_text = current.as_ref().map(|c| c.not_after.to_rfc3339()).unwrap_or_default();
                        info!(target: "scimd::acme", "serving the certificate on disk for {names}, valid until {until_text}; renewal from {}", t.to_rfc3339());
                    }
                    tokio::time::sleep(until(t, now).min(MAX_SLEEP)).await;
                    continue;
                }
                Plan::Now(reason) => reason,
            };
            first = false;
            // Just renewed and already due: a clock far ahead, or a CA backdating. Never
            // order in a loop; wait a tenth of the lifetime (at most an hour) each time.
            let gap = (lifetime / 10).min(Duration::from_secs(3600));
            if last_success.is_some_and(|t| t.elapsed() < gap) {
                warn!(target: "scimd::acme", "the certificate just obtained for {names} is already due ({reason}): check the system clock; next order in {}", seconds(gap));
                tokio::time::sleep(gap).await;
            }
            info!(target: "scimd::acme", "ordering a certificate for {names} from {} by {} ({reason})", self.settings.directory, self.status.snapshot().challenge);
            let outcome = match tokio::time::timeout(ORDER_TIMEOUT, self.obtain()).await {
                Err(_) => Err(format!("no certificate within {}", seconds(ORDER_TIMEOUT))),
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) if installed() => Ok(()),
                Ok(Ok(())) => Err("the certificate obtained did not load (see the ERROR above)".to_string()),
            };
            let now = UtcMillis::now();
            match outcome {
                Ok(()) => {
                    last_success = Some(tokio::time::Instant::now());
                    self.status.orders_valid.fetch_add(1, Ordering::Relaxed);
                    let facts = self.current();
                    let valid_until = facts.as_ref().map(|f| f.not_after.to_rfc3339()).unwrap_or_default();
                    let renew = match plan(&facts, &self.settings.domains, false, now) {
                        Plan::At(t) => t.to_rfc3339(),
                        Plan::Now(_) => "now".into(),
                    };
                    info!(target: "scimd::acme", "obtained and now serving a certificate for {names}, valid until {valid_until}; renewal from {renew}");
                    self.update(|s| {
                        s.last_success = Some(now.to_rfc3339());
                        s.failures = 0;
                        s.last_error = None;
                        s.next_attempt = None;
                        s.issued_by = Some(self.settings.directory.clone());
                    });
                }
                Err(e) => {
                    let e = clean(&e);
                    self.status.orders_failed.fetch_add(1, Ordering::Relaxed);
                    let failures = self.status.snapshot().failures + 1;
                    let wait = backoff(failures, lifetime, jitter());
                    let serving = match &current {
                        Ok(c) if c.not_after.0 > now.0 => format!("still serving the certificate valid until {}", c.not_after.to_rfc3339()),
                        Ok(c) => format!("the certificate served expired at {}", c.not_after.to_rfc3339()),
                        Err(_) => "no certificate yet: TLS handshakes fail until one is obtained".into(),
                    };
                    warn!(target: "scimd::acme", "certificate order for {names} failed (attempt {failures}): {e}; {serving}; retrying in {}", seconds(wait));
                    let next = UtcMillis(now.0 + millis(wait));
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

    /// A certificate on disk: the one issued earlier and not yet written, else a new order.
    async fn obtain(&self) -> Result<(), String> {
        let mut pending = self.pending.lock().await;
        let issued = match pending.take() {
            Some(issued) => issued,
            None => self.order().await?,
        };
        let written = crate::certs::write_file(&self.paths.key, issued.key_pem.as_bytes(), 0o600)
            .and_then(|()| crate::certs::write_file(&self.paths.cert, issued.chain.as_bytes(), 0o600));
        if let Err(e) = written {
            // Kept: the next attempt writes it again instead of ordering a duplicate.
            *pending = Some(issued);
            return Err(format!("the certificate was issued but cannot be written: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(not_before: i64, not_after: i64, names: &[&str]) -> CertFacts {
        CertFacts { not_before: UtcMillis(not_before), not_after: UtcMillis(not_after), dns_names: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn renews_at_two_thirds_or_at_once_when_names_issuer_or_files_change() {
        let domains = vec!["a.example.com".to_string()];
        let c = Ok(facts(0, 90 * DAY_MS, &["a.example.com"]));
        assert_eq!(plan(&c, &domains, false, UtcMillis(DAY_MS)), Plan::At(UtcMillis(60 * DAY_MS)));
        assert!(matches!(plan(&c, &domains, false, UtcMillis(60 * DAY_MS)), Plan::Now(r) if r.contains("two thirds")));
        assert!(matches!(plan(&Err("no certificate yet".into()), &domains, false, UtcMillis(0)), Plan::Now(r) if r == "no certificate yet"));
        assert!(matches!(plan(&c, &domains, true, UtcMillis(DAY_MS)), Plan::Now(r) if r.contains("another ACME directory")));
        let more = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        assert!(matches!(plan(&c, &more, false, UtcMillis(DAY_MS)), Plan::Now(r) if r.contains("names")));
        // A name removed: the certificate still naming it is replaced too.
        let both = Ok(facts(0, 90 * DAY_MS, &["b.example.com", "a.example.com"]));
        assert_eq!(plan(&both, &more, false, UtcMillis(DAY_MS)), Plan::At(UtcMillis(60 * DAY_MS)));
        assert!(matches!(plan(&both, &domains, false, UtcMillis(DAY_MS)), Plan::Now(r) if r.contains("names")));
    }

    #[test]
    fn the_cas_words_are_cleaned_and_bounded() {
        assert_eq!(clean("bad\r\nline"), "bad  line");
        let long = "x".repeat(2000);
        assert_eq!(clean(&long).chars().count(), MAX_ERROR_CHARS + 1);
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let ninety_days = DEFAULT_LIFETIME;
        assert_eq!(backoff(1, ninety_days, 0.0), Duration::from_secs(300));
        assert_eq!(backoff(2, ninety_days, 0.0), Duration::from_secs(600));
        assert_eq!(backoff(30, ninety_days, 0.0), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(1, ninety_days, 1.0), Duration::from_secs(360));
        assert_eq!(backoff(1, ninety_days, -1.0), Duration::from_secs(240));
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
