//! End-to-end tests: the real server on free loopback ports, driven over real HTTP and MQTT,
//! and the real `porchlight` binary for process-level behaviour (signals, ports, first start).
//!
//! One test binary on purpose (link once, run in parallel); add modules here, not new files in
//! `tests/`.

// Test helpers fail by panicking: that is how a test reports a broken expectation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod alarm;
mod alarm_api;
mod alarm_codes;
mod audit_filters;
mod bus;
mod ca;
mod certificates;
mod connections;
mod crash;
mod floods;
mod friends;
mod guessing;
mod ha_discovery;
mod https;
mod live;
mod mqtt;
mod mqtt_clients;
mod mqtt_link;
mod owntracks_commands;
mod owntracks_history;
mod owntracks_ingest;
mod owntracks_keys;
mod owntracks_retained;
mod password_change;
mod raw_mqtt;
mod recorder_api;
mod serve;
mod sessions;
mod simulate;
mod support;
mod tls;
