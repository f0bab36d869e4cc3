//! The OwnTracks ingest service: phones' publishes on `owntracks/#`, from the in-process bus
//! into the store, each QoS 1/2 publish acknowledged only after its batch is committed.
//!
//! One task reads [`Bus::consume_acked`] deliveries (client publishes and wills). It takes what
//! is queued (up to [`IngestConfig::max_batch`]; no timed window: while batches are being
//! written, the next one queues up, so batches grow with load and a lone point is written at
//! once, well within the 50 ms bound for QoS 0), checks and parses each message, writes the
//! batch with **one** [`Store::ingest_owntracks`] call, and then commits every ack of the
//! batch. Up to [`PIPELINE`] batches are in the store at once (one written while the previous
//! one is flushed to disk); they are answered in the order they were taken. If the store call fails, the acks fail: the broker closes those connections without
//! acknowledging and the phones resend (the store deduplicates, so that is safe).
//!
//! Rules per message, in order:
//! - a zero-length payload (clearing a retained message) is ignored;
//! - the topic must be an OwnTracks topic whose user is the authenticated user (also for
//!   admins: an admin publishing as someone else is rejected here even though the broker's ACL
//!   lets it through);
//! - a device-key login may publish only as its own device name. The identity carries the
//!   device id, not its name: the service looks the names of a user's devices up on the first
//!   miss and caches them by device id (device names never change; a deleted device's id could
//!   in principle be reused by SQLite for a later device, which would then be held to the
//!   deleted device's name until the next restart: fail-closed);
//! - the payload must parse (`porchlight_domain::owntracks::open_payload`). An `encrypted`
//!   payload is opened with the passphrase stored for the topic's user and device
//!   (`Store::owntracks_key`, looked up only for encrypted payloads, once per device and
//!   batch, so a key set or removed over the API counts from the next batch) and the message
//!   inside is handled like a plain one (its decrypted JSON is what is stored). No key:
//!   rejected as `no_key`; a wrong key (or altered data): `wrong_key`. The key itself is never
//!   logged.
//!
//! A rejected message is acknowledged (committed: it was handled, and failing it would make
//! the phone resend it forever), counted by reason and logged with its topic at warn level,
//! rate-limited. A bad message never delays the next one beyond its own batch.
//!
//! Configuration dumps are stored redacted (`raw_json_redacted`): device passwords and keys
//! never reach the database. `cmd` messages (to a phone, not from it) are ignored.
//!
//! HTTP mode (`POST /pub`) goes through the same task and rules: [`Submitter::submit`] hands
//! one message with the poster's identity and the user/device it posts as, and returns once it
//! is committed (or rejected), so the HTTP side answers 2xx only after the commit.
//!
//! What a batch stored as new is then reported, in order, to the live feed ([`super::live`],
//! [`Ingest::live`]): only committed messages, and never waiting for a viewer.
//!
//! A device the service has not met since the process started gets its stored card retained
//! on its `…/info` topic when the broker has none there (in the background, once per device
//! and process): a new phone that inherited its user's card in the store
//! (`Store::ingest_owntracks`) shows it to subscribers at once, not only after a restart.
//!
//! Stopping: [`Ingest::stop`] after the broker has shut down. The broker's shutdown kicks
//! sessions that may be waiting in the publish hook for an ack; the service keeps answering
//! them until then. On stop it closes its receiver, writes what is still queued, and ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesOrdered;

