//! OwnTracks payload encryption keys: the passphrase each phone encrypts with, per user and
//! device name (as the Recorder's `keys` database, keyed `<user>-<device>`).
//!
//! Kept as the passphrase itself: decrypting needs it (a hash would not do). The database file
//! is owner-only (0600); callers show a key masked ([`Secret`]'s `Debug`, `masked()`), never
//! log it. Keyed by name rather than by `ot_devices.id`, so a key can be set before the phone's
//! first message creates the device (an encrypted first message is otherwise refused). See
//! docs/adr/0011-owntracks-keys.md.

use std::time::SystemTime;

use porchlight_domain::secret::Secret;
use rusqlite::{OptionalExtension, params};

use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// One device's encryption key. `Debug` shows the key masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnTracksKey {
    pub user_id: i64,
    pub username: String,
    /// The device name (the `<device>` topic level).
    pub device: String,
    pub passphrase: Secret,
    pub updated_at: SystemTime,
}

impl Store {
    /// Sets (or replaces) the encryption passphrase of `user_id`'s device `device`.
    pub async fn set_owntracks_key(
        &self,
        user_id: i64,
        device: &str,
        passphrase: &Secret,
        now: SystemTime,
    ) -> Result<()> {
        if device.is_empty() || passphrase.expose().is_empty() {
            return Err(Error::BadInput(
                "an encryption key needs a device name and a non-empty passphrase".into(),
            ));
        }
        let (device, passphrase) = (device.to_owned(), passphrase.expose().to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO ot_keys (user_id, device, passphrase, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, device) DO UPDATE SET
                   passphrase = excluded.passphrase, updated_at = excluded.updated_at",
                params![user_id, device, passphrase, unix_ms(now)],
            )?;
            Ok(())
        })
        .await
    }

    /// Removes a device's encryption key; true if there was one.
    pub async fn remove_owntracks_key(&self, user_id: i64, device: &str) -> Result<bool> {
        let device = device.to_owned();
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM ot_keys WHERE user_id = ?1 AND device = ?2",
                params![user_id, device],
            )? > 0)
        })
        .await
    }

    /// The encryption passphrase of `user_id`'s device `device`, if one is set.
    pub async fn owntracks_key(&self, user_id: i64, device: &str) -> Result<Option<Secret>> {
        let device = device.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT passphrase FROM ot_keys WHERE user_id = ?1 AND device = ?2",
                params![user_id, device],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(Secret::new))
        })
        .await
    }

    /// The keys of the given users (all for `None`), by user name and device name.
    pub async fn owntracks_keys(&self, users: Option<Vec<i64>>) -> Result<Vec<OwnTracksKey>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT k.user_id, u.username, k.device, k.passphrase, k.updated_at
                 FROM ot_keys k JOIN users u ON u.id = k.user_id
                 ORDER BY u.username, k.device",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OwnTracksKey {
                    user_id: r.get(0)?,
                    username: r.get(1)?,
                    device: r.get(2)?,
                    passphrase: Secret::new(r.get::<_, String>(3)?),
                    updated_at: from_unix_ms(r.get(4)?),
                })
            })?;
            let mut out = Vec::new();
            for key in rows {
                let key = key?;
                if users.as_ref().is_none_or(|u| u.contains(&key.user_id)) {
                    out.push(key);
                }
            }
            Ok(out)
        })
        .await
    }
}
