//! instant-acme's HTTP client: one HTTP/1.1 request per TLS connection (rustls, ring),
//! trusting the public roots (webpki-roots) or only the `acme_ca` file's. An ACME exchange
//! is a dozen small requests a renewal, so no pool; each request is bounded in time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Connect, handshake, send and read the whole response within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An ACME response (a directory, an order, a certificate chain) is a few KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct Https {
    tls: tokio_rustls::TlsConnector,
}

impl Https {
    /// `ca`: PEM roots to trust instead of the public ones (a private or test CA).
    pub fn new(ca: Option<&std::path::Path>) -> Result<Https, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read acme_ca {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("cannot parse acme_ca {}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("acme_ca {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("acme_ca {} holds no certificate", path.display()));
                }
            }
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Https { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }
}

fn other(text: String) -> instant_acme::Error {
    instant_acme::Error::Other(text.into())
}

impl HttpClient for Https {
    fn request(&self, req: hyper::Request<BodyWrapper<Bytes>>) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let url = req.uri().to_string();
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(result) => result,
                Err(_) => Err(other(format!("{url}: no answer within {}s", REQUEST_TIMEOUT.as_secs()))),
            }
        })
    }
}

/// Each address the name has in turn, each within `CONNECT_TIMEOUT`: an IPv6 address that
/// swallows packets must not use up the request's whole deadline before IPv4 is tried.
async fn connect(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in tokio::net::lookup_host((host, port)).await? {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{addr}: no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        }
    }
    Err(last)
}

async fn send(tls: tokio_rustls::TlsConnector, mut req: hyper::Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, instant_acme::Error> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(other(format!("{uri}: ACME is spoken over https only")));
    }
    let authority = uri.authority().ok_or_else(|| other(format!("{uri}: no host")))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(443);
    let tcp = connect(&host, port).await.map_err(|e| other(format!("cannot connect to {authority}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.clone()).map_err(|e| other(format!("{host}: {e}")))?;
    let stream = tls.connect(name, tcp).await.map_err(|e| other(format!("TLS with {authority}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| other(format!("{authority}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The connection speaks origin-form with a Host header, as HTTP/1.1 servers expect.
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    *req.uri_mut() = path.parse().map_err(|e| other(format!("{uri}: {e}")))?;
    let host_header = hyper::header::HeaderValue::from_str(authority.as_str()).map_err(|e| other(format!("{authority}: {e}")))?;
    req.headers_mut().insert(hyper::header::HOST, host_header);
    let resp = sender.send_request(req).await.map_err(|e| other(format!("{uri}: {e}")))?;
    // Read here, inside the request's deadline and size limit, not later by instant-acme.
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_RESPONSE_BYTES))
        .await
        .map_err(|e| other(format!("{uri}: response body: {e}")))?
        .to_bytes();
    Ok(BytesResponse::from(hyper::Response::from_parts(parts, http_body_util::Full::new(body))))
}
