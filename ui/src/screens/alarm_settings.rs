//! Settings → Alarm (`/settings/alarm`, admins): the arm modes and their delays, the code
//! requirements, the sensors with their live value (refreshed on each alarm message of the live
//! feed) and the PIN codes of every user, with the duress flag.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::alarm::{
    AlarmSettings, Code, MODES, ModeSettings, NewCode, SENSOR_KINDS, Sensor, SensorSource,
};
use serde_json::Value;

use crate::api::{self, ApiError};
use crate::live;
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "Alarm settings";
    pub const MODES: &str = "Modes and delays";
    pub const MODES_FAILED: &str = "Couldn't load the alarm settings";
    pub const MODE: &str = "Mode";
    pub const ENABLED: &str = "Enabled";
    pub const EXIT: &str = "Exit delay (s)";
    pub const ENTRY: &str = "Entry delay (s)";
    pub const TRIGGER: &str = "Siren time (s)";
    pub const CODE_ARM: &str = "A code is needed to arm";
    pub const CODE_DISARM: &str = "A code is needed to disarm";
    pub const DISARM_AFTER: &str = "Disarm after the siren time (else re-arm)";
    pub const SAVE: &str = "Save settings";
    pub const SAVED: &str = "Settings saved.";

    pub const SENSORS: &str = "Sensors";
    pub const SENSORS_FAILED: &str = "Couldn't load the sensors";
    pub const NO_SENSORS: &str = "No sensors yet.";
    pub const OPEN: &str = "Open";
    pub const CLOSED: &str = "Closed";
    pub const UNKNOWN: &str = "Not heard yet";
    pub const REMOVE: &str = "Remove";
    pub const ADD_SENSOR: &str = "Add a sensor";
    pub const SENSOR_ID: &str = "Id (letters, digits, - _ .)";
    pub const SENSOR_NAME: &str = "Name";
    pub const SENSOR_KIND: &str = "Kind";
    pub const SENSOR_MODES: &str = "Watched when armed";
    pub const TOPIC: &str = "MQTT topic";
    pub const FIELD: &str = "JSON field (empty: the whole payload)";
    pub const ON: &str = "Value when open/active";
    pub const OFF: &str = "Value when closed/inactive";
    pub const ENTRY_DELAY: &str = "Opening it starts the entry delay";
    pub const ADD: &str = "Add";

    pub const CODES: &str = "PIN codes";
    pub const CODES_FAILED: &str = "Couldn't load the codes";
    pub const NO_CODES: &str = "No codes yet.";
    pub const ADD_CODE: &str = "Add a code";
    pub const CODE_USER: &str = "User (empty: you)";
    pub const CODE_LABEL: &str = "Label";
    pub const CODE_PIN: &str = "PIN (4–10 digits)";
    pub const MAY_ARM: &str = "May arm";
    pub const MAY_DISARM: &str = "May disarm";
    pub const DURESS: &str = "Duress code (disarms, and raises a silent alarm)";
    pub const DURESS_TAG: &str = "Duress";
    pub const DISABLED_TAG: &str = "Disabled";
    pub const ENABLE: &str = "Enable";
    pub const DISABLE: &str = "Disable";

    pub fn mode(mode: &str) -> &'static str {
        match mode {
            "home" => "Home",
            "away" => "Away",
            "night" => "Night",
            "vacation" => "Vacation",
            "custom_bypass" => "Custom bypass",
            _ => "Other",
        }
    }

    pub fn kind(kind: &str) -> &'static str {
        match kind {
            "door" => "Door",
            "window" => "Window",
            "motion" => "Motion",
            "tamper" => "Tamper",
            "fire" => "Fire",
            "smoke" => "Smoke",
            "water" => "Water",
            _ => "Other",
        }
    }

    pub fn rights(arm: bool, disarm: bool) -> &'static str {
        match (arm, disarm) {
            (true, true) => "Arms and disarms",
            (true, false) => "Arms only",
            (false, true) => "Disarms only",
            (false, false) => "Neither",
        }
    }
}

fn mode_of(settings: &AlarmSettings, mode: &str) -> ModeSettings {
    match mode {
        "home" => settings.home,
        "away" => settings.away,
        "night" => settings.night,
        "vacation" => settings.vacation,
        _ => settings.custom_bypass,
    }
}

