//! Dispatch: one `match` over the `Route` (route.rs parses the path, once) and the
//! method; an unknown path is 404 and a known path with the wrong method is 405. Handlers parse the request, call the SCIM
//! layer and render; they never touch SQL.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, IF_MATCH, IF_NONE_MATCH};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::request::{self, Query};
use super::response::{json_response, ApiError, HttpResponse};
use super::context::{AppState, Ctx};
use super::route::{Route, ScimEndpoint, TenantEndpoint};
use super::handlers::WriteOp;
use super::{bulk, handlers, token_api};
use crate::auth::{self, Api};
use crate::clock::UtcMillis;
use crate::scim::schema::ResourceKind;
use crate::scim::{discovery, IfMatch, ListOutcome, Principal};
use crate::store::auth_check::{self, Verdict};
use crate::tenant::{Tenant, TenantId};

/// Entry point for every request: route, then write one access-log line.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Result<HttpResponse, Infallible> {
    let req = req.map(request::Body::Left);
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut seen = Seen { who: String::from("-"), tenant: None };
    let parsed = Route::parse(&path);
    let scim = matches!(parsed, Route::Tenant { endpoint: TenantEndpoint::Scim(_), .. });
    let mut refused = None;
    let resp = match route(&state, req, &parsed, peer.ip(), &mut seen).await {
        Ok(r) => r,
        Err(e) => {
            if scim && seen.tenant.is_some() {
                refused = Some(e.summary());
            }
            // A database found damaged while open is closed, so a restored file is what
            // the next request opens (`TenantRegistry::retire`).
            if let (Some(crate::model::Fault::Corrupt), Some(id)) = (e.fault(), seen.tenant.as_deref().and_then(TenantId::parse)) {
                state.tenants.retire(&id, crate::model::Fault::Corrupt);
            }
            if let ApiError::Auth(reason) = &e {
                // Only tenants that exist become label values: ids from the path are the
                // client's to invent, and each would be a new time series.
                let tenant = seen.tenant.as_deref().unwrap_or("-");
                let label = match reason {
                    auth::AuthError::Missing(_) => "missing",
                    auth::AuthError::Invalid => "invalid",
                    auth::AuthError::Expired => "expired",
                    auth::AuthError::Revoked => "revoked",
                    auth::AuthError::Forbidden(_) => "forbidden",
                    auth::AuthError::Throttled(_) => "throttled",
                    auth::AuthError::Internal(_) => "internal",
                    auth::AuthError::Unavailable(_) => "unavailable",
                };
                state.metrics.auth_failure(tenant, label);
            }
            e.into_response()
        }
    };
    state.metrics.observe(parsed.metrics_label(), &method, resp.status().as_u16(), started.elapsed());
    // The console's view of the IdP's traffic (issue 21), for requests that authenticated:
    // an anonymous flood must not push the IdP's real failures out of the ring, nor write
    // its own text on the operator's screen. Never a body or a header; long text is cut.
    if let (true, Some(tenant), Some((_, account))) = (scim, seen.tenant.as_deref(), seen.who.rsplit_once('/')) {
        let at = (state.clock)();
        let failure = refused.map(|(status, scim_type, detail)| crate::http::recent::Failure {
            at,
            tenant: tenant.to_string(),
            method: method.to_string(),
            path: crate::http::recent::clip(&path),
            status,
            scim_type,
            detail: crate::http::recent::clip(&detail),
            account: account.to_string(),
        });
        state.recent.note(tenant, method.as_str(), resp.status().as_u16(), at, failure);
    }
    // A probe that passes (the container's HEALTHCHECK every 30 s, a load balancer's every
    // few) would otherwise be most of the access log: DEBUG. A failing one stays at INFO.
    let level = if matches!(parsed, Route::Healthz) && resp.status() == StatusCode::OK { log::Level::Debug } else { log::Level::Info };
    log::log!(
        target: "scimd::http::access",
        level,
        "{peer} {method} {path} {} {}ms {}",
        resp.status().as_u16(),
        started.elapsed().as_millis(),
        seen.who
    );
    Ok(resp)
}

/// What `route` learnt about the caller, for the access log and metrics.
struct Seen {
    /// `tenant/account` once authenticated.
    who: String,
    /// The tenant, once it is known to exist.
    tenant: Option<String>,
}

