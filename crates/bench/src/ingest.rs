//! `porchlight-bench ingest`: sustained OwnTracks ingest through the real server, commit
//! before ack (ADR 0008), and the proof that nothing acknowledged was lost.
//!
//! The server runs in this process (`porchlight_server::start`, a temporary data dir); the
//! load runs in a **child process** (`porchlight-bench ingest-load`, hidden) so that each
//! side's CPU can be read on its own: if the generator is the busy one, it is measuring
//! itself. Phases:
//! - **MQTT**: `--connections` lean raw-TCP publishers ([`crate::lean_mqtt`]), each its own
//!   device key, QoS 1 with `--window` packet ids in flight, ~270-byte location JSON with a
//!   `tst` one second later per message, for `--duration` seconds. Reports points/s
//!   acknowledged, p50/p99 publish→PUBACK, and then reads every device's history back from
//!   the store: stored must be ≥ acknowledged for each device (0 lost).
//! - **HTTP**: `--http-clients` keep-alive clients posting the same JSON to `POST /pub` with
//!   Basic auth (device keys), one request at a time each, for `--http-duration` seconds.
//!
//! CPU: each process's user+system time over its phase, from `/proc/<pid>/stat` (Linux;
//! the server's figure includes this bench's own main thread, which only waits).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use serde_json::{Value, json};

use crate::lean_mqtt;

#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// MQTT connections (each its own device key).
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// QoS 1 packet ids in flight per connection.
    #[arg(long, default_value_t = 16)]
    window: u16,
    /// Seconds of MQTT load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Concurrent keep-alive HTTP `/pub` clients (0 = skip the HTTP phase).
    #[arg(long, default_value_t = 32)]
    http_clients: usize,
    /// Seconds of HTTP load.
    #[arg(long, default_value_t = 10)]
    http_duration: u64,
    /// Accounts the devices are spread over.
    #[arg(long, default_value_t = 8)]
    users: usize,
}

/// The load generator's side, run as a child process by [`run`].
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// The broker's address (MQTT phase).
    #[arg(long)]
    mqtt: Option<SocketAddr>,
    /// The server's base URL (HTTP phase).
    #[arg(long)]
    http: Option<String>,
    /// A file of `user<TAB>device<TAB>key` lines, one per connection or client.
    #[arg(long)]
    logins: PathBuf,
    #[arg(long, default_value_t = 16)]
    window: u16,
    #[arg(long)]
    duration: u64,
}

/// One device's login.
struct Login {
    user: String,
    device: String,
    key: String,
}

/// The real server on free loopback ports, its data in `dir`.
async fn start_server(dir: &Path) -> Result<porchlight_server::Running> {
    let options = porchlight_server::LoadOptions {
        data_dir: Some(dir.join("porchlight")),
        http_port: Some(0),
        mqtt_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..Default::default()
    };
    let env = [(
        "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
        "bench admin password".to_owned(),
    )];
    let config = porchlight_server::Config::load_from(&options, env)?;
    Ok(porchlight_server::start(config).await?)
}

pub async fn run(args: IngestArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = start_server(dir.path()).await?;
    let mqtt = running.mqtt_addr.context("the broker did not start")?;
    let http = format!("http://{}", running.http_addr);
    println!(
        "ingest bench: {} MQTT connections (window {}) for {} s, then {} HTTP /pub clients for {} s; \
         server in-process (pid {}), load in a child process",
        args.connections,
        args.window,
        args.duration,
        args.http_clients,
        args.http_duration,
        std::process::id()
    );

    let users = create_users(&running, args.users.max(1)).await?;
    let mqtt_logins = create_devices(&running, &users, "m", args.connections).await?;
    let file = dir.path().join("mqtt-logins.tsv");
    write_logins(&file, &mqtt_logins)?;
    let load = LoadArgs {
        mqtt: Some(mqtt),
        http: None,
        logins: file,
        window: args.window,
        duration: args.duration,
    };
    let report = phase(&load).await?;
    print_phase("MQTT QoS 1", &report);
    check_stored(&running, &mqtt_logins, &report).await?;

    if args.http_clients > 0 {
        let http_logins = create_devices(&running, &users, "h", args.http_clients).await?;
        let file = dir.path().join("http-logins.tsv");
        write_logins(&file, &http_logins)?;
        let load = LoadArgs {
            mqtt: None,
            http: Some(http),
            logins: file,
            window: 1,
            duration: args.http_duration,
        };
        let report = phase(&load).await?;
        print_phase("HTTP /pub", &report);
        check_stored(&running, &http_logins, &report).await?;
    }
    running.shutdown().await;
    Ok(())
}

