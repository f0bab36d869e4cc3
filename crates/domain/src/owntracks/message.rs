//! OwnTracks payloads: raw bytes (plus the topic's kind, when there is a topic) to a typed
//! [`Message`] that keeps its raw JSON text for storage.
//!
//! What is checked, in order: size ([`MAX_PAYLOAD_BYTES`]), zero length ([`Parsed::Empty`]),
//! JSON syntax, a top-level object, a string `_type` naming a known [`MessageType`], that type
//! being one the topic carries, then each typed field: required ones present, every typed field
//! of the JSON type it must have (`null` counts as absent for optional fields), coordinates in
//! range, timestamps plausible ([`MIN_TST`]..=[`MAX_TST`]). Fields we do not type are kept
//! untouched in [`Message::raw_json`]. An `encrypted` payload parses to
//! [`Body::Encrypted`]; [`open_payload`] also decrypts it and parses what is inside.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::Serialize;
use serde_json::{Map, Value};

use super::crypto::{self, SecretKey};
use super::error::PayloadError;
use super::topic::{TopicKind, truncated};

/// Largest payload accepted, in bytes. Cards carry a base64 face image (tens of KB as the apps
/// send them), and an encrypted card base64-encodes that again (×4/3); waypoint exports can
/// list hundreds of regions. 256 KiB leaves room for those and bounds what one message costs.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Smallest accepted timestamp (`tst`, `wtst`, `created_at`): after the Unix epoch.
pub const MIN_TST: i64 = 1;
/// Largest accepted timestamp: 9999-12-31T23:59:59Z. Also rejects millisecond timestamps of
/// any date after 1978, a common client mistake.
pub const MAX_TST: i64 = 253_402_300_799;

/// The outcome of parsing a payload that was not rejected.
// One value per message, moved once to its consumer: boxing would cost an allocation per point
// for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A zero-length payload: HTTP mode sends them, MQTT uses them to clear a retained message.
    /// Accepted and ignored; nothing to store.
    Empty,
    /// A valid message.
    Message(Message),
}

/// The `_type` of an OwnTracks message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Location,
    Transition,
    Waypoint,
    Waypoints,
    Lwt,
    Card,
    Status,
    Configuration,
    Cmd,
    Encrypted,
    Steps,
    Beacon,
}

impl MessageType {
    pub const ALL: [MessageType; 12] = [
        MessageType::Location,
        MessageType::Transition,
        MessageType::Waypoint,
        MessageType::Waypoints,
        MessageType::Lwt,
        MessageType::Card,
        MessageType::Status,
        MessageType::Configuration,
        MessageType::Cmd,
        MessageType::Encrypted,
        MessageType::Steps,
        MessageType::Beacon,
    ];

