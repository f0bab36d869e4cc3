//! Password hashing and random secrets.
//!
//! Passwords are argon2id PHC strings; verification reads the parameters from the stored
//! string, so the cost can be raised later without a migration. Random secrets (session
//! cookies, API tokens, device keys) carry 256 bits of entropy, so a plain SHA-256 of them is
//! enough to store and lets them be looked up by hash in one indexed query.
//!
//! Each argon2 computation takes 64 MiB and a core for a while, so this module owns two
//! process-wide guards, shared by every caller (web logins, MQTT logins, password changes):
//! - [`HashGate`]: at most [`MAX_CONCURRENT_HASHES`] run at once; callers wait in two queues,
//!   clean attempts ahead of suspect ones (see [`HashPriority`]), and at most
//!   [`MAX_WAITING_HASHES`] wait at all: beyond that a caller is refused with
//!   [`Error::Busy`] instead of piling up.
//! - [`RememberedLogins`]: credentials that passed argon2 recently, kept as keyed digests so a
//!   client reconnecting with the right password (Home Assistant reconnects often) needs no
//!   argon2. An entry matches only while the account's PHC string is the one it was verified
//!   against, so a password change (by any process) invalidates it.
//!
//! They are process-wide on purpose: the memory they protect is the process's, however many
//! stores it opens.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use porchlight_domain::secret::Secret;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::{Error, Result};

/// Argon2 computations (hash or verify, 64 MiB each) running at once in this process.
pub const MAX_CONCURRENT_HASHES: usize = 2;
/// Callers that may wait for one; beyond this a caller is refused with [`Error::Busy`].
pub const MAX_WAITING_HASHES: usize = 8;
/// How long a verified credential is remembered.
pub const REMEMBER_LOGIN_FOR: Duration = Duration::from_secs(12 * 3600);
/// Most remembered credentials (only right passwords get in, so this is rarely reached).
const MAX_REMEMBERED: usize = 256;

/// Where a caller waits for an argon2 slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPriority {
    /// No recent failures for this user name or address (and password changes): served first.
    Normal,
    /// The user name or the address has recent failed attempts: waits behind normal callers,
    /// and is the first to be refused when the queue is full.
    Suspect,
}

/// The process-wide limit on concurrent argon2 work.
pub(crate) static HASH_GATE: LazyLock<Arc<HashGate>> =
    LazyLock::new(|| Arc::new(HashGate::new(MAX_CONCURRENT_HASHES, MAX_WAITING_HASHES)));

/// The process-wide memory of verified credentials.
pub(crate) static REMEMBERED: LazyLock<Mutex<RememberedLogins>> =
    LazyLock::new(|| Mutex::new(RememberedLogins::new()));

/// A counting semaphore with two priority queues and a bounded wait. Suspect callers may
/// hold all slots but one, so a normal caller finds a slot at once unless other normal callers
/// hold the rest.
#[derive(Debug)]
pub(crate) struct HashGate {
    max_waiting: usize,
    /// Most slots suspect callers may hold at once.
    max_suspect: usize,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    /// Slots nobody holds.
    free: usize,
    /// Slots held by suspect callers.
    suspect_running: usize,
    /// Waiters for a slot, each a channel the slot is handed through; a waiter that gave up
    /// has dropped its receiver, and is skipped.
    normal: VecDeque<oneshot::Sender<HashPermit>>,
    suspect: VecDeque<oneshot::Sender<HashPermit>>,
}

/// The queue is full: the caller should be told to try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateFull;

/// One argon2 slot; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub(crate) struct HashPermit {
    /// `None` once disarmed (never handed over: its counts were undone).
    gate: Option<Arc<HashGate>>,
    suspect: bool,
}

impl Drop for HashPermit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(self.suspect);
        }
    }
}

