//! Porchlight's embedded MQTT broker.
//!
//! Wraps [rmqtt](https://crates.io/crates/rmqtt) (pinned `=0.24.0`) as a library: one plain
//! TCP listener speaking MQTT 3.1 (`MQIsdp`), 3.1.1 and 5 on the same port, with
//! Porchlight's authentication ([`Gatekeeper`]) and topic rules
//! ([`porchlight_domain::acl`]) enforced through rmqtt hooks. The rest of Porchlight talks to
//! the broker only through [`Broker`] and [`Bus`]; no rmqtt type is part of this API.
//!
//! Starting is two steps so the application can attach to the [`Bus`] before any client gets
//! in: [`Broker::bind`] binds the ports (a busy port fails here) and registers the hooks,
//! [`BoundBroker::bus`] hands out the bus, and [`BoundBroker::serve`] starts accepting.
//! Connections made in between wait in the kernel's backlog. [`Broker::start`] does both.
//!
//! What reaches the app: every allowed client publish and will message, as an [`Inbound`]
//! carrying the publisher's authenticated [`Identity`]. [`Bus::consume`] receivers get them
//! with backpressure; [`Bus::consume_acked`] receivers get them with backpressure and an
//! [`Ack`] to answer, and a client's QoS 1/2 publish is acknowledged (PUBACK / PUBREC) only
//! once every matching acked consumer committed it (durable ingest; ADR 0008);
//! [`Bus::watch`] receivers get them without ever slowing a publisher, and are told how many
//! they missed (live views). Any of them can opt in to the app's own publishes
//! ([`Origins::ALL`]).
//!
//! What reaches a subscriber: what its filters match and
//! [`porchlight_domain::acl::may_receive`] lets through, checked when each message is about
//! to be written to it (rmqtt's `MessageExpiryCheck` hook), against the friendships the app
//! keeps current in [`BrokerConfig::friendships`]. A new grant also sends the owner's
//! retained OwnTracks messages to the viewer's existing sessions, as a SUBSCRIBE would.
//!
//! Every broker has its own rmqtt `ServerContext`, so several brokers can run in one process
//! (see the crate tests). rmqtt's only process-wide state we know of is the cached CPU
//! "busy" flag, which we switch off.

mod bus;
mod grants;
mod hooks;
pub mod link;
mod refusals;
mod retain;
mod shared;
mod takeover;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::task::JoinHandle;

pub use bytes::Bytes;
pub use porchlight_domain::acl::{Friendships, Grant, Identity, LoginMethod, Role};

use crate::bus::BusImpl;
pub use crate::bus::{Ack, Delivery, Watch, Watched};
use crate::hooks::{HookHandler, State};
pub use zeroize::Zeroizing;

/// rmqtt's listener id of the plain listener.
pub(crate) const PLAIN_LISTENER_ID: u16 = 1;
/// rmqtt's listener id of the loopback listener behind the TLS listener ([`BrokerConfig::tls`]).
pub(crate) const TLS_LISTENER_ID: u16 = 2;
/// rmqtt's listener id of the loopback listener behind the certificate listener
/// ([`BrokerConfig::cert_tls`]).
pub(crate) const CERT_LISTENER_ID: u16 = 3;

pub use crate::tls::{
    AUDIT_WINDOW as TLS_AUDIT_WINDOW, AUDITED_PER_WINDOW as TLS_AUDITED_PER_WINDOW,
    server_config as tls_server_config,
};

