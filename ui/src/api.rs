//! The HTTP API as the UI sees it: one function per call, on the shapes of `porchlight-api`.
//!
//! All URLs are absolute paths on the page's own origin (`/api/...`), so the browser sends the
//! session cookie without any CORS setup. Every failure becomes an [`ApiError`] whose `Display`
//! is a message fit to show a user; raw transport errors are never shown.
//!
//! A 401 from any call but the login itself means the session has ended (expired, signed out
//! elsewhere, password changed): the call reports [`ApiError::SignedOut`] and the app's
//! handler, set once with [`on_signed_out`], sends the user to the login page and back to the
//! page they were on afterwards.

use std::cell::RefCell;
use std::fmt;

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use porchlight_api::account::ErrorBody;
pub use porchlight_api::account::{Credentials, Me as Session, PasswordChange, Role};

/// A failed API call, worded for the person using the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The request never got an answer (server down, network gone).
    Unreachable,
    /// The session has ended (401 outside the login): the app shows the login page.
    SignedOut,
    /// The server answered with an error status; the message is the server's own
    /// (`{"error": "..."}`) or a generic one when the body had none. `body` is the raw answer,
    /// for callers that read more from it (field errors, an alarm refusal).
    Server {
        status: u16,
        message: String,
        body: String,
    },
    /// The server answered 2xx but the body was not what the UI expects.
    UnexpectedAnswer,
}

impl ApiError {
    /// The raw body of a server error, parsed as `T` (e.g. an alarm refusal).
    pub fn body_as<T: DeserializeOwned>(&self) -> Option<T> {
        match self {
            ApiError::Server { body, .. } => serde_json::from_str(body).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unreachable => {
                f.write_str("Can't reach Porchlight. Check that the server is running.")
            }
            ApiError::SignedOut => f.write_str("Your session has ended. Sign in again."),
            ApiError::Server { message, .. } => f.write_str(message),
            ApiError::UnexpectedAnswer => f.write_str(
                "Porchlight sent an answer this page doesn't understand. Try reloading.",
            ),
        }
    }
}

thread_local! {
    static SIGNED_OUT: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

/// Sets what happens when any call finds the session ended (the app: show the login page).
pub fn on_signed_out(handler: impl Fn() + 'static) {
    SIGNED_OUT.with(|slot| *slot.borrow_mut() = Some(Box::new(handler)));
}

/// Reports that the session has ended, found outside an API call (the live feed): the app
/// shows the login page, as after a 401.
pub fn session_ended() {
    let _ = signed_out();
}

fn signed_out() -> ApiError {
    SIGNED_OUT.with(|slot| {
        if let Some(handler) = slot.borrow().as_ref() {
            handler();
        }
    });
    ApiError::SignedOut
}

/// Sends a request and checks its status: a 401 ends the session, other errors carry the
/// server's message.
async fn send(request: Result<Request, gloo_net::Error>) -> Result<Response, ApiError> {
    let request = request.map_err(|_| ApiError::UnexpectedAnswer)?;
    let response = request.send().await.map_err(|_| ApiError::Unreachable)?;
    match response.status() {
        200..=299 => Ok(response),
        401 => Err(signed_out()),
        _ => Err(error_from(response).await),
    }
}

async fn json_of<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    response
        .json::<T>()
        .await
        .map_err(|_| ApiError::UnexpectedAnswer)
}

fn with_body<B: Serialize>(builder: RequestBuilder, body: &B) -> Result<Request, gloo_net::Error> {
    builder.json(body)
}

/// `GET path`, the answer as `T`.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    json_of(send(Request::get(path).build()).await?).await
}

/// `POST path` with a JSON body, the answer as `T`.
pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    json_of(send(with_body(Request::post(path), body)).await?).await
}

/// `PUT path` with a JSON body, the answer as `T`.
pub async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    json_of(send(with_body(Request::put(path), body)).await?).await
}

/// `PATCH path` with a JSON body, the answer as `T`.
pub async fn patch<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    json_of(send(with_body(Request::patch(path), body)).await?).await
}

/// `DELETE path`, no answer expected (204).
pub async fn delete(path: &str) -> Result<(), ApiError> {
    send(Request::delete(path).build()).await.map(drop)
}

/// `PUT path` with a JSON body, no answer expected (204).
pub async fn put_no_answer<B: Serialize>(path: &str, body: &B) -> Result<(), ApiError> {
    send(with_body(Request::put(path), body)).await.map(drop)
}

/// Returns the current session, or `None` when nobody is signed in (401).
pub async fn current_session() -> Result<Option<Session>, ApiError> {
    let response = Request::get("/api/me")
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    match response.status() {
        401 => Ok(None),
        200..=299 => json_of(response).await.map(Some),
        _ => Err(error_from(response).await),
    }
}

/// Signs in; on success the server has set the session cookie. A 401 here is a wrong password,
/// not an ended session.
pub async fn sign_in(credentials: &Credentials) -> Result<Session, ApiError> {
    let response = Request::post("/api/login")
        .json(credentials)
        .map_err(|_| ApiError::UnexpectedAnswer)?
        .send()
        .await
        .map_err(|_| ApiError::Unreachable)?;
    if response.ok() {
        json_of(response).await
    } else {
        Err(error_from(response).await)
    }
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

/// Sets the signed-in user's own password (the current one is required).
pub async fn change_own_password(username: &str, current: &str, new: &str) -> Result<(), ApiError> {
    let body = PasswordChange {
        password: new.to_owned(),
        current_password: Some(current.to_owned()),
    };
    let path = format!("/api/users/{}/password", encode(username));
    // A wrong current password is a 403 with the server's message.
    put_no_answer(&path, &body).await
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    String::from(js_sys::encode_uri_component(text))
}

/// `PUT url` without a body; any 2xx is success.
pub async fn put_empty(url: &str) -> Result<(), ApiError> {
    send(Request::put(url).build()).await.map(drop)
}

async fn error_from(response: Response) -> ApiError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(parsed) if !parsed.error.trim().is_empty() => parsed.error,
        _ => fallback_message(status).to_owned(),
    };
    ApiError::Server {
        status,
        message,
        body,
    }
}

/// Used only when the server's error answer carries no message of its own.
fn fallback_message(status: u16) -> &'static str {
    match status {
        400 => "Some fields need attention.",
        401 => "Wrong username or password.",
        403 => "You don't have permission to do that.",
        404 => "Not found. It may have been removed.",
        429 => "Too many attempts. Wait a moment and try again.",
        500..=599 => "Porchlight had a problem. Try again in a moment.",
        _ => "Something went wrong. Try again.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_parses_every_role_and_defaults_the_flag() {
        for (text, role) in [
            ("admin", Role::Admin),
            ("user", Role::User),
            ("homeassistant", Role::HomeAssistant),
        ] {
            let json = format!(r#"{{"id":1,"username":"ann","role":"{text}"}}"#);
            let session: Session = serde_json::from_str(&json).unwrap();
            assert_eq!(session.role, role);
            assert!(!session.must_change_password);
        }
    }

    #[test]
    fn server_error_shows_the_servers_message() {
        let error = ApiError::Server {
            status: 429,
            message: "Too many attempts, try again in 30 s.".into(),
            body: String::new(),
        };
        assert_eq!(error.to_string(), "Too many attempts, try again in 30 s.");
    }
}
