//! Persistence: one SQLite database per tenant.
//!
//! Concurrency model (no unbounded SQLite work runs on the async runtime):
//! * one writer thread per tenant owns the only write connection. It takes every write
//!   that is waiting, runs each in its own SAVEPOINT inside one `BEGIN IMMEDIATE`
//!   transaction, commits once (`synchronous=FULL`), and only then answers each caller:
//!   group commit, so N concurrent creates cost one fsync, and a 2xx means durable.
//! * readers borrow a connection from a small pool, one read transaction per job; WAL
//!   lets them run while the writer commits. `read` runs a job bounded by a unique key
//!   inline on the calling task (a hop would cost more than the read); `scan` runs work
//!   that grows with the data on the blocking pool, at most one per core, under a time
//!   budget that interrupts SQLite.
//!
//! Only the files in this module contain SQL text.

#[cfg(test)]
mod domain_tests;
pub mod auth_check;
pub mod catalogue;
pub mod custom;
pub mod events;
mod faults;
pub mod filter_sql;
pub mod groups;
pub mod maintenance;
mod migrate;
pub mod positions;
pub mod shadow;
mod sharing;
pub mod tenant_files;
pub mod tokens;
pub mod users;
mod window;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use log::{debug, error};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::model::Fault;
pub use faults::{fault_of, FaultSink};
use faults::{FaultReport, LAST_FAULT};
use tokio::sync::oneshot;

pub use positions::PagePositions;
pub use window::{approx_json_bytes, Listed, Window, RESOURCE_OVERHEAD_BYTES};
use window::{query_window, ListSource, WindowRows};

