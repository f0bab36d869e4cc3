//! Home Assistant device trackers end to end: a phone publishes over real MQTT; a rumqttc
//! client logged in with the `homeassistant` role subscribes to `homeassistant/#` and
//! `porchlight/#` as Home Assistant does, and reads the discovery config, the attributes and
//! the availability the server publishes (retained).

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, Packet, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{TestServer, mqtt_connect};

const WAIT: Duration = Duration::from_secs(10);
const ENABLED: &str = "[owntracks]\nha_discovery = true\n";
const CONFIG_TOPIC: &str = "homeassistant/device_tracker/porchlight_alice_phone/config";
const ATTRIBUTES_TOPIC: &str = "porchlight/owntracks/alice/phone/attributes";
const AVAILABILITY_TOPIC: &str = "porchlight/owntracks/alice/phone/availability";
const HA_PASSWORD: &str = "home assistant password 1";

/// An MQTT client whose incoming packets arrive on a channel.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    /// Packets read while waiting for another one, handed out first.
    skipped: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(
        s: &TestServer,
        id: &str,
        user: &str,
        pass: &str,
        will: Option<LastWill>,
    ) -> Client {
        let (client, events, task) = mqtt_connect(s, id, user, pass, will).await;
        Client {
            client,
            events,
            skipped: VecDeque::new(),
            task,
        }
    }

    /// Home Assistant: logged in with the `homeassistant` role, subscribed like HA.
    async fn home_assistant(s: &TestServer, id: &str) -> Client {
        let mut ha = Client::connect(s, id, "homeassistant", HA_PASSWORD, None).await;
        for filter in ["homeassistant/#", "porchlight/#"] {
            ha.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            ha.next(|p| match p {
                Packet::SubAck(_) => Take::Yes(()),
                p => Take::No(p),
            })
            .await;
        }
        ha
    }

    /// The first packet `want` takes; the ones it refuses stay, in order, for later calls.
    async fn next<T>(&mut self, mut want: impl FnMut(Packet) -> Take<T>) -> T {
        let mut kept = VecDeque::new();
        let found = loop {
            let p = match self.skipped.pop_front() {
                Some(p) => p,
                None => match tokio::time::timeout(WAIT, self.events.recv()).await {
                    Ok(Some(p)) => p,
                    other => panic!("expected packet did not arrive: {other:?}"),
                },
            };
            match want(p) {
                Take::Yes(v) => break v,
                Take::No(p) => kept.push_back(p),
            }
        };
        kept.append(&mut self.skipped);
        self.skipped = kept;
        found
    }

    /// The next PUBLISH on `topic` (others stay for later calls).
    async fn publish_on(&mut self, topic: &str) -> Publish {
        self.next(|p| match p {
            Packet::Publish(p) if p.topic == topic => Take::Yes(p),
            p => Take::No(p),
        })
        .await
    }

    async fn publish_acked(&mut self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
        self.next(|p| match p {
            Packet::PubAck(_) => Take::Yes(()),
            p => Take::No(p),
        })
        .await;
    }
}

/// What a [`Client::next`] filter does with a packet.
enum Take<T> {
    Yes(T),
    No(Packet),
}

fn json_of(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap()
}

