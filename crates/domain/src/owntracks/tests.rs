//! Payload tests against the shared samples (copied to `crates/domain/tests/fixtures/`): every
//! sample message parses to its type with its typed fields, and every bad sample is rejected
//! with its own reason.

use serde_json::Value;

use super::crypto::{self, SecretKey};
use super::message::MAX_TST;
use super::*;

const MESSAGES: &str = include_str!("../../tests/fixtures/owntracks-messages.jsonl");
const BAD_PAYLOADS: &str = include_str!("../../tests/fixtures/bad-owntracks-payloads.txt");

/// `(topic, payload bytes)` of every sample message.
pub(super) fn samples() -> Vec<(OwnTracksTopic, Vec<u8>)> {
    MESSAGES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            let topic = OwnTracksTopic::parse(value["topic"].as_str().unwrap()).unwrap();
            (topic, serde_json::to_vec(&value["payload"]).unwrap())
        })
        .collect()
}

fn bad_payloads() -> Vec<&'static str> {
    BAD_PAYLOADS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

fn message(payload: &[u8], kind: Option<TopicKind>) -> Message {
    match parse_payload(payload, kind).unwrap() {
        Parsed::Message(m) => m,
        Parsed::Empty => panic!("expected a message"),
    }
}

fn sample_of(message_type: MessageType) -> (OwnTracksTopic, Message) {
    samples()
        .into_iter()
        .map(|(topic, bytes)| {
            let m = message(&bytes, Some(topic.kind()));
            (topic, m)
        })
        .find(|(_, m)| m.message_type() == message_type)
        .unwrap()
}

#[test]
fn every_sample_parses_on_its_topic_and_keeps_its_raw_json() {
    let samples = samples();
    assert_eq!(samples.len(), 10);
    for (topic, bytes) in samples {
        let m = message(&bytes, Some(topic.kind()));
        assert_eq!(m.raw_json().as_bytes(), bytes.as_slice(), "{topic}");
        // HTTP mode has no topic: the same payload parses too.
        assert_eq!(message(&bytes, None), m);
    }
}

#[test]
fn full_location_sample_has_every_typed_field() {
    let (_, m) = sample_of(MessageType::Location);
    let Body::Location(l) = m.body() else {
        panic!("not a location")
    };
    assert_eq!((l.lat, l.lon, l.tst), (52.3676, 4.9041, 1_764_000_000));
    assert_eq!(l.acc, Some(12.0));
    assert_eq!(l.alt, Some(3.0));
    assert_eq!(l.vac, Some(4.0));
    assert_eq!(l.vel, Some(0.0));
    assert_eq!(l.cog, Some(0.0));
    assert_eq!(l.batt, Some(87));
    assert_eq!(l.bs, Some(1));
    assert_eq!(l.trigger.as_deref(), Some("u"));
    assert_eq!(l.tid.as_deref(), Some("al"));
    assert_eq!(l.conn.as_deref(), Some("w"));
    assert_eq!(l.monitoring, Some(1));
    assert_eq!(l.created_at, Some(1_764_000_001));
    assert!(l.inregions.is_empty());
    assert_eq!(m.tst(), Some(1_764_000_000));
}

