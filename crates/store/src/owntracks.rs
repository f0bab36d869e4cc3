//! OwnTracks data: devices as they appear, location history, transitions, waypoints, cards,
//! the raw JSON of every message, and commands queued for HTTP-mode phones.
//!
//! The store does not parse OwnTracks JSON: the ingest service maps the domain parser's output
//! onto [`OwnTracksMessage`] (typed fields plus the raw text) and hands over whole batches.
//! [`Store::ingest_owntracks`] writes a batch as **one writer job**: one transaction, one
//! fsync for all its points, and a per-message [`IngestOutcome`] once it is durable — so the
//! caller can acknowledge exactly what was committed.
//!
//! Layout (ADR 0009): `locations` is a WITHOUT ROWID table clustered on `(device_id, tst)`,
//! holding only the typed fields; the raw JSON of each point sits in `location_raw` under the
//! same key. A day or a year of one device is one contiguous range scan over small rows.
//! New points are first appended to `location_log` (arrival order, typed fields and raw JSON
//! in one row) and moved into those two tables by a **drain** once the log holds
//! [`LOG_DRAIN_ROWS`]: appended rows share pages, where a commit of one point per phone into
//! the clustered tables dirtied a page per phone. Every read below looks at both.
//!
//! Conventions: `tst` values are the phone's Unix seconds (OwnTracks' own unit, and with the
//! device and message type the deduplication key); time windows are half-open, `from`
//! inclusive and `to` exclusive. The store never reads the clock: `now` is a parameter.

use std::collections::HashMap;
use std::ops::Range;
use std::time::SystemTime;

use porchlight_domain::track::{TrackPoint, simplify};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// Default number of rows one purge or delete job removes (see
/// [`Store::purge_locations_older_than`]).
pub const LOCATION_PURGE_BATCH: u32 = 2000;

/// Rows `location_log` may hold before an ingest job drains it into `locations` and
/// `location_raw` (ADR 0009, "Append-ordered log"). Larger: fewer pages per point written by the
/// drain, a longer drain now and then; the log's `(device_id, tst)` index stays a few pages.
pub const LOG_DRAIN_ROWS: i64 = 4096;

/// Who published a message: the user (from the authenticated identity, never from the
/// payload) and the device name from the topic or the `X-Limit-D` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnTracksPublisher {
    pub user_id: i64,
    pub device: String,
}

/// One message to store.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnTracksMessage {
    pub publisher: OwnTracksPublisher,
    /// The message's `tst` (Unix seconds), or its receipt time in seconds for messages that
    /// carry none (cards, status). With the device and the message type, the dedup key.
    pub tst: i64,
    pub payload: OwnTracksPayload,
    /// The JSON text as received (after decryption).
    pub raw: String,
}

/// The typed content of a message, by `_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnTracksPayload {
    Location(LocationFields),
    Transition(Transition),
    Waypoint(Waypoint),
    Waypoints(Vec<Waypoint>),
    Card(Card),
    /// The broker published the phone's last will: it went offline.
    Lwt,
    /// Any other type (`status`, `configuration`, …), kept as raw JSON only.
    Other {
        kind: String,
    },
}

impl OwnTracksPayload {
    /// The `_type` it came from.
    pub fn kind(&self) -> &str {
        match self {
            OwnTracksPayload::Location(_) => "location",
            OwnTracksPayload::Transition(_) => "transition",
            OwnTracksPayload::Waypoint(_) => "waypoint",
            OwnTracksPayload::Waypoints(_) => "waypoints",
            OwnTracksPayload::Card(_) => "card",
            OwnTracksPayload::Lwt => "lwt",
            OwnTracksPayload::Other { kind } => kind,
        }
    }
}

/// The typed fields of a location that are stored in columns (the rest stays in the raw JSON).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocationFields {
    pub lat: f64,
    pub lon: f64,
    /// Accuracy in metres.
    pub acc: Option<f64>,
    /// Altitude in metres.
    pub alt: Option<f64>,
    /// Vertical accuracy in metres.
    pub vac: Option<f64>,
    /// Speed in km/h.
    pub vel: Option<f64>,
    /// Course over ground in degrees.
    pub cog: Option<f64>,
    /// Battery percentage.
    pub batt: Option<i64>,
    /// Battery status (0 unknown, 1 unplugged, 2 charging, 3 full).
    pub bs: Option<i64>,
    /// Connectivity (`w`, `o`, `m`).
    pub conn: Option<String>,
    /// What triggered the report (OwnTracks `t`).
    pub trigger: Option<String>,
    /// Tracker id shown on maps.
    pub tid: Option<String>,
}