/// The tenant a request names. A tenant id that is malformed is 404 before any file is
/// touched; one that is well-formed but does not exist is refused exactly as bad
/// credentials for an existing tenant would be (401, after as long a check), so tenant ids
/// cannot be probed.
async fn tenant_of(state: &AppState, segment: &str, authorization: Option<&str>, api: Api, peer: std::net::IpAddr, seen: &mut Seen) -> Result<Arc<Tenant>, ApiError> {
    let id = TenantId::parse(segment).ok_or_else(|| ApiError::NotFound("unknown tenant".into()))?;
    let found = match state.tenants.get(&id).await {
        Ok(found) => found,
        Err(e) => {
            // Its files are there but cannot be used (the registry has raised the fault):
            // the IdP is told to come back (503), which a 401 would not.
            seen.tenant = Some(id.to_string());
            return Err(e.into());
        }
    };
    let Some(tenant) = found else {
        return Err(ApiError::Auth(auth::refuse_unknown_tenant(&state.auth, api, authorization, peer).await));
    };
    seen.tenant = Some(id.to_string());
    if tenant.keys.broken() {
        // Looked at again while broken, so the fault clears as soon as the files are back
        // (a request with remembered credentials never reads them).
        let _ = tenant.verifying_key().await;
    }
    Ok(tenant)
}

/// A SCIM GET. Credentials a request verified before are not read again: the request runs
/// under the auth counter they were verified with, each of its reads checks the counter in
/// the transaction that reads its answer (`store::auth_check`), and a request whose counter
/// moved (a revocation, deactivation, licence or key change) is verified the slow way and
/// run again. So such a change takes effect on the very next request, as before.
#[allow(clippy::too_many_arguments)]
async fn scim_get(
    state: &AppState,
    parts: hyper::http::request::Parts,
    tenant: Arc<Tenant>,
    endpoint: &ScimEndpoint,
    authorization: Option<&str>,
    peer: std::net::IpAddr,
    now: UtcMillis,
    seen: &mut Seen,
) -> Result<HttpResponse, ApiError> {
    // Held until the answer is made: a shadow-mode switch waits for it (`tenant/shadow.rs`).
    let side = tenant.scim_side().await;
    if side.is_none() {
        if let Some((principal, epoch)) = auth::remembered(&tenant, &state.auth, authorization, peer, now) {
            let who = format!("{}/{}", tenant.id, principal.user_name);
            let request = Request::from_parts(parts.clone(), request::no_body());
            let (answer, verdict) = auth_check::expecting(epoch, scim_endpoint(state, request, Arc::clone(&tenant), principal, now, endpoint)).await;
            let unchanged = match verdict {
                Verdict::Confirmed => true,
                Verdict::Stale => false,
                // Nothing was read (a discovery document): the counter is read on its own.
                Verdict::Unchecked => tenant.store.auth_unchanged(epoch).await?,
            };
            if unchanged {
                seen.who = who;
                return answer;
            }
            auth::forget(&tenant, &state.auth, authorization);
        }
    }
    // A rehearsal's reads are of its own copy, whose auth counter says nothing of the live
    // accounts: its requests are always verified the slow way, against the live tenant.
    let principal = auth::authenticate(&tenant, &state.auth, Api::Scim, authorization, peer, now).await?;
    seen.who = format!("{}/{}", tenant.id, principal.user_name);
    scim_on_side(state, Request::from_parts(parts, request::no_body()), tenant, side, principal, now, endpoint).await
}

/// A SCIM request of a tenant, against its rehearsal when it is in shadow mode (`side`,
/// held until the answer is made). A rehearsal's refusals are kept for its report.
async fn scim_on_side(
    state: &AppState,
    req: Request<request::Body>,
    tenant: Arc<Tenant>,
    side: crate::tenant::shadow::Side,
    principal: Principal,
    now: UtcMillis,
    endpoint: &ScimEndpoint,
) -> Result<HttpResponse, ApiError> {
    let Some(rehearsal) = side.as_ref().map(Arc::clone) else {
        return scim_endpoint(state, req, tenant, principal, now, endpoint).await;
    };
    let (method, path, account) = (req.method().to_string(), req.uri().path().to_string(), principal.user_name.clone());
    let answer = scim_endpoint(state, req, Arc::clone(&rehearsal), principal, now, endpoint).await;
    if let Err(e) = &answer {
        let (status, scim_type, detail) = e.summary();
        rehearsal.note_refusal(&crate::tenant::shadow::Refusal {
            at: now.to_rfc3339(),
            method,
            path,
            status,
            scim_type: scim_type.map(str::to_string),
            detail,
            account,
        });
    }
    drop(side);
    answer
}

