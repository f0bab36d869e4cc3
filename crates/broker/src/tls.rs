//! MQTT over TLS, terminated by us in front of rmqtt (ADR 0018).
//!
//! rmqtt 0.24 builds its TLS acceptor once, from files, and tells no hook about a handshake
//! that fails. So each TLS listener is ours: a [`Front`] accepts the TCP connection, runs the
//! handshake with a rustls configuration it can swap at any time ([`Front::reload`]: a
//! renewed server certificate or new client trust roots apply to the next handshake, live
//! sessions keep theirs), and relays the clear bytes to a plain rmqtt listener bound to a
//! loopback port that only it uses. What the handshake established (the client's real
//! address and, on the certificate listener, its certificate) is kept in [`Relays`] under
//! the relay connection's own address, where the hooks find it (`State::peer_of`,
//! `HookHandler::authenticate`).
//!
//! Why that is safe: the key is the relay connection's local address, which only our own
//! socket holds while the relay lives. Anyone else on the machine reaching the loopback
//! listener directly has no entry, so on the certificate listener they have no certificate
//! and are refused, and on the password listener they are a plain MQTT client (as on the
//! plain port).
//!
//! A connection that never becomes a TLS session is refused and audited with the reason
//! ([`AuditEvent::TlsRefused`]): plain MQTT on the TLS port, a client certificate from
//! another CA, an expired one, none at all, a client that does not trust our server
//! certificate, a handshake that times out. A flood is summed up: at most
//! [`AUDITED_PER_WINDOW`] rows per [`AUDIT_WINDOW`], then one row with the count.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::{AuditEvent, Error, Gatekeeper, PeerCertificate, TlsConfig, TlsIdentity};

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The first byte of an MQTT CONNECT packet.
const MQTT_CONNECT: u8 = 0x10;
/// How long a relay's entry outlives the relay, so that rmqtt's disconnect hooks (which may
/// run after the socket closed) still find the client's real address.
const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Refused handshakes audited one by one per window; more are counted into one row.
pub const AUDITED_PER_WINDOW: u32 = 20;
/// See [`AUDITED_PER_WINDOW`].
pub const AUDIT_WINDOW: Duration = Duration::from_secs(60);
/// How long a relay whose client stopped sending still forwards what the broker sends.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the TLS handshake of a relayed connection established.
#[derive(Debug, Clone)]
pub(crate) struct Relayed {
    /// Tells this relay from a later one that reuses the same local port.
    serial: u64,
    /// The client's own address.
    pub(crate) peer: SocketAddr,
    /// The client certificate the handshake verified (only where one is asked for).
    pub(crate) cert: Option<PeerCertificate>,
}

/// The live relays, by the relay connection's local address (what rmqtt sees as the peer).
#[derive(Default)]
pub(crate) struct Relays {
    by_relay_addr: Mutex<HashMap<SocketAddr, Relayed>>,
    next: AtomicU64,
}

impl Relays {
    fn map(&self) -> MutexGuard<'_, HashMap<SocketAddr, Relayed>> {
        self.by_relay_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The relay whose connection to rmqtt comes from `relay_addr`, if it is one of ours.
    pub(crate) fn get(&self, relay_addr: SocketAddr) -> Option<Relayed> {
        self.map().get(&relay_addr).cloned()
    }

    fn insert(
        &self,
        relay_addr: SocketAddr,
        peer: SocketAddr,
        cert: Option<PeerCertificate>,
    ) -> u64 {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        self.map()
            .insert(relay_addr, Relayed { serial, peer, cert });
        serial
    }

    fn remove(&self, relay_addr: SocketAddr, serial: u64) {
        let mut map = self.map();
        if map.get(&relay_addr).is_some_and(|r| r.serial == serial) {
            map.remove(&relay_addr);
        }
    }
}

/// Which TLS listener a front is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontKind {
    /// MQTT over TLS with passwords (and, with `require_client_cert`, the operator's own
    /// client certificates whose CN is the user name).
    Password,
    /// The certificate listener: a client certificate from our CAs, no password.
    Certificate,
}