fn mode_mut<'a>(settings: &'a mut AlarmSettings, mode: &str) -> &'a mut ModeSettings {
    match mode {
        "home" => &mut settings.home,
        "away" => &mut settings.away,
        "night" => &mut settings.night,
        "vacation" => &mut settings.vacation,
        _ => &mut settings.custom_bypass,
    }
}

/// A typed sensor value: `true`/`false` and numbers as JSON, anything else as text.
fn value_of(text: &str) -> Value {
    let text = text.trim();
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
    }
}

/// Shows a failure unless the session ended (the app handles that).
fn show(error: RwSignal<Option<String>>, failure: ApiError) {
    if failure != ApiError::SignedOut {
        error.set(Some(failure.to_string()));
    }
}

#[component]
pub fn AlarmSettingsPage() -> impl IntoView {
    let settings = Loader::new(|| api::get::<AlarmSettings>("/api/alarm/settings"));
    let sensors = Loader::new(|| api::get::<Vec<Sensor>>("/api/alarm/sensors"));
    let codes = Loader::new(|| api::get::<Vec<Code>>("/api/alarm/codes"));
    // Each alarm message (a sensor opened or closed among them) refreshes the live values.
    live::follow_alarm(Callback::new(move |_| sensors.reload()));

    view! {
        <section class="settings" aria-labelledby="screen-title">
            <h1 id="screen-title">{text::TITLE}</h1>
            <section class="card wide" aria-labelledby="modes-title">
                <h2 id="modes-title">{text::MODES}</h2>
                <Loaded loader=settings what=text::MODES_FAILED children=move |loaded| {
                    view! { <ModesForm initial=loaded /> }
                } />
            </section>
            <section class="card wide" aria-labelledby="sensors-title">
                <h2 id="sensors-title">{text::SENSORS}</h2>
                <Loaded loader=sensors what=text::SENSORS_FAILED children=move |_| view! {
                    <SensorList sensors=sensors />
                    <SensorForm sensors=sensors />
                } />
            </section>
            <section class="card wide" aria-labelledby="codes-title">
                <h2 id="codes-title">{text::CODES}</h2>
                <Loaded loader=codes what=text::CODES_FAILED children=move |_| view! {
                    <CodeList codes=codes />
                    <CodeForm codes=codes />
                } />
            </section>
        </section>
    }
}

