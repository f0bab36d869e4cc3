//! The state machine itself: [`Alarm`]. The rules are in the module doc of [`super`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::command::Action;
use super::model::{AlarmState, ArmMode, Sensor, SensorId, Settings};

/// Where a command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Keypad,
    HomeAssistant,
    Api,
}

/// Whether a command came with a code the caller has already verified, and which kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeUse {
    /// No code was given.
    None,
    /// A valid code with the permission for this action.
    Normal,
    /// A valid duress code: acts exactly like [`CodeUse::Normal`], plus [`Effect::Duress`].
    Duress,
}

/// Who asks, from where, with what kind of code. PIN verification, permissions and
/// lockouts happen before this (in the server); the machine only applies the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The user's name, when known (never the code).
    pub who: Option<String>,
    pub via: Via,
    pub code: CodeUse,
}

/// A command to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub action: Action,
    /// Arm even with open sensors, bypassing them until the next disarm.
    pub force: bool,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("arm mode {0} is not enabled")]
    ModeDisabled(ArmMode),
    #[error("{action} is not allowed while {state}")]
    NotAllowed { action: Action, state: AlarmState },
    #[error("a code is required to {0}")]
    CodeRequired(&'static str),
    #[error("arming right after a disarm is blocked for another {retry_after_ms} ms")]
    RearmGuard { retry_after_ms: u64 },
    #[error("cannot arm: open sensors: {} (arm with force to bypass them)", names.join(", "))]
    OpenSensors {
        sensors: Vec<SensorId>,
        names: Vec<String>,
    },
}

impl Rejection {
    /// A stable short name for the error topic, counters and audit rows.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::ModeDisabled(_) => "mode_disabled",
            Rejection::NotAllowed { .. } => "not_allowed",
            Rejection::CodeRequired(_) => "code_required",
            Rejection::RearmGuard { .. } => "rearm_guard",
            Rejection::OpenSensors { .. } => "open_sensors",
        }
    }
}

/// A sensor event named a sensor the machine does not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown sensor {0}")]
pub struct UnknownSensor(pub SensorId);

/// Why the state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionReason {
    /// An accepted command.
    Command(Action),
    /// A sensor tripped (to `pending` or `triggered`).
    Sensor(SensorId),
    ExitDelayOver,
    EntryDelayOver,
    TriggerTimeOver,
    /// A sensor not allowed open while arming opened during the exit delay (back to the
    /// state before arming).
    ArmingAborted {
        sensors: Vec<SensorId>,
    },
    /// Sensors were still open when the exit delay ended (back to the state before arming).
    ArmFailed {
        sensors: Vec<SensorId>,
    },
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: AlarmState,
    pub to: AlarmState,
    /// The user behind the command; `None` for sensors, delays and anonymous commands.
    pub by: Option<String>,
    /// Where the command came from; `None` for sensors and delays.
    pub via: Option<Via>,
    pub reason: TransitionReason,
    /// When it happened: `now`, or the deadline it resolves (which may be earlier than the
    /// call that resolved it, e.g. after a restart).
    pub at: SystemTime,
}

/// What a step changed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Transition(Transition),
    /// A sensor's known state changed (for live values and `ready_to_arm`).
    SensorChanged {
        sensor: SensorId,
        active: bool,
    },
    /// A watched, not bypassed sensor became active in an armed, arming (always-on only),
    /// pending, triggered or (always-on only) disarmed state.
    SensorTripped {
        sensor: SensorId,
        state: AlarmState,
        /// It skips the entry delay.
        instant: bool,
    },
    /// These sensors are ignored until the next disarm (a forced arm).
    Bypassed {
        sensors: Vec<SensorId>,
    },
    /// A duress code was used. Nothing else in the outcome or the state differs from a
    /// normal code: publish this silently.
    Duress {
        by: Option<String>,
        via: Via,
    },
}

