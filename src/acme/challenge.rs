//! The answers to the CA's challenges while an order is open: TLS-ALPN-01 certificates
//! (RFC 8737), served by the TLS listener's certificate resolver only to a ClientHello that
//! offers `acme-tls/1` alone, and HTTP-01 key authorizations (RFC 8555 §8.3), served by the
//! optional plain-HTTP listener. Each answer lives only while its order is being validated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What the listeners answer the CA with, now.
#[derive(Default)]
pub struct Challenges {
    /// DNS name (lower case) → its self-signed challenge certificate.
    tls_alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01 token → key authorization.
    http01: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// The challenge certificate for `name`, if an order is proving it.
    pub fn tls_alpn(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn.lock().ok()?.get(&name.to_ascii_lowercase()).cloned()
    }

    /// The key authorization for an HTTP-01 `token`.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.lock().ok()?.get(token).cloned()
    }

    /// Arms the TLS-ALPN-01 answer for `name`; the guard disarms it.
    pub(super) fn arm_tls_alpn(self: &Arc<Self>, name: &str, digest: &[u8]) -> Result<Armed, String> {
        let cert = challenge_cert(name, digest)?;
        let key = name.to_ascii_lowercase();
        if let Ok(mut map) = self.tls_alpn.lock() {
            map.insert(key.clone(), cert);
        }
        Ok(Armed { challenges: Arc::clone(self), key: Key::TlsAlpn(key) })
    }

    /// Arms the HTTP-01 answer for `token`; the guard disarms it.
    pub(super) fn arm_http01(self: &Arc<Self>, token: &str, key_authorization: &str) -> Armed {
        if let Ok(mut map) = self.http01.lock() {
            map.insert(token.to_string(), key_authorization.to_string());
        }
        Armed { challenges: Arc::clone(self), key: Key::Http01(token.to_string()) }
    }
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Challenges")
    }
}

enum Key {
    TlsAlpn(String),
    Http01(String),
}

/// An answer armed for an order: removed when the order is done with it (dropped).
pub(super) struct Armed {
    challenges: Arc<Challenges>,
    key: Key,
}

impl Drop for Armed {
    fn drop(&mut self) {
        match &self.key {
            Key::TlsAlpn(name) => {
                if let Ok(mut map) = self.challenges.tls_alpn.lock() {
                    map.remove(name);
                }
            }
            Key::Http01(token) => {
                if let Ok(mut map) = self.challenges.http01.lock() {
                    map.remove(token);
                }
            }
        }
    }
}

/// RFC 8737 §3: a self-signed certificate for `name` alone, with the critical
/// acmeIdentifier extension holding SHA-256 of the key authorization.
fn challenge_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let err = |e: rcgen::Error| format!("cannot make the TLS-ALPN-01 certificate for {name}: {e}");
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(err)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(err)?;
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("cannot load the TLS-ALPN-01 key for {name}: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)))
}

/// Connections the HTTP-01 listener serves at once, and from one address; more are closed
/// as they come. A CA validates from a few addresses, one request each, in milliseconds.
const HTTP01_MAX_CONNECTIONS: usize = 256;
const HTTP01_PER_ADDRESS: usize = 4;
/// A connection is closed after this, answered or not.
const HTTP01_CONNECTION_TIME: Duration = Duration::from_secs(5);
const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The plain-HTTP listener for HTTP-01 (`acme_http_listen`): `GET
/// /.well-known/acme-challenge/{token}` answers the key authorization of an armed token;
/// everything else is 404 (this port serves nothing else, not even a redirect). No request
/// body is read; one request per connection.
pub async fn serve_http01(listen: SocketAddr, challenges: Arc<Challenges>) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(HTTP01_MAX_CONNECTIONS));
    let per_address: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(target: "scimd::acme", "HTTP-01 listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
            let Some(held) = AddressSlot::take(&per_address, peer.ip()) else { continue };
            let challenges = Arc::clone(&challenges);
            tokio::spawn(async move {
                let _slots = (slot, held);
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer(&challenges, req.method(), req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(answer) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HTTP01_CONNECTION_TIME)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                if let Ok(Err(e)) = tokio::time::timeout(HTTP01_CONNECTION_TIME, conn).await {
                    debug!(target: "scimd::acme", "HTTP-01 connection from {peer} ended: {e}");
                }
            });
        }
    });
    Ok((bound, task))
}

/// One of an address's `HTTP01_PER_ADDRESS` connections, given back on drop.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl AddressSlot {
    fn take(counts: &Arc<Mutex<HashMap<std::net::IpAddr, usize>>>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let mut map = counts.lock().ok()?;
        let n = map.entry(ip).or_default();
        if *n >= HTTP01_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressSlot { counts: Arc::clone(counts), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counts.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

fn answer(challenges: &Challenges, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let found = (*method == Method::GET || *method == Method::HEAD)
        .then(|| path.strip_prefix(HTTP01_PREFIX))
        .flatten()
        .and_then(|token| challenges.http01(token));
    let (status, body) = match found {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_armed_tokens_and_disarms_on_drop() {
        let c = Arc::new(Challenges::default());
        let armed = c.arm_http01("tok", "tok.thumb");
        let ok = answer(&c, &Method::GET, "/.well-known/acme-challenge/tok");
        assert_eq!(ok.status(), StatusCode::OK);
        for (m, p) in [(Method::GET, "/.well-known/acme-challenge/other"), (Method::POST, "/.well-known/acme-challenge/tok"), (Method::GET, "/tok")] {
            assert_eq!(answer(&c, &m, p).status(), StatusCode::NOT_FOUND, "{m} {p}");
        }
        drop(armed);
        assert_eq!(answer(&c, &Method::GET, "/.well-known/acme-challenge/tok").status(), StatusCode::NOT_FOUND);

        let armed = c.arm_tls_alpn("Scim.Example.com", &[7u8; 32]).unwrap();
        assert!(c.tls_alpn("scim.example.com").is_some());
        assert!(c.tls_alpn("other.example.com").is_none());
        drop(armed);
        assert!(c.tls_alpn("scim.example.com").is_none());
    }

    #[test]
    fn one_address_holds_at_most_four_connections() {
        let counts = Arc::default();
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..HTTP01_PER_ADDRESS).map(|_| AddressSlot::take(&counts, ip).unwrap()).collect();
        assert!(AddressSlot::take(&counts, ip).is_none());
        assert!(AddressSlot::take(&counts, "192.0.2.2".parse().unwrap()).is_some());
        drop(held);
        assert!(AddressSlot::take(&counts, ip).is_some());
    }
}
