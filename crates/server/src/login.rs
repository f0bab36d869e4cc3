//! Password logins, web and MQTT alike: one [`LoginGate`] per server decides whether a user
//! name and password may be checked, and checks them.
//!
//! The order of a check, and why:
//! 1. A user name that breaks the naming rules cannot exist: refused at once, nothing counted.
//! 2. The attempt is counted *before* its password is checked (a reservation in the domain's
//!    [`LoginThrottle`], per peer address and per user name). Parallel guesses therefore
//!    cannot all slip through while the first ones are being verified, and an attempt the
//!    throttle refuses never reaches argon2.
//! 3. A credential that passed argon2 recently (see `porchlight_store`'s remembered logins)
//!    is accepted without argon2. While the *address* must wait, such a remembered credential
//!    may still be checked (a reconnecting Home Assistant is not held by a flood from its own
//!    address); the attempt then counts on the user name only, so this cannot be used to guess
//!    without limit. While the *user name* must wait, nothing is checked.
//! 4. Otherwise argon2 runs within the store's process-wide limit, clean attempts (no recent
//!    failures for the user name or the address) ahead of suspect ones; a full queue refuses
//!    the attempt as throttled.
//!
//! Device keys (`pld_…`) are not passwords: the MQTT gatekeeper checks them by SHA-256 lookup
//! before coming here, so they never wait for argon2 nor for the address throttle.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use porchlight_domain::account::validate_username;
use porchlight_domain::throttle::LoginThrottle;
use porchlight_store::{HashPriority, LoginCheck, LoginCheckMode, Store, User};

/// Why a password login did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefused {
    /// Not checked: too many recent attempts (or too many checks at once); try again after
    /// the wait.
    Throttled(Duration),
    /// Wrong user name or password.
    Wrong,
    /// The check itself failed (database, hashing thread); logged by the caller.
    Internal(String),
}

/// How a successful password login was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Argon2 ran.
    Verified,
    /// A remembered credential; no argon2.
    Remembered,
}

/// The login policy shared by the web and MQTT logins of one server.
pub struct LoginGate {
    store: Store,
    /// Attempts per address and per user name, counted across web and MQTT together, so a
    /// guesser gains nothing by switching protocols.
    throttle: Mutex<LoginThrottle>,
}

/// How long a caller refused for a full argon2 queue is asked to wait.
const BUSY_WAIT: Duration = Duration::from_secs(1);

impl LoginGate {
    pub fn new(store: Store) -> Self {
        LoginGate::with_throttle(store, LoginThrottle::default())
    }

    fn with_throttle(store: Store, throttle: LoginThrottle) -> Self {
        LoginGate {
            store,
            throttle: Mutex::new(throttle),
        }
    }

