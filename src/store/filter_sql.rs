//! Compiles the model's `Predicate` (a filter scim has resolved against its catalogue and
//! type-checked) into a parameterised SQL WHERE fragment over a whitelist of columns.
//! Values are always bound, never spliced. Users are aliased `u`, groups `g`.
//!
//! An attribute we keep no column for is `Unsupported`, which scim reports as
//! `invalidFilter` (RFC 7644 §3.4.2.2: "the specified attribute and filter comparison
//! combination is not supported").

use rusqlite::types::Value as SqlValue;

use super::users::{self, ColKind, USER_COLUMNS, VALUE_ATTRS};
use crate::model::{AttrRef, AttrType, CompareOp, Operand, Predicate, ResourceKind, SortKey};

/// The store keeps no column for this attribute, so it cannot filter or sort on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported(pub AttrRef);

/// A compiled list query: WHERE fragment, its bound values, and the sort order.
pub struct SqlFilter {
    pub clause: String,
    pub params: Vec<SqlValue>,
    /// An ORDER BY expression list; `None` is creation order.
    pub order: Option<String>,
    /// Matches at most one row through a unique index (`userName eq "…"`, `id eq "…"`, a
    /// group's `displayName eq "…"`, or such a term ANDed with anything): the query is
    /// bounded whatever the tenant's size.
    pub at_most_one: bool,
}

impl SqlFilter {
    /// The clause of a list without a filter.
    pub const MATCH_ALL: &'static str = "1";

    pub fn all() -> SqlFilter {
        SqlFilter { clause: Self::MATCH_ALL.into(), params: Vec::new(), order: None, at_most_one: false }
    }

    /// The ORDER BY list, always ending in the primary key so pages are stable.
    pub fn order_by(&self, alias: &str) -> String {
        match &self.order {
            Some(o) => format!("{o}, {alias}.pk"),
            None => format!("{alias}.pk"),
        }
    }
}

pub fn compile(kind: ResourceKind, p: &Predicate) -> Result<SqlFilter, Unsupported> {
    let mut c = Compiler { kind, params: Vec::new(), aliases: 0 };
    let clause = c.expr(p, None)?;
    Ok(SqlFilter { clause, params: c.params, order: None, at_most_one: at_most_one(kind, p) })
}

fn at_most_one(kind: ResourceKind, p: &Predicate) -> bool {
    match p {
        Predicate::Compare(a, CompareOp::Eq, Operand::Text(_)) => {
            let unique = match kind {
                ResourceKind::User => ["id", "userName"].as_slice(),
                ResourceKind::Group => ["id", "displayName"].as_slice(),
            };
            a.extension.is_none() && a.sub.is_none() && unique.contains(&a.attr)
        }
        Predicate::And(a, b) => at_most_one(kind, a) || at_most_one(kind, b),
        _ => false,
    }
}

/// The ORDER BY expression for `sortBy` (RFC 7644 §3.4.2.3). A multi-valued attribute
/// sorts by its primary (else first) value. Unassigned values sort last either way.
pub fn sort_order(kind: ResourceKind, key: &SortKey) -> Result<String, Unsupported> {
    let a = &key.attr;
    let bad = || Unsupported(*a);
    let c = Compiler { kind, params: Vec::new(), aliases: 0 };
    let expr = if a.multi && a.extension.is_some_and(crate::model::is_custom_key) {
        // Values of a custom multi-valued attribute sort by the first.
        let from = custom_values("s", a.extension.ok_or_else(bad)?, a.attr).ok_or_else(bad)?;
        format!("(SELECT s.value FROM {from} ORDER BY s.key LIMIT 1)")
    } else if a.multi {
        if !matches!(a.attr, "emails" | "addresses") && !VALUE_ATTRS.contains(&a.attr) {
            return Err(bad());
        }
        let (from, column) = c.plural_from(a.attr, "s").ok_or_else(bad)?;
        let col = column("s", a.sub.ok_or_else(bad)?).ok_or_else(bad)?;
        format!("(SELECT {col} FROM {from} ORDER BY coalesce(s.is_primary, 0) DESC, s.position LIMIT 1)")
    } else {
        c.singular_target(a).ok_or_else(bad)?.sql
    };
    let collate = if !a.case_exact && a.ty == AttrType::String { " COLLATE NOCASE" } else { "" };
    let direction = if key.descending { "DESC" } else { "ASC" };
    Ok(format!("{expr}{collate} {direction} NULLS LAST"))
}

