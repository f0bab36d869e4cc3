//! The alarm: `GET /api/alarm` (and the live feed's `alarm` message), arming and disarming,
//! the event log. States, modes and event kinds are their stable strings (`disarmed`,
//! `armed_away`, `home`, `transition`, …), as on the MQTT topics.

use serde::{Deserialize, Serialize};

/// A sensor named in a status or refusal (the id as name once it is no longer configured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorRef {
    pub id: String,
    pub name: String,
}

/// The alarm's status. Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmStatus {
    /// `disarmed`, `arming`, `armed_home`, `armed_away`, `armed_night`, `armed_vacation`,
    /// `armed_custom_bypass`, `pending`, `triggered`.
    pub state: String,
    /// Armed: its mode; arming: the mode being armed; pending and triggered: the armed mode
    /// they came from.
    pub arm_mode: Option<String>,
    /// Where the running delay leads.
    pub next_state: Option<String>,
    /// Whole seconds left in the running delay (rounded up).
    pub delay_remaining_secs: Option<u64>,
    /// When the running delay ends.
    pub delay_ends_at: Option<i64>,
    pub open_sensors: Vec<SensorRef>,
    pub bypassed_sensors: Vec<SensorRef>,
    pub ready_to_arm: bool,
    pub ready_to_arm_modes: Vec<String>,
    /// `home`, `away`, `night`, `vacation`, `custom_bypass`: the modes that may be armed.
    pub enabled_modes: Vec<String>,
    pub code_arm_required: bool,
    pub code_disarm_required: bool,
    pub changed_by: Option<String>,
    pub tripped_by: Option<SensorRef>,
}

/// The body of `POST /api/alarm/arm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmRequest {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// The body of `POST /api/alarm/disarm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisarmRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A refused arm or disarm (403, 409, 429, 400 with a `reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
    /// Stable: `wrong_code`, `open_sensors`, `not_allowed`, `mode_disabled`, `rearm_guard`,
    /// `locked_out`, `code_required`, …
    pub reason: String,
    pub retry_after_secs: Option<u64>,
    /// The sensors that blocked arming (`open_sensors`).
    pub open_sensors: Vec<SensorRef>,
    pub status: AlarmStatus,
}

/// One entry of `GET /api/alarm/events` (never a code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmEvent {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// `transition`, `code_accepted`, `code_refused`, `command_refused`, `sensor_tripped`,
    /// `bypassed`, `duress`.
    pub kind: String,
    pub who: Option<String>,
    pub via: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub sensor: Option<String>,
    pub detail: Option<String>,
}

/// The event kinds `GET /api/alarm/events?kind=` accepts.
pub const EVENT_KINDS: [&str; 7] = [
    "transition",
    "code_accepted",
    "code_refused",
    "command_refused",
    "sensor_tripped",
    "bypassed",
    "duress",
];

/// One arm mode's settings in `GET /api/alarm/settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeSettings {
    pub enabled: bool,
    pub exit_delay_secs: u32,
    pub entry_delay_secs: u32,
    pub trigger_time_secs: u32,
}

/// `GET /api/alarm/settings` (admins); a `PUT` takes any of these fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmSettings {
    pub home: ModeSettings,
    pub away: ModeSettings,
    pub night: ModeSettings,
    pub vacation: ModeSettings,
    pub custom_bypass: ModeSettings,
    pub disarmed_trigger_time_secs: u32,
    pub disarm_after_trigger: bool,
    pub code_arm_required: bool,
    pub code_disarm_required: bool,
    pub dedup_window_ms: u32,
    pub rearm_guard_ms: u32,
}

/// Where a sensor's state comes from: an MQTT topic, optionally a JSON field of its payload,
/// and the values meaning active (`on`) and inactive (`off`): strings, numbers or booleans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorSource {
    /// `mqtt`.
    pub kind: String,
    pub topic: String,
    pub field: Option<String>,
    pub on: serde_json::Value,
    pub off: serde_json::Value,
}

/// A sensor in `GET /api/alarm/sensors` (admins), with its live value; the body of
/// `PUT /api/alarm/sensors/{id}` (where `active` is ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    pub id: String,
    pub name: String,
    /// `door`, `window`, `motion`, `tamper`, `fire`, `smoke`, `water`.
    pub kind: String,
    /// The arm modes it is watched in.
    pub modes: Vec<String>,
    pub use_entry_delay: bool,
    pub allow_open_while_arming: bool,
    pub source: SensorSource,
    /// Its last known value: `true` active (open), `false` inactive, `None` not heard yet.
    #[serde(default)]
    pub active: Option<bool>,
}

/// The sensor kinds a sensor may have.
pub const SENSOR_KINDS: [&str; 7] = [
    "door", "window", "motion", "tamper", "fire", "smoke", "water",
];

/// The arm modes, in their order.
pub const MODES: [&str; 5] = ["home", "away", "night", "vacation", "custom_bypass"];

/// A PIN code as `GET /api/alarm/codes` shows it: never the PIN. Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub id: i64,
    pub user: String,
    pub label: String,
    pub arm: bool,
    pub disarm: bool,
    /// Disarms as asked but raises a silent duress event.
    pub duress: bool,
    pub enabled: bool,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The body of `POST /api/alarm/codes` as the UI sends it.
#[derive(Debug, Clone, Serialize)]
pub struct NewCode {
    pub label: String,
    pub pin: String,
    pub arm: bool,
    pub disarm: bool,
    pub duress: bool,
    /// Admins only: the owner, when not the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}