async fn create_users(running: &porchlight_server::Running, n: usize) -> Result<Vec<String>> {
    let mut users = Vec::new();
    for i in 0..n {
        let name = format!("ingest{i}");
        running
            .store()
            .create_user(
                &name,
                Role::User,
                &Secret::new("bench password"),
                SystemTime::now(),
            )
            .await?;
        users.push(name);
    }
    Ok(users)
}

async fn create_devices(
    running: &porchlight_server::Running,
    users: &[String],
    prefix: &str,
    n: usize,
) -> Result<Vec<Login>> {
    let mut logins = Vec::new();
    for i in 0..n {
        let user = &users[i % users.len()];
        let device = format!("{prefix}{i}");
        let (_, key) = running
            .store()
            .add_device(user, &device, SystemTime::now())
            .await?;
        logins.push(Login {
            user: user.clone(),
            device,
            key: key.expose().to_owned(),
        });
    }
    Ok(logins)
}

fn write_logins(path: &Path, logins: &[Login]) -> Result<()> {
    let text: String = logins
        .iter()
        .map(|l| format!("{}\t{}\t{}\n", l.user, l.device, l.key))
        .collect();
    std::fs::write(path, text)?;
    Ok(())
}

fn read_logins(path: &Path) -> Result<Vec<Login>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| {
            let mut parts = l.split('\t');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(user), Some(device), Some(key)) => Ok(Login {
                    user: user.to_owned(),
                    device: device.to_owned(),
                    key: key.to_owned(),
                }),
                _ => bail!("bad login line"),
            }
        })
        .collect()
}

/// CPU seconds (user + system) of a process so far. Linux's USER_HZ is 100.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) — utime and stime are the
    // 14th and 15th fields, i.e. the 12th and 13th after ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs one load phase in a child process and returns its report, with the server's CPU.
