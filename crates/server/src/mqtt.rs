//! Wiring the embedded broker to the store: the [`Gatekeeper`] that checks MQTT logins against
//! our accounts and device keys, and turns broker events into audit rows.
//!
//! An MQTT login is a user name plus either one of that user's device keys (`pld_…`, checked
//! by SHA-256 lookup: cheap, and removing the device revokes it; such logins never wait for
//! the password limits) or the account password, checked by the server's shared
//! [`LoginGate`] exactly like a web login (attempts counted per address and per user name
//! before argon2 runs, one process-wide argon2 limit, recently verified credentials
//! remembered). On the certificate listener (`[mqtt] cert_port`) a client certificate from
//! our CA logs in instead, found by serial in the store (unknown, revoked or expired ones are
//! refused and audited with the reason; username and password are ignored). Each accepted
//! identity says how it logged in ([`LoginMethod`]), so a password
//! change can end the password sessions and leave the device-key ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use porchlight_broker::{
    AuditEvent, CertificateRefusal, Credentials, Gatekeeper, Identity, LoginMethod,
    PeerCertificate, Refusal,
};
use porchlight_store::{AuditEntry, AuditKind, ClientCertificateStatus, Store, User};

use crate::BrokerControl;
use crate::audit_sink::AuditSink;
use crate::login::{LoginGate, LoginRefused};

pub struct StoreGatekeeper {
    store: Store,
    audit: AuditSink,
    /// The password policy shared with the web login (throttles, argon2 limit, memory of
    /// verified credentials).
    logins: Arc<LoginGate>,
    /// When each device key / certificate last had its "last seen" written.
    touches: Touches,
}

/// How stale a device's or certificate's "last seen" may get: a reconnect storm (every phone
/// after a router reboot, a client in a reconnect loop) writes it once a minute per login at
/// most, not once per CONNECT.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Throttles the "last seen" writes of MQTT logins (see [`TOUCH_EVERY`]).
#[derive(Default)]
struct Touches(Mutex<HashMap<Touched, Instant>>);

#[derive(Hash, PartialEq, Eq)]
enum Touched {
    Device(i64),
    Certificate(String),
}

impl Touches {
    /// Whether `what`'s "last seen" should be written now; if so, notes that it is.
    fn due(&self, what: Touched, now: Instant) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > 10_000 {
            last.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
        }
        match last.get(&what) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                last.insert(what, now);
                true
            }
        }
    }
}

fn identity(user: User, device_id: Option<i64>, login: LoginMethod) -> Identity {
    Identity {
        user_id: user.id,
        username: user.username,
        role: user.role,
        device_id,
        login,
        certificate: None,
    }
}

impl StoreGatekeeper {
    pub fn new(store: Store, audit: AuditSink, logins: Arc<LoginGate>) -> Self {
        StoreGatekeeper {
            store,
            audit,
            logins,
            touches: Touches::default(),
        }
    }

    /// A login on the certificate listener: the certificate must be one we issued (its serial
    /// in the store, with the same subject CN), not revoked, not expired. The CONNECT's
    /// username and password are ignored. Notes the use (once per connect).
    async fn certificate_login(
        &self,
        cert: &PeerCertificate,
        now: SystemTime,
    ) -> Result<Identity, Refusal> {
        let unknown = Refusal::Certificate(CertificateRefusal::Unknown);
        let stored = match self.store.client_certificate(&cert.serial).await {
            Ok(stored) => stored,
            Err(porchlight_store::Error::NotFound { .. }) => return Err(unknown),
            Err(e) => {
                tracing::error!(error = %e, "MQTT certificate check failed");
                return Err(Refusal::NotAuthorized);
            }
        };
        if cert.common_name.as_deref() != Some(stored.common_name.as_str()) {
            return Err(unknown);
        }
        match stored.status(now) {
            ClientCertificateStatus::Revoked => {
                return Err(Refusal::Certificate(CertificateRefusal::Revoked));
            }
            ClientCertificateStatus::Expired => {
                return Err(Refusal::Certificate(CertificateRefusal::Expired));
            }
            ClientCertificateStatus::Active => {}
        }
        let user = self
            .store
            .find_user(&stored.username)
            .await
            .map_err(|_| unknown)?;
        if self.touches.due(
            Touched::Certificate(stored.fingerprint.clone()),
            Instant::now(),
        ) {
            let store = self.store.clone();
            let fingerprint = stored.fingerprint.clone();
            tokio::spawn(async move {
                let _ = store.touch_client_certificate(&fingerprint, now).await;
            });
        }
        let mut id = identity(user, None, LoginMethod::Certificate);
        id.certificate = Some(stored.serial);
        Ok(id)
    }
}