    /// The `_type` text.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Location => "location",
            MessageType::Transition => "transition",
            MessageType::Waypoint => "waypoint",
            MessageType::Waypoints => "waypoints",
            MessageType::Lwt => "lwt",
            MessageType::Card => "card",
            MessageType::Status => "status",
            MessageType::Configuration => "configuration",
            MessageType::Cmd => "cmd",
            MessageType::Encrypted => "encrypted",
            MessageType::Steps => "steps",
            MessageType::Beacon => "beacon",
        }
    }

    /// The type named by a `_type` text, if it is one we know.
    pub fn from_type_name(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether the apps publish this type on a topic of `kind` (booklet, "Topics").
    /// `encrypted` may arrive on any topic; its content is checked once decrypted.
    pub fn expected_on(self, kind: TopicKind) -> bool {
        match self {
            MessageType::Encrypted => true,
            MessageType::Location | MessageType::Lwt => kind == TopicKind::Device,
            MessageType::Transition => kind == TopicKind::Event,
            // Older app versions published a single waypoint to `/waypoints`.
            MessageType::Waypoint => matches!(kind, TopicKind::Waypoint | TopicKind::Waypoints),
            MessageType::Waypoints => kind == TopicKind::Waypoints,
            MessageType::Card => kind == TopicKind::Info,
            MessageType::Status => kind == TopicKind::Status,
            MessageType::Configuration => kind == TopicKind::Dump,
            MessageType::Cmd => kind == TopicKind::Cmd,
            MessageType::Steps => kind == TopicKind::Step,
            MessageType::Beacon => kind == TopicKind::Beacon,
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid OwnTracks message: its typed body and the JSON text it came as.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    body: Body,
    raw: String,
}

impl Message {
    pub fn body(&self) -> &Body {
        &self.body
    }

    pub fn into_body(self) -> Body {
        self.body
    }

    /// The payload exactly as received (for an opened `encrypted` payload: the decrypted JSON),
    /// valid UTF-8 JSON, for storage and for the Recorder API, which returns raw messages.
    /// A `configuration` dump holds the device's password: store
    /// [`Message::raw_json_redacted`] instead.
    pub fn raw_json(&self) -> &str {
        &self.raw
    }

    /// The raw JSON with the secrets of a `configuration` dump ([`SECRET_CONFIG_FIELDS`])
    /// replaced by `"****"`; any other message unchanged.
    pub fn raw_json_redacted(&self) -> String {
        if !matches!(self.body, Body::Configuration(_)) {
            return self.raw.clone();
        }
        match serde_json::from_str::<Value>(&self.raw) {
            Ok(Value::Object(mut map)) => {
                for field in SECRET_CONFIG_FIELDS {
                    if let Some(value) = map.get_mut(*field) {
                        *value = Value::String("****".to_owned());
                    }
                }
                Value::Object(map).to_string()
            }
            // Unreachable for a parsed message; redact everything rather than leak.
            _ => "{}".to_owned(),
        }
    }

    pub fn message_type(&self) -> MessageType {
        self.body.message_type()
    }

    /// The message's own timestamp (`tst`), when its type has one: the dedup key with the
    /// device and the type.
    pub fn tst(&self) -> Option<i64> {
        match &self.body {
            Body::Location(l) => Some(l.tst),
            Body::Transition(t) => Some(t.tst),
            Body::Waypoint(w) => Some(w.tst),
            Body::Lwt(l) => l.tst,
            Body::Steps(s) => s.tst,
            Body::Beacon(b) => b.tst,
            Body::Waypoints(_)
            | Body::Card(_)
            | Body::Status
            | Body::Configuration(_)
            | Body::Cmd(_)
            | Body::Encrypted(_) => None,
        }
    }
}

/// Fields of a `configuration` dump that are secrets.
pub const SECRET_CONFIG_FIELDS: &[&str] =
    &["password", "encryptionKey", "clientpkcs", "passphrase"];

/// The typed content of a message, by `_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Location(Location),
    Transition(Transition),
    Waypoint(Waypoint),
    Waypoints(Waypoints),
    /// The broker published the phone's last will: it went offline.
    Lwt(Lwt),
    Card(Card),
    /// App status (permissions, battery optimisation, …); nothing typed, see the raw JSON.
    Status,
    Configuration(Configuration),
    Cmd(Command),
    Encrypted(Encrypted),
    Steps(Steps),
    Beacon(Beacon),
}

impl Body {
    pub fn message_type(&self) -> MessageType {
        match self {
            Body::Location(_) => MessageType::Location,
            Body::Transition(_) => MessageType::Transition,
            Body::Waypoint(_) => MessageType::Waypoint,
            Body::Waypoints(_) => MessageType::Waypoints,
            Body::Lwt(_) => MessageType::Lwt,
            Body::Card(_) => MessageType::Card,
            Body::Status => MessageType::Status,
            Body::Configuration(_) => MessageType::Configuration,
            Body::Cmd(_) => MessageType::Cmd,
            Body::Encrypted(_) => MessageType::Encrypted,
            Body::Steps(_) => MessageType::Steps,
            Body::Beacon(_) => MessageType::Beacon,
        }
    }
}

/// `_type: location`. Field names follow the booklet; units in the comments.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Degrees, in [-90, 90].
    pub lat: f64,
    /// Degrees, in [-180, 180].
    pub lon: f64,
    /// When the fix was taken, Unix seconds.
    pub tst: i64,
    /// Accuracy, metres.
    pub acc: Option<f64>,
    /// Altitude, metres.
    pub alt: Option<f64>,
    /// Vertical accuracy, metres.
    pub vac: Option<f64>,
    /// Velocity, km/h.
    pub vel: Option<f64>,
    /// Course over ground, degrees.
    pub cog: Option<f64>,
    /// Battery level, percent.
    pub batt: Option<i64>,
    /// Battery status: 0 unknown, 1 unplugged, 2 charging, 3 full.
    pub bs: Option<i64>,
    /// Trigger (`p` ping, `c` region, `u` manual, `t` timer, …).
    pub trigger: Option<String>,
    /// Tracker id, two characters shown on maps.
    pub tid: Option<String>,
    /// Connectivity: `w` wifi, `o` offline, `m` mobile.
    pub conn: Option<String>,
    /// Region names the device is in.
    pub inregions: Vec<String>,
    /// Region ids the device is in.
    pub inrids: Vec<String>,
    /// Wi-Fi network name (`SSID`).
    pub ssid: Option<String>,
    /// Wi-Fi access point (`BSSID`).
    pub bssid: Option<String>,
    /// Monitoring mode (`m`).
    pub monitoring: Option<i64>,
    /// When the message was created (may differ from `tst` for queued fixes), Unix seconds.
    pub created_at: Option<i64>,
    /// The topic the phone would publish to (sent in HTTP mode).
    pub topic: Option<String>,
}

