//! The in-process [`Bus`]: app publishes into rmqtt, client publishes out to consumers.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use porchlight_domain::acl;
use rmqtt::codec::types::QoS;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, CodecPublish, From, Id, Publish, TopicName};
use rmqtt::utils::timestamp_millis;
use tokio::sync::mpsc;

use crate::hooks::State;
use crate::{Bus, Error, Inbound};

/// Client id shown as the origin of messages the application publishes.
const APP_CLIENT_ID: &str = "porchlight";

struct Consumer {
    filter: String,
    tx: mpsc::Sender<Inbound>,
}

/// Registered [`Bus::consume`] receivers.
#[derive(Default)]
pub(crate) struct Consumers {
    list: RwLock<Vec<Consumer>>,
}

impl Consumers {
    fn add(&self, filter: String, tx: mpsc::Sender<Inbound>) {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|c| !c.tx.is_closed());
        list.push(Consumer { filter, tx });
    }

    /// Hand `inbound` to every matching consumer, waiting for room (backpressure).
    pub(crate) async fn dispatch(&self, inbound: Inbound) {
        let targets: Vec<mpsc::Sender<Inbound>> = {
            let list = self.list.read().unwrap_or_else(|p| p.into_inner());
            list.iter()
                .filter(|c| acl::filter_matches(&c.filter, &inbound.topic))
                .map(|c| c.tx.clone())
                .collect()
        };
        let mut closed = false;
        for tx in targets {
            if tx.send(inbound.clone()).await.is_err() {
                closed = true;
            }
        }
        if closed {
            let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
            list.retain(|c| !c.tx.is_closed());
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
            })
    }

    fn consume(&self, filter: &str, capacity: usize) -> mpsc::Receiver<Inbound> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if acl::is_valid_filter(filter) {
            self.state.consumers.add(filter.to_owned(), tx);
        } else {
            tracing::warn!(
                filter,
                "Bus::consume with an invalid filter; the receiver is closed"
            );
        }
        rx
    }
}
