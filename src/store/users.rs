//! SQL for users and their multi-valued attributes. A declarative column map turns a
//! canonical document into columns and back; multi-valued attributes live in
//! `user_emails`, `user_values` and `user_addresses`.

use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

use super::custom::custom_index_violated;
use super::{is_unique_violation, new_resource_id, StoreError, StoreResult};
use crate::model::{Attrs, AuthType, CustomText, License, ManagedBy, RawObject, Role, StoredResource};
use crate::model::{ENTERPRISE_SCHEMA, SCIMD_SCHEMA};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    Text,
    Bool,
}

/// Where a singular attribute lives: `(extension, attribute, sub-attribute) → column`.
pub struct ColumnMap {
    pub ext: Option<&'static str>,
    pub attr: &'static str,
    pub sub: Option<&'static str>,
    pub column: &'static str,
    pub kind: ColKind,
    /// False for what SCIM may read but only the server sets (licence, origin).
    pub writable: bool,
}

const fn col(attr: &'static str, column: &'static str) -> ColumnMap {
    ColumnMap { ext: None, attr, sub: None, column, kind: ColKind::Text, writable: true }
}
const fn name(sub: &'static str, column: &'static str) -> ColumnMap {
    ColumnMap { ext: None, attr: "name", sub: Some(sub), column, kind: ColKind::Text, writable: true }
}
const fn ent(attr: &'static str, sub: Option<&'static str>, column: &'static str) -> ColumnMap {
    ColumnMap { ext: Some(ENTERPRISE_SCHEMA), attr, sub, column, kind: ColKind::Text, writable: true }
}
const fn scimd(attr: &'static str, column: &'static str) -> ColumnMap {
    ColumnMap { ext: Some(SCIMD_SCHEMA), attr, sub: None, column, kind: ColKind::Text, writable: false }
}

pub static USER_COLUMNS: &[ColumnMap] = &[
    col("userName", "user_name"),
    col("externalId", "external_id"),
    ColumnMap { ext: None, attr: "active", sub: None, column: "active", kind: ColKind::Bool, writable: true },
    col("displayName", "display_name"),
    col("nickName", "nick_name"),
    col("profileUrl", "profile_url"),
    col("title", "title"),
    col("userType", "user_type"),
    col("preferredLanguage", "preferred_language"),
    col("locale", "locale"),
    col("timezone", "timezone"),
    name("formatted", "name_formatted"),
    name("familyName", "name_family"),
    name("givenName", "name_given"),
    name("middleName", "name_middle"),
    name("honorificPrefix", "name_prefix"),
    name("honorificSuffix", "name_suffix"),
    ent("employeeNumber", None, "ent_employee_number"),
    ent("costCenter", None, "ent_cost_center"),
    ent("organization", None, "ent_organization"),
    ent("division", None, "ent_division"),
    ent("department", None, "ent_department"),
    ent("manager", Some("value"), "ent_manager"),
    scimd("license", "license"),
    scimd("authenticationType", "auth_type"),
    scimd("managedBy", "managed_by"),
];

fn writable() -> impl Iterator<Item = &'static ColumnMap> {
    USER_COLUMNS.iter().filter(|c| c.writable)
}

/// Multi-valued attributes of the value/type/display/primary shape kept in `user_values`.
pub const VALUE_ATTRS: &[&str] = &["phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates"];

/// Each sub-attribute of an address and its column in `user_addresses`: the one map that
/// reading, writing and filtering addresses use (`primary` is `is_primary`, stored apart).
const ADDRESS_FIELDS: &[(&str, &str)] = &[
    ("formatted", "formatted"),
    ("streetAddress", "street_address"),
    ("locality", "locality"),
    ("region", "region"),
    ("postalCode", "postal_code"),
    ("country", "country"),
    ("type", "type"),
];

/// The `user_addresses` column a filter or sort on `addresses.<sub>` compares.
pub fn address_column(sub: &str) -> Option<&'static str> {
    if sub == "primary" {
        return Some("is_primary");
    }
    ADDRESS_FIELDS.iter().find(|(field, _)| *field == sub).map(|(_, column)| *column)
}

