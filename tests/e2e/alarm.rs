//! The alarm end to end: the real server (in-process, restarted on the same data dir), the
//! embedded broker, a rumqttc client playing Home Assistant (logged in with the
//! `homeassistant` role, subscribed as HA does) that reads the retained discovery, renders
//! its `command_template` with a real Jinja engine (minijinja) and publishes the result, and
//! a sensor publishing on the broker. PINs are checked by `FixedPins` (argon2id, PIN profile).

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use porchlight_domain::Role;
use porchlight_domain::alarm::{
    AlarmState, ArmMode, MqttSource, Sensor, SensorId, SensorKind, SensorSource, Settings,
};
use porchlight_domain::secret::Secret;
use porchlight_server::alarm::{FixedCode, FixedPins};
use porchlight_server::store::AlarmEventKind;
use porchlight_server::{Config, LoadOptions, Overrides, Running};
use rumqttc::{AsyncClient, MqttOptions, Packet, Publish, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::support::ADMIN_PASSWORD;

const WAIT: Duration = Duration::from_secs(10);
const HA_PASSWORD: &str = "home assistant password 1";
const PANEL_CONFIG: &str = "homeassistant/alarm_control_panel/porchlight/config";
const DURESS_CONFIG: &str = "homeassistant/event/porchlight_duress/config";
const STATE: &str = "porchlight/alarm/state";
const COMMAND: &str = "porchlight/alarm/set";
const ERROR: &str = "porchlight/alarm/error";
const DURESS: &str = "porchlight/alarm/duress";
const AVAILABILITY: &str = "porchlight/alarm/availability";
const ATTRIBUTES: &str = "porchlight/alarm/attributes";
const PIN: &str = "0042";
const DURESS_PIN: &str = "9911";
const SENSOR_TOPIC: &str = "zigbee2mqtt/front_door";

/// Whether `topic` is one the alarm publishes on (for tests about other things).
pub fn is_alarm_topic(topic: &str) -> bool {
    topic.starts_with("porchlight/alarm/") || topic == PANEL_CONFIG || topic == DURESS_CONFIG
}

/// The codes every test uses: alice's normal PIN and her duress PIN (hashed once).
fn codes() -> FixedPins {
    static CODES: std::sync::OnceLock<Vec<FixedCode>> = std::sync::OnceLock::new();
    FixedPins::new(
        CODES
            .get_or_init(|| {
                vec![
                    FixedCode::new("alice", PIN, false).unwrap(),
                    FixedCode::new("alice", DURESS_PIN, true).unwrap(),
                ]
            })
            .clone(),
    )
}

/// Starts the server on `dir` (kept across restarts) with the test codes.
async fn start(dir: &Path) -> Running {
    let options = LoadOptions {
        data_dir: Some(dir.to_owned()),
        http_port: Some(0),
        mqtt_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..LoadOptions::default()
    };
    let env = [(
        "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
        ADMIN_PASSWORD.to_owned(),
    )];
    let config = Config::load_from(&options, env).unwrap();
    let overrides = Overrides {
        pin_verifier: Some(Arc::new(codes())),
        ..Overrides::default()
    };
    porchlight_server::start_with_overrides(config, overrides, |_| {})
        .await
        .unwrap()
}

/// A fresh server with a `homeassistant` account and `settings`.
async fn start_fresh(settings: &Settings) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    running
        .store()
        .create_user(
            "homeassistant",
            Role::HomeAssistant,
            &Secret::new(HA_PASSWORD),
            SystemTime::now(),
        )
        .await
        .unwrap();
    configure(&running, settings, &[]).await;
    (dir, running)
}

async fn configure(running: &Running, settings: &Settings, sensors: &[Sensor]) {
    let store = running.store();
    store
        .set_alarm_settings(settings, SystemTime::now())
        .await
        .unwrap();
    for sensor in sensors {
        store
            .put_alarm_sensor(sensor, SystemTime::now())
            .await
            .unwrap();
    }
    running.alarm().reload().await.unwrap();
}

/// Settings whose delays and guards do not get in the way of a scripted test.
fn quick(code_required: bool) -> Settings {
    let mut s = Settings {
        code_arm_required: code_required,
        code_disarm_required: code_required,
        dedup_window_ms: 0,
        rearm_guard_ms: 0,
        ..Settings::default()
    };
    for mode in ArmMode::ALL {
        s.mode_mut(mode).exit_delay_secs = 0;
    }
    s
}

