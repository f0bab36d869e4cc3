//! The MQTT link: a client of an *external* broker (Mosquitto, EMQX, Home Assistant's
//! Mosquitto add-on), so that what the app publishes can reach a Home Assistant that uses
//! another broker than ours (ADR 0015). rumqttc stays inside this module, as rmqtt stays
//! inside the rest of this crate.
//!
//! - [`Link::start`] connects in the background and keeps reconnecting, with the domain's
//!   backoff ([`porchlight_domain::mqtt_link::backoff`], jitter drawn here). A refusal that
//!   only a settings change can cure (bad credentials, not authorized, identifier rejected) and
//!   a CA file that cannot be read stop the retries: the link stays [`LinkState::Failed`] until
//!   it is replaced by one with new settings.
//! - The client id is given whole by the caller (prefix and the per-process suffix); it is the
//!   same across reconnects, so a broker sees one client come back, never two fight.
//! - Availability: `online` is published retained on the availability topic after each
//!   CONNACK, and `offline` is both the MQTT will (the broker publishes it if we vanish) and
//!   published at [`Link::stop`] before the DISCONNECT.
//! - [`LinkHandle`] publishes and subscribes; subscriptions are renewed after each reconnect
//!   (clean sessions). Incoming messages are handed over without waiting: a receiver that does
//!   not keep up loses messages rather than stall the connection's keep-alive.
//! - [`test_connection`] makes one connection of its own (another client id, no will) and
//!   reports how it went, within a timeout.
//!
//! The password is a [`Secret`]: it is handed to rumqttc and never formatted or logged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use porchlight_domain::mqtt_link::{Refusal, backoff};
use porchlight_domain::secret::Secret;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    NetworkOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where and how to connect.
#[derive(Clone)]
pub struct LinkConfig {
    pub host: String,
    pub port: u16,
    /// `Some`: TLS, trusting the CA file given (PEM), or the system's roots.
    pub tls: Option<LinkTls>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The whole client id (prefix, `-`, the process's suffix).
    pub client_id: String,
    /// The retained `online`/`offline` topic (and will); `None`: no availability.
    pub availability_topic: Option<String>,
    pub keep_alive: Duration,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|p| p.masked()))
            .field("client_id", &self.client_id)
            .field("availability_topic", &self.availability_topic)
            .finish()
    }
}

/// TLS towards the external broker.
#[derive(Debug, Clone, Default)]
pub struct LinkTls {
    /// PEM CA certificates to trust; `None`: the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not started, or stopped.
    Disconnected,
    /// Connecting, or waiting to reconnect (the message says why the last try failed).
    Connecting,
    Connected,
    /// Given up until the settings change (the message says why).
    Failed,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Disconnected => "disconnected",
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Failed => "failed",
        }
    }
}

/// The link's state for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub state: LinkState,
    /// Why the last attempt failed (connecting, failed), else `None`.
    pub message: Option<String>,
    /// When the link entered this state.
    pub since: SystemTime,
    /// The client id in use (`None` when no link runs).
    pub client_id: Option<String>,
    /// CONNECT attempts made by this link so far.
    pub attempts: u32,
}

impl LinkStatus {
    /// No link.
    pub fn disconnected(now: SystemTime) -> LinkStatus {
        LinkStatus {
            state: LinkState::Disconnected,
            message: None,
            since: now,
            client_id: None,
            attempts: 0,
        }
    }
}

/// A message received from the external broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMessage {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub retain: bool,
}

/// Errors from publishing or subscribing through the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the MQTT link is stopped")]
    Stopped,
    /// The request queue is full (the link is disconnected, or slower than its callers):
    /// nothing waits, the caller decides (the alarm re-publishes its state on each connect).
    #[error("the MQTT link's queue is full")]
    QueueFull,
}

fn link_error(e: rumqttc::ClientError) -> LinkError {
    match e {
        rumqttc::ClientError::TryRequest(_) => LinkError::QueueFull,
        rumqttc::ClientError::Request(_) => LinkError::Stopped,
    }
}

/// Requests (publishes, subscriptions) queued towards the connection task.
pub const REQUEST_QUEUE: usize = 64;

