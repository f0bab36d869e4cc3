//! Client-side routing on the History API: real URLs (`/alarm`, `/settings/mqtt`, …) that
//! survive a reload and can be bookmarked. The server answers `index.html` for every unknown
//! non-API path, so any of these URLs opens the app, which then reads `location.pathname`.
//!
//! One signal holds the current location ([`Location`]); [`navigate`] pushes a history entry
//! and updates it, the browser's back/forward (`popstate`) updates it too. [`Link`] is an `<a>`
//! with a real `href` (open in new tab works) whose plain clicks navigate in place.

use leptos::ev::MouseEvent;
use leptos::prelude::*;

/// A screen of the app, by its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Map,
    History,
    Devices,
    Certificates,
    Alarm,
    MqttSettings,
    CaSettings,
    AlarmSettings,
    Users,
    Profile,
    Audit,
    NotFound,
}

impl Route {
    /// Every screen reachable from the navigation, in its order.
    pub const NAV: [Route; 11] = [
        Route::Map,
        Route::History,
        Route::Devices,
        Route::Certificates,
        Route::Alarm,
        Route::MqttSettings,
        Route::CaSettings,
        Route::AlarmSettings,
        Route::Users,
        Route::Profile,
        Route::Audit,
    ];

    /// The route of a path (a trailing slash is ignored; `/` is the map).
    pub fn from_path(path: &str) -> Route {
        match path.trim_end_matches('/') {
            "" | "/map" => Route::Map,
            "/login" => Route::Login,
            "/history" => Route::History,
            "/devices" => Route::Devices,
            "/certificates" => Route::Certificates,
            "/alarm" => Route::Alarm,
            "/settings/mqtt" => Route::MqttSettings,
            "/settings/ca" => Route::CaSettings,
            "/settings/alarm" => Route::AlarmSettings,
            "/users" => Route::Users,
            "/profile" => Route::Profile,
            "/audit" => Route::Audit,
            _ => Route::NotFound,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Login => "/login",
            Route::Map => "/map",
            Route::History => "/history",
            Route::Devices => "/devices",
            Route::Certificates => "/certificates",
            Route::Alarm => "/alarm",
            Route::MqttSettings => "/settings/mqtt",
            Route::CaSettings => "/settings/ca",
            Route::AlarmSettings => "/settings/alarm",
            Route::Users => "/users",
            Route::Profile => "/profile",
            Route::Audit => "/audit",
            Route::NotFound => "/",
        }
    }

    /// Only admins see (and may open) these.
    pub fn admin_only(self) -> bool {
        matches!(
            self,
            Route::MqttSettings
                | Route::CaSettings
                | Route::AlarmSettings
                | Route::Users
                | Route::Audit
        )
    }
}

/// The current location: path and query string (with its `?`, or empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: String,
    pub query: String,
}

impl Location {
    pub fn route(&self) -> Route {
        Route::from_path(&self.path)
    }

    /// The value of one query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        web_sys::UrlSearchParams::new_with_str(&self.query)
            .ok()?
            .get(name)
    }

    /// Path and query, as a `next=` target.
    pub fn full(&self) -> String {
        format!("{}{}", self.path, self.query)
    }
}

fn read_location() -> Location {
    let location = window().location();
    Location {
        path: location.pathname().unwrap_or_else(|_| "/".into()),
        query: location.search().unwrap_or_default(),
    }
}

/// The app's router: the current location as a signal, provided as context.
#[derive(Debug, Clone, Copy)]
pub struct Router {
    location: RwSignal<Location>,
}

impl Router {
    /// Reads the browser's location and follows back/forward. Call once, at the root.
    pub fn install() -> Router {
        let location = RwSignal::new(read_location());
        let handle = window_event_listener(leptos::ev::popstate, move |_| {
            location.set(read_location());
        });
        on_cleanup(move || handle.remove());
        let router = Router { location };
        provide_context(router);
        router
    }

    /// The current location, tracked (a view that calls this follows navigation).
    pub fn location(self) -> Location {
        self.location.get()
    }

    /// The current location, untracked (for event handlers and one-off redirects).
    pub fn location_now(self) -> Location {
        self.location.get_untracked()
    }

    pub fn route(self) -> Route {
        self.location.with(Location::route)
    }

    /// Goes to `target` (a path with an optional query), adding a history entry.
    pub fn navigate(self, target: &str) {
        self.go(target, false);
    }

    /// Goes to `target` replacing the current history entry (redirects).
    pub fn replace(self, target: &str) {
        self.go(target, true);
    }

    fn go(self, target: &str, replace: bool) {
        if let Ok(history) = window().history() {
            let result = if replace {
                history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(target))
            } else {
                history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(target))
            };
            if result.is_err() {
                // Not a same-origin URL: let the browser load it.
                let _ = window().location().set_href(target);
                return;
            }
        }
        self.location.set(read_location());
        window().scroll_to_with_x_and_y(0.0, 0.0);
    }
}

/// The router from context (installed by the app's root).
pub fn use_router() -> Router {
    use_context::<Router>().unwrap_or_else(Router::install)
}

/// `next` from a login URL, if it is a path on this site (never another origin).
pub fn safe_next(next: Option<String>) -> Option<String> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/login"))
}

/// An in-app link: a real `href`, plain left clicks navigate without reloading.
#[component]
pub fn Link(
    to: &'static str,
    children: Children,
    #[prop(optional, into)] class: Option<&'static str>,
) -> impl IntoView {
    let router = use_router();
    let on_click = move |event: MouseEvent| {
        if event.button() != 0
            || event.ctrl_key()
            || event.meta_key()
            || event.shift_key()
            || event.alt_key()
        {
            return;
        }
        event.prevent_default();
        router.navigate(to);
    };
    let current = move || (Route::from_path(to) == router.route()).then_some("page");
    view! {
        <a href=to class=class.unwrap_or("") aria-current=current on:click=on_click>
            {children()}
        </a>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nav_route_round_trips_through_its_path() {
        for route in Route::NAV {
            assert_eq!(Route::from_path(route.path()), route);
            assert_eq!(Route::from_path(&format!("{}/", route.path())), route);
        }
        assert_eq!(Route::from_path("/"), Route::Map);
        assert_eq!(Route::from_path("/nope"), Route::NotFound);
    }

    #[test]
    fn next_only_goes_to_this_site() {
        assert_eq!(safe_next(Some("/alarm".into())), Some("/alarm".into()));
        assert_eq!(safe_next(Some("//evil.example".into())), None);
        assert_eq!(safe_next(Some("https://evil.example".into())), None);
        assert_eq!(safe_next(Some("/login?next=/x".into())), None);
        assert_eq!(safe_next(None), None);
    }
}
