//! What the operator console shows of the traffic (issue 21): the last refused SCIM requests
//! (a bounded ring, never a body, a header or a secret), each tenant's last SCIM request and
//! its result, and requests and failures per hour for the last day. In memory: a restart
//! starts them again. One short lock per tenant request, taken after its answer is made.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::clock::UtcMillis;

/// Refused requests kept, all tenants together (each a few hundred bytes).
pub const MAX_FAILURES: usize = 2000;
/// A path or detail longer than this is cut: a client's 64 KiB path must not be kept 2,000 times.
pub const MAX_TEXT: usize = 256;

/// `text` cut to `MAX_TEXT` bytes (on a character boundary), with an ellipsis.
pub fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
/// Hours of request counts kept.
pub const HOURS: usize = 24;

#[derive(Clone, Debug)]
pub struct Failure {
    pub at: UtcMillis,
    pub tenant: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// The account that made it, or "-" when it did not authenticate.
    pub account: String,
}

#[derive(Clone, Debug)]
pub struct LastRequest {
    pub at: UtcMillis,
    pub method: String,
    pub status: u16,
}

/// Requests and failures in one hour (`hour` = milliseconds / 3,600,000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hour {
    pub hour: i64,
    pub requests: u32,
    pub failures: u32,
}

#[derive(Default)]
struct Inner {
    failures: VecDeque<Failure>,
    last: HashMap<String, LastRequest>,
    hours: HashMap<String, [Hour; HOURS]>,
}

#[derive(Default)]
pub struct Recent(Mutex<Inner>);

fn hour_of(at: UtcMillis) -> i64 {
    at.0.div_euclid(3_600_000)
}

impl Recent {
    /// Records one SCIM request of an existing tenant; `failure` when it was refused.
    pub fn note(&self, tenant: &str, method: &str, status: u16, at: UtcMillis, failure: Option<Failure>) {
        let Ok(mut inner) = self.0.lock() else { return };
        let hour = hour_of(at);
        let slots = inner.hours.entry(tenant.to_string()).or_default();
        let slot = &mut slots[hour.rem_euclid(HOURS as i64) as usize];
        if slot.hour != hour {
            *slot = Hour { hour, ..Hour::default() };
        }
        slot.requests += 1;
        if failure.is_some() {
            slot.failures += 1;
        }
        inner.last.insert(tenant.to_string(), LastRequest { at, method: method.to_string(), status });
        if let Some(f) = failure {
            if inner.failures.len() >= MAX_FAILURES {
                inner.failures.pop_front();
            }
            inner.failures.push_back(f);
        }
    }

    /// The last refused requests, newest first, of one tenant or all.
    pub fn failures(&self, tenant: Option<&str>, limit: usize) -> Vec<Failure> {
        let Ok(inner) = self.0.lock() else { return Vec::new() };
        inner.failures.iter().rev().filter(|f| tenant.is_none_or(|t| f.tenant == t)).take(limit).cloned().collect()
    }

    pub fn last(&self, tenant: &str) -> Option<LastRequest> {
        self.0.lock().ok()?.last.get(tenant).cloned()
    }

    /// The last `HOURS` hours up to `now`'s, oldest first, of one tenant or all summed.
    pub fn per_hour(&self, tenant: Option<&str>, now: UtcMillis) -> Vec<Hour> {
        let current = hour_of(now);
        let mut out: Vec<Hour> = (0..HOURS as i64).map(|i| Hour { hour: current - (HOURS as i64 - 1) + i, ..Hour::default() }).collect();
        let Ok(inner) = self.0.lock() else { return out };
        // One tenant's slots by key, not a walk of every tenant's (the overview asks per row).
        let chosen: Vec<&[Hour; HOURS]> = match tenant {
            Some(t) => inner.hours.get(t).into_iter().collect(),
            None => inner.hours.values().collect(),
        };
        for slots in chosen {
            for s in slots.iter().filter(|s| s.hour > current - HOURS as i64 && s.hour <= current) {
                let o = &mut out[(s.hour - (current - (HOURS as i64 - 1))) as usize];
                o.requests += s.requests;
                o.failures += s.failures;
            }
        }
        out
    }

    /// Failures of a tenant in the last 24 hours.
    pub fn failures_last_day(&self, tenant: &str, now: UtcMillis) -> u32 {
        self.per_hour(Some(tenant), now).iter().map(|h| h.failures).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(tenant: &str, n: usize) -> Failure {
        Failure { at: UtcMillis(0), tenant: tenant.into(), method: "POST".into(), path: format!("/{n}"), status: 400, scim_type: None, detail: String::new(), account: "-".into() }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_hours_roll() {
        let r = Recent::default();
        for n in 0..MAX_FAILURES + 5 {
            r.note("a", "POST", 400, UtcMillis(0), Some(failure("a", n)));
        }
        let kept = r.failures(None, usize::MAX);
        assert_eq!(kept.len(), MAX_FAILURES);
        assert_eq!(kept[0].path, format!("/{}", MAX_FAILURES + 4));
        let hour = 3_600_000;
        r.note("b", "GET", 200, UtcMillis(30 * hour), None);
        r.note("b", "GET", 404, UtcMillis(30 * hour + 1), Some(failure("b", 0)));
        assert_eq!(r.failures_last_day("b", UtcMillis(31 * hour)), 1);
        assert_eq!(r.failures_last_day("b", UtcMillis(54 * hour)), 0, "a day later it has left the window");
        // 24 hours later the same slot is a new hour.
        r.note("b", "GET", 200, UtcMillis(54 * hour), None);
        let hours = r.per_hour(Some("b"), UtcMillis(54 * hour));
        assert_eq!(hours.len(), HOURS);
        assert_eq!(hours[HOURS - 1], Hour { hour: 54, requests: 1, failures: 0 });
        assert_eq!(r.last("b").map(|l| l.status), Some(200));
    }
}