/// How the broker listens and what it tolerates.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Plain MQTT listener address; port 0 picks a free port (see [`Broker::local_addr`]).
    pub listen: SocketAddr,
    /// Most MQTT sessions (connected, or offline and persistent); more are refused with CONNACK
    /// "server unavailable", and audited as a count ([`AuditEvent::ConnectionsRefused`]).
    pub max_connections: usize,
    /// Largest accepted PUBLISH payload in bytes; a client sending more is disconnected.
    pub max_payload: usize,
    /// Time a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Messages queued per session for a subscriber that is slower than its publishers (or
    /// offline with a persistent session); beyond this rmqtt drops them.
    pub max_queued_messages: usize,
    /// Unacknowledged QoS 1/2 messages in flight per session.
    pub max_inflight: u16,
    /// Where the broker keeps retained messages (`retained.json`, written crash-safely within
    /// half a second of a change and at shutdown, with the previous copy in
    /// `retained.json.bak`). Created if missing.
    pub data_dir: PathBuf,
    /// An additional MQTT-over-TLS listener.
    pub tls: Option<TlsConfig>,
    /// The certificate listener: MQTT over TLS that requires a client certificate chaining to
    /// `ca_path` (our CAs). Its connections reach the gatekeeper with
    /// [`Credentials::issued_cert`] (serial and CN), not [`Credentials::cert_cn`]: the
    /// gatekeeper looks the certificate up rather than trusting its name.
    /// `require_client_cert` is implied.
    pub cert_tls: Option<TlsConfig>,
    /// How long a client's QoS 1/2 publish waits for the [`Bus::consume_acked`] consumers it
    /// matches to commit it (room in their channels included). Past it the publish is refused
    /// like a failed commit: the client is disconnected without PUBACK / PUBREC and resends
    /// on reconnect. rmqtt reads nothing else from that connection meanwhile (PINGREQ
    /// included), so keep this well below the clients' keep-alive (rmqtt closes a connection
    /// silent for 1.5 × its keep-alive; a client closes one whose PINGRESP does not come).
    pub commit_timeout: Duration,
    /// Who granted whom the sight of their OwnTracks topics, kept current by the app. Read at
    /// each SUBSCRIBE naming another user and at each delivery to a user of a message on
    /// another user's topic ([`porchlight_domain::acl::may_receive`]), so a grant or a revoke
    /// applies to existing subscriptions (and queued messages) at once, without reconnecting.
    /// Default: nobody granted anybody.
    pub friendships: tokio::sync::watch::Receiver<Arc<Friendships>>,
}

impl BrokerConfig {
    /// Defaults for everything but the address and the data directory.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            max_connections: 10_000,
            max_payload: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_queued_messages: 10_000,
            max_inflight: 32,
            data_dir,
            tls: None,
            cert_tls: None,
            commit_timeout: Duration::from_secs(10),
            friendships: tokio::sync::watch::channel(Arc::default()).1,
        }
    }
}

/// An MQTT-over-TLS listener (same protocols, rules and limits as the plain one).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Port 0 allowed (see [`Broker::tls_local_addr`]).
    pub listen: SocketAddr,
    /// The server's certificate chain and private key.
    pub identity: TlsIdentity,
    /// PEM CA certificate(s) client certificates must chain to (default: the server's
    /// certificate chain).
    pub ca_path: Option<PathBuf>,
    /// Require a client certificate signed by the CA. Its CN replaces the CONNECT username
    /// and is passed to the gatekeeper as [`Credentials::cert_cn`]. Without this, the TLS
    /// listener does not ask for client certificates at all (rmqtt has no "optional" mode).
    pub require_client_cert: bool,
}

/// Where the TLS listener's certificate and key come from.
#[derive(Clone)]
pub enum TlsIdentity {
    /// PEM files made by the operator (their own PKI).
    Files {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
    /// PEM text held in memory (the built-in CA's server certificate, whose key is sealed at
    /// rest); never written to a file.
    Pem {
        cert_chain_pem: String,
        key_pem: zeroize::Zeroizing<String>,
    },
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsIdentity::Files {
                cert_path,
                key_path,
            } => f
                .debug_struct("Files")
                .field("cert_path", cert_path)
                .field("key_path", key_path)
                .finish(),
            TlsIdentity::Pem { .. } => f.write_str("Pem(…)"),
        }
    }
}

/// MQTT protocol level of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolLevel {
    /// MQTT 3.1 (`MQIsdp`).
    V31 = 3,
    /// MQTT 3.1.1.
    V311 = 4,
    /// MQTT 5.
    V5 = 5,
}

impl ProtocolLevel {
    /// The protocol level byte of the CONNECT packet.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(level: u8) -> Self {
        match level {
            3 => ProtocolLevel::V31,
            5 => ProtocolLevel::V5,
            _ => ProtocolLevel::V311,
        }
    }
}

