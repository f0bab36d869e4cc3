//! Measurements behind ADR 0009 (`#[ignore]`d: run them in release, one at a time):
//!
//! ```text
//! cargo test -p porchlight-store --release -- --ignored --nocapture owntracks_layouts_compared
//! cargo test -p porchlight-store --release -- --ignored --nocapture owntracks_store_measured
//! ```
//!
//! Both load 1,000,000 points of 10 devices over one year (a point every ~315 s per device,
//! devices interleaved in time as a live ingest would write them) in transactions of 500,
//! with WAL and `synchronous = FULL` as the store runs, into a temporary file.

use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};

pub(crate) const DEVICES: i64 = 10;
pub(crate) const POINTS: i64 = 1_000_000;
pub(crate) const BATCH: usize = 500;
pub(crate) const YEAR_START: i64 = 1_700_000_000;
pub(crate) const YEAR: i64 = 365 * 24 * 3600;
pub(crate) const STEP: i64 = YEAR * DEVICES / POINTS;

/// One synthetic point: a wandering random walk per device, with the raw JSON a phone sends.
pub(crate) struct Synthetic {
    pub device: i64,
    pub tst: i64,
    pub lat: f64,
    pub lon: f64,
    pub acc: f64,
    pub alt: f64,
    pub vel: f64,
    pub batt: i64,
    pub raw: String,
}

/// The points in ingest order (time, then device), generated lazily.
pub(crate) fn synthetic() -> impl Iterator<Item = Synthetic> {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut pos: Vec<(f64, f64)> = (0..DEVICES)
        .map(|d| (52.0 + d as f64 * 0.01, 13.0 + d as f64 * 0.01))
        .collect();
    (0..POINTS).map(move |i| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let device = i % DEVICES;
        let tst = YEAR_START + (i / DEVICES) * STEP;
        let (lat, lon) = &mut pos[device as usize];
        *lat += ((seed & 0xffff) as f64 / 65535.0 - 0.5) * 0.002;
        *lon += (((seed >> 16) & 0xffff) as f64 / 65535.0 - 0.5) * 0.002;
        let (lat, lon) = (*lat, *lon);
        let acc = (seed >> 32) as f64 % 50.0 + 3.0;
        let alt = (seed >> 40) as f64 % 100.0 + 30.0;
        let vel = (seed >> 48) as f64 % 30.0;
        let batt = 100 - (i / DEVICES) % 100;
        let raw = format!(
            r#"{{"_type":"location","acc":{acc},"alt":{alt},"batt":{batt},"bs":1,"conn":"w","created_at":{tst},"lat":{lat:.6},"lon":{lon:.6},"m":1,"t":"u","tid":"d{device}","tst":{tst},"vac":3,"vel":{vel},"topic":"owntracks/user{device}/phone"}}"#
        );
        Synthetic {
            device,
            tst,
            lat,
            lon,
            acc,
            alt,
            vel,
            batt,
            raw,
        }
    })
}

pub(crate) fn file_size(path: &std::path::Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
        })
        .sum()
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Layout {
    name: &'static str,
    schema: &'static str,
    insert: &'static [&'static str],
}

const COLUMNS: &str = "device_id INTEGER NOT NULL, tst INTEGER NOT NULL, lat REAL NOT NULL, \
    lon REAL NOT NULL, acc REAL, alt REAL, vac REAL, vel REAL, cog REAL, batt INTEGER, bs INTEGER, \
    conn TEXT, trig TEXT, tid TEXT, received_at INTEGER NOT NULL";

