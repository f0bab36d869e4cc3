//! Web login, sessions, API tokens and account administration over real HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, TestServer, client, eventually};

#[tokio::test]
async fn everything_under_api_needs_auth_except_login_and_health() {
    let s = TestServer::start_with(None).await;
    let c = client();
    for path in [
        "/api/me",
        "/api/users",
        "/api/devices",
        "/api/tokens",
        "/api/audit",
    ] {
        let r = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let r = c.post(s.url("/api/logout")).send().await.unwrap();
    assert_eq!(r.status(), 401, "logout without a session");
    let health = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "ok");
    s.stop().await;
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let s = TestServer::start_with(None).await;
    let c = client();
    let r = c
        .post(s.url("/api/login"))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Max-Age=604800"), "{cookie}");
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["role"], "admin");

    let me: Value = c
        .get(s.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");

    // The old cookie value must stop working server-side, not just be forgotten by the client.
    let value = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        c.post(s.url("/api/logout")).send().await.unwrap().status(),
        204
    );
    let replay = client()
        .get(s.url("/api/me"))
        .header("cookie", value)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn wrong_passwords_are_refused_slowed_down_and_audited() {
    let s = TestServer::start_with(None).await;
    // Sign in before the attack: the admin account itself is throttled during it.
    let admin = s.admin().await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = c
            .post(s.url("/api/login"))
            .json(&json!({ "username": "admin", "password": "not the password" }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(&statuses[..6], &[401; 6]);
    assert_eq!(
        statuses[6], 429,
        "the seventh attempt in a row must be throttled"
    );

    // Bad input gets a JSON error, not a crash.
    for body in ["{bad json", "[]", "{\"username\": 1}"] {
        let r = c
            .post(s.url("/api/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
        let err: Value = r.json().await.unwrap();
        assert!(err["error"].is_string());
    }
    let huge = "x".repeat(100_000);
    let r = c
        .post(s.url("/api/login"))
        .json(&json!({ "username": "admin", "password": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Audited (the audit queue is written asynchronously), and no password in the log.
    let audit = eventually(|| async {
        let audit: Value = admin
            .get(s.url("/api/audit"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = audit.as_array().unwrap();
        let failed = rows
            .iter()
            .filter(|r| r["kind"] == "http_login" && r["code"] == 401)
            .count();
        let throttled = rows
            .iter()
            .filter(|r| r["kind"] == "http_login" && r["code"] == 429)
            .count();
        ((failed, throttled) == (6, 1)).then_some(audit)
    })
    .await;
    assert!(!audit.to_string().contains("not the password"));
    s.stop().await;
}

#[tokio::test]
async fn api_tokens_are_shown_once_work_as_bearer_and_can_be_revoked() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let created: Value = admin
        .post(s.url("/api/tokens"))
        .json(&json!({ "name": "backup" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("plt_"));
    let id = created["info"]["id"].as_i64().unwrap();

    let listed: Value = admin
        .get(s.url("/api/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(&token),
        "a listing must not repeat the token"
    );

    let script = client();
    let me = script
        .get(s.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let wrong = script
        .get(s.url("/api/me"))
        .bearer_auth("plt_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let r = admin
        .delete(s.url(&format!("/api/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after = script
        .get(s.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn admins_manage_users_and_users_cannot() {
    let s = TestServer::start_with(None).await;
    let admin = s.admin().await;
    let status = |r: reqwest::Response| r.status().as_u16();
    let new_alice = json!({ "username": "alice" });

    let r = s
        .call(&admin, Method::POST, "/api/users", Some(&new_alice))
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let alice_pw = created["password"].as_str().unwrap().to_owned();
    assert_eq!(created["user"]["role"], "user");
    let dup = s
        .call(&admin, Method::POST, "/api/users", Some(&new_alice))
        .await;
    assert_eq!(status(dup), 409);
    let bad = json!({ "username": "Bad/Name" });
    assert_eq!(
        status(s.call(&admin, Method::POST, "/api/users", Some(&bad)).await),
        400
    );

    let alice = s.signed_in("alice", &alice_pw).await;
    for path in ["/api/users", "/api/audit"] {
        assert_eq!(
            status(s.call(&alice, Method::GET, path, None).await),
            403,
            "{path}"
        );
    }
    let takeover = json!({ "password": "taking over admin" });
    let r = s
        .call(
            &alice,
            Method::PUT,
            "/api/users/admin/password",
            Some(&takeover),
        )
        .await;
    assert_eq!(status(r), 403);
    let alice_elsewhere = s.signed_in("alice", &alice_pw).await;
    let own = json!({ "password": "alice new password", "current_password": alice_pw });
    let r = s
        .call(&alice, Method::PUT, "/api/users/alice/password", Some(&own))
        .await;
    assert_eq!(status(r), 204);
    // Changing the password ends the other sessions (the caller's own stays).
    assert_eq!(
        status(s.call(&alice_elsewhere, Method::GET, "/api/me", None).await),
        401
    );
    assert_eq!(
        status(s.call(&alice, Method::GET, "/api/me", None).await),
        200
    );
    s.signed_in("alice", "alice new password").await;

    let r = s
        .call(&admin, Method::DELETE, "/api/users/alice", None)
        .await;
    assert_eq!(status(r), 204);
    let r = s
        .call(&admin, Method::DELETE, "/api/users/admin", None)
        .await;
    assert_eq!(status(r), 400, "the last admin stays");
    s.stop().await;
}
