//! Users, their MQTT devices, web sessions and API tokens.
//!
//! Password checks go through the process-wide argon2 gate and the memory of verified
//! credentials in [`crate::hashing`]; a password change ends what the old password opened
//! here (web sessions, API tokens, remembered credentials).

use std::time::SystemTime;

use porchlight_domain::Role;
use porchlight_domain::account::{validate_device_name, validate_password, validate_username};
use porchlight_domain::secret::Secret;
use porchlight_domain::session::{SessionCheck, SessionPolicy};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::hashing::{
    HashPriority, decoy_hash, hash_password, random_secret, remembered, secret_hash,
    verify_password, with_hash_slot,
};
use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub created_at: SystemTime,
}

/// An MQTT identity belonging to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub created_at: SystemTime,
    pub last_seen_at: Option<SystemTime>,
}

/// An API token's public facts (the token itself is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: SystemTime,
    pub last_used_at: Option<SystemTime>,
}

const USER_COLUMNS: &str = "id, username, role, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(2)?;
    let role = role.parse::<Role>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        role,
        created_at: from_unix_ms(row.get(3)?),
    })
}

const DEVICE_COLUMNS: &str = "d.id, d.user_id, u.username, d.name, d.created_at, d.last_seen_at";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: row.get(0)?,
        user_id: row.get(1)?,
        username: row.get(2)?,
        name: row.get(3)?,
        created_at: from_unix_ms(row.get(4)?),
        last_seen_at: row.get::<_, Option<i64>>(5)?.map(from_unix_ms),
    })
}

fn find_user_in(conn: &Connection, username: &str) -> Result<User> {
    // Cached: every MQTT login (a reconnect storm is thousands a second) looks its user up.
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
    ))?
    .query_row([username], user_from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "user",
        name: username.to_owned(),
    })
}

/// Hashes a new password off the async runtime, within the process-wide argon2 limit.
async fn hash_off_runtime(password: Secret) -> Result<String> {
    with_hash_slot(HashPriority::Normal, move || hash_password(&password)).await?
}

/// What checking a login password found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCheck {
    /// Right: argon2 verified it just now.
    Verified(User),
    /// Right: the same user name and password passed argon2 against the account's current
    /// hash within [`crate::REMEMBER_LOGIN_FOR`], so no argon2 ran.
    Remembered(User),
    /// Wrong password or unknown user name (or, for [`LoginCheckMode::RememberedOnly`], not
    /// remembered).
    Wrong,
}

impl LoginCheck {
    /// The account, if the password was right.
    pub fn user(self) -> Option<User> {
        match self {
            LoginCheck::Verified(u) | LoginCheck::Remembered(u) => Some(u),
            LoginCheck::Wrong => None,
        }
    }
}

/// How far [`Store::check_login`] may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCheckMode {
    /// Only the memory of verified credentials: never runs argon2.
    RememberedOnly,
    /// The memory, then argon2 (waiting for a slot at this priority).
    Verify(HashPriority),
}

/// What a password change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordChange {
    pub user: User,
    /// Web sessions deleted (all of the user's but the one kept).
    pub sessions_ended: usize,
    /// API tokens of the user revoked.
    pub tokens_revoked: usize,
}

impl Store {
    /// Creates an account at `now`. The password is checked against the policy and hashed off
    /// the async runtime before the write.
    pub async fn create_user(
        &self,
        username: &str,
        role: Role,
        password: &Secret,
        now: SystemTime,
    ) -> Result<User> {
        self.insert_user(username, role, password, false, now).await
    }

    /// [`Store::create_user`] with a password nobody chose (generated and shown once): the
    /// account is marked so the UI asks for a new password ([`Store::password_is_one_time`])
    /// until the next password change.
    pub async fn create_user_with_one_time_password(
        &self,
        username: &str,
        role: Role,
        password: &Secret,
        now: SystemTime,
    ) -> Result<User> {
        self.insert_user(username, role, password, true, now).await
    }

