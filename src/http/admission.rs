//! Admission: which connections get one of the `max_connections` slots, so that sockets
//! that never finish TLS cannot keep a real client out (issue 13: ~1,040 idle sockets,
//! reopened as they were dropped, used to take every slot of 1,024 for good).
//!
//! A connection is *pending* from accept until its TLS handshake finishes, then
//! *established* (plain HTTP, loopback only, is established at once). Both count against
//! `max_connections`, the server's budget of sockets. A new connection from address A:
//! 1. if A holds `max_connections_per_address` established connections, it is closed;
//! 2. if A has `max_handshakes_per_address` handshakes in progress, it is closed;
//! 3. if every slot is taken, a pending handshake is closed to make room — the oldest of
//!    the address with the most handshakes in progress — and the newcomer takes the slot;
//!    only when every slot holds an established connection is the newcomer closed.
//!
//! A pending connection also has `tls_handshake_timeout` to finish. So a client that
//! completes TLS in milliseconds always gets in: while the slots are full of idle
//! sockets, each new connection evicts one of theirs, and a client with one handshake in
//! flight is never the busiest address while fewer than `max_connections - 1` other
//! addresses are flooding. Established connections are never evicted: they have proved
//! they speak TLS, and they are bounded per address instead.
//!
//! Every refusal is counted in `/metrics` (`scimd_connections_refused_total{reason}`) and
//! logged at most once per `LOG_INTERVAL` per reason, with how many there were since the
//! last line: a flood of connections must not become a flood of log lines.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, warn};
use tokio::sync::oneshot;

use super::metrics::{Metrics, Refusal};
use crate::config::Limits;

/// For a log line: what happened, and what was done to the connection(s) that follow.
fn describe(reason: Refusal, limits: &Limits) -> (String, &'static str) {
    match reason {
        Refusal::MaxConnections => (format!("connection limit ({}) reached, every slot established", limits.max_connections), "refused"),
        Refusal::ConnectionsPerAddress => {
            (format!("max_connections_per_address ({} established) reached", limits.max_connections_per_address), "refused")
        }
        Refusal::HandshakesPerAddress => {
            (format!("max_handshakes_per_address ({} TLS handshakes in progress) reached", limits.max_handshakes_per_address), "refused")
        }
        Refusal::Evicted => {
            (format!("connection limit ({}) reached", limits.max_connections), "closed, to make room, the unfinished TLS handshake of")
        }
        Refusal::HandshakeTimeout => (format!("TLS handshake not finished within {:?}", limits.tls_handshake_timeout), "closed"),
    }
}

/// The address a connection counts against: an IPv4 address, or an IPv6 address's /64 (one
/// host is normally given a whole /64, so per-address caps on full /128s would give one
/// machine unlimited addresses).
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// At most one WARN line per reason per interval (the first one of a burst at once).
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Handshake in progress; the number orders handshakes by age.
    Pending(u64),
    Established,
    /// No longer counted (evicted, or refused after its handshake).
    Released,
}

#[derive(Default)]
struct PerAddress {
    /// This address's handshakes in progress, oldest first.
    pending: BTreeSet<u64>,
    established: usize,
}

/// The counts behind the rules, under one lock (the accept loop and every connection's
/// end touch it, each for a few map operations).
#[derive(Default)]
struct Table {
    next: u64,
    /// Every handshake in progress and what closes it.
    pending: HashMap<u64, (IpAddr, oneshot::Sender<()>)>,
    established: usize,
    /// Only addresses with a connection open: bounded by `max_connections`.
    addresses: HashMap<IpAddr, PerAddress>,
}

struct Admitted {
    state: SlotState,
    /// Resolves when the pending connection is evicted.
    evicted_signal: Option<oneshot::Receiver<()>>,
    /// The address whose handshake was closed to make room.
    evicted: Option<IpAddr>,
}

