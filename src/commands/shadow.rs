//! `scimd shadow start|report|promote|discard` (issue 20). A switch (start, promote,
//! discard) is asked of the running server through its command socket (`control.rs`), which
//! does it between requests; with no server running, the command does it itself. The
//! report only reads files, the server's or not.

use serde::{Deserialize, Serialize};

use super::{control, data_dir, runtime, tenant_id, CommandError};
use crate::cli::ShadowCommand;
use crate::ops::shadow as report;
use crate::tenant::shadow::{Files, ShadowError};
use crate::tenant::{DataDir, Tenant};

/// A change of where a tenant's SCIM requests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Start,
    Promote,
    Discard,
}

pub fn run(command: ShadowCommand) -> Result<(), CommandError> {
    match command {
        ShadowCommand::Start { on } => switch(&data_dir(&on.place)?, &on.tenant, Switch::Start),
        ShadowCommand::Promote { on } => switch(&data_dir(&on.place)?, &on.tenant, Switch::Promote),
        ShadowCommand::Discard { on } => switch(&data_dir(&on.place)?, &on.tenant, Switch::Discard),
        ShadowCommand::Report { on, json } => print_report(&data_dir(&on.place)?, &on.tenant, json),
    }
}

fn switch(data: &DataDir, tenant: &str, what: Switch) -> Result<(), CommandError> {
    let id = tenant_id(data, tenant)?;
    let said = match control::ask(data, &control::Request::Shadow { tenant: id.to_string(), switch: what })? {
        Some(answer) => answer?,
        // No server answers: unless one runs (without its socket), nothing else has the
        // tenant open, and the lock keeps one from starting until this is done.
        None => {
            let Some(_lock) = control::no_server(data) else {
                return Err(format!("a server runs on {} but its command socket {} does not answer; stop it, or fix the socket (see its log)", data.root().display(), data.control_socket().display()).into());
            };
            runtime()?.block_on(async {
                let tenant = match Tenant::open(data, &id) {
                    Ok(t) => t,
                    Err(e) => return discard_unopened(data, &id, what, e).map_err(CommandError::Failed),
                };
                let done = perform(&tenant, data, what).await;
                tenant.close();
                done.map_err(|e| CommandError::Failed(e.to_string()))
            })?
        }
    };
    println!("{said}");
    Ok(())
}

/// A tenant that cannot be opened: a rehearsal whose copy is gone or broken keeps it shut
/// (its IdP must not reach live), and discarding that rehearsal is the way out. Nothing
/// has the tenant open (it did not open), so its files may go.
pub fn discard_unopened(data: &DataDir, id: &crate::tenant::TenantId, what: Switch, why: crate::store::StoreError) -> Result<String, String> {
    let files = Files::of(data, id);
    if what != Switch::Discard || !files.active() {
        return Err(why.to_string());
    }
    files.clean_up().map_err(|e| e.to_string())?;
    Ok(format!("tenant {id}: the rehearsal is discarded (it could not be opened: {why})"))
}

/// Does `what` to an open tenant (in the server, or in this command); what to tell the operator.
pub async fn perform(tenant: &Tenant, data: &DataDir, what: Switch) -> Result<String, ShadowError> {
    let id = &tenant.id;
    Ok(match what {
        Switch::Start => {
            let info = tenant.shadow_start(data).await?;
            format!(
                "tenant {id}: shadow mode started at {}. Its SCIM requests now run against a copy; the live database does not change. \
                 Run the IdP's sync, then: scimd shadow report --tenant {id}",
                info.started_at
            )
        }
        Switch::Promote => {
            let info = tenant.shadow_promote(data).await?;
            format!("tenant {id}: the rehearsal started at {} is live; SCIM requests run against the live database again", info.started_at)
        }
        Switch::Discard => {
            tenant.shadow_discard().await?;
            format!("tenant {id}: the rehearsal is discarded; SCIM requests run against the live database again")
        }
    })
}

fn print_report(data: &DataDir, tenant: &str, json: bool) -> Result<(), CommandError> {
    let id = tenant_id(data, tenant)?;
    let Some(r) = report::build(data, &id).map_err(|e| CommandError::Failed(e.to_string()))? else {
        return Err(format!("tenant {id} is not in shadow mode (scimd shadow start --tenant {id})").into());
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report::render_text(&r));
    }
    Ok(())
}
