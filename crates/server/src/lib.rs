//! porchlight-server: the composition root.
//!
//! [`start`] is the one function that wires Porchlight together, shared by `porchlight serve`
//! and the desktop shell: it opens the store (applying migrations), loads (or on first start
//! makes) the certificate authority ([`ca::CaService`], whose server certificate the MQTT TLS
//! listener uses, and HTTPS with `[http] tls`), binds the HTTP listener and the MQTT broker, lets the services attach to
//! the bus, makes sure an admin account exists, opens the broker to clients, and returns a [`Running`] handle whose [`Running::shutdown`]
//! stops everything in order and flushes the database. The built-in services (today the
//! OwnTracks ingest, [`owntracks::Ingest`]) attach to the bus before any MQTT client is served
//! and stop after the broker; the store-only ones (the location retention purge,
//! [`owntracks::Retention`]) and the alarm ([`alarm::AlarmService`], which publishes `offline`
//! when it stops) start with them and stop before the broker, as does the optional client of an
//! external broker ([`mqtt_link::MqttLink`], ADR 0015). [`start_with`] is the same with
//! extra services (tests): each one is wired on the [`Wiring`] before any MQTT client is
//! served, so none misses the first message; [`start_with_overrides`] also replaces parts
//! ([`Overrides`]: the alarm's PIN verifier, its Home Assistant names).
//!
//! Architecture invariants:
//! - This crate is the only one that knows every other crate; the others know only the domain.
//! - Only `http` knows HTTP/JSON; only the broker crate knows MQTT internals (this crate talks
//!   to it through its `Gatekeeper`/`Bus` traits).

pub mod alarm;
mod audit_sink;
pub mod ca;
mod cert_renewal;
pub mod config;
mod fd_limit;
mod friends;
mod http;
mod login;
mod mqtt;
pub mod mqtt_link;
pub mod owntracks;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use porchlight_store::{Store, random_password};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, LoadOptions};
pub use http::owntracks_pub::{PubInput, PubInputError, check_pub_request};
pub use porchlight_broker::{Bus, Inbound, Origin, Origins, Watch, Watched};
pub use porchlight_store as store;

