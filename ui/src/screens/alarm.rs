//! The alarm panel (`/alarm`): a big state badge, the countdown of a running exit or entry
//! delay, a keypad for the PIN (buttons or typing), an arm button per enabled mode, disarm,
//! the open and bypassed sensors with "Arm anyway" when open sensors refuse arming, and the
//! event log with filters. The status follows the live feed (`/ws/live`), so a change made
//! elsewhere (Home Assistant, another phone, a sensor) shows at once.

use std::time::Duration;

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::alarm::{
    AlarmEvent, AlarmStatus, ArmRequest, DisarmRequest, EVENT_KINDS, Refusal, SensorRef,
};

use crate::api::{self, ApiError, Session};
use crate::live::{self, Feed};
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "Alarm";
    pub const LOAD_FAILED: &str = "Couldn't load the alarm";
    pub const EVENTS_FAILED: &str = "Couldn't load the event log";
    pub const LIVE: &str = "Live";
    pub const CONNECTING: &str = "Connecting…";
    pub const RECONNECTING: &str = "Reconnecting…";
    pub const PIN: &str = "PIN code";
    pub const CLEAR: &str = "Clear";
    pub const BACKSPACE: &str = "Delete last digit";
    pub const DISARM: &str = "Disarm";
    pub const WORKING: &str = "Sending…";
    pub const ARM_ANYWAY: &str = "Arm anyway";
    pub const OPEN_BLOCKING: &str = "These sensors are open:";
    pub const OPEN_SENSORS: &str = "Open sensors";
    pub const BYPASSED_SENSORS: &str = "Bypassed sensors";
    pub const NONE_OPEN: &str = "All sensors are closed.";
    pub const CODE_NEEDED_ARM: &str = "A code is needed to arm.";
    pub const CODE_NEEDED_DISARM: &str = "A code is needed to disarm.";
    pub const CHANGED_BY: &str = "Last changed by";
    pub const TRIPPED_BY: &str = "Tripped by";
    pub const EVENTS: &str = "Event log";
    pub const KIND: &str = "Kind";
    pub const ALL_KINDS: &str = "All kinds";
    pub const PERIOD: &str = "Period";
    pub const NO_EVENTS: &str = "No events in this period.";
    pub const REFRESH: &str = "Refresh";

    pub fn state(state: &str) -> &'static str {
        match state {
            "disarmed" => "Disarmed",
            "arming" => "Arming",
            "armed_home" => "Armed home",
            "armed_away" => "Armed away",
            "armed_night" => "Armed night",
            "armed_vacation" => "Armed vacation",
            "armed_custom_bypass" => "Armed (custom bypass)",
            "pending" => "Entry delay",
            "triggered" => "Triggered",
            _ => "Unknown",
        }
    }

    pub fn arm(mode: &str) -> String {
        let name = match mode {
            "home" => "home",
            "away" => "away",
            "night" => "night",
            "vacation" => "vacation",
            "custom_bypass" => "custom bypass",
            other => other,
        };
        format!("Arm {name}")
    }

    pub fn countdown(state: &str, secs: u64) -> String {
        match state {
            "arming" => format!("Exit delay: {secs} s left"),
            _ => format!("Entry delay: {secs} s left — disarm now"),
        }
    }

    pub fn kind(kind: &str) -> &'static str {
        match kind {
            "transition" => "State change",
            "code_accepted" => "Code accepted",
            "code_refused" => "Code refused",
            "command_refused" => "Command refused",
            "sensor_tripped" => "Sensor tripped",
            "bypassed" => "Sensor bypassed",
            "duress" => "Duress code",
            _ => "Event",
        }
    }

    /// The periods of the event log's filter: (label, milliseconds back; 0 = all).
    pub const PERIODS: [(&str, f64); 4] = [
        ("Last hour", 3_600_000.0),
        ("Last 24 hours", 86_400_000.0),
        ("Last 7 days", 604_800_000.0),
        ("Everything", 0.0),
    ];
}

