//! The HTTP API as the UI sees it: request/response shapes and one function per call.
//!
//! All URLs are absolute paths on the page's own origin (`/api/...`), so the browser sends the
//! session cookie without any CORS setup. This module turns every failure into an [`ApiError`]
//! whose `Display` is a message fit to show a user; it never shows raw transport errors.

use std::fmt;

use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a signed-in user may do; mirrors the server's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    #[serde(rename = "homeassistant")]
    HomeAssistant,
}

/// The signed-in user, as returned by `POST /api/login` and `GET /api/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub role: Role,
}

/// The body of `POST /api/login`.
#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The JSON body the server sends with 4xx/5xx answers.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
}

/// A failed API call, worded for the person using the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The request never got an answer (server down, network gone).
    Unreachable,
    /// The server answered with an error status; the message is the server's own
    /// (`{"error": "..."}`) or a generic one when the body had none.
    Server { status: u16, message: String },
    /// The server answered 2xx but the body was not what the UI expects.
    UnexpectedAnswer,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unreachable => {
                f.write_str("Can't reach Porchlight. Check that the server is running.")
            }
            ApiError::Server { message, .. } => f.write_str(message),
            ApiError::UnexpectedAnswer => f.write_str(
                "Porchlight sent an answer this page doesn't understand. Try reloading.",
            ),
        }
    }
}

/// Returns the current session, or `None` when nobody is signed in (401).
pub async fn current_session() -> Result<Option<Session>, ApiError> {
    let response = Request::get("/api/me")
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    match response.status() {
        401 => Ok(None),
        _ => session_from(response).await.map(Some),
    }
}

/// Signs in; on success the server has set the session cookie.
pub async fn sign_in(credentials: &Credentials) -> Result<Session, ApiError> {
    let response = Request::post("/api/login")
        .json(credentials)
        .map_err(|_| ApiError::UnexpectedAnswer)?
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    session_from(response).await
}

/// Ends the session on the server. A 401 means it had already ended, which is fine.
pub async fn sign_out() -> Result<(), ApiError> {
    let response = Request::post("/api/logout")
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    if response.ok() || response.status() == 401 {
        Ok(())
    } else {
        Err(error_from(response).await)
    }
}

/// `GET url` and its JSON answer.
pub async fn get_json<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let response = Request::get(url)
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    json_from(response).await
}

/// `POST url` with a JSON body, and its JSON answer.
pub async fn post_json<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: &B,
) -> Result<T, ApiError> {
    let response = Request::post(url)
        .json(body)
        .map_err(|_| ApiError::UnexpectedAnswer)?
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    json_from(response).await
}

/// `PUT url` (no body); any 2xx is success.
pub async fn put_empty(url: &str) -> Result<(), ApiError> {
    let response = Request::put(url)
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    ok_from(response).await
}

/// `DELETE url`; any 2xx is success.
pub async fn delete(url: &str) -> Result<(), ApiError> {
    let response = Request::delete(url)
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    ok_from(response).await
}

/// `text` as one URL path segment or query value (percent-encoded).
pub fn encode(text: &str) -> String {
    String::from(js_sys::encode_uri_component(text))
}

async fn json_from<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    if response.ok() {
        response
            .json::<T>()
            .await
            .map_err(|_| ApiError::UnexpectedAnswer)
    } else {
        Err(error_from(response).await)
    }
}

async fn ok_from(response: Response) -> Result<(), ApiError> {
    if response.ok() {
        Ok(())
    } else {
        Err(error_from(response).await)
    }
}

async fn session_from(response: Response) -> Result<Session, ApiError> {
    if response.ok() {
        response
            .json::<Session>()
            .await
            .map_err(|_| ApiError::UnexpectedAnswer)
    } else {
        Err(error_from(response).await)
    }
}

async fn error_from(response: Response) -> ApiError {
    let status = response.status();
    let message = match response.json::<ErrorBody>().await {
        Ok(body) if !body.error.trim().is_empty() => body.error,
        _ => fallback_message(status).to_owned(),
    };
    ApiError::Server { status, message }
}

/// Used only when the server's error answer carries no message of its own.
fn fallback_message(status: u16) -> &'static str {
    match status {
        401 => "Wrong username or password.",
        403 => "You don't have permission to do that.",
        429 => "Too many attempts. Wait a moment and try again.",
        500..=599 => "Porchlight had a problem. Try again in a moment.",
        _ => "Something went wrong. Try again.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_parses_every_role() {
        for (text, role) in [
            ("admin", Role::Admin),
            ("user", Role::User),
            ("homeassistant", Role::HomeAssistant),
        ] {
            let json = format!(r#"{{"username":"ann","role":"{text}"}}"#);
            let session: Session = serde_json::from_str(&json).unwrap();
            assert_eq!(session.role, role);
            assert_eq!(session.username, "ann");
        }
    }

    #[test]
    fn credentials_serialize_as_the_login_body() {
        let body = serde_json::to_value(Credentials {
            username: "ann".into(),
            password: "pw".into(),
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"username": "ann", "password": "pw"})
        );
    }

    #[test]
    fn server_error_shows_the_servers_message() {
        let error = ApiError::Server {
            status: 429,
            message: "Too many attempts, try again in 30 s.".into(),
        };
        assert_eq!(error.to_string(), "Too many attempts, try again in 30 s.");
    }
}
