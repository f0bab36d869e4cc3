//! porchlight-server: the composition root (API contract stub; real code lands next).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors from starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    Unimplemented,
}

/// How the config is found and overridden (CLI flags win over env, env over file).
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Data directory; `None` means the per-OS app data dir.
    pub data_dir: Option<PathBuf>,
    /// `--http-port`: 0 lets the OS choose.
    pub http_port: Option<u16>,
    /// `--mqtt-port`: 0 lets the OS choose, -1 disables the broker.
    pub mqtt_port: Option<i32>,
}

/// The typed, layered configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
}

impl Config {
    /// Defaults → `config.toml` in the data dir → `PORCHLIGHT_*` env → `options`.
    pub fn load(options: &LoadOptions) -> Result<Config, Error> {
        let _ = options;
        Err(Error::Unimplemented)
    }
}

/// A started server; dropping it does not stop it, call [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    pub mqtt_addr: Option<SocketAddr>,
}

impl Running {
    /// Stops the broker and HTTP server and flushes the database.
    pub async fn shutdown(self) {}
}

/// Opens the store, starts the broker and the HTTP server.
pub async fn start(config: Config) -> Result<Running, Error> {
    let _ = config;
    Err(Error::Unimplemented)
}
