//! `porchlight-bench bare-rmqtt` (hidden): rmqtt 0.24, the engine inside Porchlight's broker,
//! with none of our hooks, as a third broker for the `tls` and `scale` modes (issue 16), so
//! that what our hooks (auth, ACLs, OwnTracks ingest) cost is visible beside Mosquitto.
//!
//! One plain TCP listener on 127.0.0.1, `allow_anonymous` (any CONNECT is accepted: rmqtt
//! with no authentication hook lets a username through too), the same inflight window and
//! queue length as the other brokers get, TCP_NODELAY and rmqtt's busy check off, as in
//! `porchlight_broker`. It runs in a child process of the bench ([`start`]) so that its CPU
//! and RSS are its own, and writes the port it bound to a file the parent reads.
//! Only this module and the broker crate know rmqtt; the bench's rows never depend on it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;

#[derive(clap::Args, Debug, Clone)]
pub struct BareArgs {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Where to write the bound port once listening.
    #[arg(long)]
    pub(crate) port_file: Option<PathBuf>,
    /// Inflight window per session.
    #[arg(long, default_value_t = 32)]
    pub(crate) inflight: u16,
    /// Queued messages per session.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) queue: usize,
    /// Connections (and sessions) at most.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) max_connections: usize,
    /// Register a hook handler that does nothing on [`PER_MESSAGE_HOOKS`].
    #[arg(long)]
    pub(crate) empty_hooks: bool,
}

/// The hook points Porchlight's broker runs for every message: the will check, the publish
/// ACL (and commit-before-ack), the per-delivery ACL.
const PER_MESSAGE_HOOKS: [Type; 3] = [
    Type::MessagePublish,
    Type::MessagePublishCheckAcl,
    Type::MessageExpiryCheck,
];

/// A handler that lets rmqtt go on as if it were not there: "no answer" is rmqtt's default
/// (allow, not expired, unchanged).
struct EmptyHooks;

#[async_trait::async_trait]
impl Handler for EmptyHooks {
    async fn hook(&self, _param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        (true, acc)
    }
}

