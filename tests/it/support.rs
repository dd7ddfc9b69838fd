//! `TestServer`: a real scimd in-process on 127.0.0.1:0 over real TLS (a CA made for the
//! test), with its SQLite files in a fresh temp directory, and a minimal HTTPS client.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use scimd::config::ServeConfig;
use scimd::http::server::RunningServer;
use scimd::store::Store;
use scimd::tenant::{DataDir, TenantId};
use serde_json::Value;

pub const ADMIN: &str = "scim-admin";
pub const PASSWORD: &str = "correct horse battery staple";
/// Tests lower the KDF cost through configuration (production default: 600,000).
pub const TEST_KDF_ITERATIONS: u32 = 1_000;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("scimd-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

impl Response {
    /// Asserts a SCIM error with this status and (if given) scimType.
    #[track_caller]
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "body: {}", self.body);
        assert_eq!(self.body["status"], status.to_string());
        assert_eq!(self.body["scimType"].as_str(), scim_type, "body: {}", self.body);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

/// An HTTPS/1.1 client for one server, trusting the test CA.
#[derive(Clone)]
pub struct Client {
    pub addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    pub fn new(addr: std::net::SocketAddr, ca: &Path) -> Client {
        Client { addr, tls: connector(ca, None) }
    }

    /// A request to an absolute path with explicit headers.
    pub async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Response {
        self.try_raw(method, path, headers, body).await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `raw` for a test where the connection may fail (a server stopped or going away).
    pub async fn try_raw(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Result<Response, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let tcp = tokio::net::TcpStream::connect(self.addr).await.map_err(|x| e(&x))?;
        let tls = self.tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.map_err(|x| e(&x))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|x| e(&x))?;
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header("host", format!("localhost:{}", self.addr.port()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|x| e(&x))?;
        let resp = sender.send_request(req).await.map_err(|x| e(&x))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp.into_body().collect().await.map_err(|x| e(&x))?.to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Response { status, headers, body, raw })
    }

    /// A request with an `Authorization` header value.
    pub async fn as_(&self, auth: &str, method: Method, path: &str) -> Response {
        self.raw(method, path, &[("authorization", auth)], None).await
    }
}

pub struct TestServer {
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub dir: TempDir,
    pub addr: std::net::SocketAddr,
    pub ca: PathBuf,
    running: Option<RunningServer>,
    pub client: Client,
    pub auth: String,
    /// Milliseconds added to the real time (tests move the server's clock forward).
    pub clock_offset: Arc<std::sync::atomic::AtomicI64>,
}

pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

impl TestServer {
    /// A server with tenants `acme` and `other`, each with admin `scim-admin`. Most
    /// protocol tests use arbitrary userNames, so these tenants do not require
    /// userName = email; `start_with_settings` runs with any `tenant.toml` (the
    /// provisioning-semantics tests use the defaults).
    pub async fn start() -> TestServer {
        Self::start_with_settings("require_username_is_email = false\n", |_| {}).await
    }

    pub async fn start_with_settings(tenant_toml: &str, tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let dir = TempDir::new("srv");
        let data = DataDir::new(dir.path().join("data"));
        for tenant in ["acme", "other"] {
            let id = TenantId::parse(tenant).unwrap();
            data.create_tenant(&id).unwrap();
            if !tenant_toml.is_empty() {
                std::fs::write(data.settings_file(&id), tenant_toml).unwrap();
            }
            let store = Store::open(&data.database(&id)).unwrap();
            scimd::commands::add_admin(&store, ADMIN, PASSWORD, TEST_KDF_ITERATIONS).await.unwrap();
            store.close();
        }
        let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let mut config = ServeConfig {
            data_dir: data.root().to_path_buf(),
            acme: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some((certs.server_cert.clone(), certs.server_key.clone())),
            public_url: None,
            kdf_iterations: TEST_KDF_ITERATIONS,
            max_body_bytes: 64 * 1024,
            limits: scimd::config::Limits::default(),
            tenants: scimd::tenant::TenantLimits::default(),
            max_open_tenants_given: false,
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        };
        tweak(&mut config);
        let clock_offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let offset = Arc::clone(&clock_offset);
        let clock: scimd::clock::Clock =
            Arc::new(move || scimd::clock::UtcMillis(scimd::clock::UtcMillis::now().0 + offset.load(Ordering::SeqCst)));
        let running = scimd::commands::start_server_with_clock(&config, clock).await.unwrap();
        let client = Client::new(running.addr, &certs.ca_cert);
        TestServer {
            metrics_addr: running.metrics_addr,
            addr: running.addr,
            ca: certs.ca_cert,
            running: Some(running),
            client,
            dir,
            auth: basic(ADMIN, PASSWORD),
            clock_offset,
        }
    }

    /// Moves the server's clock forward.
    pub fn advance_days(&self, days: i64) {
        self.shift_clock_ms(days * 86_400_000);
    }

    /// Steps the server's wall clock by `ms` (negative: back), as an NTP step would.
    pub fn shift_clock_ms(&self, ms: i64) {
        self.clock_offset.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn data(&self) -> DataDir {
        DataDir::new(self.dir.path().join("data"))
    }

    /// Opens a tenant's database file directly (read-only queries in assertions).
    pub fn db(&self, tenant: &str) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data().database(&TenantId::parse(tenant).unwrap())).unwrap()
    }

    pub fn count(&self, tenant: &str, sql: &str) -> i64 {
        self.db(tenant).query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Shuts the server down gracefully; the data directory lives on in the returned guard.
    pub async fn stop(mut self) -> TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir
    }

    /// A request to an absolute path with explicit headers.
    pub async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Response {
        self.client.raw(method, path, headers, body).await
    }

    /// A request under tenant `acme`'s SCIM base URL, authenticated as its admin.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call_tenant("acme", method, path, body).await
    }

    pub async fn call_tenant(&self, tenant: &str, method: Method, path: &str, body: Option<Value>) -> Response {
        let full = format!("/t/{tenant}/scim/v2{path}");
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let mut headers = vec![("authorization", self.auth.as_str())];
        if bytes.is_some() {
            headers.push(("content-type", "application/scim+json"));
        }
        self.raw(method, &full, &headers, bytes).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Response {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a user and returns its id.
    pub async fn user(&self, user_name: &str) -> String {
        let r = self.post("/Users", serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }
}

/// A TLS client trusting `ca`, optionally limited to one protocol version.
pub fn connector(ca: &Path, version: Option<&'static rustls::SupportedProtocolVersion>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The real `scimd serve` binary on 127.0.0.1:0 over a data directory, with its log in a
/// file. Killed on drop, so a failing test leaves no process behind.
pub struct ServeBinary {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub log_path: PathBuf,
}

impl ServeBinary {
    pub async fn start(data: &Path, cert: &Path, key: &Path, log_dir: &Path, rust_log: &str) -> ServeBinary {
        Self::start_with_env(data, cert, key, log_dir, rust_log, &[]).await
    }

    /// Like `start`, with extra `SCIMD_*` settings in the child's environment.
    pub async fn start_with_env(data: &Path, cert: &Path, key: &Path, log_dir: &Path, rust_log: &str, env: &[(&str, &str)]) -> ServeBinary {
        Self::start_limited(data, cert, key, log_dir, rust_log, env, None).await
    }

    /// Like `start_with_env`, with the child's open-file limit (soft and hard) at `nofile`.
    pub async fn start_limited(data: &Path, cert: &Path, key: &Path, log_dir: &Path, rust_log: &str, env: &[(&str, &str)], nofile: Option<u64>) -> ServeBinary {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let log_path = log_dir.join(format!("serve-{}.log", std::process::id()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_scimd"));
        if let Some(n) = nofile {
            let limit = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
            // SAFETY: setrlimit is async-signal-safe; it only changes the child's own limit.
            unsafe {
                command.pre_exec(move || if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
            }
        }
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .env("RUST_LOG", rust_log)
            .env("SCIMD_METRICS_LISTEN", "127.0.0.1:0")
            .env_remove("SCIMD_CONFIG")
            .envs(env.iter().copied())
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
            .spawn()
            .unwrap();
        let mut server = ServeBinary { child, addr: "127.0.0.1:1".parse().unwrap(), log_path };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = server.log();
            if let Some(rest) = log.split("serving on https://").nth(1) {
                server.addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return server;
            }
            assert!(std::time::Instant::now() < deadline, "scimd serve did not start: {log}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The operator listener's address, as the start-up line names it.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let log = self.log();
        log.split("metrics on http://").nth(1).and_then(|r| r.split('/').next()).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no metrics address in: {log}"))
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap().success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Polls the log until it contains `text` (bounded).
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !self.log().contains(text) {
            assert!(std::time::Instant::now() < deadline, "the log never said {text:?}:\n{}", self.log());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServeBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory with tenant `acme` and its admin, ready for `ServeBinary`.
pub async fn binary_data_dir(dir: &Path) -> DataDir {
    let data = DataDir::new(dir.join("data"));
    add_tenant(&data, "acme").await;
    data
}

/// Tenant `name` with the admin `ADMIN`, not requiring userName = email.
pub async fn add_tenant(data: &DataDir, name: &str) {
    let id = TenantId::parse(name).unwrap();
    data.create_tenant(&id).unwrap();
    std::fs::write(data.settings_file(&id), "require_username_is_email = false\n").unwrap();
    let store = Store::open(&data.database(&id)).unwrap();
    scimd::commands::add_admin(&store, ADMIN, PASSWORD, TEST_KDF_ITERATIONS).await.unwrap();
    store.close();
}

/// A client trusting every CA file given, keeping one HTTP/1.1 connection open.
pub async fn connect(addr: std::net::SocketAddr, cas: &[&std::path::Path]) -> (hyper::client::conn::http1::SendRequest<Full<Bytes>>, CertificateDer<'static>) {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    (sender, peer)
}

pub async fn send(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path).header("host", "localhost").header("authorization", basic(ADMIN, PASSWORD));
    if body.is_some() {
        req = req.header("content-type", "application/scim+json");
    }
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let resp = sender.send_request(req.body(Full::new(Bytes::from(bytes))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}


/// Like `send`, but `None` instead of a panic when the connection fails (a killed server).
pub async fn try_send(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
    try_send_as(sender, &basic(ADMIN, PASSWORD), method, path, body).await
}

/// `try_send` with the `Authorization` header value given (a bearer token).
pub async fn try_send_as(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = Request::builder().method(method).uri(path).header("host", "localhost").header("authorization", auth);
    if body.is_some() {
        req = req.header("content-type", "application/scim+json");
    }
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let resp = sender.send_request(req.body(Full::new(Bytes::from(bytes))).ok()?).await.ok()?;
    let status = resp.status().as_u16();
    let raw = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&raw).unwrap_or(Value::Null)))
}

/// A request on a new TLS connection from a chosen loopback address (127.0.0.0/8 is all
/// this host), for tests of per-address limits.
pub async fn from_address(s: &TestServer, addr: &str, method: Method, path: &str, auth: &str) -> Response {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{addr}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(s.addr).await.unwrap();
    let tls = connector(&s.ca, None).connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder().method(method).uri(path).header("host", "localhost").header("authorization", auth).body(Full::new(Bytes::new())).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    Response { status, headers, body: serde_json::from_slice(&raw).unwrap_or(Value::Null), raw }
}

/// Runs the real `scimd` binary with `args` on the server's data directory (as the operator
/// would, from another process): (success, stdout + stderr).
pub fn scimd_cli(s: &TestServer, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(args)
        .arg("--data-dir")
        .arg(s.data().root())
        .env("SCIMD_KDF_ITERATIONS", "1000")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// An IdP request body from tests/fixtures/ (Okta's and Microsoft's documented requests),
/// with each `{{name}}` replaced by the id given for it.
pub fn fixture(name: &str, ids: &[(&str, &str)]) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (key, id) in ids {
        text = text.replace(&format!("{{{{{key}}}}}"), id);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}
