//! Resolves a parsed filter and `sortBy` against the attribute catalogue into the model's
//! `Predicate` and `SortKey`, checking every literal against its attribute's type. Every
//! rule about what a filter may say is here, so the store only maps attributes to columns
//! and its one refusal is "no column for this attribute".

use super::filter::{FilterExpr, Literal};
use super::schema::{self, AttrDef, AttrType, Catalogue, ResolvedPath};
use super::dialect::{self, Dialect, Leniency};
use super::ScimError;
use crate::clock::UtcMillis;
use crate::model::{AttrRef, CompareOp, Operand, Predicate, SortKey};

fn unknown(path: &str) -> ScimError {
    ScimError::invalid_filter(format!("filtering on '{path}' is not supported"))
}

/// The canonical text of an attribute path, for messages about it.
pub fn path_text(a: &AttrRef) -> String {
    let mut text = match a.extension {
        Some(urn) => format!("{urn}:{}", a.attr),
        None => a.attr.to_owned(),
    };
    if let Some(sub) = a.sub {
        text.push('.');
        text.push_str(sub);
    }
    text
}

/// A filter of `kind` resources, resolved.
pub fn resolve(cat: Catalogue, expr: &FilterExpr) -> Result<Predicate, ScimError> {
    resolve_as(cat, expr, Dialect::Idp)
}

/// `resolve` under a tenant's dialect (the strict one takes booleans only as `true`/`false`).
pub fn resolve_as(cat: Catalogue, expr: &FilterExpr, dialect: Dialect) -> Result<Predicate, ScimError> {
    Resolver { cat, dialect }.expr(expr, None)
}

/// `sortBy` resolved (RFC 7644 §3.4.2.3); a multi-valued attribute sorts by its `value`.
pub fn sort_key(cat: Catalogue, path: &str, descending: bool) -> Result<SortKey, ScimError> {
    let bad = || ScimError::invalid_value(format!("cannot sort by '{path}'"));
    let rp = schema::resolve_path(cat, path).ok_or_else(bad)?;
    let rp = with_value_sub(rp).ok_or_else(bad)?;
    Ok(SortKey { attr: rp.to_ref(), descending })
}

/// `emails` alone means `emails.value` (RFC 7644 §3.4.2.2), in filters and in sorting; a
/// multi-valued attribute of simple values (a custom one) means its values.
fn with_value_sub(rp: ResolvedPath) -> Option<ResolvedPath> {
    if rp.attr.multi && rp.sub.is_none() && rp.attr.ty == AttrType::Complex {
        let sub = rp.attr.sub_attr("value")?;
        return Some(ResolvedPath { sub: Some(sub), ..rp });
    }
    Some(rp)
}

struct Resolver {
    cat: Catalogue,
    dialect: Dialect,
}

impl Resolver {
    /// `scope` is the multi-valued attribute whose `[...]` we are inside, if any.
    fn expr(&self, e: &FilterExpr, scope: Option<&ResolvedPath>) -> Result<Predicate, ScimError> {
        Ok(match e {
            FilterExpr::And(a, b) => Predicate::And(Box::new(self.expr(a, scope)?), Box::new(self.expr(b, scope)?)),
            FilterExpr::Or(a, b) => Predicate::Or(Box::new(self.expr(a, scope)?), Box::new(self.expr(b, scope)?)),
            FilterExpr::Not(a) => Predicate::Not(Box::new(self.expr(a, scope)?)),
            FilterExpr::Present { path } => Predicate::Present(self.leaf(path, scope)?),
            FilterExpr::Compare { path, op, value } => {
                let attr = self.leaf(path, scope)?;
                Predicate::Compare(attr, *op, operand(&attr, *op, value, self.dialect)?)
            }
            FilterExpr::ValuePath { path, filter } => {
                if scope.is_some() {
                    return Err(ScimError::invalid_filter("value filters cannot nest"));
                }
                let rp = schema::resolve_path(self.cat, path).ok_or_else(|| unknown(path))?;
                if !rp.attr.multi || rp.sub.is_some() {
                    return Err(ScimError::invalid_filter(format!("'{path}' is not a multi-valued attribute")));
                }
                let inner = self.expr(filter, Some(&rp))?;
                Predicate::Any(rp.to_ref(), Box::new(inner))
            }
        })
    }

    /// One attribute path; inside `attr[...]` it names a sub-attribute of `attr`.
    fn leaf(&self, path: &str, scope: Option<&ResolvedPath>) -> Result<AttrRef, ScimError> {
        let rp = match scope {
            Some(parent) => {
                let parent: &'static AttrDef = parent.attr;
                let sub = parent.sub_attr(path).ok_or_else(|| unknown(path))?;
                ResolvedPath { extension: None, attr: parent, sub: Some(sub) }
            }
            None => {
                let rp = schema::resolve_path(self.cat, path).ok_or_else(|| unknown(path))?;
                with_value_sub(rp).ok_or_else(|| unknown(path))?
            }
        };
        Ok(rp.to_ref())
    }
}

