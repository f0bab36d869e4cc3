//! Users (`/users`, admins): the household's accounts; add one (with a password, or a
//! generated one-time password shown once that the user must replace at first sign-in), reset
//! a password, remove.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use porchlight_api::account::{CreatedUser, NewUser, PasswordChange, Role, User};

use crate::api::{self, ApiError, Session};
use crate::load::{Loaded, Loader};

mod text {
    pub const TITLE: &str = "Users";
    pub const FAILED: &str = "Couldn't load the users";
    pub const YOU: &str = "you";
    pub const REMOVE: &str = "Remove";
    pub const CONFIRM_REMOVE: &str = "Really remove";
    pub const ADD_TITLE: &str = "Add a user";
    pub const USERNAME: &str = "Username";
    pub const ROLE: &str = "Role";
    pub const PASSWORD: &str = "Password (empty: generate a one-time password)";
    pub const ADD: &str = "Add user";
    pub const GENERATED: &str =
        "One-time password (shown only now; they choose their own at first sign-in):";
    pub const RESET: &str = "Set password";
    pub const RESET_DONE: &str = "Password set.";
    pub const NEW_PASSWORD: &str = "New password for";

    pub fn role(role: super::Role) -> &'static str {
        match role {
            super::Role::Admin => "Admin",
            super::Role::User => "User",
            super::Role::HomeAssistant => "Home Assistant",
        }
    }
}

fn show(target: RwSignal<Option<(bool, String)>>, failure: ApiError) {
    if failure != ApiError::SignedOut {
        target.set(Some((false, failure.to_string())));
    }
}

#[component]
pub fn UsersPage(session: Session) -> impl IntoView {
    let users = Loader::new(|| api::get::<Vec<User>>("/api/users"));
    let message = RwSignal::new(None::<(bool, String)>);
    let confirming = RwSignal::new(None::<String>);
    let resetting = RwSignal::new(None::<String>);
    let new_password = RwSignal::new(String::new());
    let me = StoredValue::new(session.username);

    let remove = move |name: String| {
        if confirming.get_untracked().as_deref() != Some(name.as_str()) {
            confirming.set(Some(name));
            return;
        }
        confirming.set(None);
        spawn_local(async move {
            match api::delete(&format!("/api/users/{}", api::encode(&name))).await {
                Ok(()) => users.reload(),
                Err(failure) => show(message, failure),
            }
        });
    };
    let reset = move |event: SubmitEvent| {
        event.prevent_default();
        let Some(name) = resetting.get_untracked() else {
            return;
        };
        let body = PasswordChange {
            password: new_password.get_untracked(),
            current_password: None,
        };
        spawn_local(async move {
            let path = format!("/api/users/{}/password", api::encode(&name));
            match api::put_no_answer(&path, &body).await {
                Ok(()) => {
                    resetting.set(None);
                    new_password.set(String::new());
                    message.set(Some((true, text::RESET_DONE.into())));
                }
                Err(failure) => show(message, failure),
            }
        });
    };

    view! {
        <section class="settings" aria-labelledby="screen-title">
            <h1 id="screen-title">{text::TITLE}</h1>
            <section class="card wide">
                <Loaded loader=users what=text::FAILED children=move |_| move || {
                    let rows = users
                        .value()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|u| {
                            let is_me = u.username == me.get_value();
                            let (n1, n2) = (u.username.clone(), u.username.clone());
                            let n3 = u.username.clone();
                            view! {
                                <li data-user=u.username.clone()>
                                    <span class="code-name">{u.username.clone()}</span>
                                    <span class="tag">{text::role(u.role)}</span>
                                    {is_me.then(|| view! { <span class="muted small">{text::YOU}</span> })}
                                    <span class="item-actions">
                                        <button type="button" class="secondary"
                                            aria-label=format!("{} {}", text::RESET, u.username)
                                            on:click=move |_| resetting.set(Some(n1.clone()))>
                                            {text::RESET}
                                        </button>
                                        {(!is_me).then(|| view! {
                                            <button type="button" class="secondary"
                                                aria-label=format!("{} {}", text::REMOVE, n2)
                                                on:click=move |_| remove(n2.clone())>
                                                {move || if confirming.get().as_deref() == Some(n3.as_str()) { text::CONFIRM_REMOVE } else { text::REMOVE }}
                                            </button>
                                        })}
                                    </span>
                                </li>
                            }
                        })
                        .collect_view();
                    view! { <ul class="item-list user-list">{rows}</ul> }
                } />
                {move || resetting.get().map(|name| view! {
                    <form class="sub-form" on:submit=reset>
                        <div class="field">
                            <label for="reset-password">{format!("{} {name}", text::NEW_PASSWORD)}</label>
                            <input id="reset-password" type="password" autocomplete="new-password" required bind:value=new_password />
                        </div>
                        <button type="submit" class="secondary">{text::RESET}</button>
                    </form>
                })}
                {move || message.get().map(|(ok, m)| view! {
                    <p class=if ok { "notice ok" } else { "error" } role=if ok { "status" } else { "alert" }>{m}</p>
                })}
            </section>
            <AddUser users=users />
        </section>
    }
}

#[component]
fn AddUser(users: Loader<Vec<User>>) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let role = RwSignal::new(Role::User);
    let password = RwSignal::new(String::new());
    let generated = RwSignal::new(None::<(String, String)>);
    let message = RwSignal::new(None::<(bool, String)>);
    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        message.set(None);
        generated.set(None);
        let pass = password.get_untracked();
        let body = NewUser {
            username: username.get_untracked().trim().to_owned(),
            role: role.get_untracked(),
            password: (!pass.is_empty()).then_some(pass),
        };
        spawn_local(async move {
            match api::post::<_, CreatedUser>("/api/users", &body).await {
                Ok(created) => {
                    username.set(String::new());
                    password.set(String::new());
                    if let Some(p) = created.password {
                        generated.set(Some((created.user.username, p)));
                    }
                    users.reload();
                }
                Err(failure) => show(message, failure),
            }
        });
    };
    view! {
        <form class="card wide" on:submit=submit aria-labelledby="add-user-title">
            <h2 id="add-user-title">{text::ADD_TITLE}</h2>
            <div class="row">
                <div class="field grow">
                    <label for="new-username">{text::USERNAME}</label>
                    <input id="new-username" type="text" required autocapitalize="none" spellcheck="false" bind:value=username />
                </div>
                <div class="field">
                    <label for="new-role">{text::ROLE}</label>
                    <select id="new-role" on:change=move |e| role.set(match event_target_value(&e).as_str() {
                        "admin" => Role::Admin,
                        "homeassistant" => Role::HomeAssistant,
                        _ => Role::User,
                    })>
                        <option value="user">{text::role(Role::User)}</option>
                        <option value="admin">{text::role(Role::Admin)}</option>
                        <option value="homeassistant">{text::role(Role::HomeAssistant)}</option>
                    </select>
                </div>
            </div>
            <div class="field">
                <label for="new-password">{text::PASSWORD}</label>
                <input id="new-password" type="password" autocomplete="new-password" bind:value=password />
            </div>
            {move || generated.get().map(|(name, p)| view! {
                <div class="notice ok" role="status">
                    <p>{name} ": " {text::GENERATED}</p>
                    <code class="secret">{p}</code>
                </div>
            })}
            {move || message.get().map(|(_, m)| view! { <p class="error" role="alert">{m}</p> })}
            <button type="submit" class="secondary">{text::ADD}</button>
        </form>
    }
}
