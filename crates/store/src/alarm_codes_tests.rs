//! Alarm PIN codes on a real SQLite file: uniqueness, matching by tag (argon2 runs counted),
//! updates, removal with the user, and hashes that never hold the PIN.

use std::time::{Duration, SystemTime};

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;

use crate::{AlarmCodeChange, Error, NewAlarmCode, Store};

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
    (dir, store)
}

fn code(label: &str, pin: &str) -> NewAlarmCode {
    NewAlarmCode {
        label: label.into(),
        pin: Secret::new(pin),
        may_arm: true,
        may_disarm: true,
        duress: false,
        enabled: true,
        valid_from: None,
        valid_until: None,
    }
}

async fn user(store: &Store, name: &str) -> i64 {
    store
        .create_user(
            name,
            Role::User,
            &Secret::new(format!("{name} password 1")),
            SystemTime::now(),
        )
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn a_pin_matches_its_code_with_leading_zeros_and_nothing_else() {
    let (_dir, store) = temp_store();
    let alice = user(&store, "alice").await;
    let now = SystemTime::now();
    let added = store
        .add_alarm_code(alice, code("Front door", "0042"), now)
        .await
        .unwrap();
    assert_eq!(added.label, "Front door");
    assert_eq!(added.username, "alice");
    let found = store.match_alarm_pin("0042").await.unwrap();
    assert_eq!(found.code, Some(added));
    for wrong in ["42", "00042", "0043", "", "None", "004２"] {
        assert_eq!(
            store.match_alarm_pin(wrong).await.unwrap().code,
            None,
            "{wrong:?}"
        );
    }
    // The file holds a PHC string of the PIN profile, never the PIN.
    let hashes = store
        .read(|c| {
            let mut s = c.prepare("SELECT pin_hash FROM alarm_codes")?;
            let v = s
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(v)
        })
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert!(hashes[0].starts_with("$argon2id$v=19$m=8192,t=1,p=2$"));
    assert!(!hashes[0].contains("0042"));
}

#[tokio::test]
async fn a_pin_is_unique_across_users_and_disabled_codes_without_naming_the_holder() {
    let (_dir, store) = temp_store();
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let now = SystemTime::now();
    let mut disabled = code("Old", "1234");
    disabled.enabled = false;
    let a = store.add_alarm_code(alice, disabled, now).await.unwrap();
    let err = store
        .add_alarm_code(bob, code("Mine", "1234"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinTaken), "{err}");
    assert!(!err.to_string().contains("alice"));
    let err = store
        .add_alarm_code(alice, code("Again", "1234"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinTaken));
    // A code may keep (re-set) its own PIN; another code may not take it by an update.
    store
        .update_alarm_code(
            a.id,
            AlarmCodeChange {
                pin: Some(Secret::new("1234")),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    let b = store
        .add_alarm_code(bob, code("Mine", "5678"), now)
        .await
        .unwrap();
    let err = store
        .update_alarm_code(
            b.id,
            AlarmCodeChange {
                pin: Some(Secret::new("1234")),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinTaken));
    // Once the holder is removed the PIN is free.
    assert!(store.remove_alarm_code(a.id).await.unwrap());
    store
        .add_alarm_code(bob, code("Now mine", "1234"), now)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_pins_labels_and_windows_are_refused_with_the_field_named() {
    let (_dir, store) = temp_store();
    let alice = user(&store, "alice").await;
    let now = SystemTime::now();
    for (c, needle) in [
        (code("x", "123"), "digits"),
        (code("x", "12a45"), "digits"),
        (code("x", "123456789"), "digits"),
        (code("  ", "1234"), "label"),
    ] {
        let err = store.add_alarm_code(alice, c, now).await.unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let mut window = code("x", "1234");
    window.valid_from = Some(now);
    window.valid_until = Some(now - Duration::from_secs(1));
    let err = store.add_alarm_code(alice, window, now).await.unwrap_err();
    assert!(err.to_string().contains("valid_from"), "{err}");
    let err = store
        .add_alarm_code(9999, code("x", "1234"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn updates_change_only_what_is_given_and_a_new_pin_replaces_the_old() {
    let (_dir, store) = temp_store();
    let alice = user(&store, "alice").await;
    // Whole milliseconds, as the store keeps times.
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
    let c = store
        .add_alarm_code(alice, code("Door", "2468"), t0)
        .await
        .unwrap();
    let t1 = t0 + Duration::from_secs(5);
    let until = t0 + Duration::from_secs(3600);
    let changed = store
        .update_alarm_code(
            c.id,
            AlarmCodeChange {
                may_arm: Some(false),
                duress: Some(true),
                pin: Some(Secret::new("13579")),
                valid_until: Some(Some(until)),
                ..Default::default()
            },
            t1,
        )
        .await
        .unwrap();
    assert_eq!(changed.label, "Door");
    assert!(!changed.may_arm && changed.may_disarm && changed.duress && changed.enabled);
    assert_eq!(changed.valid_until, Some(until));
    assert_eq!(changed.created_at, c.created_at);
    assert!(changed.updated_at > c.updated_at);
    assert_eq!(store.match_alarm_pin("2468").await.unwrap().code, None);
    assert_eq!(
        store.match_alarm_pin("13579").await.unwrap().code,
        Some(changed)
    );
    let err = store
        .update_alarm_code(4242, AlarmCodeChange::default(), t1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    // A window whose one side moves past the other is refused.
    let err = store
        .update_alarm_code(
            c.id,
            AlarmCodeChange {
                valid_from: Some(Some(until)),
                ..Default::default()
            },
            t1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadInput(_)));
    // Removing the user removes their codes.
    store.remove_user("alice").await.unwrap();
    assert!(store.alarm_codes(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn with_200_codes_a_pin_costs_about_one_argon2_not_one_per_code() {
    let (_dir, store) = temp_store();
    let now = SystemTime::now();
    let mut ids = Vec::new();
    for u in 0..4 {
        let id = user(&store, &format!("user{u}")).await;
        ids.push(id);
    }
    for n in 0..200 {
        let pin = format!("{:04}", 1000 + n * 37);
        store
            .add_alarm_code(ids[n % 4], code(&format!("code {n}"), &pin), now)
            .await
            .unwrap();
    }
    assert_eq!(store.alarm_codes(None).await.unwrap().len(), 200);
    let mut total = 0;
    for n in (0..200).step_by(20) {
        let pin = format!("{:04}", 1000 + n * 37);
        let m = store.match_alarm_pin(&pin).await.unwrap();
        assert_eq!(m.code.map(|c| c.label), Some(format!("code {n}")));
        assert!(m.hashes_checked <= 2, "{pin}: {}", m.hashes_checked);
        total += m.hashes_checked;
    }
    // Wrong PINs: one argon2 (the decoy, or the one code sharing the tag), never 200.
    for wrong in ["0001", "99999999", "5555", "00000"] {
        let m = store.match_alarm_pin(wrong).await.unwrap();
        assert_eq!(m.code, None);
        assert!(
            (1..=2).contains(&m.hashes_checked),
            "{wrong}: {}",
            m.hashes_checked
        );
        total += m.hashes_checked;
    }
    assert!(total <= 20, "14 attempts cost {total} argon2 runs");
    // Not a PIN: no argon2 at all.
    assert_eq!(
        store.match_alarm_pin("None").await.unwrap().hashes_checked,
        0
    );
}

#[tokio::test]
async fn a_code_hashed_under_an_older_profile_still_matches_by_its_phc_string() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let (_dir, store) = temp_store();
    let alice = user(&store, "alice").await;
    let c = store
        .add_alarm_code(alice, code("Door", "97531"), SystemTime::now())
        .await
        .unwrap();
    // Rewrite its hash as an earlier profile would have made it (other m, t, p).
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let old = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(16 * 1024, 2, 1, None).unwrap(),
    )
    .hash_password(b"97531", &salt)
    .unwrap()
    .to_string();
    let id = c.id;
    store
        .write(move |conn| {
            conn.execute(
                "UPDATE alarm_codes SET pin_hash = ?1 WHERE id = ?2",
                rusqlite::params![old, id],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let found = store.match_alarm_pin("97531").await.unwrap();
    assert_eq!(found.code.map(|c| c.id), Some(id));
    assert_eq!(found.hashes_checked, 1);
    assert_eq!(store.match_alarm_pin("97532").await.unwrap().code, None);
}

#[tokio::test]
async fn a_pin_check_does_not_wait_for_password_hashing() {
    use crate::hashing::{HASH_GATE, HashPriority, MAX_CONCURRENT_HASHES};
    let (_dir, store) = temp_store();
    let alice = user(&store, "alice").await;
    store
        .add_alarm_code(alice, code("Door", "8642"), SystemTime::now())
        .await
        .unwrap();
    // Every password argon2 slot is held (as by a burst of logins) while the PIN is checked.
    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT_HASHES {
        held.push(HASH_GATE.acquire(HashPriority::Normal).await.unwrap());
    }
    let found = tokio::time::timeout(Duration::from_secs(30), store.match_alarm_pin("8642"))
        .await
        .expect("a PIN check waited for the password gate")
        .unwrap();
    drop(held);
    assert_eq!(found.code.map(|c| c.label), Some("Door".to_owned()));
}
