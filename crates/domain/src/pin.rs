//! Alarm PIN codes: what a PIN, a code's label and its validity window may be, where a code
//! was entered ([`CodeOrigin`]), and how wrong PINs are throttled ([`PinThrottle`]).
//!
//! A PIN is 4 to 8 ASCII digits kept as a string (leading zeros matter). Anything else is not
//! a PIN: "no code" in any of the shapes Home Assistant sends (`""`, `None`, whitespace) never
//! passes [`check_pin`], so it can never collide with a real code.
//!
//! No I/O and no clock: times are parameters.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::throttle::{Throttle, ThrottlePolicy, peer_key};

/// Fewest digits in a PIN.
pub const PIN_MIN_DIGITS: usize = 4;
/// Most digits in a PIN.
pub const PIN_MAX_DIGITS: usize = 8;
/// Longest label, in characters.
pub const LABEL_MAX_CHARS: usize = 64;

/// Why a string is not a PIN. The messages never quote the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits (0-9) and nothing else")]
    NotDigits,
    #[error("a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits; this one has {0}")]
    Length(usize),
}

/// Checks that `pin` is 4 to 8 ASCII digits.
pub fn check_pin(pin: &str) -> Result<(), PinError> {
    if !pin.bytes().all(|b| b.is_ascii_digit()) || pin.is_empty() {
        return Err(PinError::NotDigits);
    }
    if !(PIN_MIN_DIGITS..=PIN_MAX_DIGITS).contains(&pin.len()) {
        return Err(PinError::Length(pin.len()));
    }
    Ok(())
}

/// Why a code's label or validity window is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeFieldError {
    #[error(
        "a label is 1 to {LABEL_MAX_CHARS} characters, not only spaces, without control characters"
    )]
    Label,
    #[error("valid_from must be before valid_until")]
    Window,
}

/// A code's label, trimmed: 1 to [`LABEL_MAX_CHARS`] characters, no control characters.
pub fn check_label(label: &str) -> Result<String, CodeFieldError> {
    let label = label.trim();
    if label.is_empty()
        || label.chars().count() > LABEL_MAX_CHARS
        || label.chars().any(char::is_control)
    {
        return Err(CodeFieldError::Label);
    }
    Ok(label.to_owned())
}

/// A validity window is open on either side; when both are set, `from` must come first.
pub fn check_window(
    from: Option<SystemTime>,
    until: Option<SystemTime>,
) -> Result<(), CodeFieldError> {
    match (from, until) {
        (Some(f), Some(u)) if f >= u => Err(CodeFieldError::Window),
        _ => Ok(()),
    }
}

/// Where `now` falls in a code's validity window (`from <= now < until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    NotYet,
    Expired,
}

pub fn validity(from: Option<SystemTime>, until: Option<SystemTime>, now: SystemTime) -> Validity {
    if from.is_some_and(|f| now < f) {
        Validity::NotYet
    } else if until.is_some_and(|u| now >= u) {
        Validity::Expired
    } else {
        Validity::Valid
    }
}

/// The way a code reached Porchlight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeSource {
    /// Porchlight's own keypad (the web UI's panel).
    Keypad,
    /// Home Assistant's alarm panel, through MQTT.
    HomeAssistant,
    /// The HTTP API (a script, a token).
    Api,
}

impl CodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSource::Keypad => "keypad",
            CodeSource::HomeAssistant => "home_assistant",
            CodeSource::Api => "api",
        }
    }
}

/// Who entered a code and from where, as far as known: the throttle counts per origin, the
/// audit records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeOrigin {
    pub source: CodeSource,
    /// The caller's address (an HTTP client, the MQTT client that published), if known.
    pub peer: Option<IpAddr>,
    /// The signed-in user (web/API) or the MQTT account that published, if known.
    pub user: Option<String>,
}

impl CodeOrigin {
    pub fn new(source: CodeSource) -> Self {
        CodeOrigin {
            source,
            peer: None,
            user: None,
        }
    }

    /// The throttle key: the source, with the address (per IPv6 /64) and the user when known.
    pub fn throttle_key(&self) -> String {
        let peer = self
            .peer
            .map(|p| peer_key(p).to_string())
            .unwrap_or_default();
        let user = self.user.as_deref().unwrap_or_default();
        format!("{}|{peer}|{user}", self.source.as_str())
    }
}