/// What the machine did with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Identical to the previous command within the de-duplication window: nothing done,
    /// nothing to publish.
    Duplicate,
    Rejected(Rejection),
}

/// A command's result: the effects (deadlines that fell due first, then the command's own)
/// and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub verdict: Verdict,
}

/// The view for the UI, the REST API and Home Assistant's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmStatus {
    pub state: AlarmState,
    /// Armed: its mode; arming: the mode being armed; pending and triggered: the armed mode
    /// they came from (`None` when triggered from disarmed).
    pub arm_mode: Option<ArmMode>,
    /// Where the running delay leads.
    pub next_state: Option<AlarmState>,
    /// Whole seconds left in the running delay (rounded up).
    pub delay_remaining_secs: Option<u64>,
    pub deadline: Option<SystemTime>,
    /// Sensors known to be active.
    pub open_sensors: Vec<SensorId>,
    pub bypassed_sensors: Vec<SensorId>,
    /// No open sensor would block arming any enabled mode without force.
    pub ready_to_arm: bool,
    /// The enabled modes that could be armed now without force (open sensors only; the
    /// state, codes and the re-arm guard are not considered).
    pub ready_to_arm_modes: Vec<ArmMode>,
    /// The user behind the last accepted command (`None` if it had none).
    pub changed_by: Option<String>,
    /// The sensor that started the entry delay or the trigger.
    pub tripped_by: Option<SensorId>,
}

/// The key by which repeated commands are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandKey {
    pub action: Action,
    pub force: bool,
    pub who: Option<String>,
    pub via: Via,
    pub code: CodeUse,
}

/// The previous command, for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCommand {
    pub key: CommandKey,
    pub at_ms: u64,
}

/// Everything the machine knows besides its configuration, to persist and
/// [`Alarm::restore`]. Times are absolute, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmSnapshot {
    pub state: AlarmState,
    /// Arming: the mode being armed.
    #[serde(default)]
    pub target: Option<ArmMode>,
    /// Arming: the armed mode before arming (`None`: disarmed), returned to if arming fails.
    /// Pending and triggered: the armed mode to return to after the trigger time.
    #[serde(default)]
    pub previous: Option<ArmMode>,
    /// Arming: the arm was forced (sensors still open at the end are bypassed).
    #[serde(default)]
    pub force: bool,
    /// When the running delay ends.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Pending and triggered: the sensor that started it.
    #[serde(default)]
    pub tripped_by: Option<SensorId>,
    #[serde(default)]
    pub bypassed: BTreeSet<SensorId>,
    /// Last known state per sensor (`true`: active/open). Unknown sensors are absent.
    #[serde(default)]
    pub sensors: BTreeMap<SensorId, bool>,
    #[serde(default)]
    pub changed_by: Option<String>,
    /// For the re-arm guard.
    #[serde(default)]
    pub last_disarm_ms: Option<u64>,
    /// For de-duplication.
    #[serde(default)]
    pub last_command: Option<LastCommand>,
}

impl AlarmSnapshot {
    fn disarmed() -> Self {
        AlarmSnapshot {
            state: AlarmState::Disarmed,
            target: None,
            previous: None,
            force: false,
            deadline_ms: None,
            tripped_by: None,
            bypassed: BTreeSet::new(),
            sensors: BTreeMap::new(),
            changed_by: None,
            last_disarm_ms: None,
            last_command: None,
        }
    }
}

/// The alarm state machine. Every method takes `now`; each first resolves the deadlines
/// that fell due by then, as if a timer had fired at each of them.
#[derive(Debug, Clone)]
pub struct Alarm {
    settings: Settings,
    sensors: BTreeMap<SensorId, Sensor>,
    s: AlarmSnapshot,
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn secs_to_ms(secs: u32) -> u64 {
    u64::from(secs) * 1000
}

/// The most deadlines one call can resolve (arming → armed, or pending → triggered →
/// back): a bound that also guards against a corrupt snapshot.
const MAX_RESOLUTIONS: usize = 8;

impl Alarm {
    /// A fresh alarm: disarmed, no sensor state known.
    pub fn new(settings: Settings, sensors: Vec<Sensor>) -> Alarm {
        Alarm {
            settings,
            sensors: sensors.into_iter().map(|s| (s.id.clone(), s)).collect(),
            s: AlarmSnapshot::disarmed(),
        }
    }

