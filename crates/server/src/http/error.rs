//! The one place where errors become HTTP responses.
//!
//! What the user sees (`{"error": "..."}`) is kept apart from what is logged: internal causes
//! are logged with detail and answered with a generic message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Sign in first.")]
    Unauthorized,
    #[error("Wrong user name or password.")]
    BadLogin,
    #[error("You are not allowed to do that.")]
    Forbidden,
    /// A password change by the account's owner gave a wrong current password.
    #[error("The current password is wrong.")]
    WrongCurrentPassword,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 429 with `Retry-After`: too many password attempts, or too many password checks at once.
    #[error("Too many sign-in attempts. Try again in {}.", in_seconds(*.0))]
    Throttled(u64),
    /// 429 with `Retry-After`: too many alarm codes refused as "PIN already in use".
    #[error("Too many codes refused as already in use. Try again in {}.", in_seconds(*.0))]
    TooManyTakenPins(u64),
    #[error("Porchlight had an internal error; see its log.")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

fn in_seconds(secs: u64) -> String {
    if secs == 1 {
        "1 second".into()
    } else {
        format!("{secs} seconds")
    }
}

impl From<porchlight_store::Error> for ApiError {
    fn from(e: porchlight_store::Error) -> Self {
        use porchlight_store::Error as E;
        match e {
            E::Invalid(_) | E::BadInput(_) | E::LastAdmin => ApiError::BadRequest(e.to_string()),
            E::AlreadyExists { .. } | E::PinTaken => ApiError::Conflict(e.to_string()),
            E::NotFound { .. } => ApiError::NotFound(e.to_string()),
            E::Busy => ApiError::Throttled(1),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::BadLogin => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::WrongCurrentPassword => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Throttled(_) | ApiError::TooManyTakenPins(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let ApiError::Throttled(secs) | ApiError::TooManyTakenPins(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// `Json<T>` whose rejections (bad JSON, wrong content type, too large) are JSON errors too.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let body = Json(json!({ "error": rejection.body_text() }));
                Err((status, body).into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_answers_429_with_retry_after_and_a_wrong_current_password_403() {
        let r = ApiError::Throttled(7).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let busy = ApiError::from(porchlight_store::Error::Busy).into_response();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let wrong = ApiError::WrongCurrentPassword.into_response();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert!(!wrong.headers().contains_key(header::RETRY_AFTER));
    }
}
