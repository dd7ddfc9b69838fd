//! The operator console (issue 21) over HTTP, and in a real browser (headless Chromium
//! driven through chromedriver's WebDriver API) when the machine has one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestServer, PASSWORD};

pub const OPERATOR_PASSWORD: &str = "operator password for the console";

/// A reply: status, headers (lower-case names, repeated ones joined by "\n"), body.
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// One plain HTTP/1.1 request with `Connection: close`.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tcp.write_all(req.as_bytes()).await.unwrap();
    // Until the body's length is in (chromedriver keeps the connection open regardless).
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf)).await.expect("an answer within 60 s").unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if n == 0 {
            break;
        }
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
            if length.is_some_and(|len| rest.len() >= len) {
                break;
            }
        }
    }
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers: HashMap<String, String> = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let e = headers.entry(k.trim().to_ascii_lowercase()).or_default();
            if !e.is_empty() {
                e.push('\n');
            }
            e.push_str(v.trim());
        }
    }
    let body = if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") { unchunk(rest) } else { rest.to_string() };
    Reply { status, headers, body }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// `name=value` of a Set-Cookie line with that name.
pub fn set_cookie<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get("set-cookie")?.lines().find(|l| l.starts_with(&format!("{name}=")))
}

pub fn cookie_value(line: &str) -> String {
    line.split(';').next().unwrap().split_once('=').unwrap().1.to_string()
}

/// The value of the hidden `csrf` input of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_string()
}

/// Every element that is not void is closed, in order: the page is well-formed HTML.
fn assert_well_formed(page: &str) {
    const VOID: [&str; 6] = ["meta", "input", "br", "img", "link", "hr"];
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    let mut open: Vec<String> = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("a tag is closed");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        if tag.starts_with('/') {
            assert_eq!(open.pop().as_deref(), Some(name.as_str()), "unbalanced </{name}> in {page}");
        } else if !VOID.contains(&name.as_str()) && !tag.ends_with('/') {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "unclosed {open:?}");
}

