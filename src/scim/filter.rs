//! RFC 7644 §3.4.2.2 filters: a lexer and a recursive-descent parser producing a typed
//! `FilterExpr`. No SQL here: `scim::query` resolves the tree against the catalogue into
//! the model's `Predicate`, and `store::filter_sql` compiles that, binding every value.
//!
//! Precedence: `not` > `and` > `or`; parentheses group; `attr[...]` is a value-path
//! filter whose inner attribute names are relative to `attr`. Attribute names are kept
//! as written and resolved against the catalogue by whoever consumes the tree.
//!
//! Limits (documented in the README): a filter is at most `MAX_FILTER_LEN` bytes, nests
//! at most `MAX_DEPTH` levels and has at most `MAX_CLAUSES` comparisons, so hostile input
//! is a 400, never a stack overflow or a runaway query.

use super::ScimError;
use super::dialect::{self, Dialect, Leniency};

pub const MAX_FILTER_LEN: usize = 4096;
pub const MAX_DEPTH: usize = 32;
pub const MAX_CLAUSES: usize = 64;

pub use crate::model::CompareOp;

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Num(f64),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FilterExpr {
    Compare { path: String, op: CompareOp, value: Literal },
    Present { path: String },
    And(Box<FilterExpr>, Box<FilterExpr>),
    Or(Box<FilterExpr>, Box<FilterExpr>),
    Not(Box<FilterExpr>),
    /// `path[filter]`: some element of multi-valued `path` matches `filter`.
    ValuePath { path: String, filter: Box<FilterExpr> },
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn lex(text: &str) -> Result<Vec<Token>, ScimError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
            }
            '"' => {
                // A JSON string literal: find its end honouring escapes, then let
                // serde_json decode the escapes.
                chars.next();
                let mut escaped = false;
                let mut end = None;
                for (i, ch) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if ch == '\\' {
                        escaped = true;
                    } else if ch == '"' {
                        end = Some(i);
                        break;
                    }
                }
                let end = end.ok_or_else(|| ScimError::invalid_filter("unterminated string literal"))?;
                let decoded: String = serde_json::from_str(&text[start..=end])
                    .map_err(|_| ScimError::invalid_filter("invalid string literal"))?;
                tokens.push(Token::Str(decoded));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(i, ch)) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | '[' | ']' | '"') {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                tokens.push(Token::Word(text[start..end].to_string()));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    dialect: Dialect,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    clauses: usize,
}

/// Parses a filter as the idp dialect reads it. Errors are `invalidFilter`.
pub fn parse(text: &str) -> Result<FilterExpr, ScimError> {
    parse_as(text, Dialect::Idp)
}

/// Parses a filter under a tenant's dialect (see `dialect::Leniency`).
pub fn parse_as(text: &str, dialect: Dialect) -> Result<FilterExpr, ScimError> {
    if text.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_filter(format!("filter longer than {MAX_FILTER_LEN} bytes")));
    }
    let mut parser = Parser { dialect, tokens: lex(text)?, pos: 0, depth: 0, clauses: 0 };
    if parser.tokens.is_empty() {
        return Err(ScimError::invalid_filter("empty filter"));
    }
    let expr = parser.or_expr()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some(Token::Close) => Err(ScimError::invalid_filter("unbalanced parentheses")),
        Some(t) => Err(ScimError::invalid_filter(format!("unexpected {}", describe(t)))),
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("'{w}'"),
        Token::Str(_) => "string literal".into(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::OpenBracket => "'['".into(),
        Token::CloseBracket => "']'".into(),
    }
}

