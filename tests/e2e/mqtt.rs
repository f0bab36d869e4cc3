//! The embedded broker as Home Assistant and phones meet it: real server, real store-backed
//! logins, real MQTT clients (rumqttc and Debian's mosquitto_pub/_sub).

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{ADMIN_PASSWORD, TestServer, eventually};

const WAIT: Duration = Duration::from_secs(10);

/// A connected rumqttc client whose events arrive on a channel.
struct Mqtt {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
}

/// How a connection attempt ended.
#[derive(Debug, PartialEq)]
enum Connack {
    Accepted,
    Refused(ConnectReturnCode),
    Failed(String),
}

impl Mqtt {
    async fn connect(
        s: &TestServer,
        id: &str,
        login: Option<(&str, &str)>,
    ) -> (Connack, Option<Mqtt>) {
        let addr = s.mqtt_addr();
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        if let Some((user, pass)) = login {
            o.set_credentials(user, pass);
        }
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(ConnectionError::ConnectionRefused(code)) => {
                        let _ = tx.send(Err(format!("refused:{code:?}")));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Ok(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {
                (Connack::Accepted, Some(Mqtt { client, events }))
            }
            Ok(Some(Err(e))) if e.starts_with("refused:") => {
                let code = match e.as_str() {
                    "refused:BadUserNamePassword" => ConnectReturnCode::BadUserNamePassword,
                    "refused:NotAuthorized" => ConnectReturnCode::NotAuthorized,
                    _ => ConnectReturnCode::ServiceUnavailable,
                };
                (Connack::Refused(code), None)
            }
            other => (Connack::Failed(format!("{other:?}")), None),
        }
    }

    async fn expect(s: &TestServer, id: &str, user: &str, pass: &str) -> Mqtt {
        match Mqtt::connect(s, id, Some((user, pass))).await {
            (Connack::Accepted, Some(m)) => m,
            (other, _) => panic!("{user} could not connect: {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Ok(Packet::SubAck(ack)))) => return ack.return_codes[0],
                Ok(Some(Ok(_))) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// The next PUBLISH within `wait`, as (topic, payload).
    async fn next_publish(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(Packet::Publish(p)))) => {
                    return Some((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// True once the server has closed the connection.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Creates a user through the admin API and gives them a device; returns the device key.
async fn user_with_device(
    s: &TestServer,
    admin: &reqwest::Client,
    user: &str,
    role: &str,
) -> String {
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({ "username": user, "role": role, "password": format!("{user} password 1") }))
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
    assert_eq!(device["mqtt_username"], user);
    device["mqtt_password"].as_str().unwrap().to_owned()
}

async fn audit_rows(s: &TestServer, admin: &reqwest::Client) -> Vec<Value> {
    let rows: Value = admin
        .get(s.url("/api/audit?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    rows.as_array().unwrap().clone()
}

#[tokio::test]
async fn device_keys_and_passwords_log_in_bad_or_missing_credentials_do_not() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;

    let (ok, _c1) = Mqtt::connect(&s, "alice-key", Some(("alice", &key))).await;
    assert_eq!(ok, Connack::Accepted);
    let (ok, _c2) = Mqtt::connect(&s, "alice-pw", Some(("alice", "alice password 1"))).await;
    assert_eq!(ok, Connack::Accepted);

    let (bad, _) = Mqtt::connect(&s, "alice-bad", Some(("alice", "wrong password"))).await;
    assert_eq!(
        bad,
        Connack::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    let (bad, _) = Mqtt::connect(&s, "bob-bad", Some(("bob", &key))).await;
    assert_eq!(
        bad,
        Connack::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    let (anon, _) = Mqtt::connect(&s, "anonymous", None).await;
    assert!(
        matches!(
            anon,
            Connack::Refused(
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
            )
        ),
        "{anon:?}"
    );

    let rows = eventually(|| async {
        let rows = audit_rows(&s, &admin).await;
        let connects: Vec<_> = rows
            .iter()
            .filter(|r| r["kind"] == "mqtt_connect")
            .cloned()
            .collect();
        (connects.len() >= 5).then_some(rows)
    })
    .await;
    let code_of = |client: &str| {
        rows.iter()
            .find(|r| r["kind"] == "mqtt_connect" && r["client_id"] == client)
            .map(|r| r["code"].as_u64().unwrap())
    };
    assert_eq!(code_of("alice-key"), Some(0));
    assert_eq!(code_of("alice-pw"), Some(0));
    assert_eq!(code_of("alice-bad"), Some(4));
    assert_eq!(code_of("bob-bad"), Some(4));
    assert!(matches!(code_of("anonymous"), Some(4 | 5)));
    let row = rows.iter().find(|r| r["client_id"] == "alice-bad").unwrap();
    assert_eq!(row["username"], "alice");
    assert_eq!(row["protocol"], 4);
    assert!(row["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(!row["reason"].as_str().unwrap().is_empty());
    let all = Value::Array(rows).to_string();
    assert!(
        !all.contains(&key) && !all.contains("alice password 1") && !all.contains("wrong password")
    );
    s.stop().await;
}

#[tokio::test]
async fn users_only_see_and_write_their_own_topics() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let alice_key = user_with_device(&s, &admin, "alice", "user").await;
    let bob_key = user_with_device(&s, &admin, "bob", "user").await;
    let mut alice = Mqtt::expect(&s, "alice-phone", "alice", &alice_key).await;
    let mut bob = Mqtt::expect(&s, "bob-phone", "bob", &bob_key).await;

    assert_eq!(
        alice.subscribe("owntracks/bob/#").await,
        SubscribeReasonCode::Failure
    );
    assert_eq!(alice.subscribe("#").await, SubscribeReasonCode::Failure);
    // Wildcard user levels are accepted (the OwnTracks apps subscribe to `owntracks/+/+`);
    // delivery holds back what is not hers (and not a friend's), checked below.
    assert!(matches!(
        alice.subscribe("owntracks/#").await,
        SubscribeReasonCode::Success(_)
    ));
    assert!(matches!(
        alice.subscribe("owntracks/+/phone").await,
        SubscribeReasonCode::Success(_)
    ));
    assert!(matches!(
        alice.subscribe("owntracks/alice/#").await,
        SubscribeReasonCode::Success(_)
    ));
    assert!(matches!(
        bob.subscribe("owntracks/bob/#").await,
        SubscribeReasonCode::Success(_)
    ));

    // alice's forged publish into bob's tree is not delivered.
    alice
        .publish(
            "owntracks/bob/phone",
            r#"{"_type":"location","lat":1,"lon":1,"tst":1}"#,
        )
        .await;
    // bob's own publish reaches bob, and nothing of bob's reaches alice.
    bob.publish(
        "owntracks/bob/phone",
        r#"{"_type":"location","lat":2,"lon":2,"tst":2}"#,
    )
    .await;
    let got = bob
        .next_publish(WAIT)
        .await
        .expect("bob receives his own location");
    assert!(
        got.1.contains("\"lat\":2"),
        "bob got the forged message: {got:?}"
    );
    assert_eq!(bob.next_publish(Duration::from_millis(500)).await, None);
    assert_eq!(alice.next_publish(Duration::from_millis(500)).await, None);

    let rows = eventually(|| async {
        let rows = audit_rows(&s, &admin).await;
        let denied_subs = rows
            .iter()
            .filter(|r| r["kind"] == "mqtt_subscribe_denied")
            .count();
        let denied_pubs = rows
            .iter()
            .filter(|r| r["kind"] == "mqtt_publish_denied")
            .count();
        (denied_subs >= 2 && denied_pubs >= 1).then_some(rows)
    })
    .await;
    assert!(rows.iter().any(|r| r["kind"] == "mqtt_publish_denied"
        && r["username"] == "alice"
        && r["detail"] == "owntracks/bob/phone"));
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "mqtt_subscribe_denied" && r["detail"] == "#")
    );
    s.stop().await;
}

#[tokio::test]
async fn removing_a_device_closes_its_session_and_refuses_its_next_connect() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let mut phone = Mqtt::expect(&s, "alice-phone", "alice", &key).await;

    let r = admin
        .delete(s.url("/api/devices/alice/phone"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        phone.closed_within(WAIT).await,
        "the removed device's session must be closed"
    );
    let (again, _) = Mqtt::connect(&s, "alice-phone", Some(("alice", &key))).await;
    assert_eq!(
        again,
        Connack::Refused(ConnectReturnCode::BadUserNamePassword)
    );

    // The audit log tells the story: accepted, disconnected (kicked), refused.
    eventually(|| async {
        let rows = audit_rows(&s, &admin).await;
        let mine = |kind: &str| {
            rows.iter()
                .filter(|r| r["kind"] == kind && r["client_id"] == "alice-phone")
                .cloned()
                .collect::<Vec<_>>()
        };
        let codes: Vec<_> = mine("mqtt_connect")
            .iter()
            .map(|r| r["code"].as_u64())
            .collect();
        let disconnects = mine("mqtt_disconnect");
        (codes.contains(&Some(0))
            && codes.contains(&Some(4))
            && !disconnects.is_empty()
            && disconnects
                .iter()
                .all(|r| !r["reason"].as_str().unwrap_or("").is_empty()))
        .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn a_phone_reconnecting_at_once_with_its_client_id_always_gets_in() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let mut previous: Option<Mqtt> = None;
    for round in 0..20 {
        // Drop the old connection without DISCONNECT (as a phone losing its network does)
        // and reconnect immediately with the same client id.
        if let Some(old) = previous.take() {
            drop(old);
        }
        let (result, client) = Mqtt::connect(&s, "alicephone", Some(("alice", &key))).await;
        assert_eq!(result, Connack::Accepted, "round {round}");
        previous = client;
    }
    eventually(|| async {
        let rows = audit_rows(&s, &admin).await;
        let accepted = rows
            .iter()
            .filter(|r| {
                r["kind"] == "mqtt_connect" && r["client_id"] == "alicephone" && r["code"] == 0
            })
            .count();
        (accepted == 20).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn home_assistant_gets_its_own_tree_and_admins_see_everything() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let ha_key = user_with_device(&s, &admin, "hass", "homeassistant").await;
    let alice_key = user_with_device(&s, &admin, "alice", "user").await;
    let mut ha = Mqtt::expect(&s, "homeassistant-1", "hass", &ha_key).await;
    for filter in [
        "homeassistant/+/+/config",
        "homeassistant/status",
        "porchlight/#",
    ] {
        assert!(
            matches!(ha.subscribe(filter).await, SubscribeReasonCode::Success(_)),
            "{filter}"
        );
    }
    assert_eq!(
        ha.subscribe("owntracks/#").await,
        SubscribeReasonCode::Failure
    );

    let mut watcher = Mqtt::expect(&s, "admin-watch", "admin", ADMIN_PASSWORD).await;
    assert!(matches!(
        watcher.subscribe("#").await,
        SubscribeReasonCode::Success(_)
    ));
    let alice = Mqtt::expect(&s, "alice-phone", "alice", &alice_key).await;
    alice.publish("owntracks/alice/phone", "{}").await;
    // The alarm's retained state and Home Assistant discovery come first (every install
    // has the alarm).
    let got = loop {
        let got = watcher.next_publish(WAIT).await.unwrap();
        if !crate::alarm::is_alarm_topic(&got.0) {
            break got;
        }
    };
    assert_eq!(got.0, "owntracks/alice/phone");
    s.stop().await;
}

/// Runs a mosquitto client tool (without blocking the runtime the server shares), failing
/// clearly if Debian's mosquitto-clients is missing.
async fn mosquitto(tool: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("{tool}: {e} (apt install mosquitto-clients; scripts/setup.sh does)")
        })
}

#[tokio::test]
async fn stock_mosquitto_clients_on_mqtt_3_1_3_1_1_and_5() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let key = user_with_device(&s, &admin, "alice", "user").await;
    let mut watcher = Mqtt::expect(&s, "watcher", "admin", ADMIN_PASSWORD).await;
    assert!(matches!(
        watcher.subscribe("owntracks/#").await,
        SubscribeReasonCode::Success(_)
    ));
    let port = s.mqtt_addr().port().to_string();

    for version in ["mqttv31", "mqttv311", "mqttv5"] {
        let id = format!("mp-{version}");
        let good = mosquitto(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-i",
                &id,
                "-u",
                "alice",
                "-P",
                &key,
                "-t",
                "owntracks/alice/phone",
                "-m",
                version,
                "-q",
                "1",
            ],
        )
        .await;
        assert!(
            good.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        let got = watcher.next_publish(WAIT).await;
        assert_eq!(
            got,
            Some(("owntracks/alice/phone".into(), version.into())),
            "{version}"
        );

        let bad = mosquitto(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-i",
                &format!("{id}-bad"),
                "-u",
                "alice",
                "-P",
                "wrong password",
                "-t",
                "owntracks/alice/phone",
                "-m",
                "x",
            ],
        )
        .await;
        assert!(
            !bad.status.success(),
            "{version}: a wrong password must fail"
        );
        let err = String::from_utf8_lossy(&bad.stderr).to_lowercase();
        assert!(
            err.contains("bad user name or password")
                || err.contains("not authorised")
                || err.contains("not authorized"),
            "{version}: {err}"
        );
    }

    let rows = eventually(|| async {
        let rows = audit_rows(&s, &admin).await;
        let n = rows
            .iter()
            .filter(|r| {
                r["kind"] == "mqtt_connect"
                    && r["client_id"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("mp-"))
            })
            .count();
        (n >= 6).then_some(rows)
    })
    .await;
    let find = |id: &str| {
        rows.iter()
            .find(|r| r["kind"] == "mqtt_connect" && r["client_id"] == id)
            .unwrap()
            .clone()
    };
    for (version, level, bad_code) in [("mqttv31", 3, 4), ("mqttv311", 4, 4), ("mqttv5", 5, 0x86)] {
        let good = find(&format!("mp-{version}"));
        assert_eq!(
            (good["protocol"].as_u64(), good["code"].as_u64()),
            (Some(level), Some(0)),
            "{version}"
        );
        let bad = find(&format!("mp-{version}-bad"));
        assert_eq!(
            (bad["protocol"].as_u64(), bad["code"].as_u64()),
            (Some(level), Some(bad_code)),
            "{version}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn health_reports_the_broker() {
    let s = TestServer::start().await;
    let health: Value = reqwest::get(s.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["broker"], "running");
    assert_eq!(health["status"], "healthy");
    s.stop().await;
}

#[tokio::test]
async fn home_assistant_will_is_published_when_its_socket_just_closes() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let ha_key = user_with_device(&s, &admin, "hass", "homeassistant").await;
    let mut watcher = Mqtt::expect(&s, "watcher", "admin", ADMIN_PASSWORD).await;
    assert!(matches!(
        watcher.subscribe("homeassistant/status").await,
        SubscribeReasonCode::Success(_)
    ));

    // Home Assistant's own client: 3.1.1, clean session, keep-alive 60 s, will "offline".
    let addr = s.mqtt_addr();
    let mut o = MqttOptions::new("homeassistant-core", addr.ip().to_string(), addr.port());
    o.set_credentials("hass", &ha_key);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_last_will(rumqttc::LastWill::new(
        "homeassistant/status",
        "offline",
        QoS::AtMostOnce,
        false,
    ));
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let task = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
        .publish("homeassistant/status", QoS::AtMostOnce, false, "online")
        .await
        .unwrap();
    assert_eq!(
        watcher.next_publish(WAIT).await,
        Some(("homeassistant/status".into(), "online".into()))
    );
    // HA stops by closing the socket, without DISCONNECT.
    task.abort();
    let _ = task.await;
    drop(client);
    assert_eq!(
        watcher.next_publish(WAIT).await,
        Some(("homeassistant/status".into(), "offline".into()))
    );
    s.stop().await;
}
