//! The in-process [`Bus`]: app publishes into rmqtt; allowed client publishes, will messages
//! and (on request) app publishes out to the app's receivers.
//!
//! Three kinds of receivers:
//! - consumers ([`Bus::consume`]) get every message through a bounded channel and the
//!   publisher waits for room (backpressure, nothing lost);
//! - acked consumers ([`Bus::consume_acked`]) get the same, each message with an [`Ack`] to
//!   answer; for a client's QoS 1/2 publish the publish hook waits (up to
//!   `BrokerConfig::commit_timeout`) for every matching acked consumer's answer, so the
//!   PUBACK / PUBREC leaves only after the consumers committed (commit before ack, ADR 0008);
//! - watchers ([`Bus::watch`]) get them through a ring of their own and the publisher never
//!   waits (a slow watcher loses its oldest messages and is told how many: for live views).
//!
//! Watchers are served first, so a stalled consumer does not hold back live views either.
//! Consumers of both kinds share one list (one read lock per message, as before), and a
//! message no acked consumer matches costs no allocation or wait beyond what `consume` costs.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use porchlight_domain::acl;
use rmqtt::codec::types::QoS;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, CodecPublish, From, Id, Publish, TopicFilter, TopicName};
use rmqtt::utils::timestamp_millis;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::hooks::State;
use crate::{Bus, Error, Inbound, Origin, Origins};

/// Client id shown as the origin of messages the application publishes.
const APP_CLIENT_ID: &str = "porchlight";

/// Largest receiver capacity (tokio's channels panic on absurd ones).
const MAX_CAPACITY: usize = 1 << 20;

/// Where a consumer's messages go.
#[derive(Clone)]
enum Sink {
    /// [`Bus::consume_from`]: the message alone.
    Plain(mpsc::Sender<Inbound>),
    /// [`Bus::consume_acked`]: the message with an [`Ack`] the publisher may wait for.
    Acked(mpsc::Sender<Delivery>),
}

impl Sink {
    fn is_closed(&self) -> bool {
        match self {
            Sink::Plain(tx) => tx.is_closed(),
            Sink::Acked(tx) => tx.is_closed(),
        }
    }
}

struct Consumer {
    filter: String,
    origins: Origins,
    sink: Sink,
}

struct Watcher {
    filter: String,
    origins: Origins,
    /// One sender per watcher: its ring is that watcher's backlog, and sending never waits.
    tx: broadcast::Sender<Inbound>,
}

fn wants(filter: &str, origins: Origins, origin: Origin, topic: &str) -> bool {
    origins.admits(origin) && acl::filter_matches(filter, topic)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// The answer an acked consumer gives for one message: `Err` carries the reason of a failure.
type Answer = Result<(), String>;

/// A message an acked consumer must answer (see [`Bus::consume_acked`]).
#[derive(Debug)]
pub struct Delivery {
    pub inbound: Inbound,
    /// Answer with [`Ack::commit`] once the message is durably stored, or [`Ack::fail`].
    pub ack: Ack,
}

/// The acknowledgement an acked consumer owes for one [`Delivery`].
///
/// For a client's QoS 1/2 publish the publishing client gets its PUBACK (QoS 1) / PUBREC
/// (QoS 2) only after every matching acked consumer called [`Ack::commit`]. [`Ack::fail`],
/// dropping the `Ack` without answering, or no answer within `BrokerConfig::commit_timeout`
/// refuses the publish instead: the client is disconnected without an acknowledgement and
/// sends the message again when it reconnects (ADR 0008).
///
/// For everything else (QoS 0 publishes, will messages, the app's own publishes) nobody
/// waits: [`Ack::is_awaited`] is false and the answer changes nothing, but the consumer must
/// still commit promptly (within 50 ms for QoS 0 points: the bound).
#[must_use = "the publisher waits for an answer: call commit() or fail()"]
pub struct Ack {
    /// `None` when no publisher waits for this answer.
    answer: Option<oneshot::Sender<Answer>>,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("awaited", &self.is_awaited())
            .finish()
    }
}

impl Ack {
    /// The message is durably stored: the publisher may be acknowledged.
    pub fn commit(mut self) {
        self.answer(Ok(()));
    }

    /// The message could not be stored: the publish is refused (the client resends it after
    /// reconnecting). `reason` is logged by the broker, never sent to the client.
    pub fn fail(mut self, reason: impl Into<String>) {
        self.answer(Err(reason.into()));
    }

    /// Whether a publishing client waits for this answer (a client's QoS 1/2 publish).
    pub fn is_awaited(&self) -> bool {
        self.answer.is_some()
    }

    fn answer(&mut self, answer: Answer) {
        if let Some(tx) = self.answer.take() {
            // Fails only when the publisher stopped waiting (timeout, or an earlier failure).
            let _ = tx.send(answer);
        }
    }
}

/// Why a publish an acked consumer was to commit is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotCommitted(pub(crate) String);

/// Registered [`Bus::consume`], [`Bus::consume_acked`] and [`Bus::watch`] receivers.
#[derive(Default)]
pub(crate) struct Consumers {
    /// Plain and acked consumers, in registration order.
    consumers: RwLock<Vec<Consumer>>,
    watchers: RwLock<Vec<Watcher>>,
}