#[async_trait]
impl Gatekeeper for StoreGatekeeper {
    async fn authenticate(&self, c: &Credentials) -> Result<Identity, Refusal> {
        // The certificate listener: the certificate chains to one of our CAs (checked by TLS);
        // whether it may log in is our record of it, found by serial.
        if let Some(cert) = &c.issued_cert {
            return self.certificate_login(cert, SystemTime::now()).await;
        }
        // A client certificate verified against our CA identifies the user by its CN.
        if let Some(cn) = &c.cert_cn {
            let user = self
                .store
                .find_user(cn)
                .await
                .map_err(|_| Refusal::NotAuthorized)?;
            return Ok(identity(user, None, LoginMethod::Certificate));
        }
        let username = c.username.as_deref().unwrap_or_default();
        let password = match &c.password {
            Some(p) if !p.is_empty() => p,
            _ => return Err(Refusal::BadCredentials),
        };
        if password.starts_with(b"pld_")
            && let Ok(Some((user, device))) = self.store.verify_device_key(username, password).await
        {
            let device_id = device.id;
            if self.touches.due(Touched::Device(device_id), Instant::now()) {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let _ = store.touch_device(device_id, SystemTime::now()).await;
                });
            }
            return Ok(identity(user, Some(device_id), LoginMethod::DeviceKey));
        }
        match self
            .logins
            .check_password(c.peer.ip(), username, password, SystemTime::now())
            .await
        {
            Ok((user, _)) => Ok(identity(user, None, LoginMethod::Password)),
            Err(LoginRefused::Wrong) => Err(Refusal::BadCredentials),
            Err(LoginRefused::Throttled(wait)) => {
                tracing::warn!(peer = %c.peer, %username, wait_secs = wait.as_secs(), "MQTT login refused: too many attempts");
                Err(Refusal::BadCredentials)
            }
            Err(LoginRefused::Internal(e)) => {
                tracing::error!(error = %e, "MQTT login check failed");
                Err(Refusal::NotAuthorized)
            }
        }
    }

    fn record(&self, event: AuditEvent) {
        self.audit.record(audit_entry(event));
    }
}

fn audit_entry(event: AuditEvent) -> AuditEntry {
    match event {
        AuditEvent::Connect {
            at,
            peer,
            client_id,
            username,
            protocol,
            code,
            reason,
        } => AuditEntry {
            peer: Some(peer.to_string()),
            client_id: Some(client_id),
            username,
            protocol: Some(protocol),
            code: Some(u16::from(code)),
            ..AuditEntry::new(at, AuditKind::MqttConnect, reason)
        },
        AuditEvent::Disconnect {
            at,
            peer,
            client_id,
            username,
            reason,
        } => AuditEntry {
            peer: Some(peer.to_string()),
            client_id: Some(client_id),
            username,
            ..AuditEntry::new(at, AuditKind::MqttDisconnect, reason)
        },
        AuditEvent::PublishDenied {
            at,
            client_id,
            username,
            topic,
        } => AuditEntry {
            client_id: Some(client_id),
            username,
            detail: Some(topic),
            ..AuditEntry::new(at, AuditKind::MqttPublishDenied, "publish refused by ACL")
        },
        AuditEvent::SubscribeDenied {
            at,
            client_id,
            username,
            filter,
        } => AuditEntry {
            client_id: Some(client_id),
            username,
            detail: Some(filter),
            ..AuditEntry::new(
                at,
                AuditKind::MqttSubscribeDenied,
                "subscription refused by ACL",
            )
        },
        AuditEvent::ConnectionsRefused {
            at,
            count,
            limit,
            last_peer,
        } => AuditEntry {
            peer: Some(last_peer.to_string()),
            code: Some(3),
            ..AuditEntry::new(
                at,
                AuditKind::MqttConnect,
                format!(
                    "{count} connection{} refused: too many connections (limit {limit})",
                    if count == 1 { "" } else { "s" }
                ),
            )
        },
        AuditEvent::TlsRefused {
            at,
            peer,
            port,
            count: _,
            reason,
        } => AuditEntry {
            peer: Some(peer.to_string()),
            detail: Some(format!("port {port}")),
            ..AuditEntry::new(at, AuditKind::MqttTlsRefused, reason)
        },
    }
}

/// The HTTP side's view of the broker.
pub struct BrokerHandle(pub Arc<porchlight_broker::Broker>);

#[async_trait]
impl BrokerControl for BrokerHandle {
    async fn disconnect_device(&self, device_id: i64) -> usize {
        self.0.disconnect_device(device_id).await
    }

    async fn disconnect_certificate(&self, serial: &str) -> usize {
        self.0.disconnect_certificate(serial).await
    }

    async fn disconnect_user(&self, user_id: i64) -> usize {
        self.0.disconnect_user(user_id).await
    }

    async fn disconnect_password_logins(&self, user_id: i64) -> usize {
        self.0.disconnect_password_logins(user_id).await
    }

    fn is_running(&self) -> bool {
        self.0.is_running()
    }

    fn connection_count(&self) -> usize {
        self.0.connection_count()
    }