static ADDRESS_SELECT_SQL: LazyLock<String> = LazyLock::new(|| {
    let cols: Vec<&str> = ADDRESS_FIELDS.iter().map(|(_, c)| *c).collect();
    format!("SELECT {}, is_primary FROM user_addresses WHERE user_pk = ? ORDER BY position", cols.join(", "))
});

static ADDRESS_INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    let cols: Vec<&str> = ADDRESS_FIELDS.iter().map(|(_, c)| *c).collect();
    let marks = vec!["?"; cols.len() + 3].join(", ");
    format!("INSERT INTO user_addresses (user_pk, position, {}, is_primary) VALUES ({marks})", cols.join(", "))
});

static SELECT_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let cols: Vec<String> = USER_COLUMNS.iter().map(|c| format!("u.{}", c.column)).collect();
    format!("u.pk, u.id, u.created, u.last_modified, u.version, {}, u.custom", cols.join(", "))
});

static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    let cols: Vec<&str> = writable().map(|c| c.column).collect();
    let marks = vec!["?"; cols.len() + 11].join(", ");
    format!(
        "INSERT INTO users (id, created, last_modified, version, role, password_hash, license, auth_type, managed_by, user_name_key, custom, {}) VALUES ({marks})",
        cols.join(", ")
    )
});

/// A boolean the document leaves out keeps its stored value: `active` is never NULL.
static UPDATE_SQL: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = writable()
        .map(|c| match c.kind {
            ColKind::Bool => format!("{0} = coalesce(?, {0})", c.column),
            ColKind::Text => format!("{} = ?", c.column),
        })
        .collect();
    format!("UPDATE users SET user_name_key = ?, custom = ?, {}, last_modified = max(?, last_modified), version = version + 1 WHERE pk = ?", sets.join(", "))
});

/// The comparison key of a document's userName (see `crate::names`).
fn user_name_key(doc: &Attrs) -> String {
    crate::names::key(doc.get("userName").and_then(Value::as_str).unwrap_or_default())
}

fn lookup<'a>(doc: &'a Attrs, c: &ColumnMap) -> Option<&'a Value> {
    let holder = match c.ext {
        None => doc,
        Some(urn) => doc.get(urn)?.as_object()?,
    };
    let v = holder.get(c.attr)?;
    match c.sub {
        None => Some(v),
        Some(sub) => v.as_object()?.get(sub),
    }
}

fn put(doc: &mut Attrs, c: &ColumnMap, value: Value) {
    let mut holder = doc;
    if let Some(urn) = c.ext {
        holder = holder.entry(urn).or_insert_with(|| Value::Object(Map::new())).as_object_mut().expect("object");
    }
    match c.sub {
        None => {
            holder.insert(c.attr.to_string(), value);
        }
        Some(sub) => {
            let inner = holder.entry(c.attr).or_insert_with(|| Value::Object(Map::new()));
            if let Some(obj) = inner.as_object_mut() {
                obj.insert(sub.to_string(), value);
            }
        }
    }
}

fn column_values(doc: &Attrs) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    writable()
        .map(|c| match (c.kind, lookup(doc, c)) {
            (ColKind::Bool, Some(Value::Bool(b))) => Sql::Integer(i64::from(*b)),
            (ColKind::Bool, _) => Sql::Null,
            (ColKind::Text, Some(Value::String(s))) => Sql::Text(s.clone()),
            (ColKind::Text, _) => Sql::Null,
        })
        .collect()
}

/// The document's custom attributes (its keys `model::is_custom_key` names) as the JSON
/// text of `users.custom`; NULL when it has none.
fn custom_column(doc: &Attrs) -> rusqlite::types::Value {
    struct Custom<'a>(&'a Attrs);
    impl serde::Serialize for Custom<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().filter(|(k, _)| crate::model::is_custom_key(k)))
        }
    }
    if !doc.keys().any(|k| crate::model::is_custom_key(k)) {
        return rusqlite::types::Value::Null;
    }
    // Serialised in place: the values are not copied first.
    serde_json::to_string(&Custom(doc)).map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text)
}

