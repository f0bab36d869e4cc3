//! The alarm over HTTP: its status, arming and disarming, its event log, its sensors and its
//! settings. JSON shapes are made here only; the rules live in the domain's state machine and
//! the alarm service ([`crate::alarm::AlarmHandle`]).
//!
//! - `GET /api/alarm` (any signed-in user): the status ([`status_view`]).
//! - `POST /api/alarm/arm` `{"mode", "code", "force"}` and `POST /api/alarm/disarm`
//!   `{"code"}` (any signed-in user; the code decides): 200 with the new status (also for a
//!   repeated command the alarm ignored as a duplicate), or a refusal
//!   `{"error", "reason", "retry_after_secs", "open_sensors", "status"}`: 403 for a wrong,
//!   disabled, out-of-window or not permitted code and for a missing required code; 409 when
//!   the state does not allow it, the mode is disabled, sensors are open (named), or right
//!   after a disarm (re-arm guard, with `Retry-After`); 429 with `Retry-After` when locked out
//!   after wrong codes; 400 for bad input. "No code" is a missing `code`, `null`, `""`,
//!   whitespace or `"None"`, as on the MQTT command topic.
//! - `GET /api/alarm/events?from=&to=&kind=&limit=`: the event log, newest first; `from`/`to`
//!   in Unix milliseconds (`from <= at < to`), `kind` repeated or comma-separated
//!   (`transition`, `code_accepted`, `code_refused`, `command_refused`, `sensor_tripped`,
//!   `bypassed`, `duress`), `limit` 1–10000 (default 100). Any signed-in user: it is the
//!   household's log (who armed and disarmed, from where, which sensor tripped), the same
//!   things the Home Assistant entity's attributes show; it never holds a code.
//! - Admins only: `GET /api/alarm/sensors` (each with its live `active` value),
//!   `PUT /api/alarm/sensors/{id}` (201 new, 200 replaced), `DELETE /api/alarm/sensors/{id}`
//!   (204), `GET`/`PUT /api/alarm/settings` (a `PUT` changes the fields it names). Each change
//!   is validated field by field (400 `"<field>: <problem>"`), stored, and then the running
//!   alarm reloads it at once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use porchlight_api::alarm as api;
use porchlight_domain::acl::is_valid_topic;
use porchlight_domain::alarm::{
    Action, AlarmStatus, ArmMode, MqttSource, Pin, Sensor, SensorId, SensorKind, SensorSource,
    Settings, Via,
};
use porchlight_store::{AlarmEvent, AlarmEventKind, MAX_ALARM_EVENTS, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::AppState;
use super::auth::{Admin, CurrentUser};
use super::error::{ApiError, ApiJson, ApiResult};
use super::views::unix_ms;
use crate::alarm::{AlarmError, AlarmHandle, CommandReply, CommandRequest, Refusal, SensorView};

impl From<AlarmError> for ApiError {
    fn from(e: AlarmError) -> Self {
        match e {
            AlarmError::Store(e) => e.into(),
            AlarmError::Stopped => ApiError::Internal("the alarm service has stopped".into()),
        }
    }
}

fn field(name: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{name}: {problem}"))
}

fn mode_names() -> String {
    ArmMode::ALL.map(|m| m.as_str()).join(", ")
}

fn kind_name(kind: SensorKind) -> &'static str {
    match kind {
        SensorKind::Door => "door",
        SensorKind::Window => "window",
        SensorKind::Motion => "motion",
        SensorKind::Tamper => "tamper",
        SensorKind::Fire => "fire",
        SensorKind::Smoke => "smoke",
        SensorKind::Water => "water",
    }
}

// ---------------------------------------------------------------------------------------------
// Status

/// A sensor named in a status: `{"id", "name"}` (the id as name once it is no longer
/// configured).
fn sensor_ref(id: &SensorId, sensors: &[SensorView]) -> api::SensorRef {
    let name = sensors
        .iter()
        .find(|s| s.sensor.id == *id)
        .map_or_else(|| id.0.clone(), |s| s.sensor.name.clone());
    api::SensorRef {
        id: id.0.clone(),
        name,
    }
}