use porchlight_broker::{Ack, Bus, Bytes, Delivery, Identity, LoginMethod, Origins};
use porchlight_domain::owntracks::{
    Body, CryptoError, Message, OwnTracksTopic, Parsed, PayloadError, SecretKey, TopicKind,
    TransitionEvent, open_payload,
};
use porchlight_store::{
    Card, IngestOutcome, LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher,
    Store, Transition, Waypoint,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::live::{Committed, LiveFeed, LivePayload, Publisher};

/// What the service consumes.
pub const FILTER: &str = "owntracks/#";

/// Batches in the store at once. The store answers a batch only once its commit is flushed to
/// disk, which a syncer thread does beside the writer (ADR 0016); with two batches handed
/// over, the writer writes one while the other is being flushed.
const PIPELINE: usize = 2;

/// One batch in the store: what answers it, and the store's outcome per message.
type StoreCall =
    Pin<Box<dyn Future<Output = (Checked, porchlight_store::Result<Vec<IngestOutcome>>)> + Send>>;

/// A checked batch waiting for the store: who to answer, and what to show live once committed.
struct Checked {
    now: SystemTime,
    waiting: Vec<(Reply, String)>,
    live: Vec<Committed>,
}

/// The service's knobs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Most messages written in one store job.
    pub max_batch: usize,
    /// Room in the bus receiver; a full receiver slows publishers (backpressure).
    pub queue: usize,
    /// Events a live viewer may fall behind by before it loses some ([`super::live`]).
    pub live_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_batch: 500,
            queue: 2048,
            live_capacity: super::live::DEFAULT_CAPACITY,
        }
    }
}

/// The running ingest service; stop it with [`Ingest::stop`].
pub struct Ingest {
    stats: IngestStats,
    /// HTTP-mode submissions into the task (cloned by the HTTP side).
    submitter: Submitter,
    /// What the service committed, for live viewers.
    live: LiveFeed,
    /// Tells the task to stop taking deliveries, write what is queued and end.
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Attaches to `bus` (when the broker is enabled) and starts the service. Call before the
    /// broker serves its first client, so no publish is missed.
    pub fn start(store: Store, bus: Option<&Arc<dyn Bus>>, config: IngestConfig) -> Ingest {
        let stats = IngestStats::default();
        let rx = bus.map(|bus| bus.consume_acked(FILTER, config.queue, Origins::CLIENTS));
        let (submit_tx, submit_rx) = mpsc::channel(config.queue.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let live = LiveFeed::new(config.live_capacity);
        let worker = Worker {
            live: Publisher::new(live.clone(), store.clone()),
            bus: bus.cloned(),
            cards_checked: HashMap::new(),
            store,
            stats: stats.clone(),
            max_batch: config.max_batch.max(1),
            device_names: HashMap::new(),
            keys: HashMap::new(),
            warnings: WarnLimit::new(),
        };
        let task = tokio::spawn(worker.run(rx, submit_rx, stop_rx));
        Ingest {
            stats,
            submitter: Submitter { tx: submit_tx },
            live,
            stop,
            task,
        }
    }

    /// The HTTP side's way in (HTTP mode, `POST /pub`).
    pub fn submitter(&self) -> Submitter {
        self.submitter.clone()
    }

    /// The live feed of what the service commits.
    pub fn live(&self) -> LiveFeed {
        self.live.clone()
    }

    /// The service's counters (a cheap handle that stays valid after [`Ingest::stop`]).
    pub fn stats(&self) -> IngestStats {
        self.stats.clone()
    }

    /// Stops taking deliveries, writes and answers what is queued, and ends. Call after the
    /// broker has shut down.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the OwnTracks ingest task failed");
        }
    }
}

/// Hands HTTP-mode messages to the ingest task; cheap to clone.
#[derive(Clone)]
pub struct Submitter {
    tx: mpsc::Sender<Submission>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter").finish_non_exhaustive()
    }
}

/// One HTTP-mode message.
struct Submission {
    identity: Identity,
    user: String,
    device: String,
    payload: Bytes,
    reply: oneshot::Sender<Result<Submitted, SubmitError>>,
}

/// What became of a submitted message (all committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Stored,
    /// Already stored: a resend.
    Duplicate,
    /// Nothing to store (an empty body, a `cmd`).
    Ignored,
}

