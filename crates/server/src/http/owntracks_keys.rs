//! OwnTracks payload encryption keys over HTTP: the passphrase a phone encrypts its messages
//! with (the apps' "encryption key"), per user and device name as the Recorder keys them.
//!
//! - `GET /api/owntracks/keys`: the caller's keys (an admin: everyone's), masked.
//! - `PUT /api/owntracks/keys/{username}/{device}` with `{"key": "<passphrase>"}` or
//!   `{"generate": true}`; `DELETE` the same path. By name, so a key can be set before the
//!   phone's first (encrypted) message creates the device.
//! - `PUT`/`DELETE /api/owntracks/devices/{id}/key`: the same for a device that has appeared.
//!
//! Who may: the owner or an admin (403 otherwise; by id, a device the caller may not see is
//! 404). A key is shown in full once, in the answer that generated it; every other answer and
//! every log line shows it masked to its last 4 characters. Only the first 32 bytes of a
//! passphrase count (the apps cut it there); longer ones are accepted and said so.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use porchlight_domain::Role;
use porchlight_domain::owntracks::crypto::KEY_BYTES;
use porchlight_domain::owntracks::{OwnTracksTopic, TopicKind};
use porchlight_domain::secret::Secret;
use porchlight_store::{OwnTracksDevice, OwnTracksKey, User, random_password};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiResult};
use super::views::unix_ms;

/// Longest passphrase accepted, in bytes (only [`KEY_BYTES`] of it count).
const MAX_PASSPHRASE_BYTES: usize = 256;

/// The body of a `PUT`: a passphrase, or `generate: true` for a random one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetKey {
    key: Option<String>,
    #[serde(default)]
    generate: bool,
}

/// A key as API answers show it.
fn key_view(key: &OwnTracksKey) -> Value {
    json!({
        "username": key.username,
        "device": key.device,
        "key": key.passphrase.masked(),
        "updated_at": unix_ms(key.updated_at),
    })
}

/// A new random passphrase: 20 characters from a 56-letter alphabet (~116 bits), short
/// enough to count whole (under 32 bytes) and to type into a phone.
pub fn generate_passphrase() -> Secret {
    random_password()
}

/// `GET /api/owntracks/keys`.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
) -> ApiResult<Json<Vec<Value>>> {
    let scope = (caller.role != Role::Admin).then(|| vec![caller.id]);
    let keys = state.store.owntracks_keys(scope).await?;
    Ok(Json(keys.iter().map(key_view).collect()))
}

/// `PUT /api/owntracks/keys/{username}/{device}`.
pub async fn set_by_name(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path((username, device)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetKey>,
) -> ApiResult<Json<Value>> {
    let owner = owner_by_name(&state, &caller, &username).await?;
    set(&state, &caller, &owner, &device, req).await
}

/// `DELETE /api/owntracks/keys/{username}/{device}`.
pub async fn remove_by_name(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path((username, device)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let owner = owner_by_name(&state, &caller, &username).await?;
    remove(&state, &caller, &owner, &device).await
}

/// `PUT /api/owntracks/devices/{id}/key`.
pub async fn set_by_id(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<SetKey>,
) -> ApiResult<Json<Value>> {
    let device = owned_device(&state, &caller, id).await?;
    let owner = state.store.find_user(&device.username).await?;
    set(&state, &caller, &owner, &device.name, req).await
}

/// `DELETE /api/owntracks/devices/{id}/key`.
pub async fn remove_by_id(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let device = owned_device(&state, &caller, id).await?;
    let owner = state.store.find_user(&device.username).await?;
    remove(&state, &caller, &owner, &device.name).await
}

async fn set(
    state: &AppState,
    caller: &User,
    owner: &User,
    device: &str,
    req: SetKey,
) -> ApiResult<Json<Value>> {
    let (passphrase, generated) = match (req.key, req.generate) {
        (Some(key), false) => (Secret::new(check_passphrase(key)?), false),
        (None, true) => (generate_passphrase(), true),
        _ => {
            return Err(ApiError::BadRequest(
                "Give either key (the passphrase set on the phone) or generate: true.".into(),
            ));
        }
    };
    // The device as a topic level (the rule the phone's messages are held to).
    OwnTracksTopic::new(&owner.username, device, TopicKind::Device)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = SystemTime::now();
    state
        .store
        .set_owntracks_key(owner.id, device, &passphrase, now)
        .await?;
    tracing::info!(
        by = %caller.username, owner = %owner.username, %device,
        key = %passphrase.masked(), generated, "OwnTracks encryption key set"
    );
    let mut body = json!({
        "username": owner.username,
        "device": device,
        "key": passphrase.masked(),
        "updated_at": unix_ms(now),
    });
    if generated {
        // Shown this once: the phone needs it (Settings → Encryption key, or the .otrc).
        body["encryption_key"] = json!(passphrase.expose());
    }
    if passphrase.expose().len() > KEY_BYTES {
        body["note"] = json!(format!(
            "Only the first {KEY_BYTES} bytes of the passphrase count, as in the OwnTracks apps."
        ));
    }
    Ok(Json(body))
}

async fn remove(
    state: &AppState,
    caller: &User,
    owner: &User,
    device: &str,
) -> ApiResult<StatusCode> {
    if !state.store.remove_owntracks_key(owner.id, device).await? {
        return Err(ApiError::NotFound(
            "That device has no encryption key.".into(),
        ));
    }
    tracing::info!(by = %caller.username, owner = %owner.username, %device, "OwnTracks encryption key removed");
    Ok(StatusCode::NO_CONTENT)
}

/// A passphrase as the apps accept one: not empty, no control characters, not huge.
fn check_passphrase(key: String) -> ApiResult<String> {
    if key.is_empty() || key.len() > MAX_PASSPHRASE_BYTES || key.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "The key must be 1 to {MAX_PASSPHRASE_BYTES} bytes without control characters."
        )));
    }
    Ok(key)
}

/// The user `username` when `caller` may manage their devices (themselves, or any user for an
/// admin): 403 otherwise, 404 for an unknown user (admins only get that far).
pub async fn owner_by_name(state: &AppState, caller: &User, username: &str) -> ApiResult<User> {
    if username != caller.username && caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    Ok(state.store.find_user(username).await?)
}

/// The OwnTracks device `id` when `caller` may manage it (its owner or an admin): 404 when it
/// does not exist or the caller may not see it, 403 when they may see but not manage it (a
/// friend's device).
pub async fn owned_device(state: &AppState, caller: &User, id: i64) -> ApiResult<OwnTracksDevice> {
    let not_found = || ApiError::NotFound("No such device.".into());
    let device = state
        .store
        .owntracks_devices(None)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(not_found)?;
    if device.user_id == caller.id || caller.role == Role::Admin {
        Ok(device)
    } else if super::visibility::may_see(caller, device.user_id, &state.friends.snapshot()) {
        Err(ApiError::Forbidden)
    } else {
        Err(not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrases_are_checked() {
        assert!(check_passphrase("correct horse".into()).is_ok());
        assert!(check_passphrase(String::new()).is_err());
        assert!(check_passphrase("tab\there".into()).is_err());
        assert!(check_passphrase("x".repeat(MAX_PASSPHRASE_BYTES + 1)).is_err());
        let generated = generate_passphrase();
        assert!(generated.expose().len() <= KEY_BYTES);
        assert!(check_passphrase(generated.expose().to_owned()).is_ok());
    }
}
