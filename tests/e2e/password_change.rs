//! Password changes: one's own needs the current password, and a change cuts off what the old
//! password opened (other web sessions, API tokens, MQTT sessions that logged in with it)
//! while device-key MQTT sessions stay.

use std::time::Duration;

use reqwest::Method;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{ADMIN_PASSWORD, TestServer, client};

const WAIT: Duration = Duration::from_secs(10);

/// A connected rumqttc client; its packets (or the error that ended it) arrive on `events`.
struct Mqtt {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
}

impl Mqtt {
    async fn connect(s: &TestServer, id: &str, user: &str, pass: &str) -> Mqtt {
        let addr = s.mqtt_addr();
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_credentials(user, pass);
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
                    Err(e) => {
                        // Stop here: polling again would reconnect.
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Ok(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {}
            other => panic!("{user} could not connect as {id}: {other:?}"),
        }
        Mqtt { client, events }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Ok(Packet::SubAck(_)))) => return,
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

    /// The payload of the next PUBLISH, or `None` if the connection ended or nothing came.
    async fn next_payload(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Ok(Packet::Publish(p)))) => {
                    return Some(String::from_utf8_lossy(&p.payload).into_owned());
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
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

async fn create_alice(s: &TestServer, admin: &reqwest::Client) {
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({ "username": "alice", "password": "alice password 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn put_password(
    s: &TestServer,
    c: &reqwest::Client,
    user: &str,
    body: Value,
) -> (u16, Value) {
    let r = s
        .call(
            c,
            Method::PUT,
            &format!("/api/users/{user}/password"),
            Some(&body),
        )
        .await;
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one_but_an_admin_reset_does_not() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    create_alice(&s, &admin).await;
    let alice = s.signed_in("alice", "alice password 1").await;

    let (status, body) = put_password(
        &s,
        &alice,
        "alice",
        json!({ "password": "alice password 2" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("current"),
        "{body}"
    );
    let (status, body) = put_password(
        &s,
        &alice,
        "alice",
        json!({ "password": "alice password 2", "current_password": "not my password" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("current password"),
        "{body}"
    );
    // Neither refusal changed anything.
    s.signed_in("alice", "alice password 1").await;

    let (status, _) = put_password(
        &s,
        &alice,
        "alice",
        json!({ "password": "alice password 2", "current_password": "alice password 1" }),
    )
    .await;
    assert_eq!(status, 204);
    s.signed_in("alice", "alice password 2").await;

    // Admins need their own current password for their own account...
    let (status, _) = put_password(
        &s,
        &admin,
        "admin",
        json!({ "password": "new admin password" }),
    )
    .await;
    assert_eq!(status, 400);
    // ...but not to reset someone else's, which ends all of that user's sessions.
    let (status, _) = put_password(
        &s,
        &admin,
        "alice",
        json!({ "password": "alice password 3" }),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        s.call(&alice, Method::GET, "/api/me", None).await.status(),
        401
    );
    s.signed_in("alice", "alice password 3").await;
    s.stop().await;
}

#[tokio::test]
async fn guessing_the_current_password_is_throttled_like_a_login() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    create_alice(&s, &admin).await;
    let alice = s.signed_in("alice", "alice password 1").await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let body =
            json!({ "password": "alice password 2", "current_password": format!("guess {i}") });
        statuses.push(put_password(&s, &alice, "alice", body).await.0);
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 403, 429]);
    s.stop().await;
}

#[tokio::test]
async fn a_password_change_cuts_off_sessions_tokens_and_password_mqtt_logins_but_not_device_keys() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_alice(&s, &admin).await;
    let browser = s.signed_in("alice", "alice password 1").await;
    let other_browser = s.signed_in("alice", "alice password 1").await;
    let token: Value = s
        .call(
            &browser,
            Method::POST,
            "/api/tokens",
            Some(&json!({ "name": "script" })),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let device: Value = s
        .call(
            &browser,
            Method::POST,
            "/api/devices",
            Some(&json!({ "name": "phone" })),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = device["mqtt_password"].as_str().unwrap().to_owned();

    let mut by_password = Mqtt::connect(&s, "alice-laptop", "alice", "alice password 1").await;
    let mut by_key = Mqtt::connect(&s, "alice-phone", "alice", &key).await;
    by_password.subscribe("owntracks/alice/#").await;
    by_key.subscribe("owntracks/alice/#").await;
    let publisher = Mqtt::connect(&s, "admin-tool", "admin", ADMIN_PASSWORD).await;
    publisher.publish("owntracks/alice/phone", "before").await;
    assert_eq!(by_password.next_payload().await.as_deref(), Some("before"));
    assert_eq!(by_key.next_payload().await.as_deref(), Some("before"));
    let bearer = |path: &str| client().get(s.url(path)).bearer_auth(&token).send();
    assert_eq!(bearer("/api/me").await.unwrap().status(), 200);

    let (status, _) = put_password(
        &s,
        &browser,
        "alice",
        json!({ "password": "alice password 2", "current_password": "alice password 1" }),
    )
    .await;
    assert_eq!(status, 204);

    // The browser that changed it stays signed in; everything else the old password opened ends.
    assert_eq!(
        s.call(&browser, Method::GET, "/api/me", None)
            .await
            .status(),
        200
    );
    assert_eq!(
        s.call(&other_browser, Method::GET, "/api/me", None)
            .await
            .status(),
        401
    );
    assert_eq!(bearer("/api/me").await.unwrap().status(), 401);
    assert!(
        by_password.closed_within(WAIT).await,
        "the MQTT session that logged in with the old password must end"
    );
    publisher.publish("owntracks/alice/phone", "after").await;
    assert_eq!(
        by_key.next_payload().await.as_deref(),
        Some("after"),
        "the device-key session stays"
    );
    s.stop().await;
}

/// A generated password is one-time: login and `/api/me` say `must_change_password` until the
/// user sets their own; a chosen password never carries the flag.
#[tokio::test]
async fn a_generated_password_must_be_changed_and_a_chosen_one_need_not() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let me: Value = s
        .call(&admin, Method::GET, "/api/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["must_change_password"], false, "{me}");

    let created: Value = s
        .call(
            &admin,
            Method::POST,
            "/api/users",
            Some(&json!({ "username": "carol" })),
        )
        .await
        .json()
        .await
        .unwrap();
    let generated = created["password"].as_str().unwrap().to_owned();

    let carol = client();
    let login = carol
        .post(s.url("/api/login"))
        .json(&json!({ "username": "carol", "password": generated }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let me: Value = login.json().await.unwrap();
    assert_eq!(me["must_change_password"], true, "{me}");
    let me: Value = s
        .call(&carol, Method::GET, "/api/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["must_change_password"], true, "{me}");

    let changed = s
        .call(
            &carol,
            Method::PUT,
            "/api/users/carol/password",
            Some(&json!({ "password": "carol's own password", "current_password": generated })),
        )
        .await;
    assert_eq!(changed.status(), 204);
    let me: Value = s
        .call(&carol, Method::GET, "/api/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["must_change_password"], false, "{me}");

    s.call(
        &admin,
        Method::POST,
        "/api/users",
        Some(&json!({ "username": "dave", "password": "dave's chosen password" })),
    )
    .await;
    let dave = client();
    let me: Value = dave
        .post(s.url("/api/login"))
        .json(&json!({ "username": "dave", "password": "dave's chosen password" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["must_change_password"], false, "{me}");
    s.stop().await;
}
