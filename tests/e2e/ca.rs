//! The built-in certificate authority (issue 15, ADR 0017): `GET /api/ca` and its admin API,
//! the MQTT-over-TLS listener with a server certificate from it (checked with mosquitto's
//! clients, `openssl s_client` and Python's `ssl`, as paho in Home Assistant uses it), the
//! sealed key files, rotation, a restart, and `porchlight ca …`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, GetBody, TestServer, client, porchlight_bin, run_tool};

const ALICE_PASSWORD: &str = "alice password 1";

/// `porchlight serve` on free ports (TLS included), its log (stderr) written to `log`.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Path, log: PathBuf) -> Serve {
        Serve::start_with(dir, log, &[])
    }

    /// Like [`Serve::start`], with more `serve` arguments (later flags win).
    fn start_with(dir: &Path, log: PathBuf, extra: &[&str]) -> Serve {
        let _ = std::fs::remove_file(dir.join("runtime.json"));
        let child = Command::new(porchlight_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--bind", "127.0.0.1", "--http-port", "0"])
            .args(["--mqtt-port", "0", "--mqtts-port", "0"])
            .args(extra)
            .env("PORCHLIGHT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PORCHLIGHT_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("runtime.json").exists() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve { child, log }
    }

    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(self.child.wait().unwrap().success());
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn runtime(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("runtime.json")).unwrap()).unwrap()
}

