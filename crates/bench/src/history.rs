//! `porchlight-bench history`: reading history over HTTP with a large store, as the issue's
//! performance section asks (1,000,000 points: one device's day < 20 ms, a year downsampled
//! < 200 ms), plus the database size per million points and the server's idle RSS.
//!
//! 1. **Fill**: `--points` synthetic locations of `--devices` devices (one user each) over one
//!    year, written straight through the store crate (`Store::ingest_owntracks`, batches of
//!    500, 4 in flight, as live ingest writes them, interleaved in time) into a fresh data dir.
//!    Reports points/s and this process's CPU (the writer runs here).
//! 2. **Serve**: the real `porchlight serve` binary (next to this one: build both with
//!    `cargo build --release -p porchlight-bench -p porchlight`) on that data dir, in a child
//!    process, so that its RSS and CPU are its own. Idle RSS (`VmRSS` of `/proc/<pid>/status`)
//!    is read after start and again after the queries, with 1M points stored.
//! 3. **Query** over HTTP, one request at a time, each timed from request to the last byte of
//!    the body (so the figures include loopback HTTP and JSON): one device's one-day window
//!    through our track API and the Recorder's `/api/0/locations`, and one device's year
//!    downsampled to 1,000 points through the track API (and, for comparison, the whole year
//!    unthinned through `/api/0/locations`). p50/p99/max per kind, and both processes' CPU.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use porchlight_store::{
    IngestOutcome, LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher, Store,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::ingest::cpu_seconds;

#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Points stored in all.
    #[arg(long, default_value_t = 1_000_000)]
    points: u64,
    /// Devices the points are spread over (one user each).
    #[arg(long, default_value_t = 10)]
    devices: u64,
    /// Requests per kind of query.
    #[arg(long, default_value_t = 30)]
    requests: usize,
    /// Keep the data dir (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

const YEAR_START: i64 = 1_700_000_000;
const YEAR: i64 = 365 * 24 * 3600;
const BATCH: usize = 500;
const ADMIN_PASSWORD: &str = "history bench admin password";

