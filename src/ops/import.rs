//! `scimd import`: existing application users and org-level groups from CSV or JSON.
//! Imported users are local (managed by the application) until the IdP adopts them.
//! Idempotent: a row equal to what is stored is skipped; IdP-managed users are never
//! overwritten. The whole file is validated first and applied in one transaction.

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{AuthType, GroupScope, License, ManagedBy, MembershipSource, Role};
use crate::scim::resource::Attrs;
use crate::store::events::{self, Action};
use crate::store::{groups, users, StoreResult};

pub const HEADER: [&str; 8] = ["username", "email", "given_name", "family_name", "active", "auth_type", "license", "groups"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRow {
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
    pub auth_type: AuthType,
    pub license: License,
    pub groups: Vec<String>,
}

/// A row as the file spells it: `validate` trims, checks and types it into an `ImportRow`.
struct RawRow {
    username: String,
    email: String,
    given_name: String,
    family_name: String,
    active: bool,
    auth_type: String,
    license: String,
    groups: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub username: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// RFC 4180 CSV, strictly: quoted fields, doubled quotes, CRLF or LF, newlines inside quotes,
/// an optional UTF-8 BOM, blank lines skipped, every row as wide as the header. Each row comes
/// with the file line it starts on. The `csv` crate splits the records; it is lenient by design
/// (`"a"b` reads as `ab`, an unterminated quote runs to the end of the file, a stray quote in
/// an unquoted field is kept), so each record is then checked to be exactly the RFC 4180
/// encoding of the fields it gave: an import file that is not is refused, never guessed at.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let start = reader.position().byte() as usize;
        // The text is UTF-8 and rows may differ in width, so the reader itself has little
        // to refuse; its message names the line when it does.
        if !reader.read_record(&mut record).map_err(|e| format!("not valid CSV: {e}"))? {
            break;
        }
        let end = reader.position().byte() as usize;
        let raw = text.get(start..end).ok_or("the CSV reader lost its place")?;
        // Blank lines before a record are skipped by the reader but lie in its span.
        let skipped = raw.len() - raw.trim_start_matches(['\r', '\n']).len();
        let line = 1 + text.as_bytes()[..start + skipped].iter().filter(|&&b| b == b'\n').count();
        let raw = raw[skipped..].trim_end_matches(['\r', '\n']);
        if let Err(why) = strict_encoding(raw, &record) {
            return Err(format!("line {line}: not valid CSV: {why}"));
        }
        let fields: Vec<String> = record.iter().map(str::to_string).collect();
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue; // a line of spaces
        }
        if let Some((_, header)) = rows.first() {
            if fields.len() != header.len() {
                return Err(format!("line {line}: {} fields, but the header has {} (quote a value that holds a comma)", fields.len(), header.len()));
            }
        }
        rows.push((line, fields));
    }
    Ok(rows)
}

/// Whether `raw` is the fields of `record` written as RFC 4180 allows: each one either bare
/// (no quote, comma or line break in it) or in quotes with its quotes doubled.
fn strict_encoding(raw: &str, record: &csv::StringRecord) -> Result<(), &'static str> {
    let mut rest = raw;
    for (i, field) in record.iter().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(',').ok_or("text after a closing quote")?;
        }
        if rest.starts_with('"') {
            let quoted = format!("\"{}\"", field.replace('"', "\"\""));
            rest = rest.strip_prefix(quoted.as_str()).ok_or("a quote that is not doubled, text after a closing quote, or a quote never closed")?;
        } else if field.contains('"') {
            return Err("a quote inside a field that does not start with one");
        } else {
            rest = rest.strip_prefix(field).ok_or("a field the reader could not delimit")?;
        }
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err("text after a closing quote")
    }
}

/// `at` names the place in the file for messages: "line 5" in a CSV file, "row 2" in a JSON array.
fn parse_bool(v: &str, at: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("{at}: active must be true or false, not {other:?}")),
    }
}

