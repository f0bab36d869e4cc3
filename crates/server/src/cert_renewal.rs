//! Server certificate renewal (issue 15): the service that keeps the TLS listeners' server
//! certificate current without a restart and without dropping a session.
//!
//! Twice a day, and at once after the CA changed (`POST /api/ca/rotate`, `/import`) or when
//! an admin asks (`POST /api/ca/renew`), it asks the CA service for the server certificate
//! ([`CaService::mqtt_server_certificate`]: reissued when it expires within
//! [`crate::ca::RENEW_BEFORE`], is not from the active CA, or its names changed). When that
//! gives a new certificate, the MQTT TLS listener, the certificate listener (with every CA of
//! this install as client trust roots) and HTTPS take it for their next handshakes; live
//! sessions keep the one they started with. Each renewal is audited
//! (`server_certificate_renewed`). The operator's own `[mqtt.tls]` files are re-read at each
//! check, so a renewal by their own PKI applies without a restart too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use porchlight_broker::{Broker, TlsConfig, TlsIdentity};
use porchlight_store::{AuditEntry, AuditKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::audit_sink::AuditSink;
use crate::ca::{self, CaError, CaService, ServerCertificate};
use crate::config::Config;
use crate::http::tls::TlsSwitch;

/// How often the certificate is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);

/// Why a check runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The periodic check: renews only what needs it.
    Scheduled,
    /// The active CA changed: the certificate is reissued from it, and the certificate
    /// listener trusts the new CA's client certificates from now on.
    CaChanged,
    /// An admin asked for a new certificate now.
    Requested,
}

/// The listeners whose certificate this service keeps current.
pub struct Targets {
    pub broker: Option<Arc<Broker>>,
    /// The MQTT TLS listener's port when it carries the built-in CA's certificate (not the
    /// operator's own files).
    pub builtin_tls_port: Option<u16>,
    /// The certificate listener's port.
    pub cert_port: Option<u16>,
    pub https: Option<Arc<TlsSwitch>>,
}

/// Asks the running service for a check; cheap to clone.
#[derive(Clone)]
pub struct RenewalHandle {
    tx: mpsc::Sender<(Trigger, Answer)>,
}

/// Where a requested check's outcome goes.
type Answer = oneshot::Sender<Result<Option<String>, String>>;

impl RenewalHandle {
    /// Runs a check now and waits for it: `Ok(Some(serial))` when a new certificate is in
    /// use, `Ok(None)` when the current one stays.
    pub async fn renew(&self, trigger: Trigger) -> Result<Option<String>, String> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((trigger, done))
            .await
            .map_err(|_| "the renewal service has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the renewal service has stopped".to_owned())?
    }
}

/// The running service.
pub struct CertRenewal {
    task: JoinHandle<()>,
    handle: RenewalHandle,
}

impl CertRenewal {
    pub fn start(
        config: Arc<Config>,
        ca: Arc<CaService>,
        targets: Targets,
        audit: AuditSink,
    ) -> CertRenewal {
        let (tx, mut rx) = mpsc::channel(8);
        let renewer = Renewer {
            config,
            ca,
            targets,
            audit,
        };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now: start-up just issued what was needed.
            tick.tick().await;
            loop {
                let (trigger, done) = tokio::select! {
                    _ = tick.tick() => (Trigger::Scheduled, None::<Answer>),
                    asked = rx.recv() => match asked {
                        Some((trigger, done)) => (trigger, Some(done)),
                        None => return,
                    },
                };
                let result = renewer.check(trigger).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, ?trigger, "server certificate renewal failed");
                }
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
        });
        CertRenewal {
            task,
            handle: RenewalHandle { tx },
        }
    }

    pub fn handle(&self) -> RenewalHandle {
        self.handle.clone()
    }

    /// Stops the service and waits until it let go of the listeners.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for CertRenewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Renewer {
    config: Arc<Config>,
    ca: Arc<CaService>,
    targets: Targets,
    audit: AuditSink,
}

impl Renewer {
    async fn check(&self, trigger: Trigger) -> Result<Option<String>, String> {
        self.reload_operator_files();
        let now = SystemTime::now();
        let names = ca::server_names(&self.config);
        let (server, issued) = match trigger {
            Trigger::Requested => self.ca.renew_server_certificate(&names, now),
            Trigger::Scheduled | Trigger::CaChanged => {
                self.ca.current_server_certificate(&names, now)
            }
        }
        .map_err(|e| e.to_string())?;
        if !issued && trigger == Trigger::Scheduled {
            return Ok(None);
        }
        self.apply(&server).await.map_err(|e| e.to_string())?;
        if issued {
            self.audit.record(AuditEntry {
                detail: Some(format!(
                    "serial {} valid until {}",
                    server.info.serial,
                    time::OffsetDateTime::from(server.info.not_after).date()
                )),
                ..AuditEntry::new(
                    now,
                    AuditKind::ServerCertificateRenewed,
                    format!("server certificate renewed ({})", reason(trigger)),
                )
            });
            tracing::info!(serial = %server.info.serial, ?trigger, "server certificate renewed");
            Ok(Some(server.info.serial.clone()))
        } else {
            Ok(None)
        }
    }

