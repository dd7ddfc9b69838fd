//! The ceiling for `benches/run.sh`: the least a TLS HTTP/1.1 server on this box can do per
//! request. hyper + tokio-rustls with scimd's own TLS settings (same certificate, same
//! protocol versions, ring), answering every request with a fixed 300-byte JSON body and
//! nothing else: no routing, no auth, no database. Every scimd phase is reported as a
//! fraction of its req/s.
//!
//! `cargo build --release --example bench-ceiling`, then
//! `target/release/examples/bench-ceiling CERT KEY [ADDR]`; prints the bound address.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// 300 bytes of JSON, shaped like a small SCIM resource.
const BODY: &str = concat!(
    r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"2819c223-7f76-453a-919d-413861904646","#,
    r#""userName":"bjensen@example.com","active":true,"meta":{"resourceType":"User","version":"W/\"1\"","#,
    r#""created":"2026-01-23T04:56:22.000Z","lastModified":"2026-01-23T04:56:22.000Z"},"#,
    r#""x":"pad-pad-pad-pa"}"#
);
const _: () = assert!(BODY.len() == 300);

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cert), Some(key)) = (args.get(1), args.get(2)) else {
        return Err("usage: bench-ceiling CERT KEY [ADDR]".into());
    };
    let addr = args.get(3).map_or("127.0.0.1:0", String::as_str).to_string();
    let tls = scimd::http::server::tls_config(cert.as_ref(), key.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(serve(addr, tls.config))
}

async fn serve(addr: String, config: Arc<rustls::ServerConfig>) -> Result<(), String> {
    let listener = TcpListener::bind(&addr).await.map_err(|e| e.to_string())?;
    println!("{}", listener.local_addr().map_err(|e| e.to_string())?);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(|_req| async {
                hyper::Response::builder()
                    .header("content-type", "application/scim+json")
                    .body(http_body_util::Full::new(hyper::body::Bytes::from_static(BODY.as_bytes())))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
