//! Password hashing and random secrets.
//!
//! Passwords are argon2id PHC strings; verification reads the parameters from the stored
//! string, so the cost can be raised later without a migration. Random secrets (session
//! cookies, API tokens, device keys) carry 256 bits of entropy, so a plain SHA-256 of them is
//! enough to store and lets them be looked up by hash in one indexed query.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use porchlight_domain::secret::Secret;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

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
