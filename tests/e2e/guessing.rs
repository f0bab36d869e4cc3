//! Password guessing, web and MQTT: attempts are counted before argon2 runs, argon2 runs at
//! most twice at once in the process, and a flood does not hold up a good login.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::raw_mqtt;
use crate::support::{TestServer, client};

const HA_PASSWORD: &str = "home assistant password";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// This process's peak resident memory so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn parallel_wrong_web_passwords_are_counted_before_they_are_checked() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({ "username": "alice", "password": "alice password 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let before = peak_rss_kib();
    let guesser = client();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..40 {
        let request = guesser
            .post(s.url("/api/login"))
            .json(&json!({ "username": "admin", "password": format!("guess number {i}") }));
        guesses.spawn(async move {
            let r = request.send().await.unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (r.status().as_u16(), retry_after)
        });
    }
    let answers = guesses.join_all().await;
    let growth_mib = peak_rss_kib().saturating_sub(before) / 1024;

    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert!(
        (1..=6).contains(&checked),
        "at most a handful of guesses may reach the password check, {checked} did: {answers:?}"
    );
    assert_eq!(checked + throttled.len(), 40, "{answers:?}");
    assert!(
        throttled
            .iter()
            .all(|(_, retry)| retry.is_some_and(|s| s >= 1)),
        "every 429 says when to retry: {answers:?}"
    );
    assert!(
        growth_mib < 300,
        "peak memory grew by {growth_mib} MiB during the guesses"
    );

    // The guesses were against `admin`: another account on the same address still signs in.
    s.signed_in("alice", "alice password 1").await;
    s.stop().await;
}

/// Sends a hand-made MQTT 3.1.1 CONNECT from `from` and returns the connection with the
/// CONNACK return code (0 accepted, 4 bad user name or password, 5 not authorized).
async fn raw_connect(
    from: IpAddr,
    broker: SocketAddr,
    client_id: &str,
    username: &str,
    password: &str,
) -> (TcpStream, u8) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(broker).await.unwrap();
    stream
        .write_all(&raw_mqtt::connect(client_id, username, password))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack[..2], [0x20, 0x02], "not a CONNACK: {connack:?}");
    (stream, connack[3])
}

/// Starts `n` wrong-password CONNECTs in parallel from `from`, for `username(i)`; returns once
/// every CONNECT has been sent, with a receiver of their CONNACK codes.
async fn flood(
    s: &TestServer,
    from: IpAddr,
    n: usize,
    username: impl Fn(usize) -> String,
) -> mpsc::UnboundedReceiver<u8> {
    let broker = s.mqtt_addr();
    let (sent_tx, mut sent) = mpsc::unbounded_channel();
    let (code_tx, codes) = mpsc::unbounded_channel();
    for i in 0..n {
        let (sent_tx, code_tx) = (sent_tx.clone(), code_tx.clone());
        let user = username(i);
        tokio::spawn(async move {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let mut stream = socket.connect(broker).await.unwrap();
            let packet = raw_mqtt::connect(&format!("guess-{from}-{i}"), &user, "wrong password!");
            stream.write_all(&packet).await.unwrap();
            sent_tx.send(()).unwrap();
            let mut connack = [0u8; 4];
            let code = match stream.read_exact(&mut connack).await {
                Ok(_) => connack[3],
                Err(_) => 0xff,
            };
            let _ = code_tx.send(code);
        });
    }
    for _ in 0..n {
        sent.recv().await.unwrap();
    }
    codes
}

/// Home Assistant's account, made through the admin API.
async fn home_assistant(s: &TestServer) {
    let admin = s.admin().await;
    let r = admin
        .post(s.url("/api/users"))
        .json(&json!({ "username": "homeassistant", "role": "homeassistant", "password": HA_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Connects as Home Assistant from 127.0.0.1 and returns how long the CONNACK took.
async fn time_home_assistant_login(s: &TestServer, client_id: &str) -> Duration {
    let started = Instant::now();
    let (_stream, code) = raw_connect(
        LOCAL,
        s.mqtt_addr(),
        client_id,
        "homeassistant",
        HA_PASSWORD,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, 0, "Home Assistant was refused");
    took
}

async fn all_refused(mut codes: mpsc::UnboundedReceiver<u8>, n: usize) {
    for _ in 0..n {
        let code = tokio::time::timeout(Duration::from_secs(60), codes.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            code == 4 || code == 5 || code == 0xff,
            "a guess got CONNACK {code}"
        );
    }
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_for_one_user_name_does_not_hold_up_home_assistant() {
    let s = TestServer::start().await;
    home_assistant(&s).await;
    let codes = flood(&s, OTHER, 60, |_| "admin".into()).await;
    let took = time_home_assistant_login(&s, "ha-during-flood").await;
    assert!(
        took < Duration::from_secs(2),
        "Home Assistant waited {took:?}"
    );
    all_refused(codes, 60).await;
    s.stop().await;
}

#[tokio::test]
async fn a_flood_with_rotating_user_names_from_another_address_does_not_hold_up_home_assistant() {
    let s = TestServer::start().await;
    home_assistant(&s).await;
    let codes = flood(&s, OTHER, 60, |i| format!("guess{i}")).await;
    let took = time_home_assistant_login(&s, "ha-during-flood").await;
    assert!(
        took < Duration::from_secs(2),
        "Home Assistant waited {took:?}"
    );
    all_refused(codes, 60).await;
    s.stop().await;
}

#[tokio::test]
async fn home_assistant_reconnects_through_a_flood_from_its_own_address() {
    let s = TestServer::start().await;
    home_assistant(&s).await;
    let admin = s.admin().await;
    let device: Value = admin
        .post(s.url("/api/devices"))
        .json(&json!({ "username": "admin", "name": "laptop" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = device["mqtt_password"].as_str().unwrap().to_owned();
    // Home Assistant has been connected before (it reconnects often).
    let (first, code) = raw_connect(LOCAL, s.mqtt_addr(), "ha", "homeassistant", HA_PASSWORD).await;
    assert_eq!(code, 0);
    drop(first);

    // Its own address floods: against another user name, and with rotating names, until the
    // address itself is throttled.
    let against_admin = flood(&s, LOCAL, 60, |_| "admin".into()).await;
    let rotating = flood(&s, LOCAL, 60, |i| format!("guess{i}")).await;
    let took = time_home_assistant_login(&s, "ha").await;
    assert!(
        took < Duration::from_secs(2),
        "Home Assistant waited {took:?}"
    );
    // A device key from the same address needs no password check at all.
    let started = Instant::now();
    let (_laptop, code) = raw_connect(LOCAL, s.mqtt_addr(), "laptop", "admin", &key).await;
    assert_eq!(code, 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    all_refused(against_admin, 60).await;
    all_refused(rotating, 60).await;
    s.stop().await;
}