impl Table {
    fn admit(&mut self, limits: &Limits, ip: IpAddr, handshake: bool) -> Result<Admitted, Refusal> {
        if let Some(a) = self.addresses.get(&ip) {
            if a.established >= limits.max_connections_per_address {
                return Err(Refusal::ConnectionsPerAddress);
            }
            if handshake && a.pending.len() >= limits.max_handshakes_per_address {
                return Err(Refusal::HandshakesPerAddress);
            }
        }
        let mut evicted = None;
        if self.pending.len() + self.established >= limits.max_connections {
            evicted = Some(self.evict().ok_or(Refusal::MaxConnections)?);
        }
        let a = self.addresses.entry(ip).or_default();
        if !handshake {
            a.established += 1;
            self.established += 1;
            return Ok(Admitted { state: SlotState::Established, evicted_signal: None, evicted });
        }
        let seq = self.next;
        self.next += 1;
        a.pending.insert(seq);
        let (closer, signal) = oneshot::channel();
        self.pending.insert(seq, (ip, closer));
        Ok(Admitted { state: SlotState::Pending(seq), evicted_signal: Some(signal), evicted })
    }

    /// Closes the oldest handshake of the address with the most in progress; returns that
    /// address, or `None` if no handshake is in progress. Scans the addresses (at most
    /// `max_connections`), only when every slot is taken.
    fn evict(&mut self) -> Option<IpAddr> {
        let (ip, seq) = self
            .addresses
            .iter()
            .filter_map(|(ip, a)| a.pending.first().map(|oldest| (a.pending.len(), std::cmp::Reverse(*oldest), *ip)))
            .max()
            .map(|(_, std::cmp::Reverse(seq), ip)| (ip, seq))?;
        self.forget_pending(ip, seq);
        Some(ip)
    }

    /// Removes a handshake from the counts (closing it if it is still running: dropping
    /// or sending on its closer wakes its task).
    fn forget_pending(&mut self, ip: IpAddr, seq: u64) -> bool {
        let Some((_, closer)) = self.pending.remove(&seq) else { return false };
        let _ = closer.send(());
        if let Some(a) = self.addresses.get_mut(&ip) {
            a.pending.remove(&seq);
        }
        self.tidy(ip);
        true
    }

    /// The handshake finished: established, unless it was evicted meanwhile or its address
    /// has its fill of established connections.
    fn establish(&mut self, limits: &Limits, ip: IpAddr, seq: u64) -> Result<(), Refusal> {
        let Some((_, closer)) = self.pending.remove(&seq) else { return Err(Refusal::Evicted) };
        drop(closer);
        let a = self.addresses.entry(ip).or_default();
        a.pending.remove(&seq);
        if a.established >= limits.max_connections_per_address {
            self.tidy(ip);
            return Err(Refusal::ConnectionsPerAddress);
        }
        a.established += 1;
        self.established += 1;
        Ok(())
    }

    fn release(&mut self, ip: IpAddr, state: SlotState) {
        match state {
            SlotState::Pending(seq) => {
                self.forget_pending(ip, seq);
            }
            SlotState::Established => {
                self.established = self.established.saturating_sub(1);
                if let Some(a) = self.addresses.get_mut(&ip) {
                    a.established = a.established.saturating_sub(1);
                }
                self.tidy(ip);
            }
            SlotState::Released => {}
        }
    }

    /// Drops an address's entry once it has nothing open, so the map stays bounded.
    fn tidy(&mut self, ip: IpAddr) {
        if self.addresses.get(&ip).is_some_and(|a| a.pending.is_empty() && a.established == 0) {
            self.addresses.remove(&ip);
        }
    }
}

/// Refusals of one reason not yet logged.
#[derive(Default, Clone, Copy)]
struct LogWindow {
    /// When the last line was written; `None`: the next refusal is logged at once.
    since: Option<Instant>,
    count: u64,
    latest: Option<IpAddr>,
}

/// The connection table of one listener, with its metrics and rate-limited log.
pub struct Admission {
    limits: Limits,
    metrics: Arc<Metrics>,
    table: Mutex<Table>,
    log: Mutex<[LogWindow; Refusal::ALL.len()]>,
}

