//! The MQTT link as a service (ADR 0015): the optional client of an external broker, started
//! from the stored settings and replaced whenever they change.
//!
//! - [`MqttLink::start`] reads `Store::mqtt_link` and, when enabled, starts a
//!   [`porchlight_broker::link::Link`]; [`MqttLink::stop`] stops it (publishing `offline`).
//! - The process's client id suffix (3 random bytes, 6 hex characters) is drawn once here and
//!   kept for the life of the process: reconnects and settings changes reuse it, so this
//!   process is always one identity to the broker, and another process (another suffix) never
//!   evicts it. [`MqttLinkHandle::test`] draws a fresh suffix for each test connection, so a
//!   test never evicts the live client either.
//! - The availability topic is `porchlight/<node>/status` (retained `online`; `offline` as the
//!   will and at stop).
//! - [`MqttLinkHandle::watch`] follows the running link (its publish/subscribe handle and
//!   status, `None` while off): the alarm publishes its Home Assistant entity there and takes
//!   commands from it, re-announcing after each CONNACK (ADR 0015).
//!
//! The password is never logged; only the HTTP layer sees the settings' JSON shapes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use porchlight_broker::link::{
    Link, LinkConfig, LinkHandle, LinkStatus, LinkTls, TestOutcome, test_connection,
};
use porchlight_domain::alarm::topics;
use porchlight_domain::mqtt_link::{LinkSettings, client_id};
use porchlight_domain::secret::Secret;
use porchlight_store::{LinkPassword, Store, StoredLink};
use tokio::sync::{Mutex, watch};

/// How long a test connection may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The MQTT keep-alive towards the external broker.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The running service; [`MqttLink::stop`] ends it.
#[derive(Debug)]
pub struct MqttLink {
    handle: MqttLinkHandle,
}

/// What the HTTP API (and later the alarm) use; cheap to clone.
#[derive(Clone)]
pub struct MqttLinkHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MqttLinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLinkHandle")
            .field("suffix", &self.inner.suffix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    /// This process's client id suffix, drawn once at start.
    suffix: [u8; 3],
    /// The availability topic's node: `porchlight/<node>/status`.
    node: String,
    /// The running link, if enabled; replaced as a whole on a settings change (the lock is
    /// held across stop and start, so two changes never leave two links running).
    current: Mutex<Option<Link>>,
    /// The running link for its users; `None` while off.
    conn: watch::Sender<Option<LinkConn>>,
}

/// The running link as its users see it.
#[derive(Debug, Clone)]
pub struct LinkConn {
    pub handle: LinkHandle,
    pub status: watch::Receiver<LinkStatus>,
}

impl MqttLink {
    /// Starts the link from the stored settings (if enabled). A settings row that cannot be
    /// read leaves the link off, with a warning.
    pub async fn start(store: Store, node: String) -> MqttLink {
        let handle = MqttLinkHandle {
            inner: Arc::new(Inner {
                store: store.clone(),
                suffix: rand::random(),
                node,
                current: Mutex::new(None),
                conn: watch::Sender::new(None),
            }),
        };
        match store.mqtt_link().await {
            Ok(stored) => handle.run(&stored).await,
            Err(e) => tracing::warn!(error = %e, "MQTT link settings unreadable; link off"),
        }
        MqttLink { handle }
    }

    pub fn handle(&self) -> MqttLinkHandle {
        self.handle.clone()
    }

    /// Stops the link (publishing `offline` to the external broker when connected).
    pub async fn stop(self) {
        if let Some(link) = self.handle.inner.current.lock().await.take() {
            self.handle.inner.conn.send_replace(None);
            link.stop().await;
        }
    }
}

impl MqttLinkHandle {
    /// This process's client id with `prefix`.
    pub fn client_id(&self, prefix: &str) -> String {
        client_id(prefix, self.inner.suffix)
    }

    /// The availability topic.
    pub fn availability_topic(&self) -> String {
        topics::link_status(&self.inner.node)
    }

    /// The install's node id (the external broker's topics are under it).
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The running link, now and after each settings change (`None` while off).
    pub fn watch(&self) -> watch::Receiver<Option<LinkConn>> {
        self.inner.conn.subscribe()
    }

    /// The link's status (disconnected when off).
    pub async fn status(&self) -> LinkStatus {
        match &*self.inner.current.lock().await {
            Some(link) => link.status(),
            None => LinkStatus::disconnected(SystemTime::now()),
        }
    }

    /// The running link's publish/subscribe handle (`None` when off).
    pub async fn publisher(&self) -> Option<LinkHandle> {
        self.inner.current.lock().await.as_ref().map(Link::handle)
    }

    /// The stored settings.
    pub async fn stored(&self) -> Result<StoredLink, porchlight_store::Error> {
        self.inner.store.mqtt_link().await
    }

    /// Stores validated settings and restarts the link with them (stopping the old one first,
    /// and starting none when disabled).
    pub async fn update(
        &self,
        settings: &LinkSettings,
        password: LinkPassword,
    ) -> Result<StoredLink, porchlight_store::Error> {
        let stored = self
            .inner
            .store
            .set_mqtt_link(settings, password, SystemTime::now())
            .await?;
        self.run(&stored).await;
        Ok(stored)
    }

    /// Replaces the running link by one for `stored`.
    async fn run(&self, stored: &StoredLink) {
        let mut current = self.inner.current.lock().await;
        if let Some(old) = current.take() {
            self.inner.conn.send_replace(None);
            old.stop().await;
        }
        if stored.settings.enabled {
            let config = self.config(
                &stored.settings,
                stored.password.clone(),
                self.client_id(&stored.settings.client_id_prefix),
                true,
            );
            tracing::info!(host = %config.host, port = config.port, client_id = %config.client_id, "starting the MQTT link");
            let link = Link::start(config);
            self.inner.conn.send_replace(Some(LinkConn {
                handle: link.handle(),
                status: link.watch_status(),
            }));
            *current = Some(link);
        }
    }

    /// Tries one connection with `settings` and `password` under a fresh client id suffix.
    pub async fn test(
        &self,
        settings: &LinkSettings,
        password: Option<Secret>,
    ) -> (String, TestOutcome) {
        let id = client_id(&settings.client_id_prefix, rand::random());
        let config = self.config(settings, password, id.clone(), false);
        (id, test_connection(config, TEST_TIMEOUT).await)
    }

    fn config(
        &self,
        settings: &LinkSettings,
        password: Option<Secret>,
        client_id: String,
        availability: bool,
    ) -> LinkConfig {
        LinkConfig {
            host: settings.host.clone(),
            port: settings.port,
            tls: settings.tls.then(|| LinkTls {
                ca_file: settings.ca_file.clone().map(Into::into),
            }),
            username: settings.username.clone(),
            password,
            client_id,
            availability_topic: availability.then(|| self.availability_topic()),
            keep_alive: KEEP_ALIVE,
        }
    }
}
