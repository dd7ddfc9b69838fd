//! Tenants: the only code that knows the data directory layout.
//!
//! ```text
//! DATA_DIR/tenants/<tenant-id>/scim.db                     (+ -wal, -shm; a copy of keys/)
//! DATA_DIR/tenants/<tenant-id>/tenant.toml                 per-tenant settings (optional)
//! DATA_DIR/tenants/<tenant-id>/keys/token-signing.key.pem  RSA private key, PKCS#8, 0600
//! DATA_DIR/tenants/<tenant-id>/keys/token-signing.pub.pem  its public key (SPKI)
//! DATA_DIR/tenants/<tenant-id>/shadow/shadow.db           the IdP's rehearsal (shadow mode)
//! DATA_DIR/tenants/<tenant-id>/shadow/shadow.json         when it started, what live was then
//! DATA_DIR/tenants/<tenant-id>/shadow/refusals.jsonl      what the IdP was refused meanwhile
//! DATA_DIR/catalogue.db                                    tenants as of their last close
//! DATA_DIR/control.sock                                    the running server's command socket
//! DATA_DIR/serve.lock                                      held (shared) while a server runs
//! DATA_DIR/console.pass                                    the operator console's password hash
//! ```
//! A tenant id matches `[a-z0-9][a-z0-9-]{0,62}`; anything else is rejected before any
//! path is built, so a request can never name a file outside the data directory.

pub mod faults;
pub mod keys;
pub mod registry;
mod extensions;
mod settings;
pub mod shadow;

pub use registry::{TenantLimits, TenantRegistry};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::info;

pub use settings::*;

use crate::store::catalogue::{self, Catalogue};
use crate::model::Fault;
use crate::store::{tenant_files, Store, StoreError};

/// The name of a tenant's database in its folder (Litestream's `pattern` matches it).
pub const DATABASE_FILE: &str = "scim.db";

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

/// Where ACME keeps its files (`DataDir::acme`).
#[derive(Debug, Clone)]
pub struct AcmePaths {
    pub dir: PathBuf,
    /// The ACME account's credentials (its private key): JSON, 0600.
    pub account: PathBuf,
    /// The certificate chain served, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM, 0600.
    pub key: PathBuf,
    /// What the renewal loop last did (no secret): read by `scimd check`.
    pub state: PathBuf,
}

/// Paths inside a data directory, and its catalogue (one connection, shared by clones).
#[derive(Clone)]
pub struct DataDir {
    root: PathBuf,
    catalogue: Arc<Catalogue>,
    faults: Arc<faults::FaultBoard>,
}

