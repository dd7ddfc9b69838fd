//! Operator commands over a tenant's data: show/delete tenants, list/show users and groups,
//! (de)activate users, import, sanitize, backup, restore, check.

use super::CommandError;
use std::path::Path;

use serde_json::{json, Value};

use crate::clock::UtcMillis;
use crate::model::{License, Role};
use crate::ops::{import, maintenance, sanitize};
use crate::store::events::{self, Action};
use crate::store::{groups, users};
use super::{open, tenant_id};
use crate::tenant::DataDir;

fn print_json(v: &impl serde::Serialize) -> Result<(), CommandError> {
    println!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    Ok(())
}

pub async fn tenant_show(data: &DataDir, id: &str, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, id)?;
    let s = tenant.settings();
    let counts = tenant
        .store
        .read(|conn| {
            let c = crate::store::maintenance::tenant_counts(conn)?;
            Ok(json!({
                "users": c.users,
                "active_users": c.active_users,
                "deleted_users": c.deleted_users,
                "groups": c.groups,
                "creator_in_use": c.creator_in_use,
                "creator_float_in_use": c.creator_float_in_use,
                "schema_version": c.schema_version,
            }))
        })
        .await
        ?;
    let fingerprint = tenant.keys.current().map(|k| k.fingerprint.clone());
    // Shadow mode (issue 20): when the rehearsal started, or null.
    let shadow = tenant.shadow_files().info().map_err(|e| e.to_string())?.map(|i| json!({"started_at": i.started_at}));
    let info = json!({
        "tenant": tenant.id.to_string(),
        "counts": counts,
        "seats": {"creator": s.creator, "creator_float": s.creator_float},
        "delete_mode": format!("{:?}", s.delete_mode).to_lowercase(),
        "require_username_is_email": s.require_username_is_email,
        "group_conflict": format!("{:?}", s.group_conflict).to_lowercase(),
        "token_signing_key": fingerprint,
        "shadow": shadow,
    });
    tenant.close();
    if as_json {
        return print_json(&info);
    }
    println!("tenant {}", tenant.id);
    for (k, v) in info.as_object().into_iter().flatten().filter(|(k, _)| *k != "tenant") {
        println!("  {k}: {v}");
    }
    Ok(())
}

pub async fn tenant_delete(data: &DataDir, id: &str, yes: bool) -> Result<(), CommandError> {
    let id = tenant_id(data, id)?;
    if !yes {
        return Err(format!("deleting tenant {id} removes its users, groups, tokens and keys; run again with --yes (a backup is kept)").into());
    }
    let backup = maintenance::backup_before_delete(data, &id)?;
    std::fs::remove_dir_all(data.tenant_dir(&id))?;
    data.catalogue().forget(id.as_str())?;
    println!("deleted tenant {id}; its database was backed up to {}", backup.display());
    Ok(())
}

pub async fn user_list(data: &DataDir, tenant: &str, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let list = tenant.store.read(|db| users::summaries(db)).await?;
    tenant.close();
    if as_json {
        return print_json(&list);
    }
    println!("{:<36} {:<7} {:<14} {:<6} {:<6} STATE", "USERNAME", "ACTIVE", "LICENSE", "AUTH", "BY");
    for u in list {
        let state = if u.deleted { "deleted" } else if u.role == Role::OrgAdmin { "org admin" } else { "" };
        println!("{:<36} {:<7} {:<14} {:<6} {:<6} {state}", u.username, u.active, u.license, u.auth_type, u.managed_by);
    }
    Ok(())
}

