//! Device onboarding: the OwnTracks `.otrc` configuration for a new device, and the
//! `owntracks:///config?inline=…` URL a QR code carries (booklet, "Remote configuration").
//!
//! - `mode` 0 is MQTT (`host`, `port`, `tls`, `mqttProtocolLevel` 4 = MQTT 3.1.1, `clientId`),
//!   `cleanSession` false (a persistent session: refused publishes are resent),
//!   `mode` 3 is HTTP (`url`, the server's `/pub`). Both log in with `auth: true`,
//!   `username` and `password`; `deviceId` and `tid` name the device. `encryptionKey`, when
//!   the device has one, turns on the apps' payload encryption with that passphrase.
//! - The URL carries the standard base64 of the JSON, as the booklet makes it
//!   (`openssl enc -a -A`). Its `+`, `/` and `=` are percent-encoded: a query parser that turns
//!   `+` into a space (Android's `Uri.getQueryParameter` does) would otherwise corrupt it, and
//!   every query parser percent-decodes.
//!
//! Pure: the caller supplies the credentials it created; nothing here stores or sends them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The scheme and path the OwnTracks apps open to import a configuration.
pub const INLINE_CONFIG_URL_PREFIX: &str = "owntracks:///config?inline=";

/// OwnTracks' `mode` for MQTT.
pub const MODE_MQTT: u8 = 0;
/// OwnTracks' `mode` for HTTP.
pub const MODE_HTTP: u8 = 3;
/// `mqttProtocolLevel` for MQTT 3.1.1.
pub const MQTT_PROTOCOL_LEVEL_3_1_1: u8 = 4;

/// Where the phone sends its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The embedded broker.
    Mqtt {
        host: String,
        port: u16,
        tls: bool,
        /// The MQTT client id the broker expects for this device.
        client_id: String,
    },
    /// HTTP mode: the full URL of `/pub`.
    Http { url: String },
}

/// Everything an OwnTracks app needs to start publishing as one device. `Debug` hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub endpoint: Endpoint,
    /// The login: the user name (or whatever the device key logs in as).
    pub username: String,
    /// The device's secret, shown once.
    pub password: String,
    /// The `<device>` topic level.
    pub device_id: String,
    /// The two-character tracker id shown on maps.
    pub tid: String,
    /// The payload encryption passphrase (`encryptionKey`), when the device encrypts.
    pub encryption_key: Option<String>,
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &crate::secret::mask(&self.password))
            .field("device_id", &self.device_id)
            .field("tid", &self.tid)
            .field(
                "encryption_key",
                &self.encryption_key.as_deref().map(crate::secret::mask),
            )
            .finish()
    }
}

impl DeviceConfig {
    /// The `_type: configuration` object (the content of an `.otrc` file).
    pub fn to_json(&self) -> Value {
        let mut config = json!({
            "_type": "configuration",
            "auth": true,
            "username": self.username,
            "password": self.password,
            "deviceId": self.device_id,
            "tid": self.tid,
        });
        let extra = match &self.endpoint {
            Endpoint::Mqtt {
                host,
                port,
                tls,
                client_id,
            } => json!({
                "mode": MODE_MQTT,
                "host": host,
                "port": port,
                "tls": tls,
                "clientId": client_id,
                "mqttProtocolLevel": MQTT_PROTOCOL_LEVEL_3_1_1,
                // A persistent session: a publish the broker refused (not committed) is
                // resent after reconnecting, and commands reach a phone that was offline.
                "cleanSession": false,
            }),
            Endpoint::Http { url } => json!({ "mode": MODE_HTTP, "url": url }),
        };
        if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
            config.extend(extra);
            if let Some(key) = &self.encryption_key {
                config.insert("encryptionKey".into(), Value::String(key.clone()));
            }
        }
        config
    }

    /// The `.otrc` file's text (pretty-printed JSON).
    pub fn to_otrc(&self) -> String {
        // A `Value` always serialises; fall back to the compact form rather than panic.
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_else(|_| self.to_json().to_string())
    }

    /// `owntracks:///config?inline=<base64 of the compact JSON, percent-encoded>`.
    pub fn inline_url(&self) -> String {
        let encoded = STANDARD.encode(self.to_json().to_string());
        let mut url = String::with_capacity(INLINE_CONFIG_URL_PREFIX.len() + encoded.len() * 3 / 2);
        url.push_str(INLINE_CONFIG_URL_PREFIX);
        for c in encoded.chars() {
            match c {
                '+' => url.push_str("%2B"),
                '/' => url.push_str("%2F"),
                '=' => url.push_str("%3D"),
                c => url.push(c),
            }
        }
        url
    }
}

