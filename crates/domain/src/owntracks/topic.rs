//! OwnTracks MQTT topics: `owntracks/<user>/<device>[/<suffix>]`.
//!
//! Owns the mapping between a topic and `(user, device, kind)`, both ways. It checks the
//! topic's shape only (three or four levels, known suffix, no empty or wildcard levels); whether
//! the user is the authenticated one, or the device name is one the store accepts, is the
//! ingest's decision (see `crate::account::validate_device_name` and `crate::acl`).

use std::fmt;

use serde::Serialize;
use thiserror::Error;

/// The first topic level of every OwnTracks topic.
pub const TOPIC_PREFIX: &str = "owntracks";

/// Longest user or device level we accept, in bytes: generous for OwnTracks device ids, and a
/// bound on what a hostile topic can make us keep.
pub const MAX_LEVEL_LEN: usize = 128;

/// What a topic carries, from its suffix (the booklet's "Topics" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicKind {
    /// `owntracks/<user>/<device>`: `location` and `lwt`.
    Device,
    /// `/event`: `transition` (region enter/leave).
    Event,
    /// `/waypoint`: one `waypoint` (a region created on the phone).
    Waypoint,
    /// `/waypoints`: a `waypoints` export.
    Waypoints,
    /// `/info`: the user's `card`.
    Info,
    /// `/status`: the app's `status`.
    Status,
    /// `/dump`: a `configuration` dump.
    Dump,
    /// `/cmd`: a `cmd` to (or echoed by) the phone.
    Cmd,
    /// `/step`: the iOS step counter (`steps`).
    Step,
    /// `/beacon`: iOS beacon ranging (`beacon`).
    Beacon,
}

impl TopicKind {
    /// Every kind, in suffix order (for tests and exhaustive tables).
    pub const ALL: [TopicKind; 10] = [
        TopicKind::Device,
        TopicKind::Event,
        TopicKind::Waypoint,
        TopicKind::Waypoints,
        TopicKind::Info,
        TopicKind::Status,
        TopicKind::Dump,
        TopicKind::Cmd,
        TopicKind::Step,
        TopicKind::Beacon,
    ];

    /// The topic suffix without its slash; `None` for the device topic itself.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            TopicKind::Device => None,
            TopicKind::Event => Some("event"),
            TopicKind::Waypoint => Some("waypoint"),
            TopicKind::Waypoints => Some("waypoints"),
            TopicKind::Info => Some("info"),
            TopicKind::Status => Some("status"),
            TopicKind::Dump => Some("dump"),
            TopicKind::Cmd => Some("cmd"),
            TopicKind::Step => Some("step"),
            TopicKind::Beacon => Some("beacon"),
        }
    }

    fn from_suffix(suffix: &str) -> Option<TopicKind> {
        TopicKind::ALL
            .into_iter()
            .find(|kind| kind.suffix() == Some(suffix))
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix().unwrap_or("device"))
    }
}

