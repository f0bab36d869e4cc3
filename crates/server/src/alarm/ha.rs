//! The MQTT payloads the alarm publishes for Home Assistant: the `alarm_control_panel` and
//! duress `event` discovery configs, the `json_attributes_topic` body, refusals on the error
//! topic and duress events. Like `owntracks/ha_discovery.rs`, the one place outside `http/`
//! that shapes JSON, because these are MQTT payloads for Home Assistant, not API views.

use std::time::{SystemTime, UNIX_EPOCH};

use porchlight_domain::alarm::topics::Topics;
use porchlight_domain::alarm::{AlarmStatus, Settings, Via};
use porchlight_store::NewAlarmEvent;
use serde_json::{Value, json};

use super::service::AlarmConfig;

/// What Home Assistant renders into the command topic: only `action` and `code` exist for
/// this template (`{{ value }}` would render as `None`).
pub(crate) const COMMAND_TEMPLATE: &str = r#"{"action": "{{ action }}", "code": "{{ code }}"}"#;

pub(crate) fn panel_topic(config: &AlarmConfig) -> String {
    format!(
        "{}/alarm_control_panel/{}/config",
        config.discovery_prefix, config.node_id
    )
}

pub(crate) fn duress_topic(config: &AlarmConfig) -> String {
    format!(
        "{}/event/{}_duress/config",
        config.discovery_prefix, config.node_id
    )
}