/// A user row decoded, without multi-valued attributes yet.
fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, StoredResource)> {
    decode_row(row, true)
}

/// `from_row`, its custom attributes (`users.custom`) parsed only if `custom`.
fn decode_row(row: &Row<'_>, custom: bool) -> rusqlite::Result<(i64, StoredResource)> {
    let pk: i64 = row.get(0)?;
    let mut attrs = Attrs::new();
    for (i, c) in USER_COLUMNS.iter().enumerate() {
        let idx = 5 + i;
        match c.kind {
            ColKind::Bool => {
                if let Some(b) = row.get::<_, Option<i64>>(idx)? {
                    put(&mut attrs, c, Value::Bool(b != 0));
                }
            }
            ColKind::Text => {
                if let Some(s) = row.get::<_, Option<String>>(idx)? {
                    put(&mut attrs, c, Value::String(s));
                }
            }
        }
    }
    // Parsed from SQLite's own buffer: the text is not copied first.
    if let Some(text) = row.get_ref(5 + USER_COLUMNS.len())?.as_str_or_null()?.filter(|_| custom) {
        let custom: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5 + USER_COLUMNS.len(), rusqlite::types::Type::Text, Box::new(e)))?;
        attrs.extend(custom);
    }
    Ok((
        pk,
        StoredResource { id: row.get(1)?, attrs, created: row.get(2)?, last_modified: row.get(3)?, version: row.get(4)? },
    ))
}

fn plural_item(value: Option<String>, kind: Option<String>, display: Option<String>, primary: Option<i64>) -> Value {
    let mut item = Map::new();
    if let Some(v) = value {
        item.insert("value".into(), Value::String(v));
    }
    if let Some(d) = display {
        item.insert("display".into(), Value::String(d));
    }
    if let Some(t) = kind {
        item.insert("type".into(), Value::String(t));
    }
    if let Some(p) = primary {
        item.insert("primary".into(), Value::Bool(p != 0));
    }
    Value::Object(item)
}

