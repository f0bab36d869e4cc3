//! `porchlight simulate` as a process against a running server: it creates its users and
//! devices with an admin token, its phones' points land in the store, and every location it
//! reports as acknowledged is stored (acknowledged only after the commit).

use std::collections::HashMap;

use serde_json::json;

use crate::support::{TestServer, porchlight_bin};

/// An admin API token, created through the API.
async fn admin_token(s: &TestServer) -> String {
    let admin = s.admin().await;
    let r = admin
        .post(s.url("/api/tokens"))
        .json(&json!({ "name": "simulate" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let body: serde_json::Value = r.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Runs `porchlight simulate ARGS…` to completion; returns its stdout, and its stderr on failure.
async fn simulate(s: &TestServer, token: &str, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(porchlight_bin());
    cmd.arg("simulate")
        .args(["--url", &format!("http://{}", s.running.http_addr)])
        .args(["--token", token])
        .args(args)
        .env("PORCHLIGHT_LOG", "warn");
    if let Some(mqtt) = s.running.mqtt_addr {
        cmd.args(["--mqtt-port", &mqtt.port().to_string()]);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("simulate did not stop by itself")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "simulate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains(token),
        "the token must never be printed: {stdout}"
    );
    stdout
}

/// `device USER/DEVICE acked_locations N` lines of the final summary.
fn acked_per_device(stdout: &str) -> HashMap<(String, String), u64> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("device ")?;
            let (name, n) = rest.split_once(" acked_locations ")?;
            let (user, device) = name.split_once('/')?;
            Some(((user.to_owned(), device.to_owned()), n.trim().parse().ok()?))
        })
        .collect()
}

/// Checks that each simulated device exists in the store with a card and at least as many
/// stored locations as were acknowledged, and that points were acknowledged at all.
async fn check_stored(s: &TestServer, stdout: &str, devices: usize) {
    let acked = acked_per_device(stdout);
    assert_eq!(
        acked.len(),
        devices,
        "one summary line per device:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" sent ") && l.contains(" acked ")),
        "no progress line:\n{stdout}"
    );
    let store = s.running.store();
    let stored = store.owntracks_devices(None).await.unwrap();
    let mut total = 0;
    for ((user, device), n) in &acked {
        assert!(*n > 0, "{user}/{device}: nothing acknowledged:\n{stdout}");
        let d = stored
            .iter()
            .find(|d| &d.username == user && &d.name == device)
            .unwrap_or_else(|| panic!("{user}/{device} is not in the store"));
        let points = store
            .location_window(d.id, 0, i64::MAX, u32::MAX)
            .await
            .unwrap();
        assert!(
            points.len() as u64 >= *n,
            "{user}/{device}: {n} acknowledged but {} stored",
            points.len()
        );
        assert!(
            points.windows(2).all(|w| w[0].tst < w[1].tst),
            "tst increases"
        );
        assert!(points.iter().all(|p| p.fields.tid.is_some()));
        let card = store.card(d.id).await.unwrap();
        assert!(
            card.is_some_and(|c| c.name.is_some_and(|n| n.contains(user.as_str()))),
            "{user}/{device} has its card"
        );
        total += points.len();
    }
    assert!(total >= 20, "only {total} points stored:\n{stdout}");
}

#[tokio::test]
async fn simulate_over_mqtt_stores_every_acknowledged_point() {
    let s = TestServer::start().await;
    let token = admin_token(&s).await;
    let stdout = simulate(
        &s,
        &token,
        &[
            "--devices",
            "3",
            "--rate",
            "30",
            "--duration",
            "2",
            "--mqtt",
        ],
    )
    .await;
    check_stored(&s, &stdout, 3).await;
    s.stop().await;
}

#[tokio::test]
async fn simulate_over_http_stores_every_acknowledged_point() {
    let s = TestServer::start_with(None).await;
    let token = admin_token(&s).await;
    let stdout = simulate(
        &s,
        &token,
        &[
            "--devices",
            "3",
            "--rate",
            "30",
            "--duration",
            "2",
            "--http",
        ],
    )
    .await;
    check_stored(&s, &stdout, 3).await;
    s.stop().await;
}

#[tokio::test]
async fn simulate_refuses_an_unbounded_run_and_a_wrong_token() {
    let s = TestServer::start_with(None).await;
    let url = format!("http://{}", s.running.http_addr);
    for (args, expect) in [
        (vec!["--duration", "3601", "--token", "plt_x"], "--duration"),
        (vec!["--duration", "1", "--token", "plt_wrong"], "401"),
    ] {
        let out = tokio::process::Command::new(porchlight_bin())
            .arg("simulate")
            .args(["--url", &url])
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert!(
        s.running
            .store()
            .owntracks_devices(None)
            .await
            .unwrap()
            .is_empty()
    );
    s.stop().await;
}