/// Errors of the storage layer. The SCIM layer maps them; SQL details reach only the log.
#[derive(Debug)]
pub enum StoreError {
    NotFound(String),
    Conflict(String),
    /// A reference the data cannot satisfy (e.g. a member id that is not a user).
    Invalid(String),
    /// The writer thread is gone (shutting down).
    Closed,
    /// A job panicked (a bug): that request fails, the writer and the tenant go on.
    Panicked(String),
    /// The database is of a newer schema than this binary understands, or damaged.
    Corrupt(String),
    /// A scan ran past the request's time budget (or its client went away) and SQLite
    /// was interrupted: the query itself stopped, not only the wait for it.
    OverBudget(std::time::Duration),
    Sql(rusqlite::Error),
    Io(std::io::Error),
    /// Something authentication reads changed since the request's credentials were
    /// verified (`auth_check.rs`): the caller verifies them again; no client sees this.
    AuthChanged,
    /// The tenant's storage cannot do this now for a cause that is the operator's (a full
    /// disk, a read-only or damaged file): the fault, and SQLite's or the system's words for
    /// the log. Raised once per store on the tenant's fault board (`FaultSink`).
    Unavailable(Fault, String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(what) => write!(f, "not found: {what}"),
            StoreError::Conflict(what) => write!(f, "conflict: {what}"),
            StoreError::Invalid(what) => write!(f, "invalid: {what}"),
            StoreError::Closed => write!(f, "store is closed"),
            StoreError::Panicked(what) => write!(f, "a storage job panicked: {what}"),
            StoreError::Corrupt(what) => write!(f, "database unusable: {what}"),
            StoreError::OverBudget(budget) => write!(f, "the query ran past its budget of {} ms", budget.as_millis()),
            StoreError::Sql(e) => write!(f, "sqlite: {e}"),
            StoreError::Io(e) => write!(f, "i/o: {e}"),
            StoreError::AuthChanged => write!(f, "the credentials' state changed since they were verified"),
            StoreError::Unavailable(fault, why) => write!(f, "{}: {why}", fault.as_str()),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match fault_of(&e) {
            Some(fault) => {
                LAST_FAULT.with(|f| f.set(Some(fault)));
                StoreError::Unavailable(fault, e.to_string())
            }
            None => StoreError::Sql(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The schema version this binary creates and understands.
pub const SCHEMA_VERSION: i64 = migrate::CURRENT;


/// Every counter in `counters`, counted from the rows: what the triggers keep. The one
/// definition of what each counter counts, used to fill them (migration to v4) and to check
/// them (`scimd check`).
pub(crate) const RECOUNT_SQL: &str = "SELECT 'users' AS name, (SELECT count(*) FROM users WHERE deleted_at IS NULL) AS n
     UNION ALL SELECT 'groups', (SELECT count(*) FROM groups WHERE scope = 'org')
     UNION ALL SELECT 'seats:' || l, (SELECT count(*) FROM users WHERE license = l AND active IS NOT 0 AND deleted_at IS NULL)
         FROM (SELECT 'creator' AS l UNION ALL SELECT 'creator_float')";

/// Counters whose value differs from a recount of the rows: (name, counted, actual).
/// Triggers keep them in the writer's transactions; a difference means the database was
/// changed by something that bypassed them (or is damaged).
pub fn counters_drift(conn: &Connection) -> StoreResult<Vec<(String, i64, i64)>> {
    let sql = format!("SELECT c.name, c.n, r.n FROM counters c JOIN ({RECOUNT_SQL}) r ON r.name = c.name WHERE c.n <> r.n");
    let rows = conn.prepare(&sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Seats in use from the counters: (Creator, Creator Float), active users not deleted.
pub fn seats_in_use(conn: &Connection) -> StoreResult<(i64, i64)> {
    let counter = |name: &str| -> rusqlite::Result<i64> {
        conn.prepare_cached("SELECT n FROM counters WHERE name = ?")?.query_row([name], |r| r.get(0))
    };
    Ok((counter("seats:creator")?, counter("seats:creator_float")?))
}

/// Sizes of a tenant for `/metrics`: (users, active users, groups) that SCIM can see.
/// Users and groups come from the counters; active users are counted.
pub fn tenant_counts(conn: &Connection) -> StoreResult<(i64, i64, i64)> {
    let counter = |name: &str| -> rusqlite::Result<i64> {
        conn.prepare_cached("SELECT n FROM counters WHERE name = ?")?.query_row([name], |r| r.get(0))
    };
    let active = conn.query_row("SELECT count(*) FROM users WHERE deleted_at IS NULL AND active IS NOT 0", [], |r| r.get(0))?;
    Ok((counter("users")?, active, counter("groups")?))
}


/// Opens a connection with the pragmas every connection needs.
fn open_connection(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Creates or migrates the database at `path` and returns a write connection on it.
pub fn open_for_write(path: &Path) -> StoreResult<Connection> {
    let mut conn = open_connection(path, false)?;
    // SQLite falls back to reading a file it may not write (a read-only mount): a writer
    // that cannot write is refused here, so the tenant is refused as a whole and opened
    // afresh (read-write) once it can be written again.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(StoreError::Unavailable(Fault::ReadOnly, format!("{} can only be read", path.display())));
    }
    enable_wal(&conn)?;
    migrate::migrate(&mut conn)?;
    // The writer checkpoints (in its own thread, after a commit) when the WAL passes this
    // many pages; writes queued meanwhile wait, so the size of one checkpoint is the tail
    // latency of writes. Measured on 1,000,000 users (PATCH active, 16 connections): 1,000
    // pages gave p99 12.6 ms, 4,000 gave 35 ms, at the same throughput; a separate
    // checkpointer thread gave 45 ms, because SQLite only rewinds the WAL when a write
    // begins with every frame copied, which under steady writes only the writer can see.
    conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
    Ok(conn)
}

/// Switches the database to WAL (a no-op when it already is). A database still in
/// rollback-journal mode (made by an old scimd or by hand) and opened by two connections
/// at once deadlocks them: each holds a shared lock and needs the exclusive one, so SQLite
/// answers one of them SQLITE_BUSY at once, without waiting on the busy timeout. The loser
/// tries again until the busy timeout's 10 s have passed, by when the winner has switched.
fn enable_wal(conn: &Connection) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => return Err(StoreError::Corrupt(format!("cannot enable WAL (journal_mode is {mode})"))),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The database as a job sees it: the writer's transaction (inside the job's savepoint) or
/// a read snapshot. Layers above the store name this type, never rusqlite's; what it
/// dereferences to is for the store's own functions.
pub struct Db<'a>(&'a Connection);

impl std::ops::Deref for Db<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

type Finisher = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A queued write: runs inside its savepoint and says whether it succeeded; the
/// finisher answers the caller once the whole batch's commit outcome is known. Given no
/// connection (its transaction could not begin, or SQLite rolled it back under an earlier
/// job), it does not run, and its finisher answers with the batch's failure.
type WriteJob = Box<dyn FnOnce(Option<&Db<'_>>) -> (bool, Finisher) + Send>;

/// Writes waiting longer than this many are split into the next batch.
const MAX_BATCH: usize = 256;
/// Read connections a tenant keeps open between reads. More are never in use at once than
/// there are async workers (inline reads) plus scans, both the number of cores.
fn read_pool_idle() -> usize {
    (2 * concurrent_scans()).min(8)
}

/// File descriptors one open tenant holds at most: its shared-memory file, and the database
/// and WAL files of the writer's and each pooled read connection (a read beyond the pool
/// opens one more for its duration; those are bounded by the cores, not the tenants).
pub fn fds_per_open_tenant() -> usize {
    1 + 2 * (1 + read_pool_idle())
}

/// How many scans of one tenant run at once: one per core, at least two.
fn concurrent_scans() -> usize {
    // Asked once: `available_parallelism` reads the cgroup's CPU quota from files, and this
    // is asked on every read (the pool's bound), so it was a few file reads per request.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(2))
}

/// The time budget of one scan unless `serve` sets another (`query_timeout_ms`).
pub const DEFAULT_SCAN_BUDGET: Duration = Duration::from_secs(5);

/// The budget in milliseconds. Process-wide: one `serve` per process sets it at start,
/// before any request, from its configuration.
static SCAN_BUDGET_MS: AtomicU64 = AtomicU64::new(DEFAULT_SCAN_BUDGET.as_millis() as u64);

/// Sets how long one scan may run before SQLite is interrupted.
pub fn set_scan_budget(budget: Duration) {
    SCAN_BUDGET_MS.store(budget.as_millis().clamp(1, u128::from(u64::MAX)) as u64, Ordering::Relaxed);
}

fn scan_budget() -> Duration {
    Duration::from_millis(SCAN_BUDGET_MS.load(Ordering::Relaxed))
}

/// The link between a scan's job (on a blocking thread, holding a pooled connection) and
/// its watcher (a timer, or the caller going away). Both sides take the lock, so an
/// interrupt can reach the connection only while it runs this job: once the job has
/// disarmed, the connection may go back to the pool and serve another request untouched.
#[derive(Default)]
struct ScanWatch {
    state: Mutex<WatchState>,
}

#[derive(Default)]
struct WatchState {
    running: Option<rusqlite::InterruptHandle>,
    stopped: bool,
}

impl ScanWatch {
    /// Called by the job before its first statement; false if the scan was already
    /// stopped (its budget spent waiting for a slot, or its caller gone).
    fn arm(&self, conn: &Connection) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        if state.stopped {
            return false;
        }
        state.running = Some(conn.get_interrupt_handle());
        true
    }

    /// Called by the job after its last statement; whether the scan was stopped.
    fn disarm(&self) -> bool {
        match self.state.lock() {
            Ok(mut state) => {
                state.running = None;
                state.stopped
            }
            Err(_) => true,
        }
    }

    /// Stops the scan: interrupts the running statement; true while the job still runs.
    fn stop(&self) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        state.stopped = true;
        match &state.running {
            Some(handle) => {
                handle.interrupt();
                true
            }
            None => false,
        }
    }
}

/// Waits for the scan to end, its budget to pass, or its caller to go away (the sender
/// dropped unsent: hyper drops a request's future when the client disconnects).
async fn watch_scan(watch: Arc<ScanWatch>, budget: Duration, finished: oneshot::Receiver<()>) {
    let why = tokio::select! {
        outcome = finished => match outcome {
            Ok(()) => return,
            Err(_) => "its client went away",
        },
        _ = tokio::time::sleep(budget) => "it ran past its budget",
    };
    // SQLite interrupts only a statement that is running: one that lands between two
    // statements of the job is lost, so repeat until the job has ended (bounded).
    for attempt in 0..500 {
        if !watch.stop() {
            if attempt > 0 {
                log::info!(target: "scimd::store", "interrupted a scan because {why}");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    error!(target: "scimd::store", "a scan kept running 5 s after it was interrupted ({why})");
}

/// A tenant's database: the writer queue and the reader pool.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Scans are CPU-bound: more at once than there are cores only adds blocking threads,
    /// their malloc arenas and read connections (each with its page cache) to the RSS.
    scans: Arc<tokio::sync::Semaphore>,
    /// Where index-paged walks of this tenant's lists stopped.
    positions: Arc<PagePositions>,
    /// This open's number, unique in the process: what is remembered of an open store (a
    /// verified credential) is not taken for another open of the same path.
    instance: u64,
    /// Where the faults its jobs meet are reported (the tenant's fault board).
    faults: Arc<FaultReport>,
}

/// The next `Store::instance`.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

impl Store {
    /// Opens (creating and migrating if needed) the database and starts its writer.
    pub fn open(path: &Path) -> StoreResult<Store> {
        let conn = open_for_write(path)?;
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let faults = Arc::new(FaultReport::default());
        let name = format!("scimd-writer-{}", path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy()).unwrap_or_default());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn({
                let faults = Arc::clone(&faults);
                move || writer_loop(conn, rx, &faults)
            })
            .map_err(StoreError::Io)?;
        // The first request of a tenant reads inline on an async worker (`read`): its read
        // connection is made here instead, where the open runs (off the runtime), with the
        // schema already parsed, which is most of what a new connection costs. Made inline,
        // a burst of cold tenants stalled the requests of open ones behind it.
        let first_reader = open_connection(path, true)?;
        first_reader.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(vec![first_reader])),
            scans: Arc::new(tokio::sync::Semaphore::new(concurrent_scans())),
            positions: Arc::default(),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            faults,
        })
    }

    /// Where this store reports the faults it meets from now on (once; later calls do nothing).
    pub fn report_faults_to(&self, sink: Arc<dyn FaultSink>) {
        let _ = self.faults.sink.set(sink);
    }

    /// Runs `job` in the writer's transaction; resolves once the transaction is durable.
    /// An error returned by `job` rolls back only this job's changes.
    pub async fn write<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.try_write(job).await
    }

