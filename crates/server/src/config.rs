//! The one typed configuration, layered: built-in defaults → `config.toml` in the data dir →
//! `PORCHLIGHT_*` environment variables (`__` separates levels: `PORCHLIGHT_MQTT__PORT=1884`)
//! → command-line flags. Flags win.
//!
//! On first start a commented example `config.toml` is written into the data dir. Unknown keys
//! (in the file or the environment) are errors that name the key, not silently ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use porchlight_domain::secret::Secret;
use serde::Deserialize;

use crate::Error;

/// Environment variables that are not config keys.
const NON_CONFIG_ENV: &[&str] = &[
    "PORCHLIGHT_ADMIN_PASSWORD",
    "PORCHLIGHT_DATA_DIR",
    "PORCHLIGHT_CONFIG",
    "PORCHLIGHT_LOG",
];

/// How the config is found and overridden (CLI flags win over env, env over file).
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Data directory; `None` means `$PORCHLIGHT_DATA_DIR` or the per-OS app data dir.
    pub data_dir: Option<PathBuf>,
    /// Config file; `None` means `$PORCHLIGHT_CONFIG` or `config.toml` in the data dir.
    pub config_file: Option<PathBuf>,
    /// `--http-port`: 0 lets the OS choose.
    pub http_port: Option<u16>,
    /// `--mqtt-port`: 0 lets the OS choose, -1 disables the broker.
    pub mqtt_port: Option<i32>,
    /// `--mqtts-port`: the MQTT-over-TLS port; 0 lets the OS choose, -1 turns it off.
    pub mqtts_port: Option<i32>,
    /// `--mqtt-cert-port`: the certificate listener's port; 0 lets the OS choose, -1 turns
    /// it off.
    pub mqtt_cert_port: Option<i32>,
    /// `--bind`: the address both listeners bind.
    pub bind: Option<IpAddr>,
    /// `--https`: serve the web UI and API over TLS too (`[http] tls`).
    pub https: Option<bool>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub audit: AuditConfig,
    pub owntracks: OwnTracksConfig,
    pub alarm: AlarmFileConfig,
    pub ui: UiConfig,
    pub ca: CaConfig,
    /// `PORCHLIGHT_ADMIN_PASSWORD`: the first admin's password on an empty database.
    pub initial_admin_password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// HTTPS on the same port (`--https`): TLS connections get the built-in CA's server
    /// certificate, plain requests a 308 redirect to `https://` (except `/health` and requests
    /// addressed to a loopback name), the session cookie `Secure`, answers HSTS.
    pub tls: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub bind: IpAddr,
    /// -1 disables the broker, 0 lets the OS choose.
    pub port: i32,
    pub max_connections: usize,
    /// Largest PUBLISH payload accepted, in bytes; larger ones disconnect the client.
    pub max_payload: usize,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Messages queued per session for a slow or offline subscriber before dropping.
    pub max_queued_messages: usize,
    /// Unacknowledged QoS 1/2 messages in flight to each client.
    pub max_inflight: u16,
    /// The MQTT-over-TLS listener's port (`--mqtts-port`): -1 off, 0 the OS chooses; unset
    /// means 8883, or 0 when `port` is 0 (a throwaway instance grabs no fixed port). See
    /// [`Config::mqtt_tls_port`].
    pub tls_port: Option<i32>,
    /// The certificate listener's port: MQTT over TLS requiring a client certificate from
    /// our CA (no password). -1 off, 0 the OS chooses; unset means 8884, or 0 when `port` is
    /// 0. See [`Config::mqtt_cert_port`].
    pub cert_port: Option<i32>,
    /// The operator's own certificate files for the TLS listener (instead of the built-in
    /// CA's server certificate).
    pub tls: Option<MqttTlsConfig>,
}