    async fn connected_clients(&self) -> Vec<porchlight_broker::ConnectedClient> {
        self.0.connected_clients().await
    }
}

/// How often live MQTT sessions are checked against the accounts in the database.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// Ends MQTT sessions whose device or user no longer exists, and re-reads the friendships.
/// Removals and grants through the HTTP API apply at once; this catches changes made
/// elsewhere, such as `porchlight device remove` run in another process against the same
/// database.
pub fn spawn_revocation_sweep(
    store: Store,
    broker: Arc<porchlight_broker::Broker>,
    friends: Arc<crate::friends::Friends>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            friends.reload_or_log().await;
            let live = broker.live_identities();
            if live.is_empty() {
                continue;
            }
            let (users, devices) = match (store.list_users().await, store.list_devices(None).await)
            {
                (Ok(u), Ok(d)) => (
                    u.into_iter()
                        .map(|u| u.id)
                        .collect::<std::collections::HashSet<_>>(),
                    d.into_iter()
                        .map(|d| d.id)
                        .collect::<std::collections::HashSet<_>>(),
                ),
                _ => continue,
            };
            for identity in live {
                if !users.contains(&identity.user_id) {
                    let n = broker.disconnect_user(identity.user_id).await;
                    tracing::info!(username = %identity.username, sessions = n, "MQTT sessions of a removed user closed");
                } else if let Some(device) = identity.device_id.filter(|d| !devices.contains(d)) {
                    let n = broker.disconnect_device(device).await;
                    tracing::info!(username = %identity.username, device, sessions = n, "MQTT sessions of a removed device closed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use porchlight_broker::ProtocolLevel;
    use porchlight_domain::Role;
    use porchlight_domain::secret::Secret;
    use porchlight_store::NewClientCertificate;

    use super::*;

    fn creds(serial: &str, common_name: &str) -> Credentials {
        Credentials {
            username: Some(common_name.into()),
            password: Some(b"ignored".to_vec()),
            client_id: "c".into(),
            peer: ([127, 0, 0, 1], 1).into(),
            protocol: ProtocolLevel::V311,
            cert_cn: None,
            issued_cert: Some(PeerCertificate {
                serial: serial.into(),
                common_name: Some(common_name.into()),
            }),
        }
    }

    #[tokio::test]
    async fn a_certificate_login_is_decided_by_our_record_of_its_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        store
            .create_user("alice", Role::User, &Secret::new("alice password 1"), now)
            .await
            .unwrap();
        for (serial, expires_at) in [("a1", now + day), ("b2", now - day), ("c3", now + day)] {
            store
                .record_client_certificate(NewClientCertificate {
                    serial: serial.into(),
                    fingerprint: format!("fp-{serial}"),
                    username: "alice".into(),
                    device: "phone".into(),
                    common_name: "alice/phone".into(),
                    ca_fingerprint: "ca".into(),
                    issued_at: now - 2 * day,
                    expires_at,
                })
                .await
                .unwrap();
        }
        store.revoke_client_certificate("c3", now).await.unwrap();
        let (audit, _writer) = AuditSink::start(store.clone(), None);
        let gate = StoreGatekeeper::new(store.clone(), audit, Arc::new(LoginGate::new(store)));

        let id = gate
            .authenticate(&creds("a1", "alice/phone"))
            .await
            .unwrap();
        assert_eq!(id.username, "alice");
        assert_eq!(id.login, LoginMethod::Certificate);
        assert_eq!(id.certificate.as_deref(), Some("a1"));
        let refused = |why| Err(Refusal::Certificate(why));
        assert_eq!(
            gate.authenticate(&creds("b2", "alice/phone")).await,
            refused(CertificateRefusal::Expired)
        );
        assert_eq!(
            gate.authenticate(&creds("c3", "alice/phone")).await,
            refused(CertificateRefusal::Revoked)
        );
        assert_eq!(
            gate.authenticate(&creds("ff", "alice/phone")).await,
            refused(CertificateRefusal::Unknown)
        );
        // The serial of one record with another name: not ours.
        assert_eq!(
            gate.authenticate(&creds("a1", "alice/laptop")).await,
            refused(CertificateRefusal::Unknown)
        );
    }

    #[test]
    fn last_seen_is_written_once_a_minute_per_login_at_most() {
        let touches = Touches::default();
        let t0 = Instant::now();
        assert!(touches.due(Touched::Device(1), t0));
        assert!(!touches.due(Touched::Device(1), t0 + Duration::from_secs(59)));
        // Another login is not held back by the first.
        assert!(touches.due(Touched::Device(2), t0 + Duration::from_secs(1)));
        assert!(touches.due(Touched::Certificate("ab".into()), t0));
        assert!(touches.due(Touched::Device(1), t0 + TOUCH_EVERY));
        assert!(!touches.due(
            Touched::Device(1),
            t0 + TOUCH_EVERY + Duration::from_secs(1)
        ));
    }
}