impl HashGate {
    pub(crate) fn new(permits: usize, max_waiting: usize) -> Self {
        HashGate {
            max_waiting,
            max_suspect: permits.saturating_sub(1).max(1),
            state: Mutex::new(GateState {
                free: permits,
                suspect_running: 0,
                normal: VecDeque::new(),
                suspect: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The state stays consistent at every await-free step, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot. A normal caller that finds the queue full takes the place of the
    /// newest suspect waiter (which is refused); otherwise a full queue refuses the caller.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        priority: HashPriority,
    ) -> Result<HashPermit, GateFull> {
        let suspect = priority == HashPriority::Suspect;
        let rx = {
            let mut st = self.lock();
            let queue_empty = if suspect {
                st.suspect.iter().all(|tx| tx.is_closed())
            } else {
                st.normal.iter().all(|tx| tx.is_closed())
            };
            if queue_empty && st.free > 0 && (!suspect || st.suspect_running < self.max_suspect) {
                st.free -= 1;
                st.suspect_running += usize::from(suspect);
                return Ok(HashPermit {
                    gate: Some(self.clone()),
                    suspect,
                });
            }
            st.normal.retain(|tx| !tx.is_closed());
            st.suspect.retain(|tx| !tx.is_closed());
            if st.normal.len() + st.suspect.len() >= self.max_waiting {
                if !suspect && !st.suspect.is_empty() {
                    // Dropping its sender tells that waiter it was refused.
                    st.suspect.pop_back();
                } else {
                    return Err(GateFull);
                }
            }
            let (tx, rx) = oneshot::channel();
            if suspect {
                st.suspect.push_back(tx);
            } else {
                st.normal.push_back(tx);
            }
            rx
        };
        rx.await.map_err(|_| GateFull)
    }

    /// Takes back a slot and hands free slots to waiters: normal ones first, suspect ones
    /// while they hold fewer than their share.
    fn release(self: &Arc<Self>, was_suspect: bool) {
        let mut st = self.lock();
        st.free += 1;
        if was_suspect {
            st.suspect_running = st.suspect_running.saturating_sub(1);
        }
        while st.free > 0 {
            let (tx, suspect) = if let Some(tx) = st.normal.pop_front() {
                (tx, false)
            } else if st.suspect_running < self.max_suspect
                && let Some(tx) = st.suspect.pop_front()
            {
                (tx, true)
            } else {
                return;
            };
            st.free -= 1;
            st.suspect_running += usize::from(suspect);
            let permit = HashPermit {
                gate: Some(self.clone()),
                suspect,
            };
            if let Err(mut back) = tx.send(permit) {
                // That waiter gave up: undo and try the next one.
                back.gate = None;
                st.free += 1;
                st.suspect_running -= usize::from(suspect);
            }
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        let st = self.lock();
        st.normal
            .iter()
            .chain(st.suspect.iter())
            .filter(|tx| !tx.is_closed())
            .count()
    }
}

/// Runs `work` (argon2) on a blocking thread once a slot of the process-wide gate is free.
/// The slot is held until `work` finishes, even if the caller stops waiting for the result.
pub(crate) async fn with_hash_slot<T: Send + 'static>(
    priority: HashPriority,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let permit = HASH_GATE
        .acquire(priority)
        .await
        .map_err(|GateFull| Error::Busy)?;
    tokio::task::spawn_blocking(move || {
        let _slot = permit;
        work()
    })
    .await
    .map_err(|e| Error::Hashing(e.to_string()))
}

/// Credentials that passed argon2 recently.
///
/// Each entry is keyed by SHA-256(process key ‖ user name ‖ PHC string ‖ password), each part
/// but the last length-prefixed, with a random key made at start: the memory holds no password
/// and no digest that could be checked offline without the key, and since the PHC string the
/// password matched is part of the digest, an entry counts only while the account still has
/// that hash (and two databases in one process never share an entry).
#[derive(Debug)]
pub(crate) struct RememberedLogins {
    key: [u8; 32],
    entries: HashMap<[u8; 32], Remembered>,
}

#[derive(Debug)]
struct Remembered {
    username: String,
    verified_at: SystemTime,
}

impl RememberedLogins {
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        RememberedLogins {
            key,
            entries: HashMap::new(),
        }
    }

    fn digest(&self, username: &str, password: &[u8], phc: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [username, phc] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.update(password);
        h.finalize().into()
    }

    fn fresh(entry: &Remembered, now: SystemTime) -> bool {
        // A time in the future (clock stepped back) counts as just now.
        now.duration_since(entry.verified_at)
            .unwrap_or(Duration::ZERO)
            < REMEMBER_LOGIN_FOR
    }

    /// Did `password` for `username` pass argon2 against `phc` within the last hours?
    pub(crate) fn matches(
        &self,
        username: &str,
        password: &[u8],
        phc: &str,
        now: SystemTime,
    ) -> bool {
        self.entries
            .get(&self.digest(username, password, phc))
            .is_some_and(|e| e.username == username && Self::fresh(e, now))
    }

    /// Is any credential of `username` remembered?
    pub(crate) fn knows(&self, username: &str, now: SystemTime) -> bool {
        self.entries
            .values()
            .any(|e| e.username == username && Self::fresh(e, now))
    }

    /// Notes that `password` for `username` just matched `phc`.
    pub(crate) fn remember(&mut self, username: &str, password: &[u8], phc: &str, now: SystemTime) {
        let digest = self.digest(username, password, phc);
        if !self.entries.contains_key(&digest) && self.entries.len() >= MAX_REMEMBERED {
            self.entries.retain(|_, e| Self::fresh(e, now));
            if self.entries.len() >= MAX_REMEMBERED
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.verified_at)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            digest,
            Remembered {
                username: username.to_owned(),
                verified_at: now,
            },
        );
    }

    /// Forgets every credential of `username` (its password changed, or it was removed).
    pub(crate) fn forget(&mut self, username: &str) {
        self.entries.retain(|_, e| e.username != username);
    }
}

/// The process-wide memory of verified credentials, locked.
pub(crate) fn remembered() -> MutexGuard<'static, RememberedLogins> {
    REMEMBERED.lock().unwrap_or_else(|e| e.into_inner())
}