    /// The alarm as it was when `snapshot` was taken, with the deadlines that passed since
    /// resolved as if they had run (their effects returned, stamped with their own times).
    /// Nothing else happens: no sensor is re-evaluated, so nothing triggers spuriously.
    /// An inconsistent snapshot (hand-edited, corrupt) is repaired towards the safe side.
    pub fn restore(
        snapshot: AlarmSnapshot,
        settings: Settings,
        sensors: Vec<Sensor>,
        now: SystemTime,
    ) -> (Alarm, Vec<Effect>) {
        let mut alarm = Alarm {
            settings,
            sensors: sensors.into_iter().map(|s| (s.id.clone(), s)).collect(),
            s: snapshot,
        };
        alarm.forget_unknown_sensors();
        alarm.repair(to_ms(now));
        let effects = alarm.advance(now);
        (alarm, effects)
    }

    /// Replaces settings and sensors. The state stays as it is (a mode disabled while armed
    /// stays armed until disarmed); removed sensors are forgotten, bypasses included.
    pub fn reconfigure(&mut self, settings: Settings, sensors: Vec<Sensor>) {
        self.settings = settings;
        self.sensors = sensors.into_iter().map(|s| (s.id.clone(), s)).collect();
        self.forget_unknown_sensors();
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn sensors(&self) -> impl Iterator<Item = &Sensor> {
        self.sensors.values()
    }

    pub fn state(&self) -> AlarmState {
        self.s.state
    }

    /// A sensor's last known state (`Some(true)`: active/open), `None` until it reports:
    /// the "current value" the UI shows per sensor.
    pub fn sensor_state(&self, id: &SensorId) -> Option<bool> {
        self.s.sensors.get(id).copied()
    }

    /// When the running delay ends: sleep until then and call [`Alarm::advance`].
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.s.deadline_ms.map(to_time)
    }

    /// The state to persist (after every step that returned effects, or every step).
    pub fn snapshot(&self) -> AlarmSnapshot {
        self.s.clone()
    }

    /// Resolves the deadlines due at `now`.
    pub fn advance(&mut self, now: SystemTime) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.resolve_due(to_ms(now), &mut effects);
        effects
    }

    /// Arms, disarms or triggers.
    pub fn command(&mut self, command: Command, auth: &Authorization, now: SystemTime) -> Outcome {
        let now_ms = to_ms(now);
        let mut effects = Vec::new();
        self.resolve_due(now_ms, &mut effects);
        let key = CommandKey {
            action: command.action,
            force: command.force,
            who: auth.who.clone(),
            via: auth.via,
            code: auth.code,
        };
        let window = u64::from(self.settings.dedup_window_ms);
        if let Some(last) = &self.s.last_command
            && last.key == key
            && now_ms >= last.at_ms
            && now_ms - last.at_ms < window
        {
            return Outcome {
                effects,
                verdict: Verdict::Duplicate,
            };
        }
        self.s.last_command = Some(LastCommand { key, at_ms: now_ms });
        if auth.code == CodeUse::Duress {
            effects.push(Effect::Duress {
                by: auth.who.clone(),
                via: auth.via,
            });
        }
        let result = match command.action {
            Action::Disarm => self.disarm(auth, now_ms, &mut effects),
            Action::Trigger => self.trigger(auth, now_ms, &mut effects),
            arm => match arm.arm_mode() {
                Some(mode) => self.arm(mode, command.force, auth, now_ms, &mut effects),
                None => Err(Rejection::NotAllowed {
                    action: arm,
                    state: self.s.state,
                }),
            },
        };
        let verdict = match result {
            Ok(()) => {
                self.s.changed_by = auth.who.clone();
                Verdict::Accepted
            }
            Err(r) => Verdict::Rejected(r),
        };
        Outcome { effects, verdict }
    }

