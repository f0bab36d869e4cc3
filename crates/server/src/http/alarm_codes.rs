//! Alarm PIN codes over HTTP.
//!
//! - `GET /api/alarm/codes`: the caller's codes; an admin gets everyone's, or one user's with
//!   `?user=<name>` (a non-admin asking for someone else: 403).
//! - `POST /api/alarm/codes` with `{"label", "pin", "arm", "disarm", "duress", "enabled",
//!   "valid_from", "valid_until", "user"}`: a new code (201); `user` (admin only) for someone
//!   else. `arm`/`disarm`/`enabled` default to true, `duress` to false; the window sides are
//!   Unix milliseconds or null.
//! - `PATCH /api/alarm/codes/{id}`: any of those fields, `pin` included; `null` clears a window
//!   side.
//! - `DELETE /api/alarm/codes/{id}`: 204.
//!
//! The PIN is never answered or logged. A bad field is a 400 naming the field; a PIN another
//! code holds is a 409 that names nobody (and repeated ones lock the caller out for a while,
//! 429, so the rule cannot be used to find others' PINs); someone else's code is a 404 to a
//! non-admin.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use porchlight_domain::Role;
use porchlight_domain::pin::{check_label, check_pin, check_window};
use porchlight_domain::secret::Secret;
use porchlight_store::{AlarmCode, AlarmCodeChange, NewAlarmCode, User};
use serde::{Deserialize, Deserializer};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiResult};
use super::views::unix_ms;
use crate::alarm::codes::CodeWriteError;

/// A code as answers show it: never the PIN or its hash.
fn code_view(code: &AlarmCode) -> porchlight_api::alarm::Code {
    porchlight_api::alarm::Code {
        id: code.id,
        user: code.username.clone(),
        label: code.label.clone(),
        arm: code.may_arm,
        disarm: code.may_disarm,
        duress: code.duress,
        enabled: code.enabled,
        valid_from: code.valid_from.map(unix_ms),
        valid_until: code.valid_until.map(unix_ms),
        created_at: unix_ms(code.created_at),
        updated_at: unix_ms(code.updated_at),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    user: Option<String>,
}

/// `GET /api/alarm/codes`.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<porchlight_api::alarm::Code>>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let scope = match q.user {
        Some(name) if name == caller.username => Some(caller.id),
        Some(_) if caller.role != Role::Admin => return Err(ApiError::Forbidden),
        Some(name) => Some(state.store.find_user(&name).await?.id),
        None if caller.role == Role::Admin => None,
        None => Some(caller.id),
    };
    let codes = state.store.alarm_codes(scope).await?;
    Ok(Json(codes.iter().map(code_view).collect()))
}

/// The body of a `POST`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCode {
    label: String,
    pin: String,
    #[serde(default = "yes")]
    arm: bool,
    #[serde(default = "yes")]
    disarm: bool,
    #[serde(default)]
    duress: bool,
    #[serde(default = "yes")]
    enabled: bool,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    /// Whose code (admins only); the caller's by default.
    user: Option<String>,
}

fn yes() -> bool {
    true
}

/// The body of a `PATCH`: absent fields stay as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeCode {
    label: Option<String>,
    pin: Option<String>,
    arm: Option<bool>,
    disarm: Option<bool>,
    duress: Option<bool>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    valid_from: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    valid_until: Option<Option<i64>>,
}

/// A field that is present (`null` included) is `Some`; an absent one stays `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

fn field(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{name}: {e}"))
}

fn time(name: &str, ms: Option<i64>) -> ApiResult<Option<SystemTime>> {
    ms.map(|ms| {
        u64::try_from(ms)
            .ok()
            .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
            .ok_or_else(|| field(name, "a time is Unix milliseconds, 0 or more"))
    })
    .transpose()
}

fn pin(value: String) -> ApiResult<Secret> {
    check_pin(&value).map_err(|e| field("pin", e))?;
    Ok(Secret::new(value))
}

