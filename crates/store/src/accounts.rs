//! Users, their MQTT devices, web sessions and API tokens.

use std::time::SystemTime;

use porchlight_domain::Role;
use porchlight_domain::account::{validate_device_name, validate_password, validate_username};
use porchlight_domain::secret::Secret;
use porchlight_domain::session::{SessionCheck, SessionPolicy};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::hashing::{decoy_hash, hash_password, random_secret, secret_hash, verify_password};
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
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
        [username],
        user_from_row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "user",
        name: username.to_owned(),
    })
}

async fn hash_off_runtime(password: Secret) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::Hashing(e.to_string()))?
}

impl Store {
    /// Creates an account. The password is checked against the policy and hashed off the
    /// async runtime before the write.
    pub async fn create_user(&self, username: &str, role: Role, password: &Secret) -> Result<User> {
        validate_username(username)?;
        validate_password(password.expose())?;
        let phc = hash_off_runtime(password.clone()).await?;
        let username = username.to_owned();
        self.write(move |conn| {
            let now = unix_ms(SystemTime::now());
            let inserted = conn.execute(
                "INSERT INTO users (username, role, password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (username) DO NOTHING",
                params![username, role.as_str(), phc, now],
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

    /// Replaces a user's password and ends their web sessions.
    pub async fn set_password(&self, username: &str, password: &Secret) -> Result<()> {
        validate_password(password.expose())?;
        let phc = hash_off_runtime(password.clone()).await?;
        let username = username.to_owned();
        self.write(move |conn| {
            let user = find_user_in(conn, &username)?;
            conn.execute(
                "UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3",
                params![phc, unix_ms(SystemTime::now()), user.id],
            )?;
            conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
            Ok(())
        })
        .await
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
    }

    /// Checks a user name and password. Unknown users cost as much time as known ones.
    pub async fn verify_login(&self, username: &str, password: &[u8]) -> Result<Option<User>> {
        let username = username.to_owned();
        let row = self
            .read(move |c| {
                Ok(c.query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"),
                    [&username],
                    |r| Ok((user_from_row(r)?, r.get::<_, String>(4)?)),
                )
                .optional()?)
            })
            .await?;
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || match row {
            Some((user, phc)) => verify_password(&password, &phc).then_some(user),
            None => {
                let _ = verify_password(&password, decoy_hash());
                None
            }
        })
        .await
        .map_err(|e| Error::Hashing(e.to_string()))
        .map(Ok)?
    }

    /// Adds an MQTT device to a user and returns it with its key, which is shown once.
    pub async fn add_device(&self, username: &str, name: &str) -> Result<(Device, Secret)> {
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
                    params![user.id, name, hash, unix_ms(SystemTime::now())],
                )?;
                if inserted == 0 {
                    return Err(Error::AlreadyExists {
                        what: "device",
                        name: format!("{username}/{name}"),
                    });
                }
                device_by_name(conn, user.id, &name)
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
                .query_row(
                    &format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices d JOIN users u ON u.id = d.user_id
                         WHERE d.key_hash = ?1 AND u.username = ?2"
                    ),
                    params![hash, username],
                    device_from_row,
                )
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
            c.execute(
                "UPDATE devices SET last_seen_at = ?1 WHERE id = ?2",
                params![unix_ms(now), device_id],
            )?;
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

    /// Creates an API token for scripts; the token is returned once and stored hashed.
    pub async fn create_api_token(&self, user_id: i64, name: &str) -> Result<(ApiToken, Secret)> {
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
                    params![user_id, name, hash, unix_ms(SystemTime::now())],
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