/// `[mqtt.tls]`: the TLS listener with the operator's own PEM files (their own PKI),
/// optionally requiring client certificates from their CA.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// Overrides `[mqtt] tls_port` (kept from before the built-in CA); `--mqtts-port` wins.
    #[serde(default)]
    pub port: Option<u16>,
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server (keep it 0600).
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to.
    pub ca: Option<PathBuf>,
    /// Require a client certificate; its CN is the user name.
    #[serde(default)]
    pub require_client_cert: bool,
}

/// `[audit]`: how long the audit log is kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Rows older than this many days are deleted (hourly, in small batches); 0 keeps them
    /// forever.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: 90 }
    }
}

impl AuditConfig {
    /// How long rows are kept, or `None` to keep them forever.
    pub fn retention(&self) -> Option<std::time::Duration> {
        (self.retention_days > 0)
            .then(|| std::time::Duration::from_secs(u64::from(self.retention_days) * 24 * 3600))
    }
}

/// `[alarm]`: what the alarm keeps, and the name Home Assistant knows it by.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmFileConfig {
    /// Days the alarm's event log (transitions, code uses, sensor trips) is kept; older events
    /// are deleted daily, in small batches. At least 1.
    pub event_retention_days: u32,
    /// This install's node id: Home Assistant's discovery node and entity ids
    /// (`alarm_control_panel.<node_id>`), and on an external broker the topics
    /// `porchlight/<node_id>/…`, so two installs sharing one broker stay apart.
    pub node_id: String,
}

impl Default for AlarmFileConfig {
    fn default() -> Self {
        AlarmFileConfig {
            event_retention_days: 365,
            node_id: "porchlight".to_owned(),
        }
    }
}

impl AlarmFileConfig {
    /// How long alarm events are kept.
    pub fn event_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.event_retention_days) * 24 * 3600)
    }
}

/// `[ui]`: what the web UI gets from the server (`GET /api/ui/config`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// The map's tile URL template (Leaflet's `{z}/{x}/{y}`, optionally `{s}`). Point it at a
    /// tile server on the LAN to show maps without internet; without any tiles the map still
    /// draws markers and tracks on a plain background.
    pub tile_url: String,
    /// The tiles' attribution shown in the map's corner (HTML).
    pub tile_attribution: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            tile_url: "https://tile.openstreetmap.org/{z}/{x}/{y}.png".to_owned(),
            tile_attribution: "&copy; <a href=\"https://www.openstreetmap.org/copyright\">OpenStreetMap</a> contributors".to_owned(),
        }
    }
}

/// `[owntracks]`: commands to phones and device onboarding.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OwnTracksConfig {
    /// Seconds a command queued for an HTTP-mode phone waits for its next `/pub` before it is
    /// dropped unsent.
    pub command_ttl_secs: u64,
    /// The host name phones reach this server by, written into new devices' `.otrc`
    /// configuration; empty means the `Host` the device was created through.
    pub public_host: String,
    /// Announce each OwnTracks device to Home Assistant as an MQTT `device_tracker`
    /// (`owntracks::ha_discovery`). Off by default: the household's choice.
    pub ha_discovery: bool,
    /// Home Assistant's MQTT discovery prefix.
    pub ha_discovery_prefix: String,
    /// Seconds between passes of the location retention service (`owntracks::retention`),
    /// which deletes each user's locations older than their `location_retention_days`.
    pub retention_check_secs: u64,
}

impl Default for OwnTracksConfig {
    fn default() -> Self {
        OwnTracksConfig {
            command_ttl_secs: 24 * 3600,
            public_host: String::new(),
            ha_discovery: false,
            ha_discovery_prefix: "homeassistant".to_owned(),
            retention_check_secs: 3600,
        }
    }
}

impl OwnTracksConfig {
    /// How long a queued command waits for its phone.
    pub fn command_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.command_ttl_secs)
    }

    /// Time between passes of the location retention service.
    pub fn retention_check(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.retention_check_secs)
    }
}

/// `[ca]`: the built-in certificate authority.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Extra names (DNS names or IP addresses) for the server certificate, beside the
    /// machine's own (host name, localhost, loopback and LAN addresses).
    pub server_names: Vec<String>,
}

