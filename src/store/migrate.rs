//! Schema creation and migrations, driven by `PRAGMA user_version`.
//!
//! A new database gets `schema.sql` (version `CURRENT`). An older one runs each
//! `migrate_to_vN` in its own transaction. A newer one is refused: a downgraded binary
//! must never write to a schema it does not understand.

use log::{info, warn};
use rusqlite::{params, Connection, OptionalExtension};

use super::{StoreError, StoreResult};

const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version `schema.sql` creates.
pub const CURRENT: i64 = 9;

/// `MIGRATIONS[i]` brings a database from version `i + 1` to `i + 2`.
const MIGRATIONS: &[fn(&Connection) -> StoreResult<()>] = &[migrate_to_v2, migrate_to_v3, migrate_to_v4, migrate_to_v5, migrate_to_v6, migrate_to_v7, migrate_to_v8, migrate_to_v9];

/// v9: `users.custom`, the JSON object of a user's custom attributes (issue 23); every
/// existing user has none. A database older than v5 has it already: v5 rebuilt `users`
/// from this `schema.sql`.
fn migrate_to_v9(conn: &Connection) -> StoreResult<()> {
    let has: bool = conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('users') WHERE name = 'custom'", [], |r| r.get(0))?;
    if !has {
        conn.execute_batch("ALTER TABLE users ADD COLUMN custom TEXT;")?;
    }
    Ok(())
}

