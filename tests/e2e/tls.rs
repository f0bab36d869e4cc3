//! MQTT over TLS with client certificates, configured through `config.toml` (`[mqtt.tls]`):
//! a certificate from the configured CA logs its CN in as that user; others are refused.

use std::path::Path;
use std::process::Command;

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;

use crate::support::{ADMIN_PASSWORD, TestServer};

/// A throwaway PKI made with the openssl CLI: a CA, a server certificate for 127.0.0.1, a
/// client certificate for `alice` from that CA, and a self-signed `alice` impostor.
pub(crate) fn make_pki(dir: &Path) {
    let script = r#"
set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=Porchlight Test CA"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl req $ec -keyout server.key -out server.csr -subj "/CN=localhost"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
openssl req $ec -keyout alice.key -out alice.csr -subj "/CN=alice"
openssl x509 -req -in alice.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out alice.pem -days 2 -extfile client.ext
openssl req -x509 $ec -keyout impostor.key -out impostor.pem -days 2 -subj "/CN=alice"
"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn publish_over_tls(dir: &Path, port: u16, cert: &str, message: &str) -> bool {
    tokio::process::Command::new("mosquitto_pub")
        .current_dir(dir)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            "ca.pem",
        ])
        .args([
            "--cert",
            &format!("{cert}.pem"),
            "--key",
            &format!("{cert}.key"),
        ])
        .args([
            "-i",
            &format!("tls-{cert}"),
            "-t",
            "owntracks/alice/phone",
            "-m",
            message,
        ])
        .output()
        .await
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn client_certificates_from_our_ca_log_in_as_their_cn() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let p = |f: &str| pki.path().join(f).display().to_string();
    let config = format!(
        "[mqtt.tls]\nport = 0\ncert = {:?}\nkey = {:?}\nca = {:?}\nrequire_client_cert = true\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let s = TestServer::start_with_config(Some(0), &config).await;
    let tls_port = s.running.mqtt_tls_addr.expect("TLS listener").port();
    let rt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s._dir.path().join("runtime.json")).unwrap())
            .unwrap();
    assert_eq!(rt["mqtt_tls_port"], tls_port);
    s.running
        .store()
        .create_user(
            "alice",
            Role::User,
            &Secret::new("alice password 1"),
            std::time::SystemTime::now(),
        )
        .await
        .unwrap();

    // A watcher on the plain port sees what arrives.
    let addr = s.mqtt_addr();
    let mut o = rumqttc::MqttOptions::new("watcher", addr.ip().to_string(), addr.port());
    o.set_credentials("admin", ADMIN_PASSWORD);
    let (watcher, mut eventloop) = rumqttc::AsyncClient::new(o, 10);
    watcher
        .subscribe("owntracks/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            let text = match event {
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    String::from_utf8_lossy(&p.payload).into_owned()
                }
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => "subscribed".into(),
                _ => continue,
            };
            let _ = tx.send(text);
        }
    });
    let wait = std::time::Duration::from_secs(10);
    assert_eq!(
        tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .as_deref(),
        Some("subscribed")
    );

    assert!(publish_over_tls(pki.path(), tls_port, "alice", "from alice's certificate").await);
    let got = tokio::time::timeout(wait, rx.recv()).await.unwrap();
    assert_eq!(got.as_deref(), Some("from alice's certificate"));

    // A self-signed certificate with the same CN is not from our CA: refused.
    assert!(!publish_over_tls(pki.path(), tls_port, "impostor", "forged").await);
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await;
    assert!(
        nothing.is_err(),
        "the impostor's message arrived: {nothing:?}"
    );
    s.stop().await;
}
