//! Client certificates from our CA (`/api/certificates`, ADR 0017): one per device, for MQTT
//! logins on the certificate listener without a password.

use serde::{Deserialize, Serialize};

/// `POST /api/certificates`: a certificate for the caller's device `device`; an admin may name
/// another `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCertificate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub device: String,
}

/// The answer of `POST /api/certificates`: the certificate, its private key and the CA, shown
/// this once (the key is not kept by the hub).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub certificate: CertificateView,
    pub cert_pem: String,
    /// PKCS#8, PEM.
    pub key_pem: String,
    /// The issuing CA's certificate.
    pub ca_pem: String,
    /// Certificate, key and CA in one PEM file.
    pub pem_bundle: String,
    /// PKCS#12 in the legacy encryption OwnTracks reads (key: PBE-SHA1-3DES, certificates:
    /// PBE-SHA1-RC2-40, SHA-1 MAC), base64.
    pub p12_base64: String,
    /// The PKCS#12 file's password (random).
    pub p12_password: String,
    /// `<user>-<device>.otrp`, the name OwnTracks on iOS opens.
    pub p12_filename: String,
    /// The port where this certificate logs in (MQTT over TLS, no password): the certificate
    /// listener's, `None` when it is off.
    #[serde(default)]
    pub mqtt_port: Option<u16>,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("certificate", &self.certificate)
            .field("p12_filename", &self.p12_filename)
            .finish_non_exhaustive()
    }
}

/// One client certificate (`GET /api/certificates`: admins see all, users their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// Lower-case hex, as `openssl x509 -serial` prints it (without leading zeros).
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    /// The subject's common name, `<user>/<device>`.
    pub subject: String,
    pub user: String,
    pub device: String,
    /// The issuing CA's fingerprint.
    pub ca_fingerprint: String,
    /// Unix ms.
    pub issued_at: i64,
    /// Unix ms.
    pub expires_at: i64,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    /// Unix ms.
    pub revoked_at: Option<i64>,
    /// Unix ms: the last MQTT login with it.
    pub last_used_at: Option<i64>,
}
