//! OwnTracks ingest end to end: phones publish over real MQTT (rumqttc, Debian's
//! mosquitto_pub) into the real broker; what the store holds is read back through its public
//! methods. Commit before ack is checked by reading the store right after the acknowledgement
//! (no waiting), and across `kill -9` of the real binary.

use std::time::Duration;

use porchlight_store::{Store, TransitionEvent};
use rumqttc::{AsyncClient, LastWill, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{ADMIN_PASSWORD, TestServer, client, eventually, mqtt_connect};

const WAIT: Duration = Duration::from_secs(10);

const SAMPLES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/domain/tests/fixtures/owntracks-messages.jsonl"
));
const BAD_PAYLOADS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/domain/tests/fixtures/bad-owntracks-payloads.txt"
));

/// A phone: a rumqttc connection whose incoming packets arrive on a channel.
struct Phone {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    /// The event loop's task; aborting it drops the socket without DISCONNECT.
    task: tokio::task::JoinHandle<()>,
}

impl Phone {
    async fn connect(s: &TestServer, id: &str, user: &str, pass: &str) -> Phone {
        Phone::connect_with(s, id, user, pass, None).await
    }

    async fn connect_with(
        s: &TestServer,
        id: &str,
        user: &str,
        pass: &str,
        will: Option<LastWill>,
    ) -> Phone {
        let (client, events, task) = mqtt_connect(s, id, user, pass, will).await;
        Phone {
            client,
            events,
            task,
        }
    }

    /// Publishes at QoS 1 and returns once the broker's PUBACK arrived.
    async fn publish_acked(&mut self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Packet::PubAck(_))) => return,
                Ok(Some(_)) => {}
                other => panic!("no PUBACK for {topic}: {other:?}"),
            }
        }
    }
}

