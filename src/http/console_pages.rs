//! The operator console's pages (issue 21), as maud templates: checked when scimd is
//! compiled, every value escaped. No script; forms and links only.

use hyper::StatusCode;
use maud::{html, Markup, DOCTYPE};

use super::console::{html as page, Page};
use super::context::AppState;
use super::recent::{Failure, Hour};
use crate::clock::UtcMillis;
use crate::scim::activity::{self, EventRecord, EventSearch};
use crate::tenant::{Tenant, TenantId};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}header{background:#1f2937;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}header a{color:#fff}main{padding:16px}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f4f6}.bad{color:#b91c1c;font-weight:600}.ok{color:#15803d}pre{white-space:pre-wrap;max-width:70em;margin:0}form.inline{display:inline}code{font-size:13px}";
/// Events per page of the activity log.
const LOG_PAGE: u32 = 100;

fn layout(title: &str, csrf: Option<&str>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — scimd console" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "scimd" }
                    @if let Some(csrf) = csrf {
                        a href="/console/" { "Tenants" }
                        a href="/console/failures" { "Failures" }
                        form.inline method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
    .into_string()
}

pub fn message(title: &str, text: &str) -> String {
    layout(title, None, html! { p { (text) } p { a href="/console/login" { "Log in" } } })
}

pub fn login(csrf: &str, error: Option<&str>) -> String {
    layout(
        "Log in",
        None,
        html! {
            @if let Some(e) = error { p.bad { (e) } }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Operator password " input type="password" name="password" autocomplete="current-password" autofocus; }
                " "
                button type="submit" { "Log in" }
            }
        },
    )
}

fn not_found(csrf: &str, what: &str) -> Page {
    page(StatusCode::NOT_FOUND, layout("Not found", Some(csrf), html! { p { (what) } }))
}

/// The pages behind the login, by path.
pub async fn route(state: &AppState, path: &str, query: Option<&str>, csrf: &str) -> Page {
    let parts: Vec<&str> = path.trim_start_matches("/console/").split('/').collect();
    let tenant = |id: &str| TenantId::parse(id);
    match parts.as_slice() {
        [""] => page(StatusCode::OK, Box::pin(overview(state, csrf)).await),
        ["failures"] => page(StatusCode::OK, layout("Provisioning failures", Some(csrf), failures_table(&state.recent.failures(None, 200), true))),
        ["t", id, rest @ ..] => {
            let Some(id) = tenant(id) else { return not_found(csrf, "No such tenant.") };
            let Ok(Some(t)) = state.tenants.get(&id).await else { return not_found(csrf, "No such tenant.") };
            match rest {
                [] => page(StatusCode::OK, Box::pin(tenant_page(state, &t, csrf)).await),
                ["log"] => page(StatusCode::OK, Box::pin(log_page(&t, query, csrf)).await),
                ["shadow"] => shadow_page(state, &id, csrf).await,
                ["users", uid] => Box::pin(resource_page(&t, "User", uid, csrf)).await,
                ["groups", gid] => Box::pin(resource_page(&t, "Group", gid, csrf)).await,
                _ => not_found(csrf, "No such page."),
            }
        }
        _ => not_found(csrf, "No such page."),
    }
}

/// One tenant's row of the overview.
struct Row {
    id: String,
    users: i64,
    active: i64,
    groups: i64,
    /// (in use, seats) for Creator and Creator Float; `None` for a closed tenant.
    seats: Option<((i64, u32), (i64, u32))>,
    /// (owner, days left) of each live token.
    tokens: Vec<(String, i64)>,
    warn_days: i64,
    shadow: bool,
}

async fn overview(state: &AppState, csrf: &str) -> String {
    let now = (state.clock)();
    let mut rows = Vec::new();
    let open = state.tenants.open_tenants();
    for t in &open {
        let settings = t.settings();
        let o = activity::overview(t).await.unwrap_or_default();
        let tokens = crate::auth::token::live(t, now).await.unwrap_or_default();
        rows.push(Row {
            id: t.id.to_string(),
            users: o.users,
            active: o.active_users,
            groups: o.groups,
            seats: Some(((o.creator_in_use, settings.creator), (o.creator_float_in_use, settings.creator_float))),
            tokens: tokens.iter().map(|k| (k.user_name.clone(), crate::auth::token::days_left(&k.expires_at, now))).collect(),
            warn_days: i64::from(settings.token_warn_days),
            shadow: t.in_shadow().unwrap_or(true),
        });
    }
    let warn_days = i64::from(crate::tenant::TenantSettings::default().token_warn_days);
    for (id, s) in activity::closed_tenants(&state.tenants, &open).await {
        let shadow = TenantId::parse(&id).is_some_and(|tid| crate::tenant::shadow::Files::of(state.tenants.data(), &tid).active());
        let tokens = s.tokens.iter().map(|k| (k.owner.clone(), crate::auth::token::days_left(&k.expires_at, now))).filter(|(_, d)| *d >= 0).collect();
        rows.push(Row { id, users: s.users, active: s.active_users, groups: s.groups, seats: None, tokens, warn_days, shadow });
    }
    drop(open);
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let faults = state.tenants.data().faults().snapshot();
    layout(
        "Tenants",
        Some(csrf),
        html! {
            @if !faults.is_empty() {
                h2 class="bad" { "Faults" }
                p { "The IdP gets 503 with Retry-After for these until their cause is gone." }
                table {
                    tr { th { "Tenant" } th { "Fault" } th { "Since" } th { "Times" } th { "Detail" } th { "What to do" } }
                    @for f in &faults {
                        tr {
                            td { a href={ "/console/t/" (f.tenant) } { (f.tenant) } }
                            td class="bad" { (f.fault) } td { (f.since) } td { (f.count) } td { (f.detail) } td { (f.hint) }
                        }
                    }
                }
            }
            p { (rows.len()) " tenants. Seats of a tenant that is not open show on its page." }
            table {
                tr { th { "Tenant" } th { "Users" } th { "Active" } th { "Groups" } th { "Creator used/free" } th { "Creator Float used/free" } th { "Tokens (days left)" } th { "Last IdP request" } th { "Errors (24 h)" } }
                @for r in &rows {
                    @let last = state.recent.last(&r.id);
                    @let errors = state.recent.failures_last_day(&r.id, now);
                    tr {
                        td { a href={ "/console/t/" (r.id) } { (r.id) } @if r.shadow { " (shadow mode)" } }
                        td { (r.users) } td { (r.active) } td { (r.groups) }
                        @match r.seats {
                            Some(((c, cs), (f, fs))) => {
                                td class=[(c >= i64::from(cs)).then_some("bad")] { (c) " / " (i64::from(cs) - c) }
                                td class=[(f >= i64::from(fs)).then_some("bad")] { (f) " / " (i64::from(fs) - f) }
                            }
                            None => { td { "—" } td { "—" } }
                        }
                        td { @for (owner, days) in &r.tokens { span class=[(*days < r.warn_days).then_some("bad")] { (owner) ": " (days) } " " } }
                        td { @match &last { Some(l) => { (l.at.to_rfc3339()) " " (l.method) " " span class=(if l.status < 400 { "ok" } else { "bad" }) { (l.status) } } None => { "—" } } }
                        td class=[(errors > 0).then_some("bad")] { (errors) }
                    }
                }
            }
            h2 { "Requests and failures per hour (all tenants, last 24 h)" }
            (chart(&state.recent.per_hour(None, now)))
        },
    )
}

fn failures_table(failures: &[Failure], with_tenant: bool) -> Markup {
    html! {
        @if failures.is_empty() { p { "No refused SCIM request since the server started." } }
        @else {
            table {
                tr { th { "Time" } @if with_tenant { th { "Tenant" } } th { "Request" } th { "Status" } th { "scimType" } th { "Detail" } th { "Account" } }
                @for f in failures {
                    tr {
                        td { (f.at.to_rfc3339()) }
                        @if with_tenant { td { a href={ "/console/t/" (f.tenant) } { (f.tenant) } } }
                        td { code { (f.method) " " (f.path) } }
                        td.bad { (f.status) }
                        td { (f.scim_type.unwrap_or("")) }
                        td { (f.detail) }
                        td { (f.account) }
                    }
                }
            }
        }
    }
}

/// Requests (grey) and failures (red) per hour as an SVG bar chart.
fn chart(hours: &[Hour]) -> Markup {
    let max = u64::from(hours.iter().map(|h| h.requests).max().unwrap_or(0).max(1));
    let (w, h) = (24 * 20, 120u32);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h + 20) role="img" aria-label="requests and failures per hour" {
            @for (i, hour) in hours.iter().enumerate() {
                @let x = i as u32 * 20;
                @let rh = u64::from(hour.requests) * u64::from(h) / max;
                @let fh = u64::from(hour.failures) * u64::from(h) / max;
                rect x=(x + 2) y=(u64::from(h) - rh) width="16" height=(rh) fill="#9ca3af" { title { (hour.requests) " requests" } }
                rect x=(x + 2) y=(u64::from(h) - fh) width="16" height=(fh) fill="#dc2626" { title { (hour.failures) " failures" } }
                @if i % 6 == 0 { text x=(x) y=(h + 15) font-size="10" { (UtcMillis(hour.hour * 3_600_000).to_rfc3339().get(11..16).unwrap_or("")) } }
            }
        }
    }
}

