//! The OwnTracks Recorder's read API under `/api/0/…`, with the Recorder's paths, parameters
//! and JSON shapes, so its clients (OwnTracks Frontend, scripts) work against Porchlight
//! unchanged. What the Recorder does is read from its source (owntracks/recorder `http.c`,
//! `storage.c`, `util.c`) and `API.md`; where we differ, the item says so.
//!
//! - `version` → `{"version", "git"}`; `monitor` → `<unix seconds> <topic>` as plain text.
//! - `list` → `{"results": [user, …]}`; with `user`, that user's devices. Listing a device's
//!   `.rec` files (`user` and `device`) has no meaning here and answers 400.
//! - `last` (`user`, `device`, `fields`) → an array of each device's newest location: the
//!   phone's JSON plus `topic`, `username`, `device`, `ghash`, `isotst`, `disptst` and the
//!   card's `name`/`face`; `fields=a,b` keeps only those members.
//! - `locations` (`user` and `device` required; `from`, `to`, `limit`, `format`, `fields`) →
//!   `{"count", "data", "status": 200, "version"}` whose `data` are the phone's JSON plus
//!   `ghash`, `isorcv`, `isotst`, `disptst`; or `format=geojson` (a FeatureCollection of
//!   Points), `geojsonpoi` (only points with a `poi`), `xml`, `linestring` (one LineString Feature), `gpx` (GPX 1.1), `csv`.
//!   `from`/`to` take the Recorder's forms (`YYYY-MM`, `YYYY-MM-DD`, `…THH`, `…THH:MM`,
//!   `…THH:MM:SS`, a `t` for the `T`), read as UTC; we also accept a trailing `Z`, fractional
//!   seconds and plain Unix seconds. Defaults: the last 6 hours up to now. The window is on
//!   the phone's `tst`, `from` inclusive and `to` exclusive. Without `limit`, oldest first;
//!   with `limit`, the newest `limit` points, newest first (as the Recorder's reverse search).
//!
//! Parameters come from the query string, a form body (the Recorder's docs use `curl -d`),
//! or the `X-Limit-User`/`X-Limit-Device`/`X-Limit-From`/`X-Limit-To` headers, which win (as
//! in the Recorder). User and device names match regardless of ASCII case (the Recorder
//! lowercases them).
//!
//! Visibility: a user sees their own users/devices and their friends' (`visibility.rs`), an
//! admin all. A user or device the caller may not see answers exactly as one that does not
//! exist (the Recorder's empty answers), so the API never reveals whether another user's
//! device exists.
//!
//! Bounds: a window answers at most [`MAX_ROWS`] points; a larger window without `limit` is
//! refused with 400 (narrow it or pass `limit`), never streamed unbounded.
//! Differences: no reverse geocoding (`addr` is absent, GeoJSON's `address` is empty); bad
//! input is 400 with a JSON error where the Recorder answers 416 or ignores it; `count` is
//! there even when 0; CSV has fixed default columns (the Recorder takes the first point's
//! members); GPX puts `ele` before `time` as the GPX schema requires.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use porchlight_store::{LocationFields, OwnTracksDevice, StoredLocation, User};
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::RecorderCaller;
use super::error::{ApiError, ApiResult};
use super::visibility::visible_users;

/// Most points one `locations` request answers.
pub const MAX_ROWS: u32 = 100_000;

/// The Recorder's default window when `from` is not given (`DEFAULT_HISTORY_HOURS`, 6).
const DEFAULT_HISTORY_SECS: i64 = 6 * 3600;

/// Geohash precision of `ghash` (the Recorder's default, 7).
const GHASH_PRECISION: usize = 7;

/// What `version` reports as the Recorder version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The CSV columns when `fields` is not given.
const CSV_COLUMNS: &[&str] = &[
    "tst", "isotst", "tid", "lat", "lon", "acc", "alt", "vac", "vel", "cog", "batt", "bs", "conn",
    "t", "ghash", "isorcv", "disptst",
];

/// The request's parameters: the `X-Limit-*` headers, then the query string, then a form body.
struct Params(HashMap<String, String>);

