//! What arrives on the alarm's command topic, as a typed [`CommandPayload`].
//!
//! Two shapes are accepted (the bytes are UTF-8, surrounding whitespace ignored):
//! - JSON `{"action": "ARM_AWAY", "code": "1234"}`, what Home Assistant renders from our
//!   `command_template`; other fields are ignored. A JSON string (`"DISARM"`) counts as a
//!   plain action.
//! - a plain action, `DISARM` (what HA sends without a template).
//!
//! Actions compare case-insensitively. "No code" arrives in several shapes and all of them
//! mean no code: a missing `code`, JSON `null`, `""` or whitespace, and the text `None`
//! in any case (Jinja renders Python's `None` as `None`, minijinja as `none`). A PIN is 4–8
//! ASCII digits kept as a string (leading zeros matter), so none of those collide with a real
//! code. A numeric JSON code is refused rather than guessed at (`0042` is not valid JSON, and
//! `42` is not `0042`).
//!
//! No input panics (property-tested with arbitrary bytes); errors never contain the code,
//! not even one sent where the action belongs (digits are masked in echoed actions).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Payloads larger than this are refused without parsing (a command is a few dozen bytes).
pub const MAX_COMMAND_BYTES: usize = 1024;

/// What a command asks for; the names are Home Assistant's default payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Disarm,
    ArmHome,
    ArmAway,
    ArmNight,
    ArmVacation,
    ArmCustomBypass,
    Trigger,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Disarm,
        Action::ArmHome,
        Action::ArmAway,
        Action::ArmNight,
        Action::ArmVacation,
        Action::ArmCustomBypass,
        Action::Trigger,
    ];

    /// The payload name: `DISARM`, `ARM_HOME`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Disarm => "DISARM",
            Action::ArmHome => "ARM_HOME",
            Action::ArmAway => "ARM_AWAY",
            Action::ArmNight => "ARM_NIGHT",
            Action::ArmVacation => "ARM_VACATION",
            Action::ArmCustomBypass => "ARM_CUSTOM_BYPASS",
            Action::Trigger => "TRIGGER",
        }
    }

    /// The action named `name`, ignoring ASCII case and surrounding whitespace.
    pub fn parse(name: &str) -> Option<Action> {
        let name = name.trim();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    /// The mode an arm action arms; `None` for disarm and trigger.
    pub fn arm_mode(self) -> Option<super::ArmMode> {
        use super::ArmMode;
        match self {
            Action::ArmHome => Some(ArmMode::Home),
            Action::ArmAway => Some(ArmMode::Away),
            Action::ArmNight => Some(ArmMode::Night),
            Action::ArmVacation => Some(ArmMode::Vacation),
            Action::ArmCustomBypass => Some(ArmMode::CustomBypass),
            Action::Disarm | Action::Trigger => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PIN as typed: 4–8 ASCII digits. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    pub const MIN_LEN: usize = 4;
    pub const MAX_LEN: usize = 8;

    /// Checks the format (not whether the PIN is anyone's).
    pub fn new(code: &str) -> Result<Pin, CommandError> {
        let len = code.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(CommandError::BadCode {
                problem: "a PIN has 4 to 8 digits",
            });
        }
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CommandError::BadCode {
                problem: "a PIN has digits only",
            });
        }
        Ok(Pin(code.to_owned()))
    }

    /// The digits, for verification against the stored hashes only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// A parsed command: the action and the PIN if one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPayload {
    pub action: Action,
    pub code: Option<Pin>,
}

/// Why a command payload was refused. Messages never contain the code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("command payload of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("command payload is malformed: {0}")]
    Malformed(String),
    #[error("unknown action {0:?}; expected one of DISARM, ARM_HOME, ARM_AWAY, ARM_NIGHT, ARM_VACATION, ARM_CUSTOM_BYPASS, TRIGGER{hint}", hint = if .0.eq_ignore_ascii_case("none") { " (a command_template using {{ value }} renders the action as None: use {{ action }})" } else { "" })]
    UnknownAction(String),
    #[error("bad code: {problem}")]
    BadCode { problem: &'static str },
}

impl CommandError {
    /// A stable short name for the error topic, counters and audit rows.
    pub fn reason(&self) -> &'static str {
        match self {
            CommandError::TooLarge { .. } => "too_large",
            CommandError::Malformed(_) => "malformed",
            CommandError::UnknownAction(_) => "unknown_action",
            CommandError::BadCode { .. } => "bad_code",
        }
    }
}

/// Parses a command payload (see the module doc for the accepted shapes).
pub fn parse_command(payload: &[u8]) -> Result<CommandPayload, CommandError> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge {
            size: payload.len(),
            max: MAX_COMMAND_BYTES,
        });
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| CommandError::Malformed("not UTF-8".to_owned()))?
        .trim();
    if text.is_empty() {
        return Err(CommandError::Malformed("empty payload".to_owned()));
    }
    if !text.starts_with(['{', '"', '[']) {
        return plain(text);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| CommandError::Malformed(format!("not valid JSON: {e}")))?;
    match value {
        Value::String(s) => plain(&s),
        Value::Object(map) => {
            let action = match map.get("action") {
                Some(Value::String(s)) => {
                    Action::parse(s).ok_or_else(|| CommandError::UnknownAction(shorten(s)))?
                }
                Some(other) => {
                    return Err(CommandError::Malformed(format!(
                        "`action` must be a string, got {}",
                        json_kind(other)
                    )));
                }
                None => return Err(CommandError::Malformed("missing `action`".to_owned())),
            };
            let code = match map.get("code") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => code_from_text(s)?,
                Some(other) => {
                    return Err(CommandError::BadCode {
                        problem: if other.is_number() {
                            "the code must be a JSON string (quote it: leading zeros matter)"
                        } else {
                            "the code must be a JSON string"
                        },
                    });
                }
            };
            Ok(CommandPayload { action, code })
        }
        other => Err(CommandError::Malformed(format!(
            "expected a JSON object or an action name, got a JSON {}",
            json_kind(&other)
        ))),
    }
}

fn plain(text: &str) -> Result<CommandPayload, CommandError> {
    let action = Action::parse(text).ok_or_else(|| CommandError::UnknownAction(shorten(text)))?;
    Ok(CommandPayload { action, code: None })
}

/// `""`, whitespace and `None` (any case) mean no code; anything else must be a PIN.
fn code_from_text(text: &str) -> Result<Option<Pin>, CommandError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Pin::new(text).map(Some)
}

/// Echoing what came helps, but bounded, and with digits masked: no action name has
/// digits, and a PIN sent where the action belongs (`1234`, `DISARM 1234`, a template
/// putting `{{ code }}` in `action`) must not reach a log or the error topic.
fn shorten(s: &str) -> String {
    const MAX: usize = 32;
    let s = s.trim();
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_ascii_digit() { '*' } else { c })
        .collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
