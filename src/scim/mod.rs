//! The SCIM layer: resources, discovery, filters, PATCH and the service functions the
//! router calls. It knows nothing of HTTP or SQL: requests arrive as parsed JSON and
//! query parameters, and persistence goes through `store::Store`.

pub mod discovery;
pub mod filter;
pub mod groups;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod users;

use std::fmt;

use crate::store::StoreError;

/// Largest page a list request may ask for; advertised as `filter.maxResults`.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when the client does not send `count`.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

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
    Mutability,
    TooMany,
    NotFound,
    PreconditionFailed,
    NotImplemented,
    /// A failure of ours (storage, I/O). The detail is logged, never shown to the client.
    Internal,
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

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> ScimError {
        match e {
            StoreError::NotFound(what) => ScimError::not_found(what),
            StoreError::Conflict(what) => ScimError::new(ScimErrorKind::Uniqueness, what),
            StoreError::Invalid(what) => ScimError::invalid_value(what),
            other => ScimError::new(ScimErrorKind::Internal, other.to_string()),
        }
    }
}

/// Who is acting: recorded in the activity log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
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
}

impl ListParams {
    /// RFC 7644 §3.4.2.4: startIndex < 1 means 1; a negative count means 0.
    pub fn page(&self) -> (u64, u32) {
        let start = self.start_index.unwrap_or(1).max(1) as u64;
        let count = self.count.unwrap_or(i64::from(DEFAULT_PAGE_SIZE)).clamp(0, i64::from(MAX_PAGE_SIZE));
        (start, count as u32)
    }

    /// Parses `filter` and compiles it for the store; no filter matches everything.
    pub fn compile_filter(&self, kind: schema::ResourceKind) -> Result<crate::store::filter_sql::SqlFilter, ScimError> {
        match &self.filter {
            Some(text) if !text.trim().is_empty() => crate::store::filter_sql::compile(kind, &filter::parse(text)?),
            _ => Ok(crate::store::filter_sql::SqlFilter::all()),
        }
    }
}

/// One page of results, ready to render as a ListResponse.
pub struct Page {
    pub total: u64,
    pub start_index: u64,
    pub resources: Vec<serde_json::Value>,
}

impl Page {
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "schemas": [schema::LIST_RESPONSE],
            "totalResults": self.total,
            "startIndex": self.start_index,
            "itemsPerPage": self.resources.len(),
            "Resources": self.resources,
        })
    }
}
