//! Settings → MQTT (`/settings/mqtt`, admins): the embedded broker's status, ports and
//! connected clients, and the link to an external broker — host, port, TLS, username, a
//! write-only password, the Client ID prefix (checked as you type, by the same rule as the
//! server: `porchlight_api::mqtt::check_client_id_prefix`), Save, and "Test connection".

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::mqtt::{
    BrokerView, ConnectedClientView, FieldErrors, LinkSettingsChange, LinkSettingsView,
    MAX_PREFIX_BYTES, TestResult, check_client_id_prefix,
};

use crate::api::{self, ApiError};
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "MQTT settings";
    pub const BROKER: &str = "Embedded broker";
    pub const BROKER_FAILED: &str = "Couldn't load the broker's status";
    pub const STATUS: &str = "Status";
    pub const PORT: &str = "MQTT port";
    pub const TLS_PORT: &str = "MQTT over TLS port";
    pub const CERT_PORT: &str = "Client-certificate port (TLS, no password)";
    pub const CLIENTS: &str = "Connected clients";
    pub const NONE: &str = "—";
    pub const REFRESH: &str = "Refresh";

    pub const CLIENT_LIST: &str = "Connected clients";
    pub const CLIENTS_FAILED: &str = "Couldn't load the connected clients";
    pub const NO_CLIENTS: &str = "No MQTT client is connected.";
    pub const COL_CLIENT_ID: &str = "Client id";
    pub const COL_USER: &str = "User";
    pub const COL_DEVICE: &str = "Device";
    pub const COL_LOGIN: &str = "Login";
    pub const COL_ADDRESS: &str = "Address";
    pub const COL_PROTOCOL: &str = "Protocol";
    pub const COL_CLEAN: &str = "Clean start";
    pub const COL_SINCE: &str = "Connected since";
    pub const COL_SUBS: &str = "Subscriptions";
    pub const YES: &str = "Yes";
    pub const NO: &str = "No";

    pub fn login(method: &str) -> &'static str {
        match method {
            "password" => "Password",
            "device_key" => "Device key",
            "certificate" => "Certificate",
            _ => "Other",
        }
    }

    pub fn protocol(level: u8) -> String {
        match level {
            3 => "MQTT 3.1".to_owned(),
            4 => "MQTT 3.1.1".to_owned(),
            5 => "MQTT 5".to_owned(),
            other => format!("level {other}"),
        }
    }

    pub const LINK: &str = "External broker";
    pub const LINK_INTRO: &str = "Porchlight can also connect to another MQTT broker (for \
        example Home Assistant's) as a client.";
    pub const LINK_FAILED: &str = "Couldn't load the external broker settings";
    pub const ENABLED: &str = "Connect to an external broker";
    pub const HOST: &str = "Host";
    pub const LINK_PORT: &str = "Port";
    pub const TLS: &str = "Use TLS";
    pub const USERNAME: &str = "Username";
    pub const PASSWORD: &str = "Password";
    pub const PASSWORD_SET: &str = "A password is set. Leave this empty to keep it.";
    pub const PASSWORD_NOT_SET: &str = "No password is set.";
    pub const PASSWORD_CLEAR: &str = "Remove the stored password";
    pub const PREFIX: &str = "Client ID prefix";
    pub const LINK_STATE: &str = "Link";
    pub const CLIENT_ID: &str = "Client id of this process";
    pub const SAVE: &str = "Save";
    pub const SAVING: &str = "Saving…";
    pub const SAVED: &str = "Saved.";
    pub const TEST: &str = "Test connection";
    pub const TESTING: &str = "Testing…";
    pub const FIX_FIELDS: &str = "Some fields need attention.";

    pub fn prefix_help(max: usize) -> String {
        format!(
            "Porchlight appends \"-\" and a random 6-character suffix per running process, so \
             two copies never take each other's connection. Keep the prefix to {max} \
             characters: MQTT 3.1 allows client ids of at most 23."
        )
    }

    pub fn broker_status(status: &str) -> &'static str {
        match status {
            "running" => "Running",
            "stopped" => "Stopped",
            "disabled" => "Disabled",
            _ => "Unknown",
        }
    }

    pub fn link_state(state: &str) -> &'static str {
        match state {
            "connected" => "Connected",
            "connecting" => "Connecting",
            "failed" => "Failed",
            "disconnected" => "Not connected",
            _ => "Unknown",
        }
    }

    pub fn test_result(result: &str, message: &str, client_id: &str) -> String {
        match result {
            "connected" => format!("Connected as {client_id}. The broker accepted the settings."),
            "refused" => format!("The broker refused the connection: {message}"),
            "unreachable" => format!("Couldn't reach the broker: {message}"),
            "tls_error" => format!("TLS failed: {message}"),
            _ => message.to_owned(),
        }
    }
}

