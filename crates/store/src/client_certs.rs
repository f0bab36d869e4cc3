//! Client certificates issued by our CA (migration 0013, ADR 0017): serial, fingerprint, whose
//! device, which CA, validity, revocation and last use. The MQTT authentication hook looks a
//! presented certificate up here by fingerprint; the private key is never stored.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// A client certificate to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClientCertificate {
    pub serial: String,
    pub fingerprint: String,
    pub username: String,
    pub device: String,
    pub common_name: String,
    pub ca_fingerprint: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

/// Whether a client certificate may log in at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificateStatus {
    Active,
    Revoked,
    Expired,
}

impl ClientCertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertificateStatus::Active => "active",
            ClientCertificateStatus::Revoked => "revoked",
            ClientCertificateStatus::Expired => "expired",
        }
    }
}

/// A client certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub serial: String,
    pub fingerprint: String,
    pub username: String,
    pub device: String,
    pub common_name: String,
    pub ca_fingerprint: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
}

impl ClientCertificate {
    /// Revoked wins over expired.
    pub fn status(&self, now: SystemTime) -> ClientCertificateStatus {
        if self.revoked_at.is_some() {
            ClientCertificateStatus::Revoked
        } else if now >= self.expires_at {
            ClientCertificateStatus::Expired
        } else {
            ClientCertificateStatus::Active
        }
    }
}

const COLUMNS: &str = "c.serial, c.fingerprint, u.username, c.device, c.common_name, \
    c.ca_fingerprint, c.issued_at, c.expires_at, c.revoked_at, c.last_used_at";
const FROM: &str = "client_certificates c JOIN users u ON u.id = c.user_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientCertificate> {
    Ok(ClientCertificate {
        serial: r.get(0)?,
        fingerprint: r.get(1)?,
        username: r.get(2)?,
        device: r.get(3)?,
        common_name: r.get(4)?,
        ca_fingerprint: r.get(5)?,
        issued_at: from_unix_ms(r.get(6)?),
        expires_at: from_unix_ms(r.get(7)?),
        revoked_at: r.get::<_, Option<i64>>(8)?.map(from_unix_ms),
        last_used_at: r.get::<_, Option<i64>>(9)?.map(from_unix_ms),
    })
}

fn by_serial(c: &rusqlite::Connection, serial: &str) -> Result<ClientCertificate> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE c.serial = ?1"),
        [serial],
        row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "certificate",
        name: serial.to_owned(),
    })
}

impl Store {
    /// Records a certificate just issued to `new.username`'s device.
    pub async fn record_client_certificate(
        &self,
        new: NewClientCertificate,
    ) -> Result<ClientCertificate> {
        self.write(move |c| {
            let user_id: i64 = c
                .query_row(
                    "SELECT id FROM users WHERE username = ?1",
                    [&new.username],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Error::NotFound {
                    what: "user",
                    name: new.username.clone(),
                })?;
            c.execute(
                "INSERT INTO client_certificates (serial, fingerprint, user_id, device, common_name,
                     ca_fingerprint, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.serial,
                    new.fingerprint,
                    user_id,
                    new.device,
                    new.common_name,
                    new.ca_fingerprint,
                    unix_ms(new.issued_at),
                    unix_ms(new.expires_at)
                ],
            )?;
            by_serial(c, &new.serial)
        })
        .await
    }

    /// Client certificates, newest first: every user's (`None`) or one user's.
    pub async fn client_certificates(&self, user: Option<&str>) -> Result<Vec<ClientCertificate>> {
        let user = user.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE ?1 IS NULL OR u.username = ?1
                 ORDER BY c.issued_at DESC, c.serial"
            ))?;
            let rows = stmt
                .query_map([user], row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// The certificate with this serial (lower-case hex), or [`Error::NotFound`].
    pub async fn client_certificate(&self, serial: &str) -> Result<ClientCertificate> {
        let serial = serial.to_ascii_lowercase();
        self.read(move |c| by_serial(c, &serial)).await
    }

    /// The certificate with this SHA-256 fingerprint (lower-case hex), if we issued it.
    pub async fn client_certificate_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<ClientCertificate>> {
        let fingerprint = fingerprint.to_ascii_lowercase();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE c.fingerprint = ?1"),
                [fingerprint],
                row,
            )
            .optional()?)
        })
        .await
    }

    /// Revokes the certificate `serial` at `now` (a second revocation keeps the first time).
    /// Answers it as stored, or [`Error::NotFound`].
    pub async fn revoke_client_certificate(
        &self,
        serial: &str,
        now: SystemTime,
    ) -> Result<ClientCertificate> {
        let serial = serial.to_ascii_lowercase();
        let now = unix_ms(now);
        self.write(move |c| {
            c.execute(
                "UPDATE client_certificates SET revoked_at = ?2
                 WHERE serial = ?1 AND revoked_at IS NULL",
                params![serial, now],
            )?;
            by_serial(c, &serial)
        })
        .await
    }

    /// Notes that the certificate `fingerprint` logged in at `now`.
    pub async fn touch_client_certificate(&self, fingerprint: &str, now: SystemTime) -> Result<()> {
        let fingerprint = fingerprint.to_ascii_lowercase();
        let now = unix_ms(now);
        self.write(move |c| {
            c.execute(
                "UPDATE client_certificates SET last_used_at = ?2 WHERE fingerprint = ?1",
                params![fingerprint, now],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use porchlight_domain::Role;
    use porchlight_domain::secret::Secret;

    use super::*;

    fn new_cert(serial: &str, user: &str, expires_at: SystemTime) -> NewClientCertificate {
        NewClientCertificate {
            serial: serial.into(),
            fingerprint: format!("fp{serial}"),
            username: user.into(),
            device: "phone".into(),
            common_name: format!("{user}/phone"),
            ca_fingerprint: "ca".into(),
            issued_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
            expires_at,
        }
    }

    #[tokio::test]
    async fn records_lists_revokes_and_touches_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        for name in ["alice", "bob"] {
            let password = Secret::new(format!("{name} password 1"));
            store
                .create_user(name, Role::User, &password, SystemTime::now())
                .await
                .unwrap();
        }
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        store
            .record_client_certificate(new_cert("0a", "alice", later))
            .await
            .unwrap();
        store
            .record_client_certificate(new_cert("0b", "bob", later))
            .await
            .unwrap();
        assert!(matches!(
            store
                .record_client_certificate(new_cert("0c", "nobody", later))
                .await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(store.client_certificates(None).await.unwrap().len(), 2);
        let alice = store.client_certificates(Some("alice")).await.unwrap();
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0].username, "alice");

        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2000);
        let found = store
            .client_certificate_by_fingerprint("FP0A")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.status(now), ClientCertificateStatus::Active);
        assert_eq!(found.status(later), ClientCertificateStatus::Expired);

        store.touch_client_certificate("fp0a", now).await.unwrap();
        let revoked = store.revoke_client_certificate("0A", now).await.unwrap();
        assert_eq!(revoked.last_used_at, Some(now));
        assert_eq!(revoked.revoked_at, Some(now));
        assert_eq!(revoked.status(now), ClientCertificateStatus::Revoked);
        // Revoking again keeps the first time.
        let again = store.revoke_client_certificate("0a", later).await.unwrap();
        assert_eq!(again.revoked_at, Some(now));
        assert!(matches!(
            store.revoke_client_certificate("ff", now).await,
            Err(Error::NotFound { .. })
        ));
        assert!(
            store
                .client_certificate_by_fingerprint("nope")
                .await
                .unwrap()
                .is_none()
        );
    }
}