/// argon2id with 64 MiB of memory, 2 passes, 1 lane (RFC 9106 / OWASP range).
fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(64 * 1024, 2, 1, None).map_err(|e| Error::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string. CPU- and memory-heavy: call off the async runtime.
pub fn hash_password(password: &Secret) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hashing(e.to_string()))
}

/// Checks a password against a stored PHC string (any argon2 variant and parameters).
/// A malformed stored hash verifies as false. CPU-heavy: call off the async runtime.
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Argon2 computations for PINs running at once (8 MiB each).
pub const MAX_CONCURRENT_PIN_HASHES: usize = 2;
/// PIN checks that may wait for one; beyond this a caller gets [`Error::Busy`].
const MAX_WAITING_PIN_HASHES: usize = 16;

/// The PINs' own argon2 limit, apart from the passwords' [`HASH_GATE`] on purpose: a PIN
/// check costs a few milliseconds and arms or disarms a house, so it must never wait behind
/// password logins (64 MiB and ~100 ms each, and attackers can queue those up). Both gates
/// together bound argon2 memory at 2 × 64 + 2 × 8 MiB.
pub(crate) static PIN_GATE: LazyLock<Arc<HashGate>> = LazyLock::new(|| {
    Arc::new(HashGate::new(
        MAX_CONCURRENT_PIN_HASHES,
        MAX_WAITING_PIN_HASHES,
    ))
});

/// Runs `work` (PIN argon2) on a blocking thread once a slot of the PIN gate is free.
pub(crate) async fn with_pin_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let permit = PIN_GATE
        .acquire(HashPriority::Normal)
        .await
        .map_err(|GateFull| Error::Busy)?;
    tokio::task::spawn_blocking(move || {
        let _slot = permit;
        work()
    })
    .await
    .map_err(|e| Error::Hashing(e.to_string()))
}

/// The PIN profile: argon2id, 1 pass, 8 MiB, 2 lanes. A PIN's keyspace is tiny (10⁴–10⁸), so
/// cost buys little against an offline attacker and only adds latency to every arm/disarm;
/// the protection is the throttle (docs/adr/0013-alarm-pin-codes.md).
fn pin_hasher() -> Result<Argon2<'static>> {
    let params = Params::new(8 * 1024, 1, 2, None).map_err(|e| Error::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a PIN into a PHC string with the PIN profile. Call off the async runtime.
pub fn hash_pin(pin: &Secret) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    pin_hasher()?
        .hash_password(pin.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hashing(e.to_string()))
}

