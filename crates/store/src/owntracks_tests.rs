//! OwnTracks storage on a real SQLite file. Inside the crate so that tests can look at the rows
//! with SQL (`Store::read` is crate-private).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;

use crate::owntracks::{LOG_DRAIN_ROWS, delete_oldest, drain_log};
use crate::{
    Card, IngestOutcome, LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher,
    Store, Transition, TransitionEvent, Waypoint,
};

const T0: i64 = 1_750_000_000;

/// Stored points, drained or still in the log.
const POINTS: &str =
    "SELECT (SELECT count(*) FROM locations) + (SELECT count(*) FROM location_log)";
/// Stored raw JSON of points, drained or still in the log.
const RAWS: &str =
    "SELECT (SELECT count(*) FROM location_raw) + (SELECT count(*) FROM location_log)";

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

async fn store_with_users(names: &[&str]) -> (tempfile::TempDir, Store, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
    let mut ids = Vec::new();
    for name in names {
        let user = store
            .create_user(
                name,
                Role::User,
                &Secret::new(format!("{name} password 1")),
                SystemTime::now(),
            )
            .await
            .unwrap();
        ids.push(user.id);
    }
    (dir, store, ids)
}

fn publisher(user_id: i64, device: &str) -> OwnTracksPublisher {
    OwnTracksPublisher {
        user_id,
        device: device.into(),
    }
}

fn location(user_id: i64, device: &str, tst: i64, lat: f64, lon: f64) -> OwnTracksMessage {
    OwnTracksMessage {
        publisher: publisher(user_id, device),
        tst,
        payload: OwnTracksPayload::Location(LocationFields {
            lat,
            lon,
            acc: Some(10.0),
            batt: Some(80),
            tid: Some("ph".into()),
            ..LocationFields::default()
        }),
        raw: format!(r#"{{"_type":"location","lat":{lat},"lon":{lon},"tst":{tst}}}"#),
    }
}

fn message(user_id: i64, device: &str, tst: i64, payload: OwnTracksPayload) -> OwnTracksMessage {
    let raw = format!(r#"{{"_type":"{}","tst":{tst}}}"#, payload.kind());
    OwnTracksMessage {
        publisher: publisher(user_id, device),
        tst,
        payload,
        raw,
    }
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .await
        .unwrap()
}

/// Ingests points `tst` for each tst given, at lat/lon derived from it.
async fn ingest_points(store: &Store, user_id: i64, device: &str, tsts: impl Iterator<Item = i64>) {
    let batch: Vec<_> = tsts
        .map(|t| location(user_id, device, t, 52.0 + (t - T0) as f64 * 1e-5, 13.0))
        .collect();
    let outcomes = store.ingest_owntracks(batch, at(T0)).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == IngestOutcome::New),
        "{outcomes:?}"
    );
}

