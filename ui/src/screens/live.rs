//! The live map: every device the signed-in user may see, at its last position, kept current
//! by the live feed (`GET /ws/live`) without reloading.
//!
//! On mount it listens to the tab's live feed ([`crate::live`], opened by the shell) and reads
//! the map's settings (`GET /api/ui/config`) and the devices (`GET /api/owntracks/devices`);
//! what the feed brings meanwhile is applied on top of that answer. A `snapshot` (after each
//! reconnect of the feed) replaces the devices, `location`/`card`/`status` update one.
//! The list beside the map (below it on a phone) picks a device; "Follow" keeps the map on it.
//!
//! It takes the [`Session`] and, from the shell, only the live feed it opened.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use leptos::html::Div;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::owntracks::{
    CardView, LiveDeviceRef, LiveDeviceView, LiveLocationView, LiveMessage, MapSettings,
};

use crate::api::{self, Session};
use crate::live::{self, Feed, LiveEvent};
use crate::map::{Group, LatLon, Map, Person};
use crate::screens::when;

/// Every text this screen shows.
mod text {
    pub const TITLE: &str = "Live map";
    pub const LOADING: &str = "Loading the map…";
    pub const LOAD_FAILED: &str = "Couldn't load the devices:";
    pub const MAP_FAILED: &str =
        "The map couldn't be drawn (its script did not load). Try reloading.";
    pub const RETRY: &str = "Retry";
    pub const FIT_ALL: &str = "Fit all";
    pub const FOLLOW: &str = "Follow";
    pub const LIST_LABEL: &str = "Devices";
    pub const NO_DEVICES: &str =
        "No devices yet. Add a phone under Devices; it appears here once it reports.";
    pub const NO_LOCATION: &str = "No location yet";
    pub const ONLINE: &str = "online";
    pub const OFFLINE: &str = "offline";
    pub const BATTERY: &str = "Battery";
    pub const FEED_LIVE: &str = "Live";
    pub const FEED_CONNECTING: &str = "Connecting…";
    pub const FEED_RECONNECTING: &str = "Connection lost. Reconnecting…";
    pub fn map_label(count: usize) -> String {
        format!("Map of {count} devices")
    }
}

/// How often the "3 min ago" ages are recomputed.
const AGE_TICK: Duration = Duration::from_secs(10);

/// What the page shows besides the map.
#[derive(Debug, Clone, PartialEq)]
enum Load {
    Loading,
    Ready,
    Failed(String),
}

