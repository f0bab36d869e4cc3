//! Where a device was: a device picker, a date (local time), and a two-handle time slider
//! over 00:00–23:59 that narrows the window; the track as a line plus points coloured by
//! time or by speed (the phone's `vel`, on a fixed scale with a legend), the region
//! transitions as pins and the phone's regions as circles; the distance, time span and point
//! count; quick ranges (last hour, today, yesterday, last 7 days).
//!
//! The window is `[first day + start, last day + end + 1 min)`: the end handle's minute is
//! included whole. Large windows come thinned by the server (`max_points` of
//! `GET /api/owntracks/devices/{id}/track`). The selection lives in the URL's query string
//! (`device`, `date`, `days`, `from`, `to`, and `colour=speed` when points are coloured by
//! speed; kept with `history.replaceState`), so a view can be
//! bookmarked and opening it reproduces the view.
//!
//! The slider is two native `<input type="range">` laid over one track, so keyboard and screen
//! readers use them as they use any slider (each with its label and `aria-valuetext`).

use leptos::html::Div;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::owntracks::{
    LiveDeviceView, MapSettings, TrackView, TransitionEvent, TransitionView, WaypointView,
};

use crate::api::{self, Session};
use crate::map::{Group, LatLon, Map};

/// Every text this screen shows.
mod text {
    pub const TITLE: &str = "History";
    pub const LOADING: &str = "Loading…";
    pub const LOAD_FAILED: &str = "Couldn't load the devices:";
    pub const TRACK_FAILED: &str = "Couldn't load the track:";
    pub const RETRY: &str = "Retry";
    pub const DEVICE: &str = "Device";
    pub const DATE: &str = "Date";
    pub const FROM: &str = "From";
    pub const TO: &str = "To";
    pub const QUICK: &str = "Quick ranges";
    pub const LAST_HOUR: &str = "Last hour";
    pub const TODAY: &str = "Today";
    pub const YESTERDAY: &str = "Yesterday";
    pub const LAST_7_DAYS: &str = "Last 7 days";
    pub const NO_DEVICES: &str = "No devices yet: there is no history to show.";
    pub const POINTS: &str = "Points";
    pub const DISTANCE: &str = "Distance";
    pub const SPAN: &str = "Time span";
    pub const NO_POINTS: &str = "No points in this window.";
    pub const LEGEND: &str = "Points are coloured by time: blue is earlier, orange later. Pins mark region entries and exits.";
    pub const COLOUR: &str = "Colour";
    pub const BY_TIME: &str = "time";
    pub const BY_SPEED: &str = "speed";
    pub const SPEED_LEGEND: &str = "Points and line coloured by speed (km/h, as the phone reported it). Pins mark region entries and exits.";
    pub const NO_SPEED: &str = "no speed reported";
    pub const KMH: &str = "km/h";
    pub const FETCHING: &str = "Loading the track…";
    pub const ENTERED: &str = "Entered";
    pub const LEFT: &str = "Left";
    pub const REGION: &str = "region";
    pub const MAP_LABEL: &str = "Map of the track";
    pub const MAP_FAILED: &str =
        "The map couldn't be drawn (its script did not load). Try reloading.";
    pub fn thinned(max: usize) -> String {
        format!(
            "Thinned by the server to {max} points (turns and stops kept); narrow the window for every point."
        )
    }
    pub fn days_label(days: u32) -> String {
        format!("{days} days ending on this date")
    }
}

/// Points asked for at most (the server thins larger windows to this).
const MAX_POINTS: usize = 2000;
/// The last minute of a day on the slider.
const LAST_MINUTE: u32 = 24 * 60 - 1;
const MINUTE_MS: f64 = 60_000.0;

/// What is shown: a device, the last day of the window and how many days it spans, and the
/// minutes of the day the window starts (first day) and ends (last day, whole minute).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub device: Option<i64>,
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    pub days: u32,
    pub start: u32,
    pub end: u32,
    /// What the points' colour tells.
    pub colour: Colour,
}

/// What the points' colour tells: when they were taken, or how fast the phone went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colour {
    #[default]
    Time,
    Speed,
}