/// Checks a PIN against a stored PHC string, by the parameters written in it (so codes hashed
/// under an older profile still verify). A malformed hash verifies as false.
pub fn verify_pin(pin: &[u8], phc: &str) -> bool {
    verify_password(pin, phc)
}

/// HMAC-SHA256 (RFC 2104) of `message` under a 32-byte key.
pub(crate) fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// A PIN's tag: the first 16 bits of HMAC-SHA256(key, PIN). Cheap to compute, so a keypad
/// entry is hashed with argon2 only against the codes sharing its tag; short, so a tag alone
/// matches one in 65,536 PINs.
pub(crate) fn pin_tag(key: &[u8; 32], pin: &str) -> i64 {
    let mac = hmac_sha256(key, pin.as_bytes());
    i64::from(u16::from_be_bytes([mac[0], mac[1]]))
}

/// A PHC string of a random PIN, verified against when no stored code shares a PIN's tag, so
/// that a wrong PIN costs the same as a right one.
pub(crate) fn decoy_pin_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_pin(&random_secret("")).unwrap_or_default())
}

/// A PHC string of a random password, verified against when a user name is unknown so that
/// unknown and known names take the same time.
pub(crate) fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_secret("")).unwrap_or_default())
}

/// A new random secret with a readable prefix (`plt_` for API tokens, `pld_` for device keys).
pub(crate) fn random_secret(prefix: &str) -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A random password for generated accounts: 20 characters from an unambiguous alphabet.
pub fn random_password() -> Secret {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let s: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    Secret::new(s)
}

