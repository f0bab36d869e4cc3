//! The single writer thread.
//!
//! Jobs arrive on a bounded queue. The thread takes the first job, opens a transaction, then
//! takes whatever else is already queued (up to [`MAX_BATCH`]) into the same transaction, each
//! job in its own savepoint. A full queue makes writers wait (backpressure) rather than
//! dropping anything.
//!
//! Every caller gets the true outcome of its own job:
//! - a job that fails (or panics: the panic is caught) has its savepoint rolled back and its
//!   caller gets the error; the other jobs of the batch go on;
//! - after SQLITE_FULL, SQLITE_IOERR and the like SQLite may have rolled back the whole
//!   transaction by itself. The thread checks for that after every job: the jobs of the batch
//!   that already ran lost their work and get [`Error::RolledBack`], and the remaining jobs run
//!   in a new transaction;
//! - if `BEGIN` fails, every job of the batch gets that error ([`Error::Begin`]) unrun;
//! - if `COMMIT` fails, every job of the transaction gets that error ([`Error::Commit`]).
//!
//! The thread clears the `running` flag however it ends (a drop guard, so a panic outside a
//! job counts too): the store then reports itself unhealthy and `/health` answers 503.
//!
//! Durability off the writer thread (ADR 0016): SQLite's own sync at `COMMIT` would hold the
//! writer for the disk flush (~2 ms here) on every transaction, and nothing else can be
//! written meanwhile. So the writer connection runs with `synchronous = NORMAL` (in WAL mode:
//! a `COMMIT` writes its frames to the WAL file without syncing it) and hands the finished
//! transaction's answers to a second thread, the syncer, which `fdatasync`s the WAL file
//! through a descriptor of its own and only then answers the callers. While it flushes, the
//! writer is already running the next transaction; a flush covers every transaction
//! committed before it began, so the syncer answers all that queued up at once. No caller is
//! ever answered before its commit is on disk: an acknowledged point survives `kill -9` and
//! power loss alike. Other readers may see a commit up to one flush before it is durable.
//!
//! This is sound because the WAL is the only file commits write: the database file is written
//! only by checkpoints, which run on the checkpointer's connection with `synchronous = FULL`
//! (it syncs the WAL before copying and the database before the WAL may start over), and
//! SQLite never deletes or replaces the WAL file while a connection (this one) is open.
//! If the WAL file cannot be opened, the writer keeps `synchronous = FULL` and answers
//! itself, as before.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Error, Result};

const QUEUE_DEPTH: usize = 4096;
const MAX_BATCH: usize = 1024;

/// How a transaction ended for the jobs that ran in it.
#[derive(Clone)]
enum Outcome {
    Committed,
    /// `COMMIT` failed; nothing of the transaction is in the file.
    CommitFailed(String),
    /// SQLite rolled the transaction back by itself while a later job ran.
    RolledBack(String),
}

/// Completes a job once its transaction ended.
type Completion = Box<dyn FnOnce(Outcome) + Send>;

/// A queued write.
trait Job: Send {
    /// Runs the job (in a savepoint of its own when `savepoint`); the returned completion
    /// reports its outcome later, and the flag says whether the job succeeded.
    fn run(self: Box<Self>, conn: &Connection, savepoint: bool) -> (Completion, bool);
    /// Answers the caller without running the job.
    fn refuse(self: Box<Self>, error: Error);
}