/// `openssl x509`'s SHA-256 fingerprint of a certificate file, as lower-case hex.
fn openssl_fingerprint(file: &Path, form: &str) -> String {
    let out = run_tool(
        "openssl",
        &[
            "x509",
            "-inform",
            form,
            "-in",
            &file.to_string_lossy(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        Path::new("."),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

async fn download_ca(http: &reqwest::Client, base: &str, to: &Path) -> String {
    let r = http.get(format!("{base}/api/ca")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"porchlight-ca.pem\""
    );
    let pem = r.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    std::fs::write(to, &pem).unwrap();
    openssl_fingerprint(to, "PEM")
}

async fn admin_client(base: &str) -> reqwest::Client {
    let http = client();
    let r = http
        .post(format!("{base}/api/login"))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    http
}

/// `openssl s_client` against the TLS port with `ca` as the only trust anchor: whether the
/// chain verified, and the server certificate's subjectAltName as openssl prints it.
fn s_client(port: u16, ca: &Path, work: &Path) -> (bool, String) {
    let out = run_tool(
        "openssl",
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            &ca.to_string_lossy(),
            "-verify_return_error",
        ],
        work,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let verified = out.status.success() && stdout.contains("Verify return code: 0 (ok)");
    let Some(start) = stdout.find("-----BEGIN CERTIFICATE-----") else {
        return (verified, String::new());
    };
    let end = stdout.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let leaf = work.join("leaf.pem");
    std::fs::write(&leaf, &stdout[start..end]).unwrap();
    let sans = run_tool(
        "openssl",
        &[
            "x509",
            "-in",
            &leaf.to_string_lossy(),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        work,
    );
    (verified, String::from_utf8_lossy(&sans.stdout).into_owned())
}

/// A TLS handshake the way paho-mqtt (Home Assistant's MQTT client) makes one: Python's
/// `ssl.create_default_context(cafile=…)`, host name checked.
fn python_handshake(port: u16, ca: &Path, server_hostname: &str) -> std::process::Output {
    let script = "import socket, ssl, sys\n\
                  ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
                  raw = socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=10)\n\
                  tls = ctx.wrap_socket(raw, server_hostname=sys.argv[3])\n\
                  print(tls.version())\n";
    run_tool(
        "python3",
        &[
            "-c",
            script,
            &ca.to_string_lossy(),
            &port.to_string(),
            server_hostname,
        ],
        Path::new("."),
    )
}

/// Whether `file` parses as a private key for openssl, as PEM or as DER.
fn parses_as_key(file: &Path) -> bool {
    ["PEM", "DER"].iter().any(|form| {
        run_tool(
            "openssl",
            &[
                "pkey",
                "-inform",
                form,
                "-in",
                &file.to_string_lossy(),
                "-noout",
            ],
            Path::new("."),
        )
        .status
        .success()
    })
}

fn key_files(data: &Path) -> Vec<PathBuf> {
    let mut files = vec![data.join("master.key")];
    for entry in std::fs::read_dir(data.join("ca")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_ca_gives_mqtt_over_tls_that_mosquitto_openssl_and_python_accept() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let serve = Serve::start(data.path(), w.join("first.log"));
    let rt = runtime(data.path());
    let base = format!("http://127.0.0.1:{}", rt["http_port"]);
    let tls_port = u16::try_from(rt["mqtt_tls_port"].as_u64().expect("a TLS port")).unwrap();
    assert_ne!(Some(u64::from(tls_port)), rt["mqtt_port"].as_u64());
    let anybody = client();

    // The CA certificate, to anybody, as PEM and DER; the same one /api/ca/info names.
    let ca_pem = w.join("our-ca.pem");
    let fingerprint = download_ca(&anybody, &base, &ca_pem).await;
    let der = anybody
        .get(format!("{base}/api/ca?format=der"))
        .send()
        .await
        .unwrap();
    assert_eq!(der.status(), 200);
    assert_eq!(der.headers()["content-type"], "application/x-x509-ca-cert");
    std::fs::write(w.join("ca.der"), der.bytes().await.unwrap()).unwrap();
    assert_eq!(openssl_fingerprint(&w.join("ca.der"), "DER"), fingerprint);
    let admin = admin_client(&base).await;
    let info: Value = admin.get_json(format!("{base}/api/ca/info")).await;
    assert_eq!(
        info["active"]["fingerprint"],
        fingerprint.as_str(),
        "{info}"
    );
    assert!(
        info["active"]["subject"]
            .as_str()
            .unwrap()
            .contains("Porchlight CA ("),
        "{info}"
    );
    assert_eq!(info["retired"], json!([]));
    let names = info["mqtt_server"]["names"].as_array().unwrap();
    assert!(names.contains(&json!("localhost")) && names.contains(&json!("127.0.0.1")));

    // A user with a password, added while the server runs.
    let add = Command::new(porchlight_bin())
        .args(["--data-dir", &data.path().to_string_lossy()])
        .args(["user", "add", "alice", "--password-stdin"])
        .env("PORCHLIGHT_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{ALICE_PASSWORD}\n").as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(add.success());

    // mosquitto_pub and mosquitto_sub over TLS, trusting only our CA, with alice's password.
    let port = tls_port.to_string();
    let cafile = ca_pem.to_string_lossy().into_owned();
    let location = r#"{"_type":"location","lat":52.1,"lon":5.1,"tst":1700000000,"tid":"ap"}"#;
    let mqtt = ["-h", "127.0.0.1", "-p", &port, "--cafile", &cafile];
    let login = [
        "-u",
        "alice",
        "-P",
        ALICE_PASSWORD,
        "-t",
        "owntracks/alice/phone",
    ];
    let publish = tokio::process::Command::new("mosquitto_pub")
        .args(mqtt)
        .args(login)
        .args(["-i", "tls-pub", "-q", "1", "-r", "-m", location])
        .output()
        .await
        .unwrap();
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let subscribe = tokio::process::Command::new("mosquitto_sub")
        .args(mqtt)
        .args(login)
        .args(["-i", "tls-sub", "-C", "1", "-W", "10"])
        .output()
        .await
        .unwrap();
    assert!(
        subscribe.status.success(),
        "{}",
        String::from_utf8_lossy(&subscribe.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&subscribe.stdout).trim(), location);
    // A wrong password is refused there as on the plain port.
    let wrong = tokio::process::Command::new("mosquitto_pub")
        .args(mqtt)
        .args([
            "-u",
            "alice",
            "-P",
            "not her password",
            "-t",
            "owntracks/alice/phone",
        ])
        .args(["-i", "tls-wrong", "-m", "x"])
        .output()
        .await
        .unwrap();
    assert!(!wrong.status.success());

    // Plain MQTT to the TLS port gets no CONNACK.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
            .await
            .unwrap();
        // CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "raw".
        let connect = [
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 3, b'r', b'a', b'w',
        ];
        raw.write_all(&connect).await.unwrap();
        let mut answer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(15), raw.read(&mut answer)).await;
        if let Ok(Ok(n)) = read {
            assert!(
                n == 0 || answer[0] != 0x20,
                "a CONNACK over plain TCP: {:?}",
                &answer[..n]
            );
        }
    }

    // openssl s_client verifies the chain and the names; Python's ssl (paho) accepts it.
    let (verified, sans) = s_client(tls_port, &ca_pem, w);
    assert!(verified, "s_client did not verify");
    assert!(sans.contains("DNS:localhost"), "{sans}");
    assert!(sans.contains("IP Address:127.0.0.1"), "{sans}");
    for hostname in ["localhost", "127.0.0.1"] {
        let py = python_handshake(tls_port, &ca_pem, hostname);
        assert!(
            py.status.success(),
            "{hostname}: {}",
            String::from_utf8_lossy(&py.stderr)
        );
    }
    // Another CA's trust store does not accept it.
    crate::tls::make_pki(w);
    assert!(
        !s_client(tls_port, &w.join("ca.pem"), w).0,
        "trusted by a foreign CA"
    );
    let py = python_handshake(tls_port, &w.join("ca.pem"), "localhost");
    assert!(!py.status.success(), "trusted by a foreign CA");

    // The key files: owner-only, and no PEM/DER key to openssl (sealed).
    let keys = key_files(data.path());
    assert!(keys.len() >= 3, "{keys:?}");
    for key in &keys {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        assert!(!parses_as_key(key), "{} is a clear key", key.display());
    }
    for leftover in ["tls-listener.key", "tls-listener.pem"] {
        assert!(!data.path().join("mqtt").join(leftover).exists());
    }

    // A client certificate for alice from this CA, before it is rotated out.
    let client_cert: Value = admin
        .post(format!("{base}/api/certificates"))
        .json(&json!({ "user": "alice", "device": "phone" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    std::fs::write(
        w.join("client.pem"),
        client_cert["cert_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        w.join("client.key"),
        client_cert["key_pem"].as_str().unwrap(),
    )
    .unwrap();
    let p12_password = client_cert["p12_password"].as_str().unwrap().to_owned();

    // Rotation: a new CA is served, the old one is listed as retired.
    let rotated: Value = admin
        .post(format!("{base}/api/ca/rotate"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_fingerprint = rotated["active"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_fingerprint, fingerprint);
    assert_eq!(rotated["retired"][0]["fingerprint"], fingerprint.as_str());
    assert!(rotated["retired"][0]["retired_at"].is_i64(), "{rotated}");
    let new_pem = w.join("new-ca.pem");
    assert_eq!(
        download_ca(&anybody, &base, &new_pem).await,
        new_fingerprint
    );
    let first_log = serve.stop();

    // A restart keeps the rotated CA, and the listener's certificate now comes from it.
    let serve = Serve::start(data.path(), w.join("second.log"));
    let rt = runtime(data.path());
    let base = format!("http://127.0.0.1:{}", rt["http_port"]);
    let tls_port = u16::try_from(rt["mqtt_tls_port"].as_u64().unwrap()).unwrap();
    assert_eq!(
        download_ca(&anybody, &base, &w.join("again.pem")).await,
        new_fingerprint
    );
    let info: Value = admin_client(&base)
        .await
        .get_json(format!("{base}/api/ca/info"))
        .await;
    assert_eq!(info["active"]["fingerprint"], new_fingerprint.as_str());
    assert_eq!(info["retired"][0]["fingerprint"], fingerprint.as_str());
    assert!(s_client(tls_port, &new_pem, w).0, "not from the new CA");
    // The certificate from the retired CA still logs in on the certificate port (retired CAs
    // stay trust roots), without a password.
    let cert_port = rt["mqtt_cert_port"].as_u64().expect("a certificate port");
    let publish = tokio::process::Command::new("mosquitto_pub")
        .current_dir(w)
        .args(["-h", "127.0.0.1", "-p", &cert_port.to_string()])
        .args([
            "--cafile",
            "new-ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client.key",
        ])
        .args(["-i", "cert-pub", "-t", "owntracks/alice/phone", "-m", "{}"])
        .output()
        .await
        .unwrap();
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let second_log = serve.stop();

    // The rotation reissued the server certificate at once (the restart found it current).
    assert!(
        first_log.contains("server certificate renewed"),
        "{first_log}"
    );
    assert!(
        first_log.contains("issued the MQTT TLS server certificate"),
        "{first_log}"
    );
    for log in [&first_log, &second_log] {
        assert!(!log.contains("PRIVATE KEY"), "a key in the log");
        assert!(
            !log.contains(&p12_password),
            "a PKCS#12 password in the log"
        );
    }
    assert!(
        first_log.contains("client certificate issued"),
        "{first_log}"
    );
}

#[tokio::test]
async fn the_certificate_port_is_set_on_the_command_line_and_shown_in_the_settings() {
    let data = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let serve = Serve::start_with(
        data.path(),
        data.path().join("a.log"),
        &["--mqtt-cert-port", &port.to_string()],
    );
    let rt = runtime(data.path());
    assert_eq!(rt["mqtt_cert_port"], port, "{rt}");
    let base = format!("http://127.0.0.1:{}", rt["http_port"]);
    let broker: Value = admin_client(&base)
        .await
        .get_json(format!("{base}/api/settings/mqtt/broker"))
        .await;
    assert_eq!(broker["cert_port"], port, "{broker}");
    serve.stop();

    // -1 turns the listener off.
    let serve = Serve::start_with(
        data.path(),
        data.path().join("b.log"),
        &["--mqtt-cert-port", "-1"],
    );
    let rt = runtime(data.path());
    assert!(rt["mqtt_cert_port"].is_null(), "{rt}");
    serve.stop();
}

#[tokio::test]
async fn only_admins_see_rotate_or_import_and_import_takes_an_openssl_ca() {
    let s = TestServer::start().await;
    s.running
        .store()
        .create_user(
            "alice",
            Role::User,
            &Secret::new(ALICE_PASSWORD),
            std::time::SystemTime::now(),
        )
        .await
        .unwrap();
    let alice = s.signed_in("alice", ALICE_PASSWORD).await;
    let anonymous = client();
    for (method, path) in [
        (Method::GET, "/api/ca/info"),
        (Method::POST, "/api/ca/rotate"),
        (Method::POST, "/api/ca/import"),
    ] {
        let body = json!({ "cert_pem": "x", "key_pem": "y" });
        let r = s.call(&alice, method.clone(), path, Some(&body)).await;
        assert_eq!(r.status(), 403, "{method} {path}");
        let r = s.call(&anonymous, method.clone(), path, Some(&body)).await;
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    // The certificate itself is public.
    assert_eq!(
        s.call(&anonymous, Method::GET, "/api/ca", None)
            .await
            .status(),
        200
    );
    assert_eq!(
        s.call(&anonymous, Method::GET, "/api/ca?format=p12", None)
            .await
            .status(),
        400
    );

    let pki = tempfile::tempdir().unwrap();
    crate::tls::make_pki(pki.path());
    let read = |f: &str| std::fs::read_to_string(pki.path().join(f)).unwrap();
    let admin = s.admin().await;
    let before: Value = s
        .call(&admin, Method::GET, "/api/ca/info", None)
        .await
        .json()
        .await
        .unwrap();

    // Not a CA, a key of another certificate, garbage: 400s that say why; nothing changes.
    for (cert, key, why) in [
        (read("server.pem"), read("server.key"), "not a CA"),
        (read("ca.pem"), read("alice.key"), "does not belong"),
        ("garbage".to_owned(), read("ca.key"), "does not parse"),
    ] {
        let r = s
            .call(
                &admin,
                Method::POST,
                "/api/ca/import",
                Some(&json!({ "cert_pem": cert, "key_pem": key })),
            )
            .await;
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        assert!(text.contains(why), "{why}: {text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
    let key_pem = read("ca.key");
    let r = s
        .call(
            &admin,
            Method::POST,
            "/api/ca/import",
            Some(&json!({ "cert_pem": read("ca.pem"), "key_pem": key_pem })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let after: Value = serde_json::from_str(&text).unwrap();
    let imported = openssl_fingerprint(&pki.path().join("ca.pem"), "PEM");
    assert_eq!(after["active"]["fingerprint"], imported.as_str());
    assert_eq!(after["active"]["origin"], "imported");
    assert_eq!(
        after["retired"][0]["fingerprint"],
        before["active"]["fingerprint"]
    );
    let pem = s
        .call(&anonymous, Method::GET, "/api/ca", None)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(pem.trim(), read("ca.pem").trim());
    s.stop().await;
}

fn cli(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(porchlight_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PORCHLIGHT_LOG", "off")
        .stdin(Stdio::null())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn porchlight_ca_shows_exports_rotates_and_imports_with_the_server_stopped() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (ok, text) = cli(data.path(), &["ca", "show"]);
    assert!(!ok && text.contains("porchlight serve"), "{text}");
    Serve::start(data.path(), w.join("serve.log")).stop();

    let (ok, shown) = cli(data.path(), &["ca", "show"]);
    assert!(ok, "{shown}");
    let out = w.join("exported.pem");
    let (ok, text) = cli(
        data.path(),
        &["ca", "export", "--out", &out.to_string_lossy()],
    );
    assert!(ok, "{text}");
    let first = openssl_fingerprint(&out, "PEM");
    assert!(shown.contains(&first), "{shown}");
    assert!(
        shown.contains("active") && shown.contains("ca.pem"),
        "{shown}"
    );

    let (ok, text) = cli(data.path(), &["ca", "rotate"]);
    assert!(ok, "{text}");
    let (_, shown) = cli(data.path(), &["ca", "show"]);
    assert!(
        shown.contains("retired") && shown.contains(&first),
        "{shown}"
    );

    crate::tls::make_pki(w);
    let p = |f: &str| w.join(f).to_string_lossy().into_owned();
    let (ok, text) = cli(
        data.path(),
        &[
            "ca",
            "import",
            "--cert",
            &p("server.pem"),
            "--key",
            &p("server.key"),
        ],
    );
    assert!(!ok && text.contains("not a CA"), "{text}");
    let (ok, text) = cli(
        data.path(),
        &[
            "ca",
            "import",
            "--cert",
            &p("ca.pem"),
            "--key",
            &p("ca.key"),
        ],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("PRIVATE KEY"));
    let (_, text) = cli(
        data.path(),
        &["ca", "export", "--out", &out.to_string_lossy()],
    );
    assert_eq!(
        openssl_fingerprint(&out, "PEM"),
        openssl_fingerprint(&w.join("ca.pem"), "PEM"),
        "{text}"
    );
    for key in key_files(data.path()) {
        assert!(!parses_as_key(&key), "{} is a clear key", key.display());
    }

    // The next start serves the imported CA and a listener certificate from it.
    let serve = Serve::start(data.path(), w.join("serve2.log"));
    let rt = runtime(data.path());
    let tls_port = u16::try_from(rt["mqtt_tls_port"].as_u64().unwrap()).unwrap();
    assert!(s_client(tls_port, &w.join("ca.pem"), w).0);
    serve.stop();
}

/// rumqttc (rustls) over the in-process server's TLS port, trusting our CA only, with a
/// password: a publish comes back through a subscription. Another CA's trust refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_connects_over_tls_trusting_our_ca_with_a_password() {
    let s = TestServer::start().await;
    let tls = s.running.mqtt_tls_addr.expect("a TLS listener on port 0");
    s.running
        .store()
        .create_user(
            "alice",
            Role::User,
            &Secret::new(ALICE_PASSWORD),
            std::time::SystemTime::now(),
        )
        .await
        .unwrap();
    let connect = |ca: Vec<u8>, id: &str| {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", tls.port());
        o.set_credentials("alice", ALICE_PASSWORD);
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            },
        ));
        rumqttc::AsyncClient::new(o, 10)
    };
    let ours = s.running.ca().active().cert_pem().as_bytes().to_vec();
    let (client, mut events) = connect(ours, "alice-tls");
    client
        .subscribe("owntracks/alice/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let location = r#"{"_type":"location","lat":52.1,"lon":5.1,"tst":1700000001,"tid":"ap"}"#;
    client
        .publish(
            "owntracks/alice/phone",
            rumqttc::QoS::AtLeastOnce,
            false,
            location,
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => return p.payload,
                Ok(_) => {}
                Err(e) => panic!("over TLS: {e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&got[..], location.as_bytes());

    let pki = tempfile::tempdir().unwrap();
    crate::tls::make_pki(pki.path());
    let foreign = std::fs::read(pki.path().join("ca.pem")).unwrap();
    let (_other, mut refused) = connect(foreign, "alice-foreign");
    let outcome = tokio::time::timeout(Duration::from_secs(10), refused.poll())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Err(rumqttc::ConnectionError::Tls(_))),
        "{outcome:?}"
    );
    s.stop().await;
}

/// An expired CA does not take the hub down: it starts without the TLS listener (logged), the
/// plain port and the API work, and a rotation gives the TLS port back at the next start.
#[tokio::test]
async fn an_expired_ca_leaves_the_hub_running_without_tls_until_rotated() {
    use porchlight_server::ca::{Authorities, CA_VALIDITY};
    use porchlight_server::{Config, LoadOptions};
    let dir = tempfile::tempdir().unwrap();
    let store = porchlight_store::Store::open(&dir.path().join("porchlight.db")).unwrap();
    let long_ago = std::time::SystemTime::now() - CA_VALIDITY - Duration::from_secs(86_400);
    Authorities::open(store.clone(), dir.path())
        .unwrap()
        .generate(long_ago)
        .await
        .unwrap();
    store.close().await;
    let options = LoadOptions {
        data_dir: Some(dir.path().to_owned()),
        http_port: Some(0),
        mqtt_port: Some(0),
        mqtts_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..LoadOptions::default()
    };
    let env = [(
        "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
        ADMIN_PASSWORD.to_owned(),
    )];
    let start = || porchlight_server::start(Config::load_from(&options, env.clone()).unwrap());
    let running = start().await.unwrap();
    assert!(running.mqtt_addr.is_some());
    assert_eq!(running.mqtt_tls_addr, None);
    running
        .ca()
        .rotate(std::time::SystemTime::now())
        .await
        .unwrap();
    running.shutdown().await;
    let running = start().await.unwrap();
    assert!(
        running.mqtt_tls_addr.is_some(),
        "TLS is back with the new CA"
    );
    running.shutdown().await;
}

/// The serial of the certificate the TLS port presents (after [`s_client`] verified it
/// against `ca`), as `openssl x509 -serial` prints it.
fn served_serial(port: u16, ca: &Path, work: &Path) -> String {
    let (verified, _) = s_client(port, ca, work);
    assert!(
        verified,
        "the TLS port's chain did not verify against {ca:?}"
    );
    let out = run_tool(
        "openssl",
        &["x509", "-in", "leaf.pem", "-noout", "-serial"],
        work,
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_rotation_swap_the_server_certificate_while_a_client_stays_connected() {
    let s = TestServer::start().await;
    let tls_port = s.running.mqtt_tls_addr.expect("a TLS listener").port();
    let plain_port = s.running.mqtt_addr.expect("a broker").port();
    let admin = s.admin().await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ca_pem = admin.get_text(s.url("/api/ca")).await;
    std::fs::write(w.join("ca.pem"), &ca_pem).unwrap();
    let before = served_serial(tls_port, &w.join("ca.pem"), w);

    // A subscriber over TLS with a password, waiting for two messages; from 127.0.0.2, so
    // that its address differs from the relay's (127.0.0.1).
    let sub = tokio::process::Command::new("mosquitto_sub")
        .current_dir(w)
        .args([
            "-h",
            "127.0.0.1",
            "-A",
            "127.0.0.2",
            "-p",
            &tls_port.to_string(),
        ])
        .args(["--cafile", "ca.pem", "-u", "admin", "-P", ADMIN_PASSWORD])
        .args([
            "-i",
            "renewal-sub",
            "-t",
            "renewal/test",
            "-C",
            "2",
            "-q",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let connected = || async {
        let clients: Value = admin.get_json(s.url("/api/settings/mqtt/clients")).await;
        clients
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == "renewal-sub")
            .cloned()
    };
    let session = crate::support::eventually(|| async { connected().await }).await;
    // The client's own address, not the relay's, though the relay is what rmqtt sees.
    assert!(
        session["peer"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{session}"
    );
    let publish = |message: &'static str| {
        let port = plain_port.to_string();
        async move {
            let ok = tokio::process::Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-u", "admin", "-P"])
                .args([
                    ADMIN_PASSWORD,
                    "-t",
                    "renewal/test",
                    "-q",
                    "1",
                    "-m",
                    message,
                ])
                .status()
                .await
                .unwrap()
                .success();
            assert!(ok, "publishing {message} failed");
        }
    };
    publish("before").await;

    // A renewal: the next handshake gets a new certificate from the same CA.
    let r = admin.post(s.url("/api/ca/renew")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let renewed = served_serial(tls_port, &w.join("ca.pem"), w);
    assert_ne!(
        renewed, before,
        "the TLS port still presents the old certificate"
    );

    // A rotation: the next handshake gets a certificate from the new CA, which the old CA
    // does not verify.
    let r = admin.post(s.url("/api/ca/rotate")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let new_ca = admin.get_text(s.url("/api/ca")).await;
    assert_ne!(new_ca, ca_pem);
    std::fs::write(w.join("new-ca.pem"), &new_ca).unwrap();
    let (old_trusts_it, _) = s_client(tls_port, &w.join("ca.pem"), w);
    assert!(
        !old_trusts_it,
        "the rotated listener still serves the old CA's certificate"
    );
    served_serial(tls_port, &w.join("new-ca.pem"), w);

    // The subscriber never reconnected: it gets the second message on its first session.
    publish("after").await;
    let out = tokio::time::timeout(Duration::from_secs(20), sub.wait_with_output())
        .await
        .expect("the subscriber did not get both messages")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\nafter\n");
    let rows: Value = admin.get_json(s.url("/api/audit?limit=1000")).await;
    let rows = rows.as_array().unwrap();
    let connects = rows
        .iter()
        .filter(|r| r["kind"] == "mqtt_connect" && r["client_id"] == "renewal-sub")
        .count();
    assert_eq!(connects, 1, "the subscriber reconnected: {rows:?}");
    assert!(
        rows.iter().any(|r| r["kind"] == "mqtt_connect"
            && r["client_id"] == "renewal-sub"
            && r["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.2:"))),
        "the connect is audited with the relay's address: {rows:?}"
    );
    for kind in ["server_certificate_renewed", "ca_rotated"] {
        assert!(
            rows.iter().any(|r| r["kind"] == kind),
            "no {kind} audit row in {rows:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn plain_mqtt_to_a_tls_port_is_refused_and_audited() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    for port in [
        s.running.mqtt_tls_addr.expect("a TLS listener").port(),
        s.running
            .mqtt_cert_addr
            .expect("a certificate listener")
            .port(),
    ] {
        let ok = tokio::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-u",
                "admin",
                "-P",
                ADMIN_PASSWORD,
                "-t",
                "x",
                "-m",
                "plain",
            ])
            .output()
            .await
            .unwrap()
            .status
            .success();
        assert!(!ok, "plain MQTT was accepted on TLS port {port}");
        crate::support::eventually(|| async {
            let rows: Value = admin
                .get_json(s.url("/api/audit?kind=mqtt_tls_refused&result=failed"))
                .await;
            rows.as_array()
                .unwrap()
                .iter()
                .any(|r| {
                    r["reason"] == "plain MQTT (no TLS) sent to the TLS port"
                        && r["detail"] == format!("port {port}")
                })
                .then_some(())
        })
        .await;
    }
    s.stop().await;
}