/// What a client presented in its CONNECT.
#[derive(Clone)]
pub struct Credentials {
    pub username: Option<String>,
    /// Never logged; redacted in `Debug`.
    pub password: Option<Vec<u8>>,
    pub client_id: String,
    pub peer: SocketAddr,
    pub protocol: ProtocolLevel,
    /// Common name of a client certificate the TLS listener verified against its CA (only
    /// with [`TlsConfig::require_client_cert`]); `username` then equals it. `None` on the
    /// plain listener. A verified certificate without a CN gives `None` here and leaves the
    /// client's own username in place, so a gatekeeper must trust `cert_cn`, not `username`.
    pub cert_cn: Option<String>,
    /// The verified client certificate of a connection to the certificate listener
    /// ([`BrokerConfig::cert_tls`]); `None` elsewhere. The CONNECT's username and password
    /// are not consulted for these.
    pub issued_cert: Option<PeerCertificate>,
}

/// A client certificate the certificate listener verified against its trust roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Lower-case hex without leading zeros (as `openssl x509 -serial` prints it, trimmed).
    pub serial: String,
    pub common_name: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_id", &self.client_id)
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .field("cert_cn", &self.cert_cn)
            .field("issued_cert", &self.issued_cert)
            .finish()
    }
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// CONNACK 4 (MQTT 3.x) / 0x86 (MQTT 5).
    BadCredentials,
    /// CONNACK 5 (MQTT 3.x) / 0x87 (MQTT 5).
    NotAuthorized,
    /// A client certificate on the certificate listener that may not log in: sent as
    /// [`Refusal::NotAuthorized`], audited with the reason.
    Certificate(CertificateRefusal),
}

/// Why a verified client certificate may not log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateRefusal {
    /// Not one we issued (or its serial and name disagree with our record).
    Unknown,
    Revoked,
    Expired,
}

impl CertificateRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            CertificateRefusal::Unknown => "client certificate not issued by this hub",
            CertificateRefusal::Revoked => "client certificate revoked",
            CertificateRefusal::Expired => "client certificate expired",
        }
    }
}

impl Refusal {
    /// The CONNACK return / reason code sent for this refusal at `protocol`.
    pub fn connack_code(self, protocol: ProtocolLevel) -> u8 {
        match (self, protocol) {
            (Refusal::BadCredentials, ProtocolLevel::V5) => 0x86,
            (Refusal::NotAuthorized | Refusal::Certificate(_), ProtocolLevel::V5) => 0x87,
            (Refusal::BadCredentials, _) => 4,
            (Refusal::NotAuthorized | Refusal::Certificate(_), _) => 5,
        }
    }
}

/// One connected MQTT client, as an admin's overview shows it: who it authenticated as and
/// how, from where, with which protocol. Never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedClient {
    pub client_id: String,
    /// The identity the session was accepted with (user, role, device, login method).
    pub identity: Identity,
    /// The client's address (`None` if rmqtt did not record one).
    pub peer: Option<SocketAddr>,
    pub protocol: ProtocolLevel,
    /// MQTT 3.x clean session / MQTT 5 clean start, as the CONNECT asked.
    pub clean_start: bool,
    /// When rmqtt accepted this connection.
    pub connected_at: SystemTime,
    /// Topic filters the session is subscribed to.
    pub subscriptions: usize,
}

/// Something the audit log should keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    Connect {
        at: SystemTime,
        peer: SocketAddr,
        client_id: String,
        username: Option<String>,
        protocol: u8,
        /// The CONNACK code sent: 0 accepted, 4/5 (3.x) or 0x86/0x87 (v5) refused.
        code: u8,
        reason: String,
    },
    Disconnect {
        at: SystemTime,
        peer: SocketAddr,
        client_id: String,
        username: Option<String>,
        reason: String,
    },
    PublishDenied {
        at: SystemTime,
        client_id: String,
        username: Option<String>,
        topic: String,
    },
    SubscribeDenied {
        at: SystemTime,
        client_id: String,
        username: Option<String>,
        filter: String,
    },
    /// CONNECTs refused because the broker already holds [`BrokerConfig::max_connections`]
    /// sessions (CONNACK 3, or 0x88 on MQTT 5). rmqtt refuses them before authentication, so
    /// they are counted, not recorded one by one: one event at the first refusal, then at most
    /// one per [`REFUSAL_SUMMARY_EVERY`] while refusals go on (and one at shutdown), each with
    /// the number refused since the previous event.
    ConnectionsRefused {
        at: SystemTime,
        /// Refusals since the previous `ConnectionsRefused` event (at least 1).
        count: u64,
        /// The session limit in force.
        limit: usize,
        /// The address of the last refused connection of the interval.
        last_peer: SocketAddr,
    },
    /// A connection to a TLS listener that never became a TLS session: plain MQTT on the TLS
    /// port, a client certificate from another CA or expired or missing, a client that does
    /// not trust the server certificate, a handshake that timed out. Recorded one by one up to
    /// [`TLS_AUDITED_PER_WINDOW`] per [`TLS_AUDIT_WINDOW`] and listener, then summed up
    /// (`count` > 1, `peer` the last one's).
    TlsRefused {
        at: SystemTime,
        peer: SocketAddr,
        /// The TLS listener's port.
        port: u16,
        count: u64,
        reason: String,
    },
}

