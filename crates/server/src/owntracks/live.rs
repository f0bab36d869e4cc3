//! The OwnTracks live feed: what the ingest service **committed**, fanned out in-process to
//! live viewers (the `/ws/live` WebSocket in `http/live.rs`).
//!
//! Choice: the ingest task publishes into a [`tokio::sync::broadcast`] channel after its
//! batch's store job has committed, one [`LiveEvent`] per message the store took as new. The
//! feed does not watch the bus (`Bus::watch_from`) itself: a bus watcher would see points
//! before they are stored, including ones the store then rejects or ingest refuses (wrong
//! user, bad payload, a failed batch), so a UI that shows a live point and later reloads the
//! history could see the point vanish. Committed-only means every point on the feed is in the
//! history; the cost is the commit's latency (one group commit, a few ms), well inside the
//! 100 ms bound. HTTP-mode posts reach the feed the same way as MQTT ones.
//!
//! Lossy, never slowing ingest: `broadcast::Sender::send` never waits; the ring holds the last
//! [`LiveFeed::capacity`] events. A viewer that falls further behind loses only its own
//! events and learns how many it missed (`RecvError::Lagged`), and the HTTP side tells the
//! browser to resync. With no viewer connected, events are dropped at once.
//!
//! Online state: the store marks a device online on a location and offline on an LWT (also
//! when the message is a resend). The feed remembers each device's last reported state and
//! reports a `Status` when a location, an LWT or such a resend changes it (after a restart the
//! first one of a device is reported, even if the state did not change).
//! A resend's location is not shown again.
//!
//! Device ids: the store's outcome names no device id, so the feed looks a device up by user
//! and name once (after the commit, so it exists) and caches it; device ids never change.

use std::collections::HashMap;
use std::sync::Arc;

use porchlight_store::{Card, LocationFields, OwnTracksPayload, Store, Transition};
use tokio::sync::broadcast;

/// Events a lagging viewer may fall behind by before it loses some.
pub const DEFAULT_CAPACITY: usize = 1024;

/// One committed change, as live viewers see it.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// The device's owner.
    pub user_id: i64,
    pub username: String,
    /// The OwnTracks device (`ot_devices` id, as in the API's device lists).
    pub device_id: i64,
    pub device: String,
    pub kind: LiveKind,
}

/// What changed.
#[derive(Debug, Clone)]
pub enum LiveKind {
    Location {
        tst: i64,
        fields: LocationFields,
    },
    Transition {
        tst: i64,
        transition: Transition,
    },
    Card {
        card: Card,
    },
    /// The device went online (a location) or offline (its LWT).
    Status {
        online: bool,
    },
}

/// The feed's sending side (owned by the ingest task) and subscription handle; cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    capacity: usize,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("capacity", &self.capacity)
            .field("viewers", &self.tx.receiver_count())
            .finish()
    }
}

impl LiveFeed {
    pub fn new(capacity: usize) -> LiveFeed {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        LiveFeed { tx, capacity }
    }

    /// A new viewer: every event from now on, lossy (see the module header).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    /// How many events a viewer may fall behind by.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn send(&self, event: LiveEvent) {
        // Err only when nobody watches: nothing to do.
        let _ = self.tx.send(Arc::new(event));
    }
}

/// A committed message the feed may report, taken from the batch before it went to the store.
#[derive(Debug)]
pub(crate) struct Committed {
    pub user_id: i64,
    pub username: String,
    pub device: String,
    pub payload: Option<LivePayload>,
}

/// The part of a message the feed reports.
#[derive(Debug)]
pub(crate) enum LivePayload {
    Location {
        tst: i64,
        fields: LocationFields,
    },
    Transition {
        tst: i64,
        transition: Transition,
    },
    Card(Card),
    Lwt,
    /// A resent location: not shown again, but the store marked its device online.
    Online,
}

impl LivePayload {
    /// What the feed reports of `payload` (`None`: waypoints, dumps, … are not on the feed).
    pub fn of(tst: i64, payload: &OwnTracksPayload) -> Option<LivePayload> {
        Some(match payload {
            OwnTracksPayload::Location(fields) => LivePayload::Location {
                tst,
                fields: fields.clone(),
            },
            OwnTracksPayload::Transition(transition) => LivePayload::Transition {
                tst,
                transition: transition.clone(),
            },
            OwnTracksPayload::Card(card) => LivePayload::Card(card.clone()),
            OwnTracksPayload::Lwt => LivePayload::Lwt,
            _ => return None,
        })
    }

    /// What the feed reports of a resend (already stored): only the online state it implies.
    pub fn resent(self) -> Option<LivePayload> {
        match self {
            LivePayload::Location { .. } | LivePayload::Online => Some(LivePayload::Online),
            LivePayload::Lwt => Some(LivePayload::Lwt),
            _ => None,
        }
    }
}

/// The ingest task's side of the feed: device ids and last reported online states.
pub(crate) struct Publisher {
    feed: LiveFeed,
    store: Store,
    /// (user id, device name) → device id.
    devices: HashMap<(i64, String), i64>,
    /// Device id → the online state last reported.
    online: HashMap<i64, bool>,
}

impl Publisher {
    pub fn new(feed: LiveFeed, store: Store) -> Publisher {
        Publisher {
            feed,
            store,
            devices: HashMap::new(),
            online: HashMap::new(),
        }
    }

    /// Reports the committed messages of one batch, in order (resends as
    /// [`LivePayload::resent`]). Call after the commit.
    pub async fn publish(&mut self, committed: Vec<Committed>) {
        for c in committed {
            let Some(payload) = c.payload else { continue };
            let Some(device_id) = self.device_id(c.user_id, &c.device).await else {
                continue;
            };
            let event = |kind| LiveEvent {
                user_id: c.user_id,
                username: c.username.clone(),
                device_id,
                device: c.device.clone(),
                kind,
            };
            match payload {
                LivePayload::Location { tst, fields } => {
                    if self.online.insert(device_id, true) != Some(true) {
                        self.feed.send(event(LiveKind::Status { online: true }));
                    }
                    self.feed.send(event(LiveKind::Location { tst, fields }));
                }
                LivePayload::Online => {
                    if self.online.insert(device_id, true) != Some(true) {
                        self.feed.send(event(LiveKind::Status { online: true }));
                    }
                }
                LivePayload::Transition { tst, transition } => {
                    self.feed
                        .send(event(LiveKind::Transition { tst, transition }));
                }
                LivePayload::Card(card) => self.feed.send(event(LiveKind::Card { card })),
                LivePayload::Lwt => {
                    if self.online.insert(device_id, false) != Some(false) {
                        self.feed.send(event(LiveKind::Status { online: false }));
                    }
                }
            }
        }
    }

    /// The device's id, from the cache or the store (`None` if the store cannot answer: the
    /// event is left out and logged).
    async fn device_id(&mut self, user_id: i64, device: &str) -> Option<i64> {
        if let Some(id) = self.devices.get(&(user_id, device.to_owned())) {
            return Some(*id);
        }
        match self.store.find_owntracks_device(user_id, device).await {
            Ok(Some(d)) => {
                self.devices.insert((user_id, device.to_owned()), d.id);
                Some(d.id)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "live feed: looking up a device failed; event left out");
                None
            }
        }
    }
}
