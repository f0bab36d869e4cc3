//! The JSON shapes of the API's account resources.
//!
//! The store's row types are not the API: they carry no serde derives, so a new column can
//! never leak into a response by accident, and a change of storage keeps the JSON stable.
//! Times are Unix milliseconds, as everywhere in the API.

use std::time::{SystemTime, UNIX_EPOCH};

use porchlight_domain::Role;
use porchlight_store::{ApiToken, AuditEntry, Device, User};
use serde::Serialize;

/// Unix milliseconds (times before 1970 clamp to 0).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds (our API's unit) to the first whole second at or after them (OwnTracks'
/// `tst` unit), so a window's bounds in ms select the same points as in seconds.
pub fn ceil_secs(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)
}

pub use porchlight_api::account::{
    ApiToken as ApiTokenView, AuditEntry as AuditEntryView, User as UserView,
};

/// A role as the API names it.
pub fn role_view(role: Role) -> porchlight_api::account::Role {
    match role {
        Role::Admin => porchlight_api::account::Role::Admin,
        Role::User => porchlight_api::account::Role::User,
        Role::HomeAssistant => porchlight_api::account::Role::HomeAssistant,
    }
}

/// An account, as listed to admins.
pub fn user_view(u: &User) -> UserView {
    UserView {
        id: u.id,
        username: u.username.clone(),
        role: role_view(u.role),
        created_at: unix_ms(u.created_at),
    }
}

/// An MQTT device of a user.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        DeviceView {
            id: d.id,
            user_id: d.user_id,
            username: d.username.clone(),
            name: d.name.clone(),
            created_at: unix_ms(d.created_at),
            last_seen_at: d.last_seen_at.map(unix_ms),
        }
    }
}

/// One of a user's API tokens (never the token).
pub fn token_view(t: &ApiToken) -> ApiTokenView {
    ApiTokenView {
        id: t.id,
        user_id: t.user_id,
        name: t.name.clone(),
        created_at: unix_ms(t.created_at),
        last_used_at: t.last_used_at.map(unix_ms),
    }
}

/// One audit row.
pub fn audit_view(e: AuditEntry) -> AuditEntryView {
    AuditEntryView {
        id: e.id,
        at: unix_ms(e.at),
        kind: e.kind.as_str().to_owned(),
        peer: e.peer,
        client_id: e.client_id,
        username: e.username,
        protocol: e.protocol,
        code: e.code,
        reason: e.reason,
        detail: e.detail,
    }
}

/// Maps a list of store rows to their views.
pub fn views<'a, T: 'a, V: From<&'a T>>(rows: &'a [T]) -> Vec<V> {
    rows.iter().map(V::from).collect()
}

/// The live feed's messages (`GET /ws/live`), one JSON object per WebSocket text message,
/// told apart by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LiveMessage {
    /// Sent once on connect: every visible device with its last location.
    Snapshot { devices: Vec<LiveDeviceView> },
    Location {
        #[serde(flatten)]
        device: LiveDeviceRef,
        #[serde(flatten)]
        location: LiveLocationView,
    },
    Transition {
        #[serde(flatten)]
        device: LiveDeviceRef,
        tst: i64,
        /// `enter` or `leave`.
        event: &'static str,
        desc: Option<String>,
        rid: Option<String>,
        wtst: Option<i64>,
        lat: Option<f64>,
        lon: Option<f64>,
        acc: Option<f64>,
    },
    Card {
        #[serde(flatten)]
        device: LiveDeviceRef,
        name: Option<String>,
        /// Base64 image, as the phone sent it.
        face: Option<String>,
    },
    /// The device went online (a location) or offline (its LWT).
    Status {
        #[serde(flatten)]
        device: LiveDeviceRef,
        online: bool,
    },
    /// This viewer fell behind and lost `missed` messages: reload (e.g. reconnect for a new
    /// snapshot, or fetch the history).
    Resync { missed: u64 },
}

