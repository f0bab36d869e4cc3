//! Property tests. The parser and sensor sources take arbitrary bytes and mutations of valid
//! payloads without panicking. The machine is driven by random settings, sensors, and
//! sequences of commands (with random codes, users and origins), sensor events and clock
//! advances; a shadow model built from the *specification* (module doc), not from the
//! machine's fields, checks after every step that it
//! - never leaves `triggered` except by an accepted disarm (with a code when one is
//!   required) or when the trigger time has passed (at exactly the time it ends);
//! - never enters an armed state by arming while a sensor watched in that mode is open,
//!   unless that sensor was bypassed by a forced arm;
//! - keeps deadlines exactly in the delay states;
//! - and that a restart at a random point (snapshot → JSON → restore, possibly later)
//!   behaves like the original machine from then on: same effects, verdicts and snapshots.
//!
//! Cases per property: `PROPTEST_CASES` (default 2,000). The fuzz run:
//! `PROPTEST_CASES=1000000 cargo test --release -p porchlight-domain alarm::proptests`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig::with_cases(cases)
}

// ---------------------------------------------------------------- parser and sources

fn valid_commands() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for action in Action::ALL {
        for code in [
            json!("1234"),
            json!("0042"),
            json!("None"),
            json!(""),
            json!(null),
        ] {
            out.push(
                json!({"action": action.as_str(), "code": code})
                    .to_string()
                    .into_bytes(),
            );
        }
        out.push(action.as_str().as_bytes().to_vec());
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            _ => {}
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Accepted commands satisfy the rules; refusals explain themselves.
fn check_command(result: Result<CommandPayload, CommandError>) {
    match result {
        Ok(c) => {
            if let Some(pin) = c.code {
                let digits = pin.expose();
                assert!((4..=8).contains(&digits.len()), "{digits:?}");
                assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{digits:?}");
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(!e.reason().is_empty());
            if let CommandError::UnknownAction(echo) = &e {
                assert!(!echo.chars().any(|c| c.is_ascii_digit()), "{echo:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_parser_takes_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_command(parse_command(&bytes));
    }

    #[test]
    fn the_parser_takes_mutated_commands(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let samples = valid_commands();
        let bytes = mutate(index.get(&samples).clone(), &mutations);
        check_command(parse_command(&bytes));
    }

    #[test]
    fn any_code_string_is_a_pin_no_code_or_a_bad_code(code in ".{0,12}", action in 0..7usize) {
        let payload = json!({"action": Action::ALL[action].as_str(), "code": code}).to_string();
        match parse_command(payload.as_bytes()) {
            Ok(c) => {
                prop_assert_eq!(c.action, Action::ALL[action]);
                match c.code {
                    Some(pin) => prop_assert_eq!(pin.expose(), code.trim()),
                    None => prop_assert!(
                        code.trim().is_empty() || code.trim().eq_ignore_ascii_case("none")
                    ),
                }
            }
            Err(e) => {
                prop_assert_eq!(e.reason(), "bad_code");
                // Digits may be part of an error message's wording only if not the code.
                if code.trim().len() >= 4 {
                    prop_assert!(!e.to_string().contains(code.trim()));
                }
            }
        }
    }

    #[test]
    fn sources_take_arbitrary_and_mutated_payloads(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
        mutations in prop::collection::vec(mutation(), 0..4),
        with_field in any::<bool>(),
    ) {
        let source = MqttSource {
            topic: "t".to_owned(),
            field: with_field.then(|| "state.contact".to_owned()),
            on: json!(false),
            off: json!("closed"),
        };
        let _ = source.read(&bytes);
        let valid = br#"{"state": {"contact": false}, "battery": 90}"#.to_vec();
        let _ = source.read(&mutate(valid, &mutations));
    }
}

// ---------------------------------------------------------------- the machine

#[derive(Debug, Clone)]
enum Op {
    Command {
        action: Action,
        force: bool,
        code: CodeUse,
        who: Option<&'static str>,
        via: Via,
    },
    Sensor {
        index: usize,
        active: bool,
    },
    /// Milliseconds forward, then `advance`.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            prop::sample::select(Action::ALL.to_vec()),
            any::<bool>(),
            prop::sample::select(vec![CodeUse::None, CodeUse::Normal, CodeUse::Normal, CodeUse::Duress]),
            prop::sample::select(vec![None, Some("alice"), Some("bob")]),
            prop::sample::select(vec![Via::Keypad, Via::HomeAssistant, Via::Api]),
        )
            .prop_map(|(action, force, code, who, via)| Op::Command { action, force, code, who, via }),
        4 => (0..SENSORS, any::<bool>()).prop_map(|(index, active)| Op::Sensor { index, active }),
        3 => prop_oneof![0..3_000u64, 0..120_000u64, Just(600_000u64)].prop_map(Op::Advance),
    ]
}

const SENSORS: usize = 5;

fn mode_settings() -> impl Strategy<Value = ModeSettings> {
    (
        prop::bool::weighted(0.8),
        prop::sample::select(vec![0u32, 5, 60]),
        prop::sample::select(vec![0u32, 10, 30]),
        prop::sample::select(vec![0u32, 20, 600]),
    )
        .prop_map(|(enabled, exit, entry, trigger)| ModeSettings {
            enabled,
            exit_delay_secs: exit,
            entry_delay_secs: entry,
            trigger_time_secs: trigger,
        })
}

fn any_settings() -> impl Strategy<Value = Settings> {
    (
        prop::collection::vec(mode_settings(), 5),
        prop::sample::select(vec![0u32, 20, 600]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![0u32, 1_000]),
        prop::sample::select(vec![0u32, 2_000]),
    )
        .prop_map(
            |(modes, disarmed_tt, after, arm_code, disarm_code, dedup, guard)| {
                let mut s = Settings::default();
                for (mode, ms) in ArmMode::ALL.into_iter().zip(modes) {
                    *s.mode_mut(mode) = ms;
                }
                s.disarmed_trigger_time_secs = disarmed_tt;
                s.disarm_after_trigger = after;
                s.code_arm_required = arm_code;
                s.code_disarm_required = disarm_code;
                s.dedup_window_ms = dedup;
                s.rearm_guard_ms = guard;
                s
            },
        )
}

fn any_sensors() -> impl Strategy<Value = Vec<Sensor>> {
    prop::collection::vec(
        (
            prop::sample::select(SensorKind::ALL.to_vec()),
            prop::sample::subsequence(ArmMode::ALL.to_vec(), 0..=5),
            any::<bool>(),
            any::<bool>(),
        ),
        SENSORS,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (kind, modes, entry, allow_open))| Sensor {
                id: SensorId(format!("s{i}")),
                name: format!("sensor {i}"),
                kind,
                modes: modes.into_iter().collect(),
                use_entry_delay: entry,
                allow_open_while_arming: allow_open,
                source: SensorSource::Mqtt(MqttSource {
                    topic: format!("zigbee2mqtt/s{i}"),
                    field: Some("contact".to_owned()),
                    on: json!(false),
                    off: json!(true),
                }),
            })
            .collect()
    })
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

/// What the specification lets an observer of the effects know.
struct Shadow {
    settings: Settings,
    sensors: Vec<Sensor>,
    open: BTreeMap<SensorId, bool>,
    bypassed: BTreeSet<SensorId>,
    /// The armed mode an arming started from, and whether it was forced.
    arming_from: Option<ArmMode>,
    arming_forced: bool,
    /// When the running exit delay began, and the mode it arms.
    arming_since: Option<(SystemTime, ArmMode)>,
    /// The mode an entry delay started in, and when.
    pending_mode: Option<ArmMode>,
    pending_since: Option<SystemTime>,
    /// When `triggered` began and the mode it returns to.
    triggered: Option<(SystemTime, Option<ArmMode>)>,
}

impl Shadow {
    fn trigger_time(&self, back_to: Option<ArmMode>) -> u32 {
        match back_to {
            Some(m) => self.settings.mode(m).trigger_time_secs,
            None => self.settings.disarmed_trigger_time_secs,
        }
    }

    /// Checks one step's effects in order.
    fn check(&mut self, op: &Op, verdict: Option<&Verdict>, effects: &[Effect], now: SystemTime) {
        for effect in effects {
            match effect {
                Effect::SensorChanged { sensor, active } => {
                    assert!(matches!(op, Op::Sensor { .. }), "{effect:?} from {op:?}");
                    self.open.insert(sensor.clone(), *active);
                }
                Effect::Bypassed { sensors } => {
                    let forced_command = matches!(op, Op::Command { force: true, .. });
                    assert!(
                        forced_command || self.arming_forced,
                        "bypass without force: {effect:?} from {op:?}"
                    );
                    self.bypassed.extend(sensors.iter().cloned());
                }
                Effect::Duress { .. } => {
                    assert!(matches!(
                        op,
                        Op::Command {
                            code: CodeUse::Duress,
                            ..
                        }
                    ));
                }
                Effect::SensorTripped { .. } => {}
                Effect::Transition(t) => self.check_transition(op, verdict, t, now),
            }
        }
    }

    fn check_transition(
        &mut self,
        op: &Op,
        verdict: Option<&Verdict>,
        t: &Transition,
        now: SystemTime,
    ) {
        assert!(t.at <= now, "{t:?} after now");
        if let TransitionReason::Command(action) = &t.reason {
            let Op::Command {
                action: asked,
                code,
                ..
            } = op
            else {
                panic!("{t:?} from {op:?}")
            };
            assert_eq!(action, asked);
            assert_eq!(verdict, Some(&Verdict::Accepted), "{t:?}");
            let code_needed = match action {
                Action::Disarm => self.settings.code_disarm_required,
                Action::Trigger => false,
                _ => self.settings.code_arm_required,
            };
            assert!(!code_needed || *code != CodeUse::None, "no code: {t:?}");
        }
        if t.from == AlarmState::Triggered {
            let (since, back_to) = self.triggered.expect("triggered without shadow");
            match &t.reason {
                TransitionReason::Command(Action::Disarm) => {}
                TransitionReason::TriggerTimeOver => {
                    let tt = self.trigger_time(back_to);
                    assert!(tt > 0, "left an endless trigger: {t:?}");
                    assert_eq!(t.at, since + Duration::from_secs(u64::from(tt)), "{t:?}");
                    let expected = match back_to {
                        Some(m) if !self.settings.disarm_after_trigger => m.armed_state(),
                        _ => AlarmState::Disarmed,
                    };
                    assert_eq!(t.to, expected, "{t:?}");
                }
                other => panic!("left triggered because of {other:?}: {t:?}"),
            }
        }
        // Delays end exactly when they are due, however late the call that resolves them.
        match &t.reason {
            TransitionReason::ExitDelayOver | TransitionReason::ArmFailed { .. } => {
                let (since, mode) = self.arming_since.expect("exit delay without arming");
                let exit = self.settings.mode(mode).exit_delay_secs;
                assert_eq!(t.at, since + Duration::from_secs(u64::from(exit)), "{t:?}");
            }
            TransitionReason::EntryDelayOver => {
                let since = self.pending_since.expect("entry delay without pending");
                let mode = self.pending_mode.expect("pending without a mode");
                let entry = self.settings.mode(mode).entry_delay_secs;
                assert_eq!(t.at, since + Duration::from_secs(u64::from(entry)), "{t:?}");
            }
            _ => {}
        }
        let arming = matches!(
            t.reason,
            TransitionReason::ExitDelayOver | TransitionReason::Command(_)
        );
        if let Some(mode) = t.to.armed_mode()
            && arming
        {
            for s in &self.sensors {
                let open = self.open.get(&s.id) == Some(&true);
                if open && s.watched_in(Some(mode)) {
                    assert!(
                        self.bypassed.contains(&s.id),
                        "armed {mode} with {} open and not bypassed: {t:?}",
                        s.id
                    );
                }
            }
        }
        match t.to {
            AlarmState::Arming => {
                let Op::Command { action, .. } = op else {
                    panic!("arming without a command: {t:?}")
                };
                let mode = action.arm_mode().expect("arming by an arm command");
                self.arming_since = Some((t.at, mode));
                self.arming_from = t.from.armed_mode();
                self.arming_forced = matches!(op, Op::Command { force: true, .. });
            }
            AlarmState::Pending => {
                assert!(t.from.is_armed(), "{t:?}");
                self.pending_mode = t.from.armed_mode();
                self.pending_since = Some(t.at);
            }
            AlarmState::Triggered => {
                let back_to = match t.from {
                    AlarmState::Disarmed => None,
                    AlarmState::Arming => self.arming_from,
                    AlarmState::Pending => self.pending_mode,
                    armed => armed.armed_mode(),
                };
                self.triggered = Some((t.at, back_to));
            }
            AlarmState::Disarmed => self.bypassed.clear(),
            _ => {}
        }
        if t.from == AlarmState::Arming {
            self.arming_forced = false;
        }
    }
}

/// Applies one op at `*now` (advancing it for `Advance`); returns the verdict and effects.
fn apply(alarm: &mut Alarm, op: &Op, now: &mut u64) -> (Option<Verdict>, Vec<Effect>) {
    match op {
        Op::Command {
            action,
            force,
            code,
            who,
            via,
        } => {
            let auth = Authorization {
                who: who.map(str::to_owned),
                via: *via,
                code: *code,
            };
            let command = Command {
                action: *action,
                force: *force,
            };
            let out = alarm.command(command, &auth, time(*now));
            (Some(out.verdict), out.effects)
        }
        Op::Sensor { index, active } => {
            let id = SensorId(format!("s{index}"));
            let effects = alarm
                .sensor(&id, *active, time(*now))
                .expect("known sensor");
            (None, effects)
        }
        Op::Advance(ms) => {
            *now += ms;
            (None, alarm.advance(time(*now)))
        }
    }
}

fn check_deadline(alarm: &Alarm, now: u64) {
    let state = alarm.state();
    let deadline = alarm.next_deadline();
    match state {
        AlarmState::Arming | AlarmState::Pending => {
            assert!(
                deadline.is_some_and(|d| d > time(now)),
                "{state} {deadline:?}"
            )
        }
        AlarmState::Triggered => assert!(deadline.is_none_or(|d| d > time(now))),
        _ => assert_eq!(deadline, None, "{state}"),
    }
    let status = alarm.status(time(now));
    assert_eq!(status.state, state);
    assert_eq!(status.deadline, deadline);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_machine_keeps_its_promises(
        settings in any_settings(),
        sensors in any_sensors(),
        ops in prop::collection::vec(op(), 0..60),
        restart_at in any::<prop::sample::Index>(),
        restart_gap in prop_oneof![Just(0u64), 0..700_000u64],
    ) {
        let mut alarm = Alarm::new(settings.clone(), sensors.clone());
        let mut shadow = Shadow {
            settings: settings.clone(),
            sensors: sensors.clone(),
            open: BTreeMap::new(),
            bypassed: BTreeSet::new(),
            arming_from: None,
            arming_forced: false,
            arming_since: None,
            pending_mode: None,
            pending_since: None,
            triggered: None,
        };
        let mut now = 0u64;
        let restart = restart_at.index(ops.len() + 1);
        let mut restored: Option<Alarm> = None;
        for (i, op) in ops.iter().enumerate() {
            if i == restart {
                // A restart: persist, come back `restart_gap` later.
                let text = serde_json::to_string(&alarm.snapshot()).unwrap();
                let snapshot: AlarmSnapshot = serde_json::from_str(&text).unwrap();
                now += restart_gap;
                let (twin, twin_effects) =
                    Alarm::restore(snapshot, settings.clone(), sensors.clone(), time(now));
                let effects = alarm.advance(time(now));
                prop_assert_eq!(&twin_effects, &effects);
                shadow.check(&Op::Advance(restart_gap), None, &effects, time(now));
                prop_assert_eq!(twin.snapshot(), alarm.snapshot());
                restored = Some(twin);
            }
            let before = now;
            let (verdict, effects) = apply(&mut alarm, op, &mut now);
            shadow.check(op, verdict.as_ref(), &effects, time(now));
            if verdict == Some(Verdict::Duplicate) {
                let duress = effects.iter().any(|e| matches!(e, Effect::Duress { .. }));
                prop_assert!(!duress, "a duplicate repeated a duress effect");
            }
            check_deadline(&alarm, now);
            if let Some(twin) = restored.as_mut() {
                let mut twin_now = before;
                let (twin_verdict, twin_effects) = apply(twin, op, &mut twin_now);
                prop_assert_eq!(twin_verdict, verdict);
                prop_assert_eq!(twin_effects, effects);
                prop_assert_eq!(twin.snapshot(), alarm.snapshot());
                prop_assert_eq!(twin.status(time(now)), alarm.status(time(now)));
            }
        }
    }
}
