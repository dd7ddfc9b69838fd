//! Compiles a `FilterExpr` into a parameterised SQL WHERE fragment over a whitelist of
//! columns. Values are always bound, never spliced. Users are aliased `u`, groups `g`.
//!
//! An attribute the catalogue does not know, or one we do not index for filtering, is
//! `invalidFilter` (RFC 7644 §3.4.2.2: "the specified attribute and filter comparison
//! combination is not supported").

use rusqlite::types::Value as SqlValue;

use super::users::{self, ColKind, USER_COLUMNS, VALUE_ATTRS};
use crate::clock::UtcMillis;
use crate::scim::filter::{CompareOp, FilterExpr, Literal};
use crate::scim::schema::{self, AttrDef, AttrType, ResolvedPath, ResourceKind};
use crate::scim::ScimError;

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

pub fn compile(kind: ResourceKind, expr: &FilterExpr) -> Result<SqlFilter, ScimError> {
    let mut c = Compiler { kind, params: Vec::new(), aliases: 0 };
    let clause = c.expr(expr, None)?;
    Ok(SqlFilter { clause, params: c.params, order: None, at_most_one: at_most_one(kind, expr) })
}

fn at_most_one(kind: ResourceKind, expr: &FilterExpr) -> bool {
    match expr {
        FilterExpr::Compare { path, op: CompareOp::Eq, value: Literal::Str(_) } => {
            let Some(rp) = schema::resolve_path(kind, path) else { return false };
            let unique = match kind {
                ResourceKind::User => ["id", "userName"].as_slice(),
                ResourceKind::Group => ["id", "displayName"].as_slice(),
            };
            rp.extension.is_none() && rp.sub.is_none() && unique.contains(&rp.attr.name)
        }
        FilterExpr::And(a, b) => at_most_one(kind, a) || at_most_one(kind, b),
        _ => false,
    }
}

/// The ORDER BY expression for `sortBy` (RFC 7644 §3.4.2.3). A multi-valued attribute
/// sorts by its primary (else first) value. Unassigned values sort last either way.
pub fn sort_order(kind: ResourceKind, path: &str, descending: bool) -> Result<String, ScimError> {
    let bad = || ScimError::invalid_value(format!("cannot sort by '{path}'"));
    let rp = schema::resolve_path(kind, path).ok_or_else(bad)?;
    let c = Compiler { kind, params: Vec::new(), aliases: 0 };
    let (expr, ty, case_exact) = if rp.attr.multi {
        let sub = match rp.sub {
            Some(s) => s,
            None => rp.attr.sub_attr("value").ok_or_else(bad)?,
        };
        if !matches!(rp.attr.name, "emails" | "addresses") && !VALUE_ATTRS.contains(&rp.attr.name) {
            return Err(bad());
        }
        let (from, column) = c.plural_from(&rp, "s").ok_or_else(bad)?;
        let col = column("s", sub.name).ok_or_else(bad)?;
        let expr = format!("(SELECT {col} FROM {from} ORDER BY coalesce(s.is_primary, 0) DESC, s.position LIMIT 1)");
        (expr, sub.ty, sub.case_exact)
    } else {
        let t = c.singular_target(&rp).ok_or_else(bad)?;
        (t.sql, t.ty, t.case_exact)
    };
    let collate = if !case_exact && ty == AttrType::String { " COLLATE NOCASE" } else { "" };
    let direction = if descending { "DESC" } else { "ASC" };
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

/// Inside `attr[...]`: the multi-valued attribute and the alias of its row.
struct Scope<'a> {
    parent: &'static AttrDef,
    alias: &'a str,
}

struct Compiler {
    kind: ResourceKind,
    params: Vec<SqlValue>,
    aliases: usize,
}

fn unknown(path: &str) -> ScimError {
    ScimError::invalid_filter(format!("filtering on '{path}' is not supported"))
}