impl Consumers {
    fn add_consumer(&self, consumer: Consumer) {
        let mut list = write(&self.consumers);
        list.retain(|c| !c.sink.is_closed());
        list.push(consumer);
    }

    fn add_watcher(&self, watcher: Watcher) {
        let mut list = write(&self.watchers);
        list.retain(|w| w.tx.receiver_count() > 0);
        list.push(watcher);
    }

    /// Hand the message on `topic` from `origin` to every matching watcher (never waiting),
    /// then to every matching consumer, waiting for room (backpressure). `message` builds it
    /// only when some receiver matches: most client publishes (anything outside the app's
    /// topics) match none, and then cost two read locks, no allocation and no await.
    ///
    /// With `commit: Some(limit)` (a client's QoS 1/2 publish), also wait for every matching
    /// acked consumer to answer, all within `limit` (room in its channel included); the first
    /// failure, dropped [`Ack`] or the timeout is returned, and the publish must then be
    /// refused. With `None`, acked consumers get an [`Ack`] nobody waits for.
    pub(crate) async fn dispatch(
        &self,
        topic: &str,
        origin: Origin,
        message: impl FnOnce() -> Inbound,
        commit: Option<Duration>,
    ) -> Result<(), NotCommitted> {
        match self.matching(topic, origin, message) {
            // Boxed: the hooks' futures stay small for the messages no consumer takes
            // (rmqtt boxes every hook call's future, once per message and hook).
            Some((inbound, targets)) => Box::pin(self.deliver(inbound, targets, commit)).await,
            None => Ok(()),
        }
    }

    /// Sends the message to the matching watchers now, and returns it with the matching
    /// consumers, if any.
    fn matching(
        &self,
        topic: &str,
        origin: Origin,
        message: impl FnOnce() -> Inbound,
    ) -> Option<(Inbound, Vec<Sink>)> {
        let built = std::cell::LazyCell::new(message);
        let mut gone = false;
        for w in read(&self.watchers)
            .iter()
            .filter(|w| wants(&w.filter, w.origins, origin, topic))
        {
            // Fails only when the watch was dropped.
            gone |= w.tx.send(Inbound::clone(&built)).is_err();
        }
        if gone {
            write(&self.watchers).retain(|w| w.tx.receiver_count() > 0);
        }
        let targets: Vec<Sink> = read(&self.consumers)
            .iter()
            .filter(|c| wants(&c.filter, c.origins, origin, topic))
            .map(|c| c.sink.clone())
            .collect();
        if targets.is_empty() {
            return None;
        }
        Some((std::cell::LazyCell::force(&built).clone(), targets))
    }

    /// Hands `inbound` to the consumers `targets` ([`Consumers::dispatch`]).
    async fn deliver(
        &self,
        inbound: Inbound,
        targets: Vec<Sink>,
        commit: Option<Duration>,
    ) -> Result<(), NotCommitted> {
        let mut closed = false;
        // Only a message an acked consumer matches reads the clock or allocates here.
        let mut deadline = None;
        let mut answers = Vec::new();
        let mut failure = None;
        for sink in targets {
            match sink {
                Sink::Plain(tx) => closed |= tx.send(inbound.clone()).await.is_err(),
                Sink::Acked(tx) => {
                    let Some(limit) = commit else {
                        let delivery = Delivery {
                            inbound: inbound.clone(),
                            ack: Ack { answer: None },
                        };
                        closed |= tx.send(delivery).await.is_err();
                        continue;
                    };
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + limit);
                    let (answer, rx) = oneshot::channel();
                    let delivery = Delivery {
                        inbound: inbound.clone(),
                        ack: Ack {
                            answer: Some(answer),
                        },
                    };
                    match tokio::time::timeout_at(deadline, tx.send(delivery)).await {
                        Ok(Ok(())) => answers.push(rx),
                        Ok(Err(_)) => {
                            closed = true;
                            failure = Some("an acked consumer is gone");
                        }
                        Err(_) => failure = Some("timed out waiting for room in an acked consumer"),
                    }
                    if failure.is_some() {
                        break;
                    }
                }
            }
        }
        if closed {
            write(&self.consumers).retain(|c| !c.sink.is_closed());
        }
        if let Some(reason) = failure {
            return Err(NotCommitted(reason.to_owned()));
        }
        let Some(deadline) = deadline else {
            return Ok(());
        };
        // Every acked consumer has the message: they commit concurrently.
        for rx in answers {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(reason))) => return Err(NotCommitted(reason)),
                Ok(Err(_)) => {
                    return Err(NotCommitted(
                        "an acked consumer dropped the message without answering".into(),
                    ));
                }
                Err(_) => {
                    return Err(NotCommitted(
                        "timed out waiting for an acked consumer to commit".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether any receiver asked for the app's own publishes.
    fn want_app(&self) -> bool {
        read(&self.watchers)
            .iter()
            .any(|w| w.origins.admits(Origin::App))
            || read(&self.consumers)
                .iter()
                .any(|c| c.origins.admits(Origin::App))
    }
}

/// What a [`Watch`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    Message(Inbound),
    /// This many messages, the oldest, were dropped because the watcher fell behind; the
    /// messages after them follow.
    Lagged(u64),
}

/// A lossy live subscription to the bus (see [`Bus::watch`]). Dropping it unsubscribes.
pub struct Watch {
    /// `None` when the filter was invalid: the watch is closed from the start.
    rx: Option<broadcast::Receiver<Inbound>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("open", &self.rx.is_some())
            .finish()
    }
}

