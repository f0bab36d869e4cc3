//! `porchlight-bench alarm`: a command published on the alarm's command topic → the new state
//! received by an MQTT subscriber, on loopback, through the embedded broker, with the PIN
//! verified (argon2id under the PIN profile: t=1, m=8 MiB, p=2). The server runs in this
//! process; Home Assistant's side (publisher and subscriber on one rumqttc connection, logged
//! in with the `homeassistant` role) in a child process, so each side's CPU is its own.
//! Arm home and disarm alternate (the re-arm guard is set to 0); p50/p99 over `--cycles`.
//! Also PIN verification alone, in-process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use porchlight_domain::Role;
use porchlight_domain::alarm::{Pin, Settings, Via, topics};
use porchlight_domain::secret::Secret;
use porchlight_server::alarm::{FixedCode, FixedPins, PinVerifier};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::ingest::cpu_seconds;
use crate::percentile;

const PIN: &str = "4711";
const HA_PASSWORD: &str = "bench home assistant password";

#[derive(clap::Args, Debug, Clone)]
pub struct AlarmArgs {
    /// Command → state round trips (arm home and disarm alternating).
    #[arg(long, default_value_t = 1_000)]
    cycles: usize,
    /// PIN verifications measured alone.
    #[arg(long, default_value_t = 200)]
    verifications: usize,
}

/// The Home Assistant side, run as a child process by [`run`].
#[derive(clap::Args, Debug, Clone)]
pub struct AlarmLoadArgs {
    #[arg(long)]
    mqtt: SocketAddr,
    #[arg(long)]
    cycles: usize,
}

pub async fn run(args: AlarmArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let codes = FixedPins::new(vec![
        FixedCode::new("alice", PIN, false).map_err(anyhow::Error::msg)?,
    ]);
    let running = start_server(dir.path(), codes.clone()).await?;
    let mqtt = running.mqtt_addr.context("the broker did not start")?;
    running
        .store()
        .create_user(
            "homeassistant",
            Role::HomeAssistant,
            &Secret::new(HA_PASSWORD),
            SystemTime::now(),
        )
        .await?;
    let settings = Settings {
        rearm_guard_ms: 0,
        ..Settings::default()
    };
    running
        .store()
        .set_alarm_settings(&settings, SystemTime::now())
        .await?;
    running.alarm().reload().await?;
    println!(
        "alarm bench: {} command → state cycles through the embedded broker, PIN verified (argon2id t=1 m=8MiB p=2); \
         server in-process (pid {}), Home Assistant's side in a child process",
        args.cycles,
        std::process::id()
    );

    let verify = verify_alone(&codes, args.verifications).await?;
    println!(
        "PIN verify alone: p50 {:.2} ms, p99 {:.2} ms over {} verifications",
        verify.0, verify.1, args.verifications
    );

    let exe = std::env::current_exe()?;
    let server_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let out = tokio::process::Command::new(exe)
        .arg("alarm-load")
        .args(["--mqtt", &mqtt.to_string()])
        .args(["--cycles", &args.cycles.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("running the Home Assistant side")?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(std::process::id()) - server_cpu_before;
    if !out.status.success() {
        bail!("the Home Assistant side failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the Home Assistant side printed no report")?;
    let report: Value = serde_json::from_str(line)?;
    let f = |k: &str| report[k].as_f64().unwrap_or(0.0);
    println!(
        "command → state: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} cycles ({:.1} s)",
        f("p50_ms"),
        f("p99_ms"),
        f("max_ms"),
        f("cycles"),
        wall
    );
    println!(
        "CPU: server {:.2} s ({:.0}% of one core), Home Assistant side {:.2} s ({:.0}%)",
        server_cpu,
        server_cpu / wall.max(1e-9) * 100.0,
        f("load_cpu_s"),
        f("load_cpu_s") / wall.max(1e-9) * 100.0,
    );
    let events = running.store().alarm_events(None, None, &[], 10).await?;
    if events.is_empty() {
        bail!("the alarm recorded no events");
    }
    running.shutdown().await;
    Ok(())
}

async fn start_server(dir: &Path, codes: FixedPins) -> Result<porchlight_server::Running> {
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
    let overrides = porchlight_server::Overrides {
        pin_verifier: Some(Arc::new(codes)),
        ..Default::default()
    };
    Ok(porchlight_server::start_with_overrides(config, overrides, |_| {}).await?)
}

/// p50 and p99 of one PIN verification, in ms.
async fn verify_alone(codes: &FixedPins, n: usize) -> Result<(f64, f64)> {
    let pin = Pin::new(PIN).map_err(anyhow::Error::msg)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let started = Instant::now();
        codes
            .verify(&pin, Via::HomeAssistant, None, SystemTime::now())
            .await
            .map_err(|r| anyhow::anyhow!("the bench PIN was refused: {}", r.message))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.50), percentile(&times, 0.99)))
}

/// The next state publish; an error publish fails the bench.
async fn next_state(
    states: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> Result<String> {
    match tokio::time::timeout(Duration::from_secs(10), states.recv()).await {
        Ok(Some((topic, payload))) if topic == topics::ERROR => bail!(
            "the alarm refused a command: {}",
            String::from_utf8_lossy(&payload)
        ),
        Ok(Some((_, payload))) => Ok(String::from_utf8_lossy(&payload).into_owned()),
        _ => bail!("no state within 10 s"),
    }
}

/// Home Assistant's side: subscribe to the state, then publish a command and wait for the
/// state it leads to, `cycles` times; prints a JSON report.
pub async fn load(args: AlarmLoadArgs) -> Result<()> {
    let mut o = MqttOptions::new(
        "bench-home-assistant",
        args.mqtt.ip().to_string(),
        args.mqtt.port(),
    );
    o.set_credentials("homeassistant", HA_PASSWORD);
    o.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(o, 16);
    client.subscribe(topics::STATE, QoS::AtMostOnce).await?;
    client.subscribe(topics::ERROR, QoS::AtMostOnce).await?;
    let (tx, mut states) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event
                && tx.send((p.topic, p.payload.to_vec())).is_err()
            {
                return;
            }
        }
    });
    // The retained state comes first.
    let mut state = next_state(&mut states).await?;
    if state != "disarmed" {
        bail!("the alarm starts {state}, not disarmed");
    }
    let mut latencies = Vec::with_capacity(args.cycles);
    for i in 0..args.cycles {
        let (action, want) = if i % 2 == 0 {
            ("ARM_HOME", "armed_home")
        } else {
            ("DISARM", "disarmed")
        };
        let payload = json!({ "action": action, "code": PIN }).to_string();
        let started = Instant::now();
        client
            .publish(topics::COMMAND, QoS::AtMostOnce, false, payload)
            .await?;
        state = next_state(&mut states).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        if state != want {
            bail!("cycle {i}: {action} led to {state}, not {want}");
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "cycles": args.cycles,
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": latencies.last().copied().unwrap_or(0.0),
            "load_cpu_s": cpu_seconds(std::process::id()),
        })
    );
    Ok(())
}
