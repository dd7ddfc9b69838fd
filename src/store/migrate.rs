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
pub const CURRENT: i64 = 4;

/// `MIGRATIONS[i]` brings a database from version `i + 1` to `i + 2`.
const MIGRATIONS: &[fn(&Connection) -> StoreResult<()>] = &[migrate_to_v2, migrate_to_v3, migrate_to_v4];

/// v4: what every write did by scanning, so it slowed down as the tenant grew: counting
/// the seats in use (each create), counting the visible users for an unfiltered list, and
/// finding inactive Basic-auth members (each group sync walked all of the group's
/// members). Now an index and trigger-kept counters, created exactly as `schema.sql` has
/// them, then counted once from the rows.
fn migrate_to_v4(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(INACTIVE_BASIC_INDEX)?;
    let counters = SCHEMA
        .lines()
        .filter(|l| l.starts_with("CREATE TABLE counters") || l.starts_with("CREATE TRIGGER "))
        .collect::<Vec<_>>()
        .join("\n");
    conn.execute_batch(&counters)?;
    conn.execute(&format!("INSERT INTO counters (name, n) {}", super::RECOUNT_SQL), [])?;
    Ok(())
}

/// Kept identical to the index in `schema.sql` (a test compares them).
const INACTIVE_BASIC_INDEX: &str = "CREATE INDEX users_inactive_basic ON users (pk) WHERE auth_type = 'basic' AND active = 0;";