/// Loads the multi-valued attributes (and, if asked, the computed `groups`) of one user.
fn load_plural(conn: &Connection, pk: i64, res: &mut StoredResource, with_groups: bool) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT value, type, display, is_primary FROM user_emails WHERE user_pk = ? ORDER BY position",
    )?;
    let emails: Vec<Value> = stmt
        .query_map([pk], |r| Ok(plural_item(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    if !emails.is_empty() {
        res.attrs.insert("emails".into(), Value::Array(emails));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT attr, value, type, display, is_primary FROM user_values WHERE user_pk = ? ORDER BY attr, position",
    )?;
    let mut rows = stmt.query([pk])?;
    while let Some(r) = rows.next()? {
        let attr: String = r.get(0)?;
        let item = plural_item(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        if let Value::Array(items) = res.attrs.entry(attr).or_insert_with(|| Value::Array(Vec::new())) {
            items.push(item);
        }
    }
    let mut stmt = conn.prepare_cached(&ADDRESS_SELECT_SQL)?;
    let addresses: Vec<Value> = stmt
        .query_map([pk], |r| {
            let mut item = Map::new();
            for (i, (field, _)) in ADDRESS_FIELDS.iter().enumerate() {
                if let Some(s) = r.get::<_, Option<String>>(i)? {
                    item.insert((*field).into(), Value::String(s));
                }
            }
            if let Some(p) = r.get::<_, Option<i64>>(ADDRESS_FIELDS.len())? {
                item.insert("primary".into(), Value::Bool(p != 0));
            }
            Ok(Value::Object(item))
        })?
        .collect::<Result<_, _>>()?;
    if !addresses.is_empty() {
        res.attrs.insert("addresses".into(), Value::Array(addresses));
    }
    if with_groups {
        let mut stmt = conn.prepare_cached(
            "SELECT g.id, g.display_name FROM memberships m JOIN groups g ON g.pk = m.group_pk
             WHERE m.user_pk = ? ORDER BY g.display_name",
        )?;
        let groups: Vec<Value> = stmt
            .query_map([pk], |r| Ok(serde_json::json!({"value": r.get::<_, String>(0)?, "display": r.get::<_, String>(1)?})))?
            .collect::<Result<_, _>>()?;
        if !groups.is_empty() {
            res.attrs.insert("groups".into(), Value::Array(groups));
        }
    }
    Ok(())
}

fn str_field(item: &Value, key: &str) -> Option<String> {
    item.get(key).and_then(Value::as_str).map(str::to_string)
}

fn primary_field(item: &Value) -> Option<i64> {
    item.get("primary").and_then(Value::as_bool).map(i64::from)
}

fn items<'a>(doc: &'a Attrs, attr: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    doc.get(attr).and_then(Value::as_array).into_iter().flatten().enumerate()
}

/// Replaces every multi-valued attribute of a user with what `doc` holds.
fn write_plural(conn: &Connection, pk: i64, doc: &Attrs) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM user_emails WHERE user_pk = ?")?.execute([pk])?;
    conn.prepare_cached("DELETE FROM user_values WHERE user_pk = ?")?.execute([pk])?;
    conn.prepare_cached("DELETE FROM user_addresses WHERE user_pk = ?")?.execute([pk])?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO user_emails (user_pk, position, value, type, display, is_primary) VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    for (i, item) in items(doc, "emails") {
        stmt.execute(params![pk, i as i64, str_field(item, "value"), str_field(item, "type"), str_field(item, "display"), primary_field(item)])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO user_values (user_pk, attr, position, value, type, display, is_primary) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    for attr in VALUE_ATTRS {
        for (i, item) in items(doc, attr) {
            stmt.execute(params![pk, attr, i as i64, str_field(item, "value"), str_field(item, "type"), str_field(item, "display"), primary_field(item)])?;
        }
    }
    let mut stmt = conn.prepare_cached(&ADDRESS_INSERT_SQL)?;
    for (i, item) in items(doc, "addresses") {
        let mut values: Vec<rusqlite::types::Value> = vec![pk.into(), (i as i64).into()];
        values.extend(ADDRESS_FIELDS.iter().map(|(field, _)| str_field(item, field).into()));
        values.push(primary_field(item).into());
        stmt.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

fn conflict_or(e: rusqlite::Error) -> StoreError {
    if let Some(attr) = custom_index_violated(&e) {
        StoreError::Conflict(format!("another user already has this value of {attr}, which is unique"))
    } else if is_unique_violation(&e) {
        StoreError::Conflict("a user with this userName already exists".into())
    } else {
        StoreError::from(e)
    }
}

/// What the API needs to know about an account that may authenticate.
#[derive(Clone, Debug)]
pub struct AccountRecord {
    pub id: String,
    pub user_name: String,
    pub active: bool,
    pub role: Role,
    pub password_hash: Option<String>,
    pub license: License,
}

/// Who a new user is, beyond its SCIM attributes.
pub struct UserOrigin<'a> {
    pub role: Role,
    pub password_hash: Option<&'a str>,
    pub license: License,
    pub auth_type: AuthType,
    pub managed_by: ManagedBy,
}

impl UserOrigin<'static> {
    /// A user the IdP creates through SCIM.
    pub fn idp(license: License) -> UserOrigin<'static> {
        UserOrigin { role: Role::User, password_hash: None, license, auth_type: AuthType::Idp, managed_by: ManagedBy::Idp }
    }
}

/// Inserts a user and returns its new id. Callers that answer with the user read it
/// once, after everything else their write does (licence seat, groups).
pub fn insert(conn: &Connection, doc: &Attrs, origin: &UserOrigin<'_>, now: &str) -> StoreResult<String> {
    use rusqlite::types::Value as Sql;
    let id = new_resource_id();
    let text = |s: &str| Sql::Text(s.to_string());
    let mut values = vec![
        Sql::Text(id.clone()),
        text(now),
        text(now),
        Sql::Integer(1),
        text(origin.role.as_str()),
        origin.password_hash.map(text).unwrap_or(Sql::Null),
        text(origin.license.as_str()),
        text(origin.auth_type.as_str()),
        text(origin.managed_by.as_str()),
        Sql::Text(user_name_key(doc)),
        custom_column(doc),
    ];
    // A user the IdP creates without saying is active (a server default, RFC 7643 §2.2);
    // the document is copied only to say so (a create has already).
    let defaulted;
    let doc = if doc.contains_key("active") {
        doc
    } else {
        let mut copy = doc.clone();
        copy.insert("active".into(), Value::Bool(true));
        defaulted = copy;
        &defaulted
    };
    values.extend(column_values(doc));
    conn.prepare_cached(&INSERT_SQL)?
        .execute(rusqlite::params_from_iter(values))
        .map_err(conflict_or)?;
    let pk = conn.last_insert_rowid();
    write_plural(conn, pk, doc)?;
    Ok(id)
}

/// Replaces every attribute of a user (PUT semantics; PATCH computes the new document first).
pub fn replace(conn: &Connection, id: &str, doc: &Attrs, now: &str) -> StoreResult<()> {
    use rusqlite::types::Value as Sql;
    let pk = pk_of(conn, id)?;
    let mut values = vec![Sql::Text(user_name_key(doc)), custom_column(doc)];
    values.extend(column_values(doc));
    values.push(Sql::Text(now.into()));
    values.push(Sql::Integer(pk));
    conn.prepare_cached(&UPDATE_SQL)?
        .execute(rusqlite::params_from_iter(values))
        .map_err(conflict_or)?;
    write_plural(conn, pk, doc)
}

/// Removes the row (hard delete).
pub fn delete(conn: &Connection, id: &str) -> StoreResult<()> {
    let n = conn.prepare_cached("DELETE FROM users WHERE id = ? AND deleted_at IS NULL")?.execute([id])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {id} not found")));
    }
    Ok(())
}

