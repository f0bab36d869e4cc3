//! Unit tests: the parser, sensor sources, and each transition of the machine.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;

// ---------------------------------------------------------------- helpers

/// A fixed origin; `at(s)` is `s` seconds after it.
fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_secs_f64(secs)
}

fn z2m(topic: &str) -> SensorSource {
    SensorSource::Mqtt(MqttSource {
        topic: topic.to_owned(),
        field: Some("contact".to_owned()),
        on: json!(false),
        off: json!(true),
    })
}

fn sensor(id: &str, kind: SensorKind, modes: &[ArmMode]) -> Sensor {
    Sensor {
        id: SensorId::from(id),
        name: format!("{id} sensor"),
        kind,
        modes: modes.iter().copied().collect::<BTreeSet<_>>(),
        use_entry_delay: true,
        allow_open_while_arming: false,
        source: z2m(&format!("zigbee2mqtt/{id}")),
    }
}

const ALL_MODES: [ArmMode; 5] = ArmMode::ALL;

/// front door (entry delay, all modes), window (instant, all modes), hall motion (away only,
/// allowed open while arming), smoke (always on).
fn house() -> Vec<Sensor> {
    let mut window = sensor("window", SensorKind::Window, &ALL_MODES);
    window.use_entry_delay = false;
    let mut motion = sensor("motion", SensorKind::Motion, &[ArmMode::Away]);
    motion.allow_open_while_arming = true;
    vec![
        sensor("door", SensorKind::Door, &ALL_MODES),
        window,
        motion,
        sensor("smoke", SensorKind::Smoke, &[]),
    ]
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.vacation.enabled = true;
    s.custom_bypass.enabled = true;
    s
}

fn alarm() -> Alarm {
    Alarm::new(settings(), house())
}

fn id(s: &str) -> SensorId {
    SensorId::from(s)
}

fn with_code() -> Authorization {
    Authorization {
        who: Some("alice".to_owned()),
        via: Via::Keypad,
        code: CodeUse::Normal,
    }
}

fn duress() -> Authorization {
    Authorization {
        code: CodeUse::Duress,
        ..with_code()
    }
}

fn no_code() -> Authorization {
    Authorization {
        who: None,
        via: Via::HomeAssistant,
        code: CodeUse::None,
    }
}

fn cmd(action: Action) -> Command {
    Command {
        action,
        force: false,
    }
}

fn forced(action: Action) -> Command {
    Command {
        action,
        force: true,
    }
}

fn transitions(effects: &[Effect]) -> Vec<(AlarmState, AlarmState)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Transition(t) => Some((t.from, t.to)),
            _ => None,
        })
        .collect()
}

fn reasons(effects: &[Effect]) -> Vec<TransitionReason> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Transition(t) => Some(t.reason.clone()),
            _ => None,
        })
        .collect()
}

fn accepted(outcome: &Outcome) {
    assert_eq!(outcome.verdict, Verdict::Accepted, "{outcome:?}");
}