/// How often a flood of "too many connections" refusals is summed up into one
/// [`AuditEvent::ConnectionsRefused`].
pub const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Decides who may connect, and receives audit events.
#[async_trait]
pub trait Gatekeeper: Send + Sync + 'static {
    /// Check a CONNECT's credentials. Only called when a username is present.
    async fn authenticate(&self, c: &Credentials) -> Result<Identity, Refusal>;
    /// Keep an audit event. Called on broker tasks: must not block.
    fn record(&self, event: AuditEvent);
}

/// Broker errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("address {0} is already in use")]
    PortInUse(SocketAddr),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("invalid topic {0:?}")]
    InvalidTopic(String),
    #[error("invalid QoS {0}")]
    InvalidQos(u8),
    #[error("the broker is not running")]
    NotRunning,
    #[error("publish to {topic:?} failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("reading the retained message of {topic:?} failed: {reason}")]
    Retained { topic: String, reason: String },
}

/// Who put a message on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A PUBLISH of a connected client, allowed by its ACL.
    Client,
    /// The will message of a client whose connection ended (its topic was checked at CONNECT).
    Will,
    /// The application, through [`Bus::publish`].
    App,
}

/// Which origins a [`Bus::consume_from`] / [`Bus::watch_from`] receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origins {
    app: bool,
}

impl Origins {
    /// Client publishes and will messages: what [`Bus::consume`] and [`Bus::watch`] get.
    pub const CLIENTS: Origins = Origins { app: false };
    /// Client publishes, will messages and the application's own publishes. Opt-in, because a
    /// service that publishes what it consumes would otherwise feed itself.
    pub const ALL: Origins = Origins { app: true };

    /// Whether a message of `origin` is for this receiver.
    pub fn admits(self, origin: Origin) -> bool {
        origin != Origin::App || self.app
    }
}

/// A message on the bus: an allowed client publish, a will message, or (for receivers that
/// opted in) an application publish. Carries everything a consumer needs, so none has to look
/// up the publisher per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
    /// 0, 1 or 2, as published.
    pub qos: u8,
    pub retain: bool,
    pub origin: Origin,
    /// The identity the publishing connection authenticated as (user id and name, role, and
    /// the device when it logged in with a device key); for a will, the identity of the
    /// connection that left it. `None` for [`Origin::App`].
    pub identity: Option<Arc<Identity>>,
    /// The publisher's MQTT client id (`porchlight` for [`Origin::App`]).
    pub client_id: String,
}

