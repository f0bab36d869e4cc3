//! OwnTracks payload encryption: libsodium `crypto_secretbox_easy` (XSalsa20-Poly1305), as
//! the OwnTracks apps and the Recorder do it (booklet, "Payload encryption").
//!
//! - The key is the user's passphrase, its UTF-8 bytes copied into a 32-byte buffer: padded with
//!   zero bytes when shorter, cut at 32 bytes when longer (the Android app's
//!   `toByteArray().copyOf(32)`; the booklet: "pad with binary zeroes").
//! - `data` is the standard base64 of `nonce (24 bytes) ‖ MAC (16 bytes) ‖ ciphertext`, the
//!   layout of `crypto_secretbox_easy` with the nonce in front.
//!
//! Pure: encrypting takes the nonce as a parameter (the caller draws it from a CSPRNG), so this
//! module never touches a random source. Decrypting never panics on any input.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use thiserror::Error;

/// Key length of `crypto_secretbox` (and the longest passphrase that counts).
pub const KEY_BYTES: usize = 32;
/// Nonce length of XSalsa20.
pub const NONCE_BYTES: usize = 24;
/// Poly1305 tag length.
pub const MAC_BYTES: usize = 16;

/// Standard alphabet; padding optional when decoding, since some clients strip it.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an `encrypted` payload could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("the encryption passphrase is empty")]
    EmptyPassphrase,
    #[error("`data` is not valid base64: {0}")]
    BadBase64(String),
    #[error("`data` holds {len} bytes, fewer than the {min} of a nonce and a MAC")]
    TooShort { len: usize, min: usize },
    #[error("decryption failed: wrong key, or the data was altered")]
    WrongKeyOrTampered,
    #[error("encryption failed")]
    EncryptFailed,
}

/// A `crypto_secretbox` key derived from an OwnTracks passphrase. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_BYTES]);

impl SecretKey {
    /// The key the OwnTracks apps derive from `passphrase` (zero-padded or cut to 32 bytes).
    pub fn from_passphrase(passphrase: &str) -> Result<SecretKey, CryptoError> {
        if passphrase.is_empty() {
            return Err(CryptoError::EmptyPassphrase);
        }
        let mut key = [0u8; KEY_BYTES];
        let bytes = passphrase.as_bytes();
        let len = bytes.len().min(KEY_BYTES);
        key[..len].copy_from_slice(&bytes[..len]);
        Ok(SecretKey(key))
    }

    fn cipher(&self) -> XSalsa20Poly1305 {
        XSalsa20Poly1305::new(&self.0.into())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(****)")
    }
}

/// Opens the `data` of an `encrypted` payload: returns the inner JSON bytes.
pub fn decrypt(data: &str, key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
    let bytes = decode_data(data)?;
    let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| CryptoError::WrongKeyOrTampered)
}

