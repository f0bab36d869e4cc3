//! Web session lifetime: sessions expire after a stretch of idleness, and every use slides the
//! window forward.

use std::time::{Duration, SystemTime};

/// How long a web session lives without use, and how often its last-use time is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused for this long is gone.
    pub idle_timeout: Duration,
    /// Last-use times are refreshed at most this often, so reading pages does not turn into a
    /// database write per request.
    pub touch_interval: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_timeout: Duration::from_secs(7 * 24 * 3600),
            touch_interval: Duration::from_secs(60),
        }
    }
}

/// What to do with a session presented at `now` that was last used at `last_seen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    /// Valid, nothing to write.
    Valid,
    /// Valid; write `now` back as its last use (the sliding window moves).
    ValidTouch,
    /// Idle too long: refuse it and delete it.
    Expired,
}

impl SessionPolicy {
    pub fn check(&self, last_seen: SystemTime, now: SystemTime) -> SessionCheck {
        // A last-use time in the future (clock stepped back) counts as "just now".
        let idle = now.duration_since(last_seen).unwrap_or(Duration::ZERO);
        if idle >= self.idle_timeout {
            SessionCheck::Expired
        } else if idle >= self.touch_interval {
            SessionCheck::ValidTouch
        } else {
            SessionCheck::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn a_session_used_within_seven_days_stays_valid_and_slides() {
        let p = SessionPolicy::default();
        assert_eq!(p.check(at(0), at(10)), SessionCheck::Valid);
        assert_eq!(p.check(at(0), at(6 * 24 * 3600)), SessionCheck::ValidTouch);
    }

    #[test]
    fn a_session_idle_for_seven_days_expires() {
        let p = SessionPolicy::default();
        assert_eq!(p.check(at(0), at(7 * 24 * 3600)), SessionCheck::Expired);
    }

    #[test]
    fn a_clock_stepping_back_does_not_expire_sessions() {
        let p = SessionPolicy::default();
        assert_eq!(p.check(at(100), at(0)), SessionCheck::Valid);
    }
}
