//! Profile (`/profile`): the display name friends' phones show (the OwnTracks card), a
//! password change with the current password, and the user's API tokens (a new token is
//! shown once; revoke).

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::account::{ApiToken, CardName, CreatedToken, NewToken};

use crate::api::{self, ApiError, Session};
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "Profile";
    pub const SIGNED_IN_AS: &str = "Signed in as";
    pub const NAME: &str = "Display name";
    pub const NAME_TITLE: &str = "Your name";
    pub const NAME_HELP: &str = "The name your friends' OwnTracks apps show for you.";
    pub const NAME_SAVE: &str = "Save name";
    pub const NAME_SAVED: &str = "Name saved.";
    pub const PASSWORD_TITLE: &str = "Password";
    pub const CURRENT: &str = "Current password";
    pub const NEW: &str = "New password";
    pub const CONFIRM: &str = "New password again";
    pub const MISMATCH: &str = "The two new passwords are not the same.";
    pub const CHANGE: &str = "Change password";
    pub const CHANGED: &str = "Password changed. Other sessions and API tokens were signed out.";
    pub const TOKENS_TITLE: &str = "API tokens";
    pub const TOKENS_HELP: &str = "For scripts: send it as \"Authorization: Bearer …\".";
    pub const TOKENS_FAILED: &str = "Couldn't load your API tokens";
    pub const NO_TOKENS: &str = "No API tokens.";
    pub const TOKEN_NAME: &str = "Token name";
    pub const CREATE: &str = "Create token";
    pub const NEW_TOKEN: &str = "Your new token (shown only now, copy it):";
    pub const REVOKE: &str = "Revoke";
    pub const NEVER_USED: &str = "never used";
    pub const LAST_USED: &str = "last used";
}

fn when(ms: i64) -> String {
    String::from(
        js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
            .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED),
    )
}

fn show(target: RwSignal<Option<(bool, String)>>, failure: ApiError) {
    if failure != ApiError::SignedOut {
        target.set(Some((false, failure.to_string())));
    }
}

#[component]
fn Notice(message: RwSignal<Option<(bool, String)>>) -> impl IntoView {
    move || {
        message.get().map(|(ok, m)| {
            if ok {
                view! { <p class="notice ok" role="status">{m}</p> }.into_any()
            } else {
                view! { <p class="error" role="alert">{m}</p> }.into_any()
            }
        })
    }
}

#[component]
pub fn ProfilePage(session: Session) -> impl IntoView {
    let username = session.username.clone();
    view! {
        <section class="settings" aria-labelledby="screen-title">
            <h1 id="screen-title">{text::TITLE}</h1>
            <p class="muted">{text::SIGNED_IN_AS} " " <strong>{username.clone()}</strong></p>
            <NameForm />
            <PasswordForm username=username />
            <Tokens />
        </section>
    }
}

