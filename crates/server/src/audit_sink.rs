//! The audit sink: a non-blocking queue from the broker hooks and HTTP handlers into the store,
//! and the retention purge of old audit rows.
//!
//! Recording must never slow down a CONNECT, so producers push into a bounded channel and one
//! task writes batches. The queue fills without any login (a CONNECT with a user name and no
//! password is audited), so it is bounded at [`QUEUE_CAPACITY`]: when full, entries are dropped
//! and counted, and the count is logged at most once every [`DROP_REPORT_EVERY`]. Long fields
//! (client ids, user names, topics can be tens of kilobytes) are cut to [`MAX_FIELD_BYTES`]
//! before queueing. At shutdown the task drains the queue before the store closes.
//!
//! Retention: with `[audit] retention_days` set, rows older than that are deleted shortly after
//! start and then every hour, in small batches (see `Store::purge_audit`) so the purge never
//! holds up logins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use porchlight_store::{AuditEntry, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Entries the queue holds before new ones are dropped: a storm of the default
/// `[mqtt] max_connections` (10,000) clients dropping and reconnecting at once is 20,000 rows
/// in well under a second, faster than any writer; with fields cut, ~15 MB for usual rows.
/// (At 10,000, the `scale` bench's 15,000 clients closing at once lost 571 disconnect rows.)
pub(crate) const QUEUE_CAPACITY: usize = 50_000;
/// Longest client id, user name, topic or reason kept in an audit row, in bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 256;
/// Dropped entries are reported in the log at most this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);
/// The first purge runs this long after start, off the busy start-up moment.
const FIRST_PURGE_AFTER: Duration = Duration::from_secs(30);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Cloneable producer side.
#[derive(Debug, Clone)]
pub struct AuditSink {
    /// Bounded queue to the writer task; `try_send` only, so producers never wait.
    tx: mpsc::Sender<AuditEntry>,
    /// Entries dropped because the queue was full, since the last report.
    dropped: Arc<AtomicU64>,
}

/// The writer task, the purge task, and the signal that tells the writer to drain and stop.
pub struct AuditWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// Deletes rows past the retention period; aborted at shutdown (between batches is fine:
    /// each batch is its own transaction).
    purge: Option<JoinHandle<()>>,
}

const BATCH: usize = 1000;

impl AuditSink {
    /// Starts the writer task and, when `retention` is set, the purge task.
    pub fn start(store: Store, retention: Option<Duration>) -> (AuditSink, AuditWriter) {
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(QUEUE_CAPACITY);
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let dropped = Arc::new(AtomicU64::new(0));
        let purge = retention.map(|r| tokio::spawn(purge_loop(store.clone(), r)));
        let counter = Arc::clone(&dropped);
        let task = tokio::spawn(async move {
            let mut report = tokio::time::interval(DROP_REPORT_EVERY);
            report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let first = tokio::select! {
                    entry = rx.recv() => entry,
                    _ = report.tick() => {
                        report_dropped(&counter);
                        continue;
                    }
                    _ = &mut stop_rx => None,
                };
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                write(&store, batch).await;
            }
            // Drain what is left after the stop signal.
            let mut rest = Vec::new();
            while let Ok(e) = rx.try_recv() {
                rest.push(e);
            }
            write(&store, rest).await;
            report_dropped(&counter);
        });
        (AuditSink { tx, dropped }, AuditWriter { stop, task, purge })
    }

    /// Queues an entry with its long fields cut; never blocks. A full queue drops the entry
    /// and counts it.
    pub fn record(&self, mut entry: AuditEntry) {
        for field in [
            &mut entry.client_id,
            &mut entry.username,
            &mut entry.detail,
            &mut entry.peer,
        ] {
            if let Some(text) = field.as_mut() {
                cut(text, MAX_FIELD_BYTES);
            }
        }
        cut(&mut entry.reason, MAX_FIELD_BYTES);
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("audit entry dropped: the audit writer has stopped");
            }
        }
    }
}

impl AuditWriter {
    /// Stops the purge, writes everything queued so far and stops.
    pub async fn finish(self) {
        if let Some(purge) = self.purge {
            purge.abort();
            let _ = purge.await;
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn report_dropped(counter: &AtomicU64) {
    let n = counter.swap(0, Ordering::Relaxed);
    if n > 0 {
        tracing::warn!(
            dropped = n,
            "{n} audit entries dropped: the audit queue was full (a flood of connection attempts?)"
        );
    }
}

async fn write(store: &Store, batch: Vec<AuditEntry>) {
    let n = batch.len();
    if let Err(e) = store.record_audit(batch).await {
        tracing::error!(error = %e, entries = n, "could not write audit entries");
    }
}

async fn purge_loop(store: Store, retention: Duration) {
    tokio::time::sleep(FIRST_PURGE_AFTER).await;
    loop {
        match store.purge_audit(SystemTime::now(), retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old audit rows deleted"),
            Err(e) => tracing::error!(error = %e, "could not delete old audit rows"),
        }
        tokio::time::sleep(PURGE_EVERY).await;
    }
}

/// Cuts `text` to at most `max` bytes (on a character boundary) plus a marker saying how many
/// bytes were cut: `"abc…(+20480 bytes)"`.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let removed = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("…(+{removed} bytes)"));
    text.shrink_to_fit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_on_a_character_boundary_with_a_marker() {
        let mut short = "phone".to_owned();
        cut(&mut short, 8);
        assert_eq!(short, "phone");

        let mut long = "é".repeat(10); // 20 bytes
        cut(&mut long, 5);
        assert_eq!(long, "éé…(+16 bytes)");
    }

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: SystemTime::now(),
            kind: porchlight_store::AuditKind::MqttConnect,
            peer: Some("127.0.0.1:1".into()),
            client_id: Some("c".repeat(20_000)),
            username: Some(format!("user{n}")),
            protocol: Some(4),
            code: Some(5),
            reason: "refused".into(),
            detail: None,
        }
    }

    #[tokio::test]
    async fn a_flood_beyond_the_queue_is_counted_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        let (sink, writer) = AuditSink::start(store.clone(), None);
        // On this single-threaded test runtime the writer task cannot run until the test
        // awaits, so the flood meets a queue nobody drains.
        for n in 0..QUEUE_CAPACITY + 500 {
            sink.record(entry(n));
        }
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 500);
        writer.finish().await;
        let rows = store
            .audit_page(u32::MAX, None, Default::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), QUEUE_CAPACITY);
        store.close().await;
    }

    #[tokio::test]
    async fn queued_entries_are_written_with_their_fields_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        let (sink, writer) = AuditSink::start(store.clone(), None);
        sink.record(entry(1));
        writer.finish().await;
        let rows = store
            .audit_page(10, None, Default::default())
            .await
            .unwrap();
        let client_id = rows[0].client_id.as_deref().unwrap();
        assert!(
            client_id.len() < MAX_FIELD_BYTES + 32,
            "{}",
            client_id.len()
        );
        assert!(client_id.ends_with("…(+19744 bytes)"), "{client_id}");
        store.close().await;
    }
}
