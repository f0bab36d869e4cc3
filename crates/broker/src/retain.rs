//! Retained-message storage.
//!
//! rmqtt's default `RetainStorage` is disabled (`enable()` is false and `set` only logs a
//! warning); its standalone replacement is the `rmqtt-retainer` plugin. We install this small
//! in-memory store on top of rmqtt's own `DefaultRetainStorage` tree instead.
//!
//! rmqtt passes every client publish the listener's default message expiry (5 minutes) unless
//! the client set an MQTT 5 message-expiry property; a home hub's retained messages (Home
//! Assistant discovery, alarm state) must outlive that, so only an explicit property counts.

use std::time::Duration;

use async_trait::async_trait;
use rmqtt::Result;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};

pub(crate) struct Retainer {
    inner: DefaultRetainStorage,
}

impl Retainer {
    pub(crate) fn new() -> Self {
        Self {
            inner: DefaultRetainStorage::new(),
        }
    }
}

#[async_trait]
impl RetainStorage for Retainer {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        _expiry: Option<Duration>,
    ) -> Result<()> {
        let explicit = retain
            .publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .map(|secs| Duration::from_secs(u64::from(secs.get())));
        self.inner.set_with_timeout(topic, retain, explicit).await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> Result<Vec<(TopicName, Retain)>> {
        self.inner.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.inner.count().await
    }

    async fn max(&self) -> isize {
        self.inner.max().await
    }
}