/// v3: soft delete, licences, local users, group scope and policy state, membership
/// source, and an events table open to more kinds of change. Existing admin accounts keep
/// API access: they get the named Creator licence the API now requires.
fn migrate_to_v3(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "ALTER TABLE users ADD COLUMN deleted_at TEXT;
         ALTER TABLE users ADD COLUMN license TEXT NOT NULL DEFAULT 'none' CHECK (license IN ('creator', 'creator_float', 'none'));
         ALTER TABLE users ADD COLUMN auth_type TEXT NOT NULL DEFAULT 'idp' CHECK (auth_type IN ('basic', 'idp'));
         ALTER TABLE users ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'idp' CHECK (managed_by IN ('idp', 'local'));
         UPDATE users SET license = 'creator', auth_type = 'basic', managed_by = 'local' WHERE role = 'org_admin';
         ALTER TABLE groups ADD COLUMN scope TEXT NOT NULL DEFAULT 'org' CHECK (scope IN ('org', 'project'));
         ALTER TABLE groups ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'idp' CHECK (managed_by IN ('idp', 'local'));
         ALTER TABLE groups ADD COLUMN ignored INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE memberships ADD COLUMN source TEXT NOT NULL DEFAULT 'idp' CHECK (source IN ('idp', 'local'));
         CREATE TABLE events_v3 (
             seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, principal TEXT NOT NULL,
             action TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT NOT NULL,
             detail TEXT NOT NULL DEFAULT '{}');
         INSERT INTO events_v3 SELECT seq, at, principal, action, resource_type, resource_id, detail FROM events;
         DROP TABLE events;
         ALTER TABLE events_v3 RENAME TO events;
         CREATE INDEX events_resource ON events (resource_type, resource_id);",
    )?;
    Ok(())
}

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

    #[test]
    fn counters_follow_inserts_updates_and_deletes() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let add = |id: &str, license: &str| {
            conn.execute(
                "INSERT INTO users (id, user_name, license, created, last_modified) VALUES (?1, ?1, ?2, 't', 't')",
                [id, license],
            )
            .unwrap();
        };
        add("a", "creator");
        add("b", "creator");
        add("c", "creator_float");
        add("d", "none");
        conn.execute("UPDATE users SET active = 0 WHERE id = 'b'", []).unwrap();
        conn.execute("UPDATE users SET license = 'creator_float' WHERE id = 'a'", []).unwrap();
        conn.execute("UPDATE users SET deleted_at = 't' WHERE id = 'c'", []).unwrap();
        conn.execute("DELETE FROM users WHERE id = 'd'", []).unwrap();
        conn.execute("INSERT INTO groups (id, display_name, created, last_modified) VALUES ('g', 'G', 't', 't')", []).unwrap();
        conn.execute("INSERT INTO groups (id, display_name, scope, created, last_modified) VALUES ('p', 'P', 'project', 't', 't')", [])
            .unwrap();
        let counted = |name: &str| -> i64 { conn.query_row("SELECT n FROM counters WHERE name = ?", [name], |r| r.get(0)).unwrap() };
        let truth = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(counted("users"), truth("SELECT count(*) FROM users WHERE deleted_at IS NULL"));
        assert_eq!(counted("users"), 2);
        assert_eq!(counted("groups"), 1);
        assert_eq!((counted("seats:creator"), counted("seats:creator_float")), (0, 1));
        assert_eq!(super::super::users::seats_used(&conn, "creator_float", "a").unwrap(), 0, "a user's own seat is not counted");
        assert_eq!(super::super::users::seats_used(&conn, "creator_float", "x").unwrap(), 1);
    }

    fn schema_defines(statement: &str) -> bool {
        SCHEMA.contains(statement)
    }

    /// Databases made by earlier schemas migrate to the same tables and columns a new
    /// database gets, keeping their rows.
    #[test]
    fn old_databases_migrate_to_current_schema() {
        for old_schema in [
            include_str!("../../tests/fixtures/schema_v1.sql"),
            include_str!("../../tests/fixtures/schema_v2.sql"),
            include_str!("../../tests/fixtures/schema_v3.sql"),
        ] {
            check_migration(old_schema);
        }
    }

    fn check_migration(old_schema: &str) {
        let describe = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn
                .prepare("SELECT m.name, p.name, p.type FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY 1, p.cid")
                .unwrap();
            stmt.query_map([], |r| Ok(format!("{}.{} {}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let indexes = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn
                .prepare("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY name")
                .unwrap();
            stmt.query_map([], |r| Ok(format!("{}: {}", r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap().map(Result::unwrap).collect()
        };
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(old_schema).unwrap();
        old.execute("INSERT INTO users (id, user_name, created, last_modified) VALUES ('u', 'kept@x.com', 't', 't')", []).unwrap();
        old.execute("INSERT INTO users (id, user_name, role, password_hash, created, last_modified) VALUES ('a', 'admin', 'org_admin', 'h', 't', 't')", []).unwrap();
        old.execute("INSERT INTO events (at, principal, action, resource_type, resource_id) VALUES ('t', 'p', 'create', 'User', 'u')", []).unwrap();
        migrate(&mut old).unwrap();
        let mut new = Connection::open_in_memory().unwrap();
        migrate(&mut new).unwrap();
        assert_eq!(describe(&old), describe(&new));
        assert_eq!(indexes(&old), indexes(&new));
        let v: i64 = old.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, CURRENT);
        let kept: i64 = old.query_row("SELECT count(*) FROM users WHERE user_name = 'kept@x.com'", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1);
        if !old_schema.contains("license") {
            let license: String = old.query_row("SELECT license FROM users WHERE id = 'a'", [], |r| r.get(0)).unwrap();
            assert_eq!(license, "creator", "admins keep API access when v3 brings licences");
        }
        let counted = |name: &str| -> i64 { old.query_row("SELECT n FROM counters WHERE name = ?", [name], |r| r.get(0)).unwrap() };
        assert_eq!(counted("users"), 2, "the visible-user counter starts from the rows");
        let admin_seat = if old_schema.contains("license") { 0 } else { 1 };
        assert_eq!(counted("seats:creator"), admin_seat, "seats are counted from the rows");
        old.execute("UPDATE users SET deleted_at = 't' WHERE id = 'u'", []).unwrap();
        assert_eq!(counted("users"), 1, "the triggers keep it");
        let events: i64 = old.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(events, 1, "the activity log survives");
    }
}