/// Most messages queued per subscription before newer ones are dropped.
const SUBSCRIPTION_QUEUE: usize = 256;

struct Subscription {
    filter: String,
    tx: mpsc::Sender<LinkMessage>,
}

/// What the handle and the connection task share.
struct Shared {
    /// Every live subscription: renewed after each CONNACK, matched against each message.
    subscriptions: Mutex<Vec<Subscription>>,
}

/// Publishes and subscribes through a running [`Link`]; cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    client: AsyncClient,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle").finish_non_exhaustive()
    }
}

impl LinkHandle {
    /// Publishes at QoS 0, never waiting: queued (up to [`REQUEST_QUEUE`] requests) while
    /// connecting, refused with [`LinkError::QueueFull`] beyond that. Clean sessions: what is
    /// queued when a connection drops is lost whatever the QoS, so publishers re-publish their
    /// state on connect (watch [`Link::watch_status`]).
    ///
    /// QoS 0 because a QoS 1 publish makes the broker answer PUBACKs: two in a row (state,
    /// then attributes) and a broker without TCP_NODELAY (Mosquitto's default) holds the
    /// second, and the next command behind it, until our delayed ACK, ~40 ms later. Measured
    /// through Mosquitto 2.0.11 with its defaults: command → state p50 50 ms at QoS 1, see ADR
    /// 0015 for the figure at QoS 0. TCP already delivers what a live connection was given.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<(), LinkError> {
        self.client
            .try_publish(topic, QoS::AtMostOnce, retain, payload.into())
            .map_err(link_error)
    }

    /// Subscribes to `filter` at QoS 1; renewed after every reconnect (so a subscription made
    /// while disconnected takes effect at the next CONNACK).
    pub fn subscribe(&self, filter: &str) -> Result<mpsc::Receiver<LinkMessage>, LinkError> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        if let Ok(mut subs) = self.shared.subscriptions.lock() {
            subs.push(Subscription {
                filter: filter.to_owned(),
                tx,
            });
        }
        match self.client.try_subscribe(filter, QoS::AtLeastOnce) {
            // Renewed at the next CONNACK.
            Ok(()) | Err(rumqttc::ClientError::TryRequest(_)) => Ok(rx),
            Err(e) => Err(link_error(e)),
        }
    }
}

/// A running link. Dropping it aborts the connection (the broker then publishes the will);
/// [`Link::stop`] leaves cleanly.
pub struct Link {
    handle: LinkHandle,
    status: watch::Receiver<LinkStatus>,
    /// Tells the connection task to publish `offline`, disconnect and end.
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How long [`Link::stop`] waits for `offline` and the DISCONNECT to go out.
const STOP_GRACE: Duration = Duration::from_secs(2);

impl Link {
    /// Starts connecting in the background.
    pub fn start(config: LinkConfig) -> Link {
        let (status_tx, status) = watch::channel(LinkStatus {
            state: LinkState::Connecting,
            message: None,
            since: SystemTime::now(),
            client_id: Some(config.client_id.clone()),
            attempts: 0,
        });
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            subscriptions: Mutex::new(Vec::new()),
        });
        let (options, setup_error) = match options(&config, true) {
            Ok(o) => (o, None),
            // Still make a client so the handle works (its requests go nowhere).
            Err(e) => (
                MqttOptions::new("porchlight-invalid", "localhost", 1),
                Some(e),
            ),
        };
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        eventloop.set_network_options(network_options());
        let handle = LinkHandle {
            client: client.clone(),
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(async move {
            if let Some(e) = setup_error {
                tracing::warn!(error = %e, "MQTT link not started");
                set(&status_tx, LinkState::Failed, Some(e), 0);
                return;
            }
            run(config, client, eventloop, shared, status_tx, stop_rx).await;
        });
        Link {
            handle,
            status,
            stop,
            task: Some(task),
        }
    }

    pub fn handle(&self) -> LinkHandle {
        self.handle.clone()
    }

