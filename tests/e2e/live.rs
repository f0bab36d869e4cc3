//! The OwnTracks live feed end to end: real WebSocket clients (tokio-tungstenite) on
//! `/ws/live`, signed in with a session cookie or an API token, while phones publish over real
//! MQTT (rumqttc) into the real broker.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{TestServer, client, live_next as next_json, live_until as until};

const WAIT: Duration = Duration::from_secs(10);

type Socket = crate::support::LiveSocket;

fn password(user: &str) -> String {
    format!("{user} password 1")
}

/// Creates a user with the password `<user> password 1`.
async fn create_user(s: &TestServer, admin: &reqwest::Client, user: &str) {
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({ "username": user, "role": "user", "password": password(user) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Signs in and returns the `Cookie` header value of the session.
async fn session_cookie(s: &TestServer, user: &str, pass: &str) -> String {
    let r = client()
        .post(s.url("/api/login"))
        .json(&json!({ "username": user, "password": pass }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login as {user}");
    let set_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("porchlight_session="))
        .unwrap()
        .to_owned();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Opens `/ws/live` with one extra header (`Cookie` or `Authorization`).
async fn connect(s: &TestServer, header: (&'static str, &str)) -> Socket {
    let mut request = format!("ws://{}/ws/live", s.running.http_addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
}

fn location(lat: f64, tst: i64) -> Vec<u8> {
    json!({ "_type": "location", "lat": lat, "lon": 13.4, "tst": tst, "acc": 12, "batt": 80, "vel": 5, "tid": "ph" })
        .to_string()
        .into_bytes()
}

/// A phone: rumqttc with its incoming packets on a channel.
struct Phone {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Phone {
    async fn connect(s: &TestServer, id: &str, user: &str, will: Option<LastWill>) -> Phone {
        let addr = s.mqtt_addr();
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_credentials(user, password(user));
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(512 * 1024, 512 * 1024);
        if let Some(will) = will {
            o.set_last_will(will);
        }
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(p) = event
                    && tx.send(p).is_err()
                {
                    return;
                }
            }
        });
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Packet::ConnAck(_))) => {}
            other => panic!("{user} could not connect: {other:?}"),
        }
        Phone {
            client,
            events,
            task,
        }
    }

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
}

fn is(m: &Value, kind: &str, user: &str) -> bool {
    m["type"] == kind && m["user"] == user
}

#[tokio::test]
async fn the_live_feed_needs_a_session_or_a_token() {
    let s = TestServer::start().await;
    let request = format!("ws://{}/ws/live", s.running.http_addr)
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("upgraded without credentials: {:?}", other.map(|r| r.1)),
    }
    let mut request = format!("ws://{}/ws/live", s.running.http_addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        "Bearer plt_not-a-real-token".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("upgraded with a wrong token: {:?}", other.map(|r| r.1)),
    }
    s.stop().await;
}

#[tokio::test]
async fn locations_reach_their_owner_and_admins_only_and_lwt_marks_offline() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "alice").await;
    create_user(&s, &admin, "bob").await;
    // Alice's phone has a location before anyone watches: it is in the snapshot.
    let will = LastWill::new(
        "owntracks/alice/phone",
        r#"{"_type":"lwt","tst":1764000000}"#,
        QoS::AtLeastOnce,
        false,
    );
    let mut alice_phone = Phone::connect(&s, "alice-phone", "alice", Some(will)).await;
    alice_phone
        .publish_acked("owntracks/alice/phone", location(52.1, 1_764_000_001))
        .await;

    let alice_cookie = session_cookie(&s, "alice", &password("alice")).await;
    let mut alice = connect(&s, ("cookie", &alice_cookie)).await;
    let admin_cookie = session_cookie(&s, "admin", crate::support::ADMIN_PASSWORD).await;
    let mut admin_ws = connect(&s, ("cookie", &admin_cookie)).await;
    let bob_client = s.signed_in("bob", &password("bob")).await;
    let token: Value = bob_client
        .post(s.url("/api/tokens"))
        .json(&json!({ "name": "live" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let mut bob = connect(&s, ("authorization", &bearer)).await;

    let snapshot = next_json(&mut alice).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let devices = snapshot["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{snapshot}");
    assert_eq!(devices[0]["user"], "alice");
    assert_eq!(devices[0]["device"], "phone");
    assert!(devices[0]["device_id"].as_i64().unwrap() > 0);
    assert_eq!(devices[0]["online"], true);
    assert_eq!(devices[0]["location"]["lat"], 52.1);
    assert_eq!(devices[0]["location"]["tst"], 1_764_000_001);
    let admin_snapshot = next_json(&mut admin_ws).await;
    assert_eq!(admin_snapshot["type"], "snapshot");
    assert_eq!(admin_snapshot["devices"].as_array().unwrap().len(), 1);
    let bob_snapshot = next_json(&mut bob).await;
    assert_eq!(bob_snapshot, json!({ "type": "snapshot", "devices": [] }));

    // A new location: at alice's and the admin's sockets, measured from the publish.
    let sent = Instant::now();
    alice_phone
        .publish_acked("owntracks/alice/phone", location(52.2, 1_764_000_002))
        .await;
    let (m, _) = until(&mut alice, |m| is(m, "location", "alice")).await;
    let to_alice = sent.elapsed();
    let (admin_m, _) = until(&mut admin_ws, |m| is(m, "location", "alice")).await;
    let to_admin = sent.elapsed();
    println!("live latency from QoS 1 publish: alice {to_alice:?}, admin {to_admin:?}");
    assert!(to_alice < Duration::from_secs(1), "{to_alice:?}");
    assert!(to_admin < Duration::from_secs(1), "{to_admin:?}");
    assert_eq!(m["device"], "phone");
    assert_eq!(m["device_id"], devices[0]["device_id"]);
    assert_eq!(m["tst"], 1_764_000_002);
    assert_eq!(m["lat"], 52.2);
    assert_eq!(m["lon"], 13.4);
    assert_eq!(m["acc"], 12.0);
    assert_eq!(m["batt"], 80);
    assert_eq!(m["vel"], 5.0);
    assert_eq!(m["tid"], "ph");
    assert_eq!(admin_m, m);

    // Bob sees his own location, and nothing of alice's ever came before it.
    let mut bob_phone = Phone::connect(&s, "bob-phone", "bob", None).await;
    bob_phone
        .publish_acked("owntracks/bob/phone", location(48.0, 1_764_000_003))
        .await;
    let (own, before) = until(&mut bob, |m| m["type"] == "location").await;
    assert_eq!(own["user"], "bob", "{own}");
    assert!(
        before.iter().all(|m| m["user"] == "bob"),
        "bob saw another user's messages: {before:?}"
    );
    // The admin sees bob's too; alice does not (her next message is her own offline status).
    until(&mut admin_ws, |m| is(m, "location", "bob")).await;

    // Alice's phone drops off: its LWT marks it offline on the feed.
    alice_phone.task.abort();
    let (offline, before) = until(&mut alice, |m| m["type"] == "status").await;
    assert_eq!(offline["online"], false, "{offline}");
    assert_eq!(offline["user"], "alice");
    assert_eq!(offline["device"], "phone");
    assert!(
        before.iter().all(|m| m["user"] == "alice"),
        "alice saw another user's messages: {before:?}"
    );
    // A location after it: online again, then the location.
    let mut alice_phone = Phone::connect(&s, "alice-phone-2", "alice", None).await;
    alice_phone
        .publish_acked("owntracks/alice/phone", location(52.3, 1_764_000_004))
        .await;
    let online = next_json(&mut alice).await;
    assert_eq!(online["type"], "status", "{online}");
    assert_eq!(online["online"], true);
    let m = next_json(&mut alice).await;
    assert!(is(&m, "location", "alice"), "{m}");
    assert_eq!(m["lat"], 52.3);

    // Transitions and cards are on the feed too.
    alice_phone
        .publish_acked(
            "owntracks/alice/phone/event",
            json!({ "_type": "transition", "event": "enter", "desc": "Home", "lat": 52.3, "lon": 13.4, "tst": 1_764_000_005, "wtst": 1_700_000_000, "acc": 10, "tid": "ph", "t": "c" }).to_string().into_bytes(),
        )
        .await;
    let m = next_json(&mut alice).await;
    assert_eq!(m["type"], "transition", "{m}");
    assert_eq!(m["event"], "enter");
    assert_eq!(m["desc"], "Home");
    assert_eq!(m["tst"], 1_764_000_005);
    alice_phone
        .publish_acked(
            "owntracks/alice/phone/info",
            json!({ "_type": "card", "name": "Alice" })
                .to_string()
                .into_bytes(),
        )
        .await;
    let m = next_json(&mut alice).await;
    assert_eq!(m["type"], "card", "{m}");
    assert_eq!(m["name"], "Alice");

    let _ = bob.close(None).await;
    s.stop().await;
}

#[tokio::test]
async fn a_viewer_that_never_reads_does_not_slow_ingest_and_is_told_to_resync() {
    const PHONES: usize = 4;
    const PER_PHONE: i64 = 500;
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "alice").await;
    let cookie = session_cookie(&s, "alice", &password("alice")).await;

    // A viewer with a tiny receive buffer that never reads while the points go in.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.running.http_addr).await.unwrap();
    let mut request = format!("ws://{}/ws/live", s.running.http_addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut stalled, response) =
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);

    // First fill the pipe to the viewer past what any socket buffer holds (the kernel's send
    // buffer grows to 4 MiB): 30 cards with 200 kB pictures. The feed's sender to this viewer
    // is then stuck in a send, and the points below overflow what the feed keeps for it.
    let mut card_phone = Phone::connect(&s, "alice-cards", "alice", None).await;
    let face = "AAAA".repeat(50_000);
    for i in 0..30 {
        card_phone
            .publish_acked(
                "owntracks/alice/cards/info",
                json!({ "_type": "card", "name": format!("Alice {i}"), "face": face })
                    .to_string()
                    .into_bytes(),
            )
            .await;
    }

    let started = Instant::now();
    let mut publishers = Vec::new();
    for p in 0..PHONES {
        let mut phone = Phone::connect(&s, &format!("alice-{p}"), "alice", None).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..PER_PHONE {
                phone
                    .publish_acked(
                        &format!("owntracks/alice/phone{p}"),
                        location(50.0 + i as f64 / 1000.0, 1_764_000_000 + i),
                    )
                    .await;
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    println!(
        "{} QoS 1 points acknowledged in {:?} with a stalled live viewer",
        PHONES as i64 * PER_PHONE,
        started.elapsed()
    );
    for p in 0..PHONES {
        let device = s
            .running
            .store()
            .find_owntracks_device(alice_id(&s).await, &format!("phone{p}"))
            .await
            .unwrap()
            .unwrap();
        let stored = s
            .running
            .store()
            .location_window(device.id, 0, i64::MAX, 10_000)
            .await
            .unwrap();
        assert_eq!(stored.len() as i64, PER_PHONE, "phone{p}");
    }

    // Now it reads: the snapshot, what fitted in the buffers, then a resync.
    let snapshot = next_json(&mut stalled).await;
    assert_eq!(snapshot["type"], "snapshot");
    let (resync, before) = until(&mut stalled, |m| m["type"] == "resync").await;
    let missed = resync["missed"].as_u64().unwrap();
    println!(
        "stalled viewer: {} messages delivered, then a resync after {missed} missed",
        before.len()
    );
    assert!(missed > 0);
    // And it is live again after the resync.
    let mut phone = Phone::connect(&s, "alice-again", "alice", None).await;
    phone
        .publish_acked("owntracks/alice/phone0", location(51.0, 1_764_100_000))
        .await;
    let (m, _) = until(&mut stalled, |m| {
        m["type"] == "location" && m["tst"] == 1_764_100_000
    })
    .await;
    assert_eq!(m["lat"], 51.0);
    s.stop().await;
}

async fn alice_id(s: &TestServer) -> i64 {
    s.running.store().find_user("alice").await.unwrap().id
}

#[tokio::test]
async fn shutdown_completes_with_connected_viewers() {
    let s = TestServer::start().await;
    let cookie = session_cookie(&s, "admin", crate::support::ADMIN_PASSWORD).await;
    let mut reading = connect(&s, ("cookie", &cookie)).await;
    assert_eq!(next_json(&mut reading).await["type"], "snapshot");
    // The alarm's status follows the snapshot (next_json skips it; here every frame counts).
    match tokio::time::timeout(WAIT, reading.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => assert!(text.contains(r#""type":"alarm""#), "{text}"),
        other => panic!("no alarm status: {other:?}"),
    }
    // One that never reads, too.
    let _idle = connect(&s, ("cookie", &cookie)).await;
    tokio::time::timeout(WAIT, s.stop())
        .await
        .expect("shutdown hung on open WebSockets");
    // The reading viewer was told the server is going away.
    match tokio::time::timeout(WAIT, reading.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(u16::from(frame.code), 1001, "{frame:?}")
        }
        Ok(None) | Ok(Some(Err(_))) => panic!("closed without a close frame"),
        other => panic!("not closed: {other:?}"),
    }
    let _ = reading.send(Message::Close(None)).await;
}

#[tokio::test]
async fn http_mode_posts_reach_the_feed_once_stored() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "alice").await;
    let cookie = session_cookie(&s, "alice", &password("alice")).await;
    let mut alice = connect(&s, ("cookie", &cookie)).await;
    assert_eq!(next_json(&mut alice).await["type"], "snapshot");
    let post = |body: Vec<u8>| {
        client()
            .post(s.url("/pub"))
            .basic_auth("alice", Some(password("alice")))
            .header("X-Limit-D", "tablet")
            .body(body)
            .send()
    };
    // Refused: never on the feed.
    let bad = post(br#"{"_type":"location","lat":123.0,"lon":13.4,"tst":1764000000}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let ok = post(location(52.4, 1_764_000_010)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let online = next_json(&mut alice).await;
    assert_eq!(online["type"], "status", "{online}");
    assert_eq!(online["device"], "tablet");
    let m = next_json(&mut alice).await;
    assert!(is(&m, "location", "alice"), "{m}");
    assert_eq!(m["device"], "tablet");
    assert_eq!(m["lat"], 52.4);
    // A resend is stored once and shown once: the next message is the next point.
    assert_eq!(
        post(location(52.4, 1_764_000_010)).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(location(52.5, 1_764_000_011)).await.unwrap().status(),
        200
    );
    let m = next_json(&mut alice).await;
    assert_eq!(m["tst"], 1_764_000_011, "{m}");
    // An LWT marks it offline; a location online; a resent LWT offline again (the store does).
    let lwt = br#"{"_type":"lwt","tst":1764000020}"#;
    assert_eq!(post(lwt.to_vec()).await.unwrap().status(), 200);
    let m = next_json(&mut alice).await;
    assert_eq!(
        (&m["type"], &m["online"]),
        (&json!("status"), &json!(false)),
        "{m}"
    );
    assert_eq!(
        post(location(52.6, 1_764_000_021)).await.unwrap().status(),
        200
    );
    let m = next_json(&mut alice).await;
    assert_eq!(
        (&m["type"], &m["online"]),
        (&json!("status"), &json!(true)),
        "{m}"
    );
    assert_eq!(next_json(&mut alice).await["tst"], 1_764_000_021);
    assert_eq!(post(lwt.to_vec()).await.unwrap().status(), 200);
    let m = next_json(&mut alice).await;
    assert_eq!(
        (&m["type"], &m["online"]),
        (&json!("status"), &json!(false)),
        "{m}"
    );
    s.stop().await;
}

/// Reads until the server closes the socket; returns the close frame's code and reason.
async fn closed(socket: &mut Socket, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the socket was not closed with a frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_viewer_is_closed_once_its_sign_in_ends() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    create_user(&s, &admin, "alice").await;

    // Signed in with a session cookie, then signed out from that session.
    let cookie = session_cookie(&s, "alice", &password("alice")).await;
    let mut by_cookie = connect(&s, ("cookie", &cookie)).await;
    assert_eq!(next_json(&mut by_cookie).await["type"], "snapshot");
    // A second viewer whose session stays: it must stay open.
    let other_cookie = session_cookie(&s, "alice", &password("alice")).await;
    let mut staying = connect(&s, ("cookie", &other_cookie)).await;
    assert_eq!(next_json(&mut staying).await["type"], "snapshot");
    let r = client()
        .post(s.url("/api/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (code, reason) = closed(&mut by_cookie, Duration::from_secs(12)).await;
    assert_eq!((code, reason.as_str()), (1008, "signed out"));

    // Signed in with an API token, then the token is revoked.
    let alice_web = client();
    let r = alice_web
        .post(s.url("/api/tokens"))
        .header("cookie", &other_cookie)
        .json(&json!({ "name": "map on the wall" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["info"]["id"].as_i64().unwrap();
    let mut by_token = connect(&s, ("authorization", &format!("Bearer {token}"))).await;
    assert_eq!(next_json(&mut by_token).await["type"], "snapshot");
    let r = alice_web
        .delete(s.url(&format!("/api/tokens/{id}")))
        .header("cookie", &other_cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (code, _) = closed(&mut by_token, Duration::from_secs(12)).await;
    assert_eq!(code, 1008);

    // The viewer whose session still holds got no close: it still answers with live data.
    let mut phone = Phone::connect(&s, "alice-phone", "alice", None).await;
    phone
        .publish_acked("owntracks/alice/phone", location(52.3, 1_764_000_100))
        .await;
    let (m, _) = until(&mut staying, |m| is(m, "location", "alice")).await;
    assert_eq!(m["lat"], 52.3, "{m}");
    s.stop().await;
}
