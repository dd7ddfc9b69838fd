//! Runs each cargo-fuzz target (fuzz/) for a bounded time from its seed corpus. Required
//! in CI (.ci/run installs cargo-fuzz); skipped with a message where it is not installed.
//! A long run: `RUSTC_BOOTSTRAP=1 cargo fuzz run filter -- -max_total_time=3600`.

use std::path::Path;
use std::process::Command;

const TARGETS: [&str; 4] = ["filter", "patch", "resource", "token"];

#[test]
fn fuzz_targets_find_nothing_in_a_short_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        assert!(std::env::var("CI").is_err(), "CI must run the fuzz targets, but cargo-fuzz is not installed");
        eprintln!("skipping: cargo-fuzz is not installed (cargo install cargo-fuzz)");
        return;
    }
    let seconds: u64 = std::env::var("SCIMD_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    for target in TARGETS {
        // New corpus entries go to a scratch directory; the repository's seeds stay as they are.
        let scratch = crate::support::TempDir::new(&format!("fuzz-{target}"));
        let out = Command::new("cargo")
            .current_dir(root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(scratch.path())
            .arg(root.join("fuzz/corpus").join(target))
            .args(["--", &format!("-max_total_time={seconds}"), "-rss_limit_mb=2048"])
            .output()
            .expect("run cargo fuzz");
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log.lines().rev().find(|l| l.starts_with("Done ")).unwrap_or("").to_string();
        assert!(out.status.success(), "fuzz target {target} found a failure:\n{}", &log[log.len().saturating_sub(4000)..]);
        // Printed for the README's Reliability section.
        println!("fuzz {target}: {runs}");
    }
}
