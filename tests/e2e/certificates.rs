//! Client certificates from the built-in CA (issue 15, ADR 0017): `POST/GET/DELETE
//! /api/certificates`, the PEM bundle and the legacy PKCS#12 (`.otrp`) OwnTracks reads, who
//! may issue and revoke what, and the audit rows.

use std::path::Path;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, eventually, openssl};

fn password(user: &str) -> String {
    format!("{user} password 1")
}

async fn add_user(s: &TestServer, admin: &reqwest::Client, user: &str) -> reqwest::Client {
    let r = s
        .call(
            admin,
            Method::POST,
            "/api/users",
            Some(&json!({ "username": user, "role": "user", "password": password(user) })),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    s.signed_in(user, &password(user)).await
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_user_gets_a_client_certificate_with_a_legacy_pkcs12_and_can_revoke_it() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let alice = add_user(&s, &admin, "alice").await;
    let bob = add_user(&s, &admin, "bob").await;

    let r = s
        .call(
            &alice,
            Method::POST,
            "/api/certificates",
            Some(&json!({ "device": "phone" })),
        )
        .await;
    assert_eq!(r.status(), 201);
    let issued = json_of(r).await;
    let serial = issued["certificate"]["serial"].as_str().unwrap().to_owned();
    assert_eq!(issued["certificate"]["subject"], "alice/phone");
    assert_eq!(issued["certificate"]["user"], "alice");
    assert_eq!(issued["certificate"]["status"], "active");
    assert_eq!(issued["p12_filename"], "alice-phone.otrp");
    // Where it logs in: the certificate listener.
    assert_eq!(
        issued["mqtt_port"],
        s.running
            .mqtt_cert_addr
            .expect("a certificate listener")
            .port(),
        "{issued}"
    );
    let key_pem = issued["key_pem"].as_str().unwrap();
    let bundle = issued["pem_bundle"].as_str().unwrap();
    assert!(bundle.contains(issued["cert_pem"].as_str().unwrap()));
    assert!(bundle.contains(key_pem));
    assert!(bundle.contains(issued["ca_pem"].as_str().unwrap()));

    // openssl: the certificate verifies against the CA, its serial is the one listed, and
    // the .otrp opens in legacy mode with the password given.
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("ca.pem"), issued["ca_pem"].as_str().unwrap()).unwrap();
    std::fs::write(w.join("c.pem"), issued["cert_pem"].as_str().unwrap()).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "c.pem",
        ],
        w,
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(&["x509", "-in", "c.pem", "-noout", "-serial"], w);
    assert!(ok, "{text}");
    assert_eq!(
        text.trim()
            .trim_start_matches("serial=")
            .trim_start_matches('0')
            .to_ascii_lowercase(),
        serial
    );
    let p12 = base64::engine::general_purpose::STANDARD
        .decode(issued["p12_base64"].as_str().unwrap())
        .unwrap();
    std::fs::write(w.join("alice-phone.otrp"), p12).unwrap();
    let pass = format!("pass:{}", issued["p12_password"].as_str().unwrap());
    let (ok, text) = openssl(
        &[
            "pkcs12",
            "-info",
            "-legacy",
            "-nodes",
            "-passin",
            &pass,
            "-in",
            "alice-phone.otrp",
        ],
        w,
    );
    assert!(ok, "{text}");
    assert!(text.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{text}");
    assert!(text.contains("MAC: sha1"), "{text}");

    // Users may not issue for others; admins may.
    let r = s
        .call(
            &alice,
            Method::POST,
            "/api/certificates",
            Some(&json!({ "user": "bob", "device": "phone" })),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = s
        .call(
            &alice,
            Method::POST,
            "/api/certificates",
            Some(&json!({ "device": "a/b" })),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = s
        .call(
            &admin,
            Method::POST,
            "/api/certificates",
            Some(&json!({ "user": "bob", "device": "tablet" })),
        )
        .await;
    assert_eq!(r.status(), 201);
    let bobs = json_of(r).await["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_owned();

    // Lists: a user sees their own, an admin all.
    let mine = json_of(s.call(&alice, Method::GET, "/api/certificates", None).await).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["serial"], serial.as_str());
    let all = json_of(s.call(&admin, Method::GET, "/api/certificates", None).await).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // Alice cannot revoke Bob's; she can revoke hers, and it shows as revoked.
    let r = s
        .call(
            &alice,
            Method::DELETE,
            &format!("/api/certificates/{bobs}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = s
        .call(
            &alice,
            Method::DELETE,
            &format!("/api/certificates/{serial}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let mine = json_of(s.call(&alice, Method::GET, "/api/certificates", None).await).await;
    assert_eq!(mine[0]["status"], "revoked", "{mine}");
    assert!(mine[0]["revoked_at"].is_i64(), "{mine}");
    let theirs = json_of(s.call(&bob, Method::GET, "/api/certificates", None).await).await;
    assert_eq!(theirs[0]["status"], "active", "{theirs}");

    // Audit rows for issue and revoke, naming the serial, never the key or password.
    let p12_password = issued["p12_password"].as_str().unwrap().to_owned();
    let rows = eventually(|| {
        let admin = admin.clone();
        let url = s.url("/api/audit");
        let serial = serial.clone();
        async move {
            let rows: Value = admin.get(url).send().await.ok()?.json().await.ok()?;
            let has = |kind: &str| {
                rows.as_array().unwrap().iter().any(|r| {
                    r["kind"] == kind
                        && r["username"] == "alice"
                        && r["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains(&serial) && d.contains("alice/phone"))
                })
            };
            (has("certificate_issued") && has("certificate_revoked")).then_some(rows)
        }
    })
    .await;
    let text = rows.to_string();
    assert!(!text.contains(&p12_password));
    assert!(!text.contains("PRIVATE KEY"));
    s.stop().await;
}

/// `mosquitto_pub` on the certificate port with `cert`/`key` files in `dir` (or none), no
/// username or password; whether it succeeded, and its stderr.
async fn cert_pub(dir: &Path, port: u16, cert: Option<&str>, id: &str) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("mosquitto_pub");
    cmd.current_dir(dir).args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cafile",
        "ca.pem",
    ]);
    if let Some(cert) = cert {
        cmd.args([
            "--cert",
            &format!("{cert}.pem"),
            "--key",
            &format!("{cert}.key"),
        ]);
    }
    let out = cmd
        .args(["-i", id, "-t", "owntracks/alice/phone", "-q", "1", "-r"])
        .args([
            "-m",
            r#"{"_type":"location","lat":52.1,"lon":5.1,"tst":1700000000}"#,
        ])
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn audit_rows(s: &TestServer, admin: &reqwest::Client) -> Vec<Value> {
    json_of(
        s.call(admin, Method::GET, "/api/audit?limit=1000", None)
            .await,
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_on_the_cert_port_until_revoked() {
    let s = TestServer::start().await;
    let port = s
        .running
        .mqtt_cert_addr
        .expect("a certificate listener")
        .port();
    assert_ne!(Some(port), s.running.mqtt_tls_addr.map(|a| a.port()));
    let admin = s.admin().await;
    let alice = add_user(&s, &admin, "alice").await;
    let issued = json_of(
        s.call(
            &alice,
            Method::POST,
            "/api/certificates",
            Some(&json!({ "device": "phone" })),
        )
        .await,
    )
    .await;
    let serial = issued["certificate"]["serial"].as_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("ca.pem"), issued["ca_pem"].as_str().unwrap()).unwrap();
    std::fs::write(w.join("alice.pem"), issued["cert_pem"].as_str().unwrap()).unwrap();
    std::fs::write(w.join("alice.key"), issued["key_pem"].as_str().unwrap()).unwrap();

    // A certificate from another CA (trusted by nobody here), an expired one from ours, and
    // none at all: refused at the TLS handshake.
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let other = porchlight_ca::Authority::generate("Other CA", now, 10 * day).unwrap();
    let who = porchlight_ca::ClientSubject {
        user: "alice".into(),
        device: "phone".into(),
    };
    let stranger = other.issue_client(&who, now, day).unwrap();
    std::fs::write(w.join("stranger.pem"), &stranger.cert_pem).unwrap();
    std::fs::write(w.join("stranger.key"), &*stranger.key_pem).unwrap();
    let (expired, _, _) = s
        .running
        .ca()
        .issue_client("alice", "old", now - 3 * day, day)
        .await
        .unwrap();
    std::fs::write(w.join("expired.pem"), &expired.cert_pem).unwrap();
    std::fs::write(w.join("expired.key"), &*expired.key_pem).unwrap();
    for (cert, id) in [
        (Some("stranger"), "c-stranger"),
        (Some("expired"), "c-expired"),
        (None, "c-none"),
    ] {
        let (ok, err) = cert_pub(w, port, cert, id).await;
        assert!(!ok, "{cert:?} was accepted: {err}");
    }
    // The handshake refusals are audited with the reason and the client's own address.
    let refusals = eventually(|| async {
        let rows: Vec<Value> = audit_rows(&s, &admin)
            .await
            .into_iter()
            .filter(|r| r["kind"] == "mqtt_tls_refused")
            .collect();
        (rows.len() >= 3).then_some(rows)
    })
    .await;
    for reason in [
        "client certificate not issued by this hub's CA",
        "client certificate expired",
        "no client certificate",
    ] {
        let row = refusals
            .iter()
            .find(|r| r["reason"] == reason)
            .unwrap_or_else(|| panic!("no audit row {reason:?} in {refusals:?}"));
        assert_eq!(row["detail"], format!("port {port}"), "{row}");
        assert!(
            row["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{row}"
        );
    }

    // Signed by our CA but not recorded by the hub (so neither listed nor revocable):
    // through TLS, refused by the hook, audited with the reason.
    let unrecorded = s
        .running
        .ca()
        .active()
        .issue_client(&who, now, day)
        .unwrap();
    std::fs::write(w.join("unrecorded.pem"), &unrecorded.cert_pem).unwrap();
    std::fs::write(w.join("unrecorded.key"), &*unrecorded.key_pem).unwrap();
    let (ok, err) = cert_pub(w, port, Some("unrecorded"), "c-unrecorded").await;
    assert!(!ok, "an unrecorded certificate was accepted: {err}");
    eventually(|| async {
        audit_rows(&s, &admin)
            .await
            .iter()
            .any(|r| {
                r["kind"] == "mqtt_connect"
                    && r["client_id"] == "c-unrecorded"
                    && r["code"] == 5
                    && r["reason"] == "client certificate not issued by this hub"
            })
            .then_some(())
    })
    .await;

    // Hers: no password, a message goes through; mosquitto_sub gets it back.
    let (ok, err) = cert_pub(w, port, Some("alice"), "c-alice").await;
    assert!(ok, "{err}");
    let sub = tokio::process::Command::new("mosquitto_sub")
        .current_dir(w)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            "ca.pem",
        ])
        .args(["--cert", "alice.pem", "--key", "alice.key"])
        .args([
            "-i",
            "c-alice-sub",
            "-t",
            "owntracks/alice/phone",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        sub.status.success(),
        "{}",
        String::from_utf8_lossy(&sub.stderr)
    );
    assert!(String::from_utf8_lossy(&sub.stdout).contains("\"lat\":52.1"));
    // Its last use is noted.
    eventually(|| async {
        let mine = json_of(s.call(&alice, Method::GET, "/api/certificates", None).await).await;
        mine.as_array()
            .unwrap()
            .iter()
            .any(|c| c["serial"] == serial.as_str() && c["last_used_at"].is_i64())
            .then_some(())
    })
    .await;

    // rumqttc with the certificate, no credentials: connected as alice's device.
    let mut o = rumqttc::MqttOptions::new("c-alice-rumqttc", "127.0.0.1", port);
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca: issued["ca_pem"].as_str().unwrap().as_bytes().to_vec(),
            alpn: None,
            client_auth: Some((
                issued["cert_pem"].as_str().unwrap().as_bytes().to_vec(),
                issued["key_pem"].as_str().unwrap().as_bytes().to_vec(),
            )),
        },
    ));
    let (client, mut events) = rumqttc::AsyncClient::new(o, 10);
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
                    return;
                }
                Ok(_) => {}
                Err(e) => panic!("rumqttc with a client certificate: {e}"),
            }
        }
    })
    .await
    .unwrap();
    let clients = eventually(|| async {
        let clients = json_of(
            s.call(&admin, Method::GET, "/api/settings/mqtt/clients", None)
                .await,
        )
        .await;
        clients
            .to_string()
            .contains("c-alice-rumqttc")
            .then_some(clients)
    })
    .await;
    assert!(clients.to_string().contains("certificate"), "{clients}");

    // Revoking closes the live session, and the next connect is refused, audited.
    let r = s
        .call(
            &alice,
            Method::DELETE,
            &format!("/api/certificates/{serial}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the revoked certificate's session was not closed");
    drop(client);
    let (ok, _) = cert_pub(w, port, Some("alice"), "c-alice-again").await;
    assert!(!ok, "a revoked certificate logged in");
    let rows = eventually(|| async {
        let rows = audit_rows(&s, &admin).await;
        rows.iter()
            .any(|r| {
                r["kind"] == "mqtt_connect"
                    && r["client_id"] == "c-alice-again"
                    && r["reason"] == "client certificate revoked"
            })
            .then_some(rows)
    })
    .await;
    let text = serde_json::to_string(&rows).unwrap();
    assert!(!text.contains("PRIVATE KEY"));
    assert!(!text.contains(issued["p12_password"].as_str().unwrap()));
    s.stop().await;
}