const LAYOUTS: &[Layout] = &[
    Layout {
        name: "A: WITHOUT ROWID, PK (device_id, tst), raw in the row",
        schema: "CREATE TABLE loc (COLS, raw TEXT NOT NULL, PRIMARY KEY (device_id, tst)) WITHOUT ROWID;",
        insert: &[
            "INSERT INTO loc (device_id, tst, lat, lon, acc, alt, vel, batt, received_at, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        ],
    },
    Layout {
        name: "B: rowid table + UNIQUE (device_id, tst), raw in the row",
        schema: "CREATE TABLE loc (id INTEGER PRIMARY KEY, COLS, raw TEXT NOT NULL, UNIQUE (device_id, tst));",
        insert: &[
            "INSERT INTO loc (device_id, tst, lat, lon, acc, alt, vel, batt, received_at, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        ],
    },
    Layout {
        name: "C: WITHOUT ROWID typed + WITHOUT ROWID raw side table, both PK (device_id, tst)",
        schema: "CREATE TABLE loc (COLS, PRIMARY KEY (device_id, tst)) WITHOUT ROWID;
                 CREATE TABLE raw (device_id INTEGER NOT NULL, tst INTEGER NOT NULL, raw TEXT NOT NULL,
                                   PRIMARY KEY (device_id, tst)) WITHOUT ROWID;",
        insert: &[
            "INSERT INTO loc (device_id, tst, lat, lon, acc, alt, vel, batt, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
            "INSERT INTO raw (device_id, tst, raw) VALUES (?1, ?2, ?10) ON CONFLICT DO NOTHING",
        ],
    },
    Layout {
        name: "D: rowid typed + UNIQUE (device_id, tst), raw side table keyed by rowid",
        schema: "CREATE TABLE loc (id INTEGER PRIMARY KEY, COLS, UNIQUE (device_id, tst));
                 CREATE TABLE raw (id INTEGER PRIMARY KEY, raw TEXT NOT NULL);",
        insert: &[
            "INSERT INTO loc (device_id, tst, lat, lon, acc, alt, vel, batt, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
            "INSERT INTO raw (id, raw) SELECT last_insert_rowid(), ?10 WHERE changes() > 0",
        ],
    },
];

#[test]
#[ignore = "a measurement: minutes of CPU; run in release with --nocapture"]
fn owntracks_layouts_compared() {
    // LAYOUTS=ACAC runs A, C, A, C (interleaving repeats evens out a shared machine's load).
    let order = std::env::var("LAYOUTS").unwrap_or_else(|_| "ABCD".into());
    for letter in order.chars() {
        let Some(layout) = LAYOUTS.iter().find(|l| l.name.starts_with(letter)) else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .unwrap();
        conn.execute_batch(&layout.schema.replace("COLS", COLUMNS))
            .unwrap();
        let now = 1_800_000_000_000i64;
        let started = Instant::now();
        let mut points = synthetic().peekable();
        while points.peek().is_some() {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for p in points.by_ref().take(BATCH) {
                for sql in layout.insert {
                    let mut stmt = conn.prepare_cached(sql).unwrap();
                    let all = params![
                        p.device, p.tst, p.lat, p.lon, p.acc, p.alt, p.vel, p.batt, now, p.raw
                    ];
                    // Each statement binds ?1…?N: pass the first N values.
                    let n = stmt.parameter_count();
                    stmt.execute(&all[..n]).unwrap();
                }
            }
            conn.execute_batch("COMMIT").unwrap();
        }
        let insert = started.elapsed();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let size = file_size(&path);

        let device = 3i64;
        let mut day = Vec::new();
        let mut year = Vec::new();
        let mut day_rows = 0;
        let mut year_rows = 0;
        for k in 0..20 {
            let from = YEAR_START + (17 + k * 13) * 86_400;
            let t = Instant::now();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT tst, lat, lon, acc, alt, vel, cog, batt, conn, tid FROM loc
                     WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3 ORDER BY tst",
                )
                .unwrap();
            let rows: Vec<(i64, f64, f64)> = stmt
                .query_map(params![device, from, from + 86_400], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            day.push(t.elapsed());
            day_rows = rows.len();
        }
        for _ in 0..5 {
            let t = Instant::now();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT tst, lat, lon FROM loc
                     WHERE device_id = ?1 AND tst >= ?2 AND tst < ?3 ORDER BY tst",
                )
                .unwrap();
            let rows: Vec<(i64, f64, f64)> = stmt
                .query_map(params![device, YEAR_START, YEAR_START + YEAR], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            year.push(t.elapsed());
            year_rows = rows.len();
        }
        println!(
            "{}\n  insert {:.0} points/s ({:.1} s); size {:.1} MB per million points; \
             one-day window ({day_rows} rows) median {:.2} ms; one-year fetch of tst/lat/lon \
             ({year_rows} rows) median {:.1} ms",
            layout.name,
            POINTS as f64 / insert.as_secs_f64(),
            insert.as_secs_f64(),
            size as f64 / 1e6 * 1_000_000.0 / POINTS as f64,
            median(day).as_secs_f64() * 1e3,
            median(year).as_secs_f64() * 1e3,
        );
    }
}

/// The chosen layout through the real `Store` API: batches of 500 through the writer thread,
/// each one job, one transaction, one fsync; then the read paths the issue bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes of CPU; run in release with --nocapture"]
async fn owntracks_store_measured() {
    use crate::Store;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porchlight.db");
    let store = Store::open(&path).unwrap();
    let users = measure_users(&store).await;
    let insert = load(&store, &users, 1).await;
    store.close().await;
    let size = file_size(&path);
    let store = Store::open(&path).unwrap();

    let device = store
        .find_owntracks_device(users[3], "phone")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut day = Vec::new();
    let mut day_rows = 0;
    for k in 0..30 {
        let from = YEAR_START + (11 + k * 12) * 86_400 + 3600 * 7;
        let t = Instant::now();
        let rows = store
            .location_window(device, from, from + 86_400, 100_000)
            .await
            .unwrap();
        day.push(t.elapsed());
        day_rows = rows.len();
    }
    let mut year = Vec::new();
    let mut year_rows = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let rows = store
            .location_track(device, YEAR_START, YEAR_START + YEAR, 2000)
            .await
            .unwrap();
        year.push(t.elapsed());
        year_rows = rows.len();
    }
    // The same fetch without thinning (a budget above the point count returns every point):
    // what the simplification itself adds is the difference.
    let mut fetch = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let rows = store
            .location_track(device, YEAR_START, YEAR_START + YEAR, usize::MAX)
            .await
            .unwrap();
        fetch.push(t.elapsed());
        assert_eq!(rows.len() as i64, POINTS / DEVICES);
    }
    let mut last = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let rows = store.last_locations(None).await.unwrap();
        last.push(t.elapsed());
        assert_eq!(rows.len(), DEVICES as usize);
    }
    // Four producers with a batch each in flight: the writer commits what queued up together.
    let path2 = dir.path().join("concurrent.db");
    let store2 = Store::open(&path2).unwrap();
    let users2 = measure_users(&store2).await;
    let concurrent = load(&store2, &users2, 4).await;
    store2.close().await;

    let worst = |v: &Vec<Duration>| v.iter().max().copied().unwrap_or_default();
    println!(
        "store API, {POINTS} points, {DEVICES} devices, one year, batches of {BATCH}:\n  \
         ingest {:.0} points/s ({:.1} s, one write job and fsync per batch, one batch at a time)\n  \
         ingest {:.0} points/s ({:.1} s, 4 batches in flight)\n  \
         size {:.1} MB per million points\n  \
         one-day window ({day_rows} rows): median {:.2} ms, worst {:.2} ms\n  \
         one-year track downsampled to {year_rows} points: median {:.1} ms, worst {:.1} ms\n  \
         the same year fetched without thinning: median {:.1} ms\n  \
         last locations of all devices: median {:.2} ms",
        POINTS as f64 / insert.as_secs_f64(),
        insert.as_secs_f64(),
        POINTS as f64 / concurrent.as_secs_f64(),
        concurrent.as_secs_f64(),
        size as f64 / 1e6 * 1_000_000.0 / POINTS as f64,
        median(day.clone()).as_secs_f64() * 1e3,
        worst(&day).as_secs_f64() * 1e3,
        median(year.clone()).as_secs_f64() * 1e3,
        worst(&year).as_secs_f64() * 1e3,
        median(fetch).as_secs_f64() * 1e3,
        median(last).as_secs_f64() * 1e3,
    );
    store.close().await;
}

