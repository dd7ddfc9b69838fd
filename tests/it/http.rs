//! Transport-level behaviour: health, routing errors, media types, body limits, TLS.

use hyper::Method;

use crate::support::{connector, TestServer};

#[tokio::test]
async fn health_and_unknown_routes() {
    let s = TestServer::start().await;
    let r = s.raw(Method::GET, "/healthz", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = s.raw(Method::GET, "/nope", &[], None).await;
    r.assert_error(404, None);
    s.get("/Widgets").await.assert_error(404, None);
    s.get("/Users/a/b").await.assert_error(404, None);
    s.call(Method::DELETE, "/Users", None).await.assert_error(405, None);
    s.call(Method::GET, "/.search", None).await.assert_error(405, None);
    s.call(Method::GET, "/Bulk", None).await.assert_error(405, None);
}

#[tokio::test]
async fn media_types_and_body_limit() {
    let s = TestServer::start().await;
    let body = br#"{"userName":"json@example.com"}"#.to_vec();
    let post = |ct: &'static str, body: Vec<u8>| {
        let auth = s.auth.clone();
        let s = &s;
        async move { s.raw(Method::POST, "/t/acme/scim/v2/Users", &[("authorization", &auth), ("content-type", ct)], Some(body)).await }
    };
    assert_eq!(post("application/json; charset=utf-8", body.clone()).await.status, 201);
    post("text/plain", br#"{"userName":"t@example.com"}"#.to_vec()).await.assert_error(415, None);
    // The test server's limit is 64 KiB.
    let big = format!(r#"{{"userName":"big@example.com","title":"{}"}}"#, "x".repeat(70 * 1024));
    post("application/scim+json", big.into_bytes()).await.assert_error(413, None);
    assert_eq!(s.count("acme", "SELECT count(*) FROM users WHERE user_name IN ('t@example.com', 'big@example.com')"), 0);
}

#[tokio::test]
async fn serves_tls12_and_tls13() {
    let s = TestServer::start().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = connector(&s.ca, Some(version));
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let stream = tls.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
    }
    // A plain-HTTP request to the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn graceful_shutdown_closes_the_store() {
    let s = TestServer::start().await;
    s.user("durable@example.com").await;
    let db = s.data().database(&scimd::tenant::TenantId::parse("acme").unwrap());
    let _dir = s.stop().await;
    assert!(!db.with_extension("db-wal").exists() || std::fs::metadata(db.with_extension("db-wal")).unwrap().len() == 0);
    // After shutdown the WAL is checkpointed into the main file: the row is there.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM users WHERE user_name = 'durable@example.com'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
