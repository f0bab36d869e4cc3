-- OwnTracks: devices as they appear on their first message, their location history, transitions,
-- waypoints, cards, the raw JSON of every message, and commands queued for HTTP-mode phones.
-- Layout and measurements: docs/adr/0009-owntracks-storage.md.
-- `tst` columns are the phone's Unix seconds (the protocol's unit and the dedup key);
-- `*_at` columns are Unix milliseconds of the server's clock, as everywhere else.

-- A device publishing under owntracks/<user>/<name>. Created by its first message, whoever
-- published it: a login with that device's key, or the user's account password (which may
-- publish as any device name of the user's own). `credential_id` links the device key of the
-- same name when there is one; removing the key keeps the history (SET NULL).
CREATE TABLE ot_devices (
    id                INTEGER PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name              TEXT NOT NULL CHECK (length(name) > 0),
    credential_id     INTEGER REFERENCES devices(id) ON DELETE SET NULL,
    first_seen_at     INTEGER NOT NULL,
    last_seen_at      INTEGER NOT NULL,
    online            INTEGER NOT NULL CHECK (online IN (0, 1)),
    online_changed_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX ot_devices_credential ON ot_devices(credential_id);

-- Location history: one row per (device, tst), clustered by that key so that one device's
-- time window is one contiguous range scan. Only the typed fields that are queried live here;
-- the raw JSON is in `location_raw` so that scans over a year of points stay small.
CREATE TABLE locations (
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
    PRIMARY KEY (device_id, tst)
) WITHOUT ROWID;

-- The message exactly as the phone sent it (decrypted), for each row of `locations`.
CREATE TABLE location_raw (
    device_id INTEGER NOT NULL REFERENCES ot_devices(id) ON DELETE CASCADE,
    tst       INTEGER NOT NULL,
    raw       TEXT NOT NULL,
    PRIMARY KEY (device_id, tst)
) WITHOUT ROWID;

-- Region enter/leave events. Several regions may change at the same second, so the region
-- and the event are part of the key; `rid` is '' for phones that send none.
CREATE TABLE ot_transitions (
    device_id   INTEGER NOT NULL REFERENCES ot_devices(id) ON DELETE CASCADE,
    tst         INTEGER NOT NULL,
    event       TEXT NOT NULL CHECK (event IN ('enter', 'leave')),
    rid         TEXT NOT NULL,
    description TEXT,
    wtst        INTEGER,
    lat         REAL,
    lon         REAL,
    acc         REAL,
    received_at INTEGER NOT NULL,
    raw         TEXT NOT NULL,
    PRIMARY KEY (device_id, tst, event, rid)
) WITHOUT ROWID;

-- The regions a phone monitors, identified on the phone by their creation time (`tst` in the
-- waypoint message): a later message for the same region replaces it.
CREATE TABLE ot_waypoints (
    device_id   INTEGER NOT NULL REFERENCES ot_devices(id) ON DELETE CASCADE,
    wtst        INTEGER NOT NULL,
    description TEXT NOT NULL,
    lat         REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
    rad         INTEGER,
    rid         TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, wtst)
) WITHOUT ROWID;

-- The latest card (display name, base64 picture) per device.
CREATE TABLE ot_cards (
    device_id  INTEGER PRIMARY KEY REFERENCES ot_devices(id) ON DELETE CASCADE,
    name       TEXT,
    face       TEXT,
    updated_at INTEGER NOT NULL
);

-- The raw JSON of every message that is not a location or transition (lwt, card, waypoint(s),
-- status, configuration, …), deduplicated like the rest by (device, type, tst).
CREATE TABLE ot_messages (
    device_id   INTEGER NOT NULL REFERENCES ot_devices(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    tst         INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    raw         TEXT NOT NULL,
    PRIMARY KEY (device_id, kind, tst)
) WITHOUT ROWID;

-- Commands waiting for an HTTP-mode phone's next request: handed out once, then deleted;
-- dropped unsent after `expires_at`.
CREATE TABLE ot_commands (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES ot_devices(id) ON DELETE CASCADE,
    payload    TEXT NOT NULL,
    queued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX ot_commands_device ON ot_commands(device_id, id);
