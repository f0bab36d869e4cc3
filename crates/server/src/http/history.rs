//! Deleting OwnTracks history over HTTP, and each user's retention setting.
//!
//! - `DELETE /api/owntracks/devices/{id}/locations?tst=<unix seconds>`: one point (its `tst`,
//!   the phone's own key); or `?from=&to=` (Unix milliseconds, `from` inclusive, `to`
//!   exclusive, as `/track`; at least one of them, a missing one is open-ended): a range.
//!   Answers `{"deleted": n}`.
//! - `DELETE /api/owntracks/devices/{id}?history=keep|purge` (the choice is required): the
//!   device's MQTT key of the same name, if any, is revoked and its live session closed;
//!   `keep` leaves its history listed and viewable (Recorder API, `/track`) under its name,
//!   `purge` deletes the device with all its history and its encryption key.
//!   `DELETE /api/devices/{username}/{name}?history=purge` is the same from the key's side
//!   (`http/accounts.rs`; `keep` is its default).
//! - `GET`/`PUT /api/users/{username}/location-retention`:
//!   `{"location_retention_days": n | null}` (null: keep forever). The retention service
//!   (`owntracks/retention.rs`) deletes older points in the background.
//!
//! Who may: the owner or an admin; a device the caller may not see is 404, one they may see
//! but not manage (a friend's) 403; another user's setting 403. A device that keeps
//! publishing after it was purged appears again with its next message.

use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use porchlight_store::{OwnTracksDevice, User};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiResult};
use super::owntracks_keys::{owned_device, owner_by_name};
use super::views::ceil_secs;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsQuery {
    /// One point: its `tst` in Unix seconds.
    tst: Option<i64>,
    /// A range: Unix milliseconds, inclusive.
    from: Option<i64>,
    /// A range: Unix milliseconds, exclusive.
    to: Option<i64>,
}

/// `DELETE /api/owntracks/devices/{id}/locations`.
pub async fn delete_points(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
    query: Result<Query<PointsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let device = owned_device(&state, &caller, id).await?;
    let deleted = match (q.tst, q.from, q.to) {
        (Some(tst), None, None) => {
            if !state.store.delete_location(device.id, tst).await? {
                return Err(ApiError::NotFound(format!(
                    "No location with tst {tst} for this device."
                )));
            }
            1
        }
        (None, from, to) if from.is_some() || to.is_some() => {
            let from = from.map_or(i64::MIN, ceil_secs);
            let to = to.map_or(i64::MAX, ceil_secs);
            if from > to {
                return Err(ApiError::BadRequest("from is after to.".into()));
            }
            state.store.delete_points(device.id, from..to).await?
        }
        _ => {
            return Err(ApiError::BadRequest(
                "Name one point with tst (Unix seconds), or a range with from and/or to (Unix milliseconds)."
                    .into(),
            ));
        }
    };
    tracing::info!(
        by = %caller.username, owner = %device.username, device = %device.name, deleted,
        "OwnTracks locations deleted"
    );
    Ok(Json(json!({ "device_id": device.id, "deleted": deleted })))
}

/// What to do with a deleted device's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    Keep,
    Purge,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteDeviceQuery {
    history: Option<History>,
}

/// `DELETE /api/owntracks/devices/{id}?history=keep|purge`.
pub async fn delete_device(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
    query: Result<Query<DeleteDeviceQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some(history) = q.history else {
        return Err(ApiError::BadRequest(
            "Say what becomes of its history: history=keep or history=purge.".into(),
        ));
    };
    let device = owned_device(&state, &caller, id).await?;
    let key_removed = revoke_device_key(&state, &device).await?;
    let points = match history {
        History::Keep => None,
        History::Purge => Some(purge(&state, &device).await?),
    };
    tracing::info!(
        by = %caller.username, owner = %device.username, device = %device.name,
        key_removed, points_deleted = points, ?history, "OwnTracks device deleted"
    );
    Ok(Json(json!({
        "device_id": device.id,
        "device_key_removed": key_removed,
        "history": if points.is_some() { "purged" } else { "kept" },
        "points_deleted": points.unwrap_or(0),
    })))
}

/// Revokes the MQTT device key linked to `device` (same user and name), closing its live
/// session; false if it has none.
async fn revoke_device_key(state: &AppState, device: &OwnTracksDevice) -> ApiResult<bool> {
    if device.credential_id.is_none() {
        return Ok(false);
    }
    match state
        .store
        .remove_device(&device.username, &device.name)
        .await
    {
        Ok(key) => {
            if let Some(broker) = &state.broker {
                broker.disconnect_device(key.id).await;
            }
            Ok(true)
        }
        // Removed meanwhile (another request, the CLI).
        Err(porchlight_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes an OwnTracks device with its whole history and its encryption key; returns how
/// many points went.
pub async fn purge(state: &AppState, device: &OwnTracksDevice) -> ApiResult<u64> {
    let points = state.store.delete_owntracks_device(device.id).await?;
    state
        .store
        .remove_owntracks_key(device.user_id, &device.name)
        .await?;
    Ok(points)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    location_retention_days: Option<u32>,
}

/// `GET /api/users/{username}/location-retention`.
pub async fn retention(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(username): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = owner_by_name(&state, &caller, &username).await?;
    retention_view(&state, &user).await
}

/// `PUT /api/users/{username}/location-retention`.
pub async fn set_retention(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<Retention>,
) -> ApiResult<Json<Value>> {
    let user = owner_by_name(&state, &caller, &username).await?;
    let days = req.location_retention_days;
    state
        .store
        .set_location_retention(user.id, days, SystemTime::now())
        .await?;
    tracing::info!(by = %caller.username, username = %user.username, ?days, "location retention set");
    retention_view(&state, &user).await
}

async fn retention_view(state: &AppState, user: &User) -> ApiResult<Json<Value>> {
    let days = state.store.location_retention(user.id).await?;
    Ok(Json(json!({
        "username": user.username,
        "location_retention_days": days,
    })))
}
