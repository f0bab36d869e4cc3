//! The root component: asks the server who is signed in, then shows the login page, the
//! one-time password prompt, or the signed-in shell. It owns the one piece of state they all
//! need — the current [`Session`] — and keeps the URL in step: a signed-out visit to any page
//! lands on `/login?next=<that page>`, and signing in goes back there.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Session};
use crate::login::{LoginPage, NewPasswordPage};
use crate::router::{Route, Router, safe_next};
use crate::shell::Shell;

mod text {
    pub const LOADING: &str = "Loading Porchlight…";
    pub const SESSION_ENDED: &str = "Your session has ended. Sign in again to continue.";
}

/// Where the UI is in the sign-in flow.
#[derive(Debug, Clone, PartialEq)]
enum SignIn {
    /// `GET /api/me` has not answered yet.
    Checking,
    /// Nobody is signed in; `notice` is shown above the form (e.g. server unreachable).
    SignedOut {
        notice: Option<String>,
    },
    /// Signed in with a one-time password: a new one must be set first. `current` is the
    /// password just typed at the login, when the page still knows it.
    MustChangePassword {
        session: Session,
        current: Option<String>,
    },
    SignedIn(Session),
}

#[component]
pub fn App() -> impl IntoView {
    let router = Router::install();
    let state = RwSignal::new(SignIn::Checking);

    // Sends a signed-out visitor to the login page, remembering where they were.
    let to_login = move || {
        let here = router.location_now();
        match here.route() {
            Route::Login => {}
            Route::Map if here.query.is_empty() => router.replace(Route::Login.path()),
            _ => router.replace(&format!("/login?next={}", api::encode(&here.full()))),
        }
    };
    // After signing in: back to `next`, or the map (also for `/`).
    let to_next = move || {
        let here = router.location_now();
        if here.route() == Route::Login || here.path == "/" {
            let next = safe_next(here.param("next")).unwrap_or_else(|| Route::Map.path().into());
            router.replace(&next);
        }
    };
    let signed_in = move |session: Session, current: Option<String>| {
        if session.must_change_password {
            state.set(SignIn::MustChangePassword { session, current });
        } else {
            state.set(SignIn::SignedIn(session));
            to_next();
        }
    };

    api::on_signed_out(move || {
        if matches!(state.get_untracked(), SignIn::SignedOut { .. }) {
            return;
        }
        to_login();
        state.set(SignIn::SignedOut {
            notice: Some(text::SESSION_ENDED.into()),
        });
    });

    spawn_local(async move {
        match api::current_session().await {
            Ok(Some(session)) => signed_in(session, None),
            Ok(None) => {
                to_login();
                state.set(SignIn::SignedOut { notice: None });
            }
            Err(error) => {
                to_login();
                state.set(SignIn::SignedOut {
                    notice: Some(error.to_string()),
                });
            }
        }
    });

    let on_signed_in = Callback::new(move |(session, password): (Session, String)| {
        signed_in(session, Some(password));
    });
    let on_password_set = Callback::new(move |session: Session| signed_in(session, None));
    let on_signed_out = Callback::new(move |()| {
        router.navigate(Route::Login.path());
        state.set(SignIn::SignedOut { notice: None });
    });

    move || match state.get() {
        SignIn::Checking => view! {
            <main class="centered" aria-busy="true">
                <p class="muted">{text::LOADING}</p>
            </main>
        }
        .into_any(),
        SignIn::SignedOut { notice } => {
            view! { <LoginPage notice=notice on_signed_in=on_signed_in /> }.into_any()
        }
        SignIn::MustChangePassword { session, current } => view! {
            <NewPasswordPage session=session current=current on_done=on_password_set />
        }
        .into_any(),
        SignIn::SignedIn(session) => {
            view! { <Shell session=session on_signed_out=on_signed_out /> }.into_any()
        }
    }
}
