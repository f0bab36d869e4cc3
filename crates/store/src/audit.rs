//! The audit log: connection attempts, disconnects, refused publishes and subscriptions, web
//! logins, friendships granted and revoked, alarm PIN codes used and refused, client
//! certificates issued and revoked. Rows carry
//! who/where/what happened and a human reason; never a password or a PIN.

use std::time::{Duration, SystemTime};

use rusqlite::params;

use crate::{Result, Store, from_unix_ms, unix_ms};

/// Most rows one purge job deletes (see [`Store::purge_audit`]).
pub const AUDIT_PURGE_BATCH: u32 = 1000;

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    MqttConnect,
    MqttDisconnect,
    MqttPublishDenied,
    MqttSubscribeDenied,
    HttpLogin,
    /// A user granted another the sight of their OwnTracks devices (`detail`: `owner -> viewer`).
    FriendGranted,
    /// A grant was revoked (`detail`: `owner -> viewer`).
    FriendRevoked,
    /// An alarm PIN was accepted (`detail`: source and code id; never the PIN).
    AlarmCodeUsed,
    /// An alarm PIN was refused: wrong, disabled, out of its window, locked out, not a PIN
    /// (`reason` says which; never the PIN).
    AlarmCodeRefused,
    /// A client certificate was issued (`detail`: serial and subject; never the key).
    CertificateIssued,
    /// A client certificate was revoked (`detail`: serial and subject).
    CertificateRevoked,
    /// A connection to an MQTT TLS listener that never became a TLS session (`reason` says
    /// why; `code` is the listener's port).
    MqttTlsRefused,
    /// A new CA was generated and made the active one (`detail`: its fingerprint).
    CaRotated,
    /// A CA was imported and made the active one (`detail`: its fingerprint).
    CaImported,
    /// The MQTT/HTTPS server certificate was renewed (`detail`: its serial and expiry).
    ServerCertificateRenewed,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::MqttConnect => "mqtt_connect",
            AuditKind::MqttDisconnect => "mqtt_disconnect",
            AuditKind::MqttPublishDenied => "mqtt_publish_denied",
            AuditKind::MqttSubscribeDenied => "mqtt_subscribe_denied",
            AuditKind::HttpLogin => "http_login",
            AuditKind::FriendGranted => "friend_granted",
            AuditKind::FriendRevoked => "friend_revoked",
            AuditKind::AlarmCodeUsed => "alarm_code_used",
            AuditKind::AlarmCodeRefused => "alarm_code_refused",
            AuditKind::CertificateIssued => "certificate_issued",
            AuditKind::CertificateRevoked => "certificate_revoked",
            AuditKind::MqttTlsRefused => "mqtt_tls_refused",
            AuditKind::CaRotated => "ca_rotated",
            AuditKind::CaImported => "ca_imported",
            AuditKind::ServerCertificateRenewed => "server_certificate_renewed",
        }
    }

    /// Every kind, in a stable order.
    pub const ALL: [AuditKind; 15] = [
        AuditKind::MqttConnect,
        AuditKind::MqttDisconnect,
        AuditKind::MqttPublishDenied,
        AuditKind::MqttSubscribeDenied,
        AuditKind::HttpLogin,
        AuditKind::FriendGranted,
        AuditKind::FriendRevoked,
        AuditKind::AlarmCodeUsed,
        AuditKind::AlarmCodeRefused,
        AuditKind::CertificateIssued,
        AuditKind::CertificateRevoked,
        AuditKind::MqttTlsRefused,
        AuditKind::CaRotated,
        AuditKind::CaImported,
        AuditKind::ServerCertificateRenewed,
    ];

    /// The kind named `s` (as [`AuditKind::as_str`] writes it).
    pub fn parse(s: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which audit rows [`Store::audit_page`] answers; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub kind: Option<AuditKind>,
    /// The row's user name, exactly.
    pub username: Option<String>,
    /// Succeeded (`Some(true)`) or failed (`Some(false)`) rows, as [`AuditEntry::succeeded`]
    /// tells.
    pub succeeded: Option<bool>,
}

/// Kinds whose rows are refusals whatever their code.
const REFUSAL_KINDS: [AuditKind; 4] = [
    AuditKind::MqttPublishDenied,
    AuditKind::MqttSubscribeDenied,
    AuditKind::AlarmCodeRefused,
    AuditKind::MqttTlsRefused,
];

