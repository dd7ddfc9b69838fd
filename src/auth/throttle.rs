//! Brute-force throttling of password checks. Failures are counted per (tenant, account,
//! client address) and per client address. Past the limits the caller gets 429 with
//! Retry-After, before any password is checked. Counting per address as well as per
//! account means an attacker hammering the admin's name from one address does not lock
//! the admin out from a good client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords for one account from one address before it is throttled.
pub const ACCOUNT_LIMIT: u32 = 5;
/// Failed logins from one address, over all accounts, before it is throttled.
pub const ADDRESS_LIMIT: u32 = 50;
const WINDOW: Duration = Duration::from_secs(60);
const FIRST_BLOCK: Duration = Duration::from_secs(30);
const LONGEST_BLOCK: Duration = Duration::from_secs(900);
const MAX_TRACKED: usize = 100_000;

/// Forged bearer tokens from one address before it is throttled (for bearer tokens only:
/// a valid token is never held back by it, see `auth::authenticate`).
pub const FORGERY_LIMIT: u32 = 50;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Account { tenant: String, user: String, addr: IpAddr },
    Address(IpAddr),
    /// Bearer tokens whose signature did not verify, per address. Apart from `Address`:
    /// IdPs send from shared egress addresses, and junk tokens must not lock Basic logins
    /// (or another tenant's valid tokens) out of them.
    Forgeries(IpAddr),
}

impl Key {
    /// The account part compares as names do (`names::key`), so a full-width or
    /// differently-cased spelling of the same account shares its count.
    pub fn account(tenant: &str, user: &str, addr: IpAddr) -> Key {
        Key::Account { tenant: tenant.to_string(), user: crate::names::key(user), addr }
    }
    fn limit(&self) -> u32 {
        match self {
            Key::Account { .. } => ACCOUNT_LIMIT,
            Key::Address(_) => ADDRESS_LIMIT,
            Key::Forgeries(_) => FORGERY_LIMIT,
        }
    }
}

/// At most one WARN line about throttled requests per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, Failures>>,
    /// When a throttled request was last logged, and how many were not logged since.
    logged: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// Whether to log this throttled request: the first at once, then at most one line per
    /// `LOG_INTERVAL`, which carries how many were left out (`Some(n)`); a brute force
    /// must not also be a flood of log lines.
    pub fn log_gate(&self) -> Option<u64> {
        let Ok(mut g) = self.logged.lock() else { return None };
        let now = Instant::now();
        match g.0 {
            Some(at) if now.duration_since(at) < LOG_INTERVAL => {
                g.1 += 1;
                None
            }
            _ => {
                let skipped = g.1;
                *g = (Some(now), 0);
                Some(skipped)
            }
        }
    }

    /// `Err(retry_after)` while any of the keys is blocked.
    pub fn check(&self, keys: &[Key]) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.failures.lock().map_err(|_| FIRST_BLOCK)?;
        let longest = keys
            .iter()
            .filter_map(|k| map.get(k)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match longest {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records a failure against every key; blocks a key that reached its limit, for
    /// longer each time it fails again.
    pub fn fail(&self, keys: &[Key]) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else { return };
        if map.len() >= MAX_TRACKED {
            map.retain(|_, f| f.since.elapsed() < WINDOW || f.blocked_until.is_some_and(|u| u > now));
        }
        for key in keys {
            let entry = map.entry(key.clone()).or_insert(Failures { count: 0, since: now, blocked_until: None });
            if entry.since.elapsed() > WINDOW && entry.blocked_until.is_none_or(|u| u <= now) {
                *entry = Failures { count: 0, since: now, blocked_until: None };
            }
            entry.count += 1;
            if entry.count >= key.limit() {
                let doublings = (entry.count - key.limit()).min(5);
                let block = (FIRST_BLOCK * 2u32.pow(doublings)).min(LONGEST_BLOCK);
                entry.blocked_until = Some(now + block);
            }
        }
    }

    /// A correct password clears that account-and-address's count.
    pub fn succeed(&self, key: &Key) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_the_pair_not_the_account() {
        let t = Throttle::default();
        let (bad, good): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let keys = |addr| [Key::account("acme", "Admin", addr), Key::Address(addr)];
        for _ in 0..ACCOUNT_LIMIT - 1 {
            t.fail(&keys(bad));
            assert!(t.check(&keys(bad)).is_ok());
        }
        t.fail(&keys(bad));
        let wait = t.check(&keys(bad)).unwrap_err();
        assert!(wait > Duration::from_secs(20) && wait <= FIRST_BLOCK);
        assert!(t.check(&keys(good)).is_ok(), "the admin from another address is not locked out");
        assert!(t.check(&[Key::account("acme", "admin", bad)]).is_err(), "user names compare case-insensitively");
        assert!(t.check(&[Key::account("acme", "ＡＤＭＩＮ", bad)]).is_err(), "and as names do (full-width)");
        t.succeed(&Key::account("acme", "admin", good));
        assert!(t.check(&keys(bad)).is_err());
    }

    #[test]
    fn an_address_trying_many_accounts_is_blocked() {
        let t = Throttle::default();
        let addr: IpAddr = "10.0.0.9".parse().unwrap();
        for i in 0..ADDRESS_LIMIT {
            t.fail(&[Key::account("acme", &format!("user{i}"), addr), Key::Address(addr)]);
        }
        assert!(t.check(&[Key::account("acme", "someone-new", addr), Key::Address(addr)]).is_err());
    }
}
