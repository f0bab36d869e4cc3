//! `porchlight-bench`: MQTT throughput and latency through Porchlight's embedded broker with
//! authentication and ACLs on, and through Debian's Mosquitto 2 (also with a password file
//! and an ACL file) started by the bench on another free loopback port, in the same run.
//!
//! Phases, per broker and QoS (0 and 1):
//! - **flood**: N publishers (each its own user, publishing to `owntracks/<user>/bench`) send
//!   M messages each as fast as the client allows; one subscriber on `owntracks/+/+` receives.
//!   Throughput = messages received / (last receive − first send).
//! - **ping**: one publisher sends one message, waits for the subscriber to get it, repeats:
//!   publish→deliver latency without queueing (p50/p99).
//! - **ingest** (Porchlight only): the same publishers send OwnTracks location JSON at QoS 1
//!   and the app consumes it in-process through `Bus::consume`, the path location storage
//!   uses: consumed messages/s.
//!
//! Payload: 8 bytes send time (ns since the bench started) + padding, `--payload` bytes in all.
//! Nothing here leaves the loopback interface.
//!
//! `porchlight-bench alarm` (module `alarm`): alarm command → state latency through the
//! embedded broker with PIN verification, Home Assistant's side in a child process.
//!
//! `porchlight-bench ingest` (module `ingest`) is the other mode: OwnTracks points through
//! the whole server into SQLite with commit before ack, from lean raw-TCP MQTT publishers
//! (`lean_mqtt`) and HTTP `/pub` clients in a child process, and the stored count read back.
//! `porchlight-bench pin` (module `pin`): alarm PIN verification latency and CPU.
//! `porchlight-bench tls` (module `tls`): MQTT over TLS against plain TCP and against
//! Mosquitto with TLS: connection set-up rate and publish throughput, each process's CPU;
//! its plain rows also measure bare rmqtt (module `bare_rmqtt`: rmqtt without our hooks).
//! `porchlight-bench scale` (module `scale`): N idle connections at a ramp rate on
//! Mosquitto, bare rmqtt and Porchlight: connect p50/p99, refusals, RSS per connection, CPU.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

mod alarm;
mod bare_rmqtt;
mod fuzz;
mod history;
mod ingest;
mod lean_mqtt;
mod live;
mod pin;
mod scale;
mod tls;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Porchlight broker vs Mosquitto: throughput and latency on loopback (default), `ingest`: OwnTracks ingest into the store, or `pin`: alarm PIN verification"
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    broker: Args,
}

