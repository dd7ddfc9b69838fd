//! Progress of the long commands (`import`, `sanitize --apply`, `backup`, `restore`) on
//! standard error: a bar redrawn at most ten times a second on a terminal, and a plain line
//! at each tenth of the way otherwise (a log, a pipe), so standard output keeps only the
//! result (`--json`). Hand-written: forty lines are less to build than a crate and its
//! terminal layer.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Bar {
    label: &'static str,
    unit: &'static str,
    total: AtomicU64,
    tty: bool,
    /// When it was last drawn, and the last tenth printed as a line.
    drawn: Mutex<(Option<Instant>, u64)>,
}

impl Bar {
    pub fn new(label: &'static str, unit: &'static str, total: u64) -> Bar {
        Bar { label, unit, total: AtomicU64::new(total), tty: std::io::stderr().is_terminal(), drawn: Mutex::new((None, 0)) }
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// `done` of the total are done.
    pub fn set(&self, done: u64) {
        let total = self.total.load(Ordering::Relaxed).max(1);
        let done = done.min(total);
        let Ok(mut drawn) = self.drawn.lock() else { return };
        let mut err = std::io::stderr().lock();
        if self.tty {
            let due = drawn.0.is_none_or(|at| at.elapsed() >= Duration::from_millis(100));
            if due || done == total {
                let filled = (done * 30 / total) as usize;
                let _ = write!(err, "\r{} [{}{}] {done}/{total} {}", self.label, "#".repeat(filled), " ".repeat(30 - filled), self.unit);
                if done == total {
                    let _ = writeln!(err);
                }
                drawn.0 = Some(Instant::now());
            }
        } else {
            let tenth = done * 10 / total;
            if tenth > drawn.1 || (done == total && drawn.1 < 10) {
                drawn.1 = tenth;
                let _ = writeln!(err, "{}: {}% ({done}/{total} {})", self.label, done * 100 / total, self.unit);
            }
        }
    }
}
