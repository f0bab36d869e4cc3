//! `porchlight-bench scale`: connection scale (issue 16). N idle connections opened at a
//! ramp rate on each broker in turn (Mosquitto 2, bare rmqtt, Porchlight), held open, then
//! closed: what a reconnect storm after a router reboot costs.
//!
//! Per broker: connect→CONNACK p50/p99 during the ramp (TCP connect + MQTT 3.1.1 CONNECT
//! with keep-alive 60 s, over plain TCP), the connections that failed (refused CONNACKs by
//! return code, other failures by kind), the broker's VmRSS (`/proc/<pid>/status`) before
//! the ramp and `--hold` seconds after the last CONNACK with every connection still open,
//! the difference per connection, and the CPU of the broker and of the load generator
//! over the ramp. Logins: Porchlight device keys (made with `POST /api/devices`, one per
//! user), Mosquitto passwords (its password file), both used round-robin by `--logins`
//! users with a distinct client id per connection; bare rmqtt anonymous.
//!
//! The brokers and the load generator reuse the `tls` mode's harness (`tls.rs`): the same
//! broker set-ups, the child process per measurement (`tls-load` with a `Phase::Scale`),
//! and its CPU sampling. Every connection takes a file descriptor in the load generator
//! and one in the broker: the bench raises its own `RLIMIT_NOFILE` soft limit to the hard
//! limit (`prlimit`) before it starts anything, so the brokers and the load generator
//! inherit it, and caps N below it (saying so).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::BufReader;

use crate::history::proc_status_kb;
use crate::tls::{
    B_PLAIN, Brokers, Dialer, LoadSpec, M_PLAIN, P_PLAIN, Phase, Report, Setup, Skip, Target,
    TopicRoot, cpu_now, cpu_pct, measure, mqtt_connack, percentile,
};

#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Idle connections per broker.
    #[arg(long, default_value_t = 5_000)]
    connections: usize,
    /// Connections opened per second during the ramp.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Distinct logins (users with one device key / password each), used round-robin.
    #[arg(long, default_value_t = 50)]
    logins: usize,
    /// Seconds the connections stay open after the last CONNACK, before the RSS is read
    /// (at most 60: the keep-alive is 60 s and the load generator sends no PINGREQ).
    #[arg(long, default_value_t = 2)]
    hold: u64,
    /// The brokers' inflight window per session.
    #[arg(long, default_value_t = 32)]
    inflight: u16,
    /// Skip Mosquitto even if it is installed.
    #[arg(long)]
    no_mosquitto: bool,
    /// Skip the bare rmqtt broker.
    #[arg(long)]
    no_bare_rmqtt: bool,
}

/// The soft and hard `RLIMIT_NOFILE` of process `pid`, from `/proc/<pid>/limits`.
fn nofile(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line.split_whitespace().skip(3);
    let mut value = || -> Option<u64> {
        match fields.next()? {
            "unlimited" => Some(u64::MAX),
            v => v.parse().ok(),
        }
    };
    Some((value()?, value()?))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children started later
/// inherit it); returns the limits then in force.
fn raise_nofile() -> Option<(u64, u64)> {
    let pid = std::process::id();
    let (soft, hard) = nofile(pid)?;
    if soft < hard {
        let _ = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(pid.to_string())
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    nofile(pid)
}

pub async fn run(args: ScaleArgs) -> Result<()> {
    let limits = raise_nofile();
    let mut n = args.connections.max(1);
    match limits {
        Some((soft, hard)) => {
            // Room for the brokers' and the load generator's other descriptors.
            let room = usize::try_from(soft.saturating_sub(256)).unwrap_or(usize::MAX);
            println!(
                "RLIMIT_NOFILE: soft {soft} hard {hard} (the bench raised its soft limit to the hard one; the brokers and the load generator inherit it)"
            );
            if n > room {
                println!(
                    "connections: capped at {room} (asked {n}): the file descriptor limit {soft} minus 256"
                );
                n = room.max(1);
            }
        }
        None => println!("RLIMIT_NOFILE: unknown (no /proc/self/limits)"),
    }
    let hold = args.hold.min(60);
    let tmp = tempfile::tempdir()?;
    let setup = Setup {
        publishers: args.logins.max(1),
        inflight: args.inflight,
        x25519: false,
        topic: TopicRoot::Owntracks,
        bare_empty_hooks: false,
    };
    let max_connections = n + args.logins + 64;
    let mut targets: Vec<Target> = Vec::new();
    let brokers = Brokers::start(
        tmp.path(),
        &setup,
        max_connections,
        Skip {
            mosquitto: args.no_mosquitto,
            bare_rmqtt: args.no_bare_rmqtt,
        },
        &mut targets,
    )
    .await?;
    println!("processes: {}", brokers.describe());
    println!(
        "porchlight: config.toml in its data dir: {}; bare rmqtt: max_connections {max_connections}, anonymous; mosquitto: max_connections unlimited (its default), password file",
        crate::tls::porchlight_mqtt_config(args.inflight, max_connections)
            .trim_end()
            .replace('\n', "; ")
    );
    targets.retain(|t| [P_PLAIN, M_PLAIN, B_PLAIN].contains(&t.label));
    targets.sort_by_key(|t| t.broker);
    println!(
        "scale: {n} connections per broker at {:.0}/s, {} logins round-robin (Porchlight device keys, Mosquitto passwords; bare rmqtt anonymous), keep-alive 60 s, RSS read {hold} s after the last CONNACK",
        args.rate,
        args.logins.max(1)
    );

    println!();
    println!(
        "{:<20} {:>9} {:>11} {:>9} {:>9} {:>13} {:>11} {:>7} {:>7}  failures",
        "broker", "held", "connects/s", "p50 ms", "p99 ms", "RSS MB", "kB/conn", "broker", "load"
    );
    let mut results = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let spec = LoadSpec {
            tag: format!("s{i}"),
            endpoint: t.endpoint.clone(),
            broker_pid: t.pid,
            phase: Phase::Scale {
                connections: n,
                rate: args.rate,
                hold_ms: hold * 1000,
            },
        };
        let report = measure(tmp.path(), &spec).await;
        print_row(t.label, &report);
        results.push((t.label, report));
    }
    let get = |l: &str| results.iter().find(|(x, _)| *x == l).map(|(_, r)| r);
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        }
    };
    for (other, name) in [(M_PLAIN, "mosquitto"), (B_PLAIN, "bare-rmqtt")] {
        if let (Some(p), Some(o)) = (get(P_PLAIN), get(other)) {
            println!(
                "ratios porchlight/{name}: connect p99 {}  kB per connection {}",
                ratio(p.p99_us as f64, o.p99_us as f64),
                ratio(per_connection_kb(p), per_connection_kb(o))
            );
        }
    }

    brokers.stop().await;
    Ok(())
}

