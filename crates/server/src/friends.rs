//! Friendships as the running server keeps them: one current [`Friendships`] snapshot, read
//! by the HTTP visibility rule (`http/visibility.rs`), the live feed and the broker (through
//! the same `watch` channel), and replaced whole after each change.
//!
//! The store holds the grants; this module only caches them. Every grant or revoke made
//! through the HTTP API reloads before it answers, so when a `DELETE /api/friends/…` returns,
//! the broker, the Recorder API and the WebSocket already hold the new set; a removed user's
//! grants are gone with the next reload (removing a user reloads too), and the revocation
//! sweep reloads every few seconds to pick up changes made by another process.

use std::sync::Arc;

use porchlight_domain::acl::Friendships;
use porchlight_store::Store;
use tokio::sync::{Mutex, watch};

/// The server's current friendships; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Friends {
    store: Store,
    /// The snapshot everybody reads; receivers are told when it changes.
    current: watch::Sender<Arc<Friendships>>,
    /// Serialises reloads, so a slower reload that read older grants never replaces a newer
    /// snapshot.
    reloading: Mutex<()>,
}

impl Friends {
    /// Reads the grants from the store.
    pub async fn load(store: Store) -> Result<Arc<Friends>, porchlight_store::Error> {
        let friendships = Friendships::new(store.grants().await?);
        let (current, _) = watch::channel(Arc::new(friendships));
        Ok(Arc::new(Friends {
            store,
            current,
            reloading: Mutex::new(()),
        }))
    }

    /// The friendships of this moment.
    pub fn snapshot(&self) -> Arc<Friendships> {
        Arc::clone(&self.current.borrow())
    }

    /// A receiver of the current snapshot and of each change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Friendships>> {
        self.current.subscribe()
    }

    /// Re-reads the grants; receivers are notified only if they changed.
    pub async fn reload(&self) -> Result<(), porchlight_store::Error> {
        let _turn = self.reloading.lock().await;
        let fresh = Friendships::new(self.store.grants().await?);
        self.current.send_if_modified(|current| {
            if **current == fresh {
                return false;
            }
            *current = Arc::new(fresh);
            true
        });
        Ok(())
    }

    /// [`Friends::reload`], logging a failure (the previous snapshot stays).
    pub async fn reload_or_log(&self) {
        if let Err(e) = self.reload().await {
            tracing::error!(error = %e, "friendships not reloaded");
        }
    }
}