/// A comparable SQL expression and how to compare it.
struct Target {
    sql: String,
    ty: AttrType,
    case_exact: bool,
    /// For a unique name (userName, a group's displayName): its key column, which `eq`
    /// and `ne` compare, so a filter finds the user that uniqueness says is the same.
    key: Option<&'static str>,
}

/// Maps a sub-attribute name to its column expression under a table alias.
type SubColumn = fn(&str, &str) -> Option<String>;

/// Inside `attr[...]`: the alias of the value's row and its sub-attribute columns.
struct Scope<'a> {
    alias: &'a str,
    column: SubColumn,
}

struct Compiler {
    kind: ResourceKind,
    params: Vec<SqlValue>,
    aliases: usize,
}

impl Compiler {
    fn expr(&mut self, p: &Predicate, scope: Option<&Scope<'_>>) -> Result<String, Unsupported> {
        Ok(match p {
            Predicate::And(a, b) => format!("({} AND {})", self.expr(a, scope)?, self.expr(b, scope)?),
            Predicate::Or(a, b) => format!("({} OR {})", self.expr(a, scope)?, self.expr(b, scope)?),
            Predicate::Not(a) => format!("(NOT {})", self.expr(a, scope)?),
            Predicate::Present(a) => self.leaf(a, scope, None)?,
            Predicate::Compare(a, op, value) => self.leaf(a, scope, Some((*op, value)))?,
            Predicate::Any(a, inner) => {
                let alias = self.alias();
                let (from, column) = self.plural_from(a.attr, &alias).ok_or(Unsupported(*a))?;
                let inner = self.expr(inner, Some(&Scope { alias: &alias, column }))?;
                format!("EXISTS (SELECT 1 FROM {from} AND {inner})")
            }
        })
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("x{}", self.aliases)
    }

    /// `FROM … WHERE <join to the outer row>` for a multi-valued attribute, and the
    /// column expression (under `alias`) for each of its sub-attributes.
    fn plural_from(&self, attr: &str, alias: &str) -> Option<(String, SubColumn)> {
        let a = alias;
        match (self.kind, attr) {
            (ResourceKind::User, "emails") => Some((
                format!("user_emails {a} WHERE {a}.user_pk = u.pk"),
                |a, sub| plural_column(a, sub),
            )),
            (ResourceKind::User, "addresses") => Some((
                format!("user_addresses {a} WHERE {a}.user_pk = u.pk"),
                |a, sub| users::address_column(sub).map(|col| format!("{a}.{col}")),
            )),
            (ResourceKind::User, "groups") => Some((
                format!("memberships {a}m JOIN groups {a} ON {a}.pk = {a}m.group_pk WHERE {a}m.user_pk = u.pk"),
                |a, sub| match sub {
                    "value" => Some(format!("{a}.id")),
                    "display" => Some(format!("{a}.display_name")),
                    _ => None,
                },
            )),
            (ResourceKind::User, name) if VALUE_ATTRS.contains(&name) => Some((
                // The attribute name comes from the catalogue, never from the request.
                format!("user_values {a} WHERE {a}.user_pk = u.pk AND {a}.attr = '{name}'"),
                |a, sub| plural_column(a, sub),
            )),
            (ResourceKind::Group, "members") => Some((
                format!("memberships {a}m JOIN users {a} ON {a}.pk = {a}m.user_pk WHERE {a}m.group_pk = g.pk"),
                |a, sub| (sub == "value").then(|| format!("{a}.id")),
            )),
            _ => None,
        }
    }

    /// A comparison or presence test on one attribute; inside `attr[...]`, on one of its
    /// sub-attributes.
    fn leaf(&mut self, a: &AttrRef, scope: Option<&Scope<'_>>, cmp: Option<(CompareOp, &Operand)>) -> Result<String, Unsupported> {
        let bad = || Unsupported(*a);
        if let Some(scope) = scope {
            let sql = (scope.column)(scope.alias, a.sub.ok_or_else(bad)?).ok_or_else(bad)?;
            let target = Target { sql, ty: a.ty, case_exact: a.case_exact, key: None };
            return Ok(self.compare(&target, cmp));
        }
        if a.multi && a.extension.is_some_and(crate::model::is_custom_key) {
            let alias = self.alias();
            let from = custom_values(&alias, a.extension.ok_or_else(bad)?, a.attr).ok_or_else(bad)?;
            let target = Target { sql: format!("{alias}.value"), ty: a.ty, case_exact: a.case_exact, key: None };
            let test = self.compare(&target, cmp);
            return Ok(format!("EXISTS (SELECT 1 FROM {from} AND {test})"));
        }
        if a.multi {
            let alias = self.alias();
            let (from, column) = self.plural_from(a.attr, &alias).ok_or_else(bad)?;
            let sql = column(&alias, a.sub.ok_or_else(bad)?).ok_or_else(bad)?;
            let target = Target { sql, ty: a.ty, case_exact: a.case_exact, key: None };
            let test = self.compare(&target, cmp);
            return Ok(format!("EXISTS (SELECT 1 FROM {from} AND {test})"));
        }
        let target = self.singular_target(a).ok_or_else(bad)?;
        Ok(self.compare(&target, cmp))
    }