/// The status as the UI gets it (`GET /api/alarm`, the commands' answers, the live feed's
/// `alarm` message): [`api::AlarmStatus`]. Sensors by id and name; times in Unix milliseconds.
pub(super) fn status_view(
    status: &AlarmStatus,
    sensors: &[SensorView],
    settings: &Settings,
) -> Value {
    let named = |id: &SensorId| sensor_ref(id, sensors);
    let names = |modes: &[ArmMode]| modes.iter().map(|m| m.as_str().to_owned()).collect();
    let view = api::AlarmStatus {
        state: status.state.as_str().to_owned(),
        arm_mode: status.arm_mode.map(|m| m.as_str().to_owned()),
        next_state: status.next_state.map(|s| s.as_str().to_owned()),
        delay_remaining_secs: status.delay_remaining_secs,
        delay_ends_at: status.deadline.map(unix_ms),
        open_sensors: status.open_sensors.iter().map(named).collect(),
        bypassed_sensors: status.bypassed_sensors.iter().map(named).collect(),
        ready_to_arm: status.ready_to_arm,
        ready_to_arm_modes: names(&status.ready_to_arm_modes),
        enabled_modes: names(&settings.enabled_modes()),
        code_arm_required: settings.code_arm_required,
        code_disarm_required: settings.code_disarm_required,
        changed_by: status.changed_by.clone(),
        tripped_by: status.tripped_by.as_ref().map(named),
    };
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// [`status_view`] with the sensor names and settings of now.
pub(super) async fn view_of(state: &AppState, status: &AlarmStatus) -> ApiResult<Value> {
    let sensors = state.alarm.sensors().await?;
    let settings = state.store.alarm_settings().await?;
    Ok(status_view(status, &sensors, &settings))
}

/// The live feed's `alarm` message: the status view with `"type": "alarm"`.
pub(super) fn live_message(view: Value) -> String {
    match view {
        Value::Object(mut map) => {
            map.insert("type".into(), Value::String("alarm".into()));
            Value::Object(map).to_string()
        }
        other => other.to_string(),
    }
}

/// The `alarm` message of `/ws/live`, rebuilt by one task after each change of the alarm's
/// status for every viewer, so N viewers cost the alarm's task one sensors read per change,
/// not N. `None` until the first change; the task ends with the alarm.
pub(crate) fn live_feed(alarm: AlarmHandle, store: Store) -> watch::Receiver<Option<Arc<str>>> {
    let (tx, rx) = watch::channel(None);
    let mut changes = alarm.subscribe();
    changes.borrow_and_update();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let status = changes.borrow_and_update().clone();
            let view = match (alarm.sensors().await, store.alarm_settings().await) {
                (Ok(sensors), Ok(settings)) => status_view(&status, &sensors, &settings),
                (Err(AlarmError::Stopped), _) => return,
                (Err(e), _) => {
                    tracing::warn!(error = %e, "alarm status for the live feed not built");
                    continue;
                }
                (_, Err(e)) => {
                    tracing::warn!(error = %e, "alarm status for the live feed not built");
                    continue;
                }
            };
            if tx.send(Some(Arc::from(live_message(view)))).is_err() {
                return;
            }
        }
    });
    rx
}

/// `GET /api/alarm`.
pub async fn status(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
) -> ApiResult<Json<Value>> {
    let status = state.alarm.status().await?;
    Ok(Json(view_of(&state, &status).await?))
}

// ---------------------------------------------------------------------------------------------
// Commands

/// A body's `code`: "no code" in every shape the MQTT side accepts (missing, `null`, `""`,
/// whitespace, `"None"` in any case), else a PIN (digits, as a string: leading zeros matter).
fn code_of(body: &Map<String, Value>) -> ApiResult<Option<Pin>> {
    match body.get("code") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || s.eq_ignore_ascii_case("none") {
                return Ok(None);
            }
            Pin::new(s).map(Some).map_err(|e| field("code", e))
        }
        Some(Value::Number(_)) => Err(field(
            "code",
            "must be a string (quote it: leading zeros matter)",
        )),
        Some(_) => Err(field("code", "must be a string")),
    }
}

fn bool_of(body: &Map<String, Value>, name: &str, default: bool) -> ApiResult<bool> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(field(name, "must be true or false")),
    }
}

fn object(body: Value) -> ApiResult<Map<String, Value>> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
    }
}

