//! The rules of the optional link to an external MQTT broker (Mosquitto, EMQX, Home
//! Assistant's Mosquitto add-on): its settings and their validation, the client id scheme,
//! the reconnect backoff, and what a refused CONNECT means to a user (ADR 0015).
//!
//! - **Client id**: the configured prefix (default `porchlight`), `-`, and 6 hex characters
//!   chosen once per process ([`client_id`]), so two processes never share an identity (a
//!   broker would evict the older one with "session taken over", and they would then evict
//!   each other forever). MQTT 3.1 allows client ids of at most 23 bytes: a prefix is 1–16
//!   bytes ([`MAX_PREFIX_BYTES`]) of printable ASCII without spaces.
//! - **Backoff** ([`backoff`]): 1 s doubled per failed attempt, capped at 60 s, with jitter
//!   (the caller draws it) so many clients restarted together do not reconnect in step.
//! - **Refusals** ([`Refusal::from_connack`]): the CONNACK codes mapped to messages that say
//!   what to change; a refusal that only a settings change can cure stops the retries.
//!
//! No I/O and no randomness here: the random suffix and the jitter come in as parameters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default Client ID prefix.
pub const DEFAULT_PREFIX: &str = "porchlight";
// The Client ID prefix rule lives in the wasm-safe API crate, so the UI checks a prefix as
// the server does (one rule, two sides).
pub use porchlight_api::mqtt::{
    MAX_CLIENT_ID_BYTES, MAX_PREFIX_BYTES, SUFFIX_BYTES, check_client_id_prefix,
};
/// The longest host name (DNS).
pub const MAX_HOST_BYTES: usize = 253;
/// The longest user name and password accepted (MQTT allows 65,535; no broker needs more).
pub const MAX_CREDENTIAL_BYTES: usize = 1024;
/// The first reconnect delay.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest reconnect delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The link's settings, as stored and as the API shows them (the password is kept apart: it
/// is write-only and never part of this value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkSettings {
    /// Off: no connection is made.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// TLS towards the broker.
    pub tls: bool,
    /// A PEM file of CA certificates to trust (TLS only); `None`: the system's roots.
    pub ca_file: Option<String>,
    pub username: Option<String>,
    /// The Client ID prefix; each process appends `-` and 6 random hex characters.
    pub client_id_prefix: String,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            enabled: false,
            host: String::new(),
            port: 1883,
            tls: false,
            ca_file: None,
            username: None,
            client_id_prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// Validation errors by field name (`host`, `port`, `client_id_prefix`, …), each a sentence.
pub type FieldErrors = BTreeMap<&'static str, String>;

/// Checks a host name or IP address (no scheme, no port, no spaces).
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("a host is required (a name or an IP address)".into());
    }
    if host.len() > MAX_HOST_BYTES {
        return Err(format!("a host name is at most {MAX_HOST_BYTES} bytes"));
    }
    if host.contains("://") {
        return Err("give the host name alone, without a scheme such as mqtt://".into());
    }
    if host.chars().any(|c| !c.is_ascii_graphic() || c == '/') {
        return Err("a host is a name or an IP address, without spaces or slashes".into());
    }
    Ok(())
}

