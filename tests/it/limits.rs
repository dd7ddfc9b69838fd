//! Connection limits: header-read timeout (slowloris), idle keep-alive timeout, maximum
//! connections; each exceeded gets the documented answer (the connection is closed) while
//! other clients are unaffected. The body limit (413) is in http.rs.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{connector, TestServer};

async fn tls(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    connector(&s.ca, None).connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// Reads until the server closes the connection; returns how long that took (bounded).
async fn time_to_close(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Polls `/metrics` until `scimd_connections{state="established"}` is `n` (bounded).
pub async fn wait_for_established(s: &TestServer, n: usize) {
    let addr = s.metrics_addr.expect("metrics served");
    let wanted = format!("scimd_connections{{state=\"established\"}} {n}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = crate::metrics::scrape(addr, "/metrics").await;
        if body.lines().any(|l| l == wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "never {wanted}:\n{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tight() -> TestServer {
    TestServer::start_with_settings("require_username_is_email = false\n", |c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(1);
        c.limits.max_connections = 3;
    })
    .await
}

#[tokio::test]
async fn slowloris_is_cut_off_and_others_are_served() {
    let s = tight().await;
    let mut slow = tls(&s).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: ").await.unwrap();
    slow.flush().await.unwrap();
    // Meanwhile a normal client is served.
    assert_eq!(s.client.raw(hyper::Method::GET, "/healthz", &[], None).await.status, 200);
    let closed = time_to_close(&mut slow, Duration::from_secs(10)).await.expect("the server closed the slow connection");
    assert!(closed < Duration::from_secs(15), "closed after {closed:?}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = tight().await;
    let mut conn = tls(&s).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains("\"status\"") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        response.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
    // Now idle: the server closes it after the idle timeout (1 s here).
    let closed = time_to_close(&mut conn, Duration::from_secs(10)).await.expect("the idle connection was closed");
    assert!(closed >= Duration::from_millis(500) && closed < Duration::from_secs(15), "closed after {closed:?}");
}

#[tokio::test]
async fn connections_past_the_maximum_are_refused() {
    // Long timeouts here: the held connections must outlive the test's steps.
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.limits.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        // A connection is established once its first request bytes arrive; half a
        // request line holds it there (until the header-read timeout).
        let mut conn = tls(&s).await;
        conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        conn.flush().await.unwrap();
        held.push(conn);
    }
    // The client's handshake ends a moment before the server's: wait until the server
    // counts all three as established (else the fourth would evict the third's handshake).
    wait_for_established(&s, 3).await;
    // The fourth is closed at once: its TLS handshake never completes.
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let handshake = tokio::time::timeout(Duration::from_secs(5), connector(&s.ca, None).connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)).await;
    assert!(matches!(handshake, Ok(Err(_))), "the connection over the limit was not refused");
    // Freeing one makes room (poll with a deadline: the server notices the close).
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let attempt = connector(&s.ca, None).connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await;
        if attempt.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a connection closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
