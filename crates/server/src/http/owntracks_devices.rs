//! The UI's reads of OwnTracks devices beside the track (`tracks.rs`):
//! - `GET /api/owntracks/devices`: every device the caller may see, with its online state, last
//!   location and card — the same objects as the live feed's `snapshot`;
//! - `GET /api/owntracks/devices/{id}/transitions?from=&to=`: region enter/leave events in a
//!   window (Unix milliseconds, `from` inclusive, `to` exclusive; default the last 24 hours),
//!   oldest first, at most [`MAX_TRANSITIONS`];
//! - `GET /api/owntracks/devices/{id}/waypoints`: the regions the phone monitors.
//!
//! Visibility is the one rule of `visibility.rs` (own devices, friends', all for admins); a
//! device the caller may not see answers 404 like one that does not exist.

use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use porchlight_api::owntracks::{TransitionView, WaypointView};
use serde::Deserialize;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiResult};
use super::views::{LiveDeviceView, ceil_secs, live_device, transition_event, unix_ms};
use super::visibility::visible_users;

/// Most transitions one answer holds (the newest are dropped beyond it; narrow the window).
pub const MAX_TRANSITIONS: usize = 10_000;
/// The window when `from` is not given: the last 24 hours.
const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// `GET /api/owntracks/devices`.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
) -> ApiResult<Json<Vec<LiveDeviceView>>> {
    let visible = visible_users(&caller, &state.friends.snapshot());
    Ok(Json(
        state
            .store
            .last_locations(visible)
            .await?
            .iter()
            .map(live_device)
            .collect(),
    ))
}

#[derive(Deserialize)]
pub struct WindowQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// `GET /api/owntracks/devices/{id}/transitions?from=&to=`.
pub async fn transitions(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
    query: Result<Query<WindowQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<TransitionView>>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let to = q.to.unwrap_or_else(|| unix_ms(SystemTime::now()));
    let from = q.from.unwrap_or(to.saturating_sub(DEFAULT_WINDOW_MS));
    if from > to {
        return Err(ApiError::BadRequest("from is after to.".into()));
    }
    let device = super::visibility::visible_device(&state, &caller, id).await?;
    let rows = state
        .store
        .transitions(device.id, ceil_secs(from), ceil_secs(to))
        .await?;
    Ok(Json(
        rows.into_iter()
            .take(MAX_TRANSITIONS)
            .map(|t| TransitionView {
                at: t.tst.saturating_mul(1000),
                event: transition_event(t.transition.event),
                desc: t.transition.description,
                rid: t.transition.rid,
                lat: t.transition.lat,
                lon: t.transition.lon,
                acc: t.transition.acc,
            })
            .collect(),
    ))
}

/// `GET /api/owntracks/devices/{id}/waypoints`.
pub async fn waypoints(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<WaypointView>>> {
    let device = super::visibility::visible_device(&state, &caller, id).await?;
    Ok(Json(
        state
            .store
            .waypoints(device.id)
            .await?
            .into_iter()
            .map(|w| WaypointView {
                tst: w.tst,
                desc: w.description,
                lat: w.lat,
                lon: w.lon,
                rad: w.rad,
                rid: w.rid,
            })
            .collect(),
    ))
}