/// The CSS class of the badge for a state (its colour).
fn badge_class(state: &str) -> &'static str {
    match state {
        "disarmed" => "badge disarmed",
        "arming" | "pending" => "badge delay",
        "triggered" => "badge triggered",
        _ => "badge armed",
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[component]
pub fn AlarmPage(session: Session) -> impl IntoView {
    let _ = session;
    let status = Loader::new(|| api::get::<AlarmStatus>("/api/alarm"));
    let feed = live::feed();
    let kind = RwSignal::new(String::new());
    let period = RwSignal::new(1_usize);
    let events = Loader::new(move || {
        let kind = kind.get_untracked();
        let back = text::PERIODS
            .get(period.get_untracked())
            .map_or(0.0, |p| p.1);
        async move {
            let mut path = String::from("/api/alarm/events?limit=200");
            if back > 0.0 {
                path.push_str(&format!("&from={}", (now_ms() - back).max(0.0) as u64));
            }
            if !kind.is_empty() {
                path.push_str(&format!("&kind={}", api::encode(&kind)));
            }
            api::get::<Vec<AlarmEvent>>(&path).await
        }
    });
    Effect::new(move |first: Option<()>| {
        kind.track();
        period.track();
        if first.is_some() {
            events.reload();
        }
    });
    live::follow_alarm(Callback::new(move |next: AlarmStatus| {
        status.set(next);
        events.reload();
    }));

    let feed_text = move || match feed.get() {
        Feed::Live => text::LIVE,
        Feed::Connecting => text::CONNECTING,
        Feed::Reconnecting => text::RECONNECTING,
    };

    view! {
        <section class="alarm" aria-labelledby="screen-title">
            <div class="screen-head">
                <h1 id="screen-title">{text::TITLE}</h1>
                <span
                    class=move || if feed.get() == Feed::Live { "feed live" } else { "feed" }
                    role="status"
                >
                    {feed_text}
                </span>
            </div>
            <Loaded loader=status what=text::LOAD_FAILED children=move |_| view! { <Panel status=status events=events /> } />
            <EventLog events=events kind=kind period=period />
        </section>
    }
}

/// The badge, keypad, buttons and sensors, on a loaded status.
#[component]
fn Panel(status: Loader<AlarmStatus>, events: Loader<Vec<AlarmEvent>>) -> impl IntoView {
    let code = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    // Open sensors named by the last refusal, and the mode it was for ("Arm anyway").
    let blocked = RwSignal::new(None::<(String, Vec<SensorRef>)>);
    let current = move || status.value();

    // A tick for the countdown, while a delay runs.
    let now = RwSignal::new(now_ms());
    if let Ok(handle) =
        set_interval_with_handle(move || now.set(now_ms()), Duration::from_millis(250))
    {
        on_cleanup(move || handle.clear());
    }
    let countdown = move || {
        let s = current()?;
        let ends = s.delay_ends_at? as f64;
        let left = ((ends - now.get()) / 1000.0).ceil().max(0.0) as u64;
        // Never more than the server counted when it sent the status (clocks differ a bit).
        let left = s.delay_remaining_secs.map_or(left, |r| left.min(r));
        Some(text::countdown(&s.state, left))
    };

    let send = move |arm: Option<(String, bool)>| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        let pin = code.get_untracked();
        let pin = (!pin.is_empty()).then_some(pin);
        spawn_local(async move {
            let outcome = match &arm {
                Some((mode, force)) => {
                    let body = ArmRequest {
                        mode: mode.clone(),
                        code: pin,
                        force: *force,
                    };
                    api::post::<_, AlarmStatus>("/api/alarm/arm", &body).await
                }
                None => {
                    api::post::<_, AlarmStatus>("/api/alarm/disarm", &DisarmRequest { code: pin })
                        .await
                }
            };
            busy.set(false);
            match outcome {
                Ok(next) => {
                    code.set(String::new());
                    blocked.set(None);
                    status.set(next);
                    events.reload();
                }
                Err(failure) => {
                    let refusal = failure.body_as::<Refusal>();
                    match refusal {
                        Some(refusal) => {
                            if refusal.reason == "open_sensors"
                                && let Some((mode, _)) = &arm
                            {
                                blocked.set(Some((mode.clone(), refusal.open_sensors.clone())));
                            } else {
                                blocked.set(None);
                            }
                            if refusal.reason != "open_sensors" {
                                code.set(String::new());
                            }
                            error.set(Some(refusal.error));
                            status.set(refusal.status);
                        }
                        None if failure == ApiError::SignedOut => {}
                        None => error.set(Some(failure.to_string())),
                    }
                    events.reload();
                }
            }
        });
    };

    let press = move |digit: char| {
        code.update(|c| {
            if c.len() < 16 {
                c.push(digit);
            }
        })
    };
    let keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9']
        .into_iter()
        .map(|d| {
            view! {
                <button type="button" class="key" on:click=move |_| press(d)>
                    {d.to_string()}
                </button>
            }
        })
        .collect_view();

    let arm_buttons = move || {
        let s = current()?;
        if s.state != "disarmed" {
            return None;
        }
        Some(
            s.enabled_modes
                .into_iter()
                .map(|mode| {
                    let label = text::arm(&mode);
                    let m = mode.clone();
                    view! {
                        <button
                            type="button"
                            class="arm"
                            disabled=move || busy.get()
                            on:click=move |_| send(Some((m.clone(), false)))
                        >
                            {label}
                        </button>
                    }
                })
                .collect_view(),
        )
    };

    let on_submit = move |event: SubmitEvent| {
        // Enter in the PIN field: disarm when armed; else arm the first enabled mode.
        event.prevent_default();
        let Some(s) = current() else { return };
        if s.state == "disarmed" {
            if let Some(mode) = s.enabled_modes.first() {
                send(Some((mode.clone(), false)));
            }
        } else {
            send(None);
        }
    };

    let sensor_list = |sensors: Vec<SensorRef>| {
        sensors
            .into_iter()
            .map(|s| view! { <li>{s.name}</li> })
            .collect_view()
    };

    view! {
        <div class="alarm-grid">
            <div class="alarm-state">
                <p class=move || current().map_or("badge", |s| badge_class(&s.state)) role="status" aria-live="polite" data-state=move || current().map(|s| s.state)>
                    {move || current().map(|s| text::state(&s.state))}
                </p>
                {move || countdown().map(|c| view! { <p class="countdown" aria-live="off">{c}</p> })}
                {move || {
                    let s = current()?;
                    let by = s.changed_by?;
                    Some(view! { <p class="muted small">{text::CHANGED_BY} " " {by}</p> })
                }}
                {move || {
                    let s = current()?;
                    let by = s.tripped_by?;
                    Some(view! { <p class="muted small">{text::TRIPPED_BY} " " {by.name}</p> })
                }}
                <div class="sensors">
                    <h2>{text::OPEN_SENSORS}</h2>
                    {move || {
                        let open = current().map(|s| s.open_sensors).unwrap_or_default();
                        if open.is_empty() {
                            view! { <p class="muted small">{text::NONE_OPEN}</p> }.into_any()
                        } else {
                            view! { <ul class="open-sensors">{sensor_list(open)}</ul> }.into_any()
                        }
                    }}
                    {move || {
                        let bypassed = current().map(|s| s.bypassed_sensors).unwrap_or_default();
                        (!bypassed.is_empty()).then(|| view! {
                            <h2>{text::BYPASSED_SENSORS}</h2>
                            <ul class="bypassed-sensors">{sensor_list(bypassed)}</ul>
                        })
                    }}
                </div>
            </div>
            <form class="keypad" on:submit=on_submit>
                <div class="field">
                    <label for="alarm-pin">{text::PIN}</label>
                    <input
                        id="alarm-pin"
                        class="pin"
                        type="password"
                        inputmode="numeric"
                        autocomplete="off"
                        maxlength="16"
                        bind:value=code
                    />
                </div>
                {move || {
                    let s = current()?;
                    let needed = if s.state == "disarmed" { s.code_arm_required } else { s.code_disarm_required };
                    let note = if s.state == "disarmed" { text::CODE_NEEDED_ARM } else { text::CODE_NEEDED_DISARM };
                    needed.then(|| view! { <p class="muted small">{note}</p> })
                }}
                <div class="keys">
                    {keys}
                    <button type="button" class="key" on:click=move |_| code.set(String::new())>
                        {text::CLEAR}
                    </button>
                    <button type="button" class="key" on:click=move |_| press('0')>"0"</button>
                    <button
                        type="button"
                        class="key"
                        aria-label=text::BACKSPACE
                        on:click=move |_| code.update(|c| { c.pop(); })
                    >
                        "⌫"
                    </button>
                </div>
                <Show when=move || error.with(Option::is_some)>
                    <div class="error" role="alert">
                        <p>{move || error.get().unwrap_or_default()}</p>
                        {move || blocked.get().map(|(mode, sensors)| view! {
                            <p>{text::OPEN_BLOCKING}</p>
                            <ul class="blocking-sensors">{sensor_list(sensors)}</ul>
                            <button
                                type="button"
                                class="secondary"
                                disabled=move || busy.get()
                                on:click=move |_| send(Some((mode.clone(), true)))
                            >
                                {text::ARM_ANYWAY}
                            </button>
                        })}
                    </div>
                </Show>
                <div class="actions">
                    {arm_buttons}
                    {move || {
                        let s = current()?;
                        (s.state != "disarmed").then(|| view! {
                            <button
                                type="button"
                                class="disarm"
                                disabled=move || busy.get()
                                on:click=move |_| send(None)
                            >
                                {move || if busy.get() { text::WORKING } else { text::DISARM }}
                            </button>
                        })
                    }}
                </div>
            </form>
        </div>
    }
}