/// Whose device a live message is about.
#[derive(Debug, Serialize)]
pub struct LiveDeviceRef {
    pub user: String,
    pub user_id: i64,
    pub device: String,
    pub device_id: i64,
}

/// A location's fields, with OwnTracks' names.
#[derive(Debug, Serialize)]
pub struct LiveLocationView {
    pub tst: i64,
    pub lat: f64,
    pub lon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vac: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vel: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cog: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// The trigger (`p`, `c`, `u`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
}

impl LiveLocationView {
    pub fn new(tst: i64, l: &porchlight_store::LocationFields) -> Self {
        LiveLocationView {
            tst,
            lat: l.lat,
            lon: l.lon,
            acc: l.acc,
            alt: l.alt,
            vac: l.vac,
            vel: l.vel,
            cog: l.cog,
            batt: l.batt,
            bs: l.bs,
            conn: l.conn.clone(),
            t: l.trigger.clone(),
            tid: l.tid.clone(),
        }
    }
}

/// One device in the live snapshot.
#[derive(Debug, Serialize)]
pub struct LiveDeviceView {
    #[serde(flatten)]
    pub device: LiveDeviceRef,
    pub online: bool,
    pub last_seen_at: i64,
    /// The newest location by `tst`, if any.
    pub location: Option<LiveLocationView>,
    /// The device's card (display name, base64 picture), if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardView>,
}

/// A card: what an OwnTracks phone shows for a person.
#[derive(Debug, Serialize)]
pub struct CardView {
    pub name: Option<String>,
    /// Base64 image, as the phone sent it.
    pub face: Option<String>,
}

impl From<&porchlight_store::LastLocation> for LiveDeviceView {
    fn from(l: &porchlight_store::LastLocation) -> Self {
        let d = &l.device;
        LiveDeviceView {
            device: LiveDeviceRef {
                user: d.username.clone(),
                user_id: d.user_id,
                device: d.name.clone(),
                device_id: d.id,
            },
            online: d.online,
            last_seen_at: unix_ms(d.last_seen_at),
            location: l
                .location
                .as_ref()
                .map(|s| LiveLocationView::new(s.tst, &s.fields)),
            card: l.card.as_ref().map(|c| CardView {
                name: c.name.clone(),
                face: c.face.clone(),
            }),
        }
    }
}

impl From<&crate::owntracks::LiveEvent> for LiveMessage {
    fn from(e: &crate::owntracks::LiveEvent) -> Self {
        use crate::owntracks::LiveKind;
        let device = LiveDeviceRef {
            user: e.username.clone(),
            user_id: e.user_id,
            device: e.device.clone(),
            device_id: e.device_id,
        };
        match &e.kind {
            LiveKind::Location { tst, fields } => LiveMessage::Location {
                device,
                location: LiveLocationView::new(*tst, fields),
            },
            LiveKind::Transition { tst, transition: t } => LiveMessage::Transition {
                device,
                tst: *tst,
                event: match t.event {
                    porchlight_store::TransitionEvent::Enter => "enter",
                    porchlight_store::TransitionEvent::Leave => "leave",
                },
                desc: t.description.clone(),
                rid: t.rid.clone(),
                wtst: t.wtst,
                lat: t.lat,
                lon: t.lon,
                acc: t.acc,
            },
            LiveKind::Card { card } => LiveMessage::Card {
                device,
                name: card.name.clone(),
                face: card.face.clone(),
            },
            LiveKind::Status { online } => LiveMessage::Status {
                device,
                online: *online,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ceil_secs;

    #[test]
    fn milliseconds_round_up_to_whole_seconds() {
        assert_eq!(ceil_secs(1_750_000_000_000), 1_750_000_000);
        assert_eq!(ceil_secs(1_750_000_000_001), 1_750_000_001);
        assert_eq!(ceil_secs(-1), 0);
        assert_eq!(ceil_secs(-1000), -1);
    }
}