/// Wrong-PIN counters per origin and for the whole house.
///
/// Per origin: 4 wrong PINs are free, the 5th locks that origin for 30 s, each further one
/// doubles the lockout (up to 15 min); quiet for an hour, the count is forgotten; a right PIN
/// clears it. Globally (every origin together, so rotating addresses or accounts does not
/// help): 20 free, then the same growing lockout, and a right PIN only gives back its own
/// slot, so a household member's disarm never resets an attacker's count. Brute force over the
/// 10,000 four-digit PINs then takes months (each attempt past the first few waits 15 min).
/// The price: a guesser can lock out the keypad for a while (audited, and a right PIN from an
/// unlocked origin still counts only against the global wait).
///
/// As with [`crate::throttle::LoginThrottle`], an attempt is counted before its PIN is checked
/// ([`PinThrottle::begin`]), so parallel guesses cannot all slip in while the first are checked.
#[derive(Debug)]
pub struct PinThrottle {
    by_origin: Throttle<String>,
    global: Throttle<()>,
    last_sweep: Option<SystemTime>,
}

/// One PIN attempt that passed the throttle; report its outcome to the throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "report the outcome of the attempt to the throttle"]
pub struct PinAttempt {
    key: String,
}

impl PinThrottle {
    /// The per-origin policy: 4 free, then 30 s doubling up to 15 min, forgotten after 1 h.
    pub const ORIGIN_POLICY: ThrottlePolicy = ThrottlePolicy {
        free_attempts: 4,
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(3600),
    };
    /// The house-wide policy: 20 free, then as per origin.
    pub const GLOBAL_POLICY: ThrottlePolicy = ThrottlePolicy {
        free_attempts: 20,
        ..Self::ORIGIN_POLICY
    };
    const SWEEP_EVERY: Duration = Duration::from_secs(60);

    pub fn new(origin: ThrottlePolicy, global: ThrottlePolicy) -> Self {
        PinThrottle {
            by_origin: Throttle::new(origin),
            global: Throttle::new(global),
            last_sweep: None,
        }
    }

    /// The wait before a PIN from `origin_key` may be checked, if any (origin or global).
    pub fn wait(&self, origin_key: &str, now: SystemTime) -> Option<Duration> {
        self.by_origin
            .wait_time(&origin_key.to_owned(), now)
            .max(self.global.wait_time(&(), now))
    }

    /// Counts an attempt before its PIN is checked; `Err(wait)` (nothing counted) if the
    /// origin or the house is locked out.
    pub fn begin(&mut self, origin_key: &str, now: SystemTime) -> Result<PinAttempt, Duration> {
        self.sweep(now);
        if let Some(wait) = self.wait(origin_key, now) {
            return Err(wait);
        }
        let key = origin_key.to_owned();
        self.global.reserve(&(), now)?;
        if let Err(wait) = self.by_origin.reserve(&key, now) {
            self.global.release(&());
            return Err(wait);
        }
        Ok(PinAttempt { key })
    }

    /// The PIN was right: the origin's count is cleared, the global slot given back.
    pub fn succeeded(&mut self, attempt: PinAttempt) {
        self.by_origin.record_success(&attempt.key);
        self.global.release(&());
    }

    /// The PIN was wrong (found out at `now`): it stays counted. Returns the origin's count.
    pub fn failed(&mut self, attempt: PinAttempt, now: SystemTime) -> u32 {
        self.global.confirm_failure(&(), now);
        self.by_origin.confirm_failure(&attempt.key, now);
        self.by_origin.count(&attempt.key)
    }

    /// The PIN was never checked (an internal error): the slots are given back.
    pub fn abandoned(&mut self, attempt: PinAttempt) {
        self.by_origin.release(&attempt.key);
        self.global.release(&());
    }

    fn sweep(&mut self, now: SystemTime) {
        let due = self.last_sweep.is_none_or(|last| {
            now.duration_since(last).unwrap_or(Duration::ZERO) >= Self::SWEEP_EVERY
        });
        if due {
            self.by_origin.forget_stale(now);
            self.global.forget_stale(now);
            self.last_sweep = Some(now);
        }
    }
}