fn rejected(outcome: &Outcome) -> Rejection {
    match &outcome.verdict {
        Verdict::Rejected(r) => r.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// An alarm armed away (exit delay over) at `at(60)`.
fn armed_away() -> Alarm {
    let mut a = alarm();
    accepted(&a.command(cmd(Action::ArmAway), &with_code(), at(0.0)));
    a.advance(at(60.0));
    assert_eq!(a.state(), AlarmState::ArmedAway);
    a
}

// ---------------------------------------------------------------- command payloads

#[test]
fn parses_every_action_from_json_in_any_case() {
    for action in Action::ALL {
        for name in [
            action.as_str().to_owned(),
            action.as_str().to_lowercase(),
            format!(" {} ", action.as_str().to_lowercase()),
        ] {
            let payload = json!({"action": name, "code": "1234"}).to_string();
            let parsed = parse_command(payload.as_bytes()).unwrap();
            assert_eq!(parsed.action, action, "{payload}");
            assert_eq!(parsed.code.as_ref().map(Pin::expose), Some("1234"));
        }
    }
}

#[test]
fn every_shape_of_no_code_means_no_code() {
    for payload in [
        r#"{"action": "ARM_AWAY"}"#,
        r#"{"action": "ARM_AWAY", "code": null}"#,
        r#"{"action": "ARM_AWAY", "code": ""}"#,
        r#"{"action": "ARM_AWAY", "code": "   "}"#,
        r#"{"action": "ARM_AWAY", "code": "None"}"#,
        r#"{"action": "ARM_AWAY", "code": "none"}"#,
        r#"{"action": "ARM_AWAY", "code": "NONE"}"#,
        r#"{"action": "ARM_AWAY", "code": " None "}"#,
    ] {
        let parsed = parse_command(payload.as_bytes()).unwrap();
        assert_eq!(parsed.action, Action::ArmAway, "{payload}");
        assert_eq!(parsed.code, None, "{payload}");
    }
}

#[test]
fn a_pin_keeps_its_leading_zeros_and_length_limits() {
    let parsed = parse_command(br#"{"action": "ARM_HOME", "code": "0042"}"#).unwrap();
    assert_eq!(parsed.code.unwrap().expose(), "0042");
    let parsed = parse_command(br#"{"action": "DISARM", "code": "01234567"}"#).unwrap();
    assert_eq!(parsed.code.unwrap().expose(), "01234567");
}

#[test]
fn bad_codes_are_refused_without_echoing_them() {
    for (payload, secret) in [
        (r#"{"action": "DISARM", "code": "123"}"#, "123"),
        (r#"{"action": "DISARM", "code": "123456789"}"#, "123456789"),
        (r#"{"action": "DISARM", "code": "12a4"}"#, "12a4"),
        (r#"{"action": "DISARM", "code": "１２３４"}"#, "１２３４"),
        (r#"{"action": "DISARM", "code": 4711}"#, "4711"),
        (r#"{"action": "DISARM", "code": ["1234"]}"#, "1234"),
    ] {
        let err = parse_command(payload.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "bad_code", "{payload}: {err}");
        assert!(!err.to_string().contains(secret), "{err}");
    }
    let err = parse_command(br#"{"action": "DISARM", "code": 4711}"#).unwrap_err();
    assert!(err.to_string().contains("quote"), "{err}");
}

#[test]
fn plain_payloads_are_actions_without_code() {
    for (payload, action) in [
        ("DISARM", Action::Disarm),
        (" arm_away\n", Action::ArmAway),
        ("\"ARM_HOME\"", Action::ArmHome),
        ("Arm_Custom_Bypass", Action::ArmCustomBypass),
        ("TRIGGER", Action::Trigger),
    ] {
        let parsed = parse_command(payload.as_bytes()).unwrap();
        assert_eq!(parsed, CommandPayload { action, code: None }, "{payload:?}");
    }
}

#[test]
fn unknown_actions_are_named_and_the_value_template_bug_is_explained() {
    let err = parse_command(br#"{"action": "None", "code": "1234"}"#).unwrap_err();
    assert_eq!(err, CommandError::UnknownAction("None".to_owned()));
    assert!(err.to_string().contains("{{ action }}"), "{err}");
    let err = parse_command(b"ARM_EVERYTHING").unwrap_err();
    assert_eq!(err.reason(), "unknown_action");
    assert!(err.to_string().contains("ARM_EVERYTHING"));
    assert!(!err.to_string().contains("{{ action }}"));
}

#[test]
fn a_pin_sent_as_the_action_is_not_echoed() {
    for payload in [
        &b"1234"[..],
        b"DISARM 0042",
        br#"{"action": "5678", "code": "None"}"#,
    ] {
        let err = parse_command(payload).unwrap_err();
        assert_eq!(err.reason(), "unknown_action");
        let text = err.to_string();
        assert!(!text.chars().any(|c| c.is_ascii_digit()), "{text}");
    }
}

#[test]
fn malformed_payloads_are_refused_with_a_reason() {
    let too_big = vec![b' '; MAX_COMMAND_BYTES + 1];
    for (payload, reason) in [
        (&b""[..], "malformed"),
        (b"   ", "malformed"),
        (b"{", "malformed"),
        (b"[\"DISARM\"]", "malformed"),
        (b"{\"code\": \"1234\"}", "malformed"),
        (b"{\"action\": 3}", "malformed"),
        (b"\xff\xfe", "malformed"),
        (&too_big[..], "too_large"),
    ] {
        let err = parse_command(payload).unwrap_err();
        assert_eq!(err.reason(), reason, "{payload:?}: {err}");
    }
}

#[test]
fn a_pin_does_not_show_in_debug() {
    let pin = Pin::new("0042").unwrap();
    assert!(!format!("{pin:?}").contains("0042"));
    let parsed = parse_command(br#"{"action": "DISARM", "code": "9876"}"#).unwrap();
    assert!(!format!("{parsed:?}").contains("9876"));
}

// ---------------------------------------------------------------- sensor sources

fn contact_source() -> MqttSource {
    MqttSource {
        topic: "zigbee2mqtt/front_door".to_owned(),
        field: Some("contact".to_owned()),
        on: json!(false),
        off: json!(true),
    }
}

#[test]
fn a_zigbee2mqtt_contact_sensor_reads_open_and_closed() {
    let s = contact_source();
    assert!(s.matches_topic("zigbee2mqtt/front_door"));
    assert!(!s.matches_topic("zigbee2mqtt/front_door/set"));
    assert_eq!(
        s.read(br#"{"contact": false, "battery": 97}"#),
        Ok(Some(true))
    );
    assert_eq!(s.read(br#"{"contact": true}"#), Ok(Some(false)));
    assert_eq!(s.read(br#"{"battery": 90}"#), Ok(None));
}

#[test]
fn junk_on_a_sensor_topic_is_an_error_naming_the_problem() {
    let s = contact_source();
    let err = s.read(b"not json").unwrap_err();
    assert!(matches!(err, SourceError::NotJson { .. }), "{err}");
    let err = s.read(br#"{"contact": "maybe"}"#).unwrap_err();
    assert!(matches!(err, SourceError::UnexpectedValue { .. }), "{err}");
    assert!(err.to_string().contains("maybe") && err.to_string().contains("contact"));
    assert_eq!(s.read(b"\xff"), Err(SourceError::NotUtf8));
    assert!(matches!(
        s.read(b"42"),
        Err(SourceError::NotAnObject { .. })
    ));
    let big = vec![b' '; MAX_SOURCE_PAYLOAD_BYTES + 1];
    assert!(matches!(s.read(&big), Err(SourceError::TooLarge { .. })));
}

#[test]
fn nested_fields_arrays_and_loose_values() {
    let nested = MqttSource {
        topic: "t".to_owned(),
        field: Some("state.zones.1".to_owned()),
        on: json!("ON"),
        off: json!("OFF"),
    };
    assert_eq!(
        nested.read(br#"{"state": {"zones": ["off", "on"]}}"#),
        Ok(Some(true))
    );
    assert_eq!(nested.read(br#"{"state": {"zones": ["on"]}}"#), Ok(None));
    let plain = MqttSource {
        topic: "t".to_owned(),
        field: None,
        on: json!("ON"),
        off: json!("OFF"),
    };
    assert_eq!(plain.read(b"on"), Ok(Some(true)));
    assert_eq!(plain.read(b" OFF\n"), Ok(Some(false)));
    assert_eq!(plain.read(b"\"ON\""), Ok(Some(true)));
    let numeric = MqttSource {
        topic: "t".to_owned(),
        field: None,
        on: json!("1"),
        off: json!(0),
    };
    assert_eq!(numeric.read(b"1"), Ok(Some(true)));
    assert_eq!(numeric.read(b"0"), Ok(Some(false)));
    assert!(numeric.read(b"2").is_err());
}

#[test]
fn a_sensor_source_round_trips_through_serde() {
    let source = SensorSource::Mqtt(contact_source());
    let text = serde_json::to_string(&source).unwrap();
    assert!(text.contains("\"kind\":\"mqtt\""), "{text}");
    assert_eq!(serde_json::from_str::<SensorSource>(&text).unwrap(), source);
    assert_eq!(source.mqtt_topic(), Some("zigbee2mqtt/front_door"));
    assert_eq!(
        source.read_mqtt("zigbee2mqtt/front_door", br#"{"contact": false}"#),
        Some(Ok(Some(true)))
    );
    assert_eq!(
        source.read_mqtt("zigbee2mqtt/back_door", br#"{"contact": false}"#),
        None
    );
}

// ---------------------------------------------------------------- the machine: states

#[test]
fn state_strings_are_home_assistants() {
    let strings: Vec<&str> = AlarmState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        strings,
        [
            "disarmed",
            "arming",
            "armed_home",
            "armed_away",
            "armed_night",
            "armed_vacation",
            "armed_custom_bypass",
            "pending",
            "triggered"
        ]
    );
    for s in AlarmState::ALL {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    for m in ArmMode::ALL {
        assert_eq!(m.armed_state().armed_mode(), Some(m));
        assert_eq!(m.action().arm_mode(), Some(m));
    }
}

#[test]
fn a_fresh_alarm_is_disarmed_with_default_settings() {
    let a = Alarm::new(Settings::default(), Vec::new());
    assert_eq!(a.state(), AlarmState::Disarmed);
    assert_eq!(a.next_deadline(), None);
    let settings = Settings::default();
    assert!(settings.code_arm_required && settings.code_disarm_required);
    assert_eq!(
        settings.enabled_modes(),
        [ArmMode::Home, ArmMode::Away, ArmMode::Night]
    );
    let status = a.status(at(0.0));
    assert!(status.ready_to_arm);
    assert_eq!(status.ready_to_arm_modes.len(), 3);
}

#[test]
fn arming_each_mode_runs_its_exit_delay_then_arms() {
    for mode in ArmMode::ALL {
        let mut s = settings();
        s.mode_mut(mode).exit_delay_secs = 45;
        let mut a = Alarm::new(s, house());
        let out = a.command(cmd(mode.action()), &with_code(), at(0.0));
        accepted(&out);
        assert_eq!(
            transitions(&out.effects),
            [(AlarmState::Disarmed, AlarmState::Arming)]
        );
        assert_eq!(a.next_deadline(), Some(at(45.0)));
        let status = a.status(at(10.2));
        assert_eq!(status.next_state, Some(mode.armed_state()));
        assert_eq!(status.delay_remaining_secs, Some(35));
        assert_eq!(status.arm_mode, Some(mode));
        assert_eq!(status.changed_by.as_deref(), Some("alice"));
        assert!(a.advance(at(44.9)).is_empty());
        let effects = a.advance(at(45.0));
        assert_eq!(
            transitions(&effects),
            [(AlarmState::Arming, mode.armed_state())]
        );
        assert_eq!(reasons(&effects), [TransitionReason::ExitDelayOver]);
        assert_eq!(a.next_deadline(), None);
    }
}

#[test]
fn exit_delay_zero_arms_at_once() {
    let mut a = alarm();
    let out = a.command(cmd(Action::ArmHome), &with_code(), at(0.0));
    accepted(&out);
    assert_eq!(
        transitions(&out.effects),
        [(AlarmState::Disarmed, AlarmState::ArmedHome)]
    );
    let Effect::Transition(t) = &out.effects[0] else {
        panic!("{out:?}")
    };
    assert_eq!(t.by.as_deref(), Some("alice"));
    assert_eq!(t.via, Some(Via::Keypad));
    assert_eq!(t.reason, TransitionReason::Command(Action::ArmHome));
}

#[test]
fn arm_refusals() {
    let mut disabled = settings();
    disabled.vacation.enabled = false;
    let cases: Vec<(&str, Alarm, Command, Authorization, &str)> = vec![
        (
            "mode disabled",
            Alarm::new(disabled, house()),
            cmd(Action::ArmVacation),
            with_code(),
            "mode_disabled",
        ),
        (
            "no code",
            alarm(),
            cmd(Action::ArmAway),
            no_code(),
            "code_required",
        ),
        (
            "already armed away",
            armed_away(),
            cmd(Action::ArmAway),
            with_code(),
            "not_allowed",
        ),
        (
            "while arming",
            {
                let mut a = alarm();
                a.command(cmd(Action::ArmAway), &with_code(), at(30.0));
                a
            },
            cmd(Action::ArmNight),
            with_code(),
            "not_allowed",
        ),
        (
            "while pending",
            {
                let mut a = armed_away();
                a.sensor(&id("door"), true, at(61.0)).unwrap();
                a
            },
            cmd(Action::ArmHome),
            with_code(),
            "not_allowed",
        ),
        (
            "while triggered",
            {
                let mut a = armed_away();
                a.sensor(&id("window"), true, at(61.0)).unwrap();
                a
            },
            cmd(Action::ArmHome),
            with_code(),
            "not_allowed",
        ),
    ];
    for (name, mut a, command, auth, reason) in cases {
        let before = a.state();
        let out = a.command(command, &auth, at(62.0));
        assert_eq!(rejected(&out).reason(), reason, "{name}");
        assert!(transitions(&out.effects).is_empty(), "{name}");
        assert_eq!(a.state(), before, "{name}");
    }
}

#[test]
fn codes_not_required_when_the_settings_say_so() {
    let mut s = settings();
    s.code_arm_required = false;
    let mut a = Alarm::new(s.clone(), house());
    accepted(&a.command(cmd(Action::ArmHome), &no_code(), at(0.0)));
    let out = a.command(cmd(Action::Disarm), &no_code(), at(5.0));
    assert_eq!(rejected(&out), Rejection::CodeRequired("disarm"));
    s.code_disarm_required = false;
    a.reconfigure(s, house());
    accepted(&a.command(cmd(Action::Disarm), &no_code(), at(6.0)));
    assert_eq!(a.status(at(6.0)).changed_by, None);
}

#[test]
fn changing_modes_from_armed() {
    let mut a = armed_away();
    let out = a.command(cmd(Action::ArmHome), &with_code(), at(100.0));
    accepted(&out);
    assert_eq!(
        transitions(&out.effects),
        [(AlarmState::ArmedAway, AlarmState::ArmedHome)]
    );
}

#[test]
fn disarm_from_every_state() {
    let setups: Vec<(&str, Alarm)> = vec![
        ("arming", {
            let mut a = alarm();
            a.command(cmd(Action::ArmAway), &with_code(), at(30.0));
            a
        }),
        ("armed", armed_away()),
        ("pending", {
            let mut a = armed_away();
            a.sensor(&id("door"), true, at(61.0)).unwrap();
            a
        }),
        ("triggered", {
            let mut a = armed_away();
            a.sensor(&id("window"), true, at(61.0)).unwrap();
            a
        }),
        ("triggered without end", {
            let mut s = settings();
            s.away.trigger_time_secs = 0;
            let mut a = Alarm::new(s, house());
            a.command(cmd(Action::ArmAway), &with_code(), at(0.0));
            a.sensor(&id("window"), true, at(61.0)).unwrap();
            a
        }),
    ];
    for (name, mut a) in setups {
        let from = a.state();
        let out = a.command(cmd(Action::Disarm), &with_code(), at(62.0));
        accepted(&out);
        assert_eq!(
            transitions(&out.effects),
            [(from, AlarmState::Disarmed)],
            "{name}"
        );
        assert_eq!(a.next_deadline(), None, "{name}");
        assert!(a.status(at(62.0)).bypassed_sensors.is_empty(), "{name}");
    }
    let mut a = alarm();
    let out = a.command(cmd(Action::Disarm), &with_code(), at(0.0));
    assert_eq!(rejected(&out).reason(), "not_allowed");
}

// ---------------------------------------------------------------- sensors and delays

#[test]
fn entry_delay_then_trigger_then_back_to_armed() {
    let mut a = armed_away();
    let effects = a.sensor(&id("door"), true, at(100.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::ArmedAway, AlarmState::Pending)]
    );
    assert!(effects.contains(&Effect::SensorTripped {
        sensor: id("door"),
        state: AlarmState::ArmedAway,
        instant: false
    }));
    assert_eq!(a.next_deadline(), Some(at(130.0)));
    let status = a.status(at(100.0));
    assert_eq!(status.next_state, Some(AlarmState::Triggered));
    assert_eq!(status.tripped_by, Some(id("door")));
    assert_eq!(status.arm_mode, Some(ArmMode::Away));

    let effects = a.advance(at(130.0));
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Pending, AlarmState::Triggered)]
    );
    assert_eq!(reasons(&effects), [TransitionReason::EntryDelayOver]);
    assert_eq!(a.next_deadline(), Some(at(730.0)));
    assert_eq!(a.status(at(130.0)).next_state, Some(AlarmState::ArmedAway));

    let effects = a.advance(at(730.0));
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Triggered, AlarmState::ArmedAway)]
    );
    assert_eq!(reasons(&effects), [TransitionReason::TriggerTimeOver]);
    // The door is still open: it trips again only after closing and opening.
    assert!(transitions(&a.sensor(&id("door"), true, at(731.0)).unwrap()).is_empty());
    a.sensor(&id("door"), false, at(732.0)).unwrap();
    let effects = a.sensor(&id("door"), true, at(733.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::ArmedAway, AlarmState::Pending)]
    );
}

#[test]
fn disarm_after_trigger_disarms_when_the_trigger_time_is_over() {
    let mut s = settings();
    s.disarm_after_trigger = true;
    let mut a = Alarm::new(s, house());
    a.command(cmd(Action::ArmHome), &with_code(), at(0.0));
    a.sensor(&id("window"), true, at(10.0)).unwrap();
    assert_eq!(a.state(), AlarmState::Triggered);
    assert_eq!(a.status(at(10.0)).next_state, Some(AlarmState::Disarmed));
    let effects = a.advance(at(610.0));
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Triggered, AlarmState::Disarmed)]
    );
}

#[test]
fn trigger_time_zero_means_until_disarmed() {
    let mut s = settings();
    s.home.trigger_time_secs = 0;
    let mut a = Alarm::new(s, house());
    a.command(cmd(Action::ArmHome), &with_code(), at(0.0));
    a.sensor(&id("window"), true, at(10.0)).unwrap();
    assert_eq!(a.next_deadline(), None);
    assert!(a.advance(at(1e9)).is_empty());
    assert_eq!(a.state(), AlarmState::Triggered);
    assert_eq!(a.status(at(1e9)).next_state, None);
}

#[test]
fn instant_sensors_and_entry_delay_zero_trigger_at_once() {
    let mut a = armed_away();
    let effects = a.sensor(&id("window"), true, at(100.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::ArmedAway, AlarmState::Triggered)]
    );
    assert_eq!(reasons(&effects), [TransitionReason::Sensor(id("window"))]);

    let mut s = settings();
    s.home.entry_delay_secs = 0;
    let mut a = Alarm::new(s, house());
    a.command(cmd(Action::ArmHome), &with_code(), at(0.0));
    let effects = a.sensor(&id("door"), true, at(1.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::ArmedHome, AlarmState::Triggered)]
    );
}

#[test]
fn pending_an_instant_sensor_triggers_an_entry_one_does_not() {
    let mut a = armed_away();
    a.sensor(&id("door"), true, at(100.0)).unwrap();
    let effects = a.sensor(&id("motion"), true, at(101.0)).unwrap();
    assert!(transitions(&effects).is_empty());
    assert!(effects.contains(&Effect::SensorTripped {
        sensor: id("motion"),
        state: AlarmState::Pending,
        instant: false
    }));
    let effects = a.sensor(&id("window"), true, at(102.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Pending, AlarmState::Triggered)]
    );
    // The trigger time counts from the trigger, and it returns to the mode armed before.
    assert_eq!(a.next_deadline(), Some(at(702.0)));
    assert_eq!(a.status(at(102.0)).arm_mode, Some(ArmMode::Away));
}

#[test]
fn sensors_outside_the_mode_are_not_watched() {
    let mut a = alarm();
    a.command(cmd(Action::ArmHome), &with_code(), at(0.0));
    let effects = a.sensor(&id("motion"), true, at(5.0)).unwrap();
    assert_eq!(
        effects,
        [Effect::SensorChanged {
            sensor: id("motion"),
            active: true
        }]
    );
    assert_eq!(a.state(), AlarmState::ArmedHome);
}

#[test]
fn always_on_sensors_trigger_in_every_state() {
    for kind in [SensorKind::Fire, SensorKind::Smoke, SensorKind::Water] {
        assert!(kind.is_always_on());
        let mut a = Alarm::new(
            settings(),
            vec![
                sensor("s", kind, &[]),
                sensor("door", SensorKind::Door, &[]),
            ],
        );
        let effects = a.sensor(&id("s"), true, at(1.0)).unwrap();
        assert_eq!(
            transitions(&effects),
            [(AlarmState::Disarmed, AlarmState::Triggered)]
        );
        // Triggered from disarmed: back to disarmed after its own trigger time.
        assert_eq!(a.next_deadline(), Some(at(601.0)));
        let effects = a.advance(at(601.0));
        assert_eq!(
            transitions(&effects),
            [(AlarmState::Triggered, AlarmState::Disarmed)]
        );
    }
    for kind in [
        SensorKind::Door,
        SensorKind::Window,
        SensorKind::Motion,
        SensorKind::Tamper,
    ] {
        assert!(!kind.is_always_on());
    }
    // While arming, too: triggered, and back to the state before arming afterwards.
    let mut a = alarm();
    a.command(cmd(Action::ArmAway), &with_code(), at(0.0));
    let effects = a.sensor(&id("smoke"), true, at(5.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Arming, AlarmState::Triggered)]
    );
    assert_eq!(a.status(at(5.0)).next_state, Some(AlarmState::Disarmed));
}

#[test]
fn a_repeated_report_of_the_known_state_does_nothing() {
    let mut a = armed_away();
    a.sensor(&id("motion"), false, at(61.0)).unwrap();
    assert!(a.sensor(&id("motion"), false, at(62.0)).unwrap().is_empty());
    assert_eq!(
        a.sensor(&id("nope"), true, at(63.0)),
        Err(UnknownSensor(id("nope")))
    );
}

// ---------------------------------------------------------------- open sensors, bypass

#[test]
fn arming_with_an_open_sensor_is_refused_naming_it_unless_forced() {
    let mut a = alarm();
    a.sensor(&id("window"), true, at(0.0)).unwrap();
    assert!(!a.status(at(0.0)).ready_to_arm);
    assert!(a.status(at(0.0)).ready_to_arm_modes.is_empty());
    let out = a.command(cmd(Action::ArmAway), &with_code(), at(1.0));
    let r = rejected(&out);
    assert_eq!(
        r,
        Rejection::OpenSensors {
            sensors: vec![id("window")],
            names: vec!["window sensor".to_owned()]
        }
    );
    assert!(r.to_string().contains("window sensor"), "{r}");
    assert_eq!(a.state(), AlarmState::Disarmed);

    let out = a.command(forced(Action::ArmAway), &with_code(), at(2.0));
    accepted(&out);
    assert!(out.effects.contains(&Effect::Bypassed {
        sensors: vec![id("window")]
    }));
    a.advance(at(62.0));
    assert_eq!(a.state(), AlarmState::ArmedAway);
    assert_eq!(a.status(at(62.0)).bypassed_sensors, [id("window")]);
    // A bypassed sensor is ignored until the disarm.
    a.sensor(&id("window"), false, at(63.0)).unwrap();
    let effects = a.sensor(&id("window"), true, at(64.0)).unwrap();
    assert!(transitions(&effects).is_empty());
    accepted(&a.command(cmd(Action::Disarm), &with_code(), at(65.0)));
    assert!(a.status(at(65.0)).bypassed_sensors.is_empty());
}

#[test]
fn allowed_open_while_arming_must_close_by_the_end_of_the_exit_delay() {
    // Open at the start: accepted (the mode has an exit delay).
    let mut a = alarm();
    a.sensor(&id("motion"), true, at(0.0)).unwrap();
    assert!(
        a.status(at(0.0))
            .ready_to_arm_modes
            .contains(&ArmMode::Home)
    );
    accepted(&a.command(cmd(Action::ArmAway), &with_code(), at(1.0)));
    // Closed by the end: armed.
    a.sensor(&id("motion"), false, at(30.0)).unwrap();
    a.advance(at(61.0));
    assert_eq!(a.state(), AlarmState::ArmedAway);

    // Still open at the end: arming fails, back to disarmed.
    let mut a = alarm();
    a.sensor(&id("motion"), true, at(0.0)).unwrap();
    accepted(&a.command(cmd(Action::ArmAway), &with_code(), at(1.0)));
    let effects = a.advance(at(61.0));
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Arming, AlarmState::Disarmed)]
    );
    assert_eq!(
        reasons(&effects),
        [TransitionReason::ArmFailed {
            sensors: vec![id("motion")]
        }]
    );

    // Forced: bypassed at the end instead.
    let mut a = alarm();
    a.sensor(&id("motion"), true, at(0.0)).unwrap();
    accepted(&a.command(forced(Action::ArmAway), &with_code(), at(1.0)));
    let effects = a.advance(at(61.0));
    assert!(effects.contains(&Effect::Bypassed {
        sensors: vec![id("motion")]
    }));
    assert_eq!(a.state(), AlarmState::ArmedAway);

    // Without an exit delay there is no leeway: refused at once.
    let mut s = settings();
    s.away.exit_delay_secs = 0;
    let mut a = Alarm::new(s, house());
    a.sensor(&id("motion"), true, at(0.0)).unwrap();
    let out = a.command(cmd(Action::ArmAway), &with_code(), at(1.0));
    assert_eq!(rejected(&out).reason(), "open_sensors");
}

#[test]
fn a_sensor_opening_during_the_exit_delay_aborts_arming_unless_allowed() {
    let mut a = alarm();
    accepted(&a.command(cmd(Action::ArmAway), &with_code(), at(0.0)));
    assert!(transitions(&a.sensor(&id("motion"), true, at(5.0)).unwrap()).is_empty());
    assert_eq!(a.state(), AlarmState::Arming);
    let effects = a.sensor(&id("door"), true, at(6.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Arming, AlarmState::Disarmed)]
    );
    assert_eq!(
        reasons(&effects),
        [TransitionReason::ArmingAborted {
            sensors: vec![id("door")]
        }]
    );
    assert_eq!(a.next_deadline(), None);

    // From an armed mode, an aborted arming goes back to that mode.
    let mut a = alarm();
    a.command(cmd(Action::ArmHome), &with_code(), at(0.0));
    accepted(&a.command(cmd(Action::ArmAway), &with_code(), at(10.0)));
    assert_eq!(a.state(), AlarmState::Arming);
    let effects = a.sensor(&id("window"), true, at(11.0)).unwrap();
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Arming, AlarmState::ArmedHome)]
    );
}

// ---------------------------------------------------------------- trigger, dedup, guard, duress

#[test]
fn the_trigger_command_needs_no_code_and_returns_afterwards() {
    let mut a = armed_away();
    let out = a.command(cmd(Action::Trigger), &no_code(), at(100.0));
    accepted(&out);
    assert_eq!(
        transitions(&out.effects),
        [(AlarmState::ArmedAway, AlarmState::Triggered)]
    );
    let out = a.command(cmd(Action::Trigger), &no_code(), at(105.0));
    assert_eq!(rejected(&out).reason(), "not_allowed");
    a.advance(at(700.0));
    assert_eq!(a.state(), AlarmState::ArmedAway);

    let mut a = alarm();
    accepted(&a.command(cmd(Action::Trigger), &no_code(), at(0.0)));
    assert_eq!(a.status(at(0.0)).next_state, Some(AlarmState::Disarmed));
}

#[test]
fn repeated_identical_commands_within_the_window_are_duplicates() {
    let mut a = armed_away();
    let first = a.command(cmd(Action::Disarm), &with_code(), at(100.0));
    accepted(&first);
    for dt in [0.0, 0.05, 0.1, 0.999] {
        let again = a.command(cmd(Action::Disarm), &with_code(), at(100.0 + dt));
        assert_eq!(again.verdict, Verdict::Duplicate, "+{dt}");
        assert!(again.effects.is_empty());
    }
    // After the window it is a new command (refused: already disarmed).
    let later = a.command(cmd(Action::Disarm), &with_code(), at(101.0));
    assert_eq!(rejected(&later).reason(), "not_allowed");
    // A different user, origin or action is never a duplicate.
    let mut a = armed_away();
    accepted(&a.command(cmd(Action::Disarm), &with_code(), at(100.0)));
    let other = Authorization {
        via: Via::Api,
        ..with_code()
    };
    let out = a.command(cmd(Action::Disarm), &other, at(100.01));
    assert_eq!(rejected(&out).reason(), "not_allowed");
}

#[test]
fn a_retry_after_the_situation_changed_is_not_a_duplicate() {
    let mut a = alarm();
    a.sensor(&id("window"), true, at(0.0)).unwrap();
    let out = a.command(cmd(Action::ArmHome), &with_code(), at(1.0));
    assert_eq!(rejected(&out).reason(), "open_sensors");
    a.sensor(&id("window"), false, at(1.2)).unwrap();
    accepted(&a.command(cmd(Action::ArmHome), &with_code(), at(1.4)));

    // A delay ending in between, too.
    let mut s = settings();
    s.disarmed_trigger_time_secs = 1;
    s.dedup_window_ms = 5_000;
    let mut a = Alarm::new(s, house());
    accepted(&a.command(cmd(Action::Trigger), &no_code(), at(0.0)));
    let again = a.command(cmd(Action::Trigger), &no_code(), at(0.5));
    assert_eq!(again.verdict, Verdict::Duplicate);
    let later = a.command(cmd(Action::Trigger), &no_code(), at(2.0));
    accepted(&later);
    assert_eq!(
        transitions(&later.effects),
        [
            (AlarmState::Triggered, AlarmState::Disarmed),
            (AlarmState::Disarmed, AlarmState::Triggered)
        ]
    );
}

#[test]
fn dedup_and_rearm_guard_can_be_switched_off() {
    let mut s = settings();
    s.dedup_window_ms = 0;
    s.rearm_guard_ms = 0;
    let mut a = Alarm::new(s, house());
    accepted(&a.command(cmd(Action::ArmHome), &with_code(), at(0.0)));
    accepted(&a.command(cmd(Action::Disarm), &with_code(), at(0.01)));
    accepted(&a.command(cmd(Action::ArmHome), &with_code(), at(0.02)));
    accepted(&a.command(cmd(Action::Disarm), &with_code(), at(0.03)));
    let out = a.command(cmd(Action::Disarm), &with_code(), at(0.03));
    assert_eq!(rejected(&out).reason(), "not_allowed");
}

#[test]
fn an_arm_right_after_a_disarm_is_guarded() {
    let mut a = armed_away();
    accepted(&a.command(cmd(Action::Disarm), &with_code(), at(100.0)));
    let out = a.command(cmd(Action::ArmAway), &with_code(), at(100.5));
    assert_eq!(
        rejected(&out),
        Rejection::RearmGuard {
            retry_after_ms: 1500
        }
    );
    accepted(&a.command(cmd(Action::ArmAway), &with_code(), at(102.0)));
}

#[test]
fn a_duress_disarm_looks_exactly_like_a_normal_one_plus_one_effect() {
    let mut normal = armed_away();
    let mut forced_to = armed_away();
    normal.sensor(&id("door"), true, at(100.0)).unwrap();
    forced_to.sensor(&id("door"), true, at(100.0)).unwrap();
    let a = normal.command(cmd(Action::Disarm), &with_code(), at(110.0));
    let b = forced_to.command(cmd(Action::Disarm), &duress(), at(110.0));
    assert_eq!(a.verdict, b.verdict);
    let duress_effect = Effect::Duress {
        by: Some("alice".to_owned()),
        via: Via::Keypad,
    };
    let without: Vec<Effect> = b
        .effects
        .iter()
        .filter(|e| **e != duress_effect)
        .cloned()
        .collect();
    assert_eq!(without, a.effects);
    assert_eq!(b.effects.len(), a.effects.len() + 1);
    assert_eq!(normal.status(at(110.0)), forced_to.status(at(110.0)));
    assert_eq!(normal.state(), forced_to.state());

    // Already disarmed: refused like a normal code, and the help call still goes out.
    let out = forced_to.command(cmd(Action::Disarm), &duress(), at(200.0));
    assert_eq!(rejected(&out).reason(), "not_allowed");
    assert_eq!(out.effects, [duress_effect]);
}

// ---------------------------------------------------------------- persistence

#[test]
fn a_restart_mid_exit_delay_continues_the_delay() {
    let mut a = alarm();
    a.command(cmd(Action::ArmAway), &with_code(), at(0.0));
    let snap = a.snapshot();
    let text = serde_json::to_string(&snap).unwrap();
    let snap: AlarmSnapshot = serde_json::from_str(&text).unwrap();

    let (mut b, effects) = Alarm::restore(snap.clone(), settings(), house(), at(20.0));
    assert!(effects.is_empty());
    assert_eq!(b.state(), AlarmState::Arming);
    assert_eq!(b.next_deadline(), Some(at(60.0)));
    assert_eq!(b.status(at(20.0)).delay_remaining_secs, Some(40));
    let effects = b.advance(at(60.0));
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Arming, AlarmState::ArmedAway)]
    );

    // Down past the deadline: armed, stamped with the deadline's time.
    let (b, effects) = Alarm::restore(snap, settings(), house(), at(500.0));
    assert_eq!(b.state(), AlarmState::ArmedAway);
    let Some(Effect::Transition(t)) = effects.first() else {
        panic!("{effects:?}")
    };
    assert_eq!(t.at, at(60.0));
}