#[component]
fn ModesForm(initial: AlarmSettings) -> impl IntoView {
    let form = RwSignal::new(initial);
    let message = RwSignal::new(None::<(bool, String)>);
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);

    let save = move |event: SubmitEvent| {
        event.prevent_default();
        if saving.get_untracked() {
            return;
        }
        saving.set(true);
        message.set(None);
        error.set(None);
        let body = form.get_untracked();
        spawn_local(async move {
            let outcome = api::put::<_, AlarmSettings>("/api/alarm/settings", &body).await;
            saving.set(false);
            match outcome {
                Ok(saved) => {
                    form.set(saved);
                    message.set(Some((true, text::SAVED.into())));
                }
                Err(failure) => show(error, failure),
            }
        });
    };

    let number = move |mode: &'static str,
                       id: String,
                       get: fn(&ModeSettings) -> u32,
                       set: fn(&mut ModeSettings, u32)| {
        view! {
            <input
                id=id
                type="number"
                min="0"
                inputmode="numeric"
                prop:value=move || form.with(|f| get(&mode_of(f, mode)).to_string())
                on:input=move |e| {
                    let value = event_target_value(&e).trim().parse::<u32>().unwrap_or(0);
                    form.update(|f| set(mode_mut(f, mode), value));
                }
            />
        }
    };
    let rows = MODES
        .into_iter()
        .map(|mode| {
            view! {
                <tr data-mode=mode>
                    <th scope="row">{text::mode(mode)}</th>
                    <td>
                        <input
                            type="checkbox"
                            id=format!("mode-{mode}-enabled")
                            aria-label=format!("{} {}", text::mode(mode), text::ENABLED)
                            prop:checked=move || form.with(|f| mode_of(f, mode).enabled)
                            on:change=move |e| {
                                let on = event_target_checked(&e);
                                form.update(|f| mode_mut(f, mode).enabled = on);
                            }
                        />
                    </td>
                    <td>
                        <label class="sr-only" for=format!("mode-{mode}-exit")>{format!("{} {}", text::mode(mode), text::EXIT)}</label>
                        {number(mode, format!("mode-{mode}-exit"), |m| m.exit_delay_secs, |m, v| m.exit_delay_secs = v)}
                    </td>
                    <td>
                        <label class="sr-only" for=format!("mode-{mode}-entry")>{format!("{} {}", text::mode(mode), text::ENTRY)}</label>
                        {number(mode, format!("mode-{mode}-entry"), |m| m.entry_delay_secs, |m, v| m.entry_delay_secs = v)}
                    </td>
                    <td>
                        <label class="sr-only" for=format!("mode-{mode}-trigger")>{format!("{} {}", text::mode(mode), text::TRIGGER)}</label>
                        {number(mode, format!("mode-{mode}-trigger"), |m| m.trigger_time_secs, |m, v| m.trigger_time_secs = v)}
                    </td>
                </tr>
            }
        })
        .collect_view();
    let flag = move |id: &'static str,
                     label: &'static str,
                     get: fn(&AlarmSettings) -> bool,
                     set: fn(&mut AlarmSettings, bool)| {
        view! {
            <div class="field check">
                <input
                    id=id
                    type="checkbox"
                    prop:checked=move || form.with(get)
                    on:change=move |e| {
                        let on = event_target_checked(&e);
                        form.update(|f| set(f, on));
                    }
                />
                <label for=id>{label}</label>
            </div>
        }
    };

    view! {
        <form on:submit=save>
            <div class="table-scroll">
                <table class="modes">
                    <thead>
                        <tr>
                            <th scope="col">{text::MODE}</th>
                            <th scope="col">{text::ENABLED}</th>
                            <th scope="col">{text::EXIT}</th>
                            <th scope="col">{text::ENTRY}</th>
                            <th scope="col">{text::TRIGGER}</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {flag("require-code-arm", text::CODE_ARM, |f| f.code_arm_required, |f, v| f.code_arm_required = v)}
            {flag("require-code-disarm", text::CODE_DISARM, |f| f.code_disarm_required, |f, v| f.code_disarm_required = v)}
            {flag("disarm-after", text::DISARM_AFTER, |f| f.disarm_after_trigger, |f, v| f.disarm_after_trigger = v)}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || message.get().map(|(_, m)| view! { <p class="notice ok" role="status">{m}</p> })}
            <button type="submit" class="primary narrow" disabled=move || saving.get()>{text::SAVE}</button>
        </form>
    }
}

#[component]
fn SensorList(sensors: Loader<Vec<Sensor>>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let remove = move |id: String| {
        spawn_local(async move {
            match api::delete(&format!("/api/alarm/sensors/{}", api::encode(&id))).await {
                Ok(()) => sensors.reload(),
                Err(failure) => show(error, failure),
            }
        });
    };
    view! {
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || {
            let list = sensors.value().unwrap_or_default();
            if list.is_empty() {
                return view! { <p class="muted">{text::NO_SENSORS}</p> }.into_any();
            }
            let rows = list
                .into_iter()
                .map(|s| {
                    let (state, class) = match s.active {
                        Some(true) => (text::OPEN, "value open"),
                        Some(false) => (text::CLOSED, "value closed"),
                        None => (text::UNKNOWN, "value unknown"),
                    };
                    let modes = s.modes.iter().map(|m| text::mode(m)).collect::<Vec<_>>().join(", ");
                    let id = s.id.clone();
                    view! {
                        <li class="sensor" data-sensor=s.id.clone()>
                            <span class="sensor-name">{s.name.clone()}</span>
                            <span class=class>{state}</span>
                            <span class="muted small">
                                {format!("{} · {} · {}", text::kind(&s.kind), s.source.topic, modes)}
                            </span>
                            <button
                                type="button"
                                class="secondary"
                                aria-label=format!("{} {}", text::REMOVE, s.name)
                                on:click=move |_| remove(id.clone())
                            >
                                {text::REMOVE}
                            </button>
                        </li>
                    }
                })
                .collect_view();
            view! { <ul class="item-list sensor-list">{rows}</ul> }.into_any()
        }}
    }
}

