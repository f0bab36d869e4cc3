//! Reading a certificate back: what the server needs to decide whether a kept server
//! certificate is still right (its issuer, names and expiry), and what the API shows of a CA.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;

use crate::authority::pem_contents;
use crate::{Authority, Error, Result, San, fingerprint};

/// The public facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    /// The subject as a distinguished name (`O=Porchlight, CN=…`).
    pub subject: String,
    pub common_name: String,
    /// Lower-case hex.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The subject alternative names (DNS names and IP addresses; other kinds are skipped).
    pub sans: Vec<San>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// The facts of the first certificate in `cert_pem`.
pub fn inspect(cert_pem: &str) -> Result<CertificateInfo> {
    let der =
        pem_contents(cert_pem, "CERTIFICATE").map_err(|e| Error::BadCertificate(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::BadCertificate(e.to_string()))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| Error::BadCertificate(e.to_string()))?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(San::Dns((*dns).to_owned())),
                    GeneralName::IPAddress(bytes) => ip(bytes).map(San::Ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| Error::BadCertificate(e.to_string()))?
        .is_some_and(|bc| bc.value.ca);
    let validity = cert.validity();
    Ok(CertificateInfo {
        fingerprint: fingerprint(&der),
        subject: cert.subject().to_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned(),
        serial: hex::encode(cert.raw_serial())
            .trim_start_matches('0')
            .to_owned(),
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
        sans,
        is_ca,
    })
}

impl Authority {
    /// The facts of `cert_pem` if this CA signed it; [`Error::BadCertificate`] if it did not
    /// (another CA, altered, or not a certificate).
    pub fn verify_issued(&self, cert_pem: &str) -> Result<CertificateInfo> {
        let der = pem_contents(cert_pem, "CERTIFICATE")
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(self.cert_der())
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| Error::BadCertificate("not signed by this CA".into()))?;
        inspect(cert_pem)
    }
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_certificate_reads_back_with_its_names_and_only_its_ca_claims_it() {
        let now = SystemTime::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        let ca = Authority::generate("Test CA", now, year).unwrap();
        let other = Authority::generate("Other CA", now, year).unwrap();
        let sans = vec![
            San::Dns("localhost".into()),
            San::Ip(IpAddr::from([127, 0, 0, 1])),
            San::Ip("::1".parse().unwrap()),
        ];
        let issued = ca
            .issue_server("porchlight", &sans, now, Duration::from_secs(3600 * 24))
            .unwrap();
        let info = ca.verify_issued(&issued.cert_pem).unwrap();
        assert_eq!(info.sans, sans);
        assert_eq!(info.fingerprint, issued.fingerprint);
        assert_eq!(info.serial, issued.serial);
        assert_eq!(info.common_name, "porchlight");
        assert!(info.subject.contains("CN=porchlight"), "{}", info.subject);
        assert!(!info.is_ca);
        let diff = |a: SystemTime, b: SystemTime| {
            a.duration_since(b)
                .unwrap_or_else(|e| e.duration())
                .as_secs()
        };
        assert!(diff(info.not_after, issued.not_after) <= 1);
        assert!(matches!(
            other.verify_issued(&issued.cert_pem),
            Err(Error::BadCertificate(_))
        ));
        let ca_info = inspect(ca.cert_pem()).unwrap();
        assert!(ca_info.is_ca);
        assert_eq!(ca_info.fingerprint, ca.fingerprint());
        assert!(inspect("garbage").is_err());
    }
}
