//! A request whose credentials were verified before, and nothing they depend on changed
//! since, need not read them again (issue 19): the account, its token and the signing key
//! were a second read transaction on every request, half of what a GET by id cost.
//!
//! Everything authentication reads moves one counter, `auth:changes` (schema v8 triggers
//! on the accounts' state, `api_tokens` and `tenant_files`, in the transaction that makes
//! the change, whichever process makes it). The auth layer remembers a verified
//! credential with the counter it read beside the rows. A later request with the same
//! credential runs under `expecting(counter, …)`: each of its reads first reads the counter
//! in its own read transaction, the one that then reads what the request answers with,
//! and refuses to run (`StoreError::AuthChanged`) when it moved. The caller then verifies
//! the credential the slow way and runs the request again, so a revocation, deactivation,
//! licence change or key deletion committed before a request's read is seen by that read.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::{StoreError, StoreResult};

/// The counter every change to what authentication reads moves.
const AUTH_CHANGES: &str = "auth:changes";

/// The counter as this transaction sees it.
pub fn auth_epoch(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.prepare_cached("SELECT n FROM counters WHERE name = ?")?.query_row([AUTH_CHANGES], |r| r.get(0))?)
}

/// Moves the counter: for a change authentication depends on that is not in the database
/// (the key files), made before the change, so no request verified before it outlives it
/// even if the change's own write to the database never happens.
pub fn bump(conn: &Connection) -> StoreResult<()> {
    conn.prepare_cached("UPDATE counters SET n = n + 1 WHERE name = ?")?.execute([AUTH_CHANGES])?;
    Ok(())
}

/// `Err(AuthChanged)` unless the counter is still `epoch`.
pub(super) fn check(conn: &Connection, epoch: i64) -> StoreResult<()> {
    if auth_epoch(conn)? == epoch { Ok(()) } else { Err(StoreError::AuthChanged) }
}

struct Expectation {
    epoch: i64,
    /// A read confirmed the counter.
    confirmed: AtomicBool,
    /// A read found it moved.
    stale: AtomicBool,
}

tokio::task_local! {
    static EXPECTED: Expectation;
}

/// What the reads of a future run under `expecting` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// At least one read found the counter unchanged, and none found it moved.
    Confirmed,
    /// A read found it moved: the credential must be verified again and the work redone.
    Stale,
    /// Nothing was read (a discovery document): the caller must confirm it itself.
    Unchecked,
}

/// Runs `work` with every store read it makes first checking that the counter is `epoch`.
pub async fn expecting<F: Future>(epoch: i64, work: F) -> (F::Output, Verdict) {
    let expectation = Expectation { epoch, confirmed: AtomicBool::new(false), stale: AtomicBool::new(false) };
    EXPECTED
        .scope(expectation, async move {
            let out = work.await;
            let verdict = EXPECTED.with(|e| match (e.stale.load(Ordering::Relaxed), e.confirmed.load(Ordering::Relaxed)) {
                (true, _) => Verdict::Stale,
                (false, true) => Verdict::Confirmed,
                (false, false) => Verdict::Unchecked,
            });
            (out, verdict)
        })
        .await
}

/// The counter the current task's reads must find, if it runs under `expecting`.
pub(super) fn expected() -> Option<i64> {
    EXPECTED.try_with(|e| e.epoch).ok()
}

/// Records what a read that checked the counter found (`passed`: it was unchanged).
pub(super) fn note(passed: Option<bool>) {
    if let Some(passed) = passed {
        let _ = EXPECTED.try_with(|e| if passed { e.confirmed.store(true, Ordering::Relaxed) } else { e.stale.store(true, Ordering::Relaxed) });
    }
}
