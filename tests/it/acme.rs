//! Issue 24: certificates by ACME against a real ACME server, Debian's `pebble` (with
//! `pebble-challtestsrv` as its DNS, answering 127.0.0.1 for every name), started on
//! loopback per test. The real `scimd serve` binary obtains a certificate by TLS-ALPN-01
//! (and, in the second test, HTTP-01), a client trusting only pebble's root completes SCIM
//! requests, a 30-second lifetime makes it renew while serving (no failed request across
//! the swap), and pebble stopped during a renewal leaves the old certificate in use with
//! a WARN and a retry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::support::{basic, binary_data_dir, TempDir, ADMIN, PASSWORD};

const NAME: &str = "scim.acme.test";

/// pebble and its DNS; both killed on drop.
struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    directory: String,
    mgmt: SocketAddr,
    /// The CA that signed pebble's own HTTPS certificate (scimd's `--acme-ca`).
    tls_ca: PathBuf,
    /// pebble's issuing root, fetched after start (new at every start).
    root: PathBuf,
    log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Skips outside CI when pebble is not installed (`apt-get install pebble`); CI must run it.
fn pebble_installed() -> bool {
    let found = Path::new("/usr/bin/pebble").exists() && Path::new("/usr/bin/pebble-challtestsrv").exists();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must run the ACME tests: install Debian's pebble package");
        println!("skipped: pebble is not installed (apt-get install pebble)");
    }
    found
}