fn device(config: &AlarmConfig) -> Value {
    json!({
        "identifiers": [format!("{}_alarm", config.node_id)],
        "name": config.device_name,
        "manufacturer": "Porchlight",
        "model": "Alarm panel",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn availability(topics: &Topics) -> Value {
    json!([{
        "topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
    }])
}

/// The `alarm_control_panel` discovery config: features from the enabled modes, the code
/// rules from the settings, the code checked remotely (by Porchlight); `topics`: those of the
/// broker it is published on.
pub(crate) fn panel_config(config: &AlarmConfig, settings: &Settings, topics: &Topics) -> Value {
    let mut features: Vec<&str> = settings
        .enabled_modes()
        .into_iter()
        .map(|m| m.supported_feature())
        .collect();
    features.push("trigger");
    json!({
        "name": "Alarm",
        "unique_id": format!("{}_alarm", config.node_id),
        // HA 2025.10 deprecated `object_id` for `default_entity_id`; older HA needs it.
        "default_entity_id": format!("alarm_control_panel.{}", config.node_id),
        "object_id": config.node_id,
        "device": device(config),
        "state_topic": topics.state,
        "command_topic": topics.command,
        "command_template": COMMAND_TEMPLATE,
        "json_attributes_topic": topics.attributes,
        "availability": availability(topics),
        "code": "REMOTE_CODE",
        "code_arm_required": settings.code_arm_required,
        "code_disarm_required": settings.code_disarm_required,
        "code_trigger_required": false,
        "supported_features": features,
        "qos": topics.ha_qos,
    })
}

/// The duress `event` entity's discovery config: an automation can call for help on it.
pub(crate) fn duress_config(config: &AlarmConfig, topics: &Topics) -> Value {
    json!({
        "name": "Alarm duress",
        "unique_id": format!("{}_alarm_duress", config.node_id),
        "default_entity_id": format!("event.{}_alarm_duress", config.node_id),
        "object_id": format!("{}_alarm_duress", config.node_id),
        "device": device(config),
        "state_topic": topics.duress,
        "event_types": ["duress"],
        "availability": availability(topics),
        "qos": topics.ha_qos,
    })
}

pub(crate) fn via_str(via: Via) -> &'static str {
    match via {
        Via::Keypad => "keypad",
        Via::HomeAssistant => "home_assistant",
        Via::Api => "api",
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Home Assistant's `json_attributes_topic` body: what a keypad user wants beside the state.
/// Sensors by name (ids for those no longer configured).
pub(crate) fn attributes(
    status: &AlarmStatus,
    name_of: impl Fn(&str) -> String,
    last_event: Option<&NewAlarmEvent>,
) -> Value {
    let names = |ids: &[porchlight_domain::alarm::SensorId]| -> Vec<String> {
        ids.iter().map(|id| name_of(&id.0)).collect()
    };
    json!({
        "ready_to_arm": status.ready_to_arm,
        "ready_to_arm_modes": status.ready_to_arm_modes.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "open_sensors": names(&status.open_sensors),
        "bypassed_sensors": names(&status.bypassed_sensors),
        "arm_mode": status.arm_mode.map(|m| m.as_str()),
        "next_state": status.next_state.map(|s| s.as_str()),
        "delay_remaining_secs": status.delay_remaining_secs,
        "delay_ends_at": status.deadline.map(unix_secs),
        "changed_by": status.changed_by,
        "tripped_by": status.tripped_by.as_ref().map(|id| name_of(&id.0)),
        "last_event": last_event.map(|e| json!({
            "kind": e.kind.as_str(),
            "at": unix_secs(e.at),
            "who": e.who,
            "via": e.via,
            "from": e.from_state,
            "to": e.to_state,
            "sensor": e.sensor,
            "detail": e.detail,
        })),
    })
}

/// A refused command on the error topic. Never contains a code.
pub(crate) fn error(
    action: Option<&str>,
    reason: &str,
    message: &str,
    retry_after_secs: Option<u64>,
    state: &str,
) -> Value {
    json!({
        "action": action,
        "reason": reason,
        "message": message,
        "retry_after_secs": retry_after_secs,
        "state": state,
    })
}

/// A duress code use, for the duress topic and the HA `event` entity (`event_type`).
pub(crate) fn duress(by: Option<&str>, via: Via, at: SystemTime) -> Value {
    json!({
        "event_type": "duress",
        "by": by,
        "via": via_str(via),
        "at": unix_secs(at),
    })
}

#[cfg(test)]
mod tests {
    use porchlight_domain::alarm::ArmMode;

    use super::*;

    #[test]
    fn the_panel_offers_the_enabled_modes_and_the_code_rules() {
        let config = AlarmConfig::default();
        let mut settings = Settings::default();
        settings.vacation.enabled = true;
        settings.night.enabled = false;
        settings.code_arm_required = false;
        let panel = panel_config(&config, &settings, &Topics::embedded());
        assert_eq!(
            panel["supported_features"],
            json!(["arm_home", "arm_away", "arm_vacation", "trigger"])
        );
        assert_eq!(panel["code_arm_required"], false);
        assert_eq!(panel["code_disarm_required"], true);
        assert_eq!(panel["command_template"], COMMAND_TEMPLATE);
        assert_eq!(
            panel_topic(&config),
            "homeassistant/alarm_control_panel/porchlight/config"
        );
        for mode in ArmMode::ALL {
            settings.mode_mut(mode).enabled = false;
        }
        assert_eq!(
            panel_config(&config, &settings, &Topics::embedded())["supported_features"],
            json!(["trigger"])
        );
    }

    #[test]
    fn on_an_external_broker_the_entity_points_at_the_nodes_topics_and_the_links_status() {
        let config = AlarmConfig {
            node_id: "cabin".into(),
            ..AlarmConfig::default()
        };
        let panel = panel_config(&config, &Settings::default(), &Topics::external("cabin"));
        assert_eq!(panel["state_topic"], "porchlight/cabin/alarm/state");
        assert_eq!(panel["command_topic"], "porchlight/cabin/alarm/set");
        assert_eq!(panel["availability"][0]["topic"], "porchlight/cabin/status");
        assert_eq!(panel["unique_id"], "cabin_alarm");
        // No PUBACK to Home Assistant there, whose TCP_NODELAY-less broker would hold the
        // new state behind it.
        assert_eq!(panel["qos"], 0);
        let embedded = panel_config(&config, &Settings::default(), &Topics::embedded());
        assert_eq!(embedded["qos"], 1);
        let duress = duress_config(&config, &Topics::external("cabin"));
        assert_eq!(duress["state_topic"], "porchlight/cabin/alarm/duress");
        assert_eq!(
            duress["availability"][0]["topic"],
            "porchlight/cabin/status"
        );
    }
}
