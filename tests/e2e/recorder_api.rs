//! The OwnTracks Recorder-compatible read API (`/api/0/…`) over real HTTP: known points put in
//! through the store, answers checked field by field; GeoJSON, GPX, CSV and XML read with real
//! parsers; who may see what; HTTP Basic with a password or a device key; bad input.

use std::time::SystemTime;

use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use porchlight_store::{
    Card, IngestOutcome, LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher,
};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::support::{TestServer, client};

/// 2025-06-15T15:06:40Z.
const T0: i64 = 1_750_000_000;
const ALICE_PASSWORD: &str = "alice password 1";
const BOB_PASSWORD: &str = "bob password 1";
/// The geohash article's example position; its 7-character geohash is `u4pruyd`.
const LAT: f64 = 57.64911;
const LON: f64 = 10.40744;

struct Fixture {
    server: TestServer,
    /// Alice's device key for `phone`.
    alice_key: String,
}

fn location(user_id: i64, device: &str, tst: i64, lat: f64, alt: f64) -> OwnTracksMessage {
    OwnTracksMessage {
        publisher: OwnTracksPublisher {
            user_id,
            device: device.into(),
        },
        tst,
        payload: OwnTracksPayload::Location(LocationFields {
            lat,
            lon: LON,
            acc: Some(5.0),
            alt: Some(alt),
            vel: Some(12.0),
            batt: Some(81),
            tid: Some("al".into()),
            ..LocationFields::default()
        }),
        raw: format!(
            r#"{{"_type":"location","lat":{lat},"lon":{LON},"tst":{tst},"acc":5,"alt":{alt},"vel":12,"batt":81,"tid":"al","SSID":"home, sweet \"home\"","inregions":["Home"]}}"#
        ),
    }
}

/// Alice's `phone` with points at T0, T0+60, T0+120 (and a card); Bob's `tablet` with one.
async fn fixture() -> Fixture {
    let server = TestServer::start_with(None).await;
    let store = server.running.store();
    let now = SystemTime::now();
    let alice = store
        .create_user("alice", Role::User, &Secret::new(ALICE_PASSWORD), now)
        .await
        .unwrap();
    let bob = store
        .create_user("bob", Role::User, &Secret::new(BOB_PASSWORD), now)
        .await
        .unwrap();
    let (_, key) = store.add_device("alice", "phone", now).await.unwrap();
    let mut batch = vec![
        location(alice.id, "phone", T0, LAT, 100.5),
        location(alice.id, "phone", T0 + 60, LAT + 0.001, 101.0),
        location(alice.id, "phone", T0 + 120, LAT + 0.002, 102.25),
        location(bob.id, "tablet", T0 + 30, 48.0, 200.0),
    ];
    batch.push(OwnTracksMessage {
        publisher: OwnTracksPublisher {
            user_id: alice.id,
            device: "phone".into(),
        },
        tst: T0 + 1,
        payload: OwnTracksPayload::Card(Card {
            name: Some("Alice A.".into()),
            face: None,
        }),
        raw: r#"{"_type":"card","name":"Alice A."}"#.into(),
    });
    let outcomes = store.ingest_owntracks(batch, now).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == IngestOutcome::New),
        "{outcomes:?}"
    );
    Fixture {
        server,
        alice_key: key.expose().to_owned(),
    }
}

impl Fixture {
    async fn get_as(&self, user: &str, password: &str, path_and_query: &str) -> Response {
        client()
            .get(self.server.url(path_and_query))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap()
    }

    async fn alice(&self, path_and_query: &str) -> Response {
        self.get_as("alice", ALICE_PASSWORD, path_and_query).await
    }

    async fn alice_json(&self, path_and_query: &str) -> Value {
        let r = self.alice(path_and_query).await;
        assert_eq!(r.status(), 200, "{path_and_query}");
        r.json().await.unwrap()
    }
}

