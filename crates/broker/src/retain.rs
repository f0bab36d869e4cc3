//! Retained-message storage, kept in memory and snapshotted to `data_dir/retained.json`.
//!
//! rmqtt's default `RetainStorage` is disabled (`enable()` is false and `set` only logs a
//! warning); its standalone replacement is the `rmqtt-retainer` plugin. We install this small
//! store on top of rmqtt's own in-memory `DefaultRetainStorage` tree instead.
//!
//! rmqtt passes every client publish the listener's default message expiry (5 minutes) unless
//! the client set an MQTT 5 message-expiry property; a home hub's retained messages (Home
//! Assistant discovery, alarm state, last OwnTracks location) must outlive that, so only an
//! explicit property counts.
//!
//! Persistence (see docs/adr/0005-retained-messages-durability.md): a change is written
//! [`FLUSH_DELAY`] after it happens (changes in between share the write), and at shutdown. A
//! write is crash-safe: the whole set goes to `retained.json.tmp`, which is fsynced, the current
//! file becomes `retained.json.bak`, the new one is renamed into place and the directory is
//! fsynced. At open, an unreadable, torn or empty `retained.json` is never trusted and never
//! overwritten with an empty set: it is kept aside as `retained.json.corrupt-<unix time>` and
//! the set is loaded from `retained.json.bak`. The file format is our own (not rmqtt's types),
//! so an rmqtt upgrade does not break it. MQTT 5 properties of retained messages are not
//! persisted.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rmqtt::Result;
use rmqtt::codec::types::QoS;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{
    ClientId, CodecPublish, From, Id, Publish, Retain, TopicFilter, TopicName, UserName,
};
use rmqtt::utils::timestamp_millis;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Time from a change to its write: long enough to share one write among a burst (Home
/// Assistant publishes its discovery messages together), short enough that a message
/// published half a second before a crash is on disk.
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(200);
/// Pause before retrying a failed write (a full disk should not make a busy loop).
const RETRY_DELAY: Duration = Duration::from_secs(5);
const FILE_NAME: &str = "retained.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    client_id: String,
    username: Option<String>,
    /// Unix milliseconds; `None` never expires.
    expires_at: Option<u64>,
}

pub(crate) struct Retainer {
    inner: DefaultRetainStorage,
    /// Set by every change, cleared by the write that includes it.
    dirty: AtomicBool,
    /// Wakes the flusher after a change.
    changed: Notify,
    /// Ends the flusher (a permit is kept if it is busy writing, so the signal is not lost).
    stop: Notify,
    /// False when the file on disk could not be read nor moved aside: then it is never
    /// overwritten, and changes live in memory only (logged at open).
    persist: AtomicBool,
    /// Held while the files are being replaced, so two writes never interleave (a flush that
    /// was aborted mid-write keeps running on its blocking thread).
    files: Arc<Mutex<()>>,
    path: PathBuf,
}

/// The handle rmqtt owns; the broker keeps another for flushing.
pub(crate) struct Shared(pub(crate) Arc<Retainer>);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a snapshot file holds.
enum Snapshot {
    Missing,
    Good(Vec<Stored>),
    /// Unreadable, empty, torn or not our format; the reason.
    Bad(String),
}

