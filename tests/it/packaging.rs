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

/// Whether `tool` is installed; in CI (`CI` set) it must be.
pub fn required_in_ci(tool: &str) -> bool {
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
    verify_unit(&dir, "scimd.service", &unit.replace("/usr/local/bin/scimd", env!("CARGO_BIN_EXE_scimd")));
    // Running the unit (started, READY, reload, stop) needs systemd as PID 1; CI has none
    // on the host, so the_unit_runs_under_systemd_in_a_container boots one under podman.
    if !Path::new("/run/systemd/system").is_dir() {
        eprintln!("systemd is not PID 1 here: the unit runs under systemd in a podman container (packaging/systemd-test.sh), not on this host");
    }
}

/// `systemd-analyze verify` of a unit written as `name` into `dir` (whose `man/` holds the
/// manual pages) says nothing.
fn verify_unit(dir: &TempDir, name: &str, text: &str) {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).env("MANPATH", dir.path().join("man")).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.is_empty(), "systemd-analyze verify {name} printed: {said}");
}

/// packaging/scimd-litestream.service verifies as installed (the litestream just
/// installed, scimd's manual pages), runs as scimd's user over its state directory, and
/// reads the configuration its header tells the operator to write with scimd.
#[test]
fn litestream_unit_verifies() {
    if !required_in_ci("systemd-analyze") || !required_in_ci("man") || !required_in_ci("litestream") {
        return;
    }
    let unit = std::fs::read_to_string(packaging("scimd-litestream.service")).unwrap();
    for needed in ["User=scimd\n", "StateDirectory=scimd\n", "UMask=0077", "NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=always"] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }
    assert!(unit.contains("scimd replication config --config /etc/scimd/scimd.toml") && unit.contains("-config /etc/scimd/litestream.yml"));
    let dir = TempDir::new("litestream-unit");
    let out = Command::new(env!("CARGO_BIN_EXE_scimd")).arg("man").arg(format!("--out={}", dir.path().join("man/man1").display())).output().unwrap();
    assert!(out.status.success());
    let litestream = Command::new("sh").arg("-c").arg("command -v litestream").output().unwrap();
    let litestream = String::from_utf8_lossy(&litestream.stdout).trim().to_string();
    verify_unit(&dir, "scimd-litestream.service", &unit.replace("/usr/local/bin/litestream", &litestream));
}

/// packaging/systemd-test.sh: the README's install steps in a bookworm root booted with
/// systemd as PID 1 under podman; the unit starts, reaches READY, reloads on `systemctl
/// reload` and stops with status 0.
#[test]
fn the_unit_runs_under_systemd_in_a_container() {
    if !required_in_ci("podman") || !required_in_ci("mmdebstrap") {
        eprintln!("so the unit is checked by systemd-analyze verify and the notify protocol test only");
        return;
    }
    let started = Instant::now();
    let run = Command::new("timeout")
        .args(["--kill-after=20", "300", "bash"])
        .arg(packaging("systemd-test.sh"))
        .arg(env!("CARGO_BIN_EXE_scimd"))
        .output()
        .expect("bash runs");
    let said = String::from_utf8_lossy(&run.stderr);
    eprintln!("{said}systemd test: {:.1} s", started.elapsed().as_secs_f64());
    assert!(run.status.success(), "packaging/systemd-test.sh failed ({}):\n{said}", run.status);
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
    let mut stages = Vec::new();
    for from in &froms {
        let mut words = from.split_whitespace().skip(1);
        let image = words.next().unwrap_or_default();
        // A base is a pinned image, or a stage defined above.
        assert!(stages.contains(&image) || (image.contains(':') && !image.contains(":latest")), "pinned base images: {from}");
        if let (Some("AS"), Some(name)) = (words.next(), words.next()) {
            stages.push(name);
        }
    }
    assert_eq!(froms.last().map(|f| f.ends_with(" AS runtime")), Some(true), "the default target (last stage) is the full build's runtime");
    let user = text.lines().find(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    // uid and gid 10001 both exist (USER 10001:10001 runs with that gid) and own the volume.
    assert_eq!(user, "USER 10001:10001");
    for needed in ["groupadd --system --gid 10001 scimd", "useradd --uid 10001 --gid 10001 ", "chown 10001:10001 /var/lib/scimd"] {
        assert!(text.contains(needed), "the Containerfile lacks {needed:?}");
    }
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
    // A key that cannot be read stops the server with one JSON line, as every other line.
    let refused = command(&["serve"]).env("SCIMD_KEY", dir.path().join("missing.key")).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    for line in said.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string() && v["target"].is_string() && v["msg"].is_string(), "{line}");
    }
    assert!(said.contains("\"level\":\"ERROR\"") && said.contains("cannot read private key"), "{said}");

    // The server starts with the soft open-file limit far below the hard one, as under
    // systemd's default (1,024): it raises it and says so.
    let hard = open_file_limits().1;
    let mut serve = command(&["serve"]);
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        serve.pre_exec(move || {
            let low = libc::rlimit { rlim_cur: 256, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &low) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = serve.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
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
    // The HEALTHCHECK probes passed: at INFO (the image's RUST_LOG) they wrote no line.
    assert!(!log.contains("/healthz"), "a passing healthcheck was logged: {log}");
    #[cfg(target_os = "linux")]
    if hard > 256 {
        assert!(log.contains(&format!("open files: soft limit {hard} (raised from 256")), "{log}");
    }
}

/// This process's soft and hard RLIMIT_NOFILE.
fn open_file_limits() -> (libc::rlim_t, libc::rlim_t) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a pointer to a live value.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    (limit.rlim_cur, limit.rlim_max)
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Every place that tells an operator how to build or run the container says what works:
/// `podman build --format docker` (podman's default OCI format drops the HEALTHCHECK), and
/// the certificate and key under the names `scimd cert self-signed` writes.
#[test]
fn container_docs_match_what_works() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let written = scimd::certs::DevCertPaths::in_dir(Path::new("/tls"));
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for doc in ["README.md", "packaging/README.md", "packaging/Containerfile", "certs/README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for line in text.lines().filter(|l| l.contains("podman build")) {
            assert!(line.contains("--format docker"), "{doc}: {line}");
        }
        for (var, file) in [("SCIMD_CERT=/tls/", name(&written.server_cert)), ("SCIMD_KEY=/tls/", name(&written.server_key))] {
            for (at, _) in text.match_indices(var) {
                let given: String = text[at + var.len()..].chars().take_while(|c| !c.is_whitespace()).collect();
                assert_eq!(given, file, "{doc}: {var}{given}");
            }
        }
    }
    let readme = std::fs::read_to_string(root.join("packaging/README.md")).unwrap();
    for needed in ["podman unshare chown 10001:10001", "chown 10001:10001", "SCIMD_METRICS_LISTEN=0.0.0.0:9464", "container-test.sh"] {
        assert!(readme.contains(needed), "packaging/README.md lacks {needed:?}");
    }
    let ignore = std::fs::read_to_string(root.join(".containerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*") && !ignore.lines().any(|l| l.starts_with("!target")), "an allowlist: everything else stays out of the context");
}