fn front_door() -> Sensor {
    Sensor {
        id: SensorId("front".into()),
        name: "Front door".into(),
        kind: SensorKind::Door,
        modes: BTreeSet::from([ArmMode::Away]),
        use_entry_delay: true,
        allow_open_while_arming: false,
        source: SensorSource::Mqtt(MqttSource {
            topic: SENSOR_TOPIC.into(),
            field: Some("contact".into()),
            on: serde_json::json!(false),
            off: serde_json::json!(true),
        }),
    }
}

/// An MQTT client whose publishes arrive on a channel.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    /// Publishes read while waiting for another topic, handed out first.
    skipped: VecDeque<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(running: &Running, id: &str, user: &str, pass: &str) -> Client {
        let addr = running.mqtt_addr.unwrap();
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_credentials(user, pass);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let rumqttc::Event::Incoming(p) = event
                    && tx.send(p).is_err()
                {
                    return;
                }
            }
        });
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Packet::ConnAck(_))) => {}
            other => panic!("{user} could not connect: {other:?}"),
        }
        Client {
            client,
            events,
            skipped: VecDeque::new(),
            task,
        }
    }

    /// Home Assistant: the `homeassistant` account, subscribed to its discovery prefix and to
    /// Porchlight's tree.
    async fn home_assistant(running: &Running) -> Client {
        let ha = Client::connect(running, "ha-core", "homeassistant", HA_PASSWORD).await;
        for filter in ["homeassistant/#", "porchlight/#"] {
            ha.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        }
        ha
    }

    /// The next publish on `topic` (others are kept for later calls).
    async fn next(&mut self, topic: &str) -> Publish {
        if let Some(i) = self.skipped.iter().position(|p| p.topic == topic) {
            return self.skipped.remove(i).unwrap();
        }
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Packet::Publish(p))) if p.topic == topic => return p,
                Ok(Some(Packet::Publish(p))) => self.skipped.push_back(p),
                Ok(Some(_)) => {}
                other => panic!("no publish on {topic}: {other:?}"),
            }
        }
    }

    async fn next_text(&mut self, topic: &str) -> String {
        String::from_utf8(self.next(topic).await.payload.to_vec()).unwrap()
    }

    async fn next_json(&mut self, topic: &str) -> Value {
        serde_json::from_slice(&self.next(topic).await.payload).unwrap()
    }

    /// The next JSON publish on `topic` that `want` accepts (earlier ones are dropped).
    async fn next_json_where(&mut self, topic: &str, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let value = self.next_json(topic).await;
            if want(&value) {
                return value;
            }
        }
    }

    /// The next publish on `topic` with this payload (earlier ones are dropped).
    async fn next_text_eq(&mut self, topic: &str, want: &str) {
        while self.next_text(topic).await != want {}
    }

    /// Drops what arrived so far (after the retained messages were read).
    async fn settle(&mut self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(p) = self.events.try_recv() {
            if let Packet::Publish(p) = p {
                self.skipped.push_back(p);
            }
        }
        self.skipped.clear();
    }

    /// Whether a publish on `topic` is among those received so far.
    fn has_seen(&mut self, topic: &str) -> bool {
        while let Ok(p) = self.events.try_recv() {
            if let Packet::Publish(p) = p {
                self.skipped.push_back(p);
            }
        }
        self.skipped.iter().any(|p| p.topic == topic)
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }
}

/// What Home Assistant publishes: the discovery's `command_template` rendered by a Jinja
/// engine with `action` and `code` (`None` when the call carried no code).
fn render(template: &str, action: &str, code: Option<&str>) -> String {
    let env = minijinja::Environment::new();
    let code = match code {
        Some(c) => minijinja::Value::from(c),
        None => minijinja::Value::from(()),
    };
    env.render_str(
        template,
        minijinja::context! { action => action, code => code },
    )
    .unwrap()
}

/// The codes as HA sends them: none (rendered by Jinja), `None` (HA 2025's text), `""`.
const NO_CODES: [Option<&str>; 3] = [None, Some("None"), Some("")];