/// Region enter or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionEvent {
    Enter,
    Leave,
}

/// `_type: transition`: the device entered or left a region.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub event: TransitionEvent,
    pub lat: f64,
    pub lon: f64,
    /// When the transition happened, Unix seconds.
    pub tst: i64,
    /// When the region (waypoint) was created, Unix seconds.
    pub wtst: Option<i64>,
    pub acc: Option<f64>,
    /// Region name.
    pub desc: Option<String>,
    /// Region id.
    pub rid: Option<String>,
    pub trigger: Option<String>,
    pub tid: Option<String>,
}

/// `_type: waypoint`: a region (geofence) defined on the phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Waypoint {
    pub desc: String,
    pub lat: f64,
    pub lon: f64,
    /// Radius, metres.
    pub rad: Option<f64>,
    /// Creation time, Unix seconds; the apps use it as the region's key.
    pub tst: i64,
    pub rid: Option<String>,
}

/// `_type: waypoints`: a list of regions exported by the phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Waypoints {
    pub waypoints: Vec<Waypoint>,
    /// `_creator`, when the app sets it.
    pub creator: Option<String>,
}

/// `_type: lwt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lwt {
    /// When the phone connected (the will is set at CONNECT), Unix seconds.
    pub tst: Option<i64>,
}

/// `_type: card`: a user's display name and picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub name: Option<String>,
    /// The picture, base64 (PNG or JPEG), checked to decode; `None` when absent or empty.
    pub face: Option<String>,
    pub tid: Option<String>,
}

impl Card {
    /// The card as a `_type: card` payload, as the apps publish it on `…/info`.
    pub fn to_payload(&self) -> String {
        let mut map = Map::new();
        map.insert("_type".into(), "card".into());
        for (key, value) in [
            ("name", &self.name),
            ("face", &self.face),
            ("tid", &self.tid),
        ] {
            if let Some(v) = value {
                map.insert(key.into(), v.clone().into());
            }
        }
        Value::Object(map).to_string()
    }
}

/// `_type: configuration` (a dump). Its raw JSON holds secrets: see
/// [`Message::raw_json_redacted`].
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// Connection mode: 0 MQTT, 3 HTTP.
    pub mode: Option<i64>,
    pub device_id: Option<String>,
    pub tid: Option<String>,
}

