-- Friendship: a user (the owner) grants another user (the viewer) the sight of their OwnTracks
-- devices, in the HTTP API, the live feed and the broker. One-way; revoking deletes the row.
-- Both sides go with their account.
CREATE TABLE friendships (
    owner_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    viewer_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner_id, viewer_id),
    CHECK (owner_id <> viewer_id)
) WITHOUT ROWID;
-- "Who granted me?" (the viewer's side).
CREATE INDEX friendships_viewer ON friendships(viewer_id);