impl Compiler {
    fn expr(&mut self, e: &FilterExpr, scope: Option<&Scope<'_>>) -> Result<String, ScimError> {
        Ok(match e {
            FilterExpr::And(a, b) => format!("({} AND {})", self.expr(a, scope)?, self.expr(b, scope)?),
            FilterExpr::Or(a, b) => format!("({} OR {})", self.expr(a, scope)?, self.expr(b, scope)?),
            FilterExpr::Not(a) => format!("(NOT {})", self.expr(a, scope)?),
            FilterExpr::Present { path } => self.leaf(path, scope, None)?,
            FilterExpr::Compare { path, op, value } => self.leaf(path, scope, Some((*op, value)))?,
            FilterExpr::ValuePath { path, filter } => {
                if scope.is_some() {
                    return Err(ScimError::invalid_filter("value filters cannot nest"));
                }
                let rp = schema::resolve_path(self.kind, path).ok_or_else(|| unknown(path))?;
                if !rp.attr.multi || rp.sub.is_some() {
                    return Err(ScimError::invalid_filter(format!("'{path}' is not a multi-valued attribute")));
                }
                let alias = self.alias();
                let (from, _) = self.plural_from(&rp, &alias).ok_or_else(|| unknown(path))?;
                let inner = self.expr(filter, Some(&Scope { parent: rp.attr, alias: &alias }))?;
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
    fn plural_from(&self, rp: &ResolvedPath, alias: &str) -> Option<(String, SubColumn)> {
        let a = alias;
        match (self.kind, rp.attr.name) {
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

    /// A comparison or presence test on one attribute path.
    fn leaf(&mut self, path: &str, scope: Option<&Scope<'_>>, cmp: Option<(CompareOp, &Literal)>) -> Result<String, ScimError> {
        if let Some(scope) = scope {
            let sub = scope.parent.sub_attr(path).ok_or_else(|| unknown(path))?;
            let rp = ResolvedPath { extension: None, attr: scope.parent, sub: Some(sub) };
            let (_, column) = self.plural_from(&rp, scope.alias).ok_or_else(|| unknown(path))?;
            let sql = column(scope.alias, sub.name).ok_or_else(|| unknown(path))?;
            let target = Target { sql, ty: sub.ty, case_exact: sub.case_exact, key: None };
            return self.compare(&target, cmp);
        }
        let rp = schema::resolve_path(self.kind, path).ok_or_else(|| unknown(path))?;
        if rp.attr.multi {
            // `emails co "x"` means `emails.value co "x"` (RFC 7644 §3.4.2.2).
            let sub = match rp.sub {
                Some(s) => s,
                None => rp.attr.sub_attr("value").ok_or_else(|| unknown(path))?,
            };
            let alias = self.alias();
            let (from, column) = self.plural_from(&rp, &alias).ok_or_else(|| unknown(path))?;
            let sql = column(&alias, sub.name).ok_or_else(|| unknown(path))?;
            let target = Target { sql, ty: sub.ty, case_exact: sub.case_exact, key: None };
            let test = self.compare(&target, cmp)?;
            return Ok(format!("EXISTS (SELECT 1 FROM {from} AND {test})"));
        }
        let target = self.singular_target(&rp).ok_or_else(|| unknown(path))?;
        self.compare(&target, cmp)
    }

    fn singular_target(&self, rp: &ResolvedPath) -> Option<Target> {
        let t = |sql: String, ty: AttrType, case_exact: bool| Some(Target { sql, ty, case_exact, key: None });
        let alias = match self.kind {
            ResourceKind::User => "u",
            ResourceKind::Group => "g",
        };
        match (rp.attr.name, rp.sub.map(|s| s.name)) {
            ("id", None) => return t(format!("{alias}.id"), AttrType::String, true),
            ("meta", Some("created")) => return t(format!("{alias}.created"), AttrType::DateTime, true),
            ("meta", Some("lastModified")) => return t(format!("{alias}.last_modified"), AttrType::DateTime, true),
            ("externalId", None) => return t(format!("{alias}.external_id"), AttrType::String, true),
            _ => {}
        }
        match self.kind {
            ResourceKind::Group => match (rp.attr.name, rp.sub) {
                ("displayName", None) => Some(Target { sql: "g.display_name".into(), ty: AttrType::String, case_exact: false, key: Some("g.display_name_key") }),
                _ => None,
            },
            ResourceKind::User => {
                let attr = rp.sub.unwrap_or(rp.attr);
                let column = USER_COLUMNS.iter().find(|c| {
                    c.ext == rp.extension && c.attr == rp.attr.name && c.sub == rp.sub.map(|s| s.name)
                })?;
                let ty = if column.kind == ColKind::Bool { AttrType::Boolean } else { attr.ty };
                let key = (column.column == "user_name").then_some("u.user_name_key");
                Some(Target { sql: format!("u.{}", column.column), ty, case_exact: attr.case_exact, key })
            }
        }
    }

    fn bind(&mut self, v: SqlValue) -> &'static str {
        self.params.push(v);
        "?"
    }

    fn compare(&mut self, target: &Target, cmp: Option<(CompareOp, &Literal)>) -> Result<String, ScimError> {
        let col = &target.sql;
        let Some((op, literal)) = cmp else {
            return Ok(match target.ty {
                AttrType::Boolean => format!("{col} IS NOT NULL"),
                _ => format!("({col} IS NOT NULL AND {col} <> '')"),
            });
        };
        if *literal == Literal::Null {
            return match op {
                CompareOp::Eq => Ok(format!("{col} IS NULL")),
                CompareOp::Ne => Ok(format!("{col} IS NOT NULL")),
                _ => Err(ScimError::invalid_filter("null can only be compared with eq or ne")),
            };
        }
        let value = match (target.ty, literal) {
            (AttrType::Boolean, Literal::Bool(b)) => SqlValue::Integer(i64::from(*b)),
            (AttrType::Boolean, Literal::Str(s)) if s.eq_ignore_ascii_case("true") => SqlValue::Integer(1),
            (AttrType::Boolean, Literal::Str(s)) if s.eq_ignore_ascii_case("false") => SqlValue::Integer(0),
            (AttrType::Boolean, _) => return Err(ScimError::invalid_filter("a boolean attribute needs true or false")),
            (AttrType::DateTime, Literal::Str(s)) => {
                let t = UtcMillis::parse_rfc3339(s)
                    .ok_or_else(|| ScimError::invalid_filter(format!("'{s}' is not an RFC 3339 date-time")))?;
                SqlValue::Text(t.to_rfc3339())
            }
            (AttrType::DateTime, _) => return Err(ScimError::invalid_filter("a dateTime attribute needs a date-time string")),
            (_, Literal::Str(s)) => SqlValue::Text(s.clone()),
            (_, Literal::Num(n)) => SqlValue::Text(n.to_string()),
            (_, Literal::Bool(b)) => SqlValue::Text(b.to_string()),
            (_, Literal::Null) => unreachable!("handled above"),
        };
        let ordered = matches!(op, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le);
        let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
        if target.ty == AttrType::Boolean && (ordered || substring) {
            return Err(ScimError::invalid_filter("booleans support only eq, ne and pr"));
        }
        let collate = if target.case_exact || target.ty != AttrType::String { "" } else { " COLLATE NOCASE" };
        if substring {
            let SqlValue::Text(text) = value else { unreachable!("substring ops are on text") };
            if target.case_exact {
                let p = self.bind(SqlValue::Text(text.clone()));
                return Ok(match op {
                    CompareOp::Co => format!("instr({col}, {p}) > 0"),
                    CompareOp::Sw => {
                        let q = self.bind(SqlValue::Text(text));
                        format!("substr({col}, 1, length({p})) = {q}")
                    }
                    _ => {
                        let q = self.bind(SqlValue::Text(text));
                        format!("substr({col}, -length({p})) = {q}")
                    }
                });
            }
            let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = match op {
                CompareOp::Co => format!("%{escaped}%"),
                CompareOp::Sw => format!("{escaped}%"),
                _ => format!("%{escaped}"),
            };
            let p = self.bind(SqlValue::Text(pattern));
            return Ok(format!("{col} LIKE {p} ESCAPE '\\'"));
        }
        if let (Some(key), CompareOp::Eq | CompareOp::Ne, SqlValue::Text(text)) = (target.key, op, &value) {
            let p = self.bind(SqlValue::Text(crate::names::key(text)));
            return Ok(if op == CompareOp::Eq { format!("{key} = {p}") } else { format!("{key} <> {p}") });
        }
        let p = self.bind(value);
        Ok(match op {
            CompareOp::Eq => format!("{col} = {p}{collate}"),
            CompareOp::Ne => format!("({col} IS NULL OR {col} <> {p}{collate})"),
            CompareOp::Gt => format!("{col} > {p}{collate}"),
            CompareOp::Ge => format!("{col} >= {p}{collate}"),
            CompareOp::Lt => format!("{col} < {p}{collate}"),
            CompareOp::Le => format!("{col} <= {p}{collate}"),
            _ => unreachable!("substring ops handled above"),
        })
    }
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
    use crate::scim::filter;

    /// Only lookups through a unique index are run inline; anything that may match many
    /// rows goes to the blocking pool.
    #[test]
    fn at_most_one_only_for_unique_lookups() {
        let one = |kind, text: &str| compile(kind, &filter::parse(text).unwrap()).unwrap().at_most_one;
        assert!(one(ResourceKind::User, r#"userName eq "a@b.c""#));
        assert!(one(ResourceKind::User, r#"id eq "x" and active eq true"#));
        assert!(one(ResourceKind::Group, r#"displayName eq "G""#));
        assert!(!one(ResourceKind::User, r#"externalId eq "x""#));
        assert!(!one(ResourceKind::User, r#"displayName eq "A""#));
        assert!(!one(ResourceKind::User, r#"userName sw "a""#));
        assert!(!one(ResourceKind::User, r#"userName eq "a" or userName eq "b""#));
        assert!(!one(ResourceKind::User, r#"not (userName eq "a")"#));
        assert!(!one(ResourceKind::User, r#"emails[value eq "a@b.c"]"#));
        assert!(!SqlFilter::all().at_most_one);
    }

    /// `eq` on the attributes IdPs look users and groups up by must use an index, so a
    /// lookup among a million rows costs what it costs among a hundred.
    #[test]
    fn equality_lookups_use_indexes() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::migrate::migrate(&mut conn).unwrap();
        let cases = [
            (ResourceKind::User, r#"userName eq "a@b.c""#, "users_user_name_key"),
            (ResourceKind::User, r#"externalId eq "x""#, "users_external_id"),
            (ResourceKind::User, r#"emails.value eq "a@b.c""#, "user_emails_value"),
            (ResourceKind::User, r#"emails[value eq "a@b.c"]"#, "user_emails_value"),
            (ResourceKind::User, r#"displayName eq "A""#, "users_display_name"),
            (ResourceKind::User, r#"id eq "x""#, "sqlite_autoindex_users_1"),
            (ResourceKind::Group, r#"displayName eq "G""#, "groups_display_name_key"),
            (ResourceKind::Group, r#"externalId eq "x""#, "groups_external_id"),
            (ResourceKind::Group, r#"id eq "x""#, "sqlite_autoindex_groups_1"),
        ];
        for (kind, text, index) in cases {
            let f = compile(kind, &filter::parse(text).unwrap()).unwrap();
            let table = if kind == ResourceKind::User { "users u" } else { "groups g" };
            let sql = format!("EXPLAIN QUERY PLAN SELECT 1 FROM {table} WHERE {}", f.clause);
            let mut stmt = conn.prepare(&sql).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(&f.params), |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join(" | ");
            assert!(plan.contains(index), "{text}: expected {index} in plan: {plan}");
            assert!(!plan.starts_with("SCAN u") && !plan.starts_with("SCAN g") || plan.contains(index), "{text}: {plan}");
        }
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let f = compile(ResourceKind::User, &filter::parse(r#"userName eq "x' OR '1'='1""#).unwrap()).unwrap();
        assert!(!f.clause.contains("OR '1'"), "{}", f.clause);
        assert_eq!(f.params.len(), 1);
    }
}