/// The event log with its kind and period filters.
#[component]
fn EventLog(
    events: Loader<Vec<AlarmEvent>>,
    kind: RwSignal<String>,
    period: RwSignal<usize>,
) -> impl IntoView {
    let kinds = EVENT_KINDS
        .into_iter()
        .map(|k| view! { <option value=k>{text::kind(k)}</option> })
        .collect_view();
    let periods = text::PERIODS
        .into_iter()
        .enumerate()
        .map(|(i, (label, _))| view! { <option value=i.to_string() selected=i == 1>{label}</option> })
        .collect_view();
    view! {
        <section class="events" aria-labelledby="events-title">
            <h2 id="events-title">{text::EVENTS}</h2>
            <div class="filters">
                <div class="field">
                    <label for="events-kind">{text::KIND}</label>
                    <select id="events-kind" on:change=move |e| kind.set(event_target_value(&e))>
                        <option value="">{text::ALL_KINDS}</option>
                        {kinds}
                    </select>
                </div>
                <div class="field">
                    <label for="events-period">{text::PERIOD}</label>
                    <select
                        id="events-period"
                        on:change=move |e| period.set(event_target_value(&e).parse().unwrap_or(1))
                    >
                        {periods}
                    </select>
                </div>
                <button type="button" class="secondary" on:click=move |_| events.reload()>
                    {text::REFRESH}
                </button>
            </div>
            <Loaded loader=events what=text::EVENTS_FAILED children=move |_| move || {
                let list = events.value().unwrap_or_default();
                if list.is_empty() {
                    return view! { <p class="muted">{text::NO_EVENTS}</p> }.into_any();
                }
                let rows = list
                    .into_iter()
                    .map(|e| {
                        let when = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(e.at as f64))
                            .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED);
                        let what = match (&e.from, &e.to) {
                            (Some(from), Some(to)) => format!("{} → {}", text::state(from), text::state(to)),
                            _ => e.detail.clone().unwrap_or_default(),
                        };
                        let who = [e.who.clone(), e.via.clone(), e.sensor.clone()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" · ");
                        view! {
                            <li class="event" data-kind=e.kind.clone()>
                                <span class="event-kind">{text::kind(&e.kind)}</span>
                                <span class="event-what">{what}</span>
                                <span class="event-who muted">{who}</span>
                                <time class="muted">{String::from(when)}</time>
                            </li>
                        }
                    })
                    .collect_view();
                view! { <ul class="event-list">{rows}</ul> }.into_any()
            } />
        </section>
    }
}