/// The OwnTracks apps' default tracker id: the last two characters of the device id.
pub fn default_tid(device_id: &str) -> String {
    let chars: Vec<char> = device_id.chars().collect();
    let start = chars.len().saturating_sub(2);
    chars[start..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt() -> DeviceConfig {
        DeviceConfig {
            endpoint: Endpoint::Mqtt {
                host: "hub.example.org".into(),
                port: 8883,
                tls: true,
                client_id: "alice-phone".into(),
            },
            username: "alice".into(),
            password: "s3cret-device-key".into(),
            device_id: "phone".into(),
            tid: "al".into(),
            encryption_key: None,
        }
    }

    fn decode_inline(url: &str) -> Value {
        let query = url.strip_prefix(INLINE_CONFIG_URL_PREFIX).unwrap();
        assert!(
            query.chars().all(|c| c.is_ascii_alphanumeric() || c == '%'),
            "only unreserved characters and escapes: {query}"
        );
        let unescaped = query
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        serde_json::from_slice(&STANDARD.decode(unescaped).unwrap()).unwrap()
    }

    #[test]
    fn mqtt_config_has_the_booklet_field_names() {
        let json = mqtt().to_json();
        assert_eq!(json["_type"], "configuration");
        assert_eq!(json["mode"], 0);
        assert_eq!(json["host"], "hub.example.org");
        assert_eq!(json["port"], 8883);
        assert_eq!(json["tls"], true);
        assert_eq!(json["auth"], true);
        assert_eq!(json["username"], "alice");
        assert_eq!(json["password"], "s3cret-device-key");
        assert_eq!(json["deviceId"], "phone");
        assert_eq!(json["clientId"], "alice-phone");
        assert_eq!(json["tid"], "al");
        assert_eq!(json["mqttProtocolLevel"], 4);
        assert_eq!(json["cleanSession"], false);
        assert!(json.get("url").is_none());
        assert!(json.get("encryptionKey").is_none());
    }

    #[test]
    fn an_encryption_key_is_carried_as_encryption_key() {
        let config = DeviceConfig {
            encryption_key: Some("payload passphrase 1234".into()),
            ..mqtt()
        };
        assert_eq!(config.to_json()["encryptionKey"], "payload passphrase 1234");
        assert_eq!(
            decode_inline(&config.inline_url())["encryptionKey"],
            "payload passphrase 1234"
        );
        let text = format!("{config:?}");
        assert!(!text.contains("payload passphrase"), "{text}");
        assert!(text.contains("****1234"), "{text}");
    }

    #[test]
    fn http_config_has_mode_3_and_the_pub_url() {
        let config = DeviceConfig {
            endpoint: Endpoint::Http {
                url: "https://hub.example.org/pub".into(),
            },
            ..mqtt()
        };
        let json = config.to_json();
        assert_eq!(json["mode"], 3);
        assert_eq!(json["url"], "https://hub.example.org/pub");
        assert_eq!(json["auth"], true);
        assert!(json.get("host").is_none());
        assert!(json.get("mqttProtocolLevel").is_none());
    }

    #[test]
    fn inline_url_decodes_back_to_the_config() {
        for config in [
            mqtt(),
            DeviceConfig {
                // Characters whose base64 contains `+` and `/`.
                password: "\u{fb}\u{ff}>?~~~".into(),
                ..mqtt()
            },
        ] {
            let url = config.inline_url();
            assert!(url.starts_with("owntracks:///config?inline="));
            assert_eq!(decode_inline(&url), config.to_json());
        }
    }

    #[test]
    fn otrc_is_the_same_json() {
        let text = mqtt().to_otrc();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value, mqtt().to_json());
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", mqtt());
        assert!(!text.contains("s3cret-device-key"), "{text}");
    }

    #[test]
    fn default_tid_is_the_last_two_characters() {
        assert_eq!(default_tid("phone"), "ne");
        assert_eq!(default_tid("x"), "x");
        assert_eq!(default_tid(""), "");
        assert_eq!(default_tid("möö"), "öö");
    }
}
