//! Audit log (`/audit`, admins): sign-ins and MQTT connections, newest first, filtered by kind,
//! user and result. The filters apply to the latest 1,000 entries the server answers.

use leptos::prelude::*;
use porchlight_api::account::AuditEntry;

use crate::api;
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "Audit log";
    pub const FAILED: &str = "Couldn't load the audit log";
    pub const KIND: &str = "Kind";
    pub const USER: &str = "User";
    pub const RESULT: &str = "Result";
    pub const ALL: &str = "All";
    pub const SUCCESS: &str = "Succeeded";
    pub const FAILURE: &str = "Failed";
    pub const REFRESH: &str = "Refresh";
    pub const NONE: &str = "No entries match.";
    pub const SHOWN: &str = "entries shown";
}

/// Whether an entry records a success: HTTP 2xx, MQTT CONNACK 0, or no code at all.
fn succeeded(e: &AuditEntry) -> bool {
    match e.code {
        None | Some(0) => true,
        Some(code) => (200..300).contains(&code),
    }
}

fn when(ms: i64) -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
            .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED),
    )
}

fn distinct(list: &[AuditEntry], pick: fn(&AuditEntry) -> Option<String>) -> Vec<String> {
    let mut values: Vec<String> = list.iter().filter_map(pick).collect();
    values.sort();
    values.dedup();
    values
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let entries = Loader::new(|| api::get::<Vec<AuditEntry>>("/api/audit?limit=1000"));
    let kind = RwSignal::new(String::new());
    let user = RwSignal::new(String::new());
    let result = RwSignal::new(String::new());

    let options = move |values: Vec<String>| {
        values
            .into_iter()
            .map(|v| view! { <option value=v.clone()>{v.clone()}</option> })
            .collect_view()
    };

    view! {
        <section class="settings" aria-labelledby="screen-title">
            <div class="screen-head">
                <h1 id="screen-title">{text::TITLE}</h1>
                <button type="button" class="secondary" on:click=move |_| entries.reload()>{text::REFRESH}</button>
            </div>
            <Loaded loader=entries what=text::FAILED children=move |loaded| {
                let kinds = distinct(&loaded, |e| Some(e.kind.clone()));
                let users = distinct(&loaded, |e| e.username.clone());
                view! {
                    <div class="filters">
                        <div class="field">
                            <label for="audit-kind">{text::KIND}</label>
                            <select id="audit-kind" on:change=move |e| kind.set(event_target_value(&e))>
                                <option value="">{text::ALL}</option>
                                {options(kinds)}
                            </select>
                        </div>
                        <div class="field">
                            <label for="audit-user">{text::USER}</label>
                            <select id="audit-user" on:change=move |e| user.set(event_target_value(&e))>
                                <option value="">{text::ALL}</option>
                                {options(users)}
                            </select>
                        </div>
                        <div class="field">
                            <label for="audit-result">{text::RESULT}</label>
                            <select id="audit-result" on:change=move |e| result.set(event_target_value(&e))>
                                <option value="">{text::ALL}</option>
                                <option value="ok">{text::SUCCESS}</option>
                                <option value="failed">{text::FAILURE}</option>
                            </select>
                        </div>
                    </div>
                    {move || {
                        let (k, u, r) = (kind.get(), user.get(), result.get());
                        let shown: Vec<AuditEntry> = entries
                            .value()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|e| k.is_empty() || e.kind == k)
                            .filter(|e| u.is_empty() || e.username.as_deref() == Some(u.as_str()))
                            .filter(|e| match r.as_str() {
                                "ok" => succeeded(e),
                                "failed" => !succeeded(e),
                                _ => true,
                            })
                            .collect();
                        if shown.is_empty() {
                            return view! { <p class="muted">{text::NONE}</p> }.into_any();
                        }
                        let count = shown.len();
                        let rows = shown
                            .into_iter()
                            .map(|e| {
                                let ok = succeeded(&e);
                                let who = [e.username.clone(), e.peer.clone(), e.client_id.clone()]
                                    .into_iter()
                                    .flatten()
                                    .collect::<Vec<_>>()
                                    .join(" · ");
                                view! {
                                    <li class="event audit-entry" data-kind=e.kind.clone() data-result=if ok { "ok" } else { "failed" }>
                                        <span class="event-kind">{e.kind.clone()}
                                            " "
                                            <span class=if ok { "value closed" } else { "value open" }>
                                                {if ok { text::SUCCESS } else { text::FAILURE }}
                                            </span>
                                        </span>
                                        <time class="muted">{when(e.at)}</time>
                                        <span class="event-what">{e.reason.clone()}</span>
                                        <span class="event-who muted">{who}</span>
                                    </li>
                                }
                            })
                            .collect_view();
                        view! {
                            <p class="muted small" role="status">{count} " " {text::SHOWN}</p>
                            <ul class="event-list">{rows}</ul>
                        }
                        .into_any()
                    }}
                }
            } />
        </section>
    }
}