    /// A sensor reported `active` (open, motion, smoke) or inactive. Only changes count: a
    /// repeated report of the known state does nothing.
    pub fn sensor(
        &mut self,
        id: &SensorId,
        active: bool,
        now: SystemTime,
    ) -> Result<Vec<Effect>, UnknownSensor> {
        let Some(sensor) = self.sensors.get(id).cloned() else {
            return Err(UnknownSensor(id.clone()));
        };
        let now_ms = to_ms(now);
        let mut effects = Vec::new();
        self.resolve_due(now_ms, &mut effects);
        if self.s.sensors.insert(id.clone(), active) == Some(active) {
            return Ok(effects);
        }
        // The situation changed: the same command again is a new attempt, not a duplicate.
        self.s.last_command = None;
        effects.push(Effect::SensorChanged {
            sensor: id.clone(),
            active,
        });
        if !active || self.s.bypassed.contains(id) {
            return Ok(effects);
        }
        let state = self.s.state;
        let trip = |instant: bool| Effect::SensorTripped {
            sensor: id.clone(),
            state,
            instant,
        };
        let reason = TransitionReason::Sensor(id.clone());
        match state {
            AlarmState::Disarmed => {
                if sensor.kind.is_always_on() {
                    effects.push(trip(true));
                    self.enter_triggered(now_ms, None, Some(id.clone()), reason, &mut effects);
                }
            }
            AlarmState::Arming => {
                if sensor.kind.is_always_on() {
                    effects.push(trip(true));
                    let back_to = self.s.previous;
                    self.enter_triggered(now_ms, back_to, Some(id.clone()), reason, &mut effects);
                } else if sensor.watched_in(self.s.target) && !sensor.allow_open_while_arming {
                    self.revert_arming(
                        now_ms,
                        TransitionReason::ArmingAborted {
                            sensors: vec![id.clone()],
                        },
                        &mut effects,
                    );
                }
            }
            AlarmState::Pending => {
                if sensor.watched_in(self.s.previous) {
                    let instant = sensor.is_instant();
                    effects.push(trip(instant));
                    if instant {
                        let back_to = self.s.previous;
                        self.enter_triggered(
                            now_ms,
                            back_to,
                            Some(id.clone()),
                            reason,
                            &mut effects,
                        );
                    }
                }
            }
            AlarmState::Triggered => {
                if sensor.watched_in(self.s.previous) {
                    effects.push(trip(sensor.is_instant()));
                }
            }
            armed => {
                let mode = armed.armed_mode();
                if sensor.watched_in(mode) {
                    let entry = mode.map_or(0, |m| self.settings.mode(m).entry_delay_secs);
                    let instant = sensor.is_instant() || entry == 0;
                    effects.push(trip(instant));
                    if instant {
                        self.enter_triggered(now_ms, mode, Some(id.clone()), reason, &mut effects);
                    } else {
                        self.s.previous = mode;
                        self.s.deadline_ms = Some(now_ms.saturating_add(secs_to_ms(entry)));
                        self.s.tripped_by = Some(id.clone());
                        self.go(AlarmState::Pending, now_ms, None, reason, &mut effects);
                    }
                }
            }
        }
        Ok(effects)
    }

