//! The operator console (issue 21): server-rendered pages on the operator listener, read
//! only, behind an operator password (`scimd console password`, a PBKDF2 hash in
//! `DATA_DIR/console.pass`), over plain HTTP on a loopback listener and over TLS (the
//! server's certificate) on any other. A login gets a random session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/console`; `Secure` over TLS) that expires after 30 minutes
//! idle or 8 hours; the two forms (login, logout) carry a CSRF token, the login's checked
//! against a cookie of its own (double submit), the logout's against the session. Wrong
//! passwords are throttled like Basic credentials. Every page is `no-store`, framed by
//! nobody, and its content security policy allows no script at all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};

use super::console_pages as pages;
use super::context::AppState;
use crate::auth::throttle;

pub type Page = Response<Full<Bytes>>;

const SESSION_COOKIE: &str = "scimd_console";
const LOGIN_COOKIE: &str = "scimd_console_login";
const IDLE: Duration = Duration::from_secs(30 * 60);
const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at once; a login past it ends the oldest.
const MAX_SESSIONS: usize = 64;
const MAX_FORM_BYTES: usize = 4096;

struct Session {
    csrf: String,
    created: Instant,
    seen: Instant,
}

pub struct Console {
    sessions: Mutex<HashMap<String, Session>>,
    /// One operator password check at a time: a flood of login POSTs gets 429, not a queue
    /// of PBKDF2 runs on the blocking pool the tenants' reads share.
    checking: tokio::sync::Semaphore,
}

impl Default for Console {
    fn default() -> Self {
        Console { sessions: Mutex::new(HashMap::new()), checking: tokio::sync::Semaphore::new(1) }
    }
}

/// Reads the operator password's hash: a regular file (not through a symlink) that only its
/// owner may read; anything else is refused, with a reason for the log.
fn stored_password(path: &std::path::Path) -> Result<Option<String>, String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return Err(format!("{} is not a file only its owner can read (chmod 600 it)", path.display()));
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut { file }, &mut text).map_err(|e| e.to_string())?;
    let text = text.trim().to_string();
    Ok((!text.is_empty()).then_some(text))
}

