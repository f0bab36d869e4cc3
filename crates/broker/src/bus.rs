//! The in-process [`Bus`]: app publishes into rmqtt; allowed client publishes, will messages
//! and (on request) app publishes out to the app's receivers.
//!
//! Two kinds of receivers: consumers ([`Bus::consume`]) get every message through a bounded
//! channel and the publisher waits for room (backpressure, nothing lost: for ingest);
//! watchers ([`Bus::watch`]) get them through a ring of their own and the publisher never
//! waits (a slow watcher loses its oldest messages and is told how many: for live views).
//! Watchers are served first, so a stalled consumer does not hold back live views either.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use porchlight_domain::acl;
use rmqtt::codec::types::QoS;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, CodecPublish, From, Id, Publish, TopicName};
use rmqtt::utils::timestamp_millis;
use tokio::sync::{broadcast, mpsc};

use crate::hooks::State;
use crate::{Bus, Error, Inbound, Origin, Origins};

/// Client id shown as the origin of messages the application publishes.
const APP_CLIENT_ID: &str = "porchlight";

/// Largest receiver capacity (tokio's channels panic on absurd ones).
const MAX_CAPACITY: usize = 1 << 20;

struct Consumer {
    filter: String,
    origins: Origins,
    tx: mpsc::Sender<Inbound>,
}

struct Watcher {
    filter: String,
    origins: Origins,
    /// One sender per watcher: its ring is that watcher's backlog, and sending never waits.
    tx: broadcast::Sender<Inbound>,
}

fn wants(filter: &str, origins: Origins, inbound: &Inbound) -> bool {
    origins.admits(inbound.origin) && acl::filter_matches(filter, &inbound.topic)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Registered [`Bus::consume`] and [`Bus::watch`] receivers.
#[derive(Default)]
pub(crate) struct Consumers {
    consumers: RwLock<Vec<Consumer>>,
    watchers: RwLock<Vec<Watcher>>,
}

impl Consumers {
    fn add_consumer(&self, consumer: Consumer) {
        let mut list = write(&self.consumers);
        list.retain(|c| !c.tx.is_closed());
        list.push(consumer);
    }

    fn add_watcher(&self, watcher: Watcher) {
        let mut list = write(&self.watchers);
        list.retain(|w| w.tx.receiver_count() > 0);
        list.push(watcher);
    }

    /// Hand `inbound` to every matching watcher (never waiting), then to every matching
    /// consumer, waiting for room (backpressure).
    pub(crate) async fn dispatch(&self, inbound: Inbound) {
        let mut gone = false;
        for w in read(&self.watchers)
            .iter()
            .filter(|w| wants(&w.filter, w.origins, &inbound))
        {
            // Fails only when the watch was dropped.
            gone |= w.tx.send(inbound.clone()).is_err();
        }
        if gone {
            write(&self.watchers).retain(|w| w.tx.receiver_count() > 0);
        }

        let targets: Vec<mpsc::Sender<Inbound>> = read(&self.consumers)
            .iter()
            .filter(|c| wants(&c.filter, c.origins, &inbound))
            .map(|c| c.tx.clone())
            .collect();
        let mut closed = false;
        for tx in targets {
            if tx.send(inbound.clone()).await.is_err() {
                closed = true;
            }
        }
        if closed {
            write(&self.consumers).retain(|c| !c.tx.is_closed());
        }
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
            self.state.consumers.dispatch(inbound).await;
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
                tx,
            });
        } else {
            tracing::warn!(
                filter,
                "Bus::consume with an invalid filter; the receiver is closed"
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
}