    fn throttle(&self) -> MutexGuard<'_, LoginThrottle> {
        // Every update is a complete step under the lock; a poisoned lock is still consistent.
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `password` for `username` from `peer` at `now` (see the module header).
    pub async fn check_password(
        &self,
        peer: IpAddr,
        username: &str,
        password: &[u8],
        now: SystemTime,
    ) -> Result<(User, Checked), LoginRefused> {
        if validate_username(username).is_err() || password.is_empty() {
            return Err(LoginRefused::Wrong);
        }
        let (attempt, peer_wait) = {
            let mut t = self.throttle();
            if let Some(wait) = t.user_wait(username, now) {
                return Err(LoginRefused::Throttled(wait));
            }
            match t.peer_wait(peer, now) {
                None => (t.begin(peer, username, now), None),
                Some(wait) if self.store.has_remembered_login(username, now) => {
                    (t.begin_user_only(username, now), Some(wait))
                }
                Some(wait) => return Err(LoginRefused::Throttled(wait)),
            }
        };
        let attempt = attempt.map_err(LoginRefused::Throttled)?;
        let mode = match peer_wait {
            Some(_) => LoginCheckMode::RememberedOnly,
            None if attempt.is_suspect() => LoginCheckMode::Verify(HashPriority::Suspect),
            None => LoginCheckMode::Verify(HashPriority::Normal),
        };
        let outcome = self.store.check_login(username, password, mode, now).await;
        let done = SystemTime::now().max(now);
        let mut t = self.throttle();
        match outcome {
            Ok(LoginCheck::Verified(user)) => {
                t.succeeded(attempt);
                Ok((user, Checked::Verified))
            }
            Ok(LoginCheck::Remembered(user)) => {
                t.succeeded(attempt);
                Ok((user, Checked::Remembered))
            }
            Ok(LoginCheck::Wrong) => {
                let failures = t.failed(attempt, done);
                drop(t);
                tracing::debug!(%peer, %username, failures, "wrong password");
                match peer_wait {
                    Some(wait) => Err(LoginRefused::Throttled(wait)),
                    None => Err(LoginRefused::Wrong),
                }
            }
            Err(porchlight_store::Error::Busy) => {
                t.abandoned(attempt);
                Err(LoginRefused::Throttled(BUSY_WAIT))
            }
            Err(e) => {
                t.abandoned(attempt);
                Err(LoginRefused::Internal(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porchlight_domain::Role;
    use porchlight_domain::secret::Secret;
    use porchlight_domain::throttle::ThrottlePolicy;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// A gate whose address and user name allow one free failure each.
    async fn strict_gate() -> (tempfile::TempDir, LoginGate) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
        store
            .create_user(
                "gatetest-ha",
                Role::HomeAssistant,
                &Secret::new("ha password 1"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let strict = ThrottlePolicy {
            free_attempts: 1,
            ..ThrottlePolicy::default()
        };
        (
            dir,
            LoginGate::with_throttle(store, LoginThrottle::new(strict, strict)),
        )
    }

    fn throttled<T: std::fmt::Debug>(r: Result<T, LoginRefused>) -> bool {
        matches!(r, Err(LoginRefused::Throttled(_)))
    }

    #[tokio::test]
    async fn a_remembered_credential_gets_past_a_throttled_address_but_guesses_do_not() {
        let (_dir, gate) = strict_gate().await;
        let now = SystemTime::now();
        let ha = |password: &'static str| {
            gate.check_password(PEER, "gatetest-ha", password.as_bytes(), now)
        };
        assert_eq!(ha("ha password 1").await.unwrap().1, Checked::Verified);

        // Two wrong guesses for other names from the same address: the address must wait.
        for name in ["gatetest-x", "gatetest-y"] {
            let r = gate.check_password(PEER, name, b"guess guess", now).await;
            assert_eq!(r.unwrap_err(), LoginRefused::Wrong);
        }
        assert!(throttled(
            gate.check_password(PEER, "gatetest-z", b"guess guess", now)
                .await
        ));

        // The remembered credential still gets in, without argon2.
        assert_eq!(ha("ha password 1").await.unwrap().1, Checked::Remembered);
        // Guesses for that name from the throttled address are refused and counted on the
        // user name, which soon must wait too: then even the right password is not checked.
        assert!(throttled(ha("ha guess 1").await));
        assert!(throttled(ha("ha guess 2").await));
        assert!(throttled(ha("ha password 1").await));
    }

    #[tokio::test]
    async fn malformed_user_names_and_empty_passwords_are_wrong_without_counting() {
        let (_dir, gate) = strict_gate().await;
        let now = SystemTime::now();
        for _ in 0..5 {
            let r = gate
                .check_password(PEER, "Bad/Name", b"some password", now)
                .await;
            assert_eq!(r.unwrap_err(), LoginRefused::Wrong);
            let r = gate.check_password(PEER, "gatetest-ha", b"", now).await;
            assert_eq!(r.unwrap_err(), LoginRefused::Wrong);
        }
        assert!(gate.throttle().is_empty());
        assert!(
            gate.check_password(PEER, "gatetest-ha", b"ha password 1", now)
                .await
                .is_ok()
        );
    }
}
