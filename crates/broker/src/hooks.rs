//! The rmqtt hook handler: authentication, session ownership, ACL, audit and the feed of
//! [`crate::Bus`] receivers.
//!
//! rmqtt notes (0.24.0):
//! - `MessagePublish` runs *before* the publish ACL and also sees refused publishes, so
//!   consumers are fed from the allow path of `MessagePublishCheckAcl` instead.
//! - A will message is published without any ACL check; its topic is checked at CONNECT.
//!   Wills reach consumers through `MessagePublish` (with a `LastWill` origin).
//! - An ACL handler that returns nothing means "allow"; every path here answers explicitly.
//! - The refused-CONNACK path does not run `ClientConnack`, so refusals are audited here, and
//!   a CONNECT counts as accepted only once `ClientConnack` runs: authentication records a
//!   *pending* identity, `ClientConnack` attaches it to the session rmqtt created.
//! - rmqtt hands an existing session (online, or offline with clean_session=0) to the next
//!   CONNECT with its client id, subscriptions and queued messages included. So every session
//!   carries the identity that created it (in its `extra_attrs`), and a CONNECT may reuse a
//!   client id only if that session is absent or belongs to the same user.
//! - The session limit is checked before authentication, without telling any hook; the
//!   `ClientConnect` hook applies the same test just before and counts such refusals.
//!
//! Delivery to a subscriber (rmqtt 0.24.0's `session.rs`, `deliver`): every message written
//! to a client (live, queued while it was offline, retained on subscribe, resent in-flight)
//! first runs the `MessageExpiryCheck` hook; answering `HookResult::MessageExpiry` drops it
//! (reported to `MessageDropped` as `MessageExpiration`). That is where a user's wildcard
//! subscription is held to [`acl::may_receive`], with the friendships of that moment; those
//! refusals are not counted as drops. (`MessageDelivered` cannot refuse, only rewrite.)
//!
//! Commit before ack (ADR 0008), from rmqtt 0.24.0's `session.rs`:
//! - Each connection is one task running one packet at a time: a PUBLISH is handled inline
//!   (`process_publish` → `publish` → `_publish`), which awaits the `MessagePublishCheckAcl`
//!   hook, then routes the message to subscribers and the retained store (`forwards`), and
//!   only then writes the PUBACK (QoS 1) or PUBREC (QoS 2). So while this hook waits for the
//!   acked consumers, that connection gets no acknowledgement, and its next packets
//!   (PUBLISH, PINGREQ, kicks from a takeover) and outgoing deliveries wait too; other
//!   connections run on their own tasks and are not held up (the hook manager only holds a
//!   read lock on its handler list).
//! - A refusal with `disconnect = true` makes `_publish` return an error before any ack is
//!   written: no PUBACK / PUBREC, the connection closes, the QoS 1 packet id is released, a
//!   QoS 2 one was never stored. A persistent session stays, so the client resends on
//!   reconnect. (rmqtt means to send MQTT 5 clients a DISCONNECT 0x83 first, but `run`
//!   closes the socket before writing it: every level just sees the close.)
//! - A refusal with `disconnect = false` would send a *plain* PUBACK on MQTT 3.1.1 (no
//!   reason codes there: the client takes it as success) and a PUBACK 0x80 on MQTT 5 (the
//!   exchange is then complete and the client does not resend). Neither is fit for a failed
//!   commit; both are fine for an ACL denial.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use porchlight_domain::acl::{self, Friendships, Identity, Role};
use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ClientId, ConnectInfo, Disconnect, FromType, Id, LastWill, PublishAclResult,
    PublishResult, Reason, SubscribeAclResult,
};

use crate::bus::{Consumers, NotCommitted};
use crate::refusals::Refusals;
use crate::takeover::Takeovers;
use crate::tls::Relays;
use crate::{AuditEvent, Credentials, Gatekeeper, Inbound, Origin, ProtocolLevel, Refusal};

/// Key of the session's identity in rmqtt's per-session `extra_attrs`.
const IDENTITY_ATTR: &str = "porchlight.identity";

/// An authenticated CONNECT rmqtt has not accepted within this time never will be.
const PENDING_LIMIT: Duration = Duration::from_secs(30);

