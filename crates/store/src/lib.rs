//! porchlight-store: everything Porchlight keeps on disk, in one SQLite file.
//!
//! Architecture invariants:
//! - Only this crate knows SQL. Callers get typed rows and typed errors.
//! - Every write goes through **one writer thread** (`Store::write`, crate-private: callers use
//!   the typed methods). Jobs that queue up while a transaction runs are committed together
//!   (group commit), each inside its own savepoint so one failing job never undoes another, and
//!   each caller gets the true outcome of its own job (see [`writer`]). Location ingest hands
//!   over whole batches as one job ([`Store::ingest_owntracks`]), so many points share a
//!   transaction and an fsync.
//! - The database file and its `-wal`/`-shm` files are made owner-only (0600) at every open.
//! - Reads run on a small pool of read-only connections off the async runtime; with WAL they
//!   never wait for the writer.
//! - Migrations are embedded at compile time and applied in order at open, in one transaction;
//!   a database written by a newer Porchlight is refused.
//! - Alarm PIN codes (`alarm_codes.rs`) are stored as argon2id PHC strings (their own cheap
//!   profile and argon2 limit, `hashing.rs`) with a keyed 16-bit tag, so a PIN is checked
//!   with argon2 against about one code, not all of them (ADR 0013).

mod accounts;
mod alarm;
mod alarm_codes;
#[cfg(test)]
mod alarm_codes_tests;
mod audit;
mod ca;
mod checkpointer;
mod client_certs;
mod friends;
mod hashing;
mod migrate;
mod mqtt_link;
mod owntracks;
mod owntracks_history;
#[cfg(test)]
mod owntracks_history_tests;
mod owntracks_keys;
#[cfg(test)]
mod owntracks_measure;
#[cfg(test)]
mod owntracks_tests;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

pub use accounts::{ApiToken, Device, LoginCheck, LoginCheckMode, PasswordChange, User};
pub use alarm::{
    ALARM_EVENT_PURGE_BATCH, AlarmEvent, AlarmEventKind, AlarmRecord, MAX_ALARM_EVENTS,
    NewAlarmEvent,
};
pub use alarm_codes::{AlarmCode, AlarmCodeChange, NewAlarmCode, PinMatch};
pub use audit::{AUDIT_PURGE_BATCH, AuditEntry, AuditFilter, AuditKind};
pub use ca::{CaOrigin, StoredCa};
pub use client_certs::{ClientCertificate, ClientCertificateStatus, NewClientCertificate};
pub use friends::Friendship;
pub use hashing::{
    HashPriority, MAX_CONCURRENT_HASHES, MAX_CONCURRENT_PIN_HASHES, REMEMBER_LOGIN_FOR,
    hash_password, hash_pin, random_password, verify_password, verify_pin,
};
pub use migrate::LATEST_VERSION;
pub use mqtt_link::{LinkPassword, StoredLink};
pub use owntracks::{
    Card, IngestOutcome, LOCATION_PURGE_BATCH, LastLocation, LocationFields, OwnTracksDevice,
    OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher, StoredLocation, StoredTransition,
    TrackFix, Transition, TransitionEvent, Waypoint,
};
pub use owntracks_history::MAX_RETENTION_DAYS;
pub use owntracks_keys::OwnTracksKey;
pub use porchlight_domain::track::TrackPoint;

/// Errors from the store. Messages are fit to show an operator; they never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database at {path} has schema version {found}, but this Porchlight only knows up to {supported}; \
         it was written by a newer Porchlight. Upgrade Porchlight or use another --data-dir"
    )]
    DatabaseTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("could not open the database at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Invalid(#[from] porchlight_domain::account::AccountError),
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    BadInput(String),
    #[error("refusing to remove the last admin account")]
    LastAdmin,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// Too many password checks are running or waiting (see [`HashPriority`]); try later.
    #[error("too many password checks at once; try again shortly")]
    Busy,
    /// Another alarm code (of any user, enabled or not) already has this PIN. Names nobody.
    #[error("this PIN is already in use; choose another")]
    PinTaken,
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("cannot begin a write transaction: {0}")]
    Begin(String),
    #[error("the write was lost: {0}")]
    RolledBack(String),
    #[error("a database job panicked: {0}")]
    JobPanicked(String),
    #[error("the store is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Handle to the database; cheap to clone, all clones share the writer thread and readers.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    /// Queue into the single writer thread; see [`writer`].
    writer: writer::WriterHandle,
    /// Idle read-only connections. A read takes one (or opens one) on a blocking thread and
    /// puts it back afterwards, keeping at most [`MAX_IDLE_READERS`].
    readers: Mutex<Vec<Connection>>,
    /// Copies the WAL into the database beside the writer; see [`checkpointer`].
    checkpointer: Mutex<Option<checkpointer::Checkpointer>>,
}

