//! The domain enums of `crate::model` as SQLite sees them: every variant binds and reads
//! back as the text `schema.sql` allows, the variant sets equal its CHECKs, and an unknown
//! stored value is an error. Here rather than in `model`, since only the store has SQL.

use crate::model::*;
use std::collections::BTreeSet;

const SCHEMA: &str = include_str!("../../schema.sql");

/// The values `CHECK (<column> IN (...))` allows in `CREATE TABLE <table>`.
fn check_values(table: &str, column: &str) -> BTreeSet<String> {
    let start = SCHEMA
        .find(&format!("CREATE TABLE {table} ("))
        .or_else(|| SCHEMA.find(&format!("CREATE TABLE IF NOT EXISTS {table} (")))
        .unwrap_or_else(|| panic!("no table {table} in schema.sql"));
    let body = &SCHEMA[start..];
    let body = &body[..body.find(");").expect("table end")];
    let needle = format!("CHECK ({column} IN (");
    let at = body.find(&needle).unwrap_or_else(|| panic!("no CHECK on {table}.{column}"));
    let list = &body[at + needle.len()..];
    let list = &list[..list.find(')').expect("list end")];
    list.split(',').map(|v| v.trim().trim_matches('\'').to_owned()).collect()
}

fn round_trip<T>(all: &[T], table: &str, column: &str)
where
    T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr + rusqlite::types::ToSql + rusqlite::types::FromSql,
    T: AsStr,
{
    let conn = rusqlite::Connection::open_in_memory().expect("memory db");
    let mut seen = BTreeSet::new();
    for &v in all {
        assert_eq!(v.text().parse::<T>().ok(), Some(v), "{v:?} through FromStr");
        let back: T = conn.query_row("SELECT ?1", [v], |r| r.get(0)).expect("through SQLite");
        assert_eq!(back, v);
        let text: String = conn.query_row("SELECT ?1", [v], |r| r.get(0)).expect("as text");
        assert_eq!(text, v.text());
        seen.insert(text);
    }
    assert_eq!(seen, check_values(table, column), "{table}.{column} vs schema.sql CHECK");
    assert!("bogus".parse::<T>().is_err());
    let bad: rusqlite::Result<T> = conn.query_row("SELECT 'bogus'", [], |r| r.get(0));
    assert!(bad.is_err(), "an unknown stored value is an error");
}

trait AsStr {
    fn text(self) -> &'static str;
}
macro_rules! as_str_impl {
    ($($t:ty),+) => { $(impl AsStr for $t { fn text(self) -> &'static str { self.as_str() } })+ };
}
as_str_impl!(License, Role, AuthType, ManagedBy, GroupScope, MembershipSource);

#[test]
fn every_enum_matches_its_schema_check_and_round_trips() {
    round_trip(License::ALL, "users", "license");
    round_trip(Role::ALL, "users", "role");
    round_trip(AuthType::ALL, "users", "auth_type");
    round_trip(ManagedBy::ALL, "users", "managed_by");
    round_trip(GroupScope::ALL, "groups", "scope");
    round_trip(ManagedBy::ALL, "groups", "managed_by");
    round_trip(MembershipSource::ALL, "memberships", "source");
}

#[test]
fn serde_uses_the_stored_spelling() {
    assert_eq!(serde_json::to_string(&License::CreatorFloat).ok().as_deref(), Some("\"creator_float\""));
    assert_eq!(serde_json::from_str::<Role>("\"org_admin\"").ok(), Some(Role::OrgAdmin));
    assert!(serde_json::from_str::<Role>("\"admin\"").is_err());
}