fn no_unknown(body: &Map<String, Value>, known: &[&str]) -> ApiResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(field(
            k,
            format!("unknown field; expected {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `POST /api/alarm/arm`.
pub async fn arm(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let body = object(body)?;
    no_unknown(&body, &["mode", "code", "force"])?;
    let mode = match body.get("mode") {
        Some(Value::String(m)) => ArmMode::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(m.trim()))
            .ok_or_else(|| field("mode", format!("expected one of {}", mode_names())))?,
        Some(_) => return Err(field("mode", "must be a string")),
        None => return Err(field("mode", format!("missing; one of {}", mode_names()))),
    };
    let request = CommandRequest {
        action: mode.action(),
        force: bool_of(&body, "force", false)?,
        pin: code_of(&body)?,
        via: Via::Api,
        user: Some(user.username),
        peer: Some(peer.ip()),
    };
    command(&state, request).await
}

/// `POST /api/alarm/disarm`.
pub async fn disarm(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let body = object(body)?;
    no_unknown(&body, &["code"])?;
    let request = CommandRequest {
        action: Action::Disarm,
        force: false,
        pin: code_of(&body)?,
        via: Via::Api,
        user: Some(user.username),
        peer: Some(peer.ip()),
    };
    command(&state, request).await
}

async fn command(state: &AppState, request: CommandRequest) -> ApiResult<Response> {
    match state.alarm.command(request).await? {
        CommandReply::Accepted(status) | CommandReply::Duplicate(status) => {
            Ok(Json(view_of(state, &status).await?).into_response())
        }
        CommandReply::Refused(refusal, status) => refused(state, &refusal, &status).await,
    }
}

/// The HTTP status of a refusal, by its stable reason.
fn refusal_status(reason: &str) -> StatusCode {
    match reason {
        "locked_out" => StatusCode::TOO_MANY_REQUESTS,
        "bad_code" => StatusCode::BAD_REQUEST,
        "not_allowed" | "open_sensors" | "mode_disabled" | "rearm_guard" => StatusCode::CONFLICT,
        // wrong_code, code_disabled, outside_validity, not_permitted, code_required.
        _ => StatusCode::FORBIDDEN,
    }
}

async fn refused(state: &AppState, refusal: &Refusal, status: &AlarmStatus) -> ApiResult<Response> {
    let sensors = state.alarm.sensors().await?;
    let settings = state.store.alarm_settings().await?;
    let view = status_view(status, &sensors, &settings);
    let retry_after = refusal
        .retry_after
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .map(|s| s.max(1));
    let open_sensors: Vec<api::SensorRef> = refusal
        .sensors
        .iter()
        .map(|id| sensor_ref(id, &sensors))
        .collect();
    let body = json!({
        "error": refusal.message,
        "reason": refusal.reason,
        "retry_after_secs": retry_after,
        "open_sensors": open_sensors,
        "status": view,
    });
    let mut response = (refusal_status(refusal.reason), Json(body)).into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Events

/// Events answered when no `limit` is given.
const DEFAULT_EVENT_LIMIT: usize = 100;

fn event_view(e: &AlarmEvent) -> api::AlarmEvent {
    api::AlarmEvent {
        id: e.id,
        at: unix_ms(e.at),
        kind: e.kind.as_str().to_owned(),
        who: e.who.clone(),
        via: e.via.clone(),
        from: e.from_state.clone(),
        to: e.to_state.clone(),
        sensor: e.sensor.clone(),
        detail: e.detail.clone(),
    }
}

fn time_param(name: &str, value: &str) -> ApiResult<SystemTime> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .ok_or_else(|| field(name, "a time is Unix milliseconds, 0 or more"))
}

/// `GET /api/alarm/events`.
pub async fn events(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<api::AlarmEvent>>> {
    let (mut from, mut to, mut limit) = (None, None, DEFAULT_EVENT_LIMIT);
    let mut kinds = BTreeSet::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "from" => from = Some(time_param("from", &value)?),
            "to" => to = Some(time_param("to", &value)?),
            "limit" => {
                limit = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_ALARM_EVENTS).contains(l))
                    .ok_or_else(|| field("limit", format!("1 to {MAX_ALARM_EVENTS}")))?;
            }
            "kind" => {
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let kind = AlarmEventKind::parse(name).ok_or_else(|| {
                        let names = AlarmEventKind::ALL.map(|k| k.as_str()).join(", ");
                        field("kind", format!("unknown kind; expected one of {names}"))
                    })?;
                    kinds.insert(kind.as_str());
                }
            }
            other => {
                return Err(field(
                    other,
                    "unknown parameter; expected from, to, kind, limit",
                ));
            }
        }
    }
    let kinds: Vec<AlarmEventKind> = kinds
        .into_iter()
        .filter_map(AlarmEventKind::parse)
        .collect();
    let events = state.store.alarm_events(from, to, &kinds, limit).await?;
    Ok(Json(events.iter().map(event_view).collect()))
}