#[component]
fn SensorForm(sensors: Loader<Vec<Sensor>>) -> impl IntoView {
    let id = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let kind = RwSignal::new(String::from("door"));
    let modes = RwSignal::new(vec![String::from("away")]);
    let topic = RwSignal::new(String::new());
    let field = RwSignal::new(String::new());
    let on = RwSignal::new(String::from("open"));
    let off = RwSignal::new(String::from("closed"));
    let entry = RwSignal::new(true);
    let error = RwSignal::new(None::<String>);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        error.set(None);
        let sensor_id = id.get_untracked().trim().to_owned();
        let field_text = field.get_untracked().trim().to_owned();
        let body = Sensor {
            id: sensor_id.clone(),
            name: name.get_untracked().trim().to_owned(),
            kind: kind.get_untracked(),
            modes: modes.get_untracked(),
            use_entry_delay: entry.get_untracked(),
            allow_open_while_arming: false,
            source: SensorSource {
                kind: "mqtt".into(),
                topic: topic.get_untracked().trim().to_owned(),
                field: (!field_text.is_empty()).then_some(field_text),
                on: value_of(&on.get_untracked()),
                off: value_of(&off.get_untracked()),
            },
            active: None,
        };
        spawn_local(async move {
            let path = format!("/api/alarm/sensors/{}", api::encode(&sensor_id));
            match api::put::<_, Sensor>(&path, &body).await {
                Ok(_) => {
                    id.set(String::new());
                    name.set(String::new());
                    topic.set(String::new());
                    sensors.reload();
                }
                Err(failure) => show(error, failure),
            }
        });
    };
    let kinds = SENSOR_KINDS
        .into_iter()
        .map(|k| view! { <option value=k>{text::kind(k)}</option> })
        .collect_view();
    let mode_boxes = MODES
        .into_iter()
        .map(|m| {
            let box_id = format!("sensor-mode-{m}");
            view! {
                <span class="check">
                    <input
                        type="checkbox"
                        id=box_id.clone()
                        prop:checked=move || modes.with(|ms| ms.iter().any(|x| x == m))
                        on:change=move |e| {
                            let on = event_target_checked(&e);
                            modes.update(|ms| {
                                ms.retain(|x| x != m);
                                if on {
                                    ms.push(m.to_owned());
                                }
                            });
                        }
                    />
                    <label for=box_id>{text::mode(m)}</label>
                </span>
            }
        })
        .collect_view();

    view! {
        <form class="sub-form" on:submit=submit aria-labelledby="add-sensor-title">
            <h3 id="add-sensor-title">{text::ADD_SENSOR}</h3>
            <div class="row">
                <div class="field grow">
                    <label for="sensor-id">{text::SENSOR_ID}</label>
                    <input id="sensor-id" type="text" required autocapitalize="none" bind:value=id />
                </div>
                <div class="field grow">
                    <label for="sensor-name">{text::SENSOR_NAME}</label>
                    <input id="sensor-name" type="text" required bind:value=name />
                </div>
                <div class="field">
                    <label for="sensor-kind">{text::SENSOR_KIND}</label>
                    <select id="sensor-kind" on:change=move |e| kind.set(event_target_value(&e))>{kinds}</select>
                </div>
            </div>
            <fieldset class="modes-pick">
                <legend>{text::SENSOR_MODES}</legend>
                {mode_boxes}
            </fieldset>
            <div class="row">
                <div class="field grow">
                    <label for="sensor-topic">{text::TOPIC}</label>
                    <input id="sensor-topic" type="text" required autocapitalize="none" spellcheck="false" bind:value=topic />
                </div>
                <div class="field grow">
                    <label for="sensor-field">{text::FIELD}</label>
                    <input id="sensor-field" type="text" autocapitalize="none" spellcheck="false" bind:value=field />
                </div>
            </div>
            <div class="row">
                <div class="field grow">
                    <label for="sensor-on">{text::ON}</label>
                    <input id="sensor-on" type="text" required bind:value=on />
                </div>
                <div class="field grow">
                    <label for="sensor-off">{text::OFF}</label>
                    <input id="sensor-off" type="text" required bind:value=off />
                </div>
            </div>
            <div class="field check">
                <input id="sensor-entry" type="checkbox" bind:checked=entry />
                <label for="sensor-entry">{text::ENTRY_DELAY}</label>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <button type="submit" class="secondary">{text::ADD}</button>
        </form>
    }
}