/// One TLS listener in front of its loopback rmqtt listener.
pub(crate) struct Front {
    kind: FrontKind,
    listener: TcpListener,
    local_addr: SocketAddr,
    backend: SocketAddr,
    config: RwLock<Arc<ServerConfig>>,
    relays: Arc<Relays>,
    handshake_timeout: Duration,
    audit: Arc<RefusalAudit>,
}

impl Front {
    /// Binds `tls.listen` and builds the TLS configuration; relays go to `backend`.
    pub(crate) fn bind(
        kind: FrontKind,
        tls: &TlsConfig,
        backend: SocketAddr,
        relays: Arc<Relays>,
        handshake_timeout: Duration,
        gatekeeper: Arc<dyn Gatekeeper>,
    ) -> Result<Front, Error> {
        let config = server_config_for(kind, tls)?;
        let std_listener = bind_reusable(tls.listen)?;
        let listener = TcpListener::from_std(std_listener).map_err(|e| Error::Bind {
            addr: tls.listen,
            reason: e.to_string(),
        })?;
        let local_addr = listener.local_addr().map_err(|e| Error::Bind {
            addr: tls.listen,
            reason: e.to_string(),
        })?;
        Ok(Front {
            kind,
            listener,
            local_addr,
            backend,
            config: RwLock::new(config),
            relays,
            handshake_timeout,
            audit: RefusalAudit::new(gatekeeper, local_addr.port()),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Swaps in a new server certificate and trust roots for the next handshakes; sessions
    /// already established keep theirs and stay connected.
    pub(crate) fn reload(&self, tls: &TlsConfig) -> Result<(), Error> {
        let config = server_config_for(self.kind, tls)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    fn current_config(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Accepts connections until the task is aborted; each runs on its own task.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    let front = self.clone();
                    tokio::spawn(async move { front.relay(tcp, peer).await });
                }
                Err(e) => {
                    // Out of descriptors, typically: wait instead of spinning.
                    tracing::warn!(port = self.local_addr.port(), error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn relay(&self, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.handshake_timeout, tcp.peek(&mut first)).await {
            // Closed without a byte (a port probe): nothing was attempted.
            Ok(Ok(0)) => return,
            Ok(Ok(_)) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(Ok(_)) if first[0] == MQTT_CONNECT => {
                return self
                    .audit
                    .refuse(peer, "plain MQTT (no TLS) sent to the TLS port");
            }
            Ok(Ok(_)) => return self.audit.refuse(peer, "not a TLS handshake"),
            Ok(Err(_)) => return,
            Err(_) => {
                return self
                    .audit
                    .refuse(peer, "no TLS handshake within the time limit");
            }
        }
        let acceptor = TlsAcceptor::from(self.current_config());
        let tls = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return self.audit.refuse(peer, &handshake_failure(&e)),
            Err(_) => {
                return self
                    .audit
                    .refuse(peer, "TLS handshake not finished within the time limit");
            }
        };
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|der| peer_certificate(der));
        if self.kind == FrontKind::Certificate && cert.is_none() {
            // The verifier requires one; a certificate we cannot read is no login.
            return self
                .audit
                .refuse(peer, "client certificate without a readable serial");
        }
        let backend = match TcpStream::connect(self.backend).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(backend = %self.backend, error = %e, "cannot reach the broker's relay listener");
                return;
            }
        };
        let _ = backend.set_nodelay(true);
        let Ok(relay_addr) = backend.local_addr() else {
            return;
        };
        let serial = self.relays.insert(relay_addr, peer, cert);
        relay_until_the_broker_closes(tls, backend, peer).await;
        let relays = self.relays.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FORGET_AFTER).await;
            relays.remove(relay_addr, serial);
        });
    }
}

