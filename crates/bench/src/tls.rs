//! `porchlight-bench tls`: MQTT over TLS against plain TCP, Porchlight against Debian's
//! Mosquitto 2 with TLS, in one run (issue 15, "Performance").
//!
//! **Brokers.** The real `porchlight serve` binary (next to this one: build both with
//! `cargo build --release -p porchlight -p porchlight-bench`) in a child process with its
//! plain, TLS-with-password (`--mqtts-port`) and client-certificate (`--mqtt-cert-port`)
//! listeners; users, device keys and client certificates are made through its HTTP API
//! (`POST /api/users`, `/api/devices`, `/api/certificates`) and its CA comes from
//! `GET /api/ca`. Mosquitto (if installed) gets the same three kinds of listener: plain, TLS
//! with a password file, and `require_certificate` + `use_identity_as_username`; its server
//! and client certificates come from a throwaway CA made here with `porchlight-ca` (EC P-256,
//! like Porchlight's), its passwords from `mosquitto_passwd`, `allow_anonymous false` and an
//! ACL file. Both brokers get the same per-session inflight window, a large queue, and
//! TCP_NODELAY (Mosquitto's `set_tcp_nodelay`, see `start_mosquitto`).
//!
//! **Checks first.** Every TLS listener must present a chain that verifies against its CA
//! for `localhost` and for 127.0.0.1 (the SANs clients check), and a handshake expecting
//! another name must fail; otherwise the run stops.
//!
//! **Phases**, each in a child process (`porchlight-bench tls-load`, hidden) so that its CPU
//! is its own; the brokers alternate, and each round runs them in the opposite order to the
//! last:
//! - **connection set-up**: `--clients` connections, `--concurrency` at once, each TCP
//!   connect + full TLS handshake (no session resumption; the server verified against the
//!   CA for `localhost`) + MQTT CONNECT with a password (or a client certificate on the
//!   certificate listeners) → CONNACK, then DISCONNECT and close. Connects/s over the whole
//!   phase, p50/p99 of connect→CONNACK and of connect→transport ready (TCP, and TLS done on
//!   the client's side).
//! - **publish**: `--publishers` lean publishers (raw MQTT 3.1.1 over tokio-rustls, one
//!   PUBLISH per write() unless `--batch`), each its own login and topic
//!   `owntracks/<user>/bench`, and one subscriber to `owntracks/+/+` on the same transport.
//!   QoS 1: up to `--window` PUBLISHes unacknowledged by the broker per publisher; QoS 0: up
//!   to `--window` per publisher not yet delivered to the subscriber (a closed loop, so
//!   that QoS 0 measures delivery, not the depth of a queue). Payload: a ~270-byte OwnTracks
//!   location whose first field stamps the publisher and send time. Messages/s delivered to
//!   the subscriber, p50/p99 publish→deliver, and sent − delivered (lost). Porchlight also
//!   stores every one of these locations (its OwnTracks ingest; QoS 1 acknowledged after the
//!   commit); Mosquitto only routes them.
//!
//! **Bare rmqtt** (issue 16): a third broker in the plain rows (set-up, QoS 0, QoS 1),
//! rmqtt 0.24 with none of our hooks (`bare_rmqtt.rs`, a child process of this executable,
//! anonymous, same inflight window and queue), so that the summary's porchlight/bare-rmqtt
//! ratio shows what our hooks cost and bare-rmqtt/mosquitto what the engine does.
//! `--topic bench` publishes to `bench/<user>/bench` on every broker instead of OwnTracks
//! topics: Porchlight's publishers are then admins' devices (the only role whose ACL allows
//! such a topic) and nothing is stored, so that routing alone is compared; the output says
//! which topic was used. The broker set-ups ([`Brokers`], [`Setup`]) and the load
//! generator's child process ([`measure`], [`LoadSpec`]) also serve `scale.rs`.
//!
//! **CPU**: the broker's and the load generator's CPU time over each measurement (the sum of
//! their threads' `/proc/<pid>/task/*/schedstat`, exact to the nanosecond, read by the load
//! generator at its start and end), as a share of one core: if the load generator is the
//! busier one, it is partly measuring itself.
//!
//! The client side is rustls (aws-lc-rs, the provider Porchlight's listeners use) with the
//! default key-exchange groups unless `--x25519` (OpenSSL 3.0 peers such as Debian's
//! Mosquitto negotiate X25519; rustls servers prefer X25519MLKEM768): each line names what
//! was negotiated. Nothing here leaves the loopback interface.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

use crate::history::Server;
use crate::ingest::cpu_seconds;
use crate::lean_mqtt::{put_packet, put_str};

#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// Rounds: each measures every broker once per phase, the brokers alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections per connection set-up measurement.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Connection set-ups in progress at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Publishers in the publish phase (each its own login), beside one subscriber.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Messages in flight per publisher: QoS 1 unacknowledged by the broker, QoS 0 not yet
    /// delivered to the subscriber.
    #[arg(long, default_value_t = 16)]
    window: u16,
    /// PUBLISH packets per write() at most (1: each its own write and TLS record).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds of publishing per measurement.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// The brokers' inflight window per session (QoS 1 deliveries to the subscriber).
    #[arg(long, default_value_t = 32)]
    inflight: u16,
    /// Offer only X25519 in TLS handshakes (what OpenSSL 3.0 peers negotiate) instead of
    /// rustls' default groups (X25519MLKEM768 first).
    #[arg(long)]
    x25519: bool,
    /// Skip Mosquitto even if it is installed.
    #[arg(long)]
    no_mosquitto: bool,
    /// Skip the bare rmqtt broker (rmqtt without Porchlight's hooks, plain rows only).
    #[arg(long)]
    no_bare_rmqtt: bool,
    /// Give bare rmqtt hooks that do nothing on the three per-message hook points Porchlight
    /// uses (`MessagePublish`, `MessagePublishCheckAcl`, `MessageExpiryCheck`): what rmqtt's
    /// hook machinery alone costs, without any of our logic (ADR 0020).
    #[arg(long)]
    bare_empty_hooks: bool,
    /// What the publishers publish to: `owntracks` (`owntracks/<user>/bench`: Porchlight
    /// stores every location, its real path) or `bench` (`bench/<user>/bench` on every
    /// broker: Porchlight's publishers are then admins' devices, whose ACL allows any topic,
    /// and nothing is stored, so that the broker alone is compared).
    #[arg(long, value_enum, default_value_t = TopicRoot::Owntracks)]
    topic: TopicRoot,
    /// A short run to see that everything works: 1 round, 40 clients, 1 s of publishing.
    #[arg(long)]
    quick: bool,
}

/// The load generator's side, run as a child process by [`run`].
#[derive(clap::Args, Debug, Clone)]
pub struct TlsLoadArgs {
    /// A JSON [`LoadSpec`] file.
    #[arg(long)]
    spec: std::path::PathBuf,
}

/// Where to connect and how to log in.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// `None`: plain TCP.
    pub(crate) tls: Option<TlsSpec>,
    /// Password logins (user, password), used round-robin; empty: no credentials in the
    /// CONNECT (the client certificate is the login).
    pub(crate) logins: Vec<(String, String)>,
    /// CONNECT without credentials (bare rmqtt); the logins' user names still name the
    /// publishers' topics.
    #[serde(default)]
    pub(crate) anonymous: bool,
}

impl Endpoint {
    /// What a CONNECT with `login` carries on this endpoint.
    pub(crate) fn credentials<'a>(
        &self,
        login: &'a (String, String),
    ) -> Option<&'a (String, String)> {
        (!self.anonymous).then_some(login)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct TlsSpec {
    /// The only trust anchor(s), PEM.
    ca_pem: String,
    /// The name the server's certificate must be valid for (a DNS name or an IP address).
    server_name: String,
    /// Client certificates (certificate PEM, key PEM), used round-robin; empty: none.
    client_certs: Vec<(String, String)>,
    /// Offer X25519 only.
    x25519_only: bool,
}

/// One measurement, as the parent hands it to the child.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct LoadSpec {
    /// Client ids start with this.
    pub(crate) tag: String,
    pub(crate) endpoint: Endpoint,
    /// The broker's process, whose CPU is read at the start and the end.
    pub(crate) broker_pid: u32,
    pub(crate) phase: Phase,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum Phase {
    Connect {
        clients: usize,
        concurrency: usize,
    },
    /// The endpoint's logins publish to `<root>/<user>/bench`; the subscriber takes
    /// `<root>/+/+`.
    Publish {
        root: String,
        qos: u8,
        window: u16,
        batch: usize,
        duration_ms: u64,
        subscriber: (String, String),
    },
    /// Connection scale (`scale.rs`): `connections` idle connections opened at `rate`/s and
    /// held `hold_ms` after the last CONNACK.
    Scale {
        connections: usize,
        rate: f64,
        hold_ms: u64,
    },
}

