//! The alarm's persistence (migration 0007, ADR 0014): its settings, its sensors, the state
//! machine's snapshot and the event log.
//!
//! Settings, sensors and the snapshot are the domain's own types, kept as JSON: the domain
//! owns their shape (and the serde defaults that let an older row load under a newer
//! Porchlight); the store only keeps them. A fresh install has an alarm: no settings row
//! reads as [`Settings::default`], no snapshot as `None` (the service starts a fresh,
//! disarmed [`porchlight_domain::alarm::Alarm`]), no sensors as an empty list.
//!
//! A step of the alarm that changed something is one writer job
//! ([`Store::record_alarm_step`]): the new snapshot and the events it caused commit together,
//! so after a crash the log never shows a state the snapshot does not have, or the reverse.
//! Events never hold a code, only who used one and from where.

use std::time::SystemTime;

use porchlight_domain::alarm::{AlarmSnapshot, Sensor, SensorId, Settings};
use rusqlite::{OptionalExtension, params};

use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// Rows deleted per writer job by [`Store::purge_alarm_events_older_than`].
pub const ALARM_EVENT_PURGE_BATCH: usize = 1_000;

/// Most events one [`Store::alarm_events`] call returns.
pub const MAX_ALARM_EVENTS: usize = 10_000;

/// What an alarm event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmEventKind {
    /// The state changed (`from_state` → `to_state`, with who/via for commands and the
    /// reason in `detail`).
    Transition,
    /// A code was verified and used for a command (who, via; never the code).
    CodeAccepted,
    /// A code was refused (wrong, locked out, disabled, outside its validity, not permitted),
    /// `detail` says why; `who` only when the code matched a user.
    CodeRefused,
    /// A command was refused by the machine (not allowed in this state, code required, open
    /// sensors, re-arm guard, mode disabled) or could not be parsed.
    CommandRefused,
    /// A watched sensor became active (`sensor`, the state then in `from_state`).
    SensorTripped,
    /// Sensors bypassed by a forced arm (`detail`: their ids).
    Bypassed,
    /// A duress code was used (who, via).
    Duress,
}

impl AlarmEventKind {
    pub const ALL: [AlarmEventKind; 7] = [
        AlarmEventKind::Transition,
        AlarmEventKind::CodeAccepted,
        AlarmEventKind::CodeRefused,
        AlarmEventKind::CommandRefused,
        AlarmEventKind::SensorTripped,
        AlarmEventKind::Bypassed,
        AlarmEventKind::Duress,
    ];