/// v8: the `users:changes`, `groups:changes` and `auth:changes` counters and their
/// triggers, exactly as `schema.sql` has them, so that sequential index paging resumes after
/// the previous page and a verified credential is not read again while nothing it depends
/// on changed (issue 19). They start at 0; what was remembered is the process's, not the
/// database's, so nothing remembered predates them.
fn migrate_to_v8(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch("INSERT OR IGNORE INTO counters (name, n) VALUES ('users:changes', 0), ('groups:changes', 0), ('auth:changes', 0);")?;
    let triggers = [
        "users_changes_insert",
        "users_changes_delete",
        "users_changes_update",
        "groups_changes_insert",
        "groups_changes_delete",
        "groups_changes_update",
        "auth_changes_accounts",
        "auth_changes_accounts_delete",
        "auth_changes_tokens_insert",
        "auth_changes_tokens_update",
        "auth_changes_tokens_delete",
        "auth_changes_keys_insert",
        "auth_changes_keys_update",
        "auth_changes_keys_delete",
    ];
    // Made by v5's rebuild already when it ran from this schema (it takes every index of
    // `users` from `schema.sql`).
    conn.execute_batch(&schema_statement("CREATE INDEX users_listed ", ";")?.replacen("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))?;
    for trigger in triggers {
        // A database that passed through v5's rebuild has them already: it takes every
        // trigger of `users` and `groups` from `schema.sql`.
        let exists: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?)", [trigger], |r| r.get(0))?;
        if !exists {
            conn.execute_batch(&schema_trigger(trigger)?)?;
        }
    }
    Ok(())
}

/// The `CREATE TRIGGER` statement of `name` in `schema.sql` (one line, up to `END;`).
fn schema_trigger(name: &str) -> StoreResult<String> {
    schema_statement(&format!("CREATE TRIGGER {name} "), " END;")
}

/// The statement of `schema.sql` that starts with `head` and ends with `end`.
fn schema_statement(head: &str, end: &str) -> StoreResult<String> {
    let start = SCHEMA.find(head).ok_or_else(|| StoreError::Corrupt(format!("schema.sql has no '{head}'")))?;
    let stop = SCHEMA[start..].find(end).map(|e| start + e + end.len()).ok_or_else(|| StoreError::Corrupt(format!("schema.sql: '{head}' does not end")))?;
    Ok(SCHEMA[start..stop].to_string())
}

/// v7: the service accounts (org admins) are not listed by `GET /Users` (issue 18), so an
/// unfiltered list's total is the users counter less them: this index keeps that count
/// as cheap as the counter, whatever the number of users.
/// (A database that passed through v5's rebuild of `users` already has it: that rebuild
/// takes every index of `users` from `schema.sql`.)
fn migrate_to_v7(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch("CREATE INDEX IF NOT EXISTS users_service_accounts ON users (pk) WHERE role = 'org_admin';")?;
    Ok(())
}

/// v6: `tenant_files`, the copy of the tenant's signing key pair that replication carries
/// to a standby (issue 17), created exactly as `schema.sql` has it. It starts empty: the
/// tenant fills it from its key files when it next opens (`Tenant::open`).
fn migrate_to_v6(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(&schema_table("tenant_files")?)?;
    Ok(())
}

/// The `CREATE TABLE` statement of `table` in `schema.sql`.
fn schema_table(table: &str) -> StoreResult<String> {
    schema_statement(&format!("CREATE TABLE {table} ("), "\n);")
}

/// v5: stored data that was not what it claimed to be.
/// * `active` was NULL after a PATCH removed it (or a PUT left it out) and every reader
///   took NULL for active; it is now `NOT NULL DEFAULT 1`. Existing NULLs become 1, which
///   is what every reader (sign-in, seat counters, lists) already made of them, so no
///   account changes state and the counters stay right; the licence column is kept, so a
///   NULL that held no seat still holds none.
/// * userName and group displayName were unique in ASCII case only. Each gets a key column
///   (`crate::names::key`, computed here in Rust) under a UNIQUE index. Rows whose names
///   now collide are kept apart (the later row's key gets its pk appended), logged, and
///   reported by `scimd check` for a person to rename.
/// * Tokens of accounts that are inactive or deleted are revoked, as the new
///   `users_revoke_tokens` trigger does from now on.
///
/// SQLite cannot add NOT NULL to a column in place, so `users` and `groups` are rebuilt
/// from `schema.sql` (foreign keys off, see `migrate`): a migrated database then has the
/// very tables, indexes and triggers of a new one.
fn migrate_to_v5(conn: &Connection) -> StoreResult<()> {
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if enforced {
        // Dropping `users` with foreign keys on would cascade into emails and memberships.
        return Err(StoreError::Corrupt("the v5 migration must run with foreign keys off".into()));
    }
    let unassigned: i64 = conn.query_row("SELECT count(*) FROM users WHERE active IS NULL", [], |r| r.get(0))?;
    rebuild(conn, "users", "user_name_key")?;
    rebuild(conn, "groups", "display_name_key")?;
    let users_kept_apart = fill_keys(conn, "users", "user_name", "user_name_key")?;
    let groups_kept_apart = fill_keys(conn, "groups", "display_name", "display_name_key")?;
    for table in ["users", "groups"] {
        for statement in SCHEMA.lines().filter(|l| {
            [format!("CREATE INDEX {table}_"), format!("CREATE UNIQUE INDEX {table}_"), format!("CREATE TRIGGER {table}_")].iter().any(|p| l.starts_with(p.as_str()))
        }) {
            conn.execute_batch(statement)?;
        }
    }
    conn.execute(&format!("INSERT OR REPLACE INTO counters (name, n) {}", super::RECOUNT_SQL), [])?;
    let revoked = conn.execute(
        "UPDATE api_tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE revoked_at IS NULL AND user_id NOT IN (SELECT id FROM users WHERE active = 1 AND deleted_at IS NULL)",
        [],
    )?;
    let dangling: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
    if dangling != 0 {
        return Err(StoreError::Corrupt(format!("{dangling} rows reference missing users or groups after the v5 rebuild")));
    }
    if unassigned > 0 {
        warn!(target: "scimd::store", "v5: {unassigned} users had no 'active' value; they are now active, as they were already treated");
    }
    if revoked > 0 {
        warn!(target: "scimd::store", "v5: revoked {revoked} bearer tokens of inactive or deleted accounts");
    }
    if users_kept_apart + groups_kept_apart > 0 {
        warn!(
            target: "scimd::store",
            "v5: {users_kept_apart} userNames and {groups_kept_apart} group displayNames are the same name as an earlier one under Unicode \
             normalisation; both were kept; `scimd check` lists them: rename one of each pair"
        );
    }
    Ok(())
}

/// Rebuilds `table` as `schema.sql` defines it, copying every row; the new key column
/// starts empty. The table's indexes and triggers go with the old table.
fn rebuild(conn: &Connection, table: &str, key_column: &str) -> StoreResult<()> {
    let create = schema_table(table)?.replacen(&format!("CREATE TABLE {table} ("), &format!("CREATE TABLE {table}_v5 ("), 1);
    let columns: Vec<String> = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let values: Vec<String> = columns.iter().map(|c| if c == "active" { "coalesce(active, 1)".to_string() } else { c.clone() }).collect();
    conn.execute_batch(&create)?;
    conn.execute(&format!("INSERT INTO {table}_v5 ({}, {key_column}) SELECT {}, '' FROM {table}", columns.join(", "), values.join(", ")), [])?;
    conn.execute_batch(&format!("DROP TABLE {table}; ALTER TABLE {table}_v5 RENAME TO {table};"))?;
    Ok(())
}

/// Rows read per step while keys are computed: bounded memory on a million users.
const KEY_BATCH: i64 = 10_000;

/// Computes every row's name key, then keeps colliding rows apart: the first (lowest pk)
/// keeps the key, each later one gets `key U+0001 pk` (U+0001 is refused in new names, so
/// no real key looks like it). Returns how many rows were kept apart.
fn fill_keys(conn: &Connection, table: &str, name_column: &str, key_column: &str) -> StoreResult<usize> {
    let mut after = i64::MIN;
    loop {
        let batch: Vec<(i64, String)> = conn
            .prepare_cached(&format!("SELECT pk, {name_column} FROM {table} WHERE pk > ? ORDER BY pk LIMIT {KEY_BATCH}"))?
            .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let Some(&(last, _)) = batch.last() else { break };
        after = last;
        let mut update = conn.prepare_cached(&format!("UPDATE {table} SET {key_column} = ? WHERE pk = ?"))?;
        for (pk, name) in &batch {
            update.execute(params![crate::names::key(name), pk])?;
        }
    }
    let shared: Vec<String> = conn
        .prepare(&format!("SELECT {key_column} FROM {table} GROUP BY {key_column} HAVING count(*) > 1"))?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut kept_apart = 0;
    for key in shared {
        let rows: Vec<(i64, String)> = conn
            .prepare(&format!("SELECT pk, {name_column} FROM {table} WHERE {key_column} = ? ORDER BY pk"))?
            .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let Some((first_pk, first_name)) = rows.first().cloned() else { continue };
        for (pk, name) in rows.into_iter().skip(1) {
            let mut distinct = format!("{key}\u{1}{pk}");
            let taken = |k: &str| -> StoreResult<bool> {
                Ok(conn.prepare(&format!("SELECT 1 FROM {table} WHERE {key_column} = ?"))?.query_row([k], |_| Ok(())).optional()?.is_some())
            };
            while taken(&distinct)? {
                distinct.push('\u{1}');
            }
            conn.execute(&format!("UPDATE {table} SET {key_column} = ? WHERE pk = ?"), params![distinct, pk])?;
            warn!(target: "scimd::store", "v5: {table} {name:?} (pk {pk}) is the same name as {first_name:?} (pk {first_pk}); kept both");
            kept_apart += 1;
        }
    }
    Ok(kept_apart)
}

/// v4: what every write did by scanning, so it slowed down as the tenant grew: counting
/// the seats in use (each create), counting the visible users for an unfiltered list, and
/// finding inactive Basic-auth members (each group sync walked all of the group's
/// members). Now an index and trigger-kept counters, created exactly as `schema.sql` has
/// them, then counted once from the rows.
fn migrate_to_v4(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(INACTIVE_BASIC_INDEX)?;
    let counters = SCHEMA
        .lines()
        .filter(|l| ["CREATE TABLE counters", "CREATE TRIGGER users_count", "CREATE TRIGGER groups_count"].iter().any(|p| l.starts_with(p)))
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
    // Every open of a tenant comes here, and nearly always the version already matches:
    // one read of the header answers that without taking the write lock. The version only
    // grows, and only inside a migration's write transaction, so a match read here stays
    // true; anything else goes the careful way below.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == CURRENT {
        return Ok(());
    }
    // Rebuilding a table (v5) must not cascade deletes into the rows that reference it,
    // and `PRAGMA foreign_keys` cannot change inside a transaction: off for the
    // migrations (each checks what it rebuilt), then back as it was.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = migrate_steps(conn);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    result
}

