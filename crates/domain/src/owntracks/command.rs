//! Commands to phones: the `_type: cmd` payloads published QoS 1 to
//! `owntracks/<user>/<device>/cmd` (MQTT) or queued into the next `/pub` response (HTTP).
//! The apps act on them only when remote commands are enabled (booklet, "Remote
//! configuration"). Building them is pure; queueing and delivery belong to the services.

use serde_json::{Map, Value, json};

use super::message::Waypoint;

/// A command the phone carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneCommand {
    /// Publish a location now.
    ReportLocation,
    /// Publish the configuration (`_type: configuration` on `/dump`).
    Dump,
    /// Publish the app status (`/status`).
    Status,
    /// Delete every region on the phone.
    ClearWaypoints,
    /// Create or update regions (the apps key them by `tst`).
    SetWaypoints(Vec<Waypoint>),
    /// Merge these settings into the phone's configuration (`_type` is added).
    SetConfiguration(Map<String, Value>),
}

impl PhoneCommand {
    /// The `action` text.
    pub fn action(&self) -> &'static str {
        match self {
            PhoneCommand::ReportLocation => "reportLocation",
            PhoneCommand::Dump => "dump",
            PhoneCommand::Status => "status",
            PhoneCommand::ClearWaypoints => "clearWaypoints",
            PhoneCommand::SetWaypoints(_) => "setWaypoints",
            PhoneCommand::SetConfiguration(_) => "setConfiguration",
        }
    }

    /// The command as JSON.
    pub fn to_json(&self) -> Value {
        let mut cmd = Map::new();
        cmd.insert("_type".into(), "cmd".into());
        cmd.insert("action".into(), self.action().into());
        match self {
            PhoneCommand::SetWaypoints(waypoints) => {
                let list: Vec<Value> = waypoints.iter().map(Waypoint::to_json).collect();
                cmd.insert(
                    "waypoints".into(),
                    json!({ "_type": "waypoints", "waypoints": list }),
                );
            }
            PhoneCommand::SetConfiguration(settings) => {
                let mut configuration = settings.clone();
                configuration.insert("_type".into(), "configuration".into());
                cmd.insert("configuration".into(), Value::Object(configuration));
            }
            PhoneCommand::ReportLocation
            | PhoneCommand::Dump
            | PhoneCommand::Status
            | PhoneCommand::ClearWaypoints => {}
        }
        Value::Object(cmd)
    }

    /// The payload text to publish (encrypt it with `crypto::encrypted_payload` for a phone
    /// that has payload encryption on).
    pub fn to_payload(&self) -> String {
        self.to_json().to_string()
    }
}

impl Waypoint {
    /// The region as a `_type: waypoint` object, as the apps publish and accept it.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("_type".into(), "waypoint".into());
        map.insert("desc".into(), self.desc.clone().into());
        map.insert("lat".into(), self.lat.into());
        map.insert("lon".into(), self.lon.into());
        if let Some(rad) = self.rad {
            map.insert("rad".into(), rad.into());
        }
        map.insert("tst".into(), self.tst.into());
        if let Some(rid) = &self.rid {
            map.insert("rid".into(), rid.clone().into());
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Body, Parsed, TopicKind, parse_payload};
    use super::*;

    fn work() -> Waypoint {
        Waypoint {
            desc: "Work".into(),
            lat: 52.3105,
            lon: 4.7683,
            rad: Some(150.0),
            tst: 1_763_990_100,
            rid: Some("d4e5f6".into()),
        }
    }

    #[test]
    fn simple_commands_carry_only_their_action() {
        for (cmd, action) in [
            (PhoneCommand::ReportLocation, "reportLocation"),
            (PhoneCommand::Dump, "dump"),
            (PhoneCommand::Status, "status"),
            (PhoneCommand::ClearWaypoints, "clearWaypoints"),
        ] {
            assert_eq!(
                cmd.to_json(),
                serde_json::json!({"_type": "cmd", "action": action})
            );
        }
    }

    #[test]
    fn set_waypoints_nests_a_waypoints_object() {
        let json = PhoneCommand::SetWaypoints(vec![work()]).to_json();
        assert_eq!(json["action"], "setWaypoints");
        assert_eq!(json["waypoints"]["_type"], "waypoints");
        let first = &json["waypoints"]["waypoints"][0];
        assert_eq!(first["_type"], "waypoint");
        assert_eq!(first["desc"], "Work");
        assert_eq!(first["rad"], 150.0);
        assert_eq!(first["tst"], 1_763_990_100);
        assert_eq!(first["rid"], "d4e5f6");
    }

    #[test]
    fn waypoint_json_parses_back_to_the_same_waypoint() {
        let text = work().to_json().to_string();
        let parsed = parse_payload(text.as_bytes(), Some(TopicKind::Waypoint)).unwrap();
        let Parsed::Message(m) = parsed else {
            panic!("empty")
        };
        assert_eq!(m.body(), &Body::Waypoint(work()));
    }

    #[test]
    fn set_configuration_adds_the_type() {
        let mut settings = Map::new();
        settings.insert("monitoring".into(), 2.into());
        let json = PhoneCommand::SetConfiguration(settings).to_json();
        assert_eq!(json["action"], "setConfiguration");
        assert_eq!(
            json["configuration"],
            serde_json::json!({"_type": "configuration", "monitoring": 2})
        );
    }

    #[test]
    fn our_commands_parse_as_cmd_messages() {
        let payload = PhoneCommand::ReportLocation.to_payload();
        let parsed = parse_payload(payload.as_bytes(), Some(TopicKind::Cmd)).unwrap();
        let Parsed::Message(m) = parsed else {
            panic!("empty")
        };
        assert_eq!(m.raw_json(), payload);
    }
}