/// Decodes `data` and checks it is long enough to hold a nonce and a MAC: what can be checked
/// without the key (the parser does, so a malformed `encrypted` payload is rejected as such
/// even for a device without a key).
pub fn decode_data(data: &str) -> Result<Vec<u8>, CryptoError> {
    // Line breaks or spaces may come from clients that wrap base64 (MIME style).
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = LENIENT
        .decode(compact.as_bytes())
        .map_err(|e| CryptoError::BadBase64(e.to_string()))?;
    let min = NONCE_BYTES + MAC_BYTES;
    if bytes.len() < min {
        return Err(CryptoError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    Ok(bytes)
}

/// Seals `plaintext` as an OwnTracks app would: the base64 `data` of an `encrypted` payload.
/// `nonce` must be fresh random bytes for every message (never reuse one with the same key).
pub fn encrypt(
    plaintext: &[u8],
    key: &SecretKey,
    nonce: [u8; NONCE_BYTES],
) -> Result<String, CryptoError> {
    let sealed = key
        .cipher()
        .encrypt(&nonce.into(), plaintext)
        .map_err(|_| CryptoError::EncryptFailed)?;
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(STANDARD.encode(out))
}

/// The whole `{"_type":"encrypted","data":…}` payload for `plaintext` (e.g. a command to a
/// phone that has encryption on).
pub fn encrypted_payload(
    plaintext: &[u8],
    key: &SecretKey,
    nonce: [u8; NONCE_BYTES],
) -> Result<String, CryptoError> {
    let data = encrypt(plaintext, key, nonce)?;
    Ok(serde_json::json!({ "_type": "encrypted", "data": data }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCATION: &[u8] =
        br#"{"_type":"location","lat":52.3676,"lon":4.9041,"tst":1764000000,"tid":"al"}"#;

    /// Produced with the system libsodium (`crypto_secretbox_easy` through ctypes), with the
    /// OwnTracks key rule and nonce bytes 0..24, so it checks us against the C library the
    /// apps use, not against ourselves.
    const LIBSODIUM_VECTOR: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX/DOdEtYkZJdeneDrmDN0AN8X6ZwUGAIHI7mBMXOpg7XfhE5Y298IflBl0uppkalmKComp/c8jaceNlh3XJUMwfnK1xrMqymEQpSy28Q4bWJ8JGi4aDwYv0uXaQ==";
    /// Same, with a 47-byte passphrase (cut to 32) and nonce bytes all 7.
    const LIBSODIUM_VECTOR_LONG_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHPKik8uHxHK5/Fy+NEPq9B39Nrfw2KvkQs11+Yw9J7o9LTTSOy1BjRUuTbmAbTaqKkHQ5Eb5kRXX5f+Ru1BVlpBWzHKq8XxMnqo+VVVRGGXtfZUX17tF1G5V3Rw==";

    fn key(passphrase: &str) -> SecretKey {
        SecretKey::from_passphrase(passphrase).unwrap()
    }

    fn counting_nonce() -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        for (i, b) in nonce.iter_mut().enumerate() {
            *b = i as u8;
        }
        nonce
    }

    #[test]
    fn decrypts_a_libsodium_vector() {
        let plain = decrypt(LIBSODIUM_VECTOR, &key("correct horse battery staple")).unwrap();
        assert_eq!(plain, LOCATION);
    }

    #[test]
    fn encrypts_exactly_as_libsodium() {
        let data = encrypt(
            LOCATION,
            &key("correct horse battery staple"),
            counting_nonce(),
        );
        assert_eq!(data.unwrap(), LIBSODIUM_VECTOR);
    }

    #[test]
    fn long_passphrases_are_cut_to_32_bytes() {
        let long = "this passphrase is longer than thirty-two bytes";
        assert_eq!(
            decrypt(LIBSODIUM_VECTOR_LONG_KEY, &key(long)).unwrap(),
            LOCATION
        );
        // Only the first 32 bytes count.
        assert_eq!(key(long).0, key(&long[..32]).0);
        assert_eq!(
            decrypt(LIBSODIUM_VECTOR_LONG_KEY, &key(&long[..32])).unwrap(),
            LOCATION
        );
    }

    #[test]
    fn short_passphrases_are_zero_padded() {
        let SecretKey(bytes) = key("abc");
        assert_eq!(&bytes[..3], b"abc");
        assert!(bytes[3..].iter().all(|b| *b == 0));
    }

    #[test]
    fn round_trip_with_any_nonce() {
        let k = key("s3cret");
        for fill in [0u8, 1, 0xff] {
            let data = encrypt(b"{}", &k, [fill; NONCE_BYTES]).unwrap();
            assert_eq!(decrypt(&data, &k).unwrap(), b"{}");
        }
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        assert_eq!(
            decrypt(LIBSODIUM_VECTOR, &key("not the passphrase")),
            Err(CryptoError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let k = key("s3cret");
        let data = encrypt(LOCATION, &k, counting_nonce()).unwrap();
        let mut raw = STANDARD.decode(&data).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            decrypt(&STANDARD.encode(raw), &k),
            Err(CryptoError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn bad_base64_and_short_data_are_clear_errors() {
        let k = key("s3cret");
        assert!(matches!(
            decrypt("not-base64!!", &k),
            Err(CryptoError::BadBase64(_))
        ));
        assert_eq!(
            decrypt(&STANDARD.encode([0u8; 39]), &k),
            Err(CryptoError::TooShort { len: 39, min: 40 })
        );
        assert_eq!(
            decrypt("", &k),
            Err(CryptoError::TooShort { len: 0, min: 40 })
        );
    }

    #[test]
    fn wrapped_or_unpadded_base64_is_accepted() {
        let k = key("correct horse battery staple");
        let wrapped = format!("{}\n{}", &LIBSODIUM_VECTOR[..76], &LIBSODIUM_VECTOR[76..]);
        assert_eq!(decrypt(&wrapped, &k).unwrap(), LOCATION);
        let unpadded = LIBSODIUM_VECTOR.trim_end_matches('=');
        assert_eq!(decrypt(unpadded, &k).unwrap(), LOCATION);
    }

    #[test]
    fn empty_passphrase_is_refused() {
        assert!(matches!(
            SecretKey::from_passphrase(""),
            Err(CryptoError::EmptyPassphrase)
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key("hunter2hunter2")), "SecretKey(****)");
    }

    #[test]
    fn encrypted_payload_is_an_encrypted_message() {
        let k = key("s3cret");
        let text = encrypted_payload(LOCATION, &k, counting_nonce()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["_type"], "encrypted");
        let data = value["data"].as_str().unwrap();
        assert_eq!(decrypt(data, &k).unwrap(), LOCATION);
    }
}
