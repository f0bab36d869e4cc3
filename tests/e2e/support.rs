//! Shared test fixtures: a server started in-process on port 0 with a known admin password,
//! an HTTP client with a cookie jar, and the path of the built `porchlight` binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use porchlight_server::{Config, LoadOptions, Running};

pub const ADMIN_PASSWORD: &str = "test admin password";

/// A running server in a temporary data dir; shut it down with [`TestServer::stop`].
pub struct TestServer {
    pub running: Running,
    /// Kept so the data dir lives as long as the server.
    pub _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts with HTTP on a free port and the broker on a free port.
    pub async fn start() -> TestServer {
        TestServer::start_with(Some(0)).await
    }

    pub async fn start_with(mqtt_port: Option<i32>) -> TestServer {
        TestServer::start_with_config(mqtt_port, "").await
    }

    /// Starts with `config_toml` as the data dir's `config.toml`.
    pub async fn start_with_config(mqtt_port: Option<i32>, config_toml: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config_toml).unwrap();
        let options = LoadOptions {
            data_dir: Some(dir.path().to_owned()),
            http_port: Some(0),
            mqtt_port: Some(mqtt_port.unwrap_or(-1)),
            bind: Some([127, 0, 0, 1].into()),
            ..LoadOptions::default()
        };
        let env = [(
            "PORCHLIGHT_ADMIN_PASSWORD".to_owned(),
            ADMIN_PASSWORD.to_owned(),
        )];
        let config = Config::load_from(&options, env).unwrap();
        let running = porchlight_server::start(config).await.unwrap();
        TestServer { running, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.http_addr, path)
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.running.mqtt_addr.expect("broker enabled")
    }

    /// A client with its own cookie jar, signed in as `username`.
    pub async fn signed_in(&self, username: &str, password: &str) -> reqwest::Client {
        let client = client();
        let response = client
            .post(self.url("/api/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login as {username}");
        client
    }

    /// One API call with `client` (its cookies), optionally with a JSON body.
    pub async fn call(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let request = client.request(method, self.url(path));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.unwrap()
    }

    pub async fn admin(&self) -> reqwest::Client {
        self.signed_in("admin", ADMIN_PASSWORD).await
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The `porchlight` binary next to this test binary (`cargo build -p porchlight` builds it;
/// `scripts/test.sh` does that before the tests).
pub fn porchlight_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join(format!("porchlight{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p porchlight` before the e2e tests (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Polls `check` until it yields a value (for effects written asynchronously, such as audit
/// rows); fails after 10 s.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A rumqttc client connected to `s`'s broker as `user`, its incoming packets forwarded to a
/// channel by a task (abort it to drop the socket without DISCONNECT). Fails the test unless a
/// CONNACK arrives within 10 s.
pub async fn mqtt_connect(
    s: &TestServer,
    id: &str,
    user: &str,
    pass: &str,
    will: Option<rumqttc::LastWill>,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Packet>,
    tokio::task::JoinHandle<()>,
) {
    let addr = s.mqtt_addr();
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, pass);
    o.set_keep_alive(std::time::Duration::from_secs(30));
    if let Some(will) = will {
        o.set_last_will(will);
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(p) = event
                && tx.send(p).is_err()
            {
                return;
            }
        }
    });
    match tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await {
        Ok(Some(rumqttc::Packet::ConnAck(_))) => {}
        other => panic!("{user} could not connect: {other:?}"),
    }
    (client, events, task)
}

/// A `/ws/live` client.
pub type LiveSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message of the map's live feed (pings are answered by tungstenite and
/// skipped; so is the alarm's status, tested in alarm_api.rs).
pub async fn live_next(socket: &mut LiveSocket) -> serde_json::Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let m: serde_json::Value = serde_json::from_str(&text).unwrap();
                if m["type"] != "alarm" {
                    return m;
                }
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("no live message: {other:?}"),
        }
    }
}

/// Reads the live feed until a message matches `want`; returns it and those skipped before it.
pub async fn live_until(
    socket: &mut LiveSocket,
    want: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let mut skipped = Vec::new();
    loop {
        let m = live_next(socket).await;
        if want(&m) {
            return (m, skipped);
        }
        skipped.push(m);
    }
}

/// Runs a command-line peer (`openssl`, `python3`, …) in `dir` with no input; its output.
pub fn run_tool(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run (scripts/setup.sh installs it): {e}"))
}

/// `openssl <args>` in `dir`: whether it succeeded, and its stdout and stderr together.
pub fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = run_tool("openssl", args, dir);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A GET whose body the test wants, failing the test on any error.
pub(crate) trait GetBody {
    async fn get_json(&self, url: impl reqwest::IntoUrl) -> serde_json::Value;
    async fn get_text(&self, url: impl reqwest::IntoUrl) -> String;
}

impl GetBody for reqwest::Client {
    async fn get_json(&self, url: impl reqwest::IntoUrl) -> serde_json::Value {
        self.get(url).send().await.unwrap().json().await.unwrap()
    }

    async fn get_text(&self, url: impl reqwest::IntoUrl) -> String {
        self.get(url).send().await.unwrap().text().await.unwrap()
    }
}