async fn phase(load: &LoadArgs) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("ingest-load")
        .arg("--logins")
        .arg(&load.logins)
        .args(["--window", &load.window.to_string()])
        .args(["--duration", &load.duration.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(mqtt) = load.mqtt {
        cmd.args(["--mqtt", &mqtt.to_string()]);
    }
    if let Some(http) = &load.http {
        cmd.args(["--http", http]);
    }
    let server_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let child = cmd.spawn().context("starting the load generator")?;
    let out = child.wait_with_output().await?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(std::process::id()) - server_cpu_before;
    if !out.status.success() {
        bail!("the load generator failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the load generator printed no report")?;
    let mut report: Value = serde_json::from_str(line)?;
    report["server_cpu_s"] = json!(server_cpu);
    report["wall_s"] = json!(wall);
    Ok(report)
}

fn print_phase(name: &str, r: &Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let load_secs = f("load_s").max(1e-9);
    println!(
        "{name:<10} {:>9.0} points/s acknowledged ({} acked / {} sent in {:.1} s, {} error(s)); \
         publish→ack p50 {:.1} ms p99 {:.1} ms",
        f("acked") / load_secs,
        f("acked"),
        f("sent"),
        load_secs,
        f("errors"),
        f("p50_us") / 1000.0,
        f("p99_us") / 1000.0
    );
    println!(
        "{name:<10} CPU over {:.1} s wall: server {:.1} s ({:.0}% of one core), load generator {:.1} s ({:.0}%){}",
        f("wall_s"),
        f("server_cpu_s"),
        f("server_cpu_s") / f("wall_s").max(1e-9) * 100.0,
        f("load_cpu_s"),
        f("load_cpu_s") / f("wall_s").max(1e-9) * 100.0,
        if f("load_cpu_s") > f("server_cpu_s") {
            "  <- the load generator is the busier one: it is partly measuring itself"
        } else {
            ""
        }
    );
    if let Some(e) = r["first_error"].as_str() {
        println!("{name:<10} first error: {e}");
    }
}

/// Reads each device's history back; every acknowledged point must be stored.
async fn check_stored(
    running: &porchlight_server::Running,
    logins: &[Login],
    report: &Value,
) -> Result<()> {
    let store = running.store();
    let devices = store.owntracks_devices(None).await?;
    let (mut stored, mut acked, mut lost) = (0u64, 0u64, 0u64);
    for l in logins {
        let key = format!("{}/{}", l.user, l.device);
        let n_acked = report["acked_per_device"][&key].as_u64().unwrap_or(0);
        let n_stored = match devices
            .iter()
            .find(|d| d.username == l.user && d.name == l.device)
        {
            Some(d) => store
                .location_window(d.id, 0, i64::MAX, u32::MAX)
                .await?
                .len() as u64,
            None => 0,
        };
        acked += n_acked;
        stored += n_stored;
        lost += n_acked.saturating_sub(n_stored);
    }
    println!(
        "           stored {stored} points for {acked} acknowledged: {lost} lost{}",
        if lost == 0 { "" } else { "  <- LOST POINTS" }
    );
    if lost > 0 {
        bail!("{lost} acknowledged points are missing from the store");
    }
    Ok(())
}

/// A ~270-byte OwnTracks location for the `i`-th point of a device.
fn location(tid: &str, i: u64, tst: u64) -> Vec<u8> {
    let frac = i % 100_000;
    format!(
        r#"{{"_type":"location","lat":52.3{frac:05},"lon":4.9{frac:05},"tst":{tst},"acc":12,"alt":3,"vac":4,"vel":27,"cog":180,"batt":87,"bs":1,"t":"u","tid":"{tid}","conn":"m","m":1,"created_at":{tst},"SSID":"home-network","BSSID":"aa:bb:cc:dd:ee:ff","inregions":["Home"]}}"#
    )
    .into_bytes()
}

/// The child's side: drive the load, print one JSON report line.
pub async fn load(args: LoadArgs) -> Result<()> {
    let logins = read_logins(&args.logins)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.duration.clamp(1, 600));
    let base_tst = 1_700_000_000u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let http = match &args.http {
        Some(url) => Some((
            reqwest::Client::builder()
                .pool_max_idle_per_host(logins.len())
                .timeout(Duration::from_secs(30))
                .build()?,
            format!("{url}/pub"),
        )),
        None => None,
    };
    for (n, l) in logins.into_iter().enumerate() {
        let tid = format!("{:02}", n % 100);
        if let Some((client, url)) = &http {
            let (client, url) = (client.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                http_client(client, url, l, tid, base_tst, deadline).await
            }));
        } else {
            let addr = args.mqtt.context("--mqtt or --http is required")?;
            let window = args.window;
            tasks.push(tokio::spawn(async move {
                let topic = format!("owntracks/{}/{}", l.user, l.device);
                let key = format!("{}/{}", l.user, l.device);
                let outcome = lean_mqtt::publish(
                    addr,
                    &format!("bench-{}-{}", l.user, l.device),
                    (&l.user, &l.key),
                    &topic,
                    window,
                    deadline,
                    |i| location(&tid, i, base_tst + i),
                )
                .await
                .unwrap_or_else(|e| lean_mqtt::PublisherOutcome {
                    error: Some(format!("{key}: {e:#}")),
                    ..Default::default()
                });
                (key, outcome)
            }));
        }
    }
    let mut acked_per_device = BTreeMap::new();
    let (mut sent, mut acked, mut errors) = (0u64, 0u64, 0u64);
    let mut latencies = Vec::new();
    let mut first_error = None;
    for t in tasks {
        let Ok((key, o)) = t.await else {
            errors += 1;
            continue;
        };
        sent += o.sent;
        acked += o.acked;
        if let Some(e) = o.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
        latencies.extend(o.latencies_us);
        acked_per_device.insert(key, o.acked);
    }
    let load_s = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let report = json!({
        "sent": sent, "acked": acked, "errors": errors, "first_error": first_error,
        "p50_us": pct(0.50), "p99_us": pct(0.99), "load_s": load_s,
        "load_cpu_s": cpu_seconds(std::process::id()),
        "acked_per_device": acked_per_device,
    });
    println!("{report}");
    Ok(())
}