async fn route(state: &AppState, req: Request<request::Body>, route: &Route<'_>, peer: std::net::IpAddr, seen: &mut Seen) -> Result<HttpResponse, ApiError> {
    match route {
        Route::Healthz => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(ApiError::MethodNotAllowed);
            }
            // The public listener says only that the process serves; per-tenant detail is
            // on the operator (metrics) listener and in `scimd check`.
            let mut resp = json_response(StatusCode::OK, &json!({"status": "ok"}));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
        Route::Tenant { tenant, endpoint } => {
            let authorization = header(&req, hyper::header::AUTHORIZATION);
            let authorization = authorization.as_deref();
            let tenant = tenant_of(state, tenant, authorization, endpoint.api(), peer, seen).await?;
            let now = (state.clock)();
            if let TenantEndpoint::Scim(scim) = endpoint {
                if req.method() == Method::GET {
                    // A GET's body is never read.
                    let (parts, _) = req.into_parts();
                    return scim_get(state, parts, tenant, scim, authorization, peer, now, seen).await;
                }
                // The gate first: a write verified before a shadow-mode switch must not run
                // after it (a token revoked meanwhile).
                let side = tenant.scim_side().await;
                let principal = auth::authenticate(&tenant, &state.auth, endpoint.api(), authorization, peer, now).await?;
                seen.who = format!("{}/{}", tenant.id, principal.user_name);
                return scim_on_side(state, req, tenant, side, principal, now, scim).await;
            }
            let principal = auth::authenticate(&tenant, &state.auth, endpoint.api(), authorization, peer, now).await?;
            seen.who = format!("{}/{}", tenant.id, principal.user_name);
            match endpoint {
                TenantEndpoint::Events => {
                    if req.method() != Method::GET {
                        return Err(ApiError::MethodNotAllowed);
                    }
                    events_feed(&tenant, &Query::parse(req.uri().query())?).await
                }
                TenantEndpoint::Token(endpoint) => {
                    let query = Query::parse(req.uri().query())?;
                    token_api::route(req.method(), *endpoint, &query, tenant, &principal, now).await
                }
                TenantEndpoint::Scim(_) => Err(ApiError::Scim(crate::scim::ScimError::new(crate::scim::ScimErrorKind::Internal, "a SCIM request reached the other endpoints' arm"))),
            }
        }
        Route::Unknown => Err(ApiError::NotFound(format!("no endpoint at {}", req.uri().path()))),
    }
}

/// A SCIM endpoint of an authenticated tenant: the base URL and the request's `Ctx`.
async fn scim_endpoint(
    state: &AppState,
    req: Request<request::Body>,
    tenant: Arc<Tenant>,
    principal: Principal,
    now: UtcMillis,
    endpoint: &ScimEndpoint,
) -> Result<HttpResponse, ApiError> {
    if *endpoint == ScimEndpoint::Malformed {
        // Refused after authentication, before the query is read, as it always was.
        return Err(ApiError::NotFound("malformed percent-encoding in the path".into()));
    }
    let id = tenant.id.clone();
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
    crate::scim::dialect::check_query_names(tenant.settings().dialect, query.names())?;
    let users = crate::scim::schema::Catalogue::of(ResourceKind::User, &tenant.settings());
    let ctx = Ctx {
        tenant,
        users,
        now,
        principal,
        base_url,
        query,
        bulk_max_operations: bulk::MAX_OPERATIONS,
        max_body_bytes: state.max_body_bytes,
    };
    scim_route(state, &ctx, req, endpoint).await
}