fn migrate_steps(conn: &mut Connection) -> StoreResult<()> {
    // Each step reads the version inside its own write transaction (BEGIN IMMEDIATE): two
    // processes (the server and a CLI command) or two openers migrating at once take turns,
    // and the second finds the work done instead of repeating it.
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > CURRENT {
            return Err(StoreError::Unavailable(
                crate::model::Fault::NewerSchema,
                format!("database schema version {version} is newer than this scimd understands ({CURRENT}); refusing to open"),
            ));
        }
        if version == CURRENT {
            tx.commit()?;
            return Ok(());
        }
        if version == 0 {
            let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))?;
            if tables != 0 {
                return Err(StoreError::Unavailable(crate::model::Fault::Corrupt, "database has tables but no schema version".into()));
            }
            tx.execute_batch(SCHEMA)?;
            tx.commit()?;
            info!(target: "scimd::store", "created a new database at schema version {CURRENT}");
            return Ok(());
        }
        let step = MIGRATIONS[version as usize - 1];
        step(&tx)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        info!(target: "scimd::store", "migrated database to schema version {}", version + 1);
    }
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
        assert!(matches!(migrate(&mut conn), Err(StoreError::Unavailable(crate::model::Fault::NewerSchema, _))));
    }

    #[test]
    fn counters_follow_inserts_updates_and_deletes() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let add = |id: &str, license: &str| {
            conn.execute(
                "INSERT INTO users (id, user_name, user_name_key, license, created, last_modified) VALUES (?1, ?1, ?1, ?2, 't', 't')",
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
        conn.execute("INSERT INTO groups (id, display_name, display_name_key, created, last_modified) VALUES ('g', 'G', 'g', 't', 't')", []).unwrap();
        conn.execute("INSERT INTO groups (id, display_name, display_name_key, scope, created, last_modified) VALUES ('p', 'P', 'p', 'project', 't', 't')", [])
            .unwrap();
        let counted = |name: &str| -> i64 { conn.query_row("SELECT n FROM counters WHERE name = ?", [name], |r| r.get(0)).unwrap() };
        let truth = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(counted("users"), truth("SELECT count(*) FROM users WHERE deleted_at IS NULL"));
        assert_eq!(counted("users"), 2);
        assert_eq!(counted("groups"), 1);
        assert_eq!((counted("seats:creator"), counted("seats:creator_float")), (0, 1));
        assert_eq!(super::super::users::seats_used(&conn, crate::model::License::CreatorFloat, "a").unwrap(), 0, "a user's own seat is not counted");
        assert_eq!(super::super::users::seats_used(&conn, crate::model::License::CreatorFloat, "x").unwrap(), 1);
    }

    /// Databases made by earlier schemas migrate to the same tables and columns a new
    /// database gets, keeping their rows.
    #[test]
    fn old_databases_migrate_to_current_schema() {
        for old_schema in [
            include_str!("../../tests/fixtures/schema_v1.sql"),
            include_str!("../../tests/fixtures/schema_v2.sql"),
            include_str!("../../tests/fixtures/schema_v3.sql"),
            include_str!("../../tests/fixtures/schema_v4.sql"),
            include_str!("../../tests/fixtures/schema_v5.sql"),
            include_str!("../../tests/fixtures/schema_v6.sql"),
            include_str!("../../tests/fixtures/schema_v7.sql"),
        ] {
            check_migration(old_schema);
        }
    }

    /// Two openers of one old database at once (the server's first requests, or the server
    /// and a CLI command): one migrates, the other waits and finds it done. Before, each read
    /// the version outside a transaction and the second repeated v5 and failed; and two
    /// switching a rollback-journal database to WAL deadlocked, one failing SQLITE_BUSY.
    #[test]
    fn concurrent_openers_migrate_once() {
        let dir = std::env::temp_dir().join(format!("scimd-migrate-race-{}-{}", std::process::id(), crate::store::new_resource_id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Rounds, because the race is a matter of timing: each round starts its openers
        // together (a barrier) on a fresh old database still in rollback-journal mode.
        for round in 0..20 {
            let path = dir.join(format!("scim-{round}.db"));
            let old = Connection::open(&path).unwrap();
            old.execute_batch(include_str!("../../tests/fixtures/schema_v4.sql")).unwrap();
            drop(old);
            let start = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        crate::store::open_for_write(&path).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().expect("every opener succeeds");
            }
            let v: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(v, CURRENT);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn check_migration(old_schema: &str) {
        let describe = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn
                .prepare(
                    "SELECT m.name, p.name, p.type, p.\"notnull\", coalesce(p.dflt_value, '') FROM sqlite_master m, pragma_table_info(m.name) p
                     WHERE m.type = 'table' ORDER BY 1, p.cid",
                )
                .unwrap();
            stmt.query_map([], |r| {
                Ok(format!("{}.{} {} notnull={} default={}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?, r.get::<_, String>(4)?))
            })
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
        // From v5 on a user row carries its name key.
        let (key_column, key) = if old_schema.contains("user_name_key") { (", user_name_key", ", user_name") } else { ("", "") };
        old.execute(&format!("INSERT INTO users (id, user_name{key_column}, created, last_modified) SELECT 'u', 'kept@x.com'{key}, 't', 't' FROM (SELECT 'kept@x.com' AS user_name)"), []).unwrap();
        old.execute(
            &format!("INSERT INTO users (id, user_name{key_column}, role, password_hash, created, last_modified) SELECT 'a', 'admin'{key}, 'org_admin', 'h', 't', 't' FROM (SELECT 'admin' AS user_name)"),
            [],
        )
        .unwrap();
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

    /// A v4 database with what v5 fixes: an `active` left NULL, names that collide under
    /// the new key, and a live token of a deactivated account.
    #[test]
    fn v5_fixes_unassigned_active_colliding_names_and_stale_tokens() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../tests/fixtures/schema_v4.sql")).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        let user = |id: &str, name: &str, active: Option<i64>, license: &str| {
            conn.execute(
                "INSERT INTO users (id, user_name, active, license, created, last_modified) VALUES (?1, ?2, ?3, ?4, 't', 't')",
                params![id, name, active, license],
            )
            .unwrap();
        };
        user("n", "unassigned@x.com", None, "creator");
        user("a1", "\u{e4}lice@x.com", Some(1), "none");
        user("a2", "\u{c4}LICE@X.COM", Some(1), "none");
        user("a3", "a\u{308}lice@x.com", Some(0), "none");
        user("off", "off@x.com", Some(0), "none");
        conn.execute("INSERT INTO user_emails (user_pk, position, value) SELECT pk, 0, user_name FROM users", []).unwrap();
        conn.execute("INSERT INTO groups (id, display_name, created, last_modified) VALUES ('g1', 'Sales', 't', 't'), ('g2', 'sales ', 't', 't')", []).unwrap();
        conn.execute("INSERT INTO memberships (group_pk, user_pk) SELECT g.pk, u.pk FROM groups g, users u", []).unwrap();
        conn.execute("INSERT INTO api_tokens (token_id, user_id, issued_at, expires_at) VALUES ('t-off', 'off', 't', 'z'), ('t-on', 'a1', 't', 'z')", []).unwrap();
        migrate(&mut conn).unwrap();
        let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert!(enforced, "foreign keys are back on after the migration");
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(n("SELECT active FROM users WHERE id = 'n'"), 1, "an unassigned active became active");
        assert_eq!(n("SELECT count(*) FROM user_emails"), 5, "no email was cascaded away by the rebuild");
        assert_eq!(n("SELECT count(*) FROM memberships"), 10, "nor any membership");
        assert_eq!(n("SELECT n FROM counters WHERE name = 'seats:creator'"), 1, "the NULL user keeps its seat");
        assert!(conn.execute("UPDATE users SET active = NULL WHERE id = 'n'", []).is_err(), "active is NOT NULL now");
        let key = |id: &str| -> String { conn.query_row("SELECT user_name_key FROM users WHERE id = ?", [id], |r| r.get(0)).unwrap() };
        assert_eq!(key("a1"), "\u{e4}lice@x.com");
        assert_ne!(key("a2"), key("a1"), "colliding rows are kept apart");
        assert_ne!(key("a3"), key("a1"));
        assert_ne!(key("a3"), key("a2"));
        let group_keys = n("SELECT count(DISTINCT display_name_key) FROM groups");
        assert_eq!(group_keys, 2);
        let clashes = super::super::users::name_clashes(&conn).unwrap();
        assert_eq!(clashes.len(), 3, "check reports each later row of a colliding set");
        assert!(clashes.iter().any(|c| c.table == "groups" && c.name == "sales " && c.same_as.as_ref().is_some_and(|(_, n)| n == "Sales")));
        assert_eq!(n("SELECT count(*) FROM api_tokens WHERE token_id = 't-off' AND revoked_at IS NOT NULL"), 1, "a deactivated account's token is revoked");
        assert_eq!(n("SELECT count(*) FROM api_tokens WHERE token_id = 't-on' AND revoked_at IS NULL"), 1, "an active account's is not");
        conn.execute("UPDATE users SET active = 0, last_modified = 'u' WHERE id = 'a1'", []).unwrap();
        assert_eq!(n("SELECT count(*) FROM api_tokens WHERE token_id = 't-on' AND revoked_at = 'u'"), 1, "the trigger revokes from now on");
        assert_eq!(n("SELECT count(*) FROM events WHERE resource_type = 'Token' AND action = 'delete' AND resource_id = 'a1'"), 1, "and logs it");
    }
}