    /// The view for the UI and Home Assistant's attributes, at `now` (call
    /// [`Alarm::advance`] first so that due deadlines are resolved).
    pub fn status(&self, now: SystemTime) -> AlarmStatus {
        let now_ms = to_ms(now);
        let s = &self.s;
        let arm_mode = match s.state {
            AlarmState::Arming => s.target,
            AlarmState::Pending | AlarmState::Triggered => s.previous,
            other => other.armed_mode(),
        };
        let next_state = match s.state {
            AlarmState::Arming => s.target.map(ArmMode::armed_state),
            AlarmState::Pending => Some(AlarmState::Triggered),
            AlarmState::Triggered if s.deadline_ms.is_some() => Some(self.after_trigger_state()),
            _ => None,
        };
        let ready_to_arm_modes: Vec<ArmMode> = self
            .settings
            .enabled_modes()
            .into_iter()
            .filter(|m| self.blocking_sensors(*m, true).is_empty())
            .collect();
        AlarmStatus {
            state: s.state,
            arm_mode,
            next_state,
            delay_remaining_secs: s
                .deadline_ms
                .map(|d| d.saturating_sub(now_ms).div_ceil(1000)),
            deadline: self.next_deadline(),
            open_sensors: s
                .sensors
                .iter()
                .filter(|(_, active)| **active)
                .map(|(id, _)| id.clone())
                .collect(),
            bypassed_sensors: s.bypassed.iter().cloned().collect(),
            ready_to_arm: ready_to_arm_modes.len() == self.settings.enabled_modes().len(),
            ready_to_arm_modes,
            changed_by: s.changed_by.clone(),
            tripped_by: s.tripped_by.clone(),
        }
    }

