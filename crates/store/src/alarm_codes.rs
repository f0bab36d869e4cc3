//! Alarm PIN codes: each user's codes with their permissions, duress flag, enabled flag and
//! validity window; the PIN itself only as an argon2id PHC string (the PIN profile, see
//! [`crate::hashing::hash_pin`]) and a 16-bit keyed tag (docs/adr/0013-alarm-pin-codes.md).
//!
//! Matching a PIN ([`Store::match_alarm_pin`]) reads the codes sharing the PIN's tag (about
//! one, however many codes exist) and runs argon2 only on those, under the PINs' own argon2
//! limit. A PIN is unique across all codes, enabled or not (so re-enabling a code can never
//! make two codes match one PIN); a duplicate is refused with [`Error::PinTaken`], which names
//! nobody. The rules of what a PIN, label or window may be are the domain's
//! ([`porchlight_domain::pin`]); what a matched code may do is the caller's to decide.

use std::time::SystemTime;

use porchlight_domain::pin::{check_label, check_pin, check_window};
use porchlight_domain::secret::Secret;
use rusqlite::{Connection, OptionalExtension, params};

use crate::hashing::{decoy_pin_hash, hash_pin, pin_tag, verify_pin, with_pin_slot};
use crate::{Error, Result, Store, from_unix_ms, unix_ms};

/// One stored code, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmCode {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub label: String,
    pub may_arm: bool,
    pub may_disarm: bool,
    /// Disarms like any code, and the alarm raises a silent duress event.
    pub duress: bool,
    pub enabled: bool,
    /// Valid from this time on (inclusive), if set.
    pub valid_from: Option<SystemTime>,
    /// Valid before this time (exclusive), if set.
    pub valid_until: Option<SystemTime>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A code to add. `Debug` shows the PIN masked.
#[derive(Debug, Clone)]
pub struct NewAlarmCode {
    pub label: String,
    pub pin: Secret,
    pub may_arm: bool,
    pub may_disarm: bool,
    pub duress: bool,
    pub enabled: bool,
    pub valid_from: Option<SystemTime>,
    pub valid_until: Option<SystemTime>,
}

/// Changes to a code; `None` leaves a field as it is (`Some(None)` clears a window side).
#[derive(Debug, Clone, Default)]
pub struct AlarmCodeChange {
    pub label: Option<String>,
    pub pin: Option<Secret>,
    pub may_arm: Option<bool>,
    pub may_disarm: Option<bool>,
    pub duress: Option<bool>,
    pub enabled: Option<bool>,
    pub valid_from: Option<Option<SystemTime>>,
    pub valid_until: Option<Option<SystemTime>>,
}

/// What [`Store::match_alarm_pin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinMatch {
    /// The code whose PIN it is (enabled or not, valid now or not: the caller decides).
    pub code: Option<AlarmCode>,
    /// Argon2 verifications this match ran (one per code sharing the tag, or one decoy).
    pub hashes_checked: u32,
}

const CODE_SELECT: &str = "SELECT c.id, c.user_id, u.username, c.label, c.may_arm, c.may_disarm,
            c.duress, c.enabled, c.valid_from, c.valid_until, c.created_at, c.updated_at,
            c.pin_hash
     FROM alarm_codes c JOIN users u ON u.id = c.user_id";

fn code_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AlarmCode, String)> {
    Ok((
        AlarmCode {
            id: r.get(0)?,
            user_id: r.get(1)?,
            username: r.get(2)?,
            label: r.get(3)?,
            may_arm: r.get(4)?,
            may_disarm: r.get(5)?,
            duress: r.get(6)?,
            enabled: r.get(7)?,
            valid_from: r.get::<_, Option<i64>>(8)?.map(from_unix_ms),
            valid_until: r.get::<_, Option<i64>>(9)?.map(from_unix_ms),
            created_at: from_unix_ms(r.get(10)?),
            updated_at: from_unix_ms(r.get(11)?),
        },
        r.get(12)?,
    ))
}

