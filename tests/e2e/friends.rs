//! Friends end to end: bob grants alice the sight of his OwnTracks devices, and alice sees
//! them in the Recorder API, on the live WebSocket and through the broker (a real rumqttc
//! subscriber on `owntracks/#`) only while the grant exists; carol's never. Revoking stops the
//! open WebSocket and the existing MQTT subscription at once, without reconnecting. Also the
//! friends API's answers and the friends' cards and locations in HTTP mode's `/pub` answer.

use std::time::Duration;

use reqwest::Method;
use rumqttc::{Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{
    TestServer, client, eventually, live_next as next_json, live_until as until, mqtt_connect,
};

const WAIT: Duration = Duration::from_secs(10);

type Socket = crate::support::LiveSocket;

fn password(user: &str) -> String {
    format!("{user} password 1")
}

async fn create_users(s: &TestServer, users: &[&str]) {
    let admin = s.admin().await;
    for user in users {
        let r = admin
            .post(s.url("/api/users"))
            .json(&json!({ "username": user, "role": "user", "password": password(user) }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

async fn signed_in(s: &TestServer, user: &str) -> reqwest::Client {
    s.signed_in(user, &password(user)).await
}

async fn get_json(s: &TestServer, c: &reqwest::Client, path: &str) -> Value {
    let r = s.call(c, Method::GET, path, None).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// The `user/device` names in a Recorder `/api/0/last` answer.
async fn last_devices(s: &TestServer, c: &reqwest::Client) -> Vec<String> {
    get_json(s, c, "/api/0/last")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}/{}",
                l["username"].as_str().unwrap(),
                l["device"].as_str().unwrap()
            )
        })
        .collect()
}

fn location(lat: f64, tst: i64) -> Vec<u8> {
    json!({ "_type": "location", "lat": lat, "lon": 13.4, "tst": tst, "acc": 10, "tid": "ph" })
        .to_string()
        .into_bytes()
}

/// An MQTT client signed in with the account password.
struct Phone {
    client: rumqttc::AsyncClient,
    events: UnboundedReceiver<Packet>,
    _task: tokio::task::JoinHandle<()>,
}

impl Phone {
    async fn connect(s: &TestServer, user: &str) -> Phone {
        let (client, events, task) =
            mqtt_connect(s, &format!("{user}-phone"), user, &password(user), None).await;
        Phone {
            client,
            events,
            _task: task,
        }
    }

    /// Publishes QoS 1 and waits for the PUBACK (sent once the point is committed).
    async fn publish_acked(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
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

    async fn subscribe(&mut self, filter: &str) -> rumqttc::SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Packet::SubAck(ack))) => return ack.return_codes[0],
                Ok(Some(_)) => {}
                other => panic!("no SUBACK for {filter}: {other:?}"),
            }
        }
    }

    /// Receives PUBLISHes until one is on `topic`; returns the topics of those before it.
    async fn until_topic(&mut self, topic: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Packet::Publish(p))) if p.topic == topic => return before,
                Ok(Some(Packet::Publish(p))) => before.push(p.topic),
                Ok(Some(_)) => {}
                other => panic!("nothing on {topic}: {other:?}"),
            }
        }
    }
}