/// The application's in-process link to the broker.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Publish as the broker itself (no ACL) to MQTT subscribers; `retain` stores it. Bus
    /// receivers that opted in with [`Origins::ALL`] get it too, with [`Origin::App`].
    async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
    ) -> Result<(), Error>;

    /// A durable consumer: every allowed client publish and will message matching `filter`.
    /// Delivery applies backpressure: a full receiver stalls the publishing client, nothing is
    /// dropped. An invalid filter yields a receiver that is already closed.
    fn consume(&self, filter: &str, capacity: usize) -> tokio::sync::mpsc::Receiver<Inbound> {
        self.consume_from(filter, capacity, Origins::CLIENTS)
    }

    /// [`Bus::consume`] with a choice of origins. A consumer that takes [`Origins::ALL`] must
    /// not await its own [`Bus::publish`] while its receiver is full.
    fn consume_from(
        &self,
        filter: &str,
        capacity: usize,
        origins: Origins,
    ) -> tokio::sync::mpsc::Receiver<Inbound>;

    /// A durable consumer whose deliveries must be acknowledged: the messages of
    /// [`Bus::consume_from`] (same backpressure), each as a [`Delivery`] with an [`Ack`].
    ///
    /// For a client's QoS 1/2 publish the client's PUBACK (QoS 1) / PUBREC (QoS 2) is sent
    /// only after every matching acked consumer called [`Ack::commit`]; MQTT subscribers and
    /// retained storage get the message only then, too. [`Ack::fail`], dropping the [`Ack`]
    /// (also by dropping the receiver with deliveries in it), or no answer within
    /// [`BrokerConfig::commit_timeout`] refuses the publish: the client's connection is closed
    /// without acknowledgement, and a client with a persistent session (clean session 0: what
    /// OwnTracks onboarding should configure) resends the message after reconnecting. A dropped receiver stops
    /// counting for later messages. A consumer may thus see a message again (also one it
    /// committed, when another acked consumer failed): commits must be idempotent.
    ///
    /// While it waits, rmqtt processes nothing else of that client's connection (it handles
    /// one packet at a time per connection); other connections are not held up. So one
    /// connection's throughput is bounded by the commit latency: batch commits across
    /// connections, and answer each delivery as soon as its batch is durable.
    ///
    /// Nobody waits for the answer to QoS 0 publishes, will messages and the app's own
    /// publishes ([`Ack::is_awaited`] is false), but the consumer must commit them promptly
    /// anyway: within 50 ms for QoS 0 points. An invalid filter yields a closed receiver.
    fn consume_acked(
        &self,
        filter: &str,
        capacity: usize,
        origins: Origins,
    ) -> tokio::sync::mpsc::Receiver<Delivery>;

    /// A live view: the same messages as [`Bus::consume`], but lossy. A watcher that falls
    /// more than `capacity` (rounded up to a power of two) messages behind loses the oldest and
    /// is told how many ([`Watched::Lagged`]); it never slows a publisher. An invalid filter
    /// yields a watch that is already closed.
    fn watch(&self, filter: &str, capacity: usize) -> Watch {
        self.watch_from(filter, capacity, Origins::CLIENTS)
    }

    /// [`Bus::watch`] with a choice of origins.
    fn watch_from(&self, filter: &str, capacity: usize, origins: Origins) -> Watch;

    /// The payload of the retained message on `topic` (a topic name, not a filter), if any.
    /// Lets a service publish a retained message only where none (or an older one) is kept.
    async fn retained(&self, topic: &str) -> Result<Option<Bytes>, Error>;
}

/// A broker whose ports are bound and whose hooks are in place, not yet accepting: attach
/// to [`BoundBroker::bus`] now, then [`BoundBroker::serve`]. Clients connecting meanwhile
/// wait in the listen backlog; none is served before `serve`.
pub struct BoundBroker {
    scx: ServerContext,
    state: Arc<State>,
    bus: Arc<BusImpl>,
    /// The bound listeners, handed to rmqtt's accept loop by `serve`.
    server: MqttServer,
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    cert_local_addr: Option<SocketAddr>,
    retainer: Arc<retain::Retainer>,
    fronts: Fronts,
}

/// The TLS listeners, ours, in front of rmqtt's loopback ones (`tls.rs`).
#[derive(Clone, Default)]
struct Fronts {
    tls: Option<Arc<tls::Front>>,
    cert: Option<Arc<tls::Front>>,
}

impl Fronts {
    fn start(&self) -> Vec<JoinHandle<()>> {
        [&self.tls, &self.cert]
            .into_iter()
            .flatten()
            .map(|front| tokio::spawn(front.clone().run()))
            .collect()
    }
}

impl fmt::Debug for BoundBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundBroker")
            .field("local_addr", &self.local_addr)
            .field("tls_local_addr", &self.tls_local_addr)
            .finish()
    }
}

impl BoundBroker {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS listener, if one is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// The address of the certificate listener ([`BrokerConfig::cert_tls`]), if any.
    pub fn cert_local_addr(&self) -> Option<SocketAddr> {
        self.cert_local_addr
    }

    /// The application's link for publishing and consuming; receivers registered now see
    /// the first message of the first client.
    pub fn bus(&self) -> Arc<dyn Bus> {
        self.bus.clone()
    }