// ---------------------------------------------------------------------------------------------
// Sensors

/// Longest sensor id, name, topic and field accepted.
const MAX_ID: usize = 64;
const MAX_NAME: usize = 100;
const MAX_TOPIC: usize = 1024;
const MAX_FIELD: usize = 256;

fn sensor_view(view: &SensorView) -> api::Sensor {
    let s = &view.sensor;
    let source = match &s.source {
        SensorSource::Mqtt(m) => api::SensorSource {
            kind: "mqtt".into(),
            topic: m.topic.clone(),
            field: m.field.clone(),
            on: m.on.clone(),
            off: m.off.clone(),
        },
    };
    api::Sensor {
        id: s.id.0.clone(),
        name: s.name.clone(),
        kind: kind_name(s.kind).to_owned(),
        modes: s.modes.iter().map(|m| m.as_str().to_owned()).collect(),
        use_entry_delay: s.use_entry_delay,
        allow_open_while_arming: s.allow_open_while_arming,
        source,
        active: view.active,
    }
}

/// `GET /api/alarm/sensors`.
pub async fn sensors(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> ApiResult<Json<Vec<api::Sensor>>> {
    let views = state.alarm.sensors().await?;
    Ok(Json(views.iter().map(sensor_view).collect()))
}

fn check_id(id: &str) -> ApiResult<SensorId> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(SensorId(id.to_owned()))
    } else {
        Err(field(
            "id",
            format!("1 to {MAX_ID} characters: letters, digits, '_', '-', '.'"),
        ))
    }
}

fn text_of<'a>(body: &'a Map<String, Value>, name: &str) -> ApiResult<Option<&'a str>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(field(name, "must be a string")),
    }
}

/// A sensor's `on`/`off` value: a string, number or boolean.
fn match_value(source: &Map<String, Value>, name: &str) -> ApiResult<Value> {
    let at = format!("source.{name}");
    match source.get(name) {
        Some(Value::String(s)) if s.trim().is_empty() => Err(field(&at, "must not be empty")),
        Some(Value::String(s)) if s.len() > MAX_FIELD => {
            Err(field(&at, format!("at most {MAX_FIELD} bytes")))
        }
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => Ok(v.clone()),
        None | Some(Value::Null) => Err(field(
            &at,
            "missing; the payload value meaning active/inactive",
        )),
        Some(_) => Err(field(&at, "must be a string, number or boolean")),
    }
}