/// A region enter/leave event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub event: TransitionEvent,
    pub description: Option<String>,
    pub rid: Option<String>,
    /// The region's creation time (its identity on the phone).
    pub wtst: Option<i64>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub acc: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionEvent {
    Enter,
    Leave,
}

impl TransitionEvent {
    fn as_str(self) -> &'static str {
        match self {
            TransitionEvent::Enter => "enter",
            TransitionEvent::Leave => "leave",
        }
    }
}

/// A region a phone monitors; `tst` (its creation time) identifies it on the phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Waypoint {
    pub tst: i64,
    pub description: String,
    pub lat: f64,
    pub lon: f64,
    /// Radius in metres.
    pub rad: Option<i64>,
    pub rid: Option<String>,
}

/// One point of a device's thinned track (`Store::location_track`): the phone's time (Unix
/// seconds) and position, and the speed it reported (`vel`, km/h), if it did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackFix {
    pub tst: i64,
    pub lat: f64,
    pub lon: f64,
    pub vel: Option<f64>,
}

/// A user's card for a device: display name and picture (base64, as sent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Card {
    pub name: Option<String>,
    pub face: Option<String>,
}

/// What happened to one message of a batch. Only reported once the batch is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored now.
    New,
    /// Already stored (same device, type and `tst`; or an identical card/waypoint): a resend.
    Duplicate,
    /// Not stored; the reason is fit for a log line.
    Rejected(String),
}

/// An OwnTracks device as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnTracksDevice {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    /// The MQTT device key of the same name (`devices.id`), if there is one.
    pub credential_id: Option<i64>,
    pub first_seen_at: SystemTime,
    /// Receipt time of its latest message of any type, to the second (written when it moves
    /// by a second or more).
    pub last_seen_at: SystemTime,
    pub online: bool,
    pub online_changed_at: SystemTime,
}

/// A stored location point.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLocation {
    pub device_id: i64,
    pub tst: i64,
    pub fields: LocationFields,
    pub received_at: SystemTime,
}

/// A device with its newest location (by `tst`) and its card, if it sent any.
#[derive(Debug, Clone, PartialEq)]
pub struct LastLocation {
    pub device: OwnTracksDevice,
    pub location: Option<StoredLocation>,
    pub card: Option<Card>,
}

/// A stored transition.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTransition {
    pub device_id: i64,
    pub tst: i64,
    pub transition: Transition,
    pub received_at: SystemTime,
}

const DEVICE_COLUMNS: &str = "d.id, d.user_id, u.username, d.name, d.credential_id, \
    d.first_seen_at, d.last_seen_at, d.online, d.online_changed_at";

const LOCATION_COLUMNS: &str = "l.device_id, l.tst, l.lat, l.lon, l.acc, l.alt, l.vac, l.vel, \
    l.cog, l.batt, l.bs, l.conn, l.trig, l.tid, l.received_at";

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<OwnTracksDevice> {
    Ok(OwnTracksDevice {
        id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        name: r.get(3)?,
        credential_id: r.get(4)?,
        first_seen_at: from_unix_ms(r.get(5)?),
        last_seen_at: from_unix_ms(r.get(6)?),
        online: r.get(7)?,
        online_changed_at: from_unix_ms(r.get(8)?),
    })
}

/// Reads a location from `LOCATION_COLUMNS` starting at column `at`.
fn location_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<StoredLocation> {
    Ok(StoredLocation {
        device_id: r.get(at)?,
        tst: r.get(at + 1)?,
        fields: LocationFields {
            lat: r.get(at + 2)?,
            lon: r.get(at + 3)?,
            acc: r.get(at + 4)?,
            alt: r.get(at + 5)?,
            vac: r.get(at + 6)?,
            vel: r.get(at + 7)?,
            cog: r.get(at + 8)?,
            batt: r.get(at + 9)?,
            bs: r.get(at + 10)?,
            conn: r.get(at + 11)?,
            trigger: r.get(at + 12)?,
            tid: r.get(at + 13)?,
        },
        received_at: from_unix_ms(r.get(at + 14)?),
    })
}

fn valid_position(lat: f64, lon: f64) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// Why a message cannot be stored, before touching the database.
fn rejection(m: &OwnTracksMessage) -> Option<String> {
    if m.publisher.device.is_empty() {
        return Some("empty device name".into());
    }
    match &m.payload {
        OwnTracksPayload::Location(l) if !valid_position(l.lat, l.lon) => Some(format!(
            "coordinates out of range: lat {}, lon {}",
            l.lat, l.lon
        )),
        OwnTracksPayload::Waypoint(w) if !valid_position(w.lat, w.lon) => Some(format!(
            "waypoint {:?} has coordinates out of range",
            w.description
        )),
        OwnTracksPayload::Waypoints(ws) => ws
            .iter()
            .find(|w| !valid_position(w.lat, w.lon))
            .map(|w| format!("waypoint {:?} has coordinates out of range", w.description)),
        OwnTracksPayload::Other { kind } if kind.is_empty() => Some("empty message type".into()),
        _ => None,
    }
}

