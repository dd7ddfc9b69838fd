//! Issue 22: the faults an operator meets, on the real binary. For each: what the IdP gets
//! (503 with `Retry-After` and a SCIM error that names the problem, never "internal error"),
//! what the operator sees (`scimd_tenant_fault`, the operator's `/healthz`, one ERROR line
//! naming the tenant and the fault, `scimd check`), that nothing acknowledged is lost and
//! no database is written while broken, that it recovers without a restart once the cause
//! is gone, and that the other tenants never notice.
//!
//! A full disk is a size-limited tmpfs and a read-only directory a read-only bind mount:
//! both need root (CI runs as root); elsewhere those tests say why they are skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use crate::metrics::scrape;
use crate::support::{add_tenant, basic, binary_data_dir, Client, Response, ServeBinary, TempDir, ADMIN, PASSWORD};

/// A mount (tmpfs or read-only bind) undone on drop.
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("mount").args(args).output().map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// A tmpfs of `size` (e.g. "8m") on `at`; `None` (the test is skipped, saying why)
    /// where this process may not mount.
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        match Self::run(&["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs", &at.to_string_lossy()]) {
            Ok(()) => Some(Mount(at.to_path_buf())),
            Err(why) => {
                println!("SKIPPED: cannot mount a tmpfs on {} ({why}); run as root to test a full disk", at.display());
                None
            }
        }
    }

    /// `dir` made read-only in place (a bind mount of itself, remounted read-only).
    fn read_only(dir: &Path) -> Option<Mount> {
        let d = dir.to_string_lossy();
        if let Err(why) = Self::run(&["--bind", &d, &d]) {
            println!("SKIPPED: cannot bind-mount {d} ({why}); run as root to test a read-only directory");
            return None;
        }
        let mount = Mount(dir.to_path_buf());
        Self::run(&["-o", "remount,bind,ro", &d]).expect("remount read-only");
        Some(mount)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with one file until it refuses a byte more; returns it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = f.flush();
    path
}

/// Polls `probe` until it says true (bounded: what a recovery may take).
async fn until<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real binary over a data directory, its client and its operator listener.
struct Rig {
    dir: TempDir,
    data: scimd::tenant::DataDir,
    certs: scimd::certs::DevCertPaths,
    server: ServeBinary,
    client: Client,
    auth: String,
}

impl Rig {
    async fn start(dir: TempDir, data: scimd::tenant::DataDir) -> Rig {
        let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
        let server = ServeBinary::start(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info,scimd::http::access=warn").await;
        let client = Client::new(server.addr, &certs.ca_cert);
        Rig { dir, data, certs, server, client, auth: basic(ADMIN, PASSWORD) }
    }

    async fn restart(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        self.server = ServeBinary::start(self.data.root(), &self.certs.server_cert, &self.certs.server_key, self.dir.path(), "scimd=info,scimd::http::access=warn").await;
        self.client = Client::new(self.server.addr, &self.certs.ca_cert);
    }

    async fn call(&self, method: Method, tenant: &str, path: &str, body: Option<Value>) -> Response {
        let headers = [("authorization", self.auth.as_str()), ("content-type", "application/scim+json")];
        self.client.raw(method, &format!("/t/{tenant}/scim/v2{path}"), &headers, body.map(|b| b.to_string().into_bytes())).await
    }

    async fn create(&self, tenant: &str, name: &str) -> Response {
        self.call(Method::POST, tenant, "/Users", Some(json!({"userName": name, "name": {"givenName": "G"}}))).await
    }

    async fn metrics(&self) -> String {
        scrape(self.server.metrics_addr(), "/metrics").await.1
    }

    async fn health(&self) -> Value {
        serde_json::from_str(&scrape(self.server.metrics_addr(), "/healthz").await.1).unwrap()
    }

    /// `scimd check` on the data directory: (succeeded, output).
    fn check(&self) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimd")).args(["check", "--data-dir"]).arg(self.data.root()).env_remove("SCIMD_CONFIG").output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// How many ERROR lines name `tenant` and `fault`.
    fn error_lines(&self, tenant: &str, fault: &str) -> usize {
        let needle = format!("tenant {tenant}: {fault}");
        self.server.log().lines().filter(|l| l.contains("ERROR") && (l.contains(&needle) || l.contains(&format!("tenant {tenant}: still {fault}")))).count()
    }
}

/// What the IdP must get for a fault: 503, `Retry-After`, a SCIM error in words of its own.
#[track_caller]
fn assert_unavailable(r: &Response, words: &str) {
    assert_retry(r, words, None);
}

/// `assert_unavailable`, and `Retry-After` is `secs`.
#[track_caller]
fn assert_retry(r: &Response, words: &str, secs: Option<u64>) {
    r.assert_error(503, None);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains(words) && detail.contains("retry later"), "{detail}");
    assert!(!detail.contains("internal") && !detail.contains("sqlite") && !detail.contains('/'), "no internal detail: {detail}");
    let retry: u64 = r.headers.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    if let Some(secs) = secs {
        assert_eq!(retry, secs);
    }
}

