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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Account { tenant: String, user: String, addr: IpAddr },
    Address(IpAddr),
}

impl Key {
    pub fn account(tenant: &str, user: &str, addr: IpAddr) -> Key {
        Key::Account { tenant: tenant.to_string(), user: user.to_lowercase(), addr }
    }
    fn limit(&self) -> u32 {
        match self {
            Key::Account { .. } => ACCOUNT_LIMIT,
            Key::Address(_) => ADDRESS_LIMIT,
        }
    }
}

struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Throttle {
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
