//! The alarm as a running service: the domain's state machine
//! ([`porchlight_domain::alarm::Alarm`]) wired to the store, the broker's bus and Home
//! Assistant.
//!
//! - [`service`]: [`AlarmService`] (one task owning the machine) and the [`AlarmHandle`] the
//!   REST API and the keypad call; the [`PinVerifier`] port the PIN codes plug into.
//! - `ha`: the payloads Porchlight publishes for Home Assistant (discovery, attributes,
//!   errors, duress).
//! - [`codes`]: [`PinCheck`](codes::PinCheck), the PIN codes stored per user (ADR 0013),
//!   the verifier the service uses.
//! - [`pins`]: [`FixedPins`], a verifier over a fixed list of argon2id PIN hashes (tests, the
//!   bench).

pub mod codes;
mod ha;
pub mod pins;
pub mod service;

pub use pins::{FixedCode, FixedPins, NoPins, hash_pin};
pub use service::{
    AlarmConfig, AlarmError, AlarmHandle, AlarmService, CodeHolder, CommandReply, CommandRequest,
    PinRefusal, PinVerifier, Refusal, SensorView,
};