/// The speed scale's steps: from this many km/h (inclusive) up to the next, with its colour
/// (a colour-blind-safe sequence, dark to light; the legend names each in text too).
pub const SPEED_STEPS: [(f64, &str); 5] = [
    (0.0, "#3b0f70"),
    (30.0, "#2c6fbb"),
    (60.0, "#21918c"),
    (90.0, "#5ec962"),
    (120.0, "#fde725"),
];
/// Points without a speed.
pub const NO_SPEED_COLOUR: &str = "#9ca3af";

/// The colour of a speed on the fixed scale (grey without one).
pub fn speed_colour(vel: Option<f64>) -> &'static str {
    let Some(vel) = vel.filter(|v| v.is_finite()) else {
        return NO_SPEED_COLOUR;
    };
    SPEED_STEPS
        .iter()
        .rev()
        .find(|(from, _)| vel >= *from)
        .map_or(SPEED_STEPS[0].1, |(_, colour)| colour)
}

/// The legend's text for step `i` of [`SPEED_STEPS`] (`0–29 km/h`, …, `120+ km/h`).
fn speed_step_text(i: usize) -> String {
    let from = SPEED_STEPS.get(i).map_or(0.0, |s| s.0);
    match SPEED_STEPS.get(i + 1) {
        Some((next, _)) => format!("{from:.0}–{:.0} {}", next - 1.0, text::KMH),
        None => format!("{from:.0}+ {}", text::KMH),
    }
}

impl Selection {
    /// Today, all day, no device yet.
    fn today() -> Selection {
        Selection {
            device: None,
            date: local_date(js_sys::Date::now()),
            days: 1,
            start: 0,
            end: LAST_MINUTE,
            colour: Colour::Time,
        }
    }

    /// The selection a query string (`?device=7&date=2026-11-29&from=08:00&to=17:59`) names;
    /// what is missing or malformed keeps today's defaults.
    pub fn from_query(query: &str, defaults: Selection) -> Selection {
        let mut s = defaults;
        for (key, value) in query
            .trim_start_matches('?')
            .split('&')
            .filter_map(|kv| kv.split_once('='))
        {
            match key {
                "device" => s.device = value.parse().ok().or(s.device),
                "date" if parse_date(value).is_some() => s.date = value.to_owned(),
                "days" => {
                    s.days = value
                        .parse()
                        .ok()
                        .filter(|d| (1..=31).contains(d))
                        .unwrap_or(s.days)
                }
                "from" => s.start = parse_minute(value).unwrap_or(s.start),
                "to" => s.end = parse_minute(value).unwrap_or(s.end),
                "colour" if value == "speed" => s.colour = Colour::Speed,
                "colour" if value == "time" => s.colour = Colour::Time,
                _ => {}
            }
        }
        if s.days == 1 && s.start > s.end {
            s.start = s.end;
        }
        s
    }

    /// The query string that reproduces this selection.
    pub fn to_query(&self) -> String {
        let mut q = String::from("?view=history");
        if let Some(device) = self.device {
            q.push_str(&format!("&device={device}"));
        }
        q.push_str(&format!(
            "&date={}&days={}&from={}&to={}",
            self.date,
            self.days,
            clock(self.start),
            clock(self.end)
        ));
        if self.colour == Colour::Speed {
            q.push_str("&colour=speed");
        }
        q
    }

    /// The window in Unix milliseconds: `from` inclusive, `to` exclusive (the end minute whole).
    fn window(&self) -> Option<(f64, f64)> {
        let (y, m, d) = parse_date(&self.date)?;
        let first = local_ms(y, m, d - (self.days as i32 - 1), self.start);
        let last = local_ms(y, m, d, self.end) + MINUTE_MS;
        Some((first, last))
    }
}

/// Whether the page's URL names a history view (the shell opens this screen for it).
pub fn url_names_history() -> bool {
    current_query().contains("view=history")
}

fn current_query() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default()
}