impl fmt::Debug for DataDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataDir").field("root", &self.root).finish()
    }
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        let root = root.into();
        let catalogue = Arc::new(Catalogue::new(root.join("catalogue.db")));
        DataDir { root, catalogue, faults: Arc::default() }
    }
    /// What is wrong with each tenant now (`tenant/faults.rs`).
    pub fn faults(&self) -> &Arc<faults::FaultBoard> {
        &self.faults
    }
    /// What the server knows of every tenant without opening it (`store::catalogue`).
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }
    /// Records a tenant that is not open here in the catalogue, from its database file (a
    /// new or restored tenant, or one an older scimd made before there was a catalogue).
    pub fn recatalogue(&self, id: &TenantId) -> Result<(), StoreError> {
        let summary = catalogue::summarise_file(&self.database(id))?;
        self.catalogue.record(id.as_str(), &summary, &crate::clock::UtcMillis::now().to_rfc3339())
    }
    /// Tenants on disk the catalogue does not hold, or whose database changed after it was
    /// last recorded (a server killed while the tenant was open never recorded its last
    /// writes), recorded now; returns how many.
    pub fn backfill_catalogue(&self) -> Result<usize, StoreError> {
        let known = self.catalogue.recorded_at()?;
        let mut added = 0;
        for id in self.list_tenants().map_err(StoreError::Io)? {
            let current = match known.get(id.as_str()) {
                Some(Some(at)) => !self.changed_after(&id, *at),
                _ => false,
            };
            if !current {
                match self.recatalogue(&id) {
                    Ok(()) => added += 1,
                    // It is recorded when it is next closed (an older schema, say).
                    Err(e) => log::warn!(target: "scimd::tenant", "tenant {id}: not in the catalogue yet: {e}"),
                }
            }
        }
        Ok(added)
    }
    /// Whether the tenant's database or its WAL was modified after `at`.
    fn changed_after(&self, id: &TenantId, at: crate::clock::UtcMillis) -> bool {
        let db = self.database(id);
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        [db, wal].iter().any(|f| {
            let modified = std::fs::metadata(f).and_then(|m| m.modified());
            match modified.map(|t| t.duration_since(std::time::UNIX_EPOCH)) {
                Ok(Ok(since_epoch)) => since_epoch.as_millis() as i64 > at.0,
                // A missing WAL is no change; an unreadable time is treated as one.
                Ok(Err(_)) => true,
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            }
        })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn tenants(&self) -> PathBuf {
        self.root.join("tenants")
    }
    /// The directory of every tenant's folder: what Litestream watches (`ops::replication`).
    pub fn tenants_dir(&self) -> PathBuf {
        self.tenants()
    }
    pub fn tenant_dir(&self, id: &TenantId) -> PathBuf {
        self.tenants().join(id.as_str())
    }
    pub fn database(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join(DATABASE_FILE)
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
    /// Shadow mode's folder (issue 20). Its database is not called `scim.db`: Litestream's
    /// pattern must not replicate a rehearsal as if it were a tenant.
    pub fn shadow_dir(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join("shadow")
    }
    pub fn shadow_database(&self, id: &TenantId) -> PathBuf {
        self.shadow_dir(id).join("shadow.db")
    }
    pub fn shadow_info(&self, id: &TenantId) -> PathBuf {
        self.shadow_dir(id).join("shadow.json")
    }
    pub fn shadow_refusals(&self, id: &TenantId) -> PathBuf {
        self.shadow_dir(id).join("refusals.jsonl")
    }
    /// The running server's command socket: the data directory is the service user's
    /// alone (0700), so only that user (and root) can reach it.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    /// The operator console's password, a PBKDF2 hash (`scimd console password`).
    pub fn console_password(&self) -> PathBuf {
        self.root.join("console.pass")
    }
    /// Held (flock, shared) by every running server: a command that takes it exclusively
    /// knows none is running.
    pub fn serve_lock(&self) -> PathBuf {
        self.root.join("serve.lock")
    }
    /// ACME's files (issue 24): the account key, the certificate and its key, the state
    /// `scimd check` reads; all 0600 in a 0700 directory.
    pub fn acme(&self) -> AcmePaths {
        let dir = self.root.join("acme");
        AcmePaths { account: dir.join("account.json"), cert: dir.join("cert.pem"), key: dir.join("key.pem"), state: dir.join("state.json"), dir }
    }
    /// Where the demo keeps its certificate and credentials.
    pub fn demo_cert_dir(&self) -> PathBuf {
        self.root.join("certs")
    }
    pub fn demo_json(&self) -> PathBuf {
        self.root.join("demo.json")
    }
    /// Where `tenant delete` keeps the database it deleted, as `{tenant}-{time}.db`.
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }
    pub fn deleted_tenant_backup(&self, id: &TenantId, stamp: &str) -> PathBuf {
        self.backups_dir().join(format!("{id}-{stamp}.db"))
    }

    /// Creates a tenant directory, its database and a commented `tenant.toml` with the
    /// default settings. Fails if it exists.
    pub fn create_tenant(&self, id: &TenantId) -> Result<(), StoreError> {
        self.create_tenant_with_seats(id, 50, 500)
    }

    pub fn create_tenant_with_seats(&self, id: &TenantId, creator: u32, creator_float: u32) -> Result<(), StoreError> {
        self.create_tenant_from(id, &default_settings_text(creator, creator_float))
    }

    /// The demo's tenant: the defaults, but userNames need not be emails, since the demo
    /// is also what the conformance checker runs against and scim2-tester invents
    /// userNames unrelated to its emails.
    pub fn create_demo_tenant(&self, id: &TenantId) -> Result<(), StoreError> {
        self.create_tenant_from(id, &demo_settings_text())
    }

    fn create_tenant_from(&self, id: &TenantId, settings: &str) -> Result<(), StoreError> {
        let dir = self.tenant_dir(id);
        if dir.exists() {
            return Err(StoreError::Conflict(format!("tenant {id} already exists")));
        }
        std::fs::create_dir_all(&dir).map_err(StoreError::Io)?;
        crate::certs::write_file(&self.settings_file(id), settings.as_bytes(), 0o600)
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let store = Store::open(&self.database(id))?;
        store.close();
        self.recatalogue(id)?;
        self.restrict_tenant(id);
        info!(target: "scimd::tenant", "created tenant {id} in {}", dir.display());
        Ok(())
    }

    /// An empty folder for a tenant about to be restored (owner-only); its database path.
    pub fn create_restored_tenant_dir(&self, id: &TenantId) -> std::io::Result<PathBuf> {
        for dir in [self.root.clone(), self.tenants(), self.tenant_dir(id)] {
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir != self.tenant_dir(id) => {}
                other => other?,
            }
        }
        Ok(self.database(id))
    }

    /// Writes the default `tenant.toml` when the tenant has none (a restored tenant: the
    /// replica holds its database only). Returns whether it wrote one.
    pub fn write_default_settings(&self, id: &TenantId) -> Result<bool, StoreError> {
        let path = self.settings_file(id);
        if path.exists() {
            return Ok(false);
        }
        crate::certs::write_file(&path, default_settings_text(50, 500).as_bytes(), 0o600).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        Ok(true)
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

impl DataDir {
    /// Everything under the data directory is the service user's alone (databases hold
    /// password hashes and the activity log; keys sign tokens): directories 0700, files
    /// 0600. Tightens what an older version, a restore or a loose umask left looser.
    pub fn restrict_tenant(&self, id: &TenantId) {
        for dir in [self.root.clone(), self.tenants(), self.tenant_dir(id), self.keys_dir(id)] {
            restrict(&dir, 0o700);
        }
        let db = self.database(id);
        let mut files = vec![self.settings_file(id), self.private_key(id), self.public_key(id)];
        for suffix in ["", "-wal", "-shm"] {
            files.push(PathBuf::from(format!("{}{suffix}", db.display())));
        }
        for file in files {
            restrict(&file, 0o600);
        }
    }
}

/// Sets `mode` on `path` when it exists, is not a symlink and grants more than `mode`.
fn restrict(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else { return };
        if meta.file_type().is_symlink() || meta.permissions().mode() & 0o777 & !mode == 0 {
            return;
        }
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            log::warn!(target: "scimd::tenant", "cannot restrict {} to mode {mode:o}: {e}", path.display());
        }
    }
}

