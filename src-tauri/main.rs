//! `porchlight-desktop`: the Porchlight hub in a desktop window (see `lib.rs`).

// Release builds on Windows get no console window next to the app window.
#![cfg_attr(
    all(feature = "desktop", not(debug_assertions), target_os = "windows"),
    windows_subsystem = "windows"
)]

use std::process::ExitCode;

#[cfg(feature = "desktop")]
fn main() -> ExitCode {
    use porchlight_desktop::{Invocation, USAGE, parse_args};

    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Open(options)) => options,
        Ok(Invocation::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("porchlight-desktop: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match porchlight_desktop::run(options) {
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