const MAX_IDLE_READERS: usize = 4;
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Store {
    /// Opens (creating if needed) the database file, applies pending migrations and starts the
    /// writer thread.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The writer never checkpoints: the checkpointer thread copies the WAL into the
        // database beside it, so no commit waits for that copy (ADR 0009, "Checkpoints").
        // Statement journals (a savepoint per job when several share a transaction) stay in
        // memory instead of a temporary file written with `pwrite`.
        // `synchronous = FULL` until the writer starts: its syncer thread then takes over the
        // commit's flush (`writer.rs`, ADR 0016).
        // 32 MiB of page cache keeps the pages that ingest touches batch after batch (the
        // log's tail, each device's last leaf) out of `pread`.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA cache_size = -32768;
             PRAGMA temp_store = MEMORY;",
        )?;
        migrate::apply(&mut conn, path)?;
        restrict_file_modes(path);
        let checkpointer = checkpointer::Checkpointer::spawn(path)?;
        let writer = writer::spawn(conn)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer,
                readers: Mutex::new(Vec::new()),
                checkpointer: Mutex::new(Some(checkpointer)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `job` on the writer thread inside a transaction (its own savepoint within a group
    /// commit) and returns its result once the transaction is durable.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run(job).await
    }

    /// Runs `job` on a read-only connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().map(|mut pool| pool.pop()) {
                Ok(Some(conn)) => conn,
                _ => open_reader(&inner.path)?,
            };
            let result = job(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < MAX_IDLE_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// True when the writer thread is alive and the file answers a trivial query.
    pub async fn is_healthy(&self) -> bool {
        self.inner.writer.is_running()
            && self
                .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
                .await
                .is_ok()
    }

    /// Finishes queued writes, checkpoints the WAL and stops the writer thread. Later writes on
    /// any clone fail with [`Error::Closed`].
    pub async fn close(&self) {
        let checkpointer = self
            .inner
            .checkpointer
            .lock()
            .ok()
            .and_then(|mut c| c.take());
        if let Some(mut checkpointer) = checkpointer {
            // Joins the thread: at most one checkpoint's time.
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
        self.inner.writer.close().await;
        if let Ok(mut pool) = self.inner.readers.lock() {
            pool.clear();
        }
    }
}

/// The database holds password hashes and keys: the file and its `-wal`/`-shm` companions
/// must be readable by the owner only. They are created that way, but a copy, a restore from
/// a backup or another tool may have widened them, so every open checks and narrows them.
///
/// A file whose mode cannot be fixed (owned by another account, or on a file system without
/// Unix modes) is reported as an error in the log, and the open goes on: the secrets in it are
/// hashes, and refusing to start would turn a permission problem into an outage of the
/// household's hub (its alarm included). The log line names the file and what to run.
fn restrict_file_modes(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut files = vec![path.to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(PathBuf::from(name));
        }
        for file in files {
            let mode = match std::fs::metadata(&file) {
                Ok(m) => m.permissions().mode() & 0o777,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::error!(file = %file.display(), error = %e, "cannot check the database file's mode");
                    continue;
                }
            };
            if mode & 0o077 == 0 {
                continue;
            }
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => tracing::warn!(
                    file = %file.display(),
                    was = format!("{mode:o}"),
                    "the database file was readable by others; made it 0600"
                ),
                Err(e) => tracing::error!(
                    file = %file.display(),
                    mode = format!("{mode:o}"),
                    error = %e,
                    "the database file is readable by others and its mode cannot be changed; \
                     run `chmod 600` on it as its owner"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Unix milliseconds for a `SystemTime` (times before 1970 clamp to 0).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_unix_ms(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