/// Creates a user (password `<user> password 1`) with a device `phone`; returns its key.
async fn user_with_device(
    s: &TestServer,
    admin: &reqwest::Client,
    user: &str,
    role: &str,
) -> String {
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({ "username": user, "role": role, "password": password(user) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let device: Value = admin
        .post(s.url("/api/devices"))
        .json(&json!({ "username": user, "name": "phone" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    device["mqtt_password"].as_str().unwrap().to_owned()
}

fn password(user: &str) -> String {
    format!("{user} password 1")
}

/// The OwnTracks device `name` of `user`, if it has appeared.
async fn device_id(store: &Store, user: &str, name: &str) -> Option<i64> {
    let user = store.find_user(user).await.unwrap();
    store
        .find_owntracks_device(user.id, name)
        .await
        .unwrap()
        .map(|d| d.id)
}

async fn health_owntracks(s: &TestServer) -> Value {
    let health: Value = reqwest::get(s.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["owntracks"].clone()
}

fn location(tst: i64) -> String {
    json!({"_type": "location", "lat": 52.1, "lon": 4.9, "tst": tst, "tid": "al"}).to_string()
}

/// The sample lines as (topic, payload).
fn samples() -> Vec<(String, String)> {
    SAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["topic"].as_str().unwrap().to_owned(),
                v["payload"].to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_sample_message_lands_in_the_store() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    user_with_device(&s, &admin, "bob", "user").await;
    let mut alice = Phone::connect(&s, "alice-phone", "alice", &key).await;
    let mut bob = Phone::connect(&s, "bob-tablet", "bob", &password("bob")).await;
    let samples = samples();
    for (topic, payload) in &samples {
        let phone = if topic.starts_with("owntracks/bob/") {
            &mut bob
        } else {
            &mut alice
        };
        phone.publish_acked(topic, payload.as_bytes()).await;
    }

    // Everything was committed before its PUBACK: no waiting here.
    let store = s.running.store();
    let phone = device_id(store, "alice", "phone")
        .await
        .expect("alice/phone");
    let points = store
        .location_window(phone, 0, i64::MAX, 100)
        .await
        .unwrap();
    let tsts: Vec<i64> = points.iter().map(|p| p.tst).collect();
    assert_eq!(tsts, [1764000000, 1764000300, 1764000400]);
    let first = &points[0].fields;
    assert_eq!((first.lat, first.lon), (52.3676, 4.9041));
    assert_eq!(first.acc, Some(12.0));
    assert_eq!(first.batt, Some(87));
    assert_eq!(first.trigger.as_deref(), Some("u"));
    assert_eq!(first.conn.as_deref(), Some("w"));
    let raw = store
        .location_raw(phone, 1764000300)
        .await
        .unwrap()
        .unwrap();
    assert!(raw.contains("\"SSID\":\"home-net\""), "{raw}");

    let transitions = store.transitions(phone, 0, i64::MAX).await.unwrap();
    assert_eq!(transitions.len(), 1);
    let t = &transitions[0];
    assert_eq!(t.tst, 1764000305);
    assert_eq!(t.transition.event, TransitionEvent::Enter);
    assert_eq!(t.transition.description.as_deref(), Some("Home"));
    assert_eq!(t.transition.rid.as_deref(), Some("a1b2c3"));

    let waypoints = store.waypoints(phone).await.unwrap();
    let names: Vec<(&str, i64, Option<i64>)> = waypoints
        .iter()
        .map(|w| (w.description.as_str(), w.tst, w.rad))
        .collect();
    assert_eq!(
        names,
        [
            ("Home", 1763990000, Some(100)),
            ("Work", 1763990100, Some(150))
        ]
    );

    let card = store.card(phone).await.unwrap().unwrap();
    assert_eq!(card.name.as_deref(), Some("Alice"));

    let device = store
        .find_owntracks_device(store.find_user("alice").await.unwrap().id, "phone")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !device.online,
        "the LWT after the locations marks it offline"
    );

    let tablet = device_id(store, "bob", "tablet").await.expect("bob/tablet");
    let bob_points = store
        .location_window(tablet, 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(bob_points.len(), 1);
    assert_eq!(bob_points[0].fields.lat, -33.8688);

    let counts = health_owntracks(&s).await;
    assert_eq!(counts["received"], samples.len());
    assert_eq!(counts["stored"], samples.len());
    assert_eq!(counts["duplicates"], 0);
    assert_eq!(counts["rejected"], json!({}));

    // A location after the LWT: online again.
    alice
        .publish_acked("owntracks/alice/phone", location(1764000500).as_bytes())
        .await;
    let device = store
        .find_owntracks_device(device.user_id, "phone")
        .await
        .unwrap()
        .unwrap();
    assert!(device.online);
    s.stop().await;
}

#[tokio::test]
async fn a_phone_s_last_will_marks_it_offline() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let will = LastWill::new(
        "owntracks/alice/phone",
        r#"{"_type":"lwt","tst":1764000000}"#,
        QoS::AtLeastOnce,
        false,
    );
    let mut alice = Phone::connect_with(&s, "alice-phone", "alice", &key, Some(will)).await;
    alice
        .publish_acked("owntracks/alice/phone", location(1764000001).as_bytes())
        .await;
    let store = s.running.store();
    let user_id = store.find_user("alice").await.unwrap().id;
    let online = |id| async move {
        store
            .find_owntracks_device(id, "phone")
            .await
            .unwrap()
            .unwrap()
            .online
    };
    assert!(online(user_id).await);
    // The socket closes without DISCONNECT: the broker publishes the will.
    alice.task.abort();
    drop(alice);
    eventually(|| async { (!online(user_id).await).then_some(()) }).await;
    s.stop().await;
}

#[tokio::test]
async fn mosquitto_pub_on_mqtt_3_1_is_stored_before_it_exits() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let port = s.mqtt_addr().port().to_string();
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv31", "-q", "1"])
        .args(["-i", "alice-android", "-u", "alice", "-P", &key])
        .args(["-t", "owntracks/alice/phone", "-m", &location(1764000042)])
        .output()
        .await
        .expect("mosquitto_pub (apt install mosquitto-clients)");
    assert!(out.status.success(), "{out:?}");
    let store = s.running.store();
    let phone = device_id(store, "alice", "phone")
        .await
        .expect("alice/phone");
    assert!(
        store
            .location_raw(phone, 1764000042)
            .await
            .unwrap()
            .is_some(),
        "the point must be committed when mosquitto_pub got its PUBACK"
    );
    s.stop().await;
}

/// Every message type, published by Debian's `mosquitto_pub` on MQTT 3.1 (the Android app's
/// default protocol) at QoS 1, lands in the store and comes out of the APIs that serve it:
/// locations and the card through the Recorder API, the LWT as the device's offline state on
/// `/ws/live`; transitions, waypoints, status and configuration (no read API yet) from the
/// store.
#[tokio::test]
async fn every_message_type_round_trips_from_mosquitto_pub_on_mqtt_3_1() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    user_with_device(&s, &admin, "bob", "user").await;
    let port = s.mqtt_addr().port().to_string();
    let mut messages = samples();
    // The samples have no configuration dump; the apps send one on `…/dump`.
    messages.push((
        "owntracks/alice/phone/dump".into(),
        json!({"_type": "configuration", "mode": 0, "host": "hub.example", "port": 1883,
               "username": "alice", "password": "not to be kept", "deviceId": "phone", "tid": "al"})
        .to_string(),
    ));
    for (i, (topic, payload)) in messages.iter().enumerate() {
        let (user, pass) = if topic.starts_with("owntracks/bob/") {
            ("bob", password("bob"))
        } else {
            ("alice", key.clone())
        };
        let out = tokio::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv31", "-q", "1"])
            .args(["-i", &format!("ot-{i}"), "-u", user, "-P", &pass])
            .args(["-t", topic, "-m", payload])
            .output()
            .await
            .expect("mosquitto_pub (apt install mosquitto-clients)");
        assert!(out.status.success(), "{topic}: {out:?}");
    }
    let counts = health_owntracks(&s).await;
    assert_eq!(counts["stored"], messages.len(), "{counts}");
    assert_eq!(counts["rejected"], json!({}), "{counts}");

    // Out of the Recorder API: the locations, and the card merged into the last location.
    let recorder = |path: String, user: &'static str, pass: String| {
        let url = s.url(&path);
        async move {
            let r = client()
                .get(url)
                .basic_auth(user, Some(pass))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let window = "from=1763900000&to=1764100000";
    let alice_points = recorder(
        format!("/api/0/locations?user=alice&device=phone&{window}"),
        "alice",
        password("alice"),
    )
    .await;
    let tsts: Vec<i64> = alice_points["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tst"].as_i64().unwrap())
        .collect();
    assert_eq!(tsts, [1764000000, 1764000300, 1764000400]);
    assert_eq!(alice_points["data"][1]["SSID"], "home-net");
    let bob_points = recorder(
        format!("/api/0/locations?user=bob&device=tablet&{window}"),
        "bob",
        password("bob"),
    )
    .await;
    assert_eq!(bob_points["data"][0]["lat"], -33.8688);
    let last = recorder(
        "/api/0/last?user=alice&device=phone".into(),
        "alice",
        password("alice"),
    )
    .await;
    assert_eq!(last[0]["tst"], 1764000400);
    assert_eq!(last[0]["name"], "Alice", "the card: {last}");

    // Out of the live feed's snapshot: the LWT (after the locations) left the phone offline.
    let login = client()
        .post(s.url("/api/login"))
        .json(&json!({"username": "alice", "password": password("alice")}))
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("porchlight_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut request = format!("ws://{}/ws/live", s.running.http_addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let snapshot = match tokio::time::timeout(WAIT, socket.next()).await {
        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
            serde_json::from_str::<Value>(&t).unwrap()
        }
        other => panic!("no snapshot: {other:?}"),
    };
    let phone = snapshot["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "phone")
        .unwrap_or_else(|| panic!("{snapshot}"));
    assert_eq!(phone["online"], false, "{snapshot}");

    // The rest, from the store.
    let store = s.running.store();
    let id = device_id(store, "alice", "phone").await.unwrap();
    assert_eq!(store.transitions(id, 0, i64::MAX).await.unwrap().len(), 1);
    assert_eq!(store.waypoints(id).await.unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn each_bad_payload_is_rejected_and_the_next_message_is_stored() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    user_with_device(&s, &admin, "alice", "user").await;
    let mut alice = Phone::connect(&s, "alice-phone", "alice", &password("alice")).await;
    let store = s.running.store();
    let bad: Vec<&str> = BAD_PAYLOADS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(bad.len() >= 10, "{bad:?}");
    // Encrypted, well formed, but no key is configured: rejected too.
    let encrypted = format!(r#"{{"_type":"encrypted","data":"{}"}}"#, "A".repeat(64));
    let mut cases: Vec<&str> = bad.clone();
    cases.push(&encrypted);
    for (i, payload) in cases.iter().enumerate() {
        // The bad message is acknowledged (handled, not resent forever) ...
        alice
            .publish_acked("owntracks/alice/phone", payload.as_bytes())
            .await;
        // ... and the next good one on the same connection is stored.
        let tst = 1764100000 + i as i64;
        alice
            .publish_acked("owntracks/alice/phone", location(tst).as_bytes())
            .await;
        let phone = device_id(store, "alice", "phone").await.unwrap();
        assert!(
            store.location_raw(phone, tst).await.unwrap().is_some(),
            "the location after {payload:?} was not stored"
        );
    }
    // A zero-length payload (clearing a retained message) is ignored, not an error.
    alice.publish_acked("owntracks/alice/phone", b"").await;

    let counts = health_owntracks(&s).await;
    let rejected: u64 = counts["rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, cases.len() as u64, "{counts}");
    assert_eq!(counts["rejected"]["no_key"], 1, "{counts}");
    assert_eq!(counts["rejected"]["invalid_json"], 1, "{counts}");
    assert_eq!(counts["stored"], cases.len(), "{counts}");
    assert_eq!(counts["ignored"], 1, "{counts}");
    let phone = device_id(store, "alice", "phone").await.unwrap();
    let points = store
        .location_window(phone, 0, i64::MAX, 1000)
        .await
        .unwrap();
    assert_eq!(points.len(), cases.len());
    s.stop().await;
}

#[tokio::test]
async fn nobody_publishes_as_another_user_not_even_an_admin() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    user_with_device(&s, &admin, "alice", "user").await;
    user_with_device(&s, &admin, "bob", "user").await;
    let store = s.running.store();

    // The broker's ACL refuses alice's publish into bob's tree (with a plain PUBACK).
    let mut alice = Phone::connect(&s, "alice-phone", "alice", &password("alice")).await;
    alice
        .publish_acked("owntracks/bob/phone", location(1764000001).as_bytes())
        .await;
    // The ACL lets an admin publish anywhere; the ingest still refuses to store it as bob.
    let mut root = Phone::connect(&s, "admin-tool", "admin", ADMIN_PASSWORD).await;
    root.publish_acked("owntracks/bob/phone", location(1764000002).as_bytes())
        .await;
    assert_eq!(device_id(store, "bob", "phone").await, None);
    let counts = health_owntracks(&s).await;
    assert_eq!(counts["rejected"]["wrong_user"], 1, "{counts}");
    assert_eq!(counts["stored"], 0, "{counts}");

    // An admin's own tree is fine.
    root.publish_acked("owntracks/admin/laptop", location(1764000003).as_bytes())
        .await;
    assert!(device_id(store, "admin", "laptop").await.is_some());
    s.stop().await;
}

#[tokio::test]
async fn a_device_key_publishes_only_as_its_own_device() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let store = s.running.store();

    let mut phone = Phone::connect(&s, "alice-phone", "alice", &key).await;
    phone
        .publish_acked("owntracks/alice/tablet", location(1764000001).as_bytes())
        .await;
    assert_eq!(device_id(store, "alice", "tablet").await, None);
    let counts = health_owntracks(&s).await;
    assert_eq!(counts["rejected"]["wrong_device"], 1, "{counts}");
    // Its own name works (twice: the device name is cached after the first lookup).
    for tst in [1764000002, 1764000003] {
        phone
            .publish_acked("owntracks/alice/phone", location(tst).as_bytes())
            .await;
    }
    let id = device_id(store, "alice", "phone").await.unwrap();
    assert_eq!(
        store
            .location_window(id, 0, i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // The account password may publish under any device name of its user.
    let mut web = Phone::connect(&s, "alice-laptop", "alice", &password("alice")).await;
    web.publish_acked("owntracks/alice/tablet", location(1764000004).as_bytes())
        .await;
    assert!(device_id(store, "alice", "tablet").await.is_some());
    s.stop().await;
}

#[tokio::test]
async fn a_new_key_that_reuses_a_deleted_keys_id_publishes_as_its_own_device() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let store = s.running.store();
    let mut phone = Phone::connect(&s, "alice-phone", "alice", &key).await;
    phone
        .publish_acked("owntracks/alice/phone", location(1764000001).as_bytes())
        .await;
    assert!(device_id(store, "alice", "phone").await.is_some());
    drop(phone);

    // Deleting the newest key and adding another: SQLite gives the new key the same id.
    let r = admin
        .delete(s.url("/api/devices/alice/phone?history=purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let added: Value = admin
        .post(s.url("/api/devices"))
        .json(&json!({ "username": "alice", "name": "tablet" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = added["mqtt_password"].as_str().unwrap();
    let mut tablet = Phone::connect(&s, "alice-tablet", "alice", key).await;
    tablet
        .publish_acked("owntracks/alice/tablet", location(1764000002).as_bytes())
        .await;
    assert!(device_id(store, "alice", "tablet").await.is_some());
    let counts = health_owntracks(&s).await;
    assert_eq!(counts["rejected"], json!({}), "{counts}");
    s.stop().await;
}

#[tokio::test]
async fn a_resent_point_is_stored_once() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let mut phone = Phone::connect(&s, "alice-phone", "alice", &key).await;
    for _ in 0..3 {
        phone
            .publish_acked("owntracks/alice/phone", location(1764000001).as_bytes())
            .await;
    }
    let store = s.running.store();
    let id = device_id(store, "alice", "phone").await.unwrap();
    assert_eq!(
        store
            .location_window(id, 0, i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let counts = health_owntracks(&s).await;
    assert_eq!(counts["stored"], 1, "{counts}");
    assert_eq!(counts["duplicates"], 2, "{counts}");
    s.stop().await;
}

/// The real binary: each `mosquitto_pub -q 1` exits after its PUBACK, the server is killed
/// with SIGKILL right after the last one, and every point is in the database.
#[test]
fn acknowledged_points_survive_kill_9() {
    use crate::crash::{kill_9, mosquitto, mqtt_port, serve};
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let port = mqtt_port(dir.path());
    let tsts: Vec<i64> = (0..5).map(|i| 1764200000 + i).collect();
    for tst in &tsts {
        let out = mosquitto(
            "mosquitto_pub",
            &port,
            &[
                "-q",
                "1",
                "-t",
                "owntracks/admin/phone",
                "-m",
                &location(*tst),
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    kill_9(&mut server);

    let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let id = device_id(&store, "admin", "phone")
            .await
            .expect("the device was stored");
        let points = store.location_window(id, 0, i64::MAX, 100).await.unwrap();
        let stored: Vec<i64> = points.iter().map(|p| p.tst).collect();
        assert_eq!(stored, tsts, "acknowledged points were lost");
        store.close().await;
    });
}

/// `POST /pub` with Basic auth, as the OwnTracks apps' HTTP mode sends it.
async fn post_pub(
    s: &TestServer,
    login: (&str, &str),
    query: &str,
    limits: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(s.url(&format!("/pub{query}")))
        .basic_auth(login.0, Some(login.1))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in limits {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn http_pub_answers_after_the_commit_with_the_mqtt_rules() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    user_with_device(&s, &admin, "bob", "user").await;
    let alice_password = password("alice");
    let store = s.running.store();

    // A device key, user and device from the headers: 200 with `[]`, stored before the answer.
    let r = post_pub(
        &s,
        ("alice", &key),
        "",
        &[("X-Limit-U", "alice"), ("X-Limit-D", "phone")],
        &location(1764300000),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    let phone = device_id(store, "alice", "phone")
        .await
        .expect("alice/phone");
    assert!(
        store
            .location_raw(phone, 1764300000)
            .await
            .unwrap()
            .is_some()
    );

    // Without headers a device key posts as its own device; every type goes through /pub.
    let (_, transition) = samples()
        .into_iter()
        .find(|(topic, _)| topic.ends_with("/event"))
        .unwrap();
    let r = post_pub(&s, ("alice", &key), "", &[], &transition).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        store.transitions(phone, 0, i64::MAX).await.unwrap().len(),
        1
    );

    // The account password, user and device from the query: any device name of alice's.
    let r = post_pub(
        &s,
        ("alice", &alice_password),
        "?u=alice&d=laptop",
        &[],
        &location(1764300001),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(device_id(store, "alice", "laptop").await.is_some());

    // A device key posting as another device, or anyone posting as another user: 403.
    let r = post_pub(
        &s,
        ("alice", &key),
        "",
        &[("X-Limit-D", "tablet")],
        &location(1764300002),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(device_id(store, "alice", "tablet").await, None);
    let r = post_pub(
        &s,
        ("alice", &alice_password),
        "",
        &[("X-Limit-U", "bob"), ("X-Limit-D", "phone")],
        &location(1764300003),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(device_id(store, "bob", "phone").await, None);

    // A bad payload: 400 with the reason; an empty body: accepted, nothing stored.
    let r = post_pub(
        &s,
        ("alice", &key),
        "",
        &[],
        r#"{"_type":"location","lat":91.5,"lon":4.9,"tst":1764300004}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    let error = r.json::<Value>().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("lat"), "{error}");
    let r = post_pub(&s, ("alice", &key), "", &[], "").await;
    assert_eq!(r.status(), 200);

    // No device name with a password login: 400. Wrong credentials: 401 asking for Basic.
    let r = post_pub(
        &s,
        ("alice", &alice_password),
        "",
        &[],
        &location(1764300005),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post_pub(&s, ("alice", "wrong password"), "?d=phone", &[], "").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    let counts = health_owntracks(&s).await;
    assert_eq!(counts["stored"], 3, "{counts}");
    assert_eq!(counts["rejected"]["wrong_device"], 1, "{counts}");
    assert_eq!(counts["rejected"]["wrong_user"], 1, "{counts}");
    assert_eq!(counts["rejected"]["invalid_value"], 1, "{counts}");
    assert_eq!(counts["ignored"], 1, "{counts}");
    s.stop().await;
}

/// HTTP mode takes every message type too: each of alice's samples posted to `/pub` with her
/// device key is answered 200 after its commit and is in the store; then each bad sample is
/// answered 400 with a reason, and the next good post is stored.
#[tokio::test]
async fn every_message_type_and_every_bad_sample_through_http_pub() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let alice: Vec<(String, String)> = samples()
        .into_iter()
        .filter(|(topic, _)| topic.starts_with("owntracks/alice/phone"))
        .collect();
    for (topic, payload) in &alice {
        let r = post_pub(&s, ("alice", &key), "", &[], payload).await;
        assert_eq!(r.status(), 200, "{topic}: {payload}");
    }
    let counts = health_owntracks(&s).await;
    assert_eq!(counts["stored"], alice.len(), "{counts}");
    let store = s.running.store();
    let phone = device_id(store, "alice", "phone").await.unwrap();
    assert_eq!(
        store
            .location_window(phone, 0, i64::MAX, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store.transitions(phone, 0, i64::MAX).await.unwrap().len(),
        1
    );
    assert_eq!(store.waypoints(phone).await.unwrap().len(), 2);
    assert_eq!(
        store.card(phone).await.unwrap().unwrap().name.as_deref(),
        Some("Alice")
    );

    let bad: Vec<&str> = BAD_PAYLOADS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    for (i, payload) in bad.iter().enumerate() {
        let r = post_pub(&s, ("alice", &key), "", &[], payload).await;
        assert_eq!(r.status(), 400, "{payload}");
        let error: Value = r.json().await.unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| e.len() > 10),
            "{payload}: {error}"
        );
        let tst = 1764600000 + i as i64;
        let r = post_pub(&s, ("alice", &key), "", &[], &location(tst)).await;
        assert_eq!(r.status(), 200, "the post after {payload}");
        assert!(store.location_raw(phone, tst).await.unwrap().is_some());
    }
    s.stop().await;
}

/// The real binary: a point answered 2xx by `POST /pub` survives an immediate SIGKILL.
#[test]
fn a_point_answered_by_http_pub_survives_kill_9() {
    use crate::crash::{kill_9, serve};
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let rt_file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("runtime.json")).unwrap())
            .unwrap();
    let url = format!("{}pub", rt_file["http_url"].as_str().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(&url)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("X-Limit-D", "phone")
            .body(location(1764400000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    kill_9(&mut server);

    let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
    rt.block_on(async {
        let id = device_id(&store, "admin", "phone")
            .await
            .expect("the device was stored");
        assert!(store.location_raw(id, 1764400000).await.unwrap().is_some());
        store.close().await;
    });
}

#[tokio::test]
async fn a_qos_0_point_is_stored_too() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let phone = Phone::connect(&s, "alice-phone", "alice", &key).await;
    phone
        .client
        .publish(
            "owntracks/alice/phone",
            QoS::AtMostOnce,
            false,
            location(1764000077).into_bytes(),
        )
        .await
        .unwrap();
    // Nobody waits for a QoS 0 commit: poll for it.
    let store = s.running.store();
    eventually(|| async {
        let id = device_id(store, "alice", "phone").await?;
        store.location_raw(id, 1764000077).await.unwrap()
    })
    .await;
    s.stop().await;
}

/// What a phone sent comes out of the UI's device API: the device list (online state, last
/// location, card), the region events and the regions.
#[tokio::test]
async fn posted_messages_come_out_of_the_device_api() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let _ = user_with_device(&s, &admin, "carol", "user").await;
    for (topic, payload) in samples()
        .into_iter()
        .filter(|(topic, _)| topic.starts_with("owntracks/alice/phone"))
        // The LWT is dated before the last location: posted last, it would still say offline.
        .filter(|(_, payload)| !payload.contains(r#""_type":"lwt""#))
    {
        let r = post_pub(&s, ("alice", &key), "", &[], &payload).await;
        assert_eq!(r.status(), 200, "{topic}: {payload}");
    }
    let alice = s.signed_in("alice", &password("alice")).await;
    let devices: Value = alice
        .get(s.url("/api/owntracks/devices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let phone = &devices[0];
    assert_eq!(phone["user"], "alice");
    assert_eq!(phone["device"], "phone");
    assert_eq!(phone["online"], true);
    assert_eq!(phone["location"]["tst"], 1764000400, "the newest by tst");
    assert_eq!(phone["location"]["lat"], 52.3701);
    assert_eq!(phone["card"]["name"], "Alice");
    let id = phone["device_id"].as_i64().unwrap();

    let transitions: Value = alice
        .get(s.url(&format!(
            "/api/owntracks/devices/{id}/transitions?from=1764000000000&to=1764000400000"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        transitions,
        json!([{
            "at": 1764000305000i64, "event": "enter", "desc": "Home", "rid": "a1b2c3",
            "lat": 52.3701, "lon": 4.8952, "acc": 5.0
        }])
    );
    // Outside the window: none.
    let none: Value = alice
        .get(s.url(&format!(
            "/api/owntracks/devices/{id}/transitions?from=1764000306000&to=1764000400000"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!([]));

    let regions: Value = alice
        .get(s.url(&format!("/api/owntracks/devices/{id}/waypoints")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = regions
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["desc"].as_str().unwrap(), w["rad"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, [("Home", 100), ("Work", 150)]);

    // Carol sees neither the device nor its history.
    let carol = s.signed_in("carol", &password("carol")).await;
    let theirs: Value = carol
        .get(s.url("/api/owntracks/devices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    for path in ["transitions", "waypoints"] {
        let r = carol
            .get(s.url(&format!("/api/owntracks/devices/{id}/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = alice
        .get(s.url(&format!(
            "/api/owntracks/devices/{id}/transitions?from=10&to=5"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    s.stop().await;
}
