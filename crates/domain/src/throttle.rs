//! Slowing down password guessing.
//!
//! Failed logins are counted per key (a peer address, a user name). After a few free attempts
//! each further failure doubles the wait before the next attempt is even checked, up to a cap.
//! A success clears the key. Old failures are forgotten after a quiet window.

use std::collections::HashMap;
use std::hash::Hash;
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

    /// Drops records that have been quiet long enough, bounding memory under a spray of keys.
    pub fn forget_stale(&mut self, now: SystemTime) {
        let forget_after = self.policy.forget_after;
        self.records.retain(|_, r| {
            now.duration_since(r.last_failure).unwrap_or(Duration::ZERO) < forget_after
        });
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
}
