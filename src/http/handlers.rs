//! Resource handlers: one function per SCIM operation, shared by the router and by
//! `/Bulk`. They parse nothing but what the router hands them, call the SCIM layer and
//! render.

use hyper::StatusCode;
use serde_json::Value;

use super::response::{json_response, no_content, resource_response, ApiError, HttpResponse};
use super::context::Ctx;
use crate::scim::resource::{render, Projection, Rendered, StoredResource};
use crate::scim::schema::{self, Catalogue, ResourceKind};
use crate::scim::{self as scim_layer, groups, users, IfMatch, ListOutcome, ListParams, ScimError, ScimErrorKind};

/// What a write did.
pub enum Done {
    /// A resource to return, with the status to return it with.
    Resource(StatusCode, StoredResource),
    /// A group PATCH: nothing loaded (the member list can be huge).
    /// The group's id and new ETag.
    GroupPatched(String, String),
    Deleted,
}

/// One write, as the router builds it from a request and Bulk from an operation. The
/// body is optional because a Bulk operation may omit `data`: that is refused here, once.
pub enum WriteOp<'a> {
    Create { kind: ResourceKind, body: Option<&'a Value> },
    Replace { kind: ResourceKind, id: &'a str, body: Option<&'a Value>, if_match: Option<IfMatch> },
    Patch { kind: ResourceKind, id: &'a str, body: Option<&'a Value>, if_match: Option<IfMatch> },
    Delete { kind: ResourceKind, id: &'a str, if_match: Option<IfMatch> },
}

/// Runs one write operation.
pub async fn execute(ctx: &Ctx, op: WriteOp<'_>) -> Result<Done, ApiError> {
    use ResourceKind::{Group, User};
    let store: &crate::tenant::Tenant = &ctx.tenant;
    let who = &ctx.principal;
    let now = || ctx.now.to_rfc3339();
    fn needed(body: Option<&Value>) -> Result<&Value, ApiError> {
        body.ok_or_else(|| ApiError::BadJson("this operation needs a body".into()))
    }
    Ok(match op {
        WriteOp::Create { kind: User, body } => Done::Resource(StatusCode::CREATED, users::create(store, who, needed(body)?, now()).await?),
        WriteOp::Create { kind: Group, body } => Done::Resource(StatusCode::CREATED, groups::create(store, who, needed(body)?, now()).await?),
        WriteOp::Replace { kind: User, id, body, if_match } => Done::Resource(StatusCode::OK, users::replace(store, who, id, needed(body)?, if_match, now()).await?),
        WriteOp::Replace { kind: Group, id, body, if_match } => Done::Resource(StatusCode::OK, groups::replace(store, who, id, needed(body)?, if_match, now()).await?),
        WriteOp::Patch { kind: User, id, body, if_match } => Done::Resource(StatusCode::OK, users::patch(store, who, id, needed(body)?, if_match, now()).await?),
        WriteOp::Patch { kind: Group, id, body, if_match } => {
            let etag = groups::patch(store, who, id, needed(body)?, if_match, now()).await?;
            Done::GroupPatched(id.to_string(), etag)
        }
        WriteOp::Delete { kind: User, id, if_match } => {
            users::delete(store, who, id, if_match, now()).await?;
            Done::Deleted
        }
        WriteOp::Delete { kind: Group, id, if_match } => {
            groups::delete(store, who, id, if_match, now()).await?;
            Done::Deleted
        }
    })
}

/// A write's HTTP response: the resource (projected per the query) with its ETag.
pub async fn respond_done(ctx: &Ctx, kind: ResourceKind, done: Done) -> Result<HttpResponse, ApiError> {
    match done {
        Done::Resource(status, res) => Ok(respond(ctx, kind, status, &res, &projection(ctx, kind))),
        // A group PATCH answers 204 unless the client asked for attributes (never the members).
        Done::GroupPatched(id, _) if ctx.query.get("attributes").is_some() => {
            let proj = projection(ctx, kind);
            let res = load(ctx, kind, &id, &proj).await?;
            Ok(respond(ctx, kind, StatusCode::OK, &res, &proj))
        }
        Done::GroupPatched(..) | Done::Deleted => Ok(no_content()),
    }
}

pub fn projection(ctx: &Ctx, kind: ResourceKind) -> Projection {
    Projection::parse(catalogue(ctx, kind), ctx.query.get("attributes"), ctx.query.get("excludedAttributes"))
}

/// The tenant's catalogue of `kind` (its custom attributes, as the request found them).
pub fn catalogue(ctx: &Ctx, kind: ResourceKind) -> Catalogue {
    match kind {
        ResourceKind::User => ctx.users,
        ResourceKind::Group => Catalogue::plain(kind),
    }
}

/// Whether the computed multi-valued attribute (user.groups / group.members) is wanted.
fn wants_computed(kind: ResourceKind, proj: &Projection) -> bool {
    let name = match kind {
        ResourceKind::User => "groups",
        ResourceKind::Group => "members",
    };
    schema::find_core(kind, name).is_some_and(|attr| proj.wants(None, attr))
}

pub async fn load(ctx: &Ctx, kind: ResourceKind, id: &str, proj: &Projection) -> Result<StoredResource, ApiError> {
    let with = wants_computed(kind, proj);
    Ok(match kind {
        ResourceKind::User => users::get(&ctx.tenant, id, with).await?,
        ResourceKind::Group => groups::get(&ctx.tenant, id, with).await?,
    })
}

pub fn respond(ctx: &Ctx, kind: ResourceKind, status: StatusCode, res: &StoredResource, proj: &Projection) -> HttpResponse {
    respond_rendered(status, res, Rendered::new(catalogue(ctx, kind), res, &ctx.base_url, proj))
}

fn respond_rendered(status: StatusCode, res: &StoredResource, rendered: Rendered<'_>) -> HttpResponse {
    resource_response(status, &rendered, &res.etag(), &rendered.location())
}

/// GET of one resource, honouring `If-None-Match` (304 when the client's copy is current).
pub async fn get(ctx: &Ctx, kind: ResourceKind, id: &str, if_none_match: Option<&str>) -> Result<HttpResponse, ApiError> {
    let proj = projection(ctx, kind);
    // A user's custom attributes are rendered from their stored text, not parsed first.
    let (res, custom_text) = match kind {
        ResourceKind::User => users::get_to_render(&ctx.tenant, id, wants_computed(kind, &proj)).await?,
        ResourceKind::Group => (load(ctx, kind, id, &proj).await?, None),
    };
    if if_none_match.is_some_and(|h| IfMatch::parse(h).matches(&res.etag())) {
        let mut resp = no_content();
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(v) = hyper::header::HeaderValue::from_str(&res.etag()) {
            resp.headers_mut().insert(hyper::header::ETAG, v);
        }
        return Ok(resp);
    }
    let rendered = Rendered::new(catalogue(ctx, kind), &res, &ctx.base_url, &proj).with_custom_text(custom_text.as_ref());
    Ok(respond_rendered(StatusCode::OK, &res, rendered))
}

pub async fn list(ctx: &Ctx, kind: ResourceKind, params: ListParams) -> Result<HttpResponse, ApiError> {
    let params = ListParams { dialect: ctx.tenant.settings().dialect, ..params };
    let cat = catalogue(ctx, kind);
    let proj = Projection::parse(cat, params.attributes.as_deref(), params.excluded_attributes.as_deref());
    let outcome = scim_layer::list(&ctx.tenant.store, cat, &params, wants_computed(kind, &proj)).await?;
    let resources = outcome.items.iter().map(|r| render(cat, r, &ctx.base_url, &proj)).collect();
    let resp = json_response(StatusCode::OK, &outcome.to_json(resources));
    drop(outcome);
    release_freed_memory(hyper::body::Body::size_hint(resp.body()).lower() as usize);
    Ok(resp)
}

/// After a large page, gives the memory its documents used back to the OS. glibc keeps
/// what is freed in per-thread arenas for reuse, so without this the RSS of a process that
/// served a burst of large pages stays at the burst's peak (measured: 13 MiB at rest,
/// 85-104 MiB after rounds of six 4 MiB pages; see BENCHMARKS.md). Small pages skip it:
/// the trim walks every arena's free lists.
fn release_freed_memory(page_bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if page_bytes >= 1024 * 1024 {
        // SAFETY: malloc_trim only returns free heap pages to the OS; it touches no memory
        // the program owns.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = page_bytes;
}

/// `POST /.search` across Users and Groups (RFC 7644 §3.4.3): users first, then groups,
/// paged as one sequence. A filter on an attribute one type lacks matches none of it.
pub async fn search_all(ctx: &Ctx, params: ListParams) -> Result<HttpResponse, ApiError> {
    let params = ListParams { dialect: ctx.tenant.settings().dialect, ..params };
    if params.cursor.is_some() || params.sort_by.is_some() {
        return Err(ApiError::Scim(ScimError::invalid_value("cursor and sortBy are supported on /Users/.search and /Groups/.search only")));
    }
    let (start, count) = params.page();
    let mut resources = Vec::new();
    let mut total = 0u64;
    let mut skip = start - 1;
    let mut failures = Vec::new();
    // A page the byte budget ended early stops there: the next page starts with the users
    // it did not hold, so no groups may follow them in this one (they are still counted).
    let mut ended_early = false;
    for kind in [ResourceKind::User, ResourceKind::Group] {
        let cat = catalogue(ctx, kind);
        let proj = Projection::parse(cat, params.attributes.as_deref(), params.excluded_attributes.as_deref());
        let remaining = if ended_early { 0 } else { count as i64 - resources.len() as i64 };
        let kind_params = ListParams { start_index: Some(skip as i64 + 1), count: Some(remaining.max(0)), ..params.clone() };
        let outcome: ListOutcome = match scim_layer::list(&ctx.tenant.store, cat, &kind_params, wants_computed(kind, &proj)).await {
            Ok(o) => o,
            Err(e) if e.kind == ScimErrorKind::InvalidFilter => {
                failures.push(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let kind_total = outcome.total.unwrap_or(0);
        let expected = (remaining.max(0) as u64).min(kind_total.saturating_sub(skip));
        ended_early |= (outcome.items.len() as u64) < expected;
        total += kind_total;
        skip = skip.saturating_sub(kind_total);
        resources.extend(outcome.items.iter().map(|r| render(cat, r, &ctx.base_url, &proj)));
    }
    if failures.len() == 2 {
        return Err(ApiError::Scim(failures.remove(0)));
    }
    let page = ListOutcome { total: Some(total), start_index: Some(start), items: Vec::new(), next_cursor: None };
    Ok(json_response(StatusCode::OK, &page.to_json(resources)))
}
