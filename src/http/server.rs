//! The listener: TCP accept, TLS handshake (rustls, ring, TLS 1.2/1.3), one hyper
//! HTTP/1.1 connection per socket with header-read timeout and keep-alive, a connection
//! limit, and a graceful drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use log::{debug, error, info, warn};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::router::{self, AppState};
use crate::config::Limits;

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

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often token expiry is checked (each token still warns at most once a day).
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Loads a PEM certificate chain and private key into a rustls server config.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server that is accepting connections.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, drains in-flight requests (bounded) and closes the stores.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
    }

    /// Runs until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        info!(target: "scimd::http", "shutting down: draining connections");
        self.shutdown().await;
    }
}

/// Binds `listen` and starts serving. `tls` is `None` only for `--insecure-http`.
pub async fn start(listen: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>, limits: Limits, state: Arc<AppState>) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let acceptor = tls.map(TlsAcceptor::from);
    let monitor = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                crate::auth::token::warn_expiring(&state.tenants, (state.clock)()).await;
                tokio::time::sleep(EXPIRY_CHECK_INTERVAL).await;
            }
        })
    };
    let reloader = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
                while hup.recv().await.is_some() {
                    info!(target: "scimd::http", "SIGHUP: reloading tenant settings");
                    state.tenants.reload_settings();
                }
            }
        })
    };
    let done = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
        let idle = limits.idle_timeout;
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop_rx => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(target: "scimd::http", "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                warn!(target: "scimd::http", "connection limit ({}) reached; refusing {peer}", limits.max_connections);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            let service = service_fn(move |req| router::handle(Arc::clone(&state), req, peer));
            match &acceptor {
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => return debug!(target: "scimd::http", "TLS handshake with {peer} failed: {e}"),
                            Err(_) => return debug!(target: "scimd::http", "TLS handshake with {peer} timed out"),
                        };
                        let conn = builder.serve_connection(TokioIo::new(IdleIo::new(tls, idle)), service);
                        if let Err(e) = watcher.watch(conn).await {
                            debug!(target: "scimd::http", "connection from {peer} ended: {e}");
                        }
                    });
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(IdleIo::new(stream, idle)), service);
                    let fut = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = fut.await {
                            debug!(target: "scimd::http", "connection from {peer} ended: {e}");
                        }
                    });
                }
            }
        }
        drop(listener);
        monitor.abort();
        reloader.abort();
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            error!(target: "scimd::http", "some connections did not finish within {DRAIN_TIMEOUT:?}");
        }
        let state_for_close = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || state_for_close.tenants.close_all()).await;
    });
    Ok(RunningServer { addr, stop: Some(stop_tx), done })
}
