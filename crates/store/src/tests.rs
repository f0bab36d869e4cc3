//! Store tests that look inside the file with SQL: they use the crate-private
//! `Store::read`/`Store::write`, which nothing outside this crate may call.

use std::time::SystemTime;

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;

use crate::{Error, LATEST_VERSION, Store};

fn pw(s: &str) -> Secret {
    Secret::new(s)
}

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porchlight.db");
    (dir, path)
}

#[tokio::test]
async fn a_fresh_database_gets_every_migration_and_reopening_changes_nothing() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store
        .create_user(
            "alice",
            Role::User,
            &pw("alice password 1"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    store.close().await;

    let store = Store::open(&path).unwrap();
    let versions = store
        .read(|c| {
            let mut s = c.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
            let v = s
                .query_map([], |r| r.get::<_, u32>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
        .unwrap();
    let known: Vec<u32> = crate::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, known);
    assert_eq!(versions.last(), Some(&LATEST_VERSION));
    assert_eq!(
        store.user_count().await.unwrap(),
        1,
        "reopening must keep data"
    );
    let mode = store
        .read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))?))
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_strings_only() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store
        .create_user(
            "alice",
            Role::User,
            &pw("alice password 1"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let stored: String = store
        .read(|c| Ok(c.query_row("SELECT password_hash FROM users", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("alice password"));
}

#[tokio::test]
async fn api_tokens_are_stored_hashed() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let alice = store
        .create_user(
            "alice",
            Role::User,
            &pw("alice password 1"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let (_, token) = store
        .create_api_token(alice.id, "backup script", SystemTime::now())
        .await
        .unwrap();
    let stored: String = store
        .read(|c| Ok(c.query_row("SELECT token_hash FROM api_tokens", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(!stored.contains(token.expose()));
    assert!(
        store
            .api_token_user(token.expose(), SystemTime::now())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn concurrent_writers_all_land_and_a_failing_job_does_not_undo_its_batch() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let mut tasks = Vec::new();
    for i in 0..500i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |c| {
                    if i % 50 == 7 {
                        c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                    }
                    c.execute(
                        "INSERT INTO audit (at, kind, reason) VALUES (?1, 'mqtt_connect', 'x')",
                        [i],
                    )?;
                    Ok(())
                })
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 490);
    let rows: i64 = store
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(rows, 490);
    store.close().await;
    assert!(matches!(store.write(|_| Ok(())).await, Err(Error::Closed)));
}

#[tokio::test]
async fn a_panicking_write_job_fails_alone_and_the_store_stays_healthy() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let result: Result<(), Error> = store
        .write(|_| -> crate::Result<()> { panic!("a bug in a store method") })
        .await;
    assert!(matches!(result, Err(Error::JobPanicked(_))), "{result:?}");
    assert!(store.is_healthy().await);
    store
        .create_user(
            "alice",
            Role::User,
            &pw("alice password 1"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    store.close().await;
    assert!(
        !store.is_healthy().await,
        "a stopped writer must make /health fail"
    );
}

/// The writer never checkpoints (`wal_autocheckpoint = 0`); the checkpointer thread copies
/// committed pages into the database file beside it, and the WAL then starts over instead of
/// growing with every commit.
#[tokio::test]
async fn the_checkpointer_copies_the_wal_into_the_database_and_the_wal_starts_over() {
    let (dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let autocheckpoint = store
        .write(|c| Ok(c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    assert_eq!(
        autocheckpoint, 0,
        "the writer must not checkpoint in its commits"
    );
    store
        .write(|c| Ok(c.execute_batch("CREATE TABLE filler (body BLOB NOT NULL)")?))
        .await
        .unwrap();
    let db_size = || std::fs::metadata(&path).unwrap().len();
    let wal = dir.path().join("porchlight.db-wal");
    let before = db_size();
    // 64 commits of 256 KiB: 16 MiB through the WAL.
    for _ in 0..64 {
        store
            .write(|c| {
                c.execute("INSERT INTO filler (body) VALUES (zeroblob(262144))", [])?;
                Ok(())
            })
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db_size() < before + 16 * 1024 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file did not receive the WAL's pages ({} bytes)",
            db_size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Once everything is copied, the next commits reuse the WAL from its start: 16 more MiB
    // leave it well under the 32 MiB that were written through it.
    for _ in 0..64 {
        // Several checkpointer ticks (200 ms) fall within these writes, even on a busy machine.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        store
            .write(|c| {
                c.execute(
                    "DELETE FROM filler WHERE rowid = (SELECT min(rowid) FROM filler)",
                    [],
                )?;
                c.execute("INSERT INTO filler (body) VALUES (zeroblob(262144))", [])?;
                Ok(())
            })
            .await
            .unwrap();
    }
    let wal_size = std::fs::metadata(&wal).unwrap().len();
    assert!(
        wal_size < 24 * 1024 * 1024,
        "the WAL grew to {wal_size} bytes"
    );
    store.close().await;
}