#[component]
pub fn MqttSettingsPage() -> impl IntoView {
    let broker = Loader::new(|| api::get::<BrokerView>("/api/settings/mqtt/broker"));
    let link = Loader::new(|| api::get::<LinkSettingsView>("/api/settings/mqtt"));
    let clients =
        Loader::new(|| api::get::<Vec<ConnectedClientView>>("/api/settings/mqtt/clients"));
    let port_text = |p: Option<u16>| p.map_or_else(|| text::NONE.to_owned(), |p| p.to_string());

    view! {
        <section class="settings" aria-labelledby="screen-title">
            <h1 id="screen-title">{text::TITLE}</h1>
            <section class="card wide" aria-labelledby="broker-title">
                <div class="screen-head">
                    <h2 id="broker-title">{text::BROKER}</h2>
                    <button type="button" class="secondary" on:click=move |_| broker.reload()>
                        {text::REFRESH}
                    </button>
                </div>
                <Loaded loader=broker what=text::BROKER_FAILED children=move |_| move || {
                    broker.value().map(|b| view! {
                        <dl class="facts broker-facts">
                            <dt>{text::STATUS}</dt>
                            <dd data-field="status">{text::broker_status(&b.status)}</dd>
                            <dt>{text::PORT}</dt>
                            <dd data-field="port">{port_text(b.port)}</dd>
                            <dt>{text::TLS_PORT}</dt>
                            <dd data-field="tls_port">{port_text(b.tls_port)}</dd>
                            <dt>{text::CERT_PORT}</dt>
                            <dd data-field="cert_port">{port_text(b.cert_port)}</dd>
                            <dt>{text::CLIENTS}</dt>
                            <dd data-field="connections">{b.connections.to_string()}</dd>
                        </dl>
                    })
                } />
            </section>
            <section class="card wide" aria-labelledby="clients-title">
                <div class="screen-head">
                    <h2 id="clients-title">{text::CLIENT_LIST}</h2>
                    <button type="button" class="secondary" data-action="refresh-clients" on:click=move |_| {
                        clients.reload();
                        broker.reload();
                    }>
                        {text::REFRESH}
                    </button>
                </div>
                <Loaded loader=clients what=text::CLIENTS_FAILED children=move |_| move || {
                    clients.value().map(|list| view! { <div class="table-scroll"><ClientTable list=list /></div> })
                } />
            </section>
            <section class="card wide" aria-labelledby="link-title">
                <h2 id="link-title">{text::LINK}</h2>
                <p class="muted">{text::LINK_INTRO}</p>
                <Loaded loader=link what=text::LINK_FAILED children=move |view: LinkSettingsView| {
                    view! { <LinkForm initial=view link=link /> }
                } />
            </section>
        </section>
    }
}

/// Unix seconds as the browser's local date and time.
fn local_time(secs: i64) -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(secs as f64 * 1000.0))
            .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED),
    )
}