#[tokio::test]
async fn home_assistant_drives_the_panel_through_discovery_and_its_command_template() {
    for required in [true, false] {
        let (_dir, running) = start_fresh(&quick(required)).await;
        let mut ha = Client::home_assistant(&running).await;
        let config = ha.next_json(PANEL_CONFIG).await;
        assert_eq!(config["code"], "REMOTE_CODE");
        assert_eq!(config["code_arm_required"], required);
        assert_eq!(config["code_disarm_required"], required);
        assert_eq!(config["state_topic"], STATE);
        assert_eq!(config["command_topic"], COMMAND);
        assert_eq!(config["json_attributes_topic"], ATTRIBUTES);
        assert_eq!(config["availability"][0]["topic"], AVAILABILITY);
        assert_eq!(
            config["default_entity_id"],
            "alarm_control_panel.porchlight"
        );
        assert_eq!(config["object_id"], "porchlight");
        assert!(config["unique_id"].is_string());
        assert!(config["device"]["identifiers"].is_array());
        assert_eq!(
            config["supported_features"],
            serde_json::json!(["arm_home", "arm_away", "arm_night", "trigger"])
        );
        assert_eq!(ha.next_text(AVAILABILITY).await, "online");
        assert_eq!(ha.next_text(STATE).await, "disarmed");
        let template = config["command_template"].as_str().unwrap().to_owned();
        ha.settle().await;

        for no_code in NO_CODES {
            // Arm without a code.
            ha.publish(COMMAND, render(&template, "ARM_HOME", no_code))
                .await;
            if required {
                let error = ha.next_json(ERROR).await;
                assert_eq!(error["reason"], "code_required", "{no_code:?}");
                assert_eq!(error["action"], "ARM_HOME");
                assert_eq!(ha.next_text(STATE).await, "disarmed");
                ha.publish(COMMAND, render(&template, "ARM_HOME", Some(PIN)))
                    .await;
            }
            assert_eq!(ha.next_text(STATE).await, "armed_home", "{no_code:?}");
            // Disarm without a code.
            ha.publish(COMMAND, render(&template, "DISARM", no_code))
                .await;
            if required {
                let error = ha.next_json(ERROR).await;
                assert_eq!(error["reason"], "code_required", "{no_code:?}");
                assert_eq!(ha.next_text(STATE).await, "armed_home");
                ha.publish(COMMAND, render(&template, "disarm", Some(PIN)))
                    .await;
            }
            assert_eq!(ha.next_text(STATE).await, "disarmed", "{no_code:?}");
        }
        // A wrong PIN is refused whatever the settings; the state is re-published unchanged.
        ha.publish(COMMAND, render(&template, "ARM_AWAY", Some("1234")))
            .await;
        let error = ha.next_json(ERROR).await;
        assert_eq!(error["reason"], "wrong_code");
        assert!(!error.to_string().contains("1234"));
        assert_eq!(ha.next_text(STATE).await, "disarmed");
        // A mode that is not enabled, and the `{{ value }}` template bug.
        ha.publish(COMMAND, render(&template, "ARM_VACATION", Some(PIN)))
            .await;
        assert_eq!(ha.next_json(ERROR).await["reason"], "mode_disabled");
        assert_eq!(ha.next_text(STATE).await, "disarmed");
        ha.publish(COMMAND, r#"{"action": "None", "code": "0042"}"#)
            .await;
        assert_eq!(ha.next_json(ERROR).await["reason"], "unknown_action");
        assert_eq!(ha.next_text(STATE).await, "disarmed");
        // Changed by the code's holder, never the code.
        ha.settle().await;
        ha.publish(COMMAND, render(&template, "ARM_NIGHT", Some(PIN)))
            .await;
        assert_eq!(ha.next_text(STATE).await, "armed_night");
        let attributes = ha.next_json(ATTRIBUTES).await;
        assert_eq!(attributes["changed_by"], "alice");
        assert_eq!(attributes["ready_to_arm"], true);

        let refused = running
            .store()
            .alarm_events(None, None, &[AlarmEventKind::CodeRefused], 10)
            .await
            .unwrap();
        assert_eq!(refused.len(), 1);
        assert!(refused[0].detail.as_deref().unwrap().contains("wrong_code"));
        ha.task.abort();
        running.shutdown().await;
    }
}

#[tokio::test]
async fn a_sensor_on_the_broker_drives_every_transition_and_the_log_records_them() {
    let mut settings = quick(false);
    settings.away.exit_delay_secs = 1;
    settings.away.entry_delay_secs = 1;
    settings.away.trigger_time_secs = 1;
    let (_dir, running) = start_fresh(&settings).await;
    configure(&running, &settings, &[front_door()]).await;
    let mut ha = Client::home_assistant(&running).await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.settle().await;
    let door = Client::connect(&running, "zigbee2mqtt", "admin", ADMIN_PASSWORD).await;

    // Open: arming is refused, naming the sensor.
    door.publish(SENSOR_TOPIC, r#"{"contact": false, "battery": 97}"#)
        .await;
    let attributes = ha.next_json(ATTRIBUTES).await;
    assert_eq!(
        attributes["open_sensors"],
        serde_json::json!(["Front door"])
    );
    assert_eq!(attributes["ready_to_arm"], false);
    ha.publish(COMMAND, "ARM_AWAY").await;
    let error = ha.next_json(ERROR).await;
    assert_eq!(error["reason"], "open_sensors");
    assert!(error["message"].as_str().unwrap().contains("Front door"));
    assert_eq!(ha.next_text(STATE).await, "disarmed");

    // Closed: exit delay, armed; opened: entry delay, triggered, back to armed.
    door.publish(SENSOR_TOPIC, r#"{"contact": true}"#).await;
    // (Two clients: the close must have arrived before the command is sent.)
    ha.next_json_where(ATTRIBUTES, |a| a["ready_to_arm"] == true)
        .await;
    ha.publish(COMMAND, "ARM_AWAY").await;
    assert_eq!(ha.next_text(STATE).await, "arming");
    let attributes = ha
        .next_json_where(ATTRIBUTES, |a| a["next_state"] == "armed_away")
        .await;
    assert_eq!(attributes["delay_remaining_secs"], 1);
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    door.publish(SENSOR_TOPIC, r#"{"contact": false}"#).await;
    assert_eq!(ha.next_text(STATE).await, "pending");
    assert_eq!(ha.next_text(STATE).await, "triggered");
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    // Closed and opened again: pending; a disarm in the entry delay.
    door.publish(SENSOR_TOPIC, r#"{"contact": true}"#).await;
    door.publish(SENSOR_TOPIC, r#"{"contact": false}"#).await;
    assert_eq!(ha.next_text(STATE).await, "pending");
    ha.publish(COMMAND, "DISARM").await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    // Triggered by a panic button; disarmed.
    ha.publish(COMMAND, "TRIGGER").await;
    assert_eq!(ha.next_text(STATE).await, "triggered");
    ha.publish(COMMAND, "DISARM").await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");

    // Sensors are reconfigured while running: a removed sensor's topic is no longer read, so
    // its opening neither blocks arming nor trips the alarm.
    running
        .store()
        .delete_alarm_sensor(&SensorId("front".into()))
        .await
        .unwrap();
    running.alarm().reload().await.unwrap();
    // A reload announces the panel again (its features may have changed).
    ha.next(PANEL_CONFIG).await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    door.publish(SENSOR_TOPIC, r#"{"contact": true}"#).await;
    door.publish(SENSOR_TOPIC, r#"{"contact": false}"#).await;
    ha.publish(COMMAND, "ARM_AWAY").await;
    assert_eq!(ha.next_text(STATE).await, "arming");
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    ha.publish(COMMAND, "DISARM").await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");

    let mut transitions = running
        .store()
        .alarm_events(None, None, &[AlarmEventKind::Transition], 100)
        .await
        .unwrap();
    transitions.reverse();
    let path: Vec<(String, String)> = transitions
        .iter()
        .map(|e| (e.from_state.clone().unwrap(), e.to_state.clone().unwrap()))
        .collect();
    let want = [
        ("disarmed", "arming"),
        ("arming", "armed_away"),
        ("armed_away", "pending"),
        ("pending", "triggered"),
        ("triggered", "armed_away"),
        ("armed_away", "pending"),
        ("pending", "disarmed"),
        ("disarmed", "triggered"),
        ("triggered", "disarmed"),
        ("disarmed", "arming"),
        ("arming", "armed_away"),
        ("armed_away", "disarmed"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(path, want);
    assert_eq!(transitions[2].sensor.as_deref(), Some("front"));
    let trips = running
        .store()
        .alarm_events(None, None, &[AlarmEventKind::SensorTripped], 100)
        .await
        .unwrap();
    assert_eq!(trips.len(), 2);
    ha.task.abort();
    door.task.abort();
    running.shutdown().await;
}

#[tokio::test]
async fn a_restart_in_the_exit_delay_continues_it_and_one_after_it_resolves_it() {
    let mut settings = quick(false);
    settings.away.exit_delay_secs = 3;
    let (dir, running) = start_fresh(&settings).await;
    let mut ha = Client::home_assistant(&running).await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.publish(COMMAND, "ARM_AWAY").await;
    assert_eq!(ha.next_text(STATE).await, "arming");
    let before = running.alarm().status().await.unwrap();
    assert_eq!(before.state, AlarmState::Arming);
    let deadline = before.deadline.unwrap();
    running.shutdown().await;
    // Home Assistant was told the panel went away.
    ha.next_text_eq(AVAILABILITY, "offline").await;
    ha.task.abort();

    // The same data dir: still arming, towards the same deadline.
    let running = start(dir.path()).await;
    let after = running.alarm().status().await.unwrap();
    assert_eq!(after.state, AlarmState::Arming);
    assert_eq!(after.deadline, Some(deadline));
    let mut ha = Client::home_assistant(&running).await;
    assert_eq!(ha.next_text(STATE).await, "arming");
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    assert!(SystemTime::now() >= deadline);
    ha.task.abort();
    running.shutdown().await;

    // Down across a whole exit delay: armed at start, as if the delay had run.
    let running = start(dir.path()).await;
    running
        .alarm()
        .command(porchlight_server::alarm::CommandRequest {
            action: porchlight_domain::alarm::Action::Disarm,
            force: false,
            pin: None,
            via: porchlight_domain::alarm::Via::Api,
            user: Some("admin".into()),
            peer: None,
        })
        .await
        .unwrap();
    let reply = running
        .alarm()
        .command(porchlight_server::alarm::CommandRequest {
            action: porchlight_domain::alarm::Action::ArmAway,
            force: false,
            pin: None,
            via: porchlight_domain::alarm::Via::Api,
            user: Some("admin".into()),
            peer: None,
        })
        .await
        .unwrap();
    assert!(
        matches!(&reply, porchlight_server::alarm::CommandReply::Accepted(s) if s.state == AlarmState::Arming),
        "{reply:?}"
    );
    let deadline = running.alarm().status().await.unwrap().deadline.unwrap();
    running.shutdown().await;
    tokio::time::sleep(
        deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + Duration::from_millis(200),
    )
    .await;
    let running = start(dir.path()).await;
    assert_eq!(
        running.alarm().status().await.unwrap().state,
        AlarmState::ArmedAway
    );
    let transitions = running
        .store()
        .alarm_events(None, None, &[AlarmEventKind::Transition], 1)
        .await
        .unwrap();
    assert_eq!(transitions[0].to_state.as_deref(), Some("armed_away"));
    assert_eq!(transitions[0].at, deadline);
    running.shutdown().await;
}

#[tokio::test]
async fn repeated_commands_within_the_window_count_once() {
    let mut settings = quick(true);
    settings.dedup_window_ms = 1_000;
    let (_dir, running) = start_fresh(&settings).await;
    let mut ha = Client::home_assistant(&running).await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.settle().await;
    let arm = format!(r#"{{"action": "ARM_HOME", "code": "{PIN}"}}"#);
    for _ in 0..3 {
        ha.publish(COMMAND, arm.clone()).await;
    }
    ha.publish(
        COMMAND,
        format!(r#"{{"action": "ARM_NIGHT", "code": "{PIN}"}}"#),
    )
    .await;
    assert_eq!(ha.next_text(STATE).await, "armed_home");
    assert_eq!(ha.next_text(STATE).await, "armed_night");
    // Without de-duplication the repeats would be refused ("not allowed while armed_home").
    assert!(!ha.has_seen(ERROR));
    let codes = running
        .store()
        .alarm_events(None, None, &[AlarmEventKind::CodeAccepted], 10)
        .await
        .unwrap();
    assert_eq!(codes.len(), 2);
    ha.task.abort();
    running.shutdown().await;
}

#[tokio::test]
async fn a_duress_code_disarms_like_any_other_and_silently_calls_for_help() {
    let (_dir, running) = start_fresh(&quick(true)).await;
    let mut ha = Client::home_assistant(&running).await;
    let event_config = ha.next_json(DURESS_CONFIG).await;
    assert_eq!(event_config["state_topic"], DURESS);
    assert_eq!(event_config["event_types"], serde_json::json!(["duress"]));
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.settle().await;

    ha.publish(
        COMMAND,
        format!(r#"{{"action": "ARM_AWAY", "code": "{PIN}"}}"#),
    )
    .await;
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    let normal = ha
        .next_json_where(ATTRIBUTES, |a| a["changed_by"] == "alice")
        .await;
    ha.publish(
        COMMAND,
        format!(r#"{{"action": "DISARM", "code": "{DURESS_PIN}"}}"#),
    )
    .await;
    let duress = ha.next_json(DURESS).await;
    assert_eq!(duress["event_type"], "duress");
    assert_eq!(duress["by"], "alice");
    assert_eq!(duress["via"], "home_assistant");
    let state = ha.next(STATE).await;
    assert_eq!(&state.payload[..], b"disarmed");
    let attributes = ha.next_json(ATTRIBUTES).await;
    assert_eq!(attributes["changed_by"], normal["changed_by"]);
    assert_eq!(attributes["last_event"]["kind"], "transition");
    assert!(!ha.has_seen(ERROR));

    let duress_events = running
        .store()
        .alarm_events(None, None, &[AlarmEventKind::Duress], 10)
        .await
        .unwrap();
    assert_eq!(duress_events.len(), 1);
    assert_eq!(duress_events[0].who.as_deref(), Some("alice"));
    // The retained state a later subscriber sees is a plain disarm too.
    let mut late = Client::connect(&running, "late", "admin", ADMIN_PASSWORD).await;
    late.client
        .subscribe(STATE, QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(late.next_text(STATE).await, "disarmed");
    ha.task.abort();
    late.task.abort();
    running.shutdown().await;
}

#[tokio::test]
async fn the_homeassistant_account_cannot_overwrite_what_porchlight_publishes() {
    let (_dir, running) = start_fresh(&quick(true)).await;
    let mut ha = Client::home_assistant(&running).await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.settle().await;
    ha.publish(
        COMMAND,
        format!(r#"{{"action": "ARM_HOME", "code": "{PIN}"}}"#),
    )
    .await;
    assert_eq!(ha.next_text(STATE).await, "armed_home");
    for (topic, payload) in [
        (STATE, "disarmed"),
        (AVAILABILITY, "offline"),
        (ATTRIBUTES, "{}"),
        (DURESS, r#"{"event_type": "duress"}"#),
    ] {
        ha.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
    // Its own topics still work: the denied publishes did not end the session.
    ha.publish("homeassistant/sensor/x/config", "{}").await;
    ha.next("homeassistant/sensor/x/config").await;

    let mut watcher = Client::connect(&running, "watcher", "admin", ADMIN_PASSWORD).await;
    watcher
        .client
        .subscribe("porchlight/alarm/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(watcher.next_text(STATE).await, "armed_home");
    assert_eq!(watcher.next_text(AVAILABILITY).await, "online");
    assert_ne!(watcher.next_text(ATTRIBUTES).await, "{}");
    assert!(!watcher.has_seen(DURESS));
    assert!(!ha.has_seen(DURESS));
    ha.task.abort();
    watcher.task.abort();
    running.shutdown().await;
}

#[tokio::test]
async fn home_assistant_coming_online_gets_discovery_availability_and_state_again() {
    let (_dir, running) = start_fresh(&quick(true)).await;
    let mut ha = Client::home_assistant(&running).await;
    assert!(ha.next(PANEL_CONFIG).await.retain);
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.settle().await;
    // HA's birth message: QoS 0, not retained.
    ha.client
        .publish("homeassistant/status", QoS::AtMostOnce, false, "online")
        .await
        .unwrap();
    let config: Value = serde_json::from_slice(&ha.next(PANEL_CONFIG).await.payload).unwrap();
    assert_eq!(config["code"], "REMOTE_CODE");
    ha.next(DURESS_CONFIG).await;
    assert_eq!(ha.next_text(AVAILABILITY).await, "online");
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    // Its will (`offline`) is not a birth.
    ha.settle().await;
    ha.client
        .publish("homeassistant/status", QoS::AtMostOnce, false, "offline")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ha.has_seen(PANEL_CONFIG));
    ha.task.abort();
    running.shutdown().await;
}

#[test]
fn kill_9_in_the_exit_delay_and_the_next_process_continues_it() {
    use crate::crash::{kill_9, mosquitto, mqtt_port, serve};
    let dir = tempfile::tempdir().unwrap();
    let mut settings = quick(false);
    settings.away.exit_delay_secs = 5;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store =
            porchlight_server::store::Store::open(&dir.path().join("porchlight.db")).unwrap();
        store
            .set_alarm_settings(&settings, SystemTime::now())
            .await
            .unwrap();
        store.close().await;
    });

    let mut first = serve(dir.path());
    let port = mqtt_port(dir.path());
    // QoS 1: mosquitto_pub exits after the PUBACK, which leaves only once `arming` is
    // persisted and published, so the retained state below is already `arming`.
    let out = mosquitto(
        "mosquitto_pub",
        &port,
        &["-q", "1", "-t", COMMAND, "-m", "arm_away"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = mosquitto("mosquitto_sub", &port, &["-t", STATE, "-C", "1", "-W", "5"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "arming");
    kill_9(&mut first);

    let mut second = serve(dir.path());
    let port = mqtt_port(dir.path());
    let out = mosquitto(
        "mosquitto_sub",
        &port,
        &["-t", STATE, "-C", "2", "-W", "15"],
    );
    let states: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(states, ["arming", "armed_away"], "{out:?}");
    kill_9(&mut second);
}

/// Without overrides the panel checks the PIN codes users stored: a code added for alice arms
/// and disarms from Home Assistant (named as the one who changed it), a code that may only
/// arm cannot disarm, and a wrong PIN is refused.
#[tokio::test]
async fn stored_pin_codes_drive_the_panel() {
    let dir = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        data_dir: Some(dir.path().to_owned()),
        http_port: Some(0),
        mqtt_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..LoadOptions::default()
    };
    let env = [(
        "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
        ADMIN_PASSWORD.to_owned(),
    )];
    let running = porchlight_server::start(Config::load_from(&options, env).unwrap())
        .await
        .unwrap();
    let store = running.store();
    let now = SystemTime::now();
    store
        .create_user(
            "homeassistant",
            Role::HomeAssistant,
            &Secret::new(HA_PASSWORD),
            now,
        )
        .await
        .unwrap();
    let alice = store
        .create_user("alice", Role::User, &Secret::new("alice password 1"), now)
        .await
        .unwrap();
    let code = |pin: &str, may_disarm: bool| porchlight_server::store::NewAlarmCode {
        label: format!("keypad {pin}"),
        pin: Secret::new(pin),
        may_arm: true,
        may_disarm,
        duress: false,
        enabled: true,
        valid_from: None,
        valid_until: None,
    };
    store
        .add_alarm_code(alice.id, code("0007", true), now)
        .await
        .unwrap();
    store
        .add_alarm_code(alice.id, code("5150", false), now)
        .await
        .unwrap();
    configure(&running, &quick(true), &[]).await;

    let mut ha = Client::home_assistant(&running).await;
    let config = ha.next_json(PANEL_CONFIG).await;
    let template = config["command_template"].as_str().unwrap().to_owned();
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    ha.settle().await;

    ha.publish(COMMAND, render(&template, "ARM_AWAY", Some("0007")))
        .await;
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    let attributes = ha
        .next_json_where(ATTRIBUTES, |a| a["changed_by"] == "alice")
        .await;
    assert_eq!(attributes["changed_by"], "alice");

    // An arm-only code does not disarm; a wrong PIN is refused; neither changes the state.
    ha.publish(COMMAND, render(&template, "DISARM", Some("5150")))
        .await;
    let error = ha.next_json(ERROR).await;
    assert_ne!(error["reason"], "wrong_code", "{error}");
    assert_eq!(ha.next_text(STATE).await, "armed_away");
    ha.publish(COMMAND, render(&template, "DISARM", Some("1111")))
        .await;
    let error = ha.next_json(ERROR).await;
    assert_eq!(error["reason"], "wrong_code", "{error}");
    assert!(!error.to_string().contains("1111"));
    assert_eq!(ha.next_text(STATE).await, "armed_away");

    ha.publish(COMMAND, render(&template, "DISARM", Some("0007")))
        .await;
    assert_eq!(ha.next_text(STATE).await, "disarmed");
    running.shutdown().await;
}
