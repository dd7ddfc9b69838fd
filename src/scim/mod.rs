//! The SCIM layer: resources, discovery, filters, PATCH and the service functions the
//! router calls. It knows nothing of HTTP or SQL: requests arrive as parsed JSON and
//! query parameters, and persistence goes through `store::Store`.

pub mod access;
pub mod activity;
pub mod dialect;
pub mod discovery;
pub mod filter;
pub mod groups;
pub mod mapping;
pub mod patch;
pub mod query;
pub mod render;
pub mod resource;
pub mod schema;
pub mod users;

use std::fmt;

use base64::Engine;

use crate::store::{Store, StoreError, Window};

/// Largest page a list request may ask for; advertised as `filter.maxResults`.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when the client does not send `count`.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// About how many bytes of resources one list page holds. Past it a page ends early
/// (RFC 7644 §3.4.2.4 lets it hold fewer than `count`): 1,000 users of 32 KiB each would
/// otherwise be read, rendered and serialised at once, several copies of 32 MB per request.
pub const PAGE_BYTE_BUDGET: usize = 4 * 1024 * 1024;

/// Every failure the SCIM layer reports. Each kind maps to one status and, where
/// RFC 7644 §3.12 defines one, one `scimType`; the mapping lives in `http::response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimErrorKind {
    InvalidFilter,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidSyntax,
    Uniqueness,
    /// A conflict with the resource's state that is not a uniqueness clash (409, no scimType).
    Conflict,
    Mutability,
    /// The caller may not do this to this resource (403, no scimType).
    Forbidden,
    TooMany,
    NotFound,
    PreconditionFailed,
    NotImplemented,
    /// RFC 9865: a cursor we did not issue (or cannot use with this query).
    InvalidCursor,
    /// A failure of ours (storage, I/O). The detail is logged, never shown to the client.
    Internal,
    /// The tenant cannot do this now for a cause that is the operator's (a full disk, a
    /// damaged database): 503 with `Retry-After`; the client sees the fault's own words.
    Unavailable(crate::model::Fault),
}

#[derive(Debug)]
pub struct ScimError {
    pub kind: ScimErrorKind,
    pub detail: String,
}

