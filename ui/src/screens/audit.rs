//! Audit log (`/audit`, admins): sign-ins, MQTT connections and refusals, friendships, alarm
//! codes, newest first. The filters (kind, user, result) are applied by the server
//! (`GET /api/audit?kind=&user=&result=`), [`PAGE`] rows at a time, and "Load older" asks
//! for the next page (`before` = the last id shown). The selection lives in the URL
//! (`/audit?kind=http_login&user=ann&result=failed`), so a filtered view can be bookmarked.

use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::account::{AUDIT_KINDS, AuditEntry, User};

use crate::api::{self, ApiError};
use crate::load::{ErrorPanel, Loaded, Loader};

mod text {
    pub const TITLE: &str = "Audit log";
    pub const FAILED: &str = "Couldn't load the audit log";
    pub const OLDER_FAILED: &str = "Couldn't load older entries";
    pub const KIND: &str = "Kind";
    pub const USER: &str = "User";
    pub const RESULT: &str = "Result";
    pub const ALL: &str = "All";
    pub const SUCCESS: &str = "Succeeded";
    pub const FAILURE: &str = "Failed";
    pub const REFRESH: &str = "Refresh";
    pub const NONE: &str = "No entries match.";
    pub const SHOWN: &str = "entries shown";
    pub const LOAD_OLDER: &str = "Load older";
    pub const LOADING_OLDER: &str = "Loading…";
    pub const NO_OLDER: &str = "No older entries.";

    pub fn kind(kind: &str) -> &'static str {
        match kind {
            "mqtt_connect" => "MQTT connect",
            "mqtt_disconnect" => "MQTT disconnect",
            "mqtt_publish_denied" => "MQTT publish refused",
            "mqtt_subscribe_denied" => "MQTT subscription refused",
            "http_login" => "Web sign-in",
            "friend_granted" => "Friendship granted",
            "friend_revoked" => "Friendship revoked",
            "alarm_code_used" => "Alarm code used",
            "alarm_code_refused" => "Alarm code refused",
            "certificate_issued" => "Client certificate issued",
            "certificate_revoked" => "Client certificate revoked",
            "mqtt_tls_refused" => "MQTT TLS connection refused",
            "ca_rotated" => "New certificate authority",
            "ca_imported" => "Certificate authority imported",
            "server_certificate_renewed" => "Server certificate renewed",
            _ => "Other",
        }
    }
}

/// Rows per request.
pub const PAGE: usize = 100;

/// The filters, as in the URL's query string (empty: no filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub kind: String,
    pub user: String,
    pub result: String,
}

impl Selection {
    /// Reads `?kind=&user=&result=`; unknown kinds and results are dropped.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Selection {
        let mut s = Selection::default();
        for (key, value) in pairs {
            match key {
                "kind" if AUDIT_KINDS.contains(&value.as_str()) => s.kind = value,
                "user" => s.user = value,
                "result" if value == "ok" || value == "failed" => s.result = value,
                _ => {}
            }
        }
        s
    }

    /// The query string of this selection (`""` when nothing is filtered), for the URL and
    /// the API (which takes the same names).
    pub fn to_query(&self) -> String {
        let parts: Vec<String> = [
            ("kind", &self.kind),
            ("user", &self.user),
            ("result", &self.result),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }

    /// The API path of the page before `before` (the newest page without it).
    fn page_path(&self, before: Option<i64>) -> String {
        let mut path = format!("/api/audit?limit={PAGE}");
        for (k, v) in [
            ("kind", &self.kind),
            ("user", &self.user),
            ("result", &self.result),
        ] {
            if !v.is_empty() {
                path.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        path
    }
}

/// Percent-encodes a query value (all but RFC 3986's unreserved characters); plain Rust, so
/// the host tests run it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn selection_from_url() -> Selection {
    let query = window().location().search().unwrap_or_default();
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&query) else {
        return Selection::default();
    };
    Selection::from_pairs(
        ["kind", "user", "result"]
            .into_iter()
            .filter_map(|k| params.get(k).map(|v| (k, v))),
    )
}

fn when(ms: i64) -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
            .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED),
    )
}

/// The newest page's rows, then the older pages loaded since.
#[derive(Debug, Clone, Default, PartialEq)]
struct Older {
    rows: Vec<AuditEntry>,
    /// The last page was short: nothing older exists.
    done: bool,
    loading: bool,
    error: Option<ApiError>,
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let selection = RwSignal::new(selection_from_url());
    let entries = Loader::new(move || {
        let path = selection.get_untracked().page_path(None);
        async move { api::get::<Vec<AuditEntry>>(&path).await }
    });
    let older = RwSignal::new(Older::default());
    // Everyone who has an account, for the user filter (with the names seen in the rows).
    let users = Loader::new(|| api::get::<Vec<User>>("/api/users"));

    // A new selection: into the URL, and the newest page again.
    Effect::new(move |first: Option<()>| {
        let s = selection.get();
        if first.is_some() {
            if let Ok(history) = window().history() {
                let _ = history.replace_state_with_url(
                    &wasm_bindgen::JsValue::NULL,
                    "",
                    Some(&format!("/audit{}", s.to_query())),
                );
            }
            older.set(Older::default());
            entries.reload();
        }
    });
    let refresh = move |_| {
        older.set(Older::default());
        entries.reload();
    };
    let load_older = move |(): ()| {
        let last = older
            .with_untracked(|o| o.rows.last().map(|e| e.id))
            .or_else(|| {
                entries.state.with_untracked(|s| match s {
                    crate::load::Load::Ready(rows) => rows.last().map(|e| e.id),
                    _ => None,
                })
            });
        let Some(last) = last else { return };
        older.update(|o| {
            o.loading = true;
            o.error = None;
        });
        let path = selection.get_untracked().page_path(Some(last));
        spawn_local(async move {
            let answer = api::get::<Vec<AuditEntry>>(&path).await;
            older.try_update(|o| {
                o.loading = false;
                match answer {
                    Ok(page) => {
                        o.done = page.len() < PAGE;
                        o.rows.extend(page);
                    }
                    Err(e) => o.error = Some(e),
                }
            });
        });
    };

