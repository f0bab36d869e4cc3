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
//!
//! The checks that need no lookup are pure functions ([`read_input`], [`PubInput::target`];
//! [`check_pub_request`] adds the ingest service's parser) so that property tests here and the
//! fuzz run (`porchlight-bench fuzz`) drive them with millions of inputs: a header that is not
//! UTF-8 or a user/device name that is not a valid topic level answers 400 naming which.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use porchlight_domain::acl::{Identity, LoginMethod};
use porchlight_domain::owntracks::{
    OwnTracksTopic, Parsed, PayloadError, SecretKey, TopicError, TopicKind, crypto, open_payload,
};
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

/// What a `/pub` request says before any lookup: who logs in and whom it posts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubInput {
    /// From `Authorization: Basic`.
    pub username: String,
    pub password: String,
    /// `X-Limit-U`, else `?u=`; `None`: the authenticated user.
    pub user: Option<String>,
    /// `X-Limit-D`, else `?d=`; `None`: the device of the device key that logged in.
    pub device: Option<String>,
}

/// Why a `/pub` request's input is refused before it reaches the ingest service.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PubInputError {
    /// 401.
    #[error("no HTTP Basic credentials (Authorization: Basic base64(user:password))")]
    NoCredentials,
    #[error("the {0} header is not UTF-8 text")]
    NotText(&'static str),
    #[error("name the device with the X-Limit-D header or ?d=")]
    NoDevice,
    #[error("{source_name} does not name a valid {what}: {reason}")]
    BadName {
        /// Where the name came from (`X-Limit-D`, `?d=`, `the login`, …).
        source_name: &'static str,
        what: &'static str,
        reason: TopicError,
    },
    /// What the ingest service's parser says of the body (`check_pub_request` only: the
    /// handler leaves parsing to the ingest service).
    #[error("{0}")]
    Payload(PayloadError),
}

/// Reads the credentials and the `X-Limit-U`/`X-Limit-D` headers (before `?u=`/`?d=`).
/// Pure: no lookup, no clock.
pub fn read_input(
    headers: &HeaderMap,
    u: Option<String>,
    d: Option<String>,
) -> Result<PubInput, PubInputError> {
    let (username, password) = basic_credentials(headers).ok_or(PubInputError::NoCredentials)?;
    let user = header_text(headers, "x-limit-u")
        .map_err(|()| PubInputError::NotText("X-Limit-U"))?
        .map(|v| (v, "X-Limit-U"))
        .or(u.map(|v| (v, "?u=")));
    let device = header_text(headers, "x-limit-d")
        .map_err(|()| PubInputError::NotText("X-Limit-D"))?
        .map(|v| (v, "X-Limit-D"))
        .or(d.map(|v| (v, "?d=")));
    // Names are checked as the topic levels they become (`owntracks/<user>/<device>`).
    if let Some((value, from)) = &user {
        check_name(value, "d", from, "user")?;
    }
    if let Some((value, from)) = &device {
        check_name("u", value, from, "device")?;
    }
    Ok(PubInput {
        username,
        password,
        user: user.map(|(v, _)| v),
        device: device.map(|(v, _)| v),
    })
}

fn check_name(
    user: &str,
    device: &str,
    source_name: &'static str,
    what: &'static str,
) -> Result<(), PubInputError> {
    OwnTracksTopic::new(user, device, TopicKind::Device)
        .map(|_| ())
        .map_err(|reason| PubInputError::BadName {
            source_name,
            what,
            reason,
        })
}

impl PubInput {
    /// The user and device posted as, once the login is known: the named ones, else the
    /// login's user and the device key's device.
    pub fn target(
        &self,
        login_user: &str,
        own_device: Option<&str>,
    ) -> Result<(String, String), PubInputError> {
        let user = self.user.clone().unwrap_or_else(|| login_user.to_owned());
        let device = self
            .device
            .clone()
            .or(own_device.map(str::to_owned))
            .ok_or(PubInputError::NoDevice)?;
        OwnTracksTopic::new(&user, &device, TopicKind::Device).map_err(|reason| {
            PubInputError::BadName {
                source_name: "the login",
                what: "user",
                reason,
            }
        })?;
        Ok((user, device))
    }
}

