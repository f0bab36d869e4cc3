//! Simple [`PinVerifier`]s beside the stored codes ([`super::codes::PinCheck`], the
//! default): [`NoPins`] (no codes exist: every PIN is wrong), and [`FixedPins`], a fixed list
//! of argon2id PIN hashes made with the PIN profile (t=1, m=8 MiB, p=2), for tests and the
//! bench. Neither rate limits nor locks out: that is the stored codes' verifier's job.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use async_trait::async_trait;
use porchlight_domain::alarm::{Pin, Via};

use super::service::{CodeHolder, PinRefusal, PinVerifier};

/// The PIN profile: a PIN's keyspace is tiny, so cost buys only latency (issue 13).
const PIN_T_COST: u32 = 1;
const PIN_M_COST_KIB: u32 = 8 * 1024;
const PIN_P_COST: u32 = 2;

/// An argon2id PHC string of `pin` under the PIN profile. CPU-bound (a few ms).
pub fn hash_pin(pin: &Pin) -> Result<String, String> {
    let params =
        Params::new(PIN_M_COST_KIB, PIN_T_COST, PIN_P_COST, None).map_err(|e| e.to_string())?;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(pin.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// No codes exist: every PIN is refused as wrong.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPins;

#[async_trait]
impl PinVerifier for NoPins {
    async fn verify(
        &self,
        _pin: &Pin,
        _via: Via,
        _peer: Option<IpAddr>,
        _now: SystemTime,
    ) -> Result<CodeHolder, PinRefusal> {
        Err(PinRefusal::wrong())
    }
}

/// One code of a [`FixedPins`].
#[derive(Clone)]
pub struct FixedCode {
    pub username: String,
    /// The PIN's argon2id PHC string ([`hash_pin`]).
    pub phc: String,
    pub may_arm: bool,
    pub may_disarm: bool,
    pub duress: bool,
}

impl std::fmt::Debug for FixedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedCode")
            .field("username", &self.username)
            .field("duress", &self.duress)
            .finish_non_exhaustive()
    }
}

impl FixedCode {
    /// A code for `username` that may arm and disarm (hashes `pin`: CPU-bound).
    pub fn new(username: &str, pin: &str, duress: bool) -> Result<FixedCode, String> {
        let pin = Pin::new(pin).map_err(|e| e.to_string())?;
        Ok(FixedCode {
            username: username.to_owned(),
            phc: hash_pin(&pin)?,
            may_arm: true,
            may_disarm: true,
            duress,
        })
    }
}

/// A verifier over a fixed list of codes; each attempt checks every hash (on a blocking
/// thread), so it is for a handful of codes.
#[derive(Debug, Clone)]
pub struct FixedPins {
    codes: Arc<Vec<FixedCode>>,
}

impl FixedPins {
    pub fn new(codes: Vec<FixedCode>) -> FixedPins {
        FixedPins {
            codes: Arc::new(codes),
        }
    }
}

#[async_trait]
impl PinVerifier for FixedPins {
    async fn verify(
        &self,
        pin: &Pin,
        _via: Via,
        _peer: Option<IpAddr>,
        _now: SystemTime,
    ) -> Result<CodeHolder, PinRefusal> {
        let codes = self.codes.clone();
        let pin = pin.clone();
        let found = tokio::task::spawn_blocking(move || {
            codes
                .iter()
                .find(|c| porchlight_store::verify_password(pin.expose().as_bytes(), &c.phc))
                .cloned()
        })
        .await
        .map_err(|_| PinRefusal::wrong())?;
        match found {
            Some(c) => Ok(CodeHolder {
                username: c.username,
                may_arm: c.may_arm,
                may_disarm: c.may_disarm,
                duress: c.duress,
            }),
            None => Err(PinRefusal::wrong()),
        }
    }
}
