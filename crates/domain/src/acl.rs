//! Who may publish to and subscribe on which MQTT topics.
//!
//! Pure functions, no I/O. The broker asks [`may_publish`] for every client publish (and for
//! the last-will topic at CONNECT), [`may_subscribe`] for every subscription filter, and
//! [`may_receive`] for every message about to be delivered to a subscriber (a filter with a
//! wildcard user level matches other users' topics; this is where they are held back).
//!
//! Rules:
//! - [`Role::Admin`]: any valid topic or filter, including `$`-topics (`$SYS/...`).
//! - [`Role::User`] `alice`: publishes only to `owntracks/alice` and below. Receives all of
//!   `owntracks/alice/#`, plus the location/lwt (`owntracks/bob/<device>`), card (`…/info`)
//!   and transition (`…/event`) topics of every user who granted her friendship
//!   ([`Friendships`]); never anything else of theirs (commands, waypoints, dumps). She may
//!   subscribe to filters whose first level is the literal `owntracks` and whose second is her
//!   own name, a friend's name, or a wildcard (`owntracks/#`, `owntracks/+/+`: what the
//!   OwnTracks apps subscribe to); what such a filter delivers is decided per message by
//!   [`may_receive`], so a revoked friendship stops delivery on existing subscriptions.
//! - [`Role::HomeAssistant`]: reads and writes `homeassistant/#` (discovery, its birth
//!   message); reads `porchlight/#`; publishes under `porchlight/` only on the alarm's command
//!   topic ([`crate::alarm::topics::COMMAND`]), so it cannot overwrite the retained state,
//!   availability and discovery Porchlight publishes there.
//! - Topics and filters starting with `$` only for admins.
//! - Empty topics, topics with wildcards or NUL, and filters with malformed wildcards are
//!   refused for everybody.

use std::collections::{HashMap, HashSet};
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
    /// The Home Assistant integration: `homeassistant/#`, reading `porchlight/#`, and the
    /// alarm's command topic.
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
    /// A client certificate: on the `[mqtt.tls]` listener one verified against the
    /// operator's CA (its CN names the user); on the certificate listener one issued by our CA
    /// and found unrevoked in the store (its serial is [`Identity::certificate`]).
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
    /// The serial of the client certificate from our CA it logged in with (revoking that
    /// certificate ends the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// One user granting another the sight of their OwnTracks devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The user whose devices are shown.
    pub owner_id: i64,
    /// The owner's name (the user level of their topics).
    pub owner: String,
    /// The user who may see them.
    pub viewer_id: i64,
}

/// Every friendship at one moment: who granted whom the sight of their devices. Built once per
/// change and shared read-only (by id for the HTTP side, by owner name for MQTT topics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Friendships {
    /// Per viewer: the owners who granted them, by id and by name.
    by_viewer: HashMap<i64, (HashSet<i64>, HashSet<String>)>,
}

impl Friendships {
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Self {
        let mut by_viewer: HashMap<i64, (HashSet<i64>, HashSet<String>)> = HashMap::new();
        for g in grants {
            let (ids, names) = by_viewer.entry(g.viewer_id).or_default();
            ids.insert(g.owner_id);
            names.insert(g.owner);
        }
        Friendships { by_viewer }
    }

    /// Has the user `owner_id` granted `viewer_id` the sight of their devices?
    pub fn grants(&self, owner_id: i64, viewer_id: i64) -> bool {
        self.by_viewer
            .get(&viewer_id)
            .is_some_and(|(ids, _)| ids.contains(&owner_id))
    }

    /// Has the user named `owner` granted `viewer_id` the sight of their devices?
    pub fn grants_by_name(&self, owner: &str, viewer_id: i64) -> bool {
        self.by_viewer
            .get(&viewer_id)
            .is_some_and(|(_, names)| names.contains(owner))
    }

    /// The grants here that `earlier` did not have, as `(owner name, viewer id)`, sorted.
    pub fn added_since(&self, earlier: &Friendships) -> Vec<(String, i64)> {
        let mut added: Vec<(String, i64)> = self
            .by_viewer
            .iter()
            .flat_map(|(viewer, (_, names))| {
                names
                    .iter()
                    .filter(|owner| !earlier.grants_by_name(owner, *viewer))
                    .map(|owner| (owner.clone(), *viewer))
            })
            .collect();
        added.sort();
        added
    }

