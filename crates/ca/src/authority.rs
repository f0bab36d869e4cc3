//! One certificate authority and the certificates it issues.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::{Error, MasterKey, Result, fingerprint};

/// Associated data of a sealed CA key: the key opens only beside its own certificate.
fn seal_context(cert_fingerprint: &str) -> Vec<u8> {
    format!("porchlight CA key for {cert_fingerprint}").into_bytes()
}

/// A name a server certificate is valid for. Clients check these, not the common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

/// Who a client certificate identifies: a user's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSubject {
    pub user: String,
    pub device: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedKind {
    Server,
    Client,
}

/// A certificate just issued, with its private key (zeroized when dropped).
pub struct Issued {
    pub kind: IssuedKind,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8, PEM.
    pub key_pem: Zeroizing<String>,
    /// PKCS#8, DER.
    pub key_der: Zeroizing<Vec<u8>>,
    /// Lower-case hex, as `openssl x509 -serial` prints it (without leading zeros' padding).
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    /// The subject's common name.
    pub common_name: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("kind", &self.kind)
            .field("serial", &self.serial)
            .field("common_name", &self.common_name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A certificate authority: its certificate and its signing key.
pub struct Authority {
    cert_der: Vec<u8>,
    cert_pem: String,
    key: KeyPair,
    common_name: String,
    not_before: SystemTime,
    not_after: SystemTime,
    fingerprint: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("common_name", &self.common_name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA: EC P-256 key, ECDSA with SHA-256, valid from an hour before `now` (clocks
    /// differ) for `validity`, basicConstraints CA (no intermediates), may sign certificates
    /// and CRLs only.
    pub fn generate(common_name: &str, now: SystemTime, validity: Duration) -> Result<Authority> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        let (not_before, not_after) = window(now, validity)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        Authority::from_parts(cert.der().to_vec(), key)
    }

    /// An existing CA from its PEM certificate and PEM private key (PKCS#8, or SEC1 for EC
    /// keys). Refused unless the certificate is a CA certificate valid at `now` and the key is
    /// its key.
    pub fn import(cert_pem: &str, key_pem: &str, now: SystemTime) -> Result<Authority> {
        let cert_der = pem_contents(cert_pem, "CERTIFICATE")
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::BadKey(e.to_string()))?;
        let authority = Authority::from_parts(cert_der, key)?;
        if now < authority.not_before || now >= authority.not_after {
            return Err(Error::OutsideValidity);
        }
        Ok(authority)
    }

    /// A CA kept as its PEM certificate and its key sealed by [`Authority::sealed_key`].
    pub fn open(cert_pem: &str, sealed_key: &[u8], master: &MasterKey) -> Result<Authority> {
        let cert_der = pem_contents(cert_pem, "CERTIFICATE")
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        let key_der = master.open(sealed_key, &seal_context(&fingerprint(&cert_der)))?;
        let key =
            KeyPair::try_from(key_der.as_slice()).map_err(|e| Error::BadKey(e.to_string()))?;
        Authority::from_parts(cert_der, key)
    }

    /// The CA's private key sealed under `master`, bound to this certificate.
    pub fn sealed_key(&self, master: &MasterKey) -> Result<Vec<u8>> {
        let der = Zeroizing::new(self.key.serialize_der());
        Ok(master.seal(&der, &seal_context(&self.fingerprint))?)
    }

    fn from_parts(cert_der: Vec<u8>, key: KeyPair) -> Result<Authority> {
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| Error::BadCertificate(e.to_string()))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| Error::BadCertificate(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(Error::NotACa);
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::KeyMismatch);
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let validity = cert.validity();
        let not_before = to_system_time(validity.not_before.to_datetime());
        let not_after = to_system_time(validity.not_after.to_datetime());
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Ok(Authority {
            fingerprint: fingerprint(&cert_der),
            cert_der,
            cert_pem,
            key,
            common_name,
            not_before,
            not_after,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the DER certificate, lower-case hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// A server certificate for `sans` (at least one), valid for `validity` from `now` but
    /// never beyond the CA's own expiry.
    pub fn issue_server(
        &self,
        common_name: &str,
        sans: &[San],
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued> {
        if sans.is_empty() {
            return Err(Error::Invalid(
                "a server certificate needs at least one name (SAN)".into(),
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = sans
            .iter()
            .map(|san| match san {
                San::Dns(host) => host
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| Error::Invalid(format!("not a DNS name: {host:?}"))),
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(IssuedKind::Server, params, common_name, now, validity)
    }

    /// A client certificate for one device of one user, valid for `validity` from `now` but
    /// never beyond the CA's own expiry. The subject is `CN=<user>/<device>` plus the
    /// certificate's serial number (`serialNumber`), so no two certificates share a subject.
    pub fn issue_client(
        &self,
        who: &ClientSubject,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued> {
        if who.user.is_empty() || who.device.is_empty() || who.user.contains('/') {
            return Err(Error::Invalid(
                "a client certificate needs a user name (without '/') and a device name".into(),
            ));
        }
        let common_name = format!("{}/{}", who.user, who.device);
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(IssuedKind::Client, params, &common_name, now, validity)
    }

    fn issue(
        &self,
        kind: IssuedKind,
        mut params: CertificateParams,
        common_name: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued> {
        if now >= self.not_after {
            return Err(Error::OutsideValidity);
        }
        let serial = random_serial()?;
        let serial_hex = hex::encode(serial.as_ref());
        if kind == IssuedKind::Client {
            // X.520 serialNumber (2.5.4.5): makes each subject unique.
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial_hex.as_str());
        }
        params.serial_number = Some(serial);
        let (not_before, not_after) = window(now, validity)?;
        params.not_before = not_before;
        params.not_after = not_after.min(to_offset(self.not_after)?);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        let cert_der = cert.der().to_vec();
        Ok(Issued {
            kind,
            cert_pem: cert.pem(),
            fingerprint: fingerprint(&cert_der),
            cert_der,
            key_pem: Zeroizing::new(key.serialize_pem()),
            key_der: Zeroizing::new(key.serialize_der()),
            serial: serial_hex.trim_start_matches('0').to_owned(),
            common_name: common_name.to_owned(),
            not_before: to_system_time(params.not_before),
            not_after: to_system_time(params.not_after),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Porchlight");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 16 random bytes, the first one's top bit cleared: a positive serial of up to 127 bits.
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Invalid("the system's random generator failed".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Valid from an hour before `now` (a phone's clock may lag) for `validity`.
fn window(now: SystemTime, validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let start = now
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = now
        .checked_add(validity)
        .ok_or_else(|| Error::Invalid("validity too long".into()))?;
    Ok((to_offset(start)?, to_offset(end)?))
}

fn to_offset(t: SystemTime) -> Result<OffsetDateTime> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::Invalid("a time before 1970".into()))?
        .as_secs();
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .map_err(|e| Error::Invalid(format!("time out of range: {e}")))
}

fn to_system_time(t: OffsetDateTime) -> SystemTime {
    let secs = t.unix_timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    }
}

/// The DER inside the first PEM block labelled `label`.
pub(crate) fn pem_contents(text: &str, label: &str) -> std::result::Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no {begin} block"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no {end} line"))?
        + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    BASE64
        .decode(body)
        .map_err(|e| format!("the PEM body is not base64: {e}"))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
