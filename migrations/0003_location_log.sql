-- New locations land in `location_log` first, in arrival order, and are moved into
-- `locations` / `location_raw` in large batches (a "drain") by the ingest write job once the log
-- holds enough rows. Why: `locations` is clustered by (device, tst), so a commit carrying one new
-- point each for many phones dirtied one leaf page per phone in each of the two tables (~37 KB
-- written per point). Appended rows share pages; a drain moves many points per phone at once.
-- Reads see both tables; the log stays small (see LOG_DRAIN_ROWS in crates/store/src/owntracks.rs),
-- so its (device_id, tst) index is a handful of pages. Measurements: ADR 0009, "Append-ordered log".
CREATE TABLE location_log (
    seq         INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES ot_devices(id) ON DELETE CASCADE,
    tst         INTEGER NOT NULL,
    lat         REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
    acc         REAL,
    alt         REAL,
    vac         REAL,
    vel         REAL,
    cog         REAL,
    batt        INTEGER,
    bs          INTEGER,
    conn        TEXT,
    trig        TEXT,
    tid         TEXT,
    received_at INTEGER NOT NULL,
    raw         TEXT NOT NULL
);
-- The dedup key (as the primary key of `locations`), and the order a drain moves rows in.
CREATE UNIQUE INDEX location_log_key ON location_log(device_id, tst);
