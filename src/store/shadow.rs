//! The SQL of shadow mode (issue 20): a consistent copy of a tenant's database for the IdP
//! to rehearse against, what tells whether the live database changed since, what the
//! report reads, and the one transaction that makes the copy live.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{open_connection, StoreError, StoreResult};

/// Copies the live database at `live` into a new file `to` from one read snapshot (SQLite's
/// online backup), without taking the write lock: the live tenant keeps serving.
pub fn copy_out(live: &Path, to: &Path) -> StoreResult<()> {
    let source = open_connection(live, true)?;
    let mut copy = Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
    let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
    // All pages in one step: one snapshot, whatever the live writer commits meanwhile.
    loop {
        match backup.step(-1)? {
            rusqlite::backup::StepResult::Done => break,
            // Locked by another connection's write for an instant: try again.
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    drop(backup);
    copy.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    Ok(())
}

/// What changes whenever anything in the database changes: the counters (users, seats,
/// the change counters, the auth counter that every account, token and key change moves),
/// the last event (every change of a user, group, membership, token or key records one),
/// and the sums of the resources' versions (every update bumps one). Equal markers taken at
/// two times mean nothing the application reads changed in between.
pub fn marker(conn: &Connection) -> StoreResult<String> {
    marker_of(conn, "main")
}

fn marker_of(conn: &Connection, schema: &str) -> StoreResult<String> {
    // `schema` is one of two constants of this file, never input.
    let sql = format!(
        "SELECT (SELECT group_concat(name || '=' || n, ',') FROM (SELECT name, n FROM {schema}.counters ORDER BY name)),
                (SELECT coalesce(max(seq), 0) FROM {schema}.events),
                (SELECT count(*) || '/' || total(version) FROM {schema}.users),
                (SELECT count(*) || '/' || total(version) FROM {schema}.groups),
                (SELECT count(*) FROM {schema}.memberships),
                (SELECT count(*) FROM {schema}.api_tokens),
                (SELECT count(*) FROM {schema}.api_clients)"
    );
    Ok(conn.query_row(&sql, [], |r| {
        Ok(format!(
            "counters[{}] events {} users {} groups {} memberships {} tokens {} clients {}",
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?
        ))
    })?)
}

/// Whether the rehearsal started at `stamp` was promoted into the database at `live`.
pub fn was_promoted(live: &Path, stamp: &str) -> StoreResult<bool> {
    let conn = Connection::open_with_flags(live, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM counters WHERE name = 'shadow promoted ' || ?1)", [stamp], |r| r.get(0))?)
}

/// The last event's sequence number (0 for none) and the marker of the database at `path`.
pub fn describe(path: &Path) -> StoreResult<(i64, String)> {
    let conn = open_connection(path, true)?;
    let last = conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
    Ok((last, marker(&conn)?))
}

/// Makes the database at `shadow` the content of the live one at `live`, in one write
/// transaction on the live database, so the application reads the old state or the new one
/// and nothing between. Refused with `Conflict` when the live database no longer has the
/// `expected` marker (it changed since the copy was taken) and with `Corrupt` when the two
/// are not of the same schema. Triggers are dropped for the copy and recreated from their
/// own text (the rows arrive with the counters the triggers kept in the copy); the change
/// counters are then moved past both, so what the server remembers under them (index
/// walks, verified credentials) is not taken for the new content.
pub fn promote(live: &Path, shadow: &Path, expected: &str, stamp: &str) -> StoreResult<()> {
    let mut conn = open_connection(live, false)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let shadow_text = shadow.to_str().ok_or_else(|| StoreError::Invalid("the shadow database's path is not UTF-8".into()))?;
    conn.execute("ATTACH DATABASE ?1 AS shadow", [shadow_text])?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = marker_of(&tx, "main")?;
    if now != expected {
        return Err(StoreError::Conflict(format!("the live database changed since the rehearsal started (then: {expected}; now: {now})")));
    }
    let version = |schema: &str| tx.query_row(&format!("PRAGMA {schema}.user_version"), [], |r| r.get::<_, i64>(0));
    if version("main")? != version("shadow")? {
        return Err(StoreError::Corrupt("the rehearsal's database is of another schema version than the live one".into()));
    }
    let objects = |schema: &str, kind: &str| -> StoreResult<Vec<(String, String)>> {
        let sql = format!("SELECT name, coalesce(sql, '') FROM {schema}.sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%' ORDER BY name");
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    };
    let tables = objects("main", "table")?;
    if tables != objects("shadow", "table")? {
        return Err(StoreError::Corrupt("the rehearsal's tables differ from the live database's".into()));
    }
    let triggers = objects("main", "trigger")?;
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    for (name, _) in &triggers {
        tx.execute_batch(&format!("DROP TRIGGER main.{}", quoted(name)))?;
    }
    for (name, _) in &tables {
        let t = quoted(name);
        tx.execute_batch(&format!("DELETE FROM main.{t}; INSERT INTO main.{t} SELECT * FROM shadow.{t};"))?;
    }
    tx.execute_batch("DELETE FROM main.sqlite_sequence; INSERT INTO main.sqlite_sequence SELECT * FROM shadow.sqlite_sequence;")?;
    for (_, sql) in &triggers {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch("UPDATE main.counters SET n = n + 1 WHERE name IN ('auth:changes', 'users:changes', 'groups:changes')")?;
    // Says, in the same commit, that this rehearsal is live: a crash before its files are
    // removed must not have the next open serve the IdP from them again.
    tx.execute("INSERT OR REPLACE INTO main.counters (name, n) VALUES ('shadow promoted ' || ?1, 1)", [stamp])?;
    let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
    if broken > 0 {
        return Err(StoreError::Corrupt(format!("the rehearsal's database has {broken} rows whose references are missing")));
    }
    tx.commit()?;
    conn.execute("DETACH DATABASE shadow", [])?;
    Ok(())
}

/// A database read for the report: opened read-only, so reading it never checkpoints or
/// otherwise touches the file (the live one must stay byte for byte what it was).
pub struct Snapshot {
    conn: Connection,
}

impl Snapshot {
    pub fn open(path: &Path) -> StoreResult<Snapshot> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Snapshot { conn })
    }

    /// Every event after `seq`, in order.
    pub fn events_after(&self, seq: i64) -> StoreResult<Vec<super::events::EventRecord>> {
        let mut all = Vec::new();
        let mut after = seq;
        loop {
            let page = super::events::list(&self.conn, &super::events::EventQuery { after, limit: 10_000, ..Default::default() })?;
            let Some(last) = page.last() else { return Ok(all) };
            after = last.seq;
            all.extend(page);
        }
    }

    /// A user id's userName; `None` when the id is no user.
    pub fn user_name(&self, id: &str) -> StoreResult<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self.conn.prepare_cached("SELECT user_name FROM users WHERE id = ?")?.query_row([id], |r| r.get(0)).optional()?)
    }

    /// A group id's displayName.
    pub fn group_name(&self, id: &str) -> StoreResult<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self.conn.prepare_cached("SELECT display_name FROM groups WHERE id = ?")?.query_row([id], |r| r.get(0)).optional()?)
    }

    /// The userName of a user (not deleted) with this email whose userName is another.
    pub fn other_user_with_email(&self, email: &str) -> StoreResult<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .prepare_cached(
                "SELECT u.user_name FROM user_emails e JOIN users u ON u.pk = e.user_pk
                 WHERE e.value = ?1 AND u.deleted_at IS NULL AND u.user_name_key <> lower(?1) ORDER BY u.pk LIMIT 1",
            )?
            .query_row([email], |r| r.get(0))
            .optional()?)
    }

    /// The userNames of a group's members.
    pub fn member_names(&self, group_id: &str) -> StoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.user_name FROM memberships m JOIN groups g ON g.pk = m.group_pk JOIN users u ON u.pk = m.user_pk
             WHERE g.id = ? ORDER BY u.user_name_key",
        )?;
        let names = stmt.query_map([group_id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }
}