/// The owner of a session rmqtt holds (connected, or offline and persistent).
struct Live {
    id: Id,
    identity: Arc<Identity>,
}

/// State shared by the hook handler, the bus and the broker handle.
pub(crate) struct State {
    gatekeeper: Arc<dyn Gatekeeper>,
    max_payload: usize,
    /// Identities of CONNECTs that passed authentication and wait for rmqtt to accept them
    /// (`ClientConnack`); never used for anything else.
    pending: Mutex<HashMap<Id, (Arc<Identity>, Instant)>>,
    /// Accepted sessions by client id, for kicking by user or device, the revocation sweep,
    /// and the identity behind each publish and delivery (read-mostly: written at CONNACK and
    /// session end). Ownership checks at CONNECT read the session's own identity instead.
    live: RwLock<HashMap<String, Live>>,
    pub(crate) consumers: Consumers,
    /// Messages rmqtt dropped (queue full, expired, session gone): for logs and health.
    dropped: std::sync::atomic::AtomicU64,
    /// "Too many connections" refusals, audited as counts.
    pub(crate) refusals: Arc<Refusals>,
    /// How long a QoS 1/2 client publish waits for its acked consumers to commit.
    commit_timeout: Duration,
    /// The app's current friendships (who may receive whose OwnTracks topics); a snapshot is
    /// borrowed briefly per SUBSCRIBE and per delivery, never across an await.
    pub(crate) friendships: tokio::sync::watch::Receiver<Arc<Friendships>>,
    /// What the TLS fronts established about the connections they relay (`tls.rs`).
    pub(crate) relays: Arc<Relays>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub(crate) fn new(
        gatekeeper: Arc<dyn Gatekeeper>,
        max_payload: usize,
        max_connections: usize,
        commit_timeout: Duration,
        friendships: tokio::sync::watch::Receiver<Arc<Friendships>>,
    ) -> Self {
        Self {
            commit_timeout,
            friendships,
            refusals: Refusals::new(gatekeeper.clone(), max_connections),
            gatekeeper,
            max_payload,
            pending: Mutex::new(HashMap::new()),
            live: RwLock::new(HashMap::new()),
            consumers: Consumers::default(),
            dropped: std::sync::atomic::AtomicU64::new(0),
            relays: Arc::default(),
        }
    }

    /// The client's own address: for a connection relayed by a TLS front, the address the
    /// front accepted it from, not the relay's loopback one.
    pub(crate) fn peer_of(&self, id: &Id) -> SocketAddr {
        let Some(addr) = id.remote_addr else {
            return SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        };
        if id.lid == crate::PLAIN_LISTENER_ID {
            return addr;
        }
        self.relays.get(addr).map_or(addr, |r| r.peer)
    }