/// Copies both ways until the broker ends the session: then the relay ends too, whatever
/// the client does (a phone that vanished behind NAT never closes its side, and its relay
/// would otherwise stay forever once rmqtt's keep-alive check closed the session). When the
/// client stops sending first, what the broker still sends goes out for [`CLOSE_GRACE`].
async fn relay_until_the_broker_closes(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    backend: TcpStream,
    peer: SocketAddr,
) {
    use tokio::io::AsyncWriteExt;
    let (mut client_read, mut client_write) = tokio::io::split(tls);
    let (mut backend_read, mut backend_write) = backend.into_split();
    let upstream = async {
        let copied = tokio::io::copy(&mut client_read, &mut backend_write).await;
        let _ = backend_write.shutdown().await;
        copied
    };
    let downstream = async {
        let copied = tokio::io::copy(&mut backend_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        copied
    };
    tokio::pin!(upstream, downstream);
    let ended = tokio::select! {
        copied = &mut downstream => copied,
        copied = &mut upstream => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut downstream).await;
            copied
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "TLS relay ended");
    }
}

/// A listening socket on `addr` (address reuse on, as rmqtt's own listeners).
fn bind_reusable(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let listener = (|| {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        listener.into_std()
    })();
    listener.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::PortInUse(addr)
        } else {
            Error::Bind {
                addr,
                reason: e.to_string(),
            }
        }
    })
}

/// The loopback address each front's rmqtt listener binds (port chosen by the OS).
pub(crate) fn backend_bind_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn server_config_for(kind: FrontKind, tls: &TlsConfig) -> Result<Arc<ServerConfig>, Error> {
    let (chain_pem, key_pem) = match &tls.identity {
        TlsIdentity::Files {
            cert_path,
            key_path,
        } => {
            let read = |what: &str, p: &std::path::Path| {
                std::fs::read_to_string(p)
                    .map(zeroize::Zeroizing::new)
                    .map_err(|e| Error::Tls(format!("reading the {what} {}: {e}", p.display())))
            };
            (
                read("certificate chain", cert_path)?,
                read("private key", key_path)?,
            )
        }
        TlsIdentity::Pem {
            cert_chain_pem,
            key_pem,
        } => (
            zeroize::Zeroizing::new(cert_chain_pem.clone()),
            key_pem.clone(),
        ),
    };
    let client_roots = match kind {
        FrontKind::Certificate => Some(client_roots_pem(tls, &chain_pem)?),
        FrontKind::Password if tls.require_client_cert => Some(client_roots_pem(tls, &chain_pem)?),
        FrontKind::Password => None,
    };
    server_config(
        &chain_pem,
        &key_pem,
        client_roots.as_deref().map(String::as_str),
    )
    .map(Arc::new)
}

/// The PEM certificates client certificates must chain to: `ca_path`, else the server's own
/// chain.
fn client_roots_pem(tls: &TlsConfig, chain_pem: &str) -> Result<zeroize::Zeroizing<String>, Error> {
    match &tls.ca_path {
        Some(path) => std::fs::read_to_string(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| Error::Tls(format!("reading the client CA {}: {e}", path.display()))),
        None => Ok(zeroize::Zeroizing::new(chain_pem.to_owned())),
    }
}