fn per_connection_kb(r: &Report) -> f64 {
    r.rss_after_kb.saturating_sub(r.rss_before_kb) as f64 / (r.ok.max(1) as f64)
}

fn failures(r: &Report) -> String {
    if r.refusals.is_empty() {
        return r.failed.to_string();
    }
    let kinds: Vec<String> = r
        .refusals
        .iter()
        .map(|(k, v)| format!("{v}× {k}"))
        .collect();
    format!("{} ({})", r.failed, kinds.join(", "))
}

/// One broker's row: held, connects/s, connect→CONNACK p50/p99, RSS before → after the
/// ramp and per connection, CPU of the broker and the load generator, failures by kind.
fn print_row(label: &str, r: &Report) {
    println!(
        "{label:<20} {:>9} {:>11.0} {:>9.2} {:>9.2} {:>13} {:>11.1} {:>6.0}% {:>6.0}%  {}",
        r.ok,
        r.rate,
        r.p50_us as f64 / 1000.0,
        r.p99_us as f64 / 1000.0,
        format!(
            "{:.1}→{:.1}",
            r.rss_before_kb as f64 / 1024.0,
            r.rss_after_kb as f64 / 1024.0
        ),
        per_connection_kb(r),
        cpu_pct(r.broker_cpu_s, r.wall_s),
        cpu_pct(r.load_cpu_s, r.wall_s),
        failures(r)
    );
    if let Some(e) = &r.first_error {
        println!("        first error: {e}");
    }
}