    /// Counts one dropped message; returns the total so far.
    pub(crate) fn note_dropped(&self) -> u64 {
        self.dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn live(&self) -> RwLockReadGuard<'_, HashMap<String, Live>> {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn live_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, Live>> {
        self.live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add_pending(&self, id: Id, identity: Arc<Identity>) {
        let now = Instant::now();
        let mut pending = lock(&self.pending);
        pending.retain(|_, (_, since)| now.duration_since(*since) < PENDING_LIMIT);
        pending.insert(id, (identity, now));
    }

    fn take_pending(&self, id: &Id) -> Option<Arc<Identity>> {
        lock(&self.pending).remove(id).map(|(identity, _)| identity)
    }

    pub(crate) fn live_matching(&self, pred: impl Fn(&Identity) -> bool) -> Vec<Id> {
        self.live()
            .values()
            .filter(|l| pred(&l.identity))
            .map(|l| l.id.clone())
            .collect()
    }

    /// Every identity that currently owns a session.
    pub(crate) fn identities(&self) -> Vec<Identity> {
        self.live()
            .values()
            .map(|l| Identity::clone(&l.identity))
            .collect()
    }

    /// Every session owner: the session's id and the identity it was accepted with.
    pub(crate) fn live_sessions(&self) -> Vec<(Id, Arc<Identity>)> {
        self.live()
            .values()
            .map(|l| (l.id.clone(), l.identity.clone()))
            .collect()
    }

    /// The friendships of this moment.
    fn friendships(&self) -> Arc<Friendships> {
        Arc::clone(&self.friendships.borrow())
    }

    /// The identity owning the session `id`, if it is the current one.
    fn identity_of(&self, id: &Id) -> Option<Arc<Identity>> {
        self.live()
            .get(&*id.client_id)
            .filter(|l| l.id == *id)
            .map(|l| l.identity.clone())
    }

    pub(crate) fn forget(&self, id: &Id) {
        let mut live = self.live_mut();
        if live.get(&*id.client_id).is_some_and(|l| l.id == *id) {
            live.remove(&*id.client_id);
        }
    }

    fn record(&self, event: AuditEvent) {
        self.gatekeeper.record(event);
    }

    pub(crate) fn gatekeeper(&self) -> Arc<dyn Gatekeeper> {
        self.gatekeeper.clone()
    }
}

/// The identity behind `session`, for its publishes and deliveries: from the live map (a
/// read lock, no await), else from the session's own attributes (rmqtt's async lock).
async fn identity_for(state: &State, session: &Session) -> Option<Arc<Identity>> {
    match state.identity_of(&session.id) {
        Some(identity) => Some(identity),
        None => session_identity(session).await,
    }
}

/// The identity a session was accepted with (`None` only between rmqtt storing a new session
/// and our `ClientConnack` hook).
pub(crate) async fn session_identity(session: &Session) -> Option<Arc<Identity>> {
    session
        .extra_attrs
        .read()
        .await
        .get::<Arc<Identity>>(IDENTITY_ATTR)
        .cloned()
}

#[derive(Clone)]
pub(crate) struct HookHandler {
    scx: ServerContext,
    state: Arc<State>,
    takeovers: Arc<Takeovers>,
}

impl HookHandler {
    pub(crate) fn new(scx: ServerContext, state: Arc<State>) -> Self {
        Self {
            scx,
            state,
            takeovers: Arc::default(),
        }
    }

    /// Audits and answers a refused CONNECT.
    fn refuse(&self, creds: &Credentials, refusal: Refusal, reason: String) -> AuthResult {
        tracing::info!(
            client_id = %creds.client_id, username = ?creds.username, peer = %creds.peer,
            %reason, "MQTT connection refused"
        );
        self.state.record(AuditEvent::Connect {
            at: SystemTime::now(),
            peer: creds.peer,
            client_id: creds.client_id.clone(),
            username: creds.username.clone(),
            protocol: creds.protocol.as_u8(),
            code: refusal.connack_code(creds.protocol),
            reason,
        });
        match refusal {
            Refusal::BadCredentials => AuthResult::BadUsernameOrPassword,
            Refusal::NotAuthorized | Refusal::Certificate(_) => AuthResult::NotAuthorized,
        }
    }

