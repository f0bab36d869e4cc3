//! Devices: the signed-in user's phones (admins: everyone's) with online state, last seen and
//! battery; adding one (its credentials, `.otrc` file and QR code shown once); commands to a
//! phone (report location now, add a region, clear regions); friends (who may see my
//! devices); deleting a device, keeping or purging its history.
//!
//! A device key (`GET /api/devices`) and the OwnTracks device it reports as
//! (`GET /api/owntracks/devices`, by user and name) are shown as one row; commands need the
//! latter, so they appear once the phone has reported.
//!
//! Self-contained: it takes the [`Session`] and needs nothing else from the shell.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::devices::{AddedDevice, DeviceView, History, NewDevice, OnboardingMode};
use porchlight_api::owntracks::{FriendshipView, LiveDeviceView};
use serde_json::json;

use crate::api::{self, ApiError, Role, Session, encode};
use crate::screens::when;

/// Every text this screen shows.
mod text {
    pub const TITLE: &str = "Devices";
    pub const LOADING: &str = "Loading devices…";
    pub const LOAD_FAILED: &str = "Couldn't load the devices:";
    pub const RETRY: &str = "Retry";
    pub const NONE: &str = "No devices yet. Add your phone below.";
    pub const COL_DEVICE: &str = "Device";
    pub const COL_STATUS: &str = "Status";
    pub const COL_SEEN: &str = "Last seen";
    pub const COL_BATTERY: &str = "Battery";
    pub const COL_ACTIONS: &str = "Actions";
    pub const ONLINE: &str = "online";
    pub const OFFLINE: &str = "offline";
    pub const NEVER: &str = "never";
    pub const NOT_REPORTED: &str = "Commands appear once the phone has reported.";
    pub const REPORT_NOW: &str = "Report location now";
    pub const CLEAR_REGIONS: &str = "Clear regions";
    pub const ADD_REGION: &str = "Add region…";
    pub const DELETE: &str = "Delete…";
    pub const SENT: &str = "Sent to the phone.";
    pub const COMMAND_FAILED: &str = "The command failed:";
    pub const ADD_TITLE: &str = "Add a device";
    pub const NAME: &str = "Device name";
    pub const NAME_HINT: &str = "Letters, digits, - and _; e.g. pixel";
    pub const OWNER: &str = "Owner (user name; empty: you)";
    pub const MODE: &str = "Connection";
    pub const MODE_MQTT: &str = "MQTT (recommended)";
    pub const MODE_HTTP: &str = "HTTP";
    pub const ADD: &str = "Add device";
    pub const ADDING: &str = "Adding…";
    pub const ADD_FAILED: &str = "Couldn't add the device:";
    pub const ONCE_TITLE: &str = "Set up the phone now";
    pub const ONCE_NOTE: &str = "These credentials are shown once. Scan the QR code with the OwnTracks app, or download the .otrc file and open it on the phone.";
    pub const USERNAME: &str = "User name";
    pub const PASSWORD: &str = "Password";
    pub const QR_ALT: &str = "QR code with the OwnTracks configuration";
    pub const DOWNLOAD: &str = "Download .otrc";
    pub const OPEN_LINK: &str = "Open in OwnTracks (on the phone)";
    pub const DONE: &str = "Done, hide the credentials";
    pub const CA_TITLE: &str = "Trust Porchlight's certificate authority";
    pub const CA_NOTE: &str = "This phone connects over TLS with a certificate from Porchlight's own certificate authority (CA). Download the Porchlight CA certificate on the phone and install it as a trusted CA; OwnTracks uses the phone's trust store.";
    pub const CA_ANDROID: &str = "Android: Settings → Security → Encryption & credentials → Install a certificate → CA certificate.";
    pub const CA_IOS: &str = "iPhone: open the download, install the profile (Settings → General → VPN & Device Management), then turn it on in Settings → General → About → Certificate Trust Settings.";
    pub const CA_DOWNLOAD: &str = "Download the Porchlight CA certificate";
    pub const CA_PEM: &str = "PEM";
    pub const CA_DER: &str = "DER, .crt";
    pub const REGION_TITLE: &str = "Add a region to";
    pub const REGION_NAME: &str = "Region name";
    pub const LAT: &str = "Latitude";
    pub const LON: &str = "Longitude";
    pub const RADIUS: &str = "Radius (m)";
    pub const SEND_REGION: &str = "Send region";
    pub const CANCEL: &str = "Cancel";
    pub const REGION_INVALID: &str = "Give the region a name, a latitude (−90 to 90), a longitude (−180 to 180) and a radius of at least 1 m.";
    pub const DELETE_TITLE: &str = "Delete";
    pub const DELETE_NOTE: &str =
        "The phone can no longer connect. Its location history can be kept or deleted with it.";
    pub const DELETE_KEEP: &str = "Delete, keep history";
    pub const DELETE_PURGE: &str = "Delete with its history";
    pub const DELETE_FAILED: &str = "Couldn't delete the device:";
    pub const FRIENDS_TITLE: &str = "Friends";
    pub const FRIENDS_NOTE: &str = "People who may see where your devices are.";
    pub const FRIENDS_NONE: &str = "Nobody else sees your devices.";
    pub const SEES_ME: &str = "may see my devices";
    pub const I_SEE: &str = "I may see";
    pub const FRIEND_NAME: &str = "User name";
    pub const ALLOW: &str = "Allow";
    pub const REMOVE: &str = "Remove";
    pub const FRIEND_FAILED: &str = "Couldn't change friends:";
}

