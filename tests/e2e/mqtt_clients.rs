//! `GET /api/settings/mqtt/clients`: the embedded broker's connected clients, read from the
//! broker's own sessions, for admins only.

use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, TestServer, eventually, mqtt_connect};

async fn clients(s: &TestServer, c: &reqwest::Client) -> (u16, Value) {
    let r = s
        .call(c, Method::GET, "/api/settings/mqtt/clients", None)
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn by_id<'a>(list: &'a Value, client_id: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|c| c["client_id"] == client_id)
}

#[tokio::test]
async fn admins_see_each_connected_client_with_its_user_login_and_protocol() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let r = s
        .call(
            &admin,
            Method::POST,
            "/api/users",
            Some(&json!({"username": "bob", "password": "bob password 1"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = s
        .call(
            &admin,
            Method::POST,
            "/api/devices",
            Some(&json!({"username": "bob", "name": "phone"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let device: Value = r.json().await.unwrap();
    let device_key = device["mqtt_password"].as_str().unwrap().to_owned();

    let (_, none_yet) = clients(&s, &admin).await;
    assert_eq!(none_yet, json!([]));

    // The admin with the account password over MQTT 3.1.1 (rumqttc), clean session.
    let (_admin_mqtt, _events, admin_task) =
        mqtt_connect(&s, "admin-console", "admin", ADMIN_PASSWORD, None).await;
    // Bob's phone with its device key over MQTT 5 (mosquitto_sub), no clean start.
    let addr = s.mqtt_addr();
    let mut phone = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-V", "5", "-i", "bob-phone", "-c", "-q", "1"])
        .args(["-u", "bob", "-P", &device_key, "-t", "owntracks/bob/#"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub (Debian's mosquitto-clients) is installed");

    let list = eventually(|| async {
        let (status, list) = clients(&s, &admin).await;
        assert_eq!(status, 200, "{list}");
        let phone = by_id(&list, "bob-phone")?;
        (phone["subscriptions"] == 1).then_some(list)
    })
    .await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    // Sorted by user, then client id.
    assert_eq!(list[0]["client_id"], "admin-console", "{list}");
    assert_eq!(list[1]["client_id"], "bob-phone", "{list}");

    let console = &list[0];
    assert_eq!(console["username"], "admin");
    assert_eq!(console["device"], Value::Null);
    assert_eq!(console["login"], "password");
    assert_eq!(console["protocol"], 4);
    assert_eq!(console["clean_start"], true);
    assert_eq!(console["subscriptions"], 0);
    assert!(
        console["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{console}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let since = console["connected_since"].as_i64().unwrap();
    assert!((now - 60..=now + 1).contains(&since), "{since} vs {now}");

    let bob = &list[1];
    assert_eq!(bob["username"], "bob");
    assert_eq!(bob["device"], "phone");
    assert_eq!(bob["login"], "device_key");
    assert_eq!(bob["protocol"], 5);
    assert_eq!(bob["clean_start"], false);
    assert_eq!(bob["subscriptions"], 1);

    // Never a credential.
    let text = list.to_string();
    assert!(!text.contains(&device_key) && !text.contains(ADMIN_PASSWORD));

    // A user who is not an admin is refused.
    let bob_web = s.signed_in("bob", "bob password 1").await;
    let (status, _) = clients(&s, &bob_web).await;
    assert_eq!(status, 403);

    // The phone goes away: so does its row (its persistent session stays, offline).
    phone.kill().await.unwrap();
    let list = eventually(|| async {
        let (_, list) = clients(&s, &admin).await;
        by_id(&list, "bob-phone").is_none().then_some(list)
    })
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["client_id"], "admin-console");

    admin_task.abort();
    eventually(|| async {
        let (_, list) = clients(&s, &admin).await;
        (list == json!([])).then_some(())
    })
    .await;
    s.stop().await;
}
