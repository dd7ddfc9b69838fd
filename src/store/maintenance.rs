//! The SQL behind backups, restores, `scimd check` and `tenant show`: SQLite's online
//! backup API, integrity and schema-version checks, and the counts an operator reads.
//! Callers (ops, commands) see only paths, plain values and `StoreError`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Db, StoreError, StoreResult};

impl StoreError {
    /// The message without the "sqlite: " prefix, for operator output that always printed
    /// SQLite's own words.
    pub fn bare_message(&self) -> String {
        match self {
            StoreError::Sql(e) => e.to_string(),
            StoreError::Unavailable(_, why) => why.clone(),
            other => other.to_string(),
        }
    }
}

/// A database opened read-only outside the writer (backups, `scimd check`).
pub struct ReadOnly(Connection);

impl ReadOnly {
    pub fn open(path: &Path) -> StoreResult<ReadOnly> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(ReadOnly(conn))
    }

    /// Waits up to 10 s for a writer's lock instead of failing at once.
    pub fn wait_for_locks(&self) -> StoreResult<()> {
        Ok(self.0.busy_timeout(Duration::from_secs(10))?)
    }

    pub fn schema_version(&self) -> StoreResult<i64> {
        schema_version(&self.0)
    }

    /// `Ok(None)` if SQLite finds the file sound, else its first complaint.
    pub fn integrity_problem(&self) -> StoreResult<Option<String>> {
        integrity_problem(&self.0)
    }

    /// Copies this database to `out` with the online backup API; `progress` hears (pages
    /// copied, pages in all) as it goes.
    pub fn backup_to(&self, out: &Path, progress: &dyn Fn(u64, u64)) -> StoreResult<()> {
        let mut copy = Connection::open(out)?;
        copy_pages(&self.0, &mut copy, progress)
    }

    /// The store's read functions over this connection (counters, names, tokens).
    pub fn with<T>(&self, job: impl FnOnce(&Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        job(&Db(&self.0))
    }
}

fn schema_version(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn integrity_problem(conn: &Connection) -> StoreResult<Option<String>> {
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    Ok(if result == "ok" { None } else { Some(result) })
}

/// `Ok(None)` if the file at `path` (opened read-write) is sound, else SQLite's complaint.
pub fn integrity_problem_of(path: &Path) -> StoreResult<Option<String>> {
    integrity_problem(&Connection::open(path)?)
}

/// The online backup API from `from` into `to`, 256 pages a step so `progress` can be told.
/// A write to the source between steps restarts the copy; after one restart the rest is
/// copied in one step (one read snapshot), so a busy source cannot keep it going for ever.
fn copy_pages(from: &Connection, to: &mut Connection, progress: &dyn Fn(u64, u64)) -> StoreResult<()> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(from, to)?;
    let mut pages = 256;
    let mut last_remaining = i32::MAX;
    loop {
        let step = backup.step(pages)?;
        let p = backup.progress();
        progress((p.pagecount - p.remaining).max(0) as u64, p.pagecount.max(0) as u64);
        if p.remaining > last_remaining {
            pages = -1;
        }
        last_remaining = p.remaining;
        match step {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Why a restore failed: copying the backup over the database, or checking it afterwards.
pub enum RestoreError {
    Copy(StoreError),
    Check(StoreError),
    Unsound(String),
}

/// Copies the backup at `from` over the database at `db` with the backup API and checks
/// the result.
pub fn restore_into(db: &Path, from: &Path, progress: &dyn Fn(u64, u64)) -> Result<(), RestoreError> {
    let mut target = Connection::open(db).map_err(|e| RestoreError::Check(e.into()))?;
    target.busy_timeout(Duration::from_secs(10)).map_err(|e| RestoreError::Check(e.into()))?;
    let source = Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| RestoreError::Copy(e.into()))?;
    copy_pages(&source, &mut target, progress).map_err(RestoreError::Copy)?;
    match integrity_problem(&target) {
        Ok(None) => Ok(()),
        Ok(Some(p)) => Err(RestoreError::Unsound(p)),
        Err(e) => Err(RestoreError::Check(e)),
    }
}

/// What `tenant show` counts.
pub struct TenantCounts {
    pub users: i64,
    pub active_users: i64,
    pub deleted_users: i64,
    pub groups: i64,
    pub creator_in_use: i64,
    pub creator_float_in_use: i64,
    pub schema_version: i64,
}

pub fn tenant_counts(conn: &Connection) -> StoreResult<TenantCounts> {
    let n = |sql: &str| -> StoreResult<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    Ok(TenantCounts {
        users: n("SELECT count(*) FROM users WHERE deleted_at IS NULL")?,
        active_users: n("SELECT count(*) FROM users WHERE deleted_at IS NULL AND active IS NOT 0")?,
        deleted_users: n("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL")?,
        groups: n("SELECT count(*) FROM groups")?,
        creator_in_use: n("SELECT count(*) FROM users WHERE license = 'creator' AND active IS NOT 0 AND deleted_at IS NULL")?,
        creator_float_in_use: n("SELECT count(*) FROM users WHERE license = 'creator_float' AND active IS NOT 0 AND deleted_at IS NULL")?,
        schema_version: schema_version(conn)?,
    })
}
