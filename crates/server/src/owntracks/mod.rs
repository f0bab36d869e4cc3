//! OwnTracks services: what connects the domain's OwnTracks rules, the broker's bus and the
//! store. Today: [`ingest`] (phones' MQTT publishes and HTTP-mode posts into the store, commit
//! before ack) and [`live`] (what ingest committed, fanned out to live viewers).
//!
//! Architecture invariant: no rules here (parsing and topic rules live in
//! `porchlight_domain::owntracks`), no SQL (the store), no JSON shapes (`http/`).

pub mod ingest;
pub mod live;

pub use ingest::{Ingest, IngestConfig, IngestStats, Submitter};
pub use live::{LiveEvent, LiveFeed, LiveKind};
