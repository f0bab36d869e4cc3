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

/// The newest schema version this build knows.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies every migration newer than the database's version, all in one transaction, and
/// records each in `schema_migrations`. Refuses a database newer than this build.
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
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
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
