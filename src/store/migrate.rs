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
pub const CURRENT: i64 = 1;

/// `MIGRATIONS[i]` brings a database from version `i + 1` to `i + 2`.
const MIGRATIONS: &[fn(&Connection) -> StoreResult<()>] = &[];

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
}