#[derive(clap::Subcommand, Debug, Clone)]
enum Mode {
    /// OwnTracks ingest through the whole server (MQTT QoS 1 and HTTP /pub, commit before
    /// ack), with the stored points read back.
    Ingest(ingest::IngestArgs),
    /// Alarm PIN verification latency (p50/p99) with codes stored, and its CPU.
    Pin(pin::PinArgs),
    /// The ingest bench's load generator (run by `ingest` as a child process).
    #[command(hide = true)]
    IngestLoad(ingest::LoadArgs),
    /// Ingest → live-feed latency at a steady rate: MQTT QoS 1 phones and a `/ws/live` viewer.
    Live(live::LiveArgs),
    /// The live bench's phones and viewer (run by `live` as a child process).
    #[command(hide = true)]
    LiveLoad(live::LiveLoadArgs),
    /// History over HTTP with 1,000,000 stored points: day windows, a year downsampled,
    /// database size, the server's idle RSS (runs the `porchlight` binary next to this one).
    History(history::HistoryArgs),
    /// The OwnTracks payload parser and the `/pub` input checks on generated inputs
    /// (arbitrary bytes, edited valid and bad samples, odd headers): no panic, clear errors.
    Fuzz(fuzz::FuzzArgs),
    /// The alarm: command published → new state received, through the embedded broker,
    /// with PIN verification (p50/p99), and each process's CPU.
    Alarm(alarm::AlarmArgs),
    /// The alarm bench's Home Assistant side (run by `alarm` as a child process).
    #[command(hide = true)]
    AlarmLoad(alarm::AlarmLoadArgs),
    /// MQTT over TLS against plain TCP, Porchlight against Mosquitto with TLS: connection
    /// set-up rate and publish throughput, each process's CPU (runs the `porchlight` binary
    /// next to this one).
    Tls(tls::TlsArgs),
    /// The TLS bench's load generator (run by `tls` as a child process).
    #[command(hide = true)]
    TlsLoad(tls::TlsLoadArgs),
    /// Connection scale: N idle connections opened at a ramp rate, on Mosquitto, bare rmqtt
    /// and Porchlight: connect→CONNACK p50/p99, failures, each broker's RSS and CPU.
    Scale(scale::ScaleArgs),
    /// rmqtt with none of Porchlight's hooks (run by `tls` and `scale` as a child process).
    #[command(hide = true)]
    BareRmqtt(bare_rmqtt::BareArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct Args {
    /// Concurrent publishers in the flood phase.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Messages per publisher in the flood phase.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Payload size in bytes (at least 8).
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Round trips in the ping phase.
    #[arg(long, default_value_t = 2_000)]
    pings: usize,
    /// Unacknowledged QoS 1 messages in flight per client, on both brokers.
    #[arg(long, default_value_t = 32)]
    inflight: u16,
    /// Skip Mosquitto (when it is not installed).
    #[arg(long)]
    no_mosquitto: bool,
}

/// One broker under test: where it listens and who may log in.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// Publisher logins (username, password); publisher i publishes to owntracks/<user_i>/bench.
    publishers: Vec<(String, String)>,
    /// A login allowed to subscribe to `owntracks/+/+`.
    subscriber: (String, String),
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    sent: usize,
    received: usize,
    msgs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORCHLIGHT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.mode {
        Some(Mode::Ingest(args)) => runtime.block_on(ingest::run(args)),
        Some(Mode::IngestLoad(args)) => runtime.block_on(ingest::load(args)),
        Some(Mode::Live(args)) => runtime.block_on(live::run(args)),
        Some(Mode::LiveLoad(args)) => runtime.block_on(live::load(args)),
        Some(Mode::History(args)) => runtime.block_on(history::run(args)),
        Some(Mode::Fuzz(args)) => fuzz::run(args),
        Some(Mode::Pin(args)) => runtime.block_on(pin::run(args)),
        Some(Mode::Alarm(args)) => runtime.block_on(alarm::run(args)),
        Some(Mode::AlarmLoad(args)) => runtime.block_on(alarm::load(args)),
        Some(Mode::Tls(args)) => runtime.block_on(tls::run(args)),
        Some(Mode::TlsLoad(args)) => runtime.block_on(tls::load(args)),
        Some(Mode::Scale(args)) => runtime.block_on(scale::run(args)),
        Some(Mode::BareRmqtt(args)) => runtime.block_on(bare_rmqtt::run(args)),
        None => {
            let args = cli.broker;
            if args.payload < 8 {
                bail!("--payload must be at least 8 bytes");
            }
            runtime.block_on(run(args))
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let origin = Instant::now();
    let dir = tempfile::tempdir()?;

    let (porchlight, ours) = start_porchlight(dir.path(), args.publishers, args.inflight).await?;
    let mut mosquitto = None;
    let mut targets = vec![ours];
    if !args.no_mosquitto {
        let (child, target) = start_mosquitto(dir.path(), args.publishers, args.inflight)?;
        mosquitto = Some(child);
        targets.push(target);
    }

    println!(
        "publishers={} messages/publisher={} payload={}B pings={} inflight={}",
        args.publishers, args.messages, args.payload, args.pings, args.inflight
    );
    let mut results = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        for target in &targets {
            let flood = flood(target, qos, &args, origin).await?;
            let ping = ping(target, qos, &args, origin).await?;
            println!(
                "{:<11} qos{} flood: {:>9.0} msg/s ({}/{} delivered, p50 {:.0} µs p99 {:.0} µs under load) | ping: p50 {:.0} µs p99 {:.0} µs",
                target.name,
                qos as u8,
                flood.msgs_per_sec,
                flood.received,
                flood.sent,
                flood.p50_us,
                flood.p99_us,
                ping.p50_us,
                ping.p99_us
            );
            results.push((target.name, qos as u8, flood, ping));
        }
    }
    if targets.len() == 2 {
        for qos in [0u8, 1] {
            let find = |name: &str| {
                results
                    .iter()
                    .find(|r| r.0 == name && r.1 == qos)
                    .map(|r| r.2.msgs_per_sec)
                    .unwrap_or(0.0)
            };
            let ratio = find("porchlight") / find("mosquitto").max(1.0);
            println!("ratio porchlight/mosquitto qos{qos} throughput: {ratio:.2}");
        }
    }

    if let Some(mut child) = mosquitto {
        let _ = child.kill();
        let _ = child.wait();
    }
    let ingest = ingest(&porchlight, &targets[0], &args).await?;
    println!(
        "porchlight  in-process ingest (Bus::consume, qos1 OwnTracks JSON): {:>9.0} msg/s ({}/{} consumed)",
        ingest.msgs_per_sec, ingest.received, ingest.sent
    );
    porchlight.shutdown().await;
    Ok(())
}

async fn start_porchlight(
    dir: &Path,
    publishers: usize,
    inflight: u16,
) -> Result<(porchlight_server::Running, Target)> {
    let options = porchlight_server::LoadOptions {
        data_dir: Some(dir.join("porchlight")),
        http_port: Some(0),
        mqtt_port: Some(0),
        bind: Some([127, 0, 0, 1].into()),
        ..Default::default()
    };
    // The same per-session queue and inflight window as the Mosquitto side, so that neither
    // drops in the flood and both pace deliveries alike.
    let env = [
        (
            "PORCHLIGHT_MQTT__MAX_INFLIGHT".to_owned(),
            inflight.to_string(),
        ),
        (
            "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
            "bench admin password".to_owned(),
        ),
        (
            "PORCHLIGHT_MQTT__MAX_QUEUED_MESSAGES".to_owned(),
            "1000000".to_owned(),
        ),
    ];
    let config = porchlight_server::Config::load_from(&options, env)?;
    let running = porchlight_server::start(config).await?;
    let addr = running.mqtt_addr.context("the broker did not start")?;
    let store = running.store().clone();
    let mut logins = Vec::new();
    for i in 0..publishers {
        let name = format!("pub{i}");
        store
            .create_user(
                &name,
                Role::User,
                &Secret::new("bench password"),
                std::time::SystemTime::now(),
            )
            .await?;
        let (_, key) = store
            .add_device(&name, "bench", std::time::SystemTime::now())
            .await?;
        logins.push((name, key.expose().to_owned()));
    }
    let (_, admin_key) = store
        .add_device("admin", "bench", std::time::SystemTime::now())
        .await?;
    Ok((
        running,
        Target {
            name: "porchlight",
            addr,
            publishers: logins,
            subscriber: ("admin".into(), admin_key.expose().to_owned()),
        },
    ))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Writes Mosquitto's password file `passwd` with `publishers` logins (`pub0`, `pub1`, …) and
/// the subscriber's (`benchsub`), and returns them in that order, the subscriber's last.
pub(crate) fn mosquitto_password_file(
    passwd: &Path,
    publishers: usize,
) -> Result<Vec<(String, String)>> {
    let mut logins = Vec::new();
    for i in 0..=publishers {
        let (user, pass) = if i == publishers {
            ("benchsub".to_owned(), "bench sub password".to_owned())
        } else {
            (format!("pub{i}"), format!("bench password {i}"))
        };
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg("-b")
            .arg(passwd)
            .arg(&user)
            .arg(&pass)
            .stdout(std::process::Stdio::null())
            .status()
            .context("running mosquitto_passwd (apt install mosquitto, or pass --no-mosquitto)")?;
        if !status.success() {
            bail!("mosquitto_passwd failed");
        }
        logins.push((user, pass));
    }
    Ok(logins)
}

fn start_mosquitto(dir: &Path, publishers: usize, inflight: u16) -> Result<(Child, Target)> {
    let dir = dir.join("mosquitto");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let passwd = dir.join("passwd");
    let mut logins = mosquitto_password_file(&passwd, publishers)?;
    let subscriber = logins.pop().context("no subscriber login")?;
    std::fs::write(
        dir.join("acl"),
        "user benchsub\ntopic read owntracks/#\n\npattern readwrite owntracks/%u/#\n",
    )?;
    let user_line = if is_root() { "user root\n" } else { "" };
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!(
            "{user_line}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             persistence false\nmax_queued_messages 1000000\nmax_inflight_messages {inflight}\nlog_dest none\n",
            passwd.display(),
            dir.join("acl").display()
        ),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((
        child,
        Target {
            name: "mosquitto",
            addr,
            publishers: logins,
            subscriber,
        },
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Connects a client and spawns its event loop; received publishes go to `rx`, and the
/// returned receiver yields once the CONNACK and (if subscribing) the SUBACK arrived.
async fn connect(
    addr: SocketAddr,
    (user, pass): &(String, String),
    id: &str,
    subscribe: Option<QoS>,
) -> Result<(AsyncClient, mpsc::UnboundedReceiver<(Instant, Vec<u8>)>)> {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_credentials(user, pass);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(1);
    if let Some(qos) = subscribe {
        client.subscribe("owntracks/+/+", qos).await?;
    }
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if subscribe.is_none() => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(())).await;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(())).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((Instant::now(), p.payload.to_vec()));
                }
                // DISCONNECT sent: drop the event loop, which closes the socket, so the session
                // really ends (the broker waits for the client to close after a DISCONNECT).
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e.to_string())).await;
                    }
                    break;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await {
        Ok(Some(Ok(()))) => Ok((client, rx)),
        Ok(Some(Err(e))) => bail!("{id}: {e}"),
        _ => bail!("{id}: no CONNACK/SUBACK within 10 s"),
    }
}