    /// Start accepting connections.
    pub fn serve(self) -> Broker {
        let BoundBroker {
            scx,
            state,
            bus,
            server,
            local_addr,
            tls_local_addr,
            cert_local_addr,
            retainer,
            fronts,
        } = self;
        let front_tasks = fronts.start();
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "MQTT listener stopped");
            }
            flag.store(false, Ordering::SeqCst);
        });
        let flusher = tokio::spawn(retainer.clone().flush_loop());
        let grants = tokio::spawn(grants::follow(
            scx.clone(),
            state.clone(),
            state.friendships.clone(),
        ));
        tracing::info!(%local_addr, ?tls_local_addr, ?cert_local_addr, "MQTT broker listening");
        Broker {
            scx,
            state,
            bus,
            local_addr,
            tls_local_addr,
            cert_local_addr,
            running,
            task,
            retainer,
            flusher,
            grants,
            fronts,
            front_tasks,
        }
    }
}

/// A running broker. Dropping it stops accepting connections; [`Broker::shutdown`] also
/// closes the live sessions.
pub struct Broker {
    scx: ServerContext,
    state: Arc<State>,
    bus: Arc<BusImpl>,
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    cert_local_addr: Option<SocketAddr>,
    running: Arc<AtomicBool>,
    task: JoinHandle<()>,
    retainer: Arc<retain::Retainer>,
    /// Writes retained-message changes to disk; stopped and awaited by `shutdown`.
    flusher: JoinHandle<()>,
    /// Sends a new friend's retained messages to the viewer's sessions (`grants.rs`); aborted
    /// by `shutdown` and on drop.
    grants: JoinHandle<()>,
    fronts: Fronts,
    /// The TLS listeners' accept loops; aborted by `shutdown` and on drop (their relays run
    /// on tasks of their own until rmqtt closes the sessions).
    front_tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.local_addr)
            .field("running", &self.is_running())
            .finish()
    }
}

impl Broker {
    /// Bind the listeners and start serving: [`Broker::bind`] then [`BoundBroker::serve`].
    pub async fn start(
        config: BrokerConfig,
        gatekeeper: Arc<dyn Gatekeeper>,
    ) -> Result<Broker, Error> {
        Ok(Broker::bind(config, gatekeeper).await?.serve())
    }

    /// Bind the listeners and install the hooks, without accepting connections yet.
    pub async fn bind(
        config: BrokerConfig,
        gatekeeper: Arc<dyn Gatekeeper>,
    ) -> Result<BoundBroker, Error> {
        let max_connections = config.max_connections.max(1);
        let scx = ServerContext::new()
            // The busy check refuses CONNECTs ("server unavailable") when the machine's load
            // average is high, e.g. during a build, and its cache is process-wide.
            .busy_check_enable(false)
            .mqtt_max_sessions(isize::try_from(max_connections).unwrap_or(isize::MAX))
            .build()
            .await;

        *scx.extends.shared_subscription_mut().await = Box::new(shared::TakeTurns::default());
        let retainer = retain::Retainer::open(config.data_dir.clone()).await;
        *scx.extends.retain_mut().await = Box::new(retain::Shared(retainer.clone()));

        let state = Arc::new(State::new(
            gatekeeper,
            config.max_payload,
            max_connections,
            config.commit_timeout,
            config.friendships.clone(),
        ));
        let bus = Arc::new(BusImpl::new(scx.clone(), state.clone()));
        let handler = HookHandler::new(scx.clone(), state.clone());
        let register = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientConnect,
            Type::ClientAuthenticate,
            Type::ClientConnack,
            Type::ClientDisconnected,
            Type::SessionTerminated,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::MessagePublish,
            Type::MessageDropped,
            Type::MessageExpiryCheck,
        ] {
            register.add(typ, Box::new(handler.clone())).await;
        }
        register.start().await;

