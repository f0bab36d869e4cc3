//! The signed-in page: header (app name, user, sign out) and the section navigation.
//!
//! The sections are placeholders until their features land; the shell only knows their names,
//! not what they show.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Session};
use crate::screens::devices::DevicesPage;
use crate::screens::history::{self, HistoryPage};
use crate::screens::live::LivePage;

/// The parts of the app reachable from the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Map,
    History,
    Devices,
    Alarm,
    Mqtt,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Map,
        Section::History,
        Section::Devices,
        Section::Alarm,
        Section::Mqtt,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Map => "Map",
            Section::History => "History",
            Section::Devices => "Devices",
            Section::Alarm => "Alarm",
            Section::Mqtt => "MQTT settings",
        }
    }

    fn coming_later(self) -> &'static str {
        match self {
            Section::Map => "The live map of tracked devices comes later.",
            Section::History => "Location and event history comes later.",
            Section::Devices => "",
            Section::Alarm => "Arming, disarming and sensors come later.",
            Section::Mqtt => "Broker users and access rules come later.",
        }
    }
}

#[component]
pub fn Shell(
    session: Session,
    /// Called after the server has ended the session.
    on_signed_out: Callback<()>,
) -> impl IntoView {
    let current = RwSignal::new(if history::url_names_history() {
        Section::History
    } else {
        Section::Map
    });
    let signing_out = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);

    let sign_out = move |_| {
        if signing_out.get_untracked() {
            return;
        }
        signing_out.set(true);
        error.set(None);
        spawn_local(async move {
            match api::sign_out().await {
                Ok(()) => on_signed_out.run(()),
                Err(failure) => {
                    error.set(Some(format!("Couldn't sign out: {failure}")));
                    signing_out.set(false);
                }
            }
        });
    };

    let nav_items = Section::ALL
        .into_iter()
        .map(|section| {
            view! {
                <li>
                    <button
                        type="button"
                        class="nav-item"
                        aria-current=move || (current.get() == section).then_some("page")
                        on:click=move |_| current.set(section)
                    >
                        {section.title()}
                    </button>
                </li>
            }
        })
        .collect_view();

    view! {
        <div class="shell">
            <header class="topbar">
                <span class="brand">"Porchlight"</span>
                <span class="user" title="Signed in as">{session.username.clone()}</span>
                <button
                    type="button"
                    class="secondary"
                    on:click=sign_out
                    disabled=move || signing_out.get()
                >
                    "Sign out"
                </button>
            </header>
            <nav class="sections" aria-label="Sections">
                <ul>{nav_items}</ul>
            </nav>
            <Show when=move || error.with(Option::is_some)>
                <p class="error banner" role="alert">
                    {move || error.get().unwrap_or_default()}
                </p>
            </Show>
            <main class="content">
                {move || {
                    let section = current.get();
                    match section {
                        Section::Map => return view! { <LivePage session=session.clone() /> }.into_any(),
                        Section::History => {
                            return view! { <HistoryPage session=session.clone() /> }.into_any();
                        }
                        Section::Devices => {
                            return view! { <DevicesPage session=session.clone() /> }.into_any();
                        }
                        _ => {}
                    }
                    view! {
                        <section aria-labelledby="section-title">
                            <h2 id="section-title">{section.title()}</h2>
                            <p class="muted">{section.coming_later()}</p>
                        </section>
                    }
                    .into_any()
                }}
            </main>
        </div>
    }
}
