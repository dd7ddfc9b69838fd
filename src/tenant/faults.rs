//! The fault board (issue 22): what is wrong with each tenant now, for a cause that is the
//! operator's to fix (a full disk, a read-only or damaged file, an unreadable `tenant.toml`
//! or signing key). Raised by whoever meets the fault (a tenant's store, the registry when
//! an open fails, a settings reload, a key load), cleared by the first success that proves
//! it gone. It tells the operator at once and only once: one ERROR line when a fault is
//! raised, then at most one a minute while it lasts (with the count since), and an INFO
//! line when it clears; `/metrics`, the operator's `/healthz` and `scimd check` (through
//! the control socket) read it. One board per data directory, shared by its clones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{error, info};

use super::TenantId;
use crate::clock::UtcMillis;
use crate::model::Fault;

/// At most one ERROR line per tenant and fault this often while the fault lasts.
const LOG_EVERY: Duration = Duration::from_secs(60);

struct Entry {
    since: UtcMillis,
    count: u64,
    why: String,
    logged: Instant,
    unlogged: u64,
}

/// A fault as the operator sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Raised {
    pub tenant: String,
    pub fault: &'static str,
    pub since: String,
    /// How many times it was met (requests refused, loads failed) since it was raised.
    pub count: u64,
    /// SQLite's or the system's words: the operator's, never a client's.
    pub detail: String,
    pub hint: &'static str,
}

pub struct FaultBoard {
    tenants: Mutex<BTreeMap<String, BTreeMap<Fault, Entry>>>,
    /// At most one ERROR line per tenant and fault this often (`LOG_EVERY`).
    log_every: Duration,
    /// Raised faults a write clears: while none is, a write does not take the lock.
    write_faults: AtomicUsize,
    /// Faults raised since start, per `Fault::ALL` index (`scimd_faults_total`).
    raised: [AtomicU64; Fault::ALL.len()],
}

impl Default for FaultBoard {
    fn default() -> Self {
        FaultBoard { tenants: Mutex::default(), log_every: LOG_EVERY, write_faults: AtomicUsize::default(), raised: Default::default() }
    }
}

impl FaultBoard {
    /// `tenant` met `fault`; `why` is for the log. Returns whether it wrote an ERROR line.
    pub fn raise(&self, tenant: &str, fault: Fault, why: &str) -> bool {
        let Ok(mut tenants) = self.tenants.lock() else { return false };
        let faults = tenants.entry(tenant.to_string()).or_default();
        match faults.get_mut(&fault) {
            Some(e) => {
                e.count += 1;
                e.unlogged += 1;
                why.clone_into(&mut e.why);
                if e.logged.elapsed() < self.log_every {
                    return false;
                }
                error!(target: "scimd::faults", "tenant {tenant}: still {} ({} more since the last line): {why}; {}", fault.as_str(), e.unlogged, fault.hint());
                e.logged = Instant::now();
                e.unlogged = 0;
                true
            }
            None => {
                error!(target: "scimd::faults", "tenant {tenant}: {}: {why}; {}", fault.as_str(), fault.hint());
                faults.insert(fault, Entry { since: UtcMillis::now(), count: 1, why: why.to_string(), logged: Instant::now(), unlogged: 0 });
                if fault.cleared_by_write() {
                    self.write_faults.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(i) = Fault::ALL.iter().position(|f| *f == fault) {
                    self.raised[i].fetch_add(1, Ordering::Relaxed);
                }
                true
            }
        }
    }

    /// The faults of `tenant` that `gone` says are over.
    pub fn clear(&self, tenant: &str, gone: impl Fn(Fault) -> bool) {
        let Ok(mut tenants) = self.tenants.lock() else { return };
        let Some(faults) = tenants.get_mut(tenant) else { return };
        faults.retain(|fault, e| {
            if !gone(*fault) {
                return true;
            }
            info!(target: "scimd::faults", "tenant {tenant}: recovered from {} (raised {}, met {} times)", fault.as_str(), e.since.to_rfc3339(), e.count);
            if fault.cleared_by_write() {
                self.write_faults.fetch_sub(1, Ordering::Relaxed);
            }
            false
        });
        if faults.is_empty() {
            tenants.remove(tenant);
        }
    }

    /// A write of `tenant` committed.
    pub fn wrote(&self, tenant: &str) {
        if self.write_faults.load(Ordering::Relaxed) > 0 {
            self.clear(tenant, Fault::cleared_by_write);
        }
    }

    pub fn has(&self, tenant: &str, fault: Fault) -> bool {
        self.tenants.lock().is_ok_and(|t| t.get(tenant).is_some_and(|f| f.contains_key(&fault)))
    }

    /// Every fault raised now, by tenant then fault.
    pub fn snapshot(&self) -> Vec<Raised> {
        let Ok(tenants) = self.tenants.lock() else { return Vec::new() };
        tenants
            .iter()
            .flat_map(|(tenant, faults)| {
                faults.iter().map(move |(fault, e)| Raised {
                    tenant: tenant.clone(),
                    fault: fault.as_str(),
                    since: e.since.to_rfc3339(),
                    count: e.count,
                    detail: e.why.clone(),
                    hint: fault.hint(),
                })
            })
            .collect()
    }

    /// Faults raised since start, per fault.
    pub fn totals(&self) -> Vec<(Fault, u64)> {
        Fault::ALL.iter().zip(&self.raised).map(|(f, n)| (*f, n.load(Ordering::Relaxed))).collect()
    }
}

/// One tenant's store reporting to the board.
pub struct TenantFaults {
    pub board: Arc<FaultBoard>,
    pub tenant: TenantId,
}

impl crate::store::FaultSink for TenantFaults {
    fn raised(&self, fault: Fault, why: &str) {
        self.board.raise(self.tenant.as_str(), fault, why);
    }

    fn wrote(&self) {
        self.board.wrote(self.tenant.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_once_counted_and_cleared_by_what_proves_it_gone() {
        let board = FaultBoard::default();
        assert!(board.raise("a", Fault::DiskFull, "database or disk is full"), "the first is logged");
        assert!(!board.raise("a", Fault::DiskFull, "database or disk is full"), "the next, within a minute, is counted");
        assert!(board.raise("b", Fault::Corrupt, "malformed"));
        let snap = board.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!((snap[0].tenant.as_str(), snap[0].fault, snap[0].count), ("a", "disk_full", 2));
        // A write clears a full disk, not a damaged database.
        board.wrote("b");
        assert!(board.has("b", Fault::Corrupt));
        board.wrote("a");
        assert!(!board.has("a", Fault::DiskFull));
        assert_eq!(board.write_faults.load(Ordering::Relaxed), 0);
        board.clear("b", |f| f == Fault::Corrupt);
        assert!(board.snapshot().is_empty());
        assert_eq!(board.totals().iter().map(|(_, n)| n).sum::<u64>(), 2);
    }

    /// Past the interval, a fault that lasts is logged again (with how many it counted).
    #[test]
    fn a_lasting_fault_is_logged_again_after_the_interval() {
        let board = FaultBoard { log_every: Duration::ZERO, ..FaultBoard::default() };
        assert!(board.raise("a", Fault::ReadOnly, "attempt to write a readonly database"));
        assert!(board.raise("a", Fault::ReadOnly, "attempt to write a readonly database"));
        assert_eq!(board.snapshot()[0].count, 2);
    }
}
