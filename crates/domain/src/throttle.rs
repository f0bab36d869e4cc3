//! Slowing down password guessing.
//!
//! Failed logins are counted per key (a peer address, a user name). After a few free attempts
//! each further failure doubles the wait before the next attempt is even checked, up to a cap.
//! A success clears the key. Old failures are forgotten after a quiet window.
//!
//! An attempt is counted *before* its password is checked: [`Throttle::reserve`] takes a slot
//! (it counts as a failure until the outcome is known), so N parallel guesses cannot all pass
//! the check while the first ones are still being verified. A success clears the key, an
//! attempt that was never checked gives its slot back ([`Throttle::release`]), a failure keeps
//! it. [`LoginThrottle`] applies this to the two keys of a password login: the peer address
//! and the user name, counted separately so that rotating either one does not reset the other.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The throttling parameters.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay applies.
    pub free_attempts: u32,
    /// Delay after the first failure beyond the free ones; doubles with each further failure.
    pub base_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// Failures older than this (since the last failure) are forgotten.
    pub forget_after: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: SystemTime,
}

/// Failure counters for one kind of key.
#[derive(Debug)]
pub struct Throttle<K> {
    policy: ThrottlePolicy,
    records: HashMap<K, Record>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            policy,
            records: HashMap::new(),
        }
    }

    /// `Some(wait)` if an attempt for `key` at `now` must be refused without checking the
    /// password, `None` if it may go ahead.
    pub fn wait_time(&self, key: &K, now: SystemTime) -> Option<Duration> {
        let record = self.records.get(key)?;
        let delay = self.delay_for(record.failures)?;
        let since = now
            .duration_since(record.last_failure)
            .unwrap_or(Duration::ZERO);
        delay.checked_sub(since).filter(|d| !d.is_zero())
    }

    /// Records a failed attempt; returns the number of failures now counted for `key`.
    pub fn record_failure(&mut self, key: &K, now: SystemTime) -> u32 {
        let forget_after = self.policy.forget_after;
        let record = self.records.entry(key.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
        });
        let quiet = now
            .duration_since(record.last_failure)
            .unwrap_or(Duration::ZERO);
        if quiet >= forget_after {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        record.failures
    }

    /// A successful attempt clears the key.
    pub fn record_success(&mut self, key: &K) {
        self.records.remove(key);
    }

    /// Counts an attempt for `key` at `now` before its password is checked: `Err(wait)` if it
    /// must be refused (nothing is counted then), else `Ok(earlier)` with the number of
    /// attempts already counted (failed or still being checked) within the quiet window.
    pub fn reserve(&mut self, key: &K, now: SystemTime) -> Result<u32, Duration> {
        if let Some(wait) = self.wait_time(key, now) {
            return Err(wait);
        }
        let forget_after = self.policy.forget_after;
        let record = self.records.entry(key.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
        });
        let quiet = now
            .duration_since(record.last_failure)
            .unwrap_or(Duration::ZERO);
        if quiet >= forget_after {
            record.failures = 0;
        }
        let earlier = record.failures;
        record.failures = record.failures.saturating_add(1);
        record.last_failure = record.last_failure.max(now);
        Ok(earlier)
    }

    /// Gives back one reserved slot of an attempt whose password was never checked (or that
    /// succeeded, for a key a success must not clear).
    pub fn release(&mut self, key: &K) {
        if let Some(record) = self.records.get_mut(key) {
            record.failures = record.failures.saturating_sub(1);
            if record.failures == 0 {
                self.records.remove(key);
            }
        }
    }

    /// A reserved attempt turned out wrong at `now`: the wait before the next one runs from
    /// now, not from when the attempt started (checking a password takes a while).
    pub fn confirm_failure(&mut self, key: &K, now: SystemTime) {
        if let Some(record) = self.records.get_mut(key) {
            record.last_failure = record.last_failure.max(now);
        }
    }

    /// Whether `key` has attempts counted that are recent enough to matter.
    pub fn has_recent(&self, key: &K, now: SystemTime) -> bool {
        self.records.get(key).is_some_and(|r| {
            now.duration_since(r.last_failure).unwrap_or(Duration::ZERO) < self.policy.forget_after
        })
    }

    /// Drops records that have been quiet long enough, bounding memory under a spray of keys.
    pub fn forget_stale(&mut self, now: SystemTime) {
        let forget_after = self.policy.forget_after;
        self.records.retain(|_, r| {
            now.duration_since(r.last_failure).unwrap_or(Duration::ZERO) < forget_after
        });
    }

    /// Attempts counted for `key` (failed or being checked).
    pub fn count(&self, key: &K) -> u32 {
        self.records.get(key).map_or(0, |r| r.failures)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn delay_for(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.policy.free_attempts)?;
        if over == 0 {
            return None;
        }
        let factor = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
        Some(
            self.policy
                .base_delay
                .saturating_mul(factor)
                .min(self.policy.max_delay),
        )
    }
}