    fn arm(
        &mut self,
        mode: ArmMode,
        force: bool,
        auth: &Authorization,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Rejection> {
        let action = mode.action();
        let mode_settings = *self.settings.mode(mode);
        if !mode_settings.enabled {
            return Err(Rejection::ModeDisabled(mode));
        }
        let state = self.s.state;
        let previous = match state {
            AlarmState::Disarmed => None,
            s if s.is_armed() && s != mode.armed_state() => s.armed_mode(),
            _ => return Err(Rejection::NotAllowed { action, state }),
        };
        if self.settings.code_arm_required && auth.code == CodeUse::None {
            return Err(Rejection::CodeRequired("arm"));
        }
        if let Some(disarmed_at) = self.s.last_disarm_ms {
            let until = disarmed_at.saturating_add(u64::from(self.settings.rearm_guard_ms));
            if now_ms >= disarmed_at && now_ms < until {
                return Err(Rejection::RearmGuard {
                    retry_after_ms: until - now_ms,
                });
            }
        }
        let exit_delay = mode_settings.exit_delay_secs > 0;
        let blocking = self.blocking_sensors(mode, exit_delay);
        if !blocking.is_empty() {
            if !force {
                let names = blocking
                    .iter()
                    .map(|id| {
                        self.sensors
                            .get(id)
                            .map_or(id.0.clone(), |s| s.name.clone())
                    })
                    .collect();
                return Err(Rejection::OpenSensors {
                    sensors: blocking,
                    names,
                });
            }
            self.bypass(blocking, effects);
        }
        let reason = TransitionReason::Command(action);
        self.s.tripped_by = None;
        if exit_delay {
            self.s.target = Some(mode);
            self.s.previous = previous;
            self.s.force = force;
            self.s.deadline_ms =
                Some(now_ms.saturating_add(secs_to_ms(mode_settings.exit_delay_secs)));
            self.go(AlarmState::Arming, now_ms, Some(auth), reason, effects);
        } else {
            self.clear_delay();
            self.go(mode.armed_state(), now_ms, Some(auth), reason, effects);
        }
        Ok(())
    }

    fn disarm(
        &mut self,
        auth: &Authorization,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Rejection> {
        let state = self.s.state;
        if state == AlarmState::Disarmed {
            return Err(Rejection::NotAllowed {
                action: Action::Disarm,
                state,
            });
        }
        if self.settings.code_disarm_required && auth.code == CodeUse::None {
            return Err(Rejection::CodeRequired("disarm"));
        }
        self.s.last_disarm_ms = Some(now_ms);
        self.enter_disarmed(
            now_ms,
            Some(auth),
            TransitionReason::Command(Action::Disarm),
            effects,
        );
        Ok(())
    }

    fn trigger(
        &mut self,
        auth: &Authorization,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Rejection> {
        let state = self.s.state;
        let back_to = match state {
            AlarmState::Triggered => {
                return Err(Rejection::NotAllowed {
                    action: Action::Trigger,
                    state,
                });
            }
            AlarmState::Disarmed => None,
            AlarmState::Arming | AlarmState::Pending => self.s.previous,
            armed => armed.armed_mode(),
        };
        let tripped_by = self.s.tripped_by.clone();
        self.enter_triggered_by(
            now_ms,
            back_to,
            tripped_by,
            Some(auth),
            TransitionReason::Command(Action::Trigger),
            effects,
        );
        Ok(())
    }

    /// Open, not bypassed sensors watched in `mode` that keep it from being armed.
    /// `exit_delay`: sensors allowed open while arming do not block.
    fn blocking_sensors(&self, mode: ArmMode, exit_delay: bool) -> Vec<SensorId> {
        self.sensors
            .values()
            .filter(|s| s.watched_in(Some(mode)))
            .filter(|s| !(exit_delay && s.allow_open_while_arming))
            .filter(|s| !self.s.bypassed.contains(&s.id))
            .filter(|s| self.s.sensors.get(&s.id) == Some(&true))
            .map(|s| s.id.clone())
            .collect()
    }

    fn bypass(&mut self, sensors: Vec<SensorId>, effects: &mut Vec<Effect>) {
        self.s.bypassed.extend(sensors.iter().cloned());
        effects.push(Effect::Bypassed { sensors });
    }

    fn resolve_due(&mut self, now_ms: u64, effects: &mut Vec<Effect>) {
        for _ in 0..MAX_RESOLUTIONS {
            let Some(due) = self.s.deadline_ms.filter(|d| *d <= now_ms) else {
                return;
            };
            self.s.last_command = None;
            match self.s.state {
                AlarmState::Arming => self.finish_arming(due, effects),
                AlarmState::Pending => {
                    let back_to = self.s.previous;
                    let tripped_by = self.s.tripped_by.clone();
                    self.enter_triggered(
                        due,
                        back_to,
                        tripped_by,
                        TransitionReason::EntryDelayOver,
                        effects,
                    );
                }
                AlarmState::Triggered => {
                    let to = self.after_trigger_state();
                    match to.armed_mode() {
                        Some(_) => {
                            self.clear_delay();
                            self.s.tripped_by = None;
                            self.go(to, due, None, TransitionReason::TriggerTimeOver, effects);
                        }
                        None => self.enter_disarmed(
                            due,
                            None,
                            TransitionReason::TriggerTimeOver,
                            effects,
                        ),
                    }
                }
                _ => self.s.deadline_ms = None,
            }
        }
    }

    fn after_trigger_state(&self) -> AlarmState {
        match self.s.previous {
            Some(mode) if !self.settings.disarm_after_trigger => mode.armed_state(),
            _ => AlarmState::Disarmed,
        }
    }

    fn finish_arming(&mut self, at: u64, effects: &mut Vec<Effect>) {
        let Some(mode) = self.s.target else {
            self.enter_disarmed(at, None, TransitionReason::ExitDelayOver, effects);
            return;
        };
        let open = self.blocking_sensors(mode, false);
        if !open.is_empty() {
            if !self.s.force {
                self.revert_arming(at, TransitionReason::ArmFailed { sensors: open }, effects);
                return;
            }
            self.bypass(open, effects);
        }
        self.clear_delay();
        self.go(
            mode.armed_state(),
            at,
            None,
            TransitionReason::ExitDelayOver,
            effects,
        );
    }

    /// Back to the state before arming: the previous armed mode, or disarmed.
    fn revert_arming(&mut self, at: u64, reason: TransitionReason, effects: &mut Vec<Effect>) {
        match self.s.previous {
            Some(mode) => {
                self.clear_delay();
                self.go(mode.armed_state(), at, None, reason, effects);
            }
            None => self.enter_disarmed(at, None, reason, effects),
        }
    }

    fn enter_triggered(
        &mut self,
        at: u64,
        back_to: Option<ArmMode>,
        tripped_by: Option<SensorId>,
        reason: TransitionReason,
        effects: &mut Vec<Effect>,
    ) {
        self.enter_triggered_by(at, back_to, tripped_by, None, reason, effects);
    }

    fn enter_triggered_by(
        &mut self,
        at: u64,
        back_to: Option<ArmMode>,
        tripped_by: Option<SensorId>,
        auth: Option<&Authorization>,
        reason: TransitionReason,
        effects: &mut Vec<Effect>,
    ) {
        let trigger_time = match back_to {
            Some(mode) => self.settings.mode(mode).trigger_time_secs,
            None => self.settings.disarmed_trigger_time_secs,
        };
        self.s.target = None;
        self.s.force = false;
        self.s.previous = back_to;
        self.s.tripped_by = tripped_by;
        self.s.deadline_ms =
            (trigger_time > 0).then(|| at.saturating_add(secs_to_ms(trigger_time)));
        self.go(AlarmState::Triggered, at, auth, reason, effects);
    }

    fn enter_disarmed(
        &mut self,
        at: u64,
        auth: Option<&Authorization>,
        reason: TransitionReason,
        effects: &mut Vec<Effect>,
    ) {
        self.clear_delay();
        self.s.tripped_by = None;
        self.s.bypassed.clear();
        self.go(AlarmState::Disarmed, at, auth, reason, effects);
    }

    /// Clears what only a running delay (or a pending/triggered state) carries.
    fn clear_delay(&mut self) {
        self.s.target = None;
        self.s.previous = None;
        self.s.force = false;
        self.s.deadline_ms = None;
    }

    fn go(
        &mut self,
        to: AlarmState,
        at: u64,
        auth: Option<&Authorization>,
        reason: TransitionReason,
        effects: &mut Vec<Effect>,
    ) {
        let from = self.s.state;
        self.s.state = to;
        effects.push(Effect::Transition(Transition {
            from,
            to,
            by: auth.and_then(|a| a.who.clone()),
            via: auth.map(|a| a.via),
            reason,
            at: to_time(at),
        }));
    }

    fn forget_unknown_sensors(&mut self) {
        let known = &self.sensors;
        self.s.sensors.retain(|id, _| known.contains_key(id));
        self.s.bypassed.retain(|id| known.contains_key(id));
        if self
            .s
            .tripped_by
            .as_ref()
            .is_some_and(|id| !known.contains_key(id))
        {
            self.s.tripped_by = None;
        }
    }

    /// Makes a snapshot consistent: each state carries exactly the fields it uses. A
    /// consistent snapshot is left as it is.
    fn repair(&mut self, now_ms: u64) {
        let s = &mut self.s;
        match s.state {
            AlarmState::Disarmed => {
                s.target = None;
                s.previous = None;
                s.force = false;
                s.deadline_ms = None;
                s.tripped_by = None;
                s.bypassed.clear();
            }
            AlarmState::Arming => {
                if s.target.is_none() {
                    // Nothing to arm to: the safe reading of a broken arming is disarmed.
                    s.state = AlarmState::Disarmed;
                    s.previous = None;
                    s.force = false;
                    s.deadline_ms = None;
                    s.bypassed.clear();
                } else if s.deadline_ms.is_none() {
                    s.deadline_ms = Some(now_ms);
                }
                s.tripped_by = None;
            }
            AlarmState::Pending => {
                s.target = None;
                s.force = false;
                if s.deadline_ms.is_none() {
                    s.deadline_ms = Some(now_ms);
                }
            }
            AlarmState::Triggered => {
                s.target = None;
                s.force = false;
            }
            _ => {
                s.target = None;
                s.previous = None;
                s.force = false;
                s.deadline_ms = None;
                s.tripped_by = None;
            }
        }
    }
}
