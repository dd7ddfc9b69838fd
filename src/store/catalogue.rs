//! The data directory's catalogue (`DATA_DIR/catalogue.db`): what the server needs of every
//! tenant without opening it — its sizes and its bearer tokens' expiries — as they were
//! when the tenant was last closed, by the server or by a CLI command. A closed tenant's
//! database cannot change until something opens it again, and whatever opens it records
//! it again when it closes, so for a closed tenant the row is current; open tenants are
//! read live. It is a cache: losing it costs one read of each tenant at the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use super::{tokens, StoreResult};

/// A tenant as the catalogue keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub users: i64,
    pub active_users: i64,
    pub groups: i64,
    /// Every unrevoked token, expired or not (the reader compares with its own clock).
    pub tokens: Vec<TokenExpiry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenExpiry {
    pub owner: String,
    pub expires_at: String,
}

/// The summary of a tenant database, read on `conn`.
pub fn summarise(conn: &Connection) -> StoreResult<Summary> {
    let (users, active_users, groups) = super::tenant_counts(conn)?;
    // Every unrevoked token: an empty time is before every expiry.
    let tokens = tokens::live(conn, "")?.into_iter().map(|t| TokenExpiry { owner: t.user_name, expires_at: t.expires_at }).collect();
    Ok(Summary { users, active_users, groups, tokens })
}

/// The summary of a tenant database, from a connection of its own that only reads. Not a
/// read-only one: the last connection to close removes the WAL file, and a read-only one
/// cannot, so it would leave an empty `-wal` beside a tenant nothing has opened.
pub fn summarise_file(db: &Path) -> StoreResult<Summary> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    summarise(&conn)
}

pub struct Catalogue {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS tenants (
        id TEXT PRIMARY KEY,
        users INTEGER NOT NULL,
        active_users INTEGER NOT NULL,
        groups INTEGER NOT NULL,
        recorded_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS tokens (
        tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        expires_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS tokens_tenant ON tokens(tenant);";

impl Catalogue {
    pub fn new(path: impl Into<PathBuf>) -> Catalogue {
        Catalogue { path: path.into(), conn: Mutex::new(None) }
    }

    /// Runs `job` on the catalogue's connection, opening (and creating) it on first use.
    fn with<T>(&self, job: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut guard = self.conn.lock().map_err(|_| super::StoreError::Closed)?;
        if guard.is_none() {
            let conn = Connection::open(&self.path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
            // A cache (see above): a commit need not wait for the disk. In WAL mode NORMAL
            // still survives a crash of the process; only a power loss can take the last
            // few records, and the tenants they describe are recorded again at their next
            // close. Every tenant close commits here, so an fsync each was the close's
            // largest wait.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.execute_batch(SCHEMA)?;
            *guard = Some(conn);
        }
        match guard.as_mut() {
            Some(conn) => job(conn),
            None => Err(super::StoreError::Closed),
        }
    }

    /// Replaces what the catalogue holds of `tenant`.
    pub fn record(&self, tenant: &str, s: &Summary, at: &str) -> StoreResult<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM tokens WHERE tenant = ?", [tenant])?;
            tx.execute(
                "INSERT INTO tenants (id, users, active_users, groups, recorded_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET users = excluded.users, active_users = excluded.active_users,
                     groups = excluded.groups, recorded_at = excluded.recorded_at",
                params![tenant, s.users, s.active_users, s.groups, at],
            )?;
            for t in &s.tokens {
                tx.execute("INSERT INTO tokens (tenant, owner, expires_at) VALUES (?, ?, ?)", params![tenant, t.owner, t.expires_at])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Drops a deleted tenant.
    pub fn forget(&self, tenant: &str) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute("DELETE FROM tenants WHERE id = ?", [tenant])?;
            Ok(())
        })
    }

    /// When each tenant was last recorded (milliseconds since the epoch, as `record` was
    /// given it).
    pub fn recorded_at(&self) -> StoreResult<BTreeMap<String, Option<crate::clock::UtcMillis>>> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT id, recorded_at FROM tenants")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (id, at) = row?;
                out.insert(id, crate::clock::UtcMillis::parse_rfc3339(&at));
            }
            Ok(out)
        })
    }

    /// Every tenant the catalogue holds.
    pub fn all(&self) -> StoreResult<BTreeMap<String, Summary>> {
        self.with(|conn| {
            let mut out: BTreeMap<String, Summary> = BTreeMap::new();
            let mut stmt = conn.prepare("SELECT id, users, active_users, groups FROM tenants")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            for row in rows {
                let (id, users, active_users, groups) = row?;
                out.insert(id, Summary { users, active_users, groups, tokens: Vec::new() });
            }
            let mut stmt = conn.prepare("SELECT tenant, owner, expires_at FROM tokens ORDER BY expires_at")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
            for row in rows {
                let (tenant, owner, expires_at) = row?;
                if let Some(s) = out.get_mut(&tenant) {
                    s.tokens.push(TokenExpiry { owner, expires_at });
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_replace_and_forget() {
        let dir = std::env::temp_dir().join(format!("scimd-catalogue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Catalogue::new(dir.join("catalogue.db"));
        let token = |owner: &str| TokenExpiry { owner: owner.into(), expires_at: "2027-01-01T00:00:00.000Z".into() };
        let a = Summary { users: 3, active_users: 2, groups: 1, tokens: vec![token("admin")] };
        c.record("a", &a, "t1").unwrap();
        c.record("b", &Summary::default(), "t1").unwrap();
        let again = Summary { users: 4, tokens: vec![token("admin"), token("other")], ..a.clone() };
        c.record("a", &again, "t2").unwrap();
        let all = c.all().unwrap();
        assert_eq!(all.get("a"), Some(&again));
        assert_eq!(all.get("b"), Some(&Summary::default()));
        c.forget("a").unwrap();
        let all = Catalogue::new(dir.join("catalogue.db")).all().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["b"], "kept on disk, the forgotten tenant and its tokens gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
