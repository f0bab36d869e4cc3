//! `porchlight-desktop`: the Porchlight hub in a desktop window (see `lib.rs`).

// Release builds on Windows get no console window next to the app window.
#![cfg_attr(
    all(feature = "desktop", not(debug_assertions), target_os = "windows"),
    windows_subsystem = "windows"
)]

use std::process::ExitCode;

#[cfg(feature = "desktop")]
fn main() -> ExitCode {
    match porchlight_desktop::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("porchlight-desktop: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "desktop"))]
fn main() -> ExitCode {
    eprintln!(
        "porchlight-desktop: this build has no window (it was built without the `desktop` \
         feature).\nRun the headless hub with `porchlight serve` and open its address in a browser."
    );
    ExitCode::from(2)
}
