//! Connection-slot exhaustion (issue 13 item 2): the real binary, with `max_connections` at
//! 256, is flooded from twenty other loopback addresses with connections that send nothing
//! or only the start of a ClientHello, each reopened as soon as the server closes it (480 at
//! once, more than the server takes). Meanwhile a good client on 127.0.0.1 makes sequential
//! requests, each on a new TLS connection and every third followed by a keep-alive one. It
//! must get every answer, and the server must not write a log line per refused connection.
//!
//! The test prints the good client's figures (quoted in BENCHMARKS.md):
//! `cargo test --release --test it flood:: -- --nocapture`.
//!
//! Also here: a socket that sends nothing loses its slot after `tls_handshake_timeout`,
//! and one address cannot hold more than `max_connections_per_address` established ones.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::limits::wait_for_established;
use crate::support::{basic, binary_data_dir, connector, ServeBinary, TempDir, TestServer, ADMIN, PASSWORD};

/// The flooders' source addresses: 127.0.0.2 ..= 127.0.0.21.
const FLOOD_ADDRESSES: std::ops::RangeInclusive<u8> = 2..=21;
/// Connections each flooding address keeps open (480 in all against 256 slots).
const CONNECTIONS_PER_ADDRESS: usize = 24;
const MAX_CONNECTIONS: usize = 256;
const FLOOD_TIME: Duration = Duration::from_secs(7);
const BASELINE_TIME: Duration = Duration::from_secs(2);
/// A request not answered within this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The generous bound asserted on a loaded 2-core machine (the target is 100 ms;
/// the printed figure is the one to quote).
const P99_BOUND: Duration = Duration::from_secs(1);
const PATH: &str = "/t/acme/scim/v2/ServiceProviderConfig";

/// The first bytes of a TLS record announcing a 512-byte ClientHello that never comes.
const PARTIAL_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];

#[derive(Default)]
struct Figures {
    attempts: usize,
    failures: Vec<String>,
    latencies: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
    }
    fn success_rate(&self) -> f64 {
        100.0 * self.latencies.len() as f64 / self.attempts.max(1) as f64
    }
    fn line(&self, label: &str) -> String {
        format!(
            "{label}: {}/{} answered ({:.1} %), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latencies.len(),
            self.attempts,
            self.success_rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(1.0).as_secs_f64() * 1e3,
        )
    }
    fn record(&mut self, started: Instant, outcome: Result<u16, String>) {
        self.attempts += 1;
        match outcome {
            Ok(200) => self.latencies.push(started.elapsed()),
            Ok(status) => self.failures.push(format!("status {status}")),
            Err(e) => self.failures.push(e),
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let stream = tls.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get(sender: &mut Sender, auth: &str) -> Result<u16, String> {
    let req = Request::get(PATH).header("host", "localhost").header("authorization", auth).body(Full::new(Bytes::new())).unwrap();
    // Wait until the connection can take the next request (right after a response the
    // client may not have returned to idle yet, and would cancel the new one).
    sender.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// Sequential requests for `duration`: each on a new connection (the time includes TCP and
/// TLS), and after every third a second one on the same keep-alive connection.
async fn good_client(addr: SocketAddr, tls: tokio_rustls::TlsConnector, duration: Duration) -> Figures {
    let auth = basic(ADMIN, PASSWORD);
    let mut figures = Figures::default();
    let deadline = Instant::now() + duration;
    for i in 0..100_000 {
        if Instant::now() >= deadline {
            break;
        }
        let started = Instant::now();
        let fresh = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut sender = open(addr, &tls).await?;
            get(&mut sender, &auth).await.map(|status| (status, sender))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        let sender = match fresh {
            Ok((status, sender)) => {
                figures.record(started, Ok(status));
                Some(sender)
            }
            Err(e) => {
                figures.record(started, Err(e));
                None
            }
        };
        if let (Some(mut sender), 0) = (sender, i % 3) {
            let started = Instant::now();
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, get(&mut sender, &auth)).await.unwrap_or_else(|_| Err("timed out".into()));
            figures.record(started, outcome.map_err(|e| format!("keep-alive {e}")));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    figures
}

/// One flooding connection, reopened from `source` as soon as it is closed, until `stop`.
/// Half-open ones send the start of a ClientHello; the others send nothing.
async fn flood_one(source: IpAddr, server: SocketAddr, half_open: bool, stop: Instant, open_now: Arc<AtomicUsize>) -> usize {
    let mut opened = 0;
    while Instant::now() < stop {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else { break };
        if socket.bind(SocketAddr::new(source, 0)).is_err() {
            break;
        }
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), socket.connect(server)).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        opened += 1;
        open_now.fetch_add(1, Ordering::Relaxed);
        if half_open {
            let _ = stream.write_all(PARTIAL_CLIENT_HELLO).await;
        }
        let mut buf = [0u8; 1024];
        let left = stop.saturating_duration_since(Instant::now());
        // Wait for the server to close it (or for the flood to end).
        let _ = tokio::time::timeout(left, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        open_now.fetch_sub(1, Ordering::Relaxed);
    }
    opened
}

/// `/metrics` over plain HTTP, as text.
async fn scrape(addr: SocketAddr) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await;
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text)).await;
    text
}

