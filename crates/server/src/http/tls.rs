//! HTTPS for the web UI and API (`[http] tls`, ADR 0017 "HTTPS"): TLS and plain HTTP on the
//! **same port**, told apart by the first byte a client sends (a TLS handshake starts with
//! 0x16, an HTTP request with a method's letter).
//!
//! Why one port: HSTS makes a browser rewrite `http://host:8080/` to `https://host:8080/`
//! itself, keeping the port (RFC 6797 §8.3). With HTTPS on a port of its own, every
//! `http://` bookmark of the plain port would fail its handshake after the first visit; on the
//! same port it lands where the redirect would have sent it.
//!
//! - TLS connections are served by the whole [`super::router`], each request marked
//!   [`Secure`] (the session cookie then gets `Secure`), each answer with
//!   `Strict-Transport-Security` (one year; no `includeSubDomains`/`preload`, as LAN names
//!   are not ours to pin) — except to a loopback name (`localhost`), where HSTS would force
//!   every local port of the machine to https.
//! - Plain requests get `308 Permanent Redirect` to the same URL with `https://` (308 keeps
//!   the method and body: curl `-L`, reqwest and iOS re-send a `POST /pub` there; Android's
//!   OkHttp does not follow a redirect of a POST, so an HTTP-mode Android phone needs the
//!   `https://` URL in its settings). Served plain as before: `/health` (monitoring), and
//!   requests addressed to a loopback name or address (`localhost`, 127.0.0.1, ::1): they
//!   never leave the machine, and the desktop window opens `http://127.0.0.1:<port>/`.
//! - A handshake that does not finish within [`HANDSHAKE_TIMEOUT`] is dropped; handshakes run
//!   on their own tasks, so a slow one holds up nobody else.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::AppState;

/// How long a client has to send its first byte and to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `Strict-Transport-Security` on HTTPS answers: one year.
pub const HSTS: &str = "max-age=31536000";

/// Marks a request that came over TLS (a request extension set by the HTTPS side).
#[derive(Debug, Clone, Copy)]
pub struct Secure;

/// The rustls configuration for the server certificate `cert_pem` (its chain) and `key_pem`
/// (the broker's TLS listeners' configuration, without client certificates, HTTP/1.1 only).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config =
        porchlight_broker::tls_server_config(cert_pem, key_pem, None).map_err(|e| e.to_string())?;
    // axum is built with HTTP/1 only (WebSockets included).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS configuration in use, replaced by a certificate renewal: the next handshake
/// takes the new one, open connections keep theirs.
pub struct TlsSwitch(std::sync::RwLock<Arc<rustls::ServerConfig>>);

impl TlsSwitch {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Arc<TlsSwitch> {
        Arc::new(TlsSwitch(std::sync::RwLock::new(config)))
    }

    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// Serves `state`'s router on `listener`, TLS and plain side by side (see the module doc),
/// until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsSwitch>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let shutdown = shutdown.shared();
    let (secure_tx, secure_rx) = mpsc::channel(64);
    let (plain_tx, plain_rx) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_loop(
        listener,
        tls,
        secure_tx,
        plain_tx,
        shutdown.clone(),
    ));
    let secure = super::router(state.clone()).layer(axum::middleware::from_fn(mark_secure));
    let plain = super::router(state).layer(axum::middleware::from_fn(
        move |request: Request, next: Next| redirect_to_https(request, next, local.port()),
    ));
    let secure = axum::serve(
        Incoming {
            rx: secure_rx,
            local,
        }
        .tap_io(|_| {}),
        secure.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone());
    let plain = axum::serve(
        Incoming {
            rx: plain_rx,
            local,
        }
        .tap_io(|_| {}),
        plain.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let (secure, plain) = tokio::join!(async { secure.await }, async { plain.await });
    acceptor.abort();
    secure.and(plain)
}

/// Accepts connections until `shutdown`, and hands each to the TLS or the plain side once its
/// first byte says which.
async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsSwitch>,
    secure: mpsc::Sender<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    plain: mpsc::Sender<(TcpStream, SocketAddr)>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let (secure, plain) = (secure.clone(), plain.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(1)) => {}
                _ => return,
            }
            if first[0] != 0x16 {
                let _ = plain.send((stream, peer)).await;
                return;
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = secure.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        });
    }
}

/// Connections handed over by [`accept_loop`], as axum's [`axum::serve::Listener`].
struct Incoming<Io> {
    rx: mpsc::Receiver<(Io, SocketAddr)>,
    local: SocketAddr,
}

impl<Io> axum::serve::Listener for Incoming<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Io, SocketAddr) {
        match self.rx.recv().await {
            Some(connection) => connection,
            // The accept loop has stopped: only the shutdown signal ends `serve` now.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The host a request was addressed to (`Host`, or the URI's authority), without its port,
/// and the port if one was given. `None` when absent or not a plain host name or address.
fn requested_host(request: &Request) -> Option<(String, Option<u16>)> {
    let text = match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok()?.to_owned(),
        None => request.uri().authority()?.as_str().to_owned(),
    };
    let authority: axum::http::uri::Authority = text.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let plain = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    (plain && !host.is_empty()).then(|| (host.to_ascii_lowercase(), authority.port_u16()))
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 and ::1: names that never leave the machine.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare == "localhost" || bare.ends_with(".localhost"),
    }
}

/// The HTTPS side: marks the request [`Secure`] and adds HSTS to the answer.
async fn mark_secure(mut request: Request, next: Next) -> Response {
    let loopback = requested_host(&request).is_some_and(|(host, _)| is_loopback_host(&host));
    request.extensions_mut().insert(Secure);
    let mut response = next.run(request).await;
    if !loopback {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// The plain side: `308` to the same URL over https, except `/health` and loopback hosts.
async fn redirect_to_https(request: Request, next: Next, local_port: u16) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let Some((host, port)) = requested_host(&request) else {
        return (
            StatusCode::BAD_REQUEST,
            "this server speaks HTTPS: use https:// with its host name",
        )
            .into_response();
    };
    if is_loopback_host(&host) {
        return next.run(request).await;
    }
    let port = port.unwrap_or(local_port);
    let authority = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{authority}{path}");
    match (location.parse::<Uri>(), HeaderValue::from_str(&location)) {
        (Ok(_), Ok(value)) => {
            (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, value)]).into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>, uri: &str) -> Request {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn the_requested_host_is_read_without_its_port_and_junk_is_refused() {
        assert_eq!(
            requested_host(&request(Some("Hub.Local:8080"), "/")),
            Some(("hub.local".into(), Some(8080)))
        );
        assert_eq!(
            requested_host(&request(Some("[::1]:80"), "/")),
            Some(("[::1]".into(), Some(80)))
        );
        assert_eq!(
            requested_host(&request(None, "http://10.0.0.2/x")),
            Some(("10.0.0.2".into(), None))
        );
        for bad in ["", "a b", "evil.org/x", "user@evil.org", "a\"b"] {
            assert_eq!(requested_host(&request(Some(bad), "/")), None, "{bad:?}");
        }
        assert_eq!(requested_host(&request(None, "/")), None);
    }

    #[test]
    fn loopback_names_are_localhost_and_loopback_addresses_only() {
        for host in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["hub.local", "192.168.1.5", "localhost.evil.org", "[::2]"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
