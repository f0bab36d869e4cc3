//! Device keys (the MQTT/HTTP credentials of one phone) as the API shows them:
//! `GET /api/devices`, `POST /api/devices` (a new key, its `.otrc` and QR code, shown once),
//! `DELETE /api/devices/{username}/{name}?history=keep|purge`. Times are Unix milliseconds.

use serde::{Deserialize, Serialize};

/// A device key of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
}

/// How the OwnTracks app of a new device talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnboardingMode {
    Mqtt,
    Http,
}

/// The body of `POST /api/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub name: String,
    /// Only admins may add devices for someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The OwnTracks app's mode in the returned `.otrc`: `mqtt` (the default when the broker
    /// runs) or `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<OnboardingMode>,
    /// Also generate a payload encryption key, stored for decryption and carried in the
    /// `.otrc` as `encryptionKey` (and returned once as `encryption_key`).
    #[serde(default)]
    pub encryption: bool,
}

/// The answer of `POST /api/devices`: the new key and everything an OwnTracks app needs to
/// use it, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddedDevice {
    pub device: DeviceView,
    pub mqtt_username: String,
    pub mqtt_password: String,
    /// The `.otrc` configuration (ADR 0007), as the app imports it.
    pub otrc: serde_json::Value,
    /// `owntracks:///config?inline=…`: the configuration as a link the app opens.
    pub inline_url: String,
    /// `inline_url` as an SVG QR code (`None` if too long for one).
    pub qr_svg: Option<String>,
    pub encryption_key: Option<String>,
    /// Where the phone downloads the CA certificate to trust (`…/api/ca`), when the
    /// configuration sends it to a listener with the built-in CA's certificate (MQTT over TLS,
    /// or HTTPS); the OwnTracks apps read the CA from the phone's trust store (iOS: a profile;
    /// Android: a user CA, or the app's `tlsCaCrt` file), not from the `.otrc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_url: Option<String>,
}

/// What becomes of a deleted device's OwnTracks history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    Keep,
    Purge,
}