fn tag_key(conn: &Connection) -> Result<[u8; 32]> {
    let key: Vec<u8> = conn.query_row("SELECT key FROM alarm_code_key WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    key.try_into()
        .map_err(|_| Error::BadInput("the alarm code key is damaged".into()))
}

/// The codes (with their hashes) sharing `tag`, but `except`.
fn codes_with_tag(
    conn: &Connection,
    tag: i64,
    except: Option<i64>,
) -> Result<Vec<(AlarmCode, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{CODE_SELECT} WHERE c.tag = ?1 AND (?2 IS NULL OR c.id <> ?2) ORDER BY c.id"
    ))?;
    let rows = stmt.query_map(params![tag, except], code_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn code_in(conn: &Connection, id: i64) -> Result<AlarmCode> {
    conn.query_row(
        &format!("{CODE_SELECT} WHERE c.id = ?1"),
        [id],
        code_from_row,
    )
    .optional()?
    .map(|(code, _)| code)
    .ok_or_else(|| Error::NotFound {
        what: "alarm code",
        name: id.to_string(),
    })
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::BadInput(e.to_string())
}

/// A new PIN's hash and tag, once it is known to be unique: the codes sharing its tag at the
/// time of the check, which the write job compares with what it finds (a code added in
/// between makes it check again).
struct CheckedPin {
    hash: String,
    tag: i64,
    /// (id, hash) of the other codes that shared the tag when it was checked.
    seen: Vec<(i64, String)>,
}

/// How often a PIN change is re-checked when codes with its tag changed meanwhile.
const UNIQUE_RETRIES: usize = 3;

impl Store {
    /// Hashes `pin` and checks it against every other code sharing its tag (argon2 on each,
    /// outside the writer). [`Error::PinTaken`] if one holds this PIN.
    async fn check_new_pin(&self, pin: &Secret, except: Option<i64>) -> Result<CheckedPin> {
        check_pin(pin.expose()).map_err(bad)?;
        let p = pin.expose().to_owned();
        let (tag, others) = self
            .read(move |c| {
                let tag = pin_tag(&tag_key(c)?, &p);
                Ok((tag, codes_with_tag(c, tag, except)?))
            })
            .await?;
        let pin = pin.clone();
        with_pin_slot(move || {
            let seen: Vec<(i64, String)> = others.into_iter().map(|(c, h)| (c.id, h)).collect();
            if seen
                .iter()
                .any(|(_, h)| verify_pin(pin.expose().as_bytes(), h))
            {
                return Err(Error::PinTaken);
            }
            Ok(CheckedPin {
                hash: hash_pin(&pin)?,
                tag,
                seen,
            })
        })
        .await?
    }

    /// Adds a code for `user_id`. Refuses a bad PIN, label or window ([`Error::BadInput`]), a
    /// PIN another code holds ([`Error::PinTaken`]), an unknown user ([`Error::NotFound`]).
    pub async fn add_alarm_code(
        &self,
        user_id: i64,
        new: NewAlarmCode,
        now: SystemTime,
    ) -> Result<AlarmCode> {
        let label = check_label(&new.label).map_err(bad)?;
        check_window(new.valid_from, new.valid_until).map_err(bad)?;
        for _ in 0..UNIQUE_RETRIES {
            let checked = self.check_new_pin(&new.pin, None).await?;
            let label = label.clone();
            let new = new.clone();
            let outcome = self
                .write(move |c| {
                    if !same_tag_set(c, &checked, None)? {
                        return Ok(None);
                    }
                    let exists: bool = c.query_row(
                        "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
                        [user_id],
                        |r| r.get(0),
                    )?;
                    if !exists {
                        return Err(Error::NotFound {
                            what: "user",
                            name: user_id.to_string(),
                        });
                    }
                    c.execute(
                        "INSERT INTO alarm_codes (user_id, label, pin_hash, tag, may_arm,
                           may_disarm, duress, enabled, valid_from, valid_until, created_at,
                           updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                        params![
                            user_id,
                            label,
                            checked.hash,
                            checked.tag,
                            new.may_arm,
                            new.may_disarm,
                            new.duress,
                            new.enabled,
                            new.valid_from.map(unix_ms),
                            new.valid_until.map(unix_ms),
                            unix_ms(now)
                        ],
                    )?;
                    code_in(c, c.last_insert_rowid()).map(Some)
                })
                .await?;
            if let Some(code) = outcome {
                return Ok(code);
            }
        }
        Err(Error::Busy)
    }

    /// Changes a code; a new PIN is checked as in [`Store::add_alarm_code`].
    pub async fn update_alarm_code(
        &self,
        id: i64,
        change: AlarmCodeChange,
        now: SystemTime,
    ) -> Result<AlarmCode> {
        let label = change
            .label
            .as_deref()
            .map(check_label)
            .transpose()
            .map_err(bad)?;
        for _ in 0..UNIQUE_RETRIES {
            let checked = match &change.pin {
                Some(pin) => Some(self.check_new_pin(pin, Some(id)).await?),
                None => None,
            };
            let change = change.clone();
            let label = label.clone();
            let outcome = self
                .write(move |c| {
                    let old = code_in(c, id)?;
                    if let Some(checked) = &checked
                        && !same_tag_set(c, checked, Some(id))?
                    {
                        return Ok(None);
                    }
                    let valid_from = change.valid_from.unwrap_or(old.valid_from);
                    let valid_until = change.valid_until.unwrap_or(old.valid_until);
                    check_window(valid_from, valid_until).map_err(bad)?;
                    c.execute(
                        "UPDATE alarm_codes SET label = ?2, may_arm = ?3, may_disarm = ?4,
                           duress = ?5, enabled = ?6, valid_from = ?7, valid_until = ?8,
                           updated_at = ?9,
                           pin_hash = coalesce(?10, pin_hash), tag = coalesce(?11, tag)
                         WHERE id = ?1",
                        params![
                            id,
                            label.unwrap_or(old.label),
                            change.may_arm.unwrap_or(old.may_arm),
                            change.may_disarm.unwrap_or(old.may_disarm),
                            change.duress.unwrap_or(old.duress),
                            change.enabled.unwrap_or(old.enabled),
                            valid_from.map(unix_ms),
                            valid_until.map(unix_ms),
                            unix_ms(now),
                            checked.as_ref().map(|p| p.hash.clone()),
                            checked.as_ref().map(|p| p.tag),
                        ],
                    )?;
                    code_in(c, id).map(Some)
                })
                .await?;
            if let Some(code) = outcome {
                return Ok(code);
            }
        }
        Err(Error::Busy)
    }

    /// Removes a code; true if it existed.
    pub async fn remove_alarm_code(&self, id: i64) -> Result<bool> {
        self.write(move |c| Ok(c.execute("DELETE FROM alarm_codes WHERE id = ?1", [id])? > 0))
            .await
    }

    /// One code by id.
    pub async fn alarm_code(&self, id: i64) -> Result<Option<AlarmCode>> {
        self.read(move |c| match code_in(c, id) {
            Ok(code) => Ok(Some(code)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// The codes of `user_id` (every user's for `None`), by user name then id.
    pub async fn alarm_codes(&self, user_id: Option<i64>) -> Result<Vec<AlarmCode>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{CODE_SELECT} WHERE ?1 IS NULL OR c.user_id = ?1 ORDER BY u.username, c.id"
            ))?;
            let rows = stmt.query_map([user_id], code_from_row)?;
            Ok(rows
                .map(|r| r.map(|(code, _)| code))
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Finds the code whose PIN is `pin`: argon2 only on the codes sharing its tag (about one),
    /// or on a decoy when none does, so a wrong PIN costs what a right one does. A string that
    /// is not a PIN matches nothing and costs nothing. Runs under the PINs' own argon2 limit
    /// ([`Error::Busy`] when too many checks wait). Disabled and out-of-window codes are
    /// returned too: whether they count is the caller's rule.
    pub async fn match_alarm_pin(&self, pin: &str) -> Result<PinMatch> {
        if check_pin(pin).is_err() {
            return Ok(PinMatch {
                code: None,
                hashes_checked: 0,
            });
        }
        let p = pin.to_owned();
        let candidates = self
            .read(move |c| {
                let tag = pin_tag(&tag_key(c)?, &p);
                codes_with_tag(c, tag, None)
            })
            .await?;
        let pin = Secret::new(pin);
        with_pin_slot(move || {
            let mut hashes_checked = 0;
            if candidates.is_empty() {
                let _ = verify_pin(pin.expose().as_bytes(), decoy_pin_hash());
                hashes_checked += 1;
            }
            for (code, hash) in candidates {
                hashes_checked += 1;
                if verify_pin(pin.expose().as_bytes(), &hash) {
                    return PinMatch {
                        code: Some(code),
                        hashes_checked,
                    };
                }
            }
            PinMatch {
                code: None,
                hashes_checked,
            }
        })
        .await
    }
}

/// Whether the codes sharing the checked PIN's tag are still exactly those it was checked
/// against.
fn same_tag_set(conn: &Connection, checked: &CheckedPin, except: Option<i64>) -> Result<bool> {
    let now: Vec<(i64, String)> = codes_with_tag(conn, checked.tag, except)?
        .into_iter()
        .map(|(c, h)| (c.id, h))
        .collect();
    Ok(now == checked.seen)
}