/// Tenant directories hold credentials: owner-only.
pub fn restrict_dir(dir: &Path) {
    restrict(dir, 0o700);
}

/// New files and directories of this process are the service user's alone (0600/0700),
/// whatever umask it was started with: SQLite creates the `-wal` and `-shm` files, backups
/// and key files under it too.
pub fn owner_only_umask() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Whether scimd may write in `dir` (`access(W_OK)`, which a read-only mount refuses
/// even to root): the reason when not.
pub fn writable(dir: &Path) -> Result<(), std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: access only reads the path, a valid C string.
    match unsafe { libc::access(path.as_ptr(), libc::W_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// An open that failed in a directory scimd cannot write in is a read-only fault, whatever
/// SQLite called it (it cannot create the WAL or shared-memory file: "unable to open").
fn read_only_if_so(e: StoreError, dir: &Path) -> StoreError {
    match (e.fault(), writable(dir)) {
        (None | Some(Fault::Unopenable), Err(why)) => StoreError::Unavailable(Fault::ReadOnly, format!("{} is not writable ({why}): {e}", dir.display())),
        _ => e,
    }
}

/// Keeps the database's copy of the key pair and the files in step at open, and gives the
/// key state the copy of the private key (what verifies tokens if the files fail later). The files
/// are the truth while they can be used: a key made before the copy existed, or a crash
/// between the file and the copy, is copied in. Files that are missing while the database
/// still has the key were lost (scimd deletes both): they are written back from the copy.
/// Files that exist but cannot be read or parsed are left alone, and so is the copy: a
/// damaged file is no reason to drop a good copy. Either way the fault is raised now.
fn sync_key_copy(keys: &keys::KeyState, store: &Store, id: &TenantId) -> Result<(), StoreError> {
    // Read first: an open whose copy is current (nearly all) takes no write lock.
    let stored = store.read_blocking(|db| Ok((tenant_files::get(db, keys::PRIVATE_COPY)?, tenant_files::get(db, keys::PUBLIC_COPY)?)))?;
    // (the copy kept to verify with, whether the files need looking at now)
    let (copy, troubled) = match keys.pem_texts() {
        Ok(Some((private, public))) if stored.0.as_deref() == Some(private.as_str()) && stored.1.as_deref() == Some(public.as_str()) => (Some(private), false),
        Ok(Some((private, _))) if !keys::parses(&private) => (stored.0, true),
        Ok(Some((private, public))) => {
            let files = vec![(keys::PRIVATE_COPY, Some(private.clone())), (keys::PUBLIC_COPY, Some(public))];
            let at = crate::clock::UtcMillis::now().to_rfc3339();
            store.write_blocking(move |db| tenant_files::sync(db, &files, &at))?;
            (Some(private), false)
        }
        Ok(None) => match stored {
            (Some(private), Some(public)) => {
                match keys.restore(&private, &public) {
                    Ok(fingerprint) => log::warn!(target: "scimd::tenant", "tenant {id}: the token signing key files were missing; wrote them back from the database's copy ({fingerprint})"),
                    Err(e) => log::warn!(target: "scimd::tenant", "tenant {id}: the token signing key files are missing and cannot be written back: {e}"),
                }
                (Some(private), true)
            }
            (private, _) => (private, false),
        },
        Err(e) => {
            log::warn!(target: "scimd::tenant", "tenant {id}: signing key not copied into the database: {e}");
            (stored.0, true)
        }
    };
    keys.set_copy(copy);
    if troubled {
        // Raises the fault now (or clears one an earlier open raised, once written back).
        let _ = keys.signing();
    }
    Ok(())
}

/// The unique indexes of the custom attributes `settings` declares, made (and those no
/// longer declared dropped) by the writer before the settings take effect. One the stored
/// values break is the settings' fault: the tenant does not open with them.
fn sync_unique_indexes(store: &Store, settings: &TenantSettings) -> Result<(), StoreError> {
    use crate::store::custom::{self, UniqueAttr};
    let case_exact = |a: &CustomAttrConfig| a.case_exact || a.ty != CustomType::String;
    let wanted: Vec<UniqueAttr> = settings
        .extensions
        .iter()
        .flat_map(|e| e.attributes.iter().filter(|a| a.unique()).map(move |a| UniqueAttr { urn: e.urn.clone(), attr: a.name.clone(), case_exact: case_exact(a) }))
        .collect();
    let current = {
        let wanted = wanted.clone();
        store.read_blocking(move |db| custom::unique_indexes_match(db, &wanted))?
    };
    if current {
        return Ok(());
    }
    store.write_blocking(move |db| custom::sync_unique_indexes(db, &wanted)).map_err(|e| match e {
        StoreError::Invalid(why) => StoreError::Unavailable(Fault::Settings, why),
        other => other,
    })
}

pub struct Tenant {
    pub id: TenantId,
    pub store: Store,
    settings: std::sync::RwLock<Arc<TenantSettings>>,
    settings_path: PathBuf,
    pub keys: keys::KeyState,
    catalogue: Arc<Catalogue>,
    /// Set by the first `close`: dropping a closed tenant does nothing more.
    closed: std::sync::atomic::AtomicBool,
    /// Shadow mode (`tenant/shadow.rs`): the rehearsal SCIM requests run against, if any,
    /// behind the gate every SCIM request holds and a switch takes alone.
    pub(crate) shadow: shadow::Gate,
    pub(crate) shadow_files: shadow::Files,
    /// This is a rehearsal's copy, not a live tenant: never recorded in the catalogue.
    is_shadow: bool,
}

/// Whoever closes a tenant (the server's registry, a CLI command) records it in the
/// catalogue, so the catalogue is current for every tenant that is not open.
impl Drop for Tenant {
    fn drop(&mut self) {
        self.close();
    }
}

impl Tenant {
    /// Opens a tenant that exists on disk for a command (blocking: run off the async
    /// runtime). Its unique custom-attribute indexes are left as they are: they follow the
    /// settings a server has in force, which an edited but unreloaded `tenant.toml` is not,
    /// and a command dropping one would let that server store duplicates.
    pub fn open(data: &DataDir, id: &TenantId) -> Result<Tenant, StoreError> {
        Tenant::open_with(data, id, false)
    }

    /// Opens a tenant for the server to serve: its unique indexes made to follow
    /// `tenant.toml` first, as a reload does (blocking: run off the async runtime).
    pub fn open_to_serve(data: &DataDir, id: &TenantId) -> Result<Tenant, StoreError> {
        Tenant::open_with(data, id, true)
    }

    fn open_with(data: &DataDir, id: &TenantId, serving: bool) -> Result<Tenant, StoreError> {
        let settings = TenantSettings::load(&data.settings_file(id)).map_err(|why| StoreError::Unavailable(Fault::Settings, why))?;
        data.restrict_tenant(id);
        let keys = keys::KeyState::new(data.private_key(id), data.public_key(id), data.keys_dir(id)).reporting_to(Arc::clone(data.faults()), id.as_str());
        let store = Store::open(&data.database(id)).map_err(|e| read_only_if_so(e, &data.tenant_dir(id)))?;
        store.report_faults_to(Arc::new(faults::TenantFaults { board: Arc::clone(data.faults()), tenant: id.clone() }));
        if serving {
            sync_unique_indexes(&store, &settings)?;
        }
        sync_key_copy(&keys, &store, id)?;
        data.restrict_tenant(id);
        let catalogue = Arc::clone(&data.catalogue);
        let shadow_files = shadow::Files::of(data, id);
        if shadow_files.active() && shadow_files.promoted() {
            log::info!(target: "scimd::tenant", "tenant {id}: removing a rehearsal that was promoted");
            shadow_files.clean_up().map_err(StoreError::Io)?;
        }
        // A tenant in shadow mode opens with its rehearsal: the IdP's requests must never
        // reach the live database while it lasts, restart or not.
        let rehearsal = if shadow_files.active() { Some(Arc::new(Tenant::open_shadow(data, id, serving)?)) } else { None };
        Ok(Tenant {
            id: id.clone(),
            store,
            settings: std::sync::RwLock::new(Arc::new(settings)),
            settings_path: data.settings_file(id),
            keys,
            catalogue,
            closed: Default::default(),
            shadow: shadow::Gate::new(rehearsal),
            shadow_files,
            is_shadow: false,
        })
    }

    /// The rehearsal's copy of a tenant in shadow mode: its own database, the tenant's
    /// settings and keys; its unique indexes synced only when `serving` (see `open`).
    fn open_shadow(data: &DataDir, id: &TenantId, serving: bool) -> Result<Tenant, StoreError> {
        let settings = TenantSettings::load(&data.settings_file(id)).map_err(|why| StoreError::Unavailable(Fault::Settings, why))?;
        let keys = keys::KeyState::new(data.private_key(id), data.public_key(id), data.keys_dir(id));
        // Never a new, empty database in its place: promoted, it would replace live.
        if !data.shadow_database(id).is_file() {
            return Err(StoreError::Corrupt(format!("tenant {id} is in shadow mode but its rehearsal's database {} is missing; scimd shadow discard ends it", data.shadow_database(id).display())));
        }
        let store = Store::open(&data.shadow_database(id))?;
        if serving {
            sync_unique_indexes(&store, &settings)?;
        }
        Ok(Tenant {
            id: id.clone(),
            store,
            settings: std::sync::RwLock::new(Arc::new(settings)),
            settings_path: data.settings_file(id),
            keys,
            catalogue: Arc::clone(&data.catalogue),
            closed: Default::default(),
            shadow: shadow::Gate::new(None),
            shadow_files: shadow::Files::of(data, id),
            is_shadow: true,
        })
    }

    /// Stops the tenant's store (the writer finishes what is queued) and records the tenant
    /// in the catalogue; what comes after finds it closed. Its summary is read by the writer
    /// after every queued write, on the connection it already has, and recorded once the
    /// files are closed, so a record is never older than a change to them (which is how the
    /// next start tells a tenant that changed without being recorded: `backfill_catalogue`).
    pub fn close(&self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        if let Some(rehearsal) = self.shadow.current() {
            rehearsal.close();
        }
        if self.is_shadow {
            self.store.close();
            return;
        }
        let summary = self.store.write_blocking(|db| catalogue::summarise(db));
        self.store.close();
        let recorded = summary.and_then(|s| self.catalogue.record(self.id.as_str(), &s, &crate::clock::UtcMillis::now().to_rfc3339()));
        if let Err(e) = recorded {
            log::warn!(target: "scimd::tenant", "tenant {}: cannot record it in the catalogue: {e}", self.id);
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<TenantSettings> {
        self.settings.read().map(|s| Arc::clone(&s)).unwrap_or_default()
    }

    /// The key that verifies this tenant's tokens: the files', or while they cannot be used
    /// (or are gone), the database's copy, read now (a `keygen` or `delete-key` by a command
    /// in another process changes it there). `None`: the tenant has no key. The key state
    /// raises or clears the `signing_key` fault as it finds the files and the copy.
    pub async fn verifying_key(&self) -> Result<Option<Arc<keys::SigningKey>>, StoreError> {
        if let Ok(Some(key)) = self.keys.signing() {
            return Ok(Some(key));
        }
        let copy = self.store.read(|db| tenant_files::get(db, keys::PRIVATE_COPY)).await?;
        Ok(self.keys.from_copy(copy))
    }

    /// Re-reads `tenant.toml`. A broken file is refused and the old settings stay, as does
    /// a unique custom attribute the stored values break (blocking: the index is built here).
    pub fn reload_settings(&self) -> Result<(), String> {
        let fresh = Arc::new(TenantSettings::load(&self.settings_path)?);
        // In shadow mode the rehearsal (which the IdP talks to) and the live database both
        // take the new indexes before either takes the new settings.
        let rehearsal = self.shadow.current();
        for store in rehearsal.iter().map(|r| &r.store).chain([&self.store]) {
            sync_unique_indexes(store, &fresh).map_err(|e| e.to_string())?;
        }
        for tenant in rehearsal.iter().map(|r| r.as_ref()).chain([self]) {
            if let Ok(mut s) = tenant.settings.write() {
                *s = Arc::clone(&fresh);
            }
        }
        info!(target: "scimd::tenant", "tenant {}: reloaded {}", self.id, self.settings_path.display());
        Ok(())
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

    #[test]
    fn settings_defaults_file_and_policies() {
        use super::*;
        let parsed = TenantSettings::parse(&default_settings_text(7, 9)).unwrap();
        assert_eq!((parsed.creator, parsed.creator_float, parsed.delete_mode), (7, 9, DeleteMode::Soft));
        assert!(parsed.require_username_is_email);
        let p = TenantSettings::parse("[policies]\nonly_assign = [\"app-.*\"]\nnever_assign = [\"app-legacy\"]\nnever_remove = [\"Aud.*\"]").unwrap().policies;
        assert_eq!(p.ignore_reason("app-sales"), None);
        assert!(p.ignore_reason("sales").unwrap().contains("only_assign"));
        assert!(p.ignore_reason("app-legacy").unwrap().contains("never_assign"));
        assert!(p.ignore_reason("xapp-sales").is_some(), "patterns match whole names");
        assert!(p.never_remove("Auditors") && !p.never_remove("The Auditors"));
        assert!(TenantSettings::parse("[policies]\nonly_assign = [\"(\"]").is_err());
        assert!(TenantSettings::parse("delete_mode = \"sometimes\"").is_err());
        assert!(TenantSettings::parse("bogus = 1").is_err());
    }

    #[test]
    fn demo_settings_parse_and_relax_only_the_email_rule() {
        use super::*;
        let demo = TenantSettings::parse(&demo_settings_text()).expect("the demo's tenant.toml parses");
        let default = TenantSettings::parse(&default_settings_text(50, 500)).unwrap();
        assert!(!demo.require_username_is_email);
        assert!(default.require_username_is_email);
        assert!(demo_settings_text().contains("The demo relaxes this"));
        assert_eq!((demo.creator, demo.creator_float, demo.token_warn_days), (default.creator, default.creator_float, default.token_warn_days));
    }
}
