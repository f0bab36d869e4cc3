//! Porchlight's web UI: a client-side rendered Leptos app compiled to wasm32.
//!
//! The same UI is shown in any browser (`porchlight serve`) and in the desktop window, which
//! simply loads the server's URL. The UI therefore knows only the HTTP API under `/api` on its
//! own origin; it must not know whether it runs in a browser tab or in the desktop shell.
//!
//! Module map: [`api`] owns the HTTP calls and their JSON shapes, [`login`] the sign-in form,
//! [`shell`] the signed-in page (header and navigation), and [`app`] decides which one shows.
//! [`map`] is the glue to Leaflet; [`screens`] holds the map screens (live, history, devices).

pub mod api;
pub mod app;
pub mod login;
pub mod map;
pub mod screens;
pub mod shell;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point run by wasm-bindgen's `init()` in `index.html`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