/// Errors from starting or running the server. Each message is one line fit for a terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] porchlight_store::Error),
    #[error("{0}")]
    Ca(String),
    #[error(
        "{service} port {port} on {addr} is already in use; choose another with {flag} (0 picks a free one)"
    )]
    PortInUse {
        service: &'static str,
        addr: IpAddr,
        port: u16,
        flag: &'static str,
    },
    #[error("MQTT broker: {0}")]
    Broker(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the HTTP side needs from the broker, without knowing its internals.
#[async_trait::async_trait]
pub trait BrokerControl: Send + Sync {
    /// Ends live MQTT sessions of a device; returns how many were closed.
    async fn disconnect_device(&self, device_id: i64) -> usize;
    /// Ends live MQTT sessions of every device of a user.
    async fn disconnect_user(&self, user_id: i64) -> usize;
    /// Close every session that logged in with the client certificate `serial`.
    async fn disconnect_certificate(&self, serial: &str) -> usize;
    /// Ends the live MQTT sessions of a user that logged in with the account password (after
    /// a password change); device-key and certificate sessions stay.
    async fn disconnect_password_logins(&self, user_id: i64) -> usize;
    fn is_running(&self) -> bool;
    fn connection_count(&self) -> usize;
    /// The connected clients, for the settings screen (never a credential).
    async fn connected_clients(&self) -> Vec<porchlight_broker::ConnectedClient>;
}

/// The admin account made on first start.
#[derive(Debug)]
pub struct InitialAdmin {
    pub username: String,
    /// The generated password, to be shown to the operator exactly once; `None` when it came
    /// from `PORCHLIGHT_ADMIN_PASSWORD`.
    pub generated_password: Option<Secret>,
}

/// A started server. Call [`Running::shutdown`] to stop it cleanly.
pub struct Running {
    pub http_addr: SocketAddr,
    pub mqtt_addr: Option<SocketAddr>,
    /// The MQTT-over-TLS listener (the built-in CA's server certificate, or the files of
    /// `[mqtt.tls]`), unless turned off.
    pub mqtt_tls_addr: Option<SocketAddr>,
    /// The certificate listener (client certificates from our CA, `[mqtt] cert_port`),
    /// unless turned off.
    pub mqtt_cert_addr: Option<SocketAddr>,
    /// True when the HTTP port also speaks HTTPS (`[http] tls`, with the built-in CA's server
    /// certificate): plain requests are then redirected there (`http::tls`).
    pub https: bool,
    /// Set on the first start with an empty database.
    pub initial_admin: Option<InitialAdmin>,
    store: Store,
    /// The certificate authority (ADR 0017), shared with the HTTP handlers.
    ca: Arc<ca::CaService>,
    /// Alarm PIN verification, shared with the HTTP handlers (one wrong-PIN throttle).
    pins: Arc<alarm::codes::PinCheck>,
    /// The embedded broker (shared with the HTTP handlers until they stop).
    broker: Option<Arc<porchlight_broker::Broker>>,
    /// Keeps the TLS listeners' server certificate current; holds the broker, so it stops
    /// before it.
    renewal: cert_renewal::CertRenewal,
    /// Closes sessions of devices/users removed outside this process; aborted at shutdown.
    sweep: Option<JoinHandle<()>>,
    /// OwnTracks publishes into the store; stopped after the broker, so that publishes
    /// waiting in the broker for their commit are still answered while it shuts down.
    ingest: owntracks::Ingest,
    /// Home Assistant device trackers (`[owntracks] ha_discovery`; with it off, clearing what
    /// an earlier run left retained); stopped before the broker.
    ha_discovery: Option<owntracks::HaDiscovery>,
    /// Deletes each user's locations past their retention, in the background; stopped before
    /// the broker (it needs only the store).
    retention: owntracks::Retention,
    /// The alarm (its state machine, MQTT command and sensor topics, Home Assistant entity);
    /// stopped before the broker so that its `offline` availability is published.
    alarm: alarm::AlarmService,
    /// The optional client of an external MQTT broker (ADR 0015); stopped with the alarm,
    /// publishing `offline` there.
    mqtt_link: mqtt_link::MqttLink,
    /// Tells the HTTP server to stop accepting and finish in-flight requests, and open
    /// WebSockets to close.
    http_stop: watch::Sender<bool>,
    http_task: JoinHandle<std::io::Result<()>>,
    audit_writer: audit_sink::AuditWriter,
    runtime_file: PathBuf,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("http_addr", &self.http_addr)
            .field("mqtt_addr", &self.mqtt_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The store, for in-process callers (the CLI, tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The certificate authority (the process's one instance, the HTTP API's too).
    pub fn ca(&self) -> Arc<ca::CaService> {
        Arc::clone(&self.ca)
    }

    /// Alarm PIN verification (the process's one instance, the HTTP API's too).
    pub fn pins(&self) -> Arc<alarm::codes::PinCheck> {
        Arc::clone(&self.pins)
    }

    /// The app's in-process link to the broker (`None` when the broker is disabled).
    pub fn bus(&self) -> Option<Arc<dyn Bus>> {
        self.broker.as_ref().map(|b| b.bus())
    }

    /// The alarm, for the REST API and the keypad.
    pub fn alarm(&self) -> alarm::AlarmHandle {
        self.alarm.handle()
    }

    /// The link to an external MQTT broker (settings, status, publish/subscribe).
    pub fn mqtt_link(&self) -> mqtt_link::MqttLinkHandle {
        self.mqtt_link.handle()
    }

    /// Counters of the OwnTracks ingest service.
    pub fn owntracks_stats(&self) -> owntracks::IngestStats {
        self.ingest.stats()
    }

    /// Stops HTTP, then the broker, then the ingest service (writing what is queued), then
    /// drains the audit queue and closes the database: the start-up order reversed.
    pub async fn shutdown(self) {
        let _ = self.http_stop.send(true);
        match self.http_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server ended with an error"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        if let Some(sweep) = self.sweep {
            sweep.abort();
            let _ = sweep.await;
        }
        self.retention.stop().await;
        self.alarm.stop().await;
        self.mqtt_link.stop().await;
        self.renewal.stop().await;
        if let Some(ha) = self.ha_discovery {
            ha.stop().await;
        }
        if let Some(broker) = self.broker {
            match Arc::try_unwrap(broker) {
                Ok(broker) => broker.shutdown().await,
                Err(_) => tracing::warn!("broker still referenced at shutdown; dropping it"),
            }
        }
        self.ingest.stop().await;
        self.audit_writer.finish().await;
        self.store.close().await;
        let _ = std::fs::remove_file(&self.runtime_file);
        tracing::info!("stopped");
    }
}

/// What a service gets to attach itself with, before any MQTT client is served.
pub struct Wiring<'a> {
    pub store: &'a Store,
    /// `None` when the broker is disabled.
    pub bus: Option<Arc<dyn Bus>>,
}

impl std::fmt::Debug for Wiring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring")
            .field("bus", &self.bus.is_some())
            .finish_non_exhaustive()
    }
}