/// One of a closed set of values (`auth_type`, `license`), or an error naming the row,
/// the column and every value it may take (`line 3: license must be creator, creator_float
/// or none, not "gold"`).
fn parse_value<T: std::str::FromStr + std::fmt::Display>(text: &str, column: &str, all: &[T], at: &str) -> Result<T, String> {
    text.parse().map_err(|_| {
        let names: Vec<String> = all.iter().map(T::to_string).collect();
        let allowed = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        format!("{at}: {column} must be {allowed}, not {text:?}")
    })
}

fn validate(row: RawRow, at: &str) -> Result<ImportRow, String> {
    let username = row.username.trim().to_string();
    if username.is_empty() {
        return Err(format!("{at}: username is empty"));
    }
    let auth_type = parse_value(&row.auth_type, "auth_type", AuthType::ALL, at)?;
    let license = parse_value(&row.license, "license", License::ALL, at)?;
    let groups: Vec<String> = row.groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()).map(str::to_string).collect();
    // The characters SCIM refuses in names are refused here too (see crate::names).
    for name in std::iter::once(&username).chain(groups.iter()) {
        if let Some(c) = crate::names::forbidden_char(name) {
            return Err(format!("{at}: {name:?} contains {}, a control or invisible formatting character", crate::names::describe(c)));
        }
    }
    Ok(ImportRow {
        username,
        email: row.email.trim().to_string(),
        given_name: row.given_name,
        family_name: row.family_name,
        active: row.active,
        auth_type,
        license,
        groups,
    })
}

/// Parses a CSV file with the documented header (columns in any order).
pub fn rows_from_csv(text: &str) -> Result<Vec<ImportRow>, String> {
    let mut rows = parse_csv(text)?.into_iter();
    let header: Vec<String> = rows.next().ok_or("the file is empty")?.1.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).ok_or_else(|| format!("the header lacks the column {name:?} (expected {})", HEADER.join(",")));
    let idx: Vec<usize> = HEADER.iter().map(|h| col(h)).collect::<Result<_, _>>()?;
    rows.map(|(line, r)| {
            let at = format!("line {line}");
            let get = |k: usize| r.get(idx[k]).cloned().unwrap_or_default();
            let row = RawRow {
                username: get(0),
                email: get(1),
                given_name: get(2),
                family_name: get(3),
                active: parse_bool(&get(4), &at)?,
                auth_type: get(5).trim().to_ascii_lowercase(),
                license: get(6).trim().to_ascii_lowercase(),
                groups: get(7).split(';').map(str::to_string).collect(),
            };
            validate(row, &at)
        })
        .collect()
}

/// Parses a JSON array of objects with the same keys (`groups` a list or `;`-separated).
pub fn rows_from_json(text: &str) -> Result<Vec<ImportRow>, String> {
    let items: Vec<Value> = serde_json::from_str(text).map_err(|e| format!("not a JSON array of objects: {e}"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("row {}", i + 1);
            let s = |k: &str| match v.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let active = match v.get("active") {
                Some(Value::Bool(b)) => *b,
                _ => parse_bool(&s("active"), &at)?,
            };
            let groups = match v.get("groups") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => s("groups").split(';').map(str::to_string).collect(),
            };
            let row = RawRow {
                username: s("username"),
                email: s("email"),
                given_name: s("given_name"),
                family_name: s("family_name"),
                active,
                auth_type: s("auth_type").to_ascii_lowercase(),
                license: s("license").to_ascii_lowercase(),
                groups,
            };
            validate(row, &at)
        })
        .collect()
}

fn doc_of(row: &ImportRow) -> Attrs {
    let mut doc = Attrs::new();
    doc.insert("userName".into(), Value::String(row.username.clone()));
    doc.insert("active".into(), Value::Bool(row.active));
    if !row.email.is_empty() {
        doc.insert("emails".into(), json!([{"value": row.email, "type": "work", "primary": true}]));
    }
    let mut name = serde_json::Map::new();
    if !row.given_name.is_empty() {
        name.insert("givenName".into(), Value::String(row.given_name.clone()));
    }
    if !row.family_name.is_empty() {
        name.insert("familyName".into(), Value::String(row.family_name.clone()));
    }
    if !name.is_empty() {
        doc.insert("name".into(), Value::Object(name));
    }
    doc
}