#[test]
fn location_with_regions_and_wifi() {
    let (topic, bytes) = &samples()[1];
    let m = message(bytes, Some(topic.kind()));
    let Body::Location(l) = m.body() else {
        panic!("not a location")
    };
    assert_eq!(l.inregions, ["Home"]);
    assert_eq!(l.inrids, ["a1b2c3"]);
    assert_eq!(l.ssid.as_deref(), Some("home-net"));
    assert_eq!(l.bssid.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
    assert_eq!(l.bs, Some(2));
    assert_eq!(l.conn.as_deref(), Some("m"));
}

#[test]
fn southern_and_eastern_coordinates() {
    let (topic, bytes) = samples().pop().unwrap();
    assert_eq!(topic.user(), "bob");
    let Body::Location(l) = message(&bytes, Some(topic.kind())).into_body() else {
        panic!("not a location")
    };
    assert_eq!((l.lat, l.lon), (-33.8688, 151.2093));
    assert_eq!(l.trigger.as_deref(), Some("t"));
}

#[test]
fn transition_sample() {
    let (topic, m) = sample_of(MessageType::Transition);
    assert_eq!(topic.kind(), TopicKind::Event);
    let Body::Transition(t) = m.body() else {
        panic!("not a transition")
    };
    assert_eq!(t.event, TransitionEvent::Enter);
    assert_eq!((t.lat, t.lon, t.tst), (52.3701, 4.8952, 1_764_000_305));
    assert_eq!(t.wtst, Some(1_763_990_000));
    assert_eq!(t.acc, Some(5.0));
    assert_eq!(t.desc.as_deref(), Some("Home"));
    assert_eq!(t.rid.as_deref(), Some("a1b2c3"));
    assert_eq!(t.trigger.as_deref(), Some("c"));
    assert_eq!(t.tid.as_deref(), Some("al"));
}

#[test]
fn waypoint_and_waypoints_samples() {
    let (_, m) = sample_of(MessageType::Waypoint);
    let Body::Waypoint(w) = m.body() else {
        panic!("not a waypoint")
    };
    assert_eq!(w.desc, "Work");
    assert_eq!(
        (w.lat, w.lon, w.rad, w.tst),
        (52.3105, 4.7683, Some(150.0), 1_763_990_100)
    );
    assert_eq!(w.rid.as_deref(), Some("d4e5f6"));

    let (_, m) = sample_of(MessageType::Waypoints);
    let Body::Waypoints(list) = m.body() else {
        panic!("not waypoints")
    };
    assert_eq!(list.creator.as_deref(), Some("alice"));
    let names: Vec<&str> = list.waypoints.iter().map(|w| w.desc.as_str()).collect();
    assert_eq!(names, ["Home", "Work"]);
    assert_eq!(list.waypoints[1], *w);
}

#[test]
fn lwt_card_and_status_samples() {
    let (_, m) = sample_of(MessageType::Lwt);
    assert_eq!(
        m.body(),
        &Body::Lwt(Lwt {
            tst: Some(1_764_000_000)
        })
    );

    let (topic, m) = sample_of(MessageType::Card);
    assert_eq!(topic.kind(), TopicKind::Info);
    assert_eq!(
        m.body(),
        &Body::Card(Card {
            name: Some("Alice".into()),
            face: None,
            tid: Some("al".into()),
        })
    );

    let (_, m) = sample_of(MessageType::Status);
    assert_eq!(m.body(), &Body::Status);
    let raw: Value = serde_json::from_str(m.raw_json()).unwrap();
    assert_eq!(raw["android"]["wifi"], 1);
}

#[test]
fn a_card_payload_parses_back_to_the_same_card() {
    let card = Card {
        name: Some("Alice \"A\"".into()),
        face: Some("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==".into()),
        tid: None,
    };
    let m = message(card.to_payload().as_bytes(), Some(TopicKind::Info));
    assert_eq!(m.body(), &Body::Card(card));
    let empty = Card {
        name: None,
        face: None,
        tid: Some("al".into()),
    };
    assert_eq!(empty.to_payload(), r#"{"_type":"card","tid":"al"}"#);
}

#[test]
fn card_with_a_face_image() {
    let m = message(
        br#"{"_type":"card","name":"Alice","face":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}"#,
        Some(TopicKind::Info),
    );
    let Body::Card(card) = m.body() else {
        panic!("not a card")
    };
    assert!(card.face.as_deref().unwrap().starts_with("iVBOR"));

    assert_eq!(
        parse_payload(br#"{"_type":"card","face":"not an image!"}"#, None),
        Err(PayloadError::InvalidValue {
            field: "face".into(),
            expected: "a base64 image",
            got: "invalid base64 (Invalid symbol 33, offset 10.)".into(),
        })
    );
}

#[test]
fn configuration_cmd_steps_and_beacon() {
    let m = message(
        br#"{"_type":"configuration","mode":0,"deviceId":"phone","tid":"al","password":"hunter2-device-key","host":"h"}"#,
        Some(TopicKind::Dump),
    );
    assert_eq!(
        m.body(),
        &Body::Configuration(Configuration {
            mode: Some(0),
            device_id: Some("phone".into()),
            tid: Some("al".into()),
        })
    );
    assert!(m.raw_json().contains("hunter2-device-key"));
    let redacted = m.raw_json_redacted();
    assert!(!redacted.contains("hunter2-device-key"), "{redacted}");
    let redacted: Value = serde_json::from_str(&redacted).unwrap();
    assert_eq!(redacted["password"], "****");
    assert_eq!(redacted["host"], "h");

    let m = message(
        br#"{"_type":"cmd","action":"reportLocation"}"#,
        Some(TopicKind::Cmd),
    );
    assert_eq!(
        m.body(),
        &Body::Cmd(Command {
            action: "reportLocation".into()
        })
    );
    // Only configuration dumps are redacted.
    assert_eq!(m.raw_json_redacted(), m.raw_json());

    let m = message(
        br#"{"_type":"steps","tst":1764000000,"steps":4200,"from":1763990000,"to":1764000000}"#,
        Some(TopicKind::Step),
    );
    assert_eq!(
        m.body(),
        &Body::Steps(Steps {
            tst: Some(1_764_000_000),
            steps: Some(4200)
        })
    );

    let m = message(
        br#"{"_type":"beacon","uuid":"CA271EAE-5FA8-4E80-8F08-2A302A95A959","major":1,"minor":2,"tst":1764000000}"#,
        Some(TopicKind::Beacon),
    );
    assert_eq!(m.tst(), Some(1_764_000_000));
}

#[test]
fn zero_length_payload_is_empty_not_an_error() {
    assert_eq!(
        parse_payload(b"", Some(TopicKind::Device)),
        Ok(Parsed::Empty)
    );
    assert_eq!(parse_payload(b"", None), Ok(Parsed::Empty));
    assert_eq!(
        open_payload(b"", Some(TopicKind::Info), None),
        Ok(Parsed::Empty)
    );
}

#[test]
fn every_bad_sample_is_rejected_with_its_reason() {
    let expected: Vec<PayloadError> = vec![
        PayloadError::WrongType {
            field: "lat".into(),
            expected: "a number",
            got: "a string",
        },
        PayloadError::InvalidValue {
            field: "lat".into(),
            expected: "a latitude in [-90, 90]",
            got: "91.5".into(),
        },
        PayloadError::InvalidValue {
            field: "lon".into(),
            expected: "a longitude in [-180, 180]",
            got: "181".into(),
        },
        PayloadError::MissingField {
            field: "lat".into(),
        },
        PayloadError::MissingField {
            field: "tst".into(),
        },
        PayloadError::UnknownType("nonsense".into()),
        PayloadError::InvalidJson("EOF while parsing an object at line 1 column 57".into()),
        PayloadError::NotAnObject { got: "an array" },
        PayloadError::NotAnObject { got: "null" },
        PayloadError::NotAnObject { got: "a string" },
        PayloadError::Crypto(CryptoError::BadBase64(
            "Invalid symbol 45, offset 3.".into(),
        )),
    ];
    let bad = bad_payloads();
    assert_eq!(bad.len(), expected.len());
    let key = SecretKey::from_passphrase("any").unwrap();
    for (payload, expected) in bad.into_iter().zip(expected) {
        for kind in [Some(TopicKind::Device), None] {
            for got in [
                parse_payload(payload.as_bytes(), kind),
                open_payload(payload.as_bytes(), kind, Some(&key)),
                open_payload(payload.as_bytes(), kind, None),
            ] {
                let got = got.unwrap_err();
                // Messages from serde_json and base64 may change wording between versions:
                // for those the variant is what we pin.
                let same = match (&got, &expected) {
                    (PayloadError::InvalidJson(_), PayloadError::InvalidJson(_)) => true,
                    (
                        PayloadError::Crypto(CryptoError::BadBase64(_)),
                        PayloadError::Crypto(CryptoError::BadBase64(_)),
                    ) => true,
                    _ => got == expected,
                };
                assert!(same, "{payload}: got {got:?}, expected {expected:?}");
            }
        }
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn messages_name_field_expected_and_got() {
    let err =
        parse_payload(br#"{"_type":"location","lat":"x","lon":1,"tst":2}"#, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `lat`: expected a number, got a string"
    );
    assert_eq!(err.reason(), "wrong_type");
    let err =
        parse_payload(br#"{"_type":"location","lat":91.5,"lon":1,"tst":2}"#, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `lat`: expected a latitude in [-90, 90], got 91.5"
    );
}

#[test]
fn timestamps_must_be_plausible_unix_seconds() {
    for (tst, ok) in [
        ("1764000000", true),
        ("1764000000.0", true),
        ("1", true),
        ("253402300799", true),
        ("0", false),
        ("-5", false),
        ("1764000000123", false),
        ("1764000000.5", false),
        ("18446744073709551615", false),
        ("1e300", false),
        ("\"1764000000\"", false),
    ] {
        let payload = format!(r#"{{"_type":"location","lat":1,"lon":2,"tst":{tst}}}"#);
        let result = parse_payload(payload.as_bytes(), None);
        assert_eq!(result.is_ok(), ok, "{tst}: {result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("`tst`"), "{e}");
        }
    }
    assert_eq!(MAX_TST, 253_402_300_799);
}

#[test]
fn coordinates_at_the_limits_are_accepted() {
    for (lat, lon) in [(90, 180), (-90, -180), (0, 0)] {
        let payload = format!(r#"{{"_type":"location","lat":{lat},"lon":{lon},"tst":1}}"#);
        assert!(parse_payload(payload.as_bytes(), None).is_ok(), "{payload}");
    }
    for (lat, lon) in [("90.0001", "0"), ("0", "-180.0001"), ("1e400", "0")] {
        let payload = format!(r#"{{"_type":"location","lat":{lat},"lon":{lon},"tst":1}}"#);
        assert!(
            parse_payload(payload.as_bytes(), None).is_err(),
            "{payload}"
        );
    }
}

#[test]
fn optional_fields_are_type_checked_and_null_is_absent() {
    assert_eq!(
        parse_payload(
            br#"{"_type":"location","lat":1,"lon":2,"tst":3,"batt":"87"}"#,
            None
        ),
        Err(PayloadError::WrongType {
            field: "batt".into(),
            expected: "an integer",
            got: "a string",
        })
    );
    assert_eq!(
        parse_payload(
            br#"{"_type":"location","lat":1,"lon":2,"tst":3,"inregions":["a",4]}"#,
            None
        ),
        Err(PayloadError::WrongType {
            field: "inregions[1]".into(),
            expected: "a string",
            got: "a number",
        })
    );
    let m = message(
        br#"{"_type":"location","lat":1,"lon":2,"tst":3,"acc":null,"tid":null}"#,
        None,
    );
    let Body::Location(l) = m.body() else {
        panic!("not a location")
    };
    assert_eq!((l.acc, l.tid.as_deref()), (None, None));
}

#[test]
fn errors_inside_a_waypoint_list_name_the_element() {
    assert_eq!(
        parse_payload(
            br#"{"_type":"waypoints","waypoints":[{"desc":"a","lat":1,"lon":2,"tst":3},{"desc":"b","lat":100,"lon":2,"tst":3}]}"#,
            None
        ),
        Err(PayloadError::InvalidValue {
            field: "waypoints[1].lat".into(),
            expected: "a latitude in [-90, 90]",
            got: "100".into(),
        })
    );
    assert_eq!(
        parse_payload(br#"{"_type":"waypoints","waypoints":[7]}"#, None),
        Err(PayloadError::WrongType {
            field: "waypoints[0]".into(),
            expected: "an object",
            got: "a number",
        })
    );
}

#[test]
fn transition_event_must_be_enter_or_leave() {
    assert_eq!(
        parse_payload(
            br#"{"_type":"transition","event":"dwell","lat":1,"lon":2,"tst":3}"#,
            None
        ),
        Err(PayloadError::InvalidValue {
            field: "event".into(),
            expected: "\"enter\" or \"leave\"",
            got: "\"dwell\"".into(),
        })
    );
}

#[test]
fn a_type_on_the_wrong_topic_is_rejected() {
    let (_, bytes) = &samples()[0];
    assert_eq!(
        parse_payload(bytes, Some(TopicKind::Info)),
        Err(PayloadError::UnexpectedOnTopic {
            message_type: MessageType::Location,
            topic_kind: TopicKind::Info,
        })
    );
    // Each type is expected on exactly one kind, except a single waypoint (also on
    // `/waypoints`, where older apps put it) and encrypted (on all).
    for t in MessageType::ALL {
        let kinds = TopicKind::ALL.iter().filter(|k| t.expected_on(**k)).count();
        let want = match t {
            MessageType::Encrypted => TopicKind::ALL.len(),
            MessageType::Waypoint => 2,
            _ => 1,
        };
        assert_eq!(kinds, want, "{t}");
    }
    assert!(MessageType::Waypoint.expected_on(TopicKind::Waypoints));
    assert!(!MessageType::Waypoints.expected_on(TopicKind::Waypoint));
}

#[test]
fn missing_or_non_string_type() {
    assert_eq!(
        parse_payload(br#"{"lat":1}"#, None),
        Err(PayloadError::MissingField {
            field: "_type".into()
        })
    );
    assert_eq!(
        parse_payload(br#"{"_type":5}"#, None),
        Err(PayloadError::WrongType {
            field: "_type".into(),
            expected: "a string",
            got: "a number",
        })
    );
}

#[test]
fn oversized_payloads_are_rejected_before_parsing() {
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        parse_payload(&big, None),
        Err(PayloadError::TooLarge {
            size: MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES,
        })
    );
    // A card with a 150 KB face fits.
    let face = "A".repeat(150_000);
    let card = format!(r#"{{"_type":"card","name":"A","face":"{face}"}}"#);
    assert!(parse_payload(card.as_bytes(), Some(TopicKind::Info)).is_ok());
}

#[test]
fn encrypted_samples_decrypt_and_parse_like_plain_ones() {
    let key = SecretKey::from_passphrase("family secret").unwrap();
    for (i, (topic, plain)) in samples().into_iter().enumerate() {
        let sealed = crypto::encrypted_payload(&plain, &key, [i as u8; 24]).unwrap();
        let outer = message(sealed.as_bytes(), Some(topic.kind()));
        assert_eq!(outer.message_type(), MessageType::Encrypted);
        let opened = open_payload(sealed.as_bytes(), Some(topic.kind()), Some(&key)).unwrap();
        assert_eq!(
            opened,
            parse_payload(&plain, Some(topic.kind())).unwrap(),
            "{topic}"
        );
    }
}

#[test]
fn encrypted_payload_errors() {
    let key = SecretKey::from_passphrase("family secret").unwrap();
    let (_, plain) = &samples()[0];
    let sealed = crypto::encrypted_payload(plain, &key, [1; 24]).unwrap();
    assert_eq!(
        open_payload(sealed.as_bytes(), None, None),
        Err(PayloadError::NoKey)
    );
    let wrong = SecretKey::from_passphrase("other").unwrap();
    assert_eq!(
        open_payload(sealed.as_bytes(), None, Some(&wrong)),
        Err(PayloadError::Crypto(CryptoError::WrongKeyOrTampered))
    );
    // The inner message is checked against the topic like a plain one.
    assert_eq!(
        open_payload(sealed.as_bytes(), Some(TopicKind::Event), Some(&key)),
        Err(PayloadError::UnexpectedOnTopic {
            message_type: MessageType::Location,
            topic_kind: TopicKind::Event,
        })
    );
    // Encryption inside encryption is refused.
    let twice = crypto::encrypted_payload(sealed.as_bytes(), &key, [2; 24]).unwrap();
    assert_eq!(
        open_payload(twice.as_bytes(), None, Some(&key)),
        Err(PayloadError::NestedEncryption)
    );
    // An invalid inner message is reported as such.
    let bad = crypto::encrypted_payload(br#"{"_type":"location"}"#, &key, [3; 24]).unwrap();
    assert_eq!(
        open_payload(bad.as_bytes(), None, Some(&key)),
        Err(PayloadError::MissingField {
            field: "lat".into()
        })
    );
    // Too short to hold a nonce and a MAC, checked even without a key.
    assert_eq!(
        parse_payload(br#"{"_type":"encrypted","data":"AAAA"}"#, None),
        Err(PayloadError::Crypto(CryptoError::TooShort {
            len: 3,
            min: 40
        }))
    );
}