/// A poisoned lock only means a panic elsewhere; the counts are still consistent
/// (every change is complete before anything that could panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admission {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Admission> {
        Arc::new(Admission { limits, metrics, table: Mutex::new(Table::default()), log: Mutex::new(Default::default()) })
    }

    /// A new connection: its slot, pending its TLS handshake if `handshake` (else
    /// established at once: plain HTTP), or why it is refused (already counted and logged).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, handshake: bool) -> Result<Slot, Refusal> {
        let ip = bucket(ip);
        let outcome = {
            let mut table = lock(&self.table);
            let outcome = table.admit(&self.limits, ip, handshake);
            self.publish(&table);
            outcome
        };
        match outcome {
            Err(reason) => {
                self.note(reason, ip);
                Err(reason)
            }
            Ok(admitted) => {
                if let Some(victim) = admitted.evicted {
                    self.note(Refusal::Evicted, victim);
                }
                Ok(Slot { admission: Arc::clone(self), ip, state: admitted.state, evicted: admitted.evicted_signal })
            }
        }
    }

    fn publish(&self, table: &Table) {
        self.metrics.set_connections(table.pending.len(), table.established);
    }

    /// Counts a refusal and logs it, rate-limited (handshake timeouts are routine: DEBUG).
    pub fn note(&self, reason: Refusal, peer: IpAddr) {
        self.metrics.connection_refused(reason);
        let (what, done) = describe(reason, &self.limits);
        if reason == Refusal::HandshakeTimeout {
            return debug!(target: "scimd::http", "{what}: {done} a connection from {peer}");
        }
        let now = Instant::now();
        let mut windows = lock(&self.log);
        let window = &mut windows[reason as usize];
        window.count += 1;
        window.latest = Some(peer);
        match window.since {
            None => {
                warn!(
                    target: "scimd::http",
                    "{what}: {done} a connection from {peer}; further ones are summed up here every {} s and counted in scimd_connections_refused_total{{reason=\"{}\"}}",
                    LOG_INTERVAL.as_secs(),
                    reason.label()
                );
                *window = LogWindow { since: Some(now), count: 0, latest: None };
            }
            Some(since) if now.duration_since(since) >= LOG_INTERVAL => self.sum_up(reason, window, now),
            Some(_) => {}
        }
    }

    /// Logs the refusals of the last interval that no line has told yet; called
    /// periodically, so the tail of a burst is reported when the burst ends.
    pub fn flush_log(&self) {
        let now = Instant::now();
        let mut windows = lock(&self.log);
        for reason in Refusal::ALL {
            let window = &mut windows[reason as usize];
            let Some(since) = window.since else { continue };
            if now.duration_since(since) < LOG_INTERVAL {
                continue;
            }
            if window.count == 0 {
                window.since = None;
            } else {
                self.sum_up(reason, window, now);
            }
        }
    }

    fn sum_up(&self, reason: Refusal, window: &mut LogWindow, now: Instant) {
        let secs = window.since.map(|s| now.duration_since(s).as_secs()).unwrap_or(0);
        let latest = window.latest.map(|ip| ip.to_string()).unwrap_or_default();
        let (what, done) = describe(reason, &self.limits);
        warn!(target: "scimd::http", "{what}: {done} {} connections in the last {secs} s (latest from {latest})", window.count);
        *window = LogWindow { since: Some(now), count: 0, latest: None };
    }
}

