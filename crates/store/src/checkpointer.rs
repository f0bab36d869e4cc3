//! The WAL checkpointer: a thread of its own that copies committed WAL pages into the database
//! file, so the writer thread never does it inside a commit.
//!
//! With SQLite's automatic checkpoints the connection whose commit crosses the threshold
//! copies the whole WAL into the database and fsyncs it before that commit returns: under
//! OwnTracks ingest (ADR 0009) that is a stall of tens to hundreds of milliseconds every few
//! seconds on the one thread every acknowledgement waits for. Here the writer runs with
//! `wal_autocheckpoint = 0` and this thread, with its own connection, runs a `PASSIVE`
//! checkpoint every [`INTERVAL`]: it copies what is committed without blocking the writer or
//! the readers, on the other core. When it has copied everything, the writer's next
//! transaction starts the WAL over from its beginning, so the file does not grow.
//!
//! Under a writer that commits every few milliseconds, no commit ever starts at a moment when
//! everything is copied, and SQLite starts the WAL over only then: it would grow without end
//! (measured: 35 MB after 32 MB written). So once the WAL holds [`RESTART_AT_FRAMES`], right
//! after a `PASSIVE` pass has copied nearly all of it, the checkpointer runs a `RESTART`
//! checkpoint: it holds the writer back only while it copies the few frames committed since
//! and syncs the file, and the next commit starts the WAL over.
//!
//! A checkpoint that fails is logged and tried again at the next tick: durability does not
//! depend on it (committed pages are in the WAL, flushed before any caller was answered).

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Error, Result};

/// How often committed WAL pages are copied into the database.
pub(crate) const INTERVAL: Duration = Duration::from_millis(200);

/// WAL frames (4 KiB pages) from which the checkpointer makes the WAL start over: ~16 MiB.
pub(crate) const RESTART_AT_FRAMES: i64 = 4_096;

pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the database at `path` (in WAL mode
    /// already, opened by the store).
    pub(crate) fn spawn(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // Checkpoints are the only writes to the database file, and the writer relies on
        // them syncing: the WAL before copying, the database before the WAL starts over.
        conn.execute_batch("PRAGMA synchronous = FULL")?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("porchlight-db-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| Error::Commit(format!("cannot start the WAL checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after the checkpoint it may be running).
    pub(crate) fn stop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match checkpoint(conn, "PASSIVE") {
            Ok((log, _)) if log >= RESTART_AT_FRAMES => {
                tracing::debug!(frames = log, "WAL starts over (RESTART checkpoint)");
                if let Err(e) = checkpoint(conn, "RESTART") {
                    tracing::warn!(error = %e, "WAL checkpoint (RESTART) failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Runs one checkpoint in `mode`; answers (frames in the WAL, frames copied).
pub(crate) fn checkpoint(conn: &Connection, mode: &str) -> Result<(i64, i64)> {
    let (_busy, log, copied): (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((log, copied))
}
