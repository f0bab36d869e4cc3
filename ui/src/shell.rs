//! The signed-in page: header (app name, user, sign out), the navigation, and the screen of
//! the current URL ([`crate::router`]). It opens the tab's one live feed ([`crate::live`])
//! and says so while that feed is reconnecting. Admin-only screens are hidden from, and refused to,
//! other users. On a phone the navigation is one compact, scrollable row under the header; on
//! wider screens it is a sidebar.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Role, Session};
use crate::live::{self, Feed};
use crate::router::{Link, Route, use_router};
use crate::screens;

mod text {
    use crate::router::Route;

    pub const BRAND: &str = "Porchlight";
    pub const SIGNED_IN_AS: &str = "Signed in as";
    pub const SIGN_OUT: &str = "Sign out";
    pub const NAV_LABEL: &str = "Sections";
    pub const SIGN_OUT_FAILED: &str = "Couldn't sign out";
    pub const NOT_FOUND_TITLE: &str = "Page not found";
    pub const NOT_FOUND: &str = "There is no page at this address.";
    pub const TO_MAP: &str = "Go to the map";
    pub const ADMIN_ONLY_TITLE: &str = "Admins only";
    pub const ADMIN_ONLY: &str = "Only an admin may open this page.";
    pub const RECONNECTING: &str = "Updates paused: reconnecting…";

    pub fn title(route: Route) -> &'static str {
        match route {
            Route::Map => "Map",
            Route::History => "History",
            Route::Devices => "Devices",
            Route::Certificates => "Certificates",
            Route::Alarm => "Alarm",
            Route::MqttSettings => "MQTT settings",
            Route::CaSettings => "CA settings",
            Route::AlarmSettings => "Alarm settings",
            Route::Users => "Users",
            Route::Profile => "Profile",
            Route::Audit => "Audit log",
            Route::Login | Route::NotFound => "",
        }
    }
}

#[component]
pub fn Shell(
    session: Session,
    /// Called after the server has ended the session.
    on_signed_out: Callback<()>,
) -> impl IntoView {
    let router = use_router();
    let signing_out = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let is_admin = session.role == Role::Admin;
    // The tab's one live feed, shared by the screens; closed when the shell goes (sign out).
    let feed = live::open();

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
                    error.set(Some(format!("{}: {failure}", text::SIGN_OUT_FAILED)));
                    signing_out.set(false);
                }
            }
        });
    };

    let nav_items = Route::NAV
        .into_iter()
        .filter(|route| is_admin || !route.admin_only())
        .map(|route| {
            view! {
                <li>
                    <Link to=route.path() class="nav-item">
                        {text::title(route)}
                    </Link>
                </li>
            }
        })
        .collect_view();

    let username = session.username.clone();
    let screen = move || {
        let route = router.route();
        if route.admin_only() && !is_admin {
            return view! {
                <section aria-labelledby="screen-title">
                    <h1 id="screen-title">{text::ADMIN_ONLY_TITLE}</h1>
                    <p class="muted">{text::ADMIN_ONLY}</p>
                </section>
            }
            .into_any();
        }
        let session = session.clone();
        match route {
            Route::Alarm => view! { <screens::alarm::AlarmPage session=session /> }.into_any(),
            Route::MqttSettings => view! { <screens::mqtt::MqttSettingsPage /> }.into_any(),
            Route::CaSettings => view! { <screens::ca_settings::CaSettingsPage /> }.into_any(),
            Route::Certificates => {
                view! { <screens::certificates::CertificatesPage session=session /> }.into_any()
            }
            Route::AlarmSettings => {
                view! { <screens::alarm_settings::AlarmSettingsPage /> }.into_any()
            }
            Route::Map | Route::Login => {
                view! { <screens::live::LivePage session=session /> }.into_any()
            }
            Route::History => {
                view! { <screens::history::HistoryPage session=session /> }.into_any()
            }
            Route::Devices => {
                view! { <screens::devices::DevicesPage session=session /> }.into_any()
            }
            Route::Users => view! { <screens::users::UsersPage session=session /> }.into_any(),
            Route::Profile => {
                view! { <screens::profile::ProfilePage session=session /> }.into_any()
            }
            Route::Audit => view! { <screens::audit::AuditPage /> }.into_any(),
            Route::NotFound => view! {
                <section aria-labelledby="screen-title">
                    <h1 id="screen-title">{text::NOT_FOUND_TITLE}</h1>
                    <p class="muted">{text::NOT_FOUND}</p>
                    <Link to="/map">{text::TO_MAP}</Link>
                </section>
            }
            .into_any(),
        }
    };

    view! {
        <div class="shell">
            <header class="topbar">
                <span class="brand">{text::BRAND}</span>
                <span class="user" title=text::SIGNED_IN_AS>{username}</span>
                <button
                    type="button"
                    class="secondary"
                    on:click=sign_out
                    disabled=move || signing_out.get()
                >
                    {text::SIGN_OUT}
                </button>
            </header>
            <nav class="sections" aria-label=text::NAV_LABEL>
                <ul>{nav_items}</ul>
            </nav>
            <Show when=move || error.with(Option::is_some)>
                <p class="error banner" role="alert">
                    {move || error.get().unwrap_or_default()}
                </p>
            </Show>
            <Show when=move || feed.get() == Feed::Reconnecting>
                <p class="banner feed-down" role="status" data-feed="reconnecting">
                    {text::RECONNECTING}
                </p>
            </Show>
            <main class="content">{screen}</main>
        </div>
    }
}
