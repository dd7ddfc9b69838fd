//! List queries: which rows a page takes (`Window`), what a list reads (`ListSource`),
//! and the one query that reads a page under its byte budget, resuming an index-paged walk
//! where it stopped (`positions.rs`).

use rusqlite::Connection;

use super::{filter_sql, PagePositions, StoreResult};

/// Which rows of a list query to return.
#[derive(Clone, Copy, Debug)]
pub enum Window {
    /// `startIndex`/`count` paging (also cursor paging over a sorted list).
    Offset { offset: u64, limit: u32 },
    /// Keyset paging for cursors: rows after this primary key, in key order.
    AfterKey { pk: i64, limit: u32 },
}

impl Window {
    pub(super) fn limit(self) -> u32 {
        match self {
            Window::Offset { limit, .. } | Window::AfterKey { limit, .. } => limit,
        }
    }
    /// The SQL tail: an extra key condition, ORDER BY, LIMIT (one more row than asked,
    /// to tell whether another page follows) and OFFSET.
    pub(super) fn sql(self, alias: &str, order_by: &str) -> (String, String) {
        match self {
            Window::Offset { offset, limit } => (String::new(), format!("ORDER BY {order_by} LIMIT {} OFFSET {offset}", u64::from(limit) + 1)),
            Window::AfterKey { pk, limit } => (format!(" AND {alias}.pk > {pk}"), format!("ORDER BY {alias}.pk LIMIT {}", u64::from(limit) + 1)),
        }
    }
}

/// What a list query reads: `SELECT {select} FROM {from} {alias}`, each row mapped to
/// its primary key and value.
pub(super) struct ListSource<'a, T> {
    pub(super) select: &'a str,
    pub(super) from: &'static str,
    pub(super) alias: &'static str,
    /// What SCIM may see at all (not soft-deleted users nor service accounts, org-level groups).
    pub(super) visible: &'static str,
    /// Counts the rows the `counters` row includes but `visible` does not (indexed: few).
    pub(super) uncounted: Option<&'static str>,
    /// The counter of changes to which rows are listed (`positions.rs`).
    pub(super) changes: &'static str,
    pub(super) map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<(i64, T)>,
}

/// One window of rows, the total if it was asked for, and whether more rows follow.
pub(super) struct WindowRows<T> {
    pub(super) total: Option<u64>,
    pub(super) rows: Vec<(i64, T)>,
    pub(super) more: bool,
}

/// Runs a list query, fetching one extra row to learn whether another page follows.
///
/// `complete` finishes each row (loads its multi-valued attributes) and says about how
/// many bytes it renders to. Rows stop being read once the page passes `byte_budget`
/// (at least one is returned), so what a page holds in memory is bounded by the budget,
/// not by `count` times the largest resource; RFC 7644 §3.4.2.4 lets a page hold fewer
/// resources than asked, and `more` tells the caller another page follows.
#[allow(clippy::too_many_arguments)]
pub(super) fn query_window<T>(
    conn: &Connection,
    source: &ListSource<'_, T>,
    filter: &filter_sql::SqlFilter,
    window: Window,
    count_total: bool,
    byte_budget: usize,
    positions: Option<&PagePositions>,
    complete: &mut dyn FnMut(i64, &mut T) -> StoreResult<usize>,
) -> StoreResult<WindowRows<T>> {
    let (from, alias) = (source.from, source.alias);
    let params = rusqlite::params_from_iter(&filter.params);
    let total = if count_total && filter.clause == filter_sql::SqlFilter::MATCH_ALL {
        let n: i64 = conn
            .prepare_cached("SELECT n FROM counters WHERE name = ?")?
            .query_row([source.from], |r| r.get(0))?;
        let hidden: i64 = match source.uncounted {
            Some(sql) => conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?,
            None => 0,
        };
        Some(n.saturating_sub(hidden).max(0) as u64)
    } else if count_total {
        let sql = format!("SELECT count(*) FROM {from} {alias} WHERE {} AND ({})", source.visible, filter.clause);
        let n: i64 = conn.prepare_cached(&sql)?.query_row(params.clone(), |r| r.get(0))?;
        Some(n as u64)
    } else {
        None
    };
    if window.limit() == 0 {
        return Ok(WindowRows { total, rows: Vec::new(), more: false });
    }
    // An unfiltered list in key order: a page that starts where an earlier one ended, with
    // no change to the listed rows since, resumes after its last key (`positions.rs`).
    let walk = match (positions, window) {
        (Some(positions), Window::Offset { offset, .. }) if filter.clause == filter_sql::SqlFilter::MATCH_ALL && filter.order.is_none() => {
            let changes: i64 = conn.prepare_cached("SELECT n FROM counters WHERE name = ?")?.query_row([source.changes], |r| r.get(0))?;
            Some((positions, offset, changes))
        }
        _ => None,
    };
    let resumed = walk
        .filter(|&(_, offset, _)| offset > 0)
        .and_then(|(positions, offset, changes)| positions.find(source.from, offset, changes))
        .map(|pk| Window::AfterKey { pk, limit: window.limit() });
    let (extra, tail) = resumed.unwrap_or(window).sql(alias, &filter.order_by(alias));
    let sql = format!("SELECT {} FROM {from} {alias} WHERE {} AND ({}){extra} {tail}", source.select, source.visible, filter.clause);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut cursor = stmt.query(params)?;
    let (mut rows, mut bytes, mut more) = (Vec::new(), 0usize, false);
    while let Some(row) = cursor.next()? {
        if rows.len() >= window.limit() as usize || bytes >= byte_budget {
            more = true;
            break;
        }
        let (pk, mut item) = (source.map)(row)?;
        bytes = bytes.saturating_add(complete(pk, &mut item)?);
        rows.push((pk, item));
    }
    if let (Some((positions, offset, changes)), Some((last, _))) = (walk, rows.last()) {
        positions.remember(source.from, offset + rows.len() as u64, *last, changes);
    }
    Ok(WindowRows { total, rows, more })
}

/// About how many bytes a JSON value takes when serialised (escapes not counted): what
/// the page budget of a list counts.
pub fn approx_json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 12,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| approx_json_bytes(v) + 1).sum::<usize>(),
        Value::Object(obj) => 2 + obj.iter().map(|(k, v)| k.len() + 4 + approx_json_bytes(v)).sum::<usize>(),
    }
}

/// What a rendered resource adds to its attributes (schemas, id, meta with location).
pub const RESOURCE_OVERHEAD_BYTES: usize = 400;

/// One page of a list query.
pub struct Listed {
    /// The number of matches, when it was asked for (cursor walks skip the count).
    pub total: Option<u64>,
    pub items: Vec<crate::model::StoredResource>,
    /// The key of the last row returned, for the next cursor.
    pub last_pk: Option<i64>,
    /// Whether more rows follow this page.
    pub more: bool,
}
