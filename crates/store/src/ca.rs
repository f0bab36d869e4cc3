//! The certificate authorities of this install (migration 0012, ADR 0017): each CA's
//! certificate, where it came from, and which one is active. Public material only: the CA keys
//! are sealed in files by the server's CA service, never stored here.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use crate::{Result, Store, from_unix_ms, unix_ms};

/// How a CA came to this install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaOrigin {
    Generated,
    Imported,
}

impl CaOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            CaOrigin::Generated => "generated",
            CaOrigin::Imported => "imported",
        }
    }

    fn parse(s: &str) -> CaOrigin {
        if s == "imported" {
            CaOrigin::Imported
        } else {
            CaOrigin::Generated
        }
    }
}

/// One CA as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCa {
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    pub cert_pem: String,
    pub origin: CaOrigin,
    pub active: bool,
    pub created_at: SystemTime,
    /// When another CA became active; `None` for the active one.
    pub retired_at: Option<SystemTime>,
}

const COLUMNS: &str = "fingerprint, cert_pem, origin, active, created_at, retired_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCa> {
    Ok(StoredCa {
        fingerprint: r.get(0)?,
        cert_pem: r.get(1)?,
        origin: CaOrigin::parse(&r.get::<_, String>(2)?),
        active: r.get(3)?,
        created_at: from_unix_ms(r.get(4)?),
        retired_at: r.get::<_, Option<i64>>(5)?.map(from_unix_ms),
    })
}

impl Store {
    /// The active CA, if this install has one yet.
    pub async fn active_ca(&self) -> Result<Option<StoredCa>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM certificate_authorities WHERE active = 1"),
                [],
                row,
            )
            .optional()?)
        })
        .await
    }

    /// Every CA: the active one first, then the retired ones, most recently retired first.
    pub async fn list_cas(&self) -> Result<Vec<StoredCa>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM certificate_authorities
                 ORDER BY active DESC, retired_at DESC, created_at DESC"
            ))?;
            let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// Makes the CA `fingerprint` the active one, in one job: the active CA (if another) is
    /// retired at `now`, and this one is added (or, if it was here before, e.g. imported
    /// again, made active again). Answers it as stored.
    pub async fn activate_ca(
        &self,
        fingerprint: &str,
        cert_pem: &str,
        origin: CaOrigin,
        now: SystemTime,
    ) -> Result<StoredCa> {
        let fingerprint = fingerprint.to_owned();
        let cert_pem = cert_pem.to_owned();
        let now = unix_ms(now);
        self.write(move |c| {
            c.execute(
                "UPDATE certificate_authorities SET active = 0, retired_at = ?2
                 WHERE active = 1 AND fingerprint <> ?1",
                params![fingerprint, now],
            )?;
            c.execute(
                "INSERT INTO certificate_authorities
                     (fingerprint, cert_pem, origin, active, created_at, retired_at)
                 VALUES (?1, ?2, ?3, 1, ?4, NULL)
                 ON CONFLICT (fingerprint) DO UPDATE SET active = 1, retired_at = NULL",
                params![fingerprint, cert_pem, origin.as_str(), now],
            )?;
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM certificate_authorities WHERE fingerprint = ?1"),
                [&fingerprint],
                row,
            )?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_ca_is_active_and_the_ones_before_stay_listed_as_retired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.active_ca().await.unwrap(), None);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let first = store
            .activate_ca("aa", "PEM A", CaOrigin::Generated, t0)
            .await
            .unwrap();
        assert!(first.active);
        assert_eq!(store.active_ca().await.unwrap(), Some(first.clone()));

        let t1 = t0 + Duration::from_secs(60);
        store
            .activate_ca("bb", "PEM B", CaOrigin::Imported, t1)
            .await
            .unwrap();
        let t2 = t1 + Duration::from_secs(60);
        store
            .activate_ca("cc", "PEM C", CaOrigin::Generated, t2)
            .await
            .unwrap();
        let all = store.list_cas().await.unwrap();
        let names: Vec<_> = all.iter().map(|c| c.fingerprint.as_str()).collect();
        assert_eq!(names, ["cc", "bb", "aa"]);
        assert!(all[0].active && all[0].retired_at.is_none());
        assert_eq!(all[1].retired_at, Some(t2));
        assert_eq!(all[1].origin, CaOrigin::Imported);
        assert_eq!(all[2].retired_at, Some(t1));
        assert!(!all[1].active && !all[2].active);

        // Importing a retired CA again makes it the active one again.
        let again = store
            .activate_ca("aa", "PEM A", CaOrigin::Imported, t2)
            .await
            .unwrap();
        assert!(again.active && again.retired_at.is_none());
        assert_eq!(store.active_ca().await.unwrap().unwrap().fingerprint, "aa");
        assert_eq!(
            store
                .list_cas()
                .await
                .unwrap()
                .iter()
                .filter(|c| c.active)
                .count(),
            1
        );
    }
}