/// The load generator's side: opens `connections` connections at `rate`/s, each logging in
/// (CONNECT → CONNACK) and then left idle; `hold` after the last CONNACK reads the broker's
/// RSS with all of them open, then closes them.
pub(crate) async fn scale_phase(
    spec: &LoadSpec,
    connections: usize,
    rate: f64,
    hold: Duration,
) -> Result<Report> {
    let dialer = Arc::new(Dialer::new(&spec.endpoint)?);
    let rss_before_kb = proc_status_kb(spec.broker_pid, "VmRSS:");
    let cpu = cpu_now(spec.broker_pid);
    let started = tokio::time::Instant::now();
    let step = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        tokio::time::sleep_until(started + step.mul_f64(i as f64)).await;
        let dialer = dialer.clone();
        let login = spec
            .endpoint
            .logins
            .get(i % spec.endpoint.logins.len().max(1))
            .and_then(|l| spec.endpoint.credentials(l))
            .cloned();
        let id = format!("{}-{i}", spec.tag);
        tasks.spawn(async move {
            let t0 = Instant::now();
            let (conn, _) = dialer.open(i).await?;
            let (r, mut w) = tokio::io::split(conn);
            let mut r = BufReader::new(r);
            let code = mqtt_connack(&mut r, &mut w, &id, login.as_ref()).await?;
            anyhow::Ok((t0.elapsed(), code, (r, w)))
        });
    }
    let mut report = Report::default();
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(connections);
    // Held open until the RSS is read.
    let mut held = Vec::with_capacity(connections);
    while let Some(done) = tasks.join_next().await {
        match done.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((took, 0, conn)) => {
                latencies.push(took.as_micros() as u64);
                held.push(conn);
            }
            Ok((_, code, _)) => {
                report.failed += 1;
                *refusals.entry(format!("CONNACK {code}")).or_default() += 1;
            }
            Err(e) => {
                report.failed += 1;
                *refusals.entry(format!("{e}")).or_default() += 1;
                report.first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    report.wall_s = started.elapsed().as_secs_f64();
    let now = cpu_now(spec.broker_pid);
    report.broker_cpu_s = cpu.0.until(now.0);
    report.load_cpu_s = cpu.1.until(now.1);
    tokio::time::sleep(hold).await;
    report.rss_before_kb = rss_before_kb;
    report.rss_after_kb = proc_status_kb(spec.broker_pid, "VmRSS:");
    drop(held);
    latencies.sort_unstable();
    report.ok = latencies.len() as u64;
    report.rate = report.ok as f64 / report.wall_s.max(1e-9);
    report.p50_us = percentile(&latencies, 0.50);
    report.p99_us = percentile(&latencies, 0.99);
    report.refusals = refusals;
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::tls::{Endpoint, bare_rmqtt_target};

    fn spec(endpoint: Endpoint, n: usize) -> LoadSpec {
        LoadSpec {
            tag: "scale".into(),
            endpoint,
            broker_pid: std::process::id(),
            phase: Phase::Scale {
                connections: n,
                rate: 400.0,
                hold_ms: 100,
            },
        }
    }

    #[test]
    fn the_file_descriptor_limits_are_read_and_the_soft_one_raised() {
        let (soft, hard) = raise_nofile().unwrap();
        assert!(soft > 0 && soft <= hard, "{soft} {hard}");
    }

    /// 20 connections on the bare broker: all held, latencies and the broker's RSS (this
    /// process) reported.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scale_phase_holds_twenty_connections() {
        let (addr, task) = crate::bare_rmqtt::serve(&crate::bare_rmqtt::BareArgs {
            port: 0,
            port_file: None,
            inflight: 32,
            queue: 1000,
            max_connections: 1000,
            empty_hooks: false,
        })
        .await
        .unwrap();
        let target = bare_rmqtt_target(std::process::id(), addr, 1);
        let r = scale_phase(
            &spec(target.endpoint, 20),
            20,
            400.0,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        assert_eq!((r.ok, r.failed), (20, 0), "{r:?}");
        assert!(r.p50_us > 0 && r.p99_us >= r.p50_us, "{r:?}");
        assert!(r.rss_before_kb > 0 && r.rss_after_kb > 0, "{r:?}");
        assert!(r.rate > 0.0 && r.wall_s > 0.0, "{r:?}");
        task.abort();
    }

    /// Porchlight with device keys and `max_connections` 10: ten of twenty are held, the
    /// others are counted by their CONNACK code.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scale_phase_counts_refused_connacks_by_code() {
        let dir = tempfile::tempdir().unwrap();
        let options = porchlight_server::LoadOptions {
            data_dir: Some(dir.path().join("porchlight")),
            http_port: Some(0),
            mqtt_port: Some(0),
            bind: Some([127, 0, 0, 1].into()),
            ..Default::default()
        };
        let env = [
            (
                "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
                "scale admin pw".to_owned(),
            ),
            (
                "PORCHLIGHT_MQTT__MAX_CONNECTIONS".to_owned(),
                "10".to_owned(),
            ),
        ];
        let config = porchlight_server::Config::load_from(&options, env).unwrap();
        let running = porchlight_server::start(config).await.unwrap();
        let users = crate::ingest::create_users(&running, 2).await.unwrap();
        let logins = crate::ingest::create_devices(&running, &users, "scale", 2)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.user, l.key))
            .collect();
        let endpoint = Endpoint {
            addr: running.mqtt_addr.unwrap(),
            tls: None,
            logins,
            anonymous: false,
        };
        let r = scale_phase(&spec(endpoint, 20), 20, 400.0, Duration::from_millis(100))
            .await
            .unwrap();
        // rmqtt counts sessions already stored, so CONNECTs authenticating at the same moment
        // can pass the limit together: a few more than 10 on a loaded machine.
        assert_eq!(r.ok + r.failed, 20, "{r:?}");
        assert!((10..=13).contains(&r.ok), "{r:?}");
        // Sessions above the limit: "server unavailable", as the issue saw at 1,025.
        assert_eq!(r.refusals.get("CONNACK 3"), Some(&r.failed), "{r:?}");
        assert_eq!(r.refusals.len(), 1, "{r:?}");
        running.shutdown().await;
    }
}
