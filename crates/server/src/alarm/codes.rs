//! Alarm PIN verification: the one place a PIN entered on a keypad, in Home Assistant or
//! through the API becomes a verified code (who, what they may do, duress or not) or a
//! refusal.
//!
//! [`PinCheck::verify`] counts the attempt in the domain's [`PinThrottle`] before any argon2
//! runs (per origin and house-wide), asks the store for the code holding the PIN (argon2 only
//! on the codes sharing its keyed tag, under the PINs' own argon2 limit, never behind password
//! logins), applies the code's enabled flag and validity window, and audits the outcome
//! (`alarm_code_used` / `alarm_code_refused`: who, from where, which code; never the PIN, and
//! never whether it was a duress code). Creating or changing a code goes through
//! [`PinCheck::add_code`] / [`PinCheck::update_code`], which count "PIN already in use"
//! refusals in the same throttle, so the uniqueness rule cannot be used to find others' PINs.
//!
//! One `PinCheck` per process (its throttle is the memory of wrong PINs); the HTTP API and
//! the alarm's command paths share it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use porchlight_domain::pin::{CodeOrigin, CodeSource, PinThrottle, Validity, check_pin, validity};
use porchlight_store::{AlarmCode, AlarmCodeChange, AuditEntry, AuditKind, NewAlarmCode, Store};

use crate::audit_sink::AuditSink;

/// A PIN that verified: the code's owner and what the code allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCode {
    pub user_id: i64,
    pub username: String,
    pub code_id: i64,
    pub label: String,
    pub may_arm: bool,
    pub may_disarm: bool,
    /// Disarm as usual, and raise the silent duress event.
    pub duress: bool,
}

/// Why a PIN did not verify. Show users [`CodeRefusal::public_message`]: it does not tell a
/// wrong PIN from a disabled or out-of-window code (the log and the audit do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefusal {
    /// Not 4–8 digits (nothing was checked, nothing counted).
    #[error("not a PIN (4 to 8 digits)")]
    BadFormat,
    /// No code has this PIN.
    #[error("wrong code")]
    Wrong,
    /// The PIN is a disabled code's.
    #[error("the code is disabled")]
    Disabled,
    /// The PIN is the code of a code outside its validity window.
    #[error("the code is not valid at this time")]
    OutsideValidity,
    /// Too many wrong PINs from this origin or in the whole house: try again after the wait.
    #[error("too many wrong codes; try again in {} s", .retry_after.as_secs().max(1))]
    LockedOut { retry_after: Duration },
    /// The PIN could not be checked now (too many checks at once, a database error).
    #[error("the code could not be checked; try again")]
    Unavailable,
}

impl CodeRefusal {
    /// The message for the person at the keypad (or Home Assistant's error topic).
    pub fn public_message(&self) -> String {
        match self {
            CodeRefusal::Disabled | CodeRefusal::OutsideValidity | CodeRefusal::Wrong => {
                CodeRefusal::Wrong.to_string()
            }
            other => other.to_string(),
        }
    }

    /// Short machine name (for error payloads and the audit).
    pub fn as_str(&self) -> &'static str {
        match self {
            CodeRefusal::BadFormat => "bad_format",
            CodeRefusal::Wrong | CodeRefusal::Disabled | CodeRefusal::OutsideValidity => {
                "wrong_code"
            }
            CodeRefusal::LockedOut { .. } => "locked_out",
            CodeRefusal::Unavailable => "unavailable",
        }
    }
}

/// Why a code could not be added or changed.
#[derive(Debug, thiserror::Error)]
pub enum CodeWriteError {
    /// Too many "PIN already in use" answers for this caller.
    #[error("too many codes refused as already in use; try again in {} s", .0.as_secs().max(1))]
    LockedOut(Duration),
    #[error(transparent)]
    Store(#[from] porchlight_store::Error),
}

/// Verifies PINs and guards code changes; see the module header.
#[derive(Debug)]
pub struct PinCheck {
    store: Store,
    audit: AuditSink,
    /// Wrong PINs per origin and house-wide. A std mutex: held only for counter updates,
    /// never across an await.
    throttle: Mutex<PinThrottle>,
    /// "PIN already in use" answers per user changing codes (throttle key `codes|user`):
    /// apart from `throttle`, so managing codes never locks the keypad.
    taken: Mutex<PinThrottle>,
}

impl PinCheck {
    pub fn new(store: Store, audit: AuditSink) -> Self {
        PinCheck::with_throttle(store, audit, PinThrottle::default())
    }

