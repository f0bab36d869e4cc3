//! The single writer thread.
//!
//! Jobs arrive on a bounded queue. The thread takes the first job, opens a transaction, then
//! takes whatever else is already queued (up to [`MAX_BATCH`]) into the same transaction, each
//! job in its own savepoint. After COMMIT every job's caller gets its result; if COMMIT itself
//! fails every job in the batch gets that error. A full queue makes writers wait (backpressure)
//! rather than dropping anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Error, Result};

const QUEUE_DEPTH: usize = 4096;
const MAX_BATCH: usize = 1024;

/// Completes a job after its batch committed (`Ok`) or failed to commit (`Err`).
type Completion = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

enum Message {
    Job(Job),
    /// Stop after the jobs queued before this message; the sender is told when done.
    Close(oneshot::Sender<()>),
}

pub(crate) struct WriterHandle {
    /// Queue into the writer thread. A closed channel means the thread is gone.
    tx: mpsc::Sender<Message>,
    /// Set by the thread as it exits, read by health checks.
    running: Arc<AtomicBool>,
    /// The thread, joined once by `close`.
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) fn spawn(conn: Connection) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let running = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&running);
    let thread = std::thread::Builder::new()
        .name("porchlight-db-writer".into())
        .spawn(move || {
            writer_loop(conn, rx);
            flag.store(false, Ordering::SeqCst);
        })
        .map_err(|e| Error::Commit(format!("cannot start the database writer thread: {e}")))?;
    Ok(WriterHandle {
        tx,
        running,
        thread: Mutex::new(Some(thread)),
    })
}

impl WriterHandle {
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, job);
            Box::new(move |commit: std::result::Result<(), String>| {
                let outcome = match commit {
                    Ok(()) => result,
                    Err(e) => Err(Error::Commit(e)),
                };
                let _ = done_tx.send(outcome);
            })
        });
        self.tx
            .send(Message::Job(job))
            .await
            .map_err(|_| Error::Closed)?;
        done_rx.await.map_err(|_| Error::Closed)?
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let thread = self.thread.lock().await.take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn in_savepoint<T>(conn: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = job(conn);
    let end = if result.is_ok() {
        conn.execute_batch("RELEASE job")
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    };
    match (result, end) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Message>) {
    let mut close_ack: Option<oneshot::Sender<()>> = None;
    while close_ack.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut batch = Vec::new();
        match first {
            Message::Job(job) => batch.push(job),
            Message::Close(ack) => {
                close_ack = Some(ack);
            }
        }
        while close_ack.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Close(ack)) => close_ack = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(&conn, batch);
        }
    }
    rx.close();
    // Jobs that raced with Close are refused: their callers see `Error::Closed`.
    while let Ok(msg) = rx.try_recv() {
        drop(msg);
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "WAL checkpoint at close failed");
    }
    drop(conn);
    if let Some(ack) = close_ack {
        let _ = ack.send(());
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        tracing::error!(error = %msg, "cannot begin a write transaction");
        // Dropping the jobs unrun drops their reply channels: callers see `Error::Closed`.
        drop(batch);
        return;
    }
    let completions: Vec<Completion> = batch.into_iter().map(|job| job(conn)).collect();
    let commit = conn.execute_batch("COMMIT").map_err(|e| {
        let msg = e.to_string();
        tracing::error!(error = %msg, "commit failed");
        let _ = conn.execute_batch("ROLLBACK");
        msg
    });
    for complete in completions {
        complete(commit.clone());
    }
}