/// Online state a message implies: a location means the phone is up, its last will that it
/// is gone; other types say nothing.
fn implied_online(payload: &OwnTracksPayload) -> Option<bool> {
    match payload {
        OwnTracksPayload::Location(_) => Some(true),
        OwnTracksPayload::Lwt => Some(false),
        _ => None,
    }
}

/// The device's id, creating it on its first message and noting that it was seen `now`. A
/// device created now takes its user's card (`user_cards`, set with `Store::set_user_card`,
/// even before the user had any device) or, without one, the newest card of the user's other
/// devices (one a phone sent), so it shows for their new phone too.
fn upsert_device(c: &Connection, p: &OwnTracksPublisher, now_ms: i64, online: bool) -> Result<i64> {
    // A device met before (nearly always): a read, and a write only when its last-seen time
    // moves by a second or more. (The upsert below writes the row, its credential index entry
    // and checks both foreign keys every time: a third of the writer's time under ingest.)
    // (A device key created later links itself: `Store::add_device`.)
    let known: Option<(i64, i64)> = c
        .prepare_cached("SELECT id, last_seen_at FROM ot_devices WHERE user_id = ?1 AND name = ?2")?
        .query_row(params![p.user_id, p.device], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((id, last_seen_at)) = known {
        if now_ms >= last_seen_at + LAST_SEEN_RESOLUTION_MS {
            c.prepare_cached("UPDATE ot_devices SET last_seen_at = ?2 WHERE id = ?1")?
                .execute(params![id, now_ms])?;
        }
        return Ok(id);
    }
    let mut stmt = c.prepare_cached(
        "INSERT INTO ot_devices
           (user_id, name, credential_id, first_seen_at, last_seen_at, online, online_changed_at)
         VALUES (?1, ?2, (SELECT id FROM devices WHERE user_id = ?1 AND name = ?2), ?3, ?3, ?4, ?3)
         ON CONFLICT (user_id, name) DO UPDATE SET
           last_seen_at = max(last_seen_at, excluded.last_seen_at),
           credential_id = coalesce(credential_id, excluded.credential_id)
         RETURNING id, first_seen_at",
    )?;
    let (id, first_seen_at): (i64, i64) = stmt
        .query_row(params![p.user_id, p.device, now_ms, online], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if first_seen_at == now_ms {
        // New (or created earlier in this same millisecond: then this does nothing new).
        c.prepare_cached(
            "INSERT INTO ot_cards (device_id, name, face, updated_at)
             SELECT ?1, name, face, ?3 FROM (
               SELECT 0 AS rank, name, face, updated_at FROM user_cards WHERE user_id = ?2
               UNION ALL
               SELECT 1, k.name, k.face, k.updated_at
               FROM ot_cards k JOIN ot_devices d ON d.id = k.device_id
               WHERE d.user_id = ?2 AND d.id != ?1
             )
             ORDER BY rank, updated_at DESC LIMIT 1
             ON CONFLICT (device_id) DO NOTHING",
        )?
        .execute(params![id, p.user_id, now_ms])?;
    }
    Ok(id)
}

/// A device's `last_seen_at` is written when it moves by at least this much: a phone sending
/// its queue of points at once updates its row once, not once per batch.
const LAST_SEEN_RESOLUTION_MS: i64 = 1_000;

/// Sets a device's online state; true if it changed.
fn set_online(c: &Connection, device_id: i64, online: bool, now_ms: i64) -> Result<bool> {
    let mut stmt = c.prepare_cached(
        "UPDATE ot_devices SET online = ?2, online_changed_at = ?3 WHERE id = ?1 AND online != ?2",
    )?;
    Ok(stmt.execute(params![device_id, online, now_ms])? > 0)
}

/// Stores one message for `device_id`; true if it was new.
fn store_message(
    c: &Connection,
    device_id: i64,
    m: &OwnTracksMessage,
    now_ms: i64,
) -> Result<bool> {
    let raw_message = |kind: &str| -> Result<bool> {
        let mut stmt = c.prepare_cached(
            "INSERT INTO ot_messages (device_id, kind, tst, received_at, raw)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?;
        Ok(stmt.execute(params![device_id, kind, m.tst, now_ms, m.raw])? > 0)
    };
    match &m.payload {
        OwnTracksPayload::Location(l) => {
            // New unless the point is already drained (a primary-key probe: a read, no write)
            // or already in the log (its unique index).
            let mut stmt = c.prepare_cached(
                "INSERT INTO location_log (device_id, tst, lat, lon, acc, alt, vac, vel, cog, batt,
                                           bs, conn, trig, tid, received_at, raw)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16
                 WHERE NOT EXISTS (SELECT 1 FROM locations WHERE device_id = ?1 AND tst = ?2)
                 ON CONFLICT DO NOTHING",
            )?;
            Ok(stmt.execute(params![
                device_id, m.tst, l.lat, l.lon, l.acc, l.alt, l.vac, l.vel, l.cog, l.batt, l.bs,
                l.conn, l.trigger, l.tid, now_ms, m.raw
            ])? > 0)
        }
        OwnTracksPayload::Transition(t) => {
            let mut stmt = c.prepare_cached(
                "INSERT INTO ot_transitions (device_id, tst, event, rid, description, wtst, lat,
                                             lon, acc, received_at, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
            )?;
            Ok(stmt.execute(params![
                device_id,
                m.tst,
                t.event.as_str(),
                t.rid.as_deref().unwrap_or(""),
                t.description,
                t.wtst,
                t.lat,
                t.lon,
                t.acc,
                now_ms,
                m.raw
            ])? > 0)
        }
        OwnTracksPayload::Waypoint(w) => {
            let changed = upsert_waypoint(c, device_id, w, now_ms)?;
            Ok(raw_message("waypoint")? || changed)
        }
        OwnTracksPayload::Waypoints(ws) => {
            let mut changed = false;
            for w in ws {
                changed |= upsert_waypoint(c, device_id, w, now_ms)?;
            }
            Ok(raw_message("waypoints")? || changed)
        }
        OwnTracksPayload::Card(card) => {
            let mut stmt = c.prepare_cached(
                "INSERT INTO ot_cards (device_id, name, face, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device_id) DO UPDATE SET
                   name = excluded.name, face = excluded.face, updated_at = excluded.updated_at
                 WHERE name IS NOT excluded.name OR face IS NOT excluded.face",
            )?;
            let changed = stmt.execute(params![device_id, card.name, card.face, now_ms])? > 0;
            Ok(raw_message("card")? || changed)
        }
        OwnTracksPayload::Lwt => raw_message("lwt"),
        OwnTracksPayload::Other { kind } => raw_message(kind),
    }
}

/// Inserts or replaces a waypoint; true if anything changed.
fn upsert_waypoint(c: &Connection, device_id: i64, w: &Waypoint, now_ms: i64) -> Result<bool> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO ot_waypoints (device_id, wtst, description, lat, lon, rad, rid, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (device_id, wtst) DO UPDATE SET
           description = excluded.description, lat = excluded.lat, lon = excluded.lon,
           rad = excluded.rad, rid = excluded.rid, updated_at = excluded.updated_at
         WHERE description IS NOT excluded.description OR lat IS NOT excluded.lat
            OR lon IS NOT excluded.lon OR rad IS NOT excluded.rad OR rid IS NOT excluded.rid",
    )?;
    Ok(stmt.execute(params![
        device_id,
        w.tst,
        w.description,
        w.lat,
        w.lon,
        w.rad,
        w.rid,
        now_ms
    ])? > 0)
}

/// Rows in `location_log` (an upper bound when rows were deleted from its middle), in
/// O(log n): two ends of the rowid.
fn log_rows(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM location_log",
        [],
        |r| r.get(0),
    )?)
}

