//! `GET /api/audit` filtered by `kind`, `user` and `result` on the server, paged with `before`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::raw_mqtt;
use crate::support::{TestServer, eventually, mqtt_connect};

async fn get(s: &TestServer, c: &reqwest::Client, path: &str) -> (u16, Value) {
    let r = s.call(c, Method::GET, path, None).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn login(s: &TestServer, user: &str, password: &str) -> u16 {
    crate::support::client()
        .post(s.url("/api/login"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn ids(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn each_filter_answers_exactly_the_matching_rows_and_pages_neither_repeat_nor_skip() {
    let s = TestServer::start().await;
    let admin = s.admin().await;
    for user in ["bob", "carol"] {
        let body = json!({ "username": user, "password": format!("{user} password 1") });
        let r = s
            .call(&admin, Method::POST, "/api/users", Some(&body))
            .await;
        assert_eq!(r.status(), 201);
    }
    // Web sign-ins that succeed and fail, for two users.
    assert_eq!(login(&s, "bob", "bob password 1").await, 200);
    assert_eq!(login(&s, "bob", "bob password 1").await, 200);
    assert_eq!(login(&s, "bob", "wrong").await, 401);
    assert_eq!(login(&s, "carol", "carol password 1").await, 200);
    assert_eq!(login(&s, "carol", "wrong").await, 401);
    assert_eq!(login(&s, "carol", "wrong again").await, 401);
    // MQTT: bob connects (and later leaves), carol is refused.
    let (_bob, _events, bob_task) =
        mqtt_connect(&s, "bob-cli", "bob", "bob password 1", None).await;
    let (code, _socket) = raw_mqtt::send(
        s.mqtt_addr(),
        &raw_mqtt::connect("carol-cli", "carol", "nope"),
    )
    .await;
    assert_ne!(code, 0);
    bob_task.abort();

    // Everything written (the audit sink writes in batches): the unfiltered log, frozen at
    // its newest id so rows written later (none expected) cannot change the comparison.
    let all = eventually(|| async {
        let (status, rows) = get(&s, &admin, "/api/audit?limit=1000").await;
        assert_eq!(status, 200, "{rows}");
        let kinds: Vec<&str> = rows
            .as_array()?
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
        (count("http_login") >= 7 && count("mqtt_connect") >= 2 && count("mqtt_disconnect") >= 1)
            .then_some(rows)
    })
    .await;
    let newest = ids(&all)[0];
    let before = newest + 1;
    let rows = all.as_array().unwrap();
    // The result field follows the codes here: sign-ins 200 / 401, CONNACK 0 / 4-5.
    for e in rows {
        let ok = matches!(e["code"].as_i64(), None | Some(0) | Some(200..=299));
        assert_eq!(e["result"], if ok { "ok" } else { "failed" }, "{e}");
    }

    let kinds = [
        None,
        Some("http_login"),
        Some("mqtt_connect"),
        Some("mqtt_disconnect"),
    ];
    let users = [None, Some("bob"), Some("carol"), Some("admin")];
    let results = [None, Some("ok"), Some("failed")];
    let mut non_empty = 0;
    for kind in kinds {
        for user in users {
            for result in results {
                let mut path = format!("/api/audit?limit=1000&before={before}");
                for (k, v) in [("kind", kind), ("user", user), ("result", result)] {
                    if let Some(v) = v {
                        path.push_str(&format!("&{k}={v}"));
                    }
                }
                let expected: Vec<i64> = rows
                    .iter()
                    .filter(|e| kind.is_none_or(|k| e["kind"] == k))
                    .filter(|e| user.is_none_or(|u| e["username"] == u))
                    .filter(|e| result.is_none_or(|r| e["result"] == r))
                    .map(|e| e["id"].as_i64().unwrap())
                    .collect();
                let (status, got) = get(&s, &admin, &path).await;
                assert_eq!(status, 200, "{path}: {got}");
                assert_eq!(ids(&got), expected, "{path}");
                non_empty += usize::from(!expected.is_empty());

                // Pages of 2 through `before`: the same rows, none twice, none skipped.
                let mut paged = Vec::new();
                let mut cursor = before;
                loop {
                    let page_path = path.replacen(
                        &format!("limit=1000&before={before}"),
                        &format!("limit=2&before={cursor}"),
                        1,
                    );
                    let (status, page) = get(&s, &admin, &page_path).await;
                    assert_eq!(status, 200, "{page_path}: {page}");
                    let page = ids(&page);
                    assert!(page.len() <= 2);
                    let Some(last) = page.last() else { break };
                    cursor = *last;
                    paged.extend(page);
                }
                assert_eq!(paged, expected, "{path} paged");
            }
        }
    }
    // The combinations above are not vacuous: e.g. carol's failed sign-ins, bob's MQTT connect.
    assert!(non_empty >= 20, "{non_empty} non-empty combinations");
    let (_, carol_failed) = get(
        &s,
        &admin,
        "/api/audit?kind=http_login&user=carol&result=failed",
    )
    .await;
    assert_eq!(carol_failed.as_array().unwrap().len(), 2, "{carol_failed}");
    let (_, refused) = get(&s, &admin, "/api/audit?kind=mqtt_connect&result=failed").await;
    assert_eq!(refused.as_array().unwrap().len(), 1, "{refused}");
    assert_eq!(refused[0]["client_id"], "carol-cli");

    // Unknown kinds and results are refused; empty values do not filter.
    let (status, body) = get(&s, &admin, "/api/audit?kind=nope").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("http_login"), "{body}");
    let (status, _) = get(&s, &admin, "/api/audit?result=maybe").await;
    assert_eq!(status, 400);
    let (status, unfiltered) = get(
        &s,
        &admin,
        &format!("/api/audit?limit=1000&kind=&user=&result=&before={before}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&unfiltered), ids(&all));

    // Admins only.
    let bob = s.signed_in("bob", "bob password 1").await;
    let (status, _) = get(&s, &bob, "/api/audit?user=bob").await;
    assert_eq!(status, 403);
    s.stop().await;
}