impl Params {
    fn new(method: &Method, headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Params {
        let mut map = HashMap::new();
        // The Recorder's `field()`: an `X-Limit-*` header wins over a parameter.
        for (name, header) in [
            ("user", "x-limit-user"),
            ("device", "x-limit-device"),
            ("from", "x-limit-from"),
            ("to", "x-limit-to"),
        ] {
            if let Some(v) = headers.get(header).and_then(|v| v.to_str().ok()) {
                map.insert(name.to_owned(), v.to_owned());
            }
        }
        let mut add = |pairs: form_urlencoded::Parse<'_>| {
            for (k, v) in pairs {
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        };
        if let Some(q) = &query {
            add(form_urlencoded::parse(q.as_bytes()));
        }
        if *method == Method::POST {
            add(form_urlencoded::parse(body));
        }
        Params(map)
    }

    /// A parameter's value; empty counts as absent (as in the Recorder).
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// `fields=a,b,c` as a list of names.
    fn fields(&self) -> Option<Vec<String>> {
        self.get("fields").map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// `GET /api/0/version`.
pub async fn version(RecorderCaller(_caller): RecorderCaller) -> Json<Value> {
    Json(json!({ "version": VERSION, "git": format!("porchlight-{VERSION}") }))
}

/// `GET|POST /api/0/list`.
pub async fn list(
    State(state): State<AppState>,
    RecorderCaller(caller): RecorderCaller,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let params = Params::new(&method, &headers, query, &body);
    let devices = state
        .store
        .owntracks_devices(visible_users(&caller, &state.friends.snapshot()))
        .await?;
    let results: Vec<String> = match (params.get("user"), params.get("device")) {
        (None, _) => {
            let mut users: Vec<String> = devices.into_iter().map(|d| d.username).collect();
            users.dedup();
            users
        }
        (Some(user), None) => devices
            .into_iter()
            .filter(|d| d.username.eq_ignore_ascii_case(user))
            .map(|d| d.name)
            .collect(),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "Listing a device's .rec files is not supported; use /api/0/locations.".into(),
            ));
        }
    };
    Ok(Json(json!({ "results": results })))
}

/// `GET /api/0/monitor`: plain text `<unix seconds> <topic>` of the latest message received
/// from a device the caller may see (the Recorder: of any message), or `not available`.
/// The topic is the device's base topic (`owntracks/<user>/<device>`).
pub async fn monitor(
    State(state): State<AppState>,
    RecorderCaller(caller): RecorderCaller,
) -> ApiResult<String> {
    let latest = state
        .store
        .owntracks_devices(visible_users(&caller, &state.friends.snapshot()))
        .await?
        .into_iter()
        .max_by_key(|d| d.last_seen_at);
    Ok(match latest {
        Some(d) => format!(
            "{} owntracks/{}/{}\n",
            unix_secs(d.last_seen_at),
            d.username,
            d.name
        ),
        None => "not available\n".to_owned(),
    })
}

/// `GET|POST /api/0/last`.
pub async fn last(
    State(state): State<AppState>,
    RecorderCaller(caller): RecorderCaller,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let params = Params::new(&method, &headers, query, &body);
    let (user, device) = (params.get("user"), params.get("device"));
    let fields = params.fields();
    let mut out = Vec::new();
    for last in state
        .store
        .last_locations(visible_users(&caller, &state.friends.snapshot()))
        .await?
    {
        if user.is_some_and(|u| !u.eq_ignore_ascii_case(&last.device.username))
            || device.is_some_and(|d| !d.eq_ignore_ascii_case(&last.device.name))
        {
            continue;
        }
        let Some(location) = last.location else {
            continue;
        };
        let raw = state
            .store
            .location_raw(last.device.id, location.tst)
            .await?;
        let mut object = location_object(&location, raw.as_deref());
        let d = &last.device;
        object.insert(
            "topic".into(),
            json!(format!("owntracks/{}/{}", d.username, d.name)),
        );
        object.insert("username".into(), json!(d.username));
        object.insert("device".into(), json!(d.name));
        if let Some(card) = state.store.card(d.id).await? {
            if let Some(name) = card.name {
                object.entry("name").or_insert(json!(name));
            }
            if let Some(face) = card.face {
                object.entry("face").or_insert(json!(face));
            }
        }
        out.push(Value::Object(pick(object, fields.as_deref())));
    }
    Ok(Json(Value::Array(out)))
}

