//! Responses: SCIM JSON bodies and the ONE mapping from errors to status, `scimType`
//! and client-facing detail. Internal causes are logged here and replaced by
//! "internal error" for the client.

use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, ETAG, LOCATION, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use log::error;
use serde_json::{json, Value};

use crate::auth::token::TokenError;
use crate::auth::AuthError;
use crate::scim::schema::ERROR_SCHEMA;
use crate::scim::{ScimError, ScimErrorKind};
use crate::store::StoreError;

pub type Body = Full<hyper::body::Bytes>;
pub type HttpResponse = Response<Body>;

pub const SCIM_JSON: &str = "application/scim+json";

/// Every way a request can fail, from any layer.
#[derive(Debug)]
pub enum ApiError {
    Scim(ScimError),
    Auth(AuthError),
    Store(StoreError),
    /// No route, or an unknown tenant.
    NotFound(String),
    MethodNotAllowed,
    PayloadTooLarge(usize),
    /// A Bulk request with more operations than `maxOperations`.
    TooManyOperations(usize),
    UnsupportedMediaType,
    /// The body is not JSON / not UTF-8.
    BadJson(String),
    BadRequest(String),
}

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError::Scim(e)
    }
}
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Auth(e)
    }
}
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}
// The token API's refusals, here beside the others so every status has one source.
impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let conflict = |detail: String| ApiError::Scim(ScimError::new(ScimErrorKind::Conflict, detail));
        match e {
            TokenError::NoKey => conflict("this tenant has no token signing key: POST /rest/token/apiKeygen first".into()),
            TokenError::LiveTokenExists { expires_at } => conflict(format!(
                "this account already has a live token (expires {expires_at}); call again with revokeExistingToken=true to replace it"
            )),
            TokenError::NoLiveToken => ApiError::NotFound("that account has no live token".into()),
            TokenError::UnknownAccount(id) => ApiError::NotFound(format!("account {id} not found")),
            // A key file that cannot be read, parsed or written is the operator's to fix (the
            // key state raised the fault and logged why): the client is told to come back.
            TokenError::Key(why) => {
                error!(target: "scimd::token", "token signing key: {why}");
                let fault = crate::model::Fault::SigningKey;
                ApiError::Scim(ScimError::new(ScimErrorKind::Unavailable(fault), fault.client_detail()))
            }
            TokenError::Store(e) => ApiError::Store(e),
        }
    }
}


fn scim_error_parts(e: &ScimError) -> (StatusCode, Option<&'static str>) {
    match e.kind {
        ScimErrorKind::InvalidFilter => (StatusCode::BAD_REQUEST, Some("invalidFilter")),
        ScimErrorKind::InvalidPath => (StatusCode::BAD_REQUEST, Some("invalidPath")),
        ScimErrorKind::NoTarget => (StatusCode::BAD_REQUEST, Some("noTarget")),
        ScimErrorKind::InvalidValue => (StatusCode::BAD_REQUEST, Some("invalidValue")),
        ScimErrorKind::InvalidSyntax => (StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        ScimErrorKind::Uniqueness => (StatusCode::CONFLICT, Some("uniqueness")),
        ScimErrorKind::Conflict => (StatusCode::CONFLICT, None),
        ScimErrorKind::Mutability => (StatusCode::BAD_REQUEST, Some("mutability")),
        ScimErrorKind::Forbidden => (StatusCode::FORBIDDEN, None),
        ScimErrorKind::TooMany => (StatusCode::BAD_REQUEST, Some("tooMany")),
        ScimErrorKind::NotFound => (StatusCode::NOT_FOUND, None),
        ScimErrorKind::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, None),
        ScimErrorKind::NotImplemented => (StatusCode::NOT_IMPLEMENTED, None),
        ScimErrorKind::InvalidCursor => (StatusCode::BAD_REQUEST, Some("invalidCursor")),
        ScimErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
        // RFC 7231 §6.6.4: a temporary condition; Okta and Entra retry a 503 (after
        // `Retry-After`), where a 500 is counted against the app as a failure.
        ScimErrorKind::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
    }
}