fn read_snapshot(path: &Path) -> Snapshot {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Snapshot::Missing,
        Err(e) => return Snapshot::Bad(e.to_string()),
    };
    if bytes.is_empty() {
        return Snapshot::Bad("the file is empty".into());
    }
    match serde_json::from_slice(&bytes) {
        Ok(stored) => Snapshot::Good(stored),
        Err(e) => Snapshot::Bad(e.to_string()),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The set to start from, and whether the main file may be replaced later.
struct Loaded {
    stored: Vec<Stored>,
    /// The set came from the backup: write it back as the main file soon.
    from_backup: bool,
    persist: bool,
}

/// Picks the snapshot to load: `retained.json`, or when it is missing or bad the backup. A bad
/// main file is moved aside first, so nothing written later can replace it.
fn choose_snapshot(path: &Path) -> Loaded {
    let bak = with_suffix(path, ".bak");
    let mut persist = true;
    match read_snapshot(path) {
        Snapshot::Good(stored) => {
            return Loaded {
                stored,
                from_backup: false,
                persist,
            };
        }
        Snapshot::Missing => {}
        Snapshot::Bad(why) => {
            let aside = with_suffix(path, &format!(".corrupt-{}", now_ms() / 1000));
            match std::fs::rename(path, &aside) {
                Ok(()) => tracing::error!(
                    path = %path.display(), reason = %why, kept_as = %aside.display(),
                    "retained messages file unreadable; kept it aside, loading the previous copy"
                ),
                Err(e) => {
                    persist = false;
                    tracing::error!(
                        path = %path.display(), reason = %why, error = %e,
                        "retained messages file unreadable and cannot be moved aside; \
                         retained messages will not be saved until it is fixed"
                    );
                }
            }
        }
    }
    match read_snapshot(&bak) {
        Snapshot::Good(stored) => Loaded {
            stored,
            from_backup: true,
            persist,
        },
        Snapshot::Missing => Loaded {
            stored: Vec::new(),
            from_backup: false,
            persist,
        },
        Snapshot::Bad(why) => {
            tracing::error!(path = %bak.display(), reason = %why, "the retained messages backup is unreadable too");
            Loaded {
                stored: Vec::new(),
                from_backup: false,
                persist,
            }
        }
    }
}

/// Replaces `path` with `json` so that a crash at any moment leaves a good `path` or a good
/// `path.bak` (and the loader falls back to the backup).
fn replace_snapshot(path: &Path, json: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = with_suffix(path, ".tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(json)?;
    file.sync_all()?;
    drop(file);
    match std::fs::rename(path, with_suffix(path, ".bak")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A stored message as rmqtt's types, or `None` when it has expired by `now`.
fn to_retain(s: Stored, now: u64) -> Option<(TopicName, Retain, Option<Duration>)> {
    let ttl = match s.expires_at {
        Some(at) if at <= now => return None,
        Some(at) => Some(Duration::from_millis(at - now)),
        None => None,
    };
    let qos = match s.qos {
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtMostOnce,
    };
    let topic = TopicName::from(s.topic);
    let publish = CodecPublish {
        dup: false,
        retain: true,
        qos,
        topic: topic.clone(),
        packet_id: None,
        payload: Bytes::from(s.payload),
        properties: None,
    };
    let from = From::from_custom(Id::new(
        0,
        0,
        None,
        None,
        ClientId::from(s.client_id),
        s.username.map(UserName::from),
    ));
    let publish = Publish::new(Box::new(publish), None, None, Some(timestamp_millis()));
    let retain = Retain {
        msg_id: None,
        from,
        publish,
    };
    Some((topic, retain, ttl))
}

impl Retainer {
    /// An empty store persisted under `data_dir`, loaded from there if a snapshot exists.
    pub(crate) async fn open(data_dir: PathBuf) -> Arc<Self> {
        let path = data_dir.join(FILE_NAME);
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || choose_snapshot(&path))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "loading retained messages failed");
                    Loaded {
                        stored: Vec::new(),
                        from_backup: false,
                        persist: false,
                    }
                })
        };
        let this = Arc::new(Self {
            inner: DefaultRetainStorage::new(),
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
            stop: Notify::new(),
            persist: AtomicBool::new(loaded.persist),
            files: Arc::new(Mutex::new(())),
            path,
        });
        let now = now_ms();
        let mut count = 0usize;
        for s in loaded.stored {
            let Some((topic, retain, ttl)) = to_retain(s, now) else {
                continue;
            };
            match this.inner.set_with_timeout(&topic, retain, ttl).await {
                Ok(()) => count += 1,
                Err(e) => tracing::warn!(%topic, error = %e, "skipping stored retained message"),
            }
        }
        if loaded.from_backup {
            this.mark_changed();
        }
        tracing::info!(loaded = count, from_backup = loaded.from_backup, path = %this.path.display(), "retained messages loaded");
        this
    }

    fn mark_changed(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Writes changes [`FLUSH_DELAY`] after they happen until [`Retainer::stop_flusher`].
    pub(crate) async fn flush_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = self.stop.notified() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_DELAY) => {}
                _ = self.stop.notified() => return,
            }
            if !self.flush().await {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_DELAY) => self.changed.notify_one(),
                    _ = self.stop.notified() => return,
                }
            }
        }
    }

    /// Makes [`Retainer::flush_loop`] return at its next wait.
    pub(crate) fn stop_flusher(&self) {
        self.stop.notify_one();
    }

    /// Writes the store if it changed since the last write; false if the write failed.
    pub(crate) async fn flush(&self) -> bool {
        if !self.persist.load(Ordering::SeqCst) || !self.dirty.swap(false, Ordering::SeqCst) {
            return true;
        }
        match self.write().await {
            Ok(()) => true,
            Err(e) => {
                self.dirty.store(true, Ordering::SeqCst);
                tracing::warn!(path = %self.path.display(), error = %e, "cannot save retained messages");
                false
            }
        }
    }

    async fn write(&self) -> std::result::Result<(), String> {
        let (all, _) = self
            .inner
            .get_all_paginated(0, usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        let stored: Vec<Stored> = all
            .into_iter()
            .map(|(topic, r, ttl)| Stored {
                topic: topic.to_string(),
                payload: r.publish.payload.to_vec(),
                qos: r.publish.qos.value(),
                client_id: r.from.id.client_id.to_string(),
                username: r.from.id.username.as_ref().map(|u| u.to_string()),
                expires_at: ttl
                    .map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            })
            .collect();
        let json = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
        let path = self.path.clone();
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            let _only_writer = files.lock().unwrap_or_else(|p| p.into_inner());
            replace_snapshot(&path, &json)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl RetainStorage for Shared {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        _expiry: Option<Duration>,
    ) -> Result<()> {
        let explicit = retain
            .publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .map(|secs| Duration::from_secs(u64::from(secs.get())));
        self.0
            .inner
            .set_with_timeout(topic, retain, explicit)
            .await?;
        self.0.mark_changed();
        Ok(())
    }

    async fn get(&self, topic_filter: &TopicFilter) -> Result<Vec<(TopicName, Retain)>> {
        self.0.inner.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.0.inner.count().await
    }

    async fn max(&self) -> isize {
        self.0.inner.max().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(r: &Arc<Retainer>, topic: &str, payload: &str) {
        let stored = Stored {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            qos: 1,
            client_id: "test".into(),
            username: None,
            expires_at: None,
        };
        let (topic, retain, _) = to_retain(stored, now_ms()).unwrap();
        Shared(r.clone()).set(&topic, retain, None).await.unwrap();
    }

    async fn topics(r: &Retainer) -> Vec<String> {
        let (all, _) = r.inner.get_all_paginated(0, usize::MAX).await.unwrap();
        let mut topics: Vec<String> = all.into_iter().map(|(t, _, _)| t.to_string()).collect();
        topics.sort();
        topics
    }

    fn aside(dir: &Path) -> Vec<Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    }

    /// A data dir whose `retained.json` holds `a` and `b` and whose backup holds `a`.
    async fn two_flushes() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let r = Retainer::open(dir.path().to_owned()).await;
        put(&r, "home/a", "1").await;
        assert!(r.flush().await);
        put(&r, "home/b", "2").await;
        assert!(r.flush().await);
        let main = dir.path().join(FILE_NAME);
        (dir, main)
    }

    #[tokio::test]
    async fn a_torn_file_loads_the_backup_and_the_next_flush_keeps_that_set() {
        let (dir, main) = two_flushes().await;
        let full = std::fs::read(&main).unwrap();
        std::fs::write(&main, &full[..full.len() / 2]).unwrap();

        let r = Retainer::open(dir.path().to_owned()).await;
        assert_eq!(topics(&r).await, ["home/a"]);
        assert_eq!(aside(dir.path()), [full[..full.len() / 2].to_vec()]);
        assert!(r.flush().await);
        drop(r);
        let r = Retainer::open(dir.path().to_owned()).await;
        assert_eq!(topics(&r).await, ["home/a"]);
        // A later change is added to that set, not to an empty one.
        put(&r, "home/c", "3").await;
        assert!(r.flush().await);
        let r = Retainer::open(dir.path().to_owned()).await;
        assert_eq!(topics(&r).await, ["home/a", "home/c"]);
    }

    #[tokio::test]
    async fn an_empty_file_wipes_nothing() {
        let (dir, main) = two_flushes().await;
        std::fs::write(&main, b"").unwrap();
        let r = Retainer::open(dir.path().to_owned()).await;
        assert_eq!(topics(&r).await, ["home/a"]);
    }

    #[tokio::test]
    async fn garbage_without_a_backup_is_kept_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join(FILE_NAME);
        std::fs::write(&main, b"{not json").unwrap();
        let r = Retainer::open(dir.path().to_owned()).await;
        assert!(topics(&r).await.is_empty());
        put(&r, "home/new", "1").await;
        assert!(r.flush().await);
        assert_eq!(aside(dir.path()), [b"{not json".to_vec()]);
        let r = Retainer::open(dir.path().to_owned()).await;
        assert_eq!(topics(&r).await, ["home/new"]);
    }

    #[tokio::test]
    async fn a_change_is_on_disk_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retainer::open(dir.path().to_owned()).await;
        let flusher = tokio::spawn(r.clone().flush_loop());
        put(&r, "home/a", "1").await;
        // The bound: a message published a second before a crash survives it.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let on_disk = Retainer::open(dir.path().to_owned()).await;
        assert_eq!(topics(&on_disk).await, ["home/a"]);
        r.stop_flusher();
        flusher.await.unwrap();
    }

    /// The numbers in docs/adr/0005: `cargo test -p porchlight-broker --release --lib
    /// flush_cost -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn flush_cost_of_1000_retained_messages() {
        let dir = tempfile::tempdir().unwrap();
        let r = Retainer::open(dir.path().to_owned()).await;
        let payload = "x".repeat(200);
        for i in 0..1000 {
            put(&r, &format!("homeassistant/sensor/s{i}/config"), &payload).await;
        }
        let mut times = Vec::new();
        for _ in 0..20 {
            r.dirty.store(true, Ordering::SeqCst);
            let t = std::time::Instant::now();
            assert!(r.flush().await);
            times.push(t.elapsed());
        }
        times.sort();
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        println!(
            "1000 retained messages, {size} bytes: median flush {:?}, max {:?}",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
}