fn parse_sensor(id: SensorId, body: Value) -> ApiResult<Sensor> {
    let body = object(body)?;
    no_unknown(
        &body,
        &[
            "id",
            "name",
            "kind",
            "modes",
            "use_entry_delay",
            "allow_open_while_arming",
            "source",
            "active",
        ],
    )?;
    if let Some(other) = text_of(&body, "id")?
        && other != id.0
    {
        return Err(field("id", "differs from the id in the path"));
    }
    let name = text_of(&body, "name")?.map(str::trim).unwrap_or_default();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(field(
            "name",
            format!("1 to {MAX_NAME} characters, no control characters"),
        ));
    }
    let kind_names = SensorKind::ALL.map(kind_name).join(", ");
    let kind = text_of(&body, "kind")?
        .and_then(|k| {
            SensorKind::ALL
                .into_iter()
                .find(|x| kind_name(*x) == k.trim())
        })
        .ok_or_else(|| field("kind", format!("expected one of {kind_names}")))?;
    let modes = match body.get("modes") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| {
                m.as_str()
                    .and_then(|m| ArmMode::ALL.into_iter().find(|x| x.as_str() == m.trim()))
                    .ok_or_else(|| field("modes", format!("each one of {}", mode_names())))
            })
            .collect::<ApiResult<BTreeSet<_>>>()?,
        Some(_) => return Err(field("modes", format!("a list of {}", mode_names()))),
    };
    if modes.is_empty() && !kind.is_always_on() {
        return Err(field(
            "modes",
            format!(
                "a {} sensor needs at least one mode it is watched in",
                kind_name(kind)
            ),
        ));
    }
    let source = match body.get("source") {
        Some(Value::Object(source)) => source,
        _ => {
            return Err(field(
                "source",
                "missing; {\"topic\", \"field\", \"on\", \"off\"}",
            ));
        }
    };
    if let Some(k) = source.get("kind")
        && k != "mqtt"
    {
        return Err(field("source.kind", "only \"mqtt\" is supported"));
    }
    if let Some(k) = source
        .keys()
        .find(|k| !["kind", "topic", "field", "on", "off"].contains(&k.as_str()))
    {
        return Err(field(
            &format!("source.{k}"),
            "unknown field; expected kind, topic, field, on, off",
        ));
    }
    let topic = text_of(source, "topic")?.unwrap_or_default();
    if !is_valid_topic(topic) || topic.len() > MAX_TOPIC || topic.starts_with('$') {
        return Err(field(
            "source.topic",
            "must be an MQTT topic name: not empty, no wildcards (+, #), not a $ topic",
        ));
    }
    if topic.starts_with("porchlight/alarm/") {
        return Err(field(
            "source.topic",
            "the alarm's own topics cannot be sensors",
        ));
    }
    let field_path = match text_of(source, "field")?.map(str::trim) {
        None | Some("") => None,
        Some(f) if f.len() > MAX_FIELD || f.split('.').any(str::is_empty) => {
            return Err(field(
                "source.field",
                "a dotted path such as `contact` or `state.contact`, no empty segment",
            ));
        }
        Some(f) => Some(f.to_owned()),
    };
    let on = match_value(source, "on")?;
    let off = match_value(source, "off")?;
    // The values compare loosely (`"ON"` matches `on`): the off value must not read as on.
    let probe = MqttSource {
        topic: topic.to_owned(),
        field: None,
        on: on.clone(),
        off: off.clone(),
    };
    if matches!(probe.read(plain_text(&off).as_bytes()), Ok(Some(true))) {
        return Err(field("source.off", "must differ from the on value"));
    }
    let mqtt = MqttSource {
        field: field_path,
        ..probe
    };
    Ok(Sensor {
        id,
        name: name.to_owned(),
        kind,
        modes,
        use_entry_delay: bool_of(&body, "use_entry_delay", true)?,
        allow_open_while_arming: bool_of(&body, "allow_open_while_arming", false)?,
        source: SensorSource::Mqtt(mqtt),
    })
}