        // rmqtt builds its TLS config with an explicit aws-lc-rs provider; installing it as the
        // process default too, at start and unconditionally, keeps every other rustls user in
        // the process (which may see both aws-lc-rs and ring enabled) from failing to pick one.
        // A second install (another broker in the process) is a harmless no-op.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = listener_builder(&config, config.listen, "porchlight/tcp")
            .bind()
            .map_err(|e| bind_error(config.listen, &e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| bind_error(config.listen, &e))?;
        let mut server = MqttServer::new(scx.clone()).listener_by_id(listener, PLAIN_LISTENER_ID);
        // Left by an older version's crash: it handed rmqtt the key in transient files.
        for leftover in ["tls-listener.key", "tls-listener.pem"] {
            let _ = std::fs::remove_file(config.data_dir.join(leftover));
        }
        let mut fronts = Fronts::default();
        for (tls, kind, id, name) in [
            (
                &config.tls,
                tls::FrontKind::Password,
                TLS_LISTENER_ID,
                "porchlight/tls",
            ),
            (
                &config.cert_tls,
                tls::FrontKind::Certificate,
                CERT_LISTENER_ID,
                "porchlight/cert",
            ),
        ] {
            let Some(tls) = tls else { continue };
            // rmqtt serves the front's relays on a loopback port of its own.
            let backend_addr = tls::backend_bind_addr();
            let backend = listener_builder(&config, backend_addr, name)
                .bind()
                .map_err(|e| bind_error(backend_addr, &e))?;
            let backend_addr = backend
                .local_addr()
                .map_err(|e| bind_error(backend_addr, &e))?;
            let front = tls::Front::bind(
                kind,
                tls,
                backend_addr,
                state.relays.clone(),
                config.connect_timeout,
                state.gatekeeper(),
            )?;
            server = server.listener_by_id(backend, id);
            match kind {
                tls::FrontKind::Password => fronts.tls = Some(Arc::new(front)),
                tls::FrontKind::Certificate => fronts.cert = Some(Arc::new(front)),
            }
        }
        let tls_local_addr = fronts.tls.as_ref().map(|f| f.local_addr());
        let cert_local_addr = fronts.cert.as_ref().map(|f| f.local_addr());
        Ok(BoundBroker {
            scx,
            state,
            bus,
            server: server.build(),
            local_addr,
            tls_local_addr,
            cert_local_addr,
            retainer,
            fronts,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS listener, if one is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// The address of the certificate listener ([`BrokerConfig::cert_tls`]), if any.
    pub fn cert_local_addr(&self) -> Option<SocketAddr> {
        self.cert_local_addr
    }

    /// Give the TLS listener ([`BrokerConfig::tls`]) a new server certificate, key and client
    /// trust roots (a renewal, a new CA). The next handshake uses them; sessions already
    /// connected keep theirs and stay connected. Fails, changing nothing, when the new
    /// certificate or key does not load, or when the broker has no TLS listener.
    pub fn reload_tls(&self, tls: &TlsConfig) -> Result<(), Error> {
        match &self.fronts.tls {
            Some(front) => front.reload(tls),
            None => Err(Error::Tls("no TLS listener to reload".into())),
        }
    }

    /// [`Broker::reload_tls`] for the certificate listener ([`BrokerConfig::cert_tls`]): a new
    /// server certificate, and the CAs whose client certificates it accepts.
    pub fn reload_cert_tls(&self, tls: &TlsConfig) -> Result<(), Error> {
        match &self.fronts.cert {
            Some(front) => front.reload(tls),
            None => Err(Error::Tls("no certificate listener to reload".into())),
        }
    }

    /// The application's link for publishing and consuming.
    pub fn bus(&self) -> Arc<dyn Bus> {
        self.bus.clone()
    }

    /// Close every session that authenticated with device `device_id` (offline persistent
    /// sessions are discarded too); returns how many were connected.
    pub async fn disconnect_device(&self, device_id: i64) -> usize {
        self.kick_where(|id| id.device_id == Some(device_id)).await
    }

    /// Close every session that logged in with the client certificate `serial` (offline
    /// persistent sessions are discarded too); returns how many were connected.
    pub async fn disconnect_certificate(&self, serial: &str) -> usize {
        self.kick_where(|id| id.certificate.as_deref() == Some(serial))
            .await
    }

    /// Close every session of user `user_id` (offline persistent sessions are discarded
    /// too); returns how many were connected.
    pub async fn disconnect_user(&self, user_id: i64) -> usize {
        self.kick_where(|id| id.user_id == user_id).await
    }

    /// Close every session of user `user_id` that logged in with the account password (a
    /// password change ends them); device-key and certificate sessions stay. Returns how many
    /// were connected.
    pub async fn disconnect_password_logins(&self, user_id: i64) -> usize {
        self.kick_where(|id| id.user_id == user_id && id.login == LoginMethod::Password)
            .await
    }

    /// The identities that currently own a session (connected or persistent).
    pub fn live_identities(&self) -> Vec<Identity> {
        self.state.identities()
    }

    /// Every connected client, read from the sessions rmqtt holds (the owners recorded at
    /// CONNACK, with each session's own connection facts): no second copy to keep in sync.
    /// Offline persistent sessions are left out.
    pub async fn connected_clients(&self) -> Vec<ConnectedClient> {
        let mut clients = Vec::new();
        for (id, identity) in self.state.live_sessions() {
            let session = self
                .scx
                .extends
                .shared()
                .await
                .entry(id.clone())
                .session()
                .filter(|s| s.id == id);
            let Some(session) = session else { continue };
            if !session.connected().await.unwrap_or(false) {
                continue;
            }
            let Ok(info) = session.connect_info().await else {
                continue;
            };
            let connected_ms = session.connected_at().await.unwrap_or(0);
            let subscriptions = match session.subscriptions().await {
                Ok(subs) => subs.len().await,
                Err(_) => 0,
            };
            clients.push(ConnectedClient {
                client_id: id.client_id.to_string(),
                identity: Identity::clone(&identity),
                peer: id.remote_addr.map(|_| self.state.peer_of(&id)),
                protocol: ProtocolLevel::from_u8(info.proto_ver()),
                clean_start: info.clean_start(),
                connected_at: std::time::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(connected_ms).unwrap_or(0)),
                subscriptions,
            });
        }
        clients
    }

    /// Messages the broker dropped since it started (full queues, expiry, ended sessions).
    pub fn dropped_messages(&self) -> u64 {
        self.state.dropped()
    }

    /// Number of connected MQTT clients.
    pub fn connection_count(&self) -> usize {
        usize::try_from(self.scx.connections.count()).unwrap_or(0)
    }

    /// Whether the listener is still accepting connections.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst) && !self.task.is_finished()
    }

    /// Stop listening and close all sessions.
    pub async fn shutdown(mut self) {
        self.running.store(false, Ordering::SeqCst);
        self.task.abort();
        self.grants.abort();
        for t in &self.front_tasks {
            t.abort();
        }
        self.state.refusals.flush();
        let kicked = self.kick_where(|_| true).await;
        // Let the flusher finish a write in progress, then write what changed since.
        self.retainer.stop_flusher();
        let _ = (&mut self.flusher).await;
        self.retainer.flush().await;
        tracing::info!(local_addr = %self.local_addr, kicked, "MQTT broker stopped");
    }

    async fn kick_where(&self, pred: impl Fn(&Identity) -> bool) -> usize {
        let targets = self.state.live_matching(pred);
        let mut kicked = 0;
        for id in targets {
            let mut entry = self.scx.extends.shared().await.entry(id.clone());
            if entry.id_same() != Some(true) {
                // Authenticated but never became (or is no longer) the session.
                self.state.forget(&id);
                continue;
            }
            let connected = entry.is_connected().await;
            match entry.kick(true, true, true).await {
                Ok(_) => {
                    self.state.forget(&id);
                    kicked += usize::from(connected);
                }
                Err(e) => tracing::warn!(client_id = %id.client_id, error = %e, "kick failed"),
            }
        }
        kicked
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Without `shutdown`, retained-message changes of the last flush delay are lost.
        self.task.abort();
        self.flusher.abort();
        self.grants.abort();
        for t in &self.front_tasks {
            t.abort();
        }
    }
}

/// Listener settings shared by the plain and the TLS listener.
fn listener_builder(config: &BrokerConfig, addr: SocketAddr, name: &str) -> Builder {
    // Room for the topic (up to 64 KiB) and headers on top of the payload limit; payloads
    // between `max_payload` and this are refused by the publish ACL hook with a reason.
    let max_packet = config.max_payload.saturating_add(64 * 1024 + 16);
    Builder::new()
        .name(name)
        .laddr(addr)
        .nodelay(true)
        .reuseaddr(Some(true))
        .allow_anonymous(false)
        .max_connections(config.max_connections.max(1))
        .max_packet_size(u32::try_from(max_packet).unwrap_or(u32::MAX))
        .handshake_timeout(config.connect_timeout)
        .max_mqueue_len(config.max_queued_messages.max(1))
        .max_inflight(
            std::num::NonZeroU16::new(config.max_inflight).unwrap_or(std::num::NonZeroU16::MIN),
        )
}

fn bind_error(addr: SocketAddr, e: &rmqtt::Error) -> Error {
    let in_use = e
        .chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::AddrInUse);
    if in_use {
        Error::PortInUse(addr)
    } else {
        Error::Bind {
            addr,
            reason: e.to_string(),
        }
    }
}