/// Soft delete: deactivated, hidden from SCIM, seat freed; row and memberships kept.
pub fn soft_delete(conn: &Connection, id: &str, now: &str) -> StoreResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE users SET deleted_at = ?1, active = 0, license = 'none', last_modified = max(?1, last_modified), version = version + 1
             WHERE id = ?2 AND deleted_at IS NULL",
        )?
        .execute(params![now, id])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {id} not found")));
    }
    Ok(())
}

/// Brings a soft-deleted user back with the custom attributes of `doc` (the rest of its
/// attributes are then replaced by the caller). A custom attribute's unique index holds
/// among the users not deleted, so the row comes back with the values it is to have, not
/// those it had when deleted (which another user may hold now); a conflict of the new
/// values is a conflict like any other.
pub fn undelete(conn: &Connection, id: &str, doc: &Attrs) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET deleted_at = NULL, custom = ? WHERE id = ?")?
        .execute(rusqlite::params![custom_column(doc), id])
        .map_err(conflict_or)?;
    Ok(())
}

/// The custom attributes a user has stored, deleted or not (a restore keeps those no
/// longer declared).
pub fn stored_custom(conn: &Connection, id: &str) -> StoreResult<Attrs> {
    let text: Option<String> = conn.prepare_cached("SELECT custom FROM users WHERE id = ?")?.query_row([id], |r| r.get(0)).optional()?.flatten();
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
}