/// Every check of a `/pub` request that needs no lookup, as one pure function the fuzz run
/// drives (`porchlight-bench fuzz`): [`read_input`], [`PubInput::target`] with the login's
/// own name, and the body through the same parser the ingest service applies to HTTP posts
/// (`open_payload` with no topic kind and no decryption key).
pub fn check_pub_request(
    headers: &HeaderMap,
    u: Option<String>,
    d: Option<String>,
    body: &[u8],
) -> Result<(String, String, Parsed), PubInputError> {
    let input = read_input(headers, u, d)?;
    let (user, device) = input.target(&input.username, None)?;
    let parsed = open_payload(body, None, None).map_err(PubInputError::Payload)?;
    Ok((user, device, parsed))
}

/// `POST /pub`.
pub async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(target): Query<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match read_input(&headers, target.u, target.d) {
        Ok(input) => input,
        Err(PubInputError::NoCredentials) => return unauthorized(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (identity, own_device) =
        match authenticate(&state, peer, &input.username, &input.password).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let (user, device) = match input.target(&identity.username, own_device.as_deref()) {
        Ok(target) => target,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
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
    let payload = sealed_for_device(state, user_id, device, &answer.to_string()).await?;
    serde_json::from_str(&payload).ok()
}

/// `text` sealed with the passphrase of `user_id`'s device `device` as an OwnTracks
/// `{"_type":"encrypted","data":…}` payload; `None` when the device has no key (or it cannot
/// be read: logged, and the caller sends the text plain, which a phone that encrypts still
/// reads).
pub(super) async fn sealed_for_device(
    state: &AppState,
    user_id: i64,
    device: &str,
    text: &str,
) -> Option<String> {
    let passphrase = match state.store.owntracks_key(user_id, device).await {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(%device, error = %e, "encryption key not looked up; sending in plain text");
            return None;
        }
    };
    let key = SecretKey::from_passphrase(passphrase.expose()).ok()?;
    let mut nonce = [0u8; crypto::NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    crypto::encrypted_payload(text.as_bytes(), &key, nonce).ok()
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
        certificate: None,
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

/// A header's value as trimmed UTF-8 text; `Ok(None)` when absent or blank, `Err` when it is
/// not UTF-8.
fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ()> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ())?
        .trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
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
    use proptest::prelude::*;

    const SAMPLES: &str = include_str!("../../../domain/tests/fixtures/owntracks-messages.jsonl");
    const BAD_PAYLOADS: &str =
        include_str!("../../../domain/tests/fixtures/bad-owntracks-payloads.txt");

    /// The sample payloads that go to the device topic (what HTTP mode posts).
    fn samples() -> Vec<Vec<u8>> {
        SAMPLES
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["topic"]
                    .as_str()
                    .is_some_and(|t| t.split('/').count() == 3)
            })
            .map(|v| serde_json::to_vec(&v["payload"]).unwrap())
            .collect()
    }

    fn basic(user: &[u8], password: &[u8]) -> Vec<u8> {
        let mut raw = user.to_vec();
        raw.push(b':');
        raw.extend_from_slice(password);
        let mut value = b"Basic ".to_vec();
        value.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(raw)
                .as_bytes(),
        );
        value
    }

    /// Builds headers from raw values; values `HeaderValue` refuses are left out (axum never
    /// hands the handler such a header).
    fn headers(values: &[(&'static str, Option<Vec<u8>>)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in values {
            if let Some(v) = value
                && let Ok(v) = HeaderValue::from_bytes(v)
            {
                map.insert(*name, v);
            }
        }
        map
    }

    /// One outcome's rules: an acceptance names a valid target; a rejection explains itself.
    fn check(result: &Result<(String, String, Parsed), PubInputError>) {
        match result {
            Ok((user, device, _)) => {
                assert!(OwnTracksTopic::new(user, device, TopicKind::Device).is_ok());
            }
            Err(e) => assert!(e.to_string().trim().len() > 10, "{e:?}"),
        }
    }

    fn cases() -> ProptestConfig {
        ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000),
        )
    }

    fn name_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..24),
            "[a-z0-9+#/ ]{0,12}".prop_map(String::into_bytes),
            "\\PC{0,8}".prop_map(String::into_bytes),
        ])
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn arbitrary_pub_input_never_panics_and_every_rejection_explains_itself(
            auth in prop::option::of(prop_oneof![
                prop::collection::vec(any::<u8>(), 0..40),
                (prop::collection::vec(any::<u8>(), 0..12), prop::collection::vec(any::<u8>(), 0..12))
                    .prop_map(|(u, p)| basic(&u, &p)),
            ]),
            limit_u in name_bytes(),
            limit_d in name_bytes(),
            u in prop::option::of(".{0,12}"),
            d in prop::option::of(".{0,12}"),
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let h = headers(&[
                ("authorization", auth),
                ("x-limit-u", limit_u),
                ("x-limit-d", limit_d),
            ]);
            check(&check_pub_request(&h, u, d, &body));
        }

        #[test]
        fn mutated_valid_posts_never_panic_and_unmutated_ones_are_accepted(
            index in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let all = samples();
            let mut body = all[index.index(all.len())].clone();
            let h = headers(&[
                ("authorization", Some(basic(b"alice", b"pld_secret"))),
                ("x-limit-d", Some(b"phone".to_vec())),
            ]);
            let mutated = !flips.is_empty() || cut.is_some();
            for (at, byte) in &flips {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
            }
            let result = check_pub_request(&h, None, None, &body);
            if mutated {
                check(&result);
            } else {
                let (user, device, parsed) = result.unwrap();
                prop_assert_eq!((user.as_str(), device.as_str()), ("alice", "phone"));
                prop_assert!(matches!(parsed, Parsed::Message(_)));
            }
        }
    }

    #[test]
    fn every_bad_sample_is_a_payload_rejection_with_a_reason() {
        let h = headers(&[("authorization", Some(basic(b"alice", b"pw")))]);
        let bad: Vec<&str> = BAD_PAYLOADS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(bad.len() > 5);
        for line in bad {
            match check_pub_request(&h, None, Some("phone".into()), line.as_bytes()) {
                Err(PubInputError::Payload(e)) => {
                    assert!(!e.reason().is_empty() && !e.to_string().is_empty());
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn headers_come_before_the_query_and_bad_names_say_where_they_came_from() {
        let h = headers(&[
            ("authorization", Some(basic(b"alice", b"pw"))),
            ("x-limit-d", Some(b"phone".to_vec())),
        ]);
        let input = read_input(&h, Some("bob".into()), Some("tablet".into())).unwrap();
        assert_eq!(input.user.as_deref(), Some("bob"));
        assert_eq!(input.device.as_deref(), Some("phone"));
        assert_eq!(
            input.target("alice", None).unwrap(),
            ("bob".to_owned(), "phone".to_owned())
        );

        let e = read_input(&h, None, None)
            .unwrap()
            .target("alice", None)
            .unwrap();
        assert_eq!(e, ("alice".to_owned(), "phone".to_owned()));

        let no_device = headers(&[("authorization", Some(basic(b"alice", b"pw")))]);
        let input = read_input(&no_device, None, None).unwrap();
        assert_eq!(input.target("alice", None), Err(PubInputError::NoDevice));
        assert_eq!(
            input.target("alice", Some("key-device")).unwrap().1,
            "key-device"
        );

        let e = read_input(&no_device, None, Some("a/b".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "?d= does not name a valid device: the device level contains a wildcard (+ or #), a / or a NUL character"
        );
        let wild = headers(&[
            ("authorization", Some(basic(b"alice", b"pw"))),
            ("x-limit-u", Some(b"al#ce".to_vec())),
        ]);
        let e = read_input(&wild, None, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("X-Limit-U does not name a valid user: "),
            "{e}"
        );
        let latin1 = headers(&[
            ("authorization", Some(basic(b"alice", b"pw"))),
            ("x-limit-d", Some(b"j\xfcrgen".to_vec())),
        ]);
        assert_eq!(
            read_input(&latin1, None, None),
            Err(PubInputError::NotText("X-Limit-D"))
        );
        assert_eq!(
            read_input(&HeaderMap::new(), None, None),
            Err(PubInputError::NoCredentials)
        );
    }

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
