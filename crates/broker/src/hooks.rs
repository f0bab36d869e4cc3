//! The rmqtt hook handler: authentication, ACL, audit and the feed of [`crate::Bus`] consumers.
//!
//! rmqtt notes (0.24.0):
//! - `MessagePublish` runs *before* the publish ACL and also sees refused publishes, so
//!   consumers are fed from the allow path of `MessagePublishCheckAcl` instead.
//! - A will message is published without any ACL check; its topic is checked at CONNECT.
//!   Wills reach consumers through `MessagePublish` (with a `LastWill` origin).
//! - An ACL handler that returns nothing means "allow"; every path here answers explicitly.
//! - The refused-CONNACK path does not run `ClientConnack`, so refusals are audited here.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use porchlight_domain::acl::{self, Identity};
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::{
    AuthResult, ConnectInfo, FromType, Id, LastWill, PublishAclResult, SubscribeAclResult,
};

use crate::bus::Consumers;
use crate::takeover::Takeovers;
use crate::{AuditEvent, Credentials, Gatekeeper, Inbound, ProtocolLevel, Refusal};

/// A session that passed authentication, keyed by client id; kept while rmqtt keeps the
/// session (also offline), so its owner is known when the client id is reused.
struct Live {
    id: Id,
    identity: Identity,
}

/// State shared by the hook handler, the bus and the broker handle.
pub(crate) struct State {
    gatekeeper: Arc<dyn Gatekeeper>,
    max_payload: usize,
    live: Mutex<HashMap<String, Live>>,
    pub(crate) consumers: Consumers,
    /// Messages rmqtt dropped (queue full, expired, session gone): for logs and health.
    dropped: std::sync::atomic::AtomicU64,
}

