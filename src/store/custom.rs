//! The SQL of `users.custom`, a user's custom attributes (tenant.toml `[[extension]]`,
//! issue 23) beyond what `users.rs` reads and writes with the row: the unique indexes the
//! declaration asks for, and the explicit removal of values no longer declared.

use rusqlite::{params, Connection};
use serde_json::{Map, Value};

use super::filter_sql::custom_value;
use super::{StoreError, StoreResult};

/// A custom attribute whose values are unique among the users not deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueAttr {
    pub urn: String,
    pub attr: String,
    /// Compared as is: true for every attribute that is not a case-insensitive string
    /// (the filters compare those without a collation too, so `eq` uses the index).
    pub case_exact: bool,
}

const PREFIX: &str = "users_x_";

impl UniqueAttr {
    /// The index's name: the attribute's name (for the 409 that names it) and a hash of
    /// everything the index depends on, so a changed declaration is a different index.
    fn index_name(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.urn.bytes().chain([0]).chain(self.attr.bytes()).chain([0, u8::from(self.case_exact)]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{PREFIX}{}_{hash:016x}", self.attr)
    }
}

/// The attribute a unique-index violation names, when it is one of these indexes
/// (SQLite: `UNIQUE constraint failed: index 'users_x_badge_…'`).
pub fn custom_index_violated(e: &rusqlite::Error) -> Option<String> {
    if !super::is_unique_violation(e) {
        return None;
    }
    let text = e.to_string();
    let name = text.split_once(&format!("index '{PREFIX}"))?.1;
    let attr = name.rsplit_once('_')?.0;
    Some(attr.to_string())
}

/// Makes the indexes `wanted` names and drops the other custom ones, in the caller's
/// transaction. A unique declaration the stored values break is refused whole, naming
/// the attribute and how many users share a value, and nothing changes.
pub fn sync_unique_indexes(conn: &Connection, wanted: &[UniqueAttr]) -> StoreResult<()> {
    let existing = unique_indexes(conn)?;
    let names: Vec<String> = wanted.iter().map(UniqueAttr::index_name).collect();
    for old in existing.iter().filter(|e| !names.contains(e)) {
        conn.execute_batch(&format!("DROP INDEX \"{old}\""))?;
    }
    for (attr, name) in wanted.iter().zip(&names).filter(|(_, n)| !existing.contains(n)) {
        let value = custom_value(None, &attr.urn, &attr.attr).ok_or_else(|| StoreError::Invalid(format!("{} is not an attribute name", attr.attr)))?;
        let collate = if attr.case_exact { "" } else { " COLLATE NOCASE" };
        let made = conn.execute_batch(&format!("CREATE UNIQUE INDEX \"{name}\" ON users ({value}{collate}) WHERE deleted_at IS NULL"));
        if let Err(e) = made {
            if !super::is_unique_violation(&e) {
                return Err(e.into());
            }
            let shared: i64 = conn.query_row(
                &format!("SELECT count(*) FROM users WHERE deleted_at IS NULL AND {value} IN (SELECT {value}{collate} FROM users WHERE deleted_at IS NULL AND {value} IS NOT NULL GROUP BY {value}{collate} HAVING count(*) > 1)"),
                [],
                |r| r.get(0),
            )?;
            return Err(StoreError::Invalid(format!(
                "{}:{} cannot be unique: {shared} users share a value; change theirs first",
                attr.urn, attr.attr
            )));
        }
    }
    Ok(())
}

/// The custom unique indexes the database has, by name.
fn unique_indexes(conn: &Connection) -> StoreResult<Vec<String>> {
    Ok(conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users' AND substr(name, 1, length(?1)) = ?1")?
        .query_map([PREFIX], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Whether the database's custom unique indexes are exactly `wanted`'s (read only: an open
/// whose indexes are current, nearly all, takes no write lock).
pub fn unique_indexes_match(conn: &Connection, wanted: &[UniqueAttr]) -> StoreResult<bool> {
    let mut existing = unique_indexes(conn)?;
    let mut names: Vec<String> = wanted.iter().map(UniqueAttr::index_name).collect();
    existing.sort();
    names.sort();
    Ok(existing == names)
}

/// A user that held custom values no longer declared, and which ones.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Undeclared {
    pub id: String,
    pub user_name: String,
    /// `urn:…:attr` of each value found.
    pub attributes: Vec<String>,
}

/// Every user holding custom values that `keep(urn, attribute, value)` refuses (no longer
/// declared, or no longer of the declared type); with `apply`, those values are removed (a
/// new version of each user, `now`).
pub fn undeclared(conn: &Connection, keep: impl Fn(&str, &str, &Value) -> bool, apply: bool, now: &str) -> StoreResult<Vec<Undeclared>> {
    let rows: Vec<(i64, String, String, String)> = conn
        .prepare("SELECT pk, id, user_name, custom FROM users WHERE custom IS NOT NULL ORDER BY pk")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut found = Vec::new();
    for (pk, id, user_name, text) in rows {
        let Ok(mut custom) = serde_json::from_str::<Map<String, Value>>(&text) else { continue };
        let mut attributes = Vec::new();
        for (urn, value) in custom.iter_mut() {
            let Some(obj) = value.as_object_mut() else { continue };
            obj.retain(|name, value| {
                let keep = keep(urn, name, value);
                if !keep {
                    attributes.push(format!("{urn}:{name}"));
                }
                keep
            });
        }
        if attributes.is_empty() {
            continue;
        }
        if apply {
            custom.retain(|_, v| v.as_object().is_none_or(|o| !o.is_empty()));
            let text = (!custom.is_empty()).then(|| Value::Object(custom).to_string());
            conn.prepare_cached("UPDATE users SET custom = ?, last_modified = max(?, last_modified), version = version + 1 WHERE pk = ?")?
                .execute(params![text, now, pk])?;
        }
        found.push(Undeclared { id, user_name, attributes });
    }
    Ok(found)
}
