//! The location retention service: deletes each user's OwnTracks locations (and transitions)
//! older than their `location_retention_days` (`PUT /api/users/{username}/location-retention`;
//! users without one keep everything).
//!
//! Off the hot path: one task, a first pass [`RetentionConfig::first_after`] the start (not at
//! the busy start-up moment), then every [`RetentionConfig::every`]. Each pass reads the
//! settings afresh and deletes through `Store::purge_user_locations_older_than`, at most
//! [`RetentionConfig::batch`] rows per write job, so ingest and logins interleave with a long
//! purge. A failed pass is logged and retried at the next one.
//!
//! Stopping: [`Retention::stop`] aborts the task; that is safe at any point, as every batch is
//! its own transaction.

use std::time::{Duration, SystemTime};

use porchlight_store::{LOCATION_PURGE_BATCH, Store};
use tokio::task::JoinHandle;

/// The service's knobs.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Delay before the first pass.
    pub first_after: Duration,
    /// Time between passes.
    pub every: Duration,
    /// Most rows one write job deletes.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            first_after: Duration::from_secs(30),
            every: Duration::from_secs(3600),
            batch: LOCATION_PURGE_BATCH,
        }
    }
}

impl RetentionConfig {
    /// Passes every `every` (`[owntracks] retention_check_secs`), the first one after 30 s or
    /// `every`, whichever is sooner.
    pub fn every(every: Duration) -> Self {
        let every = every.max(Duration::from_millis(1));
        RetentionConfig {
            first_after: every.min(RetentionConfig::default().first_after),
            every,
            ..RetentionConfig::default()
        }
    }
}

/// The running service; stop it with [`Retention::stop`].
#[derive(Debug)]
pub struct Retention {
    /// The purge loop; aborted at stop (between or inside a batch: each is a transaction).
    task: JoinHandle<()>,
}

impl Retention {
    /// Starts the purge loop.
    pub fn start(store: Store, config: RetentionConfig) -> Retention {
        Retention {
            task: tokio::spawn(run(store, config)),
        }
    }

    /// Stops the loop (a pass in progress ends after its current batch or at once).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(store: Store, config: RetentionConfig) {
    tokio::time::sleep(config.first_after).await;
    loop {
        pass(&store, SystemTime::now(), config.batch).await;
        tokio::time::sleep(config.every).await;
    }
}

/// One pass over every user with a retention setting.
async fn pass(store: &Store, now: SystemTime, batch: u32) {
    let settings = match store.location_retentions().await {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(error = %e, "location retention: settings not read; next pass later");
            return;
        }
    };
    for (user_id, days) in settings {
        let keep = Duration::from_secs(u64::from(days) * 24 * 3600);
        let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
        match store
            .purge_user_locations_older_than(user_id, cutoff, batch)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(user_id, days, deleted = n, "old locations deleted"),
            Err(e) => {
                tracing::error!(user_id, error = %e, "location retention: purge failed; next pass later");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use porchlight_domain::Role;
    use porchlight_domain::secret::Secret;
    use porchlight_store::{
        LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher,
    };

    use super::*;

    const DAY: u64 = 24 * 3600;

    fn point(user_id: i64, tst: SystemTime) -> OwnTracksMessage {
        let tst = tst
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        OwnTracksMessage {
            publisher: OwnTracksPublisher {
                user_id,
                device: "phone".into(),
            },
            tst,
            payload: OwnTracksPayload::Location(LocationFields {
                lat: 52.0,
                lon: 4.0,
                ..LocationFields::default()
            }),
            raw: format!(r#"{{"_type":"location","lat":52,"lon":4,"tst":{tst}}}"#),
        }
    }

    async fn count(store: &Store, user_id: i64) -> usize {
        let device = store
            .find_owntracks_device(user_id, "phone")
            .await
            .unwrap()
            .unwrap();
        store
            .location_window(device.id, i64::MIN, i64::MAX, u32::MAX)
            .await
            .unwrap()
            .len()
    }

    /// The running service (real SQLite file, real clock, short period): a user with one day
    /// of retention loses their older points, another user keeps theirs.
    #[tokio::test]
    async fn the_service_purges_only_users_with_a_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
        let now = SystemTime::now();
        let mut users = Vec::new();
        for name in ["alice", "bob"] {
            let password = Secret::new(format!("{name} password 1"));
            let user = store
                .create_user(name, Role::User, &password, now)
                .await
                .unwrap();
            let points = [10 * DAY, 2 * DAY, 3600, 0]
                .iter()
                .map(|ago| point(user.id, now - Duration::from_secs(*ago)))
                .collect();
            store.ingest_owntracks(points, now).await.unwrap();
            users.push(user.id);
        }
        let (alice, bob) = (users[0], users[1]);
        store
            .set_location_retention(alice, Some(1), now)
            .await
            .unwrap();

        let service = Retention::start(
            store.clone(),
            RetentionConfig {
                first_after: Duration::ZERO,
                every: Duration::from_millis(20),
                batch: 1,
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count(&store, alice).await != 2 {
            assert!(tokio::time::Instant::now() < deadline, "not purged in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        service.stop().await;
        assert_eq!(count(&store, bob).await, 4);
        store.close().await;
    }

    #[test]
    fn the_first_pass_is_never_later_than_the_period() {
        let c = RetentionConfig::every(Duration::from_secs(5));
        assert_eq!(
            (c.first_after, c.every),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        let c = RetentionConfig::every(Duration::from_secs(3600));
        assert_eq!(c.first_after, Duration::from_secs(30));
    }
}
