//! Property tests: no input makes the parser panic, and every rejection is an error with a
//! message. Inputs: arbitrary bytes, valid sample messages mutated byte by byte, samples with a
//! field replaced by an arbitrary JSON value or removed, tampered encrypted payloads, and
//! arbitrary topics.
//!
//! Cases per property: `PROPTEST_CASES` (default 2,000, for CI). The fuzz run:
//! `PROPTEST_CASES=1000000 cargo test --release -p porchlight-domain owntracks::proptests`.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::crypto::{self, SecretKey};
use super::message::{MAX_TST, MIN_TST};
use super::tests::samples;
use super::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig::with_cases(cases)
}

fn key() -> SecretKey {
    SecretKey::from_passphrase("family secret").unwrap()
}

fn any_kind() -> impl Strategy<Value = Option<TopicKind>> {
    prop::option::of(prop::sample::select(TopicKind::ALL.to_vec()))
}

/// Checks one parser outcome: accepted messages satisfy the rules, rejections explain
/// themselves.
fn check(result: Result<Parsed, PayloadError>) {
    match result {
        Ok(Parsed::Empty) => {}
        Ok(Parsed::Message(m)) => {
            assert!(serde_json::from_str::<Value>(m.raw_json()).is_ok());
            let coords_and_time = match m.body() {
                Body::Location(l) => Some((l.lat, l.lon, l.tst)),
                Body::Transition(t) => Some((t.lat, t.lon, t.tst)),
                Body::Waypoint(w) => Some((w.lat, w.lon, w.tst)),
                _ => None,
            };
            if let Some((lat, lon, tst)) = coords_and_time {
                assert!((-90.0..=90.0).contains(&lat), "lat {lat}");
                assert!((-180.0..=180.0).contains(&lon), "lon {lon}");
                assert!((MIN_TST..=MAX_TST).contains(&tst), "tst {tst}");
            }
        }
        Err(e) => {
            assert!(!e.to_string().trim().is_empty(), "{e:?}");
            assert!(!e.reason().is_empty());
        }
    }
}

fn check_all(bytes: &[u8], kind: Option<TopicKind>) {
    check(parse_payload(bytes, kind));
    check(open_payload(bytes, kind, Some(&key())));
    check(open_payload(bytes, kind, None));
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to JSON are over-represented.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"{}[]\",:-.0123456789eE\\ntfu ".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match *e {
            Edit::Flip(i, b) if len > 0 => bytes[i % len] = b,
            Edit::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop::sample::select(vec![90.0, -90.0, 180.0, -180.0, 90.000001, 0.0, 1e300])
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "enter",
            "leave",
            "location",
            "encrypted",
            "iVBORw0K",
            ""
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), kind in any_kind()) {
        check_all(&bytes, kind);
    }

    #[test]
    fn byte_mutated_samples_never_panic(
        index in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
        kind in any_kind(),
    ) {
        let all = samples();
        let (topic, bytes) = &all[index.index(all.len())];
        let mutated = apply(bytes.clone(), &edits);
        check_all(&mutated, Some(topic.kind()));
        check_all(&mutated, kind);
    }

    #[test]
    fn field_mutated_samples_never_panic(
        index in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        replacement in prop::option::of(json_value()),
    ) {
        let all = samples();
        let (topic, bytes) = &all[index.index(all.len())];
        let mut value: Value = serde_json::from_slice(bytes).unwrap();
        if let Value::Object(map) = &mut value {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[field.index(keys.len())].clone();
            match replacement {
                Some(v) => { map.insert(key, v); }
                None => { map.remove(&key); }
            }
        }
        let mutated = serde_json::to_vec(&value).unwrap();
        check_all(&mutated, Some(topic.kind()));
        check_all(&mutated, None);
    }

    #[test]
    fn tampered_encrypted_payloads_never_panic(
        index in any::<prop::sample::Index>(),
        nonce in any::<[u8; 24]>(),
        edits in prop::collection::vec(edit(), 0..4),
    ) {
        let all = samples();
        let (topic, plain) = &all[index.index(all.len())];
        let data = crypto::encrypt(plain, &key(), nonce).unwrap();
        let data = String::from_utf8_lossy(&apply(data.into_bytes(), &edits)).into_owned();
        let payload = serde_json::json!({"_type": "encrypted", "data": data}).to_string();
        let result = open_payload(payload.as_bytes(), Some(topic.kind()), Some(&key()));
        if edits.is_empty() {
            prop_assert_eq!(result, parse_payload(plain, Some(topic.kind())));
        } else {
            check(result);
        }
    }

    #[test]
    fn arbitrary_topics_never_panic_and_accepted_ones_round_trip(
        topic in prop_oneof![".{0,40}", "owntracks/[a-z+#]{0,6}/[a-z/]{0,6}(/[a-z]{0,9})?"],
    ) {
        match OwnTracksTopic::parse(&topic) {
            Ok(parsed) => prop_assert_eq!(parsed.to_string(), topic),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
