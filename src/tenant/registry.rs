//! The open tenants. A tenant opens on first use (its database, writer thread and read
//! connections) and closes again when it has been idle for `idle`, or when opening another
//! would pass `max_open` (the least recently used goes first; tenants still closing count
//! until they have finished), so threads and file descriptors grow with the bound, never
//! with the number of tenants on disk.
//!
//! Closing never cuts a request short: a closing tenant leaves the table at once (new
//! requests no longer find it), then waits until no request holds it, then its writer
//! finishes the queued writes, checkpoints and stops. A request for a tenant that is still
//! closing waits for the close to finish before opening it again, so two writers never
//! share one database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, warn};
use tokio::sync::watch;

use super::{DataDir, Tenant, TenantId};
use crate::model::Fault;
use crate::store::StoreError;

/// At most this many tenants open at once, unless `serve` sets another (`max_open_tenants`).
pub const DEFAULT_MAX_OPEN_TENANTS: usize = 256;
/// A tenant with no request for this long is closed, unless `serve` sets another
/// (`tenant_idle_secs`). Okta and Entra each sync about every 40 minutes, so an idle
/// tenant would otherwise hold its thread and files for most of the day.
pub const DEFAULT_TENANT_IDLE_SECS: u64 = 300;

/// How many tenants may be open, and for how long idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    pub max_open: usize,
    pub idle: Duration,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits { max_open: DEFAULT_MAX_OPEN_TENANTS, idle: Duration::from_secs(DEFAULT_TENANT_IDLE_SECS) }
    }
}

/// Why a tenant was closed (a label of `scimd_tenant_closes_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Idle,
    Evicted,
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Evicted => "evicted",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct LifecycleCounts {
    pub opened: AtomicU64,
    pub closed_idle: AtomicU64,
    pub closed_evicted: AtomicU64,
}

impl LifecycleCounts {
    fn closed(&self, reason: CloseReason) {
        match reason {
            CloseReason::Idle => self.closed_idle.fetch_add(1, Ordering::Relaxed),
            CloseReason::Evicted => self.closed_evicted.fetch_add(1, Ordering::Relaxed),
            CloseReason::Shutdown => 0,
        };
    }
}

struct Entry {
    tenant: Arc<Tenant>,
    last_used: Instant,
}

/// A tenant taken out of the table to be closed, and how to say it is.
struct Victim {
    id: TenantId,
    tenant: Arc<Tenant>,
    done: watch::Sender<bool>,
}

/// A slot of the bound taken by an open under way; given back once the tenant is in the
/// table (where it counts instead) or the open failed.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tenants taken out of the table whose close has not finished; the receiver turns true
/// when it has.
type Closing = Arc<Mutex<HashMap<TenantId, watch::Receiver<bool>>>>;

pub struct TenantRegistry {
    data: DataDir,
    limits: TenantLimits,
    open: Mutex<HashMap<TenantId, Entry>>,
    closing: Closing,
    /// Notified whenever a close finishes (an open waiting for room goes on).
    closed: Arc<tokio::sync::Notify>,
    /// Held while that tenant is being opened: concurrent first requests to it wait for one
    /// open (and its migration) instead of each running it; other tenants open meanwhile.
    opening: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// Opens under way that hold a slot of the bound.
    pending: AtomicUsize,
    /// Closes that may run at once: each joins a writer and checkpoints, which is disk
    /// work; more at once would only hold more blocking threads.
    closers: Arc<tokio::sync::Semaphore>,
    /// Opens that may run at once: an open is CPU work (the schema read twice, a thread,
    /// file modes); more at once than cores only crowds out the requests of tenants that
    /// are open, which share the blocking pool and the cores with them.
    openers: tokio::sync::Semaphore,
    pub counts: Arc<LifecycleCounts>,
    /// Tenants whose last open failed for an operator's fault, and when: asked again within
    /// `REOPEN_AFTER`, they are refused with the same fault instead of opened again, so an
    /// IdP retrying a broken tenant costs a map lookup, not an open per request.
    refused: Mutex<HashMap<TenantId, Refusal>>,
}

/// Why and since when a tenant is refused. A damaged or newer database is refused until
/// its file changes (a restore), not tried again every few seconds: an open reads only
/// some pages, and one that succeeded on a file still damaged would clear the fault and
/// raise it again at the next bad page, for ever.
struct Refusal {
    at: Instant,
    fault: Fault,
    why: String,
    /// The database file as it was when refused (`None`: not read yet, the tenant was still
    /// closing); for a damaged or newer database only.
    file: Option<FileStamp>,
}

