//! Home Assistant device trackers: each OwnTracks device announced to Home Assistant through
//! MQTT discovery, so family members appear on HA's map with no OwnTracks integration in HA.
//!
//! Opt-in (`[owntracks] ha_discovery = true`; off by default: publishing family members'
//! locations to Home Assistant is the household's choice). One switch for all devices; there
//! is no per-device opt-in yet.
//!
//! Per device `<user>/<device>`, all retained (ADR 0005: they survive a restart, and an HA
//! that connects later gets them at once):
//! - `<prefix>/device_tracker/porchlight_<user>_<device>/config` (a `_` in a name doubled, see
//!   [`object_id`]): the discovery config (no `state_topic`: HA takes the position from the
//!   JSON attributes, which its docs allow; `source_type: gps`).
//! - `porchlight/owntracks/<user>/<device>/attributes`: `latitude`, `longitude`,
//!   `gps_accuracy`, `battery_level` (+ `altitude`, `velocity`, `course` when known): the
//!   names HA understands (it ignores OwnTracks' `lat`/`acc`/`batt`).
//! - `porchlight/owntracks/<user>/<device>/availability`: `online` / `offline`, from the
//!   phone's online state (a location / its LWT).
//!
//! The Home Assistant role may read `homeassistant/#` and `porchlight/#` (domain ACL); with a
//! different prefix the config is outside what that role reads.
//!
//! Source: on start every stored device (config, availability, last location), then the
//! committed [`LiveFeed`] (never the raw MQTT: only stored points reach HA). A device first
//! seen on the feed is announced before its first attributes. When the feed lags, the state
//! is re-read from the store. Published as the broker itself through the [`Bus`].
//!
//! Turned off again: at the next start, [`HaDiscovery::withdraw`] clears the three retained
//! messages of every stored device (an empty retained payload; HA removes an entity whose
//! config is emptied), so Home Assistant no longer shows anyone.
//!
//! Not done: a deleted device's retained config is not cleared; no per-device opt-in.

use std::collections::HashSet;
use std::sync::Arc;

use porchlight_broker::{Bus, Bytes};
use porchlight_store::{LocationFields, Store};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use super::live::{LiveEvent, LiveFeed, LiveKind};

/// The running publisher; stop it with [`HaDiscovery::stop`].
#[derive(Debug)]
pub struct HaDiscovery {
    task: JoinHandle<()>,
}

impl HaDiscovery {
    /// Subscribes to `live` at once (no event after this call is missed), then announces the
    /// stored devices and follows the feed. `prefix`: HA's discovery prefix (`homeassistant`).
    pub fn start(store: Store, bus: Arc<dyn Bus>, live: &LiveFeed, prefix: String) -> HaDiscovery {
        let rx = live.subscribe();
        let publisher = Publisher {
            store,
            bus,
            prefix,
            announced: HashSet::new(),
        };
        HaDiscovery {
            task: tokio::spawn(publisher.run(rx)),
        }
    }

    /// With the setting off: clears what an earlier run with it on left retained (config,
    /// attributes, availability of every stored device), in the background.
    pub fn withdraw(store: Store, bus: Arc<dyn Bus>, prefix: String) -> HaDiscovery {
        let publisher = Publisher {
            store,
            bus,
            prefix,
            announced: HashSet::new(),
        };
        HaDiscovery {
            task: tokio::spawn(publisher.withdraw()),
        }
    }

    /// Stops publishing (before the broker shuts down).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct Publisher {
    store: Store,
    bus: Arc<dyn Bus>,
    prefix: String,
    /// (user, device) whose config was published by this process.
    announced: HashSet<(String, String)>,
}

