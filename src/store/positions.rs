//! Where sequential index-paged walks stopped, so the next page resumes there.
//!
//! Okta imports a directory with `startIndex=1&count=100`, then 101, 201, … An `OFFSET`
//! skips every earlier row on each page, so reading a million users cost O(n²) rows. A
//! page of an unfiltered, unsorted list is "the rows after the previous page's last
//! primary key" exactly when no row of that list was added, removed, hidden or shown in
//! between; the `{table}:changes` counter (schema v8, kept by triggers in the same
//! transaction as the change, whichever process made it) says whether that is so. Each
//! page records where it ended under the counter it read; a page whose start matches a
//! record made under the same counter resumes after that key, any other runs the `OFFSET`.
//! So a resumed page is the very page the `OFFSET` would return, and a walk interrupted by
//! writes falls back for one page and resumes again from the page after.

use std::sync::Mutex;

/// How many walks are remembered per tenant (a few IdP imports at once, and their retries).
const REMEMBERED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    table: &'static str,
    /// The 0-based offset of the row after the page: the next page's `startIndex - 1`.
    offset: u64,
    /// The primary key of the page's last row.
    pk: i64,
    /// The table's change counter when the page was read.
    changes: i64,
}

/// A tenant's remembered positions (oldest first, bounded).
#[derive(Default)]
pub struct PagePositions(Mutex<Vec<Position>>);

impl PagePositions {
    /// The key to resume after, if a page of `table` ended at `offset` under `changes`.
    pub fn find(&self, table: &'static str, offset: u64, changes: i64) -> Option<i64> {
        let list = self.0.lock().ok()?;
        list.iter().rev().find(|p| p.table == table && p.offset == offset && p.changes == changes).map(|p| p.pk)
    }

    /// Records that the page ending at `offset` (exclusive) ended with row `pk`.
    pub fn remember(&self, table: &'static str, offset: u64, pk: i64, changes: i64) {
        let Ok(mut list) = self.0.lock() else { return };
        // Records made under an older counter can never match again.
        list.retain(|p| !(p.table == table && (p.offset == offset || p.changes != changes)));
        if list.len() >= REMEMBERED {
            list.remove(0);
        }
        list.push(Position { table, offset, pk, changes });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_matches_only_its_table_offset_and_counter() {
        let p = PagePositions::default();
        p.remember("users", 100, 117, 5);
        assert_eq!(p.find("users", 100, 5), Some(117));
        assert_eq!(p.find("users", 100, 6), None, "a change since");
        assert_eq!(p.find("users", 200, 5), None);
        assert_eq!(p.find("groups", 100, 5), None);
        p.remember("users", 200, 230, 6);
        assert_eq!(p.find("users", 100, 5), None, "records under an older counter are dropped");
    }

    /// Through the real list query on a real schema: a walk's second page resumes after the
    /// first page's last key while the change counter stands still (shown by a row the
    /// counter was told nothing of, which only the `OFFSET` would skip), and runs the
    /// `OFFSET` once a change is counted.
    #[test]
    fn a_walk_resumes_after_the_previous_page_while_nothing_changed() {
        use crate::store::{filter_sql::SqlFilter, users, Window};
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn).unwrap();
        for i in 0..10 {
            let name = format!("u{i:02}@x.com");
            conn.execute("INSERT INTO users (id, user_name, user_name_key, created, last_modified) VALUES (?1, ?1, ?1, 't', 't')", [&name]).unwrap();
        }
        let positions = PagePositions::default();
        let page = |conn: &rusqlite::Connection, offset: u64| -> Vec<String> {
            let listed = users::list(conn, &SqlFilter::all(), Window::Offset { offset, limit: 4 }, true, false, usize::MAX, Some(&positions)).unwrap();
            listed.items.iter().map(|r| r.attrs["userName"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(page(&conn, 0), ["u00@x.com", "u01@x.com", "u02@x.com", "u03@x.com"]);
        // Hide u01 behind the triggers' back: the counter does not move.
        conn.execute("UPDATE users SET deleted_at = 't' WHERE id = 'u01@x.com'", []).unwrap();
        conn.execute("UPDATE counters SET n = n - 1 WHERE name = 'users:changes'", []).unwrap();
        assert_eq!(page(&conn, 4), ["u04@x.com", "u05@x.com", "u06@x.com", "u07@x.com"], "resumed after u03");
        // A counted change: the next page is the OFFSET's (u01 hidden, so it starts one later).
        conn.execute("UPDATE users SET deleted_at = 't' WHERE id = 'u02@x.com'", []).unwrap();
        assert_eq!(page(&conn, 8), [] as [&str; 0], "the OFFSET skips 8 of the 8 visible rows");
        assert_eq!(page(&conn, 4), ["u06@x.com", "u07@x.com", "u08@x.com", "u09@x.com"]);
    }

    #[test]
    fn at_most_so_many_are_kept() {
        let p = PagePositions::default();
        for i in 0..(REMEMBERED as u64 + 10) {
            p.remember("users", i, i as i64, 0);
        }
        assert_eq!(p.0.lock().unwrap().len(), REMEMBERED);
        assert_eq!(p.find("users", 0, 0), None, "the oldest went first");
        assert!(p.find("users", REMEMBERED as u64 + 9, 0).is_some());
    }
}