    /// With another wrong-PIN throttle (tests, benchmarks).
    pub fn with_throttle(store: Store, audit: AuditSink, throttle: PinThrottle) -> Self {
        PinCheck {
            store,
            audit,
            throttle: Mutex::new(throttle),
            taken: Mutex::new(PinThrottle::default()),
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, PinThrottle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn taken(&self) -> std::sync::MutexGuard<'_, PinThrottle> {
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `pin` entered from `origin` at `now`. "No code" (empty, `None`) is the caller's
    /// to handle before calling; here it is [`CodeRefusal::BadFormat`].
    pub async fn verify(
        &self,
        pin: &str,
        origin: &CodeOrigin,
        now: SystemTime,
    ) -> Result<VerifiedCode, CodeRefusal> {
        if check_pin(pin).is_err() {
            self.record(origin, None, &CodeRefusal::BadFormat, now);
            return Err(CodeRefusal::BadFormat);
        }
        let key = origin.throttle_key();
        let attempt = match self.throttle().begin(&key, now) {
            Ok(a) => a,
            Err(retry_after) => {
                let refusal = CodeRefusal::LockedOut { retry_after };
                self.record(origin, None, &refusal, now);
                return Err(refusal);
            }
        };
        let found = match self.store.match_alarm_pin(pin).await {
            Ok(found) => found,
            Err(e) => {
                self.throttle().abandoned(attempt);
                tracing::error!(error = %e, source = origin.source.as_str(), "alarm code check failed");
                self.record(origin, None, &CodeRefusal::Unavailable, now);
                return Err(CodeRefusal::Unavailable);
            }
        };
        let outcome = match found.code {
            None => Err((CodeRefusal::Wrong, None)),
            Some(code) if !code.enabled => Err((CodeRefusal::Disabled, Some(code))),
            Some(code) => match validity(code.valid_from, code.valid_until, now) {
                Validity::Valid => Ok(code),
                Validity::NotYet | Validity::Expired => {
                    Err((CodeRefusal::OutsideValidity, Some(code)))
                }
            },
        };
        match outcome {
            Ok(code) => {
                self.throttle().succeeded(attempt);
                self.audit.record(entry(
                    AuditKind::AlarmCodeUsed,
                    origin,
                    Some(&code),
                    "code accepted".into(),
                    now,
                ));
                tracing::info!(
                    user = %code.username,
                    code_id = code.id,
                    source = origin.source.as_str(),
                    "alarm code accepted"
                );
                Ok(VerifiedCode {
                    user_id: code.user_id,
                    username: code.username,
                    code_id: code.id,
                    label: code.label,
                    may_arm: code.may_arm,
                    may_disarm: code.may_disarm,
                    duress: code.duress,
                })
            }
            Err((refusal, code)) => {
                let count = self.throttle().failed(attempt, now);
                self.record(origin, code.as_ref(), &refusal, now);
                tracing::warn!(
                    source = origin.source.as_str(),
                    peer = ?origin.peer,
                    user = ?origin.user,
                    wrong_in_a_row = count,
                    reason = %refusal,
                    "alarm code refused"
                );
                Err(refusal)
            }
        }
    }

    /// Audits a refusal.
    fn record(
        &self,
        origin: &CodeOrigin,
        code: Option<&AlarmCode>,
        refusal: &CodeRefusal,
        now: SystemTime,
    ) {
        self.audit.record(entry(
            AuditKind::AlarmCodeRefused,
            origin,
            code,
            refusal.to_string(),
            now,
        ));
    }

    /// Adds a code for `user_id` on behalf of `actor` (the signed-in user), counting a "PIN
    /// already in use" answer against `actor`.
    pub async fn add_code(
        &self,
        actor: &str,
        user_id: i64,
        new: NewAlarmCode,
        now: SystemTime,
    ) -> Result<AlarmCode, CodeWriteError> {
        let key = format!("codes|{actor}");
        let attempt = self
            .taken()
            .begin(&key, now)
            .map_err(CodeWriteError::LockedOut)?;
        let result = self.store.add_alarm_code(user_id, new, now).await;
        self.settle_taken(attempt, &result, now);
        Ok(result?)
    }

    /// Changes code `id` on behalf of `actor`; a new PIN is guarded as in
    /// [`PinCheck::add_code`].
    pub async fn update_code(
        &self,
        actor: &str,
        id: i64,
        change: AlarmCodeChange,
        now: SystemTime,
    ) -> Result<AlarmCode, CodeWriteError> {
        let key = format!("codes|{actor}");
        let attempt = self
            .taken()
            .begin(&key, now)
            .map_err(CodeWriteError::LockedOut)?;
        let result = self.store.update_alarm_code(id, change, now).await;
        self.settle_taken(attempt, &result, now);
        Ok(result?)
    }

    /// Only "already in use" stays counted; anything else gives the slot back (a success
    /// too: writing a free PIN must not clear the count of probes for taken ones).
    fn settle_taken<T>(
        &self,
        attempt: porchlight_domain::pin::PinAttempt,
        result: &porchlight_store::Result<T>,
        now: SystemTime,
    ) {
        let mut taken = self.taken();
        if matches!(result, Err(porchlight_store::Error::PinTaken)) {
            taken.failed(attempt, now);
        } else {
            taken.abandoned(attempt);
        }
    }
}

fn entry(
    kind: AuditKind,
    origin: &CodeOrigin,
    code: Option<&AlarmCode>,
    reason: String,
    now: SystemTime,
) -> AuditEntry {
    let detail = match code {
        Some(c) => format!("{} code {} ({})", origin.source.as_str(), c.id, c.label),
        None => origin.source.as_str().to_owned(),
    };
    AuditEntry {
        id: 0,
        at: now,
        kind,
        peer: origin.peer.map(|p| p.to_string()),
        client_id: None,
        // The code's owner when a code was found, else who entered it (if known).
        username: code
            .map(|c| c.username.clone())
            .or_else(|| origin.user.clone()),
        protocol: None,
        code: None,
        reason,
        detail: Some(detail),
    }
}

/// The alarm service's port ([`super::PinVerifier`]) over the stored codes: `via` becomes the
/// code's origin (its lockout is kept per origin), refusals keep their public message.
#[async_trait::async_trait]
impl super::PinVerifier for PinCheck {
    async fn verify(
        &self,
        pin: &porchlight_domain::alarm::Pin,
        via: porchlight_domain::alarm::Via,
        peer: Option<std::net::IpAddr>,
        now: SystemTime,
    ) -> Result<super::CodeHolder, super::PinRefusal> {
        use porchlight_domain::alarm::Via;
        let source = match via {
            Via::Keypad => CodeSource::Keypad,
            Via::HomeAssistant => CodeSource::HomeAssistant,
            Via::Api => CodeSource::Api,
        };
        let mut origin = CodeOrigin::new(source);
        origin.peer = peer;
        match PinCheck::verify(self, pin.expose(), &origin, now).await {
            Ok(code) => Ok(super::CodeHolder {
                username: code.username,
                may_arm: code.may_arm,
                may_disarm: code.may_disarm,
                duress: code.duress,
            }),
            Err(refusal) => Err(super::PinRefusal {
                reason: refusal.as_str(),
                message: refusal.public_message(),
                retry_after: match refusal {
                    CodeRefusal::LockedOut { retry_after } => Some(retry_after),
                    _ => None,
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porchlight_domain::Role;
    use porchlight_domain::pin::CodeSource;
    use porchlight_domain::secret::Secret;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        check: PinCheck,
        writer: crate::audit_sink::AuditWriter,
        alice: i64,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
        let alice = store
            .create_user(
                "alice",
                Role::User,
                &Secret::new("alice password 1"),
                SystemTime::now(),
            )
            .await
            .unwrap()
            .id;
        let (audit, writer) = AuditSink::start(store.clone(), None);
        let check = PinCheck::new(store.clone(), audit);
        Fixture {
            _dir: dir,
            store,
            check,
            writer,
            alice,
        }
    }

    fn new_code(label: &str, pin: &str) -> NewAlarmCode {
        NewAlarmCode {
            label: label.into(),
            pin: Secret::new(pin),
            may_arm: true,
            may_disarm: true,
            duress: false,
            enabled: true,
            valid_from: None,
            valid_until: None,
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn keypad() -> CodeOrigin {
        CodeOrigin::new(CodeSource::Keypad)
    }

    /// The audit rows written so far (after the writer drained).
    async fn audit_rows(f: Fixture) -> (Vec<AuditEntry>, tempfile::TempDir) {
        let Fixture {
            _dir,
            store,
            check,
            writer,
            ..
        } = f;
        drop(check);
        writer.finish().await;
        let rows = store
            .audit_page(1000, None, Default::default())
            .await
            .unwrap();
        (rows, _dir)
    }

    #[tokio::test]
    async fn a_right_pin_verifies_with_the_codes_permissions_and_duress_flag() {
        let f = fixture().await;
        let mut duress = new_code("Under duress", "0911");
        duress.duress = true;
        duress.may_arm = false;
        let code = f
            .check
            .add_code("alice", f.alice, duress, t(0))
            .await
            .unwrap();
        let v = f.check.verify("0911", &keypad(), t(1)).await.unwrap();
        assert_eq!(
            v,
            VerifiedCode {
                user_id: f.alice,
                username: "alice".into(),
                code_id: code.id,
                label: "Under duress".into(),
                may_arm: false,
                may_disarm: true,
                duress: true,
            }
        );
        assert_eq!(
            f.check.verify("911", &keypad(), t(1)).await,
            Err(CodeRefusal::BadFormat)
        );
        assert_eq!(
            f.check.verify("0912", &keypad(), t(1)).await,
            Err(CodeRefusal::Wrong)
        );
    }

    #[tokio::test]
    async fn disabled_and_out_of_window_codes_do_not_verify_and_say_only_wrong_code() {
        let f = fixture().await;
        let mut off = new_code("Off", "1111");
        off.enabled = false;
        f.check.add_code("alice", f.alice, off, t(0)).await.unwrap();
        let mut window = new_code("Cleaner", "2222");
        window.valid_from = Some(t(100));
        window.valid_until = Some(t(200));
        f.check
            .add_code("alice", f.alice, window, t(0))
            .await
            .unwrap();
        let r = f.check.verify("1111", &keypad(), t(150)).await;
        assert_eq!(r, Err(CodeRefusal::Disabled));
        assert_eq!(r.unwrap_err().public_message(), "wrong code");
        assert_eq!(
            f.check.verify("2222", &keypad(), t(99)).await,
            Err(CodeRefusal::OutsideValidity)
        );
        assert!(f.check.verify("2222", &keypad(), t(100)).await.is_ok());
        let late = f.check.verify("2222", &keypad(), t(200)).await;
        assert_eq!(late, Err(CodeRefusal::OutsideValidity));
        assert_eq!(late.unwrap_err().public_message(), "wrong code");
    }

    #[tokio::test]
    async fn five_wrong_pins_lock_the_keypad_with_a_clear_error_and_everything_is_audited() {
        let f = fixture().await;
        f.check
            .add_code("alice", f.alice, new_code("Main", "4321"), t(0))
            .await
            .unwrap();
        for pin in ["0000", "1111", "2222", "3333", "4444"] {
            assert_eq!(
                f.check.verify(pin, &keypad(), t(1)).await,
                Err(CodeRefusal::Wrong)
            );
        }
        // Locked: even the right PIN is refused without being checked, with the wait.
        let locked = f.check.verify("4321", &keypad(), t(2)).await;
        assert_eq!(
            locked,
            Err(CodeRefusal::LockedOut {
                retry_after: Duration::from_secs(29)
            })
        );
        let msg = locked.unwrap_err().public_message();
        assert_eq!(msg, "too many wrong codes; try again in 29 s");
        // Home Assistant is another origin: not locked by the keypad's failures.
        let ha = CodeOrigin {
            source: CodeSource::HomeAssistant,
            peer: Some("192.0.2.10".parse().unwrap()),
            user: Some("homeassistant".into()),
        };
        assert!(f.check.verify("4321", &ha, t(2)).await.is_ok());
        // After the wait the keypad may try again; a sixth wrong PIN doubles the lockout.
        assert_eq!(
            f.check.verify("5555", &keypad(), t(31)).await,
            Err(CodeRefusal::Wrong)
        );
        assert_eq!(
            f.check.verify("4321", &keypad(), t(32)).await,
            Err(CodeRefusal::LockedOut {
                retry_after: Duration::from_secs(59)
            })
        );
        let (rows, _dir) = audit_rows(f).await;
        let used: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == AuditKind::AlarmCodeUsed)
            .collect();
        let refused: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == AuditKind::AlarmCodeRefused)
            .collect();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].username.as_deref(), Some("alice"));
        assert_eq!(used[0].peer.as_deref(), Some("192.0.2.10"));
        assert!(
            used[0]
                .detail
                .as_deref()
                .unwrap()
                .starts_with("home_assistant code ")
        );
        assert_eq!(refused.len(), 8);
        assert!(
            refused
                .iter()
                .any(|r| r.reason.contains("too many wrong codes"))
        );
        for row in &rows {
            let text = format!(
                "{} {:?} {:?} {:?} {:?}",
                row.reason, row.detail, row.username, row.peer, row.client_id
            );
            for pin in ["4321", "0000", "1111", "5555"] {
                assert!(!text.contains(pin), "the audit holds a PIN: {text}");
            }
        }
    }

    #[tokio::test]
    async fn probing_for_taken_pins_through_code_changes_is_throttled() {
        let f = fixture().await;
        f.check
            .add_code("alice", f.alice, new_code("Main", "7777"), t(0))
            .await
            .unwrap();
        for _ in 0..5 {
            let e = f
                .check
                .add_code("alice", f.alice, new_code("Probe", "7777"), t(1))
                .await
                .unwrap_err();
            assert!(matches!(
                e,
                CodeWriteError::Store(porchlight_store::Error::PinTaken)
            ));
        }
        let e = f
            .check
            .add_code("alice", f.alice, new_code("Probe", "7778"), t(1))
            .await
            .unwrap_err();
        assert!(matches!(e, CodeWriteError::LockedOut(_)), "{e}");
        // The keypad is not affected.
        assert!(f.check.verify("7777", &keypad(), t(1)).await.is_ok());
    }

    #[test]
    fn any_string_given_as_a_pin_is_answered_without_a_panic() {
        use proptest::test_runner::{Config, TestRunner};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let f = rt.block_on(fixture());
        rt.block_on(
            f.check
                .add_code("alice", f.alice, new_code("Main", "24680"), t(0)),
        )
        .unwrap();
        // No lockouts here: every input must reach the store's matching.
        let open = porchlight_domain::throttle::ThrottlePolicy {
            free_attempts: u32::MAX,
            ..PinThrottle::ORIGIN_POLICY
        };
        let audit = rt.block_on(async { AuditSink::start(f.store.clone(), None) });
        let check = PinCheck::with_throttle(f.store.clone(), audit.0, PinThrottle::new(open, open));
        let strategy = proptest::prop_oneof![
            proptest::string::string_regex("[0-9]{0,10}").unwrap(),
            proptest::arbitrary::any::<String>(),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 128,
            ..Config::default()
        });
        runner
            .run(&strategy, |pin| {
                let r = rt.block_on(check.verify(&pin, &keypad(), t(1)));
                proptest::prop_assert_eq!(r.is_ok(), pin == "24680");
                Ok(())
            })
            .unwrap();
    }
}
