//! `scimd token …` and `scimd apiclient add`: the operator's side of the token API.

use super::CommandError;
use std::sync::Arc;

use crate::auth::token;
use crate::auth::{password, CLIENT_PREFIX};
use crate::cli::TokenAction;
use crate::clock::UtcMillis;
use crate::store::{tokens, users};
use crate::tenant::{DataDir, Tenant};

/// Token commands hand the tenant to spawned work, so they hold it in an Arc.
fn open(data: &DataDir, tenant: &str) -> Result<Arc<Tenant>, CommandError> {
    super::open(data, tenant).map(Arc::new)
}

async fn account_id(tenant: &Tenant, username: &str) -> Result<String, CommandError> {
    let name = username.to_string();
    let found = tenant.store.read(move |conn| users::find_account(conn, &name)).await?;
    Ok(found.map(|a| a.id).ok_or_else(|| format!("no account named {username} in tenant {}", tenant.id))?)
}

pub async fn run(data: &DataDir, tenant: &str, action: TokenAction, username: Option<&str>, revoke_existing: bool, as_json: bool) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let now = UtcMillis::now();
    let result = match action {
        TokenAction::Keygen => {
            let fingerprint = token::keygen(Arc::clone(&tenant), "cli", now).await?;
            println!("generated a new signing key for tenant {} ({fingerprint}); every earlier token is now invalid", tenant.id);
            Ok(())
        }
        TokenAction::DeleteKey => {
            let existed = token::delete_key(&tenant, "cli", now).await?;
            println!("{}", if existed { "deleted the signing key: every token of this tenant is now rejected" } else { "the tenant had no signing key" });
            Ok(())
        }
        TokenAction::List => {
            let live = token::live(&tenant, now).await?;
            if as_json {
                let rows: Vec<serde_json::Value> = live
                    .iter()
                    .map(|t| serde_json::json!({"owner": t.user_name, "issued": t.issued_at, "expires": t.expires_at, "days_left": token::days_left(&t.expires_at, now)}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                tenant.close();
                return Ok(());
            }
            println!("{:<32} {:<26} {:<26} {:>9}", "OWNER", "ISSUED", "EXPIRES", "DAYS LEFT");
            for t in live {
                println!("{:<32} {:<26} {:<26} {:>9}", t.user_name, t.issued_at, t.expires_at, token::days_left(&t.expires_at, now));
            }
            Ok(())
        }
        TokenAction::Issue | TokenAction::Rotate => {
            let user_id = account_id(&tenant, username.unwrap_or_default()).await?;
            let revoke = revoke_existing || action == TokenAction::Rotate;
            let issued = token::issue(&tenant, "cli", &user_id, revoke, now).await?;
            println!("token (shown once): {}", issued.token);
            println!("expires: {}", issued.expires_at);
            Ok(())
        }
        TokenAction::Revoke => {
            let user_id = account_id(&tenant, username.unwrap_or_default()).await?;
            token::revoke(&tenant, "cli", &user_id, now).await?;
            println!("revoked the token of {}", username.unwrap_or_default());
            Ok(())
        }
    };
    tenant.close();
    result
}

/// Creates an API client that may only mint tokens, acting for one admin account.
pub async fn add_api_client(data: &DataDir, tenant: &str, username: &str, iterations: u32) -> Result<(), CommandError> {
    let tenant = open(data, tenant)?;
    let user_id = account_id(&tenant, username).await?;
    let client_id = format!("{CLIENT_PREFIX}{}", crate::store::new_resource_id().replace('-', ""));
    let secret = password::generate_password();
    let hash = {
        let s = secret.clone();
        tokio::task::spawn_blocking(move || password::hash_password(&s, iterations)).await.map_err(|e| e.to_string())?
    };
    let (cid, now) = (client_id.clone(), UtcMillis::now().to_rfc3339());
    tenant
        .store
        .write(move |conn| tokens::insert_client(conn, &cid, &hash, &user_id, &now))
        .await
        ?;
    tenant.close();
    println!("API client for {username} in tenant {} (use with HTTP Basic on /t/{}/rest/token):", tenant.id, tenant.id);
    println!("client id: {client_id}");
    println!("secret (shown once): {secret}");
    Ok(())
}