/// The key a peer address is counted under: an IPv4 address as is (an IPv4-mapped IPv6
/// address as its IPv4 address), an IPv6 address by its /64 network, which one host usually
/// owns whole.
pub fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

/// One password attempt that passed the throttle, counted on its keys until its outcome is
/// reported to [`LoginThrottle::succeeded`], [`LoginThrottle::failed`] or
/// [`LoginThrottle::abandoned`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "report the outcome of the attempt to the throttle"]
pub struct LoginAttempt {
    user: String,
    /// The address key, when the attempt was counted on it too.
    peer: Option<IpAddr>,
    /// The user name or the address already had attempts counted.
    suspect: bool,
}

impl LoginAttempt {
    /// Whether the user name or the address had recent failed (or unfinished) attempts: such
    /// an attempt waits behind clean ones for the costly password check.
    pub fn is_suspect(&self) -> bool {
        self.suspect
    }

    /// Whether the attempt was counted on its peer address too.
    pub fn counts_on_peer(&self) -> bool {
        self.peer.is_some()
    }
}

/// Password-login counters per peer address and per user name, shared by the web and MQTT
/// logins.
///
/// A household shares one address behind NAT, so the address is allowed more free attempts
/// than a user name. A success clears the user name's count and gives back the attempt's slot
/// on the address (it does not clear the address: knowing one password must not reset the
/// count for guessing others).
#[derive(Debug)]
pub struct LoginThrottle {
    by_peer: Throttle<IpAddr>,
    by_user: Throttle<String>,
    /// When stale records were last dropped; sweeping is O(records), so it runs at most once
    /// per [`LoginThrottle::SWEEP_EVERY`].
    last_sweep: Option<SystemTime>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(
            ThrottlePolicy {
                free_attempts: 20,
                ..ThrottlePolicy::default()
            },
            ThrottlePolicy::default(),
        )
    }
}

impl LoginThrottle {
    /// How often stale records are dropped.
    pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

    pub fn new(peer_policy: ThrottlePolicy, user_policy: ThrottlePolicy) -> Self {
        LoginThrottle {
            by_peer: Throttle::new(peer_policy),
            by_user: Throttle::new(user_policy),
            last_sweep: None,
        }
    }

    /// The wait before an attempt from `peer` may be checked, if any.
    pub fn peer_wait(&self, peer: IpAddr, now: SystemTime) -> Option<Duration> {
        self.by_peer.wait_time(&peer_key(peer), now)
    }

    /// The wait before an attempt for `user` may be checked, if any.
    pub fn user_wait(&self, user: &str, now: SystemTime) -> Option<Duration> {
        self.by_user.wait_time(&user.to_owned(), now)
    }