/// What one measurement found.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub(crate) struct Report {
    /// Connections made / messages delivered.
    pub(crate) ok: u64,
    /// Connections that failed / publishers that ended with an error.
    pub(crate) failed: u64,
    pub(crate) first_error: Option<String>,
    /// Connects/s, or messages/s delivered.
    pub(crate) rate: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    /// Set-up phase: connect → transport ready (TCP, and TLS done on the client's side).
    ready_p50_us: u64,
    ready_p99_us: u64,
    /// Publish phase: messages written by the publishers.
    pub(crate) sent: u64,
    pub(crate) wall_s: f64,
    pub(crate) broker_cpu_s: f64,
    pub(crate) load_cpu_s: f64,
    /// What the TLS handshake negotiated (`None` over plain TCP).
    tls: Option<String>,
    /// Scale phase: refused CONNACKs by return code (`"3"`), and other failures by kind.
    #[serde(default)]
    pub(crate) refusals: std::collections::BTreeMap<String, u64>,
    /// Scale phase: the broker's VmRSS before the ramp and after it (all still open), kB.
    #[serde(default)]
    pub(crate) rss_before_kb: u64,
    #[serde(default)]
    pub(crate) rss_after_kb: u64,
}

impl Report {
    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.ok)
    }
}

// ---------------------------------------------------------------------------------------
// The client side: transport, MQTT packets, the two phases (run in the child process).
// ---------------------------------------------------------------------------------------

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type Conn = Box<dyn Io>;

/// Opens connections to one endpoint: TCP, then (if TLS) the handshake, with the server's
/// chain verified against the endpoint's CA for its `server_name`.
pub(crate) struct Dialer {
    addr: SocketAddr,
    /// One connector per client certificate (or one without): connection `i` uses `i % n`.
    tls: Vec<tokio_rustls::TlsConnector>,
    name: Option<ServerName<'static>>,
    client_cert: bool,
}

impl Dialer {
    pub(crate) fn new(endpoint: &Endpoint) -> Result<Dialer> {
        let name = match &endpoint.tls {
            Some(t) => Some(server_name(&t.server_name)?),
            None => None,
        };
        Dialer::with_name(endpoint, name)
    }

    /// Like [`Dialer::new`], expecting `name` instead of the endpoint's server name.
    fn with_name(endpoint: &Endpoint, name: Option<ServerName<'static>>) -> Result<Dialer> {
        let tls = match &endpoint.tls {
            None => Vec::new(),
            Some(spec) if spec.client_certs.is_empty() => {
                vec![tokio_rustls::TlsConnector::from(client_config(spec, None)?)]
            }
            Some(spec) => spec
                .client_certs
                .iter()
                .map(|c| client_config(spec, Some(c)).map(tokio_rustls::TlsConnector::from))
                .collect::<Result<_>>()?,
        };
        Ok(Dialer {
            addr: endpoint.addr,
            tls,
            name,
            client_cert: endpoint
                .tls
                .as_ref()
                .is_some_and(|t| !t.client_certs.is_empty()),
        })
    }

    /// Connection `i`, and what its TLS handshake negotiated.
    pub(crate) async fn open(&self, i: usize) -> Result<(Conn, Option<String>)> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let (Some(name), false) = (&self.name, self.tls.is_empty()) else {
            return Ok((Box::new(tcp), None));
        };
        let connector = &self.tls[i % self.tls.len()];
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let c = tls.get_ref().1;
        let described = format!(
            "{} {} {}{}",
            c.protocol_version()
                .map_or("?".into(), |v| format!("{v:?}")),
            c.negotiated_cipher_suite()
                .map_or("?".into(), |s| format!("{:?}", s.suite())),
            c.negotiated_key_exchange_group()
                .map_or("?".into(), |g| format!("{:?}", g.name())),
            if self.client_cert {
                " +client cert"
            } else {
                ""
            }
        );
        Ok((Box::new(tls), Some(described)))
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).with_context(|| format!("not a server name: {name:?}"))
}

/// A rustls client trusting only `spec.ca_pem`, without session resumption (every handshake
/// is a full one), optionally with a client certificate.
fn client_config(
    spec: &TlsSpec,
    cert: Option<&(String, String)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(spec.ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| anyhow::anyhow!("the CA PEM: {e}"))?)?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if spec.x25519_only {
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match cert {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("the client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("the client key: {e}"))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

fn connect_packet(client_id: &str, login: Option<&(String, String)>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT")?;
    // Protocol level 4 (3.1.1), clean session, keep-alive 60 s.
    let flags = 0x02 | if login.is_some() { 0x80 | 0x40 } else { 0 };
    body.extend_from_slice(&[4, flags, 0, 60]);
    put_str(&mut body, client_id.as_bytes())?;
    if let Some((user, password)) = login {
        put_str(&mut body, user.as_bytes())?;
        put_str(&mut body, password.as_bytes())?;
    }
    let mut out = Vec::new();
    put_packet(&mut out, 0x10, &body);
    Ok(out)
}

/// Reads one packet into `body`; returns its first byte.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R, body: &mut Vec<u8>) -> Result<u8> {
    let first = r.read_u8().await?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = r.read_u8().await?;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
        if shift > 21 {
            bail!("bad remaining length");
        }
    }
    body.resize(len, 0);
    r.read_exact(body).await?;
    Ok(first)
}

/// CONNECT, then waits (≤ 10 s) for a CONNACK that accepts it.
async fn mqtt_connect<R, W>(
    r: &mut R,
    w: &mut W,
    client_id: &str,
    login: Option<&(String, String)>,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let code = mqtt_connack(r, w, client_id, login).await?;
    if code != 0 {
        bail!("CONNACK refused (return code {code})");
    }
    Ok(())
}

/// CONNECT, then waits (≤ 10 s) for the CONNACK: its return code (0: accepted).
pub(crate) async fn mqtt_connack<R, W>(
    r: &mut R,
    w: &mut W,
    client_id: &str,
    login: Option<&(String, String)>,
) -> Result<u8>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    w.write_all(&connect_packet(client_id, login)?).await?;
    w.flush().await?;
    let mut body = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(10), read_packet(r, &mut body))
        .await
        .context("no CONNACK within 10 s")?
        .context("no CONNACK (connection closed)")?;
    match (first, body.get(1)) {
        (0x20, Some(&code)) => Ok(code),
        _ => bail!("not a CONNACK ({first:#04x} {body:?})"),
    }
}

/// One connection set-up: returns connect→CONNACK, connect→transport ready (TCP, and the
/// TLS handshake done on the client's side), and what TLS negotiated.
async fn one_connect(
    dialer: &Dialer,
    i: usize,
    client_id: &str,
    login: Option<&(String, String)>,
) -> Result<(Duration, Duration, Option<String>)> {
    let started = Instant::now();
    let (conn, described) = dialer.open(i).await?;
    let ready = started.elapsed();
    let mut conn = BufReader::new(conn);
    let (r, w) = tokio::io::split(&mut conn);
    let (mut r, mut w) = (r, w);
    mqtt_connect(&mut r, &mut w, client_id, login).await?;
    let took = started.elapsed();
    w.write_all(&[0xe0, 0]).await?;
    w.flush().await?;
    // close_notify (TLS) and FIN.
    let _ = w.shutdown().await;
    Ok((took, ready, described))
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0)
}

/// A process's CPU time so far, two ways: the sum of its threads' run time from
/// `/proc/<pid>/task/*/schedstat` (nanoseconds, so short measurements are exact), and
/// `/proc/<pid>/stat` (10 ms ticks, but it keeps the time of threads that have ended).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    sched: f64,
    stat: f64,
}

impl CpuSample {
    pub(crate) fn of(pid: u32) -> CpuSample {
        let sched = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                    .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .unwrap_or(0);
        CpuSample {
            sched: sched as f64 / 1e9,
            stat: cpu_seconds(pid),
        }
    }

    /// CPU seconds from `self` to `now`.
    pub(crate) fn until(self, now: CpuSample) -> f64 {
        let (sched, stat) = (now.sched - self.sched, now.stat - self.stat);
        // A thread that ended took its schedstat along; its time is still in stat.
        if stat > sched + 0.02 {
            stat
        } else {
            sched.max(0.0)
        }
    }
}