    fn singular_target(&self, a: &AttrRef) -> Option<Target> {
        let t = |sql: String, ty: AttrType, case_exact: bool| Some(Target { sql, ty, case_exact, key: None });
        let alias = match self.kind {
            ResourceKind::User => "u",
            ResourceKind::Group => "g",
        };
        match (a.extension, a.attr, a.sub) {
            (None, "id", None) => return t(format!("{alias}.id"), AttrType::String, true),
            (None, "meta", Some("created")) => return t(format!("{alias}.created"), AttrType::DateTime, true),
            (None, "meta", Some("lastModified")) => return t(format!("{alias}.last_modified"), AttrType::DateTime, true),
            (None, "externalId", None) => return t(format!("{alias}.external_id"), AttrType::String, true),
            _ => {}
        }
        match self.kind {
            ResourceKind::Group => match (a.extension, a.attr, a.sub) {
                (None, "displayName", None) => Some(Target { sql: "g.display_name".into(), ty: AttrType::String, case_exact: false, key: Some("g.display_name_key") }),
                _ => None,
            },
            ResourceKind::User if a.extension.is_some_and(crate::model::is_custom_key) && a.sub.is_none() => {
                let sql = custom_value(Some("u"), a.extension?, a.attr)?;
                Some(Target { sql, ty: a.ty, case_exact: a.case_exact, key: None })
            }
            ResourceKind::User => {
                let column = USER_COLUMNS.iter().find(|c| c.ext == a.extension && c.attr == a.attr && c.sub == a.sub)?;
                let ty = if column.kind == ColKind::Bool { AttrType::Boolean } else { a.ty };
                let key = (column.column == "user_name").then_some("u.user_name_key");
                Some(Target { sql: format!("u.{}", column.column), ty, case_exact: a.case_exact, key })
            }
        }
    }

    fn bind(&mut self, v: SqlValue) -> &'static str {
        self.params.push(v);
        "?"
    }

    /// The SQL test; scim has already refused every operator and operand that does not
    /// suit the attribute's type.
    fn compare(&mut self, target: &Target, cmp: Option<(CompareOp, &Operand)>) -> String {
        let col = &target.sql;
        let Some((op, operand)) = cmp else {
            return match target.ty {
                AttrType::Boolean => format!("{col} IS NOT NULL"),
                _ => format!("({col} IS NOT NULL AND {col} <> '')"),
            };
        };
        let text = match operand {
            Operand::Null if op == CompareOp::Ne => return format!("{col} IS NOT NULL"),
            Operand::Null => return format!("{col} IS NULL"),
            Operand::Bool(b) => {
                let p = self.bind(SqlValue::Integer(i64::from(*b)));
                return if op == CompareOp::Ne { format!("({col} IS NULL OR {col} <> {p})") } else { format!("{col} = {p}") };
            }
            Operand::Integer(n) => {
                let p = self.bind(SqlValue::Integer(*n));
                // Text left by an earlier declaration would sort above every number.
                return match op {
                    CompareOp::Eq | CompareOp::Ne => ordered(col, op, p, ""),
                    _ => format!("(typeof({col}) = 'integer' AND {})", ordered(col, op, p, "")),
                };
            }
            Operand::Text(text) => text,
        };
        let collate = if target.case_exact || target.ty != AttrType::String { "" } else { " COLLATE NOCASE" };
        if op.is_substring() {
            if target.case_exact {
                let p = self.bind(SqlValue::Text(text.clone()));
                let q = if op == CompareOp::Co { p } else { self.bind(SqlValue::Text(text.clone())) };
                return match op {
                    CompareOp::Co => format!("instr({col}, {p}) > 0"),
                    CompareOp::Sw => format!("substr({col}, 1, length({p})) = {q}"),
                    _ => format!("substr({col}, -length({p})) = {q}"),
                };
            }
            let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = match op {
                CompareOp::Co => format!("%{escaped}%"),
                CompareOp::Sw => format!("{escaped}%"),
                _ => format!("%{escaped}"),
            };
            let p = self.bind(SqlValue::Text(pattern));
            return format!("{col} LIKE {p} ESCAPE '\\'");
        }
        if let (Some(key), CompareOp::Eq | CompareOp::Ne) = (target.key, op) {
            let p = self.bind(SqlValue::Text(crate::names::key(text)));
            return if op == CompareOp::Eq { format!("{key} = {p}") } else { format!("{key} <> {p}") };
        }
        let p = self.bind(SqlValue::Text(text.clone()));
        ordered(col, op, p, collate)
    }
}

