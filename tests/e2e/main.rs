//! End-to-end tests: the real server on free loopback ports, driven over real HTTP and MQTT,
//! and the real `porchlight` binary for process-level behaviour (signals, ports, first start).
//!
//! One test binary on purpose (link once, run in parallel); add modules here, not new files in
//! `tests/`.

mod accounts;
mod mqtt;
mod serve;
mod support;