/// `HH:MM` of a minute of the day.
pub fn clock(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn parse_minute(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':').or_else(|| text.split_once("%3A"))?;
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn parse_date(text: &str) -> Option<(i32, i32, i32)> {
    let mut parts = text.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m: i32 = parts.next()?.parse().ok()?;
    let d: i32 = parts.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

/// Unix ms of a local date (month 1–12; out-of-range days roll over) at a minute of the day.
fn local_ms(y: i32, m: i32, d: i32, minute: u32) -> f64 {
    let date = js_sys::Date::new_with_year_month_day_hr_min(
        y as u32,
        m - 1,
        d,
        (minute / 60) as i32,
        (minute % 60) as i32,
    );
    date.get_time()
}

/// The local date (`YYYY-MM-DD`) of a Unix ms time.
fn local_date(ms: f64) -> String {
    let d = js_sys::Date::new(&ms.into());
    format!(
        "{:04}-{:02}-{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date()
    )
}

/// The local minute of the day of a Unix ms time.
fn local_minute(ms: f64) -> u32 {
    let d = js_sys::Date::new(&ms.into());
    d.get_hours() * 60 + d.get_minutes()
}

/// `HH:MM` local of a Unix ms time.
fn local_clock(ms: f64) -> String {
    clock(local_minute(ms))
}

/// Great-circle distance in metres.
pub fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1, lat2, lon2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// The track's length along its points.
pub fn distance(points: &[(i64, f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| metres((w[0].1, w[0].2), (w[1].1, w[1].2)))
        .sum()
}

/// A distance in words (`850 m`, `12.3 km`).
pub fn distance_text(m: f64) -> String {
    if m < 1000.0 {
        format!("{} m", m.round() as i64)
    } else {
        format!("{:.1} km", m / 1000.0)
    }
}

/// A duration in words (`0 min`, `45 min`, `2 h 05 min`).
pub fn span_text(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

/// A colour from blue (`f` = 0, earliest) to orange (`f` = 1, latest).
fn time_colour(f: f64) -> String {
    let f = f.clamp(0.0, 1.0);
    let hue = 220.0 - f * 190.0;
    format!("hsl({hue:.0}, 85%, 45%)")
}

/// A track and what goes with it.
#[derive(Debug, Clone, PartialEq)]
struct Drawn {
    track: TrackView,
    transitions: Vec<TransitionView>,
    regions: Vec<WaypointView>,
}

#[derive(Debug, Clone, PartialEq)]
enum Load {
    Loading,
    Ready,
    Failed(String),
}

#[component]
pub fn HistoryPage(
    /// The signed-in user (the server shows only what they may see).
    session: Session,
) -> impl IntoView {
    let _ = session;
    let selection = RwSignal::new(Selection::from_query(&current_query(), Selection::today()));
    // The selection as last committed (not every drag step): the URL and the track follow it.
    let committed = RwSignal::new(selection.get_untracked());
    let load = RwSignal::new(Load::Loading);
    let settings = RwSignal::new(None::<MapSettings>);
    let devices = RwSignal::new(Vec::<LiveDeviceView>::new());
    let drawn = RwSignal::new(None::<Drawn>);
    let track_error = RwSignal::new(None::<String>);
    let fetching = RwSignal::new(false);
    let generation = StoredValue::new(0_u64);
    let map_ref = NodeRef::<Div>::new();
    let map = StoredValue::new_local(None::<(Map, Group)>);
    let map_failed = RwSignal::new(false);
    // Set once the map exists, so what draws on it runs again then.
    let map_ready = RwSignal::new(false);

    let fetch_devices = move || {
        load.set(Load::Loading);
        spawn_local(async move {
            let answer = async {
                let config: MapSettings = api::get("/api/ui/config").await?;
                let list: Vec<LiveDeviceView> = api::get("/api/owntracks/devices").await?;
                Ok::<_, api::ApiError>((config, list))
            };
            match answer.await {
                Ok((config, list)) => {
                    let first = list.first().map(|d| d.device.device_id);
                    let known = |id: i64| list.iter().any(|d| d.device.device_id == id);
                    selection.try_update(|s| {
                        if !s.device.is_some_and(known) {
                            s.device = first;
                        }
                    });
                    if let Some(s) = selection.try_get_untracked() {
                        committed.try_set(s);
                    }
                    devices.try_set(list);
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
    fetch_devices();

    // The track of the selection, fetched when it changes (the newest request wins).
    let fetch_track = move |s: Selection| {
        let (Some(device), Some((from, to))) = (s.device, s.window()) else {
            drawn.set(None);
            return;
        };
        let this = generation.get_value() + 1;
        generation.set_value(this);
        fetching.set(true);
        track_error.set(None);
        spawn_local(async move {
            let (from, to) = (from as i64, to as i64);
            let window = format!("from={from}&to={to}");
            let answer = async {
                let track: TrackView = api::get(&format!(
                    "/api/owntracks/devices/{device}/track?{window}&max_points={MAX_POINTS}"
                ))
                .await?;
                let transitions: Vec<TransitionView> = api::get(&format!(
                    "/api/owntracks/devices/{device}/transitions?{window}"
                ))
                .await?;
                let regions: Vec<WaypointView> =
                    api::get(&format!("/api/owntracks/devices/{device}/waypoints")).await?;
                Ok::<_, api::ApiError>(Drawn {
                    track,
                    transitions,
                    regions,
                })
            };
            let result = answer.await;
            if generation.try_get_value() != Some(this) {
                return; // a newer selection was asked for meanwhile
            }
            match result {
                Ok(d) => {
                    drawn.try_set(Some(d));
                }
                Err(error) => {
                    track_error.try_set(Some(crate::screens::failure(text::TRACK_FAILED, &error)));
                }
            }
            fetching.try_set(false);
        });
    };

    // The URL follows the committed selection, and the track is fetched for it (again only
    // when the device or the window changed, not for a new colouring).
    Effect::new(move |_| {
        let s = committed.get();
        if let Some(window) = web_sys::window()
            && let Ok(history) = window.history()
        {
            let _ = history.replace_state_with_url(
                &wasm_bindgen::JsValue::NULL,
                "",
                Some(&s.to_query()),
            );
        }
    });
    let wanted = Memo::new(move |_| {
        committed.with(|s| Selection {
            colour: Colour::Time,
            ..s.clone()
        })
    });
    Effect::new(move |_| {
        let s = wanted.get();
        if load.get() == Load::Ready {
            fetch_track(s);
        }
    });
    let colour = Memo::new(move |_| committed.with(|s| s.colour));
    let commit = move || committed.set(selection.get_untracked());
    // Leaving the screen takes its selection out of the URL (it belongs to this screen).
    on_cleanup(|| {
        if let Some(window) = web_sys::window()
            && let Ok(history) = window.history()
            && let Ok(path) = window.location().pathname()
        {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&path));
        }
    });

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
            }
            Err(_) => map_failed.set(true),
        }
    });

    // Draw the track.
    Effect::new(move |_| {
        let current = drawn.get();
        let colour = colour.get();
        map_ready.track();
        map.with_value(|m| {
            let Some((m, group)) = m else { return };
            group.clear();
            let Some(d) = current else { return };
            for r in &d.regions {
                group.area(
                    LatLon {
                        lat: r.lat,
                        lon: r.lon,
                    },
                    r.rad.unwrap_or(100) as f64,
                    "#7c3aed",
                );
            }
            let points: Vec<LatLon> = d
                .track
                .points
                .iter()
                .map(|p| LatLon { lat: p.1, lon: p.2 })
                .collect();
            let vel = |i: usize| d.track.vel.get(i).copied().flatten();
            match colour {
                Colour::Time => group.line(&points, "#1d4ed8"),
                Colour::Speed => {
                    // Runs of segments in one speed step (a segment takes the step of the
                    // point it ends at), one line each.
                    let step = |i: usize| speed_colour(vel(i));
                    let mut start = 0;
                    for end in 1..points.len() {
                        if end + 1 == points.len() || step(end + 1) != step(end) {
                            if let Some(run) = points.get(start..=end) {
                                group.line(run, step(end));
                            }
                            start = end;
                        }
                    }
                }
            }
            let (first, last) = match (d.track.points.first(), d.track.points.last()) {
                (Some(f), Some(l)) => (f.0 as f64, l.0 as f64),
                _ => (0.0, 0.0),
            };
            for (i, (p, at)) in d.track.points.iter().zip(&points).enumerate() {
                match colour {
                    Colour::Time => {
                        let f = if last > first {
                            (p.0 as f64 - first) / (last - first)
                        } else {
                            1.0
                        };
                        group.dot(*at, &time_colour(f), &local_clock(p.0 as f64));
                    }
                    Colour::Speed => {
                        let tip = match vel(i) {
                            Some(v) => {
                                format!("{} · {v:.0} {}", local_clock(p.0 as f64), text::KMH)
                            }
                            None => format!("{} · {}", local_clock(p.0 as f64), text::NO_SPEED),
                        };
                        group.outlined_dot(*at, speed_colour(vel(i)), "#1f2937", &tip);
                    }
                }
            }
            for t in &d.transitions {
                if let (Some(lat), Some(lon)) = (t.lat, t.lon) {
                    let verb = match t.event {
                        TransitionEvent::Enter => text::ENTERED,
                        TransitionEvent::Leave => text::LEFT,
                    };
                    let region = t.desc.clone().unwrap_or_else(|| text::REGION.to_owned());
                    let label = format!("{verb} {region} {}", local_clock(t.at as f64));
                    group.pin(LatLon { lat, lon }, &label, &label);
                }
            }
            m.fit(&points);
        });
    });

    let set_quick = move |quick: Quick| {
        let now = js_sys::Date::now();
        selection.update(|s| {
            let today = local_date(now);
            match quick {
                Quick::LastHour => {
                    let end = local_minute(now);
                    *s = Selection {
                        device: s.device,
                        date: today,
                        days: 1,
                        start: end.saturating_sub(60),
                        end,
                        colour: s.colour,
                    };
                }
                Quick::Today => {
                    *s = Selection {
                        device: s.device,
                        date: today,
                        days: 1,
                        start: 0,
                        end: LAST_MINUTE,
                        colour: s.colour,
                    }
                }
                Quick::Yesterday => {
                    let date = local_date(now - 24.0 * 3600.0 * 1000.0);
                    *s = Selection {
                        device: s.device,
                        date,
                        days: 1,
                        start: 0,
                        end: LAST_MINUTE,
                        colour: s.colour,
                    }
                }
                Quick::LastWeek => {
                    *s = Selection {
                        device: s.device,
                        date: today,
                        days: 7,
                        start: 0,
                        end: LAST_MINUTE,
                        colour: s.colour,
                    }
                }
            }
        });
        commit();
    };

    let stats = move || {
        let Some(d) = drawn.get() else {
            return ().into_any();
        };
        let points = &d.track.points;
        let span = match (points.first(), points.last()) {
            (Some(f), Some(l)) => span_text(l.0 - f.0),
            _ => span_text(0),
        };
        let thinned =
            (points.len() >= d.track.max_points).then(|| text::thinned(d.track.max_points));
        view! {
            <dl class="stats" aria-live="polite">
                <div><dt>{text::POINTS}</dt><dd data-stat="points">{points.len()}</dd></div>
                <div><dt>{text::DISTANCE}</dt><dd data-stat="distance">{distance_text(distance(points))}</dd></div>
                <div><dt>{text::SPAN}</dt><dd data-stat="span">{span}</dd></div>
            </dl>
            {points.is_empty().then(|| view! { <p class="muted">{text::NO_POINTS}</p> })}
            {thinned.map(|t| view! { <p class="muted">{t}</p> })}
        }
        .into_any()
    };

    let device_options = move || {
        devices
            .get()
            .into_iter()
            .map(|d| {
                let id = d.device.device_id;
                let name = match d.card.as_ref().and_then(|c| c.name.clone()) {
                    Some(card) => format!("{card} ({}/{})", d.device.user, d.device.device),
                    None => format!("{}/{}", d.device.user, d.device.device),
                };
                view! { <option value=id.to_string() selected=move || selection.with(|s| s.device == Some(id))>{name}</option> }
            })
            .collect_view()
    };

    // The highlighted span between the handles; the handles' centres travel between the
    // track's ends inset by half a handle (0.7rem, see maps.css).
    let fraction = |minute: u32| f64::from(minute) / f64::from(LAST_MINUTE);
    let range_left = move || {
        selection.with(|s| format!("calc(0.7rem + (100% - 1.4rem) * {:.4})", fraction(s.start)))
    };
    let range_width = move || {
        selection.with(|s| {
            format!(
                "calc((100% - 1.4rem) * {:.4})",
                fraction(s.end.saturating_sub(s.start))
            )
        })
    };

    view! {
        <section class="history" aria-labelledby="history-title">
            <div class="history-head">
                <h1 id="history-title">{text::TITLE}</h1>
            </div>
            {move || match load.get() {
                Load::Loading => view! { <p class="muted" aria-busy="true">{text::LOADING}</p> }.into_any(),
                Load::Failed(message) => view! {
                    <div class="error" role="alert">
                        <p>{message}</p>
                        <button type="button" on:click=move |_| fetch_devices()>{text::RETRY}</button>
                    </div>
                }
                .into_any(),
                Load::Ready if devices.with(Vec::is_empty) => view! { <p class="muted">{text::NO_DEVICES}</p> }.into_any(),
                Load::Ready => ().into_any(),
            }}
            <div class="history-controls">
                <div class="field">
                    <label for="history-device">{text::DEVICE}</label>
                    <select
                        id="history-device"
                        on:change=move |ev| {
                            let id = event_target_value(&ev).parse().ok();
                            selection.update(|s| s.device = id);
                            commit();
                        }
                    >
                        {device_options}
                    </select>
                </div>
                <div class="field">
                    <label for="history-date">{text::DATE}</label>
                    <input
                        id="history-date"
                        type="date"
                        prop:value=move || selection.with(|s| s.date.clone())
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            if parse_date(&value).is_some() {
                                selection.update(|s| {
                                    s.date = value;
                                    s.days = 1;
                                });
                                commit();
                            }
                        }
                    />
                </div>
                <div class="quick" role="group" aria-label=text::QUICK>
                    <button type="button" on:click=move |_| set_quick(Quick::LastHour)>{text::LAST_HOUR}</button>
                    <button type="button" on:click=move |_| set_quick(Quick::Today)>{text::TODAY}</button>
                    <button type="button" on:click=move |_| set_quick(Quick::Yesterday)>{text::YESTERDAY}</button>
                    <button type="button" on:click=move |_| set_quick(Quick::LastWeek)>{text::LAST_7_DAYS}</button>
                </div>
            </div>
            <Show when=move || selection.with(|s| s.days > 1)>
                <p class="muted">{move || text::days_label(selection.with(|s| s.days))}</p>
            </Show>
            <div class="span-labels">
                <label for="history-from">{text::FROM}" "<output data-label="from">{move || selection.with(|s| clock(s.start))}</output></label>
                <label for="history-to">{text::TO}" "<output data-label="to">{move || selection.with(|s| clock(s.end))}</output></label>
            </div>
            <div class="span-slider">
                <div class="track"></div>
                <div class="range" style:left=range_left style:width=range_width></div>
                <input
                    id="history-from"
                    type="range"
                    min="0"
                    max=LAST_MINUTE.to_string()
                    step="1"
                    prop:value=move || selection.with(|s| s.start.to_string())
                    aria-valuetext=move || selection.with(|s| clock(s.start))
                    on:input=move |ev| {
                        let v: u32 = event_target_value(&ev).parse().unwrap_or(0);
                        selection.update(|s| s.start = if s.days == 1 { v.min(s.end) } else { v });
                    }
                    on:change=move |_| commit()
                />
                <input
                    id="history-to"
                    type="range"
                    min="0"
                    max=LAST_MINUTE.to_string()
                    step="1"
                    prop:value=move || selection.with(|s| s.end.to_string())
                    aria-valuetext=move || selection.with(|s| clock(s.end))
                    on:input=move |ev| {
                        let v: u32 = event_target_value(&ev).parse().unwrap_or(LAST_MINUTE);
                        selection.update(|s| s.end = if s.days == 1 { v.max(s.start) } else { v });
                    }
                    on:change=move |_| commit()
                />
            </div>
            <div role="status" class="muted">
                {move || fetching.get().then_some(text::FETCHING)}
            </div>
            <Show when=move || track_error.with(Option::is_some)>
                <div class="error" role="alert">
                    <p>{move || track_error.get().unwrap_or_default()}</p>
                    <button type="button" on:click=move |_| fetch_track(committed.get_untracked())>{text::RETRY}</button>
                </div>
            </Show>
            <Show when=move || map_failed.get()>
                <p class="error" role="alert">{text::MAP_FAILED}</p>
            </Show>
            {stats}
            <fieldset class="colour-choice">
                <legend>{text::COLOUR}</legend>
                <label>
                    <input type="radio" name="history-colour" value="time"
                        prop:checked=move || selection.with(|s| s.colour == Colour::Time)
                        on:change=move |_| { selection.update(|s| s.colour = Colour::Time); commit(); } />
                    {text::BY_TIME}
                </label>
                <label>
                    <input type="radio" name="history-colour" value="speed"
                        prop:checked=move || selection.with(|s| s.colour == Colour::Speed)
                        on:change=move |_| { selection.update(|s| s.colour = Colour::Speed); commit(); } />
                    {text::BY_SPEED}
                </label>
            </fieldset>
            <div class="map" node_ref=map_ref role="region" aria-label=text::MAP_LABEL></div>
            {move || match colour.get() {
                Colour::Time => view! { <p class="legend">{text::LEGEND}</p> }.into_any(),
                Colour::Speed => {
                    let steps = SPEED_STEPS
                        .iter()
                        .enumerate()
                        .map(|(i, (_, colour))| view! {
                            <li data-speed-colour=*colour>
                                <span class="swatch" style:background-color=*colour aria-hidden="true"></span>
                                {speed_step_text(i)}
                            </li>
                        })
                        .collect_view();
                    view! {
                        <div class="legend speed-legend">
                            <p>{text::SPEED_LEGEND}</p>
                            <ul>
                                {steps}
                                <li data-speed-colour=NO_SPEED_COLOUR>
                                    <span class="swatch" style:background-color=NO_SPEED_COLOUR aria-hidden="true"></span>
                                    {text::NO_SPEED}
                                </li>
                            </ul>
                        </div>
                    }
                    .into_any()
                }
            }}
        </section>
    }
}

#[derive(Debug, Clone, Copy)]
enum Quick {
    LastHour,
    Today,
    Yesterday,
    LastWeek,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Selection {
        Selection {
            device: None,
            date: "2026-11-29".into(),
            days: 1,
            start: 0,
            end: LAST_MINUTE,
            colour: Colour::Time,
        }
    }

    #[test]
    fn a_query_round_trips() {
        let s = Selection {
            device: Some(7),
            date: "2026-11-20".into(),
            days: 1,
            start: 8 * 60 + 5,
            end: 17 * 60 + 59,
            colour: Colour::Time,
        };
        let q = s.to_query();
        assert_eq!(
            q,
            "?view=history&device=7&date=2026-11-20&days=1&from=08:05&to=17:59"
        );
        assert_eq!(Selection::from_query(&q, base()), s);
        let by_speed = Selection {
            colour: Colour::Speed,
            ..s
        };
        let q = by_speed.to_query();
        assert!(q.ends_with("&colour=speed"), "{q}");
        assert_eq!(Selection::from_query(&q, base()), by_speed);
    }

    #[test]
    fn speeds_fall_into_fixed_steps() {
        assert_eq!(speed_colour(None), NO_SPEED_COLOUR);
        assert_eq!(speed_colour(Some(f64::NAN)), NO_SPEED_COLOUR);
        assert_eq!(speed_colour(Some(-3.0)), SPEED_STEPS[0].1);
        assert_eq!(speed_colour(Some(0.0)), SPEED_STEPS[0].1);
        assert_eq!(speed_colour(Some(29.9)), SPEED_STEPS[0].1);
        assert_eq!(speed_colour(Some(30.0)), SPEED_STEPS[1].1);
        assert_eq!(speed_colour(Some(119.0)), SPEED_STEPS[3].1);
        assert_eq!(speed_colour(Some(250.0)), SPEED_STEPS[4].1);
        assert_eq!(speed_step_text(0), "0–29 km/h");
        assert_eq!(speed_step_text(4), "120+ km/h");
    }

    #[test]
    fn bad_query_values_keep_the_defaults() {
        let s = Selection::from_query("?device=x&date=2026-13-01&from=25:00&to=&days=99", base());
        assert_eq!(s, base());
        let s = Selection::from_query("?from=10:00&to=09:00", base());
        assert_eq!((s.start, s.end), (9 * 60, 9 * 60));
    }

    #[test]
    fn distances_and_spans_in_words() {
        let d = metres((52.52, 13.405), (48.8566, 2.3522));
        assert!((d - 877_000.0).abs() < 5_000.0, "{d}");
        assert_eq!(distance_text(850.4), "850 m");
        assert_eq!(distance_text(12_345.0), "12.3 km");
        assert_eq!(span_text(45 * 60_000), "45 min");
        assert_eq!(span_text(125 * 60_000), "2 h 05 min");
        assert_eq!(clock(0), "00:00");
        assert_eq!(clock(LAST_MINUTE), "23:59");
    }
}