fn payload(size: usize, origin: Instant) -> Vec<u8> {
    let mut p = vec![b'x'; size];
    let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
    p[..8].copy_from_slice(&ns.to_be_bytes());
    p
}

fn sent_at(p: &[u8], origin: Instant) -> Option<Instant> {
    let ns = u64::from_be_bytes(p.get(..8)?.try_into().ok()?);
    Some(origin + Duration::from_nanos(ns))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn flood(target: &Target, qos: QoS, args: &Args, origin: Instant) -> Result<Outcome> {
    let tag = format!("{}-q{}", target.name, qos as u8);
    let (sub, mut rx) = connect(
        target.addr,
        &target.subscriber,
        &format!("{tag}-sub"),
        Some(qos),
    )
    .await?;
    let total = target.publishers.len() * args.messages;
    let start = Instant::now();
    let size = args.payload;
    let publishers = Publishers::start(target, &tag, "bench", qos, args.messages, move |_| {
        payload(size, origin)
    })
    .await?;
    let mut latencies = Vec::with_capacity(total);
    let mut last = start;
    // Stop when everything arrived or nothing arrived for 5 s (dropped messages).
    while latencies.len() < total {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((at, p))) => {
                if let Some(sent) = sent_at(&p, origin) {
                    latencies.push(at.duration_since(sent).as_secs_f64() * 1e6);
                }
                last = at;
            }
            _ => break,
        }
    }
    publishers.finish().await?;
    let received = latencies.len();
    latencies.sort_by(f64::total_cmp);
    let secs = last.duration_since(start).as_secs_f64().max(1e-9);
    let _ = sub.disconnect().await;
    Ok(Outcome {
        sent: total,
        received,
        msgs_per_sec: received as f64 / secs,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
    })
}