    /// The stored and API text form: `transition`, `code_accepted`, …
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmEventKind::Transition => "transition",
            AlarmEventKind::CodeAccepted => "code_accepted",
            AlarmEventKind::CodeRefused => "code_refused",
            AlarmEventKind::CommandRefused => "command_refused",
            AlarmEventKind::SensorTripped => "sensor_tripped",
            AlarmEventKind::Bypassed => "bypassed",
            AlarmEventKind::Duress => "duress",
        }
    }

    /// The kind named `name` (its [`AlarmEventKind::as_str`] form).
    pub fn parse(name: &str) -> Option<AlarmEventKind> {
        AlarmEventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlarmEvent {
    pub at: SystemTime,
    pub kind: AlarmEventKind,
    /// The user behind it (a code's holder, the publishing account); never a code.
    pub who: Option<String>,
    /// `keypad`, `home_assistant`, `api` (the domain's `Via`, as text).
    pub via: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub sensor: Option<String>,
    pub detail: Option<String>,
}

impl NewAlarmEvent {
    /// An event of `kind` at `at` with every other field empty.
    pub fn new(at: SystemTime, kind: AlarmEventKind) -> NewAlarmEvent {
        NewAlarmEvent {
            at,
            kind,
            who: None,
            via: None,
            from_state: None,
            to_state: None,
            sensor: None,
            detail: None,
        }
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmEvent {
    pub id: i64,
    pub at: SystemTime,
    pub kind: AlarmEventKind,
    pub who: Option<String>,
    pub via: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub sensor: Option<String>,
    pub detail: Option<String>,
}

/// Everything the alarm service needs at start.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    pub settings: Settings,
    pub sensors: Vec<Sensor>,
    /// `None` on a fresh install (or when the row could not be read: the error is in
    /// `snapshot_error`, and the service decides).
    pub snapshot: Option<AlarmSnapshot>,
    /// Why a stored snapshot could not be decoded.
    pub snapshot_error: Option<String>,
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::BadInput(format!("encoding {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::BadInput(format!("stored {what} unreadable: {e}")))
}

fn settings_in(conn: &rusqlite::Connection) -> Result<Settings> {
    let text: Option<String> = conn
        .query_row(
            "SELECT settings FROM alarm_settings WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match text {
        Some(text) => from_json("alarm settings", &text),
        None => Ok(Settings::default()),
    }
}

fn sensors_in(conn: &rusqlite::Connection) -> Result<Vec<Sensor>> {
    let mut stmt = conn.prepare_cached("SELECT id, config FROM alarm_sensors ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut sensors = Vec::new();
    for row in rows {
        let (id, config) = row?;
        let mut sensor: Sensor = from_json(&format!("alarm sensor {id:?}"), &config)?;
        // The key is the truth: a hand-edited config cannot rename a sensor.
        sensor.id = SensorId(id);
        sensors.push(sensor);
    }
    Ok(sensors)
}

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AlarmEvent, String)> {
    let kind: String = r.get(2)?;
    Ok((
        AlarmEvent {
            id: r.get(0)?,
            at: from_unix_ms(r.get(1)?),
            kind: AlarmEventKind::Transition,
            who: r.get(3)?,
            via: r.get(4)?,
            from_state: r.get(5)?,
            to_state: r.get(6)?,
            sensor: r.get(7)?,
            detail: r.get(8)?,
        },
        kind,
    ))
}

impl Store {
    /// Settings, sensors and snapshot, read together (the alarm service's start).
    pub async fn alarm_record(&self) -> Result<AlarmRecord> {
        self.read(|c| {
            let settings = settings_in(c)?;
            let sensors = sensors_in(c)?;
            let text: Option<String> = c
                .query_row(
                    "SELECT snapshot FROM alarm_snapshot WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let (snapshot, snapshot_error) = match text {
                None => (None, None),
                Some(text) => match from_json::<AlarmSnapshot>("alarm snapshot", &text) {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e.to_string())),
                },
            };
            Ok(AlarmRecord {
                settings,
                sensors,
                snapshot,
                snapshot_error,
            })
        })
        .await
    }

    /// The alarm's settings ([`Settings::default`] until set).
    pub async fn alarm_settings(&self) -> Result<Settings> {
        self.read(settings_in).await
    }

    /// Replaces the alarm's settings. The running alarm takes them with `AlarmHandle::reload`.
    pub async fn set_alarm_settings(&self, settings: &Settings, now: SystemTime) -> Result<()> {
        let text = to_json("alarm settings", settings)?;
        self.write(move |c| {
            c.execute(
                "INSERT INTO alarm_settings (id, settings, updated_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings,
                                                updated_at = excluded.updated_at",
                params![text, unix_ms(now)],
            )?;
            Ok(())
        })
        .await
    }

    /// The configured sensors, by id.
    pub async fn alarm_sensors(&self) -> Result<Vec<Sensor>> {
        self.read(sensors_in).await
    }

    /// Adds a sensor or replaces the one with the same id; answers whether it is new. An
    /// empty id is [`Error::BadInput`].
    pub async fn put_alarm_sensor(&self, sensor: &Sensor, now: SystemTime) -> Result<bool> {
        if sensor.id.0.trim().is_empty() {
            return Err(Error::BadInput("a sensor needs an id".into()));
        }
        let id = sensor.id.0.clone();
        let text = to_json("alarm sensor", sensor)?;
        self.write(move |c| {
            let existed: bool = c
                .query_row("SELECT 1 FROM alarm_sensors WHERE id = ?1", [&id], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
            c.execute(
                "INSERT INTO alarm_sensors (id, config, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config,
                                                updated_at = excluded.updated_at",
                params![id, text, unix_ms(now)],
            )?;
            Ok(!existed)
        })
        .await
    }

    /// Deletes a sensor; [`Error::NotFound`] when there is none with that id.
    pub async fn delete_alarm_sensor(&self, id: &SensorId) -> Result<()> {
        let id = id.0.clone();
        self.write(move |c| {
            if c.execute("DELETE FROM alarm_sensors WHERE id = ?1", [&id])? == 0 {
                return Err(Error::NotFound {
                    what: "alarm sensor",
                    name: id,
                });
            }
            Ok(())
        })
        .await
    }

    /// One step of the alarm, in one writer job: the snapshot (when given) and the events,
    /// committed together.
    pub async fn record_alarm_step(
        &self,
        snapshot: Option<&AlarmSnapshot>,
        events: Vec<NewAlarmEvent>,
        now: SystemTime,
    ) -> Result<()> {
        let snapshot = snapshot.map(|s| to_json("alarm snapshot", s)).transpose()?;
        if snapshot.is_none() && events.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            if let Some(text) = snapshot {
                c.execute(
                    "INSERT INTO alarm_snapshot (id, snapshot, updated_at) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot,
                                                    updated_at = excluded.updated_at",
                    params![text, unix_ms(now)],
                )?;
            }
            let mut stmt = c.prepare_cached(
                "INSERT INTO alarm_events
                     (at, kind, who, via, from_state, to_state, sensor, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in events {
                stmt.execute(params![
                    unix_ms(e.at),
                    e.kind.as_str(),
                    e.who,
                    e.via,
                    e.from_state,
                    e.to_state,
                    e.sensor,
                    e.detail,
                ])?;
            }
            Ok(())
        })
        .await
    }

    /// Events with `from <= at < to` (each bound optional), of the given kinds (all when
    /// empty), newest first, at most `limit` (capped at [`MAX_ALARM_EVENTS`]).
    pub async fn alarm_events(
        &self,
        from: Option<SystemTime>,
        to: Option<SystemTime>,
        kinds: &[AlarmEventKind],
        limit: usize,
    ) -> Result<Vec<AlarmEvent>> {
        let from = from.map_or(i64::MIN, unix_ms);
        let to = to.map_or(i64::MAX, unix_ms);
        let kinds: Vec<&'static str> = kinds.iter().map(|k| k.as_str()).collect();
        let limit = i64::try_from(limit.min(MAX_ALARM_EVENTS)).unwrap_or(0);
        self.read(move |c| {
            // Unknown kinds (written by a newer Porchlight) are left out even unfiltered.
            let wanted: Vec<&str> = if kinds.is_empty() {
                AlarmEventKind::ALL.iter().map(|k| k.as_str()).collect()
            } else {
                kinds
            };
            let marks = (0..wanted.len())
                .map(|i| format!("?{}", i + 4))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id, at, kind, who, via, from_state, to_state, sensor, detail
                 FROM alarm_events WHERE at >= ?1 AND at < ?2 AND kind IN ({marks})
                 ORDER BY at DESC, id DESC LIMIT ?3"
            ))?;
            let mut values: Vec<rusqlite::types::Value> =
                vec![from.into(), to.into(), limit.into()];
            values.extend(
                wanted
                    .iter()
                    .map(|k| rusqlite::types::Value::Text((*k).to_owned())),
            );
            let rows = stmt.query_map(rusqlite::params_from_iter(values), event_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                let (mut event, kind) = row?;
                let Some(kind) = AlarmEventKind::parse(&kind) else {
                    continue;
                };
                event.kind = kind;
                out.push(event);
            }
            Ok(out)
        })
        .await
    }

    /// Deletes events older than `cutoff`, [`ALARM_EVENT_PURGE_BATCH`] rows per writer job (so
    /// other writes interleave); returns how many were deleted.
    pub async fn purge_alarm_events_older_than(&self, cutoff: SystemTime) -> Result<usize> {
        let cutoff = unix_ms(cutoff);
        let mut total = 0;
        loop {
            let deleted = self
                .write(move |c| {
                    Ok(c.execute(
                        "DELETE FROM alarm_events WHERE id IN
                             (SELECT id FROM alarm_events WHERE at < ?1 ORDER BY at LIMIT ?2)",
                        params![cutoff, ALARM_EVENT_PURGE_BATCH as i64],
                    )?)
                })
                .await?;
            total += deleted;
            if deleted < ALARM_EVENT_PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use porchlight_domain::alarm::{AlarmState, ArmMode, MqttSource, SensorKind, SensorSource};

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn door(id: &str) -> Sensor {
        Sensor {
            id: SensorId(id.into()),
            name: format!("{id} door"),
            kind: SensorKind::Door,
            modes: BTreeSet::from([ArmMode::Away]),
            use_entry_delay: true,
            allow_open_while_arming: false,
            source: SensorSource::Mqtt(MqttSource {
                topic: format!("zigbee2mqtt/{id}"),
                field: Some("contact".into()),
                on: serde_json::json!(false),
                off: serde_json::json!(true),
            }),
        }
    }

    #[tokio::test]
    async fn a_fresh_install_has_a_disarmed_alarm_with_defaults() {
        let (_d, s) = store();
        let record = s.alarm_record().await.unwrap();
        assert_eq!(record.settings, Settings::default());
        assert!(record.sensors.is_empty());
        assert_eq!(record.snapshot, None);
        assert_eq!(record.snapshot_error, None);
    }

    #[tokio::test]
    async fn settings_and_sensors_round_trip() {
        let (_d, s) = store();
        let mut settings = Settings::default();
        settings.away.exit_delay_secs = 7;
        settings.code_arm_required = false;
        s.set_alarm_settings(&settings, t(0)).await.unwrap();
        assert_eq!(s.alarm_settings().await.unwrap(), settings);

        assert!(s.put_alarm_sensor(&door("front"), t(1)).await.unwrap());
        assert!(s.put_alarm_sensor(&door("back"), t(1)).await.unwrap());
        let mut changed = door("front");
        changed.name = "Front door".into();
        assert!(!s.put_alarm_sensor(&changed, t(2)).await.unwrap());
        let sensors = s.alarm_sensors().await.unwrap();
        assert_eq!(sensors, vec![door("back"), changed]);

        s.delete_alarm_sensor(&SensorId("back".into()))
            .await
            .unwrap();
        assert!(matches!(
            s.delete_alarm_sensor(&SensorId("back".into())).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(s.alarm_sensors().await.unwrap().len(), 1);
        assert!(matches!(
            s.put_alarm_sensor(&door(" "), t(3)).await,
            Err(Error::BadInput(_))
        ));
    }

    #[tokio::test]
    async fn a_step_writes_snapshot_and_events_and_events_filter() {
        let (_d, s) = store();
        let mut alarm = porchlight_domain::alarm::Alarm::new(Settings::default(), vec![]);
        let _ = alarm.advance(t(0));
        let mut snapshot = alarm.snapshot();
        snapshot.state = AlarmState::ArmedHome;
        snapshot.changed_by = Some("alice".into());
        let mut transition = NewAlarmEvent::new(t(10), AlarmEventKind::Transition);
        transition.from_state = Some("disarmed".into());
        transition.to_state = Some("armed_home".into());
        transition.who = Some("alice".into());
        transition.via = Some("home_assistant".into());
        let code = NewAlarmEvent::new(t(10), AlarmEventKind::CodeAccepted);
        s.record_alarm_step(Some(&snapshot), vec![code, transition.clone()], t(10))
            .await
            .unwrap();
        s.record_alarm_step(
            None,
            vec![NewAlarmEvent::new(t(20), AlarmEventKind::CodeRefused)],
            t(20),
        )
        .await
        .unwrap();
        assert_eq!(s.alarm_record().await.unwrap().snapshot, Some(snapshot));

        let all = s.alarm_events(None, None, &[], 100).await.unwrap();
        let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                AlarmEventKind::CodeRefused,
                AlarmEventKind::Transition,
                AlarmEventKind::CodeAccepted
            ]
        );
        let only = s
            .alarm_events(None, None, &[AlarmEventKind::Transition], 100)
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].who.as_deref(), Some("alice"));
        assert_eq!(only[0].to_state.as_deref(), Some("armed_home"));
        assert_eq!(only[0].at, t(10));
        let window = s
            .alarm_events(Some(t(11)), Some(t(21)), &[], 100)
            .await
            .unwrap();
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].kind, AlarmEventKind::CodeRefused);
        assert_eq!(s.alarm_events(None, None, &[], 1).await.unwrap().len(), 1);
        // The limit counts the kinds asked for, not the newer events of other kinds.
        let oldest = s
            .alarm_events(None, None, &[AlarmEventKind::CodeAccepted], 1)
            .await
            .unwrap();
        assert_eq!(oldest.len(), 1);
        assert_eq!(oldest[0].kind, AlarmEventKind::CodeAccepted);
        // A kind written by a newer Porchlight is left out.
        s.write(|c| {
            c.execute(
                "INSERT INTO alarm_events (at, kind) VALUES (1700000030000, 'from_the_future')",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(s.alarm_events(None, None, &[], 100).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_is_reported_not_fatal() {
        let (_d, s) = store();
        s.write(|c| {
            c.execute(
                "INSERT INTO alarm_snapshot (id, snapshot, updated_at) VALUES (1, 'nope', 0)",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let record = s.alarm_record().await.unwrap();
        assert_eq!(record.snapshot, None);
        assert!(record.snapshot_error.unwrap().contains("unreadable"));
    }

    #[tokio::test]
    async fn the_purge_deletes_old_events_in_batches() {
        let (_d, s) = store();
        let old: Vec<NewAlarmEvent> = (0..(ALARM_EVENT_PURGE_BATCH as u64 + 5))
            .map(|i| NewAlarmEvent::new(t(i % 100), AlarmEventKind::SensorTripped))
            .collect();
        s.record_alarm_step(None, old, t(0)).await.unwrap();
        s.record_alarm_step(
            None,
            vec![NewAlarmEvent::new(t(500), AlarmEventKind::Duress)],
            t(500),
        )
        .await
        .unwrap();
        let deleted = s.purge_alarm_events_older_than(t(200)).await.unwrap();
        assert_eq!(deleted, ALARM_EVENT_PURGE_BATCH + 5);
        let left = s.alarm_events(None, None, &[], 100).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].kind, AlarmEventKind::Duress);
    }
}