/// The literal as the attribute's type reads it.
fn operand(attr: &AttrRef, op: CompareOp, literal: &Literal, dialect: Dialect) -> Result<Operand, ScimError> {
    if let (AttrType::Boolean, Literal::Str(s)) = (attr.ty, literal) {
        if !dialect::allows(dialect, Leniency::StringBooleans) {
            let detail = format!("a boolean compares with true or false, not the string {s:?}");
            return Err(ScimError::invalid_filter(dialect::refused(Leniency::StringBooleans, detail).detail));
        }
    }
    if *literal == Literal::Null {
        return match op {
            CompareOp::Eq | CompareOp::Ne => Ok(Operand::Null),
            _ => Err(ScimError::invalid_filter("null can only be compared with eq or ne")),
        };
    }
    let value = match (attr.ty, literal) {
        (AttrType::Boolean, Literal::Bool(b)) => Operand::Bool(*b),
        (AttrType::Boolean, Literal::Str(s)) if s.eq_ignore_ascii_case("true") => Operand::Bool(true),
        (AttrType::Boolean, Literal::Str(s)) if s.eq_ignore_ascii_case("false") => Operand::Bool(false),
        (AttrType::Boolean, _) => return Err(ScimError::invalid_filter("a boolean attribute needs true or false")),
        (AttrType::DateTime, Literal::Str(s)) => {
            let t = UtcMillis::parse_rfc3339(s)
                .ok_or_else(|| ScimError::invalid_filter(format!("'{s}' is not an RFC 3339 date-time")))?;
            Operand::Text(t.to_rfc3339())
        }
        (AttrType::DateTime, _) => return Err(ScimError::invalid_filter("a dateTime attribute needs a date-time string")),
        (AttrType::Integer, Literal::Num(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Operand::Integer(*n as i64),
        (AttrType::Integer, _) => return Err(ScimError::invalid_filter("an integer attribute compares with a whole number")),
        (_, Literal::Str(s)) => Operand::Text(s.clone()),
        (_, Literal::Num(n)) => Operand::Text(n.to_string()),
        (_, Literal::Bool(b)) => Operand::Text(b.to_string()),
        (_, Literal::Null) => Operand::Null,
    };
    if attr.ty == AttrType::Boolean && (op.is_ordering() || op.is_substring()) {
        return Err(ScimError::invalid_filter("booleans support only eq, ne and pr"));
    }
    if attr.ty == AttrType::Integer && op.is_substring() {
        return Err(ScimError::invalid_filter("integers support eq, ne, gt, ge, lt, le and pr"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::{filter, ScimErrorKind};
    use crate::model::ResourceKind;

    fn resolved(kind: ResourceKind, text: &str) -> Result<Predicate, ScimError> {
        resolve(Catalogue::plain(kind), &filter::parse(text)?)
    }

    /// Names resolve case-insensitively to their canonical spelling, and a multi-valued
    /// attribute alone means its `value`.
    #[test]
    fn paths_resolve_to_canonical_names() {
        let Ok(Predicate::Compare(a, CompareOp::Eq, Operand::Text(v))) = resolved(ResourceKind::User, r#"USERNAME eq "x""#) else {
            panic!("not a comparison")
        };
        assert_eq!((a.attr, a.sub, v.as_str()), ("userName", None, "x"));
        let Ok(Predicate::Compare(a, CompareOp::Co, _)) = resolved(ResourceKind::User, r#"emails co "x""#) else { panic!() };
        assert_eq!((a.attr, a.sub, a.multi), ("emails", Some("value"), true));
        let Ok(Predicate::Any(a, inner)) = resolved(ResourceKind::User, r#"emails[TYPE eq "work"]"#) else { panic!() };
        assert_eq!(a.attr, "emails");
        assert!(matches!(*inner, Predicate::Compare(AttrRef { sub: Some("type"), .. }, _, _)));
    }

    /// Each type rule is a clear invalidFilter before any SQL exists.
    #[test]
    fn literals_are_checked_against_their_type() {
        let refused = [
            r#"active eq "maybe""#,
            r#"active gt true"#,
            r#"active co "t""#,
            r#"meta.created gt "yesterday""#,
            r#"meta.created gt 5"#,
            r#"userName gt null"#,
            r#"emails[type[value eq "x"]]"#,
            r#"userName[value eq "x"]"#,
            r#"nosuch eq "x""#,
        ];
        for text in refused {
            let e = resolved(ResourceKind::User, text).map(|_| ()).expect_err(text);
            assert_eq!(e.kind, ScimErrorKind::InvalidFilter, "{text}");
        }
        let Ok(Predicate::Compare(_, _, Operand::Bool(true))) = resolved(ResourceKind::User, r#"active eq "TRUE""#) else { panic!() };
        let Ok(Predicate::Compare(_, _, Operand::Text(t))) = resolved(ResourceKind::User, r#"meta.created gt "2026-01-02T03:04:05+01:00""#)
        else {
            panic!()
        };
        assert_eq!(t, "2026-01-02T02:04:05.000Z");
        assert!(matches!(resolved(ResourceKind::User, "userName eq null"), Ok(Predicate::Compare(_, CompareOp::Eq, Operand::Null))));
    }

    #[test]
    fn sort_keys_resolve_or_are_invalid_value() {
        assert_eq!(sort_key(Catalogue::plain(ResourceKind::User), "emails", true).map(|k| (k.attr.sub, k.descending)).ok(), Some((Some("value"), true)));
        let e = sort_key(Catalogue::plain(ResourceKind::User), "nosuch", false).expect_err("unknown");
        assert_eq!(e.kind, ScimErrorKind::InvalidValue);
    }
}