/// `_type: cmd`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// `reportLocation`, `dump`, `status`, `setWaypoints`, `clearWaypoints`,
    /// `setConfiguration`, … (kept as text: the apps add actions over time).
    pub action: String,
}

/// `_type: encrypted`: the sealed form of another message.
#[derive(Debug, Clone, PartialEq)]
pub struct Encrypted {
    /// Base64 of nonce ‖ MAC ‖ ciphertext (see [`crypto`]).
    pub data: String,
}

/// `_type: steps` (iOS step counter).
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    pub tst: Option<i64>,
    pub steps: Option<i64>,
}

/// `_type: beacon` (iOS beacon ranging).
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub tst: Option<i64>,
    pub uuid: Option<String>,
}

/// Parses one payload. `kind` is the topic's kind for MQTT, `None` for HTTP `/pub` (one
/// endpoint for every type). An `encrypted` payload is returned as [`Body::Encrypted`]
/// without decrypting; use [`open_payload`] to decrypt it too.
pub fn parse_payload(payload: &[u8], kind: Option<TopicKind>) -> Result<Parsed, PayloadError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if payload.is_empty() {
        return Ok(Parsed::Empty);
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
    let raw = String::from_utf8(payload.to_vec())
        .map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(PayloadError::NotAnObject {
            got: json_kind(&value),
        });
    };
    let body = parse_body(&map, kind)?;
    Ok(Parsed::Message(Message { body, raw }))
}

/// Parses one payload and, when it is `encrypted`, decrypts it with `key` and parses the
/// message inside (which must not be encrypted again). Without a key an `encrypted` payload is
/// rejected with [`PayloadError::NoKey`].
pub fn open_payload(
    payload: &[u8],
    kind: Option<TopicKind>,
    key: Option<&SecretKey>,
) -> Result<Parsed, PayloadError> {
    let parsed = parse_payload(payload, kind)?;
    let Parsed::Message(Message {
        body: Body::Encrypted(encrypted),
        ..
    }) = &parsed
    else {
        return Ok(parsed);
    };
    let key = key.ok_or(PayloadError::NoKey)?;
    let inner = crypto::decrypt(&encrypted.data, key)?;
    match parse_payload(&inner, kind)? {
        Parsed::Message(message) if message.message_type() == MessageType::Encrypted => {
            Err(PayloadError::NestedEncryption)
        }
        other => Ok(other),
    }
}

fn parse_body(map: &Map<String, Value>, kind: Option<TopicKind>) -> Result<Body, PayloadError> {
    let fields = Fields::top(map);
    let type_name = fields.req_str("_type")?;
    let message_type = MessageType::from_type_name(type_name)
        .ok_or_else(|| PayloadError::UnknownType(truncated(type_name)))?;
    if let Some(kind) = kind
        && !message_type.expected_on(kind)
    {
        return Err(PayloadError::UnexpectedOnTopic {
            message_type,
            topic_kind: kind,
        });
    }
    Ok(match message_type {
        MessageType::Location => Body::Location(location(&fields)?),
        MessageType::Transition => Body::Transition(transition(&fields)?),
        MessageType::Waypoint => Body::Waypoint(waypoint(&fields)?),
        MessageType::Waypoints => Body::Waypoints(waypoints(&fields)?),
        MessageType::Lwt => Body::Lwt(Lwt {
            tst: fields.opt_tst("tst")?,
        }),
        MessageType::Card => Body::Card(card(&fields)?),
        MessageType::Status => Body::Status,
        MessageType::Configuration => Body::Configuration(Configuration {
            mode: fields.opt_i64("mode")?,
            device_id: fields.opt_string("deviceId")?,
            tid: fields.opt_string("tid")?,
        }),
        MessageType::Cmd => Body::Cmd(Command {
            action: fields.req_str("action")?.to_owned(),
        }),
        MessageType::Encrypted => {
            let data = fields.req_str("data")?;
            crypto::decode_data(data)?;
            Body::Encrypted(Encrypted {
                data: data.to_owned(),
            })
        }
        MessageType::Steps => Body::Steps(Steps {
            tst: fields.opt_tst("tst")?,
            steps: fields.opt_i64("steps")?,
        }),
        MessageType::Beacon => Body::Beacon(Beacon {
            tst: fields.opt_tst("tst")?,
            uuid: fields.opt_string("uuid")?,
        }),
    })
}