pub async fn run(args: HistoryArgs) -> Result<()> {
    let devices = args.devices.max(1);
    let per_device = (args.points / devices).max(1);
    let points = per_device * devices;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("porchlight");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("porchlight.db");
    println!(
        "history bench: {points} points, {devices} devices ({per_device} each, one every {} s over a year)",
        YEAR / per_device as i64
    );

    let (device_id, filled) = fill(&db, devices, per_device).await?;
    println!(
        "fill       {:>9.0} points/s through the store ({points} points in {:.1} s); bench CPU {:.1} s ({:.0}% of one core)",
        points as f64 / filled.wall.max(1e-9),
        filled.wall,
        filled.cpu,
        filled.cpu / filled.wall.max(1e-9) * 100.0
    );
    let (size, wal) = db_size(&db);
    println!(
        "size       {:.1} MB on disk ({:.1} MB per million points; of it WAL {:.1} MB)",
        size as f64 / 1e6,
        size as f64 / 1e6 * 1e6 / points as f64,
        wal as f64 / 1e6
    );

    let server = Server::start(&dir).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "idle RSS   {:.1} MB after start (pid {}), {points} points stored",
        server.rss_kb() as f64 / 1024.0,
        server.pid
    );

    let http = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = server.url.clone();
    let r = http
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("login answered {}", r.status());
    }

    let user = format!("user{}", 3.min(devices - 1));
    let n = args.requests.max(1);
    let day_start = |k: usize| YEAR_START + (11 + (k as i64 * 12) % 350) * 86_400 + 7 * 3600;
    let server_cpu = cpu_seconds(server.pid);
    let bench_cpu = cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut kinds = Vec::new();
    kinds.push(
        timed("day, track API", n, &http, |k| {
            let from = day_start(k);
            format!(
                "{base}/api/owntracks/devices/{device_id}/track?from={}&to={}&max_points=5000",
                from * 1000,
                (from + 86_400) * 1000
            )
        })
        .await?,
    );
    kinds
        .last_mut()
        .into_iter()
        .for_each(|k| k.rss_after_kb = server.rss_kb());
    kinds.push(
        timed("day, /api/0/locations", n, &http, |k| {
            let from = day_start(k);
            format!(
                "{base}/api/0/locations?user={user}&device=phone&from={from}&to={}",
                from + 86_400
            )
        })
        .await?,
    );
    kinds
        .last_mut()
        .into_iter()
        .for_each(|k| k.rss_after_kb = server.rss_kb());
    kinds.push(
        timed("year → 1,000 points, track API", n, &http, |_| {
            format!(
                "{base}/api/owntracks/devices/{device_id}/track?from={}&to={}&max_points=1000",
                YEAR_START * 1000,
                (YEAR_START + YEAR + 1) * 1000
            )
        })
        .await?,
    );
    kinds
        .last_mut()
        .into_iter()
        .for_each(|k| k.rss_after_kb = server.rss_kb());
    kinds.push(
        timed("year unthinned, /api/0/locations", 3, &http, |_| {
            format!(
                "{base}/api/0/locations?user={user}&device=phone&from={YEAR_START}&to={}",
                YEAR_START + YEAR + 1
            )
        })
        .await?,
    );
    kinds
        .last_mut()
        .into_iter()
        .for_each(|k| k.rss_after_kb = server.rss_kb());
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(server.pid) - server_cpu;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu;
    for k in &kinds {
        println!(
            "{:<34} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests, {} points / {:.0} kB per answer; server RSS then {:.0} MB)",
            k.name,
            k.p50_ms,
            k.p99_ms,
            k.max_ms,
            k.requests,
            k.points,
            k.bytes as f64 / 1024.0,
            k.rss_after_kb as f64 / 1024.0
        );
    }
    println!(
        "queries    CPU over {wall:.1} s wall: server {server_cpu:.2} s ({:.0}% of one core), bench client {bench_cpu:.2} s ({:.0}%){}",
        server_cpu / wall.max(1e-9) * 100.0,
        bench_cpu / wall.max(1e-9) * 100.0,
        if bench_cpu > server_cpu {
            "  <- the client is the busier one: it is partly measuring itself"
        } else {
            ""
        }
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "idle RSS   {:.1} MB after the queries (peak {:.1} MB)",
        server.rss_kb() as f64 / 1024.0,
        server.hwm_kb() as f64 / 1024.0
    );
    server.stop().await;
    if args.keep {
        let kept = tmp.keep();
        println!("data dir kept: {}", kept.join("porchlight").display());
    }
    Ok(())
}

struct Filled {
    wall: f64,
    cpu: f64,
}

