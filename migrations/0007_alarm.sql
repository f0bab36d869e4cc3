-- The alarm (ADR 0014): its settings, its sensors, the state machine's snapshot and the event
-- log. Settings, sensors and the snapshot are the domain's types as JSON (the domain owns their
-- shape and its serde defaults); the store only keeps them. A missing settings row means the
-- domain's defaults, a missing snapshot a fresh, disarmed alarm: a fresh install has an alarm.

-- One row: the domain's alarm Settings as JSON.
CREATE TABLE alarm_settings (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    settings   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One row per sensor: the domain's Sensor as JSON, keyed by its id.
CREATE TABLE alarm_sensors (
    id         TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row: the state machine's snapshot (state, deadline, bypasses, sensor states, ...),
-- written in the same job as the events of the step that produced it.
CREATE TABLE alarm_snapshot (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The alarm's history: transitions, code uses (never the code), sensor trips, bypasses,
-- duress. `at` in milliseconds since the Unix epoch; states and `via` in the domain's text
-- forms; `detail` a short human-readable text (a reason, a sensor list).
CREATE TABLE alarm_events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    who        TEXT,
    via        TEXT,
    from_state TEXT,
    to_state   TEXT,
    sensor     TEXT,
    detail     TEXT
);
CREATE INDEX alarm_events_at ON alarm_events(at);