/// One connection's place in the table; released on drop.
pub struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
    state: SlotState,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Slot {
    /// Resolves when this pending connection is evicted to make room; never otherwise.
    pub async fn evicted(&mut self) {
        match self.evicted.as_mut() {
            // Also resolves when the sender is dropped, which happens only when the table
            // forgets this handshake: eviction, or `establish` (after this is awaited).
            Some(signal) => {
                let _ = signal.await;
            }
            None => std::future::pending().await,
        }
    }

    /// The TLS handshake finished. `Err` (already counted and logged): close the connection.
    pub fn establish(&mut self) -> Result<(), Refusal> {
        let SlotState::Pending(seq) = self.state else { return Ok(()) };
        let outcome = {
            let mut table = lock(&self.admission.table);
            let outcome = table.establish(&self.admission.limits, self.ip, seq);
            self.admission.publish(&table);
            outcome
        };
        match outcome {
            Ok(()) => self.state = SlotState::Established,
            Err(reason) => {
                self.state = SlotState::Released;
                // An eviction was counted when it happened.
                if reason != Refusal::Evicted {
                    self.admission.note(reason, self.ip);
                }
            }
        }
        outcome
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = lock(&self.admission.table);
        table.release(self.ip, self.state);
        self.admission.publish(&table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, handshakes: usize, established: usize) -> Limits {
        Limits { max_connections: max, max_handshakes_per_address: handshakes, max_connections_per_address: established, ..Limits::default() }
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        assert_eq!(bucket("::ffff:127.0.0.2".parse().unwrap()), ip(2));
        assert_eq!(bucket(ip(7)), ip(7));
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn seq(a: &Admitted) -> u64 {
        match a.state {
            SlotState::Pending(seq) => seq,
            other => panic!("not pending: {other:?}"),
        }
    }

    #[test]
    fn the_busiest_address_loses_its_oldest_handshake_when_full() {
        let l = limits(4, 16, 16);
        let mut t = Table::default();
        let mut flood: Vec<Admitted> = (0..3).map(|_| t.admit(&l, ip(2), true).unwrap()).collect();
        let good = t.admit(&l, ip(1), true).unwrap();
        // Full: the next one evicts ip(2)'s oldest, never the lone handshake of ip(1).
        let next = t.admit(&l, ip(3), true).unwrap();
        assert_eq!(next.evicted, Some(ip(2)));
        assert!(flood[0].evicted_signal.as_mut().unwrap().try_recv().is_ok(), "the oldest was told to close");
        assert!(flood[1].evicted_signal.as_mut().unwrap().try_recv().is_err(), "the others were not");
        assert_eq!(t.establish(&l, ip(2), seq(&flood[0])), Err(Refusal::Evicted));
        assert_eq!(t.establish(&l, ip(1), seq(&good)), Ok(()));
        // ip(2) still has the most handshakes in progress (2; ip(3) has 1): ip(2) again.
        assert_eq!(t.admit(&l, ip(4), true).unwrap().evicted, Some(ip(2)));
        assert_eq!(t.pending.len() + t.established, 4);
    }

    #[test]
    fn full_of_established_connections_refuses_the_newcomer() {
        let l = limits(2, 16, 16);
        let mut t = Table::default();
        for _ in 0..2 {
            let a = t.admit(&l, ip(1), true).unwrap();
            t.establish(&l, ip(1), seq(&a)).unwrap();
        }
        assert_eq!(t.admit(&l, ip(2), true).err(), Some(Refusal::MaxConnections));
        t.release(ip(1), SlotState::Established);
        assert!(t.admit(&l, ip(2), true).is_ok(), "a closed connection makes room");
    }

    #[test]
    fn per_address_caps() {
        let l = limits(100, 2, 1);
        let mut t = Table::default();
        let first = t.admit(&l, ip(2), true).unwrap();
        let second = t.admit(&l, ip(2), true).unwrap();
        assert_eq!(t.admit(&l, ip(2), true).err(), Some(Refusal::HandshakesPerAddress));
        assert!(t.admit(&l, ip(3), true).is_ok(), "other addresses are not affected");
        assert_eq!(t.establish(&l, ip(2), seq(&first)), Ok(()));
        // One established is this address's fill: the second handshake is refused when it
        // finishes, and new connections at once.
        assert_eq!(t.establish(&l, ip(2), seq(&second)), Err(Refusal::ConnectionsPerAddress));
        assert_eq!(t.admit(&l, ip(2), true).err(), Some(Refusal::ConnectionsPerAddress));
        assert_eq!(t.admit(&l, ip(2), false).err(), Some(Refusal::ConnectionsPerAddress));
    }

    #[test]
    fn releasing_everything_leaves_an_empty_table() {
        let l = limits(3, 16, 16);
        let mut t = Table::default();
        let a = t.admit(&l, ip(1), true).unwrap();
        let b = t.admit(&l, ip(2), true).unwrap();
        t.establish(&l, ip(2), seq(&b)).unwrap();
        let c = t.admit(&l, ip(3), false).unwrap();
        t.release(ip(1), a.state);
        t.release(ip(2), SlotState::Established);
        t.release(ip(3), c.state);
        assert!(t.pending.is_empty() && t.established == 0 && t.addresses.is_empty());
    }
}