/// What the operator must see while `tenant` has `fault`.
async fn assert_told(rig: &Rig, tenant: &str, fault: &str) {
    let metrics = rig.metrics().await;
    assert!(metrics.contains(&format!("scimd_tenant_fault{{tenant=\"{tenant}\",fault=\"{fault}\"}} 1")), "{metrics}");
    let total = format!("scimd_faults_total{{fault=\"{fault}\"}} ");
    let raised: u64 = metrics.lines().find_map(|l| l.strip_prefix(&total)).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(raised >= 1, "{metrics}");
    let health = rig.health().await;
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["tenants"][tenant]["reasons"][0].as_str().unwrap_or_default();
    assert!(reason.starts_with(fault), "{health}");
    assert_eq!(rig.error_lines(tenant, fault), 1, "one ERROR line however many requests:\n{}", rig.server.log());
    let (ok, out) = rig.check();
    assert!(!ok && out.contains(&format!("tenant {tenant}: the running server reports {fault}")), "{out}");
}

/// Once recovered: no fault left, the health is ok, the log said so.
async fn assert_recovered(rig: &Rig, tenant: &str, fault: &str) {
    until("the fault to clear", || async { !rig.metrics().await.contains("scimd_tenant_fault{") }).await;
    assert_eq!(rig.health().await["status"], "ok");
    assert!(rig.server.log().contains(&format!("tenant {tenant}: recovered from {fault}")), "{}", rig.server.log());
}