/// Why a submitted message is not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Checked and refused for good; resending will not help.
    #[error("{detail}")]
    Rejected {
        /// The counter's key (`wrong_user`, `wrong_device`, `invalid_json`, …).
        reason: &'static str,
        detail: String,
    },
    /// Not stored this time (the store failed, or the service is stopping): send it again.
    #[error("not stored: {0}")]
    NotStored(String),
}

impl SubmitError {
    /// Whether the poster may not post as this user/device (else the payload is bad).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            SubmitError::Rejected {
                reason: "wrong_user" | "wrong_device" | "unknown_device",
                ..
            }
        )
    }
}

impl Submitter {
    /// Checks and stores one message posted by `identity` as `user`'s `device`, with the same
    /// rules as MQTT; returns once it is committed (or rejected).
    pub async fn submit(
        &self,
        identity: Identity,
        user: &str,
        device: &str,
        payload: Bytes,
    ) -> Result<Submitted, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            identity,
            user: user.to_owned(),
            device: device.to_owned(),
            payload,
            reply,
        };
        let stopped = || SubmitError::NotStored("the ingest service is stopping".into());
        self.tx.send(submission).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Shared counters of the ingest service.
#[derive(Clone, Default)]
pub struct IngestStats(Arc<Counters>);

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    ignored: AtomicU64,
    store_failures: AtomicU64,
    /// Only touched for rejected messages.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of [`IngestStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestCounts {
    /// Messages taken from the bus.
    pub received: u64,
    /// Messages stored as new.
    pub stored: u64,
    /// Resends of messages already stored.
    pub duplicates: u64,
    /// Zero-length payloads and `cmd` messages: accepted, nothing to store.
    pub ignored: u64,
    /// Messages whose batch the store could not write (their publishes were refused).
    pub store_failures: u64,
    /// Rejected messages by reason (`wrong_user`, `wrong_device`, `invalid_json`, …).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl IngestStats {
    pub fn snapshot(&self) -> IngestCounts {
        let c = &self.0;
        IngestCounts {
            received: c.received.load(Ordering::Relaxed),
            stored: c.stored.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            store_failures: c.store_failures.load(Ordering::Relaxed),
            rejected: c.rejected.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn reject(&self, reason: &'static str) {
        let mut map = self.0.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_default() += 1;
    }
}

/// Why a message is not stored.
#[derive(Debug)]
struct Rejection {
    /// Stable short name, the counter's key.
    reason: &'static str,
    /// For the log line.
    detail: String,
}

impl Rejection {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<PayloadError> for Rejection {
    fn from(e: PayloadError) -> Self {
        let detail = match e {
            PayloadError::NoKey => "no decryption key configured".to_owned(),
            ref other => other.to_string(),
        };
        let reason = match e {
            PayloadError::Crypto(CryptoError::WrongKeyOrTampered) => "wrong_key",
            ref other => other.reason(),
        };
        Rejection::new(reason, detail)
    }
}

/// Whoever waits for the outcome of one message.
enum Reply {
    /// The broker, for an MQTT publish: committed or refused.
    Mqtt(Ack),
    /// An HTTP request.
    Http(oneshot::Sender<Result<Submitted, SubmitError>>),
}

impl Reply {
    fn send(self, result: Result<Submitted, SubmitError>) {
        match self {
            // A rejection is handled too: acknowledged, so the phone does not resend it.
            Reply::Mqtt(ack) => match result {
                Ok(_) | Err(SubmitError::Rejected { .. }) => ack.commit(),
                Err(SubmitError::NotStored(reason)) => ack.fail(reason),
            },
            // Fails only when the request was abandoned.
            Reply::Http(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// One message of a batch, from either way in.
struct Pending {
    identity: Option<Arc<Identity>>,
    /// The MQTT topic, or `http:<user>/<device>`; for log lines.
    label: String,
    /// What the message claims: the topic's user, device and kind (`None` for HTTP).
    target: Result<(String, String, Option<TopicKind>), Rejection>,
    payload: Bytes,
    reply: Reply,
}

impl Pending {
    fn from_delivery(Delivery { inbound, ack }: Delivery) -> Pending {
        let target = OwnTracksTopic::parse(&inbound.topic)
            .map(|t| (t.user().to_owned(), t.device().to_owned(), Some(t.kind())))
            .map_err(|e| Rejection::new("topic", e.to_string()));
        Pending {
            identity: inbound.identity,
            label: inbound.topic,
            target,
            payload: inbound.payload,
            reply: Reply::Mqtt(ack),
        }
    }

    fn from_submission(s: Submission) -> Pending {
        let target = OwnTracksTopic::new(&s.user, &s.device, TopicKind::Device)
            .map(|_| (s.user.clone(), s.device.clone(), None))
            .map_err(|e| Rejection::new("topic", e.to_string()));
        Pending {
            identity: Some(Arc::new(s.identity)),
            label: format!("http:{}/{}", s.user, s.device),
            target,
            payload: s.payload,
            reply: Reply::Http(s.reply),
        }
    }
}

/// What to do with one delivery.
// One value per message, moved straight into the batch: boxing would cost an allocation per
// point for no gain.
#[allow(clippy::large_enum_variant)]
enum Verdict {
    Store(OwnTracksMessage),
    /// Accepted, nothing to store.
    Ignore,
    Reject(Rejection),
    /// Not handled (e.g. the store could not be read): refuse the publish so it is resent.
    Fail(String),
}

/// Logs at most [`WarnLimit::PER_WINDOW`] rejections per [`WarnLimit::WINDOW`], then says how
/// many it left out: a flood of bad messages must not flood the log.
struct WarnLimit {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl WarnLimit {
    const WINDOW: Duration = Duration::from_secs(10);
    const PER_WINDOW: u32 = 20;

    fn new() -> Self {
        WarnLimit {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Self::WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    count = self.suppressed,
                    "OwnTracks messages rejected without a log line (rate limit)"
                );
            }
            self.window_start = now;
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < Self::PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

struct Worker {
    store: Store,
    stats: IngestStats,
    max_batch: usize,
    /// Device id → device name, for device-key logins (re-read per user on a miss or a
    /// mismatch: ids of deleted keys are reused).
    device_names: HashMap<i64, String>,
    /// (user id, device name) → its decryption key, looked up for encrypted payloads and kept
    /// for one batch only (so a key changed over the API counts from the next batch).
    keys: HashMap<(i64, String), Option<SecretKey>>,
    warnings: WarnLimit,
    /// Reports what was committed to live viewers.
    live: Publisher,
    /// Where stored cards are retained for devices met for the first time.
    bus: Option<Arc<dyn Bus>>,
    /// Devices (by user id) whose card was checked since the process started.
    cards_checked: HashMap<i64, HashSet<String>>,
}

impl Worker {
    async fn run(
        mut self,
        mut mqtt: Option<mpsc::Receiver<Delivery>>,
        mut http: mpsc::Receiver<Submission>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut stopping = false;
        let mut http_open = true;
        // Batches handed to the store, answered in the order they were handed over.
        let mut in_flight: FuturesOrdered<StoreCall> = FuturesOrdered::new();
        loop {
            let room = in_flight.len() < PIPELINE;
            let first = tokio::select! {
                // The oldest batch first: its answers free its connections' next publishes.
                biased;
                Some((batch, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.finish(batch, result).await;
                    continue;
                }
                Some(delivery) = recv_mqtt(&mut mqtt), if room => Pending::from_delivery(delivery),
                submission = http.recv(), if http_open && room => match submission {
                    Some(s) => Pending::from_submission(s),
                    None => {
                        http_open = false;
                        continue;
                    }
                },
                _ = &mut stop, if !stopping => {
                    // Nothing new gets in; what is queued is still written and answered.
                    stopping = true;
                    if let Some(rx) = mqtt.as_mut() {
                        rx.close();
                    }
                    http.close();
                    continue;
                }
                else => break,
            };
            let mut batch = vec![first];
            // Take from both ways in by turns, so neither starves the other under load.
            while batch.len() < self.max_batch {
                let mut took = false;
                if let Some(Ok(delivery)) = mqtt.as_mut().map(|rx| rx.try_recv()) {
                    batch.push(Pending::from_delivery(delivery));
                    took = true;
                }
                if batch.len() < self.max_batch
                    && let Ok(submission) = http.try_recv()
                {
                    batch.push(Pending::from_submission(submission));
                    took = true;
                }
                if !took {
                    break;
                }
            }
            if let Some((checked, messages)) = self.check_batch(batch).await {
                let store = self.store.clone();
                let now = checked.now;
                in_flight.push_back(Box::pin(async move {
                    let result = store.ingest_owntracks(messages, now).await;
                    (checked, result)
                }));
            }
        }
        tracing::debug!("OwnTracks ingest stopped");
    }

    /// Checks one batch: answers what is not to be stored at once and returns the rest, to be
    /// stored and then answered by [`Worker::finish`].
    async fn check_batch(
        &mut self,
        batch: Vec<Pending>,
    ) -> Option<(Checked, Vec<OwnTracksMessage>)> {
        let now = SystemTime::now();
        self.keys.clear();
        IngestStats::add(&self.stats.0.received, batch.len() as u64);
        let mut messages = Vec::with_capacity(batch.len());
        let mut waiting: Vec<(Reply, String)> = Vec::with_capacity(batch.len());
        let mut live = Vec::with_capacity(batch.len());
        for pending in batch {
            match self.check(&pending, now).await {
                Verdict::Store(message) => {
                    live.push(Committed {
                        user_id: message.publisher.user_id,
                        username: pending
                            .identity
                            .as_deref()
                            .map(|i| i.username.clone())
                            .unwrap_or_default(),
                        device: message.publisher.device.clone(),
                        payload: LivePayload::of(message.tst, &message.payload),
                    });
                    messages.push(message);
                    waiting.push((pending.reply, pending.label));
                }
                Verdict::Ignore => {
                    IngestStats::add(&self.stats.0.ignored, 1);
                    pending.reply.send(Ok(Submitted::Ignored));
                }
                Verdict::Reject(rejection) => {
                    self.rejected(&pending.label, &rejection);
                    pending.reply.send(Err(SubmitError::Rejected {
                        reason: rejection.reason,
                        detail: rejection.detail,
                    }));
                }
                Verdict::Fail(reason) => {
                    tracing::error!(topic = %pending.label, %reason, "OwnTracks message not handled; refused so that it is sent again");
                    pending.reply.send(Err(SubmitError::NotStored(reason)));
                }
            }
        }
        if messages.is_empty() {
            return None;
        }
        Some((Checked { now, waiting, live }, messages))
    }

    /// Answers a stored batch and reports what it committed to live viewers.
    async fn finish(
        &mut self,
        checked: Checked,
        result: porchlight_store::Result<Vec<IngestOutcome>>,
    ) {
        let Checked { waiting, live, .. } = checked;
        let count = waiting.len() as u64;
        match result {
            Ok(outcomes) => {
                // One outcome per message; a missing one drops its reply, which refuses it.
                let mut feed = Vec::with_capacity(outcomes.len());
                for (((reply, label), outcome), live) in waiting.into_iter().zip(outcomes).zip(live)
                {
                    let result = match outcome {
                        IngestOutcome::New => {
                            feed.push(live);
                            IngestStats::add(&self.stats.0.stored, 1);
                            Ok(Submitted::Stored)
                        }
                        IngestOutcome::Duplicate => {
                            if let Some(payload) = live.payload.and_then(LivePayload::resent) {
                                feed.push(Committed {
                                    payload: Some(payload),
                                    ..live
                                });
                            }
                            IngestStats::add(&self.stats.0.duplicates, 1);
                            Ok(Submitted::Duplicate)
                        }
                        IngestOutcome::Rejected(detail) => {
                            let rejection = Rejection::new("store", detail);
                            self.rejected(&label, &rejection);
                            Err(SubmitError::Rejected {
                                reason: rejection.reason,
                                detail: rejection.detail,
                            })
                        }
                    };
                    reply.send(result);
                }
                // After the answers: the feed shows only what was committed.
                self.retain_new_cards(&feed);
                self.live.publish(feed).await;
            }
            Err(e) => {
                IngestStats::add(&self.stats.0.store_failures, count);
                tracing::error!(error = %e, messages = count, "storing OwnTracks messages failed; they are refused so that they are sent again");
                let reason = format!("storing failed: {e}");
                for (reply, _) in waiting {
                    reply.send(Err(SubmitError::NotStored(reason.clone())));
                }
            }
        }
    }

    /// For each device of `committed` not met before: its stored card, retained on its
    /// `…/info` unless the broker has one there (in the background).
    fn retain_new_cards(&mut self, committed: &[Committed]) {
        let Some(bus) = &self.bus else {
            return;
        };
        let mut first_met = Vec::new();
        for c in committed {
            let devices = self.cards_checked.entry(c.user_id).or_default();
            if !devices.contains(c.device.as_str()) {
                devices.insert(c.device.clone());
                let publisher = OwnTracksPublisher {
                    user_id: c.user_id,
                    device: c.device.clone(),
                };
                first_met.push((c.username.clone(), publisher));
            }
        }
        if first_met.is_empty() {
            return;
        }
        let (store, bus) = (self.store.clone(), Arc::clone(bus));
        tokio::spawn(async move {
            for (username, publisher) in first_met {
                let Ok(topic) = OwnTracksTopic::new(&username, &publisher.device, TopicKind::Info)
                else {
                    continue;
                };
                let device = store
                    .find_owntracks_device(publisher.user_id, &publisher.device)
                    .await;
                let result = match device {
                    Ok(Some(device)) => super::last_known::retain_card(
                        &store,
                        bus.as_ref(),
                        device.id,
                        &topic.to_string(),
                    )
                    .await
                    .map(|_| ()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = result {
                    tracing::warn!(%topic, error = %e, "card of a new device not retained");
                }
            }
        });
    }

    fn rejected(&mut self, topic: &str, rejection: &Rejection) {
        self.stats.reject(rejection.reason);
        if self.warnings.allow() {
            tracing::warn!(topic, reason = rejection.reason, detail = %rejection.detail, "OwnTracks message rejected");
        }
    }

    /// The rules of the module header, for one message.
    async fn check(&mut self, pending: &Pending, now: SystemTime) -> Verdict {
        if pending.payload.is_empty() {
            return Verdict::Ignore;
        }
        let Some(identity) = pending.identity.as_deref() else {
            return Verdict::Reject(Rejection::new("no_identity", "no authenticated publisher"));
        };
        let (user, device, kind) = match &pending.target {
            Ok(target) => target,
            Err(rejection) => {
                return Verdict::Reject(Rejection::new(rejection.reason, rejection.detail.clone()));
            }
        };
        if *user != identity.username {
            return Verdict::Reject(Rejection::new(
                "wrong_user",
                format!(
                    "the topic's user is not the authenticated user {:?}",
                    identity.username
                ),
            ));
        }
        match self.device_allowed(identity, device).await {
            Ok(None) => {}
            Ok(Some(rejection)) => return Verdict::Reject(rejection),
            Err(reason) => return Verdict::Fail(reason),
        }
        let opened = match open_payload(&pending.payload, *kind, None) {
            Err(PayloadError::NoKey) => match self.key(identity.user_id, device).await {
                Ok(Some(key)) => open_payload(&pending.payload, *kind, Some(&key)),
                Ok(None) => Err(PayloadError::NoKey),
                Err(reason) => return Verdict::Fail(reason),
            },
            other => other,
        };
        match opened {
            Ok(Parsed::Empty) => Verdict::Ignore,
            Ok(Parsed::Message(message)) => {
                match to_store(identity.user_id, device, message, now) {
                    Some(message) => Verdict::Store(message),
                    None => Verdict::Ignore,
                }
            }
            Err(e) => Verdict::Reject(e.into()),
        }
    }

    /// The decryption key of `user_id`'s `device`, if one is set (cached for the batch).
    /// `Err` when the store cannot answer.
    async fn key(&mut self, user_id: i64, device: &str) -> Result<Option<SecretKey>, String> {
        let slot = (user_id, device.to_owned());
        if let Some(key) = self.keys.get(&slot) {
            return Ok(key.clone());
        }
        let stored = self
            .store
            .owntracks_key(user_id, device)
            .await
            .map_err(|e| format!("looking up the decryption key: {e}"))?;
        // A stored passphrase is never empty (the store refuses one), so this is `Some`.
        let key = stored.and_then(|p| SecretKey::from_passphrase(p.expose()).ok());
        self.keys.insert(slot, key.clone());
        Ok(key)
    }

    /// A device-key login may publish only as its own device; other logins (password,
    /// certificate) as any device name of their user. `Err` when the store cannot answer.
    async fn device_allowed(
        &mut self,
        identity: &Identity,
        device: &str,
    ) -> Result<Option<Rejection>, String> {
        if identity.login != LoginMethod::DeviceKey {
            return Ok(None);
        }
        let Some(device_id) = identity.device_id else {
            return Ok(Some(Rejection::new(
                "wrong_device",
                "a device-key login without a device",
            )));
        };
        // Re-read the user's keys when this one is unknown or known under another name: a
        // new key may reuse the id of a deleted one (SQLite hands out the highest free rowid
        // again), so a remembered name can be stale.
        if self
            .device_names
            .get(&device_id)
            .is_none_or(|name| name != device)
        {
            self.device_names.remove(&device_id);
            let devices = self
                .store
                .list_devices(Some(identity.user_id))
                .await
                .map_err(|e| format!("looking up the publishing device: {e}"))?;
            for d in devices {
                self.device_names.insert(d.id, d.name);
            }
        }
        Ok(match self.device_names.get(&device_id) {
            Some(name) if name == device => None,
            Some(name) => Some(Rejection::new(
                "wrong_device",
                format!("the device key of {name:?} may publish only as that device"),
            )),
            None => Some(Rejection::new(
                "unknown_device",
                "the publishing device no longer exists",
            )),
        })
    }
}

/// The next delivery from the bus; `None` without a bus or once it is closed.
async fn recv_mqtt(rx: &mut Option<mpsc::Receiver<Delivery>>) -> Option<Delivery> {
    match rx {
        Some(r) => r.recv().await,
        None => None,
    }
}

/// Unix seconds of `now`, for messages that carry no `tst` of their own.
fn unix_secs(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The store's form of a parsed message; `None` for what is not stored (`cmd`).
fn to_store(
    user_id: i64,
    device: &str,
    message: Message,
    now: SystemTime,
) -> Option<OwnTracksMessage> {
    let tst = message.tst().unwrap_or_else(|| unix_secs(now));
    let raw = message.raw_json_redacted();
    let payload = match message.into_body() {
        Body::Location(l) => OwnTracksPayload::Location(LocationFields {
            lat: l.lat,
            lon: l.lon,
            acc: l.acc,
            alt: l.alt,
            vac: l.vac,
            vel: l.vel,
            cog: l.cog,
            batt: l.batt,
            bs: l.bs,
            conn: l.conn,
            trigger: l.trigger,
            tid: l.tid,
        }),
        Body::Transition(t) => OwnTracksPayload::Transition(Transition {
            event: match t.event {
                TransitionEvent::Enter => porchlight_store::TransitionEvent::Enter,
                TransitionEvent::Leave => porchlight_store::TransitionEvent::Leave,
            },
            description: t.desc,
            rid: t.rid,
            wtst: t.wtst,
            lat: Some(t.lat),
            lon: Some(t.lon),
            acc: t.acc,
        }),
        Body::Waypoint(w) => OwnTracksPayload::Waypoint(waypoint(w)),
        Body::Waypoints(ws) => {
            OwnTracksPayload::Waypoints(ws.waypoints.into_iter().map(waypoint).collect())
        }
        Body::Lwt(_) => OwnTracksPayload::Lwt,
        Body::Card(c) => OwnTracksPayload::Card(Card {
            name: c.name,
            face: c.face,
        }),
        Body::Cmd(_) => return None,
        other @ (Body::Status
        | Body::Configuration(_)
        | Body::Steps(_)
        | Body::Beacon(_)
        | Body::Encrypted(_)) => OwnTracksPayload::Other {
            kind: other.message_type().as_str().to_owned(),
        },
    };
    Some(OwnTracksMessage {
        publisher: OwnTracksPublisher {
            user_id,
            device: device.to_owned(),
        },
        tst,
        payload,
        raw,
    })
}

fn waypoint(w: porchlight_domain::owntracks::Waypoint) -> Waypoint {
    Waypoint {
        tst: w.tst,
        description: w.desc,
        lat: w.lat,
        lon: w.lon,
        rad: w.rad.map(|r| r.round() as i64),
        rid: w.rid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> OwnTracksTopic {
        OwnTracksTopic::parse(text).unwrap()
    }

    fn message(payload: &str, kind: &str) -> Message {
        match open_payload(payload.as_bytes(), Some(topic(kind).kind()), None).unwrap() {
            Parsed::Message(m) => m,
            Parsed::Empty => panic!("empty"),
        }
    }

    #[test]
    fn a_configuration_dump_is_stored_without_its_password() {
        let m = message(
            r#"{"_type":"configuration","mode":0,"password":"hunter2-secret","deviceId":"phone"}"#,
            "owntracks/alice/phone/dump",
        );
        let stored = to_store(1, "phone", m, UNIX_EPOCH).unwrap();
        assert!(!stored.raw.contains("hunter2"), "{}", stored.raw);
        assert_eq!(stored.payload.kind(), "configuration");
    }

    #[test]
    fn messages_without_tst_take_the_receipt_time_and_cmd_is_not_stored() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let card = message(r#"{"_type":"card","name":"Alice"}"#, "owntracks/a/p/info");
        let stored = to_store(1, "p", card, now).unwrap();
        assert_eq!(stored.tst, 1_764_000_000);
        let cmd = message(
            r#"{"_type":"cmd","action":"reportLocation"}"#,
            "owntracks/a/p/cmd",
        );
        assert!(to_store(1, "p", cmd, now).is_none());
    }

    #[test]
    fn no_key_is_reported_as_no_decryption_key_configured() {
        let r = Rejection::from(PayloadError::NoKey);
        assert_eq!(r.reason, "no_key");
        assert_eq!(r.detail, "no decryption key configured");
    }

    #[test]
    fn a_wrong_key_has_its_own_reason_and_other_crypto_errors_keep_theirs() {
        let r = Rejection::from(PayloadError::Crypto(CryptoError::WrongKeyOrTampered));
        assert_eq!(r.reason, "wrong_key");
        assert!(r.detail.contains("wrong key"), "{}", r.detail);
        let r = Rejection::from(PayloadError::Crypto(CryptoError::TooShort {
            len: 1,
            min: 40,
        }));
        assert_eq!(r.reason, "crypto");
    }

    #[test]
    fn the_warn_limit_lets_a_burst_through_then_holds_back() {
        let mut limit = WarnLimit::new();
        let allowed = (0..100).filter(|_| limit.allow()).count();
        assert_eq!(allowed, WarnLimit::PER_WINDOW as usize);
        assert_eq!(limit.suppressed, 100 - u64::from(WarnLimit::PER_WINDOW));
    }
}