/// Parts of the server that can be replaced when it is started in-process (tests, the bench).
#[derive(Default)]
pub struct Overrides {
    /// Who a PIN belongs to; default the stored PIN codes ([`alarm::codes::PinCheck`]).
    pub pin_verifier: Option<Arc<dyn alarm::PinVerifier>>,
    /// The alarm's Home Assistant names and event retention; default [`alarm::AlarmConfig`].
    pub alarm: Option<alarm::AlarmConfig>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("pin_verifier", &self.pin_verifier.is_some())
            .field("alarm", &self.alarm)
            .finish()
    }
}

/// Opens the store, starts the broker and the HTTP server.
pub async fn start(config: Config) -> Result<Running, Error> {
    start_with(config, |_| {}).await
}

/// [`start`], with `services` wired on the bus after the ports are bound and before the broker
/// serves its first client. Services end with the broker (their receivers close).
pub async fn start_with(
    config: Config,
    services: impl FnOnce(&Wiring<'_>),
) -> Result<Running, Error> {
    start_with_overrides(config, Overrides::default(), services).await
}

/// [`start_with`], with some parts replaced ([`Overrides`]).
pub async fn start_with_overrides(
    config: Config,
    overrides: Overrides,
    services: impl FnOnce(&Wiring<'_>),
) -> Result<Running, Error> {
    create_private_dir(&config.data_dir)?;
    config.write_example_if_missing()?;
    if let Some(limit) = fd_limit::raise() {
        tracing::info!(before = limit.before, now = limit.now, "open-file limit");
        // A plain connection holds one descriptor, a TLS one three (the client's and the
        // relay's two ends): warn only when even plain connections cannot all fit.
        let wanted = config.mqtt.max_connections.saturating_add(256);
        if usize::try_from(limit.now).unwrap_or(usize::MAX) < wanted {
            tracing::warn!(
                open_files = limit.now,
                max_connections = config.mqtt.max_connections,
                "the open-file limit runs out before [mqtt] max_connections: raise the hard limit (ulimit -Hn) or lower max_connections (a TLS connection takes three descriptors)"
            );
        }
    }
    let db_path = config.data_dir.join("porchlight.db");
    create_private_file(&db_path)?;
    let store = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .map_err(|e| Error::Internal(format!("opening the database: {e}")))??
    };
    // Bind both ports before creating the first admin: a start that fails on a busy port must
    // not create an account whose generated password nobody saw.
    let http_listener = bind(config.http.bind, config.http.port, "HTTP", "--http-port").await?;
    let http_addr = local_addr(&http_listener)?;
    let (audit, audit_writer) =
        audit_sink::AuditSink::start(store.clone(), config.audit.retention());
    let logins = Arc::new(login::LoginGate::new(store.clone()));
    let friends = friends::Friends::load(store.clone()).await?;
    let ca = Arc::new(
        ca::CaService::start(
            store.clone(),
            &config.data_dir,
            std::time::SystemTime::now(),
        )
        .await
        .map_err(|e| Error::Ca(e.to_string()))?,
    );
    let bound = match config.mqtt_port() {
        Some(port) => Some(
            bind_broker(
                &config,
                port,
                &ca,
                store.clone(),
                audit.clone(),
                logins.clone(),
                friends.subscribe(),
            )
            .await?,
        ),
        None => None,
    };
    let bus = bound.as_ref().map(|b| b.bus());
    let ingest = owntracks::Ingest::start(
        store.clone(),
        bus.as_ref(),
        owntracks::IngestConfig::default(),
    );
    let ha_discovery = bus.clone().map(|bus| {
        let prefix = config.owntracks.ha_discovery_prefix.clone();
        if config.owntracks.ha_discovery {
            owntracks::HaDiscovery::start(store.clone(), bus, &ingest.live(), prefix)
        } else {
            owntracks::HaDiscovery::withdraw(store.clone(), bus, prefix)
        }
    });
    let retention = owntracks::Retention::start(
        store.clone(),
        owntracks::RetentionConfig::every(config.owntracks.retention_check()),
    );
    // One PIN check per process: its throttle is the memory of wrong PINs.
    let pins = Arc::new(alarm::codes::PinCheck::new(store.clone(), audit.clone()));
    let alarm_config = overrides.alarm.unwrap_or_else(|| alarm::AlarmConfig {
        event_retention: config.alarm.event_retention(),
        node_id: config.alarm.node_id.clone(),
        ..alarm::AlarmConfig::default()
    });
    // The external broker link's availability topic is `porchlight/<node>/status`, with the
    // node id Home Assistant knows the alarm by.
    let mqtt_link = mqtt_link::MqttLink::start(store.clone(), alarm_config.node_id.clone()).await;
    let alarm = alarm::AlarmService::start(
        store.clone(),
        bus.clone(),
        overrides
            .pin_verifier
            .unwrap_or_else(|| pins.clone() as Arc<dyn alarm::PinVerifier>),
        alarm_config,
        mqtt_link.handle().watch(),
    )
    .await
    .map_err(|e| Error::Internal(format!("starting the alarm: {e}")))?;
    services(&Wiring {
        store: &store,
        bus: bus.clone(),
    });
    if let Some(bus) = &bus {
        // Before serving: no subscriber gets these twice, and no newer point can be overtaken.
        if let Err(e) = owntracks::last_known::retain_last_known(&store, bus.as_ref()).await {
            tracing::warn!(error = %e, "last OwnTracks locations not retained");
        }
    }
    let initial_admin = ensure_admin(&store, &config).await?;
    let broker = bound.map(|b| Arc::new(b.serve()));
    let mqtt_addr = broker.as_ref().map(|b| b.local_addr());
    let mqtt_tls_addr = broker.as_ref().and_then(|b| b.tls_local_addr());
    let mqtt_cert_addr = broker.as_ref().and_then(|b| b.cert_local_addr());
    let sweep = broker
        .clone()
        .map(|b| mqtt::spawn_revocation_sweep(store.clone(), b, friends.clone()));
    let (http_stop, stop_rx) = watch::channel(false);
    let https = https_config(&config, &ca);
    let renewal = cert_renewal::CertRenewal::start(
        Arc::new(config.clone()),
        ca.clone(),
        cert_renewal::Targets {
            broker: broker.clone(),
            builtin_tls_port: mqtt_tls_addr
                .filter(|_| config.mqtt.tls.is_none())
                .map(|a| a.port()),
            cert_port: mqtt_cert_addr.map(|a| a.port()),
            https: https.clone(),
        },
        audit.clone(),
    );
    let state = http::AppState {
        store: store.clone(),
        broker: broker
            .clone()
            .map(|b| Arc::new(mqtt::BrokerHandle(b)) as Arc<dyn BrokerControl>),
        audit,
        logins,
        sessions: Default::default(),
        owntracks: ingest.stats(),
        ingest: ingest.submitter(),
        bus,
        ca: ca.clone(),
        renewal: renewal.handle(),
        owntracks_settings: http::OwnTracksSettings {
            command_ttl: config.owntracks.command_ttl(),
            public_host: Some(config.owntracks.public_host.trim().to_owned())
                .filter(|h| !h.is_empty()),
            http_port: http_addr.port(),
            mqtt_port: mqtt_addr.map(|a| a.port()),
            // Phones are sent to the TLS port when it carries the operator's own certificate,
            // or the built-in CA's once the household opted into trusting that CA by turning
            // HTTPS on (onboarding then says where to get it).
            mqtt_tls_port: mqtt_tls_addr
                .filter(|_| config.mqtt.tls.is_some() || https.is_some())
                .map(|a| a.port()),
            mqtt_cert_port: mqtt_cert_addr.map(|a| a.port()),
            https: https.is_some(),
            mqtt_tls_builtin: config.mqtt.tls.is_none(),
        },
        live: ingest.live(),
        closing: stop_rx.clone(),
        friends,
        pins: pins.clone(),
        alarm: alarm.handle(),
        alarm_live: http::live_feed(alarm.handle(), store.clone()),
        mqtt_link: mqtt_link.handle(),
        map: Arc::new(porchlight_api::owntracks::MapSettings {
            tile_url: config.ui.tile_url.trim().to_owned(),
            tile_attribution: config.ui.tile_attribution.clone(),
        }),
    };
    let mut stop_rx = stop_rx;
    let http_task = tokio::spawn(http::serve(
        http_listener,
        https.clone(),
        state,
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    ));

    let runtime_file = config.data_dir.join("runtime.json");
    write_runtime(
        &runtime_file,
        http_addr,
        https.is_some(),
        mqtt_addr,
        mqtt_tls_addr,
        mqtt_cert_addr,
    )?;
    tracing::info!(http = %http_addr, mqtt = ?mqtt_addr, data_dir = %config.data_dir.display(), "Porchlight is running");
    Ok(Running {
        http_addr,
        mqtt_addr,
        mqtt_tls_addr,
        mqtt_cert_addr,
        https: https.is_some(),
        initial_admin,
        store,
        ca,
        pins,
        broker,
        renewal,
        sweep,
        ingest,
        ha_discovery,
        retention,
        alarm,
        mqtt_link,
        http_stop,
        http_task,
        audit_writer,
        runtime_file,
    })
}

/// Binds the broker's ports; it serves no client until `serve`.
async fn bind_broker(
    config: &Config,
    port: u16,
    ca: &ca::CaService,
    store: Store,
    audit: audit_sink::AuditSink,
    logins: Arc<login::LoginGate>,
    friendships: watch::Receiver<Arc<porchlight_domain::acl::Friendships>>,
) -> Result<porchlight_broker::BoundBroker, Error> {
    let mut broker_config = porchlight_broker::BrokerConfig::new(
        SocketAddr::new(config.mqtt.bind, port),
        config.data_dir.join("mqtt"),
    );
    broker_config.max_connections = config.mqtt.max_connections;
    broker_config.max_payload = config.mqtt.max_payload;
    broker_config.connect_timeout =
        std::time::Duration::from_secs(config.mqtt.connect_timeout_secs);
    broker_config.max_queued_messages = config.mqtt.max_queued_messages;
    broker_config.max_inflight = config.mqtt.max_inflight;
    broker_config.friendships = friendships;
    let tls_port = config.mqtt_tls_port();
    broker_config.tls = match (&config.mqtt.tls, tls_port) {
        (_, None) => None,
        // The operator's own files (their own PKI) win.
        (Some(t), Some(tls_port)) => Some(porchlight_broker::TlsConfig {
            listen: SocketAddr::new(config.mqtt.bind, tls_port),
            identity: porchlight_broker::TlsIdentity::Files {
                cert_path: t.cert.clone(),
                key_path: t.key.clone(),
            },
            ca_path: t.ca.clone(),
            require_client_cert: t.require_client_cert,
        }),
        (None, Some(tls_port)) => {
            match ca
                .mqtt_server_certificate(&ca::server_names(config), std::time::SystemTime::now())
            {
                Ok(server) => Some(cert_renewal::builtin_tls(
                    SocketAddr::new(config.mqtt.bind, tls_port),
                    &server,
                )),
                // The hub (the alarm above all) keeps running without TLS rather than not at
                // all, e.g. when the CA has expired.
                Err(e) => {
                    tracing::error!(error = %e, "MQTT over TLS is off");
                    None
                }
            }
        }
    };
    if let Some(cert_port) = config.mqtt_cert_port() {
        broker_config.cert_tls = cert_listener(config, cert_port, ca).await;
    }
    tracing::debug!(?broker_config, "starting the MQTT broker");
    let gatekeeper = Arc::new(mqtt::StoreGatekeeper::new(store, audit, logins));
    porchlight_broker::Broker::bind(broker_config, gatekeeper)
        .await
        .map_err(|e| match e {
            porchlight_broker::Error::PortInUse(addr) => {
                let plain = addr.port() == port && tls_port != Some(port);
                if !plain && tls_port != Some(addr.port()) {
                    return Error::PortInUse {
                        service: "MQTT certificate",
                        addr: addr.ip(),
                        port: addr.port(),
                        flag: "[mqtt] cert_port",
                    };
                }
                Error::PortInUse {
                    service: if plain { "MQTT" } else { "MQTT TLS" },
                    addr: addr.ip(),
                    port: addr.port(),
                    flag: if plain { "--mqtt-port" } else { "--mqtts-port" },
                }
            }
            other => Error::Broker(other.to_string()),
        })
}

/// The certificate listener ([`cert_renewal::cert_listener_tls`]); `None` (logged) when it
/// cannot be made, e.g. the CA has expired: the hub runs without it.
async fn cert_listener(
    config: &Config,
    port: u16,
    ca: &ca::CaService,
) -> Option<porchlight_broker::TlsConfig> {
    let made = async {
        let server =
            ca.mqtt_server_certificate(&ca::server_names(config), std::time::SystemTime::now())?;
        cert_renewal::cert_listener_tls(ca, SocketAddr::new(config.mqtt.bind, port), &server).await
    };
    match made.await {
        Ok(tls) => Some(tls),
        Err(e) => {
            tracing::error!(error = %e, "the MQTT certificate listener is off");
            None
        }
    }
}

/// HTTPS for the HTTP port when `[http] tls` is on: the server certificate the CA gives the
/// MQTT TLS listener (same names, kept and renewed at start the same way). `None` when off, or
/// when the CA cannot give one (e.g. it expired): the hub then serves plain HTTP rather than
/// nothing, and says so.
fn https_config(config: &Config, ca: &ca::CaService) -> Option<Arc<http::tls::TlsSwitch>> {
    if !config.http.tls {
        return None;
    }
    let certificate = ca
        .mqtt_server_certificate(&ca::server_names(config), std::time::SystemTime::now())
        .map_err(|e| e.to_string())
        .and_then(|server| http::tls::server_config(&server.cert_pem, &server.key_pem));
    match certificate {
        Ok(tls) => Some(http::tls::TlsSwitch::new(tls)),
        Err(e) => {
            tracing::error!(error = %e, "HTTPS is off: the web UI is served over plain HTTP");
            None
        }
    }
}

/// First start: create `admin` with `PORCHLIGHT_ADMIN_PASSWORD` or a random password.
async fn ensure_admin(store: &Store, config: &Config) -> Result<Option<InitialAdmin>, Error> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match &config.initial_admin_password {
        Some(p) => (p.clone(), false),
        None => (random_password(), true),
    };
    let now = std::time::SystemTime::now();
    if generated {
        // Nobody chose it: the UI asks for a new one at the first sign-in.
        store
            .create_user_with_one_time_password("admin", Role::Admin, &password, now)
            .await?;
    } else {
        store
            .create_user("admin", Role::Admin, &password, now)
            .await?;
    }
    tracing::info!("created the first admin account \"admin\"");
    Ok(Some(InitialAdmin {
        username: "admin".into(),
        generated_password: generated.then_some(password),
    }))
}

