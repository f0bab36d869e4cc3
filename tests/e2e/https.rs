//! HTTPS for the web UI and API (`[http] tls`, issue 15, ADR 0017 "HTTPS"): TLS and plain HTTP
//! on the one HTTP port, the certificate from the built-in CA, the session cookie `Secure`,
//! plain requests redirected (308), HSTS over HTTPS only. Checked with reqwest trusting our CA
//! alone and with `openssl s_client` (run with tokio's `Command`: the server shares the test's
//! runtime thread).

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::process::Command;

use serde_json::json;

use crate::support::{ADMIN_PASSWORD, TestServer};

/// A name only the tests resolve (to 127.0.0.1), given to the certificate by `[ca]
/// server_names`: a host that is not loopback, so the server redirects and sends HSTS.
const NAME: &str = "porchlight.test";

async fn https_server() -> TestServer {
    TestServer::start_with_config(
        Some(0),
        &format!("[http]\ntls = true\n[ca]\nserver_names = [\"{NAME}\"]\n"),
    )
    .await
}

/// The CA certificate, fetched over plain HTTP on loopback (served there as before).
async fn ca_pem(s: &TestServer) -> String {
    let r = reqwest::get(s.url("/api/ca")).await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// A client whose only trusted root is `ca_pem`, resolving [`NAME`] to the server, following no
/// redirect, with a cookie jar.
fn trusting(ca_pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(NAME, addr)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_client_trusting_only_our_ca_loads_the_ui_and_signs_in_with_a_secure_cookie() {
    let s = https_server().await;
    assert!(s.running.https);
    let addr = s.running.http_addr;
    let client = trusting(&ca_pem(&s).await, addr);
    let base = format!("https://{NAME}:{}", addr.port());

    let index = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(
        index.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(index.text().await.unwrap().contains("<title>Porchlight"));

    let login = client
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = set_cookie(&login);
    for attribute in ["; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let me = client.get(format!("{base}/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert!(
        set_cookie(&me).contains("; Secure"),
        "the sliding cookie too"
    );
    assert_eq!(
        me.json::<serde_json::Value>().await.unwrap()["username"],
        "admin"
    );

    // Over loopback by name (the desktop window's way): HTTPS works, without HSTS, which would
    // force every local port of the machine to https.
    let local = client
        .get(format!("https://localhost:{}/health", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    assert!(local.headers().get("strict-transport-security").is_none());
    s.stop().await;
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_on_the_same_port_except_health_and_loopback() {
    let s = https_server().await;
    let addr = s.running.http_addr;
    let port = addr.port();
    let ca = ca_pem(&s).await;
    let plain = reqwest::Client::builder()
        .resolve(NAME, addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let r = plain
        .get(format!("http://{NAME}:{port}/devices?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://{NAME}:{port}/devices?x=1").as_str()
    );
    assert!(r.headers().get("strict-transport-security").is_none());

    // A login over plain HTTP never reaches the password check.
    let r = plain
        .post(format!("http://{NAME}:{port}/api/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert!(r.headers().get("set-cookie").is_none());

    // Monitoring keeps working over plain HTTP; so does loopback (the desktop window).
    let r = plain
        .get(format!("http://{NAME}:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = plain.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());
    let login = plain
        .post(s.url("/api/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(
        !set_cookie(&login).contains("Secure"),
        "no Secure cookie over plain HTTP"
    );

    // OwnTracks HTTP mode: 308 keeps the method and body, so a client that follows it (curl -L,
    // iOS) posts the point again over HTTPS, where it is stored.
    let r = plain
        .post(format!("http://{NAME}:{port}/pub"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("X-Limit-D", "phone")
        .body(json!({"_type": "location", "lat": 52.1, "lon": 4.9, "tst": 1764400000}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://{NAME}:{port}/pub").as_str()
    );
    let following = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve(NAME, addr)
        .build()
        .unwrap();
    let r = following
        .post(format!("http://{NAME}:{port}/pub"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("X-Limit-D", "phone")
        .header("content-type", "application/json")
        .body(json!({"_type": "location", "lat": 52.1, "lon": 4.9, "tst": 1764400000}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().scheme(), "https");
    let store = s.running.store();
    let admin = store.find_user("admin").await.unwrap();
    let device = store
        .find_owntracks_device(admin.id, "phone")
        .await
        .unwrap()
        .expect("the point posted over HTTPS was stored");
    assert!(
        store
            .location_raw(device.id, 1764400000)
            .await
            .unwrap()
            .is_some()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_without_our_ca_fails_the_handshake_and_plain_servers_stay_plain() {
    let s = https_server().await;
    let addr = s.running.http_addr;
    let stranger = reqwest::Client::builder()
        .resolve(NAME, addr)
        .build()
        .unwrap();
    let err = stranger
        .get(format!("https://{NAME}:{}/", addr.port()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    s.stop().await;

    // Without `[http] tls`: no TLS, no redirect, no Secure cookie.
    let s = TestServer::start().await;
    assert!(!s.running.https);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.url("/"))
        .header("host", format!("{NAME}:{}", s.running.http_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let login = crate::support::client()
        .post(s.url("/api/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(!set_cookie(&login).contains("Secure"));
    s.stop().await;
}

#[tokio::test]
async fn openssl_verifies_the_https_chain_and_its_names() {
    let s = https_server().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem(&s).await).unwrap();
    let connect = format!("127.0.0.1:{}", s.running.http_addr.port());
    for (name, check) in [
        ("localhost", ["-verify_hostname", "localhost"]),
        (NAME, ["-verify_hostname", NAME]),
        ("localhost", ["-verify_ip", "127.0.0.1"]),
    ] {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &connect, "-servername", name])
            .args(["-verify_return_error", "-CAfile"])
            .arg(&ca_file)
            .args(check)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{check:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{check:?}: {text}"
        );
    }
    // A name the certificate does not carry is refused.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&ca_file)
        .args(["-verify_hostname", "elsewhere.example"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    s.stop().await;
}

#[tokio::test]
async fn with_https_on_onboarding_sends_phones_to_tls_and_names_the_ca_to_trust() {
    let s = https_server().await;
    let addr = s.running.http_addr;
    let port = addr.port();
    let tls_port = s
        .running
        .mqtt_tls_addr
        .expect("the MQTT TLS listener")
        .port();
    let ca = ca_pem(&s).await;
    let client = trusting(&ca, addr);
    let base = format!("https://{NAME}:{port}");
    let login = client
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let created: serde_json::Value = client
        .post(format!("{base}/api/devices"))
        .json(&json!({"name": "phone"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let otrc = &created["otrc"];
    assert_eq!(otrc["mode"], 0, "MQTT");
    assert_eq!(otrc["host"], NAME);
    assert_eq!(otrc["port"], tls_port);
    assert_eq!(otrc["tls"], true);
    let ca_url = created["ca_url"].as_str().expect("where to get the CA");
    assert_eq!(ca_url, format!("{base}/api/ca"));
    let downloaded = client
        .get(ca_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(downloaded, ca);

    // HTTP mode: the https:// URL, where the device key posts a point.
    let created: serde_json::Value = client
        .post(format!("{base}/api/devices"))
        .json(&json!({"name": "tablet", "mode": "http"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = created["otrc"]["url"].as_str().unwrap();
    assert_eq!(url, format!("{base}/pub"));
    assert_eq!(created["ca_url"], format!("{base}/api/ca").as_str());
    let r = client
        .post(url)
        .basic_auth("admin", created["mqtt_password"].as_str())
        .header("X-Limit-D", "tablet")
        .header("content-type", "application/json")
        .body(json!({"_type": "location", "lat": 52.1, "lon": 4.9, "tst": 1764400000}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The settings screen names the TLS port phones are sent to.
    let broker: serde_json::Value = client
        .get(format!("{base}/api/settings/mqtt/broker"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(broker["tls_port"], tls_port, "{broker}");
    s.stop().await;

    // Without HTTPS, nothing changes: the plain port, no CA to fetch.
    let s = TestServer::start().await;
    let admin = s.admin().await;
    let created: serde_json::Value = admin
        .post(s.url("/api/devices"))
        .json(&json!({"name": "phone"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["otrc"]["tls"], false);
    assert_eq!(created["otrc"]["port"], s.mqtt_addr().port());
    assert!(created.get("ca_url").is_none(), "{created}");
    s.stop().await;
}

/// `porchlight serve --https`: the flag turns it on, and `runtime.json` names the HTTPS URL.
#[tokio::test]
async fn serve_with_the_https_flag_writes_its_url_to_runtime_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(crate::support::porchlight_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--mqtt-port",
            "-1",
            "--https",
        ])
        .env("PORCHLIGHT_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let runtime = dir.path().join("runtime.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !runtime.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&runtime).unwrap()).unwrap();
    let port = rt["http_port"].as_u64().unwrap();
    let url = rt["https_url"].as_str().expect("https_url");
    assert_eq!(url, format!("https://localhost:{port}/"));
    let ca = reqwest::get(format!("http://127.0.0.1:{port}/api/ca"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client.get(format!("{url}health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().await.unwrap().success());
}