    /// Counts an attempt on both keys before its password is checked; `Err(wait)` (and
    /// nothing counted) if either key must wait.
    pub fn begin(
        &mut self,
        peer: IpAddr,
        user: &str,
        now: SystemTime,
    ) -> Result<LoginAttempt, Duration> {
        self.sweep(now);
        let peer = peer_key(peer);
        let user = user.to_owned();
        let wait = self
            .by_peer
            .wait_time(&peer, now)
            .max(self.by_user.wait_time(&user, now));
        if let Some(wait) = wait {
            return Err(wait);
        }
        let on_peer = self.by_peer.reserve(&peer, now)?;
        let on_user = match self.by_user.reserve(&user, now) {
            Ok(n) => n,
            Err(wait) => {
                self.by_peer.release(&peer);
                return Err(wait);
            }
        };
        Ok(LoginAttempt {
            user,
            peer: Some(peer),
            suspect: on_peer > 0 || on_user > 0,
        })
    }

    /// Counts an attempt on the user name only, for a check that costs nothing and so may
    /// go ahead while the address must wait (a remembered credential); `Err(wait)` if the
    /// user name must wait.
    pub fn begin_user_only(
        &mut self,
        user: &str,
        now: SystemTime,
    ) -> Result<LoginAttempt, Duration> {
        self.sweep(now);
        let user = user.to_owned();
        let earlier = self.by_user.reserve(&user, now)?;
        Ok(LoginAttempt {
            user,
            peer: None,
            suspect: earlier > 0,
        })
    }

    /// The attempt's password was right: the user name's count is cleared, the address's
    /// slot given back.
    pub fn succeeded(&mut self, attempt: LoginAttempt) {
        self.by_user.record_success(&attempt.user);
        if let Some(peer) = attempt.peer {
            self.by_peer.release(&peer);
        }
    }

    /// The attempt's password was wrong (found out at `now`): it stays counted.
    pub fn failed(&mut self, attempt: LoginAttempt, now: SystemTime) -> u32 {
        if let Some(peer) = attempt.peer {
            self.by_peer.confirm_failure(&peer, now);
        }
        self.by_user.confirm_failure(&attempt.user, now);
        self.by_user
            .records
            .get(&attempt.user)
            .map_or(0, |r| r.failures)
    }

    /// The attempt's password was never checked (no capacity, an internal error): its slots
    /// are given back.
    pub fn abandoned(&mut self, attempt: LoginAttempt) {
        self.by_user.release(&attempt.user);
        if let Some(peer) = attempt.peer {
            self.by_peer.release(&peer);
        }
    }

    /// Whether `user` or `peer` has recent counted attempts.
    pub fn is_suspect(&self, peer: IpAddr, user: &str, now: SystemTime) -> bool {
        self.by_peer.has_recent(&peer_key(peer), now)
            || self.by_user.has_recent(&user.to_owned(), now)
    }

