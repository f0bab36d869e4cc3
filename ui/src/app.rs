//! The root component: asks the server who is signed in, then shows the login page or the
//! signed-in shell. It owns the one piece of state both need — the current [`Session`].

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Session};
use crate::login::LoginPage;
use crate::shell::Shell;

/// Where the UI is in the sign-in flow.
#[derive(Debug, Clone, PartialEq)]
enum SignIn {
    /// `GET /api/me` has not answered yet.
    Checking,
    /// Nobody is signed in; `notice` is shown above the form (e.g. server unreachable).
    SignedOut {
        notice: Option<String>,
    },
    SignedIn(Session),
}

#[component]
pub fn App() -> impl IntoView {
    let state = RwSignal::new(SignIn::Checking);

    spawn_local(async move {
        let next = match api::current_session().await {
            Ok(Some(session)) => SignIn::SignedIn(session),
            Ok(None) => SignIn::SignedOut { notice: None },
            Err(error) => SignIn::SignedOut {
                notice: Some(error.to_string()),
            },
        };
        state.set(next);
    });

    let on_signed_in = Callback::new(move |session: Session| state.set(SignIn::SignedIn(session)));
    let on_signed_out = Callback::new(move |()| state.set(SignIn::SignedOut { notice: None }));

    move || match state.get() {
        SignIn::Checking => view! {
            <main class="centered" aria-busy="true">
                <p class="muted">"Loading Porchlight…"</p>
            </main>
        }
        .into_any(),
        SignIn::SignedOut { notice } => {
            view! { <LoginPage notice=notice on_signed_in=on_signed_in /> }.into_any()
        }
        SignIn::SignedIn(session) => {
            view! { <Shell session=session on_signed_out=on_signed_out /> }.into_any()
        }
    }
}
