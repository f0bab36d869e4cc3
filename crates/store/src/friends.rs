//! Friendships: a user (the owner) granting another (the viewer) the sight of their OwnTracks
//! devices. The store keeps the grants; the rule of what a grant shows is the domain's
//! ([`porchlight_domain::acl::Friendships`]), built from [`Store::grants`].

use std::time::SystemTime;

use porchlight_domain::acl::Grant;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// One grant, with both users' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friendship {
    pub owner_id: i64,
    pub owner: String,
    pub viewer_id: i64,
    pub viewer: String,
    pub created_at: SystemTime,
}

const FRIENDSHIP_SELECT: &str =
    "SELECT f.owner_id, o.username, f.viewer_id, v.username, f.created_at
     FROM friendships f
     JOIN users o ON o.id = f.owner_id
     JOIN users v ON v.id = f.viewer_id";

fn friendship_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Friendship> {
    Ok(Friendship {
        owner_id: r.get(0)?,
        owner: r.get(1)?,
        viewer_id: r.get(2)?,
        viewer: r.get(3)?,
        created_at: from_unix_ms(r.get(4)?),
    })
}

fn user_id_in(conn: &Connection, username: &str) -> Result<i64> {
    conn.query_row(
        "SELECT id FROM users WHERE username = ?1",
        [username],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "user",
        name: username.to_owned(),
    })
}

fn friendship_in(conn: &Connection, owner_id: i64, viewer_id: i64) -> Result<Option<Friendship>> {
    Ok(conn
        .query_row(
            &format!("{FRIENDSHIP_SELECT} WHERE f.owner_id = ?1 AND f.viewer_id = ?2"),
            [owner_id, viewer_id],
            friendship_from_row,
        )
        .optional()?)
}

impl Store {
    /// `owner` grants `viewer` the sight of their devices at `now`. Granting again changes
    /// nothing; the answer says whether the grant is new. Unknown users are
    /// [`Error::NotFound`]; granting oneself is [`Error::BadInput`].
    pub async fn grant_friendship(
        &self,
        owner: &str,
        viewer: &str,
        now: SystemTime,
    ) -> Result<(Friendship, bool)> {
        let (owner, viewer) = (owner.to_owned(), viewer.to_owned());
        self.write(move |conn| {
            let owner_id = user_id_in(conn, &owner)?;
            let viewer_id = user_id_in(conn, &viewer)?;
            if owner_id == viewer_id {
                return Err(Error::BadInput(
                    "a user always sees their own devices; grant someone else".into(),
                ));
            }
            let inserted = conn.execute(
                "INSERT INTO friendships (owner_id, viewer_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (owner_id, viewer_id) DO NOTHING",
                params![owner_id, viewer_id, unix_ms(now)],
            )?;
            let friendship =
                friendship_in(conn, owner_id, viewer_id)?.ok_or_else(|| Error::NotFound {
                    what: "friendship",
                    name: format!("{owner} -> {viewer}"),
                })?;
            Ok((friendship, inserted == 1))
        })
        .await
    }

    /// `owner` revokes what they granted `viewer`; returns the grant that ended. Unknown users
    /// and a grant that does not exist are [`Error::NotFound`].
    pub async fn revoke_friendship(&self, owner: &str, viewer: &str) -> Result<Friendship> {
        let (owner, viewer) = (owner.to_owned(), viewer.to_owned());
        self.write(move |conn| {
            let owner_id = user_id_in(conn, &owner)?;
            let viewer_id = user_id_in(conn, &viewer)?;
            let friendship =
                friendship_in(conn, owner_id, viewer_id)?.ok_or_else(|| Error::NotFound {
                    what: "friendship",
                    name: format!("{owner} -> {viewer}"),
                })?;
            conn.execute(
                "DELETE FROM friendships WHERE owner_id = ?1 AND viewer_id = ?2",
                [owner_id, viewer_id],
            )?;
            Ok(friendship)
        })
        .await
    }

    /// The grants `user_id` gave or received (every grant for `None`), by owner then viewer.
    pub async fn friendships(&self, user_id: Option<i64>) -> Result<Vec<Friendship>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{FRIENDSHIP_SELECT}
                 WHERE ?1 IS NULL OR f.owner_id = ?1 OR f.viewer_id = ?1
                 ORDER BY o.username, v.username"
            ))?;
            let rows = stmt.query_map([user_id], friendship_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Every grant, as the domain's visibility rule takes them.
    pub async fn grants(&self) -> Result<Vec<Grant>> {
        Ok(self
            .friendships(None)
            .await?
            .into_iter()
            .map(|f| Grant {
                owner_id: f.owner_id,
                owner: f.owner,
                viewer_id: f.viewer_id,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use porchlight_domain::Role;
    use porchlight_domain::secret::Secret;

    use super::*;

    async fn store_with(users: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
        for name in users {
            store
                .create_user(
                    name,
                    Role::User,
                    &Secret::new(format!("{name} password 1")),
                    UNIX_EPOCH,
                )
                .await
                .unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn grants_are_one_way_idempotent_and_revocable() {
        let (_dir, store) = store_with(&["alice", "bob", "carol"]).await;
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let (f, new) = store.grant_friendship("bob", "alice", t).await.unwrap();
        assert!(new);
        assert_eq!(
            (f.owner.as_str(), f.viewer.as_str(), f.created_at),
            ("bob", "alice", t)
        );
        let (again, new) = store
            .grant_friendship("bob", "alice", t + Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!new);
        assert_eq!(again.created_at, t, "a second grant keeps the first");
        store.grant_friendship("carol", "bob", t).await.unwrap();

        let alice = store.find_user("alice").await.unwrap();
        let of_alice = store.friendships(Some(alice.id)).await.unwrap();
        assert_eq!(of_alice.len(), 1);
        assert_eq!(store.friendships(None).await.unwrap().len(), 2);
        let grants = store.grants().await.unwrap();
        let friends = porchlight_domain::acl::Friendships::new(grants);
        assert!(friends.grants_by_name("bob", alice.id));
        assert!(!friends.grants_by_name("carol", alice.id));

        let ended = store.revoke_friendship("bob", "alice").await.unwrap();
        assert_eq!(ended.viewer, "alice");
        assert!(store.friendships(Some(alice.id)).await.unwrap().is_empty());
        assert!(matches!(
            store.revoke_friendship("bob", "alice").await,
            Err(Error::NotFound {
                what: "friendship",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn unknown_users_and_self_grants_are_refused_and_removal_ends_grants() {
        let (_dir, store) = store_with(&["alice", "bob"]).await;
        assert!(matches!(
            store.grant_friendship("bob", "nobody", UNIX_EPOCH).await,
            Err(Error::NotFound { what: "user", .. })
        ));
        assert!(matches!(
            store.grant_friendship("nobody", "bob", UNIX_EPOCH).await,
            Err(Error::NotFound { what: "user", .. })
        ));
        assert!(matches!(
            store.grant_friendship("bob", "bob", UNIX_EPOCH).await,
            Err(Error::BadInput(_))
        ));
        store
            .grant_friendship("bob", "alice", UNIX_EPOCH)
            .await
            .unwrap();
        store.remove_user("bob").await.unwrap();
        assert!(store.grants().await.unwrap().is_empty());
    }
}
