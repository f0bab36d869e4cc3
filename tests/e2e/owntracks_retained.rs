//! After a restart of the real `porchlight serve`, a new subscriber to `owntracks/#` gets each
//! device it may see with its last location and card at once, although the phone published
//! them without retain (the server retains them from the store at start), and never sees
//! another user's.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::crash::{mqtt_port, serve};
use crate::support::{ADMIN_PASSWORD, client};

const WAIT: Duration = Duration::from_secs(10);

fn http_url(dir: &Path) -> String {
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runtime.json")).unwrap()).unwrap();
    rt["http_url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

/// The server process, killed if a failing assertion unwinds past it (no orphan servers).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SIGTERM and wait: a clean stop, as a service manager does it.
fn stop(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

async fn connect(
    port: &str,
    id: &str,
    user: &str,
    pass: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port.parse().unwrap());
    o.set_credentials(user, pass);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(p) = event
                && tx.send(p).is_err()
            {
                return;
            }
        }
    });
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(Packet::ConnAck(_))) => {}
        other => panic!("{user} could not connect: {other:?}"),
    }
    (client, rx)
}

/// Publishes at QoS 1 and waits for the PUBACK.
async fn publish_acked(
    client: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<Packet>,
    topic: &str,
    payload: String,
    retain: bool,
) {
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.into_bytes())
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Packet::PubAck(_))) => return,
            Ok(Some(_)) => {}
            other => panic!("no PUBACK for {topic}: {other:?}"),
        }
    }
}

/// Subscribes to `filter` and returns the retained messages that arrive with the
/// subscription, by topic. Retained messages follow the SUBACK at once; a quiet second after
/// the SUBACK ends the collection.
async fn retained_for(
    port: &str,
    (user, pass): (&str, &str),
    filter: &str,
) -> Vec<(String, Value)> {
    let (client, mut rx) = connect(port, &format!("{user}-viewer"), user, pass).await;
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let mut got = Vec::new();
    let mut subscribed = false;
    loop {
        let wait = if subscribed {
            Duration::from_secs(1)
        } else {
            WAIT
        };
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(Packet::SubAck(_))) => subscribed = true,
            Ok(Some(Packet::Publish(p))) => {
                assert!(p.retain, "only retained messages are expected: {p:?}");
                got.push((p.topic.clone(), serde_json::from_slice(&p.payload).unwrap()));
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the connection ended"),
            Err(_) if subscribed => break,
            Err(_) => panic!("no SUBACK"),
        }
    }
    client.disconnect().await.unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

fn location(tst: i64) -> String {
    json!({"_type": "location", "lat": 52.37, "lon": 4.89, "tst": tst, "tid": "al"}).to_string()
}

#[test]
fn a_new_subscriber_after_a_restart_gets_the_last_location_and_card_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server(serve(dir.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = http_url(dir.path());
        let admin = client();
        let r = admin
            .post(format!("{url}/api/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for user in ["alice", "carol"] {
            let r = admin
                .post(format!("{url}/api/users"))
                .json(&json!({"username": user, "role": "user", "password": format!("{user} password 1")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let port = mqtt_port(dir.path());
        let (phone, mut rx) = connect(&port, "alice-phone", "alice", "alice password 1").await;
        // Not retained, as phones may publish. `tablet`: a newer point without retain, then an
        // older one with retain (a buffered point sent late): the newer must win.
        for (topic, payload, retain) in [
            ("owntracks/alice/phone", location(1_764_500_000), false),
            (
                "owntracks/alice/phone/info",
                json!({"_type": "card", "name": "Alice"}).to_string(),
                false,
            ),
            ("owntracks/alice/tablet", location(1_764_500_200), false),
            ("owntracks/alice/tablet", location(1_764_500_100), true),
        ] {
            publish_acked(&phone, &mut rx, topic, payload, retain).await;
        }
        phone.disconnect().await.unwrap();
    });
    stop(&mut server.0);

    let mut server = Server(serve(dir.path()));
    let port = mqtt_port(dir.path());
    rt.block_on(async {
        // The admin may read all of `owntracks/#`, alice her own `owntracks/alice/#`.
        for (login, filter) in [
            (("admin", ADMIN_PASSWORD), "owntracks/#"),
            (("alice", "alice password 1"), "owntracks/alice/#"),
        ] {
            let got = retained_for(&port, login, filter).await;
            let summary: Vec<(&str, &str, Option<i64>, Option<&str>)> = got
                .iter()
                .map(|(topic, v)| {
                    (
                        topic.as_str(),
                        v["_type"].as_str().unwrap(),
                        v["tst"].as_i64(),
                        v["name"].as_str(),
                    )
                })
                .collect();
            assert_eq!(
                summary,
                vec![
                    (
                        "owntracks/alice/phone",
                        "location",
                        Some(1_764_500_000),
                        None
                    ),
                    ("owntracks/alice/phone/info", "card", None, Some("Alice")),
                    (
                        "owntracks/alice/tablet",
                        "location",
                        Some(1_764_500_200),
                        None
                    ),
                    // The tablet appeared after alice's card: it took her card.
                    ("owntracks/alice/tablet/info", "card", None, Some("Alice")),
                ],
                "{login:?} on {filter}"
            );
            // The location is what the phone sent.
            assert_eq!(got[0].1["tid"], "al");
        }

        // carol is no friend of alice's: the broker's ACL keeps alice's retained data from her.
        for filter in ["owntracks/alice/#", "owntracks/#", "owntracks/carol/#"] {
            let got = retained_for(&port, ("carol", "carol password 1"), filter).await;
            assert!(got.is_empty(), "carol got {got:?} on {filter}");
        }
    });
    stop(&mut server.0);
}