fn write_error(e: CodeWriteError) -> ApiError {
    match e {
        CodeWriteError::LockedOut(wait) => ApiError::TooManyTakenPins(wait.as_secs().max(1)),
        CodeWriteError::Store(porchlight_store::Error::PinTaken) => ApiError::Conflict(
            "pin: this PIN is already in use by another code; choose another.".into(),
        ),
        CodeWriteError::Store(porchlight_store::Error::BadInput(m)) => ApiError::BadRequest(m),
        CodeWriteError::Store(e) => e.into(),
    }
}

/// `POST /api/alarm/codes`.
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    ApiJson(req): ApiJson<CreateCode>,
) -> ApiResult<(StatusCode, Json<porchlight_api::alarm::Code>)> {
    let owner = match req.user {
        Some(name) if name != caller.username => {
            if caller.role != Role::Admin {
                return Err(ApiError::Forbidden);
            }
            state.store.find_user(&name).await?
        }
        _ => caller.clone(),
    };
    let label = check_label(&req.label).map_err(|e| field("label", e))?;
    let pin = pin(req.pin)?;
    let valid_from = time("valid_from", req.valid_from)?;
    let valid_until = time("valid_until", req.valid_until)?;
    check_window(valid_from, valid_until).map_err(|e| field("valid_until", e))?;
    let new = NewAlarmCode {
        label,
        pin,
        may_arm: req.arm,
        may_disarm: req.disarm,
        duress: req.duress,
        enabled: req.enabled,
        valid_from,
        valid_until,
    };
    let code = state
        .pins
        .add_code(&caller.username, owner.id, new, SystemTime::now())
        .await
        .map_err(write_error)?;
    tracing::info!(by = %caller.username, user = %code.username, code_id = code.id, "alarm code added");
    Ok((StatusCode::CREATED, Json(code_view(&code))))
}

/// The code `id` if the caller may manage it: their own, or any for an admin; 404 otherwise
/// (someone else's code is not found, as a missing one).
async fn managed_code(state: &AppState, caller: &User, id: i64) -> ApiResult<AlarmCode> {
    match state.store.alarm_code(id).await? {
        Some(code) if code.user_id == caller.id || caller.role == Role::Admin => Ok(code),
        _ => Err(ApiError::NotFound(format!("alarm code {id} not found"))),
    }
}

/// `PATCH /api/alarm/codes/{id}`.
pub async fn update(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<ChangeCode>,
) -> ApiResult<Json<porchlight_api::alarm::Code>> {
    let old = managed_code(&state, &caller, id).await?;
    let label = req
        .label
        .as_deref()
        .map(check_label)
        .transpose()
        .map_err(|e| field("label", e))?;
    let pin = req.pin.map(pin).transpose()?;
    let valid_from = req.valid_from.map(|t| time("valid_from", t)).transpose()?;
    let valid_until = req
        .valid_until
        .map(|t| time("valid_until", t))
        .transpose()?;
    check_window(
        valid_from.unwrap_or(old.valid_from),
        valid_until.unwrap_or(old.valid_until),
    )
    .map_err(|e| field("valid_until", e))?;
    let change = AlarmCodeChange {
        label,
        pin,
        may_arm: req.arm,
        may_disarm: req.disarm,
        duress: req.duress,
        enabled: req.enabled,
        valid_from,
        valid_until,
    };
    let code = state
        .pins
        .update_code(&caller.username, id, change, SystemTime::now())
        .await
        .map_err(write_error)?;
    tracing::info!(by = %caller.username, user = %code.username, code_id = code.id, "alarm code changed");
    Ok(Json(code_view(&code)))
}

/// `DELETE /api/alarm/codes/{id}`.
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let code = managed_code(&state, &caller, id).await?;
    if !state.store.remove_alarm_code(id).await? {
        return Err(ApiError::NotFound(format!("alarm code {id} not found")));
    }
    tracing::info!(by = %caller.username, user = %code.username, code_id = id, "alarm code removed");
    Ok(StatusCode::NO_CONTENT)
}
