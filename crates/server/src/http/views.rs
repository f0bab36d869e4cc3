//! The JSON shapes of the API's account resources.
//!
//! The store's row types are not the API: they carry no serde derives, so a new column can
//! never leak into a response by accident, and a change of storage keeps the JSON stable.
//! Times are Unix milliseconds, as everywhere in the API.

use std::time::{SystemTime, UNIX_EPOCH};

use porchlight_domain::Role;
use porchlight_store::{ApiToken, AuditEntry, Device, User};

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

pub use porchlight_api::devices::DeviceView;

/// A device key as the API shows it.
pub fn device_view(d: &Device) -> DeviceView {
    DeviceView {
        id: d.id,
        user_id: d.user_id,
        username: d.username.clone(),
        name: d.name.clone(),
        created_at: unix_ms(d.created_at),
        last_seen_at: d.last_seen_at.map(unix_ms),
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
    let result = if e.succeeded() { "ok" } else { "failed" };
    AuditEntryView {
        result: result.to_owned(),
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

pub use porchlight_api::owntracks::{
    CardView, LiveDeviceRef, LiveDeviceView, LiveLocationView, LiveMessage,
};

/// A location's fields, with OwnTracks' names.
pub fn live_location(tst: i64, l: &porchlight_store::LocationFields) -> LiveLocationView {
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

/// A region event's direction on the wire.
pub fn transition_event(
    event: porchlight_store::TransitionEvent,
) -> porchlight_api::owntracks::TransitionEvent {
    match event {
        porchlight_store::TransitionEvent::Enter => {
            porchlight_api::owntracks::TransitionEvent::Enter
        }
        porchlight_store::TransitionEvent::Leave => {
            porchlight_api::owntracks::TransitionEvent::Leave
        }
    }
}

/// One device of the live snapshot (and of `GET /api/owntracks/devices`).
pub fn live_device(l: &porchlight_store::LastLocation) -> LiveDeviceView {
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
        location: l.location.as_ref().map(|s| live_location(s.tst, &s.fields)),
        card: l.card.as_ref().map(|c| CardView {
            name: c.name.clone(),
            face: c.face.clone(),
        }),
    }
}

/// The live feed's message for what the ingest service committed.
pub fn live_message(e: &crate::owntracks::LiveEvent) -> LiveMessage {
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
            location: live_location(*tst, fields),
        },
        LiveKind::Transition { tst, transition: t } => LiveMessage::Transition {
            device,
            tst: *tst,
            event: transition_event(t.event),
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