#[test]
fn a_restart_resolves_entry_delay_and_trigger_time_as_if_they_had_run() {
    let mut a = armed_away();
    a.sensor(&id("door"), true, at(100.0)).unwrap();
    let snap = a.snapshot();

    let (b, effects) = Alarm::restore(snap.clone(), settings(), house(), at(200.0));
    assert_eq!(b.state(), AlarmState::Triggered);
    assert_eq!(b.next_deadline(), Some(at(730.0)));
    assert_eq!(
        transitions(&effects),
        [(AlarmState::Pending, AlarmState::Triggered)]
    );

    let (b, effects) = Alarm::restore(snap.clone(), settings(), house(), at(5000.0));
    assert_eq!(b.state(), AlarmState::ArmedAway);
    let times: Vec<SystemTime> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Transition(t) => Some(t.at),
            _ => None,
        })
        .collect();
    assert_eq!(times, [at(130.0), at(730.0)]);

    let mut s = settings();
    s.disarm_after_trigger = true;
    let (b, _) = Alarm::restore(snap, s, house(), at(5000.0));
    assert_eq!(b.state(), AlarmState::Disarmed);
}

#[test]
fn a_restart_while_armed_with_an_open_bypassed_sensor_triggers_nothing() {
    let mut a = alarm();
    a.sensor(&id("window"), true, at(0.0)).unwrap();
    a.command(forced(Action::ArmHome), &with_code(), at(1.0));
    let (mut b, effects) = Alarm::restore(a.snapshot(), settings(), house(), at(1e6));
    assert!(effects.is_empty());
    assert_eq!(b.state(), AlarmState::ArmedHome);
    // The retained sensor state arrives again after the restart: no change, nothing trips.
    assert!(b.sensor(&id("window"), true, at(1e6)).unwrap().is_empty());
    assert_eq!(b.state(), AlarmState::ArmedHome);
}