impl Default for PinThrottle {
    fn default() -> Self {
        PinThrottle::new(Self::ORIGIN_POLICY, Self::GLOBAL_POLICY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn pins_are_four_to_eight_digits_with_leading_zeros_kept() {
        for ok in ["0000", "0123", "12345678", "00000001"] {
            assert_eq!(check_pin(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_pin("123"), Err(PinError::Length(3)));
        assert_eq!(check_pin("123456789"), Err(PinError::Length(9)));
        for bad in [
            "",
            " ",
            "None",
            "none",
            "12 34",
            "１２３４",
            "12a4",
            "-1234",
            "+1234",
        ] {
            assert_eq!(check_pin(bad), Err(PinError::NotDigits), "{bad:?}");
        }
        assert!(!PinError::Length(3).to_string().contains("123"));
    }

    #[test]
    fn labels_and_windows() {
        assert_eq!(check_label("  Front door  "), Ok("Front door".into()));
        assert_eq!(check_label("   "), Err(CodeFieldError::Label));
        assert_eq!(check_label("a\nb"), Err(CodeFieldError::Label));
        assert_eq!(check_label(&"x".repeat(65)), Err(CodeFieldError::Label));
        assert_eq!(
            check_window(Some(t(1)), Some(t(1))),
            Err(CodeFieldError::Window)
        );
        assert_eq!(check_window(Some(t(1)), None), Ok(()));
        assert_eq!(validity(Some(t(10)), Some(t(20)), t(9)), Validity::NotYet);
        assert_eq!(validity(Some(t(10)), Some(t(20)), t(10)), Validity::Valid);
        assert_eq!(validity(Some(t(10)), Some(t(20)), t(20)), Validity::Expired);
        assert_eq!(validity(None, None, t(0)), Validity::Valid);
    }

    #[test]
    fn five_wrong_pins_lock_the_origin_for_a_growing_time() {
        let mut th = PinThrottle::default();
        let keypad = CodeOrigin::new(CodeSource::Keypad).throttle_key();
        for _ in 0..5 {
            let a = th.begin(&keypad, t(0)).unwrap();
            th.failed(a, t(0));
        }
        assert_eq!(th.begin(&keypad, t(0)), Err(Duration::from_secs(30)));
        assert_eq!(th.begin(&keypad, t(29)), Err(Duration::from_secs(1)));
        let a = th.begin(&keypad, t(30)).unwrap();
        th.failed(a, t(30));
        assert_eq!(th.begin(&keypad, t(30)), Err(Duration::from_secs(60)));
        // Another origin is not locked (the house-wide count is still under its free share).
        let ha = CodeOrigin::new(CodeSource::HomeAssistant).throttle_key();
        let a = th.begin(&ha, t(30)).unwrap();
        th.succeeded(a);
        // A right PIN clears the origin.
        let a = th.begin(&keypad, t(90)).unwrap();
        th.succeeded(a);
        assert_eq!(th.wait(&keypad, t(90)), None);
    }

    #[test]
    fn rotating_origins_still_hits_the_house_wide_lockout() {
        let mut th = PinThrottle::default();
        let mut admitted = 0;
        for i in 0..100u8 {
            let origin = CodeOrigin {
                source: CodeSource::Api,
                peer: Some(IpAddr::from([198, 51, 100, i])),
                user: Some(format!("u{i}")),
            };
            if let Ok(a) = th.begin(&origin.throttle_key(), t(0)) {
                admitted += 1;
                th.failed(a, t(0));
            }
        }
        assert_eq!(admitted, 21, "20 free, the 21st counted, then a wait");
        // A household member's right PIN does not reset the house-wide count.
        let keypad = CodeOrigin::new(CodeSource::Keypad).throttle_key();
        assert!(th.begin(&keypad, t(30)).is_ok_and(|a| {
            th.succeeded(a);
            true
        }));
        assert_eq!(th.wait(&keypad, t(30)), Some(Duration::from_secs(30)));
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let mut th = PinThrottle::default();
        let k = CodeOrigin::new(CodeSource::Keypad).throttle_key();
        let held: Vec<_> = (0..5).map(|_| th.begin(&k, t(0)).unwrap()).collect();
        assert!(th.begin(&k, t(0)).is_err());
        for a in held {
            th.abandoned(a);
        }
        assert_eq!(th.wait(&k, t(0)), None);
    }

    #[test]
    fn origins_are_keyed_by_source_address_and_user() {
        let a = CodeOrigin {
            source: CodeSource::Api,
            peer: Some("2001:db8:1:2::9".parse().unwrap()),
            user: Some("alice".into()),
        };
        assert_eq!(a.throttle_key(), "api|2001:db8:1:2::|alice");
        assert_eq!(
            CodeOrigin::new(CodeSource::Keypad).throttle_key(),
            "keypad||"
        );
    }

    proptest! {
        #[test]
        fn any_string_is_checked_without_a_panic(s in any::<String>()) {
            let ok = check_pin(&s).is_ok();
            prop_assert_eq!(ok, (4..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()));
            let _ = check_label(&s);
        }
    }
}