/// `col op ?` for the equality and ordering operators (`ne` also holds for no value).
fn ordered(col: &str, op: CompareOp, p: &str, collate: &str) -> String {
    match op {
        CompareOp::Eq => format!("{col} = {p}{collate}"),
        CompareOp::Ne => format!("({col} IS NULL OR {col} <> {p}{collate})"),
        CompareOp::Gt => format!("{col} > {p}{collate}"),
        CompareOp::Ge => format!("{col} >= {p}{collate}"),
        CompareOp::Lt => format!("{col} < {p}{collate}"),
        _ => format!("{col} <= {p}{collate}"),
    }
}

/// The SQL text of a custom attribute's value in `users.custom` (alias `u`, or none for
/// an index), as `json_extract` reads it: the same text in filters and in the unique
/// index, so the planner uses the index. The names come from tenant.toml, checked there
/// (letters, digits, `:._-`); anything else is refused here too, never spliced.
pub fn custom_value(alias: Option<&str>, urn: &str, attr: &str) -> Option<String> {
    let safe = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '_'));
    if !safe(urn) || !safe(attr) || attr.contains([':', '.']) {
        return None;
    }
    let column = match alias {
        Some(a) => format!("{a}.custom"),
        None => "custom".into(),
    };
    Some(format!("json_extract({column}, '$.\"{urn}\".\"{attr}\"')"))
}

/// `FROM json_each(…)` over the values of a multi-valued custom attribute.
fn custom_values(alias: &str, urn: &str, attr: &str) -> Option<String> {
    let value = custom_value(Some("u"), urn, attr)?;
    let path = value.strip_prefix("json_extract(u.custom, ")?.strip_suffix(')')?;
    Some(format!("json_each(u.custom, {path}) {alias} WHERE 1"))
}