/// A user by userName (compared as `crate::names::key` does) whatever its state:
/// (id, soft-deleted, managed_by).
pub fn find_by_user_name(conn: &Connection, user_name: &str) -> StoreResult<Option<(String, bool, ManagedBy)>> {
    Ok(conn
        .prepare_cached("SELECT id, deleted_at IS NOT NULL, managed_by FROM users WHERE user_name_key = ?")?
        .query_row([crate::names::key(user_name)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// Sets who manages a user (`Idp` once the IdP adopts a local user).
pub fn set_managed_by(conn: &Connection, id: &str, managed_by: ManagedBy) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET managed_by = ? WHERE id = ?")?.execute(params![managed_by, id])?;
    Ok(())
}

/// A user's licence, role, sign-in type and owner.
pub fn origin_of(conn: &Connection, id: &str) -> StoreResult<crate::model::Origin> {
    conn.prepare_cached("SELECT license, role, auth_type, managed_by FROM users WHERE id = ?")?
        .query_row([id], |r| Ok(crate::model::Origin { license: r.get(0)?, role: r.get(1)?, auth_type: r.get(2)?, managed_by: r.get(3)? }))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user {id} not found")))
}

/// Seats in use: active, not deleted users holding the licence (other than `except`).
/// Reads the trigger-kept counter, so it costs the same with 50 seats or 50,000.
pub fn seats_used(conn: &Connection, license: License, except: &str) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT (SELECT n FROM counters WHERE name = 'seats:' || ?1)
                  - (SELECT count(*) FROM users WHERE id = ?2 AND license = ?1 AND active IS NOT 0 AND deleted_at IS NULL)",
        )?
        .query_row(params![license, except], |r| r.get::<_, Option<i64>>(0))?
        .unwrap_or(0);
    Ok(n.max(0) as u64)
}

pub fn set_license(conn: &Connection, id: &str, license: License, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET license = ?, last_modified = max(?, last_modified), version = version + 1 WHERE id = ?")?
        .execute(params![license, now, id])?;
    Ok(())
}

pub fn pk_of(conn: &Connection, id: &str) -> StoreResult<i64> {
    conn.prepare_cached("SELECT pk FROM users WHERE id = ? AND deleted_at IS NULL")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user {id} not found")))
}

pub fn get(conn: &Connection, id: &str, with_groups: bool) -> StoreResult<StoredResource> {
    read_one(conn, id, with_groups, None::<Attrs>)
}

static GET_SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {} FROM users u WHERE u.id = ? AND u.deleted_at IS NULL", *SELECT_COLUMNS));

/// `get`, the custom attributes left as their stored text for the caller to render (a GET:
/// parsing 20 values into a document cost it more than everything else they add). The text
/// is checked to be an object, as `get`'s parse would.
pub fn get_unparsed(conn: &Connection, id: &str, with_groups: bool) -> StoreResult<(StoredResource, Option<CustomText>)> {
    let column = 5 + USER_COLUMNS.len();
    let found = conn
        .prepare_cached(&GET_SQL)?
        .query_row([id], |row| {
            let (pk, res) = decode_row(row, false)?;
            let text: Option<String> = row.get(column)?;
            if text.as_deref().is_some_and(|t| RawObject::parse(t).is_none()) {
                return Err(rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, "users.custom is not a JSON object".into()));
            }
            Ok((pk, res, text.map(CustomText)))
        })
        .optional()?;
    let (pk, mut res, text) = found.ok_or_else(|| StoreError::NotFound(format!("user {id} not found")))?;
    load_plural(conn, pk, &mut res, with_groups)?;
    Ok((res, text))
}

/// A user not deleted, its custom attributes parsed from the row or, given `written`, the
/// custom entries of what was written.
fn read_one(conn: &Connection, id: &str, with_groups: bool, written: Option<impl IntoIterator<Item = (String, Value)>>) -> StoreResult<StoredResource> {
    let found = conn.prepare_cached(&GET_SQL)?.query_row([id], |row| decode_row(row, written.is_none())).optional()?;
    let (pk, mut res) = found.ok_or_else(|| StoreError::NotFound(format!("user {id} not found")))?;
    if let Some(written) = written {
        res.attrs.extend(written.into_iter().filter(|(k, _)| crate::model::is_custom_key(k)));
    }
    load_plural(conn, pk, &mut res, with_groups)?;
    Ok(res)
}

