//! Who may publish to and subscribe on which MQTT topics.
//!
//! Pure functions, no I/O. The broker asks [`may_publish`] for every client publish (and for
//! the last-will topic at CONNECT) and [`may_subscribe`] for every subscription filter.
//!
//! Rules:
//! - [`Role::Admin`]: any valid topic or filter, including `$`-topics (`$SYS/...`).
//! - [`Role::User`] `alice`: only `owntracks/alice` and below (`owntracks/alice/#`); the first
//!   two levels of a filter must be these literal levels, wildcards only after them.
//! - [`Role::HomeAssistant`]: only under `homeassistant/` and `porchlight/` (first level literal).
//! - Topics and filters starting with `$` only for admins.
//! - Empty topics, topics with wildcards or NUL, and filters with malformed wildcards are
//!   refused for everybody.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an authenticated broker client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May do anything.
    Admin,
    /// A person with OwnTracks devices: `owntracks/<username>/#` only.
    User,
    /// The Home Assistant integration: `homeassistant/#` and `porchlight/#`.
    #[serde(rename = "homeassistant")]
    HomeAssistant,
}

impl Role {
    /// The stable text form, as stored in the database (`admin`, `user`, `homeassistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::HomeAssistant => "homeassistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a known role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown role {:?}", self.0)
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "homeassistant" | "home_assistant" => Ok(Role::HomeAssistant),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// How a broker connection proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// The account password: a password change ends such sessions.
    Password,
    /// One of the user's device keys (`pld_…`): removing the device ends such sessions; a
    /// password change does not.
    DeviceKey,
    /// A client certificate verified against the configured CA (its CN names the user).
    Certificate,
}

/// Who a broker connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// Set when the connection authenticated with a device credential.
    pub device_id: Option<i64>,
    /// How the connection logged in.
    pub login: LoginMethod,
}

/// Top-level topic prefixes the Home Assistant role may use.
const HOME_ASSISTANT_ROOTS: [&str; 2] = ["homeassistant", "porchlight"];

/// A topic name (not a filter) is well formed: non-empty, no wildcards, no NUL.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A topic filter is well formed: non-empty, no NUL, `#` only as the whole last level,
/// `+` only as a whole level.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// Does `topic` match the (valid) topic `filter`, MQTT style? `+` matches one level, a
/// trailing `#` the parent level and everything below it; topics starting with `$` are not
/// matched by a filter starting with a wildcard.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A username can only own a topic subtree if it is a single literal topic level.
fn is_literal_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

/// May `id` publish a message (or set a last will) on `topic`?
pub fn may_publish(id: &Identity, topic: &str) -> bool {
    if !is_valid_topic(topic) {
        return false;
    }
    allowed_by_role(id, topic)
}

/// May `id` subscribe to `filter`?
pub fn may_subscribe(id: &Identity, filter: &str) -> bool {
    if !is_valid_filter(filter) {
        return false;
    }
    allowed_by_role(id, filter)
}

