//! The alarm's MQTT topics (ADR 0014). Fixed names, because the broker's ACL grants Home
//! Assistant exactly the command topic ([`crate::acl`]) and Home Assistant finds the others
//! through the discovery config.

/// Where commands arrive (`{"action": …, "code": …}` or a plain action). The only topic
/// under `porchlight/` the `homeassistant` role may publish to.
pub const COMMAND: &str = "porchlight/alarm/set";
/// The state, as Home Assistant's strings (retained).
pub const STATE: &str = "porchlight/alarm/state";
/// Refused commands, as JSON (not retained), beside the command topic.
pub const ERROR: &str = "porchlight/alarm/error";
/// Duress code uses, as JSON with `event_type: "duress"` (not retained; also Home
/// Assistant's `event` entity).
pub const DURESS: &str = "porchlight/alarm/duress";
/// `online` / `offline` (retained).
pub const AVAILABILITY: &str = "porchlight/alarm/availability";
/// Home Assistant's `json_attributes_topic` (retained).
pub const ATTRIBUTES: &str = "porchlight/alarm/attributes";
/// Where Home Assistant publishes its birth (`online`) and will (`offline`) messages.
pub const HA_STATUS: &str = "homeassistant/status";

/// The alarm's topics on one broker. On the embedded broker they are the fixed names above
/// ([`Topics::embedded`]). On an external broker, where other Porchlight installs may publish
/// too, they are under the install's node id ([`Topics::external`]), and availability is the
/// MQTT link's own status topic, whose will is `offline`: Home Assistant sees the panel
/// unavailable the moment the process is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub command: String,
    pub state: String,
    pub error: String,
    pub duress: String,
    pub availability: String,
    pub attributes: String,
    /// The QoS Home Assistant is told (in discovery) to publish commands and subscribe with.
    /// 1 on the embedded broker (a command's PUBACK follows its persisted step). 0 on an
    /// external broker: there a QoS 1 command makes the broker write a PUBACK to Home
    /// Assistant right before the new state, and a broker without TCP_NODELAY (Mosquitto's
    /// default) then holds the state until Home Assistant's delayed ACK, ~40 ms (ADR 0015).
    pub ha_qos: u8,
}

impl Topics {
    /// The embedded broker's fixed topics.
    pub fn embedded() -> Topics {
        Topics {
            command: COMMAND.to_owned(),
            state: STATE.to_owned(),
            error: ERROR.to_owned(),
            duress: DURESS.to_owned(),
            availability: AVAILABILITY.to_owned(),
            attributes: ATTRIBUTES.to_owned(),
            ha_qos: 1,
        }
    }

    /// An external broker's topics for the install `node`: `porchlight/<node>/alarm/…`, and
    /// availability on [`link_status`].
    pub fn external(node: &str) -> Topics {
        let under = |leaf: &str| format!("porchlight/{node}/alarm/{leaf}");
        Topics {
            command: under("set"),
            state: under("state"),
            error: under("error"),
            duress: under("duress"),
            availability: link_status(node),
            attributes: under("attributes"),
            ha_qos: 0,
        }
    }
}

/// The MQTT link's availability topic on an external broker (retained `online`, `offline` as
/// its will and at shutdown).
pub fn link_status(node: &str) -> String {
    format!("porchlight/{node}/status")
}

/// Whether `node` may name an install in topics and Home Assistant ids: 1–32 of `a-z`, `0-9`,
/// `_`, `-` (Home Assistant's discovery node ids allow these).
pub fn is_valid_node_id(node: &str) -> bool {
    (1..=32).contains(&node.len())
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_topics_are_under_the_node_and_never_the_embedded_ones() {
        let a = Topics::external("home");
        let b = Topics::external("cabin");
        assert_eq!(a.state, "porchlight/home/alarm/state");
        assert_eq!(a.availability, "porchlight/home/status");
        let embedded = Topics::embedded();
        for (x, y, e) in [
            (&a.command, &b.command, &embedded.command),
            (&a.state, &b.state, &embedded.state),
            (&a.error, &b.error, &embedded.error),
            (&a.duress, &b.duress, &embedded.duress),
            (&a.availability, &b.availability, &embedded.availability),
            (&a.attributes, &b.attributes, &embedded.attributes),
        ] {
            assert_ne!(x, y);
            assert_ne!(x, e);
        }
    }

    #[test]
    fn node_ids_are_topic_and_entity_id_safe() {
        for good in ["porchlight", "home-2", "a", "cabin_porch"] {
            assert!(is_valid_node_id(good), "{good}");
        }
        for bad in ["", "Home", "a/b", "a+", "a#", "a b", "é", &"x".repeat(33)] {
            assert!(!is_valid_node_id(bad), "{bad}");
        }
    }
}
