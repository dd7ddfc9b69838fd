//! The listener: TCP accept, TLS handshake (rustls, ring, TLS 1.2/1.3) within a deadline,
//! one hyper HTTP/1.1 connection per socket with header-read timeout and keep-alive,
//! connection limits (`admission`: who gets a slot), and a graceful drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use log::{debug, error, info, warn};
use rustls_pki_types::pem::PemObject;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::admission::Admission;
use super::metrics::Refusal;
use super::context::AppState;
use super::router;
use crate::config::Limits;

/// A stream whose first bytes were already read (to learn that the client speaks): they
/// are handed out again before the rest.
struct Prefixed<T> {
    prefix: Vec<u8>,
    inner: T,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<T> {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, data: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Closes a connection on which nothing has been read or written for `timeout` (idle
/// keep-alive connections). While a request is being handled the connection is not read,
/// so a slow handler is not cut off; hyper's header-read timeout covers slow senders.
struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, timeout: Duration) -> IdleIo<T> {
        IdleIo { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
    fn touch(&mut self) {
        self.deadline.as_mut().reset(tokio::time::Instant::now() + self.timeout);
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for IdleIo<T> {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle keep-alive timeout"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, data: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connections the kernel completes and queues for us to accept. `TcpListener::bind` asks
/// for 128, which a flood of reconnecting sockets overflows: the kernel then drops the SYN
/// of a real client, which retries only after a second (seen in tests/it/flood.rs). Linux
/// caps this at `net.core.somaxconn` (4096 by default since 5.4).
const LISTEN_BACKLOG: u32 = 4096;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are checked for a renewal (SIGHUP reloads at once).
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How often token expiry is checked (each token still warns at most once a day).
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The server's certificate, swapped in place on SIGHUP or when its files change (and by
/// ACME after a renewal), so a renewal needs no restart. Connections already made keep the
/// certificate they started with; a new pair that does not load is refused and the old one
/// keeps serving. Under ACME it may hold none yet (handshakes fail until the first order).
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    pair: Option<Arc<CertifiedKey>>,
    stamps: Option<FileStamps>,
    not_after: Option<crate::clock::UtcMillis>,
}

type FileStamps = (std::time::SystemTime, std::time::SystemTime);

fn stamps(cert: &Path, key: &Path) -> Option<FileStamps> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("unusable private key {}: {e}", key.display()))?;
    let pair = CertifiedKey::new(certs, signing);
    pair.keys_match().map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    Ok(Arc::new(pair))
}

fn loaded(pair: Arc<CertifiedKey>, cert: &Path, key: &Path) -> Loaded {
    let not_after = pair.cert.first().and_then(|der| crate::ops::maintenance::cert_not_after(der));
    Loaded { pair: Some(pair), stamps: stamps(cert, key), not_after }
}

impl ReloadableCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ReloadableCert>, String> {
        let pair = load_pair(cert, key)?;
        Ok(Arc::new(ReloadableCert { cert_path: cert.to_path_buf(), key_path: key.to_path_buf(), current: RwLock::new(loaded(pair, cert, key)) }))
    }

    /// ACME's files: what they hold if they load, else nothing yet (the renewal loop then
    /// orders at once; a damaged pair is replaced, never served).
    pub fn load_if_present(cert: &Path, key: &Path) -> Arc<ReloadableCert> {
        let current = match load_pair(cert, key) {
            Ok(pair) => loaded(pair, cert, key),
            Err(e) => {
                if cert.exists() || key.exists() {
                    warn!(target: "scimd::http", "not serving the ACME certificate on disk: {e}");
                }
                Loaded::default()
            }
        };
        Arc::new(ReloadableCert { cert_path: cert.to_path_buf(), key_path: key.to_path_buf(), current: RwLock::new(current) })
    }

    /// The served certificate's notAfter (`/metrics`, the operator's `/healthz`).
    pub fn not_after(&self) -> Option<crate::clock::UtcMillis> {
        self.current.read().ok().and_then(|c| c.not_after)
    }

    /// Loads the files again; on failure logs an ERROR and keeps serving the old pair.
    pub fn reload(&self) -> bool {
        match load_pair(&self.cert_path, &self.key_path) {
            Ok(pair) => {
                if let Ok(mut c) = self.current.write() {
                    *c = loaded(pair, &self.cert_path, &self.key_path);
                }
                info!(target: "scimd::http", "reloaded the TLS certificate from {}", self.cert_path.display());
                true
            }
            Err(e) => {
                error!(target: "scimd::http", "refusing the new TLS certificate, still serving the old one: {e}");
                // Do not retry the same broken files every check.
                if let Ok(mut c) = self.current.write() {
                    c.stamps = stamps(&self.cert_path, &self.key_path);
                }
                false
            }
        }
    }

    /// Reloads if either file changed since the last load (the periodic check).
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.cert_path, &self.key_path);
        let changed = self.current.read().map(|c| c.stamps != now).unwrap_or(false);
        if changed && now.is_some() {
            self.reload();
        }
    }

