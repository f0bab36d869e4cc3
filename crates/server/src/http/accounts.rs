//! Account administration over HTTP: users (admin), MQTT devices (owner or admin), API tokens
//! (own), and the audit log (admin). Secrets (generated passwords, device keys, tokens) appear
//! in exactly one response: the one that created them.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use porchlight_api::devices::AddedDevice;
use porchlight_domain::Role;
use porchlight_domain::account::validate_password;
use porchlight_domain::secret::Secret;
use porchlight_store::{AuditFilter, AuditKind, random_password};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Admin, CurrentUser, audit_sign_in, refusal_error, session_cookie};
use super::error::{ApiError, ApiJson, ApiResult};
use super::history::{self, History};
use super::onboarding;
use super::owntracks_keys;
use super::views::{
    ApiTokenView, AuditEntryView, DeviceView, UserView, audit_view, device_view, token_view,
    user_view,
};
use crate::login::LoginRefused;

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
}

pub async fn list_tokens(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<ApiTokenView>>> {
    Ok(Json(
        state
            .store
            .list_api_tokens(user.id)
            .await?
            .iter()
            .map(token_view)
            .collect(),
    ))
}

pub async fn create_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (meta, token) = state
        .store
        .create_api_token(user.id, &req.name, SystemTime::now())
        .await?;
    tracing::info!(username = %user.username, token = %token.masked(), "API token created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token.expose(), "info": token_view(&meta) })),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    state.store.revoke_api_token(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_users(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(
        state
            .store
            .list_users()
            .await?
            .iter()
            .map(user_view)
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    #[serde(default = "default_role")]
    role: Role,
    /// Omitted: a random password is generated and returned once.
    password: Option<String>,
}

fn default_role() -> Role {
    Role::User
}

pub async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let generated = req.password.is_none();
    let password = req
        .password
        .map(Secret::new)
        .unwrap_or_else(random_password);
    let now = SystemTime::now();
    // A generated password is one-time: the UI asks for a new one at the first sign-in.
    let user = if generated {
        state
            .store
            .create_user_with_one_time_password(&req.username, req.role, &password, now)
            .await?
    } else {
        state
            .store
            .create_user(&req.username, req.role, &password, now)
            .await?
    };
    tracing::info!(by = %admin.username, username = %user.username, role = ?user.role, "user created");
    let mut body = json!({ "user": user_view(&user) });
    if generated {
        body["password"] = json!(password.expose());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn remove_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    let (user, _devices) = state.store.remove_user(&username).await?;
    if let Some(broker) = &state.broker {
        broker.disconnect_user(user.id).await;
    }
    // Their grants went with them (a later user of the same name gets none of them).
    state.friends.reload_or_log().await;
    tracing::info!(by = %admin.username, %username, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct NewPassword {
    password: String,
    /// Required when callers change their own password.
    current_password: Option<String>,
}

/// `PUT /api/users/{username}/password`: an admin may set anyone's password, a user only
/// their own, and changing one's own needs the current password (`current_password`; checked
/// like a login, throttled alike). The change ends what the old password opened: the user's
/// web sessions (except the caller's own when they changed their own), their API tokens, and
/// their MQTT sessions that logged in with the password (device-key sessions stay).
pub async fn set_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    CurrentUser(caller): CurrentUser,
    headers: HeaderMap,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<NewPassword>,
) -> ApiResult<StatusCode> {
    let own = caller.username == username;
    if !own && caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    validate_password(&req.password).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = SystemTime::now();
    if own {
        let Some(current) = req.current_password.filter(|p| !p.is_empty()) else {
            return Err(ApiError::BadRequest(
                "To change your own password, give the current one as current_password.".into(),
            ));
        };
        let checked = state
            .logins
            .check_password(peer.ip(), &caller.username, current.as_bytes(), now)
            .await;
        if let Err(refused) = checked {
            let error = match refused {
                LoginRefused::Wrong => ApiError::WrongCurrentPassword,
                other => refusal_error(other),
            };
            let code = match error {
                ApiError::WrongCurrentPassword => Some(403),
                ApiError::Throttled(_) => Some(429),
                _ => None,
            };
            if let Some(code) = code {
                tracing::warn!(%peer, username = %caller.username, "password change refused: current password not accepted");
                let reason = "password change: current password not accepted";
                audit_sign_in(&state, peer, &caller.username, code, reason, now);
            }
            return Err(error);
        }
    }
    let keep = if own { session_cookie(&headers) } else { None };
    let change = state
        .store
        .change_password(&username, &Secret::new(req.password), keep, now)
        .await?;
    let mqtt_disconnected = match &state.broker {
        Some(broker) => broker.disconnect_password_logins(change.user.id).await,
        None => 0,
    };
    tracing::info!(
        by = %caller.username, %username, sessions_ended = change.sessions_ended,
        tokens_revoked = change.tokens_revoked, mqtt_disconnected, "password changed"
    );
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_devices(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let scope = (user.role != Role::Admin).then_some(user.id);
    Ok(Json(
        state
            .store
            .list_devices(scope)
            .await?
            .iter()
            .map(device_view)
            .collect(),
    ))
}

pub use porchlight_api::devices::{NewDevice, OnboardingMode};

/// `POST /api/devices`: a device key, shown once, with everything an OwnTracks app needs to
/// use it: `otrc` (the `.otrc` configuration, ADR 0007), `inline_url`
/// (`owntracks:///config?inline=…`) and `qr_svg` (that URL as an SVG QR code). With
/// `encryption: true`, also a payload encryption key (`encryption_key`, in the `.otrc` as
/// `encryptionKey`; see `owntracks_keys.rs`). `ca_url` when the phone is sent to a listener
/// with the built-in CA's certificate (`onboarding::ca_url`).
pub async fn add_device(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<AddedDevice>)> {
    let owner = req.username.unwrap_or_else(|| caller.username.clone());
    if owner != caller.username && caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let settings = &state.owntracks_settings;
    let mode = match req.mode {
        Some(mode) => mode,
        None if settings.mqtt_port.is_some() => OnboardingMode::Mqtt,
        None => OnboardingMode::Http,
    };
    if mode == OnboardingMode::Mqtt && settings.mqtt_port.is_none() {
        return Err(ApiError::BadRequest(
            "The MQTT broker is disabled; ask for mode http.".into(),
        ));
    }
    let (device, key) = state
        .store
        .add_device(&owner, &req.name, SystemTime::now())
        .await?;
    tracing::info!(by = %caller.username, owner = %owner, device = %device.name, key = %key.masked(), "device added");
    let encryption_key = if req.encryption {
        let passphrase = owntracks_keys::generate_passphrase();
        state
            .store
            .set_owntracks_key(device.user_id, &device.name, &passphrase, SystemTime::now())
            .await?;
        tracing::info!(owner = %owner, device = %device.name, key = %passphrase.masked(), "OwnTracks encryption key set");
        Some(passphrase)
    } else {
        None
    };
    let mut config = onboarding::device_config(
        settings,
        mode,
        request_host(&headers),
        &owner,
        &device.name,
        key.expose(),
    );
    config.encryption_key = encryption_key.as_ref().map(|k| k.expose().to_owned());
    let inline_url = config.inline_url();
    let ca_url = onboarding::ca_url(settings, &config, request_host(&headers));
    Ok((
        StatusCode::CREATED,
        Json(AddedDevice {
            device: device_view(&device),
            mqtt_username: owner,
            mqtt_password: key.expose().to_owned(),
            otrc: config.to_json(),
            qr_svg: onboarding::qr_svg(&inline_url),
            inline_url,
            encryption_key: encryption_key.as_ref().map(|k| k.expose().to_owned()),
            ca_url,
        }),
    ))
}

/// The request's `Host` header, if it is readable.
fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| !h.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveDeviceQuery {
    /// What becomes of the OwnTracks history of the same name: kept (the default) or purged
    /// with the device and its encryption key.
    history: Option<History>,
}

/// Removes a device key and ends its live MQTT session; with `?history=purge` also the
/// OwnTracks device of the same name with all its history (`http/history.rs`).
pub async fn remove_device(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path((username, name)): Path<(String, String)>,
    query: Result<Query<RemoveDeviceQuery>, QueryRejection>,
) -> ApiResult<StatusCode> {
    if username != caller.username && caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let device = state.store.remove_device(&username, &name).await?;
    let kicked = match &state.broker {
        Some(broker) => broker.disconnect_device(device.id).await,
        None => 0,
    };
    let mut points_deleted = 0;
    if q.history == Some(History::Purge)
        && let Some(tracked) = state
            .store
            .find_owntracks_device(device.user_id, &device.name)
            .await?
    {
        points_deleted = history::purge(&state, &tracked).await?;
    }
    tracing::info!(by = %caller.username, %username, device = %name, kicked, history = ?q.history, points_deleted, "device removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
    kind: Option<String>,
    user: Option<String>,
    result: Option<String>,
}

impl AuditQuery {
    /// The store's filter; an unknown kind or result is a 400 naming it. Empty values do
    /// not filter.
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let kind = match given(&self.kind) {
            None => None,
            Some(k) => Some(AuditKind::parse(&k).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown kind {k:?}; one of {}",
                    porchlight_api::account::AUDIT_KINDS.join(", ")
                ))
            })?),
        };
        let succeeded = match given(&self.result).as_deref() {
            None => None,
            Some("ok") => Some(true),
            Some("failed") => Some(false),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown result {other:?}; one of ok, failed"
                )));
            }
        };
        Ok(AuditFilter {
            kind,
            username: given(&self.user),
            succeeded,
        })
    }
}

/// `GET /api/audit`: newest first, filtered by kind, user and result (in SQL), paged with
/// `before` (the last id of the previous page).
pub async fn audit(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntryView>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = q.filter()?;
    let page = state.store.audit_page(limit, q.before, filter).await?;
    Ok(Json(page.into_iter().map(audit_view).collect()))
}

#[cfg(test)]
mod audit_filter_tests {
    use super::*;

    #[test]
    fn the_api_names_every_audit_kind_the_store_knows() {
        let store: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(store, porchlight_api::account::AUDIT_KINDS);
    }

    #[test]
    fn unknown_kinds_and_results_are_refused_and_empty_ones_ignored() {
        let q = |kind: &str, result: &str| AuditQuery {
            limit: None,
            before: None,
            kind: Some(kind.to_owned()),
            user: Some(String::new()),
            result: Some(result.to_owned()),
        };
        assert!(q("nope", "").filter().is_err());
        assert!(q("", "maybe").filter().is_err());
        assert_eq!(q("", "").filter().unwrap(), AuditFilter::default());
        let f = q("http_login", "failed").filter().unwrap();
        assert_eq!(f.kind, Some(AuditKind::HttpLogin));
        assert_eq!(f.succeeded, Some(false));
    }
}