/// CPU of the broker and of this process, now.
pub(crate) fn cpu_now(broker_pid: u32) -> (CpuSample, CpuSample) {
    (CpuSample::of(broker_pid), CpuSample::of(std::process::id()))
}

pub(crate) async fn connect_phase(
    spec: &LoadSpec,
    clients: usize,
    concurrency: usize,
) -> Result<Report> {
    let dialer = Arc::new(Dialer::new(&spec.endpoint)?);
    let logins = Arc::new(spec.endpoint.logins.clone());
    let anonymous = spec.endpoint.anonymous;
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = cpu_now(spec.broker_pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, clients.max(1)) {
        let (dialer, logins, next) = (dialer.clone(), logins.clone(), next.clone());
        let tag = spec.tag.clone();
        tasks.spawn(async move {
            let (mut latencies, mut readies) = (Vec::new(), Vec::new());
            let (mut failed, mut first_error, mut tls) = (0u64, None, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= clients {
                    break;
                }
                let login = (!logins.is_empty() && !anonymous).then(|| &logins[i % logins.len()]);
                match one_connect(&dialer, i, &format!("{tag}-{i}"), login).await {
                    Ok((took, ready, described)) => {
                        latencies.push(took.as_micros() as u64);
                        readies.push(ready.as_micros() as u64);
                        if tls.is_none() {
                            tls = described;
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(format!("connection {i}: {e:#}"));
                    }
                }
            }
            (latencies, readies, failed, first_error, tls)
        });
    }
    let mut report = Report::default();
    let (mut latencies, mut readies) = (Vec::with_capacity(clients), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (l, r, failed, first_error, tls) = done?;
        latencies.extend(l);
        readies.extend(r);
        report.failed += failed;
        if report.first_error.is_none() {
            report.first_error = first_error;
        }
        if report.tls.is_none() {
            report.tls = tls;
        }
    }
    report.wall_s = started.elapsed().as_secs_f64();
    let now = cpu_now(spec.broker_pid);
    report.broker_cpu_s = cpu.0.until(now.0);
    report.load_cpu_s = cpu.1.until(now.1);
    latencies.sort_unstable();
    report.ok = latencies.len() as u64;
    report.rate = report.ok as f64 / report.wall_s.max(1e-9);
    report.p50_us = percentile(&latencies, 0.50);
    report.p99_us = percentile(&latencies, 0.99);
    readies.sort_unstable();
    report.ready_p50_us = percentile(&readies, 0.50);
    report.ready_p99_us = percentile(&readies, 0.99);
    Ok(report)
}

/// The payload's first bytes; the stamp `<publisher, 4 hex>-<send time ns, 16 hex>` follows.
const STAMP_PREFIX: &str = r#"{"_type":"location","_bench":""#;

/// A ~270-byte OwnTracks location of publisher `publisher`'s `seq`-th message, sent at
/// `sent_ns` (ns since the load generator's origin), stamped at a fixed offset so that the
/// subscriber reads it without parsing JSON.
pub(crate) fn stamped_location(publisher: usize, seq: u64, sent_ns: u64) -> Vec<u8> {
    let tst = 1_700_000_000 + seq;
    let frac = seq % 100_000;
    let tid = publisher % 100;
    format!(
        r#"{STAMP_PREFIX}{publisher:04x}-{sent_ns:016x}","lat":52.3{frac:05},"lon":4.9{frac:05},"tst":{tst},"acc":12,"alt":3,"vac":4,"vel":27,"cog":180,"batt":87,"bs":1,"t":"u","tid":"{tid:02}","conn":"m","m":1,"created_at":{tst},"SSID":"home-network","BSSID":"aa:bb:cc:dd:ee:ff"}}"#
    )
    .into_bytes()
}

/// The publisher index and send time stamped by [`stamped_location`].
pub(crate) fn stamp(payload: &[u8]) -> Option<(usize, u64)> {
    let at = STAMP_PREFIX.len();
    let s = std::str::from_utf8(payload.get(at..at + 21)?).ok()?;
    let (p, ns) = s.split_once('-')?;
    Some((
        usize::from_str_radix(p, 16).ok()?,
        u64::from_str_radix(ns, 16).ok()?,
    ))
}

/// Shared between the publishers and the subscriber of one publish phase.
struct Flow {
    origin: Instant,
    /// Per publisher: its window (QoS 1: freed by PUBACKs; QoS 0: by deliveries).
    windows: Vec<Arc<Semaphore>>,
    received: AtomicU64,
    /// When the last message arrived, ns since `origin`.
    last_ns: AtomicU64,
}

impl Flow {
    fn ns(&self) -> u64 {
        (self.origin.elapsed().as_nanos() as u64).max(1)
    }
}

/// The wildcard subscriber: counts deliveries and their latencies until `stop`.
#[allow(clippy::too_many_arguments)]
async fn subscriber(
    dialer: Arc<Dialer>,
    id: String,
    login: Option<(String, String)>,
    filter: String,
    qos: u8,
    flow: Arc<Flow>,
    ready: tokio::sync::oneshot::Sender<Result<()>>,
    stop: Arc<Notify>,
) -> Vec<u64> {
    let setup = async {
        let (conn, _) = dialer.open(0).await?;
        let (r, mut w) = tokio::io::split(conn);
        let mut r = BufReader::with_capacity(64 * 1024, r);
        mqtt_connect(&mut r, &mut w, &id, login.as_ref()).await?;
        let mut body = vec![0, 1];
        put_str(&mut body, filter.as_bytes())?;
        body.push(qos);
        let mut out = Vec::new();
        put_packet(&mut out, 0x82, &body);
        w.write_all(&out).await?;
        w.flush().await?;
        let mut ack = Vec::new();
        let first = tokio::time::timeout(Duration::from_secs(10), read_packet(&mut r, &mut ack))
            .await
            .context("no SUBACK within 10 s")??;
        if first != 0x90 || ack.get(2).is_none_or(|&c| c == 0x80) {
            bail!("subscription refused ({first:#04x} {ack:?})");
        }
        anyhow::Ok((r, w))
    };
    let (mut r, mut w) = match setup.await {
        Ok(rw) => {
            let _ = ready.send(Ok(()));
            rw
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Vec::new();
        }
    };
    let mut latencies = Vec::new();
    let mut body = Vec::new();
    let mut acks = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.notified() => break,
            p = read_packet(&mut r, &mut body) => match p {
                Ok(first) => first,
                Err(_) => break,
            },
        };
        if first >> 4 == 3 {
            let at = flow.ns();
            let packet_qos = (first >> 1) & 3;
            let (Some(&hi), Some(&lo)) = (body.first(), body.get(1)) else {
                continue;
            };
            let mut offset = 2 + usize::from(u16::from_be_bytes([hi, lo]));
            if packet_qos > 0 {
                if let Some(id) = body.get(offset..offset + 2) {
                    acks.extend_from_slice(&[0x40, 2]);
                    acks.extend_from_slice(id);
                }
                offset += 2;
            }
            if let Some((p, sent)) = body.get(offset..).and_then(stamp) {
                latencies.push(at.saturating_sub(sent) / 1000);
                flow.received.fetch_add(1, Ordering::Relaxed);
                flow.last_ns.store(at, Ordering::Relaxed);
                if qos == 0
                    && let Some(window) = flow.windows.get(p)
                {
                    window.add_permits(1);
                }
            }
        }
        // Acknowledge everything read so far in one write once nothing more is buffered.
        if !acks.is_empty() && r.buffer().is_empty() {
            if w.write_all(&acks).await.is_err() || w.flush().await.is_err() {
                break;
            }
            acks.clear();
        }
    }
    let _ = w.write_all(&[0xe0, 0]).await;
    let _ = w.shutdown().await;
    latencies
}

