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