fn location(f: &Fields<'_>) -> Result<Location, PayloadError> {
    Ok(Location {
        lat: f.lat("lat")?,
        lon: f.lon("lon")?,
        tst: f.req_tst("tst")?,
        acc: f.opt_f64("acc")?,
        alt: f.opt_f64("alt")?,
        vac: f.opt_f64("vac")?,
        vel: f.opt_f64("vel")?,
        cog: f.opt_f64("cog")?,
        batt: f.opt_i64("batt")?,
        bs: f.opt_i64("bs")?,
        trigger: f.opt_string("t")?,
        tid: f.opt_string("tid")?,
        conn: f.opt_string("conn")?,
        inregions: f.opt_string_list("inregions")?,
        inrids: f.opt_string_list("inrids")?,
        ssid: f.opt_string("SSID")?,
        bssid: f.opt_string("BSSID")?,
        monitoring: f.opt_i64("m")?,
        created_at: f.opt_tst("created_at")?,
        topic: f.opt_string("topic")?,
    })
}

fn transition(f: &Fields<'_>) -> Result<Transition, PayloadError> {
    let event = match f.req_str("event")? {
        "enter" => TransitionEvent::Enter,
        "leave" => TransitionEvent::Leave,
        other => {
            return Err(PayloadError::InvalidValue {
                field: f.path("event"),
                expected: "\"enter\" or \"leave\"",
                got: format!("{:?}", truncated(other)),
            });
        }
    };
    Ok(Transition {
        event,
        lat: f.lat("lat")?,
        lon: f.lon("lon")?,
        tst: f.req_tst("tst")?,
        wtst: f.opt_tst("wtst")?,
        acc: f.opt_f64("acc")?,
        desc: f.opt_string("desc")?,
        rid: f.opt_string("rid")?,
        trigger: f.opt_string("t")?,
        tid: f.opt_string("tid")?,
    })
}

fn waypoint(f: &Fields<'_>) -> Result<Waypoint, PayloadError> {
    Ok(Waypoint {
        desc: f.req_str("desc")?.to_owned(),
        lat: f.lat("lat")?,
        lon: f.lon("lon")?,
        rad: f.opt_f64("rad")?,
        tst: f.req_tst("tst")?,
        rid: f.opt_string("rid")?,
    })
}

fn waypoints(f: &Fields<'_>) -> Result<Waypoints, PayloadError> {
    let items = match f.get("waypoints") {
        None => return Err(f.missing("waypoints")),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(f.wrong_type("waypoints", "an array", other)),
    };
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("waypoints[{i}]");
        let Value::Object(map) = item else {
            return Err(f.wrong_type(&name, "an object", item));
        };
        list.push(waypoint(&Fields::nested(map, f.path(&name)))?);
    }
    Ok(Waypoints {
        waypoints: list,
        creator: f.opt_string("_creator")?,
    })
}

fn card(f: &Fields<'_>) -> Result<Card, PayloadError> {
    const FACE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let face = f.opt_string("face")?.filter(|face| !face.is_empty());
    if let Some(face) = &face {
        let compact: String = face.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if let Err(e) = FACE.decode(compact.as_bytes()) {
            return Err(PayloadError::InvalidValue {
                field: f.path("face"),
                expected: "a base64 image",
                got: format!("invalid base64 ({e})"),
            });
        }
    }
    Ok(Card {
        name: f.opt_string("name")?,
        face,
        tid: f.opt_string("tid")?,
    })
}