impl Pebble {
    /// pebble validating TLS-ALPN-01 on `tls_port` and HTTP-01 on `http_port`, issuing
    /// certificates valid for `validity_secs`.
    async fn start(dir: &Path, tls_port: u16, http_port: u16, validity_secs: u64, va_sleep_secs: u64) -> Pebble {
        let certs = scimd::certs::generate(&dir.join("pebble-tls"), &["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let (listen, mgmt) = (free_tcp_port(), free_tcp_port());
        let dns_port = free_udp_port();
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": certs.server_cert,
            "privateKey": certs.server_key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.join("pebble.log");
        let dns = Command::new("/usr/bin/pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-management", &format!("127.0.0.1:{}", free_tcp_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pebble = Command::new("/usr/bin/pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // A random sleep before validating of at most `va_sleep_secs` (0: none), no
            // rejected nonces, every order validated afresh (a renewal proves the name again
            // while scimd serves).
            .envs(if va_sleep_secs == 0 { vec![("PEBBLE_VA_NOSLEEP", "1".to_string())] } else { vec![("PEBBLE_VA_SLEEPTIME", va_sleep_secs.to_string())] })
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(dir.join("pebble.err")).unwrap()))
            .spawn()
            .unwrap();
        let p = Pebble {
            pebble: Some(pebble),
            dns,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            mgmt: format!("127.0.0.1:{mgmt}").parse().unwrap(),
            tls_ca: certs.ca_cert,
            root: dir.join("pebble-root.pem"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let root = loop {
            match get(p.mgmt, "localhost", &[&p.tls_ca], "/roots/0").await {
                Ok((200, body)) => break body,
                other => {
                    assert!(Instant::now() < deadline, "pebble did not start: {other:?}\n{}", std::fs::read_to_string(&p.log).unwrap_or_default());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        std::fs::write(&p.root, root).unwrap();
        p
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn tls_client(cas: &[&Path], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One GET on a new TLS connection to `addr` as `name`: (status, body) and the leaf
/// certificate served, or why it failed.
async fn get_with_cert(addr: SocketAddr, name: &str, cas: &[&Path], path: &str, auth: Option<&str>) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tls_client(cas, &[b"http/1.1"]).connect(ServerName::try_from(name.to_string()).unwrap(), tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", name);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    Ok((status, body, leaf))
}

async fn get(addr: SocketAddr, name: &str, cas: &[&Path], path: &str) -> Result<(u16, Vec<u8>), String> {
    get_with_cert(addr, name, cas, path, None).await.map(|(s, b, _)| (s, b))
}

/// `scimd serve` on `listen` with ACME settings; its log in a file.
struct Scimd {
    child: Child,
    log: PathBuf,
    data: PathBuf,
}

impl Drop for Scimd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Scimd {
    fn start(data: &Path, listen: u16, env: &[(&str, String)]) -> Scimd {
        let args = ["serve".to_string(), "--listen".into(), format!("127.0.0.1:{listen}"), "--data-dir".into(), data.display().to_string()];
        Scimd::start_with(data, &args, env)
    }

    fn start_with(data: &Path, args: &[String], env: &[(&str, String)]) -> Scimd {
        let log = data.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_scimd"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("SCIMD_METRICS_LISTEN", "127.0.0.1:0")
            .env_remove("SCIMD_CONFIG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Scimd { child, log, data: data.to_path_buf() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for_log(&self, text: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log().matches(text).count() < count {
            assert!(Instant::now() < deadline, "the log never said {text:?} {count} times:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn metrics_addr(&self) -> SocketAddr {
        let log = self.log();
        log.split("metrics on http://").nth(1).and_then(|r| r.split('/').next()).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no metrics address in: {log}"))
    }

    async fn operator(&self, path: &str) -> String {
        let tcp = tokio::net::TcpStream::connect(self.metrics_addr()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(path).header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn check(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_scimd")).args(["check", "--data-dir"]).arg(&self.data).args(args).env_remove("SCIMD_CONFIG").output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The README's "Automatic certificates" steps on `packaging/scimd.toml`, as an operator
/// follows them: `listen` changed, the `acme_` lines where `cert` and `key` were. Only the
/// test's address, name and data directory differ from the example's, and the test CA is
/// named as the README says for "any other RFC 8555 CA" (its directory URL and `acme_ca`).
fn readme_config(port: u16, data: &Path, pebble: &Pebble) -> String {
    let readme = include_str!("../../README.md");
    let section = readme.split("## Automatic certificates").nth(1).expect("the README section");
    let block = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its toml block");
    assert_eq!(block.lines().count(), 3, "the three lines an operator needs: {block}");
    let block = block.replace("0.0.0.0:443", &format!("127.0.0.1:{port}")).replace("scim.example.com", NAME);
    let example = include_str!("../../packaging/scimd.toml");
    let mut out = String::new();
    for line in example.lines() {
        let key = line.split(" =").next().unwrap_or_default();
        match key {
            "cert" => out.extend(block.lines().filter(|l| l.starts_with("acme_")).map(|l| format!("{l}\n"))),
            "key" => {}
            "listen" => out.extend(block.lines().filter(|l| l.starts_with("listen")).map(|l| format!("{l}\n"))),
            "data_dir" => out.push_str(&format!("data_dir = {:?}\n", data.display().to_string())),
            _ => out.push_str(&format!("{line}\n")),
        }
    }
    assert!(out.contains("acme_email") && !out.contains("\ncert ="), "{out}");
    format!("{out}acme_directory = {:?}\nacme_ca = {:?}\n", pebble.directory, pebble.tls_ca.display().to_string())
}

fn acme_env(pebble: &Pebble) -> Vec<(&'static str, String)> {
    vec![
        ("SCIMD_ACME_DOMAINS", NAME.to_string()),
        ("SCIMD_ACME_EMAIL", "ops@acme.test".to_string()),
        ("SCIMD_ACME_DIRECTORY", pebble.directory.clone()),
        ("SCIMD_ACME_CA", pebble.tls_ca.display().to_string()),
    ]
}

/// Polls until a SCIM request as `NAME`, trusting only pebble's root, succeeds.
async fn first_certificate(addr: SocketAddr, pebble: &Pebble, scimd: &Scimd) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let auth = basic(ADMIN, PASSWORD);
    loop {
        match get_with_cert(addr, NAME, &[&pebble.root], "/t/acme/scim/v2/Users", Some(&auth)).await {
            Ok((200, _, leaf)) => return leaf,
            other => {
                assert!(Instant::now() < deadline, "no certificate from pebble within 60 s: {other:?}\n{}", scimd.log());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_obtains_renews_while_serving_and_keeps_the_old_certificate_when_the_ca_is_gone() {
    if !pebble_installed() {
        return;
    }
    let dir = TempDir::new("acme-alpn");
    let data = binary_data_dir(dir.path()).await;
    let port = free_tcp_port();
    let mut pebble = Pebble::start(dir.path(), port, free_tcp_port(), 30, 3).await;
    let config = dir.path().join("scimd.toml");
    std::fs::write(&config, readme_config(port, data.root(), &pebble)).unwrap();
    let config_arg = config.display().to_string();
    let scimd = Scimd::start_with(data.root(), &["serve".into(), "--config".into(), config_arg.clone()], &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let first = first_certificate(addr, &pebble, &scimd).await;
    // A connection made now keeps working across the swap (on the certificate it began with).
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let kept = tls_client(&[&pebble.root], &[b"http/1.1"]).connect(ServerName::try_from(NAME).unwrap(), tcp).await.unwrap();
    let (mut kept, conn) = hyper::client::conn::http1::handshake(TokioIo::new(kept)).await.unwrap();
    tokio::spawn(conn);
    let auth = basic(ADMIN, PASSWORD);
    let users = || hyper::Request::get("/t/acme/scim/v2/Users").header("host", NAME).header("authorization", &auth).body(Empty::<Bytes>::new()).unwrap();
    // (Its first request now: a connection that says nothing is closed as a stalled handshake.)
    assert_eq!(kept.send_request(users()).await.unwrap().status(), 200);
    scimd.wait_for_log("obtained and now serving a certificate for scim.acme.test", 1, Duration::from_secs(5)).await;
    let log = scimd.log();
    for step in ["registered ACME account", "ordering a certificate for", "obtained and now serving"] {
        assert!(log.lines().any(|l| l.contains(step) && l.contains(" INFO ")), "{step} at INFO: {log}");
    }
    assert!(log.contains("registered ACME account") && log.contains("ordering a certificate for scim.acme.test") && log.contains("(no certificate yet)"), "{log}");

    // The files: 0600 in a 0700 directory; the account's key is among them.
    use std::os::unix::fs::PermissionsExt;
    let acme = data.acme();
    assert_eq!(std::fs::metadata(&acme.dir).unwrap().permissions().mode() & 0o777, 0o700);
    for f in [&acme.account, &acme.cert, &acme.key, &acme.state] {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
    }

    // A ClientHello offering only acme-tls/1 outside a validation gets no certificate: the
    // challenge answers exist only while an order is proving the name.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let alpn_only = tls_client(&[&pebble.root], &[b"acme-tls/1"]).connect(ServerName::try_from(NAME).unwrap(), tcp).await;
    assert!(alpn_only.is_err(), "a TLS-ALPN-01 handshake outside an order must fail");

    // Renewal while serving: requests on fresh connections throughout, none may fail, until
    // the certificate served changes (two thirds of 30 s after issuance).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ok, mut second) = (0, None);
    while second.is_none() {
        assert!(Instant::now() < deadline, "no renewal within 60 s:\n{}", scimd.log());
        match get_with_cert(addr, NAME, &[&pebble.root], "/t/acme/scim/v2/Users", Some(&auth)).await {
            Ok((200, _, leaf)) => {
                ok += 1;
                if leaf != first {
                    second = Some(leaf);
                }
            }
            other => panic!("a request failed during the renewal after {ok} good ones: {other:?}\n{}", scimd.log()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = second.unwrap();
    assert!(ok > 10, "{ok} requests across the renewal");
    assert_eq!(kept.send_request(users()).await.expect("the connection opened before the swap").status(), 200);
    scimd.wait_for_log("obtained and now serving a certificate", 2, Duration::from_secs(5)).await;
    let metrics = scimd.operator("/metrics").await;
    assert!(metrics.contains("scimd_acme_orders_total{result=\"valid\"} 2"), "{metrics}");
    let expiry: i64 = metrics.lines().find_map(|l| l.strip_prefix("scimd_certificate_expiry_seconds ")).expect("the expiry gauge").parse().unwrap();
    assert!((0..=31).contains(&expiry), "{expiry}");

    // The CA goes away during the next renewal (pebble sleeps up to 3 s before validating):
    // a WARN with the retry, the old certificate still served, and the operator told.
    scimd.wait_for_log("ordering a certificate for scim.acme.test", 3, Duration::from_secs(40)).await;
    pebble.stop();
    scimd.wait_for_log("certificate order for scim.acme.test failed (attempt 1)", 1, Duration::from_secs(40)).await;
    let log = scimd.log();
    let warn = log.lines().find(|l| l.contains("failed (attempt 1)")).unwrap();
    assert!(warn.contains("WARN") && warn.contains("still serving the certificate valid until") && warn.contains("retrying in"), "{warn}");
    let (status, _, leaf) = get_with_cert(addr, NAME, &[&pebble.root], "/t/acme/scim/v2/Users", Some(&auth)).await.unwrap();
    assert_eq!((status, leaf == second), (200, true), "the old certificate keeps serving");
    scimd.wait_for_log("failed (attempt 2)", 1, Duration::from_secs(20)).await;
    let health = scimd.operator("/healthz").await;
    assert!(health.contains("\"certificate\"") && health.contains("failed orders"), "{health}");
    let check = scimd.check(&["--config", &config_arg]);
    assert!(check.contains("ACME: certificate for scim.acme.test") && check.contains("failed orders"), "{check}");
    assert!(check.contains("renewal from") && check.contains("cannot connect"), "the renewal time and the last error: {check}");
    let metrics = scimd.operator("/metrics").await;
    let failed: u64 = metrics.lines().find_map(|l| l.strip_prefix("scimd_acme_orders_total{result=\"failed\"} ")).unwrap().parse().unwrap();
    assert!(failed >= 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_on_its_own_listener_and_files_mode_is_exclusive() {
    if !pebble_installed() {
        return;
    }
    let dir = TempDir::new("acme-http");
    let data = binary_data_dir(dir.path()).await;
    let (port, http_port) = (free_tcp_port(), free_tcp_port());
    let pebble = Pebble::start(dir.path(), free_tcp_port(), http_port, 3600, 0).await;
    let mut env = acme_env(&pebble);
    env.push(("SCIMD_ACME_HTTP_LISTEN", format!("127.0.0.1:{http_port}")));
    let scimd = Scimd::start(data.root(), port, &env);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    first_certificate(addr, &pebble, &scimd).await;
    assert!(scimd.log().contains("by http-01"), "{}", scimd.log());
    // The HTTP-01 listener answers nothing but armed tokens.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/.well-known/acme-challenge/guess").header("host", NAME).body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 404);
    let check = scimd.check(&[]);
    assert!(check.contains("ACME: certificate for scim.acme.test") && check.contains("by http-01"), "{check}");
    assert!(!check.contains("failed orders"), "{check}");
    drop(scimd);

    // A restart with a valid certificate serves it without ordering (a CA's rate limits).
    let scimd = Scimd::start(data.root(), port, &env);
    let leaf = first_certificate(addr, &pebble, &scimd).await;
    scimd.wait_for_log("serving the certificate on disk for scim.acme.test", 1, Duration::from_secs(10)).await;
    assert!(!scimd.log().contains("ordering a certificate"), "{}", scimd.log());
    drop(scimd);
    // A name added: the next start orders for both.
    env[0].1 = format!("{NAME},api.acme.test");
    let scimd = Scimd::start(data.root(), port, &env);
    scimd.wait_for_log("obtained and now serving a certificate for scim.acme.test, api.acme.test", 1, Duration::from_secs(60)).await;
    assert!(scimd.log().contains("(the certificate's names are not those of acme_domains)"), "{}", scimd.log());
    let (status, _, both) = get_with_cert(addr, "api.acme.test", &[&pebble.root], "/t/acme/scim/v2/Users", Some(&basic(ADMIN, PASSWORD))).await.unwrap();
    assert_eq!((status, both != leaf), (200, true));
    drop(scimd);
    // The name removed again: replaced at once too, the certificate not naming it.
    env[0].1 = NAME.to_string();
    let scimd = Scimd::start(data.root(), port, &env);
    scimd.wait_for_log("obtained and now serving a certificate for scim.acme.test,", 1, Duration::from_secs(60)).await;
    assert!(scimd.log().contains("(the certificate's names are not those of acme_domains)"), "{}", scimd.log());
    drop(scimd);
    // Its key deleted: the pair does not load, so it is replaced at once (never served half).
    std::fs::remove_file(data.acme().key).unwrap();
    let scimd = Scimd::start(data.root(), port, &env);
    scimd.wait_for_log("obtained and now serving a certificate", 1, Duration::from_secs(60)).await;
    assert!(scimd.log().contains("(the certificate and key on disk do not load"), "{}", scimd.log());
    first_certificate(addr, &pebble, &scimd).await;
    drop(scimd);
    // Another directory (the same pebble under another name, as staging then production):
    // a certificate from it at once, with an account of its own beside the first.
    env[2].1 = pebble.directory.replace("127.0.0.1", "localhost");
    let scimd = Scimd::start(data.root(), port, &env);
    scimd.wait_for_log("obtained and now serving a certificate", 1, Duration::from_secs(60)).await;
    let log = scimd.log();
    assert!(log.contains("(the certificate is from another ACME directory)") && log.contains("registered ACME account"), "{log}");
    let accounts: serde_json::Value = serde_json::from_slice(&std::fs::read(data.acme().account).unwrap()).unwrap();
    assert_eq!(accounts.as_array().map(Vec::len), Some(2), "{accounts}");
    drop(scimd);

    // The CA refuses: this server proves names by TLS-ALPN-01 on a port pebble does not
    // validate on. The WARN gives the CA's reason.
    let other = binary_data_dir(&dir.path().join("other")).await;
    let scimd = Scimd::start(other.root(), free_tcp_port(), &acme_env(&pebble));
    scimd.wait_for_log("failed (attempt 1)", 1, Duration::from_secs(60)).await;
    let warn = scimd.log().lines().find(|l| l.contains("failed (attempt 1)")).unwrap().to_string();
    assert!(warn.contains("WARN") && warn.contains("tls-alpn-01 challenge") && warn.contains("no certificate yet"), "{warn}");
    drop(scimd);

    // --cert/--key and ACME together: refused, saying why.
    let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cert", "c.pem", "--key", "k.pem", "--acme-domain", NAME, "--data-dir"])
        .arg(data.root())
        .env_remove("SCIMD_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("exclusive"), "{err}");
}

/// No CA reachable (nothing listens at the directory): no certificate to serve, so
/// handshakes fail, and the operator is told by the log, `/healthz` and `scimd check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_yet_handshakes_fail_and_the_operator_is_told() {
    let dir = TempDir::new("acme-none");
    let data = binary_data_dir(dir.path()).await;
    let port = free_tcp_port();
    let ca = scimd::certs::generate(&dir.path().join("ca"), &["localhost".to_string()]).unwrap();
    let env = [
        ("SCIMD_ACME_DOMAINS", NAME.to_string()),
        ("SCIMD_ACME_DIRECTORY", format!("https://127.0.0.1:{}/dir", free_tcp_port())),
        ("SCIMD_ACME_CA", ca.ca_cert.display().to_string()),
    ];
    let scimd = Scimd::start(data.root(), port, &env);
    scimd.wait_for_log("failed (attempt 1)", 1, Duration::from_secs(30)).await;
    let warn = scimd.log();
    assert!(warn.contains("no certificate yet: TLS handshakes fail until one is obtained"), "{warn}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let failed = get_with_cert(addr, NAME, &[&ca.ca_cert], "/healthz", None).await;
    assert!(matches!(&failed, Err(e) if e.starts_with("TLS")), "{failed:?}");
    let health = scimd.operator("/healthz").await;
    assert!(health.contains("\"degraded\"") && health.contains("no ACME certificate yet for scim.acme.test"), "{health}");
    let metrics = scimd.operator("/metrics").await;
    assert!(!metrics.lines().any(|l| l.starts_with("scimd_certificate_expiry_seconds ")), "no gauge without a certificate: {metrics}");
    let check = scimd.check(&[]);
    assert!(check.contains("ERROR ACME: no certificate obtained yet for scim.acme.test"), "{check}");
    // A restart keeps the wait (minutes, for a 90-day certificate): no order at once.
    drop(scimd);
    let scimd = Scimd::start(data.root(), port, &env);
    scimd.wait_for_log("1 failed orders before this start; the next attempt waits until", 1, Duration::from_secs(30)).await;
    assert!(!scimd.log().contains("ordering a certificate"), "{}", scimd.log());
}

/// With `cert`/`key` files too: the expiry gauge, and the operator's `/healthz` degraded
/// from 14 days before the certificate expires.
#[tokio::test]
async fn files_certificate_expiry_is_a_gauge_and_degrades_health_within_fourteen_days() {
    let s = crate::support::TestServer::start().await;
    let addr = s.metrics_addr.expect("the operator listener is on");
    let (_, metrics) = crate::metrics::scrape(addr, "/metrics").await;
    let left: i64 = metrics.lines().find_map(|l| l.strip_prefix("scimd_certificate_expiry_seconds ")).expect("the gauge").parse().unwrap();
    assert!(left > 14 * 86_400, "{left}");
    let (_, health) = crate::metrics::scrape(addr, "/healthz").await;
    assert!(!health.contains("certificate"), "{health}");
    // The server's clock moved to 10 days before the certificate's notAfter.
    s.shift_clock_ms((left - 10 * 86_400) * 1000);
    let (_, health) = crate::metrics::scrape(addr, "/healthz").await;
    assert!(health.contains("\"certificate\"") && health.contains("(10 days)") && health.contains("renew it"), "{health}");
}
