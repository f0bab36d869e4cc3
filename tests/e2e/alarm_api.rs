//! The alarm's REST API and live push end to end: the real server with its stored PIN codes
//! (created through `POST /api/alarm/codes`), real HTTP (reqwest), a sensor publishing on the
//! embedded broker (rumqttc), and a real WebSocket (tokio-tungstenite) on `/ws/live`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{ADMIN_PASSWORD, TestServer, client, eventually, mqtt_connect};

const PIN: &str = "0042";
const DOOR_TOPIC: &str = "zigbee2mqtt/front_door";
const WINDOW_TOPIC: &str = "zigbee2mqtt/back_window/state";

fn password(user: &str) -> String {
    format!("{user} password 1")
}

async fn create_user(s: &TestServer, admin: &reqwest::Client, user: &str) -> reqwest::Client {
    let body = json!({ "username": user, "password": password(user) });
    let r = s.call(admin, Method::POST, "/api/users", Some(&body)).await;
    assert_eq!(r.status(), 201);
    s.signed_in(user, &password(user)).await
}

async fn call(
    s: &TestServer,
    c: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = s.call(c, method, path, body.as_ref()).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    // Any string in the answer (keys too); not digits inside numbers such as timestamps.
    assert!(!holds_pin(&value), "an answer holds the PIN: {text}");
    (status, value, headers)
}

fn holds_pin(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(PIN),
        Value::Array(items) => items.iter().any(holds_pin),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains(PIN) || holds_pin(v)),
        _ => false,
    }
}

/// Settings that let a scripted test arm and disarm at once, again and again.
async fn quick_settings(s: &TestServer, admin: &reqwest::Client, code_arm_required: bool) {
    let body = json!({
        "home": {"exit_delay_secs": 0},
        "away": {"exit_delay_secs": 0},
        "night": {"exit_delay_secs": 0},
        "dedup_window_ms": 0,
        "rearm_guard_ms": 0,
        "code_arm_required": code_arm_required,
    });
    let (status, _, _) = call(s, admin, Method::PUT, "/api/alarm/settings", Some(body)).await;
    assert_eq!(status, 200);
}