pub async fn user_show(data: &DataDir, tenant: &str, username: &str, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let name = username.to_string();
    let found = tenant
        .store
        .read(move |conn| {
            let Some(account) = users::find_account(conn, &name)? else { return Ok(None) };
            let res = users::get(conn, &account.id, true)?;
            Ok(Some(json!({"id": res.id, "attributes": res.attrs, "created": res.created, "lastModified": res.last_modified, "role": account.role})))
        })
        .await
        ?;
    tenant.close();
    let info = found.ok_or_else(|| format!("no user named {username}"))?;
    if as_json {
        print_json(&info)
    } else {
        println!("{}", serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// Operator (de)activation, with the licence seat following it.
pub async fn user_set_active(data: &DataDir, tenant: &str, username: &str, active: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let settings = tenant.settings();
    let (name, now) = (username.to_string(), UtcMillis::now().to_rfc3339());
    tenant
        .store
        .write(move |conn| {
            let account = users::find_account(conn, &name)?.ok_or_else(|| crate::store::StoreError::NotFound(format!("no user named {name}")))?;
            users::set_active(conn, &account.id, active, &now)?;
            let action = if active { Action::Reactivate } else { Action::Deactivate };
            events::record(conn, &now, "cli", action, "User", &account.id, &json!({"before": {"active": account.active}, "after": {"active": active}}))?;
            if active {
                crate::scim::users::assign_seat(conn, &account.id, &settings, "cli", &now)?;
            } else {
                let license = users::origin_of(conn, &account.id)?.license;
                if license != License::None {
                    users::set_license(conn, &account.id, License::None, &now)?;
                    events::record(conn, &now, "cli", Action::License, "User", &account.id, &json!({"before": license, "after": License::None}))?;
                }
            }
            Ok(())
        })
        .await
        ?;
    tenant.close();
    println!("{username} is now {}", if active { "active" } else { "inactive" });
    Ok(())
}

pub async fn group_list(data: &DataDir, tenant: &str, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let list = tenant.store.read(|db| groups::summaries(db)).await?;
    tenant.close();
    if as_json {
        return print_json(&list);
    }
    println!("{:<36} {:<8} {:<6} {:>8} POLICY", "NAME", "SCOPE", "BY", "MEMBERS");
    for g in list {
        println!("{:<36} {:<8} {:<6} {:>8} {}", g.name, g.scope, g.managed_by, g.members, if g.ignored { "ignored" } else { "" });
    }
    Ok(())
}

pub async fn group_show(data: &DataDir, tenant: &str, name: &str, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let n = name.to_string();
    let found = tenant
        .store
        .read(move |conn| {
            let Some(g) = groups::state_by_name(conn, &n)? else { return Ok(None) };
            let members: Vec<Value> = groups::member_names(conn, g.pk)?.into_iter().map(|(u, s)| json!({"username": u, "source": s})).collect();
            Ok(Some(json!({"id": g.id, "name": g.display_name, "scope": g.scope, "managed_by": g.managed_by, "ignored": g.ignored, "members": members})))
        })
        .await
        ?;
    tenant.close();
    let info = found.ok_or_else(|| format!("no group named {name}"))?;
    if as_json {
        return print_json(&info);
    }
    println!("{} ({} group, managed by {}{})", info["name"].as_str().unwrap_or_default(), info["scope"].as_str().unwrap_or_default(), info["managed_by"].as_str().unwrap_or_default(), if info["ignored"] == true { ", ignored by policy" } else { "" });
    for m in info["members"].as_array().into_iter().flatten() {
        println!("  {} ({})", m["username"].as_str().unwrap_or_default(), m["source"].as_str().unwrap_or_default());
    }
    Ok(())
}

pub async fn import(data: &DataDir, tenant: &str, file: &Path, as_json: bool) -> Result<(), CommandError> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let is_json = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) || text.trim_start().starts_with('[');
    let rows = if is_json { import::rows_from_json(&text)? } else { import::rows_from_csv(&text)? };
    let tenant = open(data, tenant)?;
    let now = UtcMillis::now().to_rfc3339();
    let bar = super::progress::Bar::new("import", "rows", rows.len() as u64);
    let report = tenant.store.write(move |conn| import::apply(conn, &rows, &now, &|done| bar.set(done as u64))).await?;
    tenant.close();
    if as_json {
        return print_json(&report);
    }
    println!("created {}, updated {}, skipped {}", report.created.len(), report.updated.len(), report.skipped.len());
    for s in &report.skipped {
        println!("  skipped {}: {}", s.username, s.reason);
    }
    Ok(())
}

/// `tenant drop-attributes`: the stored values of custom attributes tenant.toml no longer
/// declares, listed, or with `apply` removed in one transaction with an event per user.
pub async fn drop_attributes(data: &DataDir, tenant: &str, apply: bool, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let cat = crate::scim::schema::Catalogue::of(crate::model::ResourceKind::User, &tenant.settings());
    let now = UtcMillis::now().to_rfc3339();
    let found = tenant
        .store
        .write(move |conn| {
            let keep = |urn: &str, name: &str, value: &Value| crate::scim::resource::fits(cat, urn, name, value);
            let found = crate::store::custom::undeclared(conn, keep, apply, &now)?;
            if apply {
                for user in &found {
                    events::record(conn, &now, "cli", Action::Update, "User", &user.id, &json!({"dropped": user.attributes}))?;
                }
            }
            Ok(found)
        })
        .await?;
    tenant.close();
    if as_json {
        return print_json(&json!({"applied": apply, "users": found}));
    }
    for user in &found {
        println!("{:<36} {}", user.user_name, user.attributes.join(", "));
    }
    match (apply, found.len()) {
        (_, 0) => println!("no user holds a value of an attribute tenant.toml does not declare"),
        (true, n) => println!("removed those values from {n} user(s)"),
        (false, n) => println!("{n} user(s) hold values tenant.toml no longer declares; run again with --apply to remove them"),
    }
    Ok(())
}

pub async fn sanitize(data: &DataDir, tenant: &str, mode: sanitize::AuthMode, apply: bool, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let now = UtcMillis::now().to_rfc3339();
    let report = tenant
        .store
        .write(move |conn| {
            let analysis = sanitize::analyse(&users::sanitize_candidates(conn)?, mode);
            let mut report = analysis.report;
            if apply {
                // One transaction: all of the safe renames, or none.
                let bar = super::progress::Bar::new("sanitize", "users", analysis.plan.len() as u64);
                for (done, (id, old, new)) in analysis.plan.iter().enumerate() {
                    bar.set(done as u64);
                    users::rename(conn, id, new, &now)?;
                    events::record(conn, &now, "sanitize", Action::Update, "User", id, &json!({"before": {"userName": old}, "after": {"userName": new}}))?;
                    report.applied.push(old.clone());
                }
                bar.set(analysis.plan.len() as u64);
            }
            Ok(report)
        })
        .await
        ?;
    tenant.close();
    if as_json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{} user(s) need userName := email:", report.needs_update.len());
    for n in &report.needs_update {
        println!("  {:<36} -> {:<36} ({})", n.username, n.email, n.reason);
    }
    println!("{} clashing pair(s), left for a person to decide:", report.clashes.len());
    for c in &report.clashes {
        println!("  {} / {} ({})", c.usernames[0], c.usernames[1], c.rule);
    }
    if apply {
        println!("applied to {} user(s)", report.applied.len());
    } else {
        println!("nothing changed; run again with --apply to update the users in no clashing pair");
    }
    Ok(())
}

pub fn backup(data: &DataDir, tenant: &str, out: &Path) -> Result<(), CommandError> {
    let id = tenant_id(data, tenant)?;
    let bar = super::progress::Bar::new("backup", "pages", 0);
    maintenance::backup(data, &id, out, &|done, all| {
        bar.set_total(all);
        bar.set(done);
    })?;
    println!("backed up tenant {id} to {} (integrity ok)", out.display());
    Ok(())
}

pub fn restore(data: &DataDir, tenant: &str, from: &Path, yes: bool) -> Result<(), CommandError> {
    let id = tenant_id(data, tenant)?;
    if !yes {
        return Err(format!("restoring replaces tenant {id}'s database; stop the server, then run again with --yes").into());
    }
    let bar = super::progress::Bar::new("restore", "pages", 0);
    maintenance::restore(data, &id, from, &|done, all| {
        bar.set_total(all);
        bar.set(done);
    })?;
    println!("restored tenant {id} from {} (integrity ok)", from.display());
    Ok(())
}

/// Whether the settings fit this shell's hard open-file limit, which `serve` raises itself
/// to. A warning, not an error: the service may run under another (the unit's LimitNOFILE).
fn open_files_finding((max_connections, max_open): (usize, usize)) -> maintenance::Finding {
    let need = super::rlimit::budget(max_connections, max_open);
    match super::rlimit::hard_limit() {
        Some(hard) => match super::rlimit::does_not_fit(hard, max_connections, max_open) {
            Some(why) => maintenance::Finding { level: maintenance::Level::Warn, what: format!("{why} (this shell's hard limit; the service's may differ)") },
            None => maintenance::Finding { level: maintenance::Level::Ok, what: format!("open files: serve needs at most {need}, the hard limit is {hard}") },
        },
        None => maintenance::Finding { level: maintenance::Level::Warn, what: format!("open files: serve needs at most {need}; cannot read the limit") },
    }
}

/// What the server running on `data` meets now (its fault board, through the command
/// socket): a full disk or a damaged tenant as the IdP's requests found it.
fn server_faults(data: &DataDir) -> Vec<maintenance::Finding> {
    use maintenance::{Finding, Level};
    match super::control::ask(data, &super::control::Request::Faults) {
        Ok(None) => Vec::new(),
        Ok(Some(Ok(text))) => match serde_json::from_str::<Vec<serde_json::Value>>(&text) {
            Ok(faults) if faults.is_empty() => vec![Finding::new(Level::Ok, "the running server reports no faults")],
            Ok(faults) => faults
                .iter()
                .map(|f| {
                    let field = |k: &str| f.get(k).and_then(serde_json::Value::as_str).unwrap_or("?").to_string();
                    let count = f.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0);
                    Finding::new(
                        Level::Error,
                        format!("tenant {}: the running server reports {} since {} ({count} times): {}; {}", field("tenant"), field("fault"), field("since"), field("detail"), field("hint")),
                    )
                })
                .collect(),
            Err(e) => vec![Finding::new(Level::Warn, format!("the running server's faults are not understood: {e}"))],
        },
        Ok(Some(Err(e))) | Err(e) => vec![Finding::new(Level::Warn, format!("cannot ask the running server for its faults: {e}"))],
    }
}

