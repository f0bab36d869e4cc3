//! The broker's session limit, as an operator sees it in the audit log.

use serde_json::Value;

use crate::raw_mqtt;
use crate::support::{ADMIN_PASSWORD, TestServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_session_limit_is_audited_as_a_count_not_a_row_each() {
    let s = TestServer::start_with_config(Some(0), "[mqtt]\nmax_connections = 2\n").await;
    let addr = s.mqtt_addr();
    let mut open = Vec::new();
    for id in ["first", "second"] {
        let (code, socket) =
            raw_mqtt::send(addr, &raw_mqtt::connect(id, "admin", ADMIN_PASSWORD)).await;
        assert_eq!(code, 0);
        open.push(socket);
    }
    for i in 0..30 {
        let bytes = raw_mqtt::connect(&format!("flood-{i}"), "admin", "wrong");
        assert_eq!(raw_mqtt::send(addr, &bytes).await.0, 3, "connection {i}");
    }
    let admin = s.admin().await;
    let refused = |rows: &[Value]| -> Vec<Value> {
        rows.iter()
            .filter(|r| r["kind"] == "mqtt_connect" && r["code"] == 3)
            .cloned()
            .collect()
    };
    // the first refusal is a row at once; the rest are summed up later (every 10 s)
    let rows = eventually(|| async {
        let rows: Value = admin
            .get(s.url("/api/audit?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = refused(rows.as_array().unwrap());
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["reason"],
        "1 connection refused: too many connections (limit 2)"
    );
    assert!(rows[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    // none of the refused client ids made a row of its own
    let all: Value = admin
        .get(s.url("/api/audit?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!all.as_array().unwrap().iter().any(|r| {
        r["client_id"]
            .as_str()
            .is_some_and(|c| c.starts_with("flood-"))
    }));
    drop(open);
    s.stop().await;
}
