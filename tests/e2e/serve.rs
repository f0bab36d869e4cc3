//! `porchlight serve` as a process: first start, runtime.json, busy ports, signals, bad config.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::porchlight_bin;

struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    stdout: Vec<String>,
}

fn spawn(dir: tempfile::TempDir, args: &[&str]) -> Serve {
    let mut child = Command::new(porchlight_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--bind", "127.0.0.1"])
        .args(args)
        .env_remove("PORCHLIGHT_ADMIN_PASSWORD")
        .env("PORCHLIGHT_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stdout until the "running" line.
    let mut lines = Vec::new();
    let out = child.stdout.take().unwrap();
    let mut reader = BufReader::new(out);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let done = line.contains("Porchlight is running");
        lines.push(line);
        if done {
            break;
        }
    }
    Serve {
        child,
        dir,
        stdout: lines,
    }
}

/// Runs `porchlight --data-dir DIR ARGS…` to completion with logging off, feeding `stdin`.
fn porchlight(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(porchlight_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("PORCHLIGHT_LOG", "off")
        .env_remove("PORCHLIGHT_ADMIN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        std::io::Write::write_all(&mut input, text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn runtime(dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("runtime.json")).unwrap()).unwrap()
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    child.wait().unwrap()
}

#[tokio::test]
async fn first_start_prints_the_admin_password_once_and_never_logs_it() {
    let mut s = spawn(
        tempfile::tempdir().unwrap(),
        &["--http-port", "0", "--mqtt-port", "-1"],
    );
    let printed = s.stdout.join("");
    let password = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("password:"))
        .map(|p| p.trim().to_owned())
        .unwrap_or_else(|| panic!("no password printed: {printed}"));
    assert!(password.len() >= 16);

    let rt = runtime(s.dir.path());
    let port = rt["http_port"].as_u64().unwrap();
    assert!(port > 0);
    assert!(rt["mqtt_port"].is_null());
    let c = crate::support::client();
    let r = c
        .post(format!("http://127.0.0.1:{port}/api/login"))
        .json(&serde_json::json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let status = terminate(&mut s.child);
    assert_eq!(status.code(), Some(0), "SIGTERM must end with exit 0");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut s.child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!log.contains(&password), "password leaked into the log");
    assert!(log.contains("stopped"), "{log}");

    // A second start reuses the account and prints no password.
    let mut again = spawn(s.dir, &["--http-port", "0", "--mqtt-port", "-1"]);
    assert!(
        !again.stdout.join("").contains("password"),
        "{:?}",
        again.stdout
    );
    assert_eq!(terminate(&mut again.child).code(), Some(0));
}

#[test]
fn a_busy_port_is_one_clear_line_naming_the_flag() {
    for (flag, other) in [
        ("--http-port", "--mqtt-port"),
        ("--mqtt-port", "--http-port"),
    ] {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port().to_string();
        let dir = tempfile::tempdir().unwrap();
        let args = ["serve", "--bind", "127.0.0.1", other, "0", flag, &port];
        let out = porchlight(dir.path(), &args, None);
        assert!(!out.status.success(), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&port) && err.contains(flag), "{err}");
        assert!(
            out.stdout.is_empty(),
            "{flag}: no password may be printed for a failed start"
        );
    }
}

#[test]
fn bad_config_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[mqtt]\nport = \"many\"\n").unwrap();
    let out = porchlight(dir.path(), &["serve", "--bind", "127.0.0.1"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mqtt.port"), "{err}");
}

#[test]
fn a_database_from_a_newer_porchlight_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("porchlight.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (9999, 'from the future', 0);",
        )
        .unwrap();
    }
    let out = porchlight(
        dir.path(),
        &[
            "serve",
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--mqtt-port",
            "-1",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("9999") && err.contains("newer Porchlight"),
        "{err}"
    );
}

