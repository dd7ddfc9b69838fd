//! THE URL table. One `match` over (method, path segments); 404 falls through and a
//! known path with the wrong method is 405. Handlers parse the request, call the SCIM
//! layer and render; they never touch SQL.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use log::info;
use serde_json::{json, Value};

use super::request::{self, Query};
use super::response::{json_response, no_content, resource_response, ApiError, HttpResponse};
use crate::auth::{self, CredentialCache};
use crate::clock::UtcMillis;
use crate::scim::resource::{render, Projection, StoredResource};
use crate::scim::schema::{self, ResourceKind};
use crate::scim::{discovery, groups, users, ListParams, Page, Principal, ScimError, ScimErrorKind};
use crate::tenant::{Tenant, TenantId, TenantRegistry};

/// What every request handler shares.
pub struct AppState {
    pub tenants: TenantRegistry,
    pub credentials: CredentialCache,
    pub max_body_bytes: usize,
    /// `https://host:port` as clients reach us; derived from `Host` when unset.
    pub public_url: Option<String>,
    pub scheme: &'static str,
}

/// Entry point for every request: route, then write one access-log line.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Result<HttpResponse, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut who = String::from("-");
    let resp = match route(&state, req, &mut who).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    info!(
        target: "scimd::http::access",
        "{peer} {method} {path} {} {}ms {who}",
        resp.status().as_u16(),
        started.elapsed().as_millis()
    );
    Ok(resp)
}

/// A request inside one tenant's SCIM base URL, after authentication.
struct Ctx {
    tenant: Arc<Tenant>,
    principal: Principal,
    base_url: String,
    query: Query,
}

fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

async fn route(state: &AppState, req: Request<Incoming>, who: &mut String) -> Result<HttpResponse, ApiError> {
    let path = req.uri().path().to_string();
    let segs = segments(&path);
    match segs.as_slice() {
        ["healthz"] => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(ApiError::MethodNotAllowed);
            }
            let mut resp = json_response(StatusCode::OK, &json!({"status": "ok"}));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
        ["t", tenant, "scim", "v2", rest @ ..] => {
            // Anything that is not a valid tenant id is a 404 before any file is touched.
            let id = TenantId::parse(tenant).ok_or_else(|| ApiError::NotFound("unknown tenant".into()))?;
            let tenant = state.tenants.get(&id).await?.ok_or_else(|| ApiError::NotFound("unknown tenant".into()))?;
            let rest: Vec<String> = rest.iter().map(|s| request::percent_decode(s).unwrap_or_default()).collect();
            let authorization = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let principal = auth::authenticate(id.as_str(), &tenant.store, &state.credentials, authorization).await?;
            *who = format!("{id}/{}", principal.user_name);
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_else(|| "localhost".into());
            let origin = state.public_url.clone().unwrap_or_else(|| format!("{}://{host}", state.scheme));
            let base_url = format!("{}/t/{id}/scim/v2", origin.trim_end_matches('/'));
            let query = Query::parse(req.uri().query())?;
            let ctx = Ctx { tenant, principal, base_url, query };
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            scim_route(state, &ctx, req, &rest).await
        }
        _ => Err(ApiError::NotFound(format!("no endpoint at {path}"))),
    }
}

fn kind_of(segment: &str) -> Option<ResourceKind> {
    match segment {
        "Users" => Some(ResourceKind::User),
        "Groups" => Some(ResourceKind::Group),
        _ => None,
    }
}

