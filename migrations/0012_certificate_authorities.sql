-- The built-in certificate authority (issue 15, ADR 0017): every CA this install has had.
-- One is active (it signs); retired ones stay listed so the certificates they signed stay
-- trusted until reissued. Only public material is here: each CA's private key is sealed in
-- its own file in the data dir (`ca/<fingerprint prefix>.key`), never in the database.
CREATE TABLE certificate_authorities (
    -- SHA-256 of the DER certificate, lower-case hex.
    fingerprint TEXT PRIMARY KEY,
    cert_pem    TEXT NOT NULL,
    -- 'generated' here, or 'imported'.
    origin      TEXT NOT NULL CHECK (origin IN ('generated', 'imported')),
    active      INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
CREATE UNIQUE INDEX certificate_authorities_one_active
    ON certificate_authorities (active) WHERE active = 1;