struct Typed<T, F> {
    job: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection, savepoint: bool) -> (Completion, bool) {
        let Typed { job, reply } = *self;
        let result = if savepoint {
            in_savepoint(conn, job)
        } else {
            caught(conn, job)
        };
        let ok = result.is_ok();
        let complete = Box::new(move |outcome: Outcome| {
            let result = match outcome {
                Outcome::Committed => result,
                // A job that failed on its own keeps its own error.
                Outcome::CommitFailed(_) | Outcome::RolledBack(_) if result.is_err() => result,
                Outcome::CommitFailed(e) => Err(Error::Commit(e)),
                Outcome::RolledBack(e) => Err(Error::RolledBack(e)),
            };
            let _ = reply.send(result);
        });
        (complete, ok)
    }

    fn refuse(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

enum Message {
    Job(Box<dyn Job>),
    /// Stop after the jobs queued before this message; the sender is told when done.
    Close(oneshot::Sender<()>),
}

pub(crate) struct WriterHandle {
    /// Queue into the writer thread. A closed channel means the thread is gone.
    tx: mpsc::Sender<Message>,
    /// True while the thread runs; cleared by a drop guard however the thread ends. Read by
    /// health checks.
    running: Arc<AtomicBool>,
    /// The thread, joined once by `close`.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Clears the `running` flag when the writer thread ends, normally or by a panic.
struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Where commits are made durable: the WAL file, flushed by the syncer thread.
trait Flush: Send + 'static {
    fn flush(&mut self) -> std::io::Result<()>;
}

impl Flush for std::fs::File {
    fn flush(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// How the answers of a committed transaction reach their callers.
enum Durability {
    /// SQLite synced the WAL inside `COMMIT` (`synchronous = FULL`): answer at once.
    InCommit,
    /// The syncer thread flushes the WAL, then answers.
    Syncer {
        queue: std_mpsc::Sender<Vec<Completion>>,
        thread: JoinHandle<()>,
    },
}

impl Durability {
    /// The syncer over `conn`'s WAL file; SQLite's own sync if that file cannot be opened.
    fn for_connection(conn: &Connection) -> Durability {
        let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
            return Durability::InCommit;
        };
        let wal = format!("{db}-wal");
        let file = match std::fs::OpenOptions::new().write(true).open(&wal) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(error = %e, %wal, "cannot open the WAL to sync it beside the writer; SQLite syncs each commit itself");
                return Durability::InCommit;
            }
        };
        if let Err(e) = conn.execute_batch("PRAGMA synchronous = NORMAL") {
            tracing::warn!(error = %e, "cannot hand the WAL sync to the syncer; SQLite syncs each commit itself");
            return Durability::InCommit;
        }
        Durability::with_target(file).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot start the WAL syncer; SQLite syncs each commit itself");
            let _ = conn.execute_batch("PRAGMA synchronous = FULL");
            Durability::InCommit
        })
    }

    fn with_target(target: impl Flush) -> std::io::Result<Durability> {
        let (queue, rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("porchlight-db-sync".into())
            .spawn(move || syncer_loop(target, &rx))?;
        Ok(Durability::Syncer { queue, thread })
    }

    /// Answers the jobs of a transaction that ended with `outcome`.
    fn complete(&self, ran: Vec<Completion>, outcome: Outcome) {
        let ran = match (self, &outcome) {
            (Durability::Syncer { queue, .. }, Outcome::Committed) => match queue.send(ran) {
                Ok(()) => return,
                Err(std_mpsc::SendError(ran)) => {
                    let why = "the WAL syncer is gone; the commit may not be on disk".to_owned();
                    tracing::error!("{why}");
                    for complete in ran {
                        complete(Outcome::CommitFailed(why.clone()));
                    }
                    return;
                }
            },
            _ => ran,
        };
        for complete in ran {
            complete(outcome.clone());
        }
    }

    /// Waits until every answer handed to the syncer has been given.
    fn finish(self) {
        if let Durability::Syncer { queue, thread } = self {
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// Flushes the WAL for every transaction queued since the last flush, then answers them.
fn syncer_loop(mut target: impl Flush, rx: &std_mpsc::Receiver<Vec<Completion>>) {
    while let Ok(mut waiting) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            waiting.extend(more);
        }
        let outcome = match target.flush() {
            Ok(()) => Outcome::Committed,
            Err(e) => {
                tracing::error!(error = %e, jobs = waiting.len(), "syncing the WAL failed; those commits may not be on disk");
                Outcome::CommitFailed(format!("the commit could not be synced to disk: {e}"))
            }
        };
        for complete in waiting {
            complete(outcome.clone());
        }
    }
}

pub(crate) fn spawn(conn: Connection) -> Result<WriterHandle> {
    let durability = Durability::for_connection(&conn);
    spawn_with(conn, durability)
}

fn spawn_with(conn: Connection, durability: Durability) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let running = Arc::new(AtomicBool::new(true));
    let guard = RunningGuard(Arc::clone(&running));
    let thread = std::thread::Builder::new()
        .name("porchlight-db-writer".into())
        .spawn(move || {
            let _guard = guard;
            writer_loop(conn, rx, durability);
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
        let (reply, done) = oneshot::channel::<Result<T>>();
        self.tx
            .send(Message::Job(Box::new(Typed { job, reply })))
            .await
            .map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)?
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

/// Runs `job` inside a savepoint, rolled back if the job fails or panics.
fn in_savepoint<T>(conn: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = caught(conn, job);
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

/// Runs `job`, a panic turned into [`Error::JobPanicked`]. The caller rolls its changes back
/// (the job's captures are dropped by the unwind; the connection is left as that rollback
/// leaves it, so observing it after a panic is sound).
fn caught<T>(conn: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(|| job(conn))).unwrap_or_else(|panic| {
        let what = panic_message(panic.as_ref());
        tracing::error!(panic = %what, "a database write job panicked; its changes are rolled back");
        Err(Error::JobPanicked(what))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Message>, durability: Durability) {
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
            commit_batch(&conn, batch, &durability);
        }
    }
    rx.close();
    // Jobs that raced with Close are refused: their callers see `Error::Closed`.
    while let Ok(msg) = rx.try_recv() {
        if let Message::Job(job) = msg {
            job.refuse(Error::Closed);
        }
    }
    durability.finish();
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "WAL checkpoint at close failed");
    }
    drop(conn);
    if let Some(ack) = close_ack {
        let _ = ack.send(());
    }
}

