//! Encryption keys, deleting points and per-user retention, on a real SQLite file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;

use crate::{
    LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher, Store, Transition,
    TransitionEvent,
};

const DAY: i64 = 24 * 3600;
const NOW: i64 = 1_760_000_000;

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

async fn store_with_users(names: &[&str]) -> (tempfile::TempDir, Store, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
    let mut ids = Vec::new();
    for name in names {
        let password = Secret::new(format!("{name} password 1"));
        let user = store
            .create_user(name, Role::User, &password, at(NOW))
            .await
            .unwrap();
        ids.push(user.id);
    }
    (dir, store, ids)
}

fn message(user_id: i64, device: &str, tst: i64, payload: OwnTracksPayload) -> OwnTracksMessage {
    OwnTracksMessage {
        publisher: OwnTracksPublisher {
            user_id,
            device: device.into(),
        },
        tst,
        raw: format!(r#"{{"_type":"{}","tst":{tst}}}"#, payload.kind()),
        payload,
    }
}

fn location(user_id: i64, device: &str, tst: i64) -> OwnTracksMessage {
    let fields = LocationFields {
        lat: 52.0,
        lon: 4.0,
        ..LocationFields::default()
    };
    message(user_id, device, tst, OwnTracksPayload::Location(fields))
}

fn transition(user_id: i64, device: &str, tst: i64) -> OwnTracksMessage {
    let t = Transition {
        event: TransitionEvent::Enter,
        description: Some("home".into()),
        rid: None,
        wtst: None,
        lat: None,
        lon: None,
        acc: None,
    };
    message(user_id, device, tst, OwnTracksPayload::Transition(t))
}

async fn ingest(store: &Store, batch: Vec<OwnTracksMessage>) {
    store.ingest_owntracks(batch, at(NOW)).await.unwrap();
}

async fn device(store: &Store, user_id: i64, name: &str) -> i64 {
    store
        .find_owntracks_device(user_id, name)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn tsts(store: &Store, device_id: i64) -> Vec<i64> {
    let points = store
        .location_window(device_id, i64::MIN, i64::MAX, u32::MAX)
        .await
        .unwrap();
    points.into_iter().map(|p| p.tst).collect()
}

async fn raw_count(store: &Store, device_id: i64) -> i64 {
    store
        .read(move |c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM location_raw WHERE device_id = ?1)
                      + (SELECT count(*) FROM location_log WHERE device_id = ?1)",
                [device_id],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_are_set_replaced_listed_per_user_and_removed() {
    let (_dir, store, ids) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    assert_eq!(store.owntracks_key(alice, "phone").await.unwrap(), None);
    let first = Secret::new("first passphrase");
    store
        .set_owntracks_key(alice, "phone", &first, at(NOW))
        .await
        .unwrap();
    let second = Secret::new("second passphrase");
    store
        .set_owntracks_key(alice, "phone", &second, at(NOW + 1))
        .await
        .unwrap();
    store
        .set_owntracks_key(bob, "phone", &first, at(NOW))
        .await
        .unwrap();
    assert_eq!(
        store.owntracks_key(alice, "phone").await.unwrap(),
        Some(second.clone())
    );
    let alices = store.owntracks_keys(Some(vec![alice])).await.unwrap();
    assert_eq!(alices.len(), 1);
    assert_eq!(
        (alices[0].username.as_str(), alices[0].device.as_str()),
        ("alice", "phone")
    );
    assert_eq!(alices[0].passphrase, second);
    assert_eq!(alices[0].updated_at, at(NOW + 1));
    assert_eq!(store.owntracks_keys(None).await.unwrap().len(), 2);
    // A key's Debug never shows it.
    assert!(!format!("{alices:?}").contains("second passphrase"));

    assert!(store.remove_owntracks_key(alice, "phone").await.unwrap());
    assert!(!store.remove_owntracks_key(alice, "phone").await.unwrap());
    assert_eq!(store.owntracks_key(alice, "phone").await.unwrap(), None);
    assert_eq!(
        store.owntracks_key(bob, "phone").await.unwrap(),
        Some(first)
    );
    assert!(
        store
            .set_owntracks_key(alice, "phone", &Secret::new(""), at(NOW))
            .await
            .is_err()
    );
    // Removing the user removes their keys.
    store.remove_user("bob").await.unwrap();
    assert!(store.owntracks_keys(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_point_is_deleted_with_its_raw_json_and_nothing_else() {
    let (_dir, store, ids) = store_with_users(&["alice"]).await;
    let alice = ids[0];
    ingest(
        &store,
        (1..=3).map(|t| location(alice, "phone", NOW + t)).collect(),
    )
    .await;
    let id = device(&store, alice, "phone").await;
    assert!(store.delete_location(id, NOW + 2).await.unwrap());
    assert!(!store.delete_location(id, NOW + 2).await.unwrap());
    assert!(!store.delete_location(id, i64::MAX).await.unwrap());
    assert_eq!(tsts(&store, id).await, vec![NOW + 1, NOW + 3]);
    assert_eq!(raw_count(&store, id).await, 2);
}

#[tokio::test]
async fn retention_purges_one_user_s_old_points_and_transitions_only() {
    let (_dir, store, ids) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let old = [NOW - 3 * DAY, NOW - 2 * DAY, NOW - 2 * DAY + 1];
    let recent = [NOW - 3600, NOW];
    for user in [alice, bob] {
        for name in ["phone", "tablet"] {
            let mut batch: Vec<_> = old
                .iter()
                .chain(&recent)
                .map(|t| location(user, name, *t))
                .collect();
            batch.push(transition(user, name, NOW - 3 * DAY));
            batch.push(transition(user, name, NOW));
            ingest(&store, batch).await;
        }
    }
    store
        .set_location_retention(alice, Some(1), at(NOW))
        .await
        .unwrap();
    assert_eq!(store.location_retention(alice).await.unwrap(), Some(1));
    assert_eq!(store.location_retention(bob).await.unwrap(), None);
    assert_eq!(store.location_retentions().await.unwrap(), vec![(alice, 1)]);

    // Batches of 2 rows: the purge loops until each device is done.
    let deleted = store
        .purge_user_locations_older_than(alice, at(NOW - DAY), 2)
        .await
        .unwrap();
    assert_eq!(deleted, 6);
    for name in ["phone", "tablet"] {
        let a = device(&store, alice, name).await;
        assert_eq!(tsts(&store, a).await, recent.to_vec());
        assert_eq!(raw_count(&store, a).await, 2);
        let transitions = store.transitions(a, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(
            transitions.iter().map(|t| t.tst).collect::<Vec<_>>(),
            vec![NOW]
        );
        let b = device(&store, bob, name).await;
        assert_eq!(tsts(&store, b).await.len(), 5);
        assert_eq!(
            store
                .transitions(b, i64::MIN, i64::MAX)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    store
        .set_location_retention(alice, None, at(NOW))
        .await
        .unwrap();
    assert_eq!(store.location_retention(alice).await.unwrap(), None);
    for bad in [0, crate::MAX_RETENTION_DAYS + 1] {
        assert!(
            store
                .set_location_retention(alice, Some(bad), at(NOW))
                .await
                .is_err()
        );
    }
    assert!(
        store
            .purge_user_locations_older_than(alice, at(NOW), 0)
            .await
            .is_err()
    );
}