fn is_keyword(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ScimError::invalid_filter(format!("filter nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<FilterExpr, ScimError> {
        let mut left = self.and_expr()?;
        while is_keyword(self.peek(), "or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = FilterExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<FilterExpr, ScimError> {
        let mut left = self.unary()?;
        while is_keyword(self.peek(), "and") {
            self.pos += 1;
            let right = self.unary()?;
            left = FilterExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<FilterExpr, ScimError> {
        if is_keyword(self.peek(), "not") && self.tokens.get(self.pos + 1) == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.group()?;
            return Ok(FilterExpr::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            return self.group();
        }
        self.attr_expr()
    }

    fn group(&mut self) -> Result<FilterExpr, ScimError> {
        self.enter()?;
        self.pos += 1; // '('
        let inner = self.or_expr()?;
        if self.next() != Some(Token::Close) {
            return Err(ScimError::invalid_filter("unbalanced parentheses"));
        }
        self.depth -= 1;
        Ok(inner)
    }

    fn attr_expr(&mut self) -> Result<FilterExpr, ScimError> {
        let path = match self.next() {
            Some(Token::Word(w)) if is_attr_path(&w) => w,
            Some(t) => return Err(ScimError::invalid_filter(format!("expected an attribute, found {}", describe(&t)))),
            None => return Err(ScimError::invalid_filter("filter ends where an attribute was expected")),
        };
        if self.peek() == Some(&Token::OpenBracket) {
            self.enter()?;
            self.pos += 1;
            let inner = self.or_expr()?;
            if self.next() != Some(Token::CloseBracket) {
                return Err(ScimError::invalid_filter("unbalanced brackets in value filter"));
            }
            self.depth -= 1;
            // Entra's form `emails[type eq "work"].value eq "x"`: a comparison on a
            // sub-attribute of the selected values, i.e. `emails[type eq "work" and value eq "x"]`.
            if let Some(Token::Word(w)) = self.peek() {
                if let Some(sub) = w.strip_prefix('.').filter(|s| is_attr_path(s)).map(str::to_string) {
                    if !dialect::allows(self.dialect, Leniency::SubAttributeAfterFilter) {
                        return Err(dialect::refused(Leniency::SubAttributeAfterFilter, format!("write {path}[… and {sub} …] instead of {path}[…].{sub}")));
                    }
                    self.pos += 1;
                    let test = self.comparison(sub)?;
                    let combined = FilterExpr::And(Box::new(inner), Box::new(test));
                    return Ok(FilterExpr::ValuePath { path, filter: Box::new(combined) });
                }
            }
            return Ok(FilterExpr::ValuePath { path, filter: Box::new(inner) });
        }
        self.comparison(path)
    }

    /// `op value` or `pr` after an attribute path.
    fn comparison(&mut self, path: String) -> Result<FilterExpr, ScimError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(ScimError::invalid_filter(format!("filter has more than {MAX_CLAUSES} comparisons")));
        }
        let op_word = match self.next() {
            Some(Token::Word(w)) => w,
            _ => return Err(ScimError::invalid_filter(format!("expected an operator after '{path}'"))),
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(FilterExpr::Present { path });
        }
        let op = CompareOp::parse(&op_word)
            .ok_or_else(|| ScimError::invalid_filter(format!("unknown operator '{op_word}'")))?;
        let value = match self.next() {
            Some(Token::Str(s)) => Literal::Str(s),
            Some(Token::Word(w)) => parse_literal_word(&w)?,
            _ => return Err(ScimError::invalid_filter(format!("expected a value after '{op_word}'"))),
        };
        Ok(FilterExpr::Compare { path, op, value })
    }
}

fn parse_literal_word(w: &str) -> Result<Literal, ScimError> {
    match w {
        "true" => Ok(Literal::Bool(true)),
        "false" => Ok(Literal::Bool(false)),
        "null" => Ok(Literal::Null),
        _ if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
        _ if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
        _ => {
            let n: f64 = w.parse().map_err(|_| ScimError::invalid_filter(format!("invalid value '{w}'")))?;
            if n.is_finite() && w.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) {
                Ok(Literal::Num(n))
            } else {
                Err(ScimError::invalid_filter(format!("invalid value '{w}'")))
            }
        }
    }
}

/// ATTRNAME / URN-prefixed names / dotted sub-attributes: letters, digits, `-_$:.`.
pub fn is_attr_path(w: &str) -> bool {
    !w.is_empty()
        && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && w.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | ':' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let got = match parse(input) {
            Ok(e) => show(&e),
            Err(e) => format!("error: {}", e.detail),
        };
        assert_eq!(got, expect, "input: {input}");
    }

    fn show(e: &FilterExpr) -> String {
        match e {
            FilterExpr::Compare { path, op, value } => format!("({path} {op:?} {value:?})"),
            FilterExpr::Present { path } => format!("({path} pr)"),
            FilterExpr::And(a, b) => format!("(and {} {})", show(a), show(b)),
            FilterExpr::Or(a, b) => format!("(or {} {})", show(a), show(b)),
            FilterExpr::Not(a) => format!("(not {})", show(a)),
            FilterExpr::ValuePath { path, filter } => format!("({path}[{}])", show(filter)),
        }
    }

    #[test]
    fn grammar() {
        check(r#"userName eq "bjensen""#, r#"(userName Eq Str("bjensen"))"#);
        check(r#"userName EQ "a\"b""#, r#"(userName Eq Str("a\"b"))"#);
        check("title pr", "(title pr)");
        check("active eq true", "(active Eq Bool(true))");
        check("x gt 5", "(x Gt Num(5.0))");
        check("x eq null", "(x Eq Null)");
        check(
            r#"a eq "1" or b eq "2" and c eq "3""#,
            r#"(or (a Eq Str("1")) (and (b Eq Str("2")) (c Eq Str("3"))))"#,
        );
        check(
            r#"(a eq "1" or b eq "2") and not (c pr)"#,
            r#"(and (or (a Eq Str("1")) (b Eq Str("2"))) (not (c pr)))"#,
        );
        check(
            r#"emails[type eq "work" and value co "@example.com"]"#,
            r#"(emails[(and (type Eq Str("work")) (value Co Str("@example.com")))])"#,
        );
        check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "7""#,
            r#"(urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber Eq Str("7"))"#,
        );
        check(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, r#"(meta.lastModified Gt Str("2011-05-13T04:42:34Z"))"#);
        // Entra: a sub-attribute comparison after a value filter.
        check(
            r#"emails[type eq "work"].value eq "a@b.c""#,
            r#"(emails[(and (type Eq Str("work")) (value Eq Str("a@b.c")))])"#,
        );
    }

    #[test]
    fn errors() {
        check(r#"userName xx "a""#, "error: unknown operator 'xx'");
        check(r#"(userName eq "a""#, "error: unbalanced parentheses");
        check(r#"userName eq "a")"#, "error: unbalanced parentheses");
        check(r#"userName eq "a"#, "error: unterminated string literal");
        check("userName eq bogus", "error: invalid value 'bogus'");
        check("userName eq", "error: expected a value after 'eq'");
        check("", "error: empty filter");
        check(r#"emails[type eq "work""#, "error: unbalanced brackets in value filter");
        check(r#"userName eq "a" and"#, "error: filter ends where an attribute was expected");
    }

    #[test]
    fn limits() {
        let deep = format!("{}a pr{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        check(&deep, "error: filter nested deeper than 32");
        let many = vec!["a pr"; MAX_CLAUSES + 1].join(" or ");
        check(&many, "error: filter has more than 64 comparisons");
        let long = format!(r#"a eq "{}""#, "x".repeat(MAX_FILTER_LEN));
        check(&long, "error: filter longer than 4096 bytes");
        // Ten thousand open parentheses: rejected by length or depth, never a stack overflow.
        check(&"(".repeat(10_000), "error: filter longer than 4096 bytes");
        check(&"(".repeat(4000), "error: filter nested deeper than 32");
    }
}