/// Why a topic is not an OwnTracks topic we accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error("topic does not start with `owntracks/`")]
    NotOwnTracks,
    #[error("topic has {levels} levels, expected owntracks/<user>/<device>[/<suffix>]")]
    WrongLevelCount { levels: usize },
    #[error("the {level} level is empty")]
    EmptyLevel { level: &'static str },
    #[error("the {level} level is longer than {MAX_LEVEL_LEN} bytes")]
    LevelTooLong { level: &'static str },
    #[error("the {level} level contains a wildcard (+ or #), a / or a NUL character")]
    InvalidCharacter { level: &'static str },
    #[error("unknown topic suffix {0:?}")]
    UnknownSuffix(String),
}

/// A parsed OwnTracks topic. Construct with [`OwnTracksTopic::parse`] or [`OwnTracksTopic::new`];
/// both check the levels, so every value names a valid topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OwnTracksTopic {
    user: String,
    device: String,
    kind: TopicKind,
}

impl OwnTracksTopic {
    /// Parses `owntracks/<user>/<device>` or `owntracks/<user>/<device>/<suffix>`.
    pub fn parse(topic: &str) -> Result<OwnTracksTopic, TopicError> {
        let levels: Vec<&str> = topic.split('/').collect();
        if levels.first() != Some(&TOPIC_PREFIX) {
            return Err(TopicError::NotOwnTracks);
        }
        let (user, device, suffix) = match levels.as_slice() {
            [_, user, device] => (*user, *device, None),
            [_, user, device, suffix] => (*user, *device, Some(*suffix)),
            _ => {
                return Err(TopicError::WrongLevelCount {
                    levels: levels.len(),
                });
            }
        };
        let kind = match suffix {
            None => TopicKind::Device,
            Some(suffix) => TopicKind::from_suffix(suffix)
                .ok_or_else(|| TopicError::UnknownSuffix(truncated(suffix)))?,
        };
        OwnTracksTopic::new(user, device, kind)
    }

    /// The topic for `user`'s `device` and `kind`, e.g. the `/cmd` topic to publish a command.
    pub fn new(user: &str, device: &str, kind: TopicKind) -> Result<OwnTracksTopic, TopicError> {
        check_level(user, "user")?;
        check_level(device, "device")?;
        Ok(OwnTracksTopic {
            user: user.to_owned(),
            device: device.to_owned(),
            kind,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn kind(&self) -> TopicKind {
        self.kind
    }

    /// The device's base topic `owntracks/<user>/<device>`, which the Recorder and the
    /// OwnTracks apps use as the device's identity (the `topic` field of its locations).
    pub fn device_topic(&self) -> String {
        format!("{TOPIC_PREFIX}/{}/{}", self.user, self.device)
    }

    /// The same device with another kind (e.g. from a location topic to its `/cmd` topic).
    pub fn with_kind(&self, kind: TopicKind) -> OwnTracksTopic {
        OwnTracksTopic {
            kind,
            ..self.clone()
        }
    }
}

impl fmt::Display for OwnTracksTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOPIC_PREFIX}/{}/{}", self.user, self.device)?;
        if let Some(suffix) = self.kind.suffix() {
            write!(f, "/{suffix}")?;
        }
        Ok(())
    }
}

fn check_level(value: &str, level: &'static str) -> Result<(), TopicError> {
    if value.is_empty() {
        return Err(TopicError::EmptyLevel { level });
    }
    if value.len() > MAX_LEVEL_LEN {
        return Err(TopicError::LevelTooLong { level });
    }
    if value.contains(['+', '#', '/', '\0']) {
        return Err(TopicError::InvalidCharacter { level });
    }
    Ok(())
}

/// At most 64 characters of attacker-chosen text, for error messages that end up in logs.
pub(crate) fn truncated(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topic_parses_to_user_device_and_kind() {
        let topic = OwnTracksTopic::parse("owntracks/alice/phone").unwrap();
        assert_eq!(topic.user(), "alice");
        assert_eq!(topic.device(), "phone");
        assert_eq!(topic.kind(), TopicKind::Device);
        assert_eq!(topic.device_topic(), "owntracks/alice/phone");
    }

    #[test]
    fn every_suffix_parses_and_prints_back() {
        for (suffix, kind) in [
            ("event", TopicKind::Event),
            ("waypoint", TopicKind::Waypoint),
            ("waypoints", TopicKind::Waypoints),
            ("info", TopicKind::Info),
            ("status", TopicKind::Status),
            ("dump", TopicKind::Dump),
            ("cmd", TopicKind::Cmd),
            ("step", TopicKind::Step),
            ("beacon", TopicKind::Beacon),
        ] {
            let text = format!("owntracks/bob/tablet/{suffix}");
            let topic = OwnTracksTopic::parse(&text).unwrap();
            assert_eq!(topic.kind(), kind, "{text}");
            assert_eq!(topic.to_string(), text);
            assert_eq!(topic.device_topic(), "owntracks/bob/tablet");
        }
    }

    #[test]
    fn with_kind_builds_the_cmd_topic() {
        let topic = OwnTracksTopic::parse("owntracks/alice/phone").unwrap();
        assert_eq!(
            topic.with_kind(TopicKind::Cmd).to_string(),
            "owntracks/alice/phone/cmd"
        );
    }

    #[test]
    fn malformed_topics_are_rejected_with_their_reason() {
        let cases: [(&str, TopicError); 11] = [
            ("homeassistant/alice/phone", TopicError::NotOwnTracks),
            ("OwnTracks/alice/phone", TopicError::NotOwnTracks),
            ("", TopicError::NotOwnTracks),
            ("owntracks/alice", TopicError::WrongLevelCount { levels: 2 }),
            (
                "owntracks/alice/phone/event/extra",
                TopicError::WrongLevelCount { levels: 5 },
            ),
            ("owntracks//phone", TopicError::EmptyLevel { level: "user" }),
            (
                "owntracks/alice/",
                TopicError::EmptyLevel { level: "device" },
            ),
            (
                "owntracks/+/phone",
                TopicError::InvalidCharacter { level: "user" },
            ),
            (
                "owntracks/alice/#",
                TopicError::InvalidCharacter { level: "device" },
            ),
            (
                "owntracks/alice/phone/events",
                TopicError::UnknownSuffix("events".into()),
            ),
            (
                "owntracks/alice/phone/",
                TopicError::UnknownSuffix(String::new()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(OwnTracksTopic::parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn overlong_levels_are_rejected() {
        let long = "d".repeat(MAX_LEVEL_LEN + 1);
        assert_eq!(
            OwnTracksTopic::parse(&format!("owntracks/alice/{long}")),
            Err(TopicError::LevelTooLong { level: "device" })
        );
        let ok = "d".repeat(MAX_LEVEL_LEN);
        assert!(OwnTracksTopic::parse(&format!("owntracks/alice/{ok}")).is_ok());
    }

    #[test]
    fn new_rejects_a_slash_inside_a_level() {
        assert_eq!(
            OwnTracksTopic::new("alice", "a/b", TopicKind::Device),
            Err(TopicError::InvalidCharacter { level: "device" })
        );
    }

    #[test]
    fn error_messages_name_the_reason() {
        let err = OwnTracksTopic::parse("owntracks/alice/phone/nope").unwrap_err();
        assert_eq!(err.to_string(), "unknown topic suffix \"nope\"");
    }
}
