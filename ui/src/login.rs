//! The sign-in page (a plain, labelled username/password form that posts to `/api/login`) and
//! the prompt to replace a one-time password at the first sign-in.
//!
//! Both show the server's own error message (wrong password, too many attempts, password too
//! short) and disable their button while a request is in flight, so a double Enter cannot send
//! two attempts.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Credentials, Session};

mod text {
    pub const TITLE: &str = "Porchlight";
    pub const INTRO: &str = "Sign in to your home hub.";
    pub const USERNAME: &str = "Username";
    pub const PASSWORD: &str = "Password";
    pub const SIGN_IN: &str = "Sign in";
    pub const SIGNING_IN: &str = "Signing in…";

    pub const NEW_TITLE: &str = "Choose your password";
    pub const NEW_INTRO: &str = "You signed in with a one-time password. Choose your own \
        password to continue; the one-time password stops working.";
    pub const CURRENT: &str = "One-time password";
    pub const NEW: &str = "New password";
    pub const CONFIRM: &str = "New password again";
    pub const MISMATCH: &str = "The two new passwords are not the same.";
    pub const SAVE: &str = "Set password";
    pub const SAVING: &str = "Saving…";
}

#[component]
pub fn LoginPage(
    /// A message to show before any attempt, e.g. that the server could not be reached.
    notice: Option<String>,
    /// Called once the server has accepted the credentials, with the session and the password
    /// typed (needed when a one-time password must be replaced next).
    on_signed_in: Callback<(Session, String)>,
) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(notice);
    let signing_in = RwSignal::new(false);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if signing_in.get_untracked() {
            return;
        }
        signing_in.set(true);
        error.set(None);
        let credentials = Credentials {
            username: username.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
        };
        spawn_local(async move {
            match api::sign_in(&credentials).await {
                // The page is replaced; don't touch this page's signals after.
                Ok(session) => on_signed_in.run((session, credentials.password)),
                Err(failure) => {
                    password.set(String::new());
                    error.set(Some(failure.to_string()));
                    signing_in.set(false);
                }
            }
        });
    };

    view! {
        <main class="centered">
            <form class="card login" on:submit=submit aria-labelledby="login-title">
                <h1 id="login-title">{text::TITLE}</h1>
                <p class="muted">{text::INTRO}</p>
                <div class="field">
                    <label for="login-username">{text::USERNAME}</label>
                    <input
                        id="login-username"
                        name="username"
                        type="text"
                        autocomplete="username"
                        autocapitalize="none"
                        spellcheck="false"
                        required
                        autofocus
                        bind:value=username
                    />
                </div>
                <div class="field">
                    <label for="login-password">{text::PASSWORD}</label>
                    <input
                        id="login-password"
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        required
                        bind:value=password
                    />
                </div>
                <Show when=move || error.with(Option::is_some)>
                    <p class="error" role="alert">
                        {move || error.get().unwrap_or_default()}
                    </p>
                </Show>
                <button type="submit" class="primary" disabled=move || signing_in.get()>
                    {move || if signing_in.get() { text::SIGNING_IN } else { text::SIGN_IN }}
                </button>
            </form>
        </main>
    }
}

/// The first sign-in with a one-time password: set a new one before anything else.
#[component]
pub fn NewPasswordPage(
    session: Session,
    /// The one-time password, when the login form just had it; otherwise it is asked for.
    current: Option<String>,
    /// Called with the session (flag cleared) once the new password is set.
    on_done: Callback<Session>,
) -> impl IntoView {
    let ask_current = current.is_none();
    let current = RwSignal::new(current.unwrap_or_default());
    let new = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let session = StoredValue::new(session);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if saving.get_untracked() {
            return;
        }
        if new.get_untracked() != confirm.get_untracked() {
            error.set(Some(text::MISMATCH.into()));
            return;
        }
        saving.set(true);
        error.set(None);
        let mut session = session.get_value();
        let (old, new_password) = (current.get_untracked(), new.get_untracked());
        spawn_local(async move {
            match api::change_own_password(&session.username, &old, &new_password).await {
                Ok(()) => {
                    session.must_change_password = false;
                    on_done.run(session);
                }
                Err(failure) => {
                    error.set(Some(failure.to_string()));
                    saving.set(false);
                }
            }
        });
    };

    view! {
        <main class="centered">
            <form class="card login" on:submit=submit aria-labelledby="new-password-title">
                <h1 id="new-password-title">{text::NEW_TITLE}</h1>
                <p class="muted">{text::NEW_INTRO}</p>
                <Show when=move || ask_current>
                    <div class="field">
                        <label for="np-current">{text::CURRENT}</label>
                        <input
                            id="np-current"
                            type="password"
                            autocomplete="current-password"
                            required
                            bind:value=current
                        />
                    </div>
                </Show>
                <div class="field">
                    <label for="np-new">{text::NEW}</label>
                    <input id="np-new" type="password" autocomplete="new-password" required autofocus bind:value=new />
                </div>
                <div class="field">
                    <label for="np-confirm">{text::CONFIRM}</label>
                    <input id="np-confirm" type="password" autocomplete="new-password" required bind:value=confirm />
                </div>
                <Show when=move || error.with(Option::is_some)>
                    <p class="error" role="alert">
                        {move || error.get().unwrap_or_default()}
                    </p>
                </Show>
                <button type="submit" class="primary" disabled=move || saving.get()>
                    {move || if saving.get() { text::SAVING } else { text::SAVE }}
                </button>
            </form>
        </main>
    }
}
