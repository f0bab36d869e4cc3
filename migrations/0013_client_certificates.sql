-- Client certificates issued by our CA (issue 15, ADR 0017): one row per certificate, so the
-- MQTT authentication hook can tell a valid certificate from a revoked or unknown one (the TLS
-- layer has no revocation list). Public data only: the private key is handed to the caller
-- once and never stored.
CREATE TABLE client_certificates (
    -- Lower-case hex, as `openssl x509 -serial` prints it (without leading zeros).
    serial        TEXT PRIMARY KEY,
    -- SHA-256 of the DER certificate, lower-case hex: what the hook looks up.
    fingerprint   TEXT NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device        TEXT NOT NULL,
    -- The subject's common name, `<user>/<device>`.
    common_name   TEXT NOT NULL,
    -- The issuing CA (certificate_authorities.fingerprint).
    ca_fingerprint TEXT NOT NULL,
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    last_used_at  INTEGER
);
CREATE INDEX client_certificates_user ON client_certificates (user_id);
