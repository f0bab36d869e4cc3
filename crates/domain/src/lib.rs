//! Porchlight's domain: the rules that do not depend on where data lives or how it travels.
//!
//! Architecture invariant: this crate does no I/O and never reads the clock. Anything that
//! depends on time takes `now` as a parameter, so the rules are tested without sleeping.

pub mod account;
pub mod acl;
pub mod alarm;
pub mod mqtt_link;
pub mod owntracks;
pub mod pin;
pub mod secret;
pub mod session;
pub mod throttle;
pub mod track;

pub use acl::{Identity, LoginMethod, Role};
