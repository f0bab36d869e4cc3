//! Client certificates from the built-in CA (issue 15, ADR 0017): `POST/GET/DELETE
//! /api/certificates`, the PEM bundle and the legacy PKCS#12 (`.otrp`) OwnTracks reads, who
//! may issue and revoke what, and the audit rows.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, eventually};

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

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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