/// alice (a `user` with a device key `phone`) and `homeassistant` (the HA role); alice's key.
async fn accounts(s: &TestServer) -> String {
    let admin = s.admin().await;
    for (user, role, password) in [
        ("alice", "user", "alice password 1"),
        ("homeassistant", "homeassistant", HA_PASSWORD),
    ] {
        let r = admin
            .post(s.url("/api/users"))
            .json(&json!({ "username": user, "role": role, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let device: Value = admin
        .post(s.url("/api/devices"))
        .json(&json!({ "username": "alice", "name": "phone" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    device["mqtt_password"].as_str().unwrap().to_owned()
}

fn location() -> String {
    json!({
        "_type": "location", "tst": 1764000001, "lat": 52.520008, "lon": 13.404954,
        "acc": 12, "batt": 77, "alt": 34, "vel": 5, "cog": 90, "tid": "al"
    })
    .to_string()
}

fn assert_config(config: &Value) {
    assert_eq!(config["json_attributes_topic"], ATTRIBUTES_TOPIC);
    assert_eq!(config["availability_topic"], AVAILABILITY_TOPIC);
    assert_eq!(config["payload_available"], "online");
    assert_eq!(config["payload_not_available"], "offline");
    assert_eq!(config["source_type"], "gps");
    assert_eq!(config["unique_id"], "porchlight_alice_phone");
    assert_eq!(config["object_id"], "porchlight_alice_phone");
    assert_eq!(
        config["default_entity_id"],
        "device_tracker.porchlight_alice_phone"
    );
    assert!(config.get("name").is_some(), "{config}");
    // No state topic: HA takes the position from the attributes.
    assert!(config.get("state_topic").is_none(), "{config}");
    assert_eq!(
        config["device"]["identifiers"],
        json!(["porchlight_alice_phone"])
    );
    assert_eq!(config["device"]["manufacturer"], "OwnTracks via Porchlight");
    assert!(config["device"]["name"].is_string(), "{config}");
}

fn assert_attributes(attributes: &Value) {
    assert_eq!(attributes["latitude"], json!(52.520008));
    assert_eq!(attributes["longitude"], json!(13.404954));
    assert_eq!(attributes["gps_accuracy"].as_f64(), Some(12.0));
    assert_eq!(attributes["battery_level"].as_f64(), Some(77.0));
    assert_eq!(attributes["altitude"].as_f64(), Some(34.0));
    assert_eq!(attributes["velocity"].as_f64(), Some(5.0));
    assert_eq!(attributes["course"].as_f64(), Some(90.0));
    // OwnTracks' own names are not what HA reads.
    assert!(attributes.get("lat").is_none(), "{attributes}");
}

#[tokio::test]
async fn home_assistant_sees_a_phone_as_a_device_tracker() {
    let s = TestServer::start_with_config(Some(0), ENABLED).await;
    let key = accounts(&s).await;
    let mut ha = Client::home_assistant(&s, "ha-1").await;

    let will = LastWill::new(
        "owntracks/alice/phone",
        r#"{"_type":"lwt","tst":1764000000}"#,
        QoS::AtLeastOnce,
        false,
    );
    let mut phone = Client::connect(&s, "alice-phone", "alice", &key, Some(will)).await;
    phone
        .publish_acked("owntracks/alice/phone", location().as_bytes())
        .await;

    // The config comes before the device's first availability and attributes.
    let config = ha.publish_on(CONFIG_TOPIC).await;
    assert_config(&json_of(&config));
    let mut online = None;
    let mut attributes = None;
    while online.is_none() || attributes.is_none() {
        let p = ha
            .next(|p| match p {
                Packet::Publish(p) if p.topic.starts_with("porchlight/owntracks/") => Take::Yes(p),
                p => Take::No(p),
            })
            .await;
        match p.topic.as_str() {
            AVAILABILITY_TOPIC => online = Some(p.payload.clone()),
            ATTRIBUTES_TOPIC => attributes = Some(json_of(&p)),
            other => panic!("unexpected topic {other}"),
        }
    }
    assert_eq!(online.unwrap().as_ref(), b"online");
    assert_attributes(&attributes.unwrap());

    // The phone's socket closes without DISCONNECT: its will (an LWT) makes it unavailable.
    phone.task.abort();
    drop(phone);
    let offline = ha.publish_on(AVAILABILITY_TOPIC).await;
    assert_eq!(offline.payload.as_ref(), b"offline");

    // An HA that connects later gets all three at once, retained.
    let mut later = Client::home_assistant(&s, "ha-2").await;
    let config = later.publish_on(CONFIG_TOPIC).await;
    assert!(config.retain);
    assert_config(&json_of(&config));
    let mut availability = None;
    let mut attributes = None;
    while availability.is_none() || attributes.is_none() {
        let p = later
            .next(|p| match p {
                Packet::Publish(p) if p.topic.starts_with("porchlight/owntracks/") => Take::Yes(p),
                p => Take::No(p),
            })
            .await;
        assert!(p.retain, "{p:?}");
        match p.topic.as_str() {
            AVAILABILITY_TOPIC => availability = Some(p.payload.clone()),
            ATTRIBUTES_TOPIC => attributes = Some(json_of(&p)),
            other => panic!("unexpected topic {other}"),
        }
    }
    assert_eq!(availability.unwrap().as_ref(), b"offline");
    assert_attributes(&attributes.unwrap());
    s.stop().await;
}

/// Stops `s` and starts a server on the same data dir with `config_toml`.
async fn restart(s: TestServer, config_toml: &str) -> TestServer {
    let TestServer { running, _dir } = s;
    running.shutdown().await;
    std::fs::write(_dir.path().join("config.toml"), config_toml).unwrap();
    let options = porchlight_server::LoadOptions {
        data_dir: Some(_dir.path().to_owned()),
        http_port: Some(0),
        mqtt_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..porchlight_server::LoadOptions::default()
    };
    let config = porchlight_server::Config::load_from(&options, []).unwrap();
    let running = porchlight_server::start(config).await.unwrap();
    TestServer { running, _dir }
}

/// Connects Home Assistant, publishes a marker and returns every PUBLISH that came before it
/// comes back (the retained ones arrive on subscribe, before it).
async fn retained_for_home_assistant(s: &TestServer) -> Vec<Publish> {
    let mut ha = Client::home_assistant(s, "ha-check").await;
    ha.client
        .publish("homeassistant/status", QoS::AtLeastOnce, false, "online")
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let p = ha
            .next(|p| match p {
                Packet::Publish(p) => Take::Yes(p),
                p => Take::No(p),
            })
            .await;
        if p.topic == "homeassistant/status" {
            return seen;
        }
        // The alarm is on every install, and answers HA's birth message too.
        if !crate::alarm::is_alarm_topic(&p.topic) {
            seen.push(p);
        }
    }
}

#[tokio::test]
async fn a_restarted_server_announces_stored_devices() {
    // Stored before discovery was turned on: announced from the store at start.
    let s = TestServer::start().await;
    let key = accounts(&s).await;
    let mut phone = Client::connect(&s, "alice-phone", "alice", &key, None).await;
    phone
        .publish_acked("owntracks/alice/phone", location().as_bytes())
        .await;
    phone.task.abort();
    let s = restart(s, ENABLED).await;

    let mut ha = Client::home_assistant(&s, "ha-1").await;
    assert_config(&json_of(&ha.publish_on(CONFIG_TOPIC).await));
    assert_attributes(&json_of(&ha.publish_on(ATTRIBUTES_TOPIC).await));
    s.stop().await;
}

#[tokio::test]
async fn with_the_setting_off_nothing_goes_to_home_assistant() {
    let s = TestServer::start().await;
    let key = accounts(&s).await;
    let mut phone = Client::connect(&s, "alice-phone", "alice", &key, None).await;
    phone
        .publish_acked("owntracks/alice/phone", location().as_bytes())
        .await;
    // Acknowledged means committed; give a publisher that should not exist time to act.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Retained messages arrive on subscribe, before the client's own marker comes back.
    let seen = retained_for_home_assistant(&s).await;
    assert!(seen.is_empty(), "{seen:?}");
    s.stop().await;
}

#[tokio::test]
async fn turning_the_setting_off_withdraws_the_trackers() {
    let s = TestServer::start_with_config(Some(0), ENABLED).await;
    let key = accounts(&s).await;
    let mut ha = Client::home_assistant(&s, "ha-1").await;
    let mut phone = Client::connect(&s, "alice-phone", "alice", &key, None).await;
    phone
        .publish_acked("owntracks/alice/phone", location().as_bytes())
        .await;
    ha.publish_on(ATTRIBUTES_TOPIC).await;
    phone.task.abort();
    ha.task.abort();

    let s = restart(s, "[owntracks]\nha_discovery = false\n").await;
    // The withdrawal runs in the background after the start.
    crate::support::eventually(|| async {
        let seen = retained_for_home_assistant(&s).await;
        seen.iter()
            .all(|p| !p.topic.starts_with("homeassistant/") && !p.topic.contains("alice/phone"))
            .then_some(())
    })
    .await;
    s.stop().await;
}