/// The broker's connected clients: a table, one row per client stacked as a list on a phone
/// (the server answers them sorted by user, then client id).
#[component]
fn ClientTable(list: Vec<ConnectedClientView>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="muted" data-empty="clients">{text::NO_CLIENTS}</p> }.into_any();
    }
    let rows = list
        .into_iter()
        .map(|c| {
            let since = local_time(c.connected_since);
            let clean = if c.clean_start { text::YES } else { text::NO };
            view! {
                <tr data-client=c.client_id.clone()>
                    <td data-label=text::COL_CLIENT_ID><code>{c.client_id.clone()}</code></td>
                    <td data-label=text::COL_USER data-field="user">{c.username.clone()}</td>
                    <td data-label=text::COL_DEVICE data-field="device">
                        {c.device.clone().unwrap_or_else(|| text::NONE.to_owned())}
                    </td>
                    <td data-label=text::COL_LOGIN data-field="login">{text::login(&c.login)}</td>
                    <td data-label=text::COL_ADDRESS>{c.peer.clone().unwrap_or_else(|| text::NONE.to_owned())}</td>
                    <td data-label=text::COL_PROTOCOL data-field="protocol">{text::protocol(c.protocol)}</td>
                    <td data-label=text::COL_CLEAN>{clean}</td>
                    <td data-label=text::COL_SINCE>{since}</td>
                    <td data-label=text::COL_SUBS>{c.subscriptions.to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="client-table">
            <thead>
                <tr>
                    <th scope="col">{text::COL_CLIENT_ID}</th>
                    <th scope="col">{text::COL_USER}</th>
                    <th scope="col">{text::COL_DEVICE}</th>
                    <th scope="col">{text::COL_LOGIN}</th>
                    <th scope="col">{text::COL_ADDRESS}</th>
                    <th scope="col">{text::COL_PROTOCOL}</th>
                    <th scope="col">{text::COL_CLEAN}</th>
                    <th scope="col">{text::COL_SINCE}</th>
                    <th scope="col">{text::COL_SUBS}</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// The external broker's form, filled from what was loaded.
#[component]
fn LinkForm(initial: LinkSettingsView, link: Loader<LinkSettingsView>) -> impl IntoView {
    let enabled = RwSignal::new(initial.enabled);
    let host = RwSignal::new(initial.host.clone());
    let port = RwSignal::new(initial.port.to_string());
    let tls = RwSignal::new(initial.tls);
    let username = RwSignal::new(initial.username.clone().unwrap_or_default());
    let password = RwSignal::new(String::new());
    let clear_password = RwSignal::new(false);
    let prefix = RwSignal::new(initial.client_id_prefix.clone());
    let field_errors = RwSignal::new(std::collections::BTreeMap::<String, String>::new());
    let message = RwSignal::new(None::<(bool, String)>);
    let saving = RwSignal::new(false);
    let testing = RwSignal::new(false);
    let test_result = RwSignal::new(None::<(bool, String)>);

    let prefix_error = move || check_client_id_prefix(&prefix.get()).err().map(capitalise);
    let field_error = move |name: &'static str| field_errors.with(|e| e.get(name).cloned());
    // Editing a field drops the error the last Save reported for it.
    let edited = move |name: &'static str| {
        move |_| {
            field_errors.update(|e| {
                e.remove(name);
            })
        }
    };

    let change = move || {
        let user = username.get_untracked().trim().to_owned();
        let pass = password.get_untracked();
        LinkSettingsChange {
            enabled: Some(enabled.get_untracked()),
            host: Some(host.get_untracked().trim().to_owned()),
            port: port.get_untracked().trim().parse().ok(),
            tls: Some(tls.get_untracked()),
            username: Some((!user.is_empty()).then_some(user)),
            client_id_prefix: Some(prefix.get_untracked()),
            password: if clear_password.get_untracked() {
                Some(String::new())
            } else {
                (!pass.is_empty()).then_some(pass)
            },
        }
    };
    // Checks what the page can check by itself; the server checks everything again.
    let local_errors = move || {
        let mut errors = std::collections::BTreeMap::new();
        if let Err(e) = check_client_id_prefix(&prefix.get_untracked()) {
            errors.insert("client_id_prefix".to_owned(), capitalise(e));
        }
        if port
            .get_untracked()
            .trim()
            .parse::<u16>()
            .map_or(true, |p| p == 0)
        {
            errors.insert(
                "port".to_owned(),
                "The port is a number from 1 to 65535.".to_owned(),
            );
        }
        errors
    };
    let show_failure = move |failure: ApiError| match failure.body_as::<FieldErrors>() {
        Some(errors) => {
            field_errors.set(
                errors
                    .errors
                    .into_iter()
                    .map(|(k, v)| (k, capitalise(v)))
                    .collect(),
            );
            message.set(Some((false, text::FIX_FIELDS.into())));
        }
        None if failure == ApiError::SignedOut => {}
        None => message.set(Some((false, failure.to_string()))),
    };

    let save = move |event: SubmitEvent| {
        event.prevent_default();
        if saving.get_untracked() {
            return;
        }
        message.set(None);
        let errors = local_errors();
        if !errors.is_empty() {
            field_errors.set(errors);
            message.set(Some((false, text::FIX_FIELDS.into())));
            return;
        }
        field_errors.set(Default::default());
        saving.set(true);
        let body = change();
        spawn_local(async move {
            let outcome = api::put::<_, LinkSettingsView>("/api/settings/mqtt", &body).await;
            saving.set(false);
            match outcome {
                Ok(saved) => {
                    password.set(String::new());
                    clear_password.set(false);
                    link.set(saved);
                    message.set(Some((true, text::SAVED.into())));
                }
                Err(failure) => show_failure(failure),
            }
        });
    };

    let test = move |_| {
        if testing.get_untracked() {
            return;
        }
        let errors = local_errors();
        if !errors.is_empty() {
            field_errors.set(errors);
            return;
        }
        field_errors.set(Default::default());
        testing.set(true);
        test_result.set(None);
        let body = change();
        spawn_local(async move {
            let outcome = api::post::<_, TestResult>("/api/settings/mqtt/test", &body).await;
            testing.set(false);
            match outcome {
                Ok(r) => test_result.set(Some((
                    r.result == "connected",
                    text::test_result(&r.result, &r.message, &r.client_id),
                ))),
                Err(failure) => match failure.body_as::<FieldErrors>() {
                    Some(_) => show_failure(failure),
                    None => test_result.set(Some((false, failure.to_string()))),
                },
            }
        });
    };

    let error_text = move |name: &'static str| {
        move || {
            field_error(name)
                .map(|e| view! { <p class="field-error" id=format!("{name}-error")>{e}</p> })
        }
    };
    let described = |name: &'static str| move || field_error(name).map(|_| format!("{name}-error"));

    view! {
        <form class="link-form" on:submit=save novalidate>
            {move || link.value().map(|v| view! {
                <dl class="facts">
                    <dt>{text::LINK_STATE}</dt>
                    <dd data-field="link-state">
                        {text::link_state(&v.status.state)}
                        {v.status.message.map(|m| format!(" — {m}"))}
                    </dd>
                    <dt>{text::CLIENT_ID}</dt>
                    <dd><code>{v.client_id}</code></dd>
                </dl>
            })}
            <div class="field check">
                <input id="link-enabled" type="checkbox" bind:checked=enabled />
                <label for="link-enabled">{text::ENABLED}</label>
            </div>
            <div class="row">
                <div class="field grow">
                    <label for="link-host">{text::HOST}</label>
                    <input id="link-host" on:input=edited("host") type="text" autocapitalize="none" spellcheck="false"
                        bind:value=host aria-describedby=described("host")
                        aria-invalid=move || field_error("host").map(|_| "true") />
                    {error_text("host")}
                </div>
                <div class="field port">
                    <label for="link-port">{text::LINK_PORT}</label>
                    <input id="link-port" on:input=edited("port") type="number" min="1" max="65535" inputmode="numeric"
                        bind:value=port aria-describedby=described("port")
                        aria-invalid=move || field_error("port").map(|_| "true") />
                    {error_text("port")}
                </div>
            </div>
            <div class="field check">
                <input id="link-tls" type="checkbox" bind:checked=tls />
                <label for="link-tls">{text::TLS}</label>
            </div>
            <div class="field">
                <label for="link-username">{text::USERNAME}</label>
                <input id="link-username" on:input=edited("username") type="text" autocomplete="off" autocapitalize="none"
                    spellcheck="false" bind:value=username aria-describedby=described("username") />
                {error_text("username")}
            </div>
            <div class="field">
                <label for="link-password">{text::PASSWORD}</label>
                <input id="link-password" type="password" autocomplete="new-password"
                    bind:value=password aria-describedby="link-password-state"
                    disabled=move || clear_password.get() />
                <p class="muted small" id="link-password-state" data-field="password-state">
                    {move || if link.value().is_some_and(|v| v.password_set) {
                        text::PASSWORD_SET
                    } else {
                        text::PASSWORD_NOT_SET
                    }}
                </p>
                {error_text("password")}
                <Show when=move || link.value().is_some_and(|v| v.password_set)>
                    <div class="check">
                        <input id="link-password-clear" type="checkbox" bind:checked=clear_password />
                        <label for="link-password-clear">{text::PASSWORD_CLEAR}</label>
                    </div>
                </Show>
            </div>
            <div class="field">
                <label for="link-prefix">{text::PREFIX}</label>
                <input id="link-prefix" on:input=edited("client_id_prefix") type="text" autocapitalize="none" spellcheck="false"
                    bind:value=prefix
                    aria-describedby="link-prefix-help link-prefix-error"
                    aria-invalid=move || prefix_error().map(|_| "true") />
                <p class="muted small" id="link-prefix-help">{text::prefix_help(MAX_PREFIX_BYTES)}</p>
                <p class="field-error" id="link-prefix-error" aria-live="polite">
                    {move || prefix_error().or_else(|| field_error("client_id_prefix"))}
                </p>
            </div>
            {move || message.get().map(|(ok, m)| view! {
                <p class=if ok { "notice ok" } else { "error" } role=if ok { "status" } else { "alert" }>{m}</p>
            })}
            <div class="actions">
                <button type="submit" class="primary narrow" disabled=move || saving.get()>
                    {move || if saving.get() { text::SAVING } else { text::SAVE }}
                </button>
                <button type="button" class="secondary" on:click=test disabled=move || testing.get()>
                    {move || if testing.get() { text::TESTING } else { text::TEST }}
                </button>
            </div>
            {move || test_result.get().map(|(ok, m)| view! {
                <p class=if ok { "notice ok test-result" } else { "error test-result" } role="status">{m}</p>
            })}
        </form>
    }
}

/// Server and rule messages start in lower case ("the Client ID prefix is …"); shown alone
/// they read better capitalised.
fn capitalise(text: String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}
