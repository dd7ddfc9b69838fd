//! One ACME order, start to finish, and the account it is made with: the protocol steps
//! (instant-acme), the challenge answers armed while the CA validates, the certificate
//! request, and the issued chain checked before anything on disk changes.

use std::time::Duration;

use instant_acme::{Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::Manager;
use crate::ops::maintenance::cert_facts;

/// A CA's validation of every name must finish within this.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Issuance after finalize (the CA signs) within this.
const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(120);

/// A certificate the CA issued: the chain and its key, PEM, held until both are on disk.
pub(super) struct Issued {
    pub chain: String,
    pub key_pem: String,
}

/// One account per ACME directory, all in `account.json`: trying the staging CA keeps the
/// production account.
#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub(super) enum OrderError {
    /// A step of the protocol failed (the CA's problem document, or no answer).
    Acme(&'static str, instant_acme::Error),
    Other(String),
}

impl OrderError {
    fn acme(context: &'static str) -> impl Fn(instant_acme::Error) -> OrderError {
        move |e| OrderError::Acme(context, e)
    }
}

/// The certificate request for `domains`: a new P-256 key, the names as subjectAltNames and
/// an empty subject (a CA such as Let's Encrypt refuses a CN that is not one of the names,
/// and rcgen's default subject is "rcgen self signed cert").
pub(super) fn certificate_request(domains: &[String]) -> Result<(rcgen::KeyPair, Vec<u8>), String> {
    let err = |e: rcgen::Error| format!("cannot make the certificate request: {e}");
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(err)?;
    Ok((key, csr.der().to_vec()))
}

impl Manager {
    fn saved_accounts(&self) -> Result<Vec<SavedAccount>, String> {
        match std::fs::read(&self.paths.account) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!("the ACME account file {} is damaged ({e}); move it away to register a new account", self.paths.account.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read the ACME account file {}: {e}", self.paths.account.display())),
        }
    }

    /// The account: in memory, else this directory's from `account.json`, else a new one
    /// (kept in memory even when it cannot be saved, so a retry does not register again).
    async fn account(&self) -> Result<Account, String> {
        let mut cached = self.account.lock().await;
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let mut saved = self.saved_accounts()?;
        if let Some(i) = saved.iter().position(|s| s.directory == self.settings.directory) {
            let credentials = saved.swap_remove(i).credentials;
            let account = Account::builder_with_http(Box::new(self.http.clone()))
                .from_credentials(credentials)
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
        info!(target: "scimd::acme", "registered ACME account {} at {}", account.id(), self.settings.directory);
        saved.push(SavedAccount { directory: self.settings.directory.clone(), credentials });
        let written = serde_json::to_vec(&saved).map_err(|e| e.to_string()).and_then(|json| crate::certs::write_file(&self.paths.account, &json, 0o600));
        if let Err(e) = written {
            warn!(target: "scimd::acme", "the new ACME account is used but not saved ({e}): the next start registers another");
        }
        *cached = Some(account.clone());
        Ok(account)
    }

    /// A certificate for `acme_domains`, or why not.
    pub(super) async fn order(&self) -> Result<Issued, String> {
        let account = self.account().await?;
        match self.order_with(&account).await {
            Ok(issued) => Ok(issued),
            Err(OrderError::Acme(context, e)) => {
                // The CA forgot the account (a test CA restarted, an account deactivated):
                // the next attempt registers a new one.
                if matches!(&e, instant_acme::Error::Api(p) if p.r#type.as_deref().is_some_and(|t| t.ends_with(":accountDoesNotExist"))) {
                    *self.account.lock().await = None;
                    if let Ok(mut saved) = self.saved_accounts() {
                        saved.retain(|s| s.directory != self.settings.directory);
                        let _ = serde_json::to_vec(&saved).map_err(|e| e.to_string()).and_then(|json| crate::certs::write_file(&self.paths.account, &json, 0o600));
                    }
                }
                Err(format!("{context}: {e}"))
            }
            Err(OrderError::Other(e)) => Err(e),
        }
    }

    async fn order_with(&self, account: &Account) -> Result<Issued, OrderError> {
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
                // Only the names asked for: a CA's answer never arms a certificate for another.
                if !self.settings.domains.contains(&name.to_ascii_lowercase()) {
                    return Err(OrderError::Other(format!("the CA asked to prove {name}, which is not in acme_domains")));
                }
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
            let why = why_invalid(&mut order).await;
            return Err(OrderError::Other(format!("the CA did not validate the names ({status:?}){why}")));
        }
        let (key, csr) = certificate_request(&self.settings.domains).map_err(OrderError::Other)?;
        order.finalize_csr(&csr).await.map_err(OrderError::acme("finalize"))?;
        let retry = RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(ISSUANCE_TIMEOUT);
        let chain = order.poll_certificate(&retry).await.map_err(OrderError::acme("certificate"))?;
        // Checked before it replaces anything: a chain for other names is refused.
        use rustls_pki_types::pem::PemObject;
        let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes()).next().and_then(Result::ok);
        let facts = leaf.as_deref().and_then(cert_facts).ok_or_else(|| OrderError::Other("the CA sent no readable certificate".into()))?;
        if let Some(missing) = self.settings.domains.iter().find(|d| !facts.dns_names.contains(d)) {
            return Err(OrderError::Other(format!("the certificate issued does not name {missing}")));
        }
        Ok(Issued { chain, key_pem: key.serialize_pem() })
    }
}

/// The CA's reasons for an invalid order, from its challenges (connection refused, a wrong
/// answer, a timeout): what the operator needs first.
async fn why_invalid(order: &mut Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(e) = &c.error {
                    reasons.push(format!("{name}: {e}"));
                }
            }
        }
    }
    match reasons.is_empty() {
        true => String::new(),
        false => format!(": {}", reasons.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Let's Encrypt refuses a request whose subject CN is not one of its names.
    #[test]
    fn the_certificate_request_has_the_names_and_no_subject() {
        let names = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        let (_, der) = certificate_request(&names).unwrap();
        use x509_parser::prelude::FromDer;
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let info = &csr.certification_request_info;
        assert_eq!(info.subject.iter_common_name().count(), 0, "{}", info.subject);
        let mut sans = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                        sans.push(d.to_string());
                    }
                }
            }
        }
        assert_eq!(sans, names);
    }
}