    /// The users who granted `viewer_id` the sight of their devices (any order).
    pub fn owners_for(&self, viewer_id: i64) -> Vec<i64> {
        self.by_viewer
            .get(&viewer_id)
            .map(|(ids, _)| ids.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Top-level topic prefixes the Home Assistant role may subscribe to and receive from.
const HOME_ASSISTANT_ROOTS: [&str; 2] = ["homeassistant", "porchlight"];

/// Topics under `porchlight/` the Home Assistant role may publish to.
const HOME_ASSISTANT_COMMANDS: [&str; 1] = [crate::alarm::topics::COMMAND];

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
    // `$share/…` names a shared subscription group (MQTT 5 §4.8.2), not a topic: nobody
    // publishes there, admins included.
    if !is_valid_topic(topic) || topic.starts_with("$share/") {
        return false;
    }
    if id.role == Role::HomeAssistant {
        return topic.split('/').next() == Some("homeassistant")
            || HOME_ASSISTANT_COMMANDS.contains(&topic);
    }
    allowed_by_role(id, topic)
}

/// May `id` subscribe to `filter`? A user's filter may name a friend (someone in `friends`
/// who granted them) or have a wildcard as its user level; [`may_receive`] then decides per
/// message.
pub fn may_subscribe(id: &Identity, filter: &str, friends: &Friendships) -> bool {
    if !is_valid_filter(filter) {
        return false;
    }
    if id.role == Role::User && is_literal_level(&id.username) {
        let mut levels = filter.split('/');
        if levels.next() == Some("owntracks") {
            match levels.next() {
                Some("+" | "#") => return true,
                Some(owner) if owner != id.username => {
                    return friends.grants_by_name(owner, id.user_id);
                }
                _ => {}
            }
        }
    }
    allowed_by_role(id, filter)
}

/// May a message on `topic` be delivered to `id`, whose subscription matched it? Users get
/// their own `owntracks/<name>/…` and, from friends who granted them, the topics a friend's
/// location view needs: `owntracks/<friend>/<device>` (location, lwt), `…/info` (card) and
/// `…/event` (transition). Admins get everything; the Home Assistant role what its
/// subscriptions may match.
pub fn may_receive(id: &Identity, topic: &str, friends: &Friendships) -> bool {
    match id.role {
        Role::Admin => true,
        Role::HomeAssistant => allowed_by_role(id, topic),
        Role::User => {
            if allowed_by_role(id, topic) {
                return true;
            }
            let mut levels = topic.split('/');
            let (Some("owntracks"), Some(owner), Some(device)) =
                (levels.next(), levels.next(), levels.next())
            else {
                return false;
            };
            // The location view: the device topic itself, its card and its transitions.
            let shared = matches!(
                (levels.next(), levels.next()),
                (None, _) | (Some("info" | "event"), None)
            );
            shared
                && !device.is_empty()
                && is_literal_level(owner)
                && friends.grants_by_name(owner, id.user_id)
        }
    }
}

/// The part of [`may_receive`] that needs no friendships: `true` when `id`'s role alone lets
/// it receive `topic` (an admin anything, a user their own OwnTracks topics, Home Assistant
/// its roots). `false` leaves the answer to [`may_receive`]. For the per-delivery check, so
/// that the common case does not read the friendships at all.
pub fn may_receive_by_role(id: &Identity, topic: &str) -> bool {
    allowed_by_role(id, topic)
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
            certificate: None,
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
        let admin = Identity {
            role: Role::Admin,
            ..alice.clone()
        };
        assert!(may_publish(&admin, "client_test5/x"));
        assert!(!may_publish(&admin, "$share/g1/client_test5/x"));
        assert!(!may_publish(&alice, ""));
        assert!(!may_publish(&alice, "owntracks/alice/+"));
        assert!(!may_publish(&alice, "owntracks/alice/#"));
        assert!(!may_publish(&alice, "/owntracks/alice"));
    }

    fn none() -> Friendships {
        Friendships::default()
    }

    /// bob (id 2) granted alice (id 1).
    fn bob_grants_alice() -> Friendships {
        Friendships::new([Grant {
            owner_id: 2,
            owner: "bob".into(),
            viewer_id: 1,
        }])
    }

    #[test]
    fn user_subscribe() {
        let alice = ident("alice", Role::User);
        let may_subscribe = |filter| may_subscribe(&alice, filter, &none());
        assert!(may_subscribe("owntracks/alice/#"));
        assert!(may_subscribe("owntracks/alice"));
        assert!(may_subscribe("owntracks/alice/+"));
        assert!(may_subscribe("owntracks/alice/+/event"));
        assert!(!may_subscribe("owntracks/bob/#"));
        assert!(!may_subscribe("#"));
        assert!(!may_subscribe("+/alice/#"));
        assert!(!may_subscribe("+"));
        assert!(!may_subscribe("$SYS/#"));
        assert!(!may_subscribe("$share/g/owntracks/alice/#"));
        assert!(!may_subscribe(""));
        assert!(!may_subscribe("owntracksx/#"));
        // Wildcard user levels are accepted: may_receive filters what they match.
        assert!(may_subscribe("owntracks/+/x"));
        assert!(may_subscribe("owntracks/+"));
        assert!(may_subscribe("owntracks/#"));
        assert!(may_subscribe("owntracks/+/+"));
    }

    /// The broker asks `may_receive_by_role` first and reads the friendships only when it says
    /// no: it must never let through what `may_receive` refuses, with or without friends.
    #[test]
    fn the_role_shortcut_never_opens_what_may_receive_refuses() {
        let topics = [
            "owntracks/alice/phone",
            "owntracks/bob/phone",
            "owntracks/bob/phone/info",
            "owntracks/bob/phone/cmd",
            "owntracks/carol/phone",
            "homeassistant/status",
            "porchlight/alarm/state",
            "$SYS/broker/uptime",
            "bench/alice/x",
        ];
        for role in [Role::Admin, Role::User, Role::HomeAssistant] {
            let id = ident("alice", role);
            for topic in topics {
                for friends in [none(), bob_grants_alice()] {
                    if may_receive_by_role(&id, topic) {
                        assert!(
                            may_receive(&id, topic, &friends),
                            "{role:?} {topic}: the shortcut opened a refused topic"
                        );
                    }
                }
            }
        }
        // It does answer the common cases by itself.
        assert!(may_receive_by_role(
            &ident("alice", Role::User),
            "owntracks/alice/phone"
        ));
        assert!(may_receive_by_role(
            &ident("root", Role::Admin),
            "bench/x/y"
        ));
        // A friend's topic needs the friendships.
        assert!(!may_receive_by_role(
            &ident("alice", Role::User),
            "owntracks/bob/phone"
        ));
    }

    #[test]
    fn a_friend_may_subscribe_by_name_and_receives_only_the_location_view() {
        let alice = ident("alice", Role::User);
        let friends = bob_grants_alice();
        assert!(may_subscribe(&alice, "owntracks/bob/#", &friends));
        assert!(!may_subscribe(&alice, "owntracks/carol/#", &friends));
        for topic in [
            "owntracks/bob/phone",
            "owntracks/bob/phone/info",
            "owntracks/bob/phone/event",
        ] {
            assert!(may_receive(&alice, topic, &friends), "{topic}");
            assert!(!may_receive(&alice, topic, &none()), "{topic}");
        }
        for topic in [
            "owntracks/bob/phone/cmd",
            "owntracks/bob/phone/waypoints",
            "owntracks/bob/phone/dump",
            "owntracks/bob/phone/info/x",
            "owntracks/bob",
            "owntracks/bob/",
            "owntracks/carol/phone",
            "homeassistant/x",
        ] {
            assert!(!may_receive(&alice, topic, &friends), "{topic}");
        }
        // Her own topics, all of them; friendship is one-way.
        assert!(may_receive(&alice, "owntracks/alice/phone/cmd", &none()));
        let bob = Identity {
            user_id: 2,
            ..ident("bob", Role::User)
        };
        assert!(!may_receive(&bob, "owntracks/alice/phone", &friends));
        // Publishing stays own-only.
        assert!(!may_publish(&alice, "owntracks/bob/phone"));
    }

    #[test]
    fn friendships_answer_by_id_and_by_name() {
        let friends = bob_grants_alice();
        assert!(friends.grants(2, 1) && friends.grants_by_name("bob", 1));
        assert!(!friends.grants(1, 2) && !friends.grants_by_name("alice", 2));
        assert_eq!(friends.owners_for(1), vec![2]);
        assert!(friends.owners_for(2).is_empty());
        let more = Friendships::new([
            Grant {
                owner_id: 2,
                owner: "bob".into(),
                viewer_id: 1,
            },
            Grant {
                owner_id: 3,
                owner: "carol".into(),
                viewer_id: 1,
            },
        ]);
        assert_eq!(more.added_since(&friends), vec![("carol".into(), 1)]);
        assert!(
            friends.added_since(&more).is_empty(),
            "a revoke adds nothing"
        );
    }

    #[test]
    fn admins_receive_everything_and_home_assistant_its_own_roots() {
        let admin = ident("root", Role::Admin);
        assert!(may_receive(&admin, "owntracks/bob/phone/cmd", &none()));
        let ha = ident("ha", Role::HomeAssistant);
        assert!(may_receive(&ha, "homeassistant/status", &none()));
        assert!(!may_receive(&ha, "owntracks/bob/phone", &none()));
    }

    #[test]
    fn malformed_filters_refused_even_for_admin() {
        let admin = ident("root", Role::Admin);
        for bad in ["", "a/#/b", "a#", "a/b#", "a/+b", "+a/b", "##", "a\0b"] {
            assert!(!is_valid_filter(bad), "{bad:?}");
            assert!(!may_subscribe(&admin, bad, &none()), "{bad:?}");
        }
        for good in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#"] {
            assert!(is_valid_filter(good), "{good:?}");
            assert!(may_subscribe(&admin, good, &none()), "{good:?}");
        }
    }