    /// Number of keys counted (addresses plus user names).
    pub fn len(&self) -> usize {
        self.by_peer.len() + self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep(&mut self, now: SystemTime) {
        let due = self.last_sweep.is_none_or(|last| {
            now.duration_since(last).unwrap_or(Duration::ZERO) >= Self::SWEEP_EVERY
        });
        if due {
            self.by_peer.forget_stale(now);
            self.by_user.forget_stale(now);
            self.last_sweep = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn the_first_failures_are_free() {
        let mut th = Throttle::new(ThrottlePolicy::default());
        for _ in 0..5 {
            th.record_failure(&"alice", t(0));
        }
        assert_eq!(th.wait_time(&"alice", t(0)), None);
    }

    #[test]
    fn further_failures_double_the_wait() {
        let mut th = Throttle::new(ThrottlePolicy::default());
        for _ in 0..6 {
            th.record_failure(&"alice", t(0));
        }
        assert_eq!(th.wait_time(&"alice", t(0)), Some(Duration::from_secs(1)));
        th.record_failure(&"alice", t(0));
        assert_eq!(th.wait_time(&"alice", t(0)), Some(Duration::from_secs(2)));
        th.record_failure(&"alice", t(0));
        assert_eq!(th.wait_time(&"alice", t(1)), Some(Duration::from_secs(3)));
        assert_eq!(th.wait_time(&"alice", t(4)), None);
        assert_eq!(th.wait_time(&"bob", t(0)), None);
    }

    #[test]
    fn the_wait_is_capped() {
        let mut th = Throttle::new(ThrottlePolicy::default());
        for _ in 0..100 {
            th.record_failure(&"x", t(0));
        }
        assert_eq!(th.wait_time(&"x", t(0)), Some(Duration::from_secs(900)));
    }

    #[test]
    fn success_and_quiet_time_clear_the_count() {
        let mut th = Throttle::new(ThrottlePolicy::default());
        for _ in 0..8 {
            th.record_failure(&"a", t(0));
        }
        th.record_success(&"a");
        assert_eq!(th.wait_time(&"a", t(0)), None);
        for _ in 0..8 {
            th.record_failure(&"b", t(0));
        }
        assert_eq!(th.record_failure(&"b", t(3600)), 1);
        th.forget_stale(t(3600 + 1801));
        assert!(th.is_empty());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let mut th = LoginThrottle::default();
        let peer = ip("192.0.2.1");
        // Nothing has been checked yet: the first six take slots, the seventh must wait.
        let attempts: Vec<_> = (0..6)
            .map(|_| th.begin(peer, "admin", t(0)).unwrap())
            .collect();
        assert_eq!(th.begin(peer, "admin", t(0)), Err(Duration::from_secs(1)));
        // A refused attempt is not counted: once the wait is over exactly one more goes ahead.
        assert!(th.begin(peer, "admin", t(1)).is_ok());
        assert_eq!(th.begin(peer, "admin", t(1)), Err(Duration::from_secs(2)));
        for a in attempts {
            th.failed(a, t(1));
        }
    }

    #[test]
    fn a_failure_keeps_its_slot_and_the_wait_runs_from_the_failure() {
        let mut th = LoginThrottle::default();
        let peer = ip("192.0.2.1");
        for _ in 0..5 {
            let a = th.begin(peer, "bob", t(0)).unwrap();
            th.failed(a, t(0));
        }
        let sixth = th.begin(peer, "bob", t(0)).unwrap();
        // Checking took 10 s; the 1 s wait counts from the failure, not from the start.
        assert_eq!(th.failed(sixth, t(10)), 6);
        assert_eq!(th.begin(peer, "bob", t(10)), Err(Duration::from_secs(1)));
        assert!(th.begin(peer, "bob", t(11)).is_ok());
    }

    #[test]
    fn a_success_clears_the_user_name_and_gives_back_the_address_slot() {
        let mut th = LoginThrottle::default();
        let peer = ip("192.0.2.1");
        for _ in 0..4 {
            let a = th.begin(peer, "carol", t(0)).unwrap();
            th.failed(a, t(0));
        }
        let ok = th.begin(peer, "carol", t(0)).unwrap();
        assert!(ok.is_suspect());
        th.succeeded(ok);
        assert_eq!(th.user_wait("carol", t(0)), None);
        assert!(!th.by_user.has_recent(&"carol".to_owned(), t(0)));
        // The four failures stay on the address; the successful attempt does not add to them.
        assert_eq!(th.by_peer.records.get(&peer).map(|r| r.failures), Some(4));
        // A household signing in often from one address never piles up address counts.
        for _ in 0..100 {
            let a = th.begin(peer, "dave", t(1)).unwrap();
            th.succeeded(a);
        }
        assert_eq!(th.peer_wait(peer, t(1)), None);
    }

    #[test]
    fn an_unchecked_attempt_gives_its_slots_back() {
        let mut th = LoginThrottle::default();
        let peer = ip("192.0.2.1");
        for _ in 0..50 {
            let a = th.begin(peer, "erin", t(0)).unwrap();
            th.abandoned(a);
        }
        assert!(th.is_empty());
        let a = th.begin(peer, "erin", t(0)).unwrap();
        assert!(!a.is_suspect());
        th.abandoned(a);
    }

    #[test]
    fn rotating_user_names_still_counts_on_the_address_and_rotating_addresses_on_the_user() {
        let mut th = LoginThrottle::default();
        let peer = ip("192.0.2.7");
        let mut admitted = 0;
        for i in 0..100 {
            if let Ok(a) = th.begin(peer, &format!("user{i}"), t(0)) {
                admitted += 1;
                th.failed(a, t(0));
            }
        }
        assert_eq!(admitted, 21, "20 free attempts per address, then a wait");
        let mut admitted = 0;
        for i in 0..100u8 {
            if let Ok(a) = th.begin(IpAddr::from([198, 51, 100, i]), "frank", t(0)) {
                admitted += 1;
                th.failed(a, t(0));
            }
        }
        assert_eq!(admitted, 6, "5 free attempts per user name, then a wait");
        // Other names from other addresses are unaffected.
        let a = th.begin(ip("203.0.113.9"), "grace", t(0)).unwrap();
        assert!(!a.is_suspect());
        th.succeeded(a);
    }

    #[test]
    fn attempts_with_earlier_failures_are_suspect() {
        let mut th = LoginThrottle::default();
        let a = th.begin(ip("192.0.2.1"), "heidi", t(0)).unwrap();
        assert!(!a.is_suspect());
        let same_user = th.begin(ip("192.0.2.2"), "heidi", t(0)).unwrap();
        assert!(same_user.is_suspect());
        let same_peer = th.begin(ip("192.0.2.1"), "ivan", t(0)).unwrap();
        assert!(same_peer.is_suspect());
        assert!(th.is_suspect(ip("192.0.2.1"), "nobody", t(0)));
        assert!(!th.is_suspect(ip("192.0.2.3"), "nobody", t(0)));
        th.failed(a, t(0));
        th.failed(same_user, t(0));
        th.failed(same_peer, t(0));
        assert!(!th.is_suspect(ip("192.0.2.1"), "heidi", t(1801)));
    }

    #[test]
    fn a_user_only_attempt_leaves_the_address_alone() {
        let mut th = LoginThrottle::default();
        let peer = ip("192.0.2.1");
        let a = th.begin_user_only("judy", t(0)).unwrap();
        assert!(!a.counts_on_peer());
        th.failed(a, t(0));
        assert!(!th.by_peer.has_recent(&peer, t(0)));
        assert!(th.by_user.has_recent(&"judy".to_owned(), t(0)));
        for _ in 0..5 {
            let a = th.begin_user_only("judy", t(0)).unwrap();
            th.failed(a, t(0));
        }
        assert_eq!(
            th.begin_user_only("judy", t(0)),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn stale_records_are_swept_at_most_once_a_minute() {
        let mut th = LoginThrottle::default();
        for i in 0..10u8 {
            let a = th
                .begin(IpAddr::from([192, 0, 2, i]), &format!("u{i}"), t(0))
                .unwrap();
            th.failed(a, t(0));
        }
        assert_eq!(th.len(), 20);
        let a = th.begin(ip("192.0.2.200"), "late", t(1801)).unwrap();
        th.failed(a, t(1801));
        assert_eq!(th.len(), 2, "the old records are gone");
    }

    #[test]
    fn ipv6_peers_are_counted_per_64_network() {
        assert_eq!(peer_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(peer_key(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
        assert_eq!(peer_key(ip("192.0.2.9")), ip("192.0.2.9"));
        let mut th = LoginThrottle::default();
        let mut admitted = 0;
        for i in 0..100u16 {
            let peer = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            if let Ok(a) = th.begin(peer, &format!("n{i}"), t(0)) {
                admitted += 1;
                th.failed(a, t(0));
            }
        }
        assert_eq!(admitted, 21);
    }
}