async fn scim_route(state: &AppState, ctx: &Ctx, req: Request<Incoming>, rest: &[&str]) -> Result<HttpResponse, ApiError> {
    let method = req.method().clone();
    let now = || UtcMillis::now().to_rfc3339();
    match (&method, rest) {
        (&Method::GET, ["ServiceProviderConfig"]) => Ok(json_response(StatusCode::OK, &discovery::service_provider_config(&ctx.base_url))),
        (&Method::GET, ["ResourceTypes"]) => Ok(list_of(discovery::resource_types(&ctx.base_url))),
        (&Method::GET, ["ResourceTypes", name]) => Ok(json_response(StatusCode::OK, &discovery::resource_type(name, &ctx.base_url)?)),
        (&Method::GET, ["Schemas"]) => Ok(list_of(discovery::schemas(&ctx.base_url))),
        (&Method::GET, ["Schemas", urn]) => Ok(json_response(StatusCode::OK, &discovery::schema(urn, &ctx.base_url)?)),
        (_, ["ServiceProviderConfig" | "ResourceTypes" | "Schemas", ..]) => Err(ApiError::MethodNotAllowed),
        (&Method::POST, [".search"]) => Err(ApiError::Scim(ScimError::new(
            ScimErrorKind::NotImplemented,
            "searching several resource types at once is not supported; use /Users/.search or /Groups/.search",
        ))),
        (_, [collection, ..]) if kind_of(collection).is_some() => {
            let kind = kind_of(collection).expect("checked above");
            match (&method, &rest[1..]) {
                (&Method::GET, []) => list(ctx, kind, ctx.query.list_params()?).await,
                (&Method::POST, [".search"]) => {
                    let body = request::json_body(req, state.max_body_bytes).await?;
                    list(ctx, kind, request::search_params(&body)?).await
                }
                (&Method::POST, []) => {
                    let body = request::json_body(req, state.max_body_bytes).await?;
                    let res = match kind {
                        ResourceKind::User => users::create(&ctx.tenant.store, &ctx.principal, &body, now()).await?,
                        ResourceKind::Group => groups::create(&ctx.tenant.store, &ctx.principal, &body, now()).await?,
                    };
                    Ok(respond(ctx, kind, StatusCode::CREATED, &res))
                }
                (&Method::GET, [id]) => {
                    let proj = projection(ctx, kind);
                    let res = load(ctx, kind, id, &proj).await?;
                    Ok(respond_with(ctx, kind, StatusCode::OK, &res, &proj))
                }
                (&Method::PUT, [id]) => {
                    let body = request::json_body(req, state.max_body_bytes).await?;
                    let res = match kind {
                        ResourceKind::User => users::replace(&ctx.tenant.store, &ctx.principal, id, &body, now()).await?,
                        ResourceKind::Group => groups::replace(&ctx.tenant.store, &ctx.principal, id, &body, now()).await?,
                    };
                    Ok(respond(ctx, kind, StatusCode::OK, &res))
                }
                (&Method::PATCH, [id]) => {
                    let body = request::json_body(req, state.max_body_bytes).await?;
                    match kind {
                        ResourceKind::User => {
                            let res = users::patch(&ctx.tenant.store, &ctx.principal, id, &body, now()).await?;
                            Ok(respond(ctx, kind, StatusCode::OK, &res))
                        }
                        ResourceKind::Group => {
                            groups::patch(&ctx.tenant.store, &ctx.principal, id, &body, now()).await?;
                            // A group PATCH never returns (or loads) the member list unless asked.
                            if ctx.query.get("attributes").is_some() {
                                let proj = projection(ctx, kind);
                                let res = load(ctx, kind, id, &proj).await?;
                                return Ok(respond_with(ctx, kind, StatusCode::OK, &res, &proj));
                            }
                            Ok(no_content())
                        }
                    }
                }
                (&Method::DELETE, [id]) => {
                    match kind {
                        ResourceKind::User => users::delete(&ctx.tenant.store, &ctx.principal, id, now()).await?,
                        ResourceKind::Group => groups::delete(&ctx.tenant.store, &ctx.principal, id, now()).await?,
                    }
                    Ok(no_content())
                }
                (_, [] | [_]) => Err(ApiError::MethodNotAllowed),
                _ => Err(ApiError::NotFound("no such endpoint".into())),
            }
        }
        _ => Err(ApiError::NotFound("no such endpoint".into())),
    }
}

fn list_of(items: Vec<Value>) -> HttpResponse {
    let page = Page { total: items.len() as u64, start_index: 1, resources: items };
    json_response(StatusCode::OK, &page.to_json())
}

fn projection(ctx: &Ctx, kind: ResourceKind) -> Projection {
    Projection::parse(kind, ctx.query.get("attributes"), ctx.query.get("excludedAttributes"))
}

/// Whether the computed multi-valued attribute (user.groups / group.members) is wanted.
fn wants_computed(kind: ResourceKind, proj: &Projection) -> bool {
    let name = match kind {
        ResourceKind::User => "groups",
        ResourceKind::Group => "members",
    };
    schema::find_core(kind, name).is_some_and(|attr| proj.wants(None, attr))
}

async fn load(ctx: &Ctx, kind: ResourceKind, id: &str, proj: &Projection) -> Result<StoredResource, ApiError> {
    let with = wants_computed(kind, proj);
    Ok(match kind {
        ResourceKind::User => users::get(&ctx.tenant.store, id, with).await?,
        ResourceKind::Group => groups::get(&ctx.tenant.store, id, with).await?,
    })
}

fn respond(ctx: &Ctx, kind: ResourceKind, status: StatusCode, res: &StoredResource) -> HttpResponse {
    respond_with(ctx, kind, status, res, &projection(ctx, kind))
}

fn respond_with(ctx: &Ctx, kind: ResourceKind, status: StatusCode, res: &StoredResource, proj: &Projection) -> HttpResponse {
    resource_response(status, &render(kind, res, &ctx.base_url, proj), &res.etag())
}

async fn list(ctx: &Ctx, kind: ResourceKind, params: ListParams) -> Result<HttpResponse, ApiError> {
    let proj = Projection::parse(kind, params.attributes.as_deref(), params.excluded_attributes.as_deref());
    let with = wants_computed(kind, &proj);
    let (total, items) = match kind {
        ResourceKind::User => users::list(&ctx.tenant.store, &params, with).await?,
        ResourceKind::Group => groups::list(&ctx.tenant.store, &params, with).await?,
    };
    let resources = items.iter().map(|r| render(kind, r, &ctx.base_url, &proj)).collect();
    let page = Page { total, start_index: params.page().0, resources };
    Ok(json_response(StatusCode::OK, &page.to_json()))
}