async fn ping(target: &Target, qos: QoS, args: &Args, origin: Instant) -> Result<Outcome> {
    let tag = format!("{}-ping-q{}", target.name, qos as u8);
    let (sub, mut rx) = connect(
        target.addr,
        &target.subscriber,
        &format!("{tag}-sub"),
        Some(qos),
    )
    .await?;
    let login = target.publishers.first().context("no publisher")?;
    let (client, _) = connect(target.addr, login, &format!("{tag}-pub"), None).await?;
    let topic = Arc::new(format!("owntracks/{}/bench", login.0));
    let mut latencies = Vec::with_capacity(args.pings);
    for _ in 0..args.pings {
        client
            .publish(topic.as_str(), qos, false, payload(args.payload, origin))
            .await?;
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((at, p))) => {
                if let Some(sent) = sent_at(&p, origin) {
                    latencies.push(at.duration_since(sent).as_secs_f64() * 1e6);
                }
            }
            _ => bail!("{tag}: a ping message was not delivered within 5 s"),
        }
    }
    latencies.sort_by(f64::total_cmp);
    let _ = client.disconnect().await;
    let _ = sub.disconnect().await;
    Ok(Outcome {
        sent: args.pings,
        received: latencies.len(),
        msgs_per_sec: 0.0,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
    })
}