/// Loads the synthetic points into `store` in batches of [`BATCH`], `in_flight` batches at a
/// time; returns how long it took. Every point must come back `New`.
async fn load(store: &crate::Store, users: &[i64], in_flight: usize) -> Duration {
    use crate::{
        IngestOutcome, LocationFields, OwnTracksMessage, OwnTracksPayload, OwnTracksPublisher,
    };

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let started = Instant::now();
    let mut points = synthetic().peekable();
    let mut tasks = tokio::task::JoinSet::new();
    let mut new = 0usize;
    while points.peek().is_some() {
        let batch: Vec<OwnTracksMessage> = points
            .by_ref()
            .take(BATCH)
            .map(|p| OwnTracksMessage {
                publisher: OwnTracksPublisher {
                    user_id: users[p.device as usize],
                    device: "phone".into(),
                },
                tst: p.tst,
                payload: OwnTracksPayload::Location(LocationFields {
                    lat: p.lat,
                    lon: p.lon,
                    acc: Some(p.acc),
                    alt: Some(p.alt),
                    vac: Some(3.0),
                    vel: Some(p.vel),
                    batt: Some(p.batt),
                    bs: Some(1),
                    conn: Some("w".into()),
                    trigger: Some("u".into()),
                    tid: Some(format!("d{}", p.device)),
                    ..LocationFields::default()
                }),
                raw: p.raw,
            })
            .collect();
        if tasks.len() >= in_flight
            && let Some(done) = tasks.join_next().await
        {
            new += done.unwrap();
        }
        let store = store.clone();
        tasks.spawn(async move {
            let outcomes = store.ingest_owntracks(batch, now).await.unwrap();
            outcomes
                .iter()
                .filter(|o| **o == IngestOutcome::New)
                .count()
        });
    }
    while let Some(done) = tasks.join_next().await {
        new += done.unwrap();
    }
    let took = started.elapsed();
    assert_eq!(new as i64, POINTS);
    took
}

/// One user per measured device (`user0`, `user1`, …); returns their ids.
async fn measure_users(store: &crate::Store) -> Vec<i64> {
    let mut users = Vec::new();
    for u in 0..DEVICES {
        let user = store
            .create_user(
                &format!("user{u}"),
                porchlight_domain::Role::User,
                &porchlight_domain::secret::Secret::new("measure password 1"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        users.push(user.id);
    }
    users
}
