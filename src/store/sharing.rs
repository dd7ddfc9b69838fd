//! The writer lets another process at the write lock while Litestream replicates.
//!
//! Under sustained writes the writer begins its next transaction microseconds after the
//! last one commits, so a process waiting on SQLite's write lock in its busy handler
//! (which polls, up to every 100 ms) never finds it free. Litestream takes the write lock
//! for each of its checkpoints; starved, it stopped shipping the WAL altogether: in the
//! drill (tests/it/replication.rs) writes went unreplicated for as long as the load lasted
//! (5.6 s of acknowledged writes lost at the kill), with a WAL growing without bound.
//!
//! So at most every `CHECK_EVERY`, after a commit, the writer runs a PASSIVE checkpoint
//! (what the autocheckpoint does anyway) to learn the WAL's length. When the database is
//! replicated (Litestream has made its `_litestream_lock` table) and the WAL has reached
//! Litestream's checkpoint threshold with frames a reader still pins (Litestream's read
//! transaction), it waits `PAUSE` before its next transaction: a poll of a waiting busy
//! handler. Litestream checkpoints, the WAL starts over, and the
//! writer does not pause again until it has grown back. Without Litestream it never pauses.

use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the writer looks, under continuous load.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// SQLite's busy handler polls 1, 2, 5, … 50 ms apart for its first 328 ms of waiting
/// (then every 100 ms): a waiter that started when the WAL reached the threshold, at most
/// about two checks ago, finds the lock free within a pause of this.
const PAUSE: Duration = Duration::from_millis(55);
/// Litestream's `min-checkpoint-page-count` default: from here on it wants the lock.
const LITESTREAM_CHECKPOINT_PAGES: i64 = 1_000;

pub struct LockSharing {
    last_check: Instant,
}

impl LockSharing {
    pub fn new() -> LockSharing {
        LockSharing { last_check: Instant::now() }
    }

    /// Called by the writer between transactions; pauses when Litestream waits.
    pub fn after_commit(&mut self, conn: &Connection) {
        if self.last_check.elapsed() < CHECK_EVERY {
            return;
        }
        self.last_check = Instant::now();
        // Pinned: frames a reader's snapshot keeps from being copied (Litestream's read
        // transaction). Without a reader the autocheckpoint copied them all.
        let pinned = wal_pages(conn).is_some_and(|(log, copied)| log >= LITESTREAM_CHECKPOINT_PAGES && copied < log);
        if pinned && replicated(conn) {
            log::debug!(target: "scimd::store", "the WAL is pinned by Litestream; leaving it the write lock for {} ms", PAUSE.as_millis());
            std::thread::sleep(PAUSE);
        }
    }
}

/// Frames in the WAL and frames copied back, from a PASSIVE checkpoint (which never waits).
fn wal_pages(conn: &Connection) -> Option<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).ok()
}

fn replicated(conn: &Connection) -> bool {
    conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_litestream_lock'", [], |r| r.get::<_, i64>(0))
        .is_ok_and(|n| n == 1)
}