    let set = move |field: fn(&mut Selection, String)| {
        move |e: leptos::ev::Event| {
            let value = event_target_value(&e);
            selection.update(|s| field(s, value));
        }
    };
    let kind_options = AUDIT_KINDS
        .into_iter()
        .map(|k| {
            view! {
                <option value=k selected=move || selection.with(|s| s.kind == k)>
                    {text::kind(k)}
                </option>
            }
        })
        .collect_view();
    let user_options = move || {
        let mut names: Vec<String> = users
            .value()
            .unwrap_or_default()
            .into_iter()
            .map(|u| u.username)
            .collect();
        if let Some(rows) = entries.value() {
            names.extend(rows.into_iter().filter_map(|e| e.username));
        }
        let current = selection.with(|s| s.user.clone());
        if !current.is_empty() {
            names.push(current.clone());
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let selected = name == current;
                view! { <option value=name.clone() selected=selected>{name.clone()}</option> }
            })
            .collect_view()
    };

    view! {
        <section class="settings" aria-labelledby="screen-title">
            <div class="screen-head">
                <h1 id="screen-title">{text::TITLE}</h1>
                <button type="button" class="secondary" on:click=refresh>{text::REFRESH}</button>
            </div>
            <div class="filters">
                <div class="field">
                    <label for="audit-kind">{text::KIND}</label>
                    <select id="audit-kind" on:change=set(|s, v| s.kind = v)>
                        <option value="" selected=move || selection.with(|s| s.kind.is_empty())>{text::ALL}</option>
                        {kind_options}
                    </select>
                </div>
                <div class="field">
                    <label for="audit-user">{text::USER}</label>
                    <select id="audit-user" on:change=set(|s, v| s.user = v)>
                        <option value="" selected=move || selection.with(|s| s.user.is_empty())>{text::ALL}</option>
                        {user_options}
                    </select>
                </div>
                <div class="field">
                    <label for="audit-result">{text::RESULT}</label>
                    <select id="audit-result" on:change=set(|s, v| s.result = v)>
                        <option value="" selected=move || selection.with(|s| s.result.is_empty())>{text::ALL}</option>
                        <option value="ok" selected=move || selection.with(|s| s.result == "ok")>{text::SUCCESS}</option>
                        <option value="failed" selected=move || selection.with(|s| s.result == "failed")>{text::FAILURE}</option>
                    </select>
                </div>
            </div>
            <Loaded loader=entries what=text::FAILED children=move |_| move || {
                let newest = entries.value().unwrap_or_default();
                let more = older.get();
                if newest.is_empty() {
                    return view! { <p class="muted" data-empty="audit">{text::NONE}</p> }.into_any();
                }
                let done = more.done || (more.rows.is_empty() && newest.len() < PAGE);
                let shown: Vec<AuditEntry> = newest.into_iter().chain(more.rows).collect();
                let count = shown.len();
                let rows = shown.into_iter().map(entry_row).collect_view();
                let footer = if done {
                    view! { <p class="muted small" data-older="none">{text::NO_OLDER}</p> }.into_any()
                } else {
                    view! {
                        <button type="button" class="secondary" data-action="load-older"
                            disabled=more.loading on:click=move |_| load_older(())>
                            {if more.loading { text::LOADING_OLDER } else { text::LOAD_OLDER }}
                        </button>
                    }
                    .into_any()
                };
                view! {
                    <p class="muted small" role="status" data-count=count>{count} " " {text::SHOWN}</p>
                    <ul class="event-list">{rows}</ul>
                    {more.error.map(|error| view! {
                        <ErrorPanel what=text::OLDER_FAILED error=error on_retry=Callback::new(move |()| load_older(())) />
                    })}
                    {footer}
                }
                .into_any()
            } />
        </section>
    }
}

fn entry_row(e: AuditEntry) -> impl IntoView {
    let ok = e.result == "ok";
    let who = [e.username.clone(), e.peer.clone(), e.client_id.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    view! {
        <li class="event audit-entry" data-id=e.id data-kind=e.kind.clone() data-user=e.username.clone().unwrap_or_default() data-result=if ok { "ok" } else { "failed" }>
            <span class="event-kind">{text::kind(&e.kind)}
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_round_trips_and_drops_unknown_values() {
        let s = Selection::from_pairs([
            ("kind", "http_login".to_owned()),
            ("user", "ann".to_owned()),
            ("result", "failed".to_owned()),
        ]);
        assert_eq!(s.to_query(), "?kind=http_login&user=ann&result=failed");
        assert_eq!(
            s.page_path(Some(42)),
            "/api/audit?limit=100&kind=http_login&user=ann&result=failed&before=42"
        );
        let bad = Selection::from_pairs([("kind", "nope".to_owned()), ("result", "x".to_owned())]);
        assert_eq!(bad, Selection::default());
        assert_eq!(bad.to_query(), "");
        let spaced = Selection {
            user: "a b&c".into(),
            ..Selection::default()
        };
        assert_eq!(spaced.to_query(), "?user=a%20b%26c");
    }
}
