//! A client certificate and its key as PKCS#12 in the *legacy* encryption OwnTracks' Android
//! and iOS apps read (they fail on today's AES/PBKDF2 files): the key bag in
//! pbeWithSHAAnd3-KeyTripleDES-CBC, the certificate bags in pbeWithSHAAnd40BitRC2-CBC, a SHA-1
//! MAC (what `openssl pkcs12 -export -legacy` writes). Made with the `p12` crate.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{Error, Issued, Result};

/// Letters and digits without look-alikes (0/O, 1/l/I), for a password read off a screen.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A random password of `len` characters (about 5.8 bits each).
pub fn random_password(len: usize) -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Invalid("the system's random generator failed".into()))?;
    // 256 is not a multiple of the alphabet's length: a slight bias, harmless at this length.
    Ok(Zeroizing::new(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect(),
    ))
}

impl Issued {
    /// This certificate, its key and `ca_der` (the issuing CA) as a legacy PKCS#12 file
    /// protected by `password`; `name` is the friendly name apps show.
    pub fn to_legacy_pkcs12(&self, ca_der: &[u8], password: &str, name: &str) -> Result<Vec<u8>> {
        let pfx = p12::PFX::new(&self.cert_der, &self.key_der, Some(ca_der), password, name)
            .ok_or_else(|| Error::Invalid("cannot build the PKCS#12 file".into()))?;
        Ok(pfx.to_der())
    }
}
