//! packaging/: the systemd unit verifies (its man page included), the notify protocol
//! works, the example config is complete and valid, and the Containerfile is linted and its
//! entrypoint runs, with its environment, as a non-root user in a scratch directory (no
//! container engine runs here).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TempDir;

fn packaging(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(name)
}

fn required_in_ci(tool: &str) -> bool {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var("CI").is_err(), "CI must have {tool}");
    if !found {
        eprintln!("skipping: {tool} not installed");
    }
    found
}

#[test]
fn systemd_unit_verifies() {
    if !required_in_ci("systemd-analyze") || !required_in_ci("man") {
        return;
    }
    let unit = std::fs::read_to_string(packaging("scimd.service")).unwrap();
    for needed in ["Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=scimd", "Restart=on-failure", "CapabilityBoundingSet=\n"] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }
    // Verify it as installed: ExecStart pointing at the binary just built, and the manual
    // pages installed as the README says (`scimd man --out /usr/local/share/man/man1`), here
    // under a scratch MANPATH, so that Documentation=man:scimd(1) resolves.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("scimd man --out /usr/local/share/man/man1"), "the README installs the manual pages");
    let dir = TempDir::new("unit");
    let man1 = dir.path().join("man/man1");
    let out = Command::new(env!("CARGO_BIN_EXE_scimd")).arg("man").arg(format!("--out={}", man1.display())).output().unwrap();
    assert!(out.status.success(), "scimd man: {}", String::from_utf8_lossy(&out.stderr));
    assert!(man1.join("scimd.1").is_file() && man1.join("scimd-serve.1").is_file());
    let local = unit.replace("/usr/local/bin/scimd", env!("CARGO_BIN_EXE_scimd"));
    let path = dir.path().join("scimd.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).env("MANPATH", dir.path().join("man")).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.is_empty(), "systemd-analyze verify printed: {said}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn serve_tells_systemd_it_is_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let data = crate::support::binary_data_dir(dir.path()).await;
    let certs = scimd::certs::generate(&dir.path().join("certs"), &["localhost".into()]).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.root())
        .arg("--cert")
        .arg(&certs.server_cert)
        .arg("--key")
        .arg(&certs.server_key)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("SCIMD_METRICS_LISTEN", "off")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
}

#[test]
fn example_config_has_every_setting_and_parses() {
    let text = std::fs::read_to_string(packaging("scimd.toml")).unwrap();
    let raw: scimd::config::RawConfig = toml::from_str(&text).expect("the example parses (unknown keys are refused)");
    // Every setting the server reads is shown: RawConfig's Debug lists its fields.
    let fields = format!("{:?}", scimd::config::RawConfig::default());
    for field in fields.trim_start_matches("RawConfig { ").trim_end_matches(" }").split(", ").map(|f| f.split(':').next().unwrap()) {
        assert!(text.contains(&format!("{field} =")), "packaging/scimd.toml does not show {field}");
    }
    assert!(scimd::config::ServeConfig::validate(raw).is_ok());
}

#[test]
fn containerfile_lints_and_its_entrypoint_runs_as_non_root() {
    let text = std::fs::read_to_string(packaging("Containerfile")).unwrap();
    // Lint: pinned bases, multi-stage, non-root user, volume, healthcheck, exec-form commands.
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(froms.iter().all(|f| !f.contains(":latest") && f.split_whitespace().nth(1).unwrap().contains(':')), "pinned base images: {froms:?}");
    let user = text.lines().find(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(text.contains("VOLUME [\"/var/lib/scimd\"]"));
    for exec_form in ["HEALTHCHECK", "ENTRYPOINT", "CMD"] {
        let line = text.lines().find(|l| l.starts_with(exec_form)).unwrap_or_else(|| panic!("no {exec_form}"));
        assert!(line.contains("[\""), "{exec_form} in exec form: {line}");
    }
    assert!(!text.contains("ADD http"), "no remote ADD");
    // The runtime environment, as the image sets it.
    let env_block: String = text.lines().skip_while(|l| !l.starts_with("ENV ")).take_while(|l| !l.starts_with("EXPOSE")).collect::<Vec<_>>().join(" ");
    let envs: Vec<(String, String)> = env_block
        .trim_start_matches("ENV ")
        .split_whitespace()
        .filter(|t| t.contains('='))
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(envs.iter().any(|(k, _)| k == "SCIMD_DATA_DIR"));

    // Run `scimd serve` (ENTRYPOINT + CMD) with that environment, as a non-root user,
    // in a scratch directory standing in for the volume; then the HEALTHCHECK command.
    let dir = TempDir::new("container");
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    let certs = scimd::certs::generate(&dir.path().join("tls"), &["localhost".into()]).unwrap();
    let as_nobody = nix_is_root();
    if as_nobody {
        for p in [dir.path().to_path_buf(), volume.clone(), certs.server_cert.clone(), certs.server_key.clone(), certs.server_key.parent().unwrap().to_path_buf()] {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let command = |args: &[&str]| {
        let mut c = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_scimd")]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_scimd"))
        };
        c.args(args).current_dir(dir.path()).env_clear();
        for (k, v) in &envs {
            c.env(k, v);
        }
        c.env("SCIMD_DATA_DIR", &volume)
            .env("SCIMD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SCIMD_METRICS_LISTEN", "off")
            .env("SCIMD_CERT", &certs.server_cert)
            .env("SCIMD_KEY", &certs.server_key);
        c
    };
    let mut server = command(&["serve"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = command(&["healthcheck"]).output().unwrap();
        if health.status.success() {
            assert!(String::from_utf8_lossy(&health.stdout).contains("\"status\""));
            break;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("the container's entrypoint did not become healthy: {}", String::from_utf8_lossy(&health.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill").arg("-TERM").arg(server.id().to_string()).status().unwrap();
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success());
    // SCIMD_LOG_FORMAT=json from the image: every log line is a JSON object.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.trim().is_empty());
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string() && v["target"].is_string() && v["msg"].is_string());
    }
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
