//! Signing in and out, and finding out who is calling.
//!
//! A caller is either a browser with the `porchlight_session` cookie (HttpOnly, SameSite=Strict,
//! sliding 7-day idle expiry; `Secure` when given over HTTPS) or a script with `Authorization: Bearer plt_…`. Passwords are
//! checked by the server's [`crate::login::LoginGate`], shared with MQTT: every attempt is
//! counted per address and per user name before argon2 runs, a throttled attempt gets 429 with
//! `Retry-After`, and failures are audited; passwords are never logged.
//!
//! The OwnTracks Recorder-compatible API also takes HTTP Basic ([`RecorderCaller`]), as the
//! Recorder's clients send it: the account password (through the same `LoginGate`, so guesses
//! are throttled) or a device key `pld_…` (SHA-256 lookup, as for MQTT). A refused caller
//! there gets 401 with `WWW-Authenticate: Basic realm="Porchlight"`.
//!
//! The session cookie slides: every `/api` response to a caller whose session cookie was valid
//! carries the cookie again with a fresh `Max-Age` ([`slide_session_cookie`]), so the browser's
//! expiry moves with the server's idle window. It costs a header per response and no database
//! write (the server writes the session's last use at most once a minute).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use porchlight_api::account::Me;
use porchlight_domain::Role;
use porchlight_store::{AuditEntry, AuditKind, User};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};
use super::tls::Secure;
use crate::login::LoginRefused;

pub const SESSION_COOKIE: &str = "porchlight_session";

/// Filled by [`CurrentUser`] with the session cookie it accepted, read by
/// [`slide_session_cookie`] once the handler has answered.
#[derive(Clone, Default)]
struct AcceptedSession(Arc<OnceLock<String>>);

/// The signed-in caller.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

/// What a request signed in with: kept by long-lived connections (the live feed) to check
/// later that it still holds (not signed out, password not changed, token not revoked).
#[derive(Clone)]
pub enum Credential {
    Token(String),
    Session(String),
}

impl Credential {
    /// The credential of a request (a bearer token wins over a cookie, as for every call).
    pub fn of(headers: &HeaderMap) -> Option<Credential> {
        if let Some(token) = bearer_token(headers) {
            return Some(Credential::Token(token.to_owned()));
        }
        session_cookie(headers).map(|s| Credential::Session(s.to_owned()))
    }

