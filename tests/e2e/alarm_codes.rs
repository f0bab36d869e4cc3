//! Alarm PIN codes over the real HTTP API: create, list, change and delete one's own codes,
//! an admin managing anyone's, per-field validation errors, a PIN unique across users with a
//! 409 that names nobody, others' codes as 404, and no answer ever holding the PIN.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestServer;

async fn create_user(s: &TestServer, admin: &reqwest::Client, user: &str) -> reqwest::Client {
    let password = format!("{user} password 1");
    let body = json!({ "username": user, "password": password });
    let r = s.call(admin, Method::POST, "/api/users", Some(&body)).await;
    assert_eq!(r.status(), 201);
    s.signed_in(user, &password).await
}

async fn error_of(r: reqwest::Response) -> String {
    let body: Value = r.json().await.unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn codes_crud_with_validation_uniqueness_and_ownership() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let alice = create_user(&s, &admin, "alice").await;
    let bob = create_user(&s, &admin, "bob").await;

    // Signed out: 401.
    let anon = crate::support::client();
    let r = s.call(&anon, Method::GET, "/api/alarm/codes", None).await;
    assert_eq!(r.status(), 401);

    // Alice adds a code with a leading zero; defaults: arm, disarm, enabled, not duress.
    let r = s
        .call(
            &alice,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "Front door", "pin": "0815"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains("0815"), "the answer holds the PIN: {text}");
    let code: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(code["user"], "alice");
    assert_eq!(code["label"], "Front door");
    assert_eq!(
        (
            &code["arm"],
            &code["disarm"],
            &code["duress"],
            &code["enabled"]
        ),
        (&json!(true), &json!(true), &json!(false), &json!(true))
    );
    assert!(code.get("pin").is_none() && code["valid_from"].is_null());
    let alice_code = code["id"].as_i64().unwrap();

    // Per-field validation errors.
    for (body, field) in [
        (json!({"label": "x", "pin": "123"}), "pin:"),
        (json!({"label": "x", "pin": "12a4"}), "pin:"),
        (json!({"label": "x", "pin": "123456789"}), "pin:"),
        (json!({"label": " ", "pin": "1234"}), "label:"),
        (
            json!({"label": "x", "pin": "1234", "valid_from": 2000, "valid_until": 1000}),
            "valid_until:",
        ),
        (
            json!({"label": "x", "pin": "1234", "valid_from": -5}),
            "valid_from:",
        ),
    ] {
        let r = s
            .call(&alice, Method::POST, "/api/alarm/codes", Some(&body))
            .await;
        assert_eq!(r.status(), 400, "{body}");
        let e = error_of(r).await;
        assert!(e.starts_with(field), "{body}: {e}");
        assert!(!e.contains("12a4") && !e.contains("123456789"), "{e}");
    }

    // Bob cannot take Alice's PIN, and the answer does not say whose it is.
    let r = s
        .call(
            &bob,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "Mine", "pin": "0815"})),
        )
        .await;
    assert_eq!(r.status(), 409);
    let e = error_of(r).await;
    assert!(e.contains("already in use") && !e.contains("alice"), "{e}");
    let r = s
        .call(
            &bob,
            Method::POST,
            "/api/alarm/codes",
            Some(
                &json!({"label": "Duress", "pin": "4711", "duress": true, "arm": false,
                         "valid_from": 1000, "valid_until": 4102444800000i64}),
            ),
        )
        .await;
    assert_eq!(r.status(), 201);
    let bob_code: Value = r.json().await.unwrap();
    assert_eq!(bob_code["duress"], true);
    assert_eq!(bob_code["arm"], false);
    assert_eq!(bob_code["valid_until"], 4102444800000i64);
    let bob_code = bob_code["id"].as_i64().unwrap();

    // Each sees their own; a non-admin may not ask for another's; the admin sees all or one.
    let list = |c: &reqwest::Client, path: &'static str| {
        let c = c.clone();
        let s = &s;
        async move {
            let r = s.call(&c, Method::GET, path, None).await;
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, mine) = list(&alice, "/api/alarm/codes").await;
    assert_eq!(st, 200);
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], alice_code);
    let (st, _) = list(&alice, "/api/alarm/codes?user=bob").await;
    assert_eq!(st, 403);
    let (_, all) = list(&admin, "/api/alarm/codes").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, bobs) = list(&admin, "/api/alarm/codes?user=bob").await;
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    assert_eq!(bobs[0]["id"], bob_code);
    let (st, _) = list(&admin, "/api/alarm/codes?user=nobody").await;
    assert_eq!(st, 404);

    // Someone else's code is not found for a non-admin: read, change or delete.
    let path = format!("/api/alarm/codes/{bob_code}");
    let r = s
        .call(
            &alice,
            Method::PATCH,
            &path,
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = s.call(&alice, Method::DELETE, &path, None).await;
    assert_eq!(r.status(), 404);

    // Alice changes her code: a new PIN, no arming, a window end; then clears the window.
    let path = format!("/api/alarm/codes/{alice_code}");
    let r = s
        .call(
            &alice,
            Method::PATCH,
            &path,
            Some(&json!({"pin": "24680", "arm": false, "valid_until": 4102444800000i64})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("24680"));
    let changed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(changed["label"], "Front door");
    assert_eq!(changed["arm"], false);
    assert_eq!(changed["valid_until"], 4102444800000i64);
    let r = s
        .call(
            &alice,
            Method::PATCH,
            &path,
            Some(&json!({"valid_until": null})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["valid_until"].is_null());
    // Taking Bob's PIN by a change is refused too; a bad PIN names the field.
    let r = s
        .call(&alice, Method::PATCH, &path, Some(&json!({"pin": "4711"})))
        .await;
    assert_eq!(r.status(), 409);
    let r = s
        .call(&alice, Method::PATCH, &path, Some(&json!({"pin": "None"})))
        .await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.starts_with("pin:"));
    // The old PIN is free again now that Alice's code moved to 24680.
    let r = s
        .call(
            &bob,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "Garage", "pin": "0815"})),
        )
        .await;
    assert_eq!(r.status(), 201);

    // The admin manages anyone's codes: creates one for Alice, deletes Bob's.
    let r = s
        .call(
            &admin,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "Cleaner", "pin": "1357", "user": "alice", "enabled": false})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let cleaner: Value = r.json().await.unwrap();
    assert_eq!(cleaner["user"], "alice");
    assert_eq!(cleaner["enabled"], false);
    // Alice may not create codes for Bob.
    let r = s
        .call(
            &alice,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "x", "pin": "9753", "user": "bob"})),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = s
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/alarm/codes/{bob_code}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/alarm/codes/{bob_code}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let (_, mine) = list(&alice, "/api/alarm/codes").await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn probing_for_taken_pins_through_the_api_is_throttled() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let alice = create_user(&s, &admin, "alice").await;
    let mallory = create_user(&s, &admin, "mallory").await;
    let r = s
        .call(
            &alice,
            Method::POST,
            "/api/alarm/codes",
            Some(&json!({"label": "Door", "pin": "2580"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    // Mallory searches for taken PINs: after a few "in use" answers, she must wait.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = s
            .call(
                &mallory,
                Method::POST,
                "/api/alarm/codes",
                Some(&json!({"label": "Probe", "pin": "2580"})),
            )
            .await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let e = error_of(r).await;
            assert!(e.contains("already in use. Try again in"), "{e}");
        }
    }
    assert_eq!(statuses, [409, 409, 409, 409, 409, 429]);
    s.stop().await;
}