    #[test]
    fn wildcard_username_owns_nothing() {
        for name in ["+", "#", "a/b", ""] {
            let weird = ident(name, Role::User);
            let topic = format!("owntracks/{name}/phone");
            assert!(!may_publish(&weird, &topic), "{name:?}");
            assert!(!may_subscribe(&weird, "owntracks/+/#", &none()), "{name:?}");
            assert!(!may_subscribe(&weird, "owntracks/#", &none()), "{name:?}");
        }
    }

    #[test]
    fn home_assistant() {
        let ha = ident("ha", Role::HomeAssistant);
        assert!(may_publish(&ha, "homeassistant/status"));
        assert!(may_publish(&ha, "porchlight/alarm/set"));
        assert!(may_publish(
            &ha,
            "homeassistant/alarm_control_panel/x/config"
        ));
        // What Porchlight publishes there (retained) is not Home Assistant's to overwrite.
        for topic in [
            "porchlight/alarm/state",
            "porchlight/alarm/availability",
            "porchlight/alarm/attributes",
            "porchlight/alarm/error",
            "porchlight/alarm/duress",
            "porchlight/alarm/set/x",
            "porchlight/owntracks/alice/phone/attributes",
            "porchlight",
        ] {
            assert!(!may_publish(&ha, topic), "{topic}");
        }
        assert!(may_receive(&ha, "porchlight/alarm/state", &none()));
        assert!(may_subscribe(&ha, "homeassistant/#", &none()));
        assert!(may_subscribe(&ha, "homeassistant/+/+/config", &none()));
        assert!(may_subscribe(&ha, "porchlight/#", &none()));
        assert!(!may_subscribe(&ha, "#", &none()));
        assert!(!may_subscribe(&ha, "+/status", &none()));
        assert!(!may_subscribe(&ha, "owntracks/#", &none()));
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
        assert!(may_subscribe(&admin, "#", &none()));
        assert!(may_subscribe(&admin, "$SYS/#", &none()));
        assert!(!may_publish(&admin, ""));
        assert!(!may_publish(&admin, "a/+"));
    }
}
