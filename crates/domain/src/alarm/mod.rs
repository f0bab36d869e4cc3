//! The alarm: a pure state machine, the command payload parser and sensor sources.
//! This header is the machine's specification; ADR 0012 gives the reasons for its choices.
//!
//! - [`model`]: [`AlarmState`], [`ArmMode`], [`Settings`] (per-mode delays), [`Sensor`].
//! - [`machine`]: [`Alarm`], driven by [`Alarm::command`], [`Alarm::sensor`] and
//!   [`Alarm::advance`]; [`AlarmSnapshot`] and [`Alarm::restore`]; [`AlarmStatus`].
//! - [`command`]: command-topic payloads to a [`CommandPayload`] (action and PIN).
//! - [`source`]: a [`SensorSource`] (an MQTT topic and payload match) to active/inactive.
//! - [`topics`]: the alarm's MQTT topics (command, state, error, duress, …).
//!
//! Architecture invariant: no I/O, no clock, no randomness, no async. Time is the `now`
//! every method takes; the service that wires this to the store, the broker and Home
//! Assistant sleeps until [`Alarm::next_deadline`] and calls [`Alarm::advance`]. PINs are
//! verified (and rate-limited) by the caller: the machine receives an [`Authorization`]
//! saying who, from where ([`Via`]: keypad, Home Assistant, API) and whether a valid code
//! was given and of which kind ([`CodeUse`]: none, normal, duress).
//!
//! # States
//!
//! `disarmed`, `arming` (exit delay), `armed_home`, `armed_away`, `armed_night`,
//! `armed_vacation`, `armed_custom_bypass`, `pending` (entry delay), `triggered`: Home
//! Assistant's strings ([`AlarmState::as_str`]). Each arm mode has its own exit delay, entry
//! delay and trigger time in seconds ([`ModeSettings`]; trigger time 0: until disarmed) and
//! an enabled flag.
//!
//! # Commands ([`Alarm::command`])
//!
//! - **Arm** (mode, force) from `disarmed`, or from another armed mode (changing modes, as
//!   Alarmo). Refused, in this order: mode not enabled; any other state (arming, pending,
//!   triggered, or already armed in that mode); no code while `code_arm_required`; within
//!   the re-arm guard after a disarm; open sensors (below). Exit delay 0 arms at once;
//!   otherwise `arming`, which ends in the armed state when the delay is over.
//! - **Disarm** from any state but `disarmed` (refused there, as Alarmo); needs a code while
//!   `code_disarm_required`. Cancels every delay and clears all bypasses.
//! - **Trigger** (HA's `alarm_trigger`, a panic button) from any state but `triggered`, at
//!   once (no entry delay) and without a code, as Alarmo.
//! - A command identical to the previous one (action, force, user, origin, kind of code)
//!   within `dedup_window_ms` (default 1 s) is a [`Verdict::Duplicate`]: nothing happens,
//!   nothing is published (HA cards repeat a DISARM within 50 ms). The window counts from
//!   the first of a burst. A sensor change or a delay ending in between makes the next
//!   command a new attempt (an arm refused for an open window is retried at once after
//!   closing it).
//! - An arm within `rearm_guard_ms` (default 2 s) after a disarm is refused
//!   ([`Rejection::RearmGuard`]): a stale repeated ARM must not undo the disarm.
//! - A duress code acts exactly as a normal code, and the command's outcome, the state and
//!   the status are the same; the only difference is an extra [`Effect::Duress`], emitted
//!   for every non-duplicate command that carries one, accepted or refused, so a help call
//!   goes out even if the panel was already disarmed.
//! - `changed_by` is the user of the last accepted command (`None` if it had none), as
//!   Alarmo's attribute.
//!
//! # Sensors ([`Alarm::sensor`])
//!
//! A sensor is watched in its modes; fire, smoke and water sensors are always on: watched in
//! every state, `disarmed` included, and instant. Only changes count (a repeated
//! report of the known state does nothing), and a sensor trips when it becomes active:
//! - armed, watched: instant sensors (or entry delay 0) → `triggered`; others → `pending`
//!   for the mode's entry delay, then `triggered`;
//! - pending: an instant sensor watched in the mode → `triggered` at once; an entry-delay
//!   one is recorded as a trip and the delay runs on;
//! - arming (only the target mode's sensors are watched, also when changing from another
//!   armed mode, as Alarmo): an always-on sensor → `triggered`; a sensor watched in it and not
//!   "allowed open while arming" **aborts the arming** (back to the state before it,
//!   [`TransitionReason::ArmingAborted`]), as Alarmo; one that is allowed is ignored;
//! - triggered: a trip is recorded, the state stays;
//! - disarmed: only always-on sensors trigger.
//!
//! A sensor whose state is not known yet (no report since start-up or since it was added)
//! does not block arming; its first active report trips it like a change.
//!
//! # Open sensors and bypass
//!
//! Arming is refused while a sensor watched in the target mode is open, naming the sensors
//! ([`Rejection::OpenSensors`]), unless forced: then they are bypassed (ignored) until the
//! next disarm ([`Effect::Bypassed`]). Sensors "allowed open while arming" (Alarmo's "use
//! exit delay") do not block when the mode has an exit delay, but must be closed when it
//! ends: a sensor still open then makes the arming fail (back to the state before it,
//! [`TransitionReason::ArmFailed`]), or, for a forced arm, is bypassed then. So the machine
//! never enters an armed state by arming with an open, watched, not bypassed sensor.
//! Returning to the armed mode after the trigger time does not re-check sensors: one still
//! open trips again only after it closes and opens again.
//!
//! # Trigger time and return
//!
//! After the trigger time (the armed mode's; `disarmed_trigger_time_secs` when triggered
//! from `disarmed`) the alarm returns to the armed mode it was triggered from (bypasses
//! kept), or to `disarmed` with `disarm_after_trigger` or when it was triggered from
//! `disarmed` (and from an arming that started from `disarmed`). Trigger time 0: triggered
//! until disarmed. Nothing else leaves `triggered`.
//!
//! # Deadlines and persistence
//!
//! A running delay is one absolute deadline (milliseconds since the Unix epoch). Every
//! method first resolves the deadlines due at its `now`, each at its own time (the next
//! deadline counts from the previous one, not from `now`), so a late timer, a service that
//! slept too long and a restart all give the same result as a punctual timer.
//! [`Alarm::snapshot`] is everything besides the configuration (state, target and previous
//! armed mode, deadline, bypasses, sensor states, `changed_by`, the last disarm and command);
//! [`Alarm::restore`] resumes it and resolves what fell due while the process was down (an
//! exit delay over → armed if the sensors allow; an entry delay over → triggered, and a
//! trigger time over too → back to armed or disarmed). It re-evaluates no sensor, so a
//! restart never triggers by itself.

pub mod command;
pub mod machine;
pub mod model;
pub mod source;
pub mod topics;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use command::{Action, CommandError, CommandPayload, MAX_COMMAND_BYTES, Pin, parse_command};
pub use machine::{
    Alarm, AlarmSnapshot, AlarmStatus, Authorization, CodeUse, Command, CommandKey, Effect,
    LastCommand, Outcome, Rejection, Transition, TransitionReason, UnknownSensor, Verdict, Via,
};
pub use model::{AlarmState, ArmMode, ModeSettings, Sensor, SensorId, SensorKind, Settings};
pub use source::{MAX_SOURCE_PAYLOAD_BYTES, MqttSource, SensorSource, SourceError};
