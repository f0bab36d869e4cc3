-- Alarm PIN codes (docs/adr/0013-alarm-pin-codes.md).
--
-- A user may have several codes. The PIN itself is never stored: `pin_hash` is an argon2id PHC
-- string (the PIN profile: t=1, m=8 MiB, p=2; verification reads the parameters from the
-- string), and `tag` is the first 16 bits of HMAC-SHA256(alarm_code_key.key, PIN): a keypad
-- entry is checked with argon2 only against the codes sharing its tag (about one), not
-- against every stored code. A PIN is unique across all users' codes (enabled or not), so a
-- keypad always knows who entered it; the store checks that with argon2 on the same tag.
CREATE TABLE alarm_codes (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label       TEXT NOT NULL CHECK (length(label) > 0),
    pin_hash    TEXT NOT NULL,
    tag         INTEGER NOT NULL CHECK (tag BETWEEN 0 AND 65535),
    may_arm     INTEGER NOT NULL CHECK (may_arm IN (0, 1)),
    may_disarm  INTEGER NOT NULL CHECK (may_disarm IN (0, 1)),
    duress      INTEGER NOT NULL CHECK (duress IN (0, 1)),
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    -- Optional validity window, Unix ms: valid while valid_from <= now < valid_until.
    valid_from  INTEGER,
    valid_until INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until)
);
CREATE INDEX alarm_codes_user ON alarm_codes(user_id);
CREATE INDEX alarm_codes_tag ON alarm_codes(tag);

-- The key of the PIN tags: 256 random bits made once, here (SQLite's randomblob draws from
-- its OS-seeded CSPRNG). Kept in the database, beside the tags it keys, so a backup restores
-- both together; the file is 0600 like every secret the store keeps.
CREATE TABLE alarm_code_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL CHECK (length(key) = 32)
);
INSERT INTO alarm_code_key (id, key) VALUES (1, randomblob(32));