pub fn set_password(data: &Path, password: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(["console", "password", "--password-stdin", "--data-dir"])
        .arg(data)
        .env("SCIMD_KDF_ITERATIONS", "1000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(password), "the password is not printed back");
}

/// Logs in over HTTP; returns the session cookie's value.
pub async fn log_in(addr: SocketAddr, password: &str) -> Reply {
    let form = http(addr, "GET", "/console/login", &[], None).await;
    let login_cookie = cookie_value(set_cookie(&form, "scimd_console_login").unwrap());
    let csrf = csrf_of(&form.body);
    let body = format!("csrf={csrf}&password={}", password.replace(' ', "+"));
    let cookie = format!("scimd_console_login={login_cookie}");
    http(addr, "POST", "/console/login", &[("cookie", &cookie), ("content-type", "application/x-www-form-urlencoded")], Some(&body)).await
}

/// A server with users and one refused request (userName is no email), and the console's password set.
async fn seeded() -> (TestServer, SocketAddr) {
    let s = TestServer::start_with_settings("", |_| {}).await;
    for name in ["ann@example.com", "ben@example.com"] {
        let r = s.post("/Users", json!({"userName": name, "emails": [{"value": name, "primary": true}]})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = s.post("/Users", json!({"userName": "carl", "emails": [{"value": "carl@example.com"}], "password": "carls secret password"})).await;
    assert_eq!(r.status, 400);
    let addr = s.metrics_addr.expect("the operator listener is on");
    set_password(s.data().root(), OPERATOR_PASSWORD);
    (s, addr)
}

#[tokio::test]
async fn the_console_logs_in_shows_the_tenants_and_their_failures_and_logs_out() {
    let (s, addr) = seeded().await;
    // Nothing without a session but the login page.
    for path in ["/console/", "/console/failures", "/console/t/acme", "/console/t/acme/log"] {
        let r = http(addr, "GET", path, &[], None).await;
        assert_eq!((r.status, r.headers.get("location").map(String::as_str)), (303, Some("/console/login")), "{path}");
    }
    let form = http(addr, "GET", "/console/login", &[], None).await;
    assert_eq!(form.status, 200);
    assert_well_formed(&form.body);
    let line = set_cookie(&form, "scimd_console_login").unwrap();
    assert!(line.contains("HttpOnly") && line.contains("SameSite=Strict") && line.contains("Path=/console"), "{line}");
    let csp = form.headers.get("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script"), "{csp}");
    assert_eq!(form.headers.get("cache-control").map(String::as_str), Some("no-store"));
    assert_eq!(form.headers.get("x-frame-options").map(String::as_str), Some("DENY"));
    // A page that rebinds its own name to 127.0.0.1 is not the console's client.
    let rebound = http(addr, "GET", "/console/login", &[("host", "evil.example:9464")], None).await;
    assert_eq!(rebound.status, 421);

    // A login form without its CSRF cookie is refused, whatever the password.
    let csrf = csrf_of(&form.body);
    let r = http(addr, "POST", "/console/login", &[("content-type", "application/x-www-form-urlencoded")], Some(&format!("csrf={csrf}&password=x"))).await;
    assert_eq!(r.status, 403);
    assert!(set_cookie(&r, "scimd_console").is_none());
    // A wrong password: 401, no session.
    let r = log_in(addr, "not the password").await;
    assert_eq!(r.status, 401);
    assert!(set_cookie(&r, "scimd_console").is_none());

    let r = log_in(addr, OPERATOR_PASSWORD).await;
    assert_eq!((r.status, r.headers.get("location").map(String::as_str)), (303, Some("/console/")));
    let line = set_cookie(&r, "scimd_console").unwrap().to_string();
    assert!(line.contains("HttpOnly") && line.contains("SameSite=Strict") && line.contains("Path=/console") && !line.contains("Secure"), "{line}");
    let session = format!("scimd_console={}", cookie_value(&line));
    let get = |path: &'static str| {
        let session = session.clone();
        async move { http(addr, "GET", path, &[("cookie", &session)], None).await }
    };

    let overview = get("/console/").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains(">acme<") && overview.body.contains(">other<"), "{}", overview.body);
    // acme: the admin and two users, all active; no group.
    assert!(overview.body.contains("<td>3</td><td>3</td><td>0</td>"), "{}", overview.body);
    assert!(!overview.body.contains("Faults"), "{}", overview.body);
    // A tenant that cannot open (its tenant.toml lost) is shown as a fault, with what to do.
    std::fs::remove_file(s.data().settings_file(&scimd::tenant::TenantId::parse("other").unwrap())).unwrap();
    assert_eq!(s.call_tenant("other", hyper::Method::GET, "/Users", None).await.status, 503);
    let faulty = get("/console/").await;
    assert_well_formed(&faulty.body);
    assert!(faulty.body.contains("Faults") && faulty.body.contains("<td class=\"bad\">settings</td>") && faulty.body.contains("restore tenant.toml"), "{}", faulty.body);
    let tenant = get("/console/t/acme").await;
    assert_eq!(tenant.status, 200);
    assert!(tenant.body.contains("userName &#39;carl&#39; must equal the user&#39;s email") || tenant.body.contains("userName 'carl' must equal the user's email"), "{}", tenant.body);
    assert!(tenant.body.contains("POST /t/acme/scim/v2/Users"), "{}", tenant.body);
    let failures = get("/console/failures").await;
    assert!(failures.body.contains("invalidValue"), "{}", failures.body);
    let log = get("/console/t/acme/log?user=ann%40example.com").await;
    assert!(log.body.contains("ann@example.com") && !log.body.contains("ben@example.com"), "{}", log.body);
    let ann = s.get("/Users?filter=userName%20eq%20%22ann%40example.com%22").await.body["Resources"][0]["id"].as_str().unwrap().to_string();
    let user_page = http(addr, "GET", &format!("/console/t/acme/users/{ann}"), &[("cookie", &session)], None).await;
    assert!(user_page.status == 200 && user_page.body.contains("History") && user_page.body.contains("create"), "{}", user_page.body);
    let missing = get("/console/t/nosuch").await;
    assert_eq!(missing.status, 404);

    // No page holds a secret: the admin's password, the refused request's password, the
    // operator's password, the session id.
    for page in [&overview, &tenant, &failures, &log, &user_page, &missing] {
        assert_well_formed(&page.body);
        for secret in [PASSWORD, "carls secret password", OPERATOR_PASSWORD, cookie_value(&line).as_str()] {
            assert!(!page.body.contains(secret), "a page shows {secret:?}");
        }
    }

    // Logging out needs the session's CSRF token; then the session is gone.
    let csrf = csrf_of(&overview.body);
    let r = http(addr, "POST", "/console/logout", &[("cookie", &session), ("content-type", "application/x-www-form-urlencoded")], Some("csrf=wrong")).await;
    assert_eq!(r.status, 403);
    assert_eq!(get("/console/").await.status, 200, "a refused logout leaves the session");
    let r = http(addr, "POST", "/console/logout", &[("cookie", &session), ("content-type", "application/x-www-form-urlencoded")], Some(&format!("csrf={csrf}"))).await;
    assert_eq!((r.status, r.headers.get("location").map(String::as_str)), (303, Some("/console/login")));
    assert_eq!(get("/console/").await.status, 303);
    // Read-only: nothing but GET (and the two forms).
    assert_eq!(http(addr, "PUT", "/console/", &[("cookie", &session)], Some("")).await.status, 405);
}