/// The output formats of `locations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    GeoJson,
    /// GeoJSON of the points that carry a `poi` (a point of interest the user named).
    GeoJsonPoi,
    LineString,
    Gpx,
    Csv,
    /// The Recorder's `<owntracks><point>…</point></owntracks>`.
    Xml,
}

impl Format {
    fn parse(s: Option<&str>) -> ApiResult<Format> {
        Ok(match s {
            None | Some("json") => Format::Json,
            Some("geojson") => Format::GeoJson,
            Some("geojsonpoi") => Format::GeoJsonPoi,
            Some("linestring") => Format::LineString,
            Some("gpx") => Format::Gpx,
            Some("csv") => Format::Csv,
            Some("xml") => Format::Xml,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "Unknown format {other:?}: use json, geojson, geojsonpoi, linestring, gpx, csv \
                     or xml."
                )));
            }
        })
    }
}

/// `GET|POST /api/0/locations`.
pub async fn locations(
    State(state): State<AppState>,
    RecorderCaller(caller): RecorderCaller,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let params = Params::new(&method, &headers, query, &body);
    let (Some(user), Some(device)) = (params.get("user"), params.get("device")) else {
        return Err(ApiError::BadRequest("user and device are required.".into()));
    };
    let format = Format::parse(params.get("format"))?;
    let now = unix_secs(SystemTime::now());
    let from = match params.get("from") {
        Some(s) => parse_time("from", s)?,
        None => now - DEFAULT_HISTORY_SECS,
    };
    let to = match params.get("to") {
        Some(s) => parse_time("to", s)?,
        None => now,
    };
    if from > to {
        return Err(ApiError::BadRequest(
            "from is after to: impossible date/time range.".into(),
        ));
    }
    let limit = match params.get("limit") {
        None => None,
        Some(s) => match s.parse::<u32>() {
            Ok(0) => None,
            Ok(n) if n <= MAX_ROWS => Some(n),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 0 to {MAX_ROWS}; got {s:?}."
                )));
            }
        },
    };

    let target = find_device(&state, &caller, user, device).await?;
    let mut points = match &target {
        None => Vec::new(),
        Some(d) => {
            let rows = state
                .store
                .location_window(d.id, from, to, limit.unwrap_or(MAX_ROWS + 1))
                .await?;
            if limit.is_none() && rows.len() > MAX_ROWS as usize {
                return Err(ApiError::BadRequest(format!(
                    "More than {MAX_ROWS} points in this window: narrow from/to or pass limit."
                )));
            }
            rows
        }
    };
    if limit.is_some() {
        points.reverse();
    }

    let response = match format {
        Format::GeoJson => Json(geojson(&points)).into_response(),
        Format::LineString => Json(linestring(&points)).into_response(),
        Format::Gpx => typed(gpx(&points), "application/gpx+xml"),
        Format::Json | Format::Csv | Format::GeoJsonPoi | Format::Xml => {
            let raw: HashMap<i64, String> = match &target {
                Some(d) if !points.is_empty() => state
                    .store
                    .location_window_raw(d.id, from, to, limit.unwrap_or(MAX_ROWS + 1))
                    .await?
                    .into_iter()
                    .collect(),
                _ => HashMap::new(),
            };
            let fields = params.fields();
            let object = |p: &StoredLocation| {
                object_with_times(location_object(p, raw.get(&p.tst).map(String::as_str)), p)
            };
            if format == Format::Json {
                // Written object by object: a window of 100,000 points is ~36 MB of JSON, and
                // a tree of all its objects would take ten times that at once.
                json_answer(points.iter().map(|p| pick(object(p), fields.as_deref())))?
            } else {
                let data: Vec<Map<String, Value>> = points.iter().map(object).collect();
                if format == Format::Xml {
                    let data: Vec<Map<String, Value>> = data
                        .into_iter()
                        .map(|o| pick(o, fields.as_deref()))
                        .collect();
                    typed(xml(&data), "application/xml; charset=utf-8")
                } else if format == Format::GeoJsonPoi {
                    Json(geojson_poi(&data)).into_response()
                } else {
                    let columns: Vec<String> = fields
                        .unwrap_or_else(|| CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect());
                    typed(csv(&columns, &data), "text/csv; charset=utf-8")
                }
            }
        }
    };
    Ok(response)
}