/// One keep-alive HTTP-mode phone: posts locations one at a time until `deadline`.
async fn http_client(
    client: reqwest::Client,
    url: String,
    l: Login,
    tid: String,
    base_tst: u64,
    deadline: tokio::time::Instant,
) -> (String, lean_mqtt::PublisherOutcome) {
    let key = format!("{}/{}", l.user, l.device);
    let mut o = lean_mqtt::PublisherOutcome::default();
    let counter = Arc::new(AtomicU64::new(0));
    while tokio::time::Instant::now() < deadline {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        o.sent += 1;
        let response = client
            .post(&url)
            .basic_auth(&l.user, Some(&l.key))
            .header("X-Limit-D", &l.device)
            .header("Content-Type", "application/json")
            .body(location(&tid, i, base_tst + i))
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                o.acked += 1;
                o.latencies_us
                    .push(u32::try_from(sent_at.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok(r) => {
                o.error = Some(format!("{key}: /pub answered {}", r.status()));
                break;
            }
            Err(e) => {
                o.error = Some(format!("{key}: /pub failed: {e}"));
                break;
            }
        }
    }
    (key, o)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The lean publisher against the real server: its PUBACKs count exactly what the store
    /// holds (commit before ack), and it ends without errors.
    #[tokio::test]
    async fn lean_publisher_acks_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let running = start_server(dir.path()).await.unwrap();
        let users = create_users(&running, 1).await.unwrap();
        let logins = create_devices(&running, &users, "m", 2).await.unwrap();
        let mut acked = serde_json::Map::new();
        for l in &logins {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
            let topic = format!("owntracks/{}/{}", l.user, l.device);
            let o = lean_mqtt::publish(
                running.mqtt_addr.unwrap(),
                &l.device,
                (&l.user, &l.key),
                &topic,
                4,
                deadline,
                |i| location("t1", i, 1_700_000_000 + i),
            )
            .await
            .unwrap();
            assert!(o.error.is_none(), "{:?}", o.error);
            assert!(o.acked > 0 && o.acked == o.sent, "{o:?}");
            assert_eq!(o.latencies_us.len() as u64, o.acked);
            let device = running
                .store()
                .owntracks_devices(None)
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.name == l.device)
                .unwrap();
            let stored = running
                .store()
                .location_window(device.id, 0, i64::MAX, u32::MAX)
                .await
                .unwrap();
            assert_eq!(stored.len() as u64, o.acked);
            acked.insert(format!("{}/{}", l.user, l.device), json!(o.acked));
        }
        let report = json!({ "acked_per_device": acked });
        check_stored(&running, &logins, &report).await.unwrap();
        // One more acknowledged than stored is a loss, and the check says so.
        let key = format!("{}/{}", logins[0].user, logins[0].device);
        let mut inflated = report.clone();
        inflated["acked_per_device"][&key] = json!(acked[&key].as_u64().unwrap() + 1);
        assert!(check_stored(&running, &logins, &inflated).await.is_err());
        running.shutdown().await;
    }

    #[test]
    fn a_location_is_a_valid_owntracks_message_of_about_270_bytes() {
        let payload = location("t1", 7, 1_700_000_007);
        assert!((240..=300).contains(&payload.len()), "{}", payload.len());
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["_type"], "location");
        assert_eq!(v["tst"], 1_700_000_007);
    }

    #[test]
    fn cpu_seconds_reads_this_process() {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_seconds(std::process::id()) > 0.0);
    }
}
