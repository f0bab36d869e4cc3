//! The alarm's vocabulary: states, arm modes, settings, sensors.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::source::SensorSource;

/// An arm mode: which perimeter is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmMode {
    Home,
    Away,
    Night,
    Vacation,
    CustomBypass,
}

impl ArmMode {
    pub const ALL: [ArmMode; 5] = [
        ArmMode::Home,
        ArmMode::Away,
        ArmMode::Night,
        ArmMode::Vacation,
        ArmMode::CustomBypass,
    ];

    /// The state this mode arms to.
    pub fn armed_state(self) -> AlarmState {
        match self {
            ArmMode::Home => AlarmState::ArmedHome,
            ArmMode::Away => AlarmState::ArmedAway,
            ArmMode::Night => AlarmState::ArmedNight,
            ArmMode::Vacation => AlarmState::ArmedVacation,
            ArmMode::CustomBypass => AlarmState::ArmedCustomBypass,
        }
    }

    /// The command action arming this mode.
    pub fn action(self) -> super::Action {
        use super::Action;
        match self {
            ArmMode::Home => Action::ArmHome,
            ArmMode::Away => Action::ArmAway,
            ArmMode::Night => Action::ArmNight,
            ArmMode::Vacation => Action::ArmVacation,
            ArmMode::CustomBypass => Action::ArmCustomBypass,
        }
    }

    /// The name in Home Assistant's MQTT `supported_features` list: `arm_home`, `arm_away`,
    /// `arm_night`, `arm_vacation`, `arm_custom_bypass` (`trigger` is always supported).
    pub fn supported_feature(self) -> &'static str {
        match self {
            ArmMode::Home => "arm_home",
            ArmMode::Away => "arm_away",
            ArmMode::Night => "arm_night",
            ArmMode::Vacation => "arm_vacation",
            ArmMode::CustomBypass => "arm_custom_bypass",
        }
    }

    /// `home`, `away`, `night`, `vacation`, `custom_bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArmMode::Home => "home",
            ArmMode::Away => "away",
            ArmMode::Night => "night",
            ArmMode::Vacation => "vacation",
            ArmMode::CustomBypass => "custom_bypass",
        }
    }
}

impl fmt::Display for ArmMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The alarm's state; [`AlarmState::as_str`] is the string Home Assistant expects on the
/// state topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    Disarmed,
    /// The exit delay runs.
    Arming,
    ArmedHome,
    ArmedAway,
    ArmedNight,
    ArmedVacation,
    ArmedCustomBypass,
    /// The entry delay runs.
    Pending,
    Triggered,
}

impl AlarmState {
    pub const ALL: [AlarmState; 9] = [
        AlarmState::Disarmed,
        AlarmState::Arming,
        AlarmState::ArmedHome,
        AlarmState::ArmedAway,
        AlarmState::ArmedNight,
        AlarmState::ArmedVacation,
        AlarmState::ArmedCustomBypass,
        AlarmState::Pending,
        AlarmState::Triggered,
    ];

    /// Home Assistant's state string: `disarmed`, `arming`, `armed_home`, …
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Disarmed => "disarmed",
            AlarmState::Arming => "arming",
            AlarmState::ArmedHome => "armed_home",
            AlarmState::ArmedAway => "armed_away",
            AlarmState::ArmedNight => "armed_night",
            AlarmState::ArmedVacation => "armed_vacation",
            AlarmState::ArmedCustomBypass => "armed_custom_bypass",
            AlarmState::Pending => "pending",
            AlarmState::Triggered => "triggered",
        }
    }

    /// The mode of an armed state; `None` for the others.
    pub fn armed_mode(self) -> Option<ArmMode> {
        match self {
            AlarmState::ArmedHome => Some(ArmMode::Home),
            AlarmState::ArmedAway => Some(ArmMode::Away),
            AlarmState::ArmedNight => Some(ArmMode::Night),
            AlarmState::ArmedVacation => Some(ArmMode::Vacation),
            AlarmState::ArmedCustomBypass => Some(ArmMode::CustomBypass),
            _ => None,
        }
    }

    pub fn is_armed(self) -> bool {
        self.armed_mode().is_some()
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delays of one arm mode, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeSettings {
    /// Whether this mode can be armed (and is offered to Home Assistant).
    pub enabled: bool,
    /// Exit delay: time in `arming` before the mode is armed. 0: armed at once.
    pub exit_delay_secs: u32,
    /// Entry delay: time in `pending` after an entry-delay sensor trips. 0: triggered at once.
    pub entry_delay_secs: u32,
    /// Time in `triggered` before returning to this mode (or disarming, per
    /// [`Settings::disarm_after_trigger`]). 0: triggered until disarmed.
    pub trigger_time_secs: u32,
}

/// The alarm's settings. Defaults: home, away and night enabled; vacation and custom bypass
/// disabled; codes required to arm and to disarm; see [`Settings::default`] for the delays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub home: ModeSettings,
    pub away: ModeSettings,
    pub night: ModeSettings,
    pub vacation: ModeSettings,
    pub custom_bypass: ModeSettings,
    /// Trigger time when triggered from `disarmed` (an always-on sensor, a TRIGGER command).
    /// 0: until disarmed.
    pub disarmed_trigger_time_secs: u32,
    /// After the trigger time: disarm instead of returning to the armed mode.
    pub disarm_after_trigger: bool,
    /// Arming needs a code (Home Assistant's `code_arm_required`).
    pub code_arm_required: bool,
    /// Disarming needs a code (Home Assistant's `code_disarm_required`).
    pub code_disarm_required: bool,
    /// A command identical to the previous one (same action, force, user, origin and kind
    /// of code) within this many milliseconds, with no sensor change or delay ending in
    /// between, is a duplicate and ignored. 0: off.
    pub dedup_window_ms: u32,
    /// An arm command within this many milliseconds after a disarm is refused. 0: off.
    pub rearm_guard_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        // Alarmo's defaults for away (60 s to leave, 30 s to reach the keypad); home and night
        // arm at once because one stays inside; trigger time 10 minutes (sirens often stop
        // at 15 by law, and a panel that rings forever is switched off at the mains).
        let delayed = ModeSettings {
            enabled: true,
            exit_delay_secs: 60,
            entry_delay_secs: 30,
            trigger_time_secs: 600,
        };
        let inside = ModeSettings {
            exit_delay_secs: 0,
            ..delayed
        };
        Settings {
            home: inside,
            away: delayed,
            night: inside,
            vacation: ModeSettings {
                enabled: false,
                ..delayed
            },
            custom_bypass: ModeSettings {
                enabled: false,
                ..delayed
            },
            disarmed_trigger_time_secs: 600,
            disarm_after_trigger: false,
            code_arm_required: true,
            code_disarm_required: true,
            dedup_window_ms: 1_000,
            rearm_guard_ms: 2_000,
        }
    }
}

