//! `porchlight-bench alarm`: a command published on the alarm's command topic → the new state
//! received by an MQTT subscriber, on loopback, through the embedded broker, with the PIN
//! verified (argon2id under the PIN profile: t=1, m=8 MiB, p=2). The server runs in this
//! process; Home Assistant's side (publisher and subscriber on one rumqttc connection, logged
//! in with the `homeassistant` role) in a child process, so each side's CPU is its own.
//! Arm home and disarm alternate (the re-arm guard is set to 0); p50/p99 over `--cycles`.
//! Also PIN verification alone, in-process.
//!
//! `--via mosquitto`: the same through an external broker, Debian's Mosquitto started here on
//! a free loopback port: the server's MQTT link connects to it, Home Assistant's side too,
//! and commands and states travel `porchlight/<node>/alarm/…` there (ADR 0015). Mosquitto's
//! CPU is printed as a third process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use porchlight_domain::Role;
use porchlight_domain::alarm::topics::Topics;
use porchlight_domain::alarm::{Pin, Settings, Via};
use porchlight_domain::mqtt_link::LinkSettings;
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
    /// Where Home Assistant meets the alarm: the embedded broker, or Mosquitto through the
    /// MQTT link.
    #[arg(long, value_enum, default_value_t = Route::Embedded)]
    via: Route,
    /// With `--via mosquitto`: set Mosquitto's `set_tcp_nodelay true` (its default is off).
    #[arg(long)]
    mosquitto_nodelay: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Embedded,
    Mosquitto,
}

/// The Home Assistant side, run as a child process by [`run`].
#[derive(clap::Args, Debug, Clone)]
pub struct AlarmLoadArgs {
    #[arg(long)]
    mqtt: SocketAddr,
    #[arg(long)]
    cycles: usize,
    /// Log in as the `homeassistant` account (the embedded broker); else anonymously.
    #[arg(long)]
    login: bool,
    /// The alarm's topics there: `embedded`, or the node id of the external broker's.
    #[arg(long, default_value = "embedded")]
    topics: String,
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
    let mosquitto = match args.via {
        Route::Embedded => None,
        Route::Mosquitto => Some(Mosquitto::start(dir.path(), args.mosquitto_nodelay)?),
    };
    let (ha_mqtt, topics_arg, login) = match &mosquitto {
        None => (mqtt, "embedded".to_owned(), true),
        Some(m) => {
            link_to(&running, m.addr).await?;
            (m.addr, NODE.to_owned(), false)
        }
    };
    println!(
        "alarm bench: {} command → state cycles through {}, PIN verified (argon2id t=1 m=8MiB p=2); \
         server in-process (pid {}), Home Assistant's side in a child process",
        args.cycles,
        match &mosquitto {
            None => "the embedded broker".to_owned(),
            Some(m) => format!(
                "Mosquitto (pid {}, set_tcp_nodelay {}) and the MQTT link",
                m.pid(),
                args.mosquitto_nodelay
            ),
        },
        std::process::id()
    );

    let verify = verify_alone(&codes, args.verifications).await?;
    println!(
        "PIN verify alone: p50 {:.2} ms, p99 {:.2} ms over {} verifications",
        verify.0, verify.1, args.verifications
    );

    let exe = std::env::current_exe()?;
    let server_cpu_before = cpu_seconds(std::process::id());
    let mosquitto_cpu_before = mosquitto.as_ref().map(|m| cpu_seconds(m.pid()));
    let started = Instant::now();
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("alarm-load")
        .args(["--mqtt", &ha_mqtt.to_string()])
        .args(["--cycles", &args.cycles.to_string()])
        .args(["--topics", &topics_arg]);
    if login {
        command.arg("--login");
    }
    let out = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("running the Home Assistant side")?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(std::process::id()) - server_cpu_before;
    let mosquitto_cpu = mosquitto
        .as_ref()
        .zip(mosquitto_cpu_before)
        .map(|(m, before)| cpu_seconds(m.pid()) - before);
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
    if let Some(cpu) = mosquitto_cpu {
        println!(
            "CPU: Mosquitto {:.2} s ({:.0}% of one core)",
            cpu,
            cpu / wall.max(1e-9) * 100.0
        );
    }
    let events = running.store().alarm_events(None, None, &[], 10).await?;
    if events.is_empty() {
        bail!("the alarm recorded no events");
    }
    running.shutdown().await;
    drop(mosquitto);
    Ok(())
}

/// The node id the server runs under (its default): the external broker's topics.
const NODE: &str = "porchlight";

/// Debian's Mosquitto on a free loopback port, anonymous (only this machine reaches it, and
/// only for the bench's life); killed when dropped.
struct Mosquitto {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Mosquitto {
    fn start(dir: &Path, nodelay: bool) -> Result<Mosquitto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        );
        if is_root() {
            // As root Mosquitto switches to the `mosquitto` user, who cannot read our dir.
            text.push_str("user root\n");
        }
        if nodelay {
            text.push_str("set_tcp_nodelay true\n");
        }
        std::fs::write(&conf, text)?;
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (apt install mosquitto)")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Mosquitto { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Points the server's MQTT link at `addr` and waits until it is connected.
async fn link_to(running: &porchlight_server::Running, addr: SocketAddr) -> Result<()> {
    let link = running.mqtt_link();
    let settings = LinkSettings {
        enabled: true,
        host: addr.ip().to_string(),
        port: addr.port(),
        ..LinkSettings::default()
    };
    link.update(&settings, porchlight_server::store::LinkPassword::Clear)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while link.status().await.state.as_str() != "connected" {
        if Instant::now() > deadline {
            bail!("the MQTT link did not connect: {:?}", link.status().await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    topics: &Topics,
) -> Result<String> {
    match tokio::time::timeout(Duration::from_secs(10), states.recv()).await {
        Ok(Some((topic, payload))) if topic == topics.error => bail!(
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
    if args.login {
        o.set_credentials("homeassistant", HA_PASSWORD);
    }
    o.set_keep_alive(Duration::from_secs(60));
    let topics = match args.topics.as_str() {
        "embedded" => Topics::embedded(),
        node => Topics::external(node),
    };
    let (client, mut eventloop) = AsyncClient::new(o, 16);
    // As Home Assistant's client does.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
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
    // As Home Assistant does: the retained discovery config names the topics and the QoS.
    let discovery = format!("homeassistant/alarm_control_panel/{NODE}/config");
    client.subscribe(&discovery, QoS::AtLeastOnce).await?;
    let config: Value = match tokio::time::timeout(Duration::from_secs(10), states.recv()).await {
        Ok(Some((topic, payload))) if topic == discovery => serde_json::from_slice(&payload)?,
        _ => bail!("no discovery config on {discovery}"),
    };
    client.unsubscribe(&discovery).await?;
    let field = |k: &str| {
        config[k]
            .as_str()
            .map(str::to_owned)
            .context(format!("discovery without {k}"))
    };
    let topics = Topics {
        state: field("state_topic")?,
        command: field("command_topic")?,
        ..topics
    };
    let qos = match config["qos"].as_u64() {
        Some(0) => QoS::AtMostOnce,
        Some(1) => QoS::AtLeastOnce,
        other => bail!("discovery qos {other:?}"),
    };
    client.subscribe(&topics.state, qos).await?;
    client.subscribe(&topics.error, qos).await?;
    // The retained state comes first.
    let mut state = next_state(&mut states, &topics).await?;
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
        client.publish(&topics.command, qos, false, payload).await?;
        state = next_state(&mut states, &topics).await?;
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
