//! Deleting OwnTracks history end to end: one point or a range over the HTTP API, deleting a
//! device while keeping or purging its history, and each user's retention enforced by the
//! running server's background service. Points go in through HTTP `/pub` and come out of the
//! Recorder API.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, eventually};

const DAY: i64 = 24 * 3600;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn create_user(s: &TestServer, admin: &reqwest::Client, user: &str) -> reqwest::Client {
    let body = json!({ "username": user, "password": format!("{user} password 1") });
    let r = s.call(admin, Method::POST, "/api/users", Some(&body)).await;
    assert_eq!(r.status(), 201);
    s.signed_in(user, &format!("{user} password 1")).await
}

/// Posts a location at `tst` as `user`'s `device` (password login) through `/pub`.
async fn post_point(s: &TestServer, user: &str, device: &str, tst: i64) {
    let r = reqwest::Client::new()
        .post(s.url("/pub"))
        .basic_auth(user, Some(format!("{user} password 1")))
        .header("x-limit-d", device)
        .body(json!({"_type": "location", "lat": 51.5, "lon": -0.1, "tst": tst}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The `tst`s the Recorder API answers for `user`'s `device`.
async fn tsts(s: &TestServer, client: &reqwest::Client, user: &str, device: &str) -> Vec<i64> {
    let path =
        format!("/api/0/locations?user={user}&device={device}&from=1000000000&to=4000000000");
    let body: Value = s
        .call(client, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    body["data"]
        .as_array()
        .map(|a| a.iter().map(|p| p["tst"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

/// The Recorder API's device list of `user`.
async fn devices(s: &TestServer, client: &reqwest::Client, user: &str) -> Vec<String> {
    let body: Value = s
        .call(
            client,
            Method::GET,
            &format!("/api/0/list?user={user}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

async fn device_id(s: &TestServer, user: &str, device: &str) -> i64 {
    let store = s.running.store();
    let user = store.find_user(user).await.unwrap();
    store
        .find_owntracks_device(user.id, device)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn points_are_deleted_one_or_by_range_by_their_owner_or_an_admin() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let alice = create_user(&s, &admin, "alice").await;
    let carol = create_user(&s, &admin, "carol").await;
    let t = now_secs() - 1000;
    for i in 0..10 {
        post_point(&s, "alice", "phone", t + i).await;
    }
    let id = device_id(&s, "alice", "phone").await;
    let points = format!("/api/owntracks/devices/{id}/locations");

    // Someone else's device: as if it did not exist.
    let one = format!("{points}?tst={}", t + 3);
    assert_eq!(
        s.call(&carol, Method::DELETE, &one, None).await.status(),
        404
    );
    let r = s.call(&alice, Method::DELETE, &one, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 1);
    assert_eq!(
        s.call(&alice, Method::DELETE, &one, None).await.status(),
        404
    );

    // A range in Unix milliseconds, `to` exclusive: t+5, t+6, t+7.
    let range = format!("{points}?from={}&to={}", (t + 5) * 1000, (t + 8) * 1000);
    let r = s.call(&admin, Method::DELETE, &range, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 3);
    assert_eq!(
        tsts(&s, &alice, "alice", "phone").await,
        vec![t, t + 1, t + 2, t + 4, t + 8, t + 9]
    );
    // Open-ended: everything from t+8 on.
    let tail = format!("{points}?from={}", (t + 8) * 1000);
    let r = s.call(&alice, Method::DELETE, &tail, None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 2);

    for bad in [
        points.clone(),
        format!("{points}?tst={t}&from=0"),
        format!("{points}?from=2000&to=1000"),
        format!("{points}?tst=soon"),
    ] {
        assert_eq!(
            s.call(&alice, Method::DELETE, &bad, None).await.status(),
            400,
            "{bad}"
        );
    }
    assert_eq!(
        tsts(&s, &alice, "alice", "phone").await,
        vec![t, t + 1, t + 2, t + 4]
    );
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_device_keeps_or_purges_its_history_as_asked() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let alice = create_user(&s, &admin, "alice").await;
    let carol = create_user(&s, &admin, "carol").await;
    let mut keys = Vec::new();
    for name in ["phone", "tablet", "watch"] {
        let body = json!({ "name": name, "mode": "http", "encryption": true });
        let r = s
            .call(&alice, Method::POST, "/api/devices", Some(&body))
            .await;
        assert_eq!(r.status(), 201);
        let device: Value = r.json().await.unwrap();
        keys.push(device["mqtt_password"].as_str().unwrap().to_owned());
    }
    let t = now_secs() - 100;
    for name in ["phone", "tablet", "watch"] {
        post_point(&s, "alice", name, t).await;
        post_point(&s, "alice", name, t + 1).await;
    }
    let phone = device_id(&s, "alice", "phone").await;

    // The choice is required; others cannot delete it.
    let path = format!("/api/owntracks/devices/{phone}");
    assert_eq!(
        s.call(&alice, Method::DELETE, &path, None).await.status(),
        400
    );
    let keep = format!("{path}?history=keep");
    assert_eq!(
        s.call(&carol, Method::DELETE, &keep, None).await.status(),
        404
    );

    // Keep: the device key is revoked, the history stays listed and readable.
    let r = s.call(&alice, Method::DELETE, &keep, None).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["history"], "kept");
    assert_eq!(answer["device_key_removed"], true);
    let refused = reqwest::Client::new()
        .post(s.url("/pub"))
        .basic_auth("alice", Some(&keys[0]))
        .body(json!({"_type": "location", "lat": 1.0, "lon": 1.0, "tst": t + 2}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(tsts(&s, &alice, "alice", "phone").await, vec![t, t + 1]);
    assert!(
        devices(&s, &alice, "alice")
            .await
            .contains(&"phone".to_owned())
    );

    // Purge through the OwnTracks device: history, device and encryption key go.
    let tablet = device_id(&s, "alice", "tablet").await;
    let purge = format!("/api/owntracks/devices/{tablet}?history=purge");
    let r = s.call(&alice, Method::DELETE, &purge, None).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        (
            answer["history"].as_str(),
            answer["points_deleted"].as_i64()
        ),
        (Some("purged"), Some(2))
    );
    // Purge through the device key's own endpoint.
    let r = s
        .call(
            &alice,
            Method::DELETE,
            "/api/devices/alice/watch?history=purge",
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(devices(&s, &alice, "alice").await, vec!["phone".to_owned()]);
    assert!(tsts(&s, &alice, "alice", "tablet").await.is_empty());
    let listed: Value = s
        .call(&alice, Method::GET, "/api/owntracks/keys", None)
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["device"].clone())
        .collect();
    assert_eq!(
        listed,
        vec![json!("phone")],
        "purged devices lose their encryption key"
    );
    assert_eq!(
        s.call(&alice, Method::DELETE, &purge, None).await.status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn a_user_s_retention_deletes_their_old_points_and_no_one_else_s() {
    let s = TestServer::start_with_config(None, "[owntracks]\nretention_check_secs = 1\n").await;
    let admin = s.admin().await;
    let alice = create_user(&s, &admin, "alice").await;
    let bob = create_user(&s, &admin, "bob").await;
    let now = now_secs();
    let old = [now - 10 * DAY, now - 2 * DAY];
    let recent = [now - 3600, now - 60];
    for user in ["alice", "bob"] {
        for tst in old.iter().chain(&recent) {
            post_point(&s, user, "phone", *tst).await;
        }
    }
    let setting = "/api/users/alice/location-retention";
    let r = s.call(&alice, Method::GET, setting, None).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["location_retention_days"],
        Value::Null
    );
    let one_day = json!({ "location_retention_days": 1 });
    assert_eq!(
        s.call(&bob, Method::PUT, setting, Some(&one_day))
            .await
            .status(),
        403
    );
    assert_eq!(s.call(&bob, Method::GET, setting, None).await.status(), 403);
    for bad in [
        json!({ "location_retention_days": 0 }),
        json!({ "location_retention_days": -1 }),
    ] {
        let status = s
            .call(&alice, Method::PUT, setting, Some(&bad))
            .await
            .status();
        // 400 from the store's bounds, 422 for what is not a number of days at all.
        assert!(status == 400 || status == 422, "{bad}: {status}");
    }
    let r = s.call(&alice, Method::PUT, setting, Some(&one_day)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["location_retention_days"],
        1
    );
    // An admin reads anyone's.
    let r = s.call(&admin, Method::GET, setting, None).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["location_retention_days"],
        1
    );

    eventually(|| async {
        (tsts(&s, &alice, "alice", "phone").await == recent.to_vec()).then_some(())
    })
    .await;
    let all: Vec<i64> = old.iter().chain(&recent).copied().collect();
    assert_eq!(tsts(&s, &bob, "bob", "phone").await, all);

    // Back to forever: nothing more is deleted.
    let forever = json!({ "location_retention_days": null });
    let r = s.call(&alice, Method::PUT, setting, Some(&forever)).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["location_retention_days"],
        Value::Null
    );
    s.stop().await;
}