/// What the ACME renewal loop last recorded (`DATA_DIR/acme/state.json`), when it runs or ran.
fn acme_findings(paths: &crate::tenant::AcmePaths) -> Vec<maintenance::Finding> {
    use maintenance::{Finding, Level};
    let Some(s) = crate::acme::State::read(paths) else {
        let why = match paths.state.exists() {
            true => "unreadable or damaged",
            false => "nothing recorded yet (the server has not run with ACME)",
        };
        return vec![Finding::new(Level::Warn, format!("ACME: {}: {why}", paths.state.display()))];
    };
    let names = s.domains.join(", ");
    let mut out = Vec::new();
    match (&s.not_after, &s.last_success) {
        (Some(until), last) => out.push(Finding::new(
            Level::Ok,
            format!(
                "ACME: certificate for {names} from {} by {}, valid until {until}, renewal from {}{}",
                s.directory,
                s.challenge,
                s.renew_at.as_deref().unwrap_or("?"),
                last.as_deref().map(|t| format!("; last obtained {t}")).unwrap_or_default()
            ),
        )),
        (None, _) => out.push(Finding::new(Level::Error, format!("ACME: no certificate obtained yet for {names} from {}", s.directory))),
    }
    if s.failures > 0 {
        let level = if s.not_after.is_none() { Level::Error } else { Level::Warn };
        out.push(Finding::new(
            level,
            format!(
                "ACME: {} failed orders, the last at {}: {}; next attempt {}",
                s.failures,
                s.last_failure.as_deref().unwrap_or("?"),
                s.last_error.as_deref().unwrap_or("?"),
                s.next_attempt.as_deref().unwrap_or("?")
            ),
        ));
    }
    out
}

