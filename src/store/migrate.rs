//! Schema creation and migrations, driven by `PRAGMA user_version`.
//!
//! A new database gets `schema.sql` (version `CURRENT`). An older one runs each
//! `migrate_to_vN` in its own transaction. A newer one is refused: a downgraded binary
//! must never write to a schema it does not understand.

use log::info;
use rusqlite::Connection;

use super::{StoreError, StoreResult};

const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version `schema.sql` creates.
pub const CURRENT: i64 = 2;

/// `MIGRATIONS[i]` brings a database from version `i + 1` to `i + 2`.
const MIGRATIONS: &[fn(&Connection) -> StoreResult<()>] = &[migrate_to_v2];

/// v2: bearer tokens and API clients.
fn migrate_to_v2(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE api_tokens (
             token_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, issued_at TEXT NOT NULL,
             expires_at TEXT NOT NULL, revoked_at TEXT, last_warned TEXT);
         CREATE INDEX api_tokens_user ON api_tokens (user_id, revoked_at);
         CREATE TABLE api_clients (
             client_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, user_id TEXT NOT NULL, created TEXT NOT NULL);",
    )?;
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this scimd understands ({CURRENT}); refusing to open"
        )));
    }
    if version == 0 {
        let tx = conn.transaction()?;
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))?;
        if tables != 0 {
            return Err(StoreError::Corrupt("database has tables but no schema version".into()));
        }
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        info!(target: "scimd::store", "created a new database at schema version {CURRENT}");
        return Ok(());
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize - 1) {
        let target = index as i64 + 2;
        let tx = conn.transaction()?;
        step(&tx)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        info!(target: "scimd::store", "migrated database to schema version {target}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_count_matches_current_version() {
        assert_eq!(MIGRATIONS.len() as i64, CURRENT - 1);
    }

    #[test]
    fn new_database_gets_current_version_and_newer_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, CURRENT);
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", CURRENT + 1).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Corrupt(_))));
    }

    /// A database made by the first release's schema migrates to the same tables and
    /// columns a new database gets.
    #[test]
    fn v1_database_migrates_to_current_schema() {
        let describe = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn
                .prepare("SELECT m.name, p.name, p.type FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY 1, p.cid")
                .unwrap();
            stmt.query_map([], |r| Ok(format!("{}.{} {}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(include_str!("../../tests/fixtures/schema_v1.sql")).unwrap();
        old.execute("INSERT INTO users (id, user_name, created, last_modified) VALUES ('u', 'kept@x.com', 't', 't')", []).unwrap();
        migrate(&mut old).unwrap();
        let mut new = Connection::open_in_memory().unwrap();
        migrate(&mut new).unwrap();
        assert_eq!(describe(&old), describe(&new));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, CURRENT);
        let kept: i64 = old.query_row("SELECT count(*) FROM users WHERE user_name = 'kept@x.com'", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1);
    }
}
