//! Crash safety with the real `porchlight serve` process: `kill -9` and restart on the same
//! data dir.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ADMIN_PASSWORD, porchlight_bin};

/// Starts `porchlight serve` on free ports and waits for its "running" line.
pub(crate) fn serve(dir: &Path) -> Child {
    let mut child = Command::new(porchlight_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--mqtt-port",
            "0",
        ])
        .env("PORCHLIGHT_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PORCHLIGHT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(
            n > 0 && Instant::now() < deadline,
            "porchlight serve did not start"
        );
        if line.contains("Porchlight is running") {
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    child
}

pub(crate) fn mqtt_port(dir: &Path) -> String {
    let rt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runtime.json")).unwrap()).unwrap();
    rt["mqtt_port"].as_u64().unwrap().to_string()
}

pub(crate) fn mosquitto(tool: &str, port: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-u",
            "admin",
            "-P",
            ADMIN_PASSWORD,
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (apt install mosquitto-clients)"))
}

/// SIGKILL: no shutdown code runs.
pub(crate) fn kill_9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_retained_message_published_a_second_before_kill_9_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path());
    let port = mqtt_port(dir.path());
    // Not the alarm's state topic: the alarm re-publishes its own state at every start.
    let topic = "porchlight/crash-check/state";
    let out = mosquitto(
        "mosquitto_pub",
        &port,
        &["-q", "1", "-r", "-t", topic, "-m", "armed_away"],
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(1100));
    kill_9(&mut first);

    let mut second = serve(dir.path());
    let port = mqtt_port(dir.path());
    let out = mosquitto("mosquitto_sub", &port, &["-t", topic, "-C", "1", "-W", "5"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "armed_away",
        "the retained message was lost: {out:?}"
    );
    kill_9(&mut second);
}

#[cfg(unix)]
#[test]
fn a_restart_makes_the_database_files_owner_only_again() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve(dir.path());
    // A crash leaves the -wal and -shm files behind; then a copy or a restore widens them.
    kill_9(&mut first);
    let files: Vec<_> = ["porchlight.db", "porchlight.db-wal", "porchlight.db-shm"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut second = serve(dir.path());
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    kill_9(&mut second);
}