impl Watch {
    /// The next message, or how many were lost since the previous call; `None` once the
    /// broker is gone (or for an invalid filter).
    pub async fn recv(&mut self) -> Option<Watched> {
        let rx = self.rx.as_mut()?;
        match rx.recv().await {
            Ok(inbound) => Some(Watched::Message(inbound)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Watched::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

pub(crate) struct BusImpl {
    scx: ServerContext,
    state: Arc<State>,
}

impl BusImpl {
    pub(crate) fn new(scx: ServerContext, state: Arc<State>) -> Self {
        Self { scx, state }
    }
}

#[async_trait]
impl Bus for BusImpl {
    async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
    ) -> Result<(), Error> {
        if !acl::is_valid_topic(topic) {
            return Err(Error::InvalidTopic(topic.to_owned()));
        }
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => return Err(Error::InvalidQos(other)),
        };
        let copy = self.state.consumers.want_app().then(|| Inbound {
            topic: topic.to_owned(),
            payload: payload.clone(),
            qos: qos.value(),
            retain,
            origin: Origin::App,
            identity: None,
            client_id: APP_CLIENT_ID.to_owned(),
        });
        let inner = CodecPublish {
            dup: false,
            retain,
            qos,
            topic: TopicName::from(topic),
            packet_id: None,
            payload,
            properties: None,
        };
        let publish = Publish::new(Box::new(inner), None, None, Some(timestamp_millis()));
        let from = From::from_system(Id::new(
            self.scx.node.id(),
            0,
            None,
            None,
            ClientId::from(APP_CLIENT_ID),
            None,
        ));
        // No expiry: retained messages from the app stay until replaced or cleared.
        SessionState::forwards(&self.scx, from, publish, false, None)
            .await
            .map_err(|e| Error::Publish {
                topic: topic.to_owned(),
                reason: e.to_string(),
            })?;
        if let Some(inbound) = copy {
            // Nobody waits for the consumers' answers to an app publish (ADR 0008).
            let (topic, origin) = (inbound.topic.clone(), inbound.origin);
            let _ = self
                .state
                .consumers
                .dispatch(&topic, origin, || inbound, None)
                .await;
        }
        Ok(())
    }

    fn consume_from(
        &self,
        filter: &str,
        capacity: usize,
        origins: Origins,
    ) -> mpsc::Receiver<Inbound> {
        let (tx, rx) = mpsc::channel(capacity.clamp(1, MAX_CAPACITY));
        if acl::is_valid_filter(filter) {
            self.state.consumers.add_consumer(Consumer {
                filter: filter.to_owned(),
                origins,
                sink: Sink::Plain(tx),
            });
        } else {
            tracing::warn!(
                filter,
                "Bus::consume with an invalid filter; the receiver is closed"
            );
        }
        rx
    }

    fn consume_acked(
        &self,
        filter: &str,
        capacity: usize,
        origins: Origins,
    ) -> mpsc::Receiver<Delivery> {
        let (tx, rx) = mpsc::channel(capacity.clamp(1, MAX_CAPACITY));
        if acl::is_valid_filter(filter) {
            self.state.consumers.add_consumer(Consumer {
                filter: filter.to_owned(),
                origins,
                sink: Sink::Acked(tx),
            });
        } else {
            tracing::warn!(
                filter,
                "Bus::consume_acked with an invalid filter; the receiver is closed"
            );
        }
        rx
    }

    fn watch_from(&self, filter: &str, capacity: usize, origins: Origins) -> Watch {
        if !acl::is_valid_filter(filter) {
            tracing::warn!(
                filter,
                "Bus::watch with an invalid filter; the watch is closed"
            );
            return Watch { rx: None };
        }
        let (tx, rx) = broadcast::channel(capacity.clamp(1, MAX_CAPACITY));
        self.state.consumers.add_watcher(Watcher {
            filter: filter.to_owned(),
            origins,
            tx,
        });
        Watch { rx: Some(rx) }
    }

    async fn retained(&self, topic: &str) -> Result<Option<Bytes>, Error> {
        if !acl::is_valid_topic(topic) {
            return Err(Error::InvalidTopic(topic.to_owned()));
        }
        let found = self
            .scx
            .extends
            .retain()
            .await
            .get(&TopicFilter::from(topic))
            .await
            .map_err(|e| Error::Retained {
                topic: topic.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(found
            .into_iter()
            .find(|(name, _)| &name[..] == topic)
            .map(|(_, r)| r.publish.payload.clone()))
    }
}
