//! `GET /api/ui/config`: the settings the web UI needs from the server's config file (`[ui]`):
//! the map's tile URL and attribution. Signed-in users only, like every other API call.

use axum::Json;
use axum::extract::State;
use porchlight_api::owntracks::MapSettings;

use super::AppState;
use super::auth::CurrentUser;

/// `GET /api/ui/config`.
pub async fn get(State(state): State<AppState>, _: CurrentUser) -> Json<MapSettings> {
    Json(MapSettings::clone(&state.map))
}
