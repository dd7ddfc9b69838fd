//! Replication of every tenant with Litestream, as text: the configuration `scimd
//! replication config` prints for a data directory and a replica URL, and where each
//! tenant's database lands under that URL (what `scimd replication restore` reads back).
//! Pure: no process is started here (`commands/replication.rs` runs `litestream`).
//!
//! One `dir` entry covers every tenant: Litestream finds `tenants/*/scim.db` (`recursive`,
//! `pattern`) and, with `watch`, starts replicating a tenant made while it runs. Each
//! database goes to `URL/{tenant}/scim.db` (Litestream appends the path of the database
//! relative to `dir` to the replica URL).
//!
//! Checkpoints: Litestream holds a read transaction on each database, so a checkpoint by
//! scimd can copy only frames Litestream has already shipped, and checkpoints itself
//! (PASSIVE at 1,000 pages, as scimd's writer does). scimd's checkpoints are PASSIVE too,
//! at a tenant's close included (`store::writer_loop`), so none waits on that read
//! transaction holding the write lock, which would stall Litestream's sync. Litestream's own
//! checkpoint needs the write lock, which a writer under sustained load never leaves free
//! long enough for a busy handler to find; scimd's writer pauses for it when the WAL
//! shows Litestream waiting (`store/sharing.rs`), and Litestream's busy timeout (5 s)
//! covers the wait.

use std::path::Path;
use std::time::Duration;

use crate::tenant::{TenantId, DATABASE_FILE};

/// How often Litestream looks at each WAL and ships what it found. Litestream's own
/// defaults (1 s each): looking every 100 ms cost an idle Litestream 80 % of a core with 500
/// tenants, against 17 % at 1 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervals {
    pub monitor: Duration,
    pub sync: Duration,
}

impl Default for Intervals {
    fn default() -> Intervals {
        Intervals { monitor: Duration::from_secs(1), sync: Duration::from_secs(1) }
    }
}

/// What a Litestream checkpoint may add to the shipping under sustained writes, while it
/// waits for the writer's pause (`store/sharing.rs`) and for a busy CPU (measured in the
/// drill, tests/it/replication.rs, on 2 cores, looking every 100 ms: the oldest lost write
/// was at most 1.15 s old, 0.25 s more than look + ship).
const CHECKPOINT_ALLOWANCE: Duration = Duration::from_millis(900);

impl Intervals {
    /// How old an acknowledged write must be to be on the replica when the primary is
    /// lost: at most this much of the most recent writes is lost.
    pub fn window(&self) -> Duration {
        self.monitor + self.sync + CHECKPOINT_ALLOWANCE
    }
}

/// A replica URL as Litestream takes it: `scheme://…` (file, s3, gs, abs, sftp, webdav,
/// nats, …). Refused: no scheme, a fragment, or characters YAML or a shell would mangle.
pub fn check_replica_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?} is not a replica URL (e.g. file:///srv/replica or s3://bucket/scimd)"));
    };
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '+' || c == '-') {
        return Err(format!("{url:?}: the scheme must be lowercase letters (file, s3, sftp, …)"));
    }
    if rest.trim_matches('/').is_empty() || url.contains('#') || url.chars().any(|c| c.is_control() || c == '"' || c == '\\' || c == ' ') {
        return Err(format!("{url:?}: a replica URL needs a path and no spaces, quotes, backslashes or fragment"));
    }
    Ok(())
}

/// Where Litestream replicates one tenant's database under `replica` (query kept last).
pub fn tenant_replica_url(replica: &str, tenant: &TenantId) -> String {
    let (base, query) = match replica.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (replica, String::new()),
    };
    format!("{}/{tenant}/{DATABASE_FILE}{query}", base.trim_end_matches('/'))
}

/// Litestream's YAML for replicating every tenant under `tenants_dir` to `replica`.
pub fn config(tenants_dir: &Path, replica: &str, intervals: Intervals) -> Result<String, String> {
    check_replica_url(replica)?;
    let dir = tenants_dir.to_str().filter(|d| d.starts_with('/') && !d.contains('"') && !d.contains('\\') && !d.chars().any(char::is_control));
    let Some(dir) = dir else {
        return Err(format!("{}: the data directory must be an absolute path without quotes or backslashes", tenants_dir.display()));
    };
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    Ok(format!(
        r#"# Litestream configuration for scimd, from `scimd replication config`.
# Every tenant database under {dir} is replicated to {replica}/{{tenant}}/{DATABASE_FILE};
# a tenant created while Litestream runs is picked up (watch). A write acknowledged more
# than {window} before the primary is lost is on the replica.
dbs:
  - dir: "{dir}"
    pattern: "{DATABASE_FILE}"
    recursive: true
    watch: true
    # How often each WAL is looked at: each look costs, for every tenant.
    monitor-interval: {monitor}
    # Litestream's checkpoints wait for the write lock, which scimd's writer leaves it
    # (store/sharing.rs); 5 s as Litestream's tips advise.
    busy-timeout: 5s
    replica:
      url: "{replica}"
      sync-interval: {sync}
"#,
        window = ms(intervals.window()),
        monitor = ms(intervals.monitor),
        sync = ms(intervals.sync),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_covers_every_tenant_and_refuses_what_it_cannot_quote() {
        let yaml = config(Path::new("/var/lib/scimd/tenants"), "s3://bucket/scimd", Intervals::default()).unwrap();
        for line in [
            "  - dir: \"/var/lib/scimd/tenants\"",
            "    pattern: \"scim.db\"",
            "    recursive: true",
            "    watch: true",
            "    monitor-interval: 1000ms",
            "      url: \"s3://bucket/scimd\"",
            "      sync-interval: 1000ms",
        ] {
            assert!(yaml.lines().any(|l| l == line), "{line:?} in\n{yaml}");
        }
        assert!(yaml.contains("more\n# than 2900ms before"), "{yaml}");
        for bad in ["/srv/replica", "file://", "S3://b/p", "s3://b/p q", "s3://b/p\"", "s3://b/p#x"] {
            assert!(config(Path::new("/d"), bad, Intervals::default()).is_err(), "{bad}");
        }
        assert!(config(Path::new("relative/tenants"), "file:///r", Intervals::default()).is_err());
    }

    #[test]
    fn each_tenant_lands_under_the_replica_url() {
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(tenant_replica_url("file:///srv/replica/", &acme), "file:///srv/replica/acme/scim.db");
        assert_eq!(tenant_replica_url("s3://b/p?endpoint=http://x:9000", &acme), "s3://b/p/acme/scim.db?endpoint=http://x:9000");
    }
}