fn header(req: &Request<request::Body>, name: hyper::header::HeaderName) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn scim_route(state: &AppState, ctx: &Ctx, req: Request<request::Body>, endpoint: &ScimEndpoint) -> Result<HttpResponse, ApiError> {
    use ScimEndpoint as E;
    let method = req.method().clone();
    let base = &ctx.base_url;
    let get = method == Method::GET;
    let post = method == Method::POST;
    match endpoint {
        E::ServiceProviderConfig if get => Ok(json_response(StatusCode::OK, &discovery::service_provider_config(base, ctx.bulk_max_operations, ctx.max_body_bytes))),
        E::ResourceTypes if get => Ok(list_of(discovery::resource_types(base, handlers::catalogue(ctx, ResourceKind::User)))),
        E::ResourceType(name) if get => Ok(json_response(StatusCode::OK, &discovery::resource_type(name, base, handlers::catalogue(ctx, ResourceKind::User))?)),
        E::Schemas if get => Ok(list_of(discovery::schemas(base, handlers::catalogue(ctx, ResourceKind::User)))),
        E::Schema(urn) if get => Ok(json_response(StatusCode::OK, &discovery::schema(urn, base, handlers::catalogue(ctx, ResourceKind::User))?)),
        E::ServiceProviderConfig | E::ResourceTypes | E::ResourceType(_) | E::Schemas | E::Schema(_) | E::DiscoveryDeeper => Err(ApiError::MethodNotAllowed),
        E::Search if post => {
            let body = request::json_body(req, state.max_body_bytes).await?;
            handlers::search_all(ctx, request::search_params(&body)?).await
        }
        E::Bulk if post => {
            let body = request::json_body(req, state.max_body_bytes).await?;
            bulk::run(ctx, &body).await
        }
        E::Bulk | E::Search => Err(ApiError::MethodNotAllowed),
        // /Me is the authenticated account's own User resource (RFC 7644 §3.11).
        E::Me => {
            let id = ctx.principal.user_id.clone();
            one_resource(state, ctx, req, ResourceKind::User, &id).await
        }
        E::Collection(kind) if get => handlers::list(ctx, *kind, ctx.query.list_params()?).await,
        E::Collection(kind) if post => {
            let body = request::json_body(req, state.max_body_bytes).await?;
            let done = handlers::execute(ctx, WriteOp::Create { kind: *kind, body: Some(&body) }).await?;
            handlers::respond_done(ctx, *kind, done).await
        }
        E::Collection(_) => Err(ApiError::MethodNotAllowed),
        E::CollectionSearch(kind) if post => {
            let body = request::json_body(req, state.max_body_bytes).await?;
            handlers::list(ctx, *kind, request::search_params(&body)?).await
        }
        // Any other method treats `.search` as an id, as it always has.
        E::CollectionSearch(kind) => one_resource(state, ctx, req, *kind, ".search").await,
        E::Resource(kind, id) => one_resource(state, ctx, req, *kind, id).await,
        E::Root | E::Malformed | E::Unknown => Err(ApiError::NotFound("no such endpoint".into())),
    }
}

/// GET, PUT, PATCH or DELETE of one resource.
async fn one_resource(state: &AppState, ctx: &Ctx, req: Request<request::Body>, kind: ResourceKind, id: &str) -> Result<HttpResponse, ApiError> {
    let method = req.method().clone();
    if method == Method::GET {
        return handlers::get(ctx, kind, id, header(&req, IF_NONE_MATCH).as_deref()).await;
    }
    if !matches!(method, Method::PUT | Method::PATCH | Method::DELETE) {
        return Err(ApiError::MethodNotAllowed);
    }
    let if_match = header(&req, IF_MATCH).map(|h| IfMatch::parse(&h));
    let body = if method == Method::DELETE { None } else { Some(request::json_body(req, state.max_body_bytes).await?) };
    let body = body.as_ref();
    let op = match method {
        Method::PUT => WriteOp::Replace { kind, id, body, if_match },
        Method::PATCH => WriteOp::Patch { kind, id, body, if_match },
        _ => WriteOp::Delete { kind, id, if_match },
    };
    let done = handlers::execute(ctx, op).await?;
    handlers::respond_done(ctx, kind, done).await
}

/// `GET /t/{tenant}/events?after=SEQ&limit=N`: the activity log in order, for the
/// application to follow changes without re-reading the directory.
async fn events_feed(tenant: &Tenant, query: &Query) -> Result<HttpResponse, ApiError> {
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        match query.get(name) {
            None | Some("") => Ok(default),
            Some(v) => v.parse().map_err(|_| ApiError::BadRequest(format!("{name} must be an integer"))),
        }
    };
    let after = number("after", 0)?.max(0);
    let limit = number("limit", 100)?.clamp(1, i64::from(crate::scim::activity::MAX_EVENTS_PAGE)) as u32;
    let list = crate::scim::activity::events_after(tenant, after, limit).await?;
    let next = list.last().map(|e| e.seq).unwrap_or(after);
    let mut resp = json_response(StatusCode::OK, &json!({"events": list, "next": next}));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn list_of(items: Vec<Value>) -> HttpResponse {
    let page = ListOutcome { total: Some(items.len() as u64), start_index: Some(1), items: Vec::new(), next_cursor: None };
    json_response(StatusCode::OK, &page.to_json(items))
}