/// The user a write (`insert`, `replace`) just stored from `written`, read back in the same
/// transaction: its custom attributes are `written`'s, copied rather than parsed back from
/// the text `custom_column` made of them (on the writer, a create's largest parse).
pub fn get_written(conn: &Connection, id: &str, with_groups: bool, written: &Attrs) -> StoreResult<StoredResource> {
    read_one(conn, id, with_groups, Some(written.iter().filter(|(k, _)| crate::model::is_custom_key(k)).map(|(k, v)| (k.clone(), v.clone()))))
}

/// `get_written` for a document the caller is done with: its custom values move into the
/// answer instead of being copied (a create).
pub fn get_written_owned(conn: &Connection, id: &str, with_groups: bool, written: Attrs) -> StoreResult<StoredResource> {
    read_one(conn, id, with_groups, Some(written))
}

/// One page of users matching a compiled filter, and (if `count_total`) the total.
pub fn list(
    conn: &Connection,
    filter: &super::filter_sql::SqlFilter,
    window: super::Window,
    count_total: bool,
    with_groups: bool,
    byte_budget: usize,
    positions: Option<&super::PagePositions>,
) -> StoreResult<super::Listed> {
    // Service accounts (org admins) are not provisioning targets: an IdP's import must not
    // offer them as people to match, nor Okta's test suite read one as the first user.
    let visible = "u.deleted_at IS NULL AND u.role = 'user'";
    // The `users_service_accounts` partial index counts them without a scan.
    let uncounted = Some("SELECT count(*) FROM users WHERE role = 'org_admin' AND deleted_at IS NULL");
    let source = super::ListSource { select: &SELECT_COLUMNS, from: "users", alias: "u", visible, uncounted, changes: "users:changes", map: from_row };
    let mut complete = |pk: i64, res: &mut StoredResource| -> StoreResult<usize> {
        load_plural(conn, pk, res, with_groups)?;
        Ok(super::RESOURCE_OVERHEAD_BYTES + res.attrs.iter().map(|(k, v)| k.len() + 4 + super::approx_json_bytes(v)).sum::<usize>())
    };
    let super::WindowRows { total, rows, more } = super::query_window(conn, &source, filter, window, count_total, byte_budget, positions, &mut complete)?;
    let last_pk = rows.last().map(|(pk, _)| *pk);
    let items = rows.into_iter().map(|(_, res)| res).collect();
    Ok(super::Listed { total, items, last_pk, more })
}

fn account(r: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        id: r.get(0)?,
        user_name: r.get(1)?,
        active: r.get::<_, Option<i64>>(2)? != Some(0),
        role: r.get(3)?,
        password_hash: r.get(4)?,
        license: r.get(5)?,
    })
}

/// An account by sign-in name, compared as userName uniqueness compares it.
pub fn find_account(conn: &Connection, user_name: &str) -> StoreResult<Option<AccountRecord>> {
    Ok(conn
        .prepare_cached("SELECT id, user_name, active, role, password_hash, license FROM users WHERE user_name_key = ? AND deleted_at IS NULL")?
        .query_row([crate::names::key(user_name)], account)
        .optional()?)
}

pub fn find_account_by_id(conn: &Connection, id: &str) -> StoreResult<Option<AccountRecord>> {
    Ok(conn
        .prepare_cached("SELECT id, user_name, active, role, password_hash, license FROM users WHERE id = ? AND deleted_at IS NULL")?
        .query_row([id], account)
        .optional()?)
}

pub fn set_password(conn: &Connection, id: &str, hash: &str, role: Role, now: &str) -> StoreResult<()> {
    let n = conn
        .prepare_cached("UPDATE users SET password_hash = ?, role = ?, last_modified = max(?, last_modified), version = version + 1 WHERE id = ?")?
        .execute(params![hash, role, now, id])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {id} not found")));
    }
    Ok(())
}

