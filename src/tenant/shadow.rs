//! Shadow mode (issue 20): a tenant's SCIM requests run against a copy of its database,
//! taken consistently when the rehearsal starts, while the application keeps reading the
//! live database, which nothing changes. The IdP is answered exactly as the live tenant
//! would answer it (same code, same ids, same errors); what it was refused is kept beside
//! the copy for the report. `promote` makes the copy live in one transaction, refused when
//! the live database changed since the start; `discard` drops it.
//!
//! Every SCIM request of the tenant holds the `Gate` (shared) for its whole run; a start,
//! promote or discard takes it alone, so it waits for the requests under way and holds new
//! ones until it is done: no request is answered from a half-switched tenant, and none is
//! lost (they wait, then run against what the switch left).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{restrict_dir, DataDir, Tenant, TenantId};
use crate::store::{self, StoreError};

/// A refusals file past this size takes no more lines: a rehearsal against an IdP that
/// sends the same bad request for days must not fill the disk.
const MAX_REFUSALS_BYTES: u64 = 8 * 1024 * 1024;

/// The rehearsal a tenant's SCIM requests run against, if any.
pub struct Gate(Arc<tokio::sync::RwLock<Option<Arc<Tenant>>>>);

/// What a SCIM request holds while it runs: the rehearsal, or `None` for the live tenant.
pub type Side = tokio::sync::OwnedRwLockReadGuard<Option<Arc<Tenant>>>;

impl Gate {
    pub(super) fn new(rehearsal: Option<Arc<Tenant>>) -> Gate {
        Gate(Arc::new(tokio::sync::RwLock::new(rehearsal)))
    }

    /// The rehearsal now, without waiting (closing, reloading, reporting state).
    pub(super) fn current(&self) -> Option<Arc<Tenant>> {
        self.0.try_read().ok().and_then(|g| g.clone())
    }
}

/// The files of a tenant's rehearsal.
#[derive(Clone, Debug)]
pub struct Files {
    dir: PathBuf,
    database: PathBuf,
    info: PathBuf,
    refusals: PathBuf,
    live: PathBuf,
}

impl Files {
    pub fn of(data: &DataDir, id: &TenantId) -> Files {
        Files {
            dir: data.shadow_dir(id),
            database: data.shadow_database(id),
            info: data.shadow_info(id),
            refusals: data.shadow_refusals(id),
            live: data.database(id),
        }
    }

    /// Whether a rehearsal is under way: its info file is written last when one starts and
    /// removed first when one ends.
    pub fn active(&self) -> bool {
        self.info.is_file()
    }

    pub fn database(&self) -> &std::path::Path {
        &self.database
    }

    pub fn live_database(&self) -> &std::path::Path {
        &self.live
    }

    /// When the rehearsal started and what the live database was then.
    pub fn info(&self) -> Result<Option<ShadowInfo>, ShadowError> {
        match std::fs::read_to_string(&self.info) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| ShadowError::Broken(format!("{}: {e}", self.info.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ShadowError::Io(e)),
        }
    }

    /// What the IdP was refused during the rehearsal, oldest first (lines that do not parse,
    /// a torn last line after a crash, are skipped).
    pub fn refusals(&self) -> Result<Vec<Refusal>, ShadowError> {
        match std::fs::read(&self.refusals) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ShadowError::Io(e)),
        }
    }

    /// Whether the rehearsal was promoted (its promote committed) but its files are still
    /// here: a crash between the commit and their removal. The live database says so.
    pub fn promoted(&self) -> bool {
        self.info().ok().flatten().is_some_and(|info| store::shadow::was_promoted(&self.live, &info.started_at).unwrap_or(false))
    }

    /// Removes what a promote left behind (see `promoted`).
    pub fn clean_up(&self) -> std::io::Result<()> {
        self.remove()
    }

    /// Removes the rehearsal: the info file first, so a crash part-way leaves no rehearsal
    /// the next open would take up.
    fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.info) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// `shadow.json`: when the rehearsal started, the last event then (the report reads the
/// copy's events after it) and the live database's marker (`store::shadow::marker`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShadowInfo {
    pub started_at: String,
    pub start_seq: i64,
    pub marker: String,
}

/// One refused SCIM request of the rehearsal: never a body, a header or a secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusal {
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    pub detail: String,
    pub account: String,
}

#[derive(Debug)]
pub enum ShadowError {
    /// `start` on a tenant already rehearsing.
    Already,
    /// `promote` or `discard` with no rehearsal under way.
    NotRehearsing,
    /// The live database changed since the rehearsal started: promote refused.
    LiveChanged(String),
    /// The rehearsal's files are not what shadow mode wrote.
    Broken(String),
    Store(StoreError),
    Io(std::io::Error),
}

impl std::fmt::Display for ShadowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShadowError::Already => write!(f, "the tenant is already in shadow mode (scimd shadow report, promote or discard)"),
            ShadowError::NotRehearsing => write!(f, "the tenant is not in shadow mode (scimd shadow start)"),
            ShadowError::LiveChanged(why) => write!(
                f,
                "refused: {why}. The rehearsal was not made live; discard it and start again (scimd shadow discard, then scimd shadow start)"
            ),
            ShadowError::Broken(why) => write!(f, "the rehearsal's files are damaged: {why}"),
            ShadowError::Store(e) => write!(f, "{e}"),
            ShadowError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for ShadowError {
    fn from(e: StoreError) -> ShadowError {
        match e {
            StoreError::Conflict(why) => ShadowError::LiveChanged(why),
            other => ShadowError::Store(other),
        }
    }
}

impl From<std::io::Error> for ShadowError {
    fn from(e: std::io::Error) -> ShadowError {
        ShadowError::Io(e)
    }
}

