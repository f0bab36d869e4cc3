//! Commands to phones: `POST /api/owntracks/devices/{id}/commands`.
//!
//! The body names the action the OwnTracks app should carry out, as the apps spell it:
//! `{"action": "reportLocation" | "dump" | "status" | "clearWaypoints"}`,
//! `{"action": "setWaypoints", "waypoints": [{"desc", "lat", "lon", "rad"?, "tst"?, "rid"?}]}`
//! (each region checked by the domain's waypoint parser; `tst`, the apps' key for a region,
//! defaults to now), or `{"action": "setConfiguration", "configuration": {...}}`. The payload
//! itself is built by [`porchlight_domain::owntracks::PhoneCommand`].
//!
//! Delivery. The store records no transport per device (a phone may even switch between MQTT
//! and HTTP mode), so every command goes both ways:
//! - published QoS 1, not retained, to `owntracks/<user>/<device>/cmd` through the bus (when
//!   the broker runs): a connected phone gets it at once, an offline one with a persistent
//!   session (the `.otrc` we hand out sets `cleanSession: false`) when it reconnects;
//!   sealed as `{"_type":"encrypted",…}` with the device's key when it has one, as the phone
//!   seals what it publishes;
//! - queued in the store until `[owntracks] command_ttl_secs`, for an HTTP-mode phone, which
//!   gets it in the body of its next `POST /pub` answer, once. An MQTT phone never posts to
//!   `/pub`, so its copy simply expires unsent.
//!
//! Who may: the device's owner, or an admin. Anyone else gets 404, as for a device that does
//! not exist. Answers 202 with the payload and what was done.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use porchlight_broker::Bytes;
use porchlight_domain::Role;
use porchlight_domain::owntracks::{Body, Parsed, PhoneCommand, TopicKind, parse_payload};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiJson, ApiResult};

/// Most regions one `setWaypoints` carries.
const MAX_WAYPOINTS: usize = 500;

/// The request body: an action and what that action needs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    action: String,
    /// `setWaypoints`: the regions.
    waypoints: Option<Vec<Value>>,
    /// `setConfiguration`: the settings to merge into the phone's configuration.
    configuration: Option<Map<String, Value>>,
}

/// `POST /api/owntracks/devices/{id}/commands`.
pub async fn send(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(device_id): Path<i64>,
    ApiJson(req): ApiJson<CommandRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let now = SystemTime::now();
    let command = command(req, unix_secs(now))?;
    let visible = (caller.role != Role::Admin).then(|| vec![caller.id]);
    let device = state
        .store
        .owntracks_devices(visible)
        .await?
        .into_iter()
        .find(|d| d.id == device_id)
        .ok_or_else(|| ApiError::NotFound("No such device.".into()))?;
    let payload = command.to_payload();
    let topic = format!("owntracks/{}/{}/cmd", device.username, device.name);
    // A phone with payload encryption on gets its commands sealed with its key, as it
    // publishes (the HTTP-mode queue is sealed with the whole `/pub` answer).
    let on_the_wire =
        super::owntracks_pub::sealed_for_device(&state, device.user_id, &device.name, &payload)
            .await
            .unwrap_or_else(|| payload.clone());

    let published = match &state.bus {
        Some(bus) => match bus
            .publish(&topic, Bytes::from(on_the_wire), 1, false)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "command not published");
                false
            }
        },
        None => false,
    };
    let ttl = state.owntracks_settings.command_ttl;
    let expires_at = now + ttl;
    let queued_id = state
        .store
        .queue_owntracks_command(device.id, payload.clone(), now, expires_at)
        .await?;
    tracing::info!(
        by = %caller.username, owner = %device.username, device = %device.name,
        action = command.action(), published, queued_id, "command to a phone"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "device_id": device.id,
            "action": command.action(),
            "command": command.to_json(),
            "published": published.then_some(topic),
            "queued": {
                "id": queued_id,
                "expires_at": super::views::unix_ms(expires_at),
            },
        })),
    ))
}