/// SHA-256 hex of a random secret, as stored.
pub(crate) fn secret_hash(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let phc = hash_password(&Secret::new("correct horse battery")).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=65536,t=2,p=1$"), "{phc}");
        assert!(verify_password(b"correct horse battery", &phc));
        assert!(!verify_password(b"correct horse batterz", &phc));
    }

    #[test]
    fn pins_use_their_own_cheap_profile_and_older_profiles_still_verify() {
        let phc = hash_pin(&Secret::new("0042")).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=2$"), "{phc}");
        assert!(verify_pin(b"0042", &phc));
        assert!(!verify_pin(b"42", &phc));
        assert!(!verify_pin(b"0043", &phc));
        // A PIN hashed under other parameters (an older profile) verifies by its PHC string.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4 * 1024, 3, 1, None).unwrap(),
        )
        .hash_password(b"0042", &salt)
        .unwrap()
        .to_string();
        assert!(old.contains("m=4096,t=3,p=1"));
        assert!(verify_pin(b"0042", &old));
        assert!(!verify_pin(b"0041", &old));
        assert!(!verify_pin(b"0042", "not a phc string"));
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_and_tags_are_16_bits() {
        // RFC 4231 test case 2 uses a 4-byte key ("Jefe"); zero-padded to 32 bytes it is the
        // same HMAC, as keys shorter than the block are padded with zeros.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let tags: std::collections::HashSet<i64> = (0..1000)
            .map(|n| pin_tag(&key, &format!("{n:04}")))
            .collect();
        assert!(tags.iter().all(|t| (0..65536).contains(t)));
        assert!(tags.len() > 980, "tags spread out: {}", tags.len());
        assert_ne!(pin_tag(&key, "0042"), pin_tag(&[7u8; 32], "0042"));
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let phc = weak
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(b"old password", &phc));
    }

    #[test]
    fn a_malformed_hash_never_verifies() {
        assert!(!verify_password(b"", ""));
        assert!(!verify_password(b"x", "$argon2id$garbage"));
    }

    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn a_remembered_login_matches_only_the_same_password_and_hash_for_some_hours() {
        let mut r = RememberedLogins::new();
        r.remember("ha", b"right password", "$phc-1", at(0));
        assert!(r.matches("ha", b"right password", "$phc-1", at(60)));
        assert!(r.knows("ha", at(60)));
        assert!(!r.matches("ha", b"wrong password", "$phc-1", at(60)));
        assert!(!r.matches("ha2", b"right password", "$phc-1", at(60)));
        // The account's hash changed (a new password): the old one no longer counts.
        assert!(!r.matches("ha", b"right password", "$phc-2", at(60)));
        // Another database in the process with the same user name and password has its own.
        r.remember("ha", b"right password", "$phc-other-db", at(0));
        assert!(r.matches("ha", b"right password", "$phc-1", at(60)));
        assert!(r.matches("ha", b"right password", "$phc-other-db", at(60)));
        assert!(!r.matches("ha", b"right password", "$phc-1", at(12 * 3600)));
        assert!(!r.knows("ha", at(12 * 3600)));
        r.forget("ha");
        assert!(!r.matches("ha", b"right password", "$phc-1", at(60)));
        // The digest is keyed per process: another instance derives another digest.
        assert_ne!(
            RememberedLogins::new().digest("ha", b"right password", "$phc-1"),
            r.digest("ha", b"right password", "$phc-1")
        );
        // User name and password cannot be shifted into each other.
        assert_ne!(r.digest("ab", b"c", "$p"), r.digest("a", b"bc", "$p"));
        assert_ne!(r.digest("a", b"b", "$pc"), r.digest("a", b"cb", "$p"));
    }

    #[test]
    fn remembered_logins_are_bounded() {
        let mut r = RememberedLogins::new();
        for i in 0..(MAX_REMEMBERED as u64 + 50) {
            r.remember(&format!("u{i}"), b"pw", "$phc", at(i));
        }
        assert_eq!(r.entries.len(), MAX_REMEMBERED);
        assert!(!r.knows("u0", at(400)), "the oldest went first");
        assert!(r.knows(&format!("u{}", MAX_REMEMBERED + 49), at(400)));
    }

    #[tokio::test]
    async fn a_normal_caller_never_waits_behind_suspect_ones() {
        let gate = Arc::new(HashGate::new(2, 8));
        let flood = gate.acquire(HashPriority::Suspect).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |name: &'static str, priority| {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                let permit = gate.acquire(priority).await.unwrap();
                order.lock().unwrap().push(name);
                drop(permit);
            })
        };
        // Suspect callers hold at most one of the two slots...
        let suspect = waiter("suspect", HashPriority::Suspect);
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        // ...so a normal caller gets the other one at once.
        let good = gate.acquire(HashPriority::Normal).await.unwrap();
        // With both slots taken, the next normal caller is served before the waiting suspect.
        let normal = waiter("normal", HashPriority::Normal);
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(flood);
        normal.await.unwrap();
        drop(good);
        suspect.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["normal", "suspect"]);
        let st = gate.lock();
        assert_eq!(
            (st.free, st.suspect_running),
            (2, 0),
            "every slot came back"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_suspect_callers_and_makes_room_for_normal_ones() {
        let gate = Arc::new(HashGate::new(1, 2));
        let held = gate.acquire(HashPriority::Normal).await.unwrap();
        let s1 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(HashPriority::Suspect).await.map(drop) }
        });
        let s2 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(HashPriority::Suspect).await.map(drop) }
        });
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            gate.acquire(HashPriority::Suspect).await.map(drop),
            Err(GateFull)
        );
        let normal = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(HashPriority::Normal).await.map(drop) }
        });
        // The newest suspect waiter made room for the normal one.
        assert_eq!(s2.await.unwrap(), Err(GateFull));
        drop(held);
        assert_eq!(normal.await.unwrap(), Ok(()));
        assert_eq!(s1.await.unwrap(), Ok(()));
        assert_eq!(gate.lock().free, 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_a_slot() {
        let gate = Arc::new(HashGate::new(1, 4));
        let held = gate.acquire(HashPriority::Normal).await.unwrap();
        let quitter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(HashPriority::Normal).await.map(drop) }
        });
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        quitter.abort();
        let _ = quitter.await;
        drop(held);
        assert_eq!(gate.lock().free, 1);
        let again =
            tokio::time::timeout(Duration::from_secs(5), gate.acquire(HashPriority::Suspect))
                .await
                .unwrap();
        assert!(again.is_ok());
    }

    #[test]
    fn random_secrets_differ_and_carry_their_prefix() {
        let a = random_secret("plt_");
        let b = random_secret("plt_");
        assert_ne!(a, b);
        assert!(a.expose().starts_with("plt_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_eq!(random_password().expose().len(), 20);
    }
}
