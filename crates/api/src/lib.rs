//! The JSON shapes of Porchlight's HTTP API and live feed, written once for both sides: the
//! server (`porchlight-server`'s `http` module) serialises them, the web UI (`porchlight-ui`,
//! wasm32) deserialises them.
//!
//! - serde only: no I/O, no clock, nothing that does not build for `wasm32-unknown-unknown`.
//! - One module per area of the API (e.g. `alarm`, `owntracks`, `settings`); the server's
//!   route modules convert store rows and domain values into these types, so the wire format
//!   lives here and nowhere else.
//! - What is on the wire stays as it is: the end-to-end tests (`tests/e2e`) check the JSON.

pub mod account;
pub mod alarm;
pub mod ca;
pub mod certificates;
pub mod devices;
pub mod mqtt;
pub mod owntracks;