fn metric(text: &str, name_and_labels: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_half_open_connections_does_not_starve_a_real_client() {
    let dir = TempDir::new("flood");
    let data = binary_data_dir(dir.path()).await;
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let max = MAX_CONNECTIONS.to_string();
    let server = ServeBinary::start_with_env(
        data.root(),
        &certs.server_cert,
        &certs.server_key,
        dir.path(),
        "scimd=info,scimd::http::access=warn",
        &[("SCIMD_MAX_CONNECTIONS", &max)],
    )
    .await;
    let metrics_addr: SocketAddr = server.metrics_addr();
    let tls = connector(&certs.ca_cert, None);

    let baseline = good_client(server.addr, tls.clone(), BASELINE_TIME).await;
    assert!(baseline.failures.is_empty(), "without a flood: {:?}", baseline.failures);
    let log_lines_before = server.log().lines().count();

    let stop = Instant::now() + FLOOD_TIME;
    let open_now = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for last in FLOOD_ADDRESSES {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        for n in 0..CONNECTIONS_PER_ADDRESS {
            flooders.push(tokio::spawn(flood_one(source, server.addr, n % 3 == 0, stop, Arc::clone(&open_now))));
        }
    }
    // Let the flood take every slot first (bounded wait), then measure until it ends.
    let fill_deadline = Instant::now() + Duration::from_secs(3);
    while open_now.load(Ordering::Relaxed) < MAX_CONNECTIONS && Instant::now() < fill_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held_at_start = open_now.load(Ordering::Relaxed);
    let flooded = good_client(server.addr, tls.clone(), stop.saturating_duration_since(Instant::now())).await;
    let mut flood_connections = 0;
    for f in flooders {
        flood_connections += f.await.unwrap();
    }
    let flood_log: Vec<String> = server.log().lines().skip(log_lines_before).map(str::to_string).collect();
    let warns = flood_log.iter().filter(|l| l.contains("WARN")).count();
    let metrics = scrape(metrics_addr).await;
    let refused = |reason: &str| metric(&metrics, &format!("scimd_connections_refused_total{{reason=\"{reason}\"}}"));

    println!("{}", baseline.line("flood: without a flood"));
    println!("{}", flooded.line(&format!("flood: under a flood ({flood_connections} connections opened from {} addresses, {held_at_start} held open when measuring began)", FLOOD_ADDRESSES.count())));
    println!(
        "flood: {warns} WARN lines during the flood; refused: evicted {}, handshakes_per_address {}, handshake_timeout {}, max_connections {}",
        refused("evicted"),
        refused("handshakes_per_address"),
        refused("handshake_timeout"),
        refused("max_connections"),
    );
    for line in flood_log.iter().filter(|l| l.contains("WARN")) {
        println!("flood: log: {line}");
    }
    let mut failures = flooded.failures.clone();
    failures.dedup();
    assert!(flooded.failures.is_empty(), "{} of {} requests failed under the flood: {:?}", flooded.failures.len(), flooded.attempts, &failures[..failures.len().min(5)]);
    assert!(flooded.attempts >= 20, "only {} requests in {FLOOD_TIME:?}", flooded.attempts);
    assert!(flooded.percentile(0.99) < P99_BOUND, "{}", flooded.line("under a flood"));
    assert!(warns <= 10, "{warns} WARN lines during the flood (refusals must be logged rate-limited):\n{}", flood_log.join("\n"));
    // Both defences were exercised: the oldest handshakes were evicted to make room, and
    // addresses over their handshake cap were refused.
    assert!(refused("evicted") > 0 && refused("handshakes_per_address") > 0, "{metrics}");
}

/// A TLS connection to `s` from `source` (a loopback address), or the handshake's error.
async fn tls_from(s: &TestServer, source: Ipv4Addr) -> Result<Sender, String> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let tcp = socket.connect(s.addr).await.map_err(|e| format!("connect: {e}"))?;
    let stream = connector(&s.ca, None)
        .connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

#[tokio::test]
async fn a_socket_that_sends_nothing_loses_its_slot_after_the_handshake_deadline() {
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.limits.tls_handshake_timeout = Duration::from_secs(1)).await;
    for bytes in [&[][..], PARTIAL_CLIENT_HELLO] {
        let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        idle.write_all(bytes).await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(8), idle.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "still open after 8 s ({} bytes sent)", bytes.len());
        // Bounds far from 1 s either way: closed by the deadline, not at once, and long
        // before the old fixed 10 s.
        let after = started.elapsed();
        assert!(after >= Duration::from_millis(500) && after < Duration::from_secs(5), "closed after {after:?}");
    }
}

