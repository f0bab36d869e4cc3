//! OwnTracks services: what connects the domain's OwnTracks rules, the broker's bus and the
//! store. Today: [`ingest`] (phones' MQTT publishes and HTTP-mode posts into the store, commit
//! before ack), [`live`] (what ingest committed, fanned out to live viewers),
//! [`ha_discovery`] (devices as Home Assistant `device_tracker`s over MQTT discovery),
//! [`retention`] (each user's old locations deleted in the background) and
//! [`last_known`] (each device's last location and card retained in the broker at start).
//!
//! Architecture invariant: no rules here (parsing and topic rules live in
//! `porchlight_domain::owntracks`), no SQL (the store), no JSON shapes (`http/`) except the
//! MQTT payloads Home Assistant reads (`ha_discovery`).

pub mod ha_discovery;
pub mod ingest;
pub mod last_known;
pub mod live;
pub mod retention;

pub use ha_discovery::HaDiscovery;
pub use ingest::{Ingest, IngestConfig, IngestStats, Submitter};
pub use live::{LiveEvent, LiveFeed, LiveKind};
pub use retention::{Retention, RetentionConfig};