/// One publisher: publishes stamped locations until `deadline`, returns how many it wrote.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    dialer: Arc<Dialer>,
    index: usize,
    id: String,
    login: (String, String),
    anonymous: bool,
    topic: String,
    qos: u8,
    window: u16,
    batch: usize,
    deadline: tokio::time::Instant,
    flow: Arc<Flow>,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    let my_window = flow.windows.get(index).context("no window")?.clone();
    let (conn, _) = dialer.open(index).await?;
    let (r, mut w) = tokio::io::split(conn);
    let mut r = BufReader::with_capacity(16 * 1024, r);
    mqtt_connect(&mut r, &mut w, &id, (!anonymous).then_some(&login)).await?;
    let reader = (qos == 1).then(|| {
        let my_window = my_window.clone();
        tokio::spawn(async move {
            let mut body = Vec::new();
            while let Ok(first) = read_packet(&mut r, &mut body).await {
                if first >> 4 == 4 {
                    my_window.add_permits(1);
                }
            }
        })
    });
    let (mut out, mut body) = (Vec::new(), Vec::new());
    let mut pkid: u16 = 0;
    let mut seq = 0u64;
    let window = usize::from(window.max(1));
    let result: Result<()> = async {
        while tokio::time::Instant::now() < deadline {
            let permit = tokio::select! {
                p = tokio::time::timeout(Duration::from_secs(1), my_window.acquire()) => p,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            match permit {
                Ok(Ok(p)) => p.forget(),
                Ok(Err(_)) => break,
                // QoS 0: deliveries lost for a second; start the window afresh.
                Err(_) if qos == 0 => {
                    my_window.add_permits(window);
                    continue;
                }
                Err(_) => continue,
            }
            let mut n = 1;
            while n < batch.max(1) {
                match my_window.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            out.clear();
            for _ in 0..n {
                body.clear();
                put_str(&mut body, topic.as_bytes())?;
                if qos == 1 {
                    pkid = pkid.checked_add(1).unwrap_or(1);
                    body.extend_from_slice(&pkid.to_be_bytes());
                }
                body.extend_from_slice(&stamped_location(index, seq, flow.ns()));
                seq += 1;
                put_packet(&mut out, if qos == 1 { 0x32 } else { 0x30 }, &body);
            }
            w.write_all(&out).await.context("write")?;
            w.flush().await.context("write")?;
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    if qos == 1 {
        // The outstanding PUBACKs (≤ 10 s), so the DISCONNECT does not overtake them.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            my_window.acquire_many(u32::try_from(window).unwrap_or(u32::MAX)),
        )
        .await;
    }
    let _ = w.write_all(&[0xe0, 0]).await;
    let _ = w.flush().await;
    let _ = w.shutdown().await;
    if let Some(reader) = reader {
        reader.abort();
    }
    result
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn publish_phase(
    spec: &LoadSpec,
    root: &str,
    qos: u8,
    window: u16,
    batch: usize,
    duration: Duration,
    sub_login: &(String, String),
) -> Result<Report> {
    let dialer = Arc::new(Dialer::new(&spec.endpoint)?);
    let publishers = spec.endpoint.logins.clone();
    let flow = Arc::new(Flow {
        origin: Instant::now(),
        windows: (0..publishers.len())
            .map(|_| Arc::new(Semaphore::new(usize::from(window.max(1)))))
            .collect(),
        received: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
    });
    let stop = Arc::new(Notify::new());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sub = tokio::spawn(subscriber(
        dialer.clone(),
        format!("{}-sub", spec.tag),
        spec.endpoint.credentials(sub_login).cloned(),
        format!("{root}/+/+"),
        qos,
        flow.clone(),
        ready_tx,
        stop.clone(),
    ));
    ready_rx
        .await
        .context("the subscriber ended")?
        .context("the subscriber")?;

    let cpu = cpu_now(spec.broker_pid);
    let started = Instant::now();
    let start_ns = flow.ns();
    let deadline = tokio::time::Instant::now() + duration;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, login) in publishers.into_iter().enumerate() {
        let topic = format!("{root}/{}/bench", login.0);
        tasks.spawn(publisher(
            dialer.clone(),
            i,
            format!("{}-pub{i}", spec.tag),
            login,
            spec.endpoint.anonymous,
            topic,
            qos,
            window,
            batch,
            deadline,
            flow.clone(),
            sent.clone(),
        ));
    }
    let mut report = Report::default();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            report.failed += 1;
            report.first_error.get_or_insert(format!("{e:#}"));
        }
    }
    // Until everything sent arrived, or nothing more did for 3 s.
    let total = sent.load(Ordering::Relaxed);
    let (mut seen, mut quiet_since) = (0, Instant::now());
    loop {
        let now = flow.received.load(Ordering::Relaxed);
        if now >= total || quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.notify_one();
    let mut latencies = sub.await.unwrap_or_default();
    report.wall_s = started.elapsed().as_secs_f64();
    let now = cpu_now(spec.broker_pid);
    report.broker_cpu_s = cpu.0.until(now.0);
    report.load_cpu_s = cpu.1.until(now.1);
    latencies.sort_unstable();
    report.sent = total;
    report.ok = latencies.len() as u64;
    let delivering = flow
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    report.rate = report.ok as f64 / delivering.max(1e-9);
    report.p50_us = percentile(&latencies, 0.50);
    report.p99_us = percentile(&latencies, 0.99);
    // What was negotiated, from one more handshake outside the measurement.
    if spec.endpoint.tls.is_some() {
        report.tls = dialer.open(0).await.ok().and_then(|(_, d)| d);
    }
    Ok(report)
}

/// The child's side: one measurement, one JSON report line on stdout.
pub async fn load(args: TlsLoadArgs) -> Result<()> {
    let spec: LoadSpec = serde_json::from_str(&std::fs::read_to_string(&args.spec)?)?;
    let report = match &spec.phase {
        Phase::Connect {
            clients,
            concurrency,
        } => connect_phase(&spec, *clients, *concurrency).await?,
        Phase::Publish {
            root,
            qos,
            window,
            batch,
            duration_ms,
            subscriber,
        } => {
            publish_phase(
                &spec,
                root,
                *qos,
                *window,
                *batch,
                Duration::from_millis(*duration_ms),
                subscriber,
            )
            .await?
        }
        Phase::Scale {
            connections,
            rate,
            hold_ms,
        } => {
            crate::scale::scale_phase(&spec, *connections, *rate, Duration::from_millis(*hold_ms))
                .await?
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The parent: brokers, checks, the rounds and the tables.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Broker {
    // In this order in every table: the reference, rmqtt alone, rmqtt with our hooks.
    Mosquitto,
    BareRmqtt,
    Porchlight,
}

/// The first level of the publish phase's topics (see [`TlsArgs::topic`]).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicRoot {
    Owntracks,
    Bench,
}

impl TopicRoot {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TopicRoot::Owntracks => "owntracks",
            TopicRoot::Bench => "bench",
        }
    }
}

/// One listener under test.
pub(crate) struct Target {
    pub(crate) label: &'static str,
    pub(crate) broker: Broker,
    pub(crate) pid: u32,
    pub(crate) endpoint: Endpoint,
    /// Measured in the publish phase too (the client-certificate listeners are not).
    publish: bool,
    /// Who subscribes to `<root>/+/+` in the publish phase.
    pub(crate) subscriber: (String, String),
}

const ADMIN_PASSWORD: &str = "tls bench admin password";

/// The bare rmqtt broker's plain target: the same publisher names as `like` (anonymous
/// CONNECTs; the names only make the topics).
pub(crate) fn bare_rmqtt_target(pid: u32, addr: SocketAddr, publishers: usize) -> Target {
    Target {
        label: B_PLAIN,
        broker: Broker::BareRmqtt,
        pid,
        endpoint: Endpoint {
            addr,
            tls: None,
            logins: (0..publishers.max(1))
                .map(|i| (format!("pub{i}"), String::new()))
                .collect(),
            anonymous: true,
        },
        publish: true,
        subscriber: ("benchsub".into(), String::new()),
    }
}

pub async fn run(mut args: TlsArgs) -> Result<()> {
    if args.quick {
        args.rounds = 1;
        args.clients = args.clients.min(40);
        args.duration = 1;
    }
    let rounds = args.rounds.max(1);
    // rustls' process-wide default provider is not used (each config names aws-lc-rs), but
    // install it anyway so that nothing picks another.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir()?;

    let mut targets = Vec::new();
    let connections = (args.concurrency + args.publishers + 64).max(1024);
    let brokers = Brokers::start(
        tmp.path(),
        &Setup::of(&args),
        connections,
        Skip {
            mosquitto: args.no_mosquitto,
            bare_rmqtt: args.no_bare_rmqtt,
        },
        &mut targets,
    )
    .await?;
    // Interleave the brokers: mosquitto tls, porchlight tls, mosquitto cert, …
    targets.sort_by_key(|t| (kind_rank(t.label), t.broker));

    for t in &targets {
        check_names(t).await?;
    }
    println!(
        "TLS names checked: every TLS listener's chain verifies against its CA for localhost and 127.0.0.1, and a handshake expecting another name fails"
    );
    println!(
        "tls bench: {rounds} round(s); set-up: {} clients, {} at once, full handshakes; publish: {} publishers + 1 subscriber, window {}, ≤{} PUBLISH per write, {} s, broker inflight {}; key exchange: {}",
        args.clients,
        args.concurrency,
        args.publishers,
        args.window,
        args.batch.max(1),
        args.duration,
        args.inflight,
        if args.x25519 {
            "X25519 only"
        } else {
            "rustls default groups"
        }
    );
    match args.topic {
        TopicRoot::Owntracks => println!(
            "topic: owntracks/<user>/bench (subscriber owntracks/+/+): Porchlight stores every location it routes (OwnTracks ingest; QoS 1 is acknowledged after the commit), Mosquitto and bare rmqtt only route"
        ),
        TopicRoot::Bench => println!(
            "topic: bench/<user>/bench (subscriber bench/+/+) on every broker (--topic bench): Porchlight's publishers are admins' devices (their ACL allows any topic), nothing is stored; all three only route"
        ),
    }
    println!(
        "processes: {}, load generator: a child process per measurement",
        brokers.describe()
    );

    let mut results: Vec<(String, &'static str, Report)> = Vec::new();
    let mut n = 0usize;
    for round in 0..rounds {
        let mut order: Vec<&Target> = targets.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for t in &order {
            n += 1;
            let spec = LoadSpec {
                tag: format!("r{round}-{n}"),
                endpoint: t.endpoint.clone(),
                broker_pid: t.pid,
                phase: Phase::Connect {
                    clients: args.clients.max(1),
                    concurrency: args.concurrency.max(1),
                },
            };
            let report = measure(tmp.path(), &spec).await;
            print_line(round, "set-up", t.label, &report);
            results.push(("set-up".into(), t.label, report));
        }
        for qos in [0u8, 1] {
            for t in order.iter().filter(|t| t.publish) {
                n += 1;
                let spec = LoadSpec {
                    tag: format!("r{round}-{n}"),
                    endpoint: t.endpoint.clone(),
                    broker_pid: t.pid,
                    phase: Phase::Publish {
                        root: args.topic.as_str().to_owned(),
                        qos,
                        window: args.window,
                        batch: args.batch.max(1),
                        duration_ms: args.duration.max(1) * 1000,
                        subscriber: t.subscriber.clone(),
                    },
                };
                let report = measure(tmp.path(), &spec).await;
                let phase = format!("qos{qos}");
                print_line(round, &phase, t.label, &report);
                results.push((phase, t.label, report));
            }
        }
    }
    print_summary(&args, &targets, &results);
    brokers.stop().await;
    Ok(())
}

/// Which brokers a run leaves out.
pub(crate) struct Skip {
    pub(crate) mosquitto: bool,
    pub(crate) bare_rmqtt: bool,
}

/// The brokers of one run, each a child process: `porchlight serve`, bare rmqtt and
/// Mosquitto (the last two unless skipped or, for Mosquitto, not installed).
pub(crate) struct Brokers {
    porchlight: Server,
    bare_rmqtt: Option<tokio::process::Child>,
    mosquitto: Option<std::process::Child>,
}

impl Brokers {
    /// Starts them with `setup` (Porchlight and bare rmqtt with `max_connections`) and adds
    /// their targets to `targets`; says on stdout which were left out and why.
    pub(crate) async fn start(
        dir: &Path,
        setup: &Setup,
        max_connections: usize,
        skip: Skip,
        targets: &mut Vec<Target>,
    ) -> Result<Brokers> {
        let porchlight = start_porchlight(dir, setup, max_connections, targets).await?;
        let mut bare_rmqtt = None;
        if skip.bare_rmqtt {
            println!("bare rmqtt: skipped (--no-bare-rmqtt)");
        } else {
            let (child, addr) = crate::bare_rmqtt::start(
                dir,
                setup.inflight,
                max_connections,
                setup.bare_empty_hooks,
            )
            .await?;
            let pid = child.id().context("bare rmqtt exited")?;
            if setup.bare_empty_hooks {
                println!(
                    "bare rmqtt: with empty hooks on MessagePublish, MessagePublishCheckAcl and MessageExpiryCheck"
                );
            }
            targets.push(bare_rmqtt_target(pid, addr, setup.publishers));
            bare_rmqtt = Some(child);
        }
        let mut mosquitto = None;
        if skip.mosquitto {
            println!("mosquitto: skipped (--no-mosquitto)");
        } else if !installed("mosquitto") || !installed("mosquitto_passwd") {
            println!("mosquitto: not installed (apt install mosquitto): its rows are left out");
        } else {
            mosquitto = Some(start_mosquitto(dir, setup, targets)?);
        }
        Ok(Brokers {
            porchlight,
            bare_rmqtt,
            mosquitto,
        })
    }

    /// Their process ids, for the output.
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec![format!("porchlight serve pid {}", self.porchlight.pid)];
        if let Some(pid) = self.bare_rmqtt.as_ref().and_then(|b| b.id()) {
            parts.push(format!("bare rmqtt pid {pid}"));
        }
        if let Some(m) = &self.mosquitto {
            parts.push(format!("mosquitto pid {}", m.id()));
        }
        parts.join(", ")
    }

    pub(crate) async fn stop(self) {
        if let Some(mut child) = self.mosquitto {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut child) = self.bare_rmqtt {
            let _ = child.kill().await;
        }
        self.porchlight.stop().await;
    }
}

fn kind_rank(label: &str) -> u8 {
    if label.ends_with("tls+password") {
        0
    } else if label.ends_with("tls+client cert") {
        1
    } else {
        2
    }
}

fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One measurement in a child process; a failure is reported as such, not fatal.
pub(crate) async fn measure(dir: &Path, spec: &LoadSpec) -> Report {
    match measure_in_child(dir, spec).await {
        Ok(r) => r,
        Err(e) => Report {
            failed: 1,
            first_error: Some(format!("the measurement failed: {e:#}")),
            ..Report::default()
        },
    }
}

async fn measure_in_child(dir: &Path, spec: &LoadSpec) -> Result<Report> {
    let file = dir.join(format!("{}.json", spec.tag));
    std::fs::write(&file, serde_json::to_string(spec)?)?;
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg("tls-load")
        .arg("--spec")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .context("starting the load generator")?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!(
            "the load generator failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the load generator printed no report")?;
    Ok(serde_json::from_str(line)?)
}

pub(crate) fn cpu_pct(cpu_s: f64, wall_s: f64) -> f64 {
    cpu_s / wall_s.max(1e-9) * 100.0
}

fn print_line(round: usize, phase: &str, label: &str, r: &Report) {
    let cpu = format!(
        "CPU broker {:.0}% load {:.0}%{}",
        cpu_pct(r.broker_cpu_s, r.wall_s),
        cpu_pct(r.load_cpu_s, r.wall_s),
        if r.load_cpu_s > r.broker_cpu_s {
            " (load generator busier)"
        } else {
            ""
        }
    );
    let tls = r
        .tls
        .as_deref()
        .map_or(String::new(), |t| format!(" [{t}]"));
    if phase == "set-up" {
        println!(
            "round {} {phase:<6} {label:<28} {:>8.0} connects/s  p50 {:>6.2} ms  p99 {:>6.2} ms (transport ready p50 {:.2} p99 {:.2})  {} failed | {cpu}{tls}",
            round + 1,
            r.rate,
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            r.ready_p50_us as f64 / 1000.0,
            r.ready_p99_us as f64 / 1000.0,
            r.failed
        );
    } else {
        println!(
            "round {} {phase:<6} {label:<28} {:>8.0} msg/s delivered ({}/{}, {} lost)  p50 {:>6.2} ms  p99 {:>6.2} ms | {cpu}{tls}",
            round + 1,
            r.rate,
            r.ok,
            r.sent,
            r.lost(),
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0
        );
    }
    if let Some(e) = &r.first_error {
        println!("        first error: {e}");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn print_summary(args: &TlsArgs, targets: &[Target], results: &[(String, &'static str, Report)]) {
    let rounds = args.rounds.max(1);
    let pick = |phase: &str, label: &str| -> Vec<&Report> {
        results
            .iter()
            .filter(|(p, l, _)| p == phase && *l == label)
            .map(|(_, _, r)| r)
            .collect()
    };
    let med =
        |rs: &[&Report], f: &dyn Fn(&Report) -> f64| median(rs.iter().map(|r| f(r)).collect());
    println!();
    println!(
        "== summary: medians of {rounds} round(s); CPU as % of one core over each measurement =="
    );
    let mut rates = std::collections::BTreeMap::new();
    for phase in ["set-up", "qos0", "qos1"] {
        println!();
        if phase == "set-up" {
            println!(
                "connection set-up ({} clients, {} at once; TCP + TLS + CONNECT → CONNACK)",
                args.clients, args.concurrency
            );
            println!(
                "p50/p99: connect → CONNACK; ready: connect → TCP (and TLS, client side) done"
            );
            println!(
                "{:<28} {:>11} {:>9} {:>9} {:>15} {:>7} {:>7} {:>7}  {:<23} TLS",
                "listener",
                "connects/s",
                "p50 ms",
                "p99 ms",
                "ready p50/p99",
                "failed",
                "broker",
                "load",
                "rounds"
            );
        } else {
            println!(
                "publish {} ({} publishers, window {}, ~270-byte OwnTracks JSON to {root}/<user>/bench, one subscriber to {root}/+/+)",
                phase.to_uppercase(),
                args.publishers,
                args.window,
                root = args.topic.as_str()
            );
            if phase == "qos1" {
                println!(
                    "(the window is freed by PUBACKs: a broker that acknowledges before it delivers queues the excess for the subscriber, and its p50/p99 then measure that queue; msg/s is what reached the subscriber)"
                );
            }
            println!(
                "{:<28} {:>11} {:>9} {:>9} {:>7} {:>7} {:>7}  {:<23} TLS",
                "listener", "msg/s", "p50 ms", "p99 ms", "lost", "broker", "load", "rounds"
            );
        }
        for t in targets {
            let rs = pick(phase, t.label);
            if rs.is_empty() {
                continue;
            }
            let rate = med(&rs, &|r| r.rate);
            rates.insert((phase, t.label), rate);
            let per_round: Vec<String> = rs.iter().map(|r| format!("{:.0}", r.rate)).collect();
            let bad = if phase == "set-up" {
                rs.iter().map(|r| r.failed).sum::<u64>()
            } else {
                rs.iter().map(|r| r.lost() + r.failed).sum::<u64>()
            };
            let broker = med(&rs, &|r| cpu_pct(r.broker_cpu_s, r.wall_s));
            let load = med(&rs, &|r| cpu_pct(r.load_cpu_s, r.wall_s));
            let ready = if phase == "set-up" {
                format!(
                    " {:>15}",
                    format!(
                        "{:.2}/{:.2}",
                        med(&rs, &|r| r.ready_p50_us as f64) / 1000.0,
                        med(&rs, &|r| r.ready_p99_us as f64) / 1000.0
                    )
                )
            } else {
                String::new()
            };
            println!(
                "{:<28} {:>11.0} {:>9.2} {:>9.2}{ready} {:>7} {:>6.0}% {:>6.0}%  {:<23} {}{}",
                t.label,
                rate,
                med(&rs, &|r| r.p50_us as f64) / 1000.0,
                med(&rs, &|r| r.p99_us as f64) / 1000.0,
                bad,
                broker,
                load,
                per_round.join(" / "),
                rs.iter()
                    .find_map(|r| r.tls.as_deref())
                    .unwrap_or(if t.endpoint.tls.is_some() { "?" } else { "-" }),
                if load > broker {
                    "  <- load generator busier"
                } else {
                    ""
                }
            );
        }
    }
    println!();
    for phase in ["set-up", "qos0", "qos1"] {
        let get = |l: &str| rates.get(&(phase, l)).copied();
        let ratio = |a: &str, b: &str| match (get(a), get(b)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "ratios {phase:<6}: porchlight tls/plain {}  mosquitto tls/plain {}  porchlight/mosquitto: tls {}  plain {}{}  porchlight/bare-rmqtt plain {}  bare-rmqtt/mosquitto plain {}",
            ratio(P_TLS, P_PLAIN),
            ratio(M_TLS, M_PLAIN),
            ratio(P_TLS, M_TLS),
            ratio(P_PLAIN, M_PLAIN),
            if phase == "set-up" {
                format!("  client cert {}", ratio(P_CERT, M_CERT))
            } else {
                String::new()
            },
            ratio(P_PLAIN, B_PLAIN),
            ratio(B_PLAIN, M_PLAIN),
        );
    }
}

pub(crate) const B_PLAIN: &str = "bare rmqtt plain";
const P_TLS: &str = "porchlight tls+password";
const P_CERT: &str = "porchlight tls+client cert";
pub(crate) const P_PLAIN: &str = "porchlight plain";
const M_TLS: &str = "mosquitto tls+password";
const M_CERT: &str = "mosquitto tls+client cert";
pub(crate) const M_PLAIN: &str = "mosquitto plain";

/// Each TLS listener: verified for `localhost` and 127.0.0.1, refused for another name.
async fn check_names(t: &Target) -> Result<()> {
    if t.endpoint.tls.is_none() {
        return Ok(());
    }
    for name in ["localhost", "127.0.0.1"] {
        let dialer = Dialer::with_name(&t.endpoint, Some(server_name(name)?))?;
        dialer
            .open(0)
            .await
            .with_context(|| format!("{}: the server certificate for {name}", t.label))?;
    }
    let wrong = Dialer::with_name(&t.endpoint, Some(server_name("not-this-host.example")?))?;
    if wrong.open(0).await.is_ok() {
        bail!(
            "{}: a handshake expecting another name succeeded: the client does not check names",
            t.label
        );
    }
    Ok(())
}

/// What the brokers are set up with, shared by the `tls` and `scale` modes.
pub(crate) struct Setup {
    /// Publishing logins (each its own user) beside the subscriber's.
    pub(crate) publishers: usize,
    /// The inflight window per session.
    pub(crate) inflight: u16,
    pub(crate) x25519: bool,
    /// `Bench`: Porchlight's publishers are admins (whose ACL allows `bench/...`).
    pub(crate) topic: TopicRoot,
    /// Bare rmqtt with empty per-message hooks (`--bare-empty-hooks`).
    pub(crate) bare_empty_hooks: bool,
}

impl Setup {
    fn of(args: &TlsArgs) -> Setup {
        Setup {
            publishers: args.publishers,
            inflight: args.inflight,
            x25519: args.x25519,
            topic: args.topic,
            bare_empty_hooks: args.bare_empty_hooks,
        }
    }
}

/// The `[mqtt]` section the bench gives `porchlight serve` (its `config.toml`).
pub(crate) fn porchlight_mqtt_config(inflight: u16, max_connections: usize) -> String {
    format!(
        "[mqtt]\nmax_inflight = {inflight}\nmax_queued_messages = 1000000\nmax_connections = {max_connections}\n"
    )
}

async fn start_porchlight(
    dir: &Path,
    setup: &Setup,
    max_connections: usize,
    targets: &mut Vec<Target>,
) -> Result<Server> {
    let data = dir.join("porchlight");
    std::fs::create_dir_all(&data)?;
    std::fs::write(
        data.join("config.toml"),
        porchlight_mqtt_config(setup.inflight, max_connections),
    )?;
    let server = Server::start_with(
        &data,
        &["--mqtts-port", "0", "--mqtt-cert-port", "0"],
        &[("PORCHLIGHT_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await?;
    let port = |key: &str| -> Result<SocketAddr> {
        let port = server.runtime[key]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("runtime.json has no {key}: {}", server.runtime))?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    };
    let (plain, tls, cert) = (
        port("mqtt_port")?,
        port("mqtt_tls_port")?,
        port("mqtt_cert_port")?,
    );

    let http = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = server.url.clone();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http.request(method, format!("{base}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let path = path.to_owned();
        async move {
            let r = request.send().await?;
            let status = r.status();
            let text = r.text().await?;
            if !status.is_success() {
                bail!("{path} answered {status}: {text}");
            }
            anyhow::Ok(text)
        }
    };
    call(
        reqwest::Method::POST,
        "/api/login",
        Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
    )
    .await?;
    let ca_pem = call(reqwest::Method::GET, "/api/ca", None).await?;
    let mut logins = Vec::new();
    let mut certs = Vec::new();
    let role = match setup.topic {
        TopicRoot::Owntracks => "user",
        TopicRoot::Bench => "admin",
    };
    for i in 0..setup.publishers.max(1) {
        let user = format!("pub{i}");
        call(
            reqwest::Method::POST,
            "/api/users",
            Some(json!({"username": user, "role": role, "password": "tls bench user password"})),
        )
        .await?;
        let device: Value = serde_json::from_str(
            &call(
                reqwest::Method::POST,
                "/api/devices",
                Some(json!({"name": "bench", "username": user})),
            )
            .await?,
        )?;
        logins.push(mqtt_login(&device)?);
        let issued: Value = serde_json::from_str(
            &call(
                reqwest::Method::POST,
                "/api/certificates",
                Some(json!({"user": user, "device": "bench"})),
            )
            .await?,
        )?;
        let field = |k: &str| {
            issued[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("/api/certificates answered without {k}"))
        };
        certs.push((field("cert_pem")?, field("key_pem")?));
    }
    let sub: Value = serde_json::from_str(
        &call(
            reqwest::Method::POST,
            "/api/devices",
            Some(json!({"name": "bench-sub"})),
        )
        .await?,
    )?;
    let subscriber = mqtt_login(&sub)?;
    push_targets(
        targets,
        Broker::Porchlight,
        server.pid,
        Listeners {
            plain,
            tls,
            cert,
            ca_pem,
        },
        logins,
        certs,
        subscriber,
        setup.x25519,
    );
    Ok(server)
}

fn mqtt_login(device: &Value) -> Result<(String, String)> {
    match (
        device["mqtt_username"].as_str(),
        device["mqtt_password"].as_str(),
    ) {
        (Some(u), Some(p)) => Ok((u.to_owned(), p.to_owned())),
        _ => bail!("/api/devices answered without MQTT credentials"),
    }
}

struct Listeners {
    plain: SocketAddr,
    tls: SocketAddr,
    cert: SocketAddr,
    ca_pem: String,
}

#[allow(clippy::too_many_arguments)]
fn push_targets(
    targets: &mut Vec<Target>,
    broker: Broker,
    pid: u32,
    l: Listeners,
    logins: Vec<(String, String)>,
    certs: Vec<(String, String)>,
    subscriber: (String, String),
    x25519_only: bool,
) {
    let porchlight = broker == Broker::Porchlight;
    let tls = |client_certs| TlsSpec {
        ca_pem: l.ca_pem.clone(),
        server_name: "localhost".into(),
        client_certs,
        x25519_only,
    };
    targets.push(Target {
        label: if porchlight { P_TLS } else { M_TLS },
        broker,
        pid,
        endpoint: Endpoint {
            addr: l.tls,
            tls: Some(tls(Vec::new())),
            logins: logins.clone(),
            anonymous: false,
        },
        publish: true,
        subscriber: subscriber.clone(),
    });
    targets.push(Target {
        label: if porchlight { P_CERT } else { M_CERT },
        broker,
        pid,
        endpoint: Endpoint {
            addr: l.cert,
            tls: Some(tls(certs)),
            logins: Vec::new(),
            anonymous: false,
        },
        publish: false,
        subscriber: subscriber.clone(),
    });
    targets.push(Target {
        label: if porchlight { P_PLAIN } else { M_PLAIN },
        broker,
        pid,
        endpoint: Endpoint {
            addr: l.plain,
            tls: None,
            logins,
            anonymous: false,
        },
        publish: true,
        subscriber,
    });
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Mosquitto with a plain, a TLS + password and a client-certificate listener, from a
/// throwaway CA. Its TLS settings are Debian's defaults (TLS 1.2 and 1.3 through OpenSSL).
/// `set_tcp_nodelay` is on, as on Porchlight's listeners: with Nagle (Mosquitto's default)
/// each TLS CONNACK waits behind the unacknowledged session tickets for the client's delayed
/// ACK (40 ms or more), and the set-up figures would measure that timer.
fn start_mosquitto(
    dir: &Path,
    setup: &Setup,
    targets: &mut Vec<Target>,
) -> Result<std::process::Child> {
    let dir = dir.join("mosquitto");
    std::fs::create_dir_all(&dir)?;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ca = porchlight_ca::Authority::generate("tls bench Mosquitto CA", now, day)?;
    let server = ca.issue_server(
        "localhost",
        &[
            porchlight_ca::San::Dns("localhost".into()),
            porchlight_ca::San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ],
        now,
        day,
    )?;
    std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
    std::fs::write(dir.join("server.pem"), &server.cert_pem)?;
    std::fs::write(dir.join("server.key"), server.key_pem.as_bytes())?;

    let passwd = dir.join("passwd");
    let publishers = setup.publishers.max(1);
    let mut logins = crate::mosquitto_password_file(&passwd, publishers)?;
    let mut certs = Vec::new();
    for (user, _) in &logins[..publishers] {
        let issued = ca.issue_client(
            &porchlight_ca::ClientSubject {
                user: user.clone(),
                device: "bench".into(),
            },
            now,
            day,
        )?;
        certs.push((issued.cert_pem.clone(), issued.key_pem.to_string()));
    }
    let subscriber = logins.pop().context("no subscriber login")?;
    std::fs::write(
        dir.join("acl"),
        "user benchsub\ntopic read owntracks/#\ntopic read bench/#\n\npattern readwrite owntracks/%u/#\npattern readwrite bench/%u/#\n",
    )?;
    let (plain, tls, cert) = (free_port()?, free_port()?, free_port()?);
    let user_line = if crate::is_root() { "user root\n" } else { "" };
    let files = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        dir.join("ca.pem").display(),
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!(
            "{user_line}per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             persistence false\nmax_queued_messages 1000000\nmax_inflight_messages {}\nlog_dest none\n\
             set_tcp_nodelay true\n\
             listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\n{files}\
             listener {cert} 127.0.0.1\n{files}require_certificate true\nuse_identity_as_username true\n",
            passwd.display(),
            dir.join("acl").display(),
            setup.inflight
        ),
    )?;
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [plain, tls, cert] {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    push_targets(
        targets,
        Broker::Mosquitto,
        child.id(),
        Listeners {
            plain: SocketAddr::from((Ipv4Addr::LOCALHOST, plain)),
            tls: SocketAddr::from((Ipv4Addr::LOCALHOST, tls)),
            cert: SocketAddr::from((Ipv4Addr::LOCALHOST, cert)),
            ca_pem: ca.cert_pem().to_owned(),
        },
        logins,
        certs,
        subscriber,
        setup.x25519,
    );
    Ok(child)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ingest::{create_devices, create_users};

    fn args(publishers: usize) -> TlsArgs {
        TlsArgs {
            rounds: 1,
            clients: 20,
            concurrency: 4,
            publishers,
            window: 8,
            batch: 1,
            duration: 1,
            inflight: 32,
            x25519: false,
            no_mosquitto: false,
            no_bare_rmqtt: false,
            bare_empty_hooks: false,
            topic: TopicRoot::Owntracks,
            quick: true,
        }
    }

    fn spec(tag: &str, endpoint: &Endpoint, phase: Phase) -> LoadSpec {
        LoadSpec {
            tag: tag.into(),
            endpoint: endpoint.clone(),
            broker_pid: std::process::id(),
            phase,
        }
    }

    /// The embedded server with its plain, TLS and certificate listeners, in this process;
    /// its three targets (two publishing logins, certificates for them) like the bench's.
    async fn porchlight() -> (tempfile::TempDir, porchlight_server::Running, Vec<Target>) {
        let dir = tempfile::tempdir().unwrap();
        let options = porchlight_server::LoadOptions {
            data_dir: Some(dir.path().join("porchlight")),
            http_port: Some(0),
            mqtt_port: Some(0),
            mqtts_port: Some(0),
            mqtt_cert_port: Some(0),
            bind: Some([127, 0, 0, 1].into()),
            ..Default::default()
        };
        let env = [(
            "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
            ADMIN_PASSWORD.to_owned(),
        )];
        let config = porchlight_server::Config::load_from(&options, env).unwrap();
        let running = porchlight_server::start(config).await.unwrap();
        // One device "bench" per user, as the bench makes them: it publishes to
        // owntracks/<user>/bench.
        let mut logins = Vec::new();
        let mut certs = Vec::new();
        for user in create_users(&running, 2).await.unwrap() {
            let now = SystemTime::now();
            let (_, key) = running
                .store()
                .add_device(&user, "bench", now)
                .await
                .unwrap();
            logins.push((user.clone(), key.expose().to_owned()));
            let (issued, _, _) = running
                .ca()
                .issue_client(&user, "bench", now, Duration::from_secs(86_400))
                .await
                .unwrap();
            certs.push((issued.cert_pem.clone(), issued.key_pem.to_string()));
        }
        let admin = create_devices(&running, &["admin".to_owned()], "sub", 1)
            .await
            .unwrap();
        let mut targets = Vec::new();
        push_targets(
            &mut targets,
            Broker::Porchlight,
            std::process::id(),
            Listeners {
                plain: running.mqtt_addr.unwrap(),
                tls: running.mqtt_tls_addr.unwrap(),
                cert: running.mqtt_cert_addr.unwrap(),
                ca_pem: running.ca().active().cert_pem().to_owned(),
            },
            logins,
            certs,
            (admin[0].user.clone(), admin[0].key.clone()),
            false,
        );
        (dir, running, targets)
    }

    fn target<'a>(targets: &'a [Target], label: &str) -> &'a Target {
        targets.iter().find(|t| t.label == label).unwrap()
    }

    #[test]
    fn a_stamped_location_is_owntracks_json_of_about_270_bytes_with_its_stamp() {
        let payload = stamped_location(13, 7, 0x0123_4567_89ab_cdef);
        assert!((250..=290).contains(&payload.len()), "{}", payload.len());
        assert_eq!(stamp(&payload), Some((13, 0x0123_4567_89ab_cdef)));
        let parsed = porchlight_domain::owntracks::parse_payload(&payload, None).unwrap();
        let porchlight_domain::owntracks::Parsed::Message(m) = parsed else {
            panic!("empty")
        };
        let porchlight_domain::owntracks::Body::Location(l) = m.body() else {
            panic!("not a location")
        };
        assert_eq!(l.tst, 1_700_000_007);
        assert_eq!(stamp(b"{\"_type\":\"location\"}"), None);
    }

    /// Thread run times agree with `/proc/<pid>/stat`, and a thread that ended during the
    /// measurement still counts (through `/proc/<pid>/stat`).
    #[test]
    fn cpu_samples_count_threads_that_ended() {
        let pid = std::process::id();
        // Busy until the process's stat CPU time advanced by `secs` (however loaded the
        // machine is).
        let spin = move |secs: f64| {
            let start = cpu_seconds(pid);
            let mut x = 0u64;
            while cpu_seconds(pid) - start < secs {
                for _ in 0..100_000 {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
            }
            x
        };
        let before = CpuSample::of(pid);
        assert!(spin(0.1) > 0);
        let after = CpuSample::of(pid);
        let here = before.until(after);
        assert!((0.07..0.5).contains(&here), "{here}");
        std::thread::spawn(move || spin(0.3)).join().unwrap();
        let ended = after.until(CpuSample::of(pid));
        assert!(ended >= 0.25, "{ended}");
    }

    /// Against the real broker: names are checked (and another CA's chain is refused), every
    /// set-up over TLS with a password and with a client certificate succeeds while a bad
    /// password is counted as a failure, and published messages all arrive over TLS at
    /// both QoS.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_up_and_publish_over_tls_against_the_embedded_broker() {
        let (_dir, running, targets) = porchlight().await;
        for t in &targets {
            check_names(t).await.unwrap();
        }
        let tls = target(&targets, P_TLS);
        let mut stranger = tls.endpoint.clone();
        let other = porchlight_ca::Authority::generate(
            "Other CA",
            SystemTime::now(),
            Duration::from_secs(86_400),
        )
        .unwrap();
        if let Some(t) = stranger.tls.as_mut() {
            t.ca_pem = other.cert_pem().to_owned();
        }
        assert!(Dialer::new(&stranger).unwrap().open(0).await.is_err());

        let connect = Phase::Connect {
            clients: 20,
            concurrency: 4,
        };
        for label in [P_TLS, P_CERT, P_PLAIN] {
            let t = target(&targets, label);
            let r = connect_phase(&spec("c", &t.endpoint, connect.clone()), 20, 4)
                .await
                .unwrap();
            assert_eq!((r.ok, r.failed), (20, 0), "{label}: {r:?}");
            assert!(
                r.rate > 0.0 && r.p50_us > 0 && r.p99_us >= r.p50_us,
                "{r:?}"
            );
            assert!(r.ready_p50_us > 0 && r.ready_p50_us <= r.p50_us, "{r:?}");
            match label {
                P_PLAIN => assert_eq!(r.tls, None),
                P_CERT => assert!(r.tls.as_deref().unwrap().ends_with("+client cert"), "{r:?}"),
                _ => assert!(r.tls.as_deref().unwrap().starts_with("TLSv1_3"), "{r:?}"),
            }
        }
        let mut wrong = tls.endpoint.clone();
        for login in &mut wrong.logins {
            login.1 = "not the key".into();
        }
        let r = connect_phase(&spec("w", &wrong, connect.clone()), 6, 2)
            .await
            .unwrap();
        assert_eq!((r.ok, r.failed), (0, 6), "{r:?}");
        assert!(r.first_error.unwrap().contains("CONNACK refused"));

        for qos in [0u8, 1] {
            let r = publish_phase(
                &spec(&format!("p{qos}"), &tls.endpoint, connect.clone()),
                "owntracks",
                qos,
                8,
                1,
                Duration::from_millis(700),
                &tls.subscriber,
            )
            .await
            .unwrap();
            assert!(r.sent > 0, "{r:?}");
            assert_eq!((r.ok, r.failed), (r.sent, 0), "qos{qos}: {r:?}");
            assert!(r.rate > 0.0 && r.p50_us > 0, "{r:?}");
        }
        running.shutdown().await;
    }

    /// `--topic bench` rests on the ACL: admins' devices publish to `bench/<user>/bench` and
    /// an admin's device subscribed to `bench/+/+` gets every message at both QoS, while a
    /// user's device may not publish there (so the option has to use admins).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admins_devices_publish_outside_owntracks_on_the_embedded_broker() {
        let (_dir, running, targets) = porchlight().await;
        let plain = target(&targets, P_PLAIN);
        let mut admins = Vec::new();
        for name in ["benchadmin0", "benchadmin1"] {
            running
                .store()
                .create_user(
                    name,
                    porchlight_domain::Role::Admin,
                    &porchlight_domain::secret::Secret::new("bench admin password"),
                    SystemTime::now(),
                )
                .await
                .unwrap();
            admins.push(name.to_owned());
        }
        let logins: Vec<(String, String)> = create_devices(&running, &admins, "bench", 2)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.user, l.key))
            .collect();
        let admin_endpoint = Endpoint {
            logins,
            ..plain.endpoint.clone()
        };
        let phase = Phase::Connect {
            clients: 0,
            concurrency: 0,
        };
        for qos in [0u8, 1] {
            let r = publish_phase(
                &spec(&format!("b{qos}"), &admin_endpoint, phase.clone()),
                TopicRoot::Bench.as_str(),
                qos,
                8,
                1,
                Duration::from_millis(500),
                &plain.subscriber,
            )
            .await
            .unwrap();
            assert!(r.sent > 0, "{r:?}");
            assert_eq!((r.ok, r.failed), (r.sent, 0), "qos{qos}: {r:?}");
        }
        // A user's device: its QoS 1 publishes to bench/... are refused (nothing arrives).
        let r = publish_phase(
            &spec("u", &plain.endpoint, phase),
            TopicRoot::Bench.as_str(),
            1,
            8,
            1,
            Duration::from_millis(300),
            &plain.subscriber,
        )
        .await
        .unwrap();
        assert_eq!(r.ok, 0, "{r:?}");
        running.shutdown().await;
    }

    /// Mosquitto as the bench configures it: its TLS listeners verify against the throwaway
    /// CA for both names, take passwords and client certificates, and deliver over TLS.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mosquitto_listeners_take_passwords_and_client_certificates() {
        if !installed("mosquitto") {
            eprintln!("mosquitto is not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut targets = Vec::new();
        let mut child = start_mosquitto(dir.path(), &Setup::of(&args(2)), &mut targets).unwrap();
        let pid = child.id();
        for t in &targets {
            check_names(t).await.unwrap();
        }
        for label in [M_TLS, M_CERT, M_PLAIN] {
            let t = target(&targets, label);
            let mut s = spec(
                "c",
                &t.endpoint,
                Phase::Connect {
                    clients: 10,
                    concurrency: 2,
                },
            );
            s.broker_pid = pid;
            let r = connect_phase(&s, 10, 2).await.unwrap();
            assert_eq!((r.ok, r.failed), (10, 0), "{label}: {r:?}");
        }
        let t = target(&targets, M_TLS);
        let mut s = spec(
            "p",
            &t.endpoint,
            Phase::Connect {
                clients: 0,
                concurrency: 0,
            },
        );
        s.broker_pid = pid;
        let r = publish_phase(
            &s,
            "owntracks",
            1,
            8,
            1,
            Duration::from_millis(500),
            &t.subscriber,
        )
        .await
        .unwrap();
        assert!(r.sent > 0 && r.ok == r.sent && r.failed == 0, "{r:?}");
        assert!(r.broker_cpu_s > 0.0, "{r:?}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