/// N publishers flood OwnTracks-like JSON at QoS 1; the app side consumes through the `Bus`.
async fn ingest(
    running: &porchlight_server::Running,
    target: &Target,
    args: &Args,
) -> Result<Outcome> {
    let bus = running.bus().context("the broker is disabled")?;
    let mut inbound = bus.consume("owntracks/+/+", 4096);
    let total = target.publishers.len() * args.messages;
    let start = Instant::now();
    let publishers = Publishers::start(target, "ingest", "phone", QoS::AtLeastOnce, args.messages, |i| {
        format!(
            r#"{{"_type":"location","lat":52.37{i:05},"lon":4.90{i:05},"tst":{},"acc":12,"batt":87,"tid":"ph","t":"u"}}"#,
            1_764_000_000 + i
        )
        .into_bytes()
    })
    .await?;
    let mut received = 0;
    let mut last = start;
    while received < total {
        match tokio::time::timeout(Duration::from_secs(5), inbound.recv()).await {
            Ok(Some(_)) => {
                received += 1;
                last = Instant::now();
            }
            _ => break,
        }
    }
    publishers.finish().await?;
    Ok(Outcome {
        sent: total,
        received,
        msgs_per_sec: received as f64 / last.duration_since(start).as_secs_f64().max(1e-9),
        ..Outcome::default()
    })
}

/// One connected client per publisher login, each publishing `messages` payloads to
/// `owntracks/<user>/<device>` from its own task.
struct Publishers {
    clients: Vec<AsyncClient>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), rumqttc::ClientError>>>,
}

impl Publishers {
    async fn start(
        target: &Target,
        tag: &str,
        device: &str,
        qos: QoS,
        messages: usize,
        make_payload: impl Fn(usize) -> Vec<u8> + Clone + Send + 'static,
    ) -> Result<Publishers> {
        let mut clients = Vec::new();
        for (i, login) in target.publishers.iter().enumerate() {
            let (client, _) = connect(target.addr, login, &format!("{tag}-pub{i}"), None).await?;
            clients.push((client, format!("owntracks/{}/{device}", login.0)));
        }
        let tasks = clients
            .iter()
            .map(|(client, topic)| {
                let (client, topic, make_payload) =
                    (client.clone(), topic.clone(), make_payload.clone());
                tokio::spawn(async move {
                    for i in 0..messages {
                        client
                            .publish(topic.as_str(), qos, false, make_payload(i))
                            .await?;
                    }
                    Ok(())
                })
            })
            .collect();
        Ok(Publishers {
            clients: clients.into_iter().map(|(c, _)| c).collect(),
            tasks,
        })
    }

    /// Waits until every message was handed to its client, then disconnects them.
    async fn finish(self) -> Result<()> {
        for t in self.tasks {
            t.await??;
        }
        for client in &self.clients {
            let _ = client.disconnect().await;
        }
        Ok(())
    }
}
