//! The OwnTracks protocol, as pure rules: topics, payloads, payload encryption, onboarding.
//!
//! - [`topic`]: `owntracks/<user>/<device>[/<suffix>]` to and from [`OwnTracksTopic`].
//! - [`message`]: payload bytes to a typed [`Message`] (raw JSON kept), or
//!   [`Parsed::Empty`] for a zero-length payload, or a [`PayloadError`] naming the reason.
//! - [`crypto`]: the apps' libsodium secretbox encryption (`_type: encrypted`).
//! - [`config`]: the `.otrc` configuration and its `owntracks:///config?inline=` URL.
//! - [`command`]: `_type: cmd` payloads to phones (`reportLocation`, `setWaypoints`, …).
//!
//! Architecture invariant: no I/O, no clock, no randomness (an encryption nonce is a parameter).
//! Nothing here panics on any input; the property tests check that with arbitrary bytes and
//! mutated valid messages. They run 2,000 cases by default; a fuzz run sets the count:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo test --release -p porchlight-domain owntracks::proptests
//! ```

pub mod command;
pub mod config;
pub mod crypto;
pub mod error;
pub mod message;
pub mod topic;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use command::PhoneCommand;
pub use config::{DeviceConfig, Endpoint};
pub use crypto::{CryptoError, SecretKey};
pub use error::PayloadError;
pub use message::{
    Beacon, Body, Card, Command, Configuration, Encrypted, Location, Lwt, MAX_PAYLOAD_BYTES,
    Message, MessageType, Parsed, Steps, Transition, TransitionEvent, Waypoint, Waypoints,
    open_payload, parse_payload,
};
pub use topic::{OwnTracksTopic, TopicError, TopicKind};