impl Settings {
    pub fn mode(&self, mode: ArmMode) -> &ModeSettings {
        match mode {
            ArmMode::Home => &self.home,
            ArmMode::Away => &self.away,
            ArmMode::Night => &self.night,
            ArmMode::Vacation => &self.vacation,
            ArmMode::CustomBypass => &self.custom_bypass,
        }
    }

    pub fn mode_mut(&mut self, mode: ArmMode) -> &mut ModeSettings {
        match mode {
            ArmMode::Home => &mut self.home,
            ArmMode::Away => &mut self.away,
            ArmMode::Night => &mut self.night,
            ArmMode::Vacation => &mut self.vacation,
            ArmMode::CustomBypass => &mut self.custom_bypass,
        }
    }

    /// The enabled modes, in [`ArmMode::ALL`] order (for HA's `supported_features`).
    pub fn enabled_modes(&self) -> Vec<ArmMode> {
        ArmMode::ALL
            .into_iter()
            .filter(|m| self.mode(*m).enabled)
            .collect()
    }
}

/// A sensor's identifier (the store's key, as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SensorId(pub String);

impl From<&str> for SensorId {
    fn from(s: &str) -> Self {
        SensorId(s.to_owned())
    }
}

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a sensor watches. Fire, smoke and water sensors are always on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    Door,
    Window,
    Motion,
    Tamper,
    Fire,
    Smoke,
    Water,
}

impl SensorKind {
    pub const ALL: [SensorKind; 7] = [
        SensorKind::Door,
        SensorKind::Window,
        SensorKind::Motion,
        SensorKind::Tamper,
        SensorKind::Fire,
        SensorKind::Smoke,
        SensorKind::Water,
    ];

    /// Always-on sensors trip in every state, `disarmed` included, and at once (no entry
    /// delay), whatever their modes say.
    pub fn is_always_on(self) -> bool {
        matches!(
            self,
            SensorKind::Fire | SensorKind::Smoke | SensorKind::Water
        )
    }
}

/// A sensor as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    pub id: SensorId,
    /// Shown to users, named in "open sensors" refusals.
    pub name: String,
    pub kind: SensorKind,
    /// The arm modes in which the sensor is watched (ignored for always-on kinds).
    pub modes: BTreeSet<ArmMode>,
    /// Tripping in an armed mode starts the entry delay (`pending`); otherwise it triggers
    /// at once.
    pub use_entry_delay: bool,
    /// May be open when arming starts and during the exit delay (Alarmo's "use exit
    /// delay"): for the door one leaves by and motion sensors on the way out. It must be
    /// closed when the exit delay ends.
    pub allow_open_while_arming: bool,
    pub source: SensorSource,
}

impl Sensor {
    /// Whether the sensor is watched in `mode` (always-on sensors are watched everywhere).
    pub fn watched_in(&self, mode: Option<ArmMode>) -> bool {
        self.kind.is_always_on() || mode.is_some_and(|m| self.modes.contains(&m))
    }

    /// Whether a trip skips the entry delay.
    pub fn is_instant(&self) -> bool {
        self.kind.is_always_on() || !self.use_entry_delay
    }
}