/// The MQTT-over-TLS port when `[mqtt] tls_port` is not set and the plain port is not 0.
pub const DEFAULT_MQTT_TLS_PORT: u16 = 8883;
/// The certificate listener's port when `[mqtt] cert_port` is not set and the plain port is
/// not 0.
pub const DEFAULT_MQTT_CERT_PORT: u16 = 8884;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            tls: false,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 1883,
            max_connections: 10_000,
            max_payload: 256 * 1024,
            connect_timeout_secs: 10,
            max_queued_messages: 10_000,
            max_inflight: 32,
            tls_port: None,
            cert_port: None,
            tls: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    http: HttpConfig,
    mqtt: MqttConfig,
    audit: AuditConfig,
    owntracks: OwnTracksConfig,
    alarm: AlarmFileConfig,
    ui: UiConfig,
    ca: CaConfig,
}

/// The commented example written on first start.
pub const EXAMPLE_CONFIG: &str = include_str!("config.example.toml");

impl Config {
    /// Loads the config from the real environment.
    pub fn load(options: &LoadOptions) -> Result<Config, Error> {
        Config::load_from(options, std::env::vars())
    }

    /// Loads the config with an explicit environment (tests pass their own).
    pub fn load_from(
        options: &LoadOptions,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("PORCHLIGHT_"))
            .collect();
        let env_get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