#[component]
pub fn LivePage(
    /// The signed-in user (the feed shows what they may see).
    session: Session,
) -> impl IntoView {
    let _ = session;
    let load = RwSignal::new(Load::Loading);
    let settings = RwSignal::new(None::<MapSettings>);
    let devices = RwSignal::new(BTreeMap::<i64, LiveDeviceView>::new());
    let selected = RwSignal::new(None::<i64>);
    let follow = RwSignal::new(false);
    let feed = live::feed();
    let now = RwSignal::new(js_sys::Date::now());
    let map_failed = RwSignal::new(false);
    // Set once the map exists, so what draws on it runs again then.
    let map_ready = RwSignal::new(false);
    let map_ref = NodeRef::<Div>::new();
    let map = StoredValue::new_local(None::<(Map, Group)>);
    let people = StoredValue::new_local(HashMap::<i64, Person>::new());
    // The feed's messages that arrive while the devices load, applied on top of the answer.
    let pending = StoredValue::new_local(Some(Vec::<LiveMessage>::new()));
    live::listen(move |event| {
        let LiveEvent::Map(message) = event else {
            return;
        };
        let waiting = pending
            .try_update_value(|p| match p {
                Some(queue) => {
                    queue.push(message.clone());
                    true
                }
                None => false,
            })
            .unwrap_or(true);
        if !waiting {
            let now = js_sys::Date::now() as i64;
            devices.try_update(|all| apply(all, message.clone(), now));
        }
    });

    let fetch = move || {
        load.set(Load::Loading);
        spawn_local(async move {
            let answer = async {
                let config: MapSettings = api::get("/api/ui/config").await?;
                let list: Vec<LiveDeviceView> = api::get("/api/owntracks/devices").await?;
                Ok::<_, api::ApiError>((config, list))
            };
            match answer.await {
                Ok((config, list)) => {
                    let mut all: BTreeMap<i64, LiveDeviceView> =
                        list.into_iter().map(|d| (d.device.device_id, d)).collect();
                    let now = js_sys::Date::now() as i64;
                    for message in pending
                        .try_update_value(Option::take)
                        .flatten()
                        .unwrap_or_default()
                    {
                        apply(&mut all, message, now);
                    }
                    devices.try_set(all);
                    settings.try_set(Some(config));
                    load.try_set(Load::Ready);
                }
                Err(error) => {
                    load.try_set(Load::Failed(crate::screens::failure(
                        text::LOAD_FAILED,
                        &error,
                    )));
                }
            }
        });
    };
    fetch();

    if let Ok(tick) = set_interval_with_handle(
        move || {
            now.try_set(js_sys::Date::now());
        },
        AGE_TICK,
    ) {
        on_cleanup(move || tick.clear());
    }

    // The map, once its element and the settings are there.
    Effect::new(move |_| {
        let (Some(element), Some(config)) = (map_ref.get(), settings.get()) else {
            return;
        };
        if map.with_value(Option::is_some) {
            return;
        }
        match Map::new(&element, &config.tile_url, &config.tile_attribution) {
            Ok(created) => {
                let group = created.group();
                map.set_value(Some((created, group)));
                map_ready.set(true);
                let points = located(&devices.get_untracked());
                map.with_value(|m| {
                    if let Some((m, _)) = m {
                        m.fit(&points);
                    }
                });
            }
            Err(_) => map_failed.set(true),
        }
    });

    // Markers follow the devices.
    Effect::new(move |_| {
        let all = devices.get();
        map_ready.track();
        let follow_id = follow.get().then(|| selected.get_untracked()).flatten();
        map.with_value(|m| {
            let Some((m, group)) = m else { return };
            people.update_value(|people| {
                people.retain(|id, person| {
                    let keep = all.get(id).is_some_and(|d| d.location.is_some());
                    if !keep {
                        person.remove();
                    }
                    keep
                });
                for (id, d) in &all {
                    let Some(at) = d.location.as_ref().map(lat_lon) else {
                        continue;
                    };
                    let acc = d.location.as_ref().and_then(|l| l.acc);
                    let label = display_name(d);
                    let face = d.card.as_ref().and_then(|c| c.face.as_deref());
                    match people.get(id) {
                        Some(person) => {
                            person.moved(at, acc);
                            person.restyled(&label, face, d.online);
                        }
                        None => {
                            let person = group.person(at, &label, face, d.online);
                            person.moved(at, acc);
                            let id = *id;
                            person.on_click(move || {
                                selected.try_set(Some(id));
                            });
                            people.insert(id, person);
                        }
                    }
                    if follow_id == Some(*id) {
                        m.pan_to(at);
                    }
                }
            });
        });
    });

    let show = move |id: i64| {
        selected.set(Some(id));
        if let Some(at) = devices
            .with_untracked(|all| all.get(&id).and_then(|d| d.location.as_ref().map(lat_lon)))
        {
            map.with_value(|m| {
                if let Some((m, _)) = m {
                    m.show(at, 15.0);
                }
            });
        }
    };
    let fit_all = move |_| {
        follow.set(false);
        let points = located(&devices.get_untracked());
        map.with_value(|m| {
            if let Some((m, _)) = m {
                m.fit(&points);
            }
        });
    };

    let list = move || {
        let now = now.get();
        let items = devices.get();
        if items.is_empty() {
            return view! { <p class="muted">{text::NO_DEVICES}</p> }.into_any();
        }
        items
            .into_values()
            .map(|d| {
                let id = d.device.device_id;
                let name = display_name(&d);
                let who = format!("{}/{}", d.device.user, d.device.device);
                let key = who.clone();
                let state = if d.online {
                    text::ONLINE
                } else {
                    text::OFFLINE
                };
                let details = match &d.location {
                    Some(l) => {
                        let battery = l
                            .batt
                            .map(|b| format!(" · {} {b}%", text::BATTERY))
                            .unwrap_or_default();
                        format!(
                            "{} · {:.5}, {:.5}{battery}",
                            when::ago(now, l.tst.saturating_mul(1000) as f64),
                            l.lat,
                            l.lon
                        )
                    }
                    None => text::NO_LOCATION.to_owned(),
                };
                view! {
                    <li>
                        <button
                            type="button"
                            class="device-pick"
                            data-device=key
                            aria-pressed=move || (selected.get() == Some(id)).to_string()
                            on:click=move |_| show(id)
                        >
                            <span class="device-name">{name}</span>
                            <span class=format!("badge {state}")>{state}</span>
                            <span class="device-who">{who}</span>
                            <span class="device-details">{details}</span>
                        </button>
                    </li>
                }
            })
            .collect_view()
            .into_any()
    };

    view! {
        <section class="live" aria-labelledby="live-title">
            <div class="live-head">
                <h1 id="live-title">{text::TITLE}</h1>
                <p class="feed" role="status">
                    {move || match feed.get() {
                        Feed::Connecting => text::FEED_CONNECTING.to_owned(),
                        Feed::Live => text::FEED_LIVE.to_owned(),
                        Feed::Reconnecting => text::FEED_RECONNECTING.to_owned(),
                    }}
                </p>
                <div class="live-tools">
                    <button type="button" on:click=fit_all>{text::FIT_ALL}</button>
                    <label class="check">
                        <input
                            type="checkbox"
                            prop:checked=move || follow.get()
                            disabled=move || selected.get().is_none()
                            on:change=move |ev| follow.set(event_target_checked(&ev))
                        />
                        {text::FOLLOW}
                    </label>
                </div>
            </div>
            {move || match load.get() {
                Load::Loading => view! { <p class="muted" aria-busy="true">{text::LOADING}</p> }.into_any(),
                Load::Failed(message) => view! {
                    <div class="error" role="alert">
                        <p>{message}</p>
                        <button type="button" on:click=move |_| fetch()>{text::RETRY}</button>
                    </div>
                }
                .into_any(),
                Load::Ready => ().into_any(),
            }}
            <Show when=move || map_failed.get()>
                <p class="error" role="alert">{text::MAP_FAILED}</p>
            </Show>
            <div class="live-body">
                <div
                    class="map"
                    node_ref=map_ref
                    role="region"
                    aria-label=move || text::map_label(devices.with(BTreeMap::len))
                ></div>
                <ul class="device-list" aria-label=text::LIST_LABEL>{list}</ul>
            </div>
        </section>
    }
}