    /// Whether the user's password is still a one-time password (see
    /// [`Store::create_user_with_one_time_password`]).
    pub async fn password_is_one_time(&self, user_id: i64) -> Result<bool> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT password_one_time FROM users WHERE id = ?1",
                [user_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some_and(|v| v != 0))
        })
        .await
    }

    async fn insert_user(
        &self,
        username: &str,
        role: Role,
        password: &Secret,
        one_time: bool,
        now: SystemTime,
    ) -> Result<User> {
        validate_username(username)?;
        validate_password(password.expose())?;
        let phc = hash_off_runtime(password.clone()).await?;
        let username = username.to_owned();
        let now = unix_ms(now);
        self.write(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO users (username, role, password_hash, created_at, updated_at,
                                    password_one_time)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5) ON CONFLICT (username) DO NOTHING",
                params![username, role.as_str(), phc, now, one_time],
            )?;
            if inserted == 0 {
                return Err(Error::AlreadyExists {
                    what: "user",
                    name: username,
                });
            }
            find_user_in(conn, &username)
        })
        .await
    }

    pub async fn user_count(&self) -> Result<i64> {
        self.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users ORDER BY username"
            ))?;
            let rows = stmt.query_map([], user_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn find_user(&self, username: &str) -> Result<User> {
        let username = username.to_owned();
        self.read(move |c| find_user_in(c, &username)).await
    }

    /// Replaces a user's password and ends everything the old one opened here: all their web
    /// sessions and API tokens (see [`Store::change_password`]).
    pub async fn set_password(
        &self,
        username: &str,
        password: &Secret,
        now: SystemTime,
    ) -> Result<()> {
        self.change_password(username, password, None, now)
            .await
            .map(drop)
    }

    /// Replaces a user's password at `now`, in one transaction with its effects: the user's web
    /// sessions end except `keep_session` (the cookie of a user changing their own password,
    /// who stays signed in there), their API tokens are revoked, and credentials remembered
    /// for them are forgotten. MQTT sessions are the broker's business: the caller ends those.
    pub async fn change_password(
        &self,
        username: &str,
        password: &Secret,
        keep_session: Option<&str>,
        now: SystemTime,
    ) -> Result<PasswordChange> {
        validate_password(password.expose())?;
        let phc = hash_off_runtime(password.clone()).await?;
        let username = username.to_owned();
        let keep = keep_session.map(|token| secret_hash(token.as_bytes()));
        let change = self
            .write(move |conn| {
                let user = find_user_in(conn, &username)?;
                conn.execute(
                    "UPDATE users SET password_hash = ?1, updated_at = ?2, password_one_time = 0
                     WHERE id = ?3",
                    params![phc, unix_ms(now), user.id],
                )?;
                let sessions_ended = conn.execute(
                    "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IS NOT ?2",
                    params![user.id, keep],
                )?;
                let tokens_revoked =
                    conn.execute("DELETE FROM api_tokens WHERE user_id = ?1", [user.id])?;
                Ok(PasswordChange {
                    user,
                    sessions_ended,
                    tokens_revoked,
                })
            })
            .await?;
        remembered().forget(&change.user.username);
        Ok(change)
    }

    /// Removes an account with its devices, sessions and tokens. The last admin cannot be
    /// removed: that would lock everyone out of administration.
    pub async fn remove_user(&self, username: &str) -> Result<(User, Vec<Device>)> {
        let username = username.to_owned();
        self.write(move |conn| {
            let user = find_user_in(conn, &username)?;
            if user.role == Role::Admin {
                let admins: i64 =
                    conn.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                        r.get(0)
                    })?;
                if admins <= 1 {
                    return Err(Error::LastAdmin);
                }
            }
            let devices = devices_of(conn, Some(user.id))?;
            conn.execute("DELETE FROM users WHERE id = ?1", [user.id])?;
            Ok((user, devices))
        })
        .await
        .inspect(|(user, _)| remembered().forget(&user.username))
    }

    /// Checks a user name and password (waiting for an argon2 slot at normal priority).
    /// Unknown users cost as much time as known ones.
    pub async fn verify_login(
        &self,
        username: &str,
        password: &[u8],
        now: SystemTime,
    ) -> Result<Option<User>> {
        let mode = LoginCheckMode::Verify(HashPriority::Normal);
        Ok(self
            .check_login(username, password, mode, now)
            .await?
            .user())
    }

    /// Checks a user name and password at `now`: first against the credentials that passed
    /// argon2 recently (no argon2, no slot), then, if `mode` allows, with argon2 within the
    /// process-wide limit; a right password is remembered. An unknown user name costs an
    /// argon2 run like a known one. [`Error::Busy`] when too many checks wait already.
    pub async fn check_login(
        &self,
        username: &str,
        password: &[u8],
        mode: LoginCheckMode,
        now: SystemTime,
    ) -> Result<LoginCheck> {
        let name = username.to_owned();
        let row = self
            .read(move |c| {
                Ok(c.query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"),
                    [&name],
                    |r| Ok((user_from_row(r)?, r.get::<_, String>(4)?)),
                )
                .optional()?)
            })
            .await?;
        if let Some((user, phc)) = &row
            && remembered().matches(username, password, phc, now)
        {
            return Ok(LoginCheck::Remembered(user.clone()));
        }
        let LoginCheckMode::Verify(priority) = mode else {
            return Ok(LoginCheck::Wrong);
        };
        let secret = password.to_vec();
        let verified = with_hash_slot(priority, move || match row {
            Some((user, phc)) => verify_password(&secret, &phc).then_some((user, phc)),
            None => {
                let _ = verify_password(&secret, decoy_hash());
                None
            }
        })
        .await?;
        Ok(match verified {
            Some((user, phc)) => {
                remembered().remember(username, password, &phc, now);
                LoginCheck::Verified(user)
            }
            None => LoginCheck::Wrong,
        })
    }

    /// Whether a credential of `username` is remembered at `now` (so a
    /// [`LoginCheckMode::RememberedOnly`] check could succeed). Cheap: no database, no argon2.
    pub fn has_remembered_login(&self, username: &str, now: SystemTime) -> bool {
        remembered().knows(username, now)
    }

    /// Adds an MQTT device to a user at `now` and returns it with its key, which is shown once.
    pub async fn add_device(
        &self,
        username: &str,
        name: &str,
        now: SystemTime,
    ) -> Result<(Device, Secret)> {
        validate_device_name(name)?;
        let key = random_secret("pld_");
        let hash = secret_hash(key.expose().as_bytes());
        let (username, name) = (username.to_owned(), name.to_owned());
        let device = self
            .write(move |conn| {
                let user = find_user_in(conn, &username)?;
                let inserted = conn.execute(
                    "INSERT INTO devices (user_id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id, name) DO NOTHING",
                    params![user.id, name, hash, unix_ms(now)],
                )?;
                if inserted == 0 {
                    return Err(Error::AlreadyExists {
                        what: "device",
                        name: format!("{username}/{name}"),
                    });
                }
                let device = device_by_name(conn, user.id, &name)?;
                // An OwnTracks device of that name that published with the account password
                // so far is this key's device from now on.
                conn.execute(
                    "UPDATE ot_devices SET credential_id = ?3
                     WHERE user_id = ?1 AND name = ?2 AND credential_id IS NULL",
                    params![user.id, name, device.id],
                )?;
                Ok(device)
            })
            .await?;
        Ok((device, key))
    }

    /// Devices of one user, or of everyone.
    pub async fn list_devices(&self, user_id: Option<i64>) -> Result<Vec<Device>> {
        self.read(move |c| devices_of(c, user_id)).await
    }

    /// Removes a device; its key stops working at once.
    pub async fn remove_device(&self, username: &str, name: &str) -> Result<Device> {
        let (username, name) = (username.to_owned(), name.to_owned());
        self.write(move |conn| {
            let user = find_user_in(conn, &username)?;
            let device = device_by_name(conn, user.id, &name)?;
            conn.execute("DELETE FROM devices WHERE id = ?1", [device.id])?;
            Ok(device)
        })
        .await
    }

    /// The user and device that own a device key, if the key belongs to `username`.
    pub async fn verify_device_key(
        &self,
        username: &str,
        key: &[u8],
    ) -> Result<Option<(User, Device)>> {
        let hash = secret_hash(key);
        let username = username.to_owned();
        self.read(move |c| {
            let found = c
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices d JOIN users u ON u.id = d.user_id
                     WHERE d.key_hash = ?1 AND u.username = ?2"
                ))?
                .query_row(params![hash, username], device_from_row)
                .optional()?;
            match found {
                Some(device) => Ok(Some((find_user_in(c, &device.username)?, device))),
                None => Ok(None),
            }
        })
        .await
    }

    /// Notes that a device connected now.
    pub async fn touch_device(&self, device_id: i64, now: SystemTime) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached("UPDATE devices SET last_seen_at = ?1 WHERE id = ?2")?
                .execute(params![unix_ms(now), device_id])?;
            Ok(())
        })
        .await
    }

    /// Starts a web session; returns the cookie value (shown to the browser only).
    pub async fn create_session(
        &self,
        user_id: i64,
        peer: Option<String>,
        now: SystemTime,
    ) -> Result<Secret> {
        let token = random_secret("");
        let hash = secret_hash(token.expose().as_bytes());
        self.write(move |c| {
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, peer)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![hash, user_id, unix_ms(now), peer],
            )?;
            Ok(())
        })
        .await?;
        Ok(token)
    }

    /// The user behind a session cookie at `now`, sliding its expiry; expired sessions are
    /// deleted and yield `None`.
    pub async fn session_user(
        &self,
        token: &str,
        now: SystemTime,
        policy: SessionPolicy,
    ) -> Result<Option<User>> {
        let hash = secret_hash(token.as_bytes());
        let hash2 = hash.clone();
        let found = self
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT u.id, u.username, u.role, u.created_at, s.last_seen_at
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
                    [&hash],
                    |r| Ok((user_from_row(r)?, r.get::<_, i64>(4)?)),
                )
                .optional()?)
            })
            .await?;
        let Some((user, last_seen)) = found else {
            return Ok(None);
        };
        match policy.check(from_unix_ms(last_seen), now) {
            SessionCheck::Valid => Ok(Some(user)),
            SessionCheck::ValidTouch => {
                self.write(move |c| {
                    c.execute(
                        "UPDATE sessions SET last_seen_at = ?1 WHERE token_hash = ?2",
                        params![unix_ms(now), hash2],
                    )?;
                    Ok(())
                })
                .await?;
                Ok(Some(user))
            }
            SessionCheck::Expired => {
                self.write(move |c| {
                    c.execute("DELETE FROM sessions WHERE token_hash = ?1", [hash2])?;
                    Ok(())
                })
                .await?;
                Ok(None)
            }
        }
    }

    pub async fn delete_session(&self, token: &str) -> Result<()> {
        let hash = secret_hash(token.as_bytes());
        self.write(move |c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [hash])?;
            Ok(())
        })
        .await
    }

    /// Creates an API token for scripts at `now`; the token is returned once and stored hashed.
    pub async fn create_api_token(
        &self,
        user_id: i64,
        name: &str,
        now: SystemTime,
    ) -> Result<(ApiToken, Secret)> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(Error::BadInput(
                "a token name must be 1 to 64 characters long".into(),
            ));
        }
        let token = random_secret("plt_");
        let hash = secret_hash(token.expose().as_bytes());
        let row = self
            .write(move |c| {
                c.execute(
                    "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![user_id, name, hash, unix_ms(now)],
                )?;
                let id = c.last_insert_rowid();
                token_by_id(c, user_id, id)
            })
            .await?;
        Ok((row, token))
    }

    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, user_id, name, created_at, last_used_at FROM api_tokens
                 WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], token_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Revokes one of the user's tokens.
    pub async fn revoke_api_token(&self, user_id: i64, id: i64) -> Result<()> {
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
                params![id, user_id],
            )?;
            if n == 0 {
                return Err(Error::NotFound {
                    what: "API token",
                    name: id.to_string(),
                });
            }
            Ok(())
        })
        .await
    }

    /// The user behind an API token, noting its use.
    pub async fn api_token_user(&self, token: &str, now: SystemTime) -> Result<Option<User>> {
        let hash = secret_hash(token.as_bytes());
        let found = self
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT u.id, u.username, u.role, u.created_at, t.id, t.last_used_at
                     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                    [&hash],
                    |r| {
                        Ok((
                            user_from_row(r)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                        ))
                    },
                )
                .optional()?)
            })
            .await?;
        let Some((user, token_id, last_used)) = found else {
            return Ok(None);
        };
        let now_ms = unix_ms(now);
        if last_used.is_none_or(|t| now_ms - t > 60_000) {
            self.write(move |c| {
                c.execute(
                    "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                    params![now_ms, token_id],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(Some(user))
    }
}

fn devices_of(conn: &Connection, user_id: Option<i64>) -> Result<Vec<Device>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d JOIN users u ON u.id = d.user_id
         WHERE ?1 IS NULL OR d.user_id = ?1 ORDER BY u.username, d.name"
    ))?;
    let rows = stmt.query_map([user_id], device_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn device_by_name(conn: &Connection, user_id: i64, name: &str) -> Result<Device> {
    conn.query_row(
        &format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d JOIN users u ON u.id = d.user_id
             WHERE d.user_id = ?1 AND d.name = ?2"
        ),
        params![user_id, name],
        device_from_row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "device",
        name: name.to_owned(),
    })
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        created_at: from_unix_ms(row.get(3)?),
        last_used_at: row.get::<_, Option<i64>>(4)?.map(from_unix_ms),
    })
}