/// 1. Disk full during writes: every create acknowledged before is kept, the refused ones
/// are not half-there, reads and the other tenant go on, writes resume once space is freed.
#[tokio::test]
async fn disk_full_during_writes() {
    let dir = TempDir::new("fault-full");
    let Some(_mount) = Mount::tmpfs(&dir.path().join("data"), "8m") else { return };
    let data = binary_data_dir(dir.path()).await;
    add_tenant(&data, "other").await;
    let rig = Rig::start(dir, data).await;
    assert_eq!(rig.create("acme", "first").await.status, 201);
    // Open before the disk fills: a tenant that must open on a full disk cannot create its
    // shared memory, and is refused like the writes (`disk_full_at_start`).
    assert_eq!(rig.call(Method::GET, "other", "/Users", None).await.status, 200);
    let filler = fill(rig.data.root());
    // Give back a little, so some creates still fit and the disk fills under them.
    std::fs::File::options().write(true).open(&filler).unwrap().set_len(std::fs::metadata(&filler).unwrap().len().saturating_sub(256 * 1024)).unwrap();
    let (mut acked, mut refused) = (vec!["first".to_string()], Vec::new());
    for i in 0..5_000 {
        let name = format!("u{i}");
        let r = rig.create("acme", &name).await;
        match r.status.as_u16() {
            201 => acked.push(name),
            _ => {
                assert_retry(&r, "storage is full", Some(60));
                refused.push(name);
                if refused.len() == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 5, "the disk never filled");
    println!("disk full: {} creates acknowledged before the first refusal", acked.len());
    // Reads go on, here and in the other tenant.
    let read = rig.call(Method::GET, "acme", "/Users?count=1", None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(rig.call(Method::GET, "other", "/Users", None).await.status, 200);
    assert_told(&rig, "acme", "disk_full").await;
    assert!(rig.check().1.contains("ERROR data directory filesystem"), "{}", rig.check().1);

    std::fs::remove_file(&filler).unwrap();
    // No restart: the next write succeeds.
    assert_eq!(rig.create("acme", "after").await.status, 201);
    acked.push("after".into());
    assert_recovered(&rig, "acme", "disk_full").await;

    let db = rusqlite::Connection::open(rig.data.database(&scimd::tenant::TenantId::parse("acme").unwrap())).unwrap();
    let names: Vec<String> = db.prepare("SELECT user_name FROM users ORDER BY pk").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut expected = acked.clone();
    expected.sort();
    let mut got = names.clone();
    got.sort();
    got.retain(|n| n != ADMIN);
    assert_eq!(got, expected, "exactly the acknowledged creates are stored");
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
}

/// 1b. Disk full at start: a tenant whose WAL and shared memory cannot be created is
/// refused (503), the server starts and serves, and it opens once space is freed.
#[tokio::test]
async fn disk_full_at_start() {
    let dir = TempDir::new("fault-full-start");
    let Some(_mount) = Mount::tmpfs(&dir.path().join("data"), "4m") else { return };
    let data = binary_data_dir(dir.path()).await;
    let filler = fill(data.root());
    let rig = Rig::start(dir, data).await;
    let r = rig.call(Method::GET, "acme", "/Users", None).await;
    assert_unavailable(&r, "retry later");
    let fault = if rig.metrics().await.contains("fault=\"disk_full\"") { "disk_full" } else { "read_only" };
    assert_eq!(fault, "disk_full", "{}", rig.metrics().await);
    // Asked again while refused: the same answer, no second ERROR line.
    assert_unavailable(&rig.call(Method::GET, "acme", "/Users", None).await, "retry later");
    assert_told(&rig, "acme", "disk_full").await;
    std::fs::remove_file(&filler).unwrap();
    until("the tenant to open", || async { rig.call(Method::GET, "acme", "/Users", None).await.status == 200 }).await;
    assert_eq!(rig.create("acme", "after").await.status, 201);
    assert_recovered(&rig, "acme", "disk_full").await;
}

/// 2. A database that is corrupt, truncated, of a newer schema or not a database: that
/// tenant is refused (503) and its file left exactly as it was; the others serve; a good
/// file put in its place is opened without a restart.
#[tokio::test]
async fn damaged_databases() {
    let dir = TempDir::new("fault-damaged");
    let data = binary_data_dir(dir.path()).await;
    let broken = [("corrupt", "corrupt"), ("truncated", "corrupt"), ("newer", "newer_schema"), ("notadb", "corrupt")];
    for (t, _) in broken {
        add_tenant(&data, t).await;
    }
    let mut rig = Rig::start(dir, data).await;
    for i in 0..150 {
        assert_eq!(rig.create("truncated", &format!("user-with-a-long-name-{i:04}")).await.status, 201);
    }
    let _ = rig.server.child.kill();
    let _ = rig.server.child.wait();
    let data = rig.data.clone();
    let path = |t: &str| data.database(&scimd::tenant::TenantId::parse(t).unwrap());
    // Checkpointed and closed by this connection: the file alone holds everything.
    for (t, _) in broken {
        let c = rusqlite::Connection::open(path(t)).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        drop(c);
        std::fs::copy(path(t), rig.dir.path().join(format!("{t}.good"))).unwrap();
    }
    let mut bytes = std::fs::read(path("corrupt")).unwrap();
    bytes[100..4096].fill(0xA5);
    std::fs::write(path("corrupt"), &bytes).unwrap();
    let len = std::fs::metadata(path("truncated")).unwrap().len();
    std::fs::File::options().write(true).open(path("truncated")).unwrap().set_len(len / 3 / 4096 * 4096).unwrap();
    rusqlite::Connection::open(path("newer")).unwrap().pragma_update(None, "user_version", 999).unwrap();
    std::fs::write(path("notadb"), "this is not a database, it is a note\n".repeat(200)).unwrap();
    let damaged: Vec<Vec<u8>> = broken.iter().map(|(t, _)| std::fs::read(path(t)).unwrap()).collect();

    rig.restart().await;
    for (t, fault) in broken {
        let r = rig.call(Method::GET, t, "/Users", None).await;
        assert_retry(&r, "database cannot be used", Some(300));
        // Its accounts are in the database: refused before authentication.
        assert_eq!(rig.client.raw(Method::GET, &format!("/t/{t}/scim/v2/Users"), &[], None).await.status, 503);
        assert!(rig.metrics().await.contains(&format!("scimd_tenant_fault{{tenant=\"{t}\",fault=\"{fault}\"}} 1")), "{t}: {}", rig.metrics().await);
        // The IdP retries: refused again, told once.
        assert_eq!(rig.call(Method::GET, t, "/Users", None).await.status, 503);
        assert_eq!(rig.error_lines(t, fault), 1, "{t}:\n{}", rig.server.log());
        assert_eq!(rig.create("acme", &format!("while-{t}")).await.status, 201, "the other tenant is unaffected");
    }
    assert_told(&rig, "newer", "newer_schema").await;
    for ((t, _), before) in broken.iter().zip(&damaged) {
        assert_eq!(&std::fs::read(path(t)).unwrap(), before, "{t}: a damaged database is never written");
    }
    // The operator puts good files in place (the tenants are closed while refused).
    for (t, _) in broken {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path(t).display()));
        }
        std::fs::copy(rig.dir.path().join(format!("{t}.good")), path(t)).unwrap();
    }
    for (t, _) in broken {
        until(&format!("{t} restored to serve"), || async { rig.call(Method::GET, t, "/Users", None).await.status == 200 }).await;
    }
    let listed = rig.call(Method::GET, "truncated", "/Users?count=1", None).await;
    assert_eq!(listed.body["totalResults"], 150, "{}", listed.body);
    assert_recovered(&rig, "newer", "newer_schema").await;
}