    fn pair(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.pair.clone())
    }
}

/// Which certificate a handshake gets: the served one, or, to a ClientHello offering
/// `acme-tls/1` alone (an ACME CA validating TLS-ALPN-01, RFC 8737), the challenge
/// certificate for the name it asks for while an order is proving it, and nothing else.
#[derive(Debug)]
struct Resolver {
    cert: Arc<ReloadableCert>,
    challenges: Option<Arc<crate::acme::Challenges>>,
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.challenges {
            let mut offered = hello.alpn().into_iter().flatten();
            if offered.next() == Some(crate::acme::ACME_TLS_ALPN) && offered.next().is_none() {
                return hello.server_name().and_then(|name| challenges.tls_alpn(name));
            }
        }
        self.cert.pair()
    }
}

/// TLS for the listener: the rustls config and the certificate handle to reload.
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert: Arc<ReloadableCert>,
    /// Files someone else renews are checked for changes; ACME's are reloaded by ACME
    /// (a check between its two writes would see a key that does not match).
    pub watch_files: bool,
}

impl Tls {
    /// The same certificate for the operator listener's console: HTTP/1.1 only, never an
    /// ACME challenge.
    pub fn for_console(&self) -> Arc<rustls::ServerConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn server_config(cert: Arc<ReloadableCert>, challenges: Option<Arc<crate::acme::Challenges>>, acme: bool) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Arc::new(Resolver { cert: Arc::clone(&cert), challenges });
    let alpn_challenges = resolver.challenges.is_some();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if alpn_challenges {
        config.alpn_protocols.push(crate::acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(Tls { config: Arc::new(config), cert, watch_files: !acme })
}

/// Loads a PEM certificate chain and private key into a rustls server config.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Tls, String> {
    server_config(ReloadableCert::load(cert, key)?, None, false)
}

/// TLS whose certificate ACME keeps in `paths` (none yet is fine) and whose resolver
/// answers TLS-ALPN-01 from `challenges` (`None` when the orders use HTTP-01: then this
/// listener never speaks `acme-tls/1`).
pub fn acme_tls_config(paths: &crate::tenant::AcmePaths, challenges: Option<Arc<crate::acme::Challenges>>) -> Result<Tls, String> {
    server_config(ReloadableCert::load_if_present(&paths.cert, &paths.key), challenges, true)
}

/// A server that is accepting connections.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if it is.
    pub metrics_addr: Option<SocketAddr>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    /// Released only once the tenants are closed (`commands::control`'s serve lock).
    lock: Option<std::fs::File>,
}

impl RunningServer {
    /// Stops accepting, drains in-flight requests (bounded) and closes the stores.
    /// Attaches the metrics listener, stopped with the server.
    pub fn with_metrics(mut self, addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> RunningServer {
        self.metrics_addr = Some(addr);
        self.background.push(task);
        self
    }

    /// Holds `lock` until the server has stopped and closed every tenant.
    pub fn with_lock(mut self, lock: std::fs::File) -> RunningServer {
        self.lock = Some(lock);
        self
    }

    /// Attaches a task that lives as long as the server (the command socket).
    pub fn with_task(mut self, task: tokio::task::JoinHandle<()>) -> RunningServer {
        self.background.push(task);
        self
    }

    pub async fn shutdown(mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
        drop(self.lock.take());
    }

    /// Runs until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        info!(target: "scimd::http", "shutting down: draining connections");
        self.shutdown().await;
    }
}