    /// Hands `server` (and, to the certificate listener, the current trust roots) to every
    /// listener that uses the built-in CA.
    async fn apply(&self, server: &ServerCertificate) -> Result<(), CaError> {
        if let Some(broker) = &self.targets.broker {
            if let Some(port) = self.targets.builtin_tls_port {
                let tls = builtin_tls(SocketAddr::new(self.config.mqtt.bind, port), server);
                broker
                    .reload_tls(&tls)
                    .map_err(|e| CaError::Internal(e.to_string()))?;
            }
            if let Some(port) = self.targets.cert_port {
                let tls = cert_listener_tls(
                    &self.ca,
                    SocketAddr::new(self.config.mqtt.bind, port),
                    server,
                )
                .await?;
                broker
                    .reload_cert_tls(&tls)
                    .map_err(|e| CaError::Internal(e.to_string()))?;
            }
        }
        if let Some(https) = &self.targets.https {
            let config = crate::http::tls::server_config(&server.cert_pem, &server.key_pem)
                .map_err(CaError::Internal)?;
            https.replace(config);
        }
        Ok(())
    }

    /// Re-reads the operator's own `[mqtt.tls]` files (their PKI may have renewed them).
    fn reload_operator_files(&self) {
        let (Some(own), Some(broker)) = (&self.config.mqtt.tls, &self.targets.broker) else {
            return;
        };
        let Some(addr) = broker.tls_local_addr() else {
            return;
        };
        let tls = TlsConfig {
            listen: addr,
            identity: TlsIdentity::Files {
                cert_path: own.cert.clone(),
                key_path: own.key.clone(),
            },
            ca_path: own.ca.clone(),
            require_client_cert: own.require_client_cert,
        };
        if let Err(e) = broker.reload_tls(&tls) {
            tracing::error!(error = %e, "re-reading the [mqtt.tls] certificate files failed; the listener keeps the previous ones");
        }
    }
}

fn reason(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Scheduled => "due for renewal",
        Trigger::CaChanged => "new certificate authority",
        Trigger::Requested => "requested by an admin",
    }
}

/// The MQTT TLS listener's configuration with the built-in CA's server certificate.
pub fn builtin_tls(listen: SocketAddr, server: &ServerCertificate) -> TlsConfig {
    TlsConfig {
        listen,
        identity: TlsIdentity::Pem {
            cert_chain_pem: server.cert_pem.clone(),
            key_pem: server.key_pem.clone(),
        },
        ca_path: None,
        require_client_cert: false,
    }
}

/// The certificate listener's configuration: the server certificate, and every CA of this
/// install (active and retired) as the trust roots client certificates must chain to,
/// written (public) to `<data dir>/ca/client-roots.pem`.
pub async fn cert_listener_tls(
    ca: &CaService,
    listen: SocketAddr,
    server: &ServerCertificate,
) -> Result<TlsConfig, CaError> {
    let roots: String = ca
        .authorities()
        .list()
        .await?
        .iter()
        .map(|entry| entry.stored.cert_pem.clone())
        .collect();
    let path = ca.authorities().dir().join("client-roots.pem");
    std::fs::write(&path, roots).map_err(|source| CaError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(TlsConfig {
        listen,
        identity: TlsIdentity::Pem {
            cert_chain_pem: server.cert_pem.clone(),
            key_pem: server.key_pem.clone(),
        },
        ca_path: Some(path),
        require_client_cert: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;
    use porchlight_store::{AuditFilter, Store};

    /// The scheduled check leaves a current certificate alone and renews one that expires
    /// within `RENEW_BEFORE`, handing it to HTTPS and auditing it.
    #[tokio::test]
    async fn the_scheduled_check_renews_a_certificate_near_its_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
        let config = Config::load_from(
            &LoadOptions {
                data_dir: Some(dir.path().to_owned()),
                ..LoadOptions::default()
            },
            Vec::new(),
        )
        .unwrap();
        let now = SystemTime::now();
        let ca = Arc::new(
            CaService::start(store.clone(), dir.path(), now)
                .await
                .unwrap(),
        );
        let names = ca::server_names(&config);
        // Issued 340 days ago for a year: it expires in 25 days, within RENEW_BEFORE (30).
        let old = ca
            .renew_server_certificate(&names, now - Duration::from_secs(340 * 24 * 3600))
            .unwrap()
            .0;
        let first = crate::http::tls::server_config(&old.cert_pem, &old.key_pem).unwrap();
        let https = TlsSwitch::new(first.clone());
        let (audit, writer) = AuditSink::start(store.clone(), None);
        let renewer = Renewer {
            config: Arc::new(config),
            ca: ca.clone(),
            targets: Targets {
                broker: None,
                builtin_tls_port: None,
                cert_port: None,
                https: Some(https.clone()),
            },
            audit,
        };

        let serial = renewer.check(Trigger::Scheduled).await.unwrap();
        let serial = serial.expect("a certificate 25 days from expiry was not renewed");
        assert_ne!(serial, old.info.serial);
        assert!(
            !Arc::ptr_eq(&https.current(), &first),
            "HTTPS kept the old one"
        );
        let renewed = ca.mqtt_server_info().unwrap();
        assert_eq!(renewed.serial, serial);
        assert!(renewed.not_after > now + RENEW_BEFORE_CHECK);

        // A current certificate stays.
        let second = https.current();
        assert_eq!(renewer.check(Trigger::Scheduled).await.unwrap(), None);
        assert!(Arc::ptr_eq(&https.current(), &second));

        drop(renewer);
        writer.finish().await;
        let rows = store
            .audit_page(
                10,
                None,
                AuditFilter {
                    kind: Some(AuditKind::ServerCertificateRenewed),
                    ..AuditFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(
            rows[0].detail.as_deref().unwrap().contains(&serial),
            "{rows:?}"
        );
    }

    /// Well past the renewal window: a fresh certificate lasts about a year.
    const RENEW_BEFORE_CHECK: Duration = Duration::from_secs(300 * 24 * 3600);
}
