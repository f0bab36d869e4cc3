//! Counting "too many connections" refusals into a few audit events.
//!
//! rmqtt 0.24.0 refuses a CONNECT beyond `mqtt_max_sessions` before any authentication hook
//! runs, and tells no hook about it. The `ClientConnect` hook, which runs just before that
//! check, applies the same test (see `HookHandler::over_session_limit`) and counts the
//! refusal here. A flood must not become one audit row per attempt: the first refusal is
//! recorded at once, later ones are summed and recorded at most once per
//! [`REFUSAL_SUMMARY_EVERY`] (and at shutdown).
//!
//! Not counted: connections rmqtt-net refuses when more than `max_connections` handshakes are
//! queued at once (its handshake executor never runs any hook for them).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use crate::{AuditEvent, Gatekeeper, REFUSAL_SUMMARY_EVERY};

#[derive(Default)]
struct Tally {
    /// Refusals not yet recorded.
    pending: u64,
    /// Peer of the last pending refusal.
    last_peer: Option<SocketAddr>,
    /// A summary task is running (a refusal was recorded less than one interval ago).
    summarizing: bool,
}

pub(crate) struct Refusals {
    gatekeeper: Arc<dyn Gatekeeper>,
    limit: usize,
    every: Duration,
    tally: Mutex<Tally>,
}

impl Refusals {
    pub(crate) fn new(gatekeeper: Arc<dyn Gatekeeper>, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            gatekeeper,
            limit,
            every: REFUSAL_SUMMARY_EVERY,
            tally: Mutex::new(Tally::default()),
        })
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one refusal of a connection from `peer`.
    pub(crate) fn note(self: &Arc<Self>, peer: SocketAddr) {
        let first = {
            let mut tally = self.tally();
            tally.pending += 1;
            tally.last_peer = Some(peer);
            !std::mem::replace(&mut tally.summarizing, true)
        };
        if !first {
            return;
        }
        tracing::warn!(%peer, limit = self.limit, "MQTT connection refused: too many connections");
        self.flush();
        // The task holds only a weak reference: a dropped broker ends it.
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                let idle = {
                    let mut tally = this.tally();
                    if tally.pending == 0 {
                        tally.summarizing = false;
                    }
                    !tally.summarizing
                };
                if idle {
                    return;
                }
                this.flush();
            }
        });
    }

    /// Record the refusals counted so far, if any.
    pub(crate) fn flush(&self) {
        let (count, peer) = {
            let mut tally = self.tally();
            (std::mem::take(&mut tally.pending), tally.last_peer.take())
        };
        let Some(last_peer) = peer.filter(|_| count > 0) else {
            return;
        };
        if count > 1 {
            tracing::warn!(count, limit = self.limit, %last_peer, "MQTT connections refused: too many connections");
        }
        self.gatekeeper.record(AuditEvent::ConnectionsRefused {
            at: SystemTime::now(),
            count,
            limit: self.limit,
            last_peer,
        });
    }
}