/// Runs `batch` in as few transactions as possible: one, unless SQLite rolls a transaction
/// back by itself, in which case the jobs not yet run go on in a new one.
fn commit_batch(conn: &Connection, batch: Vec<Box<dyn Job>>, durability: &Durability) {
    let mut pending = batch.into_iter();
    loop {
        let mut next = pending.next();
        if next.is_none() {
            return;
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cannot begin a write transaction");
            for job in next.into_iter().chain(pending) {
                job.refuse(Error::Begin(msg.clone()));
            }
            return;
        }
        // A job alone in its transaction needs no savepoint: if it fails, the transaction is
        // rolled back instead of committed. (A savepoint makes SQLite copy every page the job
        // changes into a statement journal first: a quarter of the writer's time under ingest.)
        let alone = pending.len() == 0;
        let mut ran: Vec<Completion> = Vec::new();
        let mut lost = None;
        let mut failed_alone = false;
        while let Some(job) = next.take() {
            let (complete, ok) = job.run(conn, !alone);
            ran.push(complete);
            if alone && !ok {
                failed_alone = true;
                break;
            }
            if conn.is_autocommit() {
                // The transaction is gone: SQLite rolled it back (SQLITE_FULL, IOERR, …).
                lost = Some(
                    "SQLite rolled back the transaction after an error (disk full or I/O error?)"
                        .to_owned(),
                );
                break;
            }
            next = pending.next();
        }
        let outcome = match lost {
            None if failed_alone => {
                // The job keeps its own error; its changes are undone with the transaction.
                if !conn.is_autocommit()
                    && let Err(e) = conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(error = %e, "rolling back a failed write job failed");
                }
                Outcome::RolledBack("the job failed".to_owned())
            }
            Some(msg) => {
                tracing::error!(jobs = ran.len(), "{msg}; those writes are lost");
                Outcome::RolledBack(msg)
            }
            None => match conn.execute_batch("COMMIT") {
                Ok(()) => Outcome::Committed,
                Err(e) => {
                    let msg = e.to_string();
                    tracing::error!(error = %msg, "commit failed");
                    let _ = conn.execute_batch("ROLLBACK");
                    Outcome::CommitFailed(msg)
                }
            },
        };
        durability.complete(ran, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_conn(dir: &tempfile::TempDir) -> (std::path::PathBuf, Connection) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB);",
        )
        .unwrap();
        (path, conn)
    }

    fn names(path: &std::path::Path) -> Vec<String> {
        let c = Connection::open(path).unwrap();
        let mut s = c.prepare("SELECT name FROM t ORDER BY id").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn insert(name: &'static str, body_len: usize) -> impl FnOnce(&Connection) -> Result<()> {
        move |c: &Connection| {
            c.execute(
                "INSERT INTO t (name, body) VALUES (?1, ?2)",
                rusqlite::params![name, vec![7u8; body_len]],
            )?;
            Ok(())
        }
    }

    /// Holds the writer inside a job until the returned sender fires, so that the jobs queued
    /// meanwhile form the next batch together.
    async fn hold(writer: &Arc<WriterHandle>) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (entered_tx, entered) = oneshot::channel();
        let w = Arc::clone(writer);
        tokio::spawn(async move {
            w.run(move |_| {
                let _ = entered_tx.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
        });
        entered.await.unwrap();
        release
    }

    async fn queued(writer: &WriterHandle, n: usize) {
        while QUEUE_DEPTH - writer.tx.capacity() < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = temp_conn(&dir);
        let writer = Arc::new(spawn(conn).unwrap());
        let release = hold(&writer).await;
        let w = Arc::clone(&writer);
        let before = tokio::spawn(async move { w.run(insert("before", 1)).await });
        let w = Arc::clone(&writer);
        let panics = tokio::spawn(async move {
            w.run(|c: &Connection| -> Result<()> {
                c.execute("INSERT INTO t (name) VALUES ('panicked')", [])?;
                panic!("a bug in a job");
            })
            .await
        });
        queued(&writer, 2).await;
        release.send(()).unwrap();
        before.await.unwrap().unwrap();
        match panics.await.unwrap() {
            Err(Error::JobPanicked(msg)) => assert!(msg.contains("a bug in a job"), "{msg}"),
            other => panic!("expected JobPanicked, got {other:?}"),
        }
        writer.run(insert("after", 1)).await.unwrap();
        assert!(writer.is_running());
        assert_eq!(names(&path), ["before", "after"]);
        writer.close().await;
        assert!(!writer.is_running());
    }

    #[tokio::test]
    async fn after_sqlite_rolls_back_a_batch_each_caller_learns_what_really_happened() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = temp_conn(&dir);
        // A few pages to spare: small rows fit, a 1 MB row makes SQLITE_FULL, after which
        // SQLite rolls back the whole transaction (not just the statement).
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 8))
            .unwrap();
        let writer = Arc::new(spawn(conn).unwrap());
        let release = hold(&writer).await;
        let mut tasks = Vec::new();
        for (name, len) in [("lost", 10), ("too big", 1 << 20), ("kept", 10)] {
            let w = Arc::clone(&writer);
            tasks.push(tokio::spawn(async move { w.run(insert(name, len)).await }));
            queued(&writer, tasks.len()).await;
        }
        release.send(()).unwrap();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert!(
            matches!(results[0], Err(Error::RolledBack(_))),
            "{:?}",
            results[0]
        );
        assert!(
            matches!(&results[1], Err(Error::Sqlite(e)) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
        assert!(writer.is_running());
        writer.run(insert("later", 10)).await.unwrap();
        writer.close().await;
        // What the writer said was committed is in the file, and nothing else.
        assert_eq!(names(&path), ["kept", "later"]);
    }

    #[tokio::test]
    async fn a_failed_begin_reports_the_real_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = temp_conn(&dir);
        conn.busy_timeout(std::time::Duration::from_millis(50))
            .unwrap();
        let writer = spawn(conn).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        match writer.run(insert("blocked", 1)).await {
            Err(Error::Begin(msg)) => assert!(msg.contains("locked"), "{msg}"),
            other => panic!("expected Begin, got {other:?}"),
        }
        other.execute_batch("ROLLBACK").unwrap();
        writer.run(insert("free", 1)).await.unwrap();
        writer.close().await;
        assert_eq!(names(&path), ["free"]);
    }

    #[tokio::test]
    async fn a_job_alone_in_its_transaction_that_fails_or_panics_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = temp_conn(&dir);
        let writer = spawn(conn).unwrap();
        let failed = writer
            .run(|c: &Connection| -> Result<()> {
                c.execute("INSERT INTO t (name) VALUES ('half done')", [])?;
                c.execute("INSERT INTO no_such_table (x) VALUES (1)", [])?;
                Ok(())
            })
            .await;
        assert!(matches!(failed, Err(Error::Sqlite(_))), "{failed:?}");
        let panicked = writer
            .run(|c: &Connection| -> Result<()> {
                c.execute("INSERT INTO t (name) VALUES ('panicked')", [])?;
                panic!("a bug in a lone job");
            })
            .await;
        assert!(
            matches!(&panicked, Err(Error::JobPanicked(m)) if m.contains("lone job")),
            "{panicked:?}"
        );
        writer.run(insert("after", 1)).await.unwrap();
        writer.close().await;
        assert_eq!(names(&path), ["after"]);
    }

    /// A WAL flush that waits for the test's word, then succeeds or fails as told.
    struct GatedFlush {
        gate: std::sync::mpsc::Receiver<std::io::Result<()>>,
        flushes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Flush for GatedFlush {
        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            self.gate
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("gate closed")))
        }
    }

    #[tokio::test]
    async fn a_caller_is_answered_only_after_the_wal_flush_and_learns_if_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = temp_conn(&dir);
        let (open_gate, gate) = std::sync::mpsc::channel();
        let flushes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let durability = Durability::with_target(GatedFlush {
            gate,
            flushes: Arc::clone(&flushes),
        })
        .unwrap();
        let writer = Arc::new(spawn_with(conn, durability).unwrap());
        let w = Arc::clone(&writer);
        let mut first = tokio::spawn(async move { w.run(insert("first", 1)).await });
        // Committed (a reader sees it) but not flushed: no answer yet.
        while names(&path).is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        while flushes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The writer goes on meanwhile: the next transaction commits while the flush waits.
        let w = Arc::clone(&writer);
        let mut second = tokio::spawn(async move { w.run(insert("second", 1)).await });
        while names(&path).len() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        for task in [&mut first, &mut second] {
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(100), task)
                    .await
                    .is_err(),
                "answered before the WAL was flushed"
            );
        }
        open_gate.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        // The second commit queued behind the first flush: one more flush answers it, and
        // that one fails.
        open_gate
            .send(Err(std::io::Error::other("EIO from the disk")))
            .unwrap();
        match second.await.unwrap() {
            Err(Error::Commit(msg)) => assert!(msg.contains("EIO from the disk"), "{msg}"),
            other => panic!("expected a commit error, got {other:?}"),
        }
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
        drop(open_gate);
        writer.close().await;
    }

    #[tokio::test]
    async fn the_store_writer_syncs_beside_sqlite_not_inside_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = temp_conn(&dir);
        let writer = spawn(conn).unwrap();
        writer.run(insert("one", 1)).await.unwrap();
        let mode: i64 = writer
            .run(|c: &Connection| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode, 1, "NORMAL: the syncer thread flushes the WAL");
        writer.close().await;
        assert_eq!(names(&path), ["one"]);
    }

    #[test]
    fn the_running_flag_clears_however_the_thread_ends() {
        let running = Arc::new(AtomicBool::new(true));
        let guard = RunningGuard(Arc::clone(&running));
        let thread = std::thread::spawn(move || {
            let _guard = guard;
            panic!("the writer loop itself failed");
        });
        assert!(thread.join().is_err());
        assert!(!running.load(Ordering::SeqCst));
    }
}