/// A rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3) for the certificate chain and
/// key in PEM; with `client_roots` (PEM certificates), a client certificate chaining to one
/// of them is required.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    client_roots: Option<&str>,
) -> Result<ServerConfig, Error> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("the server certificate does not parse: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("no server certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("the server key does not parse: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert =
                    cert.map_err(|e| Error::Tls(format!("a client CA does not parse: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Tls(format!("a client CA is not usable: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| Error::Tls(format!("no usable client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(format!("the server certificate and key do not match: {e}")))
}

/// Serial (lower-case hex, no leading zeros) and CN of a verified client certificate.
fn peer_certificate(der: &CertificateDer<'_>) -> Option<PeerCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let serial = hex.trim_start_matches('0');
    if serial.is_empty() {
        return None;
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(PeerCertificate {
        serial: serial.to_owned(),
        common_name,
    })
}

/// Why a handshake failed, in words for the audit log.
fn handshake_failure(e: &std::io::Error) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                "connection closed during the TLS handshake".into()
            }
            _ => format!("TLS handshake failed: {e}"),
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no client certificate".into(),
        rustls::Error::InvalidCertificate(why) => match why {
            CertificateError::UnknownIssuer => {
                "client certificate not issued by this hub's CA".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "client certificate expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "client certificate not valid yet".into()
            }
            CertificateError::Revoked => "client certificate revoked".into(),
            CertificateError::BadSignature | CertificateError::BadEncoding => {
                "client certificate damaged or forged".into()
            }
            other => format!("client certificate refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::CertificateUnknown => format!(
                "the client does not trust this hub's server certificate ({alert:?}): \
                 import the hub's CA certificate on the device"
            ),
            other => format!("the client ended the TLS handshake ({other:?})"),
        },
        rustls::Error::PeerIncompatible(why) => {
            format!("no TLS version or cipher in common with the client ({why:?})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "not a TLS client".into()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Audits refused TLS connections of one listener, one row each up to
/// [`AUDITED_PER_WINDOW`] per [`AUDIT_WINDOW`], then one summary row per window.
struct RefusalAudit {
    gatekeeper: Arc<dyn Gatekeeper>,
    port: u16,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    audited: u32,
    /// Refusals counted, not yet recorded, and the last one's peer.
    suppressed: u64,
    last_peer: Option<SocketAddr>,
}

impl RefusalAudit {
    fn new(gatekeeper: Arc<dyn Gatekeeper>, port: u16) -> Arc<Self> {
        Arc::new(RefusalAudit {
            gatekeeper,
            port,
            window: Mutex::new(Window {
                started: Instant::now(),
                audited: 0,
                suppressed: 0,
                last_peer: None,
            }),
        })
    }

    fn refuse(self: &Arc<Self>, peer: SocketAddr, reason: &str) {
        tracing::info!(%peer, port = self.port, %reason, "MQTT TLS connection refused");
        let (record, summarize_later) = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if w.started.elapsed() >= AUDIT_WINDOW {
                self.flush(&mut w);
                w.started = Instant::now();
                w.audited = 0;
            }
            if w.audited < AUDITED_PER_WINDOW {
                w.audited += 1;
                (true, false)
            } else {
                w.suppressed += 1;
                w.last_peer = Some(peer);
                (false, w.suppressed == 1)
            }
        };
        if record {
            self.gatekeeper.record(AuditEvent::TlsRefused {
                at: SystemTime::now(),
                peer,
                port: self.port,
                count: 1,
                reason: reason.to_owned(),
            });
        }
        if summarize_later {
            let audit = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(AUDIT_WINDOW).await;
                let mut w = audit.window.lock().unwrap_or_else(|p| p.into_inner());
                audit.flush(&mut w);
            });
        }
    }

    /// Records the suppressed refusals as one row.
    fn flush(&self, w: &mut Window) {
        if w.suppressed == 0 {
            return;
        }
        let count = std::mem::take(&mut w.suppressed);
        self.gatekeeper.record(AuditEvent::TlsRefused {
            at: SystemTime::now(),
            peer: w
                .last_peer
                .take()
                .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            port: self.port,
            count,
            reason: format!(
                "{count} more TLS connection{} refused (audited one by one up to {AUDITED_PER_WINDOW} a minute)",
                if count == 1 { "" } else { "s" }
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_entry_is_removed_only_by_its_own_relay() {
        let relays = Relays::default();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
        let peer_a = SocketAddr::from((Ipv4Addr::new(192, 168, 1, 5), 5000));
        let peer_b = SocketAddr::from((Ipv4Addr::new(192, 168, 1, 6), 6000));
        let first = relays.insert(addr, peer_a, None);
        // The port is reused by a new relay before the first one's delayed removal.
        let second = relays.insert(addr, peer_b, None);
        relays.remove(addr, first);
        assert_eq!(relays.get(addr).map(|r| r.peer), Some(peer_b));
        relays.remove(addr, second);
        assert!(relays.get(addr).is_none());
    }

    #[test]
    fn a_configuration_needs_a_certificate_and_its_own_key() {
        assert!(matches!(
            server_config("", "", None),
            Err(Error::Tls(m)) if m.contains("no server certificate")
        ));
    }
}
