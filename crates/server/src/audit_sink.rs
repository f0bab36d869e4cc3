//! The audit sink: a non-blocking queue from the broker hooks and HTTP handlers into the store.
//!
//! Recording must never slow down a CONNECT, so producers push into an unbounded channel and
//! one task writes batches. At shutdown the task drains the queue before the store closes.

use porchlight_store::{AuditEntry, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Cloneable producer side.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::UnboundedSender<AuditEntry>,
}

/// The writer task and the signal that tells it to drain and stop.
pub struct AuditWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

const BATCH: usize = 1000;

impl AuditSink {
    pub fn start(store: Store) -> (AuditSink, AuditWriter) {
        let (tx, mut rx) = mpsc::unbounded_channel::<AuditEntry>();
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    entry = rx.recv() => entry,
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
        });
        (AuditSink { tx }, AuditWriter { stop, task })
    }

    /// Queues an entry; never blocks.
    pub fn record(&self, entry: AuditEntry) {
        if self.tx.send(entry).is_err() {
            tracing::warn!("audit entry dropped: the audit writer has stopped");
        }
    }
}

impl AuditWriter {
    /// Writes everything queued so far and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn write(store: &Store, batch: Vec<AuditEntry>) {
    let n = batch.len();
    if let Err(e) = store.record_audit(batch).await {
        tracing::error!(error = %e, entries = n, "could not write audit entries");
    }
}
