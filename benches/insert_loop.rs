//! The durable-insert baseline for `benches/run.sh`: how many single-row transactions
//! per second SQLite commits on this disk with scimd's own settings (WAL,
//! `synchronous=FULL`, the real `schema.sql`), one row per commit, one after another.
//! scimd's create phase must reach at least this many durable creates per second, which
//! it can only do by committing many waiting creates at once (group commit).
//!
//! `target/release/examples/bench-insert-loop DIR SECONDS`; prints JSON.

use std::time::{Duration, Instant};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seconds)) = (args.get(1), args.get(2)) else {
        return Err("usage: bench-insert-loop DIR SECONDS".into());
    };
    let seconds: f64 = seconds.parse().map_err(|e| format!("SECONDS: {e}"))?;
    let path = std::path::Path::new(dir).join("insert-loop.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = scimd::store::open_for_write(&path).map_err(|e| e.to_string())?;
    let mut insert = conn
        .prepare("INSERT INTO users (id, user_name, user_name_key, active, created, last_modified) VALUES (?1, ?2, ?2, 1, ?3, ?3)")
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rows = 0u64;
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        let t = Instant::now();
        let name = format!("loop{rows}@bench.example");
        insert.execute(rusqlite::params![format!("{rows:032x}"), name, "2026-01-01T00:00:00.000Z"]).map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
        rows += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "phase": "insert_loop",
            "requests": rows,
            "seconds": (elapsed * 100.0).round() / 100.0,
            "rps": (rows as f64 / elapsed).round(),
            "p50_ms": (pct(0.50) * 1000.0).round() / 1000.0,
            "p99_ms": (pct(0.99) * 1000.0).round() / 1000.0,
        })
    );
    drop(insert);
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