/// Checks all of `settings` (and a new password, when one is given); every bad field gets its
/// own message. The host is required only when the link is enabled.
pub fn validate(settings: &LinkSettings, new_password: Option<&str>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::new();
    if let Err(e) = check_client_id_prefix(&settings.client_id_prefix) {
        errors.insert("client_id_prefix", e);
    }
    if (settings.enabled || !settings.host.is_empty())
        && let Err(e) = check_host(&settings.host)
    {
        errors.insert("host", e);
    }
    if settings.port == 0 {
        errors.insert("port", "the port must be 1–65535".into());
    }
    if let Some(ca) = &settings.ca_file {
        if ca.trim().is_empty() {
            errors.insert(
                "ca_file",
                "give a file path, or null for the system's CAs".into(),
            );
        } else if !settings.tls {
            errors.insert("ca_file", "a CA file is used only with TLS on".into());
        }
    }
    if let Some(user) = &settings.username
        && (user.is_empty() || user.len() > MAX_CREDENTIAL_BYTES)
    {
        errors.insert(
            "username",
            format!("a user name is 1–{MAX_CREDENTIAL_BYTES} bytes, or null for none"),
        );
    }
    if new_password.is_some_and(|p| p.len() > MAX_CREDENTIAL_BYTES) {
        errors.insert(
            "password",
            format!("a password is at most {MAX_CREDENTIAL_BYTES} bytes"),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The client id of a process: `prefix`, `-`, and the 6 hex characters of `suffix` (3 random
/// bytes drawn once per process; a test connection draws its own).
pub fn client_id(prefix: &str, suffix: [u8; 3]) -> String {
    format!(
        "{prefix}-{:02x}{:02x}{:02x}",
        suffix[0], suffix[1], suffix[2]
    )
}

/// The delay before reconnect attempt `failures` (1 after the first failure): 1 s doubled
/// each time, capped at 60 s, then scaled by a jitter in `[0.5, 1.0]` (`jitter` is a draw
/// from `[0, 1)`; values outside are clamped).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_START.saturating_mul(1u32 << exp).min(BACKOFF_CAP);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    base.mul_f64(0.5 + jitter / 2.0)
}

/// Why a broker refused our CONNECT (its CONNACK return code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 1: the broker does not speak our MQTT version.
    ProtocolVersion,
    /// 2: the client id was rejected.
    IdentifierRejected,
    /// 3: the broker is up but unavailable.
    ServerUnavailable,
    /// 4: wrong user name or password.
    BadCredentials,
    /// 5: the account may not connect.
    NotAuthorized,
    /// Any other code.
    Other(u8),
}

impl Refusal {
    /// The refusal for a CONNACK return code (`None` for 0, accepted).
    pub fn from_connack(code: u8) -> Option<Refusal> {
        Some(match code {
            0 => return None,
            1 => Refusal::ProtocolVersion,
            2 => Refusal::IdentifierRejected,
            3 => Refusal::ServerUnavailable,
            4 => Refusal::BadCredentials,
            5 => Refusal::NotAuthorized,
            other => Refusal::Other(other),
        })
    }

    /// Whether retrying with the same settings could ever succeed. Wrong credentials, a
    /// refused account or client id need a settings change: retrying them only fills the
    /// broker's log (and may lock the account).
    pub fn retry_helps(&self) -> bool {
        matches!(self, Refusal::ServerUnavailable | Refusal::Other(_))
    }

    /// A message for the user that says what to change.
    pub fn message(&self, client_id: &str) -> String {
        match self {
            Refusal::ProtocolVersion => {
                "refused by the broker: it does not accept MQTT 3.1.1 connections".into()
            }
            Refusal::IdentifierRejected => format!(
                "refused by the broker: client id {client_id:?} rejected (identifier rejected); \
                 the broker may limit client ids to 23 bytes or to some characters: shorten or \
                 change the Client ID prefix"
            ),
            Refusal::ServerUnavailable => {
                "refused by the broker: server unavailable; retrying".into()
            }
            Refusal::BadCredentials => {
                "refused by the broker: bad user name or password; check the credentials".into()
            }
            Refusal::NotAuthorized => {
                "refused by the broker: not authorized; check the user name and password, and \
                 the broker's access rules for this account"
                    .into()
            }
            Refusal::Other(code) => format!("refused by the broker (CONNACK code {code})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_with_its_suffix_fits_mqtt_3_1() {
        let id = client_id(DEFAULT_PREFIX, [0xab, 0x01, 0xff]);
        assert_eq!(id, "porchlight-ab01ff");
        assert!(id.len() <= MAX_CLIENT_ID_BYTES);
        let longest = client_id(&"p".repeat(16), [0, 0, 0]);
        assert!(check_client_id_prefix(&"p".repeat(16)).is_ok());
        assert_eq!(longest.len(), MAX_CLIENT_ID_BYTES);
    }

    #[test]
    fn a_17_byte_prefix_is_refused_and_the_message_says_why() {
        let e = check_client_id_prefix(&"a".repeat(17)).unwrap_err();
        assert!(
            e.contains("17 bytes") && e.contains("16") && e.contains("23"),
            "{e}"
        );
        // Bytes, not characters: 9 two-byte characters are 18 bytes (and not ASCII anyway).
        assert!(check_client_id_prefix("ééééééééé").is_err());
    }

    #[test]
    fn prefixes_are_printable_ascii_without_spaces() {
        assert!(check_client_id_prefix("").is_err());
        assert!(check_client_id_prefix("porch light").is_err());
        assert!(check_client_id_prefix("porch\tlight").is_err());
        assert!(check_client_id_prefix("porch_light.1").is_ok());
    }

    #[test]
    fn validation_names_each_bad_field() {
        let settings = LinkSettings {
            enabled: true,
            host: "mqtt://broker".into(),
            port: 0,
            tls: false,
            ca_file: Some("/etc/ca.pem".into()),
            username: Some(String::new()),
            client_id_prefix: "x".repeat(17),
        };
        let errors = validate(&settings, Some(&"p".repeat(2000))).unwrap_err();
        let fields: Vec<_> = errors.keys().copied().collect();
        assert_eq!(
            fields,
            [
                "ca_file",
                "client_id_prefix",
                "host",
                "password",
                "port",
                "username"
            ]
        );
        assert!(validate(&LinkSettings::default(), None).is_ok());
        let enabled = LinkSettings {
            enabled: true,
            ..LinkSettings::default()
        };
        assert!(validate(&enabled, None).unwrap_err().contains_key("host"));
    }

    #[test]
    fn backoff_doubles_to_a_60_second_cap_with_jitter_in_the_upper_half() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(7, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(3, f64::NAN), Duration::from_secs(2));
    }

    #[test]
    fn refusals_say_what_to_change_and_which_to_stop_retrying() {
        let id = Refusal::from_connack(2)
            .unwrap()
            .message("porchlight-abcdef");
        assert!(
            id.contains("Client ID prefix") && id.contains("porchlight-abcdef"),
            "{id}"
        );
        assert!(
            Refusal::from_connack(4)
                .unwrap()
                .message("x")
                .contains("password")
        );
        assert!(
            Refusal::from_connack(5)
                .unwrap()
                .message("x")
                .contains("not authorized")
        );
        assert!(!Refusal::BadCredentials.retry_helps());
        assert!(!Refusal::NotAuthorized.retry_helps());
        assert!(!Refusal::IdentifierRejected.retry_helps());
        assert!(Refusal::ServerUnavailable.retry_helps());
        assert_eq!(Refusal::from_connack(0), None);
    }
}
