//! The sign-in page: a plain, labelled username/password form that posts to `/api/login`.
//!
//! It shows the server's own error message (wrong password, too many attempts) and disables the
//! button while a request is in flight, so a double Enter cannot send two attempts.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Credentials, Session};

#[component]
pub fn LoginPage(
    /// A message to show before any attempt, e.g. that the server could not be reached.
    notice: Option<String>,
    /// Called once the server has accepted the credentials.
    on_signed_in: Callback<Session>,
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
                // The page is replaced by the shell; don't touch this page's signals after.
                Ok(session) => on_signed_in.run(session),
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
                <h1 id="login-title">"Porchlight"</h1>
                <p class="muted">"Sign in to your home hub."</p>
                <div class="field">
                    <label for="login-username">"Username"</label>
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
                    <label for="login-password">"Password"</label>
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
                    {move || if signing_in.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
        </main>
    }
}