#[tokio::test]
async fn one_address_cannot_hold_every_established_slot() {
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.limits.max_connections_per_address = 2).await;
    let auth = basic(ADMIN, PASSWORD);
    let local = Ipv4Addr::new(127, 0, 0, 1);
    let mut held = vec![tls_from(&s, local).await.unwrap(), tls_from(&s, local).await.unwrap()];
    // A connection is established once it has sent its first request.
    for conn in &mut held {
        assert_eq!(get(conn, &auth).await, Ok(200));
    }
    wait_for_established(&s, 2).await;
    // A third from the same address is closed at once; the ones it holds still work.
    let third = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut sender = tls_from(&s, local).await?;
        get(&mut sender, &auth).await
    })
    .await
    .expect("refused at once, not left hanging");
    assert!(third.is_err(), "a third connection from one address was served: {third:?}");
    assert_eq!(get(&mut held[0], &auth).await, Ok(200));
    // Another address is not affected.
    let mut other = tls_from(&s, Ipv4Addr::new(127, 0, 0, 2)).await.unwrap();
    assert_eq!(get(&mut other, &auth).await, Ok(200));
    // Closing one makes room for the address again (the server notices the close).
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = async { get(&mut tls_from(&s, local).await?, &auth).await };
        if attempt.await == Ok(200) {
            break;
        }
        assert!(Instant::now() < deadline, "no room for the address after one of its connections closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One connection from `source` that completes TLS and then says nothing, reopened as soon
/// as the server closes it, until `stop`. Returns how many it opened.
async fn silent_after_tls(s: &TestServer, source: Ipv4Addr, stop: Instant) -> usize {
    let mut opened = 0;
    while Instant::now() < stop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
        let Ok(tcp) = socket.connect(s.addr).await else { continue };
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let Ok(Ok(mut tls)) = tokio::time::timeout(REQUEST_TIMEOUT, connector(&s.ca, None).connect(name, tcp)).await else { continue };
        opened += 1;
        let mut buf = [0u8; 64];
        // Held until the server closes it (or the flood ends).
        let left = stop.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, tokio::io::AsyncReadExt::read(&mut tls, &mut buf)).await;
    }
    opened
}

/// Issue 13 review: sockets that complete TLS and never send a request filled the slots
/// (they counted as established, held until the 30 s header-read timeout). Now a
/// connection stays pending, evictable and under the handshake deadline, until its first
/// request bytes arrive.
#[tokio::test]
async fn connections_that_finish_tls_and_say_nothing_do_not_starve_a_real_client() {
    const SLOTS: usize = 32;
    let s = TestServer::start_with_settings("require_username_is_email = false\n", |c| c.limits.max_connections = SLOTS).await;
    let stop = Instant::now() + Duration::from_secs(4);
    let s = Arc::new(s);
    let mut flood = Vec::new();
    for a in 2..=5u8 {
        // Exactly as many as there are slots: all of them held, none churning (a churning
        // flood leaves handshakes in progress that a newcomer could take the place of).
        for _ in 0..SLOTS / 4 {
            let s = Arc::clone(&s);
            flood.push(tokio::spawn(async move { silent_after_tls(&s, Ipv4Addr::new(127, 0, 0, a), stop).await }));
        }
    }
    // Let the flood take every slot first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let figures = good_client(s.addr, connector(&s.ca, None), Duration::from_secs(2)).await;
    let mut opened = 0;
    for f in flood {
        opened += f.await.unwrap();
    }
    println!("{} (flood opened {opened} TLS connections)", figures.line("silent-after-TLS flood"));
    assert!(opened >= SLOTS, "the flood held every slot ({opened} opened)");
    assert!(figures.attempts > 0 && figures.failures.is_empty(), "{:?}", figures.failures);
}