impl ScimError {
    pub fn new(kind: ScimErrorKind, detail: impl Into<String>) -> ScimError {
        ScimError { kind, detail: detail.into() }
    }
    pub fn not_found(detail: impl Into<String>) -> ScimError {
        ScimError::new(ScimErrorKind::NotFound, detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::new(ScimErrorKind::InvalidValue, detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::new(ScimErrorKind::InvalidSyntax, detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        ScimError::new(ScimErrorKind::InvalidFilter, detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> ScimError {
        ScimError::new(ScimErrorKind::InvalidPath, detail)
    }
    pub fn no_target(detail: impl Into<String>) -> ScimError {
        ScimError::new(ScimErrorKind::NoTarget, detail)
    }
}

/// Refuses a unique name (userName, a group's displayName) holding a character that
/// `crate::names` forbids: a control or invisible formatting character, which would make
/// it look like another name without being it.
pub(crate) fn check_name_chars(attr: &str, name: &str) -> Result<(), ScimError> {
    match crate::names::forbidden_char(name) {
        Some(c) => Err(ScimError::invalid_value(format!(
            "{attr} contains {}, a control or invisible formatting character; names may not contain them",
            crate::names::describe(c)
        ))),
        None => Ok(()),
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> ScimError {
        ScimError::of_store(&e)
    }
}

impl ScimError {
    /// What a store failure means to a SCIM client: the one translation, used by the
    /// service functions' `?` and by the response mapping (which logs the internal ones).
    pub fn of_store(e: &StoreError) -> ScimError {
        match e {
            StoreError::NotFound(what) => ScimError::not_found(what.clone()),
            StoreError::Conflict(what) => ScimError::new(ScimErrorKind::Uniqueness, what.clone()),
            StoreError::Invalid(what) => ScimError::invalid_value(what.clone()),
            // RFC 7644 §3.12 tooMany: more than the server is willing to process.
            StoreError::OverBudget(budget) => ScimError::new(
                ScimErrorKind::TooMany,
                format!("the query needs more than the {} ms the server spends on one; narrow the filter or ask for fewer resources", budget.as_millis()),
            ),
            other => match other.fault() {
                Some(fault) => ScimError::new(ScimErrorKind::Unavailable(fault), fault.client_detail()),
                None => ScimError::new(ScimErrorKind::Internal, other.to_string()),
            },
        }
    }
}

/// Who is acting: recorded in the activity log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
    /// How the caller proved it: an API client acts for `user_id` but may do less.
    pub via: Credential,
}

/// The credential a request was authenticated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic with the org admin's own password.
    Password,
    /// HTTP Basic with an API client made for the account (`scimd apiclient add`).
    ApiClient,
    /// A bearer token `apikey_…`.
    Bearer,
}

/// What the caller may ask of a list or search: already parsed, not yet validated
/// against the catalogue.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    /// RFC 9865 cursor; `Some("")` asks for the first page.
    pub cursor: Option<String>,
    /// The tenant's dialect, which the filter is read under.
    pub dialect: dialect::Dialect,
}

impl ListParams {
    /// RFC 7644 §3.4.2.4: startIndex < 1 means 1; a negative count means 0.
    pub fn page(&self) -> (u64, u32) {
        let start = self.start_index.unwrap_or(1).max(1) as u64;
        let count = self.count.unwrap_or(i64::from(DEFAULT_PAGE_SIZE)).clamp(0, i64::from(MAX_PAGE_SIZE));
        (start, count as u32)
    }

    /// Parses `filter` and `sortBy` and compiles them for the store; no filter matches everything.
    pub fn compile_filter(&self, cat: schema::Catalogue) -> Result<crate::store::filter_sql::SqlFilter, ScimError> {
        let kind = cat.kind;
        use crate::store::filter_sql;
        let mut compiled = match &self.filter {
            Some(text) if !text.trim().is_empty() => {
                let predicate = query::resolve_as(cat, &filter::parse_as(text, self.dialect)?, self.dialect)?;
                filter_sql::compile(kind, &predicate).map_err(|filter_sql::Unsupported(a)| {
                    ScimError::invalid_filter(format!("filtering on '{}' is not supported", query::path_text(&a)))
                })?
            }
            _ => filter_sql::SqlFilter::all(),
        };
        let descending = match self.sort_order.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("ascending") => false,
            Some("descending") => true,
            Some(other) => return Err(ScimError::invalid_value(format!("sortOrder must be ascending or descending, not '{other}'"))),
        };
        if let Some(path) = self.sort_by.as_deref().filter(|p| !p.trim().is_empty()) {
            let key = query::sort_key(cat, path.trim(), descending)?;
            let order = filter_sql::sort_order(kind, &key)
                .map_err(|_| ScimError::invalid_value(format!("cannot sort by '{}'", path.trim())))?;
            compiled.order = Some(order);
        }
        Ok(compiled)
    }
}

/// How a list request pages, decided from its parameters.
#[derive(Clone, Copy, Debug)]
pub struct ListPlan {
    pub window: Window,
    pub count_total: bool,
    /// `Some(startIndex)` for index paging; `None` for cursor paging.
    pub start_index: Option<u64>,
    sorted: bool,
}

impl ListParams {
    pub fn plan(&self, sorted: bool) -> Result<ListPlan, ScimError> {
        let (start, count) = self.page();
        let Some(cursor) = &self.cursor else {
            let window = Window::Offset { offset: start - 1, limit: count };
            return Ok(ListPlan { window, count_total: true, start_index: Some(start), sorted });
        };
        if self.start_index.is_some() {
            return Err(ScimError::invalid_value("use either startIndex or cursor, not both"));
        }
        let bad = || ScimError::new(ScimErrorKind::InvalidCursor, "the cursor is not valid for this query");
        let window = if cursor.is_empty() {
            if sorted { Window::Offset { offset: 0, limit: count } } else { Window::AfterKey { pk: 0, limit: count } }
        } else {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            match (text.split_at_checked(1), sorted) {
                (Some(("k", n)), false) => Window::AfterKey { pk: n.parse().map_err(|_| bad())?, limit: count },
                (Some(("o", n)), true) => Window::Offset { offset: n.parse().map_err(|_| bad())?, limit: count },
                _ => return Err(bad()),
            }
        };
        // A cursor walk over a million users must not count them on every page.
        Ok(ListPlan { window, count_total: false, start_index: None, sorted })
    }
}

fn encode_cursor(text: String) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A page of results, ready to render as a ListResponse.
pub struct ListOutcome {
    pub total: Option<u64>,
    pub start_index: Option<u64>,
    pub items: Vec<resource::StoredResource>,
    pub next_cursor: Option<String>,
}

impl ListOutcome {
    pub fn to_json(&self, resources: Vec<serde_json::Value>) -> serde_json::Value {
        let mut out = serde_json::json!({ "schemas": [schema::LIST_RESPONSE] });
        if let Some(total) = self.total {
            out["totalResults"] = total.into();
        }
        if let Some(start) = self.start_index {
            out["startIndex"] = start.into();
        }
        out["itemsPerPage"] = resources.len().into();
        if let Some(next) = &self.next_cursor {
            out["nextCursor"] = next.clone().into();
        }
        out["Resources"] = serde_json::Value::Array(resources);
        out
    }
}

/// Lists users or groups. `with_computed` loads user.groups / group.members.
pub async fn list(store: &Store, cat: schema::Catalogue, params: &ListParams, with_computed: bool) -> Result<ListOutcome, ScimError> {
    let kind = cat.kind;
    let sql = params.compile_filter(cat)?;
    let plan = params.plan(sql.order.is_some())?;
    // A lookup by a unique attribute is bounded, so it runs inline like a GET by id; a
    // group's member list is not, whatever the filter.
    let bounded = sql.at_most_one && !(with_computed && kind == schema::ResourceKind::Group);
    let positions = store.positions();
    let job = move |conn: &crate::store::Db<'_>| match kind {
        schema::ResourceKind::User => crate::store::users::list(conn, &sql, plan.window, plan.count_total, with_computed, PAGE_BYTE_BUDGET, Some(&positions)),
        schema::ResourceKind::Group => crate::store::groups::list(conn, &sql, plan.window, plan.count_total, with_computed, PAGE_BYTE_BUDGET, Some(&positions)),
    };
    let listed = if bounded { store.read(job).await? } else { store.scan(job).await? };
    let next_cursor = match (plan.start_index, listed.more) {
        (None, true) => Some(encode_cursor(match plan.window {
            Window::Offset { offset, .. } if plan.sorted => format!("o{}", offset + listed.items.len() as u64),
            _ => format!("k{}", listed.last_pk.unwrap_or(0)),
        })),
        _ => None,
    };
    Ok(ListOutcome { total: listed.total, start_index: plan.start_index, items: listed.items, next_cursor })
}

/// An `If-Match` precondition. SCIM's ETags are weak (RFC 7644 §3.14), so tags are
/// compared on their opaque part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Tags(Vec<String>),
}

fn opaque(tag: &str) -> &str {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    t.trim_matches('"')
}

impl IfMatch {
    pub fn parse(header: &str) -> IfMatch {
        if header.trim() == "*" {
            return IfMatch::Any;
        }
        IfMatch::Tags(header.split(',').map(|t| opaque(t).to_string()).filter(|t| !t.is_empty()).collect())
    }

    pub fn matches(&self, etag: &str) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => tags.iter().any(|t| t == opaque(etag)),
        }
    }

    /// Fails with 412 unless the stored resource is the version the client named.
    pub fn check(this: Option<&IfMatch>, current: &resource::StoredResource) -> Result<(), ScimError> {
        match this {
            Some(m) if !m.matches(&current.etag()) => Err(ScimError::new(
                ScimErrorKind::PreconditionFailed,
                format!("the resource is at version {}, not the one If-Match named", current.etag()),
            )),
            _ => Ok(()),
        }
    }
}
