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

/// An account, as listed to admins (`GET /api/users`). Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub created_at: i64,
}

/// The body of `POST /api/users`; without `password` the server generates a one-time one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    pub username: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `POST /api/users`'s answer: the generated password appears here only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedUser {
    pub user: User,
    #[serde(default)]
    pub password: Option<String>,
}

/// One of the caller's API tokens (`GET /api/tokens`); never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The body of `POST /api/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
}

/// `POST /api/tokens`'s answer: the token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    pub info: ApiToken,
}

/// The kinds of audit rows, as `GET /api/audit?kind=` takes them.
pub const AUDIT_KINDS: [&str; 15] = [
    "mqtt_connect",
    "mqtt_disconnect",
    "mqtt_publish_denied",
    "mqtt_subscribe_denied",
    "http_login",
    "friend_granted",
    "friend_revoked",
    "alarm_code_used",
    "alarm_code_refused",
    "certificate_issued",
    "certificate_revoked",
    "mqtt_tls_refused",
    "ca_rotated",
    "ca_imported",
    "server_certificate_renewed",
];

/// `GET /api/audit?result=`: rows that succeeded, or failed.
pub const AUDIT_RESULTS: [&str; 2] = ["ok", "failed"];

/// One audit row (`GET /api/audit`, admins: newest first, `?limit=` (1–1000, default 100),
/// `?before=<id>` for the next page, filtered by `?kind=`, `?user=` (exact name) and
/// `?result=`). `code` is the HTTP status or MQTT CONNACK code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// e.g. `http_login`, `mqtt_connect`.
    pub kind: String,
    pub peer: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub protocol: Option<u8>,
    pub code: Option<u16>,
    pub reason: String,
    pub detail: Option<String>,
    /// `ok` or `failed`: a refusal kind (publish/subscribe denied, a refused alarm code) or a
    /// code other than MQTT's 0 or an HTTP 2xx failed.
    pub result: String,
}

/// The body of `PUT /api/owntracks/card` as the profile sends it (the display name only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardName {
    pub name: String,
}

/// The body of `PUT /api/owntracks/card` that sets (a base64 PNG or JPEG) or removes (`null`)
/// the picture only, keeping the name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardFace {
    pub face: Option<String>,
}