/// What sanitisation reads: every visible user with the email a userName must equal
/// (primary, else work, else first).
pub fn sanitize_candidates(conn: &Connection) -> StoreResult<Vec<crate::model::Candidate>> {
    let mut stmt = conn.prepare(
        "SELECT u.id, u.user_name, u.active IS NOT 0, u.auth_type,
                (SELECT e.value FROM user_emails e WHERE e.user_pk = u.pk
                 ORDER BY coalesce(e.is_primary, 0) DESC, (e.type = 'work' COLLATE NOCASE) DESC, e.position LIMIT 1)
         FROM users u WHERE u.deleted_at IS NULL ORDER BY u.pk",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(crate::model::Candidate { id: r.get(0)?, user_name: r.get(1)?, active: r.get(2)?, auth_type: r.get(3)?, email: r.get(4)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Renames a user (sanitisation); a clash with another userName is a conflict.
pub fn rename(conn: &Connection, id: &str, user_name: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET user_name = ?, user_name_key = ?, last_modified = max(?, last_modified), version = version + 1 WHERE id = ?")?
        .execute(params![user_name, crate::names::key(user_name), now, id])
        .map_err(conflict_or)?;
    Ok(())
}

/// Sets a local user's sign-in type and licence (import).
pub fn set_origin(conn: &Connection, id: &str, auth_type: AuthType, license: License) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET auth_type = ?, license = ? WHERE id = ?")?.execute(params![auth_type, license, id])?;
    Ok(())
}

/// Sets `active` (operator activate/deactivate).
pub fn set_active(conn: &Connection, id: &str, active: bool, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET active = ?, last_modified = max(?, last_modified), version = version + 1 WHERE id = ? AND deleted_at IS NULL")?
        .execute(params![active, now, id])?;
    Ok(())
}

/// One line of `scimd user list`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UserSummary {
    pub id: String,
    pub username: String,
    pub active: bool,
    pub license: License,
    pub auth_type: AuthType,
    pub managed_by: ManagedBy,
    pub role: Role,
    pub deleted: bool,
}

/// Every user, deleted ones included (the operator sees everything).
pub fn summaries(conn: &Connection) -> StoreResult<Vec<UserSummary>> {
    let mut stmt = conn.prepare(
        "SELECT id, user_name, active IS NOT 0, license, auth_type, managed_by, role, deleted_at IS NOT NULL FROM users ORDER BY user_name",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(UserSummary {
                id: r.get(0)?,
                username: r.get(1)?,
                active: r.get(2)?,
                license: r.get(3)?,
                auth_type: r.get(4)?,
                managed_by: r.get(5)?,
                role: r.get(6)?,
                deleted: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A stored name whose key is not the one `crate::names::key` computes: a row the v5
/// migration kept apart from an earlier row of the same name (or a key from a different
/// normalisation). `same_as` is the row that holds the name's key, if any.
#[derive(Clone, Debug)]
pub struct NameClash {
    pub table: &'static str,
    pub id: String,
    pub name: String,
    pub same_as: Option<(String, String)>,
}

/// Every `NameClash` among users and groups (`scimd check`); reads each row once.
pub fn name_clashes(conn: &Connection) -> StoreResult<Vec<NameClash>> {
    let mut out = Vec::new();
    for (table, name_column, key_column) in [("users", "user_name", "user_name_key"), ("groups", "display_name", "display_name_key")] {
        let mut stmt = conn.prepare(&format!("SELECT id, {name_column}, {key_column} FROM {table} ORDER BY pk"))?;
        let mut rows = stmt.query([])?;
        let mut odd = Vec::new();
        while let Some(r) = rows.next()? {
            let (id, name, stored): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if crate::names::key(&name) != stored {
                odd.push((id, name));
            }
        }
        let mut holder = conn.prepare(&format!("SELECT id, {name_column} FROM {table} WHERE {key_column} = ?"))?;
        for (id, name) in odd {
            let same_as = holder.query_row([crate::names::key(&name)], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            out.push(NameClash { table, id, name, same_as });
        }
    }
    Ok(out)
}