/// Binds the listener and serves until the task is dropped; returns the bound address and
/// the serving task.
pub(crate) async fn serve(
    args: &BareArgs,
) -> Result<(SocketAddr, tokio::task::JoinHandle<Result<()>>)> {
    let scx = ServerContext::new()
        .busy_check_enable(false)
        .mqtt_max_sessions(isize::try_from(args.max_connections).unwrap_or(isize::MAX))
        .build()
        .await;
    if args.empty_hooks {
        let register = scx.extends.hook_mgr().register();
        for typ in PER_MESSAGE_HOOKS {
            register.add(typ, Box::new(EmptyHooks)).await;
        }
        register.start().await;
    }
    let listener = Builder::new()
        .name("bare-rmqtt/tcp")
        .laddr(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
        .nodelay(true)
        .reuseaddr(Some(true))
        .allow_anonymous(true)
        .max_connections(args.max_connections.max(1))
        .max_mqueue_len(args.queue.max(1))
        .max_inflight(std::num::NonZeroU16::new(args.inflight).unwrap_or(std::num::NonZeroU16::MIN))
        .bind()
        .map_err(|e| anyhow::anyhow!("binding rmqtt's listener: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| anyhow::anyhow!("rmqtt's listener address: {e}"))?;
    let server = MqttServer::new(scx).listener_by_id(listener, 1).build();
    let task = tokio::spawn(async move {
        server
            .run()
            .await
            .map_err(|e| anyhow::anyhow!("rmqtt stopped: {e}"))
    });
    Ok((addr, task))
}

/// The child's side: serve until killed.
pub async fn run(args: BareArgs) -> Result<()> {
    let (addr, task) = serve(&args).await?;
    if let Some(file) = &args.port_file {
        // Written whole under another name, then renamed: the parent never reads half a port.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, addr.port().to_string())?;
        std::fs::rename(&tmp, file)?;
    }
    task.await?
}

/// Starts `porchlight-bench bare-rmqtt` (this executable) in a child process, killed when the
/// handle drops; returns it with the address it listens on.
pub(crate) async fn start(
    dir: &Path,
    inflight: u16,
    max_connections: usize,
    empty_hooks: bool,
) -> Result<(tokio::process::Child, SocketAddr)> {
    let port_file = dir.join("bare-rmqtt.port");
    let _ = std::fs::remove_file(&port_file);
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("bare-rmqtt")
        .arg("--port-file")
        .arg(&port_file)
        .arg("--inflight")
        .arg(inflight.to_string())
        .arg("--max-connections")
        .arg(max_connections.to_string())
        .args(empty_hooks.then_some("--empty-hooks"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the bare rmqtt broker")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(port) = text.trim().parse::<u16>()
        {
            return Ok((child, SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }
        if let Some(status) = child.try_wait()? {
            bail!("the bare rmqtt broker ended at once ({status})");
        }
        if Instant::now() > deadline {
            bail!("the bare rmqtt broker did not listen within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::tls::{LoadSpec, Phase, bare_rmqtt_target, connect_phase, publish_phase};

    fn args() -> BareArgs {
        BareArgs {
            port: 0,
            port_file: None,
            inflight: 32,
            queue: 1_000_000,
            max_connections: 1_000,
            empty_hooks: false,
        }
    }

    /// The child's side writes the port it listens on, where `start` reads it, and a raw
    /// anonymous CONNECT there gets CONNACK 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_child_side_writes_the_port_it_listens_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bare.port");
        let task = tokio::spawn(run(BareArgs {
            port_file: Some(file.clone()),
            ..args()
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        let port: u16 = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                break text.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no port file");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let (r, mut w) = tcp.into_split();
        let mut r = tokio::io::BufReader::new(r);
        let code = crate::tls::mqtt_connack(&mut r, &mut w, "raw", None)
            .await
            .unwrap();
        assert_eq!(code, 0);
        task.abort();
    }

    /// The bare broker takes anonymous CONNECTs (and CONNECTs with any password: it has no
    /// authentication hook) and routes the publish phase's messages to the wildcard
    /// subscriber at both QoS, on any topic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bare_rmqtt_accepts_connects_and_routes_publishes() {
        let (addr, task) = serve(&args()).await.unwrap();
        let target = bare_rmqtt_target(std::process::id(), addr, 2);
        assert!(target.endpoint.anonymous);
        let spec = |tag: &str, endpoint| LoadSpec {
            tag: tag.into(),
            endpoint,
            broker_pid: std::process::id(),
            phase: Phase::Connect {
                clients: 20,
                concurrency: 4,
            },
        };
        let r = connect_phase(&spec("c", target.endpoint.clone()), 20, 4)
            .await
            .unwrap();
        assert_eq!((r.ok, r.failed), (20, 0), "{r:?}");
        let mut with_password = target.endpoint.clone();
        with_password.anonymous = false;
        let r = connect_phase(&spec("w", with_password), 4, 2)
            .await
            .unwrap();
        assert_eq!((r.ok, r.failed), (4, 0), "{r:?}");
        every_message_arrives(&target, [(0, "owntracks"), (1, "bench")]).await;
        task.abort();
    }

    /// Runs a short publish phase per `(qos, topic root)` and asserts that the subscriber got
    /// every message sent.
    async fn every_message_arrives(target: &crate::tls::Target, runs: [(u8, &str); 2]) {
        for (qos, root) in runs {
            let spec = LoadSpec {
                tag: format!("p{qos}"),
                endpoint: target.endpoint.clone(),
                broker_pid: std::process::id(),
                phase: Phase::Connect {
                    clients: 1,
                    concurrency: 1,
                },
            };
            let r = publish_phase(
                &spec,
                root,
                qos,
                8,
                1,
                Duration::from_millis(500),
                &target.subscriber,
            )
            .await
            .unwrap();
            assert!(r.sent > 0, "{r:?}");
            assert_eq!((r.ok, r.failed), (r.sent, 0), "qos{qos}: {r:?}");
        }
    }

    /// Empty hooks change nothing rmqtt does: every message of both QoS still reaches the
    /// subscriber (an answer from them would refuse publishes or withhold deliveries).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_hooks_let_every_message_through() {
        let (addr, task) = serve(&BareArgs {
            empty_hooks: true,
            ..args()
        })
        .await
        .unwrap();
        let target = bare_rmqtt_target(std::process::id(), addr, 2);
        every_message_arrives(&target, [(0, "bench"), (1, "bench")]).await;
        task.abort();
    }
}