fn front_door() -> Value {
    json!({
        "name": "Front door",
        "kind": "door",
        "modes": ["away"],
        "use_entry_delay": true,
        "source": {"topic": DOOR_TOPIC, "field": "contact", "on": false, "off": true},
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn arm_and_disarm_with_a_stored_code_refusals_events_and_lockout() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let alice = create_user(&s, &admin, "alice").await;
    let body = json!({"label": "Keypad", "pin": PIN});
    let (status, _, _) = call(&s, &alice, Method::POST, "/api/alarm/codes", Some(body)).await;
    assert_eq!(status, 201);
    quick_settings(&s, &admin, true).await;

    // Signed out: 401; signed in: the status.
    let (status, _, _) = call(&s, &client(), Method::GET, "/api/alarm", None).await;
    assert_eq!(status, 401);
    let (status, alarm, _) = call(&s, &alice, Method::GET, "/api/alarm", None).await;
    assert_eq!(status, 200);
    assert_eq!(alarm["state"], "disarmed");
    assert_eq!(alarm["enabled_modes"], json!(["home", "away", "night"]));
    assert_eq!(alarm["ready_to_arm"], true);
    assert_eq!(alarm["code_arm_required"], true);
    assert_eq!(alarm["open_sensors"], json!([]));
    let start = now_ms();

    // Bad input: 400 naming the field.
    for (body, want) in [
        (json!({"mode": "party", "code": PIN}), "mode:"),
        (json!({"code": PIN}), "mode:"),
        (json!({"mode": "away", "code": 42}), "code:"),
        (json!({"mode": "away", "code": "12"}), "code:"),
        (json!({"mode": "away", "force": "yes"}), "force:"),
        (json!({"mode": "away", "pin": PIN}), "pin:"),
    ] {
        let (status, e, _) = call(
            &s,
            &alice,
            Method::POST,
            "/api/alarm/arm",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            e["error"].as_str().unwrap().starts_with(want),
            "{body}: {e}"
        );
    }

    // No code, in every shape: code required (403); a wrong code: 403.
    for code in [json!(null), json!(""), json!("None")] {
        let body = json!({"mode": "away", "code": code});
        let (status, e, _) = call(&s, &alice, Method::POST, "/api/alarm/arm", Some(body)).await;
        assert_eq!(
            (status, &e["reason"]),
            (403, &json!("code_required")),
            "{e}"
        );
        assert_eq!(e["status"]["state"], "disarmed");
    }
    let body = json!({"mode": "away", "code": "9999"});
    let (status, e, _) = call(&s, &alice, Method::POST, "/api/alarm/arm", Some(body)).await;
    assert_eq!((status, &e["reason"]), (403, &json!("wrong_code")), "{e}");

    // The right code arms, at once (exit delay 0).
    let body = json!({"mode": "away", "code": PIN});
    let (status, armed, _) = call(&s, &alice, Method::POST, "/api/alarm/arm", Some(body)).await;
    assert_eq!(status, 200, "{armed}");
    assert_eq!(armed["state"], "armed_away");
    assert_eq!(armed["arm_mode"], "away");
    assert_eq!(armed["changed_by"], "alice");
    let (_, now, _) = call(&s, &admin, Method::GET, "/api/alarm", None).await;
    assert_eq!(now["state"], "armed_away");

    // Arming the armed mode again is not allowed in this state: 409.
    let body = json!({"mode": "away", "code": PIN});
    let (status, e, _) = call(&s, &alice, Method::POST, "/api/alarm/arm", Some(body)).await;
    assert_eq!((status, &e["reason"]), (409, &json!("not_allowed")), "{e}");
    let mid = now_ms();

    // Disarm: no code is refused, the code disarms (the admin may use alice's code).
    let (status, e, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/disarm",
        Some(json!({})),
    )
    .await;
    assert_eq!((status, &e["reason"]), (403, &json!("code_required")));
    let body = json!({"code": PIN});
    let (status, disarmed, _) =
        call(&s, &admin, Method::POST, "/api/alarm/disarm", Some(body)).await;
    assert_eq!(status, 200, "{disarmed}");
    assert_eq!(disarmed["state"], "disarmed");
    assert_eq!(disarmed["changed_by"], "alice", "the code names its holder");

    // Events: by kind, by time, never a code.
    let path = format!("/api/alarm/events?from={start}&kind=transition");
    let (status, events, _) = call(&s, &alice, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert!(
        events.iter().all(|e| e["kind"] == "transition"),
        "{events:?}"
    );
    let arms: Vec<_> = events.iter().filter(|e| e["to"] == "armed_away").collect();
    assert_eq!(arms.len(), 1, "{events:?}");
    assert_eq!(
        (&arms[0]["from"], &arms[0]["who"], &arms[0]["via"]),
        (&json!("disarmed"), &json!("alice"), &json!("api"))
    );
    assert!(events.iter().any(|e| e["to"] == "disarmed"));
    let path = format!("/api/alarm/events?from={mid}&kind=transition");
    let (_, later, _) = call(&s, &alice, Method::GET, &path, None).await;
    let later = later.as_array().unwrap();
    assert!(later.iter().all(|e| e["to"] != "armed_away"), "{later:?}");
    assert!(later.iter().any(|e| e["to"] == "disarmed"), "{later:?}");
    let path = format!("/api/alarm/events?to={mid}&kind=code_refused,transition&limit=50");
    let (_, earlier, _) = call(&s, &alice, Method::GET, &path, None).await;
    let earlier = earlier.as_array().unwrap();
    assert!(
        earlier.iter().any(|e| e["kind"] == "code_refused"),
        "{earlier:?}"
    );
    assert!(
        earlier
            .iter()
            .all(|e| e["to"] != "disarmed" || e["kind"] != "transition")
    );
    let (_, one, _) = call(
        &s,
        &alice,
        Method::GET,
        "/api/alarm/events?kind=code_refused&kind=code_accepted&limit=1",
        None,
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    for bad in ["kind=nope", "from=-1", "limit=0", "since=1"] {
        let (status, _, _) = call(
            &s,
            &alice,
            Method::GET,
            &format!("/api/alarm/events?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}");
    }

    // Wrong codes lock out, with Retry-After; then even the right code waits.
    let mut locked = None;
    for attempt in 1..=10 {
        let body = json!({"mode": "home", "code": "1111"});
        let (status, e, headers) =
            call(&s, &alice, Method::POST, "/api/alarm/arm", Some(body)).await;
        if status == 429 {
            locked = Some((attempt, e, headers));
            break;
        }
        assert_eq!((status, &e["reason"]), (403, &json!("wrong_code")));
    }
    let (attempt, e, headers) = locked.expect("no lockout after 10 wrong codes");
    assert!(attempt > 1, "locked out at once");
    assert_eq!(e["reason"], "locked_out");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry >= 1 && Some(retry) == e["retry_after_secs"].as_u64(),
        "{e}"
    );
    let body = json!({"mode": "home", "code": PIN});
    let (status, _, headers) = call(&s, &alice, Method::POST, "/api/alarm/arm", Some(body)).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));

    // The log has every refusal, and no code.
    let (_, all, _) = call(
        &s,
        &admin,
        Method::GET,
        "/api/alarm/events?limit=10000",
        None,
    )
    .await;
    let all = all.to_string();
    assert!(all.contains("wrong_code"), "{all}");
    assert!(
        !all.contains("9999") && !all.contains("1111"),
        "a code in the log: {all}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_open_sensor_is_named_and_a_forced_arm_bypasses_it() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    quick_settings(&s, &admin, false).await;
    let (status, sensor, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/sensors/front",
        Some(front_door()),
    )
    .await;
    assert_eq!(status, 201, "{sensor}");
    assert_eq!(sensor["active"], Value::Null);
    // A window watched at night only.
    let window = json!({"name": "Back window", "kind": "window", "modes": ["night"],
                        "source": {"topic": WINDOW_TOPIC, "on": "open", "off": "closed"}});
    let (status, _, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/sensors/back",
        Some(window),
    )
    .await;
    assert_eq!(status, 201);

    // Both open on the broker; their live values show it at once (the reload subscribed).
    let (door, _events, task) =
        mqtt_connect(&s, "zigbee2mqtt", "admin", ADMIN_PASSWORD, None).await;
    door.publish(
        DOOR_TOPIC,
        rumqttc::QoS::AtLeastOnce,
        false,
        r#"{"contact": false}"#,
    )
    .await
    .unwrap();
    door.publish(WINDOW_TOPIC, rumqttc::QoS::AtLeastOnce, false, "OPEN")
        .await
        .unwrap();
    eventually(|| async {
        let (_, sensors, _) = call(&s, &admin, Method::GET, "/api/alarm/sensors", None).await;
        let sensors = sensors.as_array().unwrap().clone();
        sensors.iter().all(|s| s["active"] == true).then_some(())
    })
    .await;
    let (_, alarm, _) = call(&s, &admin, Method::GET, "/api/alarm", None).await;
    assert_eq!(
        alarm["open_sensors"],
        json!([{"id": "back", "name": "Back window"}, {"id": "front", "name": "Front door"}])
    );
    assert_eq!(alarm["ready_to_arm"], false);
    assert_eq!(alarm["ready_to_arm_modes"], json!(["home"]));

    // Arming away is refused naming the door only (the window is not watched in away).
    let (status, e, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/arm",
        Some(json!({"mode": "away"})),
    )
    .await;
    assert_eq!((status, &e["reason"]), (409, &json!("open_sensors")), "{e}");
    let message = e["error"].as_str().unwrap();
    assert!(
        message.contains("Front door") && !message.contains("Back window"),
        "{e}"
    );
    assert_eq!(
        e["open_sensors"],
        json!([{"id": "front", "name": "Front door"}])
    );
    assert_eq!(e["status"]["state"], "disarmed");

    // Forced: armed, the door bypassed.
    let body = json!({"mode": "away", "force": true});
    let (status, armed, _) = call(&s, &admin, Method::POST, "/api/alarm/arm", Some(body)).await;
    assert_eq!(status, 200, "{armed}");
    assert_eq!(armed["state"], "armed_away");
    assert_eq!(
        armed["bypassed_sensors"],
        json!([{"id": "front", "name": "Front door"}])
    );
    let path = "/api/alarm/events?kind=bypassed";
    let (_, events, _) = call(&s, &admin, Method::GET, path, None).await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    task.abort();
    s.stop().await;
}

#[tokio::test]
async fn sensors_and_settings_crud_validate_field_by_field_and_need_an_admin() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let bob = create_user(&s, &admin, "bob").await;

    // Not an admin: 403 for every sensor and settings call.
    for (method, path, body) in [
        (Method::GET, "/api/alarm/sensors", None),
        (Method::PUT, "/api/alarm/sensors/front", Some(front_door())),
        (Method::DELETE, "/api/alarm/sensors/front", None),
        (Method::GET, "/api/alarm/settings", None),
        (
            Method::PUT,
            "/api/alarm/settings",
            Some(json!({"code_arm_required": false})),
        ),
    ] {
        let (status, _, _) = call(&s, &bob, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}");
    }

    // Per-field validation.
    let with = |patch: Value| {
        let mut body = front_door();
        for (k, v) in patch.as_object().unwrap() {
            if k == "source" {
                for (sk, sv) in v.as_object().unwrap() {
                    body["source"][sk] = sv.clone();
                }
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    for (body, want) in [
        (with(json!({"kind": "lamp"})), "kind:"),
        (with(json!({"modes": ["party"]})), "modes:"),
        (with(json!({"modes": []})), "modes:"),
        (with(json!({"name": " "})), "name:"),
        (
            with(json!({"source": {"topic": "zigbee2mqtt/#"}})),
            "source.topic:",
        ),
        (
            with(json!({"source": {"topic": "zigbee2mqtt/+/contact"}})),
            "source.topic:",
        ),
        (with(json!({"source": {"topic": ""}})), "source.topic:"),
        (
            with(json!({"source": {"field": "state..contact"}})),
            "source.field:",
        ),
        (
            with(json!({"source": {"on": "OPEN", "off": "open"}})),
            "source.off:",
        ),
        (with(json!({"source": {"on": null}})), "source.on:"),
        (with(json!({"source": {"on": [1]}})), "source.on:"),
        (with(json!({"colour": "red"})), "colour:"),
    ] {
        let (status, e, _) = call(
            &s,
            &admin,
            Method::PUT,
            "/api/alarm/sensors/front",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            e["error"].as_str().unwrap().starts_with(want),
            "{body}: {e}"
        );
    }
    let (status, e, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/sensors/front%20door",
        Some(front_door()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().starts_with("id:"), "{e}");

    // Create (201), replace (200), list, delete (204), delete again (404).
    let (status, created, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/sensors/front",
        Some(front_door()),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        created,
        json!({"id": "front", "name": "Front door", "kind": "door", "modes": ["away"],
               "use_entry_delay": true, "allow_open_while_arming": false,
               "source": {"kind": "mqtt", "topic": DOOR_TOPIC, "field": "contact", "on": false, "off": true},
               "active": null})
    );
    let smoke = json!({"name": "Smoke", "kind": "smoke", "source": {"topic": "zigbee2mqtt/smoke", "on": "ON", "off": "OFF"}});
    let (status, _, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/sensors/smoke",
        Some(smoke),
    )
    .await;
    assert_eq!(status, 201, "an always-on sensor needs no modes");
    let (status, replaced, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/sensors/front",
        Some(with(json!({"modes": ["away", "night"]}))),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["modes"], json!(["away", "night"]));
    let (_, list, _) = call(&s, &admin, Method::GET, "/api/alarm/sensors", None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["front", "smoke"]);
    let (status, _, _) = call(&s, &admin, Method::DELETE, "/api/alarm/sensors/front", None).await;
    assert_eq!(status, 204);
    let (status, _, _) = call(&s, &admin, Method::DELETE, "/api/alarm/sensors/front", None).await;
    assert_eq!(status, 404);
    let (_, list, _) = call(&s, &admin, Method::GET, "/api/alarm/sensors", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Settings: the defaults, range checks naming the field, at least one mode.
    let (status, settings, _) = call(&s, &admin, Method::GET, "/api/alarm/settings", None).await;
    assert_eq!(status, 200);
    assert_eq!(settings["away"]["exit_delay_secs"], 60);
    assert_eq!(settings["code_disarm_required"], true);
    for (body, want) in [
        (
            json!({"away": {"exit_delay_secs": 3601}}),
            "away.exit_delay_secs:",
        ),
        (
            json!({"home": {"entry_delay_secs": -1}}),
            "home.entry_delay_secs:",
        ),
        (
            json!({"night": {"trigger_time_secs": 86_401}}),
            "night.trigger_time_secs:",
        ),
        (
            json!({"disarmed_trigger_time_secs": 86_401}),
            "disarmed_trigger_time_secs:",
        ),
        (json!({"away": {"colour": 1}}), "away.colour:"),
        (json!({"code_arm_required": "no"}), "code_arm_required:"),
        (
            json!({"home": {"enabled": false}, "away": {"enabled": false}, "night": {"enabled": false}}),
            "enabled:",
        ),
    ] {
        let (status, e, _) = call(
            &s,
            &admin,
            Method::PUT,
            "/api/alarm/settings",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            e["error"].as_str().unwrap().starts_with(want),
            "{body}: {e}"
        );
    }
    let (_, unchanged, _) = call(&s, &admin, Method::GET, "/api/alarm/settings", None).await;
    assert_eq!(unchanged, settings, "a refused change changes nothing");

    // A valid change: stored, answered, and the running alarm takes it at once.
    let body = json!({"away": {"exit_delay_secs": 3600, "trigger_time_secs": 86_400}, "vacation": {"enabled": true}, "code_arm_required": false});
    let (status, changed, _) =
        call(&s, &admin, Method::PUT, "/api/alarm/settings", Some(body)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["away"]["exit_delay_secs"], 3600);
    assert_eq!(
        changed["away"]["entry_delay_secs"], 30,
        "fields not named stay"
    );
    let (_, alarm, _) = call(&s, &bob, Method::GET, "/api/alarm", None).await;
    assert_eq!(alarm["code_arm_required"], false);
    assert_eq!(
        alarm["enabled_modes"],
        json!(["home", "away", "night", "vacation"])
    );
    let (status, arming, _) = call(
        &s,
        &bob,
        Method::POST,
        "/api/alarm/arm",
        Some(json!({"mode": "away"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&arming["state"], &arming["next_state"]),
        (&json!("arming"), &json!("armed_away"))
    );
    let left = arming["delay_remaining_secs"].as_u64().unwrap();
    assert!((3590..=3600).contains(&left), "{arming}");
    s.stop().await;
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn next_text(socket: &mut Socket, within: Duration) -> Value {
    loop {
        match tokio::time::timeout(within, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("no live message: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_live_feed_sends_the_alarm_status_on_connect_and_on_each_change() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let _alice = create_user(&s, &admin, "alice").await;
    quick_settings(&s, &admin, false).await;

    // A plain user's live feed (bearer token).
    let token: Value = s
        .call(
            &admin,
            Method::POST,
            "/api/tokens",
            Some(&json!({"name": "wall tablet"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let r = client()
        .post(s.url("/api/login"))
        .json(&json!({"username": "alice", "password": password("alice")}))
        .send()
        .await
        .unwrap();
    let cookie = r
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
    let open = |header: (&'static str, String)| {
        let url = format!("ws://{}/ws/live", s.running.http_addr);
        async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert(header.0, header.1.parse().unwrap());
            tokio_tungstenite::connect_async(request).await.unwrap().0
        }
    };
    let mut alice = open(("cookie", cookie)).await;
    let mut tablet = open(("authorization", format!("Bearer {token}"))).await;

    for socket in [&mut alice, &mut tablet] {
        assert_eq!(
            next_text(socket, Duration::from_secs(10)).await["type"],
            "snapshot"
        );
        let alarm = next_text(socket, Duration::from_secs(10)).await;
        assert_eq!(alarm["type"], "alarm", "{alarm}");
        assert_eq!(alarm["state"], "disarmed");
        assert_eq!(alarm["enabled_modes"], json!(["home", "away", "night"]));
    }

    // A change reaches every viewer within a second.
    let (status, _, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/arm",
        Some(json!({"mode": "home"})),
    )
    .await;
    assert_eq!(status, 200);
    for socket in [&mut alice, &mut tablet] {
        let alarm = next_text(socket, Duration::from_secs(1)).await;
        assert_eq!(
            (&alarm["type"], &alarm["state"]),
            (&json!("alarm"), &json!("armed_home")),
            "{alarm}"
        );
        assert_eq!(alarm["changed_by"], "admin");
    }
    let body = json!({"code": ""});
    let (status, e, _) = call(&s, &admin, Method::POST, "/api/alarm/disarm", Some(body)).await;
    assert_eq!(status, 403, "{e}");
    let (status, _, _) = call(
        &s,
        &admin,
        Method::PUT,
        "/api/alarm/settings",
        Some(json!({"code_disarm_required": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/disarm",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let disarmed = loop {
        let m = next_text(&mut alice, Duration::from_secs(1)).await;
        if m["state"] == "disarmed" {
            break m;
        }
        assert_eq!(m["type"], "alarm", "{m}");
    };
    assert_eq!(disarmed["code_disarm_required"], false);
    s.stop().await;
}

#[tokio::test]
async fn an_arm_right_after_a_disarm_is_refused_with_retry_after() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    // The default re-arm guard (2 s) and de-duplication window; no codes.
    let body = json!({"code_arm_required": false, "code_disarm_required": false});
    let (status, _, _) = call(&s, &admin, Method::PUT, "/api/alarm/settings", Some(body)).await;
    assert_eq!(status, 200);
    let arm = json!({"mode": "home"});
    let (status, _, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/arm",
        Some(arm.clone()),
    )
    .await;
    assert_eq!(status, 200);
    // The same arm again at once is a duplicate: 200 with the status, nothing done.
    let (status, again, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/arm",
        Some(arm.clone()),
    )
    .await;
    assert_eq!((status, &again["state"]), (200, &json!("armed_home")));
    let (status, _, _) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/disarm",
        Some(json!({"code": null})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, e, headers) = call(
        &s,
        &admin,
        Method::POST,
        "/api/alarm/arm",
        Some(json!({"mode": "away"})),
    )
    .await;
    assert_eq!((status, &e["reason"]), (409, &json!("rearm_guard")), "{e}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(e["status"]["state"], "disarmed");
    let (_, events, _) = call(
        &s,
        &admin,
        Method::GET,
        "/api/alarm/events?kind=transition",
        None,
    )
    .await;
    assert_eq!(
        events.as_array().unwrap().len(),
        2,
        "one arm, one disarm: {events}"
    );
    s.stop().await;
}