/// What `TcpListener::bind` does (SO_REUSEADDR, bind, listen), with a longer backlog.
fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds `listen` and starts serving. `tls` is `None` only for `--insecure-http`.
pub async fn start(listen: SocketAddr, tls: Option<Tls>, limits: Limits, state: Arc<AppState>) -> std::io::Result<RunningServer> {
    let listener = bind(listen)?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let cert = tls.as_ref().map(|t| Arc::clone(&t.cert));
    let watched = tls.as_ref().filter(|t| t.watch_files).map(|t| Arc::clone(&t.cert));
    let acceptor = tls.map(|t| TlsAcceptor::from(t.config));
    let cert_watch = {
        let cert = watched;
        tokio::spawn(async move {
            let Some(cert) = cert else { return };
            loop {
                tokio::time::sleep(CERT_CHECK_INTERVAL).await;
                cert.reload_if_changed();
            }
        })
    };
    let monitor = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            // Tenants the catalogue does not hold yet (made by an older scimd, or copied in)
            // are read once, before the first check relies on it.
            let data = state.tenants.data().clone();
            match tokio::task::spawn_blocking(move || data.backfill_catalogue()).await {
                Ok(Ok(0)) | Err(_) => {}
                Ok(Ok(n)) => log::info!(target: "scimd::tenant", "recorded {n} tenants in the catalogue"),
                Ok(Err(e)) => log::error!(target: "scimd::tenant", "cannot fill the tenant catalogue: {e}"),
            }
            loop {
                crate::auth::token::warn_expiring(&state.tenants, &state.auth.expiry, (state.clock)()).await;
                tokio::time::sleep(EXPIRY_CHECK_INTERVAL).await;
            }
        })
    };
    let sweeper = {
        let state = Arc::clone(&state);
        // A tenant closes within a quarter of its idle time of going idle.
        let every = (state.tenants.limits().idle / 4).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                state.tenants.close_idle(std::time::Instant::now());
                state.tenants.check_key_files().await;
                state.tenants.retry_refused().await;
            }
        })
    };
    let reloader = {
        let state = Arc::clone(&state);
        let cert = cert.clone();
        // Registered now, before anyone is told the server is up: an early SIGHUP reloads
        // instead of killing the process.
        #[cfg(unix)]
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                let Ok(mut hup) = hup else { return };
                while hup.recv().await.is_some() {
                    info!(target: "scimd::http", "SIGHUP: reloading the certificate and tenant settings");
                    if let Some(cert) = &cert {
                        cert.reload();
                    }
                    // Off the runtime: a new unique custom attribute builds its index.
                    let state = Arc::clone(&state);
                    let _ = tokio::task::spawn_blocking(move || state.tenants.reload_settings()).await;
                }
            }
        })
    };
    let done = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let admission = Admission::new(limits, Arc::clone(&state.metrics));
        // Sums up refusals in the log once a burst is over (see `Admission::note`).
        let mut log_tick = tokio::time::interval(super::admission::LOG_INTERVAL / 2);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
        let idle = limits.idle_timeout;
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop_rx => break,
                _ = log_tick.tick() => {
                    admission.flush_log();
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(target: "scimd::http", "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Refused: dropping the stream closes it at once (counted and logged, rate-limited).
            let Ok(mut slot) = admission.admit(peer.ip(), acceptor.is_some()) else { continue };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            let service = service_fn(move |req| router::handle(Arc::clone(&state), req, peer));
            match &acceptor {
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let admission = Arc::clone(&admission);
                    let handshake_timeout = limits.tls_handshake_timeout;
                    tokio::spawn(async move {
                        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                        let tls = tokio::select! {
                            done = handshake => match done {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(e)) => return debug!(target: "scimd::http", "TLS handshake with {peer} failed: {e}"),
                                Err(_) => return admission.note(Refusal::HandshakeTimeout, peer.ip()),
                            },
                            // Dropping the handshake closes the socket: its slot went to a newer one.
                            () = slot.evicted() => return debug!(target: "scimd::http", "TLS handshake with {peer} evicted to make room"),
                        };
                        // A TLS-ALPN-01 validation is over once its handshake is: no HTTP on it.
                        if tls.get_ref().1.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
                            return debug!(target: "scimd::acme", "TLS-ALPN-01 validation handshake from {peer}");
                        }
                        // Until its first request bytes arrive a connection stays pending (evictable,
                        // under the same deadline): a socket that completes TLS and then says
                        // nothing is as idle as one that never finished the handshake.
                        let mut tls = tls;
                        let mut first = vec![0u8; 8192];
                        let read = tokio::time::timeout(handshake_timeout, tokio::io::AsyncReadExt::read(&mut tls, &mut first));
                        let n = tokio::select! {
                            done = read => match done {
                                Ok(Ok(n)) if n > 0 => n,
                                Ok(_) => return debug!(target: "scimd::http", "{peer} closed before its first request"),
                                Err(_) => return admission.note(Refusal::HandshakeTimeout, peer.ip()),
                            },
                            () = slot.evicted() => return debug!(target: "scimd::http", "idle connection from {peer} evicted to make room"),
                        };
                        first.truncate(n);
                        if slot.establish().is_err() {
                            return;
                        }
                        let conn = builder.serve_connection(TokioIo::new(IdleIo::new(Prefixed { prefix: first, inner: tls }, idle)), service);
                        if let Err(e) = watcher.watch(conn).await {
                            debug!(target: "scimd::http", "connection from {peer} ended: {e}");
                        }
                    });
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(IdleIo::new(stream, idle)), service);
                    let fut = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = fut.await {
                            debug!(target: "scimd::http", "connection from {peer} ended: {e}");
                        }
                    });
                }
            }
        }
        drop(listener);
        monitor.abort();
        sweeper.abort();
        reloader.abort();
        cert_watch.abort();
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            error!(target: "scimd::http", "some connections did not finish within {DRAIN_TIMEOUT:?}");
        }
        let state_for_close = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || state_for_close.tenants.close_all()).await;
    });
    Ok(RunningServer { addr, metrics_addr: None, background: Vec::new(), stop: Some(stop_tx), done, lock: None })
}