async fn tenant_page(state: &AppState, t: &Tenant, csrf: &str) -> String {
    let now = (state.clock)();
    let s = t.settings();
    let o = activity::overview(t).await.unwrap_or_default();
    let tokens = crate::auth::token::live(t, now).await.unwrap_or_default();
    let id = t.id.as_str();
    layout(
        &format!("Tenant {id}"),
        Some(csrf),
        html! {
            @if t.in_shadow().unwrap_or(true) { p.bad { "In shadow mode: its SCIM requests run against a rehearsal. " a href={ "/console/t/" (id) "/shadow" } { "What it would change" } } }
            p { a href={ "/console/t/" (id) "/log" } { "Activity log" } }
            table {
                tr { th { "Users" } td { (o.users) } } tr { th { "Active users" } td { (o.active_users) } } tr { th { "Groups" } td { (o.groups) } }
                tr { th { "Creator seats used / free" } td { (o.creator_in_use) " / " (i64::from(s.creator) - o.creator_in_use) } }
                tr { th { "Creator Float seats used / free" } td { (o.creator_float_in_use) " / " (i64::from(s.creator_float) - o.creator_float_in_use) } }
            }
            h2 { "Settings (tenant.toml)" }
            table {
                tr { th { "delete_mode" } td { (format!("{:?}", s.delete_mode).to_lowercase()) } }
                tr { th { "require_username_is_email" } td { (s.require_username_is_email) } }
                tr { th { "group_conflict" } td { (format!("{:?}", s.group_conflict).to_lowercase()) } }
                tr { th { "dialect" } td { (format!("{:?}", s.dialect).to_lowercase()) } }
                tr { th { "token_lifetime_days / token_warn_days" } td { (s.token_lifetime_days) " / " (s.token_warn_days) } }
                tr { th { "policies" } td { pre { (format!("{:#?}", s.policies)) } } }
            }
            h2 { "Bearer tokens" }
            @if tokens.is_empty() { p { "None." } }
            table {
                @for k in &tokens {
                    @let days = crate::auth::token::days_left(&k.expires_at, now);
                    tr { td { (k.user_name) } td class=[(days < i64::from(s.token_warn_days)).then_some("bad")] { "expires " (k.expires_at) " (" (days) " days)" } }
                }
            }
            h2 { "Requests and failures per hour (last 24 h)" }
            (chart(&state.recent.per_hour(Some(id), now)))
            h2 { "Provisioning failures" }
            (failures_table(&state.recent.failures(Some(id), 100), false))
        },
    )
}

