//! What the bench examples share (`#[path]`-included): their `--name value` arguments, and
//! an HTTPS client, one keep-alive HTTP/1.1 connection over rustls trusting only the CA
//! file it is given.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// A bench program's `--name value` arguments.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Args {
        Args(std::env::args().skip(1).collect())
    }

    pub fn get(&self, name: &str) -> Result<String, String> {
        let at = self.0.iter().position(|a| a == name).ok_or(format!("missing {name}"))?;
        self.0.get(at + 1).cloned().ok_or(format!("{name} needs a value"))
    }

    pub fn num(&self, name: &str) -> Result<usize, String> {
        self.get(name)?.parse().map_err(|e| format!("{name}: {e}"))
    }

    /// `name`'s number, or `default` when it is not given.
    pub fn num_or(&self, name: &str, default: usize) -> Result<usize, String> {
        if self.0.iter().any(|a| a == name) { self.num(name) } else { Ok(default) }
    }
}

/// One keep-alive HTTPS connection to the server.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    /// The `Authorization` header every request carries.
    pub authorization: String,
}

impl Conn {
    /// Connects to `authority` (`host:port`), verifying its certificate for `host`.
    pub async fn open(authority: &str, tls: &tokio_rustls::TlsConnector, authorization: String) -> Result<Conn, String> {
        let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string();
        let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
        let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Conn { sender, authority: authority.to_string(), authorization })
    }

    /// Sends one request and reads the whole answer (JSON, or `Null` when empty).
    pub async fn send(&mut self, method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let mut req = hyper::Request::builder().method(method).uri(url).header("host", &self.authority).header("authorization", &self.authorization);
        if body.is_some() {
            req = req.header("content-type", "application/scim+json");
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| e.to_string())?;
        // hyper refuses a request until the connection has finished with the previous one.
        self.sender.ready().await.map_err(|e| format!("{e:?}"))?;
        let resp = self.sender.send_request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, value))
    }
}

impl Conn {
    /// Sends a body already serialised and drains the answer, returning its status: a load
    /// generator that builds and parses nothing while it is timed (benches/custom.rs).
    #[allow(dead_code)]
    pub async fn send_raw(&mut self, method: &str, url: &str, body: Option<Bytes>) -> Result<u16, String> {
        let mut req = hyper::Request::builder().method(method).uri(url).header("host", &self.authority).header("authorization", &self.authorization);
        if body.is_some() {
            req = req.header("content-type", "application/scim+json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| format!("{e:?}"))?;
        let resp = self.sender.send_request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
    }
}

/// A TLS client trusting only the certificates in `ca`.
pub fn connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