/// The Recorder's JSON answer, `{"count", "data", "status", "version"}`, serialised one
/// object at a time into the body.
fn json_answer(objects: impl ExactSizeIterator<Item = Map<String, Value>>) -> ApiResult<Response> {
    let count = objects.len();
    let mut body = Vec::with_capacity(count * 400 + 64);
    body.extend_from_slice(format!("{{\"count\":{count},\"data\":[").as_bytes());
    for (i, object) in objects.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &object)
            .map_err(|e| ApiError::Internal(format!("location not serialised: {e}")))?;
    }
    body.extend_from_slice(format!("],\"status\":200,\"version\":{}}}", json!(VERSION)).as_bytes());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The caller-visible device `user`/`device`; `None` when it does not exist or is not theirs
/// to see (the same answer, so existence does not leak).
async fn find_device(
    state: &AppState,
    caller: &User,
    user: &str,
    device: &str,
) -> ApiResult<Option<OwnTracksDevice>> {
    Ok(state
        .store
        .owntracks_devices(visible_users(caller, &state.friends.snapshot()))
        .await?
        .into_iter()
        .find(|d| d.username.eq_ignore_ascii_case(user) && d.name.eq_ignore_ascii_case(device)))
}

fn typed(body: String, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The phone's JSON of a stored location (or, if it cannot be read, its typed fields), with
/// `ghash`, `isotst` and `disptst` added as the Recorder adds them.
fn location_object(p: &StoredLocation, raw: Option<&str>) -> Map<String, Value> {
    let mut object = raw
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_else(|| typed_fields(p.tst, &p.fields));
    let f = &p.fields;
    object.insert(
        "ghash".into(),
        json!(geohash(f.lat, f.lon, GHASH_PRECISION)),
    );
    object.insert("isotst".into(), json!(iso_time(p.tst)));
    object.insert("disptst".into(), json!(display_time(p.tst)));
    object
}

/// Adds the receipt time `isorcv` (the Recorder's `.rec` line time).
fn object_with_times(mut object: Map<String, Value>, p: &StoredLocation) -> Map<String, Value> {
    object.insert("isorcv".into(), json!(iso_time(unix_secs(p.received_at))));
    object
}

fn typed_fields(tst: i64, f: &LocationFields) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("_type".into(), json!("location"));
    o.insert("tst".into(), json!(tst));
    o.insert("lat".into(), json!(f.lat));
    o.insert("lon".into(), json!(f.lon));
    let optional = [
        ("acc", f.acc.map(|v| json!(v))),
        ("alt", f.alt.map(|v| json!(v))),
        ("vac", f.vac.map(|v| json!(v))),
        ("vel", f.vel.map(|v| json!(v))),
        ("cog", f.cog.map(|v| json!(v))),
        ("batt", f.batt.map(|v| json!(v))),
        ("bs", f.bs.map(|v| json!(v))),
        ("conn", f.conn.as_ref().map(|v| json!(v))),
        ("t", f.trigger.as_ref().map(|v| json!(v))),
        ("tid", f.tid.as_ref().map(|v| json!(v))),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    }
    o
}

/// Keeps only `fields` (in their order) when given, as the Recorder's `fields=`.
fn pick(object: Map<String, Value>, fields: Option<&[String]>) -> Map<String, Value> {
    match fields {
        None => object,
        Some(fields) => fields
            .iter()
            .filter_map(|f| object.get(f).map(|v| (f.clone(), v.clone())))
            .collect(),
    }
}

