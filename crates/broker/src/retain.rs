//! Retained-message storage, kept in memory and snapshotted to `data_dir/retained.json`.
//!
//! rmqtt's default `RetainStorage` is disabled (`enable()` is false and `set` only logs a
//! warning); its standalone replacement is the `rmqtt-retainer` plugin. We install this small
//! store on top of rmqtt's own in-memory `DefaultRetainStorage` tree instead.
//!
//! rmqtt passes every client publish the listener's default message expiry (5 minutes) unless
//! the client set an MQTT 5 message-expiry property; a home hub's retained messages (Home
//! Assistant discovery, alarm state, last OwnTracks location) must outlive that, so only an
//! explicit property counts.
//!
//! Persistence: a changed store is written (whole, atomically via rename) at most every
//! [`FLUSH_EVERY`] and at shutdown; a crash loses at most that much. The file format is our
//! own (not rmqtt's types), so an rmqtt upgrade does not break it. MQTT 5 properties of
//! retained messages are not persisted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rmqtt::Result;
use rmqtt::codec::types::QoS;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{
    ClientId, CodecPublish, From, Id, Publish, Retain, TopicFilter, TopicName, UserName,
};
use rmqtt::utils::timestamp_millis;
use serde::{Deserialize, Serialize};

/// Longest time a change waits before it is written to disk.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(2);
const FILE_NAME: &str = "retained.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    client_id: String,
    username: Option<String>,
    /// Unix milliseconds; `None` never expires.
    expires_at: Option<u64>,
}

pub(crate) struct Retainer {
    inner: DefaultRetainStorage,
    dirty: AtomicBool,
    path: PathBuf,
}

/// The handle rmqtt owns; the broker keeps another for flushing.
pub(crate) struct Shared(pub(crate) Arc<Retainer>);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Retainer {
    /// An empty store persisted under `data_dir`, loaded from there if a snapshot exists.
    pub(crate) async fn open(data_dir: PathBuf) -> Arc<Self> {
        let this = Arc::new(Self {
            inner: DefaultRetainStorage::new(),
            dirty: AtomicBool::new(false),
            path: data_dir.join(FILE_NAME),
        });
        this.load().await;
        this
    }

    async fn load(&self) {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read retained messages");
                return;
            }
        };
        let stored: Vec<Stored> = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring unreadable retained messages");
                return;
            }
        };
        let now = now_ms();
        let mut loaded = 0usize;
        for s in stored {
            let ttl = match s.expires_at {
                Some(at) if at <= now => continue,
                Some(at) => Some(Duration::from_millis(at - now)),
                None => None,
            };
            let qos = match s.qos {
                1 => QoS::AtLeastOnce,
                2 => QoS::ExactlyOnce,
                _ => QoS::AtMostOnce,
            };
            let topic = TopicName::from(s.topic);
            let publish = CodecPublish {
                dup: false,
                retain: true,
                qos,
                topic: topic.clone(),
                packet_id: None,
                payload: Bytes::from(s.payload),
                properties: None,
            };
            let from = From::from_custom(Id::new(
                0,
                0,
                None,
                None,
                ClientId::from(s.client_id),
                s.username.map(UserName::from),
            ));
            let publish = Publish::new(Box::new(publish), None, None, Some(timestamp_millis()));
            let retain = Retain {
                msg_id: None,
                from,
                publish,
            };
            match self.inner.set_with_timeout(&topic, retain, ttl).await {
                Ok(()) => loaded += 1,
                Err(e) => tracing::warn!(%topic, error = %e, "skipping stored retained message"),
            }
        }
        tracing::info!(loaded, path = %self.path.display(), "retained messages loaded");
    }

    /// Write the store if it changed since the last write.
    pub(crate) async fn flush(&self) {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.write().await {
            self.dirty.store(true, Ordering::SeqCst);
            tracing::warn!(path = %self.path.display(), error = %e, "cannot save retained messages");
        }
    }

    async fn write(&self) -> std::result::Result<(), String> {
        let (all, _) = self
            .inner
            .get_all_paginated(0, usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        let stored: Vec<Stored> = all
            .into_iter()
            .map(|(topic, r, ttl)| Stored {
                topic: topic.to_string(),
                payload: r.publish.payload.to_vec(),
                qos: r.publish.qos.value(),
                client_id: r.from.id.client_id.to_string(),
                username: r.from.id.username.as_ref().map(|u| u.to_string()),
                expires_at: ttl
                    .map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            })
            .collect();
        let json = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| e.to_string())?;
        }
        let tmp = self.path.with_extension("json.tmp");
        tokio::fs::write(&tmp, json)
            .await
            .map_err(|e| e.to_string())?;
        tokio::fs::rename(&tmp, &self.path)
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl RetainStorage for Shared {
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
        self.0
            .inner
            .set_with_timeout(topic, retain, explicit)
            .await?;
        self.0.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn get(&self, topic_filter: &TopicFilter) -> Result<Vec<(TopicName, Retain)>> {
        self.0.inner.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.0.inner.count().await
    }

    async fn max(&self) -> isize {
        self.0.inner.max().await
    }
}