fn plural_column(alias: &str, sub: &str) -> Option<String> {
    let col = match sub {
        "value" => "value",
        "type" => "type",
        "display" => "display",
        "primary" => "is_primary",
        _ => return None,
    };
    Some(format!("{alias}.{col}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-valued string attribute, as scim resolves it (the store trusts the names).
    fn attr(name: &'static str) -> AttrRef {
        let case_exact = matches!(name, "id" | "externalId");
        AttrRef { extension: None, attr: name, sub: None, ty: AttrType::String, case_exact, multi: false }
    }
    fn eq(name: &'static str, v: &str) -> Predicate {
        Predicate::Compare(attr(name), CompareOp::Eq, Operand::Text(v.into()))
    }
    fn email_value() -> AttrRef {
        AttrRef { sub: Some("value"), multi: true, ..attr("emails") }
    }
    fn and(a: Predicate, b: Predicate) -> Predicate {
        Predicate::And(Box::new(a), Box::new(b))
    }

    /// Only lookups through a unique index are run inline; anything that may match many
    /// rows goes to the blocking pool.
    #[test]
    fn at_most_one_only_for_unique_lookups() {
        let one = |kind, p: Predicate| compile(kind, &p).unwrap().at_most_one;
        let active = Predicate::Compare(AttrRef { ty: AttrType::Boolean, ..attr("active") }, CompareOp::Eq, Operand::Bool(true));
        assert!(one(ResourceKind::User, eq("userName", "a@b.c")));
        assert!(one(ResourceKind::User, and(eq("id", "x"), active)));
        assert!(one(ResourceKind::Group, eq("displayName", "G")));
        assert!(!one(ResourceKind::User, eq("externalId", "x")));
        assert!(!one(ResourceKind::User, eq("displayName", "A")));
        assert!(!one(ResourceKind::User, Predicate::Compare(attr("userName"), CompareOp::Sw, Operand::Text("a".into()))));
        assert!(!one(ResourceKind::User, Predicate::Or(Box::new(eq("userName", "a")), Box::new(eq("userName", "b")))));
        assert!(!one(ResourceKind::User, Predicate::Not(Box::new(eq("userName", "a")))));
        let any = Predicate::Any(AttrRef { multi: true, ..attr("emails") }, Box::new(Predicate::Compare(email_value(), CompareOp::Eq, Operand::Text("a@b.c".into()))));
        assert!(!one(ResourceKind::User, any));
        assert!(!SqlFilter::all().at_most_one);
    }

    /// `eq` on the attributes IdPs look users and groups up by must use an index, so a
    /// lookup among a million rows costs what it costs among a hundred.
    #[test]
    fn equality_lookups_use_indexes() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::migrate::migrate(&mut conn).unwrap();
        let email = Predicate::Compare(email_value(), CompareOp::Eq, Operand::Text("a@b.c".into()));
        let any_email = Predicate::Any(AttrRef { multi: true, ..attr("emails") }, Box::new(email.clone()));
        let cases = [
            (ResourceKind::User, eq("userName", "a@b.c"), "users_user_name_key"),
            (ResourceKind::User, eq("externalId", "x"), "users_external_id"),
            (ResourceKind::User, email, "user_emails_value"),
            (ResourceKind::User, any_email, "user_emails_value"),
            (ResourceKind::User, eq("displayName", "A"), "users_display_name"),
            (ResourceKind::User, eq("id", "x"), "sqlite_autoindex_users_1"),
            (ResourceKind::Group, eq("displayName", "G"), "groups_display_name_key"),
            (ResourceKind::Group, eq("externalId", "x"), "groups_external_id"),
            (ResourceKind::Group, eq("id", "x"), "sqlite_autoindex_groups_1"),
        ];
        for (kind, p, index) in cases {
            let f = compile(kind, &p).unwrap();
            let table = if kind == ResourceKind::User { "users u" } else { "groups g" };
            let sql = format!("EXPLAIN QUERY PLAN SELECT 1 FROM {table} WHERE {}", f.clause);
            let mut stmt = conn.prepare(&sql).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(&f.params), |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join(" | ");
            assert!(plan.contains(index), "{p:?}: expected {index} in plan: {plan}");
        }
    }

    /// `eq` on a unique custom attribute uses its expression index (the filter's
    /// `json_extract` text is the index's), case-insensitive or not.
    #[test]
    fn custom_unique_attributes_use_their_index() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::migrate::migrate(&mut conn).unwrap();
        let urn = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";
        let unique = |attr: &str, case_exact| super::super::custom::UniqueAttr { urn: urn.into(), attr: attr.into(), case_exact };
        super::super::custom::sync_unique_indexes(&conn, &[unique("badge", false), unique("code", true)]).unwrap();
        for (name, case_exact) in [("badge", false), ("code", true)] {
            let a = AttrRef { extension: Some(urn), case_exact, ..attr(if case_exact { "code" } else { "badge" }) };
            let f = compile(ResourceKind::User, &Predicate::Compare(a, CompareOp::Eq, Operand::Text("B-1".into()))).unwrap();
            let sql = format!("EXPLAIN QUERY PLAN SELECT 1 FROM users u WHERE u.deleted_at IS NULL AND {}", f.clause);
            let plan: Vec<String> = conn.prepare(&sql).unwrap().query_map(rusqlite::params_from_iter(&f.params), |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();
            assert!(plan.join(" | ").contains(&format!("users_x_{name}_")), "{name}: {plan:?}");
        }
        // Dropped when no longer declared.
        super::super::custom::sync_unique_indexes(&conn, &[unique("code", true)]).unwrap();
        let left: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE 'users_x_%'", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 1);
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let f = compile(ResourceKind::User, &eq("userName", "x' OR '1'='1")).unwrap();
        assert!(!f.clause.contains("OR '1'"), "{}", f.clause);
        assert_eq!(f.params.len(), 1);
    }

    /// An attribute without a column is refused, naming the attribute, not silently dropped.
    #[test]
    fn attributes_without_columns_are_unsupported() {
        let nick = AttrRef { sub: Some("display"), ..attr("members") };
        let p = Predicate::Present(nick);
        assert_eq!(compile(ResourceKind::User, &p).err(), Some(Unsupported(nick)));
        let key = SortKey { attr: AttrRef { sub: Some("display"), multi: true, ..attr("groups") }, descending: false };
        assert!(sort_order(ResourceKind::User, &key).is_err());
    }
}
