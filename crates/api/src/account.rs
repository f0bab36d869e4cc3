//! Signing in and who the caller is: `POST /api/login`, `GET /api/me`, password changes.

use serde::{Deserialize, Serialize};

/// What a signed-in user may do (the domain's roles, as their stable strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
    #[serde(rename = "homeassistant")]
    HomeAssistant,
}

/// The caller, as `POST /api/login` and `GET /api/me` answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// The account still has a one-time password (the generated first admin password, or one
    /// generated when an admin created the account): the UI asks for a new one before
    /// anything else. Cleared by any password change.
    #[serde(default)]
    pub must_change_password: bool,
}

/// The body of `POST /api/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The body of `PUT /api/users/{username}/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordChange {
    pub password: String,
    /// Required when callers change their own password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// The JSON body of most 4xx/5xx answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