/// One row: a device key and, once it reported, its OwnTracks device.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    key: DeviceView,
    tracked: Option<LiveDeviceView>,
}

#[derive(Debug, Clone, PartialEq)]
enum Load {
    Loading,
    Ready,
    Failed(String),
}

/// What the panel under the list shows for one device.
#[derive(Debug, Clone, PartialEq)]
enum Panel {
    None,
    Region { tracked_id: i64, name: String },
    Delete { username: String, name: String },
}

#[component]
pub fn DevicesPage(
    /// The signed-in user: their devices and friends (admins also add for others).
    session: Session,
) -> impl IntoView {
    let me = session.username.clone();
    let is_admin = session.role == Role::Admin;
    let load = RwSignal::new(Load::Loading);
    let rows = RwSignal::new(Vec::<Row>::new());
    let friends = RwSignal::new(Vec::<FriendshipView>::new());
    let added = RwSignal::new(None::<AddedDevice>);
    let notice = RwSignal::new(None::<Result<String, String>>);
    let panel = RwSignal::new(Panel::None);
    let now = RwSignal::new(js_sys::Date::now());

    let reload = move || {
        spawn_local(async move {
            let answer = async {
                let keys: Vec<DeviceView> = api::get("/api/devices").await?;
                let tracked: Vec<LiveDeviceView> = api::get("/api/owntracks/devices").await?;
                let grants: Vec<FriendshipView> = api::get("/api/friends").await?;
                Ok::<_, ApiError>((keys, tracked, grants))
            };
            match answer.await {
                Ok((keys, tracked, grants)) => {
                    let list = keys
                        .into_iter()
                        .map(|key| {
                            let tracked = tracked
                                .iter()
                                .find(|t| {
                                    t.device.user == key.username && t.device.device == key.name
                                })
                                .cloned();
                            Row { key, tracked }
                        })
                        .collect();
                    rows.try_set(list);
                    friends.try_set(grants);
                    now.try_set(js_sys::Date::now());
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
    reload();

    let command = move |tracked_id: i64, body: serde_json::Value| {
        notice.set(None);
        spawn_local(async move {
            let result: Result<serde_json::Value, ApiError> = api::post(
                &format!("/api/owntracks/devices/{tracked_id}/commands"),
                &body,
            )
            .await;
            notice.try_set(Some(match result {
                Ok(_) => Ok(text::SENT.to_owned()),
                Err(error) => Err(crate::screens::failure(text::COMMAND_FAILED, &error)),
            }));
        });
    };

    // Adding a device.
    let new_name = RwSignal::new(String::new());
    let new_owner = RwSignal::new(String::new());
    let new_mode = RwSignal::new(OnboardingMode::Mqtt);
    let adding = RwSignal::new(false);
    let add_error = RwSignal::new(None::<String>);
    let add = move |event: SubmitEvent| {
        event.prevent_default();
        if adding.get_untracked() {
            return;
        }
        adding.set(true);
        add_error.set(None);
        let owner = new_owner.get_untracked().trim().to_owned();
        let body = NewDevice {
            name: new_name.get_untracked().trim().to_owned(),
            username: (!owner.is_empty()).then_some(owner),
            mode: Some(new_mode.get_untracked()),
            encryption: false,
        };
        spawn_local(async move {
            match api::post::<_, AddedDevice>("/api/devices", &body).await {
                Ok(device) => {
                    new_name.try_set(String::new());
                    added.try_set(Some(device));
                    reload();
                }
                Err(error) => {
                    add_error.try_set(Some(crate::screens::failure(text::ADD_FAILED, &error)));
                }
            }
            adding.try_set(false);
        });
    };

    // Friends.
    let friend_name = RwSignal::new(String::new());
    let friend_error = RwSignal::new(None::<String>);
    let change_friend = move |viewer: String, allow: bool| {
        friend_error.set(None);
        spawn_local(async move {
            let url = format!("/api/friends/{}", encode(&viewer));
            let result = if allow {
                api::put_empty(&url).await
            } else {
                api::delete(&url).await
            };
            match result {
                Ok(()) => {
                    if allow {
                        friend_name.try_set(String::new());
                    }
                    reload();
                }
                Err(error) => {
                    friend_error
                        .try_set(Some(crate::screens::failure(text::FRIEND_FAILED, &error)));
                }
            }
        });
    };

    let table = move || {
        let now = now.get();
        let list = rows.get();
        if list.is_empty() {
            return view! { <p class="muted">{text::NONE}</p> }.into_any();
        }
        let body = list
            .into_iter()
            .map(|row| {
                let who = format!("{}/{}", row.key.username, row.key.name);
                let online = row.tracked.as_ref().is_some_and(|t| t.online);
                let state = if online { text::ONLINE } else { text::OFFLINE };
                let seen = row
                    .tracked
                    .as_ref()
                    .map(|t| t.last_seen_at)
                    .or(row.key.last_seen_at)
                    .map(|at| when::ago(now, at as f64))
                    .unwrap_or_else(|| text::NEVER.to_owned());
                let battery = row
                    .tracked
                    .as_ref()
                    .and_then(|t| t.location.as_ref())
                    .and_then(|l| l.batt)
                    .map(|b| format!("{b}%"))
                    .unwrap_or_else(|| "–".to_owned());
                let (username, name) = (row.key.username.clone(), row.key.name.clone());
                let row_key = who.clone();
                let actions = match row.tracked.as_ref().map(|t| t.device.device_id) {
                    Some(id) => {
                        let region_name = who.clone();
                        view! {
                            <button type="button" on:click=move |_| command(id, json!({"action": "reportLocation"}))>{text::REPORT_NOW}</button>
                            <button type="button" on:click=move |_| panel.set(Panel::Region { tracked_id: id, name: region_name.clone() })>{text::ADD_REGION}</button>
                            <button type="button" on:click=move |_| command(id, json!({"action": "clearWaypoints"}))>{text::CLEAR_REGIONS}</button>
                        }
                        .into_any()
                    }
                    None => view! { <span class="muted">{text::NOT_REPORTED}</span> }.into_any(),
                };
                view! {
                    <tr data-device=row_key>
                        <td><strong>{who}</strong></td>
                        <td><span class=format!("badge {state}")>{state}</span></td>
                        <td>{seen}</td>
                        <td>{battery}</td>
                        <td>
                            <div class="device-row-actions">
                                {actions}
                                <button type="button" on:click=move |_| panel.set(Panel::Delete { username: username.clone(), name: name.clone() })>{text::DELETE}</button>
                            </div>
                        </td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table class="device-table">
                <thead>
                    <tr>
                        <th scope="col">{text::COL_DEVICE}</th>
                        <th scope="col">{text::COL_STATUS}</th>
                        <th scope="col">{text::COL_SEEN}</th>
                        <th scope="col">{text::COL_BATTERY}</th>
                        <th scope="col">{text::COL_ACTIONS}</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        }
        .into_any()
    };

    let once = move || {
        added.get().map(|device| {
            let otrc = format!(
                "data:application/json;charset=utf-8,{}",
                encode(&serde_json::to_string_pretty(&device.otrc).unwrap_or_default())
            );
            let file = format!("{}.otrc", device.device.name);
            let qr = device
                .qr_svg
                .as_ref()
                .map(|svg| format!("data:image/svg+xml;charset=utf-8,{}", encode(svg)));
            view! {
                <section class="panel once" aria-labelledby="once-title">
                    <h3 id="once-title">{text::ONCE_TITLE}</h3>
                    <p>{text::ONCE_NOTE}</p>
                    <dl class="stats">
                        <div><dt>{text::USERNAME}</dt><dd class="secret" data-secret="username">{device.mqtt_username.clone()}</dd></div>
                        <div><dt>{text::PASSWORD}</dt><dd class="secret" data-secret="password">{device.mqtt_password.clone()}</dd></div>
                    </dl>
                    {qr.map(|src| view! { <p class="qr"><img src=src alt=text::QR_ALT /></p> })}
                    <p class="device-row-actions">
                        <a href=otrc download=file>{text::DOWNLOAD}</a>
                        <a href=device.inline_url.clone()>{text::OPEN_LINK}</a>
                    </p>
                    {device.ca_url.clone().map(|url| view! { <CaTrust url /> })}
                    <button type="button" on:click=move |_| added.set(None)>{text::DONE}</button>
                </section>
            }
        })
    };

    let panel_view = move || {
        match panel.get() {
        Panel::None => ().into_any(),
        Panel::Region { tracked_id, name } => {
            view! { <RegionForm tracked_id name on_send=Callback::new(move |(id, body)| { command(id, body); panel.set(Panel::None); }) on_cancel=Callback::new(move |()| panel.set(Panel::None)) /> }.into_any()
        }
        Panel::Delete { username, name } => {
            let error = RwSignal::new(None::<String>);
            let remove = move |history: History| {
                let url = format!(
                    "/api/devices/{}/{}?history={}",
                    encode(&username),
                    encode(&name),
                    match history {
                        History::Keep => "keep",
                        History::Purge => "purge",
                    }
                );
                spawn_local(async move {
                    match api::delete(&url).await {
                        Ok(()) => {
                            panel.try_set(Panel::None);
                            reload();
                        }
                        Err(e) => {
                            error.try_set(Some(crate::screens::failure(text::DELETE_FAILED, &e)));
                        }
                    }
                });
            };
            let remove_keep = remove.clone();
            view! {
                <section class="panel" aria-labelledby="delete-title">
                    <h3 id="delete-title">{format!("{} {}", text::DELETE_TITLE, who_of(&panel))}</h3>
                    <p>{text::DELETE_NOTE}</p>
                    <Show when=move || error.with(Option::is_some)>
                        <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                    </Show>
                    <p class="device-row-actions">
                        <button type="button" on:click=move |_| remove_keep(History::Keep)>{text::DELETE_KEEP}</button>
                        <button type="button" on:click=move |_| remove(History::Purge)>{text::DELETE_PURGE}</button>
                        <button type="button" on:click=move |_| panel.set(Panel::None)>{text::CANCEL}</button>
                    </p>
                </section>
            }
            .into_any()
        }
    }
    };

    let me_for_friends = me.clone();
    let friend_list = move || {
        let me = me_for_friends.clone();
        let grants = friends.get();
        let mine: Vec<String> = grants
            .iter()
            .filter(|g| g.owner == me)
            .map(|g| g.viewer.clone())
            .collect();
        let theirs: Vec<String> = grants
            .iter()
            .filter(|g| g.viewer == me)
            .map(|g| g.owner.clone())
            .collect();
        view! {
            {mine.is_empty().then(|| view! { <p class="muted">{text::FRIENDS_NONE}</p> })}
            <ul class="friends">
                {mine
                    .into_iter()
                    .map(|viewer| {
                        let remove = viewer.clone();
                        view! {
                            <li>
                                <strong>{viewer}</strong>" "{text::SEES_ME}" "
                                <button type="button" on:click=move |_| change_friend(remove.clone(), false)>{text::REMOVE}</button>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            {(!theirs.is_empty()).then(|| view! { <p class="muted">{format!("{}: {}", text::I_SEE, theirs.join(", "))}</p> })}
        }
    };

    view! {
        <section class="devices" aria-labelledby="devices-title">
            <h1 id="devices-title">{text::TITLE}</h1>
            {move || match load.get() {
                Load::Loading => view! { <p class="muted" aria-busy="true">{text::LOADING}</p> }.into_any(),
                Load::Failed(message) => view! {
                    <div class="error" role="alert">
                        <p>{message}</p>
                        <button type="button" on:click=move |_| { load.set(Load::Loading); reload(); }>{text::RETRY}</button>
                    </div>
                }
                .into_any(),
                Load::Ready => table().into_any(),
            }}
            <div role="status">
                {move || notice.get().map(|n| match n {
                    Ok(message) => view! { <p class="ok">{message}</p> }.into_any(),
                    Err(message) => view! { <p class="error">{message}</p> }.into_any(),
                })}
            </div>
            {panel_view}
            {once}
            <form class="panel" on:submit=add aria-labelledby="add-title">
                <h3 id="add-title">{text::ADD_TITLE}</h3>
                <div class="field">
                    <label for="device-name">{text::NAME}</label>
                    <input id="device-name" type="text" required autocapitalize="none" spellcheck="false"
                        placeholder=text::NAME_HINT bind:value=new_name />
                </div>
                {is_admin.then(|| view! {
                    <div class="field">
                        <label for="device-owner">{text::OWNER}</label>
                        <input id="device-owner" type="text" autocapitalize="none" spellcheck="false" bind:value=new_owner />
                    </div>
                })}
                <div class="field">
                    <label for="device-mode">{text::MODE}</label>
                    <select id="device-mode" on:change=move |ev| new_mode.set(if event_target_value(&ev) == "http" { OnboardingMode::Http } else { OnboardingMode::Mqtt })>
                        <option value="mqtt" selected>{text::MODE_MQTT}</option>
                        <option value="http">{text::MODE_HTTP}</option>
                    </select>
                </div>
                <Show when=move || add_error.with(Option::is_some)>
                    <p class="error" role="alert">{move || add_error.get().unwrap_or_default()}</p>
                </Show>
                <button type="submit" class="primary" disabled=move || adding.get()>
                    {move || if adding.get() { text::ADDING } else { text::ADD }}
                </button>
            </form>
            <section class="panel" aria-labelledby="friends-title">
                <h3 id="friends-title">{text::FRIENDS_TITLE}</h3>
                <p class="muted">{text::FRIENDS_NOTE}</p>
                {friend_list}
                <form on:submit=move |ev: SubmitEvent| {
                    ev.prevent_default();
                    let name = friend_name.get_untracked().trim().to_owned();
                    if !name.is_empty() {
                        change_friend(name, true);
                    }
                }>
                    <div class="field">
                        <label for="friend-name">{text::FRIEND_NAME}</label>
                        <input id="friend-name" type="text" required autocapitalize="none" spellcheck="false" bind:value=friend_name />
                    </div>
                    <Show when=move || friend_error.with(Option::is_some)>
                        <p class="error" role="alert">{move || friend_error.get().unwrap_or_default()}</p>
                    </Show>
                    <button type="submit">{text::ALLOW}</button>
                </form>
            </section>
        </section>
    }
}

/// `user/name` of the device a delete panel is about.
fn who_of(panel: &RwSignal<Panel>) -> String {
    match panel.get_untracked() {
        Panel::Delete { username, name } => format!("{username}/{name}"),
        _ => String::new(),
    }
}

/// One region for `setWaypoints`, checked before it is sent.
#[component]
fn RegionForm(
    tracked_id: i64,
    name: String,
    on_send: Callback<(i64, serde_json::Value)>,
    on_cancel: Callback<()>,
) -> impl IntoView {
    let desc = RwSignal::new(String::new());
    let lat = RwSignal::new(String::new());
    let lon = RwSignal::new(String::new());
    let rad = RwSignal::new("100".to_owned());
    let error = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let parsed = (
            desc.get_untracked().trim().to_owned(),
            lat.get_untracked().trim().parse::<f64>(),
            lon.get_untracked().trim().parse::<f64>(),
            rad.get_untracked().trim().parse::<i64>(),
        );
        match parsed {
            (d, Ok(la), Ok(lo), Ok(r))
                if !d.is_empty()
                    && (-90.0..=90.0).contains(&la)
                    && (-180.0..=180.0).contains(&lo)
                    && r >= 1 =>
            {
                on_send.run((
                    tracked_id,
                    json!({"action": "setWaypoints", "waypoints": [{"desc": d, "lat": la, "lon": lo, "rad": r}]}),
                ));
            }
            _ => error.set(true),
        }
    };
    view! {
        <form class="panel" on:submit=submit aria-labelledby="region-title">
            <h3 id="region-title">{format!("{} {name}", text::REGION_TITLE)}</h3>
            <div class="field"><label for="region-desc">{text::REGION_NAME}</label><input id="region-desc" type="text" bind:value=desc /></div>
            <div class="field"><label for="region-lat">{text::LAT}</label><input id="region-lat" type="text" inputmode="decimal" bind:value=lat /></div>
            <div class="field"><label for="region-lon">{text::LON}</label><input id="region-lon" type="text" inputmode="decimal" bind:value=lon /></div>
            <div class="field"><label for="region-rad">{text::RADIUS}</label><input id="region-rad" type="text" inputmode="numeric" bind:value=rad /></div>
            <Show when=move || error.get()>
                <p class="error" role="alert">{text::REGION_INVALID}</p>
            </Show>
            <p class="device-row-actions">
                <button type="submit">{text::SEND_REGION}</button>
                <button type="button" on:click=move |_| on_cancel.run(())>{text::CANCEL}</button>
            </p>
        </form>
    }
}

/// Where a phone sent to a listener with the built-in CA's certificate gets that CA, and how it
/// trusts it (the `.otrc` cannot carry a CA: the apps use the phone's trust store).
#[component]
fn CaTrust(
    /// `…/api/ca`, from the onboarding answer (PEM; `?format=der` for DER).
    url: String,
) -> impl IntoView {
    let der = format!("{url}?format=der");
    let pem = url.clone();
    view! {
        <div class="ca-trust" data-ca-url=url>
            <h4>{text::CA_TITLE}</h4>
            <p>{text::CA_NOTE}</p>
            <p class="device-row-actions">
                <a href=der download="porchlight-ca.crt">{format!("{} ({})", text::CA_DOWNLOAD, text::CA_DER)}</a>
                <a href=pem download="porchlight-ca.pem">{format!("{} ({})", text::CA_DOWNLOAD, text::CA_PEM)}</a>
            </p>
            <ul class="muted">
                <li>{text::CA_ANDROID}</li>
                <li>{text::CA_IOS}</li>
            </ul>
        </div>
    }
}