/// A scalar as a plain payload would carry it.
fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `PUT /api/alarm/sensors/{id}`.
pub async fn put_sensor(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<api::Sensor>)> {
    let sensor = parse_sensor(check_id(&id)?, body)?;
    let created = state
        .store
        .put_alarm_sensor(&sensor, SystemTime::now())
        .await?;
    state.alarm.reload().await?;
    tracing::info!(by = %admin.username, sensor = %sensor.id, created, "alarm sensor saved");
    let views = state.alarm.sensors().await?;
    let view = views
        .iter()
        .find(|v| v.sensor.id == sensor.id)
        .map(sensor_view)
        .unwrap_or_else(|| {
            sensor_view(&SensorView {
                sensor,
                active: None,
            })
        });
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `DELETE /api/alarm/sensors/{id}`.
pub async fn delete_sensor(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = SensorId(id);
    state.store.delete_alarm_sensor(&id).await?;
    state.alarm.reload().await?;
    tracing::info!(by = %admin.username, sensor = %id, "alarm sensor removed");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Settings

const MODE_KEYS: [&str; 5] = ["home", "away", "night", "vacation", "custom_bypass"];

fn settings_view(settings: &Settings) -> api::AlarmSettings {
    let mode = |m: ArmMode| {
        let s = settings.mode(m);
        api::ModeSettings {
            enabled: s.enabled,
            exit_delay_secs: s.exit_delay_secs,
            entry_delay_secs: s.entry_delay_secs,
            trigger_time_secs: s.trigger_time_secs,
        }
    };
    api::AlarmSettings {
        home: mode(ArmMode::Home),
        away: mode(ArmMode::Away),
        night: mode(ArmMode::Night),
        vacation: mode(ArmMode::Vacation),
        custom_bypass: mode(ArmMode::CustomBypass),
        disarmed_trigger_time_secs: settings.disarmed_trigger_time_secs,
        disarm_after_trigger: settings.disarm_after_trigger,
        code_arm_required: settings.code_arm_required,
        code_disarm_required: settings.code_disarm_required,
        dedup_window_ms: settings.dedup_window_ms,
        rearm_guard_ms: settings.rearm_guard_ms,
    }
}

/// `GET /api/alarm/settings`.
pub async fn settings(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> ApiResult<Json<api::AlarmSettings>> {
    Ok(Json(settings_view(&state.store.alarm_settings().await?)))
}

fn number(at: &str, v: &Value, max: u32, unit: &str) -> ApiResult<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= max)
        .ok_or_else(|| field(at, format!("a whole number from 0 to {max} {unit}")))
}

fn flag(at: &str, v: &Value) -> ApiResult<bool> {
    v.as_bool()
        .ok_or_else(|| field(at, "must be true or false"))
}

/// Applies the fields `body` names to `settings`, each checked.
fn apply_settings(settings: &mut Settings, body: Value) -> ApiResult<()> {
    let body = object(body)?;
    for (key, value) in &body {
        if let Some(i) = MODE_KEYS.iter().position(|k| k == key) {
            let mode = settings.mode_mut(ArmMode::ALL[i]);
            let Value::Object(fields) = value else {
                return Err(field(key, "must be an object"));
            };
            for (name, v) in fields {
                let at = format!("{key}.{name}");
                match name.as_str() {
                    "enabled" => mode.enabled = flag(&at, v)?,
                    "exit_delay_secs" => mode.exit_delay_secs = number(&at, v, 3600, "seconds")?,
                    "entry_delay_secs" => mode.entry_delay_secs = number(&at, v, 3600, "seconds")?,
                    "trigger_time_secs" => {
                        mode.trigger_time_secs = number(&at, v, 86_400, "seconds")?;
                    }
                    _ => {
                        return Err(field(
                            &at,
                            "unknown field; expected enabled, exit_delay_secs, entry_delay_secs, trigger_time_secs",
                        ));
                    }
                }
            }
            continue;
        }
        let at = key.as_str();
        match at {
            "disarmed_trigger_time_secs" => {
                settings.disarmed_trigger_time_secs = number(at, value, 86_400, "seconds")?;
            }
            "disarm_after_trigger" => settings.disarm_after_trigger = flag(at, value)?,
            "code_arm_required" => settings.code_arm_required = flag(at, value)?,
            "code_disarm_required" => settings.code_disarm_required = flag(at, value)?,
            "dedup_window_ms" => settings.dedup_window_ms = number(at, value, 60_000, "ms")?,
            "rearm_guard_ms" => settings.rearm_guard_ms = number(at, value, 600_000, "ms")?,
            _ => return Err(field(at, "unknown field")),
        }
    }
    if settings.enabled_modes().is_empty() {
        return Err(field("enabled", "at least one arm mode must stay enabled"));
    }
    Ok(())
}

/// `PUT /api/alarm/settings`: the fields given change, the others stay.
pub async fn put_settings(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<api::AlarmSettings>> {
    let mut settings = state.store.alarm_settings().await?;
    apply_settings(&mut settings, body)?;
    state
        .store
        .set_alarm_settings(&settings, SystemTime::now())
        .await?;
    state.alarm.reload().await?;
    tracing::info!(by = %admin.username, "alarm settings changed");
    Ok(Json(settings_view(&settings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_no_code_shape_is_no_code_and_a_number_is_refused() {
        for body in [
            json!({}),
            json!({"code": null}),
            json!({"code": ""}),
            json!({"code": "  "}),
            json!({"code": "None"}),
            json!({"code": "none"}),
        ] {
            assert!(
                code_of(body.as_object().unwrap()).unwrap().is_none(),
                "{body}"
            );
        }
        let pin = code_of(json!({"code": "0042"}).as_object().unwrap()).unwrap();
        assert_eq!(pin.unwrap().expose(), "0042");
        assert!(code_of(json!({"code": 42}).as_object().unwrap()).is_err());
        assert!(code_of(json!({"code": "12"}).as_object().unwrap()).is_err());
    }
}