    /// `write` for a job that fails with the caller's own error (a SCIM rule violation, a
    /// token refusal) as well as the store's: a refusal is an `Err` like any other, rolls
    /// back the job's savepoint, and reaches the caller as it was raised, never wrapped in
    /// an `Ok`. The store's own failures (commit, panic, shutdown) arrive as `E::from`.
    pub async fn try_write<T, E, F>(&self, job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
        self.send(job, move |result| {
            let _ = reply_tx.send(result);
        })?;
        reply_rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// `write` for a caller off the async runtime (a tenant closing): `job` runs after
    /// every write queued before it, and this returns once it has committed.
    pub fn write_blocking<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply_tx, reply_rx) = mpsc::channel::<StoreResult<T>>();
        self.send(job, move |result| {
            let _ = reply_tx.send(result);
        })?;
        reply_rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Queues `job` for the writer; `reply` gets its outcome once its batch has committed
    /// (or failed to).
    fn send<T, E, F>(&self, job: F, reply: impl FnOnce(Result<T, E>) + Send + 'static) -> Result<(), E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T, E> + Send + 'static,
    {
        let faults = Arc::clone(&self.faults);
        let boxed: WriteJob = Box::new(move |conn: Option<&Db<'_>>| {
            let Some(conn) = conn else {
                let finish: Finisher = Box::new(move |commit: StoreResult<()>| reply(Err(E::from(commit.err().unwrap_or(StoreError::Closed)))));
                return (false, finish);
            };
            // A panic inside a job must not take the writer thread (and with it every later
            // write of the tenant) down: it fails this job, whose savepoint is rolled back.
            let before = LAST_FAULT.with(|f| f.take());
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)))
                .unwrap_or_else(|panic| Err(E::from(StoreError::Panicked(panic_text(&panic)))));
            let ok = outcome.is_ok();
            // The job's error is the caller's type: what it met is read off the thread (and
            // left there for the batch's commit).
            let met = LAST_FAULT.with(|f| f.get());
            if let (false, Some(fault)) = (ok, met) {
                faults.raise(fault, "a write met it");
            }
            LAST_FAULT.with(|f| f.set(before.or(met)));
            let finish: Finisher = Box::new(move |commit: StoreResult<()>| {
                reply(match (outcome, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(E::from(e)),
                });
            });
            (ok, finish)
        });
        let sender = self.writer.lock().map_err(|_| StoreError::Closed)?.clone().ok_or(StoreError::Closed)?;
        sender.send(boxed).map_err(|_| E::from(StoreError::Closed))
    }

    /// Runs `job` on a pooled read connection, right here on the calling task's thread.
    /// For bounded work only (index lookups of one resource or account): it blocks the
    /// async worker for its duration, which costs less than a hop to the blocking pool
    /// and back for reads of a few microseconds. Anything that may scan uses `scan`.
    pub async fn read<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> StoreResult<T> + Send + 'static,
    {
        let expect = auth_check::expected();
        let (result, passed) = with_reader(&self.readers, &self.path, None, expect, job);
        auth_check::note(passed);
        self.faults.result(&result);
        result
    }

    /// `read` for a caller that is not on the async runtime (a tenant being dropped).
    pub fn read_blocking<T>(&self, job: impl FnOnce(&Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let result = with_reader(&self.readers, &self.path, None, None, job).0;
        self.faults.result(&result);
        result
    }

    /// Whether the auth counter is still `epoch` (`auth_check.rs`), for a request that
    /// made no read of its own to check it in.
    pub async fn auth_unchanged(&self, epoch: i64) -> StoreResult<bool> {
        self.read(move |conn| Ok(auth_check::auth_epoch(conn)? == epoch)).await
    }

    /// Runs `job` on a pooled read connection on the blocking thread pool: for reads whose
    /// cost grows with the data (lists, counts, a group's member list).
    ///
    /// The scan has a time budget from the moment it is asked for (waiting for a slot
    /// counts): past it, or as soon as the caller stops waiting, its SQLite statement is
    /// interrupted and the scan fails with `OverBudget`, so an abandoned or runaway filter
    /// frees its core and its connection instead of running to the end.
    pub async fn scan<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> StoreResult<T> + Send + 'static,
    {
        let budget = scan_budget();
        let watch = Arc::new(ScanWatch::default());
        let (finished, finished_rx) = oneshot::channel::<()>();
        tokio::spawn(watch_scan(Arc::clone(&watch), budget, finished_rx));
        let permit = Arc::clone(&self.scans).acquire_owned().await.map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(&self.readers);
        let path = self.path.clone();
        let expect = auth_check::expected();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            with_reader(&pool, &path, Some((&watch, budget)), expect, job)
        });
        let (result, passed) = task.await.map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        auth_check::note(passed);
        let _ = finished.send(());
        self.faults.result(&result);
        result
    }

    /// This open's number, unique in the process.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Where index-paged walks of this tenant's lists stopped, for list jobs to resume from.
    pub fn positions(&self) -> Arc<PagePositions> {
        Arc::clone(&self.positions)
    }

    /// Stops the writer after the queued writes and checkpoints the WAL.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(handle) = self.writer_thread.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
        if let Ok(mut p) = self.readers.lock() {
            p.clear();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// The message of a caught panic, for the log.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `job` in one read transaction on a pooled connection. With `expect`, the auth
/// counter is checked first in that transaction (`auth_check.rs`): the second value says
/// whether it was unchanged (`None`: not checked), and a moved counter runs no job.
fn with_reader<T>(
    pool: &Mutex<Vec<Connection>>,
    path: &Path,
    watch: Option<(&ScanWatch, Duration)>,
    expect: Option<i64>,
    job: impl FnOnce(&Db<'_>) -> StoreResult<T>,
) -> (StoreResult<T>, Option<bool>) {
    let pooled = pool.lock().ok().and_then(|mut p| p.pop());
    let conn = match pooled {
        Some(c) => c,
        None => match open_connection(path, true) {
            Ok(c) => c,
            Err(e) => return (Err(e), None),
        },
    };
    let mut passed = None;
    // One read transaction for the whole job: its statements see one snapshot (a user and
    // its emails from the same commit), and the WAL read lock is taken once, not per
    // statement, which was most of a GET's cost.
    let result = match conn.prepare_cached("BEGIN").and_then(|mut s| s.execute([])) {
        Ok(_) => {
            // A panicking job fails alone (its caller gets an error); the watch is disarmed
            // whatever the job did. The auth counter is the job's first read, in its snapshot.
            let guarded = std::panic::AssertUnwindSafe(|| {
                if let Some(epoch) = expect {
                    let unchanged = auth_check::check(&conn, epoch);
                    passed = Some(unchanged.is_ok());
                    unchanged?;
                }
                job(&Db(&conn))
            });
            let run = move || std::panic::catch_unwind(guarded).unwrap_or_else(|panic| Err(StoreError::Panicked(panic_text(&panic))));
            let result = match watch {
                None => run(),
                Some((w, budget)) => {
                    let result = if w.arm(&conn) { run() } else { Err(StoreError::OverBudget(budget)) };
                    // Whatever failed in a stopped scan failed because it was stopped.
                    match (w.disarm(), result) {
                        (true, Err(_)) => Err(StoreError::OverBudget(budget)),
                        (_, result) => result,
                    }
                }
            };
            if let Err(e) = conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([])) {
                log::error!(target: "scimd::store", "ending a read transaction failed: {e}");
                return (Err(e.into()), passed);
            }
            result
        }
        Err(e) => Err(e.into()),
    };
    if let Ok(mut p) = pool.lock() {
        if p.len() < read_pool_idle() {
            p.push(conn);
        }
    }
    (result, passed)
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<WriteJob>, faults: &FaultReport) {
    let mut sharing = sharing::LockSharing::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        LAST_FAULT.with(|f| f.set(None));
        let (finishers, commit) = run_batch(&mut conn, batch);
        // A fault (a full disk, a read-only file) is the tenant's fault board's to log, once.
        let failed = commit.err().map(|e| {
            let fault = e.fault().or_else(|| LAST_FAULT.with(|f| f.get()));
            if fault.is_none() {
                error!(target: "scimd::store", "commit of a batch of {size} writes failed: {e}");
            }
            (fault, e.to_string())
        });
        match &failed {
            None => {
                debug!(target: "scimd::store", "committed a batch of {size} writes in {} µs", started.elapsed().as_micros());
                if let Some(sink) = faults.sink.get() {
                    sink.wrote();
                }
            }
            Some((Some(fault), why)) => faults.raise(*fault, why),
            Some((None, _)) => {}
        }
        for finish in finishers {
            let status = match &failed {
                None => Ok(()),
                Some((Some(fault), why)) => Err(StoreError::Unavailable(*fault, format!("commit failed: {why}"))),
                Some((None, why)) => Err(StoreError::Corrupt(format!("commit failed: {why}"))),
            };
            finish(status);
        }
        sharing.after_commit(&conn);
    }
    // PASSIVE: copy what no reader still needs and never wait. A TRUNCATE here waited on
    // every reader of the database, another process's too (a CLI command, or Litestream,
    // which keeps a read transaction open), for up to the busy timeout on each close. When
    // this process holds the last connection, closing it checkpoints the rest and removes
    // the WAL anyway.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
        error!(target: "scimd::store", "WAL checkpoint at close failed: {e}");
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<WriteJob>) -> (Vec<Finisher>, StoreResult<()>) {
    let mut finishers = Vec::with_capacity(batch.len());
    // Jobs that cannot run are answered with the failure, never dropped (a dropped caller
    // could only say "closed") and never told they succeeded.
    let not_run = |jobs: std::vec::IntoIter<WriteJob>, finishers: &mut Vec<Finisher>| finishers.extend(jobs.map(|job| job(None).1));
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            not_run(batch.into_iter(), &mut finishers);
            return (finishers, Err(StoreError::from(e)));
        }
    };
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        // Each job gets a savepoint so its failure undoes only its own changes.
        if let Err(e) = tx.execute_batch("SAVEPOINT job") {
            error!(target: "scimd::store", "savepoint failed: {e}");
            finishers.push(job(None).1);
            continue;
        }
        let (ok, finisher) = job(Some(&Db(&tx)));
        finishers.push(finisher);
        // SQLite rolls the whole transaction back on some errors (a full disk, an I/O
        // error): the jobs before this one are undone with it, so none of the batch may
        // commit, and the rest must not run in a new transaction of their own.
        if tx.is_autocommit() {
            not_run(jobs, &mut finishers);
            let why = "SQLite rolled the batch back".to_string();
            let failure = match LAST_FAULT.with(|f| f.get()) {
                Some(fault) => StoreError::Unavailable(fault, why),
                None => StoreError::Corrupt(why),
            };
            return (finishers, Err(failure));
        }
        let sql = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
        if let Err(e) = tx.execute_batch(sql) {
            error!(target: "scimd::store", "savepoint cleanup failed: {e}");
        }
    }
    let before_commit = std::time::Instant::now();
    let committed = tx.commit();
    // An I/O error SQLite does not name (a filesystem remounted read-only under an open
    // tenant): the system's own error says which fault it is.
    // SAFETY: the handle is this thread's open connection; the call only reads its errno.
    let errno = if committed.is_err() { unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) } } else { 0 };
    let commit = committed.map_err(|e| match (StoreError::from(e), errno) {
        (StoreError::Sql(e), libc::EROFS) => StoreError::Unavailable(Fault::ReadOnly, e.to_string()),
        (StoreError::Sql(e), libc::ENOSPC | libc::EDQUOT) => StoreError::Unavailable(Fault::DiskFull, e.to_string()),
        (e, _) => e,
    });
    log::trace!(target: "scimd::store", "commit (write-out and fsync) took {} µs", before_commit.elapsed().as_micros());
    (finishers, commit)
}

/// Whether an error is a UNIQUE constraint violation (a 409 for the client).
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// A new SCIM id: a random (version 4) UUID.
pub fn new_resource_id() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    if SystemRandom::new().fill(&mut b).is_err() {
        // The OS RNG failing is not recoverable for an identity store.
        panic!("operating system random number generator failed");
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod writer_tests;