impl Publisher {
    async fn run(mut self, mut rx: broadcast::Receiver<Arc<LiveEvent>>) {
        self.sync_from_store().await;
        loop {
            match rx.recv().await {
                Ok(event) => self.on_event(&event).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "HA discovery fell behind the live feed; re-reading the store"
                    );
                    self.sync_from_store().await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn withdraw(self) {
        let devices = match self.store.owntracks_devices(None).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "HA discovery: reading the devices failed");
                return;
            }
        };
        for d in devices {
            let (user, device) = (&d.username, &d.name);
            let config = format!(
                "{}/device_tracker/{}/config",
                self.prefix,
                object_id(user, device)
            );
            for topic in [
                config,
                attributes_topic(user, device),
                availability_topic(user, device),
            ] {
                self.publish_bytes(&topic, Bytes::new()).await;
            }
        }
    }

    /// Every stored device: config, availability, last location.
    async fn sync_from_store(&mut self) {
        let devices = match self.store.last_locations(None).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "HA discovery: reading the devices failed");
                return;
            }
        };
        for last in devices {
            let (user, device) = (&last.device.username, &last.device.name);
            self.announce(user, device).await;
            self.availability(user, device, last.device.online).await;
            if let Some(location) = &last.location {
                self.attributes(user, device, &location.fields).await;
            }
        }
    }

    async fn on_event(&mut self, event: &LiveEvent) {
        let (user, device) = (&event.username, &event.device);
        match &event.kind {
            LiveKind::Location { fields, .. } => {
                self.announce(user, device).await;
                self.attributes(user, device, fields).await;
            }
            LiveKind::Status { online } => {
                self.announce(user, device).await;
                self.availability(user, device, *online).await;
            }
            LiveKind::Transition { .. } | LiveKind::Card { .. } => {}
        }
    }

    /// Publishes the device's discovery config once per process.
    async fn announce(&mut self, user: &str, device: &str) {
        let key = (user.to_owned(), device.to_owned());
        if self.announced.contains(&key) {
            return;
        }
        let id = object_id(user, device);
        let topic = format!("{}/device_tracker/{id}/config", self.prefix);
        if self.publish(&topic, config(user, device)).await {
            self.announced.insert(key);
        }
    }

    async fn attributes(&self, user: &str, device: &str, fields: &LocationFields) {
        self.publish(&attributes_topic(user, device), attributes(fields))
            .await;
    }

    async fn availability(&self, user: &str, device: &str, online: bool) {
        let payload = if online { "online" } else { "offline" };
        self.publish_bytes(
            &availability_topic(user, device),
            Bytes::from_static(payload.as_bytes()),
        )
        .await;
    }

    async fn publish(&self, topic: &str, value: Value) -> bool {
        self.publish_bytes(topic, Bytes::from(value.to_string()))
            .await
    }

    /// Retained, QoS 1; a failure is logged (the next event or restart publishes again).
    async fn publish_bytes(&self, topic: &str, payload: Bytes) -> bool {
        match self.bus.publish(topic, payload, 1, true).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(topic, error = %e, "HA discovery: publishing failed");
                false
            }
        }
    }
}

/// `porchlight_<user>_<device>`, unambiguous: a `_` inside a name is doubled (so `a_b`/`c`
/// and `a`/`b_c` differ; a device name never starts with `_`), and any character HA's
/// discovery ids do not allow (outside `[A-Za-z0-9_-]`; user and device names never have
/// one) becomes `-`.
fn object_id(user: &str, device: &str) -> String {
    let escape = |name: &str| -> String {
        name.chars()
            .flat_map(|c| match c {
                '_' => vec!['_', '_'],
                c if c.is_ascii_alphanumeric() || c == '-' => vec![c],
                _ => vec!['-'],
            })
            .collect()
    };
    format!("porchlight_{}_{}", escape(user), escape(device))
}

fn attributes_topic(user: &str, device: &str) -> String {
    format!("porchlight/owntracks/{user}/{device}/attributes")
}

fn availability_topic(user: &str, device: &str) -> String {
    format!("porchlight/owntracks/{user}/{device}/availability")
}

/// The discovery config of one device's tracker.
fn config(user: &str, device: &str) -> Value {
    let id = object_id(user, device);
    json!({
        // The entity takes the device's name.
        "name": null,
        "unique_id": id,
        // `object_id` for HA before 2025.10, `default_entity_id` after (both work).
        "object_id": id,
        "default_entity_id": format!("device_tracker.{id}"),
        "json_attributes_topic": attributes_topic(user, device),
        "availability_topic": availability_topic(user, device),
        "payload_available": "online",
        "payload_not_available": "offline",
        "source_type": "gps",
        "device": {
            "identifiers": [id],
            "name": format!("{user} {device}"),
            "manufacturer": "OwnTracks via Porchlight",
            "model": "OwnTracks",
        },
    })
}

/// A location in the attribute names HA reads.
fn attributes(fields: &LocationFields) -> Value {
    let mut map = Map::new();
    map.insert("latitude".into(), json!(fields.lat));
    map.insert("longitude".into(), json!(fields.lon));
    let optional = [
        ("gps_accuracy", fields.acc.map(|v| json!(v))),
        ("battery_level", fields.batt.map(|v| json!(v))),
        ("altitude", fields.alt.map(|v| json!(v))),
        ("velocity", fields.vel.map(|v| json!(v))),
        ("course", fields.cog.map(|v| json!(v))),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            map.insert(name.into(), value);
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_unambiguous_and_keep_only_what_ha_allows() {
        assert_eq!(object_id("alice", "phone"), "porchlight_alice_phone");
        assert_eq!(object_id("bob.s", "pixel 8"), "porchlight_bob-s_pixel-8");
        assert_eq!(object_id("a_b", "c"), "porchlight_a__b_c");
        assert_ne!(object_id("a_b", "c"), object_id("a", "b_c"));
    }
}