/// Moves every row of `location_log` into `locations` and `location_raw`, device by device in
/// `tst` order (the log's unique index order: no sort), so each phone's new points fill its
/// pages together. Returns how many rows moved. Runs inside the caller's transaction.
pub(crate) fn drain_log(c: &Connection) -> Result<usize> {
    let Some(last): Option<i64> =
        c.query_row("SELECT max(seq) FROM location_log", [], |r| r.get(0))?
    else {
        return Ok(0);
    };
    c.prepare_cached(
        "INSERT INTO locations (device_id, tst, lat, lon, acc, alt, vac, vel, cog, batt, bs,
                                conn, trig, tid, received_at)
         SELECT device_id, tst, lat, lon, acc, alt, vac, vel, cog, batt, bs, conn, trig, tid,
                received_at
         FROM location_log INDEXED BY location_log_key
         WHERE seq <= ?1 ORDER BY device_id, tst
         ON CONFLICT DO NOTHING",
    )?
    .execute([last])?;
    c.prepare_cached(
        "INSERT INTO location_raw (device_id, tst, raw)
         SELECT device_id, tst, raw
         FROM location_log INDEXED BY location_log_key
         WHERE seq <= ?1 ORDER BY device_id, tst
         ON CONFLICT DO UPDATE SET raw = excluded.raw",
    )?
    .execute([last])?;
    Ok(
        c.prepare_cached("DELETE FROM location_log WHERE seq <= ?1")?
            .execute([last])?,
    )
}