/// The role check shared by topics and (already validated) filters: the leading levels that
/// decide ownership must be literal, so a wildcard there never matches.
fn allowed_by_role(id: &Identity, topic_or_filter: &str) -> bool {
    if id.role == Role::Admin {
        return true;
    }
    if topic_or_filter.starts_with('$') {
        return false;
    }
    let mut levels = topic_or_filter.split('/');
    let first = levels.next().unwrap_or_default();
    match id.role {
        Role::Admin => true,
        Role::User => {
            is_literal_level(&id.username)
                && first == "owntracks"
                && levels.next() == Some(id.username.as_str())
        }
        Role::HomeAssistant => HOME_ASSISTANT_ROOTS.contains(&first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(username: &str, role: Role) -> Identity {
        Identity {
            user_id: 1,
            username: username.into(),
            role,
            device_id: None,
            login: LoginMethod::Password,
        }
    }

    #[test]
    fn role_text_round_trip() {
        for role in [Role::Admin, Role::User, Role::HomeAssistant] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn role_serde_matches_the_stored_text() -> Result<(), serde_json::Error> {
        assert_eq!(
            serde_json::to_string(&Role::HomeAssistant)?,
            "\"homeassistant\""
        );
        assert_eq!(serde_json::from_str::<Role>("\"admin\"")?, Role::Admin);
        Ok(())
    }

    #[test]
    fn user_publish() {
        let alice = ident("alice", Role::User);
        assert!(may_publish(&alice, "owntracks/alice/phone"));
        assert!(may_publish(&alice, "owntracks/alice"));
        assert!(may_publish(&alice, "owntracks/alice/phone/event"));
        assert!(!may_publish(&alice, "owntracks/bob/phone"));
        assert!(!may_publish(&alice, "owntracks/alicex/phone"));
        assert!(!may_publish(&alice, "owntracks/ali"));
        assert!(!may_publish(&alice, "owntracks"));
        assert!(!may_publish(&alice, "homeassistant/status"));
        assert!(!may_publish(&alice, "$SYS/x"));
        assert!(!may_publish(&alice, ""));
        assert!(!may_publish(&alice, "owntracks/alice/+"));
        assert!(!may_publish(&alice, "owntracks/alice/#"));
        assert!(!may_publish(&alice, "/owntracks/alice"));
    }

    #[test]
    fn user_subscribe() {
        let alice = ident("alice", Role::User);
        assert!(may_subscribe(&alice, "owntracks/alice/#"));
        assert!(may_subscribe(&alice, "owntracks/alice"));
        assert!(may_subscribe(&alice, "owntracks/alice/+"));
        assert!(may_subscribe(&alice, "owntracks/alice/+/event"));
        assert!(!may_subscribe(&alice, "owntracks/bob/#"));
        assert!(!may_subscribe(&alice, "owntracks/+/x"));
        assert!(!may_subscribe(&alice, "owntracks/+"));
        assert!(!may_subscribe(&alice, "owntracks/#"));
        assert!(!may_subscribe(&alice, "#"));
        assert!(!may_subscribe(&alice, "+/alice/#"));
        assert!(!may_subscribe(&alice, "+"));
        assert!(!may_subscribe(&alice, "$SYS/#"));
        assert!(!may_subscribe(&alice, "$share/g/owntracks/alice/#"));
        assert!(!may_subscribe(&alice, ""));
    }

    #[test]
    fn malformed_filters_refused_even_for_admin() {
        let admin = ident("root", Role::Admin);
        for bad in ["", "a/#/b", "a#", "a/b#", "a/+b", "+a/b", "##", "a\0b"] {
            assert!(!is_valid_filter(bad), "{bad:?}");
            assert!(!may_subscribe(&admin, bad), "{bad:?}");
        }
        for good in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#"] {
            assert!(is_valid_filter(good), "{good:?}");
            assert!(may_subscribe(&admin, good), "{good:?}");
        }
    }

    #[test]
    fn wildcard_username_owns_nothing() {
        for name in ["+", "#", "a/b", ""] {
            let weird = ident(name, Role::User);
            let topic = format!("owntracks/{name}/phone");
            assert!(!may_publish(&weird, &topic), "{name:?}");
            assert!(!may_subscribe(&weird, "owntracks/+/#"), "{name:?}");
            assert!(!may_subscribe(&weird, "owntracks/#"), "{name:?}");
        }
    }

    #[test]
    fn home_assistant() {
        let ha = ident("ha", Role::HomeAssistant);
        assert!(may_publish(&ha, "homeassistant/status"));
        assert!(may_publish(&ha, "porchlight/alarm/set"));
        assert!(may_subscribe(&ha, "homeassistant/#"));
        assert!(may_subscribe(&ha, "homeassistant/+/+/config"));
        assert!(may_subscribe(&ha, "porchlight/#"));
        assert!(!may_subscribe(&ha, "#"));
        assert!(!may_subscribe(&ha, "+/status"));
        assert!(!may_subscribe(&ha, "owntracks/#"));
        assert!(!may_publish(&ha, "owntracks/ha/x"));
        assert!(!may_publish(&ha, "homeassistantx/status"));
        assert!(!may_publish(&ha, "$SYS/broker"));
    }

    #[test]
    fn filter_matching() {
        assert!(filter_matches("#", "a/b"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("a/+", "a/b"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(!filter_matches("a/+", "a"));
        assert!(filter_matches("owntracks/+/+", "owntracks/alice/phone"));
        assert!(!filter_matches("owntracks/alice", "owntracks/alice/phone"));
        assert!(filter_matches("a//b", "a//b"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("+/x", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
    }

    #[test]
    fn admin_anything_valid() {
        let admin = ident("root", Role::Admin);
        assert!(may_publish(&admin, "anything/at/all"));
        assert!(may_publish(&admin, "$SYS/broker/uptime"));
        assert!(may_subscribe(&admin, "#"));
        assert!(may_subscribe(&admin, "$SYS/#"));
        assert!(!may_publish(&admin, ""));
        assert!(!may_publish(&admin, "a/+"));
    }
}
