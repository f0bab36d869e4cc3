//! The seam services attach through: a consumer wired with `porchlight_server::start_with`
//! is in place before the broker serves its first MQTT client.

use std::time::Duration;

use porchlight_server::{Config, LoadOptions, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::raw_mqtt::connect_and_publish;
use crate::support::ADMIN_PASSWORD;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_wired_at_start_sees_a_publish_made_the_moment_the_port_opens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        data_dir: Some(dir.path().to_owned()),
        http_port: Some(0),
        mqtt_port: Some(i32::from(port)),
        // A free port for TLS too: the default 8883 may be taken on a test machine.
        mqtts_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..LoadOptions::default()
    };
    let env = [(
        "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
        ADMIN_PASSWORD.to_owned(),
    )];
    let config = Config::load_from(&options, env).unwrap();

    // A client that connects and publishes as soon as the port accepts, started first; it
    // says when its PUBLISH is on the wire.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let early = tokio::spawn(async move {
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
                let bytes = connect_and_publish("early", "admin", ADMIN_PASSWORD, "owntracks/x/y");
                s.write_all(&bytes).await.unwrap();
                sent_tx.send(()).unwrap();
                let mut connack = [0u8; 4];
                s.read_exact(&mut connack).await.unwrap();
                return (connack[3], s);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    let mut inbound = None;
    let running = porchlight_server::start_with(config, |wiring| {
        // The port is bound: the client's PUBLISH is sent before this service attaches,
        // and still reaches it, because nobody has been served yet.
        sent_rx.recv_timeout(WAIT).unwrap();
        inbound = wiring.bus.as_ref().map(|bus| bus.consume("owntracks/#", 8));
    })
    .await
    .unwrap();
    let mut inbound = inbound.expect("the broker is enabled");
    let (code, _socket) = timeout(WAIT, early).await.unwrap().unwrap();
    assert_eq!(code, 0, "CONNACK");
    let got = timeout(WAIT, inbound.recv()).await.unwrap().unwrap();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..], got.origin),
        ("owntracks/x/y", &b"first"[..], Origin::Client)
    );
    let identity = got.identity.unwrap();
    assert_eq!(identity.username, "admin");
    assert_eq!(identity.device_id, None);
    running.shutdown().await;
}