    async fn authenticate(&self, ci: &ConnectInfo) -> AuthResult {
        let protocol = ProtocolLevel::from_u8(ci.proto_ver());
        let creds = Credentials {
            username: ci.username().map(|u| u.to_string()),
            password: ci.password().map(|p| p.to_vec()),
            client_id: ci.client_id().to_string(),
            peer: self.state.peer_of(ci.id()),
            protocol,
            cert_cn: None,
            issued_cert: None,
        };
        let mut creds = creds;
        // What the TLS front verified; rmqtt's own certificate info stays unused (its
        // listeners behind the fronts are plain).
        let relayed_cert = match ci.id().lid {
            crate::PLAIN_LISTENER_ID => None,
            _ => ci
                .id()
                .remote_addr
                .and_then(|a| self.state.relays.get(a))
                .and_then(|r| r.cert),
        };
        if ci.id().lid == crate::CERT_LISTENER_ID {
            // No relayed certificate: a connection to the loopback listener that did not come
            // through the front. The gatekeeper must not see it as a password login.
            let Some(cert) = relayed_cert else {
                return self.refuse(
                    &creds,
                    Refusal::NotAuthorized,
                    "no client certificate".into(),
                );
            };
            if creds.username.is_none() {
                creds.username = Some(
                    cert.common_name
                        .clone()
                        .unwrap_or_else(|| cert.serial.clone()),
                );
            }
            creds.issued_cert = Some(cert);
        } else if let Some(cn) = relayed_cert.and_then(|c| c.common_name) {
            // The operator's own client certificates (`require_client_cert`): the CN is the
            // user name.
            creds.username = Some(cn.clone());
            creds.cert_cn = Some(cn);
        }
        if creds.username.is_none() {
            return self.refuse(&creds, Refusal::NotAuthorized, "no username".into());
        }
        let identity = match self.state.gatekeeper.authenticate(&creds).await {
            Ok(identity) => identity,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::BadCredentials => "bad username or password",
                    Refusal::NotAuthorized => "not authorized",
                    Refusal::Certificate(why) => why.reason(),
                };
                return self.refuse(&creds, refusal, reason.into());
            }
        };
        if let Some((topic, len)) = ci.last_will().map(|w| will_topic_and_len(&w)) {
            if !acl::may_publish(&identity, &topic) {
                return self.refuse(
                    &creds,
                    Refusal::NotAuthorized,
                    format!("will topic {topic:?} not allowed"),
                );
            }
            if len > self.state.max_payload {
                return self.refuse(
                    &creds,
                    Refusal::NotAuthorized,
                    format!("will payload of {len} bytes too large"),
                );
            }
        }
        // Queue behind an earlier CONNECT with this client id (see `takeover`).
        self.takeovers.acquire(&self.scx, ci.id()).await;
        // Any session under this client id, connected or offline, belongs to its owner.
        let existing = self
            .scx
            .extends
            .shared()
            .await
            .entry(ci.id().clone())
            .session();
        if let Some(session) = existing {
            let same_user = match session_identity(&session).await {
                Some(owner) => owner.user_id == identity.user_id,
                // Stored a moment ago and not yet tagged (the takeover turn normally rules
                // this out): the account name it connected with decides.
                None => session.id.username.as_deref() == Some(identity.username.as_str()),
            };
            if !same_user {
                self.takeovers.release(ci.id());
                return self.refuse(
                    &creds,
                    Refusal::NotAuthorized,
                    "client id belongs to another user's session".into(),
                );
            }
        }
        // Owner of the session only once rmqtt accepts the CONNECT (`ClientConnack`).
        self.state.add_pending(ci.id().clone(), Arc::new(identity));
        AuthResult::Allow(false, None)
    }

    /// rmqtt accepted the CONNECT of `id` and stored its session: tag the session with the
    /// identity that authenticated.
    async fn accepted(&self, id: &Id) {
        let Some(identity) = self.state.take_pending(id) else {
            tracing::warn!(client_id = %id.client_id, "accepted connection without identity");
            return;
        };
        let session = self
            .scx
            .extends
            .shared()
            .await
            .entry(id.clone())
            .session()
            .filter(|s| s.id == *id);
        let Some(session) = session else {
            tracing::warn!(client_id = %id.client_id, "accepted connection without session");
            return;
        };
        session
            .extra_attrs
            .write()
            .await
            .insert(ClientId::from_static(IDENTITY_ATTR), identity.clone());
        self.state.live_mut().insert(
            id.client_id.to_string(),
            Live {
                id: id.clone(),
                identity,
            },
        );
    }

    /// The test rmqtt applies right after the `ClientConnect` hook to refuse a CONNECT for
    /// "too many sessions" (CONNACK 3 / 0x88), without telling any hook.
    async fn over_session_limit(&self, ci: &ConnectInfo) -> bool {
        let max = self.scx.mqtt_max_sessions;
        if max <= 0 || self.scx.sessions.count() < max {
            return false;
        }
        // rmqtt refuses MQTT 5 extended authentication before the limit.
        if ci.auth_method().is_some() {
            return false;
        }
        !self
            .scx
            .extends
            .shared()
            .await
            .entry(ci.id().clone())
            .exist()
    }

    async fn check_publish(
        &self,
        session: &Session,
        publish: &rmqtt::types::Publish,
    ) -> PublishAclResult {
        let id = &session.id;
        let Some(identity) = identity_for(&self.state, session).await else {
            tracing::warn!(client_id = %id.client_id, "publish from a connection without identity");
            return PublishAclResult::rejected(true, Some("no identity".into()));
        };
        if publish
            .properties
            .as_ref()
            .is_some_and(|p| p.topic_alias.is_some())
        {
            // The broker announces Topic Alias Maximum 0 (rmqtt's default), so any alias is
            // a protocol error (MQTT 5 §3.3.2.3.4): DISCONNECT 0x94, not silence.
            tracing::info!(client_id = %id.client_id, "topic alias above the announced maximum (0), disconnecting");
            let reason =
                Reason::ConnectDisconnect(Some(Disconnect::V5(rmqtt::codec::v5::Disconnect {
                    reason_code: rmqtt::codec::v5::DisconnectReasonCode::TopicAliasInvalid,
                    reason_string: Some("topic alias invalid".into()),
                    ..Default::default()
                })));
            let _ = Box::pin(session.disconnected_reason_add(reason)).await;
            return PublishAclResult::rejected(true, Some("topic alias invalid".into()));
        }
        let len = publish.payload.len();
        if len > self.state.max_payload {
            tracing::warn!(
                client_id = %id.client_id, username = %identity.username, topic = %publish.topic,
                len, max = self.state.max_payload, "payload too large, disconnecting client"
            );
            return PublishAclResult::rejected(true, Some("payload too large".into()));
        }
        if !acl::may_publish(&identity, &publish.topic) {
            tracing::info!(
                client_id = %id.client_id, username = %identity.username, topic = %publish.topic,
                "publish denied"
            );
            self.state.record(AuditEvent::PublishDenied {
                at: SystemTime::now(),
                client_id: id.client_id.to_string(),
                username: Some(identity.username.clone()),
                topic: publish.topic.to_string(),
            });
            return PublishAclResult::rejected(false, None);
        }
        // A client that waits for an acknowledgement gets it only once the acked consumers
        // committed the message; QoS 0 publishers wait for nobody.
        let commit = (publish.qos != QoS::AtMostOnce).then_some(self.state.commit_timeout);
        let message = || inbound(publish, Origin::Client, Some(identity.clone()), id);
        if let Err(NotCommitted(reason)) = self
            .state
            .consumers
            .dispatch(&publish.topic, Origin::Client, message, commit)
            .await
        {
            tracing::warn!(
                client_id = %id.client_id, username = %identity.username, topic = %publish.topic,
                qos = publish.qos.value(), %reason,
                "publish not committed; disconnecting the client without acknowledgement so it resends"
            );
            // Disconnect: on MQTT 3.1.1 anything else sends a PUBACK the client takes as success.
            return PublishAclResult(PublishResult::reason_code(
                PublishAckReason::UnspecifiedError,
                Some("message not stored, send it again".into()),
                true,
            ));
        }
        PublishAclResult::allow()
    }

    async fn check_subscribe(
        &self,
        session: &Session,
        sub: &rmqtt::types::Subscribe,
    ) -> SubscribeAclResult {
        let id = &session.id;
        let identity = session_identity(session).await;
        let friendships = self.state.friendships();
        // rmqtt hands the filter without its `$share/<group>/`: shared groups are for admins.
        if let Some(identity) = identity
            .as_ref()
            .filter(|i| !sub.opts.has_shared_group() || i.role == Role::Admin)
            .filter(|i| acl::may_subscribe(i, &sub.topic_filter, &friendships))
        {
            tracing::debug!(client_id = %id.client_id, username = %identity.username, filter = %sub.topic_filter, "subscribed");
            return SubscribeAclResult::new_success(sub.opts.qos(), None);
        }
        tracing::info!(client_id = %id.client_id, filter = %sub.topic_filter, "subscribe denied");
        self.state.record(AuditEvent::SubscribeDenied {
            at: SystemTime::now(),
            client_id: id.client_id.to_string(),
            username: identity.map(|i| i.username.clone()),
            filter: sub.topic_filter.to_string(),
        });
        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
    }
}

