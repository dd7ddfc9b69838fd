//! Backups, restores and `scimd check`.
//!
//! A backup uses SQLite's online backup API, so it is consistent while the server writes.
//! A restore checks the file's integrity first, copies it over the tenant's database with
//! the same API (the server must be stopped, or the tenant offline), and checks again.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::clock::UtcMillis;
use crate::store::maintenance::{self, ReadOnly, RestoreError};
use crate::store::StoreError;
use crate::tenant::{DataDir, TenantId};

/// Why a backup or restore failed, in words for the operator (`CommandError` prints them
/// as they are). SQLite's errors are shown without the store's "sqlite: " prefix.
#[derive(Debug)]
pub enum MaintenanceError {
    /// Opening, reading or checking a database.
    Store(StoreError),
    /// The backup file to write is already there.
    Exists(PathBuf),
    /// The online backup API failed while copying.
    Backup(StoreError),
    /// `PRAGMA integrity_check` did not answer "ok": what it answered.
    Unsound(String),
    /// The backup to restore from cannot be opened.
    Open(PathBuf, StoreError),
    /// The backup to restore from fails its integrity check (a `Store` or `Unsound`).
    NotSound(PathBuf, Box<MaintenanceError>),
    /// The backup is of a newer schema version than this scimd knows.
    NewerSchema(i64),
    /// Copying the backup over the tenant's database failed.
    Restore(StoreError),
    /// Bringing the restored database up to date failed.
    Migrate(StoreError),
    /// Creating the backups directory.
    Io(std::io::Error),
}

impl fmt::Display for MaintenanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaintenanceError::Store(e) => write!(f, "{}", e.bare_message()),
            MaintenanceError::Exists(path) => write!(f, "{} exists; choose a new file", path.display()),
            MaintenanceError::Backup(e) => write!(f, "backup failed: {}", e.bare_message()),
            MaintenanceError::Unsound(result) => write!(f, "integrity_check: {result}"),
            MaintenanceError::Open(path, e) => write!(f, "{}: {}", path.display(), e.bare_message()),
            MaintenanceError::NotSound(path, e) => write!(f, "{} is not a sound backup: {e}", path.display()),
            MaintenanceError::NewerSchema(version) => write!(f, "the backup is of schema version {version}, newer than this scimd"),
            MaintenanceError::Restore(e) => write!(f, "restore failed (is the server still running?): {}", e.bare_message()),
            MaintenanceError::Migrate(e) => write!(f, "{e}"),
            MaintenanceError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MaintenanceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MaintenanceError::Store(e) | MaintenanceError::Backup(e) | MaintenanceError::Open(_, e) | MaintenanceError::Restore(e) | MaintenanceError::Migrate(e) => Some(e),
            MaintenanceError::NotSound(_, e) => Some(e.as_ref()),
            MaintenanceError::Io(e) => Some(e),
            MaintenanceError::Exists(_) | MaintenanceError::Unsound(_) | MaintenanceError::NewerSchema(_) => None,
        }
    }
}

impl From<StoreError> for MaintenanceError {
    fn from(e: StoreError) -> Self {
        MaintenanceError::Store(e)
    }
}

fn integrity(db: &ReadOnly) -> Result<(), MaintenanceError> {
    match db.integrity_problem()? {
        None => Ok(()),
        Some(result) => Err(MaintenanceError::Unsound(result)),
    }
}