/// Applies validated rows in the caller's transaction; `progress` hears how many are done.
pub fn apply(conn: &crate::store::Db<'_>, rows: &[ImportRow], now: &str, progress: &dyn Fn(usize)) -> StoreResult<ImportReport> {
    const ACTOR: &str = "import";
    let mut report = ImportReport::default();
    for (done, row) in rows.iter().enumerate() {
        progress(done);
        let doc = doc_of(row);
        // Whether this row created or updated its user (was `report.created.contains`, a
        // scan of every row before it: quadratic in the file).
        let mut listed = false;
        let id = match users::find_by_user_name(conn, &row.username)? {
            Some((_, true, _)) => {
                report.skipped.push(Skipped { username: row.username.clone(), reason: "soft-deleted; restore it through SCIM".into() });
                continue;
            }
            Some((_, false, ManagedBy::Idp)) => {
                report.skipped.push(Skipped { username: row.username.clone(), reason: "managed by the IdP".into() });
                continue;
            }
            Some((id, false, _)) => {
                let old = users::get(conn, &id, false)?;
                let origin = users::origin_of(conn, &id)?;
                let mut current = old.attrs.clone();
                current.remove(crate::scim::schema::SCIMD_SCHEMA);
                let same = current == doc && origin.license == row.license && origin.auth_type == row.auth_type;
                if !same {
                    users::replace(conn, &id, &doc, now)?;
                    users::set_origin(conn, &id, row.auth_type, row.license)?;
                    events::record(conn, now, ACTOR, Action::Update, "User", &id, &json!({"before": current, "after": doc, "license": row.license}))?;
                    report.updated.push(row.username.clone());
                    listed = true;
                }
                id
            }
            None => {
                let origin = users::UserOrigin { role: Role::User, password_hash: None, license: row.license, auth_type: row.auth_type, managed_by: ManagedBy::Local };
                let id = users::insert(conn, &doc, &origin, now)?;
                events::record(conn, now, ACTOR, Action::Create, "User", &id, &json!({"after": doc, "license": row.license}))?;
                report.created.push(row.username.clone());
                listed = true;
                id
            }
        };
        let mut joined_any = false;
        for name in &row.groups {
            let group = match groups::state_by_name(conn, name)? {
                Some(g) => g,
                None => {
                    let mut gdoc = Attrs::new();
                    gdoc.insert("displayName".into(), Value::String(name.clone()));
                    let (_, gid) = groups::insert(conn, &gdoc, GroupScope::Org, ManagedBy::Local, false, now)?;
                    events::record(conn, now, ACTOR, Action::Create, "Group", &gid, &json!({"after": gdoc}))?;
                    groups::state(conn, &gid)?
                }
            };
            let (user_pk, _) = groups::member_pk(conn, &id)?;
            if groups::add_member(conn, group.pk, user_pk, MembershipSource::Local)? {
                joined_any = true;
                events::record(conn, now, ACTOR, Action::Create, "Membership", &format!("{}:{id}", group.id), &json!({"group": group.id, "member": id}))?;
            }
        }
        if joined_any && !listed {
            report.updated.push(row.username.clone());
            listed = true;
        }
        if !listed {
            report.skipped.push(Skipped { username: row.username.clone(), reason: "unchanged".into() });
        }
    }
    progress(rows.len());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (file, the fields of each row or the start of the error).
    fn check(input: &str, expect: Result<&[&[&str]], &str>) {
        let got = parse_csv(input).map(|rows| rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>());
        match (got, expect) {
            (Ok(rows), Ok(want)) => assert_eq!(rows, want, "{input:?}"),
            (Err(e), Err(want)) => assert!(e.starts_with(want), "{input:?}: {e}"),
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn csv_parsing() {
        check("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\nz,\n", Ok(&[&["a", "b"], &["x, y", "say \"hi\""], &["z", ""]]));
        check("\u{feff}a,b\nc,d", Ok(&[&["a", "b"], &["c", "d"]]));
        check("a,b\n\"two\nlines\",\"\"\n", Ok(&[&["a", "b"], &["two\nlines", ""]]));
        check("a,b\r\n\"x\r\ny\",z\r\n", Ok(&[&["a", "b"], &["x\r\ny", "z"]]));
        check("a\n   \nb\n", Ok(&[&["a"], &["b"]]));
        check("\"open", Err("line 1: not valid CSV"));
        check("a,b\nc,\"open\nmore", Err("line 2: not valid CSV"));
        // The hand-written parser read these as "ab", "a\"b" and a row of two.
        check("a,b\n\"a\"b,c\n", Err("line 2: not valid CSV"));
        check("a,b\na\"b,c\n", Err("line 2: not valid CSV"));
        check("a,b\n\"a\" ,c\n", Err("line 2: not valid CSV"));
        check("a,b,c\nx,y\n", Err("line 2: 2 fields, but the header has 3"));
        check("a,b\n\"multi\nline\",x\n\nx,y,z\n", Err("line 5: 3 fields"));
    }

    #[test]
    fn csv_errors_name_the_file_line() {
        let csv = "username,email,given_name,family_name,active,auth_type,license,groups\n\
                   ann,ann@x.com,\"Ann\nMarie\",A,true,basic,creator,\n\
                   \n\
                   bo,bo@x.com,Bo,B,maybe,basic,none,\n";
        assert!(rows_from_csv(csv).unwrap_err().starts_with("line 5: active"), "{:?}", rows_from_csv(csv));
        // An unquoted comma in the last column used to drop the second group silently.
        let csv = "username,email,given_name,family_name,active,auth_type,license,groups\nann,a,A,A,true,basic,none,Sales,Ops\n";
        assert!(rows_from_csv(csv).unwrap_err().starts_with("line 2: 9 fields, but the header has 8"));
    }

    #[test]
    fn rows_and_errors() {
        let csv = "username,email,given_name,family_name,active,auth_type,license,groups\nann,ann@x.com,Ann,A,true,basic,creator,Sales;Ops\n";
        let rows = rows_from_csv(csv).unwrap();
        assert_eq!(rows[0].groups, ["Sales", "Ops"]);
        assert!(rows_from_csv("username,email\nx,y\n").unwrap_err().contains("given_name"));
        let bad = "username,email,given_name,family_name,active,auth_type,license,groups\nann,a,A,A,maybe,basic,none,\n";
        assert!(rows_from_csv(bad).unwrap_err().contains("line 2"));
        let json = r#"[{"username":"bo","email":"bo@x.com","given_name":"B","family_name":"O","active":false,"auth_type":"idp","license":"none","groups":["G"]}]"#;
        assert_eq!(rows_from_json(json).unwrap()[0].groups, ["G"]);
        assert_eq!(rows[0].auth_type, AuthType::Basic);
        assert_eq!(rows[0].license, License::Creator);
        assert_eq!(
            rows_from_json(r#"[{"username":"x","active":true,"auth_type":"ldap","license":"none"}]"#).unwrap_err(),
            "row 1: auth_type must be basic or idp, not \"ldap\""
        );
        let gold = "username,email,given_name,family_name,active,auth_type,license,groups\nann,a,A,A,true,IDP,Gold,\n";
        assert_eq!(rows_from_csv(gold).unwrap_err(), "line 2: license must be creator, creator_float or none, not \"gold\"");
        let hidden = r#"[{"username":"a\u200bnn","active":true,"auth_type":"idp","license":"none"}]"#;
        assert!(rows_from_json(hidden).unwrap_err().contains("U+200B"));
        let hidden = r#"[{"username":"ann","active":true,"auth_type":"idp","license":"none","groups":["Sales\u202e"]}]"#;
        assert!(rows_from_json(hidden).unwrap_err().contains("U+202E"));
    }
}
