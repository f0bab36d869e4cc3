-- Accounts, MQTT device credentials, web sessions, API tokens and the audit log.
-- Times are Unix milliseconds (UTC). Secrets are stored only as hashes:
-- passwords as argon2id PHC strings, random tokens/device keys as SHA-256 hex.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user', 'homeassistant')),
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- An MQTT identity of a user: a phone, Home Assistant, a script. Each has its own key so that
-- one lost phone can be cut off without touching the others.
CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    last_seen_at INTEGER,
    UNIQUE (user_id, name)
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    peer         TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- Every connection attempt, disconnect, refused publish/subscribe and web login.
-- Never a password.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    peer      TEXT,
    client_id TEXT,
    username  TEXT,
    protocol  INTEGER,
    code      INTEGER,
    reason    TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX audit_at ON audit(at);
