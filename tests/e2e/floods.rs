//! Floods from outside: many junk MQTT CONNECTs with huge fields must not grow the server
//! without bound, slow `/health`, or fill the audit log with their payloads.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::raw_mqtt;
use crate::support::{TestServer, eventually};

/// Resident memory of this process (the in-process server included), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Sends one CONNECT and returns the CONNACK code, if one came.
async fn junk_connect(addr: std::net::SocketAddr, packet: Vec<u8>) -> Option<u8> {
    let attempt = async {
        let mut socket = TcpStream::connect(addr).await.ok()?;
        socket.write_all(&packet).await.ok()?;
        let mut connack = [0u8; 4];
        socket.read_exact(&mut connack).await.ok()?;
        (connack[0] == 0x20).then_some(connack[3])
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_junk_connects_with_huge_fields_stay_bounded() {
    let s = TestServer::start().await;
    let addr = s.mqtt_addr();
    let before = rss();

    let parallel = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3000 {
        let permit = parallel.clone().acquire_owned().await.unwrap();
        let client_id = format!("{i:05}{}", "c".repeat(20_000));
        let username = format!("{i:05}{}", "u".repeat(20_000));
        // Mostly no password (refused without a hash); now and then a wrong one.
        let password = (i % 100 == 0).then_some("not the password");
        let packet = raw_mqtt::connect_with(&client_id, &username, password);
        tasks.spawn(async move {
            let code = junk_connect(addr, packet).await;
            drop(permit);
            code
        });
    }
    let mut refused = 0;
    while let Some(code) = tasks.join_next().await {
        let code = code.unwrap();
        assert_ne!(code, Some(0), "a junk CONNECT was accepted");
        refused += usize::from(code.is_some());
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "3000 junk CONNECTs: {refused} CONNACKs, RSS grew by {} MB",
        grown / (1024 * 1024)
    );
    assert!(refused > 2000, "only {refused} CONNACKs for 3000 CONNECTs");
    assert!(
        grown < 200 * 1024 * 1024,
        "the server grew by {} MB",
        grown / (1024 * 1024)
    );

    let health = crate::support::client()
        .get(s.url("/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("/health must answer within 1 s after the flood");
    assert_eq!(health.status(), 200);

    // The attempts are audited, with their long fields cut.
    let admin = s.admin().await;
    let rows = eventually(|| {
        let admin = admin.clone();
        let url = s.url("/api/audit?limit=1000");
        async move {
            let rows: serde_json::Value = admin.get(url).send().await.ok()?.json().await.ok()?;
            let junk: Vec<serde_json::Value> = rows
                .as_array()?
                .iter()
                .filter(|r| r["kind"] == "mqtt_connect" && r["code"] != 0)
                .cloned()
                .collect();
            (junk.len() >= 500).then_some(junk)
        }
    })
    .await;
    for row in rows {
        for field in ["client_id", "username"] {
            let value = row[field].as_str().unwrap();
            assert!(value.len() < 400, "{field} kept {} bytes", value.len());
            assert!(value.contains("…(+"), "{field} not marked as cut: {value}");
        }
    }
    s.stop().await;
}
