//! The faults a store meets that are the operator's to fix (issue 22): which SQLite and
//! system errors they are, how a job's fault is found when its error is the caller's type,
//! and where they are reported (the tenant's fault board, through `FaultSink`).

use std::sync::Arc;

use super::{StoreError, StoreResult};
use crate::model::Fault;

impl StoreError {
    /// The operator's fault behind this error, if it is one.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Unavailable(f, _) => Some(*f),
            StoreError::Sql(e) => fault_of(e),
            StoreError::Io(e) => fault_of_io(e),
            _ => None,
        }
    }
}

/// The fault an SQLite error reports, when it is one an operator fixes: a full disk, a
/// read-only or damaged file. Everything else (a constraint, a bug) is not.
pub fn fault_of(e: &rusqlite::Error) -> Option<Fault> {
    use rusqlite::ErrorCode;
    let rusqlite::Error::SqliteFailure(f, _) = e else { return None };
    match f.code {
        ErrorCode::DiskFull => Some(Fault::DiskFull),
        ErrorCode::ReadOnly => Some(Fault::ReadOnly),
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Some(Fault::Corrupt),
        ErrorCode::CannotOpen => Some(Fault::Unopenable),
        // The shared-memory file could not be grown: on Linux, the filesystem is full
        // (SQLite writes every new page of it rather than leave a hole that SIGBUSes).
        ErrorCode::SystemIoFailure if f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE => Some(Fault::DiskFull),
        _ => None,
    }
}

fn fault_of_io(e: &std::io::Error) -> Option<Fault> {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Some(Fault::DiskFull),
        std::io::ErrorKind::ReadOnlyFilesystem => Some(Fault::ReadOnly),
        _ => None,
    }
}

thread_local! {
    /// The last fault an SQLite error on this thread reported. The writer reads it when a
    /// commit fails without saying why (SQLite rolled the transaction back after a job's
    /// statement hit a full disk), so the callers hear the cause, not "no transaction".
    pub(super) static LAST_FAULT: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

/// Who hears of a store's faults: the tenant's fault board, which tells the operator. The
/// store never sees a tenant or HTTP; it says what it met and when a write succeeded.
pub trait FaultSink: Send + Sync {
    /// A job met `fault` (SQLite's or the system's words in `why`, for the log).
    fn raised(&self, fault: Fault, why: &str);
    /// A write committed: a full disk or a read-only file is evidently gone.
    fn wrote(&self);
}

/// A store's link to its sink (set once the tenant is open).
#[derive(Default)]
pub(super) struct FaultReport {
    pub(super) sink: std::sync::OnceLock<Arc<dyn FaultSink>>,
}

impl FaultReport {
    pub(super) fn raise(&self, fault: Fault, why: &str) {
        if let Some(sink) = self.sink.get() {
            sink.raised(fault, why);
        }
    }

    pub(super) fn result<T>(&self, result: &StoreResult<T>) {
        if let Err(e) = result {
            if let Some(fault) = e.fault() {
                self.raise(fault, &e.to_string());
            }
        }
    }
}

