//! Store behaviour on a real SQLite file.

// Test helpers fail by panicking: that is how a test reports a broken expectation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use porchlight_domain::session::SessionPolicy;
use porchlight_store::{AuditEntry, AuditFilter, AuditKind, Error, LATEST_VERSION, Store};

fn pw(s: &str) -> Secret {
    Secret::new(s)
}

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porchlight.db");
    (dir, path)
}

#[tokio::test]
async fn a_database_from_a_newer_porchlight_is_refused() {
    let (_dir, path) = temp_db();
    Store::open(&path).unwrap().close().await;
    {
        let c = rusqlite_open(&path);
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
            [LATEST_VERSION + 1],
        )
        .unwrap();
    }
    match Store::open(&path) {
        Err(Error::DatabaseTooNew {
            found, supported, ..
        }) => {
            assert_eq!(found, LATEST_VERSION + 1);
            assert_eq!(supported, LATEST_VERSION);
        }
        other => panic!("expected DatabaseTooNew, got {other:?}"),
    }
    let msg = Store::open(&path).unwrap_err().to_string();
    assert!(msg.contains("newer Porchlight"), "{msg}");
}

fn rusqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[tokio::test]
async fn passwords_verify_and_are_stored_as_argon2id() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let alice = store
        .create_user(
            "alice",
            Role::Admin,
            &pw("alice password 1"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(alice.role, Role::Admin);
    assert_eq!(
        store
            .verify_login("alice", b"alice password 1", SystemTime::now())
            .await
            .unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .verify_login("alice", b"alice password 2", SystemTime::now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .verify_login("nobody", b"alice password 1", SystemTime::now())
            .await
            .unwrap(),
        None
    );

    store
        .set_password("alice", &pw("a new password!"), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        store
            .verify_login("alice", b"alice password 1", SystemTime::now())
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .verify_login("alice", b"a new password!", SystemTime::now())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn bad_account_input_gets_clear_errors() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    assert!(matches!(
        store
            .create_user(
                "Alice/x",
                Role::User,
                &pw("long enough pw"),
                SystemTime::now()
            )
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store
            .create_user("alice", Role::User, &pw("short"), SystemTime::now())
            .await,
        Err(Error::Invalid(_))
    ));
    store
        .create_user(
            "alice",
            Role::User,
            &pw("long enough pw"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_user(
                "alice",
                Role::User,
                &pw("long enough pw"),
                SystemTime::now()
            )
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.remove_user("nobody").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_last_admin_cannot_be_removed() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store
        .create_user(
            "admin",
            Role::Admin,
            &pw("admin password"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.remove_user("admin").await,
        Err(Error::LastAdmin)
    ));
    store
        .create_user(
            "root",
            Role::Admin,
            &pw("root password!"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    store.remove_user("admin").await.unwrap();
}

#[tokio::test]
async fn device_keys_authenticate_only_their_owner_until_removed() {
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
    store
        .create_user("bob", Role::User, &pw("bob password 11"), SystemTime::now())
        .await
        .unwrap();
    let (phone, key) = store
        .add_device("alice", "phone", SystemTime::now())
        .await
        .unwrap();
    assert!(key.expose().starts_with("pld_"));

    let (user, device) = store
        .verify_device_key("alice", key.expose().as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((user.username.as_str(), device.id), ("alice", phone.id));
    assert!(
        store
            .verify_device_key("bob", key.expose().as_bytes())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.add_device("alice", "phone", SystemTime::now()).await,
        Err(Error::AlreadyExists { .. })
    ));

    store.remove_device("alice", "phone").await.unwrap();
    assert!(
        store
            .verify_device_key("alice", key.expose().as_bytes())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sessions_slide_and_expire_after_seven_idle_days() {
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
    let policy = SessionPolicy::default();
    let day = Duration::from_secs(24 * 3600);
    let t0 = SystemTime::now();
    let token = store.create_session(alice.id, None, t0).await.unwrap();

    let signed_in = |token: String, at: SystemTime| {
        let store = store.clone();
        async move {
            store
                .session_user(&token, at, policy)
                .await
                .unwrap()
                .is_some()
        }
    };
    let t = || token.expose().to_owned();

    // Used every 6 days, it lives on past 7 days from creation.
    assert!(signed_in(t(), t0 + day * 6).await);
    assert!(signed_in(t(), t0 + day * 12).await);
    // Idle for 7 days: gone, and stays gone.
    assert!(!signed_in(t(), t0 + day * 19).await);
    assert!(!signed_in(t(), t0 + day * 12).await);
    assert!(!signed_in("forged".into(), t0).await);
}

#[tokio::test]
async fn api_tokens_work_until_revoked_and_are_stored_hashed() {
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
    let (meta, token) = store
        .create_api_token(alice.id, "backup script", SystemTime::now())
        .await
        .unwrap();
    assert!(token.expose().starts_with("plt_"));
    let now = SystemTime::now();
    assert_eq!(
        store
            .api_token_user(token.expose(), now)
            .await
            .unwrap()
            .unwrap()
            .id,
        alice.id
    );
    assert_eq!(
        store.list_api_tokens(alice.id).await.unwrap()[0].name,
        "backup script"
    );
    store.revoke_api_token(alice.id, meta.id).await.unwrap();
    assert!(
        store
            .api_token_user(token.expose(), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .create_api_token(alice.id, "  ", SystemTime::now())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn audit_rows_come_back_newest_first() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let entry = |n: u16| AuditEntry {
        id: 0,
        at: SystemTime::now(),
        kind: AuditKind::MqttConnect,
        peer: Some("127.0.0.1:5000".into()),
        client_id: Some(format!("c{n}")),
        username: Some("alice".into()),
        protocol: Some(4),
        code: Some(n),
        reason: "test".into(),
        detail: None,
    };
    store
        .record_audit((0..5).map(entry).collect())
        .await
        .unwrap();
    let page = store.audit_page(3, None, Default::default()).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.code).collect::<Vec<_>>(),
        [Some(4), Some(3), Some(2)]
    );
    let next = store
        .audit_page(3, Some(page[2].id), Default::default())
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|e| e.code).collect::<Vec<_>>(),
        [Some(1), Some(0)]
    );
}

/// The SQL filters answer exactly the rows the Rust rule (`AuditEntry::succeeded`) and the
/// fields name, and paging with `before` neither repeats nor skips a row.
#[tokio::test]
async fn audit_filters_and_pages_match_the_rust_rule() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let codes = [
        None,
        Some(0),
        Some(200),
        Some(204),
        Some(401),
        Some(429),
        Some(4),
        Some(5),
    ];
    let users = [None, Some("alice"), Some("bob")];
    let mut all = Vec::new();
    for (i, kind) in AuditKind::ALL.into_iter().enumerate() {
        for (j, code) in codes.into_iter().enumerate() {
            all.push(AuditEntry {
                id: 0,
                at: SystemTime::now(),
                kind,
                peer: None,
                client_id: Some(format!("{i}-{j}")),
                username: users[(i + j) % users.len()].map(str::to_owned),
                protocol: None,
                code,
                reason: "test".into(),
                detail: None,
            });
        }
    }
    store.record_audit(all.clone()).await.unwrap();
    let ids = |rows: &[AuditEntry]| rows.iter().map(|e| e.client_id.clone()).collect::<Vec<_>>();
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            kind: Some(AuditKind::HttpLogin),
            ..Default::default()
        },
        AuditFilter {
            kind: Some(AuditKind::MqttPublishDenied),
            ..Default::default()
        },
        AuditFilter {
            username: Some("bob".into()),
            ..Default::default()
        },
        AuditFilter {
            succeeded: Some(true),
            ..Default::default()
        },
        AuditFilter {
            succeeded: Some(false),
            ..Default::default()
        },
        AuditFilter {
            kind: Some(AuditKind::MqttConnect),
            username: Some("alice".into()),
            succeeded: Some(false),
        },
    ];
    for filter in filters {
        let mut expected: Vec<AuditEntry> = all
            .iter()
            .filter(|e| filter.kind.is_none_or(|k| e.kind == k))
            .filter(|e| filter.username.is_none() || e.username == filter.username)
            .filter(|e| filter.succeeded.is_none_or(|ok| e.succeeded() == ok))
            .cloned()
            .collect();
        expected.reverse();
        assert!(!expected.is_empty(), "{filter:?}");
        let one_page = store.audit_page(1000, None, filter.clone()).await.unwrap();
        assert_eq!(ids(&one_page), ids(&expected), "{filter:?}");
        // Pages of 3: together exactly the same rows, in the same order.
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = store.audit_page(3, before, filter.clone()).await.unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            paged.extend(page);
        }
        assert_eq!(ids(&paged), ids(&expected), "{filter:?}");
    }
    // The rule itself: refusal kinds fail whatever their code; otherwise 0 and 2xx succeed.
    let rule = |kind, code| {
        AuditEntry {
            kind,
            code,
            ..all[0].clone()
        }
        .succeeded()
    };
    assert!(rule(AuditKind::HttpLogin, Some(200)));
    assert!(!rule(AuditKind::HttpLogin, Some(401)));
    assert!(rule(AuditKind::MqttConnect, Some(0)));
    assert!(!rule(AuditKind::MqttConnect, Some(5)));
    assert!(rule(AuditKind::MqttDisconnect, None));
    assert!(!rule(AuditKind::MqttPublishDenied, None));
    assert!(!rule(AuditKind::AlarmCodeRefused, None));
}

#[cfg(unix)]
#[tokio::test]
async fn every_open_makes_the_database_and_its_wal_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = temp_db();
    Store::open(&path).unwrap().close().await;
    // Another process (a backup tool, sqlite3 in a shell) has the file open with a WAL, and
    // the files were widened meanwhile, e.g. by a copy or a restore.
    let other = rusqlite_open(&path);
    other
        .execute(
            "INSERT INTO audit (at, kind, reason) VALUES (0, 'http_login', 'x')",
            [],
        )
        .unwrap();
    let files =
        ["porchlight.db", "porchlight.db-wal", "porchlight.db-shm"].map(|f| dir.path().join(f));
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = Store::open(&path).unwrap();
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    drop(other);
    store.close().await;
}

#[tokio::test]
async fn audit_retention_purges_old_rows_in_batches_and_keeps_the_rest() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let entry = |at: SystemTime, code: u16| AuditEntry {
        id: 0,
        at,
        kind: AuditKind::HttpLogin,
        peer: None,
        client_id: None,
        username: None,
        protocol: None,
        code: Some(code),
        reason: "test".into(),
        detail: None,
    };
    // More old rows than one purge job deletes, and rows on both sides of the cutoff.
    let old = porchlight_store::AUDIT_PURGE_BATCH as usize * 2 + 500;
    let mut entries: Vec<_> = (0..old).map(|_| entry(now - day * 100, 1)).collect();
    entries.push(entry(now - day * 91, 2));
    entries.push(entry(now - day * 89, 3));
    entries.push(entry(now, 4));
    store.record_audit(entries).await.unwrap();

    let deleted = store.purge_audit(now, day * 90).await.unwrap();
    assert_eq!(deleted, old as u64 + 1);
    let left = store
        .audit_page(10_000, None, Default::default())
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.code).collect::<Vec<_>>(),
        [Some(4), Some(3)]
    );
    assert_eq!(store.purge_audit(now, day * 90).await.unwrap(), 0);
}