/// Returns Err when something is wrong, so the exit status is non-zero.
pub fn check(
    data: &DataDir,
    cert: Option<&Path>,
    config: Option<Result<(std::path::PathBuf, crate::config::ServeConfig), String>>,
    as_json: bool,
) -> Result<(), CommandError> {
    let mut findings = Vec::new();
    let config_limits = match &config {
        Some(Ok((_, c))) => (c.limits.max_connections, c.tenants.max_open),
        _ => (crate::config::DEFAULT_MAX_CONNECTIONS, crate::tenant::registry::DEFAULT_MAX_OPEN_TENANTS),
    };
    // Under ACME the certificate checked is the one it keeps.
    // A configuration without ACME makes a state file left from an earlier ACME run stale:
    // it is not reported. Without a configuration, the state file says ACME is in use.
    let acme_configured = match &config {
        Some(Ok((_, c))) => Some(c.acme.is_some()),
        _ => None,
    };
    let acme_paths = data.acme();
    let acme_in_use = acme_configured.unwrap_or_else(|| acme_paths.state.exists());
    let acme_cert = (cert.is_none() && acme_in_use && acme_paths.cert.exists()).then_some(acme_paths.cert.as_path());
    let acme = if acme_in_use { acme_findings(&acme_paths) } else { Vec::new() };
    match config {
        Some(Ok((path, _))) => findings.push(maintenance::Finding { level: maintenance::Level::Ok, what: format!("configuration {}", path.display()) }),
        Some(Err(e)) => findings.push(maintenance::Finding { level: maintenance::Level::Error, what: format!("configuration: {e}") }),
        None => {}
    }
    findings.extend(maintenance::check(data, cert.or(acme_cert), UtcMillis::now()));
    findings.extend(acme);
    findings.extend(server_faults(data));
    findings.push(open_files_finding(config_limits));
    let worst = findings.iter().map(|f| f.level).max().unwrap_or(maintenance::Level::Ok);
    for f in &findings {
        let level = match f.level {
            maintenance::Level::Ok => "OK",
            maintenance::Level::Warn => "WARN",
            maintenance::Level::Error => "ERROR",
        };
        if as_json {
            println!("{}", json!({"level": level, "finding": f.what}));
        } else {
            println!("{level:<5} {}", f.what);
        }
    }
    if worst == maintenance::Level::Ok {
        Ok(())
    } else {
        Err(format!("{} finding(s) need attention", findings.iter().filter(|f| f.level != maintenance::Level::Ok).count()).into())
    }
}