/// Creates the admin and one user per device, writes the points; returns the measured
/// device's id (`user3/phone`, or the last one with fewer devices).
async fn fill(db: &Path, devices: u64, per_device: u64) -> Result<(i64, Filled)> {
    let store = {
        let db = db.to_path_buf();
        tokio::task::spawn_blocking(move || Store::open(&db)).await??
    };
    store
        .create_user(
            "admin",
            Role::Admin,
            &Secret::new(ADMIN_PASSWORD),
            SystemTime::now(),
        )
        .await?;
    let mut users = Vec::new();
    for d in 0..devices {
        let user = store
            .create_user(
                &format!("user{d}"),
                Role::User,
                &Secret::new("history bench password"),
                SystemTime::now(),
            )
            .await?;
        users.push(user.id);
    }
    let cpu = cpu_seconds(std::process::id());
    let started = Instant::now();
    let step = YEAR / per_device as i64;
    let now = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut walk = Walk::new(devices);
    let total = per_device * devices;
    let mut i = 0u64;
    let mut new = 0usize;
    while i < total {
        let end = (i + BATCH as u64).min(total);
        let batch: Vec<OwnTracksMessage> = (i..end)
            .map(|j| {
                let device = j % devices;
                let tst = YEAR_START + (j / devices) as i64 * step;
                walk.point(users[device as usize], device, tst)
            })
            .collect();
        i = end;
        if tasks.len() >= 4
            && let Some(done) = tasks.join_next().await
        {
            new += done??;
        }
        let store = store.clone();
        tasks.spawn(async move {
            let outcomes = store.ingest_owntracks(batch, now).await?;
            anyhow::Ok(
                outcomes
                    .iter()
                    .filter(|o| **o == IngestOutcome::New)
                    .count(),
            )
        });
    }
    while let Some(done) = tasks.join_next().await {
        new += done??;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id()) - cpu;
    if new as u64 != total {
        bail!("{new} of {total} points stored as new");
    }
    let measured = format!("user{}", 3.min(devices - 1));
    let device = store
        .owntracks_devices(None)
        .await?
        .into_iter()
        .find(|d| d.username == measured)
        .context("the measured device was not stored")?;
    store.close().await;
    Ok((device.id, Filled { wall, cpu }))
}

/// Random walks, one per device, with stops (a device stands still for a while) so that the
/// downsampled track has both turns and stops to keep.
struct Walk {
    seed: u64,
    pos: Vec<(f64, f64)>,
}

impl Walk {
    fn new(devices: u64) -> Walk {
        Walk {
            seed: 0x9E37_79B9_7F4A_7C15,
            pos: (0..devices)
                .map(|d| (52.0 + d as f64 * 0.01, 13.0 + d as f64 * 0.01))
                .collect(),
        }
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn point(&mut self, user_id: i64, device: u64, tst: i64) -> OwnTracksMessage {
        let r = self.next();
        let moving = (tst / 3600) % 3 != 0;
        let (lat, lon) = {
            let p = &mut self.pos[device as usize];
            if moving {
                p.0 += ((r & 0xffff) as f64 / 65535.0 - 0.5) * 0.002;
                p.1 += (((r >> 16) & 0xffff) as f64 / 65535.0 - 0.5) * 0.002;
            }
            *p
        };
        let acc = (r >> 32) % 50 + 3;
        let vel = if moving { (r >> 48) % 30 } else { 0 };
        let batt = 100 - (tst / 3600) % 100;
        let raw = format!(
            r#"{{"_type":"location","acc":{acc},"alt":35,"batt":{batt},"bs":1,"conn":"w","created_at":{tst},"lat":{lat:.6},"lon":{lon:.6},"m":1,"t":"u","tid":"d{device}","tst":{tst},"vac":3,"vel":{vel},"SSID":"home","BSSID":"aa:bb:cc:dd:ee:ff","topic":"owntracks/user{device}/phone"}}"#
        );
        OwnTracksMessage {
            publisher: OwnTracksPublisher {
                user_id,
                device: "phone".into(),
            },
            tst,
            payload: OwnTracksPayload::Location(LocationFields {
                lat,
                lon,
                acc: Some(acc as f64),
                alt: Some(35.0),
                vac: Some(3.0),
                vel: Some(vel as f64),
                batt: Some(batt),
                bs: Some(1),
                conn: Some("w".into()),
                trigger: Some("u".into()),
                tid: Some(format!("d{device}")),
                ..LocationFields::default()
            }),
            raw,
        }
    }
}

/// The database file and its WAL together, and the WAL alone, in bytes.
fn db_size(db: &Path) -> (u64, u64) {
    let size = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
    };
    let wal = size("-wal");
    (size("") + wal, wal)
}

/// One kind of query's figures.
struct Kind {
    name: &'static str,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Points in the last answer.
    points: usize,
    /// Bytes of the last answer.
    bytes: usize,
    /// The server's RSS right after this kind's requests, in kB.
    rss_after_kb: u64,
}

