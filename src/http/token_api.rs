//! The token API under `/t/{tenant}/rest/token`: key pair generation and deletion, and
//! issuing and revoking the caller's (or another account's) bearer token. Callers use
//! HTTP Basic (an admin account or an API client), never a bearer token. An API client
//! may only get, rotate and revoke its own account's token.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::json;

use super::request::Query;
use super::route::TokenEndpoint;
use super::response::{json_response, no_content, ApiError, HttpResponse};
use crate::auth::token;
use crate::clock::UtcMillis;
use crate::auth::AuthError;
use crate::scim::{Credential, Principal};
use crate::tenant::Tenant;

fn flag(query: &Query, name: &str) -> bool {
    query.get(name).is_some_and(|v| v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1")
}

/// What an API client is refused: it exists to get, rotate and revoke its own account's
/// token, so anything that touches the tenant's key or another account needs the org
/// admin's own password.
fn admin_only(who: &Principal, what: &str) -> Result<(), ApiError> {
    match who.via {
        Credential::ApiClient => Err(ApiError::Auth(AuthError::Forbidden(format!(
            "an API client may only get, rotate or revoke the token of the account it was made for; {what} needs the org admin's own credentials"
        )))),
        Credential::Password | Credential::Bearer => Ok(()),
    }
}

pub async fn route(method: &Method, endpoint: TokenEndpoint, query: &Query, tenant: Arc<Tenant>, who: &Principal, now: UtcMillis) -> Result<HttpResponse, ApiError> {
    use TokenEndpoint as E;
    match (method, endpoint) {
        (&Method::GET, E::Token) => {
            let issued = token::issue(&tenant, &who.user_name, &who.user_id, flag(query, "revokeExistingToken"), now).await?;
            Ok(json_response(StatusCode::OK, &json!({"token": issued.token, "expiresAt": issued.expires_at})))
        }
        (&Method::DELETE, E::Current) => {
            let target = query.get("forUser").filter(|u| !u.is_empty()).unwrap_or(&who.user_id).to_string();
            if target != who.user_id {
                admin_only(who, "revoking another account's token (forUser)")?;
            }
            token::revoke(&tenant, &who.user_name, &target, now).await?;
            Ok(no_content())
        }
        (&Method::POST, E::ApiKeygen) => {
            admin_only(who, "generating the tenant's signing key (which revokes every token)")?;
            let fingerprint = token::keygen(Arc::clone(&tenant), &who.user_name, now).await?;
            Ok(json_response(StatusCode::CREATED, &json!({"fingerprint": fingerprint, "algorithm": "RS256", "bits": 2048})))
        }
        (&Method::DELETE, E::DeleteKey) => {
            admin_only(who, "deleting the tenant's signing key")?;
            if token::delete_key(&tenant, &who.user_name, now).await? {
                Ok(no_content())
            } else {
                Err(ApiError::NotFound("this tenant has no token signing key".into()))
            }
        }
        (_, E::Token | E::Current | E::ApiKeygen | E::DeleteKey) => Err(ApiError::MethodNotAllowed),
        (_, E::Unknown) => Err(ApiError::NotFound("no such endpoint".into())),
    }
}
