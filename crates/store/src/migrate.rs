//! Schema migrations: numbered SQL files from `migrations/`, embedded at compile time.
//!
//! Append-only: a released migration is never edited; a change is a new file.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{Error, Result};

pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The newest schema version this build knows (numbers may have gaps; see `build.rs`).
pub const LATEST_VERSION: u32 = match MIGRATIONS.last() {
    Some(m) => m.version,
    None => 0,
};

/// Applies every migration the database has not recorded, in order, all in one transaction,
/// and records each in `schema_migrations` (so a migration merged into a gap below the
/// database's version is applied too). Refuses a database newer than this build.
pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let current: u32 = tx
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<u32>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    if current > LATEST_VERSION {
        return Err(Error::DatabaseTooNew {
            path: path.to_owned(),
            found: current,
            supported: LATEST_VERSION,
        });
    }
    let now = crate::unix_ms(std::time::SystemTime::now());
    let applied: std::collections::HashSet<u32> = {
        let mut stmt = tx.prepare("SELECT version FROM schema_migrations")?;
        stmt.query_map([], |r| r.get::<_, u32>(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    /// A migration merged into a gap below the database's version is applied at the next
    /// open (branches reserve numbers ahead of their merge).
    #[test]
    fn a_migration_missing_from_the_database_is_applied_even_below_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        apply(&mut conn, &path).unwrap();
        // As if 0010 (user_cards) had come in a branch merged after this database was made.
        conn.execute_batch(
            "DROP TABLE user_cards; DELETE FROM schema_migrations WHERE version = 10;",
        )
        .unwrap();
        apply(&mut conn, &path).unwrap();
        let cards: i64 = conn
            .query_row("SELECT COUNT(*) FROM user_cards", [], |r| r.get(0))
            .unwrap();
        assert_eq!(cards, 0, "the table is back");
        let versions: Vec<u32> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            versions,
            MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
        );
    }
}