/// Deletes at most `batch` of the oldest locations of `device_id` with `tst` in `range`,
/// wherever they are (drained or still in the log); returns how many. Range deletes on the
/// primary key and the log's index: no scan outside the range.
pub(crate) fn delete_oldest(
    c: &Connection,
    device_id: i64,
    range: &Range<i64>,
    batch: u32,
) -> Result<usize> {
    if batch == 0 || range.is_empty() {
        return Ok(0);
    }
    let last: Option<i64> = c
        .query_row(
            "SELECT tst FROM (
               SELECT tst FROM locations WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3
               UNION ALL
               SELECT tst FROM location_log WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3)
             ORDER BY tst LIMIT 1 OFFSET ?4",
            params![device_id, range.start, range.end, batch - 1],
            |r| r.get(0),
        )
        .optional()?;
    let end_inclusive = last.unwrap_or(range.end - 1);
    let mut deleted = 0;
    for table in ["locations", "location_log", "location_raw"] {
        let n = c.execute(
            &format!("DELETE FROM {table} WHERE device_id = ?1 AND tst >= ?2 AND tst <= ?3"),
            params![device_id, range.start, end_inclusive],
        )?;
        if table != "location_raw" {
            deleted += n;
        }
    }
    Ok(deleted)
}

impl Store {
    /// Stores a batch of messages in **one** write job (one transaction, one fsync) and returns
    /// one outcome per message, in order, once the batch is durable. Devices are created on
    /// their first message; every message marks its device seen `now`; a location marks it
    /// online and an LWT offline (the last such message of the batch wins).
    ///
    /// A message that cannot be stored is [`IngestOutcome::Rejected`] without affecting the
    /// others. An `Err` means nothing of the batch may be assumed stored (the transaction
    /// failed or was rolled back); a caller may retry the batch: duplicates are recognised.
    pub async fn ingest_owntracks(
        &self,
        batch: Vec<OwnTracksMessage>,
        now: SystemTime,
    ) -> Result<Vec<IngestOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = unix_ms(now);
        self.write(move |c| {
            let mut devices: HashMap<&OwnTracksPublisher, i64> = HashMap::new();
            let mut online: HashMap<i64, bool> = HashMap::new();
            let mut outcomes = Vec::with_capacity(batch.len());
            for m in &batch {
                if let Some(reason) = rejection(m) {
                    outcomes.push(IngestOutcome::Rejected(reason));
                    continue;
                }
                let implied = implied_online(&m.payload);
                let stored = match devices.get(&m.publisher) {
                    Some(id) => Ok(*id),
                    None => upsert_device(c, &m.publisher, now_ms, implied.unwrap_or(true)),
                }
                .and_then(|id| {
                    devices.insert(&m.publisher, id);
                    store_message(c, id, m, now_ms).map(|new| (id, new))
                });
                match stored {
                    Ok((id, new)) => {
                        if let Some(state) = implied {
                            online.insert(id, state);
                        }
                        outcomes.push(if new {
                            IngestOutcome::New
                        } else {
                            IngestOutcome::Duplicate
                        });
                    }
                    // The statement failed alone (a constraint, an unknown user): SQLite undid
                    // just that statement, the transaction goes on.
                    Err(e) if !c.is_autocommit() => {
                        outcomes.push(IngestOutcome::Rejected(e.to_string()));
                    }
                    // SQLite rolled back the whole transaction (disk full, I/O error).
                    Err(e) => return Err(e),
                }
            }
            for (id, state) in online {
                set_online(c, id, state, now_ms)?;
            }
            if log_rows(c)? >= LOG_DRAIN_ROWS {
                drain_log(c)?;
            }
            Ok(outcomes)
        })
        .await
    }

    /// Sets a device's online state (e.g. when its MQTT session ends without an LWT); true if
    /// it changed.
    pub async fn set_owntracks_online(
        &self,
        device_id: i64,
        online: bool,
        now: SystemTime,
    ) -> Result<bool> {
        self.write(move |c| set_online(c, device_id, online, unix_ms(now)))
            .await
    }

    /// OwnTracks devices of the given users (all users for `None`), by user name and device name.
    pub async fn owntracks_devices(&self, users: Option<Vec<i64>>) -> Result<Vec<OwnTracksDevice>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM ot_devices d JOIN users u ON u.id = d.user_id
                 ORDER BY u.username, d.name"
            ))?;
            let rows = stmt.query_map([], device_from_row)?;
            let mut out = Vec::new();
            for d in rows {
                let d = d?;
                if users.as_ref().is_none_or(|u| u.contains(&d.user_id)) {
                    out.push(d);
                }
            }
            Ok(out)
        })
        .await
    }

    /// One user's device by name.
    pub async fn find_owntracks_device(
        &self,
        user_id: i64,
        name: &str,
    ) -> Result<Option<OwnTracksDevice>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM ot_devices d JOIN users u ON u.id = d.user_id
                     WHERE d.user_id = ?1 AND d.name = ?2"
                ),
                params![user_id, name],
                device_from_row,
            )
            .optional()?)
        })
        .await
    }

    /// Each device of the given users (all for `None`) with its newest location by `tst` and
    /// its card. Three index probes per device (drained, log, card), however long the history.
    pub async fn last_locations(&self, users: Option<Vec<i64>>) -> Result<Vec<LastLocation>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM ot_devices d JOIN users u ON u.id = d.user_id
                 ORDER BY u.username, d.name"
            ))?;
            let devices = stmt
                .query_map([], device_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut newest = c.prepare_cached(&format!(
                "SELECT {LOCATION_COLUMNS} FROM (
                   SELECT * FROM (SELECT {LOCATION_COLUMNS} FROM locations l
                                  WHERE l.device_id = ?1 ORDER BY l.tst DESC LIMIT 1)
                   UNION ALL
                   SELECT * FROM (SELECT {LOCATION_COLUMNS} FROM location_log l
                                  WHERE l.device_id = ?1 ORDER BY l.tst DESC LIMIT 1)) l
                 ORDER BY l.tst DESC LIMIT 1"
            ))?;
            let mut card_stmt =
                c.prepare_cached("SELECT name, face FROM ot_cards WHERE device_id = ?1")?;
            let mut out = Vec::new();
            for device in devices {
                if users.as_ref().is_some_and(|u| !u.contains(&device.user_id)) {
                    continue;
                }
                let location = newest
                    .query_row([device.id], |r| location_from_row(r, 0))
                    .optional()?;
                let card = card_stmt
                    .query_row([device.id], |r| {
                        Ok(Card {
                            name: r.get(0)?,
                            face: r.get(1)?,
                        })
                    })
                    .optional()?;
                out.push(LastLocation {
                    device,
                    location,
                    card,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Locations of one device with `from <= tst < to`, oldest first. When more than `limit`
    /// match, the newest `limit` are returned (as the Recorder's `limit` does), still oldest
    /// first.
    pub async fn location_window(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<StoredLocation>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT * FROM (
                   SELECT {LOCATION_COLUMNS} FROM locations l
                   WHERE l.device_id = ?1 AND l.tst >= ?2 AND l.tst < ?3
                   UNION ALL
                   SELECT {LOCATION_COLUMNS} FROM location_log l
                   WHERE l.device_id = ?1 AND l.tst >= ?2 AND l.tst < ?3
                   ORDER BY 2 DESC LIMIT ?4)
                 ORDER BY tst"
            ))?;
            let rows = stmt.query_map(params![device_id, from, to, limit], |r| {
                location_from_row(r, 0)
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The raw JSON of one stored location.
    pub async fn location_raw(&self, device_id: i64, tst: i64) -> Result<Option<String>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT raw FROM location_raw WHERE device_id = ?1 AND tst = ?2
                 UNION ALL
                 SELECT raw FROM location_log WHERE device_id = ?1 AND tst = ?2",
                params![device_id, tst],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// The raw JSON of one device's locations with `from <= tst < to`, as `(tst, raw)`, with
    /// the same `limit` rule as [`Store::location_window`] (the newest `limit`, oldest first).
    /// For outputs that return what the phone sent (the Recorder API's JSON).
    pub async fn location_window_raw(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT tst, raw FROM (
                   SELECT tst, raw FROM location_raw
                   WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3
                   UNION ALL
                   SELECT tst, raw FROM location_log
                   WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3
                   ORDER BY 1 DESC LIMIT ?4)
                 ORDER BY tst",
            )?;
            let rows = stmt.query_map(params![device_id, from, to, limit], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// One device's track with `from <= tst < to`, oldest first, thinned server-side to at
    /// most `max_points` keeping its shape (turns and stops; see
    /// [`porchlight_domain::track`]). The first and last points of the window are kept; each
    /// keeps its speed.
    pub async fn location_track(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
        max_points: usize,
    ) -> Result<Vec<TrackFix>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT tst, lat, lon, vel FROM locations
                 WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3
                 UNION ALL
                 SELECT tst, lat, lon, vel FROM location_log
                 WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3
                 ORDER BY 1",
            )?;
            let fixes = stmt
                .query_map(params![device_id, from, to], |r| {
                    Ok(TrackFix {
                        tst: r.get(0)?,
                        lat: r.get(1)?,
                        lon: r.get(2)?,
                        vel: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let points: Vec<TrackPoint> = fixes
                .iter()
                .map(|f| TrackPoint {
                    tst: f.tst,
                    lat: f.lat,
                    lon: f.lon,
                })
                .collect();
            Ok(simplify(&points, max_points)
                .into_iter()
                .filter_map(|i| fixes.get(i).copied())
                .collect())
        })
        .await
    }

    /// Deletes one device's locations with `tst` in `range` (half-open), in jobs of
    /// [`LOCATION_PURGE_BATCH`] rows so other writes interleave; returns how many.
    pub async fn delete_points(&self, device_id: i64, range: Range<i64>) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let r = range.clone();
            let deleted = self
                .write(move |c| delete_oldest(c, device_id, &r, LOCATION_PURGE_BATCH))
                .await?;
            total += deleted as u64;
            if deleted < LOCATION_PURGE_BATCH as usize {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Deletes every device's locations older than `cutoff`, at most `batch` rows per write job
    /// (the oldest first, device by device), so logins and ingest interleave with a long
    /// purge; returns how many were deleted.
    pub async fn purge_locations_older_than(&self, cutoff: SystemTime, batch: u32) -> Result<u64> {
        if batch == 0 {
            return Err(Error::BadInput(
                "a purge batch must hold at least one row".into(),
            ));
        }
        let cutoff_tst = unix_ms(cutoff) / 1000;
        let devices: Vec<i64> = self
            .read(|c| {
                let mut stmt = c.prepare_cached("SELECT id FROM ot_devices ORDER BY id")?;
                let ids = stmt.query_map([], |r| r.get(0))?;
                Ok(ids.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        let mut total = 0u64;
        for device_id in devices {
            loop {
                let deleted = self
                    .write(move |c| delete_oldest(c, device_id, &(i64::MIN..cutoff_tst), batch))
                    .await?;
                total += deleted as u64;
                if deleted < batch as usize {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }

    /// Deletes an OwnTracks device with everything stored for it: its points first, in jobs
    /// of [`LOCATION_PURGE_BATCH`] (a year of history is ~100,000 rows: one job would hold the
    /// writer for long), then the device row, whose removal cascades to its transitions,
    /// waypoints, card, raw messages and queued commands. Returns how many points were
    /// deleted; [`Error::NotFound`] if there is no such device. Its MQTT key, if any, is not
    /// touched (see [`Store::remove_device`]).
    pub async fn delete_owntracks_device(&self, device_id: i64) -> Result<u64> {
        let points = self.delete_points(device_id, i64::MIN..i64::MAX).await?;
        let removed = self
            .write(move |c| Ok(c.execute("DELETE FROM ot_devices WHERE id = ?1", [device_id])?))
            .await?;
        if removed == 0 {
            return Err(Error::NotFound {
                what: "OwnTracks device",
                name: device_id.to_string(),
            });
        }
        Ok(points)
    }

    /// One device's transitions with `from <= tst < to`, oldest first.
    pub async fn transitions(
        &self,
        device_id: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredTransition>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT tst, event, rid, description, wtst, lat, lon, acc, received_at
                 FROM ot_transitions WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3
                 ORDER BY tst, event, rid",
            )?;
            let rows = stmt.query_map(params![device_id, from, to], |r| {
                let event: String = r.get(1)?;
                let rid: String = r.get(2)?;
                Ok(StoredTransition {
                    device_id,
                    tst: r.get(0)?,
                    transition: Transition {
                        event: if event == "enter" {
                            TransitionEvent::Enter
                        } else {
                            TransitionEvent::Leave
                        },
                        rid: (!rid.is_empty()).then_some(rid),
                        description: r.get(3)?,
                        wtst: r.get(4)?,
                        lat: r.get(5)?,
                        lon: r.get(6)?,
                        acc: r.get(7)?,
                    },
                    received_at: from_unix_ms(r.get(8)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The regions one device monitors, by creation time.
    pub async fn waypoints(&self, device_id: i64) -> Result<Vec<Waypoint>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT wtst, description, lat, lon, rad, rid FROM ot_waypoints
                 WHERE device_id = ?1 ORDER BY wtst",
            )?;
            let rows = stmt.query_map([device_id], |r| {
                Ok(Waypoint {
                    tst: r.get(0)?,
                    description: r.get(1)?,
                    lat: r.get(2)?,
                    lon: r.get(3)?,
                    rad: r.get(4)?,
                    rid: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Sets the card (display name, picture) of `user_id` (`user_cards`, so a user without a
    /// device has one, which their devices inherit when they appear) and of every OwnTracks
    /// device of theirs, in one transaction, as a user does for their friends' phones; returns
    /// those devices. A phone's own later card replaces it for that device, as any newer card
    /// does.
    pub async fn set_user_card(
        &self,
        user_id: i64,
        card: Card,
        now: SystemTime,
    ) -> Result<Vec<OwnTracksDevice>> {
        let now_ms = unix_ms(now);
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO user_cards (user_id, name, face, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id) DO UPDATE SET
                   name = excluded.name, face = excluded.face, updated_at = excluded.updated_at",
            )?
            .execute(params![user_id, card.name, card.face, now_ms])?;
            c.prepare_cached(
                "INSERT INTO ot_cards (device_id, name, face, updated_at)
                 SELECT id, ?2, ?3, ?4 FROM ot_devices WHERE user_id = ?1
                 ON CONFLICT (device_id) DO UPDATE SET
                   name = excluded.name, face = excluded.face, updated_at = excluded.updated_at",
            )?
            .execute(params![user_id, card.name, card.face, now_ms])?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM ot_devices d JOIN users u ON u.id = d.user_id
                 WHERE d.user_id = ?1 ORDER BY d.name"
            ))?;
            let devices = stmt
                .query_map([user_id], device_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(devices)
        })
        .await
    }

    /// A user's card (what a new device inherits): the one they set (`user_cards`), or else
    /// the newest of their devices' cards (one a phone sent, or one set before `user_cards`
    /// existed).
    pub async fn user_card(&self, user_id: i64) -> Result<Option<Card>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT name, face FROM (
                   SELECT 0 AS rank, name, face, updated_at FROM user_cards WHERE user_id = ?1
                   UNION ALL
                   SELECT 1, k.name, k.face, k.updated_at
                   FROM ot_cards k JOIN ot_devices d ON d.id = k.device_id
                   WHERE d.user_id = ?1
                 )
                 ORDER BY rank, updated_at DESC LIMIT 1",
            )?
            .query_row([user_id], |r| {
                Ok(Card {
                    name: r.get(0)?,
                    face: r.get(1)?,
                })
            })
            .optional()?)
        })
        .await
    }

    /// One device's latest card.
    pub async fn card(&self, device_id: i64) -> Result<Option<Card>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT name, face FROM ot_cards WHERE device_id = ?1",
                [device_id],
                |r| {
                    Ok(Card {
                        name: r.get(0)?,
                        face: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// Queues a command (its JSON text) for an HTTP-mode device until `expires_at`; returns its
    /// id.
    pub async fn queue_owntracks_command(
        &self,
        device_id: i64,
        payload: String,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<i64> {
        if expires_at <= now {
            return Err(Error::BadInput(
                "a command must expire after it is queued".into(),
            ));
        }
        self.write(move |c| {
            c.execute(
                "INSERT INTO ot_commands (device_id, payload, queued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![device_id, payload, unix_ms(now), unix_ms(expires_at)],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// Hands out a device's unexpired commands, oldest first, and removes them with the
    /// expired ones: each command is delivered at most once. The removal is committed before
    /// this returns; a response that then fails to reach the phone loses those commands.
    pub async fn take_owntracks_commands(
        &self,
        device_id: i64,
        now: SystemTime,
    ) -> Result<Vec<String>> {
        let now_ms = unix_ms(now);
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "DELETE FROM ot_commands WHERE device_id = ?1 RETURNING id, payload, expires_at",
            )?;
            let mut rows = stmt
                .query_map([device_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.retain(|(_, _, expires_at)| *expires_at > now_ms);
            rows.sort_by_key(|(id, _, _)| *id);
            Ok(rows.into_iter().map(|(_, payload, _)| payload).collect())
        })
        .await
    }

    /// Drops commands that expired unsent; returns how many.
    pub async fn expire_owntracks_commands(&self, now: SystemTime) -> Result<u64> {
        let now_ms = unix_ms(now);
        self.write(move |c| {
            Ok(c.execute("DELETE FROM ot_commands WHERE expires_at <= ?1", [now_ms])? as u64)
        })
        .await
    }
}