#[test]
fn user_and_device_commands_script_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| porchlight(dir.path(), args, stdin);
    // Before the first start there is no database: a clear error.
    let out = run(&["user", "list"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("porchlight serve"));

    let mut s = spawn(
        tempfile::tempdir().unwrap(),
        &["--http-port", "0", "--mqtt-port", "-1"],
    );
    terminate(&mut s.child);
    let dir_path = s.dir.path().to_owned();
    let run = |args: &[&str], stdin: Option<&str>| porchlight(&dir_path, args, stdin);
    let out = run(
        &["user", "add", "alice", "--password-stdin"],
        Some("alice password 1\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["user", "add", "bob"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("password: "), "{text}");
    let out = run(&["user", "add", "ha", "--role", "homeassistant"], None);
    assert!(out.status.success());
    let out = run(&["user", "add", "eve", "--role", "superuser"], None);
    assert!(!out.status.success());
    let out = run(
        &["user", "add", "short", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least"));

    let out = run(&["user", "list"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "admin\tadmin",
        "alice\tuser",
        "bob\tuser",
        "ha\thomeassistant",
    ] {
        assert!(text.contains(line), "{text}");
    }
    let out = run(&["device", "add", "alice", "phone"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MQTT password: pld_"), "{text}");
    let out = run(&["device", "list", "alice"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alice\tphone");
    assert!(
        run(&["device", "remove", "alice", "phone"], None)
            .status
            .success()
    );
    assert!(
        !run(&["device", "remove", "alice", "phone"], None)
            .status
            .success()
    );
    assert!(run(&["user", "remove", "bob"], None).status.success());
    let out = run(&["user", "remove", "admin"], None);
    assert!(!out.status.success(), "the last admin must stay");
}

#[test]
fn mqtt_logins_never_put_passwords_or_keys_in_the_log() {
    let mut s = spawn(
        tempfile::tempdir().unwrap(),
        &["--http-port", "0", "--mqtt-port", "0"],
    );
    let admin_password = s
        .stdout
        .join("")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("password:")
                .map(|p| p.trim().to_owned())
        })
        .unwrap();
    let port = runtime(s.dir.path())["mqtt_port"]
        .as_u64()
        .unwrap()
        .to_string();
    let out = porchlight(s.dir.path(), &["device", "add", "admin", "laptop"], None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("MQTT password: "))
        .unwrap()
        .to_owned();
    let wrong = "wrong-password-1234";
    for (version, password) in [
        ("mqttv31", key.as_str()),
        ("mqttv311", admin_password.as_str()),
        ("mqttv5", wrong),
    ] {
        let out = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-u",
                "admin",
                "-P",
                password,
            ])
            .args(["-t", "porchlight/test", "-m", "x"])
            .output()
            .unwrap();
        assert_eq!(out.status.success(), password != wrong, "{version}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(&mut s.child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("MQTT"),
        "the debug log should mention MQTT activity: {log}"
    );
    for secret in [key.as_str(), admin_password.as_str(), wrong] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
}

#[test]
fn a_device_removed_by_the_cli_loses_its_live_session() {
    let mut s = spawn(
        tempfile::tempdir().unwrap(),
        &["--http-port", "0", "--mqtt-port", "0"],
    );
    let port = runtime(s.dir.path())["mqtt_port"]
        .as_u64()
        .unwrap()
        .to_string();
    let cli = |args: &[&str]| porchlight(s.dir.path(), args, None);
    let out = cli(&["device", "add", "admin", "tablet"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("MQTT password: "))
        .unwrap()
        .to_owned();
    // A live subscriber session of that device, as a long-running mosquitto_sub.
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "admin",
            "-P",
            &key,
            "-t",
            "porchlight/#",
        ])
        .args(["-i", "tablet-sub"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sub.try_wait().unwrap().is_none(),
        "mosquitto_sub should be connected"
    );

    assert!(
        cli(&["device", "remove", "admin", "tablet"])
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ended = false;
    while Instant::now() < deadline {
        if sub.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !ended {
        let _ = sub.kill();
    }
    assert!(
        ended,
        "the removed device's session must be closed within seconds"
    );
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}

/// Every connection holds a descriptor: started with a soft limit of 256, the server raises it
/// to the hard limit.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" serve --data-dir \"$1\" --bind 127.0.0.1 --http-port 0 --mqtt-port 0")
        .arg(porchlight_bin())
        .arg(dir.path())
        .env("PORCHLIGHT_ADMIN_PASSWORD", "a test admin password")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("runtime.json").exists() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    assert!(terminate(&mut child).success());
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_ne!(numbers[0], "256", "the soft limit was not raised: {line}");
    assert_eq!(numbers[0], numbers[1], "soft is not the hard limit: {line}");
}