const DAY: &str = "/api/0/locations?user=alice&device=phone&from=2025-06-15&to=2025-06-16";

fn tsts(data: &Value) -> Vec<i64> {
    data.as_array()
        .unwrap()
        .iter()
        .map(|p| p["tst"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn locations_answer_the_recorders_json_field_by_field() {
    let f = fixture().await;
    let body = f.alice_json(DAY).await;
    assert_eq!(body["count"], 3);
    assert_eq!(body["status"], 200);
    assert!(body["version"].is_string());
    assert_eq!(tsts(&body["data"]), [T0, T0 + 60, T0 + 120], "oldest first");
    let p = &body["data"][0];
    assert_eq!(p["_type"], "location");
    assert_eq!(p["lat"], LAT);
    assert_eq!(p["lon"], LON);
    assert_eq!(p["acc"], 5);
    assert_eq!(p["alt"], 100.5);
    assert_eq!(p["vel"], 12);
    assert_eq!(p["batt"], 81);
    assert_eq!(p["tid"], "al");
    assert_eq!(
        p["SSID"], "home, sweet \"home\"",
        "the phone's own fields are kept"
    );
    assert_eq!(p["inregions"], serde_json::json!(["Home"]));
    assert_eq!(p["ghash"], "u4pruyd");
    assert_eq!(p["isotst"], "2025-06-15T15:06:40Z");
    assert_eq!(p["disptst"], "2025-06-15 15:06:40");
    let isorcv = p["isorcv"].as_str().unwrap();
    assert!(
        isorcv.len() == 20 && isorcv.ends_with('Z') && isorcv.as_bytes()[10] == b'T',
        "{isorcv}"
    );

    // limit: the newest N, newest first.
    let body = f.alice_json(&format!("{DAY}&limit=2")).await;
    assert_eq!(body["count"], 2);
    assert_eq!(tsts(&body["data"]), [T0 + 120, T0 + 60]);

    // fields: only those members.
    let body = f
        .alice_json(&format!("{DAY}&fields=tst,isotst,nosuch"))
        .await;
    let first = body["data"][0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(first["tst"], T0);
    assert_eq!(first["isotst"], "2025-06-15T15:06:40Z");

    // The Recorder's time forms (UTC), from inclusive and to exclusive.
    let window = |from: &str, to: &str| {
        format!("/api/0/locations?user=alice&device=phone&from={from}&to={to}")
    };
    for (from, to, expected) in [
        ("2025-06-15T15:07", "2025-06-16", vec![T0 + 60, T0 + 120]),
        (
            "2025-06-15T15:06:40Z",
            "2025-06-15T15:08:40",
            vec![T0, T0 + 60],
        ),
        (
            "2025-06-15t15",
            "2025-06-15T15:07:41.000Z",
            vec![T0, T0 + 60],
        ),
        ("2025-06", "2025-07", vec![T0, T0 + 60, T0 + 120]),
        ("1750000060", "1750000061", vec![T0 + 60]),
        ("2025-06-16", "2025-06-17", vec![]),
    ] {
        let body = f.alice_json(&window(from, to)).await;
        assert_eq!(tsts(&body["data"]), expected, "from={from} to={to}");
        assert_eq!(body["count"], expected.len());
    }

    // The default window is the last 6 hours: nothing of 2025 in it.
    let body = f
        .alice_json("/api/0/locations?user=alice&device=phone")
        .await;
    assert_eq!(body["count"], 0);

    // POST with a form body and the X-Limit-* headers, as the Recorder takes them: a header
    // wins over a parameter, names match regardless of case.
    let r = client()
        .post(f.server.url("/api/0/locations?from=2030-01-01"))
        .basic_auth("alice", Some(ALICE_PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Limit-From", "2025-06-15")
        .header("X-Limit-To", "2025-06-16")
        .body("user=ALICE&device=Phone&limit=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(tsts(&body["data"]), [T0 + 120]);
    f.server.stop().await;
}

#[tokio::test]
async fn every_format_parses_with_a_real_parser() {
    let f = fixture().await;

    let text = f
        .alice(&format!("{DAY}&format=geojson"))
        .await
        .text()
        .await
        .unwrap();
    let geo: geojson::GeoJson = text.parse().unwrap();
    let geojson::GeoJson::FeatureCollection(collection) = geo else {
        panic!("not a FeatureCollection: {text}");
    };
    assert_eq!(collection.features.len(), 3);
    let feature = &collection.features[0];
    let geometry = feature.geometry.as_ref().unwrap();
    assert_eq!(geometry.value, geojson::Value::Point(vec![LON, LAT]));
    assert_eq!(feature.property("name").unwrap(), "al");
    assert_eq!(feature.property("tst").unwrap(), T0);
    assert_eq!(feature.property("vel").unwrap(), 12);
    assert_eq!(feature.property("acc").unwrap(), 5);
    assert_eq!(feature.property("alt").unwrap(), 100);
    assert_eq!(feature.property("isotst").unwrap(), "2025-06-15T15:06:40Z");

    // geojsonpoi: only points with a `poi`, named by it.
    let geo: geojson::GeoJson = f
        .alice(&format!("{DAY}&format=geojsonpoi"))
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    let geojson::GeoJson::FeatureCollection(none) = geo else {
        panic!("not a FeatureCollection");
    };
    assert!(none.features.is_empty());
    let store = f.server.running.store();
    let alice = store.find_user("alice").await.unwrap();
    let mut poi = location(alice.id, "phone", T0 + 86_400, LAT, 1.0);
    poi.raw = format!(
        r#"{{"_type":"location","lat":{LAT},"lon":{LON},"tst":{},"poi":"Café"}}"#,
        T0 + 86_400
    );
    store
        .ingest_owntracks(vec![poi], SystemTime::now())
        .await
        .unwrap();
    let geo: geojson::GeoJson = f
        .alice("/api/0/locations?user=alice&device=phone&from=2025-06-16&to=2025-06-17&format=geojsonpoi")
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    let geojson::GeoJson::FeatureCollection(pois) = geo else {
        panic!("not a FeatureCollection");
    };
    assert_eq!(pois.features.len(), 1);
    assert_eq!(pois.features[0].property("name").unwrap(), "Café");
    assert_eq!(
        pois.features[0].geometry.as_ref().unwrap().value,
        geojson::Value::Point(vec![LON, LAT])
    );

    let text = f
        .alice(&format!("{DAY}&format=linestring"))
        .await
        .text()
        .await
        .unwrap();
    let geo: geojson::GeoJson = text.parse().unwrap();
    let geojson::GeoJson::Feature(line) = geo else {
        panic!("not a Feature: {text}");
    };
    let geojson::Value::LineString(coords) = line.geometry.unwrap().value else {
        panic!("not a LineString: {text}");
    };
    assert_eq!(
        coords,
        vec![
            vec![LON, LAT],
            vec![LON, LAT + 0.001],
            vec![LON, LAT + 0.002]
        ]
    );

    let r = f.alice(&format!("{DAY}&format=gpx")).await;
    assert_eq!(r.headers()["content-type"], "application/gpx+xml");
    let text = r.text().await.unwrap();
    let gpx = gpx::read(text.as_bytes()).unwrap();
    assert_eq!(gpx.version, gpx::GpxVersion::Gpx11);
    let points = &gpx.tracks[0].segments[0].points;
    assert_eq!(points.len(), 3);
    let first = points[0].point();
    assert_eq!((first.x(), first.y()), (LON, LAT));
    assert_eq!(points[0].elevation, Some(100.5));
    assert_eq!(points[2].elevation, Some(102.25));
    let time: time::OffsetDateTime = points[0].time.unwrap().into();
    assert_eq!(time.unix_timestamp(), T0);

    // xml: the Recorder's <owntracks><point>…, read with an XML parser.
    let r = f.alice(&format!("{DAY}&format=xml")).await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    let text = r.text().await.unwrap();
    let mut xml_points: Vec<std::collections::HashMap<String, String>> = Vec::new();
    let mut element = String::new();
    for event in xml::reader::EventReader::new(text.as_bytes()) {
        match event.unwrap() {
            xml::reader::XmlEvent::StartElement { name, .. } => {
                if name.local_name == "point" {
                    xml_points.push(Default::default());
                }
                element = name.local_name;
            }
            xml::reader::XmlEvent::Characters(text) => {
                xml_points.last_mut().unwrap().insert(element.clone(), text);
            }
            _ => {}
        }
    }
    assert_eq!(xml_points.len(), 3);
    let p = &xml_points[0];
    assert_eq!(p["tst"], T0.to_string());
    assert_eq!(p["lat"].parse::<f64>().unwrap(), LAT);
    assert_eq!(p["tid"], "al");
    assert_eq!(p["SSID"], "home, sweet \"home\"");
    assert_eq!(p["isotst"], "2025-06-15T15:06:40Z");
    assert!(!p.contains_key("_type"));

    let r = f.alice(&format!("{DAY}&format=csv")).await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let cell = |row: &csv::StringRecord, name: &str| {
        let i = headers.iter().position(|h| h == name).unwrap();
        row[i].to_owned()
    };
    assert_eq!(cell(&rows[0], "tst"), T0.to_string());
    assert_eq!(cell(&rows[0], "isotst"), "2025-06-15T15:06:40Z");
    assert_eq!(cell(&rows[0], "lat").parse::<f64>().unwrap(), LAT);
    assert_eq!(cell(&rows[0], "lon").parse::<f64>().unwrap(), LON);
    assert_eq!(cell(&rows[0], "tid"), "al");
    assert_eq!(cell(&rows[0], "vac"), "", "absent fields are empty cells");

    // fields= picks the CSV columns; a quoted value survives.
    let text = f
        .alice(&format!("{DAY}&format=csv&fields=tst,SSID&limit=1"))
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["tst", "SSID"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], (T0 + 120).to_string());
    assert_eq!(&rows[0][1], "home, sweet \"home\"");
    f.server.stop().await;
}

#[tokio::test]
async fn version_list_and_last_answer_the_recorders_shapes() {
    let f = fixture().await;
    let version = f.alice_json("/api/0/version").await;
    assert!(version["version"].is_string());

    // monitor: the latest message alice may see (the fixture's batch was received "now").
    let started = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let monitor = f.alice("/api/0/monitor").await.text().await.unwrap();
    let (secs, topic) = monitor.trim_end().split_once(' ').unwrap();
    assert_eq!(topic, "owntracks/alice/phone");
    assert!(
        secs.parse::<u64>().unwrap().abs_diff(started) < 120,
        "{monitor}"
    );
    let admin_only = TestServer::start_with(None).await;
    let empty = client()
        .get(admin_only.url("/api/0/monitor"))
        .basic_auth("admin", Some(crate::support::ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.text().await.unwrap(), "not available\n");
    admin_only.stop().await;

    assert_eq!(
        f.alice_json("/api/0/list").await,
        serde_json::json!({ "results": ["alice"] })
    );
    assert_eq!(
        f.alice_json("/api/0/list?user=alice").await,
        serde_json::json!({ "results": ["phone"] })
    );

    let last = f.alice_json("/api/0/last").await;
    let last = last.as_array().unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
    let l = &last[0];
    assert_eq!(l["_type"], "location");
    assert_eq!(l["tst"], T0 + 120);
    assert_eq!(l["lat"], LAT + 0.002);
    assert_eq!(l["lon"], LON);
    assert_eq!(l["alt"], 102.25);
    assert_eq!(l["SSID"], "home, sweet \"home\"");
    assert_eq!(l["username"], "alice");
    assert_eq!(l["device"], "phone");
    assert_eq!(l["topic"], "owntracks/alice/phone");
    assert_eq!(l["isotst"], "2025-06-15T15:08:40Z");
    assert_eq!(l["disptst"], "2025-06-15 15:08:40");
    assert_eq!(l["ghash"].as_str().unwrap().len(), 7);
    assert_eq!(l["name"], "Alice A.", "the card's name");

    let picked = f
        .alice_json("/api/0/last?user=alice&device=phone&fields=tst,topic")
        .await;
    assert_eq!(
        picked,
        serde_json::json!([{ "tst": T0 + 120, "topic": "owntracks/alice/phone" }])
    );
    let none = f.alice_json("/api/0/last?device=laptop").await;
    assert_eq!(none, serde_json::json!([]));
    f.server.stop().await;
}

#[tokio::test]
async fn a_user_sees_only_their_own_devices_and_an_admin_sees_all() {
    let f = fixture().await;
    // Bob's device answers alice exactly as a device that does not exist.
    let bobs = "/api/0/locations?user=bob&device=tablet&from=2025-06-15&to=2025-06-16";
    let missing = "/api/0/locations?user=bob&device=nosuch&from=2025-06-15&to=2025-06-16";
    let seen = f.alice_json(bobs).await;
    assert_eq!(seen["count"], 0);
    assert_eq!(seen["data"], serde_json::json!([]));
    let mut missing_answer = f.alice_json(missing).await;
    let mut seen_answer = seen.clone();
    missing_answer["version"] = Value::Null;
    seen_answer["version"] = Value::Null;
    assert_eq!(seen_answer, missing_answer);
    for format in ["geojson", "gpx", "csv", "linestring"] {
        let text = f
            .alice(&format!("{bobs}&format={format}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(!text.contains("48"), "{format}: {text}");
    }
    assert_eq!(
        f.alice_json("/api/0/list?user=bob").await,
        serde_json::json!({ "results": [] })
    );
    assert_eq!(
        f.alice_json("/api/0/last?user=bob").await,
        serde_json::json!([])
    );

    // Bob sees his own, not alice's.
    let r = f
        .get_as("bob", BOB_PASSWORD, "/api/0/last")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["username"], "bob");

    // The admin (here with the session cookie) sees everyone.
    let admin = f.server.admin().await;
    let list: Value = admin
        .get(f.server.url("/api/0/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, serde_json::json!({ "results": ["alice", "bob"] }));
    let body: Value = admin
        .get(f.server.url(bobs))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tsts(&body["data"]), [T0 + 30]);
    let last: Value = admin
        .get(f.server.url("/api/0/last"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last.as_array().unwrap().len(), 2);
    f.server.stop().await;
}

#[tokio::test]
async fn basic_auth_takes_a_password_or_a_device_key_and_refuses_the_rest_with_401() {
    let f = fixture().await;
    let path = "/api/0/list";

    let key = f.get_as("alice", &f.alice_key, DAY).await;
    assert_eq!(key.status(), 200, "device key");
    let body: Value = key.json().await.unwrap();
    assert_eq!(body["count"], 3);

    for (user, secret) in [
        ("alice", "wrong password"),
        ("bob", f.alice_key.as_str()),
        ("alice", "pld_not_a_real_key"),
        ("nobody", "whatever pw"),
    ] {
        let r = f.get_as(user, secret, path).await;
        assert_eq!(r.status(), 401, "{user}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"Porchlight\"",
            "{user}"
        );
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string());
    }
    for path in [
        "/api/0/version",
        "/api/0/list",
        "/api/0/last",
        "/api/0/locations?user=alice&device=phone",
    ] {
        let r = client().get(f.server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"Porchlight\""
        );
    }

    // An API token of alice's works as for the rest of the API.
    let store = f.server.running.store();
    let alice = store.find_user("alice").await.unwrap();
    let (_, token) = store
        .create_api_token(alice.id, "script", SystemTime::now())
        .await
        .unwrap();
    let r = client()
        .get(f.server.url(path))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    f.server.stop().await;
}

#[tokio::test]
async fn bad_parameters_answer_400_with_a_json_error() {
    let f = fixture().await;
    let base = "/api/0/locations?user=alice&device=phone";
    for query in [
        format!("{base}&from=yesterday"),
        format!("{base}&to=2025-13-01"),
        format!("{base}&from=2025-06-16&to=2025-06-15"),
        format!("{base}&format=kml"),
        format!("{base}&format=XML"),
        format!("{base}&limit=-1"),
        format!("{base}&limit=ten"),
        format!("{base}&limit=100001"),
        "/api/0/locations?user=alice".to_owned(),
        "/api/0/locations?device=phone".to_owned(),
        "/api/0/list?user=alice&device=phone".to_owned(),
    ] {
        let r = f.alice(&query).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {body}"
        );
    }
    // The upper bound itself is fine.
    let r = f.alice(&format!("{base}&limit=100000")).await;
    assert_eq!(r.status(), 200);
    f.server.stop().await;
}

#[tokio::test]
async fn the_ui_track_is_thinned_to_max_points_and_private() {
    let f = fixture().await;
    let store = f.server.running.store();
    let alice = store.find_user("alice").await.unwrap();
    // 200 more points: east for 100 minutes, then north for 100 (one turn).
    let batch: Vec<OwnTracksMessage> = (0..200)
        .map(|i| {
            let (lat, lon) = if i < 100 {
                (50.0, 8.0 + f64::from(i) * 0.001)
            } else {
                (50.0 + f64::from(i - 99) * 0.001, 8.099)
            };
            let mut m = location(alice.id, "phone", T0 + 1000 + i64::from(i) * 60, lat, 0.0);
            if let OwnTracksPayload::Location(fields) = &mut m.payload {
                fields.lon = lon;
            }
            m
        })
        .collect();
    store
        .ingest_owntracks(batch, SystemTime::now())
        .await
        .unwrap();
    let phone = store
        .find_owntracks_device(alice.id, "phone")
        .await
        .unwrap()
        .unwrap();
    let from_ms = (T0 + 1000) * 1000;
    let to_ms = (T0 + 1000 + 200 * 60) * 1000;
    let path = |max: usize| {
        format!(
            "/api/owntracks/devices/{}/track?from={from_ms}&to={to_ms}&max_points={max}",
            phone.id
        )
    };
    let token = store
        .create_api_token(alice.id, "ui", SystemTime::now())
        .await
        .unwrap()
        .1;
    let get = |path: String| {
        client()
            .get(f.server.url(&path))
            .bearer_auth(token.expose())
            .send()
    };
    let r = get(path(10)).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let points = body["points"].as_array().unwrap();
    assert!((3..=10).contains(&points.len()), "{}", points.len());
    assert_eq!(points[0], serde_json::json!([from_ms, 50.0, 8.0]));
    let last = points.last().unwrap();
    assert_eq!(last[0], to_ms - 60_000, "the window's last point is kept");
    assert!(
        points.iter().any(|p| p[1] == 50.0 && p[2] == 8.099),
        "the turn is kept: {points:?}"
    );

    for bad in [path(1), path(5001), format!("{}&from=x", path(10))] {
        let r = get(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    // Bob's device is as unknown to alice as a device that does not exist.
    let bob = store.find_user("bob").await.unwrap();
    let tablet = store
        .find_owntracks_device(bob.id, "tablet")
        .await
        .unwrap()
        .unwrap();
    for id in [tablet.id, 999_999] {
        let r = get(format!("/api/owntracks/devices/{id}/track"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id}");
    }
    let r = client().get(f.server.url(&path(10))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    f.server.stop().await;
}

/// Each track point's speed as the phone sent it (`vel`, km/h), in a list beside `points`,
/// `null` for a point without one; the points keep their `[ms, lat, lon]` shape.
#[tokio::test]
async fn the_ui_track_carries_each_points_speed() {
    let f = fixture().await;
    for (i, vel) in [Some(0), Some(57), None, Some(130)].into_iter().enumerate() {
        let mut point = serde_json::json!({
            "_type": "location", "lat": 49.0 + i as f64 * 0.01, "lon": 8.5,
            "tst": T0 + 5000 + i as i64 * 60, "tid": "al",
        });
        if let Some(vel) = vel {
            point["vel"] = vel.into();
        }
        let r = client()
            .post(f.server.url("/pub"))
            .basic_auth("alice", Some(ALICE_PASSWORD))
            .header("x-limit-d", "car")
            .json(&point)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{point}");
    }
    let store = f.server.running.store();
    let alice = store.find_user("alice").await.unwrap();
    let car = store
        .find_owntracks_device(alice.id, "car")
        .await
        .unwrap()
        .unwrap();
    let token = store
        .create_api_token(alice.id, "ui", SystemTime::now())
        .await
        .unwrap()
        .1;
    let track = |path: String| {
        let token = token.expose().to_owned();
        let url = f.server.url(&path);
        async move {
            let r = client().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let from_ms = (T0 + 5000) * 1000;
    let to_ms = (T0 + 6000) * 1000;
    let body = track(format!(
        "/api/owntracks/devices/{}/track?from={from_ms}&to={to_ms}",
        car.id
    ))
    .await;
    assert_eq!(
        body["vel"],
        serde_json::json!([0.0, 57.0, null, 130.0]),
        "{body}"
    );
    assert_eq!(
        body["points"][1],
        serde_json::json!([from_ms + 60_000, 49.01, 8.5])
    );
    // The phone's own device (its points all sent vel 12) says so too.
    let phone = store
        .find_owntracks_device(alice.id, "phone")
        .await
        .unwrap()
        .unwrap();
    let body = track(format!(
        "/api/owntracks/devices/{}/track?from={}&to={}",
        phone.id,
        T0 * 1000,
        (T0 + 180) * 1000
    ))
    .await;
    assert_eq!(body["vel"], serde_json::json!([12.0, 12.0, 12.0]), "{body}");
    f.server.stop().await;
}

#[tokio::test]
async fn a_window_beyond_the_row_bound_is_refused_unless_limited() {
    let f = fixture().await;
    let store = f.server.running.store();
    let bob = store.find_user("bob").await.unwrap();
    let base = 1_600_000_000;
    let batch: Vec<OwnTracksMessage> = (0..100_001)
        .map(|i| location(bob.id, "tablet", base + i, 48.0, 0.0))
        .collect();
    store
        .ingest_owntracks(batch, SystemTime::now())
        .await
        .unwrap();
    let all = "/api/0/locations?user=bob&device=tablet&from=2020-09-01&to=2020-09-30";
    let r = f.get_as("bob", BOB_PASSWORD, all).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("100000"), "{body}");
    let r = f
        .get_as("bob", BOB_PASSWORD, &format!("{all}&limit=3"))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        tsts(&body["data"]),
        [base + 100_000, base + 99_999, base + 99_998]
    );
    f.server.stop().await;
}

#[tokio::test]
async fn wrong_basic_passwords_are_throttled_like_any_login() {
    let f = fixture().await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = f
            .get_as("alice", &format!("guess number {i}"), "/api/0/list")
            .await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // While the user name must wait, not even the right password is checked.
    let r = f.alice("/api/0/list").await;
    assert_eq!(r.status(), 429);
    // A device key is not a password: it is not held up.
    let r = f.get_as("alice", &f.alice_key, "/api/0/list").await;
    assert_eq!(r.status(), 200);
    f.server.stop().await;
}