#[component]
fn NameForm() -> impl IntoView {
    let name = RwSignal::new(String::new());
    let message = RwSignal::new(None::<(bool, String)>);
    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        message.set(None);
        let body = CardName {
            name: name.get_untracked().trim().to_owned(),
        };
        spawn_local(async move {
            match api::put::<_, serde_json::Value>("/api/owntracks/card", &body).await {
                Ok(_) => message.set(Some((true, text::NAME_SAVED.into()))),
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <form class="card wide" on:submit=submit aria-labelledby="name-title">
            <h2 id="name-title">{text::NAME_TITLE}</h2>
            <div class="field">
                <label for="profile-name">{text::NAME}</label>
                <input id="profile-name" type="text" required maxlength="64" bind:value=name aria-describedby="profile-name-help" />
                <p class="muted small" id="profile-name-help">{text::NAME_HELP}</p>
            </div>
            <Notice message=message />
            <button type="submit" class="secondary">{text::NAME_SAVE}</button>
        </form>
    }
}

#[component]
fn PasswordForm(username: String) -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let message = RwSignal::new(None::<(bool, String)>);
    let busy = RwSignal::new(false);
    let username = StoredValue::new(username);
    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if busy.get_untracked() {
            return;
        }
        message.set(None);
        if new.get_untracked() != confirm.get_untracked() {
            message.set(Some((false, text::MISMATCH.into())));
            return;
        }
        busy.set(true);
        let (old, fresh) = (current.get_untracked(), new.get_untracked());
        let user = username.get_value();
        spawn_local(async move {
            let outcome = api::change_own_password(&user, &old, &fresh).await;
            busy.set(false);
            match outcome {
                Ok(()) => {
                    current.set(String::new());
                    new.set(String::new());
                    confirm.set(String::new());
                    message.set(Some((true, text::CHANGED.into())));
                }
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <form class="card wide" on:submit=submit aria-labelledby="password-title">
            <h2 id="password-title">{text::PASSWORD_TITLE}</h2>
            <div class="field">
                <label for="profile-current">{text::CURRENT}</label>
                <input id="profile-current" type="password" autocomplete="current-password" required bind:value=current />
            </div>
            <div class="field">
                <label for="profile-new">{text::NEW}</label>
                <input id="profile-new" type="password" autocomplete="new-password" required bind:value=new />
            </div>
            <div class="field">
                <label for="profile-confirm">{text::CONFIRM}</label>
                <input id="profile-confirm" type="password" autocomplete="new-password" required bind:value=confirm />
            </div>
            <Notice message=message />
            <button type="submit" class="secondary" disabled=move || busy.get()>{text::CHANGE}</button>
        </form>
    }
}

#[component]
fn Tokens() -> impl IntoView {
    let tokens = Loader::new(|| api::get::<Vec<ApiToken>>("/api/tokens"));
    let name = RwSignal::new(String::new());
    let created = RwSignal::new(None::<String>);
    let message = RwSignal::new(None::<(bool, String)>);
    let create = move |event: SubmitEvent| {
        event.prevent_default();
        message.set(None);
        let body = NewToken {
            name: name.get_untracked().trim().to_owned(),
        };
        spawn_local(async move {
            match api::post::<_, CreatedToken>("/api/tokens", &body).await {
                Ok(answer) => {
                    name.set(String::new());
                    created.set(Some(answer.token));
                    tokens.reload();
                }
                Err(failure) => show(message, failure),
            }
        });
    };
    let revoke = move |id: i64| {
        spawn_local(async move {
            match api::delete(&format!("/api/tokens/{id}")).await {
                Ok(()) => tokens.reload(),
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <section class="card wide" aria-labelledby="tokens-title">
            <h2 id="tokens-title">{text::TOKENS_TITLE}</h2>
            <p class="muted small">{text::TOKENS_HELP}</p>
            <Loaded loader=tokens what=text::TOKENS_FAILED children=move |_| move || {
                let list = tokens.value().unwrap_or_default();
                if list.is_empty() {
                    return view! { <p class="muted">{text::NO_TOKENS}</p> }.into_any();
                }
                let rows = list.into_iter()
                    .map(|t| {
                        let id = t.id;
                        let used = t.last_used_at.map_or_else(|| text::NEVER_USED.to_owned(), |at| format!("{} {}", text::LAST_USED, when(at)));
                        view! {
                            <li data-token=t.name.clone()>
                                <span class="code-name">{t.name.clone()}</span>
                                <span class="muted small">{used}</span>
                                <button type="button" class="secondary" aria-label=format!("{} {}", text::REVOKE, t.name) on:click=move |_| revoke(id)>
                                    {text::REVOKE}
                                </button>
                            </li>
                        }
                    })
                    .collect_view();
                view! { <ul class="item-list token-list">{rows}</ul> }.into_any()
            } />
            {move || created.get().map(|token| view! {
                <div class="notice ok" role="status">
                    <p>{text::NEW_TOKEN}</p>
                    <code class="secret">{token}</code>
                </div>
            })}
            <Notice message=message />
            <form class="sub-form" on:submit=create>
                <div class="field">
                    <label for="token-name">{text::TOKEN_NAME}</label>
                    <input id="token-name" type="text" required maxlength="64" bind:value=name />
                </div>
                <button type="submit" class="secondary">{text::CREATE}</button>
            </form>
        </section>
    }
}