fn token_by_id(conn: &Connection, user_id: i64, id: i64) -> Result<ApiToken> {
    conn.query_row(
        "SELECT id, user_id, name, created_at, last_used_at FROM api_tokens WHERE id = ?1 AND user_id = ?2",
        params![id, user_id],
        token_from_row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "API token",
        name: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Secret {
        Secret::new(s)
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("porchlight.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_password_change_ends_other_sessions_and_tokens_but_keeps_the_callers_session() {
        let (_dir, store) = open();
        let alice = store
            .create_user(
                "alice",
                Role::User,
                &pw("alice password 1"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let bob = store
            .create_user("bob", Role::User, &pw("bob password 1"), SystemTime::now())
            .await
            .unwrap();
        let now = SystemTime::now();
        let policy = SessionPolicy::default();
        let mine = store.create_session(alice.id, None, now).await.unwrap();
        let other = store.create_session(alice.id, None, now).await.unwrap();
        let bobs = store.create_session(bob.id, None, now).await.unwrap();
        let (_, token) = store
            .create_api_token(alice.id, "script", SystemTime::now())
            .await
            .unwrap();
        let (_, bob_token) = store
            .create_api_token(bob.id, "script", SystemTime::now())
            .await
            .unwrap();

        let change = store
            .change_password("alice", &pw("alice password 2"), Some(mine.expose()), now)
            .await
            .unwrap();
        assert_eq!(change.user.id, alice.id);
        assert_eq!((change.sessions_ended, change.tokens_revoked), (1, 1));
        let session = |t: Secret| {
            let store = store.clone();
            async move {
                store
                    .session_user(t.expose(), now, policy)
                    .await
                    .unwrap()
                    .map(|u| u.username)
            }
        };
        assert_eq!(session(mine.clone()).await.as_deref(), Some("alice"));
        assert_eq!(session(other).await, None);
        assert_eq!(session(bobs).await.as_deref(), Some("bob"));
        assert_eq!(
            store.api_token_user(token.expose(), now).await.unwrap(),
            None
        );
        assert!(
            store
                .api_token_user(bob_token.expose(), now)
                .await
                .unwrap()
                .is_some()
        );

        // An operator's change (no session to keep) ends them all.
        store
            .set_password("alice", &pw("alice password 3"), SystemTime::now())
            .await
            .unwrap();
        assert_eq!(session(mine).await, None);
    }

    #[tokio::test]
    async fn a_verified_login_is_remembered_until_the_password_changes() {
        let (_dir, store) = open();
        store
            .create_user(
                "ha",
                Role::HomeAssistant,
                &pw("ha password 1"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let now = SystemTime::now();
        let only = LoginCheckMode::RememberedOnly;
        let verify = LoginCheckMode::Verify(HashPriority::Normal);
        assert_eq!(
            store
                .check_login("ha", b"ha password 1", only, now)
                .await
                .unwrap(),
            LoginCheck::Wrong,
            "nothing is remembered before argon2 said yes"
        );
        assert!(!store.has_remembered_login("ha", now));
        assert!(matches!(
            store
                .check_login("ha", b"ha password 1", verify, now)
                .await
                .unwrap(),
            LoginCheck::Verified(_)
        ));
        assert!(store.has_remembered_login("ha", now));
        assert!(matches!(
            store.check_login("ha", b"ha password 1", only, now).await.unwrap(),
            LoginCheck::Remembered(u) if u.username == "ha"
        ));
        assert_eq!(
            store
                .check_login("ha", b"ha password 2", only, now)
                .await
                .unwrap(),
            LoginCheck::Wrong
        );
        let later = now + crate::REMEMBER_LOGIN_FOR;
        assert_eq!(
            store
                .check_login("ha", b"ha password 1", only, later)
                .await
                .unwrap(),
            LoginCheck::Wrong,
            "remembered for some hours only"
        );

        store
            .set_password("ha", &pw("ha password 2"), SystemTime::now())
            .await
            .unwrap();
        assert!(!store.has_remembered_login("ha", now));
        assert_eq!(
            store
                .check_login("ha", b"ha password 1", verify, now)
                .await
                .unwrap(),
            LoginCheck::Wrong
        );
        assert!(matches!(
            store
                .check_login("ha", b"ha password 2", verify, now)
                .await
                .unwrap(),
            LoginCheck::Verified(_)
        ));
    }

    #[tokio::test]
    async fn a_password_changed_by_another_process_invalidates_what_this_one_remembers() {
        let (dir, store) = open();
        store
            .create_user(
                "carol",
                Role::User,
                &pw("carol password 1"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let now = SystemTime::now();
        let verify = LoginCheckMode::Verify(HashPriority::Normal);
        store
            .check_login("carol", b"carol password 1", verify, now)
            .await
            .unwrap();
        // Another handle on the same file (as the CLI would be) writes a new hash directly.
        let phc = hash_password(&pw("carol password 2")).unwrap();
        let other = rusqlite::Connection::open(dir.path().join("porchlight.db")).unwrap();
        other
            .execute(
                "UPDATE users SET password_hash = ?1 WHERE username = 'carol'",
                [phc],
            )
            .unwrap();
        assert_eq!(
            store
                .check_login(
                    "carol",
                    b"carol password 1",
                    LoginCheckMode::RememberedOnly,
                    now
                )
                .await
                .unwrap(),
            LoginCheck::Wrong
        );
    }
}
