//! packaging/Containerfile built and run for real with podman, by the script an operator
//! runs too (`packaging/container-test.sh`): the base image from the Debian mirror, the
//! runtime stage around the binary this test run built, then health, uid 10001, provisioning
//! through `podman exec`, a SCIM POST over TLS, `podman stop`, JSON logs, and the data after
//! `podman rm`. Skipped, saying why, only where podman or mmdebstrap is absent outside CI.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::TempDir;

/// The whole script, first run included (mmdebstrap ≈ 1-2 min), must end within this;
/// with SCIMD_CONTAINER_FULL=1 (the two-stage build, ≈ 9 min on 2 busy cores) within the
/// longer one.
const DEADLINE: Duration = Duration::from_secs(360);
const DEADLINE_FULL_BUILD: Duration = Duration::from_secs(1200);

#[test]
fn the_container_runs_end_to_end_under_podman() {
    if !crate::packaging::required_in_ci("podman") || !crate::packaging::required_in_ci("mmdebstrap") || !crate::packaging::required_in_ci("curl") {
        return;
    }
    let dir = TempDir::new("podman");
    let out = dir.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container-test.sh");
    let deadline = if std::env::var("SCIMD_CONTAINER_FULL").is_ok_and(|v| v == "1") { DEADLINE_FULL_BUILD } else { DEADLINE };
    let started = Instant::now();
    // timeout(1) bounds it even if podman hangs; the script's EXIT trap removes what it made.
    let run = Command::new("timeout")
        .arg("--kill-after=20")
        .arg(deadline.as_secs().to_string())
        .arg("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_scimd"))
        .env("SCIMD_CONTAINER_OUT", &out)
        .output()
        .expect("bash runs");
    let said = String::from_utf8_lossy(&run.stderr);
    eprintln!("{said}container test: {:.1} s", started.elapsed().as_secs_f64());
    assert!(run.status.success(), "packaging/container-test.sh failed ({}):\n{said}", run.status);

    // What the script checked with grep, checked strictly: every line the server and the
    // commands wrote is one JSON object with the fields a log shipper reads.
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let lines = |name: &str| -> Vec<serde_json::Value> {
        read(name)
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{name}: not JSON: {line}"));
                assert!(v["ts"].is_string() && v["level"].is_string() && v["target"].is_string() && v["msg"].is_string(), "{name}: {line}");
                v
            })
            .collect()
    };
    let refused = lines("nokey.log");
    assert!(refused.iter().any(|v| v["level"] == "ERROR" && v["msg"].as_str().is_some_and(|m| m.contains("cannot read private key"))), "{refused:?}");
    let first = lines("first.log");
    assert!(first.iter().any(|v| v["msg"].as_str().is_some_and(|m| m.starts_with("open files: soft limit"))), "the limit is logged at start");
    assert!(!first.iter().any(|v| v["msg"].as_str().is_some_and(|m| m.contains("/healthz"))), "a passing healthcheck is not an access-log line");
    lines("second.log");
    lines("exec.log");
}
