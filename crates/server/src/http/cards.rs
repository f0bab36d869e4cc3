//! `PUT /api/owntracks/card`: the signed-in user's card — the display name and picture
//! OwnTracks apps show for them on their friends' phones. Body `{"name": "Alice", "face":
//! "<base64 PNG or JPEG>"}`: a field left out keeps what the user's card has (so changing the
//! name keeps the picture), `null` or `""` removes it. The card goes through the same
//! parser as a phone's `_type: card` (a face must be base64), and a face sent must be a PNG
//! or JPEG (by its first bytes; one kept from a phone's own card is not checked again). It is
//! stored as the user's own card (kept even when they have no device yet) and as the card of
//! each of the user's devices, in one write, and is published retained on
//! `owntracks/<user>/<device>/info` for each (the broker's ACL gives it to the user's own
//! sessions and their friends'). Answers 200 with the devices it was set on; 400 for a bad
//! card. A device that appears later takes the card with its first message (the
//! store copies it), and the ingest retains it on that device's `…/info`
//! (`owntracks/ingest.rs`).
//!
//! `GET /api/owntracks/card`: the signed-in user's card (`UserCard`, both fields `null` when
//! none is set), as the Profile screen shows it.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use porchlight_api::owntracks::UserCard;
use porchlight_broker::Bytes;
use porchlight_domain::owntracks::{Body, OwnTracksTopic, Parsed, TopicKind, parse_payload};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiResult};

/// Longest display name accepted, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Largest picture accepted, base64 characters (the apps show a small square).
const MAX_FACE_CHARS: usize = 128 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    /// `None`: left out (keep); `Some(None)`: `null` (remove).
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    face: Option<Option<String>>,
}

/// A field that is there, `null` or not.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `GET /api/owntracks/card`.
pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<UserCard>> {
    let card = state.store.user_card(user.id).await?.unwrap_or_default();
    Ok(Json(UserCard {
        name: card.name,
        face: card.face,
    }))
}

/// Whether a base64 picture is a PNG or a JPEG, by its first bytes (the pictures OwnTracks
/// apps show). The base64 rules are the phones' card parser's (padding optional, whitespace
/// ignored).
fn is_png_or_jpeg(face: &str) -> bool {
    const FACE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF];
    let compact: String = face.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    FACE.decode(compact.as_bytes())
        .is_ok_and(|bytes| bytes.starts_with(PNG) || bytes.starts_with(JPEG))
}

/// `PUT /api/owntracks/card`.
pub async fn set(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<CardRequest>,
) -> ApiResult<Json<Value>> {
    let current = if req.name.is_none() || req.face.is_none() {
        state.store.user_card(user.id).await?
    } else {
        None
    };
    let (current_name, current_face) = current.map_or((None, None), |c| (c.name, c.face));
    let name = req
        .name
        .unwrap_or(current_name)
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "name: at most {MAX_NAME_CHARS} characters."
        )));
    }
    // Only a picture sent now must be a PNG or JPEG: one kept from a phone's own card (which
    // may be any base64 image) must not block a change of name.
    let face_sent = matches!(&req.face, Some(Some(f)) if !f.is_empty());
    let face = req.face.unwrap_or(current_face).filter(|f| !f.is_empty());
    if face.as_ref().is_some_and(|f| f.len() > MAX_FACE_CHARS) {
        return Err(ApiError::BadRequest(format!(
            "face: at most {MAX_FACE_CHARS} base64 characters (a small square picture)."
        )));
    }
    let candidate = porchlight_domain::owntracks::Card {
        name,
        face,
        tid: None,
    };
    // The phone's rules for a card, so what we publish is what a phone would accept.
    let card = match parse_payload(candidate.to_payload().as_bytes(), Some(TopicKind::Info)) {
        Ok(Parsed::Message(m)) => match m.body() {
            Body::Card(card) => card.clone(),
            _ => return Err(ApiError::BadRequest("not a card.".into())),
        },
        Ok(Parsed::Empty) => return Err(ApiError::BadRequest("an empty card.".into())),
        Err(e) => return Err(ApiError::BadRequest(e.to_string())),
    };
    if face_sent && card.face.as_deref().is_some_and(|f| !is_png_or_jpeg(f)) {
        return Err(ApiError::BadRequest(
            "face: not a PNG or JPEG picture (send the image file's bytes in base64).".into(),
        ));
    }
    let payload = card.to_payload();
    let devices = state
        .store
        .set_user_card(
            user.id,
            porchlight_store::Card {
                name: card.name.clone(),
                face: card.face.clone(),
            },
            SystemTime::now(),
        )
        .await?;
    let mut published = Vec::with_capacity(devices.len());
    for device in &devices {
        let Ok(topic) = OwnTracksTopic::new(&device.username, &device.name, TopicKind::Info) else {
            continue;
        };
        let topic = topic.to_string();
        if let Some(bus) = &state.bus
            && let Err(e) = bus
                .publish(&topic, Bytes::from(payload.clone()), 1, true)
                .await
        {
            tracing::warn!(%topic, error = %e, "card stored but not published");
        }
        published.push(device.name.clone());
    }
    Ok(Json(json!({ "devices": published })))
}

#[cfg(test)]
mod tests {
    use super::is_png_or_jpeg;

    #[test]
    fn only_png_and_jpeg_pictures_pass() {
        // A 1×1 PNG; the start of a JPEG (with and without padding, with a line break).
        assert!(is_png_or_jpeg(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
        ));
        assert!(is_png_or_jpeg("/9j/4AAQSkZJRg=="));
        assert!(is_png_or_jpeg("/9j/4AAQ\nSkZJRg"));
        // Text, a GIF, nothing, not base64.
        assert!(!is_png_or_jpeg("aGVsbG8="));
        assert!(!is_png_or_jpeg("R0lGODlhAQABAAAAACw="));
        assert!(!is_png_or_jpeg(""));
        assert!(!is_png_or_jpeg("not base64!"));
    }
}