/// 3. The data directory, or one tenant's directory, read-only (a restore from a snapshot,
/// a remount): tenants that must open there are refused (503), the others serve, and they
/// open once it is writable again.
#[tokio::test]
async fn read_only_directories() {
    let dir = TempDir::new("fault-ro");
    let data = binary_data_dir(dir.path()).await;
    add_tenant(&data, "other").await;
    add_tenant(&data, "third").await;
    let rig = Rig::start(dir, data).await;
    assert_eq!(rig.create("other", "before").await.status, 201);
    let tenant_dir = rig.data.tenant_dir(&scimd::tenant::TenantId::parse("acme").unwrap());
    let Some(one) = Mount::read_only(&tenant_dir) else { return };
    assert_unavailable(&rig.create("acme", "refused").await, "read-only");
    assert_unavailable(&rig.call(Method::GET, "acme", "/Users", None).await, "read-only");
    assert_eq!(rig.create("other", "meanwhile").await.status, 201, "the other tenant is unaffected");
    assert_told(&rig, "acme", "read_only").await;
    drop(one);
    until("the tenant to open", || async { rig.call(Method::GET, "acme", "/Users", None).await.status == 200 }).await;
    assert_eq!(rig.create("acme", "after").await.status, 201);
    assert_recovered(&rig, "acme", "read_only").await;

    // The whole data directory: a tenant not open yet cannot open.
    let Some(all) = Mount::read_only(rig.data.root()) else { return };
    assert_unavailable(&rig.call(Method::GET, "third", "/Users", None).await, "read-only");
    assert!(rig.check().1.contains("is not writable"), "{}", rig.check().1);
    drop(all);
    until("the tenant to open", || async { rig.call(Method::GET, "third", "/Users", None).await.status == 200 }).await;
    assert_recovered(&rig, "third", "read_only").await;
}