/// A file's identity and state: a restore (a new file, or new content) changes it.
type FileStamp = (u64, u64, std::time::SystemTime);

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

/// A fault that lasts until the database file changes.
fn until_file_changes(fault: Fault) -> bool {
    matches!(fault, Fault::Corrupt | Fault::NewerSchema)
}

/// How long a tenant whose open failed (or that was found damaged) is refused before the
/// next request tries to open it again: how soon it recovers once its cause is gone.
pub const REOPEN_AFTER: Duration = Duration::from_secs(3);

/// Faults a successful open proves gone: it read the settings and the database and wrote
/// its WAL and shared memory. A full disk needs a write to prove it gone.
fn cleared_by_open(fault: Fault) -> bool {
    matches!(fault, Fault::Corrupt | Fault::NewerSchema | Fault::Unopenable | Fault::Settings | Fault::ReadOnly)
}

impl TenantRegistry {
    pub fn new(data: DataDir) -> TenantRegistry {
        TenantRegistry::with_limits(data, TenantLimits::default())
    }

    pub fn with_limits(data: DataDir, limits: TenantLimits) -> TenantRegistry {
        TenantRegistry {
            data,
            limits: TenantLimits { max_open: limits.max_open.max(1), idle: limits.idle },
            open: Mutex::new(HashMap::new()),
            closing: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(tokio::sync::Notify::new()),
            opening: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
            closers: Arc::new(tokio::sync::Semaphore::new(2)),
            openers: tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)),
            counts: Arc::new(LifecycleCounts::default()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    pub fn limits(&self) -> TenantLimits {
        self.limits
    }

    /// The open tenant, marked as used now.
    fn lookup(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, StoreError> {
        let mut open = self.open.lock().map_err(|_| StoreError::Closed)?;
        Ok(open.get_mut(id).map(|e| {
            e.last_used = Instant::now();
            Arc::clone(&e.tenant)
        }))
    }

    fn closing_of(&self, id: &TenantId) -> Option<watch::Receiver<bool>> {
        self.closing.lock().ok().and_then(|c| c.get(id).cloned())
    }

    /// The tenant, if its directory exists, opening it if it is not open (on the blocking
    /// pool) and closing the least recently used one first when the bound is reached.
    pub async fn get(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, StoreError> {
        loop {
            if let Some(t) = self.lookup(id)? {
                return Ok(Some(t));
            }
            if !self.data.tenant_exists(id) {
                return Ok(None);
            }
            if let Some((fault, why)) = self.still_refused(id) {
                self.data.faults().raise(id.as_str(), fault, &why);
                return Err(StoreError::Unavailable(fault, why));
            }
            if let Some(mut done) = self.closing_of(id) {
                let _ = done.wait_for(|d| *d).await;
                continue;
            }
            let lock = {
                let mut opening = self.opening.lock().map_err(|_| StoreError::Closed)?;
                Arc::clone(opening.entry(id.clone()).or_default())
            };
            let opened = {
                let _opening = lock.lock().await;
                self.open_one(id).await
            };
            if let Ok(mut opening) = self.opening.lock() {
                // Ours and the table's: nobody else waits on it, so it may go.
                if Arc::strong_count(&lock) <= 2 {
                    opening.remove(id);
                }
            }
            match opened? {
                Some(t) => return Ok(Some(t)),
                // It was closing after all; wait for that and go round.
                None => continue,
            }
        }
    }

    /// Opens `id` while holding its opening lock: `None` when it turned out to be closing.
    async fn open_one(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some(t) = self.lookup(id)? {
            return Ok(Some(t));
        }
        // It may have begun closing since the caller looked (the idle sweep closes tenants
        // without any opening lock).
        if self.closing_of(id).is_some() {
            return Ok(None);
        }
        let _slot = self.make_room().await?;
        let (data, tid) = (self.data.clone(), id.clone());
        let started = Instant::now();
        let _opener = self.openers.acquire().await.map_err(|_| StoreError::Closed)?;
        let opened = tokio::task::spawn_blocking(move || Tenant::open_to_serve(&data, &tid))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let tenant = match opened {
            Ok(t) => Arc::new(t),
            Err(e) => {
                if let Some(fault) = e.fault() {
                    let why = format!("cannot open: {e}");
                    self.data.faults().raise(id.as_str(), fault, &why);
                    self.refuse(id, fault, why, false);
                }
                return Err(e);
            }
        };
        self.data.faults().clear(id.as_str(), cleared_by_open);
        let now_open = {
            let mut open = self.open.lock().map_err(|_| StoreError::Closed)?;
            open.insert(id.clone(), Entry { tenant: Arc::clone(&tenant), last_used: Instant::now() });
            open.len()
        };
        self.counts.opened.fetch_add(1, Ordering::Relaxed);
        debug!(target: "scimd::tenant", "tenant {id}: opened in {} ms ({now_open} open)", started.elapsed().as_millis());
        Ok(Some(tenant))
    }

    /// Takes a slot for one more open tenant, waiting until the tenants open, those still
    /// closing (which hold their files and writer until they finish) and the other opens
    /// under way are fewer than the bound. With a large bound it also closes ahead, keeping
    /// a sixteenth of the slots free, so that opens do not wait for closes to finish.
    async fn make_room(&self) -> Result<Slot<'_>, StoreError> {
        let max = self.limits.max_open;
        let reserve = max / 16;
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            // Registered before the counts are read, so a close finishing in between wakes it.
            notified.as_mut().enable();
            let (held, closing, pending) = {
                let open = self.open.lock().map_err(|_| StoreError::Closed)?;
                let closing = self.closing.lock().map(|c| c.len()).unwrap_or(0);
                let pending = self.pending.load(Ordering::Relaxed);
                let held = open.len() + closing + pending;
                if held < max {
                    // Under the table's lock, so two opens cannot both take the last slot.
                    self.pending.fetch_add(1, Ordering::Relaxed);
                }
                (held, closing, pending)
            };
            if held < max {
                self.evict_down_to(max.saturating_sub(reserve + closing + pending + 1));
                return Ok(Slot(&self.pending));
            }
            self.evict_down_to(max.saturating_sub(1 + closing + pending));
            notified.await;
        }
    }

    fn still_refused(&self, id: &TenantId) -> Option<(Fault, String)> {
        let closing = self.closing_of(id).is_some();
        let mut refused = self.refused.lock().ok()?;
        let r = refused.get_mut(id)?;
        let keep = if until_file_changes(r.fault) {
            let now = stamp(&self.data.database(id));
            match r.file {
                // Read once the close has finished (its checkpoint may still write).
                None => {
                    if !closing {
                        r.file = now;
                    }
                    true
                }
                Some(then) => now == Some(then),
            }
        } else {
            r.at.elapsed() < REOPEN_AFTER
        };
        if keep {
            return Some((r.fault, r.why.clone()));
        }
        refused.remove(id);
        None
    }

    fn refuse(&self, id: &TenantId, fault: Fault, why: String, open: bool) {
        // A tenant that never opened has nothing to flush: its file is as it will stay.
        let file = if open { None } else { stamp(&self.data.database(id)) };
        if let Ok(mut refused) = self.refused.lock() {
            refused.insert(id.clone(), Refusal { at: Instant::now(), fault, why, file });
        }
    }

    /// A request found the open tenant `id` damaged: it is closed (its writer drains, the
    /// WAL is checkpointed and removed) and refused for `REOPEN_AFTER`, so a file put in its
    /// place (a restore) is what the next open reads, and never meets this open's WAL.
    pub fn retire(&self, id: &TenantId, fault: Fault) {
        // Only an open tenant: one refused already keeps its refusal's time, or an IdP
        // retrying every second would keep it refused for ever.
        let victim = self.open.lock().ok().and_then(|mut open| self.take_out(&mut open, id.clone()));
        if let Some(victim) = victim {
            self.refuse(id, fault, "found damaged while open".into(), true);
            log::warn!(target: "scimd::tenant", "tenant {id}: closed: its database is {}", fault.as_str());
            self.start_close(victim, CloseReason::Evicted);
        }
    }

    /// Closes the least recently used tenants until at most `keep` are open.
    fn evict_down_to(&self, keep: usize) {
        let victims: Vec<Victim> = match self.open.lock() {
            Ok(mut open) => {
                let mut victims = Vec::new();
                while open.len() > keep {
                    let Some(oldest) = open.iter().min_by_key(|(_, e)| e.last_used).map(|(id, _)| id.clone()) else { break };
                    victims.extend(self.take_out(&mut open, oldest));
                }
                victims
            }
            Err(_) => Vec::new(),
        };
        for victim in victims {
            self.start_close(victim, CloseReason::Evicted);
        }
    }

    /// Closes every tenant that has had no request for `limits.idle` as of `now`.
    pub fn close_idle(&self, now: Instant) {
        let idle = self.limits.idle;
        let victims: Vec<Victim> = match self.open.lock() {
            Ok(mut open) => {
                let stale: Vec<TenantId> =
                    open.iter().filter(|(_, e)| now.saturating_duration_since(e.last_used) >= idle).map(|(id, _)| id.clone()).collect();
                stale.into_iter().filter_map(|id| self.take_out(&mut open, id)).collect()
            }
            Err(_) => Vec::new(),
        };
        for victim in victims {
            self.start_close(victim, CloseReason::Idle);
        }
    }

    /// Moves a tenant from the table to the closing set, under the table's lock (which the
    /// caller holds): in between, a request would find it in neither and open it a second
    /// time beside the writer that is still running.
    fn take_out(&self, open: &mut HashMap<TenantId, Entry>, id: TenantId) -> Option<Victim> {
        let entry = open.remove(&id)?;
        let (done, done_rx) = watch::channel(false);
        if let Ok(mut closing) = self.closing.lock() {
            closing.insert(id.clone(), done_rx);
        }
        Some(Victim { id, tenant: entry.tenant, done })
    }

    /// Runs the close of a tenant taken out of the table, in the background.
    fn start_close(&self, victim: Victim, reason: CloseReason) {
        let Victim { id, tenant, done: done_tx } = victim;
        let closing = Arc::clone(&self.closing);
        let closed = Arc::clone(&self.closed);
        let counts = Arc::clone(&self.counts);
        let closers = Arc::clone(&self.closers);
        tokio::spawn(async move {
            // Requests in flight hold the tenant; none can pick it up any more.
            let started = Instant::now();
            let mut warned = false;
            while Arc::strong_count(&tenant) > 1 {
                if !warned && started.elapsed() > Duration::from_secs(30) {
                    warn!(target: "scimd::tenant", "tenant {id}: still in use 30 s after it began closing ({})", reason.as_str());
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _permit = closers.acquire_owned().await;
            let _ = tokio::task::spawn_blocking(move || tenant.close())
            .await;
            if let Ok(mut c) = closing.lock() {
                c.remove(&id);
            }
            let _ = done_tx.send(true);
            closed.notify_waiters();
            counts.closed(reason);
            debug!(target: "scimd::tenant", "tenant {id}: closed ({}) after {} ms", reason.as_str(), started.elapsed().as_millis());
        });
    }

    /// How many tenants are open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// The tenants open now (none is opened to answer).
    pub fn open_tenants(&self) -> Vec<Arc<Tenant>> {
        let mut open: Vec<Arc<Tenant>> = self.open.lock().map(|o| o.values().map(|e| Arc::clone(&e.tenant)).collect()).unwrap_or_default();
        open.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        open
    }

    /// Tries again the tenants refused for a fault whose wait is over (or whose file
    /// changed), so a fault whose cause is gone clears without waiting for the IdP's next
    /// request; forgets the faults of tenants that no longer exist. Run by the sweep.
    pub async fn retry_refused(&self) {
        let ids: Vec<TenantId> = self.refused.lock().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        for id in ids {
            if !self.data.tenant_exists(&id) {
                if let Ok(mut r) = self.refused.lock() {
                    r.remove(&id);
                }
                self.data.faults().clear(id.as_str(), |_| true);
                continue;
            }
            if self.still_refused(&id).is_none() {
                let _ = self.get(&id).await;
            }
        }
    }

    /// Looks at every open tenant's key files (a `stat` each; parsed only when changed), so
    /// files lost while tokens are verified from the cache are reported within a sweep.
    pub async fn check_key_files(&self) {
        for t in self.open_tenants() {
            let _ = t.verifying_key().await;
        }
    }

    /// Reloads every open tenant's settings (SIGHUP); the others read theirs when they open.
    pub fn reload_settings(&self) {
        for t in self.open_tenants() {
            match t.reload_settings() {
                Ok(()) => self.data.faults().clear(t.id.as_str(), |f| f == Fault::Settings),
                Err(e) => {
                    self.data.faults().raise(t.id.as_str(), Fault::Settings, &format!("keeping the previous settings: {e}"));
                }
            }
        }
    }

    /// Closes every open store (writers finish their queues and checkpoint) and waits for
    /// the closes already under way. Blocking: run off the async runtime, after the
    /// listeners have stopped.
    pub fn close_all(&self) {
        let open: Vec<Entry> = self.open.lock().map(|mut o| o.drain().map(|(_, e)| e).collect()).unwrap_or_default();
        for e in open {
            e.tenant.close();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.closing.lock().map(|c| !c.is_empty()).unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events;

    fn data_with(tenants: &[&str]) -> (std::path::PathBuf, DataDir) {
        let root = std::env::temp_dir().join(format!("scimd-registry-{}-{}", std::process::id(), tenants.join("-")));
        let _ = std::fs::remove_dir_all(&root);
        let data = DataDir::new(&root);
        for t in tenants {
            data.create_tenant(&TenantId::parse(t).unwrap()).unwrap();
        }
        (root, data)
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn writer_threads(tenant: &str) -> usize {
        // Linux keeps 15 bytes of a thread's name: "scimd-writer-" and two of the id.
        let name = format!("scimd-writer-{tenant}");
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| name.starts_with(comm.trim()))
            .count()
    }

    /// Past the bound the least recently used tenant closes (its writer thread ends); a
    /// request that still holds it finishes first, the open that needs its room waits for
    /// that, and it opens again later with its data.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_least_recently_used_tenant_closes_after_its_requests() {
        let (root, data) = data_with(&["q7", "q8", "q9"]);
        let reg = Arc::new(TenantRegistry::with_limits(data, TenantLimits { max_open: 2, idle: Duration::from_secs(3600) }));
        let id = |s: &str| TenantId::parse(s).unwrap();
        let a = reg.get(&id("q7")).await.unwrap().unwrap();
        reg.get(&id("q8")).await.unwrap().unwrap();
        assert_eq!(writer_threads("q7"), 1);
        let third = {
            let reg = Arc::clone(&reg);
            tokio::spawn(async move { reg.get(&id("q9")).await.map(|t| t.is_some()) })
        };
        // q7 is evicted, but this request still holds it: its write lands, and q9 waits.
        until("q7 to leave the table", || reg.open_tenants().iter().all(|t| t.id.as_str() != "q7")).await;
        a.store
            .write(|db| events::record(db, "2026-01-01T00:00:00.000Z", "test", events::Action::Create, "User", "u1", &serde_json::json!({})))
            .await
            .unwrap();
        assert!(!third.is_finished(), "q9 opened while q7 still held its room");
        drop(a);
        assert!(third.await.unwrap().unwrap());
        assert_eq!(reg.counts.closed_evicted.load(Ordering::Relaxed), 1);
        assert_eq!(writer_threads("q7"), 0, "its writer thread ended");
        assert_eq!(reg.open_count(), 2, "the bound holds");
        let a = reg.get(&id("q7")).await.unwrap().unwrap();
        let q = events::EventQuery { after: 0, limit: 10, resource_id: Some("u1".into()), since: None, action: None };
        assert_eq!(a.store.read(move |db| events::list(db, &q)).await.unwrap().len(), 1, "the write survived");
        assert_eq!(reg.open_count(), 2);
        assert_eq!(reg.counts.opened.load(Ordering::Relaxed), 4);
        drop(a);
        reg.close_all();
        let _ = std::fs::remove_dir_all(root);
    }

    /// A tenant unused for `idle` closes; one used since stays open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_tenants_close() {
        let (root, data) = data_with(&["z5", "z6"]);
        let idle = Duration::from_secs(60);
        let reg = TenantRegistry::with_limits(data, TenantLimits { max_open: 8, idle });
        let id = |s: &str| TenantId::parse(s).unwrap();
        reg.get(&id("z5")).await.unwrap();
        reg.get(&id("z6")).await.unwrap();
        let b_used = Instant::now();
        reg.close_idle(b_used + Duration::from_secs(1));
        assert_eq!(reg.open_count(), 2, "nothing is idle yet");
        reg.get(&id("z5")).await.unwrap();
        reg.close_idle(b_used + idle);
        assert_eq!(reg.open_tenants().iter().map(|t| t.id.to_string()).collect::<Vec<_>>(), ["z5"]);
        until("the idle tenant to close", || reg.counts.closed_idle.load(Ordering::Relaxed) == 1).await;
        assert_eq!(writer_threads("z6"), 0);
        reg.close_all();
        let _ = std::fs::remove_dir_all(root);
    }
}
