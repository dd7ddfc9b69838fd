//! Tenants: the only code that knows the data directory layout.
//!
//! ```text
//! DATA_DIR/tenants/<tenant-id>/scim.db                     (+ -wal, -shm)
//! DATA_DIR/tenants/<tenant-id>/tenant.toml                 per-tenant settings (optional)
//! DATA_DIR/tenants/<tenant-id>/keys/token-signing.key.pem  RSA private key, PKCS#8, 0600
//! DATA_DIR/tenants/<tenant-id>/keys/token-signing.pub.pem  its public key (SPKI)
//! ```
//! A tenant id matches `[a-z0-9][a-z0-9-]{0,62}`; anything else is rejected before any
//! path is built, so a request can never name a file outside the data directory.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::info;

use crate::store::{Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(text: &str) -> Option<TenantId> {
        let bytes = text.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        ok.then(|| TenantId(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn tenants(&self) -> PathBuf {
        self.root.join("tenants")
    }
    pub fn tenant_dir(&self, id: &TenantId) -> PathBuf {
        self.tenants().join(id.as_str())
    }
    pub fn database(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("scim.db")
    }
    pub fn settings_file(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("tenant.toml")
    }
    pub fn keys_dir(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("keys")
    }
    pub fn private_key(&self, id: &TenantId) -> PathBuf {
        self.keys_dir(id).join("token-signing.key.pem")
    }
    pub fn public_key(&self, id: &TenantId) -> PathBuf {
        self.keys_dir(id).join("token-signing.pub.pem")
    }
    /// Where the demo keeps its certificate and credentials.
    pub fn demo_cert_dir(&self) -> PathBuf {
        self.root.join("certs")
    }
    pub fn demo_json(&self) -> PathBuf {
        self.root.join("demo.json")
    }

    /// Creates a tenant directory and its database. Fails if it exists.
    pub fn create_tenant(&self, id: &TenantId) -> Result<(), StoreError> {
        let dir = self.tenant_dir(id);
        if dir.exists() {
            return Err(StoreError::Conflict(format!("tenant {id} already exists")));
        }
        std::fs::create_dir_all(&dir).map_err(StoreError::Io)?;
        restrict_dir(&dir);
        let store = Store::open(&self.database(id))?;
        store.close();
        info!(target: "scimd::tenant", "created tenant {id} in {}", dir.display());
        Ok(())
    }

    pub fn tenant_exists(&self, id: &TenantId) -> bool {
        self.database(id).is_file()
    }

    pub fn list_tenants(&self) -> std::io::Result<Vec<TenantId>> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(self.tenants()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(id) = entry.file_name().to_str().and_then(TenantId::parse) {
                if self.tenant_exists(&id) {
                    ids.push(id);
                }
            }
        }
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(ids)
    }
}

/// Tenant directories hold credentials: owner-only.
pub fn restrict_dir(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// Per-tenant settings from `tenant.toml`; every key is optional.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// How long a bearer token lives.
    pub token_lifetime_days: u32,
    /// From how many days before expiry the server warns.
    pub token_warn_days: u32,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings { token_lifetime_days: 182, token_warn_days: 30 }
    }
}

impl TenantSettings {
    pub fn load(path: &Path) -> Result<TenantSettings, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TenantSettings::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

pub struct Tenant {
    pub id: TenantId,
    pub store: Store,
    pub settings: TenantSettings,
    pub keys: crate::auth::keys::KeyState,
}

impl Tenant {
    /// Opens a tenant that exists on disk (blocking: run off the async runtime).
    pub fn open(data: &DataDir, id: &TenantId) -> Result<Tenant, StoreError> {
        let settings = TenantSettings::load(&data.settings_file(id)).map_err(StoreError::Corrupt)?;
        let store = Store::open(&data.database(id))?;
        let keys = crate::auth::keys::KeyState::new(data.private_key(id), data.public_key(id), data.keys_dir(id));
        Ok(Tenant { id: id.clone(), store, settings, keys })
    }
}

/// Opened tenants, opened on first use and kept for the life of the process.
pub struct TenantRegistry {
    data: DataDir,
    open: Mutex<HashMap<TenantId, Arc<Tenant>>>,
}

impl TenantRegistry {
    pub fn new(data: DataDir) -> TenantRegistry {
        TenantRegistry { data, open: Mutex::new(HashMap::new()) }
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// The tenant, if its directory exists. Opening runs on the blocking pool.
    pub async fn get(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some(t) = self.open.lock().map_err(|_| StoreError::Closed)?.get(id) {
            return Ok(Some(Arc::clone(t)));
        }
        if !self.data.tenant_exists(id) {
            return Ok(None);
        }
        let (data, tid) = (self.data.clone(), id.clone());
        let tenant = tokio::task::spawn_blocking(move || Tenant::open(&data, &tid))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
        let mut open = self.open.lock().map_err(|_| StoreError::Closed)?;
        // Another request may have opened it meanwhile; keep the first.
        let tenant = open.entry(id.clone()).or_insert_with(|| Arc::new(tenant));
        Ok(Some(Arc::clone(tenant)))
    }

    /// Closes every open store (writers finish their queues and checkpoint).
    pub fn close_all(&self) {
        if let Ok(mut open) = self.open.lock() {
            for (_, t) in open.drain() {
                t.store.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TenantId;

    #[test]
    fn tenant_ids() {
        for ok in ["a", "acme", "acme-2", "0", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a/b", "..", "../x", "a%2fb", "é", &"a".repeat(64)] {
            assert!(TenantId::parse(bad).is_none(), "{bad}");
        }
    }
}