async fn bind(
    addr: IpAddr,
    port: u16,
    service: &'static str,
    flag: &'static str,
) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind((addr, port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::PortInUse {
                service,
                addr,
                port,
                flag,
            },
            _ => Error::Io {
                what: format!("binding the {service} port {addr}:{port}"),
                source: e,
            },
        })
}

fn local_addr(listener: &tokio::net::TcpListener) -> Result<SocketAddr, Error> {
    listener.local_addr().map_err(|e| Error::Io {
        what: "reading the bound address".into(),
        source: e,
    })
}

/// `runtime.json`: the ports actually bound (useful with port 0), for scripts and tests.
fn write_runtime(
    path: &Path,
    http: SocketAddr,
    https: bool,
    mqtt: Option<SocketAddr>,
    mqtt_tls: Option<SocketAddr>,
    mqtt_cert: Option<SocketAddr>,
) -> Result<(), Error> {
    let body = serde_json::json!({
        "pid": std::process::id(),
        "http_port": http.port(),
        "mqtt_port": mqtt.map(|a| a.port()),
        "mqtt_tls_port": mqtt_tls.map(|a| a.port()),
        "mqtt_cert_port": mqtt_cert.map(|a| a.port()),
        "http_url": format!("http://127.0.0.1:{}/", http.port()),
        // With HTTPS on, the same port speaks TLS (plain requests to loopback are still served).
        "https_url": https.then(|| format!("https://localhost:{}/", http.port())),
    });
    let tmp = path.with_extension("json.tmp");
    let io = |e| Error::Io {
        what: format!("writing {}", path.display()),
        source: e,
    };
    std::fs::write(&tmp, body.to_string()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        what: format!("creating the data directory {}", dir.display()),
        source: e,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            // Not fatal: the database file itself is made 0600 by the store at every open.
            tracing::error!(dir = %dir.display(), error = %e, "cannot make the data directory owner-only (0700)");
        }
    }
    Ok(())
}

/// The database holds password hashes and keys: readable by the owner only. Creating the file
/// 0600 before SQLite opens it makes SQLite give its -wal and -shm files the same mode; files
/// widened later are narrowed again by `Store::open` at every start.
fn create_private_file(path: &Path) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(|e| Error::Io {
        what: format!("creating {}", path.display()),
        source: e,
    })
}