impl State {
    pub(crate) fn new(gatekeeper: Arc<dyn Gatekeeper>, max_payload: usize) -> Self {
        Self {
            gatekeeper,
            max_payload,
            live: Mutex::new(HashMap::new()),
            consumers: Consumers::default(),
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
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

    fn live(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The identity of the connection `id`, if it is the one that authenticated last under
    /// its client id.
    fn identity(&self, id: &Id) -> Option<Identity> {
        self.live()
            .get(&*id.client_id)
            .filter(|l| l.id == *id)
            .map(|l| l.identity.clone())
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
        self.live().values().map(|l| l.identity.clone()).collect()
    }

    pub(crate) fn forget(&self, id: &Id) {
        let mut live = self.live();
        if live.get(&*id.client_id).is_some_and(|l| l.id == *id) {
            live.remove(&*id.client_id);
        }
    }

    fn record(&self, event: AuditEvent) {
        self.gatekeeper.record(event);
    }
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

    async fn authenticate(&self, ci: &ConnectInfo) -> AuthResult {
        let protocol = ProtocolLevel::from_u8(ci.proto_ver());
        let creds = Credentials {
            username: ci.username().map(|u| u.to_string()),
            password: ci.password().map(|p| p.to_vec()),
            client_id: ci.client_id().to_string(),
            peer: peer_of(ci.id()),
            protocol,
            cert_cn: ci.cert().and_then(|c| c.common_name.clone()),
        };
        let refuse = |refusal: Refusal, reason: String| {
            tracing::info!(
                client_id = %creds.client_id, username = ?creds.username, peer = %creds.peer,
                %reason, "MQTT connection refused"
            );
            self.state.record(AuditEvent::Connect {
                at: SystemTime::now(),
                peer: creds.peer,
                client_id: creds.client_id.clone(),
                username: creds.username.clone(),
                protocol: protocol.as_u8(),
                code: refusal.connack_code(protocol),
                reason,
            });
            match refusal {
                Refusal::BadCredentials => AuthResult::BadUsernameOrPassword,
                Refusal::NotAuthorized => AuthResult::NotAuthorized,
            }
        };
        if creds.username.is_none() {
            return refuse(Refusal::NotAuthorized, "no username".into());
        }
        let identity = match self.state.gatekeeper.authenticate(&creds).await {
            Ok(identity) => identity,
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::BadCredentials => "bad username or password",
                    Refusal::NotAuthorized => "not authorized",
                };
                return refuse(refusal, reason.into());
            }
        };
        if let Some((topic, len)) = ci.last_will().map(|w| will_topic_and_len(&w)) {
            if !acl::may_publish(&identity, &topic) {
                return refuse(
                    Refusal::NotAuthorized,
                    format!("will topic {topic:?} not allowed"),
                );
            }
            if len > self.state.max_payload {
                return refuse(
                    Refusal::NotAuthorized,
                    format!("will payload of {len} bytes too large"),
                );
            }
        }
        // Queue behind an earlier CONNECT with this client id (see `takeover`).
        self.takeovers.acquire(&self.scx, ci.id()).await;
        // rmqtt hands an existing session (online, or offline with clean_session=0) to the
        // next CONNECT with its client id, subscriptions and queued messages included, without
        // re-checking them against the ACL. Only the same user may take a session over.
        let previous = self
            .state
            .live()
            .get(&creds.client_id)
            .map(|l| (l.id.clone(), l.identity.user_id));
        if let Some((previous_id, owner)) = previous {
            let exists = self.scx.extends.shared().await.entry(previous_id).id_same() == Some(true);
            if exists && owner != identity.user_id {
                self.takeovers.release(ci.id());
                return refuse(
                    Refusal::NotAuthorized,
                    "client id belongs to another user's session".into(),
                );
            }
        }
        self.state.live().insert(
            creds.client_id.clone(),
            Live {
                id: ci.id().clone(),
                identity,
            },
        );
        AuthResult::Allow(false, None)
    }

    async fn check_publish(&self, id: &Id, publish: &rmqtt::types::Publish) -> PublishAclResult {
        let Some(identity) = self.state.identity(id) else {
            tracing::warn!(client_id = %id.client_id, "publish from a connection without identity");
            return PublishAclResult::rejected(true, Some("no identity".into()));
        };
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
                username: Some(identity.username),
                topic: publish.topic.to_string(),
            });
            return PublishAclResult::rejected(false, None);
        }
        let inbound = Inbound {
            topic: publish.topic.to_string(),
            payload: publish.payload.clone(),
            username: identity.username,
            client_id: id.client_id.to_string(),
            retain: publish.retain,
        };
        self.state.consumers.dispatch(inbound).await;
        PublishAclResult::allow()
    }

    fn check_subscribe(&self, id: &Id, sub: &rmqtt::types::Subscribe) -> SubscribeAclResult {
        let identity = self.state.identity(id);
        if let Some(identity) = identity
            .as_ref()
            .filter(|i| acl::may_subscribe(i, &sub.topic_filter))
        {
            tracing::debug!(client_id = %id.client_id, username = %identity.username, filter = %sub.topic_filter, "subscribed");
            return SubscribeAclResult::new_success(sub.opts.qos(), None);
        }
        tracing::info!(client_id = %id.client_id, filter = %sub.topic_filter, "subscribe denied");
        self.state.record(AuditEvent::SubscribeDenied {
            at: SystemTime::now(),
            client_id: id.client_id.to_string(),
            username: identity.map(|i| i.username),
            filter: sub.topic_filter.to_string(),
        });
        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
    }
}

#[async_trait]
impl Handler for HookHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let result = self.authenticate(ci).await;
                (false, Some(HookResult::AuthResult(result)))
            }
            // rmqtt 0.24 runs this hook for accepted CONNECTs only.
            Parameter::ClientConnack(ci, _) => {
                let id = ci.id();
                self.takeovers.release(id);
                tracing::info!(client_id = %id.client_id, username = ?ci.username(), peer = %peer_of(id), "MQTT client connected");
                self.state.record(AuditEvent::Connect {
                    at: SystemTime::now(),
                    peer: peer_of(id),
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
                    peer: peer_of(id),
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
                let result = self.check_subscribe(&session.id, sub);
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let result = self.check_publish(&session.id, publish).await;
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessagePublish(_, from, publish)
                if matches!(from.typ(), FromType::LastWill) =>
            {
                let inbound = Inbound {
                    topic: publish.topic.to_string(),
                    payload: publish.payload.clone(),
                    username: from
                        .id
                        .username
                        .as_ref()
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    client_id: from.id.client_id.to_string(),
                    retain: publish.retain,
                };
                self.state.consumers.dispatch(inbound).await;
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

fn will_topic_and_len(will: &LastWill<'_>) -> (String, usize) {
    match will {
        LastWill::V3(w) => (w.topic.to_string(), w.message.len()),
        LastWill::V5(w) => (w.topic.to_string(), w.message.len()),
    }
}

fn peer_of(id: &Id) -> SocketAddr {
    id.remote_addr
        .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}