#[tokio::test]
async fn a_password_file_others_can_read_or_a_symlink_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (s, addr) = seeded().await;
    let file = s.data().console_password();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = log_in(addr, OPERATOR_PASSWORD).await;
    assert!(r.status == 503 && set_cookie(&r, "scimd_console").is_none(), "{}", r.status);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let target = file.with_extension("real");
    std::fs::rename(&file, &target).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    assert_eq!(log_in(addr, OPERATOR_PASSWORD).await.status, 503);
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(&target, &file).unwrap();
    assert_eq!(log_in(addr, OPERATOR_PASSWORD).await.status, 303);
}

#[tokio::test]
async fn wrong_console_passwords_are_throttled() {
    let (_s, addr) = seeded().await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(log_in(addr, "wrong password").await.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");
    // Throttled, the right password does not get in either (until the block ends).
    let r = log_in(addr, OPERATOR_PASSWORD).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
}

// ---- a real browser -------------------------------------------------------------------

struct Driver {
    child: std::process::Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    /// chromedriver with headless Chromium, or `None` (and why) when the machine has none.
    async fn start() -> Result<Driver, String> {
        let (driver, browser) = (Path::new("/usr/bin/chromedriver"), Path::new("/usr/bin/chromium"));
        if !driver.exists() || !browser.exists() {
            return Err("no /usr/bin/chromedriver or /usr/bin/chromium (apt-get install chromium chromium-driver)".into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(driver).arg(format!("--port={port}")).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().map_err(|e| e.to_string())?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not listen".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut d = Driver { child, addr, session: String::new() };
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": browser, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}}}});
        let r = d.call("POST", "/session", Some(caps)).await;
        d.session = r["sessionId"].as_str().ok_or_else(|| format!("no session: {r}"))?.to_string();
        Ok(d)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let r = http(self.addr, method, path, &[("content-type", "application/json")], body.as_deref()).await;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        v.get("value").cloned().unwrap_or(v)
    }

    async fn go(&self, url: &str) {
        self.call("POST", &format!("/session/{}/url", self.session), Some(json!({"url": url}))).await;
    }

    async fn find(&self, css: &str) -> String {
        let r = self.call("POST", &format!("/session/{}/element", self.session), Some(json!({"using": "css selector", "value": css}))).await;
        r[ELEMENT].as_str().unwrap_or_else(|| panic!("no {css}: {r}")).to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/session/{}/element/{e}/value", self.session), Some(json!({"text": text}))).await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/session/{}/element/{e}/click", self.session), Some(json!({}))).await;
    }

    async fn url(&self) -> String {
        self.call("GET", &format!("/session/{}/url", self.session), None).await.as_str().unwrap_or_default().to_string()
    }

    /// Polls what `read` gives until `wanted` holds (a click's navigation may still be
    /// under way, and a form posted to its own URL changes no URL).
    async fn wait<F: std::future::Future<Output = String>>(&self, read: impl Fn() -> F, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = read().await;
            if wanted(&seen) {
                return seen;
            }
            assert!(Instant::now() < deadline, "the browser never showed what was expected: {seen}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_url(&self, wanted: impl Fn(&str) -> bool) -> String {
        self.wait(|| self.url(), wanted).await
    }

    async fn wait_source(&self, wanted: impl Fn(&str) -> bool) -> String {
        self.wait(|| self.source(), wanted).await
    }

    async fn source(&self) -> String {
        self.call("GET", &format!("/session/{}/source", self.session), None).await.as_str().unwrap_or_default().to_string()
    }

    /// Saves a screenshot as a test artifact: target/console-screenshots/NAME.png.
    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self.call("GET", &format!("/session/{}/screenshot", self.session), None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

#[tokio::test]
async fn the_console_in_a_real_browser() {
    let driver = match Driver::start().await {
        Ok(d) => d,
        Err(why) if std::env::var_os("CI").is_none() => {
            println!("skipped: {why}");
            return;
        }
        Err(why) => panic!("CI must run the browser test: {why}"),
    };
    let (_s, addr) = seeded().await;
    let base = format!("http://{addr}");
    driver.go(&format!("{base}/console/")).await;
    assert!(driver.url().await.ends_with("/console/login"), "sent to the login page");
    driver.type_into("input[name=password]", "wrong password").await;
    driver.click("button[type=submit]").await;
    driver.wait_source(|p| p.contains("Wrong password.")).await;
    driver.type_into("input[name=password]", OPERATOR_PASSWORD).await;
    driver.click("button[type=submit]").await;
    driver.wait_url(|u| u.ends_with("/console/")).await;
    driver.wait_source(|p| p.contains(">acme<") && p.contains(">other<")).await;
    driver.screenshot("overview").await;

    // The refused request's detail, on the tenant's page.
    driver.click("a[href='/console/t/acme']").await;
    driver.wait_url(|u| u.ends_with("/console/t/acme")).await;
    driver.wait_source(|p| p.contains("must equal the user") && p.contains("carl")).await;
    driver.screenshot("tenant").await;

    // Search the log for a user.
    driver.click("a[href='/console/t/acme/log']").await;
    driver.wait_url(|u| u.ends_with("/log")).await;
    driver.wait_source(|p| p.contains("name=\"user\"")).await;
    driver.type_into("input[name=user]", "ann@example.com").await;
    driver.click("main form button[type=submit]").await;
    driver.wait_url(|u| u.contains("user=ann")).await;
    let page = driver.wait_source(|p| p.contains("value=\"ann@example.com\"") && p.contains("</table>")).await;
    assert!(!page.contains("ben@example.com"), "{page}");
    driver.screenshot("log").await;

    driver.click("form[action='/console/logout'] button").await;
    driver.wait_url(|u| u.ends_with("/console/login")).await;
    driver.go(&format!("{base}/console/")).await;
    driver.wait_url(|u| u.ends_with("/console/login")).await;
    driver.call("DELETE", &format!("/session/{}", driver.session), None).await;
}

#[tokio::test]
async fn off_the_loopback_the_console_is_served_over_tls_only() {
    let s = TestServer::start_with_settings("", |c| c.metrics_listen = Some("0.0.0.0:0".parse().unwrap())).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", s.metrics_addr.unwrap().port()).parse().unwrap();
    // Plain HTTP: metrics yes, the console no (its password would cross the network in clear).
    let r = http(addr, "GET", "/console/login", &[], None).await;
    assert!(r.status == 404 && r.body.contains("https"), "{} {}", r.status, r.body);
    assert!(crate::metrics::scrape(addr, "/metrics").await.0.contains("200"));
    // TLS with the server's certificate: the console, its cookies `Secure`.
    let client = crate::support::Client::new(addr, &s.ca);
    let r = client.raw(hyper::Method::GET, "/console/login", &[], None).await;
    assert_eq!(r.status, 200);
    let cookie = r.headers.get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cookie.starts_with("scimd_console_login=") && cookie.contains("; Secure"), "{cookie}");
    // Logged in over TLS, the session cookie is `Secure` too.
    set_password(s.data().root(), OPERATOR_PASSWORD);
    let token = cookie_value(&cookie);
    let page = String::from_utf8_lossy(&r.raw).to_string();
    let body = format!("csrf={}&password={}", csrf_of(&page), OPERATOR_PASSWORD.replace(' ', "+"));
    let login_cookie = format!("scimd_console_login={token}");
    let headers = [("cookie", login_cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let r = client.raw(hyper::Method::POST, "/console/login", &headers, Some(body.into_bytes())).await;
    assert_eq!(r.status, 303);
    let session = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|c| c.starts_with("scimd_console=")).unwrap_or_default().to_string();
    assert!(session.contains("HttpOnly") && session.contains("; Secure"), "{session}");
}
