//! Porchlight's certificate authority (ADR 0017).
//!
//! - [`Authority`]: one CA — generated here (EC P-256, ECDSA with SHA-256) or imported from a
//!   PEM certificate and key — that issues server certificates (for the MQTT and HTTPS
//!   listeners, SANs for every name clients use) and client certificates (one per device, a
//!   unique subject and a random serial each).
//! - [`MasterKey`] and [`seal`]: the CA's private key is never written in clear. It is sealed
//!   with ChaCha20-Poly1305 under a 256-bit key kept in a file of its own (mode 0600), bound to
//!   its certificate (the certificate's fingerprint is the associated data, so a sealed key
//!   moved beside another certificate does not open).
//!
//! - [`Issued::to_legacy_pkcs12`]: a client certificate as the PKCS#12 file OwnTracks reads
//!   (legacy 3DES/RC2-40 encryption, SHA-1 MAC), password from [`random_password`].
//! - [`inspect`] and [`Authority::verify_issued`]: a certificate read back (names, expiry,
//!   issuer), to decide whether a kept server certificate must be reissued.
//!
//! No I/O besides [`MasterKey::load_or_create`]; where certificates and sealed keys are kept
//! is the server's business. Private keys in memory are zeroized when dropped.

mod authority;
mod inspect;
mod pkcs12;
mod seal;

pub use authority::{Authority, ClientSubject, Issued, IssuedKind, San};
pub use inspect::{CertificateInfo, inspect};
pub use pkcs12::random_password;
pub use seal::{MasterKey, SealError};

/// Why the CA could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the certificate: {0}")]
    Build(#[from] rcgen::Error),
    #[error("the certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("the private key does not parse (expected a PKCS#8 or SEC1 EC key in PEM): {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotACa,
    #[error("the CA certificate has expired or is not valid yet")]
    OutsideValidity,
    #[error("the CA key is sealed and cannot be opened: {0}")]
    Seal(#[from] SealError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SHA-256 of DER bytes, lower-case hex: how certificates are named in logs and the store.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}

#[cfg(test)]
mod tests;
