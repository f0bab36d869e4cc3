//! `porchlight`: the headless hub, its admin commands, and the OwnTracks traffic generator
//! (`simulate`, in `simulate.rs`).
//!
//! This is an edge: errors are `anyhow`, printed as one line, exit code 1. Secrets that must be
//! shown (a generated password, a device key) go to stdout once and never to the log.

use std::io::{BufRead, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use porchlight_server::store::{Store, random_password};
use porchlight_server::{Config, LoadOptions};

mod simulate;

#[derive(Parser)]
#[command(
    name = "porchlight",
    version,
    about = "Porchlight: a self-hosted home hub"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Data directory (database, config.toml, runtime.json). Default: the per-user app data dir.
    #[arg(long, global = true, env = "PORCHLIGHT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Config file. Default: config.toml in the data directory.
    #[arg(long, global = true, env = "PORCHLIGHT_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub headless: web UI/API and MQTT broker, until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage MQTT devices (each phone or Home Assistant gets its own key).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The built-in certificate authority (works with the server stopped too).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Drive simulated OwnTracks phones against a running server (creates its own users and
    /// devices with an admin API token); stops by itself after --duration.
    Simulate(simulate::SimulateArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// HTTP port for the web UI and API (0 = any free port).
    #[arg(long)]
    http_port: Option<u16>,
    /// MQTT port (0 = any free port, -1 = no broker).
    #[arg(long, allow_negative_numbers = true)]
    mqtt_port: Option<i32>,
    /// MQTT-over-TLS port, with a certificate from the built-in CA (0 = any free port,
    /// -1 = off). Default 8883 (0 when --mqtt-port is 0).
    #[arg(long, allow_negative_numbers = true)]
    mqtts_port: Option<i32>,
    /// MQTT-over-TLS port that requires a client certificate from the built-in CA instead of
    /// a password (0 = any free port, -1 = off). Default 8884 (0 when --mqtt-port is 0).
    #[arg(long, allow_negative_numbers = true)]
    mqtt_cert_port: Option<i32>,
    /// Address to listen on for both HTTP and MQTT (e.g. 127.0.0.1 for this machine only).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Serve the web UI and API over HTTPS on the HTTP port (certificate from the built-in
    /// CA); plain http:// is redirected there. Same as `[http] tls = true`.
    #[arg(long)]
    https: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account. Without --password-stdin a random password is generated and printed once.
    Add {
        username: String,
        #[arg(long, default_value = "user", value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Set a new password (ends the user's web sessions).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account with its devices, sessions and tokens.
    Remove { username: String },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Add a device to a user and print its MQTT credentials once.
    Add { username: String, name: String },
    /// List devices (of one user, or all).
    List { username: Option<String> },
    /// Remove a device; its key stops working at its next connect.
    Remove { username: String, name: String },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Show the active CA (fingerprint, validity, where its certificate is) and retired ones.
    Show,
    /// Write the active CA certificate (PEM) to a file, for devices' trust stores.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a new CA the active one; the old one is kept (retired) so what it signed stays
    /// trusted. A running server uses it for its TLS certificate from its next start.
    Rotate,
    /// Make an existing CA (PEM certificate and PEM private key) the active one.
    Import {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: porchlight_domain::acl::UnknownRole| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORCHLIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    let base = LoadOptions {
        data_dir: cli.global.data_dir,
        config_file: cli.global.config,
        ..LoadOptions::default()
    };
    match cli.command {
        Command::Serve(args) => {
            let options = LoadOptions {
                http_port: args.http_port,
                mqtt_port: args.mqtt_port,
                mqtts_port: args.mqtts_port,
                mqtt_cert_port: args.mqtt_cert_port,
                bind: args.bind,
                https: args.https.then_some(true),
                ..base
            };
            serve(Config::load(&options)?).await
        }
        Command::User(cmd) => user(open_store(&base)?, cmd).await,
        Command::Device(cmd) => device(open_store(&base)?, cmd).await,
        Command::Ca(cmd) => ca(&base, cmd).await,
        Command::Simulate(args) => simulate::simulate(args).await,
    }
}

async fn serve(config: Config) -> Result<()> {
    let stop = shutdown_signal()?;
    let running = porchlight_server::start(config).await?;
    if let Some(admin) = &running.initial_admin {
        match &admin.generated_password {
            Some(password) => println!(
                "Created the first account.\n  user:     {}\n  password: {}\n\
                 This password is shown only this once. Change it with `porchlight user passwd {}`.",
                admin.username,
                password.expose(),
                admin.username
            ),
            None => println!(
                "Created the first account \"{}\" with the password from PORCHLIGHT_ADMIN_PASSWORD.",
                admin.username
            ),
        }
    }
    match (running.mqtt_addr, running.mqtt_tls_addr) {
        (Some(mqtt), Some(tls)) => println!(
            "Porchlight is running: web UI http://127.0.0.1:{}/ , MQTT port {}, MQTT over TLS port {} \
             (CA certificate: http://127.0.0.1:{}/api/ca)",
            running.http_addr.port(),
            mqtt.port(),
            tls.port(),
            running.http_addr.port()
        ),
        (Some(mqtt), None) => println!(
            "Porchlight is running: web UI http://127.0.0.1:{}/ , MQTT port {}",
            running.http_addr.port(),
            mqtt.port()
        ),
        (None, _) => println!(
            "Porchlight is running: web UI http://127.0.0.1:{}/ (MQTT broker disabled)",
            running.http_addr.port()
        ),
    }
    stop.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered when this is called, not when
/// the future is first polled, so a signal that arrives right after start-up is not lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn open_store(options: &LoadOptions) -> Result<Store> {
    Ok(open_data(options)?.0)
}

/// The store and the data directory it lives in.
fn open_data(options: &LoadOptions) -> Result<(Store, PathBuf)> {
    let config = Config::load(options)?;
    let path = config.data_dir.join("porchlight.db");
    if !path.exists() {
        bail!(
            "no Porchlight database at {}; start `porchlight serve` once first, or pass --data-dir",
            path.display()
        );
    }
    Ok((Store::open(&path)?, config.data_dir))
}

fn format_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (Unix time)"))
}

async fn ca(options: &LoadOptions, cmd: CaCommand) -> Result<()> {
    use porchlight_server::ca::Authorities;
    let (store, data_dir) = open_data(options)?;
    let result = async {
        let authorities = Authorities::open(store.clone(), &data_dir)?;
        let now = std::time::SystemTime::now();
        match cmd {
            CaCommand::Show => {
                let list = authorities.list().await?;
                if list.is_empty() {
                    bail!("there is no CA yet: `porchlight serve` makes one at its first start");
                }
                for entry in &list {
                    let state = match entry.stored.retired_at {
                        None => "active".to_owned(),
                        Some(at) => format!("retired {}", format_time(at)),
                    };
                    println!(
                        "{state} CA ({})\n  subject:     {}\n  fingerprint: SHA256 {}\n  valid:       {} to {}",
                        entry.stored.origin.as_str(),
                        entry.info.subject,
                        entry.stored.fingerprint,
                        format_time(entry.info.not_before),
                        format_time(entry.info.not_after),
                    );
                }
                println!(
                    "certificate (PEM): {}\n  also GET /api/ca on the web port, or `porchlight ca export --out FILE`",
                    authorities.ca_pem_path().display()
                );
            }
            CaCommand::Export { out } => {
                let Some(active) = authorities.active_certificate().await? else {
                    bail!("there is no CA yet: `porchlight serve` makes one at its first start");
                };
                std::fs::write(&out, &active.cert_pem)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!(
                    "wrote the CA certificate (SHA256 {}) to {}",
                    active.fingerprint,
                    out.display()
                );
            }
            CaCommand::Rotate => {
                let new = authorities.generate(now).await?;
                println!(
                    "the new active CA is {} (SHA256 {}); the previous one is retired but still listed.\n\
                     A running server takes its TLS certificate from the new CA at its next start.",
                    new.common_name(),
                    new.fingerprint()
                );
            }
            CaCommand::Import { cert, key } => {
                let cert_pem = std::fs::read_to_string(&cert)
                    .with_context(|| format!("reading {}", cert.display()))?;
                let key_pem = zeroize::Zeroizing::new(
                    std::fs::read_to_string(&key)
                        .with_context(|| format!("reading {}", key.display()))?,
                );
                let new = authorities.import(&cert_pem, &key_pem, now).await?;
                println!(
                    "imported {} (SHA256 {}); it is the active CA now, its key sealed in {}.\n\
                     You may delete {} now. A running server takes its TLS certificate from it at its next start.",
                    new.common_name(),
                    new.fingerprint(),
                    authorities.key_path(new.fingerprint()).display(),
                    key.display()
                );
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

fn read_password(from_stdin: bool) -> Result<(Secret, bool)> {
    if !from_stdin {
        return Ok((random_password(), true));
    }
    if std::io::stdin().is_terminal() {
        eprint!("Password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok((Secret::new(password), false))
}

async fn user(store: Store, cmd: UserCommand) -> Result<()> {
    let result = async {
        match cmd {
            UserCommand::Add {
                username,
                role,
                password_stdin,
            } => {
                let (password, generated) = read_password(password_stdin)?;
                let user = store
                    .create_user(&username, role, &password, std::time::SystemTime::now())
                    .await?;
                println!("added {} ({})", user.username, user.role.as_str());
                if generated {
                    println!("password: {}", password.expose());
                }
            }
            UserCommand::List => {
                for u in store.list_users().await? {
                    println!("{}\t{}", u.username, u.role.as_str());
                }
            }
            UserCommand::Passwd {
                username,
                password_stdin,
            } => {
                let (password, generated) = read_password(password_stdin)?;
                store
                    .set_password(&username, &password, std::time::SystemTime::now())
                    .await?;
                println!("password changed for {username}");
                if generated {
                    println!("password: {}", password.expose());
                }
            }
            UserCommand::Remove { username } => {
                let (user, devices) = store.remove_user(&username).await?;
                println!("removed {} and {} device(s)", user.username, devices.len());
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

async fn device(store: Store, cmd: DeviceCommand) -> Result<()> {
    let result = async {
        match cmd {
            DeviceCommand::Add { username, name } => {
                let (device, key) = store
                    .add_device(&username, &name, std::time::SystemTime::now())
                    .await?;
                println!(
                    "added device {}/{}\nMQTT username: {}\nMQTT password: {}\n\
                     The password is shown only this once.",
                    device.username,
                    device.name,
                    device.username,
                    key.expose()
                );
            }
            DeviceCommand::List { username } => {
                let scope = match username {
                    Some(name) => Some(store.find_user(&name).await?.id),
                    None => None,
                };
                for d in store.list_devices(scope).await? {
                    println!("{}\t{}", d.username, d.name);
                }
            }
            DeviceCommand::Remove { username, name } => {
                store.remove_device(&username, &name).await?;
                println!("removed device {username}/{name}");
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}
