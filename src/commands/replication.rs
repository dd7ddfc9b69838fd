//! `scimd replication config|restore`: every tenant replicated with Litestream, and every
//! tenant restored from the replica onto a new machine (`litestream restore`, then the
//! checks and the files a tenant folder needs beside its database).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::CommandError;
use crate::ops::replication::{self, Intervals};
use crate::store::maintenance::ReadOnly;
use crate::store::{tenant_files, SCHEMA_VERSION};
use crate::tenant::keys::{KeyState, PRIVATE_COPY, PUBLIC_COPY};
use crate::tenant::{DataDir, Tenant, TenantId, DATABASE_FILE};

/// Prints Litestream's configuration for the data directory and `replica`.
pub fn config(data: &DataDir, replica: &str, sync_interval_ms: u64, monitor_interval_ms: u64) -> Result<(), CommandError> {
    let tenants = std::path::absolute(data.tenants_dir())?;
    let intervals = Intervals { sync: Duration::from_millis(sync_interval_ms.max(1)), monitor: Duration::from_millis(monitor_interval_ms.max(1)) };
    print!("{}", replication::config(&tenants, replica, intervals)?);
    Ok(())
}

/// Restores every tenant of `replica` (or those named) into the empty data directory.
pub fn restore(data: &DataDir, replica: &str, named: &[String], litestream: &Path) -> Result<(), CommandError> {
    replication::check_replica_url(replica)?;
    match std::fs::read_dir(data.root()).map(|mut entries| entries.next().is_some()) {
        Ok(true) => return Err(format!("{} is not empty: restore into a new data directory", data.root().display()).into()),
        Ok(false) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", data.root().display()).into()),
    }
    let ids = if named.is_empty() {
        file_replica_tenants(replica)?
    } else {
        named.iter().map(|t| TenantId::parse(t).ok_or(CommandError::BadTenantId)).collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        return Err(format!("the replica {replica} holds no tenant").into());
    }
    for id in &ids {
        restore_tenant(data, replica, id, litestream)?;
    }
    println!("restored {} tenants into {}; start scimd serve on it", ids.len(), data.root().display());
    Ok(())
}

/// The tenants of a `file://` replica: its folders that hold a replicated `scim.db`.
fn file_replica_tenants(replica: &str) -> Result<Vec<TenantId>, CommandError> {
    let Some(path) = replica.strip_prefix("file://").filter(|p| p.starts_with('/')) else {
        return Err("name the tenants to restore with --tenant (only a file:// replica can be listed)".into());
    };
    let path = path.split('?').next().unwrap_or(path);
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{path}: {e}"))? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(TenantId::parse) {
            if entry.path().join(DATABASE_FILE).exists() {
                ids.push(id);
            }
        }
    }
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(ids)
}

fn restore_tenant(data: &DataDir, replica: &str, id: &TenantId, litestream: &Path) -> Result<(), CommandError> {
    let db = data.create_restored_tenant_dir(id)?;
    let source = replication::tenant_replica_url(replica, id);
    let ran = Command::new(litestream)
        .arg("restore")
        .arg("-o")
        .arg(&db)
        .arg(&source)
        .output()
        .map_err(|e| format!("cannot run {}: {e} (install Litestream, or name it with --litestream)", litestream.display()))?;
    if !ran.status.success() {
        let why = String::from_utf8_lossy(&ran.stderr);
        return Err(format!("litestream restore of tenant {id} from {source} failed ({}): {}", ran.status, why.trim()).into());
    }
    let restored = ReadOnly::open(&db)?;
    if let Some(problem) = restored.integrity_problem()? {
        return Err(format!("tenant {id}: the restored database is not sound: {problem}").into());
    }
    let version = restored.schema_version()?;
    if version > SCHEMA_VERSION {
        return Err(format!("tenant {id}: schema version {version} is newer than this scimd understands ({SCHEMA_VERSION}); restore with a newer scimd").into());
    }
    let copies = restored.with(|db| Ok((tenant_files::get(db, PRIVATE_COPY)?, tenant_files::get(db, PUBLIC_COPY)?)))?;
    drop(restored);
    let keys = KeyState::new(data.private_key(id), data.public_key(id), data.keys_dir(id));
    let key = match copies {
        (Some(private), Some(public)) => format!("signing key {}", keys.restore(&private, &public)?),
        _ => "no signing key".to_string(),
    };
    data.write_default_settings(id)?;
    // Opening migrates an older schema and tightens modes; dropping records the catalogue.
    drop(Tenant::open(data, id)?);
    println!("restored tenant {id}: integrity ok, schema version {version}, {key}");
    Ok(())
}
