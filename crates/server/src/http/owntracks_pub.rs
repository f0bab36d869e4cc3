//! `POST /pub`: OwnTracks HTTP mode, as the Recorder offers it.
//!
//! Auth is HTTP Basic: the user name with a device key (`pld_…`, the device posting) or the
//! account password (through the server's [`crate::login::LoginGate`]: same throttling as
//! every other password login). The message is posted as the user and device named by the
//! `X-Limit-U` / `X-Limit-D` headers (or `?u=` / `?d=`), defaulting to the authenticated user
//! and, for a device key, its device. The body (one OwnTracks JSON message, or empty) goes
//! through the ingest service ([`crate::owntracks::ingest::Submitter`]), which applies the
//! MQTT rules (the user must be the authenticated one; a device key posts only as its own
//! device) and answers once the message is committed: a 2xx means it is on disk.
//!
//! Answers: 200 with a JSON array (`[]` when there is nothing): the commands queued for this
//! device (`POST /api/owntracks/devices/{id}/commands`, `http/commands.rs`), taken from the
//! store after the message's commit so each is delivered once; then, as the Recorder's HTTP
//! mode does, for each device of each user who granted the poster friendship (explicit
//! grants only, admins included: an admin's phone is not sent the whole household), its card
//! (`{"_type":"card","tid","name","face","topic"}`, when one is known) and its last location
//! (`{"_type":"location","tid","lat","lon","tst","acc","alt","vac","vel","cog","topic"}`).
//! The apps key a friend by `topic` (`owntracks/<user>/<device>`) and need `tid`: the
//! device's last `tid`, else the last two characters of its name (the apps' default).
//! The whole array is encrypted as `{"_type":"encrypted","data":…}` with the device's
//! passphrase when it has one, as the Recorder does (`http/owntracks_keys.rs`).
//! 400 for a payload the parser rejects; 403 for a user/device the login may not post as; 401
//! (with `WWW-Authenticate`) for missing or wrong credentials; 429 when password
//! attempts are throttled; 503 when it could not be stored (the phone sends it again).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use porchlight_domain::acl::{Identity, LoginMethod};
use porchlight_domain::owntracks::{SecretKey, crypto};
use porchlight_store::User;
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::refusal_error;
use crate::owntracks::ingest::SubmitError;

/// `?u=&d=`: the user and device posted as, when the headers are absent.
#[derive(Debug, Default, Deserialize)]
pub struct Target {
    u: Option<String>,
    d: Option<String>,
}

/// `POST /pub`.
pub async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(target): Query<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((username, password)) = basic_credentials(&headers) else {
        return unauthorized();
    };
    let (identity, own_device) = match authenticate(&state, peer, &username, &password).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let user = header_text(&headers, "x-limit-u")
        .or(target.u)
        .unwrap_or_else(|| identity.username.clone());
    let Some(device) = header_text(&headers, "x-limit-d")
        .or(target.d)
        .or(own_device)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "name the device with the X-Limit-D header or ?d=",
        );
    };
    let user_id = identity.user_id;
    match state.ingest.submit(identity, &user, &device, body).await {
        Ok(_) => {
            let mut answer = queued_commands(&state, user_id, &device).await;
            answer.extend(friends_view(&state, user_id).await);
            let answer = Value::Array(answer);
            let body = encrypted_for(&state, user_id, &device, &answer)
                .await
                .unwrap_or(answer);
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) if e.is_forbidden() => error(StatusCode::FORBIDDEN, &e.to_string()),
        Err(e @ SubmitError::Rejected { .. }) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ SubmitError::NotStored(_)) => {
            tracing::warn!(%peer, %user, %device, error = %e, "HTTP OwnTracks message not stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the message was not stored; send it again",
            )
        }
    }
}

/// The commands queued for `user_id`'s `device`, removed from the store as they are handed
/// out. The ingest service accepted the message, so `user_id` (the poster) is the topic's user.
/// A store failure here answers no commands (they stay queued for the next `/pub`): the point
/// itself is committed, so the answer stays 200.
async fn queued_commands(state: &AppState, user_id: i64, device: &str) -> Vec<Value> {
    let found = match state.store.find_owntracks_device(user_id, device).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(%device, error = %e, "queued commands not looked up");
            return Vec::new();
        }
    };
    let Some(found) = found else {
        return Vec::new();
    };
    match state
        .store
        .take_owntracks_commands(found.id, SystemTime::now())
        .await
    {
        Ok(payloads) => payloads
            .iter()
            .filter_map(|p| serde_json::from_str::<Value>(p).ok())
            .collect(),
        Err(e) => {
            tracing::warn!(%device, error = %e, "queued commands not taken");
            Vec::new()
        }
    }
}