    /// The user it still signs in, if any.
    pub async fn user(&self, state: &AppState, now: SystemTime) -> ApiResult<Option<User>> {
        Ok(match self {
            Credential::Token(token) => state.store.api_token_user(token, now).await?,
            Credential::Session(token) => {
                state.store.session_user(token, now, state.sessions).await?
            }
        })
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let now = SystemTime::now();
        if let Some(token) = bearer_token(&parts.headers) {
            return match state.store.api_token_user(token, now).await? {
                Some(user) => Ok(CurrentUser(user)),
                None => Err(ApiError::Unauthorized),
            };
        }
        let Some(token) = session_cookie(&parts.headers) else {
            return Err(ApiError::Unauthorized);
        };
        match state.store.session_user(token, now, state.sessions).await? {
            Some(user) => {
                if let Some(accepted) = parts.extensions.get::<AcceptedSession>() {
                    let _ = accepted.0.set(token.to_owned());
                }
                Ok(CurrentUser(user))
            }
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.role == Role::Admin {
            Ok(Admin(user))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The session cookie's value in a request, if any.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// What the UI learns about the caller ([`Me`]), with whether the password is still a
/// one-time password.
async fn me_of(state: &AppState, user: &User) -> ApiResult<Me> {
    Ok(Me {
        id: user.id,
        username: user.username.clone(),
        role: super::views::role_view(user.role),
        must_change_password: state.store.password_is_one_time(user.id).await?,
    })
}

/// The `Set-Cookie` value that gives the browser `token` for `max_age_secs`; `Secure` when the
/// request came over HTTPS (`[http] tls`), so the browser never sends it over plain HTTP.
fn session_cookie_header(
    token: &str,
    max_age_secs: u64,
    secure: Option<Secure>,
) -> ApiResult<HeaderValue> {
    let secure = if secure.is_some() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Middleware on `/api`: re-sends an accepted session cookie with a fresh `Max-Age` (unless
/// the handler set the cookie itself, as login and logout do).
pub async fn slide_session_cookie(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let accepted = AcceptedSession::default();
    request.extensions_mut().insert(accepted.clone());
    let secure = request.extensions().get::<Secure>().copied();
    let mut response = next.run(request).await;
    if let Some(token) = accepted.0.get()
        && !response.headers().contains_key(header::SET_COOKIE)
        && let Ok(value) =
            session_cookie_header(token, state.sessions.idle_timeout.as_secs(), secure)
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Audits a password attempt over HTTP (a login, or the current password of a password change).
pub(super) fn audit_sign_in(
    state: &AppState,
    peer: SocketAddr,
    username: &str,
    code: u16,
    reason: &str,
    now: SystemTime,
) {
    state.audit.record(AuditEntry {
        peer: Some(peer.to_string()),
        username: Some(username.to_owned()),
        code: Some(code),
        ..AuditEntry::new(now, AuditKind::HttpLogin, reason)
    });
}

/// Maps a refused password check to the answer: 401, or 429 with `Retry-After`.
pub(super) fn refusal_error(refused: LoginRefused) -> ApiError {
    match refused {
        LoginRefused::Wrong => ApiError::BadLogin,
        LoginRefused::Throttled(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::Throttled(secs.max(1))
        }
        LoginRefused::Internal(cause) => ApiError::Internal(cause),
    }
}

/// `POST /api/login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    secure: Option<Extension<Secure>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let now = SystemTime::now();
    let username = req.username.trim().to_owned();
    let audit = |code: u16, reason: &str| audit_sign_in(&state, peer, &username, code, reason, now);

    let checked = state
        .logins
        .check_password(peer.ip(), &username, req.password.as_bytes(), now)
        .await;
    let user = match checked {
        Ok((user, _)) => user,
        Err(refused) => {
            let error = refusal_error(refused);
            match &error {
                ApiError::Throttled(_) => {
                    tracing::warn!(%peer, %username, "web login refused: too many attempts");
                    audit(429, "refused: too many failed attempts");
                }
                ApiError::BadLogin => {
                    tracing::warn!(%peer, %username, "failed web login");
                    audit(401, "wrong user name or password");
                }
                _ => {}
            }
            return Err(error);
        }
    };
    let token = state
        .store
        .create_session(user.id, Some(peer.to_string()), now)
        .await?;
    audit(200, "signed in");
    tracing::info!(%peer, username = %user.username, "web login");
    let cookie = session_cookie_header(
        token.expose(),
        state.sessions.idle_timeout.as_secs(),
        secure.map(|Extension(s)| s),
    )?;
    let mut response = axum::Json(me_of(&state, &user).await?).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /api/logout`: ends the caller's browser session (like every `/api` call but login, it
/// needs a valid session or token; a token caller has no session to end).
pub async fn logout(
    State(state): State<AppState>,
    _caller: CurrentUser,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = session_cookie(&headers) {
        state.store.delete_session(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "porchlight_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

/// `GET /api/me`.
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<axum::Json<Me>> {
    Ok(axum::Json(me_of(&state, &user).await?))
}

/// A caller of the Recorder-compatible API (`/api/0/…`): a session cookie or API token as for
/// [`CurrentUser`], else HTTP Basic with the account password or a device key of the user.
/// A device key shows what its user may see.
#[derive(Debug, Clone)]
pub struct RecorderCaller(pub User);

impl FromRequestParts<AppState> for RecorderCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let result = match basic_credentials(&parts.headers) {
            Some(credentials) => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0)
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                basic_user(state, peer, credentials).await
            }
            None => CurrentUser::from_request_parts(parts, state)
                .await
                .map(|CurrentUser(user)| user),
        };
        result.map(RecorderCaller).map_err(|error| {
            let mut response = error.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Porchlight\""),
                );
            }
            response
        })
    }
}

/// `Authorization: Basic …` decoded to (user name, secret); `None` when absent or malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_owned(), secret.to_owned()))
}

/// Checks Basic credentials: a device key by lookup, anything else as the account password.
async fn basic_user(
    state: &AppState,
    peer: SocketAddr,
    (username, secret): (String, String),
) -> ApiResult<User> {
    if secret.starts_with("pld_") {
        return match state
            .store
            .verify_device_key(&username, secret.as_bytes())
            .await?
        {
            Some((user, _device)) => Ok(user),
            None => {
                tracing::warn!(%peer, %username, "wrong device key over HTTP Basic");
                Err(ApiError::BadLogin)
            }
        };
    }
    let now = SystemTime::now();
    match state
        .logins
        .check_password(peer.ip(), &username, secret.as_bytes(), now)
        .await
    {
        Ok((user, _)) => Ok(user),
        Err(refused) => {
            let error = refusal_error(refused);
            match &error {
                ApiError::Throttled(_) => audit_sign_in(
                    state,
                    peer,
                    &username,
                    429,
                    "refused: too many failed attempts",
                    now,
                ),
                ApiError::BadLogin => {
                    tracing::warn!(%peer, %username, "failed HTTP Basic login");
                    audit_sign_in(
                        state,
                        peer,
                        &username,
                        401,
                        "wrong user name or password",
                        now,
                    );
                }
                _ => {}
            }
            Err(error)
        }
    }
}