#[component]
fn CodeList(codes: Loader<Vec<Code>>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let remove = move |id: i64| {
        spawn_local(async move {
            match api::delete(&format!("/api/alarm/codes/{id}")).await {
                Ok(()) => codes.reload(),
                Err(failure) => show(error, failure),
            }
        });
    };
    let toggle = move |id: i64, enabled: bool| {
        spawn_local(async move {
            let body = serde_json::json!({ "enabled": enabled });
            match api::patch::<_, Code>(&format!("/api/alarm/codes/{id}"), &body).await {
                Ok(_) => codes.reload(),
                Err(failure) => show(error, failure),
            }
        });
    };
    view! {
        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || {
            let list = codes.value().unwrap_or_default();
            if list.is_empty() {
                return view! { <p class="muted">{text::NO_CODES}</p> }.into_any();
            }
            let rows = list
                .into_iter()
                .map(|c| {
                    let (id, enabled) = (c.id, c.enabled);
                    let name = format!("{} ({})", c.label, c.user);
                    view! {
                        <li class="code" data-code=c.label.clone()>
                            <span class="code-name">{name.clone()}</span>
                            <span class="muted small">{text::rights(c.arm, c.disarm)}</span>
                            {c.duress.then(|| view! { <span class="tag duress">{text::DURESS_TAG}</span> })}
                            {(!c.enabled).then(|| view! { <span class="tag">{text::DISABLED_TAG}</span> })}
                            <span class="item-actions">
                                <button
                                    type="button"
                                    class="secondary"
                                    aria-label=format!("{} {name}", if enabled { text::DISABLE } else { text::ENABLE })
                                    on:click=move |_| toggle(id, !enabled)
                                >
                                    {if enabled { text::DISABLE } else { text::ENABLE }}
                                </button>
                                <button
                                    type="button"
                                    class="secondary"
                                    aria-label=format!("{} {name}", text::REMOVE)
                                    on:click=move |_| remove(id)
                                >
                                    {text::REMOVE}
                                </button>
                            </span>
                        </li>
                    }
                })
                .collect_view();
            view! { <ul class="item-list code-list">{rows}</ul> }.into_any()
        }}
    }
}

#[component]
fn CodeForm(codes: Loader<Vec<Code>>) -> impl IntoView {
    let user = RwSignal::new(String::new());
    let label = RwSignal::new(String::new());
    let pin = RwSignal::new(String::new());
    let arm = RwSignal::new(true);
    let disarm = RwSignal::new(true);
    let duress = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        error.set(None);
        let owner = user.get_untracked().trim().to_owned();
        let body = NewCode {
            label: label.get_untracked().trim().to_owned(),
            pin: pin.get_untracked().trim().to_owned(),
            arm: arm.get_untracked(),
            disarm: disarm.get_untracked(),
            duress: duress.get_untracked(),
            user: (!owner.is_empty()).then_some(owner),
        };
        spawn_local(async move {
            match api::post::<_, Code>("/api/alarm/codes", &body).await {
                Ok(_) => {
                    label.set(String::new());
                    pin.set(String::new());
                    duress.set(false);
                    codes.reload();
                }
                Err(failure) => show(error, failure),
            }
        });
    };

    view! {
        <form class="sub-form" on:submit=submit aria-labelledby="add-code-title">
            <h3 id="add-code-title">{text::ADD_CODE}</h3>
            <div class="row">
                <div class="field grow">
                    <label for="code-user">{text::CODE_USER}</label>
                    <input id="code-user" type="text" autocapitalize="none" bind:value=user />
                </div>
                <div class="field grow">
                    <label for="code-label">{text::CODE_LABEL}</label>
                    <input id="code-label" type="text" required bind:value=label />
                </div>
                <div class="field grow">
                    <label for="code-pin">{text::CODE_PIN}</label>
                    <input id="code-pin" type="password" inputmode="numeric" autocomplete="off" required bind:value=pin />
                </div>
            </div>
            <div class="field check">
                <input id="code-arm" type="checkbox" bind:checked=arm />
                <label for="code-arm">{text::MAY_ARM}</label>
            </div>
            <div class="field check">
                <input id="code-disarm" type="checkbox" bind:checked=disarm />
                <label for="code-disarm">{text::MAY_DISARM}</label>
            </div>
            <div class="field check">
                <input id="code-duress" type="checkbox" bind:checked=duress />
                <label for="code-duress">{text::DURESS}</label>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <button type="submit" class="secondary">{text::ADD}</button>
        </form>
    }
}
