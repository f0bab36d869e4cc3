//! The MQTT link to an external broker (ADR 0015), against a real Mosquitto (Debian's
//! `mosquitto` package) started by each test on a free port, with a password file and
//! `allow_anonymous false`: the settings API, client ids per process, the test connection that
//! never evicts the live client, bad credentials that stop the retries, and the availability
//! topic.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, eventually};

const USER: &str = "porch";
const PASSWORD: &str = "link password 1234";

/// A Mosquitto started for one test; killed (by its own child handle) when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        Mosquitto::start_on(free_port())
    }

    fn start_on(port: u16) -> Mosquitto {
        Mosquitto::start_with(port, "")
    }

    /// With `listener_options` (TLS files) under the listener line.
    fn start_with(port: u16, listener_options: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([USER, PASSWORD])
            .output()
            .expect("mosquitto_passwd (apt install mosquitto; scripts/setup.sh test)");
        assert!(out.status.success(), "mosquitto_passwd: {out:?}");
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\n{listener_options}allow_anonymous false\npassword_file {}\n\
             persistence false\nlog_dest stderr\nlog_type all\nconnection_messages true\n",
            passwd.display()
        );
        // As root, Mosquitto would switch to the `mosquitto` user, who cannot read our files.
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            text.push_str("user root\n");
        }
        std::fs::write(&conf, text).unwrap();
        let log = dir.path().join("mosquitto.log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("mosquitto (apt install mosquitto; scripts/setup.sh test)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// CONNECTs Mosquitto answered so far (the readiness probe sends none).
    fn connect_attempts(&self) -> usize {
        self.log().matches("Sending CONNACK").count()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn settings(s: &TestServer, admin: &reqwest::Client) -> Value {
    let r = s.call(admin, Method::GET, "/api/settings/mqtt", None).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn put(s: &TestServer, admin: &reqwest::Client, body: Value) -> (u16, Value) {
    let r = s
        .call(admin, Method::PUT, "/api/settings/mqtt", Some(&body))
        .await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Waits until the link's status is `state`; answers the settings view.
async fn wait_for_state(s: &TestServer, admin: &reqwest::Client, state: &str) -> Value {
    eventually(|| async {
        let v = settings(s, admin).await;
        (v["status"]["state"] == state).then_some(v)
    })
    .await
}

/// Enables the link towards `m` with `password`.
async fn link_to(s: &TestServer, admin: &reqwest::Client, m: &Mosquitto, password: &str) {
    let (status, body) = put(
        s,
        admin,
        json!({
            "enabled": true, "host": "127.0.0.1", "port": m.port,
            "username": USER, "password": password,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn mqtt_settings_round_trip_keep_the_password_write_only_and_name_bad_fields() {
    let s = TestServer::start().await;
    let anonymous = crate::support::client();
    let r = s
        .call(&anonymous, Method::GET, "/api/settings/mqtt", None)
        .await;
    assert_eq!(r.status(), 401);
    let admin = s.admin().await;

    let fresh = settings(&s, &admin).await;
    assert_eq!(fresh["enabled"], false);
    assert_eq!(fresh["client_id_prefix"], "porchlight");
    assert_eq!(fresh["password_set"], false);
    assert_eq!(fresh["status"]["state"], "disconnected");
    let id = fresh["client_id"].as_str().unwrap();
    assert!(id.starts_with("porchlight-") && id.len() <= 23, "{id}");

    let secret = "a broker password 9876";
    let (status, body) = put(
        &s,
        &admin,
        json!({"host": "broker.lan", "username": "porch", "password": secret}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["password_set"], true);
    assert_eq!(body["host"], "broker.lan");
    assert!(body.get("password").is_none());
    assert!(!body.to_string().contains(secret));

    // Absent password: kept. The GET view sent back as it was read is accepted.
    let mut read = settings(&s, &admin).await;
    assert!(!read.to_string().contains(secret));
    read["port"] = json!(8883);
    let (status, body) = put(&s, &admin, read).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["port"], 8883);
    assert_eq!(body["password_set"], true);

    // Every bad field at once, each with its reason; nothing stored.
    let (status, body) = put(
        &s,
        &admin,
        json!({"client_id_prefix": "a".repeat(17), "host": "mqtt://broker", "port": 0}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let prefix_error = body["errors"]["client_id_prefix"].as_str().unwrap();
    assert!(
        prefix_error.contains("17 bytes") && prefix_error.contains("23"),
        "{prefix_error}"
    );
    assert!(body["errors"]["host"].is_string(), "{body}");
    assert!(body["errors"]["port"].is_string(), "{body}");
    let after = settings(&s, &admin).await;
    assert_eq!(after["client_id_prefix"], "porchlight");
    assert_eq!(after["host"], "broker.lan");

    // A 16-byte prefix is the longest: the process's id is then exactly 23 bytes.
    let (status, body) = put(&s, &admin, json!({"client_id_prefix": "p".repeat(16)})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_id"].as_str().unwrap().len(), 23);

    // `null` and "" clear the password.
    let (_, body) = put(&s, &admin, json!({"password": null})).await;
    assert_eq!(body["password_set"], false);
    let (_, body) = put(&s, &admin, json!({"password": "again and again"})).await;
    assert_eq!(body["password_set"], true);
    let (_, body) = put(&s, &admin, json!({"password": ""})).await;
    assert_eq!(body["password_set"], false);
    s.stop().await;
}

#[tokio::test]
async fn two_processes_get_their_own_client_ids_and_both_stay_connected() {
    let m = Mosquitto::start();
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let (admin_a, admin_b) = (a.admin().await, b.admin().await);
    link_to(&a, &admin_a, &m, PASSWORD).await;
    link_to(&b, &admin_b, &m, PASSWORD).await;
    let va = wait_for_state(&a, &admin_a, "connected").await;
    let vb = wait_for_state(&b, &admin_b, "connected").await;
    let (ida, idb) = (
        va["status"]["client_id"].as_str().unwrap().to_owned(),
        vb["status"]["client_id"].as_str().unwrap().to_owned(),
    );
    assert_ne!(ida, idb);
    for id in [&ida, &idb] {
        assert!(id.starts_with("porchlight-") && id.len() <= 23, "{id}");
        assert!(m.log().contains(&format!("as {id} ")), "{}", m.log());
    }

    // An observer on the external broker sees the retained availability.
    let mut o = rumqttc::MqttOptions::new("observer", "127.0.0.1", m.port);
    o.set_credentials(USER, PASSWORD);
    let (observer, mut events) = rumqttc::AsyncClient::new(o, 10);
    observer
        .subscribe("porchlight/porchlight/status", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut next_status = async move || loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                return String::from_utf8(p.payload.to_vec()).unwrap();
            }
            Ok(Ok(_)) => {}
            other => panic!("observer: {other:?}"),
        }
    };
    assert_eq!(next_status().await, "online");

    // Some time later, neither was evicted, and Mosquitto never saw one id twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (s, admin, id) in [(&a, &admin_a, &ida), (&b, &admin_b, &idb)] {
        let v = settings(s, admin).await;
        assert_eq!(v["status"]["state"], "connected");
        assert_eq!(v["status"]["attempts"], 1);
        assert_eq!(m.log().matches(&format!("as {id} ")).count(), 1);
    }
    assert!(!m.log().contains("already connected"), "{}", m.log());

    // Stopping one process publishes `offline` there.
    a.stop().await;
    assert_eq!(next_status().await, "offline");
    b.stop().await;
}

#[tokio::test]
async fn a_test_connection_uses_a_fresh_id_and_never_disturbs_the_live_client() {
    let m = Mosquitto::start();
    let s = TestServer::start().await;
    let admin = s.admin().await;
    link_to(&s, &admin, &m, PASSWORD).await;
    let live = wait_for_state(&s, &admin, "connected").await;
    let live_id = live["status"]["client_id"].as_str().unwrap().to_owned();

    let test = async |body: Value| -> Value {
        let r = s
            .call(&admin, Method::POST, "/api/settings/mqtt/test", Some(&body))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    };
    let ok = test(json!({})).await;
    assert_eq!(ok["result"], "connected", "{ok}");
    let test_id = ok["client_id"].as_str().unwrap();
    assert!(test_id.starts_with("porchlight-") && test_id.len() <= 23);
    assert_ne!(test_id, live_id);

    let refused = test(json!({"password": "wrong"})).await;
    assert_eq!(refused["result"], "refused", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("not authorized") || message.contains("password"),
        "{message}"
    );
    assert!(!refused.to_string().contains(PASSWORD));

    let unreachable = test(json!({"port": free_port()})).await;
    assert_eq!(unreachable["result"], "unreachable", "{unreachable}");

    let bad = s
        .call(
            &admin,
            Method::POST,
            "/api/settings/mqtt/test",
            Some(&json!({"client_id_prefix": "x".repeat(17)})),
        )
        .await;
    assert_eq!(bad.status(), 400);

    // The live client was never taken over: same connection, one attempt, no eviction.
    let after = settings(&s, &admin).await;
    assert_eq!(after["status"]["state"], "connected");
    assert_eq!(after["status"]["since"], live["status"]["since"]);
    assert_eq!(after["status"]["attempts"], 1);
    let log = m.log();
    assert!(!log.contains("already connected"), "{log}");
    assert_eq!(log.matches(&format!("as {live_id} ")).count(), 1, "{log}");
    s.stop().await;
}

#[tokio::test]
async fn bad_credentials_stop_the_retries_until_the_settings_change() {
    let m = Mosquitto::start();
    let s = TestServer::start().await;
    let admin = s.admin().await;
    link_to(&s, &admin, &m, "not the password").await;
    let failed = wait_for_state(&s, &admin, "failed").await;
    let message = failed["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("not authorized") || message.contains("password"),
        "{message}"
    );
    assert_eq!(failed["status"]["attempts"], 1);
    let seen = m.connect_attempts();
    assert_eq!(seen, 1, "{}", m.log());

    // Retrying would have reconnected within 0.5–1 s, then 1–2 s: nothing in 3.5 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(m.connect_attempts(), seen, "{}", m.log());
    assert_eq!(settings(&s, &admin).await["status"]["state"], "failed");

    // New settings: a new try, which succeeds.
    link_to(&s, &admin, &m, PASSWORD).await;
    wait_for_state(&s, &admin, "connected").await;
    s.stop().await;
}

/// An observer on the external broker; its publishes arrive through `events`.
async fn observer(m: &Mosquitto, id: &str) -> (rumqttc::AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", m.port);
    o.set_credentials(USER, PASSWORD);
    let (client, mut events) = rumqttc::AsyncClient::new(o, 10);
    let task = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    (client, task)
}

#[tokio::test]
async fn the_link_reconnects_under_its_id_and_renews_its_subscriptions() {
    let m = Mosquitto::start();
    let port = m.port;
    let s = TestServer::start().await;
    let admin = s.admin().await;
    link_to(&s, &admin, &m, PASSWORD).await;
    let before = wait_for_state(&s, &admin, "connected").await;
    let id = before["status"]["client_id"].as_str().unwrap().to_owned();
    let link = s.running.mqtt_link().publisher().await.unwrap();
    let mut inbox = link.subscribe("porchlight/test/#").unwrap();

    // The broker goes away and comes back on the same port.
    drop(m);
    wait_for_state(&s, &admin, "connecting").await;
    let m = Mosquitto::start_on(port);
    let after = wait_for_state(&s, &admin, "connected").await;
    assert_eq!(after["status"]["client_id"], id.as_str());
    assert!(
        after["status"]["attempts"].as_u64().unwrap() >= 2,
        "{after}"
    );
    assert!(m.log().contains(&format!("as {id} ")), "{}", m.log());

    // The subscription was renewed on the new broker: an observer's publish arrives.
    let (observer, task) = observer(&m, "observer-1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let message = loop {
        observer
            .publish(
                "porchlight/test/ping",
                rumqttc::QoS::AtLeastOnce,
                false,
                "ping",
            )
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message through the link"
        );
    };
    assert_eq!(message.topic, "porchlight/test/ping");
    assert_eq!(&message.payload[..], b"ping");

    // And the handle publishes there (retained, so the check does not race the subscribe).
    link.publish("porchlight/test/pong", "pong", true).unwrap();
    // Not std's Command: it would block this test's runtime, and with it the link's task.
    let out = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            USER,
            "-P",
            PASSWORD,
        ])
        .args(["-t", "porchlight/test/pong", "-C", "1", "-W", "5"])
        .output()
        .await
        .expect("mosquitto_sub (apt install mosquitto-clients)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pong",
        "{out:?} {}",
        m.log()
    );
    task.abort();
    s.stop().await;
}

#[tokio::test]
async fn the_link_speaks_tls_with_a_ca_file_and_names_tls_failures() {
    let pki = tempfile::tempdir().unwrap();
    crate::tls::make_pki(pki.path());
    let file = |name: &str| pki.path().join(name).display().to_string();
    let m = Mosquitto::start_with(
        free_port(),
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            file("ca.pem"),
            file("server.pem"),
            file("server.key")
        ),
    );
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let (status, body) = put(
        &s,
        &admin,
        json!({
            "enabled": true, "host": "127.0.0.1", "port": m.port, "tls": true,
            "ca_file": file("ca.pem"), "username": USER, "password": PASSWORD,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_for_state(&s, &admin, "connected").await;

    let test = async |body: Value| -> Value {
        let r = s
            .call(&admin, Method::POST, "/api/settings/mqtt/test", Some(&body))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    };
    // A CA that did not sign the broker's certificate.
    let untrusted = test(json!({"ca_file": file("impostor.pem")})).await;
    assert_eq!(untrusted["result"], "tls_error", "{untrusted}");
    let missing = test(json!({"ca_file": file("no-such.pem")})).await;
    assert_eq!(missing["result"], "tls_error", "{missing}");
    assert!(
        missing["message"].as_str().unwrap().contains("CA file"),
        "{missing}"
    );
    // A CA file without TLS is a field error.
    let r = s
        .call(
            &admin,
            Method::PUT,
            "/api/settings/mqtt",
            Some(&json!({"tls": false})),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"]["ca_file"].is_string(), "{body}");
    s.stop().await;
}

/// What a client on the external broker received, in order.
struct Inbox {
    client: rumqttc::AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, String, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl Inbox {
    /// Connects to `m` as `id` and subscribes to `filters`.
    async fn subscribe(m: &Mosquitto, id: &str, filters: &[&str]) -> Inbox {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", m.port);
        o.set_credentials(USER, PASSWORD);
        let (client, mut events) = rumqttc::AsyncClient::new(o, 10);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = events.poll().await {
                if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    let _ = tx.send((p.topic, payload, p.retain));
                }
            }
        });
        for f in filters {
            client
                .subscribe(*f, rumqttc::QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        Inbox { client, rx, task }
    }

    /// The next message on `topic` (others are skipped), within 10 s.
    async fn next_on(&mut self, topic: &str) -> (String, bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some((t, payload, retain))) if t == topic => return (payload, retain),
                Ok(Some(_)) => {}
                _ => panic!("nothing on {topic} within 10 s"),
            }
        }
    }

    /// Skips until `topic` carries `payload`.
    async fn until(&mut self, topic: &str, payload: &str) {
        loop {
            if self.next_on(topic).await.0 == payload {
                return;
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The alarm's Home Assistant entity through the external broker: discovery under the
/// install's node id pointing at `porchlight/<node>/…` and the link's status topic, commands
/// from there (with the stored PIN), refusals on the error topic, Home Assistant's birth, a
/// broker restart (everything announced again after the CONNACK), a sensor publishing on the
/// external broker, and `offline` at stop.
#[tokio::test]
async fn the_alarm_runs_through_the_external_broker() {
    const PANEL: &str = "homeassistant/alarm_control_panel/cabin/config";
    const STATE: &str = "porchlight/cabin/alarm/state";
    const SET: &str = "porchlight/cabin/alarm/set";
    const ERROR: &str = "porchlight/cabin/alarm/error";
    const STATUS: &str = "porchlight/cabin/status";
    let m = Mosquitto::start();
    let port = m.port;
    let s = TestServer::start_with_config(Some(0), "[alarm]\nnode_id = \"cabin\"\n").await;
    let admin = s.admin().await;
    let r = s
        .call(
            &admin,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "Home Assistant", "pin": "0426"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let settings =
        json!({"home": {"exit_delay_secs": 0}, "dedup_window_ms": 0, "rearm_guard_ms": 0});
    let r = s
        .call(&admin, Method::PUT, "/api/alarm/settings", Some(&settings))
        .await;
    assert_eq!(r.status(), 200);
    // A contact sensor that Zigbee2MQTT publishes on the external broker.
    let door = json!({
        "name": "Front door", "kind": "door", "modes": ["home"], "use_entry_delay": false,
        "source": {"topic": "zigbee2mqtt/front_door", "field": "contact", "on": false, "off": true},
    });
    let r = s
        .call(&admin, Method::PUT, "/api/alarm/sensors/front", Some(&door))
        .await;
    assert_eq!(r.status(), 201);

    let mut ha = Inbox::subscribe(&m, "ha", &["homeassistant/#", "porchlight/cabin/#"]).await;
    link_to(&s, &admin, &m, PASSWORD).await;
    // The link's `online` comes first (at its CONNACK), then the alarm's announcement.
    ha.until(STATUS, "online").await;
    let panel: Value = serde_json::from_str(&ha.next_on(PANEL).await.0).unwrap();
    assert_eq!(panel["state_topic"], STATE);
    assert_eq!(panel["command_topic"], SET);
    assert_eq!(panel["availability"][0]["topic"], STATUS);
    assert_eq!(panel["unique_id"], "cabin_alarm");
    assert_eq!(panel["code"], "REMOTE_CODE");
    ha.until(STATE, "disarmed").await;

    // A wrong PIN is refused on the error topic; the right one arms, here and in the API.
    ha.publish(SET, r#"{"action": "ARM_HOME", "code": "9999"}"#)
        .await;
    let (error, _) = ha.next_on(ERROR).await;
    let error: Value = serde_json::from_str(&error).unwrap();
    assert_eq!(error["reason"], "wrong_code", "{error}");
    ha.publish(SET, r#"{"action": "ARM_HOME", "code": "0426"}"#)
        .await;
    ha.until(STATE, "armed_home").await;
    let r = s.call(&admin, Method::GET, "/api/alarm", None).await;
    let alarm: Value = r.json().await.unwrap();
    assert_eq!(alarm["state"], "armed_home");

    // Home Assistant's birth: discovery and state again.
    ha.publish("homeassistant/status", "online").await;
    ha.next_on(PANEL).await;
    ha.until(STATE, "armed_home").await;

    // The broker restarts with nothing retained: after the link's CONNACK the entity is
    // announced again, and commands arrive through the renewed subscription.
    drop(ha);
    drop(m);
    wait_for_state(&s, &admin, "connecting").await;
    let m = Mosquitto::start_on(port);
    wait_for_state(&s, &admin, "connected").await;
    let mut ha = Inbox::subscribe(&m, "ha-2", &["homeassistant/#", "porchlight/cabin/#"]).await;
    // Mosquitto keeps nothing across its restart: this is the new announcement.
    ha.next_on(PANEL).await;
    ha.until(STATE, "armed_home").await;
    eventually(|| async {
        ha.publish(SET, r#"{"action": "DISARM", "code": "0426"}"#)
            .await;
        let r = s.call(&admin, Method::GET, "/api/alarm", None).await;
        let alarm: Value = r.json().await.unwrap();
        (alarm["state"] == "disarmed").then_some(())
    })
    .await;
    ha.until(STATE, "disarmed").await;

    // The door sensor on the external broker (subscribed through the renewed link) trips the
    // armed house.
    ha.publish(SET, r#"{"action": "ARM_HOME", "code": "0426"}"#)
        .await;
    ha.until(STATE, "armed_home").await;
    ha.publish(
        "zigbee2mqtt/front_door",
        r#"{"contact": false, "battery": 97}"#,
    )
    .await;
    ha.until(STATE, "triggered").await;
    ha.publish(SET, r#"{"action": "DISARM", "code": "0426"}"#)
        .await;
    ha.until(STATE, "disarmed").await;

    // Stopping the app: `offline` (retained) on the link's status topic.
    s.stop().await;
    ha.until(STATUS, "offline").await;
    drop(m);
}

/// The embedded broker's side of the settings screen: status, ports, connected clients.
#[tokio::test]
async fn the_broker_view_names_the_port_and_counts_connections() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let (_client, _events, task) = crate::support::mqtt_connect(
        &s,
        "admin-view",
        "admin",
        crate::support::ADMIN_PASSWORD,
        None,
    )
    .await;
    let view = eventually(|| async {
        let r = admin
            .get(s.url("/api/settings/mqtt/broker"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let view: Value = r.json().await.unwrap();
        (view["connections"].as_u64() >= Some(1)).then_some(view)
    })
    .await;
    assert_eq!(view["status"], "running", "{view}");
    assert_eq!(view["port"], s.mqtt_addr().port(), "{view}");
    assert_eq!(view["tls_port"], Value::Null, "{view}");
    task.abort();
    s.stop().await;
}