/// The unit's LimitNOFILE holds the default max_connections and max_open_tenants at the
/// most files an open tenant can hold (8 or more cores), and serve's margin.
#[test]
fn systemd_unit_limits_open_files_for_connections_and_tenants() {
    let unit = std::fs::read_to_string(packaging("scimd.service")).unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE")
        .parse()
        .expect("LimitNOFILE is a number (soft and hard alike)");
    let most_per_tenant = 1 + 2 * (1 + 8);
    let need = scimd::config::DEFAULT_MAX_CONNECTIONS + scimd::tenant::registry::DEFAULT_MAX_OPEN_TENANTS * most_per_tenant + 64;
    assert!(most_per_tenant >= scimd::store::fds_per_open_tenant());
    assert!(limit >= need as u64, "LimitNOFILE={limit}, serve may need {need}");
}

/// `rust-version` in Cargo.toml is at least what every locked dependency declares (read
/// from the registry sources the build just unpacked), so `cargo +MSRV build` can work.
#[test]
fn rust_version_covers_the_lockfile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // "1.88" and "1.88.0" are the same version.
    let version = |text: &str| -> Vec<u64> {
        let mut parts: Vec<u64> = text.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        parts.resize(3, 0);
        parts
    };
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let ours = version(manifest["package"]["rust-version"].as_str().expect("a rust-version"));
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("Cargo.lock")).unwrap()).unwrap();
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) else {
        eprintln!("skipping: no registry sources under {}", cargo_home.display());
        return;
    };
    let registries: Vec<PathBuf> = registries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    let (mut checked, mut highest) = (0, (Vec::new(), String::new()));
    for package in lock["package"].as_array().unwrap().iter().filter(|p| p.get("source").is_some()) {
        let id = format!("{}-{}", package["name"].as_str().unwrap(), package["version"].as_str().unwrap());
        // Packages for other platforms (windows-sys, wasi) are locked but never unpacked here.
        let Some(text) = registries.iter().find_map(|r| std::fs::read_to_string(r.join(&id).join("Cargo.toml")).ok()) else { continue };
        let theirs: toml::Table = toml::from_str(&text).unwrap();
        checked += 1;
        if let Some(needed) = theirs.get("package").and_then(|p| p.get("rust-version")).and_then(|v| v.as_str()) {
            if version(needed) > highest.0 {
                highest = (version(needed), id);
            }
        }
    }
    assert!(checked > 50, "only {checked} locked packages found unpacked");
    assert!(ours >= highest.0, "rust-version {ours:?} is below {:?}, which {} needs", highest.0, highest.1);
}