/// [`AuditEntry::succeeded`] in SQL, negated: a failed row. One expression, so that a partial
/// index on failed rows (`CREATE INDEX … ON audit(id) WHERE` this) serves the filter.
const FAILED_SQL: &str = "(kind IN ('mqtt_publish_denied', 'mqtt_subscribe_denied', \
    'alarm_code_refused', 'mqtt_tls_refused') OR (code IS NOT NULL AND code <> 0 AND (code < 200 OR code >= 300)))";

/// One audit row. `code` is the MQTT CONNACK/SUBACK code or the HTTP status sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the store; 0 for entries not yet written.
    pub id: i64,
    pub at: SystemTime,
    pub kind: AuditKind,
    pub peer: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub protocol: Option<u8>,
    pub code: Option<u16>,
    pub reason: String,
    /// The topic or filter for publish/subscribe rows.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// A row of `kind` at `at` saying `reason`, every other field empty (fill them with
    /// struct update syntax: `AuditEntry { peer: …, ..AuditEntry::new(at, kind, reason) }`).
    pub fn new(at: SystemTime, kind: AuditKind, reason: impl Into<String>) -> AuditEntry {
        AuditEntry {
            id: 0,
            at,
            kind,
            peer: None,
            client_id: None,
            username: None,
            protocol: None,
            code: None,
            reason: reason.into(),
            detail: None,
        }
    }

    /// Whether the row records a success: not a refusal kind, and its code (if any) is MQTT's
    /// 0 or an HTTP 2xx.
    pub fn succeeded(&self) -> bool {
        !REFUSAL_KINDS.contains(&self.kind)
            && match self.code {
                None | Some(0) => true,
                Some(code) => (200..300).contains(&code),
            }
    }
}

impl Store {
    /// Appends audit rows in one transaction.
    pub async fn record_audit(&self, entries: Vec<AuditEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO audit (at, kind, peer, client_id, username, protocol, code, reason, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in &entries {
                stmt.execute(params![
                    unix_ms(e.at),
                    e.kind.as_str(),
                    e.peer,
                    e.client_id,
                    e.username,
                    e.protocol,
                    e.code,
                    e.reason,
                    e.detail
                ])?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes audit rows older than `now - retention`, [`AUDIT_PURGE_BATCH`] rows per write
    /// job, until none are left; returns how many were deleted. Each batch is its own short
    /// job, so logins and other writes interleave with a long purge instead of waiting for it.
    pub async fn purge_audit(&self, now: SystemTime, retention: Duration) -> Result<u64> {
        let cutoff = unix_ms(now.checked_sub(retention).unwrap_or(std::time::UNIX_EPOCH));
        let mut total = 0u64;
        loop {
            let deleted = self
                .write(move |c| {
                    Ok(c.execute(
                        "DELETE FROM audit WHERE id IN
                           (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
                        params![cutoff, AUDIT_PURGE_BATCH],
                    )?)
                })
                .await?;
            total += deleted as u64;
            if deleted < AUDIT_PURGE_BATCH as usize {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Newest first, the rows `filter` names; `before` pages backwards by id (the last id
    /// of the previous page). Filtered in SQL; the indexes of migration 0011 (`(kind, id)`,
    /// `(username, id)`, and a partial index of failed rows) find a page of a rare kind, user
    /// or failures without reading back through the table (under 1 ms for 3M rows).
    pub async fn audit_page(
        &self,
        limit: u32,
        before: Option<i64>,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>> {
        self.read(move |c| {
            let mut sql = String::from(
                "SELECT id, at, kind, peer, client_id, username, protocol, code, reason, detail
                 FROM audit WHERE 1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(before) = before {
                sql.push_str(" AND id < ?");
                args.push(before.into());
            }
            if let Some(kind) = filter.kind {
                sql.push_str(" AND kind = ?");
                args.push(kind.as_str().to_owned().into());
            }
            if let Some(username) = filter.username {
                sql.push_str(" AND username = ?");
                args.push(username.into());
            }
            match filter.succeeded {
                Some(true) => sql.push_str(&format!(" AND NOT {FAILED_SQL}")),
                Some(false) => sql.push_str(&format!(" AND {FAILED_SQL}")),
                None => {}
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push(i64::from(limit).into());
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                let kind: String = r.get(2)?;
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: from_unix_ms(r.get(1)?),
                    kind: AuditKind::parse(&kind).unwrap_or(AuditKind::MqttConnect),
                    peer: r.get(3)?,
                    client_id: r.get(4)?,
                    username: r.get(5)?,
                    protocol: r.get(6)?,
                    code: r.get(7)?,
                    reason: r.get(8)?,
                    detail: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