#[test]
fn a_broken_snapshot_is_repaired_towards_safety() {
    let mut snap = alarm().snapshot();
    snap.state = AlarmState::Arming;
    let (a, _) = Alarm::restore(snap.clone(), settings(), house(), at(0.0));
    assert_eq!(a.state(), AlarmState::Disarmed);

    snap.target = Some(ArmMode::Away);
    let (a, _) = Alarm::restore(snap.clone(), settings(), house(), at(0.0));
    assert_eq!(a.state(), AlarmState::ArmedAway);

    let mut snap = alarm().snapshot();
    snap.state = AlarmState::ArmedNight;
    snap.deadline_ms = Some(0);
    snap.sensors.insert(id("gone"), true);
    snap.bypassed.insert(id("gone"));
    let (a, effects) = Alarm::restore(snap, settings(), house(), at(0.0));
    assert!(effects.is_empty());
    assert_eq!(a.next_deadline(), None);
    assert!(a.snapshot().sensors.is_empty() && a.snapshot().bypassed.is_empty());
}

#[test]
fn a_late_timer_chains_deadlines_from_the_previous_one() {
    let mut a = armed_away();
    a.sensor(&id("door"), true, at(100.0)).unwrap();
    let effects = a.advance(at(10_000.0));
    let times: Vec<(AlarmState, SystemTime)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Transition(t) => Some((t.to, t.at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        times,
        [
            (AlarmState::Triggered, at(130.0)),
            (AlarmState::ArmedAway, at(730.0))
        ]
    );
    // Commands also resolve what is due first.
    let mut a = armed_away();
    a.sensor(&id("door"), true, at(100.0)).unwrap();
    let out = a.command(cmd(Action::Disarm), &with_code(), at(131.0));
    assert_eq!(
        transitions(&out.effects),
        [
            (AlarmState::Pending, AlarmState::Triggered),
            (AlarmState::Triggered, AlarmState::Disarmed)
        ]
    );
}

#[test]
fn reconfiguring_forgets_removed_sensors() {
    let mut a = alarm();
    a.sensor(&id("window"), true, at(0.0)).unwrap();
    a.command(forced(Action::ArmHome), &with_code(), at(1.0));
    let remaining: Vec<Sensor> = house()
        .into_iter()
        .filter(|s| s.id != id("window"))
        .collect();
    a.reconfigure(settings(), remaining);
    let status = a.status(at(2.0));
    assert!(status.bypassed_sensors.is_empty());
    assert!(status.open_sensors.is_empty());
    assert_eq!(a.state(), AlarmState::ArmedHome);
}

#[test]
fn settings_and_snapshots_fill_missing_fields_with_defaults() {
    let s: Settings = serde_json::from_str("{}").unwrap();
    assert_eq!(s, Settings::default());
    let s: Settings = serde_json::from_str(r#"{"code_arm_required": false}"#).unwrap();
    assert!(!s.code_arm_required && s.code_disarm_required);
    let text = serde_json::to_string(&settings()).unwrap();
    assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), settings());

    let snap: AlarmSnapshot = serde_json::from_str(r#"{"state": "armed_night"}"#).unwrap();
    let (a, effects) = Alarm::restore(snap, settings(), house(), at(0.0));
    assert!(effects.is_empty());
    assert_eq!(a.state(), AlarmState::ArmedNight);
}

#[test]
fn sensor_values_and_home_assistant_features() {
    let mut a = alarm();
    assert_eq!(a.sensor_state(&id("door")), None);
    a.sensor(&id("door"), true, at(0.0)).unwrap();
    assert_eq!(a.sensor_state(&id("door")), Some(true));
    a.sensor(&id("door"), false, at(1.0)).unwrap();
    assert_eq!(a.sensor_state(&id("door")), Some(false));
    let features: Vec<&str> = ArmMode::ALL.iter().map(|m| m.supported_feature()).collect();
    assert_eq!(
        features,
        [
            "arm_home",
            "arm_away",
            "arm_night",
            "arm_vacation",
            "arm_custom_bypass"
        ]
    );
}