/// 4. A tenant's key files missing, damaged or unreadable while bearer tokens are in use:
/// the tokens keep working (verified with the database's copy of the key), issuing one is
/// refused (503) until the files are back, and files missing at a restart are written back.
#[tokio::test]
async fn signing_key_files_lost_or_damaged() {
    let dir = TempDir::new("fault-keys");
    let data = binary_data_dir(dir.path()).await;
    let mut rig = Rig::start(dir, data).await;
    assert_eq!(rig.client.as_(&rig.auth, Method::POST, "/t/acme/rest/token/apiKeygen").await.status, 201);
    let issued = rig.client.as_(&rig.auth, Method::GET, "/t/acme/rest/token").await;
    let bearer = format!("Bearer {}", issued.body["token"].as_str().unwrap());
    let acme = scimd::tenant::TenantId::parse("acme").unwrap();
    let (private, public) = (rig.data.private_key(&acme), rig.data.public_key(&acme));
    let (private_pem, public_pem) = (std::fs::read(&private).unwrap(), std::fs::read(&public).unwrap());
    let write_owner_only = |path: &Path, bytes: &[u8]| {
        use std::os::unix::fs::OpenOptionsExt;
        use std::io::Write;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap().write_all(bytes).unwrap();
    };
    let users = |rig: &Rig| {
        let (client, bearer) = (rig.client.clone(), bearer.clone());
        async move { client.as_(&bearer, Method::GET, "/t/acme/scim/v2/Users").await.status.as_u16() }
    };
    assert_eq!(users(&rig).await, 200);

    std::fs::remove_file(&private).unwrap();
    std::fs::remove_file(&public).unwrap();
    assert_eq!(users(&rig).await, 200, "missing: the database's copy verifies");
    assert_unavailable(&rig.client.as_(&rig.auth, Method::GET, "/t/acme/rest/token?revokeExistingToken=true").await, "signing key");
    assert_told(&rig, "acme", "signing_key").await;
    write_owner_only(&private, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    assert_eq!(users(&rig).await, 200, "damaged");
    std::fs::remove_file(&private).unwrap();
    std::fs::create_dir(&private).unwrap();
    assert_eq!(users(&rig).await, 200, "unreadable (a directory in its place)");
    assert_eq!(rig.error_lines("acme", "signing_key"), 1, "{}", rig.server.log());

    std::fs::remove_dir(&private).unwrap();
    write_owner_only(&private, &private_pem);
    write_owner_only(&public, &public_pem);
    assert_eq!(users(&rig).await, 200);
    assert_recovered(&rig, "acme", "signing_key").await;

    // Lost while the server was down: written back from the database's copy at open.
    std::fs::remove_file(&private).unwrap();
    std::fs::remove_file(&public).unwrap();
    rig.restart().await;
    assert_eq!(users(&rig).await, 200);
    assert_eq!(std::fs::read(&private).unwrap(), private_pem);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(rig.server.log().contains("tenant acme: the token signing key files were missing; wrote them back from the database's copy"), "{}", rig.server.log());
    assert!(!rig.metrics().await.contains("scimd_tenant_fault{"));
    // A key deleted through scimd — here by the command, in another process, while the
    // server runs — is gone for good, its tokens with it: the copy does not bring it back,
    // and its missing files are no fault.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimd")).args(["token", "delete-key", "--tenant", "acme", "--data-dir"]).arg(rig.data.root()).env_remove("SCIMD_CONFIG").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!private.exists());
    assert_eq!(users(&rig).await, 401);
    let fresh = rig.client.as_(&rig.auth, Method::GET, "/t/acme/rest/token").await;
    fresh.assert_error(409, None);
    assert!(!rig.metrics().await.contains("scimd_tenant_fault{"), "{}", rig.metrics().await);
    rig.restart().await;
    assert_eq!(users(&rig).await, 401);
    assert!(!private.exists(), "never written back after a deletion");
}

/// 5. `tenant.toml` deleted or unreadable: a reload keeps the settings in force (and says
/// so, once); a tenant that must open without it is refused (503) until it is back.
#[tokio::test]
async fn tenant_toml_lost() {
    let dir = TempDir::new("fault-settings");
    let data = binary_data_dir(dir.path()).await;
    add_tenant(&data, "other").await;
    let mut rig = Rig::start(dir, data).await;
    let settings = rig.data.settings_file(&scimd::tenant::TenantId::parse("acme").unwrap());
    let text = std::fs::read_to_string(&settings).unwrap();
    // This tenant does not require userName = email; the defaults would.
    assert_eq!(rig.create("acme", "plain-1").await.status, 201);

    std::fs::remove_file(&settings).unwrap();
    rig.server.signal("HUP");
    rig.server.wait_for_log("tenant acme: settings").await;
    assert_eq!(rig.create("acme", "plain-2").await.status, 201, "the settings in force are kept");
    assert_told(&rig, "acme", "settings").await;
    std::fs::create_dir(&settings).unwrap();
    rig.server.signal("HUP");
    rig.server.wait_for_log("reloading the certificate and tenant settings").await;
    assert_eq!(rig.create("acme", "plain-3").await.status, 201);
    std::fs::remove_dir(&settings).unwrap();
    std::fs::write(&settings, &text).unwrap();
    rig.server.signal("HUP");
    assert_recovered(&rig, "acme", "settings").await;

    // Missing at a restart: refused, and opened as soon as it is back.
    std::fs::remove_file(&settings).unwrap();
    rig.restart().await;
    assert_unavailable(&rig.create("acme", "plain-4").await, "settings cannot be read");
    assert_eq!(rig.create("other", "meanwhile").await.status, 201, "the other tenant is unaffected");
    assert_told(&rig, "acme", "settings").await;
    std::fs::write(&settings, &text).unwrap();
    until("the tenant to open", || async { rig.create("acme", "plain-5").await.status == 201 }).await;
    assert_recovered(&rig, "acme", "settings").await;
}

/// A tenant whose cause is gone recovers without waiting for the IdP: the sweep tries the
/// refused tenants again (here every second: idle tenants close after 4 s).
#[tokio::test]
async fn a_fixed_tenant_recovers_without_a_request() {
    let dir = TempDir::new("fault-sweep");
    let data = binary_data_dir(dir.path()).await;
    let settings = data.settings_file(&scimd::tenant::TenantId::parse("acme").unwrap());
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::remove_file(&settings).unwrap();
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let server = ServeBinary::start_with_env(data.root(), &certs.server_cert, &certs.server_key, dir.path(), "scimd=info", &[("SCIMD_TENANT_IDLE_SECS", "4")]).await;
    let client = Client::new(server.addr, &certs.ca_cert);
    assert_eq!(client.as_(&basic(ADMIN, PASSWORD), Method::GET, "/t/acme/scim/v2/Users").await.status, 503);
    std::fs::write(&settings, text).unwrap();
    let metrics = server.metrics_addr();
    until("the fault to clear with no request", || async { !scrape(metrics, "/metrics").await.1.contains("scimd_tenant_fault{") }).await;
    assert!(server.log().contains("tenant acme: recovered from settings"), "{}", server.log());
}