/// `?user=&group=&kind=&since=&after=` from the query string.
fn search_of(query: Option<&str>) -> EventSearch {
    let mut s = EventSearch { limit: LOG_PAGE, ..Default::default() };
    for (k, v) in query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
        let v = percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().trim().to_string();
        if v.is_empty() {
            continue;
        }
        match k {
            "user" => s.user = Some(v),
            "group" => s.group = Some(v),
            "kind" => s.kind = Some(v),
            "since" => s.since = Some(v),
            "after" => s.after = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    s
}

fn events_table(t: &Tenant, events: &[EventRecord]) -> Markup {
    let id = t.id.as_str();
    html! {
        table {
            tr { th { "#" } th { "Time" } th { "By" } th { "Action" } th { "Resource" } th { "Detail" } }
            @for e in events {
                tr {
                    td { (e.seq) } td { (e.at) } td { (e.principal) } td { (e.action) }
                    td {
                        @match e.resource_type.as_str() {
                            "User" => { a href={ "/console/t/" (id) "/users/" (e.resource_id) } { "User " (e.resource_id) } }
                            "Group" => { a href={ "/console/t/" (id) "/groups/" (e.resource_id) } { "Group " (e.resource_id) } }
                            other => { (other) " " (e.resource_id) }
                        }
                    }
                    td { pre { (e.detail.to_string()) } }
                }
            }
        }
    }
}

async fn log_page(t: &Tenant, query: Option<&str>, csrf: &str) -> String {
    let search = search_of(query);
    let found = activity::search(t, search.clone()).await;
    let id = t.id.as_str();
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    layout(
        &format!("Activity log of {id}"),
        Some(csrf),
        html! {
            form method="get" action={ "/console/t/" (id) "/log" } {
                label { "User " input name="user" value=(field(&search.user)); } " "
                label { "Group " input name="group" value=(field(&search.group)); } " "
                label { "Kind " input name="kind" placeholder="create, update, link, …" value=(field(&search.kind)); } " "
                label { "Since " input name="since" placeholder="2026-11-01T00:00:00Z" value=(field(&search.since)); } " "
                button type="submit" { "Search" }
            }
            @match &found {
                Err(e) => { p.bad { (e.detail) } }
                Ok(events) => {
                    @if events.is_empty() { p { "No events." } }
                    @else {
                        (events_table(t, events))
                        @if events.len() as u32 == LOG_PAGE {
                            @let next = format!("/console/t/{id}/log?user={}&group={}&kind={}&since={}&after={}",
                                enc(&field(&search.user)), enc(&field(&search.group)), enc(&field(&search.kind)), enc(&field(&search.since)), events.last().map(|e| e.seq).unwrap_or(0));
                            p { a href=(next) { "Next page" } }
                        }
                    }
                }
            }
        },
    )
}

/// The shadow report (issue 20) of a tenant in shadow mode, as `scimd shadow report` prints it.
async fn shadow_page(state: &AppState, id: &TenantId, csrf: &str) -> Page {
    let (data, tid) = (state.tenants.data().clone(), id.clone());
    let built = tokio::task::spawn_blocking(move || crate::ops::shadow::build(&data, &tid)).await;
    match built {
        Ok(Ok(Some(report))) => page(
            StatusCode::OK,
            layout(&format!("Shadow report of {id}"), Some(csrf), html! { pre { (crate::ops::shadow::render_text(&report)) } }),
        ),
        Ok(Ok(None)) => not_found(csrf, "This tenant is not in shadow mode."),
        Ok(Err(e)) => page(StatusCode::INTERNAL_SERVER_ERROR, layout("Shadow report", Some(csrf), html! { p.bad { (e.to_string()) } })),
        Err(_) => page(StatusCode::INTERNAL_SERVER_ERROR, layout("Shadow report", Some(csrf), html! { p.bad { "the report failed" } })),
    }
}

fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn resource_page(t: &Tenant, kind: &str, rid: &str, csrf: &str) -> Page {
    let found = match kind {
        "User" => crate::scim::users::get(t, rid, true).await,
        _ => crate::scim::groups::get(t, rid, false).await,
    };
    let history = activity::history(t, rid, 500).await.unwrap_or_default();
    let Ok(res) = found else {
        // A deleted resource still has its history.
        if history.is_empty() {
            return not_found(csrf, "No such resource.");
        }
        return page(StatusCode::OK, layout(&format!("{kind} {rid} (deleted)"), Some(csrf), html! { h2 { "History" } (events_table(t, &history)) }));
    };
    let name = res.attrs.get(if kind == "User" { "userName" } else { "displayName" }).and_then(|v| v.as_str()).unwrap_or(rid).to_string();
    let attrs = serde_json::to_string_pretty(&res.attrs).unwrap_or_default();
    page(
        StatusCode::OK,
        layout(
            &format!("{kind} {name}"),
            Some(csrf),
            html! {
                p { "id " code { (res.id) } ", created " (res.created) ", last modified " (res.last_modified) ", version " (res.version) }
                pre { (attrs) }
                h2 { "History" }
                (events_table(t, &history))
            },
        ),
    )
}