/// May the message on `topic` be written to the session's client now? The friendships are
/// read only for a topic the identity's role does not open by itself.
async fn may_deliver(state: &State, session: &Session, topic: &str) -> bool {
    let Some(identity) = identity_for(state, session).await else {
        return false;
    };
    acl::may_receive_by_role(&identity, topic)
        || acl::may_receive(&identity, topic, &state.friendships())
}

#[async_trait]
impl Handler for HookHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientConnect(ci) => {
                if Box::pin(self.over_session_limit(ci)).await {
                    self.state.refusals.note(self.state.peer_of(ci.id()));
                }
                (true, acc)
            }
            Parameter::ClientAuthenticate(ci) => {
                let result = Box::pin(self.authenticate(ci)).await;
                (false, Some(HookResult::AuthResult(result)))
            }
            // rmqtt 0.24 runs this hook for accepted CONNECTs only.
            Parameter::ClientConnack(ci, _) => {
                let id = ci.id();
                Box::pin(self.accepted(id)).await;
                self.takeovers.release(id);
                tracing::info!(client_id = %id.client_id, username = ?ci.username(), peer = %self.state.peer_of(id), "MQTT client connected");
                self.state.record(AuditEvent::Connect {
                    at: SystemTime::now(),
                    peer: self.state.peer_of(id),
                    client_id: id.client_id.to_string(),
                    username: ci.username().map(|u| u.to_string()),
                    protocol: ci.proto_ver(),
                    code: 0,
                    reason: "accepted".into(),
                });
                (true, acc)
            }
            Parameter::ClientDisconnected(session, reason) => {
                let id = &session.id;
                tracing::info!(client_id = %id.client_id, %reason, "MQTT client disconnected");
                self.state.record(AuditEvent::Disconnect {
                    at: SystemTime::now(),
                    peer: self.state.peer_of(id),
                    client_id: id.client_id.to_string(),
                    username: id.username.as_ref().map(|u| u.to_string()),
                    reason: reason.to_string(),
                });
                (true, acc)
            }
            Parameter::SessionTerminated(session, _) => {
                // The session (and what a takeover would inherit) is gone.
                self.state.forget(&session.id);
                (true, acc)
            }
            Parameter::ClientSubscribeCheckAcl(session, sub) => {
                let result = Box::pin(self.check_subscribe(session, sub)).await;
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let result = self.check_publish(session, publish).await;
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessagePublish(session, from, publish)
                if matches!(from.typ(), FromType::LastWill) =>
            {
                let identity = match session {
                    Some(session) => session_identity(session).await,
                    None => None,
                };
                if identity.is_none() {
                    tracing::warn!(client_id = %from.id.client_id, "will message of a session without identity");
                }
                // Nobody waits for a will: acked consumers get it with an ack nobody awaits.
                let will = || inbound(publish, Origin::Will, identity, &from.id);
                let _ = self
                    .state
                    .consumers
                    .dispatch(&publish.topic, Origin::Will, will, None)
                    .await;
                (true, acc)
            }
            Parameter::MessageExpiryCheck(session, _, publish) => {
                if may_deliver(&self.state, session, &publish.topic).await {
                    (true, acc)
                } else {
                    tracing::trace!(client_id = %session.id.client_id, topic = %publish.topic, "delivery withheld");
                    (false, Some(HookResult::MessageExpiry))
                }
            }
            Parameter::MessageDropped(Some(to), _, publish, Reason::MessageExpiration)
                if self.state.identity_of(to).is_some_and(|identity| {
                    !acl::may_receive(&identity, &publish.topic, &self.state.friendships())
                }) =>
            {
                // Withheld by `MessageExpiryCheck` above: not a loss.
                (true, acc)
            }
            Parameter::MessageDropped(to, from, publish, reason) => {
                let total = self.state.note_dropped();
                // Every drop is a lost message for someone: say so, but not 10,000 times.
                if total.is_power_of_two() {
                    tracing::warn!(
                        to = ?to.as_ref().map(|t| t.client_id.to_string()),
                        from = %from.id.client_id, topic = %publish.topic, %reason, total,
                        "MQTT message dropped"
                    );
                }
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

fn inbound(
    publish: &rmqtt::types::Publish,
    origin: Origin,
    identity: Option<Arc<Identity>>,
    id: &Id,
) -> Inbound {
    Inbound {
        topic: publish.topic.to_string(),
        payload: publish.payload.clone(),
        qos: publish.qos.value(),
        retain: publish.retain,
        origin,
        identity,
        client_id: id.client_id.to_string(),
    }
}

fn will_topic_and_len(will: &LastWill<'_>) -> (String, usize) {
    match will {
        LastWill::V3(w) => (w.topic.to_string(), w.message.len()),
        LastWill::V5(w) => (w.topic.to_string(), w.message.len()),
    }
}
