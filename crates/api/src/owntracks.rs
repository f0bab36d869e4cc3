//! OwnTracks as the API shows it: the devices a user may see with their last location
//! (`GET /api/owntracks/devices`), the live feed (`GET /ws/live`), a device's track,
//! transitions and regions, friendships (who may see whose devices), and the map's settings
//! (`GET /api/ui/config`).
//!
//! Times are Unix milliseconds, except where OwnTracks' own names are kept (`tst`, `wtst`:
//! Unix seconds, as the phones send them).

use serde::{Deserialize, Serialize};

/// `GET /api/ui/config`: what the web UI's map draws its background with (`[ui]` in the
/// server's config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSettings {
    /// A Leaflet tile URL template (`{z}`, `{x}`, `{y}`, optionally `{s}`).
    pub tile_url: String,
    /// The tiles' attribution, shown in the map's corner (HTML, from the server's operator).
    pub tile_attribution: String,
}

/// The live feed's messages (`GET /ws/live`), one JSON object per WebSocket text message,
/// told apart by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LiveMessage {
    /// Sent once on connect (and again when the viewer's visible users change): every
    /// visible device with its last location. It replaces what the client shows.
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
        event: TransitionEvent,
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
    /// A message of another area on the same feed (e.g. `alarm`), which a reader of OwnTracks
    /// messages skips. Only ever read, never sent.
    #[serde(other)]
    Other,
}

/// A region event: the phone entered or left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionEvent {
    Enter,
    Leave,
}

/// Whose device a live message is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDeviceRef {
    pub user: String,
    pub user_id: i64,
    pub device: String,
    pub device_id: i64,
}

/// A location's fields, with OwnTracks' names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveLocationView {
    /// Unix seconds (the phone's time of the fix).
    pub tst: i64,
    pub lat: f64,
    pub lon: f64,
    /// Accuracy radius in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vac: Option<f64>,
    /// Speed in km/h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vel: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cog: Option<f64>,
    /// Battery percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batt: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// The trigger (`p`, `c`, `u`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
}

/// One device in the live snapshot and in `GET /api/owntracks/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveDeviceView {
    #[serde(flatten)]
    pub device: LiveDeviceRef,
    pub online: bool,
    /// Unix milliseconds.
    pub last_seen_at: i64,
    /// The newest location by `tst`, if any.
    pub location: Option<LiveLocationView>,
    /// The device's card (display name, base64 picture), if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardView>,
}

/// A card: what an OwnTracks phone shows for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    pub name: Option<String>,
    /// Base64 image, as the phone sent it.
    pub face: Option<String>,
}

/// `GET /api/owntracks/devices/{id}/track`: a thinned track, `points` as
/// `[unix_ms, lat, lon]`, oldest first; the window is `from` inclusive, `to` exclusive.
/// `vel[i]` is the speed of `points[i]` in km/h as the phone sent it (OwnTracks' `vel`), `null`
/// when it sent none (a separate list, so `points` keep their shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackView {
    pub device_id: i64,
    pub from: i64,
    pub to: i64,
    pub max_points: usize,
    pub points: Vec<(i64, f64, f64)>,
    #[serde(default)]
    pub vel: Vec<Option<f64>>,
}

/// `GET /api/owntracks/card` (the signed-in user's card, as their friends' phones show it;
/// both `null` when none is set) and the body of `PUT /api/owntracks/card`, where a field left
/// out keeps its value and `null` removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCard {
    pub name: Option<String>,
    /// A small square PNG or JPEG, base64.
    pub face: Option<String>,
}

/// `GET /api/owntracks/devices/{id}/transitions`: a region enter/leave event; `at` is the
/// phone's time in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionView {
    pub at: i64,
    pub event: TransitionEvent,
    pub desc: Option<String>,
    pub rid: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub acc: Option<f64>,
}

/// `GET /api/owntracks/devices/{id}/waypoints`: a region the phone monitors; `tst` (Unix
/// seconds) is its identity on the phone, as in OwnTracks' `setWaypoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaypointView {
    pub tst: i64,
    pub desc: String,
    pub lat: f64,
    pub lon: f64,
    /// Radius in metres.
    pub rad: Option<i64>,
    pub rid: Option<String>,
}

/// `GET /api/friends`: one grant, `owner`'s devices are shown to `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendshipView {
    pub owner: String,
    pub viewer: String,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_messages_read_what_the_server_sends() {
        let location: LiveMessage = serde_json::from_str(
            r#"{"type":"location","user":"ann","user_id":2,"device":"phone","device_id":7,
                "tst":1750000000,"lat":52.5,"lon":13.4,"acc":12.0,"batt":80}"#,
        )
        .unwrap();
        let LiveMessage::Location { device, location } = location else {
            panic!("not a location");
        };
        assert_eq!((device.device_id, location.batt), (7, Some(80)));
        assert_eq!(location.vel, None);
        let alarm: LiveMessage =
            serde_json::from_str(r#"{"type":"alarm","state":"disarmed"}"#).unwrap();
        assert_eq!(alarm, LiveMessage::Other);
    }

    #[test]
    fn a_track_is_arrays_of_time_lat_lon() {
        let track: TrackView = serde_json::from_str(
            r#"{"device_id":1,"from":0,"to":10,"max_points":1000,"points":[[1000,1.5,2.5]]}"#,
        )
        .unwrap();
        assert_eq!(track.points, vec![(1000, 1.5, 2.5)]);
        assert!(track.vel.is_empty());
        let track: TrackView = serde_json::from_str(
            r#"{"device_id":1,"from":0,"to":10,"max_points":1000,"points":[[1000,1.5,2.5],[2000,1.5,2.6]],
                "vel":[12.0,null]}"#,
        )
        .unwrap();
        assert_eq!(track.vel, vec![Some(12.0), None]);
    }
}