/// `answer` sealed with the device's encryption passphrase, as an `encrypted` message; `None`
/// when the device has no key (or the key cannot be read: then the answer goes out plain,
/// which a phone that encrypts still reads).
async fn encrypted_for(
    state: &AppState,
    user_id: i64,
    device: &str,
    answer: &Value,
) -> Option<Value> {
    let passphrase = match state.store.owntracks_key(user_id, device).await {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(%device, error = %e, "encryption key not looked up; answering in plain text");
            return None;
        }
    };
    let key = SecretKey::from_passphrase(passphrase.expose()).ok()?;
    let mut nonce = [0u8; crypto::NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let payload = crypto::encrypted_payload(answer.to_string().as_bytes(), &key, nonce).ok()?;
    serde_json::from_str(&payload).ok()
}

/// The cards and last locations of the devices of every user who granted `viewer_id`
/// friendship, in the Recorder's HTTP-mode shape. A store failure answers none (logged): the
/// poster's point is committed, so the answer stays 200.
async fn friends_view(state: &AppState, viewer_id: i64) -> Vec<Value> {
    let owners = state.friends.snapshot().owners_for(viewer_id);
    if owners.is_empty() {
        return Vec::new();
    }
    let lasts = match state.store.last_locations(Some(owners)).await {
        Ok(lasts) => lasts,
        Err(e) => {
            tracing::warn!(error = %e, "friends' locations not read for /pub");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for last in lasts {
        let Some(location) = last.location else {
            continue;
        };
        let device = &last.device;
        let topic = format!("owntracks/{}/{}", device.username, device.name);
        let tid = location
            .fields
            .tid
            .clone()
            .unwrap_or_else(|| default_tid(&device.name));
        match state.store.card(device.id).await {
            Ok(Some(card)) => out.push(json!({
                "_type": "card",
                "tid": tid,
                "name": card.name,
                "face": card.face,
                "topic": topic,
            })),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, device = %topic, "friend's card not read for /pub")
            }
        }
        let f = &location.fields;
        let mut message = json!({
            "_type": "location",
            "tid": tid,
            "lat": f.lat,
            "lon": f.lon,
            "tst": location.tst,
            "topic": topic,
        });
        for (name, value) in [
            ("acc", f.acc),
            ("alt", f.alt),
            ("vac", f.vac),
            ("vel", f.vel),
            ("cog", f.cog),
        ] {
            if let Some(value) = value {
                message[name] = json!(value);
            }
        }
        out.push(message);
    }
    out
}

/// The OwnTracks apps' default tracker id: the device name's last two characters.
fn default_tid(device: &str) -> String {
    let chars: Vec<char> = device.chars().collect();
    chars[chars.len().saturating_sub(2)..].iter().collect()
}

/// The poster's identity, and its device name when it logged in with a device key.
async fn authenticate(
    state: &AppState,
    peer: SocketAddr,
    username: &str,
    password: &str,
) -> Result<(Identity, Option<String>), Response> {
    if password.starts_with("pld_")
        && let Ok(Some((user, device))) = state
            .store
            .verify_device_key(username, password.as_bytes())
            .await
    {
        let identity = identity(user, Some(device.id), LoginMethod::DeviceKey);
        return Ok((identity, Some(device.name)));
    }
    match state
        .logins
        .check_password(peer.ip(), username, password.as_bytes(), SystemTime::now())
        .await
    {
        Ok((user, _)) => Ok((identity(user, None, LoginMethod::Password), None)),
        Err(refused) => {
            tracing::warn!(%peer, %username, "HTTP OwnTracks login refused");
            match refusal_error(refused) {
                super::error::ApiError::BadLogin => Err(unauthorized()),
                other => Err(other.into_response()),
            }
        }
    }
}

fn identity(user: User, device_id: Option<i64>, login: LoginMethod) -> Identity {
    Identity {
        user_id: user.id,
        username: user.username,
        role: user.role,
        device_id,
        login,
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn unauthorized() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"porchlight\""),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tid_is_the_last_two_characters_of_the_device_name() {
        assert_eq!(default_tid("phone"), "ne");
        assert_eq!(default_tid("x"), "x");
        assert_eq!(default_tid("télé"), "lé");
    }

    #[test]
    fn basic_credentials_are_decoded_and_other_schemes_ignored() {
        let mut headers = HeaderMap::new();
        // base64("alice:pld_x:y"): the password may contain colons.
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cGxkX3g6eQ=="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("alice".into(), "pld_x:y".into()))
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer YWxpY2U6cGxkX3g6eQ=="),
        );
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic %%%"));
        assert_eq!(basic_credentials(&headers), None);
    }
}
