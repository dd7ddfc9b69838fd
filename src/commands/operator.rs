//! Operator commands on users, groups and the activity log (`scimd user …`,
//! `scimd group add`, `scimd log`). Every change is recorded as an event by "cli".

use super::CommandError;
use serde_json::{json, Value};

use crate::auth::password;
use crate::clock::UtcMillis;
use crate::model::{AuthType, GroupScope, License, ManagedBy, Role};
use crate::store::events::{self, Action, EventQuery};
use crate::store::{groups, users};
use super::open;
use crate::tenant::DataDir;

const CLI: &str = "cli";

/// A local Basic-auth user: managed by the operator until the IdP adopts it.
pub async fn add_local_user(data: &DataDir, tenant: &str, user_name: &str, email: Option<&str>, pass: Option<String>, iterations: u32) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let settings = tenant.settings();
    let hash = match pass {
        Some(p) => Some(tokio::task::spawn_blocking(move || password::hash_password(&p, iterations)).await.map_err(|e| e.to_string())?),
        None => None,
    };
    let mut doc = crate::scim::resource::Attrs::new();
    doc.insert("userName".into(), Value::String(user_name.into()));
    doc.insert("active".into(), Value::Bool(true));
    if let Some(e) = email {
        doc.insert("emails".into(), json!([{"value": e, "type": "work", "primary": true}]));
    }
    let now = UtcMillis::now().to_rfc3339();
    let id = tenant
        .store
        .write(move |conn| {
            let origin = users::UserOrigin { role: Role::User, password_hash: hash.as_deref(), license: License::None, auth_type: AuthType::Basic, managed_by: ManagedBy::Local };
            let id = users::insert(conn, &doc, &origin, &now)?;
            events::record(conn, &now, CLI, Action::Create, "User", &id, &json!({"after": doc, "managedBy": ManagedBy::Local}))?;
            crate::scim::users::assign_seat(conn, &id, &settings, CLI, &now)?;
            Ok(id)
        })
        .await
        ?;
    tenant.close();
    println!("created local user {user_name} (id {id}) in tenant {}", tenant.id);
    Ok(())
}

pub async fn set_license(data: &DataDir, tenant: &str, user_name: &str, license: License) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let (name, now) = (user_name.to_string(), UtcMillis::now().to_rfc3339());
    let before = tenant
        .store
        .write(move |conn| {
            let account = users::find_account(conn, &name)?.ok_or_else(|| crate::store::StoreError::NotFound(format!("no user named {name}")))?;
            let before = users::origin_of(conn, &account.id)?.license;
            users::set_license(conn, &account.id, license, &now)?;
            events::record(conn, &now, CLI, Action::License, "User", &account.id, &json!({"before": before, "after": license}))?;
            Ok(before)
        })
        .await
        ?;
    tenant.close();
    println!("{user_name}: licence {before} -> {license}");
    Ok(())
}

/// An operator-made group: `--project` ones are the application's and invisible to SCIM.
pub async fn add_group(data: &DataDir, tenant: &str, name: &str, project: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let scope = if project { GroupScope::Project } else { GroupScope::Org };
    let mut doc = crate::scim::resource::Attrs::new();
    doc.insert("displayName".into(), Value::String(name.into()));
    let now = UtcMillis::now().to_rfc3339();
    let id = tenant
        .store
        .write(move |conn| {
            let (_, id) = groups::insert(conn, &doc, scope, ManagedBy::Local, false, &now)?;
            events::record(conn, &now, CLI, Action::Create, "Group", &id, &json!({"after": doc, "scope": scope}))?;
            Ok(id)
        })
        .await
        ?;
    tenant.close();
    println!("created {scope} group {name} (id {id}) in tenant {}", tenant.id);
    Ok(())
}

/// `scimd log`: the activity log, optionally about one user or group and since a time.
pub async fn log(data: &DataDir, tenant: &str, user: Option<&str>, group: Option<&str>, since: Option<&str>, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let since = match since {
        Some(s) => Some(UtcMillis::parse_rfc3339(s).ok_or_else(|| format!("--since {s}: not an RFC 3339 time (e.g. 2026-11-01T00:00:00Z)"))?.to_rfc3339()),
        None => None,
    };
    let (user, group) = (user.map(str::to_string), group.map(str::to_string));
    let events = tenant
        .store
        .read(move |conn| {
            let resource_id = match (&user, &group) {
                (Some(name), _) => Some(users::find_by_user_name(conn, name)?.map(|(id, ..)| id).unwrap_or_else(|| format!("(no user {name})"))),
                (None, Some(name)) => Some(groups::state_by_name(conn, name)?.map(|g| g.id).unwrap_or_else(|| format!("(no group {name})"))),
                _ => None,
            };
            let mut all = Vec::new();
            let mut q = EventQuery { after: 0, limit: 1000, resource_id, since, action: None };
            loop {
                let page = events::list(conn, &q)?;
                let Some(last) = page.last().map(|e| e.seq) else { break };
                all.extend(page);
                q.after = last;
            }
            Ok(all)
        })
        .await
        ?;
    tenant.close();
    for e in events {
        if as_json {
            println!("{}", serde_json::to_string(&e).map_err(|e| e.to_string())?);
        } else {
            println!("{:>6} {} {:<16} {:<10} {:<10} {} {}", e.seq, e.at, e.principal, e.action, e.resource_type, e.resource_id, e.detail);
        }
    }
    Ok(())
}