/// The name a device is shown by: its card's, else its own.
fn display_name(d: &LiveDeviceView) -> String {
    d.card
        .as_ref()
        .and_then(|c| c.name.clone())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| d.device.device.clone())
}

fn lat_lon(l: &LiveLocationView) -> LatLon {
    LatLon {
        lat: l.lat,
        lon: l.lon,
    }
}

fn located(devices: &BTreeMap<i64, LiveDeviceView>) -> Vec<LatLon> {
    devices
        .values()
        .filter_map(|d| d.location.as_ref().map(lat_lon))
        .collect()
}

/// Applies one live message to the devices shown.
fn apply(devices: &mut BTreeMap<i64, LiveDeviceView>, message: LiveMessage, now_ms: i64) {
    fn entry(devices: &mut BTreeMap<i64, LiveDeviceView>, r: LiveDeviceRef) -> &mut LiveDeviceView {
        devices
            .entry(r.device_id)
            .or_insert_with(|| LiveDeviceView {
                device: r,
                online: false,
                last_seen_at: 0,
                location: None,
                card: None,
            })
    }
    match message {
        LiveMessage::Snapshot { devices: all } => {
            *devices = all.into_iter().map(|d| (d.device.device_id, d)).collect();
        }
        LiveMessage::Location { device, location } => {
            let d = entry(devices, device);
            d.online = true;
            d.last_seen_at = now_ms;
            // Late points (older than what is shown) do not move the marker back.
            if d.location.as_ref().is_none_or(|l| l.tst <= location.tst) {
                d.location = Some(location);
            }
        }
        LiveMessage::Card { device, name, face } => {
            entry(devices, device).card = Some(CardView { name, face });
        }
        LiveMessage::Status { device, online } => entry(devices, device).online = online,
        LiveMessage::Transition { .. } | LiveMessage::Resync { .. } | LiveMessage::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_ref() -> LiveDeviceRef {
        LiveDeviceRef {
            user: "ann".into(),
            user_id: 1,
            device: "phone".into(),
            device_id: 7,
        }
    }

    fn at(tst: i64, lat: f64) -> LiveLocationView {
        serde_json::from_value(serde_json::json!({"tst": tst, "lat": lat, "lon": 1.0})).unwrap()
    }

    #[test]
    fn a_location_adds_or_moves_a_device_but_never_back_in_time() {
        let mut all = BTreeMap::new();
        apply(
            &mut all,
            LiveMessage::Location {
                device: device_ref(),
                location: at(10, 1.0),
            },
            5,
        );
        assert_eq!(all[&7].location.as_ref().map(|l| l.lat), Some(1.0));
        assert!(all[&7].online);
        apply(
            &mut all,
            LiveMessage::Location {
                device: device_ref(),
                location: at(5, 2.0),
            },
            6,
        );
        assert_eq!(all[&7].location.as_ref().map(|l| l.lat), Some(1.0));
        apply(
            &mut all,
            LiveMessage::Location {
                device: device_ref(),
                location: at(11, 3.0),
            },
            7,
        );
        assert_eq!(all[&7].location.as_ref().map(|l| l.lat), Some(3.0));
        apply(
            &mut all,
            LiveMessage::Status {
                device: device_ref(),
                online: false,
            },
            8,
        );
        assert!(!all[&7].online);
        apply(&mut all, LiveMessage::Snapshot { devices: vec![] }, 9);
        assert!(all.is_empty());
    }
}