    /// The current status.
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Status changes, for waiting on one.
    pub fn watch_status(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// Publishes `offline` (when connected), disconnects and ends the task.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

fn set(tx: &watch::Sender<LinkStatus>, state: LinkState, message: Option<String>, attempts: u32) {
    tx.send_modify(|s| {
        if s.state != state {
            s.since = SystemTime::now();
        }
        s.state = state;
        s.message = message;
        s.attempts = attempts;
    });
}

/// TCP_NODELAY: an alarm state is one small packet that must leave now. With Nagle on, it
/// waits for the ACK of the previous one, which the broker's delayed ACK holds back ~40 ms
/// (measured through Mosquitto: command → state p50 50 ms with Nagle, see ADR 0015).
fn network_options() -> NetworkOptions {
    let mut n = NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// The rumqttc options for `config`; `with_will`: the availability will.
fn options(config: &LinkConfig, with_will: bool) -> Result<MqttOptions, String> {
    if config.client_id.is_empty() || config.client_id.starts_with(' ') {
        return Err("the client id is empty".into());
    }
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options.set_keep_alive(config.keep_alive.max(Duration::from_secs(5)));
    options.set_clean_session(true);
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(user) = &config.username {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    if with_will && let Some(topic) = &config.availability_topic {
        options.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, true));
    }
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::tls_with_config(tls_config(tls)?));
    }
    Ok(options)
}

fn tls_config(tls: &LinkTls) -> Result<TlsConfiguration, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("TLS: cannot read the CA file {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(format!(
                    "TLS: no PEM certificate found in the CA file {}",
                    path.display()
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err("TLS: no system CA certificates found; give a CA file".into());
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// What a failed connection attempt means: the message, and whether to keep retrying.
fn describe(e: &ConnectionError, config: &LinkConfig) -> (String, bool) {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            match Refusal::from_connack(connack_code(*code)) {
                Some(refusal) => (refusal.message(&config.client_id), refusal.retry_helps()),
                None => ("refused by the broker".into(), true),
            }
        }
        ConnectionError::Tls(e) => (format!("TLS error: {e}"), true),
        ConnectionError::Io(e) if is_tls_io(e) => (format!("TLS error: {e}"), true),
        ConnectionError::Io(e) => (
            format!("unreachable: {}:{}: {e}", config.host, config.port),
            true,
        ),
        ConnectionError::NetworkTimeout => (
            format!("unreachable: {}:{}: no answer", config.host, config.port),
            true,
        ),
        other => (format!("connection lost: {other}"), true),
    }
}