/// The request as a command, or why not (400).
fn command(req: CommandRequest, now_secs: i64) -> ApiResult<PhoneCommand> {
    let bad = |m: String| ApiError::BadRequest(m);
    let needs_nothing = |cmd: PhoneCommand| {
        if req.waypoints.is_some() || req.configuration.is_some() {
            Err(bad(format!(
                "The action {} takes no waypoints or configuration.",
                cmd.action()
            )))
        } else {
            Ok(cmd)
        }
    };
    match req.action.as_str() {
        "reportLocation" => needs_nothing(PhoneCommand::ReportLocation),
        "dump" => needs_nothing(PhoneCommand::Dump),
        "status" => needs_nothing(PhoneCommand::Status),
        "clearWaypoints" => needs_nothing(PhoneCommand::ClearWaypoints),
        "setWaypoints" => {
            if req.configuration.is_some() {
                return Err(bad(
                    "setWaypoints takes waypoints, not a configuration.".into()
                ));
            }
            let Some(list) = req.waypoints else {
                return Err(bad("setWaypoints needs a waypoints list.".into()));
            };
            if list.is_empty() || list.len() > MAX_WAYPOINTS {
                return Err(bad(format!(
                    "setWaypoints needs 1 to {MAX_WAYPOINTS} waypoints."
                )));
            }
            let mut waypoints = Vec::with_capacity(list.len());
            for (i, item) in list.into_iter().enumerate() {
                waypoints.push(
                    waypoint(item, now_secs, i).map_err(|e| bad(format!("waypoints[{i}]: {e}")))?,
                );
            }
            Ok(PhoneCommand::SetWaypoints(waypoints))
        }
        "setConfiguration" => {
            if req.waypoints.is_some() {
                return Err(bad(
                    "setConfiguration takes a configuration, not waypoints.".into(),
                ));
            }
            let Some(mut settings) = req.configuration else {
                return Err(bad("setConfiguration needs a configuration object.".into()));
            };
            settings.remove("_type");
            if settings.is_empty() {
                return Err(bad("setConfiguration needs at least one setting.".into()));
            }
            Ok(PhoneCommand::SetConfiguration(settings))
        }
        other => Err(bad(format!(
            "Unknown action {other:?}: use reportLocation, setWaypoints, clearWaypoints, dump, status or setConfiguration."
        ))),
    }
}

/// One region of a `setWaypoints`, checked by the domain's waypoint parser. A missing `tst`
/// becomes `now + index`, so the regions of one request get distinct keys.
fn waypoint(
    item: Value,
    now_secs: i64,
    index: usize,
) -> Result<porchlight_domain::owntracks::Waypoint, String> {
    let Value::Object(mut map) = item else {
        return Err("a waypoint is an object with desc, lat and lon.".into());
    };
    map.insert("_type".into(), "waypoint".into());
    if !map.contains_key("tst") {
        let offset = i64::try_from(index).unwrap_or(i64::MAX);
        map.insert("tst".into(), now_secs.saturating_add(offset).into());
    }
    let text = Value::Object(map).to_string();
    match parse_payload(text.as_bytes(), Some(TopicKind::Waypoint)) {
        Ok(Parsed::Message(m)) => match m.body() {
            Body::Waypoint(w) => Ok(w.clone()),
            _ => Err("not a waypoint.".into()),
        },
        Ok(Parsed::Empty) => Err("empty.".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    super::views::unix_ms(t) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: Value) -> CommandRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn actions_map_to_their_commands() {
        let cmd = command(req(json!({"action": "reportLocation"})), 0).unwrap();
        assert_eq!(cmd, PhoneCommand::ReportLocation);
        let cmd = command(
            req(json!({"action": "setConfiguration", "configuration": {"monitoring": 2}})),
            0,
        )
        .unwrap();
        assert_eq!(cmd.to_json()["configuration"]["monitoring"], 2);
    }

    #[test]
    fn waypoints_are_checked_and_get_a_tst() {
        let cmd = command(
            req(json!({"action": "setWaypoints", "waypoints": [
                {"desc": "Home", "lat": 52.1, "lon": 4.3, "rad": 50},
                {"desc": "Work", "lat": 52.3, "lon": 4.7, "tst": 7}
            ]})),
            1_000,
        )
        .unwrap();
        let PhoneCommand::SetWaypoints(w) = cmd else {
            panic!("not setWaypoints")
        };
        assert_eq!((w[0].tst, w[1].tst), (1_000, 7));
        for bad in [
            json!({"action": "setWaypoints", "waypoints": [{"desc": "X", "lat": 95.0, "lon": 0.0}]}),
            json!({"action": "setWaypoints", "waypoints": [7]}),
            json!({"action": "setWaypoints", "waypoints": []}),
            json!({"action": "setWaypoints"}),
        ] {
            assert!(command(req(bad.clone()), 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrong_shapes_and_unknown_actions_are_refused_with_a_reason() {
        let e = command(req(json!({"action": "selfDestruct"})), 0).unwrap_err();
        assert!(e.to_string().contains("Unknown action"), "{e}");
        assert!(command(req(json!({"action": "dump", "waypoints": []})), 0).is_err());
        assert!(command(req(json!({"action": "setConfiguration"})), 0).is_err());
        assert!(
            command(
                req(json!({"action": "setConfiguration", "configuration": {"_type": "configuration"}})),
                0
            )
            .is_err()
        );
    }
}