/// The JSON type name of a value, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to an object's fields, naming fields by their path in errors.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// `""` at the top level, `"waypoints[3]."` inside a list.
    prefix: String,
}

impl<'a> Fields<'a> {
    fn top(map: &'a Map<String, Value>) -> Self {
        Fields {
            map,
            prefix: String::new(),
        }
    }

    fn nested(map: &'a Map<String, Value>, path: String) -> Self {
        Fields {
            map,
            prefix: format!("{path}."),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The field's value; `null` counts as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn missing(&self, name: &str) -> PayloadError {
        PayloadError::MissingField {
            field: self.path(name),
        }
    }

    fn wrong_type(&self, name: &str, expected: &'static str, got: &Value) -> PayloadError {
        PayloadError::WrongType {
            field: self.path(name),
            expected,
            got: json_kind(got),
        }
    }

    fn req_str(&self, name: &str) -> Result<&'a str, PayloadError> {
        match self.get(name) {
            None => Err(self.missing(name)),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.wrong_type(name, "a string", other)),
        }
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, PayloadError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong_type(name, "a string", other)),
        }
    }

    fn opt_string_list(&self, name: &str) -> Result<Vec<String>, PayloadError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong_type(&format!("{name}[{i}]"), "a string", other)),
                })
                .collect(),
            Some(other) => Err(self.wrong_type(name, "an array of strings", other)),
        }
    }

    fn opt_f64(&self, name: &str) -> Result<Option<f64>, PayloadError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(PayloadError::InvalidValue {
                    field: self.path(name),
                    expected: "a finite number",
                    got: n.to_string(),
                }),
            },
            Some(other) => Err(self.wrong_type(name, "a number", other)),
        }
    }

    fn req_f64(&self, name: &str) -> Result<f64, PayloadError> {
        self.opt_f64(name)?.ok_or_else(|| self.missing(name))
    }

    /// An integer; a float with no fractional part (`87.0`) counts, as some clients send them.
    fn opt_i64(&self, name: &str) -> Result<Option<i64>, PayloadError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Value::Number(n) = value else {
            return Err(self.wrong_type(name, "an integer", value));
        };
        if let Some(i) = n.as_i64() {
            return Ok(Some(i));
        }
        // Within ±2^53 a float converts to i64 exactly; outside it (or with a fraction, or a
        // u64 past i64::MAX) it is not an integer we accept.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() <= EXACT => Ok(Some(x as i64)),
            _ => Err(PayloadError::InvalidValue {
                field: self.path(name),
                expected: "an integer",
                got: n.to_string(),
            }),
        }
    }

    fn opt_tst(&self, name: &str) -> Result<Option<i64>, PayloadError> {
        match self.opt_i64(name)? {
            None => Ok(None),
            Some(t) if (MIN_TST..=MAX_TST).contains(&t) => Ok(Some(t)),
            Some(t) => Err(PayloadError::InvalidValue {
                field: self.path(name),
                expected: "a Unix time in seconds between 1 and 253402300799",
                got: t.to_string(),
            }),
        }
    }

    fn req_tst(&self, name: &str) -> Result<i64, PayloadError> {
        self.opt_tst(name)?.ok_or_else(|| self.missing(name))
    }

    fn lat(&self, name: &str) -> Result<f64, PayloadError> {
        self.in_range(name, -90.0, 90.0, "a latitude in [-90, 90]")
    }

    fn lon(&self, name: &str) -> Result<f64, PayloadError> {
        self.in_range(name, -180.0, 180.0, "a longitude in [-180, 180]")
    }

    fn in_range(
        &self,
        name: &str,
        min: f64,
        max: f64,
        expected: &'static str,
    ) -> Result<f64, PayloadError> {
        let x = self.req_f64(name)?;
        if (min..=max).contains(&x) {
            Ok(x)
        } else {
            Err(PayloadError::InvalidValue {
                field: self.path(name),
                expected,
                got: x.to_string(),
            })
        }
    }
}
