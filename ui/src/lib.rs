//! Porchlight's web UI: a client-side rendered Leptos app compiled to wasm32.
//!
//! The same UI is shown in any browser (`porchlight serve`) and in the desktop window, which
//! simply loads the server's URL. The UI therefore knows only the HTTP API under `/api` on its
//! own origin; it must not know whether it runs in a browser tab or in the desktop shell.
//!
//! Module map: [`api`] owns the HTTP calls (on the shapes of `porchlight-api`), [`load`] the
//! loading/error/retry states, [`router`] the URLs (History API), [`live`] the tab's one
//! `/ws/live` WebSocket, [`login`] the sign-in form and one-time password prompt, [`shell`] the signed-in
//! page (header, navigation, current screen), [`screens`] one module per screen, [`map`] the
//! glue to Leaflet, and [`app`] decides which one shows.

pub mod api;
pub mod app;
pub mod live;
pub mod load;
pub mod login;
pub mod map;
pub mod router;
pub mod screens;
pub mod shell;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point run by wasm-bindgen's `init()` in `index.html`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
