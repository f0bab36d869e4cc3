//! Commands to phones and onboarding, end to end: `POST /api/owntracks/devices/{id}/commands`
//! reaches an MQTT phone (rumqttc subscribed to its `/cmd` topic) and an HTTP-mode phone (in
//! its next `POST /pub` answer, once); `POST /api/devices` returns an `.otrc` whose key logs in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{TestServer, client};

const WAIT: Duration = Duration::from_secs(10);

fn location(tst: i64) -> String {
    json!({"_type": "location", "lat": 52.37, "lon": 4.89, "tst": tst, "tid": "ne"}).to_string()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Creates user `name` (password `<name> password 1`) and signs them in.
async fn user(s: &TestServer, name: &str) -> reqwest::Client {
    let admin = s.admin().await;
    let r = admin
        .post(s.url("/api/users"))
        .json(
            &json!({ "username": name, "role": "user", "password": format!("{name} password 1") }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s.signed_in(name, &format!("{name} password 1")).await
}

/// `POST /api/devices` as `owner` (extra fields from `body`); the 201 answer.
async fn create_device(s: &TestServer, owner: &reqwest::Client, body: Value) -> Value {
    let r = owner
        .post(s.url("/api/devices"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// An HTTP-mode post to `/pub` with Basic auth; the status and JSON answer.
async fn post_pub(s: &TestServer, user: &str, key: &str, body: String) -> (u16, Value) {
    let r = client()
        .post(s.url("/pub"))
        .basic_auth(user, Some(key))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The id of `user`'s OwnTracks device `device` (it exists once it sent a message).
async fn ot_device_id(s: &TestServer, user: &str, device: &str) -> i64 {
    let store = s.running.store();
    let u = store.find_user(user).await.unwrap();
    store
        .find_owntracks_device(u.id, device)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn command(
    s: &TestServer,
    as_user: &reqwest::Client,
    id: i64,
    body: Value,
) -> reqwest::Response {
    as_user
        .post(s.url(&format!("/api/owntracks/devices/{id}/commands")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The query of an `owntracks:///config?inline=` URL, decoded to JSON.
fn decode_inline(url: &str) -> Value {
    let query = url.strip_prefix("owntracks:///config?inline=").unwrap();
    let base64: String = form_urlencoded_decode(query);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn form_urlencoded_decode(query: &str) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(format!("x={query}").as_bytes())
        .into_owned()
        .collect();
    pairs[0].1.clone()
}

/// A rumqttc phone connected with `otrc`'s login, its incoming packets on a channel.
async fn mqtt_phone(
    s: &TestServer,
    otrc: &Value,
) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let addr = s.mqtt_addr();
    let mut o = MqttOptions::new(
        otrc["clientId"].as_str().unwrap(),
        addr.ip().to_string(),
        otrc["port"].as_u64().unwrap() as u16,
    );
    o.set_credentials(
        otrc["username"].as_str().unwrap(),
        otrc["password"].as_str().unwrap(),
    );
    o.set_clean_session(otrc["cleanSession"].as_bool().unwrap());
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event
                && tx.send(p).is_err()
            {
                return;
            }
        }
    });
    match tokio::time::timeout(WAIT, events.recv()).await {
        Ok(Some(Packet::ConnAck(ack))) => {
            assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success)
        }
        other => panic!("the otrc's login did not connect: {other:?}"),
    }
    (client, events)
}

/// Waits for a packet `want` accepts.
async fn next_matching<T>(
    events: &mut mpsc::UnboundedReceiver<Packet>,
    mut want: impl FnMut(&Packet) -> Option<T>,
) -> T {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(p)) => {
                if let Some(v) = want(&p) {
                    return v;
                }
            }
            other => panic!("expected packet not received: {other:?}"),
        }
    }
}

#[tokio::test]
async fn device_creation_returns_an_otrc_whose_key_logs_in_and_gets_commands_over_mqtt() {
    let s = TestServer::start().await;
    let alice = user(&s, "alice").await;
    let created = create_device(&s, &alice, json!({ "name": "phone" })).await;
    let otrc = &created["otrc"];
    assert_eq!(otrc["_type"], "configuration");
    assert_eq!(otrc["mode"], 0, "MQTT");
    assert_eq!(otrc["host"], "127.0.0.1", "from the request's Host");
    assert_eq!(otrc["port"], s.mqtt_addr().port());
    assert_eq!(otrc["tls"], false);
    assert_eq!(otrc["auth"], true);
    assert_eq!(otrc["username"], "alice");
    assert_eq!(otrc["password"], created["mqtt_password"]);
    assert_eq!(otrc["deviceId"], "phone");
    assert!(otrc["clientId"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(otrc["tid"], "ne");
    assert_eq!(otrc["mqttProtocolLevel"], 4);
    assert_eq!(otrc["cleanSession"], false);
    assert_eq!(
        decode_inline(created["inline_url"].as_str().unwrap()),
        *otrc
    );
    let svg = created["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");

    // The phone logs in with exactly what the otrc says, listens on its cmd topic, and
    // reports once so the device exists.
    let (phone, mut events) = mqtt_phone(&s, otrc).await;
    phone
        .subscribe("owntracks/alice/phone/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    next_matching(&mut events, |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    phone
        .publish(
            "owntracks/alice/phone",
            QoS::AtLeastOnce,
            false,
            location(now_secs()),
        )
        .await
        .unwrap();
    next_matching(&mut events, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    let id = ot_device_id(&s, "alice", "phone").await;

    let r = command(&s, &alice, id, json!({ "action": "reportLocation" })).await;
    assert_eq!(r.status(), 202);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["published"], "owntracks/alice/phone/cmd");
    let (topic, qos, payload) = next_matching(&mut events, |p| match p {
        Packet::Publish(p) => Some((p.topic.clone(), p.qos, p.payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(topic, "owntracks/alice/phone/cmd");
    assert_eq!(qos, QoS::AtLeastOnce);
    let cmd: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(cmd, json!({ "_type": "cmd", "action": "reportLocation" }));
    s.stop().await;
}

#[tokio::test]
async fn an_http_phone_gets_a_queued_command_in_its_next_pub_answer_exactly_once() {
    let s = TestServer::start().await;
    let bob = user(&s, "bob").await;
    let created = create_device(&s, &bob, json!({ "name": "tablet", "mode": "http" })).await;
    let otrc = &created["otrc"];
    assert_eq!(otrc["mode"], 3, "HTTP");
    assert_eq!(otrc["url"], s.url("/pub"));
    assert_eq!(
        decode_inline(created["inline_url"].as_str().unwrap()),
        *otrc
    );
    let key = otrc["password"].as_str().unwrap();

    let t = now_secs();
    let (status, body) = post_pub(&s, "bob", key, location(t)).await;
    assert_eq!((status, body), (200, json!([])));
    let id = ot_device_id(&s, "bob", "tablet").await;

    let waypoints = json!({ "action": "setWaypoints", "waypoints": [
        { "desc": "Home", "lat": 52.1, "lon": 4.3, "rad": 50, "tst": 1_700_000_000 }
    ]});
    let r = command(&s, &bob, id, waypoints).await;
    assert_eq!(r.status(), 202);
    let r = command(&s, &bob, id, json!({ "action": "status" })).await;
    assert_eq!(r.status(), 202);

    let (status, body) = post_pub(&s, "bob", key, location(t + 1)).await;
    assert_eq!(status, 200);
    let cmds = body.as_array().unwrap();
    assert_eq!(cmds.len(), 2, "{body}");
    assert_eq!(cmds[0]["_type"], "cmd");
    assert_eq!(cmds[0]["action"], "setWaypoints");
    assert_eq!(cmds[0]["waypoints"]["waypoints"][0]["desc"], "Home");
    assert_eq!(cmds[0]["waypoints"]["waypoints"][0]["tst"], 1_700_000_000);
    assert_eq!(cmds[1], json!({ "_type": "cmd", "action": "status" }));

    let (status, body) = post_pub(&s, "bob", key, location(t + 2)).await;
    assert_eq!((status, body), (200, json!([])), "delivered once");
    s.stop().await;
}

#[tokio::test]
async fn others_get_404_and_bad_actions_400() {
    let s = TestServer::start().await;
    let alice = user(&s, "alice").await;
    let carol = user(&s, "carol").await;
    let created = create_device(&s, &alice, json!({ "name": "phone", "mode": "http" })).await;
    let key = created["mqtt_password"].as_str().unwrap();
    assert_eq!(
        post_pub(&s, "alice", key, location(now_secs())).await.0,
        200
    );
    let id = ot_device_id(&s, "alice", "phone").await;

    let r = command(&s, &carol, id, json!({ "action": "reportLocation" })).await;
    assert_eq!(r.status(), 404, "carol may not command alice's phone");
    let r = command(&s, &alice, 999_999, json!({ "action": "reportLocation" })).await;
    assert_eq!(r.status(), 404);
    let r = command(&s, &client(), id, json!({ "action": "reportLocation" })).await;
    assert_eq!(r.status(), 401);

    let r = command(&s, &alice, id, json!({ "action": "selfDestruct" })).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("selfDestruct") && message.contains("reportLocation"),
        "{message}"
    );
    for bad in [
        json!({ "action": "setWaypoints" }),
        json!({ "action": "setWaypoints", "waypoints": [{ "desc": "X", "lat": 91.0, "lon": 0.0 }] }),
        json!({ "action": "setConfiguration", "configuration": "monitoring" }),
        json!({ "action": "dump", "configuration": { "monitoring": 2 } }),
    ] {
        let r = command(&s, &alice, id, bad.clone()).await;
        assert_eq!(r.status().as_u16() / 100, 4, "{bad}");
        assert_ne!(r.status(), 404, "{bad}");
    }
    // Nothing refused was queued; an admin may command anyone's phone.
    let admin = s.admin().await;
    let r = command(&s, &admin, id, json!({ "action": "dump" })).await;
    assert_eq!(r.status(), 202);
    let (_, body) = post_pub(&s, "alice", key, location(now_secs() + 1)).await;
    assert_eq!(body, json!([{ "_type": "cmd", "action": "dump" }]));
    s.stop().await;
}

#[tokio::test]
async fn expired_commands_are_not_delivered() {
    let s = TestServer::start_with_config(Some(0), "[owntracks]\ncommand_ttl_secs = 1\n").await;
    let alice = user(&s, "alice").await;
    let created = create_device(&s, &alice, json!({ "name": "phone", "mode": "http" })).await;
    let key = created["mqtt_password"].as_str().unwrap();
    let t = now_secs();
    assert_eq!(post_pub(&s, "alice", key, location(t)).await.0, 200);
    let id = ot_device_id(&s, "alice", "phone").await;

    // Queued long ago, expired long ago.
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_000_000);
    s.running
        .store()
        .queue_owntracks_command(
            id,
            json!({ "_type": "cmd", "action": "status" }).to_string(),
            long_ago,
            long_ago + Duration::from_secs(60),
        )
        .await
        .unwrap();
    // Queued now with the configured one-second lifetime, then outlived.
    let r = command(&s, &alice, id, json!({ "action": "reportLocation" })).await;
    assert_eq!(r.status(), 202);
    let answer: Value = r.json().await.unwrap();
    let expires_ms = answer["queued"]["expires_at"].as_i64().unwrap();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(expires_ms - now_ms <= 1_000, "the configured TTL applies");
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(expires_ms - now_ms).unwrap_or(0) + 50,
    ))
    .await;

    let (status, body) = post_pub(&s, "alice", key, location(t + 1)).await;
    assert_eq!((status, body), (200, json!([])));
    s.stop().await;
}