/// Copies the tenant's database to `out` while the server may be writing.
/// `progress` hears (pages copied, pages in all).
pub fn backup(data: &DataDir, id: &TenantId, out: &Path, progress: &dyn Fn(u64, u64)) -> Result<(), MaintenanceError> {
    let src = ReadOnly::open(&data.database(id))?;
    src.wait_for_locks()?;
    if out.exists() {
        return Err(MaintenanceError::Exists(out.to_path_buf()));
    }
    src.backup_to(out, progress).map_err(MaintenanceError::Backup)?;
    if let Some(result) = maintenance::integrity_problem_of(out)? {
        return Err(MaintenanceError::Unsound(result));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Puts a backup back as the tenant's database.
/// `progress` hears (pages copied, pages in all).
pub fn restore(data: &DataDir, id: &TenantId, from: &Path, progress: &dyn Fn(u64, u64)) -> Result<(), MaintenanceError> {
    let backup = ReadOnly::open(from).map_err(|e| MaintenanceError::Open(from.to_path_buf(), e))?;
    integrity(&backup).map_err(|e| MaintenanceError::NotSound(from.to_path_buf(), Box::new(e)))?;
    let version = backup.schema_version()?;
    if version > crate::store::SCHEMA_VERSION {
        return Err(MaintenanceError::NewerSchema(version));
    }
    drop(backup);
    maintenance::restore_into(&data.database(id), from, progress).map_err(|e| match e {
        RestoreError::Copy(e) => MaintenanceError::Restore(e),
        RestoreError::Check(e) => MaintenanceError::Store(e),
        RestoreError::Unsound(result) => MaintenanceError::Unsound(result),
    })?;
    // Bring an older backup up to date.
    crate::store::open_for_write(&data.database(id)).map_err(MaintenanceError::Migrate)?;
    data.recatalogue(id)?;
    Ok(())
}

/// A dated backup file in `DATA_DIR/backups/` (before a tenant is deleted).
pub fn backup_before_delete(data: &DataDir, id: &TenantId) -> Result<PathBuf, MaintenanceError> {
    std::fs::create_dir_all(data.backups_dir()).map_err(MaintenanceError::Io)?;
    let stamp = UtcMillis::now().to_rfc3339().replace([':', '.'], "-");
    let out = data.deleted_tenant_backup(id, &stamp);
    backup(data, id, &out, &|_, _| {})?;
    Ok(out)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub enum Level {
    Ok,
    Warn,
    Error,
}

pub struct Finding {
    pub level: Level,
    pub what: String,
}

impl Finding {
    pub fn new(level: Level, what: impl Into<String>) -> Finding {
        Finding { level, what: what.into() }
    }
}

fn finding(level: Level, what: impl Into<String>) -> Finding {
    Finding { level, what: what.into() }
}

/// A certificate's notAfter (RFC 5280 validity), or None if the DER is not a certificate.
/// x509-parser reads it: UTCTime and GeneralizedTime, every length and tag checked.
pub fn cert_not_after(der: &[u8]) -> Option<UtcMillis> {
    cert_facts(der).map(|f| f.not_after)
}

/// What ACME's renewal plan reads of a certificate: its validity and the DNS names it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFacts {
    pub not_before: UtcMillis,
    pub not_after: UtcMillis,
    pub dns_names: Vec<String>,
}

pub fn cert_facts(der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let millis = |t: x509_parser::time::ASN1Time| t.timestamp().checked_mul(1000).map(UtcMillis);
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(CertFacts { not_before: millis(cert.validity().not_before)?, not_after: millis(cert.validity().not_after)?, dns_names })
}

/// `scimd check`: every finding, worst last.
pub fn check(data: &DataDir, cert: Option<&Path>, now: UtcMillis) -> Vec<Finding> {
    let mut out = Vec::new();
    if !data.root().is_dir() {
        out.push(finding(Level::Error, format!("data directory {} does not exist", data.root().display())));
        return out;
    }
    out.push(finding(Level::Ok, format!("data directory {}", data.root().display())));
    out.extend(space_finding(data.root()));
    out.extend(writable_finding(data.root(), "data directory"));
    if let Some(cert) = cert {
        use rustls_pki_types::pem::PemObject;
        match rustls_pki_types::CertificateDer::pem_file_iter(cert).ok().and_then(|mut i| i.next()).and_then(Result::ok) {
            None => out.push(finding(Level::Error, format!("certificate {}: unreadable", cert.display()))),
            Some(der) => match cert_not_after(&der) {
                None => out.push(finding(Level::Error, format!("certificate {}: cannot read its expiry", cert.display()))),
                Some(t) => {
                    let days = (t.0 - now.0).div_euclid(86_400_000);
                    let level = if days < 0 { Level::Error } else if days < 14 { Level::Warn } else { Level::Ok };
                    out.push(finding(level, format!("certificate {} expires {} ({days} days)", cert.display(), t.to_rfc3339())));
                }
            },
        }
    }
    let tenants = match data.list_tenants() {
        Ok(t) => t,
        Err(e) => {
            out.push(finding(Level::Error, format!("cannot list tenants: {e}")));
            return out;
        }
    };
    for id in tenants {
        check_tenant(data, &id, now, &mut out);
    }
    out
}

/// Free space on the data directory's filesystem: a full disk refuses every write.
fn space_finding(root: &Path) -> Option<Finding> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(root.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the zeroed struct it is given; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Some(finding(Level::Warn, format!("cannot read the free space of {}: {}", root.display(), std::io::Error::last_os_error())));
    }
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let total = st.f_blocks.saturating_mul(st.f_frsize).max(1);
    let percent = free.saturating_mul(100) / total;
    let level = if free < 16 << 20 || percent < 2 {
        Level::Error
    } else if free < 512 << 20 || percent < 10 {
        Level::Warn
    } else {
        Level::Ok
    };
    Some(finding(level, format!("data directory filesystem: {} MiB free ({percent}%)", free >> 20)))
}

/// A directory scimd must write in: a read-only filesystem or mount refuses every write.
fn writable_finding(dir: &Path, what: &str) -> Option<Finding> {
    let why = crate::tenant::writable(dir).err()?;
    Some(finding(Level::Error, format!("{what} {} is not writable: {why}", dir.display())))
}

fn check_tenant(data: &DataDir, id: &TenantId, now: UtcMillis, out: &mut Vec<Finding>) {
    out.extend(writable_finding(&data.tenant_dir(id), &format!("tenant {id}: directory")));
    let keys = crate::tenant::keys::KeyState::new(data.private_key(id), data.public_key(id), data.keys_dir(id));
    if data.private_key(id).symlink_metadata().is_ok() {
        if let Err(e) = keys.signing() {
            out.push(finding(Level::Error, format!("tenant {id}: token signing key: {e}")));
        }
    }
    match crate::tenant::TenantSettings::load(&data.settings_file(id)) {
        Err(e) => out.push(finding(Level::Error, format!("tenant {id}: {e}"))),
        Ok(settings) => {
            for path in crate::scim::mapping::unresolved(crate::scim::schema::Catalogue::of(crate::model::ResourceKind::User, &settings), &settings.mapping) {
                out.push(finding(Level::Error, format!("tenant {id}: mapping: {path:?} names no user attribute scimd may write; the rule does nothing")));
            }
        }
    }
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(data.private_key(id)) {
        let mode = crate::tenant::keys::KeyMode::of(&m);
        let level = if mode.exposed() { Level::Error } else { Level::Ok };
        out.push(finding(level, format!("tenant {id}: token signing key mode {mode:o}")));
    }
    let conn = match ReadOnly::open(&data.database(id)) {
        Ok(c) => c,
        Err(e) => return out.push(finding(Level::Error, format!("tenant {id}: cannot open the database: {}", e.bare_message()))),
    };
    let _ = conn.wait_for_locks();
    let version = conn.schema_version();
    match version {
        Ok(v) if v == crate::store::SCHEMA_VERSION => out.push(finding(Level::Ok, format!("tenant {id}: schema version {v}"))),
        Ok(v) if v < crate::store::SCHEMA_VERSION => out.push(finding(Level::Warn, format!("tenant {id}: schema version {v}; the server migrates it on first use"))),
        Ok(v) => out.push(finding(Level::Error, format!("tenant {id}: schema version {v} is newer than this scimd"))),
        Err(ref e) => out.push(finding(Level::Error, format!("tenant {id}: {}", e.bare_message()))),
    }
    match integrity(&conn) {
        Ok(()) => out.push(finding(Level::Ok, format!("tenant {id}: integrity ok"))),
        Err(e) => out.push(finding(Level::Error, format!("tenant {id}: {e}"))),
    }
    if version.ok() == Some(crate::store::SCHEMA_VERSION) {
        match conn.with(|db| crate::store::counters_drift(db)) {
            Ok(drift) if drift.is_empty() => out.push(finding(Level::Ok, format!("tenant {id}: counters match the rows"))),
            Ok(drift) => {
                for (name, counted, actual) in drift {
                    out.push(finding(Level::Error, format!("tenant {id}: counter {name} says {counted}, the rows say {actual}")));
                }
            }
            Err(e) => out.push(finding(Level::Error, format!("tenant {id}: cannot recount: {e}"))),
        }
        name_findings(&conn, id, out);
    }
    let warn_days = crate::tenant::TenantSettings::load(&data.settings_file(id)).map(|s| s.token_warn_days).unwrap_or(30);
    let live = conn.with(|db| crate::store::tokens::live(db, &now.to_rfc3339()));
    if let Ok(live) = live {
        for t in live {
            let days = crate::auth::token::days_left(&t.expires_at, now);
            let level = if days < i64::from(warn_days) { Level::Warn } else { Level::Ok };
            out.push(finding(level, format!("tenant {id}: token of {} expires {} ({days} days)", t.user_name, t.expires_at)));
        }
    }
}

/// Names that are the same name as another under the comparison `crate::names` defines
/// (the v5 migration kept both rows), and names holding characters new names may not.
fn name_findings(conn: &ReadOnly, id: &TenantId, out: &mut Vec<Finding>) {
    match conn.with(|db| crate::store::users::name_clashes(db)) {
        Ok(clashes) if clashes.is_empty() => out.push(finding(Level::Ok, format!("tenant {id}: userNames and group names are unique"))),
        Ok(clashes) => {
            for c in clashes {
                let (what, attr) = if c.table == "users" { ("user", "userName") } else { ("group", "displayName") };
                let other = match &c.same_as {
                    Some((other_id, other_name)) => format!("the same name as {other_name:?} ({other_id})"),
                    None => "stored under a key that is not its own".to_string(),
                };
                out.push(finding(Level::Warn, format!("tenant {id}: {what} {:?} ({}) is {other}; rename one ({attr} must be unique)", c.name, c.id)));
            }
        }
        Err(e) => out.push(finding(Level::Error, format!("tenant {id}: cannot compare names: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate (DER) valid until `year-month-day` 00:00:00 UTC.
    fn cert_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// The typed errors say what the strings said.
    #[test]
    fn errors_read_as_sentences() {
        let cases = [
            (MaintenanceError::Exists("/b/acme.db".into()), "/b/acme.db exists; choose a new file"),
            (MaintenanceError::Unsound("row 3 missing from index".into()), "integrity_check: row 3 missing from index"),
            (
                MaintenanceError::NotSound("b.db".into(), Box::new(MaintenanceError::Unsound("bad".into()))),
                "b.db is not a sound backup: integrity_check: bad",
            ),
            (MaintenanceError::NewerSchema(99), "the backup is of schema version 99, newer than this scimd"),
            (MaintenanceError::Restore(StoreError::Closed), "restore failed (is the server still running?): store is closed"),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn reads_certificate_expiry() {
        let dir = std::env::temp_dir().join(format!("scimd-cert-{}", std::process::id()));
        let paths = crate::certs::generate(&dir, &["localhost".into()]).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::pem_file_iter(&paths.server_cert).unwrap().next().unwrap().unwrap();
        let not_after = cert_not_after(&der).expect("a notAfter");
        assert!(not_after > UtcMillis::now());
        let _ = std::fs::remove_dir_all(dir);
        // UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
        for (y, m, d, want) in [(2030, 6, 15, "2030-06-15"), (2049, 12, 31, "2049-12-31"), (2050, 1, 1, "2050-01-01"), (2107, 3, 1, "2107-03-01")] {
            let got = cert_not_after(&cert_until(y, m, d)).map(|t| t.to_rfc3339());
            assert_eq!(got.as_deref().map(|t| &t[..10]), Some(want));
        }
    }

    /// The hand-written DER walk sliced the time text by bytes and panicked on one that is
    /// not ASCII; a damaged certificate must be "cannot read", never a crash of `scimd check`.
    #[test]
    fn damaged_certificate_time_is_unreadable_not_a_panic() {
        let mut der = cert_until(2051, 1, 1);
        let at = der.windows(15).position(|w| w == b"20510101000000Z").unwrap();
        der[at + 5..at + 7].copy_from_slice("é".as_bytes());
        assert_eq!(cert_not_after(&der), None);
        assert_eq!(cert_not_after(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(cert_not_after(&[]), None);
    }
}