/// `/ws/live` signed in as `user` (session cookie).
async fn live(s: &TestServer, user: &str) -> Socket {
    let r = client()
        .post(s.url("/api/login"))
        .json(&json!({ "username": user, "password": password(user) }))
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
    let mut request = format!("ws://{}/ws/live", s.running.http_addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The users whose devices a `snapshot` message lists.
fn snapshot_users(m: &Value) -> Vec<String> {
    let mut users: Vec<String> = m["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["user"].as_str().unwrap().to_owned())
        .collect();
    users.dedup();
    users
}

fn is_location_of(m: &Value, user: &str, tst: i64) -> bool {
    m["type"] == "location" && m["user"] == user && m["tst"] == tst
}

#[tokio::test]
async fn alice_sees_bob_only_while_friends_in_the_api_the_websocket_and_the_broker() {
    let s = TestServer::start().await;
    create_users(&s, &["alice", "bob", "carol"]).await;
    let mut alice_phone = Phone::connect(&s, "alice").await;
    let mut bob_phone = Phone::connect(&s, "bob").await;
    let mut carol_phone = Phone::connect(&s, "carol").await;
    alice_phone
        .publish_acked("owntracks/alice/phone", location(52.0, 1_764_000_000))
        .await;
    bob_phone
        .publish_acked("owntracks/bob/phone", location(52.1, 1_764_000_001))
        .await;
    carol_phone
        .publish_acked("owntracks/carol/phone", location(52.2, 1_764_000_002))
        .await;
    let alice = signed_in(&s, "alice").await;
    let bob = signed_in(&s, "bob").await;

    // Before: alice sees only her own, everywhere.
    assert_eq!(last_devices(&s, &alice).await, ["alice/phone"]);
    let mut socket = live(&s, "alice").await;
    let first = next_json(&mut socket).await;
    assert_eq!(first["type"], "snapshot");
    assert_eq!(snapshot_users(&first), ["alice"]);
    let (client, events, task) =
        mqtt_connect(&s, "alice-watcher", "alice", &password("alice"), None).await;
    let mut watcher = Phone {
        client,
        events,
        _task: task,
    };
    assert!(matches!(
        watcher.subscribe("owntracks/#").await,
        rumqttc::SubscribeReasonCode::Success(_)
    ));
    assert_eq!(
        watcher.subscribe("owntracks/bob/#").await,
        rumqttc::SubscribeReasonCode::Failure,
        "bob's tree by name, before he granted anything"
    );
    bob_phone
        .publish_acked("owntracks/bob/phone", location(52.1, 1_764_000_010))
        .await;
    alice_phone
        .publish_acked("owntracks/alice/phone", location(52.0, 1_764_000_011))
        .await;
    assert!(
        watcher
            .until_topic("owntracks/alice/phone")
            .await
            .is_empty()
    );
    let (_, before) = until(&mut socket, |m| is_location_of(m, "alice", 1_764_000_011)).await;
    assert!(before.iter().all(|m| m["user"] != "bob"), "{before:?}");

    // bob grants alice.
    let r = s.call(&bob, Method::PUT, "/api/friends/alice", None).await;
    assert_eq!(r.status(), 201);
    let (snapshot, _) = until(&mut socket, |m| m["type"] == "snapshot").await;
    assert_eq!(snapshot_users(&snapshot), ["alice", "bob"], "carol never");
    assert_eq!(last_devices(&s, &alice).await, ["alice/phone", "bob/phone"]);
    assert_eq!(
        get_json(&s, &alice, "/api/0/list").await["results"],
        json!(["alice", "bob"])
    );
    // carol grants bob, not alice: nothing changes for alice (no new snapshot either).
    let carol = signed_in(&s, "carol").await;
    let r = s.call(&carol, Method::PUT, "/api/friends/bob", None).await;
    assert_eq!(r.status(), 201);
    carol_phone
        .publish_acked("owntracks/carol/phone", location(52.2, 1_764_000_020))
        .await;
    bob_phone
        .publish_acked("owntracks/bob/phone", location(52.1, 1_764_000_021))
        .await;
    let (_, before) = until(&mut socket, |m| is_location_of(m, "bob", 1_764_000_021)).await;
    assert!(
        before
            .iter()
            .all(|m| m["user"] != "carol" && m["type"] != "snapshot"),
        "{before:?}"
    );
    assert!(
        watcher.until_topic("owntracks/bob/phone").await.is_empty(),
        "bob's point reaches alice's existing subscription; carol's does not"
    );

    // bob revokes: the same socket and subscription stop at once.
    let r = s
        .call(&bob, Method::DELETE, "/api/friends/alice", None)
        .await;
    assert_eq!(r.status(), 204);
    let (snapshot, _) = until(&mut socket, |m| m["type"] == "snapshot").await;
    assert_eq!(snapshot_users(&snapshot), ["alice"]);
    bob_phone
        .publish_acked("owntracks/bob/phone", location(52.1, 1_764_000_030))
        .await;
    alice_phone
        .publish_acked("owntracks/alice/phone", location(52.0, 1_764_000_031))
        .await;
    let (_, before) = until(&mut socket, |m| is_location_of(m, "alice", 1_764_000_031)).await;
    assert!(before.iter().all(|m| m["user"] != "bob"), "{before:?}");
    assert_eq!(
        watcher.until_topic("owntracks/alice/phone").await,
        Vec::<String>::new(),
        "nothing of bob's after the revoke"
    );
    assert_eq!(last_devices(&s, &alice).await, ["alice/phone"]);

    // Both changes are audited.
    let admin = s.admin().await;
    eventually(|| async {
        let rows = get_json(&s, &admin, "/api/audit").await;
        let rows = rows.as_array().unwrap().clone();
        let has = |kind: &str| {
            rows.iter().any(|r| {
                r["kind"] == kind && r["username"] == "bob" && r["detail"] == "bob -> alice"
            })
        };
        (has("friend_granted") && has("friend_revoked")).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn the_friends_api_answers_401_404_400_403_and_lists_both_directions() {
    let s = TestServer::start().await;
    create_users(&s, &["alice", "bob", "carol"]).await;
    let anonymous = client();
    for (method, path) in [
        (Method::GET, "/api/friends"),
        (Method::PUT, "/api/friends/bob"),
        (Method::DELETE, "/api/friends/bob"),
    ] {
        let r = s.call(&anonymous, method, path, None).await;
        assert_eq!(r.status(), 401, "{path}");
    }
    let alice = signed_in(&s, "alice").await;
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            s.call(&alice, Method::PUT, "/api/friends/nobody", None)
                .await
        ),
        404
    );
    assert_eq!(
        status(
            s.call(&alice, Method::PUT, "/api/friends/alice", None)
                .await
        ),
        400
    );
    assert_eq!(
        status(
            s.call(&alice, Method::DELETE, "/api/friends/bob", None)
                .await
        ),
        404
    );
    assert_eq!(
        status(
            s.call(&alice, Method::PUT, "/api/users/bob/friends/alice", None)
                .await
        ),
        403,
        "alice may not grant herself bob's devices"
    );
    assert_eq!(
        status(s.call(&alice, Method::PUT, "/api/friends/bob", None).await),
        201
    );
    assert_eq!(
        status(s.call(&alice, Method::PUT, "/api/friends/bob", None).await),
        200
    );
    let admin = s.admin().await;
    assert_eq!(
        status(
            s.call(&admin, Method::PUT, "/api/users/carol/friends/alice", None)
                .await
        ),
        201,
        "an admin manages anyone's grants"
    );
    let mine = get_json(&s, &alice, "/api/friends").await;
    let pairs: Vec<(String, String)> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["created_at"].as_i64().unwrap() > 0);
            (
                f["owner"].as_str().unwrap().into(),
                f["viewer"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("alice".into(), "bob".into()),
            ("carol".into(), "alice".into())
        ]
    );
    let bob = signed_in(&s, "bob").await;
    assert_eq!(
        get_json(&s, &bob, "/api/friends")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get_json(&s, &admin, "/api/friends")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        status(
            s.call(
                &admin,
                Method::DELETE,
                "/api/users/carol/friends/alice",
                None
            )
            .await
        ),
        204
    );
    assert_eq!(
        get_json(&s, &alice, "/api/friends")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.stop().await;
}

/// An HTTP-mode post with the account password; the status and JSON answer.
async fn post_pub(s: &TestServer, user: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(s.url("/pub"))
        .basic_auth(user, Some(password(user)))
        .header("x-limit-d", "phone")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn pub_answers_the_friends_cards_and_last_locations_as_the_recorder_does() {
    let s = TestServer::start_with(None).await;
    create_users(&s, &["alice", "bob", "carol"]).await;
    let card = json!({ "_type": "card", "name": "Bob B.", "face": "aGVsbG8=" });
    assert_eq!(post_pub(&s, "bob", card).await.0, 200);
    let bob_location = json!({ "_type": "location", "lat": 48.85, "lon": 2.35, "tst": 1_764_000_100,
                               "acc": 8, "alt": 35, "vel": 4, "cog": 90, "tid": "bb", "batt": 50 });
    assert_eq!(post_pub(&s, "bob", bob_location).await.0, 200);
    let carol_location =
        json!({ "_type": "location", "lat": 40.0, "lon": 3.0, "tst": 1_764_000_100 });
    assert_eq!(post_pub(&s, "carol", carol_location).await.0, 200);
    let mine = |tst: i64| json!({ "_type": "location", "lat": 52.0, "lon": 13.0, "tst": tst });

    assert_eq!(
        post_pub(&s, "alice", mine(1_764_000_200)).await,
        (200, json!([]))
    );

    let bob = signed_in(&s, "bob").await;
    let carol = signed_in(&s, "carol").await;
    assert_eq!(
        s.call(&bob, Method::PUT, "/api/friends/alice", None)
            .await
            .status(),
        201
    );
    assert_eq!(
        s.call(&carol, Method::PUT, "/api/friends/bob", None)
            .await
            .status(),
        201
    );
    let (status, answer) = post_pub(&s, "alice", mine(1_764_000_201)).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!([
            { "_type": "card", "tid": "bb", "name": "Bob B.", "face": "aGVsbG8=",
              "topic": "owntracks/bob/phone" },
            { "_type": "location", "tid": "bb", "lat": 48.85, "lon": 2.35, "tst": 1_764_000_100,
              "acc": 8.0, "alt": 35.0, "vel": 4.0, "cog": 90.0, "topic": "owntracks/bob/phone" },
        ]),
        "bob's card and last location, nothing of carol's (she granted bob, not alice)"
    );

    assert_eq!(
        s.call(&bob, Method::DELETE, "/api/friends/alice", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        post_pub(&s, "alice", mine(1_764_000_202)).await,
        (200, json!([]))
    );
    s.stop().await;
}

/// A user's own card (name and picture) reaches their friends' phones as a retained `…/info`
/// and the UI's device list, also for a device that appears later; a field left out keeps its
/// value; a bad card is refused.
#[tokio::test]
async fn a_card_set_by_its_user_reaches_friends_phones_and_the_api() {
    const FACE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let s = TestServer::start().await;
    create_users(&s, &["alice", "bob"]).await;
    let mut bob_phone = Phone::connect(&s, "bob").await;
    bob_phone
        .publish_acked("owntracks/bob/phone", location(52.5, 1_764_000_000))
        .await;
    let bob = signed_in(&s, "bob").await;
    let r = s.call(&bob, Method::PUT, "/api/friends/alice", None).await;
    assert_eq!(r.status(), 201);

    let mut alice_phone = Phone::connect(&s, "alice").await;
    assert!(matches!(
        alice_phone.subscribe("owntracks/+/+/info").await,
        rumqttc::SubscribeReasonCode::Success(_)
    ));
    let r = s
        .call(
            &bob,
            Method::PUT,
            "/api/owntracks/card",
            Some(&json!({ "name": "Bob", "face": FACE })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["devices"], json!(["phone"]));
    // The card arrives on alice's phone, as a phone's own card would.
    let card = loop {
        match tokio::time::timeout(WAIT, alice_phone.events.recv()).await {
            Ok(Some(Packet::Publish(p))) if p.topic == "owntracks/bob/phone/info" => {
                break serde_json::from_slice::<Value>(&p.payload).unwrap();
            }
            Ok(Some(_)) => {}
            other => panic!("no card for alice: {other:?}"),
        }
    };
    assert_eq!(card["_type"], "card");
    assert_eq!(card["name"], "Bob");
    assert_eq!(card["face"], FACE);

    // And in the UI's device list of a friend.
    let alice = signed_in(&s, "alice").await;
    let devices = get_json(&s, &alice, "/api/owntracks/devices").await;
    let bobs = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["user"] == "bob")
        .unwrap();
    assert_eq!(bobs["card"]["name"], "Bob");

    // A face that is not base64, a name too long: 400; an unknown field: 422 (as every JSON
    // body of the API); nothing changed.
    for (bad, status) in [
        (json!({ "name": "Bob", "face": "not base64 at all!" }), 400),
        (json!({ "name": "B".repeat(65) }), 400),
        (json!({ "nickname": "Bobby" }), 422),
    ] {
        let r = s
            .call(&bob, Method::PUT, "/api/owntracks/card", Some(&bad))
            .await;
        assert_eq!(r.status(), status, "{bad}");
        let error: Value = r.json().await.unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
    let devices = get_json(&s, &alice, "/api/owntracks/devices").await;
    assert!(devices.to_string().contains(r#""name":"Bob""#), "{devices}");

    // Bob's new tablet, which never sent a card, shows his card to alice as soon as it
    // appears (no restart, no new PUT).
    bob_phone
        .publish_acked("owntracks/bob/tablet", location(52.6, 1_764_000_050))
        .await;
    let card = loop {
        match tokio::time::timeout(WAIT, alice_phone.events.recv()).await {
            Ok(Some(Packet::Publish(p))) if p.topic == "owntracks/bob/tablet/info" => {
                break serde_json::from_slice::<Value>(&p.payload).unwrap();
            }
            Ok(Some(_)) => {}
            other => panic!("no card of the new tablet for alice: {other:?}"),
        }
    };
    assert_eq!(card["name"], "Bob");
    assert_eq!(card["face"], FACE);

    // A new name alone keeps the picture; `"face": null` removes it and keeps the name.
    let bobs_card = |devices: Value| {
        devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["user"] == "bob" && d["device"] == "phone")
            .map(|d| d["card"].clone())
            .unwrap()
    };
    for (body, name, face) in [
        (json!({ "name": "Bobby" }), json!("Bobby"), json!(FACE)),
        (json!({ "face": null }), json!("Bobby"), Value::Null),
    ] {
        let r = s
            .call(&bob, Method::PUT, "/api/owntracks/card", Some(&body))
            .await;
        assert_eq!(r.status(), 200, "{body}");
        let card = bobs_card(get_json(&s, &alice, "/api/owntracks/devices").await);
        assert_eq!(card["name"], name, "{body}: {card}");
        assert_eq!(
            card.get("face").cloned().unwrap_or(Value::Null),
            face,
            "{body}: {card}"
        );
    }

    let r = client()
        .put(s.url("/api/owntracks/card"))
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

/// A user's card exists before they have any device: `PUT` stores it, `GET` answers it, and
/// their first phone takes it with its first point, retained on its `…/info` for a friend who
/// subscribes afterwards. A new name alone keeps the picture; a face sent that is not a PNG
/// or JPEG is refused, while one a phone sent in its own card does not block a new name.
#[tokio::test]
async fn a_card_set_before_any_device_reaches_the_first_phone() {
    const FACE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let s = TestServer::start().await;
    create_users(&s, &["alice", "bob"]).await;
    let bob = signed_in(&s, "bob").await;
    assert_eq!(
        get_json(&s, &bob, "/api/owntracks/card").await,
        json!({ "name": null, "face": null })
    );
    let r = s
        .call(
            &bob,
            Method::PUT,
            "/api/owntracks/card",
            Some(&json!({ "name": "Bob", "face": FACE })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["devices"], json!([]));
    assert_eq!(
        get_json(&s, &bob, "/api/owntracks/card").await,
        json!({ "name": "Bob", "face": FACE })
    );
    let r = s.call(&bob, Method::PUT, "/api/friends/alice", None).await;
    assert_eq!(r.status(), 201);

    // Bob's first phone appears with a point; a friend subscribing afterwards gets his card
    // retained on the phone's `…/info`.
    let mut bob_phone = Phone::connect(&s, "bob").await;
    bob_phone
        .publish_acked("owntracks/bob/phone", location(52.5, 1_764_000_000))
        .await;
    let mut attempt = 0;
    let card = eventually(|| {
        attempt += 1;
        let id = format!("alice-watcher-{attempt}");
        let s = &s;
        async move {
            let (client, mut events, task) =
                mqtt_connect(s, &id, "alice", &password("alice"), None).await;
            client
                .subscribe("owntracks/bob/phone/info", QoS::AtLeastOnce)
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            let mut found = None;
            while let Ok(Some(p)) = tokio::time::timeout_at(deadline, events.recv()).await {
                if let Packet::Publish(p) = p
                    && p.topic == "owntracks/bob/phone/info"
                    && p.retain
                {
                    found = Some(serde_json::from_slice::<Value>(&p.payload).unwrap());
                    break;
                }
            }
            task.abort();
            found
        }
    })
    .await;
    assert_eq!(card["_type"], "card");
    assert_eq!(card["name"], "Bob");
    assert_eq!(card["face"], FACE);

    // A new name alone keeps the picture, in GET and on the phone's card.
    let r = s
        .call(
            &bob,
            Method::PUT,
            "/api/owntracks/card",
            Some(&json!({ "name": "Bobby" })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["devices"],
        json!(["phone"])
    );
    assert_eq!(
        get_json(&s, &bob, "/api/owntracks/card").await,
        json!({ "name": "Bobby", "face": FACE })
    );

    // Base64 that is not a PNG or JPEG (text, a GIF): 400 saying so; nothing changed.
    for face in ["aGVsbG8=", "R0lGODlhAQABAAAAACw="] {
        let r = s
            .call(
                &bob,
                Method::PUT,
                "/api/owntracks/card",
                Some(&json!({ "face": face })),
            )
            .await;
        assert_eq!(r.status(), 400, "{face}");
        let error: Value = r.json().await.unwrap();
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.contains("PNG or JPEG")),
            "{error}"
        );
    }
    assert_eq!(
        get_json(&s, &bob, "/api/owntracks/card").await,
        json!({ "name": "Bobby", "face": FACE })
    );
    // Carol's phone sent its own card with a picture that is no PNG or JPEG; she can still
    // change her name (the kept picture is not hers to fix here).
    create_users(&s, &["carol"]).await;
    let mut carol_phone = Phone::connect(&s, "carol").await;
    carol_phone
        .publish_acked("owntracks/carol/phone", location(52.7, 1_764_000_100))
        .await;
    carol_phone
        .publish_acked(
            "owntracks/carol/phone/info",
            json!({ "_type": "card", "name": "C", "face": "aGVsbG8=" })
                .to_string()
                .into_bytes(),
        )
        .await;
    let carol = signed_in(&s, "carol").await;
    let r = s
        .call(
            &carol,
            Method::PUT,
            "/api/owntracks/card",
            Some(&json!({ "name": "Carol" })),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        get_json(&s, &carol, "/api/owntracks/card").await,
        json!({ "name": "Carol", "face": "aGVsbG8=" })
    );

    let r = client()
        .get(s.url("/api/owntracks/card"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}
