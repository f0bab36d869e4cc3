//! Each device's last location and card, kept retained in the broker from the store, so that
//! after a restart a new subscriber to `owntracks/#` still gets them at once, as from a
//! Recorder or a Mosquitto the phones published to with retain. Phones may publish without
//! retain (HTTP-mode phones never publish over MQTT at all); the store has every committed
//! point, so it is the source.
//!
//! Once per start, before the broker serves its first client (so no subscriber gets a message
//! twice and nothing published meanwhile can be overtaken): for each stored device, its newest
//! location's raw JSON (as the phone sent it) is retained on `owntracks/<user>/<device>` and
//! its card on `owntracks/<user>/<device>/info`, unless the broker already retains there
//! something at least as new: any card; a location with the same or a later `tst`, or a
//! payload we cannot read (encrypted, say), which is left alone rather than overwritten with
//! what may be older. The broker's ACL applies to these as to any retained message: a
//! subscriber gets only the devices it may read (its own, its friends').
//!
//! Not done: an empty retained payload (a phone or user clearing the retained location) is
//! indistinguishable from none, so the next start retains the stored location again.

use porchlight_broker::{Bus, Bytes};
use porchlight_domain::owntracks::{Body, Card, OwnTracksTopic, Parsed, TopicKind, parse_payload};
use porchlight_store::Store;

/// What [`retain_last_known`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Locations retained from the store.
    pub locations: usize,
    /// Cards retained from the store.
    pub cards: usize,
    /// Topics left as the broker had them (as new or newer, or unreadable).
    pub kept: usize,
}

/// Retains each stored device's last location and card where the broker holds nothing as
/// new (module header). Call before the broker serves. A device that fails is logged and
/// skipped; only the store's device list failing is an error.
pub async fn retain_last_known(
    store: &Store,
    bus: &dyn Bus,
) -> Result<Retained, porchlight_store::Error> {
    let mut done = Retained::default();
    for last in store.last_locations(None).await? {
        let device = &last.device;
        let topics = OwnTracksTopic::new(&device.username, &device.name, TopicKind::Device)
            .and_then(|t| {
                OwnTracksTopic::new(&device.username, &device.name, TopicKind::Info)
                    .map(|info| (t.to_string(), info.to_string()))
            });
        let Ok((location_topic, card_topic)) = topics else {
            // Stored names passed the same rules at ingest; nothing to do for a stray one.
            continue;
        };
        if let Some(location) = &last.location {
            match retain_location(store, bus, device.id, location.tst, &location_topic).await {
                Ok(true) => done.locations += 1,
                Ok(false) => done.kept += 1,
                Err(e) => {
                    tracing::warn!(topic = %location_topic, error = %e, "last location not retained");
                }
            }
        }
        match retain_card(store, bus, device.id, &card_topic).await {
            Ok(Some(true)) => done.cards += 1,
            Ok(Some(false)) => done.kept += 1,
            Ok(None) => {}
            Err(e) => tracing::warn!(topic = %card_topic, error = %e, "card not retained"),
        }
    }
    tracing::info!(
        locations = done.locations,
        cards = done.cards,
        kept = done.kept,
        "last OwnTracks locations and cards retained from the store"
    );
    Ok(done)
}

/// Retains the stored location `tst` of `device_id` on `topic` unless the broker's retained
/// message there is as new or unreadable. `Ok(false)`: kept the broker's.
async fn retain_location(
    store: &Store,
    bus: &dyn Bus,
    device_id: i64,
    tst: i64,
    topic: &str,
) -> Result<bool, String> {
    let current = bus.retained(topic).await.map_err(|e| e.to_string())?;
    if let Some(current) = current {
        let newer_in_broker = match parse_payload(&current, Some(TopicKind::Device)) {
            Ok(Parsed::Message(m)) => match m.body() {
                Body::Location(l) => l.tst >= tst,
                // An LWT or other device-topic message: the location is what a subscriber
                // wants to find there.
                _ => false,
            },
            Ok(Parsed::Empty) => false,
            // Encrypted (no key here) or unreadable: not ours to overwrite.
            Err(_) => true,
        };
        if newer_in_broker {
            return Ok(false);
        }
    }
    let Some(raw) = store
        .location_raw(device_id, tst)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    bus.publish(topic, Bytes::from(raw), 1, true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Retains the stored card of `device_id` on `topic` unless the broker has one there.
/// `Ok(None)`: no stored card.
pub(crate) async fn retain_card(
    store: &Store,
    bus: &dyn Bus,
    device_id: i64,
    topic: &str,
) -> Result<Option<bool>, String> {
    let Some(card) = store.card(device_id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if bus
        .retained(topic)
        .await
        .map_err(|e| e.to_string())?
        .is_some_and(|p| !p.is_empty())
    {
        return Ok(Some(false));
    }
    let payload = Card {
        name: card.name,
        face: card.face,
        tid: None,
    }
    .to_payload();
    bus.publish(topic, Bytes::from(payload), 1, true)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(true))
}
