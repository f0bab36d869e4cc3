-- A user's own card (display name and picture, as set in the Profile screen), kept even when
-- the user has no OwnTracks device yet. `PUT /api/owntracks/card` writes it together with the
-- cards of the user's devices; a device that appears later takes it (before any other device's
-- card). A phone's own `_type: card` changes only that device's card in `ot_cards`.
CREATE TABLE user_cards (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT,
    face       TEXT,
    updated_at INTEGER NOT NULL
);
