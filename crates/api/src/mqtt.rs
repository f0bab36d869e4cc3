//! MQTT settings: the embedded broker's listeners (`GET /api/settings/mqtt/broker`), its
//! connected clients (`GET /api/settings/mqtt/clients`), and the
//! link to an external broker (`/api/settings/mqtt`, its `test`), with the Client ID prefix
//! rule both the server and the UI check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// MQTT 3.1's longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 23;
/// Bytes of the per-process suffix: `-` and 6 hex characters.
pub const SUFFIX_BYTES: usize = 7;
/// The longest Client ID prefix: 23 − 7.
pub const MAX_PREFIX_BYTES: usize = MAX_CLIENT_ID_BYTES - SUFFIX_BYTES;

/// Checks a Client ID prefix: 1–16 bytes of printable ASCII, no spaces. The error is a
/// sentence fit to show next to the field.
pub fn check_client_id_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the Client ID prefix must not be empty".into());
    }
    if let Some(c) = prefix.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the Client ID prefix may hold only printable ASCII characters without spaces; {c:?} is not one"
        ));
    }
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err(format!(
            "the Client ID prefix is {} bytes; at most {MAX_PREFIX_BYTES} are allowed, because \
             Porchlight appends \"-\" and 6 random characters per process and MQTT 3.1 brokers \
             accept client ids of at most {MAX_CLIENT_ID_BYTES} bytes",
            prefix.len()
        ));
    }
    Ok(())
}

/// The embedded broker, for the settings screen (`GET /api/settings/mqtt/broker`, admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerView {
    /// `running`, `stopped` or `disabled`.
    pub status: String,
    /// The plain MQTT port, when the broker is enabled.
    pub port: Option<u16>,
    /// The MQTT-over-TLS port, when a TLS listener is configured.
    pub tls_port: Option<u16>,
    /// The certificate listener's port (MQTT over TLS with a client certificate from the
    /// built-in CA, no password), when it is on.
    #[serde(default)]
    pub cert_port: Option<u16>,
    /// Clients connected right now.
    pub connections: usize,
}

/// One client connected to the embedded broker (`GET /api/settings/mqtt/clients`, admins;
/// the answer is a list of these, sorted by user name then client id). Never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedClientView {
    pub client_id: String,
    /// The account the client authenticated as.
    pub username: String,
    /// The device, when it logged in with a device key (or a certificate naming one).
    pub device: Option<String>,
    /// `password`, `device_key` or `certificate`.
    pub login: String,
    /// The client's address, `ip:port`.
    pub peer: Option<String>,
    /// The MQTT protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub protocol: u8,
    /// Clean session (MQTT 3.x) / clean start (MQTT 5), as the client asked.
    pub clean_start: bool,
    /// When it connected, Unix seconds.
    pub connected_since: i64,
    /// Topic filters it is subscribed to.
    pub subscriptions: usize,
}

/// The link's state: `GET /api/settings/mqtt`'s `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatusView {
    /// `disconnected`, `connecting`, `connected`, `failed`.
    pub state: String,
    pub message: Option<String>,
    /// Unix milliseconds.
    pub since: i64,
    pub client_id: Option<String>,
    pub attempts: u32,
}

/// `GET /api/settings/mqtt` (and the `PUT`'s answer). The password is never answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSettingsView {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: Option<String>,
    pub username: Option<String>,
    pub client_id_prefix: String,
    pub password_set: bool,
    /// This process's client id with the stored prefix.
    pub client_id: String,
    pub availability_topic: String,
    pub status: LinkStatusView,
}

/// A `PUT /api/settings/mqtt` or test body as the UI sends it: absent fields keep their stored
/// value; `password` absent keeps the stored one, `""` clears it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkSettingsChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A 400 answer with a message per bad field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrors {
    pub errors: BTreeMap<String, String>,
}

/// `POST /api/settings/mqtt/test`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// `connected`, `refused`, `unreachable`, `tls_error`.
    pub result: String,
    pub message: String,
    pub client_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bytes_pass_seventeen_are_refused_with_the_reason() {
        assert!(check_client_id_prefix(&"p".repeat(16)).is_ok());
        let why = check_client_id_prefix(&"p".repeat(17)).unwrap_err();
        assert!(why.contains("at most 16"), "{why}");
        assert!(why.contains("23"), "{why}");
        assert!(check_client_id_prefix("has space").is_err());
        assert!(check_client_id_prefix("").is_err());
    }
}
