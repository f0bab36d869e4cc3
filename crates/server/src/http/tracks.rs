//! The UI's compact track of one OwnTracks device: `GET /api/owntracks/devices/{id}/track`.
//!
//! The points are thinned server-side by the store (keeping turns and stops) to at most
//! `max_points` ([`MAX_TRACK_POINTS`] at most), so a year of history never reaches a browser
//! as hundreds of thousands of points. Times are Unix milliseconds, as everywhere in our API;
//! the window is `from` inclusive, `to` exclusive. Each point's speed (km/h, as the phone
//! sent it) is in `vel`, a list beside `points`. A device the caller may not see answers
//! 404 like one that does not exist.
//!
//! (Not under `/api/devices/{id}/…`: that level already routes `/api/devices/{username}/{name}`,
//! and a static `track` there would shadow deleting a device named `track`.)

use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use porchlight_api::owntracks::TrackView;
use serde::Deserialize;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiResult};
use super::views::{ceil_secs, unix_ms};

/// Most points one track answers.
pub const MAX_TRACK_POINTS: usize = 5_000;
/// Points when `max_points` is not given.
const DEFAULT_TRACK_POINTS: usize = 1_000;
/// The window when `from` is not given: the last 24 hours.
const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
pub struct TrackQuery {
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
}

/// `GET /api/owntracks/devices/{id}/track?from=&to=&max_points=`.
pub async fn track(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(device_id): Path<i64>,
    query: Result<Query<TrackQuery>, QueryRejection>,
) -> ApiResult<Json<TrackView>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let to = q.to.unwrap_or_else(|| unix_ms(SystemTime::now()));
    let from = q.from.unwrap_or(to.saturating_sub(DEFAULT_WINDOW_MS));
    if from > to {
        return Err(ApiError::BadRequest("from is after to.".into()));
    }
    let max_points = q.max_points.unwrap_or(DEFAULT_TRACK_POINTS);
    if !(2..=MAX_TRACK_POINTS).contains(&max_points) {
        return Err(ApiError::BadRequest(format!(
            "max_points must be from 2 to {MAX_TRACK_POINTS}."
        )));
    }
    let device = super::visibility::visible_device(&state, &caller, device_id).await?;
    let fixes = state
        .store
        .location_track(device.id, ceil_secs(from), ceil_secs(to), max_points)
        .await?;
    let points = fixes
        .iter()
        .map(|p| (p.tst.saturating_mul(1000), p.lat, p.lon))
        .collect();
    let vel = fixes
        .iter()
        .map(|p| p.vel.filter(|v| v.is_finite()))
        .collect();
    Ok(Json(TrackView {
        device_id: device.id,
        from,
        to,
        max_points,
        points,
        vel,
    }))
}
