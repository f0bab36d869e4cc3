//! Onboarding a phone: the `.otrc` configuration for a new device key (built by
//! [`porchlight_domain::owntracks::DeviceConfig`], ADR 0007) and its QR code as SVG.
//!
//! Where the phone connects: `[owntracks] public_host` when set, else the host name of the
//! request that created the device (what the browser reached us by). MQTT mode uses the TLS
//! listener's port with `tls: true` when phones are sent there (`[mqtt.tls]`, or the built-in
//! CA's listener with HTTPS on), else the plain port with `tls: false`; HTTP mode uses
//! `https://<host>/pub` with HTTPS on, else `http://<host>/pub`. When the phone must trust the
//! built-in CA, [`ca_url`] says where it downloads it (the `.otrc` cannot carry a CA: the apps
//! take it from the phone's trust store, or on Android from a file named by `tlsCaCrt`).

use porchlight_domain::owntracks::config::default_tid;
use porchlight_domain::owntracks::{DeviceConfig, Endpoint};
use qrcode::QrCode;
use qrcode::render::svg;

use super::OwnTracksSettings;
use super::accounts::OnboardingMode;

/// Used when neither `public_host` nor a `Host` header names this server.
const FALLBACK_HOST: &str = "localhost";

/// The configuration for `owner`'s new device `device` whose key is `key`.
pub fn device_config(
    settings: &OwnTracksSettings,
    mode: OnboardingMode,
    request_host: Option<&str>,
    owner: &str,
    device: &str,
    key: &str,
) -> DeviceConfig {
    let endpoint = match mode {
        OnboardingMode::Mqtt => {
            let (port, tls) = match (settings.mqtt_tls_port, settings.mqtt_port) {
                (Some(port), _) => (port, true),
                (None, port) => (port.unwrap_or(1883), false),
            };
            let host = match (&settings.public_host, request_host) {
                (Some(host), _) => host.clone(),
                (None, Some(header)) => host_name(header).to_owned(),
                (None, None) => FALLBACK_HOST.to_owned(),
            };
            Endpoint::Mqtt {
                host,
                port,
                tls,
                client_id: format!("{owner}-{device}"),
            }
        }
        OnboardingMode::Http => {
            let authority = match (&settings.public_host, request_host) {
                (Some(host), _) => format!("{host}:{}", settings.http_port),
                (None, Some(header)) => header.to_owned(),
                (None, None) => format!("{FALLBACK_HOST}:{}", settings.http_port),
            };
            let scheme = if settings.https { "https" } else { "http" };
            Endpoint::Http {
                url: format!("{scheme}://{authority}/pub"),
            }
        }
    };
    DeviceConfig {
        endpoint,
        username: owner.to_owned(),
        password: key.to_owned(),
        device_id: device.to_owned(),
        tid: default_tid(device),
        encryption_key: None,
    }
}

/// `<scheme>://<host>/api/ca`, the built-in CA's certificate, when `config` sends the phone
/// to a listener with a certificate from it; `None` when it does not (plain, or the
/// operator's own certificate files).
pub fn ca_url(
    settings: &OwnTracksSettings,
    config: &DeviceConfig,
    request_host: Option<&str>,
) -> Option<String> {
    let needs_ca = match &config.endpoint {
        Endpoint::Mqtt { tls, .. } => *tls && settings.mqtt_tls_builtin,
        Endpoint::Http { url } => url.starts_with("https://"),
    };
    if !needs_ca {
        return None;
    }
    let authority = match (&settings.public_host, request_host) {
        (Some(host), _) => format!("{host}:{}", settings.http_port),
        (None, Some(header)) => header.to_owned(),
        (None, None) => format!("{FALLBACK_HOST}:{}", settings.http_port),
    };
    let scheme = if settings.https { "https" } else { "http" };
    Some(format!("{scheme}://{authority}/api/ca"))
}

/// A `Host` header without its port (`[::1]:8080` → `::1`).
fn host_name(header: &str) -> &str {
    if let Some(rest) = header.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match header.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => header,
    }
}

/// `text` as an SVG QR code; `None` if it is too long for one.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(256, 256)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OwnTracksSettings {
        OwnTracksSettings {
            command_ttl: std::time::Duration::from_secs(60),
            public_host: None,
            http_port: 8080,
            mqtt_port: Some(1883),
            mqtt_tls_port: None,
            mqtt_cert_port: None,
            https: false,
            mqtt_tls_builtin: false,
        }
    }

    #[test]
    fn with_https_phones_get_tls_urls_and_where_to_fetch_the_ca() {
        let mut s = settings();
        let plain = device_config(&s, OnboardingMode::Http, Some("hub:8080"), "a", "p", "k");
        assert_eq!(plain.to_json()["url"], "http://hub:8080/pub");
        assert_eq!(ca_url(&s, &plain, Some("hub:8080")), None);
        let mqtt = device_config(&s, OnboardingMode::Mqtt, Some("hub:8080"), "a", "p", "k");
        assert_eq!(ca_url(&s, &mqtt, Some("hub:8080")), None);

        s.https = true;
        s.mqtt_tls_port = Some(8883);
        s.mqtt_tls_builtin = true;
        let http = device_config(&s, OnboardingMode::Http, Some("hub:8080"), "a", "p", "k");
        assert_eq!(http.to_json()["url"], "https://hub:8080/pub");
        assert_eq!(
            ca_url(&s, &http, Some("hub:8080")).as_deref(),
            Some("https://hub:8080/api/ca")
        );
        let mqtt = device_config(&s, OnboardingMode::Mqtt, Some("hub:8080"), "a", "p", "k");
        assert_eq!(mqtt.to_json()["port"], 8883);
        assert_eq!(mqtt.to_json()["tls"], true);
        assert_eq!(
            ca_url(&s, &mqtt, Some("hub:8080")).as_deref(),
            Some("https://hub:8080/api/ca")
        );
        // The operator's own certificate: nothing of ours to trust.
        s.mqtt_tls_builtin = false;
        assert_eq!(ca_url(&s, &mqtt, Some("hub:8080")), None);
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("hub.example.org:8080"), "hub.example.org");
        assert_eq!(host_name("hub.example.org"), "hub.example.org");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("127.0.0.1:80"), "127.0.0.1");
    }

    #[test]
    fn mqtt_uses_the_tls_port_when_there_is_one_and_public_host_wins() {
        let mut s = settings();
        let plain = device_config(
            &s,
            OnboardingMode::Mqtt,
            Some("10.0.0.2:8080"),
            "a",
            "phone",
            "k",
        );
        assert_eq!(
            plain.endpoint,
            Endpoint::Mqtt {
                host: "10.0.0.2".into(),
                port: 1883,
                tls: false,
                client_id: "a-phone".into()
            }
        );
        s.mqtt_tls_port = Some(8883);
        s.public_host = Some("hub.example.org".into());
        let tls = device_config(
            &s,
            OnboardingMode::Mqtt,
            Some("10.0.0.2:8080"),
            "a",
            "phone",
            "k",
        );
        let json = tls.to_json();
        assert_eq!(
            (
                json["host"].as_str(),
                json["port"].as_u64(),
                json["tls"].as_bool()
            ),
            (Some("hub.example.org"), Some(8883), Some(true))
        );
        let http = device_config(&s, OnboardingMode::Http, None, "a", "phone", "k");
        assert_eq!(http.to_json()["url"], "http://hub.example.org:8080/pub");
    }

    #[test]
    fn qr_codes_are_svg() {
        let svg = qr_svg("owntracks:///config?inline=abc").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
    }
}
