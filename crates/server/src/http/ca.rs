//! The certificate authority over HTTP (ADR 0017).
//!
//! - `GET /api/ca`: the active CA certificate for device trust stores, to anybody (it is
//!   public trust material): PEM (`application/x-pem-file`) as the attachment
//!   `porchlight-ca.pem`, or with `?format=der` DER (`application/x-x509-ca-cert`, what
//!   phones install on a tap) as `porchlight-ca.crt`.
//! - `GET /api/ca/info` (admins): the active CA and the retired ones (fingerprint, subject,
//!   validity, origin) and the MQTT TLS listener's certificate ([`api::CaInfo`]).
//! - `POST /api/ca/rotate` (admins): a new CA becomes active, the old one is retired; answers
//!   the info. The TLS listeners take a server certificate from the new CA for their next
//!   handshakes (`cert_renewal`); connected clients stay connected. Audited (`ca_rotated`).
//! - `POST /api/ca/renew` (admins): a new server certificate from the active CA now.
//! - `POST /api/ca/import` (admins): `{"cert_pem", "key_pem"}`, an existing CA becomes
//!   active; what is not a usable CA is a 400 saying why. The key is never answered or logged.
//!   Audited (`ca_imported`); the listeners switch as after a rotation.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use porchlight_api::ca as api;
use porchlight_ca::San;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ApiJson, ApiResult};
use super::views::unix_ms;
use crate::ca::{CaEntry, CaError};
use crate::cert_renewal::Trigger;
use porchlight_store::{AuditEntry, AuditKind};

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Rejected(why) => ApiError::BadRequest(format!("Not a usable CA: {why}")),
            CaError::Store(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// `GET /api/ca[?format=pem|der]`.
pub async fn download(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let mut der = false;
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if key == "format" {
            der = match value.as_ref() {
                "der" => true,
                "pem" => false,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "format must be pem or der, not {other:?}"
                    )));
                }
            };
        }
    }
    let Some(active) = state.ca.authorities().active_certificate().await? else {
        return Err(ApiError::NotFound(
            "There is no certificate authority yet.".into(),
        ));
    };
    if der {
        let der = pem_body(&active.cert_pem)
            .ok_or_else(|| ApiError::Internal("the stored CA certificate is not PEM".into()))?;
        Ok((
            [
                (header::CONTENT_TYPE, "application/x-x509-ca-cert"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"porchlight-ca.crt\"",
                ),
            ],
            der,
        )
            .into_response())
    } else {
        Ok((
            [
                (header::CONTENT_TYPE, "application/x-pem-file"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"porchlight-ca.pem\"",
                ),
            ],
            active.cert_pem,
        )
            .into_response())
    }
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn ca_view(entry: &CaEntry) -> api::CaView {
    api::CaView {
        fingerprint: entry.stored.fingerprint.clone(),
        subject: entry.info.subject.clone(),
        not_before: unix_ms(entry.info.not_before),
        not_after: unix_ms(entry.info.not_after),
        origin: entry.stored.origin.as_str().to_owned(),
        created_at: unix_ms(entry.stored.created_at),
        retired_at: entry.stored.retired_at.map(unix_ms),
    }
}

async fn info_view(state: &AppState) -> ApiResult<api::CaInfo> {
    let entries = state.ca.authorities().list().await?;
    let (active, retired): (Vec<_>, Vec<_>) = entries.iter().partition(|e| e.stored.active);
    let active = active
        .first()
        .map(|e| ca_view(e))
        .ok_or_else(|| ApiError::NotFound("There is no certificate authority yet.".into()))?;
    let mqtt_server = state
        .ca
        .mqtt_server_info()
        .map(|info| api::ServerCertificateView {
            fingerprint: info.fingerprint.clone(),
            names: info
                .sans
                .iter()
                .map(|san| match san {
                    San::Dns(name) => name.clone(),
                    San::Ip(ip) => ip.to_string(),
                })
                .collect(),
            not_after: unix_ms(info.not_after),
        });
    Ok(api::CaInfo {
        active,
        retired: retired.into_iter().map(ca_view).collect(),
        mqtt_server,
    })
}

/// `GET /api/ca/info`.
pub async fn info(State(state): State<AppState>, Admin(_): Admin) -> ApiResult<Json<api::CaInfo>> {
    Ok(Json(info_view(&state).await?))
}

/// `POST /api/ca/rotate`.
pub async fn rotate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Admin(admin): Admin,
) -> ApiResult<Json<api::CaInfo>> {
    let new = state.ca.rotate(SystemTime::now()).await?;
    tracing::info!(by = %admin.username, fingerprint = new.fingerprint(), "certificate authority rotated");
    ca_changed(
        &state,
        peer,
        &admin.username,
        AuditKind::CaRotated,
        new.fingerprint(),
    )
    .await;
    Ok(Json(info_view(&state).await?))
}

/// `POST /api/ca/import`.
pub async fn import(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<api::ImportCa>,
) -> ApiResult<Json<api::CaInfo>> {
    let new = state
        .ca
        .import(&body.cert_pem, &body.key_pem, SystemTime::now())
        .await?;
    tracing::info!(by = %admin.username, fingerprint = new.fingerprint(), "certificate authority imported");
    ca_changed(
        &state,
        peer,
        &admin.username,
        AuditKind::CaImported,
        new.fingerprint(),
    )
    .await;
    Ok(Json(info_view(&state).await?))
}

/// `POST /api/ca/renew`: a new server certificate from the active CA now, for the TLS
/// listeners' next handshakes (connected clients stay connected); answers the info.
pub async fn renew(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> ApiResult<Json<api::CaInfo>> {
    let serial = state
        .renewal
        .renew(Trigger::Requested)
        .await
        .map_err(ApiError::Internal)?;
    tracing::info!(by = %admin.username, ?serial, "server certificate renewal requested");
    Ok(Json(info_view(&state).await?))
}

/// Audits a CA change and has the server certificate reissued from the new CA, so the TLS
/// listeners use it (and the certificate listener trusts the new CA) from the next handshake.
/// The change itself stands even if that fails (logged; the next check retries).
async fn ca_changed(
    state: &AppState,
    peer: SocketAddr,
    by: &str,
    kind: AuditKind,
    fingerprint: &str,
) {
    let reason = match kind {
        AuditKind::CaImported => "certificate authority imported",
        _ => "new certificate authority generated",
    };
    state.audit.record(AuditEntry {
        peer: Some(peer.to_string()),
        username: Some(by.to_owned()),
        code: Some(200),
        detail: Some(format!("fingerprint {fingerprint}")),
        ..AuditEntry::new(SystemTime::now(), kind, reason)
    });
    if let Err(e) = state.renewal.renew(Trigger::CaChanged).await {
        tracing::error!(error = %e, "the TLS listeners keep the previous server certificate");
    }
}
