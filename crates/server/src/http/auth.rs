//! Signing in and out, and finding out who is calling.
//!
//! A caller is either a browser with the `porchlight_session` cookie (HttpOnly, SameSite=Strict,
//! sliding 7-day idle expiry) or a script with `Authorization: Bearer plt_…`. Failed logins
//! are slowed down per address and per user name, and audited; passwords are never logged.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use porchlight_domain::Role;
use porchlight_domain::throttle::{Throttle, ThrottlePolicy};
use porchlight_store::{AuditEntry, AuditKind, User};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};

pub const SESSION_COOKIE: &str = "porchlight_session";

/// Failed-login counters.
#[derive(Debug)]
pub struct LoginThrottles {
    by_peer: Throttle<IpAddr>,
    by_user: Throttle<String>,
}

impl Default for LoginThrottles {
    fn default() -> Self {
        LoginThrottles {
            by_peer: Throttle::new(ThrottlePolicy {
                // A household shares one address behind NAT: be more lenient per address.
                free_attempts: 20,
                ..ThrottlePolicy::default()
            }),
            by_user: Throttle::new(ThrottlePolicy::default()),
        }
    }
}

/// The signed-in caller.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

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
            Some(user) => Ok(CurrentUser(user)),
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

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
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

/// What the UI learns about the caller.
#[derive(Serialize)]
pub struct Me {
    id: i64,
    username: String,
    role: Role,
}

impl From<&User> for Me {
    fn from(u: &User) -> Self {
        Me {
            id: u.id,
            username: u.username.clone(),
            role: u.role,
        }
    }
}

/// `POST /api/login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let now = SystemTime::now();
    let username = req.username.trim().to_owned();
    let audit = |code: u16, reason: &str| {
        state.audit.record(AuditEntry {
            id: 0,
            at: now,
            kind: AuditKind::HttpLogin,
            peer: Some(peer.to_string()),
            client_id: None,
            username: Some(username.clone()),
            protocol: None,
            code: Some(code),
            reason: reason.to_owned(),
            detail: None,
        });
    };

    let wait = {
        let t = state
            .throttles
            .lock()
            .map_err(|_| ApiError::Internal("throttle lock poisoned".into()))?;
        let a = t.by_peer.wait_time(&peer.ip(), now);
        let b = t.by_user.wait_time(&username, now);
        a.max(b)
    };
    if let Some(wait) = wait {
        audit(429, "refused: too many failed attempts");
        return Err(ApiError::Throttled(wait.as_secs().max(1)));
    }

    let user = state
        .store
        .verify_login(&username, req.password.as_bytes())
        .await?;
    let Some(user) = user else {
        let failures = {
            let mut t = state
                .throttles
                .lock()
                .map_err(|_| ApiError::Internal("throttle lock poisoned".into()))?;
            t.by_peer.record_failure(&peer.ip(), now);
            t.by_peer.forget_stale(now);
            t.by_user.forget_stale(now);
            t.by_user.record_failure(&username, now)
        };
        tracing::warn!(%peer, %username, failures, "failed web login");
        audit(401, "wrong user name or password");
        return Err(ApiError::BadLogin);
    };
    if let Ok(mut t) = state.throttles.lock() {
        t.by_user.record_success(&username);
    }
    let token = state
        .store
        .create_session(user.id, Some(peer.to_string()), now)
        .await?;
    audit(200, "signed in");
    tracing::info!(%peer, username = %user.username, "web login");
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        token.expose(),
        state.sessions.idle_timeout.as_secs()
    );
    let mut response = axum::Json(Me::from(&user)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
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
pub async fn me(CurrentUser(user): CurrentUser) -> axum::Json<Me> {
    axum::Json(Me::from(&user))
}