/// Runs blocking file and SQLite work off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, ShadowError> + Send + 'static) -> Result<T, ShadowError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ShadowError::Io(std::io::Error::other(e.to_string())))?
}

impl Tenant {
    /// Holds the gate for one SCIM request: the rehearsal it runs against, or `None`.
    pub async fn scim_side(&self) -> Side {
        Arc::clone(&self.shadow.0).read_owned().await
    }

    /// Whether SCIM requests run against a rehearsal (`None` while a switch is under way).
    pub fn in_shadow(&self) -> Option<bool> {
        self.shadow.0.try_read().ok().map(|g| g.is_some())
    }

    pub fn shadow_files(&self) -> &Files {
        &self.shadow_files
    }

    /// `scimd shadow start`: copies the live database (one snapshot, no write lock) and
    /// sends the tenant's SCIM requests to the copy from now on.
    pub async fn shadow_start(&self, data: &DataDir) -> Result<ShadowInfo, ShadowError> {
        let mut gate = Arc::clone(&self.shadow.0).write_owned().await;
        if gate.is_some() || self.shadow_files.active() {
            return Err(ShadowError::Already);
        }
        let (files, data, id) = (self.shadow_files.clone(), data.clone(), self.id.clone());
        let (rehearsal, info) = blocking(move || {
            files.remove()?;
            std::fs::create_dir_all(&files.dir)?;
            restrict_dir(&files.dir);
            let partial = files.dir.join("shadow.db.partial");
            store::shadow::copy_out(&files.live, &partial)?;
            let (start_seq, marker) = store::shadow::describe(&partial)?;
            std::fs::rename(&partial, &files.database)?;
            let info = ShadowInfo { started_at: crate::clock::UtcMillis::now().to_rfc3339(), start_seq, marker };
            // A page-for-page copy: it has live's unique indexes, which follow the settings
            // in force (not an unreloaded tenant.toml), so none is synced here.
            let rehearsal = Tenant::open_shadow(&data, &id, false)?;
            let text = serde_json::to_vec_pretty(&info).map_err(|e| ShadowError::Broken(e.to_string()))?;
            let staged = files.dir.join("shadow.json.partial");
            crate::certs::write_file(&staged, &text, 0o600).map_err(|e| ShadowError::Io(std::io::Error::other(e)))?;
            std::fs::rename(&staged, &files.info)?;
            Ok((rehearsal, info))
        })
        .await?;
        *gate = Some(Arc::new(rehearsal));
        log::info!(target: "scimd::tenant", "tenant {}: shadow mode started; SCIM requests now run against a copy", self.id);
        Ok(info)
    }

    /// `scimd shadow promote`: the rehearsal's database becomes the live one in one
    /// transaction, unless the live database changed since the start; the tenant's SCIM
    /// requests then run live again. Whatever fails, the rehearsal stays where it was: the
    /// IdP's requests never reach the live database while the files say it is rehearsing.
    pub async fn shadow_promote(&self, _data: &DataDir) -> Result<ShadowInfo, ShadowError> {
        let mut gate = Arc::clone(&self.shadow.0).write_owned().await;
        let Some(rehearsal) = gate.clone() else { return Err(ShadowError::NotRehearsing) };
        let files = self.shadow_files.clone();
        // No request holds the gate: every write of the rehearsal has committed, and the
        // promote reads them (its WAL included) through a connection of its own.
        let info = blocking(move || {
            let info = files.info()?.ok_or(ShadowError::NotRehearsing)?;
            store::shadow::promote(&files.live, &files.database, &info.marker, &info.started_at)?;
            Ok(info)
        })
        .await?;
        *gate = None;
        let files = self.shadow_files.clone();
        let removed = blocking(move || {
            rehearsal.close();
            Ok(files.remove()?)
        })
        .await;
        if let Err(e) = removed {
            // Live already has it; the next open removes what is left (`Files::promoted`).
            log::warn!(target: "scimd::tenant", "tenant {}: promoted, but the rehearsal's files are not all removed: {e}", self.id);
        }
        log::info!(target: "scimd::tenant", "tenant {}: shadow mode promoted; the rehearsal is live", self.id);
        Ok(info)
    }

    /// `scimd shadow discard`: drops the rehearsal; SCIM requests run live again.
    pub async fn shadow_discard(&self) -> Result<(), ShadowError> {
        let mut gate = Arc::clone(&self.shadow.0).write_owned().await;
        let rehearsal = gate.take();
        if rehearsal.is_none() && !self.shadow_files.active() {
            return Err(ShadowError::NotRehearsing);
        }
        let files = self.shadow_files.clone();
        blocking(move || {
            if let Some(r) = rehearsal {
                r.close();
            }
            Ok(files.remove()?)
        })
        .await?;
        log::info!(target: "scimd::tenant", "tenant {}: shadow mode discarded; SCIM requests run live again", self.id);
        Ok(())
    }

    /// Keeps one refused request of a rehearsal for the report (a rehearsal's tenant only).
    pub fn note_refusal(&self, refusal: &Refusal) {
        if !self.is_shadow {
            return;
        }
        let path = &self.shadow_files.refusals;
        if std::fs::metadata(path).map(|m| m.len() >= MAX_REFUSALS_BYTES).unwrap_or(false) {
            return;
        }
        let Ok(mut line) = serde_json::to_vec(refusal) else { return };
        line.push(b'\n');
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // One write of the whole line: appends of concurrent refusals do not interleave.
        if let Err(e) = options.open(path).and_then(|mut f| f.write_all(&line)) {
            log::warn!(target: "scimd::tenant", "tenant {}: cannot keep a refused request for the shadow report: {e}", self.id);
        }
    }
}
