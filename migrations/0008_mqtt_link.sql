-- The optional link to an external MQTT broker (ADR 0015). One row: the domain's LinkSettings
-- as JSON (host, port, TLS, CA file, user name, enabled, Client ID prefix), and the password
-- apart from it, in the clear because logging in to the broker needs it; the API never
-- answers it. No row: the defaults (off, prefix `porchlight`, no password).
CREATE TABLE mqtt_link_settings (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    settings   TEXT NOT NULL,
    password   TEXT,
    updated_at INTEGER NOT NULL
);
