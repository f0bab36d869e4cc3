//! Deleting OwnTracks history: one point, and each user's retention (`ot_retention`, days of
//! history kept) with the purge that enforces it.
//!
//! Every delete here goes through `locations`/`location_raw` and `location_log` by key ranges and in
//! small jobs ([`crate::owntracks::delete_oldest`]), so a long purge never holds the writer
//! from logins and ingest. Kept apart from the write path (`owntracks.rs`): what deletes a
//! point lives here, next to the range deletes it shares its helper with.

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use crate::owntracks::delete_oldest;
use crate::{Error, Result, Store, unix_ms};

/// Longest retention accepted, in days (a bound so `days × 86,400` stays far from overflow;
/// 100 years is "forever" for a family's phones).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Deletes at most `batch` of one device's oldest transitions with `tst < cutoff`; returns
/// how many.
fn delete_old_transitions(
    c: &Connection,
    device_id: i64,
    cutoff: i64,
    batch: u32,
) -> Result<usize> {
    if batch == 0 {
        return Ok(0);
    }
    let last: Option<i64> = c
        .query_row(
            "SELECT tst FROM ot_transitions WHERE device_id = ?1 AND tst < ?2
             ORDER BY tst LIMIT 1 OFFSET ?3",
            params![device_id, cutoff, batch - 1],
            |r| r.get(0),
        )
        .optional()?;
    let end_inclusive = last.unwrap_or(cutoff.saturating_sub(1));
    Ok(c.execute(
        "DELETE FROM ot_transitions WHERE device_id = ?1 AND tst <= ?2",
        params![device_id, end_inclusive],
    )?)
}

impl Store {
    /// Deletes one stored location (and its raw JSON); true if it existed.
    pub async fn delete_location(&self, device_id: i64, tst: i64) -> Result<bool> {
        let Some(end) = tst.checked_add(1) else {
            return Ok(false);
        };
        Ok(self
            .write(move |c| delete_oldest(c, device_id, &(tst..end), 1))
            .await?
            > 0)
    }

    /// Sets how many days of `user_id`'s location history are kept (`None`: forever).
    pub async fn set_location_retention(
        &self,
        user_id: i64,
        days: Option<u32>,
        now: SystemTime,
    ) -> Result<()> {
        if let Some(d) = days
            && !(1..=MAX_RETENTION_DAYS).contains(&d)
        {
            return Err(Error::BadInput(format!(
                "location retention must be from 1 to {MAX_RETENTION_DAYS} days, or none"
            )));
        }
        self.write(move |c| {
            match days {
                Some(days) => c.execute(
                    "INSERT INTO ot_retention (user_id, days, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id) DO UPDATE SET
                       days = excluded.days, updated_at = excluded.updated_at",
                    params![user_id, days, unix_ms(now)],
                )?,
                None => c.execute("DELETE FROM ot_retention WHERE user_id = ?1", [user_id])?,
            };
            Ok(())
        })
        .await
    }

    /// How many days of `user_id`'s location history are kept (`None`: forever).
    pub async fn location_retention(&self, user_id: i64) -> Result<Option<u32>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT days FROM ot_retention WHERE user_id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Every user with a retention, as `(user_id, days)`.
    pub async fn location_retentions(&self) -> Result<Vec<(i64, u32)>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT user_id, days FROM ot_retention ORDER BY user_id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Deletes `user_id`'s locations (with their raw JSON) and transitions with `tst` before
    /// `cutoff`, device by device, at most `batch` rows per write job so other writes
    /// interleave; returns how many locations were deleted. Other users are not touched
    /// (compare [`Store::purge_locations_older_than`], for everyone).
    pub async fn purge_user_locations_older_than(
        &self,
        user_id: i64,
        cutoff: SystemTime,
        batch: u32,
    ) -> Result<u64> {
        if batch == 0 {
            return Err(Error::BadInput(
                "a purge batch must hold at least one row".into(),
            ));
        }
        let cutoff_tst = unix_ms(cutoff) / 1000;
        let devices: Vec<i64> = self
            .read(move |c| {
                let mut stmt =
                    c.prepare_cached("SELECT id FROM ot_devices WHERE user_id = ?1 ORDER BY id")?;
                let ids = stmt.query_map([user_id], |r| r.get(0))?;
                Ok(ids.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        let mut total = 0u64;
        for device_id in devices {
            loop {
                let (points, transitions) = self
                    .write(move |c| {
                        let points = delete_oldest(c, device_id, &(i64::MIN..cutoff_tst), batch)?;
                        let transitions = delete_old_transitions(c, device_id, cutoff_tst, batch)?;
                        Ok((points, transitions))
                    })
                    .await?;
                total += points as u64;
                if points < batch as usize && transitions < batch as usize {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }
}