/// `n` GETs of `url(k)`, one at a time, each timed to the end of its body; every answer must
/// be 200 with points in it.
async fn timed(
    name: &'static str,
    n: usize,
    http: &reqwest::Client,
    url: impl Fn(usize) -> String,
) -> Result<Kind> {
    let mut times = Vec::with_capacity(n);
    let (mut points, mut bytes) = (0, 0);
    for k in 0..n {
        let url = url(k);
        let t = Instant::now();
        let r = http.get(&url).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.is_success() {
            bail!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body)?;
        points = v["points"]
            .as_array()
            .or(v["data"].as_array())
            .map_or(0, Vec::len);
        bytes = body.len();
        if points == 0 {
            bail!("{url} answered no points");
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Ok(Kind {
        name,
        requests: n,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        points,
        bytes,
        rss_after_kb: 0,
    })
}

/// `porchlight serve` in a child process (also used by the `tls` mode).
pub(crate) struct Server {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) url: String,
    /// `runtime.json` as the server wrote it (the ports it bound).
    pub(crate) runtime: Value,
}

impl Server {
    async fn start(dir: &Path) -> Result<Server> {
        Server::start_with(dir, &[], &[]).await
    }

    /// Starts `porchlight serve` on `dir`, bound to 127.0.0.1 with free HTTP and MQTT ports,
    /// with `extra` arguments (later flags win) and `env` variables added.
    pub(crate) async fn start_with(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let exe = porchlight_binary()?;
        let _ = std::fs::remove_file(dir.join("runtime.json"));
        let mut child = tokio::process::Command::new(&exe)
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
            .args(extra)
            .env("PORCHLIGHT_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .context("porchlight serve did not start within 60 s")??
                .context("porchlight serve ended before it ran")?;
            if line.contains("Porchlight is running") {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let runtime: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("runtime.json"))?)?;
        let url = runtime["http_url"]
            .as_str()
            .context("no http_url in runtime.json")?
            .trim_end_matches('/')
            .to_owned();
        Ok(Server {
            child,
            pid,
            url,
            runtime,
        })
    }

    fn status_kb(&self, field: &str) -> u64 {
        proc_status_kb(self.pid, field)
    }

    fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    fn hwm_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    pub(crate) async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A `kB` field (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`; 0 if unreadable.
pub(crate) fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The `porchlight` binary next to this bench (same profile).
fn porchlight_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("the bench has no directory")?
        .join("porchlight");
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p porchlight` (the same profile as the bench)",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The fill stores every point, evenly over the year, one device per user, with raw JSON
    /// the parser accepts as the same location.
    #[tokio::test]
    async fn fill_stores_every_point_of_every_device() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("porchlight.db");
        let (measured, _) = fill(&db, 3, 700).await.unwrap();
        let store = Store::open(&db).unwrap();
        let devices = store.owntracks_devices(None).await.unwrap();
        assert_eq!(devices.len(), 3);
        for d in &devices {
            let points = store
                .location_window(d.id, 0, i64::MAX, u32::MAX)
                .await
                .unwrap();
            assert_eq!(points.len(), 700);
            assert_eq!(points[0].tst, YEAR_START);
            assert!(points[699].tst < YEAR_START + YEAR);
        }
        let user2 = devices.iter().find(|d| d.username == "user2").unwrap();
        assert_eq!(user2.id, measured);
        let raw = store
            .location_raw(measured, YEAR_START)
            .await
            .unwrap()
            .unwrap();
        let parsed = porchlight_domain::owntracks::parse_payload(raw.as_bytes(), None).unwrap();
        let porchlight_domain::owntracks::Parsed::Message(m) = parsed else {
            panic!("empty")
        };
        let porchlight_domain::owntracks::Body::Location(l) = m.body() else {
            panic!("not a location")
        };
        assert_eq!(l.tst, YEAR_START);
        store.close().await;
    }
}
