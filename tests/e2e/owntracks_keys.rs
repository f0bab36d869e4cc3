//! OwnTracks payload encryption end to end: keys set over the HTTP API (or generated with a
//! new device and carried in its `.otrc`), phones publishing `_type: encrypted` over real MQTT
//! (rumqttc) and HTTP `/pub`, the points read back through the Recorder API. A missing or
//! wrong key rejects the message (counted by reason) and never blocks the next one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use porchlight_domain::owntracks::SecretKey;
use porchlight_domain::owntracks::crypto::{NONCE_BYTES, decrypt, encrypted_payload};
use reqwest::Method;
use rumqttc::{AsyncClient, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{TestServer, eventually, mqtt_connect};

const WAIT: Duration = Duration::from_secs(10);

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn location(tst: i64, lat: f64) -> String {
    json!({"_type": "location", "lat": lat, "lon": 4.9, "tst": tst, "tid": "ph"}).to_string()
}

/// `plain` sealed as an OwnTracks app does it with `passphrase` (a fresh nonce each time).
fn sealed(plain: &str, passphrase: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = SecretKey::from_passphrase(passphrase).unwrap();
    encrypted_payload(plain.as_bytes(), &key, [n; NONCE_BYTES]).unwrap()
}

async fn create_user(s: &TestServer, admin: &reqwest::Client, user: &str) {
    let body = json!({ "username": user, "password": format!("{user} password 1") });
    let r = s.call(admin, Method::POST, "/api/users", Some(&body)).await;
    assert_eq!(r.status(), 201);
}

/// Adds `user`'s device `name`; returns the whole answer (key, `.otrc`, …).
async fn add_device(s: &TestServer, admin: &reqwest::Client, user: &str, body: Value) -> Value {
    let mut body = body;
    body["username"] = json!(user);
    let r = s
        .call(admin, Method::POST, "/api/devices", Some(&body))
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn rejected(s: &TestServer, reason: &str) -> u64 {
    let health: Value = reqwest::get(s.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["owntracks"]["rejected"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// The `tst`s the Recorder API answers for `user`'s `device` (as that user).
async fn stored_tsts(
    s: &TestServer,
    client: &reqwest::Client,
    user: &str,
    device: &str,
) -> Vec<i64> {
    let path =
        format!("/api/0/locations?user={user}&device={device}&from=1000000000&to=4000000000");
    let r = s.call(client, Method::GET, &path, None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tst"].as_i64().unwrap())
        .collect()
}

struct Phone {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    _task: tokio::task::JoinHandle<()>,
}

impl Phone {
    async fn connect(s: &TestServer, id: &str, user: &str, pass: &str) -> Phone {
        let (client, events, task) = mqtt_connect(s, id, user, pass, None).await;
        Phone {
            client,
            events,
            _task: task,
        }
    }

    /// Publishes at QoS 1 and returns once the PUBACK arrived.
    async fn publish_acked(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
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

async fn post_pub(
    s: &TestServer,
    user: &str,
    pass: &str,
    device: &str,
    body: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/pub"))
        .basic_auth(user, Some(pass))
        .header("x-limit-d", device)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn encrypted_locations_over_mqtt_and_http_land_in_the_store_and_the_api() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "alice").await;
    // A device created with encryption: the key comes once, and in its .otrc.
    let device = add_device(
        &s,
        &admin,
        "alice",
        json!({ "name": "phone", "encryption": true }),
    )
    .await;
    let passphrase = device["encryption_key"].as_str().unwrap().to_owned();
    assert_eq!(device["otrc"]["encryptionKey"], passphrase.as_str());
    let device_key = device["mqtt_password"].as_str().unwrap().to_owned();
    let alice = s.signed_in("alice", "alice password 1").await;

    // MQTT: the phone logs in with its device key and publishes sealed locations.
    let t = now_secs() - 100;
    let mut phone = Phone::connect(&s, "alice-phone", "alice", &device_key).await;
    phone
        .publish_acked(
            "owntracks/alice/phone",
            &sealed(&location(t, 52.1), &passphrase),
        )
        .await;
    // Acknowledged means committed: readable at once.
    assert_eq!(stored_tsts(&s, &alice, "alice", "phone").await, vec![t]);
    let last: Value = s
        .call(
            &alice,
            Method::GET,
            "/api/0/last?user=alice&device=phone",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last[0]["lat"], 52.1);
    assert_eq!(last[0]["_type"], "location");

    // HTTP mode: same key; the answer is sealed with it too (as the Recorder does).
    let r = post_pub(
        &s,
        "alice",
        &device_key,
        "phone",
        &sealed(&location(t + 1, 52.2), &passphrase),
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["_type"], "encrypted", "{answer}");
    let opened = decrypt(
        answer["data"].as_str().unwrap(),
        &SecretKey::from_passphrase(&passphrase).unwrap(),
    )
    .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&opened).unwrap(), json!([]));
    assert_eq!(
        stored_tsts(&s, &alice, "alice", "phone").await,
        vec![t, t + 1]
    );

    // The key list shows it masked, never whole.
    let keys = s
        .call(&alice, Method::GET, "/api/owntracks/keys", None)
        .await;
    let text = keys.text().await.unwrap();
    assert!(!text.contains(&passphrase), "{text}");
    let keys: Value = serde_json::from_str(&text).unwrap();
    let tail: String = passphrase
        .chars()
        .skip(passphrase.chars().count() - 4)
        .collect();
    assert_eq!(keys[0]["key"], format!("****{tail}"));
    assert_eq!(
        (keys[0]["username"].as_str(), keys[0]["device"].as_str()),
        (Some("alice"), Some("phone"))
    );
    s.stop().await;
}

#[tokio::test]
async fn no_key_or_a_wrong_key_is_rejected_and_the_next_message_is_stored() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "bob").await;
    let device = add_device(&s, &admin, "bob", json!({ "name": "phone" })).await;
    assert!(device["encryption_key"].is_null());
    assert!(device["otrc"].get("encryptionKey").is_none());
    let device_key = device["mqtt_password"].as_str().unwrap().to_owned();
    let bob = s.signed_in("bob", "bob password 1").await;
    let t = now_secs() - 1000;
    let mut phone = Phone::connect(&s, "bob-phone", "bob", &device_key).await;

    // No key yet: rejected (acknowledged, so the phone does not resend it forever).
    phone
        .publish_acked(
            "owntracks/bob/phone",
            &sealed(&location(t, 50.0), "bob's passphrase"),
        )
        .await;
    phone
        .publish_acked("owntracks/bob/phone", &location(t + 1, 50.1))
        .await;
    assert_eq!(stored_tsts(&s, &bob, "bob", "phone").await, vec![t + 1]);
    assert_eq!(rejected(&s, "no_key").await, 1);

    // The owner sets the key by name; a message sealed with another key is refused.
    let r = s
        .call(
            &bob,
            Method::PUT,
            "/api/owntracks/keys/bob/phone",
            Some(&json!({ "key": "bob's passphrase" })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["key"], "****rase");
    assert!(
        answer.get("encryption_key").is_none(),
        "a chosen key is not echoed: {answer}"
    );
    phone
        .publish_acked(
            "owntracks/bob/phone",
            &sealed(&location(t + 2, 50.2), "not bob's passphrase"),
        )
        .await;
    phone
        .publish_acked(
            "owntracks/bob/phone",
            &sealed(&location(t + 3, 50.3), "bob's passphrase"),
        )
        .await;
    assert_eq!(
        stored_tsts(&s, &bob, "bob", "phone").await,
        vec![t + 1, t + 3]
    );
    assert_eq!(rejected(&s, "wrong_key").await, 1);

    // HTTP mode: 400 with the reason, then the next one is stored.
    let r = post_pub(
        &s,
        "bob",
        &device_key,
        "phone",
        &sealed(&location(t + 4, 50.4), "wrong"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("wrong key"),
        "{error}"
    );
    let r = post_pub(
        &s,
        "bob",
        &device_key,
        "phone",
        &sealed(&location(t + 5, 50.5), "bob's passphrase"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(rejected(&s, "wrong_key").await, 2);

    // Removing the key (by the device's id) makes encrypted messages unreadable again.
    let devices: Value = s
        .call(&bob, Method::GET, "/api/0/last?user=bob", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 1);
    let id = device_id(&s, "bob", "phone").await;
    let r = s
        .call(
            &bob,
            Method::DELETE,
            &format!("/api/owntracks/devices/{id}/key"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .call(
            &bob,
            Method::DELETE,
            &format!("/api/owntracks/devices/{id}/key"),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    phone
        .publish_acked(
            "owntracks/bob/phone",
            &sealed(&location(t + 6, 50.6), "bob's passphrase"),
        )
        .await;
    phone
        .publish_acked("owntracks/bob/phone", &location(t + 7, 50.7))
        .await;
    assert_eq!(
        stored_tsts(&s, &bob, "bob", "phone").await,
        vec![t + 1, t + 3, t + 5, t + 7]
    );
    assert_eq!(rejected(&s, "no_key").await, 2);
    s.stop().await;
}

async fn device_id(s: &TestServer, user: &str, device: &str) -> i64 {
    let store = s.running.store();
    let user = store.find_user(user).await.unwrap();
    eventually(|| async {
        store
            .find_owntracks_device(user.id, device)
            .await
            .unwrap()
            .map(|d| d.id)
    })
    .await
}

#[tokio::test]
async fn only_the_owner_or_an_admin_manages_a_key() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    for user in ["alice", "carol"] {
        create_user(&s, &admin, user).await;
    }
    let alice = s.signed_in("alice", "alice password 1").await;
    let carol = s.signed_in("carol", "carol password 1").await;
    let key = json!({ "key": "alice's passphrase" });

    let path = "/api/owntracks/keys/alice/phone";
    assert_eq!(
        s.call(&carol, Method::PUT, path, Some(&key)).await.status(),
        403
    );
    assert_eq!(
        s.call(&carol, Method::DELETE, path, None).await.status(),
        403
    );
    // Before the device ever published: set by name.
    assert_eq!(
        s.call(&alice, Method::PUT, path, Some(&key)).await.status(),
        200
    );
    let generated = s
        .call(
            &admin,
            Method::PUT,
            "/api/owntracks/keys/alice/tablet",
            Some(&json!({ "generate": true })),
        )
        .await;
    assert_eq!(generated.status(), 200);
    let generated: Value = generated.json().await.unwrap();
    let tablet_key = generated["encryption_key"].as_str().unwrap().to_owned();
    assert!(tablet_key.len() >= 16);
    for bad in [
        json!({}),
        json!({ "key": "" }),
        json!({ "key": "k", "generate": true }),
    ] {
        assert_eq!(
            s.call(&alice, Method::PUT, path, Some(&bad)).await.status(),
            400,
            "{bad}"
        );
    }
    assert_eq!(
        s.call(
            &alice,
            Method::PUT,
            "/api/owntracks/keys/alice/a+b",
            Some(&key)
        )
        .await
        .status(),
        400
    );

    let listed = |c: reqwest::Client| {
        let s = &s;
        async move {
            let v: Value = s
                .call(&c, Method::GET, "/api/owntracks/keys", None)
                .await
                .json()
                .await
                .unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|k| k["device"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(alice.clone()).await, vec!["phone", "tablet"]);
    assert!(listed(carol.clone()).await.is_empty());
    assert_eq!(listed(admin.clone()).await.len(), 2);

    // By id, once the device has appeared: carol cannot even see it.
    let r = post_pub(
        &s,
        "alice",
        "alice password 1",
        "phone",
        &sealed(&location(now_secs(), 1.0), "alice's passphrase"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = device_id(&s, "alice", "phone").await;
    let by_id = format!("/api/owntracks/devices/{id}/key");
    assert_eq!(
        s.call(&carol, Method::PUT, &by_id, Some(&key))
            .await
            .status(),
        404
    );
    assert_eq!(
        s.call(&carol, Method::DELETE, &by_id, None).await.status(),
        404
    );
    assert_eq!(
        s.call(&admin, Method::DELETE, &by_id, None).await.status(),
        204
    );
    assert_eq!(listed(alice.clone()).await, vec!["tablet"]);
    // Not a secret that leaks through the base64 of another answer either.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&tablet_key);
    let text = s
        .call(&alice, Method::GET, "/api/owntracks/keys", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains(&tablet_key) && !text.contains(&b64),
        "{text}"
    );
    s.stop().await;
}

/// The real binary with debug logging: a rejected encrypted message is logged with its topic
/// and reason, and no passphrase ever reaches the log (set, generated, used, or wrong).
#[tokio::test]
async fn rejections_are_logged_with_topic_and_reason_and_never_a_key() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(crate::support::porchlight_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--mqtt-port",
            "0",
        ])
        .env_remove("PORCHLIGHT_ADMIN_PASSWORD")
        .env("PORCHLIGHT_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log is read as it comes, so a full pipe never stalls the server.
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut admin_password = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(p) = line.trim().strip_prefix("password:") {
            admin_password = Some(p.trim().to_owned());
        }
        if line.contains("Porchlight is running") {
            break;
        }
    }
    let admin_password = admin_password.unwrap();
    let runtime: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("runtime.json")).unwrap())
            .unwrap();
    let http = format!("http://127.0.0.1:{}", runtime["http_port"]);
    let mqtt_port = runtime["mqtt_port"].to_string();

    let admin = crate::support::client();
    let r = admin
        .post(format!("{http}/api/login"))
        .json(&json!({ "username": "admin", "password": admin_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let device: Value = admin
        .post(format!("{http}/api/devices"))
        .json(&json!({ "name": "phone", "encryption": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let generated = device["encryption_key"].as_str().unwrap().to_owned();
    let chosen = "chosen passphrase for the tablet";
    let r = admin
        .put(format!("{http}/api/owntracks/keys/admin/tablet"))
        .json(&json!({ "key": chosen }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let wrong = "a wrong passphrase 9876";
    let t = now_secs() - 10;
    // MQTT (Debian's mosquitto_pub): one sealed with a wrong key, one with the right key.
    for (tst, key) in [(t, wrong), (t + 1, generated.as_str())] {
        let payload = sealed(&location(tst, 48.0), key);
        let out = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &mqtt_port,
                "-V",
                "mqttv311",
                "-q",
                "1",
            ])
            .args(["-u", "admin", "-P", &admin_password])
            .args(["-t", "owntracks/admin/phone", "-m", &payload])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // HTTP: the tablet's chosen key, then a wrong one.
    for (tst, key, status) in [(t, chosen, 200), (t + 1, wrong, 400)] {
        let r = reqwest::Client::new()
            .post(format!("{http}/pub"))
            .basic_auth("admin", Some(&admin_password))
            .header("x-limit-d", "tablet")
            .body(sealed(&location(tst, 48.0), key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    let health: Value = reqwest::get(format!("{http}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["owntracks"]["stored"], 2, "{health}");
    assert_eq!(health["owntracks"]["rejected"]["wrong_key"], 2, "{health}");

    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let log = log.join().unwrap();
    let rejections: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("OwnTracks message rejected"))
        .collect();
    assert_eq!(rejections.len(), 2, "{log}");
    assert!(
        rejections
            .iter()
            .any(|l| l.contains("owntracks/admin/phone") && l.contains("wrong_key")),
        "{rejections:?}"
    );
    assert!(
        rejections
            .iter()
            .any(|l| l.contains("http:admin/tablet") && l.contains("wrong_key")),
        "{rejections:?}"
    );
    for secret in [generated.as_str(), chosen, wrong] {
        assert!(!log.contains(secret), "a passphrase leaked into the log");
    }
}

/// A command to a phone with payload encryption on reaches it over MQTT sealed with its key
/// (it opens to the command); a phone without a key gets it plain.
#[tokio::test]
async fn commands_to_an_encrypting_phone_are_sealed_with_its_key() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "alice").await;
    let sealed_device = add_device(
        &s,
        &admin,
        "alice",
        json!({ "name": "phone", "encryption": true }),
    )
    .await;
    let plain_device = add_device(&s, &admin, "alice", json!({ "name": "tablet" })).await;
    let passphrase = sealed_device["encryption_key"].as_str().unwrap().to_owned();
    let alice = s.signed_in("alice", "alice password 1").await;

    for (device, answer, key) in [
        ("phone", &sealed_device, Some(passphrase.as_str())),
        ("tablet", &plain_device, None),
    ] {
        let device_key = answer["mqtt_password"].as_str().unwrap();
        let mut phone = Phone::connect(&s, &format!("alice-{device}"), "alice", device_key).await;
        // The device appears with its first point; then it listens for commands.
        let point = location(now_secs() - 10, 52.0);
        let first = match key {
            Some(k) => sealed(&point, k),
            None => point,
        };
        phone
            .publish_acked(&format!("owntracks/alice/{device}"), &first)
            .await;
        let topic = format!("owntracks/alice/{device}/cmd");
        phone
            .client
            .subscribe(&topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, phone.events.recv()).await {
                Ok(Some(Packet::SubAck(_))) => break,
                Ok(Some(_)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
        let id = device_id(&s, "alice", device).await;
        let r = s
            .call(
                &alice,
                Method::POST,
                &format!("/api/owntracks/devices/{id}/commands"),
                Some(&json!({ "action": "reportLocation" })),
            )
            .await;
        assert_eq!(r.status(), 202);
        let payload = loop {
            match tokio::time::timeout(WAIT, phone.events.recv()).await {
                Ok(Some(Packet::Publish(p))) if p.topic == topic => break p.payload,
                Ok(Some(_)) => {}
                other => panic!("no command on {topic}: {other:?}"),
            }
        };
        let received: Value = serde_json::from_slice(&payload).unwrap();
        let command: Value = match key {
            Some(k) => {
                assert_eq!(received["_type"], "encrypted", "{received}");
                let opened = decrypt(
                    received["data"].as_str().unwrap(),
                    &SecretKey::from_passphrase(k).unwrap(),
                )
                .unwrap();
                serde_json::from_slice(&opened).unwrap()
            }
            None => received,
        };
        assert_eq!(command["_type"], "cmd", "{command}");
        assert_eq!(command["action"], "reportLocation", "{command}");
    }
    s.stop().await;
}
