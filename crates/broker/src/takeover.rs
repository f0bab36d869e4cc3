//! Serializes CONNECT handshakes that use the same client id.
//!
//! rmqtt 0.24.0 takes a per-client-id lock with `try_lock` after authentication and answers
//! CONNACK 3 ("server unavailable") when it is held, i.e. whenever two CONNECTs with one client
//! id overlap, for instance a phone reconnecting while the broker still kicks its previous
//! connection (measured: about 1 in 8 concurrent pairs refused). We therefore queue such
//! handshakes ourselves in the authentication hook: a handshake waits for its predecessor to
//! finish (released by the `ClientConnack` hook, or by a timer when rmqtt refuses after
//! authentication without telling any hook), then waits for rmqtt's own lock to be free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::types::Id;
use tokio::sync::OwnedMutexGuard;
use tokio::time::{Instant, sleep};

/// Longest a handshake waits for a predecessor with the same client id; rmqtt's kick of an
/// old session gives up after 5 s.
const WAIT: Duration = Duration::from_secs(8);
/// A turn not released by `ClientConnack` within this time is released anyway.
const HOLD_LIMIT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct Takeovers {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    held: Arc<Mutex<HashMap<Id, OwnedMutexGuard<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Takeovers {
    /// Wait for this connection's turn among CONNECTs with its client id. Returns false if
    /// the turn did not come within the wait limit (the handshake then proceeds and may get
    /// rmqtt's "server unavailable").
    pub(crate) async fn acquire(&self, scx: &ServerContext, id: &Id) -> bool {
        let client_id = id.client_id.to_string();
        let mutex = {
            let mut locks = lock(&self.locks);
            if locks.len() > 4096 {
                locks.retain(|_, m| Arc::strong_count(m) > 1 || m.try_lock().is_err());
            }
            locks.entry(client_id).or_default().clone()
        };
        let deadline = Instant::now() + WAIT;
        let Ok(guard) = tokio::time::timeout_at(deadline, mutex.lock_owned()).await else {
            tracing::warn!(client_id = %id.client_id, "waited too long for an earlier CONNECT");
            return false;
        };
        // rmqtt keeps its own lock a moment after `ClientConnack`; wait until it is free.
        let probe = scx.extends.shared().await.entry(id.clone());
        loop {
            if probe.try_lock().await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(client_id = %id.client_id, "rmqtt session lock stayed busy");
                break;
            }
            sleep(Duration::from_millis(2)).await;
        }
        tracing::debug!(%id, "CONNECT turn acquired");
        lock(&self.held).insert(id.clone(), guard);
        let held = self.held.clone();
        let id = id.clone();
        tokio::spawn(async move {
            sleep(HOLD_LIMIT).await;
            lock(&held).remove(&id);
        });
        true
    }

    /// The handshake of `id` is over: let the next CONNECT with its client id proceed.
    pub(crate) fn release(&self, id: &Id) {
        let released = lock(&self.held).remove(id).is_some();
        tracing::debug!(%id, released, "CONNECT turn released");
    }
}