/// rustls reports certificate problems as I/O errors wrapping its own error.
fn is_tls_io(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

fn connack_code(code: ConnectReturnCode) -> u8 {
    match code {
        ConnectReturnCode::Success => 0,
        ConnectReturnCode::RefusedProtocolVersion => 1,
        ConnectReturnCode::BadClientId => 2,
        ConnectReturnCode::ServiceUnavailable => 3,
        ConnectReturnCode::BadUserNamePassword => 4,
        ConnectReturnCode::NotAuthorized => 5,
    }
}

/// A jitter draw in `[0, 1)`.
fn jitter() -> f64 {
    rand::random::<f64>()
}

/// The connection task: poll, react to CONNACKs and errors, back off, until stopped.
async fn run(
    config: LinkConfig,
    client: AsyncClient,
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    status: watch::Sender<LinkStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    let mut attempts: u32 = 0;
    let mut connected = false;
    loop {
        if !connected {
            // While disconnected, each poll is one CONNECT attempt (it returns with the
            // CONNACK or the failure).
            attempts = attempts.saturating_add(1);
            status.send_modify(|s| s.attempts = attempts);
        }
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code != ConnectReturnCode::Success {
                    continue; // rumqttc reports it as an error next.
                }
                connected = true;
                failures = 0;
                tracing::info!(host = %config.host, port = config.port, client_id = %config.client_id, "MQTT link connected");
                set(&status, LinkState::Connected, None, attempts);
                if let Some(topic) = &config.availability_topic
                    && client
                        .try_publish(topic, QoS::AtLeastOnce, true, "online")
                        .is_err()
                {
                    tracing::warn!("MQTT link: availability not published (queue full)");
                }
                let filters: Vec<String> = shared
                    .subscriptions
                    .lock()
                    .map(|subs| subs.iter().map(|s| s.filter.clone()).collect())
                    .unwrap_or_default();
                for filter in filters {
                    if client.try_subscribe(&filter, QoS::AtLeastOnce).is_err() {
                        tracing::warn!(%filter, "MQTT link: subscription not renewed (queue full)");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => dispatch(&shared, p),
            Ok(_) => {}
            Err(e) => {
                connected = false;
                failures = failures.saturating_add(1);
                let (message, retry) = describe(&e, &config);
                if !retry {
                    tracing::warn!(host = %config.host, port = config.port, %message, "MQTT link: giving up until its settings change");
                    set(&status, LinkState::Failed, Some(message), attempts);
                    // Publishes and subscriptions fail at once from now on (`Stopped`).
                    drop(eventloop);
                    let _ = stop.wait_for(|s| *s).await;
                    set(&status, LinkState::Disconnected, None, attempts);
                    return;
                }
                let delay = backoff(failures, jitter());
                tracing::info!(host = %config.host, port = config.port, %message, retry_in_ms = delay.as_millis() as u64, "MQTT link: not connected");
                set(&status, LinkState::Connecting, Some(message), attempts);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if connected {
        leave(&config, &client, &mut eventloop).await;
    }
    set(&status, LinkState::Disconnected, None, attempts);
}

/// Publishes `offline` and disconnects, polling until the DISCONNECT is out (bounded).
async fn leave(config: &LinkConfig, client: &AsyncClient, eventloop: &mut EventLoop) {
    if let Some(topic) = &config.availability_topic {
        let _ = client.try_publish(topic, QoS::AtLeastOnce, true, "offline");
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(STOP_GRACE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn dispatch(shared: &Shared, p: rumqttc::Publish) {
    let Ok(mut subs) = shared.subscriptions.lock() else {
        return;
    };
    subs.retain(|s| !s.tx.is_closed());
    for sub in subs.iter() {
        if porchlight_domain::acl::filter_matches(&sub.filter, &p.topic) {
            let message = LinkMessage {
                topic: p.topic.clone(),
                payload: p.payload.clone(),
                retain: p.retain,
            };
            if sub.tx.try_send(message).is_err() {
                tracing::debug!(filter = %sub.filter, "MQTT link: a slow subscriber lost a message");
            }
        }
    }
}

/// The result of [`test_connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// The broker accepted the CONNECT.
    Connected,
    /// The broker answered with a refusal (the mapped message).
    Refused(String),
    /// No MQTT answer: connection refused, no route, DNS, timeout.
    Unreachable(String),
    /// The TLS handshake failed (or the TLS settings are unusable).
    Tls(String),
}

impl TestOutcome {
    pub fn message(&self) -> String {
        match self {
            TestOutcome::Connected => "connected".into(),
            TestOutcome::Refused(m) | TestOutcome::Unreachable(m) | TestOutcome::Tls(m) => {
                m.clone()
            }
        }
    }
}

/// Connects once with `config` (whose client id must be a fresh one: the live link's would
/// evict it), without a will, and disconnects; answers within `timeout`.
pub async fn test_connection(config: LinkConfig, timeout: Duration) -> TestOutcome {
    let options = match options(&config, false) {
        Ok(o) => o,
        Err(e) if e.starts_with("TLS") => return TestOutcome::Tls(e),
        Err(e) => return TestOutcome::Refused(e),
    };
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    eventloop.set_network_options(network_options());
    let attempt = tokio::time::timeout(timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code == ConnectReturnCode::Success =>
                {
                    return TestOutcome::Connected;
                }
                Ok(_) => {}
                Err(e) => {
                    let (message, _) = describe(&e, &config);
                    return match e {
                        ConnectionError::ConnectionRefused(_) => TestOutcome::Refused(message),
                        ConnectionError::Tls(_) => TestOutcome::Tls(message),
                        ConnectionError::Io(ref io) if is_tls_io(io) => TestOutcome::Tls(message),
                        _ => TestOutcome::Unreachable(message),
                    };
                }
            }
        }
    })
    .await;
    let outcome = attempt.unwrap_or_else(|_| {
        TestOutcome::Unreachable(format!(
            "unreachable: {}:{}: no MQTT answer within {} s",
            config.host,
            config.port,
            timeout.as_secs()
        ))
    });
    if outcome == TestOutcome::Connected {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    outcome
}