/// Whether a plain-HTTP request names the loopback in its `Host` (a page the operator
/// visits cannot rebind its own name to 127.0.0.1 and reach the console through the tunnel).
fn host_is_loopback(req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// 32 random bytes, URL-safe base64: a session id or a CSRF token.
fn random_token() -> String {
    use base64::Engine;
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 32];
    if SystemRandom::new().fill(&mut b).is_err() {
        panic!("operating system random number generator failed");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Equal without saying where they differ (the lengths of our tokens are public).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` into pairs.
fn form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

pub fn html(status: StatusCode, body: String) -> Page {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn redirect(to: &'static str) -> Page {
    let mut r = html(StatusCode::SEE_OTHER, String::new());
    r.headers_mut().insert(LOCATION, HeaderValue::from_static(to));
    r
}

impl Console {
    /// A cookie of the console's; `Secure` when it is served over TLS.
    fn cookie_line(&self, name: &str, value: &str, max_age: Option<u64>, tls: bool) -> HeaderValue {
        let secure = if tls { "; Secure" } else { "" };
        let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
        HeaderValue::from_str(&format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict{secure}{age}")).unwrap_or(HeaderValue::from_static(""))
    }

    /// The session's CSRF token, if the request carries a live session (its idle time restarts).
    fn session(&self, req: &Request<Incoming>) -> Option<String> {
        let id = cookie(req, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME);
        let s = sessions.get_mut(id)?;
        s.seen = now;
        Some(s.csrf.clone())
    }

    fn open_session(&self) -> String {
        let id = random_token();
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| k.clone()) {
                    sessions.remove(&oldest);
                }
            }
            let now = Instant::now();
            sessions.insert(id.clone(), Session { csrf: random_token(), created: now, seen: now });
        }
        id
    }

    fn end(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
    }
}

/// Every request under `/console` on the operator listener (`tls`: it came over TLS).
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr, tls: bool) -> Page {
    let console = &state.console;
    if !tls && !host_is_loopback(&req) {
        return html(StatusCode::MISDIRECTED_REQUEST, pages::message("Refused", "The console answers only to a loopback Host (localhost, 127.0.0.1 or [::1])."));
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/console") => redirect("/console/"),
        (Method::GET, "/console/login") => login_form(console, StatusCode::OK, None, tls),
        (Method::POST, "/console/login") => Box::pin(login(state, req, peer, tls)).await,
        (Method::POST, "/console/logout") => {
            let Some(csrf) = console.session(&req) else { return redirect("/console/login") };
            let id = cookie(&req, SESSION_COOKIE).map(str::to_string);
            let body = read_form(req).await;
            if !body.as_ref().and_then(|f| f.get("csrf")).is_some_and(|t| same(t, &csrf)) {
                return html(StatusCode::FORBIDDEN, pages::message("Refused", "The form's CSRF token is missing or wrong. Reload the page and try again."));
            }
            if let Some(id) = id {
                console.end(&id);
            }
            let mut r = redirect("/console/login");
            r.headers_mut().insert(SET_COOKIE, console.cookie_line(SESSION_COOKIE, "", Some(0), tls));
            r
        }
        (Method::GET, _) => {
            let Some(csrf) = console.session(&req) else { return redirect("/console/login") };
            let query = req.uri().query().map(str::to_string);
            Box::pin(pages::route(state, &path, query.as_deref(), &csrf)).await
        }
        _ => html(StatusCode::METHOD_NOT_ALLOWED, pages::message("Not allowed", "The console is read-only.")),
    }
}

async fn read_form(req: Request<Incoming>) -> Option<HashMap<String, String>> {
    let body = Limited::new(req.into_body(), MAX_FORM_BYTES).collect().await.ok()?.to_bytes();
    Some(form(&body))
}

fn login_form(console: &Console, status: StatusCode, error: Option<&str>, tls: bool) -> Page {
    let token = random_token();
    let mut r = html(status, pages::login(&token, error));
    r.headers_mut().insert(SET_COOKIE, console.cookie_line(LOGIN_COOKIE, &token, Some(600), tls));
    r
}

async fn login(state: &AppState, req: Request<Incoming>, peer: SocketAddr, tls: bool) -> Page {
    let console = &state.console;
    // Keys of the console's own (no tenant id starts with '-'): never the address key that
    // SCIM's Basic logins count, so neither locks the other out behind a shared address.
    let keys = [throttle::Key::account("-console", "operator", peer.ip())];
    if let Err(wait) = state.auth.throttle.check(&keys) {
        let mut r = html(StatusCode::TOO_MANY_REQUESTS, pages::message("Too many attempts", &format!("Too many wrong passwords; try again in {} seconds.", wait.as_secs() + 1)));
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        return r;
    }
    let expected = cookie(&req, LOGIN_COOKIE).map(str::to_string);
    let Some(fields) = read_form(req).await else { return login_form(console, StatusCode::BAD_REQUEST, Some("The form could not be read."), tls) };
    let csrf_ok = matches!((expected.as_deref(), fields.get("csrf")), (Some(a), Some(b)) if same(a, b));
    if !csrf_ok {
        return html(StatusCode::FORBIDDEN, pages::message("Refused", "The form's CSRF token is missing or wrong. Open the login page again."));
    }
    let password = fields.get("password").cloned().unwrap_or_default();
    let stored = match stored_password(&state.tenants.data().console_password()) {
        Ok(Some(hash)) => hash,
        Ok(None) => return login_form(console, StatusCode::SERVICE_UNAVAILABLE, Some("No operator password is set: run scimd console password on the server."), tls),
        Err(why) => {
            log::error!(target: "scimd::console", "refusing every login: {why}");
            return login_form(console, StatusCode::SERVICE_UNAVAILABLE, Some("The operator password file is unsafe; see the server's log."), tls);
        }
    };
    let Ok(_checking) = console.checking.try_acquire() else {
        let mut r = html(StatusCode::TOO_MANY_REQUESTS, pages::message("Busy", "Another login is being checked; try again in a second."));
        r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let ok = state.auth.verify_slowly(password, stored).await;
    if !ok {
        state.auth.throttle.fail(&keys);
        log::warn!(target: "scimd::console", "wrong operator password from {}", peer.ip());
        return login_form(console, StatusCode::UNAUTHORIZED, Some("Wrong password."), tls);
    }
    state.auth.throttle.succeed(&keys[0]);
    drop(_checking);
    log::info!(target: "scimd::console", "operator logged in from {}", peer.ip());
    let id = console.open_session();
    let mut r = redirect("/console/");
    r.headers_mut().append(SET_COOKIE, console.cookie_line(SESSION_COOKIE, &id, None, tls));
    r.headers_mut().append(SET_COOKIE, console.cookie_line(LOGIN_COOKIE, "", Some(0), tls));
    r
}
