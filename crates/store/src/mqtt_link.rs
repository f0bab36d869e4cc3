//! The external-broker link's settings (migration 0008, ADR 0015): the domain's
//! [`LinkSettings`] as JSON and the password beside it. The password is kept in the clear (the
//! link must send it to the broker), read only by the link service, and never answered by the
//! API; a [`Secret`] so it cannot be logged by accident.

use std::time::SystemTime;

use porchlight_domain::mqtt_link::LinkSettings;
use porchlight_domain::secret::Secret;
use rusqlite::{OptionalExtension, params};

use crate::{Error, Result, Store, unix_ms};

/// What a settings write does to the stored password.
#[derive(Debug, Clone)]
pub enum LinkPassword {
    /// Keep the stored one (a `PUT` without `password`).
    Keep,
    /// Remove it.
    Clear,
    /// Replace it.
    Set(Secret),
}

/// The stored link settings and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    pub settings: LinkSettings,
    pub password: Option<Secret>,
}

impl Store {
    /// The link's settings ([`LinkSettings::default`] and no password until set).
    pub async fn mqtt_link(&self) -> Result<StoredLink> {
        self.read(|c| {
            let row: Option<(String, Option<String>)> = c
                .query_row(
                    "SELECT settings, password FROM mqtt_link_settings WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match row {
                None => Ok(StoredLink {
                    settings: LinkSettings::default(),
                    password: None,
                }),
                Some((text, password)) => Ok(StoredLink {
                    settings: serde_json::from_str(&text).map_err(|e| {
                        Error::BadInput(format!("stored MQTT link settings unreadable: {e}"))
                    })?,
                    password: password.map(Secret::new),
                }),
            }
        })
        .await
    }

    /// Replaces the link's settings (already validated by the caller) and changes the password
    /// as `password` says; answers what is now stored.
    pub async fn set_mqtt_link(
        &self,
        settings: &LinkSettings,
        password: LinkPassword,
        now: SystemTime,
    ) -> Result<StoredLink> {
        let text = serde_json::to_string(settings)
            .map_err(|e| Error::BadInput(format!("encoding MQTT link settings: {e}")))?;
        let settings = settings.clone();
        self.write(move |c| {
            let old: Option<Option<String>> = c
                .query_row(
                    "SELECT password FROM mqtt_link_settings WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let password = match password {
                LinkPassword::Keep => old.flatten(),
                LinkPassword::Clear => None,
                LinkPassword::Set(p) => Some(p.expose().to_owned()),
            };
            c.execute(
                "INSERT INTO mqtt_link_settings (id, settings, password, updated_at)
                 VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET settings = ?1, password = ?2, updated_at = ?3",
                params![text, password, unix_ms(now)],
            )?;
            Ok(StoredLink {
                settings,
                password: password.map(Secret::new),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_round_trip_and_the_password_is_kept_cleared_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let fresh = store.mqtt_link().await.unwrap();
        assert_eq!(fresh.settings, LinkSettings::default());
        assert_eq!(fresh.password, None);
        let settings = LinkSettings {
            enabled: true,
            host: "broker.lan".into(),
            username: Some("porch".into()),
            ..LinkSettings::default()
        };
        let now = SystemTime::now();
        store
            .set_mqtt_link(&settings, LinkPassword::Set(Secret::new("s3cret")), now)
            .await
            .unwrap();
        let other = LinkSettings {
            port: 8883,
            ..settings.clone()
        };
        store
            .set_mqtt_link(&other, LinkPassword::Keep, now)
            .await
            .unwrap();
        let stored = store.mqtt_link().await.unwrap();
        assert_eq!(stored.settings, other);
        assert_eq!(stored.password, Some(Secret::new("s3cret")));
        store
            .set_mqtt_link(&other, LinkPassword::Clear, now)
            .await
            .unwrap();
        assert_eq!(store.mqtt_link().await.unwrap().password, None);
    }
}
