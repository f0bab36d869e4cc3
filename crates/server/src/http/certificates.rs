//! Client certificates over HTTP (ADR 0017).
//!
//! - `POST /api/certificates` `{"device"}` (an admin may add `"user"`): a client certificate
//!   from the active CA for that device. The answer ([`api::IssuedCertificate`]) carries the
//!   certificate, its private key and the CA as PEM, and a PKCS#12 file (`<user>-<device>.otrp`,
//!   base64) in the legacy encryption OwnTracks reads, with a random password — shown this
//!   once: the hub keeps only the certificate (serial, fingerprint, whose device, expiry), never
//!   the key. Audited (`certificate_issued`), without key or password.
//! - `GET /api/certificates`: admins see every certificate, users their own; each with its
//!   status (`active`, `revoked`, `expired`) and last MQTT use.
//! - `DELETE /api/certificates/{serial}` (its owner or an admin): revoked; the MQTT
//!   certificate listener refuses it from then on, and its live sessions are closed now.
//!   Audited (`certificate_revoked`).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use base64::Engine;
use porchlight_api::certificates as api;
use porchlight_domain::Role;
use porchlight_store::{AuditEntry, AuditKind, ClientCertificate, User};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiResult};
use super::views::unix_ms;
use crate::ca::CLIENT_VALIDITY;

/// Longest device name in a certificate's subject.
const MAX_DEVICE: usize = 64;
/// Characters in a PKCS#12 password.
const P12_PASSWORD_LEN: usize = 20;

fn view(cert: &ClientCertificate, now: SystemTime) -> api::CertificateView {
    api::CertificateView {
        serial: cert.serial.clone(),
        fingerprint: cert.fingerprint.clone(),
        subject: cert.common_name.clone(),
        user: cert.username.clone(),
        device: cert.device.clone(),
        ca_fingerprint: cert.ca_fingerprint.clone(),
        issued_at: unix_ms(cert.issued_at),
        expires_at: unix_ms(cert.expires_at),
        status: cert.status(now).as_str().to_owned(),
        revoked_at: cert.revoked_at.map(unix_ms),
        last_used_at: cert.last_used_at.map(unix_ms),
    }
}

fn valid_device(device: &str) -> ApiResult<()> {
    if device.is_empty()
        || device.chars().count() > MAX_DEVICE
        || device
            .chars()
            .any(|c| c == '/' || c == '+' || c == '#' || c.is_control())
    {
        return Err(ApiError::BadRequest(format!(
            "A device name is 1 to {MAX_DEVICE} characters, without '/', '+', '#' or control characters."
        )));
    }
    Ok(())
}

/// A file name part: what is not a letter, digit, '-', '_' or '.' becomes '_'.
fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn audit(
    state: &AppState,
    peer: SocketAddr,
    caller: &User,
    kind: AuditKind,
    code: u16,
    cert: &ClientCertificate,
    now: SystemTime,
) {
    let reason = match kind {
        AuditKind::CertificateIssued => "client certificate issued",
        _ => "client certificate revoked",
    };
    state.audit.record(AuditEntry {
        peer: Some(peer.to_string()),
        username: Some(caller.username.clone()),
        code: Some(code),
        detail: Some(format!("{} serial {}", cert.common_name, cert.serial)),
        ..AuditEntry::new(now, kind, reason)
    });
}

/// `POST /api/certificates`.
pub async fn issue(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    CurrentUser(caller): CurrentUser,
    ApiJson(body): ApiJson<api::IssueCertificate>,
) -> ApiResult<(StatusCode, Json<api::IssuedCertificate>)> {
    let user = match body.user {
        Some(user) if user != caller.username => {
            if caller.role != Role::Admin {
                return Err(ApiError::Forbidden);
            }
            user
        }
        _ => caller.username.clone(),
    };
    valid_device(&body.device)?;
    let now = SystemTime::now();
    let (issued, ca, stored) = state
        .ca
        .issue_client(&user, &body.device, now, CLIENT_VALIDITY)
        .await?;
    let password = porchlight_ca::random_password(P12_PASSWORD_LEN)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let p12 = issued
        .to_legacy_pkcs12(ca.cert_der(), &password, &issued.common_name)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(
        by = %caller.username,
        subject = %stored.common_name,
        serial = %stored.serial,
        "client certificate issued"
    );
    audit(
        &state,
        peer,
        &caller,
        AuditKind::CertificateIssued,
        201,
        &stored,
        now,
    );
    let pem_bundle = format!("{}{}{}", issued.cert_pem, &*issued.key_pem, ca.cert_pem());
    Ok((
        StatusCode::CREATED,
        Json(api::IssuedCertificate {
            certificate: view(&stored, now),
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.to_string(),
            ca_pem: ca.cert_pem().to_owned(),
            pem_bundle,
            p12_base64: base64::engine::general_purpose::STANDARD.encode(p12),
            p12_password: password.to_string(),
            p12_filename: format!("{}-{}.otrp", file_part(&user), file_part(&body.device)),
            mqtt_port: state.owntracks_settings.mqtt_cert_port,
        }),
    ))
}

/// `GET /api/certificates`.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
) -> ApiResult<Json<Vec<api::CertificateView>>> {
    let only = (caller.role != Role::Admin).then_some(caller.username.as_str());
    let now = SystemTime::now();
    let certs = state.store.client_certificates(only).await?;
    Ok(Json(certs.iter().map(|c| view(c, now)).collect()))
}

/// `DELETE /api/certificates/{serial}`.
pub async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    CurrentUser(caller): CurrentUser,
    Path(serial): Path<String>,
) -> ApiResult<StatusCode> {
    let cert = state.store.client_certificate(&serial).await?;
    if cert.username != caller.username && caller.role != Role::Admin {
        // Not telling others' serials apart from unknown ones.
        return Err(ApiError::NotFound(format!(
            "certificate {serial:?} not found"
        )));
    }
    let now = SystemTime::now();
    let revoked = state.store.revoke_client_certificate(&serial, now).await?;
    let closed = match &state.broker {
        Some(broker) => broker.disconnect_certificate(&revoked.serial).await,
        None => 0,
    };
    tracing::info!(
        by = %caller.username,
        subject = %revoked.common_name,
        serial = %revoked.serial,
        closed,
        "client certificate revoked"
    );
    audit(
        &state,
        peer,
        &caller,
        AuditKind::CertificateRevoked,
        204,
        &revoked,
        now,
    );
    Ok(StatusCode::NO_CONTENT)
}
