//! Where a sensor's open/closed state comes from, and how a message becomes that state.
//!
//! A [`SensorSource`] is an enum so that a second kind (a Home Assistant entity) can be added
//! beside [`MqttSource`] without touching the state machine, which only sees
//! `sensor(id, active, now)`.
//!
//! An MQTT source is a topic, an optional field (a dotted path into a JSON object, `contact`
//! or `state.contact`; a numeric segment indexes an array) and the values meaning *active*
//! (open, motion, smoke) and *inactive*. A Zigbee2MQTT contact sensor publishes
//! `{"contact": false, "battery": 97}` when the door opens: field `contact`, on `false`, off
//! `true`. Without a field the whole payload is the value (`ON`/`OFF`, `1`/`0`).
//!
//! Values compare loosely, because users type them in a form: equal JSON, or the same text
//! ignoring ASCII case when both are scalars (`"ON"` matches `on`, `"true"` matches `true`,
//! `1` matches `"1"`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Messages larger than this are not examined (sensor states are small).
pub const MAX_SOURCE_PAYLOAD_BYTES: usize = 64 * 1024;

/// Where a sensor's state comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SensorSource {
    /// A topic on the broker the alarm listens to.
    Mqtt(MqttSource),
}

impl SensorSource {
    /// The MQTT topic to subscribe to, for MQTT sources.
    pub fn mqtt_topic(&self) -> Option<&str> {
        match self {
            SensorSource::Mqtt(m) => Some(&m.topic),
        }
    }

    /// Reads an MQTT message: `None` when it is not for this source (another topic, or a
    /// source of another kind), else what [`MqttSource::read`] says.
    pub fn read_mqtt(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Option<Result<Option<bool>, SourceError>> {
        match self {
            SensorSource::Mqtt(m) if m.matches_topic(topic) => Some(m.read(payload)),
            SensorSource::Mqtt(_) => None,
        }
    }
}

/// A topic plus a payload match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MqttSource {
    /// The exact topic (no wildcards).
    pub topic: String,
    /// Dotted path to the value inside a JSON object; `None`: the whole payload.
    #[serde(default)]
    pub field: Option<String>,
    /// The value meaning active (open, motion detected, smoke).
    pub on: Value,
    /// The value meaning inactive.
    pub off: Value,
}

/// Why a message could not be read as a sensor state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourceError {
    #[error("payload of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload is not JSON, but field `{field}` is configured: {detail}")]
    NotJson { field: String, detail: String },
    #[error("field `{field}`: cannot look into a JSON {got}")]
    NotAnObject { field: String, got: &'static str },
    #[error("{at}: value {got} is neither the on value {on} nor the off value {off}")]
    UnexpectedValue {
        at: String,
        got: String,
        on: String,
        off: String,
    },
}

impl MqttSource {
    /// Whether a message on `topic` concerns this source.
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.topic == topic
    }

    /// The state a payload says: `Some(true)` active, `Some(false)` inactive, `None` when the
    /// payload does not carry the field (Zigbee2MQTT may publish other attributes alone), or
    /// an error naming what did not fit.
    pub fn read(&self, payload: &[u8]) -> Result<Option<bool>, SourceError> {
        if payload.len() > MAX_SOURCE_PAYLOAD_BYTES {
            return Err(SourceError::TooLarge {
                size: payload.len(),
                max: MAX_SOURCE_PAYLOAD_BYTES,
            });
        }
        let text = std::str::from_utf8(payload).map_err(|_| SourceError::NotUtf8)?;
        let (value, at) = match &self.field {
            None => {
                // A plain payload (`ON`) is text; a JSON scalar (`true`, `"ON"`) is its value.
                let trimmed = text.trim();
                let value = serde_json::from_str::<Value>(trimmed)
                    .unwrap_or_else(|_| Value::String(trimmed.to_owned()));
                (value, "payload".to_owned())
            }
            Some(field) => {
                let root: Value = serde_json::from_str(text).map_err(|e| SourceError::NotJson {
                    field: field.clone(),
                    detail: e.to_string(),
                })?;
                match lookup(&root, field)? {
                    Some(v) => (v.clone(), format!("field `{field}`")),
                    None => return Ok(None),
                }
            }
        };
        if loosely_equal(&value, &self.on) {
            Ok(Some(true))
        } else if loosely_equal(&value, &self.off) {
            Ok(Some(false))
        } else {
            Err(SourceError::UnexpectedValue {
                at,
                got: shorten(&value.to_string()),
                on: self.on.to_string(),
                off: self.off.to_string(),
            })
        }
    }
}

/// Follows a dotted path; `Ok(None)` when a key is missing.
fn lookup<'a>(root: &'a Value, path: &str) -> Result<Option<&'a Value>, SourceError> {
    let mut current = root;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => match map.get(segment) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(items) => match segment.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            other => {
                return Err(SourceError::NotAnObject {
                    field: path.to_owned(),
                    got: match other {
                        Value::Null => "null",
                        Value::Bool(_) => "boolean",
                        Value::Number(_) => "number",
                        _ => "string",
                    },
                });
            }
        };
    }
    Ok(Some(current))
}

fn loosely_equal(got: &Value, want: &Value) -> bool {
    if got == want {
        return true;
    }
    match (scalar_text(got), scalar_text(want)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b),
        _ => false,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