/// The Recorder's `format=geojson`: a FeatureCollection of Points, `[lon, lat]`, with
/// `name` (the tid), `vel`, `tst`, `acc`, `alt` as whole numbers, `address` and `isotst`.
fn geojson(points: &[StoredLocation]) -> Value {
    let features: Vec<Value> = points
        .iter()
        .map(|p| {
            let f = &p.fields;
            let whole = |v: Option<f64>| v.map_or(0, |v| v.trunc() as i64);
            json!({
                "type": "Feature",
                "geometry": { "type": "Point", "coordinates": [f.lon, f.lat] },
                "properties": {
                    "name": f.tid.clone().unwrap_or_default(),
                    "vel": whole(f.vel),
                    "tst": p.tst,
                    "acc": whole(f.acc),
                    "alt": whole(f.alt),
                    "address": "",
                    "isotst": iso_time(p.tst),
                },
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// The Recorder's `format=geojsonpoi`: Points of the locations with a `poi`, named by it.
fn geojson_poi(data: &[Map<String, Value>]) -> Value {
    let features: Vec<Value> = data
        .iter()
        .filter_map(|o| {
            let poi = o.get("poi")?.as_str()?;
            let (lat, lon) = (o.get("lat")?.as_f64()?, o.get("lon")?.as_f64()?);
            Some(json!({
                "type": "Feature",
                "geometry": { "type": "Point", "coordinates": [lon, lat] },
                "properties": {
                    "name": poi,
                    "address": "",
                    "isotst": o.get("isotst").cloned().unwrap_or(Value::Null),
                },
            }))
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// The Recorder's `format=linestring`: one Feature whose LineString runs oldest to newest.
fn linestring(points: &[StoredLocation]) -> Value {
    let mut sorted: Vec<&StoredLocation> = points.iter().collect();
    sorted.sort_by_key(|p| p.tst);
    let coordinates: Vec<[f64; 2]> = sorted
        .iter()
        .map(|p| [p.fields.lon, p.fields.lat])
        .collect();
    json!({
        "type": "Feature",
        "properties": {},
        "geometry": { "type": "LineString", "coordinates": coordinates },
    })
}

/// The Recorder's `format=gpx`: GPX 1.1, one track of one segment (`ele` before `time`, as
/// the GPX schema orders them).
fn gpx(points: &[StoredLocation]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\" ?>\n\
         <gpx version=\"1.1\" creator=\"Porchlight\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns=\"http://www.topografix.com/GPX/1/1\">\n <trk>\n  <trkseg>\n",
    );
    for p in points {
        let f = &p.fields;
        let _ = writeln!(xml, "    <trkpt lat=\"{}\" lon=\"{}\">", f.lat, f.lon);
        if let Some(alt) = f.alt {
            let _ = writeln!(xml, "      <ele>{alt:.2}</ele>");
        }
        let _ = writeln!(xml, "      <time>{}</time>", iso_time(p.tst));
        xml.push_str("    </trkpt>\n");
    }
    xml.push_str("  </trkseg>\n </trk>\n</gpx>\n");
    xml
}

/// The Recorder's `format=xml`: one `<point>` per location with an element per member (but
/// `_type`); arrays and objects as their JSON text. Members whose names are not XML names
/// are left out.
fn xml(rows: &[Map<String, Value>]) -> String {
    let mut out = String::from(
        "<?xml version='1.0' encoding='UTF-8'?>\n\
         <?xml-stylesheet type='text/xsl' href='owntracks.xsl'?>\n<owntracks>\n",
    );
    for row in rows {
        out.push_str(" <point>\n");
        for (key, value) in row {
            if key == "_type" || !is_xml_name(key) {
                continue;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(out, "  <{key}>{}</{key}>", xml_escape(&text));
        }
        out.push_str(" </point>\n");
    }
    out.push_str("</owntracks>\n");
    out
}

/// A conservative XML element name: an ASCII letter or `_`, then letters, digits, `_`, `-`, `.`.
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.to_ascii_lowercase().starts_with("xml")
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and line breaks are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// CSV with a header line of `columns`; a missing member is an empty cell.
fn csv(columns: &[String], rows: &[Map<String, Value>]) -> String {
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| csv_cell(c)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match row.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => csv_cell(s),
                Some(other) => csv_cell(&other.to_string()),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// One CSV cell, quoted when it holds a comma, quote or line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn utc(tst: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(tst).ok()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (the Recorder's `isotst`).
fn iso_time(tst: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    utc(tst)
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (the Recorder's `disptst`).
fn display_time(tst: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    utc(tst)
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

fn parse_time(name: &str, s: &str) -> ApiResult<i64> {
    recorder_time(s).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{name}={s:?} is not a time: use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS (UTC, a Z may \
             follow), a shorter prefix such as YYYY-MM or YYYY-MM-DDTHH:MM, or Unix seconds."
        ))
    })
}

/// A time as the Recorder's `str_time_to_secs` reads it (see the module header), in Unix
/// seconds; `None` when it is not one.
fn recorder_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() >= 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    let (date, clock) = match s.split_once(['T', 't']) {
        Some((d, c)) => (d, Some(c)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let year: i32 = digits(parts.next()?, 4, 4)?;
    let month: u8 = digits(parts.next()?, 1, 2)?;
    let day: u8 = match parts.next() {
        Some(d) => digits(d, 1, 2)?,
        None if clock.is_none() => 1,
        None => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    let (hour, minute, second) = match clock {
        None => (0, 0, 0),
        Some(c) => {
            let (hms, fraction) = match c.split_once('.') {
                Some((hms, f)) => (hms, Some(f)),
                None => (c, None),
            };
            let mut hms = hms.split(':');
            let hour: u8 = digits(hms.next()?, 1, 2)?;
            let minute: u8 = hms.next().map_or(Some(0), |m| digits(m, 2, 2))?;
            let second_part = hms.next();
            let second: u8 = second_part.map_or(Some(0), |s| digits(s, 2, 2))?;
            if hms.next().is_some()
                || fraction.is_some_and(|f| {
                    second_part.is_none() || f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())
                })
            {
                return None;
            }
            (hour, minute, second)
        }
    };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let clock = time::Time::from_hms(hour, minute, second).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// A number of `min..=max` ASCII digits.
fn digits<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    if (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// The geohash of a position with `precision` characters (the Recorder's `ghash`).
fn geohash(lat: f64, lon: f64, precision: usize) -> String {
    const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (mut lat_lo, mut lat_hi) = (-90.0_f64, 90.0_f64);
    let (mut lon_lo, mut lon_hi) = (-180.0_f64, 180.0_f64);
    let mut out = String::with_capacity(precision);
    let (mut bits, mut count, mut on_lon) = (0usize, 0, true);
    while out.len() < precision {
        let (value, lo, hi) = if on_lon {
            (lon, &mut lon_lo, &mut lon_hi)
        } else {
            (lat, &mut lat_lo, &mut lat_hi)
        };
        let mid = (*lo + *hi) / 2.0;
        bits <<= 1;
        if value >= mid {
            bits |= 1;
            *lo = mid;
        } else {
            *hi = mid;
        }
        on_lon = !on_lon;
        count += 1;
        if count == 5 {
            out.push(char::from(BASE32[bits & 31]));
            bits = 0;
            count = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geohash_matches_the_reference_encoding() {
        // The example of the geohash's Wikipedia article: 57.64911, 10.40744 → u4pruydqqvj.
        assert_eq!(geohash(57.64911, 10.40744, 11), "u4pruydqqvj");
        assert_eq!(geohash(57.64911, 10.40744, 7), "u4pruyd");
    }

    #[test]
    fn recorder_time_forms_are_read_as_utc() {
        let t = |s| recorder_time(s);
        assert_eq!(t("2025-06-15"), Some(1_749_945_600));
        assert_eq!(t("2025-06"), Some(1_748_736_000));
        assert_eq!(t("2025-06-15T10"), Some(1_749_945_600 + 36_000));
        assert_eq!(t("2025-06-15T10:30"), Some(1_749_945_600 + 37_800));
        assert_eq!(t("2025-06-15t10:30:05"), Some(1_749_945_600 + 37_805));
        assert_eq!(t("2025-06-15T10:30:05Z"), Some(1_749_945_600 + 37_805));
        assert_eq!(t("2025-06-15T10:30:05.250Z"), Some(1_749_945_600 + 37_805));
        assert_eq!(t("1749945600"), Some(1_749_945_600));
        for bad in [
            "",
            "yesterday",
            "2025",
            "2025-13-01",
            "2025-02-30",
            "2025-06-15T25:00",
            "2025-06-15T10:30:05+02:00",
            "2025-06T10",
            "2025-06-15T10:3",
            "2025-06-15T10.5",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn xml_leaves_out_what_would_break_the_document() {
        let mut row = Map::new();
        row.insert("_type".into(), json!("location"));
        row.insert("desc".into(), json!("<b>&'\"\u{1}"));
        row.insert("bad key".into(), json!(1));
        row.insert("xmlish".into(), json!(1));
        row.insert("inregions".into(), json!(["a", "b"]));
        let out = xml(&[row]);
        assert!(
            out.contains("  <desc>&lt;b&gt;&amp;&apos;&quot;</desc>\n"),
            "{out}"
        );
        assert!(out.contains("<inregions>[&quot;a&quot;,&quot;b&quot;]</inregions>"));
        assert!(!out.contains("_type") && !out.contains("bad key") && !out.contains("<xmlish>"));
    }

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