async fn device_id(store: &Store, user_id: i64, name: &str) -> i64 {
    store
        .find_owntracks_device(user_id, name)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn a_batch_reports_each_message_and_creates_devices_on_first_sight() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    let batch = vec![
        location(alice, "phone", T0, 52.5, 13.4),
        // A resend inside the same batch.
        location(alice, "phone", T0, 52.5, 13.4),
        location(alice, "phone", T0 + 1, 91.0, 13.4),
        location(alice, "", T0 + 2, 52.5, 13.4),
        // No such user: the device cannot be created; the rest of the batch goes on.
        location(alice + 1000, "phone", T0 + 3, 52.5, 13.4),
        location(alice, "tablet", T0, 48.1, 11.6),
        location(alice, "phone", T0 + 4, 52.6, 13.5),
    ];
    let outcomes = store.ingest_owntracks(batch, at(T0 + 10)).await.unwrap();
    assert_eq!(outcomes[0], IngestOutcome::New);
    assert_eq!(outcomes[1], IngestOutcome::Duplicate);
    assert!(
        matches!(&outcomes[2], IngestOutcome::Rejected(r) if r.contains("out of range")),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(&outcomes[3], IngestOutcome::Rejected(r) if r.contains("device name")),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(&outcomes[4], IngestOutcome::Rejected(r) if r.contains("FOREIGN KEY")),
        "{:?}",
        outcomes[4]
    );
    assert_eq!(outcomes[5..], [IngestOutcome::New, IngestOutcome::New]);
    assert_eq!(outcomes.len(), 7);

    let devices = store.owntracks_devices(None).await.unwrap();
    let names: Vec<_> = devices
        .iter()
        .map(|d| (d.username.as_str(), d.name.as_str()))
        .collect();
    assert_eq!(names, [("alice", "phone"), ("alice", "tablet")]);
    assert!(
        devices
            .iter()
            .all(|d| d.online && d.last_seen_at == at(T0 + 10))
    );
    assert_eq!(count(&store, POINTS).await, 3);
    assert_eq!(count(&store, RAWS).await, 3);

    // The phone resends (or an HTTP retry repeats) the whole batch: nothing new.
    let again = vec![
        location(alice, "phone", T0, 52.5, 13.4),
        location(alice, "tablet", T0, 48.1, 11.6),
    ];
    let outcomes = store.ingest_owntracks(again, at(T0 + 20)).await.unwrap();
    assert_eq!(
        outcomes,
        [IngestOutcome::Duplicate, IngestOutcome::Duplicate]
    );
    assert_eq!(count(&store, POINTS).await, 3);
    let phone = device_id(&store, alice, "phone").await;
    let raw = store.location_raw(phone, T0).await.unwrap().unwrap();
    assert!(raw.contains(r#""lat":52.5"#), "{raw}");
    let devices = store.owntracks_devices(Some(vec![alice])).await.unwrap();
    assert!(
        devices
            .iter()
            .all(|d| d.last_seen_at == at(T0 + 20) && d.first_seen_at == at(T0 + 10))
    );

    // Coordinates that are not numbers are out of range too.
    let nan = vec![location(alice, "phone", T0 + 5, f64::NAN, 13.4)];
    let outcomes = store.ingest_owntracks(nan, at(T0 + 30)).await.unwrap();
    assert!(
        matches!(&outcomes[0], IngestOutcome::Rejected(_)),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn the_same_tst_with_another_message_type_is_not_a_duplicate() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    let transition = |event, rid: &str| {
        OwnTracksPayload::Transition(Transition {
            event,
            description: Some("home".into()),
            rid: Some(rid.into()),
            wtst: Some(T0 - 100),
            lat: Some(52.5),
            lon: Some(13.4),
            acc: Some(5.0),
        })
    };
    let batch = vec![
        location(alice, "phone", T0, 52.5, 13.4),
        message(alice, "phone", T0, transition(TransitionEvent::Enter, "r1")),
        // Another region changing at the same second is its own event.
        message(alice, "phone", T0, transition(TransitionEvent::Leave, "r2")),
        message(alice, "phone", T0, transition(TransitionEvent::Enter, "r1")),
        message(
            alice,
            "phone",
            T0,
            OwnTracksPayload::Other {
                kind: "status".into(),
            },
        ),
        message(
            alice,
            "phone",
            T0,
            OwnTracksPayload::Other {
                kind: "status".into(),
            },
        ),
    ];
    let outcomes = store.ingest_owntracks(batch, at(T0)).await.unwrap();
    use IngestOutcome::{Duplicate, New};
    assert_eq!(outcomes, [New, New, New, Duplicate, New, Duplicate]);
    let phone = device_id(&store, alice, "phone").await;
    let transitions = store.transitions(phone, T0, T0 + 1).await.unwrap();
    assert_eq!(transitions.len(), 2);
    assert_eq!(transitions[0].transition.event, TransitionEvent::Enter);
    assert_eq!(transitions[0].transition.rid.as_deref(), Some("r1"));
    assert_eq!(
        transitions[0].transition.description.as_deref(),
        Some("home")
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM ot_messages WHERE kind = 'status'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn lwt_marks_a_device_offline_and_a_location_online_again() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    ingest_points(&store, alice, "phone", [T0].into_iter()).await;
    let phone = device_id(&store, alice, "phone").await;

    let lwt = message(alice, "phone", T0 + 50, OwnTracksPayload::Lwt);
    assert_eq!(
        store
            .ingest_owntracks(vec![lwt], at(T0 + 60))
            .await
            .unwrap(),
        [IngestOutcome::New]
    );
    let d = store
        .find_owntracks_device(alice, "phone")
        .await
        .unwrap()
        .unwrap();
    assert!(!d.online);
    assert_eq!(d.online_changed_at, at(T0 + 60));
    assert_eq!(d.last_seen_at, at(T0 + 60));

    // Within one batch the last word wins: offline, then a location.
    let batch = vec![
        message(alice, "phone", T0 + 70, OwnTracksPayload::Lwt),
        location(alice, "phone", T0 + 80, 52.0, 13.0),
    ];
    store.ingest_owntracks(batch, at(T0 + 90)).await.unwrap();
    let d = store
        .find_owntracks_device(alice, "phone")
        .await
        .unwrap()
        .unwrap();
    assert!(d.online);
    assert_eq!(d.online_changed_at, at(T0 + 90));

    assert!(
        store
            .set_owntracks_online(phone, false, at(T0 + 100))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_owntracks_online(phone, false, at(T0 + 110))
            .await
            .unwrap(),
        "no change"
    );
    let d = store
        .find_owntracks_device(alice, "phone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.online, d.online_changed_at), (false, at(T0 + 100)));

    // A device whose first message is its last will starts offline.
    let lwt = message(alice, "watch", T0, OwnTracksPayload::Lwt);
    store
        .ingest_owntracks(vec![lwt], at(T0 + 120))
        .await
        .unwrap();
    assert!(
        !store
            .find_owntracks_device(alice, "watch")
            .await
            .unwrap()
            .unwrap()
            .online
    );
}

#[tokio::test]
async fn a_window_includes_from_excludes_to_and_comes_in_time_order() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    // Ingested newest first: the order of arrival must not matter.
    ingest_points(&store, alice, "phone", (0..10).rev().map(|i| T0 + i * 60)).await;
    ingest_points(&store, alice, "tablet", (0..10).map(|i| T0 + i * 60)).await;
    let phone = device_id(&store, alice, "phone").await;

    let window = store
        .location_window(phone, T0 + 60, T0 + 300, 1000)
        .await
        .unwrap();
    let tsts: Vec<_> = window.iter().map(|l| l.tst).collect();
    assert_eq!(tsts, [T0 + 60, T0 + 120, T0 + 180, T0 + 240]);
    assert!(window.iter().all(|l| l.device_id == phone));
    assert_eq!(window[0].fields.acc, Some(10.0));
    assert_eq!(window[0].fields.tid.as_deref(), Some("ph"));
    assert_eq!(window[0].received_at, at(T0));

    // A limit keeps the newest points of the window, still oldest first.
    let limited = store.location_window(phone, T0, T0 + 600, 3).await.unwrap();
    let tsts: Vec<_> = limited.iter().map(|l| l.tst).collect();
    assert_eq!(tsts, [T0 + 420, T0 + 480, T0 + 540]);

    assert!(
        store
            .location_window(phone, T0 + 600, T0 + 900, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .location_window(phone, T0 + 60, T0 + 60, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn last_locations_are_the_newest_by_tst_and_filtered_by_user() {
    let (_dir, store, users) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (users[0], users[1]);
    ingest_points(&store, alice, "phone", [T0 + 500, T0 + 100].into_iter()).await;
    ingest_points(&store, bob, "phone", [T0 + 50].into_iter()).await;
    // A device that only sent a card has no location yet.
    let card = message(bob, "tablet", T0, OwnTracksPayload::Card(Card::default()));
    store.ingest_owntracks(vec![card], at(T0)).await.unwrap();

    let all = store.last_locations(None).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|l| {
            (
                l.device.username.as_str(),
                l.device.name.as_str(),
                l.location.as_ref().map(|p| p.tst),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("alice", "phone", Some(T0 + 500)),
            ("bob", "phone", Some(T0 + 50)),
            ("bob", "tablet", None)
        ]
    );
    let alice_only = store.last_locations(Some(vec![alice])).await.unwrap();
    assert_eq!(alice_only.len(), 1);
    assert_eq!(alice_only[0].device.user_id, alice);
    assert!(store.last_locations(Some(vec![])).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_track_is_thinned_to_the_budget_keeping_its_first_and_last_points() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    // A zig-zag: nearly every point deviates from a straight line.
    let batch: Vec<_> = (0..3000)
        .map(|i| {
            let lat = 52.0 + if i % 2 == 0 { 0.001 } else { -0.001 } + (i % 5) as f64 * 1e-4;
            location(alice, "phone", T0 + i * 30, lat, 13.0 + i as f64 * 1e-4)
        })
        .collect();
    store.ingest_owntracks(batch, at(T0)).await.unwrap();
    let phone = device_id(&store, alice, "phone").await;

    let track = store
        .location_track(phone, T0, T0 + 3000 * 30, 200)
        .await
        .unwrap();
    assert_eq!(track.len(), 200);
    assert_eq!(track.first().map(|p| p.tst), Some(T0));
    assert_eq!(track.last().map(|p| p.tst), Some(T0 + 2999 * 30));
    assert!(track.windows(2).all(|w| w[0].tst < w[1].tst));

    // The window bounds apply as for location_window: `to` is exclusive.
    let part = store
        .location_track(phone, T0 + 30, T0 + 300, 1000)
        .await
        .unwrap();
    assert_eq!(part.len(), 9);
    assert_eq!(part.first().map(|p| p.tst), Some(T0 + 30));
    assert_eq!(part.last().map(|p| p.tst), Some(T0 + 270));
}

#[tokio::test]
async fn deleting_a_range_removes_exactly_it_with_its_raw_json() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    ingest_points(&store, alice, "phone", (0..100).map(|i| T0 + i)).await;
    ingest_points(&store, alice, "tablet", (0..100).map(|i| T0 + i)).await;
    let phone = device_id(&store, alice, "phone").await;

    assert_eq!(
        store.delete_points(phone, T0 + 10..T0 + 20).await.unwrap(),
        10
    );
    let left: Vec<_> = store
        .location_window(phone, T0, T0 + 100, 1000)
        .await
        .unwrap()
        .iter()
        .map(|l| l.tst)
        .collect();
    let expected: Vec<_> = (0..10).chain(20..100).map(|i| T0 + i).collect();
    assert_eq!(left, expected);
    assert!(store.location_raw(phone, T0 + 10).await.unwrap().is_none());
    assert!(store.location_raw(phone, T0 + 20).await.unwrap().is_some());
    assert_eq!(count(&store, POINTS).await, 190);
    assert_eq!(count(&store, RAWS).await, 190);
    // One point: a range of one second.
    assert_eq!(
        store.delete_points(phone, T0 + 50..T0 + 51).await.unwrap(),
        1
    );
    assert_eq!(
        store.delete_points(phone, T0 + 50..T0 + 51).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_purge_job_deletes_at_most_its_batch_oldest_first() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    ingest_points(&store, alice, "phone", (0..50).map(|i| T0 + i)).await;
    let phone = device_id(&store, alice, "phone").await;

    let deleted = store
        .write(move |c| delete_oldest(c, phone, &(i64::MIN..T0 + 30), 7))
        .await
        .unwrap();
    assert_eq!(deleted, 7);
    let left = store
        .location_window(phone, 0, i64::MAX, 1000)
        .await
        .unwrap();
    assert_eq!(left.len(), 43);
    assert_eq!(left[0].tst, T0 + 7, "the oldest went first");
    assert_eq!(count(&store, RAWS).await, 43);
}

#[tokio::test]
async fn purging_removes_every_device_s_points_older_than_the_cutoff_only() {
    let (_dir, store, users) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (users[0], users[1]);
    ingest_points(&store, alice, "phone", (0..50).map(|i| T0 + i)).await;
    ingest_points(&store, bob, "phone", (0..50).map(|i| T0 + i)).await;
    let transition = OwnTracksPayload::Transition(Transition {
        event: TransitionEvent::Enter,
        description: None,
        rid: None,
        wtst: None,
        lat: None,
        lon: None,
        acc: None,
    });
    store
        .ingest_owntracks(vec![message(alice, "phone", T0, transition)], at(T0))
        .await
        .unwrap();

    // 30 old points per device, removed 4 at a time (8 jobs each, the last one short).
    assert_eq!(
        store
            .purge_locations_older_than(at(T0 + 30), 4)
            .await
            .unwrap(),
        60
    );
    for user in [alice, bob] {
        let d = device_id(&store, user, "phone").await;
        let left = store.location_window(d, 0, i64::MAX, 1000).await.unwrap();
        assert_eq!(left.len(), 20);
        assert_eq!(left[0].tst, T0 + 30);
    }
    assert_eq!(count(&store, RAWS).await, 40);
    assert_eq!(
        store
            .purge_locations_older_than(at(T0 + 30), 4)
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        store.purge_locations_older_than(at(T0 + 30), 0).await,
        Err(crate::Error::BadInput(_))
    ));
    assert_eq!(
        count(&store, "SELECT count(*) FROM ot_transitions").await,
        1
    );
}

#[tokio::test]
async fn waypoints_and_cards_are_replaced_and_identical_resends_are_duplicates() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    let home = Waypoint {
        tst: T0 - 1000,
        description: "home".into(),
        lat: 52.5,
        lon: 13.4,
        rad: Some(100),
        rid: Some("r1".into()),
    };
    let work = Waypoint {
        tst: T0 - 500,
        description: "work".into(),
        lat: 52.4,
        lon: 13.3,
        rad: Some(50),
        rid: None,
    };
    let list = OwnTracksPayload::Waypoints(vec![home.clone(), work.clone()]);
    let moved_home = Waypoint {
        rad: Some(150),
        ..home.clone()
    };
    let card = Card {
        name: Some("Alice".into()),
        face: Some("aGVsbG8=".into()),
    };
    let batch = vec![
        message(alice, "phone", T0, list.clone()),
        message(alice, "phone", T0, list),
        message(
            alice,
            "phone",
            T0 + 1,
            OwnTracksPayload::Waypoint(moved_home.clone()),
        ),
        message(alice, "phone", T0 + 2, OwnTracksPayload::Card(card.clone())),
        message(alice, "phone", T0 + 2, OwnTracksPayload::Card(card.clone())),
    ];
    let outcomes = store.ingest_owntracks(batch, at(T0)).await.unwrap();
    use IngestOutcome::{Duplicate, New};
    assert_eq!(outcomes, [New, Duplicate, New, New, Duplicate]);
    let phone = device_id(&store, alice, "phone").await;
    assert_eq!(store.waypoints(phone).await.unwrap(), [moved_home, work]);
    assert_eq!(store.card(phone).await.unwrap(), Some(card));
    // A waypoint with bad coordinates is refused as a whole.
    let bad = Waypoint { lat: 100.0, ..home };
    let outcomes = store
        .ingest_owntracks(
            vec![message(
                alice,
                "phone",
                T0 + 3,
                OwnTracksPayload::Waypoints(vec![bad]),
            )],
            at(T0),
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], IngestOutcome::Rejected(_)),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn commands_are_delivered_once_and_expired_ones_never() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    ingest_points(&store, alice, "phone", [T0].into_iter()).await;
    ingest_points(&store, alice, "tablet", [T0].into_iter()).await;
    let phone = device_id(&store, alice, "phone").await;
    let tablet = device_id(&store, alice, "tablet").await;

    let report = r#"{"_type":"cmd","action":"reportLocation"}"#.to_owned();
    let dump = r#"{"_type":"cmd","action":"dump"}"#.to_owned();
    store
        .queue_owntracks_command(phone, report.clone(), at(T0), at(T0 + 3600))
        .await
        .unwrap();
    store
        .queue_owntracks_command(phone, "stale".into(), at(T0), at(T0 + 10))
        .await
        .unwrap();
    store
        .queue_owntracks_command(phone, dump.clone(), at(T0), at(T0 + 3600))
        .await
        .unwrap();
    store
        .queue_owntracks_command(tablet, "other".into(), at(T0), at(T0 + 3600))
        .await
        .unwrap();
    assert!(
        store
            .queue_owntracks_command(phone, "x".into(), at(T0), at(T0))
            .await
            .is_err()
    );

    assert_eq!(
        store
            .take_owntracks_commands(phone, at(T0 + 60))
            .await
            .unwrap(),
        [report, dump]
    );
    assert!(
        store
            .take_owntracks_commands(phone, at(T0 + 61))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .expire_owntracks_commands(at(T0 + 4000))
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .take_owntracks_commands(tablet, at(T0 + 4001))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_device_key_of_the_same_name_is_linked_and_its_removal_keeps_the_history() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    let (key_device, _key) = store
        .add_device("alice", "phone", SystemTime::now())
        .await
        .unwrap();
    ingest_points(&store, alice, "phone", [T0].into_iter()).await;
    ingest_points(&store, alice, "laptop", [T0].into_iter()).await;
    let phone = store
        .find_owntracks_device(alice, "phone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(phone.credential_id, Some(key_device.id));
    let laptop = store
        .find_owntracks_device(alice, "laptop")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        laptop.credential_id, None,
        "published with the account password"
    );

    // A key created later is linked at once.
    let (laptop_key, _) = store
        .add_device("alice", "laptop", SystemTime::now())
        .await
        .unwrap();
    let laptop = store
        .find_owntracks_device(alice, "laptop")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(laptop.credential_id, Some(laptop_key.id));

    store.remove_device("alice", "phone").await.unwrap();
    let phone = store
        .find_owntracks_device(alice, "phone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(phone.credential_id, None);
    assert_eq!(
        store
            .location_window(phone.id, 0, i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Removing the user removes their OwnTracks data with them.
    store.remove_user("alice").await.unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM ot_devices").await, 0);
    assert_eq!(count(&store, POINTS).await, 0);
    assert_eq!(count(&store, RAWS).await, 0);
}

#[tokio::test]
async fn a_window_s_raw_json_follows_the_window_rules() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    ingest_points(&store, alice, "phone", (0..10).map(|i| T0 + i * 60)).await;
    let phone = device_id(&store, alice, "phone").await;
    let raw = store
        .location_window_raw(phone, T0 + 60, T0 + 300, 2)
        .await
        .unwrap();
    let tsts: Vec<_> = raw.iter().map(|(t, _)| *t).collect();
    assert_eq!(tsts, [T0 + 180, T0 + 240]);
    assert!(
        raw[0].1.contains(&format!(r#""tst":{}"#, T0 + 180)),
        "{}",
        raw[0].1
    );
}

#[tokio::test]
async fn deleting_a_device_removes_its_history_and_nothing_else() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    let (key, _) = store
        .add_device("alice", "phone", SystemTime::now())
        .await
        .unwrap();
    // More points than one delete job takes.
    ingest_points(&store, alice, "phone", (0..5000).map(|i| T0 + i)).await;
    ingest_points(&store, alice, "tablet", (0..10).map(|i| T0 + i)).await;
    let phone = device_id(&store, alice, "phone").await;
    let card = message(alice, "phone", T0, OwnTracksPayload::Card(Card::default()));
    store.ingest_owntracks(vec![card], at(T0)).await.unwrap();
    store
        .queue_owntracks_command(phone, "{}".into(), at(T0), at(T0 + 60))
        .await
        .unwrap();

    assert_eq!(store.delete_owntracks_device(phone).await.unwrap(), 5000);
    assert!(
        store
            .find_owntracks_device(alice, "phone")
            .await
            .unwrap()
            .is_none()
    );
    for table in [
        "SELECT count(*) FROM location_raw WHERE device_id NOT IN (SELECT id FROM ot_devices)",
        "SELECT count(*) FROM location_log WHERE device_id NOT IN (SELECT id FROM ot_devices)",
        "SELECT count(*) FROM ot_cards",
        "SELECT count(*) FROM ot_messages",
        "SELECT count(*) FROM ot_commands",
    ] {
        assert_eq!(count(&store, table).await, 0, "{table}");
    }
    assert_eq!(count(&store, POINTS).await, 10);
    // The MQTT key stays: revoking it is a separate decision.
    let keys = store.list_devices(Some(alice)).await.unwrap();
    assert_eq!(keys.iter().map(|d| d.id).collect::<Vec<_>>(), [key.id]);
    assert!(matches!(
        store.delete_owntracks_device(phone).await,
        Err(crate::Error::NotFound { .. })
    ));
}

/// Moves whatever is in the log into the clustered tables now.
async fn drain(store: &Store) -> usize {
    store.write(drain_log).await.unwrap()
}

/// Everything a reader can ask about one device's points, to compare before and after a drain.
async fn reads(
    store: &Store,
    device: i64,
) -> (
    Vec<crate::StoredLocation>,
    Vec<(i64, String)>,
    usize,
    Option<i64>,
) {
    let window = store
        .location_window(device, T0, T0 + 1000, 1000)
        .await
        .unwrap();
    let raw = store
        .location_window_raw(device, T0, T0 + 1000, 1000)
        .await
        .unwrap();
    let track = store
        .location_track(device, T0, T0 + 1000, 1000)
        .await
        .unwrap();
    let last = store.last_locations(None).await.unwrap();
    let last = last
        .iter()
        .find(|l| l.device.id == device)
        .and_then(|l| l.location.as_ref())
        .map(|l| l.tst);
    (window, raw, track.len(), last)
}

#[tokio::test]
async fn points_read_the_same_from_the_log_and_after_the_drain() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    // Out of order, as a phone flushing its queue after a tunnel sends them.
    ingest_points(&store, alice, "phone", (0..40).rev().map(|i| T0 + 2 * i)).await;
    let phone = device_id(&store, alice, "phone").await;
    let in_log = reads(&store, phone).await;
    assert_eq!(in_log.0.len(), 40);
    assert_eq!(in_log.0.first().map(|l| l.tst), Some(T0));
    assert_eq!(in_log.3, Some(T0 + 78), "the newest by tst, not by arrival");
    assert_eq!(count(&store, "SELECT count(*) FROM locations").await, 0);

    assert_eq!(drain(&store).await, 40);
    assert_eq!(count(&store, "SELECT count(*) FROM location_log").await, 0);
    assert_eq!(reads(&store, phone).await, in_log);
    assert_eq!(drain(&store).await, 0);

    // Resends of drained points are duplicates; new points interleave with drained ones.
    let outcomes = store
        .ingest_owntracks(
            vec![
                location(alice, "phone", T0 + 2, 1.0, 1.0),
                location(alice, "phone", T0 + 3, 1.0, 1.0),
                location(alice, "phone", T0 + 3, 2.0, 2.0),
                location(alice, "phone", T0 + 500, 3.0, 3.0),
            ],
            at(T0),
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            IngestOutcome::Duplicate,
            IngestOutcome::New,
            IngestOutcome::Duplicate,
            IngestOutcome::New
        ]
    );
    let mixed = reads(&store, phone).await;
    let tsts: Vec<_> = mixed.0.iter().map(|l| l.tst).collect();
    assert_eq!(tsts.len(), 42);
    assert!(tsts.windows(2).all(|w| w[0] < w[1]), "{tsts:?}");
    assert_eq!(mixed.3, Some(T0 + 500));
    assert_eq!(mixed.1.len(), 42);
    // `limit` keeps the newest across both tables.
    let newest: Vec<_> = store
        .location_window(phone, T0, T0 + 1000, 3)
        .await
        .unwrap()
        .iter()
        .map(|l| l.tst)
        .collect();
    assert_eq!(newest, [T0 + 76, T0 + 78, T0 + 500]);
    assert!(store.location_raw(phone, T0 + 3).await.unwrap().is_some());
    assert!(store.location_raw(phone, T0 + 2).await.unwrap().is_some());
    drain(&store).await;
    assert_eq!(reads(&store, phone).await, mixed);
}

#[tokio::test]
async fn ingest_drains_the_log_once_it_is_full() {
    let (_dir, store, users) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (users[0], users[1]);
    let half = LOG_DRAIN_ROWS / 2;
    ingest_points(&store, alice, "phone", (0..half).map(|i| T0 + i)).await;
    ingest_points(&store, bob, "phone", (0..half - 1).map(|i| T0 + i)).await;
    assert_eq!(count(&store, "SELECT count(*) FROM locations").await, 0);
    ingest_points(&store, bob, "phone", [T0 + half].into_iter()).await;
    assert_eq!(count(&store, "SELECT count(*) FROM location_log").await, 0);
    assert_eq!(
        count(&store, "SELECT count(*) FROM locations").await,
        LOG_DRAIN_ROWS
    );
    assert_eq!(count(&store, RAWS).await, LOG_DRAIN_ROWS);
}

#[tokio::test]
async fn deleting_reaches_points_in_the_log_and_drained_ones() {
    let (_dir, store, users) = store_with_users(&["alice"]).await;
    let alice = users[0];
    ingest_points(&store, alice, "phone", (0..50).map(|i| T0 + i)).await;
    drain(&store).await;
    ingest_points(&store, alice, "phone", (50..100).map(|i| T0 + i)).await;
    let phone = device_id(&store, alice, "phone").await;

    // The oldest first, across both tables, at most the batch.
    let deleted = store
        .write(move |c| delete_oldest(c, phone, &(T0 + 40..T0 + 60), 15))
        .await
        .unwrap();
    assert_eq!(deleted, 15);
    let left: Vec<_> = store
        .location_window(phone, T0, T0 + 100, 1000)
        .await
        .unwrap()
        .iter()
        .map(|l| l.tst)
        .collect();
    let expected: Vec<_> = (0..40).chain(55..100).map(|i| T0 + i).collect();
    assert_eq!(left, expected);
    assert_eq!(store.delete_points(phone, T0..T0 + 100).await.unwrap(), 85);
    assert_eq!(count(&store, POINTS).await, 0);
    assert_eq!(count(&store, RAWS).await, 0);
}

#[tokio::test]
async fn a_new_device_takes_the_card_its_user_set() {
    let (_dir, store, users) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (users[0], users[1]);
    ingest_points(&store, alice, "phone", [T0].into_iter()).await;
    ingest_points(&store, bob, "phone", [T0].into_iter()).await;
    let card = Card {
        name: Some("Alice".into()),
        face: Some("iVBORw0KGgo=".into()),
    };
    let set_on = store
        .set_user_card(alice, card.clone(), at(T0 + 1))
        .await
        .unwrap();
    assert_eq!(
        set_on.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["phone"]
    );

    // Alice's new tablet shows her card from its first message; bob's new device has none.
    ingest_points(&store, alice, "tablet", [T0 + 5].into_iter()).await;
    ingest_points(&store, bob, "tablet", [T0 + 5].into_iter()).await;
    let tablet = device_id(&store, alice, "tablet").await;
    assert_eq!(store.card(tablet).await.unwrap(), Some(card));
    let bobs = device_id(&store, bob, "tablet").await;
    assert_eq!(store.card(bobs).await.unwrap(), None);
    let last = store.last_locations(Some(vec![alice])).await.unwrap();
    assert!(
        last.iter()
            .all(|l| l.card.as_ref().and_then(|c| c.name.as_deref()) == Some("Alice"))
    );
}

#[tokio::test]
async fn a_card_set_before_any_device_is_kept_and_inherited() {
    let (_dir, store, users) = store_with_users(&["alice", "bob"]).await;
    let (alice, bob) = (users[0], users[1]);
    let card = Card {
        name: Some("Alice".into()),
        face: Some("iVBORw0KGgo=".into()),
    };
    let set_on = store
        .set_user_card(alice, card.clone(), at(T0))
        .await
        .unwrap();
    assert!(set_on.is_empty());
    assert_eq!(store.user_card(alice).await.unwrap(), Some(card.clone()));
    assert_eq!(store.user_card(bob).await.unwrap(), None);

    // Her first phone takes it; a card the phone sends itself changes only that phone, and
    // the user's card stays what she set (a later device still takes hers).
    ingest_points(&store, alice, "phone", [T0 + 5].into_iter()).await;
    let phone = device_id(&store, alice, "phone").await;
    assert_eq!(store.card(phone).await.unwrap(), Some(card.clone()));
    let phones_own = Card {
        name: Some("Al's phone".into()),
        face: None,
    };
    let sent = message(
        alice,
        "phone",
        T0 + 6,
        OwnTracksPayload::Card(phones_own.clone()),
    );
    store
        .ingest_owntracks(vec![sent], at(T0 + 6))
        .await
        .unwrap();
    assert_eq!(store.card(phone).await.unwrap(), Some(phones_own));
    assert_eq!(store.user_card(alice).await.unwrap(), Some(card.clone()));
    ingest_points(&store, alice, "tablet", [T0 + 7].into_iter()).await;
    let tablet = device_id(&store, alice, "tablet").await;
    assert_eq!(store.card(tablet).await.unwrap(), Some(card));
}
