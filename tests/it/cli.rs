//! The binary's operator commands and configuration precedence.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TempDir;

fn scimd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scimd"));
    c.args(args).env_remove("SCIMD_DATA_DIR").env_remove("SCIMD_LISTEN").env_remove("SCIMD_CONFIG");
    c
}

#[test]
fn tenant_create_list_and_admin_add() {
    let dir = TempDir::new("cli");
    let d = dir.path().to_str().unwrap();
    let out = scimd(&["tenant", "create", "acme", "--data-dir", d]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("tenants/acme/scim.db").is_file());
    {
        let conn = rusqlite::Connection::open(dir.path().join("tenants/acme/scim.db")).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), version), ("wal", scimd::store::SCHEMA_VERSION));
    }
    let out = scimd(&["tenant", "create", "acme", "--data-dir", d]).output().unwrap();
    assert!(!out.status.success(), "creating twice fails");
    let out = scimd(&["tenant", "create", "Bad/Id", "--data-dir", d]).output().unwrap();
    assert!(!out.status.success());
    let out = scimd(&["tenant", "create", "beta", "--creator", "3", "--creator-float", "4"]).env("SCIMD_DATA_DIR", d).output().unwrap();
    assert!(out.status.success());
    let toml = std::fs::read_to_string(dir.path().join("tenants/beta/tenant.toml")).unwrap();
    assert!(toml.contains("creator = 3") && toml.contains("creator_float = 4"), "{toml}");
    let acme_toml = std::fs::read_to_string(dir.path().join("tenants/acme/tenant.toml")).unwrap();
    assert!(acme_toml.contains("creator = 50") && acme_toml.contains("creator_float = 500"), "defaults");
    let out = scimd(&["tenant", "list", "--data-dir", d]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "acme\nbeta\n");

    // admin add with a password on stdin; the password never appears in the output.
    let mut child = scimd(&["admin", "add", "--tenant", "acme", "--username", "okta", "--password-stdin", "--data-dir", d])
        .env("SCIMD_KDF_ITERATIONS", "1000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a-long-enough-password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("a-long-enough-password"));
    let conn = rusqlite::Connection::open(dir.path().join("tenants/acme/scim.db")).unwrap();
    let (role, hash): (String, String) =
        conn.query_row("SELECT role, password_hash FROM users WHERE user_name = 'okta'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(role, "org_admin");
    assert!(hash.starts_with("pbkdf2-sha256$1000$"));
    assert!(scimd::auth::password::verify_password("a-long-enough-password", &hash));
    // Generated password: printed once.
    let out = scimd(&["admin", "add", "--tenant", "acme", "--username", "entra", "--data-dir", d]).env("SCIMD_KDF_ITERATIONS", "1000").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("password (shown once): "));
    let out = scimd(&["admin", "add", "--tenant", "nope", "--username", "x", "--data-dir", d]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn serve_refuses_bad_configuration_clearly() {
    let dir = TempDir::new("cli-bad");
    let d = dir.path().to_str().unwrap();
    let out = scimd(&["serve", "--data-dir", d, "--listen", "0.0.0.0:8080", "--insecure-http"]).env("SCIMD_METRICS_LISTEN", "off").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only on a loopback address"));
    let out = scimd(&["serve", "--data-dir", d]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cert"));
    let out = scimd(&["serve", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--config` supplies settings, the environment overrides the file, flags override both.
#[test]
fn serve_takes_config_file_env_and_flags() {
    let dir = TempDir::new("cli-cfg");
    let config = dir.path().join("scimd.toml");
    let data = dir.path().join("data");
    std::fs::write(&config, format!("data_dir = {:?}\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n", data.to_str().unwrap())).unwrap();
    let mut child = scimd(&["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("SCIMD_LISTEN", "127.0.0.1:2")
        .env("SCIMD_METRICS_LISTEN", "off")
        .env("RUST_LOG", "scimd=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (with a deadline) for the "serving on" line, which names the real port.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut addr = None;
    while addr.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            addr = line.split("serving on http://").nth(1).map(str::to_string);
        }
    }
    let addr = addr.expect("serve announced its address");
    assert!(!addr.ends_with(":1") && !addr.ends_with(":2"), "the --listen flag won: {addr}");
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(data.is_dir(), "data_dir came from the file");
    // SIGTERM: drain and exit 0.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn token_and_apiclient_commands() {
    let dir = TempDir::new("cli-token");
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", d]);
        let out = scimd(&all).env("SCIMD_KDF_ITERATIONS", "1000").output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    assert!(run(&["tenant", "create", "acme"]).0);
    assert!(run(&["admin", "add", "--tenant", "acme", "--username", "entra-scim"]).0);
    let (ok, _, err) = run(&["token", "issue", "--tenant", "acme", "--username", "entra-scim"]);
    assert!(!ok && err.contains("token keygen"), "{err}");
    let (ok, out, _) = run(&["token", "keygen", "--tenant", "acme"]);
    assert!(ok && out.contains("SHA256:"), "{out}");
    let (ok, out, err) = run(&["token", "issue", "--tenant", "acme", "--username", "entra-scim"]);
    assert!(ok && out.contains("token (shown once): apikey_"), "{out}");
    // The command recorded what it changed in the catalogue as it closed the tenant (a
    // running server reads closed tenants' token expiries from there).
    assert!(!err.contains("catalogue"), "{err}");
    let catalogue = scimd::tenant::DataDir::new(dir.path()).catalogue().all().unwrap();
    assert_eq!(catalogue["acme"].tokens.iter().map(|t| t.owner.as_str()).collect::<Vec<_>>(), ["entra-scim"]);
    let (ok, _, err) = run(&["token", "issue", "--tenant", "acme", "--username", "entra-scim"]);
    assert!(!ok && err.contains("rotate"), "{err}");
    let (ok, out, _) = run(&["token", "list", "--tenant", "acme"]);
    assert!(ok, "{out}");
    let row = out.lines().find(|l| l.starts_with("entra-scim")).expect("the token is listed");
    assert!(row.trim_end().ends_with("181"), "days left: {row}");
    assert!(run(&["token", "rotate", "--tenant", "acme", "--username", "entra-scim"]).1.contains("apikey_"));
    assert!(run(&["token", "revoke", "--tenant", "acme", "--username", "entra-scim"]).0);
    assert_eq!(run(&["token", "list", "--tenant", "acme"]).1.lines().count(), 1, "only the header is left");
    let (ok, out, _) = run(&["apiclient", "add", "--tenant", "acme", "--username", "entra-scim"]);
    assert!(ok && out.contains("client id: apiclient_") && out.contains("secret (shown once): "), "{out}");
    assert!(run(&["token", "delete-key", "--tenant", "acme"]).1.contains("deleted"));
    assert!(!dir.path().join("tenants/acme/keys/token-signing.key.pem").exists());
}

#[test]
fn cert_self_signed_writes_a_usable_pair() {
    let dir = TempDir::new("cert-cli");
    let out_dir = dir.path().join("certs");
    let out = scimd(&["cert", "self-signed", "--host", "scim.test", "--host", "127.0.0.1", "--out", out_dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["ca.pem", "server.pem", "server.key"] {
        assert!(out_dir.join(f).is_file(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(out_dir.join("server.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // The pair loads as a server certificate.
    assert!(scimd::http::server::tls_config(&out_dir.join("server.pem"), &out_dir.join("server.key")).is_ok());
    let out = scimd(&["cert", "self-signed"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--host"));
}

/// Issue 14: each command takes only its own arguments (a usage error is exit 2), and
/// `--flag=value` is the same as `--flag value`.
#[test]
fn commands_take_only_their_own_flags_in_either_spelling() {
    let dir = TempDir::new("cli-args");
    let d = dir.path().to_str().unwrap();
    for wrong in [
        &["tenant", "list", "--apply", "--yes", "--data-dir", d][..],
        &["tenant", "list", "--tenant", "acme", "--data-dir", d],
        &["serve", "--username", "x", "--data-dir", d, "--insecure-http"],
        &["token", "keygen", "--tenant", "acme", "--username", "x", "--data-dir", d],
        &["user", "add", "--tenant", "acme", "--username", "x", "--data-dir", d],
    ] {
        let out = scimd(wrong).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{wrong:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let data_dir = format!("--data-dir={d}");
    let out = scimd(&["tenant", "create", "acme", &data_dir, "--creator=3", "--creator-float=4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = std::fs::read_to_string(dir.path().join("tenants/acme/tenant.toml")).unwrap();
    assert!(toml.contains("creator = 3") && toml.contains("creator_float = 4"), "{toml}");
    let out = scimd(&["tenant", "list", &data_dir]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "acme\n");
}

/// Issue 14: `--help` and the manual pages come from one definition, so every flag serve
/// takes is in both (`--metrics-listen` was missing from the hand-written help).
#[test]
fn help_and_man_pages_list_every_flag() {
    let dir = TempDir::new("cli-man");
    let out = scimd(&["man", "--out", dir.path().to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["scimd.1", "scimd-serve.1", "scimd-tenant-create.1", "scimd-token-issue.1", "scimd-healthcheck.1"] {
        assert!(dir.path().join(page).is_file(), "{page}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("scimd.1")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by everyone despite the 077 umask");
    }
    let help = String::from_utf8(scimd(&["serve", "--help"]).output().unwrap().stdout).unwrap();
    let page = std::fs::read_to_string(dir.path().join("scimd-serve.1")).unwrap();
    for flag in ["config", "data-dir", "listen", "cert", "key", "insecure-http", "public-url", "metrics-listen"] {
        assert!(help.contains(&format!("--{flag}")), "serve --help lacks --{flag}: {help}");
        // roff escapes the dashes.
        assert!(page.replace("\\-", "-").contains(&format!("--{flag}")), "scimd-serve.1 lacks --{flag}");
    }
    assert!(help.contains("SCIMD_METRICS_LISTEN"), "{help}");
    let top = String::from_utf8(scimd(&["--help"]).output().unwrap().stdout).unwrap();
    assert!(top.starts_with("NAME") && top.contains("healthcheck") && top.contains("man "), "{top}");
}

/// Issue 14: one precedence merge for every command. A command that opens a tenant finds
/// the data directory in the flag, else SCIMD_DATA_DIR, else the config file; the commands
/// that hash a password take kdf_iterations from the config file too (they read only the
/// environment before).
#[test]
fn every_command_reads_flags_then_environment_then_config_file() {
    let dir = TempDir::new("cli-merge");
    let (data, other) = (dir.path().join("data"), dir.path().join("other"));
    let config = dir.path().join("scimd.toml");
    std::fs::write(&config, format!("data_dir = {:?}\nkdf_iterations = 1000\n", data.to_str().unwrap())).unwrap();
    let config_flag = format!("--config={}", config.display());
    let with_config = |args: &[&str]| {
        let mut c = scimd(args);
        c.arg(&config_flag).env_remove("SCIMD_KDF_ITERATIONS");
        c
    };
    assert!(with_config(&["tenant", "create", "acme"]).output().unwrap().status.success());
    assert!(data.join("tenants/acme").is_dir(), "data_dir from the file");
    let out = with_config(&["tenant", "create", "beta"]).env("SCIMD_DATA_DIR", &other).output().unwrap();
    assert!(out.status.success() && other.join("tenants/beta").is_dir(), "the environment wins over the file");
    let out = with_config(&["tenant", "list", "--data-dir", data.to_str().unwrap()]).env("SCIMD_DATA_DIR", &other).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "acme\n", "the flag wins over both");

    // kdf_iterations from the file (--config, then SCIMD_CONFIG): 1000, not the default.
    assert!(with_config(&["admin", "add", "--tenant", "acme", "--username", "okta"]).output().unwrap().status.success());
    let mut child = scimd(&["user", "add", "--local", "--tenant", "acme", "--username", "pat@x.com", "--password-stdin"])
        .env("SCIMD_CONFIG", &config)
        .env_remove("SCIMD_KDF_ITERATIONS")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a-long-enough-password\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(with_config(&["apiclient", "add", "--tenant", "acme", "--username", "okta"]).output().unwrap().status.success());
    let conn = rusqlite::Connection::open(data.join("tenants/acme/scim.db")).unwrap();
    let mut hashes: Vec<String> = conn
        .prepare("SELECT password_hash FROM users WHERE password_hash IS NOT NULL UNION ALL SELECT secret_hash FROM api_clients")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    hashes.sort();
    assert_eq!(hashes.len(), 3, "{hashes:?}");
    assert!(hashes.iter().all(|h| h.starts_with("pbkdf2-sha256$1000$")), "{hashes:?}");
    // And the environment still wins over the file.
    let out = with_config(&["admin", "add", "--tenant", "acme", "--username", "entra"]).env("SCIMD_KDF_ITERATIONS", "1001").output().unwrap();
    assert!(out.status.success());
    let hash: String = conn.query_row("SELECT password_hash FROM users WHERE user_name = 'entra'", [], |r| r.get(0)).unwrap();
    assert!(hash.starts_with("pbkdf2-sha256$1001$"), "{hash}");
}
