-- OwnTracks payload encryption keys and per-user location retention.
-- Independent of migration 0003 (it touches no table 0003 creates or alters).

-- The passphrase of a phone's payload encryption (OwnTracks "encryptionKey"), per user and
-- device name as the Recorder keys it ("<user>-<device>"). Keyed by name, not by
-- `ot_devices.id`: a key must exist before the phone's first (encrypted) message creates the
-- device. Stored as the passphrase itself, because the server must decrypt with it; the
-- database file is 0600 and the API shows it masked (docs/adr/0011-owntracks-keys.md).
CREATE TABLE ot_keys (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device     TEXT NOT NULL CHECK (length(device) > 0),
    passphrase TEXT NOT NULL CHECK (length(passphrase) > 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device)
) WITHOUT ROWID;

-- How many days of a user's location history are kept; no row: forever. The retention
-- service deletes older points in small batches.
CREATE TABLE ot_retention (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    days    INTEGER NOT NULL CHECK (days > 0),
    updated_at INTEGER NOT NULL
);