impl ApiError {
    /// Status, scimType and the detail the client sees.
    fn parts(&self) -> (StatusCode, Option<&'static str>, String) {
        match self {
            ApiError::Scim(e) if e.kind == ScimErrorKind::Internal => {
                error!(target: "scimd::http", "internal error: {}", e.detail);
                (StatusCode::INTERNAL_SERVER_ERROR, None, "internal error".into())
            }
            ApiError::Scim(e) => {
                let (status, scim_type) = scim_error_parts(e);
                (status, scim_type, e.detail.clone())
            }
            ApiError::Auth(AuthError::Missing(why)) => (StatusCode::UNAUTHORIZED, None, (*why).into()),
            ApiError::Auth(AuthError::Invalid) => (StatusCode::UNAUTHORIZED, None, "invalid credentials".into()),
            ApiError::Auth(AuthError::Expired) => (StatusCode::UNAUTHORIZED, None, "the bearer token has expired; issue a new one".into()),
            ApiError::Auth(AuthError::Revoked) => (StatusCode::UNAUTHORIZED, None, "the bearer token has been revoked or replaced".into()),
            ApiError::Auth(AuthError::Forbidden(why)) => (StatusCode::FORBIDDEN, None, why.clone()),
            ApiError::Auth(AuthError::Throttled(secs)) => {
                (StatusCode::TOO_MANY_REQUESTS, None, format!("too many failed logins; retry after {secs} seconds"))
            }
            ApiError::Auth(AuthError::Unavailable(fault)) => (StatusCode::SERVICE_UNAVAILABLE, None, fault.client_detail().into()),
            ApiError::Auth(AuthError::Internal(cause)) => {
                error!(target: "scimd::auth", "account lookup failed: {cause}");
                (StatusCode::INTERNAL_SERVER_ERROR, None, "internal error".into())
            }
            ApiError::Store(e) => match ScimError::of_store(e) {
                scim if scim.kind == ScimErrorKind::Internal => {
                    error!(target: "scimd::store", "storage error: {e}");
                    (StatusCode::INTERNAL_SERVER_ERROR, None, "internal error".into())
                }
                scim => {
                    let (status, scim_type) = scim_error_parts(&scim);
                    (status, scim_type, scim.detail)
                }
            },
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, None, what.clone()),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, None, "method not allowed on this endpoint".into()),
            ApiError::PayloadTooLarge(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, None, format!("request body larger than {limit} bytes"))
            }
            ApiError::TooManyOperations(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, None, format!("a bulk request may carry at most {limit} operations"))
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send application/scim+json or application/json".into(),
            ),
            ApiError::BadJson(why) => (StatusCode::BAD_REQUEST, Some("invalidSyntax"), why.clone()),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, Some("invalidValue"), why.clone()),
        }
    }

    /// Status, scimType and detail as the client sees them, without logging anything (the
    /// console's record of a refusal; `into_response` logs an internal cause once).
    pub fn summary(&self) -> (u16, Option<&'static str>, String) {
        let internal = match self {
            ApiError::Scim(e) => e.kind == ScimErrorKind::Internal,
            ApiError::Auth(AuthError::Internal(_)) => true,
            ApiError::Store(e) => ScimError::of_store(e).kind == ScimErrorKind::Internal,
            _ => false,
        };
        if internal {
            return (500, None, "internal error".into());
        }
        let (status, scim_type, detail) = self.parts();
        (status.as_u16(), scim_type, detail)
    }

    /// The status and SCIM error body (also used inside Bulk responses).
    pub fn to_status_and_body(&self) -> (StatusCode, Value) {
        let (status, scim_type, detail) = self.parts();
        let mut body = json!({"schemas": [ERROR_SCHEMA], "status": status.as_u16().to_string(), "detail": detail});
        if let Some(t) = scim_type {
            body["scimType"] = Value::String(t.into());
        }
        (status, body)
    }

    /// The operator's fault behind this refusal, if it is one (a 503).
    pub fn fault(&self) -> Option<crate::model::Fault> {
        match self {
            ApiError::Scim(ScimError { kind: ScimErrorKind::Unavailable(f), .. }) => Some(*f),
            ApiError::Store(e) => e.fault(),
            ApiError::Auth(AuthError::Unavailable(f)) => Some(*f),
            _ => None,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let (status, body) = self.to_status_and_body();
        let mut resp = json_response(status, &body);
        if let Some(fault) = self.fault() {
            resp.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(fault.retry_after_secs()));
        }
        if let ApiError::Auth(AuthError::Throttled(secs)) = &self {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"scimd\", charset=\"UTF-8\""));
            resp.headers_mut().append(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scimd\""));
        }
        resp
    }
}

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(bytes.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    resp
}

/// A single resource with its ETag (and, on 201, its Location).
pub fn resource_response(status: StatusCode, body: &impl serde::Serialize, etag: &str, location: &str) -> HttpResponse {
    let mut resp = json_response(status, body);
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Ok(loc) = HeaderValue::from_str(location) {
            resp.headers_mut().insert(LOCATION, loc);
        }
    }
    resp
}

pub fn no_content() -> HttpResponse {
    let mut resp = Response::new(Full::new(hyper::body::Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
