//! The web session's sliding expiry, as the browser sees it.

use crate::support::{ADMIN_PASSWORD, TestServer, client};
use serde_json::json;

/// The `porchlight_session` cookie a response sets, if any.
fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("porchlight_session="))
}

#[tokio::test]
async fn every_authenticated_call_renews_the_session_cookie() {
    let s = TestServer::start_with(None).await;
    let c = client();
    let login = c
        .post(s.url("/api/login"))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    let first = session_cookie(&login).unwrap();
    let value = first.split(';').next().unwrap().to_owned();

    let me = c.get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let renewed = session_cookie(&me).expect("an authenticated call renews the cookie");
    assert!(
        renewed.starts_with(&format!("{value};")),
        "same session: {renewed}"
    );
    for attribute in ["Max-Age=604800", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            renewed.contains(attribute),
            "{attribute} missing: {renewed}"
        );
    }
    let users = c.get(s.url("/api/users")).send().await.unwrap();
    assert!(session_cookie(&users).is_some());

    // No cookie for callers without a valid session, and logout's expiry is not overridden.
    let stranger = client().get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    assert_eq!(session_cookie(&stranger), None);
    let forged = client()
        .get(s.url("/api/me"))
        .header("cookie", "porchlight_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(session_cookie(&forged), None);
    let logout = c.post(s.url("/api/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert!(session_cookie(&logout).unwrap().contains("Max-Age=0"));
    s.stop().await;
}