        let data_dir = match (&options.data_dir, env_get("PORCHLIGHT_DATA_DIR")) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => PathBuf::from(dir),
            (None, None) => default_data_dir()?,
        };
        let config_file = match (&options.config_file, env_get("PORCHLIGHT_CONFIG")) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(f)) => Some(PathBuf::from(f)),
            (None, None) => None,
        };

        let mut table = match &config_file {
            Some(path) => read_table(path)?,
            None => {
                let path = data_dir.join("config.toml");
                if path.exists() {
                    read_table(&path)?
                } else {
                    toml::Table::new()
                }
            }
        };
        for (key, value) in &env {
            if NON_CONFIG_ENV.contains(&key.as_str()) {
                continue;
            }
            apply_env(&mut table, key, value)?;
        }
        let file: FileConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| Error::Config(format!("{}: {}", e.path(), e.inner().message())))?;

        let mut config = Config {
            data_dir,
            http: file.http,
            mqtt: file.mqtt,
            audit: file.audit,
            owntracks: file.owntracks,
            alarm: file.alarm,
            ui: file.ui,
            ca: file.ca,
            initial_admin_password: env_get("PORCHLIGHT_ADMIN_PASSWORD")
                .filter(|p| !p.is_empty())
                .map(Secret::new),
        };
        if let Some(port) = options.http_port {
            config.http.port = port;
        }
        if let Some(port) = options.mqtt_port {
            config.mqtt.port = port;
        }
        if let Some(port) = options.mqtts_port {
            config.mqtt.tls_port = Some(port);
            if let Some(tls) = &mut config.mqtt.tls {
                tls.port = None;
            }
        }
        if let Some(port) = options.mqtt_cert_port {
            config.mqtt.cert_port = Some(port);
        }
        if let Some(https) = options.https {
            config.http.tls = https;
        }
        if let Some(bind) = options.bind {
            config.http.bind = bind;
            config.mqtt.bind = bind;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        if !(-1..=65535).contains(&self.mqtt.port) {
            return Err(Error::Config(format!(
                "mqtt.port must be -1 (disabled), 0 (any free port) or 1..65535, not {}",
                self.mqtt.port
            )));
        }
        if let Some(port) = self.mqtt.tls_port
            && !(-1..=65535).contains(&port)
        {
            return Err(Error::Config(format!(
                "mqtt.tls_port (--mqtts-port) must be -1 (off), 0 (any free port) or 1..65535, not {port}"
            )));
        }
        if let Some(port) = self.mqtt.cert_port
            && !(-1..=65535).contains(&port)
        {
            return Err(Error::Config(format!(
                "mqtt.cert_port (--mqtt-cert-port) must be -1 (off), 0 (any free port) or 1..65535, not {port}"
            )));
        }
        for name in &self.ca.server_names {
            if !is_server_name(name) {
                return Err(Error::Config(format!(
                    "ca.server_names: {name:?} is neither a DNS name nor an IP address"
                )));
            }
        }
        if self.mqtt.max_payload == 0 || self.mqtt.max_payload > 256 * 1024 * 1024 {
            return Err(Error::Config(
                "mqtt.max_payload must be between 1 byte and 256 MiB".into(),
            ));
        }
        if self.mqtt.max_connections == 0 {
            return Err(Error::Config(
                "mqtt.max_connections must be at least 1".into(),
            ));
        }
        if self.owntracks.retention_check_secs == 0 {
            return Err(Error::Config(
                "owntracks.retention_check_secs must be at least 1".into(),
            ));
        }
        if self.alarm.event_retention_days == 0 || self.alarm.event_retention_days > 36_500 {
            return Err(Error::Config(
                "alarm.event_retention_days must be from 1 to 36500".into(),
            ));
        }
        if !porchlight_domain::alarm::topics::is_valid_node_id(&self.alarm.node_id) {
            return Err(Error::Config(format!(
                "alarm.node_id must be 1 to 32 of a-z, 0-9, _ and -, not {:?}",
                self.alarm.node_id
            )));
        }
        if self.ui.tile_url.trim().is_empty() {
            return Err(Error::Config("ui.tile_url must not be empty".into()));
        }
        if self.owntracks.command_ttl_secs == 0 {
            return Err(Error::Config(
                "owntracks.command_ttl_secs must be at least 1".into(),
            ));
        }
        let prefix = &self.owntracks.ha_discovery_prefix;
        if prefix.is_empty() || prefix.contains(['+', '#', '\0']) || prefix.ends_with('/') {
            return Err(Error::Config(format!(
                "owntracks.ha_discovery_prefix must be a topic without wildcards or a trailing /, not {prefix:?}"
            )));
        }
        if self.mqtt.connect_timeout_secs == 0 {
            return Err(Error::Config(
                "mqtt.connect_timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The MQTT port to bind, or `None` when the broker is disabled.
    pub fn mqtt_port(&self) -> Option<u16> {
        u16::try_from(self.mqtt.port).ok()
    }

    /// The MQTT-over-TLS port to bind, or `None` when there is no TLS listener (turned off,
    /// or no broker). `[mqtt.tls] port` (the operator's own files) wins over `[mqtt]
    /// tls_port`; `--mqtts-port` over both.
    pub fn mqtt_tls_port(&self) -> Option<u16> {
        self.mqtt_port()?;
        let port = match (
            self.mqtt.tls.as_ref().and_then(|t| t.port),
            self.mqtt.tls_port,
        ) {
            (Some(port), _) => i32::from(port),
            (None, Some(port)) => port,
            (None, None) if self.mqtt.port == 0 => 0,
            (None, None) => i32::from(DEFAULT_MQTT_TLS_PORT),
        };
        u16::try_from(port).ok()
    }

    /// The certificate listener's port to bind, or `None` when it is off (or no broker).
    pub fn mqtt_cert_port(&self) -> Option<u16> {
        self.mqtt_port()?;
        let port = match self.mqtt.cert_port {
            Some(port) => port,
            None if self.mqtt.port == 0 => 0,
            None => i32::from(DEFAULT_MQTT_CERT_PORT),
        };
        u16::try_from(port).ok()
    }

    /// Writes the commented example config into the data dir if no config file exists there.
    pub fn write_example_if_missing(&self) -> Result<(), Error> {
        let path = self.data_dir.join("config.toml");
        if !path.exists() {
            std::fs::write(&path, EXAMPLE_CONFIG).map_err(|e| Error::Io {
                what: format!("writing {}", path.display()),
                source: e,
            })?;
        }
        Ok(())
    }
}

/// A DNS name (letters, digits, `-`, dots; a leading `*.` allowed) or an IP address.
fn is_server_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn default_data_dir() -> Result<PathBuf, Error> {
    dirs::data_dir()
        .map(|d| d.join("porchlight"))
        .ok_or_else(|| {
            Error::Config("no per-user data directory on this system; pass --data-dir".into())
        })
}

fn read_table(path: &Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        what: format!("reading the config file {}", path.display()),
        source: e,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))
}

/// `PORCHLIGHT_MQTT__MAX_PAYLOAD=1000` → `mqtt.max_payload = 1000`.
fn apply_env(table: &mut toml::Table, key: &str, value: &str) -> Result<(), Error> {
    let path: Vec<String> = key
        .trim_start_matches("PORCHLIGHT_")
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let unknown = || {
        Error::Config(format!(
            "unknown environment variable {key}: no such config key"
        ))
    };
    let (last, parents) = path.split_last().ok_or_else(unknown)?;
    if parents.is_empty() {
        // Not a `SECTION__KEY` name: some other program's variable, or a typo. Say so, go on.
        tracing::warn!("ignoring the environment variable {key}: it is not a config setting");
        return Ok(());
    }
    let mut node = table;
    for part in parents {
        node = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(unknown)?;
    }
    let parsed = if let Ok(i) = value.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = value.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(value.to_owned())
    };
    node.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> LoadOptions {
        LoadOptions {
            data_dir: Some(dir.to_owned()),
            ..LoadOptions::default()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.http.port, 8080);
        assert_eq!(c.mqtt.port, 1883);
        assert_eq!(c.mqtt.max_payload, 262_144);
        assert!(c.initial_admin_password.is_none());
    }

    #[test]
    fn the_map_tiles_default_to_openstreetmap_and_follow_the_env() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.ui, UiConfig::default());
        assert!(c.ui.tile_url.starts_with("https://tile.openstreetmap.org/"));
        let lan = "http://tiles.lan/{z}/{x}/{y}.png";
        let c =
            Config::load_from(&opts(dir.path()), env(&[("PORCHLIGHT_UI__TILE_URL", lan)])).unwrap();
        assert_eq!(c.ui.tile_url, lan);
        assert!(
            Config::load_from(&opts(dir.path()), env(&[("PORCHLIGHT_UI__TILE_URL", " ")])).is_err()
        );
    }

    #[test]
    fn flags_beat_env_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[http]\nport = 9000\n[mqtt]\nport = 1999\nmax_connections = 7\n",
        )
        .unwrap();
        let e = env(&[("PORCHLIGHT_MQTT__PORT", "2000"), ("PATH", "/bin")]);
        let c = Config::load_from(&opts(dir.path()), e.clone()).unwrap();
        assert_eq!(
            (c.http.port, c.mqtt.port, c.mqtt.max_connections),
            (9000, 2000, 7)
        );

        let mut o = opts(dir.path());
        o.mqtt_port = Some(-1);
        o.http_port = Some(0);
        let c = Config::load_from(&o, e).unwrap();
        assert_eq!((c.http.port, c.mqtt_port()), (0, None));
    }

    #[test]
    fn the_cert_port_defaults_to_8884_follows_port_0_and_may_be_off() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.mqtt_cert_port(), Some(8884));
        let mut o = opts(dir.path());
        o.mqtt_port = Some(0);
        assert_eq!(
            Config::load_from(&o, env(&[])).unwrap().mqtt_cert_port(),
            Some(0)
        );
        for (toml, want) in [("-1", None), ("9884", Some(9884))] {
            std::fs::write(
                dir.path().join("config.toml"),
                format!("[mqtt]\ncert_port = {toml}\n"),
            )
            .unwrap();
            let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
            assert_eq!(c.mqtt_cert_port(), want);
        }
        std::fs::write(dir.path().join("config.toml"), "[mqtt]\ncert_port = -2\n").unwrap();
        assert!(Config::load_from(&opts(dir.path()), env(&[])).is_err());
    }

    #[test]
    fn the_tls_port_defaults_to_8883_follows_port_0_and_the_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.mqtt_tls_port(), Some(8883));
        let mut o = opts(dir.path());
        o.mqtt_port = Some(0);
        assert_eq!(
            Config::load_from(&o, env(&[])).unwrap().mqtt_tls_port(),
            Some(0)
        );
        o.mqtts_port = Some(-1);
        assert_eq!(
            Config::load_from(&o, env(&[])).unwrap().mqtt_tls_port(),
            None
        );
        o.mqtts_port = Some(18883);
        assert_eq!(
            Config::load_from(&o, env(&[])).unwrap().mqtt_tls_port(),
            Some(18883)
        );
        // No broker, no TLS listener.
        o.mqtt_port = Some(-1);
        assert_eq!(
            Config::load_from(&o, env(&[])).unwrap().mqtt_tls_port(),
            None
        );

        std::fs::write(
            dir.path().join("config.toml"),
            "[mqtt]\ntls_port = 9883\n[mqtt.tls]\nport = 7883\ncert = \"c\"\nkey = \"k\"\n",
        )
        .unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.mqtt_tls_port(), Some(7883), "[mqtt.tls] port wins");
        let mut o = opts(dir.path());
        o.mqtts_port = Some(0);
        assert_eq!(
            Config::load_from(&o, env(&[])).unwrap().mqtt_tls_port(),
            Some(0)
        );
        o.mqtts_port = Some(-2);
        assert!(Config::load_from(&o, env(&[])).is_err());
    }

    #[test]
    fn https_is_off_by_default_and_the_flag_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert!(!c.http.tls);
        std::fs::write(dir.path().join("config.toml"), "[http]\ntls = true\n").unwrap();
        assert!(
            Config::load_from(&opts(dir.path()), env(&[]))
                .unwrap()
                .http
                .tls
        );
        let mut o = opts(dir.path());
        o.https = Some(false);
        assert!(!Config::load_from(&o, env(&[])).unwrap().http.tls);
        std::fs::remove_file(dir.path().join("config.toml")).unwrap();
        let c =
            Config::load_from(&opts(dir.path()), env(&[("PORCHLIGHT_HTTP__TLS", "true")])).unwrap();
        assert!(c.http.tls);
    }

    #[test]
    fn ca_server_names_must_be_dns_names_or_addresses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[ca]\nserver_names = [\"home.example.org\", \"192.168.1.9\", \"fe80::1\"]\n",
        )
        .unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.ca.server_names.len(), 3);
        for bad in ["", "a b", "-x.org", "x..org", "http://x.org"] {
            std::fs::write(
                dir.path().join("config.toml"),
                format!("[ca]\nserver_names = [{bad:?}]\n"),
            )
            .unwrap();
            let err = Config::load_from(&opts(dir.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("ca.server_names"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let file: FileConfig = toml::from_str(EXAMPLE_CONFIG).unwrap();
        assert_eq!(file.http, HttpConfig::default());
        assert_eq!(file.mqtt, MqttConfig::default());
        assert_eq!(file.audit, AuditConfig::default());
        assert_eq!(file.ca, CaConfig::default());
    }

    #[test]
    fn audit_retention_defaults_to_90_days_and_0_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(
            c.audit.retention(),
            Some(std::time::Duration::from_secs(90 * 24 * 3600))
        );
        let c = Config::load_from(
            &opts(dir.path()),
            env(&[("PORCHLIGHT_AUDIT__RETENTION_DAYS", "7")]),
        )
        .unwrap();
        assert_eq!(c.audit.retention_days, 7);
        std::fs::write(
            dir.path().join("config.toml"),
            "[audit]\nretention_days = 0\n",
        )
        .unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.audit.retention(), None);
    }

    #[test]
    fn ha_discovery_is_off_by_default_and_its_prefix_must_be_a_plain_topic() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert!(!c.owntracks.ha_discovery);
        assert_eq!(c.owntracks.ha_discovery_prefix, "homeassistant");
        let c = Config::load_from(
            &opts(dir.path()),
            env(&[("PORCHLIGHT_OWNTRACKS__HA_DISCOVERY", "true")]),
        )
        .unwrap();
        assert!(c.owntracks.ha_discovery);
        for bad in ["", "ha/#", "ha/+/x", "ha/"] {
            std::fs::write(
                dir.path().join("config.toml"),
                format!("[owntracks]\nha_discovery_prefix = {bad:?}\n"),
            )
            .unwrap();
            let err = Config::load_from(&opts(dir.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("ha_discovery_prefix"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn alarm_events_are_kept_a_year_by_default_and_the_setting_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(
            c.alarm.event_retention(),
            std::time::Duration::from_secs(365 * 24 * 3600)
        );
        std::fs::write(
            dir.path().join("config.toml"),
            "[alarm]\nevent_retention_days = 30\n",
        )
        .unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(
            c.alarm.event_retention(),
            std::time::Duration::from_secs(30 * 24 * 3600)
        );
        for bad in [
            "event_retention_days = 0",
            "event_retention_days = 40000",
            "keep = 3",
        ] {
            std::fs::write(dir.path().join("config.toml"), format!("[alarm]\n{bad}\n")).unwrap();
            let err = Config::load_from(&opts(dir.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("event_retention_days") || err.contains("keep"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_alarm_node_id_defaults_to_porchlight_and_must_be_topic_safe() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.alarm.node_id, "porchlight");
        std::fs::write(
            dir.path().join("config.toml"),
            "[alarm]\nnode_id = \"cabin\"\n",
        )
        .unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(c.alarm.node_id, "cabin");
        for bad in ["", "Cabin", "a/b", "a#", "home alarm"] {
            std::fs::write(
                dir.path().join("config.toml"),
                format!("[alarm]\nnode_id = {bad:?}\n"),
            )
            .unwrap();
            let err = Config::load_from(&opts(dir.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("alarm.node_id"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn retention_checks_run_hourly_by_default_and_never_every_0_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(&opts(dir.path()), env(&[])).unwrap();
        assert_eq!(
            c.owntracks.retention_check(),
            std::time::Duration::from_secs(3600)
        );
        std::fs::write(
            dir.path().join("config.toml"),
            "[owntracks]\nretention_check_secs = 0\n",
        )
        .unwrap();
        let err = Config::load_from(&opts(dir.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention_check_secs"), "{err}");
    }

    #[test]
    fn bad_config_gets_an_error_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "[mqtt]\nprot = 1\n").unwrap();
        let err = Config::load_from(&opts(dir.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");

        std::fs::write(dir.path().join("config.toml"), "[mqtt\n").unwrap();
        let err = Config::load_from(&opts(dir.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.toml"), "{err}");

        std::fs::remove_file(dir.path().join("config.toml")).unwrap();
        let err = Config::load_from(
            &opts(dir.path()),
            env(&[("PORCHLIGHT_MQTT__PORT", "99999")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mqtt.port"), "{err}");
        let err = Config::load_from(&opts(dir.path()), env(&[("PORCHLIGHT_MQTT__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        // A variable that is no config key at all is ignored (with a warning), not fatal.
        assert!(Config::load_from(&opts(dir.path()), env(&[("PORCHLIGHT_NOPE", "1")])).is_ok());
        let err = Config::load_from(
            &opts(dir.path()),
            env(&[("PORCHLIGHT_HTTP__PORT", "eighty")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn the_admin_password_comes_from_the_environment_and_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_from(
            &opts(dir.path()),
            env(&[("PORCHLIGHT_ADMIN_PASSWORD", "a very secret one")]),
        )
        .unwrap();
        assert_eq!(
            c.initial_admin_password.as_ref().unwrap().expose(),
            "a very secret one"
        );
        assert!(!format!("{c:?}").contains("very secret"));
    }
}
